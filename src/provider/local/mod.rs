//! The local provider: a real HA PostgreSQL cluster on this machine, made
//! of PostgreSQL 15, a pg_auto_failover monitor and keepers, and haproxy as
//! the leader endpoint, with everything of app `A` under
//! `<state_dir>/apps/A/`.
//!
//! Layout of an app directory:
//! - `app.json`, `ports.json`, `secrets.json` (mode 0600), `formation.json`,
//!   `snapshot_policy.json`, `endpoint.json`: what flyplan recorded;
//! - `apply.lock`, `state.lock`, `bootstrap.lock`: advisory locks;
//! - `monitor/`: the monitor's data dir; `monitor.pid`;
//! - `volumes/<name>-<region>-<i>/`: a volume, `volume.json` and `pgdata/`;
//! - `machines/<region>-<i>.json` and `.pid`: machine labels, keeper pid;
//! - `haproxy/`: config and the leader check script;
//! - `restore.json`: the snapshot the cluster was created from, if any;
//! - `run/` and `sock/`: server-owned runtime files and unix sockets;
//! - `logs/`: output of every server.
//!
//! Snapshots live beside the apps, in `<state_dir>/snapshots/A/`, so that
//! destroying an app keeps them (see `snapshot`).

mod app;
mod attachments;
mod backup;
mod catalog;
mod consumers;
mod db;
mod exporter;
mod haproxy;
mod health;
mod keeper;
mod monitor;
mod observe;
mod parameters;
mod perform;
mod process;
mod rejoin;
mod restore;
mod rolling;
mod secrets;
mod snapshot;
mod state;
mod switchover;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::live::Live;
use crate::model::Address;
use crate::plan::{Action, Step};
use crate::provider::{LockGuard, Outcome, Provider, ProviderError, StepContext};

pub(crate) use app::AppCtx;
use app::{AppRecord, FormationRecord, VolumeRecord};
use catalog::ScramCache;
use process::Tools;
use state::{AppPaths, ServiceUser};

pub use keeper::MachineRecord;

/// The local provider. Cheap to share between threads: `perform` may run
/// independent steps of one app in parallel.
pub struct LocalProvider {
    state_dir: PathBuf,
    user: ServiceUser,
    tools: Tools,
    scram: ScramCache,
}

/// One node as `flyplan status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub address: String,
    pub name: String,
    pub region: String,
    /// `leader`, `replica` (a failover candidate) or `read-replica`.
    pub role: String,
    /// `running`, `stopped`, `failed`.
    pub state: String,
    /// What the monitor reports (`primary`, `secondary`, `catchingup`, ...).
    pub pg_state: Option<String>,
    pub port: u16,
    /// Bytes of WAL the node has not replayed yet (0 on the leader).
    pub lag_bytes: Option<i64>,
    pub connections: Option<i64>,
    pub max_connections: Option<i64>,
    /// Bytes used by the data directory.
    pub disk_used_bytes: u64,
}

/// The variables an attached app got from the clusters under `state_dir`,
/// by name (values included: this is what `flyplan env` prints). With
/// `multi_host`, each URL names every failover candidate of its cluster
/// instead of the leader endpoint (see [`crate::sql::multi_host_url`]).
///
/// # Errors
/// An unreadable consumer file.
pub fn attached_env(
    state_dir: &Path,
    app: &str,
    multi_host: bool,
) -> Result<BTreeMap<String, String>, ProviderError> {
    Ok(consumers::ConsumerStore::new(state_dir)
        .read(app)?
        .into_iter()
        .map(|(k, s)| {
            if !multi_host {
                return (k, s.value);
            }
            let hosts = candidate_hosts(state_dir, &s.cluster);
            let url = crate::sql::multi_host_url(&s.value, &hosts).unwrap_or(s.value);
            (k, url)
        })
        .collect())
}

/// Host and port of every failover candidate of `cluster`, from its
/// machine records, in node order.
fn candidate_hosts(state_dir: &Path, cluster: &str) -> Vec<(String, u16)> {
    let paths = AppPaths::new(state_dir, cluster);
    let mut nodes: Vec<keeper::MachineRecord> = std::fs::read_dir(paths.machines())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            state::read_json::<keeper::MachineRecord>(&e.path())
                .ok()
                .flatten()
        })
        .filter(keeper::MachineRecord::candidate)
        .collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes
        .into_iter()
        .map(|n| (attachments::HOST.to_string(), n.port))
        .collect()
}

impl LocalProvider {
    /// A provider keeping its clusters under `state_dir` (created if
    /// missing).
    ///
    /// # Errors
    /// When PostgreSQL 15, pg_autoctl or haproxy is missing (the message
    /// points at `scripts/install-deps.sh`), when running as root without a
    /// `postgres` user, or when the state dir cannot be made.
    pub fn new(state_dir: PathBuf) -> Result<Self, ProviderError> {
        state::mkdir(&state_dir.join("apps"), 0o755)?;
        let state_dir = state_dir
            .canonicalize()
            .map_err(|e| ProviderError::io(format!("resolving {}", state_dir.display()), e))?;
        let user = ServiceUser::detect()?;
        let tools = Tools::detect()?;
        user.check_traversable(&state_dir.join("apps"))?;
        Ok(LocalProvider {
            state_dir,
            user,
            tools,
            scram: ScramCache::default(),
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The directory of an app.
    pub fn app_dir(&self, app: &str) -> PathBuf {
        AppPaths::new(&self.state_dir, app).root
    }

    fn app<'a>(&'a self, app: &'a str) -> AppCtx<'a> {
        AppCtx::new(self, app)
    }

    /// Host and port of the leader endpoint (haproxy), once created.
    pub fn endpoint_url(&self, app: &str) -> Option<(String, u16)> {
        self.app(app)
            .endpoint()
            .ok()
            .flatten()
            .map(|e| ("127.0.0.1".to_string(), e.port))
    }

    /// The direct port of a machine (Fly's 5433), once allocated.
    pub fn node_port(&self, app: &str, address: &Address) -> Option<u16> {
        state::recorded_port(&self.app(app).paths, address.as_str())
    }

    /// Processes that belong to an app (servers and their children).
    pub fn app_processes(&self, app: &str) -> Vec<i32> {
        process::processes_under(&self.app_dir(app))
            .into_iter()
            .collect()
    }

    /// Stop every process of an app and remove all its files.
    ///
    /// # Guarantees
    /// Idempotent; afterwards no process of the app runs.
    pub fn destroy_all(&self, app: &str) -> Result<(), ProviderError> {
        let ctx = self.app(app);
        if !ctx.paths.root.exists() {
            return self.purge_trash(app);
        }
        tracing::info!(app, "destroying everything of the app");
        // Attached apps lose what this cluster gave them; the roles go with
        // the cluster.
        let consumers = consumers::ConsumerStore::new(&self.state_dir);
        for (consumer, variable, _) in consumers.set_by(app)? {
            consumers.unset(&consumer, &variable, app)?;
        }
        ctx.stop_haproxy();
        for m in ctx.machines() {
            ctx.stop_node(&m);
        }
        ctx.stop_monitor();
        // Then whatever else carries the app's mark (left by a killed
        // keeper, a check script...), until none is left.
        let mut attempt = 0;
        loop {
            let rest: Vec<i32> = process::processes_under(&ctx.paths.root)
                .into_iter()
                .collect();
            if rest.is_empty() {
                break;
            }
            if attempt >= 5 {
                return Err(ProviderError::failed(
                    format!("app {app}"),
                    format!("processes {rest:?} still run after being stopped"),
                ));
            }
            process::stop_trees(&rest, Duration::from_secs(10));
            attempt += 1;
        }
        // The directory moves out of the app's place in one rename before
        // its files go: a destroy cut short leaves debris that no later
        // apply, status or destroy takes for the app, and that the next
        // apply or destroy of the app removes.
        let trash = self.trash_dir().join(format!(
            "{app}.{}-{}",
            std::process::id(),
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        ));
        state::mkdir(&self.trash_dir(), 0o700)?;
        std::fs::rename(&ctx.paths.root, &trash).map_err(|e| {
            ProviderError::io(format!("moving {} aside", ctx.paths.root.display()), e)
        })?;
        crate::fault::crash_point("destroy-removing");
        self.purge_trash(app)
    }

    /// Where destroyed apps' directories wait to be removed.
    fn trash_dir(&self) -> PathBuf {
        self.state_dir.join("trash")
    }

    /// Remove what destroys of `app` left in the trash.
    fn purge_trash(&self, app: &str) -> Result<(), ProviderError> {
        let Ok(entries) = std::fs::read_dir(self.trash_dir()) else {
            return Ok(());
        };
        let prefix = format!("{app}.");
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                state::remove_dir(&e.path())?;
            }
        }
        Ok(())
    }

    /// Nodes of an app with their role, state, lag, connections and disk.
    pub fn node_status(&self, app: &str) -> Result<Vec<NodeStatus>, ProviderError> {
        self.app(app).status()
    }
}

impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn observe(&self, app: &str) -> Result<Live, ProviderError> {
        self.app(app).observe(&self.scram)
    }

    fn status(&self, app: &str) -> Result<Live, ProviderError> {
        let mut live = self.observe(app)?;
        for n in self.node_status(app)? {
            let Some(r) = Address::parse(&n.address)
                .ok()
                .and_then(|a| live.resources.get_mut(&a))
            else {
                continue;
            };
            let checks = &mut r.checks;
            checks.lag_bytes = n.lag_bytes.or(checks.lag_bytes);
            checks.connections = n.connections.or(checks.connections);
            checks.max_connections = n.max_connections.or(checks.max_connections);
            checks.disk_used_bytes = Some(n.disk_used_bytes);
        }
        self.app(app).health_facts(&mut live);
        Ok(live)
    }

    fn perform(&self, step: &Step, ctx: &StepContext<'_>) -> Result<Outcome, ProviderError> {
        let _span = tracing::info_span!("perform", app = ctx.app, address = %step.address, action = step.action.as_str()).entered();
        match step.action {
            Action::NoOp => Ok(Outcome::NotNeeded),
            Action::Replace => {
                self.perform_once(step, Action::Delete, ctx)?;
                self.perform_once(step, Action::Create, ctx)?;
                Ok(Outcome::Created)
            }
            action => self.perform_once(step, action, ctx),
        }
    }

    fn lock(&self, app: &str) -> Result<Box<dyn LockGuard>, ProviderError> {
        let paths = AppPaths::new(&self.state_dir, app);
        state::mkdir(&paths.root, 0o755)?;
        let guard = super::lock::lock_file(&paths.apply_lock(), app)?;
        // Debris of a destroy cut short goes before anything else is done.
        self.purge_trash(app)?;
        Ok(guard)
    }

    fn snapshots(&self) -> Option<&dyn crate::snapshot::Snapshots> {
        Some(self)
    }

    fn backups(&self) -> Option<&dyn crate::backup::Backups> {
        Some(self)
    }

    fn check_backup_store(&self, secret: &str, url: &str) -> Result<(), ProviderError> {
        match crate::backup::check::check_store(secret, url)? {
            crate::backup::check::Checked::Answered => Ok(()),
            crate::backup::check::Checked::NoBarman => Err(ProviderError::failed(
                format!("secret {secret}"),
                "barman-cloud-backup-list is not installed: the local provider runs barman-cloud itself",
            )),
        }
    }
}

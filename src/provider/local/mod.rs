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

mod attachments;
mod catalog;
mod consumers;
mod db;
mod haproxy;
mod keeper;
mod monitor;
mod observe;
mod process;
mod restore;
mod secrets;
mod snapshot;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::live::Live;
use crate::model::{attr, Address, Kind, Resource};
use crate::plan::{Action, Step};
use crate::provider::{LockGuard, Outcome, Provider, ProviderError, StepContext};

use catalog::ScramCache;
use process::Tools;
use state::{AppPaths, FileLock, ServiceUser};

pub use catalog::PASSWORD_SECRET;
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

/// The context of one app: its paths and the provider's settings.
pub(crate) struct AppCtx<'a> {
    provider: &'a LocalProvider,
    pub name: &'a str,
    pub paths: AppPaths,
}

impl<'a> AppCtx<'a> {
    fn new(provider: &'a LocalProvider, name: &'a str) -> Self {
        AppCtx {
            provider,
            name,
            paths: AppPaths::new(&provider.state_dir, name),
        }
    }
    pub fn user(&self) -> &ServiceUser {
        &self.provider.user
    }
    pub fn tools(&self) -> &Tools {
        &self.provider.tools
    }
    pub fn state_dir(&self) -> &Path {
        &self.provider.state_dir
    }
    /// A command for a server program, run as the service user.
    pub fn server_cmd(&self, program: &Path) -> Command {
        process::server_command(self.tools(), self.user(), &self.paths, program)
    }
    /// A `pg_autoctl` command.
    pub fn autoctl(&self) -> Command {
        self.server_cmd(&self.tools().pg_autoctl)
    }
    /// Remove pg_autoctl's config, state and pid files of a data dir.
    pub fn forget_autoctl_files(&self, pgdata: &Path) -> Result<(), ProviderError> {
        let rel = pgdata.strip_prefix("/").unwrap_or(pgdata);
        for base in ["config", "data", "runtime"] {
            state::remove_dir(&self.paths.run().join(base).join("pg_autoctl").join(rel))?;
        }
        Ok(())
    }

    fn exists(&self) -> bool {
        self.paths.app_json().exists()
    }

    /// Directories of a new app, owned as the servers need them.
    fn make_layout(&self) -> Result<(), ProviderError> {
        let sock_len = self.paths.sock().as_os_str().len() + "/.s.PGSQL.65535".len();
        if sock_len >= 108 {
            return Err(ProviderError::failed(
                format!("app {}", self.name),
                format!(
                    "the unix socket path under {} would be {sock_len} bytes, over the \
                     107 that Linux allows; use a shorter state dir",
                    self.paths.root.display()
                ),
            ));
        }
        state::mkdir(&self.paths.root, 0o755)?;
        self.user().check_traversable(&self.paths.root)?;
        let u = self.user();
        u.mkdir(&self.paths.run(), 0o700)?;
        for sub in ["config", "data", "runtime"] {
            u.mkdir(&self.paths.run().join(sub), 0o700)?;
        }
        u.mkdir(&self.paths.sock(), 0o700)?;
        u.mkdir(&self.paths.logs(), 0o755)?;
        u.mkdir(&self.paths.monitor_pgdata(), 0o700)?;
        state::mkdir(&self.paths.volumes(), 0o755)?;
        state::mkdir(&self.paths.machines(), 0o755)?;
        Ok(())
    }
}

/// What `app.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppRecord {
    primary_region: Option<String>,
}

/// What `volume.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VolumeRecord {
    name: String,
    region: String,
    index: u32,
    size_gb: u64,
}

/// What `formation.json` records: the declared number of sync standbys and
/// the value set on the monitor for it (they differ when pg_auto_failover's
/// 0 already means one synchronous standby, see `ensure_formation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FormationRecord {
    sync_standbys: i64,
    monitor_number_sync_standbys: i32,
}

fn not_needed_or(changed: bool, outcome: Outcome) -> Outcome {
    if changed {
        outcome
    } else {
        Outcome::NotNeeded
    }
}

/// The variables an attached app got from the clusters under `state_dir`,
/// by name (values included: this is what `flyplan env` prints).
///
/// # Errors
/// An unreadable consumer file.
pub fn attached_env(
    state_dir: &Path,
    app: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    Ok(consumers::ConsumerStore::new(state_dir)
        .read(app)?
        .into_iter()
        .map(|(k, s)| (k, s.value))
        .collect())
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
            return Ok(());
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
        // keeper, a check script...), until the directory can go.
        let mut attempt = 0;
        loop {
            let rest: Vec<i32> = process::processes_under(&ctx.paths.root)
                .into_iter()
                .collect();
            if !rest.is_empty() {
                process::stop_trees(&rest, Duration::from_secs(10));
            }
            match state::remove_dir(&ctx.paths.root) {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= 5 => return Err(e),
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Nodes of an app with their role, state, lag, connections and disk.
    pub fn node_status(&self, app: &str) -> Result<Vec<NodeStatus>, ProviderError> {
        self.app(app).status()
    }

    fn perform_app(&self, ctx: &AppCtx<'_>, step: &Step) -> Result<Outcome, ProviderError> {
        match step.action {
            Action::Delete => {
                let existed = ctx.paths.root.exists();
                self.destroy_all(ctx.name)?;
                Ok(not_needed_or(existed, Outcome::Deleted))
            }
            _ => {
                let after = desired(step)?;
                let existed = ctx.exists();
                // A new cluster from a snapshot: refuse a snapshot that is
                // missing or fails verification before anything is made.
                let restore_from = after.str(attr::RESTORE_FROM).filter(|_| !existed);
                if let Some(id) = restore_from {
                    self.check_restorable(ctx.name, id)?;
                }
                ctx.make_layout()?;
                if let Some(id) = restore_from {
                    ctx.record_restore(id)?;
                }
                let rec = AppRecord {
                    primary_region: after.str(attr::PRIMARY_REGION).map(str::to_string),
                };
                let had: Option<AppRecord> = state::read_json(&ctx.paths.app_json())?;
                let mut changed = had.as_ref() != Some(&rec);
                changed |= ctx.ensure_monitor()?;
                if had.as_ref() != Some(&rec) {
                    state::write_json(&ctx.paths.app_json(), &rec, 0o644)?;
                }
                let outcome = if existed {
                    Outcome::Updated
                } else {
                    Outcome::Created
                };
                Ok(not_needed_or(changed, outcome))
            }
        }
    }

    fn perform_secret(
        &self,
        ctx: &AppCtx<'_>,
        step: &Step,
        sctx: &StepContext<'_>,
    ) -> Result<Outcome, ProviderError> {
        let name = secret_name(&step.address);
        match step.action {
            Action::Delete => Ok(not_needed_or(ctx.remove_secret(&name)?, Outcome::Deleted)),
            action => {
                let value = sctx.secrets.get(&name).ok_or_else(|| {
                    ProviderError::failed(
                        format!("secret {name}"),
                        "no value was given for it in this apply",
                    )
                })?;
                require_app(ctx)?;
                let changed = ctx.store_secret(&name, value)?;
                Ok(not_needed_or(changed, created_or_updated(action)))
            }
        }
    }

    fn perform_volume(&self, ctx: &AppCtx<'_>, step: &Step) -> Result<Outcome, ProviderError> {
        let r = step
            .after
            .as_ref()
            .or(step.before.as_ref())
            .ok_or_else(|| {
                ProviderError::failed(step.address.as_str(), "a step without a resource")
            })?;
        let (name, region, index) = keeper::parse_volume_address(r.address.as_str())
            .ok_or_else(|| ProviderError::failed(r.address.as_str(), "not a volume address"))?;
        let dir = ctx.paths.volume_dir(&name, &region, index);
        match step.action {
            Action::Delete => {
                let existed = dir.exists();
                for m in ctx.machines() {
                    if m.volume == r.address.as_str() && ctx.node_running(&m) {
                        return Err(ProviderError::failed(
                            r.address.as_str(),
                            format!("machine {} still uses it", m.address),
                        ));
                    }
                }
                state::remove_dir(&dir)?;
                Ok(not_needed_or(existed, Outcome::Deleted))
            }
            action => {
                require_app(ctx)?;
                let size_gb = r.u64(attr::SIZE_GB).unwrap_or(1);
                let path = dir.join("volume.json");
                let had: Option<VolumeRecord> = state::read_json(&path)?;
                if let Some(h) = &had {
                    if size_gb < h.size_gb {
                        return Err(ProviderError::failed(
                            r.address.as_str(),
                            format!("a volume cannot shrink ({} GB to {size_gb} GB)", h.size_gb),
                        ));
                    }
                }
                ctx.user().mkdir(&dir, 0o700)?;
                let rec = VolumeRecord {
                    name,
                    region,
                    index,
                    size_gb,
                };
                if had.as_ref() == Some(&rec) {
                    return Ok(Outcome::NotNeeded);
                }
                state::write_json(&path, &rec, 0o644)?;
                Ok(created_or_updated(action))
            }
        }
    }

    fn perform_formation(&self, ctx: &AppCtx<'_>, step: &Step) -> Result<Outcome, ProviderError> {
        match step.action {
            Action::Delete => {
                let existed = ctx.paths.formation().exists();
                state::remove_file(&ctx.paths.formation())?;
                Ok(not_needed_or(existed, Outcome::Deleted))
            }
            action => {
                let after = desired(step)?;
                let want = after.i64(attr::SYNC_STANDBYS).unwrap_or(0);
                let changed = ctx.ensure_formation(want)?;
                Ok(not_needed_or(changed, created_or_updated(action)))
            }
        }
    }

    fn perform_snapshot_policy(
        &self,
        ctx: &AppCtx<'_>,
        step: &Step,
    ) -> Result<Outcome, ProviderError> {
        let volume = step
            .address
            .as_str()
            .strip_prefix("snapshot_policy.")
            .unwrap_or(step.address.as_str())
            .to_string();
        let _guard = FileLock::acquire(&ctx.paths.state_lock())?;
        let mut all: BTreeMap<String, BTreeMap<String, Value>> =
            state::read_json(&ctx.paths.snapshot_policy())?.unwrap_or_default();
        let outcome = match step.action {
            Action::Delete => not_needed_or(all.remove(&volume).is_some(), Outcome::Deleted),
            action => {
                require_app(ctx)?;
                let after = desired(step)?;
                let rec: BTreeMap<String, Value> =
                    [attr::SCHEDULED, attr::RETENTION_DAYS, attr::SNAPSHOT_TIME]
                        .iter()
                        .filter_map(|k| after.attrs.get(*k).map(|v| (k.to_string(), v.clone())))
                        .collect();
                if all.get(&volume) == Some(&rec) {
                    return Ok(Outcome::NotNeeded);
                }
                all.insert(volume, rec);
                created_or_updated(action)
            }
        };
        state::write_json(&ctx.paths.snapshot_policy(), &all, 0o644)?;
        Ok(outcome)
    }

    fn perform_once(
        &self,
        step: &Step,
        action: Action,
        sctx: &StepContext<'_>,
    ) -> Result<Outcome, ProviderError> {
        let ctx = self.app(sctx.app);
        let mut step = step.clone();
        step.action = action;
        let step = &step;
        match step.kind {
            Kind::App => self.perform_app(&ctx, step),
            Kind::Secret => self.perform_secret(&ctx, step, sctx),
            Kind::Volume => self.perform_volume(&ctx, step),
            Kind::Machine => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_machine(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_machine(desired(step)?)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::Formation => self.perform_formation(&ctx, step),
            Kind::Endpoint => match action {
                Action::Delete => Ok(not_needed_or(ctx.remove_endpoint()?, Outcome::Deleted)),
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_endpoint()?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::User => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_user(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_user(desired(step)?, sctx)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::Database => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_database(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_database(desired(step)?)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::SnapshotPolicy => self.perform_snapshot_policy(&ctx, step),
            Kind::Attachment => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_attachment(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_attachment(desired(step)?)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
        }
    }
}

fn desired(step: &Step) -> Result<&Resource, ProviderError> {
    step.after.as_ref().ok_or_else(|| {
        ProviderError::failed(
            step.address.as_str(),
            "a create or update without a desired resource",
        )
    })
}

/// The resource a delete removes: what was observed, else what was wanted.
fn existing(step: &Step) -> Result<&Resource, ProviderError> {
    step.before
        .as_ref()
        .or(step.after.as_ref())
        .ok_or_else(|| ProviderError::failed(step.address.as_str(), "a step without a resource"))
}

fn created_or_updated(action: Action) -> Outcome {
    if action == Action::Create {
        Outcome::Created
    } else {
        Outcome::Updated
    }
}

fn require_app(ctx: &AppCtx<'_>) -> Result<(), ProviderError> {
    if ctx.exists() {
        Ok(())
    } else {
        Err(ProviderError::failed(
            format!("app {}", ctx.name),
            "the app does not exist yet (create app first)",
        ))
    }
}

fn secret_name(address: &Address) -> String {
    address
        .as_str()
        .strip_prefix("secret.")
        .unwrap_or(address.as_str())
        .to_string()
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
            let Some(r) = live.resources.get_mut(&Address(n.address.clone())) else {
                continue;
            };
            let checks = [
                ("lag_bytes", n.lag_bytes.map(serde_json::Value::from)),
                ("connections", n.connections.map(serde_json::Value::from)),
                (
                    "max_connections",
                    n.max_connections.map(serde_json::Value::from),
                ),
                ("disk_used_bytes", Some(n.disk_used_bytes.into())),
            ];
            for (k, v) in checks {
                if let Some(v) = v {
                    r.status.insert(k.to_string(), v);
                }
            }
        }
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
        super::lock::lock_file(&paths.apply_lock(), app)
    }

    fn snapshots(&self) -> Option<&dyn crate::snapshot::Snapshots> {
        Some(self)
    }
}

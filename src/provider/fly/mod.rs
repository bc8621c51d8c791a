//! The fly provider: Fly.io Postgres (postgres-flex) clusters through the
//! Fly Machines REST API, doing what `fly pg create` and `fly image update`
//! do, one plan step at a time. See `docs/fly-provider.md` for what is and
//! is not possible through that API.

mod adopt;
mod api;
mod backup;
mod client;
mod exec;
mod flexctl;
pub mod graphql;
mod ledger;
mod observe;
mod perform;
mod settings;
mod sql;

use std::path::PathBuf;
use std::time::Duration;

pub use client::RetryPolicy;
pub use sql::{PgRoute, ROUTE_VAR};

use crate::live::Live;
use crate::plan::{PlanNotes, Step};
use crate::provider::{LockGuard, Outcome, Provider, ProviderError, StepContext};
use client::FlyClient;
use graphql::GraphqlClient;
use ledger::Ledger;

/// The Machines API's public address (flyctl's default for
/// `FLY_FLAPS_BASE_URL`).
pub const DEFAULT_FLAPS_BASE_URL: &str = "https://api.machines.dev";
/// The GraphQL API's public address (flyctl's default for
/// `FLY_API_BASE_URL`); requests go to `POST {base}/graphql`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.fly.io";
/// Fly's proxy port for clients (haproxy on the machines sends it to the leader).
pub const PG_PROXY_PORT: u16 = 5432;
/// Each node's own PostgreSQL port.
pub const PG_DIRECT_PORT: u16 = 5433;
/// Fly schedules daily snapshots itself; this is what flyplan reports.
pub const DEFAULT_SNAPSHOT_TIME: &str = "00:00";

/// Machine metadata keys flyplan reads and writes.
pub mod meta {
    /// The node index of a machine within its region.
    pub const INDEX: &str = "flyplan-index";
    /// Marks the machine as a Fly Postgres member for `fly pg` commands.
    pub const FLY_MANAGED_POSTGRES: &str = "fly-managed-postgres";
    pub const FLY_PLATFORM_VERSION: &str = "fly_platform_version";
    pub const MANAGED_BY_FLY_DEPLOY: &str = "managed-by-fly-deploy";
    pub const FLYPLAN_VERSION: &str = "flyplan-version";
}

/// Time limits of the fly provider.
#[derive(Debug, Clone)]
pub struct FlyTimeouts {
    /// One HTTP request.
    pub request: Duration,
    /// A new or updated machine reaching `started`.
    pub machine_start: Duration,
    /// Lease held on a machine while it is updated.
    pub lease_ttl: Duration,
    /// A new or updated machine passing its health checks (the first node:
    /// its `role` check saying `primary`), as flyctl's watch waits.
    pub health: Duration,
    /// How often a machine's checks are read while waiting for them.
    pub check_poll: Duration,
    pub retry: RetryPolicy,
}

impl Default for FlyTimeouts {
    fn default() -> Self {
        FlyTimeouts {
            request: Duration::from_secs(30),
            machine_start: Duration::from_secs(300),
            lease_ttl: Duration::from_secs(600),
            health: Duration::from_secs(300),
            check_poll: Duration::from_secs(1),
            retry: RetryPolicy::default(),
        }
    }
}

/// How to reach Fly.
#[derive(Clone)]
pub struct FlyOptions {
    /// The Machines API, without `/v1`; default [`DEFAULT_FLAPS_BASE_URL`]
    /// (env `FLY_FLAPS_BASE_URL`, as flyctl reads it).
    pub flaps_base_url: String,
    /// The GraphQL API, without `/graphql`; default [`DEFAULT_API_BASE_URL`]
    /// (env `FLY_API_BASE_URL`, as flyctl reads it).
    pub api_base_url: String,
    /// API token (env `FLY_API_TOKEN`), sent as flyctl sends it: a
    /// `FlyV1 …` token keeps its scheme, any other goes as `Bearer`. Never
    /// logged.
    pub token: String,
    /// Organization new apps go to (env `FLY_ORG`, default `personal`).
    pub org_slug: String,
    /// flyplan's state directory; the ledger lives in `fly/<app>/` under it.
    pub state_dir: PathBuf,
    pub timeouts: FlyTimeouts,
    /// A route to the leader for roles, databases and attachments (env
    /// `FLYPLAN_FLY_PG_URL`, password from the URL or `PGPASSWORD`).
    pub pg_route: Option<PgRoute>,
}

impl std::fmt::Debug for FlyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyOptions")
            .field("flaps_base_url", &self.flaps_base_url)
            .field("api_base_url", &self.api_base_url)
            .field("token", &"(redacted)")
            .field("org_slug", &self.org_slug)
            .field("state_dir", &self.state_dir)
            .field("timeouts", &self.timeouts)
            .field("pg_route", &self.pg_route)
            .finish()
    }
}

impl FlyOptions {
    /// Options from the environment flyctl reads: `FLY_API_TOKEN`,
    /// `FLY_FLAPS_BASE_URL` (Machines API), `FLY_API_BASE_URL` (GraphQL)
    /// and `FLY_ORG`.
    ///
    /// # Errors
    /// When `FLY_API_TOKEN` is unset or empty.
    pub fn from_env(state_dir: PathBuf) -> Result<Self, ProviderError> {
        Self::from_vars(state_dir, |k| std::env::var(k).ok())
    }

    /// [`FlyOptions::from_env`] over any source of variables.
    ///
    /// # Errors
    /// When `FLY_API_TOKEN` is unset or empty.
    pub fn from_vars(
        state_dir: PathBuf,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ProviderError> {
        let var = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let token = var("FLY_API_TOKEN").ok_or_else(|| {
            ProviderError::failed(
                "fly provider",
                "FLY_API_TOKEN is not set (create one with `fly tokens create org`)",
            )
        })?;
        Ok(FlyOptions {
            flaps_base_url: var("FLY_FLAPS_BASE_URL")
                .unwrap_or_else(|| DEFAULT_FLAPS_BASE_URL.to_string()),
            api_base_url: var("FLY_API_BASE_URL")
                .unwrap_or_else(|| DEFAULT_API_BASE_URL.to_string()),
            token: token.trim().to_string(),
            org_slug: var("FLY_ORG").unwrap_or_else(|| "personal".to_string()),
            state_dir,
            timeouts: FlyTimeouts::default(),
            pg_route: PgRoute::from_env()?,
        })
    }
}

/// The fly provider. Synchronous to its callers; runs its HTTP calls on
/// the process's runtime ([`crate::runtime`]).
pub struct FlyProvider {
    client: FlyClient,
    graphql: GraphqlClient,
    org_slug: String,
    state_dir: PathBuf,
    timeouts: FlyTimeouts,
    pg_route: Option<PgRoute>,
    /// Held from reading the app to creating a machine: steps of one apply
    /// run in parallel, and two creates must not pick the same free volume.
    placement: tokio::sync::Mutex<()>,
    /// The leases of a rolling update, held from its first machine step to
    /// its last (see `perform::machines`).
    rolling: tokio::sync::Mutex<perform::RollingLeases>,
}

impl std::fmt::Debug for FlyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyProvider")
            .field("client", &self.client)
            .field("graphql", &self.graphql)
            .field("org_slug", &self.org_slug)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

impl FlyProvider {
    /// # Errors
    /// When a base URL is invalid.
    pub fn new(options: FlyOptions) -> Result<Self, ProviderError> {
        let graphql = GraphqlClient::new(
            &options.api_base_url,
            &options.token,
            options.timeouts.request,
            options.timeouts.retry.clone(),
        )?;
        let client = FlyClient::new(
            &options.flaps_base_url,
            options.token,
            options.timeouts.request,
            options.timeouts.retry.clone(),
        )?;
        Ok(FlyProvider {
            client,
            graphql,
            org_slug: options.org_slug,
            state_dir: options.state_dir,
            timeouts: options.timeouts,
            pg_route: options.pg_route,
            placement: tokio::sync::Mutex::new(()),
            rolling: tokio::sync::Mutex::new(perform::RollingLeases::default()),
        })
    }

    fn ledger(&self, app: &str) -> Ledger {
        Ledger::new(&self.state_dir, app)
    }
}

use crate::secrets::digest as secret_digest;

impl Provider for FlyProvider {
    fn name(&self) -> &'static str {
        "fly"
    }

    /// What `perform` does (see `perform/machines.rs` and
    /// `perform/volumes.rs`): no drain, the node is destroyed and then
    /// unregistered; a leader change waits for a switchover only when a
    /// standby qualifies.
    fn plan_notes(&self) -> PlanNotes {
        PlanNotes {
            leader_update: "current leader: updated last, after a repmgr switchover to a healthy \
                 standby of the primary region; updated in place when none passes the dry run",
            switchover_pause: None,
            node_delete: "stopped, destroyed, then unregistered from repmgr with pg_unregister \
                 on the leader",
            leader_delete: "current leader: destroyed without a switchover first; flyplan \
                 promotes no standby",
            volume_grow: Some(
                "when Fly answers that the volume needs a restart, its node is restarted in this \
                 apply (the leader after a switchover)",
            ),
            sync_zero: None,
            sync_short: None,
            image_resets_backup: Some(
                "applied again after the image update: postgres-flex comes back from one with \
                 its default barman settings (flyctl#4340)",
            ),
        }
    }

    fn observe(&self, app: &str) -> Result<Live, ProviderError> {
        self.observe_with(app, false)
    }

    /// Observe, plus the snapshots Fly took of each volume.
    fn status(&self, app: &str) -> Result<Live, ProviderError> {
        self.observe_with(app, true)
    }

    fn perform(&self, step: &Step, ctx: &StepContext<'_>) -> Result<Outcome, ProviderError> {
        let _span =
            tracing::info_span!("perform", step = step.id, address = %step.address).entered();
        crate::runtime::block_on(perform::perform(self, step, ctx))
    }

    fn lock(&self, app: &str) -> Result<Box<dyn LockGuard>, ProviderError> {
        let ledger = self.ledger(app);
        ledger.ensure_dir()?;
        super::lock::lock_file(&ledger.dir().join("apply.lock"), app)
    }

    fn backups(&self) -> Option<&dyn crate::backup::Backups> {
        Some(self)
    }

    /// The same check as the local provider's, from where flyplan runs: a
    /// store the machines archive to (Tigris, S3) is a public endpoint, so
    /// one that does not answer here is taken as one that does not answer
    /// them. Without barman-cloud here the store is not checked, said as a
    /// warning.
    fn check_backup_store(&self, secret: &str, url: &str) -> Result<(), ProviderError> {
        use crate::backup::check::{check_store, Checked};
        if check_store(secret, url)? == Checked::NoBarman {
            tracing::warn!(
                secret,
                "the object store was not checked: barman-cloud-backup-list is not installed here"
            );
        }
        Ok(())
    }
}

impl FlyProvider {
    /// The live state of an app; with `snapshots`, one more request per
    /// volume for what Fly has taken (status only, never compared, so
    /// plans do without it).
    fn observe_with(&self, app: &str, snapshots: bool) -> Result<Live, ProviderError> {
        let label = format!("observe app {app}");
        let ledger = self.ledger(app);
        let secrets_ledger = ledger.secrets()?;
        let app_ledger = ledger.app()?;
        let snap = crate::runtime::block_on(observe::fetch(
            &self.client,
            app,
            &label,
            snapshots,
            secrets_ledger.version,
        ))?;
        let Some(snap) = snap else {
            return Ok(Live::empty(app));
        };
        let topo = observe::topology(&snap, &app_ledger);
        let mut live = observe::to_live(app, &snap, &topo, &secrets_ledger);
        for r in crate::runtime::block_on(self.observe_settings(app, &snap.machines)) {
            live.insert(r);
        }
        for r in crate::runtime::block_on(self.observe_sql(app, &snap.machines))? {
            live.insert(r);
        }
        if let Some(seen) =
            crate::runtime::block_on(backup::observe(&self.client, app, &snap, &ledger))?
        {
            live.insert(seen.policy);
            // A secret flyplan never set, whose value the leader runs with.
            let secret = crate::model::Address::secret(backup::ARCHIVE_SECRET);
            if let (Some(d), false) = (
                seen.adopted_digest,
                secrets_ledger.secrets.contains_key(backup::ARCHIVE_SECRET),
            ) {
                if let Some(crate::model::Spec::Secret(s)) =
                    live.resources.get_mut(&secret).map(|r| &mut r.spec)
                {
                    s.digest = Some(crate::model::Digest(d));
                }
            }
        }
        Ok(live)
    }
}

impl FlyProvider {
    /// What the leader's settings say, in one read of postgres-flex's
    /// settings API: `formation.<app>` (`synchronous_standby_names` as a
    /// number of standbys) and a `parameter.<name>` for every other
    /// setting the user configuration holds, as the leader runs it.
    /// Without machines, nothing; without a leader that answers, 0 sync
    /// standbys (postgres-flex's default: asynchronous) and no parameter,
    /// with a warning.
    async fn observe_settings(
        &self,
        app: &str,
        machines: &[api::Machine],
    ) -> Vec<crate::model::Resource> {
        use crate::model::{Address, Agreed, FormationSpec, ParameterSpec, Resource, Spec};
        if machines.is_empty() {
            return Vec::new();
        }
        let label = format!("observe the settings of app {app}");
        let leader = machines
            .iter()
            .find(|m| m.state == "started" && observe::role_check(m) == Some("primary"));
        let names: Vec<&str> = std::iter::once(settings::SYNC_SETTING)
            .chain(crate::pgsettings::names().filter(|n| {
                crate::pgsettings::lookup(n).is_some_and(|s| crate::pgsettings::owned(s).is_none())
            }))
            .collect();
        let read = match leader {
            Some(l) => settings::read_settings(&self.client, &label, app, &l.id, &names)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(app, error = %e, "the leader's settings were not observed");
                    Default::default()
                }),
            None => Default::default(),
        };
        let mut out = vec![Resource::new(
            Address::formation(app),
            Spec::Formation(FormationSpec {
                sync_standbys: Some(Agreed::One(settings::sync_standbys_of(&read))),
            }),
        )];
        for (name, raw) in &read {
            let Some(s) =
                crate::pgsettings::lookup(name).filter(|s| s.name != settings::SYNC_SETTING)
            else {
                continue;
            };
            out.push(Resource::new(
                Address::parameter(s.name),
                Spec::Parameter(ParameterSpec {
                    pending_restart: None,
                    value: Agreed::One(crate::pgsettings::canonical_live(s, raw)),
                }),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_digest_is_namespaced_by_app_and_name() {
        let d = secret_digest("pg", "PG_PASSWORD", "s3cret");
        assert!(d.starts_with("sha256:") && d.len() == 7 + 64);
        assert_ne!(d, secret_digest("pg2", "PG_PASSWORD", "s3cret"));
        assert_ne!(d, secret_digest("pg", "OTHER", "s3cret"));
        assert!(!d.contains("s3cret"));
    }

    #[test]
    fn the_provider_is_send_and_sync_and_hides_its_token() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<FlyProvider>();
        let p = FlyProvider::new(FlyOptions {
            flaps_base_url: "http://127.0.0.1:9".into(),
            api_base_url: "http://127.0.0.1:9".into(),
            token: "tok-very-secret".into(),
            org_slug: "personal".into(),
            state_dir: std::env::temp_dir(),
            timeouts: FlyTimeouts::default(),
            pg_route: None,
        })
        .unwrap();
        assert!(!format!("{p:?}").contains("tok-very-secret"));
    }

    #[test]
    fn options_read_the_variables_flyctl_reads() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let o = FlyOptions::from_vars(
            std::env::temp_dir(),
            vars(&[
                ("FLY_API_TOKEN", " FlyV1 fm2_abc "),
                ("FLY_FLAPS_BASE_URL", "http://flaps.test"),
                ("FLY_API_BASE_URL", "http://api.test"),
                ("FLY_ORG", "acme"),
            ]),
        )
        .unwrap();
        assert_eq!(o.flaps_base_url, "http://flaps.test");
        assert_eq!(o.api_base_url, "http://api.test");
        assert_eq!(o.org_slug, "acme");
        assert_eq!(o.token, "FlyV1 fm2_abc");

        let d =
            FlyOptions::from_vars(std::env::temp_dir(), vars(&[("FLY_API_TOKEN", "t")])).unwrap();
        assert_eq!(d.flaps_base_url, DEFAULT_FLAPS_BASE_URL);
        assert_eq!(d.api_base_url, DEFAULT_API_BASE_URL);
        assert_eq!(d.org_slug, "personal");
        assert!(FlyOptions::from_vars(std::env::temp_dir(), vars(&[])).is_err());
    }
}

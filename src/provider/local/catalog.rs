//! Roles and databases of an app, made and read on its current primary
//! through `crate::sql` over the primary's unix socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::db;
use super::monitor::{read_nodes, MonitorNode};
use super::secrets::secret_digest;
use super::AppCtx;
use crate::model::Resource;
use crate::provider::pg::{roles, Primary};
use crate::provider::{ProviderError, StepContext};
use crate::sql;

/// Remembers which (verifier, value) pairs match, so observe pays for
/// PBKDF2 once per password, not on every plan.
#[derive(Default)]
pub struct ScramCache {
    known: Mutex<HashMap<(String, [u8; 32]), bool>>,
}

impl ScramCache {
    pub fn matches(&self, verifier: &str, value: &str) -> bool {
        let key = (
            verifier.to_string(),
            Sha256::digest(value.as_bytes()).into(),
        );
        if let Some(m) = self.known.lock().expect("cache lock").get(&key) {
            return *m;
        }
        let m = sql::scram_verifier_matches(verifier, value);
        self.known.lock().expect("cache lock").insert(key, m);
        m
    }
}

impl<'a> AppCtx<'a> {
    /// The port of the node the monitor has settled on as primary.
    pub fn primary_port(nodes: &[MonitorNode]) -> Option<u16> {
        nodes
            .iter()
            .find(|n| n.is_leader() && n.pg_running)
            .map(|n| n.port)
    }

    /// Connect as the superuser to database `postgres` of the node on `port`.
    pub async fn node_client(&self, port: u16, timeout: Duration) -> Result<Client, ProviderError> {
        db::connect(
            &self.paths.sock(),
            port,
            &self.user().name,
            "postgres",
            timeout,
        )
        .await
    }

    /// Connect to the primary as the superuser, waiting up to `wait` for
    /// one (a failover may be under way).
    pub async fn primary_client(
        &self,
        dbname: &str,
        wait: Duration,
    ) -> Result<Client, ProviderError> {
        let started = Instant::now();
        loop {
            let attempt = async {
                let m = self.monitor_client(Duration::from_secs(3)).await?;
                let nodes = read_nodes(&m).await?;
                let port = Self::primary_port(&nodes)
                    .ok_or_else(|| ProviderError::failed("cluster", "no primary"))?;
                let c = db::connect(
                    &self.paths.sock(),
                    port,
                    &self.user().name,
                    dbname,
                    Duration::from_secs(3),
                )
                .await?;
                let writable: bool = c
                    .query_one("select not pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| db::query_err("checking the primary", e))?
                    .get(0);
                if writable {
                    Ok(c)
                } else {
                    Err(ProviderError::failed(
                        "cluster",
                        "the primary is in recovery",
                    ))
                }
            }
            .await;
            match attempt {
                Ok(c) => return Ok(c),
                Err(e) if started.elapsed() > wait => {
                    return Err(ProviderError::failed(
                        format!("app {}", self.name),
                        format!("no writable primary: {e}"),
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
    }

    /// This app's primary as the shared SQL code reaches it.
    pub fn primary(&self) -> LocalPrimary<'_, 'a> {
        LocalPrimary { ctx: self }
    }

    pub fn ensure_user(&self, r: &Resource, step: &StepContext<'_>) -> Result<bool, ProviderError> {
        let name = roles::name_of(r);
        let password = match r.user().and_then(|u| u.password_secret.as_deref()) {
            Some(secret) => Some(match step.secrets.get(secret) {
                Some(v) => v.to_string(),
                None => self.stored_secrets()?.remove(secret).ok_or_else(|| {
                    ProviderError::failed(
                        format!("user {name}"),
                        format!("the value of secret {secret} is not available"),
                    )
                })?,
            }),
            None => None,
        };
        db::block_on(roles::ensure_user(&self.primary(), r, password.as_deref()))
    }

    pub fn remove_user(&self, r: &Resource) -> Result<bool, ProviderError> {
        db::block_on(roles::remove_user(&self.primary(), r))
    }

    pub fn ensure_database(&self, r: &Resource) -> Result<bool, ProviderError> {
        db::block_on(roles::ensure_database(&self.primary(), r))
    }

    pub fn remove_database(&self, r: &Resource) -> Result<bool, ProviderError> {
        db::block_on(roles::remove_database(&self.primary(), r))
    }

    /// Users and databases as the primary's catalogs show them.
    pub async fn observe_catalog(
        &self,
        primary: &Client,
        cache: &ScramCache,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<Resource>, ProviderError> {
        let admin = self.user().name.clone();
        let mut extra = vec!["postgres"];
        if admin != "postgres" {
            extra.push(admin.as_str());
        }
        let matches = |verifier: &str| {
            secrets
                .iter()
                .find(|(_, value)| cache.matches(verifier, value))
                .map(|(name, value)| (name.clone(), secret_digest(self.name, name, value)))
        };
        roles::observe(primary, &extra, &matches).await
    }
}

/// The local primary: found through the monitor, reached over its unix
/// socket as the service user.
pub struct LocalPrimary<'c, 'a> {
    ctx: &'c AppCtx<'a>,
}

impl Primary for LocalPrimary<'_, '_> {
    type Conn = Client;

    async fn connect(&self, dbname: &str) -> Result<Client, ProviderError> {
        self.ctx
            .primary_client(dbname, Duration::from_secs(60))
            .await
    }

    fn admin_role(&self) -> &str {
        &self.ctx.user().name
    }
}

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
use crate::model::{attr, Address, Kind, Resource};
use crate::provider::{ProviderError, StepContext};
use crate::sql::{self, Change, RoleSpec};

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

/// The name in `user.<name>` / `database.<name>`.
fn name_of(r: &Resource, prefix: &str) -> String {
    r.str(attr::NAME).map(str::to_string).unwrap_or_else(|| {
        r.address
            .as_str()
            .strip_prefix(prefix)
            .unwrap_or(r.address.as_str())
            .to_string()
    })
}

fn role_spec(r: &Resource) -> RoleSpec {
    RoleSpec {
        name: name_of(r, "user."),
        login: r.bool(attr::LOGIN).unwrap_or(true),
        superuser: r.bool(attr::SUPERUSER).unwrap_or(false),
        createdb: r.bool(attr::CREATEDB).unwrap_or(false),
        createrole: r.bool(attr::CREATEROLE).unwrap_or(false),
        replication: r.bool(attr::REPLICATION).unwrap_or(false),
        connection_limit: r.i64(attr::CONNECTION_LIMIT).unwrap_or(-1) as i32,
        member_of: r.strings(attr::MEMBER_OF).into_iter().collect(),
    }
}

/// The attribute naming the secret that holds a user's password.
pub const PASSWORD_SECRET: &str = "password_secret";

impl AppCtx<'_> {
    /// The port of the node the monitor has settled on as primary.
    pub fn primary_port(nodes: &[MonitorNode]) -> Option<u16> {
        nodes
            .iter()
            .find(|n| n.is_leader() && n.pg_running)
            .map(|n| n.port)
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

    pub fn ensure_user(&self, r: &Resource, step: &StepContext<'_>) -> Result<bool, ProviderError> {
        let spec = role_spec(r);
        let password = match r.str(PASSWORD_SECRET) {
            Some(secret) => Some(match step.secrets.get(secret) {
                Some(v) => v.to_string(),
                None => self.stored_secrets()?.remove(secret).ok_or_else(|| {
                    ProviderError::failed(
                        format!("user {}", spec.name),
                        format!("the value of secret {secret} is not available"),
                    )
                })?,
            }),
            None => None,
        };
        let change = db::block_on(async {
            let c = self
                .primary_client("postgres", Duration::from_secs(60))
                .await?;
            sql::ensure_role(&c, &spec, password.as_deref()).await
        })?;
        Ok(change != Change::None)
    }

    pub fn remove_user(&self, r: &Resource) -> Result<bool, ProviderError> {
        let name = name_of(r, "user.");
        let admin = self.user().name.clone();
        if name == admin {
            return Err(ProviderError::failed(
                format!("user {name}"),
                "the bootstrap superuser of the cluster cannot be dropped",
            ));
        }
        db::block_on(async {
            let c = self
                .primary_client("postgres", Duration::from_secs(60))
                .await?;
            if sql::read_role(&c, &name).await?.is_none() {
                return Ok(false);
            }
            for dbname in sql::connectable_databases(&c).await? {
                let dc = self
                    .primary_client(&dbname, Duration::from_secs(10))
                    .await?;
                sql::reassign_and_drop_owned(&dc, &name, &admin).await?;
            }
            sql::drop_role(&c, &name).await
        })
    }

    pub fn ensure_database(&self, r: &Resource) -> Result<bool, ProviderError> {
        let name = name_of(r, "database.");
        let owner = r
            .str(attr::OWNER)
            .map(str::to_string)
            .unwrap_or_else(|| self.user().name.clone());
        let change = db::block_on(async {
            let c = self
                .primary_client("postgres", Duration::from_secs(60))
                .await?;
            sql::ensure_database(&c, &name, &owner).await
        })?;
        Ok(change != Change::None)
    }

    pub fn remove_database(&self, r: &Resource) -> Result<bool, ProviderError> {
        let name = name_of(r, "database.");
        db::block_on(async {
            let c = self
                .primary_client("postgres", Duration::from_secs(60))
                .await?;
            sql::drop_database(&c, &name).await
        })
    }

    /// Users and databases as the primary's catalogs show them.
    pub async fn observe_catalog(
        &self,
        primary: &Client,
        cache: &ScramCache,
        secrets: &BTreeMap<String, String>,
    ) -> Result<Vec<Resource>, ProviderError> {
        let mut out = Vec::new();
        let admin = self.user().name.clone();
        let mut extra = vec!["postgres"];
        if admin != "postgres" {
            extra.push(admin.as_str());
        }
        for role in sql::read_managed_roles(primary, &extra).await? {
            let s = &role.spec;
            let mut r = Resource::new(Address::user(&s.name), Kind::User)
                .with(attr::LOGIN, s.login)
                .with(attr::SUPERUSER, s.superuser)
                .with(attr::CREATEDB, s.createdb)
                .with(attr::CREATEROLE, s.createrole)
                .with(attr::REPLICATION, s.replication)
                .with(attr::CONNECTION_LIMIT, s.connection_limit as i64)
                .with(
                    attr::MEMBER_OF,
                    s.member_of.iter().cloned().collect::<Vec<_>>(),
                );
            if role.managed {
                r = r.with(attr::MANAGED_BY, "flyplan");
            }
            if let Some(verifier) = role.verifier.as_deref() {
                let found = secrets
                    .iter()
                    .find(|(_, value)| cache.matches(verifier, value));
                match found {
                    Some((secret, value)) => {
                        r = r
                            .with_sensitive(attr::PASSWORD, secret_digest(self.name, secret, value))
                            .with(PASSWORD_SECRET, secret.as_str());
                    }
                    None => {
                        let d = Sha256::digest(format!("unknown\0{verifier}").as_bytes());
                        r = r.with_sensitive(attr::PASSWORD, format!("sha256:{}", hex::encode(d)));
                    }
                }
            }
            out.push(r);
        }
        for d in sql::read_databases(primary).await? {
            out.push(
                Resource::new(Address::database(&d.name), Kind::Database)
                    .with(attr::OWNER, d.owner),
            );
        }
        Ok(out)
    }
}

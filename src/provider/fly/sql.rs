//! Roles, databases and attachments of a Fly cluster: the same SQL as the
//! local provider (`crate::provider::pg`), run by `psql` inside the leader
//! machine through the Machines API `exec` endpoint (see [`super::exec`]),
//! or, when the user sets one, over a route to the leader
//! (`FLYPLAN_FLY_PG_URL`, e.g. through `fly proxy 15432:5432 -a APP`); and
//! the attached app's URL set through the secrets endpoint of the consumer
//! app.

use std::collections::BTreeMap;

use reqwest::Method;
use tokio_postgres::{Client, NoTls};

use super::adopt;
use super::api::{ListSecretsResponse, Machine, UpdateSecretsRequest, UpdateSecretsResponse};
use super::client::FlyClient;
use super::exec::ExecSession;
use super::graphql::AttachmentRecord;
use super::ledger::{ConsumerEntry, Ledger, RoleEntry};
use super::observe::role_check;
use super::{FlyProvider, PG_PROXY_PORT};
use crate::model::Resource;
use crate::provider::pg::{attachments, roles, ConsumerSecrets, ConsumerVar, Primary};
use crate::provider::{ProviderError, StepContext};
use crate::sql::{self, attach, Session};

/// The environment variable holding the route.
pub const ROUTE_VAR: &str = "FLYPLAN_FLY_PG_URL";

/// A route to the cluster's leader as a superuser.
#[derive(Clone)]
pub struct PgRoute {
    config: tokio_postgres::Config,
    /// The host and port, for messages (never the password).
    shown: String,
}

impl std::fmt::Debug for PgRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRoute").field("to", &self.shown).finish()
    }
}

impl PgRoute {
    /// Parse a connection string (`postgres://user[:password]@host:port/db`
    /// or `host=... port=...`); a missing password is taken from
    /// `PGPASSWORD`, a missing user is `postgres`.
    ///
    /// # Errors
    /// A string tokio-postgres cannot parse (the message leaves it out: it
    /// may hold a password).
    pub fn parse(s: &str, pgpassword: Option<&str>) -> Result<Self, ProviderError> {
        let mut config: tokio_postgres::Config = s.parse().map_err(|e| {
            ProviderError::failed(
                ROUTE_VAR,
                format!("not a PostgreSQL connection string ({e})"),
            )
        })?;
        if config.get_user().is_none() {
            config.user("postgres");
        }
        if config.get_password().is_none() {
            if let Some(p) = pgpassword {
                config.password(p);
            }
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        config.application_name("flyplan");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        Ok(PgRoute {
            config,
            shown: format!("{host}:{port}"),
        })
    }

    /// The route from the environment, if one is set.
    ///
    /// # Errors
    /// As [`PgRoute::parse`].
    pub fn from_env() -> Result<Option<Self>, ProviderError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        var(ROUTE_VAR)
            .map(|s| Self::parse(s.trim(), var("PGPASSWORD").as_deref()))
            .transpose()
    }

    fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }
}

/// Where the leader's SQL runs: the user's route when one is set, else
/// `psql` inside the leader machine through `exec`.
pub enum FlyPrimary<'a> {
    Route(&'a PgRoute),
    Leader(Leader<'a>),
}

/// The leader machine of an app: the one whose `role` check passes with
/// `primary`, as flyctl picks it (`internal/command/postgres/postgres.go`).
pub struct Leader<'a> {
    client: &'a FlyClient,
    app: String,
    machine: String,
}

/// A session through either kind of [`FlyPrimary`].
pub enum FlyConn<'a> {
    Route(Client),
    Exec(ExecSession<'a>),
}

impl Session for FlyConn<'_> {
    async fn run(&self, what: &str, statements: &str) -> Result<(), ProviderError> {
        match self {
            FlyConn::Route(c) => c.run(what, statements).await,
            FlyConn::Exec(e) => e.run(what, statements).await,
        }
    }

    async fn run_unrecorded(&self, what: &str, statements: &str) -> Result<(), ProviderError> {
        match self {
            FlyConn::Route(c) => c.run_unrecorded(what, statements).await,
            FlyConn::Exec(e) => e.run_unrecorded(what, statements).await,
        }
    }

    async fn run_alone(&self, what: &str, statement: &str) -> Result<(), ProviderError> {
        match self {
            FlyConn::Route(c) => c.run_alone(what, statement).await,
            FlyConn::Exec(e) => e.run_alone(what, statement).await,
        }
    }

    async fn scalar(&self, what: &str, query: &str) -> Result<String, ProviderError> {
        match self {
            FlyConn::Route(c) => c.scalar(what, query).await,
            FlyConn::Exec(e) => e.scalar(what, query).await,
        }
    }
}

async fn connect_route(route: &PgRoute, dbname: &str) -> Result<Client, ProviderError> {
    let mut config = route.config.clone();
    config.dbname(dbname);
    let what = format!("connecting to {dbname} through {}", route.shown);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| ProviderError::failed(&what, e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "route connection closed");
        }
    });
    let writable: bool = client
        .query_one("select not pg_is_in_recovery()", &[])
        .await
        .map_err(|e| ProviderError::failed(&what, e.to_string()))?
        .get(0);
    if !writable {
        return Err(ProviderError::failed(
            &what,
            "the route reaches a replica; point it at port 5432 of the app, which \
             Fly's proxy sends to the leader",
        ));
    }
    Ok(client)
}

impl<'a> Primary for FlyPrimary<'a> {
    type Conn = FlyConn<'a>;

    async fn connect(&self, dbname: &str) -> Result<FlyConn<'a>, ProviderError> {
        match self {
            FlyPrimary::Route(route) => Ok(FlyConn::Route(connect_route(route, dbname).await?)),
            FlyPrimary::Leader(l) => Ok(FlyConn::Exec(ExecSession {
                client: l.client,
                app: l.app.clone(),
                machine: l.machine.clone(),
                dbname: dbname.to_string(),
            })),
        }
    }

    fn admin_role(&self) -> &str {
        match self {
            FlyPrimary::Route(route) => route.user(),
            FlyPrimary::Leader(_) => "postgres",
        }
    }
}

/// Consumer apps' secrets through the Machines API, with what flyplan set
/// recorded in the cluster's ledger.
pub struct FlyConsumers<'a> {
    pub(super) p: &'a FlyProvider,
    ledger: Ledger,
    /// The host attachment URLs name (see [`FlyProvider::attach_host`]).
    host: String,
    /// The cluster app.
    pub(super) cluster: String,
}

impl FlyConsumers<'_> {
    pub(super) async fn list_secrets(
        &self,
        app: &str,
    ) -> Result<Option<ListSecretsResponse>, ProviderError> {
        let label = format!("read the secrets of attached app {app}");
        self.p
            .client
            .request(&label, Method::GET, &["apps", app, "secrets"])
            .send_opt()
            .await
    }

    async fn post(
        &self,
        app: &str,
        values: BTreeMap<String, Option<String>>,
    ) -> Result<UpdateSecretsResponse, ProviderError> {
        let label = format!("set the secrets of attached app {app}");
        self.p
            .client
            .request(&label, Method::POST, &["apps", app, "secrets"])
            .json(&UpdateSecretsRequest { values })
            .send()
            .await
    }
}

impl FlyConsumers<'_> {
    fn record_label(&self, app: &str) -> String {
        format!("the attachment record of {app} to {}", self.cluster)
    }

    /// Fly's attachment records of this cluster on `app`.
    pub(super) async fn records(&self, app: &str) -> Result<Vec<AttachmentRecord>, ProviderError> {
        let label = format!("read {}", self.record_label(app));
        self.p
            .graphql
            .postgres_attachments(&label, app, &self.cluster)
            .await
    }

    /// Keep exactly one record for `var`'s variable, naming its database
    /// and user, as `fly pg attach` leaves it.
    async fn ensure_record(&self, var: &ConsumerVar) -> Result<(), ProviderError> {
        let label = self.record_label(&var.app);
        let mut kept = false;
        for r in self.records(&var.app).await? {
            if r.environment_variable_name != var.variable {
                continue;
            }
            if !kept && r.database_name == var.database && r.database_user == var.user {
                kept = true;
                continue;
            }
            self.p
                .graphql
                .detach_postgres_cluster(&label, &var.app, &self.cluster, &r.id)
                .await?;
        }
        if !kept {
            self.p
                .graphql
                .attach_postgres_cluster(
                    &label,
                    &var.app,
                    &self.cluster,
                    &var.database,
                    &var.user,
                    &var.variable,
                )
                .await?;
        }
        Ok(())
    }

    /// Remove the records of `variable` on `app`, as `fly pg detach` does.
    async fn remove_records(&self, app: &str, variable: &str) -> Result<(), ProviderError> {
        let label = self.record_label(app);
        for r in self.records(app).await? {
            if r.environment_variable_name == variable {
                self.p
                    .graphql
                    .detach_postgres_cluster(&label, app, &self.cluster, &r.id)
                    .await?;
            }
        }
        Ok(())
    }
}

impl ConsumerSecrets for FlyConsumers<'_> {
    async fn list(&self) -> Result<Vec<ConsumerVar>, ProviderError> {
        let entries = self.ledger.consumers()?;
        let mut by_app: BTreeMap<&str, Vec<&ConsumerEntry>> = BTreeMap::new();
        for e in &entries {
            by_app.entry(e.app.as_str()).or_default().push(e);
        }
        let mut out = Vec::new();
        for (app, entries) in by_app {
            let Some(secrets) = self.list_secrets(app).await? else {
                continue; // the consumer app is gone, and its secrets with it
            };
            let records = self.records(app).await?;
            for e in entries {
                let Some(s) = secrets.secrets.iter().find(|s| s.name == e.variable) else {
                    continue;
                };
                // Without Fly's record, `fly pg detach` would not know the
                // attachment: set again, which records it.
                let recorded = records.iter().any(|r| {
                    r.environment_variable_name == e.variable
                        && r.database_name == e.database
                        && r.database_user == e.user
                });
                out.push(ConsumerVar {
                    app: e.app.clone(),
                    variable: e.variable.clone(),
                    database: e.database.clone(),
                    user: e.user.clone(),
                    verifier: e.verifier.clone(),
                    current: s.digest == e.fly_digest && recorded,
                });
            }
        }
        Ok(out)
    }

    async fn set(&self, var: &ConsumerVar, url: &str) -> Result<(), ProviderError> {
        let reply = self
            .post(
                &var.app,
                BTreeMap::from([(var.variable.clone(), Some(url.to_string()))]),
            )
            .await?;
        let fly_digest = reply
            .secrets
            .iter()
            .find(|s| s.name == var.variable)
            .map(|s| s.digest.clone())
            .unwrap_or_default();
        self.ensure_record(var).await?;
        let mut entries = self.ledger.consumers()?;
        entries.retain(|e| !(e.app == var.app && e.variable == var.variable));
        entries.push(ConsumerEntry {
            app: var.app.clone(),
            variable: var.variable.clone(),
            database: var.database.clone(),
            user: var.user.clone(),
            verifier: var.verifier.clone(),
            fly_digest,
        });
        self.ledger.write_consumers(&entries)
    }

    async fn unset(&self, app: &str, variable: &str) -> Result<bool, ProviderError> {
        let mut entries = self.ledger.consumers()?;
        let before = entries.len();
        entries.retain(|e| !(e.app == app && e.variable == variable));
        if entries.len() == before {
            return Ok(false);
        }
        let present = self
            .list_secrets(app)
            .await?
            .is_some_and(|s| s.secrets.iter().any(|s| s.name == variable));
        if present {
            self.post(app, BTreeMap::from([(variable.to_string(), None)]))
                .await?;
        }
        self.remove_records(app, variable).await?;
        self.ledger.write_consumers(&entries)?;
        Ok(true)
    }

    fn url(&self, user: &str, password: &str, database: &str) -> Result<String, ProviderError> {
        // What `fly pg attach` sets; port 5432 of Fly's proxy goes to the
        // leader.
        Ok(sql::connection_url(
            &self.host,
            PG_PROXY_PORT,
            user,
            Some(password),
            database,
        ))
    }
}

impl FlyProvider {
    /// Where `app`'s SQL runs: the route when one is set, else the leader
    /// machine among `machines`.
    fn primary_among<'a>(
        &'a self,
        app: &str,
        machines: &[Machine],
        what: &str,
    ) -> Result<FlyPrimary<'a>, ProviderError> {
        if let Some(route) = &self.pg_route {
            return Ok(FlyPrimary::Route(route));
        }
        let leader = machines
            .iter()
            .find(|m| m.state == "started" && role_check(m) == Some("primary"))
            .ok_or_else(|| {
                ProviderError::failed(
                    what,
                    format!(
                        "no machine of app {app} is the leader (none has a passing `role` \
                         check saying primary), so there is nowhere to run SQL"
                    ),
                )
            })?;
        Ok(FlyPrimary::Leader(Leader {
            client: &self.client,
            app: app.to_string(),
            machine: leader.id.clone(),
        }))
    }

    /// Where `app`'s SQL runs, reading its machines when there is no route.
    pub(super) async fn primary(
        &self,
        app: &str,
        what: &str,
    ) -> Result<FlyPrimary<'_>, ProviderError> {
        if self.pg_route.is_some() {
            return self.primary_among(app, &[], what);
        }
        let machines: Vec<Machine> = self
            .client
            .request(what, Method::GET, &["apps", app, "machines"])
            .send()
            .await?;
        self.primary_among(app, &machines, what)
    }

    pub(super) fn consumers<'a>(&'a self, cluster: &'a str) -> FlyConsumers<'a> {
        FlyConsumers {
            p: self,
            ledger: self.ledger(cluster),
            host: format!("{cluster}.flycast"),
            cluster: cluster.to_string(),
        }
    }

    /// [`FlyProvider::consumers`] for writing URLs: the host is chosen as
    /// `fly pg attach` chooses it (flyctl `internal/command/postgres/attach.go`
    /// 112-123, 319-335): the Flycast name `<app>.flycast` when the cluster
    /// has a `private_v6` address, else `top2.nearest.of.<app>.internal`.
    ///
    /// # Errors
    /// When GraphQL cannot be read.
    pub(super) async fn consumers_for_urls<'a>(
        &'a self,
        cluster: &'a str,
    ) -> Result<FlyConsumers<'a>, ProviderError> {
        let mut c = self.consumers(cluster);
        c.host = self.attach_host(cluster).await?;
        Ok(c)
    }

    /// The host attachment URLs of `cluster` name.
    ///
    /// # Errors
    /// When GraphQL cannot be read.
    pub async fn attach_host(&self, cluster: &str) -> Result<String, ProviderError> {
        let label = format!("read the addresses of app {cluster}");
        let ips = self.graphql.ip_addresses(&label, cluster).await?;
        Ok(if ips.iter().any(|ip| ip.kind == "private_v6") {
            format!("{cluster}.flycast")
        } else {
            format!("top2.nearest.of.{cluster}.internal")
        })
    }

    /// Unset every variable this cluster set on attached apps (when the
    /// cluster itself is destroyed; no SQL needed).
    pub(super) async fn unset_consumers(&self, app: &str) -> Result<(), ProviderError> {
        let consumers = self.consumers(app);
        for e in self.ledger(app).consumers()? {
            consumers.unset(&e.app, &e.variable).await?;
        }
        Ok(())
    }

    /// Users, databases and attachments, read on the leader among
    /// `machines` (or through the route); a warning and the attachments
    /// known from the ledger when there is no leader or it does not answer.
    pub(super) async fn observe_sql(
        &self,
        app: &str,
        machines: &[Machine],
    ) -> Result<Vec<Resource>, ProviderError> {
        let consumers = self.consumers(app);
        let what = format!("observe the roles of app {app}");
        let primary = match self.primary_among(app, machines, &what) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(app, error = %e, "roles, databases and attachments not observed");
                return attachments::observe_unverified(&consumers).await;
            }
        };
        let session = primary.connect("postgres").await;
        let book = self.ledger(app).roles()?;
        let matches = |verifier: &str| {
            let d = attach::verifier_digest(verifier);
            book.values()
                .find(|e| e.verifier == d)
                .map(|e| (e.secret.clone(), e.secret_digest.clone()))
        };
        let admin = primary.admin_role().to_string();
        let mut extra = vec!["postgres"];
        if admin != "postgres" {
            extra.push(admin.as_str());
        }
        // The first read is the first contact with the leader (through exec,
        // a session opens nothing): when it fails, as when there is no
        // leader or the route does not connect, roles are left unobserved.
        let first = match session {
            Ok(session) => roles::observe(&session, &extra, &matches)
                .await
                .map(|roles| (session, roles)),
            Err(e) => Err(e),
        };
        let (session, mut out) = match first {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(app, error = %e, "roles, databases and attachments not observed");
                return attachments::observe_unverified(&consumers).await;
            }
        };
        let attached = attachments::observe(&session, &consumers).await?;
        let seen = attached
            .iter()
            .map(|r| r.address.name().to_string())
            .collect();
        out.extend(attached);
        // A token that may not list the organization's apps (a deploy
        // token) still observes everything flyplan made.
        match adopt::observe(&consumers, &session, &seen).await {
            Ok(adopted) => out.extend(adopted),
            Err(e) => {
                tracing::warn!(app, error = %e, "attachments made outside flyplan not observed");
            }
        }
        Ok(out)
    }

    pub(super) async fn ensure_user(
        &self,
        r: &Resource,
        ctx: &StepContext<'_>,
        what: &str,
    ) -> Result<bool, ProviderError> {
        let primary = self.primary(ctx.app, what).await?;
        let secret = r.user().and_then(|u| u.password_secret.as_deref());
        let password = match secret {
            Some(s) => Some(ctx.secrets.get(s).ok_or_else(|| {
                ProviderError::failed(what, format!("the value of secret {s} is not available"))
            })?),
            None => None,
        };
        let changed = roles::ensure_user(&primary, r, password).await?;
        if let (Some(secret), Some(value)) = (secret, password) {
            let name = roles::name_of(r);
            let c = primary.connect("postgres").await?;
            let verifier = sql::read_role(&c, &name)
                .await?
                .and_then(|i| i.verifier)
                .unwrap_or_default();
            let ledger = self.ledger(ctx.app);
            let mut book = ledger.roles()?;
            book.insert(
                name,
                RoleEntry {
                    secret: secret.to_string(),
                    secret_digest: crate::secrets::digest(ctx.app, secret, value),
                    verifier: attach::verifier_digest(&verifier),
                },
            );
            ledger.write_roles(&book)?;
        }
        Ok(changed)
    }

    pub(super) async fn remove_user(
        &self,
        r: &Resource,
        app: &str,
        what: &str,
    ) -> Result<bool, ProviderError> {
        let primary = self.primary(app, what).await?;
        let removed = roles::remove_user(&primary, r).await?;
        let ledger = self.ledger(app);
        let mut book = ledger.roles()?;
        if book.remove(&roles::name_of(r)).is_some() {
            ledger.write_roles(&book)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_takes_its_password_from_pgpassword_and_hides_it() {
        let r =
            PgRoute::parse("postgres://postgres@127.0.0.1:15432/postgres", Some("pw-1")).unwrap();
        assert_eq!(r.config.get_password(), Some(&b"pw-1"[..]));
        assert_eq!(r.user(), "postgres");
        assert_eq!(format!("{r:?}"), "PgRoute { to: \"127.0.0.1:15432\" }");
        let r = PgRoute::parse("host=h port=5 user=admin password=inline", Some("x")).unwrap();
        assert_eq!(r.config.get_password(), Some(&b"inline"[..]));
        assert_eq!(r.user(), "admin");
        let e = PgRoute::parse("postgres://u:secretpw@[bad", None).unwrap_err();
        assert!(!e.to_string().contains("secretpw"), "{e}");
    }
}

//! All SQL that flyplan sends to PostgreSQL: roles, databases and catalog
//! reads through a [`Session`], with identifiers and literals quoted by
//! postgres-protocol's escaping (libpq's rules), and the connection URLs
//! handed to attached apps. Both providers use it (locally over a unix
//! socket, on Fly through `psql` in the leader machine or a route the user
//! provides).

use std::collections::BTreeSet;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use postgres_protocol::escape::{escape_identifier, escape_literal};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::error::ProviderError;

pub mod attach;
pub mod quiet;
pub mod session;

pub use session::Session;

/// The comment that marks a role as managed by flyplan.
pub const MANAGED_COMMENT: &str = "managed by flyplan";

/// What is percent-encoded in a connection URL's user, password and
/// database: everything but RFC 3986's unreserved characters. The url
/// crate's own userinfo set leaves `%` and some delimiters alone, which libpq
/// would then decode or split on; encoding first keeps every value as given.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `url` (made by [`connection_url`] for one host) with every node of
/// `hosts` in its place and `target_session_attrs=read-write`: libpq and
/// the drivers built on it try the hosts in turn and keep the one that
/// takes writes, without the leader endpoint and its checks. `None` when
/// `url` is not of that form or `hosts` is empty.
pub fn multi_host_url(url: &str, hosts: &[(String, u16)]) -> Option<String> {
    if hosts.is_empty() {
        return None;
    }
    let parsed = Url::parse(url).ok()?;
    let at = url.find('@')? + 1;
    let path = at + url[at..].find('/')?;
    let list: Vec<String> = hosts.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    let sep = if parsed.query().is_some() { '&' } else { '?' };
    Some(format!(
        "{}{}{}{sep}target_session_attrs=read-write",
        &url[..at],
        list.join(","),
        &url[path..]
    ))
}

/// A `postgres://` URL with `sslmode=disable`: what an attached app gets in
/// its secret, and what keepers use to reach the monitor.
///
/// `host` is an IP address or an app's private name, both plain host names.
pub fn connection_url(
    host: &str,
    port: u16,
    user: &str,
    password: Option<&str>,
    database: &str,
) -> String {
    let encode = |s: &str| utf8_percent_encode(s, URL_COMPONENT).to_string();
    let mut url = Url::parse("postgres://localhost").expect("a constant URL parses");
    url.set_host(Some(host))
        .expect("hosts are IP addresses or validated app names");
    url.set_port(Some(port))
        .and_then(|()| url.set_username(&encode(user)))
        .and_then(|()| url.set_password(password.map(encode).as_deref()))
        .expect("a URL with a host takes a port, user and password");
    url.set_path(&encode(database));
    url.query_pairs_mut().append_pair("sslmode", "disable");
    url.into()
}

pub(crate) fn db_err(what: &str, e: tokio_postgres::Error) -> ProviderError {
    // The message of a database error is in `as_db_error`; `Display` of the
    // outer error is only "db error".
    let message = match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{}: {}", db.message(), detail),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    };
    ProviderError::failed(what, message)
}

/// A role as flyplan declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: String,
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    /// -1 for no limit.
    pub connection_limit: i32,
    pub member_of: BTreeSet<String>,
}

/// A role as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleInfo {
    pub spec: RoleSpec,
    /// The stored password verifier (`SCRAM-SHA-256$...`), when readable.
    pub verifier: Option<String>,
    pub managed: bool,
}

/// A database as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    pub owner: String,
}

/// A role's catalog row, as [`session::rows`] reads it.
#[derive(Deserialize)]
struct RoleRow {
    rolname: String,
    rolcanlogin: bool,
    rolsuper: bool,
    rolcreatedb: bool,
    rolcreaterole: bool,
    rolreplication: bool,
    rolconnlimit: i32,
    rolpassword: Option<String>,
    managed: bool,
    member_of: Vec<String>,
}

/// Roles with what flyplan reads of them; `filter` is the `where` clause.
fn role_query(filter: &str) -> String {
    format!(
        "select a.rolname, a.rolcanlogin, a.rolsuper, a.rolcreatedb, a.rolcreaterole, \
                a.rolreplication, a.rolconnlimit, a.rolpassword, \
                coalesce(shobj_description(a.oid, 'pg_authid') = {managed}, false) as managed, \
                coalesce(array(select g.rolname::text from pg_auth_members m \
                               join pg_roles g on g.oid = m.roleid \
                               where m.member = a.oid order by 1), '{{}}') as member_of \
         from pg_authid a where {filter} order by a.rolname",
        managed = escape_literal(MANAGED_COMMENT)
    )
}

impl From<RoleRow> for RoleInfo {
    fn from(row: RoleRow) -> Self {
        RoleInfo {
            spec: RoleSpec {
                name: row.rolname,
                login: row.rolcanlogin,
                superuser: row.rolsuper,
                createdb: row.rolcreatedb,
                createrole: row.rolcreaterole,
                replication: row.rolreplication,
                connection_limit: row.rolconnlimit,
                member_of: row.member_of.into_iter().collect(),
            },
            verifier: row.rolpassword,
            managed: row.managed,
        }
    }
}

/// Read one role (needs superuser for the verifier).
pub async fn read_role(s: &impl Session, name: &str) -> Result<Option<RoleInfo>, ProviderError> {
    let q = role_query(&format!("a.rolname = {}", escape_literal(name)));
    let rows: Vec<RoleRow> = session::rows(s, &format!("reading role {name}"), &q).await?;
    Ok(rows.into_iter().next().map(RoleInfo::from))
}

/// Roles that flyplan manages (commented as such) plus `extra` by name.
pub async fn read_managed_roles(
    s: &impl Session,
    extra: &[&str],
) -> Result<Vec<RoleInfo>, ProviderError> {
    let names: Vec<String> = extra.iter().map(|n| escape_literal(n)).collect();
    let q = role_query(&format!(
        "shobj_description(a.oid, 'pg_authid') = {} or a.rolname = any(array[{}]::text[])",
        escape_literal(MANAGED_COMMENT),
        names.join(", ")
    ));
    let rows: Vec<RoleRow> = session::rows(s, "reading roles", &q).await?;
    Ok(rows.into_iter().map(RoleInfo::from).collect())
}

fn role_options(spec: &RoleSpec) -> String {
    let flag = |on: bool, name: &str| {
        if on {
            name.to_string()
        } else {
            format!("NO{name}")
        }
    };
    format!(
        "{} {} {} {} {} CONNECTION LIMIT {}",
        flag(spec.login, "LOGIN"),
        flag(spec.superuser, "SUPERUSER"),
        flag(spec.createdb, "CREATEDB"),
        flag(spec.createrole, "CREATEROLE"),
        flag(spec.replication, "REPLICATION"),
        spec.connection_limit
    )
}

/// Whether anything was changed by an `ensure_*` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    None,
}

/// Create or alter a role so it matches `spec`, set its password when
/// `password` is given and the stored verifier does not already match it,
/// and mark it as managed by flyplan.
///
/// The password is hashed here (SCRAM-SHA-256) and sent as a verifier, so
/// the clear text never reaches the server or its logs.
///
/// # Errors
/// Any SQL error, with the statement's purpose (never the password).
pub async fn ensure_role(
    s: &impl Session,
    spec: &RoleSpec,
    password: Option<&str>,
) -> Result<Change, ProviderError> {
    let ident = escape_identifier(&spec.name);
    let what = format!("role {}", spec.name);
    let current = read_role(s, &spec.name).await?;
    let mut change = Change::None;
    match &current {
        None => {
            s.run(
                &format!("creating {what}"),
                &format!("CREATE ROLE {ident} {}", role_options(spec)),
            )
            .await?;
            change = Change::Created;
        }
        Some(info) => {
            let mut now = info.spec.clone();
            now.member_of = spec.member_of.clone();
            if now != *spec {
                s.run(
                    &format!("altering {what}"),
                    &format!("ALTER ROLE {ident} {}", role_options(spec)),
                )
                .await?;
                change = Change::Updated;
            }
        }
    }
    let had: BTreeSet<String> = current
        .as_ref()
        .map(|i| i.spec.member_of.clone())
        .unwrap_or_default();
    for group in spec.member_of.difference(&had) {
        s.run(
            &format!("granting {group} to {what}"),
            &format!("GRANT {} TO {ident}", escape_identifier(group)),
        )
        .await?;
        change = change.or(Change::Updated);
    }
    for group in had.difference(&spec.member_of) {
        s.run(
            &format!("revoking {group} from {what}"),
            &format!("REVOKE {} FROM {ident}", escape_identifier(group)),
        )
        .await?;
        change = change.or(Change::Updated);
    }
    if let Some(password) = password {
        let matches = current
            .as_ref()
            .and_then(|i| i.verifier.as_deref())
            .map(|v| scram_verifier_matches(v, password))
            .unwrap_or(false);
        if !matches {
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            s.run_unrecorded(
                &format!("setting the password of {what}"),
                &format!("ALTER ROLE {ident} PASSWORD {}", escape_literal(&verifier)),
            )
            .await?;
            change = change.or(Change::Updated);
        }
    }
    if !current.as_ref().is_some_and(|i| i.managed) {
        s.run(
            &format!("marking {what} as managed"),
            &format!(
                "COMMENT ON ROLE {ident} IS {}",
                escape_literal(MANAGED_COMMENT)
            ),
        )
        .await?;
        change = change.or(Change::Updated);
    }
    Ok(change)
}

impl Change {
    /// `Updated` unless something was already recorded.
    pub fn or_updated(self) -> Change {
        self.or(Change::Updated)
    }

    fn or(self, other: Change) -> Change {
        if self == Change::None {
            other
        } else {
            self
        }
    }
}

/// Databases other than templates and `postgres`.
pub async fn read_databases(s: &impl Session) -> Result<Vec<DatabaseInfo>, ProviderError> {
    #[derive(Deserialize)]
    struct Row {
        datname: String,
        owner: String,
    }
    let rows: Vec<Row> = session::rows(
        s,
        "reading databases",
        "select d.datname, pg_get_userbyid(d.datdba) as owner from pg_database d \
         where not d.datistemplate and d.datname <> 'postgres' order by 1",
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| DatabaseInfo {
            name: r.datname,
            owner: r.owner,
        })
        .collect())
}

/// Create a database with an owner, or give an existing one that owner.
pub async fn ensure_database(
    s: &impl Session,
    name: &str,
    owner: &str,
) -> Result<Change, ProviderError> {
    let current = read_databases(s)
        .await?
        .into_iter()
        .find(|d| d.name == name);
    match current {
        None => {
            s.run_alone(
                &format!("creating database {name}"),
                &format!(
                    "CREATE DATABASE {} OWNER {}",
                    escape_identifier(name),
                    escape_identifier(owner)
                ),
            )
            .await?;
            Ok(Change::Created)
        }
        Some(d) if d.owner != owner => {
            s.run(
                &format!("changing the owner of database {name}"),
                &format!(
                    "ALTER DATABASE {} OWNER TO {}",
                    escape_identifier(name),
                    escape_identifier(owner)
                ),
            )
            .await?;
            Ok(Change::Updated)
        }
        Some(_) => Ok(Change::None),
    }
}

/// Drop a database, closing its sessions. Returns false when it was absent.
pub async fn drop_database(s: &impl Session, name: &str) -> Result<bool, ProviderError> {
    let exists = read_databases(s).await?.iter().any(|d| d.name == name);
    if !exists {
        return Ok(false);
    }
    s.run_alone(
        &format!("dropping database {name}"),
        &format!("DROP DATABASE {} WITH (FORCE)", escape_identifier(name)),
    )
    .await?;
    Ok(true)
}

/// Names of all databases that accept connections (for per-database work).
pub async fn connectable_databases(s: &impl Session) -> Result<Vec<String>, ProviderError> {
    #[derive(Deserialize)]
    struct Row {
        datname: String,
    }
    let rows: Vec<Row> = session::rows(
        s,
        "listing databases",
        "select datname from pg_database where datallowconn order by 1",
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.datname).collect())
}

/// In the connected database: give what `role` owns to `new_owner` and drop
/// its remaining privileges, so the role can be dropped.
pub async fn reassign_and_drop_owned(
    s: &impl Session,
    role: &str,
    new_owner: &str,
) -> Result<(), ProviderError> {
    s.run(
        &format!("releasing what role {role} owns"),
        &format!(
            "REASSIGN OWNED BY {r} TO {o}; DROP OWNED BY {r}",
            r = escape_identifier(role),
            o = escape_identifier(new_owner)
        ),
    )
    .await
}

/// Drop a role. Returns false when it was absent.
pub async fn drop_role(s: &impl Session, name: &str) -> Result<bool, ProviderError> {
    if read_role(s, name).await?.is_none() {
        return Ok(false);
    }
    s.run(
        &format!("dropping role {name}"),
        &format!("DROP ROLE {}", escape_identifier(name)),
    )
    .await?;
    Ok(true)
}

/// The effective number of synchronous standbys of a primary, read from its
/// `synchronous_standby_names` (`ANY k (...)`, `FIRST k (...)`, `k (...)`,
/// or a plain list meaning 1).
pub fn sync_standby_count(synchronous_standby_names: &str) -> u32 {
    let s = synchronous_standby_names.trim();
    if s.is_empty() {
        return 0;
    }
    let rest = s
        .strip_prefix("ANY ")
        .or_else(|| s.strip_prefix("FIRST "))
        .or_else(|| s.strip_prefix("any "))
        .or_else(|| s.strip_prefix("first "))
        .unwrap_or(s)
        .trim_start();
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().unwrap_or(1)
}

type HmacSha256 = Hmac<Sha256>;

/// Whether a stored SCRAM-SHA-256 verifier
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`) was made
/// from `password` (RFC 5802: SaltedPassword = PBKDF2-HMAC-SHA256,
/// ClientKey = HMAC(SaltedPassword, "Client Key"), StoredKey = H(ClientKey)).
///
/// The password is used as given (no SASLprep), which is what PostgreSQL
/// does for passwords that are not valid UTF-8 and equivalent for ASCII.
pub fn scram_verifier_matches(verifier: &str, password: &str) -> bool {
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((iter_salt, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = iter_salt.split_once(':') else {
        return false;
    };
    let Some((stored_key, _server_key)) = keys.split_once(':') else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(iterations), Ok(salt), Ok(stored_key)) = (
        iterations.parse::<u32>(),
        b64.decode(salt),
        b64.decode(stored_key),
    ) else {
        return false;
    };
    let mut salted = [0u8; 32];
    if pbkdf2::pbkdf2::<HmacSha256>(password.as_bytes(), &salt, iterations, &mut salted).is_err() {
        return false;
    }
    let Ok(mut mac) = HmacSha256::new_from_slice(&salted) else {
        return false;
    };
    mac.update(b"Client Key");
    let client_key = mac.finalize().into_bytes();
    let computed = Sha256::digest(client_key);
    // Not secret-dependent timing that matters here (the verifier is ours),
    // but compare in full anyway.
    computed.len() == stored_key.len()
        && computed
            .iter()
            .zip(stored_key.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted_with_embedded_quotes_doubled() {
        assert_eq!(escape_identifier("app"), r#""app""#);
        assert_eq!(escape_identifier("Select"), r#""Select""#);
        assert_eq!(
            escape_identifier(r#"My "odd" role"#),
            r#""My ""odd"" role""#
        );
        // A backslash means nothing inside an identifier.
        assert_eq!(escape_identifier(r"a\b"), r#""a\b""#);
    }

    #[test]
    fn literals_double_quotes_and_use_the_escape_form_for_backslashes() {
        assert_eq!(escape_literal("it's"), "'it''s'");
        assert_eq!(escape_literal(MANAGED_COMMENT), "'managed by flyplan'");
        // With a backslash the E'' form is used, so the value reads the same
        // whatever standard_conforming_strings says; the leading space keeps
        // it apart from whatever precedes it in the statement.
        assert_eq!(escape_literal(r"a\b'"), r" E'a\\b'''");
    }

    #[test]
    fn a_multi_host_url_lists_every_node_and_asks_for_the_writable_one() {
        let url = connection_url("127.0.0.1", 5432, "u", Some("p@ss:/"), "db");
        let hosts = [
            ("127.0.0.1".to_string(), 6001),
            ("127.0.0.1".to_string(), 6002),
        ];
        assert_eq!(
            multi_host_url(&url, &hosts).unwrap(),
            "postgres://u:p%40ss%3A%2F@127.0.0.1:6001,127.0.0.1:6002/db\
             ?sslmode=disable&target_session_attrs=read-write"
        );
        assert_eq!(multi_host_url(&url, &[]), None);
        assert_eq!(multi_host_url("not a url", &hosts), None);
    }

    #[test]
    fn connection_urls_percent_encode_what_is_not_plain() {
        assert_eq!(
            connection_url("127.0.0.1", 5432, "my_app", Some("Ab9"), "my_app"),
            "postgres://my_app:Ab9@127.0.0.1:5432/my_app?sslmode=disable"
        );
        assert_eq!(
            connection_url("h", 1, "a b", Some("p@ss:/"), "d"),
            "postgres://a%20b:p%40ss%3A%2F@h:1/d?sslmode=disable"
        );
        assert_eq!(
            connection_url("pg-x.flycast", 5432, "u", Some("50%+!é"), "d b/c"),
            "postgres://u:50%25%2B%21%C3%A9@pg-x.flycast:5432/d%20b%2Fc?sslmode=disable"
        );
        assert_eq!(
            connection_url("127.0.0.1", 6001, "autoctl_node", None, "pg_auto_failover"),
            "postgres://autoctl_node@127.0.0.1:6001/pg_auto_failover?sslmode=disable"
        );
    }

    #[test]
    fn scram_verifier_made_by_postgres_protocol_matches_its_password() {
        let v = postgres_protocol::password::scram_sha_256(b"s3cret 'x'");
        assert!(scram_verifier_matches(&v, "s3cret 'x'"));
        assert!(!scram_verifier_matches(&v, "other"));
        assert!(!scram_verifier_matches("md5abc", "s3cret"));
    }

    #[test]
    fn sync_standby_count_reads_any_and_first_forms() {
        assert_eq!(sync_standby_count(""), 0);
        assert_eq!(sync_standby_count("ANY 1 (a, b)"), 1);
        assert_eq!(sync_standby_count("FIRST 2 (a, b)"), 2);
        assert_eq!(sync_standby_count("a, b"), 1);
    }
}

//! Declared users (`[[postgres.users]]`, the operator) and databases.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::Primary;
use crate::model::{attr, Address, Kind, Resource};
use crate::provider::ProviderError;
use crate::sql::{self, Change, RoleSpec};

/// The name in `user.<name>` / `database.<name>`.
pub fn name_of(r: &Resource, prefix: &str) -> String {
    r.str(attr::NAME).map(str::to_string).unwrap_or_else(|| {
        r.address
            .as_str()
            .strip_prefix(prefix)
            .unwrap_or(r.address.as_str())
            .to_string()
    })
}

pub fn role_spec(r: &Resource) -> RoleSpec {
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

/// Create or alter a declared role; `password` is its secret's value.
pub async fn ensure_user<P: Primary>(
    p: &P,
    r: &Resource,
    password: Option<&str>,
) -> Result<bool, ProviderError> {
    let c = p.connect("postgres").await?;
    let change = sql::ensure_role(&c, &role_spec(r), password).await?;
    Ok(change != Change::None)
}

/// Drop a role after giving what it owns, in every database, to the admin
/// role. Returns false when it was absent.
pub async fn remove_user<P: Primary>(p: &P, r: &Resource) -> Result<bool, ProviderError> {
    let name = name_of(r, "user.");
    if name == p.admin_role() {
        return Err(ProviderError::failed(
            format!("user {name}"),
            "the superuser flyplan connects as cannot be dropped",
        ));
    }
    let c = p.connect("postgres").await?;
    if sql::read_role(&c, &name).await?.is_none() {
        return Ok(false);
    }
    release_owned(p, &c, &name).await?;
    sql::drop_role(&c, &name).await
}

/// In every database: what `role` owns goes to the admin role, and its
/// remaining privileges are dropped.
pub async fn release_owned<P: Primary>(p: &P, c: &Client, role: &str) -> Result<(), ProviderError> {
    for dbname in sql::connectable_databases(c).await? {
        let dc = p.connect(&dbname).await?;
        sql::reassign_and_drop_owned(&dc, role, p.admin_role()).await?;
    }
    Ok(())
}

pub async fn ensure_database<P: Primary>(p: &P, r: &Resource) -> Result<bool, ProviderError> {
    let name = name_of(r, "database.");
    let owner = r
        .str(attr::OWNER)
        .map(str::to_string)
        .unwrap_or_else(|| p.admin_role().to_string());
    let c = p.connect("postgres").await?;
    Ok(sql::ensure_database(&c, &name, &owner).await? != Change::None)
}

pub async fn remove_database<P: Primary>(p: &P, r: &Resource) -> Result<bool, ProviderError> {
    let c = p.connect("postgres").await?;
    sql::drop_database(&c, &name_of(r, "database.")).await
}

/// A role's password as observe reports it: the digest and name of the
/// declared secret whose value made the verifier, if one did.
pub type PasswordMatch<'a> = &'a (dyn Fn(&str) -> Option<(String, String)> + Sync);

/// Managed roles (plus `extra` by name) and databases as the catalog shows
/// them. `password` finds which secret a verifier was made from.
pub async fn observe(
    primary: &Client,
    extra: &[&str],
    password: PasswordMatch<'_>,
) -> Result<Vec<Resource>, ProviderError> {
    let mut out = Vec::new();
    for role in sql::read_managed_roles(primary, extra).await? {
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
            match password(verifier) {
                Some((secret, digest)) => {
                    r = r
                        .with_sensitive(attr::PASSWORD, digest)
                        .with(attr::PASSWORD_SECRET, secret.as_str());
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
            Resource::new(Address::database(&d.name), Kind::Database).with(attr::OWNER, d.owner),
        );
    }
    Ok(out)
}

//! Declared users (`[[postgres.users]]`, the operator) and databases.

use super::Primary;
use crate::model::{Address, DatabaseSpec, Digest as ModelDigest, Resource, Spec, UserSpec};
use crate::provider::ProviderError;
use crate::sql::{self, Change, RoleSpec, Session};
use sha2::{Digest, Sha256};

/// The name in `user.<name>` / `database.<name>`.
pub fn name_of(r: &Resource) -> String {
    r.address.name().to_string()
}

pub fn role_spec(r: &Resource) -> RoleSpec {
    let u = r.user();
    RoleSpec {
        name: name_of(r),
        login: u.is_none_or(|u| u.login),
        superuser: u.is_some_and(|u| u.superuser),
        createdb: u.and_then(|u| u.createdb).unwrap_or(false),
        createrole: u.and_then(|u| u.createrole).unwrap_or(false),
        replication: u.and_then(|u| u.replication).unwrap_or(false),
        connection_limit: u.and_then(|u| u.connection_limit).unwrap_or(-1) as i32,
        member_of: u
            .and_then(|u| u.member_of.clone())
            .unwrap_or_default()
            .into_iter()
            .collect(),
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
    let name = name_of(r);
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
pub async fn release_owned<P: Primary>(
    p: &P,
    c: &impl Session,
    role: &str,
) -> Result<(), ProviderError> {
    for dbname in sql::connectable_databases(c).await? {
        let dc = p.connect(&dbname).await?;
        sql::reassign_and_drop_owned(&dc, role, p.admin_role()).await?;
    }
    Ok(())
}

pub async fn ensure_database<P: Primary>(p: &P, r: &Resource) -> Result<bool, ProviderError> {
    let name = name_of(r);
    let owner = match &r.spec {
        Spec::Database(d) => d.owner.clone(),
        _ => p.admin_role().to_string(),
    };
    let c = p.connect("postgres").await?;
    Ok(sql::ensure_database(&c, &name, &owner).await? != Change::None)
}

pub async fn remove_database<P: Primary>(p: &P, r: &Resource) -> Result<bool, ProviderError> {
    let c = p.connect("postgres").await?;
    sql::drop_database(&c, &name_of(r)).await
}

/// A role's password as observe reports it: the digest and name of the
/// declared secret whose value made the verifier, if one did.
pub type PasswordMatch<'a> = &'a (dyn Fn(&str) -> Option<(String, String)> + Sync);

/// Managed roles (plus `extra` by name) and databases as the catalog shows
/// them. `password` finds which secret a verifier was made from.
pub async fn observe(
    primary: &impl Session,
    extra: &[&str],
    password: PasswordMatch<'_>,
) -> Result<Vec<Resource>, ProviderError> {
    let mut out = Vec::new();
    for role in sql::read_managed_roles(primary, extra).await? {
        let s = &role.spec;
        let mut u = UserSpec {
            connection_limit: Some(i64::from(s.connection_limit)),
            createdb: Some(s.createdb),
            createrole: Some(s.createrole),
            login: s.login,
            managed_by: role.managed.then(|| "flyplan".to_string()),
            member_of: Some(s.member_of.iter().cloned().collect()),
            password: None,
            password_secret: None,
            replication: Some(s.replication),
            superuser: s.superuser,
        };
        if let Some(verifier) = role.verifier.as_deref() {
            match password(verifier) {
                Some((secret, digest)) => {
                    u.password = Some(ModelDigest(digest));
                    u.password_secret = Some(secret);
                }
                None => {
                    let d = Sha256::digest(format!("unknown\0{verifier}").as_bytes());
                    u.password = Some(ModelDigest(format!("sha256:{}", hex::encode(d))));
                }
            }
        }
        out.push(Resource::new(Address::user(&s.name), Spec::User(u)));
    }
    for d in sql::read_databases(primary).await? {
        out.push(Resource::new(
            Address::database(&d.name),
            Spec::Database(DatabaseSpec { owner: d.owner }),
        ));
    }
    Ok(out)
}

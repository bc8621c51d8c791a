//! Attachments in SQL: the role and database an attached app gets, the
//! privileges Fly gives it, and how flyplan finds them again in the catalog.
//!
//! An attachment role carries a comment (`flyplan attachment {json}`) naming
//! the consumer app, its variable and database, and a digest of the password
//! verifier flyplan set. The consumer's secret is written with the same
//! digest, so a password changed by hand (new verifier) or a secret that
//! fell behind is seen without hashing any password.

use postgres_protocol::escape::{escape_identifier, escape_literal};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::session::{self, Session};
use super::{read_role, Change};
use crate::error::ProviderError;

/// The start of the comment on an attachment role.
pub const ATTACHMENT_COMMENT_PREFIX: &str = "flyplan attachment ";

/// An attachment as fly.toml declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSpec {
    /// The consumer app.
    pub app: String,
    pub database: String,
    pub user: String,
    /// The secret set on the consumer app (`DATABASE_URL`).
    pub variable: String,
    pub superuser: bool,
}

/// What the comment on an attachment role records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentMark {
    pub app: String,
    pub database: String,
    pub variable: String,
    /// [`verifier_digest`] of the password verifier flyplan set.
    pub verifier: String,
}

/// An attachment as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentInfo {
    pub user: String,
    pub mark: AttachmentMark,
    pub superuser: bool,
    pub login: bool,
    /// The role's verifier is still the one flyplan set.
    pub password_unchanged: bool,
    pub database_exists: bool,
}

/// A digest of a stored password verifier: recorded beside the secret so
/// a changed password is noticed by comparing digests.
pub fn verifier_digest(verifier: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(
            format!("flyplan-verifier-v1\0{verifier}").as_bytes()
        ))
    )
}

/// Attachment roles of the connected cluster, with their database's
/// existence and whether their password is still the one flyplan set.
pub async fn read_attachments(s: &impl Session) -> Result<Vec<AttachmentInfo>, ProviderError> {
    #[derive(Deserialize)]
    struct Row {
        rolname: String,
        rolsuper: bool,
        rolcanlogin: bool,
        rolpassword: Option<String>,
        comment: String,
    }
    let rows: Vec<Row> = session::rows(
        s,
        "reading attachments",
        &format!(
            "select a.rolname, a.rolsuper, a.rolcanlogin, a.rolpassword, \
                    shobj_description(a.oid, 'pg_authid') as comment \
             from pg_authid a \
             where shobj_description(a.oid, 'pg_authid') like {} \
             order by a.rolname",
            escape_literal(&format!("{ATTACHMENT_COMMENT_PREFIX}%"))
        ),
    )
    .await?;
    let databases: std::collections::BTreeSet<String> =
        super::connectable_databases(s).await?.into_iter().collect();
    let mut out = Vec::new();
    for row in rows {
        let user = row.rolname;
        let comment = row.comment;
        let Ok(mark) = serde_json::from_str::<AttachmentMark>(
            comment
                .strip_prefix(ATTACHMENT_COMMENT_PREFIX)
                .unwrap_or_default(),
        ) else {
            tracing::warn!(role = %user, "an attachment comment flyplan cannot read");
            continue;
        };
        let verifier = row.rolpassword;
        out.push(AttachmentInfo {
            password_unchanged: verifier.as_deref().map(verifier_digest).as_deref()
                == Some(mark.verifier.as_str()),
            database_exists: databases.contains(&mark.database),
            superuser: row.rolsuper,
            login: row.rolcanlogin,
            user,
            mark,
        });
    }
    Ok(out)
}

/// Make the role and database of an attachment on the primary (`admin`, a
/// superuser connection): the role with login and Fly's superuser flag, a
/// new password when `password` is given (sent as a SCRAM verifier, never
/// in clear text), and the database, owned by the role when it is new.
///
/// Returns what changed and the verifier digest to record with the secret
/// (the current one when the password was kept).
///
/// # Errors
/// Any SQL error; a role of that name that is not this attachment's; a
/// kept password whose verifier is gone.
pub async fn ensure_attachment(
    admin: &impl Session,
    spec: &AttachmentSpec,
    password: Option<&str>,
) -> Result<(Change, String), ProviderError> {
    let ident = escape_identifier(&spec.user);
    let what = format!("attachment {} (role {})", spec.app, spec.user);
    let current = read_role(admin, &spec.user).await?;
    #[derive(Deserialize)]
    struct CommentRow {
        comment: Option<String>,
    }
    let comment: Option<String> = session::rows::<CommentRow>(
        admin,
        &format!("reading {what}"),
        &format!(
            "select shobj_description(oid, 'pg_authid') as comment from pg_authid \
             where rolname = {}",
            escape_literal(&spec.user)
        ),
    )
    .await?
    .into_iter()
    .next()
    .and_then(|r| r.comment);
    let mark_of = |c: &str| {
        c.strip_prefix(ATTACHMENT_COMMENT_PREFIX)
            .and_then(|j| serde_json::from_str::<AttachmentMark>(j).ok())
    };
    let ours = comment
        .as_deref()
        .and_then(mark_of)
        .is_some_and(|m| m.app == spec.app);
    if current.is_some() && !ours {
        return Err(ProviderError::failed(
            &what,
            format!(
                "role {} already exists and was not made by this attachment; \
                 set `user` in the attachment to another name",
                spec.user
            ),
        ));
    }

    let superuser = if spec.superuser {
        "SUPERUSER"
    } else {
        "NOSUPERUSER"
    };
    // Role, password and mark go in one batch (one transaction), so a role
    // is never left without the mark that says whose it is.
    let mut statements = Vec::new();
    let mut change = Change::None;
    match &current {
        None => {
            statements.push(format!(
                "CREATE ROLE {ident} LOGIN {superuser} NOCREATEDB NOCREATEROLE NOREPLICATION"
            ));
            change = Change::Created;
        }
        Some(info) if info.spec.superuser != spec.superuser || !info.spec.login => {
            statements.push(format!("ALTER ROLE {ident} LOGIN {superuser}"));
            change = Change::Updated;
        }
        Some(_) => {}
    }
    let verifier = match password {
        Some(password) => {
            let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
            statements.push(format!(
                "ALTER ROLE {ident} PASSWORD {}",
                escape_literal(&verifier)
            ));
            change = change.or(Change::Updated);
            verifier
        }
        None => current
            .as_ref()
            .and_then(|i| i.verifier.clone())
            .ok_or_else(|| ProviderError::failed(&what, "the role has no password to keep"))?,
    };
    let mark = AttachmentMark {
        app: spec.app.clone(),
        database: spec.database.clone(),
        variable: spec.variable.clone(),
        verifier: verifier_digest(&verifier),
    };
    let wanted_comment = format!(
        "{ATTACHMENT_COMMENT_PREFIX}{}",
        serde_json::to_string(&mark).expect("a mark serialises")
    );
    if comment.as_deref() != Some(wanted_comment.as_str()) {
        statements.push(format!(
            "COMMENT ON ROLE {ident} IS {}",
            escape_literal(&wanted_comment)
        ));
        change = change.or(Change::Updated);
    }
    if !statements.is_empty() {
        admin
            .run_unrecorded(&format!("making {what}"), &statements.join("; "))
            .await?;
    }

    let exists = session::rows::<serde_json::Value>(
        admin,
        &format!("looking up database {}", spec.database),
        &format!(
            "select 1 as found from pg_database where datname = {}",
            escape_literal(&spec.database)
        ),
    )
    .await?
    .into_iter()
    .next()
    .is_some();
    if !exists {
        admin
            .run_alone(
                &format!("creating database {}", spec.database),
                &format!(
                    "CREATE DATABASE {} OWNER {ident}",
                    escape_identifier(&spec.database)
                ),
            )
            .await?;
        change = change.or(Change::Created);
    }
    admin
        .run(
            &format!("granting database {} to {what}", spec.database),
            &format!(
                "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {ident}",
                escape_identifier(&spec.database)
            ),
        )
        .await?;
    Ok((change, mark.verifier))
}

/// In the attachment's database (`db`, a superuser connection to it): the
/// read/write privileges of an attachment made with `superuser = false`:
/// use and create in schema `public`, read and write its tables and
/// sequences, now and for tables made later by the database owner.
pub async fn grant_read_write(db: &impl Session, user: &str) -> Result<(), ProviderError> {
    #[derive(Deserialize)]
    struct Row {
        owner: String,
    }
    let ident = escape_identifier(user);
    let owner = session::rows::<Row>(
        db,
        "reading the database owner",
        "select pg_get_userbyid(datdba) as owner from pg_database \
         where datname = current_database()",
    )
    .await?
    .into_iter()
    .next()
    .map(|r| r.owner)
    .ok_or_else(|| ProviderError::failed("reading the database owner", "no such database"))?;
    let mut sql = format!(
        "GRANT USAGE, CREATE ON SCHEMA public TO {ident}; \
         GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER \
           ON ALL TABLES IN SCHEMA public TO {ident}; \
         GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {ident};"
    );
    if owner != user {
        sql.push_str(&format!(
            " ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public \
               GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLES TO {ident}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA public \
               GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {ident};",
            o = escape_identifier(&owner)
        ));
    }
    db.run(&format!("granting read/write to role {user}"), &sql)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_digest_hides_the_verifier_and_tells_them_apart() {
        let a = verifier_digest("SCRAM-SHA-256$4096:abc$x:y");
        assert!(a.starts_with("sha256:"));
        assert!(!a.contains("abc"));
        assert_ne!(a, verifier_digest("SCRAM-SHA-256$4096:abd$x:y"));
    }

    #[test]
    fn the_mark_round_trips_through_the_comment() {
        let m = AttachmentMark {
            app: "myapp".into(),
            database: "myapp".into(),
            variable: "DATABASE_URL".into(),
            verifier: "sha256:00".into(),
        };
        let c = format!(
            "{ATTACHMENT_COMMENT_PREFIX}{}",
            serde_json::to_string(&m).unwrap()
        );
        let back: AttachmentMark =
            serde_json::from_str(c.strip_prefix(ATTACHMENT_COMMENT_PREFIX).unwrap()).unwrap();
        assert_eq!(back, m);
    }
}

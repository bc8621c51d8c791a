//! Attachments: the role, database and privileges of an attached app on the
//! primary, and its URL in the consumer app's secrets.

use std::collections::BTreeSet;

use super::{ConsumerSecrets, ConsumerVar, Primary};
use crate::model::{Address, AttachmentSpec as Attached, Resource, Spec};
use crate::provider::ProviderError;
use crate::sql::attach::{self, AttachmentInfo, AttachmentSpec};
use crate::sql::{self, Change, Session};

/// `credentials` of an attachment whose role, password and secret agree.
pub const VALID: &str = "valid";

/// The declared attachment a resource describes.
pub fn spec_of(r: &Resource) -> AttachmentSpec {
    let app = r.address.name().to_string();
    match r.attachment() {
        Some(a) => AttachmentSpec {
            database: a.database.clone(),
            user: a.user.clone(),
            variable: a.variable.clone(),
            superuser: a.superuser.unwrap_or(true),
            app,
        },
        None => {
            let derived = crate::config::identifier_for_app(&app);
            AttachmentSpec {
                database: derived.clone(),
                user: derived,
                variable: "DATABASE_URL".to_string(),
                superuser: true,
                app,
            }
        }
    }
}

/// Why an attachment needs a new password, or [`VALID`].
pub fn credentials(info: &AttachmentInfo, secret: Option<&ConsumerVar>) -> &'static str {
    if !info.database_exists {
        return "database missing";
    }
    if !info.login {
        return "login disabled outside flyplan";
    }
    if !info.password_unchanged {
        return "password changed outside flyplan";
    }
    let Some(s) = secret else {
        return "secret missing";
    };
    if !s.current || s.verifier != info.mark.verifier || s.user != info.user {
        return "secret out of date";
    }
    VALID
}

fn find<'a>(vars: &'a [ConsumerVar], app: &str, variable: &str) -> Option<&'a ConsumerVar> {
    vars.iter().find(|v| v.app == app && v.variable == variable)
}

/// Attachments as the primary's catalog and the consumer secrets show them.
/// One whose role was dropped by hand is still seen through its secret.
pub async fn observe<S: ConsumerSecrets>(
    primary: &impl Session,
    secrets: &S,
) -> Result<Vec<Resource>, ProviderError> {
    let vars = secrets.list().await?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for info in attach::read_attachments(primary).await? {
        let app = info.mark.app.clone();
        let credentials = credentials(&info, find(&vars, &app, &info.mark.variable));
        seen.insert(app.clone());
        out.push(Resource::new(
            Address::attachment(&app),
            Spec::Attachment(Attached {
                credentials: credentials.to_string(),
                database: info.mark.database.clone(),
                superuser: Some(info.superuser),
                user: info.user.clone(),
                variable: info.mark.variable.clone(),
            }),
        ));
    }
    for v in vars {
        if seen.insert(v.app.clone()) {
            out.push(secret_only(&v, "role missing"));
        }
    }
    Ok(out)
}

/// Attachments known from consumer secrets alone, when no primary answers:
/// their credentials cannot be checked.
pub async fn observe_unverified<S: ConsumerSecrets>(
    secrets: &S,
) -> Result<Vec<Resource>, ProviderError> {
    Ok(secrets
        .list()
        .await?
        .iter()
        .map(|v| secret_only(v, "unverified (no primary)"))
        .collect())
}

fn secret_only(v: &ConsumerVar, credentials: &str) -> Resource {
    Resource::new(
        Address::attachment(&v.app),
        Spec::Attachment(Attached {
            credentials: credentials.to_string(),
            database: v.database.clone(),
            superuser: None,
            user: v.user.clone(),
            variable: v.variable.clone(),
        }),
    )
}

/// Attach: role, database and privileges on the primary, then the URL on
/// the consumer app. While role, password and secret agree the password is
/// kept; otherwise a new one is generated and the secret set again.
pub async fn ensure<P: Primary, S: ConsumerSecrets>(
    p: &P,
    secrets: &S,
    r: &Resource,
) -> Result<bool, ProviderError> {
    let spec = spec_of(r);
    let c = p.connect("postgres").await?;
    let vars = secrets.list().await?;
    let info = attach::read_attachments(&c)
        .await?
        .into_iter()
        .find(|i| i.user == spec.user && i.mark.app == spec.app);
    // The secret set last time, under the variable it was set as.
    let old_variable = info.as_ref().map(|i| i.mark.variable.clone());
    let old = old_variable
        .as_deref()
        .and_then(|v| find(&vars, &spec.app, v));
    let keep = info.as_ref().is_some_and(|i| {
        credentials(i, old) == VALID
            && i.mark.database == spec.database
            && i.mark.variable == spec.variable
    });
    let fresh = (!keep).then(crate::secrets::generate_password);
    let (mut change, verifier) = attach::ensure_attachment(&c, &spec, fresh.as_deref()).await?;
    if !spec.superuser {
        let dc = p.connect(&spec.database).await?;
        attach::grant_read_write(&dc, &spec.user).await?;
    }
    if let Some(password) = fresh {
        if let Some(old) = old_variable.filter(|v| *v != spec.variable) {
            secrets.unset(&spec.app, &old).await?;
        }
        let var = ConsumerVar {
            app: spec.app.clone(),
            variable: spec.variable.clone(),
            database: spec.database.clone(),
            user: spec.user.clone(),
            verifier,
            current: true,
        };
        let url = secrets.url(&spec.user, &password, &spec.database)?;
        secrets.set(&var, &url).await?;
        change = change.or_updated();
    }
    Ok(change != Change::None)
}

/// Detach: what the role owns in every database goes to the admin role,
/// the role is dropped and the consumer's variable unset. The database
/// stays.
pub async fn remove<P: Primary, S: ConsumerSecrets>(
    p: &P,
    secrets: &S,
    r: &Resource,
) -> Result<bool, ProviderError> {
    let spec = spec_of(r);
    let c = p.connect("postgres").await?;
    let ours = attach::read_attachments(&c)
        .await?
        .into_iter()
        .any(|i| i.user == spec.user && i.mark.app == spec.app);
    let mut dropped = false;
    // A role that is not this attachment's is left alone.
    if ours {
        super::roles::release_owned(p, &c, &spec.user).await?;
        dropped = sql::drop_role(&c, &spec.user).await?;
    }
    let unset = secrets.unset(&spec.app, &spec.variable).await?;
    Ok(dropped || unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_reads_the_attachment_and_an_unknown_superuser_flag_follows_fly() {
        let r = Resource::new(
            Address::attachment("billing-worker"),
            Spec::Attachment(Attached {
                credentials: VALID.to_string(),
                database: "billing".into(),
                superuser: None,
                user: "billing_worker".into(),
                variable: "BILLING_URL".into(),
            }),
        );
        let s = spec_of(&r);
        assert_eq!(s.app, "billing-worker");
        assert_eq!(s.user, "billing_worker");
        assert_eq!(s.database, "billing");
        assert_eq!(s.variable, "BILLING_URL");
        assert!(s.superuser);
    }

    fn info(password_unchanged: bool) -> AttachmentInfo {
        AttachmentInfo {
            user: "myapp".into(),
            mark: attach::AttachmentMark {
                app: "myapp".into(),
                database: "myapp".into(),
                variable: "DATABASE_URL".into(),
                verifier: "sha256:v1".into(),
            },
            superuser: true,
            login: true,
            password_unchanged,
            database_exists: true,
        }
    }

    fn var(verifier: &str, current: bool) -> ConsumerVar {
        ConsumerVar {
            app: "myapp".into(),
            variable: "DATABASE_URL".into(),
            database: "myapp".into(),
            user: "myapp".into(),
            verifier: verifier.into(),
            current,
        }
    }

    #[test]
    fn credentials_say_what_is_wrong() {
        assert_eq!(
            credentials(&info(true), Some(&var("sha256:v1", true))),
            VALID
        );
        assert_eq!(
            credentials(&info(false), Some(&var("sha256:v1", true))),
            "password changed outside flyplan"
        );
        assert_eq!(credentials(&info(true), None), "secret missing");
        assert_eq!(
            credentials(&info(true), Some(&var("sha256:v0", true))),
            "secret out of date"
        );
        assert_eq!(
            credentials(&info(true), Some(&var("sha256:v1", false))),
            "secret out of date"
        );
    }
}

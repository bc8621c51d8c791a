//! Attachments on the local cluster: the role and database made on the
//! primary through `crate::sql::attach`, and the consumer app's
//! `DATABASE_URL` pointing at the leader endpoint, kept in the consumer
//! store.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_postgres::Client;

use super::consumers::{ConsumerSecret, ConsumerStore};
use super::db;
use super::AppCtx;
use crate::model::{attr, Address, Kind, Resource};
use crate::provider::ProviderError;
use crate::sql::attach::{self, AttachmentInfo, AttachmentSpec};
use crate::sql::{self, Change};

/// `credentials` of an attachment whose role, password and secret agree.
pub const VALID: &str = "valid";

/// The host the local endpoint listens on.
const HOST: &str = "127.0.0.1";

/// The consumer app of an `attachment.<app>` address.
fn consumer_of(address: &Address) -> &str {
    address
        .as_str()
        .strip_prefix("attachment.")
        .unwrap_or(address.as_str())
}

/// The declared attachment a resource describes.
pub fn spec_of(r: &Resource) -> AttachmentSpec {
    let app = consumer_of(&r.address).to_string();
    let derived = crate::config::identifier_for_app(&app);
    AttachmentSpec {
        database: r.str(attr::DATABASE).unwrap_or(&derived).to_string(),
        user: r.str(attr::USER).unwrap_or(&derived).to_string(),
        variable: r.str(attr::VARIABLE).unwrap_or("DATABASE_URL").to_string(),
        superuser: r.bool(attr::SUPERUSER).unwrap_or(true),
        app,
    }
}

/// The password in a URL made by `sql::attach::connection_url` (generated
/// passwords are alphanumeric, so no decoding is needed).
fn password_in(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("postgres://")?;
    let (userinfo, _) = rest.split_once('@')?;
    Some(userinfo.split_once(':')?.1)
}

impl AppCtx<'_> {
    fn consumers(&self) -> ConsumerStore {
        ConsumerStore::new(self.state_dir())
    }

    fn endpoint_port(&self) -> Result<u16, ProviderError> {
        self.endpoint()?.map(|e| e.port).ok_or_else(|| {
            ProviderError::failed(
                format!("app {}", self.name),
                "the leader endpoint does not exist yet (create endpoint first)",
            )
        })
    }

    /// Why an attachment's credentials need a new password, or [`VALID`].
    fn credentials(
        &self,
        info: &AttachmentInfo,
        secret: Option<&ConsumerSecret>,
        port: Option<u16>,
    ) -> &'static str {
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
        let current = password_in(&s.value).zip(port).map(|(pw, port)| {
            attach::connection_url(HOST, port, &info.user, pw, &info.mark.database)
        });
        if s.verifier != info.mark.verifier || current.as_deref() != Some(s.value.as_str()) {
            return "secret out of date";
        }
        VALID
    }

    /// Attachments as the primary's catalog and the consumer store show
    /// them. An attachment whose role was dropped by hand is still seen
    /// through its consumer secret.
    pub async fn observe_attachments(
        &self,
        primary: &Client,
    ) -> Result<Vec<Resource>, ProviderError> {
        let port = self.endpoint()?.map(|e| e.port);
        let secrets = self.consumers().set_by(self.name)?;
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for info in attach::read_attachments(primary).await? {
            let app = info.mark.app.clone();
            let secret = secrets
                .iter()
                .find(|(a, v, _)| *a == app && *v == info.mark.variable)
                .map(|(_, _, s)| s);
            let credentials = self.credentials(&info, secret, port);
            seen.insert(app.clone());
            out.push(
                Resource::new(Address::attachment(&app), Kind::Attachment)
                    .with(attr::DATABASE, info.mark.database.as_str())
                    .with(attr::USER, info.user.as_str())
                    .with(attr::VARIABLE, info.mark.variable.as_str())
                    .with(attr::SUPERUSER, info.superuser)
                    .with(attr::CREDENTIALS, credentials),
            );
        }
        for (app, variable, s) in secrets {
            if seen.insert(app.clone()) {
                out.push(secret_only(&app, &variable, &s, "role missing"));
            }
        }
        Ok(out)
    }

    /// Attachments known from the consumer store alone, when no primary
    /// answers: their credentials cannot be checked.
    pub fn attachments_unverified(&self) -> Result<Vec<Resource>, ProviderError> {
        Ok(self
            .consumers()
            .set_by(self.name)?
            .iter()
            .map(|(app, variable, s)| secret_only(app, variable, s, "unverified (no primary)"))
            .collect())
    }

    /// Attach: role, password, database and privileges on the primary, then
    /// the URL on the consumer app. A password that still matches the
    /// consumer's secret is kept; otherwise a new one is generated.
    pub fn ensure_attachment(&self, r: &Resource) -> Result<bool, ProviderError> {
        let spec = spec_of(r);
        let port = self.endpoint_port()?;
        let store = self.consumers();
        let stored = store.read(&spec.app)?;
        db::block_on(async {
            let c = self
                .primary_client("postgres", Duration::from_secs(60))
                .await?;
            let info = attach::read_attachments(&c)
                .await?
                .into_iter()
                .find(|i| i.user == spec.user && i.mark.app == spec.app);
            // The secret set last time, under the variable it was set as.
            let old_variable = info.as_ref().map(|i| i.mark.variable.clone());
            let secret = old_variable
                .as_deref()
                .and_then(|v| stored.get(v))
                .filter(|s| s.cluster == self.name);
            let kept = info.as_ref().and_then(|i| {
                let ok = self.credentials(i, secret, Some(port)) == VALID
                    && i.mark.database == spec.database;
                ok.then(|| secret.and_then(|s| password_in(&s.value)))
                    .flatten()
                    .map(str::to_string)
            });
            let fresh = kept.is_none().then(crate::secrets::generate_password);
            let (mut change, verifier) =
                attach::ensure_attachment(&c, &spec, fresh.as_deref()).await?;
            if !spec.superuser {
                let dc = self
                    .primary_client(&spec.database, Duration::from_secs(10))
                    .await?;
                attach::grant_read_write(&dc, &spec.user).await?;
            }
            let password = kept.or(fresh).expect("a kept or a new password");
            let secret = ConsumerSecret {
                value: attach::connection_url(HOST, port, &spec.user, &password, &spec.database),
                cluster: self.name.to_string(),
                database: spec.database.clone(),
                user: spec.user.clone(),
                verifier,
            };
            if let Some(old) = old_variable.filter(|v| *v != spec.variable) {
                store.unset(&spec.app, &old, self.name)?;
                change = Change::Updated;
            }
            if store.set(&spec.app, &spec.variable, secret)? && change == Change::None {
                change = Change::Updated;
            }
            Ok::<_, ProviderError>(change != Change::None)
        })
    }

    /// Detach: what the role owns in every database goes to the cluster's
    /// superuser, the role is dropped and the consumer's secret unset. The
    /// database stays.
    pub fn remove_attachment(&self, r: &Resource) -> Result<bool, ProviderError> {
        let spec = spec_of(r);
        let admin = self.user().name.clone();
        let dropped = db::block_on(async {
            let c = self
                .primary_client("postgres", Duration::from_secs(60))
                .await?;
            let ours = attach::read_attachments(&c)
                .await?
                .into_iter()
                .any(|i| i.user == spec.user && i.mark.app == spec.app);
            if !ours {
                // Gone already, or a role that is not this attachment's.
                return Ok::<_, ProviderError>(false);
            }
            for dbname in sql::connectable_databases(&c).await? {
                let dc = self
                    .primary_client(&dbname, Duration::from_secs(10))
                    .await?;
                sql::reassign_and_drop_owned(&dc, &spec.user, &admin).await?;
            }
            sql::drop_role(&c, &spec.user).await
        })?;
        let unset = self
            .consumers()
            .unset(&spec.app, &spec.variable, self.name)?;
        Ok(dropped || unset)
    }
}

fn secret_only(app: &str, variable: &str, s: &ConsumerSecret, credentials: &str) -> Resource {
    Resource::new(Address::attachment(app), Kind::Attachment)
        .with(attr::DATABASE, s.database.as_str())
        .with(attr::USER, s.user.as_str())
        .with(attr::VARIABLE, variable)
        .with(attr::CREDENTIALS, credentials)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_read_back_from_a_url() {
        let url = attach::connection_url(HOST, 6000, "myapp", "Abc123", "myapp");
        assert_eq!(password_in(&url), Some("Abc123"));
        assert_eq!(password_in("mysql://x"), None);
    }

    #[test]
    fn spec_defaults_follow_fly() {
        let r = Resource::new(Address::attachment("billing-worker"), Kind::Attachment);
        let s = spec_of(&r);
        assert_eq!(s.user, "billing_worker");
        assert_eq!(s.database, "billing_worker");
        assert_eq!(s.variable, "DATABASE_URL");
        assert!(s.superuser);
    }
}

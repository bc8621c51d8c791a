//! Attachments on the local cluster: the shared SQL of
//! `crate::provider::pg::attachments` on this app's primary, with the
//! consumer apps' URLs in the local consumer store, pointing at the leader
//! endpoint.

use percent_encoding::percent_decode_str;
use tokio_postgres::Client;
use url::Url;

use super::consumers::{ConsumerSecret, ConsumerStore};
use super::db;
use super::AppCtx;
use crate::model::Resource;
use crate::provider::pg::{attachments, ConsumerSecrets, ConsumerVar};
use crate::provider::ProviderError;
use crate::sql;

/// The host the local endpoint listens on.
pub(super) const HOST: &str = "127.0.0.1";

/// The password in a URL made by `sql::connection_url`, decoded.
fn password_in(url: &str) -> Option<String> {
    let url = Url::parse(url).ok().filter(|u| u.scheme() == "postgres")?;
    let password = percent_decode_str(url.password()?).decode_utf8().ok()?;
    Some(password.into_owned())
}

/// The consumer store as one cluster sees it.
pub struct LocalConsumers<'a> {
    store: ConsumerStore,
    cluster: &'a str,
    /// The endpoint's port, once the endpoint exists.
    port: Option<u16>,
}

impl LocalConsumers<'_> {
    fn url_for(&self, port: u16, user: &str, password: &str, database: &str) -> String {
        sql::connection_url(HOST, port, user, Some(password), database)
    }
}

impl ConsumerSecrets for LocalConsumers<'_> {
    async fn list(&self) -> Result<Vec<ConsumerVar>, ProviderError> {
        Ok(self
            .store
            .set_by(self.cluster)?
            .into_iter()
            .map(|(app, variable, s)| {
                let current = password_in(&s.value)
                    .zip(self.port)
                    .map(|(pw, port)| self.url_for(port, &s.user, &pw, &s.database))
                    .as_deref()
                    == Some(s.value.as_str());
                ConsumerVar {
                    app,
                    variable,
                    database: s.database,
                    user: s.user,
                    verifier: s.verifier,
                    current,
                }
            })
            .collect())
    }

    async fn set(&self, var: &ConsumerVar, url: &str) -> Result<(), ProviderError> {
        self.store.set(
            &var.app,
            &var.variable,
            ConsumerSecret {
                value: url.to_string(),
                cluster: self.cluster.to_string(),
                database: var.database.clone(),
                user: var.user.clone(),
                verifier: var.verifier.clone(),
            },
        )?;
        Ok(())
    }

    async fn unset(&self, app: &str, variable: &str) -> Result<bool, ProviderError> {
        self.store.unset(app, variable, self.cluster)
    }

    fn url(&self, user: &str, password: &str, database: &str) -> Result<String, ProviderError> {
        let port = self.port.ok_or_else(|| {
            ProviderError::failed(
                format!("app {}", self.cluster),
                "the leader endpoint does not exist yet (create endpoint first)",
            )
        })?;
        Ok(self.url_for(port, user, password, database))
    }
}

impl AppCtx<'_> {
    fn consumers(&self) -> Result<LocalConsumers<'_>, ProviderError> {
        Ok(LocalConsumers {
            store: ConsumerStore::new(self.state_dir()),
            cluster: self.name,
            port: self.endpoint()?.map(|e| e.port),
        })
    }

    /// Attachments as the primary's catalog and the consumer store show
    /// them.
    pub async fn observe_attachments(
        &self,
        primary: &Client,
    ) -> Result<Vec<Resource>, ProviderError> {
        attachments::observe(primary, &self.consumers()?).await
    }

    /// Attachments known from the consumer store alone, when no primary
    /// answers.
    pub fn attachments_unverified(&self) -> Result<Vec<Resource>, ProviderError> {
        let consumers = self.consumers()?;
        db::block_on(attachments::observe_unverified(&consumers))
    }

    pub fn ensure_attachment(&self, r: &Resource) -> Result<bool, ProviderError> {
        let consumers = self.consumers()?;
        db::block_on(attachments::ensure(&self.primary(), &consumers, r))
    }

    pub fn remove_attachment(&self, r: &Resource) -> Result<bool, ProviderError> {
        let consumers = self.consumers()?;
        db::block_on(attachments::remove(&self.primary(), &consumers, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_read_back_from_a_url() {
        let url = sql::connection_url(HOST, 6000, "myapp", Some("Abc123"), "myapp");
        assert_eq!(password_in(&url).as_deref(), Some("Abc123"));
        let url = sql::connection_url(HOST, 6000, "myapp", Some("a%b:c"), "myapp");
        assert_eq!(password_in(&url).as_deref(), Some("a%b:c"));
        assert_eq!(password_in("postgres://u@h/d"), None);
        assert_eq!(password_in("mysql://u:p@h/d"), None);
    }
}

//! What both providers do inside PostgreSQL: declared users and databases,
//! and attachments, reconciled through `crate::sql`. A provider supplies a
//! [`Primary`] (superuser sessions on the current primary: a unix socket
//! locally; on Fly, `psql` in the leader machine through `exec`, or a
//! user-provided route) and, for
//! attachments, a [`ConsumerSecrets`] (where attached apps keep their URL:
//! a local store, or the Fly secrets API).

pub mod attachments;
pub mod roles;

use std::future::Future;

use crate::provider::ProviderError;
use crate::sql::Session;

/// Superuser sessions on the cluster's current primary.
pub trait Primary: Sync {
    /// What a session is.
    type Conn: Session + Send;
    /// A session in `dbname` on the writable primary.
    fn connect(
        &self,
        dbname: &str,
    ) -> impl Future<Output = Result<Self::Conn, ProviderError>> + Send;
    /// The role that takes over what a dropped role owned.
    fn admin_role(&self) -> &str;
}

/// A consumer app's variable as this cluster set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerVar {
    pub app: String,
    pub variable: String,
    pub database: String,
    pub user: String,
    /// Digest of the password verifier the value was made with.
    pub verifier: String,
    /// The value is still the one flyplan set, and points where this
    /// cluster's endpoint is now.
    pub current: bool,
}

/// Where attached apps keep the URL this cluster gave them.
pub trait ConsumerSecrets: Sync {
    /// Every variable this cluster set on any consumer app.
    fn list(&self) -> impl Future<Output = Result<Vec<ConsumerVar>, ProviderError>> + Send;
    /// Set a variable to `url`, recording what it was made from.
    fn set(
        &self,
        var: &ConsumerVar,
        url: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;
    /// Unset a variable this cluster set. Returns whether it was there.
    fn unset(
        &self,
        app: &str,
        variable: &str,
    ) -> impl Future<Output = Result<bool, ProviderError>> + Send;
    /// The URL for a user, password and database of this cluster.
    fn url(&self, user: &str, password: &str, database: &str) -> Result<String, ProviderError>;
}

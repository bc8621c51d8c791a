//! Connections to the app's servers over their unix sockets; the
//! synchronous provider runs its async SQL with [`block_on`], on the
//! process's runtime.

use std::path::Path;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::provider::ProviderError;

pub use crate::runtime::block_on;

/// Connect as `user` to `dbname` through the unix socket in `sock_dir`.
/// Must be called inside the runtime (see [`block_on`]).
pub async fn connect(
    sock_dir: &Path,
    port: u16,
    user: &str,
    dbname: &str,
    timeout: Duration,
) -> Result<Client, ProviderError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(sock_dir)
        .port(port)
        .user(user)
        .dbname(dbname)
        .application_name("flyplan")
        .connect_timeout(timeout);
    let (client, connection) = config.connect(NoTls).await.map_err(|e| {
        ProviderError::failed(
            format!("connecting to {dbname} on port {port}"),
            e.to_string(),
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection closed");
        }
    });
    Ok(client)
}

/// Map a query error to the layer's error.
pub fn query_err(what: &str, e: tokio_postgres::Error) -> ProviderError {
    let message = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    };
    ProviderError::failed(what, message)
}

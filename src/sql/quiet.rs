//! Statements that carry a password verifier (`ALTER ROLE … PASSWORD
//! 'SCRAM-SHA-256$…'`): a verifier is as good as the password for offline
//! guessing, so such statements are kept out of the server's statement log
//! and out of `pg_stat_statements`, where every superuser could read them.
//! (flyplan's own debug log never holds them: `crate::logging` keeps
//! tokio-postgres's statement lines out.)

use tokio_postgres::Client;

/// Session settings that keep the next statements unrecorded. They are set
/// in a round trip of their own because the server logs a whole simple
/// query before it runs any of it. Setting `pg_stat_statements.track` works
/// whether or not the module is loaded (unloaded, it is a placeholder).
pub(crate) const QUIET: &str = "SET pg_stat_statements.track = 'none'; \
                     SET pg_stat_statements.track_utility = off; \
                     SET log_statement = 'none'; \
                     SET log_min_duration_statement = -1; \
                     SET log_min_error_statement = 'panic'";

const RESET: &str = "RESET pg_stat_statements.track; \
                     RESET pg_stat_statements.track_utility; \
                     RESET log_statement; \
                     RESET log_min_duration_statement; \
                     RESET log_min_error_statement";

/// Run `sql` (one or more statements, one transaction) so that neither the
/// server log nor `pg_stat_statements` records it. The settings need a
/// superuser; a client that is none runs `sql` as it is (it could not read
/// another role's verifier anyway, and the operator is a superuser).
///
/// # Errors
/// The error of the quieting settings or of `sql`.
pub async fn execute_unrecorded(client: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let superuser = client
        .query_one("SELECT current_setting('is_superuser') = 'on'", &[])
        .await?
        .get::<_, bool>(0);
    if superuser {
        client.batch_execute(QUIET).await?;
    }
    let result = client.batch_execute(sql).await;
    if superuser && result.is_ok() {
        client.batch_execute(RESET).await?;
    }
    result
}

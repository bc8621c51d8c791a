//! Commands inside a machine through the Machines API `exec` endpoint, and
//! the SQL sessions made from them: `psql` on the leader, connected to its
//! own PostgreSQL as `postgres` with `OPERATOR_PASSWORD`, SQL on stdin and
//! rows read back as JSON from stdout.
//!
//! The command is the one the cluster's own tools use: postgres-flex's
//! `bin/connect` runs `psql` against `127.0.0.1:5433` as `postgres`, whose
//! password is the machine's `OPERATOR_PASSWORD` (postgres-flex
//! `internal/flypg/node.go:74-78`; its hba accepts SCRAM from loopback). The
//! password stays in the machine's environment: the request carries only
//! `"$OPERATOR_PASSWORD"`, expanded by `bash` inside the machine.

use reqwest::Method;

use super::api::{ExecRequest, ExecResponse};
use super::client::FlyClient;
use super::PG_DIRECT_PORT;
use crate::provider::ProviderError;
use crate::sql::Session;

/// How long a command may run inside the machine, in seconds (fly-go
/// `MachineExecRequest.Timeout`).
pub const EXEC_TIMEOUT_SECS: u64 = 30;

/// The shell line `psql` runs under: `$1` is the database, the arguments
/// after it go to psql. Quiet (`-q`: no command tags), unaligned tuples only
/// (`-A -t`: the bare value), no `.psqlrc` (`-X`), stop at the first error
/// with a non-zero exit code, terse messages.
pub fn psql_script() -> String {
    format!(
        "PGPASSWORD=\"$OPERATOR_PASSWORD\" exec psql -h 127.0.0.1 -p {PG_DIRECT_PORT} \
         -U postgres -d \"$1\" -X -q -A -t -v ON_ERROR_STOP=1 -v VERBOSITY=terse \"${{@:2}}\""
    )
}

/// The `exec` command that runs `psql` in `dbname` with SQL read from
/// stdin; `single_transaction` adds psql's `-1`.
pub fn psql_command(dbname: &str, single_transaction: bool) -> Vec<String> {
    let mut c = vec![
        "bash".to_string(),
        "-c".to_string(),
        psql_script(),
        "psql".to_string(),
        dbname.to_string(),
    ];
    if single_transaction {
        c.push("-1".to_string());
    }
    c.extend(["-f".to_string(), "-".to_string()]);
    c
}

/// Run `command` in machine `id` of `app`, with `stdin`; a non-zero exit
/// code is an error carrying stderr.
///
/// # Errors
/// The request's error, or the command's.
pub async fn exec(
    client: &FlyClient,
    label: &str,
    app: &str,
    id: &str,
    command: Vec<String>,
    stdin: Option<String>,
) -> Result<ExecResponse, ProviderError> {
    let shown = command.first().cloned().unwrap_or_default();
    let call = client
        .request(label, Method::POST, &["apps", app, "machines", id, "exec"])
        .json(&ExecRequest {
            timeout: EXEC_TIMEOUT_SECS,
            command,
            stdin,
        });
    checked(call.send().await?, &shown, id, label)
}

/// [`exec`] of a command that may run for up to `timeout`, sent once
/// (a retry after a lost answer would run it twice).
///
/// # Errors
/// As [`exec`].
pub async fn exec_long(
    client: &FlyClient,
    label: &str,
    app: &str,
    id: &str,
    command: Vec<String>,
    timeout: std::time::Duration,
) -> Result<ExecResponse, ProviderError> {
    let shown = command.first().cloned().unwrap_or_default();
    let call = client
        .request(label, Method::POST, &["apps", app, "machines", id, "exec"])
        .json(&ExecRequest {
            timeout: timeout.as_secs(),
            command,
            stdin: None,
        })
        .timeout(timeout + std::time::Duration::from_secs(30))
        .once();
    checked(call.send().await?, &shown, id, label)
}

/// An exec's reply, or the error its non-zero exit code is.
fn checked(
    reply: ExecResponse,
    shown: &str,
    id: &str,
    label: &str,
) -> Result<ExecResponse, ProviderError> {
    if reply.exit_code != 0 {
        return Err(ProviderError::failed(
            label,
            format!(
                "`{shown}` on machine {id} exited with {}: {}",
                reply.exit_code,
                reply.stderr.trim()
            ),
        ));
    }
    Ok(reply)
}

/// A session in one database of the leader machine, one `exec` per call.
pub struct ExecSession<'a> {
    pub client: &'a FlyClient,
    pub app: String,
    pub machine: String,
    pub dbname: String,
}

impl ExecSession<'_> {
    async fn psql(
        &self,
        what: &str,
        sql: &str,
        single_transaction: bool,
    ) -> Result<String, ProviderError> {
        let label = format!("{what} (psql in database {} on the leader)", self.dbname);
        let mut stdin = sql.trim_end().trim_end_matches(';').to_string();
        stdin.push_str(";\n");
        let reply = exec(
            self.client,
            &label,
            &self.app,
            &self.machine,
            psql_command(&self.dbname, single_transaction),
            Some(stdin),
        )
        .await?;
        Ok(reply.stdout)
    }
}

impl Session for ExecSession<'_> {
    async fn run(&self, what: &str, statements: &str) -> Result<(), ProviderError> {
        self.psql(what, statements, true).await.map(drop)
    }

    async fn run_unrecorded(&self, what: &str, statements: &str) -> Result<(), ProviderError> {
        // psql sends each statement of its script in a round trip of its
        // own, so the quieting settings are in force before the others
        // reach the server; the session ends with the exec.
        let script = format!("{}; {statements}", crate::sql::quiet::QUIET);
        self.psql(what, &script, true).await.map(drop)
    }

    async fn run_alone(&self, what: &str, statement: &str) -> Result<(), ProviderError> {
        self.psql(what, statement, false).await.map(drop)
    }

    async fn scalar(&self, what: &str, query: &str) -> Result<String, ProviderError> {
        let out = self.psql(what, query, false).await?;
        Ok(out.trim_end_matches('\n').to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_gets_the_database_as_an_argument_and_the_password_from_the_machine() {
        let c = psql_command("it's \"odd\"", true);
        assert_eq!(c[..2], ["bash", "-c"]);
        assert!(c[2].starts_with("PGPASSWORD=\"$OPERATOR_PASSWORD\" exec psql -h 127.0.0.1 -p 5433 -U postgres -d \"$1\""));
        assert_eq!(c[3..], ["psql", "it's \"odd\"", "-1", "-f", "-"]);
        assert_eq!(psql_command("d", false)[5..], ["-f", "-"]);
    }
}

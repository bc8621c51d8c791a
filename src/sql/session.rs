//! Where flyplan's SQL runs: a [`Session`] is one superuser connection to
//! one database, able to run statements and to answer a query as JSON rows.
//!
//! Two kinds exist: a tokio-postgres [`Client`] (the local provider's unix
//! socket, or a route the user opens to Fly), and the fly provider's `psql`
//! inside a machine through the Machines API `exec` endpoint, which only
//! moves text. So every query is sent as text with its values quoted in
//! (`escape_literal`), and its rows come back as one JSON array
//! (`json_agg`), which both kinds read the same way.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::ProviderError;

/// One superuser connection to one database of the primary.
pub trait Session: Sync {
    /// Run one or more statements (`;`-separated) that return nothing, in
    /// one transaction. `what` names their purpose in errors.
    fn run(
        &self,
        what: &str,
        statements: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Like [`Session::run`], for statements that carry a password
    /// verifier: kept out of the server's log and `pg_stat_statements`
    /// (see [`super::quiet`]).
    fn run_unrecorded(
        &self,
        what: &str,
        statements: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Run one statement that cannot run inside a transaction block
    /// (`CREATE DATABASE`, `DROP DATABASE`).
    fn run_alone(
        &self,
        what: &str,
        statement: &str,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Run a statement whose text answer is the whole result (see
    /// [`json_query`]), and return that text.
    fn scalar(
        &self,
        what: &str,
        query: &str,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;
}

/// `query`'s rows as one JSON array, as a single text value: what a session
/// sends for [`rows`].
pub fn json_query(query: &str) -> String {
    format!("select coalesce(json_agg(q), '[]'::json)::text from ({query}) q")
}

/// The rows of `query`, each read from a JSON object named by column.
///
/// # Errors
/// The session's error, or an answer that is not those rows.
pub async fn rows<T: DeserializeOwned>(
    s: &impl Session,
    what: &str,
    query: &str,
) -> Result<Vec<T>, ProviderError> {
    let text = s.scalar(what, &json_query(query)).await?;
    let value: Value = serde_json::from_str(text.trim())
        .map_err(|e| ProviderError::failed(what, format!("the answer is not JSON rows ({e})")))?;
    serde_json::from_value(value)
        .map_err(|e| ProviderError::failed(what, format!("unexpected rows ({e})")))
}

impl Session for Client {
    async fn run(&self, what: &str, statements: &str) -> Result<(), ProviderError> {
        // A simple query's statements run in one implicit transaction.
        self.batch_execute(statements)
            .await
            .map_err(|e| super::db_err(what, e))
    }

    async fn run_unrecorded(&self, what: &str, statements: &str) -> Result<(), ProviderError> {
        super::quiet::execute_unrecorded(self, statements)
            .await
            .map_err(|e| super::db_err(what, e))
    }

    async fn run_alone(&self, what: &str, statement: &str) -> Result<(), ProviderError> {
        // One statement in a simple query runs outside any transaction block.
        Session::run(self, what, statement).await
    }

    async fn scalar(&self, what: &str, query: &str) -> Result<String, ProviderError> {
        let messages = self
            .simple_query(query)
            .await
            .map_err(|e| super::db_err(what, e))?;
        messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| ProviderError::failed(what, "the query returned no value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_wrapped_so_its_rows_come_back_as_one_json_array() {
        assert_eq!(
            json_query("select 1 as a"),
            "select coalesce(json_agg(q), '[]'::json)::text from (select 1 as a) q"
        );
    }
}

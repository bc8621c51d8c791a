//! `sync_standbys` and `[postgres.parameters]` as postgres-flex's own
//! settings API keeps them (`sync_standbys` is the PostgreSQL setting
//! `synchronous_standby_names`), set and read through the
//! admin HTTP server every node runs on port 5500, reached as
//! `localhost:5500` with `curl` through `exec` (the port has no service, so
//! nothing else reaches it from outside Fly's private network).
//!
//! From postgres-flex `internal/api/handler.go` and `handle_admin.go`:
//! `POST /commands/admin/settings/update/postgres {name: value}` checks the
//! name against `pg_settings`, writes the value as given into the user
//! configuration and stores that in Consul; `POST
//! /commands/admin/settings/apply` makes a node sync that configuration
//! from Consul and reload; `GET /commands/admin/settings/view/postgres`
//! with a JSON array of names answers `{"result": {"settings": [{name,
//! setting, …}]}}` for those of the names the configuration holds. Values
//! are written raw into `postgresql.conf`, so a string carries its own
//! single quotes. This is what `fly pg config update` does for a flex
//! cluster (flyctl `internal/command/postgres/config_update.go`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::api::Machine;
use super::client::FlyClient;
use super::exec::exec;
use crate::provider::ProviderError;

/// The setting `sync_standbys` is kept in.
pub const SYNC_SETTING: &str = "synchronous_standby_names";

const ADMIN: &str = "http://localhost:5500/commands/admin/settings";

/// The raw value for `n` synchronous standbys: any `n` of the standbys,
/// whatever their names (repmgr names nodes after their machines), or none.
pub fn sync_value(n: u64) -> String {
    if n == 0 {
        "''".to_string()
    } else {
        format!("'ANY {n} (*)'")
    }
}

/// `curl` of the admin API: fails (exit 22) on an HTTP error.
pub(super) fn curl(method: &str, url: &str, body: Option<String>) -> Vec<String> {
    let mut c: Vec<String> = ["curl", "-sS", "-f", "-X", method]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(b) = body {
        c.extend(["-H".into(), "Content-Type: application/json".into()]);
        c.extend(["-d".into(), b]);
    }
    c.push(url.to_string());
    c
}

/// The `exec` command that reads `names`.
pub fn view_command(names: &[&str]) -> Vec<String> {
    curl(
        "GET",
        &format!("{ADMIN}/view/postgres"),
        Some(serde_json::json!(names).to_string()),
    )
}

/// The `exec` command that stores `values` (raw, as `postgresql.conf`
/// takes them) in the user configuration.
pub fn update_command(values: &BTreeMap<&str, String>) -> Vec<String> {
    curl(
        "POST",
        &format!("{ADMIN}/update/postgres"),
        Some(serde_json::json!(values).to_string()),
    )
}

/// A value as `postgresql.conf` takes it: quoted, so units and words need
/// nothing more (`'8MB'`, `'on'`, `'300'`).
pub fn raw_value(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The `exec` command that makes a node take the stored configuration.
pub fn apply_command() -> Vec<String> {
    curl("POST", &format!("{ADMIN}/apply"), None)
}

#[derive(Deserialize)]
struct ViewAnswer {
    result: ViewResult,
}

#[derive(Deserialize)]
struct ViewResult {
    #[serde(default)]
    settings: Option<Vec<Setting>>,
}

#[derive(Deserialize)]
struct Setting {
    #[serde(default)]
    name: String,
    #[serde(default)]
    setting: String,
}

/// The settings among `names` that the user configuration holds, as the
/// node `machine` runs with them (`pg_settings.setting`), by name.
///
/// # Errors
/// When `exec` fails or the answer is not the API's.
pub async fn read_settings(
    client: &FlyClient,
    label: &str,
    app: &str,
    machine: &str,
    names: &[&str],
) -> Result<BTreeMap<String, String>, ProviderError> {
    let reply = exec(client, label, app, machine, view_command(names), None).await?;
    let answer: ViewAnswer = serde_json::from_str(reply.stdout.trim()).map_err(|e| {
        ProviderError::failed(
            label,
            format!("the settings API answered something else ({e})"),
        )
    })?;
    Ok(answer
        .result
        .settings
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.setting))
        .collect())
}

/// The number of synchronous standbys a node runs with, read from its
/// settings (0 when the setting was never made: postgres-flex replicates
/// asynchronously).
pub fn sync_standbys_of(settings: &BTreeMap<String, String>) -> u64 {
    settings
        .get(SYNC_SETTING)
        .map(|v| u64::from(crate::sql::sync_standby_count(v)))
        .unwrap_or(0)
}

/// The number of synchronous standbys the leader runs with.
///
/// # Errors
/// When `exec` fails or the answer is not the API's.
pub async fn read_sync_standbys(
    client: &FlyClient,
    label: &str,
    app: &str,
    leader: &str,
) -> Result<u64, ProviderError> {
    let settings = read_settings(client, label, app, leader, &[SYNC_SETTING]).await?;
    Ok(sync_standbys_of(&settings))
}

/// Store `values` through the leader and have every started node apply
/// them, so a node that becomes leader keeps them.
///
/// # Errors
/// When an `exec` fails.
pub async fn set_settings(
    client: &FlyClient,
    label: &str,
    app: &str,
    leader: &str,
    machines: &[Machine],
    values: &BTreeMap<&str, String>,
) -> Result<(), ProviderError> {
    exec(client, label, app, leader, update_command(values), None).await?;
    for m in machines.iter().filter(|m| m.state == "started") {
        exec(client, label, app, &m.id, apply_command(), None).await?;
    }
    Ok(())
}

/// Set `n` synchronous standbys (see [`set_settings`]).
///
/// # Errors
/// When an `exec` fails.
pub async fn set_sync_standbys(
    client: &FlyClient,
    label: &str,
    app: &str,
    leader: &str,
    machines: &[Machine],
    n: u64,
) -> Result<(), ProviderError> {
    let values = BTreeMap::from([(SYNC_SETTING, sync_value(n))]);
    set_settings(client, label, app, leader, machines, &values).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_quotes_and_read_back_as_counts() {
        assert_eq!(sync_value(0), "''");
        assert_eq!(sync_value(2), "'ANY 2 (*)'");
        assert_eq!(crate::sql::sync_standby_count("ANY 2 (*)"), 2);
        let c = update_command(&BTreeMap::from([(SYNC_SETTING, sync_value(1))]));
        assert_eq!(c[..5], ["curl", "-sS", "-f", "-X", "POST"]);
        assert_eq!(c[8], r#"{"synchronous_standby_names":"'ANY 1 (*)'"}"#);
        assert_eq!(
            c.last().unwrap(),
            "http://localhost:5500/commands/admin/settings/update/postgres"
        );
    }
}

//! `sync_standbys` as postgres-flex's own settings API keeps it: the
//! PostgreSQL setting `synchronous_standby_names`, set and read through the
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

fn curl(method: &str, url: &str, body: Option<String>) -> Vec<String> {
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

/// The `exec` command that reads the setting.
pub fn view_command() -> Vec<String> {
    curl(
        "GET",
        &format!("{ADMIN}/view/postgres"),
        Some(serde_json::json!([SYNC_SETTING]).to_string()),
    )
}

/// The `exec` command that sets it to `n` standbys.
pub fn update_command(n: u64) -> Vec<String> {
    curl(
        "POST",
        &format!("{ADMIN}/update/postgres"),
        Some(serde_json::json!({ SYNC_SETTING: sync_value(n) }).to_string()),
    )
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

/// The number of synchronous standbys the leader runs with (0 when the
/// setting was never made: postgres-flex replicates asynchronously).
///
/// # Errors
/// When `exec` fails or the answer is not the API's.
pub async fn read_sync_standbys(
    client: &FlyClient,
    label: &str,
    app: &str,
    leader: &str,
) -> Result<u64, ProviderError> {
    let reply = exec(client, label, app, leader, view_command(), None).await?;
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
        .iter()
        .find(|s| s.name == SYNC_SETTING)
        .map(|s| u64::from(crate::sql::sync_standby_count(&s.setting)))
        .unwrap_or(0))
}

/// Set `n` synchronous standbys on the leader and have every started node
/// apply it, so a node that becomes leader keeps it.
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
    exec(client, label, app, leader, update_command(n), None).await?;
    for m in machines.iter().filter(|m| m.state == "started") {
        exec(client, label, app, &m.id, apply_command(), None).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_their_quotes_and_read_back_as_counts() {
        assert_eq!(sync_value(0), "''");
        assert_eq!(sync_value(2), "'ANY 2 (*)'");
        assert_eq!(crate::sql::sync_standby_count("ANY 2 (*)"), 2);
        let c = update_command(1);
        assert_eq!(c[..5], ["curl", "-sS", "-f", "-X", "POST"]);
        assert_eq!(c[8], r#"{"synchronous_standby_names":"'ANY 1 (*)'"}"#);
        assert_eq!(
            c.last().unwrap(),
            "http://localhost:5500/commands/admin/settings/update/postgres"
        );
    }
}

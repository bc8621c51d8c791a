//! postgres-flex's barman settings as its admin API keeps them
//! (fly-apps/postgres-flex at d263c9ed9427), answered for
//! `curl ... http://localhost:5500/commands/admin/settings/{view,update}/barman`
//! run in a machine through `exec`:
//!
//! - both answer 500 `barman is not enabled` without `S3_ARCHIVE_CONFIG` in
//!   the machine's environment (`internal/api/handle_admin.go:302-306,
//!   335-339`); with `curl -f` that is exit code 22;
//! - the internal layer is always postgres-flex's defaults
//!   (`internal/flypg/barman_config.go:59-66`, rewritten at every load,
//!   `:177-187`), the user layer is the `BarmanConfig` key in Consul
//!   (`:32`, `internal/flypg/config.go:54-74`); a view answers both merged,
//!   the user's values winning (`barman_config.go:68-89`,
//!   `handle_admin.go:325-332`);
//! - an update checks every key against the defaults' names and each value
//!   as `Validate` does (`barman_config.go:114-169`; a value must be a JSON
//!   string: `v.(string)`), stores the merged user layer in Consul and
//!   answers `{"result": {"message": "Updated", "restart_required": true}}`
//!   (`handle_admin.go:358-394`).
//!
//! flyctl#4340 (open) reports that `fly image update` puts the settings back
//! to the defaults; [`image_updated`] does that to the model: the user layer
//! is gone, so the next view answers the defaults.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// postgres-flex's defaults (`barman_config.go:59-66`).
pub const DEFAULTS: [(&str, &str); 4] = [
    ("archive_timeout", "60s"),
    ("recovery_window", "7d"),
    ("full_backup_frequency", "24h"),
    ("minimum_redundancy", "3"),
];

/// The barman settings of one cluster: the user layer in Consul, and every
/// update's body as it arrived.
#[derive(Debug, Clone, Default)]
pub struct BarmanStore {
    pub user: BTreeMap<String, String>,
    pub updates: Vec<Value>,
}

impl BarmanStore {
    /// Defaults overlaid with the user layer.
    pub fn current(&self) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.extend(self.user.clone());
        all
    }

    /// A change made outside flyplan (`fly pg backup config update`).
    pub fn set(&mut self, key: &str, value: &str) {
        self.user.insert(key.to_string(), value.to_string());
    }
}

/// What `fly image update` leaves of the settings (flyctl#4340): the
/// defaults.
pub fn image_updated(store: &mut BarmanStore) {
    store.user.clear();
}

/// `Validate` (`barman_config.go:114-169`), as the error text it returns.
fn validate(key: &str, value: &Value) -> Result<(), String> {
    if !DEFAULTS.iter().any(|(k, _)| *k == key) {
        return Err(format!("invalid key: {key}"));
    }
    // A non-string panics the handler's type assertion; the server answers 500.
    let Some(v) = value.as_str() else {
        return Err(format!("interface conversion: {key} is not a string"));
    };
    let number_unit = |v: &str| {
        let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
        let unit = &v[digits.len()..];
        (digits.parse::<u64>().ok(), unit.to_string())
    };
    let ok = match key {
        // convertToPostgresUnits: `(\d+)([a-z]+)` with a known unit.
        "archive_timeout" => {
            let (n, unit) = number_unit(v);
            n.is_some() && ["us", "ms", "s", "min", "m", "h", "d"].contains(&unit.as_str())
        }
        // `^(\d+)([dwy])$`, at least 1.
        "recovery_window" => {
            let (n, unit) = number_unit(v);
            n.is_some_and(|n| n >= 1) && ["d", "w", "y"].contains(&unit.as_str())
        }
        // time.ParseDuration, at least an hour (whole hours/minutes/seconds
        // are all flyplan sends).
        "full_backup_frequency" => {
            let (n, unit) = number_unit(v);
            match (n, unit.as_str()) {
                (Some(n), "h") => n >= 1,
                (Some(n), "m") => n >= 60,
                (Some(n), "s") => n >= 3600,
                _ => false,
            }
        }
        "minimum_redundancy" => v.parse::<i64>().is_ok_and(|n| n >= 0),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value for {key}: {v}"))
    }
}

/// The admin API's answer to `method path` (`view/barman`, `update/barman`)
/// with `body`, for a machine whose environment has `S3_ARCHIVE_CONFIG`
/// or not: `(exit code, stdout, stderr)` of `curl -sS -f`.
pub fn handle(
    store: &mut BarmanStore,
    enabled: bool,
    method: &str,
    path: &str,
    body: &Value,
) -> (i64, String, String) {
    let http_error = |code: u16| {
        (
            22,
            String::new(),
            format!("curl: (22) The requested URL returned error: {code}"),
        )
    };
    match (method, path) {
        ("GET", "view/barman") | ("POST", "update/barman") if !enabled => http_error(500),
        ("GET", "view/barman") => (
            0,
            json!({ "result": store.current() }).to_string(),
            String::new(),
        ),
        ("POST", "update/barman") => {
            let Some(map) = body.as_object() else {
                return http_error(500);
            };
            if map.iter().any(|(k, v)| validate(k, v).is_err()) {
                return http_error(500);
            }
            store.updates.push(body.clone());
            for (k, v) in map {
                store.set(k, v.as_str().unwrap_or_default());
            }
            let msg = json!({"result": {"message": "Updated", "restart_required": true}});
            (0, msg.to_string(), String::new())
        }
        _ => http_error(405),
    }
}

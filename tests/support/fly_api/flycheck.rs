//! The checks a booted postgres-flex machine reports through the Machines
//! API (`Machine.checks`: `CheckStatus` with `name`, `status`, `output`,
//! `updated_at`), with the outputs of postgres-flex's check handlers
//! (fly-apps/postgres-flex at d263c9ed9427, `internal/flycheck/`, served on
//! port 5500 and declared in its `fly.toml` as `[checks.vm]`, `[checks.pg]`,
//! `[checks.role]`):
//! - `vm` (`vm.go`): `checkDisk` ("9.5 GB (97.0%) free space on /data/",
//!   failing below 10% free), `checkLoad` ("load averages: ..."), and the
//!   `memory`, `cpu` and `io` pressure ("system spent 0s of the last 60s
//!   waiting on memory");
//! - `pg` (`pg.go`): `connections` ("9 used, 3 reserved, 300 max"); on the
//!   primary also `cluster-locks` ("No active locks detected") and
//!   `disk-capacity` ("11.0% - readonly mode will be enabled at 90.0%",
//!   failing above 90% used: "readonly mode enabled, extend your volume to
//!   re-enable writes");
//! - `role` (`role.go`): the raw result, `primary`, `replica`, `zombie`...
//!
//! Each sub-check is one line, `[✓] name: message (time)` or `[✗] name:
//! error (time)` (superfly/fly-checks `check/check.go`, `Result`), joined
//! by newlines (`check/check_suite.go`); a suite with a failing check
//! answers 500 (`flycheck/checks.go`, `handleCheckResponse`), which Fly
//! reports as `critical`.

use serde_json::{json, Value};

/// When the scripted checks last ran.
pub const UPDATED_AT: &str = "2024-06-01T00:00:00Z";

fn check(name: &str, status: &str, lines: &[&str]) -> Value {
    json!({"name": name, "status": status, "output": lines.join("\n"), "updated_at": UPDATED_AT})
}

/// `vm` of a healthy machine.
pub fn vm() -> Value {
    check(
        "vm",
        "passing",
        &[
            "[✓] checkDisk: 9.5 GB (97.0%) free space on /data/ (21.3µs)",
            "[✓] checkLoad: load averages: 0.02 0.05 0.10 (40.1µs)",
            "[✓] memory: system spent 0s of the last 60s waiting on memory (18.2µs)",
            "[✓] cpu: system spent 312ms of the last 60s waiting on cpu (10.4µs)",
            "[✓] io: system spent 0s of the last 60s waiting on io (9.8µs)",
        ],
    )
}

/// `pg` of a healthy node of role `role`.
pub fn pg(role: &str) -> Value {
    if role == "primary" {
        check(
            "pg",
            "passing",
            &[
                "[✓] connections: 9 used, 3 reserved, 300 max (8.21ms)",
                "[✓] cluster-locks: No active locks detected (14.6µs)",
                "[✓] disk-capacity: 11.0% - readonly mode will be enabled at 90.0% (12.9µs)",
            ],
        )
    } else {
        check(
            "pg",
            "passing",
            &["[✓] connections: 7 used, 3 reserved, 300 max (7.95ms)"],
        )
    }
}

/// `pg` of a primary whose volume is over 90% full: postgres-flex made the
/// cluster read-only.
pub fn pg_primary_disk_full() -> Value {
    check(
        "pg",
        "critical",
        &[
            "[✓] connections: 9 used, 3 reserved, 300 max (8.21ms)",
            "[✗] cluster-locks: `readonly.lock` detected (14.6µs)",
            "[✗] disk-capacity: 91.2% - readonly mode enabled, extend your volume to re-enable writes (12.9µs)",
        ],
    )
}

/// `role`: the raw result.
pub fn role(role: &str) -> Value {
    json!({"name": "role", "status": "passing", "output": role, "updated_at": UPDATED_AT})
}

/// The checks of a booted node, in the order the model keeps them (`pg`,
/// `role`, `vm`: the role is at index 1).
pub fn passing(role_name: &str) -> Value {
    json!([pg(role_name), role(role_name), vm()])
}

/// Replace machine `m`'s check of the same name with `check`.
pub fn set(m: &mut Value, check: Value) {
    let checks = m["checks"].as_array_mut().expect("checks");
    let slot = checks
        .iter_mut()
        .find(|c| c["name"] == check["name"])
        .expect("a check of that name");
    *slot = check;
}

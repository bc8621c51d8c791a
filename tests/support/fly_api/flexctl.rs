//! postgres-flex's `flexctl backup list|create` (fly-apps/postgres-flex at
//! d263c9ed9427, `cmd/flexctl`), answered for `exec` in a machine:
//!
//! - both refuse with `backups are not enabled` when the machine's
//!   environment has no `S3_ARCHIVE_CONFIG` (`cmd/flexctl/backups.go:29-31,
//!   43-45, 233-235`); cobra prints a `RunE` error as `Error: ...` on
//!   stderr and exits 1;
//! - `list --json` (`main.go:36`) prints `barman-cloud-backup-list --format
//!   json` as it is, with a newline (`backups.go:170-183`,
//!   `internal/flypg/barman.go:173-185`): `{"backups_list": [...]}`, each
//!   entry with `backup_id`, `backup_name`, `status`, `begin_time`,
//!   `end_time`, `begin_wal`, `end_wal` (`barman.go:36-44`), times in
//!   barman's `Mon Jan 2 15:04:05 2006` (`barman.go:241-242`);
//! - `create` runs only on the primary (`backups.go:113-120`: `failed to
//!   create backup: backups can only be performed against the primary
//!   node`), prints `Performing backup...` then `Backup completed
//!   successfully!` (`:147, 51`) and no id.
//!
//! The store is this list: a backup created is listed from then on.

use serde_json::{json, Value};

/// The backups in one app's store, oldest first.
#[derive(Debug, Clone, Default)]
pub struct BackupStore {
    pub backups: Vec<Value>,
}

impl BackupStore {
    /// A completed backup taken `n` hours after 2026-11-30 00:00 UTC.
    pub fn add(&mut self, n: u32) -> String {
        let (day, hour) = (30 + n / 24, n % 24);
        let (month, day) = if day > 30 {
            ("Dec", day - 30)
        } else {
            ("Nov", day)
        };
        let month_no = if month == "Dec" { 12 } else { 11 };
        let id = format!("2026{month_no:02}{day:02}T{hour:02}0000");
        let weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][((n / 24) % 7) as usize];
        let wal = format!("0000000100000000000000{:02X}", n + 2);
        self.backups.push(json!({
            "backup_id": id,
            "backup_name": null,
            "status": "DONE",
            "begin_time": format!("{weekday} {month} {day} {hour:02}:00:00 2026"),
            "end_time": format!("{weekday} {month} {day} {hour:02}:00:05 2026"),
            "begin_wal": wal,
            "end_wal": wal,
        }));
        id
    }
}

/// `flexctl backup ...` in a machine: `(exit code, stdout, stderr)`.
pub fn handle(
    store: &mut BackupStore,
    enabled: bool,
    is_primary: bool,
    args: &[&str],
) -> (i64, String, String) {
    let error = |msg: &str| (1, String::new(), format!("Error: {msg}\n"));
    match args {
        ["backup", "list" | "create", ..] if !enabled => error("backups are not enabled"),
        ["backup", "list", "--json"] => (
            0,
            format!("{}\n", json!({ "backups_list": store.backups })),
            String::new(),
        ),
        ["backup", "create"] if !is_primary => {
            error("failed to create backup: backups can only be performed against the primary node")
        }
        ["backup", "create"] => {
            let n = u32::try_from(store.backups.len()).unwrap_or(0);
            store.add(n);
            (
                0,
                "Performing backup...\nBackup completed successfully!\n".to_string(),
                String::new(),
            )
        }
        _ => error(&format!("unknown command {args:?} for \"flexctl\"")),
    }
}

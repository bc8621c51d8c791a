//! A new cluster from another cluster's backups (`[postgres.restore]`,
//! `flyplan backups restore`), as postgres-flex restores one: the base
//! backup is fetched with `barman-cloud-restore`, then PostgreSQL replays
//! archived WAL fetched by `barman-cloud-wal-restore` (its
//! `restore_command`) up to the target and promotes. That data directory
//! becomes the formation's first node (`pg_autoctl create postgres` takes it
//! as is, as for a snapshot) and the other nodes join as standbys.
//!
//! The app records the restore in `backup/restore.json` when it is created
//! (after the store was read and a backup chosen, before anything else is
//! made); the source's keys go to `backup/restore-credentials` (profile
//! `restore`, mode 0600) and nowhere else.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::super::app::AppCtx;
use super::super::db;
use super::super::keeper::MachineRecord;
use super::super::process::{kill_tree, run_logged};
use super::super::state;
use super::base::barman_time_utc;
use crate::backup::{self, barman, StoreUrl};
use crate::provider::ProviderError;

/// Longest fetch of a base backup plus WAL replay accepted.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
const STORE_TIMEOUT: Duration = Duration::from_secs(120);

/// What `backup/restore.json` records (no keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BackupRestore {
    pub scheme: String,
    pub host: String,
    pub bucket: String,
    pub directory: String,
    pub backup_id: String,
    /// RFC 3339, or absent for the latest archived WAL (or the backup's
    /// own end with `immediate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_time: Option<String>,
    #[serde(default)]
    pub immediate: bool,
    /// The node made from it, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl BackupRestore {
    fn url(&self) -> StoreUrl {
        StoreUrl {
            scheme: self.scheme.clone(),
            host: self.host.clone(),
            bucket: self.bucket.clone(),
            directory: self.directory.clone(),
            access_key: String::new(),
            secret_key: String::new(),
        }
    }
}

/// The target of `restore_backup` (`SECRET?targetTime=T`, `SECRET?target=ID`
/// or `SECRET`): the secret's name, a time, a backup.
fn parse_input(input: &str) -> (String, Option<String>, Option<String>) {
    let (secret, query) = input.split_once('?').unwrap_or((input, ""));
    let mut time = None;
    let mut id = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("targetTime", v)) => time = Some(v.to_string()),
            Some(("target", v)) => id = Some(v.to_string()),
            _ => {}
        }
    }
    (secret.to_string(), time, id)
}

impl AppCtx<'_> {
    fn restore_record(&self) -> PathBuf {
        self.backup_dir().join("restore.json")
    }
    fn restore_credentials(&self) -> PathBuf {
        self.backup_dir().join("restore-credentials")
    }

    /// Read the source store, choose the base backup for the target and
    /// record the restore; refuses (changing nothing) when the store cannot
    /// be read or holds no backup for the target. `value` is the secret's.
    pub(in crate::provider::local) fn prepare_backup_restore(
        &self,
        input: &str,
        value: Option<&str>,
    ) -> Result<(), ProviderError> {
        let (secret, time, id) = parse_input(input);
        let refused = |m: String| {
            ProviderError::failed(
                format!("app {}", self.name),
                format!("refusing to restore from backups: {m}"),
            )
        };
        let value = value.ok_or_else(|| refused(format!("no value for secret {secret}")))?;
        let url =
            StoreUrl::parse(value, true).map_err(|e| refused(format!("secret {secret}: {e}")))?;
        self.user().mkdir(&self.backup_dir(), 0o700)?;
        let creds = self.restore_credentials();
        state::write_file(
            &creds,
            url.credentials_section(backup::RESTORE_PROFILE).as_bytes(),
            0o600,
        )?;
        self.user().chown(&creds)?;
        self.wait_source_archived(&url)
            .map_err(|e| refused(e.to_string()))?;
        let out = self
            .run_barman_with(
                &creds,
                &format!("listing backups in {url}"),
                "barman-cloud-backup-list",
                &barman::list_args(&url, backup::RESTORE_PROFILE),
                STORE_TIMEOUT,
            )
            .map_err(|e| refused(e.to_string()))?;
        let list =
            barman::parse_list(&out).map_err(|e| refused(format!("unreadable list: {e}")))?;
        let done: Vec<_> = list.iter().filter(|b| b.status == "DONE").collect();
        let chosen = match (&time, &id) {
            (_, Some(id)) => done
                .iter()
                .find(|b| &b.backup_id == id || b.backup_name.as_deref() == Some(id))
                .ok_or_else(|| refused(format!("{url} has no completed backup {id}")))?,
            (Some(t), None) => {
                let target =
                    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| refused(format!("target time {t}: {e}")))?;
                done.iter()
                    .rfind(|b| {
                        b.end_time
                            .as_deref()
                            .and_then(barman_time_utc)
                            .is_some_and(|end| end < target)
                    })
                    .ok_or_else(|| {
                        refused(format!(
                            "{url} has no completed backup that ends before {t}"
                        ))
                    })?
            }
            (None, None) => done
                .last()
                .ok_or_else(|| refused(format!("{url} has no completed backup")))?,
        };
        let rec = BackupRestore {
            scheme: url.scheme.clone(),
            host: url.host.clone(),
            bucket: url.bucket.clone(),
            directory: url.directory.clone(),
            backup_id: chosen.backup_id.clone(),
            target_time: time,
            immediate: id.is_some(),
            node: None,
        };
        state::write_json(&self.restore_record(), &rec, 0o644)
    }

    /// The restore the next first node starts from, if one is pending.
    pub(in crate::provider::local) fn pending_backup_restore(
        &self,
    ) -> Result<Option<BackupRestore>, ProviderError> {
        Ok(state::read_json::<BackupRestore>(&self.restore_record())?.filter(|r| r.node.is_none()))
    }

    /// Record that `node` runs with the restored data; the source's keys
    /// are removed.
    pub(in crate::provider::local) fn backup_restore_done(
        &self,
        r: &BackupRestore,
        node: &str,
    ) -> Result<(), ProviderError> {
        let mut rec = r.clone();
        rec.node = Some(node.to_string());
        state::write_json(&self.restore_record(), &rec, 0o644)?;
        state::remove_file(&self.restore_credentials())?;
        tracing::info!(app = self.name, backup = %r.backup_id, node, "cluster restored from backups");
        Ok(())
    }

    /// Fill `rec`'s empty data dir from the base backup, replay WAL up to
    /// the target with a server of its own, promote, and stop it.
    pub(in crate::provider::local) fn restore_backup_into(
        &self,
        r: &BackupRestore,
        rec: &MachineRecord,
    ) -> Result<(), ProviderError> {
        let url = r.url();
        let creds = self.restore_credentials();
        let pgdata = &rec.pgdata;
        self.fetch_backup(&url, backup::RESTORE_PROFILE, &creds, &r.backup_id, pgdata)?;
        // The source's archive command must never run here.
        self.write_backup_conf(pgdata)?;
        let restore_command = barman::wal_restore_command(
            &url,
            backup::RESTORE_PROFILE,
            &creds.display().to_string(),
        );
        let mut settings = vec![format!("restore_command={restore_command}")];
        if let Some(t) = &r.target_time {
            // PostgreSQL reads `2026-11-30 10:15:00+00`, not RFC 3339's `T...Z`.
            let t = t.replacen('T', " ", 1).replace('Z', "+00");
            settings.push(format!("recovery_target_time={t}"));
        } else if r.immediate {
            settings.push("recovery_target=immediate".to_string());
        }
        let what = format!(
            "replaying WAL of backup {} on node {}",
            r.backup_id, rec.node
        );
        let server = self.start_replay(&what, pgdata, rec.port, &rec.node, &settings)?;
        server.stop(self)
    }

    /// Fill an empty `pgdata` with base backup `backup_id` of `url`.
    pub(super) fn fetch_backup(
        &self,
        url: &StoreUrl,
        profile: &str,
        credentials: &Path,
        backup_id: &str,
        pgdata: &Path,
    ) -> Result<(), ProviderError> {
        self.run_barman_with(
            credentials,
            &format!("barman-cloud-restore of backup {backup_id}"),
            "barman-cloud-restore",
            &barman::restore_args(url, profile, backup_id, &pgdata.display().to_string()),
            RESTORE_TIMEOUT,
        )?;
        for stale in ["standby.signal", "postmaster.pid", "postmaster.opts"] {
            state::remove_file(&pgdata.join(stale))?;
        }
        Ok(())
    }

    /// Start a server of its own on a restored `pgdata` that recovers with
    /// `settings` and promotes; returns once it accepts writes.
    pub(super) fn start_replay(
        &self,
        what: &str,
        pgdata: &Path,
        port: u16,
        name: &str,
        settings: &[String],
    ) -> Result<ReplayServer, ProviderError> {
        let signal = pgdata.join("recovery.signal");
        state::write_file(&signal, b"", 0o600)?;
        self.user().chown(&signal)?;
        let mut cmd = self.server_cmd(&self.tools().pg_bindir.join("postgres"));
        cmd.arg("-D")
            .arg(pgdata)
            .args(["-p", &port.to_string(), "-k"])
            .arg(self.paths.sock())
            .args(["-c", "listen_addresses="])
            .args(["-c", "recovery_target_action=promote"])
            .args(["-c", "recovery_target_timeline=latest"]);
        for s in settings {
            cmd.args(["-c", s]);
        }
        let log = self.paths.logs().join(format!("{name}-restore.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| ProviderError::io(format!("opening {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| ProviderError::io(format!("opening {}", log.display()), e))?;
        cmd.stdout(out).stderr(err);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ProviderError::io(format!("{what}: starting postgres"), e))?;
        let started = Instant::now();
        let user = self.user().name.clone();
        let sock = self.paths.sock();
        let result = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(ProviderError::failed(
                    what,
                    format!(
                        "postgres exited ({status}); last lines of its log:\n{}",
                        server_log_tail(pgdata, &log)
                    ),
                ));
            }
            if started.elapsed() > RESTORE_TIMEOUT {
                break Err(ProviderError::failed(what, "timed out"));
            }
            let promoted = db::block_on(async {
                let c = db::connect(&sock, port, &user, "postgres", Duration::from_secs(5)).await?;
                let row = c
                    .query_one("SELECT NOT pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| db::query_err("pg_is_in_recovery", e))?;
                Ok::<bool, ProviderError>(row.get(0))
            });
            if matches!(promoted, Ok(true)) {
                break Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        let server = ReplayServer {
            child,
            pgdata: pgdata.to_path_buf(),
            log,
        };
        match result {
            Ok(()) => Ok(server),
            Err(e) => {
                let _ = server.stop(self);
                Err(e)
            }
        }
    }
}

/// The last lines of the server's own log (the logging collector's newest
/// file under `pgdata/log`, else `fallback`).
fn server_log_tail(pgdata: &Path, fallback: &Path) -> String {
    let newest = std::fs::read_dir(pgdata.join("log"))
        .into_iter()
        .flatten()
        .flatten()
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path());
    let path = newest.unwrap_or_else(|| fallback.to_path_buf());
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// A server started on a restored data dir by [`AppCtx::start_replay`].
pub(super) struct ReplayServer {
    child: std::process::Child,
    pgdata: PathBuf,
    log: PathBuf,
}

impl ReplayServer {
    /// Stop it (fast shutdown; killed when that fails).
    pub(super) fn stop(mut self, ctx: &AppCtx<'_>) -> Result<(), ProviderError> {
        let mut stop = ctx.server_cmd(&ctx.tools().pg_bindir.join("pg_ctl"));
        stop.args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.pgdata);
        let stopped = run_logged(
            &format!("stopping the server on {}", self.pgdata.display()),
            stop,
            &self.log,
            Duration::from_secs(90),
        );
        if stopped.is_err() {
            kill_tree(self.child.id() as i32, Duration::from_secs(5));
        }
        let _ = self.child.wait();
        stopped
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn restore_inputs_read_as_postgres_flex_writes_them() {
        assert_eq!(
            super::parse_input("SRC?targetTime=2026-11-30T10:15:00Z"),
            ("SRC".into(), Some("2026-11-30T10:15:00Z".into()), None)
        );
        assert_eq!(
            super::parse_input("SRC?target=20261130T090748"),
            ("SRC".into(), None, Some("20261130T090748".into()))
        );
        assert_eq!(super::parse_input("SRC"), ("SRC".into(), None, None));
    }
}

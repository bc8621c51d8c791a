//! `[postgres.backup]` on the local provider: every node archives WAL with
//! `barman-cloud-wal-archive --gzip` to the store of the policy's secret,
//! so whichever node is primary archives, across failovers; base backups,
//! listing and retention run barman-cloud against the same store (see
//! `base`). The layout on the store is postgres-flex's.
//!
//! Files, under `<app>/backup/` (owned by the service user, mode 0700):
//! - `credentials`: an AWS shared credentials file with the store's keys in
//!   profile `barman` (mode 0600) — the only place the keys are written;
//! - `policy.json`: the applied policy, the store URL without its keys and
//!   the archive command set on the nodes.
//!
//! Each node's `flyplan-backup.conf`, included from `postgresql.conf`,
//! holds `archive_mode = on`, the archive command and `archive_timeout`;
//! without a policy the command is `/bin/true` (no archiving), so turning
//! backups on or off needs no restart.

mod base;
mod restore;
mod verify;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::app::AppCtx;
use super::db;
use super::keeper::MachineRecord;
use super::process::run_logged;
use super::state::{self, FileLock};
use super::LocalProvider;
use crate::backup::{self, barman, StoreUrl};
use crate::model::{Agreed, BackupPolicySpec, Digest, Spec};
use crate::plan::{Action, Step};
use crate::provider::{Outcome, ProviderError, StepContext};

/// The include file of every node.
const NODE_FILE: &str = "flyplan-backup.conf";
/// The archive command of a node without a backup policy.
const NO_ARCHIVE: &str = "/bin/true";

/// What `policy.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PolicyRecord {
    pub spec: BackupPolicySpec,
    /// The store URL without its keys, for messages and status.
    pub store: String,
    pub archive_command: String,
}

impl AppCtx<'_> {
    pub(super) fn backup_dir(&self) -> PathBuf {
        self.paths.root.join("backup")
    }
    fn backup_policy_json(&self) -> PathBuf {
        self.backup_dir().join("policy.json")
    }
    pub(super) fn backup_credentials(&self) -> PathBuf {
        self.backup_dir().join("credentials")
    }

    pub(crate) fn backup_policy(&self) -> Result<Option<PolicyRecord>, ProviderError> {
        state::read_json(&self.backup_policy_json())
    }

    /// The store of the recorded policy, with its keys from the secret store.
    pub(super) fn backup_store(&self) -> Result<(PolicyRecord, StoreUrl), ProviderError> {
        let policy = self.backup_policy()?.ok_or_else(|| {
            ProviderError::failed(
                format!("app {}", self.name),
                "no [postgres.backup] policy is applied",
            )
        })?;
        let secrets = self.stored_secrets()?;
        let value = secrets.get(&policy.spec.secret).ok_or_else(|| {
            ProviderError::failed(
                format!("secret {}", policy.spec.secret),
                "the store URL is not in the app's secrets",
            )
        })?;
        let url = StoreUrl::parse(value, true).map_err(|e| {
            ProviderError::failed(format!("secret {}", policy.spec.secret), e.to_string())
        })?;
        Ok((policy, url))
    }

    /// Run a barman-cloud command with the policy's credentials file, its
    /// output in `logs/backup.log`; returns stdout.
    pub(super) fn run_barman(
        &self,
        what: &str,
        program: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        self.run_barman_with(&self.backup_credentials(), what, program, args, timeout)
    }

    /// Run a barman-cloud command as the service user with the credentials
    /// file `credentials`; returns stdout.
    pub(super) fn run_barman_with(
        &self,
        credentials: &Path,
        what: &str,
        program: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let out = self.backup_dir().join(format!(".{program}.out"));
        state::remove_file(&out)?;
        let file = std::fs::File::create(&out)
            .map_err(|e| ProviderError::io(format!("creating {}", out.display()), e))?;
        self.user().chown(&out)?;
        let mut cmd = self.server_cmd(Path::new(program));
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", credentials)
            .args(args)
            .stdout(file);
        let result = run_with_stdout(what, cmd, &self.paths.logs().join("backup.log"), timeout);
        let bytes = std::fs::read(&out).unwrap_or_default();
        let _ = state::remove_file(&out);
        result.map(|()| bytes)
    }

    /// The content of a node's `flyplan-backup.conf`.
    fn node_conf(&self) -> Result<String, ProviderError> {
        let (command, timeout) = match self.backup_policy()? {
            Some(p) => (p.archive_command, p.spec.archive_timeout),
            None => (NO_ARCHIVE.to_string(), "60s".to_string()),
        };
        Ok(format!(
            "# Written by flyplan: WAL archiving of [postgres.backup].\n\
             archive_mode = on\n\
             archive_command = '{}'\n\
             archive_timeout = '{timeout}'\n",
            command.replace('\'', "''")
        ))
    }

    /// Write `flyplan-backup.conf` into a node's data dir and include it;
    /// returns whether anything changed. Called for every new node.
    pub(super) fn write_backup_conf(&self, pgdata: &Path) -> Result<bool, ProviderError> {
        let mut changed = false;
        let main = pgdata.join("postgresql.conf");
        let text = std::fs::read_to_string(&main)
            .map_err(|e| ProviderError::io(format!("reading {}", main.display()), e))?;
        let include = format!("include_if_exists '{NODE_FILE}'");
        if !text.lines().any(|l| l.trim() == include) {
            let new = format!("{}\n{include}\n", text.trim_end());
            state::write_file(&main, new.as_bytes(), 0o600)?;
            self.user().chown(&main)?;
            changed = true;
        }
        let path = pgdata.join(NODE_FILE);
        let body = self.node_conf()?;
        if std::fs::read_to_string(&path).ok().as_deref() != Some(body.as_str()) {
            state::write_file(&path, body.as_bytes(), 0o600)?;
            self.user().chown(&path)?;
            changed = true;
        }
        Ok(changed)
    }

    /// Write every running node's conf, reload it, and restart a node whose
    /// `archive_mode` waits for one (a node made before backups existed).
    fn configure_nodes(&self) -> Result<bool, ProviderError> {
        let mut changed = false;
        let mut running: Vec<MachineRecord> = Vec::new();
        for m in self.machines() {
            if !m.pgdata.join("postgresql.conf").exists() {
                continue;
            }
            changed |= self.write_backup_conf(&m.pgdata)?;
            if self.node_running(&m) {
                running.push(m);
            }
        }
        // Standbys first, the leader last.
        let leader = self
            .monitor_nodes()?
            .into_iter()
            .find(|n| n.is_leader())
            .map(|n| n.name);
        running.sort_by_key(|m| Some(&m.node) == leader.as_ref());
        for m in &running {
            let pending = self.reload_node(m)?;
            if pending {
                self.restart_postgres(m)?;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// `pg_reload_conf()` on a node; returns whether `archive_mode` waits
    /// for a restart.
    fn reload_node(&self, m: &MachineRecord) -> Result<bool, ProviderError> {
        let user = self.user().name.clone();
        let sock = self.paths.sock();
        db::block_on(async {
            let c = db::connect(&sock, m.port, &user, "postgres", TIMEOUT).await?;
            c.execute("SELECT pg_reload_conf()", &[])
                .await
                .map_err(|e| db::query_err("reloading the configuration", e))?;
            // The reload is asynchronous: give the postmaster a moment.
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            let row = c
                .query_one(
                    "SELECT setting <> 'off' OR NOT pending_restart FROM pg_settings WHERE name = 'archive_mode'",
                    &[],
                )
                .await
                .map_err(|e| db::query_err("reading archive_mode", e))?;
            let on_or_settled: bool = row.get(0);
            Ok(!on_or_settled)
        })
    }

    /// Restart a node's PostgreSQL in place; its keeper carries on.
    fn restart_postgres(&self, m: &MachineRecord) -> Result<(), ProviderError> {
        tracing::info!(app = self.name, node = %m.node, "restarting for archive_mode");
        let mut cmd = self.server_cmd(&self.tools().pg_bindir.join("pg_ctl"));
        cmd.args(["restart", "-m", "fast", "-w", "-t", "120", "-D"])
            .arg(&m.pgdata);
        run_logged(
            &format!("restarting node {} for archive_mode", m.node),
            cmd,
            &self.paths.logs().join(format!("{}.log", m.node)),
            std::time::Duration::from_secs(150),
        )
    }

    /// Each running node's archiving as observed: `on` when it archives
    /// with the recorded command and timeout, else what differs.
    fn observed_archiving(&self, policy: &PolicyRecord) -> Option<Agreed<String>> {
        let want_timeout = crate::config::units::parse_duration_s(&policy.spec.archive_timeout);
        let user = self.user().name.clone();
        let sock = self.paths.sock();
        let mut seen: Vec<String> = Vec::new();
        for m in self.machines().iter().filter(|m| self.node_running(m)) {
            let got = db::block_on(async {
                let c = db::connect(&sock, m.port, &user, "postgres", TIMEOUT).await?;
                let rows = c
                    .query(
                        "SELECT name, setting FROM pg_settings WHERE name IN ('archive_mode', 'archive_command', 'archive_timeout')",
                        &[],
                    )
                    .await
                    .map_err(|e| db::query_err("reading archive settings", e))?;
                Ok::<_, ProviderError>(
                    rows.iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                )
            });
            let Ok(settings) = got else { continue };
            let get = |k: &str| settings.get(k).map(String::as_str).unwrap_or("");
            let state = if get("archive_mode") == "off" {
                "archive_mode is off".to_string()
            } else if get("archive_command") != policy.archive_command {
                "archive_command is not flyplan's".to_string()
            } else if get("archive_timeout").parse::<u64>().ok() != want_timeout {
                format!("archive_timeout is {}s", get("archive_timeout"))
            } else {
                crate::desired::ARCHIVING_ON.to_string()
            };
            seen.push(state);
        }
        seen.sort();
        seen.dedup();
        match seen.as_slice() {
            [] => None,
            [one] => Some(Agreed::One(one.clone())),
            many => Some(Agreed::Mixed(many.join("; "))),
        }
    }

    /// The live `backup_policy` resource: what was applied, with archiving
    /// read back from the nodes.
    pub(super) fn observe_backup_policy(&self) -> Result<Option<BackupPolicySpec>, ProviderError> {
        let Some(policy) = self.backup_policy()? else {
            return Ok(None);
        };
        let mut spec = policy.spec.clone();
        spec.archiving = self.observed_archiving(&policy);
        Ok(Some(spec))
    }
}

/// Connection timeout of the admin connections here.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Run `cmd` (stdout already set) to completion with stderr appended to
/// `log`, killing it after `timeout`.
fn run_with_stdout(
    what: &str,
    mut cmd: std::process::Command,
    log: &Path,
    timeout: std::time::Duration,
) -> Result<(), ProviderError> {
    use std::os::unix::process::CommandExt;
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| ProviderError::io(format!("opening {}", log.display()), e))?;
    cmd.stderr(err).process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| ProviderError::io(format!("{what}: starting {:?}", cmd.get_program()), e))?;
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(8)..].join("\n");
                return Err(ProviderError::failed(
                    what,
                    format!("{status}; last lines of {}:\n{tail}", log.display()),
                ));
            }
            Ok(None) if started.elapsed() > timeout => {
                super::process::kill_tree(child.id() as i32, std::time::Duration::from_secs(5));
                let _ = child.wait();
                return Err(ProviderError::failed(
                    what,
                    format!("timed out after {timeout:?}"),
                ));
            }
            Ok(None) => std::thread::sleep(std::time::Duration::from_millis(50)),
            Err(e) => return Err(ProviderError::io(what.to_string(), e)),
        }
    }
}

impl LocalProvider {
    pub(super) fn perform_backup_policy(
        &self,
        ctx: &AppCtx<'_>,
        step: &Step,
        sctx: &StepContext<'_>,
    ) -> Result<Outcome, ProviderError> {
        let _guard = FileLock::acquire(&ctx.paths.state_lock())?;
        match step.action {
            Action::Delete => {
                // Archiving stops; the store is left as it is.
                let existed = ctx.backup_policy()?.is_some();
                state::remove_file(&ctx.backup_policy_json())?;
                state::remove_file(&ctx.backup_credentials())?;
                ctx.configure_nodes()?;
                Ok(if existed {
                    Outcome::Deleted
                } else {
                    Outcome::NotNeeded
                })
            }
            action => {
                if !ctx.exists() {
                    return Err(ProviderError::failed(
                        format!("app {}", ctx.name),
                        "the app does not exist yet (create app first)",
                    ));
                }
                let after = step.after.as_ref().ok_or_else(|| {
                    ProviderError::failed(step.address.as_str(), "no desired backup policy")
                })?;
                let Spec::BackupPolicy(want) = &after.spec else {
                    return Err(ProviderError::failed(
                        step.address.as_str(),
                        "not a backup policy",
                    ));
                };
                let stored = ctx.stored_secrets()?;
                let value = sctx
                    .secrets
                    .get(&want.secret)
                    .map(str::to_string)
                    .or_else(|| stored.get(&want.secret).cloned())
                    .ok_or_else(|| {
                        ProviderError::failed(
                            format!("secret {}", want.secret),
                            "no value was given for it in this apply",
                        )
                    })?;
                let url = StoreUrl::parse(&value, true).map_err(|e| {
                    ProviderError::failed(format!("secret {}", want.secret), e.to_string())
                })?;
                ctx.user().mkdir(&ctx.backup_dir(), 0o700)?;
                let creds = url.credentials_section(backup::PROFILE);
                let creds_path = ctx.backup_credentials();
                let mut changed =
                    std::fs::read_to_string(&creds_path).ok().as_deref() != Some(creds.as_str());
                if changed {
                    state::write_file(&creds_path, creds.as_bytes(), 0o600)?;
                    ctx.user().chown(&creds_path)?;
                }
                // The store must answer before any node archives to it.
                ctx.check_store(&url)?;
                let mut spec = want.clone();
                spec.archiving = None;
                spec.store = Some(Digest(crate::secrets::digest(
                    ctx.name,
                    &want.secret,
                    &value,
                )));
                let rec = PolicyRecord {
                    spec,
                    store: url.to_string(),
                    archive_command: barman::wal_archive_command(
                        &url,
                        backup::PROFILE,
                        &creds_path.display().to_string(),
                    ),
                };
                if ctx.backup_policy()?.as_ref() != Some(&rec) {
                    state::write_json(&ctx.backup_policy_json(), &rec, 0o644)?;
                    changed = true;
                }
                changed |= ctx.configure_nodes()?;
                Ok(match (changed, action) {
                    (false, _) => Outcome::NotNeeded,
                    (true, Action::Create) => Outcome::Created,
                    (true, _) => Outcome::Updated,
                })
            }
        }
    }
}

impl LocalProvider {
    /// The app's context with its apply lock and the backup lock held, so
    /// runs of one app are serialised and never race an apply.
    fn hold_for_backups<'a>(
        &'a self,
        app: &'a str,
    ) -> Result<(AppCtx<'a>, Box<dyn crate::provider::LockGuard>, FileLock), ProviderError> {
        let ctx = self.app(app);
        if !ctx.exists() {
            return Err(ProviderError::failed(
                format!("app {app}"),
                "does not exist (apply it first)",
            ));
        }
        let apply = crate::provider::Provider::lock(self, app)?;
        ctx.user().mkdir(&ctx.backup_dir(), 0o700)?;
        let lock = FileLock::acquire(&ctx.backup_dir().join(".lock"))?;
        Ok((ctx, apply, lock))
    }
}

impl backup::Backups for LocalProvider {
    fn list(&self, app: &str) -> Result<Vec<barman::BackupInfo>, ProviderError> {
        self.app(app).list_backups()
    }

    fn create(&self, app: &str) -> Result<(String, String), ProviderError> {
        let (ctx, _apply, _lock) = self.hold_for_backups(app)?;
        ctx.create_backup()
    }

    fn run(
        &self,
        app: &str,
        now: time::OffsetDateTime,
    ) -> Result<backup::RunReport, ProviderError> {
        let (ctx, _apply, _lock) = self.hold_for_backups(app)?;
        let mut report = backup::RunReport {
            app: app.to_string(),
            taken: None,
        };
        let Some(policy) = ctx.backup_policy()? else {
            return Ok(report);
        };
        let every = crate::config::units::parse_duration_s(&policy.spec.full_backup_frequency)
            .unwrap_or(86400);
        let newest = ctx
            .list_backups()?
            .iter()
            .filter(|b| b.status == "DONE")
            .filter_map(|b| b.end_time.as_deref().and_then(base::barman_time_utc))
            .max();
        let due = newest.is_none_or(|t| {
            now - t >= time::Duration::seconds(i64::try_from(every).unwrap_or(i64::MAX))
        });
        if due {
            report.taken = Some(ctx.create_backup()?.0);
        }
        Ok(report)
    }

    fn status(&self, app: &str) -> Result<Option<backup::BackupStatus>, ProviderError> {
        self.app(app).backup_status()
    }

    fn verify(&self, app: &str, id: &str) -> Result<backup::Verified, ProviderError> {
        let (ctx, _apply, _lock) = self.hold_for_backups(app)?;
        ctx.verify_backup(id)
    }
}

/// List the store of `url` with barman-cloud as the user running flyplan,
/// its keys in a private temporary credentials file: whether it answers.
pub(super) fn check_store_now(secret: &str, url: &str) -> Result<(), ProviderError> {
    let what = format!("secret {secret}");
    let url =
        StoreUrl::parse(url, true).map_err(|e| ProviderError::failed(&what, e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("flyplan-store-")
        .tempdir()
        .map_err(|e| ProviderError::io("creating a temporary directory", e))?;
    let creds = dir.path().join("credentials");
    state::write_file(
        &creds,
        url.credentials_section(backup::PROFILE).as_bytes(),
        0o600,
    )?;
    let out = std::process::Command::new("barman-cloud-backup-list")
        .args(barman::list_args(&url, backup::PROFILE))
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .env("AWS_CONFIG_FILE", dir.path().join("config"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ProviderError::io("running barman-cloud-backup-list", e))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .replace(&url.secret_key, "********");
    Err(ProviderError::failed(
        format!("object store {url} (secret {secret})"),
        format!("cannot be read: {last}"),
    ))
}

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
//! holds `archive_mode = always`, the archive command and `archive_timeout`;
//! without a policy the command is `/bin/true` (no archiving), so turning
//! backups on or off needs no restart. `always`, not `on`: a standby then
//! archives every segment it receives too, so a leader that dies before its
//! archiver caught up leaves no gap in the store (a standby promoted with
//! `on` archives only the WAL it writes itself, PostgreSQL 15 manual,
//! "Continuous Archiving in Standby").

mod base;
mod catchup;
mod commands;
mod exec;
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
/// The `archive_mode` of every node.
const ARCHIVE_MODE: &str = "always";

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

    /// The content of a node's `flyplan-backup.conf`.
    fn node_conf(&self) -> Result<String, ProviderError> {
        let (command, timeout) = match self.backup_policy()? {
            Some(p) => (p.archive_command, p.spec.archive_timeout),
            None => (NO_ARCHIVE.to_string(), "60s".to_string()),
        };
        Ok(format!(
            "# Written by flyplan: WAL archiving of [postgres.backup].\n\
             archive_mode = {ARCHIVE_MODE}\n\
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
    /// `archive_mode` waits for one (a node made before backups existed, or
    /// before `archive_mode` became `always`).
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
                    "SELECT NOT pending_restart FROM pg_settings WHERE name = 'archive_mode'",
                    &[],
                )
                .await
                .map_err(|e| db::query_err("reading archive_mode", e))?;
            let settled: bool = row.get(0);
            Ok(!settled)
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
            let state = if get("archive_mode") != ARCHIVE_MODE {
                format!("archive_mode is {}", get("archive_mode"))
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

//! `flyplan backups list|create|run` on the fly provider: postgres-flex's
//! `flexctl backup` run in a machine through `exec`, as flyctl runs it
//! (superfly/flyctl at ad0172face30, `internal/command/postgres/backup.go`):
//!
//! - `fly pg backup list` runs `flexctl backup list` in the first active
//!   machine (`:393-429`); flyplan adds flexctl's own `--json`
//!   (postgres-flex `cmd/flexctl/main.go:36`), which prints
//!   `barman-cloud-backup-list --format json` as it is
//!   (`cmd/flexctl/backups.go:170-183`, `internal/flypg/barman.go:173-185`),
//!   in the leader, or any started machine when none leads;
//! - `fly pg backup create` runs `flexctl backup create` on the leader
//!   (`:209-263`, `ExecOnLeader`, `postgres.go:289-301`); flexctl refuses
//!   anywhere else (`backups.go:113-120`) and prints no id, so the new
//!   backup is the one the list after it has and the list before it had
//!   not. flexctl gives barman-cloud an hour (`backups.go:21`): the exec
//!   asks for as long, and is sent once.
//!
//! `backups run` takes nothing: postgres-flex's monitor takes a base backup
//! in the cluster whenever the newest is older than `full_backup_frequency`
//! (`cmd/monitor/main.go:51-71`, `monitor_backup_schedule.go`), so one
//! taken from here too would be a second.

use std::time::Duration;

use super::backup::{asked, ARCHIVE_SECRET};
use super::exec::{exec, exec_long};
use super::FlyProvider;
use crate::backup::{self, barman};
use crate::provider::ProviderError;

/// flexctl's limit on a base backup (`cmd/flexctl/backups.go:21`).
const CREATE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The `exec` command that lists the backups as JSON.
pub fn list_command() -> Vec<String> {
    ["flexctl", "backup", "list", "--json"]
        .map(str::to_string)
        .to_vec()
}

/// The `exec` command that takes a base backup, as flyctl sends it.
pub fn create_command() -> Vec<String> {
    ["flexctl", "backup", "create"].map(str::to_string).to_vec()
}

/// What `backups run` says on Fly.
pub const RUN_IN_CLUSTER: &str =
    "postgres-flex takes base backups in the cluster every full_backup_frequency";

impl FlyProvider {
    /// The leader (or, with `leader_only` false and no leader, any started
    /// machine) of an app whose backups are on.
    async fn backup_machine(&self, app: &str, leader_only: bool) -> Result<String, ProviderError> {
        let label = format!("backups of app {app}");
        let version = self.ledger(app).secrets()?.version;
        let snap = super::observe::fetch(&self.client, app, &label, false, version)
            .await?
            .ok_or_else(|| ProviderError::failed(&label, "the app does not exist"))?;
        if !snap.secrets.iter().any(|s| s.name == ARCHIVE_SECRET) {
            return Err(ProviderError::failed(
                &label,
                format!(
                    "backups are not enabled: the app has no {ARCHIVE_SECRET} \
                     (set [postgres.backup] in fly.toml and apply)"
                ),
            ));
        }
        let m = asked(&snap.machines)
            .filter(|m| !leader_only || super::observe::role_check(m) == Some("primary"))
            .ok_or_else(|| {
                ProviderError::failed(
                    &label,
                    if leader_only {
                        "no started machine is the leader (flexctl backs up only there)"
                    } else {
                        "no machine is started"
                    },
                )
            })?;
        Ok(m.id.clone())
    }

    async fn list_in(
        &self,
        app: &str,
        machine: &str,
    ) -> Result<Vec<barman::BackupInfo>, ProviderError> {
        let label = format!("list the backups of app {app} (flexctl in machine {machine})");
        let reply = exec(&self.client, &label, app, machine, list_command(), None).await?;
        barman::parse_list(reply.stdout.trim().as_bytes()).map_err(|e| {
            ProviderError::failed(label, format!("flexctl answered something else ({e})"))
        })
    }
}

impl backup::Backups for FlyProvider {
    fn list(&self, app: &str) -> Result<Vec<barman::BackupInfo>, ProviderError> {
        crate::runtime::block_on(async {
            let machine = self.backup_machine(app, false).await?;
            self.list_in(app, &machine).await
        })
    }

    fn create(&self, app: &str) -> Result<(String, String), ProviderError> {
        crate::runtime::block_on(async {
            let machine = self.backup_machine(app, true).await?;
            let before = self.list_in(app, &machine).await?;
            let label = format!("base backup of app {app} (flexctl on leader {machine})");
            exec_long(
                &self.client,
                &label,
                app,
                &machine,
                create_command(),
                CREATE_TIMEOUT,
            )
            .await?;
            let after = self.list_in(app, &machine).await?;
            let id = after
                .into_iter()
                .filter(|b| b.status == "DONE")
                .map(|b| b.backup_id)
                .find(|id| !before.iter().any(|b| b.backup_id == *id))
                .ok_or_else(|| {
                    ProviderError::failed(&label, "flexctl finished but no new backup is listed")
                })?;
            Ok((id, machine))
        })
    }

    fn run(
        &self,
        app: &str,
        _now: time::OffsetDateTime,
    ) -> Result<backup::RunReport, ProviderError> {
        Ok(backup::RunReport {
            app: app.to_string(),
            taken: None,
            not_run: Some(RUN_IN_CLUSTER.to_string()),
        })
    }

    fn status(&self, _app: &str) -> Result<Option<backup::BackupStatus>, ProviderError> {
        // `flyplan status` shows the policy as observed; the list is one
        // exec away with `flyplan backups list`.
        Ok(None)
    }

    fn verify(&self, app: &str, id: &str) -> Result<backup::Verified, ProviderError> {
        Err(ProviderError::failed(
            format!("backup {id} of app {app}"),
            format!(
                "not verified: the fly provider does not restore a backup where flyplan runs; \
                 restore it into a new app to check it (`flyplan backups restore --target {id} \
                 -c OTHER.toml`, whose `app` is new)"
            ),
        ))
    }
}

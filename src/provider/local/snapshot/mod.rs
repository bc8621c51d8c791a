//! Snapshots on the local provider: a `pg_basebackup` of one healthy node,
//! taken while the cluster runs, verified with `pg_verifybackup` and our own
//! SHA-256 of every file, kept outside the app's directory so that
//! destroying the app keeps them (as Fly keeps a volume's snapshots).
//!
//! Layout, under `<state_dir>/snapshots/` (mode 0711: others may pass, not
//! list):
//! - `<app>/<id>/` (mode 0700, owned by the service user):
//!   - `data/`: the copy, as `pg_basebackup --checkpoint=fast -X stream`
//!     wrote it, with PostgreSQL's `backup_manifest`;
//!   - `SHA256SUMS`: SHA-256 of every file under `data/`, in the format of
//!     `sha256sum` (`cd <id> && sha256sum -c SHA256SUMS` checks it by hand);
//!   - `snapshot.json`: our manifest (id, app, volume, time, size, checksum
//!     of `SHA256SUMS`, PostgreSQL version). No secret is in it.
//! - `<app>/.partial-<id>/`: a snapshot being taken; it becomes `<id>/`
//!   only once it is complete and verified.
//! - `<app>/.lock`: serialises the schedule of one app; `<app>/snapshots.log`:
//!   output of `pg_basebackup`.
//!
//! This module holds the layout and the [`Snapshots`] interface (listing,
//! taking on demand, a scheduled run with its pruning, verifying). The
//! store itself is in `store`, taking a snapshot in `take`, checking one in
//! `verify`, restoring from one in `restore`, and the files' integrity in
//! `files`.

mod files;
mod restore;
mod store;
mod take;
mod verify;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use time::OffsetDateTime;

use super::state;
use super::{AppCtx, LocalProvider};
use crate::model::SnapshotPolicySpec;
use crate::provider::ProviderError;
use crate::snapshot::{schedule, Manifest, Policy, RunReport, Snapshots, Trigger};
use files::snapshot_failed;

/// The copy, inside a snapshot directory.
pub const DATA: &str = "data";
/// Checksums of every file of the copy.
pub const SUMS: &str = "SHA256SUMS";
/// Our manifest.
pub const MANIFEST: &str = "snapshot.json";

const PARTIAL: &str = ".partial-";

impl LocalProvider {
    /// A command for a PostgreSQL client program, as the service user, with
    /// no inherited environment (no `PG*` variable, no password).
    fn client_cmd(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new(self.tools.pg_bindir.join(program));
        cmd.env_clear()
            .env(
                "PATH",
                format!("{}:/usr/bin:/bin", self.tools.pg_bindir.display()),
            )
            .env("LANG", "C.UTF-8")
            .env("LC_ALL", "C.UTF-8")
            .current_dir(cwd)
            .stdin(Stdio::null());
        if self.user.switch {
            use std::os::unix::process::CommandExt;
            cmd.uid(self.user.uid).gid(self.user.gid);
        }
        cmd
    }

    /// The snapshot policies recorded by the last apply, by volume.
    fn recorded_policies(
        &self,
        ctx: &AppCtx<'_>,
    ) -> Result<BTreeMap<String, Policy>, ProviderError> {
        let all: BTreeMap<String, SnapshotPolicySpec> =
            state::read_json(&ctx.paths.snapshot_policy())?.unwrap_or_default();
        Ok(all
            .into_iter()
            .map(|(volume, spec)| (volume, Policy::from_spec(&spec)))
            .collect())
    }
}

impl Snapshots for LocalProvider {
    fn list(&self, app: Option<&str>) -> Result<Vec<Manifest>, ProviderError> {
        let apps = match app {
            Some(a) => vec![a.to_string()],
            None => fs::read_dir(self.snapshots_dir())
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default(),
        };
        let mut out = Vec::new();
        for a in apps {
            out.extend(self.list_app(&a)?);
        }
        out.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    fn create(&self, app: &str, now: OffsetDateTime) -> Result<Vec<Manifest>, ProviderError> {
        let _held = self.hold_for_snapshots(app)?;
        let ctx = self.app(app);
        let volumes = Self::volumes_of(&ctx);
        if volumes.is_empty() {
            return Err(snapshot_failed(
                format!("app {app}"),
                "has no node to take a snapshot of",
            ));
        }
        volumes
            .iter()
            .map(|v| self.take(&ctx, v, now, Trigger::OnDemand))
            .collect()
    }

    fn run(&self, app: &str, now: OffsetDateTime) -> Result<RunReport, ProviderError> {
        let _held = self.hold_for_snapshots(app)?;
        let ctx = self.app(app);
        let mut report = RunReport {
            app: app.to_string(),
            ..RunReport::default()
        };
        let have_nodes = Self::volumes_of(&ctx);
        for (volume, policy) in self.recorded_policies(&ctx)? {
            let of_volume = |all: Vec<Manifest>| -> Vec<Manifest> {
                all.into_iter().filter(|m| m.volume == volume).collect()
            };
            let existing = of_volume(self.list_app(app)?);
            if have_nodes.contains(&volume)
                && schedule::is_due(now, &policy, existing.iter().map(|m| m.taken_at))
            {
                report
                    .taken
                    .push(self.take(&ctx, &volume, now, Trigger::Scheduled)?);
            } else {
                report.not_due.push(volume.clone());
            }
            let existing: Vec<(String, OffsetDateTime)> = of_volume(self.list_app(app)?)
                .into_iter()
                .map(|m| (m.id, m.taken_at))
                .collect();
            for id in schedule::expired(now, policy.retention_days, &existing) {
                state::remove_dir(&self.app_snapshots_dir(app).join(&id))?;
                tracing::info!(app, id = %id, "expired snapshot removed");
                report.pruned.push(id);
            }
        }
        Ok(report)
    }

    fn verify(&self, id: &str) -> Result<Manifest, ProviderError> {
        let dir = self.snapshot_path(id)?;
        self.verify_dir(&dir)
    }

    fn apps(&self) -> Result<Vec<String>, ProviderError> {
        let mut apps = Vec::new();
        if let Ok(entries) = fs::read_dir(self.state_dir.join("apps")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if self.app(&name).exists() {
                    apps.push(name);
                }
            }
        }
        apps.sort();
        Ok(apps)
    }
}

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

mod files;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::db;
use super::keeper::{volume_parts, MachineRecord};
use super::monitor::MonitorNode;
use super::process::run_logged;
use super::state::{self, FileLock, ServiceUser};
use super::{AppCtx, LocalProvider};
use crate::model::SnapshotPolicySpec;
use crate::provider::{Provider, ProviderError};
use crate::snapshot::{schedule, Manifest, Policy, RunReport, Snapshots, Trigger};
use files::{
    checksum_tree, hash_file, left_out_of_restore, parse_sums, sha256_hex, snapshot_failed,
    valid_id, walk_data, Entry, RESET_ON_RESTORE,
};

/// The copy, inside a snapshot directory.
pub const DATA: &str = "data";
/// Checksums of every file of the copy.
pub const SUMS: &str = "SHA256SUMS";
/// Our manifest.
pub const MANIFEST: &str = "snapshot.json";

const PARTIAL: &str = ".partial-";

/// How long a standby may take to replay what the leader had written when
/// the snapshot started, before the snapshot is taken from the leader.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Longest `pg_basebackup` accepted.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

impl LocalProvider {
    /// `<state_dir>/snapshots`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.state_dir.join("snapshots")
    }

    fn app_snapshots_dir(&self, app: &str) -> PathBuf {
        self.snapshots_dir().join(app)
    }

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

    /// The directory of snapshot `id`, whichever app it belongs to.
    ///
    /// # Errors
    /// The id is malformed or no app has such a snapshot.
    pub(super) fn snapshot_path(&self, id: &str) -> Result<PathBuf, ProviderError> {
        if !valid_id(id) {
            return Err(snapshot_failed(
                format!("snapshot {id:?}"),
                "not a snapshot id (letters, digits, `_` and `-`)",
            ));
        }
        if let Ok(apps) = fs::read_dir(self.snapshots_dir()) {
            for app in apps.flatten() {
                let dir = app.path().join(id);
                if dir.join(MANIFEST).is_file() {
                    return Ok(dir);
                }
            }
        }
        Err(snapshot_failed(
            format!("snapshot {id}"),
            format!(
                "no such snapshot under {} (see `flyplan snapshots list`)",
                self.snapshots_dir().display()
            ),
        ))
    }

    fn read_manifest(&self, dir: &Path) -> Result<Manifest, ProviderError> {
        let path = dir.join(MANIFEST);
        state::read_json::<Manifest>(&path)?
            .ok_or_else(|| snapshot_failed(path.display().to_string(), "missing"))
    }

    /// Snapshots of one app, oldest first (partial ones are not listed).
    fn list_app(&self, app: &str) -> Result<Vec<Manifest>, ProviderError> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(self.app_snapshots_dir(app)) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid_id(&name) || !e.path().join(MANIFEST).is_file() {
                continue;
            }
            out.push(self.read_manifest(&e.path())?);
        }
        out.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Check a snapshot directory: our manifest, the checksum of
    /// `SHA256SUMS`, every file's SHA-256 (none missing, none added), then
    /// `pg_verifybackup` against PostgreSQL's backup manifest.
    ///
    /// # Errors
    /// The first problem found, naming the file and what failed.
    pub(super) fn verify_dir(&self, dir: &Path) -> Result<Manifest, ProviderError> {
        let manifest = self.read_manifest(dir)?;
        let what = format!("snapshot {}", manifest.id);
        let bad =
            |message: String| snapshot_failed(&what, format!("verification failed: {message}"));
        let sums_path = dir.join(SUMS);
        let sums_text = fs::read(&sums_path).map_err(|e| bad(format!("{SUMS}: {e}")))?;
        let found = format!("sha256:{}", sha256_hex(&sums_text));
        if found != manifest.checksum {
            return Err(bad(format!(
                "{SUMS}: its checksum is {found}, the manifest recorded {}",
                manifest.checksum
            )));
        }
        let mut want = parse_sums(&String::from_utf8_lossy(&sums_text))
            .map_err(|m| bad(format!("{SUMS}: {m}")))?;
        for e in walk_data(dir).map_err(|e| bad(e.to_string()))? {
            let Entry::File(rel, path) = e else { continue };
            let Some(expected) = want.remove(&rel) else {
                return Err(bad(format!("{rel}: a file that the snapshot did not have")));
            };
            let (hash, _) = hash_file(&path, None).map_err(|e| bad(format!("{rel}: {e}")))?;
            if hash != expected {
                return Err(bad(format!(
                    "{rel}: SHA-256 mismatch (recorded {}…, found {}…): the file changed after the snapshot was taken",
                    &expected[..12.min(expected.len())],
                    &hash[..12]
                )));
            }
        }
        if let Some(missing) = want.keys().next() {
            return Err(bad(format!("{missing}: missing")));
        }
        self.pg_verifybackup(&dir.join(DATA))
            .map_err(|m| bad(format!("pg_verifybackup: {m}")))?;
        Ok(manifest)
    }

    /// `pg_verifybackup` of a copy; its complaints when it fails.
    fn pg_verifybackup(&self, data: &Path) -> Result<(), String> {
        let mut cmd = self.client_cmd("pg_verifybackup", data.parent().unwrap_or(data));
        cmd.arg(data);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.tools.pg_bindir.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches("pg_verifybackup: ").trim())
            .filter(|l| !l.is_empty())
            .take(5)
            .collect();
        Err(if lines.is_empty() {
            out.status.to_string()
        } else {
            lines.join("; ")
        })
    }

    /// Take one snapshot of `volume` of an app now. The caller holds the
    /// app's apply lock and its snapshot lock.
    fn take(
        &self,
        ctx: &AppCtx<'_>,
        volume: &str,
        now: OffsetDateTime,
        trigger: Trigger,
    ) -> Result<Manifest, ProviderError> {
        let started = Instant::now();
        // Ids and manifests count whole seconds.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let (source, node_role) = ctx.snapshot_source()?;
        let dir = self.app_snapshots_dir(ctx.name);
        let id = unique_id(&dir, ctx.name, volume, now);
        let partial = dir.join(format!("{PARTIAL}{id}"));
        state::remove_dir(&partial)?;
        self.user.mkdir(&partial, 0o700)?;
        let result = self.fill(ctx, &partial, &id, volume, now, trigger, &source, node_role);
        let mut manifest = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = state::remove_dir(&partial);
                return Err(e);
            }
        };
        manifest.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        write_owned(&self.user, &partial.join(MANIFEST), &manifest)?;
        let done = dir.join(&id);
        fs::rename(&partial, &done)
            .map_err(|e| ProviderError::io(format!("renaming {}", partial.display()), e))?;
        tracing::info!(
            app = ctx.name,
            id = %id,
            node = %manifest.node,
            bytes = manifest.size_bytes,
            ms = manifest.duration_ms,
            "snapshot taken"
        );
        Ok(manifest)
    }

    /// Copy, verify and checksum into `partial`; the manifest is returned,
    /// not yet written.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        ctx: &AppCtx<'_>,
        partial: &Path,
        id: &str,
        volume: &str,
        now: OffsetDateTime,
        trigger: Trigger,
        source: &MachineRecord,
        node_role: &str,
    ) -> Result<Manifest, ProviderError> {
        let (server_version_num, system_identifier) = ctx.node_identity(source)?;
        let data = partial.join(DATA);
        let mut cmd = self.client_cmd("pg_basebackup", partial);
        cmd.arg("--host")
            .arg(ctx.paths.sock())
            .args(["--port", &source.port.to_string()])
            .args(["--username", &self.user.name])
            .arg("--pgdata")
            .arg(&data)
            .args(["--checkpoint=fast", "--wal-method=stream", "--no-password"])
            .args(["--manifest-checksums=CRC32C", "--label", id]);
        run_logged(
            &format!("snapshot {id}: pg_basebackup of {}", source.address),
            cmd,
            &self.app_snapshots_dir(ctx.name).join("snapshots.log"),
            BACKUP_TIMEOUT,
        )?;
        self.pg_verifybackup(&data).map_err(|m| {
            snapshot_failed(
                format!("snapshot {id}"),
                format!("the copy failed pg_verifybackup: {m}"),
            )
        })?;
        let (sums, size_bytes, files) = checksum_tree(partial)?;
        let sums_path = partial.join(SUMS);
        state::write_file(&sums_path, sums.as_bytes(), 0o600)?;
        self.user.chown(&sums_path)?;
        let pg_version = fs::read_to_string(data.join("PG_VERSION"))
            .map(|s| s.trim().to_string())
            .map_err(|e| ProviderError::io("reading PG_VERSION of the copy", e))?;
        Ok(Manifest {
            format_version: crate::snapshot::MANIFEST_VERSION,
            id: id.to_string(),
            app: ctx.name.to_string(),
            volume: volume.to_string(),
            taken_at: now,
            trigger,
            node: source.address.clone(),
            node_role: node_role.to_string(),
            pg_version,
            server_version_num,
            system_identifier,
            size_bytes,
            files,
            checksum: format!("sha256:{}", sha256_hex(sums.as_bytes())),
            duration_ms: 0,
        })
    }

    /// Make the snapshot directories of an app (mode 0711 up to it).
    fn snapshot_layout(&self, app: &str) -> Result<PathBuf, ProviderError> {
        let dir = self.app_snapshots_dir(app);
        for d in [self.snapshots_dir(), dir.clone()] {
            if !d.exists() {
                state::mkdir(&d, 0o711)?;
            }
        }
        Ok(dir)
    }

    /// Volume names of an app's nodes (`pg_data`).
    fn volumes_of(ctx: &AppCtx<'_>) -> BTreeSet<String> {
        ctx.machines()
            .iter()
            .filter_map(|m| volume_parts(&m.volume).map(|v| v.0.to_string()))
            .collect()
    }

    /// Hold what a snapshot of an app needs: the app exists, its apply
    /// lock (no apply changes the nodes meanwhile) and its snapshot lock.
    fn hold_for_snapshots(
        &self,
        app: &str,
    ) -> Result<(Box<dyn crate::provider::LockGuard>, FileLock), ProviderError> {
        let ctx = self.app(app);
        if !ctx.exists() {
            return Err(snapshot_failed(
                format!("app {app}"),
                "does not exist (apply it first)",
            ));
        }
        let apply = self.lock(app)?;
        let dir = self.snapshot_layout(app)?;
        let lock = FileLock::acquire(&dir.join(".lock"))?;
        // Left by a run that was killed: never a snapshot.
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(PARTIAL) {
                    state::remove_dir(&e.path())?;
                }
            }
        }
        Ok((apply, lock))
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

/// `snap-<app>-<volume>-<YYYYMMDDTHHMMSSZ>`, with `-2`, `-3`... when that
/// second already has one.
fn unique_id(dir: &Path, app: &str, volume: &str, now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    let base = format!(
        "snap-{app}-{volume}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
    .replace(
        |c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "-",
    );
    let mut id = base.clone();
    let mut n = 1;
    while dir.join(&id).exists() || dir.join(format!("{PARTIAL}{id}")).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

fn write_owned(user: &ServiceUser, path: &Path, manifest: &Manifest) -> Result<(), ProviderError> {
    state::write_json(path, manifest, 0o644)?;
    user.chown(path)
}

impl AppCtx<'_> {
    /// The node to copy: a standby that has replayed everything the leader
    /// had written when the snapshot started (so every commit acknowledged
    /// before it is in the copy, and the leader does no extra work), else
    /// the leader; a standby alone when no leader is healthy.
    fn snapshot_source(&self) -> Result<(MachineRecord, &'static str), ProviderError> {
        let nodes = self.monitor_nodes()?;
        let machines = self.machines();
        let local = |n: &MonitorNode| {
            machines
                .iter()
                .find(|m| m.node == n.name)
                .filter(|m| self.node_running(m))
                .cloned()
        };
        let healthy = |n: &&MonitorNode| n.settled() && n.pg_running && n.health != 0;
        let leader = nodes
            .iter()
            .filter(healthy)
            .find(|n| n.is_leader())
            .and_then(&local);
        let mut standbys: Vec<&MonitorNode> = nodes
            .iter()
            .filter(healthy)
            .filter(|n| n.reported == "secondary")
            .collect();
        standbys.sort_by_key(|n| (n.candidate_priority == 0, n.name.clone()));
        let standbys: Vec<MachineRecord> = standbys.into_iter().filter_map(local).collect();
        let Some(leader) = leader else {
            return standbys
                .into_iter()
                .next()
                .map(|s| (s, "standby"))
                .ok_or_else(|| {
                    snapshot_failed(
                        format!("app {}", self.name),
                        "no healthy node to take a snapshot from",
                    )
                });
        };
        if standbys.is_empty() {
            return Ok((leader, "leader"));
        }
        let user = self.user().name.clone();
        let sock = self.paths.sock();
        let chosen = db::block_on(async {
            let l = db::connect(
                &sock,
                leader.port,
                &user,
                "postgres",
                Duration::from_secs(5),
            )
            .await?;
            let target: String = l
                .query_one("select pg_current_wal_lsn()::text", &[])
                .await
                .map_err(|e| db::query_err("reading the leader's WAL position", e))?
                .get(0);
            for s in &standbys {
                let Ok(c) =
                    db::connect(&sock, s.port, &user, "postgres", Duration::from_secs(5)).await
                else {
                    continue;
                };
                let started = Instant::now();
                while started.elapsed() < CATCH_UP {
                    let done = c
                        .query_one(
                            "select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                            &[&target],
                        )
                        .await
                        .map(|r| r.get::<_, bool>(0))
                        .unwrap_or(false);
                    if done {
                        return Ok::<_, ProviderError>(Some(s.clone()));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tracing::warn!(node = %s.node, "standby did not catch up in time for the snapshot");
            }
            Ok(None)
        })?;
        Ok(match chosen {
            Some(s) => (s, "standby"),
            None => (leader, "leader"),
        })
    }

    /// `server_version_num` and system identifier of a node.
    fn node_identity(&self, node: &MachineRecord) -> Result<(String, String), ProviderError> {
        let user = self.user().name.clone();
        let sock = self.paths.sock();
        db::block_on(async {
            let c =
                db::connect(&sock, node.port, &user, "postgres", Duration::from_secs(5)).await?;
            let row = c
                .query_one(
                    "select current_setting('server_version_num'), \
                     (select system_identifier::text from pg_control_system())",
                    &[],
                )
                .await
                .map_err(|e| db::query_err("reading the node's version", e))?;
            Ok((row.get(0), row.get(1)))
        })
    }

    /// Fill an empty `pgdata` from a snapshot, checking every file's SHA-256
    /// as it is copied, and leave out or reset what belonged to the source
    /// node (see [`left_out_of_restore`], [`RESET_ON_RESTORE`]). The copy
    /// keeps `backup_label`, so PostgreSQL replays the WAL of the backup on
    /// first start.
    ///
    /// # Errors
    /// A file differs from its recorded checksum, or is missing.
    pub(super) fn copy_snapshot_into(&self, id: &str, pgdata: &Path) -> Result<(), ProviderError> {
        let provider = self.provider;
        let dir = provider.snapshot_path(id)?;
        let what = format!("restoring snapshot {id}");
        let sums = fs::read_to_string(dir.join(SUMS))
            .map_err(|e| ProviderError::io(format!("{what}: reading {SUMS}"), e))?;
        let mut want =
            parse_sums(&sums).map_err(|m| snapshot_failed(&what, format!("{SUMS}: {m}")))?;
        let user = self.user();
        for e in walk_data(&dir)? {
            match e {
                Entry::Dir(rel) => {
                    if rel.starts_with("data/log/") {
                        continue;
                    }
                    let to = pgdata.join(
                        rel.strip_prefix(DATA)
                            .unwrap_or(&rel)
                            .trim_start_matches('/'),
                    );
                    user.mkdir(&to, 0o700)?;
                }
                Entry::File(rel, path) => {
                    let expected = want.remove(&rel).ok_or_else(|| {
                        snapshot_failed(
                            &what,
                            format!("{rel}: a file that the snapshot did not have"),
                        )
                    })?;
                    let target = pgdata.join(rel.strip_prefix("data/").unwrap_or(&rel));
                    let hash = if left_out_of_restore(&rel) {
                        hash_file(&path, None)
                    } else {
                        let mut out = File::create(&target).map_err(|e| {
                            ProviderError::io(format!("writing {}", target.display()), e)
                        })?;
                        let r = hash_file(&path, Some(&mut out));
                        out.set_permissions(fs::Permissions::from_mode(0o600))
                            .map_err(|e| {
                                ProviderError::io(format!("chmod {}", target.display()), e)
                            })?;
                        user.chown(&target)?;
                        r
                    }
                    .map_err(|e| ProviderError::io(format!("{what}: {rel}"), e))?
                    .0;
                    if hash != expected {
                        return Err(snapshot_failed(
                            &what,
                            format!("{rel}: SHA-256 mismatch: the snapshot is corrupt"),
                        ));
                    }
                }
            }
        }
        if let Some(missing) = want.keys().next() {
            return Err(snapshot_failed(
                &what,
                format!("{missing}: missing from the snapshot"),
            ));
        }
        for (name, body) in RESET_ON_RESTORE {
            let path = pgdata.join(name);
            state::write_file(&path, body.as_bytes(), 0o600)?;
            user.chown(&path)?;
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_name_the_app_volume_and_second() {
        let dir = tempfile::tempdir().unwrap();
        let t = datetime!(2026-11-20 00:00:05 UTC);
        let id = unique_id(dir.path(), "pg-fixture", "pg_data", t);
        assert_eq!(id, "snap-pg-fixture-pg_data-20261120T000005Z");
        fs::create_dir(dir.path().join(&id)).unwrap();
        assert_eq!(
            unique_id(dir.path(), "pg-fixture", "pg_data", t),
            "snap-pg-fixture-pg_data-20261120T000005Z-2"
        );
    }

    #[test]
    fn ids_that_could_leave_the_store_are_refused() {
        assert!(valid_id("snap-a-pg_data-20261120T000000Z"));
        for bad in ["", "..", "../x", "a/b", ".partial-x", "a b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}

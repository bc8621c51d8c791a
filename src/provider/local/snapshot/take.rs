//! Taking a snapshot: the node to copy, `pg_basebackup` of it into a
//! partial directory, verification and checksums, then the manifest; the
//! directory gets the snapshot's id only once all of that succeeded.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::files::{checksum_tree, sha256_hex, snapshot_failed};
use super::store::unique_id;
use super::{DATA, MANIFEST, PARTIAL, SUMS};
use crate::provider::local::db;
use crate::provider::local::keeper::{volume_parts, MachineRecord};
use crate::provider::local::monitor::MonitorNode;
use crate::provider::local::process::run_logged;
use crate::provider::local::state::{self, ServiceUser};
use crate::provider::local::{AppCtx, LocalProvider};
use crate::provider::ProviderError;
use crate::snapshot::{Manifest, Trigger};

/// How long a standby may take to replay what the leader had written when
/// the snapshot started, before the snapshot is taken from the leader.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Longest `pg_basebackup` accepted.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

impl LocalProvider {
    /// Take one snapshot of `volume` of an app now. The caller holds the
    /// app's apply lock and its snapshot lock.
    pub(super) fn take(
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

    /// Volume names of an app's nodes (`pg_data`).
    pub(super) fn volumes_of(ctx: &AppCtx<'_>) -> BTreeSet<String> {
        ctx.machines()
            .iter()
            .filter_map(|m| volume_parts(&m.volume).map(|v| v.0.to_string()))
            .collect()
    }
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
    pub(in crate::provider::local) fn snapshot_source(
        &self,
    ) -> Result<(MachineRecord, &'static str), ProviderError> {
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
}

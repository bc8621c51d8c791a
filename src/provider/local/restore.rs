//! A new cluster from a snapshot (`[postgres] restore_from`, `flyplan apply
//! --snapshot-id`, `flyplan snapshots restore`), as `fly pg create
//! --snapshot-id` does: the snapshot is verified before anything of the app
//! is made, the app records it (`restore.json`), and the first node's data
//! directory is filled from it instead of `initdb`. `pg_autoctl create
//! postgres` then registers that data directory as the formation's first
//! node, and the other nodes join as standbys of it as usual.
//!
//! A restore happens once, when the cluster is created: `restore_from` on
//! an existing app changes nothing.

use serde::{Deserialize, Serialize};

use super::state;
use super::{AppCtx, LocalProvider};
use crate::provider::ProviderError;
use crate::snapshot::{clock, Manifest};

/// What `restore.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RestoreRecord {
    /// The snapshot the cluster starts from.
    snapshot: String,
    /// The node whose data came from it, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restored_at: Option<String>,
}

impl LocalProvider {
    /// Check that snapshot `id` can seed a new cluster: it exists, passes
    /// verification, and holds data of the PostgreSQL major version this
    /// provider runs.
    ///
    /// # Errors
    /// The snapshot is unknown, corrupt (which file, what failed) or of
    /// another major version; the message says the restore was refused.
    pub(super) fn check_restorable(&self, app: &str, id: &str) -> Result<Manifest, ProviderError> {
        let refused = |e: ProviderError| {
            ProviderError::failed(
                format!("app {app}"),
                format!("refusing to restore from snapshot {id}: {e}"),
            )
        };
        let dir = self.snapshot_path(id).map_err(refused)?;
        let manifest = self.verify_dir(&dir).map_err(refused)?;
        let ours = self.tools.pg_major();
        if ours.as_deref().is_some_and(|v| v != manifest.pg_version) {
            return Err(refused(ProviderError::failed(
                format!("snapshot {id}"),
                format!(
                    "it holds PostgreSQL {} data; this provider runs PostgreSQL {}",
                    manifest.pg_version,
                    ours.unwrap_or_default()
                ),
            )));
        }
        Ok(manifest)
    }
}

impl AppCtx<'_> {
    fn restore_json(&self) -> std::path::PathBuf {
        self.paths.root.join("restore.json")
    }

    /// Record that the app's first node starts from snapshot `id`.
    pub(super) fn record_restore(&self, id: &str) -> Result<(), ProviderError> {
        let rec = RestoreRecord {
            snapshot: id.to_string(),
            node: None,
            restored_at: None,
        };
        state::write_json(&self.restore_json(), &rec, 0o644)
    }

    /// The snapshot the next first node starts from, when the app was
    /// created from one and no node has been made from it yet.
    pub(super) fn pending_restore(&self) -> Result<Option<String>, ProviderError> {
        Ok(state::read_json::<RestoreRecord>(&self.restore_json())?
            .filter(|r| r.node.is_none())
            .map(|r| r.snapshot))
    }

    /// The snapshot the app was restored from, if any.
    pub fn restored_from(&self) -> Option<String> {
        state::read_json::<RestoreRecord>(&self.restore_json())
            .ok()
            .flatten()
            .map(|r| r.snapshot)
    }

    /// Record that `node` now runs with the snapshot's data.
    pub(super) fn restore_done(&self, id: &str, node: &str) -> Result<(), ProviderError> {
        let rec = RestoreRecord {
            snapshot: id.to_string(),
            node: Some(node.to_string()),
            restored_at: Some(clock::format(time::OffsetDateTime::now_utc())),
        };
        state::write_json(&self.restore_json(), &rec, 0o644)?;
        tracing::info!(
            app = self.name,
            snapshot = id,
            node,
            "cluster restored from snapshot"
        );
        Ok(())
    }
}

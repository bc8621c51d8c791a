//! Daily volume snapshots: what a snapshot records ([`Manifest`]), when one
//! is due and which ones have expired ([`schedule`], pure), the clock the
//! schedule reads ([`clock`]), and what a provider that keeps snapshots
//! offers ([`Snapshots`]).
//!
//! A snapshot is a physical copy of one healthy node's data directory,
//! taken while the cluster runs. It belongs to an app and a volume name
//! (`pg_data`), not to one node: every node of the app has a volume of that
//! name and one snapshot a day of any of them is the volume's snapshot.

pub mod clock;
pub mod schedule;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ProviderError;

pub use schedule::Policy;

/// Version of the manifest format written by this flyplan.
pub const MANIFEST_VERSION: u32 = 1;

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The daily schedule (`flyplan snapshots run`, `flyplan watch`).
    Scheduled,
    /// `flyplan snapshots create`.
    OnDemand,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Scheduled => "scheduled",
            Trigger::OnDemand => "on-demand",
        }
    }
}

/// What flyplan records about a snapshot (`snapshot.json` beside its data).
/// It holds no secret: no password, no connection string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// `snap-<app>-<volume>-<YYYYMMDDTHHMMSSZ>`, unique in the state dir.
    pub id: String,
    pub app: String,
    /// The volume name (`[[mounts]] source`), e.g. `pg_data`.
    pub volume: String,
    /// When it was taken, by the clock the schedule reads.
    #[serde(with = "time::serde::rfc3339")]
    pub taken_at: OffsetDateTime,
    pub trigger: Trigger,
    /// The machine whose data was copied, e.g. `machine[iad:1]`.
    pub node: String,
    /// `leader` or `standby` at the time of the copy.
    pub node_role: String,
    /// Major version of the data directory (`PG_VERSION`), e.g. `15`.
    pub pg_version: String,
    /// `server_version_num` of the node it was taken from, e.g. `150010`.
    pub server_version_num: String,
    /// The cluster's system identifier (`pg_control_system()`).
    pub system_identifier: String,
    /// Bytes of the copied files.
    pub size_bytes: u64,
    pub files: u64,
    /// `sha256:<hex>` of the `SHA256SUMS` file, which holds the SHA-256 of
    /// every file of the copy.
    pub checksum: String,
    /// How long taking, verifying and checksumming took.
    pub duration_ms: u64,
}

/// What one run of the schedule did for an app.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    pub app: String,
    /// Snapshots taken because they were due.
    pub taken: Vec<Manifest>,
    /// Ids of expired snapshots removed.
    pub pruned: Vec<String>,
    /// Volumes with a policy for which nothing was due.
    pub not_due: Vec<String>,
}

impl RunReport {
    /// One line for logs and `flyplan watch`'s record.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for m in &self.taken {
            parts.push(format!("took {}", m.id));
        }
        if !self.pruned.is_empty() {
            parts.push(format!("pruned {}", self.pruned.join(", ")));
        }
        if parts.is_empty() {
            "no snapshot due".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// A provider that keeps snapshots itself (the local provider). Fly takes
/// its volume snapshots on its own schedule, set by the volume's
/// `snapshot_retention` and `auto_backup_enabled`.
pub trait Snapshots: Send + Sync {
    /// Snapshots of `app`, or of every app, oldest first.
    ///
    /// # Errors
    /// When the snapshot store cannot be read.
    fn list(&self, app: Option<&str>) -> Result<Vec<Manifest>, ProviderError>;

    /// Take a snapshot of every volume of `app` now, whatever the schedule.
    ///
    /// # Errors
    /// The app does not exist, another apply holds its lock, no node is
    /// healthy, or the copy fails its verification.
    fn create(&self, app: &str, now: OffsetDateTime) -> Result<Vec<Manifest>, ProviderError>;

    /// Take the snapshots that are due at `now` and remove expired ones,
    /// following the policy recorded by the last apply.
    ///
    /// # Errors
    /// As [`Snapshots::create`].
    ///
    /// # Guarantees
    /// Runs of one app are serialised: two runs on the same day take one
    /// snapshot. Pruning never removes the newest snapshot of a volume and
    /// never touches another app's snapshots.
    fn run(&self, app: &str, now: OffsetDateTime) -> Result<RunReport, ProviderError>;

    /// Check a snapshot against its checksums and PostgreSQL's backup
    /// manifest.
    ///
    /// # Errors
    /// Unknown id, or the first problem found: which file, what failed.
    fn verify(&self, id: &str) -> Result<Manifest, ProviderError>;

    /// Apps that exist (whose schedule `flyplan snapshots run --all` runs).
    fn apps(&self) -> Result<Vec<String>, ProviderError>;
}

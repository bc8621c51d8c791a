//! The typed form of a fly.toml as flyplan understands it, after parsing and
//! validation. Values here are already checked; byte spans of every key that
//! was read are kept in [`SpanMap`] so later layers can point at the source.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;

/// Byte range in the source text.
pub type Span = Range<usize>;

/// Spans of keys and values, by dotted key path such as `postgres.instances`,
/// `secrets.PG_PASSWORD`, `attachments[1].app` or `mounts[0].snapshot_retention`.
/// The span is that of the value when there is one, else of the table header.
#[derive(Debug, Clone, Default)]
pub struct SpanMap {
    pub spans: BTreeMap<String, Span>,
}

impl SpanMap {
    pub fn get(&self, path: &str) -> Option<Span> {
        self.spans.get(path).cloned()
    }
    pub fn insert(&mut self, path: impl Into<String>, span: Span) {
        self.spans.insert(path.into(), span);
    }
}

/// Which way of writing the postgres service the file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// `[postgres]` plus real fly.toml keys (or a Fly Postgres file with none of them).
    Native,
    /// `[services.postgres]` with `[[services.postgres.env]]`.
    Services,
}

/// A parsed, validated fly.toml.
#[derive(Debug, Clone)]
pub struct Config {
    /// Path as given by the user, used in messages.
    pub path: PathBuf,
    /// The whole source text, for diagnostics.
    pub source: String,
    pub spans: SpanMap,
    pub dialect: Dialect,
    /// The cluster's Fly app name.
    pub app: String,
    /// Leader and failover candidates live here.
    pub primary_region: String,
    /// Container image, e.g. `flyio/postgres-flex:15`.
    pub image: String,
    /// PostgreSQL major version derived from the image tag (default 15).
    pub pg_major: u32,
    pub postgres: PostgresConfig,
    /// Declared secrets by name, with their source (never a value).
    pub secrets: BTreeMap<String, SecretSource>,
    /// At most one mount is used for the data volume (the first).
    pub mounts: Vec<MountConfig>,
    pub vm: VmConfig,
    pub attachments: Vec<AttachmentConfig>,
    /// Notes for keys that were accepted and ignored (ordinary Fly app keys).
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Nodes in the primary region (candidates). 1 = development.
    pub instances: u32,
    /// Whether fly.toml gave `instances` (the services dialect's two nodes
    /// count as given). When it did not and the app exists, the plan keeps
    /// the live count.
    pub instances_declared: bool,
    /// 0 = asynchronous; n = commits wait for n standbys.
    pub sync_standbys: u32,
    /// Whether fly.toml gave `sync_standbys`. When neither it nor
    /// `instances` was given and the app exists, the plan keeps the live
    /// value.
    pub sync_standbys_declared: bool,
    /// Read-only replicas by region code; never promoted.
    pub read_replicas: BTreeMap<String, u32>,
    /// Whether fly.toml gave `read_replicas`; as for `instances_declared`.
    pub read_replicas_declared: bool,
    /// The operator (superuser) role: `postgres` natively, `PG_USER` in the services dialect.
    pub operator_user: String,
    /// Name of the secret holding the operator password.
    pub operator_password: Option<String>,
    /// A database created for the operator (`PG_DATABASE` in the services dialect).
    pub database: Option<String>,
    /// Client port inside a machine (5432).
    pub port: u16,
    /// Snapshot id to create the cluster from.
    pub restore_from: Option<String>,
    /// `[postgres.backup]`: continuous archiving and base backups.
    pub backup: Option<BackupConfig>,
    /// `[postgres.restore]`: a new cluster from another cluster's backups.
    pub restore: Option<RestoreConfig>,
    pub users: Vec<UserConfig>,
    pub databases: Vec<DatabaseConfig>,
    /// `[postgres.parameters]`: PostgreSQL settings by their canonical name,
    /// each with its value as `SHOW` prints it (`8MB`, `30s`, `on`).
    pub parameters: BTreeMap<String, String>,
}

/// `[postgres.backup]`, with postgres-flex's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// The secret whose value is the store URL
    /// (`https://KEY:SECRET@host[:port]/bucket/directory`).
    pub secret: String,
    /// Seconds after which a partly filled WAL segment is archived.
    pub archive_timeout_s: u64,
    /// Point-in-time recovery kept, as postgres-flex writes it: `7d`,
    /// `2w` or `1m` (months).
    pub recovery_window: String,
    /// Seconds between full (base) backups.
    pub full_backup_frequency_s: u64,
    /// Base backups kept whatever their age.
    pub minimum_redundancy: u64,
}

/// What a restore replays up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The newest archived WAL.
    Latest,
    /// An RFC 3339 time, normalised to UTC (`2026-11-30T10:15:00Z`).
    Time(String),
    /// A backup id or name.
    Backup(String),
}

/// `[postgres.restore]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreConfig {
    /// The secret whose value is the source cluster's store URL.
    pub backup_secret: String,
    pub target: RestoreTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum SecretSource {
    /// `{ from_env = "VAR" }` (also `$VAR` references in the services dialect).
    Env { var: String },
    /// `{ from_file = "path" }`, relative to the fly.toml.
    File { path: PathBuf },
    /// `{ generate = true }`: a random value made once by the provider and kept.
    Generate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    pub source: String,
    pub destination: String,
    /// Size in GB (Fly volumes are sized in whole GB); default 1.
    pub initial_size_gb: u64,
    /// `initial_size` was given: an existing cluster's volumes are sized
    /// by it; otherwise they keep their live size.
    pub initial_size_declared: bool,
    /// Days, 1..=60; Fly's default is 5.
    pub snapshot_retention: u32,
    /// Daily snapshots; Fly's default is true.
    pub scheduled_snapshots: bool,
    /// Time of day (UTC, "HH:MM") the daily snapshot is due; default "00:00".
    pub snapshot_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Fly size preset, e.g. `shared-cpu-1x`.
    pub size: String,
    pub memory_mb: u32,
    pub cpus: u32,
    /// `shared` or `performance`.
    pub cpu_kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentConfig {
    /// The consumer app that receives the connection URL.
    pub app: String,
    pub database: String,
    pub user: String,
    /// Secret name set on the consumer app (default `DATABASE_URL`).
    pub variable: String,
    pub superuser: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ensure {
    Present,
    Absent,
}

/// A managed role, in the spirit of CloudNativePG's `managed.roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    pub name: String,
    pub ensure: Ensure,
    pub login: bool,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    /// -1 = no limit.
    pub connection_limit: i32,
    pub member_of: Vec<String>,
    /// Secret holding the password; none = no password (cannot log in with one).
    pub password_secret: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    pub name: String,
    pub ensure: Ensure,
    /// Owner role; default the operator user.
    pub owner: Option<String>,
}

//! What the user typed: the command line, parsed by clap.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::render::Format;

#[derive(Debug, Parser)]
#[command(
    name = "flyplan",
    version,
    about = "Keep Fly.io Postgres clusters equal to a fly.toml: plan, review, apply."
)]
pub struct Cli {
    /// Where clusters live: `local` (this machine) or `fly` (Fly Machines API).
    #[arg(
        long,
        global = true,
        env = "FLYPLAN_PROVIDER",
        value_enum,
        default_value = "local"
    )]
    pub provider: ProviderName,

    /// State directory (default $XDG_DATA_HOME/flyplan; /var/lib/flyplan for root).
    #[arg(long, global = true, env = "FLYPLAN_HOME")]
    pub state_dir: Option<PathBuf>,

    /// Read and write the live state as a JSON file instead of a provider.
    #[arg(long, global = true, hide = true, env = "FLYPLAN_LIVE_FILE")]
    pub live: Option<PathBuf>,

    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderName {
    Local,
    Fly,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path of the fly.toml.
    #[arg(short = 'c', long = "config", default_value = "fly.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a fly.toml and print what it describes.
    Validate(ConfigArg),
    /// Show what apply would change.
    Plan(PlanArgs),
    /// Make the live state equal to fly.toml (or carry out a saved plan).
    Apply(ApplyArgs),
    /// Nodes, roles, checks and the leader endpoint.
    Status(StatusArgs),
    /// The variables an attached app receives (reveals secrets, on purpose).
    Env(EnvArgs),
    /// Destroy everything of the app.
    Destroy(DestroyArgs),
    /// Follow a git branch: apply each new commit's fly.toml, heal drift.
    Watch(WatchArgs),
    /// Volume snapshots: list, take, run the daily schedule, verify, restore.
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// Backups to the [postgres.backup] object store: list, take, run the schedule.
    #[command(subcommand)]
    Backups(BackupsCommand),
    /// Write the fly.toml of a live cluster; planning it changes nothing.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The cluster's Fly app.
    #[arg(short = 'a', long = "app")]
    pub app: String,
    /// Write the fly.toml here instead of to standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Overwrite the file given with -o if it exists.
    #[arg(long)]
    pub force: bool,
    /// Leave out [[postgres.users]] and [[postgres.databases]].
    #[arg(long)]
    pub no_roles: bool,
}

/// `--format`: the output formats of `flyplan plan`, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Text,
    Markdown,
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Markdown => Format::Markdown,
            FormatArg::Json => Format::Json,
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Save the plan for `flyplan apply FILE`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit 0 with no changes, 2 with changes, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan destroys of volumes, databases or the app as allowed.
    #[arg(long)]
    pub allow_destroy: bool,
    /// Plan the destruction of everything of the app.
    #[arg(long)]
    pub destroy: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; without it, fly.toml is planned afresh.
    pub planfile: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Allow destroying volumes, databases or the app.
    #[arg(long)]
    pub allow_destroy: bool,
    /// Steps run at the same time at most.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Create the cluster from this snapshot (as `fly pg create
    /// --snapshot-id`); the app must not exist yet.
    #[arg(long, value_name = "ID", conflicts_with = "planfile")]
    pub snapshot_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub json: bool,
    /// Exit with 2 when a check of any node is critical (for scripts).
    #[arg(long)]
    pub exit_code: bool,
    /// Also write the metrics ports of the nodes and the endpoint to FILE,
    /// as Prometheus file-based service discovery reads it.
    #[arg(long, value_name = "FILE")]
    pub prometheus_sd: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The attached (consumer) app.
    #[arg(short = 'a', long = "app")]
    pub app: String,
    /// Print a JSON object instead of `NAME=value` lines.
    #[arg(long)]
    pub json: bool,
    /// URLs that name every failover candidate with
    /// `target_session_attrs=read-write` instead of the leader endpoint.
    #[arg(long)]
    pub multi_host: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Required: destroying deletes all data of the app.
    #[arg(long)]
    pub allow_destroy: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The repository: a local path, file://, https:// or ssh URL.
    #[arg(long)]
    pub repo: String,
    /// The branch to follow.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The fly.toml in the repository, or a directory: every fly.toml under it is an app.
    #[arg(long, default_value = "fly.toml")]
    pub path: String,
    /// How often to fetch and re-plan to heal drift.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Reconcile the branch head once and exit (1 if it failed).
    #[arg(long)]
    pub once: bool,
    /// Plan and record, never apply.
    #[arg(long)]
    pub plan_only: bool,
    /// Serve POST /hook (reconcile now) and GET /metrics at this address.
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Print the record of this watch and exit.
    #[arg(long)]
    pub status: bool,
    /// With --status: as JSON.
    #[arg(long, requires = "status")]
    pub json: bool,
    /// Stop applying (the loop still fetches, plans and records).
    #[arg(long, conflicts_with_all = ["resume", "status", "once"])]
    pub suspend: bool,
    /// Apply again after --suspend.
    #[arg(long, conflicts_with_all = ["status", "once"])]
    pub resume: bool,
    /// First retry delay of a failing commit; it doubles per failure.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub retry_base: std::time::Duration,
    /// Longest retry delay.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub retry_max: std::time::Duration,
    /// Allow plans that destroy volumes, databases or the app.
    #[arg(long)]
    pub allow_destroy: bool,
    /// Apply steps run at the same time at most.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// Snapshots of the app (or of one named with -a), oldest first.
    List(SnapshotListArgs),
    /// Take a snapshot now, whatever the schedule.
    Create(SnapshotTakeArgs),
    /// Take the snapshots that are due and remove expired ones (for cron or CI).
    Run(SnapshotRunArgs),
    /// Check a snapshot against its checksums and PostgreSQL's backup manifest.
    Verify(SnapshotVerifyArgs),
    /// Create the cluster of fly.toml from a snapshot (the app must not exist).
    Restore(SnapshotRestoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// Base backups in the store, oldest first (barman-cloud-backup-list).
    List(BackupListArgs),
    /// Take a base backup now, then apply retention.
    Create(BackupListArgs),
    /// Take a base backup when full_backup_frequency says one is due (for cron or CI).
    Run(BackupRunArgs),
    /// Create the cluster of fly.toml from another cluster's backups (the app must not exist).
    Restore(BackupRestoreArgs),
    /// Restore a base backup into a scratch directory and check it with amcheck.
    Verify(BackupVerifyArgs),
}

#[derive(Debug, Args)]
pub struct BackupVerifyArgs {
    /// The backup id (see `flyplan backups list`).
    pub id: String,
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupRestoreArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Replay WAL up to this time (RFC 3339); the latest archived WAL when absent.
    #[arg(long, value_name = "TIME", conflicts_with = "target")]
    pub target_time: Option<String>,
    /// Restore this backup (id or name) to its end instead.
    #[arg(long, value_name = "ID")]
    pub target: Option<String>,
    /// The secret holding the source store URL (default: [postgres.restore] backup_secret).
    #[arg(long, value_name = "NAME")]
    pub secret: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Steps run at the same time at most.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
}

#[derive(Debug, Args)]
pub struct BackupListArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BackupRunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub now: NowArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotListArgs {
    /// The app whose snapshots to list (also one that was destroyed).
    #[arg(short = 'a', long = "app", conflicts_with = "all")]
    pub app: Option<String>,
    /// Snapshots of every app.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub config: ConfigArg,
    #[arg(long)]
    pub json: bool,
}

/// The time the schedule reads: `--now`, else `FLYPLAN_NOW`, else the clock.
#[derive(Debug, Args)]
pub struct NowArg {
    /// Act as if it were this time (RFC 3339, e.g. 2026-11-21T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
}

#[derive(Debug, Args)]
pub struct SnapshotTakeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub now: NowArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotRunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Every app of the state directory instead of the one in fly.toml.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub now: NowArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotVerifyArgs {
    /// The snapshot id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct SnapshotRestoreArgs {
    /// The snapshot id.
    pub id: String,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Steps run at the same time at most.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
}

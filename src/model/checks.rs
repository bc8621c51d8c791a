//! What `flyplan status` shows of a resource besides its spec: process ids,
//! ports, replication lag, connections, disk and the platform's snapshots.
//! Checks are never compared, planned or fingerprinted.

use serde::{Deserialize, Serialize};

/// A snapshot the platform took of a volume (Fly's daily snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakenSnapshot {
    pub created_at: String,
    pub id: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub status: String,
}

/// A health check the platform ran on a node, as it reports it (a Fly
/// machine's `checks`: postgres-flex's `vm`, `pg` and `role`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformCheck {
    pub name: String,
    /// `passing`, `warning` or `critical`.
    pub status: String,
    #[serde(default)]
    pub output: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Observations of one resource; each is absent when the provider could
/// not read it. Fields are alphabetical so that they serialise sorted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Client connections of a node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<i64>,
    /// Bytes free on the filesystem of a node's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_bytes: Option<u64>,
    /// Size of the filesystem of a node's volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size_bytes: Option<u64>,
    /// Bytes used by a node's data directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_used_bytes: Option<u64>,
    /// The state pg_auto_failover's monitor wants a node in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_state: Option<String>,
    /// The monitor's health of a node (1 healthy, 0 bad, -1 unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<i64>,
    /// Host of the leader endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Bytes of WAL a node has yet to replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// One-minute load average of the machine a node runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_average: Option<f64>,
    /// A node's `max_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// Memory available on the machine a node runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_available_bytes: Option<u64>,
    /// Memory of the machine a node runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_bytes: Option<u64>,
    /// Port of a node's Prometheus exporter, or of the endpoint's stats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u64>,
    /// Synchronous standbys as the monitor counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_number_sync_standbys: Option<i64>,
    /// Port of the monitor of a local cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_port: Option<u64>,
    /// Whether pg_auto_failover's monitor answered (on the app).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_reachable: Option<bool>,
    /// The state a node reported to the monitor (`primary`, `secondary`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_state: Option<String>,
    /// Pid of a node's keeper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    /// The health checks the platform itself runs on a node (Fly); without
    /// them flyplan judges the node from the other observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_checks: Option<Vec<PlatformCheck>>,
    /// Port of a node, or of the leader endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u64>,
    /// Pid of a node's postmaster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_pid: Option<i64>,
    /// A node's `superuser_reserved_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_connections: Option<i64>,
    /// The snapshot a local cluster was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    /// Snapshots the platform took of a volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Vec<TakenSnapshot>>,
    /// Seconds a node has been in a state other than the one the monitor wants it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_seconds: Option<i64>,
    /// Standbys the leader's `synchronous_standby_names` waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_effective: Option<u64>,
    /// The node's replication state as the monitor reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<String>,
    /// URL of the leader endpoint, without credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A node whose reported state differs from its goal for longer than this
/// many seconds is stuck.
pub const STUCK_AFTER_SECONDS: i64 = 5;

impl Checks {
    pub fn is_empty(&self) -> bool {
        *self == Checks::default()
    }

    /// `stuck in <state> for <n>s (the monitor wants <goal>): <way out>`
    /// when the node has been in a state other than its goal for longer
    /// than [`STUCK_AFTER_SECONDS`]; shown by `status` and logged by
    /// `watch`.
    pub fn stuck_note(&self) -> Option<String> {
        let (secs, state) = (self.stuck_seconds?, self.pg_state.as_deref()?);
        (secs > STUCK_AFTER_SECONDS).then(|| {
            let goal = self.goal_state.as_deref().unwrap_or("?");
            format!(
                "stuck in {state} for {secs}s (the monitor wants {goal}): {}",
                way_out(state)
            )
        })
    }
}

/// The usual way out of a pg_auto_failover state a node is stuck in.
pub fn way_out(state: &str) -> &'static str {
    match state {
        "wait_primary" => "the leader waits for a standby to catch up: check that the standbys run and reach it for replication (`flyplan apply` restarts stopped nodes)",
        "report_lsn" | "prepare_promotion" | "fast_forward" => "a failover is choosing the most advanced standby and needs every standby to report: start the stopped nodes (`flyplan apply`) or remove dead ones from fly.toml",
        "catchingup" => "the standby is replaying WAL from the leader: wait, or check its disk and the leader's WAL senders",
        "wait_standby" | "join_primary" => "a new standby is joining: the leader must accept its replication connection",
        "draining" | "demote_timeout" | "demoted" | "stop_replication" => "the old leader is being demoted: its keeper must run so it can rejoin as a standby",
        _ => "check the node's keeper log; `flyplan apply` restarts stopped nodes",
    }
}

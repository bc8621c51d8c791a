//! The three checks `flyplan status` shows for every node, with the names
//! and meaning of Fly Postgres' own: `vm` (free disk on the volume, load,
//! memory), `pg` (connections, replication lag, "currently leader") and
//! `role` (leader, replica, read-replica). Each is passing, warning or
//! critical by the thresholds below, which the README names. Where the
//! platform runs the checks itself (Fly's machines run postgres-flex's),
//! its results are shown instead.

use serde::Serialize;

use crate::model::{Checks, MachineSpec, PlatformCheck, Resource, Role};

/// Free space on a volume below this share of its size: warning.
pub const DISK_FREE_WARNING: f64 = 0.20;
/// Free space on a volume below this share of its size: critical.
pub const DISK_FREE_CRITICAL: f64 = 0.10;
/// One-minute load per CPU at or above this: warning.
pub const LOAD_PER_CPU_WARNING: f64 = 2.0;
/// One-minute load per CPU at or above this: critical.
pub const LOAD_PER_CPU_CRITICAL: f64 = 4.0;
/// Available memory below this share of the total: warning.
pub const MEMORY_FREE_WARNING: f64 = 0.10;
/// Available memory below this share of the total: critical.
pub const MEMORY_FREE_CRITICAL: f64 = 0.05;
/// Client connections at or above this share of `max_connections` less the
/// reserved ones: warning.
pub const CONNECTIONS_WARNING: f64 = 0.80;
/// As above: critical.
pub const CONNECTIONS_CRITICAL: f64 = 0.95;
/// Replication lag at or above this many bytes: warning.
pub const LAG_WARNING_BYTES: i64 = 16 * 1024 * 1024;
/// Replication lag at or above this many bytes: critical.
pub const LAG_CRITICAL_BYTES: i64 = 64 * 1024 * 1024;
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// One check's result and what it saw.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub status: Status,
    pub output: String,
    /// When the platform last ran the check, for checks it runs itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// The `vm`, `pg` and `role` checks of a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeHealth {
    pub vm: Check,
    pub pg: Check,
    pub role: Check,
}

impl NodeHealth {
    pub fn worst(&self) -> Status {
        self.vm.status.max(self.pg.status).max(self.role.status)
    }
}

/// Collects findings: the worst status wins, every finding is shown.
struct Findings {
    status: Status,
    parts: Vec<String>,
}

impl Findings {
    fn new() -> Self {
        Findings {
            status: Status::Passing,
            parts: Vec::new(),
        }
    }
    fn add(&mut self, status: Status, text: String) {
        self.status = self.status.max(status);
        self.parts.push(text);
    }
    fn done(self, nothing: &str) -> Check {
        Check {
            status: self.status,
            output: if self.parts.is_empty() {
                nothing.to_string()
            } else {
                self.parts.join("; ")
            },
            updated_at: None,
        }
    }
}

fn by_low_share(share: f64, warning: f64, critical: f64) -> Status {
    if share < critical {
        Status::Critical
    } else if share < warning {
        Status::Warning
    } else {
        Status::Passing
    }
}

fn by_high(value: f64, warning: f64, critical: f64) -> Status {
    if value >= critical {
        Status::Critical
    } else if value >= warning {
        Status::Warning
    } else {
        Status::Passing
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1_048_576.0)
}

/// `part` of `whole` as a fraction; 0 of nothing.
fn share_of(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// `vm`: free disk on the volume, load per CPU, available memory.
pub fn vm_check(c: &Checks, cpus: u32) -> Check {
    let mut f = Findings::new();
    if let (Some(free), Some(size)) = (c.disk_free_bytes, c.disk_size_bytes) {
        let share = share_of(free, size);
        f.add(
            by_low_share(share, DISK_FREE_WARNING, DISK_FREE_CRITICAL),
            format!(
                "disk {} free of {} ({:.0}%)",
                mib(free),
                mib(size),
                share * 100.0
            ),
        );
    }
    if let Some(load) = c.load_average {
        let per_cpu = load / f64::from(cpus.max(1));
        f.add(
            by_high(per_cpu, LOAD_PER_CPU_WARNING, LOAD_PER_CPU_CRITICAL),
            format!("load {load:.2} on {cpus} cpu(s)"),
        );
    }
    if let (Some(avail), Some(total)) = (c.memory_available_bytes, c.memory_total_bytes) {
        let share = share_of(avail, total);
        f.add(
            by_low_share(share, MEMORY_FREE_WARNING, MEMORY_FREE_CRITICAL),
            format!("memory {} available of {}", mib(avail), mib(total)),
        );
    }
    f.done("not measured")
}

/// `pg`: connections used/reserved/max, replication lag, and "currently
/// leader" for the leader.
pub fn pg_check(c: &Checks, m: &MachineSpec) -> Check {
    let mut f = Findings::new();
    if m.state != "running" {
        f.add(Status::Critical, format!("postgres is {}", m.state));
        return f.done("");
    }
    if m.leader == Some(true) {
        f.add(Status::Passing, "currently leader".to_string());
    }
    match (c.connections, c.max_connections) {
        (Some(used), Some(max)) => {
            let reserved = c.reserved_connections.unwrap_or(0);
            let usable = (max - reserved).max(1);
            f.add(
                by_high(
                    used as f64 / usable as f64,
                    CONNECTIONS_WARNING,
                    CONNECTIONS_CRITICAL,
                ),
                format!("connections {used} used, {reserved} reserved, {max} max"),
            );
        }
        _ => f.add(Status::Critical, "postgres does not answer".to_string()),
    }
    if m.leader != Some(true) {
        match c.lag_bytes {
            Some(lag) => f.add(
                by_high(
                    lag as f64,
                    LAG_WARNING_BYTES as f64,
                    LAG_CRITICAL_BYTES as f64,
                ),
                format!("replication lag {lag} bytes"),
            ),
            None => f.add(Status::Warning, "replication lag unknown".to_string()),
        }
    }
    f.done("")
}

/// `role`: leader, replica or read-replica; a node stuck between states, or
/// a monitor that does not answer, makes it a warning.
pub fn role_check(c: &Checks, m: &MachineSpec, monitor_reachable: Option<bool>) -> Check {
    let mut f = Findings::new();
    let role = node_role(m);
    if m.state != "running" {
        f.add(Status::Critical, format!("{role}, {}", m.state));
    } else {
        f.add(Status::Passing, role.to_string());
    }
    if monitor_reachable == Some(false) {
        f.add(
            Status::Warning,
            "the monitor does not answer: automatic failover is off until it is back".to_string(),
        );
    }
    if let Some(note) = c.stuck_note() {
        f.add(Status::Warning, note);
    }
    f.done("")
}

pub fn node_role(m: &MachineSpec) -> &'static str {
    if m.leader == Some(true) {
        "leader"
    } else if m.role == Role::Replica {
        "read-replica"
    } else {
        "replica"
    }
}

/// A check the platform ran, as flyplan shows it: the status as reported,
/// the output on one line (postgres-flex reports one line per sub-check).
fn reported(all: &[PlatformCheck], name: &str) -> Check {
    let Some(c) = all.iter().find(|c| c.name == name) else {
        return Check {
            status: Status::Warning,
            output: "not reported by the machine yet".to_string(),
            updated_at: None,
        };
    };
    let output = c
        .output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let (status, output) = match c.status.as_str() {
        "passing" => (Status::Passing, output),
        "warning" => (Status::Warning, output),
        "critical" => (Status::Critical, output),
        other => (Status::Warning, format!("status {other:?}: {output}")),
    };
    Check {
        status,
        output,
        updated_at: c.updated_at.clone(),
    }
}

/// The `vm`, `pg` and `role` checks of a node whose platform runs them:
/// a Fly machine's checks, which postgres-flex serves on port 5500
/// (`internal/flycheck/vm.go`: disk, load, memory/cpu/io pressure;
/// `pg.go`: connections, and on the primary its locks and disk capacity;
/// `role.go`: `primary`, `replica`, `zombie`...). Statuses are Fly's, with
/// two exceptions: a machine that does not run has critical `pg` and
/// `role` checks (what they say is from before it stopped), and a `zombie`
/// role (a primary postgres-flex fenced because the other members follow
/// another) is critical.
pub fn platform_health(all: &[PlatformCheck], m: &MachineSpec) -> NodeHealth {
    let vm = reported(all, "vm");
    let mut pg = reported(all, "pg");
    let mut role = reported(all, "role");
    if role.output == "zombie" {
        role.status = Status::Critical;
        role.output = "zombie: postgres-flex fenced this primary (zombie.lock), the other \
                       members follow another one; it takes no writes"
            .to_string();
    }
    if m.state != "running" {
        for c in [&mut pg, &mut role] {
            c.status = Status::Critical;
            c.output = format!("machine is {}; last reported: {}", m.state, c.output);
        }
    }
    NodeHealth { vm, pg, role }
}

/// The three checks of machine resource `r`.
pub fn node_health(r: &Resource, monitor_reachable: Option<bool>) -> Option<NodeHealth> {
    let m = r.machine()?;
    if let Some(all) = &r.checks.platform_checks {
        return Some(platform_health(all, m));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    Some(NodeHealth {
        vm: vm_check(&r.checks, cpus),
        pg: pg_check(&r.checks, m),
        role: role_check(&r.checks, m, monitor_reachable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(leader: bool, state: &str) -> MachineSpec {
        let mut m = MachineSpec::new("iad", 0, Role::Candidate, state);
        m.leader = Some(leader);
        m
    }

    #[test]
    fn thresholds_decide_the_status() {
        let c = Checks {
            disk_free_bytes: Some(5),
            disk_size_bytes: Some(100),
            load_average: Some(0.5),
            memory_available_bytes: Some(50),
            memory_total_bytes: Some(100),
            ..Checks::default()
        };
        let vm = vm_check(&c, 2);
        assert_eq!(vm.status, Status::Critical, "{vm:?}");
        assert!(vm.output.contains("(5%)"), "{vm:?}");
        let c = Checks {
            connections: Some(85),
            max_connections: Some(103),
            reserved_connections: Some(3),
            lag_bytes: Some(0),
            ..Checks::default()
        };
        let pg = pg_check(&c, &machine(true, "running"));
        assert_eq!(pg.status, Status::Warning, "{pg:?}");
        assert!(pg
            .output
            .starts_with("currently leader; connections 85 used, 3 reserved, 103 max"));
        let c = Checks {
            connections: Some(1),
            max_connections: Some(100),
            lag_bytes: Some(LAG_CRITICAL_BYTES),
            ..Checks::default()
        };
        assert_eq!(
            pg_check(&c, &machine(false, "running")).status,
            Status::Critical
        );
        assert_eq!(
            pg_check(&c, &machine(false, "stopped")).status,
            Status::Critical
        );
    }

    #[test]
    fn stuck_states_and_a_lost_monitor_are_named() {
        let c = Checks {
            pg_state: Some("wait_primary".into()),
            goal_state: Some("primary".into()),
            stuck_seconds: Some(30),
            ..Checks::default()
        };
        let role = role_check(&c, &machine(true, "running"), Some(false));
        assert_eq!(role.status, Status::Warning);
        assert!(role.output.starts_with("leader; the monitor does not answer: automatic failover is off until it is back; stuck in wait_primary for 30s (the monitor wants primary): the leader waits for a standby"), "{}", role.output);
        let c = Checks {
            stuck_seconds: Some(2),
            pg_state: Some("catchingup".into()),
            ..Checks::default()
        };
        let role = role_check(&c, &machine(false, "running"), Some(true));
        assert_eq!(
            role,
            Check {
                status: Status::Passing,
                output: "replica".into(),
                updated_at: None,
            }
        );
    }

    fn reported(name: &str, status: &str, output: &str) -> PlatformCheck {
        PlatformCheck {
            name: name.into(),
            status: status.into(),
            output: output.into(),
            updated_at: Some("2024-06-01T00:00:15Z".into()),
        }
    }

    #[test]
    fn a_platforms_own_checks_are_shown_with_its_statuses() {
        let all = [
            reported("pg", "critical", "[✓] connections: 9 used, 3 reserved, 300 max (8.2ms)\n[✗] disk-capacity: 91.0% - readonly mode enabled, extend your volume to re-enable writes (20µs)\n"),
            reported("role", "passing", "primary"),
        ];
        let h = platform_health(&all, &machine(true, "running"));
        assert_eq!(h.pg.status, Status::Critical);
        assert_eq!(h.pg.output, "[✓] connections: 9 used, 3 reserved, 300 max (8.2ms); [✗] disk-capacity: 91.0% - readonly mode enabled, extend your volume to re-enable writes (20µs)");
        assert_eq!(h.pg.updated_at.as_deref(), Some("2024-06-01T00:00:15Z"));
        assert_eq!(
            (h.role.status, h.role.output.as_str()),
            (Status::Passing, "primary")
        );
        assert_eq!(h.vm.status, Status::Warning, "not reported: {:?}", h.vm);
        assert_eq!(h.worst(), Status::Critical);

        let zombie = [reported("role", "passing", "zombie")];
        let h = platform_health(&zombie, &machine(false, "running"));
        assert_eq!(h.role.status, Status::Critical);
        assert!(h.role.output.starts_with("zombie: "), "{:?}", h.role);

        let stopped = [
            reported("pg", "passing", "[✓] connections: 9 used"),
            reported("role", "passing", "replica"),
            reported(
                "vm",
                "passing",
                "[✓] checkDisk: 9.5 GB (97.0%) free space on /data/ (20µs)",
            ),
        ];
        let h = platform_health(&stopped, &machine(false, "stopped"));
        assert_eq!(h.vm.status, Status::Passing);
        assert_eq!(
            (h.pg.status, h.pg.output.as_str()),
            (
                Status::Critical,
                "machine is stopped; last reported: [✓] connections: 9 used"
            )
        );
        assert_eq!(h.role.status, Status::Critical);
    }
}

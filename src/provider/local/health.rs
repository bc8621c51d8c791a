//! What `flyplan status` needs for the `vm`, `pg` and `role` checks of the
//! local nodes, besides what observe reads: free space on each volume's
//! filesystem, the machine's load and memory, reserved connections, and how
//! long a node has been in a state other than the monitor's goal for it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::db;
use super::monitor::FORMATION;
use super::AppCtx;
use crate::live::Live;
use crate::model::{Address, Kind};

/// Bytes free and size of the filesystem holding `path`.
fn filesystem(path: &Path) -> Option<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    Some((s.blocks_available() as u64 * frag, s.blocks() as u64 * frag))
}

/// The one-minute load average.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// (available, total) memory in bytes.
fn memory() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some((kb("MemAvailable:")? * 1024, kb("MemTotal:")? * 1024))
}

impl AppCtx<'_> {
    /// Add the health facts to the checks of the app and its machines.
    pub(super) fn health_facts(&self, live: &mut Live) {
        let machines = self.machines();
        let sock = self.paths.sock();
        let user = self.user().name.clone();
        let (monitor_up, stuck, reserved) = db::block_on(async {
            let mut stuck = BTreeMap::new();
            let mut reserved = BTreeMap::new();
            let monitor = self.monitor_client(Duration::from_secs(2)).await.ok();
            if let Some(m) = &monitor {
                let rows = m
                    .query(
                        "select nodename, \
                         extract(epoch from now() - statechangetime)::bigint \
                         from pgautofailover.node \
                         where formationid = $1 and reportedstate <> goalstate",
                        &[&FORMATION],
                    )
                    .await
                    .unwrap_or_default();
                for r in rows {
                    stuck.insert(r.get::<_, String>(0), r.get::<_, i64>(1));
                }
            }
            for m in &machines {
                if let Ok(c) =
                    db::connect(&sock, m.port, &user, "postgres", Duration::from_secs(2)).await
                {
                    if let Ok(row) = c
                        .query_one(
                            "select current_setting('superuser_reserved_connections')::bigint",
                            &[],
                        )
                        .await
                    {
                        reserved.insert(m.node.clone(), row.get::<_, i64>(0));
                    }
                }
            }
            (monitor.is_some(), stuck, reserved)
        });
        if let Some(app) = live.resources.get_mut(&Address::app(self.name)) {
            app.checks.monitor_reachable = Some(monitor_up);
        }
        let load = load_average();
        let mem = memory();
        for m in &machines {
            let Some(r) = Address::parse(&m.address)
                .ok()
                .and_then(|a| live.resources.get_mut(&a))
                .filter(|r| r.kind() == Kind::Machine)
            else {
                continue;
            };
            let c = &mut r.checks;
            if let Some((free, size)) =
                filesystem(&m.pgdata).or_else(|| filesystem(&self.paths.root))
            {
                c.disk_free_bytes = Some(free);
                c.disk_size_bytes = Some(size);
            }
            c.load_average = load;
            c.memory_available_bytes = mem.map(|(a, _)| a);
            c.memory_total_bytes = mem.map(|(_, t)| t);
            c.reserved_connections = reserved.get(&m.node).copied();
            c.stuck_seconds = stuck.get(&m.node).copied();
        }
    }
}

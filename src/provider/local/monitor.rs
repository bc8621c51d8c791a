//! The pg_auto_failover monitor of an app: created once with fast-failover
//! settings, run as a detached `pg_autoctl run`, and read through SQL
//! (`pgautofailover.node`, `pgautofailover.formation`).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::db::{self, query_err};
use super::process::{self, alive_with, postmaster_pid, read_pid, run_logged, spawn_daemon};
use super::state::{self, port_for};
use super::AppCtx;
use crate::provider::ProviderError;

/// The formation and group every node of an app belongs to.
pub const FORMATION: &str = "default";

/// Monitor settings for fast failover. The monitor checks each node every
/// 500 ms (1 s timeout, one retry 250 ms later), and a node whose check
/// fails and whose keeper has not reported for 1 s is unhealthy: a killed
/// leader is noticed in about 1.5 s. (pg_autoctl reports every second, so
/// a live keeper is never 1 s late unless its machine stalls, and then the
/// check must fail too.)
///
/// `primary_demote_timeout` is how long the monitor waits for an
/// unreachable primary to step down before it promotes a standby: the
/// guard against two primaries. Its clock starts when the chosen standby is
/// told to stop replicating, after every standby has restarted without the
/// old primary (`report_lsn`) and the candidate has caught up
/// (`prepare_promotion`). Every keeper demotes its own primary after
/// `keeper::NETWORK_PARTITION_TIMEOUT` (1 s) without the monitor and
/// without a standby, so an isolated old primary stops accepting writes
/// before the new one accepts any; with `sync_standbys` ≥ 1 it cannot
/// acknowledge a commit at all once its standbys are gone. The standbys
/// left it at `report_lsn`, so it has been alone for the demote timeout
/// plus the election by the time a standby is promoted. At 1.2 s the
/// timeout usually ends while the candidate is still promoting itself
/// (`stop_replication`), so it adds nothing to the failover. (With
/// pg_autoctl's defaults, 20 s against a 30 s demote timeout, a failover
/// takes about 50 s here.)
const MONITOR_CONF: &str = "\
# Written by flyplan; read after pg_autoctl's own settings.
shared_buffers = '32MB'
effective_cache_size = '128MB'
maintenance_work_mem = '16MB'
work_mem = '4MB'
max_connections = 100
password_encryption = 'scram-sha-256'
pgautofailover.health_check_period = 500
pgautofailover.health_check_timeout = 1000
pgautofailover.health_check_max_retries = 1
pgautofailover.health_check_retry_delay = 250
pgautofailover.node_considered_unhealthy_timeout = 1000
";

/// `pgautofailover.primary_demote_timeout`, in ms; see [`MONITOR_CONF`].
pub const PRIMARY_DEMOTE_TIMEOUT_MS: u32 = 1200;

/// The monitor's settings: [`MONITOR_CONF`] and a demote timeout that
/// keeps the rule below.
///
/// # Errors
/// When the keepers' `network_partition_timeout` is not shorter than the
/// monitor's `primary_demote_timeout`.
pub fn monitor_conf() -> Result<String, ProviderError> {
    check_failover_timeouts(
        super::keeper::NETWORK_PARTITION_TIMEOUT,
        PRIMARY_DEMOTE_TIMEOUT_MS,
    )?;
    Ok(format!(
        "{MONITOR_CONF}pgautofailover.primary_demote_timeout = {PRIMARY_DEMOTE_TIMEOUT_MS}\n"
    ))
}

/// An isolated old primary must stop accepting writes before a standby is
/// promoted: its keeper's `network_partition_timeout` (s) must end before
/// the monitor's `primary_demote_timeout` (ms).
fn check_failover_timeouts(partition_s: u32, demote_ms: u32) -> Result<(), ProviderError> {
    if u64::from(partition_s) * 1000 < u64::from(demote_ms) {
        return Ok(());
    }
    Err(ProviderError::failed(
        "failover settings",
        format!(
            "the keepers' network_partition_timeout ({partition_s} s) must be shorter than \
             the monitor's primary_demote_timeout ({demote_ms} ms), or an isolated old \
             primary could accept writes after a standby is promoted"
        ),
    ))
}

/// Client authentication of the monitor: the keepers (loopback, user
/// autoctl_node, database pg_auto_failover) are trusted; anything else over
/// TCP needs a password; the unix socket is private to the service user.
const MONITOR_HBA: &str = "\
# Written by flyplan.
local   all               all                            trust
host    pg_auto_failover  autoctl_node  127.0.0.1/32     trust
host    all               all           127.0.0.1/32     scram-sha-256
host    all               all           ::1/128          scram-sha-256
";

/// Append an include of `flyplan.conf` to postgresql.conf (once) and write
/// the two files that flyplan owns in a data directory.
pub fn write_server_files(
    ctx: &AppCtx<'_>,
    pgdata: &Path,
    conf: &str,
    hba: &str,
) -> Result<(), ProviderError> {
    let main = pgdata.join("postgresql.conf");
    let text = fs::read_to_string(&main)
        .map_err(|e| ProviderError::io(format!("reading {}", main.display()), e))?;
    let include = "include_if_exists 'flyplan.conf'";
    if !text.lines().any(|l| l.trim() == include) {
        let new = format!("{}\n{include}\n", text.trim_end());
        state::write_file(&main, new.as_bytes(), 0o600)?;
        ctx.user().chown(&main)?;
    }
    for (name, body) in [("flyplan.conf", conf), ("pg_hba.conf", hba)] {
        let path = pgdata.join(name);
        state::write_file(&path, body.as_bytes(), 0o600)?;
        ctx.user().chown(&path)?;
    }
    Ok(())
}

/// One node as the monitor sees it.
#[derive(Debug, Clone)]
pub struct MonitorNode {
    pub id: i64,
    pub name: String,
    pub port: u16,
    pub reported: String,
    pub goal: String,
    pub health: i32,
    pub pg_running: bool,
    pub candidate_priority: i32,
    pub replication_quorum: bool,
    pub lsn: i64,
    pub rep_state: String,
}

/// States in which a node is or is becoming the writable primary.
pub const PRIMARY_STATES: &[&str] = &[
    "single",
    "primary",
    "wait_primary",
    "join_primary",
    "apply_settings",
];

impl MonitorNode {
    /// The monitor considers this node the leader.
    pub fn is_leader(&self) -> bool {
        PRIMARY_STATES.contains(&self.reported.as_str())
            && PRIMARY_STATES.contains(&self.goal.as_str())
    }
    /// Settled: the node reached the state the monitor assigned.
    pub fn settled(&self) -> bool {
        self.reported == self.goal
    }
}

pub async fn read_nodes(client: &Client) -> Result<Vec<MonitorNode>, ProviderError> {
    let rows = client
        .query(
            "select nodeid, nodename, nodeport, reportedstate::text, goalstate::text, health, \
                    coalesce(reportedpgisrunning, false), candidatepriority, replicationquorum, \
                    (reportedlsn - '0/0'::pg_lsn)::bigint, coalesce(reportedrepstate, '') \
             from pgautofailover.node where formationid = $1 order by nodeid",
            &[&FORMATION],
        )
        .await
        .map_err(|e| query_err("reading nodes from the monitor", e))?;
    Ok(rows
        .iter()
        .map(|r| MonitorNode {
            id: r.get(0),
            name: r.get(1),
            port: r.get::<_, i32>(2) as u16,
            reported: r.get(3),
            goal: r.get(4),
            health: r.get(5),
            pg_running: r.get(6),
            candidate_priority: r.get(7),
            replication_quorum: r.get(8),
            lsn: r.get(9),
            rep_state: r.get(10),
        })
        .collect())
}

pub async fn read_number_sync_standbys(client: &Client) -> Result<Option<i32>, ProviderError> {
    let row = client
        .query_opt(
            "select number_sync_standbys from pgautofailover.formation where formationid = $1",
            &[&FORMATION],
        )
        .await
        .map_err(|e| query_err("reading the formation", e))?;
    Ok(row.map(|r| r.get(0)))
}

impl AppCtx<'_> {
    pub fn monitor_port(&self) -> Result<u16, ProviderError> {
        port_for(self.state_dir(), &self.paths, "monitor")
    }

    /// The URI keepers use to reach the monitor.
    pub fn monitor_uri(&self) -> Result<String, ProviderError> {
        Ok(crate::sql::connection_url(
            "127.0.0.1",
            self.monitor_port()?,
            "autoctl_node",
            None,
            "pg_auto_failover",
        ))
    }

    pub fn monitor_running(&self) -> bool {
        let keeper =
            read_pid(&self.paths.monitor_pid()).is_some_and(|pid| alive_with(pid, "pg_autoctl"));
        keeper && postmaster_pid(&self.paths.monitor_pgdata()).is_some()
    }

    /// Connect to the monitor's database.
    pub async fn monitor_client(&self, timeout: Duration) -> Result<Client, ProviderError> {
        let port = state::recorded_port(&self.paths, "monitor")
            .ok_or_else(|| ProviderError::failed("monitor", "no port recorded"))?;
        db::connect(
            &self.paths.sock(),
            port,
            &self.user().name,
            "pg_auto_failover",
            timeout,
        )
        .await
    }

    /// Create the monitor if it does not exist and start it if it does not
    /// run. Returns whether anything was done.
    pub fn ensure_monitor(&self) -> Result<bool, ProviderError> {
        let pgdata = self.paths.monitor_pgdata();
        let port = self.monitor_port()?;
        let mut changed = false;
        if !pgdata.join("PG_VERSION").exists() || !pgdata.join("flyplan.conf").exists() {
            self.stop_monitor();
            state::remove_dir(&pgdata)?;
            self.user().mkdir(&pgdata, 0o700)?;
            self.forget_autoctl_files(&pgdata)?;
            let mut cmd = self.autoctl();
            cmd.env("FLYPLAN_SERVER", "monitor")
                .args(["create", "monitor", "--pgdata"])
                .arg(&pgdata)
                .args(["--pgport", &port.to_string()])
                .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1"])
                .args(["--auth", "trust", "--no-ssl"]);
            tracing::info!(
                app = self.name,
                port,
                "creating the pg_auto_failover monitor"
            );
            run_logged(
                "creating the monitor",
                cmd,
                &self.paths.logs().join("monitor.log"),
                Duration::from_secs(180),
            )?;
            write_server_files(self, &pgdata, &monitor_conf()?, MONITOR_HBA)?;
            changed = true;
        }
        if !self.monitor_running() {
            self.stop_monitor();
            self.forget_autoctl_runtime(&pgdata)?;
            let mut cmd = self.autoctl();
            cmd.env("FLYPLAN_SERVER", "monitor")
                .args(["run", "--pgdata"])
                .arg(&pgdata);
            let pid = spawn_daemon(
                "starting the monitor",
                cmd,
                &self.paths.logs().join("monitor.log"),
            )?;
            state::write_file(
                &self.paths.monitor_pid(),
                format!("{pid}\n").as_bytes(),
                0o644,
            )?;
            changed = true;
        }
        self.wait_monitor_ready(Duration::from_secs(90))?;
        Ok(changed)
    }

    fn wait_monitor_ready(&self, timeout: Duration) -> Result<(), ProviderError> {
        let started = Instant::now();
        loop {
            let res = db::block_on(async {
                let c = self.monitor_client(Duration::from_secs(2)).await?;
                read_number_sync_standbys(&c).await
            });
            match res {
                Ok(Some(_)) => return Ok(()),
                Ok(None) | Err(_) if started.elapsed() < timeout => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Ok(None) => {
                    return Err(ProviderError::failed(
                        "monitor",
                        "the default formation is missing",
                    ))
                }
                Err(e) => {
                    return Err(ProviderError::failed(
                        "waiting for the monitor",
                        format!(
                            "{e} (see {})",
                            self.paths.logs().join("monitor.log").display()
                        ),
                    ))
                }
            }
        }
    }

    /// Stop the monitor's pg_autoctl and its postgres.
    pub fn stop_monitor(&self) {
        let mut roots: Vec<i32> = process::processes_marked(&[
            process::app_marker(&self.paths.root),
            process::server_marker("monitor"),
        ])
        .into_iter()
        .collect();
        if let Some(pid) = read_pid(&self.paths.monitor_pid()) {
            if alive_with(pid, "pg_autoctl") && !roots.contains(&pid) {
                roots.push(pid);
            }
        }
        if let Some(pid) = postmaster_pid(&self.paths.monitor_pgdata()) {
            if !roots.contains(&pid) {
                roots.push(pid);
            }
        }
        if !roots.is_empty() {
            process::stop_trees(&roots, Duration::from_secs(20));
        }
    }
}

impl AppCtx<'_> {
    /// Make the formation wait for `want` synchronous standbys.
    ///
    /// pg_auto_failover refuses `number_sync_standbys = N` unless N+1
    /// standbys take part in the replication quorum, and with 0 it already
    /// makes commits wait for one quorum standby when there is one
    /// (`ANY 1 (...)`). So 1 with a single quorum standby is set as 0 on
    /// the monitor; `formation.json` records both numbers so observe reports
    /// the declared one while the monitor keeps the value set for it.
    pub fn ensure_formation(&self, want: i64) -> Result<bool, ProviderError> {
        let path = self.paths.formation();
        let had: Option<super::FormationRecord> = state::read_json(&path)?;
        let (current, quorum_standbys) = db::block_on(async {
            let c = self.monitor_client(Duration::from_secs(5)).await?;
            let current = read_number_sync_standbys(&c).await?.unwrap_or(0);
            let nodes = read_nodes(&c).await?;
            let quorum = nodes
                .iter()
                .filter(|n| n.replication_quorum && !n.is_leader())
                .count() as i64;
            Ok::<_, ProviderError>((current, quorum))
        })?;
        let value = if want == 0 || quorum_standbys > want {
            want
        } else if want == 1 && quorum_standbys == 1 {
            0
        } else {
            return Err(ProviderError::failed(
                format!("formation.{}", self.name),
                format!(
                    "{want} synchronous standbys need {} failover candidates besides the \
                     leader; there are {quorum_standbys}",
                    want + 1
                ),
            ));
        } as i32;
        let mut changed = false;
        if current != value {
            db::block_on(async {
                let c = self.monitor_client(Duration::from_secs(5)).await?;
                c.execute(
                    "select pgautofailover.set_formation_number_sync_standbys($1, $2)",
                    &[&FORMATION, &value],
                )
                .await
                .map_err(|e| query_err("setting number_sync_standbys", e))
            })?;
            changed = true;
        }
        let rec = super::FormationRecord {
            sync_standbys: want,
            monitor_number_sync_standbys: value,
        };
        if had.as_ref() != Some(&rec) {
            state::write_json(&path, &rec, 0o644)?;
            changed = true;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_isolated_primary_demotes_itself_before_the_monitor_promotes_another() {
        assert!(check_failover_timeouts(1, 1200).is_ok());
        for (partition_s, demote_ms) in [(2, 1200), (3, 3000), (20, 5000)] {
            let e = check_failover_timeouts(partition_s, demote_ms).unwrap_err();
            assert!(
                e.to_string().contains("must be shorter than"),
                "{partition_s} s / {demote_ms} ms: {e}"
            );
        }
        let conf = monitor_conf().expect("the shipped settings keep the rule");
        assert!(conf.contains("pgautofailover.primary_demote_timeout = 1200\n"));
        assert_eq!(conf.matches("primary_demote_timeout").count(), 1);
    }
}

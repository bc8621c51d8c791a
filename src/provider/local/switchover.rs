//! Planned switchovers: the leader role moves to another candidate through
//! the monitor (`pgautofailover.perform_failover`), the only one that
//! promotes, after the nodes are made ready for the shortest write pause
//! pg_auto_failover allows.

use std::time::{Duration, Instant};

use super::db;
use super::keeper::MachineRecord;
use super::monitor::{MonitorNode, FORMATION, PRIMARY_STATES};
use super::process;
use super::AppCtx;
use crate::provider::ProviderError;

impl AppCtx<'_> {
    /// Get the nodes ready for a switchover away from `leader`, so writes
    /// pause as briefly as pg_auto_failover allows:
    ///
    /// - a `CHECKPOINT` on the leader, then on every standby: the leader's
    ///   shutdown checkpoint (`draining`), the standbys' restartpoints when
    ///   they restart without it (`report_lsn`) and the new leader's
    ///   checkpoint after its promotion have little left to write;
    /// - an empty `synchronous_standby_names` on every failover candidate.
    ///   A standby cloned from the leader carries the leader's value, which
    ///   means nothing while it replays; but once promoted, its commits wait
    ///   for standbys that follow it only later, until its keeper clears the
    ///   setting after the promotion (pg_autoctl polls the promotion once a
    ///   second). The monitor assigns `wait_primary`, in which pg_autoctl
    ///   itself acknowledges commits without a synchronous standby, before
    ///   the keeper promotes, so this changes only when those commits are
    ///   acknowledged, not which ones; pg_autoctl sets the value again when
    ///   the node becomes `primary`. A node promoted by a failover instead
    ///   blocks writes with `default_transaction_read_only` until the
    ///   monitor confirms it, whatever this setting says.
    ///
    /// Both are only shortcuts: a node that cannot be reached is left as it
    /// is, and one that is no longer in recovery is not touched.
    fn prepare_switchover(&self, leader: &MonitorNode, nodes: &[MonitorNode]) {
        let standbys = nodes
            .iter()
            .filter(|n| n.id != leader.id && n.pg_running && n.reported == "secondary");
        for n in std::iter::once(leader).chain(standbys) {
            let candidate = n.id != leader.id && n.candidate_priority > 0;
            let done = db::block_on(async {
                let what = format!("preparing node {} for the switchover", n.name);
                let c = self.node_client(n.port, Duration::from_secs(2)).await?;
                c.batch_execute("CHECKPOINT")
                    .await
                    .map_err(|e| db::query_err(&what, e))?;
                if !candidate {
                    return Ok(());
                }
                let standby: bool = c
                    .query_one("select pg_is_in_recovery()", &[])
                    .await
                    .map_err(|e| db::query_err(&what, e))?
                    .get(0);
                if standby {
                    // Two statements: ALTER SYSTEM refuses to run in a
                    // transaction block, which one query of two would be.
                    for sql in [
                        "ALTER SYSTEM SET synchronous_standby_names = ''",
                        "SELECT pg_reload_conf()",
                    ] {
                        c.batch_execute(sql)
                            .await
                            .map_err(|e| db::query_err(&what, e))?;
                    }
                }
                Ok::<_, ProviderError>(())
            });
            if let Err(e) = done {
                tracing::warn!(node = %n.name, error = %e, "node not prepared for the switchover");
            }
        }
    }

    /// Move the leader role away from `rec` to another candidate.
    pub(super) fn switchover_from(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        let nodes = self.monitor_nodes()?;
        let me = nodes.iter().find(|n| n.name == rec.node);
        if !me.is_some_and(|n| n.is_leader()) {
            return Ok(());
        }
        let others = nodes
            .iter()
            .any(|n| n.name != rec.node && n.candidate_priority > 0 && n.reported == "secondary");
        if !others {
            tracing::warn!(node = %rec.node, "no other candidate to take over; restarting the leader in place");
            return Ok(());
        }
        tracing::info!(app = self.name, node = %rec.node, "switchover before restarting the leader");
        // The monitor accepts a switchover only from a settled formation
        // whose leader is `primary` (not `wait_primary` while a standby
        // catches up). Every node must also pass the monitor's own health
        // check again: a standby restarted a moment ago (the rolling update
        // restarts standbys first) can still count as unhealthy, and a
        // leader that reports while a standby is unhealthy is moved to
        // `wait_primary`, where it commits alone.
        let started = Instant::now();
        let mut prepared = false;
        loop {
            self.wait_nodes(
                "waiting for a settled formation",
                Duration::from_secs(180),
                |nodes| {
                    nodes.iter().all(|n| n.settled() && n.health == 1)
                        && nodes
                            .iter()
                            .any(|n| n.is_leader() && n.reported == "primary")
                },
            )?;
            if !prepared {
                let nodes = self.monitor_nodes()?;
                if let Some(leader) = nodes.iter().find(|n| n.is_leader()) {
                    self.prepare_switchover(leader, &nodes);
                }
                prepared = true;
            }
            let res = db::block_on(async {
                let c = self.monitor_client(Duration::from_secs(5)).await?;
                after_leader_report(&c, &rec.node).await?;
                // The leader's keeper must not report while the monitor
                // switches over: pg_auto_failover 2.0's `node_active` that
                // read the leader's goal before `perform_failover` and the
                // standby's after it moves the leader to `wait_primary`
                // (below). Its reporting process is held for the few
                // milliseconds it takes, after any report in flight ends.
                let _paused = self.pause_reports(&rec.node);
                no_report_in_flight(&c).await?;
                c.execute(
                    "select pgautofailover.perform_failover($1, 0)",
                    &[&FORMATION],
                )
                .await
                .map_err(|e| db::query_err("switchover", e))
            });
            match res {
                Ok(_) => break,
                Err(e) if started.elapsed() > Duration::from_secs(120) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "switchover refused; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        self.follow_switchover(&rec.node);
        let name = rec.node.clone();
        self.wait_nodes("switchover", Duration::from_secs(180), |nodes| {
            nodes
                .iter()
                .any(|n| n.name != name && n.is_leader() && n.settled() && n.reported == "primary")
                && nodes
                    .iter()
                    .any(|n| n.name == name && n.settled() && n.reported == "secondary")
        })
    }
}

/// The (reported, goal) states of a node whose keeper is sent SIGHUP while
/// a switchover runs, to wake it from a sleep: pg_autoctl 2.0 waits for the
/// monitor's notification of a new goal only while its connection for
/// them is open (it closes it after each quiet second and misses what
/// comes before it listens again), and it polls a promotion once a second
/// (`standby_promote`, `AWAIT_PROMOTION_SLEEP_TIME_MS`). Both sleeps end
/// at a signal that has a handler, and SIGHUP's only sets a flag that
/// makes the keeper read its unchanged configuration at its next round.
///
/// In `secondary`, `catchingup` or `maintenance` that reading also
/// rewrites the standby's upstream from the monitor's current primary
/// (`pgautofailover.get_primary`, which names the old leader until another
/// is elected) and restarts PostgreSQL when it changed, which in the middle
/// of a switchover it must not do by itself; only the one case below where
/// it cannot have changed is nudged.
///
/// A SIGHUP also cuts pg_autoctl's shorter waits short: for the postgres
/// service to stop or start PostgreSQL (100 ms polls) and for it to
/// accept connections (250 and 350 ms), which `report_lsn` goes through on
/// every node.
///
/// The configuration is read at the keeper's next round, after the state
/// change in progress, and that costs a little (it writes PostgreSQL's
/// settings and reloads them). So a keeper that only waits for its
/// notification is nudged once, and only when it has not moved on by
/// itself within 150 ms; one in a state change with a poll in it
/// (`report_lsn`'s restart, a promotion) every 50 ms. A node whose
/// PostgreSQL is stopped by its next round (the old leader once it has
/// drained) fails to read it, harmlessly but loudly in its log: the old
/// leader is nudged once in `primary`, right after `perform_failover`
/// (its keeper was held until then and may have missed the
/// notification), and again only once it starts PostgreSQL for
/// `report_lsn`.
const NUDGED: &[Nudge] = &[
    // The old leader, to stop taking writes, then to report its LSN.
    nudge("primary", "draining", 0, 1),
    nudge("primary", "demote_timeout", 0, 1),
    nudge("draining", "report_lsn", 50, u32::MAX),
    // The standbys, to report their LSN. Safe in `secondary`: no node can
    // have been elected before this one reports, so the monitor still
    // names the old leader as its upstream and nothing changes.
    nudge("secondary", "report_lsn", 50, u32::MAX),
    // The candidate, through its promotion.
    nudge("report_lsn", "prepare_promotion", 150, 1),
    nudge("prepare_promotion", "stop_replication", 50, u32::MAX),
    nudge("prepare_promotion", "wait_primary", 50, u32::MAX),
    nudge("stop_replication", "wait_primary", 150, 1),
];

/// Which keeper to wake while a switchover runs: `every` ms after the
/// monitor showed the node in these states (first) and after the last
/// nudge, `times` times at most.
struct Nudge {
    reported: &'static str,
    goal: &'static str,
    every: Duration,
    times: u32,
}

const fn nudge(reported: &'static str, goal: &'static str, every_ms: u64, times: u32) -> Nudge {
    Nudge {
        reported,
        goal,
        every: Duration::from_millis(every_ms),
        times,
    }
}

/// The nudges sent to one node in its current states.
struct Nudged {
    pid: i32,
    states: (String, String),
    since: Instant,
    times: u32,
}

impl AppCtx<'_> {
    /// The process of `node`'s keeper that reports to the monitor and
    /// drives its state changes (pg_autoctl's `node active` service).
    fn reporting_process(&self, node: &str) -> Option<i32> {
        let keeper = process::read_pid(&self.paths.keeper_pid(node))?;
        process::with_descendants(&[keeper])
            .into_iter()
            .find(|p| process::cmdline(*p).is_some_and(|c| c.contains("node active")))
    }

    /// Stop `node`'s reporting process until the guard is dropped.
    fn pause_reports(&self, node: &str) -> Option<process::Paused> {
        let pid = self.reporting_process(node);
        if pid.is_none() {
            tracing::warn!(node, "the keeper's reporting process was not found");
        }
        process::Paused::stop(pid?)
    }

    /// From `perform_failover` until a new leader takes writes (at most
    /// 10 s): send no new client to the old leader, which is about to stop
    /// PostgreSQL (`draining`), and wake the keepers on the switchover's
    /// path as soon as the monitor gives them a new goal ([`NUDGED`]).
    /// Shortcuts only: pg_auto_failover makes every decision, and the
    /// switchover goes on the same way without them.
    fn follow_switchover(&self, old: &str) {
        let started = Instant::now();
        let mut nudged: std::collections::HashMap<String, Nudged> = Default::default();
        let res = db::block_on(async {
            let c = self.monitor_client(Duration::from_secs(5)).await?;
            while started.elapsed() < Duration::from_secs(10) {
                // Again each round: a check of the old leader that started
                // before `perform_failover` and passes after this would
                // bring it back up.
                let marked_down = self.endpoint_set_health(old, false);
                tracing::trace!(node = old, marked_down, "old leader out of the endpoint");
                let nodes = super::monitor::read_nodes(&c).await?;
                let new = nodes
                    .iter()
                    .find(|n| n.name != old && PRIMARY_STATES.contains(&n.goal.as_str()));
                if let Some(n) = new {
                    if self.takes_writes(n.port).await {
                        let up = self.endpoint_set_health(&n.name, true);
                        tracing::debug!(node = %n.name, up, "new leader in the endpoint");
                        break;
                    }
                }
                for n in &nodes {
                    let Some(rule) = NUDGED
                        .iter()
                        .find(|r| r.reported == n.reported && r.goal == n.goal)
                    else {
                        continue;
                    };
                    let states = (n.reported.clone(), n.goal.clone());
                    if nudged.get(&n.name).is_none_or(|s| s.states != states) {
                        let Some(pid) = self.reporting_process(&n.name) else {
                            continue;
                        };
                        let since = Instant::now();
                        let times = 0;
                        nudged.insert(
                            n.name.clone(),
                            Nudged {
                                pid,
                                states,
                                since,
                                times,
                            },
                        );
                    }
                    let Some(s) = nudged.get_mut(&n.name) else {
                        continue;
                    };
                    if s.times < rule.times && s.since.elapsed() >= rule.every {
                        process::hang_up(s.pid);
                        s.times += 1;
                        s.since = Instant::now();
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, ProviderError>(())
        });
        if let Err(e) = res {
            tracing::debug!(error = %e, "following the switchover");
        }
    }
}

impl AppCtx<'_> {
    /// The node on `port` accepts writes: promoted, and its keeper has
    /// lifted `default_transaction_read_only`. What the endpoint's check
    /// asks of the node itself, and more.
    async fn takes_writes(&self, port: u16) -> bool {
        let Ok(c) = self.node_client(port, Duration::from_millis(500)).await else {
            return false;
        };
        c.query_one(
            "select not pg_is_in_recovery() \
             and current_setting('default_transaction_read_only') = 'off'",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, bool>(0))
    }
}

/// Wait (at most 1 s) until no keeper's report is being handled by the
/// monitor.
async fn no_report_in_flight(c: &tokio_postgres::Client) -> Result<(), ProviderError> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        let busy: i64 = c
            .query_one(
                "select count(*) from pg_stat_activity where state = 'active' \
                 and pid <> pg_backend_pid() and query ilike '%node_active%'",
                &[],
            )
            .await
            .map_err(|e| db::query_err("reading the monitor's sessions", e))?
            .get(0);
        if busy == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Wait (at most 2.5 s) until the leader's keeper has just reported to the
/// monitor. pg_auto_failover 2.0's monitor can set the old leader to
/// `wait_primary` right after `perform_failover` (most likely when it
/// answers a report of the leader read before its goal changed, and sees
/// the candidate no longer `secondary`); the old leader then acknowledges
/// commits without a standby while the candidate is being promoted, and
/// those commits are lost. Seen once in six two-node switchovers. A keeper
/// reports about once a second, so right after a report the next one is
/// far off.
async fn after_leader_report(
    c: &tokio_postgres::Client,
    leader: &str,
) -> Result<(), ProviderError> {
    let started = Instant::now();
    let mut last: Option<f64> = None;
    while started.elapsed() < Duration::from_millis(2500) {
        let row = c
            .query_one(
                "select extract(epoch from reporttime)::float8, \
                        extract(epoch from now() - reporttime)::float8 \
                 from pgautofailover.node where formationid = $1 and nodename = $2",
                &[&FORMATION, &leader],
            )
            .await
            .map_err(|e| db::query_err("reading the leader's last report", e))?;
        let (at, age): (Option<f64>, Option<f64>) = (row.get(0), row.get(1));
        if last.is_some_and(|l| Some(l) != at) && age.is_some_and(|a| a < 0.3) {
            return Ok(());
        }
        last = at;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}

//! Bringing a stopped node back into its formation: its keeper is started
//! on its data dir and waited for; a node that cannot rejoin is made again
//! from the leader. Two stalls are not waited out: when the formation has
//! no leader because a failover waits for this node, a former leader, to
//! report its LSN and it cannot (its postgres does not start, e.g. on a
//! full disk), the failover would wait for ever, so the node is dropped
//! from the monitor and the others elect a leader; and a node that stays
//! in `join_secondary` (it cannot follow the new leader, e.g. `pg_rewind`
//! fails) is made again from the leader.
//!
//! A stopped node that the monitor still holds as the leader is brought
//! back before any other stopped node: the others cannot settle without it
//! (they wait to follow it, or for a failover that needs one more quorum
//! node), and when it died in `wait_primary` it holds commits it
//! acknowledged alone, which no other node has. A node is never made
//! again from a leader the monitor marks unhealthy: apply ends instead.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::keeper::{node_failed, MachineRecord};
use super::monitor::MonitorNode;
use super::AppCtx;
use crate::provider::ProviderError;

/// How long a restarted node may take to rejoin before it is made again.
const REJOIN: Duration = Duration::from_secs(180);

/// How long a former leader may hold up a failover, assigned `report_lsn`
/// and not reaching it, before it is dropped from the election. Reaching
/// it takes a postgres restart: a few seconds.
const ELECTION_STALL: Duration = Duration::from_secs(30);

/// How long a node may stay in `join_secondary` (stopped, to follow the new
/// leader, with `pg_rewind` when it was a leader) while a leader runs
/// before it is made again from that leader.
const FOLLOW_STALL: Duration = Duration::from_secs(60);

/// States of a node that was the leader and is being demoted or was. In
/// `primary` its commits waited for a standby (pg_auto_failover names the
/// quorum standbys in `synchronous_standby_names` there, also with
/// `sync_standbys = 0`), so its WAL beyond what the standbys received was
/// never acknowledged and the election may go on without it. A leader
/// last seen in `wait_primary`, where it commits alone, is never dropped.
const FORMER_LEADER_STATES: &[&str] = &["primary", "draining", "demote_timeout", "demoted"];

/// A restarted node that will not settle by itself.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stall {
    /// No leader; the monitor wants the node in `report_lsn` to elect one
    /// and it is still in a former leader's state.
    HoldsUpFailover,
    /// A leader runs; the node cannot follow it (`join_secondary`).
    CannotFollow,
}

impl Stall {
    fn after(self) -> Duration {
        match self {
            Stall::HoldsUpFailover => ELECTION_STALL,
            Stall::CannotFollow => FOLLOW_STALL,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Stall::HoldsUpFailover => {
                "it cannot report its LSN and the failover waits for it; dropping it from the \
                 monitor so the other nodes elect a leader, then making it again as a standby"
            }
            Stall::CannotFollow => {
                "it cannot follow the new leader; making it again as a standby from the leader"
            }
        }
    }
}

/// How `node` is stalled by the monitor's `nodes`, if it is: with its
/// reported and goal states.
fn stall_of(node: &str, nodes: &[MonitorNode]) -> Option<(Stall, String, String)> {
    let me = nodes.iter().find(|n| n.name == node)?;
    let led = nodes.iter().any(MonitorNode::is_leader);
    let stall = if !led
        && me.goal == "report_lsn"
        && FORMER_LEADER_STATES.contains(&me.reported.as_str())
    {
        Stall::HoldsUpFailover
    } else if led && me.reported == "join_secondary" && me.goal == "secondary" {
        Stall::CannotFollow
    } else {
        return None;
    };
    Some((stall, me.reported.clone(), me.goal.clone()))
}

/// The node other than `node` that the monitor holds as the leader, settled
/// in its state, when `stopped` says it is stopped: it is to be started
/// first. A leader that died on its way from `wait_primary` to `primary`
/// is not: the monitor has already sent the standbys to elect another one,
/// and started first it waits for ever for a standby to follow it.
fn stopped_leader(
    node: &str,
    nodes: &[MonitorNode],
    stopped: impl Fn(&str) -> bool,
) -> Option<String> {
    nodes
        .iter()
        .find(|n| n.name != node && n.is_leader() && n.settled() && stopped(&n.name))
        .map(|n| n.name.clone())
}

/// The last error line of a keeper's log that says more than that a
/// transition is retried, for the message of a stall.
fn last_error(log: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let errors = || text.lines().rev().filter(|l| l.contains("ERROR"));
    let line = errors()
        .find(|l| !l.contains("Failed to transition"))
        .or_else(|| errors().next())?;
    Some(line.trim().to_string())
}

impl AppCtx<'_> {
    /// Start a stopped node from its data dir; when the data dir is unusable
    /// or the monitor forgot the node, make it again as a standby. A node
    /// that holds up a failover or cannot follow the new leader is made
    /// again too (see the module doc), and apply says so. Every wait is
    /// bounded; a node that cannot rejoin while the formation has no leader
    /// to make it again from ends the apply with the monitor's states.
    pub(super) fn restart_or_rebuild(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        self.restart_stopped_leader(rec)?;
        self.stop_node(rec);
        let usable = rec.pgdata.join("PG_VERSION").exists()
            && rec.pgdata.join("global/pg_control").exists()
            && rec.pgdata.join("flyplan.conf").exists();
        if usable && self.registered(rec)?.is_some() {
            self.start_keeper(rec)?;
            match self.wait_rejoined(rec) {
                Ok(None) => return Ok(()),
                Ok(Some((stall, reported, goal))) => {
                    let log = self.paths.logs().join(format!("{}.log", rec.node));
                    let error = last_error(&log)
                        .map(|l| format!(" (its keeper's last error: {l})"))
                        .unwrap_or_default();
                    tracing::warn!(
                        "machine {}: stuck in {reported} for {}s while the monitor wants \
                         {goal}{error}: {}",
                        rec.node,
                        stall.after().as_secs(),
                        stall.what()
                    );
                    self.stop_node(rec);
                }
                // Without the monitor the node can neither rejoin nor be
                // made again: it is left running for the next apply.
                Err(e) if !self.monitor_running() => return Err(e),
                Err(e) => {
                    // A leader the monitor marks unhealthy (dead, as
                    // after two crashes in a row) has nothing to give.
                    let live_leader = |n: &MonitorNode| n.is_leader() && n.health == 1;
                    if !self.monitor_nodes()?.iter().any(live_leader) {
                        return Err(node_failed(
                            &rec.node,
                            format!(
                                "did not rejoin and the formation has no leader to make it \
                                 again from ({e}); {}",
                                crate::model::way_out("report_lsn")
                            ),
                        ));
                    }
                    tracing::warn!(node = %rec.node, error = %e, "node did not rejoin; rebuilding it");
                    self.stop_node(rec);
                }
            }
        }
        self.create_node(rec)?;
        // Dropping a node may have lowered the formation's sync standbys.
        self.formation_after_removal()
    }

    /// Bring back the stopped node the monitor holds as the leader, if
    /// it is not `rec` (see the module doc).
    fn restart_stopped_leader(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        if !self.monitor_running() {
            return Ok(());
        }
        let nodes = self.monitor_nodes()?;
        let stopped = |name: &str| {
            self.read_machine(name)
                .ok()
                .flatten()
                .is_some_and(|r| !self.node_running(&r))
        };
        let Some(leader) = stopped_leader(&rec.node, &nodes, stopped) else {
            return Ok(());
        };
        let Some(leader) = self.read_machine(&leader)? else {
            return Ok(());
        };
        tracing::warn!(
            "machine {}: the monitor's leader is stopped; starting it before machine {}",
            leader.node,
            rec.node
        );
        self.restart_or_rebuild(&leader)
    }

    /// Wait until `rec` settles (`None`), at most [`REJOIN`], or until it
    /// has been stalled the same way for that stall's time: the stall,
    /// with the node's reported and goal states.
    fn wait_rejoined(
        &self,
        rec: &MachineRecord,
    ) -> Result<Option<(Stall, String, String)>, ProviderError> {
        let since: Cell<Option<(Stall, Instant)>> = Cell::new(None);
        let stalled: Cell<Option<(Stall, String, String)>> = Cell::new(None);
        self.wait_nodes(&format!("waiting for node {}", rec.node), REJOIN, |nodes| {
            if self.settled_in(rec, nodes) {
                return true;
            }
            match stall_of(&rec.node, nodes) {
                Some((stall, reported, goal)) if self.keeper_running(rec) => {
                    let from = match since.get() {
                        Some((s, at)) if s == stall => at,
                        _ => Instant::now(),
                    };
                    since.set(Some((stall, from)));
                    if from.elapsed() >= stall.after() {
                        stalled.set(Some((stall, reported, goal)));
                        return true;
                    }
                }
                _ => since.set(None),
            }
            false
        })?;
        Ok(stalled.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, reported: &str, goal: &str) -> MonitorNode {
        MonitorNode {
            id: 0,
            name: name.into(),
            port: 0,
            reported: reported.into(),
            goal: goal.into(),
            health: 1,
            pg_running: false,
            candidate_priority: 50,
            replication_quorum: true,
            lsn: 0,
            rep_state: String::new(),
        }
    }

    #[test]
    fn a_former_leader_short_of_report_lsn_holds_up_a_failover_and_join_secondary_cannot_follow() {
        let me = "iad-1";
        let of = |nodes: &[MonitorNode]| stall_of(me, nodes).map(|s| s.0);
        let stuck = [
            node("iad-0", "report_lsn", "report_lsn"),
            node("iad-1", "draining", "report_lsn"),
            node("iad-2", "report_lsn", "report_lsn"),
        ];
        assert_eq!(of(&stuck), Some(Stall::HoldsUpFailover));
        // A standby that has not reported may hold the only copy of a
        // commit: it is never dropped.
        let standby = [
            node("iad-1", "secondary", "report_lsn"),
            node("iad-2", "report_lsn", "report_lsn"),
        ];
        assert_eq!(of(&standby), None);
        // Once a leader is elected the node just rejoins.
        let led = [
            node("iad-1", "demoted", "report_lsn"),
            node("iad-2", "primary", "primary"),
        ];
        assert_eq!(of(&led), None);
        let reported = [node("iad-1", "report_lsn", "report_lsn")];
        assert_eq!(of(&reported), None);
        let following = [
            node("iad-1", "join_secondary", "secondary"),
            node("iad-2", "primary", "primary"),
        ];
        assert_eq!(of(&following), Some(Stall::CannotFollow));
        let catching_up = [
            node("iad-1", "catchingup", "secondary"),
            node("iad-2", "primary", "primary"),
        ];
        assert_eq!(of(&catching_up), None);
    }

    #[test]
    fn a_stopped_leader_is_started_before_the_other_stopped_nodes() {
        let nodes = [
            node("iad-0", "primary", "demoted"),
            node("iad-1", "wait_primary", "wait_primary"),
            node("iad-2", "join_secondary", "secondary"),
        ];
        let stopped = |n: &str| n != "iad-2";
        assert_eq!(
            stopped_leader("iad-0", &nodes, stopped),
            Some("iad-1".to_string())
        );
        assert_eq!(stopped_leader("iad-1", &nodes, stopped), None);
        assert_eq!(stopped_leader("iad-0", &nodes, |n| n == "iad-0"), None);
        // Nor one that died on its way to `primary`.
        let moving = [
            node("iad-0", "primary", "report_lsn"),
            node("iad-1", "wait_primary", "primary"),
        ];
        assert_eq!(stopped_leader("iad-0", &moving, |_| true), None);
        // A leader the monitor is demoting is not the leader any more.
        let demoting = [
            node("iad-0", "primary", "demoted"),
            node("iad-1", "primary", "draining"),
        ];
        assert_eq!(stopped_leader("iad-0", &demoting, |_| true), None);
    }
}

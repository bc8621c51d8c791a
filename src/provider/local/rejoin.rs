//! Bringing a stopped node back into its formation: its keeper is started
//! on its data dir and waited for; a node that cannot rejoin is made again
//! from the leader. When the formation has no leader because a failover
//! waits for this node to report its LSN, and the node cannot (its
//! postgres does not start, e.g. on a full disk), the failover would wait
//! for ever: the node is dropped from the monitor, so the others elect a
//! leader, then made again as a standby.

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

/// States of a node that was the leader and is being demoted or was: its
/// WAL beyond what the standbys received was never acknowledged while a
/// standby was required (`sync_standbys` ≥ 1), so the election may go on
/// without it.
const FORMER_LEADER_STATES: &[&str] = &["primary", "draining", "demote_timeout", "demoted"];

/// How the wait for a restarted node ended.
enum Rejoin {
    Settled,
    /// The node holds up the failover, stuck in this state.
    HoldsUpFailover(String),
}

/// `node` holds up a failover: the formation has no leader, the
/// monitor wants the node in `report_lsn` and it is still in a former
/// leader's state. That state, if so.
fn holding_up(node: &str, nodes: &[MonitorNode]) -> Option<String> {
    if nodes.iter().any(MonitorNode::is_leader) {
        return None;
    }
    let me = nodes.iter().find(|n| n.name == node)?;
    (me.goal == "report_lsn" && FORMER_LEADER_STATES.contains(&me.reported.as_str()))
        .then(|| me.reported.clone())
}

impl AppCtx<'_> {
    /// Start a stopped node from its data dir; when the data dir is unusable
    /// or the monitor forgot the node, make it again as a standby. A node
    /// that holds up a failover is dropped from it first (see the module
    /// doc), and said so. Every wait is bounded; a node that cannot rejoin
    /// while the formation has no leader to make it again from ends the
    /// apply with the monitor's states.
    pub(super) fn restart_or_rebuild(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        self.stop_node(rec);
        let usable = rec.pgdata.join("PG_VERSION").exists()
            && rec.pgdata.join("global/pg_control").exists()
            && rec.pgdata.join("flyplan.conf").exists();
        if usable && self.registered(rec)?.is_some() {
            self.start_keeper(rec)?;
            match self.wait_rejoined(rec) {
                Ok(Rejoin::Settled) => return Ok(()),
                Ok(Rejoin::HoldsUpFailover(state)) => {
                    tracing::warn!(
                        "machine {}: stuck in {state} for {}s while the monitor wants \
                         report_lsn: it cannot report its LSN and the failover waits for it; \
                         dropping it from the monitor so the other nodes elect a leader, then \
                         making it again as a standby",
                        rec.node,
                        ELECTION_STALL.as_secs()
                    );
                    self.stop_node(rec);
                }
                // Without the monitor the node can neither rejoin nor be
                // made again: it is left running for the next apply.
                Err(e) if !self.monitor_running() => return Err(e),
                Err(e) => {
                    if !self.monitor_nodes()?.iter().any(MonitorNode::is_leader) {
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

    /// Wait until `rec` settles, at most [`REJOIN`], or until it has held
    /// up a failover for [`ELECTION_STALL`].
    fn wait_rejoined(&self, rec: &MachineRecord) -> Result<Rejoin, ProviderError> {
        let since: Cell<Option<Instant>> = Cell::new(None);
        let stalled: Cell<Option<String>> = Cell::new(None);
        self.wait_nodes(&format!("waiting for node {}", rec.node), REJOIN, |nodes| {
            if self.settled_in(rec, nodes) {
                return true;
            }
            match holding_up(&rec.node, nodes) {
                Some(state) if self.keeper_running(rec) => {
                    let from = since.get().unwrap_or_else(Instant::now);
                    since.set(Some(from));
                    if from.elapsed() >= ELECTION_STALL {
                        stalled.set(Some(state));
                        return true;
                    }
                }
                _ => since.set(None),
            }
            false
        })?;
        Ok(match stalled.take() {
            Some(state) => Rejoin::HoldsUpFailover(state),
            None => Rejoin::Settled,
        })
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
    fn only_a_former_leader_short_of_report_lsn_with_no_leader_holds_up_a_failover() {
        let me = "iad-1";
        let stuck = [
            node("iad-0", "report_lsn", "report_lsn"),
            node("iad-1", "draining", "report_lsn"),
            node("iad-2", "report_lsn", "report_lsn"),
        ];
        assert_eq!(holding_up(me, &stuck).as_deref(), Some("draining"));
        // A standby that has not reported may hold the only copy of a
        // commit: it is never dropped.
        let standby = [
            node("iad-1", "secondary", "report_lsn"),
            node("iad-2", "report_lsn", "report_lsn"),
        ];
        assert_eq!(holding_up(me, &standby), None);
        // Once a leader is elected the node just rejoins.
        let led = [
            node("iad-1", "demoted", "report_lsn"),
            node("iad-2", "primary", "primary"),
        ];
        assert_eq!(holding_up(me, &led), None);
        let reported = [node("iad-1", "report_lsn", "report_lsn")];
        assert_eq!(holding_up(me, &reported), None);
    }
}

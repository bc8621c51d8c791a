//! Rolling restarts of a running cluster: the nodes that must restart (a
//! new image or VM size) go one at a time, standbys first, each waited for
//! until it is back and settled; the leader goes last, after a switchover,
//! so the cluster always keeps a healthy standby and writes pause only for
//! the switchover.

use std::time::Duration;

use super::keeper::MachineRecord;
use super::state::{self, FileLock};
use super::AppCtx;
use crate::model::{Kind, Resource};
use crate::plan::{Action, Step};
use crate::provider::ProviderError;

/// How long a restarted node may take to be back and settled.
const SETTLE: Duration = Duration::from_secs(180);

impl AppCtx<'_> {
    /// Restart `nodes`, each given with the record it is to run with, one
    /// at a time: standbys first, then the leader after a switchover. A
    /// node's record is written only once it runs with it, so a restart cut
    /// short is seen by the next plan.
    ///
    /// Holds the app's restart lock throughout, so steps of one apply that
    /// run in parallel never restart two nodes at once; under the lock, a
    /// node for which `needed` is false (already restarted by another step)
    /// is skipped.
    pub fn rolling_restart(
        &self,
        nodes: &[MachineRecord],
        needed: &dyn Fn(&MachineRecord) -> bool,
    ) -> Result<(), ProviderError> {
        let _guard = FileLock::acquire(&self.paths.restart_lock())?;
        let leader = self
            .monitor_nodes()?
            .into_iter()
            .find(|n| n.is_leader())
            .map(|n| n.name);
        let mut order: Vec<&MachineRecord> = nodes.iter().filter(|n| needed(n)).collect();
        order.sort_by_key(|n| leader.as_deref() == Some(n.node.as_str()));
        for rec in order {
            crate::fault::crash_point("before-restart");
            tracing::info!(app = self.name, node = %rec.node, "restarting node");
            self.switchover_from(rec)?;
            self.stop_node(rec);
            self.start_keeper(rec)?;
            self.wait_settled(rec, SETTLE)?;
            state::write_json(&self.paths.machine_json(&rec.node), rec, 0o644)?;
            tracing::info!(app = self.name, node = %rec.node, "node restarted");
        }
        Ok(())
    }

    /// Whether `want` runs with other labels (image, VM size) than it is to
    /// have: its record still holds the ones it was started with.
    pub fn labels_pending(&self, want: &MachineRecord) -> bool {
        self.read_machine(&want.node)
            .ok()
            .flatten()
            .is_some_and(|h| h.labels != want.labels && !h.labels.is_empty())
            && self.node_running(want)
    }

    /// The records of this plan's machine updates whose labels change on a
    /// running node: the nodes of one rolling restart.
    pub fn restarts_in(&self, steps: &[Step]) -> Result<Vec<MachineRecord>, ProviderError> {
        let mut out = Vec::new();
        for s in steps {
            if s.kind != Kind::Machine || s.action != Action::Update {
                continue;
            }
            let Some(r) = s.after.as_ref() else { continue };
            let want = self.record_for(r)?;
            if self.labels_pending(&want) {
                out.push(want);
            }
        }
        Ok(out)
    }

    /// `desired`'s node and the plan's other label changes, restarted as
    /// one rolling restart (see [`Self::rolling_restart`]).
    pub fn restart_with_plan(
        &self,
        desired: &Resource,
        steps: &[Step],
    ) -> Result<(), ProviderError> {
        let want = self.record_for(desired)?;
        let mut nodes = self.restarts_in(steps)?;
        if !nodes.iter().any(|n| n.node == want.node) {
            nodes.push(want);
        }
        self.rolling_restart(&nodes, &|n| self.labels_pending(n))
    }
}

//! The notes a plan shows for topology actions, supplied by the provider
//! that will carry them out, so a plan says what that provider does.

/// What a provider does for each kind of topology action, in the words
/// of the plan's notes. A provider gives its own through
/// [`crate::provider::Provider::plan_notes`]; the default describes a
/// formation under a monitor that drains a node before it stops and
/// switches the leader over before it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanNotes {
    /// An update of the current leader's machine (image, size...).
    pub leader_update: &'static str,
    /// How long writes pause for that switchover, when measured (see
    /// BENCHMARKS.md, "Rolling update").
    pub switchover_pause: Option<&'static str>,
    /// The removal of a node.
    pub node_delete: &'static str,
    /// The removal of the current leader's node, beside `node_delete`.
    pub leader_delete: &'static str,
    /// A volume that grows, when growing has an effect on its node.
    pub volume_grow: Option<&'static str>,
    /// What a commit waits for once `sync_standbys` is 0, instead of the
    /// plain "commits no longer wait for a standby"; `None` where that is
    /// all there is to say.
    pub sync_zero: Option<&'static str>,
    /// What happens to writes when fewer standbys run than `sync_standbys`
    /// (1 or more) asks, beside a change of it; `None` where it is not
    /// established.
    pub sync_short: Option<&'static str>,
    /// Where a machine's new image puts the backup settings back to their
    /// defaults: why an unchanged backup policy is applied again after it.
    pub image_resets_backup: Option<&'static str>,
}

impl Default for PlanNotes {
    fn default() -> Self {
        PlanNotes {
            leader_update: "current leader: updated last, after a switchover to a standby",
            switchover_pause: Some(
                "writes through the leader endpoint pause during the switchover: \
                 a median of 1.8 s with 3 nodes and 0.7 s with 2 measured on a local \
                 machine, longer on a busy one",
            ),
            node_delete: "drained from the formation before it stops",
            leader_delete: "current leader: a standby is promoted first",
            volume_grow: None,
            sync_zero: Some(
                "a commit still waits for one standby while one runs (pg_auto_failover's ANY 1); \
                 while none runs the leader goes on alone: commits are then acknowledged by the \
                 leader only",
            ),
            sync_short: Some(
                "while fewer standbys run than this, writes block until enough are back; with \
                 one failover candidate besides the leader (instances = 2) it is as 0: the \
                 leader goes on alone while that standby is down; right after a failover or \
                 a switchover the new leader acknowledges commits alone until a standby \
                 follows it (about 1 to 2 s)",
            ),
            image_resets_backup: None,
        }
    }
}

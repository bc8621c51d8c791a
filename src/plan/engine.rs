//! `plan(desired, live)`: a pure, deterministic function from the two states
//! to ordered steps with reasons. No I/O happens here.

use std::collections::BTreeMap;

use serde_json::Value;

use super::notes::PlanNotes;
use super::types::*;
use crate::desired::Desired;
use crate::live::Live;
use crate::model::{Address, Agreed, Kind, Resource, Role, Spec, OUTSIDE_FLYPLAN};
use crate::pgsettings::{self, Apply};

/// Choices the user made on the command line that change the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanOptions {
    pub allow_destroy: bool,
    /// What the provider that will apply the plan does, for its notes.
    pub notes: PlanNotes,
}

/// Compute the plan that turns `live` into `desired`.
pub fn plan(desired: &Desired, live: &Live, opts: PlanOptions) -> Plan {
    // Counts fly.toml left out follow the live cluster.
    let (desired, notes) = desired.settled(live);
    let desired = desired.as_ref();
    let mut pending: Vec<Pending> = Vec::new();
    let mut unchanged = Vec::new();

    for (address, want) in &desired.resources {
        match live.get(address) {
            None => pending.push(Pending::new(
                Action::Create,
                address,
                want.kind(),
                None,
                Some(want),
                vec![],
                create_reason(live, want),
            )),
            Some(have) => {
                let changed = changed_attrs(want, have);
                if changed.is_empty() {
                    unchanged.push(address.clone());
                    continue;
                }
                let action = if changed.iter().any(|a| needs_replace(want.kind(), a)) {
                    Action::Replace
                } else {
                    Action::Update
                };
                let reason = update_reason(want, have, &changed, action);
                pending.push(Pending::new(
                    action,
                    address,
                    want.kind(),
                    Some(have),
                    Some(want),
                    changed,
                    reason,
                ));
            }
        }
    }

    if let Some(note) = opts.notes.image_resets_backup {
        reapply_backup_after_image(desired, live, &mut pending, &mut unchanged, note);
    }

    for (address, have) in &live.resources {
        if desired.resources.contains_key(address) {
            continue;
        }
        let declared_absent = desired.absent.contains(address);
        // Roles and databases that fly.toml never named are left alone (when
        // the whole app goes, they go with it), and so are things made
        // outside flyplan while the app stays.
        let app_stays = desired.resources.contains_key(&Address::app(&desired.app));
        let foreign = have.managed_by() == Some(OUTSIDE_FLYPLAN);
        let inside_cluster = matches!(have.kind(), Kind::User | Kind::Database | Kind::Parameter);
        if ((app_stays && foreign) || inside_cluster) && !declared_absent {
            continue;
        }
        let reason = if declared_absent {
            "declared absent in fly.toml".to_string()
        } else {
            "not in fly.toml".to_string()
        };
        pending.push(Pending::new(
            Action::Delete,
            address,
            have.kind(),
            Some(have),
            None,
            vec![],
            reason,
        ));
    }

    for p in &mut pending {
        decorate(p, opts);
    }
    let folded = fold_into_app_delete(&mut pending);
    let mut plan = order(pending, live, desired, live.fingerprint(), opts, unchanged);
    plan.summary.destroy += folded;
    plan.notes = notes;
    plan
}

/// When the app itself goes, its nodes, volumes, settings and attachments go
/// with it in one step (draining nodes one by one would be wasted work, and
/// impossible with a dead node; the roles of attachments die with the
/// cluster, and the provider unsets the attached apps' variables). Returns
/// how many deletions were folded.
fn fold_into_app_delete(pending: &mut Vec<Pending>) -> usize {
    let Some(app_at) = pending
        .iter()
        .position(|p| p.step.kind == Kind::App && p.step.action == Action::Delete)
    else {
        return 0;
    };
    let folded: Vec<String> = pending
        .iter()
        .filter(|p| p.step.action == Action::Delete && p.step.kind != Kind::App)
        .map(|p| p.step.address.to_string())
        .collect();
    if folded.is_empty() {
        return 0;
    }
    let detached: Vec<String> = pending
        .iter()
        .filter(|p| p.step.action == Action::Delete && p.step.kind == Kind::Attachment)
        .filter_map(|p| {
            let b = p.step.before.as_ref()?.attachment()?;
            Some(format!("{} on app {}", b.variable, p.step.address.name()))
        })
        .collect();
    let notes = &mut pending[app_at].step.notes;
    notes.push(format!("destroyed with it: {}", folded.join(", ")));
    if !detached.is_empty() {
        notes.push(format!("unset on attached apps: {}", detached.join(", ")));
    }
    pending.retain(|p| p.step.action != Action::Delete || p.step.kind == Kind::App);
    folded.len()
}

/// A step before it has its place in the order.
struct Pending {
    step: Step,
}

impl Pending {
    fn new(
        action: Action,
        address: &Address,
        kind: Kind,
        before: Option<&Resource>,
        after: Option<&Resource>,
        changed: Vec<String>,
        reason: String,
    ) -> Self {
        Pending {
            step: Step {
                id: 0,
                address: address.clone(),
                kind,
                action,
                reason,
                before: before.cloned(),
                after: after.cloned(),
                changed,
                blocked: None,
                depends_on: vec![],
                notes: vec![],
            },
        }
    }
}

/// Attributes of `want` that `have` does not match. Inputs for apply (such
/// as which secret holds a password) are not compared.
fn changed_attrs(want: &Resource, have: &Resource) -> Vec<String> {
    want.spec
        .changed(&have.spec)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// A backup policy left as it is, in a plan that gives a machine a new
/// image on a provider where that resets the backup settings: applied
/// again, after the machines (its phase comes later), with `note` saying why.
fn reapply_backup_after_image(
    desired: &Desired,
    live: &Live,
    pending: &mut Vec<Pending>,
    unchanged: &mut Vec<Address>,
    note: &str,
) {
    let new_image = pending.iter().any(|p| {
        p.step.kind == Kind::Machine
            && matches!(p.step.action, Action::Update | Action::Replace)
            && p.step.changed.iter().any(|c| c == "image")
    });
    let address = Address::backup_policy(&desired.app);
    let Some(at) = unchanged.iter().position(|a| *a == address) else {
        return;
    };
    let (Some(want), Some(have)) = (desired.resources.get(&address), live.get(&address)) else {
        return;
    };
    if !new_image {
        return;
    }
    unchanged.remove(at);
    let mut p = Pending::new(
        Action::Update,
        &address,
        Kind::BackupPolicy,
        Some(have),
        Some(want),
        vec![],
        "the machines get a new image".to_string(),
    );
    p.step.notes.push(note.to_string());
    pending.push(p);
}

/// Attributes that cannot change in place.
fn needs_replace(kind: Kind, attribute: &str) -> bool {
    matches!(
        (kind, attribute),
        (Kind::Machine, "role") | (Kind::Attachment, "database") | (Kind::Attachment, "user")
    )
}

fn create_reason(live: &Live, want: &Resource) -> String {
    let app_exists = live.of_kind(Kind::App).next().is_some();
    match &want.spec {
        Spec::Machine(_) | Spec::Volume(_) if app_exists => {
            "not in live state (new in fly.toml, or lost)".to_string()
        }
        Spec::Attachment(a) => format!(
            "attach: database {}, user {}, {} set on app {}",
            a.database,
            a.user,
            a.variable,
            want.address.name()
        ),
        Spec::App(_)
        | Spec::Secret(_)
        | Spec::Volume(_)
        | Spec::Machine(_)
        | Spec::Formation(_)
        | Spec::Endpoint(_)
        | Spec::User(_)
        | Spec::Database(_)
        | Spec::SnapshotPolicy(_)
        | Spec::BackupPolicy(_) => "not in live state".to_string(),
        Spec::Parameter(_) => "not set by flyplan on the nodes yet".to_string(),
    }
}

fn update_reason(want: &Resource, have: &Resource, changed: &[String], action: Action) -> String {
    if changed.len() == 1 && changed[0] == "state" {
        return format!(
            "drift: {} is {}, fly.toml wants {}",
            want.kind().as_str(),
            have.state().unwrap_or("unknown"),
            want.state().unwrap_or("running")
        );
    }
    let what: Vec<String> = changed
        .iter()
        .map(|a| match (&want.spec, &have.spec, a.as_str()) {
            (Spec::Secret(_), _, "digest") => "value changed".to_string(),
            (Spec::Attachment(w), Spec::Attachment(h), "credentials") => format!(
                "drift: {}; a new password is set and {} on app {} updated",
                h.credentials,
                w.variable,
                want.address.name()
            ),
            _ => format!("{a} changed"),
        })
        .collect();
    let mut reason = what.join(", ");
    if action == Action::Replace {
        reason.push_str("; cannot change in place");
    }
    reason
}

/// Blocks, notes, and kind-specific rules.
fn decorate(p: &mut Pending, opts: PlanOptions) {
    let step = &mut p.step;
    match (step.kind, step.action) {
        (Kind::Volume, Action::Update) if step.changed.iter().any(|c| c == "size_gb") => {
            let before = step.before.as_ref().and_then(|r| Some(r.volume()?.size_gb));
            let after = step.after.as_ref().and_then(|r| Some(r.volume()?.size_gb));
            if let (Some(b), Some(a)) = (before, after) {
                if a < b {
                    step.blocked = Some(Blocked {
                        reason: format!(
                            "volumes cannot shrink ({b} GB -> {a} GB); keep initial_size at {b}gb or larger"
                        ),
                        needs_allow_destroy: false,
                    });
                } else {
                    step.reason = format!("grow from {b} GB to {a} GB");
                    if let Some(note) = opts.notes.volume_grow {
                        step.notes.push(note.to_string());
                    }
                }
            }
        }
        (Kind::App, Action::Delete) => {
            step.notes
                .push("every node, volume, role and database of the app goes with it".to_string());
            if !opts.allow_destroy {
                step.blocked = Some(Blocked {
                    reason: "destroying the app deletes the whole cluster; needs --allow-destroy"
                        .to_string(),
                    needs_allow_destroy: true,
                });
            }
        }
        (Kind::Volume | Kind::Database | Kind::App, Action::Delete | Action::Replace) => {
            let what = match step.kind {
                Kind::Volume => "destroying a volume deletes its data",
                Kind::Database => "dropping a database deletes its data",
                _ => "destroying the app deletes the whole cluster",
            };
            if !opts.allow_destroy {
                step.blocked = Some(Blocked {
                    reason: format!("{what}; needs --allow-destroy"),
                    needs_allow_destroy: true,
                });
            }
        }
        (Kind::Attachment, Action::Delete) => {
            let b = step.before.as_ref().and_then(Resource::attachment);
            let db = b.map_or("?", |a| a.database.as_str());
            let user = b.map_or("?", |a| a.user.as_str());
            let var = b.map_or("DATABASE_URL", |a| a.variable.as_str());
            step.reason = "detach: attachment removed from fly.toml".to_string();
            step.notes.push(format!(
                "objects of user {user} are reassigned and dropped, the role is dropped and {var} is unset"
            ));
            step.notes
                .push(format!("database {db} is kept with its data"));
        }
        (Kind::Machine, Action::Update | Action::Replace)
            if step.before.as_ref().is_some_and(Resource::is_leader)
                && step.changed.iter().any(|c| c != "state") =>
        {
            step.notes.push(opts.notes.leader_update.to_string());
            if let Some(pause) = opts.notes.switchover_pause {
                step.notes.push(pause.to_string());
            }
        }
        (Kind::Machine, Action::Delete) => {
            step.notes.push(opts.notes.node_delete.to_string());
            if step.before.as_ref().is_some_and(Resource::is_leader) {
                step.notes.push(opts.notes.leader_delete.to_string());
            }
        }
        (Kind::BackupPolicy, Action::Delete) => {
            step.reason = "backups turned off: [postgres.backup] removed from fly.toml".to_string();
            step.notes.push(
                "WAL archiving stops; what is in the object store is kept, never deleted"
                    .to_string(),
            );
            if !opts.allow_destroy {
                step.blocked = Some(Blocked {
                    reason:
                        "turning backups off ends point-in-time recovery; needs --allow-destroy"
                            .to_string(),
                    needs_allow_destroy: true,
                });
            }
        }
        (Kind::Formation, Action::Update) => {
            let n = match step.after.as_ref().map(|r| &r.spec) {
                Some(Spec::Formation(f)) => f
                    .sync_standbys
                    .as_ref()
                    .and_then(Agreed::one)
                    .copied()
                    .unwrap_or(0),
                _ => 0,
            };
            if n == 0 {
                let note = opts
                    .notes
                    .sync_zero
                    .unwrap_or("commits no longer wait for a standby");
                step.notes.push(note.to_string());
            } else {
                step.notes.push(format!("commits wait for {n} standby(s)"));
                if let Some(note) = opts.notes.sync_short {
                    step.notes.push(note.to_string());
                }
            }
        }
        (Kind::Parameter, Action::Create | Action::Update) => {
            step.notes.push(parameter_note(step.address.name()));
        }
        // Every kind is named, so a new kind must decide here whether it
        // needs a rule.
        (
            Kind::App
            | Kind::Secret
            | Kind::Volume
            | Kind::Machine
            | Kind::Formation
            | Kind::Endpoint
            | Kind::User
            | Kind::Database
            | Kind::Attachment
            | Kind::SnapshotPolicy
            | Kind::Parameter
            | Kind::BackupPolicy,
            _,
        ) => {}
    }
}

/// Phases in execution order; each step depends on the steps of the
/// nearest earlier phase that has any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    App,
    Secret,
    Volume,
    LeaderVolume,
    FirstMachine,
    Machines,
    LeaderMachine,
    Formation,
    Parameter,
    Endpoint,
    User,
    Database,
    Attachment,
    SnapshotPolicy,
    BackupPolicy,
    DeleteBackupPolicy,
    DeleteAttachment,
    DeleteDatabase,
    DeleteUser,
    DeleteSnapshotPolicy,
    DeleteEndpoint,
    DeleteFormation,
    DeleteParameter,
    DeleteMachine,
    DeleteVolume,
    DeleteSecret,
    DeleteApp,
}

/// Whether the live leader's machine mounts `volume`.
fn mounted_by_leader(volume: &Address, live: &Live) -> bool {
    live.of_kind(Kind::Machine)
        .filter(|r| r.is_leader())
        .filter_map(Resource::machine)
        .any(|m| m.volume.as_ref() == Some(volume))
}

fn phase(step: &Step, live: &Live, first_machine: Option<&Address>) -> Phase {
    let deleting = step.action == Action::Delete;
    match (step.kind, deleting) {
        (Kind::App, false) => Phase::App,
        (Kind::Secret, false) => Phase::Secret,
        // A grown volume may restart its node: the leader's goes last.
        (Kind::Volume, false)
            if step.action == Action::Update && mounted_by_leader(&step.address, live) =>
        {
            Phase::LeaderVolume
        }
        (Kind::Volume, false) => Phase::Volume,
        (Kind::Machine, false) => {
            if Some(&step.address) == first_machine {
                Phase::FirstMachine
            } else if live.get(&step.address).is_some_and(Resource::is_leader) {
                Phase::LeaderMachine
            } else {
                Phase::Machines
            }
        }
        (Kind::Formation, false) => Phase::Formation,
        (Kind::Parameter, false) => Phase::Parameter,
        (Kind::Parameter, true) => Phase::DeleteParameter,
        (Kind::Endpoint, false) => Phase::Endpoint,
        (Kind::User, false) => Phase::User,
        (Kind::Database, false) => Phase::Database,
        (Kind::Attachment, false) => Phase::Attachment,
        (Kind::SnapshotPolicy, false) => Phase::SnapshotPolicy,
        (Kind::Attachment, true) => Phase::DeleteAttachment,
        (Kind::Database, true) => Phase::DeleteDatabase,
        (Kind::User, true) => Phase::DeleteUser,
        (Kind::SnapshotPolicy, true) => Phase::DeleteSnapshotPolicy,
        (Kind::BackupPolicy, false) => Phase::BackupPolicy,
        (Kind::BackupPolicy, true) => Phase::DeleteBackupPolicy,
        (Kind::Endpoint, true) => Phase::DeleteEndpoint,
        (Kind::Formation, true) => Phase::DeleteFormation,
        (Kind::Machine, true) => Phase::DeleteMachine,
        (Kind::Volume, true) => Phase::DeleteVolume,
        (Kind::Secret, true) => Phase::DeleteSecret,
        (Kind::App, true) => Phase::DeleteApp,
    }
}

/// When no node of the cluster is running, the lowest candidate is created
/// (or brought back) alone first: it becomes the leader the others clone.
fn first_machine(steps: &[Pending], live: &Live, desired: &Desired) -> Option<Address> {
    let leader_alive = live
        .of_kind(Kind::Machine)
        .any(|m| m.state() == Some("running") && desired.get(&m.address).is_some());
    if leader_alive {
        return None;
    }
    steps
        .iter()
        .map(|p| &p.step)
        .filter(|s| s.action != Action::Delete)
        .filter_map(|s| Some((s, s.after.as_ref()?.machine()?)))
        .filter(|(_, m)| m.role == Role::Candidate)
        .min_by_key(|(_, m)| m.index)
        .map(|(s, _)| s)
        .map(|s| s.address.clone())
}

/// Roles of one phase are made in parallel, but a role can only be granted
/// to another once that one exists: a role made or changed by the plan
/// waits for the roles it is a member of that the plan also makes. A
/// circular membership (which PostgreSQL refuses anyway) adds no wait, so
/// apply cannot deadlock on it.
fn order_memberships(steps: &mut [Step]) {
    let by_name: BTreeMap<&str, usize> = steps
        .iter()
        .filter(|s| s.kind == Kind::User && s.action != Action::Delete)
        .map(|s| (s.address.name(), s.id))
        .collect();
    let mut waits: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for s in steps
        .iter()
        .filter(|s| by_name.values().any(|id| *id == s.id))
    {
        let groups = s
            .after
            .as_ref()
            .and_then(Resource::user)
            .and_then(|u| u.member_of.as_ref());
        for group in groups.into_iter().flatten() {
            if let Some(&g) = by_name.get(group.as_str()) {
                if g != s.id {
                    waits.entry(s.id).or_default().push(g);
                }
            }
        }
    }
    // Drop the waits that close a cycle, in a fixed order.
    let mut kept: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (member, groups) in waits {
        for g in groups {
            if !reaches(&kept, g, member) {
                kept.entry(member).or_default().push(g);
            }
        }
    }
    for (member, groups) in kept {
        let deps = &mut steps[member].depends_on;
        for g in groups {
            if !deps.contains(&g) {
                deps.push(g);
            }
        }
        deps.sort_unstable();
    }
}

/// What applying a setting takes, from PostgreSQL's own `pg_settings.context`.
fn parameter_note(name: &str) -> String {
    match pgsettings::lookup(name) {
        Some(s) if s.apply() == Apply::Restart => format!(
            "restart: nodes restart one at a time, standbys and read replicas first, the leader last after a switchover (pg_settings context: {})",
            s.context
        ),
        Some(s) => format!(
            "reload: pg_reload_conf() on every node, no restart (pg_settings context: {})",
            s.context
        ),
        None => "not a PostgreSQL 15 setting".to_string(),
    }
}

/// Settings are applied one at a time, those a reload applies first; the
/// last setting that needs a restart restarts the nodes once for all of
/// them.
fn order_parameters(steps: &mut [Step]) {
    let mut ids: Vec<(bool, usize)> = steps
        .iter()
        .filter(|s| s.kind == Kind::Parameter && s.action != Action::Delete)
        .map(|s| {
            let restart =
                pgsettings::lookup(s.address.name()).is_some_and(|p| p.apply() == Apply::Restart);
            (restart, s.id)
        })
        .collect();
    ids.sort_unstable();
    for pair in ids.windows(2) {
        let (before, after) = (pair[0].1, pair[1].1);
        let deps = &mut steps[after].depends_on;
        if !deps.contains(&before) {
            deps.push(before);
            deps.sort_unstable();
        }
    }
}

/// Whether `to` can be reached from `from` along `edges`.
fn reaches(edges: &BTreeMap<usize, Vec<usize>>, from: usize, to: usize) -> bool {
    let mut seen = vec![from];
    let mut stack = vec![from];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        for &next in edges.get(&n).into_iter().flatten() {
            if !seen.contains(&next) {
                seen.push(next);
                stack.push(next);
            }
        }
    }
    false
}

fn order(
    pending: Vec<Pending>,
    live: &Live,
    desired: &Desired,
    fingerprint: String,
    opts: PlanOptions,
    unchanged: Vec<Address>,
) -> Plan {
    let first = first_machine(&pending, live, desired);
    let mut by_phase: BTreeMap<Phase, Vec<Step>> = BTreeMap::new();
    for p in pending {
        let ph = phase(&p.step, live, first.as_ref());
        by_phase.entry(ph).or_default().push(p.step);
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut previous: Vec<usize> = Vec::new();
    for (_, mut group) in by_phase {
        group.sort_by(|a, b| a.address.cmp(&b.address));
        let start = steps.len();
        for mut s in group {
            s.id = steps.len();
            s.depends_on = previous.clone();
            steps.push(s);
        }
        previous = (start..steps.len()).collect();
    }
    order_memberships(&mut steps);
    order_parameters(&mut steps);

    let mut summary = Summary::default();
    for s in &steps {
        match s.action {
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Delete => summary.destroy += 1,
            Action::Replace => {
                summary.add += 1;
                summary.destroy += 1;
            }
            Action::NoOp => {}
        }
        if s.blocked.is_some() {
            summary.blocked += 1;
        }
    }
    Plan {
        format_version: FORMAT_VERSION,
        app: desired.app.clone(),
        live_fingerprint: fingerprint,
        allow_destroy: opts.allow_destroy,
        steps,
        unchanged,
        summary,
        notes: Vec::new(),
    }
}

/// Render an attribute value for people; sensitive ones are masked.
pub fn show_value(r: &Resource, key: &str) -> String {
    if r.is_sensitive(key) {
        return "(sensitive value)".to_string();
    }
    match r.spec.attrs().get(key) {
        None | Some(Value::Null) => "null".to_string(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn plan_of(users: &str) -> Plan {
        let text = format!(
            "app = \"pg\"\nprimary_region = \"iad\"\n\n[postgres]\n  instances = 1\n{users}"
        );
        let config = crate::config::parse(Path::new("fly.toml"), &text).expect("valid fly.toml");
        let desired =
            Desired::from_config(&config, &BTreeMap::<String, String>::new()).expect("desired");
        plan(&desired, &Live::empty("pg"), PlanOptions::default())
    }

    fn step<'p>(p: &'p Plan, address: &str) -> &'p Step {
        p.steps
            .iter()
            .find(|s| s.address.as_str() == address)
            .unwrap_or_else(|| panic!("no step {address}"))
    }

    #[test]
    fn a_role_waits_for_the_declared_roles_it_is_a_member_of() {
        let p = plan_of(
            "\n[[postgres.users]]\n  name = \"app_reader\"\n  member_of = [\"pg_read_all_data\", \"reporting\"]\n\
             \n[[postgres.users]]\n  name = \"reporting\"\n  login = false\n",
        );
        let reporting = step(&p, "user.reporting").id;
        let reader = step(&p, "user.app_reader");
        assert!(reader.depends_on.contains(&reporting), "{reader:#?}");
        assert!(!step(&p, "user.reporting").depends_on.contains(&reader.id));
    }

    #[test]
    fn a_circular_membership_adds_no_wait_that_could_deadlock() {
        let p = plan_of(
            "\n[[postgres.users]]\n  name = \"a\"\n  member_of = [\"b\"]\n\
             \n[[postgres.users]]\n  name = \"b\"\n  member_of = [\"a\"]\n",
        );
        let (a, b) = (step(&p, "user.a"), step(&p, "user.b"));
        assert!(
            !(a.depends_on.contains(&b.id) && b.depends_on.contains(&a.id)),
            "{a:#?} {b:#?}"
        );
    }

    fn desired_of(postgres: &str) -> Desired {
        let text = format!("app = \"pg\"\nprimary_region = \"iad\"\n\n[postgres]\n{postgres}");
        let config = crate::config::parse(Path::new("fly.toml"), &text).expect("valid fly.toml");
        Desired::from_config(&config, &BTreeMap::<String, String>::new()).expect("desired")
    }

    /// The notes of the formation's step when `sync_standbys` goes from
    /// `from` to `to` on 3 instances.
    fn sync_notes(from: u32, to: u32, notes: PlanNotes) -> Vec<String> {
        let was = desired_of(&format!("  instances = 3\n  sync_standbys = {from}\n"));
        let mut live = Live::empty("pg");
        for r in was.resources.values() {
            live.insert(r.clone());
        }
        let p = plan(
            &desired_of(&format!("  instances = 3\n  sync_standbys = {to}\n")),
            &live,
            PlanOptions {
                notes,
                ..PlanOptions::default()
            },
        );
        step(&p, "formation.pg").notes.clone()
    }

    #[test]
    fn a_sync_standbys_change_says_what_writes_do_when_standbys_are_down() {
        let notes = sync_notes(0, 1, PlanNotes::default());
        assert_eq!(notes[0], "commits wait for 1 standby(s)");
        assert!(notes[1].starts_with("while fewer standbys run than this, writes block"));
        let notes = sync_notes(1, 0, PlanNotes::default());
        assert!(notes[0].contains("the leader goes on alone"), "{notes:?}");
        let quiet = PlanNotes {
            sync_zero: None,
            sync_short: None,
            ..PlanNotes::default()
        };
        assert_eq!(
            sync_notes(1, 0, quiet),
            ["commits no longer wait for a standby"]
        );
        assert_eq!(sync_notes(0, 1, quiet), ["commits wait for 1 standby(s)"]);
    }
}

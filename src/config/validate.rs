//! Checks that relate one part of fly.toml to another, run after every table
//! has been read: synchronous standbys against the nodes that can be
//! standbys, and secret references against `[secrets]`.

use std::collections::BTreeSet;

use super::diag::Diagnostic;
use super::model::Config;

/// Nodes one cluster may have, instances and read replicas together: the
/// leader's 12 WAL senders (pg_auto_failover's `max_wal_senders`), less two
/// kept for a standby's base backup while it clones.
pub const MAX_NODES: u32 = 10;

/// Problems between tables. Paths in `poisoned` held invalid values already
/// reported; checks that read them are skipped.
pub(crate) fn validate(
    config: &Config,
    secret_refs: &[(String, String)],
    poisoned: &BTreeSet<String>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let at = |path: &str, message: String| {
        let span = config.spans.get(path).unwrap_or(0..0);
        Diagnostic::at(&config.path, &config.source, span, message)
    };

    // Only nodes in the primary region are candidates, so only they can be
    // synchronous standbys: at most `instances - 1` of them.
    let pg = &config.postgres;
    let counted =
        !poisoned.contains("postgres.instances") && !poisoned.contains("postgres.sync_standbys");
    if counted && pg.sync_standbys > pg.instances.saturating_sub(1) {
        let max = pg.instances.saturating_sub(1);
        out.push(
            at(
                "postgres.sync_standbys",
                format!(
                    "`postgres.sync_standbys` must be at most instances - 1 ({max}): only standbys in the primary region can be synchronous"
                ),
            )
            .with_help(format!(
                "raise `instances` to {} or lower `sync_standbys`",
                pg.sync_standbys.saturating_add(1)
            )),
        );
    }

    // The leader streams WAL to every other node: pg_auto_failover gives
    // each node 12 WAL senders and replication slots, two of which a new
    // standby's base backup takes while it clones.
    let replicas: u32 = pg.read_replicas.values().sum();
    let nodes = pg.instances.saturating_add(replicas);
    if !poisoned.contains("postgres.instances") && nodes > MAX_NODES {
        let path = if pg.read_replicas_declared && replicas > 0 && pg.instances <= MAX_NODES {
            "postgres.read_replicas"
        } else {
            "postgres.instances"
        };
        out.push(
            at(
                path,
                format!(
                    "a cluster holds at most {MAX_NODES} nodes (instances plus read replicas), found {nodes}"
                ),
            )
            .with_help(
                "the leader streams to every other node with one WAL sender each; split the load across clusters or attach read-only apps to fewer replicas",
            ),
        );
    }

    // Each attachment owns its role: detaching drops it.
    let mut roles: Vec<(String, String)> = vec![(
        pg.operator_user.clone(),
        "the operator user (`postgres.operator_user`)".to_string(),
    )];
    for (i, u) in pg.users.iter().enumerate() {
        roles.push((
            u.name.clone(),
            format!("[[postgres.users]] entry {}", i + 1),
        ));
    }
    for (i, a) in config.attachments.iter().enumerate() {
        let path = if config
            .spans
            .get(&format!("attachments[{i}].user"))
            .is_some()
        {
            format!("attachments[{i}].user")
        } else {
            format!("attachments[{i}].app")
        };
        if let Some((_, owner)) = roles.iter().find(|(name, _)| *name == a.user) {
            out.push(
                at(
                    &path,
                    format!(
                        "user `{}` of the attachment of app `{}` is already {owner}",
                        a.user, a.app
                    ),
                )
                .with_help(
                    "an attachment owns its role and drops it on detach; set `user` to a name of its own",
                ),
            );
        }
        roles.push((
            a.user.clone(),
            format!("the user of the attachment of app `{}`", a.app),
        ));
    }

    for (name, path) in secret_refs {
        let declared = config.secrets.contains_key(name)
            || poisoned.contains(&format!("secrets.{name}"))
            || poisoned.contains("secrets");
        if !declared {
            out.push(
                at(path, format!("secret `{name}` is not declared")).with_help(format!(
                    "declare it in [secrets], e.g. {name} = {{ from_env = \"{name}\" }}"
                )),
            );
        }
    }
    out
}

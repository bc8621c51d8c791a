//! Checks that relate one part of fly.toml to another, run after every table
//! has been read: synchronous standbys against the nodes that can be
//! standbys, and secret references against `[secrets]`.

use std::collections::BTreeSet;

use super::diag::Diagnostic;
use super::model::Config;

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

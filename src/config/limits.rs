//! What the local provider can run, checked against a valid config before
//! a plan: one machine holds the whole cluster, with the PostgreSQL that is
//! installed on it.

use super::diag::{ConfigError, Diagnostic};
use super::model::Config;
use crate::pgsettings;

/// Nodes the local provider runs on one machine: each is a PostgreSQL
/// server with its keeper (about 200 MB of memory with flyplan's settings).
pub const LOCAL_MAX_NODES: u32 = 6;

/// Problems that make `config` impossible for the local provider; notes
/// for what it runs differently (an older major version runs on the
/// installed PostgreSQL 15, as the seed documents' `flyio/postgres:14` does).
///
/// # Errors
/// [`ConfigError::Invalid`] with a located diagnostic for each problem.
pub fn check_local(config: &Config) -> Result<Vec<Diagnostic>, ConfigError> {
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let at = |path: &str, message: String| {
        let span = config.spans.get(path).unwrap_or(0..0);
        Diagnostic::at(&config.path, &config.source, span, message)
    };
    if config.pg_major < pgsettings::MAJOR {
        notes.push(at(
            "build.image",
            format!(
                "the local provider runs PostgreSQL {} for the image {:?} (PostgreSQL {})",
                pgsettings::MAJOR,
                config.image,
                config.pg_major
            ),
        ));
    }
    if config.pg_major > pgsettings::MAJOR {
        out.push(
            at(
                "build.image",
                format!(
                    "the local provider runs PostgreSQL {} and older images only; the image {:?} is PostgreSQL {}",
                    pgsettings::MAJOR,
                    config.image,
                    config.pg_major
                ),
            )
            .with_help(format!(
                "use an image tag of PostgreSQL {} (e.g. flyio/postgres-flex:{}) or the fly provider",
                pgsettings::MAJOR,
                pgsettings::MAJOR
            )),
        );
    }
    let pg = &config.postgres;
    let nodes = pg.instances + pg.read_replicas.values().sum::<u32>();
    if nodes > LOCAL_MAX_NODES {
        out.push(
            at(
                "postgres.instances",
                format!(
                    "the local provider runs at most {LOCAL_MAX_NODES} nodes on one machine, found {nodes}"
                ),
            )
            .with_help("lower `instances` or `read_replicas`, or use the fly provider"),
        );
    }
    if out.is_empty() {
        Ok(notes)
    } else {
        out.sort_by_key(|d| (d.line, d.column));
        Err(ConfigError::Invalid { diagnostics: out })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check(src: &str) -> Result<usize, String> {
        let c = crate::config::parse(Path::new("fly.toml"), src).expect("valid");
        check_local(&c).map(|n| n.len()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_local_provider_runs_postgresql_15_on_at_most_six_nodes() {
        let head = "app = \"pg\"\nprimary_region = \"iad\"\n";
        let image = |i: &str| check(&format!("{head}[build]\nimage = \"{i}\"\n"));
        assert_eq!(image("flyio/postgres-flex:15.3"), Ok(0));
        assert_eq!(image("flyio/postgres:14"), Ok(1));
        let e = check(&format!("{head}[build]\nimage = \"postgres:16-alpine\"\n")).unwrap_err();
        assert!(
            e.starts_with(
                "fly.toml:4:9: the local provider runs PostgreSQL 15 and older images only"
            ),
            "{e}"
        );
        let e = check(&format!("{head}[postgres]\ninstances = 7\n")).unwrap_err();
        assert!(
            e.starts_with("fly.toml:4:13: the local provider runs at most 6 nodes"),
            "{e}"
        );
    }
}

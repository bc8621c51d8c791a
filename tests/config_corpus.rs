//! Every real fly.toml in the corpus must be read without a panic: either a
//! config or located diagnostics. Most Fly Postgres files must parse. The
//! corpus is vendored in `tests/data/fly-corpus`; its `SOURCES.md` names each
//! file's repository, commit and licence. Files that validate are also
//! planned against a live cluster of three nodes.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use flyplan::config::{self, ConfigError, SecretSource};
use flyplan::desired::Desired;
use flyplan::live::Live;
use flyplan::model::{Address, AppSpec, Kind, MachineSpec, Resource, Role, Spec, VolumeSpec};
use flyplan::plan::{plan, Action, PlanOptions};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fly-corpus");

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(CORPUS).join(dir);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the fly.toml corpus is missing: cannot read {}: {e}",
            dir.display()
        )
    });
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no files in {}", dir.display());
    out
}

/// Load one file; `Ok(true)` parsed, `Ok(false)` clean diagnostics, `Err`
/// describes what went wrong.
fn check(path: &Path) -> Result<Result<usize, String>, String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| config::load(path)))
        .map_err(|_| format!("{}: panicked", path.display()))?;
    match outcome {
        Ok(cfg) => Ok(Ok(cfg.notes.len())),
        Err(ConfigError::Invalid { diagnostics }) => {
            assert!(!diagnostics.is_empty());
            for d in &diagnostics {
                if d.line < 1 || d.column < 1 || d.source_line.trim().is_empty() {
                    return Err(format!(
                        "{}: badly located diagnostic:\n{d}",
                        path.display()
                    ));
                }
            }
            let first = diagnostics[0].to_string();
            Ok(Err(first.lines().next().unwrap_or_default().to_string()))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[test]
fn every_corpus_file_is_read_without_panicking() {
    let mut problems = Vec::new();
    for path in files("pg").into_iter().chain(files("app")) {
        if let Err(p) = check(&path) {
            problems.push(p);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn most_fly_postgres_files_parse() {
    let pg = files("pg");
    let mut failed = Vec::new();
    for path in &pg {
        if let Ok(Err(first)) = check(path) {
            failed.push(first);
        }
    }
    let ok = pg.len() - failed.len();
    assert_eq!(pg.len(), 31, "expected 31 Fly Postgres files");
    assert!(
        ok >= 25,
        "only {ok} of {} pg/ files parse; failures:\n{}",
        pg.len(),
        failed.join("\n")
    );
    eprintln!(
        "{ok} of {} pg/ files parse; failures:\n{}",
        pg.len(),
        failed.join("\n")
    );
}

#[test]
fn ordinary_app_files_are_refused_with_located_errors() {
    let mut parsed = Vec::new();
    for path in files("app") {
        if let Ok(Ok(_)) = check(&path) {
            parsed.push(path.display().to_string());
        }
    }
    assert!(
        parsed.is_empty(),
        "ordinary app files taken for Postgres clusters:\n{}",
        parsed.join("\n")
    );
}

/// Cut every corpus file short at many places (mid-key, mid-string,
/// mid-header): each prefix must give a config or located diagnostics.
#[test]
fn truncated_corpus_files_never_panic() {
    let mut problems = Vec::new();
    for path in files("pg").into_iter().chain(files("app")) {
        let text = std::fs::read_to_string(&path).expect("readable");
        let cuts = text.char_indices().map(|(i, _)| i).filter(|i| i % 13 == 0);
        for cut in cuts {
            let prefix = &text[..cut];
            let outcome = catch_unwind(|| config::parse(Path::new("fly.toml"), prefix));
            match outcome {
                Err(_) => problems.push(format!("{} cut at {cut}: panicked", path.display())),
                Ok(Err(ConfigError::Invalid { diagnostics })) => {
                    if diagnostics.iter().any(|d| d.line < 1 || d.column < 1) {
                        problems.push(format!("{} cut at {cut}: unlocated", path.display()));
                    }
                }
                Ok(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A live cluster of `config`'s app with three running nodes in its primary
/// region (the first one leading), each with its volume.
fn three_node_live(config: &config::Config) -> Live {
    let app = config.app.as_str();
    let region = config.primary_region.as_str();
    let volume = config
        .mounts
        .first()
        .map_or("pg_data", |m| m.source.as_str());
    let mut live = Live::empty(app);
    live.insert(Resource::new(
        Address::app(app),
        Spec::App(AppSpec::new(Some(region.to_string()), "running")),
    ));
    for i in 0..3 {
        let vol = Address::volume(volume, region, i);
        live.insert(Resource::new(
            vol.clone(),
            Spec::Volume(VolumeSpec::new(volume, region, 1)),
        ));
        let mut m = MachineSpec::new(region, i, Role::Candidate, "running");
        m.leader = Some(i == 0);
        m.volume = Some(vol);
        live.insert(Resource::new(Address::machine(region, i), Spec::Machine(m)));
    }
    live
}

/// Real Fly Postgres files mostly have no `[postgres]` table: the node
/// count lives in the machines. Planned against a cluster of three nodes,
/// such a file keeps them; only a file that declares fewer removes any.
#[test]
fn no_corpus_file_removes_a_node_unless_it_declares_fewer() {
    let mut planned = 0;
    let mut undeclared = 0;
    let mut problems = Vec::new();
    for path in files("pg") {
        let Ok(config) = config::load(&path) else {
            continue;
        };
        // Every secret read from the environment gets a value.
        let env: BTreeMap<String, String> = config
            .secrets
            .values()
            .filter_map(|s| match s {
                SecretSource::Env { var } => Some((var.clone(), "corpus-value".to_string())),
                _ => None,
            })
            .collect();
        let desired = match Desired::from_config(&config, &env) {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        planned += 1;
        let pg = &config.postgres;
        if !pg.instances_declared {
            undeclared += 1;
        }
        let p = plan(&desired, &three_node_live(&config), PlanOptions::default());
        let removed: Vec<String> = p
            .steps
            .iter()
            .filter(|s| s.kind == Kind::Machine || s.kind == Kind::Volume)
            .filter(|s| matches!(s.action, Action::Delete | Action::Replace))
            .map(|s| s.address.to_string())
            .collect();
        let declares_fewer = pg.instances_declared && pg.instances < 3;
        if declares_fewer {
            let want = 2 * (3 - pg.instances as usize);
            if removed.len() != want {
                problems.push(format!(
                    "{}: declares {} instance(s) but the plan removes {removed:?}",
                    path.display(),
                    pg.instances
                ));
            }
        } else if !removed.is_empty() {
            problems.push(format!(
                "{}: removes {removed:?} without declaring fewer nodes",
                path.display()
            ));
        }
        if !pg.instances_declared
            && !p
                .notes
                .iter()
                .any(|n| n.contains("keeping the 3 live nodes"))
        {
            problems.push(format!(
                "{}: no note that the live nodes are kept: {:?}",
                path.display(),
                p.notes
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(planned >= 25, "only {planned} corpus files planned");
    assert!(
        undeclared >= 10,
        "only {undeclared} corpus files leave instances out; the test would prove little"
    );
}

//! Every real fly.toml in the corpus must be read without a panic: either a
//! config or located diagnostics. Most Fly Postgres files must parse. The
//! corpus is vendored in `tests/data/fly-corpus`; its `SOURCES.md` names each
//! file's repository, commit and licence.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use flyplan::config::{self, ConfigError};

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

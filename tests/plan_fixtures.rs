//! Golden plans: each directory under plan-fixtures/ holds a fly.toml, a
//! live.json and the expected plan.txt / plan.json (and plan.md). Set
//! `FLYPLAN_UPDATE_FIXTURES=1` to rewrite the expected files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flyplan::desired::Desired;
use flyplan::live::Live;
use flyplan::plan::{plan, PlanOptions};
use flyplan::render::{render, Format};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plan-fixtures")
}

/// `env`: KEY=VALUE lines for secrets read from the environment.
fn read_env(dir: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("env")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once('=').expect("KEY=VALUE");
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

/// `args`: plan flags of the case (`--allow-destroy`, `--destroy`).
fn read_args(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("args"))
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

struct Outputs {
    text: String,
    json: String,
    markdown: String,
}

fn run_case(dir: &Path) -> Outputs {
    let env = read_env(dir);
    let args = read_args(dir);
    let config = flyplan::config::load(&dir.join("fly.toml"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut desired = Desired::from_config(&config, &env).expect("secrets resolve");
    if args.iter().any(|a| a == "--destroy") {
        desired = Desired::nothing(&config.app);
    }
    let live = Live::load(&dir.join("live.json")).expect("live.json loads");
    let opts = PlanOptions {
        allow_destroy: args.iter().any(|a| a == "--allow-destroy"),
        ..PlanOptions::default()
    };
    let p = plan(&desired, &live, opts);
    Outputs {
        text: render(&p, Format::Text, false),
        json: render(&p, Format::Json, false),
        markdown: render(&p, Format::Markdown, false),
    }
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("plan-fixtures exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("fly.toml").exists())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_fixture_plan_matches_its_golden_files() {
    let update = std::env::var_os("FLYPLAN_UPDATE_FIXTURES").is_some();
    let mut failures = Vec::new();
    let all = cases();
    assert!(
        all.len() >= 25,
        "expected at least 25 fixtures, found {}",
        all.len()
    );
    for dir in &all {
        let out = run_case(dir);
        for (file, got) in [
            ("plan.txt", &out.text),
            ("plan.json", &out.json),
            ("plan.md", &out.markdown),
        ] {
            let path = dir.join(file);
            if update {
                std::fs::write(&path, got).expect("write golden file");
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if &want != got {
                let diff = similar::TextDiff::from_lines(&want, got)
                    .unified_diff()
                    .header("expected", "actual")
                    .to_string();
                failures.push(format!("{}:\n{diff}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (FLYPLAN_UPDATE_FIXTURES=1 rewrites them):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn no_secret_value_appears_in_any_fixture_output() {
    for dir in cases() {
        let env = read_env(&dir);
        let out = run_case(&dir);
        for (name, value) in &env {
            for (format, text) in [
                ("text", &out.text),
                ("json", &out.json),
                ("markdown", &out.markdown),
            ] {
                assert!(
                    !text.contains(value.as_str()),
                    "{}: the value of {name} appears in the {format} plan",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn plans_are_deterministic() {
    for dir in cases().into_iter().take(5) {
        let a = run_case(&dir);
        let b = run_case(&dir);
        assert_eq!(a.json, b.json, "{}", dir.display());
    }
}

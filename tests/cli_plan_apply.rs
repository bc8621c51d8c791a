//! The real binary, end to end, on a JSON live state (the file provider):
//! exit codes, saved plans and staleness, refusals, and secret hygiene.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECRET: &str = "recognisable-Secret-Value-4711";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fly.toml")
}

fn flyplan(live: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--live")
        .arg(live)
        .args(args)
        .env("PG_PASSWORD", SECRET)
        .env("NO_COLOR", "1")
        .output()
        .expect("flyplan runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

#[test]
fn detailed_exitcode_is_2_with_changes_and_0_after_apply() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let cfg = example();
    let cfg = cfg.to_str().unwrap();
    let o = flyplan(&live, &["plan", "-c", cfg, "--detailed-exitcode"]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        text(&o).contains("Plan: 14 to add, 0 to change, 0 to destroy."),
        "{}",
        text(&o)
    );

    let o = flyplan(&live, &["apply", "-c", cfg, "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("Apply complete!"), "{}", text(&o));

    let o = flyplan(&live, &["plan", "-c", cfg, "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("No changes. Live state matches fly.toml."));

    // A second apply changes nothing.
    let before = std::fs::read_to_string(&live).unwrap();
    let o = flyplan(&live, &["apply", "-c", cfg, "--auto-approve"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(before, std::fs::read_to_string(&live).unwrap());
}

#[test]
fn saved_plan_applies_only_while_live_state_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let planfile = dir.path().join("plan.json");
    let cfg = example();
    let cfg = cfg.to_str().unwrap();
    let o = flyplan(
        &live,
        &["plan", "-c", cfg, "--out", planfile.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!std::fs::read_to_string(&planfile).unwrap().contains(SECRET));

    // Something changes the live state after the plan was made.
    std::fs::write(
        &live,
        r#"{"app":"flyplan-example","resources":[{"address":"app.flyplan-example","kind":"app","attrs":{"primary_region":"iad","state":"running"}}]}"#,
    )
    .unwrap();
    let o = flyplan(
        &live,
        &["apply", planfile.to_str().unwrap(), "--auto-approve"],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("stale plan"), "{}", text(&o));

    // Planned again against the current state, it applies.
    let o = flyplan(
        &live,
        &["plan", "-c", cfg, "--out", planfile.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = flyplan(
        &live,
        &["apply", planfile.to_str().unwrap(), "--auto-approve"],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = flyplan(&live, &["plan", "-c", cfg, "--detailed-exitcode"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

#[test]
fn saved_plan_is_refused_when_the_secret_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let planfile = dir.path().join("plan.json");
    let cfg = example();
    let o = flyplan(
        &live,
        &[
            "plan",
            "-c",
            cfg.to_str().unwrap(),
            "--out",
            planfile.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--live")
        .arg(&live)
        .args(["apply", planfile.to_str().unwrap(), "--auto-approve"])
        .env("PG_PASSWORD", "another-value")
        .output()
        .unwrap();
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(text(&o).contains("secret PG_PASSWORD: the value changed since the plan was made"));
    assert!(!live.exists(), "nothing was applied");
}

#[test]
fn apply_without_terminal_or_auto_approve_refuses_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let o = flyplan(&live, &["apply", "-c", example().to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("--auto-approve"), "{}", text(&o));
    assert!(!live.exists());
}

#[test]
fn blocked_destroy_is_refused_by_apply_and_allowed_with_allow_destroy() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let cfg = example();
    let o = flyplan(
        &live,
        &["apply", "-c", cfg.to_str().unwrap(), "--auto-approve"],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let smaller = dir.path().join("fly.toml");
    std::fs::write(
        &smaller,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("instances = 3", "instances = 2"),
    )
    .unwrap();
    let before = std::fs::read_to_string(&live).unwrap();
    let o = flyplan(
        &live,
        &["apply", "-c", smaller.to_str().unwrap(), "--auto-approve"],
    );
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert!(
        text(&o).contains("BLOCKED: destroying a volume deletes its data"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("refusing to apply"), "{}", text(&o));
    assert_eq!(
        before,
        std::fs::read_to_string(&live).unwrap(),
        "nothing changed"
    );

    let o = flyplan(
        &live,
        &[
            "apply",
            "-c",
            smaller.to_str().unwrap(),
            "--auto-approve",
            "--allow-destroy",
        ],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after = std::fs::read_to_string(&live).unwrap();
    assert!(!after.contains("machine[iad:2]") && !after.contains("volume.pg_data[iad:2]"));
}

#[test]
fn destroy_needs_allow_destroy_and_then_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let cfg = example();
    let cfg = cfg.to_str().unwrap();
    assert_eq!(
        code(&flyplan(&live, &["apply", "-c", cfg, "--auto-approve"])),
        0
    );
    let o = flyplan(&live, &["destroy", "-c", cfg, "--auto-approve"]);
    assert_eq!(code(&o), 1);
    assert!(text(&o).contains("--allow-destroy"));
    let o = flyplan(
        &live,
        &["destroy", "-c", cfg, "--auto-approve", "--allow-destroy"],
    );
    assert_eq!(code(&o), 0, "{}", text(&o));
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&live).unwrap()).unwrap();
    assert_eq!(after["resources"].as_array().unwrap().len(), 0);
}

#[test]
fn broken_fly_toml_exits_1_with_a_located_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let bad = dir.path().join("fly.toml");
    std::fs::write(
        &bad,
        "app = \"broken\"\nprimary_region = \"iad\"\n\n[postgres]\n  instances = 0\n",
    )
    .unwrap();
    for args in [
        vec!["validate", "-c", bad.to_str().unwrap()],
        vec!["plan", "-c", bad.to_str().unwrap()],
        vec!["apply", "-c", bad.to_str().unwrap(), "--auto-approve"],
    ] {
        let o = flyplan(&live, &args);
        assert_eq!(code(&o), 1, "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with(&format!("{}:5:15: ", bad.display())),
            "{args:?}: {err}"
        );
        assert!(err.contains("5 |   instances = 0"), "{err}");
        assert!(!live.exists(), "{args:?} changed live state");
    }
}

#[test]
fn no_secret_value_appears_in_any_output_format_file_or_log() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let planfile = dir.path().join("saved.json");
    let cfg = example();
    let cfg = cfg.to_str().unwrap();
    let mut seen = String::new();
    for format in ["text", "markdown", "json"] {
        seen += &text(&flyplan(
            &live,
            &["-vvv", "plan", "-c", cfg, "--format", format],
        ));
    }
    seen += &text(&flyplan(
        &live,
        &[
            "-vvv",
            "plan",
            "-c",
            cfg,
            "--out",
            planfile.to_str().unwrap(),
        ],
    ));
    seen += &std::fs::read_to_string(&planfile).unwrap();
    seen += &text(&flyplan(
        &live,
        &["-vvv", "apply", "-c", cfg, "--auto-approve"],
    ));
    seen += &std::fs::read_to_string(&live).unwrap();
    seen += &text(&flyplan(&live, &["-vvv", "status", "-c", cfg, "--json"]));
    // Rotation shows that the value changed, never the value.
    let rotated = Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--live")
        .arg(&live)
        .args(["plan", "-c", cfg, "--format", "json"])
        .env("PG_PASSWORD", "rotated-Secret-Value-0815")
        .output()
        .unwrap();
    let rotated = text(&rotated);
    assert!(rotated.contains("\"sensitive_changed\""), "{rotated}");
    assert!(!rotated.contains("rotated-Secret-Value-0815"));
    assert!(seen.contains("(sensitive value)"));
    assert!(!seen.contains(SECRET), "a secret value leaked");
}

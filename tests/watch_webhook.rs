//! The push trigger: `POST /hook` makes a running `flyplan watch` pick up a
//! new commit at once, long before its interval; `GET /metrics` serves the
//! counters.

mod watch_common;

use std::time::{Duration, Instant};

use watch_common::*;

fn head_applied(place: &Place, repo: &Repo, rev: &str) -> bool {
    status_json(place, repo).is_some_and(|s| {
        s["commits"][0]["revision"] == rev && s["commits"][0]["result"] == "applied"
    })
}

#[test]
fn a_post_to_hook_applies_a_new_commit_long_before_the_interval() {
    let repo = Repo::new();
    let place = Place::new();
    let first = repo.commit(&[("fly.toml", &example())], "a cluster");
    let url = repo.url();
    let mut watch = WatchProcess::spawn(
        &place,
        &[
            "--repo",
            &url,
            "--interval",
            "1h",
            "--listen",
            "127.0.0.1:0",
        ],
    );

    let mut addr = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let Some(s) = status_json(&place, &repo) else {
                return false;
            };
            addr = s["listen"].as_str().unwrap_or_default().to_string();
            !addr.is_empty() && head_applied(&place, &repo, &first.to_string())
        }),
        "the first commit was not applied: {:?}",
        status_json(&place, &repo)
    );

    let next = repo.commit(&[("fly.toml", &with_attachment("myapp"))], "attach myapp");
    let started = Instant::now();
    let reply = http(&addr, "POST", "/hook");
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert!(
        wait_until(Duration::from_secs(10), || head_applied(
            &place,
            &repo,
            &next.to_string()
        )),
        "the hook did not trigger a reconcile"
    );
    let latency = started.elapsed();
    eprintln!("commit -> applied via POST /hook: {latency:?}");
    assert!(latency < Duration::from_secs(10));
    assert!(place.live_text().contains("attachment.myapp"));

    let metrics = http(&addr, "GET", "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in [
        "flyplan_reconciles_total{result=\"applied\"} 2",
        "flyplan_reconciles_total{result=\"failed\"} 0",
        "flyplan_drift_detected_total 0",
        "flyplan_apply_duration_seconds_count 2",
        "flyplan_suspended 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    assert!(!metrics.contains("flyplan_last_success_timestamp_seconds 0\n"));
    assert!(http(&addr, "GET", "/nope").starts_with("HTTP/1.1 404"));

    assert_eq!(
        watch
            .terminate(Duration::from_secs(10))
            .and_then(|s| s.code()),
        Some(0)
    );
}

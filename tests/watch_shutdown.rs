//! SIGTERM ends a running `flyplan watch` cleanly: exit 0, the record
//! consistent, and no lock left held.

mod watch_common;

use std::time::Duration;

use watch_common::*;

#[test]
fn sigterm_ends_watch_with_exit_0_and_leaves_no_lock_held() {
    let repo = Repo::new();
    let place = Place::new();
    let rev = repo.commit(&[("fly.toml", &example())], "a cluster");
    let url = repo.url();
    let mut watch = WatchProcess::spawn(&place, &["--repo", &url, "--interval", "100ms"]);
    assert!(
        wait_until(Duration::from_secs(10), || status_json(&place, &repo)
            .is_some_and(|s| s["applied_revision"] == rev.to_string()
                && s["counters"]["no_changes"].as_u64() >= Some(2))),
        "{:?}",
        status_json(&place, &repo)
    );

    let status = watch.terminate(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");

    // The record is whole, and neither the apply lock nor the watch lock is held.
    let s = status_json(&place, &repo).expect("status.json parses");
    assert_eq!(s["commits"][0]["result"], "applied");
    assert!(s.get("listen").is_none());
    let cfg = repo.path().join("fly.toml");
    let o = flyplan(
        &place,
        &["apply", "-c", cfg.to_str().unwrap(), "--auto-approve"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("No changes."), "{}", text(&o));
    let o = flyplan(&place, &["watch", "--repo", &url, "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

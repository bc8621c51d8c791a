//! `flyplan watch` follows commits: each new commit is validated, planned and
//! applied and recorded; a broken fly.toml is recorded with its located error
//! and changes nothing; a later good commit is applied.

mod watch_common;

use flyplan::reconcile::{ResultKind, StepReport};
use watch_common::*;

#[test]
fn each_new_commit_is_applied_and_a_broken_fly_toml_is_recorded_and_changes_nothing() {
    set_secret_env();
    let repo = Repo::new();
    let place = Place::new();
    let first = repo.commit(&[("fly.toml", &example())], "a cluster");
    let mut w = place.watcher(place.options(&repo));

    let r = w.step(false);
    assert!(
        matches!(&r, StepReport::Reconciled { result: ResultKind::Applied, revision, .. } if *revision == first.to_string()),
        "{r:?}"
    );
    assert!(place.live_text().contains("machine[iad:2]"));

    // A commit adding an attachment is applied and recorded with its revision.
    let attach = repo.commit(&[("fly.toml", &with_attachment("myapp"))], "attach myapp");
    let r = w.step(false);
    assert!(
        matches!(
            &r,
            StepReport::Reconciled {
                result: ResultKind::Applied,
                ..
            }
        ),
        "{r:?}"
    );
    let st = w.state();
    let rec = st.current().unwrap();
    assert_eq!(rec.revision, attach.to_string());
    assert_eq!(rec.result, ResultKind::Applied);
    assert_eq!(rec.message, "attach myapp");
    assert_eq!(
        rec.plans[0].summary,
        "Plan: 1 to add, 0 to change, 0 to destroy."
    );
    assert_eq!(
        st.applied_revision.as_deref(),
        Some(attach.to_string().as_str())
    );
    assert!(place.live_text().contains("attachment.myapp"));

    // A broken fly.toml: failed, located, nothing changed.
    let before = std::fs::read(place.live()).unwrap();
    let bad = repo.commit(&[("fly.toml", &broken())], "typo");
    let r = w.step(false);
    assert!(
        matches!(
            &r,
            StepReport::Reconciled {
                result: ResultKind::Failed,
                ..
            }
        ),
        "{r:?}"
    );
    let st = w.state();
    let rec = st.current().unwrap();
    assert_eq!(rec.revision, bad.to_string());
    assert_eq!(rec.result, ResultKind::Failed);
    let reason = rec.reason.as_deref().unwrap();
    assert!(
        reason.starts_with("fly.toml:16:3: unknown key `instancs` in `[postgres]`"),
        "{reason}"
    );
    assert!(rec.next_retry.is_some());
    assert_eq!(before, std::fs::read(place.live()).unwrap());
    assert_eq!(
        st.applied_revision.as_deref(),
        Some(attach.to_string().as_str())
    );

    // A later good commit supersedes it at once and is applied.
    let fixed = repo.commit(
        &[(
            "fly.toml",
            &with_attachment("myapp").replace("instances = 3", "instances = 4"),
        )],
        "four nodes",
    );
    let r = w.step(false);
    assert!(
        matches!(&r, StepReport::Reconciled { result: ResultKind::Applied, revision, .. } if *revision == fixed.to_string()),
        "{r:?}"
    );
    assert!(place.live_text().contains("machine[iad:3]"));

    // The record survives a restart and holds no secret value.
    drop(w);
    let path = flyplan::reconcile::record_path(&place.options(&repo).dir());
    let saved = std::fs::read_to_string(path).unwrap();
    assert!(!saved.contains(SECRET));
    let revs: Vec<String> = place
        .watcher(place.options(&repo))
        .state()
        .commits
        .iter()
        .map(|c| c.revision.clone())
        .collect();
    assert_eq!(
        revs,
        [fixed, bad, attach, first].map(|o| o.to_string()).to_vec()
    );
}

#[test]
fn once_exits_1_on_a_broken_fly_toml_and_status_shows_the_located_error() {
    let repo = Repo::new();
    let place = Place::new();
    repo.commit(&[("fly.toml", &example())], "a cluster");
    let url = repo.url();
    let o = flyplan(&place, &["watch", "--repo", &url, "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("applied: flyplan-example: Plan: 14 to add"),
        "{}",
        text(&o)
    );

    let before = std::fs::read(place.live()).unwrap();
    repo.commit(&[("fly.toml", &broken())], "typo");
    let o = flyplan(&place, &["watch", "--repo", &url, "--once"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("fly.toml:16:3: unknown key"),
        "{}",
        text(&o)
    );
    assert_eq!(before, std::fs::read(place.live()).unwrap());

    let o = flyplan(&place, &["watch", "--repo", &url, "--status"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("result failed"), "{out}");
    assert!(
        out.contains("fly.toml:16:3: unknown key `instancs`"),
        "{out}"
    );
    assert!(out.contains("next retry:"), "{out}");

    let o = flyplan(&place, &["watch", "--repo", &url, "--status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["commits"][0]["result"], "failed");
    assert_eq!(v["commits"][1]["result"], "applied");
    assert!(v["applied_revision"].is_string());
    assert!(!text(&o).contains(SECRET));
}

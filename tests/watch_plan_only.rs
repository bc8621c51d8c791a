//! `--plan-only` and the suspend switch: the loop fetches, plans and
//! records, and never touches the live state.

mod watch_common;

use flyplan::reconcile::{self, ResultKind, StepReport};
use watch_common::*;

#[test]
fn plan_only_records_the_plan_and_never_changes_the_live_state() {
    set_secret_env();
    let repo = Repo::new();
    let place = Place::new();
    repo.commit(&[("fly.toml", &example())], "a cluster");
    let mut opts = place.options(&repo);
    opts.plan_only = true;
    let mut w = place.watcher(opts);

    let r = w.step(false);
    assert!(
        matches!(
            &r,
            StepReport::Reconciled {
                result: ResultKind::Planned,
                ..
            }
        ),
        "{r:?}"
    );
    assert!(!place.live().exists());
    repo.commit(&[("fly.toml", &with_attachment("myapp"))], "attach");
    assert!(!w.step(false).failed());
    assert!(!w.step(true).failed());
    assert!(!place.live().exists());

    let st = w.state();
    let rec = st.current().unwrap();
    assert_eq!(rec.result, ResultKind::Planned);
    assert_eq!(
        rec.plans[0].summary,
        "Plan: 15 to add, 0 to change, 0 to destroy."
    );
    assert!(rec.reason.as_deref().unwrap().contains("--plan-only"));
    assert_eq!(st.applied_revision, None);
    assert_eq!(st.counters.planned, 3);
}

#[test]
fn suspend_prevents_applies_until_resume() {
    let repo = Repo::new();
    let place = Place::new();
    repo.commit(&[("fly.toml", &example())], "a cluster");
    let url = repo.url();
    let o = flyplan(&place, &["watch", "--repo", &url, "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let applied = place.live_text();

    let o = flyplan(&place, &["watch", "--repo", &url, "--suspend"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(reconcile::is_suspended(&place.options(&repo).dir()));

    repo.commit(&[("fly.toml", &with_attachment("myapp"))], "attach");
    let o = flyplan(&place, &["watch", "--repo", &url, "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("planned"), "{}", text(&o));
    assert_eq!(applied, place.live_text());
    let o = flyplan(&place, &["watch", "--repo", &url, "--status"]);
    assert!(text(&o).contains("Suspended: yes"), "{}", text(&o));
    assert!(
        text(&o).contains("suspended: planned, not applied"),
        "{}",
        text(&o)
    );

    let o = flyplan(&place, &["watch", "--repo", &url, "--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = flyplan(&place, &["watch", "--repo", &url, "--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("applied"), "{}", text(&o));
    assert!(place.live_text().contains("attachment.myapp"));
}

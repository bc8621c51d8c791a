//! Drift made by hand in the live state is found by the loop's interval
//! re-plan, with no new commit, healed and counted.

mod watch_common;

use std::time::Duration;

use flyplan::reconcile::{self, ResultKind, StepReport};
use watch_common::*;

#[test]
fn a_stopped_machine_is_healed_on_the_next_interval_and_counted_as_drift() {
    set_secret_env();
    let repo = Repo::new();
    let place = Place::new();
    repo.commit(&[("fly.toml", &example())], "a cluster");
    let mut w = place.watcher(place.options(&repo));
    assert!(!w.step(false).failed());

    edit_live(&place, |rs| {
        for r in rs.iter_mut() {
            if r["address"] == "machine[iad:1]" {
                r["attrs"]["state"] = "stopped".into();
            }
        }
    });
    let r = w.step(false);
    assert!(
        matches!(
            &r,
            StepReport::Reconciled {
                result: ResultKind::Applied,
                drift: true,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(
        live_resource(&place, "machine[iad:1]").unwrap()["attrs"]["state"],
        "running"
    );
    let st = w.state();
    assert_eq!(st.counters.drift_detected, 1);
    assert_eq!(st.current().unwrap().drift_found, 1);
    assert_eq!(st.current().unwrap().result, ResultKind::Applied);

    // Nothing changed since: the next re-plan finds no drift.
    let r = w.step(false);
    assert!(
        matches!(&r, StepReport::Reconciled { drift: false, .. }),
        "{r:?}"
    );
    assert_eq!(w.state().counters.drift_detected, 1);
}

#[test]
fn the_running_loop_heals_a_deleted_machine_on_its_interval_without_a_new_commit() {
    set_secret_env();
    let repo = Repo::new();
    let place = Place::new();
    repo.commit(&[("fly.toml", &example())], "a cluster");
    let mut opts = place.options(&repo);
    opts.interval = Duration::from_millis(200);
    let w = place.watcher(opts);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(reconcile::run(
        w,
        None,
        async {
            let _ = stopped.await;
        },
        |_| {},
    ));

    // Wait until the first apply is finished and recorded.
    assert!(
        wait_until(Duration::from_secs(10), || status_json(&place, &repo)
            .is_some_and(|s| s["applied_revision"].is_string())),
        "first apply"
    );
    edit_live(&place, |rs| rs.retain(|r| r["address"] != "machine[iad:2]"));
    assert!(live_resource(&place, "machine[iad:2]").is_none());
    assert!(
        wait_until(Duration::from_secs(10), || live_resource(
            &place,
            "machine[iad:2]"
        )
        .is_some()),
        "the deleted machine was not recreated"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        status_json(&place, &repo)
            .is_some_and(|s| s["counters"]["drift_detected"].as_u64() >= Some(1))
    }));

    stop.send(()).unwrap();
    rt.block_on(task).unwrap().unwrap();
}

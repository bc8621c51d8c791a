//! A failing commit is retried with exponential backoff, not in a hot loop,
//! and a newer commit supersedes it at once.

mod watch_common;

use std::time::Duration;

use flyplan::reconcile::{error_policy, Backoff, Decision, ResultKind, StepReport};
use watch_common::*;

#[test]
fn a_failing_commit_waits_for_its_backoff_and_a_newer_commit_supersedes_it() {
    set_secret_env();
    let repo = Repo::new();
    let place = Place::new();
    repo.commit(&[("fly.toml", &broken())], "typo");
    let mut w = place.watcher(place.options(&repo)); // base 300 ms

    let r = w.step(false);
    assert!(r.failed(), "{r:?}");
    assert_eq!(w.state().current().unwrap().failures, 1);

    // Right away, and on every poll before the retry time: no retry.
    for _ in 0..5 {
        let r = w.step(false);
        assert!(matches!(r, StepReport::Waiting { .. }), "{r:?}");
    }
    assert_eq!(w.state().counters.failed, 1);
    assert!(w.next_wake() <= Duration::from_millis(300));

    std::thread::sleep(Duration::from_millis(350));
    let r = w.step(false);
    assert!(r.failed(), "{r:?}");
    let st = w.state();
    let rec = st.current().unwrap();
    assert_eq!((rec.attempts, rec.failures), (2, 2));
    assert_eq!(st.counters.failed, 2);
    // The second wait is twice the first.
    assert!(
        w.next_wake() > Duration::from_millis(400),
        "{:?}",
        w.next_wake()
    );
    assert!(matches!(w.step(false), StepReport::Waiting { .. }));

    // A newer commit does not wait for the failed one's backoff.
    let good = repo.commit(&[("fly.toml", &example())], "fix the typo");
    let r = w.step(false);
    assert!(
        matches!(&r, StepReport::Reconciled { result: ResultKind::Applied, revision, .. } if *revision == good.to_string()),
        "{r:?}"
    );
    assert!(w.state().current().unwrap().next_retry.is_none());
    assert_eq!(w.next_wake(), Duration::from_secs(3600));
}

#[test]
fn error_policy_doubles_the_delay_per_failure_up_to_the_cap() {
    let backoff = Backoff {
        base: Duration::from_secs(5),
        max: Duration::from_secs(600),
    };
    let err = flyplan::reconcile::ReconcileError::Io {
        what: "x".into(),
        source: std::io::Error::other("y"),
    };
    let delays: Vec<u64> = (1..=9)
        .map(|n| match error_policy(&err, n, &backoff) {
            Decision::Requeue(d) => d.as_secs(),
        })
        .collect();
    assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
}

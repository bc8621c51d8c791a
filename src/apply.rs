//! Apply: carry out a plan's steps through a provider, in dependency order,
//! independent steps in parallel, stopping the dependants of a failed step.
//! Apply makes no decisions of its own; the plan already holds them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::model::Address;
use crate::plan::{Plan, Step};
use crate::provider::{Outcome, Provider, ProviderError, Restore, StepContext};
use crate::secrets::SecretValues;

/// Errors of the apply layer.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("stale plan: live state changed since the plan was made (plan {planned}, now {now}); run plan again")]
    Stale { planned: String, now: String },
    #[error("refusing to apply: {count} blocked step(s): {first}")]
    Blocked { count: usize, first: String },
    #[error("the plan is for app {plan_app}, not {app}")]
    WrongApp { plan_app: String, app: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("{}", failed_message(.report))]
    StepsFailed { report: Box<ApplyReport> },
}

fn failed_message(r: &ApplyReport) -> String {
    let mut s = String::from("apply did not finish:");
    for (address, err) in &r.failed {
        s.push_str(&format!("\n  {address}: {err}"));
    }
    if !r.skipped.is_empty() {
        s.push_str(&format!(
            "\n  {} dependent step(s) not run: {}",
            r.skipped.len(),
            r.skipped
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    s.push_str("\n  run apply again to finish: completed steps are not repeated");
    s
}

/// What an apply did, step by step.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub done: Vec<(Address, Outcome, Duration)>,
    pub failed: Vec<(Address, String)>,
    pub skipped: Vec<Address>,
    pub elapsed: Duration,
}

/// Progress events, for a terminal bar or plain lines.
pub trait Progress: Sync {
    fn started(&self, step: &Step);
    fn finished(&self, step: &Step, result: &Result<Outcome, ProviderError>, took: Duration);
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {
    fn started(&self, _: &Step) {}
    fn finished(&self, _: &Step, _: &Result<Outcome, ProviderError>, _: Duration) {}
}

pub struct ApplyOptions {
    /// Steps run at the same time at most.
    pub parallelism: usize,
    /// `--allow-destroy` given at apply time (unblocks destroys of a saved plan).
    pub allow_destroy: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 4,
            allow_destroy: false,
        }
    }
}

/// Refuse a plan that still has blocked steps.
///
/// # Errors
/// [`ApplyError::Blocked`] naming the first blocked step.
pub fn check_blocked(plan: &Plan, allow_destroy: bool) -> Result<(), ApplyError> {
    let blocked: Vec<&Step> = plan
        .blocked_steps()
        .filter(|s| {
            let b = s.blocked.as_ref().expect("blocked step");
            !(b.needs_allow_destroy && allow_destroy)
        })
        .collect();
    match blocked.first() {
        None => Ok(()),
        Some(s) => Err(ApplyError::Blocked {
            count: blocked.len(),
            first: format!(
                "{}: {}",
                s.address,
                s.blocked.as_ref().expect("blocked").reason
            ),
        }),
    }
}

/// Carry out `plan`. The caller holds the app's lock and has checked the
/// plan against the live state.
///
/// # Errors
/// A blocked step (nothing is done), or failed steps: the report says which
/// steps finished, which failed and which dependants were not run.
///
/// # Guarantees
/// A step runs only after every step it depends on succeeded. Re-running
/// apply after a failure re-plans from live state and finishes the job.
pub fn execute(
    provider: &dyn Provider,
    plan: &Plan,
    secrets: &SecretValues,
    opts: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, ApplyError> {
    check_blocked(plan, opts.allow_destroy || plan.allow_destroy)?;
    let started = Instant::now();
    let ctx = StepContext {
        app: &plan.app,
        secrets,
        restore: Restore::of(plan),
        operator_password: crate::provider::operator_password_of(plan),
        steps: &plan.steps,
    };
    let mut report = ApplyReport::default();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut dead: BTreeSet<usize> = BTreeSet::new();
    let mut running: BTreeSet<usize> = BTreeSet::new();
    let by_id: BTreeMap<usize, &Step> = plan.steps.iter().map(|s| (s.id, s)).collect();
    let parallelism = opts.parallelism.max(1);

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<Outcome, ProviderError>, Duration)>();
        loop {
            // Steps whose dependencies failed will never run.
            for s in &plan.steps {
                if !dead.contains(&s.id)
                    && !done.contains(&s.id)
                    && !running.contains(&s.id)
                    && s.depends_on.iter().any(|d| dead.contains(d))
                {
                    dead.insert(s.id);
                    report.skipped.push(s.address.clone());
                }
            }
            let ready: Vec<&Step> = plan
                .steps
                .iter()
                .filter(|s| {
                    !done.contains(&s.id)
                        && !dead.contains(&s.id)
                        && !running.contains(&s.id)
                        && s.depends_on.iter().all(|d| done.contains(d))
                })
                .collect();
            for s in ready {
                if running.len() >= parallelism {
                    break;
                }
                running.insert(s.id);
                progress.started(s);
                let tx = tx.clone();
                let ctx = &ctx;
                scope.spawn(move || {
                    let t = Instant::now();
                    let span = tracing::info_span!("step", address = %s.address, action = s.action.as_str());
                    let _e = span.enter();
                    let result = provider.perform(s, ctx);
                    let _ = tx.send((s.id, result, t.elapsed()));
                });
            }
            if running.is_empty() {
                break;
            }
            let Ok((id, result, took)) = rx.recv() else {
                break;
            };
            running.remove(&id);
            let step = by_id[&id];
            progress.finished(step, &result, took);
            match result {
                Ok(outcome) => {
                    done.insert(id);
                    report.done.push((step.address.clone(), outcome, took));
                }
                Err(e) => {
                    dead.insert(id);
                    report.failed.push((step.address.clone(), e.to_string()));
                }
            }
        }
    });
    report.elapsed = started.elapsed();
    if report.failed.is_empty() {
        Ok(report)
    } else {
        Err(ApplyError::StepsFailed {
            report: Box::new(report),
        })
    }
}

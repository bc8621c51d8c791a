//! The one path from a desired state to the live state: lock → observe →
//! plan → show → apply. `plan`, `apply` (fresh or from a saved plan),
//! `destroy`, `snapshots restore` and the reconcile loop all run through
//! [`run`]; they differ only in the [`Mode`] they ask for and in the
//! [`Operator`] that shows the plan and approves it.

use crate::apply::{self, ApplyError, ApplyOptions, ApplyReport, Progress, Quiet};
use crate::desired::Desired;
use crate::live::Live;
use crate::model::Kind;
use crate::plan::{self, Action, Plan, PlanOptions};
use crate::planfile::{PlanFile, PlanFileError};
use crate::provider::{Provider, ProviderError};
use crate::secrets::{ProcessEnv, SecretValues};

/// What to do with the app.
pub enum Mode {
    /// Observe (unlocked) and plan; never change anything.
    Plan { desired: Desired },
    /// Lock, observe, plan and apply. With `restore_from`, the new cluster
    /// starts from that snapshot (only a cluster that does not exist yet).
    Apply {
        desired: Desired,
        restore_from: Option<String>,
    },
    /// Apply a saved plan, only while the live state still has the
    /// fingerprint the plan was made from.
    ApplySaved { planfile: Box<PlanFile> },
    /// Delete everything of `app`.
    Destroy { app: String },
}

/// One run of the pipeline.
pub struct Request {
    pub mode: Mode,
    /// `--allow-destroy`: let the plan delete volumes, databases or the app
    /// (always on for [`Mode::Destroy`]).
    pub allow_destroy: bool,
    /// Apply steps run at the same time at most.
    pub parallelism: usize,
}

/// How the run ended.
#[derive(Debug)]
pub enum End {
    /// [`Mode::Plan`]: planned, nothing applied.
    Planned,
    /// The live state already equals the desired state.
    NoChanges,
    /// The operator did not approve the plan.
    Cancelled,
    /// The plan was applied.
    Applied(ApplyReport),
}

/// The plan a run made (or applied) and how the run ended.
#[derive(Debug)]
pub struct Run {
    pub plan: Plan,
    pub end: End,
}

/// Errors of the pipeline. Each wraps the error of the layer it came from
/// and shows it unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    PlanFile(#[from] PlanFileError),
    /// The operator could not be asked (a terminal error).
    #[error(transparent)]
    Operator(#[from] std::io::Error),
    #[error(
        "app {app} already exists: a snapshot restores into a new cluster; set another `app` \
         in fly.toml (or destroy this one first)"
    )]
    RestoreTargetExists { app: String },
    #[error("no snapshot {id} (see `flyplan snapshots list --all`)")]
    NoSuchSnapshot { id: String },
    #[error("the desired state has no app resource")]
    NoAppResource,
}

/// Who watches a run: shows the plan, approves it and follows the apply.
/// The defaults suit an unattended run (the reconcile loop): nothing shown,
/// everything approved, no progress.
pub trait Operator: Progress {
    /// The plan is ready (a saved plan: found still valid).
    fn planned(&mut self, _plan: &Plan) {}

    /// The plan has changes and is about to be applied; `false` cancels.
    ///
    /// # Errors
    /// When the question cannot be asked or answered.
    fn approve(&mut self, _plan: &Plan) -> std::io::Result<bool> {
        Ok(true)
    }

    /// The apply starts now.
    fn applying(&mut self, _plan: &Plan) {}
}

/// Quiet is the unattended operator: it shows nothing and approves
/// everything.
impl Operator for Quiet {}

/// Run the pipeline for one app.
///
/// # Errors
/// A held lock, an unreadable live state, a stale saved plan, a blocked
/// step, a snapshot that cannot seed the cluster, failed steps.
///
/// # Guarantees
/// Only [`Mode::Plan`] runs without the app's apply lock; every other mode
/// holds it from before observing until the apply finished. Acting on the
/// live state observed now, running it again after a failure re-plans and
/// finishes the job.
pub fn run<O: Operator>(
    provider: &dyn Provider,
    request: Request,
    operator: &mut O,
) -> Result<Run, PipelineError> {
    let Request {
        mode,
        allow_destroy,
        parallelism,
    } = request;
    let app = match &mode {
        Mode::Plan { desired } | Mode::Apply { desired, .. } => desired.app.clone(),
        Mode::ApplySaved { planfile } => planfile.plan.app.clone(),
        Mode::Destroy { app } => app.clone(),
    };
    let _lock = match mode {
        Mode::Plan { .. } => None,
        _ => Some(provider.lock(&app)?),
    };
    let live = provider.observe(&app)?;
    let (plan, secrets, allow_destroy) = match mode {
        Mode::Plan { desired } => {
            let plan = make_plan(provider, &desired, &live, allow_destroy);
            check_stores(provider, &desired, &plan)?;
            operator.planned(&plan);
            return Ok(Run {
                plan,
                end: End::Planned,
            });
        }
        Mode::Apply {
            mut desired,
            restore_from,
        } => {
            if let Some(id) = &restore_from {
                seed_from(&mut desired, &live, provider, id)?;
            }
            let plan = make_plan(provider, &desired, &live, allow_destroy);
            check_stores(provider, &desired, &plan)?;
            (plan, desired.secret_values, allow_destroy)
        }
        Mode::Destroy { app } => {
            let plan = make_plan(provider, &Desired::nothing(&app), &live, true);
            (plan, SecretValues::default(), true)
        }
        Mode::ApplySaved { planfile } => {
            // A saved plan was reviewed when it was made: refuse it before
            // showing it again when the world moved on or it is blocked.
            let now = live.fingerprint();
            if now != planfile.plan.live_fingerprint {
                return Err(ApplyError::Stale {
                    planned: short(&planfile.plan.live_fingerprint),
                    now: short(&now),
                }
                .into());
            }
            let allow_destroy = allow_destroy || planfile.plan.allow_destroy;
            apply::check_blocked(&planfile.plan, allow_destroy)?;
            let secrets = planfile.secret_values(&ProcessEnv)?;
            let plan = planfile.plan;
            operator.planned(&plan);
            if !plan.has_changes() {
                return Ok(Run {
                    plan,
                    end: End::NoChanges,
                });
            }
            return apply_approved(
                provider,
                plan,
                &secrets,
                allow_destroy,
                parallelism,
                operator,
            );
        }
    };
    operator.planned(&plan);
    if !plan.has_changes() {
        return Ok(Run {
            plan,
            end: End::NoChanges,
        });
    }
    apply::check_blocked(&plan, allow_destroy)?;
    apply_approved(
        provider,
        plan,
        &secrets,
        allow_destroy,
        parallelism,
        operator,
    )
}

/// Observe an app without a lock, as [`Mode::Plan`] does, for commands that
/// read the live state and change nothing (`import`).
///
/// # Errors
/// When the live state cannot be read.
pub fn observe(provider: &dyn Provider, app: &str) -> Result<Live, PipelineError> {
    Ok(provider.observe(app)?)
}

/// A backup policy the plan sets must name a store that answers: checked
/// before the plan is shown, so an unreachable store changes nothing.
fn check_stores(
    provider: &dyn Provider,
    desired: &Desired,
    plan: &Plan,
) -> Result<(), PipelineError> {
    for step in &plan.steps {
        if !matches!(step.action, Action::Create | Action::Update) {
            continue;
        }
        let Some(crate::model::Spec::BackupPolicy(p)) = step.after.as_ref().map(|r| &r.spec) else {
            continue;
        };
        if let Some(url) = desired.secret_values.get(&p.secret) {
            provider.check_backup_store(&p.secret, url)?;
        }
    }
    Ok(())
}

fn make_plan(provider: &dyn Provider, desired: &Desired, live: &Live, allow_destroy: bool) -> Plan {
    let opts = PlanOptions {
        allow_destroy,
        notes: provider.plan_notes(),
    };
    plan::plan(desired, live, opts)
}

/// Ask the operator, then apply.
fn apply_approved<O: Operator>(
    provider: &dyn Provider,
    plan: Plan,
    secrets: &SecretValues,
    allow_destroy: bool,
    parallelism: usize,
    operator: &mut O,
) -> Result<Run, PipelineError> {
    if !operator.approve(&plan)? {
        return Ok(Run {
            plan,
            end: End::Cancelled,
        });
    }
    operator.applying(&plan);
    let opts = ApplyOptions {
        parallelism,
        allow_destroy,
    };
    let report = apply::execute(provider, &plan, secrets, &opts, &*operator)?;
    Ok(Run {
        plan,
        end: End::Applied(report),
    })
}

/// The first characters of a fingerprint, for messages.
fn short(fp: &str) -> String {
    fp.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Make the desired cluster start from snapshot `id`: only a cluster that
/// does not exist yet can (a restore never overwrites live data).
///
/// # Errors
/// When the app already exists or the provider has no such snapshot.
fn seed_from(
    desired: &mut Desired,
    live: &Live,
    provider: &dyn Provider,
    id: &str,
) -> Result<(), PipelineError> {
    if live.of_kind(Kind::App).next().is_some() {
        return Err(PipelineError::RestoreTargetExists {
            app: desired.app.clone(),
        });
    }
    if let Some(store) = provider.snapshots() {
        // Fail before planning when the id is unknown; verification
        // happens when the app is created.
        if !store.list(None)?.iter().any(|m| m.id == id) {
            return Err(PipelineError::NoSuchSnapshot { id: id.to_string() });
        }
    }
    if !desired.restore_from(id) {
        return Err(PipelineError::NoAppResource);
    }
    Ok(())
}

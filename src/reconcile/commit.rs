//! Reconcile one commit: load every fly.toml of it, then run each app
//! through the pipeline, and say what was done.

use std::path::PathBuf;
use std::time::Duration;

use crate::apply::{ApplyOptions, ApplyReport, Quiet};
use crate::config::{self, ConfigError};
use crate::desired::{Desired, DesiredError};
use crate::pipeline::{self, End};
use crate::plan::Plan;
use crate::provider::Provider;
use crate::render;
use crate::secrets::ProcessEnv;

use super::{AppPlan, ReconcileError, ResultKind};

/// How a reconcile may touch the live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// `--plan-only`: plan and record, never apply.
    PlanOnly,
    /// The suspend switch is on: plan and record, do not apply.
    Suspended,
}

/// What [`reconcile`] needs besides the commit.
pub struct Context<'a> {
    pub provider: &'a dyn Provider,
    pub mode: Mode,
    pub apply: ApplyOptions,
}

/// One commit, checked out: the fly.toml files to reconcile.
#[derive(Debug, Clone)]
pub struct Target {
    pub revision: String,
    pub files: Vec<TargetFile>,
}

/// A fly.toml of the commit: its path in the repository and on disk.
#[derive(Debug, Clone)]
pub struct TargetFile {
    pub file: String,
    pub path: PathBuf,
}

/// What a successful reconcile did.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    pub result: ResultKind,
    pub plans: Vec<AppPlan>,
    /// Some plan had changes (applied, or only planned).
    pub changed: bool,
    /// Time spent applying, when something was applied.
    pub apply_time: Option<Duration>,
}

/// Reconcile one commit: validate every fly.toml first (one broken file
/// changes nothing), then per app take the lock, observe, plan and apply.
///
/// # Errors
/// An invalid fly.toml (located diagnostics), an unreadable secret, a held
/// lock, a provider or apply failure.
///
/// # Guarantees
/// Acts on the live state observed now, so running it again after a failure
/// or an interruption re-plans and finishes the job.
pub fn reconcile(ctx: &Context<'_>, target: &Target) -> Result<Reconciliation, ReconcileError> {
    let mut apps = Vec::new();
    for f in &target.files {
        let config = config::load(&f.path).map_err(|error| ReconcileError::Config {
            error: relocate_config(error, &f.file),
        })?;
        for note in &config.notes {
            tracing::info!("{}:{}:{}: {}", f.file, note.line, note.column, note.message);
        }
        let desired = Desired::from_config(&config, &ProcessEnv).map_err(|error| {
            ReconcileError::Desired {
                error: relocate_desired(error, &f.file),
            }
        })?;
        apps.push((f, desired));
    }
    let mut outcome = Reconciliation {
        result: ResultKind::NoChanges,
        plans: Vec::new(),
        changed: false,
        apply_time: None,
    };
    for (f, desired) in apps {
        let (plan, report) = plan_and_apply(ctx.provider, desired, ctx.mode, &ctx.apply)?;
        let snapshots = if ctx.mode == Mode::Apply {
            run_backup_schedule(ctx.provider, &plan.app);
            run_snapshot_schedule(ctx.provider, &plan.app)
        } else {
            None
        };
        outcome.changed |= plan.has_changes();
        if let Some(r) = report {
            *outcome.apply_time.get_or_insert(Duration::ZERO) += r.elapsed;
            outcome.result = ResultKind::Applied;
        }
        outcome.plans.push(AppPlan {
            file: f.file.clone(),
            app: plan.app.clone(),
            summary: render::summary_line(&plan),
            add: plan.summary.add,
            change: plan.summary.change,
            destroy: plan.summary.destroy,
            snapshots,
        });
    }
    if ctx.mode != Mode::Apply && outcome.changed {
        outcome.result = ResultKind::Planned;
    }
    Ok(outcome)
}

/// After an app was applied (or found equal to its fly.toml), take the
/// daily snapshots that are due and remove expired ones, on a provider that
/// keeps snapshots itself; `None` on one that does not. A failure is
/// recorded and logged, not a failed reconcile: the next pass tries again,
/// because the snapshot is still due.
fn run_snapshot_schedule(provider: &dyn Provider, app: &str) -> Option<String> {
    let store = provider.snapshots()?;
    let result = crate::snapshot::clock::now()
        .map_err(|e| e.to_string())
        .and_then(|now| store.run(app, now).map_err(|e| e.to_string()));
    Some(match result {
        Ok(report) => {
            tracing::info!(app, "snapshots: {}", report.summary());
            report.summary()
        }
        Err(e) => {
            tracing::warn!(app, error = %e, "the snapshot schedule failed");
            format!("failed: {e}")
        }
    })
}

/// After an app was applied, take the base backup `full_backup_frequency`
/// says is due, on a provider that runs barman-cloud itself. A failure is
/// logged, not a failed reconcile: the next pass tries again.
fn run_backup_schedule(provider: &dyn Provider, app: &str) {
    let Some(backups) = provider.backups() else {
        return;
    };
    let result = crate::snapshot::clock::now()
        .map_err(|e| e.to_string())
        .and_then(|now| backups.run(app, now).map_err(|e| e.to_string()));
    match result {
        Ok(report) => tracing::info!(app, "backups: {}", report.summary()),
        Err(e) => tracing::warn!(app, error = %e, "the base backup schedule failed"),
    }
}

/// One app through [`pipeline::run`], unattended, as `flyplan apply
/// --auto-approve` runs it. Without [`Mode::Apply`] it plans only, unlocked.
///
/// # Errors
/// A held lock, an unreadable live state, a blocked step, failed steps.
pub fn plan_and_apply(
    provider: &dyn Provider,
    desired: Desired,
    mode: Mode,
    opts: &ApplyOptions,
) -> Result<(Plan, Option<ApplyReport>), ReconcileError> {
    let mode = if mode == Mode::Apply {
        pipeline::Mode::Apply {
            desired,
            restore_from: None,
        }
    } else {
        pipeline::Mode::Plan { desired }
    };
    let request = pipeline::Request {
        mode,
        allow_destroy: opts.allow_destroy,
        parallelism: opts.parallelism,
    };
    let run = pipeline::run(provider, request, &mut Quiet)?;
    let report = match run.end {
        End::Applied(report) => Some(report),
        End::Planned | End::NoChanges | End::Cancelled => None,
    };
    Ok((run.plan, report))
}

/// Show the path inside the repository, not the checkout's, in diagnostics.
fn relocate_config(error: ConfigError, file: &str) -> ConfigError {
    match error {
        ConfigError::Invalid { mut diagnostics } => {
            for d in &mut diagnostics {
                d.path = PathBuf::from(file);
            }
            ConfigError::Invalid { diagnostics }
        }
        ConfigError::Io { source, .. } => ConfigError::Io {
            path: PathBuf::from(file),
            source,
        },
    }
}

fn relocate_desired(error: DesiredError, file: &str) -> DesiredError {
    match error {
        DesiredError::Secret { mut diagnostic } => {
            diagnostic.path = PathBuf::from(file);
            DesiredError::Secret { diagnostic }
        }
    }
}

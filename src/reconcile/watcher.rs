//! One watch: a mirror, a provider and a record. A turn fetches the branch,
//! decides whether its head is due, reconciles it and records the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::apply::ApplyOptions;
use crate::model::Kind;
use crate::provider::{LockGuard, Provider, ProviderError};

use super::dir::{is_suspended, parse_time, record_path};
use super::git::{self, Mirror};
use super::{
    error_policy, reconcile, record, CommitRecord, Context, Decision, Mode, ReconcileError,
    Reconciliation, ResultKind, WatchOptions, WatchState,
};

/// What one turn of the loop did.
#[derive(Debug, Clone, PartialEq)]
pub enum StepReport {
    /// The commit was reconciled.
    Reconciled {
        revision: String,
        result: ResultKind,
        /// A re-plan of an applied commit found the live state changed.
        drift: bool,
        /// The plan summaries, or the error.
        detail: String,
        /// Nodes stuck in a transition after the step: `<app>: <address>
        /// stuck in <state> for <n>s ...`.
        stuck: Vec<String>,
    },
    /// The head is a failed commit whose retry time has not come.
    Waiting { revision: String, until: String },
    /// The repository could not be fetched; nothing was reconciled.
    FetchFailed { error: String },
}

impl StepReport {
    pub fn failed(&self) -> bool {
        matches!(
            self,
            StepReport::Reconciled {
                result: ResultKind::Failed,
                ..
            } | StepReport::FetchFailed { .. }
        )
    }
}

impl std::fmt::Display for StepReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepReport::Reconciled {
                revision,
                result,
                drift,
                detail,
                ..
            } => {
                write!(f, "{} {}", record::short(revision), result.as_str())?;
                if *drift {
                    write!(f, " (drift)")?;
                }
                if !detail.is_empty() {
                    write!(f, ": {detail}")?;
                }
                Ok(())
            }
            StepReport::Waiting { revision, until } => write!(
                f,
                "{} failed; next retry at {until}",
                record::short(revision)
            ),
            StepReport::FetchFailed { error } => write!(f, "fetch failed: {error}"),
        }
    }
}

/// One watch: a mirror, a provider, a record. Only one runs per repository,
/// branch and path (a lock file), and it reconciles one thing at a time.
pub struct Watcher {
    pub(super) opts: WatchOptions,
    pub(super) dir: PathBuf,
    pub(super) mirror: Mirror,
    pub(super) provider: Box<dyn Provider>,
    pub(super) state: Arc<Mutex<WatchState>>,
    pub(super) fetch_failures: u32,
    /// The apps of the last commit reconciled without error, watched for
    /// stuck nodes also when a later reconcile fails.
    pub(super) apps: Vec<String>,
    pub(super) _lock: Box<dyn LockGuard>,
}

impl Watcher {
    /// Take the watch's lock, open (or create) its mirror and read its record.
    ///
    /// # Errors
    /// Another watch of the same repository, branch and path runs; the state
    /// directory or record cannot be read or written.
    pub fn open(opts: WatchOptions, provider: Box<dyn Provider>) -> Result<Self, ReconcileError> {
        let url = git::normalise_url(&opts.repo);
        let dir = opts.dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| ReconcileError::io(format!("create {}", dir.display()), e))?;
        let lock = crate::provider::lock::lock_file(&dir.join("watch.lock"), &url).map_err(
            |e| match e {
                ProviderError::Locked { holder, .. } => ReconcileError::Busy { holder },
                other => ReconcileError::Provider(other),
            },
        )?;
        let mirror = Mirror::open(&dir.join("repo.git"), &url)
            .map_err(|e| ReconcileError::git("open mirror", e))?;
        let mut st = WatchState::load(&record_path(&dir))
            .map_err(|e| ReconcileError::io("read status.json", e))?
            .unwrap_or_default();
        st.repo = url;
        st.branch = opts.branch.clone();
        st.path = opts.path.clone();
        st.listen = None;
        st.suspended = is_suspended(&dir);
        let w = Watcher {
            opts,
            dir,
            mirror,
            provider,
            state: Arc::new(Mutex::new(st)),
            fetch_failures: 0,
            apps: Vec::new(),
            _lock: lock,
        };
        w.save()?;
        Ok(w)
    }

    /// The watch directory (`<state_dir>/watch/<id>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of the record.
    pub fn state(&self) -> WatchState {
        self.lock_state().clone()
    }

    /// The record shared with the metrics endpoint.
    pub fn shared_state(&self) -> Arc<Mutex<WatchState>> {
        self.state.clone()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) -> Result<(), ReconcileError> {
        let st = self.lock_state();
        st.save(&record_path(&self.dir))
            .map_err(|e| ReconcileError::io("write status.json", e))
    }

    /// Record the address of the webhook server.
    pub fn set_listen(&self, addr: Option<SocketAddr>) -> Result<(), ReconcileError> {
        self.lock_state().listen = addr.map(|a| a.to_string());
        self.save()
    }

    /// One turn of the loop: fetch the branch; reconcile its head when it is
    /// new, when `force` is set, or when it is due (interval re-plan for
    /// drift, or the retry time of a failure has come).
    ///
    /// # Guarantees
    /// The record is written (atomically) before this returns.
    pub fn step(&mut self, force: bool) -> StepReport {
        let suspended = is_suspended(&self.dir);
        self.lock_state().suspended = suspended;
        let head = match self.mirror.fetch(&self.opts.branch) {
            Ok(oid) => {
                self.fetch_failures = 0;
                self.lock_state().fetch_error = None;
                oid
            }
            Err(e) => {
                self.fetch_failures += 1;
                let error = format!("{} {}: {}", self.opts.repo, self.opts.branch, e.message());
                self.lock_state().fetch_error = Some(error.clone());
                let _ = self.save();
                return StepReport::FetchFailed { error };
            }
        };
        let revision = head.to_string();
        let now = OffsetDateTime::now_utc();
        let previous = self
            .lock_state()
            .current()
            .filter(|c| c.revision == revision)
            .cloned();
        if let Some(p) = &previous {
            let retry_at = p.next_retry.as_deref().and_then(parse_time);
            if !force && p.result == ResultKind::Failed && retry_at.is_some_and(|t| now < t) {
                return StepReport::Waiting {
                    revision,
                    until: p.next_retry.clone().unwrap_or_default(),
                };
            }
        }

        let started = Instant::now();
        let mode = if self.opts.plan_only {
            Mode::PlanOnly
        } else if suspended {
            Mode::Suspended
        } else {
            Mode::Apply
        };
        let result = self.checkout(head).and_then(|target| {
            let ctx = Context {
                provider: self.provider.as_ref(),
                mode,
                apply: ApplyOptions {
                    parallelism: self.opts.parallelism,
                    allow_destroy: self.opts.allow_destroy,
                },
            };
            let _span =
                tracing::info_span!("reconcile", revision = %record::short(&revision)).entered();
            reconcile(&ctx, &target)
        });
        let took = started.elapsed();
        if let Ok(outcome) = &result {
            self.apps = outcome.plans.iter().map(|p| p.app.clone()).collect();
        }
        let mut report = self.record(head, previous, mode, result, took);
        let _ = self.save();
        if let StepReport::Reconciled { stuck, .. } = &mut report {
            *stuck = self.stuck_nodes();
        }
        report
    }

    /// Nodes of the watched apps stuck in a transition for longer than
    /// [`crate::model::checks::STUCK_AFTER_SECONDS`], as the provider's
    /// status shows them.
    fn stuck_nodes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for app in &self.apps {
            let live = match self.provider.status(app) {
                Ok(live) => live,
                Err(e) => {
                    tracing::debug!(app, error = %e, "status for stuck nodes");
                    continue;
                }
            };
            for r in live.of_kind(Kind::Machine) {
                if let Some(note) = r.checks.stuck_note() {
                    tracing::info!(app, node = %r.address, "{note}");
                    out.push(format!("{app}: {} {note}", r.address));
                }
            }
        }
        out
    }

    fn record(
        &self,
        head: git2::Oid,
        previous: Option<CommitRecord>,
        mode: Mode,
        result: Result<Reconciliation, ReconcileError>,
        took: Duration,
    ) -> StepReport {
        let revision = head.to_string();
        let now = OffsetDateTime::now_utc();
        let now_s = now.format(&Rfc3339).unwrap_or_default();
        let mut st = self.lock_state();
        let already_applied = st.applied_revision.as_deref() == Some(revision.as_str());
        let mut rec = previous.unwrap_or_else(|| CommitRecord {
            revision: revision.clone(),
            message: self.mirror.message(head),
            result: ResultKind::Planned,
            reason: None,
            plans: Vec::new(),
            duration_ms: 0,
            time: now_s.clone(),
            first_seen: now_s.clone(),
            attempts: 0,
            failures: 0,
            next_retry: None,
            drift_found: 0,
        });
        let was_success = rec.attempts > 0 && rec.result.is_success();
        rec.attempts += 1;
        rec.time = now_s.clone();
        rec.duration_ms = took.as_millis().try_into().unwrap_or(u64::MAX);
        let report = match result {
            Ok(outcome) => {
                let drift = already_applied && outcome.changed;
                st.counters.count(outcome.result);
                if drift {
                    st.counters.drift_detected += 1;
                    rec.drift_found += 1;
                }
                if let Some(t) = outcome.apply_time {
                    st.counters.apply_seconds_sum += t.as_secs_f64();
                    st.counters.apply_count += 1;
                    st.counters.last_apply_seconds = Some(t.as_secs_f64());
                }
                // A re-check that finds nothing to do keeps "applied".
                let keep = was_success
                    && rec.result == ResultKind::Applied
                    && outcome.result == ResultKind::NoChanges;
                if !keep {
                    rec.result = outcome.result;
                }
                rec.reason = match mode {
                    Mode::Suspended if outcome.changed => {
                        Some("suspended: planned, not applied".to_string())
                    }
                    Mode::PlanOnly if outcome.changed => {
                        Some("--plan-only: planned, not applied".to_string())
                    }
                    _ => None,
                };
                rec.failures = 0;
                rec.next_retry = None;
                rec.plans = outcome.plans;
                if mode == Mode::Apply {
                    st.applied_revision = Some(revision.clone());
                }
                st.last_success = Some(now_s);
                st.last_success_unix = Some(now.unix_timestamp());
                let detail = rec
                    .plans
                    .iter()
                    .map(|p| format!("{}: {}", p.app, p.summary))
                    .collect::<Vec<_>>()
                    .join("; ");
                StepReport::Reconciled {
                    revision,
                    result: rec.result,
                    drift,
                    detail,
                    stuck: Vec::new(),
                }
            }
            Err(err) => {
                rec.failures += 1;
                let Decision::Requeue(wait) = error_policy(&err, rec.failures, &self.opts.backoff);
                let at = now + wait;
                rec.next_retry = Some(at.format(&Rfc3339).unwrap_or_default());
                rec.result = ResultKind::Failed;
                rec.reason = Some(err.to_string());
                rec.plans.clear();
                st.counters.count(ResultKind::Failed);
                StepReport::Reconciled {
                    revision,
                    result: ResultKind::Failed,
                    drift: false,
                    detail: err.to_string(),
                    stuck: Vec::new(),
                }
            }
        };
        st.push(rec);
        report
    }

    /// How long the loop sleeps before the next turn: the interval, or less
    /// when a failed commit's retry or a failed fetch's retry comes first.
    pub fn next_wake(&self) -> Duration {
        let mut wait = self.opts.interval;
        if self.fetch_failures > 0 {
            wait = wait.min(self.opts.backoff.delay(self.fetch_failures));
        }
        let st = self.lock_state();
        if let Some(at) = st
            .current()
            .filter(|c| c.result == ResultKind::Failed)
            .and_then(|c| c.next_retry.as_deref())
            .and_then(parse_time)
        {
            let left = at - OffsetDateTime::now_utc();
            wait = wait.min(Duration::try_from(left).unwrap_or(Duration::ZERO));
        }
        wait
    }
}

//! The reconcile loop behind `flyplan watch`: follow a branch of a git
//! repository and keep the live state equal to the fly.toml of its head,
//! commit by commit, healing drift on an interval.
//!
//! The shape follows kube-rs: [`reconcile`] acts on the current commit and
//! the current live state (never on the event that woke the loop), and
//! [`error_policy`] decides when a failure is tried again. [`Watcher::step`]
//! is one turn of the loop (fetch, decide, reconcile, record); [`run`] turns
//! it on an interval, on a webhook, until a shutdown signal.

pub mod backoff;
pub mod git;
pub mod http;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::apply::{ApplyError, ApplyOptions, ApplyReport};
use crate::config::{self, ConfigError, SecretSource};
use crate::desired::{Desired, DesiredError};
use crate::pipeline::{self, End, PipelineError};
use crate::plan::Plan;
use crate::provider::{LockGuard, Provider, ProviderError};
use crate::render;
use crate::secrets::ProcessEnv;

pub use backoff::Backoff;
use git::Mirror;
pub use status::{AppPlan, CommitRecord, ResultKind, WatchStatus};

/// Errors of the reconcile layer.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("git: {what}: {source}")]
    Git {
        what: String,
        #[source]
        source: git2::Error,
    },
    /// A fly.toml of the commit is invalid; located `path:line:col`
    /// diagnostics with the path inside the repository.
    #[error("{error}")]
    Config { error: ConfigError },
    #[error("{error}")]
    Desired { error: DesiredError },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("another flyplan watch of this repository, branch and path is running ({holder})")]
    Busy { holder: String },
    #[error(transparent)]
    Pipeline(PipelineError),
}

impl From<PipelineError> for ReconcileError {
    /// Keep provider and apply errors apart: [`error_policy`] tells a held
    /// lock from other failures.
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Provider(e) => ReconcileError::Provider(e),
            PipelineError::Apply(e) => ReconcileError::Apply(e),
            other => ReconcileError::Pipeline(other),
        }
    }
}

impl ReconcileError {
    fn git(what: impl Into<String>, source: git2::Error) -> Self {
        ReconcileError::Git {
            what: what.into(),
            source,
        }
    }
    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ReconcileError::Io {
            what: what.into(),
            source,
        }
    }
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (unless a new commit comes first).
    Requeue(Duration),
}

/// Decide when a failed reconcile is tried again: exponential backoff on the
/// number of failures in a row; a held apply lock is tried again after the
/// base delay, because the other apply will finish.
pub fn error_policy(err: &ReconcileError, failures: u32, backoff: &Backoff) -> Action {
    match err {
        ReconcileError::Provider(ProviderError::Locked { .. })
        | ReconcileError::Apply(ApplyError::Provider(ProviderError::Locked { .. })) => {
            Action::Requeue(backoff.base)
        }
        _ => Action::Requeue(backoff.delay(failures)),
    }
}

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
pub struct Outcome {
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
pub fn reconcile(ctx: &Context<'_>, target: &Target) -> Result<Outcome, ReconcileError> {
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
    let mut outcome = Outcome {
        result: ResultKind::NoChanges,
        plans: Vec::new(),
        changed: false,
        apply_time: None,
    };
    for (f, desired) in apps {
        let (plan, report) = plan_and_apply(ctx.provider, desired, ctx.mode, &ctx.apply)?;
        let snapshots = if ctx.mode == Mode::Apply {
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

/// Desired → lock → observe → plan → apply for one app, as `flyplan apply
/// --auto-approve` does. Without [`Mode::Apply`] it plans only, unlocked.
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
    let run = pipeline::run(provider, request, &mut pipeline::Unattended)?;
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

/// What `flyplan watch` follows, and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// A local path, `file://`, https or ssh URL.
    pub repo: String,
    pub branch: String,
    /// A fly.toml, or a directory whose every `fly.toml` is an app.
    pub path: String,
    /// How often to fetch and re-plan for drift.
    pub interval: Duration,
    pub plan_only: bool,
    pub backoff: Backoff,
    pub state_dir: PathBuf,
    /// Apply steps run at the same time at most.
    pub parallelism: usize,
    /// Let plans destroy volumes, databases or apps (`--allow-destroy`).
    pub allow_destroy: bool,
}

impl WatchOptions {
    pub fn new(repo: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        WatchOptions {
            repo: repo.into(),
            branch: "main".into(),
            path: "fly.toml".into(),
            interval: Duration::from_secs(60),
            plan_only: false,
            backoff: Backoff::default(),
            state_dir: state_dir.into(),
            parallelism: ApplyOptions::default().parallelism,
            allow_destroy: false,
        }
    }

    /// Where this watch keeps its mirror, checkout, status and switch.
    pub fn dir(&self) -> PathBuf {
        watch_dir(&self.state_dir, &self.repo, &self.branch, &self.path)
    }
}

/// `<state_dir>/watch/<id>`, the id a hash of the repository (normalised),
/// branch and path, so two watches never share a record.
pub fn watch_dir(state_dir: &Path, repo: &str, branch: &str, path: &str) -> PathBuf {
    let url = git::normalise_url(repo);
    let mut h = Sha256::new();
    for part in [url.as_str(), branch, path] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let id = hex::encode(&h.finalize()[..8]);
    state_dir.join("watch").join(id)
}

/// The status record of a watch directory.
pub fn status_path(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

fn suspend_path(dir: &Path) -> PathBuf {
    dir.join("suspended")
}

/// Whether the suspend switch is on.
pub fn is_suspended(dir: &Path) -> bool {
    suspend_path(dir).exists()
}

/// Turn the suspend switch on (a flag file the loop checks before each
/// reconcile) or off.
///
/// # Errors
/// The flag file cannot be written or removed.
pub fn set_suspended(dir: &Path, on: bool) -> std::io::Result<()> {
    let flag = suspend_path(dir);
    if on {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&flag, format!("suspended at {}\n", now_text()))
    } else {
        match std::fs::remove_file(&flag) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Read the record of a watch directory, with the switch as it is now.
///
/// # Errors
/// The record exists but cannot be read.
pub fn load_status(dir: &Path) -> std::io::Result<Option<WatchStatus>> {
    let mut st = WatchStatus::load(&status_path(dir))?;
    if let Some(st) = &mut st {
        st.suspended = is_suspended(dir);
    }
    Ok(st)
}

fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

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
            } => {
                write!(f, "{} {}", status::short(revision), result.as_str())?;
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
                status::short(revision)
            ),
            StepReport::FetchFailed { error } => write!(f, "fetch failed: {error}"),
        }
    }
}

/// One watch: a mirror, a provider, a record. Only one runs per repository,
/// branch and path (a lock file), and it reconciles one thing at a time.
pub struct Watcher {
    opts: WatchOptions,
    dir: PathBuf,
    mirror: Mirror,
    provider: Box<dyn Provider>,
    status: Arc<Mutex<WatchStatus>>,
    fetch_failures: u32,
    _lock: Box<dyn LockGuard>,
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
        let mut st = WatchStatus::load(&status_path(&dir))
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
            status: Arc::new(Mutex::new(st)),
            fetch_failures: 0,
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
    pub fn status(&self) -> WatchStatus {
        self.lock_status().clone()
    }

    /// The record shared with the metrics endpoint.
    pub fn shared_status(&self) -> Arc<Mutex<WatchStatus>> {
        self.status.clone()
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, WatchStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) -> Result<(), ReconcileError> {
        let st = self.lock_status();
        st.save(&status_path(&self.dir))
            .map_err(|e| ReconcileError::io("write status.json", e))
    }

    /// Record the address of the webhook server.
    pub fn set_listen(&self, addr: Option<SocketAddr>) -> Result<(), ReconcileError> {
        self.lock_status().listen = addr.map(|a| a.to_string());
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
        self.lock_status().suspended = suspended;
        let head = match self.mirror.fetch(&self.opts.branch) {
            Ok(oid) => {
                self.fetch_failures = 0;
                self.lock_status().fetch_error = None;
                oid
            }
            Err(e) => {
                self.fetch_failures += 1;
                let error = format!("{} {}: {}", self.opts.repo, self.opts.branch, e.message());
                self.lock_status().fetch_error = Some(error.clone());
                let _ = self.save();
                return StepReport::FetchFailed { error };
            }
        };
        let revision = head.to_string();
        let now = OffsetDateTime::now_utc();
        let previous = self
            .lock_status()
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
                tracing::info_span!("reconcile", revision = %status::short(&revision)).entered();
            reconcile(&ctx, &target)
        });
        let took = started.elapsed();
        let report = self.record(head, previous, mode, result, took);
        let _ = self.save();
        report
    }

    fn record(
        &self,
        head: git2::Oid,
        previous: Option<CommitRecord>,
        mode: Mode,
        result: Result<Outcome, ReconcileError>,
        took: Duration,
    ) -> StepReport {
        let revision = head.to_string();
        let now = OffsetDateTime::now_utc();
        let now_s = now.format(&Rfc3339).unwrap_or_default();
        let mut st = self.lock_status();
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
                }
            }
            Err(err) => {
                rec.failures += 1;
                let Action::Requeue(wait) = error_policy(&err, rec.failures, &self.opts.backoff);
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
        let st = self.lock_status();
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

    /// Write the commit's fly.toml files (and the `from_file` secret files
    /// they name, when the commit has them) to
    /// `<dir>/checkout/<rev>/<repo name>/<path>`, the directory layout of a
    /// clone, so relative paths and directory-named apps work. Checkouts of
    /// older revisions are removed.
    fn checkout(&self, head: git2::Oid) -> Result<Target, ReconcileError> {
        let revision = head.to_string();
        let files = self
            .mirror
            .fly_tomls(head, &self.opts.path)
            .map_err(|e| ReconcileError::git(format!("find {}", self.opts.path), e))?;
        let base = self.dir.join("checkout");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name() != revision.as_str() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = base
            .join(&revision)
            .join(git::repo_name(&git::normalise_url(&self.opts.repo)));
        let mut target = Target {
            revision: revision.clone(),
            files: Vec::new(),
        };
        for file in files {
            let path = root.join(&file);
            self.extract(head, &file, &path)?;
            // Secret files referenced relative to the fly.toml.
            if let Ok(config) = config::load(&path) {
                for source in config.secrets.values() {
                    if let SecretSource::File { path: rel } = source {
                        let Some(in_repo) = join_inside(&file, rel) else {
                            continue;
                        };
                        self.extract(head, &in_repo, &root.join(&in_repo))?;
                    }
                }
            }
            target.files.push(TargetFile { file, path });
        }
        Ok(target)
    }

    fn extract(&self, head: git2::Oid, file: &str, to: &Path) -> Result<(), ReconcileError> {
        let Some(bytes) = self
            .mirror
            .read(head, file)
            .map_err(|e| ReconcileError::git(format!("read {file}"), e))?
        else {
            return Ok(());
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ReconcileError::io(format!("create {}", parent.display()), e))?;
        }
        write_private(to, &bytes).map_err(|e| ReconcileError::io(format!("write {file}"), e))
    }
}

/// Write a file readable by its owner only (checkouts may hold secret files).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// `rel` taken relative to the directory of `file`, both inside the
/// repository; `None` when it leaves the repository or is absolute.
fn join_inside(file: &str, rel: &Path) -> Option<String> {
    let mut parts: Vec<String> = Path::new(file)
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Turn the loop until `shutdown` resolves: a step, then sleep until the
/// interval (or a retry) is due or a webhook wakes it. With `listen`, serve
/// `POST /hook` and `GET /metrics` there; `on_step` sees every step.
///
/// # Errors
/// The listen address cannot be bound.
///
/// # Guarantees
/// A step in flight when shutdown comes finishes (its apply completes and
/// its record is written) before this returns; the watch's lock and any
/// apply lock are released by then.
pub async fn run(
    watcher: Watcher,
    listen: Option<SocketAddr>,
    shutdown: impl Future<Output = ()> + Send,
    on_step: impl Fn(&StepReport) + Send + Sync + 'static,
) -> Result<(), ReconcileError> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let server = match listen {
        Some(addr) => {
            let (bound, handle) = http::serve(addr, watcher.shared_status(), wake.clone())
                .await
                .map_err(|e| ReconcileError::io(format!("listen on {addr}"), e))?;
            watcher.set_listen(Some(bound))?;
            tracing::info!("listening on http://{bound}");
            eprintln!("flyplan watch: listening on http://{bound} (POST /hook, GET /metrics)");
            Some(handle)
        }
        None => None,
    };
    tokio::pin!(shutdown);
    let mut stop = false;
    let mut watcher = Some(watcher);
    loop {
        let mut w = watcher.take().expect("watcher");
        let mut step = tokio::task::spawn_blocking(move || {
            let report = w.step(false);
            (w, report)
        });
        // Let a signal arrive during the step, but never abandon the step.
        let (w, report) = loop {
            tokio::select! {
                joined = &mut step => break joined.expect("reconcile step panicked"),
                () = &mut shutdown, if !stop => stop = true,
            }
        };
        on_step(&report);
        let wait = w.next_wake();
        watcher = Some(w);
        if stop {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = wake.notified() => {}
            () = &mut shutdown => break,
        }
    }
    if let Some(h) = server {
        h.abort();
    }
    let w = watcher.expect("watcher");
    w.set_listen(None)?;
    Ok(())
}

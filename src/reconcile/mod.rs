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
mod checkout;
mod commit;
mod dir;
mod driver;
mod error;
pub mod git;
pub mod http;
pub mod record;
mod watcher;

pub use backoff::Backoff;
pub use commit::{plan_and_apply, reconcile, Context, Mode, Reconciliation, Target, TargetFile};
pub use dir::{is_suspended, load_state, record_path, set_suspended, watch_dir, WatchOptions};
pub use driver::run;
pub use error::{error_policy, Decision, ReconcileError};
pub use record::{AppPlan, CommitRecord, ResultKind, WatchState};
pub use watcher::{StepReport, Watcher};

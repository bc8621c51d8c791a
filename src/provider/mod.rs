//! Providers observe live state and carry out plan steps. Plan and apply do
//! not know which provider runs.

pub mod file;
pub mod fly;
pub mod local;
pub mod lock;
pub mod pg;

pub use crate::error::ProviderError;
pub use crate::secrets::SecretValues;

use crate::live::Live;
use crate::plan::Step;

/// What a step did, so re-running it is visibly harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated,
    Deleted,
    /// Already as the step wanted.
    NotNeeded,
}

/// What a step may use besides its own resource.
pub struct StepContext<'a> {
    pub app: &'a str,
    pub secrets: &'a SecretValues,
}

/// A held lock; dropping it releases the lock.
pub trait LockGuard: Send {}

/// A place where clusters live.
///
/// # Guarantees
/// `perform` is idempotent: performing a step whose effect is already there
/// returns [`Outcome::NotNeeded`] and changes nothing.
pub trait Provider: Send + Sync {
    fn name(&self) -> &'static str;

    /// Observe what really exists for `app` (processes, catalogs, API objects).
    ///
    /// # Errors
    /// When the live state cannot be read; an app that does not exist is an
    /// empty [`Live`], not an error.
    fn observe(&self, app: &str) -> Result<Live, ProviderError>;

    /// Carry out one step of a plan.
    ///
    /// # Errors
    /// When the step could not be completed; dependants must not run, and a
    /// later apply re-plans from what was observed.
    fn perform(&self, step: &Step, ctx: &StepContext<'_>) -> Result<Outcome, ProviderError>;

    /// Observe with the extra checks `flyplan status` shows (replication
    /// lag, connections, disk) in each resource's `status`.
    ///
    /// # Errors
    /// As [`Provider::observe`].
    fn status(&self, app: &str) -> Result<Live, ProviderError> {
        self.observe(app)
    }

    /// Take the per-app apply lock, failing fast with
    /// [`ProviderError::Locked`] naming the holder.
    fn lock(&self, app: &str) -> Result<Box<dyn LockGuard>, ProviderError>;

    /// The provider's own snapshot store, when flyplan takes the snapshots
    /// (the local provider); `None` when the platform takes them itself.
    fn snapshots(&self) -> Option<&dyn crate::snapshot::Snapshots> {
        None
    }
}

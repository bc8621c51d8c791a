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
use crate::plan::{PlanNotes, Step};

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
    /// The snapshot a cluster being created starts from, for providers
    /// whose first volume takes it.
    pub restore: Option<Restore<'a>>,
    /// The secret whose value is the password of the `postgres` role, for
    /// providers whose nodes need it as a secret of their own (postgres-flex
    /// reads it as `OPERATOR_PASSWORD`).
    pub operator_password: Option<&'a str>,
    /// Every step of the apply this step belongs to, for providers that
    /// place a resource by what will use it (a volume by its machine).
    pub steps: &'a [crate::plan::Step],
}

/// The secret the plan names as the `postgres` role's password.
pub fn operator_password_of(plan: &crate::plan::Plan) -> Option<&str> {
    let operator = crate::model::Address::user("postgres");
    plan.steps
        .iter()
        .filter(|s| s.address == operator)
        .find_map(|s| s.after.as_ref()?.user()?.password_secret.as_deref())
}

/// A cluster created from a snapshot: `restore_from` of the plan's app
/// create step, and the volume of the node that is created first (the
/// lowest primary-region candidate), which starts from it.
#[derive(Debug, Clone, Copy)]
pub struct Restore<'a> {
    pub snapshot: &'a str,
    pub volume: &'a crate::model::Address,
}

impl<'a> Restore<'a> {
    /// The restore a plan asks for, if any.
    pub fn of(plan: &'a crate::plan::Plan) -> Option<Self> {
        use crate::plan::Action;
        let snapshot = plan
            .steps
            .iter()
            .filter(|s| s.action == Action::Create)
            .find_map(|s| s.after.as_ref()?.app()?.restore_from.as_deref())?;
        let volume = plan
            .steps
            .iter()
            .filter(|s| s.action == Action::Create)
            .filter_map(|s| s.after.as_ref()?.machine())
            .filter(|m| m.role == crate::model::Role::Candidate)
            .min_by_key(|m| m.index)?
            .volume
            .as_ref()?;
        Some(Restore { snapshot, volume })
    }
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

    /// What this provider does for each kind of topology action, as the
    /// plan's notes say it.
    fn plan_notes(&self) -> PlanNotes {
        PlanNotes::default()
    }

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

    /// The provider's own runner of barman-cloud for `[postgres.backup]`
    /// (the local provider); `None` where the platform runs it.
    fn backups(&self) -> Option<&dyn crate::backup::Backups> {
        None
    }

    /// Check that the object store in `url` (the value of secret `secret`)
    /// answers, before a plan that sets a backup policy is shown.
    ///
    /// # Errors
    /// A store that cannot be reached or read, said without its keys.
    fn check_backup_store(&self, _secret: &str, _url: &str) -> Result<(), ProviderError> {
        Ok(())
    }
}

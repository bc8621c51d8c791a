//! What can go wrong in a reconcile, and when a failure is tried again.

use std::time::Duration;

use crate::apply::ApplyError;
use crate::config::ConfigError;
use crate::desired::DesiredError;
use crate::pipeline::PipelineError;
use crate::provider::ProviderError;

use super::Backoff;

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
    pub(super) fn git(what: impl Into<String>, source: git2::Error) -> Self {
        ReconcileError::Git {
            what: what.into(),
            source,
        }
    }
    pub(super) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ReconcileError::Io {
            what: what.into(),
            source,
        }
    }
}

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Reconcile again after this long (unless a new commit comes first).
    Requeue(Duration),
}

/// Decide when a failed reconcile is tried again: exponential backoff on the
/// number of failures in a row; a held apply lock is tried again after the
/// base delay, because the other apply will finish.
pub fn error_policy(err: &ReconcileError, failures: u32, backoff: &Backoff) -> Decision {
    match err {
        ReconcileError::Provider(ProviderError::Locked { .. })
        | ReconcileError::Apply(ApplyError::Provider(ProviderError::Locked { .. })) => {
            Decision::Requeue(backoff.base)
        }
        _ => Decision::Requeue(backoff.delay(failures)),
    }
}

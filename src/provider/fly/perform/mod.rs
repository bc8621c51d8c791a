//! Carrying out one plan step through the Machines API, the way flyctl
//! builds postgres-flex clusters. Every step first reads what exists, so a
//! step whose effect is already there returns `NotNeeded` and a re-run after
//! a failure creates only what is missing.

mod app;
mod backup;
mod bootstrap;
mod catalog;
mod cluster;
mod machine_config;
mod machines;
mod parameters;
mod secrets;
mod volumes;

use machine_config::guest_of;
pub use machine_config::postgres_flex_config;
pub use machines::RollingLeases;

use std::collections::BTreeMap;
use std::time::Instant;

use reqwest::{Method, StatusCode};

use super::api::{
    CreateAppRequest, CreateLeaseRequest, CreateVolumeRequest, ExecResponse, ExtendVolumeRequest,
    ExtendVolumeResponse, LeaseReply, ListSecretsResponse, Machine, MachineCheck, MachineConfig,
    MachineGuest, MachineMetrics, MachineMount, MachinePort, MachineRequest, MachineRestart,
    MachineService, MachineServiceConcurrency, UpdateSecretsRequest, UpdateSecretsResponse,
    UpdateVolumeRequest, Volume,
};
use super::ledger::SecretEntry;
use super::observe::{self, normalize_image, role_check, serves_proxy, AppView, Topology};
use super::{
    meta, secret_digest, FlyProvider, DEFAULT_SNAPSHOT_TIME, PG_DIRECT_PORT, PG_PROXY_PORT,
};
use crate::model::{Agreed, Kind, MachineSpec, Resource, Role, Spec, Target, VolumeSpec};
use crate::plan::{Action, Step};
use crate::provider::pg::{attachments, roles};
use crate::provider::{Outcome, ProviderError, StepContext};

/// The app role `fly pg create` gives a Postgres app.
const POSTGRES_APP_ROLE: &str = "postgres_cluster";
/// Where postgres-flex keeps its data.
const DATA_PATH: &str = "/data";
/// postgres-flex's health check server.
const CHECK_PORT: u16 = 5500;
/// Longest single wait the API serves (seconds).
const WAIT_SLICE_SECS: u64 = 60;

/// Carry out `step`.
///
/// # Errors
/// As [`crate::provider::Provider::perform`].
pub async fn perform(
    p: &FlyProvider,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<Outcome, ProviderError> {
    let label = format!("{} {}", step.action.as_str(), step.address);
    let s = Performer {
        p,
        step,
        ctx,
        app: ctx.app,
        label,
    };
    if step.action == Action::NoOp {
        return Ok(Outcome::NotNeeded);
    }
    match step.kind {
        Kind::App => s.app().await,
        Kind::Secret => s.secret().await,
        Kind::Volume | Kind::Machine if step.action == Action::Replace => {
            s.delete_then_create().await
        }
        Kind::Volume => s.volume(step.action).await,
        Kind::Machine => s.machine(step.action).await,
        Kind::Formation => s.formation().await,
        Kind::Endpoint => s.endpoint().await,
        Kind::SnapshotPolicy => s.snapshot_policy().await,
        Kind::BackupPolicy => s.backup_policy().await,
        Kind::User | Kind::Database | Kind::Attachment => s.sql().await,
        Kind::Parameter => s.parameter().await,
    }
}

pub(super) struct Performer<'a> {
    p: &'a FlyProvider,
    step: &'a Step,
    ctx: &'a StepContext<'a>,
    app: &'a str,
    label: String,
}

/// `Created` or `Updated` after a change, as the step's action says.
pub(super) fn changed(action: Action) -> Outcome {
    match action {
        Action::Create => Outcome::Created,
        Action::Delete => Outcome::Deleted,
        _ => Outcome::Updated,
    }
}

impl Performer<'_> {
    pub(super) fn client(&self) -> &super::client::FlyClient {
        &self.p.client
    }

    pub(super) fn after(&self) -> Result<&Resource, ProviderError> {
        self.step
            .after
            .as_ref()
            .ok_or_else(|| ProviderError::failed(&self.label, "the step has no desired resource"))
    }

    pub(super) fn after_volume(&self) -> Result<&VolumeSpec, ProviderError> {
        self.after()?
            .volume()
            .ok_or_else(|| self.fail("the step's resource is not a volume"))
    }

    pub(super) fn after_machine(&self) -> Result<&MachineSpec, ProviderError> {
        self.after()?
            .machine()
            .ok_or_else(|| self.fail("the step's resource is not a machine"))
    }

    pub(super) fn fail(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::failed(&self.label, message)
    }

    /// Read the app; an app that does not exist fails the step.
    pub(super) async fn read(&self) -> Result<(AppView, Topology), ProviderError> {
        let version = self.p.ledger(self.app).secrets()?.version;
        let view = observe::fetch(self.client(), self.app, &self.label, false, version)
            .await?
            .ok_or_else(|| self.fail(format!("app {} does not exist", self.app)))?;
        let topo = observe::topology(&view, &self.p.ledger(self.app).app()?);
        Ok((view, topo))
    }

    /// Create through `call`, one attempt at a time: after an answer that
    /// leaves it unsure whether the create happened (5xx, 429, timeout),
    /// read the app and take what `find` recognises as the thing created
    /// before trying again, so a lost answer never makes a second one.
    ///
    /// # Errors
    /// A client error, or every attempt unsure and nothing found.
    pub(super) async fn create_checked<T: serde::de::DeserializeOwned>(
        &self,
        call: super::client::Call<'_>,
        find: impl Fn(&AppView) -> Option<T>,
    ) -> Result<T, ProviderError> {
        let policy = &self.p.timeouts.retry;
        let attempts = policy.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match call.clone().attempt::<T>().await? {
                super::client::Attempt::Done(t) => return Ok(t),
                super::client::Attempt::Unsure(why) => {
                    tracing::warn!(
                        attempt,
                        "create answered {why}; reading before trying again"
                    );
                    let (view, _) = self.read().await?;
                    if let Some(t) = find(&view) {
                        tracing::info!("the create had happened; taking what it made");
                        return Ok(t);
                    }
                    last = why;
                    if attempt < attempts {
                        tokio::time::sleep(policy.backoff(attempt)).await;
                    }
                }
            }
        }
        Err(self.fail(format!("{last} (after {attempts} attempts)")))
    }

    /// `DELETE` a resource; one already gone (404) is `NotNeeded`.
    pub(super) async fn delete_at(&self, segments: &[&str]) -> Result<Outcome, ProviderError> {
        let status = self
            .client()
            .request(&self.label, Method::DELETE, segments)
            .send_status(&[StatusCode::NOT_FOUND])
            .await?;
        Ok(if status == StatusCode::NOT_FOUND {
            Outcome::NotNeeded
        } else {
            tracing::info!(path = %segments.join("/"), "destroyed");
            Outcome::Deleted
        })
    }
}

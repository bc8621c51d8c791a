//! Carrying out one plan step through the Machines API, the way flyctl
//! builds postgres-flex clusters. Every step first reads what exists, so a
//! step whose effect is already there returns `NotNeeded` and a re-run after
//! a failure creates only what is missing.

use std::collections::BTreeMap;
use std::time::Instant;

use reqwest::{Method, StatusCode};

use super::api::{
    CreateAppRequest, CreateLeaseRequest, CreateVolumeRequest, ExtendVolumeRequest,
    ExtendVolumeResponse, LeaseReply, ListSecretsResponse, Machine, MachineCheck, MachineConfig,
    MachineGuest, MachineMetrics, MachineMount, MachinePort, MachineRequest, MachineRestart,
    MachineService, MachineServiceConcurrency, MetadataValue, UpdateSecretsRequest,
    UpdateSecretsResponse, UpdateVolumeRequest, Volume,
};
use super::ledger::SecretEntry;
use super::observe::{self, normalize_image, role_check, serves_proxy, Snapshot, Topology};
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
        Kind::User | Kind::Database | Kind::Attachment => s.sql().await,
    }
}

impl Performer<'_> {
    /// Roles, databases and attachments: SQL through the user's route.
    async fn sql(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Replace {
            let before = self.step.before.as_ref().or(self.step.after.as_ref());
            if let Some(r) = before {
                self.sql_delete(r).await?;
            }
            self.sql_ensure(self.desired()?).await?;
            return Ok(Outcome::Created);
        }
        if self.step.action == Action::Delete {
            let r = self
                .step
                .before
                .as_ref()
                .or(self.step.after.as_ref())
                .ok_or_else(|| self.fail("a delete without a resource"))?;
            let done = self.sql_delete(r).await?;
            return Ok(if done {
                Outcome::Deleted
            } else {
                Outcome::NotNeeded
            });
        }
        let done = self.sql_ensure(self.desired()?).await?;
        Ok(if done {
            changed(self.step.action)
        } else {
            Outcome::NotNeeded
        })
    }

    async fn sql_ensure(&self, r: &Resource) -> Result<bool, ProviderError> {
        let (p, what, app) = (self.p, self.label.as_str(), self.app);
        match self.step.kind {
            Kind::User => p.ensure_user(r, self.ctx, what).await,
            Kind::Database => roles::ensure_database(&p.primary(what)?, r).await,
            _ => attachments::ensure(&p.primary(what)?, &p.consumers(app), r).await,
        }
    }

    async fn sql_delete(&self, r: &Resource) -> Result<bool, ProviderError> {
        let (p, what, app) = (self.p, self.label.as_str(), self.app);
        match self.step.kind {
            Kind::User => p.remove_user(r, app, what).await,
            Kind::Database => roles::remove_database(&p.primary(what)?, r).await,
            _ => attachments::remove(&p.primary(what)?, &p.consumers(app), r).await,
        }
    }

    fn desired(&self) -> Result<&Resource, ProviderError> {
        self.step
            .after
            .as_ref()
            .ok_or_else(|| self.fail("a create or update without a desired resource"))
    }
}

struct Performer<'a> {
    p: &'a FlyProvider,
    step: &'a Step,
    ctx: &'a StepContext<'a>,
    app: &'a str,
    label: String,
}

/// `Created` or `Updated` after a change, as the step's action says.
fn changed(action: Action) -> Outcome {
    match action {
        Action::Create => Outcome::Created,
        Action::Delete => Outcome::Deleted,
        _ => Outcome::Updated,
    }
}

/// The guest of a machine: explicit `cpu_kind`/`cpus` win over the preset
/// named by `vm_size` (`shared-cpu-2x`, `performance-4x`).
fn guest_of(m: &MachineSpec) -> MachineGuest {
    let (mut kind, mut cpus) = ("shared".to_string(), 1u32);
    if let Some(size) = &m.vm_size {
        if let Some(n) = size
            .strip_prefix("shared-cpu-")
            .and_then(|n| n.strip_suffix('x'))
        {
            kind = "shared".into();
            cpus = n.parse().unwrap_or(1);
        } else if let Some(n) = size
            .strip_prefix("performance-")
            .and_then(|n| n.strip_suffix('x'))
        {
            kind = "performance".into();
            cpus = n.parse().unwrap_or(1);
        }
    }
    if let Some(k) = &m.cpu_kind {
        kind = k.clone();
    }
    if let Some(n) = m.cpus {
        cpus = n;
    }
    let memory_mb = m.memory_mb.map_or(256 * cpus, |m| m as u32);
    MachineGuest {
        cpu_kind: kind,
        cpus,
        memory_mb,
        rest: BTreeMap::new(),
    }
}

fn http_check(path: &str) -> MachineCheck {
    MachineCheck {
        port: Some(CHECK_PORT),
        kind: "http".into(),
        path: path.into(),
        interval: "15s".into(),
        timeout: "10s".into(),
        rest: BTreeMap::new(),
    }
}

fn pg_service(port: u16) -> MachineService {
    MachineService {
        protocol: "tcp".into(),
        internal_port: port,
        ports: vec![MachinePort {
            port: Some(port),
            handlers: vec!["pg_tls".into()],
            rest: BTreeMap::new(),
        }],
        concurrency: Some(MachineServiceConcurrency {
            kind: "connections".into(),
            hard_limit: 1000,
            soft_limit: 1000,
        }),
        autostart: Some(true),
        rest: BTreeMap::new(),
    }
}

/// A postgres-flex machine configuration, as `fly pg create` makes it:
/// `PRIMARY_REGION`, the pg/role/vm checks on port 5500, the 5432 proxy and
/// 5433 direct services with the `pg_tls` handler, metrics on 9187, the data
/// volume on `/data`, restart always, and the metadata flyctl sets.
pub fn postgres_flex_config(
    image: &str,
    primary_region: &str,
    guest: MachineGuest,
    volume_id: &str,
    index: u32,
    sync_standbys: Option<&str>,
) -> MachineConfig {
    let mut env = BTreeMap::new();
    env.insert("PRIMARY_REGION".to_string(), primary_region.to_string());
    let mut checks = BTreeMap::new();
    checks.insert("pg".to_string(), http_check("/flycheck/pg"));
    checks.insert("role".to_string(), http_check("/flycheck/role"));
    checks.insert("vm".to_string(), http_check("/flycheck/vm"));
    let mut metadata = BTreeMap::new();
    metadata.insert(meta::FLY_PLATFORM_VERSION.to_string(), "v2".to_string());
    metadata.insert(meta::FLY_MANAGED_POSTGRES.to_string(), "true".to_string());
    metadata.insert(meta::MANAGED_BY_FLY_DEPLOY.to_string(), "true".to_string());
    metadata.insert(meta::INDEX.to_string(), index.to_string());
    metadata.insert(
        meta::FLYPLAN_VERSION.to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    if let Some(n) = sync_standbys {
        metadata.insert(meta::SYNC_STANDBYS.to_string(), n.to_string());
    }
    MachineConfig {
        image: image.to_string(),
        env,
        guest: Some(guest),
        mounts: vec![MachineMount {
            volume: volume_id.to_string(),
            path: DATA_PATH.to_string(),
            rest: BTreeMap::new(),
        }],
        services: vec![pg_service(PG_PROXY_PORT), pg_service(PG_DIRECT_PORT)],
        checks,
        metadata,
        metrics: Some(MachineMetrics {
            path: "/metrics".into(),
            port: 9187,
        }),
        restart: Some(MachineRestart {
            policy: "always".into(),
            max_retries: None,
        }),
        rest: BTreeMap::new(),
    }
}

impl Performer<'_> {
    fn client(&self) -> &super::client::FlyClient {
        &self.p.client
    }

    fn after(&self) -> Result<&Resource, ProviderError> {
        self.step
            .after
            .as_ref()
            .ok_or_else(|| ProviderError::failed(&self.label, "the step has no desired resource"))
    }

    fn after_volume(&self) -> Result<&VolumeSpec, ProviderError> {
        self.after()?
            .volume()
            .ok_or_else(|| self.fail("the step's resource is not a volume"))
    }

    fn after_machine(&self) -> Result<&MachineSpec, ProviderError> {
        self.after()?
            .machine()
            .ok_or_else(|| self.fail("the step's resource is not a machine"))
    }

    fn fail(&self, message: impl Into<String>) -> ProviderError {
        ProviderError::failed(&self.label, message)
    }

    /// Read the app; an app that does not exist fails the step.
    async fn snapshot(&self) -> Result<(Snapshot, Topology), ProviderError> {
        let snap = observe::fetch(self.client(), self.app, &self.label, false)
            .await?
            .ok_or_else(|| self.fail(format!("app {} does not exist", self.app)))?;
        let topo = observe::topology(&snap, &self.p.ledger(self.app).app()?);
        Ok((snap, topo))
    }

    // ----- app -----

    async fn app(&self) -> Result<Outcome, ProviderError> {
        let ledger = self.p.ledger(self.app);
        match self.step.action {
            Action::Create | Action::Update | Action::Replace => {
                let existing = self
                    .client()
                    .request(&self.label, Method::GET, &["apps", self.app])
                    .send_opt::<super::api::App>()
                    .await?;
                let desired_region = self
                    .step
                    .after
                    .as_ref()
                    .and_then(|r| r.app()?.primary_region.clone());
                let outcome = match existing {
                    None if self.step.action == Action::Create => {
                        let body = CreateAppRequest {
                            app_name: self.app.to_string(),
                            org_slug: self.p.org_slug.clone(),
                            app_role_id: Some(POSTGRES_APP_ROLE.to_string()),
                            network: None,
                        };
                        self.client()
                            .request(&self.label, Method::POST, &["apps"])
                            .json(&body)
                            .send_status(&[])
                            .await?;
                        tracing::info!(app = self.app, org = %self.p.org_slug, "created app");
                        Outcome::Created
                    }
                    None => return Err(self.fail(format!("app {} does not exist", self.app))),
                    Some(_) if self.step.action == Action::Create => Outcome::NotNeeded,
                    Some(_) => {
                        // Only the primary region can change, and only while
                        // no machine carries it.
                        let (snap, topo) = self.snapshot().await?;
                        match (&desired_region, &topo.primary_region) {
                            (Some(want), Some(have))
                                if want != have && !snap.machines.is_empty() =>
                            {
                                return Err(ProviderError::Unsupported {
                                    provider: "fly",
                                    what: format!(
                                        "move the primary region of app {} from {have} to {want} \
                                         while it has machines",
                                        self.app
                                    ),
                                });
                            }
                            (Some(want), Some(have)) if want == have => Outcome::NotNeeded,
                            _ => Outcome::Updated,
                        }
                    }
                };
                if let Some(region) = desired_region {
                    let mut a = ledger.app()?;
                    if a.primary_region.as_deref() != Some(region.as_str()) {
                        a.primary_region = Some(region);
                        ledger.write_app(&a)?;
                    }
                }
                Ok(outcome)
            }
            Action::Delete => {
                // Attached apps lose the URLs this cluster gave them.
                self.p.unset_consumers(self.app).await?;
                let outcome = self.delete_at(&["apps", self.app]).await?;
                ledger.forget()?;
                Ok(outcome)
            }
            Action::NoOp => Ok(Outcome::NotNeeded),
        }
    }

    // ----- secrets -----

    fn secret_name(&self) -> Result<&str, ProviderError> {
        self.step
            .address
            .as_str()
            .strip_prefix("secret.")
            .ok_or_else(|| self.fail("not a secret address"))
    }

    async fn list_secrets(&self) -> Result<ListSecretsResponse, ProviderError> {
        self.client()
            .request(&self.label, Method::GET, &["apps", self.app, "secrets"])
            .send()
            .await
    }

    async fn post_secrets(
        &self,
        values: BTreeMap<String, Option<String>>,
    ) -> Result<UpdateSecretsResponse, ProviderError> {
        self.client()
            .request(&self.label, Method::POST, &["apps", self.app, "secrets"])
            .json(&UpdateSecretsRequest { values })
            .send()
            .await
    }

    /// Secrets are set in one call before any machine: the first secret step
    /// of an apply sets every value of this apply that is not yet in place;
    /// the later ones find theirs in place and return `NotNeeded`.
    async fn secret(&self) -> Result<Outcome, ProviderError> {
        let name = self.secret_name()?;
        let ledger = self.p.ledger(self.app);
        let mut book = ledger.secrets()?;
        let live = self.list_secrets().await?;
        let fly_digest = |n: &str| {
            live.secrets
                .iter()
                .find(|s| s.name == n)
                .map(|s| s.digest.clone())
        };

        if self.step.action == Action::Delete {
            if fly_digest(name).is_none() {
                if book.secrets.remove(name).is_some() {
                    ledger.write_secrets(&book)?;
                }
                return Ok(Outcome::NotNeeded);
            }
            let mut values = BTreeMap::new();
            values.insert(name.to_string(), None);
            let reply = self.post_secrets(values).await?;
            book.secrets.remove(name);
            if reply.version.is_some() {
                book.version = reply.version;
            }
            ledger.write_secrets(&book)?;
            tracing::info!(secret = name, "unset secret");
            return Ok(Outcome::Deleted);
        }

        if self.ctx.secrets.get(name).is_none() {
            return Err(self.fail(format!("no value for secret {name} in this apply")));
        }
        let in_place = |n: &str, digest: &str| {
            book.secrets.get(n).is_some_and(|e| {
                e.flyplan_digest == digest && fly_digest(n).as_deref() == Some(&e.fly_digest)
            })
        };
        let mut pending: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut digests: BTreeMap<String, String> = BTreeMap::new();
        for n in self.ctx.secrets.names() {
            let value = self.ctx.secrets.get(n).unwrap_or_default();
            let digest = secret_digest(self.app, n, value);
            if !in_place(n, &digest) {
                pending.insert(n.to_string(), Some(value.to_string()));
                digests.insert(n.to_string(), digest);
            }
        }
        if !pending.contains_key(name) {
            return Ok(Outcome::NotNeeded);
        }
        let names: Vec<String> = pending.keys().cloned().collect();
        let reply = self.post_secrets(pending).await?;
        let after: Vec<super::api::AppSecret> = if names
            .iter()
            .all(|n| reply.secrets.iter().any(|s| &s.name == n))
        {
            reply.secrets.clone()
        } else {
            self.list_secrets().await?.secrets
        };
        for n in &names {
            let fly = after
                .iter()
                .find(|s| &s.name == n)
                .map(|s| s.digest.clone())
                .ok_or_else(|| self.fail(format!("secret {n} missing after it was set")))?;
            book.secrets.insert(
                n.clone(),
                SecretEntry {
                    fly_digest: fly,
                    flyplan_digest: digests[n].clone(),
                },
            );
        }
        if reply.version.is_some() {
            book.version = reply.version;
        }
        ledger.write_secrets(&book)?;
        tracing::info!(count = names.len(), names = ?names, version = ?reply.version, "set secrets in one call");
        Ok(changed(self.step.action))
    }

    // ----- volumes -----

    async fn volume(&self, action: Action) -> Result<Outcome, ProviderError> {
        let (snap, topo) = self.snapshot().await?;
        let existing = topo.volume_at(&snap, &self.step.address);
        match action {
            Action::Create => {
                if existing.is_some() {
                    return Ok(Outcome::NotNeeded);
                }
                self.create_volume(&snap).await?;
                Ok(Outcome::Created)
            }
            Action::Update => {
                let vol = existing.ok_or_else(|| {
                    self.fail(format!("{} does not exist; plan again", self.step.address))
                })?;
                let want = self.after_volume()?.size_gb;
                if want == vol.size_gb {
                    return Ok(Outcome::NotNeeded);
                }
                if want < vol.size_gb {
                    return Err(self.fail(format!(
                        "volumes cannot shrink ({} GB to {want} GB)",
                        vol.size_gb
                    )));
                }
                let reply: ExtendVolumeResponse = self
                    .client()
                    .request(
                        &self.label,
                        Method::PUT,
                        &["apps", self.app, "volumes", &vol.id, "extend"],
                    )
                    .json(&ExtendVolumeRequest { size_gb: want })
                    .send()
                    .await?;
                if reply.needs_restart {
                    tracing::warn!(volume = %vol.id, "the volume grew; its machine needs a restart to see the space");
                }
                Ok(Outcome::Updated)
            }
            Action::Delete => {
                let Some(vol) = existing else {
                    return Ok(Outcome::NotNeeded);
                };
                self.delete_volume(vol).await
            }
            Action::Replace | Action::NoOp => Ok(Outcome::NotNeeded),
        }
    }

    async fn create_volume(&self, snap: &Snapshot) -> Result<Volume, ProviderError> {
        let after = self.after_volume()?;
        let index = self.step.address.node().map_or(0, |(_, i)| i);
        let name = after.name.clone();
        let region = after.region.clone();
        let size_gb = after.size_gb;
        // A new node's volume takes the snapshot policy its siblings have
        // (the desired volume does not carry it), so that scaling out does
        // not leave one volume on Fly's defaults.
        let siblings: Vec<&Volume> = snap.volumes.iter().filter(|v| v.name == name).collect();
        let agreed = |values: Vec<Option<u64>>| -> Option<u64> {
            let first = *values.first()?;
            values
                .iter()
                .all(|v| *v == first)
                .then_some(first)
                .flatten()
        };
        let sibling_retention = agreed(siblings.iter().map(|v| v.snapshot_retention).collect());
        let sibling_backups = agreed(
            siblings
                .iter()
                .map(|v| Some(u64::from(v.auto_backup_enabled.unwrap_or(true))))
                .collect(),
        )
        .map(|b| b == 1);
        let body = CreateVolumeRequest {
            name,
            region,
            size_gb,
            encrypted: true,
            require_unique_zone: true,
            snapshot_retention: sibling_retention,
            auto_backup_enabled: sibling_backups,
            // A cluster restored from a snapshot: the first node's volume
            // starts from it, as `fly pg create --snapshot-id` does. Only a
            // cluster being made has no volume yet.
            snapshot_id: self
                .ctx
                .restore_from
                .filter(|_| index == 0 && snap.volumes.is_empty())
                .map(str::to_string),
        };
        let vol: Volume = self
            .client()
            .request(&self.label, Method::POST, &["apps", self.app, "volumes"])
            .json(&body)
            .send()
            .await?;
        tracing::info!(volume = %vol.id, address = %self.step.address, "created volume");
        Ok(vol)
    }

    async fn delete_volume(&self, vol: &Volume) -> Result<Outcome, ProviderError> {
        self.delete_at(&["apps", self.app, "volumes", &vol.id])
            .await
    }

    /// `DELETE` a resource; one already gone (404) is `NotNeeded`.
    async fn delete_at(&self, segments: &[&str]) -> Result<Outcome, ProviderError> {
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

    // ----- machines -----

    async fn machine(&self, action: Action) -> Result<Outcome, ProviderError> {
        let (snap, topo) = self.snapshot().await?;
        let existing = topo.machine_at(&snap, &self.step.address).cloned();
        match action {
            Action::Create => {
                if existing.is_some() {
                    return Ok(Outcome::NotNeeded);
                }
                self.create_machine(&snap, &topo).await?;
                Ok(Outcome::Created)
            }
            Action::Update => {
                let m = existing.ok_or_else(|| {
                    self.fail(format!("{} does not exist; plan again", self.step.address))
                })?;
                self.update_machine(&m).await
            }
            Action::Delete => {
                let Some(m) = existing else {
                    return Ok(Outcome::NotNeeded);
                };
                self.delete_machine(&m).await
            }
            Action::Replace | Action::NoOp => Ok(Outcome::NotNeeded),
        }
    }

    fn sync_standbys_of(snap: &Snapshot) -> Option<String> {
        let mut values = snap
            .machines
            .iter()
            .filter_map(|m| m.config.metadata.get(meta::SYNC_STANDBYS).cloned());
        let first = values.next()?;
        values.all(|v| v == first).then_some(first)
    }

    async fn create_machine(&self, snap: &Snapshot, topo: &Topology) -> Result<(), ProviderError> {
        let after = self.after_machine()?;
        let index = after.index;
        let region = after.region.clone();
        let image = after
            .image
            .as_deref()
            .ok_or_else(|| self.fail("no image in the desired machine"))?;
        let primary_region = match (&topo.primary_region, after.role) {
            (Some(pr), _) => pr.clone(),
            (None, Role::Candidate) => region.clone(),
            (None, Role::Replica) => {
                return Err(self.fail(
                    "the primary region is unknown (no app step and no primary-region machine)",
                ))
            }
        };

        // The node's volume: the one at the desired address; else (volumes
        // created out of order) the lowest unattached one of that name here.
        let want_volume = after.volume.clone();
        let attached: Vec<&str> = snap
            .machines
            .iter()
            .flat_map(|m| m.config.mounts.iter().map(|x| x.volume.as_str()))
            .collect();
        let free = |v: &&Volume| {
            !attached.contains(&v.id.as_str())
                && v.attached_machine_id.as_deref().is_none_or(str::is_empty)
        };
        let volume = match &want_volume {
            Some(addr) => topo
                .volume_at(snap, addr)
                .filter(free)
                .or_else(|| {
                    let (name, vregion) = match addr.target() {
                        Target::Volume { name, region, .. } => (name, region),
                        _ => return None,
                    };
                    let mut candidates: Vec<&Volume> = snap
                        .volumes
                        .iter()
                        .filter(|v| &v.name == name && &v.region == vregion)
                        .filter(free)
                        .collect();
                    candidates.sort_by_key(|v| topo.volume_address.get(&v.id).cloned());
                    candidates.into_iter().next()
                })
                .ok_or_else(|| {
                    self.fail(format!("{addr} does not exist or is in use; plan again"))
                })?,
            None => return Err(self.fail("the desired machine names no volume")),
        };

        let config = postgres_flex_config(
            image,
            &primary_region,
            guest_of(after),
            &volume.id,
            index,
            Self::sync_standbys_of(snap).as_deref(),
        );
        let body = MachineRequest {
            config,
            region: region.clone(),
            min_secrets_version: self.p.ledger(self.app).secrets()?.version,
        };
        let m: Machine = self
            .client()
            .request(&self.label, Method::POST, &["apps", self.app, "machines"])
            .json(&body)
            .send()
            .await?;
        tracing::info!(machine = %m.id, address = %self.step.address, volume = %volume.id, "created machine; waiting for it to start");
        self.wait_started(&m.id, &m.instance_id, None).await
    }

    /// Wait until the machine is `started`.
    async fn wait_started(
        &self,
        id: &str,
        instance_id: &str,
        nonce: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.wait_state(id, instance_id, "started", nonce).await
    }

    /// Wait until the machine is in `state`, in slices the API serves.
    async fn wait_state(
        &self,
        id: &str,
        instance_id: &str,
        state: &str,
        nonce: Option<&str>,
    ) -> Result<(), ProviderError> {
        let deadline = Instant::now() + self.p.timeouts.machine_start;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.as_secs().clamp(1, WAIT_SLICE_SECS);
            let mut call = self
                .client()
                .request(
                    &self.label,
                    Method::GET,
                    &["apps", self.app, "machines", id, "wait"],
                )
                .query("state", state)
                .query("timeout", slice.to_string())
                .nonce(nonce)
                .timeout(std::time::Duration::from_secs(slice + 10));
            if !instance_id.is_empty() {
                call = call.query("instance_id", instance_id);
            }
            let status = call.send_status(&[StatusCode::REQUEST_TIMEOUT]).await?;
            if status != StatusCode::REQUEST_TIMEOUT {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.fail(format!(
                    "machine {id} did not reach {state} within {} s",
                    self.p.timeouts.machine_start.as_secs()
                )));
            }
        }
    }

    async fn acquire_lease(&self, id: &str) -> Result<String, ProviderError> {
        let reply: LeaseReply = self
            .client()
            .request(
                &self.label,
                Method::POST,
                &["apps", self.app, "machines", id, "lease"],
            )
            .json(&CreateLeaseRequest {
                ttl: self.p.timeouts.lease_ttl.as_secs().max(1),
                description: format!("flyplan: {}", self.label),
            })
            .send()
            .await?;
        reply
            .nonce()
            .map(str::to_string)
            .ok_or_else(|| self.fail(format!("the lease on machine {id} came without a nonce")))
    }

    async fn release_lease(&self, id: &str, nonce: &str) {
        let released = self
            .client()
            .request(
                &self.label,
                Method::DELETE,
                &["apps", self.app, "machines", id, "lease"],
            )
            .nonce(Some(nonce))
            .send_status(&[StatusCode::NOT_FOUND])
            .await;
        if let Err(e) = released {
            tracing::warn!(
                machine = id,
                "could not release the lease (it expires by itself): {e}"
            );
        }
    }

    /// Image, size or state drift: replicas come first in the plan and the
    /// leader last. Each machine is updated under a lease. postgres-flex
    /// has no switchover through the Machines API; like `fly image update`
    /// for postgres-flex, the leader is updated in place (repmgr fails over
    /// if it stays down).
    async fn update_machine(&self, m: &Machine) -> Result<Outcome, ProviderError> {
        let after = self.after_machine()?;
        let mut config = m.config.clone();
        if let Some(image) = &after.image {
            if normalize_image(&config.image) != normalize_image(image) {
                config.image = image.clone();
            }
        }
        let has_size = after.vm_size.is_some()
            || after.cpus.is_some()
            || after.cpu_kind.is_some()
            || after.memory_mb.is_some();
        if has_size {
            let want = guest_of(after);
            let mut guest = config.guest.clone().unwrap_or_default();
            guest.cpu_kind = want.cpu_kind;
            guest.cpus = want.cpus;
            guest.memory_mb = want.memory_mb;
            config.guest = Some(guest);
        }
        let config_changed = config != m.config;
        let wants_running = after.state == "running";
        let needs_start = wants_running && m.state != "started";
        if !config_changed && !needs_start {
            return Ok(Outcome::NotNeeded);
        }
        if role_check(m) == Some("primary") {
            tracing::info!(machine = %m.id, "updating the leader in place (no switchover through the Machines API)");
        }

        let nonce = self.acquire_lease(&m.id).await?;
        let result = async {
            if config_changed {
                let body = MachineRequest {
                    config,
                    region: m.region.clone(),
                    min_secrets_version: self.p.ledger(self.app).secrets()?.version,
                };
                let updated: Machine = self
                    .client()
                    .request(
                        &self.label,
                        Method::POST,
                        &["apps", self.app, "machines", &m.id],
                    )
                    .json(&body)
                    .nonce(Some(&nonce))
                    .send()
                    .await?;
                tracing::info!(machine = %m.id, "updated machine; waiting for it to start");
                if wants_running {
                    self.wait_started(&m.id, &updated.instance_id, Some(&nonce))
                        .await?;
                }
            } else {
                self.client()
                    .request(
                        &self.label,
                        Method::POST,
                        &["apps", self.app, "machines", &m.id, "start"],
                    )
                    .nonce(Some(&nonce))
                    .send_status(&[])
                    .await?;
                tracing::info!(machine = %m.id, "started machine");
                self.wait_started(&m.id, "", Some(&nonce)).await?;
            }
            Ok::<_, ProviderError>(())
        }
        .await;
        self.release_lease(&m.id, &nonce).await;
        result.map(|()| Outcome::Updated)
    }

    /// Stop, wait for `stopped`, then destroy. The 2024 API description has
    /// no `force`/`kill` parameter on delete (flyctl sends `kill=true`), so
    /// the machine is stopped first, which any API version accepts.
    async fn delete_machine(&self, m: &Machine) -> Result<Outcome, ProviderError> {
        if m.state != "stopped" {
            let stopped = self
                .client()
                .request(
                    &self.label,
                    Method::POST,
                    &["apps", self.app, "machines", &m.id, "stop"],
                )
                .send_status(&[StatusCode::NOT_FOUND])
                .await?;
            if stopped == StatusCode::NOT_FOUND {
                return Ok(Outcome::NotNeeded);
            }
            self.wait_state(&m.id, "", "stopped", None).await?;
        }
        self.delete_at(&["apps", self.app, "machines", &m.id]).await
    }

    /// A replace of a volume or machine: the old one goes, the new one comes.
    async fn delete_then_create(&self) -> Result<Outcome, ProviderError> {
        let (snap, topo) = self.snapshot().await?;
        match self.step.kind {
            Kind::Volume => {
                if let Some(v) = topo.volume_at(&snap, &self.step.address) {
                    self.delete_volume(v).await?;
                }
                let (snap, _) = self.snapshot().await?;
                self.create_volume(&snap).await?;
            }
            _ => {
                if let Some(m) = topo.machine_at(&snap, &self.step.address) {
                    self.delete_machine(m).await?;
                }
                let (snap, topo) = self.snapshot().await?;
                self.create_machine(&snap, &topo).await?;
            }
        }
        Ok(Outcome::Updated)
    }

    // ----- cluster-wide -----

    /// `sync_standbys` is recorded in every machine's metadata; postgres-flex
    /// itself has no setting for it (see docs/fly-provider.md).
    async fn formation(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Delete {
            return Ok(Outcome::NotNeeded);
        }
        let want = match &self.after()?.spec {
            Spec::Formation(f) => f.sync_standbys.as_ref().and_then(Agreed::one),
            _ => None,
        }
        .ok_or_else(|| self.fail("no sync_standbys in the desired formation"))?
        .to_string();
        let (snap, _) = self.snapshot().await?;
        if snap.machines.is_empty() {
            tracing::warn!("no machines to record sync_standbys on");
            return Ok(Outcome::NotNeeded);
        }
        let mut any = false;
        for m in &snap.machines {
            if m.config.metadata.get(meta::SYNC_STANDBYS) == Some(&want) {
                continue;
            }
            self.client()
                .request(
                    &self.label,
                    Method::POST,
                    &[
                        "apps",
                        self.app,
                        "machines",
                        &m.id,
                        "metadata",
                        meta::SYNC_STANDBYS,
                    ],
                )
                .json(&MetadataValue {
                    value: want.clone(),
                })
                .send_status(&[])
                .await?;
            any = true;
        }
        Ok(if any {
            changed(self.step.action)
        } else {
            Outcome::NotNeeded
        })
    }

    /// Fly's proxy on 5432 comes with the machines' services: nothing to
    /// create, only to confirm.
    async fn endpoint(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Delete {
            return Ok(Outcome::NotNeeded);
        }
        let (snap, _) = self.snapshot().await?;
        if snap.machines.iter().any(serves_proxy) {
            Ok(Outcome::NotNeeded)
        } else {
            Err(self.fail(format!(
                "no machine serves port {PG_PROXY_PORT}; the endpoint comes with the machines"
            )))
        }
    }

    /// Retention and daily snapshots on every volume of that name.
    async fn snapshot_policy(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Delete {
            return Ok(Outcome::NotNeeded);
        }
        let Spec::SnapshotPolicy(after) = &self.after()?.spec else {
            return Err(self.fail("not a snapshot policy"));
        };
        if let Some(t) = &after.snapshot_time {
            if t != DEFAULT_SNAPSHOT_TIME {
                return Err(ProviderError::Unsupported {
                    provider: "fly",
                    what: format!(
                        "set snapshot_time {t}: Fly takes daily snapshots at a time it chooses"
                    ),
                });
            }
        }
        let name = self.step.address.name();
        let retention = after.retention_days.as_ref().and_then(Agreed::one).copied();
        let scheduled = after.scheduled.as_ref().and_then(Agreed::one).copied();
        let (snap, _) = self.snapshot().await?;
        let mut any = false;
        for v in snap.volumes.iter().filter(|v| v.name == name) {
            let retention_differs = retention.is_some_and(|r| v.snapshot_retention != Some(r));
            let scheduled_differs =
                scheduled.is_some_and(|s| v.auto_backup_enabled.unwrap_or(true) != s);
            if !retention_differs && !scheduled_differs {
                continue;
            }
            let body = UpdateVolumeRequest {
                snapshot_retention: retention,
                auto_backup_enabled: scheduled,
            };
            self.client()
                .request(
                    &self.label,
                    Method::POST,
                    &["apps", self.app, "volumes", &v.id],
                )
                .json(&body)
                .send_status(&[])
                .await?;
            any = true;
        }
        Ok(if any {
            changed(self.step.action)
        } else {
            Outcome::NotNeeded
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine that names no size.
    fn bare_machine() -> MachineSpec {
        MachineSpec {
            cpu_kind: None,
            cpus: None,
            id: None,
            image: None,
            index: 0,
            instance_id: None,
            leader: None,
            machine_name: None,
            memory_mb: None,
            region: "iad".into(),
            role: Role::Candidate,
            role_check: None,
            state: "running".into(),
            vm_size: None,
            volume: None,
        }
    }

    #[test]
    fn guests_come_from_presets_with_explicit_values_winning() {
        let mut m = bare_machine();
        m.vm_size = Some("performance-2x".into());
        m.memory_mb = Some(4096);
        let g = guest_of(&m);
        assert_eq!(
            (g.cpu_kind.as_str(), g.cpus, g.memory_mb),
            ("performance", 2, 4096)
        );
        m.cpus = Some(4);
        m.cpu_kind = Some("shared".into());
        let g = guest_of(&m);
        assert_eq!((g.cpu_kind.as_str(), g.cpus), ("shared", 4));
    }

    #[test]
    fn the_machine_config_is_the_one_fly_pg_create_makes() {
        let c = postgres_flex_config(
            "flyio/postgres-flex:15",
            "iad",
            guest_of(&bare_machine()),
            "vol_1",
            0,
            None,
        );
        assert_eq!(c.env["PRIMARY_REGION"], "iad");
        assert_eq!(c.mounts[0].path, "/data");
        assert_eq!(c.checks["role"].path, "/flycheck/role");
        assert_eq!(c.checks["role"].port, Some(5500));
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].ports[0].handlers, vec!["pg_tls"]);
        assert_eq!(c.metadata["fly-managed-postgres"], "true");
        assert_eq!(c.metadata["flyplan-index"], "0");
        assert_eq!(c.restart.as_ref().unwrap().policy, "always");
    }
}

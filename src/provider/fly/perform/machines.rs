//! Machines: created on their volume, updated under a lease, waited for,
//! destroyed; a replace is a destroy then a create.

use super::*;

impl Performer<'_> {
    pub(super) async fn machine(&self, action: Action) -> Result<Outcome, ProviderError> {
        let (view, topo) = self.read().await?;
        let existing = topo.machine_at(&view, &self.step.address).cloned();
        match action {
            Action::Create => {
                if existing.is_some() {
                    return Ok(Outcome::NotNeeded);
                }
                self.create_machine().await?;
                Ok(Outcome::Created)
            }
            Action::Update => {
                let result = match existing {
                    Some(m) => self.update_machine(&m).await,
                    None => {
                        Err(self.fail(format!("{} does not exist; plan again", self.step.address)))
                    }
                };
                self.rolling_step_done(result.is_err()).await;
                result
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

    /// Create the step's machine on its volume. Placements happen one at a
    /// time, each on its own read of the app: steps of one apply run in
    /// parallel, and two creates must not pick the same free volume.
    pub(super) async fn create_machine(&self) -> Result<(), ProviderError> {
        let placing = self.p.placement.lock().await;
        let (view, topo) = self.read().await?;
        let (view, topo) = (&view, &topo);
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
        let attached: Vec<&str> = view
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
                .volume_at(view, addr)
                .filter(free)
                .or_else(|| {
                    let (name, vregion) = match addr.target() {
                        Target::Volume { name, region, .. } => (name, region),
                        _ => return None,
                    };
                    let mut candidates: Vec<&Volume> = view
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

        let config =
            postgres_flex_config(image, &primary_region, guest_of(after), &volume.id, index);
        let body = MachineRequest {
            config,
            region: region.clone(),
            min_secrets_version: self.p.ledger(self.app).secrets()?.version,
        };
        let call = self
            .client()
            .request(&self.label, Method::POST, &["apps", self.app, "machines"])
            .json(&body);
        let volume_id = volume.id.clone();
        let m: Machine = self
            .create_checked(call, |now| {
                now.machines
                    .iter()
                    .find(|m| m.config.mounts.iter().any(|x| x.volume == volume_id))
                    .cloned()
            })
            .await?;
        drop(placing);
        tracing::info!(machine = %m.id, address = %self.step.address, volume = %volume.id, "created machine; waiting for it to start");
        self.wait_started(&m.id, &m.instance_id, None).await?;
        // The first node must have initialised the cluster (its role check
        // says primary) before any other boots, or that one provisions a
        // second primary; later nodes are waited for until every check
        // passes, as flyctl's watch does.
        let first = after.role == Role::Candidate
            && !view
                .machines
                .iter()
                .any(|x| role_check(x) == Some("primary"));
        self.wait_checks(&m.id, first).await
    }

    /// Read the machine until its checks pass: with `primary`, until its
    /// `role` check passes with `primary` (postgres-flex
    /// `internal/flycheck/role.go`), else until every check passes.
    pub(super) async fn wait_checks(&self, id: &str, primary: bool) -> Result<(), ProviderError> {
        let deadline = Instant::now() + self.p.timeouts.health;
        loop {
            let m: Machine = self
                .client()
                .request(
                    &self.label,
                    Method::GET,
                    &["apps", self.app, "machines", id],
                )
                .send()
                .await?;
            let done = if primary {
                role_check(&m) == Some("primary")
            } else {
                !m.checks.is_empty() && m.checks.iter().all(|c| c.status == "passing")
            };
            if done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let failing: Vec<String> = m
                    .checks
                    .iter()
                    .filter(|c| c.status != "passing")
                    .map(|c| format!("{} {}", c.name, c.status))
                    .collect();
                let want = if primary {
                    "its role check to say primary"
                } else {
                    "all its checks to pass"
                };
                return Err(self.fail(format!(
                    "machine {id} did not get {want} within {} s (failing: {})",
                    self.p.timeouts.health.as_secs(),
                    if failing.is_empty() {
                        "none reported".to_string()
                    } else {
                        failing.join(", ")
                    }
                )));
            }
            tokio::time::sleep(self.p.timeouts.check_poll).await;
        }
    }

    /// Wait until the machine is `started`.
    pub(super) async fn wait_started(
        &self,
        id: &str,
        instance_id: &str,
        nonce: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.wait_state(id, instance_id, "started", nonce).await
    }

    /// Wait until the machine is in `state`, in slices the API serves.
    pub(super) async fn wait_state(
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

    pub(super) async fn acquire_lease(&self, id: &str) -> Result<String, ProviderError> {
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

    pub(super) async fn release_lease(&self, id: &str, nonce: &str) {
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
    /// leader last. Each machine is updated under a lease. A change to the
    /// leader is preceded by a switchover to a healthy standby of the
    /// primary region when there is one (see [`Performer::switchover`]);
    /// without one the leader is updated in place, as `fly image update`
    /// does for postgres-flex (repmgr fails over if it stays down).
    pub(super) async fn update_machine(&self, m: &Machine) -> Result<Outcome, ProviderError> {
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
        let handover = role_check(m) == Some("primary") && config_changed;
        let rolling = self.rolling_lease(m).await?;
        let (nonce, held) = self.lease_for_change(m, handover, rolling.clone()).await?;
        let result = async {
            if config_changed {
                let updated = self.post_update(m, config, &nonce).await?;
                tracing::info!(machine = %m.id, "updated machine; waiting for it to start");
                if wants_running {
                    self.wait_started(&m.id, &updated.instance_id, Some(&nonce))
                        .await?;
                    self.wait_checks(&m.id, false).await?;
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
                self.wait_checks(&m.id, false).await?;
            }
            Ok::<_, ProviderError>(())
        }
        .await;
        if rolling.is_none() {
            self.release_lease(&m.id, &nonce).await;
        }
        self.release_all(&held).await;
        result.map(|()| Outcome::Updated)
    }

    /// `POST …/machines/{id}` with `config` and the secrets version
    /// flyplan last wrote, under the lease `nonce`.
    pub(super) async fn post_update(
        &self,
        m: &Machine,
        config: MachineConfig,
        nonce: &str,
    ) -> Result<Machine, ProviderError> {
        let body = MachineRequest {
            config,
            region: m.region.clone(),
            min_secrets_version: self.p.ledger(self.app).secrets()?.version,
        };
        self.client()
            .request(
                &self.label,
                Method::POST,
                &["apps", self.app, "machines", &m.id],
            )
            .json(&body)
            .nonce(Some(nonce))
            .send()
            .await
    }

    /// The machine updates of this apply.
    fn update_steps(&self) -> usize {
        self.ctx
            .steps
            .iter()
            .filter(|s| s.kind == Kind::Machine && s.action == Action::Update)
            .count()
    }

    /// With more than one machine to update, every machine of the app is
    /// leased before the first is touched, as `fly image update` does
    /// (flyctl `internal/command/image/update_machines.go:96-101`), and the
    /// leases are kept until the last update step ends (see
    /// [`Self::rolling_step_done`]). Returns the nonce held for `m`.
    async fn rolling_lease(&self, m: &Machine) -> Result<Option<String>, ProviderError> {
        if self.update_steps() < 2 {
            return Ok(None);
        }
        let mut rolling = self.p.rolling.lock().await;
        if rolling.nonces.is_empty() {
            let (view, _) = self.read().await?;
            for x in &view.machines {
                match self.acquire_lease(&x.id).await {
                    Ok(nonce) => {
                        rolling.nonces.insert(x.id.clone(), nonce);
                    }
                    Err(e) => {
                        let held: Vec<_> =
                            std::mem::take(&mut rolling.nonces).into_iter().collect();
                        self.release_all(&held).await;
                        return Err(e);
                    }
                }
            }
        }
        Ok(rolling.nonces.get(&m.id).cloned())
    }

    /// Count a machine update step as done; after the last one, or after
    /// a failure, release the rolling update's leases.
    async fn rolling_step_done(&self, failed: bool) {
        let total = self.update_steps();
        if total < 2 {
            return;
        }
        let mut rolling = self.p.rolling.lock().await;
        rolling.done += 1;
        if failed || rolling.done >= total {
            let held: Vec<_> = std::mem::take(&mut rolling.nonces).into_iter().collect();
            rolling.done = 0;
            self.release_all(&held).await;
        }
    }

    /// The lease to change `m` under, and with `handover` (a change to the
    /// leader) first a lease on every other machine, as `fly pg failover`
    /// holds them all (flyctl `internal/command/postgres/failover.go:86-90`),
    /// then a switchover away from it when a standby qualifies. Returns the
    /// nonce and the other leases; on an error every lease is released.
    pub(super) async fn lease_for_change(
        &self,
        m: &Machine,
        handover: bool,
        rolling: Option<String>,
    ) -> Result<(String, Vec<(String, String)>), ProviderError> {
        // A rolling update holds every lease already.
        let held = if handover && rolling.is_none() {
            self.lease_others(&m.id).await?
        } else {
            Vec::new()
        };
        let nonce = match rolling {
            Some(n) => n,
            None => match self.acquire_lease(&m.id).await {
                Ok(n) => n,
                Err(e) => {
                    self.release_all(&held).await;
                    return Err(e);
                }
            },
        };
        if handover {
            let switched = match self.read().await {
                Ok((view, _)) => self.switchover(&view, m).await,
                Err(e) => Err(e),
            };
            match switched {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(machine = %m.id, "no healthy standby in the primary region: changing the leader in place");
                }
                Err(e) => {
                    self.release_lease(&m.id, &nonce).await;
                    self.release_all(&held).await;
                    return Err(e);
                }
            }
        }
        Ok((nonce, held))
    }

    /// Leases on every machine but `id`, as `(machine, nonce)`; none held
    /// when one cannot be had.
    async fn lease_others(&self, id: &str) -> Result<Vec<(String, String)>, ProviderError> {
        let (view, _) = self.read().await?;
        let mut held = Vec::new();
        for other in view.machines.iter().filter(|x| x.id != id) {
            match self.acquire_lease(&other.id).await {
                Ok(nonce) => held.push((other.id.clone(), nonce)),
                Err(e) => {
                    self.release_all(&held).await;
                    return Err(e);
                }
            }
        }
        Ok(held)
    }

    /// Restart a node (to see its grown volume, or to take a setting only
    /// a restart takes): under a lease; the leader after a switchover (as
    /// for an update), then
    /// `POST …/restart`, waiting for `started` and for all checks.
    pub(super) async fn restart_node(&self, m: &Machine) -> Result<(), ProviderError> {
        let leader = role_check(m) == Some("primary");
        let (nonce, held) = self.lease_for_change(m, leader, None).await?;
        let result = async {
            self.client()
                .request(
                    &self.label,
                    Method::POST,
                    &["apps", self.app, "machines", &m.id, "restart"],
                )
                .nonce(Some(&nonce))
                .send_status(&[])
                .await?;
            tracing::info!(machine = %m.id, "restarted the node");
            self.wait_started(&m.id, "", Some(&nonce)).await?;
            self.wait_checks(&m.id, false).await
        }
        .await;
        self.release_lease(&m.id, &nonce).await;
        self.release_all(&held).await;
        result
    }

    pub(super) async fn release_all(&self, held: &[(String, String)]) {
        for (id, nonce) in held {
            self.release_lease(id, nonce).await;
        }
    }

    /// Hand the leader's role to a healthy standby of the primary region
    /// before the leader restarts, the way `fly pg failover` picks one
    /// (flyctl `internal/command/postgres/failover.go:370-428`): a started
    /// machine in `PRIMARY_REGION` with every check passing, on which
    /// `repmgr standby switchover --dry-run` succeeds; then the switchover
    /// itself on it, and a wait until its `role` check says `primary`.
    /// repmgr runs as `postgres` (`gosu postgres`, as postgres-flex runs it,
    /// `cmd/start/main.go:102`), through `exec` where flyctl uses SSH.
    ///
    /// Returns false when no standby qualifies.
    async fn switchover(&self, view: &AppView, leader: &Machine) -> Result<bool, ProviderError> {
        const REPMGR: [&str; 7] = [
            "gosu",
            "postgres",
            "repmgr",
            "standby",
            "switchover",
            "-f",
            "/data/repmgr.conf",
        ];
        let primary_region = leader.config.env.get("PRIMARY_REGION");
        let candidates = view.machines.iter().filter(|x| {
            x.id != leader.id
                && x.state == "started"
                && Some(&x.region) == primary_region
                && role_check(x) == Some("replica")
                && !x.checks.is_empty()
                && x.checks.iter().all(|c| c.status == "passing")
        });
        for c in candidates {
            let mut dry = REPMGR.to_vec();
            dry.push("--dry-run");
            if let Err(e) = self.exec(&c.id, &dry).await {
                tracing::info!(machine = %c.id, error = %e, "not a switchover candidate");
                continue;
            }
            let mut run = REPMGR.to_vec();
            run.push("--siblings-follow");
            self.exec(&c.id, &run).await?;
            tracing::info!(from = %leader.id, to = %c.id, "switched the leader over");
            self.wait_checks(&c.id, true).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Destroy the node, then unregister it from repmgr on the leader, as
    /// `fly machine destroy` does for a repmgr image
    /// (`internal/command/machine/destroy.go:119-194`,
    /// `lifecycle_hooks.go`): a lease on the node first, held until the
    /// destroy hook has run; then `pg_unregister <base64 machine id>` on the
    /// leader, which answers `{success, message, data}` on stdout. flyctl
    /// runs it over SSH; flyplan through the Machines API `exec` endpoint.
    pub(super) async fn delete_machine(&self, m: &Machine) -> Result<Outcome, ProviderError> {
        let nonce = self.acquire_lease(&m.id).await?;
        let result = async {
            let outcome = self.destroy_machine(m, &nonce).await?;
            if outcome == Outcome::Deleted {
                self.unregister(&m.id).await?;
            }
            Ok(outcome)
        }
        .await;
        // Gone with the machine once it is destroyed (a 404 then).
        self.release_lease(&m.id, &nonce).await;
        result
    }

    /// Run `command` in machine `id`; a non-zero exit code is an error.
    pub(super) async fn exec(
        &self,
        id: &str,
        command: &[&str],
    ) -> Result<ExecResponse, ProviderError> {
        let command = command.iter().map(|s| s.to_string()).collect();
        crate::provider::fly::exec::exec(self.client(), &self.label, self.app, id, command, None)
            .await
    }

    async fn unregister(&self, removed: &str) -> Result<(), ProviderError> {
        use base64::Engine as _;
        let (view, _) = self.read().await?;
        let Some(leader) = view
            .machines
            .iter()
            .find(|x| x.id != removed && role_check(x) == Some("primary"))
        else {
            tracing::warn!(
                machine = removed,
                "no leader to unregister the node on; postgres-flex's monitor will remove it"
            );
            return Ok(());
        };
        let encoded = base64::engine::general_purpose::STANDARD.encode(removed);
        let reply = self
            .exec(&leader.id, &["pg_unregister", encoded.as_str()])
            .await?;
        #[derive(serde::Deserialize)]
        struct Answer {
            success: bool,
            #[serde(default)]
            message: String,
        }
        let answer: Answer = serde_json::from_str(reply.stdout.trim()).map_err(|e| {
            self.fail(format!(
                "pg_unregister answered something else than JSON: {e}"
            ))
        })?;
        if !answer.success {
            return Err(self.fail(format!(
                "pg_unregister of machine {removed} on the leader {} failed: {}",
                leader.id, answer.message
            )));
        }
        tracing::info!(machine = removed, leader = %leader.id, "unregistered the node from the cluster");
        Ok(())
    }

    /// Stop, wait for `stopped`, then `DELETE …?kill=false` with the lease's
    /// nonce, as `fly machine destroy` without `--force` sends it (fly-go
    /// `flaps/flaps_machines.go`, `Destroy`): a node that started again in
    /// between is refused, not killed.
    async fn destroy_machine(&self, m: &Machine, nonce: &str) -> Result<Outcome, ProviderError> {
        if m.state != "stopped" {
            let stopped = self
                .client()
                .request(
                    &self.label,
                    Method::POST,
                    &["apps", self.app, "machines", &m.id, "stop"],
                )
                .nonce(Some(nonce))
                .send_status(&[StatusCode::NOT_FOUND])
                .await?;
            if stopped == StatusCode::NOT_FOUND {
                return Ok(Outcome::NotNeeded);
            }
            self.wait_state(&m.id, "", "stopped", Some(nonce)).await?;
        }
        let status = self
            .client()
            .request(
                &self.label,
                Method::DELETE,
                &["apps", self.app, "machines", &m.id],
            )
            .query("kill", "false")
            .nonce(Some(nonce))
            .send_status(&[StatusCode::NOT_FOUND])
            .await?;
        Ok(if status == StatusCode::NOT_FOUND {
            Outcome::NotNeeded
        } else {
            tracing::info!(machine = %m.id, "destroyed");
            Outcome::Deleted
        })
    }

    /// A replace of a volume or machine: the old one goes, the new one comes.
    pub(super) async fn delete_then_create(&self) -> Result<Outcome, ProviderError> {
        let (view, topo) = self.read().await?;
        match self.step.kind {
            Kind::Volume => {
                if let Some(v) = topo.volume_at(&view, &self.step.address) {
                    self.delete_volume(v).await?;
                }
                let (view, _) = self.read().await?;
                self.create_volume(&view, &self.step.address).await?;
            }
            _ => {
                if let Some(m) = topo.machine_at(&view, &self.step.address) {
                    self.delete_machine(m).await?;
                }
                self.create_machine().await?;
            }
        }
        Ok(Outcome::Updated)
    }
}

/// The leases a rolling update holds across its steps, by machine id, and
/// how many of its machine update steps have ended.
#[derive(Debug, Default)]
pub struct RollingLeases {
    nonces: BTreeMap<String, String>,
    done: usize,
}

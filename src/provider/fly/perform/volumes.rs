//! Volumes: created with flyctl's placement, extended, destroyed.

use super::*;
use crate::model::Address;

impl Performer<'_> {
    pub(super) async fn volume(&self, action: Action) -> Result<Outcome, ProviderError> {
        if action == Action::Create {
            return self.create_volume_at_address().await;
        }
        let (view, topo) = self.read().await?;
        let existing = topo.volume_at(&view, &self.step.address);
        match action {
            Action::Create => unreachable!("handled above"),
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
                // Fly says when the machine must restart to see the space
                // (fly-go `ExtendVolumeResponse.NeedsRestart`): restart it
                // in this apply.
                if reply.needs_restart {
                    let m = view.machines.iter().find(|m| {
                        m.config.mounts.iter().any(|x| x.volume == vol.id)
                            || vol.attached_machine_id.as_deref() == Some(m.id.as_str())
                    });
                    if let Some(m) = m.filter(|m| m.state == "started") {
                        self.restart_node(m).await?;
                    }
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

    /// Make volumes until one is at the step's address. A volume nobody
    /// mounts takes the lowest free index of its region
    /// (`observe::topology`), so one made for index 2 while index 1 has
    /// none yet is seen at index 1, and the step for index 1, run beside
    /// it, would then find "its" volume and make none. Creates therefore
    /// run one at a time, each on a fresh read, and go on until the
    /// address exists: however the steps interleave, each index gets one
    /// volume.
    async fn create_volume_at_address(&self) -> Result<Outcome, ProviderError> {
        let _placing = self.p.placement.lock().await;
        let (name, region, index) = match self.step.address.target() {
            Target::Volume {
                name,
                region,
                index,
            } => (name, region, *index),
            _ => return Err(self.fail("not a volume address")),
        };
        let mut made = 0;
        loop {
            let (view, topo) = self.read().await?;
            // The lowest address up to this one that has no volume: where
            // the next one made will be seen (the snapshot of a restore
            // goes to its own address only).
            let Some(next) = (0..=index)
                .map(|i| Address::volume(name, region, i))
                .find(|a| topo.volume_at(&view, a).is_none())
            else {
                return Ok(if made == 0 {
                    Outcome::NotNeeded
                } else {
                    Outcome::Created
                });
            };
            if made > index {
                return Err(self.fail(format!(
                    "made {made} volume(s) and none is at {next}; plan again"
                )));
            }
            self.create_volume(&view, &next).await?;
            made += 1;
        }
    }

    /// Make one volume of the step's desired shape; `at` is the address it
    /// will be seen at, which decides whether it starts from the restore's
    /// snapshot.
    pub(super) async fn create_volume(
        &self,
        view: &AppView,
        at: &Address,
    ) -> Result<Volume, ProviderError> {
        let after = self.after_volume()?;
        let name = after.name.clone();
        let region = after.region.clone();
        let size_gb = after.size_gb;
        // A new node's volume takes the snapshot policy its siblings have
        // (the desired volume does not carry it), so that scaling out does
        // not leave one volume on Fly's defaults.
        let siblings: Vec<&Volume> = view.volumes.iter().filter(|v| v.name == name).collect();
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
        // The machine that will mount it: the plan's, else a sibling's.
        let planned = self
            .ctx
            .steps
            .iter()
            .filter_map(|s| s.after.as_ref()?.machine())
            .find(|m| m.volume.as_ref() == Some(&self.step.address));
        let (compute, compute_image) = match planned {
            Some(m) => (Some(guest_of(m)), m.image.clone()),
            None => view
                .machines
                .iter()
                .find(|m| m.region == region)
                .map_or((None, None), |m| {
                    (m.config.guest.clone(), Some(m.config.image.clone()))
                }),
        };
        let body = CreateVolumeRequest {
            compute,
            compute_image,
            name,
            region,
            size_gb,
            encrypted: true,
            require_unique_zone: true,
            snapshot_retention: sibling_retention,
            auto_backup_enabled: sibling_backups,
            // A cluster restored from a snapshot: the first node's volume
            // starts from it, as `fly pg create --snapshot-id` does.
            snapshot_id: self
                .ctx
                .restore
                .filter(|r| r.volume == at)
                .map(|r| r.snapshot.to_string()),
        };
        let before: Vec<String> = view.volumes.iter().map(|v| v.id.clone()).collect();
        let (want_name, want_region) = (body.name.clone(), body.region.clone());
        let call = self
            .client()
            .request(&self.label, Method::POST, &["apps", self.app, "volumes"])
            .json(&body);
        let vol: Volume = self
            .create_checked(call, |now| {
                now.volumes
                    .iter()
                    .find(|v| {
                        !before.contains(&v.id)
                            && v.name == want_name
                            && v.region == want_region
                            && v.attached_machine_id.as_deref().is_none_or(str::is_empty)
                    })
                    .cloned()
            })
            .await?;
        tracing::info!(volume = %vol.id, address = %self.step.address, "created volume");
        Ok(vol)
    }

    pub(super) async fn delete_volume(&self, vol: &Volume) -> Result<Outcome, ProviderError> {
        self.delete_at(&["apps", self.app, "volumes", &vol.id])
            .await
    }
}

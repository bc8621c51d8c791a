//! Cluster-wide settings: `sync_standbys` through postgres-flex's settings
//! API, the proxy
//! endpoint, and the snapshot policy of every volume of a name.

use super::*;

impl Performer<'_> {
    /// `sync_standbys` as `synchronous_standby_names`, through
    /// postgres-flex's settings API on the leader (see
    /// [`crate::provider::fly::settings`]).
    pub(super) async fn formation(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Delete {
            return Ok(Outcome::NotNeeded);
        }
        let want = match &self.after()?.spec {
            Spec::Formation(f) => f.sync_standbys.as_ref().and_then(Agreed::one).copied(),
            _ => None,
        }
        .ok_or_else(|| self.fail("no sync_standbys in the desired formation"))?;
        let (view, _) = self.read().await?;
        let leader = view
            .machines
            .iter()
            .find(|m| m.state == "started" && role_check(m) == Some("primary"))
            .ok_or_else(|| {
                self.fail("no machine is the leader to set synchronous_standby_names on")
            })?;
        let client = self.client();
        let now = crate::provider::fly::settings::read_sync_standbys(
            client,
            &self.label,
            self.app,
            &leader.id,
        )
        .await?;
        if now == want {
            return Ok(Outcome::NotNeeded);
        }
        crate::provider::fly::settings::set_sync_standbys(
            client,
            &self.label,
            self.app,
            &leader.id,
            &view.machines,
            want,
        )
        .await?;
        Ok(changed(self.step.action))
    }

    /// Fly's proxy on 5432 comes with the machines' services: nothing to
    /// create, only to confirm.
    pub(super) async fn endpoint(&self) -> Result<Outcome, ProviderError> {
        if self.step.action == Action::Delete {
            return Ok(Outcome::NotNeeded);
        }
        let (view, _) = self.read().await?;
        if view.machines.iter().any(serves_proxy) {
            Ok(Outcome::NotNeeded)
        } else {
            Err(self.fail(format!(
                "no machine serves port {PG_PROXY_PORT}; the endpoint comes with the machines"
            )))
        }
    }

    /// Retention and daily snapshots on every volume of that name.
    pub(super) async fn snapshot_policy(&self) -> Result<Outcome, ProviderError> {
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
        let (view, _) = self.read().await?;
        let mut any = false;
        for v in view.volumes.iter().filter(|v| v.name == name) {
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
                    Method::PUT,
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

//! The cluster's app: created as `fly pg create` does, destroyed with
//! everything in it.

use super::*;

impl Performer<'_> {
    pub(super) async fn app(&self) -> Result<Outcome, ProviderError> {
        let ledger = self.p.ledger(self.app);
        match self.step.action {
            Action::Create | Action::Update | Action::Replace => {
                let existing = self
                    .client()
                    .request(&self.label, Method::GET, &["apps", self.app])
                    .send_opt::<crate::provider::fly::api::App>()
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
                        // `?wait=true`: the answer comes once the app can
                        // take the calls that follow (fly-go
                        // `flaps/flaps_apps.go`, `CreateApp`).
                        self.client()
                            .request(&self.label, Method::POST, &["apps"])
                            .query("wait", "true")
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
                        let (view, topo) = self.read().await?;
                        match (&desired_region, &topo.primary_region) {
                            (Some(want), Some(have))
                                if want != have && !view.machines.is_empty() =>
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
                // What postgres-flex needs to boot, before any machine.
                let bootstrapped = if self.step.action == Action::Create {
                    self.bootstrap().await?
                } else {
                    false
                };
                let outcome = match outcome {
                    Outcome::NotNeeded if bootstrapped => Outcome::Updated,
                    o => o,
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
}

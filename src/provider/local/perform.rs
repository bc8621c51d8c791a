//! Carrying out one plan step on the local provider, kind by kind: each
//! step is idempotent and says whether it changed anything.

use std::collections::BTreeMap;

use super::app::{AppCtx, AppRecord, VolumeRecord};
use super::state::{self, FileLock};
use super::{keeper, LocalProvider};
use crate::model::{Address, Agreed, Kind, Resource, SnapshotPolicySpec, Spec};
use crate::plan::{Action, Step};
use crate::provider::{Outcome, ProviderError, StepContext};

impl LocalProvider {
    fn perform_app(
        &self,
        ctx: &AppCtx<'_>,
        step: &Step,
        sctx: &StepContext<'_>,
    ) -> Result<Outcome, ProviderError> {
        match step.action {
            Action::Delete => {
                let existed = ctx.paths.root.exists();
                self.destroy_all(ctx.name)?;
                Ok(not_needed_or(existed, Outcome::Deleted))
            }
            _ => {
                let after = desired(step)?;
                let existed = ctx.exists();
                // A new cluster from a snapshot: refuse a snapshot that is
                // missing or fails verification before anything is made.
                let app = after
                    .app()
                    .ok_or_else(|| ProviderError::failed(step.address.as_str(), "not an app"))?;
                let restore_from = app.restore_from.as_deref().filter(|_| !existed);
                if let Some(id) = restore_from {
                    self.check_restorable(ctx.name, id)?;
                }
                let restore_backup = app.restore_backup.as_deref().filter(|_| !existed);
                ctx.make_layout()?;
                if let Some(input) = restore_backup {
                    let secret = input.split('?').next().unwrap_or(input);
                    if let Err(e) = ctx.prepare_backup_restore(input, sctx.secrets.get(secret)) {
                        // Nothing of the app stays behind a refused restore.
                        let _ = self.destroy_all(ctx.name);
                        return Err(e);
                    }
                }
                if let Some(id) = restore_from {
                    ctx.record_restore(id)?;
                }
                let rec = AppRecord {
                    primary_region: app.primary_region.clone(),
                };
                let had: Option<AppRecord> = state::read_json(&ctx.paths.app_json())?;
                let mut changed = had.as_ref() != Some(&rec);
                changed |= ctx.ensure_monitor()?;
                if had.as_ref() != Some(&rec) {
                    state::write_json(&ctx.paths.app_json(), &rec, 0o644)?;
                }
                let outcome = if existed {
                    Outcome::Updated
                } else {
                    Outcome::Created
                };
                Ok(not_needed_or(changed, outcome))
            }
        }
    }

    fn perform_secret(
        &self,
        ctx: &AppCtx<'_>,
        step: &Step,
        sctx: &StepContext<'_>,
    ) -> Result<Outcome, ProviderError> {
        let name = secret_name(&step.address);
        match step.action {
            Action::Delete => Ok(not_needed_or(ctx.remove_secret(&name)?, Outcome::Deleted)),
            action => {
                let value = sctx.secrets.get(&name).ok_or_else(|| {
                    ProviderError::failed(
                        format!("secret {name}"),
                        "no value was given for it in this apply",
                    )
                })?;
                require_app(ctx)?;
                let changed = ctx.store_secret(&name, value)?;
                Ok(not_needed_or(changed, created_or_updated(action)))
            }
        }
    }

    fn perform_volume(&self, ctx: &AppCtx<'_>, step: &Step) -> Result<Outcome, ProviderError> {
        let r = step
            .after
            .as_ref()
            .or(step.before.as_ref())
            .ok_or_else(|| {
                ProviderError::failed(step.address.as_str(), "a step without a resource")
            })?;
        let (name, region, index) = keeper::volume_parts(&r.address)
            .ok_or_else(|| ProviderError::failed(r.address.as_str(), "not a volume address"))?;
        let dir = ctx.paths.volume_dir(name, region, index);
        match step.action {
            Action::Delete => {
                let existed = dir.exists();
                for m in ctx.machines() {
                    if m.volume == r.address && ctx.node_running(&m) {
                        return Err(ProviderError::failed(
                            r.address.as_str(),
                            format!("machine {} still uses it", m.address),
                        ));
                    }
                }
                state::remove_dir(&dir)?;
                Ok(not_needed_or(existed, Outcome::Deleted))
            }
            action => {
                require_app(ctx)?;
                let size_gb = r.volume().map_or(1, |v| v.size_gb);
                let path = dir.join("volume.json");
                let had: Option<VolumeRecord> = state::read_json(&path)?;
                if let Some(h) = &had {
                    if size_gb < h.size_gb {
                        return Err(ProviderError::failed(
                            r.address.as_str(),
                            format!("a volume cannot shrink ({} GB to {size_gb} GB)", h.size_gb),
                        ));
                    }
                }
                ctx.user().mkdir(&dir, 0o700)?;
                let rec = VolumeRecord {
                    name: name.to_string(),
                    region: region.to_string(),
                    index,
                    size_gb,
                };
                if had.as_ref() == Some(&rec) {
                    return Ok(Outcome::NotNeeded);
                }
                state::write_json(&path, &rec, 0o644)?;
                Ok(created_or_updated(action))
            }
        }
    }

    fn perform_formation(&self, ctx: &AppCtx<'_>, step: &Step) -> Result<Outcome, ProviderError> {
        match step.action {
            Action::Delete => {
                let existed = ctx.paths.formation().exists();
                state::remove_file(&ctx.paths.formation())?;
                Ok(not_needed_or(existed, Outcome::Deleted))
            }
            action => {
                let after = desired(step)?;
                let want = match &after.spec {
                    Spec::Formation(f) => f.sync_standbys.as_ref().and_then(Agreed::one),
                    _ => None,
                };
                let want = want.map_or(0, |n| *n as i64);
                let changed = ctx.ensure_formation(want)?;
                Ok(not_needed_or(changed, created_or_updated(action)))
            }
        }
    }

    fn perform_snapshot_policy(
        &self,
        ctx: &AppCtx<'_>,
        step: &Step,
    ) -> Result<Outcome, ProviderError> {
        let volume = step.address.name().to_string();
        let _guard = FileLock::acquire(&ctx.paths.state_lock())?;
        let mut all: BTreeMap<String, SnapshotPolicySpec> =
            state::read_json(&ctx.paths.snapshot_policy())?.unwrap_or_default();
        let outcome = match step.action {
            Action::Delete => not_needed_or(all.remove(&volume).is_some(), Outcome::Deleted),
            action => {
                require_app(ctx)?;
                let after = desired(step)?;
                let Spec::SnapshotPolicy(rec) = after.spec.clone() else {
                    return Err(ProviderError::failed(
                        step.address.as_str(),
                        "not a snapshot policy",
                    ));
                };
                if all.get(&volume) == Some(&rec) {
                    return Ok(Outcome::NotNeeded);
                }
                all.insert(volume, rec);
                created_or_updated(action)
            }
        };
        state::write_json(&ctx.paths.snapshot_policy(), &all, 0o644)?;
        Ok(outcome)
    }

    pub(super) fn perform_once(
        &self,
        step: &Step,
        action: Action,
        sctx: &StepContext<'_>,
    ) -> Result<Outcome, ProviderError> {
        let ctx = self.app(sctx.app);
        let mut step = step.clone();
        step.action = action;
        let step = &step;
        match step.kind {
            Kind::App => self.perform_app(&ctx, step, sctx),
            Kind::Secret => self.perform_secret(&ctx, step, sctx),
            Kind::Volume => self.perform_volume(&ctx, step),
            Kind::Machine => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_machine(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_machine(desired(step)?, sctx.steps)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::Formation => self.perform_formation(&ctx, step),
            Kind::Endpoint => match action {
                Action::Delete => Ok(not_needed_or(ctx.remove_endpoint()?, Outcome::Deleted)),
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_endpoint()?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::User => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_user(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_user(desired(step)?, sctx)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::Database => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_database(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_database(desired(step)?)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::SnapshotPolicy => self.perform_snapshot_policy(&ctx, step),
            Kind::Parameter => match action {
                // Settings fly.toml stops naming are left as they are.
                Action::Delete => Ok(Outcome::NotNeeded),
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_parameter(desired(step)?, sctx.steps)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
            Kind::BackupPolicy => self.perform_backup_policy(&ctx, step, sctx),
            Kind::Attachment => match action {
                Action::Delete => {
                    let r = existing(step)?;
                    Ok(not_needed_or(ctx.remove_attachment(r)?, Outcome::Deleted))
                }
                _ => {
                    require_app(&ctx)?;
                    let changed = ctx.ensure_attachment(desired(step)?)?;
                    Ok(not_needed_or(changed, created_or_updated(action)))
                }
            },
        }
    }
}

fn not_needed_or(changed: bool, outcome: Outcome) -> Outcome {
    if changed {
        outcome
    } else {
        Outcome::NotNeeded
    }
}

fn desired(step: &Step) -> Result<&Resource, ProviderError> {
    step.after.as_ref().ok_or_else(|| {
        ProviderError::failed(
            step.address.as_str(),
            "a create or update without a desired resource",
        )
    })
}

/// The resource a delete removes: what was observed, else what was wanted.
fn existing(step: &Step) -> Result<&Resource, ProviderError> {
    step.before
        .as_ref()
        .or(step.after.as_ref())
        .ok_or_else(|| ProviderError::failed(step.address.as_str(), "a step without a resource"))
}

fn created_or_updated(action: Action) -> Outcome {
    if action == Action::Create {
        Outcome::Created
    } else {
        Outcome::Updated
    }
}

fn require_app(ctx: &AppCtx<'_>) -> Result<(), ProviderError> {
    if ctx.exists() {
        Ok(())
    } else {
        Err(ProviderError::failed(
            format!("app {}", ctx.name),
            "the app does not exist yet (create app first)",
        ))
    }
}

fn secret_name(address: &Address) -> String {
    address
        .as_str()
        .strip_prefix("secret.")
        .unwrap_or(address.as_str())
        .to_string()
}

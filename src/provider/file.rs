//! A provider whose live state is a JSON file: observe reads it, perform
//! edits it. It makes plan, apply and the reconcile loop testable without
//! servers; it runs no PostgreSQL.

use std::path::PathBuf;

use super::{LockGuard, Outcome, Provider, ProviderError, StepContext};
use crate::live::Live;
use crate::model::{Kind, Resource, Spec};
use crate::plan::{Action, Step};

pub struct FileProvider {
    path: PathBuf,
}

impl FileProvider {
    pub fn new(path: PathBuf) -> Self {
        FileProvider { path }
    }

    fn load(&self, app: &str) -> Result<Live, ProviderError> {
        if !self.path.exists() {
            return Ok(Live::empty(app));
        }
        Live::load(&self.path).map_err(|e| ProviderError::failed("read live state", e.to_string()))
    }

    fn save(&self, live: &Live) -> Result<(), ProviderError> {
        let text = serde_json::to_string_pretty(live).expect("live state serialises");
        crate::fsutil::write_atomic(&self.path, (text + "\n").as_bytes(), None)
            .map_err(|e| ProviderError::io(format!("write {}", self.path.display()), e))
    }
}

impl Provider for FileProvider {
    fn name(&self) -> &'static str {
        "file"
    }

    fn observe(&self, app: &str) -> Result<Live, ProviderError> {
        let mut live = self.load(app)?;
        if live.app.is_empty() {
            live.app = app.to_string();
        }
        Ok(live)
    }

    fn perform(&self, step: &Step, ctx: &StepContext<'_>) -> Result<Outcome, ProviderError> {
        // Steps of one apply may run in parallel threads: serialise edits.
        static EDIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = EDIT.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = self.load(ctx.app)?;
        live.app = ctx.app.to_string();
        let outcome = match (step.action, &step.after) {
            // The app takes everything of it along.
            (Action::Delete, _) if step.kind == Kind::App => {
                live.resources.clear();
                Outcome::Deleted
            }
            (Action::Delete, _) => match live.resources.remove(&step.address) {
                Some(_) => Outcome::Deleted,
                None => Outcome::NotNeeded,
            },
            (_, Some(after)) => {
                // Inputs for apply are not part of what exists.
                let mut want = after.spec.attrs();
                want.retain(|k, _| !after.spec.is_input(k));
                let have = live.resources.get(&step.address);
                let have_attrs = have.map(|h| h.spec.attrs());
                if have_attrs.as_ref() == Some(&want) {
                    Outcome::NotNeeded
                } else {
                    // Keep observations (such as the leader flag) the
                    // desired state does not speak of.
                    let existed = have.is_some();
                    let mut merged = have_attrs.unwrap_or_default();
                    merged.extend(want);
                    let spec = Spec::from_attrs(after.kind(), merged).map_err(|e| {
                        ProviderError::failed(step.address.to_string(), e.to_string())
                    })?;
                    let checks = have.map(|h| h.checks.clone()).unwrap_or_default();
                    live.insert(Resource::new(step.address.clone(), spec).with_checks(checks));
                    if existed {
                        Outcome::Updated
                    } else {
                        Outcome::Created
                    }
                }
            }
            (_, None) => {
                return Err(ProviderError::failed(
                    step.address.to_string(),
                    "step has no desired resource",
                ))
            }
        };
        if outcome != Outcome::NotNeeded {
            self.save(&live)?;
        }
        Ok(outcome)
    }

    fn lock(&self, app: &str) -> Result<Box<dyn LockGuard>, ProviderError> {
        super::lock::lock_file(&self.path.with_extension("lock"), app)
    }
}

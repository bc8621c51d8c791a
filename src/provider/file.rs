//! A provider whose live state is a JSON file: observe reads it, perform
//! edits it. It makes plan, apply and the reconcile loop testable without
//! servers; it runs no PostgreSQL.

use std::path::PathBuf;

use super::{LockGuard, Outcome, Provider, ProviderError, StepContext};
use crate::live::Live;
use crate::model::{attr, Kind};
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
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text + "\n")
            .and_then(|()| std::fs::rename(&tmp, &self.path))
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
                let mut r = after.clone();
                for k in attr::INPUT_ONLY {
                    r.attrs.remove(*k);
                }
                match live.resources.get(&step.address) {
                    Some(have) if have.attrs == r.attrs => Outcome::NotNeeded,
                    Some(have) => {
                        // Keep observations (such as the leader flag) the
                        // desired state does not speak of.
                        let mut merged = have.clone();
                        merged.attrs.extend(r.attrs);
                        merged.sensitive.extend(r.sensitive);
                        live.insert(merged);
                        Outcome::Updated
                    }
                    None => {
                        live.insert(r);
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

//! The per-app secret store: one JSON file readable only by the user who
//! runs flyplan. Values are never logged; only digests leave this module.

use std::collections::BTreeMap;

use super::state::{self, FileLock};
use super::AppCtx;
use crate::provider::ProviderError;

pub(crate) use crate::secrets::digest as secret_digest;

impl AppCtx<'_> {
    /// All stored secrets, by name.
    pub fn stored_secrets(&self) -> Result<BTreeMap<String, String>, ProviderError> {
        Ok(state::read_json(&self.paths.secrets())?.unwrap_or_default())
    }

    /// Store a value; returns whether it changed.
    pub fn store_secret(&self, name: &str, value: &str) -> Result<bool, ProviderError> {
        let _guard = FileLock::acquire(&self.paths.state_lock())?;
        let mut all = self.stored_secrets()?;
        if all.get(name).map(String::as_str) == Some(value) {
            return Ok(false);
        }
        all.insert(name.to_string(), value.to_string());
        state::write_json(&self.paths.secrets(), &all, 0o600)?;
        tracing::info!(app = self.name, secret = name, "secret stored");
        Ok(true)
    }

    /// Remove a value; returns whether it was there.
    pub fn remove_secret(&self, name: &str) -> Result<bool, ProviderError> {
        let _guard = FileLock::acquire(&self.paths.state_lock())?;
        let mut all = self.stored_secrets()?;
        if all.remove(name).is_none() {
            return Ok(false);
        }
        state::write_json(&self.paths.secrets(), &all, 0o600)?;
        Ok(true)
    }
}

//! The per-app secret store: one JSON file readable only by the user who
//! runs flyplan. Values are never logged; only digests leave this module.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::state::{self, FileLock};
use super::AppCtx;
use crate::provider::ProviderError;

/// The digest that stands for a secret value in plans and live state:
/// `sha256:` + hex(SHA-256("flyplan-secret-v1\0{app}\0{name}\0{value}")).
pub(crate) fn secret_digest(app: &str, name: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"flyplan-secret-v1\0");
    h.update(app.as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_digest_depends_on_app_name_and_value() {
        let d = secret_digest("a", "N", "v");
        assert!(d.starts_with("sha256:") && d.len() == 7 + 64);
        assert_ne!(d, secret_digest("b", "N", "v"));
        assert_ne!(d, secret_digest("a", "M", "v"));
        assert_ne!(d, secret_digest("a", "N", "w"));
        assert_eq!(d, secret_digest("a", "N", "v"));
    }
}

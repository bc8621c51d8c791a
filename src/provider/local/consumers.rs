//! Secrets of attached apps: the local stand-in for the secrets of a Fly app
//! that consumes a cluster. One file per consumer under
//! `<state_dir>/consumers/`, readable only by the user who runs flyplan;
//! `flyplan env -a APP` prints it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{self, FileLock};
use crate::provider::ProviderError;

/// One variable set on a consumer app by an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSecret {
    /// The value (a connection URL with its password).
    pub value: String,
    /// The cluster app whose attachment set it.
    pub cluster: String,
    pub database: String,
    pub user: String,
    /// Digest of the password verifier the value matches (see
    /// `sql::attach::verifier_digest`).
    pub verifier: String,
}

/// The secrets of consumer apps under one state dir.
pub struct ConsumerStore {
    dir: PathBuf,
}

impl ConsumerStore {
    pub fn new(state_dir: &Path) -> Self {
        ConsumerStore {
            dir: state_dir.join("consumers"),
        }
    }

    fn file(&self, app: &str) -> PathBuf {
        self.dir.join(format!("{app}.json"))
    }

    fn lock(&self, app: &str) -> Result<FileLock, ProviderError> {
        state::mkdir(&self.dir, 0o700)?;
        FileLock::acquire(&self.dir.join(format!("{app}.lock")))
    }

    /// Every variable of a consumer app.
    pub fn read(&self, app: &str) -> Result<BTreeMap<String, ConsumerSecret>, ProviderError> {
        Ok(state::read_json(&self.file(app))?.unwrap_or_default())
    }

    /// Set a variable for `cluster`. Refuses to take over a variable that
    /// another cluster's attachment set. Returns whether anything changed.
    pub fn set(
        &self,
        app: &str,
        variable: &str,
        secret: ConsumerSecret,
    ) -> Result<bool, ProviderError> {
        let _guard = self.lock(app)?;
        let mut all = self.read(app)?;
        if let Some(had) = all.get(variable) {
            if had.cluster != secret.cluster {
                return Err(ProviderError::failed(
                    format!("attachment {app}"),
                    format!(
                        "{variable} on app {app} is already set by the attachment of cluster {}; \
                         set `variable` in this attachment to another name",
                        had.cluster
                    ),
                ));
            }
            if *had == secret {
                return Ok(false);
            }
        }
        all.insert(variable.to_string(), secret);
        state::write_json(&self.file(app), &all, 0o600)?;
        tracing::info!(app, variable, "consumer secret set");
        Ok(true)
    }

    /// Unset a variable if `cluster` set it. Returns whether it was there.
    pub fn unset(&self, app: &str, variable: &str, cluster: &str) -> Result<bool, ProviderError> {
        let _guard = self.lock(app)?;
        let mut all = self.read(app)?;
        if all.get(variable).is_none_or(|s| s.cluster != cluster) {
            return Ok(false);
        }
        all.remove(variable);
        if all.is_empty() {
            state::remove_file(&self.file(app))?;
        } else {
            state::write_json(&self.file(app), &all, 0o600)?;
        }
        tracing::info!(app, variable, "consumer secret unset");
        Ok(true)
    }

    /// Every variable any consumer got from `cluster`, as (app, variable).
    pub fn set_by(
        &self,
        cluster: &str,
    ) -> Result<Vec<(String, String, ConsumerSecret)>, ProviderError> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(app) = name.strip_suffix(".json") else {
                continue;
            };
            for (variable, s) in self.read(app)? {
                if s.cluster == cluster {
                    out.push((app.to_string(), variable, s));
                }
            }
        }
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(cluster: &str, value: &str) -> ConsumerSecret {
        ConsumerSecret {
            value: value.into(),
            cluster: cluster.into(),
            database: "myapp".into(),
            user: "myapp".into(),
            verifier: "sha256:00".into(),
        }
    }

    #[test]
    fn set_unset_and_list_by_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let store = ConsumerStore::new(dir.path());
        assert!(store
            .set("myapp", "DATABASE_URL", secret("pg-a", "u1"))
            .unwrap());
        assert!(!store
            .set("myapp", "DATABASE_URL", secret("pg-a", "u1"))
            .unwrap());
        let err = store
            .set("myapp", "DATABASE_URL", secret("pg-b", "u2"))
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("already set by the attachment of cluster pg-a"));
        assert!(store
            .set("myapp", "OTHER_URL", secret("pg-b", "u2"))
            .unwrap());
        let by_a = store.set_by("pg-a").unwrap();
        assert_eq!(by_a.len(), 1);
        assert_eq!(by_a[0].1, "DATABASE_URL");
        // Another cluster cannot unset it.
        assert!(!store.unset("myapp", "DATABASE_URL", "pg-b").unwrap());
        assert!(store.unset("myapp", "DATABASE_URL", "pg-a").unwrap());
        assert_eq!(store.read("myapp").unwrap().len(), 1);
        assert!(store.unset("myapp", "OTHER_URL", "pg-b").unwrap());
        assert!(!dir.path().join("consumers/myapp.json").exists());
    }
}

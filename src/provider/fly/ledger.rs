//! What flyplan remembers about a Fly app on this machine, under
//! `<state_dir>/fly/<app>/`: the digests of the secrets it set (Fly reports
//! its own digest, not flyplan's), the secrets version to wait for, and the
//! cluster's primary region while it has no machine to carry it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::provider::ProviderError;

/// The secrets flyplan set on an app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretsLedger {
    /// The app's secrets version after flyplan's last change, if the API told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretEntry>,
}

/// One secret flyplan set: Fly's digest of it then, and flyplan's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEntry {
    pub fly_digest: String,
    pub flyplan_digest: String,
}

/// Facts about the app that the Machines API cannot hold while the app has
/// no machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppLedger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_region: Option<String>,
}

/// A variable flyplan set on a consumer app for an attachment: Fly's digest
/// of the value then, and what the value was made from (never the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerEntry {
    pub app: String,
    pub variable: String,
    pub database: String,
    pub user: String,
    /// Digest of the role's password verifier when the value was set.
    pub verifier: String,
    pub fly_digest: String,
}

/// A declared role whose password flyplan set: which secret it came from,
/// flyplan's digest of that secret, and a digest of the verifier it made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleEntry {
    pub secret: String,
    pub secret_digest: String,
    pub verifier: String,
}

/// What flyplan set of `[postgres.backup]` on an app: the declared secret
/// whose value went into `S3_ARCHIVE_CONFIG`, flyplan's digest of it and
/// Fly's, and whether every node has since booted with it (postgres-flex
/// reads it only at boot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLedger {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flyplan_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fly_digest: Option<String>,
    #[serde(default)]
    pub deployed: bool,
}

/// The ledger directory of one app.
#[derive(Debug, Clone)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    pub fn new(state_dir: &Path, app: &str) -> Self {
        Ledger {
            dir: state_dir.join("fly").join(app),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn secrets(&self) -> Result<SecretsLedger, ProviderError> {
        self.read("secrets.json")
    }

    pub fn write_secrets(&self, ledger: &SecretsLedger) -> Result<(), ProviderError> {
        self.write("secrets.json", ledger)
    }

    pub fn consumers(&self) -> Result<Vec<ConsumerEntry>, ProviderError> {
        self.read("consumers.json")
    }

    pub fn write_consumers(&self, entries: &[ConsumerEntry]) -> Result<(), ProviderError> {
        self.write("consumers.json", &entries)
    }

    pub fn roles(&self) -> Result<BTreeMap<String, RoleEntry>, ProviderError> {
        self.read("roles.json")
    }

    pub fn write_roles(&self, roles: &BTreeMap<String, RoleEntry>) -> Result<(), ProviderError> {
        self.write("roles.json", roles)
    }

    pub fn backup(&self) -> Result<BackupLedger, ProviderError> {
        self.read("backup.json")
    }

    pub fn write_backup(&self, ledger: &BackupLedger) -> Result<(), ProviderError> {
        self.write("backup.json", ledger)
    }

    pub fn app(&self) -> Result<AppLedger, ProviderError> {
        self.read("app.json")
    }

    pub fn write_app(&self, ledger: &AppLedger) -> Result<(), ProviderError> {
        self.write("app.json", ledger)
    }

    /// Forget the app (after it was destroyed). The lock file stays.
    pub fn forget(&self) -> Result<(), ProviderError> {
        for name in ["secrets.json", "app.json", "consumers.json", "roles.json"] {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(ProviderError::io(format!("remove {}", path.display()), e)),
            }
        }
        Ok(())
    }

    /// Create the directory, readable only by its owner.
    pub fn ensure_dir(&self) -> Result<(), ProviderError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| ProviderError::io(format!("create {}", self.dir.display()), e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(())
    }

    fn read<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, ProviderError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ProviderError::failed(format!("read {}", path.display()), e.to_string())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
            Err(e) => Err(ProviderError::io(format!("read {}", path.display()), e)),
        }
    }

    /// Write whole or not at all, mode 0600.
    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), ProviderError> {
        self.ensure_dir()?;
        let path = self.dir.join(name);
        let mut bytes = serde_json::to_vec_pretty(value).expect("ledger serialises");
        bytes.push(b'\n');
        crate::fsutil::write_atomic(&path, &bytes, Some(0o600))
            .map_err(|e| ProviderError::io(format!("write {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledgers_round_trip_and_missing_files_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::new(dir.path(), "pg");
        assert_eq!(ledger.secrets().unwrap(), SecretsLedger::default());
        let mut s = SecretsLedger {
            version: Some(3),
            ..Default::default()
        };
        s.secrets.insert(
            "PG_PASSWORD".into(),
            SecretEntry {
                fly_digest: "abc".into(),
                flyplan_digest: "sha256:def".into(),
            },
        );
        ledger.write_secrets(&s).unwrap();
        assert_eq!(ledger.secrets().unwrap(), s);
        ledger.forget().unwrap();
        assert_eq!(ledger.secrets().unwrap(), SecretsLedger::default());
    }
}

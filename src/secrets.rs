//! Secret sources and digests: values are read from their declared source
//! only to be handed to a provider (as [`SecretValues`]); everywhere else a
//! secret is a digest.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::config::SecretSource;

/// The digest by which a secret value is compared, salted with the app and
/// the secret's name so equal values in two places do not look equal.
pub fn digest(app: &str, name: &str, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"flyplan-secret-v1\0");
    h.update(app.as_bytes());
    h.update(b"\0");
    h.update(name.as_bytes());
    h.update(b"\0");
    h.update(value.as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Where environment variables come from (the process, or a map in tests).
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a secret value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    EnvNotSet { var: String },
    FileUnreadable { path: String, error: String },
    Empty,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::EnvNotSet { var } => write!(f, "environment variable {var} is not set"),
            Unavailable::FileUnreadable { path, error } => write!(f, "cannot read {path}: {error}"),
            Unavailable::Empty => write!(f, "the value is empty"),
        }
    }
}

/// Read a secret's value from its source. `Generate` has no value here: the
/// provider makes one and keeps it.
pub fn read(
    source: &SecretSource,
    config_dir: &Path,
    env: &dyn Environment,
) -> Result<Option<String>, Unavailable> {
    let value = match source {
        SecretSource::Env { var } => env
            .var(var)
            .ok_or_else(|| Unavailable::EnvNotSet { var: var.clone() })?,
        SecretSource::File { path } => {
            let full = config_dir.join(path);
            std::fs::read_to_string(&full)
                .map_err(|e| Unavailable::FileUnreadable {
                    path: full.display().to_string(),
                    error: e.to_string(),
                })?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        }
        SecretSource::Generate => return Ok(None),
    };
    if value.is_empty() {
        return Err(Unavailable::Empty);
    }
    Ok(Some(value))
}

/// A strong random password for generated secrets and attachments.
pub fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Secret values resolved for this apply, by secret name. Never serialised,
/// never printed; `Debug` shows names only.
#[derive(Clone, Default)]
pub struct SecretValues {
    values: BTreeMap<String, String>,
}

impl SecretValues {
    pub fn new(values: BTreeMap<String, String>) -> Self {
        SecretValues { values }
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_depends_on_app_name_and_value_and_hides_the_value() {
        let d = digest("a", "PG_PASSWORD", "s3cret-value");
        assert!(d.starts_with("sha256:"));
        assert!(!d.contains("s3cret"));
        assert_ne!(d, digest("b", "PG_PASSWORD", "s3cret-value"));
        assert_ne!(d, digest("a", "OTHER", "s3cret-value"));
        assert_ne!(d, digest("a", "PG_PASSWORD", "s3cret-valuf"));
        assert_eq!(d, digest("a", "PG_PASSWORD", "s3cret-value"));
    }

    #[test]
    fn missing_environment_variable_is_reported_by_name() {
        let env = BTreeMap::new();
        let err = read(
            &SecretSource::Env {
                var: "PG_PASSWORD".into(),
            },
            Path::new("."),
            &env,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable PG_PASSWORD is not set"
        );
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let (a, b) = (generate_password(), generate_password());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}

//! Saved plans (`plan --out FILE`): the plan with the live fingerprint it
//! was made from and where its secrets come from, but no secret value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::SecretSource;
use crate::model::{Digest, Spec};
use crate::plan::Plan;
use crate::provider::SecretValues;
use crate::secrets::{self, Environment};

/// Marker and version of the saved-plan format.
pub const KIND: &str = "flyplan-plan";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanFile {
    pub kind: String,
    /// The fly.toml the plan was made from.
    pub config_path: PathBuf,
    /// Declared secrets and their sources, to read the values at apply time.
    pub secret_sources: BTreeMap<String, SecretSource>,
    pub plan: Plan,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("{path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path}: cannot write plan: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {name}: {message}")]
    Secret { name: String, message: String },
}

impl PlanFile {
    pub fn save(&self, path: &Path) -> Result<(), PlanFileError> {
        let text = serde_json::to_string_pretty(self).expect("plan serialises");
        std::fs::write(path, text + "\n").map_err(|source| PlanFileError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    pub fn load(path: &Path) -> Result<Self, PlanFileError> {
        let read_err = |message: String| PlanFileError::Read {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| read_err(e.to_string()))?;
        let pf: PlanFile = serde_json::from_str(&text)
            .map_err(|e| read_err(format!("not a flyplan plan file: {e}")))?;
        if pf.kind != KIND {
            return Err(read_err(format!(
                "not a flyplan plan file (kind {:?})",
                pf.kind
            )));
        }
        if pf.plan.format_version != crate::plan::FORMAT_VERSION {
            return Err(read_err(format!(
                "plan format version {} is not supported (this flyplan reads {})",
                pf.plan.format_version,
                crate::plan::FORMAT_VERSION
            )));
        }
        Ok(pf)
    }

    /// Whether a file looks like a saved plan rather than a fly.toml.
    pub fn sniff(path: &Path) -> bool {
        std::fs::read_to_string(path)
            .map(|t| t.trim_start().starts_with('{') && t.contains(KIND))
            .unwrap_or(false)
    }

    /// Read the secret values again and check each one still has the digest
    /// the plan was made with.
    ///
    /// # Errors
    /// A secret that cannot be read or whose value changed since the plan.
    pub fn secret_values(&self, env: &dyn Environment) -> Result<SecretValues, PlanFileError> {
        let dir = self.config_path.parent().unwrap_or(Path::new("."));
        let mut values = BTreeMap::new();
        for (name, source) in &self.secret_sources {
            let value = secrets::read(source, dir, env).map_err(|e| PlanFileError::Secret {
                name: name.clone(),
                message: e.to_string(),
            })?;
            let Some(value) = value else { continue };
            let digest = secrets::digest(&self.plan.app, name, &value);
            let planned = self
                .plan
                .steps
                .iter()
                .filter(|s| s.address == crate::model::Address::secret(name))
                .find_map(|s| match &s.after.as_ref()?.spec {
                    Spec::Secret(secret) => secret.digest.as_ref().map(Digest::as_str),
                    _ => None,
                });
            if let Some(planned) = planned {
                if planned != digest {
                    return Err(PlanFileError::Secret {
                        name: name.clone(),
                        message: "the value changed since the plan was made; run plan again"
                            .to_string(),
                    });
                }
            }
            values.insert(name.clone(), value);
        }
        Ok(SecretValues::new(values))
    }
}

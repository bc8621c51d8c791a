//! The live state a provider observes, in the same resource shape as the
//! desired state, loadable from JSON for tests, with a fingerprint that a
//! saved plan records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Address, Checks, Kind, Resource};

/// Everything observed about one app.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Live {
    pub app: String,
    /// Resources by address.
    #[serde(with = "as_list")]
    pub resources: BTreeMap<Address, Resource>,
}

/// Live state loading errors.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{path}: cannot read live state: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid live state: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl Live {
    pub fn empty(app: &str) -> Self {
        Live {
            app: app.to_string(),
            resources: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, r: Resource) {
        self.resources.insert(r.address.clone(), r);
    }

    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.resources.get(address)
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.resources.values().filter(move |r| r.kind() == kind)
    }

    /// The machine that currently holds the leader role, if any.
    pub fn leader(&self) -> Option<&Resource> {
        self.of_kind(Kind::Machine).find(|m| m.is_leader())
    }

    pub fn from_json_str(path: &Path, text: &str) -> Result<Self, LiveError> {
        serde_json::from_str(text).map_err(|e| LiveError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Self, LiveError> {
        let text = std::fs::read_to_string(path).map_err(|source| LiveError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(path, &text)
    }

    /// A digest of the whole observed state. A saved plan applies only while
    /// the live state still has this fingerprint.
    pub fn fingerprint(&self) -> String {
        // Addresses and attributes serialise in sorted order, so this is
        // canonical. Checks are volatile observations and are left out.
        let mut stable = self.clone();
        for r in stable.resources.values_mut() {
            r.checks = Checks::default();
        }
        let bytes = serde_json::to_vec(&stable).expect("live state serialises");
        let digest = Sha256::digest(&bytes);
        format!("sha256:{}", hex::encode(digest))
    }
}

mod as_list {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<Address, Resource>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Address, Resource>, D::Error> {
        let list = Vec::<Resource>::deserialize(d)?;
        let mut map = BTreeMap::new();
        for r in list {
            if map.contains_key(&r.address) {
                return Err(serde::de::Error::custom(format!(
                    "resource {} listed twice",
                    r.address
                )));
            }
            map.insert(r.address.clone(), r);
        }
        Ok(map)
    }
}

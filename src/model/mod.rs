//! Resources as both the desired and the live state describe them: a typed
//! address, a typed spec per kind, and the checks `status` shows. Plan
//! compares desired and live specs by address.

mod address;
mod checks;
mod spec;

use std::collections::BTreeSet;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use address::{Address, AddressError, Target};
pub use checks::{way_out, Checks, PlatformCheck, TakenSnapshot};
pub use spec::{
    Agreed, AppSpec, AttachmentSpec, BackupPolicySpec, DatabaseSpec, Digest, EndpointSpec, Field,
    Fields, FormationSpec, MachineSpec, ParameterSpec, Role, SecretSpec, SnapshotPolicySpec, Spec,
    SpecError, UserSpec, VolumeSpec, OUTSIDE_FLYPLAN,
};

/// What a resource is. The order of the variants is the order in which
/// creates and updates happen; destroys go in reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The Fly app of the cluster.
    App,
    /// A secret of the cluster app (value held by the provider).
    Secret,
    /// A data volume, one per node.
    Volume,
    /// A node: PostgreSQL with its keeper.
    Machine,
    /// Cluster-wide replication settings (number of sync standbys).
    Formation,
    /// The leader endpoint (port 5432 of Fly's proxy; haproxy locally).
    Endpoint,
    /// A role.
    User,
    /// A database.
    Database,
    /// A consumer app attached with a connection URL secret.
    Attachment,
    /// Daily snapshots and retention of a volume.
    SnapshotPolicy,
    /// A PostgreSQL setting of every node (`[postgres.parameters]`).
    Parameter,
    /// Continuous archiving and base backups to an object store.
    BackupPolicy,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Secret => "secret",
            Kind::Volume => "volume",
            Kind::Machine => "machine",
            Kind::Formation => "formation",
            Kind::Endpoint => "endpoint",
            Kind::User => "user",
            Kind::Database => "database",
            Kind::Attachment => "attachment",
            Kind::SnapshotPolicy => "snapshot_policy",
            Kind::Parameter => "parameter",
            Kind::BackupPolicy => "backup_policy",
        }
    }
}

/// One resource: its address, its spec (of the address's kind) and, when
/// observed for `status`, its checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub address: Address,
    pub spec: Spec,
    /// Observations that are shown but never compared nor fingerprinted.
    pub checks: Checks,
}

/// Errors of the model: a resource whose parts do not fit together.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{address}: a {address_kind} address with a {spec_kind} spec")]
    KindMismatch {
        address: Address,
        address_kind: &'static str,
        spec_kind: &'static str,
    },
}

impl Resource {
    /// A resource with no checks.
    ///
    /// # Panics
    /// When the spec is of another kind than the address: a programming
    /// error, not an input one (input goes through deserialisation).
    pub fn new(address: Address, spec: Spec) -> Self {
        assert_eq!(
            address.kind(),
            spec.kind(),
            "{address}: spec of the wrong kind"
        );
        Resource {
            address,
            spec,
            checks: Checks::default(),
        }
    }

    /// Builder: set the checks.
    pub fn with_checks(mut self, checks: Checks) -> Self {
        self.checks = checks;
        self
    }

    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    pub fn is_sensitive(&self, key: &str) -> bool {
        self.spec.sensitive().contains(&key)
    }

    pub fn machine(&self) -> Option<&MachineSpec> {
        match &self.spec {
            Spec::Machine(m) => Some(m),
            _ => None,
        }
    }
    pub fn volume(&self) -> Option<&VolumeSpec> {
        match &self.spec {
            Spec::Volume(v) => Some(v),
            _ => None,
        }
    }
    pub fn attachment(&self) -> Option<&AttachmentSpec> {
        match &self.spec {
            Spec::Attachment(a) => Some(a),
            _ => None,
        }
    }
    pub fn user(&self) -> Option<&UserSpec> {
        match &self.spec {
            Spec::User(u) => Some(u),
            _ => None,
        }
    }
    pub fn app(&self) -> Option<&AppSpec> {
        match &self.spec {
            Spec::App(a) => Some(a),
            _ => None,
        }
    }

    pub fn machine_mut(&mut self) -> Option<&mut MachineSpec> {
        match &mut self.spec {
            Spec::Machine(m) => Some(m),
            _ => None,
        }
    }

    /// The `managed_by` of a live secret or user.
    pub fn managed_by(&self) -> Option<&str> {
        match &self.spec {
            Spec::Secret(s) => s.managed_by.as_deref(),
            Spec::User(u) => u.managed_by.as_deref(),
            Spec::App(_)
            | Spec::Volume(_)
            | Spec::Machine(_)
            | Spec::Formation(_)
            | Spec::Endpoint(_)
            | Spec::Database(_)
            | Spec::Attachment(_)
            | Spec::SnapshotPolicy(_)
            | Spec::Parameter(_)
            | Spec::BackupPolicy(_) => None,
        }
    }

    /// The state of an app, machine or endpoint (`running`, `stopped`...).
    pub fn state(&self) -> Option<&str> {
        match &self.spec {
            Spec::App(a) => Some(&a.state),
            Spec::Machine(m) => Some(&m.state),
            Spec::Endpoint(e) => Some(&e.state),
            Spec::Secret(_)
            | Spec::Volume(_)
            | Spec::Formation(_)
            | Spec::User(_)
            | Spec::Database(_)
            | Spec::Attachment(_)
            | Spec::SnapshotPolicy(_)
            | Spec::Parameter(_)
            | Spec::BackupPolicy(_) => None,
        }
    }

    /// Whether a live machine holds the leader role.
    pub fn is_leader(&self) -> bool {
        self.machine().and_then(|m| m.leader) == Some(true)
    }
}

/// The JSON shape of a resource in live state files and saved plans:
/// `{address, kind, attrs, sensitive, status}`, attributes sorted.
impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Attrs<'a>(&'a Spec);
        impl Serialize for Attrs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_attrs(s)
            }
        }
        let sensitive = self.spec.sensitive();
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("address", &self.address)?;
        map.serialize_entry("kind", &self.kind())?;
        map.serialize_entry("attrs", &Attrs(&self.spec))?;
        if !sensitive.is_empty() {
            map.serialize_entry("sensitive", &sensitive)?;
        }
        if !self.checks.is_empty() {
            map.serialize_entry("status", &self.checks)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            address: Address,
            kind: Kind,
            #[serde(default)]
            attrs: serde_json::Map<String, serde_json::Value>,
            /// Derived from the spec's types; read and left.
            #[serde(default)]
            #[allow(dead_code)]
            sensitive: BTreeSet<String>,
            #[serde(default)]
            status: Checks,
        }
        let raw = Raw::deserialize(d)?;
        if raw.address.kind() != raw.kind {
            return Err(serde::de::Error::custom(ModelError::KindMismatch {
                address_kind: raw.address.kind().as_str(),
                spec_kind: raw.kind.as_str(),
                address: raw.address,
            }));
        }
        let (mut attrs, mut checks) = (raw.attrs, raw.status);
        // Live states and saved plans of the first format version gave a Fly
        // endpoint its proxy port as an attribute; it is a check now.
        if raw.kind == Kind::Endpoint {
            if let Some(port) = attrs.remove("port") {
                checks.port = checks.port.or(port.as_u64());
            }
        }
        let spec = Spec::from_attrs(raw.kind, attrs)
            .map_err(|e| serde::de::Error::custom(format!("{}: {e}", raw.address)))?;
        Ok(Resource {
            address: raw.address,
            spec,
            checks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_reads_back_as_it_was_written() {
        let mut m = MachineSpec::new("iad", 2, Role::Candidate, "running");
        m.leader = Some(true);
        m.volume = Some(Address::volume("pg_data", "iad", 2));
        let r = Resource::new(Address::machine("iad", 2), Spec::Machine(m)).with_checks(Checks {
            port: Some(6543),
            ..Checks::default()
        });
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"address":"machine[iad:2]","kind":"machine","attrs":{"index":2,"leader":true,"region":"iad","role":"candidate","state":"running","volume":"volume.pg_data[iad:2]"},"status":{"port":6543}}"#
        );
        let back: Resource = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_fly_endpoint_of_the_first_format_keeps_its_port_as_a_check() {
        let text = r#"{"address":"endpoint.pg","kind":"endpoint","attrs":{"port":5432,"state":"running"}}"#;
        let r: Resource = serde_json::from_str(text).unwrap();
        assert_eq!(r.state(), Some("running"));
        assert_eq!(r.checks.port, Some(5432));
    }

    #[test]
    fn an_address_of_another_kind_than_the_resource_is_refused() {
        let text = r#"{"address":"user.x","kind":"database","attrs":{"owner":"x"}}"#;
        let err = serde_json::from_str::<Resource>(text).unwrap_err();
        assert!(err.to_string().contains("user.x"), "{err}");
    }
}

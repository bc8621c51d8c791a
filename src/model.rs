//! Resources as both the desired and the live state describe them: a stable
//! address, a kind, and attributes. Plan compares the two by address.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A stable resource address such as `machine[iad:0]` or `volume.pg_data[iad:0]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(pub String);

impl Address {
    pub fn app(app: &str) -> Self {
        Address(format!("app.{app}"))
    }
    pub fn secret(name: &str) -> Self {
        Address(format!("secret.{name}"))
    }
    pub fn volume(name: &str, region: &str, index: u32) -> Self {
        Address(format!("volume.{name}[{region}:{index}]"))
    }
    pub fn machine(region: &str, index: u32) -> Self {
        Address(format!("machine[{region}:{index}]"))
    }
    pub fn formation(app: &str) -> Self {
        Address(format!("formation.{app}"))
    }
    pub fn endpoint(app: &str) -> Self {
        Address(format!("endpoint.{app}"))
    }
    pub fn database(name: &str) -> Self {
        Address(format!("database.{name}"))
    }
    pub fn user(name: &str) -> Self {
        Address(format!("user.{name}"))
    }
    pub fn attachment(app: &str) -> Self {
        Address(format!("attachment.{app}"))
    }
    pub fn snapshot_policy(volume: &str) -> Self {
        Address(format!("snapshot_policy.{volume}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
        }
    }
}

pub type Attrs = BTreeMap<String, Value>;

/// One resource. Attributes named in `sensitive` hold a digest, never a value,
/// and are shown as `(sensitive value)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub address: Address,
    pub kind: Kind,
    #[serde(default)]
    pub attrs: Attrs,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive: BTreeSet<String>,
    /// Observations that are shown but never compared nor fingerprinted
    /// (pids, ports, replication lag...).
    #[serde(default, skip_serializing_if = "Attrs::is_empty")]
    pub status: Attrs,
}

impl Resource {
    pub fn new(address: Address, kind: Kind) -> Self {
        Resource {
            address,
            kind,
            attrs: Attrs::new(),
            sensitive: BTreeSet::new(),
            status: Attrs::new(),
        }
    }

    /// Builder: set an attribute.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.attrs.insert(key.to_string(), value.into());
        self
    }

    /// Builder: set a sensitive attribute (a digest).
    pub fn with_sensitive(mut self, key: &str, digest: impl Into<Value>) -> Self {
        self.attrs.insert(key.to_string(), digest.into());
        self.sensitive.insert(key.to_string());
        self
    }

    /// Builder: record an observation that is never compared.
    pub fn with_status(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.status.insert(key.to_string(), value.into());
        self
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str)
    }
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.attrs.get(key).and_then(Value::as_u64)
    }
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.attrs.get(key).and_then(Value::as_i64)
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        self.attrs.get(key).and_then(Value::as_bool)
    }
    pub fn strings(&self, key: &str) -> Vec<String> {
        self.attrs
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub fn is_sensitive(&self, key: &str) -> bool {
        self.sensitive.contains(key)
    }
}

/// Machine roles in the desired state.
pub mod role {
    /// A primary-region node that may become leader.
    pub const CANDIDATE: &str = "candidate";
    /// A read replica in another region; never promoted.
    pub const REPLICA: &str = "replica";
}

/// Attribute names shared by desired state, live state and providers.
pub mod attr {
    pub const REGION: &str = "region";
    pub const INDEX: &str = "index";
    pub const ROLE: &str = "role";
    pub const IMAGE: &str = "image";
    pub const VM_SIZE: &str = "vm_size";
    pub const MEMORY_MB: &str = "memory_mb";
    pub const CPUS: &str = "cpus";
    pub const CPU_KIND: &str = "cpu_kind";
    /// Desired `running`; live `running`, `stopped`, `failed`...
    pub const STATE: &str = "state";
    pub const VOLUME: &str = "volume";
    pub const SIZE_GB: &str = "size_gb";
    pub const NAME: &str = "name";
    pub const SYNC_STANDBYS: &str = "sync_standbys";
    pub const PRIMARY_REGION: &str = "primary_region";
    pub const PG_MAJOR: &str = "pg_major";
    pub const PORT: &str = "port";
    pub const DIGEST: &str = "digest";
    pub const SOURCE: &str = "source";
    pub const OWNER: &str = "owner";
    pub const LOGIN: &str = "login";
    pub const SUPERUSER: &str = "superuser";
    pub const CREATEDB: &str = "createdb";
    pub const CREATEROLE: &str = "createrole";
    pub const REPLICATION: &str = "replication";
    pub const CONNECTION_LIMIT: &str = "connection_limit";
    pub const MEMBER_OF: &str = "member_of";
    pub const PASSWORD: &str = "password";
    pub const DATABASE: &str = "database";
    pub const USER: &str = "user";
    pub const VARIABLE: &str = "variable";
    /// Attachments: `valid` when the role's password, the consumer's secret
    /// and the endpoint agree; live otherwise says what is wrong.
    pub const CREDENTIALS: &str = "credentials";
    pub const SCHEDULED: &str = "scheduled";
    pub const RETENTION_DAYS: &str = "retention_days";
    pub const SNAPSHOT_TIME: &str = "snapshot_time";
    pub const RESTORE_FROM: &str = "restore_from";
    /// Live only: the machine currently holds the leader role.
    pub const LEADER: &str = "leader";
    /// Live only: attachment/users created by an attachment are managed.
    pub const MANAGED_BY: &str = "managed_by";
    /// `managed_by` value of things flyplan did not make (left alone).
    pub const OUTSIDE_FLYPLAN: &str = "outside-flyplan";
    /// Desired only: the secret that holds a user's password (an input for
    /// apply; the comparison uses the `password` digest).
    pub const PASSWORD_SECRET: &str = "password_secret";

    /// Attributes that carry instructions for apply and are never compared.
    /// `restore_from` seeds a cluster when it is created (as `fly pg create
    /// --snapshot-id` does); on an existing cluster it changes nothing.
    pub const INPUT_ONLY: &[&str] = &[PASSWORD_SECRET, RESTORE_FROM];
}

//! Typed resource specs: one struct per kind, whose fields are the
//! attributes that desired state, live state and providers share. A field's
//! name is its attribute name in plans and state files; fields are written
//! in alphabetical order so that they serialise as the sorted maps plans
//! always showed. Sensitive values have a type of their own ([`Digest`]),
//! and fields that carry instructions for apply are marked `=> input`: they
//! are never compared.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Address, Kind};

/// A digest standing for a secret value: the only form in which a secret
/// reaches a resource. Shown as `(sensitive value)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl Digest {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A value observed on several objects (a volume per node, a machine per
/// node) that should agree: `Mixed` describes a disagreement, which never
/// equals a desired value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Agreed<T> {
    One(T),
    Mixed(String),
}

impl<T> Agreed<T> {
    pub fn one(&self) -> Option<&T> {
        match self {
            Agreed::One(v) => Some(v),
            Agreed::Mixed(_) => None,
        }
    }
}

/// A node's place in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A primary-region node that may become leader.
    Candidate,
    /// A read replica in another region; never promoted.
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Candidate => "candidate",
            Role::Replica => "replica",
        }
    }
}

/// `managed_by` of things flyplan did not make: left alone.
pub const OUTSIDE_FLYPLAN: &str = "outside-flyplan";

/// What a field type tells the plan: whether a value is there to compare,
/// and whether it must be masked.
pub trait Field {
    const SENSITIVE: bool = false;
    fn present(&self) -> bool {
        true
    }
}

impl<T: Field> Field for Option<T> {
    const SENSITIVE: bool = T::SENSITIVE;
    fn present(&self) -> bool {
        self.is_some()
    }
}
impl Field for Digest {
    const SENSITIVE: bool = true;
}
impl<T> Field for Agreed<T> {}
impl Field for String {}
impl Field for bool {}
impl Field for u32 {}
impl Field for u64 {}
impl Field for i64 {}
impl Field for Vec<String> {}
impl Field for Address {}
impl Field for Role {}

/// Serde's `skip_serializing_if` for every field: absent values are left out.
fn absent<T: Field>(v: &T) -> bool {
    !v.present()
}

/// What the plan needs of every spec, generated with the struct.
pub trait Fields: Serialize {
    /// Field names, alphabetical.
    const NAMES: &'static [&'static str];
    /// Names of the fields `self` (desired) sets and `live` does not match.
    /// Input fields are never compared.
    fn changed(&self, live: &Self) -> Vec<&'static str>;
    /// Names of the sensitive fields that hold a value.
    fn sensitive(&self) -> Vec<&'static str>;
    /// Whether `name` is an input for apply, never compared.
    fn is_input(name: &str) -> bool;
}

macro_rules! compared {
    () => {
        true
    };
    (input) => {
        false
    };
}

macro_rules! spec {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty $(=> $mode:ident)? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(skip_serializing_if = "absent")]
                pub $field: $ty,
            )*
        }

        impl Fields for $name {
            const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            fn changed(&self, live: &Self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(
                    if compared!($($mode)?)
                        && Field::present(&self.$field)
                        && self.$field != live.$field
                    {
                        out.push(stringify!($field));
                    }
                )*
                out
            }

            fn sensitive(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(
                    if <$ty as Field>::SENSITIVE && Field::present(&self.$field) {
                        out.push(stringify!($field));
                    }
                )*
                out
            }

            fn is_input(name: &str) -> bool {
                $(
                    if name == stringify!($field) {
                        return !compared!($($mode)?);
                    }
                )*
                false
            }
        }
    };
}

spec! {
    /// The Fly app of the cluster.
    AppSpec {
        /// Live (Fly): the app's role, `postgres_cluster` for clusters.
        app_role: Option<String>,
        /// Live (Fly): the app's id.
        id: Option<String>,
        /// Live (Fly): the organization's slug.
        org: Option<String>,
        primary_region: Option<String>,
        /// Seeds a new cluster from another cluster's backups
        /// (`[postgres.restore]`): the secret holding the source store URL,
        /// then `?targetTime=T` or `?target=ID` as in postgres-flex's
        /// restore config; on an existing cluster it changes nothing.
        restore_backup: Option<String> => input,
        /// Seeds a new cluster from a snapshot (as `fly pg create
        /// --snapshot-id` does); on an existing cluster it changes nothing.
        restore_from: Option<String> => input,
        /// Desired `running`; live `running` or `stopped`.
        state: String,
        /// Live (Fly): the platform's status of the app (`deployed`...).
        status: Option<String>,
    }
}

spec! {
    /// A secret of the cluster app; its value stays with the provider.
    SecretSpec {
        digest: Option<Digest>,
        /// Live: [`OUTSIDE_FLYPLAN`] for a secret flyplan did not set.
        managed_by: Option<String>,
    }
}

spec! {
    /// A data volume, one per node.
    VolumeSpec {
        /// Live (Fly): the machine the volume is attached to.
        attached_machine_id: Option<String>,
        /// Live (Fly): whether Fly takes daily snapshots of it.
        auto_backup_enabled: Option<bool>,
        /// Live (Fly): the volume's id.
        id: Option<String>,
        name: String,
        region: String,
        size_gb: u64,
        /// Live (Fly): days Fly keeps its snapshots.
        snapshot_retention: Option<u64>,
    }
}

spec! {
    /// A node: PostgreSQL with its keeper.
    MachineSpec {
        cpu_kind: Option<String>,
        cpus: Option<u32>,
        /// Live (Fly): the machine's id.
        id: Option<String>,
        image: Option<String>,
        index: u32,
        /// Live (Fly): the machine's instance (version) id.
        instance_id: Option<String>,
        /// Live: the node holds the leader role.
        leader: Option<bool>,
        /// Live (Fly): the machine's name.
        machine_name: Option<String>,
        memory_mb: Option<u64>,
        region: String,
        role: Role,
        /// Live (Fly): the output of the machine's passing `role` check.
        role_check: Option<String>,
        /// Desired `running`; live `running`, `stopped`, `failed`...
        state: String,
        vm_size: Option<String>,
        /// The node's volume.
        volume: Option<Address>,
    }
}

spec! {
    /// Cluster-wide replication settings.
    FormationSpec {
        /// Standbys a commit waits for.
        sync_standbys: Option<Agreed<u64>>,
    }
}

spec! {
    /// The leader endpoint (port 5432 of Fly's proxy; haproxy locally).
    EndpointSpec {
        state: String,
    }
}

spec! {
    /// A role.
    UserSpec {
        connection_limit: Option<i64>,
        createdb: Option<bool>,
        createrole: Option<bool>,
        login: bool,
        /// Live: who made the role (`flyplan`).
        managed_by: Option<String>,
        member_of: Option<Vec<String>>,
        /// The digest of the password's secret (desired), or of what the
        /// role was last given (live).
        password: Option<Digest>,
        /// The secret that holds the password: an input for apply; the
        /// comparison uses `password`.
        password_secret: Option<String> => input,
        replication: Option<bool>,
        superuser: bool,
    }
}

spec! {
    /// A database.
    DatabaseSpec {
        owner: String,
    }
}

spec! {
    /// A consumer app attached with a connection URL secret.
    AttachmentSpec {
        /// `valid` when the role's password, the consumer's secret and the
        /// endpoint agree; live otherwise says what is wrong.
        credentials: String,
        database: String,
        superuser: Option<bool>,
        user: String,
        variable: String,
    }
}

spec! {
    /// Daily snapshots and retention of a volume.
    SnapshotPolicySpec {
        retention_days: Option<Agreed<u64>>,
        scheduled: Option<Agreed<bool>>,
        snapshot_time: Option<String>,
    }
}

spec! {
    /// A PostgreSQL setting, set on every node with `ALTER SYSTEM`. The
    /// value is written as `SHOW` prints it; nodes that disagree make it
    /// `Mixed`.
    ParameterSpec {
        /// Live: a node has the new value written but runs with the old one
        /// until it restarts.
        pending_restart: Option<bool>,
        value: Agreed<String>,
    }
}

spec! {
    /// Continuous archiving (`barman-cloud-wal-archive`) and base backups
    /// (`barman-cloud-backup`) to the object store a secret names, with
    /// postgres-flex's settings.
    BackupPolicySpec {
        /// Seconds, written `60s`: a partly filled WAL segment is archived
        /// after this long.
        archive_timeout: String,
        /// Desired `on`; live `on` when every node archives to the store
        /// with the command flyplan set, else what differs.
        archiving: Option<Agreed<String>>,
        /// Time between base backups (`24h`).
        full_backup_frequency: String,
        /// Base backups kept whatever their age.
        minimum_redundancy: u64,
        /// Point-in-time recovery kept (`7d`, `2w`, `1m`).
        recovery_window: String,
        /// The secret holding the store URL.
        secret: String,
        /// The digest of the store URL in use.
        store: Option<Digest>,
    }
}

impl AppSpec {
    /// An app as desired state names it: its primary region and state.
    pub fn new(primary_region: Option<String>, state: &str) -> Self {
        AppSpec {
            app_role: None,
            id: None,
            org: None,
            primary_region,
            restore_backup: None,
            restore_from: None,
            state: state.to_string(),
            status: None,
        }
    }
}

impl SecretSpec {
    /// A secret whose value has this digest.
    pub fn with_digest(digest: String) -> Self {
        SecretSpec {
            digest: Some(Digest(digest)),
            managed_by: None,
        }
    }
}

impl VolumeSpec {
    /// A volume as desired state names it.
    pub fn new(name: &str, region: &str, size_gb: u64) -> Self {
        VolumeSpec {
            attached_machine_id: None,
            auto_backup_enabled: None,
            id: None,
            name: name.to_string(),
            region: region.to_string(),
            size_gb,
            snapshot_retention: None,
        }
    }
}

impl MachineSpec {
    /// A node with no image, size or volume named.
    pub fn new(region: &str, index: u32, role: Role, state: &str) -> Self {
        MachineSpec {
            cpu_kind: None,
            cpus: None,
            id: None,
            image: None,
            index,
            instance_id: None,
            leader: None,
            machine_name: None,
            memory_mb: None,
            region: region.to_string(),
            role,
            role_check: None,
            state: state.to_string(),
            vm_size: None,
            volume: None,
        }
    }
}

impl UserSpec {
    /// A role with only its login and superuser flags named.
    pub fn new(login: bool, superuser: bool) -> Self {
        UserSpec {
            connection_limit: None,
            createdb: None,
            createrole: None,
            login,
            managed_by: None,
            member_of: None,
            password: None,
            password_secret: None,
            replication: None,
            superuser,
        }
    }
}

/// A resource's spec: one variant per [`Kind`].
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    App(AppSpec),
    Secret(SecretSpec),
    Volume(VolumeSpec),
    Machine(MachineSpec),
    Formation(FormationSpec),
    Endpoint(EndpointSpec),
    User(UserSpec),
    Database(DatabaseSpec),
    Attachment(AttachmentSpec),
    SnapshotPolicy(SnapshotPolicySpec),
    Parameter(ParameterSpec),
    BackupPolicy(BackupPolicySpec),
}

/// Calls `$body` with the inner spec bound to `$s`, for every variant.
macro_rules! each_spec {
    ($value:expr, $s:ident => $body:expr) => {
        match $value {
            Spec::App($s) => $body,
            Spec::Secret($s) => $body,
            Spec::Volume($s) => $body,
            Spec::Machine($s) => $body,
            Spec::Formation($s) => $body,
            Spec::Endpoint($s) => $body,
            Spec::User($s) => $body,
            Spec::Database($s) => $body,
            Spec::Attachment($s) => $body,
            Spec::SnapshotPolicy($s) => $body,
            Spec::Parameter($s) => $body,
            Spec::BackupPolicy($s) => $body,
        }
    };
}

/// Spec errors: attributes that do not fit the kind's spec.
#[derive(Debug, thiserror::Error)]
#[error("{kind} attributes: {message}")]
pub struct SpecError {
    pub kind: &'static str,
    pub message: String,
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::App(_) => Kind::App,
            Spec::Secret(_) => Kind::Secret,
            Spec::Volume(_) => Kind::Volume,
            Spec::Machine(_) => Kind::Machine,
            Spec::Formation(_) => Kind::Formation,
            Spec::Endpoint(_) => Kind::Endpoint,
            Spec::User(_) => Kind::User,
            Spec::Database(_) => Kind::Database,
            Spec::Attachment(_) => Kind::Attachment,
            Spec::SnapshotPolicy(_) => Kind::SnapshotPolicy,
            Spec::Parameter(_) => Kind::Parameter,
            Spec::BackupPolicy(_) => Kind::BackupPolicy,
        }
    }

    /// Fields that `self` (desired) sets and `live` does not match; all the
    /// fields `self` sets when `live` is of another kind.
    pub fn changed(&self, live: &Spec) -> Vec<&'static str> {
        match (self, live) {
            (Spec::App(a), Spec::App(b)) => a.changed(b),
            (Spec::Secret(a), Spec::Secret(b)) => a.changed(b),
            (Spec::Volume(a), Spec::Volume(b)) => a.changed(b),
            (Spec::Machine(a), Spec::Machine(b)) => a.changed(b),
            (Spec::Formation(a), Spec::Formation(b)) => a.changed(b),
            (Spec::Endpoint(a), Spec::Endpoint(b)) => a.changed(b),
            (Spec::User(a), Spec::User(b)) => a.changed(b),
            (Spec::Database(a), Spec::Database(b)) => a.changed(b),
            (Spec::Attachment(a), Spec::Attachment(b)) => a.changed(b),
            (Spec::SnapshotPolicy(a), Spec::SnapshotPolicy(b)) => a.changed(b),
            (Spec::Parameter(a), Spec::Parameter(b)) => a.changed(b),
            (Spec::BackupPolicy(a), Spec::BackupPolicy(b)) => a.changed(b),
            (
                Spec::App(_)
                | Spec::Secret(_)
                | Spec::Volume(_)
                | Spec::Machine(_)
                | Spec::Formation(_)
                | Spec::Endpoint(_)
                | Spec::User(_)
                | Spec::Database(_)
                | Spec::Attachment(_)
                | Spec::SnapshotPolicy(_)
                | Spec::Parameter(_)
                | Spec::BackupPolicy(_),
                _,
            ) => self
                .attrs()
                .keys()
                .filter_map(|k| self.name_of(k))
                .collect(),
        }
    }

    fn name_of(&self, key: &str) -> Option<&'static str> {
        self.names().iter().copied().find(|n| *n == key)
    }

    /// Field names of the kind, alphabetical.
    pub fn names(&self) -> &'static [&'static str] {
        fn names_of<T: Fields>(_: &T) -> &'static [&'static str] {
            T::NAMES
        }
        each_spec!(self, s => names_of(s))
    }

    /// Whether the field `name` is an input for apply, never compared.
    pub fn is_input(&self, name: &str) -> bool {
        fn input_of<T: Fields>(_: &T, name: &str) -> bool {
            T::is_input(name)
        }
        each_spec!(self, s => input_of(s, name))
    }

    /// Names of the sensitive fields that hold a value.
    pub fn sensitive(&self) -> Vec<&'static str> {
        each_spec!(self, s => s.sensitive())
    }

    /// The fields that hold a value, by name, as plans and state files show
    /// them (sorted).
    pub fn attrs(&self) -> Map<String, Value> {
        let value = each_spec!(self, s => serde_json::to_value(s));
        match value {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }

    /// The spec with its input fields (instructions for apply) left out: what
    /// exists once the spec is applied.
    pub fn without_inputs(&self) -> Spec {
        let mut attrs = self.attrs();
        attrs.retain(|k, _| !self.is_input(k));
        Spec::from_attrs(self.kind(), attrs).expect("a spec's own attributes read back")
    }

    /// Read a spec of `kind` from its attributes.
    ///
    /// # Errors
    /// An attribute the kind does not have, a missing one it needs, or a
    /// value of the wrong type.
    pub fn from_attrs(kind: Kind, attrs: Map<String, Value>) -> Result<Spec, SpecError> {
        fn read<T: serde::de::DeserializeOwned>(
            kind: Kind,
            attrs: Map<String, Value>,
        ) -> Result<T, SpecError> {
            serde_json::from_value(Value::Object(attrs)).map_err(|e| SpecError {
                kind: kind.as_str(),
                message: e.to_string(),
            })
        }
        Ok(match kind {
            Kind::App => Spec::App(read(kind, attrs)?),
            Kind::Secret => Spec::Secret(read(kind, attrs)?),
            Kind::Volume => Spec::Volume(read(kind, attrs)?),
            Kind::Machine => Spec::Machine(read(kind, attrs)?),
            Kind::Formation => Spec::Formation(read(kind, attrs)?),
            Kind::Endpoint => Spec::Endpoint(read(kind, attrs)?),
            Kind::User => Spec::User(read(kind, attrs)?),
            Kind::Database => Spec::Database(read(kind, attrs)?),
            Kind::Attachment => Spec::Attachment(read(kind, attrs)?),
            Kind::SnapshotPolicy => Spec::SnapshotPolicy(read(kind, attrs)?),
            Kind::Parameter => Spec::Parameter(read(kind, attrs)?),
            Kind::BackupPolicy => Spec::BackupPolicy(read(kind, attrs)?),
        })
    }

    /// Serialise the fields that hold a value, in alphabetical order.
    pub(super) fn serialize_attrs<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        each_spec!(self, spec => spec.serialize(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> bool {
        names.windows(2).all(|w| w[0] < w[1])
    }

    #[test]
    fn every_spec_declares_its_fields_in_alphabetical_order() {
        for names in [
            AppSpec::NAMES,
            SecretSpec::NAMES,
            VolumeSpec::NAMES,
            MachineSpec::NAMES,
            FormationSpec::NAMES,
            EndpointSpec::NAMES,
            UserSpec::NAMES,
            DatabaseSpec::NAMES,
            AttachmentSpec::NAMES,
            SnapshotPolicySpec::NAMES,
            ParameterSpec::NAMES,
            BackupPolicySpec::NAMES,
        ] {
            assert!(sorted(names), "fields out of order: {names:?}");
        }
    }

    #[test]
    fn input_fields_are_never_compared_and_absent_desired_fields_are_not_either() {
        let want = AppSpec {
            app_role: None,
            id: None,
            org: None,
            primary_region: Some("iad".into()),
            restore_backup: None,
            restore_from: Some("snap-1".into()),
            state: "running".into(),
            status: None,
        };
        let mut have = want.clone();
        have.restore_from = None;
        have.id = Some("app-id".into());
        assert!(want.changed(&have).is_empty());
        have.primary_region = None;
        assert_eq!(want.changed(&have), ["primary_region"]);
    }

    #[test]
    fn digests_are_sensitive_by_their_type() {
        let s = SecretSpec {
            digest: Some(Digest("sha256:x".into())),
            managed_by: None,
        };
        assert_eq!(s.sensitive(), ["digest"]);
        assert!(SecretSpec {
            digest: None,
            managed_by: None
        }
        .sensitive()
        .is_empty());
    }

    #[test]
    fn unknown_attributes_are_refused() {
        let mut attrs = Map::new();
        attrs.insert("owner".into(), "x".into());
        attrs.insert("ownr".into(), "x".into());
        let err = Spec::from_attrs(Kind::Database, attrs).unwrap_err();
        assert!(err.to_string().contains("ownr"), "{err}");
    }
}

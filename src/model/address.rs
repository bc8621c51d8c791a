//! Resource addresses as types: what each address names, with the stable
//! text (`machine[iad:0]`, `volume.pg_data[iad:0]`) that plans, saved plans
//! and live state files show. The text is made once, from the typed parts,
//! and parsed back in one place.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Kind;

/// What an address names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The cluster's app.
    App { app: String },
    /// A secret of the cluster's app.
    Secret { name: String },
    /// The data volume of one node.
    Volume {
        name: String,
        region: String,
        index: u32,
    },
    /// One node.
    Machine { region: String, index: u32 },
    /// The cluster's replication settings.
    Formation { app: String },
    /// The leader endpoint.
    Endpoint { app: String },
    /// A role.
    User { name: String },
    /// A database.
    Database { name: String },
    /// An app attached to the cluster.
    Attachment { app: String },
    /// The snapshot policy of a volume name.
    SnapshotPolicy { volume: String },
    /// A PostgreSQL setting of every node.
    Parameter { name: String },
    /// Continuous archiving and base backups of the cluster's app.
    BackupPolicy { app: String },
}

impl Target {
    pub fn kind(&self) -> Kind {
        match self {
            Target::App { .. } => Kind::App,
            Target::Secret { .. } => Kind::Secret,
            Target::Volume { .. } => Kind::Volume,
            Target::Machine { .. } => Kind::Machine,
            Target::Formation { .. } => Kind::Formation,
            Target::Endpoint { .. } => Kind::Endpoint,
            Target::User { .. } => Kind::User,
            Target::Database { .. } => Kind::Database,
            Target::Attachment { .. } => Kind::Attachment,
            Target::SnapshotPolicy { .. } => Kind::SnapshotPolicy,
            Target::Parameter { .. } => Kind::Parameter,
            Target::BackupPolicy { .. } => Kind::BackupPolicy,
        }
    }

    fn text(&self) -> String {
        match self {
            Target::App { app } => format!("app.{app}"),
            Target::Secret { name } => format!("secret.{name}"),
            Target::Volume {
                name,
                region,
                index,
            } => format!("volume.{name}[{region}:{index}]"),
            Target::Machine { region, index } => format!("machine[{region}:{index}]"),
            Target::Formation { app } => format!("formation.{app}"),
            Target::Endpoint { app } => format!("endpoint.{app}"),
            Target::User { name } => format!("user.{name}"),
            Target::Database { name } => format!("database.{name}"),
            Target::Attachment { app } => format!("attachment.{app}"),
            Target::SnapshotPolicy { volume } => format!("snapshot_policy.{volume}"),
            Target::Parameter { name } => format!("parameter.{name}"),
            Target::BackupPolicy { app } => format!("backup_policy.{app}"),
        }
    }
}

/// A stable resource address. Equality and order are those of its text, so
/// plans list resources in the same order whatever made them. Shared, so a
/// copy costs no allocation.
#[derive(Debug, Clone)]
pub struct Address(Arc<Parts>);

#[derive(Debug)]
struct Parts {
    target: Target,
    text: String,
}

/// An address whose text has none of the known forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a resource address: {text:?} (expected app.NAME, secret.NAME, volume.NAME[REGION:N], machine[REGION:N], formation.APP, endpoint.APP, user.NAME, database.NAME, attachment.APP, snapshot_policy.VOLUME, parameter.NAME or backup_policy.APP)")]
pub struct AddressError {
    pub text: String,
}

impl Address {
    fn from_target(target: Target) -> Self {
        let text = target.text();
        Address(Arc::new(Parts { target, text }))
    }
    pub fn app(app: &str) -> Self {
        Self::from_target(Target::App { app: app.into() })
    }
    pub fn secret(name: &str) -> Self {
        Self::from_target(Target::Secret { name: name.into() })
    }
    pub fn volume(name: &str, region: &str, index: u32) -> Self {
        Self::from_target(Target::Volume {
            name: name.into(),
            region: region.into(),
            index,
        })
    }
    pub fn machine(region: &str, index: u32) -> Self {
        Self::from_target(Target::Machine {
            region: region.into(),
            index,
        })
    }
    pub fn formation(app: &str) -> Self {
        Self::from_target(Target::Formation { app: app.into() })
    }
    pub fn endpoint(app: &str) -> Self {
        Self::from_target(Target::Endpoint { app: app.into() })
    }
    pub fn database(name: &str) -> Self {
        Self::from_target(Target::Database { name: name.into() })
    }
    pub fn user(name: &str) -> Self {
        Self::from_target(Target::User { name: name.into() })
    }
    pub fn attachment(app: &str) -> Self {
        Self::from_target(Target::Attachment { app: app.into() })
    }
    pub fn snapshot_policy(volume: &str) -> Self {
        Self::from_target(Target::SnapshotPolicy {
            volume: volume.into(),
        })
    }

    pub fn parameter(name: &str) -> Self {
        Self::from_target(Target::Parameter { name: name.into() })
    }

    pub fn backup_policy(app: &str) -> Self {
        Self::from_target(Target::BackupPolicy { app: app.into() })
    }

    /// Read an address back from its text.
    ///
    /// # Errors
    /// Text that is none of the forms above.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let bad = || AddressError {
            text: text.to_string(),
        };
        // `[region:index]` at the end of volumes and machines.
        let bracket = |rest: &str| -> Option<(String, String, u32)> {
            let (head, tail) = rest.split_once('[')?;
            let inner = tail.strip_suffix(']')?;
            let (region, index) = inner.split_once(':')?;
            if region.is_empty() {
                return None;
            }
            Some((head.to_string(), region.to_string(), index.parse().ok()?))
        };
        let target = if let Some(rest) = text.strip_prefix("machine") {
            let (head, region, index) = bracket(rest).ok_or_else(bad)?;
            if !head.is_empty() {
                return Err(bad());
            }
            Target::Machine { region, index }
        } else {
            let (kind, rest) = text.split_once('.').ok_or_else(bad)?;
            if rest.is_empty() {
                return Err(bad());
            }
            let rest = rest.to_string();
            match kind {
                "app" => Target::App { app: rest },
                "secret" => Target::Secret { name: rest },
                "volume" => {
                    let (name, region, index) = bracket(&rest).ok_or_else(bad)?;
                    if name.is_empty() {
                        return Err(bad());
                    }
                    Target::Volume {
                        name,
                        region,
                        index,
                    }
                }
                "formation" => Target::Formation { app: rest },
                "endpoint" => Target::Endpoint { app: rest },
                "user" => Target::User { name: rest },
                "database" => Target::Database { name: rest },
                "attachment" => Target::Attachment { app: rest },
                "snapshot_policy" => Target::SnapshotPolicy { volume: rest },
                "parameter" => Target::Parameter { name: rest },
                "backup_policy" => Target::BackupPolicy { app: rest },
                _ => return Err(bad()),
            }
        };
        let address = Self::from_target(target);
        if address.0.text != text {
            return Err(bad());
        }
        Ok(address)
    }

    /// What the address names.
    pub fn target(&self) -> &Target {
        &self.0.target
    }
    pub fn kind(&self) -> Kind {
        self.0.target.kind()
    }
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The name after the kind: the app of an attachment, the name of a
    /// user, database or secret, the volume of a snapshot policy; the
    /// `region:index` of volumes and machines is not part of it.
    pub fn name(&self) -> &str {
        match self.target() {
            Target::App { app }
            | Target::Formation { app }
            | Target::Endpoint { app }
            | Target::Attachment { app }
            | Target::BackupPolicy { app } => app,
            Target::Secret { name }
            | Target::User { name }
            | Target::Database { name }
            | Target::Parameter { name }
            | Target::Volume { name, .. } => name,
            Target::SnapshotPolicy { volume } => volume,
            Target::Machine { .. } => "",
        }
    }

    /// Region and index of a volume or a machine.
    pub fn node(&self) -> Option<(&str, u32)> {
        match self.target() {
            Target::Volume { region, index, .. } | Target::Machine { region, index } => {
                Some((region, *index))
            }
            _ => None,
        }
    }
}

impl PartialEq for Address {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for Address {}
impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Address {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}
impl Hash for Address {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Address::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_to_the_same_address() {
        for a in [
            Address::app("pg"),
            Address::secret("SU_PASSWORD"),
            Address::volume("pg_data", "iad", 12),
            Address::machine("ams", 0),
            Address::formation("pg"),
            Address::endpoint("pg"),
            Address::user("app_user"),
            Address::database("my.db"),
            Address::attachment("web-app"),
            Address::snapshot_policy("pg_data"),
            Address::parameter("work_mem"),
            Address::backup_policy("pg"),
        ] {
            let back = Address::parse(a.as_str()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.target(), a.target());
            assert_eq!(back.kind(), a.kind());
        }
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "machine[x]",
            "machine[iad:x]",
            "machine[:0]",
            "machines[iad:0]",
            "volume.[iad:0]",
            "volume.pg_data",
            "volume.pg_data[iad:0]x",
            "app.",
            "cluster.pg",
        ] {
            assert!(Address::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn addresses_order_as_their_text() {
        let mut v = [
            Address::machine("iad", 10),
            Address::machine("iad", 2),
            Address::app("b"),
        ];
        v.sort();
        let texts: Vec<&str> = v.iter().map(Address::as_str).collect();
        assert_eq!(texts, ["app.b", "machine[iad:10]", "machine[iad:2]"]);
    }
}

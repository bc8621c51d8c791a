//! A live state read as the parts of a fly.toml: which nodes, which volume,
//! which roles, with the choices about what to leave out made here.

use std::collections::BTreeMap;

use super::{ImportError, ImportOptions};
use crate::live::Live;
use crate::model::{
    Address, Agreed, AttachmentSpec, BackupPolicySpec, Kind, MachineSpec, Resource, Spec, UserSpec,
    OUTSIDE_FLYPLAN,
};

/// Secrets that `fly pg create` generates and postgres-flex reads; flyplan
/// leaves them alone, so an imported file does not list them.
const INTERNAL_SECRETS: &[&str] = &[
    "SU_PASSWORD",
    "REPL_PASSWORD",
    "OPERATOR_PASSWORD",
    "SSH_KEY",
    "SSH_CERT",
    "FLY_CONSUL_URL",
    "CONSUL_URL",
    "FLY_RESTORED_FROM",
];

/// Roles of PostgreSQL itself, of pg_auto_failover, of postgres-flex
/// (repmgr, its admin and metrics roles) and the operator.
const INTERNAL_ROLES: &[&str] = &[
    "postgres",
    "repmgr",
    "flypgadmin",
    "postgres_exporter",
    "pgautofailover_monitor",
    "pgautofailover_replicator",
    "autoctl_node",
];

/// Databases of PostgreSQL and of the HA machinery.
const INTERNAL_DATABASES: &[&str] = &["postgres", "repmgr", "pg_auto_failover"];

/// Whether `name` is a secret flyctl generates for postgres-flex.
pub fn is_internal_secret(name: &str) -> bool {
    INTERNAL_SECRETS.contains(&name)
}

/// Whether `name` is a role of PostgreSQL, the HA machinery or the operator.
pub fn is_internal_role(name: &str) -> bool {
    INTERNAL_ROLES.contains(&name) || name.starts_with("pg_")
}

/// Whether `name` is a database of PostgreSQL or the HA machinery.
pub fn is_internal_database(name: &str) -> bool {
    INTERNAL_DATABASES.contains(&name) || name.starts_with("template")
}

/// A value seen on several nodes or volumes: the most common one, and how
/// many of how many agreed.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen<T> {
    pub value: T,
    pub agreeing: usize,
    pub of: usize,
}

fn most_common<T: Clone + Ord>(values: impl Iterator<Item = T>) -> Option<Seen<T>> {
    let mut counts: BTreeMap<T, usize> = BTreeMap::new();
    let mut of = 0;
    for v in values {
        *counts.entry(v).or_default() += 1;
        of += 1;
    }
    // Ties go to the greatest value: a larger volume, a newer image.
    let (value, agreeing) = counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)))?;
    Some(Seen {
        value,
        agreeing,
        of,
    })
}

/// One secret to declare.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSeen {
    pub name: String,
    /// Set outside flyplan (its value is not one flyplan set).
    pub outside: bool,
}

/// The operator of a cluster made from the seed's `[services.postgres]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSeen {
    pub user: String,
    /// The secret its password is the value of.
    pub password: Option<String>,
    /// The database it owns (`PG_DATABASE`).
    pub database: Option<String>,
}

/// The snapshot policy of the data volume.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySeen {
    pub retention_days: Option<u64>,
    pub scheduled: Option<bool>,
    pub snapshot_time: Option<String>,
}

/// Everything a fly.toml of the cluster says.
#[derive(Debug, Clone)]
pub struct Observed {
    pub app: String,
    pub primary_region: String,
    /// Candidates in the primary region, by index.
    pub candidates: Vec<MachineSpec>,
    /// Read replicas, by region and index.
    pub replicas: Vec<MachineSpec>,
    /// The address of the leader, if one holds the role.
    pub leader: Option<Address>,
    pub image: Option<Seen<String>>,
    pub vm_size: Option<Seen<String>>,
    pub memory_mb: Option<Seen<u64>>,
    pub cpus: Option<Seen<u32>>,
    pub cpu_kind: Option<Seen<String>>,
    pub sync_standbys: Option<u64>,
    pub volume_name: Option<Seen<String>>,
    pub volume_size_gb: Option<Seen<u64>>,
    pub volume_count: usize,
    pub policy: Option<PolicySeen>,
    pub secrets: Vec<SecretSeen>,
    /// Internal secrets seen and left out.
    pub internal_secrets: Vec<String>,
    /// The secret holding the password of user `postgres`, when observe
    /// matched it.
    pub operator_password: Option<String>,
    /// An operator under another name than `postgres` (the seed's dialect).
    pub operator: Option<OperatorSeen>,
    pub attachments: Vec<(String, AttachmentSpec)>,
    pub users: Vec<(String, UserSpec)>,
    /// Databases by name with their owner.
    pub databases: Vec<(String, String)>,
    /// `--no-roles` was given.
    pub roles_left_out: bool,
    /// Settings written with `ALTER SYSTEM` that every node agrees on, by
    /// name, as `SHOW` prints them; and those the nodes disagree on.
    pub parameters: Vec<(String, String)>,
    pub mixed_parameters: Vec<String>,
    /// Continuous archiving and base backups, when set.
    pub backup: Option<BackupPolicySpec>,
}

impl Observed {
    /// Read `live` as the parts of a fly.toml.
    ///
    /// # Errors
    /// When the app does not exist or its primary region cannot be told.
    pub fn read(app: &str, live: &Live, opts: ImportOptions) -> Result<Self, ImportError> {
        let app = app.to_string();
        let app_spec = live
            .get(&Address::app(&app))
            .and_then(Resource::app)
            .ok_or_else(|| ImportError::NoSuchApp { app: app.clone() })?;
        let machines: Vec<&MachineSpec> = live
            .of_kind(Kind::Machine)
            .filter_map(Resource::machine)
            .collect();
        let leader = live.leader();
        let primary_region = app_spec
            .primary_region
            .clone()
            .or_else(|| leader.and_then(Resource::machine).map(|m| m.region.clone()))
            .ok_or_else(|| ImportError::NoPrimaryRegion { app: app.clone() })?;
        let (candidates, replicas): (Vec<MachineSpec>, Vec<MachineSpec>) = machines
            .iter()
            .map(|m| (*m).clone())
            .partition(|m| m.region == primary_region);

        let volumes: Vec<_> = live
            .of_kind(Kind::Volume)
            .filter_map(Resource::volume)
            .collect();
        let volume_name = most_common(volumes.iter().map(|v| v.name.clone()));
        let volume_size_gb = most_common(volumes.iter().map(|v| v.size_gb));
        let policy_name = volume_name.as_ref().map_or("pg_data", |s| s.value.as_str());
        let policy = match live
            .get(&Address::snapshot_policy(policy_name))
            .map(|r| &r.spec)
        {
            Some(Spec::SnapshotPolicy(p)) => Some(PolicySeen {
                retention_days: p.retention_days.as_ref().and_then(Agreed::one).copied(),
                scheduled: p.scheduled.as_ref().and_then(Agreed::one).copied(),
                snapshot_time: p.snapshot_time.clone(),
            }),
            _ => None,
        };
        let sync_standbys = match live.get(&Address::formation(&app)).map(|r| &r.spec) {
            Some(Spec::Formation(f)) => f.sync_standbys.as_ref().and_then(Agreed::one).copied(),
            _ => None,
        };

        let attachments: Vec<(String, AttachmentSpec)> = live
            .of_kind(Kind::Attachment)
            .filter_map(|r| Some((r.address.name().to_string(), r.attachment()?.clone())))
            .collect();
        let attachment_users: Vec<&str> =
            attachments.iter().map(|(_, a)| a.user.as_str()).collect();
        let attachment_dbs: Vec<&str> = attachments
            .iter()
            .map(|(_, a)| a.database.as_str())
            .collect();

        // A role's password digest is that of the secret it was set from
        // (both salted with the app and the secret's name), when observe
        // did not name the secret itself.
        let secret_of = |u: &UserSpec| -> Option<String> {
            if let Some(s) = &u.password_secret {
                return Some(s.clone());
            }
            let digest = u.password.as_ref()?;
            live.of_kind(Kind::Secret).find_map(|r| match &r.spec {
                Spec::Secret(s) if s.digest.as_ref() == Some(digest) => {
                    Some(r.address.name().to_string())
                }
                _ => None,
            })
        };
        let operator_password = live
            .get(&Address::user("postgres"))
            .and_then(Resource::user)
            .and_then(secret_of);
        let mut users = Vec::new();
        let mut databases = Vec::new();
        {
            for r in live.of_kind(Kind::User) {
                let name = r.address.name();
                let Some(u) = r.user() else { continue };
                if is_internal_role(name)
                    || attachment_users.contains(&name)
                    || u.managed_by.as_deref() == Some(OUTSIDE_FLYPLAN)
                {
                    continue;
                }
                let mut u = u.clone();
                u.password_secret = secret_of(&u);
                users.push((name.to_string(), u));
            }
            for r in live.of_kind(Kind::Database) {
                let name = r.address.name();
                let Spec::Database(d) = &r.spec else { continue };
                if is_internal_database(name) || attachment_dbs.contains(&name) {
                    continue;
                }
                databases.push((name.to_string(), d.owner.clone()));
            }
        }
        // A cluster of the seed's `[services.postgres]` form has its operator
        // under another name (`PG_USER`) and no role `postgres`: the one
        // superuser is that operator, and the first database it owns is
        // its `PG_DATABASE`.
        let mut operator = None;
        let superusers: Vec<usize> = (0..users.len()).filter(|i| users[*i].1.superuser).collect();
        if live.get(&Address::user("postgres")).is_none() && superusers.len() == 1 {
            let (name, u) = users.remove(superusers[0]);
            let database = databases
                .iter()
                .position(|(_, owner)| *owner == name)
                .map(|i| databases.remove(i).0);
            operator = Some(OperatorSeen {
                password: secret_of(&u),
                user: name,
                database,
            });
        }
        if opts.no_roles {
            users.clear();
            databases.clear();
        }

        let mut parameters = Vec::new();
        let mut mixed_parameters = Vec::new();
        for r in live.of_kind(Kind::Parameter) {
            let Spec::Parameter(p) = &r.spec else {
                continue;
            };
            // Settings flyplan or pg_auto_failover own, which fly.toml may
            // not name: pg_auto_failover writes `synchronous_standby_names`
            // with `ALTER SYSTEM` too, and every node has the same value
            // while the leader is `wait_primary`.
            let name = r.address.name();
            if crate::pgsettings::lookup(name)
                .is_some_and(|s| crate::pgsettings::owned(s).is_some())
            {
                continue;
            }
            match p.value.one() {
                Some(v) => parameters.push((r.address.name().to_string(), v.clone())),
                None => mixed_parameters.push(r.address.name().to_string()),
            }
        }
        let backup = match live.get(&Address::backup_policy(&app)).map(|r| &r.spec) {
            Some(Spec::BackupPolicy(b)) => Some(b.clone()),
            _ => None,
        };

        // Secrets that a declared key names must be declared, internal or not.
        let mut referenced: Vec<&str> = users
            .iter()
            .filter_map(|(_, u)| u.password_secret.as_deref())
            .collect();
        referenced.extend(backup.as_ref().map(|b| b.secret.as_str()));
        referenced.extend(operator_password.as_deref());
        referenced.extend(operator.as_ref().and_then(|o| o.password.as_deref()));
        let mut secrets = Vec::new();
        let mut internal_secrets = Vec::new();
        for r in live.of_kind(Kind::Secret) {
            let name = r.address.name();
            let outside = r.managed_by() == Some(OUTSIDE_FLYPLAN);
            // Only one flyplan does not manage may stay out: the plan
            // leaves those alone, and would delete one it set.
            if is_internal_secret(name) && outside && !referenced.contains(&name) {
                internal_secrets.push(name.to_string());
                continue;
            }
            secrets.push(SecretSeen {
                name: name.to_string(),
                outside,
            });
        }

        Ok(Observed {
            app,
            primary_region,
            leader: leader.map(|r| r.address.clone()),
            image: most_common(machines.iter().filter_map(|m| m.image.clone())),
            vm_size: most_common(machines.iter().filter_map(|m| m.vm_size.clone())),
            memory_mb: most_common(machines.iter().filter_map(|m| m.memory_mb)),
            cpus: most_common(machines.iter().filter_map(|m| m.cpus)),
            cpu_kind: most_common(machines.iter().filter_map(|m| m.cpu_kind.clone())),
            candidates,
            replicas,
            sync_standbys,
            volume_name,
            volume_size_gb,
            volume_count: volumes.len(),
            policy,
            secrets,
            internal_secrets,
            operator_password,
            operator,
            attachments,
            users,
            databases,
            roles_left_out: opts.no_roles,
            parameters,
            mixed_parameters,
            backup,
        })
    }

    /// Read replicas by region.
    pub fn replicas_by_region(&self) -> BTreeMap<&str, u32> {
        let mut out: BTreeMap<&str, u32> = BTreeMap::new();
        for m in &self.replicas {
            *out.entry(m.region.as_str()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_common_value_wins_and_ties_go_to_the_greatest() {
        let s = most_common([10u64, 20, 10].into_iter()).unwrap();
        assert_eq!((s.value, s.agreeing, s.of), (10, 2, 3));
        let s = most_common([10u64, 20].into_iter()).unwrap();
        assert_eq!(s.value, 20);
        assert!(most_common(std::iter::empty::<u64>()).is_none());
    }

    #[test]
    fn internal_names_are_recognised() {
        assert!(is_internal_role("repmgr"));
        assert!(is_internal_role("pg_monitor"));
        assert!(!is_internal_role("app_user"));
        assert!(is_internal_secret("SU_PASSWORD"));
        assert!(!is_internal_secret("PG_PASSWORD"));
        assert!(is_internal_database("template1"));
        assert!(!is_internal_database("analytics"));
    }
}

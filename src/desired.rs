//! The desired state: a validated [`Config`] turned into provider-neutral
//! resources with stable addresses, secrets resolved to digests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::config::{Config, Diagnostic, Ensure, SecretSource};
use crate::model::{attr, role, Address, Kind, Resource};
use crate::secrets::SecretValues;
use crate::secrets::{self, Environment};

/// Everything fly.toml asks for, as resources.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub app: String,
    pub resources: BTreeMap<Address, Resource>,
    /// Resources declared with `ensure = "absent"`: removed when present.
    pub absent: BTreeSet<Address>,
    /// Declared secrets and their sources, for apply to read values again.
    pub secret_sources: BTreeMap<String, SecretSource>,
    /// Secret values read for this run; never serialised or printed.
    pub secret_values: SecretValues,
}

/// Errors of the desired layer: a secret that cannot be read, located at
/// its declaration.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("{diagnostic}")]
    Secret { diagnostic: Box<Diagnostic> },
}

impl Desired {
    /// The desired state of an app that should not exist (used by destroy).
    pub fn nothing(app: &str) -> Self {
        Desired {
            app: app.to_string(),
            ..Default::default()
        }
    }

    /// Build from a validated config, reading secrets from their sources.
    ///
    /// # Errors
    /// A declared secret whose source cannot be read (unset variable,
    /// unreadable file), located at the declaration.
    pub fn from_config(config: &Config, env: &dyn Environment) -> Result<Self, DesiredError> {
        let app = config.app.as_str();
        let config_dir = config.path.parent().unwrap_or(Path::new("."));
        let mut d = Desired {
            app: app.to_string(),
            secret_sources: config.secrets.clone(),
            ..Default::default()
        };

        // Secrets first: other resources refer to their digests.
        let mut values = BTreeMap::new();
        let mut digests = BTreeMap::new();
        for (name, source) in &config.secrets {
            let mut r = Resource::new(Address::secret(name), Kind::Secret);
            match secrets::read(source, config_dir, env) {
                Ok(Some(value)) => {
                    let dg = secrets::digest(app, name, &value);
                    r = r.with_sensitive(attr::DIGEST, dg.clone());
                    digests.insert(name.clone(), dg);
                    values.insert(name.clone(), value);
                }
                Ok(None) => {}
                Err(why) => {
                    let span = config.spans.get(&format!("secrets.{name}")).unwrap_or(0..0);
                    let diagnostic = Diagnostic::at(
                        &config.path,
                        &config.source,
                        span,
                        format!("secret {name}: {why}"),
                    );
                    return Err(DesiredError::Secret {
                        diagnostic: Box::new(diagnostic),
                    });
                }
            }
            d.add(r);
        }
        d.secret_values = SecretValues::new(values);

        let mut app_r = Resource::new(Address::app(app), Kind::App)
            .with(attr::PRIMARY_REGION, config.primary_region.as_str())
            .with(attr::STATE, "running");
        if let Some(id) = &config.postgres.restore_from {
            app_r = app_r.with(attr::RESTORE_FROM, id.as_str());
        }
        d.add(app_r);

        // One volume and one machine per node.
        let mount = config.mounts.first();
        let volume_name = mount.map_or("pg_data", |m| m.source.as_str());
        let size_gb = mount.map_or(1, |m| m.initial_size_gb);
        let mut nodes: Vec<(&str, u32, &str)> = (0..config.postgres.instances)
            .map(|i| (config.primary_region.as_str(), i, role::CANDIDATE))
            .collect();
        for (region, count) in &config.postgres.read_replicas {
            nodes.extend((0..*count).map(|i| (region.as_str(), i, role::REPLICA)));
        }
        for (region, index, node_role) in nodes {
            let vol = Address::volume(volume_name, region, index);
            d.add(
                Resource::new(vol.clone(), Kind::Volume)
                    .with(attr::NAME, volume_name)
                    .with(attr::REGION, region)
                    .with(attr::SIZE_GB, size_gb),
            );
            d.add(
                Resource::new(Address::machine(region, index), Kind::Machine)
                    .with(attr::REGION, region)
                    .with(attr::INDEX, index)
                    .with(attr::ROLE, node_role)
                    .with(attr::IMAGE, config.image.as_str())
                    .with(attr::VM_SIZE, config.vm.size.as_str())
                    .with(attr::MEMORY_MB, config.vm.memory_mb)
                    .with(attr::CPUS, config.vm.cpus)
                    .with(attr::CPU_KIND, config.vm.cpu_kind.as_str())
                    .with(attr::VOLUME, vol.0.as_str())
                    .with(attr::STATE, "running"),
            );
        }

        d.add(
            Resource::new(Address::formation(app), Kind::Formation)
                .with(attr::SYNC_STANDBYS, config.postgres.sync_standbys),
        );
        d.add(
            // The endpoint's port is the provider's: 5432 on Fly's proxy, an
            // allocated port on the local machine.
            Resource::new(Address::endpoint(app), Kind::Endpoint).with(attr::STATE, "running"),
        );

        // The operator role, its database, then declared roles and databases.
        let pg = &config.postgres;
        let operator = user_resource(
            &pg.operator_user,
            true,
            true,
            pg.operator_password.as_deref(),
            &digests,
        );
        d.add(operator);
        if let Some(db) = &pg.database {
            d.add(
                Resource::new(Address::database(db), Kind::Database)
                    .with(attr::OWNER, pg.operator_user.as_str()),
            );
        }
        for u in &pg.users {
            let address = Address::user(&u.name);
            if u.ensure == Ensure::Absent {
                d.absent.insert(address);
                continue;
            }
            let mut r = user_resource(
                &u.name,
                u.login,
                u.superuser,
                u.password_secret.as_deref(),
                &digests,
            )
            .with(attr::CREATEDB, u.createdb)
            .with(attr::CREATEROLE, u.createrole)
            .with(attr::REPLICATION, u.replication)
            .with(attr::CONNECTION_LIMIT, u.connection_limit);
            let mut member_of = u.member_of.clone();
            member_of.sort();
            r = r.with(attr::MEMBER_OF, member_of);
            d.add(r);
        }
        for db in &pg.databases {
            let address = Address::database(&db.name);
            if db.ensure == Ensure::Absent {
                d.absent.insert(address);
                continue;
            }
            let owner = db.owner.as_deref().unwrap_or(&pg.operator_user);
            d.add(Resource::new(address, Kind::Database).with(attr::OWNER, owner));
        }

        for a in &config.attachments {
            d.add(
                Resource::new(Address::attachment(&a.app), Kind::Attachment)
                    .with(attr::DATABASE, a.database.as_str())
                    .with(attr::USER, a.user.as_str())
                    .with(attr::VARIABLE, a.variable.as_str())
                    .with(attr::SUPERUSER, a.superuser)
                    .with(attr::CREDENTIALS, "valid"),
            );
        }

        for m in &config.mounts {
            d.add(
                Resource::new(Address::snapshot_policy(&m.source), Kind::SnapshotPolicy)
                    .with(attr::SCHEDULED, m.scheduled_snapshots)
                    .with(attr::RETENTION_DAYS, m.snapshot_retention)
                    .with(attr::SNAPSHOT_TIME, m.snapshot_time.as_str()),
            );
        }
        if config.mounts.is_empty() {
            d.add(
                Resource::new(Address::snapshot_policy(volume_name), Kind::SnapshotPolicy)
                    .with(attr::SCHEDULED, true)
                    .with(attr::RETENTION_DAYS, 5)
                    .with(attr::SNAPSHOT_TIME, "00:00"),
            );
        }
        Ok(d)
    }

    fn add(&mut self, r: Resource) {
        self.resources.insert(r.address.clone(), r);
    }

    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.resources.get(address)
    }
}

fn user_resource(
    name: &str,
    login: bool,
    superuser: bool,
    password_secret: Option<&str>,
    digests: &BTreeMap<String, String>,
) -> Resource {
    let mut r = Resource::new(Address::user(name), Kind::User)
        .with(attr::LOGIN, login)
        .with(attr::SUPERUSER, superuser);
    if let Some(secret) = password_secret {
        r = r.with(attr::PASSWORD_SECRET, secret);
        if let Some(dg) = digests.get(secret) {
            r = r.with_sensitive(attr::PASSWORD, dg.as_str());
        }
    }
    r
}

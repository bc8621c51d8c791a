//! The desired state: a validated [`Config`] turned into provider-neutral
//! resources with stable addresses, secrets resolved to digests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::config::{Config, Diagnostic, Ensure, SecretSource};
use crate::model::{
    Address, Agreed, AppSpec, AttachmentSpec, DatabaseSpec, Digest, EndpointSpec, FormationSpec,
    MachineSpec, Resource, Role, SecretSpec, SnapshotPolicySpec, Spec, UserSpec, VolumeSpec,
};
use crate::secrets::SecretValues;
use crate::secrets::{self, Environment};

/// The state that desired machines, apps and endpoints are in.
pub const RUNNING: &str = "running";

/// An attachment's credentials when the role's password, the consumer's
/// secret and the endpoint agree.
pub const CREDENTIALS_VALID: &str = "valid";

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
            let mut spec = SecretSpec {
                digest: None,
                managed_by: None,
            };
            match secrets::read(source, config_dir, env) {
                Ok(Some(value)) => {
                    let dg = Digest(secrets::digest(app, name, &value));
                    spec.digest = Some(dg.clone());
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
            d.add(Address::secret(name), Spec::Secret(spec));
        }
        d.secret_values = SecretValues::new(values);

        d.add(
            Address::app(app),
            Spec::App(AppSpec {
                app_role: None,
                id: None,
                org: None,
                primary_region: Some(config.primary_region.clone()),
                restore_from: config.postgres.restore_from.clone(),
                state: RUNNING.to_string(),
                status: None,
            }),
        );

        // One volume and one machine per node.
        let mount = config.mounts.first();
        let volume_name = mount.map_or("pg_data", |m| m.source.as_str());
        let size_gb = mount.map_or(1, |m| m.initial_size_gb);
        let mut nodes: Vec<(&str, u32, Role)> = (0..config.postgres.instances)
            .map(|i| (config.primary_region.as_str(), i, Role::Candidate))
            .collect();
        for (region, count) in &config.postgres.read_replicas {
            nodes.extend((0..*count).map(|i| (region.as_str(), i, Role::Replica)));
        }
        for (region, index, role) in nodes {
            let vol = Address::volume(volume_name, region, index);
            d.add(
                vol.clone(),
                Spec::Volume(VolumeSpec {
                    attached_machine_id: None,
                    auto_backup_enabled: None,
                    id: None,
                    name: volume_name.to_string(),
                    region: region.to_string(),
                    size_gb,
                    snapshot_retention: None,
                }),
            );
            d.add(
                Address::machine(region, index),
                Spec::Machine(MachineSpec {
                    cpu_kind: Some(config.vm.cpu_kind.clone()),
                    cpus: Some(config.vm.cpus),
                    id: None,
                    image: Some(config.image.clone()),
                    index,
                    instance_id: None,
                    leader: None,
                    machine_name: None,
                    memory_mb: Some(u64::from(config.vm.memory_mb)),
                    region: region.to_string(),
                    role,
                    role_check: None,
                    state: RUNNING.to_string(),
                    vm_size: Some(config.vm.size.clone()),
                    volume: Some(vol),
                }),
            );
        }

        d.add(
            Address::formation(app),
            Spec::Formation(FormationSpec {
                sync_standbys: Some(Agreed::One(u64::from(config.postgres.sync_standbys))),
            }),
        );
        // The endpoint's port is the provider's: 5432 on Fly's proxy, an
        // allocated port on the local machine.
        d.add(
            Address::endpoint(app),
            Spec::Endpoint(EndpointSpec {
                state: RUNNING.to_string(),
            }),
        );

        // The operator role, its database, then declared roles and databases.
        let pg = &config.postgres;
        let operator = user_spec(true, true, pg.operator_password.as_deref(), &digests);
        d.add(Address::user(&pg.operator_user), Spec::User(operator));
        if let Some(db) = &pg.database {
            d.add(
                Address::database(db),
                Spec::Database(DatabaseSpec {
                    owner: pg.operator_user.clone(),
                }),
            );
        }
        for u in &pg.users {
            let address = Address::user(&u.name);
            if u.ensure == Ensure::Absent {
                d.absent.insert(address);
                continue;
            }
            let mut spec = user_spec(u.login, u.superuser, u.password_secret.as_deref(), &digests);
            let mut member_of = u.member_of.clone();
            member_of.sort();
            spec.createdb = Some(u.createdb);
            spec.createrole = Some(u.createrole);
            spec.replication = Some(u.replication);
            spec.connection_limit = Some(i64::from(u.connection_limit));
            spec.member_of = Some(member_of);
            d.add(address, Spec::User(spec));
        }
        for db in &pg.databases {
            let address = Address::database(&db.name);
            if db.ensure == Ensure::Absent {
                d.absent.insert(address);
                continue;
            }
            let owner = db.owner.as_deref().unwrap_or(&pg.operator_user);
            d.add(
                address,
                Spec::Database(DatabaseSpec {
                    owner: owner.to_string(),
                }),
            );
        }

        for a in &config.attachments {
            d.add(
                Address::attachment(&a.app),
                Spec::Attachment(AttachmentSpec {
                    credentials: CREDENTIALS_VALID.to_string(),
                    database: a.database.clone(),
                    superuser: Some(a.superuser),
                    user: a.user.clone(),
                    variable: a.variable.clone(),
                }),
            );
        }

        for m in &config.mounts {
            d.add(
                Address::snapshot_policy(&m.source),
                Spec::SnapshotPolicy(SnapshotPolicySpec {
                    retention_days: Some(Agreed::One(u64::from(m.snapshot_retention))),
                    scheduled: Some(Agreed::One(m.scheduled_snapshots)),
                    snapshot_time: Some(m.snapshot_time.clone()),
                }),
            );
        }
        if config.mounts.is_empty() {
            d.add(
                Address::snapshot_policy(volume_name),
                Spec::SnapshotPolicy(SnapshotPolicySpec {
                    retention_days: Some(Agreed::One(5)),
                    scheduled: Some(Agreed::One(true)),
                    snapshot_time: Some("00:00".to_string()),
                }),
            );
        }
        Ok(d)
    }

    fn add(&mut self, address: Address, spec: Spec) {
        self.resources
            .insert(address.clone(), Resource::new(address, spec));
    }

    /// The app's resource spec.
    pub fn app_spec(&self) -> Option<&AppSpec> {
        self.get(&Address::app(&self.app)).and_then(Resource::app)
    }

    /// Seed the cluster from a snapshot when it is created.
    pub fn restore_from(&mut self, id: &str) -> bool {
        let address = Address::app(&self.app);
        match self.resources.get_mut(&address).map(|r| &mut r.spec) {
            Some(Spec::App(app)) => {
                app.restore_from = Some(id.to_string());
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, address: &Address) -> Option<&Resource> {
        self.resources.get(address)
    }
}

fn user_spec(
    login: bool,
    superuser: bool,
    password_secret: Option<&str>,
    digests: &BTreeMap<String, Digest>,
) -> UserSpec {
    UserSpec {
        connection_limit: None,
        createdb: None,
        createrole: None,
        login,
        managed_by: None,
        member_of: None,
        password: password_secret.and_then(|s| digests.get(s).cloned()),
        password_secret: password_secret.map(str::to_string),
        replication: None,
        superuser,
    }
}

//! The desired state: a validated [`Config`] turned into provider-neutral
//! resources with stable addresses, secrets resolved to digests.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::backup::{StoreUrl, URL_FORM};
use crate::config::{units, Config, Diagnostic, Ensure, SecretSource};
use crate::live::Live;
use crate::model::{
    Address, Agreed, AppSpec, AttachmentSpec, BackupPolicySpec, DatabaseSpec, Digest, EndpointSpec,
    FormationSpec, Kind, MachineSpec, ParameterSpec, Resource, Role, SecretSpec,
    SnapshotPolicySpec, Spec, UserSpec, VolumeSpec,
};
use crate::secrets::SecretValues;
use crate::secrets::{self, Environment};

/// The state that desired machines, apps and endpoints are in.
pub const RUNNING: &str = "running";

/// An attachment's credentials when the role's password, the consumer's
/// secret and the endpoint agree.
pub const CREDENTIALS_VALID: &str = "valid";

/// `archiving` of a backup policy whose nodes all archive to its store.
pub const ARCHIVING_ON: &str = "on";

/// A secret named as a store URL must hold one, in postgres-flex's form: a
/// malformed value is an error located at the key that names the secret,
/// which says why without repeating the value.
fn check_store_url(
    config: &Config,
    secret: &str,
    key: &str,
    values: &SecretValues,
) -> Result<(), DesiredError> {
    let located = |message: String| {
        let span = config.spans.get(key).unwrap_or(0..0);
        DesiredError::Secret {
            diagnostic: Box::new(Diagnostic::at(&config.path, &config.source, span, message)),
        }
    };
    match values.get(secret) {
        Some(v) => StoreUrl::parse(v, true)
            .map(|_| ())
            .map_err(|e| located(format!("secret {secret} is not a store URL: {e}"))),
        None if matches!(config.secrets.get(secret), Some(SecretSource::Generate)) => Err(located(
            format!("secret {secret} is generated, but a store URL must be given ({URL_FORM})"),
        )),
        None => Ok(()),
    }
}

/// `restore_backup` of the app: the source secret and the target, written
/// as postgres-flex's restore config writes it (`?targetTime=`, `?target=`).
pub fn restore_input(r: &crate::config::RestoreConfig) -> String {
    use crate::config::RestoreTarget;
    match &r.target {
        RestoreTarget::Latest => r.backup_secret.clone(),
        RestoreTarget::Time(t) => format!("{}?targetTime={t}", r.backup_secret),
        RestoreTarget::Backup(id) => format!("{}?target={id}", r.backup_secret),
    }
}

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
    /// Node counts fly.toml left out, settled against the live state when
    /// planning (see [`Desired::settled`]). `None`: everything declared.
    pub undeclared: Option<Undeclared>,
    /// `[[mounts]] initial_size` was not given: an existing cluster's
    /// volumes keep their live size (see [`Desired::settled`]).
    pub size_undeclared: bool,
}

/// Node counts a fly.toml did not give. A fly.toml as `fly config save`
/// writes it has no `[postgres]` table: on Fly the count lives in the
/// machines, so an existing cluster keeps the nodes it has.
#[derive(Debug, Clone)]
pub struct Undeclared {
    /// `[postgres] instances` was not given.
    pub instances: bool,
    /// `[postgres] read_replicas` was not given.
    pub read_replicas: bool,
    /// Neither `[postgres] sync_standbys` nor `instances` was given.
    pub sync_standbys: bool,
    pub primary_region: String,
    /// How every node is made.
    pub node: NodeTemplate,
}

/// What the volume and machine of every node look like.
#[derive(Debug, Clone)]
pub struct NodeTemplate {
    pub volume_name: String,
    pub size_gb: u64,
    pub cpu_kind: String,
    pub cpus: u32,
    pub image: String,
    pub memory_mb: u64,
    pub vm_size: String,
}

impl NodeTemplate {
    /// The volume and the machine of node `index` in `region`.
    fn node(&self, region: &str, index: u32, role: Role) -> [(Address, Spec); 2] {
        let vol = Address::volume(&self.volume_name, region, index);
        let volume = Spec::Volume(VolumeSpec {
            attached_machine_id: None,
            auto_backup_enabled: None,
            id: None,
            name: self.volume_name.clone(),
            region: region.to_string(),
            size_gb: self.size_gb,
            snapshot_retention: None,
        });
        let machine = Spec::Machine(MachineSpec {
            cpu_kind: Some(self.cpu_kind.clone()),
            cpus: Some(self.cpus),
            id: None,
            image: Some(self.image.clone()),
            index,
            instance_id: None,
            leader: None,
            machine_name: None,
            memory_mb: Some(self.memory_mb),
            region: region.to_string(),
            role,
            role_check: None,
            state: RUNNING.to_string(),
            vm_size: Some(self.vm_size.clone()),
            volume: Some(vol.clone()),
        });
        [(vol, volume), (Address::machine(region, index), machine)]
    }
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
                restore_backup: config.postgres.restore.as_ref().map(restore_input),
                restore_from: config.postgres.restore_from.clone(),
                state: RUNNING.to_string(),
                status: None,
            }),
        );

        // One volume and one machine per node.
        let mount = config.mounts.first();
        let template = NodeTemplate {
            volume_name: mount.map_or("pg_data", |m| m.source.as_str()).to_string(),
            size_gb: mount.map_or(1, |m| m.initial_size_gb),
            cpu_kind: config.vm.cpu_kind.clone(),
            cpus: config.vm.cpus,
            image: config.image.clone(),
            memory_mb: u64::from(config.vm.memory_mb),
            vm_size: config.vm.size.clone(),
        };
        let volume_name = template.volume_name.clone();
        let mut nodes: Vec<(&str, u32, Role)> = (0..config.postgres.instances)
            .map(|i| (config.primary_region.as_str(), i, Role::Candidate))
            .collect();
        for (region, count) in &config.postgres.read_replicas {
            nodes.extend((0..*count).map(|i| (region.as_str(), i, Role::Replica)));
        }
        for (region, index, role) in nodes {
            for (address, spec) in template.node(region, index, role) {
                d.add(address, spec);
            }
        }
        d.size_undeclared = !mount.is_some_and(|m| m.initial_size_declared);
        let pg = &config.postgres;
        let sync_undeclared = !pg.instances_declared && !pg.sync_standbys_declared;
        if !pg.instances_declared || !pg.read_replicas_declared {
            d.undeclared = Some(Undeclared {
                instances: !pg.instances_declared,
                read_replicas: !pg.read_replicas_declared,
                sync_standbys: sync_undeclared,
                primary_region: config.primary_region.clone(),
                node: template,
            });
        }

        d.add(
            Address::formation(app),
            Spec::Formation(FormationSpec {
                sync_standbys: Some(Agreed::One(u64::from(config.postgres.sync_standbys))),
            }),
        );
        // `[postgres.parameters]`: one resource per setting, so the plan
        // says of each whether it needs a reload or a restart.
        for (name, value) in &config.postgres.parameters {
            d.add(
                Address::parameter(name),
                Spec::Parameter(ParameterSpec {
                    pending_restart: None,
                    value: Agreed::One(value.clone()),
                }),
            );
        }
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
                Address::snapshot_policy(&volume_name),
                Spec::SnapshotPolicy(SnapshotPolicySpec {
                    retention_days: Some(Agreed::One(5)),
                    scheduled: Some(Agreed::One(true)),
                    snapshot_time: Some("00:00".to_string()),
                }),
            );
        }
        if let Some(b) = &config.postgres.backup {
            check_store_url(
                config,
                &b.secret,
                "postgres.backup.secret",
                &d.secret_values,
            )?;
            d.add(
                Address::backup_policy(app),
                Spec::BackupPolicy(BackupPolicySpec {
                    archive_timeout: format!("{}s", b.archive_timeout_s),
                    archiving: Some(Agreed::One(ARCHIVING_ON.to_string())),
                    full_backup_frequency: units::format_duration_s(b.full_backup_frequency_s),
                    minimum_redundancy: b.minimum_redundancy,
                    recovery_window: b.recovery_window.clone(),
                    secret: b.secret.clone(),
                    store: digests.get(&b.secret).cloned(),
                }),
            );
        }
        if let Some(r) = &config.postgres.restore {
            check_store_url(
                config,
                &r.backup_secret,
                "postgres.restore.backup_secret",
                &d.secret_values,
            )?;
        }
        Ok(d)
    }

    /// The desired state to plan against `live`: node counts fly.toml did
    /// not give follow the live cluster when the app exists (its nodes are
    /// kept, by address, and so is the number of sync standbys when
    /// neither it nor `instances` is given), with a note for the plan
    /// saying so. When the app
    /// does not exist, or every count is declared, it is `self` unchanged.
    pub fn settled(&self, live: &Live) -> (Cow<'_, Desired>, Vec<String>) {
        if (self.undeclared.is_none() && !self.size_undeclared)
            || live.get(&Address::app(&self.app)).is_none()
        {
            return (Cow::Borrowed(self), Vec::new());
        }
        let mut d = self.clone();
        let mut notes = Vec::new();
        if let Some(u) = &self.undeclared {
            d.settle_counts(u, live, &mut notes);
        }
        if self.size_undeclared {
            d.settle_volume_sizes(live, &mut notes);
        }
        (Cow::Owned(d), notes)
    }

    /// Volumes of an existing cluster keep their live size when fly.toml
    /// gives no `initial_size`; a new volume takes the largest live size
    /// of its name, so a new node matches the others.
    fn settle_volume_sizes(&mut self, live: &Live, notes: &mut Vec<String>) {
        let live_sizes: BTreeMap<&Address, (&str, u64)> = live
            .of_kind(Kind::Volume)
            .filter_map(|r| {
                r.volume()
                    .map(|v| (&r.address, (v.name.as_str(), v.size_gb)))
            })
            .collect();
        let mut largest: BTreeMap<&str, u64> = BTreeMap::new();
        for (name, size) in live_sizes.values() {
            let e = largest.entry(name).or_default();
            *e = (*e).max(*size);
        }
        let mut kept = BTreeSet::new();
        for r in self.resources.values_mut() {
            let address = r.address.clone();
            let Spec::Volume(v) = &mut r.spec else {
                continue;
            };
            let size = match live_sizes.get(&address) {
                Some((_, size)) => Some(*size),
                None => largest.get(v.name.as_str()).copied(),
            };
            if let Some(size) = size.filter(|size| *size != v.size_gb) {
                v.size_gb = size;
                kept.insert(size);
            }
        }
        // Said only where it changes the plan: a live size equal to the
        // default needs no note.
        if !kept.is_empty() {
            let sizes: Vec<String> = kept.iter().map(|gb| format!("{gb} GB")).collect();
            notes.push(format!(
                "initial_size not declared in fly.toml: keeping the live volume size ({}); \
                 declare [[mounts]] initial_size to manage it",
                sizes.join(", ")
            ));
        }
    }

    /// Node counts fly.toml did not give follow the live cluster.
    fn settle_counts(&mut self, u: &Undeclared, live: &Live, notes: &mut Vec<String>) {
        let d = self;
        let primary = u.primary_region.as_str();
        let live_nodes = |in_primary: bool| -> Vec<(String, u32)> {
            live.of_kind(Kind::Machine)
                .filter_map(Resource::machine)
                .filter(|m| (m.region == primary) == in_primary)
                .map(|m| (m.region.clone(), m.index))
                .collect()
        };
        if u.instances {
            let kept = live_nodes(true);
            if kept.is_empty() {
                notes.push(format!(
                    "instances not declared in fly.toml and no live node in {primary}: \
                     planning 1 node; declare [postgres] instances to manage the count"
                ));
            } else {
                d.replace_nodes(true, primary, &kept, Role::Candidate, &u.node);
                notes.push(format!(
                    "instances not declared in fly.toml: keeping the {} live {}; \
                     declare [postgres] instances to manage the count",
                    kept.len(),
                    if kept.len() == 1 { "node" } else { "nodes" }
                ));
            }
        }
        if u.read_replicas {
            let kept = live_nodes(false);
            d.replace_nodes(false, primary, &kept, Role::Replica, &u.node);
            if !kept.is_empty() {
                let mut by_region: BTreeMap<&str, u32> = BTreeMap::new();
                for (region, _) in &kept {
                    *by_region.entry(region.as_str()).or_default() += 1;
                }
                let regions: Vec<String> = by_region
                    .iter()
                    .map(|(r, n)| format!("{r} = {n}"))
                    .collect();
                notes.push(format!(
                    "read_replicas not declared in fly.toml: keeping the live read {} \
                     ({}); declare [postgres] read_replicas to manage them",
                    if kept.len() == 1 {
                        "replica"
                    } else {
                        "replicas"
                    },
                    regions.join(", ")
                ));
            }
        }
        if u.sync_standbys {
            let formation = Address::formation(&d.app);
            let live_sync = match live.get(&formation).map(|r| &r.spec) {
                Some(Spec::Formation(f)) => f.sync_standbys.as_ref().and_then(Agreed::one).copied(),
                _ => None,
            };
            if let Some(n) = live_sync {
                d.add(
                    formation,
                    Spec::Formation(FormationSpec {
                        sync_standbys: Some(Agreed::One(n)),
                    }),
                );
                notes.push(format!(
                    "sync_standbys not declared in fly.toml: keeping the live {n}; \
                     declare [postgres] instances and sync_standbys to manage it"
                ));
            }
        }
    }

    /// Drop the desired nodes inside (or outside) the primary region and
    /// put one per `kept` address instead.
    fn replace_nodes(
        &mut self,
        in_primary: bool,
        primary: &str,
        kept: &[(String, u32)],
        role: Role,
        template: &NodeTemplate,
    ) {
        self.resources.retain(|_, r| {
            let region = match &r.spec {
                Spec::Machine(m) => &m.region,
                Spec::Volume(v) => &v.region,
                _ => return true,
            };
            (region == primary) != in_primary
        });
        for (region, index) in kept {
            for (address, spec) in template.node(region, *index, role) {
                self.add(address, spec);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(text: &str) -> Desired {
        let config = crate::config::parse(Path::new("fly.toml"), text).expect("valid");
        Desired::from_config(&config, &BTreeMap::new()).expect("no secrets")
    }

    fn live_with(nodes: &[(&str, u32)]) -> Live {
        let mut live = Live::empty("pg");
        live.insert(Resource::new(
            Address::app("pg"),
            Spec::App(AppSpec::new(Some("iad".into()), RUNNING)),
        ));
        for (region, i) in nodes {
            let role = if *region == "iad" {
                Role::Candidate
            } else {
                Role::Replica
            };
            let m = MachineSpec::new(region, *i, role, RUNNING);
            live.insert(Resource::new(
                Address::machine(region, *i),
                Spec::Machine(m),
            ));
        }
        live
    }

    fn machines(d: &Desired) -> Vec<String> {
        d.resources
            .values()
            .filter(|r| r.kind() == Kind::Machine)
            .map(|r| r.address.to_string())
            .collect()
    }

    const NO_COUNTS: &str = "app = \"pg\"\nprimary_region = \"iad\"\n";

    #[test]
    fn undeclared_counts_keep_the_live_nodes_by_address() {
        let d = desired(NO_COUNTS);
        let live = live_with(&[("iad", 0), ("iad", 2), ("ams", 1)]);
        let (settled, notes) = d.settled(&live);
        assert_eq!(
            machines(&settled),
            ["machine[ams:1]", "machine[iad:0]", "machine[iad:2]"]
        );
        assert_eq!(
            notes[0],
            "instances not declared in fly.toml: keeping the 2 live nodes; declare [postgres] instances to manage the count"
        );
        assert!(notes[1].contains("(ams = 1)"), "{notes:?}");
        let vol = settled.get(&Address::volume("pg_data", "ams", 1)).unwrap();
        assert_eq!(vol.volume().unwrap().size_gb, 1);
    }

    #[test]
    fn undeclared_sync_standbys_follow_the_live_formation_only_without_instances() {
        let mut live = live_with(&[("iad", 0), ("iad", 1), ("iad", 2)]);
        live.insert(Resource::new(
            Address::formation("pg"),
            Spec::Formation(FormationSpec {
                sync_standbys: Some(Agreed::One(2)),
            }),
        ));
        let sync_of = |d: &Desired| match &d.get(&Address::formation("pg")).unwrap().spec {
            Spec::Formation(f) => f.sync_standbys.clone(),
            _ => None,
        };
        let d = desired(NO_COUNTS);
        let (settled, notes) = d.settled(&live);
        assert_eq!(sync_of(&settled), Some(Agreed::One(2)));
        assert!(
            notes.iter().any(|n| n.contains("keeping the live 2")),
            "{notes:?}"
        );
        // With instances declared, the default (0) stands as before.
        let d = desired(&format!("{NO_COUNTS}[postgres]\ninstances = 3\n"));
        let (settled, _) = d.settled(&live);
        assert_eq!(sync_of(&settled), Some(Agreed::One(0)));
    }

    #[test]
    fn undeclared_counts_of_a_new_app_are_the_defaults() {
        let d = desired(NO_COUNTS);
        let (settled, notes) = d.settled(&Live::empty("pg"));
        assert_eq!(machines(&settled), ["machine[iad:0]"]);
        assert!(notes.is_empty());
    }

    #[test]
    fn an_app_without_nodes_gets_one_and_says_so() {
        let d = desired(NO_COUNTS);
        let (settled, notes) = d.settled(&live_with(&[]));
        assert_eq!(machines(&settled), ["machine[iad:0]"]);
        assert!(notes[0].contains("no live node in iad"), "{notes:?}");
    }

    #[test]
    fn declared_counts_are_never_settled() {
        let text = format!("{NO_COUNTS}[postgres]\ninstances = 1\nread_replicas = {{}}\n");
        let d = desired(&text);
        assert!(d.undeclared.is_none());
        let (settled, notes) = d.settled(&live_with(&[("iad", 0), ("iad", 1), ("ams", 0)]));
        assert_eq!(machines(&settled), ["machine[iad:0]"]);
        assert!(notes.is_empty());
    }

    #[test]
    fn only_the_undeclared_count_follows_the_live_cluster() {
        let d = desired(&format!("{NO_COUNTS}[postgres]\ninstances = 2\n"));
        let (settled, notes) = d.settled(&live_with(&[("iad", 0), ("syd", 0), ("syd", 1)]));
        assert_eq!(
            machines(&settled),
            [
                "machine[iad:0]",
                "machine[iad:1]",
                "machine[syd:0]",
                "machine[syd:1]"
            ]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    fn with_volume(mut live: Live, region: &str, index: u32, size_gb: u64) -> Live {
        let spec = VolumeSpec {
            attached_machine_id: None,
            auto_backup_enabled: None,
            id: None,
            name: "pg_data".into(),
            region: region.into(),
            size_gb,
            snapshot_retention: None,
        };
        live.insert(Resource::new(
            Address::volume("pg_data", region, index),
            Spec::Volume(spec),
        ));
        live
    }

    fn volume_sizes(d: &Desired) -> Vec<(String, u64)> {
        d.resources
            .values()
            .filter_map(|r| r.volume().map(|v| (r.address.to_string(), v.size_gb)))
            .collect()
    }

    #[test]
    fn undeclared_volume_size_keeps_the_live_size_and_new_volumes_match_it() {
        let text = format!(
            "{NO_COUNTS}[postgres]\ninstances = 2\n\n[[mounts]]\nsource = \"pg_data\"\ndestination = \"/data\"\n"
        );
        let d = desired(&text);
        assert!(d.size_undeclared);
        let live = with_volume(live_with(&[("iad", 0)]), "iad", 0, 10);
        let (settled, notes) = d.settled(&live);
        assert_eq!(
            volume_sizes(&settled),
            [
                ("volume.pg_data[iad:0]".to_string(), 10),
                ("volume.pg_data[iad:1]".to_string(), 10)
            ]
        );
        assert_eq!(
            notes,
            [
                "initial_size not declared in fly.toml: keeping the live volume size (10 GB); \
              declare [[mounts]] initial_size to manage it"
            ]
        );
        // A new app gets the default.
        let (fresh, notes) = d.settled(&Live::empty("pg"));
        assert_eq!(volume_sizes(&fresh)[0].1, 1);
        assert!(notes.is_empty());
    }

    #[test]
    fn a_declared_volume_size_is_planned_as_given() {
        let text = format!(
            "{NO_COUNTS}[postgres]\ninstances = 1\nread_replicas = {{}}\n\n[[mounts]]\nsource = \"pg_data\"\ndestination = \"/data\"\ninitial_size = \"20gb\"\n"
        );
        let d = desired(&text);
        assert!(!d.size_undeclared);
        let live = with_volume(live_with(&[("iad", 0)]), "iad", 0, 10);
        let (settled, notes) = d.settled(&live);
        assert_eq!(volume_sizes(&settled)[0].1, 20);
        assert!(notes.is_empty());
    }
}

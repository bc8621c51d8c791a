//! Desired clusters and plan steps for the fly provider tests, built by
//! hand in the order the plan engine produces them (app, secrets, volumes,
//! machines with the first candidate first, formation, endpoint, snapshot
//! policy), plus a minimal create/update planner for re-runs.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use flyplan::live::Live;
use flyplan::model::{
    Address, Agreed, AppSpec, EndpointSpec, FormationSpec, MachineSpec, Resource, Role, SecretSpec,
    SnapshotPolicySpec, Spec, VolumeSpec,
};
use flyplan::plan::{Action, Step};
use flyplan::provider::fly::{FlyOptions, FlyProvider, FlyTimeouts, RetryPolicy};
use flyplan::provider::{Outcome, Provider, ProviderError, SecretValues, StepContext};
use sha2::{Digest, Sha256};

use super::{FlyApi, TOKEN};

/// A provider talking to the scripted API, with fast retries: backoff of
/// 1 ms and at most 80 ms for a `Retry-After`.
pub fn provider(api: &FlyApi, state_dir: &Path) -> FlyProvider {
    provider_with_route(api, state_dir, None)
}

/// [`provider`] with a SQL route to the cluster's leader.
pub fn provider_with_route(
    api: &FlyApi,
    state_dir: &Path,
    pg_route: Option<flyplan::provider::fly::PgRoute>,
) -> FlyProvider {
    FlyProvider::new(FlyOptions {
        flaps_base_url: api.base_url(),
        api_base_url: api.base_url(),
        token: TOKEN.to_string(),
        org_slug: "personal".to_string(),
        state_dir: state_dir.to_path_buf(),
        timeouts: FlyTimeouts {
            request: Duration::from_secs(5),
            machine_start: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
            health: Duration::from_secs(2),
            check_poll: Duration::from_millis(5),
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                max_retry_after: Duration::from_millis(80),
            },
        },
        pg_route,
    })
    .unwrap()
}

/// flyplan's secret digest (the provider's private function, written out).
pub fn digest(app: &str, name: &str, value: &str) -> String {
    let d = Sha256::digest(format!("flyplan-secret-v1\0{app}\0{name}\0{value}").as_bytes());
    format!("sha256:{}", hex::encode(d))
}

/// What a fly.toml would say, reduced to what the fly provider sees.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub app: String,
    pub primary_region: String,
    pub instances: u32,
    pub replicas: BTreeMap<String, u32>,
    pub image: String,
    pub size_gb: u64,
    pub retention_days: u64,
    pub scheduled: bool,
    pub vm_size: String,
    pub memory_mb: u64,
    pub sync_standbys: u64,
    pub secrets: BTreeMap<String, String>,
}

impl Cluster {
    /// Three nodes in iad, a read replica in ams, two secrets.
    pub fn example(app: &str) -> Cluster {
        let mut secrets = BTreeMap::new();
        secrets.insert("OPERATOR_PASSWORD".to_string(), "op-pass-1".to_string());
        secrets.insert("SU_PASSWORD".to_string(), "su-pass-1".to_string());
        let mut replicas = BTreeMap::new();
        replicas.insert("ams".to_string(), 1);
        Cluster {
            app: app.to_string(),
            primary_region: "iad".to_string(),
            instances: 3,
            replicas,
            image: "flyio/postgres-flex:15.6".to_string(),
            size_gb: 10,
            retention_days: 7,
            scheduled: true,
            vm_size: "shared-cpu-1x".to_string(),
            memory_mb: 1024,
            sync_standbys: 1,
            secrets,
        }
    }

    pub fn secret_values(&self) -> SecretValues {
        SecretValues::new(self.secrets.clone())
    }

    /// Nodes in plan order: primary-region candidates, then replicas.
    pub fn nodes(&self) -> Vec<(String, u32, Role)> {
        let mut nodes: Vec<_> = (0..self.instances)
            .map(|i| (self.primary_region.clone(), i, Role::Candidate))
            .collect();
        for (region, n) in &self.replicas {
            nodes.extend((0..*n).map(|i| (region.clone(), i, Role::Replica)));
        }
        nodes
    }

    pub fn machine(&self, region: &str, i: u32, role: Role) -> Resource {
        let mut m = MachineSpec::new(region, i, role, "running");
        m.image = Some(self.image.clone());
        m.vm_size = Some(self.vm_size.clone());
        m.memory_mb = Some(self.memory_mb);
        m.volume = Some(Address::volume("pg_data", region, i));
        Resource::new(Address::machine(region, i), Spec::Machine(m))
    }

    /// The desired resources, in the order the plan engine creates them.
    pub fn desired(&self) -> Vec<Resource> {
        let mut out = vec![Resource::new(
            Address::app(&self.app),
            Spec::App(AppSpec::new(Some(self.primary_region.clone()), "running")),
        )];
        for (name, value) in &self.secrets {
            out.push(Resource::new(
                Address::secret(name),
                Spec::Secret(SecretSpec::with_digest(digest(&self.app, name, value))),
            ));
        }
        for (region, i, _) in self.nodes() {
            out.push(Resource::new(
                Address::volume("pg_data", &region, i),
                Spec::Volume(VolumeSpec::new("pg_data", &region, self.size_gb)),
            ));
        }
        for (region, i, role) in self.nodes() {
            out.push(self.machine(&region, i, role));
        }
        out.push(Resource::new(
            Address::formation(&self.app),
            Spec::Formation(FormationSpec {
                sync_standbys: Some(Agreed::One(self.sync_standbys)),
            }),
        ));
        out.push(Resource::new(
            Address::endpoint(&self.app),
            Spec::Endpoint(EndpointSpec {
                state: "running".to_string(),
            }),
        ));
        out.push(Resource::new(
            Address::snapshot_policy("pg_data"),
            Spec::SnapshotPolicy(SnapshotPolicySpec {
                retention_days: Some(Agreed::One(self.retention_days)),
                scheduled: Some(Agreed::One(self.scheduled)),
                snapshot_time: Some("00:00".to_string()),
            }),
        ));
        out
    }
}

/// A step with the fields the tests do not care about left empty.
pub fn step(
    id: usize,
    action: Action,
    before: Option<Resource>,
    after: Option<Resource>,
    changed: Vec<String>,
) -> Step {
    let r = after.as_ref().or(before.as_ref()).unwrap();
    Step {
        id,
        address: r.address.clone(),
        kind: r.kind(),
        action,
        reason: match action {
            Action::Create => "not in live state".to_string(),
            _ => format!("{} changed", changed.join(", ")),
        },
        before,
        after,
        changed,
        blocked: None,
        depends_on: vec![],
        notes: vec![],
    }
}

/// Desired attributes that live state lacks or has otherwise.
pub fn drift(desired: &[Resource], live: &Live) -> Vec<String> {
    let mut out = Vec::new();
    for d in desired {
        match live.get(&d.address) {
            None => out.push(format!("{}: missing", d.address)),
            Some(l) => {
                let (want, have) = (d.spec.attrs(), l.spec.attrs());
                for k in d.spec.changed(&l.spec) {
                    out.push(format!(
                        "{}.{k}: want {}, have {}",
                        d.address,
                        want[k],
                        have.get(k).map_or("nothing".into(), |x| x.to_string())
                    ));
                }
            }
        }
    }
    out
}

/// Create what is missing and update what differs, in desired order (the
/// plan engine's job; enough for re-runs in these tests).
pub fn plan(desired: &[Resource], live: &Live) -> Vec<Step> {
    let mut steps = Vec::new();
    for d in desired {
        let id = steps.len();
        match live.get(&d.address) {
            None => steps.push(step(id, Action::Create, None, Some(d.clone()), vec![])),
            Some(l) => {
                let changed: Vec<String> = d
                    .spec
                    .changed(&l.spec)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                if !changed.is_empty() {
                    steps.push(step(
                        id,
                        Action::Update,
                        Some(l.clone()),
                        Some(d.clone()),
                        changed,
                    ));
                }
            }
        }
    }
    steps
}

/// Create steps for every desired resource.
pub fn create_steps(desired: &[Resource]) -> Vec<Step> {
    desired
        .iter()
        .enumerate()
        .map(|(i, r)| step(i, Action::Create, None, Some(r.clone()), vec![]))
        .collect()
}

/// Perform steps in order, stopping at the first error (as apply does).
pub fn apply(
    p: &FlyProvider,
    cluster: &Cluster,
    steps: &[Step],
) -> Result<Vec<(Address, Outcome)>, (Address, ProviderError)> {
    let secrets = cluster.secret_values();
    let ctx = StepContext {
        app: &cluster.app,
        secrets: &secrets,
        restore: None,
        operator_password: None,
        steps,
    };
    let mut done = Vec::new();
    for s in steps {
        match p.perform(s, &ctx) {
            Ok(o) => done.push((s.address.clone(), o)),
            Err(e) => return Err((s.address.clone(), e)),
        }
    }
    Ok(done)
}

/// Build the example cluster from nothing.
pub fn converge(api: &FlyApi, p: &FlyProvider, cluster: &Cluster) {
    apply(p, cluster, &create_steps(&cluster.desired())).expect("the cluster is created");
    let live = p.observe(&cluster.app).unwrap();
    assert_eq!(drift(&cluster.desired(), &live), Vec::<String>::new());
    api.clear_requests();
}

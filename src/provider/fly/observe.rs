//! Reading a Fly app into flyplan's resource shapes: which machine is which
//! node (`machine[iad:1]`), which volume belongs to it, who leads, and the
//! cluster-wide settings Fly keeps in volumes and machine metadata.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::api::{
    App, AppSecret, ListSecretsResponse, Machine, Volume, VolumeSnapshot, GONE_MACHINE_STATES,
    GONE_VOLUME_STATES,
};
use super::client::FlyClient;
use super::ledger::{AppLedger, SecretsLedger};
use super::{meta, DEFAULT_SNAPSHOT_TIME, PG_PROXY_PORT};
use crate::live::Live;
use crate::model::{
    Address, Agreed, AppSpec, Checks, Digest, EndpointSpec, MachineSpec, PlatformCheck, Resource,
    Role, SecretSpec, SnapshotPolicySpec, Spec, TakenSnapshot, VolumeSpec, OUTSIDE_FLYPLAN,
};
use crate::provider::ProviderError;

/// The digest reported for a secret whose value flyplan did not set (or
/// that changed since): never equal to a desired digest, so the plan sets it.
pub const CHANGED_OUTSIDE: &str = "sha256:changed-outside-flyplan";

/// What the API says about an app, read in one go.
#[derive(Debug, Clone, Default)]
pub struct AppView {
    pub app: App,
    /// Machines that still count (not destroyed).
    pub machines: Vec<Machine>,
    /// Volumes that still count (not being destroyed).
    pub volumes: Vec<Volume>,
    pub secrets: Vec<AppSecret>,
    /// Each volume's snapshots, by volume id, oldest first.
    pub snapshots: BTreeMap<String, Vec<VolumeSnapshot>>,
}

/// Read the app, its machines, volumes and secret digests. `None` when the
/// app does not exist.
///
/// # Errors
/// When the API cannot be read.
pub async fn fetch(
    client: &FlyClient,
    app: &str,
    label: &str,
    with_snapshots: bool,
    secrets_version: Option<u64>,
) -> Result<Option<AppView>, ProviderError> {
    let Some(app_info) = client
        .request(label, reqwest::Method::GET, &["apps", app])
        .send_opt::<App>()
        .await?
    else {
        return Ok(None);
    };
    let machines = client
        .request(label, reqwest::Method::GET, &["apps", app, "machines"])
        .send::<Vec<Machine>>();
    let volumes = client
        .request(label, reqwest::Method::GET, &["apps", app, "volumes"])
        .send::<Vec<Volume>>();
    // At least the version flyplan last wrote, as flyctl reads secrets
    // (internal/appsecrets/secrets.go:16-23), so a write just made is seen.
    let mut secrets_call = client.request(label, reqwest::Method::GET, &["apps", app, "secrets"]);
    if let Some(v) = secrets_version {
        secrets_call = secrets_call.query("version", v.to_string());
    }
    let secrets = secrets_call.send::<ListSecretsResponse>();
    let (machines, volumes, secrets) = tokio::try_join!(machines, volumes, secrets)?;
    let volumes: Vec<Volume> = volumes
        .into_iter()
        .filter(|v| !GONE_VOLUME_STATES.contains(&v.state.as_str()))
        .collect();
    let mut snapshots = BTreeMap::new();
    for v in volumes.iter().filter(|_| with_snapshots) {
        let mut list = client
            .request(
                label,
                reqwest::Method::GET,
                &["apps", app, "volumes", &v.id, "snapshots"],
            )
            .send_opt::<Vec<VolumeSnapshot>>()
            .await?
            .unwrap_or_default();
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        snapshots.insert(v.id.clone(), list);
    }
    Ok(Some(AppView {
        app: app_info,
        machines: machines
            .into_iter()
            .filter(|m| !GONE_MACHINE_STATES.contains(&m.state.as_str()))
            .collect(),
        volumes,
        secrets: secrets.secrets,
        snapshots,
    }))
}

/// Which node each machine and volume is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    pub primary_region: Option<String>,
    /// Node index of each machine, by machine id.
    pub machine_index: BTreeMap<String, u32>,
    /// Address of each volume, by volume id.
    pub volume_address: BTreeMap<String, Address>,
}

impl Topology {
    /// The machine at `machine[<region>:<index>]`.
    pub fn machine_at<'s>(&self, view: &'s AppView, address: &Address) -> Option<&'s Machine> {
        view.machines.iter().find(|m| {
            self.machine_index
                .get(&m.id)
                .is_some_and(|i| &Address::machine(&m.region, *i) == address)
        })
    }

    /// The volume at `volume.<name>[<region>:<index>]`.
    pub fn volume_at<'s>(&self, view: &'s AppView, address: &Address) -> Option<&'s Volume> {
        view.volumes
            .iter()
            .find(|v| self.volume_address.get(&v.id) == Some(address))
    }
}

fn created_key(created_at: &str, id: &str) -> (String, String) {
    (created_at.to_string(), id.to_string())
}

/// Assign node indexes and volume addresses.
///
/// Machines keep the index flyplan stored in their metadata
/// (`flyplan-index`); others (made outside flyplan) take the lowest free
/// index of their region in order of creation. A volume mounted by (or
/// attached to) a machine has that machine's index; an unattached volume
/// takes the lowest index of its region that no machine and no attached
/// volume of that name uses, in order of creation then id, so a volume
/// whose machine was never made is found again by the next apply.
pub fn topology(view: &AppView, app_ledger: &AppLedger) -> Topology {
    let mut topo = Topology {
        primary_region: primary_region(&view.machines)
            .or_else(|| app_ledger.primary_region.clone()),
        ..Default::default()
    };

    // Machines, region by region.
    let mut by_region: BTreeMap<&str, Vec<&Machine>> = BTreeMap::new();
    for m in &view.machines {
        by_region.entry(m.region.as_str()).or_default().push(m);
    }
    for machines in by_region.values_mut() {
        machines.sort_by_key(|m| created_key(&m.created_at, &m.id));
        let mut used = BTreeSet::new();
        let mut unplaced = Vec::new();
        for m in machines.iter() {
            let claimed = m
                .config
                .metadata
                .get(meta::INDEX)
                .and_then(|s| s.parse::<u32>().ok());
            match claimed {
                Some(i) if used.insert(i) => {
                    topo.machine_index.insert(m.id.clone(), i);
                }
                _ => unplaced.push(*m),
            }
        }
        for m in unplaced {
            let i = (0..).find(|i| !used.contains(i)).expect("free index");
            used.insert(i);
            topo.machine_index.insert(m.id.clone(), i);
        }
    }

    // Which machine holds which volume.
    let mut holder: BTreeMap<&str, &Machine> = BTreeMap::new();
    for m in &view.machines {
        for mount in &m.config.mounts {
            holder.insert(mount.volume.as_str(), m);
        }
    }
    for v in &view.volumes {
        if let Some(mid) = v.attached_machine_id.as_deref().filter(|s| !s.is_empty()) {
            if let Some(m) = view.machines.iter().find(|m| m.id == mid) {
                holder.entry(v.id.as_str()).or_insert(m);
            }
        }
    }

    // Indexes in use per (volume name, region).
    let mut taken: BTreeMap<(&str, &str), BTreeSet<u32>> = BTreeMap::new();
    let mut unattached = Vec::new();
    for v in &view.volumes {
        match holder.get(v.id.as_str()) {
            Some(m) => {
                let i = topo.machine_index[&m.id];
                taken
                    .entry((v.name.as_str(), v.region.as_str()))
                    .or_default()
                    .insert(i);
                topo.volume_address
                    .insert(v.id.clone(), Address::volume(&v.name, &v.region, i));
            }
            None => unattached.push(v),
        }
    }
    unattached.sort_by_key(|v| created_key(&v.created_at, &v.id));
    for v in unattached {
        let machine_indexes: BTreeSet<u32> = view
            .machines
            .iter()
            .filter(|m| m.region == v.region)
            .map(|m| topo.machine_index[&m.id])
            .collect();
        let used = taken
            .entry((v.name.as_str(), v.region.as_str()))
            .or_default();
        let i = (0..)
            .find(|i| !used.contains(i) && !machine_indexes.contains(i))
            .expect("free index");
        used.insert(i);
        topo.volume_address
            .insert(v.id.clone(), Address::volume(&v.name, &v.region, i));
    }
    topo
}

/// The `PRIMARY_REGION` most machines carry (ties: alphabetical first).
fn primary_region(machines: &[Machine]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for m in machines {
        if let Some(r) = m.config.env.get("PRIMARY_REGION").filter(|r| !r.is_empty()) {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let best = counts.values().copied().max()?;
    counts
        .into_iter()
        .find(|(_, c)| *c == best)
        .map(|(r, _)| r.to_string())
}

/// The Fly size preset of a guest (`shared-cpu-1x`, `performance-2x`).
pub fn vm_size(cpu_kind: &str, cpus: u32) -> String {
    match cpu_kind {
        "performance" => format!("performance-{cpus}x"),
        "" | "shared" => format!("shared-cpu-{cpus}x"),
        other => format!("{other}-{cpus}x"),
    }
}

/// An image reference as the user writes it: Docker Hub's registry and
/// `library/` prefix dropped, so `flyio/postgres-flex:15` compares equal
/// to `registry-1.docker.io/flyio/postgres-flex:15`.
pub fn normalize_image(image: &str) -> String {
    let mut s = image;
    for prefix in ["registry-1.docker.io/", "index.docker.io/", "docker.io/"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest;
            break;
        }
    }
    s.strip_prefix("library/").unwrap_or(s).to_string()
}

/// The role check's output when it passes (`primary`, `replica`, `zombie`...).
pub fn role_check(m: &Machine) -> Option<&str> {
    m.checks
        .iter()
        .find(|c| c.name == "role")
        .filter(|c| c.status == "passing")
        .map(|c| c.output.trim())
}

/// A machine's own health checks (postgres-flex's `vm`, `pg`, `role`), as
/// the Machines API reports them: what `flyplan status` shows of a node.
fn machine_checks(m: &Machine) -> Checks {
    Checks {
        platform_checks: Some(
            m.checks
                .iter()
                .map(|c| PlatformCheck {
                    name: c.name.clone(),
                    status: c.status.clone(),
                    output: c.output.clone(),
                    updated_at: Some(c.updated_at.clone()).filter(|s| !s.is_empty()),
                })
                .collect(),
        ),
        ..Checks::default()
    }
}

/// Whether the machine serves the 5432 proxy port.
pub fn serves_proxy(m: &Machine) -> bool {
    m.config.services.iter().any(|s| {
        s.internal_port == PG_PROXY_PORT || s.ports.iter().any(|p| p.port == Some(PG_PROXY_PORT))
    })
}

/// One value if all agree, else a marker that never equals a desired value.
fn agreed<T: PartialEq + Serialize>(values: impl IntoIterator<Item = T>) -> Option<Agreed<T>> {
    let mut distinct: Vec<T> = values.into_iter().fold(Vec::new(), |mut acc, v| {
        if !acc.contains(&v) {
            acc.push(v);
        }
        acc
    });
    match distinct.len() {
        0 => None,
        1 => distinct.pop().map(Agreed::One),
        _ => Some(Agreed::Mixed(format!(
            "mixed: {}",
            distinct
                .iter()
                .map(|v| serde_json::to_string(v).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Secret digest as flyplan reports it (see [`CHANGED_OUTSIDE`]).
pub fn reported_secret_digest(secret: &AppSecret, ledger: &SecretsLedger) -> String {
    match ledger.secrets.get(&secret.name) {
        Some(entry) if entry.fly_digest == secret.digest => entry.flyplan_digest.clone(),
        _ => CHANGED_OUTSIDE.to_string(),
    }
}

/// The live state of an app from a snapshot.
pub fn to_live(app: &str, view: &AppView, topo: &Topology, secrets_ledger: &SecretsLedger) -> Live {
    let mut live = Live::empty(app);

    // The app.
    let app_spec = AppSpec {
        app_role: view.app.app_role.clone(),
        id: Some(view.app.id.clone()),
        org: view
            .app
            .organization
            .as_ref()
            .filter(|o| !o.slug.is_empty())
            .map(|o| o.slug.clone()),
        primary_region: topo.primary_region.clone(),
        restore_backup: None,
        restore_from: None,
        state: "running".to_string(),
        status: Some(view.app.status.clone()),
    };
    live.insert(Resource::new(Address::app(app), Spec::App(app_spec)));

    // Secrets: digests flyplan can vouch for, others marked.
    for s in &view.secrets {
        let spec = SecretSpec {
            digest: Some(Digest(reported_secret_digest(s, secrets_ledger))),
            managed_by: (!secrets_ledger.secrets.contains_key(&s.name))
                .then(|| OUTSIDE_FLYPLAN.to_string()),
        };
        live.insert(Resource::new(Address::secret(&s.name), Spec::Secret(spec)));
    }

    // Volumes.
    let mut by_name: BTreeMap<&str, Vec<&Volume>> = BTreeMap::new();
    for v in &view.volumes {
        let Some(address) = topo.volume_address.get(&v.id) else {
            continue;
        };
        by_name.entry(v.name.as_str()).or_default().push(v);
        let spec = VolumeSpec {
            attached_machine_id: v
                .attached_machine_id
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            auto_backup_enabled: Some(v.auto_backup_enabled.unwrap_or(true)),
            id: Some(v.id.clone()),
            name: v.name.clone(),
            region: v.region.clone(),
            size_gb: v.size_gb,
            snapshot_retention: v.snapshot_retention,
        };
        // What Fly has taken so far: checks, never compared.
        let checks = Checks {
            snapshots: view.snapshots.get(&v.id).map(|list| {
                list.iter()
                    .map(|s| TakenSnapshot {
                        created_at: s.created_at.clone(),
                        id: s.id.clone(),
                        size: s.size,
                        status: s.status.clone(),
                    })
                    .collect()
            }),
            ..Checks::default()
        };
        live.insert(Resource::new(address.clone(), Spec::Volume(spec)).with_checks(checks));
    }

    // Snapshot policies, one per volume name. Fly has no time of day for
    // its daily snapshots: the desired default is reported.
    for (name, vols) in &by_name {
        let spec = SnapshotPolicySpec {
            retention_days: agreed(vols.iter().filter_map(|v| v.snapshot_retention)),
            scheduled: agreed(vols.iter().map(|v| v.auto_backup_enabled.unwrap_or(true))),
            snapshot_time: Some(DEFAULT_SNAPSHOT_TIME.to_string()),
        };
        live.insert(Resource::new(
            Address::snapshot_policy(name),
            Spec::SnapshotPolicy(spec),
        ));
    }

    // Machines.
    for m in &view.machines {
        let index = topo.machine_index[&m.id];
        let guest = m.config.guest.clone().unwrap_or_default();
        let role = match &topo.primary_region {
            Some(pr) if pr != &m.region => Role::Replica,
            _ => Role::Candidate,
        };
        let state = if m.state == "started" {
            "running".to_string()
        } else {
            m.state.clone()
        };
        let role_output = role_check(m);
        let spec = MachineSpec {
            cpu_kind: Some(if guest.cpu_kind.is_empty() {
                "shared".to_string()
            } else {
                guest.cpu_kind.clone()
            }),
            cpus: Some(guest.cpus),
            id: Some(m.id.clone()),
            image: Some(normalize_image(&m.config.image)),
            index,
            instance_id: Some(m.instance_id.clone()),
            leader: Some(role_output == Some("primary")),
            machine_name: Some(m.name.clone()),
            memory_mb: Some(u64::from(guest.memory_mb)),
            region: m.region.clone(),
            role,
            role_check: role_output.map(str::to_string),
            state,
            vm_size: Some(vm_size(&guest.cpu_kind, guest.cpus)),
            volume: m
                .config
                .mounts
                .iter()
                .find_map(|mount| topo.volume_address.get(&mount.volume))
                .cloned(),
        };
        live.insert(
            Resource::new(Address::machine(&m.region, index), Spec::Machine(spec))
                .with_checks(machine_checks(m)),
        );
    }

    // Formation: read from the leader's settings (`FlyProvider::observe_formation`).

    // Endpoint: Fly's proxy on 5432 exists while machines serve it.
    let serving: Vec<&Machine> = view.machines.iter().filter(|m| serves_proxy(m)).collect();
    if !serving.is_empty() {
        let state = if serving.iter().any(|m| m.state == "started") {
            "running"
        } else {
            "stopped"
        };
        let spec = EndpointSpec {
            state: state.to_string(),
        };
        live.insert(
            Resource::new(Address::endpoint(app), Spec::Endpoint(spec)).with_checks(Checks {
                port: Some(u64::from(PG_PROXY_PORT)),
                ..Checks::default()
            }),
        );
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fly::api::{MachineConfig, MachineMount};

    fn machine(
        id: &str,
        region: &str,
        created: &str,
        index: Option<u32>,
        vol: Option<&str>,
    ) -> Machine {
        let mut config = MachineConfig::default();
        config.env.insert("PRIMARY_REGION".into(), "iad".into());
        if let Some(i) = index {
            config.metadata.insert(meta::INDEX.into(), i.to_string());
        }
        if let Some(v) = vol {
            config.mounts.push(MachineMount {
                volume: v.into(),
                path: "/data".into(),
                ..Default::default()
            });
        }
        Machine {
            id: id.into(),
            region: region.into(),
            created_at: created.into(),
            state: "started".into(),
            config,
            ..Default::default()
        }
    }

    fn volume(id: &str, region: &str, created: &str) -> Volume {
        Volume {
            id: id.into(),
            name: "pg_data".into(),
            region: region.into(),
            created_at: created.into(),
            size_gb: 10,
            ..Default::default()
        }
    }

    #[test]
    fn machines_keep_their_stored_index_and_others_take_free_ones_in_creation_order() {
        let view = AppView {
            machines: vec![
                machine("m_b", "iad", "2024-01-02", None, None),
                machine("m_a", "iad", "2024-01-03", Some(0), None),
                machine("m_c", "iad", "2024-01-01", None, None),
                machine("m_d", "ams", "2024-01-01", None, None),
            ],
            ..Default::default()
        };
        let t = topology(&view, &AppLedger::default());
        assert_eq!(t.machine_index["m_a"], 0);
        assert_eq!(t.machine_index["m_c"], 1);
        assert_eq!(t.machine_index["m_b"], 2);
        assert_eq!(t.machine_index["m_d"], 0);
        assert_eq!(t.primary_region.as_deref(), Some("iad"));
    }

    #[test]
    fn unattached_volumes_take_the_next_index_free_of_machines_and_attached_volumes() {
        let view = AppView {
            machines: vec![
                machine("m0", "iad", "1", Some(0), Some("vol_a")),
                machine("m1", "iad", "2", Some(1), Some("vol_b")),
            ],
            volumes: vec![
                volume("vol_z", "iad", "5"),
                volume("vol_b", "iad", "2"),
                volume("vol_a", "iad", "1"),
                volume("vol_y", "iad", "4"),
                volume("vol_q", "ams", "6"),
            ],
            ..Default::default()
        };
        let t = topology(&view, &AppLedger::default());
        let addr = |id: &str| t.volume_address[id].to_string();
        assert_eq!(addr("vol_a"), "volume.pg_data[iad:0]");
        assert_eq!(addr("vol_b"), "volume.pg_data[iad:1]");
        assert_eq!(addr("vol_y"), "volume.pg_data[iad:2]");
        assert_eq!(addr("vol_z"), "volume.pg_data[iad:3]");
        assert_eq!(addr("vol_q"), "volume.pg_data[ams:0]");
    }

    #[test]
    fn sizes_images_and_disagreeing_values_are_reported_as_users_write_them() {
        assert_eq!(vm_size("shared", 1), "shared-cpu-1x");
        assert_eq!(vm_size("performance", 2), "performance-2x");
        assert_eq!(
            normalize_image("registry-1.docker.io/flyio/postgres-flex:15"),
            "flyio/postgres-flex:15"
        );
        assert_eq!(
            normalize_image("docker.io/library/postgres:16"),
            "postgres:16"
        );
        assert_eq!(agreed([5u64, 5]), Some(Agreed::One(5)));
        assert_eq!(
            agreed([5u64, 7]),
            Some(Agreed::Mixed("mixed: 5, 7".to_string()))
        );
    }
}

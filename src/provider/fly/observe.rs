//! Reading a Fly app into flyplan's resource shapes: which machine is which
//! node (`machine[iad:1]`), which volume belongs to it, who leads, and the
//! cluster-wide settings Fly keeps in volumes and machine metadata.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::api::{
    App, AppSecret, ListSecretsResponse, Machine, Volume, VolumeSnapshot, GONE_MACHINE_STATES,
    GONE_VOLUME_STATES,
};
use super::client::FlyClient;
use super::ledger::{AppLedger, SecretsLedger};
use super::{meta, DEFAULT_SNAPSHOT_TIME, PG_PROXY_PORT};
use crate::live::Live;
use crate::model::{attr, role, Address, Kind, Resource};
use crate::provider::ProviderError;

/// The digest reported for a secret whose value flyplan did not set (or
/// that changed since): never equal to a desired digest, so the plan sets it.
pub const CHANGED_OUTSIDE: &str = "sha256:changed-outside-flyplan";

/// What the API says about an app, read in one go.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
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
) -> Result<Option<Snapshot>, ProviderError> {
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
    let secrets = client
        .request(label, reqwest::Method::GET, &["apps", app, "secrets"])
        .send::<ListSecretsResponse>();
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
    Ok(Some(Snapshot {
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
    pub fn machine_at<'s>(&self, snap: &'s Snapshot, address: &Address) -> Option<&'s Machine> {
        snap.machines.iter().find(|m| {
            self.machine_index
                .get(&m.id)
                .is_some_and(|i| &Address::machine(&m.region, *i) == address)
        })
    }

    /// The volume at `volume.<name>[<region>:<index>]`.
    pub fn volume_at<'s>(&self, snap: &'s Snapshot, address: &Address) -> Option<&'s Volume> {
        snap.volumes
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
pub fn topology(snap: &Snapshot, app_ledger: &AppLedger) -> Topology {
    let mut topo = Topology {
        primary_region: primary_region(&snap.machines)
            .or_else(|| app_ledger.primary_region.clone()),
        ..Default::default()
    };

    // Machines, region by region.
    let mut by_region: BTreeMap<&str, Vec<&Machine>> = BTreeMap::new();
    for m in &snap.machines {
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
    for m in &snap.machines {
        for mount in &m.config.mounts {
            holder.insert(mount.volume.as_str(), m);
        }
    }
    for v in &snap.volumes {
        if let Some(mid) = v.attached_machine_id.as_deref().filter(|s| !s.is_empty()) {
            if let Some(m) = snap.machines.iter().find(|m| m.id == mid) {
                holder.entry(v.id.as_str()).or_insert(m);
            }
        }
    }

    // Indexes in use per (volume name, region).
    let mut taken: BTreeMap<(&str, &str), BTreeSet<u32>> = BTreeMap::new();
    let mut unattached = Vec::new();
    for v in &snap.volumes {
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
        let machine_indexes: BTreeSet<u32> = snap
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

/// Whether the machine serves the 5432 proxy port.
pub fn serves_proxy(m: &Machine) -> bool {
    m.config.services.iter().any(|s| {
        s.internal_port == PG_PROXY_PORT || s.ports.iter().any(|p| p.port == Some(PG_PROXY_PORT))
    })
}

/// One value if all agree, else a marker that never equals a desired value.
fn agreed(values: impl IntoIterator<Item = Value>) -> Option<Value> {
    let distinct: Vec<Value> = values.into_iter().fold(Vec::new(), |mut acc, v| {
        if !acc.contains(&v) {
            acc.push(v);
        }
        acc
    });
    match distinct.len() {
        0 => None,
        1 => distinct.into_iter().next(),
        _ => Some(Value::String(format!(
            "mixed: {}",
            distinct
                .iter()
                .map(Value::to_string)
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
pub fn to_live(
    app: &str,
    snap: &Snapshot,
    topo: &Topology,
    secrets_ledger: &SecretsLedger,
) -> Live {
    let mut live = Live::empty(app);

    // The app.
    let mut app_res = Resource::new(Address::app(app), Kind::App)
        .with(attr::STATE, "running")
        .with("id", snap.app.id.clone())
        .with("status", snap.app.status.clone());
    if let Some(pr) = &topo.primary_region {
        app_res = app_res.with(attr::PRIMARY_REGION, pr.clone());
    }
    if let Some(org) = snap
        .app
        .organization
        .as_ref()
        .filter(|o| !o.slug.is_empty())
    {
        app_res = app_res.with("org", org.slug.clone());
    }
    if let Some(role) = &snap.app.app_role {
        app_res = app_res.with("app_role", role.clone());
    }
    live.insert(app_res);

    // Secrets: digests flyplan can vouch for, others marked.
    for s in &snap.secrets {
        let mut r = Resource::new(Address::secret(&s.name), Kind::Secret)
            .with_sensitive(attr::DIGEST, reported_secret_digest(s, secrets_ledger));
        if !secrets_ledger.secrets.contains_key(&s.name) {
            r = r.with(attr::MANAGED_BY, attr::OUTSIDE_FLYPLAN);
        }
        live.insert(r);
    }

    // Volumes.
    let mut by_name: BTreeMap<&str, Vec<&Volume>> = BTreeMap::new();
    for v in &snap.volumes {
        let Some(address) = topo.volume_address.get(&v.id) else {
            continue;
        };
        by_name.entry(v.name.as_str()).or_default().push(v);
        let mut r = Resource::new(address.clone(), Kind::Volume)
            .with(attr::NAME, v.name.clone())
            .with(attr::REGION, v.region.clone())
            .with(attr::SIZE_GB, v.size_gb)
            .with("id", v.id.clone())
            .with("auto_backup_enabled", v.auto_backup_enabled.unwrap_or(true));
        if let Some(ret) = v.snapshot_retention {
            r = r.with("snapshot_retention", ret);
        }
        if let Some(mid) = v.attached_machine_id.as_deref().filter(|s| !s.is_empty()) {
            r = r.with("attached_machine_id", mid.to_string());
        }
        // What Fly has taken so far: status, never compared.
        if let Some(list) = snap.snapshots.get(&v.id) {
            r = r.with_status("snapshots", json!(list));
        }
        live.insert(r);
    }

    // Snapshot policies, one per volume name. Fly has no time of day for
    // its daily snapshots: the desired default is reported.
    for (name, vols) in &by_name {
        let mut r = Resource::new(Address::snapshot_policy(name), Kind::SnapshotPolicy)
            .with(attr::SNAPSHOT_TIME, DEFAULT_SNAPSHOT_TIME);
        if let Some(v) = agreed(
            vols.iter()
                .map(|v| json!(v.auto_backup_enabled.unwrap_or(true))),
        ) {
            r.attrs.insert(attr::SCHEDULED.to_string(), v);
        }
        if let Some(v) = agreed(
            vols.iter()
                .filter_map(|v| v.snapshot_retention.map(|d| json!(d))),
        ) {
            r.attrs.insert(attr::RETENTION_DAYS.to_string(), v);
        }
        live.insert(r);
    }

    // Machines.
    for m in &snap.machines {
        let index = topo.machine_index[&m.id];
        let guest = m.config.guest.clone().unwrap_or_default();
        let role = match &topo.primary_region {
            Some(pr) if pr != &m.region => role::REPLICA,
            _ => role::CANDIDATE,
        };
        let state = if m.state == "started" {
            "running".to_string()
        } else {
            m.state.clone()
        };
        let role_output = role_check(m);
        let mut r = Resource::new(Address::machine(&m.region, index), Kind::Machine)
            .with(attr::REGION, m.region.clone())
            .with(attr::INDEX, index)
            .with(attr::ROLE, role)
            .with(attr::IMAGE, normalize_image(&m.config.image))
            .with(attr::VM_SIZE, vm_size(&guest.cpu_kind, guest.cpus))
            .with(attr::MEMORY_MB, guest.memory_mb)
            .with(attr::CPUS, guest.cpus)
            .with(
                attr::CPU_KIND,
                if guest.cpu_kind.is_empty() {
                    "shared".to_string()
                } else {
                    guest.cpu_kind.clone()
                },
            )
            .with(attr::STATE, state)
            .with(attr::LEADER, role_output == Some("primary"))
            .with("id", m.id.clone())
            .with("instance_id", m.instance_id.clone())
            .with("machine_name", m.name.clone());
        if let Some(out) = role_output {
            r = r.with("role_check", out.to_string());
        }
        if let Some(vol) = m
            .config
            .mounts
            .iter()
            .find_map(|mount| topo.volume_address.get(&mount.volume))
        {
            r = r.with(attr::VOLUME, vol.to_string());
        }
        live.insert(r);
    }

    // Formation: postgres-flex has no synchronous-standby setting; the
    // number flyplan applied is kept in machine metadata (0 when absent,
    // which is what postgres-flex does: asynchronous replication).
    if !snap.machines.is_empty() {
        let values = snap.machines.iter().map(|m| {
            m.config
                .metadata
                .get(meta::SYNC_STANDBYS)
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(json!(0), |n| json!(n))
        });
        let mut r = Resource::new(Address::formation(app), Kind::Formation);
        if let Some(v) = agreed(values) {
            r.attrs.insert(attr::SYNC_STANDBYS.to_string(), v);
        }
        live.insert(r);
    }

    // Endpoint: Fly's proxy on 5432 exists while machines serve it.
    let serving: Vec<&Machine> = snap.machines.iter().filter(|m| serves_proxy(m)).collect();
    if !serving.is_empty() {
        let state = if serving.iter().any(|m| m.state == "started") {
            "running"
        } else {
            "stopped"
        };
        live.insert(
            Resource::new(Address::endpoint(app), Kind::Endpoint)
                .with(attr::STATE, state)
                .with(attr::PORT, PG_PROXY_PORT),
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
        let snap = Snapshot {
            machines: vec![
                machine("m_b", "iad", "2024-01-02", None, None),
                machine("m_a", "iad", "2024-01-03", Some(0), None),
                machine("m_c", "iad", "2024-01-01", None, None),
                machine("m_d", "ams", "2024-01-01", None, None),
            ],
            ..Default::default()
        };
        let t = topology(&snap, &AppLedger::default());
        assert_eq!(t.machine_index["m_a"], 0);
        assert_eq!(t.machine_index["m_c"], 1);
        assert_eq!(t.machine_index["m_b"], 2);
        assert_eq!(t.machine_index["m_d"], 0);
        assert_eq!(t.primary_region.as_deref(), Some("iad"));
    }

    #[test]
    fn unattached_volumes_take_the_next_index_free_of_machines_and_attached_volumes() {
        let snap = Snapshot {
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
        let t = topology(&snap, &AppLedger::default());
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
        assert_eq!(agreed([json!(5), json!(5)]), Some(json!(5)));
        assert_eq!(agreed([json!(5), json!(7)]), Some(json!("mixed: 5, 7")));
    }
}

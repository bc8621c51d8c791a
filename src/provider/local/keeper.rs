//! Nodes: a PostgreSQL 15 data directory on a volume, managed by a
//! pg_auto_failover keeper (`pg_autoctl run`) registered with the app's
//! monitor. Creating, restarting, switching over and dropping them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::db;
use super::monitor::{read_nodes, write_server_files, MonitorNode, FORMATION};
use super::process::{self, alive_with, postmaster_pid, read_pid, run_logged, spawn_daemon};
use super::state::{self, port_for, FileLock};
use super::AppCtx;
use crate::model::{Address, MachineSpec, Resource, Role, Target};
use crate::provider::ProviderError;

/// Settings of every node, read after pg_autoctl's own (which size memory
/// for a dedicated host).
const NODE_CONF: &str = "\
# Written by flyplan; read after pg_autoctl's own settings.
shared_buffers = '128MB'
effective_cache_size = '512MB'
maintenance_work_mem = '64MB'
work_mem = '4MB'
wal_keep_size = '512MB'
max_connections = 100
password_encryption = 'scram-sha-256'
";

/// Client authentication of every node: pg_auto_failover's replication and
/// health-check users are trusted on loopback; everyone else over TCP gives
/// a SCRAM password; the unix socket (flyplan's admin connection) is private
/// to the service user.
const NODE_HBA: &str = "\
# Written by flyplan.
local   all          all                                      trust
local   replication  all                                      trust
host    replication  pgautofailover_replicator  127.0.0.1/32  trust
host    all          pgautofailover_replicator  127.0.0.1/32  trust
host    all          pgautofailover_monitor     127.0.0.1/32  trust
host    all          all                        127.0.0.1/32  scram-sha-256
host    all          all                        ::1/128       scram-sha-256
";

/// Seconds after which a keeper that reaches neither the monitor nor any
/// standby demotes its primary (pg_autoctl's default is 20); see
/// `monitor::MONITOR_CONF` for how this bounds `primary_demote_timeout`.
pub const NETWORK_PARTITION_TIMEOUT: u32 = 1;

/// Attributes recorded as labels: the local machine runs one PostgreSQL,
/// whatever image and VM size were declared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MachineLabels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_size: Option<String>,
}

impl MachineLabels {
    pub fn is_empty(&self) -> bool {
        *self == MachineLabels::default()
    }
}

/// What flyplan records about a machine (`machines/<node>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineRecord {
    pub address: String,
    pub region: String,
    pub index: u32,
    /// Node name at the monitor: `<region>-<index>`.
    pub node: String,
    pub port: u16,
    pub role: Role,
    /// Address of the volume, e.g. `volume.pg_data[iad:0]`.
    pub volume: Address,
    pub pgdata: PathBuf,
    pub labels: MachineLabels,
}

impl MachineRecord {
    pub fn candidate(&self) -> bool {
        self.role != Role::Replica
    }
}

/// `volume.pg_data[iad:0]` → (`pg_data`, `iad`, 0).
pub fn volume_parts(address: &Address) -> Option<(&str, &str, u32)> {
    match address.target() {
        Target::Volume {
            name,
            region,
            index,
        } => Some((name, region, *index)),
        _ => None,
    }
}

fn labels_of(m: &MachineSpec) -> MachineLabels {
    MachineLabels {
        cpu_kind: m.cpu_kind.clone(),
        cpus: m.cpus,
        image: m.image.clone(),
        memory_mb: m.memory_mb,
        vm_size: m.vm_size.clone(),
    }
}

pub(super) fn node_failed(node: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::failed(format!("machine {node}"), message)
}

impl AppCtx<'_> {
    pub fn read_machine(&self, node: &str) -> Result<Option<MachineRecord>, ProviderError> {
        state::read_json(&self.paths.machine_json(node))
    }

    /// All recorded machines, by node name.
    pub fn machines(&self) -> Vec<MachineRecord> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.paths.machines()) {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    if let Ok(Some(r)) = state::read_json::<MachineRecord>(&p) {
                        out.push(r);
                    }
                }
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    /// The record a desired machine resource asks for.
    pub(super) fn record_for(&self, r: &Resource) -> Result<MachineRecord, ProviderError> {
        let m = r
            .machine()
            .ok_or_else(|| node_failed(r.address.as_str(), "not a machine"))?;
        let (region, index) = (m.region.clone(), m.index);
        let node = format!("{region}-{index}");
        let volume = m
            .volume
            .clone()
            .unwrap_or_else(|| Address::volume("pg_data", &region, index));
        let (vname, vregion, vindex) = volume_parts(&volume)
            .ok_or_else(|| node_failed(&node, format!("bad volume address {volume}")))?;
        let port = port_for(self.state_dir(), &self.paths, r.address.as_str())?;
        Ok(MachineRecord {
            address: r.address.to_string(),
            region,
            index,
            node,
            port,
            role: m.role,
            pgdata: self.paths.volume_dir(vname, vregion, vindex).join("pgdata"),
            volume,
            labels: labels_of(m),
        })
    }

    pub fn node_name_of(r: &Resource) -> Option<String> {
        let (region, index) = r.address.node()?;
        Some(format!("{region}-{index}"))
    }

    pub fn keeper_running(&self, rec: &MachineRecord) -> bool {
        read_pid(&self.paths.keeper_pid(&rec.node)).is_some_and(|pid| alive_with(pid, "pg_autoctl"))
    }

    pub fn node_running(&self, rec: &MachineRecord) -> bool {
        self.keeper_running(rec) && postmaster_pid(&rec.pgdata).is_some()
    }

    pub(super) fn monitor_nodes(&self) -> Result<Vec<MonitorNode>, ProviderError> {
        db::block_on(async {
            let c = self.monitor_client(Duration::from_secs(5)).await?;
            read_nodes(&c).await
        })
    }

    pub(super) fn registered(
        &self,
        rec: &MachineRecord,
    ) -> Result<Option<MonitorNode>, ProviderError> {
        Ok(self
            .monitor_nodes()?
            .into_iter()
            .find(|n| n.name == rec.node || n.port == rec.port))
    }

    /// Poll the monitor until `done` says so.
    pub(super) fn wait_nodes(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[MonitorNode]) -> bool,
    ) -> Result<(), ProviderError> {
        let started = Instant::now();
        loop {
            let last = match self.monitor_nodes() {
                Ok(nodes) => {
                    if done(&nodes) {
                        return Ok(());
                    }
                    nodes
                        .iter()
                        .map(|n| format!("{}: {}/{}", n.name, n.reported, n.goal))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
                // Nothing can settle without the monitor, and only the next
                // apply starts it again: say so now rather than at the
                // timeout, so a watch's next step brings it back.
                Err(e) if !self.monitor_running() => {
                    return Err(ProviderError::failed(
                        what,
                        format!("the monitor stopped ({e}); the next apply starts it again"),
                    ));
                }
                Err(e) => e.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(ProviderError::failed(
                    what,
                    format!("timed out after {timeout:?}; monitor says: {last}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn wait_primary(&self, timeout: Duration) -> Result<(), ProviderError> {
        self.wait_nodes("waiting for a primary", timeout, |nodes| {
            nodes.iter().any(|n| {
                n.is_leader() && n.settled() && n.reported != "join_primary" && n.pg_running
            })
        })
    }

    pub(super) fn wait_settled(
        &self,
        rec: &MachineRecord,
        timeout: Duration,
    ) -> Result<(), ProviderError> {
        self.wait_nodes(
            &format!("waiting for node {}", rec.node),
            timeout,
            |nodes| self.settled_in(rec, nodes),
        )
    }

    /// Whether `rec` runs and has settled in a serving state, by the
    /// monitor's `nodes`. The monitor's row may still show the state from
    /// before a restart: the local processes must run too.
    pub(super) fn settled_in(&self, rec: &MachineRecord, nodes: &[MonitorNode]) -> bool {
        self.node_running(rec)
            && nodes.iter().any(|n| {
                n.name == rec.node
                    && n.pg_running
                    && n.settled()
                    && matches!(
                        n.reported.as_str(),
                        "single" | "primary" | "wait_primary" | "secondary"
                    )
            })
    }

    fn autoctl_files_removed(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        self.forget_autoctl_files(&rec.pgdata)
    }

    pub(super) fn start_keeper(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        let mut cmd = self.autoctl();
        cmd.env("FLYPLAN_SERVER", &rec.node)
            .args(["run", "--pgdata"])
            .arg(&rec.pgdata);
        let pid = spawn_daemon(
            &format!("starting node {}", rec.node),
            cmd,
            &self.paths.logs().join(format!("{}.log", rec.node)),
        )?;
        state::write_file(
            &self.paths.keeper_pid(&rec.node),
            format!("{pid}\n").as_bytes(),
            0o644,
        )?;
        tracing::info!(app = self.name, node = %rec.node, pid, "keeper started");
        self.ensure_exporter(rec)?;
        Ok(())
    }

    /// Stop the keeper and its postgres, and whatever a killed keeper left
    /// behind (its renamed sub-processes, an orphaned postgres).
    pub fn stop_node(&self, rec: &MachineRecord) {
        let mut roots: Vec<i32> = process::processes_marked(&[
            process::app_marker(&self.paths.root),
            process::server_marker(&rec.node),
        ])
        .into_iter()
        .collect();
        if let Some(pid) = read_pid(&self.paths.keeper_pid(&rec.node)) {
            if alive_with(pid, "pg_autoctl") && !roots.contains(&pid) {
                roots.push(pid);
            }
        }
        if let Some(pid) = postmaster_pid(&rec.pgdata) {
            if !roots.contains(&pid) {
                roots.push(pid);
            }
        }
        if !roots.is_empty() {
            process::stop_trees(&roots, Duration::from_secs(20));
        }
    }

    fn remove_from_monitor(&self, node: &MonitorNode) -> Result<(), ProviderError> {
        let id = node.id;
        for force in [false, true] {
            db::block_on(async {
                let c = self.monitor_client(Duration::from_secs(5)).await?;
                c.execute(
                    "select pgautofailover.remove_node($1::bigint, $2::boolean)",
                    &[&id, &force],
                )
                .await
                .map_err(|e| db::query_err(&format!("dropping node {}", node.name), e))
            })?;
            let gone = self.wait_nodes(
                &format!("dropping node {}", node.name),
                Duration::from_secs(if force { 30 } else { 15 }),
                |nodes| nodes.iter().all(|n| n.id != id),
            );
            if gone.is_ok() {
                return Ok(());
            }
            if force {
                return gone;
            }
        }
        Ok(())
    }

    /// Make a fresh node from `rec` (the data dir and pg_autoctl's files are
    /// wiped first) and start it. The first node of a formation becomes its
    /// primary; later ones clone the primary as standbys.
    pub(super) fn create_node(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        let volume_dir = rec.pgdata.parent().expect("pgdata is in a volume dir");
        self.user().mkdir(volume_dir, 0o700)?;
        // Nodes join one at a time: pg_auto_failover 2.0 refuses (and can
        // get stuck retrying) a registration while another standby is being
        // added, and the first node must be the primary before others clone.
        // A read replica (candidate priority 0) never starts a formation: it
        // waits for a candidate to be the first node.
        let started = Instant::now();
        let (boot, nodes) = loop {
            let boot = FileLock::acquire(&self.paths.bootstrap_lock())?;
            let nodes = self.monitor_nodes()?;
            let others = nodes
                .iter()
                .any(|n| n.name != rec.node && n.port != rec.port);
            if others || rec.candidate() {
                break (boot, nodes);
            }
            drop(boot);
            if started.elapsed() > Duration::from_secs(300) {
                return Err(node_failed(
                    &rec.node,
                    "a read replica cannot be the first node; no failover candidate joined",
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        if let Some(stale) = nodes
            .iter()
            .find(|n| n.name == rec.node || n.port == rec.port)
        {
            self.remove_from_monitor(stale)?;
        }
        let first = !nodes
            .iter()
            .any(|n| n.name != rec.node && n.port != rec.port);
        if !first {
            self.wait_primary(Duration::from_secs(300))?;
        }
        self.stop_node(rec);
        state::remove_dir(&rec.pgdata)?;
        self.autoctl_files_removed(rec)?;
        // A cluster created from a snapshot: its first node starts from the
        // snapshot's data, which `pg_autoctl create postgres` takes as is.
        let restore = if first && rec.candidate() {
            self.pending_restore()?
        } else {
            None
        };
        if let Some(id) = &restore {
            self.user().mkdir(&rec.pgdata, 0o700)?;
            self.copy_snapshot_into(id, &rec.pgdata)?;
        }
        // A cluster created from backups: the same, from the object store.
        let from_backup = match (&restore, first && rec.candidate()) {
            (None, true) => self.pending_backup_restore()?,
            _ => None,
        };
        if let Some(r) = &from_backup {
            self.user().mkdir(&rec.pgdata, 0o700)?;
            self.restore_backup_into(r, rec)?;
        }
        let (priority, quorum) = if rec.candidate() {
            ("50", "true")
        } else {
            ("0", "false")
        };
        let mut cmd = self.autoctl();
        cmd.env("FLYPLAN_SERVER", &rec.node)
            .args(["create", "postgres", "--pgdata"])
            .arg(&rec.pgdata)
            .args(["--monitor", &self.monitor_uri()?])
            .args(["--pgport", &rec.port.to_string()])
            .args(["--hostname", "127.0.0.1", "--listen", "127.0.0.1"])
            .args(["--name", &rec.node, "--formation", FORMATION])
            .args(["--candidate-priority", priority])
            .args(["--replication-quorum", quorum])
            .args(["--skip-pg-hba", "--no-ssl"]);
        tracing::info!(app = self.name, node = %rec.node, port = rec.port, first, "creating node");
        run_logged(
            &format!("creating node {}", rec.node),
            cmd,
            &self.paths.logs().join(format!("{}.log", rec.node)),
            Duration::from_secs(300),
        )?;
        write_server_files(self, &rec.pgdata, NODE_CONF, NODE_HBA)?;
        self.write_backup_conf(&rec.pgdata)?;
        let mut cmd = self.autoctl();
        cmd.env("FLYPLAN_SERVER", &rec.node)
            .args(["config", "set", "--pgdata"])
            .arg(&rec.pgdata)
            .arg("timeout.network_partition_timeout")
            .arg(NETWORK_PARTITION_TIMEOUT.to_string());
        run_logged(
            &format!("configuring node {}", rec.node),
            cmd,
            &self.paths.logs().join(format!("{}.log", rec.node)),
            Duration::from_secs(30),
        )?;
        self.start_keeper(rec)?;
        self.wait_settled(rec, Duration::from_secs(300))?;
        if let Some(id) = &restore {
            self.restore_done(id, &rec.node)?;
        }
        if let Some(r) = &from_backup {
            self.backup_restore_done(r, &rec.node)?;
        }
        drop(boot);
        Ok(())
    }

    fn set_node_role(&self, rec: &MachineRecord) -> Result<bool, ProviderError> {
        let Some(node) = self.registered(rec)? else {
            return Ok(false);
        };
        let (priority, quorum) = if rec.candidate() {
            (50, true)
        } else {
            (0, false)
        };
        let mut changed = false;
        if node.candidate_priority != priority || node.replication_quorum != quorum {
            db::block_on(async {
                let c = self.monitor_client(Duration::from_secs(5)).await?;
                if node.candidate_priority != priority {
                    c.execute(
                        "select pgautofailover.set_node_candidate_priority($1, $2, $3)",
                        &[&FORMATION, &rec.node, &priority],
                    )
                    .await
                    .map_err(|e| db::query_err("setting candidate priority", e))?;
                }
                if node.replication_quorum != quorum {
                    c.execute(
                        "select pgautofailover.set_node_replication_quorum($1, $2, $3)",
                        &[&FORMATION, &rec.node, &quorum],
                    )
                    .await
                    .map_err(|e| db::query_err("setting replication quorum", e))?;
                }
                Ok::<_, ProviderError>(())
            })?;
            changed = true;
        }
        Ok(changed)
    }

    /// Create or update a machine so it runs as `desired` says.
    pub fn ensure_machine(
        &self,
        desired: &Resource,
        steps: &[crate::plan::Step],
    ) -> Result<bool, ProviderError> {
        let want = self.record_for(desired)?;
        let have = self.read_machine(&want.node)?;
        let mut changed = false;
        let registered = self.registered(&want)?;
        let running = self.node_running(&want);
        let usable = want.pgdata.join("PG_VERSION").exists();
        // A running member whose image or VM size changes is restarted
        // below; until that has happened, its record keeps the labels it
        // runs with, so an update cut short is still seen by the next plan.
        let restart = running
            && registered.is_some()
            && usable
            && have
                .as_ref()
                .is_some_and(|h| h.labels != want.labels && !h.labels.is_empty());
        // Record first: labels and port are what observe reports.
        let recorded = match &have {
            Some(h) if restart => MachineRecord {
                labels: h.labels.clone(),
                ..want.clone()
            },
            _ => want.clone(),
        };
        state::write_json(&self.paths.machine_json(&want.node), &recorded, 0o644)?;
        if registered.is_none() || !usable {
            // Not a member of the formation (new, dropped, or its data is
            // gone): make it afresh.
            self.create_node(&want)?;
            self.endpoint_refresh()?;
            return Ok(true);
        }
        if !running {
            self.restart_or_rebuild(&want)?;
            changed = true;
        } else if restart {
            // A changed image or VM size means a restart, with the plan's
            // other ones: one node at a time, the leader last after a
            // switchover.
            self.restart_with_plan(desired, steps)?;
            changed = true;
        }
        if self.set_node_role(&want)? {
            changed = true;
        }
        self.ensure_exporter(&want)?;
        if have.as_ref() != Some(&want) {
            changed = true;
        }
        self.endpoint_refresh()?;
        Ok(changed)
    }

    /// The monitor lowers `number_sync_standbys` on its own when a node
    /// leaves and too few quorum standbys remain for it. Set the recorded
    /// formation again, so the monitor and `formation.json` agree on what
    /// was declared and the next plan is empty. When the declared number
    /// cannot be held any more, the plan says so: that is left to it.
    pub(super) fn formation_after_removal(&self) -> Result<(), ProviderError> {
        let Some(rec) = state::read_json::<super::FormationRecord>(&self.paths.formation())? else {
            return Ok(());
        };
        if let Err(e) = self.ensure_formation(rec.sync_standbys) {
            tracing::warn!(app = self.name, error = %e, "formation not set again after a node left");
        }
        Ok(())
    }

    /// Remove a machine: drop it from the formation, then stop it.
    pub fn remove_machine(&self, r: &Resource) -> Result<bool, ProviderError> {
        let Some(node) = Self::node_name_of(r) else {
            return Err(node_failed(r.address.as_str(), "no region or index"));
        };
        let rec = self.read_machine(&node)?;
        let Some(rec) = rec else {
            return Ok(false);
        };
        if self.node_running(&rec) {
            self.switchover_from(&rec)?;
        }
        if let Some(n) = self.registered(&rec)? {
            self.remove_from_monitor(&n)?;
            self.formation_after_removal()?;
        }
        self.stop_node(&rec);
        self.autoctl_files_removed(&rec)?;
        state::remove_file(&self.paths.keeper_pid(&node))?;
        state::remove_file(&self.paths.machine_json(&node))?;
        state::release_port(self.state_dir(), &self.paths, &rec.address)?;
        self.forget_exporter(&rec)?;
        self.endpoint_refresh()?;
        Ok(true)
    }
}

//! Observing an app: recorded files, live processes (pids), and one
//! connection each to the monitor and to the primary. No subprocess, so a
//! no-op plan stays fast.

use std::collections::BTreeMap;
use std::time::Duration;

use super::catalog::ScramCache;
use super::db;
use super::monitor::{read_nodes, read_number_sync_standbys, MonitorNode};
use super::process::{postmaster_pid, read_pid};
use super::secrets::secret_digest;
use super::state::{self, disk_usage};
use super::{AppCtx, AppRecord, FormationRecord, NodeStatus, VolumeRecord};
use crate::live::Live;
use crate::model::{
    Address, Agreed, AppSpec, Checks, Digest, EndpointSpec, FormationSpec, MachineSpec, Resource,
    Role, SecretSpec, SnapshotPolicySpec, Spec, VolumeSpec,
};
use crate::provider::ProviderError;
use crate::sql;

/// What the SQL half of observe found.
#[derive(Default)]
struct SqlView {
    nodes: Option<Vec<MonitorNode>>,
    number_sync_standbys: Option<i32>,
    sync_effective: Option<u32>,
    catalog: Option<Vec<Resource>>,
}

fn machine_state(keeper: bool, postgres: bool) -> &'static str {
    match (keeper, postgres) {
        (true, true) => "running",
        (false, false) => "stopped",
        _ => "failed",
    }
}

impl AppCtx<'_> {
    async fn observe_sql(&self, scram: &ScramCache, secrets: &BTreeMap<String, String>) -> SqlView {
        let mut view = SqlView::default();
        let monitor = match self.monitor_client(Duration::from_secs(2)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(app = self.name, error = %e, "monitor unreachable");
                return view;
            }
        };
        let nodes = read_nodes(&monitor).await.ok();
        view.number_sync_standbys = read_number_sync_standbys(&monitor).await.ok().flatten();
        let primary_port = nodes.as_deref().and_then(Self::primary_port);
        view.nodes = nodes;
        let Some(port) = primary_port else {
            return view;
        };
        let primary = match db::connect(
            &self.paths.sock(),
            port,
            &self.user().name,
            "postgres",
            Duration::from_secs(2),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(app = self.name, error = %e, "primary unreachable");
                return view;
            }
        };
        if let Ok(row) = primary
            .query_one("select current_setting('synchronous_standby_names')", &[])
            .await
        {
            view.sync_effective = Some(sql::sync_standby_count(row.get(0)));
        }
        let catalog = async {
            let mut c = self.observe_catalog(&primary, scram, secrets).await?;
            c.extend(self.observe_attachments(&primary).await?);
            Ok::<_, ProviderError>(c)
        };
        match catalog.await {
            Ok(c) => view.catalog = Some(c),
            Err(e) => tracing::warn!(app = self.name, error = %e, "reading the catalog"),
        }
        view
    }

    pub fn observe(&self, scram: &ScramCache) -> Result<Live, ProviderError> {
        let mut live = Live::empty(self.name);
        let Some(app) = state::read_json::<AppRecord>(&self.paths.app_json())? else {
            return Ok(live);
        };
        let monitor_up = self.monitor_running();
        let app_r = Resource::new(
            Address::app(self.name),
            Spec::App(AppSpec {
                app_role: None,
                id: None,
                org: None,
                primary_region: app.primary_region.clone(),
                restore_backup: None,
                restore_from: None,
                state: if monitor_up { "running" } else { "stopped" }.to_string(),
                status: None,
            }),
        )
        .with_checks(Checks {
            monitor_port: state::recorded_port(&self.paths, "monitor").map(u64::from),
            restored_from: self.restored_from(),
            ..Checks::default()
        });
        live.insert(app_r);

        let secrets = self.stored_secrets()?;
        for (name, value) in &secrets {
            live.insert(Resource::new(
                Address::secret(name),
                Spec::Secret(SecretSpec {
                    digest: Some(Digest(secret_digest(self.name, name, value))),
                    managed_by: None,
                }),
            ));
        }

        if let Ok(entries) = std::fs::read_dir(self.paths.volumes()) {
            for e in entries.flatten() {
                if let Some(v) = state::read_json::<VolumeRecord>(&e.path().join("volume.json"))? {
                    live.insert(Resource::new(
                        Address::volume(&v.name, &v.region, v.index),
                        Spec::Volume(VolumeSpec {
                            attached_machine_id: None,
                            auto_backup_enabled: None,
                            id: None,
                            name: v.name.clone(),
                            region: v.region.clone(),
                            size_gb: v.size_gb,
                            snapshot_retention: None,
                        }),
                    ));
                }
            }
        }

        let policies: BTreeMap<String, SnapshotPolicySpec> =
            state::read_json(&self.paths.snapshot_policy())?.unwrap_or_default();
        for (volume, spec) in policies {
            live.insert(Resource::new(
                Address::snapshot_policy(&volume),
                Spec::SnapshotPolicy(spec),
            ));
        }

        if let Some(spec) = self.observe_backup_policy()? {
            live.insert(Resource::new(
                Address::backup_policy(self.name),
                Spec::BackupPolicy(spec),
            ));
        }

        let view = if monitor_up {
            db::block_on(self.observe_sql(scram, &secrets))
        } else {
            SqlView::default()
        };
        let nodes = view.nodes.clone().unwrap_or_default();
        let primary_lsn = nodes.iter().find(|n| n.is_leader()).map(|n| n.lsn);

        for m in self.machines() {
            let keeper_pid = read_pid(&self.paths.keeper_pid(&m.node));
            let keeper = self.keeper_running(&m);
            let postmaster = postmaster_pid(&m.pgdata);
            let postgres = postmaster.is_some();
            let node = nodes.iter().find(|n| n.name == m.node);
            let role = match node {
                Some(n) if n.candidate_priority == 0 => Role::Replica,
                Some(_) => Role::Candidate,
                None => m.role,
            };
            let Ok(address) = Address::parse(&m.address) else {
                tracing::warn!(app = self.name, address = %m.address, "unreadable machine record");
                continue;
            };
            let labels = m.labels.clone();
            let spec = MachineSpec {
                cpu_kind: labels.cpu_kind,
                cpus: labels.cpus,
                id: None,
                image: labels.image,
                index: m.index,
                instance_id: None,
                leader: Some(node.is_some_and(|n| n.is_leader())),
                machine_name: None,
                memory_mb: labels.memory_mb,
                region: m.region.clone(),
                role,
                role_check: None,
                state: machine_state(keeper, postgres).to_string(),
                vm_size: labels.vm_size,
                volume: Some(m.volume.clone()),
            };
            let mut checks = Checks {
                metrics_port: self.metrics_port(&m).map(u64::from),
                port: Some(u64::from(m.port)),
                pid: keeper_pid.filter(|_| keeper).map(i64::from),
                postgres_pid: postmaster.map(i64::from),
                ..Checks::default()
            };
            if let Some(n) = node {
                checks.pg_state = Some(n.reported.clone());
                checks.goal_state = Some(n.goal.clone());
                checks.health = Some(i64::from(n.health));
                checks.sync_state = Some(n.rep_state.clone());
                checks.lag_bytes = primary_lsn.map(|p| (p - n.lsn).max(0));
            } else if view.nodes.is_some() {
                checks.pg_state = Some("unregistered".to_string());
            }
            live.insert(Resource::new(address, Spec::Machine(spec)).with_checks(checks));
        }

        let recorded: Option<FormationRecord> = state::read_json(&self.paths.formation())?;
        let observed = match (view.number_sync_standbys, &recorded) {
            (Some(m), Some(rec)) if rec.monitor_number_sync_standbys == m => {
                Some(rec.sync_standbys)
            }
            (Some(m), _) => Some(m as i64),
            (None, Some(rec)) => Some(rec.sync_standbys),
            (None, None) => None,
        };
        if let Some(n) = observed {
            let spec = FormationSpec {
                sync_standbys: Some(Agreed::One(n.max(0) as u64)),
            };
            live.insert(
                Resource::new(Address::formation(self.name), Spec::Formation(spec)).with_checks(
                    Checks {
                        monitor_number_sync_standbys: view.number_sync_standbys.map(i64::from),
                        sync_effective: view.sync_effective.map(u64::from),
                        ..Checks::default()
                    },
                ),
            );
        }

        if let Some(ep) = self.endpoint()? {
            let running = self.haproxy_pid().is_some();
            let spec = EndpointSpec {
                state: if running { "running" } else { "stopped" }.to_string(),
            };
            live.insert(
                Resource::new(Address::endpoint(self.name), Spec::Endpoint(spec)).with_checks(
                    Checks {
                        metrics_port: self.endpoint_metrics_port().map(u64::from),
                        port: Some(u64::from(ep.port)),
                        host: Some("127.0.0.1".to_string()),
                        url: Some(format!("postgres://127.0.0.1:{}", ep.port)),
                        ..Checks::default()
                    },
                ),
            );
        }

        if monitor_up {
            for r in self.observe_parameters() {
                live.insert(r);
            }
        }

        let catalog = match view.catalog {
            Some(c) => c,
            None => self.attachments_unverified()?,
        };
        for r in catalog {
            live.insert(r);
        }
        Ok(live)
    }

    /// Per-node status: the monitor's view, replication lag from the
    /// primary, connections and disk of every node.
    pub fn status(&self) -> Result<Vec<NodeStatus>, ProviderError> {
        let machines = self.machines();
        let sock = self.paths.sock();
        let user = self.user().name.clone();
        let (nodes, lags, conns) = db::block_on(async {
            let mut nodes = Vec::new();
            let mut lags = BTreeMap::new();
            let mut conns = BTreeMap::new();
            if let Ok(m) = self.monitor_client(Duration::from_secs(2)).await {
                nodes = read_nodes(&m).await.unwrap_or_default();
            }
            if let Some(port) = Self::primary_port(&nodes) {
                if let Ok(p) =
                    db::connect(&sock, port, &user, "postgres", Duration::from_secs(2)).await
                {
                    if let Ok(rows) = p
                        .query(
                            "select application_name, \
                             coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint \
                             from pg_stat_replication",
                            &[],
                        )
                        .await
                    {
                        for r in rows {
                            lags.insert(r.get::<_, String>(0), r.get::<_, i64>(1));
                        }
                    }
                }
            }
            for m in &machines {
                if let Ok(c) =
                    db::connect(&sock, m.port, &user, "postgres", Duration::from_secs(2)).await
                {
                    if let Ok(row) = c
                        .query_one(
                            "select (select count(*) from pg_stat_activity where backend_type = 'client backend'), \
                             current_setting('max_connections')::bigint",
                            &[],
                        )
                        .await
                    {
                        conns.insert(m.node.clone(), (row.get::<_, i64>(0), row.get::<_, i64>(1)));
                    }
                }
            }
            (nodes, lags, conns)
        });
        let mut out = Vec::new();
        for m in machines {
            let node = nodes.iter().find(|n| n.name == m.node);
            let leader = node.is_some_and(|n| n.is_leader());
            let role = if leader {
                "leader"
            } else if node
                .map(|n| n.candidate_priority == 0)
                .unwrap_or(!m.candidate())
            {
                "read-replica"
            } else {
                "replica"
            };
            let lag = if leader {
                Some(0)
            } else {
                node.and_then(|n| {
                    lags.get(&format!("pgautofailover_standby_{}", n.id))
                        .copied()
                })
            };
            let (connections, max_connections) = conns
                .get(&m.node)
                .map(|(c, x)| (Some(*c), Some(*x)))
                .unwrap_or((None, None));
            out.push(NodeStatus {
                address: m.address.clone(),
                name: m.node.clone(),
                region: m.region.clone(),
                role: role.to_string(),
                state: machine_state(self.keeper_running(&m), postmaster_pid(&m.pgdata).is_some())
                    .to_string(),
                pg_state: node.map(|n| n.reported.clone()),
                port: m.port,
                lag_bytes: lag,
                connections,
                max_connections,
                disk_used_bytes: disk_usage(&m.pgdata),
            });
        }
        Ok(out)
    }
}

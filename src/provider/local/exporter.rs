//! Prometheus metrics of the local nodes: every node runs Debian's
//! `prometheus-postgres-exporter` (as postgres-flex runs postgres_exporter
//! on 9187) on a port of its own, allocated and kept like the node's port,
//! started with the node and stopped with it (it carries the node's
//! process marker).

use std::path::{Path, PathBuf};

use super::keeper::MachineRecord;
use super::process::{alive_with, read_pid, spawn_daemon};
use super::state::{self, port_for, recorded_port};
use super::AppCtx;
use crate::provider::ProviderError;

/// Debian's package `prometheus-postgres-exporter`.
const EXPORTER: &str = "/usr/bin/prometheus-postgres-exporter";

/// Queries added to the exporter's own: `pg_replication_is_replica` (0 on
/// the leader, 1 on a standby) and `pg_replication_lag` (seconds since the
/// last replayed transaction), as in the exporter's example queries.
const QUERIES: &str = "\
# Written by flyplan: queries added to prometheus-postgres-exporter's own.
pg_replication:
  query: \"SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END AS is_replica, CASE WHEN NOT pg_is_in_recovery() THEN 0 ELSE GREATEST(0, EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END AS lag\"
  master: true
  metrics:
    - is_replica:
        usage: \"GAUGE\"
        description: \"1 when the node is a standby, 0 when it is the leader\"
    - lag:
        usage: \"GAUGE\"
        description: \"Seconds since the last replayed transaction (0 on the leader)\"
";

/// The key of a node's metrics port in the app's port list.
fn port_key(rec: &MachineRecord) -> String {
    format!("{}.metrics", rec.address)
}

impl AppCtx<'_> {
    fn exporter_pidfile(&self, rec: &MachineRecord) -> PathBuf {
        self.paths.run().join(format!("{}-exporter.pid", rec.node))
    }

    fn exporter_running(&self, rec: &MachineRecord) -> bool {
        read_pid(&self.exporter_pidfile(rec))
            .is_some_and(|pid| alive_with(pid, "postgres-exporter"))
    }

    /// The metrics port of a node whose exporter runs.
    pub(super) fn metrics_port(&self, rec: &MachineRecord) -> Option<u16> {
        recorded_port(&self.paths, &port_key(rec)).filter(|_| self.exporter_running(rec))
    }

    /// Start the node's exporter unless it runs. Whether it was started.
    pub(super) fn ensure_exporter(&self, rec: &MachineRecord) -> Result<bool, ProviderError> {
        if self.exporter_running(rec) {
            return Ok(false);
        }
        if !Path::new(EXPORTER).exists() {
            tracing::warn!(
                node = %rec.node,
                "{EXPORTER} is missing (scripts/install-deps.sh installs it); the node runs without metrics"
            );
            return Ok(false);
        }
        let port = port_for(self.state_dir(), &self.paths, &port_key(rec))?;
        let dsn = format!(
            "host={} port={} user={} dbname=postgres sslmode=disable",
            self.paths.sock().display(),
            rec.port,
            self.user().name
        );
        let queries = self.paths.run().join("exporter-queries.yaml");
        state::write_file(&queries, QUERIES.as_bytes(), 0o644)?;
        let mut cmd = self.server_cmd(Path::new(EXPORTER));
        cmd.env("FLYPLAN_SERVER", &rec.node)
            .env("DATA_SOURCE_NAME", dsn)
            .arg(format!("--extend.query-path={}", queries.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let pid = spawn_daemon(
            &format!("starting the metrics exporter of node {}", rec.node),
            cmd,
            &self.paths.logs().join(format!("{}-exporter.log", rec.node)),
        )?;
        state::write_file(
            &self.exporter_pidfile(rec),
            format!("{pid}\n").as_bytes(),
            0o644,
        )?;
        tracing::info!(app = self.name, node = %rec.node, port, pid, "metrics exporter started");
        Ok(true)
    }

    /// Forget a removed node's metrics port and pid file (its process went
    /// with the node).
    pub(super) fn forget_exporter(&self, rec: &MachineRecord) -> Result<(), ProviderError> {
        state::remove_file(&self.exporter_pidfile(rec))?;
        state::release_port(self.state_dir(), &self.paths, &port_key(rec))
    }
}

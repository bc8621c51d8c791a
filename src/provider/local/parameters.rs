//! `[postgres.parameters]` on the local nodes: each setting is written with
//! `ALTER SYSTEM` on every node (into `postgresql.auto.conf`, which
//! PostgreSQL reads after pg_autoctl's and flyplan's own files, and which
//! pg_autoctl leaves alone) and applied with `pg_reload_conf()`. A setting
//! that needs a restart restarts the nodes one at a time, standbys and read
//! replicas first, the leader last after a switchover.
//!
//! Observe reads the effective values from `pg_settings` (with
//! `pending_restart`) of the settings `ALTER SYSTEM` has set, so a setting
//! fly.toml never named is reported but left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_postgres::Client;

use super::db;
use super::keeper::MachineRecord;
use super::AppCtx;
use crate::model::{Address, Agreed, ParameterSpec, Resource, Spec};
use crate::pgsettings::{self, Apply};
use crate::plan::Step;
use crate::provider::ProviderError;

/// One node's settings written by `ALTER SYSTEM`: canonical value and
/// whether it waits for a restart, by name.
type NodeSettings = BTreeMap<String, (String, bool)>;

const READ_SETTINGS: &str = "\
select s.name, s.setting, s.pending_restart \
from pg_settings s \
where lower(s.name) in (select lower(f.name) from pg_file_settings f \
                        where f.sourcefile like '%/postgresql.auto.conf')";

async fn read_settings(c: &Client) -> Result<NodeSettings, ProviderError> {
    let rows = c
        .query(READ_SETTINGS, &[])
        .await
        .map_err(|e| db::query_err("reading pg_settings", e))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let name: String = r.get(0);
        let setting: String = r.get(1);
        let pending: bool = r.get(2);
        let value = match pgsettings::lookup(&name) {
            Some(s) => pgsettings::canonical_live(s, &setting),
            None => setting,
        };
        out.insert(name, (value, pending));
    }
    Ok(out)
}

/// `'text'` as an SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl AppCtx<'_> {
    async fn machine_client(&self, m: &MachineRecord) -> Result<Client, ProviderError> {
        self.node_client(m.port, Duration::from_secs(2)).await
    }

    /// The settings of every running node, by node name.
    fn node_settings(&self) -> BTreeMap<String, NodeSettings> {
        let machines: Vec<MachineRecord> = self
            .machines()
            .into_iter()
            .filter(|m| self.node_running(m))
            .collect();
        let sock = self.paths.sock();
        let user = self.user().name.clone();
        // One connection per node, all at once: observe stays fast.
        db::block_on(async {
            let mut reads = tokio::task::JoinSet::new();
            for m in machines {
                let (sock, user) = (sock.clone(), user.clone());
                reads.spawn(async move {
                    let read = async {
                        let c =
                            db::connect(&sock, m.port, &user, "postgres", Duration::from_secs(2))
                                .await?;
                        read_settings(&c).await
                    };
                    (m.node, read.await)
                });
            }
            let mut out = BTreeMap::new();
            while let Some(done) = reads.join_next().await {
                match done {
                    Ok((node, Ok(s))) => {
                        out.insert(node, s);
                    }
                    Ok((node, Err(e))) => {
                        tracing::debug!(node = %node, error = %e, "settings unreadable");
                    }
                    Err(e) => tracing::debug!(error = %e, "reading settings"),
                }
            }
            out
        })
    }

    /// The settings `ALTER SYSTEM` has set on the nodes, one resource each;
    /// nodes that disagree (or lack it) make the value `Mixed`.
    pub(super) fn observe_parameters(&self) -> Vec<Resource> {
        let per_node = self.node_settings();
        let names: BTreeSet<&String> = per_node.values().flat_map(|s| s.keys()).collect();
        let mut out = Vec::new();
        for name in names {
            let values: BTreeMap<&str, Option<&(String, bool)>> = per_node
                .iter()
                .map(|(node, s)| (node.as_str(), s.get(name)))
                .collect();
            let distinct: BTreeSet<Option<&str>> = values
                .values()
                .map(|v| v.map(|(value, _)| value.as_str()))
                .collect();
            let value = match distinct.iter().next() {
                Some(Some(one)) if distinct.len() == 1 => Agreed::One(one.to_string()),
                _ => Agreed::Mixed(
                    values
                        .iter()
                        .map(|(node, v)| {
                            format!("{node}={}", v.map_or("unset", |(value, _)| value.as_str()))
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            let pending = values.values().flatten().any(|(_, p)| *p);
            out.push(Resource::new(
                Address::parameter(name),
                Spec::Parameter(ParameterSpec {
                    pending_restart: pending.then_some(true),
                    value,
                }),
            ));
        }
        out
    }

    /// Set `desired` on every running node and apply it: a reload, or a
    /// rolling restart for a setting that needs one (unless a later step of
    /// the same apply sets another such setting: that one restarts the
    /// nodes once for both).
    pub fn ensure_parameter(
        &self,
        desired: &Resource,
        steps: &[Step],
    ) -> Result<bool, ProviderError> {
        let name = desired.address.name();
        let what = desired.address.as_str();
        let setting = pgsettings::lookup(name)
            .ok_or_else(|| ProviderError::failed(what, "not a PostgreSQL 15 setting"))?;
        let want = match &desired.spec {
            Spec::Parameter(p) => p.value.one().cloned(),
            _ => None,
        }
        .ok_or_else(|| ProviderError::failed(what, "no value to set"))?;
        let machines: Vec<MachineRecord> = self.machines();
        if let Some(m) = machines.iter().find(|m| !self.node_running(m)) {
            return Err(ProviderError::failed(
                what,
                format!(
                    "node {} is not running; settings are set on every node",
                    m.node
                ),
            ));
        }
        let sql = format!("alter system set \"{}\" = {}", setting.name, literal(&want));
        let changed = db::block_on(async {
            let mut changed = false;
            for m in &machines {
                let c = self.machine_client(m).await?;
                let before = read_settings(&c).await?;
                let had = before
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(setting.name))
                    .map(|(_, v)| v.clone());
                if had.as_ref().map(|(v, _)| v.as_str()) != Some(want.as_str()) {
                    c.batch_execute(&sql)
                        .await
                        .map_err(|e| db::query_err(what, e))?;
                    c.query_one("select pg_reload_conf()", &[])
                        .await
                        .map_err(|e| db::query_err(what, e))?;
                    changed = true;
                    tracing::info!(app = self.name, node = %m.node, setting = setting.name, value = %want, "set");
                }
            }
            Ok::<_, ProviderError>(changed)
        })?;
        if setting.apply() == Apply::Restart
            && !crate::plan::restart_comes_later(&desired.address, steps)
        {
            return Ok(self.restart_pending_settings()? || changed);
        }
        Ok(changed)
    }

    /// Restart, one at a time, the nodes that run with a setting waiting for
    /// a restart: standbys and read replicas first, each waited for until it
    /// is healthy, then the leader after a switchover. Whether any was.
    fn restart_pending_settings(&self) -> Result<bool, ProviderError> {
        let pending: BTreeSet<String> = db::block_on(async {
            let mut out = BTreeSet::new();
            for m in self.machines() {
                let c = self.machine_client(&m).await?;
                let row = c
                    .query_one(
                        "select coalesce(bool_or(pending_restart), false) from pg_settings",
                        &[],
                    )
                    .await
                    .map_err(|e| db::query_err("reading pending_restart", e))?;
                if row.get::<_, bool>(0) {
                    out.insert(m.node.clone());
                }
            }
            Ok::<_, ProviderError>(out)
        })?;
        if pending.is_empty() {
            return Ok(false);
        }
        let nodes: Vec<MachineRecord> = self
            .machines()
            .into_iter()
            .filter(|m| pending.contains(&m.node))
            .collect();
        tracing::info!(
            app = self.name,
            nodes = nodes.len(),
            "restarting for new settings"
        );
        self.rolling_restart(&nodes, &|_| true)?;
        self.endpoint_refresh()?;
        Ok(true)
    }
}

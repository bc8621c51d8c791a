//! `flyplan status`: nodes with their role, state and checks, the leader
//! endpoint with the password masked, and the attachments.

use std::process::ExitCode;

use anyhow::Result;

use super::args::{Cli, StatusArgs};
use super::health::{node_health, node_role, NodeHealth, Status};
use super::{load_config, open_provider};
use crate::model::{Address, Checks, Kind};

pub(super) fn status(cli: &Cli, a: &StatusArgs) -> Result<ExitCode> {
    let config = load_config(&a.config)?;
    let provider = open_provider(cli)?;
    let live = provider.status(&config.app)?;
    let monitor_reachable = live
        .get(&Address::app(&config.app))
        .and_then(|r| r.checks.monitor_reachable);
    let health: Vec<Option<NodeHealth>> = live
        .of_kind(Kind::Machine)
        .map(|r| node_health(r, monitor_reachable))
        .collect();
    let critical = health
        .iter()
        .flatten()
        .any(|h| h.worst() == Status::Critical);
    if let Some(path) = &a.prometheus_sd {
        let text = serde_json::to_string_pretty(&prometheus_targets(&config.app, &live))?;
        crate::fsutil::write_atomic(path, format!("{text}\n").as_bytes(), Some(0o644))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    let done = if a.exit_code && critical {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    if a.json {
        let nodes: Vec<_> = live
            .of_kind(Kind::Machine)
            .zip(&health)
            .filter_map(|(r, h)| Some((r, r.machine()?, h)))
            .map(|(r, m, h)| {
                serde_json::json!({
                    "address": r.address,
                    "region": m.region,
                    "role": node_role(m),
                    "state": m.state,
                    "checks": r.checks,
                    "health": h,
                })
            })
            .collect();
        let endpoint = live.of_kind(Kind::Endpoint).next().map(|e| {
            let mut v = serde_json::Map::new();
            v.insert("state".into(), e.state().into());
            if let Ok(serde_json::Value::Object(checks)) = serde_json::to_value(&e.checks) {
                v.extend(checks);
            }
            v
        });
        let attachments: Vec<_> = live
            .of_kind(Kind::Attachment)
            .filter_map(|r| Some((r, r.attachment()?)))
            .map(|(r, a)| {
                serde_json::json!({
                    "app": r.address.name(),
                    "variable": a.variable,
                    "database": a.database,
                    "user": a.user,
                    "superuser": a.superuser,
                    "credentials": a.credentials,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "app": config.app,
            "monitor_reachable": monitor_reachable,
            "nodes": nodes,
            "endpoint": endpoint,
            "attachments": attachments,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(done);
    }
    if live.resources.is_empty() {
        println!("App {} does not exist (nothing applied yet).", config.app);
        return Ok(ExitCode::SUCCESS);
    }
    println!("App {} ({} provider)\n", config.app, provider.name());
    println!(
        "{:<16} {:<8} {:<13} {:<10} CHECKS",
        "NODE", "REGION", "ROLE", "STATE"
    );
    for r in live.of_kind(Kind::Machine) {
        let Some(m) = r.machine() else { continue };
        println!(
            "{:<16} {:<8} {:<13} {:<10} {}",
            r.address.as_str(),
            m.region,
            node_role(m),
            m.state,
            human_checks(&r.checks)
        );
    }
    if monitor_reachable == Some(false) {
        println!("\nThe monitor does not answer: automatic failover is off until it is back.");
    }
    println!("\n{:<16} {:<6} {:<9} OUTPUT", "NODE", "CHECK", "STATUS");
    for (r, h) in live.of_kind(Kind::Machine).zip(&health) {
        let Some(h) = h else { continue };
        for (name, c) in [("vm", &h.vm), ("pg", &h.pg), ("role", &h.role)] {
            println!(
                "{:<16} {:<6} {:<9} {}",
                r.address.as_str(),
                name,
                c.status.as_str(),
                c.output
            );
        }
    }
    if let Some(e) = live.of_kind(Kind::Endpoint).next() {
        if let Some(port) = e.checks.port {
            let host = e.checks.host.as_deref().unwrap_or("127.0.0.1");
            let user = &config.postgres.operator_user;
            println!(
                "\nLeader endpoint ({}): postgres://{user}:********@{host}:{port}/postgres",
                e.state().unwrap_or("unknown")
            );
        }
    }
    let attachments: Vec<_> = live
        .of_kind(Kind::Attachment)
        .filter_map(|r| Some((r, r.attachment()?)))
        .collect();
    if !attachments.is_empty() {
        println!(
            "\n{:<24} {:<24} {:<20} {:<20} CREDENTIALS",
            "ATTACHED APP", "VARIABLE", "DATABASE", "USER"
        );
        for (r, a) in attachments {
            println!(
                "{:<24} {:<24} {:<20} {:<20} {}",
                r.address.name(),
                a.variable,
                a.database,
                a.user,
                a.credentials
            );
        }
    }
    Ok(done)
}

/// Prometheus file_sd targets: every node's exporter (job `postgres`, with
/// its node and role).
fn prometheus_targets(app: &str, live: &crate::live::Live) -> serde_json::Value {
    let mut out = Vec::new();
    for r in live.of_kind(Kind::Machine) {
        let (Some(m), Some(port)) = (r.machine(), r.checks.metrics_port) else {
            continue;
        };
        out.push(serde_json::json!({
            "targets": [format!("127.0.0.1:{port}")],
            "labels": {
                "job": "postgres",
                "app": app,
                "node": r.address.as_str(),
                "region": m.region,
                "role": node_role(m),
            },
        }));
    }
    serde_json::Value::Array(out)
}

/// Fly-style checks of a node: replication lag, connections, disk.
fn human_checks(c: &Checks) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &c.pg_state {
        parts.push(format!("pg={s}"));
    }
    if let Some(lag) = c.lag_bytes {
        parts.push(format!("lag={lag}B"));
    }
    if let (Some(n), Some(max)) = (c.connections, c.max_connections) {
        parts.push(format!("connections={n}/{max}"));
    }
    if let Some(d) = c.disk_used_bytes {
        parts.push(format!("disk={:.1}MiB", d as f64 / 1_048_576.0));
    }
    if let Some(p) = c.port {
        parts.push(format!("port={p}"));
    }
    parts.join(" ")
}

//! `flyplan status`: nodes with their role, state and checks, the leader
//! endpoint with the password masked, and the attachments.

use std::process::ExitCode;

use anyhow::Result;

use super::args::{Cli, StatusArgs};
use super::health::{node_health, node_role, NodeHealth, Status};
use super::{load_config, open_provider};
use crate::model::{Address, Checks, Kind, Role};

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
    let backups = match provider.backups() {
        Some(b) if !live.resources.is_empty() => b.status(&config.app)?,
        _ => None,
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
        let mut doc = serde_json::json!({
            "app": config.app,
            "monitor_reachable": monitor_reachable,
            "nodes": nodes,
            "endpoint": endpoint,
            "attachments": attachments,
            "backups": backups,
        });
        if let Some(url) = multi_host_url(&live, &config.postgres.operator_user) {
            doc["multi_host_url"] = url.into();
        }
        if let Some(note) = monitor_note(&live) {
            doc["automatic_failover"] = serde_json::json!({ "on": false, "why": note });
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(done);
    }
    if live.resources.is_empty() {
        println!("App {} does not exist (nothing applied yet).", config.app);
        return Ok(ExitCode::SUCCESS);
    }
    println!("App {} ({} provider)\n", config.app, provider.name());
    if let Some(note) = monitor_note(&live) {
        println!("{note}\n");
    }
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
            observed_state(&m.state, &r.checks),
            human_checks(&m.state, &r.checks)
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
            if let Some(m) = e.checks.metrics_port {
                println!("Endpoint metrics (haproxy, Prometheus): http://{host}:{m}/metrics");
            }
        }
    }
    if let Some(url) = multi_host_url(&live, &config.postgres.operator_user) {
        println!("Multi-host URL (skips the endpoint): {url}");
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
    if let Some(b) = &backups {
        print_backups(b);
    }
    Ok(done)
}

/// The operator's URL naming every failover candidate's own port, with the
/// password masked, for clients that pick the writable host themselves.
fn multi_host_url(live: &crate::live::Live, user: &str) -> Option<String> {
    let hosts: Vec<(String, u16)> = live
        .of_kind(Kind::Machine)
        .filter(|r| r.machine().is_some_and(|m| m.role != Role::Replica))
        .filter_map(|r| Some(("127.0.0.1".to_string(), u16::try_from(r.checks.port?).ok()?)))
        .collect();
    // Only the local provider gives nodes their own ports on this host.
    live.of_kind(Kind::App).next()?.checks.monitor_port?;
    let one = crate::sql::connection_url("127.0.0.1", 5432, user, Some("PASSWORD"), "postgres");
    crate::sql::multi_host_url(&one, &hosts).map(|u| u.replace("PASSWORD", "********"))
}

/// What a stopped failover monitor means (the local provider reports its
/// monitor as the app's state, with the monitor's port among the checks).
fn monitor_note(live: &crate::live::Live) -> Option<String> {
    let app = live.of_kind(Kind::App).next()?;
    let stopped = app.checks.monitor_port.is_some() && app.state() == Some("stopped");
    stopped.then(|| {
        "Monitor: stopped. Automatic failover is off: a leader crash now is not \
         repaired until `flyplan apply` (or `flyplan watch`) starts the monitor again."
            .to_string()
    })
}

/// Whether a node's processes were seen running.
fn runs(state: &str) -> bool {
    matches!(state, "running" | "started")
}

/// The state observed (the node's processes) and, when they do not run,
/// the monitor's last report, which may be stale: a node killed a moment
/// ago is still `primary` there.
fn observed_state(state: &str, c: &Checks) -> String {
    match &c.pg_state {
        Some(pg) if !runs(state) => format!("{state} (monitor last reported: {pg})"),
        _ => state.to_string(),
    }
}

/// Archiving and base backups of `[postgres.backup]`.
fn print_backups(b: &crate::backup::BackupStatus) {
    let age = |s: Option<i64>| s.map_or(String::new(), |s| format!(" ({s}s ago)"));
    println!("\nBackups to {}", b.store);
    println!(
        "  last archived WAL: {}{}",
        b.last_archived_wal.as_deref().unwrap_or("none yet"),
        age(b.last_archived_age_s)
    );
    println!(
        "  archive failures:  {}{}",
        b.failed_count.unwrap_or(0),
        b.last_failed_wal
            .as_deref()
            .map_or(String::new(), |w| format!(" (last {w})"))
    );
    println!(
        "  last base backup:  {}{} ({} kept)",
        b.last_backup_id.as_deref().unwrap_or("none yet"),
        age(b.last_backup_age_s),
        b.backups
    );
    if let (Some(from), Some(to)) = (&b.recoverable_from, &b.recoverable_to) {
        println!("  recoverable:       {from} .. {to}");
    }
    if let Some(w) = &b.warning {
        println!("  WARNING: {w}");
    }
}

/// Prometheus file_sd targets: every node's exporter (job `postgres`, with
/// its node and role) and the endpoint's haproxy stats (job `haproxy`).
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
    for e in live.of_kind(Kind::Endpoint) {
        let Some(port) = e.checks.metrics_port else {
            continue;
        };
        let host = e.checks.host.as_deref().unwrap_or("127.0.0.1");
        out.push(serde_json::json!({
            "targets": [format!("{host}:{port}")],
            "labels": {
                "job": "haproxy",
                "app": app,
            },
        }));
    }
    serde_json::Value::Array(out)
}

/// Fly-style checks of a node: replication lag, connections, disk.
fn human_checks(state: &str, c: &Checks) -> String {
    let mut parts = Vec::new();
    if let Some(s) = c.pg_state.as_ref().filter(|_| runs(state)) {
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

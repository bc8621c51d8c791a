//! `flyplan status`: nodes with their role, state and checks, the leader
//! endpoint with the password masked, and the attachments.

use std::process::ExitCode;

use anyhow::Result;

use super::args::{Cli, StatusArgs};
use super::{load_config, open_provider};
use crate::model::{attr, Kind};

pub(super) fn status(cli: &Cli, a: &StatusArgs) -> Result<ExitCode> {
    let config = load_config(&a.config)?;
    let provider = open_provider(cli)?;
    let live = provider.status(&config.app)?;
    if a.json {
        let nodes: Vec<_> = live
            .of_kind(Kind::Machine)
            .map(|m| {
                serde_json::json!({
                    "address": m.address,
                    "region": m.str(attr::REGION),
                    "role": node_role(m),
                    "state": m.str(attr::STATE),
                    "checks": m.status,
                })
            })
            .collect();
        let endpoint = live.of_kind(Kind::Endpoint).next().map(|e| {
            let mut v = serde_json::Map::new();
            v.insert("state".into(), e.str(attr::STATE).into());
            v.extend(e.status.clone());
            v
        });
        let attachments: Vec<_> = live
            .of_kind(Kind::Attachment)
            .map(|a| {
                serde_json::json!({
                    "app": a.address.as_str().trim_start_matches("attachment."),
                    "variable": a.str(attr::VARIABLE),
                    "database": a.str(attr::DATABASE),
                    "user": a.str(attr::USER),
                    "superuser": a.bool(attr::SUPERUSER),
                    "credentials": a.str(attr::CREDENTIALS),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "app": config.app,
            "nodes": nodes,
            "endpoint": endpoint,
            "attachments": attachments,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
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
    for m in live.of_kind(Kind::Machine) {
        println!(
            "{:<16} {:<8} {:<13} {:<10} {}",
            m.address.as_str(),
            m.str(attr::REGION).unwrap_or("?"),
            node_role(m),
            m.str(attr::STATE).unwrap_or("?"),
            human_checks(m)
        );
    }
    if let Some(e) = live.of_kind(Kind::Endpoint).next() {
        if let Some(port) = e.status.get(attr::PORT).and_then(|v| v.as_u64()) {
            let host = e
                .status
                .get("host")
                .and_then(|v| v.as_str())
                .unwrap_or("127.0.0.1");
            let user = &config.postgres.operator_user;
            println!(
                "\nLeader endpoint ({}): postgres://{user}:********@{host}:{port}/postgres",
                e.str(attr::STATE).unwrap_or("unknown")
            );
        }
    }
    let attachments: Vec<_> = live.of_kind(Kind::Attachment).collect();
    if !attachments.is_empty() {
        println!(
            "\n{:<24} {:<24} {:<20} {:<20} CREDENTIALS",
            "ATTACHED APP", "VARIABLE", "DATABASE", "USER"
        );
        for a in attachments {
            println!(
                "{:<24} {:<24} {:<20} {:<20} {}",
                a.address.as_str().trim_start_matches("attachment."),
                a.str(attr::VARIABLE).unwrap_or("?"),
                a.str(attr::DATABASE).unwrap_or("?"),
                a.str(attr::USER).unwrap_or("?"),
                a.str(attr::CREDENTIALS).unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fly-style checks of a node: replication lag, connections, disk.
fn human_checks(m: &crate::model::Resource) -> String {
    let get = |k: &str| m.status.get(k).and_then(|v| v.as_i64());
    let mut parts = Vec::new();
    if let Some(s) = m.status.get("pg_state").and_then(|v| v.as_str()) {
        parts.push(format!("pg={s}"));
    }
    if let Some(lag) = get("lag_bytes") {
        parts.push(format!("lag={lag}B"));
    }
    if let (Some(c), Some(max)) = (get("connections"), get("max_connections")) {
        parts.push(format!("connections={c}/{max}"));
    }
    if let Some(d) = get("disk_used_bytes") {
        parts.push(format!("disk={:.1}MiB", d as f64 / 1_048_576.0));
    }
    if let Some(p) = get(attr::PORT) {
        parts.push(format!("port={p}"));
    }
    parts.join(" ")
}

fn node_role(m: &crate::model::Resource) -> &'static str {
    if m.bool(attr::LEADER) == Some(true) {
        "leader"
    } else if m.str(attr::ROLE) == Some(crate::model::role::REPLICA) {
        "read-replica"
    } else {
        "replica"
    }
}

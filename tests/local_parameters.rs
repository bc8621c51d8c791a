//! `[postgres.parameters]` on a real two-node cluster (PostgreSQL 15,
//! pg_auto_failover, haproxy): a reload-only change reaches every node
//! without a restart, a hand-made `ALTER SYSTEM` shows as drift and is
//! restored while a setting fly.toml does not name is left alone, and a
//! change that needs a restart restarts the standby first, then the leader
//! after a switchover, under a steady write load through the endpoint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{connect, text, Cluster};

const PASSWORD: &str = "local-test-Password-17";

/// `plan --detailed-exitcode`: its exit code and output.
fn plan(c: &Cluster) -> (Option<i32>, String) {
    let o = c.run(&["plan", "--detailed-exitcode"]);
    (o.status.code(), text(&o))
}

fn config(params: &str) -> String {
    format!(
        r#"app = "params-it"
primary_region = "iad"

[postgres]
  instances = 2
  operator_password = "PG_PASSWORD"

[postgres.parameters]
{params}
[secrets]
  PG_PASSWORD = {{ from_env = "PG_PASSWORD" }}
"#
    )
}

/// (address, port, role) of every node.
fn nodes(status: &Value) -> Vec<(String, u16, String)> {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["address"].as_str().unwrap().to_string(),
                n["checks"]["port"].as_u64().expect("port") as u16,
                n["role"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `SHOW name` and the postmaster's start time on the node at `port`.
async fn show(port: u16, name: &str) -> (String, String) {
    let c = connect(port, PASSWORD).await.expect("node");
    let row = c
        .query_one(
            &format!("select current_setting('{name}'), pg_postmaster_start_time()::text"),
            &[],
        )
        .await
        .expect("show");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_reload_restart_and_drift_on_a_two_node_cluster() {
    let c = Cluster::new(&config("  work_mem = \"8MB\"\n"), PASSWORD);
    c.apply();
    let status = c.status();
    let before = nodes(&status);
    assert_eq!(before.len(), 2, "{status}");
    let endpoint = status["endpoint"]["port"].as_u64().expect("endpoint") as u16;
    let mut started = Vec::new();
    for (address, port, _) in &before {
        let (v, t) = show(*port, "work_mem").await;
        assert_eq!(v, "8MB", "{address}");
        started.push(t);
    }
    let (code, out) = plan(&c);
    assert_eq!(code, Some(0), "{out}");

    // A reload-only change: every node, no restart.
    c.write(&config(
        "  work_mem = \"16MB\"\n  statement_timeout = \"30s\"\n",
    ));
    let (code, out) = plan(&c);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("~ value = \"8MB\" -> \"16MB\""), "{out}");
    assert!(out.contains("reload: pg_reload_conf()"), "{out}");
    assert!(!out.contains("restart: nodes restart"), "{out}");
    c.apply();
    for ((address, port, _), t0) in before.iter().zip(&started) {
        let (v, t) = show(*port, "work_mem").await;
        assert_eq!(v, "16MB", "{address}");
        assert_eq!(&t, t0, "{address} restarted for a reload-only change");
        assert_eq!(show(*port, "statement_timeout").await.0, "30s", "{address}");
    }
    let (code, out) = plan(&c);
    assert_eq!(code, Some(0), "{out}");

    // A hand-made ALTER SYSTEM on the standby is drift; a setting fly.toml
    // does not name is left alone.
    let (standby, standby_port, _) = before
        .iter()
        .find(|(_, _, role)| role != "leader")
        .cloned()
        .expect("a standby");
    let hand = connect(standby_port, PASSWORD).await.expect("standby");
    for sql in [
        "ALTER SYSTEM SET work_mem = '1MB'",
        "ALTER SYSTEM SET log_min_duration_statement = '2s'",
        "SELECT pg_reload_conf()",
    ] {
        hand.batch_execute(sql).await.expect("hand ALTER SYSTEM");
    }
    let (code, out) = plan(&c);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("parameter.work_mem"), "{out}");
    assert!(out.contains("=1MB"), "the node's value is shown: {out}");
    assert!(!out.contains("log_min_duration_statement"), "{out}");
    c.apply();
    assert_eq!(show(standby_port, "work_mem").await.0, "16MB", "{standby}");
    assert_eq!(
        show(standby_port, "log_min_duration_statement").await.0,
        "2s",
        "{standby}"
    );
    let (code, out) = plan(&c);
    assert_eq!(code, Some(0), "{out}");

    // A change that needs a restart, under a steady write load.
    let setup = connect(endpoint, PASSWORD).await.expect("endpoint");
    setup
        .batch_execute("CREATE TABLE load (id bigserial primary key, at timestamptz default now())")
        .await
        .expect("table");
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let load = {
        let stop = stop.clone();
        let failed = failed.clone();
        tokio::spawn(async move {
            let mut ok = 0u64;
            let mut client = None;
            let mut refused_since: Option<Instant> = None;
            let mut longest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    client = connect(endpoint, PASSWORD).await.ok();
                }
                let done = match &client {
                    Some(cl) => cl
                        .execute("INSERT INTO load DEFAULT VALUES", &[])
                        .await
                        .is_ok(),
                    None => false,
                };
                if done {
                    ok += 1;
                    if let Some(since) = refused_since.take() {
                        longest = longest.max(since.elapsed());
                    }
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    client = None;
                    refused_since.get_or_insert_with(Instant::now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if let Some(since) = refused_since {
                longest = longest.max(since.elapsed());
            }
            (ok, longest)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.write(&config(
        "  work_mem = \"16MB\"\n  statement_timeout = \"30s\"\n  max_connections = 150\n",
    ));
    let (code, out) = plan(&c);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("restart: nodes restart one at a time"),
        "{out}"
    );
    let t = Instant::now();
    c.apply();
    let took = t.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, longest) = load.await.expect("load");
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "rolling restart for max_connections on 2 nodes: {:.1}s; writes through the endpoint: {ok} ok, {failed} failed, longest refusal {:.1}s",
        took.as_secs_f64(),
        longest.as_secs_f64()
    );
    assert!(ok > 0);

    let after = nodes(&c.status());
    let mut restarted_at = std::collections::BTreeMap::new();
    for ((address, port, _), t0) in before.iter().zip(&started) {
        let (v, t) = show(*port, "max_connections").await;
        assert_eq!(v, "150", "{address}");
        assert_ne!(&t, t0, "{address} was not restarted");
        restarted_at.insert(address.clone(), t);
    }
    // The standby restarted first; the old leader after it, and it handed
    // the leader role over first.
    let (old_leader, _, _) = before
        .iter()
        .find(|(_, _, role)| role == "leader")
        .cloned()
        .unwrap();
    assert!(
        restarted_at[&standby] < restarted_at[&old_leader],
        "restart order: {restarted_at:?}"
    );
    let now_leader = after
        .iter()
        .find(|(_, _, role)| role == "leader")
        .map(|(a, _, _)| a.clone());
    assert_eq!(now_leader.as_deref(), Some(standby.as_str()), "{after:?}");
    let (code, out) = plan(&c);
    assert_eq!(code, Some(0), "{out}");
}

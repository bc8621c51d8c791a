//! Metrics and health checks of a real two-node cluster: every node's
//! `prometheus-postgres-exporter` answers `pg_up 1` on the port `status
//! --json` names, `status --prometheus-sd` writes the targets, the `vm`, `pg` and `role` checks
//! are shown, and after the leader is killed the new leader's metrics say
//! it is no replica while `status --exit-code` reports the dead node.

use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/procs.rs"]
mod procs;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{text, Cluster};

const PASSWORD: &str = "local-test-Password-17m";

const CONFIG: &str = r#"app = "metrics-it"
primary_region = "iad"

[postgres]
  instances = 2
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
"#;

async fn metrics(port: u64) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(&url).await {
            if let Ok(body) = r.text().await {
                if body.contains("pg_up 1") || body.contains("haproxy_") {
                    return body;
                }
            }
        }
        assert!(Instant::now() < deadline, "no metrics from {url}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The value of the sample of metric `name` (with or without labels).
fn value_of<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.split_whitespace().last())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_health_checks_and_metrics_after_a_failover() {
    let c = Cluster::new(CONFIG, PASSWORD);
    c.apply();

    let sd = c.state.path().join("targets.json");
    let o = c.run(&["status", "--json", "--prometheus-sd", sd.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let status: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let nodes = status["nodes"].as_array().expect("nodes").clone();
    assert_eq!(nodes.len(), 2, "{status}");
    for n in &nodes {
        let port = n["checks"]["metrics_port"]
            .as_u64()
            .unwrap_or_else(|| panic!("no metrics_port: {n}"));
        let body = metrics(port).await;
        assert!(body.lines().any(|l| l == "pg_up 1"), "{}", n["address"]);
        for check in ["vm", "pg", "role"] {
            let s = n["health"][check]["status"].as_str().unwrap_or_default();
            assert!(
                ["passing", "warning", "critical"].contains(&s),
                "{check} of {}: {n}",
                n["address"]
            );
        }
        assert_ne!(n["health"]["pg"]["status"], "critical", "{n}");
        let role = n["role"].as_str().unwrap();
        assert!(
            n["health"]["role"]["output"]
                .as_str()
                .unwrap()
                .starts_with(role),
            "{n}"
        );
        if role == "leader" {
            assert!(
                n["health"]["pg"]["output"]
                    .as_str()
                    .unwrap()
                    .contains("currently leader"),
                "{n}"
            );
        }
    }
    let targets: Value =
        serde_json::from_str(&std::fs::read_to_string(&sd).expect("sd file")).expect("sd JSON");
    let targets = targets.as_array().expect("array");
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert_eq!(
        targets
            .iter()
            .filter(|t| t["labels"]["job"] == "postgres")
            .count(),
        2
    );

    // Kill the leader: the standby is promoted, its exporter says so, and
    // status --exit-code reports the dead node as critical.
    let leader = nodes
        .iter()
        .find(|n| n["role"] == "leader")
        .unwrap()
        .clone();
    let standby = nodes
        .iter()
        .find(|n| n["role"] != "leader")
        .unwrap()
        .clone();
    let standby_metrics = standby["checks"]["metrics_port"].as_u64().unwrap();
    let before = metrics(standby_metrics).await;
    assert_eq!(value_of(&before, "pg_replication_is_replica"), Some("1"));
    let pids: Vec<i32> = ["pid", "postgres_pid"]
        .iter()
        .map(|k| leader["checks"][k].as_i64().expect("pid") as i32)
        .collect();
    procs::kill_trees(&pids);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body = metrics(standby_metrics).await;
        if value_of(&body, "pg_replication_is_replica") == Some("0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new leader's metrics still say replica"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let o = c.run(&["status", "--exit-code"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    let dead = leader["address"].as_str().unwrap();
    assert!(
        out.lines()
            .any(|l| l.starts_with(dead) && l.contains(" pg ") && l.contains("critical")),
        "{out}"
    );
    // The monitor settles on the promoted node shortly after.
    loop {
        let now = c.status();
        let promoted = now["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["address"] == standby["address"])
            .unwrap()
            .clone();
        if promoted["role"] == "leader" {
            assert!(
                promoted["health"]["pg"]["output"]
                    .as_str()
                    .unwrap()
                    .contains("currently leader"),
                "{promoted}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not leader: {now}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

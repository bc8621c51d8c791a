//! Metrics and health checks of a real two-node cluster: every node's
//! `prometheus-postgres-exporter` answers `pg_up 1` on the port `status
//! --json` names, the endpoint's haproxy exports its stats for Prometheus
//! on its own port while it still serves SQL, `status --prometheus-sd`
//! writes the targets, the `vm`, `pg` and `role` checks are shown, and
//! after the leader is killed the new leader's metrics say it is no
//! replica, writes through the endpoint reach it, haproxy's metrics name
//! it, and `status --exit-code` reports the dead node.

use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/procs.rs"]
mod procs;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::{connect, text, Cluster};

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

/// haproxy's `haproxy_server_status` samples of the endpoint's servers in
/// state UP: (server, value).
fn servers_up(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter_map(|l| l.strip_prefix("haproxy_server_status{proxy=\"leader\",server=\""))
        .filter_map(|l| {
            let (server, rest) = l.split_once('"')?;
            let value = rest.strip_prefix(",state=\"UP\"} ")?;
            Some((server.to_string(), value.to_string()))
        })
        .collect()
}

/// The endpoint's stats until exactly one server, the leader, is UP.
async fn endpoint_stats_with_one_leader(port: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = metrics(port).await;
        let up = servers_up(&body);
        if up.len() == 2
            && up.iter().filter(|(_, v)| v == "1").count() == 1
            && value_of(&body, "haproxy_backend_active_servers") == Some("1")
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "not one server UP behind the endpoint: {up:?}"
        );
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
    // The endpoint serves SQL and its haproxy exports its stats on a port
    // of its own: one server, the leader, UP.
    let endpoint = status["endpoint"]["port"].as_u64().expect("endpoint port") as u16;
    let db = connect(endpoint, PASSWORD)
        .await
        .expect("through the endpoint");
    db.batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .expect("a write through the endpoint");
    let endpoint_metrics = status["endpoint"]["metrics_port"]
        .as_u64()
        .unwrap_or_else(|| panic!("no endpoint metrics_port: {status}"));
    assert_ne!(endpoint_metrics, u64::from(endpoint));
    endpoint_stats_with_one_leader(endpoint_metrics).await;
    let targets: Value =
        serde_json::from_str(&std::fs::read_to_string(&sd).expect("sd file")).expect("sd JSON");
    let targets = targets.as_array().expect("array");
    assert_eq!(targets.len(), 3, "{targets:?}");
    assert_eq!(
        targets
            .iter()
            .filter(|t| t["labels"]["job"] == "postgres")
            .count(),
        2
    );
    let haproxy: Vec<&Value> = targets
        .iter()
        .filter(|t| t["labels"]["job"] == "haproxy")
        .collect();
    assert_eq!(
        haproxy[0]["targets"][0],
        format!("127.0.0.1:{endpoint_metrics}"),
        "{targets:?}"
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
    // Writes through the endpoint reach the new leader, on a new session.
    loop {
        if let Ok(db) = connect(endpoint, PASSWORD).await {
            if db.execute("INSERT INTO t VALUES (2)", &[]).await.is_ok() {
                let n: i64 = db
                    .query_one("SELECT count(*) FROM t", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n, 2, "the row written before the failover is there");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no write through the endpoint after the failover"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let body = endpoint_stats_with_one_leader(endpoint_metrics).await;
    let dead_server = servers_up(&body)
        .into_iter()
        .find(|(_, v)| v == "0")
        .map(|(s, _)| s);
    let o = c.run(&["status", "--exit-code"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&format!(
            "Endpoint metrics (haproxy, Prometheus): http://127.0.0.1:{endpoint_metrics}/metrics"
        )),
        "{out}"
    );
    let dead = leader["address"].as_str().unwrap();
    // haproxy's server of node `machine[iad:0]` is `iad-0`.
    assert_eq!(
        dead_server.as_deref(),
        Some(
            dead.trim_start_matches("machine[")
                .trim_end_matches(']')
                .replace(':', "-")
                .as_str()
        ),
        "the killed leader is DOWN behind the endpoint: {body}"
    );
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

//! The write pause of a planned switchover, over repeated rolling updates
//! of a local cluster (PostgreSQL 15, pg_auto_failover, haproxy): each
//! round changes `[[vm]] memory`, so `apply` restarts the standbys, switches
//! the leader over and restarts the old leader. A writer inserts one row at
//! a time through the leader endpoint on one connection, reconnecting after
//! any error; a round's pause is the longest time between two acknowledged
//! commits during its apply. At the end every acknowledged row must be
//! there. Prints each round's pause and the monitor's events of its
//! switchover, then min/median/max.
//!
//! Ignored by default (about 30 s a round); the release build is the one
//! to quote:
//!
//! cargo nextest run --release --test switchover_bench --run-ignored only --no-capture
//!
//! FLYPLAN_SWITCHOVERS (default 10) rounds, FLYPLAN_SWITCHOVER_NODES
//! (default 3) nodes.

#[path = "support/cluster.rs"]
mod cluster;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cluster::{connect, text, Cluster};

const PASSWORD: &str = "switchover-Password-23";
const APP: &str = "switchover-bench";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(nodes: usize, memory: &str) -> String {
    let sync = if nodes > 2 {
        "  sync_standbys = 1\n"
    } else {
        ""
    };
    format!(
        r#"app = "{APP}"
primary_region = "iad"

[postgres]
  instances = {nodes}
{sync}  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = {{ from_env = "PG_PASSWORD" }}

[[vm]]
  size = "shared-cpu-1x"
  memory = "{memory}"
"#
    )
}

/// The monitor's port, from the monitor's own settings file.
fn monitor_port(c: &Cluster) -> u16 {
    let conf = c
        .state
        .path()
        .join("state/apps")
        .join(APP)
        .join("monitor/postgresql-auto-failover.conf");
    let text = std::fs::read_to_string(&conf).expect("monitor settings");
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "port").then(|| v.trim().parse().ok())?
        })
        .expect("monitor port")
}

/// The monitor's events since `since`, as `+seconds node reported→goal`,
/// times from `since`.
async fn events_since(monitor: u16, since: SystemTime) -> Vec<String> {
    let conn = format!(
        "host=127.0.0.1 port={monitor} user=autoctl_node dbname=pg_auto_failover connect_timeout=5"
    );
    let Ok((client, connection)) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await
    else {
        return vec!["(monitor not reachable)".into()];
    };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let rows = client
        .query(
            "select extract(epoch from eventtime)::float8, nodename, reportedstate::text, \
                    goalstate::text \
             from pgautofailover.event order by eventid",
            &[],
        )
        .await
        .expect("events");
    let t0 = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut out = Vec::new();
    let mut last = String::new();
    for r in rows {
        let at: f64 = r.get(0);
        if at < t0 {
            continue;
        }
        let line = format!(
            "{} {}→{}",
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, String>(3)
        );
        if line != last {
            out.push(format!("+{:.2}s {line}", at - t0));
            last = line;
        }
    }
    out
}

/// Poll haproxy's runtime API every 50 ms until `stop`, noting each change
/// of a server's operational state (`show servers state`).
type Changes = Arc<Mutex<Vec<(Instant, String, String)>>>;
fn haproxy_watcher(socket: std::path::PathBuf, stop: Arc<AtomicBool>) -> Changes {
    use std::io::{Read, Write};
    let changes: Changes = Arc::default();
    let out = changes.clone();
    std::thread::spawn(move || {
        let mut last = std::collections::HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            let mut answer = String::new();
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) {
                let _ = s.write_all(b"show servers state leader\n");
                let _ = s.read_to_string(&mut answer);
            }
            for line in answer.lines().filter(|l| !l.starts_with('#')) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 7 {
                    continue;
                }
                let state = match f[5] {
                    "0" => "down",
                    "1" => "starting",
                    "2" => "up",
                    "3" => "stopping",
                    other => other,
                }
                .to_string();
                if last.get(f[3]) != Some(&state) {
                    last.insert(f[3].to_string(), state.clone());
                    out.lock()
                        .unwrap()
                        .push((Instant::now(), f[3].to_string(), state));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    changes
}

/// A writer's error in one line: the server's message when it sent one.
fn describe(e: &tokio_postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => db.message().to_string(),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// Note among the writer's errors a step that took over 300 ms.
fn slow(errors: &Mutex<Vec<(Instant, String)>>, what: &str, at: Instant) {
    let took = at.elapsed();
    if took > Duration::from_millis(300) {
        errors.lock().unwrap().push((
            Instant::now(),
            format!("{what} took {:.2}s", took.as_secs_f64()),
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: about 30 s a round; run with --run-ignored only"]
async fn switchover_pause_over_rolling_updates() {
    let rounds = env_number("FLYPLAN_SWITCHOVERS", 10);
    let nodes = env_number("FLYPLAN_SWITCHOVER_NODES", 3);
    let c = Cluster::new(&config(nodes, "512mb"), PASSWORD);
    c.apply();
    let status = c.status();
    let endpoint = status["endpoint"]["port"].as_u64().expect("endpoint") as u16;
    let monitor = monitor_port(&c);
    let db = connect(endpoint, PASSWORD).await.expect("endpoint");
    db.batch_execute("CREATE TABLE w (id int primary key)")
        .await
        .expect("table");
    drop(db);

    // The writer: ids it got an acknowledgement for, and when.
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<(i32, Instant)>>> = Arc::default();
    // What the writer was told instead, and when.
    let errors: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let writer = {
        let (stop, acks, errors) = (stop.clone(), acks.clone(), errors.clone());
        tokio::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if client.is_none() {
                    let at = Instant::now();
                    client = match connect(endpoint, PASSWORD).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            errors.lock().unwrap().push((Instant::now(), describe(&e)));
                            None
                        }
                    };
                    slow(&errors, "connect", at);
                }
                let Some(cl) = &client else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                i += 1;
                let at = Instant::now();
                let res = cl.execute("INSERT INTO w VALUES ($1)", &[&i]).await;
                slow(&errors, "insert", at);
                match res {
                    Ok(_) => acks.lock().unwrap().push((i, Instant::now())),
                    Err(e) => {
                        errors.lock().unwrap().push((Instant::now(), describe(&e)));
                        client = None;
                    }
                }
            }
        })
    };

    // The endpoint's view: each change of a server's state in haproxy.
    let servers = haproxy_watcher(
        c.state
            .path()
            .join("state/apps")
            .join(APP)
            .join("run/haproxy.sock"),
        stop.clone(),
    );

    let mut pauses = Vec::new();
    for round in 0..rounds {
        let memory = if round % 2 == 0 { "1gb" } else { "512mb" };
        c.write(&config(nodes, memory));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (start, wall) = (Instant::now(), SystemTime::now());
        let o = c.run(&["apply", "--auto-approve"]);
        assert!(o.status.success(), "round {round}: {}", text(&o));
        let took = start.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let end = Instant::now();
        let times: Vec<Instant> = {
            let acks = acks.lock().unwrap();
            let from = acks.iter().rposition(|(_, t)| *t <= start).unwrap_or(0);
            acks[from..]
                .iter()
                .map(|(_, t)| *t)
                .take_while(|t| *t <= end)
                .collect()
        };
        assert!(times.len() > 2, "round {round}: no writes went through");
        let pause = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        // Every pause over 300 ms, as seconds since the apply started (the
        // events' clock), to tell a switchover's pause from a standby's
        // restart.
        let gaps: Vec<String> = times
            .windows(2)
            .filter(|w| w[1] - w[0] > Duration::from_millis(300))
            .map(|w| {
                let at = |t: Instant| (t - start).as_secs_f64();
                format!("+{:.2}s..+{:.2}s", at(w[0]), at(w[1]))
            })
            .collect();
        eprintln!(
            "round {}: apply {:.1}s, longest write pause {:.2}s; pauses {}",
            round + 1,
            took.as_secs_f64(),
            pause.as_secs_f64(),
            gaps.join(" ")
        );
        // The writer's errors during the round, consecutive repeats
        // counted once.
        let mut said: Vec<(f64, String, usize)> = Vec::new();
        for (t, e) in errors.lock().unwrap().iter() {
            if *t < start || *t > end {
                continue;
            }
            match said.last_mut() {
                Some(last) if last.1 == *e => last.2 += 1,
                _ => said.push(((*t - start).as_secs_f64(), e.clone(), 1)),
            }
        }
        for (at, e, n) in &said {
            eprintln!("    +{at:.2}s writer: {e} (x{n})");
        }
        for (t, server, state) in servers.lock().unwrap().iter() {
            if *t >= start && *t <= end {
                let at = (*t - start).as_secs_f64();
                eprintln!("    +{at:.2}s endpoint: {server} {state}");
            }
        }
        let events = events_since(monitor, wall).await;
        let first = events
            .iter()
            .position(|e| e.contains("→draining"))
            .unwrap_or(0);
        for e in &events[first..] {
            eprintln!("    {e}");
        }
        pauses.push(pause);
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");

    let acked: Vec<i32> = acks.lock().unwrap().iter().map(|(i, _)| *i).collect();
    let db = connect(endpoint, PASSWORD).await.expect("endpoint");
    let rows: std::collections::HashSet<i32> = db
        .query("SELECT id FROM w", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let lost = acked.iter().filter(|i| !rows.contains(i)).count();
    pauses.sort();
    let secs = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    eprintln!(
        "{nodes} nodes, {rounds} rolling updates: write pause min {} median {} max {}; \
         {} commits acknowledged, {lost} lost",
        secs(pauses[0]),
        secs(pauses[pauses.len() / 2]),
        secs(pauses[pauses.len() - 1]),
        acked.len()
    );
    assert_eq!(lost, 0, "acknowledged commits lost");
}

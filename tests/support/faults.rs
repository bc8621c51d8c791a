//! Helpers of the fault tests on local clusters: the operator's
//! connections, a writer that records every acknowledged commit, the check
//! that none of them is lost, and the processes of an app.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The operator password of every fault-test cluster.
pub const PASSWORD: &str = "local-test-Password-93";

pub fn port_of(v: &Value) -> u16 {
    v["port"].as_u64().expect("port") as u16
}

pub async fn connect(
    port: u16,
    user: &str,
    db: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn = format!(
        "host=127.0.0.1 port={port} user={user} password={PASSWORD} dbname={db} connect_timeout=3"
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

pub fn leader_of(status: &Value) -> Value {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["role"] == "leader")
        .cloned()
        .unwrap_or_else(|| panic!("no leader in {status}"))
}

pub fn no_process_mentions(dir: &Path) -> bool {
    let needle = dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| !String::from_utf8_lossy(&c).contains(&needle))
            .unwrap_or(true)
    })
}

/// A writer on its own thread: one row at a time into `table` over
/// `conninfo`, reconnecting on any error; it records each acknowledged id
/// with the moment it was acknowledged. A commit not answered within
/// [`WRITE_WAIT`] is given up (not acknowledged) and the session dropped,
/// so a commit blocked for good never blocks the test.
/// How long the writer waits for one commit before it gives it up.
pub const WRITE_WAIT: Duration = Duration::from_secs(20);

pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<(i32, Instant)>>>,
    /// Each distinct error a write or connection met, in order.
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// A runtime for async client code in a plain test or thread.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Key-value connection parameters of the operator through `port`.
pub fn conninfo(port: u16) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres connect_timeout=3"
    )
}

impl Writer {
    pub fn start(endpoint: u16, table: &str) -> Writer {
        Writer::over(conninfo(endpoint), table, 0)
    }

    /// Ids start after `first`, so writers of one table never collide.
    pub fn over(conninfo: String, table: &str, first: i32) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let (s, a, table) = (stop.clone(), acked.clone(), table.to_string());
        let e = errors.clone();
        let note = move |what: String| {
            let mut e = e.lock().unwrap();
            if !e.contains(&what) {
                e.push(what);
            }
        };
        let handle = std::thread::spawn(move || {
            let rt = current_thread();
            rt.block_on(async move {
                let mut client: Option<tokio_postgres::Client> = None;
                let mut i = first;
                while !s.load(std::sync::atomic::Ordering::Relaxed) {
                    if client.is_none() {
                        client =
                            match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
                                Ok((cl, conn)) => {
                                    tokio::spawn(async move {
                                        let _ = conn.await;
                                    });
                                    Some(cl)
                                }
                                Err(err) => {
                                    note(format!("connect: {err}"));
                                    None
                                }
                            };
                        if client.is_none() {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    }
                    i += 1;
                    let sql = format!("INSERT INTO {table} VALUES ($1)");
                    let write = client.as_ref().unwrap();
                    match tokio::time::timeout(WRITE_WAIT, write.execute(&sql, &[&i])).await {
                        Ok(Ok(_)) => a.lock().unwrap().push((i, Instant::now())),
                        Ok(Err(err)) => {
                            let why = err
                                .as_db_error()
                                .map_or_else(|| err.to_string(), |d| d.message().to_string());
                            note(format!("write: {why}"));
                            client = None;
                        }
                        Err(_) => {
                            note(format!("write: no answer within {WRITE_WAIT:?}"));
                            client = None;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        });
        Writer {
            stop,
            acked,
            errors,
            handle: Some(handle),
        }
    }

    /// The distinct errors met so far.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Wait until `more` commits beyond the current count are acknowledged.
    pub fn wait_for_more(&self, more: usize, within: Duration) -> bool {
        let want = self.acked() + more;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.acked() >= want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The first acknowledgement after `t`, as time since `t`.
    pub fn first_ack_after(&self, t: Instant) -> Option<Duration> {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .find(|(_, at)| *at > t)
            .map(|(_, at)| *at - t)
    }

    /// The longest time without an acknowledgement between `from` and
    /// `to`.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let acked = self.acked.lock().unwrap();
        let mut last = from;
        let mut gap = Duration::ZERO;
        for (_, at) in acked.iter().filter(|(_, at)| *at > from && *at <= to) {
            gap = gap.max(*at - last);
            last = *at;
        }
        gap.max(to.saturating_duration_since(last))
    }

    pub fn finish(mut self) -> Vec<i32> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.acked.lock().unwrap().iter().map(|(i, _)| *i).collect()
    }
}

/// Every id in `acked` is in `table`, read through `port` (the endpoint,
/// or a node's own port); the endpoint may still drop a session while its
/// checks settle after a fault, so reads are tried for a minute.
pub fn assert_none_lost(port: u16, table: &str, acked: &[i32]) {
    let rows = rows_of(port, table);
    let lost: Vec<_> = acked.iter().filter(|i| !rows.contains(i)).collect();
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
}

/// The ids in `table`, read through `port`, tried for a minute as in
/// [`assert_none_lost`].
pub fn rows_of(port: u16, table: &str) -> std::collections::BTreeSet<i32> {
    let rt = current_thread();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(db) = connect(port, "postgres", "postgres").await {
                if let Ok(rows) = db.query(&format!("SELECT id FROM {table}"), &[]).await {
                    break rows.iter().map(|r| r.get(0)).collect();
                }
            }
            assert!(Instant::now() < deadline, "rows of {table} unreadable");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The app's processes whose command line mentions `path`.
pub fn pids_mentioning(path: &Path) -> Vec<i32> {
    let needle = path.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}

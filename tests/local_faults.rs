//! The fault suite on local clusters, each fault under a writer that
//! records every acknowledged commit, checked against what the cluster
//! holds afterwards: a frozen leader; a full disk on a standby's volume and
//! every sync standby lost on one three-node cluster; two leader crashes in
//! a row, also with the second leader back on a full disk or killed while
//! still `wait_primary`; `flyplan watch`
//! as the supervisor that brings back killed nodes, monitor and endpoint.
//! docs/faults.md has the results.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/faults.rs"]
mod faults;
#[path = "support/procs.rs"]
mod procs;
#[path = "watch_common/mod.rs"]
mod watch_common;

use cluster::{text, Cluster};
use faults::{
    assert_none_lost, connect, conninfo, current_thread, leader_of, pids_mentioning, port_of,
    Writer, PASSWORD,
};

/// A cluster of `instances` nodes in iad, commits waiting for `sync`
/// standbys, read replicas as `replicas` declares them (`{}`: none).
fn cluster_text(app: &str, instances: u32, sync: u32, replicas: &str) -> String {
    format!(
        "app = \"{app}\"\nprimary_region = \"iad\"\n\n[postgres]\n  instances = {instances}\n  \
         sync_standbys = {sync}\n  read_replicas = {replicas}\n  operator_password = \"PG_PASSWORD\"\n\n\
         [secrets]\n  PG_PASSWORD = {{ from_env = \"PG_PASSWORD\" }}\n\n\
         [[vm]]\n  size = \"shared-cpu-1x\"\n  memory = \"512mb\"\n"
    )
}

/// Create `table` (one int key) through `port`, retried while the endpoint
/// settles after apply.
fn create_table(port: u16, table: &str) {
    current_thread().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(db) = connect(port, "postgres", "postgres").await {
                let sql = format!("CREATE TABLE IF NOT EXISTS {table} (id int primary key)");
                if db.batch_execute(&sql).await.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no writable leader for {table}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Apply `c`, make `table` and start a writer into it through the
/// endpoint: the status after apply, the endpoint's port and the writer.
fn apply_and_write(c: &Cluster, table: &str) -> (Value, u16, Writer) {
    c.apply();
    let status = c.status();
    let endpoint = port_of(&status["endpoint"]);
    create_table(endpoint, table);
    let writer = Writer::start(endpoint, table);
    assert!(
        writer.wait_for_more(20, Duration::from_secs(30)),
        "the writer writes"
    );
    (status, endpoint, writer)
}

/// `iad-1` for `machine[iad:1]`: the node's name in file names.
fn node_name(address: &str) -> String {
    address
        .trim_start_matches("machine[")
        .trim_end_matches(']')
        .replace(':', "-")
}

/// The keeper and postmaster pids of node `n` of `status --json`; the
/// postmaster's only while it runs (the keeper's tree holds it anyway, as
/// pg_autoctl starts PostgreSQL as its own child).
fn node_pids(n: &Value) -> Vec<i32> {
    let keeper = n["checks"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("pid of {n}")) as i32;
    std::iter::once(keeper)
        .chain(n["checks"]["postgres_pid"].as_i64().map(|p| p as i32))
        .collect()
}

/// Node `address` of `status --json`.
fn node<'a>(status: &'a Value, address: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["address"] == address)
        .unwrap_or_else(|| panic!("no {address} in {status}"))
}

/// Wait until `cond` holds of `status --json`, at most `within`.
fn wait_for_status(c: &Cluster, within: Duration, cond: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        let o = c.run(&["status", "--json"]);
        if let Ok(st) = serde_json::from_slice::<Value>(&o.stdout) {
            if cond(&st) {
                return Some(st);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A running standby, as `status --json` shows it.
fn is_running_standby(n: &Value) -> bool {
    n["role"] == "replica" && n["state"] == "running" && n["checks"]["pg_state"] == "secondary"
}

#[test]
fn a_frozen_leader_is_replaced_and_once_thawed_acknowledges_nothing_that_is_lost() {
    let c = Cluster::in_dir(&cluster_text("fp-frozen", 2, 0, "{}"), PASSWORD, "frozen");
    let (status, endpoint, writer) = apply_and_write(&c, "f");
    // With sync_standbys = 0 a commit still waits for the one standby
    // while it runs (README, "What an acknowledged commit means").
    // The leader names its standby once it has moved from `wait_primary`
    // to `primary`, which may come just after apply has seen the standby
    // settle.
    let names: String = current_thread().block_on(async {
        let db = connect(endpoint, "postgres", "postgres").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let names: String = db
                .query_one("SHOW synchronous_standby_names", &[])
                .await
                .unwrap()
                .get(0);
            if names.starts_with("ANY 1 (") || Instant::now() > deadline {
                return names;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert!(names.starts_with("ANY 1 ("), "{names:?}");

    // Freeze the whole node, as a paused VM is: its keeper (pg_autoctl and
    // the services below it) and its postgres tree. Freezing postgres alone
    // would leave a keeper that goes on reporting to the monitor.
    let leader = leader_of(&status);
    let address = leader["address"].as_str().unwrap().to_string();
    let direct = port_of(&leader["checks"]);
    let frozen = procs::tree_of(&node_pids(&leader));
    let at = Instant::now();
    procs::signal_all(&frozen, Signal::SIGSTOP);
    let promoted = writer.wait_for_more(20, Duration::from_secs(60));
    let outage = writer.longest_gap(at, Instant::now());
    let sleep = Duration::from_secs(20).saturating_sub(at.elapsed());
    std::thread::sleep(sleep);

    // Thaw it, with a writer on its own port from the first moment.
    let on_old = Writer::over(conninfo(direct), "f", 10_000_000);
    let thawed = Instant::now();
    procs::signal_all(&frozen, Signal::SIGCONT);
    assert!(promoted, "no standby promoted while the leader was frozen");
    eprintln!(
        "frozen leader: longest pause of writes through the endpoint {:.1}s",
        outage.as_secs_f64()
    );

    // It rejoins as a standby by itself: no apply.
    let rejoined = wait_for_status(&c, Duration::from_secs(90), |st| {
        is_running_standby(node(st, &address))
    });
    let on_old_errors = on_old.errors();
    let on_old_acked = on_old.finish();
    eprintln!(
        "frozen leader: rejoined as a standby {:.1}s after the thaw; commits its own port \
         acknowledged after the thaw: {}; what it answered: {on_old_errors:?}",
        thawed.elapsed().as_secs_f64(),
        on_old_acked.len()
    );
    assert!(
        rejoined.is_some(),
        "the thawed leader did not rejoin as a standby: {}",
        c.status()
    );
    assert!(
        writer.wait_for_more(20, Duration::from_secs(30)),
        "writes go on"
    );
    let acked = writer.finish();
    assert_none_lost(endpoint, "f", &acked);
    assert_none_lost(endpoint, "f", &on_old_acked);
    let o = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A tmpfs mounted at `path`, lazily unmounted on drop (before the cluster
/// that uses it is destroyed), also when the test fails.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, bytes: u64, owner: &str) -> Mount {
        let (uid, gid) = owner_ids(owner);
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes},mode=0700,uid={uid},gid={gid}"))
            .arg("tmpfs")
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            o.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Mount {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .output();
    }
}

/// Move the volume of stopped node `address` of `app` onto a tmpfs with
/// `room_mb` MiB free beyond its files: the volume's path and the mount.
fn volume_on_tmpfs(c: &Cluster, app: &str, address: &str, room_mb: u64) -> (PathBuf, Mount) {
    let volume = c
        .state
        .path()
        .join("state/apps")
        .join(app)
        .join("volumes")
        .join(format!("pg_data-{}", node_name(address)));
    let moved = volume.with_extension("before-tmpfs");
    std::fs::rename(&volume, &moved).unwrap();
    std::fs::create_dir(&volume).unwrap();
    let owner = moved.to_string_lossy().to_string();
    let mount = Mount::tmpfs(&volume, du(&moved) + room_mb * 1024 * 1024, &owner);
    let o = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", moved.display()))
        .arg(&volume)
        .output()
        .unwrap();
    assert!(o.status.success(), "cp: {}", text(&o));
    (volume, mount)
}

/// Uid and gid of the owner of `path`.
fn owner_ids(path: &str) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).expect("owner");
    (m.uid(), m.gid())
}

/// Bytes used under `dir`.
fn du(dir: &Path) -> u64 {
    let o = std::process::Command::new("du")
        .args(["-sb"])
        .arg(dir)
        .output()
        .expect("du");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du output")
}

/// Fill the filesystem holding `dir` with file `dir/filler` (dd stops at
/// "No space left on device").
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=1M"])
        .arg(format!("of={}", filler.display()))
        .output()
        .expect("dd");
    let free = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    let left = free.blocks_available() as u64 * free.fragment_size() as u64;
    assert!(left < 1024 * 1024, "{left} bytes left on {}", dir.display());
    filler
}

/// Switch the leader to a new WAL segment `n` times through `port`, so a
/// standby must create new segment files.
fn switch_wal(port: u16, n: usize) {
    current_thread().block_on(async {
        if let Ok(db) = connect(port, "postgres", "postgres").await {
            for _ in 0..n {
                let _ = db
                    .batch_execute(
                        "CREATE TABLE IF NOT EXISTS w (x int); INSERT INTO w VALUES (1); \
                         SELECT pg_switch_wal()",
                    )
                    .await;
            }
        }
    });
}

#[test]
fn a_full_standby_disk_and_lost_sync_standbys_lose_no_commit() {
    let c = Cluster::in_dir(&cluster_text("fp-chain", 3, 1, "{}"), PASSWORD, "chain");
    let (status, endpoint, writer) = apply_and_write(&c, "c");
    let leader = leader_of(&status)["address"].as_str().unwrap().to_string();
    let standbys: Vec<Value> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["address"] != leader.as_str())
        .cloned()
        .collect();
    assert_eq!(standbys.len(), 2, "{status}");

    // 1. A full disk on a standby's volume: the volume moves to a small
    // tmpfs (the node stopped meanwhile), then the tmpfs is filled.
    let full = &standbys[0];
    let full_address = full["address"].as_str().unwrap().to_string();
    procs::kill_trees(&node_pids(full));
    std::thread::sleep(Duration::from_secs(1));
    let (volume, _mount) = volume_on_tmpfs(&c, "fp-chain", &full_address, 128);
    c.apply();
    assert!(
        wait_for_status(&c, Duration::from_secs(60), |st| is_running_standby(node(
            st,
            &full_address
        )))
        .is_some(),
        "the standby runs on its small volume: {}",
        c.status()
    );
    let filler = fill(&volume);
    let filled = Instant::now();
    switch_wal(endpoint, 3);
    assert!(
        writer.wait_for_more(50, Duration::from_secs(60)),
        "writes go on beside a standby with a full disk"
    );
    let st = wait_for_status(&c, Duration::from_secs(30), |st| {
        node(st, &full_address)["health"]["vm"]["status"] == "critical"
    })
    .unwrap_or_else(|| panic!("status names the full disk: {}", c.status()));
    let vm = node(&st, &full_address)["health"]["vm"]["output"].clone();
    assert!(vm.as_str().unwrap().contains("disk 0 MiB free"), "{vm}");
    let o = c.run(&["status"]);
    assert!(text(&o).contains("disk 0 MiB free"), "{}", text(&o));
    eprintln!(
        "full disk: longest write pause {:.1}s; status: {vm}",
        writer.longest_gap(filled, Instant::now()).as_secs_f64()
    );
    // Space back: the standby catches up by itself.
    std::fs::remove_file(&filler).unwrap();
    switch_wal(endpoint, 1);
    assert!(
        wait_for_status(&c, Duration::from_secs(90), |st| {
            let n = node(st, &full_address);
            is_running_standby(n) && n["checks"]["lag_bytes"].as_i64() == Some(0)
        })
        .is_some(),
        "the standby catches up once space is back: {}",
        c.status()
    );

    // 2. Every sync standby lost, once both run as standbys again (the
    // one that caught up may still be restarting PostgreSQL to follow the
    // leader).
    let st = wait_for_status(&c, Duration::from_secs(90), |st| {
        standbys
            .iter()
            .all(|s| is_running_standby(node(st, s["address"].as_str().unwrap())))
    })
    .unwrap_or_else(|| panic!("both standbys run again: {}", c.status()));
    let killed = Instant::now();
    for s in &standbys {
        procs::kill_trees(&node_pids(node(&st, s["address"].as_str().unwrap())));
    }
    // With sync_standbys = 1 the leader acknowledges no commit alone:
    // writes wait until a standby is back.
    let went_on = writer.wait_for_more(5, Duration::from_secs(30));
    let o = c.run(&["status"]);
    eprintln!("lost sync standbys: {}", text(&o));
    assert!(
        !went_on,
        "commits acknowledged with no standby running: {:?}",
        writer.first_ack_after(killed + Duration::from_secs(2))
    );
    let applied = Instant::now();
    c.apply();
    assert!(
        writer.wait_for_more(50, Duration::from_secs(60)),
        "writes go on once the standbys are back"
    );
    eprintln!(
        "lost sync standbys: writes resumed {:.1}s after apply started",
        writer.first_ack_after(applied).unwrap().as_secs_f64()
    );
    let o = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let acked = writer.finish();
    assert_none_lost(endpoint, "c", &acked);
}

/// How long the repairing apply after two leader crashes may take before
/// the test calls it hung; apply's own waits end well before.
const REPAIR_WAIT: Duration = Duration::from_secs(300);

/// What the monitor says (nodes, then its latest events) and the end of
/// each keeper's log: the story of a stuck failover.
fn failover_story(c: &Cluster, app: &str) -> String {
    failover_story_of(c, app, 40)
}

/// [`failover_story`] with the monitor's latest `events` events.
fn failover_story_of(c: &Cluster, app: &str, events: usize) -> String {
    let dir = c.state.path().join("state/apps").join(app);
    let mut out = String::new();
    for sql in [
        "select nodename, reportedstate, goalstate, health, reportedpgisrunning, reportedlsn, \
         reporttime from pgautofailover.node order by nodeid"
            .to_string(),
        format!(
            "select * from (select eventtime, nodename, reportedstate, goalstate, reportedlsn, \
             description from pgautofailover.event order by eventid desc limit {events}) e \
             order by eventtime"
        ),
    ] {
        out += &text(&monitor_psql(c, app, &[], &sql));
    }
    for e in std::fs::read_dir(dir.join("logs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let log = std::fs::read_to_string(e.path()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        out += &format!("\n== {}\n", e.path().display());
        for l in tail.iter().rev() {
            out += l;
            out += "\n";
        }
    }
    out
}

/// `psql` with `args` on the monitor of `app` (as the service user, over
/// its socket) running `sql`.
fn monitor_psql(c: &Cluster, app: &str, args: &[&str], sql: &str) -> std::process::Output {
    let dir = c.state.path().join("state/apps").join(app);
    let ports: Value =
        serde_json::from_slice(&std::fs::read(dir.join("ports.json")).unwrap_or_default())
            .unwrap_or_default();
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--", "psql", "-X", "-h"])
        .arg(dir.join("sock"))
        .args([
            "-p",
            &ports["monitor"].to_string(),
            "-d",
            "pg_auto_failover",
        ])
        .args(args)
        .args(["-c", sql])
        .output()
        .expect("psql runs")
}

/// A connection to the monitor of an app (as the keepers' user, which it
/// trusts on loopback), to follow its nodes' states closely.
struct MonitorConn {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl MonitorConn {
    fn open(c: &Cluster, app: &str) -> MonitorConn {
        let dir = c.state.path().join("state/apps").join(app);
        let ports: Value =
            serde_json::from_slice(&std::fs::read(dir.join("ports.json")).expect("ports.json"))
                .expect("ports");
        let port = ports["monitor"].as_u64().expect("monitor port") as u16;
        let rt = current_thread();
        let client = rt
            .block_on(connect(port, "autoctl_node", "pg_auto_failover"))
            .expect("the monitor answers");
        MonitorConn { rt, client }
    }

    /// Each node: name, reported state, goal.
    fn states(&self) -> Vec<[String; 3]> {
        let sql = "select nodename, reportedstate::text, goalstate::text \
                   from pgautofailover.node order by nodeid";
        self.rt
            .block_on(self.client.query(sql, &[]))
            .expect("the monitor's nodes")
            .iter()
            .map(|r| [r.get(0), r.get(1), r.get(2)])
            .collect()
    }
}

/// Two leader crashes in a row on a running 3-node cluster with
/// `sync_standbys = 1` and a writer: the leader is killed, then the new
/// leader once it is `primary` (its standby caught up) and takes writes.
/// The last node then stays in `report_lsn`, a failover that waits for
/// another quorum node to report, until apply brings one back. (Killed
/// while still `wait_primary`, the last node is promoted at once.) The
/// status of the two dead nodes, the first leader first.
fn crash_two_leaders(c: &Cluster, writer: &Writer) -> (Value, Value) {
    let first = leader_of(&c.status());
    let killed = Instant::now();
    procs::kill_trees(&node_pids(&first));
    assert!(
        writer.wait_for_more(20, Duration::from_secs(90)),
        "no failover after the first crash"
    );
    let second = wait_for_status(c, Duration::from_secs(60), |st| {
        st["nodes"].as_array().unwrap().iter().any(|n| {
            n["role"] == "leader"
                && n["address"] != first["address"]
                && n["checks"]["pg_state"] == "primary"
        })
    })
    .map(|st| leader_of(&st))
    .expect("a new leader in primary");
    assert!(
        writer.wait_for_more(5, Duration::from_secs(30)),
        "the new leader takes writes"
    );
    eprintln!(
        "two crashes: first failover, longest write pause {:.1}s",
        writer.longest_gap(killed, Instant::now()).as_secs_f64()
    );
    let killed = Instant::now();
    procs::kill_trees(&node_pids(&second));
    let survived = writer.wait_for_more(20, Duration::from_secs(20));
    eprintln!(
        "two crashes: writes after the second crash without apply: {survived}, longest \
         pause {:.1}s\n{}",
        writer.longest_gap(killed, Instant::now()).as_secs_f64(),
        text(&c.run(&["status"]))
    );
    (first, second)
}

/// `apply --auto-approve` of `c` (app `app`), which must end within
/// [`REPAIR_WAIT`]: its output, and how long it took.
fn bounded_apply(c: &Cluster, app: &str) -> (std::process::Output, Duration) {
    let mut apply = c
        .cmd(&["apply", "--auto-approve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flyplan runs");
    let started = Instant::now();
    while apply.try_wait().unwrap().is_none() {
        if started.elapsed() > REPAIR_WAIT {
            let story = failover_story(c, app);
            let _ = apply.kill();
            let o = apply.wait_with_output().unwrap();
            panic!(
                "the repairing apply did not end in {REPAIR_WAIT:?}: {}\n{story}",
                text(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = apply.wait_with_output().unwrap();
    let took = started.elapsed();
    eprintln!(
        "two crashes: apply took {:.1}s: {}",
        took.as_secs_f64(),
        text(&o)
    );
    (o, took)
}

/// All nodes run, one leader and two standbys, and writes go on.
fn wait_repaired(c: &Cluster, writer: &Writer) {
    wait_for_status(c, Duration::from_secs(60), |st| {
        let nodes = st["nodes"].as_array().unwrap();
        nodes.iter().filter(|n| n["role"] == "leader").count() == 1
            && nodes.iter().filter(|n| is_running_standby(n)).count() == 2
    })
    .unwrap_or_else(|| panic!("one leader and two standbys: {}", c.status()));
    assert!(
        writer.wait_for_more(20, Duration::from_secs(90)),
        "writes after apply repaired both nodes: {:?}",
        writer.errors()
    );
}

/// All nodes run, one leader and two standbys, writes go on, no
/// acknowledged commit is lost and the next plan is empty.
fn assert_repaired(c: &Cluster, endpoint: u16, writer: Writer, table: &str) {
    wait_repaired(c, &writer);
    let acked = writer.finish();
    assert_none_lost(endpoint, table, &acked);
    let o = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn two_leader_crashes_in_a_row_are_repaired_by_one_apply() {
    let c = Cluster::in_dir(&cluster_text("fp-twice", 3, 1, "{}"), PASSWORD, "twice");
    let (_, endpoint, writer) = apply_and_write(&c, "t");
    crash_two_leaders(&c, &writer);
    let (o, _) = bounded_apply(&c, "fp-twice");
    assert!(
        o.status.success(),
        "apply: {}\n{}",
        text(&o),
        failover_story(&c, "fp-twice")
    );
    assert_repaired(&c, endpoint, writer, "t");
}

/// Whether a monitor state is one in which the node takes writes.
fn takes_writes(state: &str) -> bool {
    [
        "wait_primary",
        "primary",
        "join_primary",
        "apply_settings",
        "single",
    ]
    .contains(&state)
}

/// The node of `status` whose name (`iad-1`) is `name`.
fn node_named<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| node_name(n["address"].as_str().unwrap_or_default()) == name)
        .unwrap_or_else(|| panic!("no node {name} in {status}"))
}

/// What became of a second leader killed while still `wait_primary`.
struct WaitPrimaryRun {
    second: String,
    /// The monitor's nodes (name, reported state, goal) at the second kill.
    at_kill: Vec<[String; 3]>,
    /// The second leader was seen reporting `wait_primary`.
    seen_wait_primary: bool,
    /// When the monitor gave the third node a leader's goal, after the
    /// second kill, within the 20 s watched without apply.
    promoted: Option<Duration>,
    /// Commits acknowledged by the second leader, and in the 20 s without
    /// apply after its crash.
    by_second: usize,
    without_apply: usize,
    /// Acknowledged commits lost: before the first crash, acknowledged by
    /// the second leader, after its crash before apply, after apply.
    lost: [Vec<i32>; 4],
    /// What the repairing apply said.
    apply: String,
    /// Apply succeeded and the cluster was checked (otherwise `lost` is
    /// empty: nothing was read back).
    repaired: bool,
}

/// When the second leader is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KillAt {
    /// As soon as it reports `wait_primary` and has acknowledged a commit.
    WaitPrimary,
    /// Once the third node also reports `secondary` (it follows the new
    /// leader, asynchronously) while the new leader is still
    /// `wait_primary`, the monitor's goal too.
    Followed,
    /// The same, the third node's WAL receiver stopped (SIGSTOP) first
    /// while the leader acknowledges up to three more commits: a follower
    /// that lags, as a loaded or distant one does.
    FollowedLagging,
}

/// On 3 nodes with `sync_standbys = 1` and a writer through the endpoint:
/// kill the leader, then the new leader once it reports `wait_primary`
/// (promoted, no standby follows it yet, so it commits alone) and has
/// acknowledged a commit, or later as `at` says. Then 20 s without apply,
/// apply, and every acknowledged commit checked; the next plan must be
/// empty.
fn second_leader_killed_in_wait_primary(app: &str, at: KillAt) -> WaitPrimaryRun {
    let late = at != KillAt::WaitPrimary;
    let c = Cluster::in_dir(&cluster_text(app, 3, 1, "{}"), PASSWORD, app);
    let (status, endpoint, writer) = apply_and_write(&c, "w");
    let first = leader_of(&status);
    let first_name = node_name(first["address"].as_str().unwrap());
    let monitor = MonitorConn::open(&c, app);
    let n1 = writer.acked();
    let killed = Instant::now();
    procs::kill_trees(&node_pids(&first));
    let mut seen_wait_primary = false;
    let (second, at_kill) = loop {
        let states = monitor.states();
        let leader = states
            .iter()
            .find(|[n, r, _]| *n != first_name && takes_writes(r));
        if let Some([n, r, g]) = leader {
            seen_wait_primary |= r == "wait_primary";
            let third_follows = states.iter().any(|[o, r, g]| {
                o != n && *o != first_name && r == "secondary" && g == "secondary"
            });
            assert!(
                !late || (r == "wait_primary" && g == "wait_primary"),
                "the new leader left wait_primary before the third node reported secondary: \
                 {states:?}"
            );
            if writer.acked() > n1 && (!late || third_follows) {
                break (n.clone(), states);
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "no new leader taking writes: {states:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let third = at_kill
        .iter()
        .map(|[n, _, _]| n.clone())
        .find(|n| *n != first_name && *n != second)
        .expect("a third node");
    let receiver: std::collections::BTreeSet<i32> = if at == KillAt::FollowedLagging {
        let tree = procs::tree_of(&node_pids(node_named(&status, &third))[..1]);
        let receiver = tree
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("walreceiver"))
            })
            .collect();
        procs::signal_all(&receiver, Signal::SIGSTOP);
        writer.wait_for_more(3, Duration::from_secs(2));
        receiver
    } else {
        Default::default()
    };
    procs::kill_trees(&node_pids(node_named(&status, &second)));
    procs::signal_all(&receiver, Signal::SIGCONT);
    let second_killed = Instant::now();
    // An answer already on its way is read after the kill: still the dead
    // leader's. No other node is promoted this soon (the monitor needs
    // more than 1 s to notice the crash).
    std::thread::sleep(Duration::from_millis(500));
    let n2 = writer.acked();
    eprintln!("wait_primary: stopped WAL receiver of {third}: {receiver:?}");
    let mut promoted = None;
    let mut third_states = Vec::new();
    while second_killed.elapsed() < Duration::from_secs(20) {
        for [n, r, g] in monitor.states() {
            if n != third {
                continue;
            }
            if promoted.is_none() && takes_writes(&g) {
                promoted = Some(second_killed.elapsed());
            }
            let st = format!("{r}/{g}");
            if third_states.last() != Some(&st) {
                third_states.push(st);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let n3 = writer.acked();
    eprintln!(
        "wait_primary: monitor at the second kill ({:.1}s after the first): {at_kill:?}; \
         third node {third} since: {third_states:?}\n{}",
        (second_killed - killed).as_secs_f64(),
        failover_story_of(&c, app, 60)
    );
    let (o, _) = bounded_apply(&c, app);
    let mut run = WaitPrimaryRun {
        second,
        at_kill,
        seen_wait_primary,
        promoted,
        by_second: n2 - n1,
        without_apply: n3 - n2,
        lost: Default::default(),
        apply: text(&o),
        repaired: false,
    };
    if !o.status.success() && at == KillAt::FollowedLagging {
        eprintln!("wait_primary: apply failed\n{}", failover_story(&c, app));
        return run;
    }
    assert!(
        o.status.success(),
        "apply: {}\n{}",
        text(&o),
        failover_story(&c, app)
    );
    wait_repaired(&c, &writer);
    let acked = writer.finish();
    let rows = faults::rows_of(endpoint, "w");
    let lost = |range: std::ops::Range<usize>| -> Vec<i32> {
        acked[range]
            .iter()
            .copied()
            .filter(|i| !rows.contains(i))
            .collect()
    };
    run.lost = [
        lost(0..n1),
        lost(n1..n2),
        lost(n2..n3),
        lost(n3..acked.len()),
    ];
    run.repaired = true;
    eprintln!(
        "wait_primary: outcome ({at:?}): second leader {} seen in wait_primary: {}, \
         killed {:.1}s after the first; third node promoted without apply: {:?}; commits \
         without apply: {}; acknowledged by the second leader: {}; lost (before the first \
         crash, by the second leader, without apply, after apply): {:?}",
        run.second,
        run.seen_wait_primary,
        (second_killed - killed).as_secs_f64(),
        run.promoted.map(|d| format!("{:.1}s", d.as_secs_f64())),
        run.without_apply,
        run.by_second,
        run.lost.each_ref().map(Vec::len),
    );
    let o = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    run
}

/// Two leader crashes in a row, the second as soon as the new leader
/// reports `wait_primary` and has acknowledged a commit. Mostly the third
/// node is still on its way to follow the new leader (`join_secondary`)
/// and is not promoted: writes stop until apply, which starts the dead
/// leader first (the monitor still holds it as the leader); it comes back
/// as the leader with every commit it acknowledged alone and the others
/// follow it. When the third node reports `secondary` before the monitor
/// notices the crash, pg_auto_failover 2.0 promotes it at once (its
/// two-node rule: the dead leader is `wait_primary`, so it is not drained
/// for an election) and writes resume without apply; then only commits
/// the dead leader acknowledged alone can be lost (those the third node
/// had not received), never others.
#[test]
fn a_second_leader_killed_while_wait_primary() {
    let run = second_leader_killed_in_wait_primary("fp-waitp", KillAt::WaitPrimary);
    assert!(
        run.seen_wait_primary,
        "the second leader was killed in wait_primary: {:?}",
        run.at_kill
    );
    let [before, by_second, without_apply, after] = &run.lost;
    assert!(
        before.is_empty() && without_apply.is_empty() && after.is_empty(),
        "acknowledged commits lost: before the first crash {before:?}, without apply \
         {without_apply:?}, after apply {after:?}"
    );
    if run.promoted.is_some() {
        assert!(
            run.without_apply > 0,
            "the promoted third node takes writes"
        );
    } else {
        assert!(
            by_second.is_empty(),
            "commits the wait_primary leader acknowledged lost: {by_second:?}"
        );
        assert_eq!(run.without_apply, 0, "no write is acknowledged until apply");
        assert!(
            run.apply.contains(&format!(
                "machine {}: the monitor's leader is stopped; starting it before",
                run.second
            )),
            "apply brings back the dead leader first: {}",
            run.apply
        );
    }
}

/// The same, the second leader killed once the third node reports
/// `secondary` but before the monitor moves the leader on to `primary`
/// (up to one keeper report, about 1 s). Ignored: a probe of that window.
#[test]
#[ignore = "probe: run with --run-ignored only"]
fn a_second_leader_killed_while_wait_primary_with_a_follower() {
    let run = second_leader_killed_in_wait_primary("fp-waitp2", KillAt::Followed);
    assert!(
        run.lost.iter().all(Vec::is_empty),
        "acknowledged commits lost (before the first crash, by the wait_primary leader, \
         without apply, after apply): {:?}",
        run.lost
    );
}

/// The second dead leader comes back on a full disk: its keeper runs and
/// reports, but cannot restart postgres to report its LSN, so the failover
/// would wait for it for ever. Apply drops it from the election, the other
/// two elect a leader, and apply ends naming the node; once the disk has
/// room the next apply makes it again as a standby. Ignored in the default
/// run for its length (about 150 s on a loaded machine); the decision is
/// unit-tested in `provider::local::rejoin`.
#[test]
#[ignore = "long: run with --run-ignored only"]
fn after_two_leader_crashes_a_node_that_cannot_report_is_dropped_from_the_election() {
    let c = Cluster::in_dir(&cluster_text("fp-full2", 3, 1, "{}"), PASSWORD, "full2");
    let (_, endpoint, writer) = apply_and_write(&c, "u");
    let (_, second) = crash_two_leaders(&c, &writer);
    let address = second["address"].as_str().unwrap().to_string();
    let (volume, _mount) = volume_on_tmpfs(&c, "fp-full2", &address, 16);
    let filler = fill(&volume);
    let before = writer.acked();
    let (o, _) = bounded_apply(&c, "fp-full2");
    let said = text(&o);
    let dropped = format!("machine {}: stuck in ", node_name(&address));
    assert!(
        said.contains(&dropped) && said.contains("cannot report its LSN"),
        "apply names the node that held up the failover and what it did: {said}"
    );
    assert!(
        !said.contains("timed out"),
        "apply waited for a node out its whole time: {said}"
    );
    assert!(
        writer.wait_for_more(20, Duration::from_secs(60)),
        "the other two elect a leader: {}\n{}",
        c.status()["nodes"],
        failover_story(&c, "fp-full2")
    );
    assert!(writer.acked() > before);
    std::fs::remove_file(&filler).unwrap();
    let (o, _) = bounded_apply(&c, "fp-full2");
    assert!(o.status.success(), "apply with room again: {}", text(&o));
    assert_repaired(&c, endpoint, writer, "u");
}

/// `flyplan watch` of a repository on the cluster's state dir, its standard
/// error in a file; killed on drop (before the cluster is destroyed).
struct Watch {
    child: std::process::Child,
    log: PathBuf,
}

impl Watch {
    fn start(c: &Cluster, repo: &str, interval: &str) -> Watch {
        let log = c.state.path().join("watch.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(c.state.path().join("state"))
            .args(["watch", "--repo", repo, "--interval", interval])
            .env("PG_PASSWORD", PASSWORD)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("flyplan watch starts");
        Watch { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log has a line with every one of `needles`.
    fn wait_for_line(&self, needles: &[&str], within: Duration) -> Option<String> {
        self.wait_for_lines(needles, 1, within)
    }

    /// Wait until the log has `n` lines with every one of `needles`; the
    /// last of them.
    fn wait_for_lines(&self, needles: &[&str], n: usize, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            let found: Vec<&str> = log
                .lines()
                .filter(|l| needles.iter().all(|n| l.contains(n)))
                .collect();
            if found.len() >= n {
                return found.last().map(|l| l.to_string());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `flyplan watch --repo REPO FLAG` (`--suspend`, `--resume`).
fn watch_switch(c: &Cluster, repo: &str, flag: &str) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--state-dir")
        .arg(c.state.path().join("state"))
        .args(["watch", "--repo", repo, flag])
        .output()
        .unwrap();
    assert!(o.status.success(), "watch {flag}: {}", text(&o));
}

#[test]
fn watch_brings_back_killed_nodes_monitor_and_endpoint_and_names_stuck_nodes() {
    let config = cluster_text("fp-watch", 2, 0, "{ ams = 1 }");
    let c = Cluster::in_dir(&config, PASSWORD, "watched");
    let repo = watch_common::Repo::new();
    repo.commit(&[("fly.toml", &config)], "a watched cluster");
    let url = repo.url();
    let interval = Duration::from_secs(5);
    let watch = Watch::start(&c, &url, "5s");

    // While the watch creates the cluster, it holds the app's apply lock:
    // an apply by hand is refused, naming the holder.
    let app_json = c.state.path().join("state/apps/fp-watch/app.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !app_json.exists() {
        assert!(
            Instant::now() < deadline,
            "the watch applies: {}",
            watch.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = c.run(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("another apply"), "{}", text(&o));
    let st = wait_for_status(&c, Duration::from_secs(420), |st| {
        st["nodes"].as_array().is_some_and(|n| {
            n.len() == 3
                && n.iter().filter(|n| n["state"] == "running").count() == 3
                && n.iter().any(|n| n["role"] == "leader")
        }) && st["endpoint"]["state"] == "running"
    })
    .unwrap_or_else(|| panic!("the watch made the cluster: {}", watch.log()));
    assert!(
        watch
            .wait_for_line(&["applied"], Duration::from_secs(60))
            .is_some(),
        "{}",
        watch.log()
    );
    let endpoint = port_of(&st["endpoint"]);
    create_table(endpoint, "w");
    let writer = Writer::start(endpoint, "w");
    assert!(writer.wait_for_more(20, Duration::from_secs(30)), "writes");

    // Suspended, the watch heals nothing: a killed standby and read
    // replica stay down, and the watch names the state they are stuck in.
    watch_switch(&c, &url, "--suspend");
    let killed: Vec<Value> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] != "leader")
        .cloned()
        .collect();
    assert_eq!(killed.len(), 2, "{st}");
    for n in &killed {
        procs::kill_trees(&node_pids(n));
    }
    let line = watch
        .wait_for_line(&["stuck in"], Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no stuck node named: {}", watch.log()));
    eprintln!("watch: {line}");
    let o = c.run(&["status"]);
    assert!(text(&o).contains("stuck in"), "{}", text(&o));

    // Resumed, it brings both back as standbys within its interval plus
    // the apply.
    let resumed = Instant::now();
    watch_switch(&c, &url, "--resume");
    let back = wait_for_status(&c, interval + Duration::from_secs(120), |st| {
        killed.iter().all(|k| {
            let n = node(st, k["address"].as_str().unwrap());
            n["state"] == "running" && n["checks"]["pg_state"] == "secondary"
        })
    });
    assert!(
        back.is_some(),
        "the killed nodes are back: {}\n{}",
        c.status(),
        watch.log()
    );
    eprintln!(
        "watch: killed standby and read replica back {:.1}s after resume",
        resumed.elapsed().as_secs_f64()
    );
    assert!(
        watch
            .wait_for_lines(&["applied (drift)"], 1, Duration::from_secs(240))
            .is_some(),
        "the watch's repair finishes: {}",
        watch.log()
    );
    eprintln!(
        "watch: the repair of both nodes recorded {:.1}s after resume",
        resumed.elapsed().as_secs_f64()
    );

    // A killed monitor and endpoint come back without a human.
    let app_dir = c.state.path().join("state/apps/fp-watch");
    let mut pids = pids_mentioning(&app_dir.join("monitor"));
    pids.extend(pids_mentioning(&app_dir.join("haproxy/haproxy.cfg")));
    assert!(pids.len() >= 2, "monitor and haproxy: {pids:?}");
    let killed_at = Instant::now();
    procs::kill_trees(&pids);
    assert!(
        watch
            .wait_for_lines(&["applied (drift)"], 2, interval + Duration::from_secs(90))
            .is_some(),
        "the watch repairs the monitor and endpoint: {}",
        watch.log()
    );
    let back = wait_for_status(&c, Duration::from_secs(30), |st| {
        st["monitor_reachable"] == true
            && st["endpoint"]["state"] == "running"
            && st.get("automatic_failover").is_none()
    });
    assert!(
        back.is_some(),
        "monitor and endpoint are back: {}\n{}",
        c.status(),
        watch.log()
    );
    eprintln!(
        "watch: killed monitor and endpoint back {:.1}s after the kill",
        killed_at.elapsed().as_secs_f64()
    );
    assert!(
        writer.wait_for_more(20, Duration::from_secs(60)),
        "writes through the endpoint again"
    );
    let acked = writer.finish();
    drop(watch);
    assert_none_lost(endpoint, "w", &acked);
}

#[test]
fn a_monitor_killed_while_apply_waits_for_a_node_ends_that_apply_and_the_next_heals_all() {
    let c = Cluster::in_dir(&cluster_text("fp-midway", 2, 0, "{}"), PASSWORD, "midway");
    let (st, endpoint, writer) = apply_and_write(&c, "m");
    let standby = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] != "leader")
        .cloned()
        .expect("a standby");
    let name = node_name(standby["address"].as_str().unwrap());
    let app_dir = c.state.path().join("state/apps/fp-midway");
    let pidfile = app_dir.join("machines").join(format!("{name}.pid"));
    let old_pid = std::fs::read_to_string(&pidfile).unwrap();
    procs::kill_trees(&node_pids(&standby));

    // The repair starts the standby's keeper and waits for it to rejoin;
    // the monitor is killed in that wait.
    let apply = c.cmd(&["apply", "--auto-approve"]).output_in_background();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&pidfile).unwrap_or_default() == old_pid {
        assert!(
            Instant::now() < deadline,
            "the repair never started the node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Instant::now();
    procs::kill_trees(&pids_mentioning(&app_dir.join("monitor")));
    let o = apply.join().unwrap();
    let took = killed.elapsed();
    eprintln!(
        "monitor killed mid-repair: apply ended {:.1}s after the kill: {}",
        took.as_secs_f64(),
        text(&o)
    );
    assert!(
        took < Duration::from_secs(60),
        "the apply waited for a node with no monitor: {}",
        text(&o)
    );
    // The next apply starts the monitor and finishes the repair.
    c.apply();
    assert!(
        wait_for_status(&c, Duration::from_secs(60), |st| {
            st["monitor_reachable"] == true
                && is_running_standby(node(st, standby["address"].as_str().unwrap()))
        })
        .is_some(),
        "{}",
        c.status()
    );
    let o = c.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(writer.wait_for_more(20, Duration::from_secs(30)), "writes");
    let acked = writer.finish();
    assert_none_lost(endpoint, "m", &acked);
}

/// A command's output, collected on a thread.
trait Background {
    fn output_in_background(self) -> std::thread::JoinHandle<std::process::Output>;
}

impl Background for std::process::Command {
    fn output_in_background(mut self) -> std::thread::JoinHandle<std::process::Output> {
        std::thread::spawn(move || self.output().expect("flyplan runs"))
    }
}

/// The same with a follower that lags: the third node's WAL receiver is
/// stopped while the `wait_primary` leader acknowledges more commits,
/// then the leader is killed. Ignored: a probe of that window.
#[test]
#[ignore = "probe: run with --run-ignored only"]
fn a_second_leader_killed_while_wait_primary_with_a_lagging_follower() {
    let run = second_leader_killed_in_wait_primary("fp-waitp3", KillAt::FollowedLagging);
    if !run.repaired {
        // The leader died on its way to `primary` (its goal), the third
        // node in `report_lsn`: the election waits for the dead leader,
        // which is not asked to report. Apply must end, not rebuild from
        // the dead leader.
        assert!(
            run.apply
                .contains("the formation has no leader to make it again from"),
            "{}",
            run.apply
        );
        return;
    }
    let [before, by_second, without_apply, after] = &run.lost;
    assert!(
        before.is_empty() && without_apply.is_empty() && after.is_empty(),
        "acknowledged commits lost: before the first crash {before:?}, without apply \
         {without_apply:?}, after apply {after:?}"
    );
    assert!(
        by_second.is_empty(),
        "commits the wait_primary leader acknowledged lost: {by_second:?}"
    );
}

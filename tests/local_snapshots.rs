//! Snapshots on the local provider against real servers, through the CLI:
//! the daily schedule with the clock moved day by day (by `flyplan
//! snapshots run` and by `flyplan watch`), the policy in the plan, restore
//! into a new app with exactly the rows committed before the snapshot, and
//! a corrupted snapshot refused. Every app is destroyed when a test ends,
//! passed or not; snapshots go with the temporary state dir.

#[path = "watch_common/mod.rs"]
mod watch_common;

#[path = "support/cluster.rs"]
mod cluster;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::text;

use flyplan::provider::local::LocalProvider;
use serde_json::Value;

const PASSWORD: &str = "snapshot-test-Password-41";

/// A state dir the `postgres` user can reach, with fly.toml files of the
/// test's apps; every app of it is destroyed on drop.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let found = Path::new("/usr/bin/pg_autoctl").exists()
            && Path::new("/usr/lib/postgresql/15/bin/pg_basebackup").exists();
        assert!(
            found,
            "pg_autoctl or PostgreSQL 15 is missing: run scripts/install-deps.sh (as root) first"
        );
        Place {
            dir: cluster::state_dir("flyplan-snap-"),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Write `<name>/fly.toml`.
    fn config(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fly.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flyplan"));
        c.arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("PG_PASSWORD", PASSWORD)
            .env("NO_COLOR", "1")
            .env_remove("FLYPLAN_NOW");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("flyplan runs")
    }

    /// Run and require success.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "flyplan {args:?}: {}", text(&o));
        text(&o)
    }

    /// `flyplan snapshots run` at `now`.
    fn run_at(&self, config: &Path, now: &str) -> String {
        let o = self
            .cmd(&["snapshots", "run", "-c", config.to_str().unwrap()])
            .env("FLYPLAN_NOW", now)
            .output()
            .unwrap();
        assert!(o.status.success(), "snapshots run at {now}: {}", text(&o));
        text(&o)
    }

    fn list(&self, app: &str) -> Vec<Value> {
        let out = self.run(&["snapshots", "list", "-a", app, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("list JSON")
    }

    fn status(&self, config: &Path) -> Value {
        let o = self.run(&["status", "--json", "-c", config.to_str().unwrap()]);
        assert!(o.status.success(), "status: {}", text(&o));
        serde_json::from_slice(&o.stdout).expect("status JSON")
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let Ok(provider) = LocalProvider::new(self.state()) else {
            return;
        };
        for app in std::fs::read_dir(self.state().join("apps"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let app = app.file_name().to_string_lossy().into_owned();
            if let Err(e) = provider.destroy_all(&app) {
                eprintln!("cleanup of {app} failed: {e}");
            }
        }
    }
}

fn fly_toml(app: &str, instances: u32, extra_mount: &str) -> String {
    format!(
        r#"app = "{app}"
primary_region = "iad"

[postgres]
  instances = {instances}
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = {{ from_env = "PG_PASSWORD" }}

[[mounts]]
  source = "pg_data"
  destination = "/data"
{extra_mount}
"#
    )
}

fn days(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|m| m["taken_at"].as_str().unwrap()[..10].to_string())
        .collect()
}

async fn connect(port: u16) -> tokio_postgres::Client {
    cluster::connect(port, PASSWORD)
        .await
        .expect("connect through the endpoint")
}

fn endpoint_port(status: &Value) -> u16 {
    status["endpoint"]["port"].as_u64().expect("endpoint port") as u16
}

#[test]
fn one_snapshot_a_day_is_taken_on_schedule_and_the_count_settles_at_the_retention() {
    let place = Place::new();
    let app = "snap-daily";
    let config = place.config(
        app,
        &fly_toml(
            app,
            1,
            "  snapshot_retention = 2\n  snapshot_time = \"03:00\"",
        ),
    );
    let c = config.to_str().unwrap();
    place.ok(&["apply", "--auto-approve", "-c", c]);

    // Before the day's snapshot time nothing is due.
    let out = place.run_at(&config, "2026-11-01T02:00:00Z");
    assert!(out.contains("no snapshot due"), "{out}");
    assert!(place.list(app).is_empty());

    // Day by day, two runs a day: one snapshot a day, never more than the
    // retention (2), oldest removed first.
    for (day, want) in [
        ("01", vec!["2026-11-01"]),
        ("02", vec!["2026-11-01", "2026-11-02"]),
        ("03", vec!["2026-11-02", "2026-11-03"]),
    ] {
        let out = place.run_at(&config, &format!("2026-11-{day}T10:00:00Z"));
        assert!(out.contains("taken"), "{out}");
        let out = place.run_at(&config, &format!("2026-11-{day}T18:30:00Z"));
        assert!(!out.contains("taken"), "second run of the day: {out}");
        let list = place.list(app);
        assert_eq!(days(&list), want, "after day {day}: {list:?}");
    }

    // Each snapshot is a verified copy with our manifest; it holds no
    // secret and only its owner (and root) can read it.
    let list = place.list(app);
    let first = &list[0];
    assert_eq!(first["app"], app);
    assert_eq!(first["volume"], "pg_data");
    assert_eq!(first["pg_version"], "15");
    assert_eq!(first["trigger"], "scheduled");
    assert!(first["size_bytes"].as_u64().unwrap() > 1_000_000, "{first}");
    assert!(first["checksum"].as_str().unwrap().starts_with("sha256:"));
    let id = first["id"].as_str().unwrap();
    let dir = place.state().join("snapshots").join(app).join(id);
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    let out = place.ok(&["snapshots", "verify", id]);
    assert!(out.contains("is intact"), "{out}");
    for f in [
        dir.join("snapshot.json"),
        place
            .state()
            .join("snapshots")
            .join(app)
            .join("snapshots.log"),
    ] {
        let body = std::fs::read_to_string(&f).unwrap();
        assert!(!body.contains(PASSWORD), "secret in {}", f.display());
    }

    // The reconcile loop takes the day's snapshot after its pass.
    let repo = watch_common::Repo::new();
    repo.commit(
        &[("fly.toml", &std::fs::read_to_string(&config).unwrap())],
        "cluster",
    );
    let o = place
        .cmd(&["watch", "--repo", &repo.url(), "--once"])
        .env("FLYPLAN_NOW", "2026-11-04T09:00:00Z")
        .output()
        .unwrap();
    assert!(o.status.success(), "watch --once: {}", text(&o));
    assert_eq!(
        days(&place.list(app)),
        ["2026-11-03", "2026-11-04"],
        "{}",
        text(&o)
    );
    let o = place.run(&["watch", "--repo", &repo.url(), "--status", "--json"]);
    let st: Value = serde_json::from_slice(&o.stdout).expect("watch status");
    let snapshots = st["commits"][0]["plans"][0]["snapshots"].to_string();
    assert!(
        snapshots.contains("took snap-snap-daily-pg_data-20261104T090000Z"),
        "{st}"
    );

    // A shorter retention and scheduling off are changes of the plan.
    let edited = std::fs::read_to_string(&config).unwrap().replace(
        "snapshot_retention = 2",
        "snapshot_retention = 1\n  scheduled_snapshots = false",
    );
    std::fs::write(&config, edited).unwrap();
    let o = place.run(&["plan", "--detailed-exitcode", "-c", c]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let plan = text(&o);
    assert!(plan.contains("~ snapshot_policy.pg_data"), "{plan}");
    assert!(plan.contains("retention_days = 2 -> 1"), "{plan}");
    assert!(
        plan.lines()
            .any(|l| l.contains("~ scheduled") && l.ends_with("= true -> false")),
        "{plan}"
    );
    place.ok(&["apply", "--auto-approve", "-c", c]);

    // Days later: nothing is taken, expired ones go, the newest stays.
    let out = place.run_at(&config, "2026-11-09T10:00:00Z");
    assert!(out.contains("pruned"), "{out}");
    assert_eq!(days(&place.list(app)), ["2026-11-04"]);

    // Destroying the app keeps its snapshots.
    place.ok(&["destroy", "--allow-destroy", "--auto-approve", "-c", c]);
    assert_eq!(place.list(app).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_cluster_holds_exactly_the_rows_committed_before_the_snapshot() {
    let place = Place::new();
    let source = place.config("snap-src", &fly_toml("snap-src", 2, ""));
    let s = source.to_str().unwrap();
    place.ok(&["apply", "--auto-approve", "-c", s]);
    let status = place.status(&source);
    let db = connect(endpoint_port(&status)).await;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, note text);
         INSERT INTO t SELECT i, 'before ' || i FROM generate_series(1, 1000) i;",
    )
    .await
    .unwrap();
    let relation: String = db
        .query_one("SELECT pg_relation_filepath('t')", &[])
        .await
        .unwrap()
        .get(0);

    // Taken on demand from the standby, right after the commit.
    let o = place.run(&["snapshots", "create", "-c", s, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let taken: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0]["trigger"], "on_demand");
    assert_eq!(taken[0]["node_role"], "standby", "{}", taken[0]);
    let id = taken[0]["id"].as_str().unwrap().to_string();
    db.batch_execute(
        "INSERT INTO t SELECT i, 'after ' || i FROM generate_series(1001, 1100) i;
         UPDATE t SET note = 'changed after' WHERE id = 1;",
    )
    .await
    .unwrap();
    drop(db);

    // A snapshot restores only into a new app.
    let o = place.run(&["snapshots", "restore", &id, "-c", s, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));

    // The source is gone; its snapshot seeds a new 2-node cluster.
    place.ok(&["destroy", "--allow-destroy", "--auto-approve", "-c", s]);
    let restored = place.config(
        "snap-restored",
        &format!(
            "{}\n",
            fly_toml("snap-restored", 2, "").replace(
                "operator_password = \"PG_PASSWORD\"",
                &format!("operator_password = \"PG_PASSWORD\"\n  restore_from = \"{id}\"")
            )
        ),
    );
    let r = restored.to_str().unwrap();
    let out = place.ok(&["apply", "--auto-approve", "-c", r]);
    assert!(!out.contains(PASSWORD), "{out}");
    let status = place.status(&restored);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{status}");
    assert_eq!(
        nodes.iter().filter(|n| n["role"] == "leader").count(),
        1,
        "{status}"
    );
    assert!(nodes.iter().all(|n| n["state"] == "running"), "{status}");
    let o = place.run(&["plan", "--detailed-exitcode", "-c", r]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    let db = connect(endpoint_port(&status)).await;
    let rows = db
        .query("SELECT id, note FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(i32, String)> = (1..=1000).map(|i| (i, format!("before {i}"))).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "rows committed after the snapshot leaked in"
    );
    assert_eq!(got, want);
    assert!(
        !db.query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get::<_, bool>(0),
        "the restored leader accepts writes"
    );
    db.execute("INSERT INTO t VALUES (5000, 'new cluster')", &[])
        .await
        .unwrap();

    // A corrupted file is found by verification and the restore refused.
    let file = place
        .state()
        .join("snapshots/snap-src")
        .join(&id)
        .join("data")
        .join(&relation);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    let o = place.run(&["snapshots", "verify", &id]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rel = format!("data/{relation}");
    assert!(
        text(&o).contains(&format!("{rel}: SHA-256 mismatch")),
        "{}",
        text(&o)
    );
    let third = place.config("snap-third", &fly_toml("snap-third", 1, ""));
    let o = place.run(&[
        "apply",
        "--auto-approve",
        "-c",
        third.to_str().unwrap(),
        "--snapshot-id",
        &id,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains(&format!("refusing to restore from snapshot {id}")),
        "{msg}"
    );
    assert!(msg.contains(&rel), "{msg}");
    assert!(
        !place.state().join("apps/snap-third/app.json").exists(),
        "nothing of the app was made"
    );
}

//! Continuous backups on the local provider against real servers and a
//! real S3-compatible server (moto, on loopback), through the CLI: WAL
//! archived by barman-cloud from whichever node leads, across a failover; a
//! base backup from the standby; a restore to a time holding exactly the
//! rows committed before it, and one to the latest WAL holding them all;
//! archiving changed by hand is drift; the store is read back with
//! barman-cloud invoked exactly as postgres-flex invokes it. Every app is
//! destroyed and moto stopped when the test ends, passed or not.

#[path = "support/procs.rs"]
mod procs;
#[path = "support/s3.rs"]
mod s3;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use flyplan::provider::local::LocalProvider;
use serde_json::Value;

const PASSWORD: &str = "backup-test-Password-57";
const BUCKET: &str = "pg-backups";

struct Place {
    dir: tempfile::TempDir,
    store: s3::ObjectStore,
}

impl Place {
    fn new() -> Place {
        assert!(
            Path::new("/usr/bin/pg_autoctl").exists()
                && Path::new("/usr/bin/barman-cloud-backup").exists(),
            "pg_autoctl or barman-cloud is missing: run scripts/install-deps.sh (as root) first"
        );
        let dir = tempfile::Builder::new()
            .prefix("flyplan-bk-")
            .tempdir_in("/tmp")
            .expect("state dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = s3::ObjectStore::start();
        store.create_bucket(BUCKET);
        Place { dir, store }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fly.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("PG_PASSWORD", PASSWORD)
            .env("S3_URL", self.store.url(BUCKET, "bk-source"))
            .env("NO_COLOR", "1")
            .env_remove("FLYPLAN_NOW")
            .output()
            .expect("flyplan runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let t = text(&o);
        assert!(o.status.success(), "flyplan {args:?}: {t}");
        assert!(!t.contains(s3::SECRET_KEY), "the store's key leaked: {t}");
        t
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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn source_toml() -> String {
    r#"app = "bk-source"
primary_region = "iad"

[postgres]
  instances = 2
  operator_password = "PG_PASSWORD"

[postgres.backup]
  secret = "S3_ARCHIVE_CONFIG"
  archive_timeout = "5s"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
  S3_ARCHIVE_CONFIG = { from_env = "S3_URL" }
"#
    .to_string()
}

fn restored_toml(app: &str) -> String {
    format!(
        r#"app = "{app}"
primary_region = "iad"

[postgres]
  instances = 1
  operator_password = "PG_PASSWORD"

[postgres.restore]
  backup_secret = "S3_SOURCE"

[secrets]
  PG_PASSWORD = {{ from_env = "PG_PASSWORD" }}
  S3_SOURCE = {{ from_env = "S3_URL" }}
"#
    )
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres connect_timeout=5"
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("connect through the endpoint");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn endpoint_port(status: &Value) -> u16 {
    status["endpoint"]["port"].as_u64().expect("endpoint port") as u16
}

fn leader_of(status: &Value) -> Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == "leader")
        .cloned()
        .unwrap_or_else(|| panic!("no leader: {status}"))
}

/// Rows of `t` as (id, commit-side clock time in microseconds).
async fn rows(port: u16) -> Vec<(i32, String)> {
    let c = connect(port).await;
    c.query(
        "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM t ORDER BY id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn restores_hold_exactly_the_rows_committed_before_the_target() {
    round_trip(false).await;
}

/// The same with the leader's processes killed between T and the last
/// rows, before the segment holding the rows was archived: the restores
/// start right after the last write, so the restore itself has to wait for
/// the new leader to archive its history file, the old timeline's
/// `.partial` and its own first segment.
#[tokio::test(flavor = "multi_thread")]
async fn restores_hold_exactly_the_rows_committed_before_the_target_across_a_failover() {
    round_trip(true).await;
}

async fn round_trip(failover: bool) {
    let place = Place::new();
    let source = place.config("bk-source", &source_toml());
    let src = source.to_str().unwrap();
    place.ok(&["apply", "-c", src, "--auto-approve"]);
    let plan = place.ok(&["plan", "-c", src]);
    assert!(plan.contains("No changes"), "{plan}");

    // A base backup from the standby, listed as postgres-flex lists it.
    let created = place.ok(&["backups", "create", "-c", src, "--json"]);
    let created: Value = serde_json::from_str(created.trim()).expect("create JSON");
    let status = place.status(&source);
    let leader = leader_of(&status);
    assert_ne!(
        created["node"].as_str().unwrap(),
        leader["address"]
            .as_str()
            .unwrap()
            .trim_start_matches("machine[")
            .replace([']', ':'], "-")
            .trim_end_matches('-'),
        "the base backup came from the leader: {created}"
    );
    let backup_id = created["backup_id"].as_str().unwrap().to_string();

    // Rows before T, T, rows after T, a failover, rows after it.
    let port = endpoint_port(&status);
    let db = connect(port).await;
    db.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    )
    .await
    .unwrap();
    for i in 1..=5 {
        db.execute("INSERT INTO t (id) VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let target: String = db
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 6..=10 {
        db.execute("INSERT INTO t (id) VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    // The standby has replayed everything before the leader dies.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = place.status(&source);
        let lag: Vec<i64> = st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["checks"]["lag_bytes"].as_i64().unwrap_or(-1))
            .collect();
        if lag.iter().all(|l| *l == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standby never caught up: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(db);
    if failover {
        let pids: Vec<i32> = ["pid", "postgres_pid"]
            .iter()
            .map(|k| leader["checks"][k].as_i64().expect("leader pid") as i32)
            .collect();
        procs::kill_trees(&pids);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut next = 11;
        while next <= 15 {
            if let Ok(Ok((c, conn))) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_postgres::connect(
                    &format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres connect_timeout=3"),
                    tokio_postgres::NoTls,
                ),
            )
            .await
            {
                tokio::spawn(conn);
                while next <= 15 && c.execute("INSERT INTO t (id) VALUES ($1)", &[&next]).await.is_ok() {
                    next += 1;
                }
            }
            assert!(Instant::now() < deadline, "no leader after the failover");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    } else {
        let db = connect(port).await;
        for i in 11..=15 {
            db.execute("INSERT INTO t (id) VALUES ($1)", &[&i])
                .await
                .unwrap();
        }
    }
    let all = rows(port).await;
    assert_eq!(
        all.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=15).collect::<Vec<_>>()
    );

    // Restore to T: exactly the rows committed before it, row by row.
    let at_t = place.config("bk-at-t", &restored_toml("bk-at-t"));
    let out = place.ok(&[
        "backups",
        "restore",
        "-c",
        at_t.to_str().unwrap(),
        "--target-time",
        &target,
        "--auto-approve",
    ]);
    assert!(out.contains("Apply complete"), "{out}");
    let got = rows(endpoint_port(&place.status(&at_t))).await;
    let before: Vec<(i32, String)> = all
        .iter()
        .filter(|(_, at)| at.as_str() < target.trim_end_matches('Z'))
        .cloned()
        .collect();
    assert_eq!(got, before, "restore to {target}");
    assert_eq!(got.len(), 5);

    // Restore to the latest archived WAL, across the failover: all of them.
    let latest = place.config("bk-latest", &restored_toml("bk-latest"));
    place.ok(&[
        "backups",
        "restore",
        "-c",
        latest.to_str().unwrap(),
        "--auto-approve",
    ]);
    let got = rows(endpoint_port(&place.status(&latest))).await;
    assert_eq!(got, all, "restore to the latest WAL");

    // Archiving went on from the new leader, without failures.
    let st = place.status(&source);
    let archived = st["backups"]["last_archived_wal"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !failover || archived.get(..8) >= Some("00000002"),
        "not archived on the new timeline: {st}"
    );
    assert_eq!(st["backups"]["failed_count"], 0, "{st}");
    assert!(st["backups"]["recoverable_from"].is_string(), "{st}");

    // An existing app is refused.
    let o = place.run(&[
        "backups",
        "restore",
        "-c",
        latest.to_str().unwrap(),
        "--auto-approve",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));

    // Archiving changed by hand on a node is drift that apply restores.
    let db = connect(port).await;
    db.batch_execute("ALTER SYSTEM SET archive_command = '/bin/true'")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let plan = place.ok(&["plan", "-c", src]);
    assert!(plan.contains("~ backup_policy.bk-source"), "{plan}");
    assert!(plan.contains("archiving"), "{plan}");
    db.batch_execute("ALTER SYSTEM RESET archive_command")
        .await
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").await.unwrap();

    // Portability: the store read with barman-cloud exactly as postgres-flex
    // runs it (internal/flypg/barman.go ListBackups and RestoreBackup).
    let creds = place.dir.path().join("aws-credentials");
    std::fs::write(
        &creds,
        format!(
            "[barman]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3::ACCESS_KEY,
            s3::SECRET_KEY
        ),
    )
    .unwrap();
    let endpoint = place.store.endpoint();
    let flex = |program: &str, extra: &[&str]| -> Output {
        let mut args = vec![
            "--cloud-provider",
            "aws-s3",
            "--endpoint-url",
            &endpoint,
            "--profile",
            "barman",
        ];
        args.extend_from_slice(extra);
        Command::new(program)
            .args(&args)
            .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .output()
            .expect("barman-cloud runs")
    };
    let o = flex(
        "barman-cloud-backup-list",
        &["--format", "json", "s3://pg-backups", "bk-source"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        list["backups_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["backup_id"] == backup_id.as_str() && b["status"] == "DONE"),
        "{list}"
    );
    let dest = place.dir.path().join("flex-restore");
    let o = flex(
        "barman-cloud-restore",
        &[
            "s3://pg-backups",
            "bk-source",
            &backup_id,
            dest.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dest.join("PG_VERSION"))
            .unwrap()
            .trim(),
        "15"
    );
    let files: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().any(|f| f == "backup_label"), "{files:?}");

    // Verify: restored into a scratch directory, replayed, amcheck passes.
    let out = place.ok(&["backups", "verify", &backup_id, "-c", src, "--json"]);
    let v: Value = serde_json::from_str(&out).expect("verify JSON");
    assert_eq!(v["method"], "amcheck", "{v}");
    assert!(v["indexes_checked"].as_i64().unwrap() > 0, "{v}");
    assert!(
        !place
            .state()
            .join(format!("apps/bk-source/backup/verify-{backup_id}"))
            .exists(),
        "the scratch directory stayed"
    );
}

#[test]
fn an_unreachable_store_is_an_error_at_plan_time_and_changes_nothing() {
    let place = Place::new();
    let config = place.config("bk-source", &source_toml());
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!(
        "http://{}:{}@127.0.0.1:{closed}/{BUCKET}/bk-source",
        s3::ACCESS_KEY,
        s3::SECRET_KEY
    );
    let cfg = config.to_str().unwrap();
    for args in [
        vec!["plan", "-c", cfg],
        vec!["apply", "-c", cfg, "--auto-approve"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(place.state())
            .args(&args)
            .env("PG_PASSWORD", PASSWORD)
            .env("S3_URL", &url)
            .output()
            .unwrap();
        let t = text(&o);
        assert!(!o.status.success(), "{args:?}: {t}");
        assert!(t.contains("cannot be read"), "{args:?}: {t}");
        assert!(
            t.contains(&format!("127.0.0.1:{closed}/{BUCKET}/bk-source")),
            "{t}"
        );
        assert!(!t.contains(s3::SECRET_KEY), "{t}");
    }
    // The apply lock may leave the app's directory; nothing of the app is
    // made.
    assert!(
        !place.state().join("apps/bk-source/app.json").exists(),
        "a refused apply made the app"
    );
}

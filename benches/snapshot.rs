//! Time and size of a snapshot of a database of at least 1 GB on the local
//! provider, beside a plain `pg_basebackup` of the same node as the floor,
//! and the restore of that snapshot into a new cluster. A 1-node cluster is
//! made with the release binary, filled with `insert ... generate_series`,
//! and destroyed at the end (also when the bench fails).
//!
//! cargo bench --bench snapshot            (FLYPLAN_BENCH_GB=2 for more data)

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

const PASSWORD: &str = "bench-Password-77";

struct Place {
    dir: tempfile::TempDir,
    apps: Vec<String>,
}

impl Place {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config(&mut self, app: &str, extra: &str) -> PathBuf {
        let dir = self.dir.path().join(app);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fly.toml");
        std::fs::write(
            &path,
            format!(
                "app = \"{app}\"\nprimary_region = \"iad\"\n\n[postgres]\n  instances = 1\n  \
                 operator_password = \"PG_PASSWORD\"\n{extra}\n\n[secrets]\n  \
                 PG_PASSWORD = {{ from_env = \"PG_PASSWORD\" }}\n"
            ),
        )
        .unwrap();
        self.apps.push(app.to_string());
        path
    }

    fn flyplan(&self, args: &[&str]) -> Output {
        let o = Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .env("PG_PASSWORD", PASSWORD)
            .env("NO_COLOR", "1")
            .output()
            .expect("flyplan runs");
        assert!(
            o.status.success(),
            "flyplan {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    fn status(&self, config: &Path) -> Value {
        let o = self.flyplan(&["status", "--json", "-c", config.to_str().unwrap()]);
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        for app in self.apps.clone() {
            let config = self.dir.path().join(&app).join("fly.toml");
            let _ = Command::new(env!("CARGO_BIN_EXE_flyplan"))
                .arg("--state-dir")
                .arg(self.state())
                .args(["destroy", "--allow-destroy", "--auto-approve", "-c"])
                .arg(config)
                .env("PG_PASSWORD", PASSWORD)
                .output();
        }
    }
}

fn gib(n: u64) -> f64 {
    n as f64 / (1u64 << 30) as f64
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.len();
            }
        }
    }
    total
}

/// Run a PostgreSQL client program as the `postgres` user when root.
fn pg_program(name: &str) -> Command {
    let mut c = Command::new(Path::new("/usr/lib/postgresql/15/bin").join(name));
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        c.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    c.env_clear()
        .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin");
    c
}

fn timed(mut c: Command) -> f64 {
    let t = Instant::now();
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let want_gb: f64 = std::env::var("FLYPLAN_BENCH_GB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let dir = tempfile::Builder::new()
        .prefix("flyplan-bench-snap-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut place = Place {
        dir,
        apps: Vec::new(),
    };
    let source = place.config("bench-snap", "");
    let t = Instant::now();
    place.flyplan(&["apply", "--auto-approve", "-c", source.to_str().unwrap()]);
    println!(
        "1-node cluster applied in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let status = place.status(&source);
    let endpoint = status["endpoint"]["port"].as_u64().unwrap();
    let node_port = status["nodes"][0]["checks"]["port"].as_u64().unwrap();
    let (db, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={endpoint} user=postgres password={PASSWORD} dbname=postgres"
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    db.batch_execute("CREATE TABLE big (id bigint, payload text)")
        .await
        .unwrap();
    let t = Instant::now();
    let mut next = 1i64;
    let size = loop {
        let size: i64 = db
            .query_one("SELECT pg_database_size('postgres')", &[])
            .await
            .unwrap()
            .get(0);
        if gib(size as u64) >= want_gb {
            break size as u64;
        }
        let batch = 1_000_000i64;
        db.execute(
            "INSERT INTO big SELECT i, md5(i::text) || repeat('x', 180) \
             FROM generate_series($1::bigint, $2::bigint) i",
            &[&next, &(next + batch - 1)],
        )
        .await
        .unwrap();
        next += batch;
    };
    db.batch_execute("CHECKPOINT").await.unwrap();
    println!(
        "loaded {} rows, database {:.2} GiB, in {:.1}s",
        next - 1,
        gib(size),
        t.elapsed().as_secs_f64()
    );

    // The floor: pg_basebackup of the same node, as a snapshot takes it.
    // Rounds alternate with flyplan's snapshot so neither has the page
    // cache to itself.
    let sock = place.state().join("apps/bench-snap/sock");
    let snapshots_dir = place.state().join("snapshots/bench-snap");
    let (mut plain_times, mut verify_times, mut snap_times) = (vec![], vec![], vec![]);
    let mut plain_size = 0;
    let mut last: Option<Value> = None;
    for round in 0..ROUNDS {
        let plain_backup = |plain_size: &mut u64| -> (f64, f64) {
            let plain = place.dir.path().join("plain");
            std::fs::create_dir(&plain).unwrap();
            if nix::unistd::geteuid().is_root() {
                let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
                nix::unistd::chown(&plain, Some(user.uid), Some(user.gid)).unwrap();
            }
            let mut c = pg_program("pg_basebackup");
            c.arg("--host")
                .arg(&sock)
                .args(["--port", &node_port.to_string(), "--username", "postgres"])
                .arg("--pgdata")
                .arg(plain.join("data"))
                .args(["--checkpoint=fast", "--wal-method=stream", "--no-password"]);
            let backup = timed(c);
            let mut c = pg_program("pg_verifybackup");
            c.arg(plain.join("data"));
            let verify = timed(c);
            *plain_size = du(&plain.join("data"));
            std::fs::remove_dir_all(&plain).unwrap();
            (backup, verify)
        };
        let snapshot = |last: &mut Option<Value>| -> f64 {
            // Keep only the last round's snapshot (disk space).
            if let Some(m) = last.as_ref() {
                std::fs::remove_dir_all(snapshots_dir.join(m["id"].as_str().unwrap())).unwrap();
            }
            let t = Instant::now();
            let o = place.flyplan(&[
                "snapshots",
                "create",
                "--json",
                "-c",
                source.to_str().unwrap(),
                "--now",
                &format!("2026-11-2{round}T10:00:00Z"),
            ]);
            let took = t.elapsed().as_secs_f64();
            let taken: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
            *last = Some(taken[0].clone());
            took
        };
        // Alternate which goes first, so neither always finds the other's
        // writeback in progress.
        let (plain, snap) = if round % 2 == 0 {
            let p = plain_backup(&mut plain_size);
            (p, snapshot(&mut last))
        } else {
            let s = snapshot(&mut last);
            (plain_backup(&mut plain_size), s)
        };
        plain_times.push(plain.0);
        verify_times.push(plain.1);
        snap_times.push(snap);
    }
    let m = last.unwrap();
    let id = m["id"].as_str().unwrap().to_string();
    let snap_size = m["size_bytes"].as_u64().unwrap();

    let t = Instant::now();
    let o = place.flyplan(&["snapshots", "verify", &id]);
    let snap_verify = t.elapsed().as_secs_f64();
    assert!(String::from_utf8_lossy(&o.stdout).contains("intact"));

    let restored = place.config("bench-restored", &format!("  restore_from = \"{id}\""));
    let t = Instant::now();
    place.flyplan(&["apply", "--auto-approve", "-c", restored.to_str().unwrap()]);
    let restore = t.elapsed().as_secs_f64();

    println!();
    println!("database size (pg_database_size): {:.2} GiB", gib(size));
    println!(
        "plain pg_basebackup (fast checkpoint, -X stream): {}  median {:.1} s, {:.2} GiB",
        list(&plain_times),
        median(&plain_times),
        gib(plain_size)
    );
    println!(
        "  pg_verifybackup of it: {}  median {:.1} s",
        list(&verify_times),
        median(&verify_times)
    );
    println!(
        "flyplan snapshots create (copy, verify, SHA-256): {}  median {:.1} s, {:.2} GiB, {} files",
        list(&snap_times),
        median(&snap_times),
        gib(snap_size),
        m["files"]
    );
    println!("flyplan snapshots verify: {snap_verify:.1} s");
    println!("flyplan apply of a 1-node cluster from it: {restore:.1} s");
}

const ROUNDS: usize = 4;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

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
    let plain = place.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(&plain, Some(user.uid), Some(user.gid)).unwrap();
    }
    let sock = place.state().join("apps/bench-snap/sock");
    let mut c = pg_program("pg_basebackup");
    c.arg("--host")
        .arg(&sock)
        .args(["--port", &node_port.to_string(), "--username", "postgres"])
        .arg("--pgdata")
        .arg(plain.join("data"))
        .args(["--checkpoint=fast", "--wal-method=stream", "--no-password"]);
    let basebackup = timed(c);
    let mut c = pg_program("pg_verifybackup");
    c.arg(plain.join("data"));
    let verify = timed(c);
    let plain_size = du(&plain.join("data"));
    std::fs::remove_dir_all(&plain).unwrap();

    let t = Instant::now();
    let o = place.flyplan(&[
        "snapshots",
        "create",
        "--json",
        "-c",
        source.to_str().unwrap(),
    ]);
    let snapshot = t.elapsed().as_secs_f64();
    let taken: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let m = &taken[0];
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
    println!(
        "database size (pg_database_size)          {:>8.2} GiB",
        gib(size)
    );
    println!(
        "plain pg_basebackup (fast checkpoint, -X stream)  {basebackup:>6.1} s  {:>6.2} GiB",
        gib(plain_size)
    );
    println!(
        "  + pg_verifybackup                       {:>8.1} s",
        verify
    );
    println!(
        "flyplan snapshots create                  {snapshot:>8.1} s  {:>6.2} GiB  ({} files)",
        gib(snap_size),
        m["files"]
    );
    println!("flyplan snapshots verify                  {snap_verify:>8.1} s");
    println!("flyplan apply (1 node from the snapshot)  {restore:>8.1} s");
}

//! Continuous backups measured side by side on one database, in one run,
//! against the same moto S3 store:
//! - a base backup by flyplan (`flyplan backups create`: barman-cloud-backup,
//!   one stream, no compression, as postgres-flex takes it), by
//!   barman-cloud-backup with `--gzip`, by plain `pg_basebackup` to local
//!   disk, and by pgbackrest (`process-max` 1 and 2, gzip) to the same
//!   bucket through a TLS front (haproxy; pgbackrest speaks only https to
//!   S3);
//! - one WAL segment archived by barman-cloud-wal-archive, with and without
//!   `--gzip` (the archiver runs one such process per segment);
//! - the archive lag under a steady write load: time from a commit to its
//!   segment being archived;
//! - a restore to a target time into a new cluster, with the WAL replay
//!   rate read from the restored server's log.
//!
//! The 16 MiB run is part of the suite and checks that everything runs and
//! the restore holds exactly the rows before the target; the real figures
//! come from the ignored run (FLYPLAN_BENCH_MB, default 1024):
//!
//! cargo nextest run --test backup_bench --run-ignored only --no-capture

#[path = "support/s3.rs"]
mod s3;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PASSWORD: &str = "bench-Password-41";
const BUCKET: &str = "pg-bench";
const APP: &str = "bench-bk";

struct Place {
    dir: tempfile::TempDir,
    store: s3::ObjectStore,
    tls: Option<Child>,
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
                 operator_password = \"PG_PASSWORD\"\n{extra}\n[secrets]\n  \
                 PG_PASSWORD = {{ from_env = \"PG_PASSWORD\" }}\n  \
                 S3_URL = {{ from_env = \"S3_URL\" }}\n"
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
            .env("S3_URL", self.store.url(BUCKET, APP))
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
        if let Some(mut c) = self.tls.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Ok(provider) = flyplan::provider::local::LocalProvider::new(self.state()) {
            for app in &self.apps {
                if let Err(e) = provider.destroy_all(app) {
                    eprintln!("cleanup of {app} failed: {e}");
                }
            }
        }
    }
}

fn mib(n: u64) -> f64 {
    n as f64 / (1u64 << 20) as f64
}

/// A program run as the `postgres` user when root (the servers' user).
fn as_postgres(program: &str) -> Command {
    let mut c = Command::new(program);
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        c.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    c.env_clear()
        .env("PATH", "/usr/lib/postgresql/15/bin:/usr/bin:/bin")
        .env("HOME", "/tmp");
    c
}

fn chown_postgres(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
}

/// CPU seconds (user + system) of every child reaped so far: `cutime`
/// and `cstime` of `/proc/self/stat`, in USER_HZ (100 a second on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the state (field 3), cutime and cstime are fields 16 and 17.
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Run `c` to success; its wall and CPU seconds (its own children's
/// included).
fn timed(c: &mut Command) -> (f64, f64) {
    let cpu = children_cpu();
    let t = Instant::now();
    let o = c.output().unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(
        o.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (wall, children_cpu() - cpu)
}

/// Print a figure as soon as it is measured, and keep it for the summary.
fn say(figures: &mut Vec<String>, figure: String) {
    println!("{figure}");
    figures.push(figure);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// haproxy terminating TLS (a throwaway self-signed certificate) in front
/// of moto: the same store, over https, for pgbackrest.
fn tls_front(dir: &Path, moto_port: u16) -> (Child, u16) {
    let pem = dir.join("s3.pem");
    let key = dir.join("s3.key");
    let crt = dir.join("s3.crt");
    let o = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut both = std::fs::read(&crt).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    let port = free_port();
    let cfg = dir.join("s3-tls.cfg");
    std::fs::write(
        &cfg,
        format!(
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 600s\n  timeout server 600s\n\
             frontend s3\n  bind 127.0.0.1:{port} ssl crt {}\n  default_backend moto\n\
             backend moto\n  server moto 127.0.0.1:{moto_port}\n",
            pem.display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "haproxy TLS front"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, port)
}

async fn connect(port: u16) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=postgres password={PASSWORD} dbname=postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    c
}

/// Append the segment `pg_stat_archiver` last archived to `archived_at`,
/// with the time it was first seen, when it is new.
async fn note_archived(poll: &tokio_postgres::Client, archived_at: &mut Vec<(Instant, String)>) {
    let last: Option<String> = poll
        .query_one("SELECT last_archived_wal FROM pg_stat_archiver", &[])
        .await
        .unwrap()
        .get(0);
    if let Some(last) = last.filter(|l| l.len() == 24) {
        if archived_at.last().is_none_or(|(_, l)| *l != last) {
            archived_at.push((Instant::now(), last));
        }
    }
}

/// The restored server's log line `redo done at ... elapsed: S s` and
/// `redo starts at`: bytes replayed and seconds.
fn replay_from_logs(app_dir: &Path) -> Option<(u64, f64)> {
    let lsn = |t: &str| -> Option<u64> {
        let (hi, lo) = t.trim_end_matches(',').split_once('/')?;
        Some((u64::from_str_radix(hi, 16).ok()? << 32) + u64::from_str_radix(lo, 16).ok()?)
    };
    let mut stack = vec![app_dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            // Server logs only, not data files.
            if p.extension().is_none_or(|x| x != "log") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&p) else {
                continue;
            };
            let start = text
                .lines()
                .find_map(|l| l.split("redo starts at ").nth(1))
                .and_then(|r| lsn(r.split_whitespace().next()?));
            let done = text.lines().find(|l| l.contains("redo done at "));
            if let (Some(start), Some(done)) = (start, done) {
                let end = lsn(done
                    .split("redo done at ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?)?;
                let secs: f64 = done
                    .split("elapsed: ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()?;
                return Some((end.saturating_sub(start), secs));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_bench_16_mib_runs_and_restores_exactly_the_rows_before_the_target() {
    run(16, 6).await;
}

#[ignore]
#[tokio::test(flavor = "multi_thread")]
async fn backup_bench() {
    let mb = std::env::var("FLYPLAN_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    run(mb, 60).await;
}

async fn run(want_mb: u64, load_secs: u64) {
    assert!(
        Path::new("/usr/bin/pgbackrest").exists()
            && Path::new("/usr/bin/barman-cloud-backup").exists(),
        "pgbackrest or barman-cloud is missing: run scripts/install-deps.sh (as root) first"
    );
    let dir = tempfile::Builder::new()
        .prefix("flyplan-bench-bk-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = s3::ObjectStore::start();
    store.create_bucket(BUCKET);
    let mut place = Place {
        dir,
        store,
        tls: None,
        apps: Vec::new(),
    };
    let (tls, tls_port) = tls_front(place.dir.path(), place.store.port);
    place.tls = Some(tls);
    // The cluster is loaded before backups are turned on, so that the
    // base backups do not wait for the archiver to work off the load's WAL
    // (`pg_backup_stop` waits until its last segment is archived).
    let source = place.config(APP, "");
    let src = source.to_str().unwrap().to_string();
    place.flyplan(&["apply", "--auto-approve", "-c", &src]);
    let status = place.status(&source);
    let endpoint = status["endpoint"]["port"].as_u64().unwrap() as u16;
    let node_port = status["nodes"][0]["checks"]["port"].as_u64().unwrap();
    let app_dir = place.state().join("apps").join(APP);
    let sock = app_dir.join("sock");
    let pgdata = std::fs::read_dir(app_dir.join("volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("pgdata"))
        .find(|p| p.join("PG_VERSION").exists())
        .expect("the node's data directory");
    let creds = app_dir.join("backup/credentials");

    // The data: rows of ~250 bytes until the database has the size asked.
    let db = connect(endpoint).await;
    db.batch_execute("CREATE TABLE big (id bigint, payload text)")
        .await
        .unwrap();
    let batch = (want_mb * 1000).clamp(10_000, 1_000_000) as i64;
    let mut next = 1i64;
    let t = Instant::now();
    let size = loop {
        let size: i64 = db
            .query_one("SELECT pg_database_size('postgres')", &[])
            .await
            .unwrap()
            .get(0);
        if mib(size as u64) >= want_mb as f64 {
            break size as u64;
        }
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
        "loaded {} rows, database {:.0} MiB, in {:.1}s",
        next - 1,
        mib(size),
        t.elapsed().as_secs_f64()
    );
    let with_backups = std::fs::read_to_string(&source).unwrap().replace(
        "[secrets]",
        "[postgres.backup]\n  secret = \"S3_URL\"\n  archive_timeout = \"10s\"\n\n[secrets]",
    );
    std::fs::write(&source, with_backups).unwrap();
    place.flyplan(&["apply", "--auto-approve", "-c", &src]);
    let rate = |secs: f64| mib(size) / secs;
    let mut figures: Vec<String> = Vec::new();

    // Base backups, one after the other.
    let (wall, cpu) = timed(
        Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(place.state())
            .args(["backups", "create", "-c", &src, "--json"])
            .env("PG_PASSWORD", PASSWORD)
            .env("S3_URL", place.store.url(BUCKET, APP)),
    );
    say(&mut figures, format!(
        "flyplan backups create (barman-cloud-backup, no compression): {wall:.1} s, {:.1} MiB/s, CPU {cpu:.1} s",
        rate(wall)
    ));
    let barman = |gzip: bool| -> (f64, f64) {
        let mut c = as_postgres("/usr/bin/barman-cloud-backup");
        c.env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .args(["--cloud-provider", "aws-s3", "--endpoint-url"])
            .arg(place.store.endpoint())
            .args(["--profile", "barman", "--host"])
            .arg(&sock)
            .args(["--port", &node_port.to_string(), "--user", "postgres"])
            .arg("--immediate-checkpoint");
        if gzip {
            c.arg("--gzip");
        }
        c.args([&format!("s3://{BUCKET}"), APP]);
        timed(&mut c)
    };
    let (wall, cpu) = barman(true);
    say(
        &mut figures,
        format!(
            "barman-cloud-backup --gzip: {wall:.1} s, {:.1} MiB/s, CPU {cpu:.1} s",
            rate(wall)
        ),
    );
    let plain = place.dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    chown_postgres(&plain);
    let (wall, cpu) = timed(
        as_postgres("/usr/lib/postgresql/15/bin/pg_basebackup")
            .arg("--host")
            .arg(&sock)
            .args(["--port", &node_port.to_string(), "--username", "postgres"])
            .arg("--pgdata")
            .arg(plain.join("data"))
            .args(["--checkpoint=fast", "--wal-method=stream", "--no-password"]),
    );
    std::fs::remove_dir_all(&plain).unwrap();
    say(
        &mut figures,
        format!(
        "pg_basebackup to local disk (plain, -X stream): {wall:.1} s, {:.1} MiB/s, CPU {cpu:.1} s",
        rate(wall)
    ),
    );
    let pgbr = place.dir.path().join("pgbackrest");
    for sub in ["", "/log", "/lock", "/spool"] {
        let p = PathBuf::from(format!("{}{sub}", pgbr.display()));
        std::fs::create_dir_all(&p).unwrap();
        chown_postgres(&p);
    }
    let conf = pgbr.join("pgbackrest.conf");
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-type=s3\nrepo1-path=/pgbackrest\nrepo1-s3-bucket={BUCKET}\n\
             repo1-s3-endpoint=127.0.0.1\nrepo1-storage-port={tls_port}\nrepo1-s3-region=us-east-1\n\
             repo1-s3-key={}\nrepo1-s3-key-secret={}\nrepo1-s3-uri-style=path\n\
             repo1-storage-verify-tls=n\nrepo1-retention-full=9\nstart-fast=y\narchive-check=n\n\
             log-path={p}/log\nlock-path={p}/lock\nspool-path={p}/spool\nlog-level-console=warn\n\
             log-level-file=off\n\n[bench]\npg1-path={}\npg1-port={node_port}\npg1-socket-path={}\n\
             pg1-user=postgres\n",
            s3::ACCESS_KEY,
            s3::SECRET_KEY,
            pgdata.display(),
            sock.display(),
            p = pgbr.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pgbackrest = |args: &[&str]| -> (f64, f64) {
        let mut c = as_postgres("/usr/bin/pgbackrest");
        c.arg(format!("--config={}", conf.display()))
            .arg("--stanza=bench")
            .args(args);
        timed(&mut c)
    };
    pgbackrest(&["stanza-create"]);
    for pmax in ["1", "2"] {
        let (wall, cpu) = pgbackrest(&["--type=full", &format!("--process-max={pmax}"), "backup"]);
        say(&mut figures, format!(
            "pgbackrest backup (gz level 6, process-max={pmax}, https): {wall:.1} s, {:.1} MiB/s, CPU {cpu:.1} s",
            rate(wall)
        ));
    }

    // One 16 MiB segment through barman-cloud-wal-archive, as the archiver
    // runs it, with and without gzip (to another server name). A fresh
    // connection: the endpoint closes idle ones.
    let db = connect(endpoint).await;
    let seg: String = db
        .query_one(
            "SELECT name FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' ORDER BY name LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for gzip in [true, false] {
        let mut c = as_postgres("/usr/bin/barman-cloud-wal-archive");
        c.env("AWS_SHARED_CREDENTIALS_FILE", &creds)
            .args(["--cloud-provider", "aws-s3", "--endpoint-url"])
            .arg(place.store.endpoint())
            .args(["--profile", "barman"]);
        if gzip {
            c.arg("--gzip");
        }
        c.args([&format!("s3://{BUCKET}"), &format!("probe-{gzip}")])
            .arg(pgdata.join("pg_wal").join(&seg));
        let (wall, cpu) = timed(&mut c);
        say(&mut figures, format!(
            "barman-cloud-wal-archive of one 16 MiB segment{}: {wall:.2} s, CPU {cpu:.2} s ({:.1} MiB/s at most per archiver)",
            if gzip { " --gzip" } else { "" },
            16.0 / wall
        ));
    }

    // The archive lag under a steady write load: ~2 MiB of WAL a second
    // for `load_secs`; each second's commit LSN, then when its segment
    // shows as archived.
    db.batch_execute("CREATE TABLE load (id bigserial, payload text)")
        .await
        .unwrap();
    let writer = tokio::spawn(async move {
        let w = connect(endpoint).await;
        let start = Instant::now();
        let mut marks: Vec<(Instant, String)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while start.elapsed() < Duration::from_secs(load_secs) {
            tick.tick().await;
            w.execute(
                "INSERT INTO load (payload) SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 150)",
                &[],
            )
            .await
            .unwrap();
            if marks
                .last()
                .is_none_or(|(t, _)| t.elapsed() >= Duration::from_secs(1))
            {
                let seg: String = w
                    .query_one("SELECT pg_walfile_name(pg_current_wal_insert_lsn())", &[])
                    .await
                    .unwrap()
                    .get(0);
                marks.push((Instant::now(), seg));
            }
        }
        marks
    });
    let load_start: String = db
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let mut archived_at: Vec<(Instant, String)> = Vec::new();
    let poll = connect(endpoint).await;
    let deadline = Instant::now() + Duration::from_secs(load_secs + 180);
    let marks = loop {
        note_archived(&poll, &mut archived_at).await;
        if writer.is_finished() {
            break writer.await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let load_end: String = db
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let wal_bytes: i64 = db
        .query_one(
            "SELECT ($1::text::pg_lsn - $2::text::pg_lsn)::bigint",
            &[&load_end, &load_start],
        )
        .await
        .unwrap()
        .get(0);
    let last_mark = marks.last().unwrap().1.clone();
    while archived_at.last().is_none_or(|(_, l)| *l < last_mark) {
        assert!(
            Instant::now() < deadline,
            "the load's WAL was never archived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        note_archived(&poll, &mut archived_at).await;
    }
    let mut lags: Vec<f64> = marks
        .iter()
        .filter_map(|(t, seg)| {
            archived_at
                .iter()
                .find(|(_, a)| a >= seg)
                .map(|(at, _)| at.duration_since(*t).as_secs_f64())
        })
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
    say(&mut figures, format!(
        "archive lag under {:.1} MiB/s of WAL for {load_secs} s (archive_timeout 10s): median {:.1} s, max {:.1} s over {} commits",
        mib(wal_bytes as u64) / load_secs as f64,
        lags[lags.len() / 2],
        lags[lags.len() - 1],
        lags.len()
    ));

    // A restore to a target time: WAL written after the base backups
    // (the load above and a little more), T, then rows after T.
    let db = connect(endpoint).await;
    db.batch_execute("CREATE TABLE marks (id int PRIMARY KEY)")
        .await
        .unwrap();
    for i in 1..=3 {
        db.execute("INSERT INTO marks VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let target: String = db
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for i in 4..=6 {
        db.execute("INSERT INTO marks VALUES ($1)", &[&i])
            .await
            .unwrap();
    }
    let load_rows: i64 = db
        .query_one("SELECT count(*) FROM load", &[])
        .await
        .unwrap()
        .get(0);
    let restored = place.config(
        "bench-bk-restored",
        "\n[postgres.restore]\n  backup_secret = \"S3_URL\"\n",
    );
    let t = Instant::now();
    place.flyplan(&[
        "backups",
        "restore",
        "-c",
        restored.to_str().unwrap(),
        "--target-time",
        &target,
        "--auto-approve",
    ]);
    let restore = t.elapsed().as_secs_f64();
    let st = place.status(&restored);
    let r = connect(st["endpoint"]["port"].as_u64().unwrap() as u16).await;
    let got: Vec<i32> = r
        .query("SELECT id FROM marks ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(got, vec![1, 2, 3], "restore to {target}");
    let got_load: i64 = r
        .query_one("SELECT count(*) FROM load", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(got_load, load_rows, "the load's rows after the restore");
    let replay = replay_from_logs(&place.state().join("apps/bench-bk-restored"));
    say(
        &mut figures,
        format!(
            "flyplan backups restore --target-time (new 1-node cluster): {restore:.1} s{}",
            match replay {
                Some((bytes, secs)) => format!(
                    "; WAL replay {:.0} MiB in {secs:.1} s = {:.1} MiB/s",
                    mib(bytes),
                    mib(bytes) / secs.max(0.01)
                ),
                None => String::new(),
            }
        ),
    );

    println!();
    println!("database {:.0} MiB (pg_database_size)", mib(size));
    for f in &figures {
        println!("{f}");
    }
}

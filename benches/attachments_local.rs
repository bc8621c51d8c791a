//! 1,000 attachments on a real local cluster (one PostgreSQL node with its
//! monitor and endpoint): the plan that adds them, the apply, and the no-op
//! plan with all of them in place, each timed through the `flyplan` binary
//! as a user runs it. The attachments share ten databases, so the figure is
//! about roles, secrets and planning, not about copying 1,000 templates.
//!
//!     cargo bench --bench attachments_local
//!     cargo bench --bench attachments_local -- 200     # another count
//!
//! Needs what `scripts/install-deps.sh` installs; run as root (servers run
//! as `postgres`). Everything it starts is destroyed at the end.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-operator-password";

fn fly_toml(attachments: usize) -> String {
    let mut s = String::from(
        r#"app = "bench-attach"
primary_region = "iad"

[postgres]
  instances = 1
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
"#,
    );
    for i in 0..attachments {
        let _ = write!(
            s,
            "\n[[attachments]]\n  app = \"consumer-{i:04}\"\n  database = \"shared_{}\"\n",
            i % 10
        );
    }
    s
}

struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("fly.toml")
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(self.state())
            .args(args)
            .arg("-c")
            .arg(self.config())
            .env("PG_PASSWORD", PASSWORD)
            .env("NO_COLOR", "1")
            .output()
            .expect("flyplan runs")
    }
    fn timed(&self, args: &[&str]) -> (Duration, Output) {
        let t = Instant::now();
        let o = self.run(args);
        (t.elapsed(), o)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "--allow-destroy", "--auto-approve"]);
    }
}

fn check(o: &Output, what: &str, codes: &[i32]) {
    let code = o.status.code().unwrap_or(-1);
    if !codes.contains(&code) {
        panic!(
            "{what} exited {code}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::Builder::new()
        .prefix("flyplan-bench-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let b = Bench { dir };
    let write = |text: String| std::fs::write(b.config(), text).expect("fly.toml");

    write(fly_toml(0));
    let (t, o) = b.timed(&["apply", "--auto-approve"]);
    check(&o, "apply of the cluster", &[0]);
    println!(
        "cluster (1 node, monitor, endpoint) applied in {:.1} s",
        t.as_secs_f64()
    );

    write(fly_toml(n));
    let (t, o) = b.timed(&["plan", "--detailed-exitcode"]);
    check(&o, "plan adding attachments", &[2]);
    let lines = String::from_utf8_lossy(&o.stdout).lines().count();
    println!(
        "plan adding {n} attachments: {:.0} ms, {lines} lines printed, {}",
        ms(t),
        last_line(&o)
    );
    let (t, o) = b.timed(&["plan", "--format", "json"]);
    check(&o, "JSON plan", &[0]);
    println!(
        "the same plan as JSON: {:.0} ms, {} KiB",
        ms(t),
        o.stdout.len() / 1024
    );

    let (t, o) = b.timed(&["apply", "--auto-approve"]);
    check(&o, "apply of the attachments", &[0]);
    println!(
        "apply of {n} attachments: {:.1} s ({:.1} ms each)",
        t.as_secs_f64(),
        ms(t) / n as f64
    );

    let mut runs: Vec<Duration> = Vec::new();
    for i in 0..11 {
        let (t, o) = b.timed(&["plan", "--detailed-exitcode"]);
        check(&o, "no-op plan", &[0]);
        if i > 0 {
            runs.push(t); // the first run warms the page cache
        }
    }
    runs.sort();
    println!(
        "no-op plan with {n} attachments in place ({} runs): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        runs.len(),
        ms(runs[runs.len() / 2]),
        ms(runs[0]),
        ms(runs[runs.len() - 1])
    );
    let o = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--state-dir")
        .arg(b.state())
        .args(["plan", "-c"])
        .arg(b.config())
        .env("PG_PASSWORD", PASSWORD)
        .output();
    if let Ok(o) = o {
        let kib = String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<u64>().ok());
        if let Some(kib) = kib {
            println!("no-op plan peak RSS: {:.1} MiB", kib as f64 / 1024.0);
        }
    }
}

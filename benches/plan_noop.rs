//! No-op plan benchmark: a fly.toml with N attachments (about N + 20
//! resources) against a live state that already matches it. Each size runs
//! in its own child process so peak memory (VmHWM) is that size's alone.
//!
//!     cargo bench --bench plan_noop
//!     cargo bench --bench plan_noop -- 1000 10000 100000

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use flyplan::desired::Desired;
use flyplan::live::Live;
use flyplan::plan::{plan, PlanOptions};
use flyplan::render::{render, Format};

fn fly_toml(attachments: usize) -> String {
    let mut s = String::from(
        r#"app = "bench-cluster"
primary_region = "iad"

[postgres]
  instances = 3
  sync_standbys = 1
  read_replicas = { ams = 1, syd = 1 }
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }

[[mounts]]
  source = "pg_data"
  destination = "/data"
  initial_size = "10gb"
"#,
    );
    for i in 0..attachments {
        let _ = write!(s, "\n[[attachments]]\n  app = \"consumer-{i}\"\n");
    }
    s
}

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([("PG_PASSWORD".to_string(), "bench-password".to_string())])
}

/// Parse, build the desired state, load the live state, plan and render:
/// everything `flyplan plan` does except process start-up.
fn one_run(dir: &Path) -> (usize, bool) {
    let config = flyplan::config::load(&dir.join("fly.toml")).expect("valid fly.toml");
    let desired = Desired::from_config(&config, &env()).expect("secrets");
    let live = Live::load(&dir.join("live.json")).expect("live.json");
    let p = plan(&desired, &live, PlanOptions::default());
    let text = render(&p, Format::Text, false);
    (desired.resources.len(), text.starts_with("No changes."))
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn child(attachments: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("fly.toml"), fly_toml(attachments)).expect("write");
    let config = flyplan::config::load(&dir.path().join("fly.toml")).expect("valid");
    let desired = Desired::from_config(&config, &env()).expect("secrets");
    let mut live = Live::empty(&desired.app);
    for r in desired.resources.values() {
        let mut r = r.clone();
        r.spec = r.spec.without_inputs();
        live.insert(r);
    }
    std::fs::write(
        dir.path().join("live.json"),
        serde_json::to_string(&live).expect("json"),
    )
    .expect("write");
    drop((config, desired, live));

    let (resources, noop) = one_run(dir.path());
    assert!(noop, "the benchmark plan must be a no-op");
    let mut times: Vec<Duration> = (0..9)
        .map(|_| {
            let t = Instant::now();
            one_run(dir.path());
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "no-op plan, {attachments:>6} attachments ({resources:>6} resources): median {:>8.2} ms, min {:>8.2} ms, peak RSS {:>7.1} MiB",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        peak_rss_kib() as f64 / 1024.0
    );
}

fn main() {
    if let Ok(n) = std::env::var("FLYPLAN_BENCH_CHILD") {
        child(n.parse().expect("a number"));
        return;
    }
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![1_000, 10_000];
    }
    let me = std::env::current_exe().expect("own path");
    for n in sizes {
        let status = std::process::Command::new(&me)
            .env("FLYPLAN_BENCH_CHILD", n.to_string())
            .status()
            .expect("run child");
        assert!(status.success(), "benchmark child failed");
    }
}

//! Commit-to-live latency of `flyplan watch` with the push trigger: a real
//! git repository, the release binary following it with `--listen`, and per
//! commit the time from `POST /hook` to the commit recorded as applied. The
//! file provider keeps the live state, so this is the loop's own overhead
//! (fetch, checkout, validate, plan, apply, record).
//!
//! cargo bench --bench commit_to_live

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Repository, RepositoryInitOptions, Signature};

const COMMITS: usize = 20;

fn commit(repo: &Repository, dir: &Path, text: &str, message: &str) -> String {
    std::fs::write(dir.join("fly.toml"), text).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("fly.toml")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = Signature::now("bench", "bench@example.com").unwrap();
    let parent = repo
        .head()
        .ok()
        .and_then(|h| h.target())
        .map(|o| repo.find_commit(o).unwrap());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

fn post_hook(addr: &str) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /hook HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 202"), "{out}");
}

fn status(path: &Path) -> serde_json::Value {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn applied(st: &serde_json::Value, rev: &str) -> bool {
    st["commits"][0]["revision"] == rev && st["commits"][0]["result"] == "applied"
}

fn wait(path: &Path, rev: &str, timeout: Duration) -> serde_json::Value {
    let end = Instant::now() + timeout;
    loop {
        let st = status(path);
        if applied(&st, rev) {
            return st;
        }
        assert!(Instant::now() < end, "{rev} not applied: {st}");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn main() {
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fly.toml"))
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("infra");
    let mut opts = RepositoryInitOptions::new();
    opts.initial_head("main");
    let repo = Repository::init_opts(&src, &opts).unwrap();
    let first = commit(&repo, &src, &example, "a cluster");

    let state = tmp.path().join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--live")
        .arg(tmp.path().join("live.json"))
        .arg("--state-dir")
        .arg(&state)
        .args(["watch", "--repo"])
        .arg(&src)
        .args(["--interval", "1h", "--listen", "127.0.0.1:0"])
        .env("PG_PASSWORD", "bench-password")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status_path = flyplan::reconcile::record_path(&flyplan::reconcile::watch_dir(
        &state,
        &src.display().to_string(),
        "main",
        "fly.toml",
    ));
    let st = wait(&status_path, &first, Duration::from_secs(30));
    let addr = st["listen"].as_str().expect("listening").to_string();

    let mut latencies = Vec::new();
    for i in 0..COMMITS {
        // Alternately add and remove an attachment: one step each time.
        let text = if i % 2 == 0 {
            format!("{example}\n[[attachments]]\n  app = \"app{i}\"\n")
        } else {
            example.clone()
        };
        let rev = commit(&repo, &src, &text, &format!("change {i}"));
        let started = Instant::now();
        post_hook(&addr);
        wait(&status_path, &rev, Duration::from_secs(30));
        latencies.push(started.elapsed());
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "commit -> live via POST /hook, {COMMITS} commits: min {:.1} ms, median {:.1} ms, max {:.1} ms",
        ms(latencies[0]),
        ms(latencies[COMMITS / 2]),
        ms(latencies[COMMITS - 1])
    );
}

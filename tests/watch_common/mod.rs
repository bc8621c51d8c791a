//! Helpers for the `flyplan watch` tests: real git repositories made with
//! git2 in temporary directories, the example fly.toml and its variants, and
//! a watcher on a JSON live state (the file provider).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use flyplan::provider::file::FileProvider;
use flyplan::reconcile::{Backoff, WatchOptions, Watcher};
use git2::{Oid, Repository, RepositoryInitOptions, Signature};

/// The operator password the example reads from `PG_PASSWORD`.
pub const SECRET: &str = "watch-Secret-Value-0815";

/// Every test sets the same value, so parallel tests agree.
pub fn set_secret_env() {
    std::env::set_var("PG_PASSWORD", SECRET);
}

pub fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fly.toml"))
        .unwrap()
}

/// The example with an attachment for app `app`.
pub fn with_attachment(app: &str) -> String {
    format!("{}\n[[attachments]]\n  app = \"{app}\"\n", example())
}

/// The example with a misspelled key: `fly.toml:16:3: unknown key ...`.
pub fn broken() -> String {
    example().replace("instances = 3", "instancs = 3")
}

/// A work-tree repository on branch `main`, committed to with git2.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub repo: Repository,
}

impl Repo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = Repository::init_opts(dir.path(), &opts).unwrap();
        Repo { dir, repo }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        self.path().display().to_string()
    }

    /// Write `files` (path, text) and commit them on main.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> Oid {
        let mut index = self.repo.index().unwrap();
        for (path, text) in files {
            let full = self.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, text).unwrap();
            index.add_path(Path::new(path)).unwrap();
        }
        index.write().unwrap();
        let tree = self.repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = Signature::now("flyplan tests", "tests@example.com").unwrap();
        let parent = self
            .repo
            .head()
            .ok()
            .and_then(|h| h.target())
            .map(|oid| self.repo.find_commit(oid).unwrap());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        self.repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .unwrap()
    }
}

/// A temporary state directory and live JSON file.
pub struct Place {
    pub dir: tempfile::TempDir,
}

impl Place {
    pub fn new() -> Self {
        Place {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn live(&self) -> PathBuf {
        self.dir.path().join("live.json")
    }
    pub fn live_text(&self) -> String {
        std::fs::read_to_string(self.live()).unwrap_or_default()
    }
    pub fn options(&self, repo: &Repo) -> WatchOptions {
        let mut o = WatchOptions::new(repo.url(), self.state());
        o.interval = Duration::from_secs(3600);
        o.backoff = Backoff {
            base: Duration::from_millis(300),
            max: Duration::from_secs(5),
        };
        o
    }
    pub fn watcher(&self, opts: WatchOptions) -> Watcher {
        Watcher::open(opts, Box::new(FileProvider::new(self.live()))).unwrap()
    }
}

/// Run the real binary on the place's live file and state directory.
pub fn flyplan(place: &Place, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--live")
        .arg(place.live())
        .arg("--state-dir")
        .arg(place.state())
        .args(args)
        .env("PG_PASSWORD", SECRET)
        .env("NO_COLOR", "1")
        .output()
        .expect("flyplan runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// The watch's status.json as JSON, when written.
pub fn status_json(place: &Place, repo: &Repo) -> Option<serde_json::Value> {
    let path = flyplan::reconcile::record_path(&place.options(repo).dir());
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// A `flyplan watch` process, killed if a test ends without stopping it.
pub struct WatchProcess {
    pub child: Option<std::process::Child>,
}

impl WatchProcess {
    pub fn spawn(place: &Place, args: &[&str]) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--live")
            .arg(place.live())
            .arg("--state-dir")
            .arg(place.state())
            .arg("watch")
            .args(args)
            .env("PG_PASSWORD", SECRET)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("flyplan watch starts");
        WatchProcess { child: Some(child) }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Send SIGTERM and wait (at most `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{kill, Signal};
        kill(nix::unistd::Pid::from_raw(self.pid()), Signal::SIGTERM).unwrap();
        let mut child = self.child.take().unwrap();
        let mut status = None;
        wait_until(timeout, || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for WatchProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal HTTP/1.1 request over loopback; returns the whole response.
pub fn http(addr: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Edit the live JSON by hand, as drift would.
pub fn edit_live(place: &Place, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let mut v: serde_json::Value = serde_json::from_str(&place.live_text()).unwrap();
    edit(v["resources"].as_array_mut().unwrap());
    // Atomically, as the provider writes it, so the loop never reads half.
    let tmp = place.live().with_extension("edit.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    std::fs::rename(&tmp, place.live()).unwrap();
}

/// The resource at `address` in the live JSON.
pub fn live_resource(place: &Place, address: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&place.live_text()).ok()?;
    v["resources"]
        .as_array()?
        .iter()
        .find(|r| r["address"] == address)
        .cloned()
}

//! An S3-compatible object store for the backup tests: moto's standalone
//! server (`moto_server`, installed by `scripts/install-deps.sh` into a venv)
//! as a real process on loopback, on a free port, stopped on drop.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where install-deps.sh puts moto's venv (overridden by FLYPLAN_MOTO_VENV).
const DEFAULT_VENV: &str = "/opt/flyplan-test/moto";

/// Access key and secret the tests put in store URLs; moto accepts any.
pub const ACCESS_KEY: &str = "flyplanaccess";
pub const SECRET_KEY: &str = "flyplan-Secret-Key-9517";

fn moto_server() -> PathBuf {
    let venv = std::env::var("FLYPLAN_MOTO_VENV").unwrap_or_else(|_| DEFAULT_VENV.to_string());
    let in_venv = PathBuf::from(venv).join("bin/moto_server");
    if in_venv.exists() {
        return in_venv;
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        let p = dir.join("moto_server");
        if p.exists() {
            return p;
        }
    }
    panic!("moto_server is missing: run scripts/install-deps.sh (as root) first")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A running moto server.
pub struct ObjectStore {
    child: Child,
    pub port: u16,
}

impl ObjectStore {
    /// Start moto on a free loopback port and wait until it answers.
    pub fn start() -> ObjectStore {
        let port = free_port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let store = ObjectStore { child, port };
        let started = Instant::now();
        while store.request("GET", "/").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        store
    }

    /// The endpoint, as barman-cloud's `--endpoint-url` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A store URL in postgres-flex's format for `bucket/directory`.
    pub fn url(&self, bucket: &str, directory: &str) -> String {
        format!(
            "http://{ACCESS_KEY}:{SECRET_KEY}@127.0.0.1:{}/{bucket}/{directory}",
            self.port
        )
    }

    /// Create a bucket (moto does not check request signatures).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self
            .request("PUT", &format!("/{bucket}"))
            .expect("bucket request");
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "create bucket: {status}"
        );
    }

    /// Send a bodiless request; returns the status line.
    fn request(&self, method: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.lines().next().unwrap_or_default().to_string())
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

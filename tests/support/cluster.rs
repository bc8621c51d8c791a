//! A local cluster driven through the CLI for integration tests: a state
//! dir the `postgres` user can reach, a fly.toml in it, and `flyplan`
//! commands against both; destroyed on drop, also when the test fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

pub struct Cluster {
    pub state: tempfile::TempDir,
    pub config: PathBuf,
    password: &'static str,
}

impl Cluster {
    /// A cluster of `config_text`, whose `PG_PASSWORD` secret is `password`.
    pub fn new(config_text: &str, password: &'static str) -> Cluster {
        Cluster::in_dir(config_text, password, "")
    }

    /// As [`Cluster::new`], with the fly.toml in directory `dir_name` of the
    /// state dir (the services dialect names the app after it).
    pub fn in_dir(config_text: &str, password: &'static str, dir_name: &str) -> Cluster {
        let state = tempfile::Builder::new()
            .prefix("flyplan-it-")
            .tempdir_in("/tmp")
            .expect("state dir");
        std::fs::set_permissions(
            state.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let dir = state.path().join(dir_name);
        std::fs::create_dir_all(&dir).expect("config dir");
        let config = dir.join("fly.toml");
        std::fs::write(&config, config_text).expect("write fly.toml");
        Cluster {
            state,
            config,
            password,
        }
    }

    pub fn write(&self, config_text: &str) {
        std::fs::write(&self.config, config_text).expect("write fly.toml");
    }

    /// `flyplan ARGS -c <fly.toml>` on the cluster's state dir, not run yet.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flyplan"));
        c.arg("--state-dir")
            .arg(self.state.path().join("state"))
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .env("PG_PASSWORD", self.password)
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("flyplan runs")
    }

    pub fn status(&self) -> Value {
        let o = self.run(&["status", "--json"]);
        assert!(o.status.success(), "status: {}", text(&o));
        serde_json::from_slice(&o.stdout).expect("status JSON")
    }

    /// `apply --auto-approve`, which must succeed.
    pub fn apply(&self) -> Output {
        let o = self.run(&["apply", "--auto-approve"]);
        assert!(o.status.success(), "apply: {}", text(&o));
        o
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "--allow-destroy", "--auto-approve"]);
    }
}

/// A temporary directory under /tmp named `<prefix>...` that the
/// `postgres` user can reach (mode 0755), for a state dir and fly.toml
/// files; removed on drop.
pub fn state_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("state dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    dir
}

/// A client of user `postgres` on `port` of this host (a node or the
/// endpoint), its connection driven in the background.
pub async fn connect(
    port: u16,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let conn = format!(
        "host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres connect_timeout=5"
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Standard output and error of a command, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

//! A plain PostgreSQL 15 server run as `postgres` on a free loopback port,
//! stopped on drop: the leader's own PostgreSQL behind the scripted API's
//! `exec`, and the server a route reaches in the route tests.
//!
//! Local connections over its unix socket are trusted (the scripted
//! postgres-flex uses that to set passwords as postgres-flex does on the
//! machine); TCP on 127.0.0.1 takes SCRAM, as postgres-flex's hba does for
//! the loopback connections `psql` makes inside a machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug)]
pub struct Server {
    dir: tempfile::TempDir,
    pub port: u16,
}

fn bin(name: &str) -> PathBuf {
    Path::new("/usr/lib/postgresql/15/bin").join(name)
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

/// What a `psql` run answered.
#[derive(Debug, Clone)]
pub struct PsqlRun {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Server {
    /// A new server whose `postgres` role has `password`.
    pub fn start(password: &str) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("flyplan-pg15-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, password).unwrap();
        std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let data = root.join("data");
        let o = as_postgres(&bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let o = as_postgres(&bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(root.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                root.display()
            ))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            o.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Server { dir, port }
    }

    pub async fn client(&self, user: &str, password: &str, db: &str) -> tokio_postgres::Client {
        self.try_client(user, password, db)
            .await
            .unwrap_or_else(|e| panic!("{user} connects to {db}: {e}"))
    }

    pub async fn try_client(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.port
        );
        let (c, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(c)
    }

    /// Run the real `psql` against this server over TCP as `postgres`
    /// with `password`, `args` after the connection options, `stdin` fed
    /// in. `read_only` makes every transaction read-only, as on a standby.
    pub fn psql(&self, password: &str, args: &[String], stdin: &str, read_only: bool) -> PsqlRun {
        use std::io::Write as _;
        let mut c = Command::new(bin("psql"));
        c.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
        ])
        .args(args)
        .env_clear()
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        if read_only {
            c.env("PGOPTIONS", "-c default_transaction_read_only=on");
        }
        let mut child = c.spawn().expect("psql runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        PsqlRun {
            exit_code: i64::from(o.status.code().unwrap_or(-1)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Set `postgres`'s password over the trusted unix socket.
    pub fn set_operator_password(&self, password: &str) {
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let o = Command::new(bin("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-X", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!(
                "ALTER ROLE postgres PASSWORD '{}'",
                verifier.replace('\'', "''")
            ))
            .output()
            .expect("psql runs");
        assert!(
            o.status.success(),
            "setting the operator password: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres(&bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

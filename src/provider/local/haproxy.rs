//! The leader endpoint of an app: haproxy on one stable port, TCP mode,
//! with an external health check that marks exactly the current primary UP
//! (the monitor must have chosen it as primary and it must accept writes), so
//! clients without multi-host support always reach the leader.

use std::fs;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::monitor::PRIMARY_STATES;
use super::process::{alive_with, read_pid, run_logged};
use super::state::{self, port_for, FileLock};
use super::AppCtx;
use crate::provider::ProviderError;

/// What flyplan records about the endpoint (`endpoint.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub port: u16,
}

/// Quote for a POSIX shell: single quotes, embedded ones as `'\''`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The longest path a Unix socket can have (`sun_path` holds 108 bytes,
/// one of them the final NUL), with room to spare for haproxy's own
/// temporary name beside it (`<path>.<pid>.tmp`).
const MAX_SOCKET_PATH: usize = 90;

/// The key of the endpoint's Prometheus port in the app's port list.
const METRICS_KEY: &str = "endpoint.metrics";

/// haproxy's own Prometheus exporter (built into Debian 12's haproxy 2.6,
/// `haproxy -vv`: "Built with the Prometheus exporter as a service") on a
/// port of its own, `/metrics`.
fn metrics_section(port: u16) -> String {
    format!(
        "\nfrontend metrics\n\
         \x20   mode http\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   timeout client 10s\n\
         \x20   http-request use-service prometheus-exporter if {{ path /metrics }}\n\
         \x20   http-request return status 404\n"
    )
}

impl AppCtx<'_> {
    /// The port of the endpoint's Prometheus exporter, when haproxy runs.
    pub fn endpoint_metrics_port(&self) -> Option<u16> {
        state::recorded_port(&self.paths, METRICS_KEY).filter(|_| self.haproxy_pid().is_some())
    }

    pub fn endpoint(&self) -> Result<Option<EndpointRecord>, ProviderError> {
        state::read_json(&self.paths.endpoint_json())
    }

    fn haproxy_pidfile(&self) -> std::path::PathBuf {
        self.paths.run().join("haproxy.pid")
    }

    /// haproxy's runtime API, for flyplan only (mode 0600, owned by the
    /// user haproxy runs as); `None` when the app's path is too long for a
    /// Unix socket, and the endpoint then relies on its checks alone.
    fn haproxy_admin_socket(&self) -> Option<std::path::PathBuf> {
        let path = self.paths.run().join("haproxy.sock");
        (path.as_os_str().len() <= MAX_SOCKET_PATH).then_some(path)
    }

    /// Set `node`'s health in the endpoint now rather than at its next
    /// check. Down: no new connection goes there from now on; the leader,
    /// while up, is checked every 2 s, and until haproxy marks it down it
    /// sends clients there and, once its PostgreSQL has stopped, holds each
    /// for a retry a second later. Its sessions go on until PostgreSQL ends
    /// them. Up: a new leader takes clients before its next check (every
    /// 250 ms while down). Either way the checks go on and have the last
    /// word. Best effort: returns whether haproxy took the command.
    pub(super) fn endpoint_set_health(&self, node: &str, up: bool) -> bool {
        use std::io::{Read, Write};
        let Some(path) = self.haproxy_admin_socket() else {
            return false;
        };
        let health = if up { "up" } else { "down" };
        let commands = format!("set server leader/{node} health {health}\n");
        let answer = (|| -> std::io::Result<String> {
            let mut s = std::os::unix::net::UnixStream::connect(&path)?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.set_write_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(commands.as_bytes())?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer)
        })();
        match answer {
            // haproxy answers a command that worked with an empty line.
            Ok(a) if a.trim().is_empty() => true,
            Ok(a) => {
                tracing::debug!(
                    node,
                    health,
                    answer = a.trim(),
                    "haproxy refused the health"
                );
                false
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "haproxy's runtime API did not answer");
                false
            }
        }
    }

    pub fn haproxy_pid(&self) -> Option<i32> {
        read_pid(&self.haproxy_pidfile()).filter(|pid| alive_with(*pid, "haproxy"))
    }

    fn check_script(&self, monitor_port: u16) -> String {
        let psql = sh_quote(&self.tools().psql().to_string_lossy());
        let sock = sh_quote(&self.paths.sock().to_string_lossy());
        let user = sh_quote(&self.user().name);
        let states = PRIMARY_STATES
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        // The monitor's goal, not the node's report: the monitor assigns a
        // primary goal to one node at a time, and only once the old leader
        // was told to stop (`draining`, `demote_timeout`, `demoted`), while
        // the node's report of it comes a keeper round trip later. The node
        // itself must still accept writes, which pg_autoctl allows only once
        // it is promoted and its writes are unblocked.
        // The SQL goes inside double quotes in the script.
        let monitor_sql = format!(
            "select 1 from pgautofailover.node where nodeport = $port \
             and goalstate in ({states})"
        );
        format!(
            "#!/bin/sh\n\
             # Written by flyplan: haproxy's check for the leader endpoint of app {app}.\n\
             # haproxy passes: proxy_address proxy_port server_address server_port.\n\
             # Exits 0 only when the monitor has chosen this node as primary\n\
             # and the node itself accepts writes.\n\
             PGCONNECT_TIMEOUT=1; export PGCONNECT_TIMEOUT\n\
             port=\"$4\"\n\
             case \"$port\" in ''|*[!0-9]*) exit 1;; esac\n\
             r=$({psql} -X -A -t -q -h {sock} -p {monitor_port} -U {user} -d pg_auto_failover \
             -c \"{monitor_sql}\" 2>/dev/null) || exit 1\n\
             [ \"$r\" = 1 ] || exit 1\n\
             r=$({psql} -X -A -t -q -h {sock} -p \"$port\" -U {user} -d postgres \
             -c 'select not pg_is_in_recovery()' 2>/dev/null) || exit 1\n\
             [ \"$r\" = t ]\n",
            app = self.name,
        )
    }

    /// A server that is down (every standby, and a new leader until its
    /// first good check) is checked every 250 ms and is up after one good
    /// check, so a promoted node takes writes at most about 250 ms after the
    /// monitor assigns it the primary role and it accepts writes. The leader, while up, is checked every 2 s: haproxy
    /// kills an external check that runs longer than `inter` (not `timeout
    /// check`), and two psql runs on a loaded machine can take more than
    /// 500 ms. After one failed check the leader is checked every 250 ms
    /// (`fastinter`) and is down after the second; right after a start or a
    /// reload, haproxy marks a server down on its first failure.
    fn haproxy_config(&self, port: u16) -> String {
        let script = self.paths.haproxy().join("check-leader");
        let mut cfg = format!(
            "# Written by flyplan: the leader endpoint of app {app}.\n\
             global\n\
             \x20   maxconn 1000\n\
             \x20   external-check\n\
             \x20   insecure-fork-wanted\n\
             {admin}\
             \n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 2s\n\
             \x20   timeout client 1h\n\
             \x20   timeout server 1h\n\
             \x20   timeout check 2s\n\
             \n\
             listen leader\n\
             \x20   bind 127.0.0.1:{port}\n\
             \x20   option external-check\n\
             \x20   external-check path \"/usr/bin:/bin\"\n\
             \x20   external-check command \"{script}\"\n\
             \x20   default-server inter 2s fastinter 250ms downinter 250ms fall 2 rise 1 on-marked-down shutdown-sessions\n",
            app = self.name,
            script = script.display(),
            admin = self
                .haproxy_admin_socket()
                .map(|p| format!("    stats socket {} mode 600 level admin\n", p.display()))
                .unwrap_or_default(),
        );
        for m in self.machines() {
            cfg.push_str(&format!(
                "    server {} 127.0.0.1:{} check\n",
                m.node, m.port
            ));
        }
        cfg
    }

    /// Write the config and check script; start haproxy or make it reload
    /// when the config changed. Returns whether anything was done.
    fn write_and_run_haproxy(&self, rec: &EndpointRecord) -> Result<bool, ProviderError> {
        let _guard = FileLock::acquire(&self.paths.state_lock())?;
        let dir = self.paths.haproxy();
        state::mkdir(&dir, 0o755)?;
        let monitor_port = self.monitor_port()?;
        let script = dir.join("check-leader");
        let script_body = self.check_script(monitor_port);
        let cfg_path = dir.join("haproxy.cfg");
        let metrics_port = port_for(self.state_dir(), &self.paths, METRICS_KEY)?;
        let cfg = self.haproxy_config(rec.port) + &metrics_section(metrics_port);
        let same = fs::read_to_string(&cfg_path).is_ok_and(|c| c == cfg)
            && fs::read_to_string(&script).is_ok_and(|c| c == script_body);
        let running = self.haproxy_pid();
        if same && running.is_some() {
            return Ok(false);
        }
        state::write_file(&script, script_body.as_bytes(), 0o755)?;
        state::write_file(&cfg_path, cfg.as_bytes(), 0o644)?;
        let log = self.paths.logs().join("haproxy.log");
        let mut check = self.server_cmd(&self.tools().haproxy);
        check.arg("-c").arg("-q").arg("-f").arg(&cfg_path);
        run_logged(
            "checking the haproxy config",
            check,
            &log,
            Duration::from_secs(30),
        )?;
        let mut cmd = self.server_cmd(&self.tools().haproxy);
        cmd.env("FLYPLAN_SERVER", "haproxy")
            .arg("-D")
            .arg("-p")
            .arg(self.haproxy_pidfile())
            .arg("-f")
            .arg(&cfg_path);
        if let Some(old) = running {
            // Soft reload: the new process takes the listener, the old one
            // finishes its sessions and exits.
            cmd.arg("-sf").arg(old.to_string());
        }
        tracing::info!(
            app = self.name,
            port = rec.port,
            reload = running.is_some(),
            "haproxy"
        );
        run_logged("starting haproxy", cmd, &log, Duration::from_secs(30))?;
        let started = Instant::now();
        while self.haproxy_pid().is_none_or(|p| Some(p) == running) {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(ProviderError::failed(
                    "haproxy",
                    format!("did not start; see {}", log.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(true)
    }

    /// Create or repair the endpoint.
    pub fn ensure_endpoint(&self) -> Result<bool, ProviderError> {
        let port = port_for(self.state_dir(), &self.paths, "endpoint")?;
        let rec = EndpointRecord { port };
        let had = self.endpoint()?;
        if had.as_ref() != Some(&rec) {
            state::write_json(&self.paths.endpoint_json(), &rec, 0o644)?;
        }
        let ran = self.write_and_run_haproxy(&rec)?;
        Ok(ran || had.as_ref() != Some(&rec))
    }

    /// After machines changed: rewrite the server list if the endpoint exists.
    pub fn endpoint_refresh(&self) -> Result<(), ProviderError> {
        if let Some(rec) = self.endpoint()? {
            self.write_and_run_haproxy(&rec)?;
        }
        Ok(())
    }

    pub fn stop_haproxy(&self) {
        let mut roots: Vec<i32> = super::process::processes_marked(&[
            super::process::app_marker(&self.paths.root),
            super::process::server_marker("haproxy"),
        ])
        .into_iter()
        .collect();
        if let Some(pid) = self.haproxy_pid() {
            if !roots.contains(&pid) {
                roots.push(pid);
            }
        }
        if !roots.is_empty() {
            super::process::stop_trees(&roots, Duration::from_secs(5));
        }
    }

    pub fn remove_endpoint(&self) -> Result<bool, ProviderError> {
        let had = self.endpoint()?.is_some();
        self.stop_haproxy();
        state::remove_dir(&self.paths.haproxy())?;
        state::remove_file(&self.paths.endpoint_json())?;
        state::remove_file(&self.haproxy_pidfile())?;
        Ok(had)
    }
}

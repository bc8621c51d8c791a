//! Running the servers: commands as the service user with a controlled
//! environment, detached daemons in their own session, liveness by pid, and
//! stopping whole process trees (a killed keeper leaves its postgres behind).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::{AppPaths, ServiceUser};
use crate::provider::ProviderError;

/// Where the PostgreSQL, pg_auto_failover and haproxy programs are.
#[derive(Debug, Clone)]
pub struct Tools {
    pub pg_bindir: PathBuf,
    pub pg_autoctl: PathBuf,
    pub haproxy: PathBuf,
}

impl Tools {
    /// Find the programs; fail with a pointer to the install script.
    pub fn detect() -> Result<Self, ProviderError> {
        let pg_bindir = std::env::var_os("FLYPLAN_PG_BINDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let pg_autoctl = find_program("pg_autoctl", &[&pg_bindir, Path::new("/usr/bin")]);
        let haproxy = find_program("haproxy", &[Path::new("/usr/sbin"), Path::new("/usr/bin")]);
        let mut missing = Vec::new();
        if !pg_bindir.join("postgres").exists() {
            missing.push(format!("PostgreSQL 15 ({})", pg_bindir.display()));
        }
        if pg_autoctl.is_none() {
            missing.push("pg_autoctl (pg-auto-failover-cli)".to_string());
        }
        if haproxy.is_none() {
            missing.push("haproxy".to_string());
        }
        if !missing.is_empty() {
            return Err(ProviderError::failed(
                "local provider",
                format!(
                    "missing {}; run scripts/install-deps.sh (as root) to install them",
                    missing.join(", ")
                ),
            ));
        }
        Ok(Tools {
            pg_bindir,
            pg_autoctl: pg_autoctl.expect("checked"),
            haproxy: haproxy.expect("checked"),
        })
    }

    pub fn psql(&self) -> PathBuf {
        self.pg_bindir.join("psql")
    }

    /// The major version of the PostgreSQL programs (`15`), from
    /// `postgres --version`.
    pub fn pg_major(&self) -> Option<String> {
        let out = Command::new(self.pg_bindir.join("postgres"))
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.split_whitespace().nth(2)?;
        Some(version.split('.').next()?.to_string())
    }
}

fn find_program(name: &str, dirs: &[&Path]) -> Option<PathBuf> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.iter()
        .map(|d| d.to_path_buf())
        .chain(path_dirs)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A command for a server program of `app`: run as the service user, with
/// an environment that keeps pg_autoctl's files inside the app dir and no
/// inherited `PG*` variables.
pub fn server_command(
    tools: &Tools,
    user: &ServiceUser,
    paths: &AppPaths,
    program: &Path,
) -> Command {
    let mut cmd = Command::new(program);
    let run = paths.run();
    cmd.env_clear()
        .env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                tools.pg_bindir.display()
            ),
        )
        .env("PG_CONFIG", tools.pg_bindir.join("pg_config"))
        .env("HOME", &run)
        .env("XDG_CONFIG_HOME", run.join("config"))
        .env("XDG_DATA_HOME", run.join("data"))
        .env("XDG_RUNTIME_DIR", run.join("runtime"))
        // pg_autoctl then runs postgres with this unix socket directory and
        // connects through it.
        .env("PG_REGRESS_SOCK_DIR", paths.sock())
        .env("PGHOST", paths.sock())
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("FLYPLAN_APP", &paths.root)
        .current_dir(&paths.root)
        .stdin(Stdio::null());
    if user.switch {
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

fn log_file(path: &Path) -> Result<fs::File, ProviderError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ProviderError::io(format!("opening {}", path.display()), e))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Run a command to completion with output appended to `log`, killing it
/// (and its children) after `timeout`.
///
/// The command dies with the thread that runs it (which waits for it): a
/// flyplan killed during `pg_autoctl create` leaves no create running on
/// beside the next apply. What the command started itself carries the
/// node's marker and is stopped with the node (`stop_node`) before the
/// node is made again.
///
/// # Errors
/// When it cannot start, fails, or times out; the message ends with the
/// last lines of the log.
pub fn run_logged(
    what: &str,
    mut cmd: Command,
    log: &Path,
    timeout: Duration,
) -> Result<(), ProviderError> {
    let out = log_file(log)?;
    let err = out
        .try_clone()
        .map_err(|e| ProviderError::io(format!("opening {}", log.display()), e))?;
    cmd.stdout(out).stderr(err).process_group(0);
    let parent = nix::unistd::getpid();
    // SAFETY: prctl and getppid are async-signal-safe system calls; the
    // closure touches no memory of the parent. std runs it after the
    // child's uid and gid are set, which would clear the death signal.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The parent may have died before the signal was armed.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("flyplan is gone"));
            }
            Ok(())
        });
    }
    tracing::debug!(what, ?cmd, "running");
    let mut child = cmd
        .spawn()
        .map_err(|e| ProviderError::io(format!("{what}: starting {:?}", cmd.get_program()), e))?;
    crate::fault::crash_point(&format!("running {what}"));
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(ProviderError::failed(
                    what,
                    format!(
                        "{status}; last lines of {}:\n{}",
                        log.display(),
                        tail(log, 15)
                    ),
                ))
            }
            Ok(None) if started.elapsed() > timeout => {
                kill_tree(child.id() as i32, Duration::from_secs(5));
                let _ = child.wait();
                return Err(ProviderError::failed(
                    what,
                    format!(
                        "timed out after {timeout:?}; last lines of {}:\n{}",
                        log.display(),
                        tail(log, 15)
                    ),
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(ProviderError::io(what.to_string(), e)),
        }
    }
}

/// Start a long-running server detached in its own session, output
/// appended to `log`, and return its pid. A thread reaps it when it exits,
/// so a dead server never lingers as a zombie that looks alive.
pub fn spawn_daemon(what: &str, mut cmd: Command, log: &Path) -> Result<i32, ProviderError> {
    let out = log_file(log)?;
    let err = out
        .try_clone()
        .map_err(|e| ProviderError::io(format!("opening {}", log.display()), e))?;
    cmd.stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    tracing::debug!(what, ?cmd, "starting daemon");
    let mut child = cmd
        .spawn()
        .map_err(|e| ProviderError::io(format!("{what}: starting {:?}", cmd.get_program()), e))?;
    let pid = child.id() as i32;
    std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let _ = child.wait();
        })
        .map_err(|e| ProviderError::io(format!("{what}: reaper thread"), e))?;
    Ok(pid)
}

/// One line of `/proc/<pid>/stat`: state and parent.
fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let after = &text[text.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The command line of a process, arguments joined by spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end()
            .to_string(),
    )
}

/// True when `pid` runs (a zombie does not count).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    !matches!(proc_stat(pid), Some(('Z', _)) | Some(('X', _)) | None)
}

/// True when `pid` runs and its command line contains `needle`.
pub fn alive_with(pid: i32, needle: &str) -> bool {
    alive(pid) && cmdline(pid).is_some_and(|c| c.contains(needle))
}

/// Read a pid from the first line of a file.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The postmaster of a data directory, when it runs.
pub fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    let pid = read_pid(&pgdata.join("postmaster.pid"))?;
    alive_with(pid, "postgres").then_some(pid)
}

fn all_parents() -> BTreeMap<i32, i32> {
    let mut parents = BTreeMap::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
                if let Some((_, ppid)) = proc_stat(pid) {
                    parents.insert(pid, ppid);
                }
            }
        }
    }
    parents
}

/// `roots` and all their descendants that exist now.
pub fn with_descendants(roots: &[i32]) -> BTreeSet<i32> {
    let parents = all_parents();
    let mut found: BTreeSet<i32> = roots
        .iter()
        .copied()
        .filter(|p| parents.contains_key(p))
        .collect();
    loop {
        let before = found.len();
        for (pid, ppid) in &parents {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// A process stopped with SIGSTOP until this is dropped (SIGCONT), so it
/// goes on also when the caller returns early or panics.
pub struct Paused(i32);

/// How long a paused process waits at most when flyplan dies before it
/// lets it go on.
const PAUSE_LIMIT_SECS: u32 = 2;

impl Paused {
    /// Stop `pid`; `None` when it cannot be signalled. A detached shell,
    /// started first, sends SIGCONT after [`PAUSE_LIMIT_SECS`] whatever
    /// happens to flyplan, so a killed apply never leaves it stopped.
    pub fn stop(pid: i32) -> Option<Self> {
        let resume = format!("sleep {PAUSE_LIMIT_SECS}; kill -CONT {pid}");
        let watchdog = Command::new("setsid")
            .args(["-f", "sh", "-c", &resume])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !watchdog.is_ok_and(|s| s.success()) {
            return None;
        }
        kill(Pid::from_raw(pid), Signal::SIGSTOP).ok()?;
        Some(Paused(pid))
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGCONT);
    }
}

/// Send SIGHUP to `pid`; best effort.
pub fn hang_up(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGHUP);
}

/// True when the environment of `pid` holds exactly `entry` (`KEY=value`).
fn has_env(pid: i32, entry: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|e| e == entry))
        .unwrap_or(false)
}

/// The environment entry that marks every process started for an app.
pub fn app_marker(root: &Path) -> String {
    format!("FLYPLAN_APP={}", root.display())
}

/// The environment entry that marks the processes of one server of an app
/// (`monitor`, `haproxy`, or a node name).
pub fn server_marker(server: &str) -> String {
    format!("FLYPLAN_SERVER={server}")
}

/// Processes that carry all `markers` in their environment (what flyplan
/// started and everything those started, even after they renamed
/// themselves or lost their parent), and their descendants.
pub fn processes_marked(markers: &[String]) -> BTreeSet<i32> {
    let me = std::process::id() as i32;
    let roots: Vec<i32> = all_parents()
        .keys()
        .copied()
        .filter(|p| *p != me && markers.iter().all(|m| has_env(*p, m.as_bytes())))
        .collect();
    with_descendants(&roots)
        .into_iter()
        .filter(|p| alive(*p))
        .collect()
}

/// Processes of the app at `root`: marked ones, and any whose command line
/// mentions the directory, with their descendants.
pub fn processes_under(path: &Path) -> BTreeSet<i32> {
    let needle = path.to_string_lossy().to_string();
    let marker = app_marker(path);
    let me = std::process::id() as i32;
    let roots: Vec<i32> = all_parents()
        .keys()
        .copied()
        .filter(|p| {
            *p != me
                && (has_env(*p, marker.as_bytes())
                    || cmdline(*p).is_some_and(|c| c.contains(&needle)))
        })
        .collect();
    with_descendants(&roots)
        .into_iter()
        .filter(|p| alive(*p))
        .collect()
}

/// Stop the process trees under `roots`: each root is asked to stop
/// (SIGINT, a fast shutdown, for a postmaster; SIGTERM otherwise) so it can
/// stop its own children; after `grace`, whatever of the trees is left is
/// killed.
pub fn stop_trees(roots: &[i32], grace: Duration) {
    let tree = with_descendants(roots);
    // Only the tops of the trees are asked: a postmaster stops its own
    // backends, a pg_autoctl its services.
    let tops: Vec<i32> = roots
        .iter()
        .copied()
        .filter(|r| proc_stat(*r).is_none_or(|(_, ppid)| !tree.contains(&ppid)))
        .collect();
    for root in &tops {
        let postmaster = cmdline(*root).is_some_and(|c| {
            c.split(' ')
                .next()
                .is_some_and(|p| p.ends_with("/postgres") || p == "postgres")
        });
        let signal = if postmaster {
            Signal::SIGINT
        } else {
            Signal::SIGTERM
        };
        let _ = kill(Pid::from_raw(*root), signal);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && tree.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut rest: BTreeSet<i32> = tree.into_iter().filter(|p| alive(*p)).collect();
    rest.extend(with_descendants(roots).into_iter().filter(|p| alive(*p)));
    for pid in &rest {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && rest.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stop a process and everything it started.
pub fn kill_tree(root: i32, grace: Duration) {
    stop_trees(&[root], grace);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` is stopped, once signals have been delivered (within
    /// `within`).
    fn stopped_within(pid: i32, want: bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let stopped = proc_stat(pid).is_some_and(|(s, _)| s == 'T');
            if stopped == want || Instant::now() > deadline {
                return stopped;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    struct Sleeper(std::process::Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_paused_process_goes_on_when_dropped_and_when_flyplan_forgets_it() {
        let child = Sleeper(Command::new("sleep").arg("30").spawn().unwrap());
        let pid = child.0.id() as i32;
        let paused = Paused::stop(pid).expect("paused");
        assert!(stopped_within(pid, true, Duration::from_secs(1)));
        drop(paused);
        assert!(!stopped_within(pid, false, Duration::from_secs(1)));

        // As if flyplan died while it held the process: the watchdog
        // lets it go on.
        std::mem::forget(Paused::stop(pid).expect("paused again"));
        assert!(stopped_within(pid, true, Duration::from_secs(1)));
        let limit = Duration::from_secs(u64::from(PAUSE_LIMIT_SECS) + 3);
        assert!(!stopped_within(pid, false, limit), "still stopped");
    }
}

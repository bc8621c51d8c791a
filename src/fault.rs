//! Crash points for fault tests. With `FLYPLAN_CRASH_AT=<point>` in its
//! environment, flyplan kills itself with SIGKILL when it reaches that
//! point, as `kill -9` or a lost machine would: no destructor runs, no
//! record is tidied. The variable is hidden from `--help` and documented in
//! `docs/faults.md` with the points there are.

/// The environment variable that names the crash point.
pub const CRASH_AT: &str = "FLYPLAN_CRASH_AT";

/// Die here when `CRASH_AT` names `point`.
pub fn crash_point(point: &str) {
    if std::env::var(CRASH_AT).is_ok_and(|v| v == point) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
        std::process::abort();
    }
}

//! What a watch follows and where it keeps its state: one directory per
//! repository, branch and path, with the record and the suspend switch.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::apply::ApplyOptions;

use super::{git, Backoff, WatchState};

/// What `flyplan watch` follows, and how.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// A local path, `file://`, https or ssh URL.
    pub repo: String,
    pub branch: String,
    /// A fly.toml, or a directory whose every `fly.toml` is an app.
    pub path: String,
    /// How often to fetch and re-plan for drift.
    pub interval: Duration,
    pub plan_only: bool,
    pub backoff: Backoff,
    pub state_dir: PathBuf,
    /// Apply steps run at the same time at most.
    pub parallelism: usize,
    /// Let plans destroy volumes, databases or apps (`--allow-destroy`).
    pub allow_destroy: bool,
}

impl WatchOptions {
    pub fn new(repo: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        WatchOptions {
            repo: repo.into(),
            branch: "main".into(),
            path: "fly.toml".into(),
            interval: Duration::from_secs(60),
            plan_only: false,
            backoff: Backoff::default(),
            state_dir: state_dir.into(),
            parallelism: ApplyOptions::default().parallelism,
            allow_destroy: false,
        }
    }

    /// Where this watch keeps its mirror, checkout, status and switch.
    pub fn dir(&self) -> PathBuf {
        watch_dir(&self.state_dir, &self.repo, &self.branch, &self.path)
    }
}

/// `<state_dir>/watch/<id>`, the id a hash of the repository (normalised),
/// branch and path, so two watches never share a record.
pub fn watch_dir(state_dir: &Path, repo: &str, branch: &str, path: &str) -> PathBuf {
    let url = git::normalise_url(repo);
    let mut h = Sha256::new();
    for part in [url.as_str(), branch, path] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let id = hex::encode(&h.finalize()[..8]);
    state_dir.join("watch").join(id)
}

/// The record of a watch directory (`status.json`: the file name users know).
pub fn record_path(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

fn suspend_path(dir: &Path) -> PathBuf {
    dir.join("suspended")
}

/// Whether the suspend switch is on.
pub fn is_suspended(dir: &Path) -> bool {
    suspend_path(dir).exists()
}

/// Turn the suspend switch on (a flag file the loop checks before each
/// reconcile) or off.
///
/// # Errors
/// The flag file cannot be written or removed.
pub fn set_suspended(dir: &Path, on: bool) -> std::io::Result<()> {
    let flag = suspend_path(dir);
    if on {
        std::fs::create_dir_all(dir)?;
        std::fs::write(&flag, format!("suspended at {}\n", now_text()))
    } else {
        match std::fs::remove_file(&flag) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Read the record of a watch directory, with the switch as it is now.
///
/// # Errors
/// The record exists but cannot be read.
pub fn load_state(dir: &Path) -> std::io::Result<Option<WatchState>> {
    let mut st = WatchState::load(&record_path(dir))?;
    if let Some(st) = &mut st {
        st.suspended = is_suspended(dir);
    }
    Ok(st)
}

pub(super) fn now_text() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub(super) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

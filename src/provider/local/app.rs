//! One app of the local provider: its directory layout and the records
//! flyplan keeps in it (`app.json`, `volume.json`, `formation.json`).

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::process::{self, Tools};
use super::state::{self, AppPaths, ServiceUser};
use super::LocalProvider;
use crate::provider::ProviderError;

/// The context of one app: its paths and the provider's settings.
pub(crate) struct AppCtx<'a> {
    pub(super) provider: &'a LocalProvider,
    pub name: &'a str,
    pub paths: AppPaths,
}

impl<'a> AppCtx<'a> {
    pub(super) fn new(provider: &'a LocalProvider, name: &'a str) -> Self {
        AppCtx {
            provider,
            name,
            paths: AppPaths::new(&provider.state_dir, name),
        }
    }
    pub fn user(&self) -> &ServiceUser {
        &self.provider.user
    }
    pub fn tools(&self) -> &Tools {
        &self.provider.tools
    }
    pub fn state_dir(&self) -> &Path {
        &self.provider.state_dir
    }
    /// A command for a server program, run as the service user.
    pub fn server_cmd(&self, program: &Path) -> Command {
        process::server_command(self.tools(), self.user(), &self.paths, program)
    }
    /// A `pg_autoctl` command.
    pub fn autoctl(&self) -> Command {
        self.server_cmd(&self.tools().pg_autoctl)
    }
    /// Remove pg_autoctl's config, state and pid files of a data dir.
    pub fn forget_autoctl_files(&self, pgdata: &Path) -> Result<(), ProviderError> {
        let rel = pgdata.strip_prefix("/").unwrap_or(pgdata);
        for base in ["config", "data", "runtime"] {
            state::remove_dir(&self.paths.run().join(base).join("pg_autoctl").join(rel))?;
        }
        Ok(())
    }

    /// Remove pg_autoctl's runtime files (its pidfile) of `pgdata`, once
    /// every process of that server is stopped: a pidfile naming a killed
    /// pg_autoctl that is not reaped yet (a zombie still answers
    /// `kill(pid, 0)`) makes the next `pg_autoctl run` refuse to start.
    pub fn forget_autoctl_runtime(&self, pgdata: &Path) -> Result<(), ProviderError> {
        let rel = pgdata.strip_prefix("/").unwrap_or(pgdata);
        state::remove_dir(
            &self
                .paths
                .run()
                .join("runtime")
                .join("pg_autoctl")
                .join(rel),
        )
    }

    pub(super) fn exists(&self) -> bool {
        self.paths.app_json().exists()
    }

    /// Directories of a new app, owned as the servers need them.
    pub(super) fn make_layout(&self) -> Result<(), ProviderError> {
        let sock_len = self.paths.sock().as_os_str().len() + "/.s.PGSQL.65535".len();
        if sock_len >= 108 {
            return Err(ProviderError::failed(
                format!("app {}", self.name),
                format!(
                    "the unix socket path under {} would be {sock_len} bytes, over the \
                     107 that Linux allows; use a shorter state dir",
                    self.paths.root.display()
                ),
            ));
        }
        state::mkdir(&self.paths.root, 0o755)?;
        self.user().check_traversable(&self.paths.root)?;
        let u = self.user();
        u.mkdir(&self.paths.run(), 0o700)?;
        for sub in ["config", "data", "runtime"] {
            u.mkdir(&self.paths.run().join(sub), 0o700)?;
        }
        u.mkdir(&self.paths.sock(), 0o700)?;
        u.mkdir(&self.paths.logs(), 0o755)?;
        u.mkdir(&self.paths.monitor_pgdata(), 0o700)?;
        state::mkdir(&self.paths.volumes(), 0o755)?;
        state::mkdir(&self.paths.machines(), 0o755)?;
        Ok(())
    }
}

/// What `app.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct AppRecord {
    pub(super) primary_region: Option<String>,
}

/// What `volume.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct VolumeRecord {
    pub(super) name: String,
    pub(super) region: String,
    pub(super) index: u32,
    pub(super) size_gb: u64,
}

/// What `formation.json` records: the declared number of sync standbys and
/// the value set on the monitor for it (they differ when pg_auto_failover's
/// 0 already means one synchronous standby, see `ensure_formation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct FormationRecord {
    pub(super) sync_standbys: i64,
    pub(super) monitor_number_sync_standbys: i32,
}

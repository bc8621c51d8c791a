//! Where an app's files live under the state dir, who owns them, the port
//! registry (stable per address, unique across apps), and small JSON files
//! written atomically under a per-app lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::provider::ProviderError;

/// The unprivileged user that owns server files and runs the servers.
#[derive(Debug, Clone)]
pub struct ServiceUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// True when flyplan runs as root and must switch to this user.
    pub switch: bool,
}

impl ServiceUser {
    /// `postgres` when running as root (PostgreSQL refuses root), else the
    /// invoking user.
    pub fn detect() -> Result<Self, ProviderError> {
        let euid = nix::unistd::geteuid();
        if euid.is_root() {
            let user = nix::unistd::User::from_name("postgres")
                .map_err(|e| ProviderError::failed("looking up user postgres", e.to_string()))?
                .ok_or_else(|| {
                    ProviderError::failed(
                        "local provider",
                        "running as root needs the unprivileged user `postgres` to run the \
                         servers; install PostgreSQL with scripts/install-deps.sh",
                    )
                })?;
            Ok(ServiceUser {
                name: user.name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                switch: true,
            })
        } else {
            let user = nix::unistd::User::from_uid(euid)
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| euid.to_string());
            Ok(ServiceUser {
                name: user,
                uid: euid.as_raw(),
                gid: nix::unistd::getegid().as_raw(),
                switch: false,
            })
        }
    }

    /// Give a path to this user (only when switching users).
    pub fn chown(&self, path: &Path) -> Result<(), ProviderError> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
                .map_err(|e| ProviderError::io(format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Create a directory (and parents) owned by this user with `mode`.
    pub fn mkdir(&self, path: &Path, mode: u32) -> Result<(), ProviderError> {
        mkdir(path, mode)?;
        self.chown(path)
    }

    /// Fail with a clear message when the user cannot traverse every
    /// ancestor of `dir`.
    pub fn check_traversable(&self, dir: &Path) -> Result<(), ProviderError> {
        if !self.switch {
            return Ok(());
        }
        let groups: Vec<u32> = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.uid))
            .ok()
            .flatten()
            .and_then(|u| {
                let name = std::ffi::CString::new(u.name).ok()?;
                nix::unistd::getgrouplist(&name, u.gid).ok()
            })
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_else(|| vec![self.gid]);
        let mut path = PathBuf::new();
        for part in dir.components() {
            path.push(part);
            let meta = fs::metadata(&path)
                .map_err(|e| ProviderError::io(format!("checking {}", path.display()), e))?;
            let mode = meta.mode();
            let ok = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if groups.contains(&meta.gid()) {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !ok {
                return Err(ProviderError::failed(
                    "local provider",
                    format!(
                        "the servers run as user {} (PostgreSQL refuses root), which cannot \
                         enter {} (mode {:o}); choose a state dir whose every parent it can \
                         traverse (FLYPLAN_HOME / --state-dir), or `chmod o+x {}`",
                        self.name,
                        path.display(),
                        mode & 0o7777,
                        path.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

pub fn mkdir(path: &Path, mode: u32) -> Result<(), ProviderError> {
    fs::create_dir_all(path)
        .map_err(|e| ProviderError::io(format!("creating {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ProviderError::io(format!("chmod {}", path.display()), e))
}

/// Paths of one app.
#[derive(Debug, Clone)]
pub struct AppPaths {
    pub root: PathBuf,
}

impl AppPaths {
    pub fn new(state_dir: &Path, app: &str) -> Self {
        AppPaths {
            root: state_dir.join("apps").join(app),
        }
    }
    pub fn app_json(&self) -> PathBuf {
        self.root.join("app.json")
    }
    pub fn apply_lock(&self) -> PathBuf {
        self.root.join("apply.lock")
    }
    pub fn state_lock(&self) -> PathBuf {
        self.root.join("state.lock")
    }
    /// Held while a node restarts, so one apply restarts one at a time.
    pub fn restart_lock(&self) -> PathBuf {
        self.root.join("restart.lock")
    }
    pub fn bootstrap_lock(&self) -> PathBuf {
        self.root.join("bootstrap.lock")
    }
    pub fn ports(&self) -> PathBuf {
        self.root.join("ports.json")
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets.json")
    }
    pub fn formation(&self) -> PathBuf {
        self.root.join("formation.json")
    }
    pub fn snapshot_policy(&self) -> PathBuf {
        self.root.join("snapshot_policy.json")
    }
    pub fn endpoint_json(&self) -> PathBuf {
        self.root.join("endpoint.json")
    }
    /// Server-owned runtime files: sockets, pid files, pg_autoctl's XDG dirs.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Unix socket directory of every server of the app.
    pub fn sock(&self) -> PathBuf {
        self.root.join("sock")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn monitor_pgdata(&self) -> PathBuf {
        self.root.join("monitor")
    }
    pub fn monitor_pid(&self) -> PathBuf {
        self.root.join("monitor.pid")
    }
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }
    pub fn volume_dir(&self, name: &str, region: &str, index: u32) -> PathBuf {
        self.volumes().join(format!("{name}-{region}-{index}"))
    }
    pub fn machines(&self) -> PathBuf {
        self.root.join("machines")
    }
    pub fn machine_json(&self, node: &str) -> PathBuf {
        self.machines().join(format!("{node}.json"))
    }
    pub fn keeper_pid(&self, node: &str) -> PathBuf {
        self.machines().join(format!("{node}.pid"))
    }
    pub fn haproxy(&self) -> PathBuf {
        self.root.join("haproxy")
    }
}

/// An exclusive advisory lock on a file, released on drop.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Block until the lock is ours.
    pub fn acquire(path: &Path) -> Result<Self, ProviderError> {
        let file = open_lock_file(path)?;
        FileExt::lock_exclusive(&file)
            .map_err(|e| ProviderError::io(format!("locking {}", path.display()), e))?;
        Ok(FileLock { _file: file })
    }
}

fn open_lock_file(path: &Path) -> Result<File, ProviderError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ProviderError::io(format!("opening {}", path.display()), e))
}

/// Read a JSON file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, ProviderError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            ProviderError::failed(format!("reading {}", path.display()), e.to_string())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ProviderError::io(format!("reading {}", path.display()), e)),
    }
}

/// Write a JSON file atomically (temp file + rename) with `mode`.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), ProviderError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| ProviderError::failed(format!("writing {}", path.display()), e.to_string()))?;
    write_file(path, &bytes, mode)
}

/// Write a file atomically with exactly `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProviderError> {
    crate::fsutil::write_atomic(path, bytes, Some(mode))
        .map_err(|e| ProviderError::io(format!("writing {}", path.display()), e))
}

/// Ports of one app by key (`monitor`, `endpoint`, or a machine address).
pub type Ports = BTreeMap<String, u16>;

const PORT_RANGE: std::ops::Range<u16> = 21000..30000;

/// The port recorded for `key`, or a newly allocated one that no app under
/// `state_dir` uses and nothing listens on. Stable once recorded.
pub fn port_for(state_dir: &Path, paths: &AppPaths, key: &str) -> Result<u16, ProviderError> {
    if let Some(p) = read_json::<Ports>(&paths.ports())?.and_then(|p| p.get(key).copied()) {
        return Ok(p);
    }
    // One lock for the whole state dir: allocation reads every app's ports.
    let _guard = FileLock::acquire(&state_dir.join("ports.lock"))?;
    let mut mine = read_json::<Ports>(&paths.ports())?.unwrap_or_default();
    if let Some(p) = mine.get(key) {
        return Ok(*p);
    }
    let mut taken = std::collections::BTreeSet::new();
    if let Ok(apps) = fs::read_dir(state_dir.join("apps")) {
        for app in apps.flatten() {
            if let Some(ports) = read_json::<Ports>(&app.path().join("ports.json"))? {
                taken.extend(ports.values().copied());
            }
        }
    }
    let span = PORT_RANGE.end - PORT_RANGE.start;
    let start = rand::rng().random_range(0..span);
    for i in 0..span {
        let port = PORT_RANGE.start + (start + i) % span;
        if taken.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        mine.insert(key.to_string(), port);
        write_json(&paths.ports(), &mine, 0o644)?;
        return Ok(port);
    }
    Err(ProviderError::failed(
        "allocating a port",
        format!("no free port in {PORT_RANGE:?}"),
    ))
}

/// The recorded port of `key`, if any.
pub fn recorded_port(paths: &AppPaths, key: &str) -> Option<u16> {
    read_json::<Ports>(&paths.ports())
        .ok()
        .flatten()
        .and_then(|p| p.get(key).copied())
}

/// Forget the port of `key`.
pub fn release_port(state_dir: &Path, paths: &AppPaths, key: &str) -> Result<(), ProviderError> {
    let _guard = FileLock::acquire(&state_dir.join("ports.lock"))?;
    if let Some(mut ports) = read_json::<Ports>(&paths.ports())? {
        if ports.remove(key).is_some() {
            write_json(&paths.ports(), &ports, 0o644)?;
        }
    }
    Ok(())
}

/// Remove a file, ignoring that it does not exist.
pub fn remove_file(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProviderError::io(format!("removing {}", path.display()), e)),
    }
}

/// Remove a directory tree, ignoring that it does not exist.
pub fn remove_dir(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ProviderError::io(format!("removing {}", path.display()), e)),
    }
}

/// Bytes used by the files under `path`.
pub fn disk_usage(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

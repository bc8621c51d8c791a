//! Lock files: the per-app apply lock of the providers that keep state on
//! this machine, and the lock that keeps two watches of one repository
//! apart. A lock is an exclusive, non-blocking `flock` on a file; its holder
//! is named in a second file beside it (`<lock>.holder`), written whole with
//! a rename after the lock is taken and removed before it is released, so a
//! reader never sees a half-written or a finished holder.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use super::{LockGuard, ProviderError};

/// How long a losing attempt waits for the holder to name itself (the
/// winner writes its holder file right after taking the lock).
const HOLDER_WAIT: Duration = Duration::from_secs(2);

struct FileLock {
    holder: PathBuf,
    // Closing the file releases the lock; it is dropped after the holder
    // file is removed.
    _file: File,
}

impl LockGuard for FileLock {}

impl Drop for FileLock {
    fn drop(&mut self) {
        if read_holder(&self.holder).map(|(pid, _)| pid) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.holder);
        }
    }
}

/// The file that names the holder of the lock on `path`.
pub fn holder_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".holder");
    PathBuf::from(name)
}

/// An exclusive, non-blocking lock on `path`, recording the holder's pid.
///
/// # Errors
/// [`ProviderError::Locked`] naming the live holder (`pid N since T`), or
/// `unknown holder` when none named itself within a moment.
pub fn lock_file(path: &Path, app: &str) -> Result<Box<dyn LockGuard>, ProviderError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ProviderError::io("create lock dir", e))?;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ProviderError::io(format!("open {}", path.display()), e))?;
    let holder = holder_path(path);
    let deadline = Instant::now() + HOLDER_WAIT;
    loop {
        if let Ok(true) = FileExt::try_lock_exclusive(&f) {
            let now = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let text = format!("pid {} since {now}\n", std::process::id());
            crate::fsutil::write_atomic(&holder, text.as_bytes(), Some(0o644))
                .map_err(|e| ProviderError::io(format!("write {}", holder.display()), e))?;
            return Ok(Box::new(FileLock { holder, _file: f }));
        }
        // The holder file may still name a holder that died without
        // removing it, or not be written yet: only a live pid counts.
        if let Some((pid, text)) = read_holder(&holder) {
            if pid_alive(pid) {
                return Err(ProviderError::Locked {
                    app: app.to_string(),
                    holder: text,
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(ProviderError::Locked {
                app: app.to_string(),
                holder: "unknown holder".to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pid and text of a holder file, if it names one.
fn read_holder(path: &Path) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim().to_string();
    let pid = text
        .strip_prefix("pid ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((pid, text))
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

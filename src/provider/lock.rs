//! Lock files: the per-app apply lock of the providers that keep state on
//! this machine, and the lock that keeps two watches of one repository
//! apart. A lock is an exclusive, non-blocking `flock` on a file that names
//! its holder.

use std::fs::File;
use std::path::Path;

use fs4::fs_std::FileExt;

use super::{LockGuard, ProviderError};

struct FileLock(#[allow(dead_code)] File);
impl LockGuard for FileLock {}

/// An exclusive, non-blocking lock on `path`, recording the holder's pid.
pub fn lock_file(path: &Path, app: &str) -> Result<Box<dyn LockGuard>, ProviderError> {
    use std::io::{Read, Seek, Write};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ProviderError::io("create lock dir", e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ProviderError::io(format!("open {}", path.display()), e))?;
    match FileExt::try_lock_exclusive(&f) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(ProviderError::Locked {
                app: app.to_string(),
                holder: if holder.is_empty() {
                    "unknown holder".to_string()
                } else {
                    holder.to_string()
                },
            });
        }
    }
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let _ = f.set_len(0);
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = write!(f, "pid {} since {now}", std::process::id());
    let _ = f.flush();
    Ok(Box::new(FileLock(f)))
}

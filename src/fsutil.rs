//! Writing a file whole or not at all: every state file, ledger and record
//! flyplan keeps goes through [`write_atomic`], so a crash or a concurrent
//! reader never sees half of one, and a secret file is never readable by
//! others, not even for a moment.

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Replace `path` with `bytes` atomically: the bytes go to a new temporary
/// file in the same directory, which is synced, given its mode, renamed over
/// `path`, and the directory synced so the rename itself survives a crash.
///
/// With `mode`, the file gets exactly that mode (the umask does not apply),
/// set before the file is renamed into place. Without, it is created as
/// `std::fs::write` would create it (0666 less the umask).
///
/// # Errors
/// The directory is not writable, the disk is full, or `path` names a
/// directory. The temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(Permissions::from_mode(mode.unwrap_or(0o666)))
        .tempfile_in(dir)?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one\n", None).unwrap();
        write_atomic(&path, b"two\n", None).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn a_given_mode_is_exact_and_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"{}", Some(0o600)).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        write_atomic(&path, b"#!/bin/sh\n", Some(0o755)).unwrap();
        assert_eq!(mode_of(&path), 0o755);
    }

    #[test]
    fn without_a_mode_the_file_is_made_like_fs_write_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::write(&plain, b"x").unwrap();
        let atomic = dir.path().join("atomic");
        write_atomic(&atomic, b"x", None).unwrap();
        assert_eq!(mode_of(&atomic), mode_of(&plain));
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), b"x").unwrap();
        assert!(write_atomic(&path, b"x", None).is_err());
        assert!(path.join("inside").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

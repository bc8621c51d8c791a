//! The snapshot store on disk: where an app's snapshots live, finding one
//! by id, listing them, naming a new one, and holding an app's snapshot lock
//! (which clears what a killed run left half taken).

use std::fs;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::files::{snapshot_failed, valid_id};
use super::{MANIFEST, PARTIAL};
use crate::provider::local::state::{self, FileLock};
use crate::provider::local::LocalProvider;
use crate::provider::{Provider, ProviderError};
use crate::snapshot::Manifest;

impl LocalProvider {
    /// `<state_dir>/snapshots`.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.state_dir.join("snapshots")
    }

    pub(super) fn app_snapshots_dir(&self, app: &str) -> PathBuf {
        self.snapshots_dir().join(app)
    }

    /// The directory of snapshot `id`, whichever app it belongs to.
    ///
    /// # Errors
    /// The id is malformed or no app has such a snapshot.
    pub(in crate::provider::local) fn snapshot_path(
        &self,
        id: &str,
    ) -> Result<PathBuf, ProviderError> {
        if !valid_id(id) {
            return Err(snapshot_failed(
                format!("snapshot {id:?}"),
                "not a snapshot id (letters, digits, `_` and `-`)",
            ));
        }
        if let Ok(apps) = fs::read_dir(self.snapshots_dir()) {
            for app in apps.flatten() {
                let dir = app.path().join(id);
                if dir.join(MANIFEST).is_file() {
                    return Ok(dir);
                }
            }
        }
        Err(snapshot_failed(
            format!("snapshot {id}"),
            format!(
                "no such snapshot under {} (see `flyplan snapshots list`)",
                self.snapshots_dir().display()
            ),
        ))
    }

    pub(super) fn read_manifest(&self, dir: &Path) -> Result<Manifest, ProviderError> {
        let path = dir.join(MANIFEST);
        state::read_json::<Manifest>(&path)?
            .ok_or_else(|| snapshot_failed(path.display().to_string(), "missing"))
    }

    /// Snapshots of one app, oldest first (partial ones are not listed).
    pub(super) fn list_app(&self, app: &str) -> Result<Vec<Manifest>, ProviderError> {
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(self.app_snapshots_dir(app)) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !valid_id(&name) || !e.path().join(MANIFEST).is_file() {
                continue;
            }
            out.push(self.read_manifest(&e.path())?);
        }
        out.sort_by(|a, b| a.taken_at.cmp(&b.taken_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Make the snapshot directories of an app (mode 0711 up to it).
    fn snapshot_layout(&self, app: &str) -> Result<PathBuf, ProviderError> {
        let dir = self.app_snapshots_dir(app);
        for d in [self.snapshots_dir(), dir.clone()] {
            if !d.exists() {
                state::mkdir(&d, 0o711)?;
            }
        }
        Ok(dir)
    }

    /// Hold what a snapshot of an app needs: the app exists, its apply
    /// lock (no apply changes the nodes meanwhile) and its snapshot lock.
    pub(super) fn hold_for_snapshots(
        &self,
        app: &str,
    ) -> Result<(Box<dyn crate::provider::LockGuard>, FileLock), ProviderError> {
        let ctx = self.app(app);
        if !ctx.exists() {
            return Err(snapshot_failed(
                format!("app {app}"),
                "does not exist (apply it first)",
            ));
        }
        let apply = self.lock(app)?;
        let dir = self.snapshot_layout(app)?;
        let lock = FileLock::acquire(&dir.join(".lock"))?;
        // Left by a run that was killed: never a snapshot.
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(PARTIAL) {
                    state::remove_dir(&e.path())?;
                }
            }
        }
        Ok((apply, lock))
    }
}

/// `snap-<app>-<volume>-<YYYYMMDDTHHMMSSZ>`, with `-2`, `-3`... when that
/// second already has one.
pub(super) fn unique_id(dir: &Path, app: &str, volume: &str, now: OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    let base = format!(
        "snap-{app}-{volume}-{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
    .replace(
        |c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "-",
    );
    let mut id = base.clone();
    let mut n = 1;
    while dir.join(&id).exists() || dir.join(format!("{PARTIAL}{id}")).exists() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_name_the_app_volume_and_second() {
        let dir = tempfile::tempdir().unwrap();
        let t = datetime!(2026-11-20 00:00:05 UTC);
        let id = unique_id(dir.path(), "pg-fixture", "pg_data", t);
        assert_eq!(id, "snap-pg-fixture-pg_data-20261120T000005Z");
        fs::create_dir(dir.path().join(&id)).unwrap();
        assert_eq!(
            unique_id(dir.path(), "pg-fixture", "pg_data", t),
            "snap-pg-fixture-pg_data-20261120T000005Z-2"
        );
    }

    #[test]
    fn ids_that_could_leave_the_store_are_refused() {
        assert!(valid_id("snap-a-pg_data-20261120T000000Z"));
        for bad in ["", "..", "../x", "a/b", ".partial-x", "a b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}

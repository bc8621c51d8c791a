//! Restoring from a snapshot: a new node's data directory filled from the
//! copy, every file checked against its recorded SHA-256 on the way.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::files::{
    hash_file, left_out_of_restore, parse_sums, snapshot_failed, walk_data, Entry, RESET_ON_RESTORE,
};
use super::{DATA, SUMS};
use crate::provider::local::state;
use crate::provider::local::AppCtx;
use crate::provider::ProviderError;

impl AppCtx<'_> {
    /// Fill an empty `pgdata` from a snapshot, checking every file's SHA-256
    /// as it is copied, and leave out or reset what belonged to the source
    /// node (see [`left_out_of_restore`], [`RESET_ON_RESTORE`]). The copy
    /// keeps `backup_label`, so PostgreSQL replays the WAL of the backup on
    /// first start.
    ///
    /// # Errors
    /// A file differs from its recorded checksum, or is missing.
    pub(in crate::provider::local) fn copy_snapshot_into(
        &self,
        id: &str,
        pgdata: &Path,
    ) -> Result<(), ProviderError> {
        let provider = self.provider;
        let dir = provider.snapshot_path(id)?;
        let what = format!("restoring snapshot {id}");
        let sums = fs::read_to_string(dir.join(SUMS))
            .map_err(|e| ProviderError::io(format!("{what}: reading {SUMS}"), e))?;
        let mut want =
            parse_sums(&sums).map_err(|m| snapshot_failed(&what, format!("{SUMS}: {m}")))?;
        let user = self.user();
        for e in walk_data(&dir)? {
            match e {
                Entry::Dir(rel) => {
                    if rel.starts_with("data/log/") {
                        continue;
                    }
                    let to = pgdata.join(
                        rel.strip_prefix(DATA)
                            .unwrap_or(&rel)
                            .trim_start_matches('/'),
                    );
                    user.mkdir(&to, 0o700)?;
                }
                Entry::File(rel, path) => {
                    let expected = want.remove(&rel).ok_or_else(|| {
                        snapshot_failed(
                            &what,
                            format!("{rel}: a file that the snapshot did not have"),
                        )
                    })?;
                    let target = pgdata.join(rel.strip_prefix("data/").unwrap_or(&rel));
                    let hash = if left_out_of_restore(&rel) {
                        hash_file(&path, None)
                    } else {
                        let mut out = File::create(&target).map_err(|e| {
                            ProviderError::io(format!("writing {}", target.display()), e)
                        })?;
                        let r = hash_file(&path, Some(&mut out));
                        out.set_permissions(fs::Permissions::from_mode(0o600))
                            .map_err(|e| {
                                ProviderError::io(format!("chmod {}", target.display()), e)
                            })?;
                        user.chown(&target)?;
                        r
                    }
                    .map_err(|e| ProviderError::io(format!("{what}: {rel}"), e))?
                    .0;
                    if hash != expected {
                        return Err(snapshot_failed(
                            &what,
                            format!("{rel}: SHA-256 mismatch: the snapshot is corrupt"),
                        ));
                    }
                }
            }
        }
        if let Some(missing) = want.keys().next() {
            return Err(snapshot_failed(
                &what,
                format!("{missing}: missing from the snapshot"),
            ));
        }
        for (name, body) in RESET_ON_RESTORE {
            let path = pgdata.join(name);
            state::write_file(&path, body.as_bytes(), 0o600)?;
            user.chown(&path)?;
        }
        Ok(())
    }
}

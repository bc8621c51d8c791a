//! Checking a snapshot: our manifest, the checksum of `SHA256SUMS`, every
//! file's SHA-256, then PostgreSQL's own `pg_verifybackup`.

use std::fs;
use std::path::Path;

use super::files::{hash_file, parse_sums, sha256_hex, snapshot_failed, walk_data, Entry};
use super::{DATA, SUMS};
use crate::provider::local::LocalProvider;
use crate::provider::ProviderError;
use crate::snapshot::Manifest;

impl LocalProvider {
    /// Check a snapshot directory: our manifest, the checksum of
    /// `SHA256SUMS`, every file's SHA-256 (none missing, none added), then
    /// `pg_verifybackup` against PostgreSQL's backup manifest.
    ///
    /// # Errors
    /// The first problem found, naming the file and what failed.
    pub(in crate::provider::local) fn verify_dir(
        &self,
        dir: &Path,
    ) -> Result<Manifest, ProviderError> {
        let manifest = self.read_manifest(dir)?;
        let what = format!("snapshot {}", manifest.id);
        let bad =
            |message: String| snapshot_failed(&what, format!("verification failed: {message}"));
        let sums_path = dir.join(SUMS);
        let sums_text = fs::read(&sums_path).map_err(|e| bad(format!("{SUMS}: {e}")))?;
        let found = format!("sha256:{}", sha256_hex(&sums_text));
        if found != manifest.checksum {
            return Err(bad(format!(
                "{SUMS}: its checksum is {found}, the manifest recorded {}",
                manifest.checksum
            )));
        }
        let mut want = parse_sums(&String::from_utf8_lossy(&sums_text))
            .map_err(|m| bad(format!("{SUMS}: {m}")))?;
        for e in walk_data(dir).map_err(|e| bad(e.to_string()))? {
            let Entry::File(rel, path) = e else { continue };
            let Some(expected) = want.remove(&rel) else {
                return Err(bad(format!("{rel}: a file that the snapshot did not have")));
            };
            let (hash, _) = hash_file(&path, None).map_err(|e| bad(format!("{rel}: {e}")))?;
            if hash != expected {
                return Err(bad(format!(
                    "{rel}: SHA-256 mismatch (recorded {}…, found {}…): the file changed after the snapshot was taken",
                    &expected[..12.min(expected.len())],
                    &hash[..12]
                )));
            }
        }
        if let Some(missing) = want.keys().next() {
            return Err(bad(format!("{missing}: missing")));
        }
        self.pg_verifybackup(&dir.join(DATA))
            .map_err(|m| bad(format!("pg_verifybackup: {m}")))?;
        Ok(manifest)
    }

    /// `pg_verifybackup` of a copy; its complaints when it fails.
    pub(super) fn pg_verifybackup(&self, data: &Path) -> Result<(), String> {
        let mut cmd = self.client_cmd("pg_verifybackup", data.parent().unwrap_or(data));
        cmd.arg(data);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.tools.pg_bindir.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_start_matches("pg_verifybackup: ").trim())
            .filter(|l| !l.is_empty())
            .take(5)
            .collect();
        Err(if lines.is_empty() {
            out.status.to_string()
        } else {
            lines.join("; ")
        })
    }
}

//! The integrity of a snapshot's files: SHA-256 of every file as it is
//! written or copied, the `SHA256SUMS` list and reading it back, and which
//! files of a source node a restored data directory leaves out or resets.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::DATA;
use crate::provider::ProviderError;

pub(super) fn snapshot_failed(
    what: impl Into<String>,
    message: impl Into<String>,
) -> ProviderError {
    ProviderError::failed(what, message)
}

/// Snapshot ids are names of directories: letters, digits, `_` and `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 of a file, and its size; when `copy_to` is given the bytes are
/// written there as they are read.
pub(super) fn hash_file(
    path: &Path,
    mut copy_to: Option<&mut File>,
) -> std::io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some(out) = copy_to.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// An entry of a snapshot's data tree, by its path relative to the
/// snapshot directory (`data/base/5/1259`).
pub(super) enum Entry {
    Dir(String),
    File(String, PathBuf),
}

/// Every directory and file under `root/data`, sorted by path; symlinks
/// (tablespaces) are refused.
pub(super) fn walk_data(root: &Path) -> Result<Vec<Entry>, ProviderError> {
    let mut out = Vec::new();
    let mut stack = vec![(DATA.to_string(), root.join(DATA))];
    while let Some((rel, dir)) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| ProviderError::io(format!("reading {}", dir.display()), e))?
            .collect::<Result<_, _>>()
            .map_err(|e| ProviderError::io(format!("reading {}", dir.display()), e))?;
        children.sort_by_key(|e| e.file_name());
        out.push(Entry::Dir(rel.clone()));
        for child in children.into_iter().rev() {
            let name = child.file_name().to_string_lossy().into_owned();
            let path = child.path();
            let child_rel = format!("{rel}/{name}");
            let kind = child
                .file_type()
                .map_err(|e| ProviderError::io(format!("reading {}", path.display()), e))?;
            if kind.is_dir() {
                stack.push((child_rel, path));
            } else if kind.is_file() {
                out.push(Entry::File(child_rel, path));
            } else {
                return Err(snapshot_failed(
                    child_rel,
                    "not a regular file or directory (tablespaces are not supported)",
                ));
            }
        }
    }
    out.sort_by(|a, b| entry_rel(a).cmp(entry_rel(b)));
    Ok(out)
}

pub(super) fn entry_rel(e: &Entry) -> &str {
    match e {
        Entry::Dir(r) | Entry::File(r, _) => r,
    }
}

/// `SHA256SUMS` of a snapshot directory's data: the text, total bytes and
/// number of files.
pub(super) fn checksum_tree(root: &Path) -> Result<(String, u64, u64), ProviderError> {
    let mut text = String::new();
    let (mut size, mut files) = (0u64, 0u64);
    for e in walk_data(root)? {
        if let Entry::File(rel, path) = e {
            let (hash, n) = hash_file(&path, None)
                .map_err(|e| ProviderError::io(format!("reading {}", path.display()), e))?;
            text.push_str(&format!("{hash}  {rel}\n"));
            size += n;
            files += 1;
        }
    }
    Ok((text, size, files))
}

/// `SHA256SUMS` read back: path → hash.
pub(super) fn parse_sums(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some((hash, rel)) = line.split_once("  ") else {
            return Err(format!("line {} is not `<sha256>  <path>`", i + 1));
        };
        out.insert(rel.to_string(), hash.to_string());
    }
    Ok(out)
}

/// Files of a snapshot that a restored data directory does not take over:
/// the backup's own bookkeeping, the source node's standby and recovery
/// signals, its logs and run files.
pub(super) fn left_out_of_restore(rel: &str) -> bool {
    let Some(inner) = rel.strip_prefix("data/") else {
        return true;
    };
    matches!(
        inner,
        "backup_manifest"
            | "backup_label.old"
            | "standby.signal"
            | "recovery.signal"
            | "postmaster.pid"
            | "postmaster.opts"
            | "current_logfiles"
            | "startup.log"
    ) || inner.starts_with("log/")
}

/// Files a restored data directory gets afresh: pg_auto_failover's standby
/// settings of the source (the new node starts as a primary, and
/// `pg_autoctl` writes them again when it needs them), and `ALTER SYSTEM`
/// settings the source's keeper made (synchronous standby names that name
/// the source's standbys).
pub(super) const RESET_ON_RESTORE: &[(&str, &str)] = &[
    ("postgresql-auto-failover-standby.conf", ""),
    (
        "postgresql.auto.conf",
        "# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_round_trip_and_name_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join(DATA);
        fs::create_dir_all(data.join("base/5")).unwrap();
        fs::write(data.join("PG_VERSION"), "15\n").unwrap();
        fs::write(data.join("base/5/1259"), vec![7u8; 3000]).unwrap();
        let (text, size, files) = checksum_tree(dir.path()).unwrap();
        assert_eq!((size, files), (3003, 2));
        let sums = parse_sums(&text).unwrap();
        assert_eq!(
            sums.keys().collect::<Vec<_>>(),
            ["data/PG_VERSION", "data/base/5/1259"]
        );
        fs::write(data.join("base/5/1259"), vec![8u8; 3000]).unwrap();
        let (again, _, _) = checksum_tree(dir.path()).unwrap();
        let changed: Vec<_> = parse_sums(&again)
            .unwrap()
            .into_iter()
            .filter(|(k, v)| sums.get(k) != Some(v))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(changed, ["data/base/5/1259"]);
    }

    #[test]
    fn a_restore_leaves_out_the_source_nodes_signals_and_logs() {
        for rel in [
            "data/standby.signal",
            "data/backup_manifest",
            "data/log/postgresql-Sat.log",
            "data/postmaster.opts",
        ] {
            assert!(left_out_of_restore(rel), "{rel}");
        }
        for rel in [
            "data/backup_label",
            "data/base/5/1259",
            "data/pg_wal/000000010000000000000003",
        ] {
            assert!(!left_out_of_restore(rel), "{rel}");
        }
    }
}

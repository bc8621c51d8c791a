//! Writing a commit's fly.toml files, and the secret files they name, to
//! disk where the config loader can read them.

use std::path::{Component, Path};

use crate::config::{self, SecretSource};

use super::git;
use super::watcher::Watcher;
use super::{ReconcileError, Target, TargetFile};

impl Watcher {
    /// Write the commit's fly.toml files (and the `from_file` secret files
    /// they name, when the commit has them) to
    /// `<dir>/checkout/<rev>/<repo name>/<path>`, the directory layout of a
    /// clone, so relative paths and directory-named apps work. Checkouts of
    /// older revisions are removed.
    pub(super) fn checkout(&self, head: git2::Oid) -> Result<Target, ReconcileError> {
        let revision = head.to_string();
        let files = self
            .mirror
            .fly_tomls(head, &self.opts.path)
            .map_err(|e| ReconcileError::git(format!("find {}", self.opts.path), e))?;
        let base = self.dir.join("checkout");
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name() != revision.as_str() {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let root = base
            .join(&revision)
            .join(git::repo_name(&git::normalise_url(&self.opts.repo)));
        let mut target = Target {
            revision: revision.clone(),
            files: Vec::new(),
        };
        for file in files {
            let path = root.join(&file);
            self.extract(head, &file, &path)?;
            // Secret files referenced relative to the fly.toml.
            if let Ok(config) = config::load(&path) {
                for source in config.secrets.values() {
                    if let SecretSource::File { path: rel } = source {
                        let Some(in_repo) = join_inside(&file, rel) else {
                            continue;
                        };
                        self.extract(head, &in_repo, &root.join(&in_repo))?;
                    }
                }
            }
            target.files.push(TargetFile { file, path });
        }
        Ok(target)
    }

    fn extract(&self, head: git2::Oid, file: &str, to: &Path) -> Result<(), ReconcileError> {
        let Some(bytes) = self
            .mirror
            .read(head, file)
            .map_err(|e| ReconcileError::git(format!("read {file}"), e))?
        else {
            return Ok(());
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| ReconcileError::io(format!("create {}", parent.display()), e))?;
        }
        write_private(to, &bytes).map_err(|e| ReconcileError::io(format!("write {file}"), e))
    }
}

/// Write a file readable by its owner only (checkouts may hold secret files).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// `rel` taken relative to the directory of `file`, both inside the
/// repository; `None` when it leaves the repository or is absolute.
fn join_inside(file: &str, rel: &Path) -> Option<String> {
    let mut parts: Vec<String> = Path::new(file)
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for c in rel.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

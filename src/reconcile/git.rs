//! The watched repository: a bare mirror kept up to date with git2 (local
//! paths, `file://`, https and ssh with the usual credentials), and fly.toml
//! files read from a commit's tree without a work tree.

use std::path::{Path, PathBuf};

use git2::{CredentialType, FetchOptions, Oid, RemoteCallbacks, Repository};

/// A repository location as given on the command line, normalised: local
/// paths become absolute so the same repository always maps to one mirror.
pub fn normalise_url(repo: &str) -> String {
    if repo.contains("://") || is_scp_like(repo) {
        return repo.to_string();
    }
    let p = Path::new(repo);
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| repo.to_string())
}

/// `git@github.com:org/repo.git`: ssh in scp syntax.
fn is_scp_like(repo: &str) -> bool {
    match (repo.find(':'), repo.find('/')) {
        (Some(colon), Some(slash)) => colon < slash && colon > 1,
        (Some(colon), None) => colon > 1,
        _ => false,
    }
}

/// The repository's name (last path segment without `.git`), which a clone
/// would use as its directory name.
pub fn repo_name(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    let last = trimmed
        .rsplit(['/', ':'])
        .next()
        .unwrap_or(trimmed)
        .trim_end_matches(".git");
    if last.is_empty() {
        "repo".to_string()
    } else {
        last.to_string()
    }
}

/// A bare mirror of one branch of a remote repository.
pub struct Mirror {
    repo: Repository,
    url: String,
}

impl Mirror {
    /// Open the mirror at `dir`, creating an empty bare repository there the
    /// first time.
    ///
    /// # Errors
    /// The directory cannot be created or is not a git repository.
    pub fn open(dir: &Path, url: &str) -> Result<Self, git2::Error> {
        let repo = if dir.join("HEAD").exists() {
            Repository::open_bare(dir)?
        } else {
            std::fs::create_dir_all(dir).map_err(|e| git2::Error::from_str(&e.to_string()))?;
            Repository::init_bare(dir)?
        };
        Ok(Mirror {
            repo,
            url: url.to_string(),
        })
    }

    /// Fetch `branch` (forced: a rewritten branch is followed) and return
    /// the commit it points at.
    ///
    /// # Errors
    /// The remote cannot be reached, refuses the credentials, or has no
    /// such branch.
    pub fn fetch(&self, branch: &str) -> Result<Oid, git2::Error> {
        let mut remote = self.repo.remote_anonymous(&self.url)?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks());
        opts.download_tags(git2::AutotagOption::None);
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        remote.fetch(&[refspec], Some(&mut opts), None)?;
        let oid = self.repo.refname_to_id(&format!("refs/heads/{branch}"))?;
        self.repo.find_commit(oid)?;
        Ok(oid)
    }

    /// The first line of the commit's message.
    pub fn message(&self, oid: Oid) -> String {
        self.repo
            .find_commit(oid)
            .ok()
            .and_then(|c| {
                c.summary_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            })
            .unwrap_or_default()
    }

    /// The fly.toml files `path` names in the commit: `path` itself when it
    /// is a file, every file named `fly.toml` below it when it is a
    /// directory. Paths are relative to the repository root, sorted.
    ///
    /// # Errors
    /// `path` does not exist in the commit, or names a directory without
    /// any fly.toml.
    pub fn fly_tomls(&self, oid: Oid, path: &str) -> Result<Vec<String>, git2::Error> {
        let tree = self.repo.find_commit(oid)?.tree()?;
        let path = path.trim_matches('/');
        let dir_tree = if path.is_empty() || path == "." {
            tree
        } else {
            let entry = tree.get_path(Path::new(path))?;
            match entry.kind() {
                Some(git2::ObjectType::Blob) => return Ok(vec![path.to_string()]),
                Some(git2::ObjectType::Tree) => self.repo.find_tree(entry.id())?,
                _ => {
                    return Err(git2::Error::from_str(&format!(
                        "{path} is neither a file nor a directory"
                    )))
                }
            }
        };
        let prefix = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut found = Vec::new();
        dir_tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            if entry.kind() == Some(git2::ObjectType::Blob) && entry.name().ok() == Some("fly.toml")
            {
                found.push(format!("{prefix}{root}fly.toml"));
            }
            git2::TreeWalkResult::Ok
        })?;
        if found.is_empty() {
            return Err(git2::Error::from_str(&format!(
                "no fly.toml under {}",
                if prefix.is_empty() { "." } else { path }
            )));
        }
        found.sort();
        Ok(found)
    }

    /// The bytes of the file at `path` in the commit, or `None`.
    ///
    /// # Errors
    /// The commit cannot be read.
    pub fn read(&self, oid: Oid, path: &str) -> Result<Option<Vec<u8>>, git2::Error> {
        let tree = self.repo.find_commit(oid)?.tree()?;
        let Ok(entry) = tree.get_path(Path::new(path)) else {
            return Ok(None);
        };
        match entry.to_object(&self.repo)?.into_blob() {
            Ok(blob) => Ok(Some(blob.content().to_vec())),
            Err(_) => Ok(None),
        }
    }
}

/// Credentials as git users expect them, tried in order and each once:
/// ssh-agent, then `~/.ssh/id_ed25519` and `~/.ssh/id_rsa` (passphrase from
/// `GIT_SSH_PASSPHRASE`); for https `GIT_USERNAME`/`GIT_PASSWORD`, a token
/// in `GIT_TOKEN` or `GITHUB_TOKEN`, then git's credential helpers.
fn callbacks() -> RemoteCallbacks<'static> {
    let mut cb = RemoteCallbacks::new();
    let mut tried_agent = false;
    let mut keys = ssh_keys().into_iter();
    let mut tried_userpass = false;
    let mut tried_helper = false;
    let mut tried_default = false;
    cb.credentials(move |url, username_from_url, allowed| {
        let user = username_from_url.unwrap_or("git");
        if allowed.contains(CredentialType::USERNAME) {
            return git2::Cred::username(user);
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            if !tried_agent {
                tried_agent = true;
                if std::env::var_os("SSH_AUTH_SOCK").is_some() {
                    return git2::Cred::ssh_key_from_agent(user);
                }
            }
            if let Some(key) = keys.next() {
                let pass = std::env::var("GIT_SSH_PASSPHRASE").ok();
                return git2::Cred::ssh_key(user, None, &key, pass.as_deref());
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if !tried_userpass {
                tried_userpass = true;
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                if let (Some(u), Some(p)) = (env("GIT_USERNAME"), env("GIT_PASSWORD")) {
                    return git2::Cred::userpass_plaintext(&u, &p);
                }
                if let Some(token) = env("GIT_TOKEN").or_else(|| env("GITHUB_TOKEN")) {
                    let u = env("GIT_USERNAME")
                        .or_else(|| username_from_url.map(str::to_string))
                        .unwrap_or_else(|| "x-access-token".to_string());
                    return git2::Cred::userpass_plaintext(&u, &token);
                }
            }
            if !tried_helper {
                tried_helper = true;
                if let Ok(config) = git2::Config::open_default() {
                    if let Ok(c) = git2::Cred::credential_helper(&config, url, username_from_url)
                    {
                        return Ok(c);
                    }
                }
            }
        }
        if allowed.contains(CredentialType::DEFAULT) && !tried_default {
            tried_default = true;
            return git2::Cred::default();
        }
        Err(git2::Error::from_str(&format!(
            "no credentials accepted for {url} (tried ssh-agent, ~/.ssh keys, GIT_USERNAME/GIT_PASSWORD, GIT_TOKEN, credential helpers)"
        )))
    });
    cb
}

fn ssh_keys() -> Vec<PathBuf> {
    let Some(home) = std::env::var_os("HOME") else {
        return Vec::new();
    };
    let ssh = PathBuf::from(home).join(".ssh");
    ["id_ed25519", "id_ecdsa", "id_rsa"]
        .iter()
        .map(|n| ssh.join(n))
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scp_syntax_and_urls_are_kept_and_names_come_from_the_last_segment() {
        assert_eq!(
            normalise_url("git@github.com:acme/db.git"),
            "git@github.com:acme/db.git"
        );
        assert_eq!(
            normalise_url("https://github.com/acme/db"),
            "https://github.com/acme/db"
        );
        assert!(normalise_url("relative/dir").starts_with('/'));
        assert_eq!(repo_name("git@github.com:acme/db.git"), "db");
        assert_eq!(repo_name("https://github.com/acme/infra/"), "infra");
        assert_eq!(repo_name("/srv/git/pg.git"), "pg");
    }
}

//! Whether the store of a backup policy answers, checked where flyplan
//! runs before a plan that sets the policy is shown: `barman-cloud-backup-list`
//! against it as the user running flyplan, its keys in a private temporary
//! credentials file (never on a command line).

use super::{barman, StoreUrl, PROFILE};
use crate::error::ProviderError;

/// What a store check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The store answered a list.
    Answered,
    /// barman-cloud is not installed here, so nothing was asked.
    NoBarman,
}

/// List the store in `url` (the value of secret `secret`).
///
/// # Errors
/// A malformed URL, or a store that cannot be reached or read, said
/// without its keys.
pub fn check_store(secret: &str, url: &str) -> Result<Checked, ProviderError> {
    let what = format!("secret {secret}");
    let url =
        StoreUrl::parse(url, true).map_err(|e| ProviderError::failed(&what, e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("flyplan-store-")
        .tempdir()
        .map_err(|e| ProviderError::io("creating a temporary directory", e))?;
    let creds = dir.path().join("credentials");
    crate::fsutil::write_atomic(
        &creds,
        url.credentials_section(PROFILE).as_bytes(),
        Some(0o600),
    )
    .map_err(|e| ProviderError::io(format!("writing {}", creds.display()), e))?;
    let out = match std::process::Command::new("barman-cloud-backup-list")
        .args(barman::list_args(&url, PROFILE))
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds)
        .env("AWS_CONFIG_FILE", dir.path().join("config"))
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checked::NoBarman),
        Err(e) => return Err(ProviderError::io("running barman-cloud-backup-list", e)),
    };
    if out.status.success() {
        return Ok(Checked::Answered);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .replace(&url.secret_key, "********");
    Err(ProviderError::failed(
        format!("object store {url} (secret {secret})"),
        format!("cannot be read: {last}"),
    ))
}

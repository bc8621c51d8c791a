//! Continuous backups to an object store, as postgres-flex makes them: the
//! store URL (`https://KEY:SECRET@host[:port]/bucket/directory`, the value
//! of `S3_ARCHIVE_CONFIG`), barman-cloud's arguments with `bucket` as the
//! bucket and `directory` as barman's server name, the barman settings and
//! their retention policy. Provider-neutral: providers run the commands.

pub mod barman;
pub mod check;

use std::fmt;

use crate::model::BackupPolicySpec;

/// The AWS profile barman-cloud reads the store's keys from, as in
/// postgres-flex (`DefaultAuthProfile`).
pub const PROFILE: &str = "barman";
/// The profile of a restore source (postgres-flex's `RestoreAuthProfile`).
pub const RESTORE_PROFILE: &str = "restore";

/// A parsed store URL. `Debug` and `Display` never show the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// `https`, or `http` for an endpoint on this machine (local provider).
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    pub bucket: String,
    pub directory: String,
    pub access_key: String,
    pub secret_key: String,
}

/// Why a store URL is malformed; never holds the URL or its keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(pub String);

/// The form every message about a store URL gives.
pub const URL_FORM: &str = "https://ACCESS_KEY:SECRET_KEY@host[:port]/bucket/directory";

impl StoreUrl {
    /// Parse a store URL; `allow_http` lets an `http://` endpoint through.
    ///
    /// # Errors
    /// Anything that is not `scheme://KEY:SECRET@host[:port]/bucket/directory`,
    /// said without repeating the value.
    pub fn parse(text: &str, allow_http: bool) -> Result<StoreUrl, UrlError> {
        let bad = |why: &str| UrlError(format!("{why}; expected {URL_FORM}"));
        let url = url::Url::parse(text.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
        let scheme = url.scheme().to_string();
        match scheme.as_str() {
            "https" => {}
            "http" if allow_http => {}
            "http" => return Err(bad("http:// is only for an endpoint on this machine")),
            other => return Err(bad(&format!("unsupported scheme {other:?}"))),
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) if !h.is_empty() => format!("{h}:{p}"),
            (Some(h), None) if !h.is_empty() => h.to_string(),
            _ => return Err(bad("the object storage endpoint is missing")),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let access_key = decode(url.username());
        let secret_key = decode(url.password().unwrap_or(""));
        if access_key.is_empty() || secret_key.is_empty() {
            return Err(bad("the access key or the secret key is missing"));
        }
        let parts: Vec<&str> = url.path().trim_matches('/').split('/').collect();
        let [bucket, directory] = parts.as_slice() else {
            return Err(bad("the path must be /bucket/directory"));
        };
        if bucket.is_empty() || directory.is_empty() {
            return Err(bad("the bucket or the directory is missing"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a query or fragment is not part of a store URL"));
        }
        Ok(StoreUrl {
            scheme,
            host,
            bucket: decode(bucket),
            directory: decode(directory),
            access_key,
            secret_key,
        })
    }

    /// barman-cloud's `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// barman-cloud's source/destination URL: `s3://bucket`.
    pub fn bucket_url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// An AWS shared credentials file section for `profile`.
    pub fn credentials_section(&self, profile: &str) -> String {
        format!(
            "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key, self.secret_key
        )
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({self})")
    }
}

impl fmt::Display for StoreUrl {
    /// The URL with its keys left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}/{}/{}",
            self.scheme, self.host, self.bucket, self.directory
        )
    }
}

/// barman's retention policy for a recovery window (`7d` -> `RECOVERY
/// WINDOW OF 7 DAYS`), as postgres-flex writes it.
pub fn retention_policy(recovery_window: &str) -> String {
    let (n, unit) = recovery_window.split_at(recovery_window.len().saturating_sub(1));
    let unit = match unit {
        "w" => "WEEKS",
        "m" => "MONTHS",
        _ => "DAYS",
    };
    format!("RECOVERY WINDOW OF {n} {unit}")
}

/// The settings of a backup policy, in seconds where they are times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub archive_timeout_s: u64,
    pub full_backup_frequency_s: u64,
    pub recovery_window: String,
    pub minimum_redundancy: u64,
}

impl Settings {
    /// Read back from a `backup_policy` spec (durations as `60s`, `24h`).
    pub fn from_spec(spec: &BackupPolicySpec) -> Option<Settings> {
        Some(Settings {
            archive_timeout_s: crate::config::units::parse_duration_s(&spec.archive_timeout)?,
            full_backup_frequency_s: crate::config::units::parse_duration_s(
                &spec.full_backup_frequency,
            )?,
            recovery_window: spec.recovery_window.clone(),
            minimum_redundancy: spec.minimum_redundancy,
        })
    }
}

/// What `flyplan status` shows of the backups of an app.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupStatus {
    /// The store, without its keys.
    pub store: String,
    /// The leader's `pg_stat_archiver`: last archived WAL and when.
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<String>,
    pub last_archived_age_s: Option<i64>,
    pub archived_count: Option<i64>,
    pub failed_count: Option<i64>,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<String>,
    /// Seconds archiving has been failing: since the first failure after
    /// the last success, approximated by the last failure being newer.
    pub failing_for_s: Option<i64>,
    /// The newest completed base backup.
    pub last_backup_id: Option<String>,
    pub last_backup_time: Option<String>,
    pub last_backup_age_s: Option<i64>,
    pub backups: usize,
    /// The recoverable window: the oldest backup's start to the newest
    /// archived WAL.
    pub recoverable_from: Option<String>,
    pub recoverable_to: Option<String>,
    /// Set when archiving has failed for longer than archive_timeout x 5.
    pub warning: Option<String>,
}

/// What one run of the backup schedule did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RunReport {
    pub app: String,
    /// The base backup taken because one was due.
    pub taken: Option<String>,
    /// Why the schedule is not run from here at all (the platform runs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<String>,
}

impl RunReport {
    pub fn summary(&self) -> String {
        match (&self.taken, &self.not_run) {
            (Some(id), _) => format!("took base backup {id}"),
            (None, Some(why)) => format!("no base backup taken: {why}"),
            (None, None) => "no base backup due".to_string(),
        }
    }
}

/// A provider's base backups of the policy's store: barman-cloud run by
/// flyplan (the local provider), or by postgres-flex's `flexctl` in a
/// machine (the fly provider).
pub trait Backups: Send + Sync {
    /// The backups in the store of `app`'s policy, oldest first.
    ///
    /// # Errors
    /// No policy applied, or the store cannot be read.
    fn list(&self, app: &str) -> Result<Vec<barman::BackupInfo>, crate::error::ProviderError>;

    /// Take a base backup now (from a healthy standby when there is one),
    /// then apply retention. Returns its id and the node it was taken from.
    ///
    /// # Errors
    /// No policy applied, no healthy node, or barman-cloud fails.
    fn create(&self, app: &str) -> Result<(String, String), crate::error::ProviderError>;

    /// Take a base backup when the newest is older than
    /// `full_backup_frequency` at `now`.
    ///
    /// # Errors
    /// As [`Backups::create`].
    fn run(
        &self,
        app: &str,
        now: time::OffsetDateTime,
    ) -> Result<RunReport, crate::error::ProviderError>;

    /// Archiving and base backups as `flyplan status` shows them; `None`
    /// without a policy.
    ///
    /// # Errors
    /// When the app's state cannot be read.
    fn status(&self, app: &str) -> Result<Option<BackupStatus>, crate::error::ProviderError>;

    /// Restore backup `id` into a scratch directory and check it (amcheck;
    /// barman-cloud backups have no manifest for `pg_verifybackup`).
    ///
    /// # Errors
    /// Unknown id, a restore or replay that fails, or a corrupt index.
    fn verify(&self, app: &str, id: &str) -> Result<Verified, crate::error::ProviderError>;
}

/// What `flyplan backups verify` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verified {
    pub backup_id: String,
    /// How it was checked: `amcheck`.
    pub method: String,
    pub databases: Vec<String>,
    pub indexes_checked: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_url_in_postgres_flex_form_parses_and_never_shows_its_keys() {
        let u =
            StoreUrl::parse("https://AK:SK%2Fx@fly.storage.tigris.dev/bkt/my-app", false).unwrap();
        assert_eq!(u.endpoint(), "https://fly.storage.tigris.dev");
        assert_eq!(u.bucket_url(), "s3://bkt");
        assert_eq!(u.directory, "my-app");
        assert_eq!(u.secret_key, "SK/x");
        let shown = format!("{u} {u:?}");
        assert!(!shown.contains("AK") && !shown.contains("SK"), "{shown}");
    }

    #[test]
    fn malformed_store_urls_say_why_without_the_value() {
        for (text, why) in [
            ("https://fly.storage.tigris.dev/bkt/dir", "key"),
            ("https://AK:SECRETVALUE@host/bkt", "/bucket/directory"),
            ("https://AK:SECRETVALUE@host/a/b/c", "/bucket/directory"),
            ("ftp://AK:SECRETVALUE@host/a/b", "scheme"),
            ("http://AK:SECRETVALUE@host/a/b", "http://"),
            ("not a url SECRETVALUE", "not a URL"),
        ] {
            let e = StoreUrl::parse(text, false).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
        assert!(StoreUrl::parse("http://AK:SK@127.0.0.1:9000/a/b", true).is_ok());
    }

    #[test]
    fn recovery_windows_become_barman_retention_policies() {
        assert_eq!(retention_policy("7d"), "RECOVERY WINDOW OF 7 DAYS");
        assert_eq!(retention_policy("2w"), "RECOVERY WINDOW OF 2 WEEKS");
        assert_eq!(retention_policy("1m"), "RECOVERY WINDOW OF 1 MONTHS");
    }
}

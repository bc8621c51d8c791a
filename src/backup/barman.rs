//! barman-cloud's command lines, argument for argument as postgres-flex
//! builds them (`internal/flypg/barman.go`): `--cloud-provider aws-s3`,
//! `--endpoint-url`, `--profile`, then `s3://bucket` and the directory as
//! barman's server name. Keys are never on a command line: barman-cloud
//! reads them from the profile of an AWS shared credentials file.

use super::StoreUrl;

/// postgres-flex's `providerDefault`.
pub const CLOUD_PROVIDER: &str = "aws-s3";

/// The arguments every barman-cloud command starts with.
fn common(url: &StoreUrl, profile: &str) -> Vec<String> {
    vec![
        "--cloud-provider".into(),
        CLOUD_PROVIDER.into(),
        "--endpoint-url".into(),
        url.endpoint(),
        "--profile".into(),
        profile.into(),
    ]
}

fn with_store(mut args: Vec<String>, url: &StoreUrl) -> Vec<String> {
    args.push(url.bucket_url());
    args.push(url.directory.clone());
    args
}

/// `archive_command`: `barman-cloud-wal-archive --cloud-provider aws-s3
/// --gzip --endpoint-url E --profile P s3://B D %p` (barman.go
/// `walArchiveCommand`), run with `AWS_SHARED_CREDENTIALS_FILE` pointing at
/// `credentials`.
pub fn wal_archive_command(url: &StoreUrl, profile: &str, credentials: &str) -> String {
    format!(
        "env AWS_SHARED_CREDENTIALS_FILE={credentials} barman-cloud-wal-archive --cloud-provider {CLOUD_PROVIDER} --gzip --endpoint-url {} --profile {profile} {} {} %p",
        url.endpoint(),
        url.bucket_url(),
        url.directory
    )
}

/// `restore_command` (barman.go `walRestoreCommand`).
pub fn wal_restore_command(url: &StoreUrl, profile: &str, credentials: &str) -> String {
    format!(
        "env AWS_SHARED_CREDENTIALS_FILE={credentials} barman-cloud-wal-restore --cloud-provider {CLOUD_PROVIDER} --endpoint-url {} --profile {profile} {} {} %f %p",
        url.endpoint(),
        url.bucket_url(),
        url.directory
    )
}

/// `barman-cloud-backup` of the server at `host:port` as `user` (barman.go
/// `Backup`; the local provider connects over loopback).
pub fn backup_args(
    url: &StoreUrl,
    profile: &str,
    host: &str,
    port: u16,
    user: &str,
) -> Vec<String> {
    let mut args = common(url, profile);
    args.extend([
        "--host".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "--user".into(),
        user.into(),
    ]);
    let mut args = with_store(args, url);
    args.push("--immediate-checkpoint".into());
    args
}

/// `barman-cloud-backup-list --format json` (barman.go `ListBackups`).
pub fn list_args(url: &StoreUrl, profile: &str) -> Vec<String> {
    let mut args = common(url, profile);
    args.extend(["--format".into(), "json".into()]);
    with_store(args, url)
}

/// `barman-cloud-restore ... ID DEST` (barman.go `RestoreBackup`).
pub fn restore_args(url: &StoreUrl, profile: &str, backup_id: &str, dest: &str) -> Vec<String> {
    let mut args = with_store(common(url, profile), url);
    args.extend([backup_id.into(), dest.into()]);
    args
}

/// `barman-cloud-backup-delete --retention-policy "RECOVERY WINDOW OF ..."`
/// (barman.go `WALArchiveDelete`; Debian 12's barman-cloud 3.4 has no
/// `--minimum-redundancy`, so the caller checks it, see [`obsolete`]).
pub fn delete_policy_args(url: &StoreUrl, profile: &str, retention_policy: &str) -> Vec<String> {
    let mut args = common(url, profile);
    args.extend(["--retention-policy".into(), retention_policy.into()]);
    with_store(args, url)
}

/// `barman-cloud-backup-delete --backup-id ID`.
pub fn delete_id_args(url: &StoreUrl, profile: &str, backup_id: &str) -> Vec<String> {
    let mut args = common(url, profile);
    args.extend(["--backup-id".into(), backup_id.into()]);
    with_store(args, url)
}

/// Completed backups (ids with their end times, oldest first) that a
/// recovery window of `window` makes obsolete at `now`, as barman counts
/// them: every backup older than the newest one that ended before the
/// window began. Of those, only the oldest go that leave at least
/// `minimum_redundancy` backups.
pub fn obsolete(
    done: &[(String, time::OffsetDateTime)],
    now: time::OffsetDateTime,
    window: time::Duration,
    minimum_redundancy: u64,
) -> Vec<String> {
    let start = now - window;
    let Some(anchor) = done.iter().rposition(|(_, end)| *end < start) else {
        return Vec::new();
    };
    let may_go = done
        .len()
        .saturating_sub(usize::try_from(minimum_redundancy).unwrap_or(usize::MAX));
    done.iter()
        .take(anchor.min(may_go))
        .map(|(id, _)| id.clone())
        .collect()
}

/// One backup as `barman-cloud-backup-list --format json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupInfo {
    pub backup_id: String,
    #[serde(default)]
    pub backup_name: Option<String>,
    pub status: String,
    #[serde(default)]
    pub begin_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub begin_wal: Option<String>,
    #[serde(default)]
    pub end_wal: Option<String>,
}

#[derive(serde::Deserialize)]
struct BackupList {
    backups_list: Vec<BackupInfo>,
}

/// Read `barman-cloud-backup-list --format json`.
///
/// # Errors
/// Output that is not barman's JSON list.
pub fn parse_list(json: &[u8]) -> Result<Vec<BackupInfo>, serde_json::Error> {
    Ok(serde_json::from_slice::<BackupList>(json)?.backups_list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    fn backups(days: &[u8]) -> Vec<(String, time::OffsetDateTime)> {
        days.iter()
            .map(|d| {
                (
                    format!("b{d}"),
                    datetime!(2026-11-01 00:00 UTC) + Duration::days(i64::from(*d)),
                )
            })
            .collect()
    }

    #[test]
    fn retention_keeps_the_window_the_backup_before_it_and_the_minimum() {
        let now = datetime!(2026-11-21 00:00 UTC);
        let all = backups(&[1, 5, 10, 12, 15, 20]);
        // Window starts on the 14th: b12 is needed to reach it; b1..b10 go.
        assert_eq!(
            obsolete(&all, now, Duration::days(7), 0),
            ["b1", "b5", "b10"]
        );
        // Four must stay: only the two oldest go.
        assert_eq!(obsolete(&all, now, Duration::days(7), 4), ["b1", "b5"]);
        assert!(obsolete(&all, now, Duration::days(30), 0).is_empty());
        assert!(obsolete(&all, now, Duration::days(7), 10).is_empty());
    }

    #[test]
    fn arguments_are_postgres_flex_s() {
        let url = StoreUrl::parse("https://AK:SK@s3.example.com/bkt/app-a", false).unwrap();
        assert_eq!(
            list_args(&url, "barman").join(" "),
            "--cloud-provider aws-s3 --endpoint-url https://s3.example.com --profile barman --format json s3://bkt app-a"
        );
        assert_eq!(
            restore_args(&url, "restore", "20261130T090748", "/data/postgresql").join(" "),
            "--cloud-provider aws-s3 --endpoint-url https://s3.example.com --profile restore s3://bkt app-a 20261130T090748 /data/postgresql"
        );
        let archive = wal_archive_command(&url, "barman", "/c");
        assert!(
            archive.ends_with("barman-cloud-wal-archive --cloud-provider aws-s3 --gzip --endpoint-url https://s3.example.com --profile barman s3://bkt app-a %p"),
            "{archive}"
        );
        assert!(!archive.contains("SK"));
    }
}

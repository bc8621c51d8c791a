//! `[postgres.backup]` and `[postgres.restore]`: defaults, located errors
//! for bad values, and the store URL checked at plan time, located at the
//! `secret = ...` key, without ever repeating the secret's value.

use std::collections::BTreeMap;
use std::path::Path;

use flyplan::config::{self, ConfigError, RestoreTarget};
use flyplan::desired::{Desired, DesiredError};
use flyplan::model::{Address, Spec};

const HEAD: &str =
    "app = \"bk-app\"\nprimary_region = \"iad\"\n\n[secrets]\n  S3 = { from_env = \"S3_URL\" }\n\n";

fn first_error(src: &str) -> (String, String) {
    match config::parse(Path::new("fly.toml"), src) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(ConfigError::Invalid { diagnostics }) => {
            let d = &diagnostics[0];
            let caret: String = d
                .source_line
                .chars()
                .skip(d.column - 1)
                .take(d.width)
                .collect();
            (
                d.to_string().lines().next().unwrap_or_default().to_string(),
                caret,
            )
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn desired(src: &str, url: &str) -> Result<Desired, DesiredError> {
    let config = config::parse(Path::new("fly.toml"), src).expect("valid fly.toml");
    let env: BTreeMap<String, String> = [("S3_URL".to_string(), url.to_string())].into();
    Desired::from_config(&config, &env)
}

#[test]
fn backup_settings_default_to_postgres_flex_s() {
    let src = format!("{HEAD}[postgres.backup]\n  secret = \"S3\"\n");
    let d = desired(&src, "https://AK:SK@fly.storage.tigris.dev/bkt/bk-app").unwrap();
    let Some(Spec::BackupPolicy(p)) = d.get(&Address::backup_policy("bk-app")).map(|r| &r.spec)
    else {
        panic!("no backup_policy.bk-app");
    };
    assert_eq!(p.archive_timeout, "60s");
    assert_eq!(p.recovery_window, "7d");
    assert_eq!(p.full_backup_frequency, "24h");
    assert_eq!(p.minimum_redundancy, 3);
    assert_eq!(p.secret, "S3");
    assert!(p.store.is_some());
}

#[test]
fn bad_backup_values_are_located() {
    for (body, at, message) in [
        (
            "archive_timeout = \"soon\"",
            "\"soon\"",
            "invalid duration \"soon\"",
        ),
        (
            "recovery_window = \"7\"",
            "\"7\"",
            "invalid recovery window \"7\"",
        ),
        ("minimum_redundancy = -1", "-1", "must be at least 0"),
        (
            "full_backup_frequency = \"0h\"",
            "\"0h\"",
            "invalid duration \"0h\"",
        ),
        ("secrt = \"S3\"", "secrt", "unknown key `secrt`"),
    ] {
        let src = format!("{HEAD}[postgres.backup]\n  secret = \"S3\"\n  {body}\n");
        let (line, caret) = first_error(&src);
        assert!(line.starts_with("fly.toml:9:"), "{body}: {line}");
        assert!(line.contains(message), "{body}: {line}");
        assert_eq!(caret, at, "{body}");
    }
}

#[test]
fn an_undeclared_backup_secret_is_located_at_the_key() {
    let src = format!("{HEAD}[postgres.backup]\n  secret = \"S3_ARCHIVE_CONFIG\"\n");
    let (line, caret) = first_error(&src);
    assert!(line.starts_with("fly.toml:8:"), "{line}");
    assert!(line.contains("S3_ARCHIVE_CONFIG"), "{line}");
    assert_eq!(caret, "\"S3_ARCHIVE_CONFIG\"");
}

#[test]
fn a_malformed_store_url_is_located_at_the_secret_key_without_its_value() {
    let src = format!("{HEAD}[postgres.backup]\n  secret = \"S3\"\n");
    for url in [
        "https://fly.storage.tigris.dev/bkt/dir",
        "https://AK:TOPSECRET@fly.storage.tigris.dev/bkt",
        "s3://AK:TOPSECRET@bkt/dir",
    ] {
        let Err(DesiredError::Secret { diagnostic }) = desired(&src, url) else {
            panic!("{url} was accepted");
        };
        let text = diagnostic.to_string();
        assert!(
            text.starts_with("fly.toml:8:12: secret S3 is not a store URL"),
            "{text}"
        );
        assert!(!text.contains("TOPSECRET"), "{text}");
    }
}

#[test]
fn a_restore_targets_a_time_a_backup_or_the_latest() {
    let cases = [
        (
            "target_time = \"2026-11-30T11:15:00+01:00\"",
            RestoreTarget::Time("2026-11-30T10:15:00Z".into()),
        ),
        (
            "target = \"20261130T090748\"",
            RestoreTarget::Backup("20261130T090748".into()),
        ),
        ("", RestoreTarget::Latest),
    ];
    for (body, want) in cases {
        let src = format!("{HEAD}[postgres.restore]\n  backup_secret = \"S3\"\n  {body}\n");
        let c = config::parse(Path::new("fly.toml"), &src).unwrap();
        assert_eq!(c.postgres.restore.unwrap().target, want, "{body}");
    }
    let src = format!(
        "{HEAD}[postgres.restore]\n  backup_secret = \"S3\"\n  target_time = \"yesterday\"\n"
    );
    let (line, caret) = first_error(&src);
    assert!(line.contains("invalid target time \"yesterday\""), "{line}");
    assert_eq!(caret, "\"yesterday\"");
    let src = format!(
        "{HEAD}[postgres.restore]\n  backup_secret = \"S3\"\n  target_time = \"2026-11-30T10:15:00Z\"\n  target = \"x\"\n"
    );
    let (line, caret) = first_error(&src);
    assert!(
        line.contains("`target` and `target_time` are both set"),
        "{line}"
    );
    assert_eq!(caret, "\"x\"");
}

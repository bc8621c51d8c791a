//! `[postgres.backup]` and `[postgres.restore]`: postgres-flex's barman
//! settings, with its names and defaults, and the target of a restore.

use super::*;

/// postgres-flex's defaults (`internal/flypg/barman_config.go`).
const DEFAULT_ARCHIVE_TIMEOUT_S: u64 = 60;
const DEFAULT_RECOVERY_WINDOW: &str = "7d";
const DEFAULT_FULL_BACKUP_FREQUENCY_S: u64 = 24 * 3600;
const DEFAULT_MINIMUM_REDUNDANCY: u64 = 3;

impl Reader<'_> {
    pub(super) fn read_backup(&mut self, f: &Field) -> Option<BackupConfig> {
        let t = self.table(f, "[postgres.backup]")?;
        self.check_keys(&t, &keys::BACKUP);
        let mut cfg = BackupConfig {
            secret: String::new(),
            archive_timeout_s: DEFAULT_ARCHIVE_TIMEOUT_S,
            recovery_window: DEFAULT_RECOVERY_WINDOW.to_string(),
            full_backup_frequency_s: DEFAULT_FULL_BACKUP_FREQUENCY_S,
            minimum_redundancy: DEFAULT_MINIMUM_REDUNDANCY,
        };
        let mut ok = true;
        match self.field(&t, "secret") {
            Some(f) => match self.string(&f) {
                Some(name) => match self.secret_ref(&f, &name) {
                    Some(name) => cfg.secret = name,
                    None => ok = false,
                },
                None => ok = false,
            },
            None => {
                self.error_help(
                    t.span.clone(),
                    "missing key `secret` in `[postgres.backup]`",
                    "name the secret that holds the store URL, e.g. secret = \"S3_ARCHIVE_CONFIG\"",
                );
                ok = false;
            }
        }
        if let Some(f) = self.field(&t, "archive_timeout") {
            match self.duration(&f) {
                Some(s) => cfg.archive_timeout_s = s,
                None => ok = false,
            }
        }
        if let Some(f) = self.field(&t, "full_backup_frequency") {
            match self.duration(&f) {
                Some(s) => cfg.full_backup_frequency_s = s,
                None => ok = false,
            }
        }
        if let Some(f) = self.field(&t, "recovery_window") {
            match self.string(&f) {
                Some(text) => match units::parse_recovery_window(&text) {
                    Some((n, unit)) => cfg.recovery_window = format!("{n}{unit}"),
                    None => {
                        self.invalid_help(
                            &f,
                            format!("invalid recovery window {text:?}"),
                            "write a whole number of days, weeks or months: \"7d\", \"2w\", \"1m\"",
                        );
                        ok = false;
                    }
                },
                None => ok = false,
            }
        }
        if let Some(f) = self.field(&t, "minimum_redundancy") {
            match self.integer_in(&f, 0, 1000) {
                Some(n) => cfg.minimum_redundancy = n.unsigned_abs(),
                None => ok = false,
            }
        }
        ok.then_some(cfg)
    }

    /// A duration string (`"60s"`, `"24h"`).
    fn duration(&mut self, f: &Field) -> Option<u64> {
        let text = self.string(f)?;
        let s = units::parse_duration_s(&text);
        if s.is_none() {
            self.invalid_help(
                f,
                format!("invalid duration {text:?}"),
                "write a whole number with a unit: \"60s\", \"5min\", \"24h\", \"1d\"",
            );
        }
        s
    }

    pub(super) fn read_restore(&mut self, f: &Field) -> Option<RestoreConfig> {
        let t = self.table(f, "[postgres.restore]")?;
        self.check_keys(&t, &keys::RESTORE);
        let secret = match self.field(&t, "backup_secret") {
            Some(f) => {
                let name = self.string(&f)?;
                self.secret_ref(&f, &name)?
            }
            None => {
                self.error_help(
                    t.span.clone(),
                    "missing key `backup_secret` in `[postgres.restore]`",
                    "name the secret that holds the source cluster's store URL",
                );
                return None;
            }
        };
        let time = match self.field(&t, "target_time") {
            Some(f) => {
                let text = self.string(&f)?;
                match normalise_time(&text) {
                    Some(t) => Some((t, f.span.clone())),
                    None => {
                        self.invalid_help(
                            &f,
                            format!("invalid target time {text:?}"),
                            "write an RFC 3339 time, e.g. \"2026-11-30T10:15:00Z\"",
                        );
                        return None;
                    }
                }
            }
            None => None,
        };
        let name = match self.field(&t, "target") {
            Some(f) => {
                let text = self.string(&f)?;
                if text.is_empty() || text.chars().any(char::is_whitespace) {
                    self.invalid(&f, format!("invalid backup id or name {text:?}"));
                    return None;
                }
                Some((text, f.span.clone()))
            }
            None => None,
        };
        let target = match (time, name) {
            (Some(_), Some((_, span))) => {
                self.error_help(
                    span,
                    "`target` and `target_time` are both set",
                    "restore either to a time or to a backup, not both",
                );
                return None;
            }
            (Some((t, _)), None) => RestoreTarget::Time(t),
            (None, Some((n, _))) => RestoreTarget::Backup(n),
            (None, None) => RestoreTarget::Latest,
        };
        Some(RestoreConfig {
            backup_secret: secret,
            target,
        })
    }
}

/// An RFC 3339 time in UTC, written `YYYY-MM-DDTHH:MM:SSZ` (sub-seconds
/// kept when given).
pub fn normalise_time(text: &str) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(text, &Rfc3339).ok()?;
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok()
}

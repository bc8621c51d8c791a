//! The one place flyplan reads the time the snapshot schedule uses: the
//! system clock, or `FLYPLAN_NOW` (RFC 3339, e.g. `2026-11-21T10:00:00Z`)
//! so that tests and rehearsals can move the calendar.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The variable that overrides the clock.
pub const NOW_VAR: &str = "FLYPLAN_NOW";

/// A time that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {text:?} is not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)")]
pub struct ClockError {
    pub what: String,
    pub text: String,
}

/// Parse an RFC 3339 time, in UTC.
///
/// # Errors
/// When `text` is not RFC 3339.
pub fn parse(what: &str, text: &str) -> Result<OffsetDateTime, ClockError> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(|t| t.to_offset(UtcOffset::UTC))
        .map_err(|_| ClockError {
            what: what.to_string(),
            text: text.to_string(),
        })
}

/// Now: `FLYPLAN_NOW` when set and not empty, else the system clock (UTC).
///
/// # Errors
/// When `FLYPLAN_NOW` is set to something that is not RFC 3339.
pub fn now() -> Result<OffsetDateTime, ClockError> {
    match std::env::var(NOW_VAR) {
        Ok(v) if !v.trim().is_empty() => parse(NOW_VAR, &v),
        _ => Ok(OffsetDateTime::now_utc()),
    }
}

/// `2026-11-21T10:00:00Z`.
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_time_is_read_as_utc() {
        let t = parse("t", "2026-11-21T12:00:00+02:00").unwrap();
        assert_eq!(format(t), "2026-11-21T10:00:00Z");
    }

    #[test]
    fn a_date_without_a_time_is_refused_with_an_example() {
        let e = parse("FLYPLAN_NOW", "2026-11-21").unwrap_err();
        assert!(e.to_string().contains("2026-11-21T10:00:00Z"), "{e}");
    }
}

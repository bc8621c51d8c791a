//! Sizes, memory amounts and times of day as fly.toml writes them
//! (`"10gb"`, `"512mb"`, `2048`, `"03:30"`), turned into numbers.

/// Split `"<number><unit>"` (optional spaces between) into the number and
/// the trimmed unit.
fn number_and_unit(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let number: u64 = text[..digits_end].parse().ok()?;
    Some((number, text[digits_end..].trim()))
}

/// Parse `"<number><unit>"` (unit case-insensitive, optional spaces between)
/// into a number of mebibytes. `default_unit_mb` is used for a bare number.
fn parse_mb(text: &str, default_unit_mb: u64) -> Option<u64> {
    let (number, unit) = number_and_unit(text)?;
    let unit = unit.to_ascii_lowercase();
    let factor = match unit.as_str() {
        "" => default_unit_mb,
        "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// A volume size in whole GB, rounded up: `"10gb"`, `"500mb"` (1), `"1g"`,
/// `"10"`. Zero is rejected.
pub fn parse_size_gb(text: &str) -> Option<u64> {
    let mb = parse_mb(text, 1024)?;
    (mb > 0).then(|| mb.div_ceil(1024))
}

/// A memory amount in MB: `"512mb"`, `"1gb"`, `"2048"`. Zero is rejected.
pub fn parse_memory_mb(text: &str) -> Option<u32> {
    let mb = parse_mb(text, 1)?;
    u32::try_from(mb).ok().filter(|mb| *mb > 0)
}

/// A time of day `"HH:MM"` (24-hour clock).
pub fn is_hh_mm(text: &str) -> bool {
    let Some((h, m)) = text.split_once(':') else {
        return false;
    };
    let two_digits = |s: &str| s.len() == 2 && s.chars().all(|c| c.is_ascii_digit());
    two_digits(h)
        && two_digits(m)
        && h.parse::<u8>().is_ok_and(|h| h < 24)
        && m.parse::<u8>().is_ok_and(|m| m < 60)
}

/// A duration as postgres-flex's settings write it, in seconds: a whole
/// number with a unit among `s`, `m` or `min`, `h`, `d` (`"60s"`, `"24h"`);
/// a bare number is seconds. Zero is rejected.
pub fn parse_duration_s(text: &str) -> Option<u64> {
    let (number, unit) = number_and_unit(text)?;
    let factor = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    number.checked_mul(factor).filter(|s| *s > 0)
}

/// Seconds written back in the largest of `h`, `m`, `s` that divides them
/// (`"24h"`, as postgres-flex writes `full_backup_frequency`).
pub fn format_duration_s(seconds: u64) -> String {
    match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A recovery window as postgres-flex takes it: a whole number of days,
/// weeks or months (`"7d"`, `"2w"`, `"1m"`). Returns the number and the
/// unit letter.
pub fn parse_recovery_window(text: &str) -> Option<(u64, char)> {
    let text = text.trim();
    let unit = text.chars().last()?;
    if !matches!(unit, 'd' | 'w' | 'm') {
        return None;
    }
    let number: u64 = text[..text.len() - 1].parse().ok()?;
    (number > 0).then_some((number, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_recovery_windows_read_as_postgres_flex_writes_them() {
        assert_eq!(parse_duration_s("60s"), Some(60));
        assert_eq!(parse_duration_s("5min"), Some(300));
        assert_eq!(parse_duration_s("24h"), Some(86400));
        assert_eq!(parse_duration_s("0s"), None);
        assert_eq!(parse_duration_s("1y"), None);
        assert_eq!(format_duration_s(86400), "24h");
        assert_eq!(format_duration_s(60), "1m");
        assert_eq!(format_duration_s(90), "90s");
        assert_eq!(parse_recovery_window("7d"), Some((7, 'd')));
        assert_eq!(parse_recovery_window("1m"), Some((1, 'm')));
        assert_eq!(parse_recovery_window("7"), None);
        assert_eq!(parse_recovery_window("0w"), None);
    }

    #[test]
    fn sizes_round_up_to_whole_gb() {
        assert_eq!(parse_size_gb("10gb"), Some(10));
        assert_eq!(parse_size_gb("10GB"), Some(10));
        assert_eq!(parse_size_gb("1g"), Some(1));
        assert_eq!(parse_size_gb("500mb"), Some(1));
        assert_eq!(parse_size_gb("1025mb"), Some(2));
        assert_eq!(parse_size_gb("3"), Some(3));
        assert_eq!(parse_size_gb("1 tb"), Some(1024));
        for bad in ["ten gb", "", "gb", "0gb", "10 parsecs", "-1gb", "1.5gb"] {
            assert_eq!(parse_size_gb(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn memory_is_read_in_mb() {
        assert_eq!(parse_memory_mb("512mb"), Some(512));
        assert_eq!(parse_memory_mb("1gb"), Some(1024));
        assert_eq!(parse_memory_mb("1GB"), Some(1024));
        assert_eq!(parse_memory_mb("2048"), Some(2048));
        assert_eq!(parse_memory_mb("16gb"), Some(16384));
        for bad in ["lots", "0mb", "99999999gb", "512 kb"] {
            assert_eq!(parse_memory_mb(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_of_day_are_hh_mm() {
        assert!(is_hh_mm("00:00"));
        assert!(is_hh_mm("23:59"));
        for bad in ["24:00", "7:30", "12:60", "noon", "12:3", "12:30:00"] {
            assert!(!is_hh_mm(bad), "{bad:?}");
        }
    }
}

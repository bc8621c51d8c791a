//! PostgreSQL 15's own list of settings (generated from `pg_settings` by
//! `scripts/gen-pg-settings.sh` into `pg15.tsv`): which names exist, what
//! values each accepts, whether a change needs a reload or a restart, and
//! which ones flyplan sets itself. Values are brought to one canonical text,
//! the one `SHOW` prints (`8MB`, `30s`, `on`), so a value from fly.toml and a
//! value read from `pg_settings.setting` compare equal when PostgreSQL would
//! run with the same setting.

use std::collections::BTreeMap;
use std::sync::OnceLock;

const PG15: &str = include_str!("pg15.tsv");

/// The PostgreSQL major version the list describes.
pub const MAJOR: u32 = 15;

/// One setting, as `pg_settings` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub vartype: VarType,
    /// `kB`, `8kB`, `MB`, `B`, `ms`, `s`, `min` or empty.
    pub unit: &'static str,
    pub min: &'static str,
    pub max: &'static str,
    pub enumvals: Vec<&'static str>,
    /// `postmaster`, `sighup`, `user`, `superuser`, `backend`,
    /// `superuser-backend` or `internal`.
    pub context: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarType {
    Bool,
    Integer,
    Real,
    Enum,
    String,
}

/// What applying a changed setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Apply {
    /// `pg_reload_conf()` is enough (new sessions for `backend` settings).
    Reload,
    /// The server must restart (`postmaster` context).
    Restart,
}

impl Apply {
    pub fn as_str(self) -> &'static str {
        match self {
            Apply::Reload => "reload",
            Apply::Restart => "restart",
        }
    }
}

impl Setting {
    /// Reload or restart, from the setting's context.
    pub fn apply(&self) -> Apply {
        if self.context == "postmaster" {
            Apply::Restart
        } else {
            Apply::Reload
        }
    }
}

fn table() -> &'static BTreeMap<&'static str, Setting> {
    static TABLE: OnceLock<BTreeMap<&'static str, Setting>> = OnceLock::new();
    TABLE.get_or_init(|| {
        PG15.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&'static str> = l.split('\t').collect();
                let [name, vartype, unit, min, max, enumvals, context] = f[..] else {
                    return None;
                };
                let vartype = match vartype {
                    "bool" => VarType::Bool,
                    "integer" => VarType::Integer,
                    "real" => VarType::Real,
                    "enum" => VarType::Enum,
                    _ => VarType::String,
                };
                let enumvals = enumvals.split(',').filter(|v| !v.is_empty()).collect();
                Some((
                    name,
                    Setting {
                        name,
                        vartype,
                        unit,
                        min,
                        max,
                        enumvals,
                        context,
                    },
                ))
            })
            .collect()
    })
}

/// The setting named `name` (names are case-insensitive, as in PostgreSQL).
pub fn lookup(name: &str) -> Option<&'static Setting> {
    let t = table();
    t.get(name)
        .or_else(|| t.values().find(|s| s.name.eq_ignore_ascii_case(name)))
}

/// Every setting name, for suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    table().keys().copied()
}

/// Why flyplan refuses to let fly.toml set `name`, when it does: settings
/// that flyplan or pg_auto_failover set themselves, and read-only ones.
pub fn owned(s: &Setting) -> Option<&'static str> {
    let n = s.name;
    let reason = match n {
        "port" | "listen_addresses" | "unix_socket_directories" | "unix_socket_group"
        | "unix_socket_permissions" => {
            "flyplan chooses the address and port every node listens on (`[postgres] port` sets the client port)"
        }
        "data_directory" | "config_file" | "hba_file" | "ident_file" | "external_pid_file" => {
            "flyplan places the data directory and the configuration files of every node"
        }
        "wal_level" | "max_wal_senders" | "max_replication_slots" | "wal_log_hints"
        | "wal_keep_size" | "wal_sender_timeout" | "hot_standby" | "hot_standby_feedback"
        | "primary_conninfo" | "primary_slot_name" | "promote_trigger_file"
        | "recovery_end_command" | "cluster_name" => {
            "pg_auto_failover sets the replication settings of every node"
        }
        "shared_preload_libraries" => {
            "flyplan and pg_auto_failover load the libraries every node needs"
        }
        "restore_command" | "archive_cleanup_command" => {
            "restores and WAL archiving are set by flyplan (`[postgres.backup]`, `[postgres.restore]`)"
        }
        _ if n.starts_with("archive_") => {
            "restores and WAL archiving are set by flyplan (`[postgres.backup]`, `[postgres.restore]`)"
        }
        _ if n.starts_with("synchronous_") => {
            "synchronous replication follows `sync_standbys` in `[postgres]`"
        }
        _ if n.starts_with("recovery_") => {
            "recovery targets are set by flyplan for a restore (`[postgres.restore]`)"
        }
        _ if n.starts_with("ssl") => "pg_auto_failover configures TLS between the nodes",
        _ if s.context == "internal" => "it is read-only: PostgreSQL derives it when it starts",
        _ => return None,
    };
    Some(reason)
}

/// A value as fly.toml gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum Given {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

/// `value` for `s` in its canonical text, or what was expected.
///
/// # Errors
/// A value of the wrong type, with an unknown unit, out of range, or not
/// one of an enum's values.
pub fn canonical(s: &Setting, value: &Given) -> Result<String, String> {
    match s.vartype {
        VarType::Bool => {
            let b = match value {
                Given::Bool(b) => Some(*b),
                Given::Integer(0) => Some(false),
                Given::Integer(1) => Some(true),
                Given::Text(t) => parse_bool(t),
                _ => None,
            };
            b.map(|b| if b { "on" } else { "off" }.to_string())
                .ok_or_else(|| {
                    format!(
                        "`{}` is a boolean: write true or false (or \"on\"/\"off\")",
                        s.name
                    )
                })
        }
        VarType::Enum => {
            let text = match value {
                Given::Text(t) => t.to_ascii_lowercase(),
                Given::Bool(true) => "on".to_string(),
                Given::Bool(false) => "off".to_string(),
                Given::Integer(n) => n.to_string(),
                Given::Float(_) => String::new(),
            };
            if s.enumvals.iter().any(|v| v.eq_ignore_ascii_case(&text)) {
                Ok(text)
            } else {
                Err(format!(
                    "`{}` must be one of {}",
                    s.name,
                    s.enumvals
                        .iter()
                        .map(|v| format!("{v:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }
        }
        VarType::String => match value {
            Given::Text(t) => Ok(t.clone()),
            _ => Err(format!("`{}` must be a string", s.name)),
        },
        VarType::Integer => {
            let n = integer_value(s, value)?;
            let min: i64 = s.min.parse().unwrap_or(i64::MIN);
            let max: i64 = s.max.parse().unwrap_or(i64::MAX);
            if n < min || n > max {
                return Err(format!(
                    "`{}` must be between {} and {}",
                    s.name,
                    show_integer(s, min),
                    show_integer(s, max)
                ));
            }
            Ok(show_integer(s, n))
        }
        VarType::Real => {
            let x = real_value(s, value)?;
            let min: f64 = s.min.parse().unwrap_or(f64::MIN);
            let max: f64 = s.max.parse().unwrap_or(f64::MAX);
            if !(min..=max).contains(&x) {
                return Err(format!(
                    "`{}` must be between {}{u} and {}{u}",
                    s.name,
                    s.min,
                    s.max,
                    u = s.unit
                ));
            }
            Ok(show_real(s, x))
        }
    }
}

/// The canonical text of a value read from `pg_settings.setting` (base
/// units for numbers), or written with its unit (`8MB`), as a settings API
/// may echo it.
pub fn canonical_live(s: &Setting, setting: &str) -> String {
    let written = || canonical(s, &Given::Text(setting.to_string())).unwrap_or(setting.to_string());
    match s.vartype {
        VarType::Integer => setting
            .parse::<i64>()
            .map_or_else(|_| written(), |n| show_integer(s, n)),
        VarType::Real => setting
            .parse::<f64>()
            .map_or_else(|_| written(), |x| show_real(s, x)),
        VarType::Enum => setting.to_ascii_lowercase(),
        VarType::Bool | VarType::String => setting.to_string(),
    }
}

fn parse_bool(t: &str) -> Option<bool> {
    match t.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// Bytes in one `unit` of a memory setting.
fn memory_unit(unit: &str) -> Option<i64> {
    Some(match unit {
        "B" => 1,
        "kB" => 1024,
        "8kB" => 8192,
        "MB" => 1024 * 1024,
        "GB" => 1024 * 1024 * 1024,
        "TB" => 1024_i64.pow(4),
        _ => return None,
    })
}

/// Microseconds in one `unit` of a time setting.
fn time_unit(unit: &str) -> Option<i64> {
    Some(match unit {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    })
}

/// The unit names of one family, smallest first, and the size of each.
type UnitFamily = (&'static [&'static str], fn(&str) -> Option<i64>);

/// Units a value may be written in, for a setting whose unit is `unit`,
/// with the size of each in the smallest unit of its family.
fn units_for(unit: &str) -> Option<UnitFamily> {
    if memory_unit(unit).is_some() {
        Some((&["B", "kB", "MB", "GB", "TB"], memory_unit))
    } else if time_unit(unit).is_some() {
        Some((&["us", "ms", "s", "min", "h", "d"], time_unit))
    } else {
        None
    }
}

/// A number and an optional unit suffix: `"8MB"`, `"30 s"`, `"12"`.
fn split_unit(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let number: f64 = text[..end].parse().ok()?;
    Some((number, text[end..].trim()))
}

/// `x` given in `given` units as a number of the setting's own unit.
fn in_setting_unit(s: &Setting, x: f64, given: &str) -> Result<f64, String> {
    if given.is_empty() {
        return Ok(x);
    }
    let Some((allowed, size)) = units_for(s.unit) else {
        return Err(format!("`{}` takes a number without a unit", s.name));
    };
    let Some(g) = size(given) else {
        return Err(format!(
            "unknown unit {given:?} for `{}`: use one of {}",
            s.name,
            allowed.join(", ")
        ));
    };
    let own = size(s.unit).unwrap_or(1);
    Ok(x * g as f64 / own as f64)
}

fn integer_value(s: &Setting, value: &Given) -> Result<i64, String> {
    let expected = || {
        if s.unit.is_empty() {
            format!("`{}` must be an integer", s.name)
        } else {
            let example = if memory_unit(s.unit).is_some() {
                "\"64MB\""
            } else {
                "\"30s\""
            };
            format!(
                "`{}` must be an integer (in {}) or a string with a unit such as {example}",
                s.name, s.unit
            )
        }
    };
    let x = match value {
        Given::Integer(n) => return Ok(*n),
        Given::Text(t) => {
            let (x, unit) = split_unit(t).ok_or_else(expected)?;
            in_setting_unit(s, x, unit)?
        }
        Given::Float(x) => *x,
        Given::Bool(_) => return Err(expected()),
    };
    if !x.is_finite() || x.abs() > 9.0e18 {
        return Err(expected());
    }
    // PostgreSQL rounds a value given in a smaller unit to the nearest.
    Ok(x.round() as i64)
}

fn real_value(s: &Setting, value: &Given) -> Result<f64, String> {
    match value {
        Given::Integer(n) => Ok(*n as f64),
        Given::Float(x) => Ok(*x),
        Given::Text(t) => {
            let (x, unit) =
                split_unit(t).ok_or_else(|| format!("`{}` must be a number", s.name))?;
            in_setting_unit(s, x, unit)
        }
        Given::Bool(_) => Err(format!("`{}` must be a number", s.name)),
    }
}

/// An integer in the setting's unit as `SHOW` prints it: in the largest
/// unit that divides it exactly; zero and negative values without a unit.
fn show_integer(s: &Setting, n: i64) -> String {
    let Some((allowed, size)) = units_for(s.unit) else {
        return n.to_string();
    };
    if n <= 0 {
        return n.to_string();
    }
    let own = size(s.unit).unwrap_or(1);
    let total = i128::from(n) * i128::from(own);
    for u in allowed.iter().rev() {
        let k = i128::from(size(u).unwrap_or(1));
        // Never print a unit finer than the setting's own (8kB pages are
        // shown in kB at least).
        if k >= i128::from(own.min(size(allowed[1]).unwrap_or(1))) && total % k == 0 {
            return format!("{}{u}", total / k);
        }
    }
    format!("{n}{}", s.unit)
}

fn show_real(s: &Setting, x: f64) -> String {
    if s.unit.is_empty() || x <= 0.0 {
        format!("{x}")
    } else {
        format!("{x}{}", s.unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, v: Given) -> Result<String, String> {
        canonical(lookup(name).unwrap(), &v)
    }

    #[test]
    fn the_list_is_postgresql_15s() {
        assert!(names().count() > 300);
        let mc = lookup("max_connections").unwrap();
        assert_eq!(mc.apply(), Apply::Restart);
        assert_eq!(lookup("work_mem").unwrap().apply(), Apply::Reload);
        assert_eq!(lookup("timezone").unwrap().name, "TimeZone");
    }

    #[test]
    fn values_come_out_as_show_prints_them() {
        assert_eq!(c("work_mem", Given::Text("8MB".into())).unwrap(), "8MB");
        assert_eq!(c("work_mem", Given::Integer(8192)).unwrap(), "8MB");
        assert_eq!(c("work_mem", Given::Text("1GB".into())).unwrap(), "1GB");
        assert_eq!(c("work_mem", Given::Text("100kB".into())).unwrap(), "100kB");
        let sb = lookup("shared_buffers").unwrap();
        assert_eq!(canonical_live(sb, "16384"), "128MB");
        assert_eq!(
            c("shared_buffers", Given::Text("128MB".into())).unwrap(),
            "128MB"
        );
        assert_eq!(canonical_live(lookup("work_mem").unwrap(), "4096"), "4MB");
        assert_eq!(
            c("statement_timeout", Given::Text("30s".into())).unwrap(),
            "30s"
        );
        assert_eq!(
            c("statement_timeout", Given::Text("2min".into())).unwrap(),
            "2min"
        );
        assert_eq!(c("statement_timeout", Given::Integer(0)).unwrap(), "0");
        assert_eq!(
            c("log_min_duration_statement", Given::Integer(-1)).unwrap(),
            "-1"
        );
        assert_eq!(c("jit", Given::Bool(false)).unwrap(), "off");
        assert_eq!(c("jit", Given::Text("on".into())).unwrap(), "on");
        assert_eq!(
            c("log_statement", Given::Text("DDL".into())).unwrap(),
            "ddl"
        );
        assert_eq!(c("random_page_cost", Given::Float(1.1)).unwrap(), "1.1");
        assert_eq!(c("max_connections", Given::Integer(300)).unwrap(), "300");
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let e = c("work_mem", Given::Text("8 parsecs".into())).unwrap_err();
        assert!(e.contains("unknown unit"), "{e}");
        let e = c("work_mem", Given::Integer(1)).unwrap_err();
        assert!(e.contains("between 64kB and"), "{e}");
        let e = c("log_statement", Given::Text("most".into())).unwrap_err();
        assert!(e.contains("\"ddl\""), "{e}");
        assert!(c("jit", Given::Text("maybe".into())).is_err());
        assert!(c("max_connections", Given::Text("300MB".into())).is_err());
        assert!(c("max_connections", Given::Integer(0)).is_err());
        assert!(c("random_page_cost", Given::Float(-1.0)).is_err());
    }

    #[test]
    fn flyplans_own_settings_are_refused() {
        for n in [
            "port",
            "listen_addresses",
            "wal_level",
            "primary_conninfo",
            "archive_mode",
            "synchronous_standby_names",
            "max_wal_senders",
            "restore_command",
            "server_version",
        ] {
            assert!(owned(lookup(n).unwrap()).is_some(), "{n}");
        }
        assert!(owned(lookup("work_mem").unwrap()).is_none());
        assert!(owned(lookup("max_connections").unwrap()).is_none());
    }
}

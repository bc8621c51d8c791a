//! Strict checks for every name flyplan passes on to Fly or PostgreSQL (app
//! names, identifiers, secret and variable names, volume names), and the
//! nearest-match rule behind "did you mean" suggestions.
//!
//! Names end up in API paths and SQL, so they are validated against narrow
//! patterns here rather than escaped later: quotes, spaces and semicolons
//! never get past the config layer.

/// PostgreSQL's fully reserved key words (they cannot name a role or a
/// database without quoting), plus the role names PostgreSQL keeps for itself.
const RESERVED_WORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "none",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "public",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// A Fly app name: lowercase letters, digits and `-`, 2 to 63 characters,
/// starting with a letter and not ending with `-`.
pub fn check_fly_app_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("use only lowercase letters, digits and `-`");
    }
    if !(2..=63).contains(&name.len()) {
        return Err("it must be 2 to 63 characters long");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("it must start with a letter");
    }
    if name.ends_with('-') {
        return Err("it must not end with `-`");
    }
    Ok(())
}

/// A PostgreSQL identifier flyplan can use unquoted: `^[a-z_][a-z0-9_]{0,62}$`
/// and not a reserved key word.
pub fn check_identifier(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("use only lowercase letters, digits and `_`");
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        return Err("it must start with a letter or `_`");
    }
    if name.len() > 63 {
        return Err("it must be at most 63 characters long");
    }
    if RESERVED_WORDS.contains(&name) {
        return Err("it is a reserved word in PostgreSQL");
    }
    Ok(())
}

/// A role flyplan may create: a valid identifier that PostgreSQL does not
/// reserve for its own roles (`pg_*`).
pub fn check_role_name(name: &str) -> Result<(), &'static str> {
    check_identifier(name)?;
    if name.starts_with("pg_") {
        return Err("names starting with `pg_` are reserved for PostgreSQL's own roles");
    }
    Ok(())
}

/// A secret name as Fly accepts it: `^[A-Z_][A-Z0-9_]*$`.
pub fn is_secret_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// An environment variable name: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn is_env_var_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Fly volume name: lowercase letters, digits and `_`, at most 30 characters.
pub fn check_volume_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err("use only lowercase letters, digits and `_`");
    }
    if name.len() > 30 {
        return Err("it must be at most 30 characters long");
    }
    Ok(())
}

/// The database and user name Fly derives from an attached app's name:
/// lower-cased, `-` turned into `_`.
pub fn identifier_for_app(app: &str) -> String {
    app.to_ascii_lowercase().replace('-', "_")
}

/// Turn a directory name into a valid Fly app name, if anything usable is left.
pub fn sanitise_app_name(raw: &str) -> Option<String> {
    let mut out = String::new();
    for c in raw.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let start = out.find(|c: char| c.is_ascii_lowercase())?;
    let mut name: String = out[start..].chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    check_fly_app_name(&name).ok().map(|()| name)
}

/// The candidate closest to `word` (case-insensitively), if it is close
/// enough to be a plausible typo: at most two edits, and fewer edits than
/// half the candidate's length so that short keys do not match everything.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2 && *d * 2 < c.chars().count())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fly_app_names_are_strict() {
        assert!(check_fly_app_name("my-postgres-app").is_ok());
        assert!(check_fly_app_name("a1").is_ok());
        for bad in [
            "",
            "a",
            "My-App",
            "my_app",
            "-app",
            "app-",
            "1app",
            "x\"; DROP",
            "a b",
        ] {
            assert!(check_fly_app_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_fly_app_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn identifiers_reject_quotes_spaces_and_reserved_words() {
        assert!(check_identifier("billing_worker").is_ok());
        assert!(check_identifier("_x9").is_ok());
        for bad in ["", "a b", "A", "9a", "a-b", "a;b", "a\"b", "user", "select"] {
            assert!(check_identifier(bad).is_err(), "{bad:?}");
        }
        assert!(check_identifier(&"a".repeat(64)).is_err());
        assert!(check_role_name("pg_monitor").is_err());
        assert!(check_role_name("public").is_err());
        assert!(check_role_name("app_ro").is_ok());
    }

    #[test]
    fn secret_and_variable_names() {
        assert!(is_secret_name("PG_PASSWORD"));
        assert!(is_secret_name("_X1"));
        assert!(!is_secret_name("pg_password"));
        assert!(!is_secret_name("1X"));
        assert!(!is_secret_name(""));
        assert!(is_env_var_name("Pg_Pass1"));
        assert!(!is_env_var_name("A-B"));
    }

    #[test]
    fn directory_names_become_app_names() {
        assert_eq!(
            sanitise_app_name("My_Postgres App").as_deref(),
            Some("my-postgres-app")
        );
        assert_eq!(sanitise_app_name("123db").as_deref(), Some("db"));
        assert_eq!(sanitise_app_name("--"), None);
        assert_eq!(sanitise_app_name("x"), None);
    }

    #[test]
    fn closest_ignores_far_and_tiny_matches() {
        let keys = ["instances", "sync_standbys", "vm", "env"];
        assert_eq!(closest("instnces", keys), Some("instances"));
        assert_eq!(closest("INSTANCES", keys), Some("instances"));
        assert_eq!(closest("foo", keys), None);
        assert_eq!(closest("vn", keys), None);
    }
}

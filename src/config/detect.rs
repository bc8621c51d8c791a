//! Telling the fly.toml of a Postgres cluster from that of an ordinary Fly
//! app, so that running flyplan in the wrong directory is refused instead of
//! planning a new cluster under the name of an existing web app.

use toml_edit::{Item, Table, TableLike};

const PG_PORTS: [i64; 2] = [5432, 5433];

/// True when the file clearly describes an ordinary app (an HTTP service, a
/// web port, statics, a release command) and nothing in it speaks of
/// Postgres. A bare file with only `app` and `primary_region` is a cluster
/// with every default, not an app.
pub(crate) fn looks_like_ordinary_app(root: &Table) -> bool {
    app_signals(root) && !postgres_signals(root)
}

fn entries(item: Option<&Item>) -> Vec<&dyn TableLike> {
    match item {
        Some(Item::ArrayOfTables(a)) => a.iter().map(|t| t as &dyn TableLike).collect(),
        Some(Item::Value(toml_edit::Value::Array(a))) => a
            .iter()
            .filter_map(|v| v.as_inline_table().map(|t| t as &dyn TableLike))
            .collect(),
        Some(item) => item.as_table_like().into_iter().collect(),
        None => Vec::new(),
    }
}

fn str_of<'a>(t: &'a dyn TableLike, key: &str) -> Option<&'a str> {
    t.get(key).and_then(Item::as_str)
}

fn internal_ports(root: &Table) -> Vec<i64> {
    entries(root.get("services"))
        .into_iter()
        .filter_map(|s| s.get("internal_port").and_then(Item::as_integer))
        .collect()
}

fn app_signals(root: &Table) -> bool {
    root.contains_key("http_service")
        || root.contains_key("statics")
        || internal_ports(root).iter().any(|p| !PG_PORTS.contains(p))
        || entries(root.get("deploy"))
            .iter()
            .any(|d| d.contains_key("release_command"))
}

fn postgres_signals(root: &Table) -> bool {
    let named_postgres = |s: &str| {
        let s = s.to_ascii_lowercase();
        ["postgres", "postgis", "timescale", "pg"]
            .iter()
            .any(|w| s.contains(w))
    };
    let flyplan_tables = ["postgres", "secrets", "attachments"]
        .iter()
        .any(|k| root.contains_key(k));
    let image = entries(root.get("build"))
        .iter()
        .filter_map(|b| str_of(*b, "image"))
        .any(named_postgres);
    let mount = entries(root.get("mounts")).iter().any(|m| {
        str_of(*m, "source").is_some_and(named_postgres)
            || str_of(*m, "destination").is_some_and(|d| d.starts_with("/var/lib/postgresql"))
    });
    let checks = root
        .get("checks")
        .and_then(Item::as_table_like)
        .is_some_and(|checks| {
            checks.iter().any(|(_, c)| {
                c.as_table_like()
                    .and_then(|c| str_of(c, "path"))
                    .is_some_and(|p| p.starts_with("/flycheck/"))
            })
        });
    let port = internal_ports(root).iter().any(|p| PG_PORTS.contains(p));
    let env = root
        .get("env")
        .and_then(Item::as_table_like)
        .is_some_and(|env| {
            env.iter()
                .any(|(k, _)| k.starts_with("PG") || k.starts_with("POSTGRES"))
        });
    flyplan_tables || image || mount || checks || port || env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordinary(src: &str) -> bool {
        let doc = toml_edit::Document::parse(src).expect("valid TOML");
        looks_like_ordinary_app(doc.as_table())
    }

    #[test]
    fn a_web_app_is_ordinary() {
        assert!(ordinary(
            "app = \"web\"\n[http_service]\ninternal_port = 8080\n"
        ));
        assert!(ordinary(
            "app = \"web\"\n[[services]]\ninternal_port = 4000\n"
        ));
    }

    #[test]
    fn anything_about_postgres_makes_it_a_cluster() {
        assert!(!ordinary("app = \"db\"\nprimary_region = \"iad\"\n"));
        assert!(!ordinary("[http_service]\n[postgres]\ninstances = 2\n"));
        assert!(!ordinary(
            "[[services]]\ninternal_port = 8080\n[env]\nPGUSER = \"postgres\"\n"
        ));
        assert!(!ordinary(
            "[http_service]\n[build]\nimage = \"postgres:16\"\n"
        ));
        assert!(!ordinary("[[services]]\ninternal_port = 5432\n"));
    }
}

//! `flyplan import` through the real binary on a JSON live state (the file
//! provider): a cluster applied from a fly.toml, the file deleted, imported,
//! and planned again must be `No changes` for every kind of resource, with
//! no secret value in the imported file.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

const PG_SECRET: &str = "import-Secret-Value-1234";
const APP_USER_SECRET: &str = "import-Secret-Value-5678";
/// The store URL of `[postgres.backup]`: its keys are secret too.
const STORE_URL: &str =
    "https://importkey:import-Store-Secret-9012@fly.storage.tigris.dev/pg-backups/pg-import";

/// Everything flyplan manages, away from every default.
const RICH: &str = r#"app = "pg-import"
primary_region = "iad"

[build]
  image = "flyio/postgres-flex:15.8"

[postgres]
  instances = 3
  sync_standbys = 1
  read_replicas = { ams = 1, syd = 2 }
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
  APP_USER_PASSWORD = { from_env = "APP_USER_PASSWORD" }
  S3_ARCHIVE_CONFIG = { from_env = "S3_ARCHIVE_CONFIG" }

[[mounts]]
  source = "pg_vol"
  destination = "/data"
  initial_size = "25gb"
  snapshot_retention = 14
  scheduled_snapshots = false
  snapshot_time = "03:30"

[[vm]]
  size = "performance-2x"
  memory = "4gb"
  cpus = 2
  cpu_kind = "performance"

[[attachments]]
  app = "myapp"

[[attachments]]
  app = "billing-worker"
  database = "billing"
  user = "billing_worker"
  variable = "BILLING_DATABASE_URL"
  superuser = false

[[postgres.users]]
  name = "app_user"
  connection_limit = 20
  createdb = true
  member_of = ["pg_read_all_data", "reporting"]
  password_secret = "APP_USER_PASSWORD"

[[postgres.users]]
  name = "reporting"
  login = false

[[postgres.databases]]
  name = "analytics"
  owner = "app_user"

[postgres.parameters]
  work_mem = "8MB"
  max_connections = 300
  log_min_duration_statement = "250ms"

[postgres.backup]
  secret = "S3_ARCHIVE_CONFIG"
  archive_timeout = "120s"
  recovery_window = "14d"
  full_backup_frequency = "12h"
  minimum_redundancy = 2
"#;

const SEED: &str = include_str!("data/seed-dialect.toml");

fn flyplan(live: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .arg("--live")
        .arg(live)
        .args(args)
        .env("PG_PASSWORD", PG_SECRET)
        .env("APP_USER_PASSWORD", APP_USER_SECRET)
        .env("S3_ARCHIVE_CONFIG", STORE_URL)
        .env("NO_COLOR", "1")
        .output()
        .expect("flyplan runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Apply `toml` (written at `dir/sub/fly.toml`) to a new live state, then
/// delete the file. Returns the live state's path.
fn applied(dir: &Path, sub: &str, toml: &str) -> std::path::PathBuf {
    let cfg_dir = dir.join(sub);
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let cfg = cfg_dir.join("fly.toml");
    std::fs::write(&cfg, toml).unwrap();
    let live = dir.join("live.json");
    ok(&flyplan(
        &live,
        &["apply", "-c", cfg.to_str().unwrap(), "--auto-approve"],
    ));
    std::fs::remove_file(&cfg).unwrap();
    live
}

/// Import `app` to `dir/imported.toml` and return its text.
fn import(live: &Path, dir: &Path, app: &str, extra: &[&str]) -> (String, std::path::PathBuf) {
    let out = dir.join("imported.toml");
    let mut args = vec!["import", "-a", app, "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&flyplan(live, &args));
    (std::fs::read_to_string(&out).unwrap(), out)
}

/// `plan --detailed-exitcode` of `cfg` exits 0 with `No changes`, and the
/// JSON plan lists every resource of the live state as a no-op.
fn plans_clean(live: &Path, cfg: &Path) -> BTreeSet<String> {
    let cfg = cfg.to_str().unwrap();
    let o = flyplan(live, &["plan", "-c", cfg, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("No changes. Live state matches fly.toml."),
        "{}",
        text(&o)
    );
    let json = ok(&flyplan(live, &["plan", "-c", cfg, "--format", "json"]));
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let no_ops: BTreeSet<String> = plan["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["actions"], serde_json::json!(["no-op"]), "{c}");
            c["address"].as_str().unwrap().to_string()
        })
        .collect();
    no_ops
}

fn live_addresses(live: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(live).unwrap()).unwrap();
    v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_kind_of_resource_round_trips_through_import() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let (imported, cfg) = import(&live, dir.path(), "pg-import", &[]);
    ok(&flyplan(&live, &["validate", "-c", cfg.to_str().unwrap()]));
    let no_ops = plans_clean(&live, &cfg);

    let live_resources = live_addresses(&live);
    let kinds: BTreeSet<&str> = live_resources.iter().map(|(_, k)| k.as_str()).collect();
    for kind in [
        "app",
        "secret",
        "volume",
        "machine",
        "formation",
        "endpoint",
        "user",
        "database",
        "attachment",
        "snapshot_policy",
        "parameter",
        "backup_policy",
    ] {
        assert!(kinds.contains(kind), "no {kind} in the live state");
    }
    for (address, _) in &live_resources {
        assert!(
            no_ops.contains(address),
            "{address} is not compared by the plan of the imported file"
        );
    }
    // What the reviewer reads: the values away from the defaults.
    for line in [
        "image = \"flyio/postgres-flex:15.8\"",
        "instances = 3",
        "sync_standbys = 1",
        "read_replicas = { ams = 1, syd = 2 }",
        "operator_password = \"PG_PASSWORD\"",
        "source = \"pg_vol\"",
        "initial_size = \"25gb\"",
        "snapshot_retention = 14",
        "scheduled_snapshots = false",
        "snapshot_time = \"03:30\"",
        "size = \"performance-2x\"",
        "memory = \"4gb\"",
        "superuser = false",
        "variable = \"BILLING_DATABASE_URL\"",
        "member_of = [\"pg_read_all_data\", \"reporting\"]",
        "password_secret = \"APP_USER_PASSWORD\"",
        "login = false",
        "owner = \"app_user\"",
        "PG_PASSWORD = { from_env = \"PG_PASSWORD\" }",
    ] {
        assert!(imported.contains(line), "missing {line:?} in:\n{imported}");
    }
    assert!(imported.contains("# 3 nodes observed in iad"), "{imported}");
}

#[test]
fn the_imported_file_holds_no_secret_value_and_names_each_secret() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let (imported, _) = import(&live, dir.path(), "pg-import", &[]);
    let stdout = ok(&flyplan(&live, &["import", "-a", "pg-import"]));
    assert_eq!(stdout, imported, "standard output and -o differ");
    for value in [
        PG_SECRET,
        APP_USER_SECRET,
        STORE_URL,
        "import-Store-Secret-9012",
    ] {
        assert!(!imported.contains(value), "a secret value was written");
    }
    let digests = std::fs::read_to_string(&live).unwrap();
    for line in digests.lines().filter(|l| l.contains("sha256:")) {
        let digest = line.split('"').nth(3).unwrap_or_default();
        assert!(
            digest.is_empty() || !imported.contains(digest),
            "a digest was written"
        );
    }
    for name in ["PG_PASSWORD", "APP_USER_PASSWORD", "S3_ARCHIVE_CONFIG"] {
        let line = format!("{name} = {{ from_env = \"{name}\" }}");
        let at = imported.find(&line).expect("secret declared");
        let above = imported[..at].lines().last().unwrap_or_default();
        assert!(
            above.trim_start().starts_with('#') || imported[..at].ends_with("  "),
            "no comment above {name}"
        );
    }
}

#[test]
fn sections_come_in_the_order_of_the_design_example() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let (imported, _) = import(&live, dir.path(), "pg-import", &[]);
    let order = [
        "app = ",
        "primary_region = ",
        "\n[build]",
        "\n[postgres]",
        "\n[secrets]",
        "\n[[mounts]]",
        "\n[[vm]]",
        "\n[[attachments]]",
        "\n[[postgres.users]]",
        "\n[[postgres.databases]]",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| imported.find(k).unwrap_or_else(|| panic!("{k} missing")))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{imported}");
    let pg = &imported[imported.find("\n[postgres]").unwrap()..];
    let keys = [
        "instances",
        "sync_standbys",
        "read_replicas",
        "operator_password",
    ];
    let at: Vec<usize> = keys.iter().map(|k| pg.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{pg}");
    // Every section says what was observed.
    for header in order.iter().skip(2) {
        let at = imported.find(header).unwrap();
        let above = imported[..at].lines().last().unwrap_or_default();
        assert!(above.starts_with("# "), "no comment above {header:?}");
    }
}

#[test]
fn a_cluster_of_the_seed_dialect_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    // The services dialect names the app after the file's directory.
    let live = applied(dir.path(), "seedapp", SEED);
    let (imported, cfg) = import(&live, dir.path(), "seedapp", &[]);
    plans_clean(&live, &cfg);
    // The operator is not `postgres`: the file names it the seed's way.
    assert!(imported.contains("[services.postgres]"), "{imported}");
    assert!(imported.contains("PG_USER = \"fly\""), "{imported}");
    assert!(
        imported.contains("PG_PASSWORD = \"$PG_PASSWORD\""),
        "{imported}"
    );
    assert!(
        imported.contains("PG_DATABASE = \"myapp_db\""),
        "{imported}"
    );
    assert!(imported.contains("instances = 2"), "{imported}");
    assert!(!imported.contains(PG_SECRET));
}

#[test]
fn no_roles_leaves_users_and_databases_out_and_still_plans_clean() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let (imported, cfg) = import(&live, dir.path(), "pg-import", &["--no-roles"]);
    assert!(!imported.contains("[[postgres.users]]"), "{imported}");
    assert!(!imported.contains("[[postgres.databases]]"), "{imported}");
    assert!(imported.contains("[[attachments]]"), "{imported}");
    let cfg = cfg.to_str().unwrap();
    let o = flyplan(&live, &["plan", "-c", cfg, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// A cluster as `fly pg create` leaves it: flyctl's generated secrets and
/// postgres-flex's roles and database, none of them made by flyplan.
#[test]
fn internal_secrets_roles_and_databases_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&live).unwrap()).unwrap();
    let resources = state["resources"].as_array_mut().unwrap();
    for name in [
        "SU_PASSWORD",
        "REPL_PASSWORD",
        "OPERATOR_PASSWORD",
        "FLY_CONSUL_URL",
    ] {
        resources.push(serde_json::json!({
            "address": format!("secret.{name}"), "kind": "secret",
            "attrs": {"digest": "sha256:changed-outside-flyplan", "managed_by": "outside-flyplan"},
        }));
    }
    resources.push(serde_json::json!({
        "address": "user.repmgr", "kind": "user",
        "attrs": {"login": true, "superuser": true},
    }));
    resources.push(serde_json::json!({
        "address": "user.flypgadmin", "kind": "user",
        "attrs": {"login": true, "superuser": true},
    }));
    resources.push(serde_json::json!({
        "address": "database.repmgr", "kind": "database",
        "attrs": {"owner": "repmgr"},
    }));
    std::fs::write(&live, serde_json::to_string_pretty(&state).unwrap()).unwrap();

    let (imported, cfg) = import(&live, dir.path(), "pg-import", &[]);
    for name in ["SU_PASSWORD", "REPL_PASSWORD", "FLY_CONSUL_URL"] {
        assert!(
            !imported.contains(&format!("{name} = ")),
            "{name} declared:\n{imported}"
        );
    }
    assert!(!imported.contains("repmgr\""), "{imported}");
    assert!(!imported.contains("flypgadmin"), "{imported}");
    assert!(imported.contains("left out, generated for postgres-flex"));
    let before = std::fs::read_to_string(&live).unwrap();
    let cfg = cfg.to_str().unwrap();
    let o = flyplan(&live, &["plan", "-c", cfg, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(before, std::fs::read_to_string(&live).unwrap());
}

#[test]
fn an_existing_file_is_refused_without_force_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let out = dir.path().join("fly.toml");
    std::fs::write(&out, "# mine\n").unwrap();
    let path = out.to_str().unwrap();
    let o = flyplan(&live, &["import", "-a", "pg-import", "-o", path]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--force"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# mine\n");
    ok(&flyplan(
        &live,
        &["import", "-a", "pg-import", "-o", path, "--force"],
    ));
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("app = \"pg-import\""));
}

#[test]
fn importing_an_app_that_does_not_exist_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let out = dir.path().join("other.toml");
    let o = flyplan(
        &live,
        &["import", "-a", "other-app", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("app other-app does not exist"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
    let o = flyplan(&live, &["import", "-a", "Not_An_App"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("invalid Fly app name"), "{}", text(&o));
}

/// A fly.toml as `fly config save` writes it, without counts, planned
/// against the imported cluster, keeps every node.
#[test]
fn a_file_without_counts_keeps_the_imported_cluster_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let live = applied(dir.path(), "cluster", RICH);
    let (imported, cfg) = import(&live, dir.path(), "pg-import", &[]);
    let without: String = imported
        .lines()
        .filter(|l| {
            !["instances", "sync_standbys", "read_replicas"]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, without).unwrap();
    let o = flyplan(&live, &["plan", "-c", cfg.to_str().unwrap()]);
    let out = text(&o);
    assert!(
        out.contains("instances not declared in fly.toml: keeping the 3 live nodes"),
        "{out}"
    );
    assert!(!out.contains("will be destroyed"), "{out}");
    assert!(!out.contains("machine[syd:1] will"), "{out}");
}

//! `flyplan import` of a real local cluster: applied from a fly.toml with
//! users, databases, memberships, two attachments (one without superuser),
//! a read replica, a volume size and snapshot retention away from the
//! defaults and a `[[vm]]`; the file deleted; imported; planned again:
//! `No changes`. The test destroys what it made, also when it fails.

use std::path::PathBuf;
use std::process::{Command, Output};

#[path = "support/cluster.rs"]
mod cluster;

use cluster::text;

const PG_PASSWORD: &str = "import-test-Operator-83";
const READER_PASSWORD: &str = "import-test-Reader-19";

const CONFIG: &str = r#"app = "pg-import-local"
primary_region = "iad"

[build]
  image = "flyio/postgres-flex:15"

[postgres]
  instances = 2
  sync_standbys = 1
  read_replicas = { ams = 1 }
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
  READER_PASSWORD = { from_env = "READER_PASSWORD" }

[[mounts]]
  source = "pg_data"
  destination = "/data"
  initial_size = "3gb"
  snapshot_retention = 9

[[vm]]
  size = "shared-cpu-2x"
  memory = "1gb"

[[postgres.users]]
  name = "app_reader"
  password_secret = "READER_PASSWORD"
  member_of = ["pg_read_all_data", "reporting"]
  connection_limit = 5

[[postgres.users]]
  name = "reporting"
  login = false

[[postgres.databases]]
  name = "analytics"
  owner = "app_reader"

[[attachments]]
  app = "myapp"

[[attachments]]
  app = "billing-worker"
  database = "billing"
  user = "billing_worker"
  variable = "BILLING_DATABASE_URL"
  superuser = false
"#;

/// The seed's dialect: the app is named after the file's directory.
const SEED: &str = include_str!("data/seed-dialect.toml");

struct Cluster {
    dir: tempfile::TempDir,
    /// The fly.toml destroy runs with.
    text: &'static str,
    /// Where it is written (the seed's dialect reads the app from the
    /// directory).
    sub: &'static str,
}

impl Cluster {
    fn new(text: &'static str, sub: &'static str) -> Cluster {
        let dir = cluster::state_dir("flyplan-im-");
        std::fs::create_dir_all(dir.path().join(sub)).expect("config dir");
        Cluster { dir, text, sub }
    }

    fn config(&self) -> PathBuf {
        self.path(self.sub).join("fly.toml")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(self.path("state"))
            .args(args)
            .env("PG_PASSWORD", PG_PASSWORD)
            .env("READER_PASSWORD", READER_PASSWORD)
            .env("NO_COLOR", "1")
            .output()
            .expect("flyplan runs")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let config = self.config();
        let _ = std::fs::write(&config, self.text);
        let _ = self.run(&[
            "destroy",
            "-c",
            config.to_str().unwrap(),
            "--allow-destroy",
            "--auto-approve",
        ]);
    }
}

/// Apply `file`, delete it, import `app` and plan the imported file, which
/// must exit 0 with `--detailed-exitcode`. Returns the plan's output and the
/// imported file.
fn apply_delete_import_plan(c: &Cluster, file: &str, app: &str) -> (Output, String) {
    let config = c.config();
    std::fs::write(&config, file).unwrap();
    let o = c.run(&["apply", "-c", config.to_str().unwrap(), "--auto-approve"]);
    assert!(o.status.success(), "apply: {}", text(&o));
    std::fs::remove_file(&config).unwrap();

    let imported_path = c.path("imported.toml");
    let imported_arg = imported_path.to_str().unwrap();
    let o = c.run(&["import", "-a", app, "-o", imported_arg]);
    assert!(o.status.success(), "import: {}", text(&o));
    let imported = std::fs::read_to_string(&imported_path).unwrap();
    let o = c.run(&["plan", "-c", imported_arg, "--detailed-exitcode"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "plan of the imported file:\n{}\n{imported}",
        text(&o)
    );
    (o, imported)
}

#[test]
fn an_imported_local_cluster_plans_no_changes() {
    let c = Cluster::new(CONFIG, "cluster");
    let (o, imported) = apply_delete_import_plan(&c, CONFIG, "pg-import-local");
    assert!(
        text(&o).contains("No changes. Live state matches fly.toml."),
        "{}",
        text(&o)
    );

    for value in [PG_PASSWORD, READER_PASSWORD] {
        assert!(!imported.contains(value), "a secret value was written");
    }
    for line in [
        "instances = 2",
        "sync_standbys = 1",
        "read_replicas = { ams = 1 }",
        "operator_password = \"PG_PASSWORD\"",
        "initial_size = \"3gb\"",
        "snapshot_retention = 9",
        "size = \"shared-cpu-2x\"",
        "memory = \"1gb\"",
        "name = \"app_reader\"",
        "member_of = [\"pg_read_all_data\", \"reporting\"]",
        "connection_limit = 5",
        "password_secret = \"READER_PASSWORD\"",
        "login = false",
        "owner = \"app_reader\"",
        "app = \"billing-worker\"",
        "superuser = false",
        "READER_PASSWORD = { from_env = \"READER_PASSWORD\" }",
    ] {
        assert!(imported.contains(line), "missing {line:?} in:\n{imported}");
    }
    // pg_auto_failover's roles and the attachments' own roles and
    // databases are not declared as users or databases.
    for absent in [
        "pgautofailover",
        "name = \"myapp\"",
        "name = \"billing\"",
        "name = \"billing_worker\"",
        "name = \"postgres\"",
    ] {
        assert!(!imported.contains(absent), "{absent:?} in:\n{imported}");
    }
    assert!(imported.contains("leader machine[iad:"), "{imported}");
}

/// A cluster made from the seed's `[services.postgres]` file: its operator
/// `fly` and database `myapp_db` are imported, and the plan is clean.
#[test]
fn an_imported_local_cluster_of_the_seed_dialect_plans_no_changes() {
    let c = Cluster::new(SEED, "seedapp");
    let (_, imported) = apply_delete_import_plan(&c, SEED, "seedapp");
    assert!(
        !imported.contains(PG_PASSWORD),
        "a secret value was written"
    );
    assert!(imported.contains("\"fly\""), "{imported}");
    assert!(imported.contains("\"myapp_db\""), "{imported}");
    assert!(imported.contains("instances = 2"), "{imported}");
}

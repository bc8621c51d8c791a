//! `[postgres.backup]` and `[postgres.restore]` on the fly provider, through
//! the CLI against the scripted, OpenAPI- and GraphQL-checked Fly API (and
//! a real PostgreSQL 15 for the `psql` run through `exec`):
//!
//! - the store URL goes into `S3_ARCHIVE_CONFIG` in the one bootstrap
//!   secrets call, whatever the declared secret's name (flyctl's `fly pg
//!   create --enable-backups` sets it in that call: `launcher.go:418-499`);
//! - the four settings go through postgres-flex's admin API
//!   (`/commands/admin/settings/update/barman`, `internal/api/handle_admin.go:335-395`)
//!   by `curl` in the leader through `exec`, with string values under
//!   postgres-flex's names (`internal/flypg/barman_config.go:15-20`), and
//!   are read back (`view/barman`, `:302-333`);
//! - `fly image update` run outside flyplan puts them back to the defaults
//!   (flyctl#4340): the plan shows it and apply restores it;
//! - turning backups off needs `--allow-destroy`, unsets the secret in one
//!   call and updates the nodes, which boot without archiving
//!   (`internal/flypg/pg.go:190-193`);
//! - `backups list` and `backups create` run `flexctl backup list --json`
//!   and `flexctl backup create` in the leader through `exec`, as `fly pg
//!   backup list|create` do (flyctl `internal/command/postgres/backup.go:209-263,
//!   393-429`), answered as postgres-flex's flexctl answers
//!   (`support/fly_api/flexctl.rs`); `backups run` leaves the schedule to
//!   postgres-flex; `backups verify` is refused, saying why;
//! - the store is checked where flyplan runs (a real moto store here)
//!   before a plan that sets the policy is shown;
//! - a restore into a new app sets `S3_ARCHIVE_REMOTE_RESTORE_CONFIG` as
//!   `fly pg backup restore` does (flyctl
//!   `internal/command/postgres/backup.go:127-143, 431-447`), and an existing
//!   app is refused.

#[path = "support/fly_api/mod.rs"]
mod fly_api;
#[path = "support/s3.rs"]
mod s3;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use fly_api::postgres::Server;
use fly_api::{FlyApi, Recorded};
use serde_json::{json, Value};

const APP: &str = "pg-bk";
const OPERATOR: &str = "backup-Operator-pass-41";
const STORE_KEY: &str = s3::SECRET_KEY;
const BUCKET: &str = "pg-backups";

fn toml(app: &str, extra: &str) -> String {
    format!(
        r#"app = "{app}"
primary_region = "iad"

[build]
  image = "flyio/postgres-flex:15"

[postgres]
  instances = 2
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = {{ from_env = "PG_PASSWORD" }}
  BACKUP_URL = {{ from_env = "BACKUP_URL" }}
{extra}"#
    )
}

const BACKUP: &str = r#"
[postgres.backup]
  secret = "BACKUP_URL"
  archive_timeout = "30s"
  recovery_window = "14d"
  full_backup_frequency = "12h"
  minimum_redundancy = 2
"#;

/// The scripted Fly API, a PostgreSQL behind its `exec`, and a real
/// object store (moto) that the plan-time store check reaches.
struct Place {
    api: FlyApi,
    dir: tempfile::TempDir,
    _server: Arc<Server>,
    store: s3::ObjectStore,
}

impl Place {
    fn new() -> Place {
        let server = Arc::new(Server::start("initial-not-the-operator"));
        let api = FlyApi::start();
        api.state().model.postgres = Some(server.clone());
        let store = s3::ObjectStore::start();
        store.create_bucket(BUCKET);
        Place {
            api,
            dir: tempfile::tempdir().unwrap(),
            _server: server,
            store,
        }
    }

    /// A store URL in postgres-flex's form for `directory` of the bucket.
    fn store_url(&self, directory: &str) -> String {
        self.store.url(BUCKET, directory)
    }

    fn config(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        let o = self
            .api
            .cli(&self.dir.path().join("state"))
            .args(args)
            .env("PG_PASSWORD", OPERATOR)
            .env("BACKUP_URL", self.store_url("pg-bk"))
            .env("SOURCE_URL", self.store_url("pg-source"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let t = text(&o);
        assert!(!t.contains(STORE_KEY), "the store's key leaked: {t}");
        o
    }

    /// `apply` with `BACKUP_URL` naming another directory of the store.
    fn apply_with_store(&self, config: &str, dir: &str) {
        let o = self
            .api
            .cli(&self.dir.path().join("state"))
            .args(["apply", "-c", config, "--auto-approve"])
            .env("PG_PASSWORD", OPERATOR)
            .env("BACKUP_URL", self.store_url(dir))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        assert!(!text(&o).contains(STORE_KEY), "the store's key leaked");
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "flyplan {args:?}: {}", text(&o));
        text(&o)
    }

    /// `plan --detailed-exitcode`: its exit code and output.
    fn plan(&self, config: &str) -> (Option<i32>, String) {
        let o = self.run(&["plan", "-c", config, "--detailed-exitcode"]);
        (o.status.code(), text(&o))
    }

    fn secrets_calls(&self) -> Vec<Recorded> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.op() == "POST /apps/{app_name}/secrets")
            .collect()
    }

    /// Commands run through `exec` that reach the barman settings API.
    fn barman_execs(&self, app: &str) -> Vec<(String, Vec<String>)> {
        self.api
            .state()
            .model
            .app(app)
            .execs
            .iter()
            .filter(|(_, c)| c.last().is_some_and(|u| u.ends_with("/barman")))
            .cloned()
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn values(r: &Recorded) -> serde_json::Map<String, Value> {
    r.body.as_ref().unwrap()["values"]
        .as_object()
        .cloned()
        .unwrap()
}

fn settings(p: &Place, app: &str) -> Vec<(String, String)> {
    p.api
        .state()
        .model
        .app(app)
        .barman
        .current()
        .into_iter()
        .collect()
}

fn wanted() -> Vec<(String, String)> {
    [
        ("archive_timeout", "30s"),
        ("full_backup_frequency", "12h"),
        ("minimum_redundancy", "2"),
        ("recovery_window", "14d"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Backups from nothing, drift after an image update made outside flyplan,
/// then backups turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_set_at_bootstrap_kept_across_an_image_update_and_turned_off_with_allow_destroy(
) {
    let p = Place::new();
    let on = p.config("fly.toml", &toml(APP, BACKUP));

    // The plan shows the policy, its store as a sensitive value.
    let (code, out) = p.plan(&on);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("backup_policy.pg-bk"), "{out}");
    assert!(out.contains("(sensitive value)"), "{out}");

    p.ok(&["apply", "-c", &on, "--auto-approve"]);
    p.api.assert_conformant();

    // One secrets call, before the first machine, with the store URL as
    // S3_ARCHIVE_CONFIG next to the passwords postgres-flex needs.
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let v = values(&calls[0]);
    assert_eq!(v["S3_ARCHIVE_CONFIG"], json!(p.store_url("pg-bk")));
    assert_eq!(v["BACKUP_URL"], json!(p.store_url("pg-bk")));
    for n in [
        "SU_PASSWORD",
        "REPL_PASSWORD",
        "OPERATOR_PASSWORD",
        "FLY_CONSUL_URL",
    ] {
        assert!(v.contains_key(n), "{n} missing from {:?}", v.keys());
    }
    let reqs = p.api.requests();
    let first_machine = reqs
        .iter()
        .position(|r| r.op() == "POST /apps/{app_name}/machines")
        .unwrap();
    let secrets_at = reqs
        .iter()
        .position(|r| r.op() == "POST /apps/{app_name}/secrets")
        .unwrap();
    assert!(secrets_at < first_machine);

    // The settings went to the leader as strings under postgres-flex's
    // names, all four in one update, and were read first.
    let execs = p.barman_execs(APP);
    let updates: Vec<_> = execs
        .iter()
        .filter(|(_, c)| c.last().unwrap().ends_with("/update/barman"))
        .collect();
    assert_eq!(updates.len(), 1, "{execs:?}");
    assert_eq!(
        updates[0].1[8],
        r#"{"archive_timeout":"30s","full_backup_frequency":"12h","minimum_redundancy":"2","recovery_window":"14d"}"#
    );
    assert!(execs
        .iter()
        .any(|(_, c)| c.last().unwrap().ends_with("/view/barman")));
    assert_eq!(settings(&p, APP), wanted());
    // Restarted to take them (postgres-flex answers restart_required).
    assert!(
        p.api
            .requests()
            .iter()
            .any(|r| r.op() == "POST /apps/{app_name}/machines/{machine_id}/restart"),
        "no restart after the settings changed"
    );

    // Planned again: nothing to do, and only reads.
    p.api.clear_requests();
    let (code, out) = p.plan(&on);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        p.api.changes().is_empty(),
        "{:?}",
        p.api.changes().iter().map(|r| r.op()).collect::<Vec<_>>()
    );

    // Base backups through flexctl in the leader, as flyctl runs it: none
    // yet, one taken, then listed with the same columns as on the local
    // provider.
    let out = p.ok(&["backups", "list", "-c", &on]);
    assert!(out.contains("No base backups of app pg-bk."), "{out}");
    p.api.clear_requests();
    let out = p.ok(&["backups", "create", "-c", &on, "--json"]);
    let made: Value = serde_json::from_str(out.trim()).unwrap();
    let id = made["backup_id"].as_str().unwrap().to_string();
    let leader = {
        let st = p.api.state();
        let a = st.model.app(APP);
        let leader = a
            .live_machines()
            .find(|m| {
                m.json["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["name"] == "role" && c["output"] == "primary")
            })
            .unwrap()
            .id()
            .to_string();
        let creates: Vec<_> = a
            .execs
            .iter()
            .filter(|(_, c)| c[0] == "flexctl" && c[2] == "create")
            .collect();
        assert_eq!(
            creates,
            [&(
                leader.clone(),
                vec!["flexctl".into(), "backup".into(), "create".into()]
            )],
            "flexctl backup create ran once, on the leader"
        );
        leader
    };
    assert_eq!(made["node"], json!(leader));
    let execs: Vec<Value> = p
        .api
        .requests()
        .into_iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/machines/{machine_id}/exec")
        .filter_map(|r| r.body)
        .filter(|b| b["command"][0] == "flexctl")
        .collect();
    assert!(
        execs
            .iter()
            .any(|b| b["command"][2] == "create" && b["timeout"] == 3600),
        "{execs:?}"
    );
    assert!(p.api.changes().iter().all(|r| r.op().ends_with("/exec")));
    let out = p.ok(&["backups", "list", "-c", &on]);
    assert!(out.contains("ID ") && out.contains("BEGIN WAL"), "{out}");
    assert!(out.contains(&id) && out.contains("DONE"), "{out}");
    let listed: Value =
        serde_json::from_str(&p.ok(&["backups", "list", "-c", &on, "--json"])).unwrap();
    assert_eq!(listed[0]["backup_id"], json!(id));
    assert_eq!(listed[0]["status"], json!("DONE"));
    // Verify restores where flyplan runs, which the fly provider does not:
    // refused, saying what checks a backup instead.
    let o = p.run(&["backups", "verify", &id, "-c", &on]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not verified"), "{}", text(&o));
    assert!(text(&o).contains(&format!("--target {id}")), "{}", text(&o));
    // The schedule is postgres-flex's own: `run` says so and takes nothing.
    let out = p.ok(&["backups", "run", "-c", &on]);
    assert!(
        out.contains("no base backup taken: postgres-flex takes base backups in the cluster"),
        "{out}"
    );
    assert_eq!(p.api.state().model.app(APP).backups.backups.len(), 1);
    p.api.assert_conformant();

    // `fly image update` outside flyplan (to the latest release of the same
    // tag) puts the settings back to postgres-flex's defaults: drift.
    p.api
        .state()
        .model
        .image_update_outside(APP, "flyio/postgres-flex:15");
    assert_ne!(settings(&p, APP), wanted());
    let (code, out) = p.plan(&on);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("backup_policy.pg-bk"), "{out}");
    assert!(out.contains("archive_timeout"), "{out}");
    assert!(out.contains("\"60s\""), "the default is shown: {out}");
    p.api.clear_requests();
    p.ok(&["apply", "-c", &on, "--auto-approve"]);
    assert_eq!(settings(&p, APP), wanted());
    assert!(
        p.secrets_calls().is_empty(),
        "the secret was in place: no secrets call"
    );
    let (code, out) = p.plan(&on);
    assert_eq!(code, Some(0), "{out}");

    // A change by hand (`fly pg backup config update`) is drift too.
    p.api
        .state()
        .model
        .app_mut(APP)
        .barman
        .set("minimum_redundancy", "5");
    let (code, out) = p.plan(&on);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("minimum_redundancy"), "{out}");
    p.ok(&["apply", "-c", &on, "--auto-approve"]);
    assert_eq!(settings(&p, APP), wanted());

    // A new store URL on the existing app: one secrets call with both
    // names, then every node updated to the new secrets version.
    p.api.clear_requests();
    p.apply_with_store(&on, "pg-bk-2");
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let v = values(&calls[0]);
    assert_eq!(v["S3_ARCHIVE_CONFIG"], json!(p.store_url("pg-bk-2")));
    let updates: Vec<_> = p
        .api
        .requests()
        .into_iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/machines/{machine_id}")
        .collect();
    assert_eq!(updates.len(), 2, "every node updated once");
    let want_version = p.api.state().model.app(APP).secrets_version;
    for u in &updates {
        assert_eq!(
            u.body.as_ref().unwrap()["min_secrets_version"],
            json!(want_version)
        );
    }
    // Put the first URL back for the rest of the test.
    p.ok(&["apply", "-c", &on, "--auto-approve"]);

    // flyplan's own image update plans the policy again, after the
    // machines, and leaves the settings as fly.toml has them.
    let newer_image = |t: String| t.replace("postgres-flex:15\"", "postgres-flex:15.8\"");
    let newer = p.config("newer.toml", &newer_image(toml(APP, BACKUP)));
    let (code, out) = p.plan(&newer);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("applied again after the image update"),
        "{out}"
    );
    p.ok(&["apply", "-c", &newer, "--auto-approve"]);
    assert_eq!(settings(&p, APP), wanted());
    let (code, out) = p.plan(&newer);
    assert_eq!(code, Some(0), "{out}");

    // Turning backups off: blocked without --allow-destroy, nothing changed.
    let off = p.config("off.toml", &newer_image(toml(APP, "")));
    p.api.clear_requests();
    let o = p.run(&["apply", "-c", &off, "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("needs --allow-destroy"), "{}", text(&o));
    assert!(p.api.changes().is_empty(), "nothing changed");
    assert!(p
        .api
        .state()
        .model
        .app(APP)
        .secrets
        .contains_key("S3_ARCHIVE_CONFIG"));

    // With it: S3_ARCHIVE_CONFIG unset in one call, the nodes updated.
    p.ok(&["apply", "-c", &off, "--auto-approve", "--allow-destroy"]);
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(values(&calls[0]), {
        let mut m = serde_json::Map::new();
        m.insert("S3_ARCHIVE_CONFIG".into(), Value::Null);
        m
    });
    assert!(!p
        .api
        .state()
        .model
        .app(APP)
        .secrets
        .contains_key("S3_ARCHIVE_CONFIG"));
    assert!(p
        .api
        .requests()
        .iter()
        .any(|r| r.op() == "POST /apps/{app_name}/machines/{machine_id}"));
    let (code, out) = p.plan(&off);
    assert_eq!(code, Some(0), "{out}");
    p.api.assert_conformant();
}

/// A restore into a new app: the source URL and the target in
/// `S3_ARCHIVE_REMOTE_RESTORE_CONFIG`, in the bootstrap secrets call; the
/// CLI's restore names a backup with `targetName`; an existing app is
/// refused and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_into_a_new_app_sets_the_restore_secret_as_flyctl_does() {
    let p = Place::new();
    let restore = p.config(
        "restore.toml",
        &toml(
            "pg-restored",
            r#"  SOURCE_URL = { from_env = "SOURCE_URL" }

[postgres.restore]
  backup_secret = "SOURCE_URL"
  target_time = "2026-11-30T10:15:00Z"
"#,
        ),
    );
    p.ok(&["apply", "-c", &restore, "--auto-approve"]);
    p.api.assert_conformant();
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let v = values(&calls[0]);
    assert_eq!(
        v["S3_ARCHIVE_REMOTE_RESTORE_CONFIG"],
        json!(format!(
            "{}?targetTime=2026-11-30T10:15:00Z&targetInclusive=true",
            p.store_url("pg-source")
        ))
    );
    assert!(!v.contains_key("S3_ARCHIVE_CONFIG"));
    let (code, out) = p.plan(&restore);
    assert_eq!(code, Some(0), "{out}");

    // Without S3_ARCHIVE_CONFIG there is nothing to list, said before any exec.
    p.api.clear_requests();
    let o = p.run(&["backups", "list", "-c", &restore]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("backups are not enabled: the app has no S3_ARCHIVE_CONFIG"),
        "{}",
        text(&o)
    );
    assert!(p.api.changes().is_empty());

    // The same app again: refused before anything is planned.
    p.api.clear_requests();
    let o = p.run(&[
        "backups",
        "restore",
        "--target-time",
        "2026-11-30T10:20:00Z",
        "-c",
        &restore,
        "--auto-approve",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert!(p.api.changes().is_empty());

    // `backups restore --target ID` into another new app.
    let other = p.config(
        "other.toml",
        &toml(
            "pg-restored-2",
            "  SOURCE_URL = { from_env = \"SOURCE_URL\" }\n",
        ),
    );
    p.api.clear_requests();
    p.ok(&[
        "backups",
        "restore",
        "--secret",
        "SOURCE_URL",
        "--target",
        "20261130T101500",
        "-c",
        &other,
        "--auto-approve",
    ]);
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        values(&calls[0])["S3_ARCHIVE_REMOTE_RESTORE_CONFIG"],
        json!(format!(
            "{}?targetName=20261130T101500&targetInclusive=true",
            p.store_url("pg-source")
        ))
    );
    p.api.assert_conformant();
}

/// The secret declared as `S3_ARCHIVE_CONFIG` itself, with postgres-flex's
/// defaults: set once at bootstrap and no settings call; a new value on the
/// running cluster is one secrets call and an update of the node to that
/// secrets version; turned off with the secret gone from `[secrets]`, it is
/// unset once and the node updated again, whichever of the secret's delete
/// and the policy's runs first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_named_s3_archive_config_is_set_once_and_its_change_reaches_the_nodes() {
    let p = Place::new();
    let base = r#"app = "pg-def"
primary_region = "iad"

[build]
  image = "flyio/postgres-flex:15"

[postgres]
  instances = 1
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
"#;
    let on = p.config(
        "def.toml",
        &format!(
            "{base}  S3_ARCHIVE_CONFIG = {{ from_env = \"BACKUP_URL\" }}\n\n[postgres.backup]\n  secret = \"S3_ARCHIVE_CONFIG\"\n"
        ),
    );
    p.ok(&["apply", "-c", &on, "--auto-approve"]);
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        values(&calls[0])["S3_ARCHIVE_CONFIG"],
        json!(p.store_url("pg-bk"))
    );
    assert!(
        !p.barman_execs("pg-def")
            .iter()
            .any(|(_, c)| c.last().unwrap().ends_with("/update/barman")),
        "the defaults needed no update"
    );
    let (code, out) = p.plan(&on);
    assert_eq!(code, Some(0), "{out}");

    p.api.clear_requests();
    p.apply_with_store(&on, "pg-def-2");
    let calls = p.secrets_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        values(&calls[0])["S3_ARCHIVE_CONFIG"],
        json!(p.store_url("pg-def-2"))
    );
    let updates = |p: &Place| {
        p.api
            .requests()
            .into_iter()
            .filter(|r| r.op() == "POST /apps/{app_name}/machines/{machine_id}")
            .count()
    };
    assert_eq!(updates(&p), 1, "the node took the new secrets version");

    let off = p.config("def-off.toml", base);
    p.api.clear_requests();
    p.ok(&["apply", "-c", &off, "--auto-approve", "--allow-destroy"]);
    assert!(!p
        .api
        .state()
        .model
        .app("pg-def")
        .secrets
        .contains_key("S3_ARCHIVE_CONFIG"));
    assert_eq!(p.secrets_calls().len(), 1);
    assert_eq!(updates(&p), 1, "the node booted without archiving");
    let (code, out) = p.plan(&off);
    assert_eq!(code, Some(0), "{out}");
    p.api.assert_conformant();
}

/// The store is checked where flyplan runs before a plan that sets the
/// policy is shown, as on the local provider: a store that does not answer,
/// a malformed URL (located at the key naming the secret) and a secret
/// without a value are errors of `plan` and `apply`, and nothing is sent
/// to Fly but reads.
#[test]
fn an_unreachable_or_malformed_store_is_an_error_at_plan_time_and_changes_nothing() {
    let api = FlyApi::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fly.toml");
    std::fs::write(&config, toml(APP, BACKUP)).unwrap();
    let cfg = config.to_str().unwrap();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!(
        "http://{}:{STORE_KEY}@127.0.0.1:{closed}/{BUCKET}/pg-bk",
        s3::ACCESS_KEY
    );
    let malformed = format!("https://{}:{STORE_KEY}@127.0.0.1/{BUCKET}", s3::ACCESS_KEY);
    for (url, why) in [
        (
            Some(unreachable.as_str()),
            format!("127.0.0.1:{closed}/{BUCKET}/pg-bk (secret BACKUP_URL)"),
        ),
        (
            Some(malformed.as_str()),
            "fly.toml:16:12: secret BACKUP_URL is not a store URL".to_string(),
        ),
        (
            None,
            "fly.toml:13:16: secret BACKUP_URL: environment variable BACKUP_URL is not set"
                .to_string(),
        ),
    ] {
        for args in [
            vec!["plan", "-c", cfg],
            vec!["apply", "-c", cfg, "--auto-approve"],
        ] {
            let mut cmd = api.cli(&dir.path().join("state"));
            cmd.args(&args)
                .env("PG_PASSWORD", OPERATOR)
                .env("NO_COLOR", "1")
                .env_remove("BACKUP_URL");
            if let Some(url) = url {
                cmd.env("BACKUP_URL", url);
            }
            let o = cmd.output().unwrap();
            let t = text(&o);
            assert!(!o.status.success(), "{args:?}: {t}");
            assert!(t.contains(&why), "{args:?}: {t}");
            assert!(!t.contains(STORE_KEY), "{t}");
        }
    }
    assert!(api.changes().is_empty(), "{:?}", api.changes());
}

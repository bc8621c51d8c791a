//! Attachments, declared users and databases on a real local cluster: the
//! URL from `flyplan env` works with psql and with Python's psycopg2, drift
//! in roles and passwords is repaired, detach keeps the data, hostile names
//! never reach the server, and the URL survives a failover. Every test
//! destroys what it made, also when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/procs.rs"]
mod procs;

#[path = "support/cluster.rs"]
mod cluster;

use cluster::text;

const PG_PASSWORD: &str = "attach-test-Operator-71";
const READER_PASSWORD: &str = "attach-test-Reader-52";
const READER_ROTATED: &str = "attach-test-Reader-rotated-53";

const CONFIG: &str = r#"app = "pg-attach"
primary_region = "iad"

[build]
  image = "flyio/postgres-flex:15"

[postgres]
  instances = 2
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
  READER_PASSWORD = { from_env = "READER_PASSWORD" }

[[postgres.users]]
  name = "app_reader"
  password_secret = "READER_PASSWORD"
  member_of = ["pg_read_all_data"]
  connection_limit = 5

[[postgres.users]]
  name = "ops"

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

struct Cluster {
    state: tempfile::TempDir,
    config: PathBuf,
    /// The text destroy runs with (the test may leave a broken file).
    original: String,
    reader_password: std::cell::RefCell<&'static str>,
}

impl Cluster {
    fn new(config_text: &str) -> Cluster {
        let state = cluster::state_dir("flyplan-at-");
        let config = state.path().join("fly.toml");
        std::fs::write(&config, config_text).expect("write fly.toml");
        Cluster {
            state,
            config,
            original: config_text.to_string(),
            reader_password: std::cell::RefCell::new(READER_PASSWORD),
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flyplan"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args)
            .env("PG_PASSWORD", PG_PASSWORD)
            .env("READER_PASSWORD", *self.reader_password.borrow())
            .env("NO_COLOR", "1")
            .output()
            .expect("flyplan runs")
    }

    fn with_config(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        let config = self.config.to_str().unwrap().to_string();
        all.extend(["-c", config.as_str()]);
        self.run(&all)
    }

    fn apply(&self) -> String {
        let o = self.with_config(&["apply", "--auto-approve"]);
        assert!(o.status.success(), "apply: {}", text(&o));
        text(&o)
    }

    fn plan_exit(&self) -> (Option<i32>, String) {
        let o = self.with_config(&["plan", "--detailed-exitcode"]);
        (o.status.code(), text(&o))
    }

    fn env(&self, app: &str) -> Value {
        let o = self.run(&["env", "-a", app, "--json"]);
        assert!(o.status.success(), "env: {}", text(&o));
        serde_json::from_slice(&o.stdout).expect("env JSON")
    }

    fn status(&self) -> Value {
        let o = self.with_config(&["status", "--json"]);
        assert!(o.status.success(), "status: {}", text(&o));
        serde_json::from_slice(&o.stdout).expect("status JSON")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.config, &self.original);
        let _ = self.with_config(&["destroy", "--allow-destroy", "--auto-approve"]);
    }
}

/// Run SQL with psql against a URL; stdout, unaligned and tuples only.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let o = Command::new("psql")
        .arg(url)
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
    } else {
        Err(text(&o))
    }
}

/// Run a Python snippet with psycopg2; `URL` is in its environment.
fn python(url: &str, code: &str) -> String {
    let o = Command::new("/usr/bin/python3")
        .args(["-c", code])
        .env("URL", url)
        .output()
        .expect("python3 runs");
    assert!(o.status.success(), "python: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn url_for(user: &str, password: &str, db: &str, endpoint: u16) -> String {
    format!("postgres://{user}:{password}@127.0.0.1:{endpoint}/{db}?sslmode=disable")
}

/// Files flyplan writes that must never hold a secret value: its JSON
/// records (except the two secret stores) and every server log.
fn files_that_must_not_leak(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            if !["pgdata", "consumers", "run", "sock"].contains(&name.as_str()) {
                files_that_must_not_leak(&p, out);
            }
        } else if name != "secrets.json"
            && (name.ends_with(".json") || p.components().any(|c| c.as_os_str() == "logs"))
        {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attached_apps_get_working_urls_and_drift_is_repaired() {
    let c = Cluster::new(CONFIG);
    let t0 = Instant::now();
    let mut outputs = c.apply();
    eprintln!("apply with attachments: {:.1}s", t0.elapsed().as_secs_f64());
    let (code, out) = c.plan_exit();
    assert_eq!(code, Some(0), "re-plan is a no-op: {out}");
    outputs.push_str(&out);

    let status = c.status();
    let endpoint = status["endpoint"]["port"].as_u64().expect("endpoint") as u16;
    let attached: Vec<_> = status["attachments"]
        .as_array()
        .expect("attachments in status")
        .iter()
        .map(|a| {
            format!(
                "{}={}",
                a["app"].as_str().unwrap(),
                a["credentials"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(attached, ["billing-worker=valid", "myapp=valid"]);
    let env = c.env("myapp");
    let url = env["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL")
        .to_string();
    assert!(
        url.starts_with("postgres://myapp:")
            && url.ends_with(&format!("@127.0.0.1:{endpoint}/myapp?sslmode=disable")),
        "{url}"
    );
    let billing = c.env("billing-worker")["BILLING_DATABASE_URL"]
        .as_str()
        .expect("BILLING_DATABASE_URL")
        .to_string();
    // The plain form is one NAME=value line per variable.
    let plain = c.run(&["env", "-a", "myapp"]);
    assert_eq!(text(&plain).trim(), format!("DATABASE_URL={url}"));

    // psql: create a table and read it back.
    psql(
        &url,
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes VALUES (1, 'from psql')",
    )
    .expect("psql writes");
    assert_eq!(
        psql(&url, "SELECT body FROM notes WHERE id = 1").unwrap(),
        "from psql"
    );
    assert_eq!(
        psql(
            &url,
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        .unwrap(),
        "t",
        "attachments are superusers by default, as on Fly"
    );
    // Python's psycopg2: the same URL, as an app would use it.
    let got = python(
        &url,
        "import os, psycopg2\n\
         c = psycopg2.connect(os.environ['URL'])\n\
         cur = c.cursor()\n\
         cur.execute(\"CREATE TABLE py_notes (id int PRIMARY KEY, body text)\")\n\
         cur.execute(\"INSERT INTO py_notes VALUES (1, 'from python')\")\n\
         cur.execute(\"INSERT INTO notes VALUES (2, 'from python')\")\n\
         c.commit()\n\
         cur.execute(\"SELECT string_agg(body, ',' ORDER BY id) FROM notes\")\n\
         print(cur.fetchone()[0])\n",
    );
    assert_eq!(got, "from psql,from python");

    // superuser = false: read/write in its own database, nothing more.
    psql(
        &billing,
        "CREATE TABLE invoices (id int PRIMARY KEY); INSERT INTO invoices VALUES (7)",
    )
    .expect("billing worker writes");
    assert_eq!(psql(&billing, "SELECT id FROM invoices").unwrap(), "7");
    assert_eq!(
        psql(
            &billing,
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        .unwrap(),
        "f"
    );
    assert!(psql(&billing, "CREATE DATABASE not_allowed").is_err());

    // Declared users and databases, with CloudNativePG-like options.
    let reader = url_for("app_reader", READER_PASSWORD, "analytics", endpoint);
    assert_eq!(
        psql(
            &reader,
            "SELECT r.rolconnlimit || ',' || pg_has_role('pg_read_all_data', 'member') \
             || ',' || pg_get_userbyid(d.datdba) FROM pg_roles r, pg_database d \
             WHERE r.rolname = current_user AND d.datname = current_database()"
        )
        .unwrap(),
        "5,true,app_reader"
    );
    let myapp_as_reader = url_for("app_reader", READER_PASSWORD, "myapp", endpoint);
    assert_eq!(
        psql(&myapp_as_reader, "SELECT count(*) FROM notes").unwrap(),
        "2",
        "member of pg_read_all_data"
    );

    // Drift: a declared role dropped by hand, a declared user's password and
    // an attachment's password changed by hand. The repair is applied with
    // every statement logged by the server and flyplan at its most verbose:
    // the new password verifiers appear in neither.
    let operator = url_for("postgres", PG_PASSWORD, "postgres", endpoint);
    psql(&operator, "ALTER SYSTEM SET log_statement = 'all'").unwrap();
    psql(&operator, "SELECT pg_reload_conf()").unwrap();
    psql(
        &operator,
        "DROP ROLE ops; ALTER ROLE app_reader PASSWORD 'by-hand'; \
         ALTER ROLE myapp PASSWORD 'by-hand'",
    )
    .expect("changes by hand");
    let (code, out) = c.plan_exit();
    assert_eq!(code, Some(2), "{out}");
    for needle in [
        "# user.ops will be created",
        "# user.app_reader will be updated in place",
        "# attachment.myapp will be updated in place (drift: password changed outside flyplan",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    assert!(!out.contains("by-hand"), "{out}");
    outputs.push_str(&out);
    let o = c.with_config(&["-vvv", "apply", "--auto-approve"]);
    assert!(o.status.success(), "apply -vvv: {}", text(&o));
    outputs.push_str(&text(&o));
    let (code, out) = c.plan_exit();
    assert_eq!(code, Some(0), "repaired: {out}");
    assert!(
        psql(&reader, "SELECT 1").is_ok(),
        "reader password restored"
    );
    let rotated = c.env("myapp")["DATABASE_URL"].as_str().unwrap().to_string();
    assert_ne!(rotated, url, "a new password was set on the consumer");
    assert_eq!(psql(&rotated, "SELECT count(*) FROM notes").unwrap(), "2");
    assert!(
        psql(&url, "SELECT 1").is_err(),
        "the old URL no longer works"
    );

    // Rotating a declared user's secret rotates its password.
    *c.reader_password.borrow_mut() = READER_ROTATED;
    let (code, out) = c.plan_exit();
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("# secret.READER_PASSWORD will be updated in place"),
        "{out}"
    );
    outputs.push_str(&out);
    outputs.push_str(&c.apply());
    let reader = url_for("app_reader", READER_ROTATED, "analytics", endpoint);
    assert!(
        psql(&reader, "SELECT 1").is_ok(),
        "rotated reader password works"
    );

    // A hostile name is refused with its location, before any SQL: with
    // every statement logged, the name appears in no server log.
    psql(&operator, "ALTER SYSTEM SET log_statement = 'all'").unwrap();
    psql(&operator, "SELECT pg_reload_conf()").unwrap();
    let hostile = CONFIG.replace(
        "  app = \"myapp\"\n",
        "  app = \"myapp\"\n  user = \"x\\\"; DROP ROLE app_reader; --\"\n",
    );
    std::fs::write(&c.config, &hostile).unwrap();
    let o = c.with_config(&["apply", "--auto-approve"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("fly.toml:30:10: invalid user name"),
        "{}",
        text(&o)
    );
    psql(&operator, "SELECT pg_sleep(0.2)").unwrap();
    let logs = c.state_dir().join("apps/pg-attach/logs");
    for e in std::fs::read_dir(&logs).unwrap().flatten() {
        let body = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).to_string();
        assert!(
            !body.contains("DROP ROLE app_reader"),
            "{} has the hostile statement",
            e.path().display()
        );
    }
    psql(&operator, "ALTER SYSTEM RESET log_statement").unwrap();
    psql(&operator, "SELECT pg_reload_conf()").unwrap();

    // Detach: role and secret go, the database stays with its rows.
    let detached = CONFIG.replace("[[attachments]]\n  app = \"myapp\"\n\n", "");
    std::fs::write(&c.config, &detached).unwrap();
    let (code, out) = c.plan_exit();
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("# attachment.myapp will be destroyed (detach"),
        "{out}"
    );
    assert!(
        out.contains("# (database myapp is kept with its data)"),
        "{out}"
    );
    outputs.push_str(&out);
    outputs.push_str(&c.apply());
    assert_eq!(
        psql(
            &operator,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'myapp'"
        )
        .unwrap(),
        "0"
    );
    let myapp_db = url_for("postgres", PG_PASSWORD, "myapp", endpoint);
    assert_eq!(
        psql(
            &myapp_db,
            "SELECT string_agg(body, ',' ORDER BY id) || ';' || pg_get_userbyid(relowner) \
             FROM notes, pg_class WHERE relname = 'notes' GROUP BY relowner"
        )
        .unwrap(),
        "from psql,from python;postgres"
    );
    let gone = c.run(&["env", "-a", "myapp"]);
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    assert!(text(&gone).contains("app myapp has no attachments"));
    assert!(c.env("billing-worker")["BILLING_DATABASE_URL"].is_string());
    let (code, out) = c.plan_exit();
    assert_eq!(code, Some(0), "{out}");

    // No secret value in any output, record or log.
    let mut files = Vec::new();
    files_that_must_not_leak(&c.state_dir(), &mut files);
    assert!(
        files.iter().any(|f| f.to_string_lossy().contains("/logs/")),
        "server logs are searched: {files:?}"
    );
    let billing_password = billing
        .strip_prefix("postgres://billing_worker:")
        .and_then(|r| r.split_once('@'))
        .map(|(p, _)| p.to_string())
        .expect("password in URL");
    let rotated_password = rotated
        .strip_prefix("postgres://myapp:")
        .and_then(|r| r.split_once('@'))
        .map(|(p, _)| p.to_string())
        .expect("password in URL");
    let secrets = [
        PG_PASSWORD,
        READER_PASSWORD,
        READER_ROTATED,
        billing_password.as_str(),
        rotated_password.as_str(),
    ];
    for s in secrets {
        assert!(!outputs.contains(s), "a secret value in the output");
    }
    assert!(
        !outputs.contains("SCRAM-SHA-256$"),
        "a password verifier in the output"
    );
    for f in &files {
        let body = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).to_string();
        for s in secrets {
            assert!(!body.contains(s), "a secret value in {}", f.display());
        }
        assert!(
            !body.contains("SCRAM-SHA-256$"),
            "a password verifier in {}",
            f.display()
        );
    }

    // Failover: the attached app's URL reaches the new leader.
    let status = c.status();
    let leader = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["role"] == "leader")
        .cloned()
        .expect("a leader");
    let pids: Vec<i32> = ["pid", "postgres_pid"]
        .iter()
        .map(|k| leader["checks"][k].as_i64().expect("pid") as i32)
        .collect();
    procs::kill_trees(&pids);
    let killed = Instant::now();
    loop {
        if psql(&billing, "INSERT INTO invoices VALUES (8)").is_ok() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(90),
            "the attached URL found no writable leader within 90 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "failover seen through the attached URL after {:.1}s",
        killed.elapsed().as_secs_f64()
    );
    // The multi-host form names both nodes' own ports and reaches the new
    // leader too, without the endpoint.
    let multi = c.run(&["env", "-a", "billing-worker", "--multi-host", "--json"]);
    assert!(multi.status.success(), "{}", text(&multi));
    let multi: Value = serde_json::from_slice(&multi.stdout).unwrap();
    let multi = multi["BILLING_DATABASE_URL"].as_str().unwrap().to_string();
    assert!(
        multi.matches("127.0.0.1:").count() == 2
            && multi.ends_with("?sslmode=disable&target_session_attrs=read-write"),
        "{multi}"
    );
    assert!(!multi.contains(&format!(":{endpoint}/")), "{multi}");
    psql(&multi, "INSERT INTO invoices VALUES (9)").expect("writes through the multi-host URL");
    let status_url = c.status()["multi_host_url"].as_str().unwrap().to_string();
    assert!(
        status_url.starts_with("postgres://postgres:********@127.0.0.1:")
            && status_url.ends_with("target_session_attrs=read-write"),
        "{status_url}"
    );
    assert_eq!(
        psql(
            &billing,
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM invoices"
        )
        .unwrap(),
        "7,8,9"
    );

    // Destroying the cluster takes its attachments: the attached app loses
    // its variable.
    let o = c.with_config(&["destroy", "--allow-destroy", "--auto-approve"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        c.run(&["env", "-a", "billing-worker"]).status.code(),
        Some(1)
    );
}

/// Names that reach SQL by another road than fly.toml are quoted: they make
/// exactly the role and database they name and nothing else happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_reaching_sql_are_quoted_harmlessly() {
    let c = Cluster::new(
        "app = \"pg-quote\"\nprimary_region = \"iad\"\n\n[postgres]\n  instances = 1\n  \
         operator_password = \"PG_PASSWORD\"\n\n[secrets]\n  PG_PASSWORD = { from_env = \"PG_PASSWORD\" }\n",
    );
    c.apply();
    let endpoint = c.status()["endpoint"]["port"].as_u64().expect("endpoint") as u16;
    let conn = format!(
        "host=127.0.0.1 port={endpoint} user=postgres password={PG_PASSWORD} dbname=postgres"
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("operator connects");
    tokio::spawn(connection);
    let spec = flyplan::sql::attach::AttachmentSpec {
        app: "x'; DROP ROLE postgres; --".to_string(),
        database: "db\"; DROP DATABASE postgres; --".to_string(),
        user: "u\"; ALTER ROLE postgres NOLOGIN; --".to_string(),
        variable: "DATABASE_URL".to_string(),
        superuser: false,
    };
    flyplan::sql::attach::ensure_attachment(&client, &spec, Some("p'w\\\"; x"))
        .await
        .expect("hostile names are quoted");
    let role: bool = client
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&spec.user],
        )
        .await
        .expect("the role exists under its exact name")
        .get(0);
    assert!(role);
    let db: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1 OR datname = 'postgres'",
            &[&spec.database],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, 2, "the database exists and postgres was not dropped");
    let postgres_login: bool = client
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'postgres'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(postgres_login, "no injected ALTER ROLE ran");
    let found = flyplan::sql::attach::read_attachments(&client)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].mark.app, spec.app);
    assert!(found[0].password_unchanged);
    // The password is quoted too: it logs in as set.
    let conn = format!(
        "host=127.0.0.1 port={endpoint} user='{}' password='{}' dbname='{}'",
        spec.user.replace('\'', "\\'"),
        "p'w\\\"; x".replace('\\', "\\\\").replace('\'', "\\'"),
        spec.database.replace('\'', "\\'")
    );
    let (_c2, conn2) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("the hostile user logs in with its password");
    tokio::spawn(conn2);
}

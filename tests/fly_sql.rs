//! The fly provider's roles, databases and attachments: SQL through a route
//! to a real PostgreSQL 15 server on loopback (standing in for `fly proxy`
//! to the leader), and the attached app's URL set through the scripted,
//! OpenAPI-checked Machines API's secrets endpoint.

#[path = "support/fly_api/mod.rs"]
mod fly_api;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use fly_api::cluster::*;
use fly_api::model::AppRec;
use fly_api::FlyApi;
use flyplan::desired::Desired;
use flyplan::model::{Kind, Resource};
use flyplan::plan::Action;
use flyplan::provider::fly::PgRoute;
use flyplan::provider::{Provider, SecretValues, StepContext};

const APP: &str = "pg-test";
const OPERATOR: &str = "route-Operator-pass-31";
const READER: &str = "route-Reader-pass-32";

const FLY_TOML: &str = r#"app = "pg-test"
primary_region = "iad"

[postgres]
  instances = 3
  operator_password = "PG_PASSWORD"

[secrets]
  PG_PASSWORD = { from_env = "PG_PASSWORD" }
  READER_PASSWORD = { from_env = "READER_PASSWORD" }

[[postgres.users]]
  name = "app_reader"
  password_secret = "READER_PASSWORD"

[[postgres.databases]]
  name = "analytics"
  owner = "app_reader"

[[attachments]]
  app = "myapp"
"#;

/// A plain PostgreSQL 15 server run as `postgres` on a free loopback port,
/// stopped on drop.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
}

fn bin(name: &str) -> PathBuf {
    Path::new("/usr/lib/postgresql/15/bin").join(name)
}

fn as_postgres(program: &Path) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(program);
    c
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("flyplan-route-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let pwfile = root.join("pw");
        std::fs::write(&pwfile, OPERATOR).unwrap();
        std::fs::set_permissions(&pwfile, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let data = root.join("data");
        let o = as_postgres(&bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("initdb runs");
        assert!(
            o.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let o = as_postgres(&bin("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(root.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1",
                root.display()
            ))
            .args(["-w", "start"])
            .output()
            .expect("pg_ctl runs");
        assert!(
            o.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Server { dir, port }
    }

    async fn client(&self, user: &str, password: &str, db: &str) -> tokio_postgres::Client {
        let conn = format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.port
        );
        let (c, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{user} connects to {db}: {e}"));
        tokio::spawn(connection);
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres(&bin("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn sql_desired() -> (Vec<Resource>, SecretValues) {
    let env = BTreeMap::from([
        ("PG_PASSWORD".to_string(), OPERATOR.to_string()),
        ("READER_PASSWORD".to_string(), READER.to_string()),
    ]);
    let config = flyplan::config::parse(Path::new("fly.toml"), FLY_TOML).expect("valid");
    let d = Desired::from_config(&config, &env).expect("secrets");
    // In the plan's order: users, then databases, then attachments.
    let mut wanted: Vec<Resource> = d
        .resources
        .values()
        .filter(|r| matches!(r.kind(), Kind::User | Kind::Database | Kind::Attachment))
        .cloned()
        .collect();
    wanted.sort_by_key(|r| r.kind());
    (wanted, SecretValues::new(env))
}

fn consumer_url(api: &FlyApi) -> Option<String> {
    api.state()
        .model
        .app("myapp")
        .secrets
        .get("DATABASE_URL")
        .map(|s| s.value.clone())
}

/// The password in a `postgres://user:password@...` URL.
fn password_of(url: &str) -> String {
    let rest = url.strip_prefix("postgres://").unwrap();
    let (userinfo, _) = rest.split_once('@').unwrap();
    userinfo.split_once(':').unwrap().1.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_databases_and_attachments_go_through_the_route_and_the_secrets_endpoint() {
    let server = Server::start();
    let api = FlyApi::start();
    let dir = tempfile::tempdir().unwrap();
    let route = PgRoute::parse(
        &format!("postgres://postgres@127.0.0.1:{}/postgres", server.port),
        Some(OPERATOR),
    )
    .unwrap();
    let p = provider_with_route(&api, dir.path(), Some(route));
    let c = Cluster::example(APP);
    converge(&api, &p, &c);
    api.state().model.apps.insert(
        "myapp".to_string(),
        AppRec {
            name: "myapp".to_string(),
            org: "personal".to_string(),
            ..Default::default()
        },
    );
    let (want, secrets) = sql_desired();
    let ctx = StepContext {
        app: APP,
        secrets: &secrets,
        restore: None,
        operator_password: None,
        steps: &[],
    };
    let run = |steps: &[flyplan::plan::Step]| {
        for s in steps {
            p.perform(s, &ctx)
                .unwrap_or_else(|e| panic!("{}: {e}", s.address));
        }
    };

    // Create: the operator (already there), the reader, its database, the
    // attachment with its role, database and URL.
    let live = p.observe(APP).unwrap();
    let steps = plan(&want, &live);
    assert!(
        steps
            .iter()
            .any(|s| s.address.as_str() == "attachment.myapp"),
        "{steps:?}"
    );
    run(&steps);
    let url = consumer_url(&api).expect("DATABASE_URL set on myapp");
    assert!(
        url.starts_with("postgres://myapp:")
            && url.ends_with("@pg-test.flycast:5432/myapp?sslmode=disable"),
        "{url}"
    );
    // The URL's credentials work on the server behind the route.
    let app_client = server.client("myapp", &password_of(&url), "myapp").await;
    app_client
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let reader = server.client("app_reader", READER, "analytics").await;
    let owner: String = reader
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'analytics'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "app_reader");

    // No drift afterwards, and observing only reads.
    api.clear_requests();
    let live = p.observe(APP).unwrap();
    assert_eq!(drift(&want, &live), Vec::<String>::new());
    assert!(api.requests().iter().all(|r| r.is_get()));
    assert_eq!(
        live.get(&flyplan::model::Address::attachment("myapp"))
            .and_then(|r| r.attachment())
            .map(|a| a.credentials.as_str()),
        Some("valid")
    );

    // The secret changed outside flyplan: seen by Fly's digest, and set again.
    api.state()
        .model
        .set_secret_outside("myapp", "DATABASE_URL", "postgres://someone-else");
    let live = p.observe(APP).unwrap();
    assert_eq!(
        drift(&want, &live),
        vec![
            "attachment.myapp.credentials: want \"valid\", have \"secret out of date\"".to_string()
        ]
    );
    run(&plan(&want, &live));
    let rotated = consumer_url(&api).unwrap();
    assert_ne!(rotated, url);
    server
        .client("myapp", &password_of(&rotated), "myapp")
        .await;
    assert_eq!(drift(&want, &p.observe(APP).unwrap()), Vec::<String>::new());

    // Detach: role and secret go, the database stays with its row.
    let live = p.observe(APP).unwrap();
    let before = live
        .get(&flyplan::model::Address::attachment("myapp"))
        .cloned()
        .unwrap();
    run(&[step(0, Action::Delete, Some(before), None, vec![])]);
    assert_eq!(consumer_url(&api), None);
    let admin = server.client("postgres", OPERATOR, "myapp").await;
    let roles: i64 = admin
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'myapp'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles, 0);
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    let live = p.observe(APP).unwrap();
    assert!(live
        .get(&flyplan::model::Address::attachment("myapp"))
        .is_none());

    // Attached again, then the cluster destroyed: the attached app loses
    // its variable with it.
    run(&plan(&want, &p.observe(APP).unwrap()));
    assert!(consumer_url(&api).is_some());
    let app_before = p
        .observe(APP)
        .unwrap()
        .get(&flyplan::model::Address::app(APP))
        .cloned()
        .unwrap();
    run(&[step(0, Action::Delete, Some(app_before), None, vec![])]);
    assert_eq!(consumer_url(&api), None);

    // Every request matched the API description; no secret value in the
    // ledger files.
    api.assert_conformant();
    let ledger_dir = dir.path().join("fly").join(APP);
    for e in std::fs::read_dir(&ledger_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let body = std::fs::read_to_string(e.path()).unwrap_or_default();
        for s in [OPERATOR, READER, &password_of(&url), &password_of(&rotated)] {
            assert!(
                !body.contains(s),
                "a secret value in {}",
                e.path().display()
            );
        }
    }
}

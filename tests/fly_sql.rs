//! The fly provider's roles, databases and attachments: SQL through a route
//! to a real PostgreSQL 15 server on loopback (standing in for `fly proxy`
//! to the leader), and the attached app's URL set through the scripted,
//! OpenAPI-checked Machines API's secrets endpoint.

#[path = "support/fly_api/mod.rs"]
mod fly_api;

use std::collections::BTreeMap;
use std::path::Path;

use fly_api::cluster::*;
use fly_api::postgres::Server;
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

/// Fly's attachment records on `myapp`, as `(cluster, database, user,
/// variable)`.
fn records(api: &FlyApi) -> Vec<(String, String, String, String)> {
    let st = api.state();
    st.model
        .app("myapp")
        .graphql
        .pg_attachments
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap_or("").to_string();
            (
                f("postgresApp"),
                f("databaseName"),
                f("databaseUser"),
                f("environmentVariableName"),
            )
        })
        .collect()
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
    let server = Server::start(OPERATOR);
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
    api.add_consumer_app("myapp");
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
    // Fly keeps the record `fly pg detach` looks for.
    let record = (
        APP.to_string(),
        "myapp".to_string(),
        "myapp".to_string(),
        "DATABASE_URL".to_string(),
    );
    assert_eq!(records(&api), vec![record.clone()]);
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
    assert_eq!(records(&api), vec![record.clone()], "kept, not doubled");
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
    assert_eq!(
        records(&api),
        Vec::new(),
        "detached as `fly pg detach` does"
    );
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

/// `flyplan --provider fly` with flyctl's variables and no SQL route.
fn flyplan(api: &FlyApi, state: &Path, args: &[&str]) -> std::process::Output {
    api.cli(state)
        .args(args)
        .env("PG_PASSWORD", OPERATOR)
        .output()
        .unwrap()
}

/// The example cluster plus an attachment, applied from nothing with the
/// CLI and no route: roles, databases and the attachment are made by `psql`
/// in the leader machine through `exec` (the scripted API runs the real
/// `psql` against a PostgreSQL 15 on loopback), and the next plan reads
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_from_nothing_runs_sql_on_the_leader_through_exec_and_replans_clean() {
    let server = std::sync::Arc::new(Server::start("initial-not-the-operator"));
    let api = FlyApi::start();
    api.state().model.postgres = Some(server.clone());
    api.add_consumer_app("myapp");
    let dir = tempfile::tempdir().unwrap();
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fly.toml"))
            .unwrap();
    let config = dir.path().join("fly.toml");
    std::fs::write(
        &config,
        format!("{example}\n[[attachments]]\n  app = \"myapp\"\n"),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let state = dir.path().join("state");

    let o = flyplan(&api, &state, &["apply", "-c", config, "--auto-approve"]);
    assert!(
        o.status.success(),
        "apply: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    api.assert_conformant();

    // Every node booted, one primary, all checks passing.
    let app = "flyplan-example";
    {
        let st = api.state();
        let a = st.model.app(app);
        let machines: Vec<_> = a.live_machines().collect();
        assert_eq!(machines.len(), 4);
        let mut primaries = 0;
        for m in &machines {
            let checks = m.json["checks"].as_array().unwrap();
            assert!(
                checks.iter().all(|c| c["status"] == "passing"),
                "{}: {checks:?}",
                m.id()
            );
            if checks
                .iter()
                .any(|c| c["name"] == "role" && c["output"] == "primary")
            {
                primaries += 1;
            }
        }
        assert_eq!(primaries, 1);
        assert!(a.races.is_empty(), "{:?}", a.races);
        // SQL ran only on the leader, and no request carried a password.
        let leader = machines
            .iter()
            .find(|m| m.json["checks"][1]["output"] == "primary")
            .unwrap()
            .id()
            .to_string();
        let psql: Vec<_> = a.execs.iter().filter(|(_, c)| c[0] == "bash").collect();
        assert!(psql.len() >= 4, "{psql:?}");
        assert!(psql.iter().all(|(id, _)| *id == leader), "{psql:?}");
    }
    let url = consumer_url(&api).expect("DATABASE_URL set on myapp");
    let recorded = records(&api);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].0, "flyplan-example");
    assert_eq!(recorded[0].3, "DATABASE_URL");
    assert!(
        url.starts_with(&format!("postgres://{}:", recorded[0].2)),
        "{url}"
    );
    // No exec request carries a password: the operator's comes from the
    // machine's environment, roles get SCRAM verifiers.
    for r in api.requests() {
        if r.op() == "POST /apps/{app_name}/machines/{machine_id}/exec" {
            let body = r.body.as_ref().map(|b| b.to_string()).unwrap_or_default();
            assert!(!body.contains(OPERATOR), "{body}");
            assert!(!body.contains(&password_of(&url)), "{body}");
        }
    }

    // The attachment's URL, its host put on loopback, logs in.
    assert!(
        url.starts_with("postgres://flyplan_example_myapp:")
            || url.starts_with("postgres://myapp:"),
        "{url}"
    );
    let user = url
        .strip_prefix("postgres://")
        .and_then(|r| r.split_once(':'))
        .map(|(u, _)| u.to_string())
        .unwrap();
    let db = url
        .rsplit_once('/')
        .and_then(|(_, d)| d.split_once('?'))
        .map(|(d, _)| d.to_string())
        .unwrap();
    assert!(url.contains("@flyplan-example.flycast:5432/"), "{url}");
    let c = server.client(&user, &password_of(&url), &db).await;
    c.batch_execute("CREATE TABLE t (id int)").await.unwrap();
    // And the operator password is OPERATOR_PASSWORD, as postgres-flex set it.
    server.client("postgres", OPERATOR, "postgres").await;

    // A re-plan shows no changes and sends only reads.
    api.clear_requests();
    let o = flyplan(&api, &state, &["plan", "-c", config, "--detailed-exitcode"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("No changes"), "{out}");
    api.assert_read_roles_and_changed_nothing();
}

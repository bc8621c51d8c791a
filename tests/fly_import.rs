//! `flyplan import` on the fly provider, against the scripted Fly Machines
//! API: the example cluster, converged, is observed, imported and planned
//! again with no change to anything the fly provider observes, and
//! observing for the import only reads.
//!
//! The first two tests run no PostgreSQL behind the scripted `exec`, so the
//! fly provider observes no role and the operator role `postgres` that
//! every fly.toml implies is planned as a create; it is the one step left,
//! and those tests name it. The last one has the real PostgreSQL 15 behind
//! `exec` and a cluster made as flyctl makes it, and its plan is empty.

#[path = "support/fly_api/mod.rs"]
mod fly_api;

use std::collections::BTreeMap;
use std::path::Path;

use fly_api::cluster::*;
use fly_api::postgres::Server;
use fly_api::{FlyApi, Recorded};
use flyplan::desired::Desired;
use flyplan::import::{fly_toml, ImportOptions};
use flyplan::plan::{plan, PlanOptions};

const APP: &str = "pg-test";

#[test]
fn an_imported_fly_cluster_plans_no_change_to_what_the_provider_observes() {
    let api = FlyApi::start();
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&api, dir.path());
    let cluster = Cluster::example(APP);
    converge(&api, &p, &cluster);

    let live = flyplan::pipeline::observe(&p, APP).unwrap();
    let text = fly_toml(APP, &live, ImportOptions::default()).unwrap();
    let reqs = api.requests();
    assert!(
        !reqs.is_empty() && reqs.iter().all(Recorded::is_get),
        "import changed something: {:?}",
        reqs.iter().map(|r| r.op().to_string()).collect::<Vec<_>>()
    );
    for value in cluster.secrets.values() {
        assert!(!text.contains(value.as_str()), "a secret value was written");
    }

    let config = flyplan::config::parse(Path::new("fly.toml"), &text).unwrap();
    let env: BTreeMap<String, String> = cluster.secrets.clone();
    let desired = Desired::from_config(&config, &env).unwrap();
    let p2 = plan(&desired, &live, PlanOptions::default());
    let steps: Vec<String> = p2
        .steps
        .iter()
        .map(|s| format!("{} {}", s.action.as_str(), s.address))
        .collect();
    assert_eq!(
        steps,
        ["create user.postgres"],
        "the plan of the imported file changes {:?}\n{text}",
        p2.steps
            .iter()
            .map(|s| format!("{} {} ({})", s.action.as_str(), s.address, s.reason))
            .collect::<Vec<_>>()
    );
    assert!(text.contains("instances = 3"), "{text}");
    assert!(text.contains("read_replicas = { ams = 1 }"), "{text}");
    api.assert_conformant();
}

/// The example cluster with flyplan's traces removed, as `fly pg create`
/// leaves one: no `flyplan-*` machine metadata, and no ledger (a new state
/// directory), so every secret is one flyplan did not set.
#[test]
fn a_cluster_without_flyplan_metadata_imports_and_plans_no_change_to_what_is_observed() {
    let api = FlyApi::start();
    let made_by = tempfile::tempdir().unwrap();
    let cluster = Cluster::example(APP);
    converge(&api, &provider(&api, made_by.path()), &cluster);
    {
        let mut state = api.state();
        for m in state.model.app_mut(APP).machines.values_mut() {
            let meta = m.json["config"]["metadata"].as_object_mut().unwrap();
            meta.retain(|k, _| !k.starts_with("flyplan-"));
            meta.insert("fly_flyctl_version".into(), "0.3.0".into());
        }
    }
    api.clear_requests();
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&api, dir.path());

    let live = flyplan::pipeline::observe(&p, APP).unwrap();
    let text = fly_toml(APP, &live, ImportOptions::default()).unwrap();
    assert!(api.requests().iter().all(Recorded::is_get));
    assert!(!text.contains("SU_PASSWORD = "), "{text}");
    assert!(!text.contains("OPERATOR_PASSWORD = "), "{text}");
    assert!(
        text.contains("left out, generated for postgres-flex"),
        "{text}"
    );

    let config = flyplan::config::parse(Path::new("fly.toml"), &text).unwrap();
    let desired = Desired::from_config(&config, &BTreeMap::new()).unwrap();
    let p2 = plan(&desired, &live, PlanOptions::default());
    let steps: Vec<String> = p2
        .steps
        .iter()
        .map(|s| format!("{} {} ({})", s.action.as_str(), s.address, s.reason))
        .collect();
    // Roles are not observed here (see the top of this file).
    assert_eq!(
        steps,
        ["create user.postgres (not in live state)"],
        "{text}"
    );
}

/// `flyplan --provider fly` with flyctl's variables and no SQL route.
fn flyplan(api: &FlyApi, state: &Path, args: &[&str]) -> std::process::Output {
    api.cli(state)
        .args(args)
        .env_remove("PG_PASSWORD")
        .output()
        .unwrap()
}

fn show(o: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A cluster as `fly pg create` then `fly pg attach` leave it, imported and
/// planned with the CLI: the plan of the imported file is empty, and
/// neither the import nor that plan changes anything (only `GET`s, GraphQL
/// queries and read-only `psql` through `exec`).
///
/// The cluster is first made with flyplan from a fly.toml that declares no
/// secret, so the app step does what `fly pg create` does (flyctl
/// `internal/command/postgres/create.go` and `flypg/launcher.go`:
/// `postgres_cluster` app role, generated `SU_PASSWORD`, `REPL_PASSWORD`,
/// `OPERATOR_PASSWORD`, `SSH_KEY`/`SSH_CERT`, `FLY_CONSUL_URL`), then
/// flyplan's traces are removed (its `flyplan-*` machine metadata; a new
/// state directory, so no ledger). The attachment is made the way
/// `fly pg attach -a myapp` makes it (flyctl
/// `internal/command/postgres/attach.go:219-335`): database and superuser
/// role `myapp` on the leader's PostgreSQL, Fly's attachment record, and
/// `DATABASE_URL` on `myapp` pointing at `<pg>.flycast`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_made_by_fly_pg_create_and_attach_imports_and_plans_no_changes() {
    let server = std::sync::Arc::new(Server::start("initial-not-the-operator"));
    let api = FlyApi::start();
    api.state().model.postgres = Some(server.clone());
    api.add_consumer_app("myapp");
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("made.toml");
    std::fs::write(
        &made,
        format!(
            "app = \"{APP}\"\nprimary_region = \"iad\"\n\n[build]\n  image = \"flyio/postgres-flex:15.6\"\n\n\
             [postgres]\n  instances = 3\n  read_replicas = {{ ams = 1 }}\n\n\
             [[mounts]]\n  source = \"pg_data\"\n  destination = \"/data\"\n  initial_size = \"10gb\"\n\n\
             [[vm]]\n  size = \"shared-cpu-1x\"\n  memory = \"1gb\"\n"
        ),
    )
    .unwrap();
    let o = flyplan(
        &api,
        &dir.path().join("made-state"),
        &["apply", "-c", made.to_str().unwrap(), "--auto-approve"],
    );
    assert!(o.status.success(), "apply: {}", show(&o));

    // flyplan's traces removed; the attachment made as fly pg attach does.
    let (operator, secret_values) = {
        let mut state = api.state();
        let a = state.model.app_mut(APP);
        assert_eq!(a.role.as_deref(), Some("postgres_cluster"));
        for m in a.machines.values_mut() {
            let meta = m.json["config"]["metadata"].as_object_mut().unwrap();
            meta.retain(|k, _| !k.starts_with("flyplan-"));
            meta.insert("fly_flyctl_version".into(), "0.3.0".into());
        }
        let names: Vec<&str> = a.secrets.keys().map(String::as_str).collect();
        for s in [
            "SU_PASSWORD",
            "REPL_PASSWORD",
            "OPERATOR_PASSWORD",
            "SSH_KEY",
            "SSH_CERT",
            "FLY_CONSUL_URL",
        ] {
            assert!(names.contains(&s), "{names:?}");
        }
        let values: Vec<String> = a.secrets.values().map(|s| s.value.clone()).collect();
        (a.secrets["OPERATOR_PASSWORD"].value.clone(), values)
    };
    let attach_password = "Fq8zK2mW9xR4tLp";
    let c = server.client("postgres", &operator, "postgres").await;
    c.batch_execute("CREATE DATABASE myapp").await.unwrap();
    c.batch_execute(&format!(
        "CREATE USER myapp WITH LOGIN SUPERUSER PASSWORD '{attach_password}'"
    ))
    .await
    .unwrap();
    c.batch_execute("GRANT ALL PRIVILEGES ON DATABASE myapp TO myapp")
        .await
        .unwrap();
    {
        let mut state = api.state();
        state
            .model
            .app_mut("myapp")
            .graphql
            .pg_attachments
            .push(serde_json::json!({
            "id": "pgattach_1", "postgresApp": APP, "databaseName": "myapp",
            "databaseUser": "myapp", "environmentVariableName": "DATABASE_URL"}));
        state.model.set_secret_outside(
            "myapp",
            "DATABASE_URL",
            &format!("postgres://myapp:{attach_password}@{APP}.flycast:5432/myapp?sslmode=disable"),
        );
    }
    api.clear_requests();

    let state = dir.path().join("state");
    let imported = dir.path().join("fly.toml");
    let o = flyplan(
        &api,
        &state,
        &["import", "-a", APP, "-o", imported.to_str().unwrap()],
    );
    assert!(o.status.success(), "import: {}", show(&o));
    let text = std::fs::read_to_string(&imported).unwrap();
    for value in secret_values
        .iter()
        .map(String::as_str)
        .chain([attach_password])
    {
        assert!(!text.contains(value), "a secret value was written:\n{text}");
        assert!(!show(&o).contains(value), "a secret value was printed");
    }
    assert!(text.contains("app = \"myapp\""), "{text}");

    let o = flyplan(
        &api,
        &state,
        &[
            "plan",
            "-c",
            imported.to_str().unwrap(),
            "--detailed-exitcode",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}\n{text}", show(&o));
    assert!(show(&o).contains("No changes"), "{}", show(&o));

    api.assert_read_roles_and_changed_nothing();
}

/// A cluster whose backups were turned on outside flyplan (`fly pg backup
/// enable` sets `S3_ARCHIVE_CONFIG`, flyctl
/// `internal/command/postgres/backup.go:320-366`), imported with no ledger:
/// given the value the nodes run with, the plan of the imported file leaves
/// the secret and the backup policy alone; given another, it sets them.
#[test]
fn a_cluster_with_backups_made_outside_flyplan_imports_and_plans_no_change_to_its_secret() {
    let url = "https://tid_access:imported-Store-key-31@fly.storage.tigris.dev/pg-backups/pg-test";
    let api = FlyApi::start();
    let made_by = tempfile::tempdir().unwrap();
    let cluster = Cluster::example(APP);
    converge(&api, &provider(&api, made_by.path()), &cluster);
    api.state()
        .model
        .set_secret_outside(APP, "S3_ARCHIVE_CONFIG", url);
    api.clear_requests();
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&api, dir.path());

    let live = flyplan::pipeline::observe(&p, APP).unwrap();
    let text = fly_toml(APP, &live, ImportOptions::default()).unwrap();
    assert!(!text.contains("imported-Store-key-31"), "{text}");
    assert!(text.contains("[postgres.backup]"), "{text}");
    assert!(api.requests().iter().all(Recorded::is_get));

    let config = flyplan::config::parse(Path::new("fly.toml"), &text).unwrap();
    let steps = |value: &str| {
        let mut env: BTreeMap<String, String> = cluster.secrets.clone();
        env.insert("S3_ARCHIVE_CONFIG".into(), value.into());
        let desired = Desired::from_config(&config, &env).unwrap();
        plan(&desired, &live, PlanOptions::default())
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action.as_str(), s.address))
            .collect::<Vec<_>>()
    };
    // Roles are not observed here (see the top of this file).
    assert_eq!(steps(url), ["create user.postgres"], "{text}");
    let other = steps(&url.replace("imported-Store-key-31", "another-key"));
    assert!(
        other.contains(&"update secret.S3_ARCHIVE_CONFIG".to_string()),
        "{other:?}"
    );
}

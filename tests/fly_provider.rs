//! The fly provider against a scripted Fly Machines API whose every request
//! is checked against the published OpenAPI description (see
//! `tests/support/fly_api/`). Steps are built by hand in the order the plan
//! engine produces them.

#[path = "support/fly_api/mod.rs"]
mod fly_api;

use fly_api::cluster::*;
use fly_api::{Fault, FlyApi, Recorded};
use flyplan::model::{
    Address, AttachmentSpec, DatabaseSpec, Kind, Resource, Spec, UserSpec, VolumeSpec,
};
use flyplan::plan::Action;
use flyplan::provider::{Outcome, Provider, ProviderError, SecretValues, StepContext};

const APP: &str = "pg-test";

/// The digest a live secret reports.
fn secret_digest(r: &Resource) -> Option<&str> {
    match &r.spec {
        Spec::Secret(s) => s.digest.as_ref().map(|d| d.as_str()),
        _ => None,
    }
}

fn setup() -> (
    FlyApi,
    tempfile::TempDir,
    flyplan::provider::fly::FlyProvider,
    Cluster,
) {
    let api = FlyApi::start();
    let dir = tempfile::tempdir().unwrap();
    let p = provider(&api, dir.path());
    (api, dir, p, Cluster::example(APP))
}

fn ops(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter().map(|r| r.op().to_string()).collect()
}

fn machine_id(api: &FlyApi, region: &str, i: u32) -> String {
    api.state()
        .model
        .app(APP)
        .machine_at(region, i)
        .unwrap_or_else(|| panic!("no machine[{region}:{i}]"))
        .id()
        .to_string()
}

#[test]
fn an_app_that_does_not_exist_is_observed_as_empty() {
    let (api, _dir, p, _c) = setup();
    let live = p.observe(APP).unwrap();
    assert!(live.resources.is_empty());
    assert_eq!(ops(&api.requests()), vec!["GET /apps/{app_name}"]);
    api.assert_conformant();
}

#[test]
fn creating_a_cluster_from_nothing_sets_all_secrets_in_one_call_before_any_machine_and_starts_the_first_node_alone(
) {
    let (api, _dir, p, c) = setup();
    let done = apply(&p, &c, &create_steps(&c.desired())).unwrap();

    let outcome = |a: &str| done.iter().find(|(x, _)| x.as_str() == a).unwrap().1;
    assert_eq!(outcome("app.pg-test"), Outcome::Created);
    // The app step sets every secret in one call; the secret steps find
    // theirs in place.
    assert_eq!(outcome("secret.OPERATOR_PASSWORD"), Outcome::NotNeeded);
    assert_eq!(outcome("secret.SU_PASSWORD"), Outcome::NotNeeded);
    assert_eq!(outcome("machine[iad:0]"), Outcome::Created);
    assert_eq!(outcome("formation.pg-test"), Outcome::Created);
    assert_eq!(outcome("endpoint.pg-test"), Outcome::NotNeeded);
    assert_eq!(outcome("snapshot_policy.pg_data"), Outcome::Created);

    // What changed, in order.
    // As `fly pg create` (flyctl flypg/launcher.go:115-125, 457-508): a
    // Flycast address, the SSH certificate and Consul, before the one
    // secrets call, all before any volume or machine.
    let changes = api.changes();
    let mut expected = vec![
        "POST /apps",
        "GraphQL allocateIpAddress",
        "GraphQL issueCertificate",
        "GraphQL enablePostgresConsul",
        "POST /apps/{app_name}/secrets",
    ];
    expected.extend(["POST /apps/{app_name}/volumes"; 4]);
    expected.extend(["POST /apps/{app_name}/machines"; 4]);
    // sync_standbys: postgres-flex's settings API through exec on the
    // leader (update), then `apply` on each of the 4 nodes.
    expected.extend(["POST /apps/{app_name}/machines/{machine_id}/exec"; 5]);
    expected.extend(["PUT /apps/{app_name}/volumes/{volume_id}"; 4]);
    assert_eq!(ops(&changes), expected);

    // The app is a Postgres cluster in the chosen org.
    assert_eq!(
        changes[0].body.as_ref().unwrap(),
        &serde_json::json!({"app_name": APP, "org_slug": "personal", "app_role_id": "postgres_cluster"})
    );
    // Created with `?wait=true` (fly-go flaps/flaps_apps.go, CreateApp).
    assert_eq!(changes[0].query("wait"), Some("true"));
    // The org's node id, not its slug, goes to the mutations.
    let gql = |i: usize| changes[i].body.as_ref().unwrap()["variables"].clone();
    assert_eq!(
        gql(1)["input"]["organizationId"],
        fly_api::graphql::PERSONAL_ORG_ID
    );
    assert_eq!(gql(1)["input"]["type"], "private_v6");
    assert_eq!(
        gql(2)["input"]["principals"],
        serde_json::json!(["root", "fly", "postgres"])
    );
    let public_key = gql(2)["input"]["publicKey"].as_str().unwrap().to_string();
    assert!(public_key.starts_with("ssh-ed25519 "), "{public_key}");
    // One secrets call with every value postgres-flex needs to boot
    // (cmd/start/main.go:19-24; internal/flypg/state/store.go:81-117;
    // internal/flypg/ssh.go:15-81), declared values as declared.
    let values = changes[4].body.as_ref().unwrap()["values"].clone();
    assert_eq!(values["OPERATOR_PASSWORD"], "op-pass-1");
    assert_eq!(values["SU_PASSWORD"], "su-pass-1");
    let repl = values["REPL_PASSWORD"].as_str().unwrap().to_string();
    assert!(repl.len() >= 15 && repl.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(values["SSH_KEY"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert!(values["SSH_CERT"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519-cert-v01@openssh.com "));
    assert!(values["FLY_CONSUL_URL"]
        .as_str()
        .unwrap()
        .contains(":consul-token-pg-test@"));
    assert!(values.get("FLY_RESTORED_FROM").is_none());
    // Generated values are written nowhere on disk.
    for entry in walk(_dir.path()) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(&repl),
            "{} holds a generated password",
            entry.display()
        );
    }

    // Every node booted as postgres-flex boots: one primary, every check
    // passing, and none booted before the first had initialised the cluster.
    {
        let st = api.state();
        let app = st.model.app(APP);
        assert_eq!(app.races, Vec::<String>::new());
        let roles: Vec<String> = app
            .live_machines()
            .map(|m| {
                let checks = m.json["checks"].as_array().unwrap();
                assert!(
                    checks.iter().all(|c| c["status"] == "passing"),
                    "{checks:?}"
                );
                checks.iter().find(|c| c["name"] == "role").unwrap()["output"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            roles.iter().filter(|r| *r == "primary").count(),
            1,
            "{roles:?}"
        );
        assert_eq!(app.graphql.ip_addresses.len(), 1);
        assert_eq!(app.graphql.certificates.len(), 1);
    }

    // The first machine is started before the second is created.
    let all = api.requests();
    let creates: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, r)| r.op() == "POST /apps/{app_name}/machines")
        .map(|(i, _)| i)
        .collect();
    let first_id = machine_id(&api, "iad", 0);
    let waited = all
        .iter()
        .position(|r| {
            r.op() == "GET /apps/{app_name}/machines/{machine_id}/wait"
                && r.path.contains(&first_id)
                && r.query("state") == Some("started")
        })
        .expect("the first machine is waited for");
    assert!(creates[0] < waited && waited < creates[1]);
    // ...and read until its role check says primary (flyctl
    // internal/command/postgres/postgres.go:178-198).
    let polled = all
        .iter()
        .rposition(|r| {
            r.op() == "GET /apps/{app_name}/machines/{machine_id}" && r.path.contains(&first_id)
        })
        .unwrap();
    assert!(waited < polled && polled < creates[1]);

    // Each machine is a postgres-flex node on its own volume.
    let st = api.state();
    let app = st.model.app(APP);
    assert_eq!(app.role.as_deref(), Some("postgres_cluster"));
    // sync_standbys = 1 is postgres-flex's `synchronous_standby_names`,
    // stored through its settings API and applied on every node.
    assert_eq!(
        app.pg_user_config
            .get("synchronous_standby_names")
            .map(String::as_str),
        Some("'ANY 1 (*)'")
    );
    assert_eq!(app.pg_applied.len(), 4);
    assert!(app.pg_applied.values().all(|c| c == &app.pg_user_config));
    for (region, i, _) in c.nodes() {
        let m = &app.machine_at(&region, i).unwrap().json;
        let config = &m["config"];
        assert_eq!(config["image"], c.image);
        assert_eq!(config["env"]["PRIMARY_REGION"], "iad");
        assert_eq!(config["guest"]["memory_mb"], 1024);
        assert_eq!(config["metadata"]["fly-managed-postgres"], "true");
        assert!(config["metadata"].get("flyplan-sync-standbys").is_none());
        assert_eq!(config["services"][0]["internal_port"], 5432);
        assert_eq!(config["services"][1]["internal_port"], 5433);
        // flyctl leaves autostart off (flypg/launcher.go:178-194).
        assert_eq!(config["services"][0]["autostart"], false);
        assert_eq!(config["services"][1]["autostart"], false);
        assert_eq!(config["checks"]["role"]["path"], "/flycheck/role");
        let vol = config["mounts"][0]["volume"].as_str().unwrap();
        assert_eq!(app.volumes[vol]["attached_machine_id"], m["id"]);
        assert_eq!(app.volumes[vol]["region"], region.as_str());
        assert_eq!(app.volumes[vol]["snapshot_retention"], 7);
    }
    let machine_bodies: Vec<&Recorded> = changes
        .iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/machines")
        .collect();
    assert!(machine_bodies
        .iter()
        .all(|r| r.body.as_ref().unwrap()["min_secrets_version"] == 1));
    drop(st);

    // Volumes carry flyctl's placement hints: the guest and image of the
    // machine that mounts them (flypg/launcher.go:218-219).
    for r in changes
        .iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/volumes")
    {
        let b = r.body.as_ref().unwrap();
        assert_eq!(
            b["compute"],
            serde_json::json!({"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024})
        );
        assert_eq!(b["compute_image"], c.image);
    }
    // Secrets are read at least at the version last written
    // (flyctl internal/appsecrets/secrets.go:16-23).
    let last_read = all_secret_reads(&api).pop().unwrap();
    assert_eq!(last_read.query("version"), Some("1"));

    // Live state now equals the desired state, and knows the leader.
    let live = p.observe(APP).unwrap();
    assert_eq!(drift(&c.desired(), &live), Vec::<String>::new());
    assert_eq!(live.leader().unwrap().address, Address::machine("iad", 0));
    api.assert_conformant();
}

#[test]
fn observing_a_converged_cluster_shows_no_drift_and_only_reads() {
    let (api, _dir, p, c) = setup();
    converge(&api, &p, &c);
    let live = p.observe(APP).unwrap();
    assert!(plan(&c.desired(), &live).is_empty());
    let reqs = api.requests();
    assert!(
        !reqs.is_empty() && reqs.iter().all(Recorded::is_get),
        "{:?}",
        ops(&reqs)
    );
    api.assert_conformant();
}

#[test]
fn performing_the_create_plan_again_changes_nothing() {
    let (api, _dir, p, c) = setup();
    converge(&api, &p, &c);
    let done = apply(&p, &c, &create_steps(&c.desired())).unwrap();
    assert!(
        done.iter().all(|(_, o)| *o == Outcome::NotNeeded),
        "{done:?}"
    );
    assert_eq!(ops(&api.changes()), Vec::<String>::new());
    api.assert_conformant();
}

#[test]
fn scaling_out_creates_one_volume_and_one_machine_on_it() {
    let (api, _dir, p, mut c) = setup();
    converge(&api, &p, &c);
    c.instances = 4;
    let steps = plan(&c.desired(), &p.observe(APP).unwrap());
    let addrs: Vec<&str> = steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(addrs, vec!["volume.pg_data[iad:3]", "machine[iad:3]"]);

    apply(&p, &c, &steps).unwrap();
    let changes = api.changes();
    assert_eq!(
        ops(&changes),
        vec![
            "POST /apps/{app_name}/volumes",
            "POST /apps/{app_name}/machines"
        ]
    );
    // The new volume has the snapshot policy of the others.
    assert_eq!(changes[0].body.as_ref().unwrap()["snapshot_retention"], 7);
    assert_eq!(
        changes[0].body.as_ref().unwrap()["auto_backup_enabled"],
        true
    );
    let st = api.state();
    let app = st.model.app(APP);
    let m = app.machine_at("iad", 3).unwrap();
    let vol = m.json["config"]["mounts"][0]["volume"].as_str().unwrap();
    assert_eq!(app.volumes[vol]["attached_machine_id"], m.id());
    assert_eq!(m.json["checks"][1]["output"], "replica");
    drop(st);
    assert_eq!(
        drift(&c.desired(), &p.observe(APP).unwrap()),
        Vec::<String>::new()
    );
    api.assert_conformant();
}

#[test]
fn an_image_upgrade_updates_replicas_then_switches_over_and_updates_the_old_leader_last() {
    let (api, _dir, p, mut c) = setup();
    converge(&api, &p, &c);
    // The leader moved to iad:1 (a failover happened).
    let (m0, m1) = (machine_id(&api, "iad", 0), machine_id(&api, "iad", 1));
    api.state().model.set_role(APP, &m0, "replica");
    api.state().model.set_role(APP, &m1, "primary");
    let live = p.observe(APP).unwrap();
    let leader = live.leader().unwrap().address.clone();
    assert_eq!(leader, Address::machine("iad", 1));

    // As the plan engine orders them: replicas first, the leader last.
    c.image = "flyio/postgres-flex:15.8".into();
    let mut steps = plan(&c.desired(), &live);
    assert!(steps
        .iter()
        .all(|s| s.kind == Kind::Machine && s.changed == vec!["image"]));
    steps.sort_by_key(|s| s.address == leader);
    let done = apply(&p, &c, &steps).unwrap();
    assert!(done.iter().all(|(_, o)| *o == Outcome::Updated));

    // Every machine is leased before the first is touched, as `fly image
    // update` does (flyctl `internal/command/image/update_machines.go:96-101`);
    // then the replicas, machine after machine, each under its lease; then
    // a switchover to a healthy standby of the primary region (a dry run,
    // then the real one, as `fly pg failover` picks its new leader); then
    // the old leader; then every lease released.
    let lease = "POST /apps/{app_name}/machines/{machine_id}/lease";
    let exec = "POST /apps/{app_name}/machines/{machine_id}/exec";
    let update = "POST /apps/{app_name}/machines/{machine_id}";
    let release = "DELETE /apps/{app_name}/machines/{machine_id}/lease";
    let changes = api.changes();
    assert_eq!(
        ops(&changes),
        [
            vec![lease; 4],
            vec![update; 3],
            vec![exec, exec, update],
            vec![release; 4]
        ]
        .concat()
    );
    assert!(changes[..4]
        .iter()
        .all(|r| r.body.as_ref().unwrap()["ttl"] == 30));
    for (r, step) in changes[4..7].iter().zip(&steps) {
        let id = step
            .before
            .as_ref()
            .unwrap()
            .machine()
            .unwrap()
            .id
            .as_deref()
            .unwrap();
        assert!(r.path.contains(id), "replicas in the plan's order");
        assert_eq!(r.body.as_ref().unwrap()["config"]["image"], c.image);
    }
    // Each update carries the nonce its machine's lease is released with.
    for r in changes[4..7].iter().chain(&changes[9..10]) {
        assert!(r.nonce.is_some());
        let released = changes[10..]
            .iter()
            .find(|x| x.path.starts_with(&r.path))
            .expect("released");
        assert_eq!(released.nonce, r.nonce);
    }
    let last = &changes[3..];
    let switched = api.state().model.app(APP).switchovers.clone();
    assert_eq!(switched.len(), 1);
    assert_eq!(switched[0].0, m1);
    let new_leader = switched[0].1.clone();
    assert!(last[4].path.contains(&new_leader) && last[5].path.contains(&new_leader));
    let run: Vec<String> = last[5].body.as_ref().unwrap()["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        run,
        [
            "gosu",
            "postgres",
            "repmgr",
            "standby",
            "switchover",
            "-f",
            "/data/repmgr.conf",
            "--siblings-follow"
        ]
    );
    assert_eq!(last[4].body.as_ref().unwrap()["command"][7], "--dry-run");
    {
        let st = api.state();
        let a = st.model.app(APP);
        let m = &a.machines[&new_leader];
        assert_eq!(m.region(), "iad", "a primary-region standby");
        assert_eq!(m.json["checks"][1]["output"], "primary");
    }
    // The new leader was read until its role check said primary before the
    // old leader was restarted.
    let reqs = api.requests();
    let update_at = reqs
        .iter()
        .position(|r| {
            r.method == "POST"
                && r.op() == "POST /apps/{app_name}/machines/{machine_id}"
                && r.path.ends_with(&m1)
        })
        .unwrap();
    let switch_at = reqs
        .iter()
        .position(|r| {
            r.op() == exec && r.body.as_ref().unwrap()["command"][7] == "--siblings-follow"
        })
        .unwrap();
    assert!(reqs[switch_at..update_at]
        .iter()
        .any(|r| r.method == "GET" && r.path.ends_with(&new_leader)));
    assert!(last[6].path.ends_with(&m1));
    // Updated machines are waited for under the lease too.
    assert!(api
        .requests()
        .iter()
        .filter(|r| r.op().ends_with("/wait"))
        .all(|r| r.nonce.is_some()));
    let live = p.observe(APP).unwrap();
    assert_eq!(drift(&c.desired(), &live), Vec::<String>::new());
    assert!(api
        .state()
        .model
        .app(APP)
        .machines
        .values()
        .all(|m| m.lease.is_none()));
    api.assert_conformant();
}

#[test]
fn changing_the_snapshot_policy_updates_every_volume_of_that_name() {
    let (api, _dir, p, mut c) = setup();
    converge(&api, &p, &c);
    c.retention_days = 14;
    c.scheduled = false;
    let steps = plan(&c.desired(), &p.observe(APP).unwrap());
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].address.as_str(), "snapshot_policy.pg_data");
    assert_eq!(apply(&p, &c, &steps).unwrap()[0].1, Outcome::Updated);

    let changes = api.changes();
    assert_eq!(changes.len(), 4);
    for r in &changes {
        assert_eq!(r.op(), "PUT /apps/{app_name}/volumes/{volume_id}");
        assert_eq!(
            r.body.as_ref().unwrap(),
            &serde_json::json!({"snapshot_retention": 14, "auto_backup_enabled": false})
        );
    }
    let live = p.observe(APP).unwrap();
    assert_eq!(drift(&c.desired(), &live), Vec::<String>::new());
    let vol = live.get(&Address::volume("pg_data", "ams", 0)).unwrap();
    assert_eq!(vol.volume().unwrap().snapshot_retention, Some(14));
    api.assert_conformant();
}

#[test]
fn an_api_error_mid_apply_stops_the_apply_and_the_rerun_creates_only_what_is_missing() {
    let (api, _dir, p, c) = setup();
    api.fail(Fault::new(
        "POST /apps/{app_name}/machines",
        3,
        1,
        422,
        "insufficient capacity in iad",
    ));
    let (at, err) = apply(&p, &c, &create_steps(&c.desired())).unwrap_err();
    assert_eq!(at, Address::machine("iad", 2));
    assert_eq!(
        err.to_string(),
        "create machine[iad:2] (POST /apps/pg-test/machines): HTTP 422: insufficient capacity in iad"
    );
    assert!(matches!(err, ProviderError::Failed { .. }));

    // Observe again: all volumes, two machines.
    api.clear_requests();
    let live = p.observe(APP).unwrap();
    let steps = plan(&c.desired(), &live);
    let addrs: Vec<&str> = steps.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        addrs,
        vec![
            "machine[iad:2]",
            "machine[ams:0]",
            "formation.pg-test",
            "snapshot_policy.pg_data"
        ]
    );
    apply(&p, &c, &steps).unwrap();
    let creates: Vec<String> = ops(&api.changes())
        .into_iter()
        .filter(|o| !o.ends_with("/exec") && !o.ends_with("{volume_id}"))
        .collect();
    assert_eq!(
        creates,
        vec![
            "POST /apps/{app_name}/machines",
            "POST /apps/{app_name}/machines"
        ]
    );
    // Each new machine took the volume left for it.
    let st = api.state();
    let app = st.model.app(APP);
    assert_eq!(app.live_volumes().count(), 4);
    assert!(app
        .live_volumes()
        .all(|v| !v["attached_machine_id"].is_null()));
    drop(st);
    assert_eq!(
        drift(&c.desired(), &p.observe(APP).unwrap()),
        Vec::<String>::new()
    );
    api.assert_conformant();
}

#[test]
fn server_errors_are_retried_with_backoff_and_the_create_succeeds() {
    let (api, _dir, p, c) = setup();
    api.fail(Fault::new(
        "POST /apps/{app_name}/machines",
        3,
        3,
        500,
        "flaps hiccup",
    ));
    apply(&p, &c, &create_steps(&c.desired())).unwrap();
    let statuses: Vec<u16> = api
        .requests()
        .iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/machines")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 200, 500, 500, 500, 200, 200]);
    assert_eq!(api.state().model.app(APP).live_machines().count(), 4);
    api.assert_conformant();
}

#[test]
fn a_5xx_after_a_create_did_its_work_leaves_exactly_one_volume_machine_and_ip() {
    let (api, _dir, p, c) = setup();
    // Each create is carried out, then answered with a 5xx: the answer is
    // lost, the thing exists.
    for op in [
        "POST /apps/{app_name}/volumes",
        "POST /apps/{app_name}/machines",
        "GraphQL allocateIpAddress",
    ] {
        api.fail(Fault::new(op, 1, 1, 502, "bad gateway").after_work());
    }
    apply(&p, &c, &create_steps(&c.desired())).unwrap();
    let count = |op: &str| api.requests().iter().filter(|r| r.op() == op).count();
    // Nothing was sent twice: flyplan read the app and found it.
    assert_eq!(count("POST /apps/{app_name}/volumes"), 4);
    assert_eq!(count("POST /apps/{app_name}/machines"), 4);
    assert_eq!(count("GraphQL allocateIpAddress"), 1);
    let st = api.state();
    let app = st.model.app(APP);
    assert_eq!(app.live_volumes().count(), 4);
    assert_eq!(app.live_machines().count(), 4);
    assert_eq!(app.graphql.ip_addresses.len(), 1);
    assert!(app.races.is_empty(), "{:?}", app.races);
    drop(st);
    api.assert_conformant();
}

#[test]
fn attachment_urls_name_flycast_only_when_the_cluster_has_a_private_v6_address() {
    // flyctl internal/command/postgres/attach.go:112-123, 319-335.
    let (api, _dir, p, c) = setup();
    api.state().model.handle(
        "POST /apps",
        &[],
        &[],
        Some(&serde_json::json!({"app_name": APP, "org_slug": "personal"})),
        None,
    );
    let host = |p: &flyplan::provider::fly::FlyProvider| {
        flyplan::runtime::block_on(p.attach_host(APP)).unwrap()
    };
    assert_eq!(host(&p), "top2.nearest.of.pg-test.internal");
    apply(&p, &c, &create_steps(&c.desired())[..1]).unwrap();
    assert_eq!(host(&p), "pg-test.flycast");
    api.assert_conformant();
}

#[test]
fn the_operator_password_is_operator_password_in_every_call_that_sets_it() {
    // postgres-flex logs in as `postgres` with OPERATOR_PASSWORD
    // (internal/flypg/node.go:74-78, 233-244): the role's password and the
    // secret must be one value.
    let (api, _dir, p, mut c) = setup();
    c.secrets.clear();
    c.secrets.insert("PG_PASSWORD".into(), "pg-pass-1".into());
    let steps = create_steps(&c.desired());
    let run = |c: &Cluster, steps: &[flyplan::plan::Step]| {
        let secrets = c.secret_values();
        let ctx = StepContext {
            app: APP,
            secrets: &secrets,
            restore: None,
            operator_password: Some("PG_PASSWORD"),
            steps,
        };
        for s in steps {
            p.perform(s, &ctx).unwrap();
        }
    };
    let app_step: Vec<_> = steps
        .iter()
        .filter(|s| s.kind == Kind::App)
        .cloned()
        .collect();
    run(&c, &app_step);
    let value = |name: &str| api.state().model.app(APP).secrets[name].value.clone();
    assert_eq!(value("OPERATOR_PASSWORD"), "pg-pass-1");
    assert_eq!(value("PG_PASSWORD"), "pg-pass-1");
    assert_ne!(value("SU_PASSWORD"), "pg-pass-1");

    // A new value for the declared secret moves OPERATOR_PASSWORD with it,
    // in the same call.
    api.clear_requests();
    c.secrets.insert("PG_PASSWORD".into(), "pg-pass-2".into());
    let secret_step = step(
        0,
        Action::Update,
        None,
        Some(
            c.desired()
                .into_iter()
                .find(|r| r.address == Address::secret("PG_PASSWORD"))
                .unwrap(),
        ),
        vec![],
    );
    run(&c, &[secret_step]);
    let posts: Vec<Recorded> = api
        .changes()
        .into_iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/secrets")
        .collect();
    assert_eq!(posts.len(), 1);
    assert_eq!(value("OPERATOR_PASSWORD"), "pg-pass-2");
    assert_eq!(value("PG_PASSWORD"), "pg-pass-2");
    api.assert_conformant();
}

#[test]
fn retries_are_bounded_and_the_error_says_how_many_were_made() {
    let (api, _dir, p, c) = setup();
    api.fail(Fault::new(
        "GET /apps/{app_name}",
        1,
        100,
        503,
        "unavailable",
    ));
    let err = p.observe(&c.app).unwrap_err();
    assert_eq!(
        err.to_string(),
        "observe app pg-test (GET /apps/pg-test): HTTP 503: unavailable (after 5 attempts)"
    );
    assert_eq!(api.requests().len(), 5);
    api.assert_conformant();
}

#[test]
fn a_429_with_retry_after_is_retried_after_the_given_delay() {
    let (api, _dir, p, c) = setup();
    api.fail(Fault::new("GET /apps/{app_name}", 1, 1, 429, "rate limited").retry_after("1"));
    let live = p.observe(&c.app).unwrap();
    assert!(live.resources.is_empty());
    let reqs = api.requests();
    assert_eq!(reqs[0].status, 429);
    assert_eq!(reqs[1].status, 404);
    // Retry-After: 1 s, capped at 80 ms for the tests; the backoff alone is 1 ms.
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap.as_millis() >= 75, "retried after {gap:?}");
    assert!(gap.as_millis() < 900, "the cap was not applied: {gap:?}");
    api.assert_conformant();
}

#[test]
fn client_errors_other_than_429_are_not_retried() {
    let (api, _dir, p, c) = setup();
    api.fail(Fault::new("POST /apps", 1, 1, 400, "invalid org"));
    let (_, err) = apply(&p, &c, &create_steps(&c.desired())[..1]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "create app.pg-test (POST /apps): HTTP 400: invalid org"
    );
    assert_eq!(api.changes().len(), 1);
}

#[test]
fn secrets_changed_outside_flyplan_are_reported_and_reset_in_one_call() {
    let (api, dir, p, c) = setup();
    converge(&api, &p, &c);
    api.state()
        .model
        .set_secret_outside(APP, "OPERATOR_PASSWORD", "typed-by-hand");
    api.state()
        .model
        .set_secret_outside(APP, "FLY_CONSUL_URL", "https://consul");
    let live = p.observe(APP).unwrap();
    let op = live.get(&Address::secret("OPERATOR_PASSWORD")).unwrap();
    assert_eq!(secret_digest(op), Some("sha256:changed-outside-flyplan"));
    assert!(op.is_sensitive("digest"));
    let su = live.get(&Address::secret("SU_PASSWORD")).unwrap();
    assert_eq!(
        secret_digest(su).unwrap(),
        digest(APP, "SU_PASSWORD", "su-pass-1")
    );
    let consul = live.get(&Address::secret("FLY_CONSUL_URL")).unwrap();
    assert_eq!(consul.managed_by(), Some("outside-flyplan"));

    let steps = plan(&c.desired(), &live);
    assert_eq!(steps.len(), 1);
    assert_eq!(apply(&p, &c, &steps).unwrap()[0].1, Outcome::Updated);
    let changes = api.changes();
    assert_eq!(ops(&changes), vec!["POST /apps/{app_name}/secrets"]);
    assert_eq!(
        changes[0].body.as_ref().unwrap(),
        &serde_json::json!({"values": {"OPERATOR_PASSWORD": "op-pass-1"}})
    );
    assert_eq!(
        drift(&c.desired(), &p.observe(APP).unwrap()),
        Vec::<String>::new()
    );

    // The ledger holds digests only, never a value.
    let ledger = std::fs::read_to_string(dir.path().join("fly/pg-test/secrets.json")).unwrap();
    assert!(!ledger.contains("op-pass-1") && !ledger.contains("su-pass-1"));
    api.assert_conformant();
}

#[test]
fn a_stopped_machine_is_started_under_a_lease() {
    let (api, _dir, p, c) = setup();
    converge(&api, &p, &c);
    let id = machine_id(&api, "ams", 0);
    api.state().model.set_state(APP, &id, "stopped");
    let live = p.observe(APP).unwrap();
    assert_eq!(
        live.get(&Address::machine("ams", 0)).unwrap().state(),
        Some("stopped")
    );
    let steps = plan(&c.desired(), &live);
    assert_eq!(steps.len(), 1);
    apply(&p, &c, &steps).unwrap();
    assert_eq!(
        ops(&api.changes()),
        vec![
            "POST /apps/{app_name}/machines/{machine_id}/lease",
            "POST /apps/{app_name}/machines/{machine_id}/start",
            "DELETE /apps/{app_name}/machines/{machine_id}/lease",
        ]
    );
    assert_eq!(
        drift(&c.desired(), &p.observe(APP).unwrap()),
        Vec::<String>::new()
    );
    api.assert_conformant();
}

#[test]
fn growing_a_volume_extends_it_and_shrinking_is_refused() {
    let (api, _dir, p, c) = setup();
    converge(&api, &p, &c);
    let live = p.observe(APP).unwrap();
    let addr = Address::volume("pg_data", "iad", 1);
    let before = live.get(&addr).unwrap().clone();
    let grow = step(
        0,
        Action::Update,
        Some(before.clone()),
        Some(Resource::new(
            addr.clone(),
            Spec::Volume(VolumeSpec::new("pg_data", "iad", 20)),
        )),
        vec!["size_gb".into()],
    );
    assert_eq!(apply(&p, &c, &[grow]).unwrap()[0].1, Outcome::Updated);
    // Fly answers `needs_restart` for an attached volume: the replica is
    // restarted under a lease in the same apply and waited for.
    let changes = api.changes();
    assert_eq!(
        ops(&changes),
        vec![
            "PUT /apps/{app_name}/volumes/{volume_id}/extend",
            "POST /apps/{app_name}/machines/{machine_id}/lease",
            "POST /apps/{app_name}/machines/{machine_id}/restart",
            "DELETE /apps/{app_name}/machines/{machine_id}/lease",
        ]
    );
    assert_eq!(changes[0].body.as_ref().unwrap()["size_gb"], 20);
    let m1 = machine_id(&api, "iad", 1);
    assert!(changes[2].path.contains(&m1) && changes[2].nonce.is_some());
    let waited = api
        .requests()
        .iter()
        .skip_while(|r| !r.path.ends_with("/restart"))
        .any(|r| r.method == "GET" && r.path.ends_with(&m1));
    assert!(waited);

    // The leader's volume: a switchover to a standby first, then the
    // restart.
    api.clear_requests();
    let leader_vol = Address::volume("pg_data", "iad", 0);
    let before0 = live.get(&leader_vol).unwrap().clone();
    let grow0 = step(
        0,
        Action::Update,
        Some(before0),
        Some(Resource::new(
            leader_vol,
            Spec::Volume(VolumeSpec::new("pg_data", "iad", 20)),
        )),
        vec!["size_gb".into()],
    );
    apply(&p, &c, &[grow0]).unwrap();
    let exec = "POST /apps/{app_name}/machines/{machine_id}/exec";
    let lease = "POST /apps/{app_name}/machines/{machine_id}/lease";
    let release = "DELETE /apps/{app_name}/machines/{machine_id}/lease";
    assert_eq!(
        ops(&api.changes()),
        [
            vec!["PUT /apps/{app_name}/volumes/{volume_id}/extend"],
            vec![lease; 4],
            vec![
                exec,
                exec,
                "POST /apps/{app_name}/machines/{machine_id}/restart"
            ],
            vec![release; 4],
        ]
        .concat()
    );
    let m0 = machine_id(&api, "iad", 0);
    assert_eq!(api.state().model.app(APP).switchovers[0].0, m0);

    let shrink = step(
        0,
        Action::Update,
        Some(before),
        Some(Resource::new(
            addr.clone(),
            Spec::Volume(VolumeSpec::new("pg_data", "iad", 5)),
        )),
        vec!["size_gb".into()],
    );
    let (_, err) = apply(&p, &c, &[shrink]).unwrap_err();
    assert!(err.to_string().contains("volumes cannot shrink"), "{err}");
    api.assert_conformant();
}

#[test]
fn destroying_a_replica_removes_its_machine_then_its_volume_and_the_app_goes_last() {
    let (api, dir, p, c) = setup();
    converge(&api, &p, &c);
    let live = p.observe(APP).unwrap();
    let m = live.get(&Address::machine("ams", 0)).unwrap().clone();
    let v = live
        .get(&Address::volume("pg_data", "ams", 0))
        .unwrap()
        .clone();
    let steps = vec![
        step(0, Action::Delete, Some(m.clone()), None, vec![]),
        step(1, Action::Delete, Some(v), None, vec![]),
    ];
    let done = apply(&p, &c, &steps).unwrap();
    assert!(done.iter().all(|(_, o)| *o == Outcome::Deleted));
    let changes = api.changes();
    assert_eq!(
        ops(&changes),
        vec![
            "POST /apps/{app_name}/machines/{machine_id}/lease",
            "POST /apps/{app_name}/machines/{machine_id}/stop",
            "DELETE /apps/{app_name}/machines/{machine_id}",
            "POST /apps/{app_name}/machines/{machine_id}/exec",
            "DELETE /apps/{app_name}/machines/{machine_id}/lease",
            "DELETE /apps/{app_name}/volumes/{volume_id}"
        ]
    );
    // Under a lease, as `fly machine destroy` (flyctl
    // internal/command/machine/destroy.go:119-194): stop and delete carry
    // its nonce, the delete `kill=false` (the node was stopped first), and
    // the lease is held until pg_unregister has run.
    let nonce = changes[0].nonce.clone();
    assert!(nonce.is_none(), "the lease request itself has no nonce");
    let stop = &changes[1];
    let delete = &changes[2];
    assert!(stop.nonce.is_some() && stop.nonce == delete.nonce);
    assert_eq!(delete.query("kill"), Some("false"));
    assert_eq!(changes[4].nonce, delete.nonce);
    // The removed node is unregistered on the leader, as flyctl's destroy
    // hook does (internal/command/machine/lifecycle_hooks.go:14-40;
    // postgres.go:225-259): `pg_unregister <base64(machine id)>`.
    {
        use base64::Engine as _;
        let removed = m.machine().unwrap().id.clone().unwrap();
        let st = api.state();
        let app = st.model.app(APP);
        let leader = app
            .live_machines()
            .find(|x| x.json["checks"][1]["output"] == "primary")
            .unwrap()
            .id()
            .to_string();
        // (The other execs are `psql` and the settings API.)
        let unregisters: Vec<_> = app
            .execs
            .iter()
            .filter(|(_, c)| c[0] == "pg_unregister")
            .cloned()
            .collect();
        assert_eq!(
            unregisters,
            vec![(
                leader,
                vec![
                    "pg_unregister".to_string(),
                    base64::engine::general_purpose::STANDARD.encode(&removed)
                ]
            )]
        );
        assert!(!app.members.contains(&removed));
        assert_eq!(app.members.len(), 3);
    }
    assert!(api
        .requests()
        .iter()
        .any(|r| r.op().ends_with("/wait") && r.query("state") == Some("stopped")));
    // Again: nothing left to do.
    let done = apply(&p, &c, &steps).unwrap();
    assert!(done.iter().all(|(_, o)| *o == Outcome::NotNeeded));

    let app = p
        .observe(APP)
        .unwrap()
        .get(&Address::app(APP))
        .unwrap()
        .clone();
    let del = step(0, Action::Delete, Some(app), None, vec![]);
    assert_eq!(
        apply(&p, &c, std::slice::from_ref(&del)).unwrap()[0].1,
        Outcome::Deleted
    );
    assert_eq!(apply(&p, &c, &[del]).unwrap()[0].1, Outcome::NotNeeded);
    assert!(p.observe(APP).unwrap().resources.is_empty());
    assert!(!dir.path().join("fly/pg-test/secrets.json").exists());
    api.assert_conformant();
}

#[test]
fn roles_databases_and_attachments_without_a_leader_fail_saying_so_and_change_nothing() {
    let (api, _dir, p, c) = setup();
    converge(&api, &p, &c);
    // No node is the leader: the primary's role check fails.
    for m in api
        .state()
        .model
        .apps
        .get_mut(APP)
        .unwrap()
        .machines
        .values_mut()
    {
        m.json["checks"][1]["status"] = serde_json::json!("critical");
    }
    let secrets = SecretValues::default();
    let ctx = StepContext {
        app: &c.app,
        secrets: &secrets,
        restore: None,
        operator_password: None,
        steps: &[],
    };
    for r in [
        Resource::new(Address::user("app"), Spec::User(UserSpec::new(true, false))),
        Resource::new(
            Address::database("app"),
            Spec::Database(DatabaseSpec {
                owner: "app".into(),
            }),
        ),
        Resource::new(
            Address::attachment("app"),
            Spec::Attachment(AttachmentSpec {
                credentials: "valid".into(),
                database: "app".into(),
                superuser: Some(true),
                user: "app".into(),
                variable: "DATABASE_URL".into(),
            }),
        ),
    ] {
        let s = step(0, Action::Create, None, Some(r), vec![]);
        let err = p.perform(&s, &ctx).unwrap_err().to_string();
        assert!(
            err.contains("no machine of app pg-test is the leader"),
            "{err}"
        );
    }
    assert!(api.requests().iter().all(|r| r.is_get()));
}

#[test]
fn a_snapshot_time_other_than_midnight_is_unsupported() {
    let (api, _dir, p, mut c) = setup();
    converge(&api, &p, &c);
    c.retention_days = 3;
    let mut policy = c
        .desired()
        .into_iter()
        .find(|r| r.kind() == Kind::SnapshotPolicy)
        .unwrap();
    if let Spec::SnapshotPolicy(p) = &mut policy.spec {
        p.snapshot_time = Some("03:00".into());
    }
    let s = step(
        0,
        Action::Update,
        None,
        Some(policy),
        vec!["snapshot_time".into()],
    );
    let (_, err) = apply(&p, &c, &[s]).unwrap_err();
    assert!(matches!(err, ProviderError::Unsupported { .. }), "{err}");
    assert!(api.changes().is_empty());
}

#[test]
fn a_second_apply_of_the_same_app_is_refused_while_the_lock_is_held() {
    let (_api, _dir, p, _c) = setup();
    let guard = p.lock(APP).unwrap();
    match p.lock(APP) {
        Err(ProviderError::Locked { app, holder }) => {
            assert_eq!(app, APP);
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("the lock was taken twice"),
    }
    drop(guard);
    p.lock(APP).expect("the lock is free again");
    p.lock("other-app").expect("other apps have their own lock");
}

#[test]
fn errors_never_carry_the_token_or_a_secret_value() {
    let (api, _dir, p, c) = setup();
    api.fail(Fault::new(
        "POST /apps/{app_name}/secrets",
        1,
        1,
        422,
        "bad value",
    ));
    let (_, err) = apply(&p, &c, &create_steps(&c.desired())[..2]).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(fly_api::TOKEN));
    assert!(!shown.contains("op-pass-1") && !shown.contains("su-pass-1"));
    // The secrets call is the app step's: one call before any machine.
    assert!(
        shown.contains("create app.pg-test (POST /apps/pg-test/secrets): HTTP 422: bad value"),
        "{shown}"
    );
}

#[test]
fn observe_reports_the_snapshots_fly_took_of_each_volume() {
    let (api, _dir, p, c) = setup();
    // The CLI below reads the same state dir as `p`.
    converge(&api, &p, &c);
    let vol_id = machine_volume(&api);
    api.state().model.app_mut(APP).snapshots.insert(
        vol_id.clone(),
        vec![
            serde_json::json!({"id": "vs_2", "created_at": "2024-06-02T00:00:00Z", "size": 2048, "status": "created", "digest": "d2"}),
            serde_json::json!({"id": "vs_1", "created_at": "2024-06-01T00:00:00Z", "size": 1024, "status": "created", "digest": "d1"}),
        ],
    );
    let live = p.status(APP).unwrap();
    let vol = live
        .resources
        .values()
        .find(|r| r.volume().and_then(|v| v.id.as_deref()) == Some(vol_id.as_str()))
        .unwrap();
    let ids: Vec<&str> = vol
        .checks
        .snapshots
        .iter()
        .flatten()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(ids, ["vs_1", "vs_2"], "oldest first");
    // Snapshots are status, not desired state: no drift.
    assert!(plan(&c.desired(), &live).is_empty());
    assert!(api
        .requests()
        .iter()
        .any(|r| r.op() == "GET /apps/{app_name}/volumes/{volume_id}/snapshots"));
    api.assert_conformant();

    // `flyplan snapshots list` on the fly provider shows them.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_flyplan"))
        .args(["--provider", "fly", "--state-dir"])
        .arg(_dir.path())
        .args(["snapshots", "list", "-a", APP, "--json"])
        // flyctl's variables: the Machines API, the GraphQL API, and a
        // token with the scheme `fly tokens create` prints.
        .env("FLY_API_TOKEN", format!("FlyV1 {}", fly_api::TOKEN))
        .env("FLY_FLAPS_BASE_URL", api.base_url())
        .env("FLY_API_BASE_URL", "http://127.0.0.1:9")
        .env_remove("FLYPLAN_FLY_PG_URL")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["vs_1", "vs_2"]);
    let last = api.requests().pop().unwrap();
    assert_eq!(
        last.authorization.as_deref(),
        Some(format!("FlyV1 {}", fly_api::TOKEN).as_str())
    );
}

fn all_secret_reads(api: &FlyApi) -> Vec<Recorded> {
    api.requests()
        .into_iter()
        .filter(|r| r.op() == "GET /apps/{app_name}/secrets")
        .collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_node_without_the_secrets_postgres_flex_needs_never_becomes_healthy() {
    let (api, _dir, p, c) = setup();
    // An app made by hand: no passwords, no Consul URL.
    api.state().model.handle(
        "POST /apps",
        &[],
        &[],
        Some(&serde_json::json!({"app_name": APP, "org_slug": "personal"})),
        None,
    );
    let steps: Vec<_> = create_steps(&c.desired())
        .into_iter()
        .filter(|s| {
            s.address == Address::volume("pg_data", "iad", 0)
                || s.address == Address::machine("iad", 0)
        })
        .collect();
    let (at, err) = apply(&p, &c, &steps).unwrap_err();
    assert_eq!(at, Address::machine("iad", 0));
    let msg = err.to_string();
    assert!(
        msg.contains("did not get its role check to say primary") && msg.contains("role critical"),
        "{msg}"
    );
    // postgres-flex cmd/start/main.go:19-24: it panics, and restarts forever.
    let st = api.state();
    let m = st.model.app(APP).machine_at("iad", 0).unwrap();
    assert!(m.crash.as_deref().unwrap().contains("is required"));
}

#[test]
fn the_scripted_nodes_race_when_one_boots_before_the_cluster_is_initialised() {
    // The model itself: two primary-region nodes created back to back, with
    // no read of the first in between, both take the provisioning path
    // (postgres-flex internal/flypg/node.go:178-215).
    let (api, _dir, p, c) = setup();
    let steps = create_steps(&c.desired());
    let app_and_volumes: Vec<_> = steps
        .iter()
        .filter(|s| matches!(s.kind, Kind::App | Kind::Secret | Kind::Volume))
        .cloned()
        .collect();
    apply(&p, &c, &app_and_volumes).unwrap();
    let mut st = api.state();
    let vols: Vec<String> = st
        .model
        .app(APP)
        .live_volumes()
        .filter(|v| v["region"] == "iad")
        .map(|v| v["id"].as_str().unwrap().to_string())
        .take(2)
        .collect();
    for vol in &vols {
        let body = serde_json::json!({"region": "iad", "config": {
            "image": c.image, "env": {"PRIMARY_REGION": "iad"},
            "mounts": [{"volume": vol, "path": "/data"}]}});
        let r = st.model.handle(
            "POST /apps/{app_name}/machines",
            &["apps".into(), APP.into(), "machines".into()],
            &[],
            Some(&body),
            None,
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(st.model.app(APP).races.len(), 1);
}

fn machine_volume(api: &FlyApi) -> String {
    let st = api.state();
    let id = st.model.app(APP).live_volumes().next().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    id
}

#[test]
fn a_cluster_restored_from_a_snapshot_creates_its_first_volume_from_it() {
    let (api, _dir, p, c) = setup();
    // The whole path a command takes: desired state, the plan engine, apply.
    let mut desired = flyplan::desired::Desired::nothing(APP);
    for r in c.desired() {
        desired.resources.insert(r.address.clone(), r);
    }
    assert!(desired.restore_from("vs_restore_me"));
    let live = p.observe(APP).unwrap();
    let plan = flyplan::plan::plan(&desired, &live, flyplan::plan::PlanOptions::default());
    flyplan::apply::execute(
        &p,
        &plan,
        &c.secret_values(),
        &flyplan::apply::ApplyOptions::default(),
        &flyplan::apply::Quiet,
    )
    .expect("the restored cluster is created");

    let creates: Vec<serde_json::Value> = api
        .changes()
        .into_iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/volumes")
        .map(|r| r.body.clone().expect("a body"))
        .collect();
    assert_eq!(creates.len(), 4, "{creates:#?}");
    let from_snapshot: Vec<&serde_json::Value> = creates
        .iter()
        .filter(|b| b.get("snapshot_id").is_some())
        .collect();
    assert_eq!(from_snapshot.len(), 1, "{creates:#?}");
    assert_eq!(from_snapshot[0]["snapshot_id"], "vs_restore_me");
    assert_eq!(from_snapshot[0]["region"], "iad");
    // postgres-flex prepares a restored node only with FLY_RESTORED_FROM
    // (internal/flypg/node.go:494-507), which flyctl sets
    // (flypg/launcher.go:478-480).
    let secret_calls: Vec<serde_json::Value> = api
        .changes()
        .into_iter()
        .filter(|r| r.op() == "POST /apps/{app_name}/secrets")
        .map(|r| r.body.unwrap())
        .collect();
    assert_eq!(secret_calls.len(), 1);
    assert_eq!(
        secret_calls[0]["values"]["FLY_RESTORED_FROM"],
        "vs_restore_me"
    );
    api.assert_conformant();
}

/// Every size preset flyctl knows (fly-go `machine_types.go`,
/// `MachinePresets`) becomes that guest on Fly, and observe reports the
/// same size back: apply, then plan, shows no changes.
#[test]
fn every_vm_size_preset_flyctl_knows_round_trips() {
    for (size, kind, cpus, memory_mb) in flyplan::config::presets::PRESETS {
        let api = FlyApi::start();
        let dir = tempfile::tempdir().unwrap();
        let p = provider(&api, dir.path());
        let text = format!(
            "app = \"{APP}\"\nprimary_region = \"iad\"\n\n[postgres]\n  instances = 1\n\n\
             [[vm]]\n  size = \"{size}\"\n"
        );
        let config =
            flyplan::config::parse(std::path::Path::new("fly.toml"), &text).expect("valid");
        let d = flyplan::desired::Desired::from_config(&config, &std::collections::BTreeMap::new())
            .unwrap();
        // (No SQL here: the nodes are what the size changes.)
        let mut want: Vec<Resource> = d
            .resources
            .values()
            .filter(|r| !matches!(r.kind(), Kind::User | Kind::Database | Kind::Attachment))
            .cloned()
            .collect();
        want.sort_by_key(|r| r.kind());
        let c = Cluster::example(APP);
        apply(&p, &c, &create_steps(&want)).unwrap_or_else(|e| panic!("{size}: {e:?}"));
        {
            let st = api.state();
            let m = st
                .model
                .app(APP)
                .live_machines()
                .next()
                .unwrap()
                .json
                .clone();
            let guest = &m["config"]["guest"];
            assert_eq!(guest["cpu_kind"], kind, "{size}");
            assert_eq!(guest["cpus"], cpus, "{size}");
            assert_eq!(guest["memory_mb"], memory_mb, "{size}");
        }
        let live = p.observe(APP).unwrap();
        assert_eq!(drift(&want, &live), Vec::<String>::new(), "{size}");
        api.assert_conformant();
    }
}

/// `[postgres.parameters]` as `fly pg config update` sets them (flyctl
/// `internal/command/postgres/config_update.go`; postgres-flex
/// `internal/api/handle_admin.go`): stored through the leader's settings
/// API, applied on every node, and a setting only a restart takes
/// (`max_connections`, context `postmaster`) restarts the standbys first,
/// then the leader after a switchover. The next plan is empty.
#[test]
fn postgresql_settings_go_through_the_settings_api_with_a_rolling_restart() {
    let (api, _dir, p, c) = setup();
    converge(&api, &p, &c);
    let old_leader = machine_id(&api, "iad", 0);
    let mut desired = c.desired();
    for (name, value) in [("work_mem", "8MB"), ("max_connections", "300")] {
        desired.push(Resource::new(
            Address::parameter(name),
            Spec::Parameter(flyplan::model::ParameterSpec {
                pending_restart: None,
                value: flyplan::model::Agreed::One(value.to_string()),
            }),
        ));
    }
    let steps = plan(&desired, &p.observe(APP).unwrap());
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(steps.iter().all(|s| s.kind == Kind::Parameter));
    api.clear_requests();
    apply(&p, &c, &steps).unwrap_or_else(|(a, e)| panic!("{a}: {e}"));
    {
        let st = api.state();
        let a = st.model.app(APP);
        assert_eq!(a.pg_user_config["work_mem"], "'8MB'");
        assert_eq!(a.pg_user_config["max_connections"], "'300'");
        for m in a.live_machines() {
            let applied = &a.pg_applied[m.id()];
            assert_eq!(applied["max_connections"], "'300'", "{}", m.id());
        }
        // The leader handed over before it restarted.
        assert!(
            a.switchovers.iter().any(|(from, _)| *from == old_leader),
            "{:?}",
            a.switchovers
        );
    }
    let restarts: Vec<String> = api
        .changes()
        .iter()
        .filter(|r| r.op().ends_with("/restart"))
        .map(|r| r.path.split('/').nth(4).unwrap_or_default().to_string())
        .collect();
    // One restart per node, for the one setting that needs it; the old
    // leader last.
    assert_eq!(restarts.len(), 4, "{restarts:?}");
    assert_eq!(restarts.last(), Some(&old_leader), "{restarts:?}");
    let again = plan(&desired, &p.observe(APP).unwrap());
    assert!(again.is_empty(), "{again:?}");
    api.assert_conformant();
}

/// The plan's notes say what the fly provider does: a removed node is
/// stopped, destroyed and unregistered with `pg_unregister` (no drain), a
/// leader update waits for a switchover only when a standby qualifies, and
/// a grown volume may restart its node.
#[test]
fn plan_notes_say_what_the_fly_provider_does() {
    let (api, _dir, p, mut c) = setup();
    converge(&api, &p, &c);
    c.instances = 2;
    c.image = "flyio/postgres-flex:15.7".to_string();
    c.size_gb = 20;
    let mut desired = flyplan::desired::Desired::nothing(APP);
    for r in c.desired() {
        desired.resources.insert(r.address.clone(), r);
    }
    let live = p.observe(APP).unwrap();
    let opts = flyplan::plan::PlanOptions {
        allow_destroy: true,
        notes: p.plan_notes(),
    };
    let plan = flyplan::plan::plan(&desired, &live, opts);
    let notes = |address: &str| -> String {
        plan.steps
            .iter()
            .find(|s| s.address.as_str() == address)
            .unwrap_or_else(|| panic!("no step {address}"))
            .notes
            .join("; ")
    };
    let all: String = plan
        .steps
        .iter()
        .flat_map(|s| s.notes.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!all.contains("drained"), "{all}");
    assert!(
        notes("machine[iad:2]").contains("unregistered from repmgr with pg_unregister"),
        "{all}"
    );
    assert!(
        notes("machine[iad:0]").contains("updated in place when none passes the dry run"),
        "{all}"
    );
    assert!(
        notes("volume.pg_data[ams:0]").contains("its node is restarted"),
        "{all}"
    );
}

#[test]
fn status_shows_each_machines_own_checks_and_exit_code_reports_a_critical_one() {
    use fly_api::flycheck;
    let (api, dir, p, c) = setup();
    converge(&api, &p, &c);
    let config = dir.path().join("fly.toml");
    std::fs::write(&config, "app = \"pg-test\"\nprimary_region = \"iad\"\n").unwrap();
    let status = |args: &[&str]| {
        api.cli(dir.path())
            .arg("status")
            .arg("-c")
            .arg(&config)
            .args(args)
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Every check passes: the three checks of every node are the
    // machine's own, and --exit-code exits 0.
    let o = status(&["--json", "--exit-code"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4, "{v}");
    for n in nodes {
        let h = &n["health"];
        for name in ["vm", "pg", "role"] {
            assert_eq!(h[name]["status"], "passing", "{name}: {n}");
            assert_eq!(h[name]["updated_at"], flycheck::UPDATED_AT, "{n}");
        }
        let vm = h["vm"]["output"].as_str().unwrap();
        assert!(
            vm.starts_with(
                "[✓] checkDisk: 9.5 GB (97.0%) free space on /data/ (21.3µs); [✓] checkLoad: "
            ),
            "{vm}"
        );
        let pg = h["pg"]["output"].as_str().unwrap();
        let role = h["role"]["output"].as_str().unwrap();
        if n["role"] == "leader" {
            assert_eq!(role, "primary");
            assert!(pg.contains("; [✓] disk-capacity: "), "{pg}");
        } else {
            assert_eq!(role, "replica");
            assert!(pg.starts_with("[✓] connections: "), "{pg}");
        }
    }

    // The leader's volume is full: its pg check is critical, status says
    // so with postgres-flex's output, and --exit-code exits 2.
    let leader = {
        let mut st = api.state();
        let a = st.model.app_mut(APP);
        let m = a
            .machines
            .values_mut()
            .find(|m| m.json["checks"][1]["output"] == "primary")
            .unwrap();
        flycheck::set(&mut m.json, flycheck::pg_primary_disk_full());
        m.region().to_string()
    };
    let o = status(&["--exit-code"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("machine[{leader}:"))
                && l.contains(" pg ")
                && l.contains("critical")
                && l.contains("[✗] disk-capacity: 91.2% - readonly mode enabled")),
        "{out}"
    );
    assert_eq!(status(&[]).status.code(), Some(0));
    api.assert_conformant();
}

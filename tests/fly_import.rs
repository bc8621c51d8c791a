//! `flyplan import` on the fly provider, against the scripted Fly Machines
//! API: the example cluster, converged, is observed, imported and planned
//! again with no change to anything the fly provider observes, and
//! observing for the import only reads.
//!
//! Without a SQL route the fly provider observes no role, so the operator
//! role `postgres` that every fly.toml implies is planned as a create; it is
//! the one step left, and the test names it.

#[path = "support/fly_api/mod.rs"]
mod fly_api;

use std::collections::BTreeMap;
use std::path::Path;

use fly_api::cluster::*;
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
    // Roles need the SQL route (see the top of this file).
    assert_eq!(
        steps,
        ["create user.postgres (not in live state)"],
        "{text}"
    );
}

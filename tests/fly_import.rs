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

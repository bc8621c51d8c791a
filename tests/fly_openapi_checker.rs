//! The request checker of the scripted Fly API must itself be right, or the
//! provider tests prove nothing: it must find operations by path template,
//! and refuse unknown paths, unknown properties, wrong types and missing
//! required parts.

#[path = "support/fly_api/mod.rs"]
mod fly_api;

use fly_api::openapi::Spec;
use fly_api::{FlyApi, TOKEN};

fn check(
    spec: &Spec,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: &str,
) -> Result<String, Vec<String>> {
    let q: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.check(method, path, &q, body.as_bytes())
        .map(|op| op.key())
}

#[test]
fn operations_are_found_by_method_and_path_template() {
    let spec = Spec::load();
    assert_eq!(
        check(
            &spec,
            "GET",
            "/apps/a/machines/m1/wait",
            &[("state", "started"), ("timeout", "60")],
            ""
        ),
        Ok("GET /apps/{app_name}/machines/{machine_id}/wait".into())
    );
    assert_eq!(
        check(
            &spec,
            "PUT",
            "/apps/a/volumes/vol_1/extend",
            &[],
            r#"{"size_gb": 20}"#
        ),
        Ok("PUT /apps/{app_name}/volumes/{volume_id}/extend".into())
    );
    assert_eq!(
        spec.find("POST", "/apps/a/volumes/vol_1")
            .unwrap()
            .operation_id,
        "Volumes_update"
    );
}

#[test]
fn unknown_paths_and_methods_are_refused() {
    let spec = Spec::load();
    assert!(check(&spec, "GET", "/apps/a/nonsense", &[], "").is_err());
    // Volumes are updated with PUT, as fly-go does (the overlay adds it),
    // but never with PATCH.
    assert_eq!(
        check(&spec, "PUT", "/apps/a/volumes/vol_1", &[], "{}"),
        Ok("PUT /apps/{app_name}/volumes/{volume_id}".into())
    );
    assert!(check(&spec, "PATCH", "/apps/a/volumes/vol_1", &[], "{}").is_err());
    assert!(check(&spec, "PATCH", "/apps/a", &[], "").is_err());
}

#[test]
fn unknown_properties_wrong_types_and_bad_enums_are_refused_deep_in_the_body() {
    let spec = Spec::load();
    let errs = check(
        &spec,
        "POST",
        "/apps/a/volumes",
        &[],
        r#"{"name":"pg_data","region":"iad","size_gb":"10","sizegb":1}"#,
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains(".size_gb: expected integer")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.contains(".sizegb: unknown property")),
        "{errs:?}"
    );

    // Through allOf and $ref into the machine config.
    let errs = check(&spec, "POST", "/apps/a/machines", &[],
        r#"{"region":"iad","config":{"image":"x","guest":{"cpus":"1"},"restart":{"policy":"sometimes"},"mounts":[{"volume":"v","path":"/data","bogus":true}]}}"#)
        .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("config.guest.cpus: expected integer")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("config.restart.policy") && e.contains("not one of")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("config.mounts[0].bogus: unknown property")),
        "{errs:?}"
    );
    // Maps of strings: env values must be strings.
    let errs = check(
        &spec,
        "POST",
        "/apps/a/machines",
        &[],
        r#"{"config":{"env":{"PORT":5432}}}"#,
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.contains("config.env.PORT: expected string")),
        "{errs:?}"
    );
}

#[test]
fn query_parameters_and_required_bodies_are_checked() {
    let spec = Spec::load();
    let errs = check(
        &spec,
        "GET",
        "/apps/a/machines/m/wait",
        &[("state", "running")],
        "",
    )
    .unwrap_err();
    assert!(errs.iter().any(|e| e.contains("not one of")), "{errs:?}");
    let errs = check(
        &spec,
        "DELETE",
        "/apps/a/machines/m",
        &[("force", "true")],
        "",
    )
    .unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("unknown query parameter")),
        "{errs:?}"
    );
    let errs = check(&spec, "GET", "/apps", &[], "").unwrap_err();
    assert!(errs.iter().any(|e| e.contains("org_slug")), "{errs:?}");
    let errs = check(&spec, "POST", "/apps/a/machines/m/lease", &[], "").unwrap_err();
    assert!(
        errs.iter().any(|e| e.contains("body is required")),
        "{errs:?}"
    );
    let errs = check(&spec, "POST", "/apps/a/machines/m/start", &[], "{}").unwrap_err();
    assert!(errs.iter().any(|e| e.contains("takes no body")), "{errs:?}");
}

#[test]
fn the_secrets_endpoints_take_values_or_null_and_nothing_else() {
    let spec = Spec::load();
    assert!(check(
        &spec,
        "POST",
        "/apps/a/secrets",
        &[],
        r#"{"values":{"A":"x","B":null}}"#
    )
    .is_ok());
    assert!(check(&spec, "GET", "/apps/a/secrets", &[], "").is_ok());
    assert!(check(
        &spec,
        "POST",
        "/apps/a/secrets",
        &[],
        r#"{"values":{"A":1}}"#
    )
    .is_err());
    assert!(check(
        &spec,
        "POST",
        "/apps/a/secrets",
        &[],
        r#"{"secrets":{"A":"x"}}"#
    )
    .is_err());
    // Newer fields the API takes today are allowed, and only those.
    assert!(check(
        &spec,
        "POST",
        "/apps/a/volumes/v",
        &[],
        r#"{"snapshot_retention":7,"auto_backup_enabled":false}"#
    )
    .is_ok());
    assert!(check(
        &spec,
        "POST",
        "/apps/a/machines/m/metadata/k",
        &[],
        r#"{"value":"1"}"#
    )
    .is_ok());
    assert!(check(
        &spec,
        "POST",
        "/apps/a/machines/m/metadata/k",
        &[],
        r#"{"val":"1"}"#
    )
    .is_err());
}

#[test]
fn the_server_records_violations_and_answers_them_with_an_error() {
    let api = FlyApi::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = api.base_url();
    let (unknown, unauthorized) = rt.block_on(async {
        let c = reqwest::Client::new();
        let unknown = c
            .post(format!("{base}/v1/apps/a/machines/m/explode"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .status();
        let unauthorized = c
            .get(format!("{base}/v1/apps/a"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status();
        (unknown, unauthorized)
    });
    assert_eq!(unknown.as_u16(), 400);
    assert_eq!(unauthorized.as_u16(), 401);
    let violations = api.state().violations.clone();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations[0].contains("no such operation"));
    assert!(violations[1].contains("bearer token"));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.assert_conformant()));
    assert!(result.is_err(), "assert_conformant must fail on violations");
}

/// The documents the fly provider sends, with the variables it sends, as
/// fly-go builds them (superfly/fly-go `resource_organizations.go`,
/// `resource_ip_addresses.go:9-94`, `resource_ssh.go:35-73`,
/// `resource_postgres.go:81-99`).
fn provider_requests() -> Vec<serde_json::Value> {
    use flyplan::provider::fly::graphql::*;
    use serde_json::json;
    vec![
        json!({"query": ORGANIZATION, "variables": {"slug": "personal"}}),
        json!({"query": APP_IP_ADDRESSES, "variables": {"appName": "pg"}}),
        json!({"query": ALLOCATE_IP_ADDRESS, "variables": {"input":
            {"appId": "pg", "type": "private_v6", "organizationId": "O1", "region": "iad"}}}),
        json!({"query": ISSUE_CERTIFICATE, "variables": {"input": {"organizationId": "O1",
            "principals": ["root", "fly", "postgres"], "appNames": ["pg"],
            "publicKey": "ssh-ed25519 AAAA", "validHours": 876600}}}),
        json!({"query": ENABLE_POSTGRES_CONSUL, "variables": {"appName": "pg"}}),
    ]
}

#[test]
fn every_graphql_document_the_provider_sends_validates_against_flyctls_schema() {
    for body in provider_requests() {
        let checked =
            fly_api::graphql::check(&body).unwrap_or_else(|e| panic!("{}: {e:?}", body["query"]));
        assert_eq!(checked.root_fields.len(), 1);
    }
}

#[test]
fn graphql_documents_with_unknown_fields_bad_enums_or_missing_variables_are_refused() {
    use serde_json::json;
    let refused = |body: serde_json::Value| fly_api::graphql::check(&body).unwrap_err().join("\n");
    // A field IPAddress does not have.
    let e = refused(json!({"query":
        "query($appName: String!) { app(name: $appName) { ipAddresses { nodes { flycast } } } }",
        "variables": {"appName": "pg"}}));
    assert!(e.contains("flycast"), "{e}");
    // `flycast` is not an IPAddressType (schema: v4, v6, private_v6, ...).
    let e = refused(
        json!({"query": flyplan::provider::fly::graphql::ALLOCATE_IP_ADDRESS,
        "variables": {"input": {"appId": "pg", "type": "flycast"}}}),
    );
    assert!(e.contains("coerce"), "{e}");
    // A required variable left out.
    let e = refused(
        json!({"query": flyplan::provider::fly::graphql::ORGANIZATION,
        "variables": {}}),
    );
    assert!(e.contains("slug"), "{e}");
    // A root field that does not exist.
    let e = refused(json!({"query": "mutation { createPostgresCluster { id } }"}));
    assert!(e.contains("createPostgresCluster"), "{e}");
}

#[test]
fn the_graphql_endpoint_records_violations_and_answers_with_graphql_errors() {
    let api = FlyApi::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("{}/graphql", api.base_url());
    let (ok, bad): (serde_json::Value, serde_json::Value) = rt.block_on(async {
        let c = reqwest::Client::new();
        let ok = c
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&provider_requests()[0])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bad = c
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"query": "{ organization(slug: 1) { nope } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (ok, bad)
    });
    assert_eq!(
        ok["data"]["organization"]["id"],
        fly_api::graphql::PERSONAL_ORG_ID
    );
    assert!(bad["errors"][0]["message"].is_string());
    let v = api.state().violations.clone();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("nope"), "{v:?}");
    assert_eq!(api.requests()[0].op(), "GraphQL organization");
}

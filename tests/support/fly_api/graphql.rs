//! The scripted API's `POST /graphql`: every document is parsed and
//! validated against flyctl's own schema (`tests/data/fly/schema.graphql`,
//! superfly/flyctl `gql/schema.graphql`) with apollo-compiler, and its
//! variables are coerced against the operation's variable definitions, so a
//! field that does not exist, a wrong argument or a variable of the wrong
//! type is a violation. The answers are scripted from the in-memory model:
//! the schema says what may be asked, not what Fly answers.
//!
//! What each mutation does, and the documents flyplan must send, follow
//! fly-go (superfly/fly-go at 22d6e518f42d): `resource_organizations.go`
//! (`organization(slug:)`), `resource_ip_addresses.go:9-94`
//! (`app{ipAddresses}`, `allocateIpAddress`), `resource_ssh.go:35-73`
//! (`issueCertificate`), `resource_postgres.go:81-99`
//! (`enablePostgresConsul`, `$appName: ID!` feeding the nullable `appId`).

use std::sync::OnceLock;

use apollo_compiler::executable::ExecutableDocument;
use apollo_compiler::validation::Valid;
use apollo_compiler::Schema;
use serde_json::{json, Value};

use super::model::{Model, Reply};

/// The org node id the scripted Fly gives the `personal` organization.
pub const PERSONAL_ORG_ID: &str = "T3JnYW5pemF0aW9uOnBlcnNvbmFs";

fn schema() -> &'static Valid<Schema> {
    static SCHEMA: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fly/schema.graphql");
        let text = std::fs::read_to_string(path).expect("tests/data/fly/schema.graphql");
        Schema::parse_and_validate(text, path).expect("flyctl's schema is valid GraphQL")
    })
}

/// A request that passed validation: its root fields, in order.
#[derive(Debug, Clone)]
pub struct Checked {
    pub root_fields: Vec<String>,
    pub mutation: bool,
}

/// Validate a `{query, variables, operationName}` body against the schema.
///
/// # Errors
/// Every problem found, as text.
pub fn check(body: &Value) -> Result<Checked, Vec<String>> {
    let Some(query) = body["query"].as_str() else {
        return Err(vec!["GraphQL request without a `query` string".into()]);
    };
    let doc = ExecutableDocument::parse_and_validate(schema(), query, "request.graphql")
        .map_err(|e| vec![format!("GraphQL document does not validate: {}", e.errors)])?;
    let op = doc
        .operations
        .get(body["operationName"].as_str())
        .map_err(|e| vec![format!("GraphQL operation: {e:?}")])?;
    let variables = match &body["variables"] {
        Value::Null => Value::Object(Default::default()),
        v => v.clone(),
    };
    let bytes_value = apollo_compiler::response::serde_json_bytes::Value::from(variables);
    let Some(map) = bytes_value.as_object() else {
        return Err(vec!["GraphQL variables are not an object".into()]);
    };
    apollo_compiler::request::coerce_variable_values(schema(), op, map)
        .map_err(|e| vec![format!("GraphQL variables do not coerce: {e:?}")])?;
    let root_fields = op
        .selection_set
        .fields()
        .map(|f| f.name.to_string())
        .collect();
    Ok(Checked {
        root_fields,
        mutation: op.operation_type.is_mutation(),
    })
}

/// GraphQL's own error shape: HTTP 200 with `errors`, as Fly answers.
pub fn error(message: &str) -> Reply {
    Reply::json(200, json!({"data": null, "errors": [{"message": message}]}))
}

/// Fly's state that only GraphQL reaches, kept per app in [`Model`].
#[derive(Debug, Clone, Default)]
pub struct GraphqlState {
    /// `IPAddress` nodes.
    pub ip_addresses: Vec<Value>,
    /// The Consul URL `enablePostgresConsul` gave, once enabled.
    pub consul_url: Option<String>,
    /// Certificates issued for this app (public keys).
    pub certificates: Vec<String>,
    /// `PostgresClusterAttachment`s on this (consumer) app, each with the
    /// cluster app's name under `postgresApp`.
    pub pg_attachments: Vec<Value>,
}

impl Model {
    /// Answer a validated GraphQL request from the model.
    pub fn graphql(&mut self, checked: &Checked, body: &Value) -> Reply {
        let vars = &body["variables"];
        let Some(field) = checked.root_fields.first() else {
            return error("empty selection");
        };
        match field.as_str() {
            "organization" => {
                let slug = vars["slug"].as_str().unwrap_or("");
                if slug == "personal" {
                    Reply::json(
                        200,
                        json!({"data": {"organization": {"id": PERSONAL_ORG_ID, "slug": slug,
                            "name": "Personal", "type": "PERSONAL"}}}),
                    )
                } else {
                    Reply::json(200, json!({"data": {"organization": null}}))
                }
            }
            "app" => {
                let name = vars["appName"].as_str().unwrap_or("");
                match self.apps.get(name) {
                    None => error(&format!("Could not find App \"{name}\"")),
                    Some(a) => Reply::json(
                        200,
                        json!({"data": {"app": {"id": name, "name": name,
                            "ipAddresses": {"nodes": a.graphql.ip_addresses}}}}),
                    ),
                }
            }
            "allocateIpAddress" => {
                let input = &vars["input"];
                let app = input["appId"].as_str().unwrap_or("").to_string();
                if input["organizationId"].as_str() != Some(PERSONAL_ORG_ID) {
                    return error("organizationId must be the organization's node id");
                }
                if !self.apps.contains_key(&app) {
                    return error(&format!("Could not find App \"{app}\""));
                }
                let n = self.app(&app).graphql.ip_addresses.len() + 1;
                let ip = json!({
                    "id": format!("ip_{n}"), "address": format!("fdaa:0:1:0:0:0:0:{n}"),
                    "type": input["type"], "region": input["region"].as_str().unwrap_or("global"),
                    "createdAt": "2024-06-01T00:00:00Z",
                });
                self.app_mut(&app).graphql.ip_addresses.push(ip.clone());
                Reply::json(
                    200,
                    json!({"data": {"allocateIpAddress": {"ipAddress": ip}}}),
                )
            }
            "issueCertificate" => {
                let input = &vars["input"];
                if input["organizationId"].as_str() != Some(PERSONAL_ORG_ID) {
                    return error("organizationId must be the organization's node id");
                }
                let key = input["publicKey"].as_str().unwrap_or("");
                if !key.starts_with("ssh-ed25519 ") {
                    return error("publicKey must be an openssh ed25519 public key");
                }
                let apps: Vec<String> = input["appNames"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_string))
                    .collect();
                for app in &apps {
                    if let Some(a) = self.apps.get_mut(app) {
                        a.graphql.certificates.push(key.to_string());
                    }
                }
                let n = self
                    .apps
                    .values()
                    .map(|a| a.graphql.certificates.len())
                    .sum::<usize>();
                Reply::json(
                    200,
                    json!({"data": {"issueCertificate": {
                        "certificate": format!("ssh-ed25519-cert-v01@openssh.com AAAAscripted{n} postgres"),
                        "key": null}}}),
                )
            }
            "enablePostgresConsul" => {
                let app = vars["appName"]
                    .as_str()
                    .or_else(|| vars["input"]["appId"].as_str())
                    .unwrap_or("")
                    .to_string();
                if !self.apps.contains_key(&app) {
                    return error(&format!("Could not find App \"{app}\""));
                }
                // postgres-flex needs a token in the userinfo and a path
                // (internal/flypg/state/store.go:81-117).
                let url =
                    format!("https://:consul-token-{app}@consul-iad.fly-shared.net/{app}-kv/");
                self.app_mut(&app).graphql.consul_url = Some(url.clone());
                Reply::json(
                    200,
                    json!({"data": {"enablePostgresConsul": {"consulUrl": url}}}),
                )
            }
            // flyctl `attach.go:235-242, 287`: the record `fly pg attach`
            // makes; the cluster must be a `postgres_cluster` app
            // (`attach.go:82-89`).
            "attachPostgresCluster" => {
                let input = &vars["input"];
                let app = input["appId"].as_str().unwrap_or("").to_string();
                let pg = input["postgresClusterAppId"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                if !self.apps.contains_key(&app) {
                    return error(&format!("Could not find App \"{app}\""));
                }
                match self.apps.get(&pg) {
                    None => return error(&format!("Could not find App \"{pg}\"")),
                    Some(a) if a.role.as_deref() != Some("postgres_cluster") => {
                        return error(&format!("{pg} is not a postgres cluster"))
                    }
                    Some(_) => {}
                }
                let variable = input["variableName"].as_str().unwrap_or("DATABASE_URL");
                let db = input["databaseName"].as_str().unwrap_or(&app).to_string();
                let user = input["databaseUser"].as_str().unwrap_or(&db).to_string();
                let taken = self.app(&app).graphql.pg_attachments.iter().any(|r| {
                    r["postgresApp"] == pg.as_str() && r["environmentVariableName"] == variable
                });
                if taken {
                    return error(&format!("{app} already has {variable} attached from {pg}"));
                }
                let n: usize = self
                    .apps
                    .values()
                    .map(|a| a.graphql.pg_attachments.len())
                    .sum::<usize>()
                    + self.detached_attachments
                    + 1;
                let record = json!({"id": format!("pgattach_{n}"), "postgresApp": pg,
                    "databaseName": db, "databaseUser": user,
                    "environmentVariableName": variable});
                self.app_mut(&app).graphql.pg_attachments.push(record);
                Reply::json(
                    200,
                    json!({"data": {"attachPostgresCluster": {"app": {"name": app},
                        "postgresClusterApp": {"name": pg},
                        "environmentVariableName": variable,
                        "connectionString": "(manual entry)"}}}),
                )
            }
            // flyctl `detach.go:159-167`.
            "detachPostgresCluster" => {
                let input = &vars["input"];
                let app = input["appId"].as_str().unwrap_or("").to_string();
                let pg = input["postgresClusterAppId"].as_str().unwrap_or("");
                let id = input["postgresClusterAttachmentId"].as_str().unwrap_or("");
                let Some(a) = self.apps.get_mut(&app) else {
                    return error(&format!("Could not find App \"{app}\""));
                };
                let before = a.graphql.pg_attachments.len();
                a.graphql
                    .pg_attachments
                    .retain(|r| !(r["id"] == id && r["postgresApp"] == pg));
                if a.graphql.pg_attachments.len() == before {
                    return error("attachment not found");
                }
                self.detached_attachments += 1;
                Reply::json(
                    200,
                    json!({"data": {"detachPostgresCluster": {"clientMutationId": null}}}),
                )
            }
            // flyctl `detach.go:109-116`.
            "postgresAttachments" => {
                let app = vars["appName"].as_str().unwrap_or("");
                let pg = vars["postgresAppName"].as_str().unwrap_or("");
                let nodes: Vec<Value> = self
                    .apps
                    .get(app)
                    .map(|a| a.graphql.pg_attachments.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| r["postgresApp"] == pg)
                    .map(|mut r| {
                        r.as_object_mut().unwrap().remove("postgresApp");
                        r
                    })
                    .collect();
                Reply::json(
                    200,
                    json!({"data": {"postgresAttachments": {"nodes": nodes}}}),
                )
            }
            other => error(&format!("the scripted API does not model GraphQL {other}")),
        }
    }
}

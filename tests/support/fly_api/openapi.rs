//! A request checker built from the published Machines API description: it
//! finds the operation for a method and path, and validates query
//! parameters and the JSON body against the operation's schema (type,
//! properties, required, items, $ref, allOf, enum, additionalProperties,
//! nullable). Unknown properties are errors: the real API would silently
//! ignore them, so a typo would pass unnoticed.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Where the description lives: vendored in the repository
/// (`tests/data/fly/SOURCES.md` says where it comes from).
pub const SPEC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/fly/machines-openapi.yaml"
);

/// One operation of the description.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    /// `/apps/{app_name}/machines/{machine_id}`
    pub template: String,
    pub operation_id: String,
    query: BTreeMap<String, (Value, bool)>,
    body: Option<(Value, bool)>,
}

impl Operation {
    /// `POST /apps/{app_name}/machines`
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

/// The description with flyplan's known additions.
pub struct Spec {
    doc: Value,
    ops: Vec<Operation>,
}

impl Spec {
    /// Load the description and apply [`overlay`].
    pub fn load() -> Spec {
        let text = std::fs::read_to_string(SPEC_PATH)
            .unwrap_or_else(|e| panic!("cannot read {SPEC_PATH}: {e}"));
        let mut doc: Value = serde_yaml::from_str(&text).expect("the OpenAPI description parses");
        overlay(&mut doc);
        let mut ops = Vec::new();
        for (template, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                let mut query = BTreeMap::new();
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "query" {
                        query.insert(
                            p["name"].as_str().unwrap().to_string(),
                            (p["schema"].clone(), p["required"] == true),
                        );
                    }
                }
                let body = op.get("requestBody").map(|rb| {
                    (
                        rb["content"]["application/json"]["schema"].clone(),
                        rb["required"] == true,
                    )
                });
                ops.push(Operation {
                    method: method.to_uppercase(),
                    template: template.clone(),
                    operation_id: op["operationId"].as_str().unwrap_or("").to_string(),
                    query,
                    body,
                });
            }
        }
        Spec { doc, ops }
    }

    /// The operation for a method and a path (without `/v1`).
    pub fn find(&self, method: &str, path: &str) -> Option<&Operation> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.ops
            .iter()
            .filter(|op| op.method == method)
            .filter(|op| {
                let t: Vec<&str> = op.template.trim_matches('/').split('/').collect();
                t.len() == segs.len()
                    && t.iter().zip(&segs).all(|(t, s)| {
                        (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                    })
            })
            // Literal segments win over parameters.
            .min_by_key(|op| op.template.matches('{').count())
    }

    /// Check a request; the operation, or what is wrong with the request.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
    ) -> Result<&Operation, Vec<String>> {
        let Some(op) = self.find(method, path) else {
            return Err(vec![format!(
                "{method} {path}: no such operation in the API description"
            )]);
        };
        let mut errors = Vec::new();
        let at = op.key();
        for (k, v) in query {
            match op.query.get(k) {
                None => errors.push(format!("{at}: unknown query parameter {k:?}")),
                Some((schema, _)) => {
                    let value = match schema["type"].as_str() {
                        Some("integer") => v.parse::<i64>().map(Value::from).unwrap_or(json!(v)),
                        Some("boolean") => v.parse::<bool>().map(Value::from).unwrap_or(json!(v)),
                        _ => json!(v),
                    };
                    self.validate(schema, &value, &format!("{at}?{k}"), &mut errors);
                }
            }
        }
        for (k, (_, required)) in &op.query {
            if *required && !query.iter().any(|(q, _)| q == k) {
                errors.push(format!("{at}: missing required query parameter {k:?}"));
            }
        }
        let empty = body.iter().all(u8::is_ascii_whitespace);
        match (&op.body, empty) {
            (None, false) => errors.push(format!("{at}: the operation takes no body")),
            (Some((_, true)), true) => errors.push(format!("{at}: the body is required")),
            (Some((schema, _)), false) => match serde_json::from_slice::<Value>(body) {
                Ok(v) => self.validate(schema, &v, &format!("{at} body"), &mut errors),
                Err(e) => errors.push(format!("{at}: body is not JSON: {e}")),
            },
            _ => {}
        }
        if errors.is_empty() {
            Ok(op)
        } else {
            Err(errors)
        }
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unsupported $ref {r}"));
                let target = &self.doc["components"]["schemas"][name];
                assert!(!target.is_null(), "dangling $ref {r}");
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// Validate `value` against `schema`, adding errors found at `at`.
    pub fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = self.resolve(schema);
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        if let Some(all) = schema["allOf"].as_array() {
            for s in all {
                self.validate(s, value, at, errors);
            }
        }
        if let Some(t) = schema["type"].as_str() {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                other => panic!("unsupported schema type {other}"),
            };
            if !ok {
                errors.push(format!("{at}: expected {t}, got {value}"));
                return;
            }
        }
        if let Some(options) = schema["enum"].as_array() {
            if !options.contains(value) {
                errors.push(format!("{at}: {value} is not one of {options:?}"));
            }
        }
        if let Some(items) = schema.get("items") {
            for (i, v) in value.as_array().into_iter().flatten().enumerate() {
                self.validate(items, v, &format!("{at}[{i}]"), errors);
            }
        }
        let Some(obj) = value.as_object() else {
            return;
        };
        for r in schema["required"].as_array().into_iter().flatten() {
            let r = r.as_str().unwrap();
            if !obj.contains_key(r) {
                errors.push(format!("{at}: missing required property {r:?}"));
            }
        }
        let props = schema["properties"].as_object();
        let additional = schema.get("additionalProperties");
        for (k, v) in obj {
            let here = format!("{at}.{k}");
            if let Some(p) = props.and_then(|p| p.get(k)) {
                self.validate(p, v, &here, errors);
            } else {
                match additional {
                    Some(Value::Bool(true)) => {}
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{here}: unknown property"));
                    }
                    Some(s @ Value::Object(_)) => self.validate(s, v, &here, errors),
                    Some(_) => {}
                    // `type: object` without properties is free-form.
                    None if props.is_some() => errors.push(format!("{here}: unknown property")),
                    None => {}
                }
            }
        }
    }
}

/// What the 2024 description lacks but the API takes today, each with the
/// place it is defined (superfly/fly-go, used by flyctl):
/// - `auto_backup_enabled` on `CreateVolumeRequest` and `UpdateVolumeRequest`
///   (volume_types.go);
/// - `min_secrets_version` on machine create and update (machine_types.go,
///   `LaunchMachineInput`);
/// - the `{"value": ...}` body of `POST .../metadata/{key}`
///   (flaps/flaps_machines.go, `SetMetadata`);
/// - `GET` and `POST /apps/{app_name}/secrets` (flaps/flaps_secrets.go,
///   secrets_types.go);
/// - `?wait=true` on `POST /apps` (flaps/flaps_apps.go:13-24, `CreateApp`);
/// - `PUT /apps/{app_name}/volumes/{volume_id}`, the volume update fly-go
///   sends (flaps/flaps_volumes.go:60-72), with the description's
///   `UpdateVolumeRequest`;
/// - `compute_image` on `CreateVolumeRequest` (volume_types.go:48-50), the
///   placement hint flyctl sends next to `compute`;
/// - `stdin` on `MachineExecRequest` (machine_types.go:1188-1196);
/// - `?kill=` on `DELETE /apps/{app_name}/machines/{machine_id}`, which
///   fly-go's `Destroy` sends (flaps/flaps_machines.go:233-248, as flyctl
///   `internal/command/machine/destroy.go:160-194` calls it).
pub fn overlay(doc: &mut Value) {
    let schemas = &mut doc["components"]["schemas"];
    for s in ["CreateVolumeRequest", "UpdateVolumeRequest"] {
        schemas[s]["properties"]["auto_backup_enabled"] = json!({"type": "boolean"});
    }
    for s in ["CreateMachineRequest", "UpdateMachineRequest"] {
        schemas[s]["properties"]["min_secrets_version"] = json!({"type": "integer"});
    }
    schemas["CreateVolumeRequest"]["properties"]["compute_image"] = json!({"type": "string"});
    schemas["MachineExecRequest"]["properties"]["stdin"] = json!({"type": "string"});
    let paths = &mut doc["paths"];
    let volume = &mut paths["/apps/{app_name}/volumes/{volume_id}"];
    let mut put = volume["post"].clone();
    put["operationId"] = json!("Volumes_update_put");
    volume["put"] = put;
    let delete_machine = &mut paths["/apps/{app_name}/machines/{machine_id}"]["delete"];
    let kill = json!({"in": "query", "name": "kill", "schema": {"type": "boolean"}});
    match delete_machine["parameters"].as_array_mut() {
        Some(params) => params.push(kill),
        None => delete_machine["parameters"] = json!([kill]),
    }
    let create_app = &mut paths["/apps"]["post"];
    let wait = json!({"in": "query", "name": "wait", "schema": {"type": "boolean"}});
    match create_app["parameters"].as_array_mut() {
        Some(params) => params.push(wait),
        None => create_app["parameters"] = json!([wait]),
    }
    paths["/apps/{app_name}/machines/{machine_id}/metadata/{key}"]["post"]["requestBody"] = json!({
        "required": true,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["value"],
            "properties": {"value": {"type": "string"}}
        }}}
    });
    let app_param =
        json!({"in": "path", "name": "app_name", "required": true, "schema": {"type": "string"}});
    paths["/apps/{app_name}/secrets"] = json!({
        "get": {
            "operationId": "Secrets_list",
            "parameters": [app_param.clone(),
                {"in": "query", "name": "version", "schema": {"type": "integer"}},
                {"in": "query", "name": "show_secrets", "schema": {"type": "boolean"}}]
        },
        "post": {
            "operationId": "Secrets_update",
            "parameters": [app_param],
            "requestBody": {
                "required": true,
                "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["values"],
                    "properties": {"values": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "nullable": true}
                    }}
                }}}
            }
        }
    });
}

//! `schema/fly.schema.json` must describe exactly the keys the parser
//! accepts, at the same places, and list the same regions.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/fly.schema.json");
    let text = std::fs::read_to_string(path).expect("schema/fly.schema.json is readable");
    serde_json::from_str(&text).expect("schema/fly.schema.json is JSON")
}

/// Follow `$ref`s, array `items` and the object branch of `oneOf`/`anyOf`/
/// `allOf` until reaching a node that describes a table.
fn resolve<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let name = r
                .strip_prefix("#/definitions/")
                .unwrap_or_else(|| panic!("unexpected $ref {r}"));
            node = &root["definitions"][name];
        } else if let Some(items) = node.get("items") {
            node = items;
        } else if let Some(branches) = ["oneOf", "anyOf", "allOf"]
            .iter()
            .find_map(|k| node.get(*k).and_then(Value::as_array))
        {
            node = branches
                .iter()
                .map(|b| resolve(root, b))
                .find(|b| {
                    b.get("properties").is_some()
                        || b.get("additionalProperties").is_some_and(Value::is_object)
                })
                .unwrap_or_else(|| panic!("no table among the branches of {node}"));
        } else {
            return node;
        }
    }
    panic!("$ref loop in the schema")
}

/// The schema node of the table at a dotted path such as `postgres.users`
/// or `secrets.*` (`*` = any key of a table of user-chosen names).
fn table_at<'a>(root: &'a Value, path: &str) -> &'a Value {
    let mut node = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        node = resolve(root, node);
        node = if part == "*" {
            node.get("additionalProperties")
        } else {
            node.get("properties").and_then(|p| p.get(part))
        }
        .unwrap_or_else(|| panic!("schema has no table `{path}` (stuck at `{part}`)"));
    }
    resolve(root, node)
}

fn known_by_table() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (table, key) in flyplan::config::known_keys() {
        out.entry(table).or_default().insert(key);
    }
    out
}

#[test]
fn every_key_the_parser_accepts_is_in_the_schema() {
    let root = schema();
    let mut missing = Vec::new();
    for (table, key) in flyplan::config::known_keys() {
        let node = table_at(&root, table);
        if node.get("properties").and_then(|p| p.get(key)).is_none() {
            missing.push(format!("{table:?} -> {key}"));
        }
    }
    assert!(
        missing.is_empty(),
        "keys missing from the schema:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_schema_property_is_a_key_the_parser_accepts() {
    let root = schema();
    let mut unknown = Vec::new();
    for (table, keys) in known_by_table() {
        let node = table_at(&root, table);
        let props = node["properties"].as_object().expect("properties");
        for name in props.keys() {
            if !keys.contains(name.as_str()) {
                unknown.push(format!("{table:?} -> {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "schema properties the parser does not accept:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_top_level_admits_only_known_keys() {
    let root = schema();
    assert_eq!(root["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(root["additionalProperties"], Value::Bool(false));
    for table in [
        "postgres",
        "postgres.users",
        "postgres.databases",
        "secrets.*",
        "mounts",
        "vm",
        "attachments",
        "services.postgres",
    ] {
        assert_eq!(
            table_at(&root, table)["additionalProperties"],
            Value::Bool(false),
            "`{table}` must not admit unknown keys"
        );
    }
}

#[test]
fn the_region_enum_equals_the_region_list() {
    let root = schema();
    let listed: Vec<&str> = root["definitions"]["region"]["enum"]
        .as_array()
        .expect("region enum")
        .iter()
        .map(|v| v.as_str().expect("region code"))
        .collect();
    assert_eq!(listed, flyplan::config::REGIONS);
}

#[test]
fn limits_match_the_parser() {
    let root = schema();
    let mount = table_at(&root, "mounts");
    assert_eq!(mount["properties"]["snapshot_retention"]["minimum"], 1);
    assert_eq!(mount["properties"]["snapshot_retention"]["maximum"], 60);
    assert_eq!(mount["properties"]["snapshot_retention"]["default"], 5);
    let pg = table_at(&root, "postgres");
    assert_eq!(pg["properties"]["instances"]["minimum"], 1);
    assert_eq!(pg["properties"]["sync_standbys"]["minimum"], 0);
}

//! CasareRPA project templates (`"$schema_version": "2.0.0"`, upstream
//! `resources/templates/*.json`) turned into the canvas format the loader reads.
//!
//! A project document is recognised by its `base_workflow` object. What it carries and what a
//! run makes of it:
//!
//! | field | on this robot |
//! |---|---|
//! | `base_workflow.nodes` (array of `{node_id, node_type, config, ...}`) | the nodes |
//! | `base_workflow.connections` (`from_node/from_port/to_node/to_port`) | the edges; the template exec port names `out` / `in` / `loop` become `exec_out` / `exec_in` / `body` (a node that really has a port of that name keeps it, e.g. `RerouteNode.in`) |
//! | `default_variables` (`[{name, data_type, default_value}]`) | the workflow variables, typed by `data_type` (`String`, `Integer`, `Float`, `Boolean`, `List`, `Dict`, `DataTable`, `Any`); a value that does not fit its type is a load problem naming the variable; job variables still override them |
//! | `name`, `description`, `id`, `version` | `metadata` (the run's name) |
//! | `default_settings` | kept as `settings`, not applied: `timeout_seconds` is left to the job's `timeout` (the orchestrator's) or the robot's `job_timeout`; `retry_count` is the orchestrator's job retry count (a claim's `max_retries`), not a node retry; `stop_on_error` is how every run behaves here (a Try captures errors); `default_browser` has no browser family to go to |
//! | `default_credentials` | not supplied: this robot has no credential store yet; a workflow referencing the alias (`{{api_key}}`) gets it as a job variable |
//! | catalogue fields (`category`, `icon`, `color`, `tags`, `difficulty`, `estimated_nodes`, `is_builtin`, `is_public`, `author`) | ignored (presentation only) |

use crate::nodes;
use serde_json::{json, Map, Value};

/// Whether `doc` is a project document (it has a `base_workflow` object).
pub fn is_project(doc: &Value) -> bool {
    doc.get("base_workflow").is_some_and(Value::is_object)
}

/// The canvas form of a project document: `None` when `doc` is not one, `Err` with every problem
/// found (each names the field) when it cannot be converted.
pub fn to_canvas(doc: &Value) -> Option<Result<Value, Vec<String>>> {
    if !is_project(doc) {
        return None;
    }
    let base = &doc["base_workflow"];
    let mut problems = Vec::new();
    let nodes = base.get("nodes").cloned().unwrap_or(Value::Null);
    let connections = match base.get("connections") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().map(|c| migrate_edge(c, &nodes)).collect(),
        Some(_) => {
            problems.push("base_workflow.connections must be an array".to_string());
            Vec::new()
        }
    };
    let variables = typed_variables(doc.get("default_variables"), &mut problems);
    if !problems.is_empty() {
        return Some(Err(problems));
    }
    let text = |k: &str| doc.get(k).cloned().unwrap_or(Value::Null);
    Some(Ok(json!({
        "metadata": {
            "name": doc.get("name").and_then(Value::as_str).unwrap_or("Untitled"),
            "description": text("description"),
            "version": text("version"),
            "project_template": text("id"),
        },
        "nodes": nodes,
        "connections": connections,
        "variables": variables,
        "settings": text("default_settings"),
    })))
}

/// One template edge with its exec port names migrated (see the module doc).
fn migrate_edge(edge: &Value, nodes: &Value) -> Value {
    let Some(obj) = edge.as_object() else {
        return edge.clone();
    };
    let mut out = obj.clone();
    let field = |k: &str| obj.get(k).and_then(Value::as_str);
    let type_of = |id: Option<&str>| id.and_then(|id| node_type(nodes, id));
    if let Some(port) = field("from_port") {
        let def = type_of(field("from_node")).and_then(nodes::lookup);
        let real = def.is_some_and(|d| d.outputs.contains(&port) || d.routes.contains(&port));
        let exec = match port {
            "out" => Some("exec_out"),
            "loop" if def.is_some_and(|d| d.routes.contains(&"body")) => Some("body"),
            _ => None,
        };
        if let (Some(exec), false) = (exec, real) {
            out.insert("from_port".into(), Value::from(exec));
        }
    }
    if field("to_port") == Some("in") {
        let def = type_of(field("to_node")).and_then(nodes::lookup);
        if def.is_none_or(|d| d.param("in").is_none()) {
            out.insert("to_port".into(), Value::from("exec_in"));
        }
    }
    Value::Object(out)
}

/// The `node_type` of node `id` in a template's node array (or object keyed by id).
fn node_type<'a>(nodes: &'a Value, id: &str) -> Option<&'a str> {
    let node = match nodes {
        Value::Array(list) => list.iter().find(|n| n["node_id"] == id)?,
        Value::Object(map) => map.get(id)?,
        _ => return None,
    };
    node.get("node_type").and_then(Value::as_str)
}

/// `default_variables` as a canvas variables object, each value converted to its `data_type`.
fn typed_variables(list: Option<&Value>, problems: &mut Vec<String>) -> Value {
    let mut out = Map::new();
    let items = match list {
        None | Some(Value::Null) => return Value::Object(out),
        Some(Value::Array(items)) => items,
        Some(_) => {
            problems.push(
                "default_variables must be a list of {name, data_type, default_value}".into(),
            );
            return Value::Object(out);
        }
    };
    for (i, item) in items.iter().enumerate() {
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            problems.push(format!("default_variables[{i}] has no \"name\""));
            continue;
        };
        let data_type = item
            .get("data_type")
            .and_then(Value::as_str)
            .unwrap_or("Any");
        let raw = item.get("default_value").unwrap_or(&Value::Null);
        match typed(raw, data_type) {
            Ok(v) => {
                out.insert(name.to_string(), v);
            }
            Err(why) => problems.push(format!(
                "default_variables[{i}] \"{name}\": default_value {raw} {why}"
            )),
        }
    }
    Value::Object(out)
}

/// `raw` as a value of CasareRPA data type `data_type` (null stays null).
fn typed(raw: &Value, data_type: &str) -> Result<Value, String> {
    let text = raw.as_str().map(str::trim);
    let parsed_json = || text.and_then(|t| serde_json::from_str::<Value>(t).ok());
    let not = |what: &str| format!("is not {what}");
    if raw.is_null() {
        return Ok(Value::Null);
    }
    match data_type.to_ascii_lowercase().as_str() {
        "any" => Ok(raw.clone()),
        "string" => match raw {
            Value::String(_) => Ok(raw.clone()),
            Value::Number(_) | Value::Bool(_) => Ok(Value::from(raw.to_string())),
            _ => Err(not("a String")),
        },
        "integer" => match (raw.as_i64(), text.and_then(|t| t.parse::<i64>().ok())) {
            (Some(n), _) | (None, Some(n)) => Ok(Value::from(n)),
            _ => Err(not("an Integer")),
        },
        "float" => match (raw.as_f64(), text.and_then(|t| t.parse::<f64>().ok())) {
            (Some(f), _) | (None, Some(f)) if f.is_finite() => Ok(json!(f)),
            _ => Err(not("a Float")),
        },
        "boolean" => match (raw, text.map(str::to_ascii_lowercase).as_deref()) {
            (Value::Bool(_), _) => Ok(raw.clone()),
            (_, Some("true")) => Ok(Value::Bool(true)),
            (_, Some("false")) => Ok(Value::Bool(false)),
            _ => Err(not("a Boolean (true or false)")),
        },
        "list" => match (raw, parsed_json()) {
            (Value::Array(_), _) => Ok(raw.clone()),
            (_, Some(v @ Value::Array(_))) => Ok(v),
            _ => Err(not("a List")),
        },
        "dict" => match (raw, parsed_json()) {
            (Value::Object(_), _) => Ok(raw.clone()),
            (_, Some(v @ Value::Object(_))) => Ok(v),
            _ => Err(not("a Dict")),
        },
        "datatable" => match (raw, parsed_json()) {
            (Value::Array(_) | Value::Object(_), _) => Ok(raw.clone()),
            (_, Some(v @ (Value::Array(_) | Value::Object(_)))) => Ok(v),
            _ => Err(not("a DataTable (a list of rows or a dict of columns)")),
        },
        _ => Err(format!(
            "has an unknown data_type \"{data_type}\" (allowed: String, Integer, Float, Boolean, \
             List, Dict, DataTable, Any)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::load_json;
    use crate::engine::value::Value as V;

    fn project(nodes: Value, connections: Value, variables: Value) -> Value {
        json!({"$schema_version": "2.0.0", "id": "tmpl_t", "name": "T",
               "default_settings": {"timeout_seconds": 30, "retry_count": 3},
               "default_variables": variables,
               "base_workflow": {"nodes": nodes, "connections": connections}})
    }

    #[test]
    fn canvas_documents_are_not_projects() {
        assert!(to_canvas(&json!({"nodes": {}, "connections": []})).is_none());
        assert!(to_canvas(&json!({"base_workflow": "x"})).is_none());
    }

    #[test]
    fn template_exec_ports_map_to_exec_ports_but_real_ports_stay() {
        let nodes = json!([
            {"node_id": "s", "node_type": "StartNode", "config": {}},
            {"node_id": "f", "node_type": "ForLoopStartNode", "config": {"items": [1]}},
            {"node_id": "r", "node_type": "RerouteNode", "config": {}},
            {"node_id": "e", "node_type": "ForLoopEndNode", "config": {}},
        ]);
        let edges = json!([
            {"from_node": "s", "from_port": "out", "to_node": "f", "to_port": "in"},
            {"from_node": "f", "from_port": "loop", "to_node": "e", "to_port": "in"},
            {"from_node": "f", "from_port": "current_item", "to_node": "r", "to_port": "in"},
        ]);
        let canvas = to_canvas(&project(nodes, edges, json!([])))
            .unwrap()
            .unwrap();
        let ports: Vec<(&str, &str)> = canvas["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["from_port"].as_str().unwrap(),
                    c["to_port"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            [
                ("exec_out", "exec_in"),
                ("body", "exec_in"),
                ("current_item", "in")
            ]
        );
        assert_eq!(canvas["metadata"]["name"], "T");
        assert_eq!(canvas["settings"]["retry_count"], 3);
        assert!(load_json(&canvas).is_ok());
    }

    #[test]
    fn default_variables_are_typed_by_data_type() {
        let vars = json!([
            {"name": "s", "data_type": "String", "default_value": "a"},
            {"name": "i", "data_type": "Integer", "default_value": "10"},
            {"name": "f", "data_type": "Float", "default_value": 2},
            {"name": "b", "data_type": "Boolean", "default_value": "True"},
            {"name": "l", "data_type": "List", "default_value": "[1, 2]"},
            {"name": "d", "data_type": "Dict", "default_value": {"k": 1}},
            {"name": "n", "data_type": "Integer", "default_value": null},
            {"name": "a", "default_value": [true]},
        ]);
        let wf = load_json(&project(json!([]), json!([]), vars)).unwrap();
        let got: Vec<(String, String)> = wf
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.py_repr()))
            .collect();
        let want = [
            ("s", "'a'"),
            ("i", "10"),
            ("f", "2.0"),
            ("b", "True"),
            ("l", "[1, 2]"),
            ("d", "{'k': 1}"),
            ("n", "None"),
            ("a", "[True]"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert!(matches!(wf.variables["f"], V::Float(_)));
    }

    #[test]
    fn variables_that_do_not_fit_their_type_are_all_named() {
        let vars = json!([
            {"name": "i", "data_type": "Integer", "default_value": "ten"},
            {"data_type": "String", "default_value": "x"},
            {"name": "b", "data_type": "Boolean", "default_value": 3},
            {"name": "q", "data_type": "Quantity", "default_value": 3},
        ]);
        let err = load_json(&project(json!([]), json!([]), vars)).unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "default_variables[0] \"i\": default_value \"ten\" is not an Integer",
                "default_variables[1] has no \"name\"",
                "default_variables[2] \"b\": default_value 3 is not a Boolean (true or false)",
                "default_variables[3] \"q\": default_value 3 has an unknown data_type \"Quantity\" \
                 (allowed: String, Integer, Float, Boolean, List, Dict, DataTable, Any)",
            ]
        );
    }
}

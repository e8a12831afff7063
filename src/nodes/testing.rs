//! Test helpers for node families: build small workflows in code and run them.

use crate::engine::node::NodeLog;
use crate::engine::runner::{self, NodeEvent, Observer, RunOptions, RunOutcome};
use crate::engine::{load_str, CancelToken, Value};

/// Collects log lines.
#[derive(Default)]
pub struct Recorder {
    /// `[node_id] message` lines, as LogNode emits them.
    pub logs: Vec<String>,
    /// Node ids in execution order.
    pub started: Vec<String>,
}

impl Observer for Recorder {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        self.started.push(ev.node_id.to_string());
    }
    fn node_log(&mut self, _ev: &NodeEvent<'_>, log: &NodeLog) {
        self.logs.push(log.message.clone());
    }
}

/// The result of a test run.
pub struct Ran {
    /// The outcome.
    pub outcome: RunOutcome,
    /// Log lines.
    pub logs: Vec<String>,
    /// Node ids in execution order.
    pub started: Vec<String>,
}

impl Ran {
    /// Output `port` of node `id` (Null when absent).
    pub fn out(&self, id: &str, port: &str) -> Value {
        self.outcome
            .node_outputs
            .get(id)
            .and_then(|o| o.as_dict())
            .and_then(|d| d.get(port))
            .cloned()
            .unwrap_or(Value::Null)
    }
    /// Variable `name` (Null when absent).
    pub fn var(&self, name: &str) -> Value {
        self.outcome
            .variables
            .get(name)
            .cloned()
            .unwrap_or(Value::Null)
    }
    /// The error text, or "" on success.
    pub fn error(&self) -> String {
        self.outcome.error_text().unwrap_or_default()
    }
}

/// Parse JSON test data into a value.
pub fn v(json: &str) -> Value {
    Value::parse_json(json).unwrap_or_else(|e| panic!("bad test JSON {json}: {e}"))
}

/// Run one node with `config` and no variables.
pub fn one(node_type: &str, config: serde_json::Value) -> Ran {
    run_node(node_type, config, serde_json::json!({}))
}

/// Assert that the run succeeded (the error text otherwise).
pub fn ok(ran: &Ran) {
    assert!(ran.outcome.success(), "{}", ran.error());
}

/// Build a workflow JSON whose nodes run in a linear exec chain, in the given order.
/// Each node is `(id, type, config JSON)`.
pub fn chain(nodes: &[(&str, &str, serde_json::Value)]) -> String {
    let mut map = serde_json::Map::new();
    for (id, ty, config) in nodes {
        map.insert(
            (*id).to_string(),
            serde_json::json!({"node_id": id, "node_type": ty, "config": config}),
        );
    }
    let conns: Vec<serde_json::Value> = nodes
        .windows(2)
        .map(|w| {
            serde_json::json!({"source_node": w[0].0, "source_port": "exec_out",
                               "target_node": w[1].0, "target_port": "exec_in"})
        })
        .collect();
    serde_json::json!({"metadata": {"name": "test"}, "nodes": map, "connections": conns, "variables": {}})
        .to_string()
}

/// Load and run workflow JSON (panics on load errors: use `load_str` directly to test those).
pub fn run_json(json: &str) -> Ran {
    let wf = load_str(json).unwrap_or_else(|e| panic!("workflow did not load: {e}"));
    let mut rec = Recorder::default();
    let opts = RunOptions {
        seed: Some(7),
        ..RunOptions::default()
    };
    let outcome = runner::run(
        &wf,
        Default::default(),
        &opts,
        &CancelToken::new(),
        &mut rec,
    );
    Ran {
        outcome,
        logs: rec.logs,
        started: rec.started,
    }
}

/// Run a linear chain of nodes.
pub fn run_chain(nodes: &[(&str, &str, serde_json::Value)]) -> Ran {
    run_json(&chain(nodes))
}

/// Run one node with `config`, after setting the given variables (a JSON object).
pub fn run_node(node_type: &str, config: serde_json::Value, vars: serde_json::Value) -> Ran {
    let mut nodes: Vec<(String, &str, serde_json::Value)> = Vec::new();
    if let Some(obj) = vars.as_object() {
        for (i, (name, value)) in obj.iter().enumerate() {
            nodes.push((
                format!("setvar_{i}"),
                "SetVariableNode",
                serde_json::json!({"variable_name": name, "value": value, "variable_type": "Any"}),
            ));
        }
    }
    nodes.push(("n".to_string(), node_type, config));
    let refs: Vec<(&str, &str, serde_json::Value)> = nodes
        .iter()
        .map(|(id, t, c)| (id.as_str(), *t, c.clone()))
        .collect();
    run_chain(&refs)
}

/// Build a workflow JSON from nodes `(id, type, config)` and edges
/// `(source, source_port, target, target_port)`.
pub fn graph(
    nodes: &[(&str, &str, serde_json::Value)],
    edges: &[(&str, &str, &str, &str)],
) -> String {
    let mut map = serde_json::Map::new();
    for (id, ty, config) in nodes {
        map.insert(
            (*id).to_string(),
            serde_json::json!({"node_id": id, "node_type": ty, "config": config}),
        );
    }
    let conns: Vec<serde_json::Value> = edges
        .iter()
        .map(|(s, sp, t, tp)| {
            serde_json::json!({"source_node": s, "source_port": sp, "target_node": t, "target_port": tp})
        })
        .collect();
    serde_json::json!({"metadata": {"name": "test"}, "nodes": map, "connections": conns})
        .to_string()
}

/// Shorthand for an exec edge `a.port -> b.exec_in`.
pub fn ex<'a>(a: &'a str, port: &'a str, b: &'a str) -> (&'a str, &'a str, &'a str, &'a str) {
    (a, port, b, "exec_in")
}

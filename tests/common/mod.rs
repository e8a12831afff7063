//! Shared helpers for integration tests that run workflows in-process: an observer that records
//! LogNode lines, and accessors for node outputs.

#![allow(dead_code)]

use casare_robot::engine::node::NodeLog;
use casare_robot::engine::runner::{NodeEvent, Observer, RunOutcome};
use casare_robot::engine::Value;

/// Records LogNode lines.
#[derive(Default)]
pub struct Logs(pub Vec<String>);

impl Observer for Logs {
    fn node_log(&mut self, _ev: &NodeEvent<'_>, log: &NodeLog) {
        self.0.push(log.message.clone());
    }
}

/// A finished run and its log lines.
pub struct Ran {
    /// The outcome.
    pub outcome: RunOutcome,
    /// LogNode lines.
    pub logs: Vec<String>,
}

impl Ran {
    /// Output `port` of node `node` (`Null` when absent).
    pub fn out(&self, node: &str, port: &str) -> Value {
        self.outcome
            .node_outputs
            .get(node)
            .and_then(|o| o.as_dict())
            .and_then(|d| d.get(port))
            .cloned()
            .unwrap_or_default()
    }

    /// The output as JSON text.
    pub fn json(&self, node: &str, port: &str) -> String {
        serde_json::to_string(&self.out(node, port)).unwrap_or_default()
    }

    /// The output as text; panics when it is not a string.
    pub fn text(&self, node: &str, port: &str) -> String {
        match self.out(node, port) {
            Value::Str(s) => s.to_string(),
            other => panic!("{node}.{port} is not text: {}", other.py_repr()),
        }
    }

    /// An integer output (panics otherwise).
    pub fn int(&self, node: &str, port: &str) -> i64 {
        match self.out(node, port) {
            Value::Int(i) => i,
            other => panic!("{node}.{port} is not an int: {}", other.py_repr()),
        }
    }

    /// A bool output (panics otherwise).
    pub fn flag(&self, node: &str, port: &str) -> bool {
        match self.out(node, port) {
            Value::Bool(b) => b,
            other => panic!("{node}.{port} is not a bool: {}", other.py_repr()),
        }
    }

    /// The error text, or "".
    pub fn error(&self) -> String {
        self.outcome.error_text().unwrap_or_default()
    }
}

//! The example workflows in `examples/` run and give the documented results.

use casare_robot::engine::runner::{self, RunOptions};
use casare_robot::engine::{load_str, CancelToken, Dict, Value};
use std::path::Path;

mod common;

fn run_example(name: &str, inputs: &[(&str, Value)]) -> runner::RunOutcome {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let wf = load_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let inputs: Dict = inputs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let out = runner::run(
        &wf,
        inputs,
        &RunOptions::default(),
        &CancelToken::new(),
        &mut runner::NoObserver,
    );
    assert!(out.success(), "{name}: {:?}", out.error);
    out
}

fn json(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn hello_greets_and_branches_on_name_length() {
    let out = run_example("hello.json", &[]);
    assert_eq!(out.variables["greeting"], Value::str("Hello, World!"));
    assert_eq!(out.variables["verdict"], Value::str("short and sweet"));
    let out = run_example("hello.json", &[("name", Value::str("Alexander"))]);
    assert_eq!(out.variables["verdict"], Value::str("that is a long name"));
}

#[test]
fn order_report_totals_shipped_orders_and_catches_the_bad_one() {
    let out = run_example("order_report.json", &[]);
    assert!(matches!(out.variables["total"], Value::Float(f) if f == 407.75));
    assert_eq!(json(&out.variables["big_orders"]), r#"["A-1001","A-1005"]"#);
    assert_eq!(
        out.variables["report"],
        Value::str(
            r#"{"big_orders": ["A-1001", "A-1005"], "orders_shipped": [120.5, 42.25, -5, 250], "total": 407.75}"#
        )
    );
    // A lower threshold flags more orders; the negative one is still caught, not counted.
    let out = run_example("order_report.json", &[("big_threshold", Value::Int(40))]);
    assert_eq!(
        json(&out.variables["big_orders"]),
        r#"["A-1001","A-1003","A-1005"]"#
    );
}

#[test]
fn invoice_reminders_respect_the_budget_and_regions() {
    let out = run_example("invoice_reminders.json", &[]);
    assert_eq!(
        json(&out.variables["lines"]),
        r#"["Guten Tag Müller GmbH: invoice INV-000417, was due 01 Oct 2026","Bonjour Dupont SA: invoice INV-004821, was due 15 Oct 2026","Hello Acme Ltd: invoice INV-000077, was due 01 Nov 2026"]"#
    );
    assert!(matches!(out.variables["sent"], Value::Float(f) if f == 3.0));
    // The log line counts reminders as a whole number ("3 reminders:", not "3.0 reminders:").
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/invoice_reminders.json");
    let wf = load_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut logs = common::Logs::default();
    let ran = runner::run(
        &wf,
        Dict::new(),
        &RunOptions::default(),
        &CancelToken::new(),
        &mut logs,
    );
    assert!(ran.success(), "{:?}", ran.error);
    assert_eq!(logs.0.len(), 1, "{:?}", logs.0);
    assert!(logs.0[0].contains("3 reminders:\n"), "{:?}", logs.0);
    assert!(!logs.0[0].contains("3.0"), "{:?}", logs.0);
    let out = run_example(
        "invoice_reminders.json",
        &[("max_reminders", Value::Int(10))],
    );
    assert_eq!(out.variables["lines"].as_list().unwrap().len(), 4);
}

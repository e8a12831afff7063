//! Unit tests of `engine::subflow`: loading, data mapping, errors, depth, resume.

use super::*;
use crate::engine::node::{Lit, NodeDef};
use crate::engine::runner::{resume, run, NoObserver};
use crate::engine::CancelToken;
use crate::nodes::testing::{ex, Recorder};
use serde_json::{json, Value as Json};

fn node(ty: &str, config: Json) -> Json {
    json!({"node_type": ty, "config": config})
}

/// A workflow document from `(id, type, config)` nodes and `(src, port, dst, port)` edges.
fn doc(nodes: &[(&str, &str, Json)], edges: &[(&str, &str, &str, &str)]) -> Json {
    let mut map = serde_json::Map::new();
    for (id, ty, config) in nodes {
        let mut n = node(ty, config.clone());
        n["node_id"] = json!(id);
        map.insert((*id).to_string(), n);
    }
    let conns: Vec<Json> = edges
        .iter()
        .map(|(s, sp, t, tp)| {
            json!({"source_node": s, "source_port": sp, "target_node": t, "target_port": tp})
        })
        .collect();
    json!({"metadata": {"name": "t"}, "nodes": map, "connections": conns})
}

fn set(name: &str, value: Json) -> Json {
    json!({"variable_name": name, "value": value})
}

/// A child adding `a` and `b` into `total` (declared output from `sum.result`) and setting
/// the variable `note` (an output read from the variable of that name).
fn adder() -> Json {
    let mut d = doc(
        &[
            (
                "sum",
                "MathOperationNode",
                json!({"operation": "add", "a": "{{a}}", "b": "{{b}}"}),
            ),
            (
                "note",
                "SetVariableNode",
                set("note", json!("added {{a}}+{{b}}")),
            ),
        ],
        &[ex("sum", "exec_out", "note")],
    );
    d["id"] = json!("adder");
    d["inputs"] = json!([
        {"name": "a", "type": "INTEGER", "required": true},
        {"name": "b", "type": "INTEGER", "default_value": 10},
        {"name": "exec_in", "type": "EXECUTION"}
    ]);
    d["outputs"] = json!([
        {"name": "total", "type": "ANY", "source_node_id": "sum", "source_port": "result"},
        {"name": "note", "type": "STRING"}
    ]);
    d
}

fn with_subflows(mut d: Json, subflows: Json) -> Json {
    d["subflows"] = subflows;
    d
}

fn load(d: &Json) -> Result<Workflow, LoadError> {
    load_json_from(d, &Source::for_doc(d, None))
}

fn run_doc(d: &Json) -> (RunOutcome, Recorder) {
    let wf = load(d).unwrap_or_else(|e| panic!("{e}"));
    let mut rec = Recorder::default();
    let out = run(
        &wf,
        Dict::new(),
        &RunOptions::default(),
        &CancelToken::new(),
        &mut rec,
    );
    (out, rec)
}

fn out(o: &RunOutcome, id: &str, port: &str) -> Value {
    o.node_outputs
        .get(id)
        .and_then(|v| v.as_dict())
        .and_then(|d| d.get(port))
        .cloned()
        .unwrap_or(Value::Null)
}

fn errors(e: &LoadError) -> String {
    e.problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn inputs_come_from_ports_config_and_defaults_and_outputs_map_back() {
    let parent = with_subflows(
        doc(
            &[
                ("x", "SetVariableNode", set("x", json!(5))),
                ("call", "SubflowNode", json!({"subflow_path": "adder.json"})),
                (
                    "use",
                    "SetVariableNode",
                    set("result", json!("{{call.total}}")),
                ),
            ],
            &[
                ex("x", "exec_out", "call"),
                ex("call", "exec_out", "use"),
                ("x", "value", "call", "a"),
            ],
        ),
        json!({ "adder.json": adder() }),
    );
    let (o, rec) = run_doc(&parent);
    assert!(o.success(), "{:?}", o.error);
    // a from the data edge, b from the declared default.
    assert_eq!(out(&o, "call", "total"), Value::Float(15.0));
    assert_eq!(out(&o, "call", "note"), Value::str("added 5+10"));
    assert_eq!(o.variables["result"], Value::Float(15.0));
    // The child's variables stay in the child.
    assert!(!o.variables.contains_key("note"));
    assert!(
        rec.started.contains(&"call/sum".to_string()),
        "{:?}",
        rec.started
    );
    let ids: Vec<&str> = o.node_records.iter().map(|r| r.node_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "__auto_start__",
            "x",
            "call/__auto_start__",
            "call/sum",
            "call/note",
            "call",
            "use"
        ]
    );
    let orders: Vec<u64> = o.node_records.iter().map(|r| r.order).collect();
    let mut sorted = orders.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        orders.len(),
        "orders are distinct: {orders:?}"
    );
    assert_eq!(o.node_executions, 7);

    // Config gives b (templated against the parent's variables).
    let parent = with_subflows(
        doc(
            &[
                ("x", "SetVariableNode", set("x", json!(2))),
                (
                    "call",
                    "SubflowNode",
                    json!({"subflow_path": "adder.json", "a": "{{x}}", "b": 3}),
                ),
            ],
            &[ex("x", "exec_out", "call")],
        ),
        json!({ "adder.json": adder() }),
    );
    let (o, _) = run_doc(&parent);
    assert_eq!(out(&o, "call", "total"), Value::Float(5.0));
}

#[test]
fn a_required_input_without_a_value_fails_the_call_naming_it() {
    let parent = with_subflows(
        doc(
            &[("call", "SubflowNode", json!({"subflow_path": "adder.json"}))],
            &[],
        ),
        json!({ "adder.json": adder() }),
    );
    let (o, _) = run_doc(&parent);
    let e = o.error_text().unwrap();
    assert!(
        e.starts_with("call (SubflowNode): required input 'a' of sub-workflow embedded:adder.json has no value"),
        "{e}"
    );
}

#[test]
fn call_subworkflow_reports_success_and_time_and_checks_the_id() {
    let call = |id: &str| {
        with_subflows(
            doc(
                &[(
                    "call",
                    "CallSubworkflowNode",
                    json!({"subworkflow_path": "lib/adder.json", "subworkflow_id": id, "a": 1}),
                )],
                &[],
            ),
            json!({ "lib/adder.json": adder() }),
        )
    };
    let (o, _) = run_doc(&call("adder"));
    assert!(o.success(), "{:?}", o.error);
    assert_eq!(out(&o, "call", "success"), Value::Bool(true));
    assert!(out(&o, "call", "execution_time_ms").as_i64().is_some());
    assert_eq!(out(&o, "call", "total"), Value::Float(11.0));

    let e = load(&call("other")).unwrap_err();
    assert_eq!(
        errors(&e),
        "call (CallSubworkflowNode): subworkflow_id \"other\" does not match the id \"adder\" of sub-workflow embedded:lib/adder.json"
    );
    // By id alone, from the embedded map.
    let by_id = with_subflows(
        doc(
            &[(
                "call",
                "CallSubworkflowNode",
                json!({"subworkflow_id": "adder", "a": 1}),
            )],
            &[],
        ),
        json!({ "adder": adder() }),
    );
    let (o, _) = run_doc(&by_id);
    assert_eq!(out(&o, "call", "total"), Value::Float(11.0));
}

#[test]
fn async_mode_and_templated_paths_are_refused_at_load() {
    let d = with_subflows(
        doc(
            &[
                (
                    "a",
                    "CallSubworkflowNode",
                    json!({"subworkflow_path": "adder.json", "execution_mode": "async"}),
                ),
                ("b", "SubflowNode", json!({"subflow_path": "{{which}}"})),
                ("c", "ExecuteWorkflowNode", json!({})),
            ],
            &[],
        ),
        json!({ "adder.json": adder() }),
    );
    let e = errors(&load(&d).unwrap_err());
    assert!(
        e.contains("a (CallSubworkflowNode): execution_mode \"async\" is not supported"),
        "{e}"
    );
    assert!(
        e.contains("b (SubflowNode): subflow_path \"{{which}}\" is a template"),
        "{e}"
    );
    assert!(
        e.contains("c (ExecuteWorkflowNode): names no workflow: set workflow_path"),
        "{e}"
    );
}

#[test]
fn at_most_once_inside_a_sub_workflow_is_refused_at_load() {
    let child = doc(
        &[(
            "pay",
            "LogNode",
            json!({"message": "x", "_at_most_once": true}),
        )],
        &[],
    );
    let d = with_subflows(
        doc(
            &[("call", "SubflowNode", json!({"subflow_path": "c"}))],
            &[],
        ),
        json!({ "c": child }),
    );
    let e = errors(&load(&d).unwrap_err());
    assert!(
        e.starts_with(
            "call (SubflowNode): in sub-workflow embedded:c: pay (LogNode) sets _at_most_once"
        ),
        "{e}"
    );
}

#[test]
fn a_failure_inside_routes_to_error_or_fails_naming_both_nodes() {
    let failing = doc(
        &[(
            "boom",
            "ThrowErrorNode",
            json!({"error_message": "bad row", "error_type": "ValueError"}),
        )],
        &[],
    );
    let parent = |wired: bool| {
        let mut edges = vec![ex("call", "exec_out", "ok")];
        if wired {
            edges.push(ex("call", "error", "handled"));
        }
        with_subflows(
            doc(
                &[
                    (
                        "call",
                        "CallSubworkflowNode",
                        json!({"subworkflow_path": "f.json"}),
                    ),
                    ("ok", "SetVariableNode", set("ok", json!(true))),
                    ("handled", "SetVariableNode", set("handled", json!(true))),
                ],
                &edges,
            ),
            json!({ "f.json": failing }),
        )
    };
    let (o, _) = run_doc(&parent(true));
    assert!(o.success(), "{:?}", o.error);
    assert_eq!(o.variables.get("handled"), Some(&Value::Bool(true)));
    assert_eq!(o.variables.get("ok"), None);
    assert_eq!(out(&o, "call", "success"), Value::Bool(false));

    let (o, _) = run_doc(&parent(false));
    let err = o.error.unwrap();
    assert_eq!(err.node_id, "call");
    assert_eq!(err.error_type, "ValueError");
    assert_eq!(
        err.to_string(),
        "call (CallSubworkflowNode): sub-workflow embedded:f.json failed: boom (ThrowErrorNode): bad row"
    );
}

/// Embedded workflows `l0` .. `l<n>`, each calling the next; the last sets `deepest`.
fn nested(n: usize) -> Json {
    let mut map = serde_json::Map::new();
    for i in 0..n {
        map.insert(
            format!("l{i}"),
            doc(
                &[(
                    "call",
                    "SubflowNode",
                    json!({"subflow_path": format!("l{}", i + 1)}),
                )],
                &[],
            ),
        );
    }
    map.insert(
        format!("l{n}"),
        doc(
            &[
                ("s", "SetVariableNode", set("deepest", json!(true))),
                (
                    "o",
                    "SubflowOutputNode",
                    json!({"port_name": "deepest", "value": true}),
                ),
            ],
            &[ex("s", "exec_out", "o")],
        ),
    );
    with_subflows(
        doc(
            &[("call", "SubflowNode", json!({"subflow_path": "l0"}))],
            &[],
        ),
        Json::Object(map),
    )
}

#[test]
fn calls_nest_ten_deep_and_no_deeper() {
    let (o, rec) = run_doc(&nested(9));
    assert!(o.success(), "{:?}", o.error);
    let deepest = format!("{}s", "call/".repeat(10));
    assert!(rec.started.contains(&deepest), "{:?}", rec.started);

    let (o, _) = run_doc(&nested(10));
    let e = o.error_text().unwrap();
    assert!(
        e.contains("RecursionError") || e.contains("nest deeper than 10 levels"),
        "{e}"
    );
    assert!(
        e.starts_with("call (SubflowNode): sub-workflow embedded:l0 failed: call (SubflowNode)"),
        "{e}"
    );
    assert!(
        e.ends_with(
            "sub-workflow calls nest deeper than 10 levels (calling embedded:l10 at depth 11)"
        ),
        "{e}"
    );
}

#[test]
fn cycles_are_load_errors_naming_the_chain() {
    let d = with_subflows(
        doc(
            &[("call", "SubflowNode", json!({"subflow_path": "a"}))],
            &[],
        ),
        json!({
            "a": doc(&[("to_b", "SubflowNode", json!({"subflow_path": "b"}))], &[]),
            "b": doc(&[("to_a", "ExecuteWorkflowNode", json!({"workflow_path": "a"}))], &[]),
        }),
    );
    let e = errors(&load(&d).unwrap_err());
    assert!(
        e.contains("to_a (ExecuteWorkflowNode): sub-workflow embedded:a calls itself (cycle: the calling workflow -> embedded:a -> embedded:b -> embedded:a)"),
        "{e}"
    );
}

#[test]
fn each_sub_workflow_loads_once_and_its_hash_reaches_the_caller() {
    let two_calls = |child: Json| {
        with_subflows(
            doc(
                &[
                    (
                        "c1",
                        "SubflowNode",
                        json!({"subflow_path": "adder.json", "a": 1}),
                    ),
                    (
                        "c2",
                        "SubflowNode",
                        json!({"subflow_path": "adder.json", "a": 2}),
                    ),
                ],
                &[ex("c1", "exec_out", "c2")],
            ),
            json!({ "adder.json": child }),
        )
    };
    let wf = load(&two_calls(adder())).unwrap();
    let (c1, c2) = (wf.index["c1"], wf.index["c2"]);
    assert!(Arc::ptr_eq(
        wf.subflows.get(c1).unwrap(),
        wf.subflows.get(c2).unwrap()
    ));
    let mut changed = adder();
    changed["nodes"]["sum"]["config"]["operation"] = json!("multiply");
    // Only the embedded child differs, yet the caller's hash changes with it.
    let other = model::compile_json(&two_calls(changed.clone())).unwrap();
    let same_doc = model::compile_json(&two_calls(adder())).unwrap();
    assert_ne!(other.hash, same_doc.hash);
    assert_ne!(load(&two_calls(changed)).unwrap().hash, wf.hash);
}

#[test]
fn paths_resolve_relative_to_the_calling_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lib")).unwrap();
    // lib/outer.json calls inner.json next to itself (lib/inner.json).
    let inner = doc(
        &[("s", "SetVariableNode", set("v", json!("inner ran")))],
        &[],
    );
    let mut outer = doc(
        &[("call", "SubflowNode", json!({"subflow_path": "inner.json"}))],
        &[],
    );
    outer["outputs"] = json!([{"name": "v", "source_node_id": "call", "source_port": "v"}]);
    std::fs::write(dir.path().join("lib/inner.json"), inner.to_string()).unwrap();
    std::fs::write(dir.path().join("lib/outer.json"), outer.to_string()).unwrap();
    let mut inner_iface = inner.clone();
    inner_iface["outputs"] = json!([{"name": "v"}]);
    std::fs::write(dir.path().join("lib/inner.json"), inner_iface.to_string()).unwrap();
    let main = doc(
        &[(
            "call",
            "SubflowNode",
            json!({"subflow_path": "lib/outer.json"}),
        )],
        &[],
    );
    let main_path = dir.path().join("main.json");
    let wf = load_str_at(&main.to_string(), &main_path).unwrap();
    let o = run(
        &wf,
        Dict::new(),
        &RunOptions::default(),
        &CancelToken::new(),
        &mut NoObserver,
    );
    assert!(o.success(), "{:?}", o.error);
    assert_eq!(out(&o, "call", "v"), Value::str("inner ran"));

    // A literal path that is not there is a load error naming the node and the path.
    let missing = doc(
        &[(
            "call",
            "SubflowNode",
            json!({"subflow_path": "lib/nope.json"}),
        )],
        &[],
    );
    let e = errors(&load_str_at(&missing.to_string(), &main_path).unwrap_err());
    assert!(
        e.starts_with(
            "call (SubflowNode): sub-workflow \"lib/nope.json\" was not found: cannot read "
        ),
        "{e}"
    );
    assert!(e.contains("nope.json"), "{e}");
}

#[test]
fn execute_workflow_shares_variables_both_ways() {
    let child = doc(
        &[(
            "s",
            "SetVariableNode",
            set("greeting", json!("hello {{name}}")),
        )],
        &[],
    );
    let mut parent = doc(
        &[
            (
                "run",
                "ExecuteWorkflowNode",
                json!({"workflow_path": "child.json"}),
            ),
            (
                "after",
                "SetVariableNode",
                set("copy", json!("{{greeting}}")),
            ),
        ],
        &[ex("run", "exec_out", "after")],
    );
    parent["variables"] = json!({"name": "Ada"});
    let (o, _) = run_doc(&with_subflows(parent, json!({ "child.json": child })));
    assert!(o.success(), "{:?}", o.error);
    assert_eq!(o.variables["copy"], Value::str("hello Ada"));
    assert!(!o.variables.contains_key(DEPTH_VAR));
}

#[test]
fn subflow_input_and_output_nodes_mark_the_boundary() {
    let child = doc(
        &[
            ("in", "SubflowInputNode", json!({"port_name": "text"})),
            ("up", "TextReverseNode", json!({})),
            ("out", "SubflowOutputNode", json!({"port_name": "shout"})),
        ],
        &[
            ex("up", "exec_out", "out"),
            ("in", "value", "up", "text"),
            ("up", "result", "out", "value"),
        ],
    );
    let parent = with_subflows(
        doc(
            &[(
                "call",
                "SubflowNode",
                json!({"subflow_path": "c", "text": "hi"}),
            )],
            &[],
        ),
        json!({ "c": child }),
    );
    let wf = load(&parent).unwrap();
    let sub = wf.subflows.get(wf.index["call"]).unwrap();
    assert_eq!(
        sub.inputs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["text"]
    );
    assert_eq!(
        sub.outputs
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["shout"]
    );
    let (o, _) = run_doc(&parent);
    assert!(o.success(), "{:?}", o.error);
    assert_eq!(out(&o, "call", "shout"), Value::str("ih"));
}

fn pass(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    Ok(Flow::Next)
}
static CALL_TRIGGER: NodeDef = NodeDef::plain(
    "WorkflowCallTriggerNode",
    &[crate::engine::node::opt("call_alias", Lit::Str(""))],
    &[],
    pass,
);

#[test]
fn a_child_entered_by_a_workflow_call_trigger_gets_trigger_payload() {
    // The trigger node type belongs to another family; a stand-in with its name is enough
    // to check what the call gives it.
    let mut child = model::compile_json(&doc(
        &[
            ("trig", "LogNode", json!({})),
            (
                "copy",
                "SetVariableNode",
                set("got", json!("{{trigger_payload}}")),
            ),
        ],
        &[ex("trig", "exec_out", "copy")],
    ))
    .unwrap();
    let t = child.index["trig"];
    child.nodes[t].def = &CALL_TRIGGER;
    assert!(starts_with_call_trigger(&child));
    let sub = Arc::new(Subflow {
        key: "embedded:t".into(),
        inputs: vec![InputPort {
            name: "order".into(),
            default: Value::Int(7),
            required: false,
        }],
        outputs: vec![OutputPort {
            name: "got".into(),
            source: None,
        }],
        call_trigger: true,
        wf: child,
    });
    let mut wf = model::compile_json(&doc(
        &[("call", "SubflowNode", json!({"subflow_path": "t"}))],
        &[],
    ))
    .unwrap();
    wf.subflows = Calls(Arc::new(HashMap::from([(wf.index["call"], sub)])));
    let o = run(
        &wf,
        Dict::new(),
        &RunOptions::default(),
        &CancelToken::new(),
        &mut NoObserver,
    );
    assert!(o.success(), "{:?}", o.error);
    let got = out(&o, "call", "got");
    let got = got.as_dict().expect("a dict");
    assert_eq!(got["order"], Value::Int(7));
    assert_eq!(got["params"], Value::dict_from([("order", Value::Int(7))]));
    assert_eq!(got["caller_workflow_id"], Value::str("t"));
    assert_eq!(got["caller_node_id"], Value::str("call"));
    assert_eq!(got["call_id"], Value::str("call#2"));
}

/// Cancels the run when the node `id` completes, keeping the state it was given.
struct CancelAt {
    id: &'static str,
    token: CancelToken,
    saved: Option<String>,
}
impl Observer for CancelAt {
    fn node_completed(&mut self, ev: &NodeEvent<'_>, state: &RunState) {
        if ev.node_id == self.id {
            self.saved = Some(serde_json::to_string(state).unwrap());
            self.token.cancel("test stop");
        }
    }
}

#[test]
fn a_saved_state_inside_the_child_resumes_inside_it() {
    let child = doc(
        &[
            (
                "one",
                "IncrementVariableNode",
                json!({"variable_name": "n", "increment": 1}),
            ),
            (
                "two",
                "IncrementVariableNode",
                json!({"variable_name": "n", "increment": 10}),
            ),
            (
                "three",
                "IncrementVariableNode",
                json!({"variable_name": "n", "increment": 100}),
            ),
        ],
        &[
            ex("one", "exec_out", "two"),
            ("two", "exec_out", "three", "exec_in"),
        ],
    );
    let mut child = child;
    child["variables"] = json!({"n": 0});
    child["outputs"] = json!([{"name": "n"}]);
    let parent = with_subflows(
        doc(
            &[
                ("before", "SetVariableNode", set("before", json!(1))),
                ("call", "SubflowNode", json!({"subflow_path": "c"})),
                (
                    "after",
                    "SetVariableNode",
                    set("after", json!("{{call.n}}")),
                ),
            ],
            &[
                ex("before", "exec_out", "call"),
                ex("call", "exec_out", "after"),
            ],
        ),
        json!({ "c": child }),
    );
    let wf = load(&parent).unwrap();
    let token = CancelToken::new();
    let mut stop = CancelAt {
        id: "call/two",
        token: token.clone(),
        saved: None,
    };
    let half = run(&wf, Dict::new(), &RunOptions::default(), &token, &mut stop);
    assert_eq!(half.status, RunStatus::Cancelled);
    // The state saved after the inner node holds the call in flight and the child's frame.
    let saved: RunState = serde_json::from_str(&stop.saved.unwrap()).unwrap();
    assert_eq!(saved.queue.front(), Some(&wf.index["call"]));
    let frame = saved.call.as_ref().expect("a frame");
    assert_eq!(frame.state.variables["n"], Value::Float(11.0));

    let mut rec = Recorder::default();
    let resumed = resume(
        &wf,
        saved,
        &RunOptions::default(),
        &CancelToken::new(),
        &mut rec,
    );
    assert!(resumed.success(), "{:?}", resumed.error);
    assert_eq!(rec.started, ["call", "call/three", "after"]);
    assert_eq!(resumed.variables["after"], Value::Float(111.0));
}

fn waiting_call(call_type: &str, config: Json, wait: f64) -> Workflow {
    let child = doc(&[("wait", "WaitNode", json!({"duration": wait}))], &[]);
    let mut config = config;
    config["subworkflow_path"] = json!("w");
    config["subflow_path"] = json!("w");
    if call_type == "SubflowNode" {
        config.as_object_mut().unwrap().remove("subworkflow_path");
    } else {
        config.as_object_mut().unwrap().remove("subflow_path");
    }
    load(&with_subflows(
        doc(
            &[
                ("call", call_type, config),
                (
                    "late",
                    "ThrowErrorNode",
                    json!({"error_message": "on error"}),
                ),
            ],
            &[ex("call", "error", "late")],
        ),
        json!({ "w": child }),
    ))
    .unwrap()
}

#[test]
fn the_child_counts_against_the_job_timeout_and_timeout_seconds() {
    let wf = waiting_call("SubflowNode", json!({}), 30.0);
    let opts = RunOptions {
        job_timeout: Duration::from_millis(200),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let o = run(
        &wf,
        Dict::new(),
        &opts,
        &CancelToken::new(),
        &mut NoObserver,
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status, RunStatus::TimedOut, "{:?}", o.error);

    // timeout_seconds stops the child first; the failure is routed to `error` (wired here).
    let wf = waiting_call("CallSubworkflowNode", json!({"timeout_seconds": 1}), 30.0);
    let o = run(
        &wf,
        Dict::new(),
        &RunOptions::default(),
        &CancelToken::new(),
        &mut NoObserver,
    );
    let e = o.error_text().unwrap();
    assert_eq!(e, "late (ThrowErrorNode): on error", "routed to error");
    assert_eq!(out(&o, "call", "success"), Value::Bool(false));
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn cancellation_stops_the_child_and_keeps_its_frame() {
    let wf = waiting_call("SubflowNode", json!({}), 30.0);
    let token = CancelToken::new();
    let remote = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        remote.cancel("operator");
    });
    let started = Instant::now();
    let o = run(
        &wf,
        Dict::new(),
        &RunOptions::default(),
        &token,
        &mut NoObserver,
    );
    canceller.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(o.status, RunStatus::Cancelled);
    let state = o.state.unwrap();
    // The call is first in the queue, once, and its frame holds the wait to run again.
    assert_eq!(
        state
            .queue
            .iter()
            .filter(|&&i| i == wf.index["call"])
            .count(),
        1
    );
    assert_eq!(state.queue.front(), Some(&wf.index["call"]));
    let frame = state.call.as_ref().expect("the frame is kept");
    let sub = wf.subflows.get(wf.index["call"]).unwrap();
    assert_eq!(frame.state.queue.front(), Some(&sub.wf.index["wait"]));
}

#[test]
fn a_resource_opened_in_a_sub_workflow_serves_the_caller_and_closes_with_the_run() {
    // The child opens a database and leaves it open; its declared output is the handle.
    let mut child = doc(
        &[
            ("c", "DatabaseConnectNode", json!({})),
            (
                "mk",
                "ExecuteNonQueryNode",
                json!({"connection": "{{c.connection}}", "query": "CREATE TABLE t(x)"}),
            ),
            (
                "ins",
                "ExecuteNonQueryNode",
                json!({"connection": "{{c.connection}}", "query": "INSERT INTO t VALUES (1), (2)"}),
            ),
        ],
        &[ex("c", "exec_out", "mk"), ex("mk", "exec_out", "ins")],
    );
    child["outputs"] = json!([
        {"name": "conn", "type": "ANY", "source_node_id": "c", "source_port": "connection"}
    ]);
    let parent = with_subflows(
        doc(
            &[
                ("call", "SubflowNode", json!({"subflow_path": "open.json"})),
                (
                    "q",
                    "ExecuteQueryNode",
                    json!({"connection": "{{call.conn}}", "query": "SELECT count(*) AS n FROM t"}),
                ),
            ],
            &[ex("call", "exec_out", "q")],
        ),
        json!({"open.json": child}),
    );
    let wf = load(&parent).unwrap_or_else(|e| panic!("{e}"));
    let mut state = RunState::new(&wf, Dict::new(), &RunOptions::default());
    let resources = state.resources.clone();
    state.rng = fastrand::Rng::with_seed(1);
    let o = crate::engine::runner::resume(
        &wf,
        state,
        &RunOptions::default(),
        &CancelToken::new(),
        &mut NoObserver,
    );
    assert!(o.success(), "{:?}", o.error);
    let rows = out(&o, "q", "results");
    assert_eq!(rows.py_str(), "[{'n': 2}]");
    // The child's end did not close it; the run's end did.
    assert!(resources.open_records().is_empty(), "{:?}", resources);
}

//! Unit tests of the parallel nodes (Fork / Join / ParallelForEach) and `engine::parallel`.

use super::super::testing::*;
use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::runner::{self, NodeEvent, Observer, RunOptions, RunState, RunStatus};
use crate::engine::{load_str, CancelToken, Dict, Value, Workflow};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Arrivals per rendezvous group.
fn arrivals() -> &'static (Mutex<HashMap<String, i64>>, Condvar) {
    static ARRIVALS: OnceLock<(Mutex<HashMap<String, i64>>, Condvar)> = OnceLock::new();
    ARRIVALS.get_or_init(Default::default)
}

/// Waits until `n` nodes of its `group` have arrived, or fails after `within` seconds: the
/// branches that reach it can only all pass when they run at the same time.
fn rendezvous(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let group = ctx.param_str("group");
    let n = ctx.param_i64("n")?;
    let within = Duration::from_secs_f64(ctx.param_f64("within")?);
    let deadline = Instant::now() + within;
    let (lock, cv) = arrivals();
    let mut seen = lock.lock().unwrap();
    *seen.entry(group.clone()).or_default() += 1;
    cv.notify_all();
    loop {
        let here = seen[&group];
        if here >= n {
            return Ok(Flow::Next);
        }
        if Instant::now() >= deadline {
            return Err(NodeError::new(
                "RuntimeError",
                format!("only {here} of {n} arrived"),
            ));
        }
        seen = cv.wait_timeout(seen, Duration::from_millis(20)).unwrap().0;
    }
}
static RENDEZVOUS: NodeDef = NodeDef::plain(
    "RendezvousNode",
    &[
        opt("group", Lit::Str("")),
        opt("n", Lit::Int(2)),
        opt("within", Lit::Float(10.0)),
    ],
    &[],
    rendezvous,
);

fn panics(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    panic!("boom inside a branch")
}
static PANICS: NodeDef = NodeDef::plain("PanicNode", &[], &[], panics);

/// Load `json`, then give the nodes whose id starts with `rv` the rendezvous and those whose
/// id starts with `panic` the panicking implementation.
fn load_with_test_nodes(json: &str) -> Workflow {
    let mut wf = load_str(json).unwrap_or_else(|e| panic!("did not load: {e}"));
    for n in wf.nodes.iter_mut() {
        if n.id.starts_with("rv") {
            n.def = &RENDEZVOUS;
        } else if n.id.starts_with("panic") {
            n.def = &PANICS;
        }
    }
    wf
}

fn run_wf(wf: &Workflow, opts: &RunOptions) -> Ran {
    let mut rec = Recorder::default();
    let outcome = runner::run(wf, Dict::new(), opts, &CancelToken::new(), &mut rec);
    Ran {
        outcome,
        logs: rec.logs,
        started: rec.started,
    }
}

fn set(name: &str, value: serde_json::Value) -> serde_json::Value {
    json!({"variable_name": name, "value": value})
}

/// A Fork `f` whose branches are `branches[i]` = chains of nodes, each ending in Join `j`,
/// followed by `after` (a SetVariable `after` reading the Join's branch_count).
fn fork_join(
    fork_config: serde_json::Value,
    join_config: serde_json::Value,
    branches: &[Vec<(&str, &str, serde_json::Value)>],
) -> String {
    let mut nodes = vec![
        ("f", "ForkNode", fork_config),
        ("j", "JoinNode", join_config),
        (
            "after",
            "SetVariableNode",
            set("after", json!("{{j.branch_count}}")),
        ),
    ];
    let mut edges = vec![ex("j", "exec_out", "after")];
    let ports: Vec<String> = (1..=branches.len())
        .map(|i| format!("branch_{i}"))
        .collect();
    for (b, chain) in branches.iter().enumerate() {
        nodes.extend(chain.iter().cloned());
        edges.push(ex("f", &ports[b], chain[0].0));
        for w in chain.windows(2) {
            edges.push(ex(w[0].0, "exec_out", w[1].0));
        }
        edges.push(ex(chain[chain.len() - 1].0, "exec_out", "j"));
    }
    graph(&nodes, &edges)
}

fn rv(id: &'static str, group: &str, n: i64) -> (&'static str, &'static str, serde_json::Value) {
    (
        id,
        "LogNode",
        json!({"group": group, "n": n, "message": ""}),
    )
}

#[test]
fn branches_run_at_the_same_time_and_the_join_copies_their_variables_back() {
    let doc = fork_join(
        json!({}),
        json!({}),
        &[
            vec![
                ("a1", "SetVariableNode", set("x", json!("one"))),
                ("a2", "SetVariableNode", set("_hidden", json!(1))),
                rv("rv_a", "three", 3),
            ],
            vec![
                ("b1", "SetVariableNode", set("x", json!("two"))),
                rv("rv_b", "three", 3),
            ],
            vec![
                ("c1", "SetVariableNode", set("y", json!(3))),
                rv("rv_c", "three", 3),
            ],
        ],
    );
    let ran = run_wf(&load_with_test_nodes(&doc), &RunOptions::default());
    ok(&ran);
    assert_eq!(ran.var("branch_1_x"), Value::str("one"));
    assert_eq!(ran.var("branch_2_x"), Value::str("two"));
    assert_eq!(ran.var("branch_3_y"), Value::Int(3));
    assert_eq!(ran.var("branch_1__hidden"), Value::Null, "_ names stay out");
    assert_eq!(ran.var("x"), Value::Null, "branches run on snapshots");
    assert_eq!(ran.var("after"), Value::Int(3));
    assert_eq!(ran.out("j", "branch_count"), Value::Int(3));
    let results = ran.out("j", "results");
    let keys: Vec<&str> = results
        .as_dict()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, ["branch_1", "branch_2", "branch_3"]);
    assert_eq!(ran.var("f_branch_results"), results);
    // Every branch node ran once, the Join once.
    for id in ["a1", "a2", "rv_a", "b1", "rv_b", "c1", "rv_c", "j", "after"] {
        assert_eq!(ran.started.iter().filter(|s| *s == id).count(), 1, "{id}");
    }
}

#[test]
fn the_pool_bound_keeps_branches_from_overlapping() {
    // The same rendezvous cannot pass when only one branch may run at a time.
    let doc = fork_join(
        json!({}),
        json!({}),
        &[
            vec![(
                "rv_a",
                "LogNode",
                json!({"group": "bound", "n": 2, "within": 0.2}),
            )],
            vec![(
                "rv_b",
                "LogNode",
                json!({"group": "bound", "n": 2, "within": 0.2}),
            )],
        ],
    );
    let opts = RunOptions {
        max_parallel_branches: 1,
        ..RunOptions::default()
    };
    let ran = run_wf(&load_with_test_nodes(&doc), &opts);
    assert_eq!(
        ran.error(),
        "f (ForkNode): branch_1 failed: rv_a (RendezvousNode): only 1 of 2 arrived"
    );
}

#[test]
fn merge_strategies_pick_the_first_the_last_or_all_branches() {
    let check = |strategy: &str, expected: &[&str]| {
        let branches: Vec<Vec<(&str, &str, serde_json::Value)>> = ["p", "q", "r", "s", "t"]
            .iter()
            .map(|id| vec![(*id, "SetVariableNode", set("v", json!(id)))])
            .collect();
        let doc = fork_join(json!({}), json!({"merge_strategy": strategy}), &branches);
        let ran = run_json(&doc);
        ok(&ran);
        let results = ran.out("j", "results");
        let d = results.as_dict().unwrap();
        let keys: Vec<&str> = d.keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, expected, "{strategy}");
        assert_eq!(ran.out("j", "branch_count"), Value::Int(5));
        // Copy-back covers every branch whatever the strategy.
        assert_eq!(ran.var("branch_5_v"), Value::str("t"));
    };
    check("first", &["branch_1"]);
    check("last", &["branch_5"]);
    check(
        "all",
        &["branch_1", "branch_2", "branch_3", "branch_4", "branch_5"],
    );
    let doc = fork_join(
        json!({}),
        json!({"merge_strategy": "middle"}),
        &[vec![("p", "SetVariableNode", set("v", json!(1)))]],
    );
    assert_eq!(
        run_json(&doc).error(),
        "j (JoinNode): merge_strategy must be one of all, first, last; got \"middle\""
    );
}

fn failing_and_slow(fail_fast: bool, slow: f64) -> String {
    fork_join(
        json!({"fail_fast": fail_fast}),
        json!({}),
        &[
            vec![(
                "boom",
                "ThrowErrorNode",
                json!({"error_message": "broken", "error_type": "ValueError"}),
            )],
            vec![
                ("w", "WaitNode", json!({"duration": slow})),
                ("log", "LogNode", json!({"message": "slow branch done"})),
            ],
        ],
    )
}

#[test]
fn without_fail_fast_the_other_branches_finish_then_the_failure_is_raised() {
    let ran = run_json(&failing_and_slow(false, 0.05));
    assert_eq!(
        ran.error(),
        "f (ForkNode): branch_1 failed: boom (ThrowErrorNode): broken"
    );
    assert_eq!(ran.outcome.error.as_ref().unwrap().error_type, "ValueError");
    assert!(
        ran.logs.iter().any(|l| l.contains("slow branch done")),
        "{:?}",
        ran.logs
    );
    assert!(!ran.started.contains(&"j".to_string()));
}

#[test]
fn with_fail_fast_a_failing_branch_stops_the_others() {
    let ran = run_json(&failing_and_slow(true, 60.0));
    assert_eq!(
        ran.error(),
        "f (ForkNode): branch_1 failed: boom (ThrowErrorNode): broken"
    );
    assert!(
        !ran.logs.iter().any(|l| l.contains("slow branch done")),
        "{:?}",
        ran.logs
    );
}

#[test]
fn a_try_around_the_fork_catches_a_branch_failure() {
    let doc = graph(
        &[
            ("t", "TryNode", json!({})),
            ("f", "ForkNode", json!({})),
            ("boom", "ThrowErrorNode", json!({"error_message": "broken"})),
            ("ok", "SetVariableNode", set("v", json!(1))),
            ("j", "JoinNode", json!({})),
            ("c", "CatchNode", json!({"paired_try_id": "t"})),
            (
                "caught",
                "SetVariableNode",
                set("caught", json!("{{c.error_message}}")),
            ),
        ],
        &[
            ex("t", "try_body", "f"),
            ex("f", "branch_1", "boom"),
            ex("f", "branch_2", "ok"),
            ex("boom", "exec_out", "j"),
            ex("ok", "exec_out", "j"),
            ex("c", "catch_body", "caught"),
        ],
    );
    let ran = run_json(&doc);
    ok(&ran);
    assert_eq!(
        ran.var("caught"),
        Value::str("branch_1 failed: boom (ThrowErrorNode): broken")
    );
}

/// Cancels its token once `n` WaitNodes have started.
struct CancelAfterWaits {
    n: usize,
    seen: usize,
    token: CancelToken,
}
impl Observer for CancelAfterWaits {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        if ev.node_type == "WaitNode" {
            self.seen += 1;
            if self.seen == self.n {
                self.token.cancel("test cancel");
            }
        }
    }
}

fn two_long_waits() -> String {
    fork_join(
        json!({}),
        json!({}),
        &[
            vec![("w1", "WaitNode", json!({"duration": 60}))],
            vec![("w2", "WaitNode", json!({"duration": 60}))],
        ],
    )
}

#[test]
fn cancellation_stops_every_branch_and_keeps_the_fork_for_a_resume() {
    let wf = load_str(&two_long_waits()).unwrap();
    let token = CancelToken::new();
    let mut obs = CancelAfterWaits {
        n: 2,
        seen: 0,
        token: token.clone(),
    };
    let out = runner::run(&wf, Dict::new(), &RunOptions::default(), &token, &mut obs);
    assert_eq!(out.status, RunStatus::Cancelled, "{:?}", out.error);
    assert_eq!(out.error.unwrap().message, "cancelled: test cancel");
    let state = out.state.unwrap();
    assert_eq!(
        state.queue.front(),
        Some(&wf.index["f"]),
        "the Fork runs again"
    );
    assert!(state.parallel[&wf.index["f"]].done.is_empty());
}

/// A Fork whose two branches each loop over short waits for a long time.
fn two_waiting_loops() -> String {
    let mut nodes = vec![("f", "ForkNode", json!({})), ("j", "JoinNode", json!({}))];
    let mut edges = Vec::new();
    for (port, l, w, e) in [
        ("branch_1", "l1", "w1", "e1"),
        ("branch_2", "l2", "w2", "e2"),
    ] {
        nodes.push((
            l,
            "WhileLoopStartNode",
            json!({"condition": true, "max_iterations": 100000}),
        ));
        nodes.push((w, "WaitNode", json!({"duration": 0.05})));
        nodes.push((e, "WhileLoopEndNode", json!({})));
        edges.extend([
            ex("f", port, l),
            ex(l, "body", w),
            ex(w, "exec_out", e),
            ex(l, "completed", "j"),
        ]);
    }
    graph(&nodes, &edges)
}

#[test]
fn the_job_timeout_and_node_timeouts_reach_into_branches() {
    let wf = load_str(&two_waiting_loops()).unwrap();
    let opts = RunOptions {
        job_timeout: Duration::from_millis(300),
        ..RunOptions::default()
    };
    let ran = run_wf(&wf, &opts);
    assert_eq!(ran.outcome.status, RunStatus::TimedOut, "{}", ran.error());
    let err = ran.outcome.error.unwrap();
    assert_eq!(err.error_type, "TimeoutError");
    assert_eq!(err.message, "job timed out after 0.3 s");

    let wf = load_str(&two_long_waits()).unwrap();
    let opts = RunOptions {
        node_timeout: Duration::from_millis(200),
        ..RunOptions::default()
    };
    let ran = run_wf(&wf, &opts);
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert!(
        ran.error()
            .starts_with("f (ForkNode): branch_1 failed: w1 (WaitNode): timed out"),
        "{}",
        ran.error()
    );
}

#[test]
fn a_panic_in_a_branch_fails_the_fork_cleanly() {
    let doc = fork_join(
        json!({}),
        json!({}),
        &[
            vec![("panic_here", "LogNode", json!({"message": ""}))],
            vec![("fine", "SetVariableNode", set("v", json!(1)))],
        ],
    );
    let ran = run_wf(&load_with_test_nodes(&doc), &RunOptions::default());
    assert_eq!(
        ran.error(),
        "f (ForkNode): branch_1 failed: panic_here (PanicNode): node panicked: boom inside a branch"
    );
}

/// Cancels once a checkpointable state shows `n` finished branches of node `fork`.
struct CancelAfterFinished {
    fork: usize,
    n: usize,
    token: CancelToken,
}
impl Observer for CancelAfterFinished {
    fn node_completed(&mut self, _ev: &NodeEvent<'_>, state: &RunState) {
        if state
            .parallel
            .get(&self.fork)
            .is_some_and(|p| p.done.len() == self.n)
        {
            self.token.cancel("test cut");
        }
    }
}

#[test]
fn a_resume_runs_only_the_unfinished_branches() {
    let doc = fork_join(
        json!({}),
        json!({}),
        &[
            vec![
                ("quick", "SetVariableNode", set("q", json!("quick done"))),
                (
                    "quick2",
                    "IncrementVariableNode",
                    json!({"variable_name": "n"}),
                ),
            ],
            vec![
                ("slow", "WaitNode", json!({"duration": "{{dur}}"})),
                ("slow2", "SetVariableNode", set("s", json!("slow done"))),
            ],
        ],
    );
    let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let mut doc = doc;
    doc["variables"] = json!({"dur": 60, "n": 0});
    let wf = load_str(&doc.to_string()).unwrap();
    let token = CancelToken::new();
    let mut obs = CancelAfterFinished {
        fork: wf.index["f"],
        n: 1,
        token: token.clone(),
    };
    let out = runner::run(&wf, Dict::new(), &RunOptions::default(), &token, &mut obs);
    assert_eq!(out.status, RunStatus::Cancelled);
    // Through JSON, as a checkpoint stores it.
    let saved = serde_json::to_string(&out.state.unwrap()).unwrap();
    let mut restored: RunState = serde_json::from_str(&saved).unwrap();
    restored.variables.insert("dur".into(), Value::Int(0));
    let mut rec = Recorder::default();
    let resumed = runner::resume(
        &wf,
        restored,
        &RunOptions::default(),
        &CancelToken::new(),
        &mut rec,
    );
    assert!(resumed.success(), "{:?}", resumed.error);
    assert!(
        !rec.started.contains(&"quick".to_string()),
        "{:?}",
        rec.started
    );
    assert!(rec.started.contains(&"slow".to_string()));
    assert_eq!(resumed.variables["branch_1_q"], Value::str("quick done"));
    assert_eq!(resumed.variables["branch_1_n"], Value::Float(1.0));
    assert_eq!(resumed.variables["branch_2_s"], Value::str("slow done"));
}

#[test]
fn fork_and_join_pairing_problems_are_load_errors() {
    let check = |doc: String, expected: &str| {
        let err = load_str(&doc).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    };
    check(
        graph(
            &[
                ("f", "ForkNode", json!({})),
                ("a", "SetVariableNode", set("a", json!(1))),
            ],
            &[ex("f", "branch_1", "a")],
        ),
        "f (ForkNode): has no JoinNode: connect its branches to a JoinNode or set paired_join_id",
    );
    check(
        graph(
            &[
                ("f", "ForkNode", json!({"paired_join_id": "a"})),
                ("a", "SetVariableNode", set("a", json!(1))),
            ],
            &[ex("f", "branch_1", "a")],
        ),
        "f (ForkNode): paired_join_id \"a\" is a SetVariableNode, not a JoinNode",
    );
    check(
        graph(
            &[
                ("j", "JoinNode", json!({})),
                ("a", "SetVariableNode", set("a", json!(1))),
            ],
            &[ex("a", "exec_out", "j")],
        ),
        "j (JoinNode): no ForkNode pairs with this JoinNode",
    );
    check(
        graph(
            &[("f", "ForkNode", json!({})), ("j", "JoinNode", json!({}))],
            &[],
        ),
        "f (ForkNode): has no connected branch",
    );
}

#[test]
fn at_most_once_nodes_are_refused_inside_branches() {
    let doc = foreach(
        json!({"items": [1]}),
        &[(
            "w",
            "WaitNode",
            json!({"duration": 0, "_at_most_once": true}),
        )],
    );
    let err = load_str(&doc).unwrap_err().to_string();
    assert!(
        err.contains("w (WaitNode): _at_most_once is not supported inside a parallel branch (pfe (ParallelForEachNode))"),
        "{err}"
    );
    // After the Join it is fine.
    let mut doc: serde_json::Value = serde_json::from_str(&fork_join(
        json!({}),
        json!({}),
        &[vec![("a", "SetVariableNode", set("a", json!(1)))]],
    ))
    .unwrap();
    doc["nodes"]["after"]["config"]["_at_most_once"] = json!(true);
    assert!(load_str(&doc.to_string()).is_ok());
}

#[test]
fn nested_forks_pair_with_their_own_joins() {
    let doc = graph(
        &[
            ("outer", "ForkNode", json!({})),
            ("inner", "ForkNode", json!({})),
            ("i1", "SetVariableNode", set("i", json!(1))),
            ("i2", "SetVariableNode", set("i", json!(2))),
            ("ij", "JoinNode", json!({})),
            ("o2", "SetVariableNode", set("o", json!(2))),
            ("oj", "JoinNode", json!({})),
        ],
        &[
            ex("outer", "branch_1", "inner"),
            ex("outer", "branch_2", "o2"),
            ex("inner", "branch_1", "i1"),
            ex("inner", "branch_2", "i2"),
            ex("i1", "exec_out", "ij"),
            ex("i2", "exec_out", "ij"),
            ex("ij", "exec_out", "oj"),
            ex("o2", "exec_out", "oj"),
        ],
    );
    let ran = run_json(&doc);
    ok(&ran);
    // The inner Join ran inside outer branch_1, so its copies are branch_1's variables.
    assert_eq!(ran.var("branch_1_branch_2_i"), Value::Int(2));
    assert_eq!(ran.var("branch_2_o"), Value::Int(2));
}

fn foreach(config: serde_json::Value, body: &[(&str, &str, serde_json::Value)]) -> String {
    let mut nodes = vec![
        ("pfe", "ParallelForEachNode", config),
        (
            "done",
            "SetVariableNode",
            set("all", json!("{{pfe.results}}")),
        ),
    ];
    nodes.extend(body.iter().cloned());
    let mut edges = vec![ex("pfe", "completed", "done"), ex("pfe", "body", body[0].0)];
    for w in body.windows(2) {
        edges.push(ex(w[0].0, "exec_out", w[1].0));
    }
    graph(&nodes, &edges)
}

#[test]
fn parallel_for_each_runs_the_body_per_item_in_batches() {
    let doc = foreach(
        json!({"items": [10, 20, 30, 40, 50, 60], "batch_size": 3}),
        &[
            rv("rv_items", "items", 3),
            (
                "tag",
                "SetVariableNode",
                set("tag", json!("{{item}}@{{index}}/{{pfe.current_index}}")),
            ),
        ],
    );
    let ran = run_wf(&load_with_test_nodes(&doc), &RunOptions::default());
    ok(&ran);
    let expected: Vec<Value> = (0..6)
        .map(|i| {
            let tag = format!("{}@{i}/{i}", (i + 1) * 10);
            Value::dict([("tag".to_string(), Value::str(tag))].into_iter().collect())
        })
        .collect();
    assert_eq!(ran.out("pfe", "results"), Value::list(expected.clone()));
    assert_eq!(ran.var("all"), Value::list(expected));
    assert_eq!(ran.var("tag"), Value::Null, "items run on snapshots");
    assert_eq!(ran.started.iter().filter(|s| *s == "tag").count(), 6);
}

#[test]
fn a_batch_of_one_runs_items_one_at_a_time() {
    let doc = foreach(
        json!({"items": [1, 2], "batch_size": 1}),
        &[(
            "rv_one",
            "LogNode",
            json!({"group": "one", "n": 2, "within": 0.2}),
        )],
    );
    let ran = run_wf(&load_with_test_nodes(&doc), &RunOptions::default());
    assert_eq!(
        ran.error(),
        "pfe (ParallelForEachNode): item 0 failed: rv_one (RendezvousNode): only 1 of 2 arrived"
    );
}

#[test]
fn parallel_for_each_failures_and_item_timeouts() {
    let doc = foreach(
        json!({"items": ["a", "b", "c"]}),
        &[(
            "boom",
            "ThrowErrorNode",
            json!({"error_message": "bad {{item}}"}),
        )],
    );
    assert_eq!(
        run_json(&doc).error(),
        "pfe (ParallelForEachNode): item 0 failed: boom (ThrowErrorNode): bad a (3 of 3 items failed)"
    );
    let doc = foreach(
        json!({"items": [1], "timeout_per_item": 0.2}),
        &[("w", "WaitNode", json!({"duration": 60}))],
    );
    let ran = run_json(&doc);
    assert_eq!(
        ran.error(),
        "pfe (ParallelForEachNode): item 0 failed: w (WaitNode): timed out after 0.2 s (timeout_per_item)"
    );
    assert_eq!(ran.outcome.error.unwrap().error_type, "TimeoutError");
    let doc = foreach(
        json!({"items": [1], "batch_size": 0}),
        &[("w", "WaitNode", json!({"duration": 0}))],
    );
    assert_eq!(
        run_json(&doc).error(),
        "pfe (ParallelForEachNode): batch_size must be between 1 and 50, got 0"
    );
}

#[test]
fn parallel_for_each_over_no_items_completes_with_no_results() {
    let doc = foreach(
        json!({"items": []}),
        &[("w", "WaitNode", json!({"duration": 60}))],
    );
    let ran = run_json(&doc);
    ok(&ran);
    assert_eq!(ran.out("pfe", "results"), Value::list(Vec::new()));
}

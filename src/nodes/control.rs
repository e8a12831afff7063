//! Control flow: If, Switch, Merge, For and While loops, Break, Continue, Try / Catch / Finally,
//! ThrowError and Assert.
//!
//! Loops pair by `paired_start_id` (Break/Continue by `paired_loop_start_id`, Catch/Finally by
//! `paired_try_id`), or by the pairing the loader inferred from the graph. Loop states live in the
//! run state (not in variables), so checkpoints capture them exactly.
//!
//! Try semantics (documented in ARCHITECTURE.md): Try opens a frame and routes `try_body` (or
//! `exec_out` when `try_body` is not wired). A failure inside the frame is routed to the paired
//! Catch, which exposes `error_message` / `error_type` and routes `catch_body` (or `exec_out`). A
//! Catch reached without an error just continues. The Finally always runs its `finally_body` (or
//! `exec_out`) and closes the frame; if the error was not caught, the run fails with it after the
//! finally path. A Try without Catch or Finally does not swallow errors.

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind};
use crate::engine::runner::{LoopItems, LoopState, TryFrame, TryStage};
use crate::engine::value::Value;
use std::borrow::Cow;

const fn control(
    node_type: &'static str,
    params: &'static [crate::engine::node::ParamDef],
    outputs: &'static [&'static str],
    routes: &'static [&'static str],
    run: crate::engine::node::RunFn,
) -> NodeDef {
    NodeDef {
        node_type,
        params,
        outputs,
        routes,
        kind: NodeKind::ControlFlow,
        dynamic_ports: false,
        run,
    }
}

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    control(
        "IfNode",
        &[opt("condition", Lit::Null), opt("expression", Lit::Null)],
        &["result"],
        &["true", "false"],
        if_node,
    ),
    control(
        "SwitchNode",
        &[
            opt("value", Lit::Null),
            opt("expression", Lit::Null),
            opt("cases", Lit::Null),
        ],
        &["matched_case"],
        &["case_*", "default", "exec_out"],
        switch_node,
    ),
    NodeDef::plain("MergeNode", &[], &[], merge_node),
    control(
        "ForLoopStartNode",
        &[
            opt("items", Lit::Null),
            opt("list_var", Lit::Null),
            opt("item_var", Lit::Str("item")),
            opt("mode", Lit::Str("items")),
            opt("start", Lit::Int(0)),
            opt("end", Lit::Int(10)),
            opt("step", Lit::Int(1)),
        ],
        &["current_item", "current_index", "current_key"],
        &["body", "completed"],
        for_start,
    ),
    control(
        "ForLoopEndNode",
        &[opt("paired_start_id", Lit::Null)],
        &[],
        &["exec_out"],
        loop_end,
    ),
    control(
        "WhileLoopStartNode",
        &[
            opt("condition", Lit::Null),
            opt("expression", Lit::Null),
            opt("max_iterations", Lit::Int(1000)),
        ],
        &["current_iteration"],
        &["body", "completed"],
        while_start,
    ),
    control(
        "WhileLoopEndNode",
        &[opt("paired_start_id", Lit::Null)],
        &[],
        &["exec_out"],
        loop_end,
    ),
    control(
        "BreakNode",
        &[opt("paired_loop_start_id", Lit::Null)],
        &[],
        &["exec_out"],
        break_node,
    ),
    control(
        "ContinueNode",
        &[opt("paired_loop_start_id", Lit::Null)],
        &[],
        &["exec_out"],
        continue_node,
    ),
    control("TryNode", &[], &[], &["try_body", "exec_out"], try_node),
    control(
        "CatchNode",
        &[
            opt("paired_try_id", Lit::Null),
            opt("error_types", Lit::Str("")),
        ],
        &["error_message", "error_type", "stack_trace"],
        &["catch_body", "exec_out"],
        catch_node,
    ),
    control(
        "FinallyNode",
        &[opt("paired_try_id", Lit::Null)],
        &["had_error"],
        &["finally_body", "exec_out"],
        finally_node,
    ),
    NodeDef::plain(
        "ThrowErrorNode",
        &[
            opt("error_message", Lit::Str("Custom error")),
            opt("error_type", Lit::Str("Exception")),
        ],
        &[],
        throw_error,
    ),
    NodeDef::plain(
        "AssertNode",
        &[
            opt("condition", Lit::Bool(true)),
            opt("message", Lit::Str("Assertion failed")),
        ],
        &["passed"],
        assert_node,
    ),
];

/// Evaluate the first present of `names` as a condition (data edge first, then config).
/// Text from config is evaluated untemplated so `{{refs}}` keep their types.
fn condition(ctx: &NodeCtx<'_>, names: &[&str]) -> Option<bool> {
    for name in names {
        if let Some(v) = ctx.port_value(name) {
            return Some(ctx.condition(v));
        }
    }
    for name in names {
        if let Some(raw) = ctx.raw_config(name) {
            return Some(match raw {
                Value::Str(s) => ctx.eval_condition_text(s).unwrap_or(false),
                other => other.truthy(),
            });
        }
    }
    None
}

fn if_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let result = condition(ctx, &["condition", "expression"]).unwrap_or(false);
    ctx.set_output("result", Value::Bool(result));
    Ok(Flow::port(if result { "true" } else { "false" }))
}

fn switch_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut value = ctx.param("value");
    if value.is_null() {
        if let Some(Value::Str(expr)) = ctx.raw_config("expression").cloned() {
            value = ctx.eval_text(&expr)?;
        }
    }
    let cases: Vec<String> = match ctx.param("cases") {
        Value::List(l) => l.iter().map(Value::py_str).collect(),
        Value::Str(s) if !s.trim().is_empty() => {
            s.split(',').map(|c| c.trim().to_string()).collect()
        }
        _ => Vec::new(),
    };
    let text = value.py_str();
    ctx.set_output("matched_case", Value::Null);
    if value.is_null() {
        return Ok(Flow::port("default"));
    }
    let by_value = format!("case_{text}");
    let position = cases.iter().position(|c| *c == text);
    if cases.is_empty() || position.is_some() {
        ctx.set_output("matched_case", Value::str(&text));
        if ctx.has_route(&by_value) {
            return Ok(Flow::Port(Cow::Owned(by_value)));
        }
        // Compatibility: canvas files name case ports by position (`case_0`, `case_1`, ...).
        if let Some(i) = position {
            let by_index = format!("case_{i}");
            if ctx.has_route(&by_index) {
                return Ok(Flow::Port(Cow::Owned(by_index)));
            }
        }
        if position.is_some() {
            return Ok(Flow::Port(Cow::Owned(by_value)));
        }
    }
    Ok(Flow::port("default"))
}

fn merge_node(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    Ok(Flow::Next)
}

fn loop_items(ctx: &NodeCtx<'_>) -> Result<LoopItems, NodeError> {
    let range = |ctx: &NodeCtx<'_>| -> Result<LoopItems, NodeError> {
        let start = ctx.param_i64("start")?;
        let end = ctx.param_i64("end")?;
        let step = ctx.param_i64("step")?;
        if step == 0 {
            return Err(NodeError::value("range step must not be zero"));
        }
        Ok(LoopItems::Range { start, end, step })
    };
    if ctx.param_str("mode").trim().eq_ignore_ascii_case("range") {
        return range(ctx);
    }
    let mut items = ctx.param("items");
    if items.is_null() {
        let var = ctx.param_str("list_var");
        let var = var
            .trim()
            .trim_start_matches("{{")
            .trim_end_matches("}}")
            .trim();
        if !var.is_empty() {
            items = ctx.var(var).cloned().unwrap_or(Value::Null);
        }
    }
    Ok(match items {
        Value::Null => return range(ctx),
        l @ Value::List(_) => LoopItems::List {
            items: l,
            keys: None,
        },
        Value::Dict(d) => LoopItems::List {
            items: Value::list(d.values().cloned().collect()),
            keys: Some(Value::list(d.keys().map(Value::str).collect())),
        },
        Value::Str(s) => match Value::parse_json(s.trim()) {
            Ok(l @ Value::List(_)) if s.trim_start().starts_with('[') => LoopItems::List {
                items: l,
                keys: None,
            },
            _ => LoopItems::List {
                items: Value::list(s.chars().map(|c| Value::str(c.to_string())).collect()),
                keys: None,
            },
        },
        Value::Int(n) => LoopItems::Range {
            start: 0,
            end: n,
            step: 1,
        },
        other => {
            return Err(NodeError::type_error(format!(
                "cannot loop over {} {}",
                other.type_name(),
                other.py_repr()
            )))
        }
    })
}

fn for_start(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let me = ctx.node_index();
    if ctx.loop_state(me).is_none() {
        let items = loop_items(ctx)?;
        ctx.set_loop_state(
            me,
            Some(LoopState::For {
                items,
                index: 0,
                break_requested: false,
            }),
        );
    }
    let (item, key, index) = match ctx.loop_state(me) {
        Some(LoopState::For {
            items,
            index,
            break_requested,
        }) => {
            if *break_requested || *index >= items.len() {
                None
            } else {
                let (item, key) = items.get(*index);
                let i = *index;
                *index += 1;
                Some((item, key, i))
            }
        }
        _ => None,
    }
    .map_or((None, None, 0), |(a, b, c)| (Some(a), b, c));
    let Some(item) = item else {
        ctx.set_loop_state(me, None);
        return Ok(Flow::port("completed"));
    };
    let item_var = ctx.param_str("item_var");
    let item_var = if item_var.trim().is_empty() {
        "item".to_string()
    } else {
        item_var
    };
    let index = Value::Int(index as i64);
    ctx.set_output("current_item", item.clone());
    ctx.set_output("current_index", index.clone());
    ctx.set_var(&item_var, item);
    ctx.set_var("item_index", index);
    if let Some(k) = key {
        ctx.set_output("current_key", k.clone());
        ctx.set_var("item_key", k);
    }
    Ok(Flow::port("body"))
}

fn while_start(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let me = ctx.node_index();
    let max = ctx.param_i64("max_iterations")?.max(0) as u64;
    let (iteration, stop) = match ctx.loop_state(me) {
        Some(LoopState::While {
            iteration,
            break_requested,
        }) => (*iteration, *break_requested),
        _ => (0, false),
    };
    let go =
        !stop && iteration < max && condition(ctx, &["condition", "expression"]).unwrap_or(false);
    if !go {
        ctx.set_loop_state(me, None);
        return Ok(Flow::port("completed"));
    }
    ctx.set_loop_state(
        me,
        Some(LoopState::While {
            iteration: iteration + 1,
            break_requested: false,
        }),
    );
    ctx.set_output("current_iteration", Value::Int(iteration as i64));
    Ok(Flow::port("body"))
}

fn loop_end(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    match ctx.pair() {
        Some(start) if ctx.loop_state(start).is_some() => Ok(Flow::LoopBack(start)),
        _ => Ok(Flow::Next),
    }
}

fn break_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let Some(start) = ctx.pair() else {
        return Ok(Flow::Next);
    };
    match ctx.loop_state(start) {
        Some(state) => {
            state.request_break();
            Ok(Flow::LoopBack(start))
        }
        None => Ok(Flow::Next),
    }
}

fn continue_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    match ctx.pair() {
        Some(start) if ctx.loop_state(start).is_some() => Ok(Flow::LoopBack(start)),
        _ => Ok(Flow::Next),
    }
}

fn try_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let me = ctx.node_index();
    let tries = ctx.tries();
    tries.retain(|f| f.try_idx != me);
    tries.push(TryFrame {
        try_idx: me,
        stage: TryStage::Body,
        error: None,
        handled: false,
    });
    Ok(if ctx.has_route("try_body") {
        Flow::port("try_body")
    } else {
        Flow::Next
    })
}

fn frame_pos(ctx: &mut NodeCtx<'_>) -> Option<usize> {
    let pair = ctx.pair()?;
    ctx.tries().iter().rposition(|f| f.try_idx == pair)
}

fn catch_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let wanted: Vec<String> = ctx
        .param_str("error_types")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let has_finally = ctx
        .pair()
        .and_then(|p| ctx.workflow().nodes[p].finally)
        .is_some();
    let Some(pos) = frame_pos(ctx) else {
        return Ok(Flow::Next);
    };
    let frame = ctx.tries()[pos].clone();
    match (&frame.stage, &frame.error) {
        (TryStage::Catch, Some(err)) => {
            let matches = wanted.is_empty()
                || wanted
                    .iter()
                    .any(|w| w == &err.error_type || w == "Exception" || w == "Error");
            if !matches {
                // Not ours: the finally runs (if any), then the error propagates.
                if let Some(finally) = ctx.pair().and_then(|p| ctx.workflow().nodes[p].finally) {
                    ctx.tries()[pos].stage = TryStage::Finally;
                    return Ok(Flow::Goto(finally));
                }
                ctx.tries().truncate(pos);
                return Err(NodeError::new(err.error_type.clone(), err.to_string()));
            }
            ctx.set_output("error_message", Value::str(&err.message));
            ctx.set_output("error_type", Value::str(&err.error_type));
            ctx.set_output("stack_trace", Value::str(err.to_string()));
            if has_finally {
                ctx.tries()[pos].handled = true;
            } else {
                ctx.tries().truncate(pos);
            }
            Ok(if ctx.has_route("catch_body") {
                Flow::port("catch_body")
            } else {
                Flow::Next
            })
        }
        _ => {
            if !has_finally {
                ctx.tries().truncate(pos);
            }
            Ok(Flow::Next)
        }
    }
}

fn finally_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let frame = frame_pos(ctx).map(|pos| {
        let frame = ctx.tries()[pos].clone();
        ctx.tries().truncate(pos);
        frame
    });
    let had_error = frame.as_ref().is_some_and(|f| f.error.is_some());
    ctx.set_output("had_error", Value::Bool(had_error));
    let body = ctx.has_route("finally_body");
    if let Some(err) = frame.and_then(|f| f.error.filter(|_| !f.handled)) {
        // Uncaught: run the finally path, then fail with the original error.
        ctx.set_pending_error(Some(err));
        return Ok(if body {
            Flow::port("finally_body")
        } else {
            Flow::End
        });
    }
    Ok(if body {
        Flow::port("finally_body")
    } else {
        Flow::Next
    })
}

fn throw_error(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let message = ctx.param_str("error_message");
    let kind = ctx.param_str("error_type");
    let kind = if kind.trim().is_empty() {
        "Exception".to_string()
    } else {
        kind
    };
    Err(NodeError::new(kind, message))
}

fn assert_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let passed = match ctx
        .port_value("condition")
        .cloned()
        .or_else(|| ctx.raw_config("condition").cloned())
    {
        None => true,
        Some(Value::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" | "" => false,
            _ => ctx.eval_condition_text(&s).unwrap_or(false),
        },
        Some(other) => other.truthy(),
    };
    ctx.set_output("passed", Value::Bool(passed));
    if passed {
        Ok(Flow::Next)
    } else {
        Err(NodeError::new("AssertionError", ctx.param_str("message")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::engine::Value;
    use serde_json::json;

    fn log(id: &'static str, msg: &str) -> (&'static str, &'static str, serde_json::Value) {
        (
            id,
            "LogNode",
            json!({"message": msg, "include_node_id": false}),
        )
    }

    #[test]
    fn if_routes_by_condition_kinds() {
        let check = |cond: serde_json::Value, vars: serde_json::Value, expected: &str| {
            let mut nodes = vec![(
                "s",
                "SetVariableNode",
                json!({"variable_name": "x", "value": vars}),
            )];
            nodes.push(("if", "IfNode", json!({"condition": cond})));
            nodes.push(log("t", "T"));
            nodes.push(log("f", "F"));
            let ran = run_json(&graph(
                &nodes,
                &[
                    ex("s", "exec_out", "if"),
                    ex("if", "true", "t"),
                    ex("if", "false", "f"),
                ],
            ));
            assert!(ran.outcome.success(), "{}", ran.error());
            assert_eq!(ran.logs, [expected], "condition {cond}");
        };
        check(json!(true), json!(1), "T");
        check(json!("{{x}} > 3"), json!(5), "T");
        check(json!("{{x}} > 3"), json!(2), "F");
        check(json!("{{x}}"), json!(0), "F");
        check(json!("{{x}} == 'Alice'"), json!("Alice"), "T");
        check(json!("len(x) == 3"), json!([1, 2, 3]), "T");
        check(json!("undefined_name > 1"), json!(1), "F");
        check(json!("this is ( not python"), json!(1), "F");
        check(json!([1]), json!(1), "T");
    }

    #[test]
    fn if_reads_a_data_edge_before_config() {
        let nodes = [
            (
                "c",
                "ComparisonNode",
                json!({"a": 1, "b": 2, "operator": "<"}),
            ),
            ("if", "IfNode", json!({"condition": false})),
            log("t", "T"),
            log("f", "F"),
        ];
        let edges = [
            ex("c", "exec_out", "if"),
            ("c", "result", "if", "condition"),
            ex("if", "true", "t"),
            ex("if", "false", "f"),
        ];
        // The config says false; the data edge from the comparison (true) wins.
        let ran = run_json(&graph(&nodes, &edges));
        assert_eq!(ran.logs, ["T"], "{}", ran.error());
    }

    #[test]
    fn switch_routes_by_value_then_index_then_default() {
        let run = |value: &str, ports: [&'static str; 2]| {
            let nodes = [
                (
                    "sw",
                    "SwitchNode",
                    json!({"value": value, "cases": ["a", "b"]}),
                ),
                log("la", "A"),
                log("lb", "B"),
                log("ld", "D"),
            ];
            run_json(&graph(
                &nodes,
                &[
                    ex("sw", ports[0], "la"),
                    ex("sw", ports[1], "lb"),
                    ex("sw", "default", "ld"),
                ],
            ))
        };
        assert_eq!(run("b", ["case_a", "case_b"]).logs, ["B"]);
        assert_eq!(run("b", ["case_0", "case_1"]).logs, ["B"]);
        assert_eq!(run("zzz", ["case_a", "case_b"]).logs, ["D"]);
        let ran = run("b", ["case_a", "case_b"]);
        assert_eq!(ran.out("sw", "matched_case"), Value::str("b"));
    }

    #[test]
    fn switch_expression_error_fails_the_node() {
        let ran = run_json(&graph(
            &[(
                "sw",
                "SwitchNode",
                json!({"expression": "1 +", "cases": ["1"]}),
            )],
            &[],
        ));
        assert!(
            ran.error().starts_with("sw (SwitchNode): "),
            "{}",
            ran.error()
        );
    }

    fn for_loop(config: serde_json::Value) -> Ran {
        let nodes = [
            ("start", "ForLoopStartNode", config),
            log("body", "item={{item}} i={{item_index}}"),
            ("end", "ForLoopEndNode", json!({"paired_start_id": "start"})),
            log("done", "done"),
        ];
        run_json(&graph(
            &nodes,
            &[
                ex("start", "body", "body"),
                ex("body", "exec_out", "end"),
                ex("start", "completed", "done"),
            ],
        ))
    }

    #[test]
    fn for_loop_over_items_range_dict_and_text() {
        assert_eq!(
            for_loop(json!({"items": ["A", "B"]})).logs,
            ["item=A i=0", "item=B i=1", "done"]
        );
        assert_eq!(
            for_loop(json!({"mode": "range", "start": 1, "end": 6, "step": 2})).logs,
            ["item=1 i=0", "item=3 i=1", "item=5 i=2", "done"]
        );
        assert_eq!(
            for_loop(json!({"end": 2})).logs,
            ["item=0 i=0", "item=1 i=1", "done"]
        );
        assert_eq!(
            for_loop(json!({"items": {"k1": 1, "k2": 2}})).logs,
            ["item=1 i=0", "item=2 i=1", "done"]
        );
        assert_eq!(
            for_loop(json!({"items": "ab"})).logs,
            ["item=a i=0", "item=b i=1", "done"]
        );
        assert_eq!(for_loop(json!({"items": []})).logs, ["done"]);
        assert_eq!(
            for_loop(json!({"mode": "range", "start": 3, "end": 0, "step": -1}))
                .logs
                .len(),
            4
        );
        let ran = for_loop(json!({"mode": "range", "step": 0}));
        assert_eq!(
            ran.error(),
            "start (ForLoopStartNode): range step must not be zero"
        );
        let ran = for_loop(json!({"items": 2.5}));
        assert_eq!(
            ran.error(),
            "start (ForLoopStartNode): cannot loop over float 2.5"
        );
    }

    #[test]
    fn for_loop_pairing_is_inferred_when_missing() {
        let nodes = [
            ("start", "ForLoopStartNode", json!({"items": [1, 2, 3]})),
            (
                "inc",
                "IncrementVariableNode",
                json!({"variable_name": "n"}),
            ),
            ("end", "ForLoopEndNode", json!({})),
        ];
        let ran = run_json(&graph(
            &nodes,
            &[ex("start", "body", "inc"), ex("inc", "exec_out", "end")],
        ));
        assert!(
            matches!(ran.var("n"), Value::Float(f) if f == 3.0),
            "{:?}",
            ran.var("n")
        );
    }

    #[test]
    fn nested_loops_run_inner_body_fully_each_outer_iteration() {
        let nodes = [
            (
                "outer",
                "ForLoopStartNode",
                json!({"items": ["a", "b"], "item_var": "o"}),
            ),
            (
                "inner",
                "ForLoopStartNode",
                json!({"items": [1, 2, 3], "item_var": "i"}),
            ),
            log("body", "{{o}}{{i}}"),
            ("inner_end", "ForLoopEndNode", json!({})),
            ("outer_end", "ForLoopEndNode", json!({})),
            log("done", "done"),
        ];
        let edges = [
            ex("outer", "body", "inner"),
            ex("inner", "body", "body"),
            ex("body", "exec_out", "inner_end"),
            ex("inner", "completed", "outer_end"),
            ex("outer", "completed", "done"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert_eq!(
            ran.logs,
            ["a1", "a2", "a3", "b1", "b2", "b3", "done"],
            "{}",
            ran.error()
        );
    }

    #[test]
    fn while_loop_with_counter_and_max_iterations() {
        let nodes = [
            (
                "init",
                "SetVariableNode",
                json!({"variable_name": "c", "value": 0}),
            ),
            ("w", "WhileLoopStartNode", json!({"condition": "{{c}} < 3"})),
            (
                "inc",
                "IncrementVariableNode",
                json!({"variable_name": "c"}),
            ),
            log("body", "c={{c}}"),
            ("wend", "WhileLoopEndNode", json!({"paired_start_id": "w"})),
            log("done", "done"),
        ];
        let edges = [
            ex("init", "exec_out", "w"),
            ex("w", "body", "inc"),
            ex("inc", "exec_out", "body"),
            ex("body", "exec_out", "wend"),
            ex("w", "completed", "done"),
        ];
        assert_eq!(
            run_json(&graph(&nodes, &edges)).logs,
            ["c=1.0", "c=2.0", "c=3.0", "done"]
        );

        let nodes = [
            (
                "w",
                "WhileLoopStartNode",
                json!({"condition": true, "max_iterations": 4}),
            ),
            (
                "inc",
                "IncrementVariableNode",
                json!({"variable_name": "c"}),
            ),
            ("wend", "WhileLoopEndNode", json!({})),
        ];
        let ran = run_json(&graph(
            &nodes,
            &[ex("w", "body", "inc"), ex("inc", "exec_out", "wend")],
        ));
        assert!(ran.outcome.success());
        assert!(matches!(ran.var("c"), Value::Float(f) if f == 4.0));
    }

    #[test]
    fn break_and_continue() {
        let nodes = [
            (
                "loop",
                "ForLoopStartNode",
                json!({"items": [1, 2, 3, 4, 5]}),
            ),
            ("is_two", "IfNode", json!({"condition": "{{item}} == 2"})),
            ("cont", "ContinueNode", json!({})),
            ("is_four", "IfNode", json!({"condition": "{{item}} == 4"})),
            ("brk", "BreakNode", json!({})),
            log("body", "{{item}}"),
            ("end", "ForLoopEndNode", json!({})),
            log("done", "done"),
        ];
        let edges = [
            ex("loop", "body", "is_two"),
            ex("is_two", "true", "cont"),
            ex("is_two", "false", "is_four"),
            ex("is_four", "true", "brk"),
            ex("is_four", "false", "body"),
            ex("body", "exec_out", "end"),
            ex("loop", "completed", "done"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert_eq!(ran.logs, ["1", "3", "done"], "{}", ran.error());
    }

    #[test]
    fn try_catch_finally_routes_errors() {
        let nodes = [
            ("try", "TryNode", json!({})),
            (
                "boom",
                "ThrowErrorNode",
                json!({"error_message": "it broke", "error_type": "ValueError"}),
            ),
            log("not_run", "not run"),
            ("catch", "CatchNode", json!({"paired_try_id": "try"})),
            log(
                "handler",
                "caught {{catch.error_type}}: {{catch.error_message}}",
            ),
            ("finally", "FinallyNode", json!({"paired_try_id": "try"})),
            log("after", "after, had_error={{finally.had_error}}"),
        ];
        let edges = [
            ex("try", "try_body", "boom"),
            ex("boom", "exec_out", "not_run"),
            ex("not_run", "exec_out", "catch"),
            ex("catch", "catch_body", "handler"),
            ex("handler", "exec_out", "finally"),
            ex("catch", "exec_out", "finally"),
            ex("finally", "exec_out", "after"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(
            ran.logs,
            ["caught ValueError: it broke", "after, had_error=True"]
        );
    }

    #[test]
    fn try_without_error_skips_the_catch_body() {
        let nodes = [
            ("try", "TryNode", json!({})),
            log("work", "work"),
            ("catch", "CatchNode", json!({})),
            log("handler", "handler"),
            ("finally", "FinallyNode", json!({})),
            log("after", "after {{finally.had_error}}"),
        ];
        let edges = [
            ex("try", "exec_out", "work"),
            ex("work", "exec_out", "catch"),
            ex("catch", "catch_body", "handler"),
            ex("catch", "exec_out", "finally"),
            ex("finally", "exec_out", "after"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert_eq!(ran.logs, ["work", "after False"], "{}", ran.error());
    }

    #[test]
    fn finally_without_catch_runs_then_fails_with_the_original_error() {
        let nodes = [
            ("try", "TryNode", json!({})),
            ("boom", "ThrowErrorNode", json!({"error_message": "bad"})),
            ("finally", "FinallyNode", json!({"paired_try_id": "try"})),
            log("cleanup", "cleanup"),
            log("after", "never"),
        ];
        let edges = [
            ex("try", "try_body", "boom"),
            ex("boom", "exec_out", "finally"),
            ex("finally", "finally_body", "cleanup"),
            ex("finally", "exec_out", "after"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert_eq!(ran.logs, ["cleanup"]);
        assert_eq!(ran.error(), "boom (ThrowErrorNode): bad");
    }

    #[test]
    fn an_error_outside_any_try_fails_the_run_and_catch_filters_types() {
        let ran = run_chain(&[("boom", "ThrowErrorNode", json!({}))]);
        assert_eq!(ran.error(), "boom (ThrowErrorNode): Custom error");
        assert_eq!(ran.outcome.error.as_ref().unwrap().error_type, "Exception");

        let nodes = [
            ("try", "TryNode", json!({})),
            (
                "boom",
                "ThrowErrorNode",
                json!({"error_message": "x", "error_type": "KeyError"}),
            ),
            (
                "catch",
                "CatchNode",
                json!({"paired_try_id": "try", "error_types": "ValueError"}),
            ),
            log("handler", "handled"),
        ];
        let edges = [
            ex("try", "try_body", "boom"),
            ex("catch", "catch_body", "handler"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert!(ran.logs.is_empty());
        assert!(ran.error().contains("x"), "{}", ran.error());
    }

    #[test]
    fn nested_try_inner_catch_wins_and_errors_in_catch_reach_the_outer() {
        let nodes = [
            ("outer", "TryNode", json!({})),
            ("inner", "TryNode", json!({})),
            ("boom", "ThrowErrorNode", json!({"error_message": "first"})),
            (
                "inner_catch",
                "CatchNode",
                json!({"paired_try_id": "inner"}),
            ),
            (
                "boom2",
                "ThrowErrorNode",
                json!({"error_message": "second"}),
            ),
            (
                "outer_catch",
                "CatchNode",
                json!({"paired_try_id": "outer"}),
            ),
            log("handler", "outer caught {{outer_catch.error_message}}"),
        ];
        let edges = [
            ex("outer", "try_body", "inner"),
            ex("inner", "try_body", "boom"),
            ex("inner_catch", "catch_body", "boom2"),
            ex("outer_catch", "catch_body", "handler"),
        ];
        let ran = run_json(&graph(&nodes, &edges));
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.logs, ["outer caught second"]);
    }

    #[test]
    fn assert_node() {
        for (cond, ok) in [
            (json!(true), true),
            (json!("yes"), true),
            (json!("false"), false),
            (json!("1 > 2"), false),
            (json!(0), false),
        ] {
            let ran = run_chain(&[(
                "a",
                "AssertNode",
                json!({"condition": cond, "message": "must hold"}),
            )]);
            assert_eq!(ran.outcome.success(), ok, "{cond}");
            if !ok {
                assert_eq!(ran.error(), "a (AssertNode): must hold");
                assert_eq!(
                    ran.outcome.error.as_ref().unwrap().error_type,
                    "AssertionError"
                );
            }
        }
    }

    #[test]
    fn merge_runs_once_on_first_arrival() {
        let nodes = [
            ("if", "IfNode", json!({"condition": true})),
            log("a", "a"),
            ("m", "MergeNode", json!({})),
            log("after", "after"),
        ];
        let edges = [
            ex("if", "true", "a"),
            ex("a", "exec_out", "m"),
            ex("if", "false", "m"),
            ex("m", "exec_out", "after"),
        ];
        assert_eq!(run_json(&graph(&nodes, &edges)).logs, ["a", "after"]);
    }
}

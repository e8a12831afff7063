//! The sub-workflow family: `SubflowNode`, `CallSubworkflowNode` (sync mode),
//! `ExecuteWorkflowNode`, and the boundary markers `SubflowInputNode` / `SubflowOutputNode`.
//!
//! The call nodes are thin: loading and running the child is `engine::subflow`. Their data
//! ports come from the sub-workflow's declared inputs and outputs, so their edges are not
//! checked against a fixed schema (`dynamic_ports`). A failure inside the child routes to the
//! node's `error` port when that port has an edge, else fails the node naming the inner node.
//! `wait_for_result` / `wait_for_completion` are read and ignored, as upstream does in sync
//! mode: a call always waits for its child.

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind};
use crate::engine::subflow::{run_call, CallKind};

const CALL_ROUTES: &[&str] = &["exec_out", "error"];

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef {
        node_type: "SubflowNode",
        params: &[
            opt("subflow_id", Lit::Str("")),
            opt("subflow_path", Lit::Str("")),
        ],
        outputs: &[],
        routes: CALL_ROUTES,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: subflow_node,
    },
    NodeDef {
        node_type: "CallSubworkflowNode",
        params: &[
            opt("subworkflow_id", Lit::Str("")),
            opt("subworkflow_path", Lit::Str("")),
            opt("execution_mode", Lit::Str("sync")),
            opt("timeout_seconds", Lit::Int(300)),
            opt("wait_for_result", Lit::Bool(true)),
            opt("poll_interval", Lit::Int(5)),
        ],
        outputs: &["job_id", "success", "execution_time_ms"],
        routes: CALL_ROUTES,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: call_subworkflow_node,
    },
    NodeDef {
        node_type: "ExecuteWorkflowNode",
        params: &[
            opt("workflow_path", Lit::Str("")),
            opt("wait_for_completion", Lit::Bool(true)),
        ],
        outputs: &[],
        routes: CALL_ROUTES,
        kind: NodeKind::Plain,
        dynamic_ports: false,
        run: execute_workflow_node,
    },
    NodeDef::plain(
        "SubflowInputNode",
        &[opt("port_name", Lit::Str("input"))],
        &["value"],
        subflow_input_node,
    ),
    NodeDef::plain(
        "SubflowOutputNode",
        &[opt("port_name", Lit::Str("output")), req("value")],
        &[],
        subflow_output_node,
    ),
];

fn subflow_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    run_call(ctx, CallKind::Subflow)
}

fn call_subworkflow_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    // A templated mode is checked here; a literal "async" was refused at load.
    let mode = ctx.param_str("execution_mode");
    if mode != "sync" {
        return Err(NodeError::value(format!(
            "execution_mode \"{mode}\" is not supported: this robot runs sub-workflows \
             in-process (\"sync\") only"
        )));
    }
    run_call(ctx, CallKind::CallSubworkflow)
}

fn execute_workflow_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    run_call(ctx, CallKind::ExecuteWorkflow)
}

/// The input variable named `port_name` on port `value`.
fn subflow_input_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = port_name(ctx, "input");
    let value = ctx.var(&name).cloned().unwrap_or_default();
    ctx.set_output("value", value);
    Ok(Flow::Next)
}

/// Writes `value` to the variable named `port_name` (the output the caller reads).
fn subflow_output_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = port_name(ctx, "output");
    let value = ctx.param("value");
    ctx.set_var(&name, value);
    Ok(Flow::Next)
}

fn port_name(ctx: &NodeCtx<'_>, default: &str) -> String {
    let name = ctx.param_str("port_name");
    if name.trim().is_empty() {
        default.to_string()
    } else {
        name.trim().to_string()
    }
}

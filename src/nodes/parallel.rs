//! Parallel nodes: `ForkNode`, `JoinNode`, `ParallelForEachNode`.
//!
//! The Fork and ParallelForEach are executed by `engine::parallel` (the runner hands them over:
//! their branches need threads and the run's observer, which a node function does not have); the
//! functions registered here for them only refuse to run outside that path. The Join is an
//! ordinary control-flow node: it takes the finished Fork's branch results from the run state,
//! outputs `results` (by `merge_strategy`) and `branch_count`, stores every branch's variables as
//! `<fork_id>_branch_results` and copies each branch variable back as `<branch>_<name>`
//! (names starting with `_` are skipped).

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind, EXEC_OUT};
use crate::engine::parallel::{FOREACH, FORK, JOIN};
use crate::engine::value::{Dict, Value};

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef {
        node_type: FORK,
        params: &[
            opt("branch_count", Lit::Int(2)),
            opt("fail_fast", Lit::Bool(false)),
            opt("paired_join_id", Lit::Str("")),
        ],
        outputs: &[],
        routes: &["branch_*"],
        kind: NodeKind::ControlFlow,
        dynamic_ports: false,
        run: run_by_engine,
    },
    NodeDef {
        node_type: JOIN,
        params: &[
            opt("merge_strategy", Lit::Str("all")),
            opt("paired_fork_id", Lit::Str("")),
        ],
        outputs: &["results", "branch_count"],
        routes: EXEC_OUT,
        kind: NodeKind::ControlFlow,
        dynamic_ports: false,
        run: join,
    },
    NodeDef {
        node_type: FOREACH,
        params: &[
            req("items"),
            opt("batch_size", Lit::Int(5)),
            opt("fail_fast", Lit::Bool(false)),
            opt("timeout_per_item", Lit::Int(60)),
        ],
        outputs: &["current_item", "current_index", "results"],
        routes: &["body", "completed"],
        kind: NodeKind::ControlFlow,
        dynamic_ports: false,
        run: run_by_engine,
    },
];

fn run_by_engine(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    Err(NodeError::new(
        "RuntimeError",
        format!(
            "{} runs only inside the engine's parallel executor",
            ctx.node_type()
        ),
    ))
}

fn join(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let fork = ctx
        .pair()
        .ok_or_else(|| NodeError::new("RuntimeError", "no ForkNode is paired with this Join"))?;
    let fork_id = ctx.workflow().nodes[fork].id.clone();
    let strategy = ctx.param_str("merge_strategy");
    if !matches!(strategy.as_str(), "all" | "first" | "last") {
        return Err(NodeError::value(format!(
            "merge_strategy must be one of all, first, last; got {strategy:?}"
        )));
    }
    let progress = ctx
        .state
        .parallel
        .remove(&fork)
        .filter(|p| p.complete)
        .ok_or_else(|| {
            NodeError::new(
                "RuntimeError",
                format!("its ForkNode {fork_id} has not run: a Join runs after its Fork"),
            )
        })?;
    let all: Vec<(String, Value)> = progress
        .done
        .into_values()
        .map(|r| (r.name, r.value))
        .collect();
    let picked: Dict = match strategy.as_str() {
        "first" => all.first().cloned().into_iter().collect(),
        "last" => all.last().cloned().into_iter().collect(),
        _ => all.iter().cloned().collect(),
    };
    ctx.set_output("results", Value::dict(picked));
    ctx.set_output("branch_count", Value::Int(all.len() as i64));
    ctx.set_var(
        &format!("{fork_id}_branch_results"),
        Value::dict(all.iter().cloned().collect()),
    );
    for (branch, vars) in &all {
        let Some(vars) = vars.as_dict() else { continue };
        for (name, value) in vars.iter().filter(|(k, _)| !k.starts_with('_')) {
            ctx.set_var(&format!("{branch}_{name}"), value.clone());
        }
    }
    Ok(Flow::Next)
}

#[cfg(test)]
#[path = "parallel_tests.rs"]
mod tests;

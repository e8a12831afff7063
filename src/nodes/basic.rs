//! Basic nodes: Start, End, Comment, Reroute.

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain("StartNode", &[], &[], start),
    NodeDef::plain("EndNode", &[], &[], end),
    NodeDef::plain("CommentNode", &[opt("comment", Lit::Str(""))], &[], comment),
    NodeDef::plain(
        "RerouteNode",
        &[
            opt("in", Lit::Null),
            opt("data_type", Lit::Str("any")),
            opt("is_exec_reroute", Lit::Bool(false)),
        ],
        &["out"],
        reroute,
    ),
];

fn start(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    Ok(Flow::Next)
}

/// EndNode ends its path.
fn end(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    Ok(Flow::End)
}

/// CommentNode documents the canvas; when wired into a path it passes through (upstream ended
/// the path here, which silently skipped everything after a comment).
fn comment(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    Ok(Flow::Next)
}

fn reroute(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let value = ctx.param("in");
    ctx.set_output("out", value);
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use serde_json::json;

    #[test]
    fn end_stops_its_path_and_comment_passes_through() {
        let ran = run_chain(&[
            ("a", "CommentNode", json!({"comment": "hi"})),
            ("b", "LogNode", json!({"message": "after comment"})),
            ("c", "EndNode", json!({})),
            ("d", "LogNode", json!({"message": "never"})),
        ]);
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.logs, ["[b] after comment"]);
        assert_eq!(ran.started, ["__auto_start__", "a", "b", "c"]);
    }

    #[test]
    fn reroute_passes_its_input() {
        let ran = run_chain(&[("r", "RerouteNode", json!({"in": [1, 2]}))]);
        assert_eq!(ran.out("r", "out"), v("[1, 2]"));
    }
}

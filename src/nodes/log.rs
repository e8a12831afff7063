//! `LogNode`: writes a message to the run's log.
//!
//! As upstream: the message is templated, then formatted like Python's
//! `message.format(**variables)` (so `{name}` also substitutes and `{{` / `}}` become braces), a
//! `[node_id] ` prefix is added (`include_node_id`, default true) and ` | Data: <str(data)>` when
//! `data` is set. Where upstream failed the node on `{}` or `{d.key}` in a message, we log the
//! message unformatted instead: a log line should never break a workflow.

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::pyformat::{self, FormatError};
use crate::engine::value::Value;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[NodeDef::plain(
    "LogNode",
    &[
        opt("message", Lit::Str("")),
        opt("level", Lit::Str("critical")),
        opt("include_node_id", Lit::Bool(true)),
        opt("data", Lit::Null),
    ],
    &["message"],
    log_node,
)];

/// Map CasareRPA's level names to `log` levels (critical has no equivalent: error).
pub fn level_from_name(name: &str) -> log::Level {
    match name.trim().to_ascii_lowercase().as_str() {
        "trace" => log::Level::Trace,
        "debug" => log::Level::Debug,
        "info" | "information" => log::Level::Info,
        "warn" | "warning" => log::Level::Warn,
        _ => log::Level::Error,
    }
}

fn log_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let templated = ctx.param_str("message");
    let formatted = if templated.contains('{') || templated.contains('}') {
        let scope_vars = |name: &str| ctx.var(name).cloned();
        match pyformat::format(&templated, &scope_vars) {
            Ok(s) => s,
            Err(
                FormatError::KeyError(_) | FormatError::ValueError(_) | FormatError::IndexError(_),
            ) => templated,
        }
    } else {
        templated
    };
    let mut line = String::with_capacity(formatted.len() + 32);
    if ctx.param_bool("include_node_id") {
        line.push('[');
        line.push_str(ctx.node_id());
        line.push_str("] ");
    }
    line.push_str(&formatted);
    let data = ctx.param("data");
    if !data.is_null() {
        line.push_str(" | Data: ");
        data.write_py_str(&mut line);
    }
    let level = level_from_name(&ctx.param_str("level"));
    ctx.set_output("message", Value::str(&formatted));
    ctx.log(level, line);
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use serde_json::json;

    #[test]
    fn log_formats_like_upstream() {
        let ran = run_chain(&[
            (
                "s",
                "SetVariableNode",
                json!({"variable_name": "d", "value": {"status": "ok", "code": 200}}),
            ),
            (
                "n",
                "SetVariableNode",
                json!({"variable_name": "n", "value": 15.0}),
            ),
            ("a", "LogNode", json!({"message": "Result: {{d}} n={{n}}"})),
            ("b", "LogNode", json!({"message": "single {n} braces"})),
            ("c", "LogNode", json!({"message": "missing {{x.y}}"})),
            (
                "e",
                "LogNode",
                json!({"message": "positional {} stays", "include_node_id": false}),
            ),
            (
                "f",
                "LogNode",
                json!({"message": "with data", "data": [1, true]}),
            ),
        ]);
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(
            ran.logs,
            [
                "[a] Result: {'status': 'ok', 'code': 200} n=15.0",
                "[b] single 15.0 braces",
                "[c] missing {x.y}",
                "positional {} stays",
                "[f] with data | Data: [1, True]",
            ]
        );
        assert_eq!(ran.out("b", "message").py_str(), "single 15.0 braces");
    }

    #[test]
    fn levels() {
        assert_eq!(super::level_from_name("WARNING"), log::Level::Warn);
        assert_eq!(super::level_from_name("critical"), log::Level::Error);
        assert_eq!(super::level_from_name("info"), log::Level::Info);
    }
}

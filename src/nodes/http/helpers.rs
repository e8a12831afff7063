//! HTTP helper nodes that need no network: `SetHttpHeadersNode` builds a headers dict for
//! `HttpRequestNode.headers`, `ParseJsonResponseNode` picks a value out of a JSON response.
//!
//! Parameters, defaults and outputs are the catalogue's (upstream `nodes/http/http_advanced.py`).
//!
//! - `SetHttpHeadersNode`: `base_headers` (dict or JSON object text), then every pair of
//!   `headers_json`, then `header_name: header_value` when a name is given; later ones replace
//!   earlier ones of the same name (case ignored, as HTTP does). Output `headers`. Text that is
//!   not a JSON object is an error naming the input.
//! - `ParseJsonResponseNode`: `json_data` (a dict or list as is, a string parsed as JSON) and a
//!   JSONPath-like `path`: keys separated by dots, list indices as `[n]` or `.n`, an optional
//!   leading `$`; an empty path is the whole document. Found: `value`, `success` True, `error`
//!   "". Not found, no data, or text that is not JSON: `value` = `default`, `success` False and
//!   `error` saying what was missing, with a warning in the log; the path continues (the
//!   `success`/`error` outputs are how upstream reports it).

use super::pairs_param;
use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::{Dict, Value};
use log::Level;

/// Node types of this group (registered with the HTTP family).
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "SetHttpHeadersNode",
        &[
            opt("base_headers", Lit::Null),
            opt("header_name", Lit::Str("")),
            opt("header_value", Lit::Str("")),
            opt("headers_json", Lit::Null),
        ],
        &["headers"],
        set_http_headers,
    ),
    NodeDef::plain(
        "ParseJsonResponseNode",
        &[
            opt("json_data", Lit::Null),
            opt("path", Lit::Str("")),
            opt("default", Lit::Str("")),
        ],
        &["value", "success", "error"],
        parse_json_response,
    ),
];

fn set_http_headers(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut pairs = pairs_param(ctx, "base_headers")?;
    pairs.extend(pairs_param(ctx, "headers_json")?);
    let name = ctx.param_str("header_name");
    if !name.trim().is_empty() {
        pairs.push((name.trim().to_string(), ctx.param_str("header_value")));
    }
    let mut headers = Dict::new();
    for (name, value) in pairs {
        headers.retain(|k, _| !k.eq_ignore_ascii_case(&name));
        headers.insert(name, Value::str(value));
    }
    ctx.set_output("headers", Value::dict(headers));
    Ok(Flow::Next)
}

fn parse_json_response(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.param_str("path");
    let found = document(ctx.param("json_data")).and_then(|doc| lookup(&doc, &path));
    match found {
        Ok(value) => {
            ctx.set_output("value", value);
            ctx.set_output("success", Value::Bool(true));
            ctx.set_output("error", Value::str(""));
        }
        Err(why) => {
            ctx.log(Level::Warn, format!("no value taken: {why}"));
            let default = ctx.param("default");
            ctx.set_output("value", default);
            ctx.set_output("success", Value::Bool(false));
            ctx.set_output("error", Value::str(why));
        }
    }
    Ok(Flow::Next)
}

/// The JSON document `json_data` holds.
fn document(data: Value) -> Result<Value, String> {
    match data {
        Value::Null => Err("input 'json_data' is empty (connect or set the JSON to parse)".into()),
        Value::Str(text) => Value::parse_json(&text)
            .map_err(|e| format!("input 'json_data' is not JSON text ({e})")),
        other => Ok(other),
    }
}

/// The value at `path` in `doc` (see the module doc for the syntax).
fn lookup(doc: &Value, path: &str) -> Result<Value, String> {
    let mut current = doc.clone();
    for step in steps(path)? {
        current = match (&current, &step) {
            (Value::Dict(d), Step::Key(k)) => d
                .get(k.as_str())
                .cloned()
                .ok_or_else(|| format!("path '{path}': no key '{k}'"))?,
            (Value::List(items), Step::Index(i)) | (Value::List(items), Step::KeyIndex(_, i)) => {
                items.get(*i).cloned().ok_or_else(|| {
                    format!(
                        "path '{path}': index {i} is past the end ({} items)",
                        items.len()
                    )
                })?
            }
            (Value::Dict(d), Step::KeyIndex(k, _)) => d
                .get(k.as_str())
                .cloned()
                .ok_or_else(|| format!("path '{path}': no key '{k}'"))?,
            (other, step) => {
                return Err(format!(
                    "path '{path}': cannot take {} of a {}",
                    step.describe(),
                    other.type_name()
                ))
            }
        };
    }
    Ok(current)
}

/// One step of a path.
enum Step {
    /// `.name`
    Key(String),
    /// `[n]`
    Index(usize),
    /// `.n`: an index into a list, a key into a dict.
    KeyIndex(String, usize),
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Key(k) | Step::KeyIndex(k, _) => format!("key '{k}'"),
            Step::Index(i) => format!("index [{i}]"),
        }
    }
}

/// `path` split into steps; a malformed index is an error.
fn steps(path: &str) -> Result<Vec<Step>, String> {
    let trimmed = path.trim();
    let body = trimmed.strip_prefix('$').unwrap_or(trimmed);
    let mut out = Vec::new();
    for part in body.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            out.push(match name.parse::<usize>() {
                Ok(i) => Step::KeyIndex(name.to_string(), i),
                Err(_) => Step::Key(name.to_string()),
            });
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("path '{path}': '[' without ']'"))?;
            let index = inner[..close]
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("path '{path}': [{}] is not a list index", &inner[..close]))?;
            out.push(Step::Index(index));
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            return Err(format!("path '{path}': unexpected '{rest}'"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::super::testing::*;
    use serde_json::json;

    #[test]
    fn headers_merge_base_json_and_the_single_pair() {
        let ran = one(
            "SetHttpHeadersNode",
            json!({"base_headers": {"Accept": "text/plain", "X-A": "1"},
                   "headers_json": "{\"accept\": \"application/json\"}",
                   "header_name": "Authorization", "header_value": "Bearer t"}),
        );
        ok(&ran);
        assert_eq!(
            ran.out("n", "headers"),
            v(r#"{"X-A": "1", "accept": "application/json", "Authorization": "Bearer t"}"#)
        );
        let empty = one("SetHttpHeadersNode", json!({}));
        assert_eq!(empty.out("n", "headers"), v("{}"));
    }

    #[test]
    fn headers_text_that_is_not_an_object_is_an_error() {
        let ran = one("SetHttpHeadersNode", json!({"headers_json": "[1]"}));
        assert!(!ran.outcome.success());
        assert!(
            ran.error()
                .contains("input 'headers_json' must be a dictionary or JSON object text"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn json_paths_pick_values() {
        let doc =
            json!({"data": {"items": [{"name": "a"}, {"name": "b", "tags": [1, 2]}]}, "n": 3});
        for (path, want) in [
            (
                "",
                r#"{"data": {"items": [{"name": "a"}, {"name": "b", "tags": [1, 2]}]}, "n": 3}"#,
            ),
            ("n", "3"),
            ("$.data.items[1].name", r#""b""#),
            ("data.items.0.name", r#""a""#),
            ("data.items[1].tags[1]", "2"),
        ] {
            let ran = one(
                "ParseJsonResponseNode",
                json!({"json_data": doc, "path": path}),
            );
            ok(&ran);
            assert_eq!(ran.out("n", "value"), v(want), "{path}");
            assert_eq!(ran.out("n", "success"), v("true"), "{path}");
            assert_eq!(ran.out("n", "error"), v(r#""""#), "{path}");
        }
        let text = one(
            "ParseJsonResponseNode",
            json!({"json_data": "{\"ok\": true}", "path": "ok"}),
        );
        assert_eq!(text.out("n", "value"), v("true"));
    }

    #[test]
    fn a_missing_value_gives_the_default_and_says_why() {
        for (config, why) in [
            (
                json!({"json_data": {"a": 1}, "path": "b", "default": "none"}),
                "path 'b': no key 'b'",
            ),
            (
                json!({"json_data": [1], "path": "[3]", "default": "none"}),
                "index 3 is past the end (1 items)",
            ),
            (
                json!({"json_data": {"a": 1}, "path": "a.b", "default": "none"}),
                "cannot take key 'b' of a int",
            ),
            (
                json!({"json_data": "{nope", "default": "none"}),
                "input 'json_data' is not JSON text",
            ),
            (json!({"default": "none"}), "input 'json_data' is empty"),
            (
                json!({"json_data": {}, "path": "a[x]", "default": "none"}),
                "[x] is not a list index",
            ),
        ] {
            let ran = one("ParseJsonResponseNode", config.clone());
            ok(&ran);
            assert_eq!(ran.out("n", "value"), v(r#""none""#), "{config}");
            assert_eq!(ran.out("n", "success"), v("false"), "{config}");
            let error = ran.out("n", "error").py_str();
            assert!(error.contains(why), "{config}: {error}");
            assert!(ran.logs.iter().any(|l| l.contains(why)), "{:?}", ran.logs);
        }
    }
}

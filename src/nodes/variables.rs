//! Variable nodes: SetVariable, GetVariable, IncrementVariable.
//!
//! `SetVariableNode` resolves templates twice (a variable whose value is itself a template is
//! expanded, as upstream) and converts by `variable_type`; conversion failures keep the value
//! unconverted, as upstream.

use crate::engine::node::{opt, req, to_f64, to_i64, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::template;
use crate::engine::value::Value;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "SetVariableNode",
        &[
            req("variable_name"),
            opt("value", Lit::Null),
            opt("default_value", Lit::Null),
            opt("variable_type", Lit::Str("String")),
        ],
        &["value"],
        set_variable,
    ),
    NodeDef::plain(
        "GetVariableNode",
        &[req("variable_name"), opt("default_value", Lit::Null)],
        &["value"],
        get_variable,
    ),
    NodeDef::plain(
        "IncrementVariableNode",
        &[req("variable_name"), opt("increment", Lit::Float(1.0))],
        &["value"],
        increment_variable,
    ),
];

fn var_name(ctx: &NodeCtx<'_>) -> Result<String, NodeError> {
    let name = ctx.param_str("variable_name");
    let name = name
        .trim()
        .trim_start_matches("{{")
        .trim_end_matches("}}")
        .trim()
        .to_string();
    if name.is_empty() {
        return Err(NodeError::value("variable_name is empty"));
    }
    Ok(name)
}

fn set_variable(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = var_name(ctx)?;
    let mut value = ctx.param("value");
    if value.is_null() {
        value = ctx.param("default_value");
    }
    if let Value::Str(s) = &value {
        if template::Template::compile(s).is_some() {
            value = ctx.resolve(&value);
        }
    }
    let ty = ctx.param_str("variable_type");
    let value = convert(value, &ty);
    ctx.set_var(&name, value.clone());
    ctx.set_output("value", value);
    Ok(Flow::Next)
}

/// Convert by CasareRPA's `variable_type`; on failure the value stays as it was.
pub fn convert(value: Value, ty: &str) -> Value {
    let text = || value.py_str();
    match ty.trim().to_ascii_lowercase().as_str() {
        "boolean" | "bool" => match &value {
            Value::Str(s) => Value::Bool(matches!(
                s.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on"
            )),
            other => Value::Bool(other.truthy()),
        },
        "int32" | "int" | "integer" | "int64" => match to_i64(&value) {
            Some(i) => Value::Int(i),
            None => match to_f64(&value) {
                Some(f) if f.is_finite() => Value::Int(f.trunc() as i64),
                _ => value,
            },
        },
        "float" | "double" | "number" => match to_f64(&value) {
            Some(f) => Value::Float(f),
            None => value,
        },
        "object" | "dict" | "dictionary" => match &value {
            Value::Dict(_) => value,
            Value::Str(s) => match Value::parse_json(s) {
                Ok(d @ Value::Dict(_)) => d,
                _ => Value::dict_from([("value", value.clone())]),
            },
            _ => Value::dict_from([("value", value.clone())]),
        },
        "array" | "list" => match &value {
            Value::List(_) => value,
            Value::Str(s) => match Value::parse_json(s) {
                Ok(l @ Value::List(_)) => l,
                _ => Value::list(
                    text()
                        .split(',')
                        .map(|p| Value::str(p.trim()))
                        .filter(|p| p.as_str() != Some(""))
                        .collect(),
                ),
            },
            Value::Null => Value::list(Vec::new()),
            _ => Value::list(vec![value.clone()]),
        },
        _ => value,
    }
}

fn get_variable(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = var_name(ctx)?;
    let value = match ctx.var(&name) {
        Some(v) if !v.is_null() => v.clone(),
        _ => ctx.param("default_value"),
    };
    ctx.set_output("value", value);
    Ok(Flow::Next)
}

fn increment_variable(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = var_name(ctx)?;
    let current = match ctx.var(&name) {
        None | Some(Value::Null) => 0.0,
        Some(v) => to_f64(v).ok_or_else(|| {
            NodeError::type_error(format!(
                "variable '{name}' is not a number (it is {} {})",
                v.type_name(),
                v.py_repr()
            ))
        })?,
    };
    let inc = ctx.param_f64("increment")?;
    let value = Value::Float(current + inc);
    ctx.set_var(&name, value.clone());
    ctx.set_output("value", value);
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn set_get_increment() {
        let ran = run_chain(&[
            (
                "s",
                "SetVariableNode",
                json!({"variable_name": "count", "value": 50}),
            ),
            (
                "i",
                "IncrementVariableNode",
                json!({"variable_name": "count", "increment": 2}),
            ),
            ("g", "GetVariableNode", json!({"variable_name": "count"})),
            (
                "m",
                "GetVariableNode",
                json!({"variable_name": "missing", "default_value": "dflt"}),
            ),
        ]);
        assert!(ran.outcome.success(), "{}", ran.error());
        assert!(matches!(ran.var("count"), Value::Float(f) if f == 52.0));
        assert_eq!(ran.out("g", "value").py_str(), "52.0");
        assert_eq!(ran.out("m", "value"), Value::str("dflt"));
    }

    #[test]
    fn set_variable_templates_and_types() {
        let ran = run_chain(&[
            (
                "a",
                "SetVariableNode",
                json!({"variable_name": "name", "value": "Alice"}),
            ),
            (
                "b",
                "SetVariableNode",
                json!({"variable_name": "greeting", "value": "Hi {{name}}"}),
            ),
            (
                "c",
                "SetVariableNode",
                json!({"variable_name": "n", "value": "42", "variable_type": "Int32"}),
            ),
            (
                "d",
                "SetVariableNode",
                json!({"variable_name": "l", "value": "a, b", "variable_type": "List"}),
            ),
            (
                "e",
                "SetVariableNode",
                json!({"variable_name": "same", "value": "{{n}}"}),
            ),
            (
                "f",
                "SetVariableNode",
                json!({"variable_name": "bad", "value": "x", "variable_type": "Float"}),
            ),
        ]);
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.var("greeting"), Value::str("Hi Alice"));
        assert!(matches!(ran.var("n"), Value::Int(42)));
        assert_eq!(ran.var("l"), v(r#"["a", "b"]"#));
        assert!(matches!(ran.var("same"), Value::Int(42)));
        assert_eq!(ran.var("bad"), Value::str("x"));
    }

    #[test]
    fn conversions() {
        assert_eq!(convert(Value::str("yes"), "Boolean"), Value::Bool(true));
        assert_eq!(convert(Value::str("3.9"), "Int32"), Value::Int(3));
        assert_eq!(convert(Value::str(r#"{"a": 1}"#), "Dict"), v(r#"{"a": 1}"#));
        assert_eq!(convert(Value::Int(5), "Dict"), v(r#"{"value": 5}"#));
        assert_eq!(convert(Value::str("[1,2]"), "Array"), v("[1, 2]"));
    }

    #[test]
    fn increment_of_text_is_a_type_error() {
        let ran = run_chain(&[
            (
                "s",
                "SetVariableNode",
                json!({"variable_name": "x", "value": "abc"}),
            ),
            ("i", "IncrementVariableNode", json!({"variable_name": "x"})),
        ]);
        assert!(!ran.outcome.success());
        assert_eq!(
            ran.error(),
            "i (IncrementVariableNode): variable 'x' is not a number (it is str 'abc')"
        );
    }

    #[test]
    fn missing_variable_name_is_a_load_error() {
        let err = crate::engine::load_str(&chain(&[("s", "SetVariableNode", json!({"value": 1}))]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("s (SetVariableNode): required input \"variable_name\" has no value"),
            "{err}"
        );
    }
}

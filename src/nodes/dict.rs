//! Dict and JSON nodes (CasareRPA `dict_nodes.py`): CreateDict, DictGet, DictSet, DictRemove,
//! DictMerge, DictKeys, DictValues, DictHasKey, DictItems, DictToJson, JsonParse, GetProperty, and
//! the tier-2 `DictSuperNode` that dispatches to them by `action`.
//!
//! Every parameter is dual-source (data edge, else templated config). A missing `dict` is `{}`
//! (batch 7.1 runs every node on nothing); JSON object text is parsed; any other non-dict is an
//! error `input 'dict' is not a dictionary`, except DictSet and DictMerge, which treat it as `{}`
//! as upstream does. Nodes never mutate their input: each outputs a new dict. Output names are
//! upstream's (`DictSet` → `result`, `DictMerge` reads `dict_1`/`dict_2`). Deviations: DictToJson
//! dumps any non-null value as is (upstream turned falsy values such as `[]` into `{}`) and refuses
//! an indent above 1000; GetProperty also walks lists (`items[0].name`, `items.0`) and accepts a
//! list as its `object`; JsonParse errors name the line and column; texts are capped at 100 MB.

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind, ParamDef};
use crate::engine::template;
use crate::engine::value::{Dict, Value};
use std::sync::Arc;

/// Largest text a dict node may produce.
const MAX_TEXT: usize = 100 * 1024 * 1024;
/// Largest DictToJson indent accepted.
const MAX_INDENT: i64 = 1000;

const DICT: ParamDef = opt("dict", Lit::Null);
const KEY: ParamDef = opt("key", Lit::Str(""));

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "CreateDictNode",
        &[
            opt("key_1", Lit::Null),
            opt("value_1", Lit::Null),
            opt("key_2", Lit::Null),
            opt("value_2", Lit::Null),
            opt("key_3", Lit::Null),
            opt("value_3", Lit::Null),
        ],
        &["dict"],
        create_dict,
    ),
    NodeDef::plain(
        "DictGetNode",
        &[DICT, KEY, opt("default", Lit::Null)],
        &["value", "found"],
        dict_get,
    ),
    NodeDef::plain(
        "DictSetNode",
        &[DICT, KEY, opt("value", Lit::Null)],
        &["result"],
        dict_set,
    ),
    NodeDef::plain(
        "DictRemoveNode",
        &[DICT, KEY],
        &["result", "removed_value"],
        dict_remove,
    ),
    NodeDef::plain(
        "DictMergeNode",
        &[opt("dict_1", Lit::Null), opt("dict_2", Lit::Null)],
        &["result"],
        dict_merge,
    ),
    NodeDef::plain("DictKeysNode", &[DICT], &["keys", "count"], dict_keys),
    NodeDef::plain("DictValuesNode", &[DICT], &["values", "count"], dict_values),
    NodeDef::plain("DictHasKeyNode", &[DICT, KEY], &["has_key"], dict_has_key),
    NodeDef::plain("DictItemsNode", &[DICT], &["items", "count"], dict_items),
    NodeDef::plain(
        "DictToJsonNode",
        &[
            DICT,
            opt("indent", Lit::Null),
            opt("sort_keys", Lit::Bool(false)),
            opt("ensure_ascii", Lit::Bool(true)),
        ],
        &["json_string"],
        dict_to_json,
    ),
    NodeDef::plain(
        "JsonParseNode",
        &[opt("json_string", Lit::Str(""))],
        &["data"],
        json_parse,
    ),
    NodeDef::plain(
        "GetPropertyNode",
        &[opt("object", Lit::Null), opt("property_path", Lit::Str(""))],
        &["value"],
        get_property,
    ),
    NodeDef {
        node_type: "DictSuperNode",
        params: &[
            DICT,
            KEY,
            opt("action", Lit::Str("Get Value")),
            opt("value", Lit::Null),
            opt("default", Lit::Null),
            opt("key_1", Lit::Null),
            opt("value_1", Lit::Null),
            opt("key_2", Lit::Null),
            opt("value_2", Lit::Null),
            opt("key_3", Lit::Null),
            opt("value_3", Lit::Null),
            opt("dict_1", Lit::Null),
            opt("dict_2", Lit::Null),
            opt("indent", Lit::Null),
            opt("sort_keys", Lit::Bool(false)),
            opt("ensure_ascii", Lit::Bool(true)),
            opt("json_string", Lit::Str("")),
            opt("object", Lit::Null),
            opt("property_path", Lit::Str("")),
        ],
        outputs: &[
            "dict",
            "value",
            "found",
            "result",
            "removed_value",
            "keys",
            "values",
            "count",
            "has_key",
            "items",
            "json_string",
            "data",
        ],
        routes: crate::engine::node::EXEC_OUT,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: dict_super,
    },
];

/// The value at a dot path inside `root`: `a.b` walks dict keys, `a[0]` / `a.0` index lists
/// (negative indexes count from the end); empty segments are skipped; a key that literally
/// contains the whole path wins. `None` when any step is missing.
pub fn lookup_path(root: &Value, path: &str) -> Option<Value> {
    let path = path.trim();
    if let Value::Dict(d) = root {
        if let Some(v) = d.get(path) {
            return Some(v.clone());
        }
    }
    let mut current = root;
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) if part.ends_with(']') => (&part[..i], &part[i..]),
            _ => (part, ""),
        };
        if !name.is_empty() {
            current = step(current, name)?;
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']')?;
            let key = inner[..close]
                .trim()
                .trim_matches(|c| c == '\'' || c == '"');
            current = step(current, key)?;
            rest = &inner[close + 1..];
        }
    }
    Some(current.clone())
}

fn step<'v>(current: &'v Value, key: &str) -> Option<&'v Value> {
    match current {
        Value::Dict(d) => d.get(key),
        Value::List(l) => {
            let i: i64 = key.parse().ok()?;
            let len = i64::try_from(l.len()).ok()?;
            let i = if i < 0 { i.checked_add(len)? } else { i };
            usize::try_from(i).ok().and_then(|i| l.get(i))
        }
        _ => None,
    }
}

/// The `dict`-like parameter `name`: missing → `{}`, JSON object text parsed, else an error.
fn dict_param(ctx: &NodeCtx<'_>, name: &str) -> Result<Arc<Dict>, NodeError> {
    ctx.param_dict(name)
}

/// Like [`dict_param`] but anything that is not a dict becomes `{}` (DictSet, DictMerge).
fn dict_or_empty(ctx: &NodeCtx<'_>, name: &str) -> Arc<Dict> {
    ctx.param_dict(name).unwrap_or_default()
}

/// Upstream resolves some values a second time: a value that is itself template text is expanded.
fn resolve_again(ctx: &NodeCtx<'_>, v: Value) -> Value {
    match &v {
        Value::Str(s) if template::Template::compile(s).is_some() => ctx.resolve(&v),
        _ => v,
    }
}

fn key_param(ctx: &NodeCtx<'_>) -> String {
    ctx.param_str("key")
}

/// `CreateDictNode`: a dict from `key_1/value_1 .. key_3/value_3` (upstream reads only these
/// three pairs; more keys in config are ignored). Pairs with an empty or missing key are skipped;
/// a missing value is `None`. Keys and values are templated twice, as upstream.
fn create_dict(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut dict = Dict::new();
    for (k, v) in [
        ("key_1", "value_1"),
        ("key_2", "value_2"),
        ("key_3", "value_3"),
    ] {
        let key = match resolve_again(ctx, ctx.param(k)) {
            Value::Null => continue,
            other => other.py_str(),
        };
        if key.is_empty() {
            continue;
        }
        let value = resolve_again(ctx, ctx.param(v));
        dict.insert(key, value);
    }
    ctx.set_output("dict", Value::dict(dict));
    Ok(Flow::Next)
}

/// `DictGetNode`: `dict.get(key, default)` and whether the key was present (`found`).
fn dict_get(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dict = dict_param(ctx, "dict")?;
    let key = key_param(ctx);
    let found = dict.get(&key).cloned();
    let is_found = found.is_some();
    let value = match found {
        Some(v) => v,
        None => resolve_again(ctx, ctx.param("default")),
    };
    ctx.set_output("value", value);
    ctx.set_output("found", Value::Bool(is_found));
    Ok(Flow::Next)
}

/// `DictSetNode`: a copy of `dict` (a non-dict counts as `{}`) with `key` set to `value`; an
/// empty key is an error. Output `result`.
fn dict_set(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut dict = dict_or_empty(ctx, "dict");
    let key = key_param(ctx);
    if key.is_empty() {
        return Err(NodeError::value("key is required (got an empty key)"));
    }
    let value = ctx.param("value");
    Arc::make_mut(&mut dict).insert(key, value);
    ctx.set_output("result", Value::Dict(dict));
    Ok(Flow::Next)
}

/// `DictRemoveNode`: a copy of `dict` without `key`, and the removed value (`None` when absent;
/// a missing key is not an error). Order of the other keys is kept.
fn dict_remove(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut dict = dict_param(ctx, "dict")?;
    let key = key_param(ctx);
    let removed = if dict.contains_key(&key) {
        Arc::make_mut(&mut dict).shift_remove(&key)
    } else {
        None
    };
    ctx.set_output("result", Value::Dict(dict));
    ctx.set_output("removed_value", removed.unwrap_or(Value::Null));
    Ok(Flow::Next)
}

/// `DictMergeNode`: `{**dict_1, **dict_2}` (keys of `dict_2` win, first-seen order kept; non-dicts
/// count as `{}`). Output `result`.
fn dict_merge(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut merged = dict_or_empty(ctx, "dict_1");
    let second = dict_or_empty(ctx, "dict_2");
    if !second.is_empty() {
        let target = Arc::make_mut(&mut merged);
        for (k, v) in second.iter() {
            target.insert(k.clone(), v.clone());
        }
    }
    ctx.set_output("result", Value::Dict(merged));
    Ok(Flow::Next)
}

/// `DictKeysNode`: the keys in order, and their count.
fn dict_keys(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dict = dict_param(ctx, "dict")?;
    let keys: Vec<Value> = dict.keys().map(Value::str).collect();
    ctx.set_output("count", Value::from(keys.len()));
    ctx.set_output("keys", Value::list(keys));
    Ok(Flow::Next)
}

/// `DictValuesNode`: the values in order, and their count.
fn dict_values(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dict = dict_param(ctx, "dict")?;
    let values: Vec<Value> = dict.values().cloned().collect();
    ctx.set_output("count", Value::from(values.len()));
    ctx.set_output("values", Value::list(values));
    Ok(Flow::Next)
}

/// `DictHasKeyNode`: `key in dict`.
fn dict_has_key(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dict = dict_param(ctx, "dict")?;
    let has = dict.contains_key(&key_param(ctx));
    ctx.set_output("has_key", Value::Bool(has));
    Ok(Flow::Next)
}

/// `DictItemsNode`: `[{"key": k, "value": v}, ...]` in order, and the count.
fn dict_items(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let dict = dict_param(ctx, "dict")?;
    let items: Vec<Value> = dict
        .iter()
        .map(|(k, v)| Value::dict_from([("key", Value::str(k)), ("value", v.clone())]))
        .collect();
    ctx.set_output("count", Value::from(items.len()));
    ctx.set_output("items", Value::list(items));
    Ok(Flow::Next)
}

/// `DictToJsonNode`: Python's `json.dumps(dict, indent, sort_keys, ensure_ascii)` with Python's
/// separators (`", "`, `": "`), `ensure_ascii` on by default. A missing dict dumps as `{}`; other
/// values are dumped as they are. A negative indent counts as 0 (newlines only), as in Python.
fn dict_to_json(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let value = match ctx.param("dict") {
        Value::Null => Value::dict(Dict::new()),
        other => other,
    };
    let indent = match ctx.param_opt_i64("indent")? {
        None => None,
        Some(i) if i > MAX_INDENT => {
            return Err(NodeError::value(format!(
                "indent {i} is too large (at most {MAX_INDENT})"
            )))
        }
        Some(i) => Some(usize::try_from(i.max(0)).unwrap_or(0)),
    };
    let text = value.to_py_json(
        indent,
        ctx.param_bool("sort_keys"),
        ctx.param_bool("ensure_ascii"),
    );
    if text.len() > MAX_TEXT {
        return Err(NodeError::value(
            "the JSON text would be longer than 100 MB",
        ));
    }
    ctx.set_output("json_string", Value::from(text));
    Ok(Flow::Next)
}

/// `JsonParseNode`: `json.loads(json_string)`. Empty text is an error; invalid JSON fails with the
/// line and column of the problem; a non-text input is a `TypeError` as in Python.
fn json_parse(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = match ctx.param("json_string") {
        Value::Null => String::new(),
        Value::Str(s) => s.to_string(),
        other => {
            return Err(NodeError::type_error(format!(
                "input 'json_string' must be JSON text, not {}",
                other.type_name()
            )))
        }
    };
    if text.trim().is_empty() {
        return Err(NodeError::value("input 'json_string' is empty"));
    }
    let data = Value::parse_json(text.trim())
        .map_err(|e| NodeError::value(format!("invalid JSON: {e}")))?;
    ctx.set_output("data", data);
    Ok(Flow::Next)
}

/// `GetPropertyNode`: the value at `property_path` (dot path, `[n]` list indexes) inside
/// `object`, or `None` when missing; an empty path gives the object itself. `object` may be a dict,
/// a list or JSON text of one; a missing object is `{}`.
fn get_property(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let object = match ctx.param("object") {
        Value::Null => Value::dict(Dict::new()),
        v @ (Value::Dict(_) | Value::List(_)) => v,
        Value::Str(s) if s.trim_start().starts_with(['{', '[']) => {
            match Value::parse_json(s.trim()) {
                Ok(v @ (Value::Dict(_) | Value::List(_))) => v,
                _ => return Err(not_a_dict("object", &Value::Str(s))),
            }
        }
        other => return Err(not_a_dict("object", &other)),
    };
    let path = ctx.param_str("property_path");
    let value = lookup_path(&object, &path).unwrap_or(Value::Null);
    ctx.set_output("value", value);
    Ok(Flow::Next)
}

fn not_a_dict(name: &str, v: &Value) -> NodeError {
    let mut shown = v.py_str();
    if shown.chars().count() > 80 {
        shown = shown.chars().take(77).collect::<String>() + "...";
    }
    NodeError::type_error(format!(
        "input '{name}' is not a dictionary (got {}: {shown})",
        v.type_name()
    ))
}

/// `DictSuperNode` (tier 2): runs the atomic node named by `action` (upstream's labels: Create
/// Dict, Get Value, Get Property, Has Key, Get Keys, Get Values, Get Items, Set Value, Remove Key,
/// Merge, Parse JSON, To JSON; case, spaces and underscores ignored) with that node's parameters
/// and output ports.
fn dict_super(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let action = ctx.param_str("action");
    let norm = action
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let run: fn(&mut NodeCtx<'_>) -> Result<Flow, NodeError> = match norm.as_str() {
        "createdict" | "create" => create_dict,
        "getvalue" | "get" => dict_get,
        "getproperty" => get_property,
        "haskey" => dict_has_key,
        "getkeys" | "keys" => dict_keys,
        "getvalues" | "values" => dict_values,
        "getitems" | "items" => dict_items,
        "setvalue" | "set" => dict_set,
        "removekey" | "remove" => dict_remove,
        "merge" => dict_merge,
        "parsejson" => json_parse,
        "tojson" => dict_to_json,
        _ => {
            return Err(NodeError::value(format!(
                "unknown action '{action}' (expected one of Create Dict, Get Value, Get \
                 Property, Has Key, Get Keys, Get Values, Get Items, Set Value, Remove Key, \
                 Merge, Parse JSON, To JSON)"
            )))
        }
    };
    run(ctx)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    /// Batch 1.1 with the reference's fixes (`dict_set.dict` → `dict_set.result`, `dict1/dict2` →
    /// `dict_1/dict_2`, `.dict` → `.result` after merge and remove).
    #[test]
    fn batch_1_1_corrected_values() {
        let ran = run_chain(&[
            (
                "create_dict",
                "CreateDictNode",
                json!({"key_1": "name", "value_1": "Alice", "key_2": "age", "value_2": 30,
                       "key_3": "city", "value_3": "NYC"}),
            ),
            (
                "dict_get",
                "DictGetNode",
                json!({"dict": "{{create_dict.dict}}", "key": "name"}),
            ),
            (
                "dict_set",
                "DictSetNode",
                json!({"dict": "{{create_dict.dict}}", "key": "country", "value": "USA"}),
            ),
            (
                "dict_has_key",
                "DictHasKeyNode",
                json!({"dict": "{{dict_set.result}}", "key": "country"}),
            ),
            (
                "dict_keys",
                "DictKeysNode",
                json!({"dict": "{{dict_set.result}}"}),
            ),
            (
                "dict_values",
                "DictValuesNode",
                json!({"dict": "{{dict_set.result}}"}),
            ),
            (
                "dict_items",
                "DictItemsNode",
                json!({"dict": "{{dict_set.result}}"}),
            ),
            (
                "create_dict2",
                "CreateDictNode",
                json!({"key_1": "x", "value_1": 100, "key_2": "y", "value_2": 200}),
            ),
            (
                "dict_merge",
                "DictMergeNode",
                json!({"dict_1": "{{dict_set.result}}", "dict_2": "{{create_dict2.dict}}"}),
            ),
            (
                "dict_remove",
                "DictRemoveNode",
                json!({"dict": "{{dict_merge.result}}", "key": "x"}),
            ),
            (
                "dict_to_json",
                "DictToJsonNode",
                json!({"dict": "{{dict_remove.result}}"}),
            ),
            (
                "create_list",
                "CreateListNode",
                json!({"item_1": "apple", "item_2": "banana", "item_3": "cherry",
                       "item_4": "date", "item_5": "elderberry"}),
            ),
            (
                "json_parse",
                "JsonParseNode",
                json!({"json_string": "{\"parsed\": true, \"count\": 5}"}),
            ),
        ]);
        ok(&ran);
        let expect = [
            (
                "create_dict",
                "dict",
                "{'name': 'Alice', 'age': 30, 'city': 'NYC'}",
            ),
            ("dict_get", "value", "'Alice'"),
            ("dict_get", "found", "True"),
            (
                "dict_set",
                "result",
                "{'name': 'Alice', 'age': 30, 'city': 'NYC', 'country': 'USA'}",
            ),
            ("dict_has_key", "has_key", "True"),
            ("dict_keys", "keys", "['name', 'age', 'city', 'country']"),
            ("dict_keys", "count", "4"),
            ("dict_values", "values", "['Alice', 30, 'NYC', 'USA']"),
            ("dict_values", "count", "4"),
            (
                "dict_items",
                "items",
                "[{'key': 'name', 'value': 'Alice'}, {'key': 'age', 'value': 30}, \
                 {'key': 'city', 'value': 'NYC'}, {'key': 'country', 'value': 'USA'}]",
            ),
            ("dict_items", "count", "4"),
            ("create_dict2", "dict", "{'x': 100, 'y': 200}"),
            (
                "dict_merge",
                "result",
                "{'name': 'Alice', 'age': 30, 'city': 'NYC', 'country': 'USA', 'x': 100, \
                 'y': 200}",
            ),
            ("dict_remove", "removed_value", "100"),
            (
                "dict_remove",
                "result",
                "{'name': 'Alice', 'age': 30, 'city': 'NYC', 'country': 'USA', 'y': 200}",
            ),
            ("create_list", "list", "['apple', 'banana', 'cherry']"),
            ("json_parse", "data", "{'parsed': True, 'count': 5}"),
        ];
        for (id, port, repr) in expect {
            assert_eq!(ran.out(id, port).py_repr(), repr, "{id}.{port}");
        }
        assert_eq!(
            ran.out("dict_to_json", "json_string"),
            Value::str(
                r#"{"name": "Alice", "age": 30, "city": "NYC", "country": "USA", "y": 200}"#
            )
        );
    }

    /// Batch 1.1 unfixed: `{{dict_set.dict}}` stays literal text, which is not a dictionary.
    #[test]
    fn unresolved_dict_reference_is_an_error() {
        let ran = one(
            "DictHasKeyNode",
            json!({"dict": "{{dict_set.dict}}", "key": "country"}),
        );
        assert_eq!(
            ran.error(),
            "n (DictHasKeyNode): input 'dict' is not a dictionary: {{dict_set.dict}}"
        );
        for ty in [
            "DictGetNode",
            "DictRemoveNode",
            "DictKeysNode",
            "DictValuesNode",
            "DictItemsNode",
        ] {
            let ran = one(ty, json!({"dict": 5, "key": "a"}));
            assert!(
                ran.error()
                    .contains("input 'dict' is not a dictionary (got int: 5)"),
                "{ty}: {}",
                ran.error()
            );
        }
    }

    /// Batch 7.1 (empty configs): every node works on `{}`.
    #[test]
    fn batch_7_1_values() {
        let ran = run_chain(&[
            ("create_dict", "CreateDictNode", json!({})),
            (
                "dict_set",
                "DictSetNode",
                json!({"key": "name", "value": "test"}),
            ),
            ("dict_get", "DictGetNode", json!({"key": "name"})),
            ("dict_keys", "DictKeysNode", json!({})),
            ("dict_values", "DictValuesNode", json!({})),
            ("dict_has_key", "DictHasKeyNode", json!({"key": "name"})),
            ("dict_items", "DictItemsNode", json!({})),
            ("dict_merge", "DictMergeNode", json!({})),
            ("dict_remove", "DictRemoveNode", json!({"key": "name"})),
            ("dict_to_json", "DictToJsonNode", json!({})),
            (
                "log_result",
                "LogNode",
                json!({"message": "Dict nodes tested!"}),
            ),
        ]);
        ok(&ran);
        let expect = [
            ("create_dict", "dict", "{}"),
            ("dict_set", "result", "{'name': 'test'}"),
            ("dict_get", "value", "None"),
            ("dict_get", "found", "False"),
            ("dict_keys", "keys", "[]"),
            ("dict_keys", "count", "0"),
            ("dict_values", "values", "[]"),
            ("dict_has_key", "has_key", "False"),
            ("dict_items", "items", "[]"),
            ("dict_merge", "result", "{}"),
            ("dict_remove", "result", "{}"),
            ("dict_remove", "removed_value", "None"),
            ("dict_to_json", "json_string", "'{}'"),
        ];
        for (id, port, repr) in expect {
            assert_eq!(ran.out(id, port).py_repr(), repr, "{id}.{port}");
        }
        assert_eq!(ran.logs.len(), 1);
        assert!(ran.logs[0].contains("Dict nodes tested!"), "{:?}", ran.logs);
    }

    /// The real fixture files, when the shared folder is present: 7.1 as is, 1.1 with the fixes.
    #[test]
    fn fixture_files_run() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/casare/workflows/node_tests/"
        );
        let Ok(b71) = std::fs::read_to_string(format!("{dir}batch_7_1_dict.json")) else {
            return; // fixtures not available in this checkout
        };
        let ran = run_json(&b71);
        ok(&ran);
        assert_eq!(ran.out("dict_set", "result").py_repr(), "{'name': 'test'}");
        let b11 = std::fs::read_to_string(format!("{dir}batch_1_1_variables.json"))
            .expect("batch 1.1 next to 7.1");
        let fixed = b11
            .replace("{{dict_set.dict}}", "{{dict_set.result}}")
            .replace("\"dict1\"", "\"dict_1\"")
            .replace("\"dict2\"", "\"dict_2\"")
            .replace("{{dict_merge.dict}}", "{{dict_merge.result}}")
            .replace("{{dict_remove.dict}}", "{{dict_remove.result}}");
        let ran = run_json(&fixed);
        ok(&ran);
        assert_eq!(
            ran.out("dict_to_json", "json_string"),
            Value::str(
                r#"{"name": "Alice", "age": 30, "city": "NYC", "country": "USA", "y": 200}"#
            )
        );
        assert!(matches!(ran.var("my_int"), Value::Float(f) if f == 52.0));
        // Unfixed, the run stops at dict_has_key (Mode I in the reference).
        let ran = run_json(&b11);
        assert!(
            ran.error()
                .starts_with("dict_has_key (DictHasKeyNode): input 'dict' is not a dictionary"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn create_dict_skips_empty_keys_and_resolves_twice() {
        let ran = run_node(
            "CreateDictNode",
            json!({"key_1": "a", "key_2": "", "value_2": 1, "key_3": 7, "value_3": "{{t}}"}),
            json!({"t": "x"}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "dict").py_repr(), "{'a': None, '7': 'x'}");
    }

    #[test]
    fn get_with_default_and_json_text_input() {
        let ran = one(
            "DictGetNode",
            json!({"dict": "{\"a\": 1}", "key": "b", "default": "none"}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "value"), Value::str("none"));
        assert_eq!(ran.out("n", "found"), Value::Bool(false));
        let ran = run_node(
            "DictGetNode",
            json!({"dict": "{{d}}", "key": "a"}),
            json!({"d": {"a": null}}),
        );
        assert_eq!(ran.out("n", "found"), Value::Bool(true));
        assert_eq!(ran.out("n", "value"), Value::Null);
    }

    #[test]
    fn set_remove_merge() {
        let ran = one("DictSetNode", json!({"dict": 5, "key": "k", "value": [1]}));
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "{'k': [1]}");
        let ran = one(
            "DictSetNode",
            json!({"dict": {"a": 1}, "key": "", "value": 1}),
        );
        assert_eq!(
            ran.error(),
            "n (DictSetNode): key is required (got an empty key)"
        );
        let ran = run_chain(&[
            (
                "s",
                "SetVariableNode",
                json!({"variable_name": "d", "value": {"a": 1, "b": 2, "c": 3}}),
            ),
            ("r", "DictRemoveNode", json!({"dict": "{{d}}", "key": "b"})),
        ]);
        ok(&ran);
        assert_eq!(ran.out("r", "result").py_repr(), "{'a': 1, 'c': 3}");
        assert!(matches!(ran.out("r", "removed_value"), Value::Int(2)));
        assert_eq!(
            ran.var("d").py_repr(),
            "{'a': 1, 'b': 2, 'c': 3}",
            "input untouched"
        );
        let ran = one(
            "DictMergeNode",
            json!({"dict_1": {"a": 1, "b": 2}, "dict_2": {"b": 3, "c": 4}}),
        );
        assert_eq!(ran.out("n", "result").py_repr(), "{'a': 1, 'b': 3, 'c': 4}");
        let ran = one("DictMergeNode", json!({"dict_1": "x", "dict_2": {"c": 4}}));
        assert_eq!(ran.out("n", "result").py_repr(), "{'c': 4}");
    }

    #[test]
    fn to_json_options() {
        let d = json!({"b": "Zoë", "a": [1, 2.0, null, true]});
        let cases = [
            (json!({}), r#"{"b": "Zo\u00eb", "a": [1, 2.0, null, true]}"#),
            (
                json!({"sort_keys": true, "ensure_ascii": false}),
                r#"{"a": [1, 2.0, null, true], "b": "Zoë"}"#,
            ),
            (
                json!({"indent": 2}),
                "{\n  \"b\": \"Zo\\u00eb\",\n  \"a\": [\n    1,\n    2.0,\n    null,\n    true\n  ]\n}",
            ),
            (
                json!({"indent": -1, "sort_keys": "true"}),
                "{\n\"a\": [\n1,\n2.0,\nnull,\ntrue\n],\n\"b\": \"Zo\\u00eb\"\n}",
            ),
        ];
        for (opts, expected) in cases {
            let mut config = opts.as_object().unwrap().clone();
            config.insert("dict".into(), d.clone());
            let ran = one("DictToJsonNode", serde_json::Value::Object(config));
            ok(&ran);
            assert_eq!(ran.out("n", "json_string"), Value::str(expected), "{opts}");
        }
        let ran = one("DictToJsonNode", json!({"dict": [1, "a"]}));
        assert_eq!(ran.out("n", "json_string"), Value::str(r#"[1, "a"]"#));
        let ran = one("DictToJsonNode", json!({"dict": {}, "indent": 5000}));
        assert!(
            ran.error().contains("indent 5000 is too large"),
            "{}",
            ran.error()
        );
        let ran = one("DictToJsonNode", json!({"dict": {}, "indent": "wide"}));
        assert!(ran.error().contains("input 'indent' must be an integer"));
    }

    #[test]
    fn json_parse_values_and_errors() {
        let ran = one("JsonParseNode", json!({"json_string": " [1, 2.5, \"x\"] "}));
        ok(&ran);
        assert_eq!(ran.out("n", "data").py_repr(), "[1, 2.5, 'x']");
        let ran = one("JsonParseNode", json!({"json_string": "42"}));
        assert!(matches!(ran.out("n", "data"), Value::Int(42)));
        let ran = one("JsonParseNode", json!({}));
        assert_eq!(
            ran.error(),
            "n (JsonParseNode): input 'json_string' is empty"
        );
        let ran = one(
            "JsonParseNode",
            json!({"json_string": "{\"a\": 1,\n \"b\": }"}),
        );
        assert_eq!(
            ran.error(),
            "n (JsonParseNode): invalid JSON: expected value at line 2 column 7"
        );
        let ran = run_node(
            "JsonParseNode",
            json!({"json_string": "{{d}}"}),
            json!({"d": {"a": 1}}),
        );
        assert_eq!(
            ran.error(),
            "n (JsonParseNode): input 'json_string' must be JSON text, not dict"
        );
    }

    #[test]
    fn get_property_paths() {
        let obj = json!({"user": {"name": "Ann", "tags": ["a", "b"]}, "a.b": 1,
                         "rows": [{"id": 7}]});
        let cases = [
            ("user.name", "'Ann'"),
            ("user.tags[1]", "'b'"),
            ("user.tags.0", "'a'"),
            ("user.tags[-1]", "'b'"),
            ("rows[0].id", "7"),
            ("a.b", "1"),
            ("user.missing", "None"),
            ("user.tags[5]", "None"),
            ("user.name.first", "None"),
            (
                "",
                "{'user': {'name': 'Ann', 'tags': ['a', 'b']}, 'a.b': 1, 'rows': [{'id': 7}]}",
            ),
        ];
        for (path, expected) in cases {
            let ran = one(
                "GetPropertyNode",
                json!({"object": obj, "property_path": path}),
            );
            ok(&ran);
            assert_eq!(ran.out("n", "value").py_repr(), expected, "{path}");
        }
        let ran = one(
            "GetPropertyNode",
            json!({"object": "[{\"x\": 1}]", "property_path": "[0].x"}),
        );
        assert!(matches!(ran.out("n", "value"), Value::Int(1)));
        let ran = one(
            "GetPropertyNode",
            json!({"object": "text", "property_path": "a"}),
        );
        assert_eq!(
            ran.error(),
            "n (GetPropertyNode): input 'object' is not a dictionary (got str: text)"
        );
    }

    #[test]
    fn super_node_dispatches_by_action() {
        let ran = one(
            "DictSuperNode",
            json!({"action": "Set Value", "dict": {"a": 1}, "key": "b", "value": 2}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "{'a': 1, 'b': 2}");
        let ran = one("DictSuperNode", json!({"dict": {"a": 1}, "key": "a"}));
        assert!(matches!(ran.out("n", "value"), Value::Int(1)));
        let ran = one(
            "DictSuperNode",
            json!({"action": "to_json", "dict": {"a": 1}}),
        );
        assert_eq!(ran.out("n", "json_string"), Value::str(r#"{"a": 1}"#));
        let ran = one("DictSuperNode", json!({"action": "Shred"}));
        assert!(ran.error().contains("unknown action 'Shred'"));
    }
}

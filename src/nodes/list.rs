//! List nodes (CasareRPA `list_nodes.py`): CreateList, ListGetItem, ListLength, ListAppend,
//! ListContains, ListSlice, ListJoin, ListSort, ListReverse, ListUnique, ListFilter, ListMap,
//! ListReduce, ListFlatten, and the tier-2 `ListSuperNode` that dispatches to them by `action`.
//!
//! Every `list` parameter goes through [`NodeCtx::param_list`] (CasareRPA's variable-name
//! indirection: text names a variable, a missing variable is an empty list). Lists are never
//! mutated in place: each node outputs a new list. Comparisons use Python semantics
//! ([`Value::py_eq`], [`Value::py_cmp`]), so sorting mixed types fails with Python's `TypeError`
//! text. Deviations from upstream, all toward the intended behaviour: an unknown ListFilter
//! `condition`, ListMap `transform` or ListReduce `operation` is an error (upstream kept every item,
//! returned the item unchanged, or failed only for non-empty lists); ListFilter compares numeric
//! text with numbers numerically (config values often arrive as text); ListMap's text transforms
//! turn only `None` into `""` (upstream also blanked `0` and `False`); `key_path` also accepts
//! `[n]` list indexes (see [`super::dict::lookup_path`]). Joined text is capped at 100 MB.

use super::dict::lookup_path;
use crate::engine::node::{
    opt, py_float, to_f64, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind,
};
use crate::engine::value::{float_repr, Value};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;

/// Largest text a list node may produce.
const MAX_TEXT: usize = 100 * 1024 * 1024;
/// Deepest ListFlatten `depth` honoured.
const MAX_FLATTEN_DEPTH: i64 = 100;

const LIST: crate::engine::node::ParamDef = opt("list", Lit::Null);

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "CreateListNode",
        &[
            opt("item_1", Lit::Null),
            opt("item_2", Lit::Null),
            opt("item_3", Lit::Null),
        ],
        &["list"],
        create_list,
    ),
    NodeDef::plain(
        "ListGetItemNode",
        &[LIST, opt("index", Lit::Int(0))],
        &["item"],
        list_get_item,
    ),
    NodeDef::plain("ListLengthNode", &[LIST], &["length"], list_length),
    NodeDef::plain(
        "ListAppendNode",
        &[LIST, opt("item", Lit::Null)],
        &["result"],
        list_append,
    ),
    NodeDef::plain(
        "ListContainsNode",
        &[LIST, opt("item", Lit::Null)],
        &["contains", "index"],
        list_contains,
    ),
    NodeDef::plain(
        "ListSliceNode",
        &[LIST, opt("start", Lit::Int(0)), opt("end", Lit::Null)],
        &["result"],
        list_slice,
    ),
    NodeDef::plain(
        "ListJoinNode",
        &[LIST, opt("separator", Lit::Str(", "))],
        &["result"],
        list_join,
    ),
    NodeDef::plain(
        "ListSortNode",
        &[
            LIST,
            opt("reverse", Lit::Bool(false)),
            opt("key_path", Lit::Str("")),
        ],
        &["result"],
        list_sort,
    ),
    NodeDef::plain("ListReverseNode", &[LIST], &["result"], list_reverse),
    NodeDef::plain("ListUniqueNode", &[LIST], &["result"], list_unique),
    NodeDef::plain(
        "ListFilterNode",
        &[
            LIST,
            opt("condition", Lit::Str("is_not_none")),
            opt("value", Lit::Null),
            opt("key_path", Lit::Str("")),
        ],
        &["result", "removed"],
        list_filter,
    ),
    NodeDef::plain(
        "ListMapNode",
        &[
            LIST,
            opt("transform", Lit::Str("to_string")),
            opt("key_path", Lit::Str("")),
        ],
        &["result"],
        list_map,
    ),
    NodeDef::plain(
        "ListReduceNode",
        &[
            LIST,
            opt("operation", Lit::Str("sum")),
            opt("key_path", Lit::Str("")),
            opt("initial", Lit::Null),
        ],
        &["result"],
        list_reduce,
    ),
    NodeDef::plain(
        "ListFlattenNode",
        &[LIST, opt("depth", Lit::Int(1))],
        &["result"],
        list_flatten,
    ),
    NodeDef {
        node_type: "ListSuperNode",
        params: &[
            LIST,
            opt("action", Lit::Str("Get Item")),
            opt("index", Lit::Int(0)),
            opt("item", Lit::Null),
            opt("item_1", Lit::Null),
            opt("item_2", Lit::Null),
            opt("item_3", Lit::Null),
            opt("start", Lit::Int(0)),
            opt("end", Lit::Null),
            opt("separator", Lit::Str(", ")),
            opt("reverse", Lit::Bool(false)),
            opt("key_path", Lit::Str("")),
            opt("condition", Lit::Str("is_not_none")),
            opt("value", Lit::Null),
            opt("transform", Lit::Str("to_string")),
            opt("operation", Lit::Str("sum")),
            opt("initial", Lit::Null),
            opt("depth", Lit::Int(1)),
        ],
        outputs: &[
            "list", "item", "length", "contains", "index", "result", "removed",
        ],
        routes: crate::engine::node::EXEC_OUT,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: list_super,
    },
];

fn the_list(ctx: &NodeCtx<'_>) -> Result<Arc<Vec<Value>>, NodeError> {
    ctx.param_list("list")
}

fn out_list(ctx: &mut NodeCtx<'_>, port: &str, items: Vec<Value>) {
    ctx.set_output(port, Value::list(items));
}

/// `CreateListNode`: a list of `item_1..item_3` (upstream reads only these three; further
/// `item_N` keys in config are ignored, as upstream does), skipping nulls. A text item that names
/// an existing variable is replaced by that variable's value (upstream's variable-name
/// indirection); other text stays literal.
fn create_list(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut items = Vec::new();
    for name in ["item_1", "item_2", "item_3"] {
        match ctx.param(name) {
            Value::Null => {}
            Value::Str(s) => {
                let var = s
                    .trim()
                    .trim_start_matches("{{")
                    .trim_end_matches("}}")
                    .trim();
                match ctx.var(var) {
                    Some(v) if !var.is_empty() && !v.is_null() => items.push(v.clone()),
                    _ => items.push(Value::Str(s)),
                }
            }
            other => items.push(other),
        }
    }
    out_list(ctx, "list", items);
    Ok(Flow::Next)
}

/// Resolve a Python index (negative counts from the end) against `len`.
fn py_index(index: i64, len: usize) -> Option<usize> {
    let len_i = i64::try_from(len).ok()?;
    let idx = if index < 0 {
        index.checked_add(len_i)?
    } else {
        index
    };
    (0..len_i).contains(&idx).then_some(idx as usize)
}

/// `ListGetItemNode`: `list[index]`; negative indexes count from the end; out of range is an
/// `IndexError`.
fn list_get_item(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let index = ctx.param_i64("index")?;
    let item = py_index(index, list.len())
        .map(|i| list[i].clone())
        .ok_or_else(|| {
            NodeError::index(format!(
                "list index out of range (index {index}, length {})",
                list.len()
            ))
        })?;
    ctx.set_output("item", item);
    Ok(Flow::Next)
}

/// `ListLengthNode`: `len(list)`.
fn list_length(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    ctx.set_output("length", Value::from(list.len()));
    Ok(Flow::Next)
}

/// `ListAppendNode`: a copy of `list` with `item` appended (a missing item appends `None`, as
/// upstream).
fn list_append(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let mut result = Vec::with_capacity(list.len() + 1);
    result.extend(list.iter().cloned());
    result.push(ctx.param("item"));
    out_list(ctx, "result", result);
    Ok(Flow::Next)
}

/// `ListContainsNode`: `item in list` (Python `==`, so `1 == 1.0`) and the first index (-1).
fn list_contains(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let item = ctx.param("item");
    let pos = list.iter().position(|x| x.py_eq(&item));
    ctx.set_output("contains", Value::Bool(pos.is_some()));
    ctx.set_output("index", pos.map_or(Value::Int(-1), Value::from));
    Ok(Flow::Next)
}

/// Python slice bounds (`start`/`end` may be negative or past the end; `None` is open).
fn slice_bounds(start: Option<i64>, end: Option<i64>, len: usize) -> (usize, usize) {
    let n = i64::try_from(len).unwrap_or(i64::MAX);
    let norm = |v: i64| -> i64 {
        if v < 0 {
            v.saturating_add(n).max(0)
        } else {
            v.min(n)
        }
    };
    let s = start.map_or(0, norm);
    let e = end.map_or(n, norm);
    if s >= e {
        (0, 0)
    } else {
        (s as usize, e as usize)
    }
}

/// `ListSliceNode`: `list[start:end]` with Python's clamping and negative indexes; `end` empty
/// means "to the end".
fn list_slice(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let start = ctx.param_opt_i64("start")?;
    let end = ctx.param_opt_i64("end")?;
    let (s, e) = slice_bounds(start, end, list.len());
    out_list(ctx, "result", list[s..e].to_vec());
    Ok(Flow::Next)
}

fn too_long(what: &str) -> NodeError {
    NodeError::value(format!("{what} would be longer than 100 MB"))
}

/// `ListJoinNode`: `separator.join(str(x) for x in list)`. The separator is first looked up as a
/// variable name (upstream's indirection), else used literally.
fn list_join(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let raw = ctx.param("separator");
    let sep = match &raw {
        Value::Str(s) if !s.trim().is_empty() => {
            let var = s
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim();
            match ctx.var(var) {
                Some(v) if !v.is_null() => v.py_str(),
                _ => s.to_string(),
            }
        }
        Value::Null => String::new(),
        other => other.py_str(),
    };
    let joined = join_values(list.iter(), &sep)?;
    ctx.set_output("result", Value::from(joined));
    Ok(Flow::Next)
}

fn join_values<'v>(items: impl Iterator<Item = &'v Value>, sep: &str) -> Result<String, NodeError> {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        item.write_py_str(&mut out);
        if out.len() > MAX_TEXT {
            return Err(too_long("the joined text"));
        }
    }
    Ok(out)
}

/// Stable merge sort with a fallible "less than" (Python's `sorted` semantics: stable; with
/// `reverse` equal items keep their order). It cannot panic on inconsistent orders (NaN).
fn py_sort(items: Vec<(Value, Value)>, reverse: bool) -> Result<Vec<(Value, Value)>, NodeError> {
    if items.len() <= 1 {
        return Ok(items);
    }
    let mut items = items;
    let right = items.split_off(items.len() / 2);
    let left = py_sort(items, reverse)?;
    let right = py_sort(right, reverse)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        // Take from the right only when it strictly precedes the left (stability).
        let take_right = if reverse {
            a.0.py_cmp(&b.0, "<").map_err(NodeError::type_error)? == Ordering::Less
        } else {
            b.0.py_cmp(&a.0, "<").map_err(NodeError::type_error)? == Ordering::Less
        };
        let next = if take_right { r.next() } else { l.next() };
        out.extend(next);
    }
    out.extend(l);
    out.extend(r);
    Ok(out)
}

fn key_of(item: &Value, key_path: &str) -> Value {
    if key_path.is_empty() {
        item.clone()
    } else {
        lookup_path(item, key_path).unwrap_or(Value::Null)
    }
}

/// `ListSortNode`: a sorted copy (Python ordering; mixed types are a `TypeError` like Python's),
/// optionally by the value at `key_path` in each item (missing → `None`), `reverse` for
/// descending. Output port `result`.
fn list_sort(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let reverse = ctx.param_bool("reverse");
    let key_path = ctx.param_str("key_path");
    let keyed: Vec<(Value, Value)> = list
        .iter()
        .map(|item| (key_of(item, key_path.trim()), item.clone()))
        .collect();
    let sorted = py_sort(keyed, reverse)?;
    out_list(ctx, "result", sorted.into_iter().map(|(_, v)| v).collect());
    Ok(Flow::Next)
}

/// `ListReverseNode`: a reversed copy.
fn list_reverse(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    out_list(ctx, "result", list.iter().rev().cloned().collect());
    Ok(Flow::Next)
}

/// Identity used for de-duplication: Python hashing equates `1`, `1.0` and `True`; unhashable
/// lists/dicts are compared by their `str()` as upstream does. `None` means "never equal" (NaN).
fn unique_key(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "N".to_string(),
        Value::Bool(b) => format!("n{}", i64::from(*b)),
        Value::Int(i) => format!("n{i}"),
        Value::Float(f) if f.is_nan() => return None,
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => format!("n{}", *f as i64),
        Value::Float(f) => format!("f{}", float_repr(*f)),
        Value::Str(s) => format!("s{s}"),
        Value::Handle(h) => format!("h{}", h.id),
        Value::List(_) | Value::Dict(_) => format!("u{}", v.py_str()),
    })
}

/// `ListUniqueNode`: duplicates removed (Python equality, first occurrence kept, order kept).
fn list_unique(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let mut seen = HashSet::new();
    let result = list
        .iter()
        .filter(|item| unique_key(item).is_none_or(|k| seen.insert(k)))
        .cloned()
        .collect();
    out_list(ctx, "result", result);
    Ok(Flow::Next)
}

/// Ordering for ListFilter's greater/less: Python's, plus numeric text against numbers.
fn filter_cmp(a: &Value, b: &Value, op: &str) -> Result<Ordering, NodeError> {
    let num = |v: &Value| match v {
        Value::Str(_) => to_f64(v),
        other => other.as_f64(),
    };
    match (a, b) {
        (Value::Str(_), Value::Int(_) | Value::Float(_))
        | (Value::Int(_) | Value::Float(_), Value::Str(_)) => {
            if let (Some(x), Some(y)) = (num(a), num(b)) {
                return Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal));
            }
        }
        _ => {}
    }
    a.py_cmp(b, op).map_err(NodeError::type_error)
}

const FILTER_CONDITIONS: &str = "equals, not_equals, contains, starts_with, ends_with, \
     greater_than, less_than, is_not_none, is_none, is_truthy, is_falsy";

fn filter_match(cond: &str, val: &Value, cmp: &Value) -> Result<bool, NodeError> {
    Ok(match cond {
        "equals" => val.py_eq(cmp),
        "not_equals" => !val.py_eq(cmp),
        "contains" => val.truthy() && val.py_str().contains(&cmp.py_str()),
        "starts_with" => val.truthy() && val.py_str().starts_with(&cmp.py_str()),
        "ends_with" => val.truthy() && val.py_str().ends_with(&cmp.py_str()),
        "greater_than" => !val.is_null() && filter_cmp(val, cmp, ">")? == Ordering::Greater,
        "less_than" => !val.is_null() && filter_cmp(val, cmp, "<")? == Ordering::Less,
        "is_not_none" => !val.is_null(),
        "is_none" => val.is_null(),
        "is_truthy" => val.truthy(),
        "is_falsy" => !val.truthy(),
        other => {
            return Err(NodeError::value(format!(
                "unknown condition '{other}' (expected one of {FILTER_CONDITIONS})"
            )))
        }
    })
}

/// `ListFilterNode`: splits `list` into `result` (items matching `condition` against `value`,
/// applied to the item or to its `key_path` value) and `removed`. Conditions: equals, not_equals,
/// contains / starts_with / ends_with (on `str()`, false for falsy items), greater_than /
/// less_than (false for `None`), is_not_none (default), is_none, is_truthy, is_falsy.
fn list_filter(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let cond = ctx.param_str("condition").trim().to_ascii_lowercase();
    let cond = if cond.is_empty() {
        "is_not_none".to_string()
    } else {
        cond
    };
    let cmp = ctx.param("value");
    let key_path = ctx.param_str("key_path");
    let (mut kept, mut removed) = (Vec::new(), Vec::new());
    for item in list.iter() {
        let val = key_of(item, key_path.trim());
        if filter_match(&cond, &val, &cmp)? {
            kept.push(item.clone());
        } else {
            removed.push(item.clone());
        }
    }
    // Validate the condition even for an empty list.
    filter_match(&cond, &Value::Null, &cmp)?;
    out_list(ctx, "result", kept);
    out_list(ctx, "removed", removed);
    Ok(Flow::Next)
}

/// Python `int(v)` for the values a list holds.
fn py_int(v: &Value) -> Result<Value, NodeError> {
    match v {
        Value::Null => Ok(Value::Int(0)),
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => Ok(Value::Int(f.trunc() as i64)),
        Value::Float(f) => Err(NodeError::value(format!(
            "cannot convert float {} to integer",
            float_repr(*f)
        ))),
        Value::Str(s) => s
            .trim()
            .replace('_', "")
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| {
                NodeError::value(format!(
                    "invalid literal for int() with base 10: {}",
                    v.py_repr()
                ))
            }),
        other => Err(NodeError::type_error(format!(
            "int() argument must be a string or a number, not '{}'",
            other.type_name()
        ))),
    }
}

/// Python `len(v)` (characters for text); `None` counts as 0, as upstream.
fn py_len(v: &Value) -> Result<Value, NodeError> {
    match v {
        Value::Null => Ok(Value::Int(0)),
        Value::Str(s) => Ok(Value::from(s.chars().count())),
        Value::List(l) => Ok(Value::from(l.len())),
        Value::Dict(d) => Ok(Value::from(d.len())),
        other => Err(NodeError::type_error(format!(
            "object of type '{}' has no len()",
            other.type_name()
        ))),
    }
}

fn text_or_empty(v: &Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::Null => Value::str(""),
        other => Value::from(f(&other.py_str())),
    }
}

fn map_item(transform: &str, val: &Value) -> Result<Value, NodeError> {
    match transform {
        "get_property" => Ok(val.clone()),
        "to_string" => Ok(text_or_empty(val, str::to_string)),
        "to_int" => py_int(val),
        "to_float" => match val {
            Value::Null => Ok(Value::Float(0.0)),
            other => py_float(other).map(Value::Float),
        },
        "to_upper" => Ok(text_or_empty(val, str::to_uppercase)),
        "to_lower" => Ok(text_or_empty(val, str::to_lowercase)),
        "trim" => Ok(text_or_empty(val, |s| s.trim().to_string())),
        "length" => py_len(val),
        other => Err(NodeError::value(format!(
            "unknown transform '{other}' (expected one of get_property, to_string, to_int, \
             to_float, to_upper, to_lower, trim, length)"
        ))),
    }
}

/// `ListMapNode`: each item (or its `key_path` value) transformed by `transform`: get_property,
/// to_string (default), to_int, to_float, to_upper, to_lower, trim, length. `None` maps to
/// `""`, `0` or `0.0`.
fn list_map(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let transform = ctx.param_str("transform").trim().to_ascii_lowercase();
    let transform = if transform.is_empty() {
        "to_string".to_string()
    } else {
        transform
    };
    map_item(&transform, &Value::Null)?;
    let key_path = ctx.param_str("key_path");
    let mut result = Vec::with_capacity(list.len());
    let mut size = 0usize;
    for item in list.iter() {
        let mapped = map_item(&transform, &key_of(item, key_path.trim()))?;
        size += mapped.as_str().map_or(0, str::len);
        if size > MAX_TEXT {
            return Err(too_long("the mapped text"));
        }
        result.push(mapped);
    }
    out_list(ctx, "result", result);
    Ok(Flow::Next)
}

const REDUCE_OPS: &[&str] = &[
    "sum", "product", "min", "max", "avg", "count", "first", "last", "join",
];

/// `ListReduceNode`: reduces the non-`None` items (or their `key_path` values) with
/// `operation`: sum (float, as upstream), product (float), min, max, avg (float), count, first,
/// last, join (`initial` is the separator). An empty list gives `initial`, else `0` for
/// sum/product/avg/count and `None` otherwise.
fn list_reduce(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let op = ctx.param_str("operation").trim().to_ascii_lowercase();
    let op = if op.is_empty() { "sum".to_string() } else { op };
    if !REDUCE_OPS.contains(&op.as_str()) {
        return Err(NodeError::value(format!(
            "unknown operation '{op}' (expected one of {})",
            REDUCE_OPS.join(", ")
        )));
    }
    let key_path = ctx.param_str("key_path");
    let initial = ctx.param("initial");
    let values: Vec<Value> = list
        .iter()
        .map(|item| key_of(item, key_path.trim()))
        .filter(|v| !v.is_null())
        .collect();
    let result = reduce(&op, &values, initial)?;
    ctx.set_output("result", result);
    Ok(Flow::Next)
}

fn reduce(op: &str, values: &[Value], initial: Value) -> Result<Value, NodeError> {
    if values.is_empty() {
        return Ok(match initial {
            Value::Null if matches!(op, "sum" | "product" | "avg" | "count") => Value::Int(0),
            other => other,
        });
    }
    let floats = || values.iter().map(py_float).collect::<Result<Vec<f64>, _>>();
    let extreme = |want: Ordering, op_text: &str| -> Result<Value, NodeError> {
        let mut best = &values[0];
        for v in &values[1..] {
            if v.py_cmp(best, op_text).map_err(NodeError::type_error)? == want {
                best = v;
            }
        }
        Ok(best.clone())
    };
    Ok(match op {
        "sum" => Value::Float(floats()?.iter().sum()),
        "product" => Value::Float(floats()?.iter().product()),
        "avg" => Value::Float(floats()?.iter().sum::<f64>() / values.len() as f64),
        "min" => extreme(Ordering::Less, "<")?,
        "max" => extreme(Ordering::Greater, ">")?,
        "count" => Value::from(values.len()),
        "first" => values[0].clone(),
        "last" => values[values.len() - 1].clone(),
        _ => {
            let sep = if initial.truthy() {
                initial.py_str()
            } else {
                String::new()
            };
            Value::from(join_values(values.iter(), &sep)?)
        }
    })
}

fn flatten_into(items: &[Value], depth: i64, out: &mut Vec<Value>) {
    for item in items {
        match item {
            Value::List(inner) if depth > 0 => flatten_into(inner, depth - 1, out),
            other => out.push(other.clone()),
        }
    }
}

/// `ListFlattenNode`: nested lists spliced in, `depth` levels deep (default 1, at most 100; 0 or
/// less copies the list).
fn list_flatten(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let list = the_list(ctx)?;
    let depth = ctx.param_i64("depth")?.min(MAX_FLATTEN_DEPTH);
    let mut result = Vec::with_capacity(list.len());
    flatten_into(&list, depth, &mut result);
    out_list(ctx, "result", result);
    Ok(Flow::Next)
}

/// `ListSuperNode` (tier 2): runs the atomic node named by `action` (upstream's labels: Create
/// List, Get Item, Length, Contains, Append, Slice, Sort, Reverse, Unique, Filter, Map, Reduce,
/// Flatten, Join; case and spaces/underscores ignored) with the same parameters and output
/// ports as that atomic node. Upstream's super node used other port names and Python expressions
/// for Filter/Map/Reduce; this robot keeps the atomic nodes' declarative options instead.
fn list_super(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let action = ctx.param_str("action");
    let norm: String = action
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let run: fn(&mut NodeCtx<'_>) -> Result<Flow, NodeError> = match norm.as_str() {
        "createlist" | "create" => create_list,
        "getitem" | "get" => list_get_item,
        "length" | "len" => list_length,
        "contains" => list_contains,
        "append" => list_append,
        "slice" => list_slice,
        "sort" => list_sort,
        "reverse" => list_reverse,
        "unique" => list_unique,
        "filter" => list_filter,
        "map" => list_map,
        "reduce" => list_reduce,
        "flatten" => list_flatten,
        "join" => list_join,
        _ => {
            return Err(NodeError::value(format!(
                "unknown action '{action}' (expected one of Create List, Get Item, Length, \
                 Contains, Append, Slice, Sort, Reverse, Unique, Filter, Map, Reduce, Flatten, \
                 Join)"
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

    /// Batch 1.2 with the reference's fixes (`sorted_list`/`unique_list` → `result`).
    #[test]
    fn batch_1_2_corrected_values() {
        let ran = run_chain(&[
            (
                "init_list",
                "SetVariableNode",
                json!({"variable_name": "base_list", "value": [5, 3, 8, 1, 9, 3]}),
            ),
            (
                "list_append",
                "ListAppendNode",
                json!({"list": "{{base_list}}", "item": 10}),
            ),
            (
                "list_get_item",
                "ListGetItemNode",
                json!({"list": "{{list_append.result}}", "index": 0}),
            ),
            (
                "list_contains",
                "ListContainsNode",
                json!({"list": "{{list_append.result}}", "item": 8}),
            ),
            (
                "list_length",
                "ListLengthNode",
                json!({"list": "{{list_append.result}}"}),
            ),
            (
                "list_sort",
                "ListSortNode",
                json!({"list": "{{list_append.result}}", "reverse": false}),
            ),
            (
                "list_reverse",
                "ListReverseNode",
                json!({"list": "{{list_sort.result}}"}),
            ),
            (
                "list_unique",
                "ListUniqueNode",
                json!({"list": "{{list_append.result}}"}),
            ),
            (
                "list_slice",
                "ListSliceNode",
                json!({"list": "{{list_unique.result}}", "start": 1, "end": 4}),
            ),
            (
                "nested_list",
                "SetVariableNode",
                json!({"variable_name": "nested", "value": [[1, 2], [3, 4], [5, 6]]}),
            ),
            (
                "list_flatten",
                "ListFlattenNode",
                json!({"list": "{{nested}}"}),
            ),
            (
                "string_list",
                "SetVariableNode",
                json!({"variable_name": "str_list", "value": ["apple", "banana", "cherry"]}),
            ),
            (
                "list_join",
                "ListJoinNode",
                json!({"list": "{{str_list}}", "separator": ", "}),
            ),
        ]);
        ok(&ran);
        let expect = [
            ("list_append", "result", "[5, 3, 8, 1, 9, 3, 10]"),
            ("list_get_item", "item", "5"),
            ("list_contains", "contains", "True"),
            ("list_contains", "index", "2"),
            ("list_length", "length", "7"),
            ("list_sort", "result", "[1, 3, 3, 5, 8, 9, 10]"),
            ("list_reverse", "result", "[10, 9, 8, 5, 3, 3, 1]"),
            ("list_unique", "result", "[5, 3, 8, 1, 9, 10]"),
            ("list_slice", "result", "[3, 8, 1]"),
            ("list_flatten", "result", "[1, 2, 3, 4, 5, 6]"),
            ("list_join", "result", "'apple, banana, cherry'"),
        ];
        for (id, port, repr) in expect {
            assert_eq!(ran.out(id, port).py_repr(), repr, "{id}.{port}");
        }
    }

    /// Batch 1.2 unfixed: an unresolved `{{list_sort.sorted_list}}` names no variable, so the
    /// list is empty (upstream's indirection), not an error.
    #[test]
    fn unresolved_list_reference_is_an_empty_list() {
        let ran = one(
            "ListReverseNode",
            json!({"list": "{{list_sort.sorted_list}}"}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "[]");
    }

    /// Batch 1.1's `create_list`: only `item_1..item_3` are read.
    #[test]
    fn create_list_reads_three_items_and_resolves_variable_names() {
        let ran = one(
            "CreateListNode",
            json!({"item_1": "apple", "item_2": "banana", "item_3": "cherry",
                   "item_4": "date", "item_5": "elderberry"}),
        );
        ok(&ran);
        assert_eq!(
            ran.out("n", "list").py_repr(),
            "['apple', 'banana', 'cherry']"
        );
        let ran = run_node(
            "CreateListNode",
            json!({"item_1": "nums", "item_3": 2.0}),
            json!({"nums": [1, 2]}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "list").py_repr(), "[[1, 2], 2.0]");
    }

    #[test]
    fn get_item_indexes() {
        for (index, expected) in [(0, "'a'"), (2, "'c'"), (-1, "'c'"), (-3, "'a'")] {
            let ran = one(
                "ListGetItemNode",
                json!({"list": ["a", "b", "c"], "index": index}),
            );
            ok(&ran);
            assert_eq!(ran.out("n", "item").py_repr(), expected, "index {index}");
        }
        for index in [9, -4] {
            let ran = one(
                "ListGetItemNode",
                json!({"list": ["a", "b", "c"], "index": index}),
            );
            assert_eq!(
                ran.error(),
                format!("n (ListGetItemNode): list index out of range (index {index}, length 3)")
            );
        }
        let ran = one("ListGetItemNode", json!({"list": [1], "index": "x"}));
        assert!(
            ran.error().contains("input 'index' must be an integer"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn list_parameter_type_errors() {
        let ran = one("ListLengthNode", json!({"list": 5}));
        assert_eq!(
            ran.error(),
            "n (ListLengthNode): input 'list' must be a list, got int 5"
        );
        let ran = run_node(
            "ListLengthNode",
            json!({"list": "d"}),
            json!({"d": {"a": 1}}),
        );
        assert!(
            ran.error().contains("must be a list, got dict"),
            "{}",
            ran.error()
        );
        // JSON array text is accepted.
        let ran = one("ListLengthNode", json!({"list": "[1, 2, 3]"}));
        assert!(matches!(ran.out("n", "length"), Value::Int(3)));
    }

    #[test]
    fn append_and_contains() {
        let ran = one("ListAppendNode", json!({"list": [1]}));
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "[1, None]");
        let ran = one(
            "ListContainsNode",
            json!({"list": [1, 2.0, "x"], "item": 2}),
        );
        assert_eq!(ran.out("n", "contains"), Value::Bool(true));
        assert!(matches!(ran.out("n", "index"), Value::Int(1)));
        let ran = one("ListContainsNode", json!({"list": [1], "item": "1"}));
        assert_eq!(ran.out("n", "contains"), Value::Bool(false));
        assert!(matches!(ran.out("n", "index"), Value::Int(-1)));
    }

    #[test]
    fn slices_follow_python() {
        let cases = [
            (json!(1), json!(4), "[1, 2, 3]"),
            (json!(-2), json!(null), "[4, 5]"),
            (json!(0), json!(-1), "[0, 1, 2, 3, 4]"),
            (json!(4), json!(2), "[]"),
            (json!(-100), json!(100), "[0, 1, 2, 3, 4, 5]"),
            (json!(""), json!(""), "[0, 1, 2, 3, 4, 5]"),
        ];
        for (start, end, expected) in cases {
            let ran = one(
                "ListSliceNode",
                json!({"list": [0, 1, 2, 3, 4, 5], "start": start, "end": end}),
            );
            ok(&ran);
            assert_eq!(ran.out("n", "result").py_repr(), expected, "{start}:{end}");
        }
    }

    #[test]
    fn join_uses_python_str_and_separator_variables() {
        let ran = one(
            "ListJoinNode",
            json!({"list": [1, 2.0, true, null, "x"], "separator": "-"}),
        );
        assert_eq!(ran.out("n", "result"), Value::str("1-2.0-True-None-x"));
        let ran = run_node(
            "ListJoinNode",
            json!({"list": ["a", "b"], "separator": "sep"}),
            json!({"sep": " | "}),
        );
        assert_eq!(ran.out("n", "result"), Value::str("a | b"));
        let ran = one("ListJoinNode", json!({"list": ["a", "b"]}));
        assert_eq!(ran.out("n", "result"), Value::str("a, b"));
    }

    #[test]
    fn sort_orders_keys_and_errors() {
        let ran = one(
            "ListSortNode",
            json!({"list": [3, 1.5, true, -2], "reverse": true}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "[3, 1.5, True, -2]");
        let ran = one("ListSortNode", json!({"list": ["b", "B", "a"]}));
        assert_eq!(ran.out("n", "result").py_repr(), "['B', 'a', 'b']");
        let people = json!([{"n": "x", "a": {"age": 30}}, {"n": "y", "a": {"age": 20}},
                            {"n": "z", "a": {"age": 30}}]);
        let ran = one(
            "ListSortNode",
            json!({"list": people, "key_path": "a.age", "reverse": true}),
        );
        ok(&ran);
        let names: Vec<String> = ran
            .out("n", "result")
            .as_list()
            .unwrap()
            .iter()
            .map(|p| p.as_dict().unwrap()["n"].py_str())
            .collect();
        assert_eq!(names, ["x", "z", "y"], "stable when reversed");
        let ran = one("ListSortNode", json!({"list": [3, "a"]}));
        assert_eq!(
            ran.error(),
            "n (ListSortNode): '<' not supported between instances of 'str' and 'int'"
        );
        let ran = one(
            "ListSortNode",
            json!({"list": [{"a": 1}, {"b": 2}], "key_path": "a"}),
        );
        assert!(
            ran.error().contains("'NoneType' and 'int'"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn sort_never_panics_on_nan() {
        let list: Vec<Value> = (0..50)
            .map(|i| {
                if i % 3 == 0 {
                    Value::Float(f64::NAN)
                } else {
                    Value::Int(50 - i)
                }
            })
            .collect();
        let keyed = list.into_iter().map(|v| (v.clone(), v)).collect();
        assert_eq!(py_sort(keyed, false).unwrap().len(), 50);
    }

    #[test]
    fn unique_uses_python_equality() {
        let ran = one(
            "ListUniqueNode",
            json!({"list": [1, 1.0, true, "1", [1], [1], {"a": 1}, {"a": 1}, null, null, 2.5, 2.5]}),
        );
        ok(&ran);
        assert_eq!(
            ran.out("n", "result").py_repr(),
            "[1, '1', [1], {'a': 1}, None, 2.5]"
        );
    }

    #[test]
    fn filter_conditions() {
        let list = json!([0, 1, 5, 10, null, "ab", "ba"]);
        let cases = [
            (
                "is_not_none",
                json!(null),
                "[0, 1, 5, 10, 'ab', 'ba']",
                "[None]",
            ),
            (
                "is_none",
                json!(null),
                "[None]",
                "[0, 1, 5, 10, 'ab', 'ba']",
            ),
            (
                "is_truthy",
                json!(null),
                "[1, 5, 10, 'ab', 'ba']",
                "[0, None]",
            ),
            (
                "is_falsy",
                json!(null),
                "[0, None]",
                "[1, 5, 10, 'ab', 'ba']",
            ),
            ("equals", json!(5), "[5]", "[0, 1, 10, None, 'ab', 'ba']"),
            (
                "not_equals",
                json!(5),
                "[0, 1, 10, None, 'ab', 'ba']",
                "[5]",
            ),
            (
                "contains",
                json!("a"),
                "['ab', 'ba']",
                "[0, 1, 5, 10, None]",
            ),
            (
                "starts_with",
                json!("a"),
                "['ab']",
                "[0, 1, 5, 10, None, 'ba']",
            ),
            (
                "ends_with",
                json!("a"),
                "['ba']",
                "[0, 1, 5, 10, None, 'ab']",
            ),
            ("contains", json!(1), "[1, 10]", "[0, 5, None, 'ab', 'ba']"),
        ];
        for (cond, value, kept, removed) in cases {
            let ran = one(
                "ListFilterNode",
                json!({"list": list, "condition": cond, "value": value}),
            );
            ok(&ran);
            assert_eq!(ran.out("n", "result").py_repr(), kept, "{cond}");
            assert_eq!(ran.out("n", "removed").py_repr(), removed, "{cond}");
        }
        let ran = one(
            "ListFilterNode",
            json!({"list": [1, 5, 10, null], "condition": "greater_than", "value": "4"}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "[5, 10]");
        let ran = one(
            "ListFilterNode",
            json!({"list": [{"p": 3}, {"p": 1}, {}], "condition": "less_than",
                   "value": 2, "key_path": "p"}),
        );
        assert_eq!(ran.out("n", "result").py_repr(), "[{'p': 1}]");
        let ran = one(
            "ListFilterNode",
            json!({"list": ["x"], "condition": "greater_than", "value": 1}),
        );
        assert!(ran.error().contains("'>' not supported"), "{}", ran.error());
        let ran = one("ListFilterNode", json!({"list": [], "condition": "bogus"}));
        assert!(
            ran.error().contains("unknown condition 'bogus'"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn map_transforms() {
        let cases = [
            (
                "to_string",
                json!([1, 2.0, null, true]),
                "['1', '2.0', '', 'True']",
            ),
            ("to_int", json!([" 7 ", 3.9, null, false]), "[7, 3, 0, 0]"),
            ("to_float", json!(["2.5", 1, null]), "[2.5, 1.0, 0.0]"),
            ("to_upper", json!(["ab", null, 0]), "['AB', '', '0']"),
            ("to_lower", json!(["AB"]), "['ab']"),
            ("trim", json!([" a "]), "['a']"),
            ("length", json!(["héé", [1, 2], null]), "[3, 2, 0]"),
            ("get_property", json!([1]), "[1]"),
        ];
        for (transform, list, expected) in cases {
            let ran = one("ListMapNode", json!({"list": list, "transform": transform}));
            ok(&ran);
            assert_eq!(ran.out("n", "result").py_repr(), expected, "{transform}");
        }
        let ran = one(
            "ListMapNode",
            json!({"list": [{"u": {"n": "a"}}, {"u": {}}], "transform": "get_property",
                   "key_path": "u.n"}),
        );
        assert_eq!(ran.out("n", "result").py_repr(), "['a', None]");
        let ran = one("ListMapNode", json!({"list": ["x"], "transform": "to_int"}));
        assert_eq!(
            ran.error(),
            "n (ListMapNode): invalid literal for int() with base 10: 'x'"
        );
        let ran = one("ListMapNode", json!({"list": [5], "transform": "length"}));
        assert!(ran.error().contains("object of type 'int' has no len()"));
        let ran = one("ListMapNode", json!({"list": [], "transform": "nope"}));
        assert!(ran.error().contains("unknown transform 'nope'"));
    }

    #[test]
    fn reduce_operations() {
        let cases = [
            ("sum", json!([1, 2, null, 3]), json!(null), "6.0"),
            ("product", json!([2, 2.5]), json!(null), "5.0"),
            ("avg", json!([1, 2]), json!(null), "1.5"),
            ("min", json!([3, 1, 2]), json!(null), "1"),
            ("max", json!(["b", "c", "a"]), json!(null), "'c'"),
            ("count", json!([1, null, 2]), json!(null), "2"),
            ("first", json!([null, 4, 5]), json!(null), "4"),
            ("last", json!([4, 5, null]), json!(null), "5"),
            ("join", json!(["a", 1, "b"]), json!("-"), "'a-1-b'"),
            ("join", json!(["a", "b"]), json!(null), "'ab'"),
            ("sum", json!([]), json!(null), "0"),
            ("max", json!([]), json!(null), "None"),
            ("sum", json!([]), json!(7), "7"),
            ("sum", json!(["1.5", 1]), json!(null), "2.5"),
        ];
        for (op, list, initial, expected) in cases {
            let ran = one(
                "ListReduceNode",
                json!({"list": list, "operation": op, "initial": initial}),
            );
            ok(&ran);
            assert_eq!(ran.out("n", "result").py_repr(), expected, "{op} {list}");
        }
        let ran = one(
            "ListReduceNode",
            json!({"list": [{"v": 2}, {"v": 3}, {}], "key_path": "v"}),
        );
        assert!(matches!(ran.out("n", "result"), Value::Float(f) if f == 5.0));
        let ran = one("ListReduceNode", json!({"list": ["x"]}));
        assert_eq!(
            ran.error(),
            "n (ListReduceNode): could not convert string to float: 'x'"
        );
        let ran = one("ListReduceNode", json!({"list": [], "operation": "median"}));
        assert!(ran.error().contains("unknown operation 'median'"));
        let ran = one(
            "ListReduceNode",
            json!({"list": [1, "a"], "operation": "min"}),
        );
        assert!(
            ran.error().contains("not supported between"),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn flatten_depths() {
        let nested = json!([1, [2, [3, [4]]], []]);
        for (depth, expected) in [
            (json!(null), "[1, 2, [3, [4]]]"),
            (json!(0), "[1, [2, [3, [4]]], []]"),
            (json!(-1), "[1, [2, [3, [4]]], []]"),
            (json!(2), "[1, 2, 3, [4]]"),
            (json!(1_000_000), "[1, 2, 3, 4]"),
        ] {
            let ran = one("ListFlattenNode", json!({"list": nested, "depth": depth}));
            ok(&ran);
            assert_eq!(ran.out("n", "result").py_repr(), expected, "depth {depth}");
        }
    }

    /// Batch 8.6's list nodes with empty configs all work on `[]`.
    #[test]
    fn batch_8_6_empty_configs() {
        let ran = run_chain(&[
            ("list_filter", "ListFilterNode", json!({})),
            ("list_map", "ListMapNode", json!({})),
            ("list_reduce", "ListReduceNode", json!({})),
            ("list_flatten", "ListFlattenNode", json!({})),
            ("list_slice", "ListSliceNode", json!({"start": 0, "end": 5})),
            ("list_reverse", "ListReverseNode", json!({})),
        ]);
        ok(&ran);
        assert_eq!(ran.out("list_filter", "result").py_repr(), "[]");
        assert_eq!(ran.out("list_map", "result").py_repr(), "[]");
        assert!(matches!(ran.out("list_reduce", "result"), Value::Int(0)));
        assert_eq!(ran.out("list_slice", "result").py_repr(), "[]");
    }

    #[test]
    fn super_node_dispatches_by_action() {
        let ran = one(
            "ListSuperNode",
            json!({"action": "Sort", "list": [3, 1, 2], "reverse": true}),
        );
        ok(&ran);
        assert_eq!(ran.out("n", "result").py_repr(), "[3, 2, 1]");
        let ran = one("ListSuperNode", json!({"list": ["a", "b"], "index": -1}));
        assert_eq!(ran.out("n", "item"), Value::str("b"));
        let ran = one(
            "ListSuperNode",
            json!({"action": "create_list", "item_1": 1}),
        );
        assert_eq!(ran.out("n", "list").py_repr(), "[1]");
        let ran = one("ListSuperNode", json!({"action": "Explode"}));
        assert!(ran.error().contains("unknown action 'Explode'"));
    }
}

//! Math and random nodes: MathOperation, Comparison, RandomNumber, RandomChoice, RandomString,
//! RandomUUID and ShuffleList (upstream `math_nodes.py` and `random_nodes.py`).
//!
//! `MathOperationNode` reads `a` and `b` with CasareRPA's numeric indirection (reference 2.7(3)):
//! a data edge value is converted with Python `float()`; a config value that is text is first
//! looked up as a variable name (`{{ }}` stripped), else parsed as a number, else the default 0.
//! Results follow Python: float arithmetic, `math.pow`, `math.log(a, b)`; `floor`, `ceil` and
//! `round` give Python ints (upstream's `math.floor`/`math.ceil`/`round(a)` return `int`, so a log
//! prints `3`, not `3.0`); `round_digits` rounds like Python's `round(x, n)`. Deviations from
//! upstream, all for clearer failures: division (and floor division / modulo) by zero is a
//! `ZeroDivisionError` "division by zero" (upstream raised `ValueError("Division by zero")` for
//! `/` and `//` and Python's own error for `%`); an unknown operation or operator lists the allowed
//! ones; RandomUUID rejects versions other than 1 and 4 and unknown formats (upstream silently fell
//! back to v4 / the standard format); version 1 uses a random node id (RFC 4122 4.5) instead of the
//! host's MAC address. List inputs (`items`) use the list indirection of `NodeCtx::param_list` (a
//! variable name or JSON array text), where upstream turned a string into its characters.
//! All randomness comes from the run's seeded generator (`NodeCtx::rng`), so seeded runs repeat.

use crate::engine::node::{opt, py_float, req, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::Value;
use std::cmp::Ordering;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "MathOperationNode",
        &[
            opt("a", Lit::Float(0.0)),
            opt("b", Lit::Float(0.0)),
            opt("operation", Lit::Str("add")),
            opt("round_digits", Lit::Null),
            opt("output_var", Lit::Null),
        ],
        &["result"],
        math_operation,
    ),
    NodeDef::plain(
        "ComparisonNode",
        &[
            opt("a", Lit::Null),
            opt("b", Lit::Null),
            opt("operator", Lit::Str("==")),
        ],
        &["result"],
        comparison,
    ),
    NodeDef::plain(
        "RandomNumberNode",
        &[
            opt("min_value", Lit::Int(0)),
            opt("max_value", Lit::Int(100)),
            opt("integer_only", Lit::Bool(false)),
        ],
        &["result"],
        random_number,
    ),
    NodeDef::plain(
        "RandomChoiceNode",
        &[
            req("items"),
            opt("count", Lit::Int(1)),
            opt("allow_duplicates", Lit::Bool(false)),
        ],
        &["result", "index"],
        random_choice,
    ),
    NodeDef::plain(
        "RandomStringNode",
        &[
            opt("length", Lit::Int(8)),
            opt("include_uppercase", Lit::Bool(true)),
            opt("include_lowercase", Lit::Bool(true)),
            opt("include_digits", Lit::Bool(true)),
            opt("include_special", Lit::Bool(false)),
            opt("custom_chars", Lit::Str("")),
        ],
        &["result"],
        random_string,
    ),
    NodeDef::plain(
        "RandomUUIDNode",
        &[
            opt("version", Lit::Int(4)),
            opt("format", Lit::Str("standard")),
        ],
        &["result"],
        random_uuid,
    ),
    NodeDef::plain(
        "ShuffleListNode",
        &[req("items")],
        &["result"],
        shuffle_list,
    ),
];

/// The operations of `MathOperationNode`, in upstream's order.
const OPERATIONS: &[&str] = &[
    "add",
    "subtract",
    "multiply",
    "divide",
    "floor_divide",
    "power",
    "modulo",
    "min",
    "max",
    "abs",
    "sqrt",
    "floor",
    "ceil",
    "round",
    "sin",
    "cos",
    "tan",
    "log",
    "log10",
    "exp",
    "negate",
];

/// Comparison operators: the symbol and upstream's descriptive label.
const OPERATORS: &[(&str, &str)] = &[
    ("==", "equals (==)"),
    ("!=", "not equals (!=)"),
    (">", "greater than (>)"),
    ("<", "less than (<)"),
    (">=", "greater or equal (>=)"),
    ("<=", "less or equal (<=)"),
];

/// Largest generated string or list (bytes / items), as the family contract asks.
const MAX_RESULT: usize = 100_000_000;

/// `_resolve_numeric_param`: a data edge value goes through `float()`; text config is a variable
/// name (with or without `{{ }}`), else a number literal, else the default 0.
fn numeric_param(ctx: &NodeCtx<'_>, name: &str) -> Result<f64, NodeError> {
    if let Some(v) = ctx.port_value(name) {
        return py_float(v).map_err(|e| with_input(name, e));
    }
    match ctx.param(name) {
        Value::Null => Ok(0.0),
        Value::Str(s) => {
            let t = s.trim();
            let var = t
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .unwrap_or(t)
                .trim();
            match ctx.var(var) {
                Some(v) if !v.is_null() => py_float(v).map_err(|e| with_input(name, e)),
                _ => Ok(t.parse::<f64>().unwrap_or(0.0)),
            }
        }
        other => py_float(&other).map_err(|e| with_input(name, e)),
    }
}

fn with_input(name: &str, e: NodeError) -> NodeError {
    NodeError::new(e.kind, format!("input '{name}': {}", e.message))
}

fn domain_error() -> NodeError {
    NodeError::value("math domain error")
}

fn range_error() -> NodeError {
    NodeError::new("OverflowError", "math range error")
}

fn zero_division() -> NodeError {
    NodeError::new("ZeroDivisionError", "division by zero")
}

/// Python's `int(x)` for a float that is already integral (floor/ceil/round results).
fn float_to_int(x: f64) -> Result<Value, NodeError> {
    if x.is_nan() {
        return Err(NodeError::value("cannot convert float NaN to integer"));
    }
    if x.is_infinite() {
        return Err(NodeError::new(
            "OverflowError",
            "cannot convert float infinity to integer",
        ));
    }
    if x.abs() >= 9.223_372_036_854_776e18 {
        return Err(NodeError::new(
            "OverflowError",
            format!("integer result {x:e} is out of range"),
        ));
    }
    Ok(Value::Int(x as i64))
}

/// Python `round(x, n)` for floats: correctly rounded to `n` decimals, ties to even.
pub fn py_round(x: f64, n: i64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if n >= 0 {
        if n > 340 {
            return x;
        }
        let s = format!("{:.*}", n as usize, x);
        s.parse::<f64>().unwrap_or(x)
    } else {
        if n < -330 {
            return 0.0_f64.copysign(x);
        }
        let p = 10f64.powi((-n) as i32);
        let r = (x / p).round_ties_even() * p;
        if r.is_finite() {
            r
        } else {
            x
        }
    }
}

/// Python `round(i, n)` for ints: unchanged for `n >= 0`, else rounded to a multiple of 10^-n
/// with ties to even.
fn py_round_int(i: i64, n: i64) -> Result<i64, NodeError> {
    if n >= 0 {
        return Ok(i);
    }
    if n < -18 {
        return Ok(0);
    }
    let p = 10i128.pow((-n) as u32);
    let v = i128::from(i);
    let q = v.div_euclid(p);
    let r = v.rem_euclid(p);
    let q = match (2 * r).cmp(&p) {
        Ordering::Greater => q + 1,
        Ordering::Equal if q % 2 != 0 => q + 1,
        _ => q,
    };
    i64::try_from(q * p).map_err(|_| NodeError::new("OverflowError", "integer result too large"))
}

/// Python float `//` (floor of the true quotient, computed like CPython's `float_floor_div`).
fn floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0.0_f64.copysign(a / b)
    }
}

/// Python float `%` (the result takes the sign of the divisor).
fn py_mod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m + b
        } else {
            m
        }
    } else {
        0.0_f64.copysign(b)
    }
}

/// Python `math.pow`.
fn py_pow(a: f64, b: f64) -> Result<f64, NodeError> {
    if a == 0.0 && b < 0.0 {
        return Err(domain_error());
    }
    if a < 0.0 && a.is_finite() && b.is_finite() && b.fract() != 0.0 {
        return Err(domain_error());
    }
    let r = a.powf(b);
    if r.is_infinite() && a.is_finite() && b.is_finite() {
        return Err(range_error());
    }
    Ok(r)
}

/// Python `math.log(x)` (natural).
fn py_ln(x: f64) -> Result<f64, NodeError> {
    if x.is_nan() {
        return Ok(x);
    }
    if x <= 0.0 {
        return Err(domain_error());
    }
    Ok(x.ln())
}

/// Trigonometry: infinities are a domain error in Python.
fn trig(x: f64, f: fn(f64) -> f64) -> Result<f64, NodeError> {
    if x.is_infinite() {
        return Err(domain_error());
    }
    Ok(f(x))
}

/// Apply `op` to `a` and `b` as Python's `math_nodes.py` does.
fn apply(op: &str, a: f64, b: f64) -> Result<Value, NodeError> {
    let f = |x: f64| Ok(Value::Float(x));
    match op {
        "add" => f(a + b),
        "subtract" => f(a - b),
        "multiply" => f(a * b),
        "divide" => {
            if b == 0.0 {
                return Err(zero_division());
            }
            f(a / b)
        }
        "floor_divide" => {
            if b == 0.0 {
                return Err(zero_division());
            }
            f(floor_div(a, b))
        }
        "power" => f(py_pow(a, b)?),
        "modulo" => {
            if b == 0.0 {
                return Err(zero_division());
            }
            f(py_mod(a, b))
        }
        // Python's min/max return the first argument unless the second compares smaller/greater.
        "min" => f(if b < a { b } else { a }),
        "max" => f(if b > a { b } else { a }),
        "abs" => f(a.abs()),
        "sqrt" => {
            if a < 0.0 {
                return Err(domain_error());
            }
            f(a.sqrt())
        }
        "floor" => float_to_int(a.floor()),
        "ceil" => float_to_int(a.ceil()),
        "round" => float_to_int(a.round_ties_even()),
        "sin" => f(trig(a, f64::sin)?),
        "cos" => f(trig(a, f64::cos)?),
        "tan" => f(trig(a, f64::tan)?),
        "log" => {
            if b == 0.0 {
                f(py_ln(a)?)
            } else {
                let den = py_ln(b)?;
                if den == 0.0 {
                    return Err(NodeError::new(
                        "ZeroDivisionError",
                        "float division by zero",
                    ));
                }
                f(py_ln(a)? / den)
            }
        }
        "log10" => {
            if a.is_nan() {
                return f(a);
            }
            if a <= 0.0 {
                return Err(domain_error());
            }
            f(a.log10())
        }
        "exp" => {
            let r = a.exp();
            if r.is_infinite() && a.is_finite() {
                return Err(range_error());
            }
            f(r)
        }
        "negate" => f(-a),
        other => Err(NodeError::value(format!("unknown operation '{other}'"))),
    }
}

/// MathOperationNode: `result = a <operation> b` as a Python float (ints for floor, ceil and
/// round), optionally rounded to `round_digits` and stored in the variable `output_var`.
fn math_operation(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let op = ctx.param_str("operation").trim().to_lowercase();
    let op = if op.is_empty() { "add".to_string() } else { op };
    if !OPERATIONS.contains(&op.as_str()) {
        // Reject before reading the operands, so the error names the operation.
        return Err(NodeError::value(format!(
            "unknown operation '{op}' (allowed: {})",
            OPERATIONS.join(", ")
        )));
    }
    let a = numeric_param(ctx, "a")?;
    let b = numeric_param(ctx, "b")?;
    let mut result = apply(&op, a, b)?;
    if let Some(n) = ctx.param_opt_i64("round_digits")? {
        result = match result {
            Value::Float(x) => Value::Float(py_round(x, n)),
            Value::Int(i) => Value::Int(py_round_int(i, n)?),
            other => other,
        };
    }
    let output_var = ctx.param_str("output_var");
    let output_var = output_var
        .trim()
        .trim_start_matches("{{")
        .trim_end_matches("}}")
        .trim();
    if !output_var.is_empty() {
        let name = output_var.to_string();
        ctx.set_var(&name, result.clone());
    }
    ctx.set_output("result", result);
    Ok(Flow::Next)
}

/// Python ordering of `a` and `b` for `op`; `None` when unordered (a NaN is involved).
fn py_order(a: &Value, b: &Value, op: &str) -> Result<Option<Ordering>, NodeError> {
    let numeric = |v: &Value| matches!(v, Value::Bool(_) | Value::Int(_) | Value::Float(_));
    if numeric(a) && numeric(b) && !matches!((a, b), (Value::Int(_), Value::Int(_))) {
        let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
        return Ok(x.partial_cmp(&y));
    }
    a.py_cmp(b, op).map(Some).map_err(NodeError::type_error)
}

/// ComparisonNode: Python `a <operator> b` (`==` `!=` `>` `<` `>=` `<=`, or upstream's labels such
/// as "greater than (>)"); `==` across int/float, ordering of mixed types is a `TypeError`.
fn comparison(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let raw = ctx.param_str("operator");
    let key = raw.trim();
    let op = OPERATORS
        .iter()
        .find(|(sym, label)| key == *sym || key.eq_ignore_ascii_case(label))
        .map(|(sym, _)| *sym)
        .ok_or_else(|| {
            NodeError::value(format!(
                "unknown operator '{raw}' (allowed: {})",
                OPERATORS
                    .iter()
                    .map(|(s, l)| format!("{s} / {l}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let a = ctx.param("a");
    let b = ctx.param("b");
    let result = match op {
        "==" => a.py_eq(&b),
        "!=" => !a.py_eq(&b),
        _ => {
            let ord = py_order(&a, &b, op)?;
            match (op, ord) {
                (_, None) => false,
                (">", Some(o)) => o == Ordering::Greater,
                ("<", Some(o)) => o == Ordering::Less,
                (">=", Some(o)) => o != Ordering::Less,
                (_, Some(o)) => o != Ordering::Greater,
            }
        }
    };
    ctx.set_output("result", Value::Bool(result));
    Ok(Flow::Next)
}

/// RandomNumberNode: `random.uniform(min_value, max_value)` (a float), or with `integer_only`
/// `random.randint(int(min), int(max))` (inclusive). Bounds given the wrong way round are swapped.
fn random_number(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let lo = py_float(&ctx.param("min_value")).map_err(|e| with_input("min_value", e))?;
    let hi = py_float(&ctx.param("max_value")).map_err(|e| with_input("max_value", e))?;
    let (lo, hi) = if lo > hi { (hi, lo) } else { (lo, hi) };
    let result = if ctx.param_bool("integer_only") {
        let (Value::Int(a), Value::Int(b)) = (float_to_int(lo.trunc())?, float_to_int(hi.trunc())?)
        else {
            return Err(NodeError::value("invalid integer bounds"));
        };
        Value::Int(ctx.rng().i64(a..=b))
    } else {
        if !lo.is_finite() || !hi.is_finite() {
            return Err(NodeError::value(format!(
                "min_value and max_value must be finite numbers, got {lo} and {hi}"
            )));
        }
        let r = ctx.rng().f64();
        Value::Float(lo + (hi - lo) * r)
    };
    ctx.set_output("result", result);
    Ok(Flow::Next)
}

/// RandomChoiceNode: one random item of `items` (with its `index`) when `count` is 1; otherwise a
/// list of `count` items: distinct ones (`random.sample`, capped at the list length) or, with
/// `allow_duplicates`, drawn with replacement (`random.choices`); `index` is then -1.
fn random_choice(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let items = ctx.param_list("items")?;
    if items.is_empty() {
        return Err(NodeError::value("items list cannot be empty"));
    }
    let count = ctx.param_i64("count")?;
    if count < 0 {
        return Err(NodeError::value(format!("count must be >= 0, got {count}")));
    }
    let allow_duplicates = ctx.param_bool("allow_duplicates");
    if count == 1 {
        let index = ctx.rng().usize(..items.len());
        ctx.set_output("result", items[index].clone());
        ctx.set_output("index", Value::from(index));
        return Ok(Flow::Next);
    }
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let picked: Vec<Value> = if allow_duplicates {
        if count > MAX_RESULT {
            return Err(NodeError::value(format!(
                "count {count} is too large (limit {MAX_RESULT})"
            )));
        }
        (0..count)
            .map(|_| items[ctx.rng().usize(..items.len())].clone())
            .collect()
    } else {
        let k = count.min(items.len());
        let mut idx: Vec<usize> = (0..items.len()).collect();
        for i in 0..k {
            let j = ctx.rng().usize(i..idx.len());
            idx.swap(i, j);
        }
        idx[..k].iter().map(|&i| items[i].clone()).collect()
    };
    ctx.set_output("result", Value::list(picked));
    ctx.set_output("index", Value::Int(-1));
    Ok(Flow::Next)
}

/// RandomStringNode: `length` characters drawn from `custom_chars`, or else from the enabled sets
/// (uppercase, lowercase, digits, `string.punctuation`), or letters and digits if none is enabled.
fn random_string(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let length = ctx.param_i64("length")?;
    let custom = ctx.param_str("custom_chars");
    let chars: Vec<char> = if !custom.is_empty() {
        custom.chars().collect()
    } else {
        let mut set = String::new();
        if ctx.param_bool("include_uppercase") {
            set.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
        }
        if ctx.param_bool("include_lowercase") {
            set.push_str("abcdefghijklmnopqrstuvwxyz");
        }
        if ctx.param_bool("include_digits") {
            set.push_str("0123456789");
        }
        if ctx.param_bool("include_special") {
            set.push_str(r##"!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~"##);
        }
        if set.is_empty() {
            set.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789");
        }
        set.chars().collect()
    };
    let length = usize::try_from(length.max(0)).unwrap_or(usize::MAX);
    let widest = chars.iter().map(|c| c.len_utf8()).max().unwrap_or(1);
    if length.saturating_mul(widest) > MAX_RESULT {
        return Err(NodeError::value(format!(
            "length {length} is too large (limit {MAX_RESULT} bytes)"
        )));
    }
    let mut out = String::with_capacity(length * widest);
    for _ in 0..length {
        out.push(chars[ctx.rng().usize(..chars.len())]);
    }
    ctx.set_output("result", Value::from(out));
    Ok(Flow::Next)
}

/// Format 16 UUID bytes as Python's `str(uuid)`, `uuid.hex` or `uuid.urn`.
fn format_uuid(bytes: &[u8; 16], format: &str) -> Result<String, NodeError> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let standard = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    match format.trim().to_ascii_lowercase().as_str() {
        "" | "standard" => Ok(standard),
        "hex" => Ok(hex),
        "urn" => Ok(format!("urn:uuid:{standard}")),
        other => Err(NodeError::value(format!(
            "unknown uuid format '{other}' (allowed: standard, hex, urn)"
        ))),
    }
}

/// RandomUUIDNode: a version 4 (random) or version 1 (time-based) UUID in the `format` standard
/// (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`), hex (32 digits) or urn (`urn:uuid:...`).
fn random_uuid(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let version = ctx.param_i64("version")?;
    let format = ctx.param_str("format");
    let mut bytes = [0u8; 16];
    match version {
        4 => {
            for b in bytes.iter_mut() {
                *b = ctx.rng().u8(..);
            }
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
        }
        1 => {
            // 100-ns intervals since 1582-10-15, as uuid.uuid1().
            let now = chrono::Utc::now();
            let ticks = (now.timestamp() as i128 * 10_000_000
                + i128::from(now.timestamp_subsec_nanos() / 100)
                + 0x01B2_1DD2_1381_4000) as u64;
            let time_low = (ticks & 0xffff_ffff) as u32;
            let time_mid = ((ticks >> 32) & 0xffff) as u16;
            let time_hi = (((ticks >> 48) & 0x0fff) as u16) | 0x1000;
            let clock_seq = (ctx.rng().u16(..) & 0x3fff) | 0x8000;
            bytes[0..4].copy_from_slice(&time_low.to_be_bytes());
            bytes[4..6].copy_from_slice(&time_mid.to_be_bytes());
            bytes[6..8].copy_from_slice(&time_hi.to_be_bytes());
            bytes[8..10].copy_from_slice(&clock_seq.to_be_bytes());
            for b in bytes[10..16].iter_mut() {
                *b = ctx.rng().u8(..);
            }
            // A random node id must set the multicast bit (RFC 4122 4.5).
            bytes[10] |= 0x01;
        }
        other => {
            return Err(NodeError::value(format!(
                "unsupported uuid version {other} (allowed: 1, 4)"
            )))
        }
    }
    let result = format_uuid(&bytes, &format)?;
    ctx.set_output("result", Value::from(result));
    Ok(Flow::Next)
}

/// ShuffleListNode: a shuffled copy of `items` (the input list is not changed).
fn shuffle_list(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let items = ctx.param_list("items")?;
    let mut out: Vec<Value> = items.as_ref().clone();
    ctx.rng().shuffle(&mut out);
    ctx.set_output("result", Value::list(out));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    fn math(a: serde_json::Value, b: serde_json::Value, op: &str) -> Ran {
        run_node(
            "MathOperationNode",
            json!({"a": a, "b": b, "operation": op}),
            json!({}),
        )
    }

    fn math_repr(a: serde_json::Value, b: serde_json::Value, op: &str) -> String {
        let ran = math(a, b, op);
        assert!(ran.outcome.success(), "{op}: {}", ran.error());
        ran.out("n", "result").py_repr()
    }

    #[test]
    fn batch_1_4_math_chain() {
        let ran = run_chain(&[
            (
                "math_add",
                "MathOperationNode",
                json!({"a": 10, "b": 5, "operation": "add"}),
            ),
            (
                "math_subtract",
                "MathOperationNode",
                json!({"a": "{{math_add.result}}", "b": 3, "operation": "subtract"}),
            ),
            (
                "math_multiply",
                "MathOperationNode",
                json!({"a": "{{math_subtract.result}}", "b": 2, "operation": "multiply"}),
            ),
            (
                "math_divide",
                "MathOperationNode",
                json!({"a": "{{math_multiply.result}}", "b": 4, "operation": "divide"}),
            ),
            (
                "math_modulo",
                "MathOperationNode",
                json!({"a": 17, "b": 5, "operation": "modulo"}),
            ),
            (
                "math_power",
                "MathOperationNode",
                json!({"a": 2, "b": 8, "operation": "power"}),
            ),
            (
                "math_length",
                "MathOperationNode",
                json!({"a": "Hello World", "b": 0, "operation": "length"}),
            ),
        ]);
        let expect = [
            ("math_add", 15.0),
            ("math_subtract", 12.0),
            ("math_multiply", 24.0),
            ("math_divide", 6.0),
            ("math_modulo", 2.0),
            ("math_power", 256.0),
        ];
        for (id, want) in expect {
            let got = ran.out(id, "result");
            assert!(matches!(got, Value::Float(f) if f == want), "{id}: {got:?}");
        }
        assert_eq!(
            ran.error(),
            "math_length (MathOperationNode): unknown operation 'length' (allowed: add, subtract, \
             multiply, divide, floor_divide, power, modulo, min, max, abs, sqrt, floor, ceil, \
             round, sin, cos, tan, log, log10, exp, negate)"
        );
    }

    #[test]
    fn operations_follow_python() {
        let cases: &[(serde_json::Value, serde_json::Value, &str, &str)] = &[
            (json!(1), json!(2), "add", "3.0"),
            (json!(0.1), json!(0.2), "add", "0.30000000000000004"),
            (json!(1), json!(2), "subtract", "-1.0"),
            (json!(7), json!(2), "divide", "3.5"),
            (json!(7), json!(2), "floor_divide", "3.0"),
            (json!(-7), json!(2), "floor_divide", "-4.0"),
            (json!(-7), json!(2), "modulo", "1.0"),
            (json!(7), json!(-2), "modulo", "-1.0"),
            (json!(2), json!(0.5), "power", "1.4142135623730951"),
            (json!(3), json!(9), "min", "3.0"),
            (json!(3), json!(9), "max", "9.0"),
            (json!(-2.5), json!(0), "abs", "2.5"),
            (json!(16), json!(0), "sqrt", "4.0"),
            (json!(2.7), json!(0), "floor", "2"),
            (json!(-2.2), json!(0), "ceil", "-2"),
            (json!(2.5), json!(0), "round", "2"),
            (json!(3.5), json!(0), "round", "4"),
            (json!(0), json!(0), "sin", "0.0"),
            (json!(0), json!(0), "cos", "1.0"),
            (json!(0), json!(0), "tan", "0.0"),
            (json!(8), json!(2), "log", "3.0"),
            (json!(1), json!(0), "log", "0.0"),
            (json!(1000), json!(0), "log10", "3.0"),
            (json!(0), json!(0), "exp", "1.0"),
            (json!(5), json!(0), "negate", "-5.0"),
            (json!("2"), json!("3"), "MULTIPLY", "6.0"),
        ];
        for (a, b, op, want) in cases {
            assert_eq!(math_repr(a.clone(), b.clone(), op), *want, "{a} {op} {b}");
        }
    }

    #[test]
    fn math_errors() {
        let cases: &[(serde_json::Value, serde_json::Value, &str, &str)] = &[
            (json!(1), json!(0), "divide", "division by zero"),
            (json!(1), json!(0), "floor_divide", "division by zero"),
            (json!(1), json!(0), "modulo", "division by zero"),
            (json!(-1), json!(0), "sqrt", "math domain error"),
            (json!(0), json!(0), "log10", "math domain error"),
            (json!(-1), json!(0), "log", "math domain error"),
            (json!(5), json!(1), "log", "float division by zero"),
            (json!(1000), json!(0), "exp", "math range error"),
            (json!(10), json!(400), "power", "math range error"),
            (json!(-8), json!(0.5), "power", "math domain error"),
        ];
        for (a, b, op, want) in cases {
            let ran = math(a.clone(), b.clone(), op);
            assert_eq!(
                ran.error(),
                format!("n (MathOperationNode): {want}"),
                "{op}"
            );
        }
        let ran = math(json!(1), json!(0), "divide");
        assert_eq!(
            ran.outcome.error.as_ref().map(|e| e.error_type.clone()),
            Some("ZeroDivisionError".to_string())
        );
    }

    #[test]
    fn numeric_indirection() {
        // A variable name (with or without braces), a number literal, garbage → 0.
        let ran = run_node(
            "MathOperationNode",
            json!({"a": "x", "b": "{{ y }}", "operation": "add"}),
            json!({"x": 2, "y": "40"}),
        );
        assert_eq!(ran.out("n", "result").py_repr(), "42.0");
        assert_eq!(math_repr(json!("1.5"), json!(" 2 "), "add"), "3.5");
        assert_eq!(math_repr(json!("Hello"), json!(1), "add"), "1.0");
        assert_eq!(math_repr(json!("{{missing}}"), json!(1), "add"), "1.0");
        assert_eq!(math_repr(json!(true), json!(1), "add"), "2.0");
        // A variable that is not a number is an error (Python float()).
        let ran = run_node(
            "MathOperationNode",
            json!({"a": "x", "b": 1}),
            json!({"x": "abc"}),
        );
        assert_eq!(
            ran.error(),
            "n (MathOperationNode): input 'a': could not convert string to float: 'abc'"
        );
        let ran = run_node("MathOperationNode", json!({"a": [1], "b": 1}), json!({}));
        assert_eq!(
            ran.error(),
            "n (MathOperationNode): input 'a': float() argument must be a string or a real \
             number, not 'list'"
        );
    }

    #[test]
    fn round_digits_and_output_var() {
        let ran = run_node(
            "MathOperationNode",
            json!({"a": 2, "b": 3, "operation": "divide", "round_digits": 3, "output_var": "q"}),
            json!({}),
        );
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.out("n", "result").py_repr(), "0.667");
        assert_eq!(ran.var("q").py_repr(), "0.667");
        let ran = run_node(
            "MathOperationNode",
            json!({"a": 2.675, "operation": "abs", "round_digits": "2"}),
            json!({}),
        );
        assert_eq!(ran.out("n", "result").py_repr(), "2.67");
        assert_eq!(py_round(0.125, 2), 0.12);
        assert_eq!(py_round(1250.0, -2), 1200.0);
        assert_eq!(py_round(1350.0, -2), 1400.0);
        assert_eq!(py_round_int(1250, -2).ok(), Some(1200));
        assert_eq!(py_round_int(-1350, -2).ok(), Some(-1400));
        assert_eq!(py_round_int(17, 2).ok(), Some(17));
        let ran = run_node(
            "MathOperationNode",
            json!({"a": 2.5, "operation": "floor", "round_digits": 2}),
            json!({}),
        );
        assert!(matches!(ran.out("n", "result"), Value::Int(2)));
    }

    #[test]
    fn comparisons() {
        let batch = [
            (json!(10), json!(10), "=="),
            (json!(10), json!(5), "!="),
            (json!(10), json!(5), ">"),
            (json!(3), json!(7), "<"),
            (json!(10), json!(10), ">="),
            (json!(5), json!(10), "<="),
        ];
        for (a, b, op) in batch {
            let ran = run_node(
                "ComparisonNode",
                json!({"a": a, "b": b, "operator": op}),
                json!({}),
            );
            assert_eq!(ran.out("n", "result"), Value::Bool(true), "{a} {op} {b}");
        }
        let cases: &[(serde_json::Value, serde_json::Value, &str, bool)] = &[
            (json!(1), json!(1.0), "equals (==)", true),
            (json!(1), json!("1"), "==", false),
            (json!(true), json!(1), "==", true),
            (json!("abc"), json!("abd"), "less than (<)", true),
            (json!([1, 2]), json!([1, 3]), "<", true),
            (json!(2.5), json!(2), "greater or equal (>=)", true),
            (json!(null), json!(null), "==", true),
            (json!({"a": 1}), json!({"a": 1.0}), "not equals (!=)", false),
            (json!(1), json!(2), "Greater Than (>)", false),
        ];
        for (a, b, op, want) in cases {
            let ran = run_node(
                "ComparisonNode",
                json!({"a": a, "b": b, "operator": op}),
                json!({}),
            );
            assert!(ran.outcome.success(), "{}", ran.error());
            assert_eq!(ran.out("n", "result"), Value::Bool(*want), "{a} {op} {b}");
        }
        // Default operator is ==.
        let ran = run_node("ComparisonNode", json!({"a": "x", "b": "x"}), json!({}));
        assert_eq!(ran.out("n", "result"), Value::Bool(true));
    }

    #[test]
    fn comparison_errors() {
        let ran = run_node(
            "ComparisonNode",
            json!({"a": 10, "b": "5", "operator": ">"}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (ComparisonNode): '>' not supported between instances of 'int' and 'str'"
        );
        let ran = run_node(
            "ComparisonNode",
            json!({"a": null, "b": 1, "operator": "<="}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (ComparisonNode): '<=' not supported between instances of 'NoneType' and 'int'"
        );
        let ran = run_node(
            "ComparisonNode",
            json!({"a": 1, "b": 1, "operator": "=~"}),
            json!({}),
        );
        assert!(
            ran.error().starts_with(
                "n (ComparisonNode): unknown operator '=~' (allowed: == / equals (==), "
            ),
            "{}",
            ran.error()
        );
    }

    #[test]
    fn random_number_ranges_and_seed() {
        let ran = run_node(
            "RandomNumberNode",
            json!({"min_value": 1, "max_value": 100}),
            json!({}),
        );
        let r = ran.out("n", "result");
        assert!(
            matches!(r, Value::Float(f) if (1.0..=100.0).contains(&f)),
            "{r:?}"
        );
        let again = run_node(
            "RandomNumberNode",
            json!({"min_value": 1, "max_value": 100}),
            json!({}),
        );
        assert_eq!(again.out("n", "result"), r);
        for _ in 0..3 {
            let ran = run_node(
                "RandomNumberNode",
                json!({"min_value": 5, "max_value": "3", "integer_only": true}),
                json!({}),
            );
            assert!(matches!(ran.out("n", "result"), Value::Int(i) if (3..=5).contains(&i)));
        }
        let ran = run_node(
            "RandomNumberNode",
            json!({"min_value": 7, "max_value": 7, "integer_only": "true"}),
            json!({}),
        );
        assert!(matches!(ran.out("n", "result"), Value::Int(7)));
        let ran = run_node("RandomNumberNode", json!({}), json!({}));
        assert!(matches!(ran.out("n", "result"), Value::Float(f) if (0.0..=100.0).contains(&f)));
        let ran = run_node("RandomNumberNode", json!({"min_value": "x"}), json!({}));
        assert_eq!(
            ran.error(),
            "n (RandomNumberNode): input 'min_value': could not convert string to float: 'x'"
        );
    }

    #[test]
    fn random_choice() {
        let fruits = json!(["apple", "banana", "cherry", "date"]);
        let ran = run_node("RandomChoiceNode", json!({"items": fruits}), json!({}));
        assert!(ran.outcome.success(), "{}", ran.error());
        let Value::Int(i) = ran.out("n", "index") else {
            panic!("index is not an int")
        };
        let list = v(&fruits.to_string());
        assert_eq!(
            Some(&ran.out("n", "result")),
            list.as_list().unwrap().get(i as usize)
        );
        let again = run_node("RandomChoiceNode", json!({"items": fruits}), json!({}));
        assert_eq!(again.out("n", "index"), Value::Int(i));

        // count > 1: distinct items, capped at the list length; with duplicates: exactly count.
        let ran = run_node(
            "RandomChoiceNode",
            json!({"items": "fruits", "count": 9}),
            json!({"fruits": fruits}),
        );
        let mut got: Vec<String> = ran
            .out("n", "result")
            .as_list()
            .unwrap()
            .iter()
            .map(|v| v.py_str())
            .collect();
        got.sort();
        assert_eq!(got, ["apple", "banana", "cherry", "date"]);
        assert_eq!(ran.out("n", "index"), Value::Int(-1));
        let ran = run_node(
            "RandomChoiceNode",
            json!({"items": [1, 2], "count": 5, "allow_duplicates": true}),
            json!({}),
        );
        let picks = ran.out("n", "result");
        assert_eq!(picks.as_list().map(|l| l.len()), Some(5));
        assert!(picks
            .as_list()
            .unwrap()
            .iter()
            .all(|p| matches!(p, Value::Int(1 | 2))));

        let ran = run_node("RandomChoiceNode", json!({"items": []}), json!({}));
        assert_eq!(
            ran.error(),
            "n (RandomChoiceNode): items list cannot be empty"
        );
        let ran = run_node(
            "RandomChoiceNode",
            json!({"items": [1], "count": -1}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (RandomChoiceNode): count must be >= 0, got -1"
        );
    }

    #[test]
    fn random_string() {
        let ran = run_node("RandomStringNode", json!({"length": 16}), json!({}));
        let s = ran.out("n", "result").py_str();
        assert_eq!(s.len(), 16);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()), "{s}");
        let again = run_node("RandomStringNode", json!({"length": 16}), json!({}));
        assert_eq!(again.out("n", "result").py_str(), s);

        let ran = run_node("RandomStringNode", json!({}), json!({}));
        assert_eq!(ran.out("n", "result").py_str().len(), 8);
        let ran = run_node(
            "RandomStringNode",
            json!({"length": 50, "include_uppercase": false, "include_lowercase": false}),
            json!({}),
        );
        assert!(ran
            .out("n", "result")
            .py_str()
            .chars()
            .all(|c| c.is_ascii_digit()));
        let ran = run_node(
            "RandomStringNode",
            json!({"length": 30, "custom_chars": "ab€"}),
            json!({}),
        );
        let s = ran.out("n", "result").py_str();
        assert_eq!(s.chars().count(), 30);
        assert!(s.chars().all(|c| "ab€".contains(c)));
        let ran = run_node(
            "RandomStringNode",
            json!({"length": 40, "include_uppercase": false, "include_lowercase": false,
                   "include_digits": false, "include_special": true}),
            json!({}),
        );
        assert!(ran
            .out("n", "result")
            .py_str()
            .chars()
            .all(|c| c.is_ascii_punctuation()));
        let ran = run_node("RandomStringNode", json!({"length": -3}), json!({}));
        assert_eq!(ran.out("n", "result"), Value::str(""));
        let ran = run_node(
            "RandomStringNode",
            json!({"length": 1_000_000_000}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (RandomStringNode): length 1000000000 is too large (limit 100000000 bytes)"
        );
    }

    fn is_uuid(s: &str, version: char) -> bool {
        let parts: Vec<&str> = s.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && s.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            && parts[2].starts_with(version)
            && parts[3].starts_with(['8', '9', 'a', 'b'])
    }

    #[test]
    fn random_uuid() {
        let ran = run_node("RandomUUIDNode", json!({}), json!({}));
        let u = ran.out("n", "result").py_str();
        assert!(is_uuid(&u, '4'), "{u}");
        let again = run_node("RandomUUIDNode", json!({}), json!({}));
        assert_eq!(again.out("n", "result").py_str(), u);

        let ran = run_node("RandomUUIDNode", json!({"format": "hex"}), json!({}));
        let h = ran.out("n", "result").py_str();
        assert_eq!(h.len(), 32);
        assert_eq!(h, u.replace('-', ""));
        let ran = run_node("RandomUUIDNode", json!({"format": "urn"}), json!({}));
        assert_eq!(ran.out("n", "result").py_str(), format!("urn:uuid:{u}"));
        let ran = run_node("RandomUUIDNode", json!({"version": 1}), json!({}));
        assert!(is_uuid(&ran.out("n", "result").py_str(), '1'));

        let ran = run_node("RandomUUIDNode", json!({"version": 7}), json!({}));
        assert_eq!(
            ran.error(),
            "n (RandomUUIDNode): unsupported uuid version 7 (allowed: 1, 4)"
        );
        let ran = run_node("RandomUUIDNode", json!({"format": "braces"}), json!({}));
        assert_eq!(
            ran.error(),
            "n (RandomUUIDNode): unknown uuid format 'braces' (allowed: standard, hex, urn)"
        );
    }

    #[test]
    fn shuffle_list() {
        let ran = run_node(
            "ShuffleListNode",
            json!({"items": "xs"}),
            json!({"xs": [1, 2, 3, 4, 5, 6, 7, 8]}),
        );
        let out = ran.out("n", "result");
        let mut sorted: Vec<i64> = out
            .as_list()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_i64())
            .collect();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            ran.var("xs"),
            v("[1, 2, 3, 4, 5, 6, 7, 8]"),
            "input unchanged"
        );
        let again = run_node(
            "ShuffleListNode",
            json!({"items": [1, 2, 3, 4, 5, 6, 7, 8]}),
            json!({"xs": 0}),
        );
        assert_eq!(again.out("n", "result"), out, "same seed, same order");
        let ran = run_node("ShuffleListNode", json!({"items": 5}), json!({}));
        assert_eq!(
            ran.error(),
            "n (ShuffleListNode): input 'items' must be a list, got int 5"
        );
        let err =
            crate::engine::load_str(&chain(&[("s", "ShuffleListNode", json!({"list": [1]}))]))
                .unwrap_err();
        assert!(
            err.to_string().contains("required input \"items\""),
            "{err}"
        );
    }

    #[test]
    fn batch_5_1_utility_fixed() {
        let ran = run_chain(&[
            (
                "random_number",
                "RandomNumberNode",
                json!({"min_value": 1, "max_value": 100}),
            ),
            ("random_string", "RandomStringNode", json!({"length": 10})),
            ("random_uuid", "RandomUUIDNode", json!({})),
        ]);
        assert!(ran.outcome.success(), "{}", ran.error());
        assert!(
            matches!(ran.out("random_number", "result"), Value::Float(f) if (1.0..=100.0).contains(&f))
        );
        assert_eq!(ran.out("random_string", "result").py_str().len(), 10);
        assert!(is_uuid(&ran.out("random_uuid", "result").py_str(), '4'));
    }
}

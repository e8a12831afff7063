//! Python-compatible values: the data that flows through variables, ports and templates.
//!
//! CasareRPA workflows were written against a Python engine, so logs, templates and comparisons must
//! behave like Python's: `int` and `float` are distinct (`15.0` prints as `15.0`), `True`/`None` print
//! capitalised inside containers, dicts keep insertion order and `repr` uses single quotes.
//! Containers and strings are reference-counted, so copying a value between ports, variables and
//! checkpoints is cheap; mutation goes through `Arc::make_mut` (copy on write).

use indexmap::IndexMap;
use std::cmp::Ordering;
use std::fmt::Write as _;
use std::sync::Arc;

/// An insertion-ordered dictionary, as Python's `dict`.
pub type Dict = IndexMap<String, Value>;

/// A workflow value with Python semantics.
#[derive(Clone, Debug, Default)]
pub enum Value {
    /// Python `None` (JSON `null`).
    #[default]
    Null,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` (64-bit here; overflow is an error in arithmetic).
    Int(i64),
    /// Python `float`.
    Float(f64),
    /// Python `str`.
    Str(Arc<str>),
    /// Python `list`.
    List(Arc<Vec<Value>>),
    /// Python `dict` with string keys, in insertion order.
    Dict(Arc<Dict>),
    /// A reference to a live run resource (`engine::resources`): prints, serialises and
    /// checkpoints only as its label, `<Database main>`.
    Handle(Arc<super::resources::Handle>),
}

impl Value {
    /// A string value.
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Str(Arc::from(s.as_ref()))
    }

    /// A list value.
    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    /// A dict value.
    pub fn dict(map: Dict) -> Value {
        Value::Dict(Arc::new(map))
    }

    /// A dict from `(key, value)` pairs.
    pub fn dict_from<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Dict(Arc::new(
            pairs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        ))
    }

    /// True for `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string slice when this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The list items when this is a `List`.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The map when this is a `Dict`.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The Python type name (`NoneType`, `bool`, `int`, `float`, `str`, `list`, `dict`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Handle(_) => "handle",
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Dict(d) => !d.is_empty(),
            Value::Handle(_) => true,
        }
    }

    /// The numeric value as f64 for `bool`, `int` and `float` (Python's numeric tower).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The integer value for `bool` and `int`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// True when containers nest deeper than `limit` levels (a scalar has depth 0, `[1]` depth 1).
    /// Iterative, and it only walks into containers, so it is cheap for flat data.
    pub fn depth_exceeds(&self, limit: usize) -> bool {
        let mut stack: Vec<(&Value, usize)> = vec![(self, 0)];
        while let Some((v, depth)) = stack.pop() {
            let children: &mut dyn Iterator<Item = &Value> = match v {
                Value::List(l) => &mut l.iter(),
                Value::Dict(d) => &mut d.values(),
                _ => continue,
            };
            if depth + 1 > limit {
                return true;
            }
            stack.extend(
                children
                    .filter(|c| matches!(c, Value::List(_) | Value::Dict(_)))
                    .map(|c| (c, depth + 1)),
            );
        }
        false
    }

    /// The value's size as the run's value budget counts it: the bytes of every string and dict
    /// key plus [`VALUE_OVERHEAD`] per value and per dict entry, about what it occupies in memory
    /// once unshared and the order of what it takes serialised. Shared parts count every time they
    /// appear (a list appended to itself counts twice), because printing, serialising or changing
    /// the value would expand them; each shared container is still walked only once, so a value
    /// whose logical size is exponential in its memory is measured in time linear in its memory.
    /// Measuring stops as soon as the size passes `cap` and returns a number above `cap`.
    pub fn budget_size(&self, cap: u64) -> u64 {
        let mut memo = None;
        measure(self, cap, &mut memo, 0)
    }

    /// Python `str(value)`.
    pub fn py_str(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            _ => {
                let mut out = String::new();
                self.write_py_str(&mut out);
                out
            }
        }
    }

    /// Append Python `str(value)` to `out`.
    pub fn write_py_str(&self, out: &mut String) {
        match self {
            Value::Str(s) => out.push_str(s),
            _ => self.write_repr(out),
        }
    }

    /// Python `repr(value)`.
    pub fn py_repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out);
        out
    }

    /// Append Python `repr(value)` to `out`.
    pub fn write_repr(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("None"),
            Value::Bool(true) => out.push_str("True"),
            Value::Bool(false) => out.push_str("False"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) => out.push_str(&float_repr(*f)),
            Value::Str(s) => write_str_repr(s, out),
            Value::List(items) => {
                out.push('[');
                for (idx, item) in items.iter().enumerate() {
                    if idx > 0 {
                        out.push_str(", ");
                    }
                    item.write_repr(out);
                }
                out.push(']');
            }
            Value::Dict(map) => {
                out.push('{');
                for (idx, (k, v)) in map.iter().enumerate() {
                    if idx > 0 {
                        out.push_str(", ");
                    }
                    write_str_repr(k, out);
                    out.push_str(": ");
                    v.write_repr(out);
                }
                out.push('}');
            }
            Value::Handle(h) => {
                let _ = write!(out, "{h}");
            }
        }
    }

    /// Python `==`: numbers compare across `bool`/`int`/`float`, containers element-wise.
    pub fn py_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.py_eq(y))
            }
            (Value::Dict(a), Value::Dict(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| v.py_eq(w)))
            }
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Handle(a), Value::Handle(b)) => a == b,
            _ => match (self.as_f64(), other.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }

    /// Python ordering (`<`): numbers with numbers, strings with strings, lists element-wise.
    /// Anything else is a `TypeError` in Python; the error text matches Python's.
    pub fn py_cmp(&self, other: &Value, op: &str) -> Result<Ordering, String> {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => Ok(a.cmp(b)),
            (Value::Str(a), Value::Str(b)) => Ok(a.as_ref().cmp(b.as_ref())),
            (Value::List(a), Value::List(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    if !x.py_eq(y) {
                        return x.py_cmp(y, op);
                    }
                }
                Ok(a.len().cmp(&b.len()))
            }
            _ => match (self.as_f64(), other.as_f64()) {
                (Some(a), Some(b)) => Ok(a.partial_cmp(&b).unwrap_or(Ordering::Equal)),
                _ => Err(format!(
                    "'{op}' not supported between instances of '{}' and '{}'",
                    self.type_name(),
                    other.type_name()
                )),
            },
        }
    }

    /// Build from a `serde_json` value (integers stay integers, floats stay floats).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => Value::list(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::dict(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Convert to a `serde_json` value (non-finite floats become `null`, as JSON has no NaN).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.to_string()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
            Value::Dict(d) => {
                serde_json::Value::Object(d.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Value::Handle(h) => serde_json::Value::String(h.to_string()),
        }
    }

    /// Parse JSON text into a value.
    pub fn parse_json(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str::<Value>(text)
    }

    /// Python's `json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii)`
    /// with Python's default separators (`", "` and `": "`; `","` at line ends when indenting).
    /// NaN and infinities are written as Python writes them (`NaN`, `Infinity`).
    pub fn to_py_json(&self, indent: Option<usize>, sort_keys: bool, ensure_ascii: bool) -> String {
        let mut out = String::new();
        write_py_json(self, &mut out, indent, sort_keys, ensure_ascii, 0);
        out
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.py_eq(other)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}
impl From<usize> for Value {
    fn from(i: usize) -> Value {
        Value::Int(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float(f)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(Arc::from(s))
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Value {
        Value::list(v)
    }
}
impl From<Dict> for Value {
    fn from(d: Dict) -> Value {
        Value::dict(d)
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => ser.serialize_unit(),
            Value::Bool(b) => ser.serialize_bool(*b),
            Value::Int(i) => ser.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => ser.serialize_f64(*f),
            Value::Float(_) => ser.serialize_unit(),
            Value::Str(s) => ser.serialize_str(s),
            Value::List(l) => {
                let mut seq = ser.serialize_seq(Some(l.len()))?;
                for item in l.iter() {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Dict(d) => {
                let mut map = ser.serialize_map(Some(d.len()))?;
                for (k, v) in d.iter() {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            // Only the label: a live resource never reaches a checkpoint, result or log.
            Value::Handle(h) => ser.collect_str(h),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Value, D::Error> {
        struct ValueVisitor;
        impl<'de> serde::de::Visitor<'de> for ValueVisitor {
            type Value = Value;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
                Ok(Value::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
                Ok(Value::Int(i))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
                Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
            }
            fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
                Ok(Value::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<Value, E> {
                Ok(Value::str(s))
            }
            fn visit_string<E>(self, s: String) -> Result<Value, E> {
                Ok(Value::from(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Value::list(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Value, A::Error> {
                let mut dict = Dict::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    dict.insert(k, v);
                }
                Ok(Value::dict(dict))
            }
        }
        de.deserialize_any(ValueVisitor)
    }
}

/// Python `repr(float)`: shortest round-trip digits, fixed notation for exponents in `-4..16`,
/// otherwise `1e+16` / `1.5e-05` style.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", f);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = (exp + 1) as usize;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// What the value budget counts for each value (and each dict entry) on top of its string bytes:
/// the slot and the shared allocation behind it, rounded up.
pub const VALUE_OVERHEAD: u64 = 32;

/// Containers nested deeper than this are counted by their overhead only; outputs deeper than
/// `runner::MAX_VALUE_DEPTH` are refused anyway, so this only bounds the recursion.
const MEASURE_DEPTH: usize = 256;

/// Sizes of shared containers already measured in one [`Value::budget_size`] call, by address
/// (stable while the measured value is borrowed).
type SizeMemo = std::collections::HashMap<*const (), u64>;

fn measure(v: &Value, cap: u64, memo: &mut Option<SizeMemo>, depth: usize) -> u64 {
    let (key, shared) = match v {
        Value::Str(s) => return VALUE_OVERHEAD + s.len() as u64,
        Value::List(l) => (
            Arc::as_ptr(l) as *const (),
            Arc::strong_count(l) > 1 && l.len() > 1,
        ),
        Value::Dict(d) => (
            Arc::as_ptr(d) as *const (),
            Arc::strong_count(d) > 1 && d.len() > 1,
        ),
        _ => return VALUE_OVERHEAD,
    };
    if depth >= MEASURE_DEPTH {
        return VALUE_OVERHEAD;
    }
    if shared {
        if let Some(size) = memo.as_ref().and_then(|m| m.get(&key)) {
            return *size;
        }
    }
    let mut total = VALUE_OVERHEAD;
    match v {
        Value::List(l) => {
            for item in l.iter() {
                total = total.saturating_add(measure(item, cap, memo, depth + 1));
                if total > cap {
                    return total;
                }
            }
        }
        Value::Dict(d) => {
            for (k, item) in d.iter() {
                total = total
                    .saturating_add(VALUE_OVERHEAD + k.len() as u64)
                    .saturating_add(measure(item, cap, memo, depth + 1));
                if total > cap {
                    return total;
                }
            }
        }
        _ => {}
    }
    if shared {
        memo.get_or_insert_with(SizeMemo::new).insert(key, total);
    }
    total
}

/// Python `repr(str)`: single quotes unless the text contains a single quote and no double quote.
fn write_str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

fn write_json_str(s: &str, out: &mut String, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_py_json(
    value: &Value,
    out: &mut String,
    indent: Option<usize>,
    sort_keys: bool,
    ensure_ascii: bool,
    depth: usize,
) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            for _ in 0..width * depth {
                out.push(' ');
            }
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Value::Float(f) => out.push_str(&float_repr(*f)),
        Value::Str(s) => write_json_str(s, out, ensure_ascii),
        Value::Handle(h) => write_json_str(&h.to_string(), out, ensure_ascii),
        Value::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_py_json(item, out, indent, sort_keys, ensure_ascii, depth + 1);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Dict(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            for (idx, (k, v)) in entries.into_iter().enumerate() {
                if idx > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json_str(k, out, ensure_ascii);
                out.push_str(": ");
                write_py_json(v, out, indent, sort_keys, ensure_ascii, depth + 1);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_float(f: f64, expected: &str) {
        assert_eq!(float_repr(f), expected, "repr({f})");
    }

    #[test]
    fn float_repr_matches_python() {
        check_float(15.0, "15.0");
        check_float(0.1 + 0.2, "0.30000000000000004");
        check_float(1e16, "1e+16");
        check_float(1e-5, "1e-05");
        check_float(0.0001, "0.0001");
        check_float(123456789012345.0, "123456789012345.0");
        check_float(1234567890123456.0, "1234567890123456.0");
        check_float(-2.5, "-2.5");
        check_float(1.5e300, "1.5e+300");
        check_float(-0.0, "-0.0");
        check_float(f64::NAN, "nan");
        check_float(f64::INFINITY, "inf");
    }

    #[test]
    fn str_and_repr_match_python() {
        let v = Value::dict_from([("status", Value::str("ok")), ("code", Value::Int(200))]);
        assert_eq!(v.py_str(), "{'status': 'ok', 'code': 200}");
        let l = Value::list(vec![
            Value::str("a"),
            Value::Bool(true),
            Value::Null,
            Value::Float(1.0),
        ]);
        assert_eq!(l.py_str(), "['a', True, None, 1.0]");
        assert_eq!(Value::str("it's").py_repr(), "\"it's\"");
        assert_eq!(Value::str("a\nb").py_repr(), "'a\\nb'");
        assert_eq!(Value::Bool(false).py_str(), "False");
        assert_eq!(Value::str("plain").py_str(), "plain");
    }

    #[test]
    fn equality_crosses_numeric_types() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_eq!(Value::Bool(true), Value::Int(1));
        assert_ne!(Value::str("1"), Value::Int(1));
        assert_eq!(
            Value::list(vec![Value::Int(1), Value::Float(2.0)]),
            Value::list(vec![Value::Float(1.0), Value::Int(2)])
        );
    }

    #[test]
    fn ordering_follows_python() {
        assert_eq!(
            Value::Int(2).py_cmp(&Value::Float(2.5), "<"),
            Ok(Ordering::Less)
        );
        assert_eq!(
            Value::str("b").py_cmp(&Value::str("a"), "<"),
            Ok(Ordering::Greater)
        );
        let err = Value::str("a").py_cmp(&Value::Int(1), "<").unwrap_err();
        assert_eq!(
            err,
            "'<' not supported between instances of 'str' and 'int'"
        );
    }

    #[test]
    fn depth_limit() {
        let mut v = Value::Int(1);
        assert!(!v.depth_exceeds(0));
        for _ in 0..5 {
            v = Value::list(vec![Value::Int(0), v]);
        }
        assert!(!v.depth_exceeds(5));
        assert!(v.depth_exceeds(4));
        let wide = Value::list((0..10_000i64).map(Value::Int).collect());
        assert!(!wide.depth_exceeds(1));
    }

    #[test]
    fn budget_size_counts_bytes_and_overhead() {
        assert_eq!(Value::Int(7).budget_size(u64::MAX), VALUE_OVERHEAD);
        assert_eq!(Value::str("abc").budget_size(u64::MAX), VALUE_OVERHEAD + 3);
        let l = Value::list(vec![Value::str("ab"), Value::Null]);
        assert_eq!(l.budget_size(u64::MAX), 3 * VALUE_OVERHEAD + 2);
        let d = Value::dict_from([("key", Value::str("v"))]);
        assert_eq!(d.budget_size(u64::MAX), 3 * VALUE_OVERHEAD + 3 + 1);
    }

    #[test]
    fn budget_size_counts_shared_parts_every_time_but_walks_them_once() {
        // Each level holds the previous one twice: 2^60 leaves, 61 allocations.
        let mut v = Value::list(vec![Value::str("x"), Value::str("y")]);
        let mut expected = v.budget_size(u64::MAX);
        for _ in 0..60 {
            v = Value::list(vec![v.clone(), v.clone()]);
            expected = expected.saturating_mul(2).saturating_add(VALUE_OVERHEAD);
        }
        assert_eq!(v.budget_size(u64::MAX), expected);
        assert!(expected > 1 << 60);
        let cap = 1 << 20;
        assert!(v.budget_size(cap) > cap);
    }

    #[test]
    fn truthiness() {
        for (v, t) in [
            (Value::Null, false),
            (Value::Int(0), false),
            (Value::Float(0.0), false),
            (Value::str(""), false),
            (Value::list(vec![]), false),
            (Value::str("0"), true),
            (Value::Int(-1), true),
        ] {
            assert_eq!(v.truthy(), t, "{v:?}");
        }
    }

    #[test]
    fn json_round_trip_keeps_int_float_and_order() {
        let v = Value::parse_json(r#"{"b": 1, "a": 1.0, "c": [true, null, "x"]}"#).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.keys().collect::<Vec<_>>(), ["b", "a", "c"]);
        assert!(matches!(d["b"], Value::Int(1)));
        assert!(matches!(d["a"], Value::Float(_)));
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"b":1,"a":1.0,"c":[true,null,"x"]}"#
        );
    }

    #[test]
    fn py_json_dumps() {
        let v = Value::parse_json(r#"{"name": "Zoë", "n": [1, 2.5], "e": {}}"#).unwrap();
        assert_eq!(
            v.to_py_json(None, false, true),
            r#"{"name": "Zo\u00eb", "n": [1, 2.5], "e": {}}"#
        );
        assert_eq!(
            v.to_py_json(None, true, false),
            r#"{"e": {}, "n": [1, 2.5], "name": "Zoë"}"#
        );
        assert_eq!(
            Value::parse_json(r#"{"a": [1]}"#)
                .unwrap()
                .to_py_json(Some(2), false, true),
            "{\n  \"a\": [\n    1\n  ]\n}"
        );
    }
}

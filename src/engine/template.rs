//! Template references inside config strings: `{{path}}`, legacy `${path}` and `%path%`.
//!
//! Rules (CasareRPA's `variable_resolver.py`): a string that is exactly one reference (surrounding
//! whitespace allowed) resolves to the referenced value with its type; embedded references are
//! replaced by Python `str()` of the value (`None` becomes an empty string); a reference that does not
//! resolve stays in the text literally. `path := ['$'] IDENT ('.' IDENT | '[' DIGITS ']')*`.
//! System variables: `$currentDate`, `$currentTime`, `$currentDateTime`, `$timestamp`.
//! Templates are compiled once at load time; resolving never re-parses.

use super::value::Value;

/// Where a template looks names up: workflow variables, then node outputs.
pub trait Scope {
    /// The value bound to `name`, if any.
    fn get(&self, name: &str) -> Option<&Value>;
}

impl Scope for crate::engine::Dict {
    fn get(&self, name: &str) -> Option<&Value> {
        crate::engine::Dict::get(self, name)
    }
}

/// One step of a reference path after the root name.
#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    /// `.key` on a dict.
    Key(String),
    /// `[n]` on a list (or a dict key made of digits).
    Index(usize),
}

/// A parsed reference such as `node_1.result[0]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    /// The whole path text (`a.b[0]`), tried as a direct variable name first.
    pub text: String,
    /// The root name (`a`).
    pub root: String,
    /// The steps after the root.
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug)]
enum Part {
    Lit(String),
    Ref { path: Path, raw: String },
}

/// A compiled template string.
#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
    /// Set when the whole string (trimmed) is one reference.
    whole: Option<usize>,
    source: String,
}

impl Template {
    /// Compile `text`; `None` when it holds no reference (it is a plain literal).
    pub fn compile(text: &str) -> Option<Template> {
        if !text.contains("{{") && !text.contains("${") && !text.contains('%') {
            return None;
        }
        let mut parts = Vec::new();
        let mut lit_start = 0;
        let mut pos = 0;
        let bytes = text.as_bytes();
        while pos < bytes.len() {
            if let Some((path, end)) = match_ref(text, pos) {
                if lit_start < pos {
                    parts.push(Part::Lit(text[lit_start..pos].to_string()));
                }
                parts.push(Part::Ref {
                    path,
                    raw: text[pos..end].to_string(),
                });
                pos = end;
                lit_start = end;
            } else {
                pos += 1;
                while pos < bytes.len() && !text.is_char_boundary(pos) {
                    pos += 1;
                }
            }
        }
        if parts.is_empty() {
            return None;
        }
        if lit_start < text.len() {
            parts.push(Part::Lit(text[lit_start..].to_string()));
        }
        let refs: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Part::Ref { .. }))
            .map(|(i, _)| i)
            .collect();
        let whole = if refs.len() == 1
            && parts.iter().all(|p| {
                matches!(p, Part::Ref { .. }) || matches!(p, Part::Lit(s) if s.trim().is_empty())
            }) {
            Some(refs[0])
        } else {
            None
        };
        Some(Template {
            parts,
            whole,
            source: text.to_string(),
        })
    }

    /// True when the whole text (surrounding whitespace aside) is one reference, so resolving it
    /// keeps the referenced value's type.
    pub fn is_whole(&self) -> bool {
        self.whole.is_some()
    }

    /// The original text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The references this template uses.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.parts.iter().filter_map(|p| match p {
            Part::Ref { path, .. } => Some(path),
            Part::Lit(_) => None,
        })
    }

    /// Resolve against `scope`.
    pub fn resolve(&self, scope: &dyn Scope) -> Value {
        self.resolve_capped(scope, u64::MAX)
            .unwrap_or_else(|_| Value::str(&self.source))
    }

    /// Resolve against `scope`, refusing to build text of more than `cap` bytes: `Err` carries
    /// the size reached when the text was given up, before the part that would pass `cap` was
    /// copied (a referenced list or dict counts by [`Value::budget_size`]). A whole reference
    /// yields the existing value, which grows nothing.
    pub fn resolve_capped(&self, scope: &dyn Scope, cap: u64) -> Result<Value, u64> {
        if let Some(idx) = self.whole {
            if let Part::Ref { path, .. } = &self.parts[idx] {
                return Ok(match lookup(path, scope) {
                    Some(v) if !v.is_null() => v,
                    _ => Value::str(&self.source),
                });
            }
        }
        let mut out = String::with_capacity(self.source.len() + 16);
        let over = |out: &String, more: u64| {
            let needed = (out.len() as u64).saturating_add(more);
            (needed > cap).then_some(needed)
        };
        for part in &self.parts {
            match part {
                Part::Lit(s) => {
                    if let Some(needed) = over(&out, s.len() as u64) {
                        return Err(needed);
                    }
                    out.push_str(s);
                }
                Part::Ref { path, raw } => match lookup(path, scope) {
                    Some(Value::Null) => {}
                    Some(Value::Str(s)) => {
                        if let Some(needed) = over(&out, s.len() as u64) {
                            return Err(needed);
                        }
                        out.push_str(&s);
                    }
                    Some(v) => {
                        if matches!(v, Value::List(_) | Value::Dict(_)) && cap != u64::MAX {
                            let room = cap.saturating_sub(out.len() as u64);
                            if let Some(needed) = over(&out, v.budget_size(room)) {
                                return Err(needed);
                            }
                        }
                        v.write_py_str(&mut out);
                    }
                    None => out.push_str(raw),
                },
            }
        }
        match over(&out, 0) {
            Some(needed) => Err(needed),
            None => Ok(Value::from(out)),
        }
    }
}

/// Resolve a string that may hold references (compiling it on the fly).
pub fn resolve_str(text: &str, scope: &dyn Scope) -> Value {
    match Template::compile(text) {
        Some(t) => t.resolve(scope),
        None => Value::str(text),
    }
}

/// Resolve every string inside `value` (lists and dicts recursively).
pub fn resolve_value(value: &Value, scope: &dyn Scope) -> Value {
    resolve_value_capped(value, scope, u64::MAX).unwrap_or_else(|_| value.clone())
}

/// [`resolve_value`] with each templated string held to `cap` bytes, as
/// [`Template::resolve_capped`] does.
pub fn resolve_value_capped(value: &Value, scope: &dyn Scope, cap: u64) -> Result<Value, u64> {
    Ok(match value {
        Value::Str(s) => match Template::compile(s) {
            Some(t) => t.resolve_capped(scope, cap)?,
            None => value.clone(),
        },
        Value::List(items) => Value::list(
            items
                .iter()
                .map(|v| resolve_value_capped(v, scope, cap))
                .collect::<Result<_, _>>()?,
        ),
        Value::Dict(map) => Value::dict(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_value_capped(v, scope, cap)?)))
                .collect::<Result<_, u64>>()?,
        ),
        other => other.clone(),
    })
}

/// True when `value` holds a template reference somewhere.
pub fn has_refs(value: &Value) -> bool {
    match value {
        Value::Str(s) => Template::compile(s).is_some(),
        Value::List(items) => items.iter().any(has_refs),
        Value::Dict(map) => map.values().any(has_refs),
        _ => false,
    }
}

/// Look a path up: system variables, then the whole dotted text as a name, then a nested walk.
pub fn lookup(path: &Path, scope: &dyn Scope) -> Option<Value> {
    if path.root.starts_with('$') && path.segments.is_empty() {
        if let Some(v) = system_var(&path.root) {
            return Some(v);
        }
    }
    if !path.segments.is_empty() {
        if let Some(v) = scope.get(&path.text) {
            return (!v.is_null()).then(|| v.clone());
        }
    }
    let mut cur = scope.get(&path.root)?;
    for seg in &path.segments {
        if cur.is_null() {
            return None;
        }
        cur = match (seg, cur) {
            (Segment::Key(k), Value::Dict(d)) => d.get(k.as_str())?,
            (Segment::Index(i), Value::List(l)) => l.get(*i)?,
            (Segment::Index(i), Value::Dict(d)) => d.get(i.to_string().as_str())?,
            _ => return None,
        };
    }
    Some(cur.clone())
}

fn system_var(name: &str) -> Option<Value> {
    let now = chrono::Local::now();
    Some(match name {
        "$currentDate" => Value::from(now.format("%Y-%m-%d").to_string()),
        "$currentTime" => Value::from(now.format("%H:%M:%S").to_string()),
        "$currentDateTime" => Value::from(now.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        "$timestamp" => Value::Int(now.timestamp()),
        _ => return None,
    })
}

/// Try to match a reference starting at byte `pos`; returns the path and the end offset.
fn match_ref(text: &str, pos: usize) -> Option<(Path, usize)> {
    let rest = &text[pos..];
    let (open, close) = if rest.starts_with("{{") {
        ("{{", "}}")
    } else if rest.starts_with("${") {
        ("${", "}")
    } else if rest.starts_with('%') {
        ("%", "%")
    } else {
        return None;
    };
    let inner_start = pos + open.len();
    let close_rel = text[inner_start..].find(close)?;
    let inner = &text[inner_start..inner_start + close_rel];
    let path_text = if open == "%" { inner } else { inner.trim() };
    let path = parse_path(path_text)?;
    Some((path, inner_start + close_rel + close.len()))
}

/// Parse `['$'] IDENT ('.' IDENT | '[' DIGITS ']')*`.
pub fn parse_path(text: &str) -> Option<Path> {
    let bytes = text.as_bytes();
    let mut i = 0;
    if bytes.first() == Some(&b'$') {
        i = 1;
    }
    let ident = |i: &mut usize| -> Option<()> {
        let start = *i;
        if *i < bytes.len() && (bytes[*i].is_ascii_alphabetic() || bytes[*i] == b'_') {
            *i += 1;
            while *i < bytes.len() && (bytes[*i].is_ascii_alphanumeric() || bytes[*i] == b'_') {
                *i += 1;
            }
        }
        (*i > start).then_some(())
    };
    ident(&mut i)?;
    let root = text[..i].to_string();
    let mut segments = Vec::new();
    while i < bytes.len() {
        match bytes[i] {
            b'.' => {
                i += 1;
                let start = i;
                ident(&mut i)?;
                segments.push(Segment::Key(text[start..i].to_string()));
            }
            b'[' => {
                i += 1;
                let start = i;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if i == start || bytes.get(i) != Some(&b']') {
                    return None;
                }
                segments.push(Segment::Index(text[start..i].parse().ok()?));
                i += 1;
            }
            _ => return None,
        }
    }
    Some(Path {
        text: text.to_string(),
        root,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Dict;

    fn scope() -> Dict {
        let v = Value::parse_json(
            r#"{"name": "Alice", "n": 5, "f": 15.0, "none": null, "flag": true,
                "node_1": {"result": [1, 2, {"k": "deep"}], "status": "ok"},
                "a.b": "dotted", "d": {"status": "ok", "code": 200}}"#,
        )
        .unwrap();
        v.as_dict().unwrap().clone()
    }

    fn check(text: &str, expected: Value) {
        let got = resolve_str(text, &scope());
        assert_eq!(got, expected, "{text}");
        assert_eq!(got.type_name(), expected.type_name(), "{text}");
    }

    #[test]
    fn capped_resolution_gives_up_before_passing_the_cap() {
        let t = Template::compile("[{{name}}] {{node_1.result}}").unwrap();
        let full = t.resolve(&scope());
        assert_eq!(full, Value::str("[Alice] [1, 2, {'k': 'deep'}]"));
        assert_eq!(t.resolve_capped(&scope(), 1000), Ok(full));
        // "[Alice] " fits in 10 bytes; the list (5 values, 1 key) does not.
        assert!(matches!(t.resolve_capped(&scope(), 10), Err(n) if n > 10));
        assert_eq!(t.resolve_capped(&scope(), 3), Err(6));
        // A whole reference grows nothing.
        let whole = Template::compile("{{node_1.result}}").unwrap();
        assert!(whole.resolve_capped(&scope(), 0).is_ok());
    }

    #[test]
    fn whole_references_keep_their_type() {
        check("{{n}}", Value::Int(5));
        check("  {{ f }} ", Value::Float(15.0));
        check("{{flag}}", Value::Bool(true));
        check("{{node_1.result[2].k}}", Value::str("deep"));
        check("${n}", Value::Int(5));
        check("%name%", Value::str("Alice"));
        check("{{a.b}}", Value::str("dotted"));
    }

    #[test]
    fn embedded_references_format_like_python() {
        check(
            "Hi {{name}}, n={{n}}, f={{f}}",
            Value::str("Hi Alice, n=5, f=15.0"),
        );
        check("d={{d}}", Value::str("d={'status': 'ok', 'code': 200}"));
        check("[{{none}}]", Value::str("[]"));
        check("{{flag}}!", Value::str("True!"));
    }

    #[test]
    fn unresolved_references_stay_literal() {
        check("{{missing}}", Value::str("{{missing}}"));
        check("x {{node_1.nope}} y", Value::str("x {{node_1.nope}} y"));
        check("{{none}}", Value::str("{{none}}"));
        check("100% sure", Value::str("100% sure"));
        check("{{ not a path }}", Value::str("{{ not a path }}"));
    }

    #[test]
    fn system_variables() {
        let v = resolve_str("{{$timestamp}}", &scope());
        assert!(matches!(v, Value::Int(t) if t > 1_600_000_000));
        let d = resolve_str("{{$currentDate}}", &scope());
        assert_eq!(d.as_str().unwrap().len(), 10);
    }

    #[test]
    fn containers_resolve_recursively() {
        let v = Value::parse_json(r#"{"a": ["{{n}}", "x{{name}}"], "b": 1}"#).unwrap();
        assert!(has_refs(&v));
        let r = resolve_value(&v, &scope());
        assert_eq!(
            r,
            Value::parse_json(r#"{"a": [5, "xAlice"], "b": 1}"#).unwrap()
        );
    }
}

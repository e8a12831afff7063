//! Python `str.format(**kwargs)` over workflow values, as LogNode's post-formatting step needs it.
//!
//! Owns the template grammar (`{name}`, `{name[key]}`, `{name.attr}`, `{{`/`}}`, `!r`/`!s`/`!a`,
//! nested `{w}` inside a spec) and the format-spec mini-language
//! `[[fill]align][sign][z][#][0][width][,|_][.precision][type]` for `s d n c b o x X e E f F g G %`.
//! Errors are classified the way LogNode reacts to them (see `FormatError`). Limits: width and
//! precision above 10,000 are refused (Python would allocate them); there are no positional args.

use super::value::{float_repr, Value};

/// Largest accepted width or precision.
const MAX_WIDTH: usize = 10_000;

/// Why a template could not be formatted, grouped by how LogNode reacts.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatError {
    /// A named field is missing (Python KeyError): callers such as LogNode fall back to the unformatted text.
    KeyError(String),
    /// Malformed template or bad spec (Python ValueError): also a fallback for LogNode.
    ValueError(String),
    /// Positional `{}`/`{0}`, attribute access on a dict, or another error Python does not catch
    /// there (IndexError/AttributeError/TypeError): LogNode fails the node on these.
    IndexError(String),
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatError::KeyError(k) => write!(f, "missing format key '{k}'"),
            FormatError::ValueError(m) | FormatError::IndexError(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FormatError {}

fn value_err(m: impl Into<String>) -> FormatError {
    FormatError::ValueError(m.into())
}

/// Python `template.format(**args)`: `{name}`, `{name.key}` / `{name[0]}` / `{name[key]}` lookups,
/// `{{`/`}}` escapes, conversion `!r`/`!s`, and format specs
/// `[[fill]align][sign][#][0][width][,][.precision][type]` for types s d f F e E g G % x o b and none.
pub fn format(template: &str, args: &dyn Fn(&str) -> Option<Value>) -> Result<String, FormatError> {
    format_depth(template, args, 0)
}

fn format_depth(
    template: &str,
    args: &dyn Fn(&str) -> Option<Value>,
    depth: u8,
) -> Result<String, FormatError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let brace = rest.as_bytes()[pos];
        let after = &rest[pos + 1..];
        if brace == b'}' {
            let Some(stripped) = after.strip_prefix('}') else {
                return Err(value_err("Single '}' encountered in format string"));
            };
            out.push('}');
            rest = stripped;
            continue;
        }
        if let Some(stripped) = after.strip_prefix('{') {
            out.push('{');
            rest = stripped;
            continue;
        }
        // Find the matching '}' (nested braces allowed once, inside the spec).
        let mut level = 1;
        let mut in_bracket = false;
        let mut end = None;
        for (i, c) in after.char_indices() {
            match c {
                '[' if level == 1 => in_bracket = true,
                ']' if level == 1 => in_bracket = false,
                '{' if !in_bracket => level += 1,
                '}' if !in_bracket => {
                    level -= 1;
                    if level == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else {
            return Err(value_err(if level > 1 {
                "unmatched '{' in format spec"
            } else {
                "Single '{' encountered in format string"
            }));
        };
        replace_field(&after[..end], args, depth, &mut out)?;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn replace_field(
    field: &str,
    args: &dyn Fn(&str) -> Option<Value>,
    depth: u8,
    out: &mut String,
) -> Result<(), FormatError> {
    // Split name / conversion / spec, skipping over `[...]` in the name.
    let mut name_end = field.len();
    let mut in_bracket = false;
    for (i, c) in field.char_indices() {
        match c {
            '[' => in_bracket = true,
            ']' => in_bracket = false,
            '!' | ':' if !in_bracket => {
                name_end = i;
                break;
            }
            _ => {}
        }
    }
    let name = &field[..name_end];
    let mut tail = &field[name_end..];
    let mut conversion = None;
    if let Some(conv) = tail.strip_prefix('!') {
        let mut chars = conv.chars();
        let c = chars
            .next()
            .ok_or_else(|| value_err("end of string while looking for conversion specifier"))?;
        conversion = Some(c);
        tail = chars.as_str();
        if !tail.is_empty() && !tail.starts_with(':') {
            return Err(value_err("expected ':' after conversion specifier"));
        }
    }
    let spec_src = tail.strip_prefix(':').unwrap_or("");
    let spec_owned;
    let spec = if spec_src.contains('{') {
        if depth >= 1 {
            return Err(value_err("Max string recursion exceeded"));
        }
        spec_owned = format_depth(spec_src, args, depth + 1)?;
        spec_owned.as_str()
    } else {
        spec_src
    };

    let value = lookup(name, args)?;
    let value = match conversion {
        None => value,
        Some('s') => Value::from(value.py_str()),
        Some('r') => Value::from(value.py_repr()),
        Some('a') => Value::from(ascii_escape(&value.py_repr())),
        Some(c) => return Err(value_err(format!("Unknown conversion specifier {c}"))),
    };
    format_value(&value, spec, out)
}

fn ascii_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let code = c as u32;
        match code {
            0..=0x7f => out.push(c),
            0x80..=0xff => out.push_str(&format!("\\x{code:02x}")),
            0x100..=0xffff => out.push_str(&format!("\\u{code:04x}")),
            _ => out.push_str(&format!("\\U{code:08x}")),
        }
    }
    out
}

fn lookup(name: &str, args: &dyn Fn(&str) -> Option<Value>) -> Result<Value, FormatError> {
    let first_end = name.find(['.', '[']).unwrap_or(name.len());
    let first = &name[..first_end];
    if first.is_empty() || first.bytes().all(|b| b.is_ascii_digit()) {
        let idx = if first.is_empty() { "0" } else { first };
        return Err(FormatError::IndexError(format!(
            "Replacement index {idx} out of range for positional args tuple"
        )));
    }
    let mut value = args(first).ok_or_else(|| FormatError::KeyError(first.to_string()))?;
    let mut rest = &name[first_end..];
    while !rest.is_empty() {
        if let Some(attr_rest) = rest.strip_prefix('.') {
            let end = attr_rest.find(['.', '[']).unwrap_or(attr_rest.len());
            let attr = &attr_rest[..end];
            if attr.is_empty() {
                return Err(value_err("Empty attribute in format string"));
            }
            return Err(FormatError::IndexError(format!(
                "'{}' object has no attribute '{attr}'",
                value.type_name()
            )));
        }
        let Some(inner) = rest.strip_prefix('[') else {
            return Err(value_err(
                "Only '.' or '[' may follow ']' in format field specifier",
            ));
        };
        let close = inner
            .find(']')
            .ok_or_else(|| value_err("Missing ']' in format string"))?;
        let key = &inner[..close];
        if key.is_empty() {
            return Err(value_err("Empty attribute in format string"));
        }
        let numeric = key.bytes().all(|b| b.is_ascii_digit());
        value = match (&value, numeric) {
            (Value::List(items), true) => {
                let i: usize = key.parse().unwrap_or(usize::MAX);
                items
                    .get(i)
                    .cloned()
                    .ok_or_else(|| FormatError::IndexError("list index out of range".into()))?
            }
            (Value::Str(s), true) => {
                let i: usize = key.parse().unwrap_or(usize::MAX);
                s.chars()
                    .nth(i)
                    .map(|c| Value::from(String::from(c)))
                    .ok_or_else(|| FormatError::IndexError("string index out of range".into()))?
            }
            // Python looks the int key up; string-keyed dicts never have it.
            (Value::Dict(_), true) => return Err(FormatError::KeyError(key.to_string())),
            (Value::Dict(d), false) => d
                .get(key)
                .cloned()
                .ok_or_else(|| FormatError::KeyError(key.to_string()))?,
            (Value::List(_) | Value::Str(_), false) => {
                return Err(FormatError::IndexError(format!(
                    "{} indices must be integers or slices, not str",
                    value.type_name()
                )))
            }
            (other, _) => {
                return Err(FormatError::IndexError(format!(
                    "'{}' object is not subscriptable",
                    other.type_name()
                )))
            }
        };
        rest = &inner[close + 1..];
    }
    Ok(value)
}

#[derive(Debug, Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    no_neg_zero: bool,
    alternate: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    kind: Option<char>,
}

fn parse_spec(spec: &str) -> Result<Spec, FormatError> {
    let chars: Vec<char> = spec.chars().collect();
    let mut s = Spec::default();
    let mut i = 0;
    let is_align = |c: char| matches!(c, '<' | '>' | '=' | '^');
    if chars.len() >= 2 && is_align(chars[1]) {
        s.fill = Some(chars[0]);
        s.align = Some(chars[1]);
        i = 2;
    } else if chars.first().is_some_and(|c| is_align(*c)) {
        s.align = Some(chars[0]);
        i = 1;
    }
    if let Some(&c @ ('+' | '-' | ' ')) = chars.get(i) {
        s.sign = Some(c);
        i += 1;
    }
    if chars.get(i) == Some(&'z') {
        s.no_neg_zero = true;
        i += 1;
    }
    if chars.get(i) == Some(&'#') {
        s.alternate = true;
        i += 1;
    }
    if chars.get(i) == Some(&'0') {
        s.fill.get_or_insert('0');
        s.align.get_or_insert('=');
        i += 1;
    }
    let number = |i: &mut usize| -> Result<Option<usize>, FormatError> {
        let start = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        if *i == start {
            return Ok(None);
        }
        let text: String = chars[start..*i].iter().collect();
        match text.parse::<usize>() {
            Ok(n) if n <= MAX_WIDTH => Ok(Some(n)),
            _ => Err(value_err("Too many decimal digits in format string")),
        }
    };
    s.width = number(&mut i)?.unwrap_or(0);
    if let Some(&c @ (',' | '_')) = chars.get(i) {
        s.grouping = Some(c);
        i += 1;
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        s.precision =
            Some(number(&mut i)?.ok_or_else(|| value_err("Format specifier missing precision"))?);
    }
    if let Some(&c) = chars.get(i) {
        s.kind = Some(c);
        i += 1;
    }
    if i != chars.len() {
        return Err(value_err("Invalid format specifier"));
    }
    Ok(s)
}

fn format_value(value: &Value, spec: &str, out: &mut String) -> Result<(), FormatError> {
    if spec.is_empty() {
        value.write_py_str(out);
        return Ok(());
    }
    let s = parse_spec(spec)?;
    match value {
        Value::Str(text) => format_str(text, &s, out),
        Value::Int(i) => format_int(*i, &s, "int", out),
        Value::Bool(b) => format_int(i64::from(*b), &s, "bool", out),
        Value::Float(f) => format_float(*f, &s, "float", out),
        other => Err(FormatError::IndexError(format!(
            "unsupported format string passed to {}.__format__",
            other.type_name()
        ))),
    }
}

fn pad(body: &str, s: &Spec, default_align: char, out: &mut String) {
    pad_parts("", body, s, default_align, out);
}

/// Pad `prefix + body` to the width; `=` alignment puts the fill between them.
fn pad_parts(prefix: &str, body: &str, s: &Spec, default_align: char, out: &mut String) {
    let len = prefix.chars().count() + body.chars().count();
    let fill = s.fill.unwrap_or(' ');
    let total = s.width.saturating_sub(len);
    let (left, right) = match s.align.unwrap_or(default_align) {
        '<' => (0, total),
        '^' => (total / 2, total - total / 2),
        '=' => {
            out.push_str(prefix);
            out.extend(std::iter::repeat_n(fill, total));
            out.push_str(body);
            return;
        }
        _ => (total, 0),
    };
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(prefix);
    out.push_str(body);
    out.extend(std::iter::repeat_n(fill, right));
}

fn format_str(text: &str, s: &Spec, out: &mut String) -> Result<(), FormatError> {
    if let Some(k) = s.kind.filter(|k| *k != 's') {
        return Err(value_err(format!(
            "Unknown format code '{k}' for object of type 'str'"
        )));
    }
    if s.sign.is_some() {
        return Err(value_err("Sign not allowed in string format specifier"));
    }
    if s.alternate {
        return Err(value_err(
            "Alternate form (#) not allowed in string format specifier",
        ));
    }
    if let Some(g) = s.grouping {
        return Err(value_err(format!("Cannot specify '{g}' with 's'.")));
    }
    if s.align == Some('=') {
        return Err(value_err(
            "'=' alignment not allowed in string format specifier",
        ));
    }
    let body: String = match s.precision {
        Some(p) => text.chars().take(p).collect(),
        None => text.to_string(),
    };
    pad(&body, s, '<', out);
    Ok(())
}

/// Insert `sep` every `every` digits from the right; with zero padding, grow to `min_len` first.
fn group(digits: &str, sep: char, every: usize, min_len: usize) -> String {
    let mut digits = digits.to_string();
    loop {
        let n = digits.chars().count();
        let mut out = String::with_capacity(n + n / every);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (n - i).is_multiple_of(every) {
                out.push(sep);
            }
            out.push(c);
        }
        if out.chars().count() >= min_len {
            return out;
        }
        digits.insert(0, '0');
    }
}

fn sign_prefix(negative: bool, s: &Spec) -> &'static str {
    match (negative, s.sign) {
        (true, _) => "-",
        (false, Some('+')) => "+",
        (false, Some(' ')) => " ",
        _ => "",
    }
}

/// Assemble sign, prefix, integer digits (grouped, zero-padded) and the rest.
fn finish_number(
    negative: bool,
    radix_prefix: &str,
    int_digits: &str,
    rest: &str,
    s: &Spec,
    every: usize,
    out: &mut String,
) {
    let mut prefix = String::from(sign_prefix(negative, s));
    prefix.push_str(radix_prefix);
    let zero_pad = s.fill == Some('0') && s.align == Some('=');
    let body_len_needed = if zero_pad {
        s.width
            .saturating_sub(prefix.chars().count() + rest.chars().count())
    } else {
        0
    };
    let digits = match s.grouping {
        Some(sep) if int_digits.bytes().all(|b| b.is_ascii_hexdigit()) => {
            group(int_digits, sep, every, body_len_needed)
        }
        _ => int_digits.to_string(),
    };
    let body = format!("{digits}{rest}");
    pad_parts(&prefix, &body, s, '>', out);
}

fn format_int(i: i64, s: &Spec, type_name: &str, out: &mut String) -> Result<(), FormatError> {
    let kind = s.kind.unwrap_or('d');
    match kind {
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%' => {
            return format_float(i as f64, s, type_name, out)
        }
        'd' | 'n' | 'b' | 'o' | 'x' | 'X' | 'c' => {}
        k => {
            return Err(value_err(format!(
                "Unknown format code '{k}' for object of type '{type_name}'"
            )))
        }
    }
    if s.precision.is_some() {
        return Err(value_err(
            "Precision not allowed in integer format specifier",
        ));
    }
    if let Some(g) = s.grouping {
        if kind == 'n' || kind == 'c' || (g == ',' && matches!(kind, 'b' | 'o' | 'x' | 'X')) {
            return Err(value_err(format!("Cannot specify '{g}' with '{kind}'.")));
        }
    }
    if kind == 'c' {
        let c = u32::try_from(i)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| FormatError::ValueError("%c arg not in range(0x110000)".into()))?;
        pad(&c.to_string(), s, '>', out);
        return Ok(());
    }
    let magnitude = i.unsigned_abs();
    let (digits, prefix, every) = match kind {
        'b' => (format!("{magnitude:b}"), "0b", 4),
        'o' => (format!("{magnitude:o}"), "0o", 4),
        'x' => (format!("{magnitude:x}"), "0x", 4),
        'X' => (format!("{magnitude:X}"), "0X", 4),
        _ => (magnitude.to_string(), "", 3),
    };
    let prefix = if s.alternate { prefix } else { "" };
    finish_number(i < 0, prefix, &digits, "", s, every, out);
    Ok(())
}

/// Python's exponent style: `e+05`.
fn py_exp(rust_sci: &str, upper: bool) -> String {
    let (mantissa, exp) = rust_sci.split_once('e').unwrap_or((rust_sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let e = if upper { 'E' } else { 'e' };
    format!(
        "{mantissa}{e}{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.abs()
    )
}

fn strip_zeros(fixed: &str) -> String {
    if fixed.contains('.') {
        fixed
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        fixed.to_string()
    }
}

/// `g`-style formatting of a non-negative finite value with `p` significant digits.
/// `repr_style` is the no-type variant: scientific from exp >= p - 1 and at least one decimal.
fn general(f: f64, p: usize, alternate: bool, upper: bool, repr_style: bool) -> String {
    let p = p.max(1);
    let sci = format!("{:.*e}", p - 1, f);
    let exp: i64 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let limit = if repr_style { p as i64 - 1 } else { p as i64 };
    if -4 <= exp && exp < limit {
        let decimals = usize::try_from(p as i64 - 1 - exp).unwrap_or(0);
        let fixed = format!("{:.*}", decimals, f);
        let mut text = if alternate {
            fixed
        } else {
            strip_zeros(&fixed)
        };
        if repr_style && !text.contains('.') {
            text.push_str(".0");
        }
        if alternate && !text.contains('.') {
            text.push('.');
        }
        text
    } else {
        let (mantissa, e) = sci.split_once('e').unwrap_or((&sci, "0"));
        let mut mantissa = if alternate {
            mantissa.to_string()
        } else {
            strip_zeros(mantissa)
        };
        if alternate && !mantissa.contains('.') {
            mantissa.push('.');
        }
        py_exp(&format!("{mantissa}e{e}"), upper)
    }
}

fn format_float(f: f64, s: &Spec, type_name: &str, out: &mut String) -> Result<(), FormatError> {
    let kind = s.kind;
    if let Some(k) = kind {
        if !matches!(k, 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%' | 'n') {
            return Err(value_err(format!(
                "Unknown format code '{k}' for object of type '{type_name}'"
            )));
        }
        if k == 'n' && s.grouping.is_some() {
            return Err(value_err("Cannot specify ',' with 'n'."));
        }
    }
    let mut negative = f.is_sign_negative() && !f.is_nan();
    let mut a = f.abs();
    if kind == Some('%') {
        a *= 100.0;
    }
    let upper = matches!(kind, Some('E' | 'F' | 'G'));
    let text = if !a.is_finite() {
        let t = if a.is_nan() { "nan" } else { "inf" };
        let t = if upper {
            t.to_uppercase()
        } else {
            t.to_string()
        };
        if kind == Some('%') {
            format!("{t}%")
        } else {
            t
        }
    } else {
        match kind {
            Some('f' | 'F' | '%') => {
                let p = s.precision.unwrap_or(6);
                let mut t = format!("{:.*}", p, a);
                if s.alternate && p == 0 {
                    t.push('.');
                }
                if kind == Some('%') {
                    t.push('%');
                }
                t
            }
            Some('e' | 'E') => {
                let p = s.precision.unwrap_or(6);
                let t = format!("{:.*e}", p, a);
                let t = if s.alternate && p == 0 {
                    t.replacen('e', ".e", 1)
                } else {
                    t
                };
                py_exp(&t, upper)
            }
            Some('g' | 'G' | 'n') => {
                general(a, s.precision.unwrap_or(6), s.alternate, upper, false)
            }
            _ => match s.precision {
                Some(p) => general(a, p, s.alternate, false, true),
                None => float_repr(a),
            },
        }
    };
    if s.no_neg_zero
        && negative
        && text
            .trim_start_matches(['0', '.'])
            .chars()
            .all(|c| !c.is_ascii_digit() || c == '0')
    {
        negative = false;
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (int_part, rest) = text.split_at(split);
    let (int_part, rest) = if int_part.is_empty() {
        (rest, "")
    } else {
        (int_part, rest)
    };
    finish_number(negative, "", int_part, rest, s, 3, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str) -> Option<Value> {
        Some(match name {
            "name" => Value::str("Alice"),
            "n" => Value::Int(1234567),
            "neg" => Value::Int(-42),
            "f" => Value::Float(1.23456),
            "big" => Value::Float(1234.5),
            "t" => Value::Bool(true),
            "none" => Value::Null,
            "xs" => Value::list(vec![Value::str("a"), Value::Int(2)]),
            "d" => Value::dict_from([("status", Value::str("ok")), ("code", Value::Int(200))]),
            "w" => Value::Int(6),
            _ => return None,
        })
    }

    fn check(template: &str, expected: &str) {
        assert_eq!(
            format(template, &args),
            Ok(expected.to_string()),
            "{template}"
        );
    }

    fn check_err(template: &str, expected: FormatError) {
        assert_eq!(format(template, &args), Err(expected), "{template}");
    }

    #[test]
    fn fields_and_escapes() {
        for (t, e) in [
            ("plain", "plain"),
            ("Hi {name}!", "Hi Alice!"),
            ("{{literal}} {{{name}}}", "{literal} {Alice}"),
            ("{{random_uuid.uuid}}", "{random_uuid.uuid}"),
            ("{t} {none} {f}", "True None 1.23456"),
            ("{xs}", "['a', 2]"),
            ("{d}", "{'status': 'ok', 'code': 200}"),
            ("{d[status]} {d[code]}", "ok 200"),
            ("{xs[0]}{xs[1]}", "a2"),
            ("{name[0]}", "A"),
            ("{name!r}", "'Alice'"),
            ("{xs!s}", "['a', 2]"),
            ("{name!r:>9}", "  'Alice'"),
            ("{name!a}", "'Alice'"),
            ("{f:{w}.1f}", "   1.2"),
        ] {
            check(t, e);
        }
    }

    #[test]
    fn errors_are_classified_for_lognode() {
        check_err("{missing}", FormatError::KeyError("missing".into()));
        check_err("{d[missing]}", FormatError::KeyError("missing".into()));
        check_err(
            "{}",
            FormatError::IndexError(
                "Replacement index 0 out of range for positional args tuple".into(),
            ),
        );
        check_err(
            "{0}",
            FormatError::IndexError(
                "Replacement index 0 out of range for positional args tuple".into(),
            ),
        );
        check_err(
            "{d.status}",
            FormatError::IndexError("'dict' object has no attribute 'status'".into()),
        );
        check_err(
            "{xs[5]}",
            FormatError::IndexError("list index out of range".into()),
        );
        check_err(
            "{n[0]}",
            FormatError::IndexError("'int' object is not subscriptable".into()),
        );
        check_err(
            "oops }",
            FormatError::ValueError("Single '}' encountered in format string".into()),
        );
        check_err(
            "oops {",
            FormatError::ValueError("Single '{' encountered in format string".into()),
        );
        check_err(
            "{name!x}",
            FormatError::ValueError("Unknown conversion specifier x".into()),
        );
        check_err(
            "{name:.2f}",
            FormatError::ValueError("Unknown format code 'f' for object of type 'str'".into()),
        );
        check_err(
            "{f:d}",
            FormatError::ValueError("Unknown format code 'd' for object of type 'float'".into()),
        );
        check_err(
            "{n:.2d}",
            FormatError::ValueError("Precision not allowed in integer format specifier".into()),
        );
        check_err(
            "{n:abc}",
            FormatError::ValueError("Invalid format specifier".into()),
        );
        check_err(
            "{n:99999999}",
            FormatError::ValueError("Too many decimal digits in format string".into()),
        );
        assert!(matches!(
            format("{xs:>5}", &args),
            Err(FormatError::IndexError(_))
        ));
    }

    #[test]
    fn every_spec_type() {
        for (t, e) in [
            ("{name:>7}", "  Alice"),
            ("{name:<7}|", "Alice  |"),
            ("{name:^9}", "  Alice  "),
            ("{name:*^9}", "**Alice**"),
            ("{name:.3}", "Ali"),
            ("{name:s}", "Alice"),
            ("{n:d}", "1234567"),
            ("{n:,}", "1,234,567"),
            ("{n:_}", "1_234_567"),
            ("{neg:05d}", "-0042"),
            ("{neg:+}", "-42"),
            ("{w:+d}", "+6"),
            ("{w: d}", " 6"),
            ("{w:05}", "00006"),
            ("{n:012,}", "0,001,234,567"),
            ("{w:<4}|", "6   |"),
            ("{w:=+5}", "+   6"),
            ("{n:x}", "12d687"),
            ("{n:#X}", "0X12D687"),
            ("{w:o}", "6"),
            ("{w:#b}", "0b110"),
            ("{n:#_x}", "0x12_d687"),
            ("{w:c}", "\u{6}"),
            ("{n:n}", "1234567"),
            ("{f:.2f}", "1.23"),
            ("{w:.2f}", "6.00"),
            ("{f:F}", "1.234560"),
            ("{f:e}", "1.234560e+00"),
            ("{big:.2E}", "1.23E+03"),
            ("{f:g}", "1.23456"),
            ("{big:.2g}", "1.2e+03"),
            ("{big:G}", "1234.5"),
            ("{f:.1%}", "123.5%"),
            ("{w:%}", "600.000000%"),
            ("{big:,.1f}", "1,234.5"),
            ("{big:,}", "1,234.5"),
            ("{f:10.3f}", "     1.235"),
            ("{f:<10.3f}|", "1.235     |"),
            ("{f:010.3f}", "000001.235"),
            ("{f:+.1f}", "+1.2"),
            ("{big:.3}", "1.23e+03"),
            ("{f:.3}", "1.23"),
            ("{t:>5}", "    1"),
            ("{t}", "True"),
        ] {
            check(t, e);
        }
    }

    #[test]
    fn float_edge_cases() {
        let lookup = |name: &str| match name {
            "nan" => Some(Value::Float(f64::NAN)),
            "inf" => Some(Value::Float(f64::NEG_INFINITY)),
            "tiny" => Some(Value::Float(1e-7)),
            "negz" => Some(Value::Float(-0.0)),
            "half" => Some(Value::Float(0.125)),
            _ => None,
        };
        for (t, e) in [
            ("{nan:f}", "nan"),
            ("{nan:F}", "NAN"),
            ("{inf:>6}", "  -inf"),
            ("{tiny}", "1e-07"),
            ("{tiny:g}", "1e-07"),
            ("{tiny:f}", "0.000000"),
            ("{negz:.1f}", "-0.0"),
            ("{negz:z.1f}", "0.0"),
            ("{half:.2f}", "0.12"),
        ] {
            assert_eq!(format(t, &lookup), Ok(e.to_string()), "{t}");
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(42);
        let alphabet: Vec<char> = "{}[]!:.,_<>=^+- #0123456789sdfeEgGxXobcn%rRaz\u{e9}"
            .chars()
            .collect();
        let names = ["name", "n", "f", "d", "xs", "t", "none"];
        for _ in 0..4000 {
            let mut t = String::new();
            for _ in 0..rng.usize(0..24) {
                if rng.u8(0..5) == 0 {
                    t.push('{');
                    t.push_str(names[rng.usize(0..names.len())]);
                } else {
                    t.push(alphabet[rng.usize(0..alphabet.len())]);
                }
            }
            let _ = format(&t, &args);
        }
    }
}

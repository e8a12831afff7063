//! String and text nodes: CasareRPA's `string_nodes.py` (Concatenate, FormatString, RegexMatch,
//! RegexReplace) and `nodes/text/*.py` (TextSplit ... TextJoin, and the TextSuperNode dispatcher).
//!
//! Semantics follow the Python methods the upstream nodes call: `str.split` (whitespace split when
//! the separator is empty), `splitlines`, `strip`, `title`/`capitalize`/`swapcase`,
//! `rjust`/`ljust`/`center`, slicing by characters with negative indices, `find` returning -1,
//! `re.finditer`/`re.subn` with Python's empty-match rules and replacement syntax (`\1`, `\g<1>`,
//! `\g<name>`, `\n`...). Lengths and positions count characters (code points), never bytes.
//!
//! Deviations from upstream, and why:
//! * Every input reads its data edge, else config (templated), else the default ("Mode I", as
//!   decided in `engine.md`); upstream's `text.*` nodes ignored config for their inputs.
//! * Upstream converted inputs with `str(x or "")`, so `0`/`False` became `""`; here only `None`
//!   becomes `""` and every other value is formatted with Python `str()`.
//! * Unknown choice values (`mode`, `case`, `line_separator` names aside) are errors instead of a
//!   silent fallback, and integer inputs (`length`, `start`, `max_split`, ...) that are not integers
//!   are type errors instead of `safe_int`'s silent default. TextPad keeps upstream's fallback to a
//!   space when `fill_char` is not exactly one character (that was deliberate upstream code).
//! * TextReplace `count` = 0 replaces nothing in regex mode too (upstream passed 0 to `re.subn`,
//!   where it means "all"); -1 (any negative) means all, as the property says.
//! * TextLines `line_separator` maps `newline`/`crlf`/`comma` as upstream; any other non-empty value
//!   is used literally (upstream silently used a newline). Join mode with a `lines` value that is
//!   not a list is a type error (upstream joined an empty list).
//! * ConcatenateNode also reads `string1`/`string2` when `string_1`/`string_2` are unset: the
//!   batch 1.3 fixture writes them that way and the reference expects "Hello World" from it.
//! * Regexes run on the `regex` crate (linear time, so no ReDoS). Python syntax is translated
//!   (`\Z`, `{,n}`, literal `{`, `[` inside classes, `(?#...)`, octal escapes); look-around,
//!   backreferences, atomic groups and conditionals are refused with "unsupported regex feature".
//!   Python's `$` (without multiline) also matching before a final newline is not reproduced.
//!   RegexMatch/RegexReplace keep upstream's limits (text <= 100,000 chars, pattern <= 1000 chars).
//! * Every string result is capped at 100 MB (padding, joins and replacements that would grow
//!   larger fail with an error instead of exhausting memory).
//! * TextSuperNode's `text`/`search` are not load-time required (only some actions use them).

use crate::engine::node::{
    bad_param, opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError, NodeKind, ParamDef, EXEC_OUT,
};
use crate::engine::pyformat::{self, FormatError};
use crate::engine::value::Value;
use regex::{Captures, Regex, RegexBuilder};

/// Largest string result a node may produce, in bytes.
const MAX_RESULT_BYTES: usize = 100 * 1024 * 1024;
/// Upstream's ReDoS limits for RegexMatch / RegexReplace.
const MAX_REGEX_TEXT: usize = 100_000;
const MAX_REGEX_PATTERN: usize = 1000;

const NO: Lit = Lit::Bool(false);
const EMPTY: Lit = Lit::Str("");

const TEXT_SUPER_PARAMS: &[ParamDef] = &[
    opt("text", EMPTY),
    opt("search", EMPTY),
    opt("action", Lit::Str("Contains")),
    opt("case_sensitive", Lit::Bool(true)),
    opt("max_split", Lit::Int(-1)),
    opt("replace_count", Lit::Int(-1)),
    opt("use_regex", NO),
    opt("ignore_case", NO),
    opt("multiline", NO),
    opt("dotall", NO),
    opt("all_matches", NO),
    opt("trim_mode", Lit::Str("both")),
    opt("trim_characters", EMPTY),
    opt("case_transform", Lit::Str("lower")),
    opt("pad_mode", Lit::Str("left")),
    opt("fill_char", Lit::Str(" ")),
    opt("lines_mode", Lit::Str("split")),
    opt("line_separator", Lit::Str("newline")),
    opt("remove_empty", NO),
    opt("count_mode", Lit::Str("characters")),
    opt("exclude_whitespace", NO),
    opt("separator", EMPTY),
    opt("start", Lit::Int(0)),
    opt("end", Lit::Null),
    opt("prefix", EMPTY),
    opt("suffix", EMPTY),
    opt("pattern", EMPTY),
    opt("old_value", EMPTY),
    opt("new_value", EMPTY),
    opt("length", Lit::Int(0)),
    opt("lines", Lit::Null),
    opt("items", Lit::Null),
];

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "ConcatenateNode",
        &[
            opt("string_1", EMPTY),
            opt("string_2", EMPTY),
            opt("separator", EMPTY),
            opt("string1", Lit::Null),
            opt("string2", Lit::Null),
        ],
        &["result"],
        concatenate,
    ),
    NodeDef::plain(
        "FormatStringNode",
        &[opt("template", EMPTY), opt("variables", Lit::Null)],
        &["result"],
        format_string,
    ),
    NodeDef::plain(
        "RegexMatchNode",
        &[
            opt("text", EMPTY),
            opt("pattern", EMPTY),
            opt("ignore_case", NO),
            opt("multiline", NO),
            opt("dotall", NO),
        ],
        &[
            "match_found",
            "first_match",
            "all_matches",
            "groups",
            "match_count",
        ],
        regex_match,
    ),
    NodeDef::plain(
        "RegexReplaceNode",
        &[
            opt("text", EMPTY),
            opt("pattern", EMPTY),
            opt("replacement", EMPTY),
            opt("ignore_case", NO),
            opt("multiline", NO),
            opt("dotall", NO),
            opt("max_count", Lit::Int(0)),
        ],
        &["result", "count"],
        regex_replace,
    ),
    NodeDef::plain(
        "TextSplitNode",
        &[
            opt("text", EMPTY),
            opt("separator", EMPTY),
            opt("max_split", Lit::Int(-1)),
        ],
        &["result", "count"],
        text_split,
    ),
    NodeDef::plain(
        "TextReplaceNode",
        &[
            opt("text", EMPTY),
            opt("old_value", EMPTY),
            opt("new_value", EMPTY),
            opt("count", Lit::Int(-1)),
            opt("use_regex", NO),
            opt("ignore_case", NO),
            opt("multiline", NO),
            opt("dotall", NO),
        ],
        &["result", "replacements"],
        text_replace,
    ),
    NodeDef::plain(
        "TextTrimNode",
        &[
            opt("text", EMPTY),
            opt("mode", Lit::Str("both")),
            opt("characters", EMPTY),
        ],
        &["result"],
        text_trim,
    ),
    NodeDef::plain(
        "TextCaseNode",
        &[opt("text", EMPTY), opt("case", Lit::Str("lower"))],
        &["result"],
        text_case,
    ),
    NodeDef::plain(
        "TextPadNode",
        &[
            opt("text", EMPTY),
            opt("length", Lit::Int(0)),
            opt("mode", Lit::Str("left")),
            opt("fill_char", Lit::Str(" ")),
        ],
        &["result"],
        text_pad,
    ),
    NodeDef::plain(
        "TextReverseNode",
        &[opt("text", EMPTY)],
        &["result"],
        text_reverse,
    ),
    NodeDef::plain(
        "TextLinesNode",
        &[
            opt("text", EMPTY),
            opt("lines", Lit::Null),
            opt("mode", Lit::Str("split")),
            opt("line_separator", Lit::Str("newline")),
            opt("remove_empty", NO),
        ],
        &["lines", "text", "count"],
        text_lines,
    ),
    NodeDef::plain(
        "TextSubstringNode",
        &[
            opt("text", EMPTY),
            opt("start", Lit::Int(0)),
            opt("end", Lit::Null),
        ],
        &["result", "length"],
        text_substring,
    ),
    NodeDef::plain(
        "TextContainsNode",
        &[
            opt("text", EMPTY),
            opt("search", EMPTY),
            opt("case_sensitive", Lit::Bool(true)),
        ],
        &["contains", "position", "count"],
        text_contains,
    ),
    NodeDef::plain(
        "TextStartsWithNode",
        &[
            opt("text", EMPTY),
            opt("prefix", EMPTY),
            opt("case_sensitive", Lit::Bool(true)),
        ],
        &["result"],
        text_starts_with,
    ),
    NodeDef::plain(
        "TextEndsWithNode",
        &[
            opt("text", EMPTY),
            opt("suffix", EMPTY),
            opt("case_sensitive", Lit::Bool(true)),
        ],
        &["result"],
        text_ends_with,
    ),
    NodeDef::plain(
        "TextExtractNode",
        &[
            opt("text", EMPTY),
            req("pattern"),
            opt("all_matches", NO),
            opt("ignore_case", NO),
            opt("multiline", NO),
            opt("dotall", NO),
        ],
        &["match", "groups", "found"],
        text_extract,
    ),
    NodeDef::plain(
        "TextCountNode",
        &[
            opt("text", EMPTY),
            opt("mode", Lit::Str("characters")),
            opt("exclude_whitespace", NO),
        ],
        &["count"],
        text_count,
    ),
    NodeDef::plain(
        "TextJoinNode",
        &[req("items"), opt("separator", EMPTY)],
        &["result"],
        text_join,
    ),
    NodeDef {
        node_type: "TextSuperNode",
        params: TEXT_SUPER_PARAMS,
        outputs: &[
            "result",
            "length",
            "contains",
            "position",
            "count",
            "match",
            "groups",
            "found",
            "replacements",
            "lines",
            "text",
        ],
        routes: EXEC_OUT,
        kind: NodeKind::Plain,
        dynamic_ports: true,
        run: text_super,
    },
];

// ---------------------------------------------------------------------------------------------
// Parameter helpers

/// An integer parameter; `None`/empty text gives `default`.
fn int_param(ctx: &NodeCtx<'_>, name: &str, default: i64) -> Result<i64, NodeError> {
    Ok(ctx.param_opt_i64(name)?.unwrap_or(default))
}

/// A choice parameter, case-insensitive, checked against `options` (returned lowercased).
fn choice(ctx: &NodeCtx<'_>, name: &str, options: &[&str]) -> Result<String, NodeError> {
    let raw = ctx.param_str(name);
    let value = raw.trim().to_lowercase();
    if options.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(NodeError::value(format!(
            "unknown {name} '{raw}' (expected one of: {})",
            options.join(", ")
        )))
    }
}

fn check_size(bytes: usize, what: &str) -> Result<(), NodeError> {
    if bytes > MAX_RESULT_BYTES {
        Err(NodeError::value(format!(
            "{what} would be {bytes} bytes, over the {} MB limit for text results",
            MAX_RESULT_BYTES / (1024 * 1024)
        )))
    } else {
        Ok(())
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The budgeted size of a list of `n_items` strings holding `text_bytes` bytes together (see
/// `Value::budget_size`), known before the list is built.
fn list_bytes(n_items: usize, text_bytes: usize) -> u64 {
    let overhead = crate::engine::value::VALUE_OVERHEAD;
    (n_items as u64)
        .saturating_mul(overhead)
        .saturating_add(text_bytes as u64)
        .saturating_add(overhead)
}

fn str_list(items: impl IntoIterator<Item = String>) -> Value {
    Value::list(items.into_iter().map(Value::from).collect())
}

// ---------------------------------------------------------------------------------------------
// Python string semantics

/// Python `str.isspace` for one character.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `str.split(None, maxsplit)`: runs of whitespace separate, no empty parts; after
/// `maxsplit` splits the rest (left-stripped) is the last part.
fn py_split_ws(s: &str, maxsplit: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut left = if maxsplit < 0 { i64::MAX } else { maxsplit };
    while left > 0 {
        rest = rest.trim_start_matches(py_isspace);
        if rest.is_empty() {
            return out;
        }
        let end = rest.find(py_isspace).unwrap_or(rest.len());
        out.push(rest[..end].to_string());
        rest = &rest[end..];
        left -= 1;
    }
    let rest = rest.trim_start_matches(py_isspace);
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Python `str.split(sep, maxsplit)` with a non-empty separator.
fn py_split(s: &str, sep: &str, maxsplit: i64) -> Vec<String> {
    if maxsplit < 0 {
        s.split(sep).map(str::to_string).collect()
    } else {
        let n = usize::try_from(maxsplit)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        s.splitn(n, sep).map(str::to_string).collect()
    }
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\u{0b}'
            | '\u{0c}'
            | '\u{1c}'
            | '\u{1d}'
            | '\u{1e}'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Python `str.splitlines()` (without `keepends`).
fn py_splitlines(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find(is_line_break) {
            Some(i) => {
                out.push(rest[..i].to_string());
                let skip = if rest[i..].starts_with("\r\n") {
                    2
                } else {
                    rest[i..].chars().next().map_or(1, char::len_utf8)
                };
                rest = &rest[i + skip..];
            }
            None => {
                out.push(rest.to_string());
                break;
            }
        }
    }
    out
}

/// The Unicode titlecase of one character: the four Latin digraph letters have their own
/// titlecase form; otherwise the uppercase with any further characters lowercased (`ß` → `Ss`).
fn push_titlecase(c: char, out: &mut String) {
    match c {
        '\u{1c4}'..='\u{1c6}' => out.push('\u{1c5}'),
        '\u{1c7}'..='\u{1c9}' => out.push('\u{1c8}'),
        '\u{1ca}'..='\u{1cc}' => out.push('\u{1cb}'),
        '\u{1f1}'..='\u{1f3}' => out.push('\u{1f2}'),
        _ => {
            for (i, u) in c.to_uppercase().enumerate() {
                if i == 0 {
                    out.push(u);
                } else {
                    out.extend(u.to_lowercase());
                }
            }
        }
    }
}

fn is_cased(c: char) -> bool {
    c.is_uppercase() || c.is_lowercase()
}

/// Python `str.title()`: a cased character following an uncased one is uppercased, the others
/// lowercased (so `"they're 1st"` → `"They'Re 1St"`, as in Python); "upper" is the titlecase.
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            push_titlecase(c, &mut out);
        }
        prev_cased = is_cased(c);
    }
    out
}

/// Python `str.capitalize()` (3.8+): first character titlecased, the rest lower.
fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        None => String::new(),
        Some(first) => {
            let mut out = String::with_capacity(s.len());
            push_titlecase(first, &mut out);
            out.push_str(&chars.as_str().to_lowercase());
            out
        }
    }
}

/// Python `str.swapcase()`.
fn py_swapcase(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_uppercase() {
            out.extend(c.to_lowercase());
        } else if c.is_lowercase() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Python `rjust` (`left`), `ljust` (`right`) or `center` to `width` characters.
fn py_pad(s: &str, width: i64, mode: &str, fill: char) -> Result<String, NodeError> {
    let len = s.chars().count();
    let width = usize::try_from(width).unwrap_or(0);
    if width <= len {
        return Ok(s.to_string());
    }
    let marg = width - len;
    check_size(
        s.len().saturating_add(marg.saturating_mul(fill.len_utf8())),
        "padded text",
    )?;
    let (left, right) = match mode {
        "right" => (0, marg),
        // CPython's `pad()`: the odd extra goes left when the width is odd.
        "center" => {
            let left = marg / 2 + (marg & width & 1);
            (left, marg - left)
        }
        _ => (marg, 0),
    };
    let mut out = String::with_capacity(s.len() + marg * fill.len_utf8());
    out.extend(std::iter::repeat_n(fill, left));
    out.push_str(s);
    out.extend(std::iter::repeat_n(fill, right));
    Ok(out)
}

/// Python `s[start:end]` by characters, with negative indices and clamping.
fn py_slice(s: &str, start: i64, end: Option<i64>) -> String {
    let len = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    let norm = |i: i64| {
        if i < 0 {
            (i.saturating_add(len)).max(0)
        } else {
            i.min(len)
        }
    };
    let from = norm(start);
    let to = end.map_or(len, norm);
    if to <= from {
        return String::new();
    }
    let from = usize::try_from(from).unwrap_or(0);
    let to = usize::try_from(to).unwrap_or(0);
    s.chars().skip(from).take(to - from).collect()
}

/// Python `str.find`: the character index of the first occurrence, or -1.
fn py_find(haystack: &str, needle: &str) -> i64 {
    match haystack.find(needle) {
        Some(b) => i64::try_from(haystack[..b].chars().count()).unwrap_or(i64::MAX),
        None => -1,
    }
}

/// Python `str.count` (non-overlapping; the empty string occurs `len + 1` times).
fn py_count(haystack: &str, needle: &str) -> usize {
    if needle.is_empty() {
        haystack.chars().count() + 1
    } else {
        haystack.matches(needle).count()
    }
}

/// Python `str.replace(old, new, count)` (`count` < 0: all) and the number of replacements.
fn py_replace(text: &str, old: &str, new: &str, count: i64) -> Result<(String, usize), NodeError> {
    let found = py_count(text, old);
    let n = if count < 0 {
        found
    } else {
        found.min(usize::try_from(count).unwrap_or(usize::MAX))
    };
    let grown = text
        .len()
        .saturating_add(n.saturating_mul(new.len()))
        .saturating_sub(if old.is_empty() { 0 } else { n * old.len() });
    check_size(grown, "the replaced text")?;
    let result = if count < 0 {
        text.replace(old, new)
    } else {
        text.replacen(old, new, n)
    };
    Ok((result, n))
}

// ---------------------------------------------------------------------------------------------
// Regular expressions (Python `re` on the `regex` crate)

fn unsupported(feature: &str, pattern: &str) -> NodeError {
    NodeError::value(format!(
        "unsupported regex feature: {feature} in pattern '{pattern}' (this robot's regex engine \
         has no look-around, backreferences, atomic groups or conditionals)"
    ))
}

/// Rewrite Python `re` syntax into the `regex` crate's, refusing what it cannot run.
fn translate_pattern(p: &str) -> Result<String, NodeError> {
    let chars: Vec<char> = p.chars().collect();
    let n = chars.len();
    let is_octal = |c: Option<&char>| c.is_some_and(|c| ('0'..='7').contains(c));
    let mut out = String::with_capacity(p.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < n {
        let c = chars[i];
        if c == '\\' {
            let Some(&d) = chars.get(i + 1) else {
                out.push('\\');
                break;
            };
            // Octal escapes: `\0`, `\0oo`, `\ooo` (three octal digits), as Python reads them.
            let three_octal = is_octal(Some(&d))
                && is_octal(chars.get(i + 2))
                && is_octal(chars.get(i + 3))
                && d != '0';
            if d == '0' || three_octal || (in_class && is_octal(Some(&d))) {
                let mut j = i + 1;
                let mut digits = String::new();
                while j < n && digits.len() < 3 && is_octal(chars.get(j)) {
                    digits.push(chars[j]);
                    j += 1;
                }
                let code = u32::from_str_radix(&digits, 8).unwrap_or(0);
                if code > 0o377 {
                    return Err(NodeError::value(format!(
                        "invalid regex pattern '{p}': octal escape value \\{digits} outside of range 0-0o377"
                    )));
                }
                out.push_str(&format!("\\x{{{code:x}}}"));
                i = j;
                continue;
            }
            if !in_class && d.is_ascii_digit() {
                return Err(unsupported(&format!("backreference '\\{d}'"), p));
            }
            if d == 'Z' && !in_class {
                out.push_str("\\z");
            } else {
                out.push('\\');
                out.push(d);
            }
            i += 2;
            continue;
        }
        if in_class {
            match c {
                ']' => {
                    in_class = false;
                    out.push(']');
                }
                // Literal in Python, nested class / set operators in the regex crate.
                '[' | '&' | '~' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            '(' if chars.get(i + 1) == Some(&'?') => {
                let next = chars.get(i + 2).copied();
                let after = chars.get(i + 3).copied();
                match (next, after) {
                    (Some('='), _) => return Err(unsupported("look-ahead '(?='", p)),
                    (Some('!'), _) => return Err(unsupported("negative look-ahead '(?!'", p)),
                    (Some('<'), Some('=')) => return Err(unsupported("look-behind '(?<='", p)),
                    (Some('<'), Some('!')) => {
                        return Err(unsupported("negative look-behind '(?<!'", p))
                    }
                    (Some('P'), Some('=')) => {
                        return Err(unsupported("named backreference '(?P=name)'", p))
                    }
                    (Some('>'), _) => return Err(unsupported("atomic group '(?>'", p)),
                    (Some('('), _) => return Err(unsupported("conditional group '(?('", p)),
                    (Some('#'), _) => {
                        // A comment group: drop it.
                        let close = chars[i..].iter().position(|&c| c == ')');
                        match close {
                            Some(k) => i += k + 1,
                            None => {
                                return Err(NodeError::value(format!(
                                    "invalid regex pattern '{p}': missing ), unterminated comment"
                                )))
                            }
                        }
                    }
                    _ => {
                        out.push('(');
                        i += 1;
                    }
                }
            }
            '{' => {
                // A quantifier `{m}`, `{m,}`, `{,n}`, `{m,n}`; anything else is a literal brace.
                let mut j = i + 1;
                let mut lo = String::new();
                while j < n && chars[j].is_ascii_digit() {
                    lo.push(chars[j]);
                    j += 1;
                }
                let mut hi: Option<String> = None;
                if chars.get(j) == Some(&',') {
                    j += 1;
                    let mut h = String::new();
                    while j < n && chars[j].is_ascii_digit() {
                        h.push(chars[j]);
                        j += 1;
                    }
                    hi = Some(h);
                }
                let valid = chars.get(j) == Some(&'}')
                    && (!lo.is_empty() || hi.as_ref().is_some_and(|h| !h.is_empty()));
                if valid {
                    out.push('{');
                    out.push_str(if lo.is_empty() { "0" } else { &lo });
                    if let Some(h) = hi {
                        out.push(',');
                        out.push_str(&h);
                    }
                    out.push('}');
                    i = j + 1;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Compile a Python pattern with the `re.IGNORECASE` / `MULTILINE` / `DOTALL` flags.
fn compile(
    pattern: &str,
    ignore_case: bool,
    multiline: bool,
    dotall: bool,
) -> Result<Regex, NodeError> {
    let translated = translate_pattern(pattern)?;
    RegexBuilder::new(&translated)
        .case_insensitive(ignore_case)
        .multi_line(multiline)
        .dot_matches_new_line(dotall)
        .build()
        .map_err(|e| {
            let text = e.to_string();
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or_else(|| text.lines().last().unwrap_or("invalid syntax"))
                .trim()
                .to_string();
            if reason.contains("look-around") {
                unsupported("look-around", pattern)
            } else if reason.contains("backreference") {
                unsupported("backreference", pattern)
            } else {
                NodeError::value(format!("invalid regex pattern '{pattern}': {reason}"))
            }
        })
}

fn compile_from(ctx: &NodeCtx<'_>, pattern: &str) -> Result<Regex, NodeError> {
    compile(
        pattern,
        ctx.param_bool("ignore_case"),
        ctx.param_bool("multiline"),
        ctx.param_bool("dotall"),
    )
}

/// Upstream's ReDoS guard for RegexMatch / RegexReplace.
fn check_regex_limits(text: &str, pattern: &str) -> Result<(), NodeError> {
    let len = text.chars().count();
    if len > MAX_REGEX_TEXT {
        return Err(NodeError::value(format!(
            "text length ({} chars) exceeds maximum allowed ({} chars) for regex operations",
            thousands(len),
            thousands(MAX_REGEX_TEXT)
        )));
    }
    let plen = pattern.chars().count();
    if plen > MAX_REGEX_PATTERN {
        return Err(NodeError::value(format!(
            "pattern length ({} chars) exceeds maximum allowed ({} chars) for regex operations",
            thousands(plen),
            thousands(MAX_REGEX_PATTERN)
        )));
    }
    Ok(())
}

/// Visit matches the way Python's `finditer`/`subn` find them: an empty match right after a
/// non-empty one is allowed, an empty match at the position of the previous empty match is not.
/// Stops after `limit` matches (0: no limit). Returns the number of matches visited.
fn for_each_match(
    re: &Regex,
    text: &str,
    limit: usize,
    mut f: impl FnMut(&Captures<'_>) -> Result<(), NodeError>,
) -> Result<usize, NodeError> {
    let mut pos = 0;
    let mut last_empty_at: Option<usize> = None;
    let mut count = 0;
    while pos <= text.len() {
        let Some(caps) = re.captures_at(text, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        if m.is_empty() && last_empty_at == Some(m.start()) {
            // Same empty match again: move one character on and search from there.
            match text[m.start()..].chars().next() {
                Some(c) => pos = m.start() + c.len_utf8(),
                None => break,
            }
            continue;
        }
        f(&caps)?;
        count += 1;
        if limit > 0 && count >= limit {
            break;
        }
        last_empty_at = if m.is_empty() { Some(m.end()) } else { None };
        pos = m.end();
    }
    Ok(count)
}

/// `m.groups()`: each capture group's text, `None` for groups that did not take part.
fn groups_of(caps: &Captures<'_>) -> Vec<Value> {
    (1..caps.len())
        .map(|i| caps.get(i).map_or(Value::Null, |g| Value::str(g.as_str())))
        .collect()
}

/// A piece of a parsed Python replacement template.
#[derive(Debug, PartialEq)]
enum ReplPart {
    Text(String),
    Group(usize),
}

/// Parse a Python `re.sub` replacement (`\1`, `\g<1>`, `\g<name>`, `\n`, `\\`, octal escapes)
/// against the groups of `re`.
fn parse_replacement(repl: &str, re: &Regex) -> Result<Vec<ReplPart>, NodeError> {
    let bad = |m: String| NodeError::value(format!("bad replacement '{repl}': {m}"));
    let groups = re.captures_len();
    let check = |g: usize| {
        if g < groups {
            Ok(ReplPart::Group(g))
        } else {
            Err(bad(format!("invalid group reference {g}")))
        }
    };
    let chars: Vec<char> = repl.chars().collect();
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut i = 0;
    let octal = |c: Option<&char>| c.is_some_and(|c| ('0'..='7').contains(c));
    while i < chars.len() {
        let c = chars[i];
        if c != '\\' {
            lit.push(c);
            i += 1;
            continue;
        }
        let Some(&d) = chars.get(i + 1) else {
            return Err(bad("bad escape (end of pattern)".into()));
        };
        let part = match d {
            'g' => {
                if chars.get(i + 2) != Some(&'<') {
                    return Err(bad("missing <".into()));
                }
                let start = i + 3;
                let Some(len) = chars[start.min(chars.len())..]
                    .iter()
                    .position(|&c| c == '>')
                else {
                    return Err(bad("missing >, unterminated name".into()));
                };
                let name: String = chars[start..start + len].iter().collect();
                i = start + len + 1;
                if name.is_empty() {
                    return Err(bad("missing group name".into()));
                }
                if name.bytes().all(|b| b.is_ascii_digit()) {
                    check(name.parse().unwrap_or(usize::MAX))?
                } else {
                    match re.capture_names().position(|n| n == Some(name.as_str())) {
                        Some(g) => ReplPart::Group(g),
                        None if name.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                            return Err(bad(format!("unknown group name '{name}'")))
                        }
                        None => return Err(bad(format!("bad character in group name '{name}'"))),
                    }
                }
            }
            '0'..='9' => {
                let e = chars.get(i + 2);
                let f = chars.get(i + 3);
                if d == '0' || (octal(Some(&d)) && octal(e) && octal(f)) {
                    let mut j = i + 1;
                    let mut digits = String::new();
                    while j < chars.len() && digits.len() < 3 && octal(chars.get(j)) {
                        digits.push(chars[j]);
                        j += 1;
                    }
                    let code = u32::from_str_radix(&digits, 8).unwrap_or(0);
                    if code > 0o377 {
                        return Err(bad(format!(
                            "octal escape value \\{digits} outside of range 0-0o377"
                        )));
                    }
                    i = j;
                    lit.push(char::from_u32(code).unwrap_or('\0'));
                    continue;
                }
                let mut g = d.to_digit(10).unwrap_or(0) as usize;
                i += 2;
                if let Some(&e) = e.filter(|e| e.is_ascii_digit()) {
                    g = g * 10 + e.to_digit(10).unwrap_or(0) as usize;
                    i += 1;
                }
                check(g)?
            }
            _ => {
                i += 2;
                match d {
                    'a' => lit.push('\u{07}'),
                    'b' => lit.push('\u{08}'),
                    'f' => lit.push('\u{0c}'),
                    'n' => lit.push('\n'),
                    'r' => lit.push('\r'),
                    't' => lit.push('\t'),
                    'v' => lit.push('\u{0b}'),
                    '\\' => lit.push('\\'),
                    d if d.is_ascii_alphabetic() => {
                        return Err(bad(format!("bad escape \\{d}")));
                    }
                    d => {
                        lit.push('\\');
                        lit.push(d);
                    }
                }
                continue;
            }
        };
        if !lit.is_empty() {
            parts.push(ReplPart::Text(std::mem::take(&mut lit)));
        }
        parts.push(part);
    }
    if !lit.is_empty() {
        parts.push(ReplPart::Text(lit));
    }
    Ok(parts)
}

/// Python `re.subn(pattern, repl, text, count=limit)` (`limit` 0: all), with the size cap.
fn py_subn(
    re: &Regex,
    repl: &[ReplPart],
    text: &str,
    limit: usize,
) -> Result<(String, usize), NodeError> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let count = for_each_match(re, text, limit, |caps| {
        let Some(m) = caps.get(0) else { return Ok(()) };
        out.push_str(&text[last..m.start()]);
        for part in repl {
            match part {
                ReplPart::Text(t) => out.push_str(t),
                ReplPart::Group(g) => out.push_str(caps.get(*g).map_or("", |g| g.as_str())),
            }
        }
        last = m.end();
        check_size(out.len() + (text.len() - last), "the replaced text")
    })?;
    out.push_str(&text[last..]);
    Ok((out, count))
}

// ---------------------------------------------------------------------------------------------
// string_nodes.py

/// `f"{string_1}{separator}{string_2}"` with Python `str()` of each value (`None` → "").
fn concatenate(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let part = |ctx: &NodeCtx<'_>, name: &str, legacy: &str| {
        if ctx.port_value(name).is_none() && !ctx.has_config(name) && ctx.has_config(legacy) {
            ctx.param_str(legacy)
        } else {
            ctx.param_str(name)
        }
    };
    let s1 = part(ctx, "string_1", "string1");
    let s2 = part(ctx, "string_2", "string2");
    let sep = ctx.param_str("separator");
    check_size(s1.len() + sep.len() + s2.len(), "the concatenated text")?;
    ctx.set_output("result", Value::from(format!("{s1}{sep}{s2}")));
    Ok(Flow::Next)
}

/// Python `template.format(**variables)`: `{name}`, format specs, `{{`/`}}` escapes. A missing
/// key is a KeyError, a malformed template a ValueError, positional fields an IndexError.
fn format_string(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let template = ctx.param_str("template");
    let vars = ctx.param_dict("variables")?;
    let result =
        pyformat::format(&template, &|name| vars.get(name).cloned()).map_err(|e| match e {
            FormatError::KeyError(k) => NodeError::key(format!(
                "template field '{k}' is not in variables (keys: {})",
                vars.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            FormatError::ValueError(m) => NodeError::value(format!("bad template: {m}")),
            FormatError::IndexError(m) => NodeError::index(format!("bad template: {m}")),
        })?;
    check_size(result.len(), "the formatted text")?;
    ctx.set_output("result", Value::from(result));
    Ok(Flow::Next)
}

/// `re.finditer(pattern, text)`: whether it matched, the first match, every match, the first
/// match's groups (`None` for groups that did not take part) and the number of matches.
fn regex_match(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let pattern = ctx.param_str("pattern");
    check_regex_limits(&text, &pattern)?;
    let re = compile_from(ctx, &pattern)?;
    let mut all = Vec::new();
    let mut groups = None;
    for_each_match(&re, &text, 0, |caps| {
        if groups.is_none() {
            groups = Some(groups_of(caps));
        }
        all.push(Value::str(caps.get(0).map_or("", |m| m.as_str())));
        Ok(())
    })?;
    let first = all.first().cloned().unwrap_or_else(|| Value::str(""));
    ctx.set_output("match_found", Value::Bool(!all.is_empty()));
    ctx.set_output("first_match", first);
    ctx.set_output("match_count", Value::from(all.len()));
    ctx.set_output("all_matches", Value::list(all));
    ctx.set_output("groups", Value::list(groups.unwrap_or_default()));
    Ok(Flow::Next)
}

/// `re.subn(pattern, replacement, text, count=max_count)` (`max_count` <= 0: all) → `result`,
/// `count`. The replacement uses Python syntax (`\1`, `\g<name>`).
fn regex_replace(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let pattern = ctx.param_str("pattern");
    let replacement = ctx.param_str("replacement");
    check_regex_limits(&text, &pattern)?;
    let re = compile_from(ctx, &pattern)?;
    let repl = parse_replacement(&replacement, &re)?;
    let max = int_param(ctx, "max_count", 0)?;
    let limit = usize::try_from(max).unwrap_or(0);
    let (result, count) = py_subn(&re, &repl, &text, limit)?;
    ctx.set_output("result", Value::from(result));
    ctx.set_output("count", Value::from(count));
    Ok(Flow::Next)
}

// ---------------------------------------------------------------------------------------------
// nodes/text/*.py, shared with TextSuperNode (which names some properties differently)

fn op_split(ctx: &mut NodeCtx<'_>, max_key: &str) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let sep = ctx.param_str("separator");
    let max = int_param(ctx, max_key, -1)?;
    // Each piece becomes a value of its own: refuse a split the value budget cannot hold before
    // building millions of items.
    let n_pieces = if sep.is_empty() {
        text.split(py_isspace).filter(|p| !p.is_empty()).count()
    } else {
        text.matches(sep.as_str()).count() + 1
    };
    let n_pieces = usize::try_from(max).map_or(n_pieces, |m| n_pieces.min(m.saturating_add(1)));
    ctx.check_value_budget("the split result", list_bytes(n_pieces, text.len()))?;
    let parts = if sep.is_empty() {
        py_split_ws(&text, max)
    } else {
        py_split(&text, &sep, max)
    };
    ctx.set_output("count", Value::from(parts.len()));
    ctx.set_output("result", str_list(parts));
    Ok(Flow::Next)
}

fn op_replace(ctx: &mut NodeCtx<'_>, count_key: &str) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let old = ctx.param_str("old_value");
    let new = ctx.param_str("new_value");
    let count = int_param(ctx, count_key, -1)?;
    let (result, n) = if ctx.param_bool("use_regex") {
        let re = compile_from(ctx, &old)?;
        let repl = parse_replacement(&new, &re)?;
        match usize::try_from(count) {
            Ok(0) => (text, 0),
            Ok(limit) => py_subn(&re, &repl, &text, limit)?,
            Err(_) => py_subn(&re, &repl, &text, 0)?,
        }
    } else {
        py_replace(&text, &old, &new, count)?
    };
    ctx.set_output("result", Value::from(result));
    ctx.set_output("replacements", Value::from(n));
    Ok(Flow::Next)
}

fn op_trim(ctx: &mut NodeCtx<'_>, mode_key: &str, chars_key: &str) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let mode = choice(ctx, mode_key, &["both", "left", "right"])?;
    let set: Vec<char> = ctx.param_str(chars_key).chars().collect();
    let strip = |c: char| {
        if set.is_empty() {
            py_isspace(c)
        } else {
            set.contains(&c)
        }
    };
    let result = match mode.as_str() {
        "left" => text.trim_start_matches(strip),
        "right" => text.trim_end_matches(strip),
        _ => text.trim_matches(strip),
    };
    ctx.set_output("result", Value::str(result));
    Ok(Flow::Next)
}

fn op_case(ctx: &mut NodeCtx<'_>, case_key: &str) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let case = choice(
        ctx,
        case_key,
        &["upper", "lower", "title", "capitalize", "swapcase"],
    )?;
    let result = match case.as_str() {
        "upper" => text.to_uppercase(),
        "title" => py_title(&text),
        "capitalize" => py_capitalize(&text),
        "swapcase" => py_swapcase(&text),
        _ => text.to_lowercase(),
    };
    ctx.set_output("result", Value::from(result));
    Ok(Flow::Next)
}

fn op_pad(ctx: &mut NodeCtx<'_>, mode_key: &str) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let length = int_param(ctx, "length", 0)?;
    let mode = choice(ctx, mode_key, &["left", "right", "center"])?;
    let fill = ctx.param_str("fill_char");
    let mut fills = fill.chars();
    let fill = match (fills.next(), fills.next()) {
        (Some(c), None) => c,
        _ => ' ',
    };
    let result = py_pad(&text, length, &mode, fill)?;
    ctx.set_output("result", Value::from(result));
    Ok(Flow::Next)
}

fn op_reverse(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    ctx.set_output(
        "result",
        Value::from(text.chars().rev().collect::<String>()),
    );
    Ok(Flow::Next)
}

fn op_lines(ctx: &mut NodeCtx<'_>, mode_key: &str) -> Result<Flow, NodeError> {
    let mode = choice(ctx, mode_key, &["split", "join"])?;
    if mode == "split" {
        let text = ctx.param_str("text");
        let n_lines = text.split(is_line_break).count();
        ctx.check_value_budget("the split lines", list_bytes(n_lines, text.len()))?;
        let mut lines = py_splitlines(&text);
        if ctx.param_bool("remove_empty") {
            lines.retain(|l| !l.is_empty());
        }
        ctx.set_output("count", Value::from(lines.len()));
        ctx.set_output("lines", str_list(lines));
        return Ok(Flow::Next);
    }
    let key = ctx.param_str("line_separator");
    let sep = match key.trim().to_lowercase().as_str() {
        "newline" | "" => "\n".to_string(),
        "crlf" => "\r\n".to_string(),
        "comma" => ",".to_string(),
        _ => key,
    };
    let lines = match ctx.param("lines") {
        Value::Null => Vec::new(),
        Value::List(l) => l.iter().map(Value::py_str).collect(),
        other => return Err(bad_param("lines", &other, "a list")),
    };
    let text = join_checked(&lines, &sep)?;
    ctx.set_output("count", Value::from(lines.len()));
    ctx.set_output("text", Value::from(text));
    Ok(Flow::Next)
}

fn join_checked(items: &[String], sep: &str) -> Result<String, NodeError> {
    let total = items
        .iter()
        .map(String::len)
        .fold(0usize, usize::saturating_add)
        .saturating_add(sep.len().saturating_mul(items.len().saturating_sub(1)));
    check_size(total, "the joined text")?;
    Ok(items.join(sep))
}

fn op_substring(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let start = int_param(ctx, "start", 0)?;
    let end = ctx.param_opt_i64("end")?;
    let result = py_slice(&text, start, end);
    ctx.set_output("length", Value::from(result.chars().count()));
    ctx.set_output("result", Value::from(result));
    Ok(Flow::Next)
}

/// The text and needle, both lowercased when `case_sensitive` is false.
fn folded(ctx: &NodeCtx<'_>, needle_key: &str) -> (String, String) {
    let text = ctx.param_str("text");
    let needle = ctx.param_str(needle_key);
    if ctx.param_bool("case_sensitive") {
        (text, needle)
    } else {
        (text.to_lowercase(), needle.to_lowercase())
    }
}

fn op_contains(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let (text, search) = folded(ctx, "search");
    let position = py_find(&text, &search);
    ctx.set_output("contains", Value::Bool(position >= 0));
    ctx.set_output("position", Value::Int(position));
    ctx.set_output("count", Value::from(py_count(&text, &search)));
    Ok(Flow::Next)
}

fn op_affix(ctx: &mut NodeCtx<'_>, key: &str, suffix: bool) -> Result<Flow, NodeError> {
    let (text, affix) = folded(ctx, key);
    let result = if suffix {
        text.ends_with(&affix)
    } else {
        text.starts_with(&affix)
    };
    ctx.set_output("result", Value::Bool(result));
    Ok(Flow::Next)
}

fn op_extract(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let pattern = ctx.param_str("pattern");
    if pattern.is_empty() {
        return Err(NodeError::value(
            "regex pattern is required (pattern is empty)",
        ));
    }
    let re = compile_from(ctx, &pattern)?;
    let all = ctx.param_bool("all_matches");
    let mut matches = Vec::new();
    let mut groups = Vec::new();
    for_each_match(&re, &text, usize::from(!all), |caps| {
        matches.push(Value::str(caps.get(0).map_or("", |m| m.as_str())));
        groups.push(Value::list(groups_of(caps)));
        Ok(())
    })?;
    let found = !matches.is_empty();
    if all {
        ctx.set_output("match", Value::list(matches));
        ctx.set_output("groups", Value::list(groups));
    } else {
        ctx.set_output("match", matches.pop().unwrap_or_else(|| Value::str("")));
        ctx.set_output(
            "groups",
            groups.pop().unwrap_or_else(|| Value::list(vec![])),
        );
    }
    ctx.set_output("found", Value::Bool(found));
    Ok(Flow::Next)
}

fn op_count(ctx: &mut NodeCtx<'_>, mode_key: &str) -> Result<Flow, NodeError> {
    let text = ctx.param_str("text");
    let mode = choice(ctx, mode_key, &["characters", "words", "lines"])?;
    let count = match mode.as_str() {
        "words" => py_split_ws(&text, -1).len(),
        "lines" => py_splitlines(&text).len(),
        _ if ctx.param_bool("exclude_whitespace") => {
            text.chars().filter(|c| !py_isspace(*c)).count()
        }
        _ => text.chars().count(),
    };
    ctx.set_output("count", Value::from(count));
    Ok(Flow::Next)
}

fn op_join(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let items: Vec<String> = match ctx.param("items") {
        Value::Null => Vec::new(),
        Value::List(l) => l.iter().map(Value::py_str).collect(),
        other => vec![other.py_str()],
    };
    let sep = ctx.param_str("separator");
    let result = join_checked(&items, &sep)?;
    ctx.set_output("result", Value::from(result));
    Ok(Flow::Next)
}

/// `text.split(separator, max_split)`; an empty separator splits on runs of whitespace
/// (Python `str.split()`), `max_split` -1 means no limit → `result` (list), `count`.
fn text_split(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_split(ctx, "max_split")
}

/// Replace `old_value` by `new_value` at most `count` times (-1: all); with `use_regex`,
/// `old_value` is a Python regex and `new_value` a Python replacement → `result`, `replacements`.
fn text_replace(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_replace(ctx, "count")
}

/// `strip`/`lstrip`/`rstrip` (`mode` both/left/right) of whitespace or of `characters`.
fn text_trim(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_trim(ctx, "mode", "characters")
}

/// `upper`/`lower`/`title`/`capitalize`/`swapcase` as Python does them (`case`, default lower).
fn text_case(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_case(ctx, "case")
}

/// Pad to `length` characters with `fill_char`: `mode` left = `rjust`, right = `ljust`,
/// center = `center`.
fn text_pad(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_pad(ctx, "mode")
}

/// `text[::-1]` (by characters).
fn text_reverse(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_reverse(ctx)
}

/// `mode` split: `text.splitlines()` (optionally without empty lines) → `lines`, `count`;
/// join: `line_separator.join(str(x) for x in lines)` → `text`, `count`.
fn text_lines(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_lines(ctx, "mode")
}

/// `text[start:end]` by characters (negative indices count from the end, `end` unset = to the
/// end) → `result`, `length`.
fn text_substring(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_substring(ctx)
}

/// `search in text` → `contains`, `position` (`find`, -1 when absent), `count` (non-overlapping).
fn text_contains(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_contains(ctx)
}

/// `text.startswith(prefix)` (optionally case-insensitive) → `result`.
fn text_starts_with(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_affix(ctx, "prefix", false)
}

/// `text.endswith(suffix)` (optionally case-insensitive) → `result`.
fn text_ends_with(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_affix(ctx, "suffix", true)
}

/// `re.search(pattern, text)` → `match` (text, "" when none), `groups`, `found`; with
/// `all_matches`, every match → `match` (list) and `groups` (list of lists).
fn text_extract(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_extract(ctx)
}

/// Count `characters` (optionally without whitespace), `words` (`len(text.split())`) or `lines`
/// (`len(text.splitlines())`) → `count`.
fn text_count(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_count(ctx, "mode")
}

/// `separator.join(str(item) for item in items)`; a non-list value is one item → `result`.
fn text_join(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    op_join(ctx)
}

/// TextSuperNode: runs the text operation named by `action` (upstream labels such as
/// `"Starts With"` or `"Extract (Regex)"`, matched ignoring case, spaces and punctuation) with the
/// same semantics as the single nodes; options use the super node's property names
/// (`replace_count`, `trim_mode`, `trim_characters`, `case_transform`, `pad_mode`, `lines_mode`,
/// `count_mode`).
fn text_super(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let action = ctx.param_str("action");
    let key: String = action
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    match key.as_str() {
        "substring" => op_substring(ctx),
        "contains" => op_contains(ctx),
        "startswith" => op_affix(ctx, "prefix", false),
        "endswith" => op_affix(ctx, "suffix", true),
        "extractregex" | "extract" => op_extract(ctx),
        "split" => op_split(ctx, "max_split"),
        "replace" => op_replace(ctx, "replace_count"),
        "trim" => op_trim(ctx, "trim_mode", "trim_characters"),
        "case" => op_case(ctx, "case_transform"),
        "pad" => op_pad(ctx, "pad_mode"),
        "reverse" => op_reverse(ctx),
        "lines" => op_lines(ctx, "lines_mode"),
        "count" => op_count(ctx, "count_mode"),
        "join" => op_join(ctx),
        _ => Err(NodeError::value(format!(
            "unknown action '{action}' (expected one of: Substring, Contains, Starts With, \
             Ends With, Extract (Regex), Split, Replace, Trim, Case, Pad, Reverse, Lines, Count, Join)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    /// Run one node (id `n`) and return the outcome.
    fn one(ty: &str, config: serde_json::Value) -> Ran {
        run_node(ty, config, json!({}))
    }

    /// Run one node that must succeed; the repr of its output `port`.
    fn out(ty: &str, config: serde_json::Value, port: &str) -> String {
        let ran = one(ty, config);
        assert!(ran.outcome.success(), "{ty}: {}", ran.error());
        ran.out("n", port).py_repr()
    }

    /// Run one node that must fail; its error text.
    fn err(ty: &str, config: serde_json::Value) -> String {
        let ran = one(ty, config);
        assert!(!ran.outcome.success(), "{ty} should fail");
        ran.error()
    }

    fn fixed_batch_1_3() -> Vec<(&'static str, &'static str, serde_json::Value)> {
        vec![
            (
                "set_text",
                "SetVariableNode",
                json!({"variable_name": "text", "value": "  Hello World!  "}),
            ),
            ("text_trim", "TextTrimNode", json!({"text": "{{text}}"})),
            (
                "text_case_upper",
                "TextCaseNode",
                json!({"text": "{{text_trim.result}}", "case": "upper"}),
            ),
            (
                "text_case_lower",
                "TextCaseNode",
                json!({"text": "{{text_trim.result}}", "case": "lower"}),
            ),
            (
                "text_replace",
                "TextReplaceNode",
                json!({"text": "{{text_trim.result}}", "old_value": "World", "new_value": "CasareRPA"}),
            ),
            (
                "text_contains",
                "TextContainsNode",
                json!({"text": "{{text_replace.result}}", "search": "CasareRPA"}),
            ),
            (
                "text_starts_with",
                "TextStartsWithNode",
                json!({"text": "{{text_replace.result}}", "prefix": "Hello"}),
            ),
            (
                "text_ends_with",
                "TextEndsWithNode",
                json!({"text": "{{text_replace.result}}", "suffix": "!"}),
            ),
            (
                "text_substring",
                "TextSubstringNode",
                json!({"text": "{{text_replace.result}}", "start": 0, "end": 5}),
            ),
            (
                "text_count",
                "TextCountNode",
                json!({"text": "{{text_replace.result}}"}),
            ),
            (
                "text_split",
                "TextSplitNode",
                json!({"text": "apple,banana,cherry", "separator": ","}),
            ),
            (
                "text_join",
                "TextJoinNode",
                json!({"items": "{{text_split.result}}", "separator": " | "}),
            ),
            (
                "multiline_text",
                "SetVariableNode",
                json!({"variable_name": "multiline", "value": "line1\nline2\nline3"}),
            ),
            (
                "text_lines",
                "TextLinesNode",
                json!({"text": "{{multiline}}"}),
            ),
            (
                "text_pad",
                "TextPadNode",
                json!({"text": "42", "length": 5, "fill_char": "0", "mode": "left"}),
            ),
            ("text_reverse", "TextReverseNode", json!({"text": "Hello"})),
            (
                "concatenate",
                "ConcatenateNode",
                json!({"string_1": "Hello", "string_2": " World"}),
            ),
            (
                "format_string",
                "FormatStringNode",
                json!({"template": "Name: {name}, Age: {age}", "variables": {"name": "Alice", "age": "30"}}),
            ),
            (
                "regex_extract",
                "TextExtractNode",
                json!({"text": "Email: test@example.com", "pattern": "[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}"}),
            ),
            (
                "regex_match",
                "RegexMatchNode",
                json!({"text": "The price is $100.50", "pattern": "\\$[0-9]+\\.[0-9]{2}"}),
            ),
            (
                "log_result",
                "LogNode",
                json!({"message": "All string tests passed! Reversed: {{text_reverse.result}}"}),
            ),
        ]
    }

    #[test]
    fn batch_1_3_with_fixes() {
        let ran = run_chain(&fixed_batch_1_3());
        assert!(ran.outcome.success(), "{}", ran.error());
        let expect = [
            ("text_trim", "result", "'Hello World!'"),
            ("text_case_upper", "result", "'HELLO WORLD!'"),
            ("text_case_lower", "result", "'hello world!'"),
            ("text_replace", "result", "'Hello CasareRPA!'"),
            ("text_replace", "replacements", "1"),
            ("text_contains", "contains", "True"),
            ("text_contains", "position", "6"),
            ("text_contains", "count", "1"),
            ("text_starts_with", "result", "True"),
            ("text_ends_with", "result", "True"),
            ("text_substring", "result", "'Hello'"),
            ("text_substring", "length", "5"),
            ("text_count", "count", "16"),
            ("text_split", "result", "['apple', 'banana', 'cherry']"),
            ("text_split", "count", "3"),
            ("text_join", "result", "'apple | banana | cherry'"),
            ("text_lines", "lines", "['line1', 'line2', 'line3']"),
            ("text_lines", "count", "3"),
            ("text_pad", "result", "'00042'"),
            ("text_reverse", "result", "'olleH'"),
            ("concatenate", "result", "'Hello World'"),
            ("format_string", "result", "'Name: Alice, Age: 30'"),
            ("regex_extract", "match", "'test@example.com'"),
            ("regex_extract", "found", "True"),
            ("regex_extract", "groups", "[]"),
            ("regex_match", "first_match", "'$100.50'"),
            ("regex_match", "match_found", "True"),
            ("regex_match", "match_count", "1"),
            ("regex_match", "all_matches", "['$100.50']"),
        ];
        for (id, port, repr) in expect {
            assert_eq!(ran.out(id, port).py_repr(), repr, "{id}.{port}");
        }
        assert!(
            ran.logs
                .iter()
                .any(|l| l.ends_with("All string tests passed! Reversed: olleH")),
            "{:?}",
            ran.logs
        );
    }

    /// The unchanged upstream fixture, with the Mode I values of reference section 6.3.
    #[test]
    fn batch_1_3_fixture_unchanged() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/casare/workflows/node_tests/batch_1_3_strings.json"
        );
        let Ok(json) = std::fs::read_to_string(path) else {
            return; // fixtures are optional outside the project workspace
        };
        let ran = run_json(&json);
        assert!(ran.outcome.success(), "{}", ran.error());
        let expect = [
            ("text_replace", "result", "'Hello World!'"),
            ("text_replace", "replacements", "13"),
            ("text_contains", "contains", "False"),
            ("text_contains", "position", "-1"),
            ("text_count", "count", "12"),
            ("text_split", "result", "['apple,banana,cherry']"),
            ("text_join", "result", "'{{text_split.parts}}'"),
            ("text_pad", "result", "'42'"),
            ("concatenate", "result", "'Hello World'"),
            ("format_string", "result", "'Name: Alice, Age: 30'"),
            ("regex_match", "first_match", "'$100.50'"),
        ];
        for (id, port, repr) in expect {
            assert_eq!(ran.out(id, port).py_repr(), repr, "{id}.{port}");
        }
    }

    #[test]
    fn data_edges_win_over_config() {
        let wf = json!({
            "nodes": {
                "split": {"node_id": "split", "node_type": "TextSplitNode",
                          "config": {"text": "a b  c", "separator": ""}},
                "join": {"node_id": "join", "node_type": "TextJoinNode",
                         "config": {"items": ["ignored"], "separator": "-"}},
                "sup": {"node_id": "sup", "node_type": "TextSuperNode",
                        "config": {"action": "Join", "separator": "+"}},
            },
            "connections": [
                {"source_node": "split", "source_port": "exec_out", "target_node": "join", "target_port": "exec_in"},
                {"source_node": "join", "source_port": "exec_out", "target_node": "sup", "target_port": "exec_in"},
                {"source_node": "split", "source_port": "result", "target_node": "join", "target_port": "items"},
                {"source_node": "split", "source_port": "result", "target_node": "sup", "target_port": "items"},
            ],
        });
        let ran = run_json(&wf.to_string());
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.out("join", "result").py_repr(), "'a-b-c'");
        assert_eq!(ran.out("sup", "result").py_repr(), "'a+b+c'");
    }

    #[test]
    fn concatenate_and_format() {
        let cases = [
            (
                json!({"string_1": "a", "string_2": "b", "separator": ", "}),
                "'a, b'",
            ),
            (json!({"string_1": 1.0, "string_2": true}), "'1.0True'"),
            (
                json!({"string_1": [1, "x"], "string_2": null}),
                "\"[1, 'x']\"",
            ),
            (json!({"string1": "legacy", "string_2": "!"}), "'legacy!'"),
            (json!({"string_1": "new", "string1": "legacy"}), "'new'"),
            (json!({}), "''"),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("ConcatenateNode", config.clone(), "result"),
                want,
                "{config}"
            );
        }
        let cases = [
            (
                json!({"template": "{a:>5}|{b:.2f}|{{x}}", "variables": {"a": "x", "b": 2}}),
                "'    x|2.00|{x}'",
            ),
            (
                json!({"template": "{d[k]} {l[1]}", "variables": {"d": {"k": "v"}, "l": [1, 2]}}),
                "'v 2'",
            ),
            (json!({"template": "{n}", "variables": "{\"n\": 5}"}), "'5'"),
            (json!({"template": "plain"}), "'plain'"),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("FormatStringNode", config.clone(), "result"),
                want,
                "{config}"
            );
        }
    }

    #[test]
    fn format_errors() {
        let cases = [
            (json!({"template": "{missing}", "variables": {"a": 1}}),
             "n (FormatStringNode): template field 'missing' is not in variables (keys: a)"),
            (json!({"template": "{}", "variables": {}}),
             "n (FormatStringNode): bad template: Replacement index 0 out of range for positional args tuple"),
            (json!({"template": "{a", "variables": {"a": 1}}),
             "n (FormatStringNode): bad template: Single '{' encountered in format string"),
            (json!({"template": "{a}", "variables": 5}),
             "n (FormatStringNode): input 'variables' is not a dictionary (got int: 5)"),
        ];
        for (config, want) in cases {
            assert_eq!(err("FormatStringNode", config), want);
        }
    }

    #[test]
    fn regex_match_outputs() {
        let ran = one(
            "RegexMatchNode",
            json!({"text": "a1 b22 c", "pattern": "([a-z])(\\d+)?"}),
        );
        assert!(ran.outcome.success(), "{}", ran.error());
        assert_eq!(ran.out("n", "all_matches").py_repr(), "['a1', 'b22', 'c']");
        assert_eq!(ran.out("n", "groups").py_repr(), "['a', '1']");
        assert_eq!(ran.out("n", "match_count").py_repr(), "3");
        let ran = one("RegexMatchNode", json!({"text": "xyz", "pattern": "\\d"}));
        assert_eq!(ran.out("n", "match_found").py_repr(), "False");
        assert_eq!(ran.out("n", "first_match").py_repr(), "''");
        assert_eq!(ran.out("n", "groups").py_repr(), "[]");
        assert_eq!(ran.out("n", "match_count").py_repr(), "0");
        // Unmatched group → None; flags.
        let cases = [
            (json!({"text": "b", "pattern": "(a)?b"}), "groups", "[None]"),
            (
                json!({"text": "ab", "pattern": ""}),
                "all_matches",
                "['', '', '']",
            ),
            (
                json!({"text": "ab cd", "pattern": "\\b"}),
                "match_count",
                "4",
            ),
            (
                json!({"text": "ABC", "pattern": "b", "ignore_case": true}),
                "first_match",
                "'B'",
            ),
            (
                json!({"text": "a\nb", "pattern": "^b$", "multiline": true}),
                "match_found",
                "True",
            ),
            (
                json!({"text": "a\nb", "pattern": "^b$"}),
                "match_found",
                "False",
            ),
            (
                json!({"text": "a\nb", "pattern": "a.b", "dotall": "true"}),
                "match_found",
                "True",
            ),
            (
                json!({"text": "a\nb", "pattern": "a.b"}),
                "match_found",
                "False",
            ),
            (
                json!({"text": "x", "pattern": "x\\Z"}),
                "match_found",
                "True",
            ),
            (
                json!({"text": "aaab", "pattern": "a{,2}"}),
                "all_matches",
                "['aa', 'a', '', '']",
            ),
            (
                json!({"text": "a{b}", "pattern": "a{b}"}),
                "first_match",
                "'a{b}'",
            ),
            (
                json!({"text": "x[y", "pattern": "[[]"}),
                "first_match",
                "'['",
            ),
            (
                json!({"text": "a]b", "pattern": "[]]"}),
                "first_match",
                "']'",
            ),
            (
                json!({"text": "a&b", "pattern": "[&~]"}),
                "first_match",
                "'&'",
            ),
            (
                json!({"text": "ab", "pattern": "a(?#note)b"}),
                "first_match",
                "'ab'",
            ),
            (
                json!({"text": "k=v", "pattern": "(?P<key>\\w)=(?P<val>\\w)"}),
                "groups",
                "['k', 'v']",
            ),
            (
                json!({"text": "A\u{0}B", "pattern": "\\0"}),
                "match_count",
                "1",
            ),
            (
                json!({"text": "héllo", "pattern": "\\w+"}),
                "first_match",
                "'héllo'",
            ),
        ];
        for (config, port, want) in cases {
            assert_eq!(
                out("RegexMatchNode", config.clone(), port),
                want,
                "{config}"
            );
        }
    }

    #[test]
    fn regex_errors() {
        let cases = [
            (json!({"text": "x", "pattern": "("}),
             "n (RegexMatchNode): invalid regex pattern '(': unclosed group"),
            (json!({"text": "x", "pattern": "a(?=b)"}),
             "n (RegexMatchNode): unsupported regex feature: look-ahead '(?=' in pattern 'a(?=b)' (this robot's regex engine has no look-around, backreferences, atomic groups or conditionals)"),
            (json!({"text": "x", "pattern": "(?<!a)b"}),
             "n (RegexMatchNode): unsupported regex feature: negative look-behind '(?<!' in pattern '(?<!a)b' (this robot's regex engine has no look-around, backreferences, atomic groups or conditionals)"),
            (json!({"text": "x", "pattern": "(a)\\1"}),
             "n (RegexMatchNode): unsupported regex feature: backreference '\\1' in pattern '(a)\\1' (this robot's regex engine has no look-around, backreferences, atomic groups or conditionals)"),
            (json!({"text": "x", "pattern": "(?P<a>x)(?P=a)"}),
             "n (RegexMatchNode): unsupported regex feature: named backreference '(?P=name)' in pattern '(?P<a>x)(?P=a)' (this robot's regex engine has no look-around, backreferences, atomic groups or conditionals)"),
            (json!({"text": "x".repeat(100_001), "pattern": "x"}),
             "n (RegexMatchNode): text length (100,001 chars) exceeds maximum allowed (100,000 chars) for regex operations"),
            (json!({"text": "x", "pattern": "x".repeat(1001)}),
             "n (RegexMatchNode): pattern length (1,001 chars) exceeds maximum allowed (1,000 chars) for regex operations"),
        ];
        for (config, want) in cases {
            assert_eq!(err("RegexMatchNode", config), want);
        }
        // The same limits guard RegexReplace; TextExtract has none but still reports bad syntax.
        assert!(err("RegexReplaceNode", json!({"text": "é".repeat(100_001), "pattern": "x"}))
            .ends_with("text length (100,001 chars) exceeds maximum allowed (100,000 chars) for regex operations"));
        assert_eq!(
            err("TextExtractNode", json!({"text": "x", "pattern": "[a-"})),
            "n (TextExtractNode): invalid regex pattern '[a-': unclosed character class"
        );
        assert!(err(
            "TextExtractNode",
            json!({"text": "x", "pattern": "a{99999}{99999}"})
        )
        .starts_with("n (TextExtractNode): invalid regex pattern 'a{99999}{99999}': "));
    }

    #[test]
    fn regex_replace_python_semantics() {
        let cases = [
            (
                json!({"text": "abxd", "pattern": "x*", "replacement": "-"}),
                "'-a-b--d-'",
                5,
            ),
            (
                json!({"text": "bab", "pattern": "a|", "replacement": "-"}),
                "'-b--b-'",
                4,
            ),
            (
                json!({"text": "abc", "pattern": "", "replacement": "-"}),
                "'-a-b-c-'",
                4,
            ),
            (
                json!({"text": "me@host, you@there", "pattern": "(\\w+)@(\\w+)", "replacement": "\\2 at \\1"}),
                "'host at me, there at you'",
                2,
            ),
            (
                json!({"text": "foo", "pattern": "(?P<w>o)", "replacement": "[\\g<w>\\g<0>\\g<1>]"}),
                "'f[ooo][ooo]'",
                2,
            ),
            (
                json!({"text": "ab", "pattern": "(a)|b", "replacement": "[\\1]"}),
                "'[a][]'",
                2,
            ),
            (
                json!({"text": "aaa", "pattern": "a", "replacement": "b", "max_count": 2}),
                "'bba'",
                2,
            ),
            (
                json!({"text": "a.b", "pattern": "\\.", "replacement": "\\n\\t\\\\$1"}),
                "'a\\n\\t\\\\$1b'",
                1,
            ),
            (
                json!({"text": "ab", "pattern": "a", "replacement": "\\101\\-"}),
                "'A\\\\-b'",
                1,
            ),
            (
                json!({"text": "Aa", "pattern": "a", "replacement": "x", "ignore_case": true}),
                "'xx'",
                2,
            ),
        ];
        for (config, want, count) in cases {
            let ran = one("RegexReplaceNode", config.clone());
            assert!(ran.outcome.success(), "{config}: {}", ran.error());
            assert_eq!(ran.out("n", "result").py_repr(), want, "{config}");
            assert!(
                matches!(ran.out("n", "count"), Value::Int(c) if c == count),
                "{config}"
            );
        }
        let cases = [
            (
                json!({"text": "a", "pattern": "a", "replacement": "\\3"}),
                "n (RegexReplaceNode): bad replacement '\\3': invalid group reference 3",
            ),
            (
                json!({"text": "a", "pattern": "a", "replacement": "\\g<x>"}),
                "n (RegexReplaceNode): bad replacement '\\g<x>': unknown group name 'x'",
            ),
            (
                json!({"text": "a", "pattern": "a", "replacement": "\\g<1"}),
                "n (RegexReplaceNode): bad replacement '\\g<1': missing >, unterminated name",
            ),
            (
                json!({"text": "a", "pattern": "a", "replacement": "\\q"}),
                "n (RegexReplaceNode): bad replacement '\\q': bad escape \\q",
            ),
            (
                json!({"text": "a", "pattern": "a", "replacement": "x\\"}),
                "n (RegexReplaceNode): bad replacement 'x\\': bad escape (end of pattern)",
            ),
            (
                json!({"text": "a", "pattern": "a", "replacement": "x", "max_count": "many"}),
                "n (RegexReplaceNode): input 'max_count' must be an integer, got str 'many'",
            ),
        ];
        for (config, want) in cases {
            assert_eq!(err("RegexReplaceNode", config), want);
        }
    }

    #[test]
    fn split_and_join() {
        let cases = [
            (json!({"text": "  a b  c "}), "['a', 'b', 'c']"),
            (
                json!({"text": "  a b  c ", "max_split": 1}),
                "['a', 'b  c ']",
            ),
            (json!({"text": "  a b  c ", "max_split": 0}), "['a b  c ']"),
            (json!({"text": "   "}), "[]"),
            (
                json!({"text": "a\tb\u{2003}c\u{1c}d"}),
                "['a', 'b', 'c', 'd']",
            ),
            (
                json!({"text": "a,b,,c", "separator": ","}),
                "['a', 'b', '', 'c']",
            ),
            (
                json!({"text": "a,b,c", "separator": ",", "max_split": 1}),
                "['a', 'b,c']",
            ),
            (
                json!({"text": "a,b,c", "separator": ",", "max_split": 0}),
                "['a,b,c']",
            ),
            (json!({"text": "", "separator": ","}), "['']"),
            (json!({"text": "a b", "separator": " "}), "['a', 'b']"),
            (json!({"text": 12.5, "separator": "."}), "['12', '5']"),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("TextSplitNode", config.clone(), "result"),
                want,
                "{config}"
            );
        }
        assert_eq!(
            err("TextSplitNode", json!({"text": "a", "max_split": "x"})),
            "n (TextSplitNode): input 'max_split' must be an integer, got str 'x'"
        );
        let cases = [
            (
                json!({"items": ["a", 1, 2.0, null, true], "separator": "/"}),
                "'a/1/2.0/None/True'",
            ),
            (json!({"items": "single"}), "'single'"),
            (json!({"items": {"k": 1}, "separator": "-"}), "\"{'k': 1}\""),
            (json!({"items": []}), "''"),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("TextJoinNode", config.clone(), "result"),
                want,
                "{config}"
            );
        }
        let err = crate::engine::load_str(&chain(&[("j", "TextJoinNode", json!({}))])).unwrap_err();
        assert!(
            err.to_string()
                .contains("required input \"items\" has no value"),
            "{err}"
        );
    }

    #[test]
    fn replace_trim_case_reverse() {
        let cases = [
            (
                json!({"text": "aaa", "old_value": "a", "new_value": "bb", "count": 2}),
                "'bbbba'",
                2,
            ),
            (
                json!({"text": "aaa", "old_value": "a", "new_value": "b", "count": 0}),
                "'aaa'",
                0,
            ),
            (
                json!({"text": "abc", "old_value": "", "new_value": "-"}),
                "'-a-b-c-'",
                4,
            ),
            (
                json!({"text": "a1b22", "old_value": "\\d+", "new_value": "<\\g<0>>", "use_regex": true}),
                "'a<1>b<22>'",
                2,
            ),
            (
                json!({"text": "a1b2", "old_value": "\\d", "new_value": "#", "use_regex": true, "count": 1}),
                "'a#b2'",
                1,
            ),
            (
                json!({"text": "a1b2", "old_value": "\\d", "new_value": "#", "use_regex": true, "count": 0}),
                "'a1b2'",
                0,
            ),
            (
                json!({"text": "AbA", "old_value": "a", "new_value": "x", "use_regex": true, "ignore_case": true}),
                "'xbx'",
                2,
            ),
        ];
        for (config, want, n) in cases {
            let ran = one("TextReplaceNode", config.clone());
            assert!(ran.outcome.success(), "{config}: {}", ran.error());
            assert_eq!(ran.out("n", "result").py_repr(), want, "{config}");
            assert!(
                matches!(ran.out("n", "replacements"), Value::Int(c) if c == n),
                "{config}"
            );
        }
        let cases = [
            (json!({"text": " \t x \n"}), "'x'"),
            (json!({"text": "  x  ", "mode": "left"}), "'x  '"),
            (json!({"text": "  x  ", "mode": "Right"}), "'  x'"),
            (json!({"text": "xxhixy", "characters": "xy"}), "'hi'"),
            (json!({"text": 0}), "'0'"),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("TextTrimNode", config.clone(), "result"),
                want,
                "{config}"
            );
        }
        let cases = [
            ("upper", "\"THEY'RE 1ST SS HELLO\""),
            ("lower", "\"they're 1st ß hello\""),
            ("title", "\"They'Re 1St Ss Hello\""),
            ("capitalize", "\"They're 1st ß hello\""),
            ("swapcase", "\"THEY'RE 1ST SS Hello\""),
        ];
        for (case, want) in cases {
            let config = json!({"text": "they're 1st ß hELLO", "case": case});
            assert_eq!(out("TextCaseNode", config, "result"), want, "{case}");
        }
        assert_eq!(out("TextCaseNode", json!({"text": "ΑΣ"}), "result"), "'ας'");
        assert_eq!(
            out("TextReverseNode", json!({"text": "añb😀"}), "result"),
            "'😀bña'"
        );
        assert_eq!(
            err("TextCaseNode", json!({"text": "x", "case": "shout"})),
            "n (TextCaseNode): unknown case 'shout' (expected one of: upper, lower, title, capitalize, swapcase)"
        );
        assert_eq!(
            err("TextTrimNode", json!({"text": "x", "mode": "middle"})),
            "n (TextTrimNode): unknown mode 'middle' (expected one of: both, left, right)"
        );
        // 1000 replacements of 200 KB each would be 200 MB.
        assert_eq!(
            err("TextReplaceNode", json!({"text": "a".repeat(1000), "old_value": "a", "new_value": "b".repeat(200_000)})),
            "n (TextReplaceNode): the replaced text would be 200000000 bytes, over the 100 MB limit for text results"
        );
        assert!(err("TextReplaceNode", json!({"text": "a".repeat(1000), "old_value": "a", "new_value": "b".repeat(200_000), "use_regex": true}))
            .contains("over the 100 MB limit for text results"));
    }

    #[test]
    fn pad_substring_lines() {
        let cases = [
            (
                json!({"text": "42", "length": 5, "fill_char": "0"}),
                "'00042'",
            ),
            (
                json!({"text": "ab", "length": 5, "fill_char": "*", "mode": "right"}),
                "'ab***'",
            ),
            (
                json!({"text": "ab", "length": 5, "fill_char": "*", "mode": "center"}),
                "'**ab*'",
            ),
            (
                json!({"text": "abc", "length": 6, "fill_char": "*", "mode": "center"}),
                "'*abc**'",
            ),
            (
                json!({"text": "ab", "length": 6, "fill_char": "*", "mode": "center"}),
                "'**ab**'",
            ),
            (json!({"text": "é", "length": 3, "fill_char": "ü"}), "'üüé'"),
            (json!({"text": "abc", "length": 2}), "'abc'"),
            (json!({"text": "abc", "length": -4}), "'abc'"),
            (
                json!({"text": "7", "length": "3", "fill_char": "ab"}),
                "'  7'",
            ),
            (
                json!({"text": "7", "length": 3.0, "fill_char": ""}),
                "'  7'",
            ),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("TextPadNode", config.clone(), "result"),
                want,
                "{config}"
            );
        }
        assert_eq!(
            err("TextPadNode", json!({"text": "x", "length": 1_000_000_000_000i64})),
            "n (TextPadNode): padded text would be 1000000000000 bytes, over the 100 MB limit for text results"
        );
        assert_eq!(
            err("TextPadNode", json!({"text": "x", "length": "abc"})),
            "n (TextPadNode): input 'length' must be an integer, got str 'abc'"
        );
        assert_eq!(
            err(
                "TextPadNode",
                json!({"text": "x", "length": 3, "mode": "both"})
            ),
            "n (TextPadNode): unknown mode 'both' (expected one of: left, right, center)"
        );
        let s = "Hello World";
        let cases = [
            (json!({"text": s, "start": -5}), "'World'", 5),
            (json!({"text": s, "start": 3, "end": -2}), "'lo Wor'", 6),
            (json!({"text": s, "start": 8, "end": 3}), "''", 0),
            (json!({"text": s, "start": -100, "end": 2}), "'He'", 2),
            (json!({"text": s, "start": 2, "end": 100}), "'llo World'", 9),
            (
                json!({"text": s, "start": "", "end": ""}),
                "'Hello World'",
                11,
            ),
            (json!({"text": "añb😀c", "start": 1, "end": 4}), "'ñb😀'", 3),
        ];
        for (config, want, len) in cases {
            let ran = one("TextSubstringNode", config.clone());
            assert!(ran.outcome.success(), "{config}: {}", ran.error());
            assert_eq!(ran.out("n", "result").py_repr(), want, "{config}");
            assert!(
                matches!(ran.out("n", "length"), Value::Int(l) if l == len),
                "{config}"
            );
        }
        assert_eq!(
            err("TextSubstringNode", json!({"text": s, "start": 1.5})),
            "n (TextSubstringNode): input 'start' must be an integer, got float 1.5"
        );
        let cases = [
            (
                json!({"text": "a\r\nb\rc\n\nd\u{0b}e\u{2028}f\n"}),
                "['a', 'b', 'c', '', 'd', 'e', 'f']",
                7,
            ),
            (
                json!({"text": "a\n\nb\n", "remove_empty": true}),
                "['a', 'b']",
                2,
            ),
            (json!({"text": "\n"}), "['']", 1),
            (json!({"text": ""}), "[]", 0),
        ];
        for (config, want, n) in cases {
            let ran = one("TextLinesNode", config.clone());
            assert!(ran.outcome.success(), "{config}: {}", ran.error());
            assert_eq!(ran.out("n", "lines").py_repr(), want, "{config}");
            assert!(
                matches!(ran.out("n", "count"), Value::Int(c) if c == n),
                "{config}"
            );
        }
        let cases = [
            (json!({"mode": "join", "lines": ["a", 1]}), "'a\\n1'"),
            (
                json!({"mode": "join", "lines": ["a", "b"], "line_separator": "crlf"}),
                "'a\\r\\nb'",
            ),
            (
                json!({"mode": "join", "lines": ["a", "b"], "line_separator": "comma"}),
                "'a,b'",
            ),
            (
                json!({"mode": "join", "lines": ["a", "b"], "line_separator": " / "}),
                "'a / b'",
            ),
            (json!({"mode": "join"}), "''"),
        ];
        for (config, want) in cases {
            assert_eq!(
                out("TextLinesNode", config.clone(), "text"),
                want,
                "{config}"
            );
        }
        assert_eq!(
            err("TextLinesNode", json!({"mode": "join", "lines": 5})),
            "n (TextLinesNode): input 'lines' must be a list, got int 5"
        );
        assert_eq!(
            err("TextLinesNode", json!({"mode": "merge"})),
            "n (TextLinesNode): unknown mode 'merge' (expected one of: split, join)"
        );
    }

    #[test]
    fn search_nodes() {
        let cases = [
            (json!({"text": "Héllo wörld", "search": "wö"}), "True", 6, 1),
            (json!({"text": "abc", "search": ""}), "True", 0, 4),
            (json!({"text": "aaaa", "search": "aa"}), "True", 0, 2),
            (json!({"text": "Hello", "search": "hello"}), "False", -1, 0),
            (
                json!({"text": "Hello", "search": "hello", "case_sensitive": false}),
                "True",
                0,
                1,
            ),
            (
                json!({"text": "Hello", "search": "L", "case_sensitive": "false"}),
                "True",
                2,
                2,
            ),
        ];
        for (config, contains, pos, count) in cases {
            let ran = one("TextContainsNode", config.clone());
            assert!(ran.outcome.success(), "{config}: {}", ran.error());
            assert_eq!(ran.out("n", "contains").py_repr(), contains, "{config}");
            assert!(
                matches!(ran.out("n", "position"), Value::Int(p) if p == pos),
                "{config}"
            );
            assert!(
                matches!(ran.out("n", "count"), Value::Int(c) if c == count),
                "{config}"
            );
        }
        let cases = [
            (
                "TextStartsWithNode",
                json!({"text": "Hello", "prefix": "He"}),
                "True",
            ),
            (
                "TextStartsWithNode",
                json!({"text": "Hello", "prefix": "he"}),
                "False",
            ),
            (
                "TextStartsWithNode",
                json!({"text": "Hello", "prefix": "he", "case_sensitive": false}),
                "True",
            ),
            ("TextStartsWithNode", json!({"text": "Hello"}), "True"),
            (
                "TextEndsWithNode",
                json!({"text": "Hello", "suffix": "lo"}),
                "True",
            ),
            (
                "TextEndsWithNode",
                json!({"text": "Hello", "suffix": "LO"}),
                "False",
            ),
            (
                "TextEndsWithNode",
                json!({"text": "Hello", "suffix": "LO", "case_sensitive": false}),
                "True",
            ),
        ];
        for (ty, config, want) in cases {
            assert_eq!(out(ty, config.clone(), "result"), want, "{ty} {config}");
        }
        // TextExtract: first match vs all matches, groups, None for unmatched groups.
        let ran = one(
            "TextExtractNode",
            json!({"text": "a=1, b=2", "pattern": "(\\w)=(\\d)(x)?"}),
        );
        assert_eq!(ran.out("n", "match").py_repr(), "'a=1'");
        assert_eq!(ran.out("n", "groups").py_repr(), "['a', '1', None]");
        let ran = one(
            "TextExtractNode",
            json!({"text": "a=1, b=2", "pattern": "(\\w)=(\\d)", "all_matches": true}),
        );
        assert_eq!(ran.out("n", "match").py_repr(), "['a=1', 'b=2']");
        assert_eq!(ran.out("n", "groups").py_repr(), "[['a', '1'], ['b', '2']]");
        assert_eq!(ran.out("n", "found").py_repr(), "True");
        let ran = one("TextExtractNode", json!({"text": "none", "pattern": "\\d"}));
        assert_eq!(ran.out("n", "match").py_repr(), "''");
        assert_eq!(ran.out("n", "found").py_repr(), "False");
        assert_eq!(
            err("TextExtractNode", json!({"text": "x", "pattern": ""})),
            "n (TextExtractNode): regex pattern is required (pattern is empty)"
        );
        let load =
            crate::engine::load_str(&chain(&[("e", "TextExtractNode", json!({"text": "x"}))]))
                .unwrap_err();
        assert!(
            load.to_string()
                .contains("required input \"pattern\" has no value"),
            "{load}"
        );
    }

    #[test]
    fn count_modes() {
        let text = " Hello  big\tworld \nline2\r\n";
        let cases = [
            (json!({"text": text}), 26),
            (json!({"text": text, "exclude_whitespace": true}), 18),
            (json!({"text": text, "mode": "words"}), 4),
            (json!({"text": text, "mode": "lines"}), 2),
            (json!({"text": "añ😀"}), 3),
            (json!({"text": ""}), 0),
        ];
        for (config, want) in cases {
            let ran = one("TextCountNode", config.clone());
            assert!(ran.outcome.success(), "{config}: {}", ran.error());
            assert!(
                matches!(ran.out("n", "count"), Value::Int(c) if c == want),
                "{config}: {:?}",
                ran.out("n", "count")
            );
        }
        assert_eq!(
            err("TextCountNode", json!({"text": "x", "mode": "bytes"})),
            "n (TextCountNode): unknown mode 'bytes' (expected one of: characters, words, lines)"
        );
    }

    #[test]
    fn super_node_dispatches_by_action() {
        let cases = [
            (json!({"text": "Hello", "search": "ll"}), "position", "2"),
            (
                json!({"action": "Substring", "text": "Hello", "start": 1, "end": 3}),
                "result",
                "'el'",
            ),
            (
                json!({"action": "Starts With", "text": "Hello", "prefix": "he", "case_sensitive": false}),
                "result",
                "True",
            ),
            (
                json!({"action": "ends_with", "text": "Hello", "suffix": "lo"}),
                "result",
                "True",
            ),
            (
                json!({"action": "Extract (Regex)", "text": "id 42", "pattern": "\\d+"}),
                "match",
                "'42'",
            ),
            (
                json!({"action": "Split", "text": "a;b", "separator": ";"}),
                "result",
                "['a', 'b']",
            ),
            (
                json!({"action": "Replace", "text": "aaa", "old_value": "a", "new_value": "b", "replace_count": 1}),
                "result",
                "'baa'",
            ),
            (
                json!({"action": "Trim", "text": "--x--", "trim_characters": "-", "trim_mode": "left"}),
                "result",
                "'x--'",
            ),
            (
                json!({"action": "Case", "text": "hello world", "case_transform": "title"}),
                "result",
                "'Hello World'",
            ),
            (
                json!({"action": "Pad", "text": "7", "length": 3, "fill_char": "0", "pad_mode": "right"}),
                "result",
                "'700'",
            ),
            (
                json!({"action": "Reverse", "text": "abc"}),
                "result",
                "'cba'",
            ),
            (
                json!({"action": "Lines", "text": "a\nb"}),
                "lines",
                "['a', 'b']",
            ),
            (
                json!({"action": "Lines", "lines_mode": "join", "lines": ["a", "b"], "line_separator": "comma"}),
                "text",
                "'a,b'",
            ),
            (
                json!({"action": "Count", "text": "one two", "count_mode": "words"}),
                "count",
                "2",
            ),
            (
                json!({"action": "Join", "items": ["a", "b"], "separator": "+"}),
                "result",
                "'a+b'",
            ),
        ];
        for (config, port, want) in cases {
            assert_eq!(out("TextSuperNode", config.clone(), port), want, "{config}");
        }
        assert!(
            err("TextSuperNode", json!({"action": "Explode"})).starts_with(
                "n (TextSuperNode): unknown action 'Explode' (expected one of: Substring,"
            )
        );
        assert_eq!(
            err("TextSuperNode", json!({"action": "Case", "case_transform": "loud"})),
            "n (TextSuperNode): unknown case_transform 'loud' (expected one of: upper, lower, title, capitalize, swapcase)"
        );
    }

    /// Odd patterns and replacements never panic: every run succeeds or fails with a message.
    #[test]
    fn odd_inputs_do_not_panic() {
        let pieces = [
            "\\", "(", ")", "[", "]", "{", "}", "{,", "?", "*", "+", "(?", "(?P<", "\\g<", "\\0",
            "\\9", "a", "é", "^", "$", "|", "\\Z", "(?#", "[^", "\\x", "-", "&&", "~~",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let n = rng.usize(1..6);
            let pattern: String = (0..n).map(|_| pieces[rng.usize(..pieces.len())]).collect();
            let repl: String = (0..n).map(|_| pieces[rng.usize(..pieces.len())]).collect();
            for ty in ["RegexReplaceNode", "TextSuperNode"] {
                let config = json!({"action": "Replace", "use_regex": true, "text": "a(é)b{c}\\n",
                    "pattern": pattern, "old_value": pattern, "replacement": repl, "new_value": repl});
                let ran = one(ty, config);
                let error = ran.error();
                assert!(
                    ran.outcome.success()
                        || (error.starts_with(&format!("n ({ty}): "))
                            && !error.contains("panicked")),
                    "{pattern:?} {repl:?}: {error}"
                );
            }
        }
    }

    #[test]
    fn python_helpers() {
        assert_eq!(py_title("ǆx ßa ﬁx"), "ǅx Ssa Fix");
        assert_eq!(py_capitalize("ßA"), "Ssa");
        assert_eq!(py_split_ws("a b c", 1), vec!["a", "b c"]);
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(
            translate_pattern("a{2,}b{,3}\\Z").unwrap_or_default(),
            "a{2,}b{0,3}\\z"
        );
        assert_eq!(
            translate_pattern("\\101[\\1]").unwrap_or_default(),
            "\\x{41}[\\x{1}]"
        );
        let re = compile("(?P<a>x)(y)", false, false, false).expect("compiles");
        assert_eq!(
            parse_replacement("<\\g<a>\\2\\g<2>>", &re).expect("parses"),
            vec![
                ReplPart::Text("<".into()),
                ReplPart::Group(1),
                ReplPart::Group(2),
                ReplPart::Group(2),
                ReplPart::Text(">".into()),
            ]
        );
    }
}

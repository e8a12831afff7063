//! XML nodes: `ParseXMLNode`, `XPathQueryNode`, `GetXMLElementNode`, `GetXMLAttributeNode`,
//! `XMLToJsonNode`, `JsonToXMLNode`, `ReadXMLFileNode`, `WriteXMLFileNode` (reference §4.11,
//! upstream `nodes/xml_nodes.py`, which parses with defusedxml's ElementTree).
//!
//! Documents are parsed with roxmltree into a small owned element tree shaped like ElementTree's
//! (tag, ordered attributes, `text`, `tail`, children; comments and processing instructions are
//! dropped and the text around them joined, as ElementTree's default parser does). Tags and
//! attribute names in a namespace print as ElementTree prints them: `{uri}local`. Documents travel
//! between nodes as XML strings (outputs must be plain values); `ParseXMLNode` and
//! `ReadXMLFileNode` also store the XML text in the variable `_xml_root`, and `XPathQueryNode`,
//! `GetXMLElementNode` and `GetXMLAttributeNode` fall back to it when `xml_string` is empty, as
//! upstream falls back to its parsed `_xml_root` element (so `xml_string` is optional there).
//!
//! Paths are ElementTree's `findall` subset, implemented with its exact rules (tokenizer,
//! selectors and predicates of `xml.etree.ElementPath`): `tag`, `*`, `.`, `..`, `//` descendants,
//! `{uri}tag`, `{*}tag`, `{uri}*`, `[@a]`, `[@a='v']`, `[@a!='v']`, `[tag]`, `[tag='text']`,
//! `[.='text']`, `[n]` (1-based), `[last()]`, `[last()-n]`. A leading `/` or `//` is an error, as in
//! ElementTree; the message says to write `.//tag`.
//!
//! Safety: input is capped at 50 MB, 4,000,000 nodes and 256 levels of nesting; a document that
//! declares entities (`<!ENTITY`, the vehicle of "billion laughs" expansion and of external-entity
//! (XXE) reads) is refused before parsing, as defusedxml refuses it (a DOCTYPE without entity
//! declarations is accepted, and no external DTD or entity is ever fetched). roxmltree itself also
//! limits entity expansion (depth 10, 255 references) and never resolves external entities; tests
//! check both layers. Path evaluation checks the node deadline and cancellation, and refuses to
//! select more than 1,000,000 elements in one step.
//!
//! Deviations from upstream, and why:
//! - Errors are node errors naming what failed: XML errors give line and column, path errors name
//!   the path; upstream returned `str(e)` (e.g. "Unknown error" at validation, `'@'` for a bad path).
//! - The xpath is trimmed of surrounding whitespace (ElementTree would select nothing for
//!   `" .//item"`).
//! - `JsonToXMLNode` refuses keys that are not XML names (upstream wrote broken XML silently) and
//!   characters XML cannot hold; `{uri}name` keys get `ns0`-style prefixes as ElementTree writes them.
//! - Pretty printing follows minidom's `toprettyxml(indent="  ")` (Python 3.8-3.12 escaping: `&`, `<`,
//!   `>` and `"` in text and attributes); CDATA sections are written as escaped text and a DOCTYPE is
//!   kept as written.
//! - `WriteXMLFileNode`: the path goes through the safety rules and the `file_path` output is the
//!   resolved absolute path (relative paths resolve against the job's working directory, not the
//!   robot's); newlines are written as `\n` on every OS; when pretty printing with an encoding other
//!   than UTF-8 the declaration names that encoding (minidom's `<?xml version="1.0" ?>` would make the
//!   file unreadable); a skipped pretty print (the XML does not parse) is logged as a warning.
//! - `ReadXMLFileNode`: the path goes through the safety rules; `xml_string` is decoded with
//!   `encoding` (utf-8, utf-8-sig, ascii, latin-1, cp1252, utf-16[-le|-be]) with Python's universal
//!   newlines, and the document itself is decoded by its BOM or its declared encoding (those same
//!   encodings; others are a clear error); `_xml_tree` is not stored. XML given as a string
//!   (`xml_string`) is already text, so an `encoding` in its declaration is ignored, as Python's
//!   `ET.fromstring(str)` ignores it.

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::{Dict, Value};
use crate::engine::CancelToken;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "ParseXMLNode",
        &[req("xml_string")],
        &["root_tag", "root_text", "child_count", "success"],
        parse_xml_node,
    ),
    NodeDef::plain(
        "ReadXMLFileNode",
        &[req("file_path"), opt("encoding", Lit::Str("utf-8"))],
        &["root_tag", "xml_string", "success"],
        read_xml_file,
    ),
    NodeDef::plain(
        "WriteXMLFileNode",
        &[
            req("file_path"),
            req("xml_string"),
            opt("encoding", Lit::Str("utf-8")),
            opt("pretty_print", Lit::Bool(true)),
            opt("xml_declaration", Lit::Bool(true)),
        ],
        &["file_path", "success"],
        write_xml_file,
    ),
    NodeDef::plain(
        "XPathQueryNode",
        &[opt("xml_string", Lit::Null), req("xpath")],
        &["results", "count", "first_text", "success"],
        xpath_query,
    ),
    NodeDef::plain(
        "GetXMLElementNode",
        &[
            opt("xml_string", Lit::Null),
            req("tag_name"),
            opt("index", Lit::Int(0)),
        ],
        &["tag", "text", "attributes", "child_count", "found"],
        get_xml_element,
    ),
    NodeDef::plain(
        "GetXMLAttributeNode",
        &[
            opt("xml_string", Lit::Null),
            opt("xpath", Lit::Str(".")),
            req("attribute_name"),
        ],
        &["value", "found"],
        get_xml_attribute,
    ),
    NodeDef::plain(
        "XMLToJsonNode",
        &[
            req("xml_string"),
            opt("include_attributes", Lit::Bool(true)),
            opt("text_key", Lit::Str("#text")),
        ],
        &["json_data", "json_string", "success"],
        xml_to_json,
    ),
    NodeDef::plain(
        "JsonToXMLNode",
        &[
            req("json_data"),
            opt("root_tag", Lit::Str("root")),
            opt("pretty_print", Lit::Bool(true)),
        ],
        &["xml_string", "success"],
        json_to_xml,
    ),
];

/// Largest XML input (string or file) accepted.
pub const MAX_XML_BYTES: usize = 50 * 1024 * 1024;
/// Most nodes (elements, text, comments, ...) in one document.
const MAX_NODES: u32 = 4_000_000;
/// Deepest element nesting accepted.
const MAX_DEPTH: usize = 256;
/// Most elements one path step may select.
const MAX_SELECTED: usize = 1_000_000;
/// The variable where ParseXML / ReadXMLFile leave the last document (as XML text).
const XML_ROOT_VAR: &str = "_xml_root";

// ---------------------------------------------------------------------------------------------
// Time and cancellation budget for CPU-bound work.

struct Budget {
    cancel: CancelToken,
    deadline: Instant,
    steps: u32,
}

impl Budget {
    fn of(ctx: &NodeCtx<'_>) -> Budget {
        Budget {
            cancel: ctx.cancel_token().clone(),
            deadline: ctx.deadline(),
            steps: 0,
        }
    }

    #[cfg(test)]
    fn unlimited() -> Budget {
        Budget {
            cancel: CancelToken::new(),
            deadline: Instant::now() + std::time::Duration::from_secs(3600),
            steps: 0,
        }
    }

    /// Count one unit of work; every 4096 units check cancellation and the deadline.
    fn tick(&mut self) -> Result<(), NodeError> {
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(4096) {
            if self.cancel.is_cancelled() {
                return Err(NodeError::cancelled("cancelled while processing XML"));
            }
            if Instant::now() > self.deadline {
                return Err(NodeError::timeout(
                    "timed out while processing XML (node deadline passed)",
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The owned element tree (ElementTree's shape).

/// One element: ElementTree's `tag`, `attrib`, `text`, `tail` (empty = None) and children.
#[derive(Clone, Debug, Default)]
struct Elem {
    tag: String,
    attrib: Vec<(String, String)>,
    text: String,
    tail: String,
    children: Vec<usize>,
    parent: Option<usize>,
}

/// A parsed document; element 0 is the root.
#[derive(Debug, Default)]
struct Tree {
    elems: Vec<Elem>,
}

impl Tree {
    fn get(&self, e: usize) -> &Elem {
        &self.elems[e]
    }

    fn attr(&self, e: usize, key: &str) -> Option<&str> {
        self.elems[e]
            .attrib
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// ElementTree's `itertext()` joined: own text, then each child's text and tail.
    fn itertext(&self, e: usize, out: &mut String) {
        let el = &self.elems[e];
        out.push_str(&el.text);
        for &c in &el.children {
            self.itertext(c, out);
            out.push_str(&self.elems[c].tail);
        }
    }

    fn text_of(&self, e: usize) -> String {
        let mut s = String::new();
        self.itertext(e, &mut s);
        s
    }

    /// Descendants of `e` in document order, `e` excluded.
    fn descendants(
        &self,
        e: usize,
        budget: &mut Budget,
        out: &mut Vec<usize>,
    ) -> Result<(), NodeError> {
        let mut stack: Vec<usize> = self.elems[e].children.iter().rev().copied().collect();
        while let Some(n) = stack.pop() {
            budget.tick()?;
            out.push(n);
            stack.extend(self.elems[n].children.iter().rev().copied());
        }
        Ok(())
    }

    fn add(&mut self, parent: Option<usize>, tag: String) -> usize {
        let idx = self.elems.len();
        self.elems.push(Elem {
            tag,
            parent,
            ..Elem::default()
        });
        if let Some(p) = parent {
            self.elems[p].children.push(idx);
        }
        idx
    }

    fn set_attr(&mut self, e: usize, key: String, value: String) {
        let attrib = &mut self.elems[e].attrib;
        match attrib.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => attrib.push((key, value)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Safe parsing.

fn parse_error(msg: impl Into<String>) -> NodeError {
    NodeError::new("ParseError", msg)
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(40).collect();
    let t = t.replace('\n', "\\n").replace('\r', "\\r");
    if text.chars().count() > 40 {
        format!("{t}...")
    } else {
        t
    }
}

/// Find `<!ENTITY` declarations in the document type declaration of the prolog. Returns the
/// declared name of the first one. Comments, processing instructions and quoted literals are
/// skipped, so only real declarations count.
fn declared_entity(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    let skip_to = |from: usize, pat: &str| -> usize {
        text[from..]
            .find(pat)
            .map_or(b.len(), |p| from + p + pat.len())
    };
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let rest = &text[i..];
        if rest.starts_with("<?") {
            i = skip_to(i, "?>");
        } else if rest.starts_with("<!--") {
            i = skip_to(i + 4, "-->");
        } else if rest.starts_with("<!DOCTYPE") {
            break;
        } else {
            return None;
        }
    }
    // Inside the DOCTYPE.
    i += "<!DOCTYPE".len();
    let mut in_subset = false;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i = text[i + 1..]
                    .find(q as char)
                    .map_or(b.len(), |p| i + 1 + p + 1);
            }
            b'[' if !in_subset => {
                in_subset = true;
                i += 1;
            }
            b']' if in_subset => {
                in_subset = false;
                i += 1;
            }
            b'>' if !in_subset => return None,
            b'<' if text[i..].starts_with("<!--") => i = skip_to(i + 4, "-->"),
            b'<' if text[i..].starts_with("<?") => i = skip_to(i + 2, "?>"),
            b'<' if text[i..].starts_with("<!ENTITY") => {
                let name: String = text[i + 8..]
                    .trim_start()
                    .trim_start_matches('%')
                    .trim_start()
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '>' && *c != '"' && *c != '\'')
                    .take(60)
                    .collect();
                return Some(name);
            }
            _ => i += 1,
        }
    }
    None
}

/// Where the DOCTYPE declaration is, as a byte range (for keeping it when pretty printing).
fn doctype_range(text: &str) -> Option<std::ops::Range<usize>> {
    let start = text.find("<!DOCTYPE")?;
    let b = text.as_bytes();
    let mut i = start + 9;
    let mut in_subset = false;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i = text[i + 1..]
                    .find(q as char)
                    .map_or(b.len(), |p| i + 1 + p + 1);
            }
            b'[' => {
                in_subset = true;
                i += 1;
            }
            b']' => {
                in_subset = false;
                i += 1;
            }
            b'<' if text[i..].starts_with("<!--") => {
                i = text[i + 4..].find("-->").map_or(b.len(), |p| i + 4 + p + 3);
            }
            b'>' if !in_subset => return Some(start..i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Parse XML text into a roxmltree document with the safety rules of this module.
fn parse_doc(text: &str) -> Result<roxmltree::Document<'_>, NodeError> {
    if text.len() > MAX_XML_BYTES {
        return Err(NodeError::value(format!(
            "the XML is {} bytes; the limit is {} bytes (50 MB)",
            text.len(),
            MAX_XML_BYTES
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(parse_error("XML parse error: the XML text is empty"));
    }
    if let Some(name) = declared_entity(text) {
        return Err(parse_error(format!(
            "XML parse error: the document declares the entity '{name}' in its DOCTYPE; entity \
             declarations are refused (they enable entity-expansion 'billion laughs' and external \
             entity (XXE) attacks), as upstream's defusedxml refuses them"
        )));
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, opts).map_err(|e| {
        let pos = e.pos();
        let msg = e.to_string();
        let suffix = format!(" at {}:{}", pos.row, pos.col);
        let msg = msg.strip_suffix(&suffix).unwrap_or(&msg).to_string();
        let msg = match e {
            roxmltree::Error::NodesLimitReached => {
                format!("the document has more than {MAX_NODES} nodes")
            }
            roxmltree::Error::UnknownEntityReference(..) => {
                format!("{msg} (only the predefined entities and character references are allowed)")
            }
            _ => msg,
        };
        parse_error(format!(
            "XML parse error: {msg}: line {}, column {} (input starts with '{}')",
            pos.row,
            pos.col,
            snippet(text)
        ))
    })
}

fn expanded(ns: Option<&str>, local: &str) -> String {
    match ns {
        Some(uri) if !uri.is_empty() => format!("{{{uri}}}{local}"),
        _ => local.to_string(),
    }
}

/// Build the owned ElementTree-shaped tree of a parsed document.
fn build_tree(doc: &roxmltree::Document<'_>, budget: &mut Budget) -> Result<Tree, NodeError> {
    let mut tree = Tree::default();
    // roxmltree node id -> (element index, depth)
    let mut map: HashMap<usize, (usize, usize)> = HashMap::new();
    let root = doc.root_element();
    for node in root.descendants() {
        budget.tick()?;
        if node.is_element() {
            let (parent, depth) = match node.parent().and_then(|p| map.get(&p.id().get_usize())) {
                Some(&(p, d)) if node != root => (Some(p), d + 1),
                _ => (None, 1),
            };
            if depth > MAX_DEPTH {
                return Err(parse_error(format!(
                    "XML parse error: elements are nested deeper than {MAX_DEPTH} levels: line {}",
                    doc.text_pos_at(node.range().start).row
                )));
            }
            let tag = expanded(node.tag_name().namespace(), node.tag_name().name());
            let idx = tree.add(parent, tag);
            for a in node.attributes() {
                let key = expanded(a.namespace(), a.name());
                tree.elems[idx].attrib.push((key, a.value().to_string()));
            }
            map.insert(node.id().get_usize(), (idx, depth));
        } else if node.is_text() {
            let Some(&(p, _)) = node.parent().and_then(|p| map.get(&p.id().get_usize())) else {
                continue;
            };
            let text = node.text().unwrap_or("");
            match tree.elems[p].children.last().copied() {
                Some(last) => tree.elems[last].tail.push_str(text),
                None => tree.elems[p].text.push_str(text),
            }
        }
    }
    Ok(tree)
}

/// Parse XML text into the owned tree.
fn parse_tree(text: &str, budget: &mut Budget) -> Result<Tree, NodeError> {
    let doc = parse_doc(text)?;
    build_tree(&doc, budget)
}

// ---------------------------------------------------------------------------------------------
// ElementTree paths (xml.etree.ElementPath).

fn path_error(path: &str, reason: impl std::fmt::Display) -> NodeError {
    NodeError::new(
        "SyntaxError",
        format!("invalid ElementTree path '{path}': {reason}"),
    )
}

type Token = (String, String);

fn tokenize(path: &str) -> Result<Vec<Token>, NodeError> {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r#"('[^']*'|"[^"]*"|::|//?|\.\.|\(\)|!=|[/.*:\[\]\(\)@=])|((?:\{[^}]+\})?[^/\[\]\(\)@!=\s]+)|\s+"#,
        )
        .expect("static regex")
    });
    let mut out = Vec::new();
    for caps in re.captures_iter(path) {
        let op = caps.get(1).map_or("", |m| m.as_str()).to_string();
        let tag = caps.get(2).map_or("", |m| m.as_str()).to_string();
        if !tag.is_empty() && !tag.starts_with('{') {
            if let Some((prefix, _)) = tag.split_once(':') {
                return Err(path_error(
                    path,
                    format!(
                        "prefix '{prefix}' not found in prefix map (write namespaced names as \
                         '{{uri}}local' or '{{*}}local')"
                    ),
                ));
            }
        }
        out.push((op, tag));
    }
    Ok(out)
}

/// A tag test with ElementTree's wildcards.
#[derive(Clone, Debug)]
enum TagTest {
    /// Exact tag.
    Exact(String),
    /// `*`: any element.
    Any,
    /// `{}*`: any tag not in a namespace.
    NoNamespace,
    /// `{*}local`: `local` in any (or no) namespace.
    AnyNamespace(String),
    /// `{uri}*`: any tag in the namespace (`{uri` prefix).
    InNamespace(String),
}

impl TagTest {
    fn new(tag: &str) -> TagTest {
        if tag == "*" || tag == "{*}*" {
            TagTest::Any
        } else if tag == "{}*" {
            TagTest::NoNamespace
        } else if let Some(local) = tag.strip_prefix("{*}") {
            TagTest::AnyNamespace(local.to_string())
        } else if let Some(ns) = tag.strip_suffix("}*") {
            TagTest::InNamespace(format!("{ns}}}"))
        } else if let Some(local) = tag.strip_prefix("{}") {
            TagTest::Exact(local.to_string())
        } else {
            TagTest::Exact(tag.to_string())
        }
    }

    fn matches(&self, tag: &str) -> bool {
        match self {
            TagTest::Exact(t) => t == tag,
            TagTest::Any => true,
            TagTest::NoNamespace => !tag.starts_with('{'),
            TagTest::AnyNamespace(local) => {
                tag == local
                    || tag
                        .strip_suffix(local.as_str())
                        .is_some_and(|head| head.starts_with('{') && head.ends_with('}'))
            }
            TagTest::InNamespace(prefix) => tag.starts_with(prefix.as_str()),
        }
    }
}

#[derive(Clone, Debug)]
enum Pred {
    HasAttr(String),
    AttrEq(String, String, bool),
    HasChild(Vec<Step>),
    /// `[tag='v']` (a sub-path) or `[.='v']` (None); negated when the bool is true.
    TextEq(Option<Vec<Step>>, String, bool),
    /// 0-based from the start, or negative from the end.
    Position(i64),
}

#[derive(Clone, Debug)]
enum Step {
    Child(TagTest),
    Current,
    Parent,
    Descendant(TagTest),
    Predicate(Pred),
}

fn is_int(s: &str) -> bool {
    let d = s.strip_prefix('-').unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

fn compile(path: &str) -> Result<Vec<Step>, NodeError> {
    let mut p = path.to_string();
    if p.ends_with('/') {
        p.push('*');
    }
    if p.starts_with('/') {
        let suggestion = format!(".//{}", p.trim_start_matches('/'));
        return Err(path_error(
            path,
            format!(
                "cannot use absolute path on element (ElementTree paths are relative to the root \
                 element: use '{suggestion}' to search all descendants, or '.' for the root)"
            ),
        ));
    }
    // CPython's C accelerator matches a path without path characters as a plain child tag
    // (so `x:tag` selects nothing instead of failing on the unknown prefix).
    if !p.contains(['/', '*', '[', '@', '.', '{', '}']) {
        return Ok(vec![Step::Child(TagTest::Exact(p))]);
    }
    let tokens = tokenize(&p)?;
    let mut it = tokens.into_iter().peekable();
    let mut steps = Vec::new();
    let Some(mut token) = it.next() else {
        return Ok(steps);
    };
    loop {
        let step = match token.0.as_str() {
            "" => Step::Child(TagTest::new(&token.1)),
            "*" => Step::Child(TagTest::Any),
            "." => Step::Current,
            ".." => Step::Parent,
            "//" => {
                let Some(next) = it.next() else {
                    return Err(path_error(path, "invalid path (nothing after '//')"));
                };
                match next.0.as_str() {
                    "*" => Step::Descendant(TagTest::Any),
                    "" => Step::Descendant(TagTest::new(&next.1)),
                    other => {
                        return Err(path_error(
                            path,
                            format!("invalid descendant ('{other}' after '//')"),
                        ))
                    }
                }
            }
            "[" => Step::Predicate(compile_predicate(path, &mut it)?),
            other => {
                return Err(path_error(path, format!("unexpected '{other}'")));
            }
        };
        steps.push(step);
        match it.next() {
            None => break,
            Some(t) if t.0 == "/" => match it.next() {
                Some(t2) => token = t2,
                None => break,
            },
            Some(t) => token = t,
        }
    }
    Ok(steps)
}

fn compile_predicate(path: &str, it: &mut impl Iterator<Item = Token>) -> Result<Pred, NodeError> {
    let mut signature = String::new();
    let mut pred: Vec<String> = Vec::new();
    loop {
        let Some(mut token) = it.next() else {
            return Err(path_error(path, "invalid path (unclosed '[')"));
        };
        if token.0 == "]" {
            break;
        }
        if token.0.is_empty() && token.1.is_empty() {
            continue;
        }
        if token.0.starts_with('\'') || token.0.starts_with('"') {
            let inner = token.0[1..token.0.len() - 1].to_string();
            token = ("'".to_string(), inner);
        }
        if token.0.is_empty() {
            signature.push('-');
        } else {
            signature.push_str(&token.0);
        }
        pred.push(token.1);
    }
    let last = pred.last().cloned().unwrap_or_default();
    match signature.as_str() {
        "@-" => return Ok(Pred::HasAttr(pred[1].clone())),
        "@-='" | "@-!='" => {
            return Ok(Pred::AttrEq(
                pred[1].clone(),
                last,
                signature.contains("!="),
            ))
        }
        _ => {}
    }
    if signature == "-" && !is_int(&pred[0]) {
        return Ok(Pred::HasChild(compile(&pred[0])?));
    }
    if signature == ".='"
        || signature == ".!='"
        || ((signature == "-='" || signature == "-!='") && !is_int(&pred[0]))
    {
        let sub = if pred[0].is_empty() {
            None
        } else {
            Some(compile(&pred[0])?)
        };
        return Ok(Pred::TextEq(sub, last, signature.contains("!=")));
    }
    if signature == "-" || signature == "-()" || signature == "-()-" {
        let index = if signature == "-" {
            let n: i64 = pred[0]
                .parse()
                .map_err(|_| path_error(path, "unsupported expression"))?;
            if n < 1 {
                return Err(path_error(path, "XPath position >= 1 expected"));
            }
            n - 1
        } else {
            if pred[0] != "last" {
                return Err(path_error(
                    path,
                    format!("unsupported function '{}()'", pred[0]),
                ));
            }
            if signature == "-()-" {
                let n: i64 = pred[2]
                    .parse()
                    .map_err(|_| path_error(path, "unsupported expression"))?;
                let index = n.saturating_sub(1);
                if index > -2 {
                    return Err(path_error(
                        path,
                        "XPath offset from last() must be negative",
                    ));
                }
                index
            } else {
                -1
            }
        };
        return Ok(Pred::Position(index));
    }
    Err(path_error(path, "invalid predicate"))
}

fn check_size(n: usize) -> Result<(), NodeError> {
    if n > MAX_SELECTED {
        return Err(NodeError::value(format!(
            "the path selects more than {MAX_SELECTED} elements in one step; refusing"
        )));
    }
    Ok(())
}

fn eval(
    tree: &Tree,
    start: usize,
    steps: &[Step],
    budget: &mut Budget,
) -> Result<Vec<usize>, NodeError> {
    let mut result = vec![start];
    for step in steps {
        let mut next: Vec<usize> = Vec::new();
        match step {
            Step::Child(test) => {
                for &e in &result {
                    for &c in &tree.get(e).children {
                        budget.tick()?;
                        if test.matches(&tree.get(c).tag) {
                            next.push(c);
                        }
                    }
                    check_size(next.len())?;
                }
            }
            Step::Current => next = result,
            Step::Parent => {
                let mut seen = std::collections::HashSet::new();
                for &e in &result {
                    if let Some(p) = tree.get(e).parent {
                        if seen.insert(p) {
                            next.push(p);
                        }
                    }
                }
            }
            Step::Descendant(test) => {
                let mut all = Vec::new();
                for &e in &result {
                    all.clear();
                    tree.descendants(e, budget, &mut all)?;
                    next.extend(
                        all.iter()
                            .copied()
                            .filter(|&d| test.matches(&tree.get(d).tag)),
                    );
                    check_size(next.len())?;
                }
            }
            Step::Predicate(pred) => next = filter(tree, result, pred, budget)?,
        }
        result = next;
    }
    Ok(result)
}

fn filter(
    tree: &Tree,
    result: Vec<usize>,
    pred: &Pred,
    budget: &mut Budget,
) -> Result<Vec<usize>, NodeError> {
    let mut out = Vec::new();
    let mut siblings: HashMap<(usize, &str), Vec<usize>> = HashMap::new();
    for e in result {
        budget.tick()?;
        let keep = match pred {
            Pred::HasAttr(key) => tree.attr(e, key).is_some(),
            Pred::AttrEq(key, value, false) => tree.attr(e, key) == Some(value.as_str()),
            Pred::AttrEq(key, value, true) => tree.attr(e, key).is_some_and(|v| v != value),
            Pred::HasChild(sub) => !eval(tree, e, sub, budget)?.is_empty(),
            Pred::TextEq(None, value, neg) => (tree.text_of(e) == *value) != *neg,
            Pred::TextEq(Some(sub), value, neg) => eval(tree, e, sub, budget)?
                .into_iter()
                .any(|m| (tree.text_of(m) == *value) != *neg),
            Pred::Position(index) => {
                let Some(parent) = tree.get(e).parent else {
                    continue;
                };
                let tag = tree.get(e).tag.as_str();
                let sibs = siblings.entry((parent, tag)).or_insert_with(|| {
                    tree.get(parent)
                        .children
                        .iter()
                        .copied()
                        .filter(|&c| tree.get(c).tag == tag)
                        .collect()
                });
                let at = if *index < 0 {
                    let back = index.unsigned_abs() as usize;
                    sibs.len().checked_sub(back)
                } else {
                    Some(*index as usize)
                };
                at.and_then(|i| sibs.get(i)) == Some(&e)
            }
        };
        if keep {
            out.push(e);
        }
    }
    Ok(out)
}

/// ElementTree `findall(path)` from element `start`.
#[cfg(test)]
fn findall(
    tree: &Tree,
    start: usize,
    path: &str,
    budget: &mut Budget,
) -> Result<Vec<usize>, NodeError> {
    let steps = compile(path)?;
    eval(tree, start, &steps, budget)
}

// ---------------------------------------------------------------------------------------------
// Writing XML: ElementTree's `tostring` and minidom's `toprettyxml`.

/// `xml.etree.ElementTree._namespace_map`.
const WELL_KNOWN_NAMESPACES: &[(&str, &str)] = &[
    ("http://www.w3.org/XML/1998/namespace", "xml"),
    ("http://www.w3.org/1999/xhtml", "html"),
    ("http://www.w3.org/1999/02/22-rdf-syntax-ns#", "rdf"),
    ("http://schemas.xmlsoap.org/wsdl/", "wsdl"),
    ("http://www.w3.org/2001/XMLSchema", "xs"),
    ("http://www.w3.org/2001/XMLSchema-instance", "xsi"),
    ("http://purl.org/dc/elements/1.1/", "dc"),
];

fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

fn escape_attr_et(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#09;"),
            c => out.push(c),
        }
    }
}

/// minidom's `_write_data` (Python 3.8-3.12): `&`, `<`, `"`, `>`.
fn escape_minidom(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// `ElementTree.tostring(root, encoding="unicode")`.
fn et_tostring(tree: &Tree) -> String {
    // Qualified names, as ElementTree's `_namespaces` assigns them (document order).
    let mut qnames: HashMap<&str, String> = HashMap::new();
    let mut namespaces: Vec<(String, String)> = Vec::new(); // (uri, prefix)
    for el in &tree.elems {
        let names =
            std::iter::once(el.tag.as_str()).chain(el.attrib.iter().map(|(k, _)| k.as_str()));
        for name in names {
            if qnames.contains_key(name) {
                continue;
            }
            let q = match name.strip_prefix('{').and_then(|r| r.rsplit_once('}')) {
                Some((uri, local)) => {
                    let prefix = match namespaces.iter().find(|(u, _)| u == uri) {
                        Some((_, p)) => p.clone(),
                        None => {
                            let p = WELL_KNOWN_NAMESPACES
                                .iter()
                                .find(|(u, _)| *u == uri)
                                .map_or_else(
                                    || format!("ns{}", namespaces.len()),
                                    |(_, p)| p.to_string(),
                                );
                            if p != "xml" {
                                namespaces.push((uri.to_string(), p.clone()));
                            }
                            p
                        }
                    };
                    format!("{prefix}:{local}")
                }
                None => name.to_string(),
            };
            qnames.insert(name, q);
        }
    }
    namespaces.sort_by(|a, b| a.1.cmp(&b.1));
    let mut out = String::new();
    if tree.elems.is_empty() {
        return out;
    }
    // Iterative serialization: (element, closing?)
    let mut stack: Vec<(usize, bool)> = vec![(0, false)];
    while let Some((e, closing)) = stack.pop() {
        let el = tree.get(e);
        let tag = qnames
            .get(el.tag.as_str())
            .map_or(el.tag.as_str(), |s| s.as_str());
        if closing {
            out.push_str("</");
            out.push_str(tag);
            out.push('>');
            if e != 0 {
                escape_text(&el.tail, &mut out);
            }
            continue;
        }
        out.push('<');
        out.push_str(tag);
        if e == 0 {
            for (uri, prefix) in &namespaces {
                let _ = write!(out, " xmlns:{prefix}=\"");
                escape_attr_et(uri, &mut out);
                out.push('"');
            }
        }
        for (k, v) in &el.attrib {
            let _ = write!(
                out,
                " {}=\"",
                qnames.get(k.as_str()).map_or(k.as_str(), |s| s.as_str())
            );
            escape_attr_et(v, &mut out);
            out.push('"');
        }
        if !el.text.is_empty() || !el.children.is_empty() {
            out.push('>');
            escape_text(&el.text, &mut out);
            stack.push((e, true));
            for &c in el.children.iter().rev() {
                stack.push((c, false));
            }
        } else {
            out.push_str(" />");
            if e != 0 {
                escape_text(&el.tail, &mut out);
            }
        }
    }
    out
}

/// Decode an attribute value as written in a start tag (references and whitespace normalization).
fn decode_attr(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '&' => {
                let end = raw[i..].find(';').map(|p| i + p);
                let Some(end) = end else {
                    out.push('&');
                    continue;
                };
                let name = &raw[i + 1..end];
                let decoded = match name {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => name
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                match decoded {
                    Some(d) => {
                        out.push(d);
                        while chars.peek().is_some_and(|(j, _)| *j <= end) {
                            chars.next();
                        }
                    }
                    None => out.push('&'),
                }
            }
            '\r' => {
                if chars.peek().is_some_and(|(_, n)| *n == '\n') {
                    chars.next();
                }
                out.push(' ');
            }
            '\n' | '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The qualified name and attributes (namespace declarations included, in written order) of the
/// start tag at the beginning of `raw` (a well-formed document's element).
fn lex_start_tag(raw: &str) -> (&str, Vec<(&str, String)>) {
    let b = raw.as_bytes();
    let is_end = |c: u8| c.is_ascii_whitespace() || c == b'/' || c == b'>';
    let mut i = 1;
    while i < b.len() && !is_end(b[i]) {
        i += 1;
    }
    let name = &raw[1..i];
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] == b'/' || b[i] == b'>' {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &raw[start..i];
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'=') {
            i += 1;
        }
        let Some(&q) = b.get(i) else { break };
        let vstart = i + 1;
        let vend = raw[vstart..]
            .find(q as char)
            .map_or(b.len(), |p| vstart + p);
        attrs.push((key, decode_attr(&raw[vstart..vend])));
        i = vend + 1;
    }
    (name, attrs)
}

/// minidom `toprettyxml(indent="  ")` of a document (the XML must parse).
fn minidom_pretty(text: &str, budget: &mut Budget) -> Result<String, NodeError> {
    let doc = parse_doc(text)?;
    let input = doc.input_text();
    let mut out = String::from("<?xml version=\"1.0\" ?>\n");
    let mut doctype = doctype_range(input);
    for node in doc.root().children() {
        if let Some(dt) = doctype.clone() {
            if node.range().start > dt.start {
                out.push_str(&input[dt]);
                out.push('\n');
                doctype = None;
            }
        }
        pretty_node(node, "", &mut out, budget)?;
    }
    Ok(out)
}

fn pretty_node(
    node: roxmltree::Node<'_, '_>,
    indent: &str,
    out: &mut String,
    budget: &mut Budget,
) -> Result<(), NodeError> {
    budget.tick()?;
    match node.node_type() {
        roxmltree::NodeType::Element => {
            let input = node.document().input_text();
            let (name, mut attrs) = lex_start_tag(&input[node.range().start..]);
            // minidom lists namespace declarations first, then the attributes, each in written order.
            attrs.sort_by_key(|(k, _)| !(*k == "xmlns" || k.starts_with("xmlns:")));
            out.push_str(indent);
            out.push('<');
            out.push_str(name);
            for (k, v) in attrs {
                let _ = write!(out, " {k}=\"");
                escape_minidom(&v, out);
                out.push('"');
            }
            let children: Vec<_> = node.children().collect();
            if children.is_empty() {
                out.push_str("/>\n");
            } else if children.len() == 1 && children[0].is_text() {
                out.push('>');
                escape_minidom(children[0].text().unwrap_or(""), out);
                let _ = writeln!(out, "</{name}>");
            } else {
                out.push_str(">\n");
                let inner = format!("{indent}  ");
                for c in children {
                    pretty_node(c, &inner, out, budget)?;
                }
                let _ = writeln!(out, "{indent}</{name}>");
            }
        }
        roxmltree::NodeType::Text => {
            escape_minidom(indent, out);
            escape_minidom(node.text().unwrap_or(""), out);
            out.push('\n');
        }
        roxmltree::NodeType::Comment => {
            let _ = writeln!(out, "{indent}<!--{}-->", node.text().unwrap_or(""));
        }
        roxmltree::NodeType::PI => {
            if let Some(pi) = node.pi() {
                let _ = writeln!(out, "{indent}<?{} {}?>", pi.target, pi.value.unwrap_or(""));
            }
        }
        roxmltree::NodeType::Root => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Text encodings.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Codec {
    Utf8,
    Utf8Sig,
    Ascii,
    Latin1,
    Cp1252,
    Utf16,
    Utf16Le,
    Utf16Be,
}

const SUPPORTED_ENCODINGS: &str =
    "utf-8, utf-8-sig, ascii, latin-1, cp1252, utf-16, utf-16-le, utf-16-be";

fn codec(name: &str) -> Option<Codec> {
    let n = name.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    Some(match n.as_str() {
        "utf-8" | "utf8" | "u8" | "utf" => Codec::Utf8,
        "utf-8-sig" | "utf8-sig" => Codec::Utf8Sig,
        "ascii" | "us-ascii" | "646" => Codec::Ascii,
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "8859" | "cp819" | "l1" | "latin" => {
            Codec::Latin1
        }
        "cp1252" | "windows-1252" | "1252" => Codec::Cp1252,
        "utf-16" | "utf16" => Codec::Utf16,
        "utf-16-le" | "utf-16le" => Codec::Utf16Le,
        "utf-16-be" | "utf-16be" => Codec::Utf16Be,
        _ => return None,
    })
}

fn codec_param(name: &str) -> Result<Codec, NodeError> {
    codec(name).ok_or_else(|| {
        NodeError::new(
            "LookupError",
            format!("unknown or unsupported encoding: '{name}' (supported: {SUPPORTED_ENCODINGS})"),
        )
    })
}

/// cp1252 bytes 0x80..=0x9F (None = undefined, as Python's codec).
const CP1252_HIGH: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

fn decode_error(codec_name: &str, byte: u8, pos: usize, why: &str) -> NodeError {
    NodeError::new(
        "UnicodeDecodeError",
        format!("'{codec_name}' codec can't decode byte 0x{byte:02x} in position {pos}: {why}"),
    )
}

fn decode(bytes: &[u8], codec: Codec) -> Result<String, NodeError> {
    match codec {
        Codec::Utf8 | Codec::Utf8Sig => {
            let b = if codec == Codec::Utf8Sig {
                bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
            } else {
                bytes
            };
            std::str::from_utf8(b).map(str::to_string).map_err(|e| {
                let pos = e.valid_up_to();
                let byte = b[pos];
                let why = match e.error_len() {
                    None => "unexpected end of data",
                    Some(_) if (0x80..0xC2).contains(&byte) || byte > 0xF4 => "invalid start byte",
                    Some(_) => "invalid continuation byte",
                };
                decode_error("utf-8", byte, pos, why)
            })
        }
        Codec::Ascii => match bytes.iter().position(|b| !b.is_ascii()) {
            Some(pos) => Err(decode_error(
                "ascii",
                bytes[pos],
                pos,
                "ordinal not in range(128)",
            )),
            None => Ok(bytes.iter().map(|&b| b as char).collect()),
        },
        Codec::Latin1 => Ok(bytes.iter().map(|&b| b as char).collect()),
        Codec::Cp1252 => {
            let mut out = String::with_capacity(bytes.len());
            for (pos, &b) in bytes.iter().enumerate() {
                match b {
                    0x80..=0x9F => match CP1252_HIGH[(b - 0x80) as usize] {
                        Some(c) => out.push(c),
                        None => {
                            return Err(decode_error(
                                "charmap",
                                b,
                                pos,
                                "character maps to <undefined>",
                            ))
                        }
                    },
                    _ => out.push(b as char),
                }
            }
            Ok(out)
        }
        Codec::Utf16 | Codec::Utf16Le | Codec::Utf16Be => {
            let (le, body, name) = match codec {
                Codec::Utf16Le => (true, bytes, "utf-16-le"),
                Codec::Utf16Be => (false, bytes, "utf-16-be"),
                _ => match bytes {
                    [0xFF, 0xFE, rest @ ..] => (true, rest, "utf-16"),
                    [0xFE, 0xFF, rest @ ..] => (false, rest, "utf-16"),
                    _ => (true, bytes, "utf-16"),
                },
            };
            if body.len() % 2 == 1 {
                return Err(decode_error(
                    name,
                    body[body.len() - 1],
                    body.len() - 1,
                    "truncated data",
                ));
            }
            let units = body.chunks_exact(2).map(|c| {
                if le {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            });
            let mut out = String::with_capacity(body.len() / 2);
            let mut unit = 0usize;
            for r in char::decode_utf16(units) {
                match r {
                    Ok(c) => {
                        out.push(c);
                        unit += c.len_utf16();
                    }
                    Err(_) => {
                        return Err(decode_error(
                            name,
                            body[unit * 2],
                            unit * 2,
                            "illegal UTF-16 surrogate",
                        ))
                    }
                }
            }
            Ok(out)
        }
    }
}

fn encode(text: &str, codec: Codec) -> Result<Vec<u8>, NodeError> {
    let fail = |name: &str, c: char, pos: usize, why: &str| {
        NodeError::new(
            "UnicodeEncodeError",
            format!(
                "'{name}' codec can't encode character '\\u{:04x}' in position {pos}: {why}",
                c as u32
            ),
        )
    };
    match codec {
        Codec::Utf8 => Ok(text.as_bytes().to_vec()),
        Codec::Utf8Sig => {
            let mut v = b"\xEF\xBB\xBF".to_vec();
            v.extend_from_slice(text.as_bytes());
            Ok(v)
        }
        Codec::Ascii | Codec::Latin1 => {
            let (limit, name, why) = if codec == Codec::Ascii {
                (0x80, "ascii", "ordinal not in range(128)")
            } else {
                (0x100, "latin-1", "ordinal not in range(256)")
            };
            text.chars()
                .enumerate()
                .map(|(i, c)| {
                    if (c as u32) < limit {
                        Ok(c as u8)
                    } else {
                        Err(fail(name, c, i, why))
                    }
                })
                .collect()
        }
        Codec::Cp1252 => text
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let u = c as u32;
                if u < 0x80 || (0xA0..0x100).contains(&u) {
                    Ok(u as u8)
                } else {
                    CP1252_HIGH
                        .iter()
                        .position(|m| *m == Some(c))
                        .map(|p| 0x80 + p as u8)
                        .ok_or_else(|| fail("charmap", c, i, "character maps to <undefined>"))
                }
            })
            .collect(),
        Codec::Utf16 | Codec::Utf16Le | Codec::Utf16Be => {
            let be = codec == Codec::Utf16Be;
            let mut v = Vec::with_capacity(text.len() * 2 + 2);
            if codec == Codec::Utf16 {
                v.extend_from_slice(&[0xFF, 0xFE]);
            }
            for u in text.encode_utf16() {
                v.extend_from_slice(&if be { u.to_be_bytes() } else { u.to_le_bytes() });
            }
            Ok(v)
        }
    }
}

/// Python text mode's universal newlines.
fn universal_newlines(s: String) -> String {
    if s.contains('\r') {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s
    }
}

/// Decode the bytes of an XML file as the XML parser would: by BOM, else by the encoding its
/// declaration names, else UTF-8.
fn decode_document(bytes: &[u8]) -> Result<String, NodeError> {
    let c = match bytes {
        [0xEF, 0xBB, 0xBF, ..] => Codec::Utf8Sig,
        [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..] => Codec::Utf16,
        [0x3C, 0x00, 0x3F, 0x00, ..] => Codec::Utf16Le,
        [0x00, 0x3C, 0x00, 0x3F, ..] => Codec::Utf16Be,
        _ => {
            let head = &bytes[..bytes.len().min(300)];
            let head = String::from_utf8_lossy(head);
            static DECL: OnceLock<regex::Regex> = OnceLock::new();
            let re = DECL.get_or_init(|| {
                regex::Regex::new(r#"^<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._\- ]+)["']"#)
                    .expect("static regex")
            });
            match re.captures(&head).and_then(|c| c.get(1)) {
                None => Codec::Utf8,
                Some(m) => match codec(m.as_str()) {
                    Some(Codec::Utf16 | Codec::Utf16Le | Codec::Utf16Be) => {
                        return Err(parse_error(format!(
                            "XML parse error: the declaration says encoding '{}' but the file is not \
                             UTF-16 (no byte order mark)",
                            m.as_str()
                        )))
                    }
                    Some(c) => c,
                    None => {
                        return Err(parse_error(format!(
                            "XML parse error: the XML declaration names encoding '{}', which this \
                             robot cannot decode (supported: {SUPPORTED_ENCODINGS})",
                            m.as_str()
                        )))
                    }
                },
            }
        }
    };
    decode(bytes, c).map_err(|e| {
        parse_error(format!(
            "XML parse error: the document is not valid in its encoding: {}",
            e.message
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Nodes.

/// The `xml_string` parameter, falling back to the `_xml_root` variable when empty.
fn xml_input(ctx: &NodeCtx<'_>) -> Result<String, NodeError> {
    let s = ctx.param_str("xml_string");
    if !s.is_empty() {
        return Ok(s);
    }
    match ctx.var(XML_ROOT_VAR) {
        Some(v) if !v.is_null() && !v.py_str().is_empty() => Ok(v.py_str()),
        _ => Err(NodeError::value(
            "no XML available: xml_string is empty and no XML was parsed before (ParseXMLNode or \
             ReadXMLFileNode leave it in _xml_root)",
        )),
    }
}

/// The `xml_string` parameter (required and non-empty), as a shared value.
fn xml_required(ctx: &NodeCtx<'_>) -> Result<Value, NodeError> {
    let v = match ctx.param("xml_string") {
        Value::Str(s) => Value::Str(s),
        Value::Null => Value::str(""),
        other => Value::str(other.py_str()),
    };
    if v.as_str().is_some_and(str::is_empty) {
        return Err(NodeError::value("xml_string is required (it is empty)"));
    }
    Ok(v)
}

fn attrib_dict(el: &Elem) -> Value {
    Value::dict_from(el.attrib.iter().map(|(k, v)| (k.clone(), Value::str(v))))
}

/// `ParseXMLNode`: parse `xml_string`; outputs the root's tag, text and element-child count and
/// leaves the XML text in `_xml_root` for later XML nodes.
fn parse_xml_node(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let xml = xml_required(ctx)?;
    let mut budget = Budget::of(ctx);
    let tree = parse_tree(xml.as_str().unwrap_or(""), &mut budget)?;
    let root = tree.get(0);
    ctx.set_output("root_tag", Value::str(&root.tag));
    ctx.set_output("root_text", Value::str(&root.text));
    ctx.set_output("child_count", Value::Int(root.children.len() as i64));
    ctx.set_output("success", Value::Bool(true));
    ctx.set_var(XML_ROOT_VAR, xml);
    Ok(Flow::Next)
}

/// `XPathQueryNode`: ElementTree `findall(xpath)` on the root; `results` are
/// `{tag, text, attrib, tail}` dicts, `first_text` the first match's text.
fn xpath_query(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.param_str("xpath").trim().to_string();
    if path.is_empty() {
        return Err(NodeError::value("xpath is required (it is empty)"));
    }
    let xml = xml_input(ctx)?;
    let mut budget = Budget::of(ctx);
    let steps = compile(&path)?;
    let tree = parse_tree(&xml, &mut budget)?;
    let found = eval(&tree, 0, &steps, &mut budget)?;
    let results: Vec<Value> = found
        .iter()
        .map(|&e| {
            let el = tree.get(e);
            Value::dict_from([
                ("tag", Value::str(&el.tag)),
                ("text", Value::str(&el.text)),
                ("attrib", attrib_dict(el)),
                ("tail", Value::str(&el.tail)),
            ])
        })
        .collect();
    let first_text = found.first().map_or("", |&e| tree.get(e).text.as_str());
    ctx.set_output("first_text", Value::str(first_text));
    ctx.set_output("count", Value::Int(results.len() as i64));
    ctx.set_output("results", Value::list(results));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

/// Python `safe_int(value, 0)`: `int(value)`, or 0 when that fails.
fn safe_int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::Bool(b) => i64::from(*b),
        Value::Float(f) if f.is_finite() && f.abs() < 9.2e18 => f.trunc() as i64,
        Value::Str(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// `GetXMLElementNode`: the `index`-th (0-based) match of `.//{tag_name}`; `found` false (and
/// empty outputs) when there is none.
fn get_xml_element(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let tag_name = ctx.param_str("tag_name");
    if tag_name.is_empty() {
        return Err(NodeError::value("tag_name is required (it is empty)"));
    }
    let index = safe_int(&ctx.param("index"));
    let xml = xml_input(ctx)?;
    let mut budget = Budget::of(ctx);
    let steps = compile(&format!(".//{tag_name}"))?;
    let tree = parse_tree(&xml, &mut budget)?;
    let found = eval(&tree, 0, &steps, &mut budget)?;
    let hit = usize::try_from(index).ok().and_then(|i| found.get(i));
    match hit {
        Some(&e) => {
            let el = tree.get(e);
            ctx.set_output("tag", Value::str(&el.tag));
            ctx.set_output("text", Value::str(&el.text));
            ctx.set_output("attributes", attrib_dict(el));
            ctx.set_output("child_count", Value::Int(el.children.len() as i64));
            ctx.set_output("found", Value::Bool(true));
        }
        None => {
            ctx.set_output("tag", Value::str(""));
            ctx.set_output("text", Value::str(""));
            ctx.set_output("attributes", Value::dict(Dict::new()));
            ctx.set_output("child_count", Value::Int(0));
            ctx.set_output("found", Value::Bool(false));
        }
    }
    Ok(Flow::Next)
}

/// `GetXMLAttributeNode`: attribute `attribute_name` of the first element matching `xpath`
/// (default `.`, the root); `value` "" and `found` false when absent.
fn get_xml_attribute(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let name = ctx.param_str("attribute_name");
    if name.is_empty() {
        return Err(NodeError::value("attribute_name is required (it is empty)"));
    }
    let mut path = ctx.param_str("xpath").trim().to_string();
    if path.is_empty() {
        path = ".".into();
    }
    let xml = xml_input(ctx)?;
    let mut budget = Budget::of(ctx);
    let steps = compile(&path)?;
    let tree = parse_tree(&xml, &mut budget)?;
    let found = eval(&tree, 0, &steps, &mut budget)?;
    match found.first().and_then(|&e| tree.attr(e, &name)) {
        Some(v) => {
            ctx.set_output("value", Value::str(v));
            ctx.set_output("found", Value::Bool(true));
        }
        None => {
            ctx.set_output("value", Value::str(""));
            ctx.set_output("found", Value::Bool(false));
        }
    }
    Ok(Flow::Next)
}

/// Upstream's `element_to_dict`: attributes under `@attributes`, stripped text under `text_key`
/// (or the bare text for a leaf without attributes), children by tag (repeated tags become lists),
/// `""` for an empty element. Tails are ignored, as upstream.
fn element_to_value(tree: &Tree, e: usize, attrs: bool, text_key: &str) -> Value {
    let el = tree.get(e);
    let mut result = Dict::new();
    if attrs && !el.attrib.is_empty() {
        result.insert("@attributes".into(), attrib_dict(el));
    }
    let text = el.text.trim_matches(|c: char| c.is_whitespace());
    if !text.is_empty() {
        if el.children.is_empty() && result.is_empty() {
            return Value::str(text);
        }
        result.insert(text_key.to_string(), Value::str(text));
    }
    for &c in &el.children {
        let data = element_to_value(tree, c, attrs, text_key);
        let tag = &tree.get(c).tag;
        match result.get_mut(tag) {
            Some(Value::List(items)) => std::sync::Arc::make_mut(items).push(data),
            Some(slot) => {
                let first = std::mem::take(slot);
                *slot = Value::list(vec![first, data]);
            }
            None => {
                result.insert(tag.clone(), data);
            }
        }
    }
    if result.is_empty() {
        Value::str("")
    } else {
        Value::dict(result)
    }
}

/// `XMLToJsonNode`: `{root_tag: element_to_dict(root)}` and its `json.dumps(indent=2,
/// ensure_ascii=False)` text.
fn xml_to_json(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let xml = xml_required(ctx)?;
    let attrs = ctx.param_bool("include_attributes");
    let text_key = ctx.param_str("text_key");
    let mut budget = Budget::of(ctx);
    let tree = parse_tree(xml.as_str().unwrap_or(""), &mut budget)?;
    let data = Value::dict_from([(
        tree.get(0).tag.clone(),
        element_to_value(&tree, 0, attrs, &text_key),
    )]);
    ctx.set_output(
        "json_string",
        Value::str(data.to_py_json(Some(2), false, false)),
    );
    ctx.set_output("json_data", data);
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn is_name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
}

fn is_name_char(c: char) -> bool {
    is_name_start(c) || c.is_ascii_digit() || c == '-' || c == '.' || c.is_numeric()
}

/// Check a tag or attribute name for JsonToXML (`name` or `{uri}name`).
fn check_name(name: &str, what: &str) -> Result<(), NodeError> {
    let local = match name.strip_prefix('{').and_then(|r| r.rsplit_once('}')) {
        Some((uri, local)) if !uri.is_empty() => local,
        _ => name,
    };
    let mut chars = local.chars();
    let ok = chars.next().is_some_and(is_name_start) && chars.all(is_name_char);
    if ok {
        Ok(())
    } else {
        Err(NodeError::value(format!(
            "{what} '{name}' is not a valid XML name (names start with a letter or '_' and hold \
             letters, digits, '-', '_' and '.'; use '{{uri}}name' for a namespace)"
        )))
    }
}

fn check_chars(text: &str) -> Result<(), NodeError> {
    match text.chars().find(|&c| {
        ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r'))
            || c == '\u{FFFE}'
            || c == '\u{FFFF}'
    }) {
        Some(c) => Err(NodeError::value(format!(
            "the value {} holds the character U+{:04X}, which XML cannot represent",
            Value::str(snippet(text)).py_repr(),
            c as u32
        ))),
        None => Ok(()),
    }
}

/// Upstream's `dict_to_xml`.
fn value_to_xml(tree: &mut Tree, data: &Value, parent: usize) -> Result<(), NodeError> {
    match data {
        Value::Dict(d) => {
            for (key, value) in d.iter() {
                if key == "@attributes" {
                    let Value::Dict(attrs) = value else {
                        return Err(NodeError::type_error(format!(
                            "'@attributes' must be a dict of attribute names to values, got {}",
                            value.type_name()
                        )));
                    };
                    for (k, v) in attrs.iter() {
                        check_name(k, "attribute name")?;
                        let text = v.py_str();
                        check_chars(&text)?;
                        tree.set_attr(parent, k.clone(), text);
                    }
                } else if key == "#text" {
                    let text = value.py_str();
                    check_chars(&text)?;
                    tree.elems[parent].text = text;
                } else if let Value::List(items) = value {
                    check_name(key, "key")?;
                    for item in items.iter() {
                        let child = tree.add(Some(parent), key.clone());
                        value_to_xml(tree, item, child)?;
                    }
                } else {
                    check_name(key, "key")?;
                    let child = tree.add(Some(parent), key.clone());
                    value_to_xml(tree, value, child)?;
                }
            }
        }
        Value::List(items) => {
            for item in items.iter() {
                let child = tree.add(Some(parent), "item".into());
                value_to_xml(tree, item, child)?;
            }
        }
        Value::Null => tree.elems[parent].text = String::new(),
        other => {
            let text = other.py_str();
            check_chars(&text)?;
            tree.elems[parent].text = text;
        }
    }
    Ok(())
}

/// `JsonToXMLNode`: the inverse of XMLToJson under `root_tag` (`@attributes`, `#text`, lists as
/// repeated elements, top-level lists as `<item>`s); JSON text is parsed first. With
/// `pretty_print` the result is minidom's pretty XML (with its declaration) without blank lines.
fn json_to_xml(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let mut data = ctx.require("json_data")?;
    if let Value::Str(s) = &data {
        data = Value::parse_json(s).map_err(|e| {
            NodeError::new(
                "JSONDecodeError",
                format!("json_data is text but not valid JSON: {e}"),
            )
        })?;
    }
    let root_tag = ctx.param_str("root_tag");
    check_name(&root_tag, "root_tag")?;
    let pretty = ctx.param_bool("pretty_print");
    let mut budget = Budget::of(ctx);
    let mut tree = Tree::default();
    let root = tree.add(None, root_tag);
    value_to_xml(&mut tree, &data, root)?;
    let mut xml = et_tostring(&tree);
    if pretty {
        if let Ok(p) = minidom_pretty(&xml, &mut budget) {
            xml = p
                .split('\n')
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    if xml.len() > 100 * 1024 * 1024 {
        return Err(NodeError::value(
            "the XML result would exceed 100 MB; refusing",
        ));
    }
    ctx.set_output("xml_string", Value::str(xml));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> NodeError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => "FileNotFoundError",
        std::io::ErrorKind::PermissionDenied => "PermissionError",
        _ => "OSError",
    };
    NodeError::new(kind, format!("{what} '{}': {e}", path.display()))
}

/// `ReadXMLFileNode`: read `file_path` (decoded with `encoding`, universal newlines) as
/// `xml_string`, parse the file (by its own declared encoding) for `root_tag`, and leave the text
/// in `_xml_root`.
fn read_xml_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let enc = codec_param(&ctx.param_str("encoding"))?;
    let meta = std::fs::metadata(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            NodeError::new(
                "FileNotFoundError",
                format!("XML file not found: '{}'", path.display()),
            )
        } else {
            io_error("cannot read XML file", &path, &e)
        }
    })?;
    if meta.is_dir() {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!("'{}' is a directory, not an XML file", path.display()),
        ));
    }
    if meta.len() > MAX_XML_BYTES as u64 {
        return Err(NodeError::value(format!(
            "XML file '{}' is {} bytes; the limit is {MAX_XML_BYTES} bytes (50 MB)",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| io_error("cannot read XML file", &path, &e))?;
    let text = decode(&bytes, enc).map_err(|e| {
        NodeError::new(
            e.kind,
            format!(
                "{} (reading '{}'; set encoding to the file's encoding)",
                e.message,
                path.display()
            ),
        )
    })?;
    let text = universal_newlines(text);
    let document = decode_document(&bytes)?;
    let mut budget = Budget::of(ctx);
    let tree = parse_tree(&document, &mut budget).map_err(|e| {
        NodeError::new(e.kind, format!("{} (file '{}')", e.message, path.display()))
    })?;
    let text = Value::str(text);
    ctx.set_output("root_tag", Value::str(&tree.get(0).tag));
    ctx.set_output("xml_string", text.clone());
    ctx.set_output("success", Value::Bool(true));
    ctx.set_var(XML_ROOT_VAR, text);
    Ok(Flow::Next)
}

/// `WriteXMLFileNode`: write `xml_string` to `file_path` (parents created), pretty printed as
/// minidom does when `pretty_print` (kept as given when it does not parse), with an XML declaration
/// when `xml_declaration` and the text has none, encoded with `encoding`.
fn write_xml_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let path = ctx.path_param("file_path")?;
    let xml = xml_required(ctx)?;
    let mut xml = xml.as_str().unwrap_or("").to_string();
    if xml.len() > MAX_XML_BYTES {
        return Err(NodeError::value(format!(
            "xml_string is {} bytes; the limit is {MAX_XML_BYTES} bytes (50 MB)",
            xml.len()
        )));
    }
    let enc_name = ctx.param_str("encoding");
    let enc = codec_param(&enc_name)?;
    let pretty = ctx.param_bool("pretty_print");
    let declaration = ctx.param_bool("xml_declaration");
    if pretty {
        let mut budget = Budget::of(ctx);
        match minidom_pretty(&xml, &mut budget) {
            Ok(p) => {
                xml = if matches!(enc, Codec::Utf8) {
                    p
                } else {
                    p.replacen(
                        "<?xml version=\"1.0\" ?>",
                        &format!("<?xml version=\"1.0\" encoding=\"{enc_name}\"?>"),
                        1,
                    )
                };
            }
            Err(e) if e.is_cancelled() || e.kind == "TimeoutError" => return Err(e),
            Err(e) => ctx.log(
                log::Level::Warn,
                format!(
                    "pretty_print skipped, writing the XML as given: {}",
                    e.message
                ),
            ),
        }
    }
    if declaration && !xml.starts_with("<?xml") {
        xml = format!("<?xml version=\"1.0\" encoding=\"{enc_name}\"?>\n{xml}");
    }
    let bytes = encode(&xml, enc)?;
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error("cannot create the folder", parent, &e))?;
        }
    }
    if path.is_dir() {
        return Err(NodeError::new(
            "IsADirectoryError",
            format!("'{}' is a directory, not a file", path.display()),
        ));
    }
    std::fs::write(&path, bytes).map_err(|e| io_error("cannot write XML file", &path, &e))?;
    ctx.set_output("file_path", Value::str(path.display().to_string()));
    ctx.set_output("success", Value::Bool(true));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::runner::{self, RunOptions};
    use crate::engine::{load_str, CancelToken};
    use crate::nodes::testing::{chain, run_chain, run_node, v, Ran, Recorder};
    use serde_json::json;

    fn tree(xml: &str) -> Tree {
        parse_tree(xml, &mut Budget::unlimited()).unwrap()
    }

    fn names(t: &Tree, found: &[usize]) -> Vec<String> {
        found
            .iter()
            .map(|&e| match t.attr(e, "id") {
                Some(id) => format!("{}#{id}", t.get(e).tag),
                None => t.get(e).tag.clone(),
            })
            .collect()
    }

    const LIB: &str = r#"<lib xmlns:b="urn:b"><shelf id="s1"><book id="1" lang="en"><title>A</title><year>2001</year></book><book id="2"><title>B<i>x</i>y</title></book><b:book id="3">ns</b:book></shelf><shelf id="s2"><book id="4" lang="fr"><title>C</title></book><!-- c --><dvd id="5">D</dvd>tail5<book id="6"><title>A</title></book></shelf></lib>"#;

    /// Expected selections computed with CPython 3.11's `Element.findall` on the same document.
    #[test]
    fn paths_select_what_elementtree_selects() {
        let t = tree(LIB);
        let cases: &[(&str, &[&str])] = &[
            ("book", &[]),
            ("shelf", &["shelf#s1", "shelf#s2"]),
            ("*", &["shelf#s1", "shelf#s2"]),
            (".", &["lib"]),
            ("./shelf/book", &["book#1", "book#2", "book#4", "book#6"]),
            (".//book", &["book#1", "book#2", "book#4", "book#6"]),
            (".//title", &["title", "title", "title", "title"]),
            ("shelf/book/title", &["title", "title", "title", "title"]),
            (".//book/..", &["shelf#s1", "shelf#s2"]),
            (".//title/../..", &["shelf#s1", "shelf#s2"]),
            ("..", &[]),
            (".//book[@lang]", &["book#1", "book#4"]),
            (".//book[@lang='fr']", &["book#4"]),
            (".//book[@lang!='fr']", &["book#1"]),
            (".//book[@id=\"6\"]", &["book#6"]),
            (".//book[title]", &["book#1", "book#2", "book#4", "book#6"]),
            (".//book[title='A']", &["book#1", "book#6"]),
            (".//book[title!='A']", &["book#2", "book#4"]),
            (".//title[.='Bxy']", &["title"]),
            (".//title[.!='A']", &["title", "title"]),
            ("shelf[1]", &["shelf#s1"]),
            ("shelf[2]/book[1]", &["book#4"]),
            ("shelf/book[last()]", &["book#2", "book#6"]),
            ("shelf/book[last()-1]", &["book#1", "book#4"]),
            (".//book[2]", &["book#2", "book#6"]),
            (".//{urn:b}book", &["{urn:b}book#3"]),
            (
                ".//{*}book",
                &["book#1", "book#2", "{urn:b}book#3", "book#4", "book#6"],
            ),
            ("shelf/{urn:b}*", &["{urn:b}book#3"]),
            (
                "shelf/{}*",
                &["book#1", "book#2", "book#4", "dvd#5", "book#6"],
            ),
            (
                ".//*",
                &[
                    "shelf#s1",
                    "book#1",
                    "title",
                    "year",
                    "book#2",
                    "title",
                    "i",
                    "{urn:b}book#3",
                    "shelf#s2",
                    "book#4",
                    "title",
                    "dvd#5",
                    "book#6",
                    "title",
                ],
            ),
            (
                "shelf/",
                &[
                    "book#1",
                    "book#2",
                    "{urn:b}book#3",
                    "book#4",
                    "dvd#5",
                    "book#6",
                ],
            ),
            (".//shelf//title", &["title", "title", "title", "title"]),
            (".//book[@lang][title='C']", &["book#4"]),
            (
                "shelf/*[@id]",
                &[
                    "book#1",
                    "book#2",
                    "{urn:b}book#3",
                    "book#4",
                    "dvd#5",
                    "book#6",
                ],
            ),
            (".//i/..", &["title"]),
            ("shelf[@id='s2']/dvd", &["dvd#5"]),
            (".//nothing", &[]),
            (
                "./*/*",
                &[
                    "book#1",
                    "book#2",
                    "{urn:b}book#3",
                    "book#4",
                    "dvd#5",
                    "book#6",
                ],
            ),
            (".//{}book", &["book#1", "book#2", "book#4", "book#6"]),
            ("x:book", &[]),
            ("a//", &[]),
            (".//book[ @id = '4' ]", &["book#4"]),
        ];
        for (path, want) in cases {
            let got = findall(&t, 0, path, &mut Budget::unlimited())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(names(&t, &got), *want, "path {path}");
        }
    }

    #[test]
    fn bad_paths_are_errors_that_say_why() {
        let t = tree(LIB);
        let cases: &[(&str, &str)] = &[
            ("//book", "cannot use absolute path on element (ElementTree paths are relative to the root element: use './/book'"),
            ("/lib", "cannot use absolute path on element"),
            (".//book[0]", "XPath position >= 1 expected"),
            (".//book[-1]", "XPath position >= 1 expected"),
            (".//book[foo()]", "unsupported function 'foo()'"),
            (".//book[last()-0]", "XPath offset from last() must be negative"),
            (".//[", "invalid descendant ('[' after '//')"),
            ("@id", "unexpected '@'"),
            (".//book[@id=1]", "invalid predicate"),
            (".//book[@", "invalid path (unclosed '[')"),
            (".//x:book", "prefix 'x' not found in prefix map"),
        ];
        for (path, want) in cases {
            let err = findall(&t, 0, path, &mut Budget::unlimited()).unwrap_err();
            assert_eq!(err.kind, "SyntaxError", "{path}");
            assert!(
                err.message
                    .starts_with(&format!("invalid ElementTree path '{path}': {want}")),
                "{path}: {}",
                err.message
            );
        }
    }

    #[test]
    fn tree_has_elementtree_shape() {
        let t = tree("<a xmlns='urn:d' xmlns:p='urn:p' p:k='1' k='2'>x<!-- c -->y<b>in</b>tail<?pi d?>more<![CDATA[<c>]]>&amp;</a>");
        let root = t.get(0);
        assert_eq!(root.tag, "{urn:d}a");
        assert_eq!(
            root.attrib,
            [
                ("{urn:p}k".to_string(), "1".to_string()),
                ("k".into(), "2".into())
            ]
        );
        assert_eq!(root.text, "xy");
        let b = t.get(root.children[0]);
        assert_eq!((b.tag.as_str(), b.text.as_str()), ("{urn:d}b", "in"));
        assert_eq!(b.tail, "tailmore<c>&");
        assert_eq!(t.text_of(0), "xyintailmore<c>&");
    }

    #[test]
    fn parse_errors_name_line_and_column() {
        let ran = run_node(
            "ParseXMLNode",
            json!({"xml_string": "<root>\n  <item>Test</root>"}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (ParseXMLNode): XML parse error: expected 'item' tag, not 'root': line 2, column 13 (input starts with '<root>\\n  <item>Test</root>')"
        );
        let ran = run_node("ParseXMLNode", json!({"xml_string": "not xml"}), json!({}));
        assert!(
            ran.error().contains(": line 1, column 1"),
            "{}",
            ran.error()
        );
        let ran = run_node(
            "ParseXMLNode",
            json!({"xml_string": "<a>&nbsp;</a>"}),
            json!({}),
        );
        assert!(
            ran.error().contains("unknown entity reference 'nbsp'")
                && ran.error().contains("line 1, column 4"),
            "{}",
            ran.error()
        );
        let ran = run_node("ParseXMLNode", json!({"xml_string": ""}), json!({}));
        assert_eq!(
            ran.error(),
            "n (ParseXMLNode): xml_string is required (it is empty)"
        );
    }

    const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"#;

    fn xxe(target: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?>\n<!DOCTYPE r [ <!ENTITY xxe SYSTEM \"file://{target}\"> ]>\n<r>&xxe;</r>"
        )
    }

    #[test]
    fn billion_laughs_and_xxe_are_refused_with_a_clear_message() {
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "TOP SECRET").unwrap();
        let attacks = [
            BILLION_LAUGHS.to_string(),
            xxe(&secret.path().display().to_string()),
        ];
        for (doc, name) in attacks.iter().zip(["lol", "xxe"]) {
            for ty in ["ParseXMLNode", "XMLToJsonNode"] {
                let ran = run_node(ty, json!({"xml_string": doc}), json!({}));
                assert_eq!(
                    ran.error(),
                    format!("n ({ty}): XML parse error: the document declares the entity '{name}' in its DOCTYPE; entity declarations are refused (they enable entity-expansion 'billion laughs' and external entity (XXE) attacks), as upstream's defusedxml refuses them")
                );
            }
            let ran = run_node(
                "XPathQueryNode",
                json!({"xml_string": doc, "xpath": "."}),
                json!({}),
            );
            assert!(ran.error().contains("entity declarations are refused"));
        }
        // Parameter entities and declarations after comments/PIs are found too; commented-out
        // declarations are not declarations.
        let sneaky = "<?xml version='1.0'?><!-- x --><?p q?><!DOCTYPE r [<!-- ]> --><!ENTITY % p SYSTEM 'http://x/'> %p;]><r/>";
        assert_eq!(declared_entity(sneaky).as_deref(), Some("p"));
        let harmless = "<!DOCTYPE r [<!-- <!ENTITY x 'y'> --><!ELEMENT r ANY><!ATTLIST r a CDATA '<!ENTITY'>]><r/>";
        assert_eq!(declared_entity(harmless), None);
        assert_eq!(tree(harmless).get(0).tag, "r");
        assert_eq!(
            tree("<!DOCTYPE html SYSTEM 'http://example.invalid/x.dtd'><html/>")
                .get(0)
                .tag,
            "html"
        );
    }

    /// The second line of defence: roxmltree alone (with DTDs allowed) stops entity expansion and
    /// never reads external entities.
    #[test]
    fn roxmltree_itself_limits_expansion_and_ignores_external_entities() {
        let opts = || roxmltree::ParsingOptions {
            allow_dtd: true,
            ..roxmltree::ParsingOptions::default()
        };
        let t0 = Instant::now();
        let err = roxmltree::Document::parse_with_options(BILLION_LAUGHS, opts()).unwrap_err();
        assert!(
            matches!(err, roxmltree::Error::EntityReferenceLoop(_)),
            "{err}"
        );
        assert!(t0.elapsed() < std::time::Duration::from_secs(2));
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "TOP SECRET").unwrap();
        let doc = xxe(&secret.path().display().to_string());
        match roxmltree::Document::parse_with_options(&doc, opts()) {
            Ok(d) => assert!(!d.root_element().text().unwrap_or("").contains("SECRET")),
            Err(e) => assert!(!e.to_string().contains("SECRET")),
        }
        // Without DTDs (roxmltree's default) both are refused outright.
        assert!(matches!(
            roxmltree::Document::parse(BILLION_LAUGHS),
            Err(roxmltree::Error::DtdDetected)
        ));
    }

    #[test]
    fn size_nesting_and_node_limits() {
        let big = format!("<a>{}</a>", "x".repeat(MAX_XML_BYTES));
        let err = parse_doc(&big).unwrap_err();
        assert_eq!(
            err.message,
            format!(
                "the XML is {} bytes; the limit is 52428800 bytes (50 MB)",
                big.len()
            )
        );
        let deep = format!("{}{}", "<a>".repeat(300), "</a>".repeat(300));
        let err = parse_tree(&deep, &mut Budget::unlimited()).unwrap_err();
        assert!(
            err.message.contains("nested deeper than 256 levels"),
            "{}",
            err.message
        );
        let ok = format!("{}{}", "<a>".repeat(256), "</a>".repeat(256));
        assert_eq!(tree(&ok).elems.len(), 256);
    }

    #[test]
    fn cancelled_and_late_work_stops() {
        let many = format!("<r>{}</r>", "<i/>".repeat(20_000));
        let t = tree(&many);
        let mut b = Budget::unlimited();
        b.cancel.cancel("stop");
        let err = findall(&t, 0, ".//i", &mut b).unwrap_err();
        assert!(err.is_cancelled());
        let mut b = Budget::unlimited();
        b.deadline = Instant::now();
        let err = findall(&t, 0, ".//i", &mut b).unwrap_err();
        assert_eq!(err.kind, "TimeoutError");
    }

    #[test]
    fn parse_xml_outputs_and_leaves_xml_root() {
        let xml = "<root>hi<a/><b/>t</root>";
        let ran = run_node("ParseXMLNode", json!({"xml_string": xml}), json!({}));
        assert_eq!(ran.error(), "");
        assert_eq!(ran.out("n", "root_tag"), Value::str("root"));
        assert_eq!(ran.out("n", "root_text"), Value::str("hi"));
        assert_eq!(ran.out("n", "child_count").py_repr(), "2");
        assert_eq!(ran.out("n", "success"), Value::Bool(true));
        assert_eq!(ran.var("_xml_root"), Value::str(xml));
        assert!(!ran.outcome.outputs().contains_key("_xml_root"));
    }

    #[test]
    fn xpath_query_results() {
        let xml = r#"<root><item id="1">Test</item> after<item id="2"/><x:y xmlns:x="u" x:a="b">z</x:y></root>"#;
        let ran = run_node(
            "XPathQueryNode",
            json!({"xml_string": xml, "xpath": ".//item"}),
            json!({}),
        );
        assert_eq!(
            serde_json::to_string(&ran.out("n", "results")).unwrap(),
            r#"[{"tag":"item","text":"Test","attrib":{"id":"1"},"tail":" after"},{"tag":"item","text":"","attrib":{"id":"2"},"tail":""}]"#
        );
        assert_eq!(ran.out("n", "count").py_repr(), "2");
        assert_eq!(ran.out("n", "first_text"), Value::str("Test"));
        let ran = run_node(
            "XPathQueryNode",
            json!({"xml_string": xml, "xpath": "{u}y"}),
            json!({}),
        );
        assert_eq!(
            ran.out("n", "results").py_repr(),
            "[{'tag': '{u}y', 'text': 'z', 'attrib': {'{u}a': 'b'}, 'tail': ''}]"
        );
        let ran = run_node(
            "XPathQueryNode",
            json!({"xml_string": xml, "xpath": "nothing"}),
            json!({}),
        );
        assert_eq!(ran.out("n", "results").py_repr(), "[]");
        assert_eq!(ran.out("n", "count").py_repr(), "0");
        assert_eq!(ran.out("n", "first_text"), Value::str(""));
        let ran = run_node(
            "XPathQueryNode",
            json!({"xml_string": xml, "xpath": "//item"}),
            json!({}),
        );
        assert_eq!(ran.error(), "n (XPathQueryNode): invalid ElementTree path '//item': cannot use absolute path on element (ElementTree paths are relative to the root element: use './/item' to search all descendants, or '.' for the root)");
    }

    #[test]
    fn query_nodes_fall_back_to_the_last_parsed_xml() {
        let ran = run_chain(&[
            (
                "p",
                "ParseXMLNode",
                json!({"xml_string": "<r><i k='v'>1</i><i>2</i></r>"}),
            ),
            ("q", "XPathQueryNode", json!({"xpath": "i"})),
            (
                "e",
                "GetXMLElementNode",
                json!({"tag_name": "i", "index": 1}),
            ),
            (
                "a",
                "GetXMLAttributeNode",
                json!({"xpath": "i", "attribute_name": "k"}),
            ),
        ]);
        assert_eq!(ran.error(), "");
        assert_eq!(ran.out("q", "count").py_repr(), "2");
        assert_eq!(ran.out("e", "text"), Value::str("2"));
        assert_eq!(ran.out("a", "value"), Value::str("v"));
        let ran = run_node("XPathQueryNode", json!({"xpath": "i"}), json!({}));
        assert_eq!(ran.error(), "n (XPathQueryNode): no XML available: xml_string is empty and no XML was parsed before (ParseXMLNode or ReadXMLFileNode leave it in _xml_root)");
        let err = load_str(&chain(&[(
            "q",
            "XPathQueryNode",
            json!({"query": "//item"}),
        )]))
        .unwrap_err();
        assert_eq!(
            err.problems[0].to_string(),
            "q (XPathQueryNode): required input \"xpath\" has no value (set config \"xpath\" or connect a data edge); config has keys this node does not read: query"
        );
    }

    #[test]
    fn get_xml_element() {
        let xml = r#"<r><i id="1" k="a">one<c/><c/></i><g><i id="2">two</i></g></r>"#;
        let cases = [
            (json!(0), r#"["i","one",{"id":"1","k":"a"},2,true]"#),
            (json!(1), r#"["i","two",{"id":"2"},0,true]"#),
            (json!("1"), r#"["i","two",{"id":"2"},0,true]"#),
            (json!(1.7), r#"["i","two",{"id":"2"},0,true]"#),
            (json!("x"), r#"["i","one",{"id":"1","k":"a"},2,true]"#),
            (json!(2), r#"["","",{},0,false]"#),
            (json!(-1), r#"["","",{},0,false]"#),
        ];
        for (index, want) in cases {
            let ran = run_node(
                "GetXMLElementNode",
                json!({"xml_string": xml, "tag_name": "i", "index": index}),
                json!({}),
            );
            let got: Vec<Value> = ["tag", "text", "attributes", "child_count", "found"]
                .iter()
                .map(|p| ran.out("n", p))
                .collect();
            assert_eq!(serde_json::to_string(&got).unwrap(), want, "index {index}");
        }
        // tag_name is spliced into `.//{tag_name}`, so predicates work, as upstream.
        let ran = run_node(
            "GetXMLElementNode",
            json!({"xml_string": xml, "tag_name": "i[@id='2']"}),
            json!({}),
        );
        assert_eq!(ran.out("n", "text"), Value::str("two"));
    }

    #[test]
    fn get_xml_attribute() {
        let xml = r#"<r v="root"><i id="1"/><i id="2" x="y"/></r>"#;
        let cases = [
            (json!({"attribute_name": "v"}), "root", true),
            (json!({"attribute_name": "v", "xpath": ""}), "root", true),
            (json!({"attribute_name": "id", "xpath": ".//i"}), "1", true),
            (json!({"attribute_name": "x", "xpath": "i[2]"}), "y", true),
            (json!({"attribute_name": "x", "xpath": "i"}), "", false),
            (json!({"attribute_name": "id", "xpath": "nope"}), "", false),
        ];
        for (mut config, value, found) in cases {
            config["xml_string"] = json!(xml);
            let ran = run_node("GetXMLAttributeNode", config.clone(), json!({}));
            assert_eq!(ran.out("n", "value"), Value::str(value), "{config}");
            assert_eq!(ran.out("n", "found"), Value::Bool(found), "{config}");
        }
    }

    /// Expected JSON text computed with upstream's `element_to_dict` + `json.dumps(indent=2)`.
    #[test]
    fn xml_to_json_matches_upstream() {
        let cases = [
            (
                r#"<root><item id="1">Test</item></root>"#,
                json!({}),
                "{\n  \"root\": {\n    \"item\": {\n      \"@attributes\": {\n        \"id\": \"1\"\n      },\n      \"#text\": \"Test\"\n    }\n  }\n}",
            ),
            (
                r#"<a x="1"><b>t</b><b>u</b><c/><d k="v"/><e>  </e>mixed<f>1<g/>2</f></a>"#,
                json!({}),
                "{\n  \"a\": {\n    \"@attributes\": {\n      \"x\": \"1\"\n    },\n    \"b\": [\n      \"t\",\n      \"u\"\n    ],\n    \"c\": \"\",\n    \"d\": {\n      \"@attributes\": {\n        \"k\": \"v\"\n      }\n    },\n    \"e\": \"\",\n    \"f\": {\n      \"#text\": \"1\",\n      \"g\": \"\"\n    }\n  }\n}",
            ),
            (
                r#"<a x="1"><b>t</b><b>u</b><c/><d k="v"/><e>  </e>mixed<f>1<g/>2</f></a>"#,
                json!({"include_attributes": false, "text_key": "_t"}),
                "{\n  \"a\": {\n    \"b\": [\n      \"t\",\n      \"u\"\n    ],\n    \"c\": \"\",\n    \"d\": \"\",\n    \"e\": \"\",\n    \"f\": {\n      \"_t\": \"1\",\n      \"g\": \"\"\n    }\n  }\n}",
            ),
            (
                r#"<r xmlns="urn:d" xmlns:p="urn:p"><p:x p:a="1">v</p:x><y/></r>"#,
                json!({}),
                "{\n  \"{urn:d}r\": {\n    \"{urn:p}x\": {\n      \"@attributes\": {\n        \"{urn:p}a\": \"1\"\n      },\n      \"#text\": \"v\"\n    },\n    \"{urn:d}y\": \"\"\n  }\n}",
            ),
            (
                "<r>  text  <k>v</k></r>",
                json!({}),
                "{\n  \"r\": {\n    \"#text\": \"text\",\n    \"k\": \"v\"\n  }\n}",
            ),
            ("<r>é ✓</r>", json!({}), "{\n  \"r\": \"é ✓\"\n}"),
        ];
        for (xml, mut config, want) in cases {
            config["xml_string"] = json!(xml);
            let ran = run_node("XMLToJsonNode", config, json!({}));
            assert_eq!(ran.error(), "");
            assert_eq!(ran.out("n", "json_string"), Value::str(want), "{xml}");
            let data = Value::parse_json(want).unwrap();
            assert_eq!(ran.out("n", "json_data"), data);
        }
    }

    /// Expected XML computed with upstream's `dict_to_xml` + `ET.tostring` (+ minidom).
    #[test]
    fn json_to_xml_matches_upstream() {
        let cases = [
            (
                r##"{"root": {"item": {"@attributes": {"id": "1"}, "#text": "Test"}}}"##,
                "<?xml version=\"1.0\" ?>\n<root>\n  <root>\n    <item id=\"1\">Test</item>\n  </root>\n</root>",
                "<doc><root><item id=\"1\">Test</item></root></doc>",
            ),
            (
                r##"{"a": [1, 2.5, true, null, "x<&>\"y"], "b": {"c": {}}, "d": [], "e": [[1, 2], {"f": 3}], "@attributes": {"k": "a\"b\n"}, "#text": "t"}"##,
                "<?xml version=\"1.0\" ?>\n<root k=\"a&quot;b\n\">\n  t\n  <a>1</a>\n  <a>2.5</a>\n  <a>True</a>\n  <a/>\n  <a>x&lt;&amp;&gt;&quot;y</a>\n  <b>\n    <c/>\n  </b>\n  <e>\n    <item>1</item>\n    <item>2</item>\n  </e>\n  <e>\n    <f>3</f>\n  </e>\n</root>",
                "<doc k=\"a&quot;b&#10;\">t<a>1</a><a>2.5</a><a>True</a><a /><a>x&lt;&amp;&gt;\"y</a><b><c /></b><e><item>1</item><item>2</item></e><e><f>3</f></e></doc>",
            ),
            (
                r#"[1, {"x": "y"}]"#,
                "<?xml version=\"1.0\" ?>\n<root>\n  <item>1</item>\n  <item>\n    <x>y</x>\n  </item>\n</root>",
                "<doc><item>1</item><item><x>y</x></item></doc>",
            ),
            (
                r#""scalar""#,
                "<?xml version=\"1.0\" ?>\n<root>scalar</root>",
                "<doc>scalar</doc>",
            ),
            (
                r#"{"{urn:a}x": {"@attributes": {"{urn:b}y": "1", "{http://www.w3.org/XML/1998/namespace}lang": "en"}, "{urn:a}z": "v"}}"#,
                "<?xml version=\"1.0\" ?>\n<root xmlns:ns0=\"urn:a\" xmlns:ns1=\"urn:b\">\n  <ns0:x ns1:y=\"1\" xml:lang=\"en\">\n    <ns0:z>v</ns0:z>\n  </ns0:x>\n</root>",
                "<doc xmlns:ns0=\"urn:a\" xmlns:ns1=\"urn:b\"><ns0:x ns1:y=\"1\" xml:lang=\"en\"><ns0:z>v</ns0:z></ns0:x></doc>",
            ),
            (
                r#"{"t": "line1\n\nline3"}"#,
                "<?xml version=\"1.0\" ?>\n<root>\n  <t>line1\nline3</t>\n</root>",
                "<doc><t>line1\n\nline3</t></doc>",
            ),
        ];
        for (data, pretty, raw) in cases {
            // As JSON text and as a value.
            for json_data in [json!(data), serde_json::from_str(data).unwrap()] {
                if json_data.is_string() && json_data.as_str() == Some("scalar") {
                    continue;
                }
                let ran = run_node("JsonToXMLNode", json!({"json_data": json_data}), json!({}));
                assert_eq!(ran.out("n", "xml_string"), Value::str(pretty), "{data}");
                let ran = run_node(
                    "JsonToXMLNode",
                    json!({"json_data": json_data, "root_tag": "doc", "pretty_print": false}),
                    json!({}),
                );
                assert_eq!(ran.out("n", "xml_string"), Value::str(raw), "{data}");
            }
        }
    }

    #[test]
    fn json_to_xml_refuses_what_would_be_broken_xml() {
        let cases = [
            (json!({"json_data": {"a b": 1}}), "n (JsonToXMLNode): key 'a b' is not a valid XML name (names start with a letter or '_' and hold letters, digits, '-', '_' and '.'; use '{uri}name' for a namespace)"),
            (json!({"json_data": {"1x": 1}}), "n (JsonToXMLNode): key '1x' is not a valid XML name"),
            (json!({"json_data": {"p:x": 1}}), "n (JsonToXMLNode): key 'p:x' is not a valid XML name"),
            (json!({"json_data": {"a": 1}, "root_tag": ""}), "n (JsonToXMLNode): root_tag '' is not a valid XML name"),
            (json!({"json_data": {"@attributes": {"a=b": 1}}}), "n (JsonToXMLNode): attribute name 'a=b' is not a valid XML name"),
            (json!({"json_data": {"@attributes": "x"}}), "n (JsonToXMLNode): '@attributes' must be a dict of attribute names to values, got str"),
            (json!({"json_data": {"a": "bell\u{7}"}}), "n (JsonToXMLNode): the value 'bell\\x07' holds the character U+0007, which XML cannot represent"),
            (json!({"json_data": "{not json"}), "n (JsonToXMLNode): json_data is text but not valid JSON: key must be a string at line 1 column 2"),
        ];
        for (config, want) in cases {
            let ran = run_node("JsonToXMLNode", config.clone(), json!({}));
            assert!(ran.error().starts_with(want), "{config}: {}", ran.error());
        }
    }

    #[test]
    fn xml_json_round_trip() {
        let xml = r#"<order id="7"><line sku="a">2</line><line sku="b">1</line><note>rush</note></order>"#;
        let ran = run_chain(&[
            ("x", "XMLToJsonNode", json!({"xml_string": xml})),
            (
                "j",
                "JsonToXMLNode",
                json!({"json_data": "{{x.json_data.order}}", "root_tag": "order", "pretty_print": false}),
            ),
            (
                "y",
                "XMLToJsonNode",
                json!({"xml_string": "{{j.xml_string}}"}),
            ),
        ]);
        assert_eq!(ran.error(), "");
        assert_eq!(ran.out("j", "xml_string"), Value::str(xml));
        assert_eq!(ran.out("y", "json_data"), ran.out("x", "json_data"));
    }

    /// Expected text computed with minidom's `toprettyxml(indent="  ")` (CPython 3.11).
    #[test]
    fn pretty_printing_matches_minidom() {
        let cases = [
            (
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><!-- top --><r a=\"1\" xmlns:q=\"urn:q\" b=\"x&amp;y&#10;z\"><q:c>t</q:c><?pi some data?><d/>tail<e><!--in--></e><f>a&lt;b</f></r>",
                "<?xml version=\"1.0\" ?>\n<!-- top -->\n<r xmlns:q=\"urn:q\" a=\"1\" b=\"x&amp;y\nz\">\n  <q:c>t</q:c>\n  <?pi some data?>\n  <d/>\n  tail\n  <e>\n    <!--in-->\n  </e>\n  <f>a&lt;b</f>\n</r>\n",
            ),
            (
                "<r>\n  <a>1</a>\n</r>",
                "<?xml version=\"1.0\" ?>\n<r>\n  \n  \n  <a>1</a>\n  \n\n</r>\n",
            ),
            (
                "<!DOCTYPE r [<!ELEMENT r ANY>]><r k='a\tb'>\"</r>",
                "<?xml version=\"1.0\" ?>\n<!DOCTYPE r [<!ELEMENT r ANY>]>\n<r k=\"a b\">&quot;</r>\n",
            ),
        ];
        for (xml, want) in cases {
            assert_eq!(minidom_pretty(xml, &mut Budget::unlimited()).unwrap(), want);
        }
    }

    #[test]
    fn encodings() {
        assert_eq!(decode(b"caf\xe9", Codec::Latin1).unwrap(), "café");
        assert_eq!(decode(b"\x80 \x93x\x94", Codec::Cp1252).unwrap(), "€ “x”");
        assert_eq!(
            decode(b"a\x81", Codec::Cp1252).unwrap_err().message,
            "'charmap' codec can't decode byte 0x81 in position 1: character maps to <undefined>"
        );
        assert_eq!(
            decode(b"caf\xe9!", Codec::Utf8).unwrap_err().message,
            "'utf-8' codec can't decode byte 0xe9 in position 3: invalid continuation byte"
        );
        assert_eq!(
            decode(b"\xff", Codec::Utf8).unwrap_err().message,
            "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
        );
        assert_eq!(decode(b"\xff\xfea\x00", Codec::Utf16).unwrap(), "a");
        assert_eq!(decode(b"\xfe\xff\x00a", Codec::Utf16).unwrap(), "a");
        assert_eq!(
            decode(b"\x3d\xd8\x00\xde\x00\xd8a\x00", Codec::Utf16Le)
                .unwrap_err()
                .message,
            "'utf-16-le' codec can't decode byte 0x00 in position 4: illegal UTF-16 surrogate"
        );
        assert_eq!(encode("é€", Codec::Cp1252).unwrap(), b"\xe9\x80");
        assert_eq!(
            encode("a€", Codec::Latin1).unwrap_err().message,
            "'latin-1' codec can't encode character '\\u20ac' in position 1: ordinal not in range(256)"
        );
        assert_eq!(encode("a", Codec::Utf16).unwrap(), b"\xff\xfea\x00");
        assert_eq!(codec("UTF_8"), Some(Codec::Utf8));
        assert_eq!(codec("Windows-1252"), Some(Codec::Cp1252));
        assert_eq!(codec("shift_jis"), None);
        assert_eq!(
            decode_document(b"<?xml version='1.0' encoding='ISO-8859-1'?><r>\xe9</r>").unwrap(),
            "<?xml version='1.0' encoding='ISO-8859-1'?><r>é</r>"
        );
        assert!(
            decode_document(b"<?xml version=\"1.0\" encoding=\"EBCDIC-X\"?><r/>")
                .unwrap_err()
                .message
                .contains("names encoding 'EBCDIC-X', which this robot cannot decode")
        );
        assert_eq!(
            decode_document(b"\xff\xfe<\x00r\x00/\x00>\x00").unwrap(),
            "<r/>"
        );
        assert_eq!(decode_document(b"\xef\xbb\xbf<r/>").unwrap(), "<r/>");
        assert_eq!(universal_newlines("a\r\nb\rc".into()), "a\nb\nc");
    }

    fn run_in(dir: &Path, nodes: &[(&str, &str, serde_json::Value)]) -> Ran {
        let wf = load_str(&chain(nodes)).unwrap();
        let mut opts = RunOptions::default();
        opts.safety.work_dir = Some(dir.to_path_buf());
        let mut rec = Recorder::default();
        let outcome = runner::run(
            &wf,
            Default::default(),
            &opts,
            &CancelToken::new(),
            &mut rec,
        );
        Ran {
            outcome,
            logs: rec.logs,
            started: rec.started,
        }
    }

    #[test]
    fn write_and_read_xml_files() {
        let dir = tempfile::tempdir().unwrap();
        let ran = run_in(
            dir.path(),
            &[
                (
                    "w",
                    "WriteXMLFileNode",
                    json!({"file_path": "out/a.xml", "xml_string": "<r><i id=\"1\">x</i></r>"}),
                ),
                (
                    "w2",
                    "WriteXMLFileNode",
                    json!({"file_path": "out\\raw.xml", "xml_string": "<r><i>x</i></r>", "pretty_print": false}),
                ),
                (
                    "w3",
                    "WriteXMLFileNode",
                    json!({"file_path": "bare.xml", "xml_string": "<r/>", "pretty_print": false, "xml_declaration": false}),
                ),
                (
                    "w4",
                    "WriteXMLFileNode",
                    json!({"file_path": "bad.xml", "xml_string": "<r><unclosed></r>"}),
                ),
                (
                    "w5",
                    "WriteXMLFileNode",
                    json!({"file_path": "l1.xml", "xml_string": "<r>café</r>", "encoding": "latin-1"}),
                ),
                ("r", "ReadXMLFileNode", json!({"file_path": "out/a.xml"})),
                (
                    "r5",
                    "ReadXMLFileNode",
                    json!({"file_path": "l1.xml", "encoding": "latin-1"}),
                ),
                (
                    "x",
                    "XMLToJsonNode",
                    json!({"xml_string": "{{r5.xml_string}}"}),
                ),
                ("q", "XPathQueryNode", json!({"xpath": "."})),
            ],
        );
        assert_eq!(ran.error(), "");
        let read = |p: &str| std::fs::read(dir.path().join(p)).unwrap();
        assert_eq!(
            String::from_utf8(read("out/a.xml")).unwrap(),
            "<?xml version=\"1.0\" ?>\n<r>\n  <i id=\"1\">x</i>\n</r>\n"
        );
        assert_eq!(
            String::from_utf8(read("out/raw.xml")).unwrap(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<r><i>x</i></r>"
        );
        assert_eq!(read("bare.xml"), b"<r/>");
        assert_eq!(
            String::from_utf8(read("bad.xml")).unwrap(),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<r><unclosed></r>"
        );
        assert!(ran.logs.iter().any(|l| l.contains("pretty_print skipped, writing the XML as given: XML parse error: expected 'unclosed' tag, not 'r'")), "{:?}", ran.logs);
        assert_eq!(
            read("l1.xml"),
            b"<?xml version=\"1.0\" encoding=\"latin-1\"?>\n<r>caf\xe9</r>\n"
        );
        let abs = dir.path().join("out").join("a.xml");
        let out = ran.out("w", "file_path");
        assert_eq!(Path::new(out.as_str().unwrap()), abs);
        assert_eq!(ran.out("w", "success"), Value::Bool(true));
        assert_eq!(ran.out("r", "root_tag"), Value::str("r"));
        assert_eq!(
            ran.out("r", "xml_string"),
            Value::str("<?xml version=\"1.0\" ?>\n<r>\n  <i id=\"1\">x</i>\n</r>\n")
        );
        assert_eq!(
            ran.out("x", "json_string"),
            Value::str("{\n  \"r\": \"café\"\n}")
        );
        // XPathQuery without xml_string reads the last file read.
        assert_eq!(ran.out("q", "first_text"), Value::str("café"));
    }

    #[test]
    fn read_xml_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("l1.xml"),
            b"<?xml version='1.0' encoding='latin-1'?><r>\xe9</r>",
        )
        .unwrap();
        std::fs::write(dir.path().join("bad.xml"), "<r>\n<a></r>").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let cases = [
            (json!({"file_path": "missing.xml"}), "FileNotFoundError", "XML file not found: '"),
            (json!({"file_path": "../x.xml"}), "PermissionError", "refused path '../x.xml': '..' (parent directory) components are not allowed"),
            (json!({"file_path": "l1.xml"}), "UnicodeDecodeError", "'utf-8' codec can't decode byte 0xe9 in position 43: invalid continuation byte (reading '"),
            (json!({"file_path": "l1.xml", "encoding": "klingon"}), "LookupError", "unknown or unsupported encoding: 'klingon'"),
            (json!({"file_path": "bad.xml"}), "ParseError", "XML parse error: expected 'a' tag, not 'r': line 2, column 4"),
            (json!({"file_path": "sub"}), "IsADirectoryError", "is a directory"),
            (json!({"file_path": "NUL.xml"}), "PermissionError", "'NUL.xml' is a Windows device name"),
        ];
        for (config, kind, want) in cases {
            let ran = run_in(dir.path(), &[("r", "ReadXMLFileNode", config.clone())]);
            let err = ran.outcome.error.as_ref().expect("fails");
            assert!(ran.error().contains(want), "{config}: {}", ran.error());
            assert_eq!(err.error_type, kind, "{config}");
        }
        let ran = run_in(
            dir.path(),
            &[(
                "r",
                "ReadXMLFileNode",
                json!({"file_path": "l1.xml", "encoding": "latin-1"}),
            )],
        );
        assert_eq!(ran.out("r", "root_tag"), Value::str("r"));
        assert_eq!(
            ran.out("r", "xml_string"),
            Value::str("<?xml version='1.0' encoding='latin-1'?><r>é</r>")
        );
    }

    #[test]
    fn write_xml_file_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let cases = [
            (json!({"file_path": "a.xml", "xml_string": "<r>€</r>", "encoding": "ascii", "pretty_print": false}), "'ascii' codec can't encode character '\\u20ac' in position 42: ordinal not in range(128)"),
            (json!({"file_path": "a.xml", "xml_string": "<r/>", "encoding": "ebcdic"}), "unknown or unsupported encoding: 'ebcdic'"),
            (json!({"file_path": "d", "xml_string": "<r/>"}), "is a directory"),
            (json!({"file_path": "x/../../a.xml", "xml_string": "<r/>"}), "'..' (parent directory) components are not allowed"),
            (json!({"file_path": "a.xml", "xml_string": ""}), "xml_string is required (it is empty)"),
        ];
        for (config, want) in cases {
            let ran = run_in(dir.path(), &[("w", "WriteXMLFileNode", config.clone())]);
            assert!(ran.error().contains(want), "{config}: {}", ran.error());
        }
        assert!(!dir.path().join("a.xml").exists());
    }

    #[test]
    fn every_node_is_registered_with_upstream_ports() {
        for (ty, params, outputs) in [
            (
                "ParseXMLNode",
                vec!["xml_string"],
                vec!["root_tag", "root_text", "child_count", "success"],
            ),
            (
                "ReadXMLFileNode",
                vec!["file_path", "encoding"],
                vec!["root_tag", "xml_string", "success"],
            ),
            (
                "WriteXMLFileNode",
                vec![
                    "file_path",
                    "xml_string",
                    "encoding",
                    "pretty_print",
                    "xml_declaration",
                ],
                vec!["file_path", "success"],
            ),
            (
                "XPathQueryNode",
                vec!["xml_string", "xpath"],
                vec!["results", "count", "first_text", "success"],
            ),
            (
                "GetXMLElementNode",
                vec!["xml_string", "tag_name", "index"],
                vec!["tag", "text", "attributes", "child_count", "found"],
            ),
            (
                "GetXMLAttributeNode",
                vec!["xml_string", "xpath", "attribute_name"],
                vec!["value", "found"],
            ),
            (
                "XMLToJsonNode",
                vec!["xml_string", "include_attributes", "text_key"],
                vec!["json_data", "json_string", "success"],
            ),
            (
                "JsonToXMLNode",
                vec!["json_data", "root_tag", "pretty_print"],
                vec!["xml_string", "success"],
            ),
        ] {
            let def = crate::nodes::lookup(ty).unwrap_or_else(|| panic!("{ty} not registered"));
            let got: Vec<&str> = def.params.iter().map(|p| p.name).collect();
            assert_eq!(got, params, "{ty}");
            assert_eq!(def.outputs, outputs.as_slice(), "{ty}");
        }
        assert_eq!(v("1"), Value::Int(1));
    }
}

//! The workflow model: CasareRPA's canvas JSON loaded, validated and compiled for the runner.
//!
//! Loading collects every problem before failing (unknown node types, dangling edges or ports,
//! exec cycles that are not loops, missing required inputs, limits), each naming the node id and
//! type. A workflow without a `StartNode` gets an implicit start wired to every node that has no
//! incoming exec edge. Loop, break/continue and try pairings come from config
//! (`paired_start_id`, `paired_loop_start_id`, `paired_try_id`) or are inferred from the graph when
//! that is unambiguous. Config strings with template references are compiled once here.

use super::node::{NodeDef, NodeKind};
use super::template::{self, Scope, Template};
use super::value::{Dict, Value};
use crate::nodes;
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

/// Maximum number of nodes in one workflow.
pub const MAX_NODES: usize = 5_000;
/// Maximum number of connections.
pub const MAX_CONNECTIONS: usize = 20_000;
/// Maximum nesting depth of a config value.
pub const MAX_CONFIG_DEPTH: usize = 32;
/// Maximum length of one config string, in bytes.
pub const MAX_STRING_BYTES: usize = 1 << 20;
/// Maximum size of a workflow document, in bytes.
pub const MAX_WORKFLOW_BYTES: usize = 64 << 20;

/// Read at most `limit` bytes of `path`, refusing anything longer. The size is checked while
/// reading, not from the metadata: a device or pipe (`/dev/zero`, a FIFO) reports length 0 and
/// would otherwise be read until memory runs out.
pub fn read_capped(path: &std::path::Path, what: &str, limit: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if bytes.len() > limit {
        return Err(format!(
            "{what} {} is larger than the limit of {limit} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}
/// Maximum length of a node id or port name.
pub const MAX_ID_LEN: usize = 256;

/// The id given to the implicit start node.
pub const AUTO_START_ID: &str = "__auto_start__";

/// A config value, compiled.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    /// The value as written.
    pub raw: Value,
    tmpl: Option<Template>,
    deep: bool,
}

impl ConfigEntry {
    fn new(raw: Value) -> ConfigEntry {
        let tmpl = raw.as_str().and_then(Template::compile);
        let deep = matches!(raw, Value::List(_) | Value::Dict(_)) && template::has_refs(&raw);
        ConfigEntry { raw, tmpl, deep }
    }

    /// The value with templates resolved against `scope`.
    pub fn resolve(&self, scope: &dyn Scope) -> Value {
        self.resolve_capped(scope, u64::MAX)
            .unwrap_or_else(|_| self.raw.clone())
    }

    /// [`ConfigEntry::resolve`] with templated text held to `cap` bytes (`Err`: the size
    /// reached when it was given up; see [`Template::resolve_capped`]).
    pub fn resolve_capped(&self, scope: &dyn Scope, cap: u64) -> Result<Value, u64> {
        if let Some(t) = &self.tmpl {
            t.resolve_capped(scope, cap)
        } else if self.deep {
            template::resolve_value_capped(&self.raw, scope, cap)
        } else {
            Ok(self.raw.clone())
        }
    }
}

/// A data edge into a node: `src.src_port` → this node's `dst_port`.
#[derive(Clone, Debug)]
pub struct DataEdge {
    /// Source node index.
    pub src: usize,
    /// Source output port.
    pub src_port: String,
    /// Target parameter.
    pub dst_port: Arc<str>,
}

/// A node ready to run.
#[derive(Clone, Debug)]
pub struct CompiledNode {
    /// Node id.
    pub id: String,
    /// Its type.
    pub def: &'static NodeDef,
    /// Config entries in document order.
    pub config: Vec<(String, ConfigEntry)>,
    /// Routing ports with their targets (edge order).
    pub routes: Vec<(String, Vec<usize>)>,
    /// Incoming data edges.
    pub data_in: Vec<DataEdge>,
    /// Loop end / Break / Continue → loop start; Catch / Finally → Try.
    pub pair: Option<usize>,
    /// Loop starts: the nodes whose executed marks a loop-back clears. Try: its Catch node.
    pub body: Vec<usize>,
    /// Try: its Catch node.
    pub catch: Option<usize>,
    /// Try: its Finally node.
    pub finally: Option<usize>,
    /// `_disabled` nodes are bypassed.
    pub disabled: bool,
    /// Targets of `Flow::Next`: the edges of every routing port that is `exec_out` or contains
    /// "exec" (as upstream), in edge order. Computed once at load; the runner uses it per node.
    pub next: Vec<usize>,
    /// `retry_count` from config (overrides the robot's `node_max_retries`), read at load.
    pub retry_count: Option<u32>,
    /// The fixed delay between retries from config, read at load: `retry_delay` in seconds, else
    /// `retry_interval` in milliseconds (the name upstream's browser, database and desktop nodes
    /// use, "Retry Interval (ms)").
    pub retry_delay: Option<std::time::Duration>,
    /// `_at_most_once` in config: never repeated by a resume after a crash, read at load.
    pub at_most_once: bool,
}

impl CompiledNode {
    /// The config entry called `name`.
    pub fn config_entry(&self, name: &str) -> Option<&ConfigEntry> {
        self.config.iter().find(|(k, _)| k == name).map(|(_, e)| e)
    }

    /// Targets of routing port `port`.
    pub fn targets(&self, port: &str) -> &[usize] {
        self.routes
            .iter()
            .find(|(p, _)| p == port)
            .map_or(&[], |(_, t)| t.as_slice())
    }
}

/// A loaded, validated workflow.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// `metadata.name`, or "Untitled".
    pub name: String,
    /// Nodes; a node's index is its identity inside the runner.
    pub nodes: Vec<CompiledNode>,
    /// Node id → index.
    pub index: HashMap<String, usize>,
    /// Declared variables with their initial values.
    pub variables: Dict,
    /// Where execution starts.
    pub start: usize,
    /// Number of nodes from the document (the implicit start not counted).
    pub total_nodes: usize,
    /// FNV-1a hash of the canonical document, for checkpoint compatibility (with the hashes
    /// of the sub-workflows it calls folded in).
    pub hash: String,
    /// The sub-workflows its call nodes run, by node index (`engine::subflow`).
    pub subflows: super::subflow::Calls,
}

/// One problem found while loading.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The node concerned, if any.
    pub node_id: Option<String>,
    /// Its type, if known.
    pub node_type: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem of the whole document (no node).
    fn top(message: String) -> Problem {
        Problem {
            node_id: None,
            node_type: None,
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.node_id, &self.node_type) {
            (Some(id), Some(t)) => write!(f, "{id} ({t}): {}", self.message),
            (Some(id), None) => write!(f, "{id}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Why a workflow could not be loaded: every problem found.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadError {
    /// All problems, in document order.
    pub problems: Vec<Problem>,
    /// Node types this robot does not support (deduplicated, sorted).
    pub unsupported_types: Vec<String>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid workflow ({} problem{})",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

impl LoadError {
    pub(crate) fn single(message: String) -> LoadError {
        LoadError {
            problems: vec![Problem {
                node_id: None,
                node_type: None,
                message,
            }],
            unsupported_types: Vec::new(),
        }
    }
}

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn top(&mut self, message: impl Into<String>) {
        self.problems.push(Problem {
            node_id: None,
            node_type: None,
            message: message.into(),
        });
    }
    fn node(&mut self, id: &str, node_type: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem {
            node_id: Some(id.to_string()),
            node_type: node_type.map(str::to_string),
            message: message.into(),
        });
    }
}

/// Parse JSON text, reporting syntax errors with line and column.
pub fn parse_json_text(text: &str) -> Result<serde_json::Value, LoadError> {
    if text.len() > MAX_WORKFLOW_BYTES {
        return Err(LoadError::single(format!(
            "workflow is {} bytes; the limit is {MAX_WORKFLOW_BYTES}",
            text.len()
        )));
    }
    serde_json::from_str(text).map_err(|e| {
        LoadError::single(format!(
            "invalid JSON at line {}, column {}: {}",
            e.line(),
            e.column(),
            json_error_reason(&e)
        ))
    })
}

/// What a serde_json error says, without the " at line L column C" it appends (callers name
/// the position once, in their own words).
pub fn json_error_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&position) {
        Some(reason) => reason.to_string(),
        None => text,
    }
}

/// Load a workflow from JSON text.
pub fn load_str(text: &str) -> Result<Workflow, LoadError> {
    load_json(&parse_json_text(text)?)
}

/// Load a workflow from a parsed JSON document, with the sub-workflows its call nodes name
/// (embedded in the document's `subflows` map, or files relative to the working directory;
/// see `engine::subflow`).
pub fn load_json(doc: &serde_json::Value) -> Result<Workflow, LoadError> {
    super::subflow::load_json_from(doc, &super::subflow::Source::for_doc(doc, None))
}

/// Compile one workflow document without loading the sub-workflows it calls.
pub(crate) fn compile_json(doc: &serde_json::Value) -> Result<Workflow, LoadError> {
    let project_canvas;
    let doc = match super::project::to_canvas(doc) {
        None => doc,
        Some(Ok(canvas)) => {
            project_canvas = canvas;
            &project_canvas
        }
        Some(Err(problems)) => {
            return Err(LoadError {
                problems: problems.into_iter().map(Problem::top).collect(),
                unsupported_types: Vec::new(),
            })
        }
    };
    let mut c = Collector {
        problems: Vec::new(),
    };
    let Some(top) = doc.as_object() else {
        return Err(LoadError::single("a workflow must be a JSON object".into()));
    };
    let name = top
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .or_else(|| top.get("name").and_then(|n| n.as_str()))
        .unwrap_or("Untitled")
        .to_string();

    // Nodes: canvas object keyed by id, or (lenient) an array.
    let mut raw_nodes: Vec<(String, &serde_json::Map<String, serde_json::Value>)> = Vec::new();
    match top.get("nodes") {
        Some(serde_json::Value::Object(map)) => {
            for (key, n) in map {
                match n.as_object() {
                    Some(obj) => raw_nodes.push((key.clone(), obj)),
                    None => c.node(key, None, "node must be a JSON object"),
                }
            }
        }
        Some(serde_json::Value::Array(list)) => {
            for (i, n) in list.iter().enumerate() {
                match n.as_object() {
                    Some(obj) => match obj.get("node_id").and_then(|v| v.as_str()) {
                        Some(id) => raw_nodes.push((id.to_string(), obj)),
                        None => c.top(format!("nodes[{i}] has no \"node_id\"")),
                    },
                    None => c.top(format!("nodes[{i}] must be a JSON object")),
                }
            }
        }
        Some(_) => c.top("\"nodes\" must be an object keyed by node id"),
        None => c.top("the workflow has no \"nodes\""),
    }
    if raw_nodes.len() > MAX_NODES {
        return Err(LoadError::single(format!(
            "the workflow has {} nodes; the limit is {MAX_NODES}",
            raw_nodes.len()
        )));
    }

    let mut unsupported: Vec<String> = Vec::new();
    let mut nodes: Vec<CompiledNode> = Vec::with_capacity(raw_nodes.len() + 1);
    let mut index: HashMap<String, usize> = HashMap::new();
    for (key, obj) in &raw_nodes {
        if key.len() > MAX_ID_LEN {
            c.top(format!("a node id is longer than {MAX_ID_LEN} characters"));
            continue;
        }
        let node_type = obj
            .get("node_type")
            .or_else(|| obj.get("type"))
            .and_then(|v| v.as_str());
        if let Some(id) = obj.get("node_id").and_then(|v| v.as_str()) {
            if id != key {
                c.node(
                    key,
                    node_type,
                    format!("node_id \"{id}\" does not match its key \"{key}\""),
                );
            }
        }
        let Some(node_type) = node_type else {
            c.node(key, None, "node has no \"node_type\"");
            continue;
        };
        let Some(def) = nodes::lookup(node_type) else {
            c.node(key, Some(node_type), unsupported_message(node_type));
            if !unsupported.iter().any(|t| t == node_type) {
                unsupported.push(node_type.to_string());
            }
            continue;
        };
        let mut config = Vec::new();
        match obj.get("config").or_else(|| obj.get("properties")) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(map)) => {
                for (k, v) in map {
                    if let Err(why) = check_config_value(v, 0) {
                        c.node(key, Some(node_type), format!("config \"{k}\": {why}"));
                        continue;
                    }
                    config.push((k.clone(), ConfigEntry::new(Value::from_json(v))));
                }
            }
            Some(_) => c.node(key, Some(node_type), "\"config\" must be a JSON object"),
        }
        let disabled = config
            .iter()
            .any(|(k, e)| k == "_disabled" && e.raw.truthy());
        if index.insert(key.clone(), nodes.len()).is_some() {
            c.node(key, Some(node_type), "duplicate node id");
            continue;
        }
        nodes.push(CompiledNode {
            id: key.clone(),
            def,
            config,
            routes: Vec::new(),
            data_in: Vec::new(),
            pair: None,
            body: Vec::new(),
            catch: None,
            finally: None,
            disabled,
            next: Vec::new(),
            retry_count: None,
            retry_delay: None,
            at_most_once: false,
        });
    }
    let total_nodes = raw_nodes.len();

    // Connections.
    let mut has_exec_in = vec![false; nodes.len()];
    let empty = Vec::new();
    let conns = match top.get("connections") {
        Some(serde_json::Value::Array(a)) => a,
        None | Some(serde_json::Value::Null) => &empty,
        Some(_) => {
            c.top("\"connections\" must be an array");
            &empty
        }
    };
    if conns.len() > MAX_CONNECTIONS {
        return Err(LoadError::single(format!(
            "the workflow has {} connections; the limit is {MAX_CONNECTIONS}",
            conns.len()
        )));
    }
    let known = |id: &str| raw_nodes.iter().any(|(k, _)| k == id);
    for (i, conn) in conns.iter().enumerate() {
        let field = |a: &str, b: &str| {
            conn.get(a)
                .or_else(|| conn.get(b))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let (Some(src), Some(sp), Some(dst), Some(dp)) = (
            field("source_node", "from_node"),
            field("source_port", "from_port"),
            field("target_node", "to_node"),
            field("target_port", "to_port"),
        ) else {
            c.top(format!(
                "connections[{i}] needs string fields source_node, source_port, target_node, target_port"
            ));
            continue;
        };
        if sp.len() > MAX_ID_LEN || dp.len() > MAX_ID_LEN {
            c.top(format!(
                "connections[{i}]: a port name is longer than {MAX_ID_LEN} characters"
            ));
            continue;
        }
        let (si, di) = match (index.get(&src), index.get(&dst)) {
            (Some(&s), Some(&d)) => (s, d),
            (s, d) => {
                for (id, found) in [(&src, s), (&dst, d)] {
                    if found.is_none() && !known(id) {
                        c.top(format!(
                            "connections[{i}] ({src}.{sp} -> {dst}.{dp}) refers to missing node \"{id}\""
                        ));
                    }
                }
                continue;
            }
        };
        if si == di {
            c.node(
                &src,
                Some(nodes[si].def.node_type),
                format!("connects to itself ({sp} -> {dp})"),
            );
            continue;
        }
        let sdef = nodes[si].def;
        let ddef = nodes[di].def;
        let is_route = is_route_port(sdef, &sp);
        let is_exec = |port: &str| port.to_ascii_lowercase().contains("exec");
        // An edge into an exec input is an exec edge whatever its source port is called: a bad
        // source port is that one problem, not also a data edge into a missing "exec_in" input.
        if is_route || is_exec(&sp) || (is_exec(&dp) && ddef.param(&dp).is_none()) {
            if !is_route && !sdef.dynamic_ports {
                c.node(
                    &src,
                    Some(sdef.node_type),
                    format!(
                        "has no routing port \"{sp}\" (it has: {})",
                        sdef.routes.join(", ")
                    ),
                );
                continue;
            }
            if dp != "exec_in" && !is_exec(&dp) {
                c.node(
                    &dst,
                    Some(ddef.node_type),
                    format!("exec edge from {src}.{sp} must enter \"exec_in\", not \"{dp}\""),
                );
                continue;
            }
            if nodes::trigger::is_trigger(ddef.node_type) {
                c.node(
                    &dst,
                    Some(ddef.node_type),
                    format!(
                        "exec edge from {src}.{sp}: a trigger node has no exec input, it starts \
                         the workflow (remove the edge; a workflow without StartNode starts at \
                         every trigger)"
                    ),
                );
                continue;
            }
            has_exec_in[di] = true;
            let routes = &mut nodes[si].routes;
            match routes.iter_mut().find(|(p, _)| *p == sp) {
                Some((_, targets)) => {
                    if !targets.contains(&di) {
                        targets.push(di);
                    }
                }
                None => routes.push((sp, vec![di])),
            }
        } else {
            let mut ok = true;
            if !sdef.dynamic_ports && !sdef.outputs.contains(&sp.as_str()) {
                c.node(
                    &src,
                    Some(sdef.node_type),
                    format!(
                        "has no output port \"{sp}\" (outputs: {})",
                        list_or_none(sdef.outputs)
                    ),
                );
                ok = false;
            }
            if !ddef.dynamic_ports && ddef.param(&dp).is_none() {
                let names: Vec<&str> = ddef.params.iter().map(|p| p.name).collect();
                c.node(
                    &dst,
                    Some(ddef.node_type),
                    format!(
                        "has no input port \"{dp}\" (inputs: {})",
                        list_or_none(&names)
                    ),
                );
                ok = false;
            }
            if ok {
                nodes[di].data_in.push(DataEdge {
                    src: si,
                    src_port: sp,
                    dst_port: Arc::from(dp.as_str()),
                });
            }
        }
    }

    // Required parameters that can never get a value.
    for node in &nodes {
        for p in node.def.params.iter().filter(|p| p.required) {
            let configured = node.config_entry(p.name).is_some_and(|e| !e.raw.is_null());
            let wired = node.data_in.iter().any(|e| e.dst_port.as_ref() == p.name);
            if !configured && !wired && !node.disabled {
                let unknown: Vec<&str> = node
                    .config
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| {
                        !k.starts_with('_') && node.def.param(k).is_none() && !is_meta_key(k)
                    })
                    .collect();
                let hint = if unknown.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; config has keys this node does not read: {}",
                        unknown.join(", ")
                    )
                };
                c.node(
                    &node.id,
                    Some(node.def.node_type),
                    format!(
                        "required input \"{}\" has no value (set config \"{}\" or connect a data edge){hint}",
                        p.name, p.name
                    ),
                );
            }
        }
    }

    // Literal config values a node family refuses (e.g. a database type this robot lacks).
    for node in nodes.iter().filter(|n| !n.disabled) {
        if let Some(problem) = nodes::load_check(node) {
            c.node(&node.id, Some(node.def.node_type), problem);
        }
    }

    let variables = parse_variables(top.get("variables"), &mut c);

    if !c.problems.is_empty() || !unsupported.is_empty() {
        unsupported.sort();
        return Err(LoadError {
            problems: c.problems,
            unsupported_types: unsupported,
        });
    }

    // Start node: the first StartNode, else an implicit one.
    let start = match nodes.iter().position(|n| n.def.node_type == "StartNode") {
        Some(s) => s,
        None => {
            let start_def = nodes::lookup("StartNode").expect("StartNode is registered");
            let targets: Vec<usize> = (0..nodes.len())
                .filter(|&i| !has_exec_in[i] && !is_paired_handler(&nodes[i]))
                .collect();
            let idx = nodes.len();
            nodes.push(CompiledNode {
                id: AUTO_START_ID.to_string(),
                def: start_def,
                config: Vec::new(),
                routes: vec![("exec_out".to_string(), targets)],
                data_in: Vec::new(),
                pair: None,
                body: Vec::new(),
                catch: None,
                finally: None,
                disabled: false,
                next: Vec::new(),
                retry_count: None,
                retry_delay: None,
                at_most_once: false,
            });
            index.insert(AUTO_START_ID.to_string(), idx);
            idx
        }
    };

    for node in &mut nodes {
        node.next = node
            .routes
            .iter()
            .filter(|(port, _)| port == "exec_out" || port.to_ascii_lowercase().contains("exec"))
            .flat_map(|(_, targets)| targets.iter().copied())
            .collect();
        node.retry_count = node
            .config_entry("retry_count")
            .and_then(|e| super::node::to_i64(&e.raw))
            .map(|n| n.clamp(0, 100) as u32);
        node.retry_delay = retry_delay_config(node);
        node.at_most_once = node
            .config_entry("_at_most_once")
            .is_some_and(|e| e.raw.truthy());
    }

    let mut c = Collector {
        problems: Vec::new(),
    };
    resolve_pairings(&mut nodes, &index, &mut c);
    for (i, problem) in super::parallel::pair_forks(&mut nodes, &index) {
        c.node(&nodes[i].id, Some(nodes[i].def.node_type), problem);
    }
    check_exec_cycles(&nodes, &mut c);
    if !c.problems.is_empty() {
        return Err(LoadError {
            problems: c.problems,
            unsupported_types: Vec::new(),
        });
    }

    let canonical = serde_json::to_string(doc).unwrap_or_default();
    Ok(Workflow {
        name,
        nodes,
        index,
        variables,
        start,
        total_nodes,
        hash: format!("{:016x}", fnv1a(canonical.as_bytes())),
        subflows: Default::default(),
    })
}

/// "unsupported node type", with a hint. The hint is the nearest CasareRPA node type within a
/// small edit distance (case ignored): a supported one is suggested ("did you mean"), a near
/// upstream one this robot does not run is named with its family, and so is an upstream type
/// this robot does not run (the family it waits for). A name that is itself an
/// upstream type is never "corrected" to a type of another family (`RetryNode` is an
/// error-handling node, not a misspelt `TryNode`).
fn unsupported_message(node_type: &str) -> String {
    if let Some((target, why)) = nodes::aliases::hint(node_type) {
        return format!(
            "unsupported node type (did you mean \"{target}\"? upstream does not register \
             \"{node_type}\" either; {why})"
        );
    }
    let wanted = node_type.to_ascii_lowercase();
    let max_distance = if wanted.len() < 6 { 1 } else { 2 };
    let near = nodes::catalog::UPSTREAM_TYPES
        .iter()
        .map(|(name, family)| {
            let supported = nodes::lookup(name).is_some();
            let d = edit_distance(&wanted, &name.to_ascii_lowercase());
            // Nearest first; on a tie a type this robot runs wins.
            ((d, !supported), *name, *family)
        })
        .filter(|((d, _), _, _)| *d <= max_distance)
        .min();
    let family_words = |family: &str| family.replace('_', " ");
    match near {
        Some(((_, false), name, _)) => {
            format!("unsupported node type (did you mean \"{name}\"?)")
        }
        Some(((0, true), _, family)) => format!(
            "unsupported node type: a CasareRPA {} node this robot does not run yet \
             (`casare-robot nodes` lists what it runs)",
            family_words(family)
        ),
        Some(((d, true), name, family)) if d > 0 => format!(
            "unsupported node type (did you mean \"{name}\"? that is a CasareRPA {} node this \
             robot does not run)",
            family_words(family)
        ),
        _ => "unsupported node type: this robot runs headless nodes only \
                 (`casare-robot nodes` lists them)"
            .to_string(),
    }
}

/// Levenshtein distance (short ASCII names only).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn is_meta_key(k: &str) -> bool {
    matches!(
        k,
        "label"
            | "name"
            | "description"
            | "comment"
            | "paired_start_id"
            | "paired_loop_start_id"
            | "paired_try_id"
            | "paired_catch_id"
            | "paired_finally_id"
            | "retry_count"
            | "retry_delay"
            | "retry_interval"
            | "timeout"
            | "node_id"
    )
}

/// `retry_delay` (seconds) or, without it, `retry_interval` (milliseconds), capped at an hour.
fn retry_delay_config(node: &CompiledNode) -> Option<std::time::Duration> {
    let seconds = |key: &str, per_second: f64| {
        node.config_entry(key)
            .and_then(|e| super::node::to_f64(&e.raw))
            .map(|n| n / per_second)
            .filter(|s| s.is_finite() && *s >= 0.0)
    };
    seconds("retry_delay", 1.0)
        .or_else(|| seconds("retry_interval", 1000.0))
        .map(|s| std::time::Duration::from_secs_f64(s.min(3600.0)))
}

fn is_route_port(def: &NodeDef, port: &str) -> bool {
    def.routes.iter().any(|r| match r.strip_suffix('*') {
        Some(prefix) => port.starts_with(prefix),
        None => *r == port,
    })
}

fn is_paired_handler(node: &CompiledNode) -> bool {
    matches!(node.def.node_type, "CatchNode" | "FinallyNode")
        && node
            .config_entry("paired_try_id")
            .is_some_and(|e| !e.raw.is_null())
}

fn check_config_value(v: &serde_json::Value, depth: usize) -> Result<(), String> {
    if depth > MAX_CONFIG_DEPTH {
        return Err(format!("nested deeper than {MAX_CONFIG_DEPTH} levels"));
    }
    match v {
        serde_json::Value::String(s) if s.len() > MAX_STRING_BYTES => Err(format!(
            "string of {} bytes exceeds the limit of {MAX_STRING_BYTES}",
            s.len()
        )),
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| check_config_value(x, depth + 1)),
        serde_json::Value::Object(o) => o
            .values()
            .try_for_each(|x| check_config_value(x, depth + 1)),
        _ => Ok(()),
    }
}

/// Accept variables as `{name: raw}`, `{name: {default_value|default|value}}`, or
/// `[{name, value|default_value}]`.
fn parse_variables(v: Option<&serde_json::Value>, c: &mut Collector) -> Dict {
    let mut out = Dict::new();
    let unwrap = |v: &serde_json::Value| -> Value {
        if let Some(obj) = v.as_object() {
            for key in ["default_value", "default", "value"] {
                if let Some(inner) = obj.get(key) {
                    return Value::from_json(inner);
                }
            }
            if obj.contains_key("type") {
                return Value::Null;
            }
        }
        Value::from_json(v)
    };
    match v {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                out.insert(k.clone(), unwrap(v));
            }
        }
        Some(serde_json::Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                match item.get("name").and_then(|n| n.as_str()) {
                    Some(name) => {
                        out.insert(name.to_string(), unwrap(item));
                    }
                    None => c.top(format!("variables[{i}] has no \"name\"")),
                }
            }
        }
        Some(_) => c.top("\"variables\" must be an object or a list"),
    }
    out
}

fn is_loop_start(t: &str) -> bool {
    matches!(t, "ForLoopStartNode" | "WhileLoopStartNode")
}

/// Nodes reachable from `from` over exec edges, without expanding `stop` nodes.
fn reach(nodes: &[CompiledNode], from: &[usize], stop: &HashSet<usize>) -> HashSet<usize> {
    let mut seen: HashSet<usize> = HashSet::new();
    let mut queue: VecDeque<usize> = from.iter().copied().collect();
    while let Some(n) = queue.pop_front() {
        if !seen.insert(n) || stop.contains(&n) {
            continue;
        }
        for (_, targets) in &nodes[n].routes {
            queue.extend(targets.iter().copied());
        }
    }
    seen
}

fn resolve_pairings(nodes: &mut [CompiledNode], index: &HashMap<String, usize>, c: &mut Collector) {
    let n = nodes.len();
    let explicit = |node: &CompiledNode, key: &str| -> Option<String> {
        node.config_entry(key)
            .and_then(|e| e.raw.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    // Reach sets of loop starts (from `body`) and try nodes (from every route).
    let mut loop_reach: Vec<(usize, HashSet<usize>)> = Vec::new();
    let mut try_reach: Vec<(usize, HashSet<usize>)> = Vec::new();
    for i in 0..n {
        let t = nodes[i].def.node_type;
        if is_loop_start(t) {
            let stop: HashSet<usize> = [i].into();
            loop_reach.push((i, reach(nodes, nodes[i].targets("body"), &stop)));
        } else if t == "TryNode" {
            let stop: HashSet<usize> = [i].into();
            let from: Vec<usize> = nodes[i]
                .routes
                .iter()
                .flat_map(|(_, t)| t.iter().copied())
                .collect();
            try_reach.push((i, reach(nodes, &from, &stop)));
        }
    }
    let nearest =
        |sets: &[(usize, HashSet<usize>)], target: usize, want: &dyn Fn(usize) -> bool| {
            sets.iter()
                .filter(|(s, r)| r.contains(&target) && want(*s))
                .min_by_key(|(_, r)| r.len())
                .map(|(s, _)| *s)
        };
    for i in 0..n {
        let t = nodes[i].def.node_type;
        let (key, family): (&str, &dyn Fn(&str) -> bool) = match t {
            "ForLoopEndNode" => ("paired_start_id", &|s: &str| s == "ForLoopStartNode"),
            "WhileLoopEndNode" => ("paired_start_id", &|s: &str| s == "WhileLoopStartNode"),
            "BreakNode" | "ContinueNode" => ("paired_loop_start_id", &|s: &str| is_loop_start(s)),
            "CatchNode" | "FinallyNode" => ("paired_try_id", &|s: &str| s == "TryNode"),
            _ => continue,
        };
        let pair = match explicit(&nodes[i], key) {
            Some(id) => match index.get(&id) {
                Some(&p) if family(nodes[p].def.node_type) => Some(p),
                Some(&p) => {
                    c.node(
                        &nodes[i].id,
                        Some(t),
                        format!(
                            "{key} \"{id}\" is a {}, not a matching start node",
                            nodes[p].def.node_type
                        ),
                    );
                    None
                }
                None => {
                    c.node(
                        &nodes[i].id,
                        Some(t),
                        format!("{key} \"{id}\" names no node in this workflow"),
                    );
                    None
                }
            },
            None => {
                let sets = if matches!(t, "CatchNode" | "FinallyNode") {
                    &try_reach
                } else {
                    &loop_reach
                };
                nearest(sets, i, &|s| family(nodes[s].def.node_type))
            }
        };
        nodes[i].pair = pair;
    }
    // Try → Catch / Finally.
    for i in 0..n {
        if let Some(p) = nodes[i].pair {
            match nodes[i].def.node_type {
                "CatchNode" => nodes[p].catch = nodes[p].catch.or(Some(i)),
                "FinallyNode" => nodes[p].finally = nodes[p].finally.or(Some(i)),
                _ => {}
            }
        }
    }
    // Loop bodies: reachable from `body`, stopping at the loop's own end nodes.
    for (start, _) in &loop_reach {
        let ends: HashSet<usize> = (0..n)
            .filter(|&j| {
                nodes[j].pair == Some(*start) && nodes[j].def.node_type.ends_with("LoopEndNode")
            })
            .chain([*start])
            .collect();
        let mut body: Vec<usize> = reach(nodes, nodes[*start].targets("body"), &ends)
            .into_iter()
            .filter(|j| j != start)
            .collect();
        body.sort_unstable();
        nodes[*start].body = body;
    }
}

/// Exec cycles are errors unless they pass through a loop start (a canvas back-edge into a loop).
fn check_exec_cycles(nodes: &[CompiledNode], c: &mut Collector) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let n = nodes.len();
    let mut mark = vec![Mark::New; n];
    let mut reported: HashSet<usize> = HashSet::new();
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge offset) with an explicit path stack.
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::Active;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            let succ: Vec<usize> = nodes[node]
                .routes
                .iter()
                .flat_map(|(_, t)| t.iter().copied())
                .collect();
            if *edge < succ.len() {
                let next = succ[*edge];
                *edge += 1;
                match mark[next] {
                    Mark::New => {
                        mark[next] = Mark::Active;
                        stack.push((next, 0));
                    }
                    Mark::Active => {
                        let pos = stack.iter().position(|(s, _)| *s == next).unwrap_or(0);
                        let cycle: Vec<usize> = stack[pos..].iter().map(|(s, _)| *s).collect();
                        let through_loop =
                            cycle.iter().any(|&s| is_loop_start(nodes[s].def.node_type));
                        if !through_loop && reported.insert(next) {
                            let ids: Vec<&str> =
                                cycle.iter().map(|&s| nodes[s].id.as_str()).collect();
                            c.node(
                                &nodes[next].id,
                                Some(nodes[next].def.node_type),
                                format!(
                                    "exec cycle that is not a loop: {} -> {} (loops go back through a loop end's paired_start_id, not an edge)",
                                    ids.join(" -> "),
                                    nodes[next].id
                                ),
                            );
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Workflow {
    /// True for node kinds that may run several times per pass.
    pub fn is_control_flow(&self, idx: usize) -> bool {
        self.nodes[idx].def.kind == NodeKind::ControlFlow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::testing::{chain, ex, graph};
    use serde_json::json;

    fn problems(json: &str) -> Vec<String> {
        match load_str(json) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = load_str("{\n  \"nodes\": {,\n}").unwrap_err();
        assert!(
            err.problems[0]
                .message
                .starts_with("invalid JSON at line 2, column 13"),
            "{err}"
        );
        // The position is said once, not again by serde_json's own text.
        assert_eq!(
            err.problems[0].message,
            "invalid JSON at line 2, column 13: key must be a string"
        );
        assert!(load_str("[1, 2]")
            .unwrap_err()
            .to_string()
            .contains("must be a JSON object"));
        assert!(load_str("{}")
            .unwrap_err()
            .to_string()
            .contains("has no \"nodes\""));
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let json = graph(
            &[
                ("a", "LaunchBrowserNode", json!({})),
                ("b", "SendEmailNode", json!({})),
                ("c", "LogNode", json!({"message": "x"})),
                ("d", "SetVariableNode", json!({})),
            ],
            &[
                ex("c", "exec_out", "missing"),
                ("c", "nope", "c", "exec_in"),
                ("c", "message", "d", "bogus"),
            ],
        );
        let err = load_str(&json).unwrap_err();
        assert_eq!(
            err.unsupported_types,
            ["LaunchBrowserNode", "SendEmailNode"]
        );
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "a (LaunchBrowserNode): unsupported node type: a CasareRPA browser node this robot does not run yet (`casare-robot nodes` lists what it runs)",
                "b (SendEmailNode): unsupported node type: a CasareRPA email node this robot does not run yet (`casare-robot nodes` lists what it runs)",
                "connections[0] (c.exec_out -> missing.exec_in) refers to missing node \"missing\"",
                "c (LogNode): connects to itself (nope -> exec_in)",
                "d (SetVariableNode): has no input port \"bogus\" (inputs: variable_name, value, default_value, variable_type)",
                "d (SetVariableNode): required input \"variable_name\" has no value (set config \"variable_name\" or connect a data edge)",
            ]
        );
    }

    #[test]
    fn a_bad_source_port_into_exec_in_is_one_problem() {
        let json = graph(
            &[
                ("a", "LogNode", json!({"message": "x"})),
                ("b", "LogNode", json!({"message": "y"})),
            ],
            &[("a", "next", "b", "exec_in")],
        );
        let err = load_str(&json).unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            ["a (LogNode): has no routing port \"next\" (it has: exec_out)"]
        );
    }

    #[test]
    fn near_miss_type_names_get_a_suggestion() {
        let err = load_str(&chain(&[
            ("h", "HTTPSuperNode", json!({})),
            ("l", "logNode", json!({})),
        ]))
        .unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "h (HTTPSuperNode): unsupported node type (did you mean \"HttpSuperNode\"?)",
                "l (logNode): unsupported node type (did you mean \"LogNode\"?)",
            ]
        );
        // An upstream type of another family is not a misspelt supported one; a misspelt
        // upstream type is named with its family.
        let err = load_str(&chain(&[
            ("r", "RetryNode", json!({})),
            ("t", "RetyNode", json!({})),
            ("w", "WaitNod", json!({})),
        ]))
        .unwrap_err();
        let text: Vec<String> = err.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            text,
            [
                "r (RetryNode): unsupported node type: a CasareRPA error handling node this robot does not run yet (`casare-robot nodes` lists what it runs)",
                "t (RetyNode): unsupported node type (did you mean \"RetryNode\"? that is a CasareRPA error handling node this robot does not run)",
                "w (WaitNod): unsupported node type (did you mean \"WaitNode\"?)",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn unknown_routing_and_output_ports_are_named() {
        let json = graph(
            &[
                ("i", "IfNode", json!({})),
                ("l", "LogNode", json!({})),
                ("m", "LogNode", json!({})),
            ],
            &[
                ("i", "maybe_exec", "l", "exec_in"),
                ("l", "nothing", "m", "message"),
            ],
        );
        assert_eq!(
            problems(&json),
            [
                "i (IfNode): has no routing port \"maybe_exec\" (it has: true, false)",
                "l (LogNode): has no output port \"nothing\" (outputs: message)",
            ]
        );
    }

    #[test]
    fn exec_cycles_are_rejected_unless_through_a_loop_start() {
        let json = graph(
            &[
                ("a", "LogNode", json!({})),
                ("b", "LogNode", json!({})),
                ("c", "LogNode", json!({})),
            ],
            &[
                ex("a", "exec_out", "b"),
                ex("b", "exec_out", "c"),
                ex("c", "exec_out", "a"),
            ],
        );
        let p = problems(&json);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("exec cycle that is not a loop: a -> b -> c -> a"),
            "{p:?}"
        );

        let json = graph(
            &[
                ("s", "ForLoopStartNode", json!({"items": [1]})),
                ("b", "LogNode", json!({})),
                ("e", "ForLoopEndNode", json!({})),
            ],
            &[
                ex("s", "body", "b"),
                ex("b", "exec_out", "e"),
                ex("e", "exec_out", "s"),
            ],
        );
        assert!(problems(&json).is_empty());
    }

    #[test]
    fn limits_are_enforced() {
        let big = "x".repeat(MAX_STRING_BYTES + 1);
        let p = problems(&chain(&[("l", "LogNode", json!({"message": big}))]));
        assert_eq!(p, [format!("l (LogNode): config \"message\": string of {} bytes exceeds the limit of {MAX_STRING_BYTES}", MAX_STRING_BYTES + 1)]);
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        let p = problems(&chain(&[("l", "LogNode", json!({"data": deep}))]));
        assert!(p[0].contains("nested deeper than 32 levels"), "{p:?}");
        let nodes: Vec<(String, &str, serde_json::Value)> = (0..MAX_NODES + 1)
            .map(|i| (format!("n{i}"), "LogNode", json!({})))
            .collect();
        let refs: Vec<(&str, &str, serde_json::Value)> = nodes
            .iter()
            .map(|(a, b, c)| (a.as_str(), *b, c.clone()))
            .collect();
        let p = problems(&graph(&refs, &[]));
        assert_eq!(
            p,
            [format!(
                "the workflow has {} nodes; the limit is {MAX_NODES}",
                MAX_NODES + 1
            )]
        );
    }

    #[test]
    fn implicit_start_wires_nodes_without_incoming_exec_edges() {
        let json = graph(
            &[
                ("a", "LogNode", json!({})),
                ("b", "LogNode", json!({})),
                ("c", "LogNode", json!({})),
                ("t", "TryNode", json!({})),
                ("k", "CatchNode", json!({"paired_try_id": "t"})),
            ],
            &[ex("a", "exec_out", "b")],
        );
        let wf = load_str(&json).unwrap();
        let start = &wf.nodes[wf.start];
        assert_eq!(start.id, AUTO_START_ID);
        let targets: Vec<&str> = start
            .targets("exec_out")
            .iter()
            .map(|&i| wf.nodes[i].id.as_str())
            .collect();
        assert_eq!(targets, ["a", "c", "t"]);
        assert_eq!(wf.total_nodes, 5);
        let t = wf.index["t"];
        assert_eq!(wf.nodes[t].catch, Some(wf.index["k"]));
    }

    #[test]
    fn explicit_start_node_wins_and_nothing_is_auto_wired() {
        let json = graph(
            &[
                ("s", "StartNode", json!({})),
                ("a", "LogNode", json!({})),
                ("orphan", "LogNode", json!({})),
            ],
            &[ex("s", "exec_out", "a")],
        );
        let wf = load_str(&json).unwrap();
        assert_eq!(wf.nodes[wf.start].id, "s");
        assert!(!wf.index.contains_key(AUTO_START_ID));
    }

    #[test]
    fn retry_delay_is_seconds_and_retry_interval_milliseconds() {
        let delay = |config: serde_json::Value| {
            let json = graph(&[("a", "LogNode", config)], &[]);
            let wf = load_str(&json).unwrap();
            wf.nodes[wf.index["a"]].retry_delay
        };
        let ms = std::time::Duration::from_millis;
        assert_eq!(delay(json!({"retry_interval": 250})), Some(ms(250)));
        assert_eq!(delay(json!({"retry_delay": 0.5})), Some(ms(500)));
        // Both set: the robot's own key (seconds) wins.
        assert_eq!(
            delay(json!({"retry_delay": 2, "retry_interval": 100})),
            Some(ms(2000))
        );
        assert_eq!(delay(json!({"retry_interval": -1})), None);
        assert_eq!(delay(json!({})), None);
    }

    #[test]
    fn variables_in_every_accepted_shape() {
        let doc = json!({
            "nodes": {},
            "variables": {"raw": 5, "dv": {"type": "String", "default_value": "a"}, "d": {"type": "Integer", "default": 3},
                          "v": {"value": [1]}, "typed_only": {"type": "String"}}
        });
        let wf = load_json(&doc).unwrap();
        assert_eq!(
            Value::dict(wf.variables.clone()),
            Value::parse_json(r#"{"raw": 5, "dv": "a", "d": 3, "v": [1], "typed_only": null}"#)
                .unwrap()
        );
        let doc = json!({"nodes": {}, "variables": [{"name": "x", "value": 1}, {"name": "y", "default_value": 2}]});
        let wf = load_json(&doc).unwrap();
        assert_eq!(
            Value::dict(wf.variables),
            Value::parse_json(r#"{"x": 1, "y": 2}"#).unwrap()
        );
    }

    #[test]
    fn lenient_array_dialect_loads() {
        let doc = json!({
            "nodes": [
                {"node_id": "a", "type": "SetVariableNode", "properties": {"variable_name": "x", "value": 1}},
                {"node_id": "b", "type": "LogNode", "properties": {"message": "{{x}}"}}
            ],
            "connections": [{"from_node": "a", "from_port": "exec_out", "to_node": "b", "to_port": "exec_in"}]
        });
        let wf = load_json(&doc).unwrap();
        assert_eq!(wf.nodes[wf.index["a"]].targets("exec_out"), [wf.index["b"]]);
    }

    #[test]
    fn bad_pairings_are_reported() {
        let json = graph(
            &[
                ("e", "ForLoopEndNode", json!({"paired_start_id": "nowhere"})),
                ("l", "LogNode", json!({})),
                ("e2", "WhileLoopEndNode", json!({"paired_start_id": "l"})),
            ],
            &[],
        );
        assert_eq!(
            problems(&json),
            [
                "e (ForLoopEndNode): paired_start_id \"nowhere\" names no node in this workflow",
                "e2 (WhileLoopEndNode): paired_start_id \"l\" is a LogNode, not a matching start node",
            ]
        );
    }

    #[test]
    fn hash_changes_with_content() {
        let a = load_str(&chain(&[("l", "LogNode", json!({"message": "a"}))])).unwrap();
        let b = load_str(&chain(&[("l", "LogNode", json!({"message": "b"}))])).unwrap();
        let a2 = load_str(&chain(&[("l", "LogNode", json!({"message": "a"}))])).unwrap();
        assert_ne!(a.hash, b.hash);
        assert_eq!(a.hash, a2.hash);
    }
}

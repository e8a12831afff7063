//! Sub-workflows: loading the workflows that call nodes name, and running them inside a run.
//!
//! Loading ([`load_json_from`]): every `SubflowNode` (`subflow_path` / `subflow_id`),
//! `CallSubworkflowNode` (`subworkflow_path` / `subworkflow_id`) and `ExecuteWorkflowNode`
//! (`workflow_path`) names its workflow literally. It is looked up in the document's embedded
//! `subflows` map (keyed by path or id; a daemon job carries it there), else read as a file
//! relative to the calling workflow's file (the working directory for documents without one).
//! A daemon job's sub-workflow files pass the file nodes' rules first ([`Source::checked`]:
//! `allowed_paths`, no `..`, no device names), since its document comes from the orchestrator.
//! Each sub-workflow is loaded once, up front, recursively; a reference back to a workflow that
//! is being loaded (a cycle) is a load error naming the chain, and so are a file that cannot be
//! found, an id that does not match `subworkflow_id`, a templated path and `execution_mode:
//! "async"` and `_at_most_once` on a node inside a sub-workflow. The calling workflow's hash folds in the hashes of what it calls, so a checkpoint
//! never resumes into a changed sub-workflow.
//!
//! Running ([`run_call`]): the child is an ordinary run of its own [`Workflow`] with its own
//! [`RunState`], started by the call node. While it runs, the call node stays at the front of
//! the parent's queue and the child's state is the parent's [`RunState::call`] frame; the
//! parent's observer sees every inner node as `<call_id>/<inner_id>` and, after each, the
//! parent's whole state with the frame in it, so a checkpoint is taken after every inner node
//! and a resume continues inside the child. The child's deadline is the call node's (node and
//! job timeouts, and `timeout_seconds` of a CallSubworkflowNode); cancellation reaches it
//! through the same token. Calls nest at most [`MAX_CALL_DEPTH`] deep.
//!
//! Data: a SubflowNode / CallSubworkflowNode gives the child its declared inputs (the call
//! node's same-named data port, else its config, else the input's default) as variables, plus
//! `trigger_payload` (them, plus the fields of that trigger's output ports: `params`,
//! `caller_workflow_id`, `caller_node_id`, `call_id`) when the child starts with a
//! `WorkflowCallTriggerNode`;
//! its outputs are read from the declared `source_node_id`'s output port, else from a
//! `SubflowOutputNode` with that `port_name`, else from the child variable of that name. An
//! ExecuteWorkflowNode shares the parent's variables: the child starts with them and its
//! variables are copied back when it completes.

use super::model::{self, LoadError, Problem, Workflow};
use super::node::{Flow, NodeCtx, NodeError, NodeLog};
use super::runner::{
    self, FailureDisposition, NodeEvent, NodeRecord, Observer, RunError, RunOptions, RunOutcome,
    RunState, RunStatus,
};
use super::safety::{self, Safety};
use super::value::{Dict, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How deeply sub-workflow calls may nest (as upstream's `_subworkflow_call_depth`).
pub const MAX_CALL_DEPTH: i64 = 10;

/// The variable holding the call depth of a child run.
pub const DEPTH_VAR: &str = "_subworkflow_call_depth";

/// The node types that call a sub-workflow.
pub const CALL_TYPES: &[&str] = &["SubflowNode", "CallSubworkflowNode", "ExecuteWorkflowNode"];

/// The sub-workflows a workflow's call nodes run, by node index.
#[derive(Clone, Debug, Default)]
pub struct Calls(Arc<HashMap<usize, Arc<Subflow>>>);

impl Calls {
    /// The sub-workflow node `idx` calls.
    pub fn get(&self, idx: usize) -> Option<&Arc<Subflow>> {
        self.0.get(&idx)
    }

    /// Number of call nodes with a sub-workflow.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the workflow calls nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A declared input of a sub-workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct InputPort {
    /// Its name (the child variable and the call node's port).
    pub name: String,
    /// The value when the call gives none.
    pub default: Value,
    /// A required input must be given by the call.
    pub required: bool,
}

/// A declared output of a sub-workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputPort {
    /// Its name (the call node's output port).
    pub name: String,
    /// `source_node_id` / `source_port` (or `internal_node_id` / `internal_port_name`).
    pub source: Option<(String, String)>,
}

/// A loaded sub-workflow.
#[derive(Debug)]
pub struct Subflow {
    /// Where it came from: the file path, or `embedded:<key>`.
    pub key: String,
    /// The compiled workflow (with its own calls linked).
    pub wf: Workflow,
    /// Declared inputs (the `inputs` list and every SubflowInputNode's `port_name`).
    pub inputs: Vec<InputPort>,
    /// Declared outputs (the `outputs` list and every SubflowOutputNode's `port_name`).
    pub outputs: Vec<OutputPort>,
    /// True when its entry node is a `WorkflowCallTriggerNode` (it receives `trigger_payload`).
    pub call_trigger: bool,
}

/// A sub-workflow call in progress, kept in the parent's [`RunState`] (and its checkpoint).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallFrame {
    /// The call node's index in the parent workflow.
    pub node: usize,
    /// The sub-workflow's key ([`Subflow::key`]).
    pub key: String,
    /// The child run's state.
    pub state: RunState,
}

/// Where sub-workflow references are looked up.
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// Directory that relative paths start from (`None`: the working directory).
    pub base: Option<PathBuf>,
    /// Embedded sub-workflow documents, keyed by path or id.
    pub embedded: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    /// The file rules a sub-workflow file must pass before it is read (`allowed_paths`, no
    /// `..`, no device names: [`safety::check_path`]). Set for daemon jobs, whose workflows come
    /// from the orchestrator; `None` for `run`, where the user names the files.
    pub paths: Option<Safety>,
}

impl Source {
    /// The source for `doc`: its embedded `subflows` map, and files relative to `base`.
    pub fn for_doc(doc: &serde_json::Value, base: Option<&Path>) -> Source {
        Source {
            base: base.map(Path::to_path_buf),
            embedded: doc
                .get("subflows")
                .and_then(|s| s.as_object())
                .map(|m| Arc::new(m.clone())),
            paths: None,
        }
    }

    /// This source with sub-workflow files checked against `safety`'s file rules.
    pub fn checked(self, safety: &Safety) -> Source {
        Source {
            paths: Some(safety.clone()),
            ..self
        }
    }
}

/// Put a job's `subflows` map (from its assignment) into its workflow document, where the
/// loader looks for embedded sub-workflows. A map already in the document is kept.
pub fn embed(workflow: &mut serde_json::Value, subflows: Option<&serde_json::Value>) {
    if let (Some(obj), Some(serde_json::Value::Object(map))) = (workflow.as_object_mut(), subflows)
    {
        obj.entry("subflows")
            .or_insert_with(|| serde_json::Value::Object(map.clone()));
    }
}

/// Load workflow text from the file `path`: sub-workflow paths resolve relative to its folder.
pub fn load_str_at(text: &str, path: &Path) -> Result<Workflow, LoadError> {
    let doc = model::parse_json_text(text)?;
    let base = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    load_json_from(&doc, &Source::for_doc(&doc, base))
}

/// Load a workflow document and, recursively, the sub-workflows its call nodes name.
pub fn load_json_from(doc: &serde_json::Value, source: &Source) -> Result<Workflow, LoadError> {
    let mut wf = model::compile_json(doc)?;
    if !wf
        .nodes
        .iter()
        .any(|n| CALL_TYPES.contains(&n.def.node_type))
    {
        return Ok(wf);
    }
    let mut loader = Loader {
        embedded: source.embedded.clone(),
        paths: source.paths.clone(),
        memo: HashMap::new(),
        stack: vec![root_key(source)],
        problems: Vec::new(),
        unsupported: Vec::new(),
    };
    loader.link(&mut wf, source.base.as_deref());
    if loader.problems.is_empty() {
        return Ok(wf);
    }
    loader.unsupported.sort();
    loader.unsupported.dedup();
    Err(LoadError {
        problems: loader.problems,
        unsupported_types: loader.unsupported,
    })
}

fn root_key(source: &Source) -> String {
    // The root document has no path of its own here; its folder names it in cycle messages.
    match &source.base {
        Some(b) => format!("the calling workflow in {}", b.display()),
        None => "the calling workflow".into(),
    }
}

/// What a call node names.
struct Reference {
    path: String,
    id: String,
}

/// A resolved reference: its key, document and the folder its own references start from.
struct Found {
    key: String,
    doc: serde_json::Value,
    base: Option<PathBuf>,
}

struct Loader {
    embedded: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    paths: Option<Safety>,
    memo: HashMap<String, Arc<Subflow>>,
    stack: Vec<String>,
    problems: Vec<Problem>,
    unsupported: Vec<String>,
}

impl Loader {
    fn problem(&mut self, wf: &Workflow, idx: usize, message: String) {
        self.problems.push(Problem {
            node_id: Some(wf.nodes[idx].id.clone()),
            node_type: Some(wf.nodes[idx].def.node_type.to_string()),
            message,
        });
    }

    /// Load what every call node of `wf` names and record it in `wf.subflows`.
    fn link(&mut self, wf: &mut Workflow, base: Option<&Path>) {
        let mut calls = HashMap::new();
        let mut hash_input = wf.hash.clone();
        for idx in 0..wf.nodes.len() {
            if !CALL_TYPES.contains(&wf.nodes[idx].def.node_type) {
                continue;
            }
            if let Err(message) = check_mode(wf, idx) {
                self.problem(wf, idx, message);
                continue;
            }
            let reference = match reference(wf, idx) {
                Ok(r) => r,
                Err(message) => {
                    self.problem(wf, idx, message);
                    continue;
                }
            };
            let found = match self.find(&reference, base) {
                Ok(f) => f,
                Err(message) => {
                    self.problem(wf, idx, message);
                    continue;
                }
            };
            if let Err(message) = check_id(wf, idx, &reference, &found) {
                self.problem(wf, idx, message);
                continue;
            }
            if let Some(sub) = self.load_one(wf, idx, found) {
                hash_input.push_str(&format!("|{}={}", sub.key, sub.wf.hash));
                calls.insert(idx, sub);
            }
        }
        wf.hash = format!("{:016x}", model::fnv1a(hash_input.as_bytes()));
        wf.subflows = Calls(Arc::new(calls));
    }

    /// Compile and link one found document (once per key); `None` after a problem.
    fn load_one(&mut self, wf: &Workflow, idx: usize, found: Found) -> Option<Arc<Subflow>> {
        if let Some(sub) = self.memo.get(&found.key) {
            return Some(sub.clone());
        }
        if self.stack.contains(&found.key) {
            let chain: Vec<&str> = self
                .stack
                .iter()
                .map(String::as_str)
                .chain([found.key.as_str()])
                .collect();
            let message = format!(
                "sub-workflow {} calls itself (cycle: {}); sub-workflows may not call a workflow that is calling them",
                found.key,
                chain.join(" -> ")
            );
            self.problem(wf, idx, message);
            return None;
        }
        let mut child = match model::compile_json(&found.doc) {
            Ok(child) => child,
            Err(e) => {
                self.unsupported.extend(e.unsupported_types.iter().cloned());
                for p in e.problems {
                    self.problem(wf, idx, format!("in sub-workflow {}: {p}", found.key));
                }
                return None;
            }
        };
        if let Some(n) = child.nodes.iter().find(|n| n.at_most_once) {
            let message = format!(
                "in sub-workflow {}: {} ({}) sets _at_most_once, which is not supported inside \
                 a sub-workflow (checkpoints mark nodes of the calling workflow only); set it \
                 on the call node instead",
                found.key, n.id, n.def.node_type
            );
            self.problem(wf, idx, message);
            return None;
        }
        self.stack.push(found.key.clone());
        let before = self.problems.len();
        self.link(&mut child, found.base.as_deref());
        self.stack.pop();
        if self.problems.len() > before {
            return None;
        }
        let sub = Arc::new(Subflow {
            inputs: declared_inputs(&found.doc, &child),
            outputs: declared_outputs(&found.doc, &child),
            call_trigger: starts_with_call_trigger(&child),
            key: found.key.clone(),
            wf: child,
        });
        self.memo.insert(found.key, sub.clone());
        Some(sub)
    }

    /// Find a referenced document: embedded by path, then by id, else a file.
    fn find(&self, r: &Reference, base: Option<&Path>) -> Result<Found, String> {
        if let Some(map) = &self.embedded {
            for name in [&r.path, &r.id] {
                if let Some(doc) = map.get(name.as_str()).filter(|_| !name.is_empty()) {
                    if !doc.is_object() {
                        return Err(format!(
                            "embedded sub-workflow \"{name}\" is not a JSON object"
                        ));
                    }
                    return Ok(Found {
                        key: format!("embedded:{name}"),
                        doc: doc.clone(),
                        base: base.map(Path::to_path_buf),
                    });
                }
            }
        }
        if r.path.is_empty() {
            return Err(format!(
                "sub-workflow id \"{}\" is not among the job's embedded subflows, and no path is set",
                r.id
            ));
        }
        let given = Path::new(&r.path);
        let mut path = match base {
            Some(b) if given.is_relative() => b.join(given),
            _ => given.to_path_buf(),
        };
        if let Some(safety) = &self.paths {
            // The file nodes' rules (a relative path then starts from the job's working folder).
            path = safety::check_path(&path.to_string_lossy(), safety).map_err(|e| {
                format!("sub-workflow \"{}\" may not be read: {}", r.path, e.message)
            })?;
        }
        let text = read_document(&path).map_err(|why| {
            let embedded = if self.embedded.is_some() {
                "not among the job's embedded subflows, and "
            } else {
                ""
            };
            format!("sub-workflow \"{}\" was not found: {embedded}{why}", r.path)
        })?;
        let doc = model::parse_json_text(&text)
            .map_err(|e| format!("sub-workflow {}: {e}", path.display()))?;
        let key = std::fs::canonicalize(&path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string();
        Ok(Found {
            key,
            base: path.parent().map(Path::to_path_buf),
            doc,
        })
    }
}

/// Read a sub-workflow file, at most [`model::MAX_WORKFLOW_BYTES`].
fn read_document(path: &Path) -> Result<String, String> {
    let bytes = model::read_capped(path, "sub-workflow", model::MAX_WORKFLOW_BYTES)?;
    let text =
        String::from_utf8(bytes).map_err(|e| format!("{} is not UTF-8: {e}", path.display()))?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(&text).to_string())
}

/// The literal config string `key` of node `idx` (empty when absent or null).
fn literal(wf: &Workflow, idx: usize, key: &str) -> Result<String, String> {
    match wf.nodes[idx].config_entry(key).map(|e| &e.raw) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Str(s)) if super::template::Template::compile(s).is_some() => Err(format!(
            "{key} \"{s}\" is a template; sub-workflows are loaded before the run starts, so \
             {key} must be a literal path or id"
        )),
        Some(Value::Str(s)) => Ok(s.trim().to_string()),
        Some(other) => Err(format!(
            "{key} must be text, got {} {}",
            other.type_name(),
            other.py_repr()
        )),
    }
}

fn reference(wf: &Workflow, idx: usize) -> Result<Reference, String> {
    let (path_key, id_key) = match wf.nodes[idx].def.node_type {
        "SubflowNode" => ("subflow_path", Some("subflow_id")),
        "CallSubworkflowNode" => ("subworkflow_path", Some("subworkflow_id")),
        _ => ("workflow_path", None),
    };
    let path = literal(wf, idx, path_key)?;
    let id = match id_key {
        Some(k) => literal(wf, idx, k)?,
        None => String::new(),
    };
    if path.is_empty() && id.is_empty() {
        return Err(match id_key {
            Some(k) => format!("names no sub-workflow: set {path_key} (or {k})"),
            None => format!("names no workflow: set {path_key}"),
        });
    }
    Ok(Reference { path, id })
}

/// `execution_mode: "async"` is refused: it needs an orchestrator to queue a job.
fn check_mode(wf: &Workflow, idx: usize) -> Result<(), String> {
    if wf.nodes[idx].def.node_type != "CallSubworkflowNode" {
        return Ok(());
    }
    let mode = literal(wf, idx, "execution_mode")?;
    match mode.as_str() {
        "" | "sync" => Ok(()),
        "async" => Err(
            "execution_mode \"async\" is not supported: it submits a separate orchestrator \
             job, and this robot runs sub-workflows in-process only; use \"sync\""
                .into(),
        ),
        other => Err(format!(
            "execution_mode \"{other}\" is not one of \"sync\", \"async\""
        )),
    }
}

/// A CallSubworkflowNode's `subworkflow_id` must equal the loaded document's id when both exist.
fn check_id(wf: &Workflow, idx: usize, r: &Reference, found: &Found) -> Result<(), String> {
    if wf.nodes[idx].def.node_type != "CallSubworkflowNode" || r.id.is_empty() {
        return Ok(());
    }
    let doc_id = found
        .doc
        .get("id")
        .or_else(|| found.doc.get("metadata").and_then(|m| m.get("id")))
        .and_then(|v| v.as_str());
    match doc_id {
        Some(id) if id != r.id => Err(format!(
            "subworkflow_id \"{}\" does not match the id \"{id}\" of sub-workflow {}",
            r.id, found.key
        )),
        _ => Ok(()),
    }
}

fn port_name(wf: &Workflow, idx: usize, default: &str) -> String {
    wf.nodes[idx]
        .config_entry("port_name")
        .and_then(|e| e.raw.as_str())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(default)
        .trim()
        .to_string()
}

fn is_exec_port(item: &serde_json::Value, name: &str) -> bool {
    let ty = item.get("type").and_then(|t| t.as_str()).unwrap_or("");
    ty.eq_ignore_ascii_case("execution") || name.to_ascii_lowercase().contains("exec")
}

/// The named data ports of the document's `inputs` or `outputs` list, first of each name.
fn port_items<'d>(doc: &'d serde_json::Value, list: &str) -> Vec<(&'d str, &'d serde_json::Value)> {
    let mut out: Vec<(&str, &serde_json::Value)> = Vec::new();
    for item in doc
        .get(list)
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let Some(name) = item.get("name").and_then(|n| n.as_str()) else {
            continue;
        };
        if !is_exec_port(item, name) && !out.iter().any(|(n, _)| *n == name) {
            out.push((name, item));
        }
    }
    out
}

fn declared_inputs(doc: &serde_json::Value, wf: &Workflow) -> Vec<InputPort> {
    let mut out: Vec<InputPort> = Vec::new();
    for (name, item) in port_items(doc, "inputs") {
        let default = item
            .get("default_value")
            .or_else(|| item.get("default"))
            .map_or(Value::Null, Value::from_json);
        out.push(InputPort {
            name: name.to_string(),
            default,
            required: item.get("required").and_then(|r| r.as_bool()) == Some(true),
        });
    }
    for idx in nodes_of(wf, "SubflowInputNode") {
        let name = port_name(wf, idx, "input");
        if !out.iter().any(|p| p.name == name) {
            out.push(InputPort {
                name,
                default: Value::Null,
                required: false,
            });
        }
    }
    out
}

fn declared_outputs(doc: &serde_json::Value, wf: &Workflow) -> Vec<OutputPort> {
    let mut out: Vec<OutputPort> = Vec::new();
    let text = |item: &serde_json::Value, keys: [&str; 2]| {
        keys.iter()
            .find_map(|k| item.get(*k).and_then(|v| v.as_str()))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    for (name, item) in port_items(doc, "outputs") {
        let node = text(item, ["source_node_id", "internal_node_id"]);
        let port = text(item, ["source_port", "internal_port_name"]);
        out.push(OutputPort {
            name: name.to_string(),
            source: node.zip(port),
        });
    }
    for idx in nodes_of(wf, "SubflowOutputNode") {
        let name = port_name(wf, idx, "output");
        if !out.iter().any(|p| p.name == name) {
            out.push(OutputPort { name, source: None });
        }
    }
    out
}

fn nodes_of<'w>(wf: &'w Workflow, node_type: &'w str) -> impl Iterator<Item = usize> + 'w {
    (0..wf.nodes.len()).filter(move |&i| wf.nodes[i].def.node_type == node_type)
}

fn starts_with_call_trigger(wf: &Workflow) -> bool {
    let start = &wf.nodes[wf.start];
    let is_trigger = |i: usize| wf.nodes[i].def.node_type == "WorkflowCallTriggerNode";
    // A trigger has no exec input: it is the start, or the (implicit) start leads to it.
    is_trigger(wf.start) || start.targets("exec_out").iter().any(|&i| is_trigger(i))
}

// ---- running -----------------------------------------------------------------------------

/// How a call node hands data to its child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// SubflowNode: declared inputs and outputs.
    Subflow,
    /// CallSubworkflowNode: declared inputs and outputs, plus `success`, `execution_time_ms`,
    /// `job_id`, under `timeout_seconds`.
    CallSubworkflow,
    /// ExecuteWorkflowNode: the parent's variables, shared both ways.
    ExecuteWorkflow,
}

/// Run the sub-workflow of the call node `ctx` is running (see the module docs).
pub fn run_call(ctx: &mut NodeCtx<'_>, kind: CallKind) -> Result<Flow, NodeError> {
    let idx = ctx.node_index();
    let Some(sub) = ctx.workflow().subflows.get(idx).cloned() else {
        return Err(NodeError::new(
            "RuntimeError",
            "its sub-workflow was not loaded with the workflow",
        ));
    };
    let depth = ctx.var(DEPTH_VAR).and_then(Value::as_i64).unwrap_or(0);
    if depth >= MAX_CALL_DEPTH {
        return Err(NodeError::new(
            "RecursionError",
            format!(
                "sub-workflow calls nest deeper than {MAX_CALL_DEPTH} levels (calling {} at depth {})",
                sub.key,
                depth + 1
            ),
        ));
    }
    let (until, limit) = child_deadline(ctx, kind)?;
    let state = match resumed_state(ctx, &sub)? {
        Some(state) => state,
        None => fresh_state(ctx, &sub, kind, depth)?,
    };
    let mut state = state;
    // The child uses the caller's resources (a browser or database opened before the call), and
    // what it opens stays open for the caller; the outermost run closes them all.
    state.resources = ctx.state.resources.clone();
    let outcome = execute_child(ctx, &sub, state, until);
    finish_call(ctx, &sub, kind, outcome, limit)
}

/// The child's deadline: the call node's, or `timeout_seconds` of a CallSubworkflowNode when
/// that comes first (then its text names it).
fn child_deadline(
    ctx: &NodeCtx<'_>,
    kind: CallKind,
) -> Result<(Instant, Option<String>), NodeError> {
    let mut until = ctx.deadline();
    let mut limit = None;
    if kind == CallKind::CallSubworkflow {
        let secs = ctx.param_i64("timeout_seconds")?;
        if !(1..=86_400).contains(&secs) {
            return Err(NodeError::value(format!(
                "timeout_seconds must be 1 to 86400, got {secs}"
            )));
        }
        let own = Instant::now() + Duration::from_secs(secs as u64);
        if own < until {
            until = own;
            limit = Some(format!("timeout_seconds = {secs}"));
        }
    }
    Ok((until, limit))
}

/// The child state saved in this call node's frame (a resume), if any.
fn resumed_state(ctx: &mut NodeCtx<'_>, sub: &Subflow) -> Result<Option<RunState>, NodeError> {
    let idx = ctx.node_index();
    match ctx.state.call.take() {
        Some(frame) if frame.node == idx && frame.key == sub.key => {
            if frame.state.executed.len() != sub.wf.nodes.len() {
                return Err(NodeError::new(
                    "RuntimeError",
                    format!(
                        "the saved state of sub-workflow {} does not fit it ({} nodes saved, {} now)",
                        sub.key,
                        frame.state.executed.len(),
                        sub.wf.nodes.len()
                    ),
                ));
            }
            Ok(Some(frame.state))
        }
        _ => Ok(None),
    }
}

/// A new child state: inputs as variables, SubflowInputNode outputs preset.
fn fresh_state(
    ctx: &NodeCtx<'_>,
    sub: &Subflow,
    kind: CallKind,
    depth: i64,
) -> Result<RunState, NodeError> {
    let mut inputs = match kind {
        CallKind::ExecuteWorkflow => ctx.state.variables.clone(),
        _ => call_inputs(ctx, sub)?,
    };
    if sub.call_trigger {
        let payload = trigger_payload(ctx, &inputs);
        inputs.insert("trigger_payload".into(), payload);
    }
    let preset: Vec<(usize, Value)> = nodes_of(&sub.wf, "SubflowInputNode")
        .map(|i| {
            let name = port_name(&sub.wf, i, "input");
            (i, inputs.get(&name).cloned().unwrap_or(Value::Null))
        })
        .collect();
    inputs.insert(DEPTH_VAR.into(), Value::Int(depth + 1));
    let mut state = RunState::new(&sub.wf, inputs, ctx.options());
    for (i, value) in preset {
        if !value.is_null() {
            state.outputs[i] = Value::dict_from([("value", value)]);
        }
    }
    Ok(state)
}

/// What a child entered by a `WorkflowCallTriggerNode` gets as `trigger_payload`: the call's
/// inputs, and the fields named like that trigger's output ports (`params`: the inputs again,
/// `caller_workflow_id`, `caller_node_id`, `call_id`), which the trigger node copies to them.
fn trigger_payload(ctx: &NodeCtx<'_>, inputs: &Dict) -> Value {
    let mut payload: Dict = inputs
        .iter()
        .filter(|(k, _)| !k.starts_with('_'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let params = Value::dict(payload.clone());
    payload.insert("params".into(), params);
    payload.insert("caller_workflow_id".into(), Value::str(&ctx.wf.name));
    payload.insert("caller_node_id".into(), Value::str(ctx.node_id()));
    let call_id = format!("{}#{}", ctx.node_id(), ctx.state.executions);
    payload.insert("call_id".into(), Value::str(call_id));
    Value::dict(payload)
}

/// Declared inputs: the call node's data port, else its config, else the default.
fn call_inputs(ctx: &NodeCtx<'_>, sub: &Subflow) -> Result<Dict, NodeError> {
    let mut inputs = Dict::new();
    for port in &sub.inputs {
        let value = match ctx.param(&port.name) {
            Value::Null => port.default.clone(),
            v => v,
        };
        if value.is_null() {
            if port.required {
                return Err(NodeError::value(format!(
                    "required input '{}' of sub-workflow {} has no value (connect a data edge \
                     to port '{}' or set config \"{}\")",
                    port.name, sub.key, port.name, port.name
                )));
            }
            continue;
        }
        inputs.insert(port.name.clone(), value);
    }
    Ok(inputs)
}

/// Run the child to its end with the frame observer; the call node stays at the front of the
/// parent's queue meanwhile (so a saved parent state resumes into the call).
fn execute_child(
    ctx: &mut NodeCtx<'_>,
    sub: &Subflow,
    state: RunState,
    until: Instant,
) -> RunOutcome {
    let idx = ctx.node_index();
    let wf: &Workflow = ctx.wf;
    let percent = super::runner::percent(ctx.state, wf);
    let prior = Duration::from_millis(state.prior_elapsed_ms);
    let opts = RunOptions {
        job_timeout: until.saturating_duration_since(Instant::now()) + prior,
        ..ctx.opts.clone()
    };
    let cap = ctx.opts.max_node_records;
    let cancel = ctx.cancel;
    let call_id = wf.nodes[idx].id.as_str();
    let NodeCtx {
        state: parent,
        observer,
        ..
    } = ctx;
    parent.queue.push_front(idx);
    let outcome = {
        let mut frames = FrameObserver {
            parent,
            outer: observer.as_deref_mut(),
            call_idx: idx,
            call_id,
            key: &sub.key,
            percent,
        };
        runner::resume_within(&sub.wf, state, &opts, cancel, &mut frames)
    };
    if parent.queue.front() == Some(&idx) {
        parent.queue.pop_front();
    }
    parent.call = None;
    adopt_records(parent, call_id, &outcome, cap);
    outcome
}

/// The child's node executions join the parent's, with `<call_id>/` ids.
fn adopt_records(parent: &mut RunState, call_id: &str, outcome: &RunOutcome, cap: usize) {
    // The call itself was counted when it started; its record follows its child's.
    let base = parent.executions.saturating_sub(1);
    for r in &outcome.node_records {
        if parent.node_records.len() >= cap {
            break;
        }
        parent.node_records.push(NodeRecord {
            node_id: format!("{call_id}/{}", r.node_id),
            order: base + r.order,
            ..r.clone()
        });
    }
    parent.executions += outcome.node_executions;
}

/// Turn the child's outcome into the call node's result.
fn finish_call(
    ctx: &mut NodeCtx<'_>,
    sub: &Subflow,
    kind: CallKind,
    outcome: RunOutcome,
    limit: Option<String>,
) -> Result<Flow, NodeError> {
    let ms = outcome.duration.as_millis() as i64;
    match outcome.status {
        RunStatus::Completed => {
            match kind {
                CallKind::ExecuteWorkflow => share_back(ctx, &outcome),
                _ => set_outputs(ctx, sub, &outcome),
            }
            if kind == CallKind::CallSubworkflow {
                ctx.set_output("success", Value::Bool(true));
                ctx.set_output("execution_time_ms", Value::Int(ms));
                ctx.set_output("job_id", Value::Null);
            }
            Ok(Flow::Next)
        }
        RunStatus::Cancelled => {
            let message = outcome
                .error
                .as_ref()
                .map_or_else(|| "cancelled".to_string(), |e| e.message.clone());
            if let Some(state) = outcome.state {
                ctx.state.call = Some(Box::new(CallFrame {
                    node: ctx.node_index(),
                    key: sub.key.clone(),
                    state: *state,
                }));
            }
            Err(NodeError::cancelled(message))
        }
        RunStatus::Failed | RunStatus::TimedOut => {
            let error = child_error(sub, &outcome, limit);
            if !ctx.has_route("error") {
                return Err(error);
            }
            if kind == CallKind::CallSubworkflow {
                ctx.set_output("success", Value::Bool(false));
                ctx.set_output("execution_time_ms", Value::Int(ms));
            }
            ctx.log(log::Level::Warn, format!("routed to 'error': {error}"));
            Ok(Flow::port("error"))
        }
    }
}

/// The call node's error for a failed or timed-out child: it names the inner node.
fn child_error(sub: &Subflow, outcome: &RunOutcome, limit: Option<String>) -> NodeError {
    let inner = outcome.error.clone().unwrap_or(RunError {
        node_id: String::new(),
        node_type: String::new(),
        error_type: "RuntimeError".into(),
        message: "failed".into(),
    });
    if outcome.status == RunStatus::TimedOut {
        let which = limit.unwrap_or_else(|| "the call node's timeout or the job's".into());
        let at = if inner.node_id.is_empty() {
            String::new()
        } else {
            format!(" at {} ({})", inner.node_id, inner.node_type)
        };
        return NodeError::timeout(format!(
            "sub-workflow {} did not finish in time ({which}){at}",
            sub.key
        ));
    }
    NodeError::new(
        inner.error_type.clone(),
        format!("sub-workflow {} failed: {inner}", sub.key),
    )
}

/// Declared outputs onto the call node's same-named ports (null values are not set).
fn set_outputs(ctx: &mut NodeCtx<'_>, sub: &Subflow, outcome: &RunOutcome) {
    for port in &sub.outputs {
        let value = output_value(sub, outcome, port);
        if !value.is_null() {
            ctx.set_output(&port.name, value);
        }
    }
}

fn node_port(outcome: &RunOutcome, node: &str, port: &str) -> Value {
    match outcome.node_outputs.get(node) {
        Some(Value::Dict(d)) => d.get(port).cloned().unwrap_or(Value::Null),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// One output: the declared source node's port, else what flows into a SubflowOutputNode of
/// that name, else the child variable of that name.
fn output_value(sub: &Subflow, outcome: &RunOutcome, port: &OutputPort) -> Value {
    if let Some((node, p)) = &port.source {
        let v = node_port(outcome, node, p);
        if !v.is_null() {
            return v;
        }
    }
    for i in nodes_of(&sub.wf, "SubflowOutputNode") {
        if port_name(&sub.wf, i, "output") != port.name {
            continue;
        }
        for edge in sub.wf.nodes[i]
            .data_in
            .iter()
            .filter(|e| &*e.dst_port == "value")
        {
            let v = node_port(outcome, &sub.wf.nodes[edge.src].id, &edge.src_port);
            if !v.is_null() {
                return v;
            }
        }
    }
    outcome
        .variables
        .get(&port.name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// ExecuteWorkflowNode: the child's variables (internal `_` names excepted) come back.
fn share_back(ctx: &mut NodeCtx<'_>, outcome: &RunOutcome) {
    for (name, value) in &outcome.variables {
        if name.starts_with('_') {
            continue;
        }
        let unchanged = ctx
            .state
            .variables
            .get(name)
            .is_some_and(|old| old == value);
        if !unchanged {
            ctx.set_var(name, value.clone());
        }
    }
}

/// The parent's observer as the child's: inner nodes appear as `<call_id>/<inner_id>` at the
/// call node's index and progress, and each completion hands on the parent's state with the
/// child's in its frame (what a checkpoint stores).
struct FrameObserver<'p, 'o> {
    parent: &'p mut RunState,
    outer: Option<&'p mut (dyn Observer + 'o)>,
    call_idx: usize,
    call_id: &'p str,
    key: &'p str,
    percent: u8,
}

impl FrameObserver<'_, '_> {
    fn id(&self, inner: &str) -> String {
        format!("{}/{inner}", self.call_id)
    }
}

impl Observer for FrameObserver<'_, '_> {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        let id = self.id(ev.node_id);
        if let Some(outer) = self.outer.as_deref_mut() {
            outer.node_started(&NodeEvent {
                node_index: self.call_idx,
                node_id: &id,
                percent: self.percent,
                ..*ev
            });
        }
    }

    fn node_completed(&mut self, ev: &NodeEvent<'_>, state: &RunState) {
        let id = self.id(ev.node_id);
        let Some(outer) = self.outer.as_deref_mut() else {
            return;
        };
        if outer.wants_state() {
            self.parent.call = Some(Box::new(CallFrame {
                node: self.call_idx,
                key: self.key.to_string(),
                state: state.clone(),
            }));
        }
        outer.node_completed(
            &NodeEvent {
                node_index: self.call_idx,
                node_id: &id,
                percent: self.percent,
                ..*ev
            },
            self.parent,
        );
    }

    fn node_failed(&mut self, ev: &NodeEvent<'_>, error: &RunError, what_next: FailureDisposition) {
        let id = self.id(ev.node_id);
        if let Some(outer) = self.outer.as_deref_mut() {
            let error = RunError {
                node_id: id.clone(),
                ..error.clone()
            };
            outer.node_failed(
                &NodeEvent {
                    node_index: self.call_idx,
                    node_id: &id,
                    percent: self.percent,
                    ..*ev
                },
                &error,
                what_next,
            );
        }
    }

    fn node_log(&mut self, ev: &NodeEvent<'_>, log: &NodeLog) {
        let id = self.id(ev.node_id);
        if let Some(outer) = self.outer.as_deref_mut() {
            outer.node_log(
                &NodeEvent {
                    node_index: self.call_idx,
                    node_id: &id,
                    percent: self.percent,
                    ..*ev
                },
                log,
            );
        }
    }

    fn wants_state(&self) -> bool {
        self.outer.as_deref().is_some_and(|o| o.wants_state())
    }
}

#[cfg(test)]
#[path = "subflow_tests.rs"]
mod tests;

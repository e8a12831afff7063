//! The contract between the engine and node implementations.
//!
//! A node type is a static [`NodeDef`]: its parameters (each one an input port that can also be set
//! in `config`), its data outputs, the routing ports it may choose, and a plain `run` function.
//! Parameters resolve as decided in `engine.md`: the value of a connected data edge when non-null,
//! else `config[name]` (templated), else the declared default. `run` returns a [`Flow`] (where the
//! path goes next) or a [`NodeError`]; the runner does everything else (timeouts, retries, try/catch,
//! checkpoints, progress).

use super::expr;
use super::model::Workflow;
use super::runner::{RunOptions, RunState, StateScope};
use super::template::{self, Scope};
use super::value::{Dict, Value};
use super::CancelToken;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A compile-time default for a parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lit {
    /// No default (`None`).
    Null,
    /// A bool default.
    Bool(bool),
    /// An int default.
    Int(i64),
    /// A float default.
    Float(f64),
    /// A string default.
    Str(&'static str),
}

impl Lit {
    /// The default as a runtime value.
    pub fn to_value(self) -> Value {
        match self {
            Lit::Null => Value::Null,
            Lit::Bool(b) => Value::Bool(b),
            Lit::Int(i) => Value::Int(i),
            Lit::Float(f) => Value::Float(f),
            Lit::Str(s) => Value::str(s),
        }
    }
}

/// One parameter of a node type.
#[derive(Clone, Copy, Debug)]
pub struct ParamDef {
    /// Port / config key name.
    pub name: &'static str,
    /// Default when neither a data edge nor config gives a value.
    pub default: Lit,
    /// A required parameter must resolve to a non-null value; the loader checks this statically.
    pub required: bool,
}

/// An optional parameter with a default.
pub const fn opt(name: &'static str, default: Lit) -> ParamDef {
    ParamDef {
        name,
        default,
        required: false,
    }
}

/// A required parameter (no default).
pub const fn req(name: &'static str) -> ParamDef {
    ParamDef {
        name,
        default: Lit::Null,
        required: true,
    }
}

/// How the runner treats a node type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// Runs at most once per pass (a second arrival is skipped, as upstream).
    Plain,
    /// Control flow: may run many times (loops, branches, try/catch).
    ControlFlow,
}

/// The signature of a node implementation.
pub type RunFn = fn(&mut NodeCtx<'_>) -> Result<Flow, NodeError>;

/// A node type: its schema and its implementation.
#[derive(Clone, Copy)]
pub struct NodeDef {
    /// The CasareRPA type name (`SetVariableNode`).
    pub node_type: &'static str,
    /// Parameters (input ports that may also come from config).
    pub params: &'static [ParamDef],
    /// Data output ports.
    pub outputs: &'static [&'static str],
    /// Routing (exec) output ports; most nodes have just `exec_out`.
    pub routes: &'static [&'static str],
    /// Plain or control flow.
    pub kind: NodeKind,
    /// True when ports depend on config (super nodes): edges are not checked against the schema.
    pub dynamic_ports: bool,
    /// The implementation.
    pub run: RunFn,
}

impl std::fmt::Debug for NodeDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDef")
            .field("node_type", &self.node_type)
            .finish()
    }
}

/// The routing ports of an ordinary node.
pub const EXEC_OUT: &[&str] = &["exec_out"];

impl NodeDef {
    /// An ordinary node: routes along `exec_out`.
    pub const fn plain(
        node_type: &'static str,
        params: &'static [ParamDef],
        outputs: &'static [&'static str],
        run: RunFn,
    ) -> NodeDef {
        NodeDef {
            node_type,
            params,
            outputs,
            routes: EXEC_OUT,
            kind: NodeKind::Plain,
            dynamic_ports: false,
            run,
        }
    }

    /// The declared parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Where the path goes after a node succeeded.
#[derive(Clone, Debug, PartialEq)]
pub enum Flow {
    /// Follow the `exec_out` edges.
    Next,
    /// Follow the edges of one named routing port (`true`, `body`, `case_x`, ...).
    Port(Cow<'static, str>),
    /// This path ends here.
    End,
    /// Run this node next (used by Catch to hand an error it does not take to the Finally).
    Goto(usize),
    /// Jump back to a loop start (by node index), clearing the loop body's executed marks.
    LoopBack(usize),
}

impl Flow {
    /// Route along a static port name.
    pub const fn port(name: &'static str) -> Flow {
        Flow::Port(Cow::Borrowed(name))
    }
}

/// A node failure: a Python-style error type and a message.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeError {
    /// Python-style error class (`ValueError`, `TypeError`, `KeyError`, `TimeoutError`, ...).
    pub kind: Cow<'static, str>,
    /// Human message (without the node id, which the runner adds).
    pub message: String,
}

impl NodeError {
    /// An error of a given kind.
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<String>) -> NodeError {
        NodeError {
            kind: kind.into(),
            message: message.into(),
        }
    }
    /// `ValueError`.
    pub fn value(message: impl Into<String>) -> NodeError {
        NodeError::new("ValueError", message)
    }
    /// `TypeError`.
    pub fn type_error(message: impl Into<String>) -> NodeError {
        NodeError::new("TypeError", message)
    }
    /// `KeyError`.
    pub fn key(message: impl Into<String>) -> NodeError {
        NodeError::new("KeyError", message)
    }
    /// `IndexError`.
    pub fn index(message: impl Into<String>) -> NodeError {
        NodeError::new("IndexError", message)
    }
    /// `TimeoutError`.
    pub fn timeout(message: impl Into<String>) -> NodeError {
        NodeError::new("TimeoutError", message)
    }
    /// The job was cancelled while this node ran.
    pub fn cancelled(message: impl Into<String>) -> NodeError {
        NodeError::new(CANCELLED, message)
    }
    /// True when this error means "cancelled", not "failed".
    pub fn is_cancelled(&self) -> bool {
        self.kind == CANCELLED
    }
}

/// The error kind used for cancellation.
pub const CANCELLED: &str = "CancelledError";

/// The error kind of a value that would pass the run's value budget.
pub const MEMORY_ERROR: &str = "MemoryError";

/// A value that would pass the run's value budget (`RunOptions::max_value_bytes`): the error a
/// node fails with.
pub fn over_budget_error(what: &str, total_bytes: u64, opts: &RunOptions) -> NodeError {
    const MB: f64 = 1024.0 * 1024.0;
    NodeError::new(
        MEMORY_ERROR,
        format!(
            "{what} would bring this run's values to at least {:.1} MB, over the limit of {} MB \
             (max_value_mb); keep less data in variables or process it in parts",
            total_bytes as f64 / MB,
            opts.max_value_bytes as f64 / MB
        ),
    )
}

/// The unwind payload that aborts a node the moment a value would pass the run's budget, from
/// places that cannot return an error (parameter templates, `set_var`). It is raised with
/// `resume_unwind` (no panic message) and turned back into its error at the node boundary,
/// before the node can act on a half-built value.
pub(crate) struct OverBudget(pub(crate) NodeError);

/// The text a caught panic carries (`panic!` with a literal or a formatted message).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A node's caught panic as its error: a value budget's abort ([`OverBudget`]) gives the budget
/// error it carries, any other panic an `InternalError` saying the node panicked.
pub(crate) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> NodeError {
    match payload.downcast::<OverBudget>() {
        Ok(over) => over.0,
        Err(other) => NodeError::new(
            "InternalError",
            format!("node panicked: {}", panic_text(&*other)),
        ),
    }
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<expr::ExprError> for NodeError {
    fn from(e: expr::ExprError) -> NodeError {
        NodeError::new(e.kind, e.message)
    }
}

/// A log line emitted by a node (LogNode and friends).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeLog {
    /// Level.
    pub level: log::Level,
    /// Message text.
    pub message: String,
}

/// What a node sees while it runs.
pub struct NodeCtx<'a> {
    pub(crate) wf: &'a Workflow,
    pub(crate) idx: usize,
    pub(crate) state: &'a mut RunState,
    pub(crate) opts: &'a RunOptions,
    pub(crate) cancel: &'a CancelToken,
    pub(crate) deadline: Instant,
    pub(crate) outputs: Dict,
    pub(crate) logs: Vec<NodeLog>,
    /// The run's observer (a sub-workflow reports its nodes through it).
    pub(crate) observer: Option<&'a mut dyn super::runner::Observer>,
}

impl<'a> NodeCtx<'a> {
    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.wf.nodes[self.idx].id
    }

    /// This node's type name.
    pub fn node_type(&self) -> &'static str {
        self.wf.nodes[self.idx].def.node_type
    }

    /// This node's index in the workflow.
    pub fn node_index(&self) -> usize {
        self.idx
    }

    /// The run options (timeouts, safety switches).
    pub fn options(&self) -> &RunOptions {
        self.opts
    }

    /// The workflow being run.
    pub fn workflow(&self) -> &Workflow {
        self.wf
    }

    fn scope(&self) -> StateScope<'_> {
        StateScope {
            state: self.state,
            wf: self.wf,
        }
    }

    /// The value of a connected data edge into `name`, if any arrived (non-null).
    pub fn port_value(&self, name: &str) -> Option<&Value> {
        self.state.inputs.get(&self.idx).and_then(|ports| {
            ports
                .iter()
                .find(|(p, v)| p.as_str() == name && !v.is_null())
                .map(|(_, v)| v)
        })
    }

    /// The raw (untemplated) config value for `name`, when present and non-null.
    pub fn raw_config(&self, name: &str) -> Option<&Value> {
        self.wf.nodes[self.idx]
            .config_entry(name)
            .map(|e| &e.raw)
            .filter(|v| !v.is_null())
    }

    /// True when the node's config has a non-null `name`.
    pub fn has_config(&self, name: &str) -> bool {
        self.raw_config(name).is_some()
    }

    /// Resolve parameter `name`: data edge, else config (templated), else default, else `Null`.
    pub fn param(&self, name: &str) -> Value {
        if let Some(v) = self.port_value(name) {
            return v.clone();
        }
        let node = &self.wf.nodes[self.idx];
        if let Some(entry) = node.config_entry(name) {
            if !entry.raw.is_null() {
                return entry
                    .resolve_capped(&self.scope(), self.value_room())
                    .unwrap_or_else(|needed| {
                        self.abort_over_budget(&format!("input '{name}'"), needed)
                    });
            }
        }
        node.def
            .param(name)
            .map_or(Value::Null, |p| p.default.to_value())
    }

    /// Like [`NodeCtx::param`] but `Null` is an error naming the parameter.
    pub fn require(&self, name: &str) -> Result<Value, NodeError> {
        match self.param(name) {
            Value::Null => Err(NodeError::value(format!(
                "required input '{name}' has no value"
            ))),
            v => Ok(v),
        }
    }

    /// The parameter as text (`None` → empty string, others via Python `str()`).
    pub fn param_str(&self, name: &str) -> String {
        match self.param(name) {
            Value::Null => String::new(),
            v => v.py_str(),
        }
    }

    /// The parameter as an integer (ints, integral floats, bools, numeric text).
    pub fn param_i64(&self, name: &str) -> Result<i64, NodeError> {
        let v = self.param(name);
        to_i64(&v).ok_or_else(|| bad_param(name, &v, "an integer"))
    }

    /// An optional integer parameter: `None` when null or empty text.
    pub fn param_opt_i64(&self, name: &str) -> Result<Option<i64>, NodeError> {
        match self.param(name) {
            Value::Null => Ok(None),
            Value::Str(s) if s.trim().is_empty() => Ok(None),
            v => to_i64(&v)
                .map(Some)
                .ok_or_else(|| bad_param(name, &v, "an integer")),
        }
    }

    /// The parameter as a float (numbers, numeric text).
    pub fn param_f64(&self, name: &str) -> Result<f64, NodeError> {
        let v = self.param(name);
        to_f64(&v).ok_or_else(|| bad_param(name, &v, "a number"))
    }

    /// The parameter as a bool: bools as is, text `true/1/yes/on` and `false/0/no/off/""`,
    /// other values by truthiness.
    pub fn param_bool(&self, name: &str) -> bool {
        to_bool(&self.param(name))
    }

    /// A list parameter with CasareRPA's indirection: a list is used as is; text naming a variable
    /// (with or without `{{ }}`) yields that variable's list; JSON array text is parsed; a missing
    /// variable yields an empty list. Other values are a type error.
    pub fn param_list(&self, name: &str) -> Result<Arc<Vec<Value>>, NodeError> {
        let v = self.param(name);
        self.value_as_list(name, v)
    }

    /// Convert `v` to a list with the rules of [`NodeCtx::param_list`].
    pub fn value_as_list(&self, name: &str, v: Value) -> Result<Arc<Vec<Value>>, NodeError> {
        match v {
            Value::List(l) => Ok(l),
            Value::Null => Ok(Arc::new(Vec::new())),
            Value::Str(s) => {
                let t = s.trim();
                if t.starts_with('[') {
                    if let Ok(Value::List(l)) = Value::parse_json(t) {
                        return Ok(l);
                    }
                }
                let var = t.trim_start_matches("{{").trim_end_matches("}}").trim();
                match self.var(var) {
                    Some(Value::List(l)) => Ok(l.clone()),
                    Some(other) => Err(bad_param(name, other, "a list")),
                    None => Ok(Arc::new(Vec::new())),
                }
            }
            other => Err(bad_param(name, &other, "a list")),
        }
    }

    /// A dict parameter: a dict as is, JSON object text parsed, `Null` as an empty dict.
    pub fn param_dict(&self, name: &str) -> Result<Arc<Dict>, NodeError> {
        match self.param(name) {
            Value::Dict(d) => Ok(d),
            Value::Null => Ok(Arc::new(Dict::new())),
            Value::Str(s) if s.trim_start().starts_with('{') => match Value::parse_json(&s) {
                Ok(Value::Dict(d)) => Ok(d),
                _ => Err(NodeError::value(format!(
                    "input '{name}' is not a dictionary: {}",
                    short(&s)
                ))),
            },
            other => Err(NodeError::type_error(format!(
                "input '{name}' is not a dictionary (got {}: {})",
                other.type_name(),
                short(&other.py_str())
            ))),
        }
    }

    /// A path parameter, checked and resolved by the safety rules (`engine::safety::check_path`):
    /// `..`, NUL bytes and device names refused, env vars expanded, confined to `allowed_paths`.
    pub fn path_param(&self, name: &str) -> Result<std::path::PathBuf, NodeError> {
        let raw = self.param_str(name);
        if raw.trim().is_empty() {
            return Err(NodeError::value(format!(
                "required input '{name}' has no value"
            )));
        }
        super::safety::check_path(&raw, &self.opts.safety)
    }

    /// A workflow variable (or a node's outputs, by node id).
    pub fn var(&self, name: &str) -> Option<&Value> {
        StateScope {
            state: self.state,
            wf: self.wf,
        }
        .lookup(name)
    }

    /// Set a workflow variable. A value that would take the run past its value budget aborts
    /// the node with a `MemoryError` and leaves the variable as it was.
    pub fn set_var(&mut self, name: &str, value: Value) {
        let cap = self.opts.max_value_bytes;
        let new = super::runner::var_bytes(name, &value, cap);
        let old = self
            .state
            .variables
            .get(name)
            .map_or(0, |v| super::runner::var_bytes(name, v, cap));
        let total = self
            .state
            .value_bytes
            .saturating_sub(old)
            .saturating_add(new);
        if new > old && total > cap {
            self.abort_at_total(&format!("variable '{name}'"), total);
        }
        self.state.value_bytes = total;
        if let Some(slot) = self.state.variables.get_mut(name) {
            *slot = value;
        } else {
            self.state.variables.insert(name.to_string(), value);
        }
        self.state.vars_changed = true;
    }

    /// Remove a workflow variable.
    pub fn remove_var(&mut self, name: &str) -> Option<Value> {
        self.state.vars_changed = true;
        let removed = self.state.variables.shift_remove(name)?;
        let bytes = super::runner::var_bytes(name, &removed, self.opts.max_value_bytes);
        self.state.value_bytes = self.state.value_bytes.saturating_sub(bytes);
        Some(removed)
    }

    /// Bytes left in this run's value budget (`max_value_mb` less what variables and node
    /// outputs hold now).
    pub fn value_room(&self) -> u64 {
        self.opts
            .max_value_bytes
            .saturating_sub(self.state.value_bytes)
    }

    /// For a node that knows a result's size before building it: a `MemoryError` when `bytes`
    /// more (as [`Value::budget_size`] counts them) would pass the run's value budget, so the
    /// node fails before the allocation.
    pub fn check_value_budget(&self, what: &str, bytes: u64) -> Result<(), NodeError> {
        if bytes > self.value_room() {
            return Err(over_budget_error(
                what,
                self.state.value_bytes.saturating_add(bytes),
                self.opts,
            ));
        }
        Ok(())
    }

    /// Abort the node (see [`OverBudget`]): `what` needs `bytes` on top of what the run holds.
    fn abort_over_budget(&self, what: &str, bytes: u64) -> ! {
        self.abort_at_total(what, self.state.value_bytes.saturating_add(bytes))
    }

    fn abort_at_total(&self, what: &str, total: u64) -> ! {
        std::panic::resume_unwind(Box::new(OverBudget(over_budget_error(
            what, total, self.opts,
        ))))
    }

    /// Set an output port value.
    pub fn set_output(&mut self, port: &str, value: Value) {
        if let Some(slot) = self.outputs.get_mut(port) {
            *slot = value;
        } else {
            self.outputs.insert(port.to_string(), value);
        }
    }

    /// Resolve templates inside `value` against the current variables.
    pub fn resolve(&self, value: &Value) -> Value {
        template::resolve_value_capped(value, &self.scope(), self.value_room())
            .unwrap_or_else(|needed| self.abort_over_budget("a templated value", needed))
    }

    /// Evaluate a Python-subset expression against the current variables.
    pub fn eval(&self, src: &str) -> Result<Value, NodeError> {
        let scope = self.scope();
        let parsed = cached_expr(src)?;
        Ok(parsed.eval(&|name: &str| scope.get(name).cloned())?)
    }

    /// Evaluate a condition as decided in `engine.md`: a bool as is; text is templated (references
    /// become variables of the expression, so they keep their type) then evaluated, with an
    /// evaluation error counting as false; other values by truthiness.
    pub fn condition(&self, v: &Value) -> bool {
        match v {
            Value::Bool(b) => *b,
            Value::Str(s) => self.eval_condition_text(s).unwrap_or(false),
            other => other.truthy(),
        }
    }

    /// Evaluate condition text; `Err` carries the evaluation error (Switch fails on it).
    pub fn eval_condition_text(&self, text: &str) -> Result<bool, NodeError> {
        Ok(self.eval_text(text)?.truthy())
    }

    /// Evaluate expression text that may contain `{{refs}}`. A whole reference yields its value;
    /// embedded references are rewritten to expression lookups first, and if that fails the text
    /// is templated and evaluated as upstream does.
    pub fn eval_text(&self, text: &str) -> Result<Value, NodeError> {
        let trimmed = text.trim();
        let Some(tmpl) = template::Template::compile(trimmed) else {
            return self.eval(trimmed);
        };
        let resolved = tmpl
            .resolve_capped(&self.scope(), self.value_room())
            .unwrap_or_else(|needed| self.abort_over_budget("a templated expression", needed));
        if tmpl.is_whole() {
            return match resolved {
                // A whole reference to text: that text is the expression (upstream evaluates it).
                Value::Str(s) if s.as_ref() != trimmed => self.eval(&s),
                Value::Str(_) => self.eval(&rewrite_refs(trimmed)),
                other => Ok(other),
            };
        }
        match self.eval(&rewrite_refs(trimmed)) {
            Ok(v) => Ok(v),
            Err(first) => match resolved {
                Value::Str(s) => self.eval(&s).map_err(|_| first),
                _ => Err(first),
            },
        }
    }

    /// Emit a log line (shown by `run`, forwarded to the orchestrator by the daemon).
    pub fn log(&mut self, level: log::Level, message: impl Into<String>) {
        self.logs.push(NodeLog {
            level,
            message: message.into(),
        });
    }

    /// The job's cancellation token.
    pub fn cancel_token(&self) -> &CancelToken {
        self.cancel
    }

    /// When this node must finish (the earlier of the node and job deadlines).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Sleep, waking early on cancellation (`Err` cancelled) or at the node deadline (`Err` timeout).
    pub fn sleep(&self, duration: Duration) -> Result<(), NodeError> {
        let wanted = Instant::now() + duration;
        let until = wanted.min(self.deadline);
        if self.cancel.sleep_until(until) {
            return Err(NodeError::cancelled("cancelled while waiting"));
        }
        if until < wanted {
            return Err(NodeError::timeout(format!(
                "timed out: waiting {:.3} s would pass the node deadline",
                duration.as_secs_f64()
            )));
        }
        Ok(())
    }

    /// The run's random source (seeded from [`RunOptions::seed`] when set).
    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.state.rng
    }

    /// True when routing port `port` of this node has at least one edge.
    pub fn has_route(&self, port: &str) -> bool {
        self.wf.nodes[self.idx]
            .routes
            .iter()
            .any(|(p, targets)| p == port && !targets.is_empty())
    }
}

/// Parsed expressions by source text, per thread: conditions in loops evaluate the same text
/// thousands of times. Bounded (cleared when full) so arbitrary generated text cannot grow it.
fn cached_expr(src: &str) -> Result<std::rc::Rc<expr::Expr>, expr::ExprError> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    const MAX_CACHED: usize = 512;
    thread_local! {
        static CACHE: RefCell<HashMap<String, Rc<expr::Expr>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        if let Some(hit) = cache.borrow().get(src) {
            return Ok(hit.clone());
        }
        let parsed = Rc::new(expr::Expr::parse(src)?);
        let mut cache = cache.borrow_mut();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        if src.len() <= 4096 {
            cache.insert(src.to_string(), parsed.clone());
        }
        Ok(parsed)
    })
}

/// Rewrite `{{a.b[0]}}` into the expression `a['b'][0]` so references keep their type.
pub fn rewrite_refs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let inner = after[..end].trim();
                match template::parse_path(inner) {
                    Some(path) if !path.root.starts_with('$') => {
                        out.push_str(&path.root);
                        for seg in &path.segments {
                            match seg {
                                template::Segment::Key(k) => {
                                    out.push_str("['");
                                    out.push_str(k);
                                    out.push_str("']");
                                }
                                template::Segment::Index(i) => {
                                    out.push('[');
                                    out.push_str(&i.to_string());
                                    out.push(']');
                                }
                            }
                        }
                    }
                    _ => {
                        out.push_str("{{");
                        out.push_str(&after[..end]);
                        out.push_str("}}");
                    }
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Convert to i64 like Python's `int()` on the kinds of values configs hold.
pub fn to_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18 => Some(*f as i64),
        Value::Str(s) => {
            let t = s.trim();
            t.parse::<i64>().ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
        }
        _ => None,
    }
}

/// Python `float(v)`: numbers, and text that parses as a float; errors carry Python's messages.
pub fn py_float(v: &Value) -> Result<f64, NodeError> {
    match v {
        Value::Str(s) => s.trim().parse::<f64>().map_err(|_| {
            NodeError::value(format!(
                "could not convert string to float: {}",
                v.py_repr()
            ))
        }),
        other => other.as_f64().ok_or_else(|| {
            NodeError::type_error(format!(
                "float() argument must be a string or a real number, not '{}'",
                other.type_name()
            ))
        }),
    }
}

/// Convert to f64 like Python's `float()`.
pub fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Str(s) => s.trim().parse::<f64>().ok(),
        other => other.as_f64(),
    }
}

/// Convert to bool with the text conventions of CasareRPA configs.
pub fn to_bool(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Str(s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "" | "false" | "0" | "no" | "off" | "none" | "null"
        ),
        other => other.truthy(),
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(77).collect();
        format!("{cut}...")
    } else {
        s.to_string()
    }
}

/// The standard "wrong type" error for a parameter.
pub fn bad_param(name: &str, v: &Value, expected: &str) -> NodeError {
    NodeError::type_error(format!(
        "input '{name}' must be {expected}, got {} {}",
        v.type_name(),
        short(&v.py_repr())
    ))
}

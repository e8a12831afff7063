//! The runner: executes a loaded [`Workflow`] node by node.
//!
//! Execution model (CasareRPA's, with the "intended" semantics of `engine.md`): a FIFO queue of node
//! indices starting at the start node; a node reached twice runs once unless it is control flow;
//! after a node succeeds its outputs are stored (`{{node_id.port}}`), and its [`Flow`] decides
//! which successors are queued. Loop ends jump back to their start and clear the body's executed
//! marks; a failure inside a Try is routed to its Catch (or Finally). Between nodes the runner
//! checks cancellation and the job deadline.
//!
//! All state that resuming needs lives in [`RunState`] (serde-serializable): queue, executed set,
//! variables, node outputs, input port values, loop and try states. An [`Observer`] sees every
//! node start, completion (with the state, for checkpoints), failure and log line.
//!
//! A run also lists its node executions ([`NodeRecord`], in execution order, one per attempt, at
//! most [`RunOptions::max_node_records`]): the per-node breakdown the orchestrator's job view
//! reads from `result.node_executions`. The list lives in memory only (not in checkpoints), so a
//! resumed run lists the executions since the resume; [`RunOutcome::node_records_omitted`] counts
//! the rest.

use super::model::Workflow;
use super::node::{Flow, NodeCtx, NodeError, NodeKind, NodeLog};
use super::template::Scope;
use super::value::{Dict, Value, VALUE_OVERHEAD};
use super::CancelToken;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// How deeply lists and dicts may nest inside a node output. Deeper values are refused, so no
/// workflow can build a value whose printing or dropping would exhaust the stack.
pub const MAX_VALUE_DEPTH: usize = 100;

/// Default total size of the values one run may hold (config `max_value_mb`).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 256 << 20;

/// Knobs for one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Per-node timeout (default 120 s).
    pub node_timeout: Duration,
    /// Whole-run timeout (default 3600 s).
    pub job_timeout: Duration,
    /// Retries per failing node unless the node's config says `retry_count` (default 0).
    pub node_max_retries: u32,
    /// First retry delay; doubles per attempt (default 1 s).
    pub node_initial_delay: Duration,
    /// Cap on the retry delay (default 30 s).
    pub node_max_delay: Duration,
    /// Seed for random nodes (reproducible runs); `None` seeds from the OS.
    pub seed: Option<u64>,
    /// Rules for file, network and command nodes.
    pub safety: super::safety::Safety,
    /// When a job is cancelled, how long its child processes get to stop after a polite request
    /// (SIGTERM on Unix) before they are killed.
    pub cancel_grace: Duration,
    /// The run's value budget: how many bytes its variables and node outputs may hold together,
    /// counted by [`Value::budget_size`] (default 256 MiB, config `max_value_mb`). A node whose
    /// result, variable or templated input would pass it fails with a `MemoryError`.
    pub max_value_bytes: u64,
    /// Node executions listed in the result (`node_executions`); later ones are only counted
    /// (default [`DEFAULT_MAX_NODE_RECORDS`]).
    pub max_node_records: usize,
    /// How many branches of one Fork (or items of one ParallelForEach) run at the same time
    /// (config `max_parallel_branches`, default [`super::parallel::DEFAULT_MAX_PARALLEL`]).
    pub max_parallel_branches: usize,
}

/// Default of [`RunOptions::max_node_records`].
pub const DEFAULT_MAX_NODE_RECORDS: usize = 200;

/// One node execution (one attempt) as the orchestrator's job view lists it in
/// `result.node_executions`: the fields its parser normalises each record to.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeRecord {
    /// The node's id.
    pub node_id: String,
    /// Its type.
    pub node_type: String,
    /// How long the attempt took, in whole milliseconds.
    pub duration_ms: u64,
    /// Whether the attempt succeeded.
    pub success: bool,
    /// Its place among the run's node executions, from 1 (loop iterations and retries counted).
    pub order: u64,
    /// When the attempt started (RFC 3339, UTC).
    pub start_time: String,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            node_timeout: Duration::from_secs(120),
            job_timeout: Duration::from_secs(3600),
            node_max_retries: 0,
            node_initial_delay: Duration::from_secs(1),
            node_max_delay: Duration::from_secs(30),
            seed: None,
            safety: super::safety::Safety::default(),
            cancel_grace: Duration::from_secs(10),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_node_records: DEFAULT_MAX_NODE_RECORDS,
            max_parallel_branches: super::parallel::DEFAULT_MAX_PARALLEL,
        }
    }
}

/// A For loop's items.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum LoopItems {
    /// A list (dict loops keep their keys).
    List {
        /// The items.
        items: Value,
        /// Dict keys, when looping over a dict.
        keys: Option<Value>,
    },
    /// `range(start, end, step)`, never materialised.
    Range {
        /// First value.
        start: i64,
        /// End (exclusive).
        end: i64,
        /// Step (non-zero).
        step: i64,
    },
}

impl LoopItems {
    /// Number of iterations.
    pub fn len(&self) -> u64 {
        match self {
            LoopItems::List { items, .. } => items.as_list().map_or(0, |l| l.len() as u64),
            LoopItems::Range { start, end, step } => {
                let (s, e, st) = (i128::from(*start), i128::from(*end), i128::from(*step));
                let n = if st > 0 && e > s {
                    (e - s + st - 1) / st
                } else if st < 0 && e < s {
                    (s - e - st - 1) / -st
                } else {
                    0
                };
                n as u64
            }
        }
    }

    /// True when there is nothing to iterate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item, index and key of iteration `i`.
    pub fn get(&self, i: u64) -> (Value, Option<Value>) {
        match self {
            LoopItems::List { items, keys } => {
                let idx = i as usize;
                let item = items
                    .as_list()
                    .and_then(|l| l.get(idx))
                    .cloned()
                    .unwrap_or_default();
                let key = keys
                    .as_ref()
                    .and_then(|k| k.as_list())
                    .and_then(|k| k.get(idx))
                    .cloned();
                (item, key)
            }
            LoopItems::Range { start, step, .. } => (
                Value::Int(start.saturating_add(step.saturating_mul(i as i64))),
                None,
            ),
        }
    }
}

/// A loop in progress.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum LoopState {
    /// For / ForEach.
    For {
        /// What is iterated.
        items: LoopItems,
        /// Next iteration.
        index: u64,
        /// Set by a Break node.
        break_requested: bool,
    },
    /// While.
    While {
        /// Iterations started so far.
        iteration: u64,
        /// Set by a Break node.
        break_requested: bool,
    },
}

impl LoopState {
    /// Ask the loop to stop at its next start.
    pub fn request_break(&mut self) {
        match self {
            LoopState::For {
                break_requested, ..
            }
            | LoopState::While {
                break_requested, ..
            } => *break_requested = true,
        }
    }
}

/// Where a Try block is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum TryStage {
    /// Running the protected body.
    Body,
    /// An error was routed to the Catch.
    Catch,
    /// Running the Finally.
    Finally,
}

/// An active Try block.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TryFrame {
    /// The TryNode's index.
    pub try_idx: usize,
    /// The stage.
    pub stage: TryStage,
    /// The captured error, if any.
    pub error: Option<RunError>,
    /// True once a Catch handled the error.
    pub handled: bool,
}

/// A node failure as reported by a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunError {
    /// The failing node's id (empty for run-level errors such as timeouts).
    pub node_id: String,
    /// Its type.
    pub node_type: String,
    /// Python-style error class.
    pub error_type: String,
    /// The message, without the node prefix.
    pub message: String,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.node_id.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} ({}): {}", self.node_id, self.node_type, self.message)
        }
    }
}

/// Everything needed to continue a run: what a checkpoint stores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    /// Pending node indices, in order.
    pub queue: VecDeque<usize>,
    /// Executed marks by node index.
    pub executed: Vec<bool>,
    /// Number of `true` marks in `executed`.
    pub n_executed: usize,
    /// Nodes that ran at least once in this run (never cleared by loops).
    pub visited: Vec<bool>,
    /// Number of `true` marks in `visited`.
    pub n_visited: usize,
    /// Workflow variables (user variables and job inputs).
    pub variables: Dict,
    /// Each node's latest outputs (`Null` before it ran).
    pub outputs: Vec<Value>,
    /// Values that arrived on data edges, by node index (they persist, as upstream).
    pub inputs: HashMap<usize, Vec<(String, Value)>>,
    /// Loops in progress, by loop start index.
    pub loops: HashMap<usize, LoopState>,
    /// Active Try blocks, innermost last.
    pub tries: Vec<TryFrame>,
    /// An error to raise once the queue drains (a Try with a Finally but no Catch).
    pub pending_error: Option<RunError>,
    /// Node executions so far (loops counted every time).
    pub executions: u64,
    /// Wall time spent executing before this process picked the run up (for resumed runs).
    pub prior_elapsed_ms: u64,
    /// A sub-workflow call in progress (its node is at the front of `queue`): the child run's
    /// state, so a resume continues inside it (`engine::subflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Box<super::subflow::CallFrame>>,
    /// Random source for random nodes.
    #[serde(skip, default = "fastrand::Rng::new")]
    pub rng: fastrand::Rng,
    /// Set when a node changed a variable (lets checkpoints skip unchanged variables).
    #[serde(skip)]
    pub vars_changed: bool,
    /// What variables and node outputs hold, counted for the value budget (recounted whenever a
    /// run starts or resumes, then kept up to date as they change).
    #[serde(skip)]
    pub value_bytes: u64,
    /// The budgeted size of each node's outputs (part of `value_bytes`).
    #[serde(skip)]
    output_bytes: Vec<u64>,
    /// Node executions of this process's part of the run (not checkpointed).
    #[serde(skip)]
    pub node_records: Vec<NodeRecord>,
    /// Fork / ParallelForEach nodes in progress: the branches or items that finished.
    #[serde(default)]
    pub parallel: super::parallel::ParallelProgress,
    /// Inside a Fork branch: the paired Join, where the branch's path stops.
    #[serde(skip)]
    pub(crate) stop_at: Option<usize>,
    /// The run's live resources (never serialised; see `engine::resources`).
    #[serde(skip)]
    pub resources: std::sync::Arc<super::resources::Resources>,
}

impl RunState {
    /// A fresh state: workflow variables overridden by `inputs`, the start node queued.
    pub fn new(wf: &Workflow, inputs: Dict, opts: &RunOptions) -> RunState {
        let mut variables = wf.variables.clone();
        for (k, v) in inputs {
            variables.insert(k, v);
        }
        RunState {
            queue: VecDeque::from([wf.start]),
            executed: vec![false; wf.nodes.len()],
            n_executed: 0,
            visited: vec![false; wf.nodes.len()],
            n_visited: 0,
            variables,
            outputs: vec![Value::Null; wf.nodes.len()],
            inputs: HashMap::new(),
            loops: HashMap::new(),
            tries: Vec::new(),
            pending_error: None,
            executions: 0,
            prior_elapsed_ms: 0,
            call: None,
            rng: opts
                .seed
                .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed),
            vars_changed: true,
            value_bytes: 0,
            output_bytes: Vec::new(),
            node_records: Vec::new(),
            parallel: Default::default(),
            stop_at: None,
            resources: Default::default(),
        }
    }

    /// Count what variables and node outputs hold, for the value budget.
    fn recount_value_bytes(&mut self, cap: u64) {
        self.output_bytes = self.outputs.iter().map(|v| v.budget_size(cap)).collect();
        let vars = self
            .variables
            .iter()
            .fold(0u64, |n, (k, v)| n.saturating_add(var_bytes(k, v, cap)));
        self.value_bytes = self
            .output_bytes
            .iter()
            .fold(vars, |n, b| n.saturating_add(*b));
    }

    /// Account for node `idx`'s new outputs, or refuse them (nothing changes) when they would
    /// take the run past its value budget.
    pub(crate) fn charge_outputs(
        &mut self,
        idx: usize,
        outputs: &Dict,
        opts: &RunOptions,
    ) -> Result<(), NodeError> {
        let cap = opts.max_value_bytes;
        let new = if outputs.is_empty() {
            0
        } else {
            outputs.iter().fold(VALUE_OVERHEAD, |n, (k, v)| {
                n.saturating_add(var_bytes(k, v, cap))
            })
        };
        let old = self.output_bytes[idx];
        let total = self.value_bytes.saturating_sub(old).saturating_add(new);
        if new > old && total > cap {
            let port = outputs
                .iter()
                .max_by_key(|(_, v)| v.budget_size(cap))
                .map_or(String::new(), |(k, _)| format!(" '{k}'"));
            return Err(super::node::over_budget_error(
                &format!("its output{port}"),
                total,
                opts,
            ));
        }
        self.output_bytes[idx] = new;
        self.value_bytes = total;
        Ok(())
    }

    fn set_executed(&mut self, idx: usize, value: bool) {
        if self.executed[idx] != value {
            self.executed[idx] = value;
            if value {
                self.n_executed += 1;
                if !self.visited[idx] {
                    self.visited[idx] = true;
                    self.n_visited += 1;
                }
            } else {
                self.n_executed -= 1;
            }
        }
    }
}

/// The budgeted size of a named value (a variable or an output port): name, entry and value.
pub(crate) fn var_bytes(name: &str, value: &Value, cap: u64) -> u64 {
    (VALUE_OVERHEAD + name.len() as u64).saturating_add(value.budget_size(cap))
}

/// Name lookup over a run: variables first, then node outputs by node id.
pub struct StateScope<'a> {
    /// The run state.
    pub state: &'a RunState,
    /// The workflow (for node ids).
    pub wf: &'a Workflow,
}

impl<'a> StateScope<'a> {
    /// Look `name` up: variables first, then the outputs of the node with that id.
    pub fn lookup(&self, name: &str) -> Option<&'a Value> {
        if let Some(v) = self.state.variables.get(name) {
            return Some(v);
        }
        self.wf
            .index
            .get(name)
            .map(|&i| &self.state.outputs[i])
            .filter(|v| !v.is_null())
    }
}

impl Scope for StateScope<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.lookup(name)
    }
}

/// What observers are told about a node.
#[derive(Clone, Copy, Debug)]
pub struct NodeEvent<'a> {
    /// The node's index in the workflow (`Workflow::nodes`).
    pub node_index: usize,
    /// Node id.
    pub node_id: &'a str,
    /// Node type.
    pub node_type: &'a str,
    /// Progress 0-100: distinct nodes visited over total nodes, at most 99 while nodes remain to
    /// run; the completion of the last node reports 100.
    pub percent: u8,
    /// Node executions so far, this one included.
    pub executions: u64,
    /// Time this node took (zero at start).
    pub elapsed: Duration,
}

/// Hooks into a run: progress, logs, checkpoints. All methods default to doing nothing.
pub trait Observer {
    /// A node is about to run.
    fn node_started(&mut self, _ev: &NodeEvent<'_>) {}
    /// A node succeeded and routing was applied: `state` is what a checkpoint must store.
    fn node_completed(&mut self, _ev: &NodeEvent<'_>, _state: &RunState) {}
    /// A node failed; `what_next` says whether it is retried, caught by a Try, or ends the run.
    fn node_failed(
        &mut self,
        _ev: &NodeEvent<'_>,
        _error: &RunError,
        _what_next: FailureDisposition,
    ) {
    }
    /// A node logged a line.
    fn node_log(&mut self, _ev: &NodeEvent<'_>, _log: &NodeLog) {}
    /// False when `node_completed` ignores its state: a sub-workflow then skips building the
    /// whole run's state after each of its nodes.
    fn wants_state(&self) -> bool {
        true
    }
}

/// What happens after a node failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureDisposition {
    /// The node runs again after this delay.
    Retry(Duration),
    /// A Try block takes the error (its Catch or Finally runs next).
    Caught,
    /// The run ends with this error.
    Fatal,
}

/// Two observers as one (e.g. console progress and a checkpointer).
pub struct Both<'a>(pub &'a mut dyn Observer, pub &'a mut dyn Observer);

impl Observer for Both<'_> {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        self.0.node_started(ev);
        self.1.node_started(ev);
    }
    fn node_completed(&mut self, ev: &NodeEvent<'_>, state: &RunState) {
        self.0.node_completed(ev, state);
        self.1.node_completed(ev, state);
    }
    fn node_failed(&mut self, ev: &NodeEvent<'_>, error: &RunError, what_next: FailureDisposition) {
        self.0.node_failed(ev, error, what_next);
        self.1.node_failed(ev, error, what_next);
    }
    fn node_log(&mut self, ev: &NodeEvent<'_>, log: &NodeLog) {
        self.0.node_log(ev, log);
        self.1.node_log(ev, log);
    }
    fn wants_state(&self) -> bool {
        self.0.wants_state() || self.1.wants_state()
    }
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {
    fn wants_state(&self) -> bool {
        false
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every path finished.
    Completed,
    /// A node failed outside any Try.
    Failed,
    /// Cancelled through the token.
    Cancelled,
    /// The job timeout passed.
    TimedOut,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// The failure, for `Failed` and `TimedOut`.
    pub error: Option<RunError>,
    /// Final variables (all of them).
    pub variables: Dict,
    /// Final outputs of every node that ran, by node id.
    pub node_outputs: Dict,
    /// Distinct nodes executed.
    pub executed_nodes: usize,
    /// Node executions (loop iterations counted).
    pub node_executions: u64,
    /// The first node executions, in order (at most [`RunOptions::max_node_records`]).
    pub node_records: Vec<NodeRecord>,
    /// Nodes in the workflow.
    pub total_nodes: usize,
    /// Wall time of execution proper (including time before a resume).
    pub duration: Duration,
    /// True when the run continued from a checkpoint.
    pub recovered: bool,
    /// The final state (kept for cancelled or timed-out runs, so they can be checkpointed).
    pub state: Option<Box<RunState>>,
}

impl RunOutcome {
    /// True for `Completed`.
    pub fn success(&self) -> bool {
        self.status == RunStatus::Completed
    }

    /// The workflow's outputs: variables without internal names (leading `_`).
    pub fn outputs(&self) -> Dict {
        self.variables
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Node executions not in [`node_records`](Self::node_records): over the cap, or run before
    /// a resume.
    pub fn node_records_omitted(&self) -> u64 {
        self.node_executions
            .saturating_sub(self.node_records.len() as u64)
    }

    /// The error text: `"<node_id> (<NodeType>): <message>"`.
    pub fn error_text(&self) -> Option<String> {
        self.error.as_ref().map(|e| e.to_string())
    }

    /// The result object of `protocol.md` ("Results"), plus `status` and `node_outputs`.
    /// `node_executions` is the list of [`NodeRecord`]s (what the orchestrator's job view reads),
    /// `node_execution_count` the number of node executions and `node_executions_omitted` how
    /// many of them the list leaves out.
    pub fn to_json(&self) -> serde_json::Value {
        let duration_ms = self.duration.as_millis() as u64;
        let mut obj = serde_json::json!({
            "success": self.success(),
            "status": self.status,
            "outputs": Value::dict(self.outputs()).to_json(),
            "executed_nodes": self.executed_nodes,
            "node_executions": self.node_records,
            "node_execution_count": self.node_executions,
            "node_executions_omitted": self.node_records_omitted(),
            "total_nodes": self.total_nodes,
            "duration_ms": duration_ms,
            // duration_ms stays an integer (the orchestrator's JobDetails schema); this is the
            // precise figure, which fast runs need (they show 0 ms).
            "duration_s": self.duration.as_secs_f64(),
            "recovered": self.recovered,
        });
        if let Some(e) = &self.error {
            obj["error"] = serde_json::Value::String(e.to_string());
            // The orchestrator's name for the same text (JobDetails, JobFailRequest, job_failed).
            obj["error_message"] = serde_json::Value::String(e.to_string());
            obj["error_type"] = serde_json::Value::String(e.error_type.clone());
            obj["failed_node"] = if e.node_id.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(e.node_id.clone())
            };
        }
        obj["node_outputs"] = Value::dict(self.node_outputs.clone()).to_json();
        obj
    }
}

/// Run a workflow from the start with `inputs` overriding its declared variables.
pub fn run(
    wf: &Workflow,
    inputs: Dict,
    opts: &RunOptions,
    cancel: &CancelToken,
    observer: &mut dyn Observer,
) -> RunOutcome {
    let state = RunState::new(wf, inputs, opts);
    let _close = super::resources::CloseAtEnd(state.resources.clone());
    execute(wf, state, opts, cancel, observer, false)
}

/// Continue a run from a saved state (a checkpoint). The node that was in flight when the state
/// was saved is not in it: the checkpoint is taken after a node completes and routing is applied.
pub fn resume(
    wf: &Workflow,
    state: RunState,
    opts: &RunOptions,
    cancel: &CancelToken,
    observer: &mut dyn Observer,
) -> RunOutcome {
    let _close = super::resources::CloseAtEnd(state.resources.clone());
    resume_within(wf, state, opts, cancel, observer)
}

/// [`resume`] for a run nested in another (a sub-workflow): its state shares the outer run's
/// resources, which stay open when it ends (the outer run closes them).
pub(crate) fn resume_within(
    wf: &Workflow,
    mut state: RunState,
    opts: &RunOptions,
    cancel: &CancelToken,
    observer: &mut dyn Observer,
) -> RunOutcome {
    state.rng = opts
        .seed
        .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    state.vars_changed = true;
    execute(wf, state, opts, cancel, observer, true)
}

/// Progress while nodes remain to run: the share of the document's nodes visited, at most 99
/// (branches not taken are never visited, so the share alone would stop short; the last node
/// reports 100). An implicit start is not one of the document's nodes, so it counts for nothing.
pub(crate) fn percent(state: &RunState, wf: &Workflow) -> u8 {
    let total = wf.total_nodes.max(1);
    let implicit_start = wf.start >= wf.total_nodes && state.visited[wf.start];
    let visited = state.n_visited - usize::from(implicit_start);
    ((visited.min(total) * 100) / total).min(99) as u8
}

pub(crate) fn execute(
    wf: &Workflow,
    mut state: RunState,
    opts: &RunOptions,
    cancel: &CancelToken,
    obs: &mut dyn Observer,
    recovered: bool,
) -> RunOutcome {
    let started = Instant::now();
    state.recount_value_bytes(opts.max_value_bytes);
    let prior = Duration::from_millis(state.prior_elapsed_ms);
    let job_deadline = started + opts.job_timeout.saturating_sub(prior);
    let finish = |mut state: RunState, status: RunStatus, error: Option<RunError>| -> RunOutcome {
        let duration = prior + started.elapsed();
        let mut node_outputs = Dict::new();
        for (i, out) in state.outputs.iter().enumerate() {
            if !out.is_null() {
                node_outputs.insert(wf.nodes[i].id.clone(), out.clone());
            }
        }
        let keep_state = matches!(status, RunStatus::Cancelled | RunStatus::TimedOut);
        RunOutcome {
            status,
            error,
            executed_nodes: state
                .visited
                .iter()
                .enumerate()
                .filter(|(i, v)| **v && wf.nodes[*i].id != super::model::AUTO_START_ID)
                .count(),
            node_executions: state.executions,
            node_records: std::mem::take(&mut state.node_records),
            total_nodes: wf.total_nodes,
            duration,
            recovered,
            node_outputs,
            variables: state.variables.clone(),
            state: keep_state.then(|| {
                let mut s = Box::new(state);
                s.prior_elapsed_ms = duration.as_millis() as u64;
                s
            }),
        }
    };

    loop {
        if cancel.is_cancelled() {
            let reason = cancel.reason().unwrap_or_else(|| "cancelled".into());
            let err = RunError {
                node_id: String::new(),
                node_type: String::new(),
                error_type: super::node::CANCELLED.into(),
                message: format!("cancelled: {reason}"),
            };
            return finish(state, RunStatus::Cancelled, Some(err));
        }
        let now = Instant::now();
        if now >= job_deadline {
            let err = RunError {
                node_id: String::new(),
                node_type: String::new(),
                error_type: "TimeoutError".into(),
                message: format!("job timed out after {} s", opts.job_timeout.as_secs_f64()),
            };
            return finish(state, RunStatus::TimedOut, Some(err));
        }
        let Some(idx) = state.queue.pop_front() else {
            if let Some(err) = state.pending_error.take() {
                return finish(state, RunStatus::Failed, Some(err));
            }
            return finish(state, RunStatus::Completed, None);
        };
        let node = &wf.nodes[idx];
        if state.executed[idx] && node.def.kind != NodeKind::ControlFlow
            || state.stop_at == Some(idx)
        {
            continue;
        }
        transfer_inputs(wf, &mut state, idx);
        state.executions += 1;
        let ev = NodeEvent {
            node_index: idx,
            node_id: &node.id,
            node_type: node.def.node_type,
            percent: percent(&state, wf),
            executions: state.executions,
            elapsed: Duration::ZERO,
        };
        obs.node_started(&ev);
        let node_started = Instant::now();
        let node_deadline = (node_started + opts.node_timeout).min(job_deadline);

        let mut attempt: u32 = 0;
        let max_retries = if node.def.kind == NodeKind::Plain {
            node_retries(node, opts)
        } else {
            0
        };
        let result = loop {
            let attempt_start = (Instant::now(), chrono::Utc::now());
            let (result, outputs, logs) = if super::parallel::runs_here(node) {
                super::parallel::run(wf, idx, &mut state, opts, cancel, obs, job_deadline)
            } else {
                run_one(
                    wf,
                    idx,
                    &mut state,
                    opts,
                    cancel,
                    (node_deadline, job_deadline),
                    &mut *obs,
                )
            };
            if state.node_records.len() < opts.max_node_records {
                state.node_records.push(NodeRecord {
                    node_id: node.id.clone(),
                    node_type: node.def.node_type.to_string(),
                    duration_ms: attempt_start.0.elapsed().as_millis() as u64,
                    success: result.is_ok(),
                    order: state.executions,
                    start_time: attempt_start
                        .1
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                });
            }
            let ev = NodeEvent {
                elapsed: node_started.elapsed(),
                ..ev
            };
            for line in &logs {
                obs.node_log(&ev, line);
            }
            match result {
                Ok(flow) => break Ok((flow, outputs)),
                Err(e) if e.is_cancelled() => break Err(e),
                Err(e) => {
                    let can_retry = attempt < max_retries && e.kind != "TimeoutError";
                    let err = node_error(wf, idx, &e);
                    if can_retry {
                        let delay = retry_delay(node, opts, attempt);
                        obs.node_failed(&ev, &err, FailureDisposition::Retry(delay));
                        attempt += 1;
                        if Instant::now() + delay >= job_deadline || cancel.sleep(delay) {
                            break Err(e);
                        }
                        state.executions += 1;
                        continue;
                    }
                    break Err(e);
                }
            }
        };
        let elapsed = node_started.elapsed();
        match result {
            Ok((flow, outputs)) => {
                state.outputs[idx] = if outputs.is_empty() {
                    Value::Null
                } else {
                    Value::dict(outputs)
                };
                state.set_executed(idx, true);
                apply_flow(wf, &mut state, idx, flow);
                // Nothing left to run: this was the last node, the run completes (100 %).
                let done = state.queue.is_empty();
                let ev = NodeEvent {
                    percent: if done { 100 } else { percent(&state, wf) },
                    elapsed,
                    ..ev
                };
                obs.node_completed(&ev, &state);
                state.vars_changed = false;
            }
            Err(e) if e.is_cancelled() => {
                // The node in flight did not complete: put it back so a resume re-runs it.
                state.queue.push_front(idx);
                let reason = cancel.reason().unwrap_or_else(|| e.message.clone());
                let err = RunError {
                    message: format!("cancelled: {reason}"),
                    ..node_error(wf, idx, &e)
                };
                return finish(state, RunStatus::Cancelled, Some(err));
            }
            Err(e) => {
                let err = node_error(wf, idx, &e);
                let ev = NodeEvent { elapsed, ..ev };
                if Instant::now() >= job_deadline {
                    let err = RunError {
                        error_type: "TimeoutError".into(),
                        message: format!(
                            "job timed out after {} s",
                            opts.job_timeout.as_secs_f64()
                        ),
                        ..err
                    };
                    obs.node_failed(&ev, &err, FailureDisposition::Fatal);
                    return finish(state, RunStatus::TimedOut, Some(err));
                }
                match capture_in_try(wf, &mut state, err.clone()) {
                    Ok(target) => {
                        obs.node_failed(&ev, &err, FailureDisposition::Caught);
                        state.queue.push_front(target);
                    }
                    Err(err) => {
                        obs.node_failed(&ev, &err, FailureDisposition::Fatal);
                        return finish(state, RunStatus::Failed, Some(err));
                    }
                }
            }
        }
    }
}

fn node_error(wf: &Workflow, idx: usize, e: &NodeError) -> RunError {
    RunError {
        node_id: wf.nodes[idx].id.clone(),
        node_type: wf.nodes[idx].def.node_type.to_string(),
        error_type: e.kind.to_string(),
        message: e.message.clone(),
    }
}

fn node_retries(node: &super::model::CompiledNode, opts: &RunOptions) -> u32 {
    node.retry_count.unwrap_or(opts.node_max_retries)
}

fn retry_delay(node: &super::model::CompiledNode, opts: &RunOptions, attempt: u32) -> Duration {
    node.retry_delay.unwrap_or_else(|| {
        let factor = 2u32.saturating_pow(attempt.min(20));
        opts.node_initial_delay
            .saturating_mul(factor)
            .min(opts.node_max_delay)
    })
}

/// Copy source output values along incoming data edges (nulls are not copied, as upstream).
fn transfer_inputs(wf: &Workflow, state: &mut RunState, idx: usize) {
    let node = &wf.nodes[idx];
    if node.data_in.is_empty() {
        return;
    }
    for edge in &node.data_in {
        let value = match &state.outputs[edge.src] {
            Value::Dict(d) => d.get(edge.src_port.as_str()).cloned(),
            _ => None,
        };
        let Some(value) = value.filter(|v| !v.is_null()) else {
            continue;
        };
        let ports = state.inputs.entry(idx).or_default();
        match ports
            .iter_mut()
            .find(|(p, _)| p.as_str() == edge.dst_port.as_ref())
        {
            Some((_, slot)) => *slot = value,
            None => ports.push((edge.dst_port.to_string(), value)),
        }
    }
}

pub(crate) type NodeRun = (Result<Flow, NodeError>, Dict, Vec<NodeLog>);

fn run_one(
    wf: &Workflow,
    idx: usize,
    state: &mut RunState,
    opts: &RunOptions,
    cancel: &CancelToken,
    (deadline, job_deadline): (Instant, Instant),
    observer: &mut dyn Observer,
) -> NodeRun {
    let node = &wf.nodes[idx];
    if node.disabled {
        // Bypass: outputs pass through same-named inputs (or `x_in` → `x_out`).
        let mut outputs = Dict::new();
        if let Some(ports) = state.inputs.get(&idx) {
            for out in node.def.outputs {
                let from = out.strip_suffix("_out").map(|b| format!("{b}_in"));
                if let Some((_, v)) = ports
                    .iter()
                    .find(|(p, _)| p == out || Some(p) == from.as_ref())
                {
                    outputs.insert((*out).to_string(), v.clone());
                }
            }
        }
        return (Ok(Flow::Next), outputs, Vec::new());
    }
    let mut ctx = NodeCtx {
        wf,
        idx,
        state,
        opts,
        cancel,
        deadline,
        outputs: Dict::new(),
        logs: Vec::new(),
        observer: Some(observer),
    };
    let run = node.def.run;
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(&mut ctx)))
        .unwrap_or_else(|panic| Err(super::node::panic_error(panic)));
    let result = match result {
        Ok(_) if ctx.outputs.values().any(|v| v.depth_exceeds(MAX_VALUE_DEPTH)) => Err(NodeError::value(format!(
            "an output is nested deeper than {MAX_VALUE_DEPTH} levels (lists or dicts inside each other); refusing it"
        ))),
        Ok(_) if Instant::now() > deadline => {
            Err(NodeError::timeout(if Instant::now() > job_deadline {
                format!("job timed out after {} s", opts.job_timeout.as_secs_f64())
            } else {
                format!(
                    "node took longer than its timeout of {} s",
                    opts.node_timeout.as_secs_f64()
                )
            }))
        }
        other => other,
    };
    let NodeCtx {
        state,
        outputs,
        logs,
        ..
    } = ctx;
    let result = result.and_then(|flow| state.charge_outputs(idx, &outputs, opts).map(|()| flow));
    (result, outputs, logs)
}

fn queue_port(wf: &Workflow, state: &mut RunState, idx: usize, port: &str) {
    state
        .queue
        .extend(wf.nodes[idx].targets(port).iter().copied());
}

fn apply_flow(wf: &Workflow, state: &mut RunState, idx: usize, flow: Flow) {
    match flow {
        Flow::Next => state.queue.extend(wf.nodes[idx].next.iter().copied()),
        Flow::Port(port) => queue_port(wf, state, idx, &port),
        Flow::End => {}
        Flow::Goto(target) => state.queue.push_front(target),
        Flow::LoopBack(start) => {
            for &b in &wf.nodes[start].body {
                state.set_executed(b, false);
            }
            state.queue.push_front(start);
        }
    }
}

/// Route a failure into the innermost Try that can take it; `Err` when none can.
fn capture_in_try(wf: &Workflow, state: &mut RunState, err: RunError) -> Result<usize, RunError> {
    while let Some(frame) = state.tries.last_mut() {
        let try_node = &wf.nodes[frame.try_idx];
        match frame.stage {
            TryStage::Body => {
                frame.error = Some(err.clone());
                if let Some(catch) = try_node.catch {
                    frame.stage = TryStage::Catch;
                    return Ok(catch);
                }
                if let Some(finally) = try_node.finally {
                    frame.stage = TryStage::Finally;
                    return Ok(finally);
                }
            }
            TryStage::Catch => {
                // The catch handler failed: run the finally, then fail with the new error.
                frame.error = Some(err.clone());
                frame.handled = false;
                if let Some(finally) = try_node.finally {
                    frame.stage = TryStage::Finally;
                    return Ok(finally);
                }
            }
            TryStage::Finally => {}
        }
        // This frame cannot take it: drop it and let an outer Try try.
        state.tries.pop();
    }
    Err(err)
}

/// Shared access for control-flow nodes implemented in `nodes::control`.
impl NodeCtx<'_> {
    /// The loop state of loop start `start`.
    pub(crate) fn loop_state(&mut self, start: usize) -> Option<&mut LoopState> {
        self.state.loops.get_mut(&start)
    }
    /// Install or replace a loop state.
    pub(crate) fn set_loop_state(&mut self, start: usize, state: Option<LoopState>) {
        match state {
            Some(s) => {
                self.state.loops.insert(start, s);
            }
            None => {
                self.state.loops.remove(&start);
            }
        }
    }
    /// The paired node (loop start for ends/break/continue, try for catch/finally).
    pub(crate) fn pair(&self) -> Option<usize> {
        self.wf.nodes[self.idx].pair
    }
    /// The active try frames.
    pub(crate) fn tries(&mut self) -> &mut Vec<TryFrame> {
        &mut self.state.tries
    }
    /// Set an error to raise when the queue drains.
    pub(crate) fn set_pending_error(&mut self, err: Option<RunError>) {
        self.state.pending_error = err;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::load_str;
    use crate::engine::node::{opt, Lit, NodeDef};
    use crate::nodes::testing::{chain, ex, graph, Recorder};
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn flaky(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
        let n = ctx.param_i64("fail_times")?;
        let key = format!("attempts_{}", ctx.node_id());
        let attempts = ctx.var(&key).and_then(|v| v.as_i64()).unwrap_or(0) + 1;
        ctx.set_var(&key, Value::Int(attempts));
        if attempts <= n {
            Err(NodeError::new(
                "ConnectionError",
                format!("attempt {attempts} failed"),
            ))
        } else {
            Ok(Flow::Next)
        }
    }
    static FLAKY: NodeDef =
        NodeDef::plain("FlakyNode", &[opt("fail_times", Lit::Int(1))], &[], flaky);

    fn panics(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
        panic!("boom inside a node")
    }
    static PANICS: NodeDef = NodeDef::plain("PanicNode", &[], &[], panics);

    static SPINS: AtomicU32 = AtomicU32::new(0);
    fn slow(_ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
        SPINS.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(30));
        Ok(Flow::Next)
    }
    static SLOW: NodeDef = NodeDef::plain("SlowNode", &[], &[], slow);

    /// Load a chain and swap node `id`'s implementation for a test node.
    fn with_node(config: serde_json::Value, id: &str, def: &'static NodeDef) -> Workflow {
        let mut wf = load_str(&chain(&[
            (id, "LogNode", config),
            (
                "after",
                "SetVariableNode",
                json!({"variable_name": "after", "value": true}),
            ),
        ]))
        .unwrap();
        let i = wf.index[id];
        wf.nodes[i].def = def;
        wf
    }

    fn fast_retries(n: u32) -> RunOptions {
        RunOptions {
            node_max_retries: n,
            node_initial_delay: Duration::from_millis(1),
            node_max_delay: Duration::from_millis(2),
            ..RunOptions::default()
        }
    }

    #[test]
    fn robot_wide_retries_recover_a_flaky_node() {
        let wf = with_node(json!({"fail_times": 2}), "f", &FLAKY);
        let mut rec = Recorder::default();
        let out = run(
            &wf,
            Dict::new(),
            &fast_retries(2),
            &CancelToken::new(),
            &mut rec,
        );
        assert!(out.success(), "{:?}", out.error);
        assert_eq!(out.variables["attempts_f"], Value::Int(3));
        assert_eq!(out.variables["after"], Value::Bool(true));
        assert_eq!(out.node_executions, 5, "start + 3 attempts + after");

        let out = run(
            &wf,
            Dict::new(),
            &fast_retries(1),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.status, RunStatus::Failed);
        assert_eq!(out.error_text().unwrap(), "f (FlakyNode): attempt 2 failed");
        assert_eq!(out.error.unwrap().error_type, "ConnectionError");
    }

    #[test]
    fn node_records_list_every_attempt_in_order_up_to_the_cap() {
        let wf = with_node(json!({"fail_times": 2}), "f", &FLAKY);
        let out = run(
            &wf,
            Dict::new(),
            &fast_retries(2),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert!(out.success(), "{:?}", out.error);
        let seen: Vec<(&str, &str, bool, u64)> = out
            .node_records
            .iter()
            .map(|r| (r.node_id.as_str(), r.node_type.as_str(), r.success, r.order))
            .collect();
        let start = (
            wf.nodes[wf.start].id.as_str(),
            wf.nodes[wf.start].def.node_type,
        );
        assert_eq!(
            seen,
            vec![
                (start.0, start.1, true, 1),
                ("f", "FlakyNode", false, 2),
                ("f", "FlakyNode", false, 3),
                ("f", "FlakyNode", true, 4),
                ("after", "SetVariableNode", true, 5),
            ]
        );
        assert_eq!(out.node_records_omitted(), 0);
        for r in &out.node_records {
            assert!(
                chrono::DateTime::parse_from_rfc3339(&r.start_time).is_ok(),
                "{}",
                r.start_time
            );
        }
        let json = out.to_json();
        assert_eq!(json["node_execution_count"], 5);
        assert_eq!(json["node_executions"][1]["node_id"], "f");
        assert!(json["node_executions"][1]["duration_ms"].is_u64());

        let capped = RunOptions {
            max_node_records: 2,
            ..fast_retries(2)
        };
        let out = run(
            &wf,
            Dict::new(),
            &capped,
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.node_records.len(), 2);
        assert_eq!(out.node_records[1].order, 2);
        assert_eq!(out.node_records_omitted(), 3);
        let json = out.to_json();
        assert_eq!(json["node_executions_omitted"], 3);
        assert_eq!(json["node_execution_count"], 5);
    }

    #[test]
    fn per_node_retry_count_overrides_the_robot_setting() {
        let wf = with_node(
            json!({"fail_times": 1, "retry_count": 1, "retry_delay": 0.001}),
            "f",
            &FLAKY,
        );
        let out = run(
            &wf,
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert!(out.success(), "{:?}", out.error);
        let wf = with_node(json!({"fail_times": 1, "retry_count": 0}), "f", &FLAKY);
        let out = run(
            &wf,
            Dict::new(),
            &fast_retries(5),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.status, RunStatus::Failed);
    }

    #[test]
    fn a_panicking_node_is_a_failed_node() {
        let wf = with_node(json!({}), "p", &PANICS);
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let out = run(
            &wf,
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        std::panic::set_hook(prev);
        assert_eq!(out.status, RunStatus::Failed);
        assert_eq!(
            out.error_text().unwrap(),
            "p (PanicNode): node panicked: boom inside a node"
        );
    }

    #[test]
    fn job_timeout_stops_between_nodes() {
        let nodes: Vec<(String, &str, serde_json::Value)> = (0..50)
            .map(|i| (format!("n{i}"), "LogNode", json!({})))
            .collect();
        let refs: Vec<(&str, &str, serde_json::Value)> = nodes
            .iter()
            .map(|(a, b, c)| (a.as_str(), *b, c.clone()))
            .collect();
        let mut wf = load_str(&chain(&refs)).unwrap();
        for n in wf.nodes.iter_mut().filter(|n| n.def.node_type == "LogNode") {
            n.def = &SLOW;
        }
        let opts = RunOptions {
            job_timeout: Duration::from_millis(100),
            ..RunOptions::default()
        };
        let out = run(
            &wf,
            Dict::new(),
            &opts,
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.status, RunStatus::TimedOut);
        assert!(
            out.node_executions < 50,
            "stopped early: {}",
            out.node_executions
        );
        let err = out.error.as_ref().unwrap();
        assert_eq!(err.error_type, "TimeoutError");
        assert!(
            err.message.starts_with("job timed out after 0.1 s"),
            "{err}"
        );
        assert!(
            out.state.is_some(),
            "a timed-out run keeps its state for a checkpoint"
        );
    }

    #[test]
    fn progress_counts_the_documents_nodes_not_an_implicit_start() {
        struct Percents(Vec<(String, u8)>);
        impl Observer for Percents {
            fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
                self.0.push((ev.node_id.to_string(), ev.percent));
            }
        }
        let check = |doc: String, expected: &[(&str, u8)]| {
            let wf = load_str(&doc).unwrap();
            let mut seen = Percents(Vec::new());
            let out = run(
                &wf,
                Dict::new(),
                &RunOptions::default(),
                &CancelToken::new(),
                &mut seen,
            );
            assert_eq!(out.status, RunStatus::Completed);
            let expected: Vec<(String, u8)> = expected
                .iter()
                .map(|(id, p)| (id.to_string(), *p))
                .collect();
            assert_eq!(seen.0, expected);
        };
        let set = |name: &str| json!({"variable_name": name, "value": 1});
        // No StartNode: the implicit start is not a quarter of a two-node workflow.
        check(
            chain(&[
                ("a", "SetVariableNode", set("a")),
                ("b", "SetVariableNode", set("b")),
            ]),
            &[("__auto_start__", 0), ("a", 50), ("b", 100)],
        );
        // A StartNode of the document counts like any other node.
        check(
            chain(&[
                ("start", "StartNode", json!({})),
                ("a", "SetVariableNode", set("a")),
                ("b", "SetVariableNode", set("b")),
                ("c", "SetVariableNode", set("c")),
            ]),
            &[("start", 25), ("a", 50), ("b", 75), ("c", 100)],
        );
    }

    #[test]
    fn state_round_trips_through_json_and_resumes_where_it_stopped() {
        // Stop a loop half-way via the observer, serialize the state, resume from it.
        struct StopAfter(u64, CancelToken);
        impl Observer for StopAfter {
            fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
                if ev.executions == self.0 {
                    self.1.cancel("test stop");
                }
            }
        }
        let json = graph(
            &[
                (
                    "init",
                    "SetVariableNode",
                    json!({"variable_name": "sum", "value": 0}),
                ),
                (
                    "loop",
                    "ForLoopStartNode",
                    json!({"items": [1, 2, 3, 4, 5, 6]}),
                ),
                (
                    "add",
                    "IncrementVariableNode",
                    json!({"variable_name": "sum", "increment": "{{item}}"}),
                ),
                ("end", "ForLoopEndNode", json!({})),
                (
                    "done",
                    "SetVariableNode",
                    json!({"variable_name": "done", "value": "{{sum}}"}),
                ),
            ],
            &[
                ex("init", "exec_out", "loop"),
                ex("loop", "body", "add"),
                ex("add", "exec_out", "end"),
                ex("loop", "completed", "done"),
            ],
        );
        let wf = load_str(&json).unwrap();
        let full = run(
            &wf,
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert!(full.success());

        let token = CancelToken::new();
        let mut stop = StopAfter(9, token.clone());
        let half = run(&wf, Dict::new(), &RunOptions::default(), &token, &mut stop);
        assert_eq!(half.status, RunStatus::Cancelled);
        let saved = serde_json::to_string(&half.state.unwrap()).unwrap();
        let restored: RunState = serde_json::from_str(&saved).unwrap();
        let resumed = resume(
            &wf,
            restored,
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert!(resumed.success(), "{:?}", resumed.error);
        assert!(resumed.recovered);
        assert_eq!(resumed.variables, full.variables);
        assert_eq!(resumed.node_executions, full.node_executions);
        assert!(matches!(resumed.variables["done"], Value::Float(f) if f == 21.0));
    }

    #[test]
    fn data_edges_carry_outputs_and_persist() {
        let json = graph(
            &[
                (
                    "a",
                    "SetVariableNode",
                    json!({"variable_name": "x", "value": "from a"}),
                ),
                ("b", "SetVariableNode", json!({"variable_name": "y"})),
            ],
            &[ex("a", "exec_out", "b"), ("a", "value", "b", "value")],
        );
        let out = run(
            &load_str(&json).unwrap(),
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.variables["y"], Value::str("from a"));
    }

    #[test]
    fn inputs_override_workflow_variables_and_outputs_hide_internal_names() {
        let doc = json!({"nodes": {}, "variables": {"a": 1, "b": 2}});
        let wf = crate::engine::model::load_json(&doc).unwrap();
        let inputs: Dict = [
            ("b".to_string(), Value::Int(20)),
            ("_job_id".to_string(), Value::str("j1")),
        ]
        .into_iter()
        .collect();
        let out = run(
            &wf,
            inputs,
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert!(out.success());
        let outputs = out.outputs();
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs["b"], Value::Int(20));
        let json = out.to_json();
        assert_eq!(json["success"], json!(true));
        assert_eq!(json["recovered"], json!(false));
        assert!(json.get("error").is_none());
    }

    #[test]
    fn a_failed_run_reports_error_fields() {
        let wf = load_str(&chain(&[(
            "t",
            "ThrowErrorNode",
            json!({"error_message": "nope", "error_type": "ValueError"}),
        )]))
        .unwrap();
        let out = run(
            &wf,
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        let json = out.to_json();
        assert_eq!(json["success"], json!(false));
        assert_eq!(json["error"], json!("t (ThrowErrorNode): nope"));
        assert_eq!(json["error_type"], json!("ValueError"));
        assert_eq!(json["failed_node"], json!("t"));
    }

    /// `x = ["abcd"]`, then a While loop (at most `max_iterations`) appends `x` to `list` and
    /// stores the result in `x`.
    fn append_to_x_in_a_loop(list: serde_json::Value, max_iterations: u64) -> String {
        graph(
            &[
                (
                    "init",
                    "SetVariableNode",
                    json!({"variable_name": "x", "value": ["abcd"]}),
                ),
                (
                    "w",
                    "WhileLoopStartNode",
                    json!({"condition": true, "max_iterations": max_iterations}),
                ),
                (
                    "app",
                    "ListAppendNode",
                    json!({"list": list, "item": "{{x}}"}),
                ),
                (
                    "set",
                    "SetVariableNode",
                    json!({"variable_name": "x", "value": "{{app.result}}"}),
                ),
                ("end", "WhileLoopEndNode", json!({})),
            ],
            &[
                ex("init", "exec_out", "w"),
                ex("w", "body", "app"),
                ex("app", "exec_out", "set"),
                ex("set", "exec_out", "end"),
            ],
        )
    }

    #[test]
    fn self_nesting_values_are_refused_not_a_stack_overflow() {
        let json = append_to_x_in_a_loop(json!([]), 100_000);
        let out = run(
            &load_str(&json).unwrap(),
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert_eq!(out.status, RunStatus::Failed);
        let err = out.error.unwrap();
        assert_eq!(err.node_id, "app");
        assert!(
            err.message.contains("nested deeper than 100 levels"),
            "{err}"
        );
        assert!(!out.variables["x"].depth_exceeds(MAX_VALUE_DEPTH));
    }

    /// `init` sets `x`, then a While loop sets `x` to `value` (a template over `x`) 100 times.
    fn grow_in_a_loop(init: serde_json::Value, grow: (&str, serde_json::Value)) -> Workflow {
        let json = graph(
            &[
                (
                    "init",
                    "SetVariableNode",
                    json!({"variable_name": "x", "value": init}),
                ),
                (
                    "w",
                    "WhileLoopStartNode",
                    json!({"condition": true, "max_iterations": 100}),
                ),
                ("grow", grow.0, grow.1),
                ("end", "WhileLoopEndNode", json!({})),
            ],
            &[
                ex("init", "exec_out", "w"),
                ex("w", "body", "grow"),
                ex("grow", "exec_out", "end"),
            ],
        );
        load_str(&json).unwrap()
    }

    fn run_with_budget(wf: &Workflow, inputs: Dict, max_value_bytes: u64) -> RunOutcome {
        let opts = RunOptions {
            max_value_bytes,
            ..RunOptions::default()
        };
        run(wf, inputs, &opts, &CancelToken::new(), &mut NoObserver)
    }

    fn check_over_budget(out: &RunOutcome, node_id: &str, limit: &str) {
        assert_eq!(out.status, RunStatus::Failed, "{:?}", out.error);
        let err = out.error.as_ref().unwrap();
        assert_eq!(err.node_id, node_id, "{err}");
        assert_eq!(err.error_type, "MemoryError", "{err}");
        assert!(
            err.message
                .contains(&format!("over the limit of {limit} MB (max_value_mb)")),
            "{err}"
        );
    }

    #[test]
    fn a_string_doubled_in_a_loop_fails_at_the_budget() {
        let wf = grow_in_a_loop(
            json!("ab"),
            (
                "SetVariableNode",
                json!({"variable_name": "x", "value": "{{x}}{{x}}"}),
            ),
        );
        let out = run_with_budget(&wf, Dict::new(), 1 << 20);
        check_over_budget(&out, "grow", "1");
        assert!(out.error.unwrap().message.contains("input 'value'"));
        // The run never held more than its budget.
        assert!(out.variables["x"].budget_size(u64::MAX) < 1 << 20);
        assert!(out.variables["x"].as_str().unwrap().len() >= 1 << 18);
    }

    #[test]
    fn a_list_appended_to_itself_is_measured_by_its_logical_size() {
        // Each append doubles the logical size but adds one allocation: 2^20 times "abcd"
        // after 20 rounds, long before the depth limit of 100.
        let wf = grow_in_a_loop(
            json!(["abcd"]),
            (
                "SetVariableNode",
                json!({"variable_name": "x", "value": [ "{{x}}", "{{x}}" ]}),
            ),
        );
        let out = run_with_budget(&wf, Dict::new(), DEFAULT_MAX_VALUE_BYTES);
        check_over_budget(&out, "grow", "256");
        assert!(!out.variables["x"].depth_exceeds(40));

        // The same through ListAppend: the appended list is the list itself.
        let json = append_to_x_in_a_loop(json!("{{x}}"), 100);
        let out = run_with_budget(
            &load_str(&json).unwrap(),
            Dict::new(),
            DEFAULT_MAX_VALUE_BYTES,
        );
        assert_eq!(out.status, RunStatus::Failed);
        let err = out.error.unwrap();
        assert_eq!(err.error_type, "MemoryError", "{err}");
        assert!(["app", "set"].contains(&err.node_id.as_str()), "{err}");
    }

    #[test]
    fn a_split_too_large_for_the_budget_fails_before_it_is_built() {
        let wf = load_str(&chain(&[(
            "split",
            "TextSplitNode",
            json!({"text": "{{big}}", "separator": ","}),
        )]))
        .unwrap();
        // 8 M one-letter pieces: 16 MB of text, about 280 MB as values.
        let big = Dict::from_iter([("big".to_string(), Value::from("a,".repeat(8 << 20)))]);
        let out = run_with_budget(&wf, big.clone(), DEFAULT_MAX_VALUE_BYTES);
        check_over_budget(&out, "split", "256");
        assert!(out.error.unwrap().message.contains("the split result"));
        // Within the budget the same split works.
        let out = run_with_budget(&wf, big, 1 << 30);
        assert!(out.success(), "{:?}", out.error);
        assert_eq!(
            out.node_outputs["split"].as_dict().unwrap()["count"],
            Value::Int((8 << 20) + 1)
        );
    }

    #[test]
    fn a_variable_over_the_budget_keeps_its_last_value() {
        let out = run_with_budget(
            &grow_in_a_loop(
                json!("abcdefgh"),
                (
                    "SetVariableNode",
                    json!({"variable_name": "x", "value": "{{x}}{{x}}"}),
                ),
            ),
            Dict::new(),
            64 << 10,
        );
        check_over_budget(&out, "grow", "0.0625");
        let x = out.variables["x"].as_str().unwrap().len();
        assert!((16 << 10..64 << 10).contains(&x), "{x}");
    }

    #[test]
    fn cancellation_before_start_runs_nothing() {
        let wf = load_str(&chain(&[("l", "LogNode", json!({}))])).unwrap();
        let token = CancelToken::new();
        token.cancel("before start");
        let out = run(
            &wf,
            Dict::new(),
            &RunOptions::default(),
            &token,
            &mut NoObserver,
        );
        assert_eq!(out.status, RunStatus::Cancelled);
        assert_eq!(out.node_executions, 0);
    }
}

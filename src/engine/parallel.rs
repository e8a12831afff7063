//! Parallel execution: `ForkNode` branches and `ParallelForEachNode` items, each run
//! concurrently on its own snapshot of the run's variables.
//!
//! This module owns the pairing of Forks with Joins (at load), the bounded per-node pool of
//! threads that runs the branches (or items), and the per-branch progress a checkpoint keeps.
//!
//! Rules:
//! - **Fork**: every connected `branch_<n>` port is one branch, in port-number order (upstream's
//!   `branch_count` only says how many ports the canvas drew). A branch starts from its port's
//!   targets and runs node by node, on a copy of the run state (variables, node outputs), until
//!   its path reaches the paired Join (which it does not run) or ends. The Join then runs once on
//!   the main path: it sees every branch's final variables.
//! - **ParallelForEach**: the body is what the `body` port leads to; each item runs that path
//!   until it ends, with the variables `item` and `index` (and the node's outputs
//!   `current_item` / `current_index`) set, under `timeout_per_item`. Its result is the dict of
//!   the variables the item's run set or changed (names starting with `_`, and `item` / `index`,
//!   left out); `results` lists them in item order, then `completed` is routed.
//! - At most `min(max_parallel_branches, n)` branches run at a time (for ParallelForEach
//!   `min(batch_size, max_parallel_branches)` items: a sliding window, a new item starts as soon
//!   as one finishes). The bound is per Fork node; a Fork inside a branch has a pool of its own.
//! - **Failures**: with `fail_fast` the first failing branch cancels the others and fails the node
//!   at once; without it the others run to their end, then the node fails with the first failure
//!   in branch (item) order, naming how many failed. A Try around the node sees that failure.
//! - **Cancellation and timeouts**: the run's token and the job deadline are watched by the run's
//!   thread and passed on to a token of the node's own, which every branch's nodes sleep on; each
//!   node in a branch keeps its node timeout.
//! - **Durability**: branch threads never touch the store. They send their node events to the
//!   run's thread, which records each finished branch in [`RunState::parallel`] and tells the
//!   run's observer (the checkpointer) with the branch's last node completion. The Fork stays at
//!   the head of the queue while it runs, so a resume runs it again: finished branches are kept
//!   (their results come from the checkpoint), unfinished ones run again **from their start**
//!   (a branch's progress inside itself is not checkpointed; its node in flight and the nodes it
//!   completed since it started run again, at least once, as any node in flight does).
//! - Node outputs of nodes inside a branch stay in that branch; after the Join use the Join's
//!   `results` or the copied `<branch>_<name>` variables.
//! - `_at_most_once` nodes are refused inside branches (a load error): the run's thread hears
//!   of a branch node's start only once it runs, too late to record it first.

use super::model::{CompiledNode, Workflow};
use super::node::{Flow, NodeCtx, NodeError, NodeLog};
use super::runner::{self, FailureDisposition, NodeEvent, NodeRecord, Observer, RunError};
use super::runner::{NodeRun, RunOptions, RunState, RunStatus};
use super::value::{Dict, Value};
use super::CancelToken;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Default of [`RunOptions::max_parallel_branches`] (config `max_parallel_branches`).
pub const DEFAULT_MAX_PARALLEL: usize = 4;

/// Node type names handled here.
pub const FORK: &str = "ForkNode";
/// See [`FORK`].
pub const JOIN: &str = "JoinNode";
/// See [`FORK`].
pub const FOREACH: &str = "ParallelForEachNode";

/// How often the run's thread looks at the job's token and deadline while branches run.
const WATCH_EVERY: Duration = Duration::from_millis(20);

/// Parallel nodes in progress, by node index: what their finished branches produced.
pub type ParallelProgress = BTreeMap<usize, UnitsDone>;

/// The finished branches (or items) of one Fork / ParallelForEach.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UnitsDone {
    /// Finished branches by position (branch order, item index).
    pub done: BTreeMap<usize, UnitResult>,
    /// A Fork whose branches all succeeded: its Join has not consumed the results yet.
    #[serde(default)]
    pub complete: bool,
}

/// One finished branch or item.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnitResult {
    /// The branch's port name, or `item <index>`.
    pub name: String,
    /// A branch's final variables; an item's changed variables.
    pub value: Value,
    /// Its failure, if it failed.
    pub error: Option<RunError>,
}

/// True for the nodes whose execution this module takes over from the runner.
pub(crate) fn runs_here(node: &CompiledNode) -> bool {
    !node.disabled && matches!(node.def.node_type, FORK | FOREACH)
}

// ---------------------------------------------------------------------------------------------
// Pairing (load time)

/// Pair every ForkNode with its JoinNode (`CompiledNode::pair`, both ways): the Fork's
/// `paired_join_id`, else a Join naming it in `paired_fork_id`, else the Join its branches reach
/// (the one most branches reach, then the nearest). Returns the problems found, by node index.
pub(crate) fn pair_forks(
    nodes: &mut [CompiledNode],
    index: &HashMap<String, usize>,
) -> Vec<(usize, String)> {
    let mut problems = Vec::new();
    let of_type = |nodes: &[CompiledNode], t: &str| -> Vec<usize> {
        (0..nodes.len())
            .filter(|&i| nodes[i].def.node_type == t)
            .collect()
    };
    let forks = of_type(nodes, FORK);
    let joins = of_type(nodes, JOIN);
    let mut owner: HashMap<usize, usize> = HashMap::new();
    for &f in &forks {
        if branch_ports(&nodes[f]).is_empty() {
            problems.push((
                f,
                "has no connected branch (connect branch_1, branch_2, ...)".to_string(),
            ));
        }
        let join = match config_str(&nodes[f], "paired_join_id") {
            Some(id) => match index.get(&id) {
                Some(&j) if nodes[j].def.node_type == JOIN => Some(j),
                Some(&j) => {
                    let t = nodes[j].def.node_type;
                    problems.push((
                        f,
                        format!("paired_join_id \"{id}\" is a {t}, not a JoinNode"),
                    ));
                    continue;
                }
                None => {
                    problems.push((
                        f,
                        format!("paired_join_id \"{id}\" names no node in this workflow"),
                    ));
                    continue;
                }
            },
            None => joins
                .iter()
                .copied()
                .find(|&j| config_str(&nodes[j], "paired_fork_id").as_deref() == Some(&nodes[f].id))
                .or_else(|| infer_join(nodes, f)),
        };
        let Some(j) = join else {
            problems.push((
                f,
                "has no JoinNode: connect its branches to a JoinNode or set paired_join_id"
                    .to_string(),
            ));
            continue;
        };
        if let Some(&other) = owner.get(&j) {
            let (join_id, other_id) = (&nodes[j].id, &nodes[other].id);
            problems.push((
                f,
                format!("its JoinNode {join_id} is already paired with ForkNode {other_id}"),
            ));
            continue;
        }
        owner.insert(j, f);
        nodes[f].pair = Some(j);
        nodes[j].pair = Some(f);
    }
    refuse_at_most_once_in_branches(nodes, &mut problems);
    for &j in &joins {
        if nodes[j].pair.is_none() {
            problems.push((
                j,
                "no ForkNode pairs with this JoinNode (a Join only runs after its Fork; set the Fork's paired_join_id)"
                    .to_string(),
            ));
        }
    }
    problems
}

/// `_at_most_once` nodes cannot run in a branch: their start is recorded by the run's thread,
/// which hears of it only once the node is already running, and other branches' checkpoints
/// would clear the mark.
fn refuse_at_most_once_in_branches(nodes: &[CompiledNode], problems: &mut Vec<(usize, String)>) {
    for p in 0..nodes.len() {
        let (starts, stop): (Vec<usize>, Option<usize>) = match nodes[p].def.node_type {
            FORK => (
                branch_ports(&nodes[p])
                    .iter()
                    .flat_map(|(_, t)| t.iter().copied())
                    .collect(),
                nodes[p].pair,
            ),
            FOREACH => (nodes[p].targets("body").to_vec(), None),
            _ => continue,
        };
        let mut seen = vec![false; nodes.len()];
        let mut queue: VecDeque<usize> = starts.into();
        while let Some(n) = queue.pop_front() {
            if seen[n] || n == p || Some(n) == stop {
                continue;
            }
            seen[n] = true;
            if nodes[n].at_most_once {
                let (pid, pt) = (&nodes[p].id, nodes[p].def.node_type);
                problems.push((
                    n,
                    format!("_at_most_once is not supported inside a parallel branch ({pid} ({pt})): remove it or move the node out of the branch"),
                ));
            }
            for (_, targets) in &nodes[n].routes {
                queue.extend(targets.iter().copied());
            }
        }
    }
}

fn config_str(node: &CompiledNode, key: &str) -> Option<String> {
    node.config_entry(key)
        .and_then(|e| e.raw.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The Fork's connected `branch_<n>` ports with their targets, in port-number order.
fn branch_ports(node: &CompiledNode) -> Vec<(&str, &[usize])> {
    let mut ports: Vec<(&str, &[usize])> = node
        .routes
        .iter()
        .filter(|(p, t)| p.starts_with("branch_") && !t.is_empty())
        .map(|(p, t)| (p.as_str(), t.as_slice()))
        .collect();
    let number = |p: &str| p["branch_".len()..].parse::<u64>().unwrap_or(u64::MAX);
    ports.sort_by(|a, b| number(a.0).cmp(&number(b.0)).then(a.0.cmp(b.0)));
    ports
}

/// The Join most of the Fork's branches reach, the nearest first; Joins that name another Fork
/// in `paired_fork_id` are not candidates.
fn infer_join(nodes: &[CompiledNode], fork: usize) -> Option<usize> {
    let fork_id = &nodes[fork].id;
    // Join index → (branches reaching it, farthest distance over those branches).
    let mut seen: HashMap<usize, (usize, usize)> = HashMap::new();
    for (_, starts) in branch_ports(&nodes[fork]) {
        let mut dist: HashMap<usize, usize> = HashMap::new();
        let mut queue: VecDeque<(usize, usize)> = starts.iter().map(|&s| (s, 1)).collect();
        while let Some((n, d)) = queue.pop_front() {
            if n == fork || dist.contains_key(&n) {
                continue;
            }
            dist.insert(n, d);
            for (_, targets) in &nodes[n].routes {
                queue.extend(targets.iter().map(|&t| (t, d + 1)));
            }
        }
        for (n, d) in dist {
            let other_fork = config_str(&nodes[n], "paired_fork_id").filter(|id| id != fork_id);
            if nodes[n].def.node_type == JOIN && other_fork.is_none() {
                let e = seen.entry(n).or_insert((0, 0));
                e.0 += 1;
                e.1 = e.1.max(d);
            }
        }
    }
    seen.into_iter()
        .min_by_key(|&(j, (count, far))| (std::cmp::Reverse(count), far, j))
        .map(|(j, _)| j)
}

// ---------------------------------------------------------------------------------------------
// Running

/// One branch or item to run.
struct Unit {
    name: String,
    /// Extra variables (`item`, `index`).
    vars: Vec<(&'static str, Value)>,
    /// The parallel node's own outputs inside the unit (`current_item`, `current_index`).
    own_outputs: Option<Value>,
}

/// What a parallel node runs.
struct Plan {
    is_fork: bool,
    units: Vec<Unit>,
    starts: Vec<Vec<usize>>,
    stop_at: Option<usize>,
    fail_fast: bool,
    workers: usize,
    unit_timeout: Option<Duration>,
}

/// A branch thread's report to the run's thread.
enum Msg {
    Started(usize, usize),
    Completed(usize, Duration),
    Failed(usize, Duration, RunError, FailureDisposition),
    Log(usize, Duration, NodeLog),
    Finished(Box<UnitEnd>),
}

/// How a branch ended.
struct UnitEnd {
    unit: usize,
    status: RunStatus,
    error: Option<RunError>,
    value: Value,
    executions: u64,
    records: Vec<NodeRecord>,
    /// The branch's last node completion, held back until the branch is recorded as finished.
    last: Option<(usize, Duration)>,
}

/// Run the Fork or ParallelForEach at `idx` (the runner's hook): the branches run on a pool
/// while this thread relays their node events to `obs` and watches cancellation and the job
/// deadline.
pub(crate) fn run(
    wf: &Workflow,
    idx: usize,
    state: &mut RunState,
    opts: &RunOptions,
    cancel: &CancelToken,
    obs: &mut dyn Observer,
    job_deadline: Instant,
) -> NodeRun {
    let here = Here {
        wf,
        idx,
        opts,
        cancel,
        job_deadline,
    };
    let planned = std::panic::catch_unwind(AssertUnwindSafe(|| plan(&here, state)));
    let plan = match planned {
        Ok(Ok(plan)) => plan,
        Ok(Err(e)) => return (Err(e), Dict::new(), Vec::new()),
        Err(panic) => {
            return (
                Err(super::node::panic_error(panic)),
                Dict::new(),
                Vec::new(),
            )
        }
    };
    let progress = state.parallel.entry(idx).or_default();
    if progress.complete {
        // A Fork run again (a loop) whose Join never consumed the last results.
        *progress = UnitsDone::default();
    }
    // While it runs, the node stays at the head of the queue: a checkpoint taken meanwhile
    // resumes into it.
    state.queue.push_front(idx);
    let interrupted = run_units(&here, state, obs, &plan);
    state.queue.pop_front();
    match interrupted {
        Some(e) => (Err(e), Dict::new(), Vec::new()),
        None => match conclude(&here, state, &plan) {
            Ok((flow, outputs)) => (Ok(flow), outputs, Vec::new()),
            Err(e) => {
                state.parallel.remove(&idx);
                (Err(e), Dict::new(), Vec::new())
            }
        },
    }
}

/// After every unit ended: the node's failure, or its routing and outputs. A Fork keeps its
/// results in [`RunState::parallel`] for its Join; a ParallelForEach outputs them.
fn conclude(here: &Here<'_>, state: &mut RunState, plan: &Plan) -> Result<(Flow, Dict), NodeError> {
    let idx = here.idx;
    let done = state.parallel.get(&idx).cloned().unwrap_or_default();
    if let Some(e) = failure(&done, plan.units.len(), plan.is_fork) {
        return Err(e);
    }
    let unfinished = plan.units.len().saturating_sub(done.done.len());
    if unfinished > 0 {
        // Not expected: every unit that ends without being cancelled by the run is recorded.
        let what = if plan.is_fork { "branches" } else { "items" };
        return Err(NodeError::new(
            "RuntimeError",
            format!("{unfinished} of {} {what} did not finish", plan.units.len()),
        ));
    }
    if plan.is_fork {
        if let Some(p) = state.parallel.get_mut(&idx) {
            p.complete = true;
        }
        let join = here.wf.nodes[idx].pair.unwrap_or(idx);
        return Ok((Flow::Goto(join), Dict::new()));
    }
    state.parallel.remove(&idx);
    let mut outputs = Dict::new();
    if let Some(last) = plan.units.last() {
        for (port, (_, v)) in ["current_item", "current_index"].iter().zip(&last.vars) {
            outputs.insert((*port).to_string(), v.clone());
        }
    }
    let results: Vec<Value> = done.done.into_values().map(|r| r.value).collect();
    outputs.insert("results".into(), Value::list(results));
    state.charge_outputs(idx, &outputs, here.opts)?;
    Ok((Flow::port("completed"), outputs))
}

/// Read the node's parameters into a [`Plan`].
fn plan(here: &Here<'_>, state: &mut RunState) -> Result<Plan, NodeError> {
    let (wf, idx, opts) = (here.wf, here.idx, here.opts);
    let ctx = NodeCtx {
        wf,
        idx,
        state,
        opts,
        cancel: here.cancel,
        deadline: here.job_deadline,
        outputs: Dict::new(),
        logs: Vec::new(),
        observer: None,
    };
    let node = &wf.nodes[idx];
    let fail_fast = ctx.param_bool("fail_fast");
    let max = opts.max_parallel_branches.max(1);
    if node.def.node_type == FORK {
        let ports = branch_ports(node);
        return Ok(Plan {
            is_fork: true,
            units: ports
                .iter()
                .map(|(p, _)| Unit {
                    name: (*p).to_string(),
                    vars: Vec::new(),
                    own_outputs: None,
                })
                .collect(),
            starts: ports.iter().map(|(_, t)| t.to_vec()).collect(),
            stop_at: node.pair,
            fail_fast,
            workers: max.min(ports.len()),
            unit_timeout: None,
        });
    }
    let items = ctx.param_list("items")?;
    let batch = ctx.param_i64("batch_size")?;
    if !(1..=50).contains(&batch) {
        return Err(NodeError::value(format!(
            "batch_size must be between 1 and 50, got {batch}"
        )));
    }
    let per_item = ctx.param_f64("timeout_per_item")?;
    if !per_item.is_finite() || per_item <= 0.0 {
        return Err(NodeError::value(format!(
            "timeout_per_item must be a positive number of seconds, got {per_item}"
        )));
    }
    let units: Vec<Unit> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let index = Value::Int(i as i64);
            let own: Dict = [
                ("current_item".to_string(), item.clone()),
                ("current_index".to_string(), index.clone()),
            ]
            .into_iter()
            .collect();
            Unit {
                name: format!("item {i}"),
                vars: vec![("item", item.clone()), ("index", index)],
                own_outputs: Some(Value::dict(own)),
            }
        })
        .collect();
    let body = node.targets("body").to_vec();
    Ok(Plan {
        is_fork: false,
        starts: vec![body; units.len()],
        workers: max.min(batch as usize).min(units.len().max(1)),
        units,
        stop_at: None,
        fail_fast,
        unit_timeout: Some(Duration::from_secs_f64(per_item.min(31_536_000.0))),
    })
}

/// The first failure among finished units, as the node's error.
fn failure(done: &UnitsDone, n_units: usize, is_fork: bool) -> Option<NodeError> {
    let mut failed = done
        .done
        .values()
        .filter_map(|r| Some((&r.name, r.error.as_ref()?)));
    let (name, first) = failed.next()?;
    let more = failed.count();
    let what = if is_fork { "branches" } else { "items" };
    let also = if more > 0 {
        format!(" ({} of {n_units} {what} failed)", more + 1)
    } else {
        String::new()
    };
    Some(NodeError::new(
        first.error_type.clone(),
        format!("{name} failed: {first}{also}"),
    ))
}

/// A copy of the run state for branches: no queue, no Try frames or pending error of the main
/// path, no parallel progress.
fn branch_base(state: &mut RunState, stop_at: Option<usize>) -> RunState {
    let parallel = std::mem::take(&mut state.parallel);
    let records = std::mem::take(&mut state.node_records);
    let mut base = state.clone();
    state.parallel = parallel;
    state.node_records = records;
    base.queue.clear();
    base.tries.clear();
    base.pending_error = None;
    base.prior_elapsed_ms = 0;
    base.stop_at = stop_at;
    base
}

/// The parallel node being run and the run it belongs to.
struct Here<'a> {
    wf: &'a Workflow,
    idx: usize,
    opts: &'a RunOptions,
    cancel: &'a CancelToken,
    job_deadline: Instant,
}

/// Run the unfinished units on a pool; returns the interruption (cancellation, job timeout) if
/// there was one.
fn run_units(
    here: &Here<'_>,
    state: &mut RunState,
    obs: &mut dyn Observer,
    plan: &Plan,
) -> Option<NodeError> {
    let Here {
        wf,
        idx,
        opts,
        cancel,
        job_deadline,
    } = *here;
    let pending: Vec<usize> = (0..plan.units.len())
        .filter(|u| {
            !state
                .parallel
                .get(&idx)
                .is_some_and(|p| p.done.contains_key(u))
        })
        .collect();
    if pending.is_empty() {
        return None;
    }
    let seeds: Vec<u64> = plan.units.iter().map(|_| state.rng.u64(..)).collect();
    let node_cancel = CancelToken::new();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut relay = Relay {
        wf,
        idx,
        state,
        obs,
        opts,
        plan,
        node_cancel: &node_cancel,
        job_deadline,
        started: vec![0; plan.units.len()],
    };
    let workers = plan.workers.min(pending.len()).max(1);
    std::thread::scope(|scope| {
        for w in 0..workers {
            let worker = Worker {
                wf,
                idx,
                base: branch_base(relay.state, plan.stop_at),
                opts,
                plan,
                pending: &pending,
                next: &next,
                seeds: &seeds,
                cancel: &node_cancel,
                job_deadline,
                tx: tx.clone(),
            };
            let name = format!("par-{}-{w}", wf.nodes[idx].id);
            let spawned = std::thread::Builder::new()
                .name(name.chars().take(15).collect())
                .spawn_scoped(scope, move || worker.run());
            if let Err(e) = spawned {
                log::warn!("cannot start a branch thread for {}: {e}", wf.nodes[idx].id);
                if w == 0 {
                    return Some(NodeError::new(
                        "RuntimeError",
                        format!("cannot start a thread for its branches: {e}"),
                    ));
                }
            }
        }
        drop(tx);
        relay.relay_until_done(&rx, cancel, job_deadline)
    })
}

/// The run's side while branches run: relays their events and watches the job.
struct Relay<'a, 'o> {
    wf: &'a Workflow,
    idx: usize,
    state: &'a mut RunState,
    obs: &'a mut (dyn Observer + 'o),
    opts: &'a RunOptions,
    plan: &'a Plan,
    node_cancel: &'a CancelToken,
    job_deadline: Instant,
    /// Node starts seen per unit (the run's execution count follows them).
    started: Vec<u64>,
}

impl Relay<'_, '_> {
    fn relay_until_done(
        &mut self,
        rx: &mpsc::Receiver<Msg>,
        cancel: &CancelToken,
        job_deadline: Instant,
    ) -> Option<NodeError> {
        let mut interrupted: Option<NodeError> = None;
        loop {
            let all_ended = match rx.recv_timeout(WATCH_EVERY) {
                Ok(msg) => {
                    self.handle(msg);
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            // Looked at once more after the last branch ended: branches that stopped at the
            // job's deadline (or token) on their own have not finished.
            if interrupted.is_some() {
                if all_ended {
                    break;
                }
                continue;
            }
            if cancel.is_cancelled() {
                let reason = cancel.reason().unwrap_or_else(|| "cancelled".into());
                self.node_cancel.cancel(reason.clone());
                interrupted = Some(NodeError::cancelled(reason));
            } else if Instant::now() >= job_deadline {
                let msg = format!(
                    "job timed out after {} s",
                    self.opts.job_timeout.as_secs_f64()
                );
                self.node_cancel.cancel(msg.clone());
                interrupted = Some(NodeError::timeout(msg));
            }
            if all_ended {
                break;
            }
        }
        interrupted
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Started(unit, node) => {
                self.started[unit] += 1;
                self.state.executions += 1;
                let ev = event(self.wf, self.state, node, Duration::ZERO);
                self.obs.node_started(&ev);
            }
            Msg::Completed(node, elapsed) => self.completed(node, elapsed),
            Msg::Failed(node, elapsed, error, what_next) => {
                let ev = event(self.wf, self.state, node, elapsed);
                self.obs.node_failed(&ev, &error, what_next);
            }
            Msg::Log(node, elapsed, log) => {
                let ev = event(self.wf, self.state, node, elapsed);
                self.obs.node_log(&ev, &log);
            }
            Msg::Finished(end) => self.finished(*end),
        }
    }

    fn completed(&mut self, node: usize, elapsed: Duration) {
        if !self.state.visited[node] {
            self.state.visited[node] = true;
            self.state.n_visited += 1;
        }
        let ev = event(self.wf, self.state, node, elapsed);
        self.obs.node_completed(&ev, self.state);
    }

    fn finished(&mut self, end: UnitEnd) {
        let extra = end.executions.saturating_sub(self.started[end.unit]);
        self.state.executions += extra;
        let room = self
            .opts
            .max_node_records
            .saturating_sub(self.state.node_records.len());
        self.state
            .node_records
            .extend(end.records.into_iter().take(room));
        let unit = &self.plan.units[end.unit];
        let error = match end.status {
            RunStatus::Completed => None,
            RunStatus::Failed => end.error,
            // An item's own deadline (timeout_per_item), not the job's: the item failed.
            RunStatus::TimedOut
                if self.plan.unit_timeout.is_some() && Instant::now() < self.job_deadline =>
            {
                let secs = self.plan.unit_timeout.map_or(0.0, |t| t.as_secs_f64());
                end.error.map(|e| RunError {
                    message: format!("timed out after {secs} s (timeout_per_item)"),
                    ..e
                })
            }
            // Cancelled (by the job or by fail_fast) or the job's deadline: not finished, a
            // resume runs it again.
            RunStatus::Cancelled | RunStatus::TimedOut => None,
        };
        let recorded = matches!(end.status, RunStatus::Completed) || error.is_some();
        if recorded {
            if error.is_some() && self.plan.fail_fast {
                self.node_cancel
                    .cancel(format!("fail_fast: {} failed", unit.name));
            }
            let result = UnitResult {
                name: unit.name.clone(),
                value: end.value,
                error,
            };
            self.state
                .parallel
                .entry(self.idx)
                .or_default()
                .done
                .insert(end.unit, result);
            self.state.vars_changed = true;
        }
        if let Some((node, elapsed)) = end.last {
            self.completed(node, elapsed);
        }
    }
}

/// What observers are told about a branch's node.
fn event<'w>(
    wf: &'w Workflow,
    state: &RunState,
    node_index: usize,
    elapsed: Duration,
) -> NodeEvent<'w> {
    let node = &wf.nodes[node_index];
    NodeEvent {
        node_index,
        node_id: &node.id,
        node_type: node.def.node_type,
        percent: runner::percent(state, wf),
        executions: state.executions,
        elapsed,
    }
}

/// A pool thread: takes the next pending unit until none is left or the node is cancelled.
struct Worker<'a> {
    wf: &'a Workflow,
    idx: usize,
    base: RunState,
    opts: &'a RunOptions,
    plan: &'a Plan,
    pending: &'a [usize],
    next: &'a AtomicUsize,
    seeds: &'a [u64],
    cancel: &'a CancelToken,
    job_deadline: Instant,
    tx: mpsc::Sender<Msg>,
}

impl Worker<'_> {
    fn run(self) {
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&unit) = self.pending.get(k) else {
                return;
            };
            let end = self.run_unit(unit);
            if self.tx.send(Msg::Finished(Box::new(end))).is_err() {
                return;
            }
        }
    }

    fn run_unit(&self, unit: usize) -> UnitEnd {
        let spec = &self.plan.units[unit];
        let mut state = self.base.clone();
        state.queue.extend(self.plan.starts[unit].iter().copied());
        for (name, value) in &spec.vars {
            state.variables.insert((*name).to_string(), value.clone());
        }
        if let Some(own) = &spec.own_outputs {
            state.outputs[self.idx] = own.clone();
        }
        state.rng = fastrand::Rng::with_seed(self.seeds[unit]);
        let mut opts = self.opts.clone();
        opts.job_timeout = self.job_deadline.saturating_duration_since(Instant::now());
        if let Some(t) = self.plan.unit_timeout {
            opts.job_timeout = opts.job_timeout.min(t);
        }
        let mut obs = BranchObserver {
            tx: self.tx.clone(),
            unit,
            held: None,
        };
        let base_executions = self.base.executions;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            runner::execute(self.wf, state, &opts, self.cancel, &mut obs, false)
        }));
        let last = obs.held.take();
        match outcome {
            Ok(out) => UnitEnd {
                unit,
                status: out.status,
                error: out.error,
                value: if self.plan.is_fork {
                    Value::dict(out.variables)
                } else {
                    Value::dict(changed_vars(&self.base.variables, out.variables))
                },
                executions: out.node_executions.saturating_sub(base_executions),
                records: out.node_records,
                last,
            },
            Err(panic) => UnitEnd {
                unit,
                status: RunStatus::Failed,
                error: Some(RunError {
                    node_id: String::new(),
                    node_type: String::new(),
                    error_type: "InternalError".into(),
                    message: format!("{} {}", spec.name, super::node::panic_error(panic).message),
                }),
                value: Value::Null,
                executions: 0,
                records: Vec::new(),
                last,
            },
        }
    }
}

/// The variables an item's run set or changed, without internal names and the item context.
fn changed_vars(before: &Dict, after: Dict) -> Dict {
    after
        .into_iter()
        .filter(|(k, v)| {
            !k.starts_with('_') && k != "item" && k != "index" && before.get(k.as_str()) != Some(v)
        })
        .collect()
}

/// A branch's observer: sends its events to the run's thread, holding back each node
/// completion until the next event, so the branch's last completion goes with its end.
struct BranchObserver {
    tx: mpsc::Sender<Msg>,
    unit: usize,
    held: Option<(usize, Duration)>,
}

impl BranchObserver {
    fn send(&self, msg: Msg) {
        // The run's thread outlives its branches; a send can only fail once it has given up.
        let _ = self.tx.send(msg);
    }
    fn flush(&mut self) {
        if let Some((node, elapsed)) = self.held.take() {
            self.send(Msg::Completed(node, elapsed));
        }
    }
}

impl Observer for BranchObserver {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        self.flush();
        self.send(Msg::Started(self.unit, ev.node_index));
    }
    fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
        self.flush();
        self.held = Some((ev.node_index, ev.elapsed));
    }
    fn node_failed(&mut self, ev: &NodeEvent<'_>, error: &RunError, what_next: FailureDisposition) {
        self.flush();
        self.send(Msg::Failed(
            ev.node_index,
            ev.elapsed,
            error.clone(),
            what_next,
        ));
    }
    fn node_log(&mut self, ev: &NodeEvent<'_>, log: &NodeLog) {
        self.send(Msg::Log(ev.node_index, ev.elapsed, log.clone()));
    }
}

//! Per-node checkpoints: save after every completed node, resume exactly where a run stopped.
//!
//! Layout: one `checkpoints` row per job with what rarely changes (hashes of the workflow and
//! inputs, status, timestamps, an in-flight marker), and `checkpoint_values` rows keyed by
//! (job, kind, key): the small "core" (queue, executed marks, loop and try states, counters,
//! variable order, the node that completed), variables, node outputs, input port values and
//! For-loop item lists. The values table is clustered by that key (WITHOUT ROWID), so a typical
//! per-node save (the core plus a few small values of one job) rewrites a single page. A [`Checkpointer`] remembers what it last wrote and writes only
//! entries whose value changed (shared containers are compared by pointer, so a 10,000-element
//! list that did not change costs nothing per node). Values over [`COMPRESS_ABOVE`] bytes are
//! stored zstd-compressed. One save is one SQLite transaction.
//!
//! Resume rule (at-least-once): the checkpoint is taken after a node completed and its routing was
//! applied, so a resumed run never repeats a completed node; the node that was in flight when the
//! robot stopped runs again. A node whose config sets `_at_most_once: true` is marked in flight
//! before it runs; if the robot stops during it, resuming does not repeat it and fails the job with
//! a message saying so (its effect must be checked by a person).

use super::rewind;
use super::{now_secs, Store, StoreError};
use crate::engine::model::Workflow;
use crate::engine::node::NodeLog;
use crate::engine::resources::OpenRecord;
use crate::engine::runner::{
    LoopItems, LoopState, NodeEvent, Observer, RunError, RunState, TryFrame,
};
use crate::engine::value::{Dict, Value};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Values whose encoding is larger than this many bytes are stored zstd-compressed.
pub const COMPRESS_ABOVE: usize = 2048;

/// Version of the core encoding.
const CORE_VERSION: u32 = 1;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS checkpoints(
    job_id TEXT PRIMARY KEY,
    workflow_hash TEXT NOT NULL,
    inputs_hash TEXT NOT NULL,
    inflight TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint_values(
    job_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    compressed INTEGER NOT NULL,
    PRIMARY KEY(job_id, kind, key)
) WITHOUT ROWID;
";

const KIND_CORE: i64 = -1;
const KIND_VAR: i64 = 0;
const KIND_OUT: i64 = 1;
const KIND_IN: i64 = 2;
const KIND_LOOP: i64 = 3;

/// What a checkpoint must match to be resumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// [`Workflow::hash`].
    pub workflow_hash: String,
    /// [`inputs_hash`] of the job's inputs.
    pub inputs_hash: String,
}

impl CheckpointMeta {
    /// The meta of running `wf` with `inputs`.
    pub fn new(wf: &Workflow, inputs: &Dict) -> CheckpointMeta {
        CheckpointMeta {
            workflow_hash: wf.hash.clone(),
            inputs_hash: inputs_hash(inputs),
        }
    }
}

/// A stable hash of job inputs.
pub fn inputs_hash(inputs: &Dict) -> String {
    let text = serde_json::to_string(&Value::dict(inputs.clone())).unwrap_or_default();
    format!("{:016x}", crate::engine::model::fnv1a(text.as_bytes()))
}

/// Lifecycle of a stored checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// The job is running (or the robot stopped while it ran).
    Running,
    /// The job failed; kept for the retention period so a rerun resumes.
    Failed,
    /// The job was cancelled or timed out; kept for the retention period.
    Cancelled,
}

impl CheckpointStatus {
    fn as_str(self) -> &'static str {
        match self {
            CheckpointStatus::Running => "running",
            CheckpointStatus::Failed => "failed",
            CheckpointStatus::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> CheckpointStatus {
        match s {
            "failed" => CheckpointStatus::Failed,
            "cancelled" => CheckpointStatus::Cancelled,
            _ => CheckpointStatus::Running,
        }
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The job.
    pub job_id: String,
    /// Saves so far.
    pub seq: u64,
    /// The node whose completion was saved last.
    pub node_id: String,
    /// An `_at_most_once` node that was running when the state was saved, if any.
    pub inflight: Option<String>,
    /// Lifecycle.
    pub status: CheckpointStatus,
    /// Hashes it was made with.
    pub meta: CheckpointMeta,
    /// When it was saved (Unix seconds).
    pub saved_at: f64,
    /// The run state to resume.
    pub state: RunState,
    /// Resources that were open at this checkpoint (a resume rewinds past their openers).
    pub resources: Vec<OpenRecord>,
    /// Nodes completed since the first of those resources opened (see `store::rewind`).
    pub span: Vec<usize>,
}

/// A summary row for operators.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointInfo {
    /// The job.
    pub job_id: String,
    /// Saves so far.
    pub seq: u64,
    /// The node completed last.
    pub node_id: String,
    /// Lifecycle.
    pub status: CheckpointStatus,
    /// Workflow hash.
    pub workflow_hash: String,
    /// Unix seconds.
    pub saved_at: f64,
    /// Stored bytes (core and values).
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
enum CoreLoop {
    ForList {
        index: u64,
        break_requested: bool,
        has_keys: bool,
    },
    ForRange {
        start: i64,
        end: i64,
        step: i64,
        index: u64,
        break_requested: bool,
    },
    While {
        iteration: u64,
        break_requested: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct Core {
    v: u32,
    seq: u64,
    node_id: String,
    saved_at: f64,
    n_nodes: usize,
    queue: Vec<usize>,
    executed: Vec<usize>,
    visited: Vec<usize>,
    loops: Vec<(usize, CoreLoop)>,
    tries: Vec<TryFrame>,
    pending_error: Option<RunError>,
    executions: u64,
    elapsed_ms: u64,
    var_order: Vec<String>,
    /// A sub-workflow call in progress (the child run's whole state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    call: Option<Box<crate::engine::subflow::CallFrame>>,
    /// Finished branches of Forks / ParallelForEach nodes in progress.
    #[serde(default)]
    parallel: crate::engine::parallel::ParallelProgress,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    resources: Vec<OpenRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    span: Vec<usize>,
}

fn encode(
    value: &Value,
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
) -> Result<(Vec<u8>, bool), StoreError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| StoreError::Sql(format!("cannot encode a value: {e}")))?;
    if json.len() > COMPRESS_ABOVE {
        return Ok((compress(&json, zstd)?, true));
    }
    Ok((json, false))
}

/// zstd with a compressor that is created once and reused (creating a context per call costs
/// more than a checkpoint's whole SQLite transaction).
fn compress(
    bytes: &[u8],
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
) -> Result<Vec<u8>, StoreError> {
    if zstd.is_none() {
        *zstd = Some(
            zstd::bulk::Compressor::new(1).map_err(|e| StoreError::Sql(format!("zstd: {e}")))?,
        );
    }
    match zstd {
        Some(c) => c
            .compress(bytes)
            .map_err(|e| StoreError::Sql(format!("zstd: {e}"))),
        None => Err(StoreError::Sql("zstd unavailable".into())),
    }
}

/// Core blobs start with a format byte: `J` plain JSON, `Z` zstd-compressed JSON.
fn encode_core(
    json: Vec<u8>,
    zstd: &mut Option<zstd::bulk::Compressor<'static>>,
) -> Result<Vec<u8>, StoreError> {
    let (tag, body) = if json.len() > COMPRESS_ABOVE {
        (b'Z', compress(&json, zstd)?)
    } else {
        (b'J', json)
    };
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(tag);
    out.extend_from_slice(&body);
    Ok(out)
}

fn decode_core(blob: &[u8]) -> Result<Vec<u8>, StoreError> {
    match blob.split_first() {
        Some((b'J', rest)) => Ok(rest.to_vec()),
        Some((b'Z', rest)) => zstd::stream::decode_all(rest)
            .map_err(|e| StoreError::Corrupt(format!("checkpoint core: zstd: {e}"))),
        _ => Err(StoreError::Corrupt(
            "checkpoint core: unknown format".into(),
        )),
    }
}

fn decode(bytes: &[u8], compressed: bool, what: &str) -> Result<Value, StoreError> {
    let raw;
    let json = if compressed {
        raw = zstd::stream::decode_all(bytes)
            .map_err(|e| StoreError::Corrupt(format!("{what}: zstd: {e}")))?;
        &raw[..]
    } else {
        bytes
    };
    serde_json::from_slice(json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// True when `a` and `b` are the same value without walking containers: containers and strings by
/// pointer (they are shared, copy-on-write), scalars by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Str(x), Value::Str(y)) => Arc::ptr_eq(x, y) || (x.len() <= 64 && x == y),
        (Value::List(x), Value::List(y)) => Arc::ptr_eq(x, y),
        (Value::Dict(x), Value::Dict(y)) => Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// Counters of what a [`Checkpointer`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveStats {
    /// Checkpoints saved.
    pub saves: u64,
    /// Bytes written (core plus changed entries).
    pub bytes: u64,
    /// Entries written (changed values).
    pub entries: u64,
}

impl Store {
    /// Save a full checkpoint of `state` for `job_id` (every entry written). Runs use a
    /// [`Checkpointer`], which writes only what changed.
    pub fn save_checkpoint(
        &mut self,
        job_id: &str,
        node_id: &str,
        state: &RunState,
        meta: &CheckpointMeta,
    ) -> Result<SaveStats, StoreError> {
        let mut writer = Checkpointer::new(self, job_id, meta.clone(), Duration::ZERO);
        writer.save(node_id, state, None)?;
        Ok(writer.stats)
    }

    /// True when a checkpoint exists for `job_id`.
    pub fn has_checkpoint(&self, job_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM checkpoints WHERE job_id = ?1",
                [job_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Delete the checkpoint of `job_id`; returns whether one existed.
    pub fn clear_checkpoint(&mut self, job_id: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM checkpoint_values WHERE job_id = ?1", [job_id])?;
        let n = tx.execute("DELETE FROM checkpoints WHERE job_id = ?1", [job_id])?;
        rewind::clear(&tx, job_id)?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Mark a checkpoint as belonging to a failed or cancelled job: it is kept for the retention
    /// period (a rerun of the job resumes from it), then purged.
    pub fn finish_checkpoint(
        &mut self,
        job_id: &str,
        status: CheckpointStatus,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE checkpoints SET status = ?2, finished_at = ?3 WHERE job_id = ?1",
            params![job_id, status.as_str(), now_secs()],
        )?;
        Ok(())
    }

    /// Load the checkpoint of `job_id` for workflow `wf`. Damaged or inconsistent data is
    /// [`StoreError::Corrupt`]; the caller should clear it and start over.
    pub fn load_checkpoint(
        &self,
        job_id: &str,
        wf: &Workflow,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT workflow_hash, inputs_hash, inflight, status FROM checkpoints WHERE job_id = ?1",
                [job_id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| match StoreError::from(e) {
                StoreError::Sql(m) => StoreError::Corrupt(m),
                other => other,
            })?;
        let Some((workflow_hash, inputs_hash, inflight, status)) = row else {
            return Ok(None);
        };
        let meta = CheckpointMeta {
            workflow_hash,
            inputs_hash,
        };
        let status = CheckpointStatus::parse(&status);
        if meta.workflow_hash != wf.hash {
            // Different workflow: the caller discards it; no need to decode the state.
            return Ok(Some(Checkpoint {
                job_id: job_id.to_string(),
                seq: 0,
                node_id: String::new(),
                inflight,
                status,
                meta,
                saved_at: 0.0,
                state: RunState::new(wf, Dict::new(), &Default::default()),
                resources: Vec::new(),
                span: Vec::new(),
            }));
        }
        let core = self.read_core(job_id)?;
        let (seq, node_id, saved_at) = (core.seq, core.node_id.clone(), core.saved_at);
        let (resources, span) = (core.resources.clone(), core.span.clone());
        let state = self.rebuild(job_id, wf, core)?;
        Ok(Some(Checkpoint {
            job_id: job_id.to_string(),
            seq,
            node_id,
            inflight,
            status,
            meta,
            saved_at,
            state,
            resources,
            span,
        }))
    }

    fn read_core(&self, job_id: &str) -> Result<Core, StoreError> {
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT value FROM checkpoint_values WHERE job_id = ?1 AND kind = ?2 AND key = ''",
                params![job_id, KIND_CORE],
                |r| r.get(0),
            )
            .optional()?;
        let blob = blob.ok_or_else(|| {
            StoreError::Corrupt(format!("checkpoint of job {job_id}: its core is missing"))
        })?;
        let bytes = decode_core(&blob)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("checkpoint core: {e}")))
    }

    fn rebuild(&self, job_id: &str, wf: &Workflow, core: Core) -> Result<RunState, StoreError> {
        let n = wf.nodes.len();
        let bad = |what: &str| StoreError::Corrupt(format!("checkpoint of job {job_id}: {what}"));
        if core.v != CORE_VERSION {
            return Err(bad(&format!("unknown format version {}", core.v)));
        }
        if core.n_nodes != n {
            return Err(bad(&format!(
                "made for {} nodes, the workflow has {n}",
                core.n_nodes
            )));
        }
        let all = core
            .queue
            .iter()
            .chain(&core.executed)
            .chain(&core.visited)
            .chain(core.loops.iter().map(|(i, _)| i));
        if let Some(i) = all.copied().find(|&i| i >= n) {
            return Err(bad(&format!("node index {i} out of range")));
        }
        let mut state = RunState::new(wf, Dict::new(), &Default::default());
        state.queue = VecDeque::from(core.queue);
        for &i in &core.executed {
            state.executed[i] = true;
        }
        state.n_executed = state.executed.iter().filter(|b| **b).count();
        for &i in &core.visited {
            state.visited[i] = true;
        }
        state.n_visited = state.visited.iter().filter(|b| **b).count();
        state.tries = core.tries;
        state.pending_error = core.pending_error;
        state.executions = core.executions;
        state.prior_elapsed_ms = core.elapsed_ms;
        state.call = core.call;
        state.parallel = core.parallel;

        let mut vars: HashMap<String, Value> = HashMap::new();
        let mut loop_items: HashMap<String, Value> = HashMap::new();
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind, key, value, compressed FROM checkpoint_values WHERE job_id = ?1",
        )?;
        let rows = stmt.query_map([job_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        for row in rows {
            let (kind, key, bytes, compressed) = row?;
            if kind == KIND_CORE {
                continue;
            }
            let value = decode(&bytes, compressed, &key)?;
            match kind {
                KIND_CORE => {}
                KIND_VAR => {
                    vars.insert(key, value);
                }
                KIND_OUT | KIND_IN => {
                    let (idx, port) = key
                        .split_once('/')
                        .ok_or_else(|| bad(&format!("bad entry key {key:?}")))?;
                    let idx: usize = idx
                        .parse()
                        .map_err(|_| bad(&format!("bad entry key {key:?}")))?;
                    if idx >= n {
                        return Err(bad(&format!("entry for node index {idx} out of range")));
                    }
                    if kind == KIND_OUT {
                        if !matches!(state.outputs[idx], Value::Dict(_)) {
                            state.outputs[idx] = Value::dict(Dict::new());
                        }
                        if let Value::Dict(d) = &mut state.outputs[idx] {
                            Arc::make_mut(d).insert(port.to_string(), value);
                        }
                    } else {
                        state
                            .inputs
                            .entry(idx)
                            .or_default()
                            .push((port.to_string(), value));
                    }
                }
                KIND_LOOP => {
                    loop_items.insert(key, value);
                }
                other => return Err(bad(&format!("unknown entry kind {other}"))),
            }
        }
        for name in core.var_order {
            let value = vars
                .remove(&name)
                .ok_or_else(|| bad(&format!("variable {name:?} is missing")))?;
            state.variables.insert(name, value);
        }
        for (idx, l) in core.loops {
            let ls = match l {
                CoreLoop::ForList {
                    index,
                    break_requested,
                    has_keys,
                } => {
                    let items = loop_items
                        .remove(&format!("{idx}/items"))
                        .ok_or_else(|| bad(&format!("items of loop {idx} are missing")))?;
                    let keys = if has_keys {
                        Some(
                            loop_items
                                .remove(&format!("{idx}/keys"))
                                .ok_or_else(|| bad("loop keys missing"))?,
                        )
                    } else {
                        None
                    };
                    LoopState::For {
                        items: LoopItems::List { items, keys },
                        index,
                        break_requested,
                    }
                }
                CoreLoop::ForRange {
                    start,
                    end,
                    step,
                    index,
                    break_requested,
                } => LoopState::For {
                    items: LoopItems::Range { start, end, step },
                    index,
                    break_requested,
                },
                CoreLoop::While {
                    iteration,
                    break_requested,
                } => LoopState::While {
                    iteration,
                    break_requested,
                },
            };
            state.loops.insert(idx, ls);
        }
        Ok(state)
    }

    /// All checkpoints, newest first.
    pub fn list_checkpoints(&self) -> Result<Vec<CheckpointInfo>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.job_id, c.status, c.workflow_hash, c.created_at,
                    (SELECT SUM(length(v.value)) FROM checkpoint_values v WHERE v.job_id = c.job_id)
             FROM checkpoints c WHERE c.job_id NOT LIKE '%' || ?1",
        )?;
        let rows = stmt.query_map([rewind::SUFFIX], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, f64>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (job_id, status, workflow_hash, created_at, bytes) = row?;
            let (seq, node_id, saved_at) = match self.read_core(&job_id) {
                Ok(core) => (core.seq, core.node_id, core.saved_at),
                Err(_) => (0, "(unreadable)".to_string(), created_at),
            };
            out.push(CheckpointInfo {
                job_id,
                seq,
                node_id,
                status: CheckpointStatus::parse(&status),
                workflow_hash,
                saved_at,
                bytes: bytes.unwrap_or(0).max(0) as u64,
            });
        }
        out.sort_by(|a, b| b.saved_at.total_cmp(&a.saved_at));
        Ok(out)
    }

    /// Purge finished checkpoints older than `retention`, then the oldest finished ones until the
    /// store holds at most `max_bytes`. Checkpoints of running jobs are never purged.
    /// Returns the number purged.
    pub fn purge_checkpoints(
        &mut self,
        retention: Duration,
        max_bytes: u64,
    ) -> Result<usize, StoreError> {
        let cutoff = now_secs() - retention.as_secs_f64();
        let expired: Vec<String> = {
            let mut stmt = self.conn.prepare(
                "SELECT job_id FROM checkpoints WHERE status != 'running' AND COALESCE(finished_at, created_at) < ?1",
            )?;
            let rows = stmt.query_map([cutoff], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut purged = 0;
        for job in &expired {
            if self.clear_checkpoint(job)? {
                purged += 1;
            }
        }
        let mut infos = self.list_checkpoints()?;
        let mut total: u64 = infos.iter().map(|i| i.bytes).sum();
        infos.sort_by(|a, b| a.saved_at.total_cmp(&b.saved_at));
        for info in infos
            .iter()
            .filter(|i| i.status != CheckpointStatus::Running)
        {
            if total <= max_bytes {
                break;
            }
            if self.clear_checkpoint(&info.job_id)? {
                purged += 1;
                total = total.saturating_sub(info.bytes);
            }
        }
        if total > max_bytes {
            log::warn!(
                "checkpoint store holds {total} bytes, over the {max_bytes}-byte cap, all of it for running jobs"
            );
        }
        Ok(purged)
    }
}

/// Writes a job's checkpoints incrementally: an [`Observer`] that saves after every completed node.
///
/// A failing save (disk full, read-only) is logged once and checkpointing stops for this run; the
/// run itself goes on (it simply cannot resume past that point).
pub struct Checkpointer<'s> {
    store: StoreRef<'s>,
    job_id: String,
    meta: CheckpointMeta,
    last: HashMap<(i64, String), Value>,
    loops_written: HashMap<usize, (Value, Option<Value>)>,
    seq: u64,
    created: bool,
    started: Instant,
    prior: Duration,
    wf: Option<&'s Workflow>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    inflight_set: bool,
    meta_written: bool,
    span: rewind::Span,
    /// What was written so far.
    pub stats: SaveStats,
    /// Set when a save failed and checkpointing stopped.
    pub failure: Option<StoreError>,
}

/// The store a [`Checkpointer`] writes to: borrowed (one run in this thread) or shared between
/// worker threads (the daemon).
enum StoreRef<'s> {
    Borrowed(&'s mut Store),
    Shared(super::SharedStore),
}

impl StoreRef<'_> {
    fn with<R>(&mut self, f: impl FnOnce(&mut Store) -> R) -> R {
        match self {
            StoreRef::Borrowed(store) => f(store),
            StoreRef::Shared(shared) => f(&mut shared.lock()),
        }
    }
}

impl<'s> Checkpointer<'s> {
    /// A writer for `job_id` on a store shared between threads.
    pub fn shared(
        store: super::SharedStore,
        job_id: &str,
        meta: CheckpointMeta,
        prior: Duration,
    ) -> Checkpointer<'s> {
        Checkpointer::with_store(StoreRef::Shared(store), job_id, meta, prior)
    }

    /// A writer for `job_id`; `prior` is the run time already spent before this process (resume).
    pub fn new(
        store: &'s mut Store,
        job_id: &str,
        meta: CheckpointMeta,
        prior: Duration,
    ) -> Checkpointer<'s> {
        Checkpointer::with_store(StoreRef::Borrowed(store), job_id, meta, prior)
    }

    fn with_store(
        store: StoreRef<'s>,
        job_id: &str,
        meta: CheckpointMeta,
        prior: Duration,
    ) -> Checkpointer<'s> {
        Checkpointer {
            store,
            job_id: job_id.to_string(),
            meta,
            last: HashMap::new(),
            loops_written: HashMap::new(),
            seq: 0,
            created: false,
            started: Instant::now(),
            prior,
            wf: None,
            zstd: None,
            inflight_set: false,
            meta_written: false,
            span: rewind::Span::default(),
            stats: SaveStats::default(),
            failure: None,
        }
    }

    /// Attach the workflow (needed to honour `_at_most_once` nodes and to limit output writes to
    /// the node that completed). Continue numbering from `seq` (when resuming).
    pub fn for_workflow(mut self, wf: &'s Workflow, seq: u64) -> Checkpointer<'s> {
        self.wf = Some(wf);
        self.seq = seq;
        self.created = seq > 0;
        self
    }

    /// Save the state after `node_id` completed. `only_node`: when set, only that node's outputs
    /// and inputs are compared (others cannot have changed); `None` compares everything.
    pub fn save(
        &mut self,
        node_id: &str,
        state: &RunState,
        only_node: Option<usize>,
    ) -> Result<(), StoreError> {
        self.seq += 1;
        let elapsed_ms = (self.prior + self.started.elapsed()).as_millis() as u64;
        let mut loops = Vec::with_capacity(state.loops.len());
        let mut loop_writes: Vec<(usize, Value, Option<Value>)> = Vec::new();
        for (&idx, l) in &state.loops {
            let cl = match l {
                LoopState::For {
                    items: LoopItems::List { items, keys },
                    index,
                    break_requested,
                } => {
                    let unchanged = self.loops_written.get(&idx).is_some_and(|(i, k)| {
                        same(i, items)
                            && match (k, keys) {
                                (Some(a), Some(b)) => same(a, b),
                                (None, None) => true,
                                _ => false,
                            }
                    });
                    if !unchanged {
                        loop_writes.push((idx, items.clone(), keys.clone()));
                    }
                    CoreLoop::ForList {
                        index: *index,
                        break_requested: *break_requested,
                        has_keys: keys.is_some(),
                    }
                }
                LoopState::For {
                    items: LoopItems::Range { start, end, step },
                    index,
                    break_requested,
                } => CoreLoop::ForRange {
                    start: *start,
                    end: *end,
                    step: *step,
                    index: *index,
                    break_requested: *break_requested,
                },
                LoopState::While {
                    iteration,
                    break_requested,
                } => CoreLoop::While {
                    iteration: *iteration,
                    break_requested: *break_requested,
                },
            };
            loops.push((idx, cl));
        }
        let resources = state.resources.open_records();
        let span_change = self.span.on_save(&resources, only_node);
        let core = Core {
            resources,
            span: self.span.nodes.clone(),
            v: CORE_VERSION,
            n_nodes: state.executed.len(),
            queue: state.queue.iter().copied().collect(),
            executed: bit_indices(&state.executed),
            visited: bit_indices(&state.visited),
            loops,
            tries: state.tries.clone(),
            pending_error: state.pending_error.clone(),
            executions: state.executions,
            elapsed_ms,
            seq: self.seq,
            node_id: node_id.to_string(),
            saved_at: now_secs(),
            var_order: state.variables.keys().cloned().collect(),
            call: state.call.clone(),
            parallel: state.parallel.clone(),
        };
        let core_json = serde_json::to_vec(&core)
            .map_err(|e| StoreError::Sql(format!("cannot encode the checkpoint: {e}")))?;
        let core_blob = encode_core(core_json, &mut self.zstd)?;

        // Entries that changed since the last save.
        let mut writes: Vec<(i64, String, Value)> = Vec::new();
        let mut deletes: Vec<(i64, String)> = Vec::new();
        for (name, value) in &state.variables {
            let key = (KIND_VAR, name.clone());
            if !self.last.get(&key).is_some_and(|old| same(old, value)) {
                writes.push((KIND_VAR, name.clone(), value.clone()));
            }
        }
        for (kind, key) in self.last.keys() {
            if *kind == KIND_VAR && !state.variables.contains_key(key) {
                deletes.push((KIND_VAR, key.clone()));
            }
        }
        let nodes: Vec<usize> = match only_node {
            Some(i) => vec![i],
            None => (0..state.outputs.len()).collect(),
        };
        for idx in nodes {
            let prefix = format!("{idx}/");
            let mut current: Vec<(i64, String, &Value)> = Vec::new();
            if let Value::Dict(d) = &state.outputs[idx] {
                current.extend(d.iter().map(|(p, v)| (KIND_OUT, format!("{prefix}{p}"), v)));
            }
            if let Some(ports) = state.inputs.get(&idx) {
                current.extend(
                    ports
                        .iter()
                        .map(|(p, v)| (KIND_IN, format!("{prefix}{p}"), v)),
                );
            }
            for (kind, key, value) in &current {
                if !self
                    .last
                    .get(&(*kind, key.clone()))
                    .is_some_and(|old| same(old, value))
                {
                    writes.push((*kind, key.clone(), (*value).clone()));
                }
            }
            for (kind, key) in self.last.keys() {
                if (*kind == KIND_OUT || *kind == KIND_IN)
                    && key.starts_with(&prefix)
                    && !current.iter().any(|(k, c, _)| k == kind && c == key)
                {
                    deletes.push((*kind, key.clone()));
                }
            }
        }

        let now = now_secs();
        let mut bytes = core_blob.len() as u64;
        let n_entries = (writes.len() + loop_writes.len()) as u64;
        let (meta_written, inflight_set, created) =
            (self.meta_written, self.inflight_set, self.created);
        let (job_id, meta, zstd) = (&self.job_id, &self.meta, &mut self.zstd);
        let written = self.store.with(|store| -> Result<u64, StoreError> {
        let mut bytes_in = 0u64;
        let tx = store.conn.transaction()?;
        {
            if !created {
                tx.execute(
                    "DELETE FROM checkpoint_values WHERE job_id = ?1",
                    [&job_id],
                )?;
                rewind::clear(&tx, job_id)?;
            }
            rewind::apply(&tx, job_id, span_change, created)?;
            if !meta_written {
                // The first node this run completed: the job made progress, so the resumes
                // that died before it no longer count against it.
                tx.execute(
                    "UPDATE jobs SET resume_attempts = 0 WHERE job_id = ?1 AND resume_attempts > 0",
                    [&job_id],
                )?;
                tx.execute(
                    "INSERT INTO checkpoints(job_id, workflow_hash, inputs_hash, inflight, status, created_at)
                     VALUES(?1, ?2, ?3, NULL, 'running', ?4)
                     ON CONFLICT(job_id) DO UPDATE SET workflow_hash = ?2, inputs_hash = ?3, inflight = NULL,
                        status = 'running', finished_at = NULL",
                    params![job_id, meta.workflow_hash, meta.inputs_hash, now],
                )?;
            } else if inflight_set {
                tx.execute(
                    "UPDATE checkpoints SET inflight = NULL WHERE job_id = ?1",
                    [&job_id],
                )?;
            }
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO checkpoint_values(job_id, kind, key, value, compressed) VALUES(?1, ?2, ?3, ?4, ?5)",
            )?;
            put.execute(params![job_id, KIND_CORE, "", core_blob, false])?;
            for (kind, key, value) in &writes {
                let (blob, compressed) = encode(value, zstd)?;
                bytes_in += blob.len() as u64;
                put.execute(params![job_id, kind, key, blob, compressed])?;
            }
            for (idx, items, keys) in &loop_writes {
                for (suffix, value) in [("items", Some(items)), ("keys", keys.as_ref())] {
                    if let Some(value) = value {
                        let (blob, compressed) = encode(value, zstd)?;
                        bytes_in += blob.len() as u64;
                        put.execute(params![
                            job_id,
                            KIND_LOOP,
                            format!("{idx}/{suffix}"),
                            blob,
                            compressed
                        ])?;
                    }
                }
            }
            let mut del = tx.prepare_cached(
                "DELETE FROM checkpoint_values WHERE job_id = ?1 AND kind = ?2 AND key = ?3",
            )?;
            for (kind, key) in &deletes {
                del.execute(params![job_id, kind, key])?;
            }
        }
        tx.commit()?;
        Ok(bytes_in)
        })?;
        bytes += written;
        self.created = true;
        self.meta_written = true;
        self.inflight_set = false;
        for (kind, key, value) in writes {
            self.last.insert((kind, key), value);
        }
        for key in deletes {
            self.last.remove(&key);
        }
        for (idx, items, keys) in loop_writes {
            self.loops_written.insert(idx, (items, keys));
        }
        self.loops_written
            .retain(|idx, _| state.loops.contains_key(idx));
        self.stats.saves += 1;
        self.stats.bytes += bytes;
        self.stats.entries += n_entries;
        Ok(())
    }

    /// Record that an `_at_most_once` node is about to run (durably, before it starts).
    pub fn mark_inflight(&mut self, node_id: &str) -> Result<(), StoreError> {
        if !self.meta_written {
            return Ok(());
        }
        let job_id = self.job_id.clone();
        self.store.with(|store| -> Result<(), StoreError> {
            store.conn.execute_batch("PRAGMA synchronous=FULL")?;
            let result = store.conn.execute(
                "UPDATE checkpoints SET inflight = ?2 WHERE job_id = ?1",
                params![job_id, node_id],
            );
            store.conn.execute_batch("PRAGMA synchronous=NORMAL")?;
            result.map(|_| ()).map_err(StoreError::from)
        })?;
        self.inflight_set = true;
        Ok(())
    }

    fn fail(&mut self, e: StoreError) {
        log::warn!(
            "checkpoints for job {} stopped: {e}; the run continues without them",
            self.job_id
        );
        self.failure = Some(e);
    }
}

fn bit_indices(bits: &[bool]) -> Vec<usize> {
    bits.iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .map(|(i, _)| i)
        .collect()
}

/// True when the node's config marks it `_at_most_once`.
pub fn is_at_most_once(wf: &Workflow, idx: usize) -> bool {
    wf.nodes[idx].at_most_once
}

impl Observer for Checkpointer<'_> {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        if self.failure.is_some() {
            return;
        }
        let Some(wf) = self.wf else { return };
        if is_at_most_once(wf, ev.node_index) {
            if let Err(e) = self.mark_inflight(ev.node_id) {
                self.fail(e);
            }
        }
    }

    fn node_completed(&mut self, ev: &NodeEvent<'_>, state: &RunState) {
        if self.failure.is_some() {
            return;
        }
        let only = self.wf.map(|_| ev.node_index);
        if let Err(e) = self.save(ev.node_id, state, only) {
            self.fail(e);
        }
    }

    fn node_log(&mut self, _ev: &NodeEvent<'_>, _log: &NodeLog) {}
}

/// What to do with a job's checkpoint before running it.
#[derive(Debug)]
pub enum ResumePlan {
    /// Start from the beginning; `reason` says why an existing checkpoint was discarded.
    Fresh {
        /// Why a checkpoint was discarded (none when there was none).
        reason: Option<String>,
    },
    /// Continue from the checkpoint.
    Resume(Box<Checkpoint>),
    /// Do not run: an `_at_most_once` node was in flight when the robot stopped.
    Refuse(RunError),
}

/// Decide how to start `job_id`: resume a matching checkpoint, or discard a damaged one or one
/// made by another workflow version or other inputs (with the reason, to log and audit).
pub fn plan_resume(
    store: &mut Store,
    job_id: &str,
    wf: &Workflow,
    meta: &CheckpointMeta,
) -> ResumePlan {
    let discard = |store: &mut Store, reason: String| {
        if let Err(e) = store.clear_checkpoint(job_id) {
            log::warn!("cannot delete the checkpoint of job {job_id}: {e}");
        }
        ResumePlan::Fresh {
            reason: Some(reason),
        }
    };
    match store.load_checkpoint(job_id, wf) {
        Ok(None) => ResumePlan::Fresh { reason: None },
        Err(e) if e.is_corrupt() => {
            discard(store, format!("its checkpoint could not be read ({e})"))
        }
        Err(e) => ResumePlan::Fresh {
            reason: Some(format!("its checkpoint could not be loaded ({e})")),
        },
        Ok(Some(cp)) if cp.meta.workflow_hash != meta.workflow_hash => discard(
            store,
            format!(
                "the workflow changed since the checkpoint was saved (hash {} then, {} now)",
                cp.meta.workflow_hash, meta.workflow_hash
            ),
        ),
        Ok(Some(cp)) if cp.meta.inputs_hash != meta.inputs_hash => discard(
            store,
            "the job inputs changed since the checkpoint was saved".to_string(),
        ),
        Ok(Some(cp)) => {
            if let Some(node) = &cp.inflight {
                if let Some(&idx) = wf.index.get(node) {
                    if is_at_most_once(wf, idx) {
                        return ResumePlan::Refuse(RunError {
                            node_id: node.clone(),
                            node_type: wf.nodes[idx].def.node_type.to_string(),
                            error_type: "AtMostOnceError".into(),
                            message: format!(
                                "was running when the robot stopped and is marked _at_most_once, so it is not repeated; \
                                 check whether its effect happened, then clear the checkpoint of job {job_id} to run the job again"
                            ),
                        });
                    }
                }
            }
            if let Some(plan) = rewind::plan(store, job_id, wf, &cp) {
                return plan;
            }
            ResumePlan::Resume(Box::new(cp))
        }
    }
}

/// A readable summary of a stored checkpoint (for `casare-robot checkpoints show`), without
/// needing the workflow.
pub fn describe(store: &Store, job_id: &str) -> Result<Option<serde_json::Value>, StoreError> {
    let row = store
        .conn
        .query_row(
            "SELECT workflow_hash, inputs_hash, inflight, status, created_at, finished_at
             FROM checkpoints WHERE job_id = ?1",
            [job_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                ))
            },
        )
        .optional()?;
    let Some((wh, ih, inflight, status, created, finished)) = row else {
        return Ok(None);
    };
    let core = store.read_core(job_id).ok();
    let (seq, node_id, saved) = core.as_ref().map_or((0, String::new(), 0.0), |c| {
        (c.seq, c.node_id.clone(), c.saved_at)
    });
    let mut vars = serde_json::Map::new();
    let mut stmt = store.conn.prepare(
        "SELECT key, value, compressed FROM checkpoint_values WHERE job_id = ?1 AND kind = ?2",
    )?;
    let rows = stmt.query_map(params![job_id, KIND_VAR], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    for row in rows {
        let (key, bytes, compressed) = row?;
        let shown = match decode(&bytes, compressed, &key) {
            Ok(v) => {
                let r = v.py_repr();
                if r.chars().count() > 200 {
                    format!(
                        "{}... ({} chars)",
                        r.chars().take(200).collect::<String>(),
                        r.chars().count()
                    )
                } else {
                    r
                }
            }
            Err(e) => format!("<unreadable: {e}>"),
        };
        vars.insert(key, serde_json::Value::String(shown));
    }
    let mut out = serde_json::json!({
        "job_id": job_id,
        "status": status,
        "seq": seq,
        "last_completed_node": node_id,
        "inflight_at_most_once_node": inflight,
        "workflow_hash": wh,
        "inputs_hash": ih,
        "created_at": created,
        "saved_at": saved,
        "finished_at": finished,
        "variables": vars,
    });
    match core {
        Some(core) => {
            out["queue"] = serde_json::json!(core.queue);
            out["node_executions"] = serde_json::json!(core.executions);
            out["elapsed_ms"] = serde_json::json!(core.elapsed_ms);
            out["active_loops"] = serde_json::json!(core.loops.len());
            out["active_tries"] = serde_json::json!(core.tries.len());
            out["resources"] = serde_json::json!(core.resources);
        }
        None => out["core"] = serde_json::json!("unreadable"),
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::load_str;
    use crate::engine::runner::{self, NoObserver, RunOptions, RunStatus};
    use crate::engine::CancelToken;
    use crate::nodes::testing::{ex, graph};
    use serde_json::json;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_core_saved_before_parallel_progress_existed_still_loads() {
        let old = json!({
            "v": CORE_VERSION, "seq": 3, "node_id": "a", "saved_at": 1.0, "n_nodes": 2,
            "queue": [1], "executed": [0], "visited": [0], "loops": [], "tries": [],
            "pending_error": null, "executions": 1, "elapsed_ms": 5, "var_order": []
        });
        let core: Core = serde_json::from_value(old).unwrap();
        assert!(core.parallel.is_empty());
    }

    /// A workflow exercising every kind of state: a For loop over a list with a nested While, a
    /// Try/Catch inside the loop, a data edge, and variables that grow.
    fn rich_workflow() -> Workflow {
        let json = graph(
            &[
                (
                    "init",
                    "SetVariableNode",
                    json!({"variable_name": "total", "value": 0}),
                ),
                (
                    "names",
                    "SetVariableNode",
                    json!({"variable_name": "names", "value": ["ann", "bob", "cy", "dee"]}),
                ),
                (
                    "seen",
                    "SetVariableNode",
                    json!({"variable_name": "seen", "value": []}),
                ),
                (
                    "each",
                    "ForLoopStartNode",
                    json!({"items": "{{names}}", "item_var": "name"}),
                ),
                ("guard", "TryNode", json!({})),
                ("check", "IfNode", json!({"condition": "{{name}} == 'cy'"})),
                ("boom", "ThrowErrorNode", json!({"error_message": "no cy"})),
                (
                    "append",
                    "ListAppendNode",
                    json!({"list": "{{seen}}", "item": "{{name}}"}),
                ),
                ("store", "SetVariableNode", json!({"variable_name": "seen"})),
                ("catch", "CatchNode", json!({"paired_try_id": "guard"})),
                (
                    "c",
                    "SetVariableNode",
                    json!({"variable_name": "c", "value": 0}),
                ),
                ("w", "WhileLoopStartNode", json!({"condition": "{{c}} < 2"})),
                (
                    "inc_c",
                    "IncrementVariableNode",
                    json!({"variable_name": "c"}),
                ),
                (
                    "add",
                    "IncrementVariableNode",
                    json!({"variable_name": "total", "increment": 1}),
                ),
                ("wend", "WhileLoopEndNode", json!({})),
                ("end", "ForLoopEndNode", json!({})),
                (
                    "done",
                    "SetVariableNode",
                    json!({"variable_name": "summary", "value": "{{total}} {{seen}}"}),
                ),
            ],
            &[
                ex("init", "exec_out", "names"),
                ex("names", "exec_out", "seen"),
                ex("seen", "exec_out", "each"),
                ex("each", "body", "guard"),
                ex("guard", "try_body", "check"),
                ex("check", "true", "boom"),
                ex("check", "false", "append"),
                ex("append", "exec_out", "store"),
                ("append", "result", "store", "value"),
                ex("store", "exec_out", "catch"),
                ex("catch", "exec_out", "c"),
                ex("catch", "catch_body", "c"),
                ex("c", "exec_out", "w"),
                ex("w", "body", "inc_c"),
                ex("inc_c", "exec_out", "add"),
                ex("add", "exec_out", "wend"),
                ex("w", "completed", "end"),
                ex("each", "completed", "done"),
            ],
        );
        load_str(&json).unwrap()
    }

    struct StopAfter {
        n: u64,
        seen: u64,
        token: CancelToken,
    }
    impl Observer for StopAfter {
        fn node_completed(&mut self, _ev: &NodeEvent<'_>, _state: &RunState) {
            self.seen += 1;
            if self.seen == self.n {
                self.token.cancel("test cut");
            }
        }
    }

    #[test]
    fn resuming_from_every_cut_point_gives_the_uninterrupted_result() {
        let wf = rich_workflow();
        let opts = RunOptions::default();
        let full = runner::run(
            &wf,
            Dict::new(),
            &opts,
            &CancelToken::new(),
            &mut NoObserver,
        );
        assert!(full.success(), "{:?}", full.error);
        assert_eq!(
            full.variables["summary"],
            Value::str("8.0 ['ann', 'bob', 'dee']")
        );
        let total = full.node_executions;
        let meta = CheckpointMeta::new(&wf, &Dict::new());
        for cut in 1..total {
            let (_dir, mut store) = store();
            let token = CancelToken::new();
            let mut stop = StopAfter {
                n: cut,
                seen: 0,
                token: token.clone(),
            };
            let first = {
                let mut writer = Checkpointer::new(&mut store, "job", meta.clone(), Duration::ZERO)
                    .for_workflow(&wf, 0);
                runner::run(
                    &wf,
                    Dict::new(),
                    &opts,
                    &token,
                    &mut crate::engine::runner::Both(&mut writer, &mut stop),
                )
            };
            if first.success() {
                continue; // the cut fell on the last node
            }
            assert_eq!(first.status, RunStatus::Cancelled, "cut {cut}");
            let cp = match plan_resume(&mut store, "job", &wf, &meta) {
                ResumePlan::Resume(cp) => cp,
                other => panic!("cut {cut}: expected a resume, got {other:?}"),
            };
            let resumed =
                runner::resume(&wf, cp.state, &opts, &CancelToken::new(), &mut NoObserver);
            assert!(resumed.success(), "cut {cut}: {:?}", resumed.error);
            assert_eq!(resumed.variables, full.variables, "cut {cut}");
            assert_eq!(resumed.node_outputs, full.node_outputs, "cut {cut}");
            assert_eq!(
                resumed.node_executions, full.node_executions,
                "cut {cut}: no node ran twice"
            );
            assert_eq!(
                resumed.variables.keys().collect::<Vec<_>>(),
                full.variables.keys().collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn unchanged_variables_are_not_rewritten() {
        let big: Vec<serde_json::Value> = (0..10_000)
            .map(|i| json!(format!("item number {i}")))
            .collect();
        let json = graph(
            &[
                (
                    "list",
                    "SetVariableNode",
                    json!({"variable_name": "big", "value": big}),
                ),
                ("loop", "ForLoopStartNode", json!({"items": "{{big}}"})),
                (
                    "inc",
                    "IncrementVariableNode",
                    json!({"variable_name": "n"}),
                ),
                ("end", "ForLoopEndNode", json!({})),
            ],
            &[
                ex("list", "exec_out", "loop"),
                ex("loop", "body", "inc"),
                ex("inc", "exec_out", "end"),
            ],
        );
        let wf = load_str(&json).unwrap();
        let (_dir, mut store) = store();
        let meta = CheckpointMeta::new(&wf, &Dict::new());
        let mut writer =
            Checkpointer::new(&mut store, "big", meta, Duration::ZERO).for_workflow(&wf, 0);
        let out = runner::run(
            &wf,
            Dict::new(),
            &RunOptions::default(),
            &CancelToken::new(),
            &mut writer,
        );
        assert!(out.success());
        let stats = writer.stats;
        assert_eq!(stats.saves, out.node_executions);
        // The list (~180 kB of JSON) is written once as a variable and once as the loop's items,
        // compressed; the 30,000 other saves carry only the loop position and small variables.
        // Rewriting the list every node would be 30,000 x 180 kB = 5.4 GB.
        let per_save = stats.bytes / stats.saves;
        assert!(
            per_save < 400,
            "{per_save} bytes per checkpoint: the list is being rewritten"
        );
        assert!(stats.bytes < 15_000_000, "{stats:?}");
    }

    #[test]
    fn full_save_and_load_round_trip_mid_loop() {
        let wf = rich_workflow();
        let token = CancelToken::new();
        let mut stop = StopAfter {
            n: 20,
            seen: 0,
            token: token.clone(),
        };
        let out = runner::run(&wf, Dict::new(), &RunOptions::default(), &token, &mut stop);
        let state = *out.state.unwrap();
        let (_dir, mut store) = store();
        let meta = CheckpointMeta::new(&wf, &Dict::new());
        store.save_checkpoint("j", "x", &state, &meta).unwrap();
        assert!(store.has_checkpoint("j").unwrap());
        let cp = store.load_checkpoint("j", &wf).unwrap().unwrap();
        assert_eq!(cp.seq, 1);
        assert_eq!(cp.node_id, "x");
        assert_eq!(cp.state.queue, state.queue);
        assert_eq!(cp.state.executed, state.executed);
        assert_eq!(cp.state.loops, state.loops);
        assert_eq!(cp.state.tries, state.tries);
        assert_eq!(cp.state.variables, state.variables);
        assert_eq!(cp.state.outputs, state.outputs);
        assert!(store.clear_checkpoint("j").unwrap());
        assert!(!store.has_checkpoint("j").unwrap());
        assert!(!store.clear_checkpoint("j").unwrap());
    }

    fn saved(store: &mut Store, wf: &Workflow, job: &str) {
        let state = RunState::new(
            wf,
            Dict::from_iter([("x".to_string(), Value::Int(1))]),
            &RunOptions::default(),
        );
        store
            .save_checkpoint(job, "n", &state, &CheckpointMeta::new(wf, &Dict::new()))
            .unwrap();
    }

    #[test]
    fn damaged_rows_are_reported_and_discarded() {
        let wf = rich_workflow();
        let meta = CheckpointMeta::new(&wf, &Dict::new());
        let damage = [
            "UPDATE checkpoint_values SET value = x'00010203' WHERE kind = -1",
            "UPDATE checkpoint_values SET value = x'4a7b7d' WHERE kind = -1",
            "UPDATE checkpoint_values SET value = x'5a0102' WHERE kind = -1",
            "UPDATE checkpoint_values SET value = x'7b226869' WHERE kind = 0",
            "UPDATE checkpoint_values SET value = x'28b52ffd00', compressed = 1 WHERE kind = 0",
            "DELETE FROM checkpoint_values WHERE kind = 0",
            "DELETE FROM checkpoint_values",
        ];
        for sql in damage {
            let (_dir, mut store) = store();
            saved(&mut store, &wf, "j");
            store.conn.execute_batch(sql).unwrap();
            let err = store.load_checkpoint("j", &wf).unwrap_err();
            assert!(err.is_corrupt(), "{sql}: {err}");
            match plan_resume(&mut store, "j", &wf, &meta) {
                ResumePlan::Fresh {
                    reason: Some(reason),
                } => {
                    assert!(
                        reason.starts_with("its checkpoint could not be read"),
                        "{reason}"
                    )
                }
                other => panic!("{sql}: {other:?}"),
            }
            assert!(
                !store.has_checkpoint("j").unwrap(),
                "a damaged checkpoint is removed"
            );
        }
    }

    #[test]
    fn another_workflow_version_or_other_inputs_start_over() {
        let wf = rich_workflow();
        let (_dir, mut store) = store();
        saved(&mut store, &wf, "j");
        let mut changed = wf.clone();
        changed.hash = "0000000000000000".into();
        match plan_resume(
            &mut store,
            "j",
            &changed,
            &CheckpointMeta::new(&changed, &Dict::new()),
        ) {
            ResumePlan::Fresh { reason: Some(r) } => {
                assert!(r.starts_with("the workflow changed"), "{r}")
            }
            other => panic!("{other:?}"),
        }
        assert!(!store.has_checkpoint("j").unwrap());
        saved(&mut store, &wf, "j");
        let other_inputs = Dict::from_iter([("a".to_string(), Value::Int(1))]);
        match plan_resume(
            &mut store,
            "j",
            &wf,
            &CheckpointMeta::new(&wf, &other_inputs),
        ) {
            ResumePlan::Fresh { reason: Some(r) } => {
                assert_eq!(r, "the job inputs changed since the checkpoint was saved")
            }
            other => panic!("{other:?}"),
        }
        let mut fewer = wf.clone();
        fewer.nodes.pop();
        saved(&mut store, &wf, "k");
        let err = store.load_checkpoint("k", &fewer).unwrap_err();
        assert!(err.to_string().contains("nodes"), "{err}");
    }

    #[test]
    fn purge_by_retention_and_size_spares_running_jobs() {
        let wf = rich_workflow();
        let (_dir, mut store) = store();
        for job in ["a", "b", "c"] {
            saved(&mut store, &wf, job);
        }
        store
            .finish_checkpoint("a", CheckpointStatus::Failed)
            .unwrap();
        store
            .finish_checkpoint("b", CheckpointStatus::Cancelled)
            .unwrap();
        assert_eq!(
            store
                .purge_checkpoints(Duration::from_secs(3600), u64::MAX)
                .unwrap(),
            0
        );
        store
            .conn
            .execute(
                "UPDATE checkpoints SET finished_at = finished_at - 7200 WHERE job_id = 'a'",
                [],
            )
            .unwrap();
        assert_eq!(
            store
                .purge_checkpoints(Duration::from_secs(3600), u64::MAX)
                .unwrap(),
            1
        );
        let left: Vec<String> = store
            .list_checkpoints()
            .unwrap()
            .into_iter()
            .map(|c| c.job_id)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&"a".to_string()));
        assert_eq!(
            store
                .purge_checkpoints(Duration::from_secs(3600), 0)
                .unwrap(),
            1,
            "size cap purges b"
        );
        let left: Vec<CheckpointInfo> = store.list_checkpoints().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].job_id, "c");
        assert_eq!(left[0].status, CheckpointStatus::Running);
    }

    #[test]
    fn an_at_most_once_node_in_flight_is_not_repeated() {
        let json = graph(
            &[
                (
                    "a",
                    "SetVariableNode",
                    json!({"variable_name": "x", "value": 1}),
                ),
                (
                    "pay",
                    "WaitNode",
                    json!({"duration": 30, "_at_most_once": true}),
                ),
                (
                    "b",
                    "SetVariableNode",
                    json!({"variable_name": "y", "value": 2}),
                ),
            ],
            &[ex("a", "exec_out", "pay"), ex("pay", "exec_out", "b")],
        );
        let wf = load_str(&json).unwrap();
        let (_dir, mut store) = store();
        let meta = CheckpointMeta::new(&wf, &Dict::new());
        let token = CancelToken::new();
        let other = token.clone();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.cancel("robot stopped");
        });
        {
            let mut writer = Checkpointer::new(&mut store, "j", meta.clone(), Duration::ZERO)
                .for_workflow(&wf, 0);
            let out = runner::run(
                &wf,
                Dict::new(),
                &RunOptions::default(),
                &token,
                &mut writer,
            );
            assert_eq!(out.status, RunStatus::Cancelled);
        }
        killer.join().unwrap();
        match plan_resume(&mut store, "j", &wf, &meta) {
            ResumePlan::Refuse(err) => {
                assert_eq!(err.node_id, "pay");
                assert!(
                    err.message.contains("marked _at_most_once"),
                    "{}",
                    err.message
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn same_is_identity_for_containers() {
        let l = Value::list(vec![Value::Int(1)]);
        assert!(same(&l, &l.clone()));
        assert!(!same(&l, &Value::list(vec![Value::Int(1)])));
        assert!(same(&Value::Float(1.5), &Value::Float(1.5)));
        assert!(!same(&Value::Int(1), &Value::Float(1.0)));
    }
}

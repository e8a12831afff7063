//! The durable job store and outbox (architecture "Durable state", invariants 1-6).
//!
//! - `jobs`: every job this robot acknowledged, with its workflow (zstd), variables, state
//!   (`received` → `running` → `finished` | `cancelled`), attempt, the orchestrator's lease,
//!   a fencing token, a persisted cancellation and, once settled, its report. A job is recorded
//!   (with `synchronous=FULL`) before the robot acknowledges it; a job id recorded before is never
//!   executed again (a duplicate is answered from the record), except a new *attempt* of a failed
//!   REST job (the server re-queues failed jobs with `retry_count + 1`).
//! - `outbox`: what the orchestrator must still hear, FIFO per route (WebSocket or REST): results,
//!   progress (coalesced per job to its latest value) and log batches. A job's result enters the
//!   outbox in the same FULL transaction that marks the job settled and drops its checkpoint. An
//!   entry leaves only once the orchestrator accepted it.
//!
//! Durability (invariant 6): job state transitions that the orchestrator can observe (recorded,
//! settled, cancellation requested) commit with `synchronous=FULL` (one WAL fsync each). The
//! `received → running` transition, outbox removals and progress/log entries commit with
//! `NORMAL`: a power cut can lose them, which costs re-sending an entry or re-running the nodes
//! since the last durable checkpoint, never a lost or repeated job. A process crash (kill -9)
//! loses nothing committed in either mode (WAL).
//!
//! The facades [`OfflineQueue`], [`JobLocker`] and [`CancellationChecker`] give these tables the
//! reference robot's API names.

use super::{journal, now_secs, SharedStore, Store, StoreError};
use crate::engine::runner::{RunOutcome, RunStatus};
use crate::link::protocol::LogEntry;
use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs(
    job_id TEXT PRIMARY KEY,
    routes INTEGER NOT NULL,
    workflow BLOB NOT NULL,
    variables TEXT NOT NULL,
    timeout REAL,
    state TEXT NOT NULL,
    received_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_expires_at REAL,
    fencing_token INTEGER NOT NULL DEFAULT 0,
    lock_epoch INTEGER,
    cancel_kind TEXT,
    cancel_reason TEXT,
    report TEXT,
    resume_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, received_at);
CREATE TABLE IF NOT EXISTS outbox(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT,
    route INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_by_route ON outbox(route, seq);
CREATE UNIQUE INDEX IF NOT EXISTS outbox_one_result ON outbox(route, job_id) WHERE kind = 'result';
";

/// Log batches (of up to 100 lines) the outbox keeps per route while the orchestrator is away;
/// older ones are dropped (results are never dropped, progress is one entry per job).
pub const MAX_LOG_BATCHES: usize = 2000;

/// Which orchestrator link a job came from and its reports go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// WebSocket push.
    Ws = 1,
    /// REST polling.
    Rest = 2,
    /// A local `run --job-id`: recorded like any job, reported to no link.
    Local = 4,
}

impl Route {
    fn bit(self) -> i64 {
        self as i64
    }
    /// Name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Ws => "websocket",
            Route::Rest => "rest",
            Route::Local => "local",
        }
    }
}

/// The routes a job is known on (a job may arrive on both links).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Routes(i64);

impl Routes {
    /// Whether `route` is among them.
    pub fn has(self, route: Route) -> bool {
        self.0 & route.bit() != 0
    }
    /// The orchestrator links among them, WebSocket first (a local run reports to none).
    pub fn iter(self) -> impl Iterator<Item = Route> {
        [Route::Ws, Route::Rest]
            .into_iter()
            .filter(move |r| self.has(*r))
    }
    /// One route.
    pub fn of(route: Route) -> Routes {
        Routes(route.bit())
    }
    pub(crate) fn bits(self) -> i64 {
        self.0
    }
    pub(crate) fn from_bits(bits: i64) -> Routes {
        Routes(bits)
    }
}

/// A job's state in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Recorded, not started.
    Received,
    /// Started (it may have been interrupted: a crash or a shutdown holds it here).
    Running,
    /// Completed or failed; its report is recorded.
    Finished,
    /// Cancelled (by the orchestrator, or its lease was lost).
    Cancelled,
}

impl JobState {
    /// The name stored in the `jobs` table (and shown by `checkpoints show`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Received => "received",
            JobState::Running => "running",
            JobState::Finished => "finished",
            JobState::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Result<JobState, StoreError> {
        Ok(match s {
            "received" => JobState::Received,
            "running" => JobState::Running,
            "finished" => JobState::Finished,
            "cancelled" => JobState::Cancelled,
            other => return Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        })
    }
    /// Settled: it never runs again.
    pub fn is_settled(self) -> bool {
        matches!(self, JobState::Finished | JobState::Cancelled)
    }
}

/// Who cancelled a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelKind {
    /// The orchestrator asked (`job_cancel`): report `job_cancelled`.
    Orchestrator,
    /// The REST lease was lost (409): the job is no longer ours; report nothing.
    LeaseLost,
}

impl CancelKind {
    fn as_str(self) -> &'static str {
        match self {
            CancelKind::Orchestrator => "orchestrator",
            CancelKind::LeaseLost => "lease_lost",
        }
    }
    fn parse(s: &str) -> CancelKind {
        if s == "lease_lost" {
            CancelKind::LeaseLost
        } else {
            CancelKind::Orchestrator
        }
    }
}

/// What the orchestrator hears about a job: the link-neutral body of an outbox entry. The link
/// that delivers it encodes it (a WebSocket frame in either dialect, or a REST call).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    /// The job completed.
    Complete {
        /// The protocol's result object.
        result: Value,
        /// Wall time of execution proper.
        duration_ms: u64,
    },
    /// The job failed.
    Failed {
        /// `"<node_id> (<NodeType>): <message>"`.
        error: String,
        /// Error class.
        error_type: String,
        /// The failing node, when known.
        failed_node: Option<String>,
        /// Wall time of execution proper.
        duration_ms: u64,
    },
    /// The job was cancelled by the orchestrator.
    Cancelled,
    /// Progress of a running job.
    Progress {
        /// 0-100.
        progress: u8,
        /// The node that completed last.
        current_node: Option<String>,
        /// Human summary.
        message: Option<String>,
    },
    /// Log lines (at most 100).
    Logs {
        /// The entries.
        logs: Vec<LogEntry>,
    },
}

impl Report {
    /// The report of a run that ended (completed or failed; a cancelled run is [`Report::Cancelled`]).
    /// The robot's secrets are scrubbed from it ([`crate::redact`]).
    pub fn from_outcome(outcome: &RunOutcome) -> Report {
        let duration_ms = outcome.duration.as_millis() as u64;
        match outcome.status {
            RunStatus::Completed => {
                let mut result = outcome.to_json();
                if let Some(obj) = result.as_object_mut() {
                    obj.remove("node_outputs");
                }
                crate::redact::scrub_json(&mut result);
                Report::Complete {
                    result,
                    duration_ms,
                }
            }
            RunStatus::Cancelled => Report::Cancelled,
            RunStatus::Failed | RunStatus::TimedOut => {
                let err = outcome.error.clone();
                Report::Failed {
                    error: err.as_ref().map_or_else(
                        || "the job failed".to_string(),
                        |e| crate::redact::scrub(&e.to_string()).into_owned(),
                    ),
                    error_type: err
                        .as_ref()
                        .map_or_else(|| "Error".into(), |e| e.error_type.clone()),
                    failed_node: err.map(|e| e.node_id).filter(|n| !n.is_empty()),
                    duration_ms,
                }
            }
        }
    }

    /// The outbox kind: results are deduplicated per job, progress coalesced per job.
    fn kind(&self) -> &'static str {
        match self {
            Report::Progress { .. } => "progress",
            Report::Logs { .. } => "log",
            _ => "result",
        }
    }

    /// The same report with its large parts made small: a completed job's result replaced by
    /// `small_result(result)`, a failure's error text cut ([`bound::truncated_error`]). None for
    /// reports that carry nothing large. The one shrinking rule for results that do not fit (a
    /// frame limit, a full disk).
    ///
    /// [`bound::truncated_error`]: crate::link::bound::truncated_error
    pub fn shrunk(&self, small_result: impl FnOnce(&Value) -> Value) -> Option<Report> {
        match self {
            Report::Complete {
                result,
                duration_ms,
            } => Some(Report::Complete {
                result: small_result(result),
                duration_ms: *duration_ms,
            }),
            Report::Failed {
                error,
                error_type,
                failed_node,
                duration_ms,
            } => Some(Report::Failed {
                error: crate::link::bound::truncated_error(error),
                error_type: error_type.clone(),
                failed_node: failed_node.clone(),
                duration_ms: *duration_ms,
            }),
            Report::Cancelled | Report::Progress { .. } | Report::Logs { .. } => None,
        }
    }

    /// The same report, small enough to record on a full disk: a completed job's result is
    /// replaced by a note (the job did complete), a failure's message is cut.
    pub fn trimmed_for_full_disk(&self) -> Report {
        let note =
            "the robot's disk was full: the job completed, but its result could not be stored";
        self.shrunk(|_| {
            // In `outputs` too: that is what both links send of a result.
            serde_json::json!({
                "success": true,
                "status": "completed",
                "result_dropped": note,
                "outputs": {"_result_dropped": note},
            })
        })
        .unwrap_or_else(|| self.clone())
    }

    /// True for a job's final report.
    pub fn is_result(&self) -> bool {
        self.kind() == "result"
    }
}

/// A job as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRecord {
    /// Job id.
    pub job_id: String,
    /// Links it arrived on.
    pub routes: Routes,
    /// The workflow document (JSON text; empty once the job settled).
    pub workflow: String,
    /// Variables (a JSON object).
    pub variables: serde_json::Map<String, Value>,
    /// The job's own timeout in seconds.
    pub timeout: Option<f64>,
    /// State.
    pub state: JobState,
    /// Attempt number (the REST `retry_count`; 0 for WebSocket jobs).
    pub attempt: u32,
    /// Current fencing token (incremented by every start).
    pub fencing_token: u64,
    /// The orchestrator's lease end (REST), Unix seconds.
    pub lease_expires_at: Option<f64>,
    /// A persisted cancellation.
    pub cancel: Option<(CancelKind, String)>,
    /// The final report, once settled (none for a job whose lease was lost).
    pub report: Option<Report>,
    /// When it settled (Unix seconds).
    pub finished_at: Option<f64>,
    /// Resumes (starts of a job found `running`, i.e. interrupted) since the job last made
    /// progress: the first checkpoint of a run and a clean hold at shutdown reset it. A job
    /// whose resumes keep dying is failed as a poison job instead of resumed again.
    pub resume_attempts: u32,
}

/// A job to record.
#[derive(Clone, Debug)]
pub struct NewJob<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// The link it came on.
    pub route: Route,
    /// The workflow document (JSON text).
    pub workflow: &'a str,
    /// Variables.
    pub variables: &'a serde_json::Map<String, Value>,
    /// The job's own timeout in seconds.
    pub timeout: Option<f64>,
    /// Attempt number (REST `retry_count`).
    pub attempt: u32,
    /// The orchestrator's lease end (REST), Unix seconds.
    pub lease_expires_at: Option<f64>,
}

/// What [`Store::record_job`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum Recorded {
    /// A new job, now recorded as `received`.
    New,
    /// A new attempt of a job that failed before (REST re-queue): recorded as `received` again.
    Retry,
    /// The job id is known (the record, with `route` added to its routes).
    Known(Box<JobRecord>),
}

/// How a run's end was recorded by [`Store::finish_job`].
#[derive(Clone, Debug, PartialEq)]
pub enum Finish {
    /// Settled; the report is in the outbox for each of these routes.
    Reported(Report, Routes),
    /// Settled without a report (the lease was lost).
    Silent,
    /// Stopped without a cancellation on record (shutdown): the job stays `running` with its
    /// checkpoint and resumes on the next start.
    Held,
    /// The job's record no longer belongs to this run (fencing token or state changed): nothing
    /// was written.
    Fenced,
}

/// An outbox entry.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEntry {
    /// Position (FIFO order).
    pub seq: i64,
    /// The job it concerns.
    pub job_id: Option<String>,
    /// The link it goes to.
    pub route: Route,
    /// What to say.
    pub report: Report,
    /// Delivery attempts so far.
    pub attempts: u32,
}

/// Counts of the store's durable bookkeeping (for status and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounters {
    /// Transactions committed with `synchronous=FULL`.
    pub full_commits: u64,
}

fn compress(text: &str) -> Result<Vec<u8>, StoreError> {
    zstd::bulk::compress(text.as_bytes(), 3).map_err(|e| StoreError::Sql(format!("zstd: {e}")))
}

fn decompress(blob: &[u8]) -> Result<String, StoreError> {
    if blob.is_empty() {
        return Ok(String::new());
    }
    let bytes = zstd::stream::decode_all(blob)
        .map_err(|e| StoreError::Corrupt(format!("stored workflow: {e}")))?;
    String::from_utf8(bytes).map_err(|e| StoreError::Corrupt(format!("stored workflow: {e}")))
}

const JOB_COLUMNS: &str = "job_id, routes, workflow, variables, timeout, state, attempt, \
     fencing_token, lease_expires_at, cancel_kind, cancel_reason, report, finished_at, resume_attempts";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        job_id: r.get(0)?,
        routes: r.get(1)?,
        workflow: r.get(2)?,
        variables: r.get(3)?,
        timeout: r.get(4)?,
        state: r.get(5)?,
        attempt: r.get(6)?,
        fencing_token: r.get(7)?,
        lease_expires_at: r.get(8)?,
        cancel_kind: r.get(9)?,
        cancel_reason: r.get(10)?,
        report: r.get(11)?,
        finished_at: r.get(12)?,
        resume_attempts: r.get(13)?,
    })
}

struct RawJob {
    job_id: String,
    routes: i64,
    workflow: Vec<u8>,
    variables: String,
    timeout: Option<f64>,
    state: String,
    attempt: i64,
    fencing_token: i64,
    lease_expires_at: Option<f64>,
    cancel_kind: Option<String>,
    cancel_reason: Option<String>,
    report: Option<String>,
    finished_at: Option<f64>,
    resume_attempts: i64,
}

impl RawJob {
    fn decode(self) -> Result<JobRecord, StoreError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            StoreError::Corrupt(format!("job {}: {what}: {e}", self.job_id))
        };
        let variables = match serde_json::from_str::<Value>(&self.variables) {
            Ok(Value::Object(m)) => m,
            Ok(_) => serde_json::Map::new(),
            Err(e) => return Err(bad("variables", &e)),
        };
        let report = match &self.report {
            Some(text) => Some(serde_json::from_str(text).map_err(|e| bad("report", &e))?),
            None => None,
        };
        Ok(JobRecord {
            workflow: decompress(&self.workflow)?,
            variables,
            timeout: self.timeout,
            state: JobState::parse(&self.state)?,
            attempt: self.attempt.max(0) as u32,
            fencing_token: self.fencing_token.max(0) as u64,
            lease_expires_at: self.lease_expires_at,
            cancel: self
                .cancel_kind
                .as_deref()
                .map(|k| (CancelKind::parse(k), self.cancel_reason.unwrap_or_default())),
            report,
            finished_at: self.finished_at,
            resume_attempts: self.resume_attempts.clamp(0, i64::from(u32::MAX)) as u32,
            routes: Routes(self.routes),
            job_id: self.job_id,
        })
    }
}

fn push_entry(
    tx: &Transaction<'_>,
    route: Route,
    job_id: Option<&str>,
    report: &Report,
) -> Result<Option<i64>, StoreError> {
    let kind = report.kind();
    if kind == "progress" {
        if let Some(job_id) = job_id {
            if progress_is_stale(tx, route, job_id)? {
                return Ok(None);
            }
        }
        // Coalesce: a job's progress is worth only its latest value.
        tx.execute(
            "DELETE FROM outbox WHERE route = ?1 AND job_id IS ?2 AND kind = 'progress'",
            params![route.bit(), job_id],
        )?;
    }
    let body = serde_json::to_string(report).map_err(|e| StoreError::Sql(e.to_string()))?;
    let n = tx.execute(
        "INSERT OR IGNORE INTO outbox(job_id, route, kind, body, created_at) VALUES(?1, ?2, ?3, ?4, ?5)",
        params![job_id, route.bit(), kind, body, now_secs()],
    )?;
    let seq = (n > 0).then(|| tx.last_insert_rowid());
    if kind == "log" {
        // A long outage must not fill the disk with log lines: keep the newest batches.
        let dropped = tx.execute(
            "DELETE FROM outbox WHERE route = ?1 AND kind = 'log' AND seq <= (
                 SELECT seq FROM outbox WHERE route = ?1 AND kind = 'log'
                 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![route.bit(), MAX_LOG_BATCHES as i64],
        )?;
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if dropped > 0 && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "the outbox holds {MAX_LOG_BATCHES} log batches for the {} link; older ones are dropped (said once)",
                route.as_str()
            );
        }
    }
    Ok(seq)
}

/// The settle order of job records (`settle_seq`, what [`Store::purge_jobs`] keeps by): a
/// column added in place when missing, so it needs no schema version of its own.
pub(crate) fn add_settle_seq(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'settle_seq'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE jobs ADD COLUMN settle_seq INTEGER")?;
    }
    conn.execute_batch("CREATE INDEX IF NOT EXISTS jobs_by_settle_seq ON jobs(settle_seq)")?;
    Ok(())
}

/// A progress report of `job_id` is stale once the job's result is recorded: queued for `route`,
/// or the job settled (its result may be delivered already). Queued now, it would reach the
/// orchestrator after the result (coalescing moves a progress to the latest position).
fn progress_is_stale(
    conn: &rusqlite::Connection,
    route: Route,
    job_id: &str,
) -> Result<bool, StoreError> {
    Ok(conn.query_row(
        "SELECT EXISTS(SELECT 1 FROM outbox WHERE route = ?1 AND job_id = ?2 AND kind = 'result')
             OR EXISTS(SELECT 1 FROM jobs WHERE job_id = ?2 AND state IN (?3, ?4))",
        params![
            route.bit(),
            job_id,
            JobState::Finished.as_str(),
            JobState::Cancelled.as_str()
        ],
        |row| row.get(0),
    )?)
}

/// Schema 3: the `completed_jobs` table of `run --job-id` (schema 1-2) became `jobs` records of
/// route `Local`; its results move over, so a completed job id is still answered, not rerun.
pub(crate) fn migrate_completed_jobs(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'completed_jobs'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !exists {
        return Ok(());
    }
    let rows: Vec<(String, f64, String)> = {
        let mut stmt = tx.prepare("SELECT job_id, finished_at, result FROM completed_jobs")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let empty = compress("")?;
    for (job_id, finished_at, result) in rows {
        let Ok(result) = serde_json::from_str::<Value>(&result) else {
            continue;
        };
        let duration_ms = result["duration_ms"].as_u64().unwrap_or(0);
        let report = serde_json::to_string(&Report::Complete {
            result,
            duration_ms,
        })
        .map_err(|e| StoreError::Sql(e.to_string()))?;
        tx.execute(
            "INSERT OR IGNORE INTO jobs(job_id, routes, workflow, variables, state, received_at,
                                        finished_at, report)
             VALUES(?1, ?2, ?3, '{}', 'finished', ?4, ?4, ?5)",
            params![job_id, Route::Local.bit(), empty, finished_at, report],
        )?;
    }
    tx.execute_batch("DROP TABLE completed_jobs")?;
    Ok(())
}

/// The report of a poison job: `rec` was interrupted (`running`) and its last
/// `max_resume_attempts` resumes died without completing a node, so it is failed with
/// `error_type: "PoisonJob"` instead of resumed again. None when it may resume.
pub fn poison_report(rec: &JobRecord, max_resume_attempts: u32) -> Option<Report> {
    (rec.state == JobState::Running && rec.resume_attempts >= max_resume_attempts).then(|| {
        Report::Failed {
            error: format!(
                "the robot process died during each of the last {} resumes of this job without \
                 completing a node (max_resume_attempts = {max_resume_attempts}); it is not resumed \
                 again. A value too large for the machine's memory, or a node that crashes the \
                 robot, are the usual causes",
                rec.resume_attempts
            ),
            error_type: POISON_JOB.into(),
            failed_node: None,
            duration_ms: 0,
        }
    })
}

/// The `error_type` of a job failed by [`poison_report`].
pub const POISON_JOB: &str = "PoisonJob";

/// Schema 4 (the resume counter step): `jobs.resume_attempts` on a file made before it.
pub(crate) fn migrate_resume_attempts(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let exists = tx
        .query_row(
            "SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'resume_attempts'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !exists {
        tx.execute_batch("ALTER TABLE jobs ADD COLUMN resume_attempts INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

/// Settle `job_id` inside `tx`: state, report, checkpoint (dropped; a failed run's is kept for
/// a new attempt) and one outbox entry per route. False when the record did not match `token`.
pub(crate) fn settle_in(
    tx: &Transaction<'_>,
    job_id: &str,
    token: Option<u64>,
    state: JobState,
    report: Option<&Report>,
    routes: Routes,
) -> Result<bool, StoreError> {
    let body = report
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Sql(e.to_string()))?;
    let n = tx.execute(
        "UPDATE jobs SET state = ?2, report = ?3, finished_at = ?4, workflow = x'', lock_epoch = NULL,
             settle_seq = (SELECT COALESCE(MAX(settle_seq), 0) + 1 FROM jobs)
         WHERE job_id = ?1 AND (?5 IS NULL OR fencing_token = ?5)",
        params![job_id, state.as_str(), body, now_secs(), token.map(|t| t as i64)],
    )?;
    if n == 0 {
        return Ok(false);
    }
    if matches!(report, Some(Report::Failed { .. })) {
        // Kept for the retention period: a new attempt (REST re-queue) resumes from it.
        tx.execute(
            "UPDATE checkpoints SET status = 'failed', finished_at = ?2 WHERE job_id = ?1",
            params![job_id, now_secs()],
        )?;
    } else {
        tx.execute("DELETE FROM checkpoint_values WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM checkpoints WHERE job_id = ?1", [job_id])?;
        super::rewind::clear(tx, job_id)?;
    }
    if let Some(report) = report {
        for route in routes.iter() {
            // A cancellation is news only on the WebSocket (REST cancels by taking the lease).
            if route == Route::Rest && matches!(report, Report::Cancelled) {
                continue;
            }
            push_entry(tx, route, Some(job_id), report)?;
        }
    }
    Ok(true)
}

/// The end of a run of `job_id` under `token`, inside `tx` (see [`Store::finish_job`]).
fn finish_in(
    tx: &Transaction<'_>,
    job_id: &str,
    token: u64,
    report: &Report,
) -> Result<Finish, StoreError> {
    let row: Option<(String, i64, i64, Option<String>)> = tx
        .query_row(
            "SELECT state, fencing_token, routes, cancel_kind FROM jobs WHERE job_id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((state, current, routes, cancel_kind)) = row else {
        return Ok(Finish::Fenced);
    };
    if state != "running" || current as u64 != token {
        return Ok(Finish::Fenced);
    }
    let routes = Routes(routes);
    let (state, report, finish) = match (report, cancel_kind.as_deref().map(CancelKind::parse)) {
        (_, Some(CancelKind::LeaseLost)) => (JobState::Cancelled, None, Finish::Silent),
        (_, Some(CancelKind::Orchestrator)) => (
            JobState::Cancelled,
            Some(&Report::Cancelled),
            Finish::Reported(Report::Cancelled, routes),
        ),
        (Report::Cancelled, None) => {
            // A clean stop is not a death: the resume that follows starts a new count.
            tx.execute(
                "UPDATE jobs SET resume_attempts = 0 WHERE job_id = ?1",
                [job_id],
            )?;
            return Ok(Finish::Held);
        }
        (report, None) => (
            JobState::Finished,
            Some(report),
            Finish::Reported(report.clone(), routes),
        ),
    };
    settle_in(tx, job_id, Some(token), state, report, routes)?;
    journal::bump(tx)?;
    Ok(finish)
}

impl Store {
    /// Run `f` in one transaction committed with `synchronous=FULL` (durable against a power cut).
    pub(crate) fn durable_tx<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn.execute_batch("PRAGMA synchronous=FULL")?;
        let result = (|| -> Result<T, StoreError> {
            let tx = self.conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        let reset = self.conn.execute_batch("PRAGMA synchronous=NORMAL");
        if result.is_ok() {
            self.counters.full_commits += 1;
        }
        let value = result?;
        reset?;
        Ok(value)
    }

    /// Durable bookkeeping counters.
    pub fn counters(&self) -> StoreCounters {
        self.counters
    }

    /// Start a new process epoch (a daemon start): locks taken by earlier processes are stale.
    pub fn begin_epoch(&mut self) -> Result<u64, StoreError> {
        let epoch = self
            .meta_get("epoch")?
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        self.meta_set("epoch", &epoch.to_string())?;
        Ok(epoch)
    }

    /// Record a job before acknowledging it (invariant 1; committed with `synchronous=FULL`).
    /// A known job id is not recorded again: its record is returned, with `route` added to its
    /// routes (a job arriving on both links runs once and is reported on both). A REST job whose
    /// record is a *failed* earlier attempt and whose `attempt` is higher is a new attempt.
    pub fn record_job(&mut self, job: &NewJob<'_>) -> Result<Recorded, StoreError> {
        let workflow = compress(job.workflow)?;
        let variables = Value::Object(job.variables.clone()).to_string();
        let recorded = self.durable_tx(|tx| {
            let existing = tx
                .query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"),
                    [job.job_id],
                    job_from_row,
                )
                .optional()?;
            if let Some(raw) = existing {
                let mut rec = raw.decode()?;
                let failed_before = matches!(rec.report, Some(Report::Failed { .. }));
                // A failed job runs again only as a new attempt: the orchestrator's re-queue
                // (REST `retry_count`) or a person running it locally again.
                let new_attempt = match job.route {
                    Route::Rest => job.attempt > rec.attempt,
                    Route::Local => true,
                    Route::Ws => false,
                };
                if new_attempt && rec.state == JobState::Finished && failed_before {
                    tx.execute(
                        "UPDATE jobs SET routes = routes | ?2, workflow = ?3, variables = ?4, timeout = ?5,
                             state = 'received', received_at = ?6, started_at = NULL, finished_at = NULL,
                             attempt = MAX(attempt, ?7), lease_expires_at = ?8, report = NULL, lock_epoch = NULL
                         WHERE job_id = ?1",
                        params![job.job_id, job.route.bit(), workflow, variables, job.timeout,
                                now_secs(), job.attempt, job.lease_expires_at],
                    )?;
                    journal::bump(tx)?;
                    return Ok(Recorded::Retry);
                }
                if !rec.routes.has(job.route) {
                    tx.execute(
                        "UPDATE jobs SET routes = routes | ?2 WHERE job_id = ?1",
                        params![job.job_id, job.route.bit()],
                    )?;
                    rec.routes = Routes(rec.routes.0 | job.route.bit());
                }
                if job.route == Route::Rest && job.lease_expires_at.is_some() {
                    tx.execute(
                        "UPDATE jobs SET lease_expires_at = ?2 WHERE job_id = ?1",
                        params![job.job_id, job.lease_expires_at],
                    )?;
                    rec.lease_expires_at = job.lease_expires_at;
                }
                return Ok(Recorded::Known(Box::new(rec)));
            }
            tx.execute(
                "INSERT INTO jobs(job_id, routes, workflow, variables, timeout, state, received_at,
                                  attempt, lease_expires_at)
                 VALUES(?1, ?2, ?3, ?4, ?5, 'received', ?6, ?7, ?8)",
                params![
                    job.job_id,
                    job.route.bit(),
                    workflow,
                    variables,
                    job.timeout,
                    now_secs(),
                    job.attempt,
                    job.lease_expires_at
                ],
            )?;
            journal::bump(tx)?;
            Ok(Recorded::New)
        })?;
        if matches!(recorded, Recorded::New | Recorded::Retry) {
            let routes = Routes::of(job.route);
            self.journal_note(job.job_id, journal::Event::Accepted, routes, job.attempt);
        }
        Ok(recorded)
    }

    /// The record of `job_id`.
    pub fn job(&self, job_id: &str) -> Result<Option<JobRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"),
                [job_id],
                job_from_row,
            )
            .optional()?
            .map(RawJob::decode)
            .transpose()
    }

    /// Jobs that are not settled (`received` or `running`), oldest first: what a start-up must
    /// resume (invariant 5). A record that cannot be decoded is settled as failed (and reported).
    pub fn unsettled_jobs(&mut self) -> Result<Vec<JobRecord>, StoreError> {
        let raws: Vec<RawJob> = {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ('received', 'running') ORDER BY received_at"
            ))?;
            let rows = stmt.query_map([], job_from_row)?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(raws.len());
        for raw in raws {
            let (job_id, routes) = (raw.job_id.clone(), Routes(raw.routes));
            match raw.decode() {
                Ok(rec) => out.push(rec),
                Err(e) => {
                    log::error!("job {job_id}: its record is damaged ({e}); reporting it failed");
                    let report = Report::Failed {
                        error: format!("the robot's record of this job is damaged: {e}"),
                        error_type: "StoreError".into(),
                        failed_node: None,
                        duration_ms: 0,
                    };
                    self.settle(&job_id, None, JobState::Finished, Some(&report), routes)?;
                }
            }
        }
        Ok(out)
    }

    /// Acquire the local lock of `job_id` for a run in process `epoch` (JobLocker): the job
    /// becomes `running` with a new fencing token. Refused (None) when the job is settled,
    /// unknown, or already running in this process.
    ///
    /// Starting a job found `running` (its last run was interrupted) is a resume: it counts in
    /// `resume_attempts`, committed FULL before the run starts, so a run that kills the process
    /// is counted even when nothing else reaches the disk. A first start (`received`) sets the
    /// count to 0.
    pub fn start_job(&mut self, job_id: &str, epoch: u64) -> Result<Option<u64>, StoreError> {
        let resuming = self
            .conn
            .query_row(
                "SELECT 1 FROM jobs WHERE job_id = ?1 AND state = 'running'",
                [job_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let start = |tx: &Transaction<'_>| -> Result<Option<u64>, StoreError> {
            let n = tx.execute(
                "UPDATE jobs SET fencing_token = fencing_token + 1, lock_epoch = ?2,
                     started_at = COALESCE(started_at, ?3),
                     resume_attempts = CASE WHEN state = 'running' THEN resume_attempts + 1 ELSE 0 END,
                     state = 'running'
                 WHERE job_id = ?1 AND cancel_kind IS NULL
                   AND (state = 'received' OR (state = 'running' AND lock_epoch IS NOT ?2))",
                params![job_id, epoch as i64, now_secs()],
            )?;
            if n == 0 {
                return Ok(None);
            }
            let token: i64 = tx.query_row(
                "SELECT fencing_token FROM jobs WHERE job_id = ?1",
                [job_id],
                |r| r.get(0),
            )?;
            Ok(Some(token as u64))
        };
        if resuming {
            self.durable_tx(start)
        } else {
            let tx = self.conn.transaction()?;
            let token = start(&tx)?;
            tx.commit()?;
            Ok(token)
        }
    }

    /// Release the local lock (the job stays unsettled; it resumes on a later start).
    pub fn release_job_lock(&mut self, job_id: &str, token: u64) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE jobs SET lock_epoch = NULL WHERE job_id = ?1 AND fencing_token = ?2",
            params![job_id, token as i64],
        )? > 0)
    }

    /// True when `job_id` is running under a lock of process `epoch`.
    pub fn job_locked(&self, job_id: &str, epoch: u64) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM jobs WHERE job_id = ?1 AND state = 'running' AND lock_epoch = ?2",
                params![job_id, epoch as i64],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Record the end of a run of `job_id` under fencing token `token` (invariant 2): one FULL
    /// transaction sets the job's state, records its report, drops (or, for a failure, marks)
    /// its checkpoint and puts the report in the outbox of each of its routes. A cancelled run
    /// without a cancellation on record (a shutdown) is held: nothing changes and it resumes on
    /// the next start.
    pub fn finish_job(
        &mut self,
        job_id: &str,
        token: u64,
        report: &Report,
    ) -> Result<Finish, StoreError> {
        // Read and decide inside the transaction: a cancellation persisted meanwhile is seen.
        let finish = match self.settle_tx(|tx| finish_in(tx, job_id, token, report)) {
            Err(e) if e.is_full() => {
                log::error!(
                    "job {job_id}: the disk is full even for the settle reserve; its end is recorded without its result"
                );
                let small = report.trimmed_for_full_disk();
                self.settle_tx(|tx| finish_in(tx, job_id, token, &small))
            }
            other => other,
        }?;
        match &finish {
            Finish::Reported(report, routes) => {
                let event = journal::Event::of_settle(Some(report));
                self.journal_note(job_id, event, *routes, 0);
            }
            Finish::Silent => {
                self.journal_note(job_id, journal::Event::Cancelled, Routes::default(), 0)
            }
            Finish::Held | Finish::Fenced => {}
        }
        Ok(finish)
    }

    /// Settle a job that never ran (an invalid workflow, a damaged record, a cancellation
    /// before start): state, report and outbox entries in one FULL transaction.
    pub fn settle_unstarted(
        &mut self,
        job_id: &str,
        report: Option<&Report>,
    ) -> Result<Routes, StoreError> {
        let Some(rec) = self.job(job_id)? else {
            return Ok(Routes::default());
        };
        let state = if matches!(report, Some(Report::Cancelled) | None) {
            JobState::Cancelled
        } else {
            JobState::Finished
        };
        self.settle(job_id, None, state, report, rec.routes)?;
        Ok(rec.routes)
    }

    fn settle(
        &mut self,
        job_id: &str,
        token: Option<u64>,
        state: JobState,
        report: Option<&Report>,
        routes: Routes,
    ) -> Result<(), StoreError> {
        let settled = self.settle_tx(|tx| {
            let settled = settle_in(tx, job_id, token, state, report, routes)?;
            if settled {
                journal::bump(tx)?;
            }
            Ok(settled)
        })?;
        if settled {
            self.journal_note(job_id, journal::Event::of_settle(report), routes, 0);
        }
        Ok(())
    }

    /// Persist a cancellation of `job_id` (CancellationChecker; FULL): a restart never resumes
    /// it. Returns the job's state, or None when the job is unknown. A settled job is unchanged.
    pub fn request_cancel(
        &mut self,
        job_id: &str,
        kind: CancelKind,
        reason: &str,
    ) -> Result<Option<JobState>, StoreError> {
        self.durable_tx(|tx| {
            let state: Option<String> = tx
                .query_row("SELECT state FROM jobs WHERE job_id = ?1", [job_id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(state) = state else {
                return Ok(None);
            };
            let state = JobState::parse(&state)?;
            if !state.is_settled() {
                tx.execute(
                    "UPDATE jobs SET cancel_kind = COALESCE(cancel_kind, ?2), cancel_reason = COALESCE(cancel_reason, ?3)
                     WHERE job_id = ?1",
                    params![job_id, kind.as_str(), reason],
                )?;
            }
            Ok(Some(state))
        })
    }

    /// Record the orchestrator's new lease end for a REST job.
    pub fn set_lease(&mut self, job_id: &str, expires_at: f64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE jobs SET lease_expires_at = ?2 WHERE job_id = ?1",
            params![job_id, expires_at],
        )?;
        Ok(())
    }

    /// Forget a job: its record, checkpoint and outbox entries (a REST job given back with
    /// `release`; `checkpoints clear ID`). The same id is then a new job.
    pub fn forget_job(&mut self, job_id: &str) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM checkpoint_values WHERE job_id = ?1", [job_id])?;
        tx.execute("DELETE FROM checkpoints WHERE job_id = ?1", [job_id])?;
        super::rewind::clear(&tx, job_id)?;
        tx.execute("DELETE FROM outbox WHERE job_id = ?1", [job_id])?;
        let n = tx.execute("DELETE FROM jobs WHERE job_id = ?1", [job_id])?;
        if n > 0 {
            journal::bump(&tx)?;
        }
        tx.commit()?;
        if n > 0 {
            let event = journal::Event::Forgotten;
            self.journal_note(job_id, event, Routes::default(), 0);
        }
        Ok(n > 0)
    }

    /// Delete settled job records except the newest `keep` by settle order (`settle_seq`, a
    /// counter persisted in the store: a clock step changes nothing). Records whose report still
    /// waits in the outbox are kept; records settled before the counter existed count as oldest.
    pub fn purge_jobs(&mut self, keep: u64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM jobs WHERE state IN ('finished', 'cancelled')
               AND COALESCE(settle_seq, 0) <= (SELECT COALESCE(MAX(settle_seq), 0) FROM jobs) - ?1
               AND job_id NOT IN (SELECT job_id FROM outbox WHERE job_id IS NOT NULL)",
            [keep as i64],
        )?)
    }

    /// Append a report to the outbox of `route` (NORMAL durability: progress and logs). Progress
    /// replaces the job's queued progress; a progress of a job whose result is recorded and a
    /// second result for a job are ignored. Returns the entry's position, or None when it was
    /// ignored.
    pub fn outbox_push(
        &mut self,
        route: Route,
        job_id: Option<&str>,
        report: &Report,
    ) -> Result<Option<i64>, StoreError> {
        let tx = self.conn.transaction()?;
        let seq = push_entry(&tx, route, job_id, report)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Whether a progress report of `job_id` for `route` is stale: the job's result is recorded
    /// (the outbox refuses such progress itself; tests ask directly).
    #[cfg(test)]
    pub fn progress_is_stale(&self, route: Route, job_id: &str) -> Result<bool, StoreError> {
        progress_is_stale(&self.conn, route, job_id)
    }

    /// Up to `limit` entries of `route` after position `after`, oldest first.
    pub fn outbox_after(
        &self,
        route: Route,
        after: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, job_id, body, attempts FROM outbox WHERE route = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![route.bit(), after, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, job_id, body, attempts) = row?;
            match serde_json::from_str::<Report>(&body) {
                Ok(report) => out.push(OutboxEntry {
                    seq,
                    job_id,
                    route,
                    report,
                    attempts: attempts.max(0) as u32,
                }),
                Err(e) => {
                    log::error!("outbox entry #{seq} is damaged ({e}); dropped");
                    self.conn
                        .execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
                }
            }
        }
        Ok(out)
    }

    /// Remove delivered entries.
    pub fn outbox_remove(&mut self, seqs: &[i64]) -> Result<usize, StoreError> {
        if seqs.is_empty() {
            return Ok(0);
        }
        let tx = self.conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?;
            for seq in seqs {
                n += stmt.execute([seq])?;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    /// Count a failed delivery attempt of entry `seq`.
    pub fn outbox_attempted(&mut self, seq: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?1",
            [seq],
        )?;
        Ok(())
    }

    /// Entries waiting for `route` (all routes when None).
    pub fn outbox_len(&self, route: Option<Route>) -> Result<usize, StoreError> {
        let n: i64 = match route {
            Some(r) => self.conn.query_row(
                "SELECT COUNT(*) FROM outbox WHERE route = ?1",
                [r.bit()],
                |row| row.get(0),
            )?,
            None => self
                .conn
                .query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0))?,
        };
        Ok(n as usize)
    }
}

// ---------------------------------------------------------------------------------------------
// The reference robot's API names
// ---------------------------------------------------------------------------------------------

/// What a delivery attempt gave (for [`OfflineQueue::sync_with_orchestrator`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The orchestrator accepted it (or had it already): the entry leaves the queue.
    Accepted,
    /// The orchestrator refused it for good (a 4xx other than 409/429): logged and dropped, so
    /// one bad entry cannot block the queue.
    Refused,
    /// Not now (network error, 429, 5xx): the entry stays first in line; sync stops.
    Retry,
}

/// What one sync did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Entries accepted.
    pub delivered: usize,
    /// Entries refused for good and dropped.
    pub refused: usize,
    /// Entries still waiting.
    pub remaining: usize,
}

/// The persistent offline queue of one route: FIFO, results deduplicated by job id, progress
/// coalesced per job, delivered in order after reconnecting.
#[derive(Clone)]
pub struct OfflineQueue {
    store: SharedStore,
    route: Route,
}

impl OfflineQueue {
    /// The queue of `route` in `store`.
    pub fn new(store: SharedStore, route: Route) -> OfflineQueue {
        OfflineQueue { store, route }
    }

    /// Append a report (a duplicate result for the same job is ignored: returns None).
    pub fn enqueue(
        &self,
        job_id: Option<&str>,
        report: &Report,
    ) -> Result<Option<i64>, StoreError> {
        self.store.lock().outbox_push(self.route, job_id, report)
    }

    /// The oldest entry, left in place.
    pub fn peek(&self) -> Result<Option<OutboxEntry>, StoreError> {
        Ok(self
            .store
            .lock()
            .outbox_after(self.route, 0, 1)?
            .into_iter()
            .next())
    }

    /// Remove the entry `seq` (after the orchestrator accepted it).
    pub fn dequeue(&self, seq: i64) -> Result<bool, StoreError> {
        Ok(self.store.lock().outbox_remove(&[seq])? > 0)
    }

    /// Entries waiting.
    pub fn len(&self) -> Result<usize, StoreError> {
        self.store.lock().outbox_len(Some(self.route))
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Deliver entries oldest first through `deliver` until the queue is empty or a delivery
    /// must be retried (order is kept: nothing overtakes a waiting entry). The store is not
    /// locked while `deliver` runs.
    pub fn sync_with_orchestrator(
        &self,
        mut deliver: impl FnMut(&OutboxEntry) -> Delivery,
    ) -> Result<SyncSummary, StoreError> {
        let mut summary = SyncSummary::default();
        while let Some(entry) = self.peek()? {
            match deliver(&entry) {
                Delivery::Accepted => {
                    self.dequeue(entry.seq)?;
                    summary.delivered += 1;
                }
                Delivery::Refused => {
                    log::warn!(
                        "the orchestrator refused outbox entry #{} (job {}); dropped",
                        entry.seq,
                        entry.job_id.as_deref().unwrap_or("-")
                    );
                    self.dequeue(entry.seq)?;
                    summary.refused += 1;
                }
                Delivery::Retry => {
                    self.store.lock().outbox_attempted(entry.seq)?;
                    break;
                }
            }
        }
        summary.remaining = self.len()?;
        Ok(summary)
    }
}

/// A job's local lock: the fencing token its run holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobLock {
    /// Job id.
    pub job_id: String,
    /// Fencing token: the store accepts the run's settlement only under this token.
    pub token: u64,
}

/// Local job leases with fencing tokens (the orchestrator's REST lease is renewed by the rest
/// link). A job id runs at most once at a time, and never again once settled.
#[derive(Clone)]
pub struct JobLocker {
    store: SharedStore,
    epoch: u64,
}

impl JobLocker {
    /// A locker for process `epoch` (see [`Store::begin_epoch`]).
    pub fn new(store: SharedStore, epoch: u64) -> JobLocker {
        JobLocker { store, epoch }
    }

    /// Lock `job_id` for a run: None when it is settled, unknown, cancelled or already running.
    pub fn acquire_lock(&self, job_id: &str) -> Result<Option<JobLock>, StoreError> {
        Ok(self
            .store
            .lock()
            .start_job(job_id, self.epoch)?
            .map(|token| JobLock {
                job_id: job_id.to_string(),
                token,
            }))
    }

    /// Give the lock up without settling the job (it resumes on a later start).
    pub fn release_lock(&self, lock: &JobLock) -> Result<bool, StoreError> {
        self.store.lock().release_job_lock(&lock.job_id, lock.token)
    }

    /// True while a run of this process holds `job_id`.
    pub fn is_locked(&self, job_id: &str) -> Result<bool, StoreError> {
        self.store.lock().job_locked(job_id, self.epoch)
    }
}

/// Persisted cancellations: a `job_cancel` (WebSocket) or a lost lease (REST 409) is recorded
/// before the run is stopped, so a restart never resumes a cancelled job.
#[derive(Clone)]
pub struct CancellationChecker {
    store: SharedStore,
}

impl CancellationChecker {
    /// Over `store`.
    pub fn new(store: SharedStore) -> CancellationChecker {
        CancellationChecker { store }
    }

    /// Persist a cancellation; returns the job's state (None when unknown).
    pub fn request(
        &self,
        job_id: &str,
        kind: CancelKind,
        reason: &str,
    ) -> Result<Option<JobState>, StoreError> {
        self.store.lock().request_cancel(job_id, kind, reason)
    }

    /// True when a cancellation of `job_id` is on record.
    pub fn is_cancelled(&self, job_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .lock()
            .job(job_id)?
            .is_some_and(|r| r.cancel.is_some()))
    }

    /// The robot stopped the job (or it never started): settle it as cancelled; the
    /// orchestrator hears `job_cancelled` unless the lease was lost. Returns false when the job
    /// was not cancelled or is settled already.
    pub fn acknowledge_cancellation(&self, job_id: &str) -> Result<bool, StoreError> {
        let mut store = self.store.lock();
        let Some(rec) = store.job(job_id)? else {
            return Ok(false);
        };
        let Some((kind, _)) = rec.cancel else {
            return Ok(false);
        };
        if rec.state.is_settled() {
            return Ok(false);
        }
        let report = (kind == CancelKind::Orchestrator).then_some(Report::Cancelled);
        store.settle_unstarted(job_id, report.as_ref())?;
        Ok(true)
    }
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;

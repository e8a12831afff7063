//! The job worker pool: `max_concurrent_jobs` named threads that run jobs and report back.
//!
//! A worker never touches agent state: it receives a [`JobSpec`], runs the workflow with a
//! [`Checkpointer`] on the shared store (resuming a matching checkpoint of the same job id), and
//! sends [`JobEvent`]s (progress, log lines, the outcome) to the agent. Progress is throttled per
//! job. A panic outside the engine's per-node guard is caught here and reported as a failed job,
//! never a dead worker.
//!
//! Secrets: every text a job reports (progress and log messages, Supabase node events, the
//! error of its outcome) is scrubbed here ([`crate::redact`]) before it leaves the worker, and
//! the report it settles with is scrubbed when built (`Report::from_outcome`). Checkpoints keep
//! the run's variables as they are (resuming needs them); the store file is owner-only.
//!
//! Settlement: a job run under a [`JobLock`] ends with [`Store::finish_job`] on the worker
//! thread: the report, the job's new state, the dropped checkpoint and the outbox entries commit
//! together (invariant 2), and the agent is told what was recorded. A run stopped without a
//! cancellation on record (a shutdown) is held: it resumes on the next start.
//!
//! [`Store::finish_job`]: crate::store::Store::finish_job

use crate::engine::node::NodeLog;
use crate::engine::runner::{
    self, Both, FailureDisposition, NodeEvent, Observer, RunError, RunOptions, RunOutcome,
    RunState, RunStatus,
};
use crate::engine::{CancelToken, Dict, Workflow};
use crate::observe::metrics::NodeTally;
use crate::observe::supabase::ProgressSink;
use crate::store::checkpoint::{self, CheckpointMeta, Checkpointer, ResumePlan};
use crate::store::jobs::{Finish, JobLock, Report};
use crate::store::SharedStore;
use crossbeam_channel::{Receiver, Sender};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The latest progress of a running job, readable at any time without an event: the node that
/// completed last (its index in the workflow) with the percentage, and when (milliseconds since
/// the job started). Written by the worker after every node (two relaxed atomic stores), read by
/// the agent for status and `/health`, so a long node shows as the current one even when the
/// throttled progress events skipped the node before it.
#[derive(Debug, Default)]
pub struct LiveProgress {
    node: AtomicU64,
    at_ms: AtomicU64,
}

impl LiveProgress {
    fn set(&self, node_index: usize, percent: u8, at: Duration) {
        let packed = (u64::from(percent) << 56) | ((node_index as u64 + 1) & ((1 << 56) - 1));
        self.node.store(packed, Ordering::Relaxed);
        self.at_ms.store(at.as_millis() as u64, Ordering::Relaxed);
    }

    /// `(node index, percent)` of the node that completed last, if any did.
    pub fn last_node(&self) -> Option<(usize, u8)> {
        let packed = self.node.load(Ordering::Relaxed);
        let idx = packed & ((1 << 56) - 1);
        (idx > 0).then(|| ((idx - 1) as usize, (packed >> 56) as u8))
    }

    /// When the last node completed, as time since the job started.
    pub fn at(&self) -> Duration {
        Duration::from_millis(self.at_ms.load(Ordering::Relaxed))
    }
}

/// Minimum time between two progress events of one job.
pub const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A job to run.
pub struct JobSpec {
    /// The orchestrator's job id (also the checkpoint key).
    pub job_id: String,
    /// The loaded workflow.
    pub workflow: Arc<Workflow>,
    /// Input variables (job variables plus `_job_id`).
    pub inputs: Dict,
    /// Timeouts, retries, safety.
    pub opts: RunOptions,
    /// Cancelled by `job_cancel`, a lost lease, or shutdown.
    pub cancel: CancelToken,
    /// The job's lock in the store: the run settles the job under its fencing token. None runs
    /// the job without recording its end (the agent reports it).
    pub lock: Option<JobLock>,
    /// Save a checkpoint after every node (and resume from one).
    pub checkpoints: bool,
    /// Where the run publishes its latest node.
    pub live: Arc<LiveProgress>,
    /// Node events for Supabase Realtime (lossy), when configured.
    pub broadcast: Option<ProgressSink>,
}

/// What a worker reports.
#[derive(Debug)]
pub enum JobEvent {
    /// The job started (`recovered` when it resumed from a checkpoint).
    Started {
        /// Job id.
        job_id: String,
        /// Resumed from a checkpoint.
        recovered: bool,
        /// The node the checkpoint was taken after, when resumed.
        after_node: Option<String>,
    },
    /// Progress (throttled).
    Progress {
        /// Job id.
        job_id: String,
        /// 0-100.
        percent: u8,
        /// The node that just completed.
        node_id: String,
        /// Human summary.
        message: String,
    },
    /// A LogNode line.
    Log {
        /// Job id.
        job_id: String,
        /// Level.
        level: log::Level,
        /// Text.
        message: String,
        /// Emitting node.
        node_id: String,
    },
    /// The job ended.
    Finished {
        /// Job id.
        job_id: String,
        /// How it ended.
        outcome: Box<RunOutcome>,
        /// What the store recorded (an error when the settlement could not be written; the agent
        /// then reports the outcome without the store).
        finish: Result<Finish, String>,
        /// Node executions of this run, by node type (for the metrics).
        nodes: NodeTally,
    },
}

/// The workers are gone (the pool was joined or every worker died).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolClosed;

/// The pool's handle: the job sender and the join handles (dropped in that order).
pub struct WorkerPool {
    jobs: Option<Sender<JobSpec>>,
    handles: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Start `n` workers. `report` wraps a [`JobEvent`] into the agent's event type.
    pub fn start<E: Send + 'static>(
        n: usize,
        store: Option<SharedStore>,
        events: Sender<E>,
        report: fn(JobEvent) -> E,
    ) -> std::io::Result<WorkerPool> {
        let (tx, rx) = crossbeam_channel::unbounded::<JobSpec>();
        let mut handles = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rx: Receiver<JobSpec> = rx.clone();
            let store = store.clone();
            let events = events.clone();
            let handle = std::thread::Builder::new()
                .name(format!("worker-{}", i + 1))
                .spawn(move || {
                    for spec in rx.iter() {
                        run_job(spec, store.as_ref(), &|ev| {
                            let _ = events.send(report(ev));
                        });
                    }
                })?;
            handles.push(handle);
        }
        Ok(WorkerPool {
            jobs: Some(tx),
            handles,
        })
    }

    /// Queue a job (the agent only submits when a worker is free). Fails only when the workers
    /// are gone.
    pub fn submit(&self, spec: JobSpec) -> Result<(), PoolClosed> {
        match &self.jobs {
            Some(tx) => tx.send(spec).map_err(|_| PoolClosed),
            None => Err(PoolClosed),
        }
    }

    /// Stop taking jobs and wait for the workers to finish their current job.
    pub fn join(mut self) {
        self.jobs.take();
        for h in self.handles.drain(..) {
            if h.join().is_err() {
                log::error!("a worker thread panicked outside a job");
            }
        }
    }
}

struct Reporter<'a> {
    job_id: &'a str,
    send: &'a dyn Fn(JobEvent),
    last: Option<Instant>,
    tally: NodeTally,
    live: Arc<LiveProgress>,
    started: Instant,
    broadcast: Option<ProgressSink>,
}

impl Reporter<'_> {
    fn broadcast(&self, event: &'static str, ev: &NodeEvent<'_>, extra: serde_json::Value) {
        if let Some(sink) = &self.broadcast {
            let mut payload = serde_json::json!({
                "job_id": self.job_id,
                "node_id": ev.node_id,
                "node_type": ev.node_type,
                "progress": ev.percent,
            });
            if let (Some(p), serde_json::Value::Object(x)) = (payload.as_object_mut(), extra) {
                p.extend(x);
            }
            crate::redact::scrub_json(&mut payload);
            sink.report(event, payload);
        }
    }
}

impl Observer for Reporter<'_> {
    fn node_started(&mut self, ev: &NodeEvent<'_>) {
        self.broadcast("node_started", ev, serde_json::Value::Null);
    }

    fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
        self.broadcast(
            "node_completed",
            ev,
            serde_json::json!({"duration_ms": ev.elapsed.as_secs_f64() * 1000.0}),
        );
        self.tally
            .record(ev.node_type, ev.elapsed.as_secs_f64() * 1000.0, true, false);
        self.live
            .set(ev.node_index, ev.percent, self.started.elapsed());
        // The last node's 100 % is never throttled away: the orchestrator sees the run complete.
        if ev.percent < 100 && self.last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        (self.send)(JobEvent::Progress {
            job_id: self.job_id.to_string(),
            percent: ev.percent,
            node_id: ev.node_id.to_string(),
            message: crate::redact::scrub(&format!("Executing: {} ({})", ev.node_id, ev.node_type))
                .into_owned(),
        });
    }

    fn node_failed(&mut self, ev: &NodeEvent<'_>, error: &RunError, what_next: FailureDisposition) {
        self.broadcast(
            "node_error",
            ev,
            serde_json::json!({"error": error.to_string(), "will_retry": matches!(what_next, FailureDisposition::Retry(_))}),
        );
        self.tally.record(
            ev.node_type,
            ev.elapsed.as_secs_f64() * 1000.0,
            false,
            matches!(what_next, FailureDisposition::Retry(_)),
        );
        if what_next == FailureDisposition::Fatal {
            return;
        }
        (self.send)(JobEvent::Log {
            job_id: self.job_id.to_string(),
            level: log::Level::Warn,
            message: crate::redact::scrub(&match what_next {
                FailureDisposition::Retry(d) => {
                    format!("{error} (retrying in {:.1} s)", d.as_secs_f64())
                }
                _ => format!("{error} (caught)"),
            })
            .into_owned(),
            node_id: ev.node_id.to_string(),
        });
    }

    fn node_log(&mut self, ev: &NodeEvent<'_>, line: &NodeLog) {
        (self.send)(JobEvent::Log {
            job_id: self.job_id.to_string(),
            level: line.level,
            message: crate::redact::scrub(&line.message).into_owned(),
            node_id: ev.node_id.to_string(),
        });
    }
    fn wants_state(&self) -> bool {
        false
    }
}

/// A failed outcome for a job that could not run at all.
fn failed_outcome(wf: &Workflow, err: RunError) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Failed,
        error: Some(err),
        variables: Dict::new(),
        node_outputs: Dict::new(),
        executed_nodes: 0,
        node_executions: 0,
        node_records: Vec::new(),
        total_nodes: wf.total_nodes,
        duration: Duration::ZERO,
        recovered: false,
        state: None,
    }
}

/// Run one job to its end, checkpointing through `store` when given.
pub fn run_job(spec: JobSpec, store: Option<&SharedStore>, send: &dyn Fn(JobEvent)) {
    let job_id = spec.job_id.clone();
    let wf = spec.workflow.clone();
    let lock = spec.lock.clone();
    let mut reporter = Reporter {
        job_id: &job_id,
        send,
        last: None,
        tally: NodeTally::default(),
        live: spec.live.clone(),
        started: Instant::now(),
        broadcast: spec.broadcast.clone(),
    };
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| execute(spec, store, &mut reporter)));
    let nodes = std::mem::take(&mut reporter.tally);
    let mut outcome = match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let msg = crate::engine::node::panic_text(&*panic);
            log::error!("job {job_id}: internal error: {msg}");
            failed_outcome(
                &wf,
                RunError {
                    node_id: String::new(),
                    node_type: String::new(),
                    error_type: "InternalError".into(),
                    message: format!("internal error while running the job: {msg}"),
                },
            )
        }
    };
    // Everything downstream (agent, status, audit, metrics, orchestrator) sees the error scrubbed.
    if let Some(error) = outcome.error.as_mut() {
        if let std::borrow::Cow::Owned(clean) = crate::redact::scrub(&error.message) {
            error.message = clean;
        }
    }
    let finish = match (store, lock) {
        (Some(store), Some(lock)) => {
            let report = Report::from_outcome(&outcome);
            let settled = store.lock().finish_job(&job_id, lock.token, &report);
            settled.map_err(|e| {
                log::error!("job {job_id}: cannot record its end: {e}");
                let mut store = store.lock();
                if !store.replace_if_damaged(&e) && !matches!(report, Report::Cancelled) {
                    store.journal_unrecorded_end(&job_id, &report);
                }
                e.to_string()
            })
        }
        _ => Err("the job is not recorded".into()),
    };
    send(JobEvent::Finished {
        job_id,
        outcome: Box::new(outcome),
        finish,
        nodes,
    });
}

fn execute(spec: JobSpec, store: Option<&SharedStore>, reporter: &mut Reporter<'_>) -> RunOutcome {
    let send = reporter.send;
    let JobSpec {
        job_id,
        workflow,
        inputs,
        opts,
        cancel,
        checkpoints,
        ..
    } = spec;
    let wf: &Workflow = &workflow;
    let Some(store) = store.filter(|_| checkpoints) else {
        send(JobEvent::Started {
            job_id: job_id.clone(),
            recovered: false,
            after_node: None,
        });
        return runner::run(wf, inputs, &opts, &cancel, reporter);
    };
    let meta = CheckpointMeta::new(wf, &inputs);
    let plan = checkpoint::plan_resume(&mut store.lock(), &job_id, wf, &meta);
    match plan {
        ResumePlan::Refuse(err) => {
            log::warn!("job {job_id} not resumed: {err}");
            failed_outcome(wf, err)
        }
        ResumePlan::Fresh { reason } => {
            if let Some(reason) = reason {
                log::warn!("job {job_id} starts from the beginning: {reason}");
            }
            send(JobEvent::Started {
                job_id: job_id.clone(),
                recovered: false,
                after_node: None,
            });
            let mut writer = Checkpointer::shared(store.clone(), &job_id, meta, Duration::ZERO)
                .for_workflow(wf, 0);
            runner::run(
                wf,
                inputs,
                &opts,
                &cancel,
                &mut Both(&mut *reporter, &mut writer),
            )
        }
        ResumePlan::Resume(cp) => {
            log::info!(
                "job {job_id} resumes after node {} (checkpoint #{})",
                cp.node_id,
                cp.seq
            );
            send(JobEvent::Started {
                job_id: job_id.clone(),
                recovered: true,
                after_node: Some(cp.node_id.clone()),
            });
            let prior = Duration::from_millis(cp.state.prior_elapsed_ms);
            let mut writer =
                Checkpointer::shared(store.clone(), &job_id, meta, prior).for_workflow(wf, cp.seq);
            runner::resume(
                wf,
                cp.state,
                &opts,
                &cancel,
                &mut Both(&mut *reporter, &mut writer),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::load_str;
    use crate::nodes::testing::chain;
    use crate::store::Store;
    use serde_json::json;

    fn spec(job: &str, json: &str) -> JobSpec {
        JobSpec {
            job_id: job.into(),
            workflow: Arc::new(load_str(json).unwrap()),
            inputs: Dict::new(),
            opts: RunOptions::default(),
            cancel: CancelToken::new(),
            lock: None,
            checkpoints: true,
            live: Arc::default(),
            broadcast: None,
        }
    }

    /// A spec for a job recorded in `store` and locked for this run.
    fn recorded(store: &SharedStore, job: &str, json: &str) -> JobSpec {
        use crate::store::jobs::{NewJob, Route};
        let vars = serde_json::Map::new();
        let mut guard = store.lock();
        guard
            .record_job(&NewJob {
                job_id: job,
                route: Route::Ws,
                workflow: json,
                variables: &vars,
                timeout: None,
                attempt: 0,
                lease_expires_at: None,
            })
            .unwrap();
        let token = guard.start_job(job, 1).unwrap().expect("lock");
        JobSpec {
            lock: Some(JobLock {
                job_id: job.into(),
                token,
            }),
            ..spec(job, json)
        }
    }

    #[test]
    fn a_pool_runs_jobs_and_reports_progress_logs_and_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore =
            Arc::new(parking_lot::Mutex::new(Store::open(dir.path()).unwrap()));
        let (tx, rx) = crossbeam_channel::unbounded::<JobEvent>();
        let pool = WorkerPool::start(2, Some(store.clone()), tx, |e| e).unwrap();
        let wf = chain(&[
            (
                "a",
                "SetVariableNode",
                json!({"variable_name": "x", "value": 1}),
            ),
            ("l", "LogNode", json!({"message": "hello {{x}}"})),
        ]);
        for i in 0..4 {
            let s = recorded(&store, &format!("job-{i}"), &wf);
            assert!(pool.submit(s).is_ok());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut finished = 0;
        let mut logs = 0;
        while finished < 4 {
            match rx
                .recv_deadline(deadline)
                .expect("events before the deadline")
            {
                JobEvent::Finished {
                    outcome, finish, ..
                } => {
                    assert!(outcome.success(), "{:?}", outcome.error);
                    assert!(
                        matches!(finish, Ok(Finish::Reported(Report::Complete { .. }, _))),
                        "{finish:?}"
                    );
                    finished += 1;
                }
                JobEvent::Log { message, .. } => {
                    assert_eq!(message, "[l] hello 1");
                    logs += 1;
                }
                _ => {}
            }
        }
        assert_eq!(logs, 4);
        pool.join();
        // Completed jobs are settled with their report in the outbox, their checkpoints gone.
        let guard = store.lock();
        let rec = guard.job("job-0").unwrap().unwrap();
        assert_eq!(rec.state, crate::store::jobs::JobState::Finished);
        assert!(!guard.has_checkpoint("job-0").unwrap());
        assert_eq!(
            guard
                .outbox_len(Some(crate::store::jobs::Route::Ws))
                .unwrap(),
            4
        );
    }

    #[test]
    fn a_cancelled_job_keeps_its_checkpoint_and_resumes_when_run_again() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore =
            Arc::new(parking_lot::Mutex::new(Store::open(dir.path()).unwrap()));
        let wf = chain(&[
            (
                "a",
                "SetVariableNode",
                json!({"variable_name": "x", "value": 1}),
            ),
            ("w", "WaitNode", json!({"duration": 30})),
            (
                "b",
                "SetVariableNode",
                json!({"variable_name": "y", "value": 2}),
            ),
        ]);
        let s = recorded(&store, "j", &wf);
        let token = s.cancel.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            token.cancel("job_cancel");
        });
        let events = parking_lot::Mutex::new(Vec::new());
        run_job(s, Some(&store), &|e| events.lock().push(e));
        canceller.join().unwrap();
        let events = events.into_inner();
        match events.last() {
            Some(JobEvent::Finished {
                outcome, finish, ..
            }) => {
                assert_eq!(outcome.status, RunStatus::Cancelled);
                // No cancellation on record (a shutdown): the job is held with its checkpoint.
                assert_eq!(finish, &Ok(Finish::Held));
            }
            other => panic!("{other:?}"),
        }
        assert!(store.lock().has_checkpoint("j").unwrap());
        // Run again without the wait: the checkpoint is for another workflow, so it starts over;
        // with the same workflow it resumes (recovered).
        let again = spec("j", &wf);
        again.cancel.cancel("again");
        let events = parking_lot::Mutex::new(Vec::new());
        run_job(again, Some(&store), &|e| events.lock().push(e));
        assert!(matches!(
            events.lock().first(),
            Some(JobEvent::Started {
                recovered: true,
                ..
            })
        ));
    }
}

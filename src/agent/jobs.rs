//! The agent's job paths: assignment (WebSocket), claim (REST), start-up recovery, starting
//! recorded jobs on free workers, cancellation, lost leases, and the end of a run.
//!
//! Every path goes through the store: a job is recorded (FULL) before it is acknowledged; a job
//! id seen before is answered from its record (a finished job's report is queued again, so a
//! duplicate assignment gets the result and never a second run); a job starts only under a lock
//! with a fresh fencing token; a cancellation is persisted before the run is stopped.

use super::{Agent, RunningJob};
use crate::engine::runner::RunStatus;
use crate::engine::safety::Safety;
use crate::engine::{model, subflow, CancelToken, Dict, Value, Workflow};
use crate::link::protocol::{JobAssignment, LogEntry, Outbound, ProtocolError};
use crate::link::rest::ClaimedJob;
use crate::link::rest_io::RestCommand;
use crate::observe::metrics::JobEnd;
use crate::resilience::outq::Kind;
use crate::store::jobs::{
    CancelKind, Finish, JobRecord, JobState, NewJob, Recorded, Report, Route, Routes,
};
use crate::store::StoreError;
use crate::worker::{JobEvent, JobSpec, LiveProgress};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Load a job's workflow document; the error distinguishes unsupported node types. The
/// sub-workflow files it names pass the file nodes' rules (`allowed_paths`, no `..`) before they
/// are read: the document comes from the orchestrator.
fn load(doc: &serde_json::Value, safety: &Safety) -> Result<Workflow, model::LoadError> {
    subflow::load_json_from(doc, &subflow::Source::for_doc(doc, None).checked(safety))
}

impl Agent {
    pub(super) fn job_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.jobs.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn known_here(&self, job_id: &str) -> bool {
        self.jobs.contains_key(job_id)
            || self.verifying.contains(job_id)
            || self.waiting.iter().any(|w| w == job_id)
    }

    /// A store error at run time: a damaged file is moved aside (loudly: log, status,
    /// heartbeat, `/health`) and the robot continues on a fresh one. True when the store was
    /// replaced, so the caller can try again.
    fn store_failed(&mut self, e: &StoreError) -> bool {
        let replaced = self.store.lock().replace_if_damaged(e);
        if replaced {
            self.note_error(format!("the store was damaged and replaced: {e}"));
            self.publish_soon();
        }
        replaced
    }

    fn reject(&mut self, job_id: &str, reason: String) {
        log::info!("job {job_id} rejected: {reason}");
        self.send(
            Outbound::JobReject {
                job_id: job_id.to_string(),
                reason,
            },
            Kind::Control,
        );
    }

    fn accept(&mut self, job_id: &str) {
        self.send(
            Outbound::JobAccept {
                job_id: job_id.to_string(),
            },
            Kind::Control,
        );
    }

    /// Free slots for new jobs (0 while paused or stopping).
    fn free_slots(&self) -> usize {
        if self.stopping.is_some() || self.paused {
            return 0;
        }
        self.settings
            .max_concurrent_jobs
            .saturating_sub(self.jobs.len() + self.waiting.len() + self.verifying.len())
    }

    pub(super) fn update_rest_capacity(&mut self) {
        let free = self.free_slots();
        if let Some(rest) = &self.rest {
            let now = (free, self.claims_seen);
            if self.rest_capacity != Some(now) {
                rest.send(RestCommand::Capacity {
                    free,
                    claims_seen: self.claims_seen,
                });
                self.rest_capacity = Some(now);
            }
        }
    }

    /// Deliver whatever was just settled.
    fn flush_routes(&mut self, routes: Routes) {
        if routes.has(Route::Ws) {
            self.delivery.backlog = true;
            self.sync_ws();
        }
        if routes.has(Route::Rest) {
            if let Some(rest) = &self.rest {
                rest.send(RestCommand::Flush);
            }
        }
    }

    // ---- start-up ----------------------------------------------------------------------------

    /// Invariant 5: resume what the store holds unsettled.
    pub(super) fn recover(&mut self) {
        let purged = self
            .store
            .lock()
            .purge_jobs(self.settings.finished_job_records);
        if let Ok(n @ 1..) = purged {
            log::info!(
                "forgot {n} settled job record(s) beyond the newest {} (finished_job_records)",
                self.settings.finished_job_records
            );
        }
        let unsettled = self.store.lock().unsettled_jobs();
        let unsettled = match unsettled {
            Ok(jobs) => jobs,
            Err(e) if self.store_failed(&e) => {
                self.start_waiting();
                return self.update_rest_capacity();
            }
            Err(e) => {
                log::error!("cannot read the job store: {e}; nothing is resumed");
                return;
            }
        };
        let mut verify = Vec::new();
        for rec in unsettled {
            let id = rec.job_id.clone();
            if rec.routes.iter().next().is_none() {
                // An interrupted local `run --job-id`: it resumes when run again, not here.
                continue;
            }
            if rec.cancel.is_some() {
                log::info!("job {id} was cancelled before the restart; settling it");
                self.acknowledge_cancel(&id);
                continue;
            }
            if rec.routes.has(Route::Rest) && self.rest.is_some() {
                log::info!("job {id}: confirming its lease before it resumes");
                self.verifying.insert(id.clone());
                verify.push(id);
            } else {
                if rec.routes.has(Route::Rest) {
                    log::warn!("job {id} came by REST but api_url is not set; it resumes, and its result waits until REST is configured again");
                }
                log::info!(
                    "job {id} was {} when the robot stopped; it resumes",
                    if rec.state == JobState::Running {
                        "running"
                    } else {
                        "waiting"
                    }
                );
                self.waiting.push_back(id);
            }
        }
        if let Some(rest) = &self.rest {
            if !verify.is_empty() {
                rest.send(RestCommand::Verify(verify));
            }
            rest.send(RestCommand::Flush);
        }
        self.start_waiting();
        self.update_rest_capacity();
    }

    // ---- arrivals ----------------------------------------------------------------------------

    pub(super) fn on_assign(&mut self, a: JobAssignment) {
        let job_id = a.job_id.clone();
        if self.known_here(&job_id) {
            log::info!("job {job_id} assigned again while it is here: accepted again");
            // A job that came by REST now reports on the WebSocket too.
            let workflow = a.workflow.to_string();
            let recorded = self.store.lock().record_job(&new_job(&a, &workflow));
            if let (Ok(Recorded::Known(rec)), Some(job)) = (recorded, self.jobs.get_mut(&job_id)) {
                job.routes = rec.routes;
            }
            return self.accept(&job_id);
        }
        let known = self.store.lock().job(&job_id);
        match known {
            Ok(Some(_)) => {
                // Recording adds the WebSocket route to a job that came by REST.
                let workflow = a.workflow.to_string();
                let recorded = self.store.lock().record_job(&new_job(&a, &workflow));
                if let Ok(Recorded::Known(rec)) = recorded {
                    self.accept(&job_id);
                    return self.answer_known(*rec, Route::Ws);
                }
            }
            Ok(None) => {}
            Err(e) if self.store_failed(&e) => return self.on_assign(a),
            Err(e) => {
                return self.reject(&job_id, format!("the robot cannot read its job store: {e}"))
            }
        }
        if self.stopping.is_some() {
            return self.reject(&job_id, "the robot is shutting down".into());
        }
        if self.paused {
            return self.reject(&job_id, "the robot is paused (draining)".into());
        }
        if self.free_slots() == 0 {
            let cap = self.settings.max_concurrent_jobs;
            let busy = self.jobs.len() + self.waiting.len() + self.verifying.len();
            return self.reject(
                &job_id,
                format!("at capacity ({busy} of {cap} jobs running)"),
            );
        }
        let invalid = match load(&a.workflow, &self.settings.run_options.safety) {
            Ok(_) => None,
            Err(e) if !e.unsupported_types.is_empty() => {
                return self.reject(
                    &job_id,
                    format!("unsupported node types: {}", e.unsupported_types.join(", ")),
                );
            }
            Err(e) => Some(e),
        };
        let workflow = a.workflow.to_string();
        let recorded = self.store.lock().record_job(&new_job(&a, &workflow));
        match recorded {
            Err(e) if self.store_failed(&e) => return self.on_assign(a),
            Err(e) => {
                log::error!("job {job_id}: cannot record it: {e}");
                return self.reject(
                    &job_id,
                    format!("the robot cannot record the job (its store failed: {e})"),
                );
            }
            Ok(Recorded::Known(rec)) => {
                self.accept(&job_id);
                return self.answer_known(*rec, Route::Ws);
            }
            Ok(_) => {}
        }
        self.audit.job_received(
            &job_id,
            a.workflow["metadata"]["name"]
                .as_str()
                .or(a.workflow_id.as_deref())
                .unwrap_or("workflow"),
        );
        self.accept(&job_id);
        if let Some(e) = invalid {
            log::warn!("job {job_id}: invalid workflow: {e}");
            let report = Report::Failed {
                error: e.to_string(),
                error_type: "WorkflowValidationError".into(),
                failed_node: e.problems.iter().find_map(|p| p.node_id.clone()),
                duration_ms: 0,
            };
            return self.settle_unstarted(&job_id, &report);
        }
        self.waiting.push_back(job_id);
        self.start_waiting();
    }

    /// A job assignment with a usable job id and malformed fields: answered with `job_reject`
    /// naming the field, unless the job is already here (then the malformed copy is ignored).
    pub(super) fn on_malformed_assign(&mut self, job_id: &str, error: &ProtocolError) {
        log::warn!("job {job_id}: malformed assignment from the orchestrator: {error}");
        let known = self.known_here(job_id) || matches!(self.store.lock().job(job_id), Ok(Some(_)));
        if known {
            log::warn!(
                "job {job_id}: the robot already has this job; the malformed copy is ignored"
            );
            return;
        }
        self.reject(job_id, format!("malformed assignment: {error}"));
    }

    pub(super) fn on_claimed(&mut self, job: ClaimedJob, recorded: Recorded) {
        self.claims_seen += 1;
        let job_id = job.job_id.clone();
        match recorded {
            Recorded::Known(rec) => {
                if self.known_here(&job_id) {
                    log::info!("job {job_id} claimed by REST while it is here: it runs once, its result goes both ways");
                    if let Some(j) = self.jobs.get_mut(&job_id) {
                        j.routes = rec.routes;
                    }
                } else {
                    self.answer_known(*rec, Route::Rest);
                }
            }
            Recorded::New | Recorded::Retry => {
                if matches!(recorded, Recorded::Retry) {
                    log::info!(
                        "job {job_id}: attempt {} (the orchestrator re-queued it after a failure)",
                        job.retry_count + 1
                    );
                }
                if let Err(e) = load(&job.workflow, &self.settings.run_options.safety) {
                    log::warn!("job {job_id}: cannot run its workflow: {e}");
                    let report = Report::Failed {
                        error: e.to_string(),
                        error_type: if e.unsupported_types.is_empty() {
                            "WorkflowValidationError".into()
                        } else {
                            "UnsupportedNodeTypes".into()
                        },
                        failed_node: e.problems.iter().find_map(|p| p.node_id.clone()),
                        duration_ms: 0,
                    };
                    return self.settle_unstarted(&job_id, &report);
                }
                log::info!("job {job_id} claimed");
                self.audit.job_claimed(&job_id);
                self.waiting.push_back(job_id);
                self.start_waiting();
            }
        }
        self.update_rest_capacity();
    }

    /// A job id seen before: never run again; a settled one's report is queued again for
    /// `route` (the orchestrator asked, so it did not get it).
    fn answer_known(&mut self, rec: JobRecord, route: Route) {
        let id = rec.job_id.clone();
        if !rec.state.is_settled() {
            // Unsettled but not here (held by an earlier run of this process): run it.
            log::info!("job {id} is known and unsettled: it resumes");
            self.waiting.push_back(id);
            return self.start_waiting();
        }
        let report = match (rec.report, route) {
            (Some(Report::Cancelled) | None, Route::Rest) => Report::Failed {
                error: "the job was cancelled on this robot".into(),
                error_type: "Cancelled".into(),
                failed_node: None,
                duration_ms: 0,
            },
            (Some(report), _) => report,
            (None, Route::Ws | Route::Local) => Report::Cancelled,
        };
        log::info!(
            "job {id} was settled here before: answering from its record, not running it again"
        );
        let pushed = self.store.lock().outbox_push(route, Some(&id), &report);
        match pushed {
            // Its result is still in the outbox, sent and not yet acknowledged: the asking
            // orchestrator gets it again now (a duplicate result is harmless).
            Ok(None) if route == Route::Ws && report.is_result() => {
                self.send_report_direct(&id, &report)
            }
            Ok(_) => {}
            Err(e) => log::warn!("job {id}: cannot queue its recorded report: {e}"),
        }
        self.flush_routes(Routes::of(route));
        if route == Route::Rest {
            if let Some(rest) = &self.rest {
                rest.send(RestCommand::Untrack(id));
            }
        }
    }

    fn settle_unstarted(&mut self, job_id: &str, report: &Report) {
        if let Report::Failed { error, .. } = report {
            self.metrics
                .record_job_end(job_id, JobEnd::Failed, Some(0.0), Some(error), None);
            self.note_error(format!("job {job_id} failed: {error}"));
        }
        let settled = self.store.lock().settle_unstarted(job_id, Some(report));
        match settled {
            Ok(routes) => self.flush_routes(routes),
            Err(e) => log::error!("job {job_id}: cannot record its end: {e}"),
        }
        if let Some(rest) = &self.rest {
            rest.send(RestCommand::Untrack(job_id.to_string()));
        }
    }

    // ---- starting ----------------------------------------------------------------------------

    /// Start waiting jobs while workers are free.
    pub(super) fn start_waiting(&mut self) {
        while self.jobs.len() < self.settings.max_concurrent_jobs && self.stopping.is_none() {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.start(&id);
        }
        self.update_rest_capacity();
    }

    fn start(&mut self, job_id: &str) {
        let rec = self.store.lock().job(job_id);
        let rec = match rec {
            Ok(Some(rec)) if !rec.state.is_settled() => rec,
            Ok(_) => return,
            Err(e) => {
                log::error!("job {job_id}: cannot read its record: {e}");
                self.store_failed(&e);
                return;
            }
        };
        if rec.cancel.is_some() {
            return self.acknowledge_cancel(job_id);
        }
        if let Some(report) =
            crate::store::jobs::poison_report(&rec, self.settings.max_resume_attempts)
        {
            log::warn!(
                "job {job_id}: {} resumes in a row died; failing it as a poison job instead of resuming it again",
                rec.resume_attempts
            );
            return self.settle_unstarted(job_id, &report);
        }
        let wf = serde_json::from_str::<serde_json::Value>(&rec.workflow)
            .map_err(|e| e.to_string())
            .and_then(|doc| {
                load(&doc, &self.settings.run_options.safety).map_err(|e| e.to_string())
            });
        let wf = match wf {
            Ok(wf) => wf,
            Err(e) => {
                let report = Report::Failed {
                    error: format!("the recorded workflow cannot be loaded: {e}"),
                    error_type: "WorkflowValidationError".into(),
                    failed_node: None,
                    duration_ms: 0,
                };
                return self.settle_unstarted(job_id, &report);
            }
        };
        let lock = match self.locker.acquire_lock(job_id) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                log::warn!("job {job_id}: already running or settled; not started again");
                return;
            }
            Err(e) => {
                log::error!("job {job_id}: cannot lock it: {e}");
                self.store_failed(&e);
                return;
            }
        };
        let mut inputs: Dict = rec
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_json(v)))
            .collect();
        inputs.insert("_job_id".into(), Value::str(job_id));
        let mut opts = self.settings.run_options.clone();
        if let Some(t) = rec.timeout {
            opts.job_timeout = Duration::from_secs_f64(t.clamp(0.001, 1e9));
        }
        let cancel = CancelToken::new();
        let workflow = Arc::new(wf);
        let live = Arc::new(LiveProgress::default());
        let spec = JobSpec {
            job_id: job_id.to_string(),
            workflow: workflow.clone(),
            inputs,
            opts,
            cancel: cancel.clone(),
            lock: Some(lock),
            checkpoints: self.settings.checkpoints,
            live: live.clone(),
            broadcast: self.broadcast.clone(),
        };
        if self.pool.submit(spec).is_err() {
            log::error!("job {job_id}: the worker pool is gone");
            return;
        }
        log::info!("job {job_id} started ({} running)", self.jobs.len() + 1);
        self.audit.job_started(job_id, workflow.total_nodes);
        self.metrics.record_job_start(job_id);
        let now = Instant::now();
        self.jobs.insert(
            job_id.to_string(),
            RunningJob {
                cancel,
                started: now,
                live,
                workflow,
                routes: rec.routes,
                cancel_requested: false,
                shutdown_cancelled: false,
                result_sent: false,
            },
        );
    }

    // ---- cancellation ------------------------------------------------------------------------

    pub(super) fn on_cancel(&mut self, job_id: &str, reason: Option<String>) {
        let reason = reason.unwrap_or_else(|| "cancelled by the orchestrator".into());
        self.cancel_job(job_id, CancelKind::Orchestrator, &reason);
    }

    pub(super) fn on_lease_lost(&mut self, job_id: &str) {
        self.cancel_job(job_id, CancelKind::LeaseLost, "the REST lease was lost");
    }

    /// Persist the cancellation first (a restart never resumes the job), then stop the run, or
    /// settle a job that had not started.
    fn cancel_job(&mut self, job_id: &str, kind: CancelKind, reason: &str) {
        let recorded = self.cancels.request(job_id, kind, reason);
        match recorded {
            Ok(None) => {
                log::debug!("cancellation of job {job_id}, which is unknown here");
                return;
            }
            Ok(Some(state)) if state.is_settled() => {
                log::debug!("cancellation of job {job_id}, which is settled already");
                return;
            }
            Ok(Some(_)) => {}
            Err(e) => log::error!("job {job_id}: cannot persist its cancellation: {e}"),
        }
        if let Some(job) = self.jobs.get_mut(job_id) {
            log::info!("job {job_id}: cancelling ({reason})");
            job.cancel_requested = true;
            job.cancel.cancel(reason);
            return;
        }
        self.waiting.retain(|w| w != job_id);
        self.verifying.remove(job_id);
        log::info!("job {job_id}: cancelled before it started ({reason})");
        self.acknowledge_cancel(job_id);
        self.update_rest_capacity();
    }

    fn acknowledge_cancel(&mut self, job_id: &str) {
        match self.cancels.acknowledge_cancellation(job_id) {
            Ok(true) => self.flush_routes(Routes::of(Route::Ws)),
            Ok(false) => {}
            Err(e) => log::error!("job {job_id}: cannot settle its cancellation: {e}"),
        }
        if let Some(rest) = &self.rest {
            rest.send(RestCommand::Untrack(job_id.to_string()));
        }
    }

    // ---- shutdown --------------------------------------------------------------------------

    /// At shutdown: REST jobs that never started are given back (others may run them now);
    /// WebSocket ones stay recorded and start on the next start.
    pub(super) fn release_unstarted(&mut self) {
        let Some(rest) = &self.rest else {
            return;
        };
        let mut release = Vec::new();
        let store = self.store.lock();
        for id in self.waiting.iter().chain(self.verifying.iter()) {
            if let Ok(Some(rec)) = store.job(id) {
                let unstarted = rec.state == JobState::Received;
                if unstarted && rec.routes == Routes::of(Route::Rest) {
                    release.push(id.clone());
                }
            }
        }
        drop(store);
        if !release.is_empty() {
            log::info!(
                "giving back {} REST job(s) that did not start",
                release.len()
            );
            rest.send(RestCommand::Release(release));
        }
    }

    // ---- workers -----------------------------------------------------------------------------

    pub(super) fn on_job(&mut self, ev: JobEvent) {
        match ev {
            JobEvent::Started {
                job_id,
                recovered,
                after_node,
            } => {
                if recovered {
                    log::info!("job {job_id} resumed from its checkpoint");
                    self.audit
                        .checkpoint_restored(&job_id, after_node.as_deref().unwrap_or(""));
                }
            }
            JobEvent::Progress {
                job_id,
                percent,
                node_id,
                message,
            } => {
                let Some(job) = self.jobs.get(&job_id) else {
                    return;
                };
                let routes = job.routes;
                if routes.has(Route::Rest) {
                    if let Some(rest) = &self.rest {
                        rest.send(RestCommand::Progress {
                            job_id: job_id.clone(),
                            progress: percent,
                            current_node: Some(node_id.clone()),
                            message: Some(message.clone()),
                        });
                    }
                }
                // The last progress (100 %) usually arrives after the worker recorded the result,
                // but before the result is sent: it goes out first. After the result, it is stale.
                if routes.has(Route::Ws) && !job.result_sent {
                    self.emit_ws(
                        Some(&job_id),
                        Report::Progress {
                            progress: percent,
                            current_node: Some(node_id),
                            message: Some(message),
                        },
                    );
                }
            }
            JobEvent::Log {
                job_id,
                level,
                message,
                node_id,
            } => {
                if self.ws.is_none() {
                    return;
                }
                self.logs.push(LogEntry {
                    timestamp: chrono::Utc::now().to_rfc3339(),
                    level: level.to_string(),
                    message,
                    source: format!("job:{job_id}"),
                    extra: serde_json::json!({"job_id": job_id, "node_id": node_id}),
                });
                if self.logs.len() >= 100 {
                    self.flush_logs();
                }
            }
            JobEvent::Finished {
                job_id,
                outcome,
                finish,
                nodes,
            } => {
                let end = match outcome.status {
                    RunStatus::Completed => JobEnd::Succeeded,
                    RunStatus::Cancelled => JobEnd::Cancelled,
                    RunStatus::Failed | RunStatus::TimedOut => JobEnd::Failed,
                };
                let error = outcome.error.as_ref().map(|e| e.to_string());
                // A held job (shutdown) did not end: it resumes on the next start.
                if !matches!(finish, Ok(Finish::Held)) {
                    self.metrics.record_job_end(
                        &job_id,
                        end,
                        Some(outcome.duration.as_secs_f64() * 1000.0),
                        error.as_deref(),
                        Some(&nodes),
                    );
                }
                if let Some(e) = &error {
                    if end == JobEnd::Failed {
                        self.note_error(format!("job {job_id} failed: {e}"));
                    }
                }
                self.on_finished(job_id, &outcome, finish);
                self.publish_soon();
            }
        }
    }

    fn on_finished(
        &mut self,
        job_id: String,
        outcome: &crate::engine::runner::RunOutcome,
        finish: Result<Finish, String>,
    ) {
        self.flush_logs();
        let job = self.jobs.remove(&job_id);
        let routes = job.as_ref().map_or(Routes::of(Route::Ws), |j| j.routes);
        let duration_ms = outcome.duration.as_millis();
        let untrack = !matches!(finish, Ok(Finish::Held));
        match finish {
            Ok(Finish::Reported(report, routes)) => {
                self.jobs_done += 1;
                let ms = outcome.duration.as_secs_f64() * 1000.0;
                let status = match &report {
                    Report::Complete { .. } => {
                        log::info!(
                            "job {job_id} completed in {duration_ms} ms ({} node executions)",
                            outcome.node_executions
                        );
                        self.audit.job_completed(&job_id, ms);
                        "completed"
                    }
                    Report::Failed { error, .. } => {
                        log::info!("job {job_id} failed: {error}");
                        self.audit.job_failed(&job_id, error, ms);
                        "failed"
                    }
                    _ => {
                        log::info!("job {job_id} cancelled");
                        self.audit
                            .job_cancelled(&job_id, "cancelled by the orchestrator");
                        "cancelled"
                    }
                };
                if let Some(sink) = &self.broadcast {
                    sink.report(
                        "job_completed",
                        serde_json::json!({"job_id": job_id, "status": status, "duration_ms": ms,
                                           "node_executions": outcome.node_executions}),
                    );
                }
                self.flush_routes(routes);
            }
            Ok(Finish::Silent) => {
                self.jobs_done += 1;
                log::info!("job {job_id} stopped: its lease was lost; nothing is reported");
                self.audit
                    .job_cancelled(&job_id, "the REST lease was lost (409)");
            }
            Ok(Finish::Held) => log::warn!(
                "job {job_id} stopped by the shutdown; its checkpoint is kept and it resumes on the next start"
            ),
            Ok(Finish::Fenced) => log::warn!(
                "job {job_id}: its record changed while it ran (another run owns it); this run's end is not recorded"
            ),
            Err(e) => {
                // The store failed: say the outcome anyway (best effort, not durable).
                log::error!("job {job_id}: its end could not be recorded ({e}); reporting it without the store");
                let report = Report::from_outcome(outcome);
                if routes.has(Route::Ws) {
                    self.send_report_direct(&job_id, &report);
                }
            }
        }
        if untrack {
            if let Some(rest) = &self.rest {
                rest.send(RestCommand::Untrack(job_id));
            }
        }
        self.start_waiting();
        // Tell the orchestrator promptly when the robot became idle, but at most once a second.
        let last = self
            .next_heartbeat
            .checked_sub(self.settings.heartbeat_interval);
        if self.stopping.is_none()
            && self.jobs.is_empty()
            && last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.send_heartbeat();
        }
    }
}

fn new_job<'a>(a: &'a JobAssignment, workflow: &'a str) -> NewJob<'a> {
    NewJob {
        job_id: &a.job_id,
        route: Route::Ws,
        workflow,
        variables: &a.variables,
        timeout: a.timeout,
        attempt: 0,
        lease_expires_at: None,
    }
}

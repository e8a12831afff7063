//! The agent: the one state machine of the daemon.
//!
//! It owns the connection state (with backoff and circuit breaker), the job table, the
//! outbound queue and the robot status. Everything else talks to it through [`Event`]s on one
//! channel: the ws-io thread (frames, connects, closes), the workers (progress, logs, outcomes)
//! and the signal handlers (shutdown). One loop, one owner: `while !done { handle(next event or
//! timer) }`. Errors are handled per event; the loop never exits early on one.
//!
//! Jobs: an assignment is validated first (`job_reject` with the unsupported node types, or when
//! at capacity, paused or stopping; an invalid workflow is accepted and failed with every problem
//! listed); a job id already running is accepted again; a job id this robot completed before is
//! answered from its record. `job_cancel` cancels the job's token (waits and commands are
//! interrupted at once, the engine stops at the next node boundary).
//!
//! Shutdown (Ctrl+C, `shutdown` message): stop taking jobs and report `stopping`; let running
//! jobs finish for `graceful_shutdown_seconds`; then cancel them (their checkpoints stay); flush
//! queued messages, close the socket with a deadline, and return.

pub mod connection;
pub mod host;

use crate::engine::model;
use crate::engine::runner::{RunOptions, RunOutcome, RunStatus};
use crate::engine::{CancelToken, Dict, Value};
use crate::link::protocol::{
    self, Capabilities, Dialect, HeartbeatInfo, Inbound, JobAssignment, LogEntry, Outbound,
    RobotStatus, StatusInfo,
};
use crate::link::ws::{Frame, WsCommand, WsEvent, WsHandle};
use crate::resilience::outq::{Kind, OutQueue};
use crate::store::SharedStore;
use crate::worker::{JobEvent, JobSpec, WorkerPool};
use connection::{Connection, LinkAction, LinkInput, Transition};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything the agent hears.
#[derive(Debug)]
pub enum Event {
    /// From the ws-io thread.
    Ws(WsEvent),
    /// From a worker.
    Job(JobEvent),
    /// Ctrl+C, console close, tray exit.
    Shutdown {
        /// Let running jobs finish first.
        graceful: bool,
        /// Who asked (for the log).
        source: &'static str,
    },
}

/// The agent's settings (from the robot configuration).
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// Robot id.
    pub robot_id: String,
    /// Display name.
    pub robot_name: String,
    /// Routing tag.
    pub environment: String,
    /// Full WebSocket URL (robot id and API key applied).
    pub ws_url: String,
    /// API key for the `X-Api-Key` header.
    pub api_key: Option<String>,
    /// Wire dialect.
    pub dialect: Dialect,
    /// Worker count.
    pub max_concurrent_jobs: usize,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Time running jobs get on shutdown.
    pub graceful_shutdown: Duration,
    /// Extra time cancelled jobs get to stop (child processes, a node in flight).
    pub cancel_grace: Duration,
    /// Engine options for every job (the job's own timeout replaces `job_timeout`).
    pub run_options: RunOptions,
}

struct RunningJob {
    cancel: CancelToken,
    started: Instant,
    cancel_requested: bool,
    shutdown_cancelled: bool,
    progress: u8,
    current_node: Option<String>,
}

struct Stopping {
    deadline: Instant,
    cancelled_at: Option<Instant>,
    closing_since: Option<Instant>,
}

/// The daemon's central state machine.
pub struct Agent {
    settings: AgentSettings,
    events: Receiver<Event>,
    ws: WsHandle,
    pool: WorkerPool,
    store: Option<SharedStore>,
    conn: Connection,
    rng: fastrand::Rng,
    connected: bool,
    jobs: HashMap<String, RunningJob>,
    finished: HashMap<String, String>,
    finished_order: VecDeque<String>,
    outq: OutQueue<Frame>,
    logs: Vec<LogEntry>,
    log_sequence: u64,
    paused: bool,
    stopping: Option<Stopping>,
    next_heartbeat: Instant,
    started: Instant,
    host: host::HostSampler,
    unknown_types_seen: Vec<String>,
    done: bool,
}

/// Finished jobs remembered in memory to answer duplicate assignments (the store keeps completed
/// jobs durably as well).
const FINISHED_REMEMBERED: usize = 1000;

impl Agent {
    /// An agent over already started threads.
    pub fn new(
        settings: AgentSettings,
        events: Receiver<Event>,
        ws: WsHandle,
        pool: WorkerPool,
        store: Option<SharedStore>,
        conn: Connection,
    ) -> Agent {
        let now = Instant::now();
        Agent {
            next_heartbeat: now + settings.heartbeat_interval,
            settings,
            events,
            ws,
            pool,
            store,
            conn,
            rng: fastrand::Rng::new(),
            connected: false,
            jobs: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            outq: OutQueue::default(),
            logs: Vec::new(),
            log_sequence: 0,
            paused: false,
            stopping: None,
            started: now,
            host: host::HostSampler::default(),
            unknown_types_seen: Vec::new(),
            done: false,
        }
    }

    /// Run until shutdown completes; returns the exit code (0 clean, 1 when jobs had to be
    /// abandoned).
    pub fn run(mut self) -> u8 {
        log::info!(
            "robot {} ({}) starting: orchestrator {}, {} worker(s), dialect {}",
            self.settings.robot_id,
            self.settings.robot_name,
            redact_url(&self.settings.ws_url),
            self.settings.max_concurrent_jobs,
            self.settings.dialect.as_str()
        );
        let now = Instant::now();
        let action = self.conn.handle(now, LinkInput::Start, &mut self.rng);
        self.apply_link(action);
        while !self.done {
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match self.events.recv_timeout(timeout) {
                Ok(ev) => self.handle_event(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.on_timers(Instant::now());
        }
        let abandoned = !self.jobs.is_empty();
        if abandoned {
            log::warn!(
                "{} job(s) did not stop in time; exiting without them",
                self.jobs.len()
            );
        }
        let Agent { ws, pool, .. } = self;
        ws.stop();
        if !abandoned {
            pool.join();
        }
        log::info!("robot stopped");
        u8::from(abandoned)
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_heartbeat;
        if let Some(c) = self.conn.poll_timeout() {
            t = t.min(c);
        }
        if let Some(s) = &self.stopping {
            t = t.min(Instant::now() + Duration::from_millis(100));
            t = t.min(s.deadline);
        }
        t
    }

    fn status(&self) -> RobotStatus {
        if self.stopping.is_some() {
            RobotStatus::Stopping
        } else if self.paused {
            RobotStatus::Paused
        } else if self.jobs.is_empty() {
            RobotStatus::Idle
        } else {
            RobotStatus::Busy
        }
    }

    fn apply_link(&mut self, action: Option<LinkAction>) {
        match action {
            Some(LinkAction::Connect) => {
                log::debug!("connecting to {}", redact_url(&self.settings.ws_url));
                self.ws.send(WsCommand::Connect {
                    url: self.settings.ws_url.clone(),
                    api_key: self.settings.api_key.clone(),
                });
            }
            Some(LinkAction::Close) => {
                self.ws.send(WsCommand::Close);
            }
            None => {}
        }
        for t in self.conn.take_transitions() {
            match t {
                Transition::OutageStarted { unauthorized: true } => log::error!(
                    "the orchestrator refuses this robot's credentials (robot_id {}): check api_key; \
                     retrying only at the maximum reconnect delay (next attempt in {:.0} s)",
                    self.settings.robot_id,
                    self.conn.snapshot(Instant::now()).next_attempt_in_secs.unwrap_or(0.0)
                ),
                Transition::OutageStarted { unauthorized: false } => {
                    log::warn!("orchestrator unreachable; reconnecting with backoff (one line per outage)")
                }
                Transition::Restored { attempts, outage } => log::info!(
                    "connected again after {attempts} attempt(s), {:.1} s offline",
                    outage.as_secs_f64()
                ),
            }
        }
        for t in self.conn.breaker_mut().take_transitions() {
            log::info!("circuit breaker: {t:?}");
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Ws(ws) => self.on_ws(ws),
            Event::Job(job) => self.on_job(job),
            Event::Shutdown { graceful, source } => self.begin_shutdown(graceful, source),
        }
    }

    // ---- link ------------------------------------------------------------------------------

    fn on_ws(&mut self, ev: WsEvent) {
        let now = Instant::now();
        match ev {
            WsEvent::Connected => {
                self.connected = true;
                let action = self.conn.handle(now, LinkInput::Connected, &mut self.rng);
                self.apply_link(action);
                log::info!(
                    "connected to the orchestrator as {}",
                    self.settings.robot_id
                );
                let register = Outbound::Register {
                    robot_name: self.settings.robot_name.clone(),
                    environment: self.settings.environment.clone(),
                    capabilities: self.capabilities(),
                };
                self.send_now(&register);
                self.send_heartbeat();
                while let Some(frame) = self.outq.pop() {
                    self.ws.send(WsCommand::Send(frame));
                }
                if let Some(s) = &mut self.stopping {
                    if s.closing_since.is_some() {
                        self.ws.send(WsCommand::Close);
                    }
                }
            }
            WsEvent::ConnectFailed { error, auth } => {
                self.connected = false;
                log::debug!("connect failed: {error}");
                if self
                    .stopping
                    .as_ref()
                    .is_some_and(|s| s.closing_since.is_some())
                {
                    self.done = true;
                    return;
                }
                let action =
                    self.conn
                        .handle(now, LinkInput::ConnectFailed { auth }, &mut self.rng);
                self.apply_link(action);
            }
            WsEvent::Closed { code, reason } => {
                let auth = matches!(code, Some(4001 | 4003));
                self.connected = false;
                log::info!(
                    "connection closed: {reason}{}",
                    code.map(|c| format!(" (code {c})")).unwrap_or_default()
                );
                if self
                    .stopping
                    .as_ref()
                    .is_some_and(|s| s.closing_since.is_some())
                {
                    self.done = true;
                    return;
                }
                let action = self
                    .conn
                    .handle(now, LinkInput::Closed { auth }, &mut self.rng);
                self.apply_link(action);
            }
            WsEvent::SendFailed(frame) => {
                let (kind, job_id) = (frame.kind, frame.job_id.clone());
                let _ = self.outq.push(kind, job_id.as_deref(), frame);
            }
            WsEvent::Frame(text) => match protocol::parse_inbound(&text) {
                Ok(msg) => self.on_message(msg),
                Err(e) => log::warn!("ignored a frame from the orchestrator: {e}"),
            },
        }
    }

    fn on_message(&mut self, msg: Inbound) {
        log::debug!("received {}", msg.kind());
        match msg {
            Inbound::RegisterAck { success: true, .. } => log::debug!("registration accepted"),
            Inbound::RegisterAck {
                success: false,
                message,
            } => {
                log::error!(
                    "the orchestrator refused the registration: {}",
                    message.unwrap_or_else(|| "no reason given".into())
                );
                let action = self.conn.handle(
                    Instant::now(),
                    LinkInput::RegistrationRefused,
                    &mut self.rng,
                );
                self.apply_link(action);
            }
            Inbound::HeartbeatAck => {}
            Inbound::JobAssign(job) => self.on_assign(job),
            Inbound::JobCancel { job_id, reason } => self.on_cancel(&job_id, reason),
            Inbound::StatusRequest => {
                let info = StatusInfo {
                    status: self.status(),
                    current_jobs: self.jobs.len(),
                    active_job_ids: self.job_ids(),
                    uptime_seconds: self.started.elapsed().as_secs(),
                    system_info: serde_json::json!({
                        "platform": std::env::consts::OS,
                        "version": env!("CARGO_PKG_VERSION"),
                        "queued_messages": self.outq.len(),
                        "link": self.conn.snapshot(Instant::now()),
                    }),
                };
                self.send(Outbound::StatusResponse(info), Kind::Control);
            }
            Inbound::Pause => {
                log::info!("paused by the orchestrator: not taking new jobs");
                self.paused = true;
                self.send_heartbeat();
            }
            Inbound::Resume => {
                log::info!("resumed by the orchestrator: taking jobs again");
                self.paused = false;
                self.send_heartbeat();
            }
            Inbound::Shutdown { graceful } => self.begin_shutdown(graceful, "the orchestrator"),
            Inbound::Ping => self.send(Outbound::Pong, Kind::Control),
            Inbound::Error { code, message } => {
                log::warn!(
                    "orchestrator error{}: {message}",
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                )
            }
            Inbound::Unknown { msg_type } => {
                if !self.unknown_types_seen.contains(&msg_type) {
                    log::debug!("ignored unknown message type {msg_type:?}");
                    self.unknown_types_seen.push(msg_type);
                }
            }
        }
    }

    // ---- jobs ------------------------------------------------------------------------------

    fn job_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.jobs.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn reject(&mut self, job_id: &str, reason: String) {
        log::info!("job {job_id} rejected: {reason}");
        self.send(
            Outbound::JobReject {
                job_id: job_id.to_string(),
                reason,
            },
            Kind::Result,
        );
    }

    fn on_assign(&mut self, a: JobAssignment) {
        let job_id = a.job_id.clone();
        if self.jobs.contains_key(&job_id) {
            log::info!("job {job_id} assigned again while running: accepted again");
            self.send(Outbound::JobAccept { job_id }, Kind::Control);
            return;
        }
        if let Some(final_msg) = self.finished.get(&job_id).cloned() {
            log::info!("job {job_id} already finished here: answering from its result");
            self.send(
                Outbound::JobAccept {
                    job_id: job_id.clone(),
                },
                Kind::Control,
            );
            self.send_text(final_msg, Kind::Result, Some(&job_id));
            return;
        }
        if let Some(store) = &self.store {
            let recorded = store.lock().completed_job(&job_id);
            if let Ok(Some((_, result))) = recorded {
                log::info!("job {job_id} completed here before: answering from its record");
                self.send(
                    Outbound::JobAccept {
                        job_id: job_id.clone(),
                    },
                    Kind::Control,
                );
                let duration_ms = result["duration_ms"].as_u64().unwrap_or(0);
                self.send(
                    Outbound::JobComplete {
                        job_id,
                        result: trim_result(result),
                        duration_ms,
                    },
                    Kind::Result,
                );
                return;
            }
        }
        if self.stopping.is_some() {
            return self.reject(&job_id, "the robot is shutting down".into());
        }
        if self.paused {
            return self.reject(&job_id, "the robot is paused (draining)".into());
        }
        let cap = self.settings.max_concurrent_jobs;
        if self.jobs.len() >= cap {
            return self.reject(
                &job_id,
                format!("at capacity ({} of {cap} jobs running)", self.jobs.len()),
            );
        }
        let wf = match model::load_json(&a.workflow) {
            Ok(wf) => wf,
            Err(e) if !e.unsupported_types.is_empty() => {
                return self.reject(
                    &job_id,
                    format!("unsupported node types: {}", e.unsupported_types.join(", ")),
                );
            }
            Err(e) => {
                log::warn!("job {job_id}: invalid workflow: {e}");
                self.send(
                    Outbound::JobAccept {
                        job_id: job_id.clone(),
                    },
                    Kind::Control,
                );
                self.send(
                    Outbound::JobFailed {
                        job_id,
                        error: e.to_string(),
                        error_type: "WorkflowValidationError".into(),
                        failed_node: e.problems.iter().find_map(|p| p.node_id.clone()),
                        duration_ms: 0,
                    },
                    Kind::Result,
                );
                return;
            }
        };
        let mut inputs: Dict = a
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), Value::from_json(v)))
            .collect();
        inputs.insert("_job_id".into(), Value::str(&job_id));
        let mut opts = self.settings.run_options.clone();
        if let Some(t) = a.timeout {
            opts.job_timeout = Duration::from_secs_f64(t.clamp(0.001, 1e9));
        }
        let cancel = CancelToken::new();
        let spec = JobSpec {
            job_id: job_id.clone(),
            workflow: Arc::new(wf),
            inputs,
            opts,
            cancel: cancel.clone(),
        };
        self.send(
            Outbound::JobAccept {
                job_id: job_id.clone(),
            },
            Kind::Control,
        );
        if self.pool.submit(spec).is_err() {
            log::error!("job {job_id}: the worker pool is gone");
            return;
        }
        log::info!("job {job_id} accepted ({} running)", self.jobs.len() + 1);
        self.jobs.insert(
            job_id,
            RunningJob {
                cancel,
                started: Instant::now(),
                cancel_requested: false,
                shutdown_cancelled: false,
                progress: 0,
                current_node: None,
            },
        );
    }

    fn on_cancel(&mut self, job_id: &str, reason: Option<String>) {
        match self.jobs.get_mut(job_id) {
            Some(job) => {
                let reason = reason.unwrap_or_else(|| "cancelled by the orchestrator".into());
                log::info!("job {job_id}: cancelling ({reason})");
                job.cancel_requested = true;
                job.cancel.cancel(reason);
            }
            None => log::debug!("job_cancel for job {job_id}, which is not running here"),
        }
    }

    fn on_job(&mut self, ev: JobEvent) {
        match ev {
            JobEvent::Started { job_id, recovered } => {
                if recovered {
                    log::info!("job {job_id} resumed from its checkpoint");
                }
            }
            JobEvent::Progress {
                job_id,
                percent,
                node_id,
                message,
            } => {
                if let Some(job) = self.jobs.get_mut(&job_id) {
                    job.progress = percent;
                    job.current_node = Some(node_id.clone());
                }
                self.send(
                    Outbound::JobProgress {
                        job_id,
                        progress: percent,
                        current_node: Some(node_id),
                        message: Some(message),
                    },
                    Kind::Progress,
                );
            }
            JobEvent::Log {
                job_id,
                level,
                message,
                node_id,
            } => {
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
            JobEvent::Finished { job_id, outcome } => self.on_finished(job_id, *outcome),
        }
    }

    fn on_finished(&mut self, job_id: String, outcome: RunOutcome) {
        self.flush_logs();
        let job = self.jobs.remove(&job_id);
        let duration_ms = outcome.duration.as_millis() as u64;
        let (cancel_requested, shutdown_cancelled) = job.as_ref().map_or((false, false), |j| {
            (j.cancel_requested, j.shutdown_cancelled)
        });
        let msg = match outcome.status {
            RunStatus::Completed => {
                log::info!(
                    "job {job_id} completed in {duration_ms} ms ({} node executions)",
                    outcome.node_executions
                );
                Outbound::JobComplete {
                    job_id: job_id.clone(),
                    result: trim_result(outcome.to_json()),
                    duration_ms,
                }
            }
            RunStatus::Cancelled if cancel_requested => {
                log::info!("job {job_id} cancelled");
                Outbound::JobCancelled {
                    job_id: job_id.clone(),
                }
            }
            RunStatus::Cancelled if shutdown_cancelled => {
                log::warn!("job {job_id} stopped by the shutdown; its checkpoint is kept");
                Outbound::JobFailed {
                    job_id: job_id.clone(),
                    error: "the robot shut down before the job finished; it stopped at a node boundary and \
                            its checkpoint is kept (it resumes if assigned to this robot again)"
                        .into(),
                    error_type: "RobotShutdown".into(),
                    failed_node: outcome.error.as_ref().map(|e| e.node_id.clone()).filter(|n| !n.is_empty()),
                    duration_ms,
                }
            }
            _ => {
                let err = outcome.error.clone();
                let text = err
                    .as_ref()
                    .map_or_else(|| "the job failed".to_string(), |e| e.to_string());
                log::info!("job {job_id} failed: {text}");
                Outbound::JobFailed {
                    job_id: job_id.clone(),
                    error: text,
                    error_type: err
                        .as_ref()
                        .map_or_else(|| "Error".into(), |e| e.error_type.clone()),
                    failed_node: err.map(|e| e.node_id).filter(|n| !n.is_empty()),
                    duration_ms,
                }
            }
        };
        let text = protocol::encode(&msg, self.settings.dialect, &self.settings.robot_id);
        self.remember_finished(&job_id, text.clone());
        self.send_text(text, Kind::Result, Some(&job_id));
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

    fn remember_finished(&mut self, job_id: &str, text: String) {
        if self.finished.insert(job_id.to_string(), text).is_none() {
            self.finished_order.push_back(job_id.to_string());
        }
        while self.finished_order.len() > FINISHED_REMEMBERED {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    // ---- sending ---------------------------------------------------------------------------

    fn send(&mut self, msg: Outbound, kind: Kind) {
        let job_id = msg.job_id().map(str::to_string);
        let text = protocol::encode(&msg, self.settings.dialect, &self.settings.robot_id);
        self.send_text(text, kind, job_id.as_deref());
    }

    fn send_now(&mut self, msg: &Outbound) {
        let text = protocol::encode(msg, self.settings.dialect, &self.settings.robot_id);
        let frame = Frame {
            text,
            kind: Kind::Control,
            job_id: None,
        };
        self.ws.send(WsCommand::Send(frame));
    }

    fn send_text(&mut self, text: String, kind: Kind, job_id: Option<&str>) {
        let frame = Frame {
            text,
            kind,
            job_id: job_id.map(str::to_string),
        };
        if self.connected && self.outq.is_empty() {
            self.ws.send(WsCommand::Send(frame));
        } else {
            let _ = self.outq.push(kind, job_id, frame);
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            types: vec!["headless".into()],
            max_concurrent_jobs: self.settings.max_concurrent_jobs,
            platform: std::env::consts::OS.into(),
            hostname: crate::config::hostname(&crate::config::process_env),
            version: env!("CARGO_PKG_VERSION").into(),
            node_types: crate::nodes::all()
                .iter()
                .map(|d| d.node_type.to_string())
                .collect(),
            tags: Vec::new(),
            cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gb: host::system_memory().map_or(0.0, |(total, _)| {
                (total as f64 / 1_073_741_824.0 * 10.0).round() / 10.0
            }),
        }
    }

    fn send_heartbeat(&mut self) {
        let figures = self.host.sample();
        let info = HeartbeatInfo {
            status: self.status(),
            current_jobs: self.jobs.len(),
            active_job_ids: self.job_ids(),
            cpu_percent: figures.cpu_percent,
            memory_percent: figures.memory_percent,
            memory_mb: figures.process_memory_mb,
            disk_percent: 0.0,
            metrics: serde_json::json!({
                "uptime_seconds": self.started.elapsed().as_secs(),
                "queued_messages": self.outq.len(),
                "link": self.conn.snapshot(Instant::now()),
                "jobs": self.jobs.iter().map(|(id, j)| serde_json::json!({
                    "job_id": id, "progress": j.progress, "current_node": j.current_node,
                    "running_seconds": j.started.elapsed().as_secs(),
                })).collect::<Vec<_>>(),
            }),
        };
        // Heartbeats are not queued while disconnected: a stale one says nothing.
        if self.connected {
            self.send_now(&Outbound::Heartbeat(info));
        }
        self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
    }

    fn flush_logs(&mut self) {
        if self.logs.is_empty() {
            return;
        }
        let logs = std::mem::take(&mut self.logs);
        for chunk in logs.chunks(100) {
            self.log_sequence += 1;
            let msg = Outbound::LogBatch {
                sequence: self.log_sequence,
                logs: chunk.to_vec(),
            };
            self.send(msg, Kind::Log);
        }
    }

    // ---- timers and shutdown -----------------------------------------------------------------

    fn on_timers(&mut self, now: Instant) {
        if self.conn.poll_timeout().is_some_and(|t| now >= t) {
            let action = self.conn.handle_timeout(now);
            self.apply_link(action);
        }
        if now >= self.next_heartbeat {
            self.flush_logs();
            self.send_heartbeat();
        }
        self.drive_shutdown(now);
    }

    fn begin_shutdown(&mut self, graceful: bool, source: &str) {
        if self.stopping.is_some() {
            return;
        }
        let now = Instant::now();
        let grace = if graceful {
            self.settings.graceful_shutdown
        } else {
            Duration::ZERO
        };
        log::info!(
            "shutdown requested by {source}: not taking new jobs; {} running job(s) get {} s to finish",
            self.jobs.len(),
            grace.as_secs()
        );
        self.stopping = Some(Stopping {
            deadline: now + grace,
            cancelled_at: None,
            closing_since: None,
        });
        self.send_heartbeat();
    }

    fn drive_shutdown(&mut self, now: Instant) {
        let Some(stop) = &mut self.stopping else {
            return;
        };
        if stop.closing_since.is_none() {
            if !self.jobs.is_empty() {
                if stop.cancelled_at.is_none() && now >= stop.deadline {
                    stop.cancelled_at = Some(now);
                    log::warn!(
                        "stopping {} job(s) at their next node; their checkpoints stay",
                        self.jobs.len()
                    );
                    for job in self.jobs.values_mut() {
                        job.shutdown_cancelled = true;
                        job.cancel.cancel("the robot is shutting down");
                    }
                }
                let waited_enough = stop.cancelled_at.is_some_and(|t| {
                    now >= t + self.settings.cancel_grace + Duration::from_secs(5)
                });
                if !waited_enough {
                    return;
                }
            }
            stop.closing_since = Some(now);
            self.flush_logs();
            if self.connected {
                while let Some(frame) = self.outq.pop() {
                    self.ws.send(WsCommand::Send(frame));
                }
                self.ws.send(WsCommand::Close);
            } else {
                let _ = self.conn.handle(now, LinkInput::Stop, &mut self.rng);
                self.done = true;
            }
            return;
        }
        if stop
            .closing_since
            .is_some_and(|t| now >= t + Duration::from_secs(5))
        {
            log::warn!("the orchestrator did not finish the close handshake in time");
            self.done = true;
        }
    }
}

/// The result object sent in `job_complete`: the protocol's fields, without debug extras.
fn trim_result(mut result: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = result.as_object_mut() {
        obj.remove("node_outputs");
    }
    result
}

/// The URL without its query (the API key may be there).
pub fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// The channel the agent listens on.
pub fn channel() -> (Sender<Event>, Receiver<Event>) {
    crossbeam_channel::unbounded()
}

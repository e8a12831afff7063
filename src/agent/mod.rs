//! The agent: the one state machine of the daemon.
//!
//! It owns the WebSocket connection state (with backoff and circuit breaker), the table of
//! running jobs, the queue of jobs waiting to start, and the robot status. Everything else talks
//! to it through [`Event`]s on one channel: the ws-io thread (frames, connects, closes), the
//! rest-io thread (claimed jobs, leases), the workers (progress, logs, outcomes) and the signal
//! handlers (shutdown). One loop, one owner: `while !done { handle(next event or timer) }`. Errors
//! are handled per event; the loop never exits early on one.
//!
//! Durable state lives in the store ([`crate::store::jobs`]): a job is recorded before it is
//! acknowledged, a job id seen before is answered from its record, results reach the
//! orchestrator through the outbox, cancellations are persisted before the run is stopped.
//! See [`jobs`] for the job paths and [`outbox`] for WebSocket delivery.
//!
//! Start-up: jobs the store holds unsettled resume (REST jobs once their lease is confirmed),
//! cancelled ones are settled, the outbox is delivered as soon as a link is up.
//!
//! Shutdown (Ctrl+C, `shutdown` message): stop taking jobs and report `stopping`; let running
//! jobs finish for `graceful_shutdown_seconds`; then stop them at a node boundary (their
//! checkpoints stay and they stay `running` in the store: the next start resumes them); give
//! back REST jobs that never started; deliver the outbox, close the socket with a deadline, and
//! return.

pub mod connection;
pub mod host;
mod jobs;
mod observe;
mod outbox;

use crate::engine::runner::RunOptions;
use crate::engine::CancelToken;
use crate::link::protocol::{
    self, Capabilities, Dialect, HeartbeatInfo, Inbound, LogEntry, Outbound, RobotStatus,
    StatusInfo,
};
use crate::link::rest_io::{RestCommand, RestEvent, RestHandle, RestLink};
use crate::link::ws::{Frame, WsCommand, WsEvent, WsHandle};
use crate::observe::audit::AuditLogger;
use crate::observe::health::SharedMetricsText;
use crate::observe::metrics::MetricsCollector;
use crate::observe::status::SharedStatus;
use crate::observe::supabase::ProgressSink;
use crate::resilience::outq::{Kind, OutQueue};
use crate::store::jobs::{CancellationChecker, JobLocker, Routes};
use crate::store::SharedStore;
use crate::worker::{JobEvent, WorkerPool};
use connection::{Connection, LinkAction, LinkInput, Transition};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Everything the agent hears.
#[derive(Debug)]
pub enum Event {
    /// From the ws-io thread.
    Ws(WsEvent),
    /// From the rest-io thread.
    Rest(RestEvent),
    /// From a worker.
    Job(JobEvent),
    /// A local operator's command (the tray menu).
    Control(Control),
    /// Ctrl+C, console close, tray exit.
    Shutdown {
        /// Let running jobs finish first.
        graceful: bool,
        /// Who asked (for the log).
        source: &'static str,
    },
}

/// What a local operator can ask (the tray menu).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop taking new jobs (running ones continue).
    Pause,
    /// Take jobs again.
    Resume,
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
    /// Full WebSocket URL (robot id and API key applied); None without a WebSocket link.
    pub ws_url: Option<String>,
    /// API key for the `X-Api-Key` header.
    pub api_key: Option<String>,
    /// Wire dialect.
    pub dialect: Dialect,
    /// Worker count.
    pub max_concurrent_jobs: usize,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// The largest frame to send (`max_frame_mb`); larger results go out truncated.
    pub max_frame_bytes: usize,
    /// Time running jobs get on shutdown.
    pub graceful_shutdown: Duration,
    /// Extra time cancelled jobs get to stop (child processes, a node in flight).
    pub cancel_grace: Duration,
    /// Engine options for every job (the job's own timeout replaces `job_timeout`).
    pub run_options: RunOptions,
    /// Save a checkpoint after every node.
    pub checkpoints: bool,
    /// Resumes of an interrupted job that may die in a row before it fails as a poison job.
    pub max_resume_attempts: u32,
    /// Where to write `status.json` (the data directory); None writes no file.
    pub status_dir: Option<std::path::PathBuf>,
    /// The log file, for status readers.
    pub log_file: Option<std::path::PathBuf>,
    /// The configuration file, for status readers.
    pub config_file: Option<std::path::PathBuf>,
    /// Settled job records kept (`finished_job_records`).
    pub finished_job_records: u64,
}

/// Where the agent publishes what operators see.
pub struct Published {
    /// The status snapshot (read by `/health` and the tray).
    pub status: SharedStatus,
    /// The Prometheus text (read by `/metrics`).
    pub metrics_text: SharedMetricsText,
    /// The audit trail (owned by the agent: it alone writes it).
    pub audit: AuditLogger,
    /// Node and job events for Supabase Realtime, when configured.
    pub broadcast: Option<ProgressSink>,
}

/// The links the agent drives (either or both).
pub struct Links {
    /// The ws-io thread, with the WebSocket connection state machine.
    pub ws: Option<(WsHandle, Connection)>,
    /// The rest-io thread.
    pub rest: Option<RestHandle>,
}

struct RunningJob {
    cancel: CancelToken,
    started: Instant,
    /// The latest node the worker completed (read for status and health).
    live: std::sync::Arc<crate::worker::LiveProgress>,
    /// Its workflow (node ids for `live`).
    workflow: std::sync::Arc<crate::engine::Workflow>,
    routes: Routes,
    cancel_requested: bool,
    shutdown_cancelled: bool,
    /// Its result went out on the WebSocket (the worker settles before the agent handles the
    /// job's end, and a flush for another job can send it): later progress would be stale.
    result_sent: bool,
}

impl RunningJob {
    /// The node that completed last (from the worker's live slot).
    fn current_node(&self) -> Option<String> {
        let (idx, _) = self.live.last_node()?;
        self.workflow.nodes.get(idx).map(|n| n.id.clone())
    }

    /// Percent of the workflow's nodes executed so far.
    fn progress(&self) -> u8 {
        self.live.last_node().map_or(0, |(_, p)| p)
    }

    /// Time since the last node completed (or since the start).
    fn since_progress(&self, now: Instant) -> Duration {
        now.duration_since(self.started)
            .saturating_sub(self.live.at())
    }

    fn state_name(&self) -> &'static str {
        if self.cancel_requested {
            "cancelling"
        } else if self.shutdown_cancelled {
            "stopping"
        } else {
            "running"
        }
    }
}

struct Stopping {
    deadline: Instant,
    cancelled_at: Option<Instant>,
    closing_since: Option<Instant>,
}

/// WebSocket delivery state of the outbox (per connection).
#[derive(Default)]
struct WsDelivery {
    /// Highest outbox position sent on this connection.
    cursor: i64,
    /// Entries sent on this connection and not yet acknowledged: (position, heartbeats sent
    /// before it, when).
    inflight: VecDeque<(i64, u64, Instant)>,
    /// Heartbeats sent / acknowledged on this connection.
    hb_sent: u64,
    hb_acked: u64,
    /// The outbox may hold entries not sent on this connection.
    backlog: bool,
    /// The close handshake was started on this connection.
    close_sent: bool,
    /// The robot said on this connection that sent entries wait for an acknowledgement.
    unacked_warned: bool,
    /// The largest frame sent on this connection (bytes).
    largest_sent: usize,
}

/// Distinct unknown message types the agent remembers (and logs once each); past it, unknown
/// types are ignored silently, so a flood of made-up types costs neither memory nor time.
const MAX_UNKNOWN_TYPES: usize = 64;

/// The daemon's central state machine.
pub struct Agent {
    settings: AgentSettings,
    events: Receiver<Event>,
    ws: Option<WsHandle>,
    conn: Option<Connection>,
    rest: Option<RestHandle>,
    pool: WorkerPool,
    store: SharedStore,
    locker: JobLocker,
    cancels: CancellationChecker,
    rng: fastrand::Rng,
    connected: bool,
    rest_reachable: Option<bool>,
    /// The REST orchestrator refuses this robot's API key.
    rest_refused: bool,
    jobs: HashMap<String, RunningJob>,
    /// Recorded jobs waiting for a free worker.
    waiting: VecDeque<String>,
    /// Recovered REST jobs whose lease is being confirmed.
    verifying: HashSet<String>,
    delivery: WsDelivery,
    /// The largest frame sent: `max_frame_bytes`, lowered when the orchestrator refuses one as
    /// too big (close code 1009).
    frame_limit: usize,
    frame_refusals: crate::link::bound::FrameRefusals,
    control: OutQueue<Frame>,
    logs: Vec<LogEntry>,
    log_sequence: u64,
    /// Last capacity told to rest-io: (free slots, claims seen).
    rest_capacity: Option<(usize, u64)>,
    /// REST claims handled so far.
    claims_seen: u64,
    paused: bool,
    stopping: Option<Stopping>,
    next_heartbeat: Instant,
    started: Instant,
    host: host::HostSampler,
    /// Unknown message types already logged (at most [`MAX_UNKNOWN_TYPES`]).
    unknown_types_seen: HashSet<String>,
    jobs_done: u64,
    /// The last resource sample (heartbeats between samples reuse it).
    figures: host::HostFigures,
    metrics: MetricsCollector,
    metrics_text: SharedMetricsText,
    audit: AuditLogger,
    broadcast: Option<ProgressSink>,
    status: SharedStatus,
    next_status: Instant,
    last_status_file: Option<Instant>,
    /// What the status file holds (without its volatile fields).
    last_status_written: Option<crate::observe::status::StatusSnapshot>,
    status_file_failed: bool,
    /// Since when every configured link is down (None while one is up).
    down_since: Option<Instant>,
    /// The last error worth an operator's attention, with its time.
    last_error: Option<(String, String)>,
    done: bool,
}

impl Agent {
    /// An agent over already started threads. `epoch` is this process's store epoch.
    pub fn new(
        settings: AgentSettings,
        events: Receiver<Event>,
        links: Links,
        pool: WorkerPool,
        store: SharedStore,
        epoch: u64,
        published: Published,
    ) -> Agent {
        let now = Instant::now();
        let (ws, conn) = match links.ws {
            Some((ws, conn)) => (Some(ws), Some(conn)),
            None => (None, None),
        };
        Agent {
            next_heartbeat: now + settings.heartbeat_interval,
            frame_limit: settings.max_frame_bytes,
            frame_refusals: Default::default(),
            settings,
            events,
            ws,
            conn,
            rest: links.rest,
            pool,
            locker: JobLocker::new(store.clone(), epoch),
            cancels: CancellationChecker::new(store.clone()),
            store,
            rng: fastrand::Rng::new(),
            connected: false,
            rest_reachable: None,
            rest_refused: false,
            jobs: HashMap::new(),
            waiting: VecDeque::new(),
            verifying: HashSet::new(),
            delivery: WsDelivery::default(),
            control: OutQueue::default(),
            logs: Vec::new(),
            log_sequence: 0,
            rest_capacity: None,
            claims_seen: 0,
            paused: false,
            stopping: None,
            started: now,
            host: host::HostSampler::default(),
            unknown_types_seen: HashSet::new(),
            jobs_done: 0,
            figures: host::HostFigures::default(),
            metrics: MetricsCollector::new(),
            metrics_text: published.metrics_text,
            status: published.status,
            audit: published.audit,
            broadcast: published.broadcast,
            next_status: now,
            last_status_file: None,
            last_status_written: None,
            status_file_failed: false,
            down_since: Some(now),
            last_error: None,
            done: false,
        }
    }

    /// Run until shutdown completes; returns the exit code (0 clean, 1 when jobs had to be
    /// abandoned).
    pub fn run(mut self) -> u8 {
        log::info!(
            "robot {} ({}) starting: {}{}, {} worker(s)",
            self.settings.robot_id,
            self.settings.robot_name,
            self.settings
                .ws_url
                .as_deref()
                .map(|u| format!(
                    "WebSocket {} ({} dialect)",
                    redact_url(u),
                    self.settings.dialect.as_str()
                ))
                .unwrap_or_default(),
            if self.rest.is_some() {
                if self.ws.is_some() {
                    " + REST polling"
                } else {
                    "REST polling"
                }
            } else {
                ""
            },
            self.settings.max_concurrent_jobs,
        );
        self.audit.robot_started(serde_json::json!({
            "robot_id": self.settings.robot_id,
            "robot_name": self.settings.robot_name,
            "version": env!("CARGO_PKG_VERSION"),
            "websocket": self.ws.is_some(),
            "rest": self.rest.is_some(),
            "max_concurrent_jobs": self.settings.max_concurrent_jobs,
        }));
        self.recover();
        if let Some(conn) = &mut self.conn {
            let action = conn.handle(Instant::now(), LinkInput::Start, &mut self.rng);
            self.apply_link(action);
        }
        self.send_heartbeat();
        self.publish_status(true);
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
                "{} job(s) did not stop in time; exiting without them (they resume on the next start)",
                self.jobs.len()
            );
        }
        self.done = true;
        self.audit.robot_stopped(if abandoned {
            "shutdown with jobs still running"
        } else {
            "graceful shutdown"
        });
        self.publish_status(true);
        let Agent { ws, rest, pool, .. } = self;
        if let Some(rest) = rest {
            rest.stop(Instant::now() + Duration::from_secs(5));
        }
        if let Some(ws) = ws {
            ws.stop();
        }
        if !abandoned {
            pool.join();
        }
        log::info!("robot stopped");
        u8::from(abandoned)
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.next_heartbeat.min(self.next_status);
        if let Some(c) = self.conn.as_ref().and_then(Connection::poll_timeout) {
            t = t.min(c);
        }
        if let Some(unacked) = self.unacked_deadline() {
            t = t.min(unacked);
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
        let (Some(ws), Some(conn)) = (&self.ws, &mut self.conn) else {
            return;
        };
        match action {
            Some(LinkAction::Connect) => {
                let url = self.settings.ws_url.clone().unwrap_or_default();
                log::debug!("connecting to {}", redact_url(&url));
                ws.send(WsCommand::Connect {
                    url,
                    api_key: self.settings.api_key.clone(),
                });
            }
            Some(LinkAction::Close) => {
                ws.send(WsCommand::Close);
            }
            None => {}
        }
        let mut audits = Vec::new();
        for t in conn.take_transitions() {
            audits.push(t.clone());
            match t {
                Transition::OutageStarted { unauthorized: true } => log::error!(
                    "the orchestrator refuses this robot's credentials (robot_id {}): check api_key; \
                     retrying only at the maximum reconnect delay (next attempt in {:.0} s)",
                    self.settings.robot_id,
                    conn.snapshot(Instant::now()).next_attempt_in_secs.unwrap_or(0.0)
                ),
                Transition::OutageStarted { unauthorized: false } => log::warn!(
                    "orchestrator unreachable{}; reconnecting with backoff (one line per outage)",
                    self.last_error
                        .as_ref()
                        .map(|(why, _)| format!(" ({why})"))
                        .unwrap_or_default()
                ),
                Transition::Restored { attempts, outage } => log::info!(
                    "connected again after {attempts} attempt(s), {:.1} s offline",
                    outage.as_secs_f64()
                ),
            }
        }
        let breaker: Vec<_> = conn.breaker_mut().take_transitions();
        if !breaker.is_empty() {
            let retry_in = conn
                .snapshot(Instant::now())
                .breaker
                .next_attempt_in_secs
                .map(Duration::from_secs_f64);
            for t in &breaker {
                log::info!("{}", t.sentence("connection attempts", retry_in));
            }
        }
        for t in audits {
            match t {
                Transition::OutageStarted { unauthorized: true } => self
                    .audit
                    .access_denied("the orchestrator refused this robot's credentials"),
                Transition::OutageStarted {
                    unauthorized: false,
                } => self.audit.connection_failed("orchestrator unreachable"),
                Transition::Restored { .. } => {}
            }
        }
        for t in breaker {
            self.audit.circuit_state_changed("orchestrator", t.to);
        }
    }

    fn link_input(&mut self, input: LinkInput) {
        if let Some(conn) = &mut self.conn {
            let action = conn.handle(Instant::now(), input, &mut self.rng);
            self.apply_link(action);
        }
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Ws(ws) => self.on_ws(ws),
            Event::Rest(rest) => self.on_rest(rest),
            Event::Job(job) => self.on_job(job),
            Event::Control(Control::Pause) => self.set_paused(true, "the tray"),
            Event::Control(Control::Resume) => self.set_paused(false, "the tray"),
            Event::Shutdown { graceful, source } => self.begin_shutdown(graceful, source),
        }
    }

    fn closing(&self) -> bool {
        self.stopping
            .as_ref()
            .is_some_and(|s| s.closing_since.is_some())
    }

    // ---- links -----------------------------------------------------------------------------

    fn on_ws(&mut self, ev: WsEvent) {
        match ev {
            WsEvent::Connected => {
                self.connected = true;
                self.note_links();
                self.delivery = WsDelivery {
                    backlog: true,
                    ..WsDelivery::default()
                };
                self.link_input(LinkInput::Connected);
                log::info!(
                    "connected to the orchestrator as {}",
                    self.settings.robot_id
                );
                self.audit.connection_established();
                let register = Outbound::Register {
                    robot_name: self.settings.robot_name.clone(),
                    environment: self.settings.environment.clone(),
                    capabilities: capabilities(self.settings.max_concurrent_jobs),
                };
                self.send_now(&register);
                self.send_heartbeat();
                while let Some(frame) = self.control.pop() {
                    self.ws_send(frame);
                }
                self.sync_ws();
                if self.closing() {
                    self.close_ws();
                }
            }
            WsEvent::ConnectFailed { error, auth } => {
                self.connected = false;
                self.note_links();
                log::debug!("connect failed: {error}");
                self.note_error(format!("cannot connect to the orchestrator: {error}"));
                if self.closing() {
                    self.done = true;
                    return;
                }
                self.link_input(LinkInput::ConnectFailed { auth });
            }
            WsEvent::Closed { code, reason } => {
                let auth = matches!(code, Some(4001 | 4003));
                self.connected = false;
                self.note_links();
                self.note_error(format!(
                    "connection closed: {reason}{}",
                    code.map(|c| format!(" (code {c})")).unwrap_or_default()
                ));
                self.check_frame_refused(code);
                self.delivery.inflight.clear();
                log::info!(
                    "connection closed: {reason}{}",
                    code.map(|c| format!(" (code {c})")).unwrap_or_default()
                );
                self.audit.connection_lost(&reason);
                if self.closing() {
                    self.done = true;
                    return;
                }
                self.link_input(LinkInput::Closed { auth });
            }
            WsEvent::SendFailed(frame) => {
                // Outbox entries stay in the store and are sent again after the reconnect; other
                // frames wait in memory, except a stale register or heartbeat: a fresh one goes
                // out on connect, and a heartbeat the robot did not count would be answered with
                // an acknowledgement taken for a marker's (settling entries the orchestrator
                // never read).
                if frame.kind != Kind::Result && !is_presence(&frame) {
                    let (kind, job_id) = (frame.kind, frame.job_id.clone());
                    let _ = self.control.push(kind, job_id.as_deref(), frame);
                }
            }
            WsEvent::Frame(text) => match protocol::parse_inbound(&text) {
                Ok(msg) => self.on_message(msg),
                Err(e) => match protocol::rejectable_assignment(&text, &e) {
                    Some(job_id) => self.on_malformed_assign(&job_id, &e),
                    None => log::warn!("ignored a frame from the orchestrator: {e}"),
                },
            },
        }
    }

    fn on_rest(&mut self, ev: RestEvent) {
        match ev {
            RestEvent::Claimed { job, recorded } => self.on_claimed(*job, recorded),
            RestEvent::LeaseKept(id) => {
                if self.verifying.remove(&id) {
                    log::info!("job {id}: lease confirmed; it resumes");
                    self.waiting.push_back(id);
                    self.start_waiting();
                }
            }
            RestEvent::LeaseLost(id) => self.on_lease_lost(&id),
            RestEvent::Link(link) => {
                self.rest_reachable = Some(link == RestLink::Reachable);
                self.rest_refused = link == RestLink::Refused;
                self.note_links();
                match link {
                    RestLink::Reachable => {}
                    RestLink::Unreachable => {
                        self.note_error("the REST orchestrator is unreachable")
                    }
                    RestLink::Refused => {
                        self.note_error("the REST orchestrator refuses this robot's API key");
                        self.audit
                            .access_denied("the REST orchestrator refused this robot's API key");
                    }
                }
                self.publish_soon();
            }
            // The outbox shrank: status readers see it at once.
            RestEvent::Delivered(_) => self.publish_soon(),
        }
    }

    fn on_message(&mut self, msg: Inbound) {
        log::debug!("received {}", msg.kind());
        match msg {
            Inbound::RegisterAck { success: true, .. } => {
                log::debug!("registration accepted");
                self.audit.robot_registered();
            }
            Inbound::RegisterAck {
                success: false,
                message,
            } => {
                log::error!(
                    "the orchestrator refused the registration: {}",
                    message.unwrap_or_else(|| "no reason given".into())
                );
                self.link_input(LinkInput::RegistrationRefused);
            }
            Inbound::HeartbeatAck => self.on_heartbeat_ack(),
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
                        "queued_messages": self.control.len(),
                        "outbox": self.store.lock().outbox_len(None).unwrap_or(0),
                        "waiting_jobs": self.waiting.len(),
                        "link": self.conn.as_ref().map(|c| c.snapshot(Instant::now())),
                    }),
                };
                self.send(Outbound::StatusResponse(info), Kind::Control);
            }
            Inbound::Pause => self.set_paused(true, "the orchestrator"),
            Inbound::Resume => self.set_paused(false, "the orchestrator"),
            Inbound::Shutdown { graceful } => self.begin_shutdown(graceful, "the orchestrator"),
            Inbound::Ping => self.send(Outbound::Pong, Kind::Control),
            Inbound::Error { code, message } => {
                log::warn!(
                    "orchestrator error{}: {message}",
                    code.map(|c| format!(" {c}")).unwrap_or_default()
                )
            }
            Inbound::Unknown { msg_type } => {
                let seen = &mut self.unknown_types_seen;
                if seen.len() < MAX_UNKNOWN_TYPES && !seen.contains(&msg_type) {
                    log::debug!("ignored unknown message type {msg_type:?}");
                    seen.insert(msg_type);
                    if seen.len() == MAX_UNKNOWN_TYPES {
                        log::debug!(
                            "{MAX_UNKNOWN_TYPES} distinct unknown message types seen; further ones \
                             are ignored without a log line"
                        );
                    }
                }
            }
        }
    }

    fn sample_resources(&mut self) {
        let f = self.host.sample();
        self.figures = f;
        self.metrics
            .set_resources(crate::observe::metrics::Resources {
                process_cpu_percent: f.process_cpu_percent,
                process_memory_mb: f.process_memory_mb,
                system_cpu_percent: f.cpu_percent,
                system_memory_percent: f.memory_percent,
            });
    }

    fn set_paused(&mut self, paused: bool, by: &str) {
        if paused {
            log::info!("paused by {by}: not taking new jobs");
        } else {
            log::info!("resumed by {by}: taking jobs again");
        }
        self.paused = paused;
        self.update_rest_capacity();
        self.send_heartbeat();
    }

    // ---- sending ---------------------------------------------------------------------------

    fn ws_send(&mut self, frame: Frame) {
        if frame.kind != Kind::Result && frame.text.len() > self.frame_limit {
            // Results are bounded when encoded (sent truncated); the others are lossy.
            log::warn!(
                "a {:?} message of {} bytes is over the frame limit of {} bytes (max_frame_mb); \
                 it is dropped",
                frame.kind,
                frame.text.len(),
                self.frame_limit
            );
            return;
        }
        if frame.kind == Kind::Result {
            if let Some(job) = frame.job_id.as_deref().and_then(|id| self.jobs.get_mut(id)) {
                job.result_sent = true;
            }
        }
        self.delivery.largest_sent = self.delivery.largest_sent.max(frame.text.len());
        self.frame_refusals.on_sent(frame.text.len());
        if let Some(ws) = &self.ws {
            ws.send(WsCommand::Send(frame));
        }
    }

    /// Send a control message now, or queue it in memory while disconnected.
    fn send(&mut self, msg: Outbound, kind: Kind) {
        if self.ws.is_none() {
            return;
        }
        let job_id = msg.job_id().map(str::to_string);
        let text = protocol::encode(&msg, self.settings.dialect, &self.settings.robot_id);
        let frame = Frame {
            text,
            kind,
            job_id: job_id.clone(),
        };
        if self.connected && self.control.is_empty() {
            self.ws_send(frame);
        } else {
            let _ = self.control.push(kind, job_id.as_deref(), frame);
        }
    }

    fn send_now(&mut self, msg: &Outbound) {
        let text = protocol::encode(msg, self.settings.dialect, &self.settings.robot_id);
        self.ws_send(Frame {
            text,
            kind: Kind::Control,
            job_id: None,
        });
    }

    fn metrics(&self) -> serde_json::Value {
        let summary = self.metrics.get_summary(self.queues());
        let store = self.store.lock();
        serde_json::json!({
            "summary": summary,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "queued_messages": self.control.len(),
            "outbox": store.outbox_len(None).unwrap_or(0),
            "waiting_jobs": self.waiting.len(),
            "jobs_done": self.jobs_done,
            "store": {
                "durable": store.is_durable(),
                "damaged": store.damage().map(|d| d.summary()),
                "full_commits": store.counters().full_commits,
            },
            "link": self.conn.as_ref().map(|c| c.snapshot(Instant::now())),
            "rest_reachable": self.rest_reachable,
            "jobs": self.jobs.iter().map(|(id, j)| serde_json::json!({
                "job_id": id, "progress": j.progress(), "current_node": j.current_node(),
                "running_seconds": j.started.elapsed().as_secs(),
                "state": j.state_name(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The periodic heartbeat, on every link.
    fn send_heartbeat(&mut self) {
        self.next_heartbeat = Instant::now() + self.settings.heartbeat_interval;
        self.sample_resources();
        if let Some(rest) = &self.rest {
            let metrics = self.metrics();
            rest.send(RestCommand::Heartbeat {
                status: self.status(),
                metrics: metrics.as_object().cloned().unwrap_or_default(),
            });
        }
        self.send_ws_heartbeat();
    }

    /// A WebSocket heartbeat (also the marker that acknowledges outbox entries sent before it).
    /// Not queued while disconnected: a stale one says nothing.
    fn send_ws_heartbeat(&mut self) {
        if !self.connected {
            return;
        }
        let figures = self.figures;
        let info = HeartbeatInfo {
            status: self.status(),
            current_jobs: self.jobs.len(),
            active_job_ids: self.job_ids(),
            cpu_percent: figures.cpu_percent,
            memory_percent: figures.memory_percent,
            memory_mb: figures.process_memory_mb,
            disk_percent: 0.0,
            metrics: self.metrics(),
        };
        self.send_now(&Outbound::Heartbeat(info));
        self.delivery.hb_sent += 1;
    }

    // ---- timers and shutdown -----------------------------------------------------------------

    fn on_timers(&mut self, now: Instant) {
        if let Some(conn) = &mut self.conn {
            if conn.poll_timeout().is_some_and(|t| now >= t) {
                let action = conn.handle_timeout(now);
                self.apply_link(action);
            }
        }
        if now >= self.next_heartbeat {
            self.flush_logs();
            self.send_heartbeat();
        }
        self.warn_unacked(now);
        self.drive_shutdown(now);
        if now >= self.next_status {
            self.publish_status(false);
        }
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
        self.update_rest_capacity();
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
                        "stopping {} job(s) at their next node; their checkpoints stay and they resume on the next start",
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
            self.release_unstarted();
            self.flush_logs();
            if self.connected {
                self.sync_ws();
                if self.delivery.inflight.is_empty() {
                    self.close_ws();
                }
            } else {
                self.link_input(LinkInput::Stop);
                self.done = true;
            }
            return;
        }
        let since = stop.closing_since.unwrap_or(now);
        // Wait (briefly) for the orchestrator to acknowledge what was just sent, then close.
        if self.connected
            && !self.delivery.inflight.is_empty()
            && now < since + Duration::from_secs(2)
        {
            return;
        }
        if self.connected {
            self.close_ws();
        }
        if now >= since + Duration::from_secs(7) {
            log::warn!("the orchestrator did not finish the close handshake in time");
            self.done = true;
        }
        if self.ws.is_none() {
            self.done = true;
        }
    }

    /// Start the close handshake (once per connection).
    fn close_ws(&mut self) {
        if self.delivery.close_sent {
            return;
        }
        if let Some(ws) = &self.ws {
            ws.send(WsCommand::Close);
            self.delivery.close_sent = true;
        }
    }
}

/// Whether a control frame is a `register` or a heartbeat (`heartbeat`, `status_update`).
fn is_presence(frame: &Frame) -> bool {
    if frame.kind != Kind::Control {
        return false;
    }
    let msg_type = serde_json::from_str::<serde_json::Value>(&frame.text)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string));
    matches!(
        msg_type.as_deref(),
        Some("register" | "heartbeat" | "status_update")
    )
}

/// What this robot can do (sent with `register` on both links).
pub fn capabilities(max_concurrent_jobs: usize) -> Capabilities {
    Capabilities {
        types: vec!["headless".into()],
        max_concurrent_jobs,
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

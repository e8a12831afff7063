//! The rest-io thread: REST polling against the orchestrator's API v1.
//!
//! One thread owns the [`RestClient`] and makes every blocking call, so the agent never waits on
//! the network. It:
//! - **claims** jobs while the agent has free slots (`limit: 1`, adaptive interval: ×1.5 per
//!   empty poll up to `poll_max_interval`, reset by a claim, at least `Retry-After` on a 429) and
//!   **records each claimed job in the store before anything else** (FULL commit), then hands it
//!   to the agent. A job that cannot be recorded (disk full) is released at once;
//! - **verifies** the leases of jobs recovered at start-up before they resume (extend-lease:
//!   200 → resume, 409 → the job is no longer ours; a refused key is asked again until it is
//!   accepted, never taken for a lost lease);
//! - **renews** the lease of every running REST job at a third of the lease, but at least every
//!   10 s ([`lease_renewal_interval`]: a server may hold a job for less than it was asked); a 409
//!   means the job was cancelled or taken away: the agent stops it and nothing is reported;
//! - **answers unusable claims**: a claimed job whose workflow or variables cannot be read is
//!   failed on the orchestrator (`fail`, naming what is wrong), never left `running` there;
//! - **delivers** the REST outbox in order (complete/fail/progress; 2xx or 409 delivered, a 4xx
//!   other than 401/403/409/429 refused for good, anything else retried with backoff and jitter:
//!   a refused key keeps the reports until it is accepted);
//! - sends **progress** of running jobs at most once a second per job (latest value only), and
//!   the latest once more when a job ends, before its result (so the last word is 100 % for a
//!   completed run, never a stale figure after the result);
//! - **registers** the robot and sends **heartbeats** and status changes (a 503 register — an
//!   orchestrator without a database — is tolerated). Robot status, heartbeat and job progress
//!   are optional: a 503 on one of them means "not supported by this orchestrator" (its
//!   in-memory mode answers "Database not available"): it is noted once, the call is left alone
//!   for [`UNSUPPORTED_FOR`], and the link stays reachable. On a stop, the last robot call is the
//!   `offline` status: a heartbeat after it would flip the robot back to online;
//! - **reconciles orphans** before the first claim and after a claim whose answer may have been
//!   lost: a job the orchestrator lists as claimed by this robot (`GET /api/v1/metrics/jobs`) but
//!   that the store has no record of was claimed by a request whose answer never arrived (a crash
//!   between the answer and the record, a dropped connection); it is released so it runs
//!   (the server never recovers an expired lease, so without this it would hang forever);
//! - on `Stop`, flushes the outbox until its deadline and ends.
//!
//! **Link state** ([`RestLink`], reported on change): `Reachable` while the server answers;
//! `Unreachable` on network errors and 502/503/504 of the calls that matter (one warn line per
//! outage); `Refused` when the server answers 401/403 to a claim: one error line and a
//! `security.access_denied` audit per outage, and claims only every `poll_max_interval` until a
//! claim is accepted again. A 429 is neither: the robot is rate limited, waits the server's
//! `Retry-After` (capped, see [`PollInterval`]) and says so once per episode.

use crate::link::bound;
use crate::link::protocol::{Capabilities, RobotStatus};
use crate::link::rest::{
    lease_renewal_interval, ClaimedJob, LeaseOutcome, PollInterval, PollOutcome, Registration,
    RestClient, RestError,
};
use crate::store::jobs::{Delivery, NewJob, OfflineQueue, OutboxEntry, Recorded, Report, Route};
use crate::store::SharedStore;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::{HashMap, VecDeque};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Settings of the REST link.
#[derive(Clone, Debug)]
pub struct RestIoSettings {
    /// Shortest wait between claims when the queue is empty.
    pub poll_interval: Duration,
    /// Longest wait between claims.
    pub poll_max_interval: Duration,
    /// The lease asked for at claim and on each renewal (renewed at a third of it, at least
    /// every 10 s).
    pub lease: Duration,
    /// Sent with `register`.
    pub capabilities: Capabilities,
    /// The largest result body to send (`max_frame_mb`); a larger result goes out truncated.
    pub max_body_bytes: usize,
}

/// What the agent asks of the rest-io thread.
#[derive(Debug)]
pub enum RestCommand {
    /// Free job slots (0: do not claim), as the agent saw them after handling `claims_seen`
    /// [`RestEvent::Claimed`] events (claims it has not seen yet are subtracted here).
    Capacity {
        /// Free slots.
        free: usize,
        /// Claimed events the agent has handled.
        claims_seen: u64,
    },
    /// Check the leases of jobs recovered at start-up; answered per job with
    /// [`RestEvent::LeaseKept`] or [`RestEvent::LeaseLost`].
    Verify(Vec<String>),
    /// Stop renewing it (settled, or held by a shutdown).
    Untrack(String),
    /// The latest progress of a running job.
    Progress {
        /// Job id.
        job_id: String,
        /// 0-100.
        progress: u8,
        /// Node that completed last.
        current_node: Option<String>,
        /// Human summary.
        message: Option<String>,
    },
    /// The REST outbox has new entries.
    Flush,
    /// Give back claimed jobs that will not run (`release`), then forget them locally.
    Release(Vec<String>),
    /// A heartbeat with the robot's status and metrics.
    Heartbeat {
        /// Robot status.
        status: RobotStatus,
        /// Metrics object.
        metrics: serde_json::Map<String, serde_json::Value>,
    },
    /// Deliver what the outbox holds until `deadline`, then end the thread.
    Stop {
        /// When to give up.
        deadline: Instant,
    },
}

/// What the rest-io thread reports.
#[derive(Debug)]
pub enum RestEvent {
    /// A job was claimed and recorded in the store (`recorded` says what the store knew).
    Claimed {
        /// The claim.
        job: Box<ClaimedJob>,
        /// New, a retry, or known (a duplicate).
        recorded: Recorded,
    },
    /// A recovered job's lease is still ours: it may resume.
    LeaseKept(String),
    /// The job's lease is lost (409): stop it, report nothing.
    LeaseLost(String),
    /// The state of the REST link changed.
    Link(RestLink),
    /// Outbox entries were delivered (the agent refreshes its counts).
    Delivered(usize),
}

/// The state of the REST link, as the rest-io thread sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestLink {
    /// The orchestrator answers.
    Reachable,
    /// Network errors or 502/503/504: retried with backoff.
    Unreachable,
    /// The orchestrator refuses this robot's API key (401/403 on claim).
    Refused,
}

/// An optional call: a 503 means the orchestrator does not support it (no database).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Optional {
    Status,
    Heartbeat,
    Progress,
}

impl Optional {
    fn name(self) -> &'static str {
        match self {
            Optional::Status => "robot status updates",
            Optional::Heartbeat => "robot heartbeats",
            Optional::Progress => "job progress",
        }
    }
}

/// How long an optional call the orchestrator does not support is left alone.
pub const UNSUPPORTED_FOR: Duration = Duration::from_secs(600);

/// The agent's handle on the rest-io thread.
pub struct RestHandle {
    tx: Sender<RestCommand>,
    thread: Option<JoinHandle<()>>,
}

impl RestHandle {
    /// Start the thread. `wrap` turns a [`RestEvent`] into the agent's event type.
    pub fn start<E: Send + 'static>(
        client: RestClient,
        settings: RestIoSettings,
        store: SharedStore,
        events: Sender<E>,
        wrap: fn(RestEvent) -> E,
    ) -> std::io::Result<RestHandle> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("rest-io".into())
            .spawn(move || {
                let mut io = RestIo::new(client, settings, store, move |e| {
                    let _ = events.send(wrap(e));
                });
                io.run(&rx);
            })?;
        Ok(RestHandle {
            tx,
            thread: Some(thread),
        })
    }

    /// Send a command (ignored once the thread ended).
    pub fn send(&self, cmd: RestCommand) {
        let _ = self.tx.send(cmd);
    }

    /// Ask the thread to flush and end by `deadline`, and wait for it (a little past the
    /// deadline at most: one request in flight is bounded by the client's timeout).
    pub fn stop(mut self, deadline: Instant) {
        let _ = self.tx.send(RestCommand::Stop { deadline });
        if let Some(t) = self.thread.take() {
            let limit = deadline + Duration::from_secs(2);
            while !t.is_finished() && Instant::now() < limit {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                log::warn!("the REST link did not stop in time; leaving it behind");
            }
        }
    }
}

struct ProgressSlot {
    progress: u8,
    current_node: Option<String>,
    message: Option<String>,
    dirty: bool,
    last_sent: Option<Instant>,
}

/// Minimum time between two progress calls for one job.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

struct RestIo<F: FnMut(RestEvent)> {
    client: RestClient,
    settings: RestIoSettings,
    store: SharedStore,
    outbox: OfflineQueue,
    emit: F,
    rng: fastrand::Rng,
    capacity: usize,
    /// Claimed events sent to the agent.
    claims_made: u64,
    poll: PollInterval,
    next_claim: Instant,
    leases: HashMap<String, Instant>,
    verify: VecDeque<String>,
    verify_at: Instant,
    progress: HashMap<String, ProgressSlot>,
    outbox_at: Option<Instant>,
    outbox_failures: u32,
    heartbeat: Option<(RobotStatus, serde_json::Map<String, serde_json::Value>)>,
    last_status: Option<RobotStatus>,
    registered: bool,
    /// Orphan reconciliation: due, and whether the server supports it.
    orphans_due: bool,
    orphans_supported: bool,
    link: Option<RestLink>,
    /// Optional calls not supported by this orchestrator, until when; and those noted once.
    unsupported: HashMap<Optional, Instant>,
    noted_unsupported: Vec<Optional>,
    /// A 429 episode is in progress (said once).
    rate_limited: bool,
    /// Lease checks of recovered jobs meet a refused key (said once per episode).
    verify_refused: bool,
    /// Unusable claimed jobs whose `fail` is still to be delivered: (job id, message).
    bad_jobs: VecDeque<(String, String)>,
    stop_at: Option<Instant>,
    /// The final `offline` status was sent (or is not to be sent).
    said_offline: bool,
}

impl<F: FnMut(RestEvent)> RestIo<F> {
    fn new(client: RestClient, settings: RestIoSettings, store: SharedStore, emit: F) -> Self {
        let now = Instant::now();
        RestIo {
            poll: PollInterval::new(settings.poll_interval, settings.poll_max_interval),
            outbox: OfflineQueue::new(store.clone(), Route::Rest),
            client,
            settings,
            store,
            emit,
            rng: fastrand::Rng::new(),
            capacity: 0,
            claims_made: 0,
            next_claim: now,
            leases: HashMap::new(),
            verify: VecDeque::new(),
            verify_at: now,
            progress: HashMap::new(),
            outbox_at: Some(now),
            outbox_failures: 0,
            heartbeat: None,
            last_status: None,
            registered: false,
            orphans_due: true,
            orphans_supported: true,
            link: None,
            unsupported: HashMap::new(),
            noted_unsupported: Vec::new(),
            rate_limited: false,
            verify_refused: false,
            bad_jobs: VecDeque::new(),
            stop_at: None,
            said_offline: false,
        }
    }

    fn renew_every(&self) -> Duration {
        lease_renewal_interval(self.settings.lease)
    }

    fn run(&mut self, rx: &Receiver<RestCommand>) {
        loop {
            let now = Instant::now();
            let wait = self.next_wake(now).saturating_duration_since(now);
            match rx.recv_timeout(wait) {
                Ok(cmd) => {
                    self.command(cmd);
                    while let Ok(cmd) = rx.try_recv() {
                        self.command(cmd);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if self.stop_at.is_none() {
                        self.stop_at = Some(Instant::now() + Duration::from_secs(5));
                    }
                }
            }
            if let Some(deadline) = self.stop_at {
                self.say_offline();
                self.flush_outbox(true);
                if self.outbox_at.is_none() || Instant::now() >= deadline {
                    let left = self.outbox.len().unwrap_or(0);
                    if left > 0 {
                        log::warn!("{left} REST outbox entr(y/ies) not delivered before the shutdown deadline; they are delivered on the next start");
                    }
                    return;
                }
                std::thread::sleep(
                    self.outbox_at
                        .map_or(Duration::ZERO, |t| {
                            t.saturating_duration_since(Instant::now())
                        })
                        .min(deadline.saturating_duration_since(Instant::now()))
                        .min(Duration::from_millis(200)),
                );
                continue;
            }
            self.work();
        }
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut t = now + Duration::from_secs(60);
        if self.stop_at.is_some() {
            return now;
        }
        if self.capacity > 0 {
            t = t.min(self.next_claim);
        }
        if let Some(o) = self.outbox_at {
            t = t.min(o);
        }
        if !self.verify.is_empty() {
            t = t.min(self.verify_at);
        }
        if let Some(l) = self.leases.values().min() {
            t = t.min(*l);
        }
        if self.heartbeat.is_some() {
            t = now;
        }
        for slot in self.progress.values() {
            if slot.dirty {
                t = t.min(slot.last_sent.map_or(now, |s| s + PROGRESS_EVERY));
            }
        }
        t
    }

    fn command(&mut self, cmd: RestCommand) {
        match cmd {
            RestCommand::Capacity { free, claims_seen } => {
                let unseen = self.claims_made.saturating_sub(claims_seen) as usize;
                let n = free.saturating_sub(unseen);
                if n > 0 && self.capacity == 0 && self.claim_may_come_early() {
                    // A slot freed up: poll now rather than at the end of an idle interval.
                    self.next_claim = self.next_claim.min(Instant::now());
                }
                self.capacity = n;
            }
            RestCommand::Verify(ids) => self.verify.extend(ids),
            RestCommand::Untrack(id) => {
                self.leases.remove(&id);
                self.send_progress_of(&id);
                self.progress.remove(&id);
            }
            RestCommand::Progress {
                job_id,
                progress,
                current_node,
                message,
            } => {
                if !self.leases.contains_key(&job_id) {
                    return;
                }
                let slot = self.progress.entry(job_id).or_insert(ProgressSlot {
                    progress,
                    current_node: None,
                    message: None,
                    dirty: true,
                    last_sent: None,
                });
                slot.progress = progress;
                slot.current_node = current_node;
                slot.message = message;
                slot.dirty = true;
            }
            RestCommand::Flush => {
                // New entries go at once, unless a failing delivery is backing off.
                if self.outbox_failures == 0 || self.outbox_at.is_none() {
                    self.outbox_at = Some(Instant::now());
                }
            }
            RestCommand::Release(ids) => {
                for id in ids {
                    self.leases.remove(&id);
                    match self.client.release(&id) {
                        Ok(()) => {
                            log::info!("job {id}: given back to the orchestrator (release)");
                            if let Err(e) = self.store.lock().forget_job(&id) {
                                log::warn!("job {id}: released but cannot forget it locally: {e}");
                            }
                        }
                        Err(e) => log::warn!(
                            "job {id}: cannot give it back ({e}); it resumes on the next start"
                        ),
                    }
                }
            }
            RestCommand::Heartbeat { status, metrics } => {
                self.heartbeat = Some((status, metrics));
            }
            RestCommand::Stop { deadline } => {
                self.stop_at = Some(deadline);
                self.outbox_at = Some(Instant::now());
                self.outbox_failures = 0;
            }
        }
    }

    /// Whether the next claim may be brought forward when a slot frees up: not while a 429's
    /// `Retry-After` or a refused key's wait is in force (those waits are the server's, not an
    /// idle interval).
    fn claim_may_come_early(&self) -> bool {
        !self.rate_limited && self.link != Some(RestLink::Refused)
    }

    fn work(&mut self) {
        let now = Instant::now();
        if !self.verify.is_empty() && now >= self.verify_at {
            self.verify_leases();
        }
        if self.outbox_at.is_some_and(|t| now >= t) {
            self.flush_outbox(false);
        }
        self.renew_leases();
        self.send_progress();
        if let Some((status, metrics)) = self.heartbeat.take() {
            self.send_heartbeat(status, &metrics);
        }
        if self.capacity > 0 && Instant::now() >= self.next_claim {
            if self.orphans_due && self.orphans_supported {
                self.reconcile_orphans();
            }
            self.claim();
        }
    }

    fn set_link(&mut self, link: RestLink, why: Option<&RestError>) {
        if self.link == Some(link) {
            return;
        }
        let why = why.map_or_else(|| "no answer".to_string(), |e| e.to_string());
        match link {
            RestLink::Reachable if self.link == Some(RestLink::Refused) => log::info!(
                "the REST orchestrator {} accepts this robot's API key again",
                self.client.base_url()
            ),
            RestLink::Reachable => {
                log::info!("REST orchestrator {} reachable", self.client.base_url())
            }
            RestLink::Unreachable => log::warn!(
                "REST orchestrator {} unreachable: {why}; retrying with backoff",
                self.client.base_url(),
            ),
            RestLink::Refused => log::error!(
                "the REST orchestrator {} refuses this robot's API key ({why}); claiming only \
                 every {} s until it is accepted",
                self.client.base_url(),
                self.settings.poll_max_interval.as_secs_f64()
            ),
        }
        self.link = Some(link);
        (self.emit)(RestEvent::Link(link));
    }

    /// Note the result of a call: reachability and, for errors, whether to retry. A refused key
    /// is set and cleared by claims only (other calls may check the key differently, and the
    /// state must not flap), and a 429 changes nothing (the server answered; the caller waits).
    fn observe<T>(&mut self, r: &Result<T, RestError>) {
        let refused = self.link == Some(RestLink::Refused);
        match r {
            Err(RestError::Auth { .. } | RestError::RateLimited { .. }) => {}
            _ if refused => {}
            Ok(_) => self.set_link(RestLink::Reachable, None),
            Err(e) if e.is_retryable() => self.set_link(RestLink::Unreachable, Some(e)),
            Err(_) => self.set_link(RestLink::Reachable, None),
        }
    }

    /// Whether an optional call may be made now (not known to be unsupported).
    fn supported(&self, call: Optional) -> bool {
        self.unsupported
            .get(&call)
            .is_none_or(|until| Instant::now() >= *until)
    }

    /// Note the result of an optional call: a 503 means the orchestrator does not support it
    /// (noted once, left alone for [`UNSUPPORTED_FOR`]; the link stays reachable). True when
    /// the call was unsupported.
    fn observe_optional<T>(&mut self, call: Optional, r: &Result<T, RestError>) -> bool {
        match r {
            Err(e) if e.is_unavailable() => {
                if self.noted_unsupported.contains(&call) {
                    log::debug!("{} still not supported: {e}", call.name());
                } else {
                    log::info!(
                        "the orchestrator does not support {} ({e}); not sending them for {} s \
                         (jobs are not affected)",
                        call.name(),
                        UNSUPPORTED_FOR.as_secs()
                    );
                    self.noted_unsupported.push(call);
                }
                self.unsupported
                    .insert(call, Instant::now() + UNSUPPORTED_FOR);
                if self.link != Some(RestLink::Refused) {
                    self.set_link(RestLink::Reachable, None);
                }
                true
            }
            _ => {
                self.observe(r);
                false
            }
        }
    }

    fn backoff(&mut self, failures: u32) -> Duration {
        let cap = Duration::from_secs(30);
        let base = Duration::from_millis(250).saturating_mul(1 << failures.min(7));
        let max = base.min(cap);
        // Full jitter, at least 50 ms.
        Duration::from_millis(50) + max.mul_f64(self.rng.f64())
    }

    fn verify_leases(&mut self) {
        while let Some(id) = self.verify.front().cloned() {
            let r = self.client.extend_lease(&id, self.settings.lease);
            self.observe(&r);
            if r.is_ok() {
                self.verify_refused = false;
            }
            match r {
                Ok(LeaseOutcome::Extended) => {
                    self.verify.pop_front();
                    self.note_lease(&id);
                    self.leases
                        .insert(id.clone(), Instant::now() + self.renew_every());
                    (self.emit)(RestEvent::LeaseKept(id));
                }
                Ok(LeaseOutcome::Lost) => {
                    self.verify.pop_front();
                    log::warn!("job {id}: its lease was lost while the robot was down (409); it does not resume");
                    (self.emit)(RestEvent::LeaseLost(id));
                }
                Err(e) if e.is_retryable() => {
                    self.verify_at = Instant::now() + self.backoff(2);
                    return;
                }
                Err(e) if e.is_auth() => {
                    // A refused key says nothing about the lease, and the key may be fixed:
                    // giving the job up would leave it `running` on the server for good (only
                    // this robot can finish or release it). Ask again, slowly.
                    if !self.verify_refused {
                        log::warn!(
                            "job {id}: the orchestrator refuses this robot's API key while its lease \
                             is checked ({e}); it resumes once the key is accepted"
                        );
                        self.verify_refused = true;
                    }
                    self.verify_at =
                        Instant::now() + self.backoff(2).max(self.settings.poll_max_interval);
                    return;
                }
                Err(e) => {
                    // The server refuses the call for good (e.g. the job is unknown there).
                    self.verify.pop_front();
                    log::warn!("job {id}: cannot verify its lease ({e}); it does not resume");
                    (self.emit)(RestEvent::LeaseLost(id));
                }
            }
        }
    }

    fn note_lease(&mut self, job_id: &str) {
        let end = crate::store::now_secs() + self.settings.lease.as_secs_f64();
        if let Err(e) = self.store.lock().set_lease(job_id, end) {
            log::debug!("job {job_id}: cannot record its lease: {e}");
        }
    }

    fn renew_leases(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let r = self.client.extend_lease(&id, self.settings.lease);
            self.observe(&r);
            match r {
                Ok(LeaseOutcome::Extended) => {
                    self.note_lease(&id);
                    self.leases.insert(id, Instant::now() + self.renew_every());
                }
                Ok(LeaseOutcome::Lost) => {
                    log::warn!("job {id}: lease lost (409: cancelled or taken away); stopping it, nothing is reported");
                    self.leases.remove(&id);
                    self.progress.remove(&id);
                    (self.emit)(RestEvent::LeaseLost(id));
                }
                Err(e) => {
                    // The lease is not recovered by the server: keep trying well before it ends.
                    log::debug!("job {id}: lease renewal failed: {e}");
                    let retry = Instant::now() + self.backoff(1);
                    self.leases.insert(id, retry);
                }
            }
        }
    }

    fn send_progress(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .progress
            .iter()
            .filter(|(_, s)| s.dirty && s.last_sent.is_none_or(|t| now >= t + PROGRESS_EVERY))
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.send_progress_of(&id);
        }
    }

    /// Send the job's latest progress if it was not sent yet. Called by the throttled loop, and
    /// unthrottled when the job ends (before its result is delivered), so the last word on
    /// progress is the final one (100 % for a completed run) and never comes after the result.
    fn send_progress_of(&mut self, id: &str) {
        let Some(slot) = self.progress.get_mut(id) else {
            return;
        };
        if !slot.dirty {
            return;
        }
        slot.dirty = false;
        slot.last_sent = Some(Instant::now());
        let (p, node, msg) = (
            slot.progress,
            slot.current_node.clone(),
            slot.message.clone(),
        );
        if !self.supported(Optional::Progress) {
            return;
        }
        // Progress is lossy: a failure is not retried (the next update replaces it).
        let r = self.client.progress(id, p, node.as_deref(), msg.as_deref());
        if let Err(e) = &r {
            log::debug!("job {id}: progress not delivered: {e}");
        }
        self.observe_optional(Optional::Progress, &r);
    }

    fn send_heartbeat(
        &mut self,
        status: RobotStatus,
        metrics: &serde_json::Map<String, serde_json::Value>,
    ) {
        if !self.registered {
            let r = self.client.register(&self.settings.capabilities);
            self.observe(&r);
            match r {
                Ok(Registration::Registered(_)) => {
                    log::info!("registered with the REST orchestrator");
                    self.registered = true;
                }
                Ok(Registration::Unavailable { message }) => {
                    log::info!(
                        "the orchestrator keeps no robot registry ({message}); polling anyway"
                    );
                    self.registered = true;
                }
                Err(e) => {
                    log::debug!("register failed: {e}");
                    return;
                }
            }
        }
        // Stopping: the heartbeat goes first and the `offline` status last (a heartbeat after
        // it would flip the robot back to online).
        if status != RobotStatus::Stopping {
            self.send_status(status);
        }
        if self.supported(Optional::Heartbeat) {
            let r = self.client.heartbeat(status, metrics);
            if let Err(e) = &r {
                log::debug!("REST heartbeat failed: {e}");
            }
            self.observe_optional(Optional::Heartbeat, &r);
        }
        if status == RobotStatus::Stopping {
            self.last_status = None;
            self.send_status(status);
            self.said_offline = true;
        }
    }

    /// `PUT /status` when the status changed (and the orchestrator supports it).
    fn send_status(&mut self, status: RobotStatus) {
        if self.last_status == Some(status) || !self.supported(Optional::Status) {
            return;
        }
        let r = self.client.update_status(status);
        if r.is_ok() {
            self.last_status = Some(status);
        }
        self.observe_optional(Optional::Status, &r);
    }

    /// Once, when the thread is asked to stop: the robot's last word to the registry is
    /// `offline` (a heartbeat still pending is dropped: it would say online again).
    fn say_offline(&mut self) {
        if self.said_offline {
            return;
        }
        self.said_offline = true;
        self.heartbeat = None;
        if self.registered {
            self.last_status = None;
            self.send_status(RobotStatus::Stopping);
        }
    }

    fn deliver(&mut self, entry: &OutboxEntry) -> Delivery {
        let Some(job_id) = entry.job_id.as_deref() else {
            return Delivery::Refused;
        };
        if matches!(
            entry.report,
            Report::Complete { .. } | Report::Failed { .. }
        ) {
            self.send_progress_of(job_id);
        }
        let r = match &entry.report {
            Report::Complete { result, .. } => {
                let result = bound::bounded_result(job_id, result, self.settings.max_body_bytes);
                self.client.complete(job_id, &result).map(|_| ())
            }
            Report::Failed { error, .. } => self.client.fail(job_id, error).map(|_| ()),
            Report::Progress {
                progress,
                current_node,
                message,
            } => {
                if !self.supported(Optional::Progress) {
                    return Delivery::Accepted;
                }
                let r = self.client.progress(
                    job_id,
                    *progress,
                    current_node.as_deref(),
                    message.as_deref(),
                );
                // Progress is lossy: an unsupported one is dropped.
                if self.observe_optional(Optional::Progress, &r) {
                    return Delivery::Accepted;
                }
                r
            }
            // Neither has a REST call: nothing to deliver.
            Report::Cancelled | Report::Logs { .. } => return Delivery::Accepted,
        };
        if !matches!(entry.report, Report::Progress { .. }) {
            self.observe(&r);
        }
        match r {
            Ok(()) => Delivery::Accepted,
            // A refused key may be fixed: the report waits in the outbox, as on the WebSocket.
            Err(e) if e.is_retryable() || e.is_auth() => {
                log::debug!(
                    "outbox entry #{} for job {job_id} not delivered: {e}",
                    entry.seq
                );
                Delivery::Retry
            }
            Err(e) => {
                log::error!(
                    "the orchestrator refused the report of job {job_id} for good: {e}; it is dropped"
                );
                Delivery::Refused
            }
        }
    }

    fn flush_outbox(&mut self, stopping: bool) {
        let queue = self.outbox.clone();
        let mut retry = false;
        let result = queue.sync_with_orchestrator(|entry| {
            let d = self.deliver(entry);
            retry = d == Delivery::Retry;
            d
        });
        match result {
            Ok(summary) => {
                if summary.delivered + summary.refused > 0 {
                    (self.emit)(RestEvent::Delivered(summary.delivered));
                }
                if retry {
                    self.outbox_failures += 1;
                    let wait = self.backoff(self.outbox_failures);
                    self.outbox_at = Some(
                        Instant::now()
                            + if stopping {
                                wait.min(Duration::from_millis(200))
                            } else {
                                wait
                            },
                    );
                } else {
                    self.outbox_failures = 0;
                    self.outbox_at = None;
                }
            }
            Err(e) => {
                log::error!("cannot read the REST outbox: {e}");
                self.outbox_at = Some(Instant::now() + Duration::from_secs(5));
            }
        }
    }

    fn reconcile_orphans(&mut self) {
        let r = self.client.claimed_jobs();
        self.observe(&r);
        let ids = match r {
            Ok(ids) => ids,
            // A refused key may be fixed: reconcile once it is accepted (giving up would leave
            // an orphaned claim `running` on the server until the robot restarts).
            Err(e) if e.is_retryable() || e.is_auth() => return,
            Err(e) => {
                log::info!("the orchestrator cannot list this robot's claimed jobs ({e}); orphaned claims are not reconciled");
                self.orphans_supported = false;
                return;
            }
        };
        self.orphans_due = false;
        for id in ids {
            let known = self.store.lock().job(&id);
            if !matches!(known, Ok(None)) {
                continue;
            }
            log::warn!("job {id} is claimed by this robot on the orchestrator but was never recorded here (its claim answer was lost); releasing it");
            match self.client.release(&id) {
                Ok(()) => {}
                Err(e) => {
                    log::warn!("job {id}: release failed ({e}); retrying later");
                    self.orphans_due = true;
                }
            }
        }
    }

    fn claim(&mut self) {
        self.fail_bad_jobs();
        let r = self.client.claim(self.settings.lease);
        if r.is_ok() {
            // An accepted claim is what clears a refused key.
            self.set_link(RestLink::Reachable, None);
        }
        self.observe(&r);
        let mut wait = self.poll.next(PollOutcome::of(&r));
        if !matches!(r, Err(RestError::RateLimited { .. })) {
            self.rate_limited = false;
        }
        match &r {
            Err(RestError::RateLimited { retry_after, .. }) => {
                let cap = self.poll.retry_after_cap();
                if retry_after.is_some_and(|asked| asked > cap) {
                    log::warn!(
                        "the orchestrator asked this robot to wait {} s before claiming again \
                         (Retry-After); waiting {} s, the longest wait the robot honours",
                        retry_after.map_or(0, |d| d.as_secs()),
                        cap.as_secs()
                    );
                } else if !self.rate_limited {
                    log::info!(
                        "the orchestrator rate-limits this robot's claims (429); next claim in {:.0} s",
                        wait.as_secs_f64()
                    );
                }
                self.rate_limited = true;
            }
            Err(e) if e.is_auth() => {
                self.set_link(RestLink::Refused, Some(e));
                wait = wait.max(self.settings.poll_max_interval);
            }
            _ => {}
        }
        let jitter = wait.mul_f64(0.1 * self.rng.f64());
        self.next_claim = Instant::now() + wait + jitter;
        match r {
            Ok(Some(job)) => self.record(job),
            Ok(None) => {}
            Err(e) if e.is_auth() || matches!(e, RestError::RateLimited { .. }) => {
                log::debug!("claim failed: {e}")
            }
            Err(RestError::BadJob { job_id, detail, .. }) => {
                log::warn!(
                    "job {job_id} was claimed but cannot run ({detail}); failing it on the orchestrator"
                );
                self.bad_jobs
                    .push_back((job_id, format!("the robot cannot run this job: {detail}")));
                self.fail_bad_jobs();
            }
            Err(e) => {
                // The server may have claimed a job whose answer was lost.
                if e.is_retryable() {
                    self.orphans_due = true;
                }
                log::debug!("claim failed: {e}");
            }
        }
    }

    /// Answers unusable claimed jobs with `fail`; one that cannot be delivered now is tried
    /// again before the next claim.
    fn fail_bad_jobs(&mut self) {
        while let Some((job_id, message)) = self.bad_jobs.front().cloned() {
            let r = self.client.fail(&job_id, &message);
            self.observe(&r);
            match r {
                Ok(_) => {
                    log::info!("job {job_id}: failed on the orchestrator ({message})");
                }
                // A refused key may be fixed: dropping the fail would leave the job `running`
                // on the server for good (only this robot may settle it).
                Err(e) if e.is_retryable() || e.is_auth() => {
                    log::debug!("job {job_id}: fail not delivered yet: {e}");
                    return;
                }
                Err(e) => log::warn!("job {job_id}: the orchestrator refused its fail: {e}"),
            }
            self.bad_jobs.pop_front();
        }
    }

    fn record(&mut self, job: ClaimedJob) {
        let workflow = job.workflow.to_string();
        let lease_end = job
            .lease_expires_at
            .map(|t| t.timestamp_millis() as f64 / 1000.0);
        let recorded = self.store.lock().record_job(&NewJob {
            job_id: &job.job_id,
            route: Route::Rest,
            workflow: &workflow,
            variables: &job.variables,
            timeout: None,
            attempt: job.retry_count,
            lease_expires_at: lease_end,
        });
        match recorded {
            Ok(recorded) => {
                let id = job.job_id.clone();
                let settled = matches!(&recorded, Recorded::Known(r) if r.state.is_settled());
                if !settled {
                    self.capacity = self.capacity.saturating_sub(1);
                    self.leases.insert(id, Instant::now() + self.renew_every());
                }
                self.claims_made += 1;
                (self.emit)(RestEvent::Claimed {
                    job: Box::new(job),
                    recorded,
                });
            }
            Err(e) => {
                log::error!(
                    "job {}: claimed but cannot be recorded ({e}); giving it back",
                    job.job_id
                );
                if let Err(e) = self.client.release(&job.job_id) {
                    log::error!("job {}: release failed too: {e}", job.job_id);
                }
                // Do not claim again at once: the store is the problem.
                self.next_claim = Instant::now() + self.settings.poll_max_interval;
            }
        }
    }
}

//! The rest-io thread: REST polling against the orchestrator's API v1.
//!
//! One thread owns the [`RestClient`] and makes every blocking call, so the agent never waits on
//! the network. It:
//! - **claims** jobs while the agent has free slots (`limit: 1`, adaptive interval: ×1.5 per
//!   empty poll up to `poll_max_interval`, reset by a claim, at least `Retry-After` on a 429) and
//!   **records each claimed job in the store before anything else** (FULL commit), then hands it
//!   to the agent. A job that cannot be recorded (disk full) is released at once;
//! - **verifies** the leases of jobs recovered at start-up before they resume (extend-lease:
//!   200 → resume, 409 → the job is no longer ours);
//! - **renews** the lease of every running REST job at a third of the lease; a 409 means the job
//!   was cancelled or taken away: the agent stops it and nothing is reported;
//! - **delivers** the REST outbox in order (complete/fail/progress; 2xx or 409 delivered, a 4xx
//!   other than 409/429 refused for good, anything else retried with backoff and jitter);
//! - sends **progress** of running jobs at most once a second per job (latest value only);
//! - **registers** the robot and sends **heartbeats** and status changes (a 503 register — an
//!   orchestrator without a database — is tolerated);
//! - **reconciles orphans** before the first claim and after a claim whose answer may have been
//!   lost: a job the orchestrator lists as claimed by this robot (`GET /api/v1/metrics/jobs`) but
//!   that the store has no record of was claimed by a request whose answer never arrived (a crash
//!   between the answer and the record, a dropped connection); it is released so it runs
//!   (the server never recovers an expired lease, so without this it would hang forever);
//! - on `Stop`, flushes the outbox until its deadline and ends.

use crate::link::bound;
use crate::link::protocol::{Capabilities, RobotStatus};
use crate::link::rest::{
    ClaimedJob, LeaseOutcome, PollInterval, PollOutcome, Registration, RestClient, RestError,
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
    /// The lease asked for at claim and on each renewal (renewed at a third of it).
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
    /// The orchestrator became reachable (true) or unreachable (false).
    Reachable(bool),
    /// Outbox entries were delivered (the agent refreshes its counts).
    Delivered(usize),
}

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
    reachable: Option<bool>,
    stop_at: Option<Instant>,
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
            reachable: None,
            stop_at: None,
        }
    }

    fn renew_every(&self) -> Duration {
        (self.settings.lease / 3).max(Duration::from_millis(500))
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
                if n > 0 && self.capacity == 0 {
                    // A slot freed up: poll now rather than at the end of an idle interval.
                    self.next_claim = self.next_claim.min(Instant::now());
                }
                self.capacity = n;
            }
            RestCommand::Verify(ids) => self.verify.extend(ids),
            RestCommand::Untrack(id) => {
                self.leases.remove(&id);
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

    fn set_reachable(&mut self, up: bool, why: Option<&RestError>) {
        if self.reachable == Some(up) {
            return;
        }
        if up {
            log::info!("REST orchestrator {} reachable", self.client.base_url());
        } else {
            log::warn!(
                "REST orchestrator {} unreachable: {}; retrying with backoff",
                self.client.base_url(),
                why.map_or_else(|| "no answer".to_string(), |e| e.to_string())
            );
        }
        self.reachable = Some(up);
        (self.emit)(RestEvent::Reachable(up));
    }

    /// Note the result of a call: reachability and, for errors, whether to retry.
    fn observe<T>(&mut self, r: &Result<T, RestError>) {
        match r {
            Ok(_) => self.set_reachable(true, None),
            Err(e) if e.is_retryable() => self.set_reachable(false, Some(e)),
            Err(_) => self.set_reachable(true, None),
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
            let Some(slot) = self.progress.get_mut(&id) else {
                continue;
            };
            slot.dirty = false;
            slot.last_sent = Some(now);
            let (p, node, msg) = (
                slot.progress,
                slot.current_node.clone(),
                slot.message.clone(),
            );
            // Progress is lossy: a failure is not retried (the next update replaces it).
            let r = self
                .client
                .progress(&id, p, node.as_deref(), msg.as_deref());
            if let Err(e) = &r {
                log::debug!("job {id}: progress not delivered: {e}");
            }
            self.observe(&r);
        }
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
        if self.last_status != Some(status) {
            let r = self.client.update_status(status);
            if r.is_ok() {
                self.last_status = Some(status);
            }
            self.observe(&r);
        }
        let r = self.client.heartbeat(status, metrics);
        if let Err(e) = &r {
            log::debug!("REST heartbeat failed: {e}");
        }
        self.observe(&r);
    }

    fn deliver(&mut self, entry: &OutboxEntry) -> Delivery {
        let Some(job_id) = entry.job_id.as_deref() else {
            return Delivery::Refused;
        };
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
            } => self.client.progress(
                job_id,
                *progress,
                current_node.as_deref(),
                message.as_deref(),
            ),
            // Neither has a REST call: nothing to deliver.
            Report::Cancelled | Report::Logs { .. } => return Delivery::Accepted,
        };
        self.observe(&r);
        match r {
            Ok(()) => Delivery::Accepted,
            Err(e) if e.is_retryable() => {
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
            Err(e) if e.is_retryable() => return,
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
        let r = self.client.claim(self.settings.lease);
        self.observe(&r);
        let wait = self.poll.next(PollOutcome::of(&r));
        let jitter = wait.mul_f64(0.1 * self.rng.f64());
        self.next_claim = Instant::now() + wait + jitter;
        match r {
            Ok(Some(job)) => self.record(job),
            Ok(None) => {}
            Err(e) if e.is_auth() => {
                log::error!("the orchestrator refuses this robot's API key on claim: {e}")
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

//! Optional progress broadcasts to Supabase Realtime over HTTP (`protocol.md`, "Supabase"):
//! [`ProgressReporter`] owns the `supabase-io` thread, [`ProgressSink`] is the cheap handle
//! workers report through, [`validate_credentials`] checks the settings first.
//!
//! Wire: `POST {url}/realtime/v1/api/broadcast` with `apikey: <key>`,
//! `Authorization: Bearer <key>`, `Content-Type: application/json` and the body
//! `{"messages":[{"topic":"robot:<robot_id>","event":E,"payload":P},...]}`, where E is one of
//! [`EVENTS`]. A batch leaves one [`ReporterOptions::batch_window`] (1 s) after its oldest event
//! was reported, or as soon as it holds [`ReporterOptions::max_batch`] (100) events, in one
//! request (10 s timeout); events keep the order they were reported in.
//!
//! Invariants:
//! - Reporting never blocks: events wait in a bounded queue ([`ReporterOptions::queue_capacity`],
//!   1000); when it is full the *oldest* queued event is dropped and counted. Progress is lossy by
//!   design: results travel the orchestrator path, never this one.
//! - A failed batch (network error, timeout, any non-2xx answer) is counted and dropped, never
//!   retried; later batches are sent as usual. One warning per outage, one info line when
//!   broadcasts work again, debug lines in between.
//! - The API key is only ever in the request headers: not in logs (server answers quoted in logs
//!   have it redacted), not in `Debug` output.
//! - [`ProgressReporter::stop`] refuses new events, sends what is queued until its deadline and
//!   returns by then (plus a short grace), whether or not the thread has finished.
//!
//! Exception to "HTTPS only": an `http://` URL whose host is loopback (`127.0.0.1`, `::1`,
//! `localhost`) is accepted, so the reporter can be tested against a local server; any other
//! `http://` URL is refused.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select_biased, Receiver, RecvTimeoutError, Sender, TrySendError};
use serde_json::{json, Value};

/// The path of Supabase Realtime's HTTP broadcast endpoint.
pub const BROADCAST_PATH: &str = "/realtime/v1/api/broadcast";
/// The events that are broadcast; [`ProgressSink::report`] rejects any other.
pub const EVENTS: &[&str] = &[
    "node_started",
    "node_completed",
    "node_error",
    "job_completed",
];
/// Shorter API keys are refused (upstream's check).
pub const MIN_KEY_CHARS: usize = 20;

/// Largest answer body read (answers are tiny; the body is only read so the connection can be
/// reused and an error can be quoted).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// Longest part of an error answer quoted in a log line.
const QUOTED_ANSWER_CHARS: usize = 200;
/// How long [`ProgressReporter::stop`] waits past its deadline for the thread to finish.
const STOP_GRACE: Duration = Duration::from_millis(200);

/// Checks the Supabase settings as upstream does, with upstream's messages: a URL
/// ("Supabase URL is required"), a key ("Supabase API key is required"), HTTPS ("Supabase URL
/// must use HTTPS"; loopback `http://` URLs are accepted, see the module docs), and a key of at
/// least [`MIN_KEY_CHARS`] characters ("API key appears to be invalid (too short)"). Surrounding
/// whitespace is ignored.
pub fn validate_credentials(url: Option<&str>, key: Option<&str>) -> Result<(), String> {
    let url = url.map(str::trim).unwrap_or("");
    let key = key.map(str::trim).unwrap_or("");
    if url.is_empty() {
        return Err("Supabase URL is required".to_string());
    }
    if key.is_empty() {
        return Err("Supabase API key is required".to_string());
    }
    if strip_scheme(url, "https://").is_none() && !is_loopback_http(url) {
        return Err("Supabase URL must use HTTPS".to_string());
    }
    if key.chars().count() < MIN_KEY_CHARS {
        return Err("API key appears to be invalid (too short)".to_string());
    }
    Ok(())
}

/// `url` without `scheme` (compared without regard to case).
fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let head = url.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &url[scheme.len()..])
}

/// An `http://` URL whose host is `127.0.0.1`, `[::1]` or `localhost` (no user info).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = strip_scheme(url, "http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, after)) => match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return false,
                },
            },
            None => return false,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && (host == "127.0.0.1" || host == "::1" || host.eq_ignore_ascii_case("localhost"))
}

/// Tuning of a [`ProgressReporter`]; the defaults are the protocol's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReporterOptions {
    /// How long the first event of a batch waits for others (1 s).
    pub batch_window: Duration,
    /// Events per request at most (100); a full batch is sent at once.
    pub max_batch: usize,
    /// Events waiting to be sent at most (1000); beyond, the oldest are dropped.
    pub queue_capacity: usize,
    /// Timeout of one request, connection included (10 s).
    pub request_timeout: Duration,
}

impl Default for ReporterOptions {
    fn default() -> Self {
        ReporterOptions {
            batch_window: Duration::from_secs(1),
            max_batch: 100,
            queue_capacity: 1000,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters since the reporter started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReporterStats {
    /// Events delivered (in batches the server answered with a 2xx).
    pub sent: u64,
    /// Events dropped before being sent: the oldest under backlog, those reported after
    /// [`ProgressReporter::stop`], those still queued at its deadline.
    pub dropped: u64,
    /// Events refused because their name is not one of [`EVENTS`].
    pub rejected: u64,
    /// Batches delivered.
    pub sent_batches: u64,
    /// Batches that failed (network error, timeout, non-2xx answer) and were dropped.
    pub failed_batches: u64,
    /// Events in the failed batches.
    pub failed: u64,
}

/// What the sinks and the thread share.
#[derive(Default)]
struct Shared {
    /// Set by `stop`: new events are dropped.
    closed: AtomicBool,
    /// A backlog drop was logged; cleared when the queue drains.
    backlog_logged: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    sent_batches: AtomicU64,
    failed_batches: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn stats(&self) -> ReporterStats {
        ReporterStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            sent_batches: self.sent_batches.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// One queued event.
struct Message {
    event: &'static str,
    payload: Value,
    /// When it was reported: a batch leaves one window after its oldest event was reported,
    /// however long that event waited behind a slow request.
    reported_at: Instant,
}

/// A cheap, cloneable handle for reporting progress events; what workers hold. Reporting never
/// blocks and never fails (see [`ProgressSink::report`]).
#[derive(Clone)]
pub struct ProgressSink {
    tx: Sender<Message>,
    /// A receiver of the same queue, used only to drop its oldest event when it is full.
    oldest: Receiver<Message>,
    capacity: usize,
    shared: Arc<Shared>,
}

impl fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressSink")
            .field("queued", &self.tx.len())
            .field("capacity", &self.capacity)
            .field("closed", &self.shared.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl ProgressSink {
    /// Queues one event for broadcasting. `event` must be one of [`EVENTS`] (others are counted
    /// as rejected and logged at debug level). When the queue is full its oldest event is
    /// dropped to make room; after [`ProgressReporter::stop`] events are dropped. Both are
    /// counted in [`ReporterStats::dropped`].
    pub fn report(&self, event: &'static str, payload: Value) {
        if !EVENTS.contains(&event) {
            Shared::add(&self.shared.rejected, 1);
            log::debug!(
                "supabase: event '{event}' is not broadcast (only {})",
                EVENTS.join(", ")
            );
            return;
        }
        if self.shared.closed.load(Ordering::Acquire) {
            Shared::add(&self.shared.dropped, 1);
            return;
        }
        let mut message = Message {
            event,
            payload,
            reported_at: Instant::now(),
        };
        // Other threads may refill the freed slot first; after a few rounds the newest event
        // is the one dropped, which still never blocks.
        for _ in 0..4 {
            match self.tx.try_send(message) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    message = back;
                    if self.oldest.try_recv().is_ok() {
                        self.note_backlog_drop();
                    }
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        self.note_backlog_drop();
    }

    /// The counters (shared with the reporter).
    pub fn stats(&self) -> ReporterStats {
        self.shared.stats()
    }

    fn note_backlog_drop(&self) {
        Shared::add(&self.shared.dropped, 1);
        if !self.shared.backlog_logged.swap(true, Ordering::Relaxed) {
            log::warn!(
                "supabase: {} progress events are waiting to be sent; the oldest are dropped \
                 until the backlog clears",
                self.capacity
            );
        }
    }
}

/// The Supabase progress broadcaster: owns the `supabase-io` thread. Report through it or
/// through [`ProgressSink`]s ([`ProgressReporter::sink`]); finish with
/// [`ProgressReporter::stop`]. Dropping it without `stop` ends the thread after its current
/// request, without sending what is queued.
pub struct ProgressReporter {
    sink: ProgressSink,
    /// Carries the stop deadline; dropping it also stops the thread.
    stop_tx: Option<Sender<Instant>>,
    /// Disconnected when the thread has finished.
    done_rx: Receiver<()>,
    thread: Option<JoinHandle<()>>,
    endpoint: String,
    robot_id: String,
}

impl fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgressReporter")
            .field("endpoint", &self.endpoint)
            .field("robot_id", &self.robot_id)
            .field("key", &"***")
            .field("stats", &self.sink.stats())
            .finish()
    }
}

impl ProgressReporter {
    /// Validates the credentials ([`validate_credentials`]) and starts the `supabase-io` thread
    /// with the default [`ReporterOptions`].
    pub fn start(url: &str, key: &str, robot_id: &str) -> Result<ProgressReporter, String> {
        ProgressReporter::start_with(url, key, robot_id, ReporterOptions::default())
    }

    /// [`ProgressReporter::start`] with other batching, queue and timeout settings (tests use a
    /// short batch window).
    pub fn start_with(
        url: &str,
        key: &str,
        robot_id: &str,
        options: ReporterOptions,
    ) -> Result<ProgressReporter, String> {
        validate_credentials(Some(url), Some(key))?;
        let (url, key) = (url.trim(), key.trim());
        if robot_id.trim().is_empty() {
            return Err(
                "supabase progress needs a robot id (the topic is robot:<robot_id>)".to_string(),
            );
        }
        if options.max_batch == 0 || options.queue_capacity == 0 {
            return Err(format!(
                "supabase reporter options need max_batch and queue_capacity above 0 (got {} \
                 and {})",
                options.max_batch, options.queue_capacity
            ));
        }
        if !url.contains("supabase") && !url.contains(".co") && !is_loopback_http(url) {
            log::warn!(
                "supabase: {} does not look like a Supabase URL; broadcasting to it anyway",
                redact(&strip_query(url), key)
            );
        }
        let endpoint = format!("{}{BROADCAST_PATH}", url.trim_end_matches('/'));
        let endpoint_for_logs = redact(&strip_query(&endpoint), key);
        let (tx, rx) = crossbeam_channel::bounded(options.queue_capacity);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let shared = Arc::new(Shared::default());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .save_redirect_history(false)
            .timeout_global(Some(options.request_timeout))
            .user_agent(format!("casare-robot/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let actor = SupabaseActor {
            agent,
            endpoint: endpoint.clone(),
            endpoint_for_logs: endpoint_for_logs.clone(),
            key: key.to_string(),
            topic: format!("robot:{robot_id}"),
            rx: rx.clone(),
            stop_rx,
            shared: Arc::clone(&shared),
            options: options.clone(),
            n_failed_in_outage: 0,
            _done: done_tx,
        };
        let thread = std::thread::Builder::new()
            .name("supabase-io".to_string())
            .spawn(move || actor.run())
            .map_err(|e| format!("cannot start the supabase-io thread: {e}"))?;
        log::info!("supabase: broadcasting progress to {endpoint_for_logs}");
        Ok(ProgressReporter {
            sink: ProgressSink {
                tx,
                oldest: rx,
                capacity: options.queue_capacity,
                shared,
            },
            stop_tx: Some(stop_tx),
            done_rx,
            thread: Some(thread),
            endpoint: endpoint_for_logs,
            robot_id: robot_id.to_string(),
        })
    }

    /// A handle for reporting from other threads.
    pub fn sink(&self) -> ProgressSink {
        self.sink.clone()
    }

    /// Queues one event (see [`ProgressSink::report`]).
    pub fn report(&self, event: &'static str, payload: Value) {
        self.sink.report(event, payload);
    }

    /// The counters.
    pub fn stats(&self) -> ReporterStats {
        self.sink.stats()
    }

    /// Refuses new events, sends what is queued until `deadline` (what is left then is
    /// dropped), and joins the thread. Returns by `deadline` plus a short grace even when a
    /// request is still in flight (the thread then finishes on its own). Returns the final
    /// counters.
    pub fn stop(mut self, deadline: Instant) -> ReporterStats {
        self.sink.shared.closed.store(true, Ordering::Release);
        if let Some(stop_tx) = self.stop_tx.take() {
            // A full channel means a stop is already pending; nothing to add.
            let _ = stop_tx.try_send(deadline);
        }
        match self.done_rx.recv_deadline(later(deadline, STOP_GRACE)) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => {
                if let Some(thread) = self.thread.take() {
                    if thread.join().is_err() {
                        log::error!("supabase: the supabase-io thread panicked");
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                log::debug!(
                    "supabase: supabase-io is still busy at the stop deadline; not waiting"
                );
            }
        }
        self.sink.stats()
    }
}

impl Drop for ProgressReporter {
    fn drop(&mut self) {
        // Without `stop`: dropping `stop_tx` (a field) tells the thread to end; nothing is
        // flushed and nothing is joined.
        self.sink.shared.closed.store(true, Ordering::Release);
    }
}

/// The body of the `supabase-io` thread: gathers batches and sends them.
struct SupabaseActor {
    agent: ureq::Agent,
    endpoint: String,
    /// The endpoint without query, key redacted.
    endpoint_for_logs: String,
    key: String,
    topic: String,
    rx: Receiver<Message>,
    stop_rx: Receiver<Instant>,
    shared: Arc<Shared>,
    options: ReporterOptions,
    /// Batches failed since the last success (0: no outage).
    n_failed_in_outage: u64,
    /// Dropped when the thread ends: tells `stop` it finished.
    _done: Sender<()>,
}

/// What woke the actor.
enum Wake {
    Stop(Option<Instant>),
    Event(Option<Message>),
    BatchDue,
}

impl SupabaseActor {
    fn run(mut self) {
        let mut batch: Vec<Message> = Vec::new();
        let mut batch_due: Option<Instant> = None;
        loop {
            if batch.len() >= self.options.max_batch {
                self.send(std::mem::take(&mut batch), None);
                batch_due = None;
                continue;
            }
            let wake = match batch_due {
                None => select_biased! {
                    recv(self.stop_rx) -> s => Wake::Stop(s.ok()),
                    recv(self.rx) -> m => Wake::Event(m.ok()),
                },
                Some(due) => select_biased! {
                    recv(self.stop_rx) -> s => Wake::Stop(s.ok()),
                    recv(self.rx) -> m => Wake::Event(m.ok()),
                    default(due.saturating_duration_since(Instant::now())) => Wake::BatchDue,
                },
            };
            match wake {
                Wake::Stop(Some(deadline)) => {
                    self.flush(batch, deadline);
                    return;
                }
                // The reporter was dropped without `stop`, or every sender is gone.
                Wake::Stop(None) | Wake::Event(None) => return,
                Wake::Event(Some(message)) => {
                    if batch.is_empty() {
                        batch_due = Some(later(message.reported_at, self.options.batch_window));
                    }
                    batch.push(message);
                }
                Wake::BatchDue => {
                    self.send(std::mem::take(&mut batch), None);
                    batch_due = None;
                }
            }
        }
    }

    /// Sends the batch in hand and everything queued, in batches, until `deadline`.
    fn flush(&mut self, mut batch: Vec<Message>, deadline: Instant) {
        loop {
            while batch.len() < self.options.max_batch {
                match self.rx.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                let n_left = batch.len() + self.rx.try_iter().count();
                Shared::add(&self.shared.dropped, n_left);
                log::info!(
                    "supabase: {n_left} progress events were not sent before the stop deadline"
                );
                return;
            }
            self.send(std::mem::take(&mut batch), Some(deadline));
        }
    }

    /// One request for `batch`; its outcome is counted and logged, never retried.
    fn send(&mut self, batch: Vec<Message>, deadline: Option<Instant>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        let messages: Vec<Value> = batch
            .into_iter()
            .map(|m| json!({ "topic": self.topic, "event": m.event, "payload": m.payload }))
            .collect();
        let body = json!({ "messages": messages });
        let timeout = match deadline {
            Some(d) => self
                .options
                .request_timeout
                .min(d.saturating_duration_since(Instant::now())),
            None => self.options.request_timeout,
        };
        let started = Instant::now();
        match self.post(&body, timeout) {
            Ok(()) => {
                Shared::add(&self.shared.sent, n);
                Shared::add(&self.shared.sent_batches, 1);
                log::debug!(
                    "supabase: broadcast {n} progress events ({} ms)",
                    started.elapsed().as_millis()
                );
                if self.n_failed_in_outage > 0 {
                    log::info!(
                        "supabase: progress broadcasts to {} work again ({} batches were \
                         dropped)",
                        self.endpoint_for_logs,
                        self.n_failed_in_outage
                    );
                    self.n_failed_in_outage = 0;
                }
                if self.rx.is_empty() {
                    self.shared.backlog_logged.store(false, Ordering::Relaxed);
                }
            }
            Err(problem) => {
                Shared::add(&self.shared.failed, n);
                Shared::add(&self.shared.failed_batches, 1);
                let problem = redact(&problem, &self.key);
                if self.n_failed_in_outage == 0 {
                    log::warn!(
                        "supabase: cannot broadcast progress to {}: {problem}; progress events \
                         are dropped until it works again",
                        self.endpoint_for_logs
                    );
                } else {
                    log::debug!("supabase: broadcast of {n} events failed: {problem}");
                }
                self.n_failed_in_outage += 1;
            }
        }
    }

    /// One POST; Err describes a network failure or a non-2xx answer.
    fn post(&self, body: &Value, timeout: Duration) -> Result<(), String> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| format!("cannot encode the batch: {e}"))?;
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(self.endpoint.as_str())
            .header("apikey", self.key.as_str())
            .header("Authorization", format!("Bearer {}", self.key))
            .header("Content-Type", "application/json")
            .body(bytes)
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .build();
        let mut answer = self.agent.run(request).map_err(|e| e.to_string())?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let hint = match status {
            401 | 403 => " (check supabase_key)",
            404 => " (check supabase_url)",
            _ => "",
        };
        let quoted: String = text.trim().chars().take(QUOTED_ANSWER_CHARS).collect();
        Err(if quoted.is_empty() {
            format!("http {status}{hint}")
        } else {
            format!("http {status}{hint}: {quoted}")
        })
    }
}

/// `at + wait`, saturating far in the future instead of overflowing (huge option values).
fn later(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(at)
}

/// `text` with every occurrence of `key` replaced by `***`.
fn redact(text: &str, key: &str) -> String {
    if key.is_empty() {
        text.to_string()
    } else {
        text.replace(key, "***")
    }
}

/// `url` without its query (it could carry credentials).
fn strip_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

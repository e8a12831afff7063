//! A fake CasareRPA REST orchestrator (API v1) for integration tests, on `127.0.0.1:0`.
//!
//! It keeps a job queue that behaves as `protocol.md` ("REST") says the real PostgreSQL-backed one
//! does: `claim` hands each pending job to exactly one caller, FIFO, one at a time, and leases it
//! (`visibility_timeout_seconds`); only the claimer may `extend-lease`, `complete` or `fail` it
//! (others get 409); `complete` and `fail` answer 200 once and 409 after; `fail` puts the job back to
//! `pending` after a delay (5 s on the real server, [`FakeRest::set_fail_requeue_delay`], 0 here by
//! default) with `retry_count + 1`, and the failure after `max_retries` (3) is final; `release`
//! makes the job claimable at once without counting a retry; `cancel` makes the next lease
//! renewal answer 409; an expired lease is **never** recovered (the job stays `running`). A claimed
//! job carries `workflow_json` as a JSON string and `variables` as an object, like the capture
//! `head-rest-claim.response.json`. The claimer is identified by the robot id in the
//! `User-Agent` (`casare-robot/<version> (<robot_id>)`), falling back to the API key.
//!
//! Switches: [`rate_limit`](FakeRest::rate_limit) (claims over `n` per second get 429 with
//! `Retry-After: 1` and the body `{"detail": "n per 1 second"}`), [`fail_next`](FakeRest::fail_next)
//! (the next `n` requests get a given status), [`down`](FakeRest::down) / [`up`](FakeRest::up)
//! (the listener and every open connection go away; `up` listens on the same port again),
//! [`require_api_key`](FakeRest::require_api_key) (401 without a key, 403 with a wrong one),
//! [`forbid_path_suffix`](FakeRest::forbid_path_suffix) (403 for one call only),
//! [`no_database`](FakeRest::no_database) (register, robot status, heartbeat and job progress
//! answer 503 "Database not available", as the real server in memory mode). Every request is
//! recorded with its headers and body.
//!
//! Like the real server: `GET /api/v1/metrics/jobs` lists a claimed job as `running` (newest
//! first, `limit` 1..=500, default 50) and accepts only `pending`, `claimed`, `completed` and
//! `failed` as a `status` filter (422 otherwise), so `status=claimed` never finds a running job;
//! the robot registry keeps each robot's status, and a heartbeat turns an `offline` robot
//! `online` again. [`fixed_visibility`](FakeRest::fixed_visibility) imitates the in-memory
//! queue: every lease lasts that long whatever the robot asks, and a job whose lease ran out is
//! handed to the next claimer (the PostgreSQL queue never does that). A job submitted with a JSON *string* as its workflow is handed out with that
//! text as `workflow_json` verbatim (to imitate unusable claims).
//!
//! The job view `GET /api/v1/metrics/jobs/{id}` ([`FakeRest::job_details`]) reads the last
//! accepted `result` as the real server does: `result.node_executions` must be a list of objects,
//! each normalised to `{node_id, node_type, duration_ms (integer), success, order, start_time}`;
//! anything else (the count the robot used to send) is a 500, as the real server answers.
//!
//! Why not tiny_http: it cannot drop established keep-alive connections, so after a `down` a
//! pooled client connection would hang until its timeout instead of failing like a server that went
//! away. This is a minimal HTTP/1.1 server (Content-Length and chunked bodies, keep-alive) whose
//! connections the fake owns. Threads: one named accept thread (non-blocking listener polled every
//! 5 ms) and one named thread per connection (reads bounded by a 10 s idle timeout); `down` and drop
//! shut every socket and join every thread.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

/// How often the accept thread polls the listener.
const ACCEPT_TICK: Duration = Duration::from_millis(5);
/// An idle keep-alive connection is closed after this long (every read is bounded).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The jobs of [`FakeRest::submit_unusable`], each with what a robot's error about it says.
pub const UNUSABLE_JOBS: [(&str, &str); 3] = [
    ("not-json", "workflow_json of job not-json is not json"),
    (
        "an-array",
        "workflow of job an-array must be an object, got an array",
    ),
    (
        "list-vars",
        "variables of job list-vars must be an object, got an array",
    ),
];

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, `PUT`.
    pub method: String,
    /// Path without the query, percent-decoding not applied.
    pub path: String,
    /// Headers with lowercase names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`null` when empty, a string when not JSON).
    pub body: Value,
    /// When it arrived.
    pub at: Instant,
}

impl RecordedRequest {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A job in the fake queue.
#[derive(Clone, Debug)]
struct Job {
    workflow: Value,
    variables: Value,
    /// Further top-level fields of its claim answer (`trigger_payload`, ...).
    claim_fields: serde_json::Map<String, Value>,
    state: &'static str,
    claimer: Option<String>,
    lease_until: Option<Instant>,
    /// A failed job is pending again only from this instant.
    not_before: Option<Instant>,
    retry_count: u32,
    max_retries: u32,
    created_at: String,
    n_claims: usize,
    n_accepted_completions: usize,
    results: Vec<Value>,
    n_accepted_failures: usize,
    failure_messages: Vec<String>,
    progress: Vec<Value>,
}

/// Claim rate limit: `per_window` claims per one-second window.
#[derive(Debug)]
struct RateLimit {
    per_window: usize,
    window_start: Instant,
    n_in_window: usize,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Job>,
    /// Claim order (FIFO): job ids that are, or may again become, pending.
    queue: VecDeque<String>,
    requests: Vec<RecordedRequest>,
    rate_limit: Option<RateLimit>,
    /// Statuses to answer the next requests with, regardless of what they ask.
    injected: VecDeque<u16>,
    /// Requests on this path prefix whose answers are lost (processed, then the connection
    /// drops without an answer), with how many are left.
    lose_answers: Option<(String, usize)>,
    api_key: Option<String>,
    fail_requeue_delay: Duration,
    no_database: bool,
    n_rate_limited: usize,
    /// The robot registry: status by robot id.
    robots: HashMap<String, String>,
    /// Claim answers carry this `Retry-After` when rate limited (seconds).
    retry_after: Option<u64>,
    /// The in-memory queue's fixed visibility, when imitated.
    fixed_visibility: Option<Duration>,
    /// Requests whose path ends with this answer 403 (a key refused for one call only).
    forbidden_suffix: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    /// Clones of open connections, to cut them on `down`.
    conns: Mutex<Vec<TcpStream>>,
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set by `down` and drop: the accept thread and every connection stop.
    stop: AtomicBool,
}

/// The fake REST orchestrator. Dropping it stops and joins every thread.
pub struct FakeRest {
    shared: Arc<Shared>,
    port: u16,
    accept_thread: Option<JoinHandle<()>>,
}

impl FakeRest {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start() -> FakeRest {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            conns: Mutex::new(Vec::new()),
            conn_threads: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let mut fake = FakeRest {
            shared,
            port,
            accept_thread: None,
        };
        fake.spawn_acceptor(listener);
        fake
    }

    fn spawn_acceptor(&mut self, listener: TcpListener) {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        self.shared.stop.store(false, Ordering::SeqCst);
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name(format!("fake-rest-accept-{}", self.port))
            .spawn(move || accept_loop(listener, shared))
            .expect("spawn accept thread");
        self.accept_thread = Some(handle);
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port (stable across `down`/`up`).
    pub fn port(&self) -> u16 {
        self.port
    }

    // --- the queue ---------------------------------------------------------------------------

    /// Adds a pending job (claimed after every job submitted before it).
    pub fn submit(&self, job_id: &str, workflow: Value, variables: Value) {
        self.submit_with_fields(job_id, workflow, variables, json!({}));
    }

    /// [`FakeRest::submit`] with further top-level fields in the claim answer (an object, e.g.
    /// `{"trigger_payload": {...}}`).
    pub fn submit_with_fields(
        &self,
        job_id: &str,
        workflow: Value,
        variables: Value,
        fields: Value,
    ) {
        let mut st = self.shared.state.lock();
        let job = Job {
            workflow,
            variables,
            claim_fields: fields.as_object().cloned().unwrap_or_default(),
            state: "pending",
            claimer: None,
            lease_until: None,
            not_before: None,
            retry_count: 0,
            max_retries: 3,
            created_at: now_rfc3339(),
            n_claims: 0,
            n_accepted_completions: 0,
            results: Vec::new(),
            n_accepted_failures: 0,
            failure_messages: Vec::new(),
            progress: Vec::new(),
        };
        assert!(
            st.jobs.insert(job_id.to_string(), job).is_none(),
            "job {job_id} submitted twice"
        );
        st.queue.push_back(job_id.to_string());
    }

    /// Submits the jobs of [`UNUSABLE_JOBS`]: one whose `workflow_json` is not JSON, one whose is
    /// a JSON array, one whose `variables` are a list.
    pub fn submit_unusable(&self) {
        self.submit(UNUSABLE_JOBS[0].0, json!("{not json"), json!({}));
        self.submit(UNUSABLE_JOBS[1].0, json!("[1, 2]"), json!({}));
        self.submit(
            UNUSABLE_JOBS[2].0,
            json!({"metadata": {"name": "list-vars"}, "nodes": {}}),
            json!([1, 2]),
        );
    }

    /// Cancels a pending or running job: its next lease renewal, completion or failure gets 409.
    pub fn cancel(&self, job_id: &str) {
        let mut st = self.shared.state.lock();
        if let Some(job) = st.jobs.get_mut(job_id) {
            if matches!(job.state, "pending" | "running") {
                job.state = "cancelled";
            }
        }
    }

    /// How long a failed job waits before it is pending again (the real server: 5 s; here 0).
    pub fn set_fail_requeue_delay(&self, delay: Duration) {
        self.shared.state.lock().fail_requeue_delay = delay;
    }

    // --- switches ----------------------------------------------------------------------------

    /// Claims beyond `n_per_window` per one-second window answer 429 with `Retry-After: 1`;
    /// `None` lifts the limit.
    pub fn rate_limit(&self, n_per_window: Option<usize>) {
        self.shared.state.lock().rate_limit = n_per_window.map(|n| RateLimit {
            per_window: n,
            window_start: Instant::now(),
            n_in_window: 0,
        });
    }

    /// The next `n` requests (any path) answer `status` with an error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = self.shared.state.lock();
        st.injected.extend(std::iter::repeat_n(status, n));
    }

    /// Requests whose path ends with `suffix` answer 403 (the key refused for that call only);
    /// `None` lifts it.
    pub fn forbid_path_suffix(&self, suffix: Option<&str>) {
        self.shared.state.lock().forbidden_suffix = suffix.map(str::to_string);
    }

    /// The next `n` requests whose path starts with `path` are processed but their answer is
    /// lost: the connection drops without one (a crash or network cut after the server acted).
    pub fn lose_next_answers(&self, path: &str, n: usize) {
        self.shared.state.lock().lose_answers = Some((path.to_string(), n));
    }

    /// Imitates the in-memory queue: leases last `visibility` whatever the robot asks, and an
    /// expired job is claimable again (by anyone).
    pub fn fixed_visibility(&self, visibility: Option<Duration>) {
        self.shared.state.lock().fixed_visibility = visibility;
    }

    /// Requires this API key on `/api/v1/...` (401 without a key, 403 with a wrong one).
    pub fn require_api_key(&self, key: Option<&str>) {
        self.shared.state.lock().api_key = key.map(str::to_string);
    }

    /// Imitates the orchestrator without a database: `register`, robot status, heartbeat and
    /// job progress answer 503.
    pub fn no_database(&self, on: bool) {
        self.shared.state.lock().no_database = on;
    }

    /// Drops every connection (TCP shutdown) and the listener: new connections are refused until
    /// [`up`](Self::up).
    pub fn down(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept_thread.take() {
            let _ = h.join();
        }
        for c in self.shared.conns.lock().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = self.shared.conn_threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Listens again on the same port, retrying the bind for up to 5 s.
    pub fn up(&mut self) {
        if self.accept_thread.is_some() {
            return;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("cannot listen again on {addr}: {e}"),
            }
        };
        self.spawn_acceptor(listener);
    }

    // --- inspection --------------------------------------------------------------------------

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state.lock().requests.clone()
    }

    /// Every request so far as `(method, path, body)`.
    pub fn calls(&self) -> Vec<(String, String, Value)> {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .map(|r| (r.method.clone(), r.path.clone(), r.body.clone()))
            .collect()
    }

    /// The bodies of the requests to `method path`.
    pub fn bodies(&self, method: &str, path: &str) -> Vec<Value> {
        self.shared
            .state
            .lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }

    /// Completions the server accepted (200) for the job: exactly once means 1.
    pub fn completions(&self, job_id: &str) -> usize {
        self.with_job(job_id, |j| j.n_accepted_completions)
            .unwrap_or(0)
    }

    /// The `result` of every `complete` call for the job, accepted or not, in order.
    pub fn results(&self, job_id: &str) -> Vec<Value> {
        self.with_job(job_id, |j| j.results.clone())
            .unwrap_or_default()
    }

    /// Failures the server accepted (200) for the job.
    pub fn failures(&self, job_id: &str) -> usize {
        self.with_job(job_id, |j| j.n_accepted_failures)
            .unwrap_or(0)
    }

    /// The `error_message` of every `fail` call for the job, in order.
    pub fn failure_messages(&self, job_id: &str) -> Vec<String> {
        self.with_job(job_id, |j| j.failure_messages.clone())
            .unwrap_or_default()
    }

    /// The job view (`JobDetails`) of `GET /api/v1/metrics/jobs/{id}`, or the 500 message the
    /// real server gives when it cannot read the job's result.
    pub fn job_details(&self, job_id: &str) -> Result<Value, String> {
        let st = self.shared.state.lock();
        job_details(&st, job_id)
    }

    /// Every progress body for the job, in order.
    pub fn progress(&self, job_id: &str) -> Vec<Value> {
        self.with_job(job_id, |j| j.progress.clone())
            .unwrap_or_default()
    }

    /// `pending`, `running`, `completed`, `failed` or `cancelled`; `None` for an unknown job.
    pub fn state(&self, job_id: &str) -> Option<&'static str> {
        self.with_job(job_id, |j| j.state)
    }

    /// Times the job was handed out by `claim`.
    pub fn claims(&self, job_id: &str) -> usize {
        self.with_job(job_id, |j| j.n_claims).unwrap_or(0)
    }

    /// The job's retry count.
    pub fn retry_count(&self, job_id: &str) -> Option<u32> {
        self.with_job(job_id, |j| j.retry_count)
    }

    /// Who holds the job (the robot id from the `User-Agent`).
    pub fn claimer(&self, job_id: &str) -> Option<String> {
        self.with_job(job_id, |j| j.claimer.clone()).flatten()
    }

    /// Time left on the job's lease (zero once expired; the job stays `running` regardless).
    pub fn lease_remaining(&self, job_id: &str) -> Option<Duration> {
        self.with_job(job_id, |j| j.lease_until)
            .flatten()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }

    /// The `Retry-After` (seconds) of the 429s of [`rate_limit`](Self::rate_limit) (default 1).
    pub fn set_retry_after(&self, seconds: u64) {
        self.shared.state.lock().retry_after = Some(seconds);
    }

    /// The robot's status in the registry (`PUT /status`; a heartbeat makes `offline` `online`).
    pub fn robot_status(&self, robot_id: &str) -> Option<String> {
        self.shared.state.lock().robots.get(robot_id).cloned()
    }

    /// Number of 429 answers given.
    pub fn n_rate_limited(&self) -> usize {
        self.shared.state.lock().n_rate_limited
    }

    /// Polls `pred` every 5 ms until it holds or `within` passes.
    pub fn wait_until(&self, within: Duration, mut pred: impl FnMut(&FakeRest) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn with_job<T>(&self, job_id: &str, f: impl FnOnce(&Job) -> T) -> Option<T> {
        self.shared.state.lock().jobs.get(job_id).map(f)
    }
}

impl Drop for FakeRest {
    fn drop(&mut self) {
        self.down();
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut n_accepted = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                n_accepted += 1;
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
                let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                shared.conns.lock().push(clone);
                let conn_shared = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name(format!("fake-rest-conn-{n_accepted}"))
                    .spawn(move || serve_connection(stream, &conn_shared));
                if let Ok(handle) = spawned {
                    let mut threads = shared.conn_threads.lock();
                    threads.retain(|t| !t.is_finished());
                    threads.push(handle);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_TICK),
            Err(_) => std::thread::sleep(ACCEPT_TICK),
        }
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            body,
            retry_after: None,
        }
    }

    /// The real server's error shape: `{success: false, error: {code, message}}`.
    fn error(status: u16, code: &str, message: impl Into<String>) -> Answer {
        Answer {
            status,
            body: json!({"success": false, "error": {"code": code, "message": message.into()}}),
            retry_after: None,
        }
    }
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let path = request.path.clone();
        let answer = handle(shared, request);
        let lose = {
            let mut st = shared.state.lock();
            match &mut st.lose_answers {
                Some((prefix, n)) if *n > 0 && path.starts_with(prefix.as_str()) => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if lose {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        if write_answer(&mut writer, &answer).is_err() || close {
            return;
        }
    }
}

/// Reads one request; `Ok(None)` at a clean end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(std::io::Error::new(
            ErrorKind::InvalidData,
            "bad request line",
        ));
    };
    let method = method.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v): &(String, String)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidData,
                    "body too large",
                ));
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| std::io::Error::new(ErrorKind::InvalidData, "bad content-length"))?;
        if len > MAX_BODY {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "body too large",
            ));
        }
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        path,
        query,
        headers,
        body,
    }))
}

fn write_answer(writer: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let body = serde_json::to_vec(&answer.body).unwrap_or_else(|_| b"null".to_vec());
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        answer.status,
        reason(answer.status),
        body.len()
    );
    if let Some(s) = answer.retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    writer.write_all(&out)?;
    writer.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

// ---------------------------------------------------------------------------------------------
// The orchestrator's behaviour
// ---------------------------------------------------------------------------------------------

fn handle(shared: &Shared, req: Request) -> Answer {
    let body: Value = if req.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&req.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&req.body).into_owned()))
    };
    let mut st = shared.state.lock();
    st.requests.push(RecordedRequest {
        method: req.method.clone(),
        path: req.path.clone(),
        headers: req.headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    });
    if let Some(status) = st.injected.pop_front() {
        return Answer::error(status, "INJECTED", format!("injected {status}"));
    }
    if st
        .forbidden_suffix
        .as_deref()
        .is_some_and(|suffix| req.path.ends_with(suffix))
    {
        return Answer::error(403, "FORBIDDEN", "invalid api key");
    }
    if req.path.starts_with("/api/") {
        if let Some(expected) = st.api_key.clone() {
            let bearer = req
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "));
            match req.header("x-api-key").or(bearer) {
                None => return Answer::error(401, "UNAUTHORIZED", "api key required"),
                Some(k) if k != expected => {
                    return Answer::error(403, "FORBIDDEN", "invalid api key")
                }
                Some(_) => {}
            }
        }
    }
    let who = caller(&req);
    let segments: Vec<String> = req
        .path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["health"]) => Answer::ok(json!({"status": "healthy"})),
        ("GET", ["api", "v1", "metrics", "jobs"]) => {
            // JobSummary rows, newest first; a claimed job is "running" with its claimer as
            // robot_id, and only the documented statuses are accepted as a filter.
            let param = |name: &str| {
                req.query.split('&').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    (k == name).then(|| percent_decode(v))
                })
            };
            let (robot, status) = (param("robot_id"), param("status"));
            if let Some(s) = status.as_deref() {
                if !matches!(s, "pending" | "claimed" | "completed" | "failed") {
                    return Answer::error(
                        422,
                        "VALIDATION_ERROR",
                        format!(
                            "invalid status filter '{s}': pending, claimed, completed or failed"
                        ),
                    );
                }
            }
            let limit = match param("limit").map(|l| l.parse::<usize>()) {
                None => 50,
                Some(Ok(n)) if (1..=500).contains(&n) => n,
                Some(_) => return Answer::error(422, "VALIDATION_ERROR", "limit must be 1..=500"),
            };
            let mut rows: Vec<(&String, &Job)> = st
                .jobs
                .iter()
                .filter(|(_, job)| {
                    robot
                        .as_deref()
                        .is_none_or(|r| job.claimer.as_deref() == Some(r))
                        && status.as_deref().is_none_or(|want| want == job.state)
                })
                .collect();
            rows.sort_by(|a, b| b.1.created_at.cmp(&a.1.created_at));
            let rows: Vec<Value> = rows
                .into_iter()
                .take(limit)
                .map(|(id, job)| {
                    json!({"job_id": id, "workflow_id": "wf", "robot_id": job.claimer,
                           "status": job.state, "created_at": job.created_at})
                })
                .collect();
            Answer::ok(Value::Array(rows))
        }
        ("GET", ["api", "v1", "metrics", "jobs", id]) => match job_details(&st, id) {
            Ok(details) => Answer::ok(details),
            Err(message) if message.contains("not found") => not_found(id),
            Err(message) => Answer::error(500, "INTERNAL_ERROR", message),
        },
        ("POST", ["api", "v1", "jobs", "claim"]) => claim(&mut st, &who, &body),
        ("POST", ["api", "v1", "jobs", id, "extend-lease"]) => {
            let fixed = st.fixed_visibility;
            requeue_expired(&mut st);
            with_running_job(&mut st, id, &who, |job| {
                let asked = Duration::from_secs(body["extension_seconds"].as_u64().unwrap_or(30));
                job.lease_until = Some(Instant::now() + fixed.unwrap_or(asked));
                Answer::ok(json!({"job_id": id, "extended": true}))
            })
        }
        ("PUT", ["api", "v1", "jobs", _, "progress"]) if st.no_database => no_database(),
        ("PUT", ["api", "v1", "jobs", id, "progress"]) => match st.jobs.get_mut(*id) {
            None => not_found(id),
            Some(job) => {
                job.progress.push(body.clone());
                Answer::ok(json!({"job_id": id, "progress": body["progress"]}))
            }
        },
        ("POST", ["api", "v1", "jobs", id, "complete"]) => {
            if let Some(job) = st.jobs.get_mut(*id) {
                job.results.push(body["result"].clone());
            }
            with_running_job(&mut st, id, &who, |job| {
                job.state = "completed";
                job.n_accepted_completions += 1;
                Answer::ok(json!({"job_id": id, "completed": true}))
            })
        }
        ("POST", ["api", "v1", "jobs", id, "fail"]) => {
            let message = body["error_message"].as_str().unwrap_or("").to_string();
            if message.is_empty() || message.chars().count() > 5000 {
                return Answer::error(
                    422,
                    "VALIDATION_ERROR",
                    "error_message must be 1..=5000 chars",
                );
            }
            if let Some(job) = st.jobs.get_mut(*id) {
                job.failure_messages.push(message);
            }
            let delay = st.fail_requeue_delay;
            let answer = with_running_job(&mut st, id, &who, |job| {
                job.n_accepted_failures += 1;
                job.claimer = None;
                job.lease_until = None;
                if job.retry_count < job.max_retries {
                    job.retry_count += 1;
                    job.state = "pending";
                    job.not_before = Some(Instant::now() + delay);
                } else {
                    job.state = "failed";
                }
                Answer::ok(json!({"job_id": id, "failed": true}))
            });
            if st.jobs.get(*id).is_some_and(|j| j.state == "pending") {
                st.queue.push_back(id.to_string());
            }
            answer
        }
        ("POST", ["api", "v1", "jobs", id, "release"]) => {
            let answer = with_running_job(&mut st, id, &who, |job| {
                job.state = "pending";
                job.claimer = None;
                job.lease_until = None;
                job.not_before = None;
                Answer::ok(json!({"job_id": id, "released": true}))
            });
            if answer.status == 200 {
                // Claimable at once, ahead of the rest (it was first in line before).
                st.queue.push_front(id.to_string());
            }
            answer
        }
        ("POST", ["api", "v1", "robots", "register"]) => {
            if st.no_database {
                return Answer::error(503, "SERVICE_UNAVAILABLE", "database not available");
            }
            Answer::ok(json!({
                "robot_id": body["robot_id"],
                "name": body["name"],
                "hostname": body["hostname"],
                "status": "idle",
                "environment": body["environment"],
                "max_concurrent_jobs": body["max_concurrent_jobs"],
                "capabilities": body["capabilities"],
                "tags": body["tags"],
                "current_job_ids": [],
                "last_seen": now_rfc3339(),
                "last_heartbeat": null,
                "created_at": now_rfc3339(),
                "metrics": {},
            }))
        }
        ("POST" | "PUT", ["api", "v1", "robots", _, "heartbeat" | "status"]) if st.no_database => {
            no_database()
        }
        ("POST", ["api", "v1", "robots", id, "heartbeat"]) => {
            let status = st.robots.entry(id.to_string()).or_default();
            if status.is_empty() || status == "offline" {
                *status = "online".to_string();
            }
            Answer::ok(json!({"robot_id": id, "last_heartbeat": now_rfc3339()}))
        }
        ("PUT", ["api", "v1", "robots", id, "status"]) => {
            let status = body["status"].as_str().unwrap_or("");
            if !matches!(
                status,
                "idle" | "online" | "busy" | "offline" | "error" | "maintenance"
            ) {
                return Answer::error(422, "VALIDATION_ERROR", format!("bad status '{status}'"));
            }
            st.robots.insert(id.to_string(), status.to_string());
            Answer::ok(json!({"robot_id": id, "status": status}))
        }
        _ => Answer::error(
            404,
            "NOT_FOUND",
            format!("no route {} {}", req.method, req.path),
        ),
    }
}

fn claim(st: &mut State, who: &str, body: &Value) -> Answer {
    if let Some(rl) = st.rate_limit.as_mut() {
        if rl.window_start.elapsed() >= Duration::from_secs(1) {
            rl.window_start = Instant::now();
            rl.n_in_window = 0;
        }
        rl.n_in_window += 1;
        if rl.n_in_window > rl.per_window {
            let detail = format!("{} per 1 second", rl.per_window);
            st.n_rate_limited += 1;
            return Answer {
                status: 429,
                body: json!({ "detail": detail }),
                retry_after: Some(st.retry_after.unwrap_or(1)),
            };
        }
    }
    let limit = body["limit"].as_u64().unwrap_or(1);
    if limit != 1 {
        // The real server takes `limit` jobs and returns one, stranding the rest: refuse instead.
        return Answer::error(400, "BAD_LIMIT", "this fake only supports limit: 1");
    }
    let asked = Duration::from_secs(body["visibility_timeout_seconds"].as_u64().unwrap_or(30));
    let lease = st.fixed_visibility.unwrap_or(asked);
    requeue_expired(st);
    let now = Instant::now();
    let pos = st.queue.iter().position(|id| {
        st.jobs
            .get(id)
            .is_some_and(|j| j.state == "pending" && j.not_before.is_none_or(|t| t <= now))
    });
    let Some(pos) = pos else {
        return Answer::ok(Value::Null);
    };
    let id = st.queue.remove(pos).expect("position is in range");
    // Drop stale duplicates of this id further back in the queue.
    st.queue.retain(|other| *other != id);
    let job = st.jobs.get_mut(&id).expect("queued job exists");
    job.state = "running";
    job.claimer = Some(who.to_string());
    job.lease_until = Some(now + lease);
    job.not_before = None;
    job.n_claims += 1;
    let mut answer = json!({
        "job_id": id,
        "workflow_id": format!("wf-{id}"),
        "workflow_name": job.workflow["metadata"]["name"].as_str().unwrap_or("workflow"),
        "workflow_json": match &job.workflow {
            Value::String(text) => text.clone(),
            workflow => serde_json::to_string(workflow).unwrap_or_default(),
        },
        "priority": 10,
        "environment": body["environment"].as_str().unwrap_or("default"),
        "variables": job.variables,
        "created_at": job.created_at,
        "claimed_at": now_rfc3339(),
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
    });
    for (k, v) in &job.claim_fields {
        answer[k] = v.clone();
    }
    Answer::ok(answer)
}

/// `JobDetails` of a job, reading `node_executions` from its last result the way the real
/// server does (a list of objects, each normalised); `Err` is the server's 500 message.
fn job_details(st: &State, id: &str) -> Result<Value, String> {
    let job = st
        .jobs
        .get(id)
        .ok_or_else(|| format!("job {id} not found"))?;
    let result = job.results.last().cloned().unwrap_or(Value::Null);
    let records = match result.get("node_executions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            return Err(format!(
                "'{}' object is not iterable",
                match other {
                    Value::Number(_) => "int",
                    Value::String(_) => "str",
                    Value::Bool(_) => "bool",
                    _ => "dict",
                }
            ))
        }
    };
    let mut node_executions = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let obj = r
            .as_object()
            .ok_or_else(|| format!("node_executions[{i}] is not an object"))?;
        let duration = match obj.get("duration_ms") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| format!("node_executions[{i}].duration_ms is not a number"))?
                as i64,
        };
        node_executions.push(json!({
            "node_id": obj.get("node_id").cloned().unwrap_or(Value::Null),
            "node_type": obj.get("node_type").cloned().unwrap_or(Value::Null),
            "duration_ms": duration,
            "success": obj.get("success").and_then(Value::as_bool).unwrap_or(false),
            "order": obj.get("order").cloned().unwrap_or(json!(i)),
            "start_time": obj.get("start_time").cloned().unwrap_or(Value::Null),
        }));
    }
    Ok(json!({
        "job_id": id,
        "workflow_id": format!("wf-{id}"),
        "workflow_name": job.workflow["metadata"]["name"],
        "robot_id": job.claimer,
        "status": job.state,
        "created_at": job.created_at,
        "duration_ms": result.get("duration_ms").and_then(Value::as_i64),
        "retry_count": job.retry_count,
        "node_executions": node_executions,
    }))
}

/// With a fixed visibility (the in-memory queue), running jobs whose lease ran out are pending
/// again, first in line.
fn requeue_expired(st: &mut State) {
    if st.fixed_visibility.is_none() {
        return;
    }
    let now = Instant::now();
    let expired: Vec<String> = st
        .jobs
        .iter()
        .filter(|(_, j)| j.state == "running" && j.lease_until.is_some_and(|t| t <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        if let Some(job) = st.jobs.get_mut(&id) {
            job.state = "pending";
            job.claimer = None;
            job.lease_until = None;
        }
        st.queue.push_front(id);
    }
}

/// Runs `f` on the job when it is `running` and held by `who`; 404 for an unknown job, 409
/// otherwise (cancelled, settled, pending, or someone else's).
fn with_running_job(
    st: &mut State,
    id: &str,
    who: &str,
    f: impl FnOnce(&mut Job) -> Answer,
) -> Answer {
    match st.jobs.get_mut(id) {
        None => not_found(id),
        Some(job) if job.state == "running" && job.claimer.as_deref() == Some(who) => f(job),
        Some(job) => Answer::error(
            409,
            "JOB_CONFLICT",
            format!("job {id} is {} and not held by {who}", job.state),
        ),
    }
}

/// The real server's answer to robot calls when it runs without a database.
fn no_database() -> Answer {
    Answer::error(503, "SERVICE_UNAVAILABLE", "Database not available")
}

fn not_found(id: &str) -> Answer {
    Answer::error(404, "JOB_NOT_FOUND", format!("job {id} not found"))
}

/// The robot id from `User-Agent: casare-robot/<version> (<robot_id>)`, else the API key, else
/// `anonymous`.
fn caller(req: &Request) -> String {
    if let Some(ua) = req.header("user-agent") {
        if let (Some(open), Some(close)) = (ua.rfind('('), ua.rfind(')')) {
            if open < close {
                return ua[open + 1..close].to_string();
            }
        }
    }
    req.header("x-api-key")
        .map(|k| format!("key:{k}"))
        .unwrap_or_else(|| "anonymous".to_string())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

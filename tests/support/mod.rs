//! A fake orchestrator for integration tests: a real WebSocket server on `127.0.0.1:0`.
//!
//! It behaves like the real CasareRPA orchestrator as captured in
//! `../shared/fixtures/casare/orchestrator/head-ws-*.json`: it answers `register` with
//! `register_ack {type, robot_id, timestamp}` (no `success` field) and `heartbeat` with
//! `heartbeat_ack {type, timestamp}`; it answers nothing else (not `pong`, not `status_response`,
//! not unknown types) and never sends `ping` on its own. On bad auth the real server refuses the
//! handshake with HTTP 403; [`FakeOrchestrator::refuse_handshake_with`] imitates that.
//!
//! Threads: one named accept thread (non-blocking listener polled every few ms, so `kill` can drop
//! the listener at once) and one named thread per connection, which owns its `WebSocket`, reads with
//! a short timeout and, between reads, sends the frames queued for it. Every wait takes a timeout;
//! nothing blocks forever. Dropping the fake stops and joins every thread.
#![allow(dead_code)]

pub mod probe;
pub mod procs;
pub mod recorder;
pub mod rest;
pub mod robot;

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use casare_robot::link::protocol::Dialect;
use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// How long a connection thread blocks in one read before looking at its queue and flags.
const READ_TICK: Duration = Duration::from_millis(20);
/// How often the accept thread polls the listener.
const ACCEPT_TICK: Duration = Duration::from_millis(5);
/// Upper bound for a handshake and for a single write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Silence states of a connection (see [`FakeOrchestrator::go_silent`]).
const SPEAKING: u8 = 0;
const SILENCE_ASKED: u8 = 1;
const SILENT: u8 = 2;

/// A frame queued for a connection.
enum Command {
    Text(String),
    Close(u16),
}

/// One accepted connection, as seen from the fake's handle.
struct Conn {
    id: usize,
    commands: Sender<Command>,
    /// A clone of the socket, to cut it abruptly.
    stream: TcpStream,
    silent: Arc<AtomicU8>,
    closed: Arc<AtomicBool>,
}

/// What a handshake request looked like.
#[derive(Clone, Debug, Default)]
pub struct HandshakeRecord {
    /// Request path without the query (`/ws/robot/r-1`).
    pub path: String,
    /// Raw query string, if any (`api_key=...`).
    pub query: Option<String>,
    /// The `X-Api-Key` header, if any.
    pub api_key_header: Option<String>,
}

/// State shared by the handle, the accept thread and the connection threads.
struct Shared {
    dialect: Dialect,
    inbox_tx: Sender<Value>,
    inbox_rx: Receiver<Value>,
    log: Mutex<Vec<Value>>,
    conns: Mutex<Vec<Conn>>,
    conn_threads: Mutex<Vec<JoinHandle<()>>>,
    n_connections: AtomicUsize,
    n_attempts: AtomicUsize,
    last_handshake: Mutex<Option<HandshakeRecord>>,
    reply_to_register: AtomicBool,
    refuse_status: Mutex<Option<u16>>,
    /// See [`FakeOrchestrator::stall_handler`].
    stalled: AtomicBool,
    /// See [`FakeOrchestrator::refuse_registration`].
    refuse_registration: AtomicBool,
    /// See [`FakeOrchestrator::limit_message_size`].
    max_message: Mutex<Option<usize>>,
    /// See [`FakeOrchestrator::pause_reading_for`].
    read_paused_until: Mutex<Option<Instant>>,
    /// Set by `kill` and drop: the current accept thread and every connection stop.
    stop: AtomicBool,
}

/// A fake orchestrator listening on `127.0.0.1`.
pub struct FakeOrchestrator {
    shared: Arc<Shared>,
    port: u16,
    accept_thread: Option<JoinHandle<()>>,
}

impl FakeOrchestrator {
    /// Binds `127.0.0.1:0` and starts accepting robots speaking `dialect`.
    pub fn start(dialect: Dialect) -> FakeOrchestrator {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let (inbox_tx, inbox_rx) = unbounded();
        let shared = Arc::new(Shared {
            dialect,
            inbox_tx,
            inbox_rx,
            log: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            conn_threads: Mutex::new(Vec::new()),
            n_connections: AtomicUsize::new(0),
            n_attempts: AtomicUsize::new(0),
            last_handshake: Mutex::new(None),
            reply_to_register: AtomicBool::new(true),
            refuse_status: Mutex::new(None),
            stalled: AtomicBool::new(false),
            refuse_registration: AtomicBool::new(false),
            max_message: Mutex::new(None),
            read_paused_until: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let mut fake = FakeOrchestrator {
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
            .name(format!("fake-orch-accept-{}", self.port))
            .spawn(move || accept_loop(listener, shared))
            .expect("spawn accept thread");
        self.accept_thread = Some(handle);
    }

    /// `ws://127.0.0.1:PORT` (no path: the robot adds `/ws/robot/{id}`).
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The port listened on (stable across [`kill`](Self::kill) and [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The dialect this fake speaks.
    pub fn dialect(&self) -> Dialect {
        self.shared.dialect
    }

    /// The next message the robot sent (on any connection), waiting at most `within`.
    pub fn recv(&self, within: Duration) -> Option<Value> {
        self.shared.inbox_rx.recv_timeout(within).ok()
    }

    /// The next message of type `msg_type`, skipping others (they stay in [`received`](Self::received)).
    pub fn wait_for(&self, msg_type: &str, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.shared.inbox_rx.recv_timeout(left).ok()?;
            if msg["type"] == msg_type {
                return Some(msg);
            }
        }
    }

    /// Waits for a message for which `pred` holds, skipping others.
    pub fn wait_until(
        &self,
        within: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.shared.inbox_rx.recv_timeout(left).ok()?;
            if pred(&msg) {
                return Some(msg);
            }
        }
    }

    /// The next robot message matching `pred` within `within`; an error if `child` (the robot)
    /// exits meanwhile (the demo and smoke examples watch a robot they started).
    pub fn wait_while_alive(
        &self,
        child: &mut std::process::Child,
        within: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Option<Value>, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("the robot exited early ({status})"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            if let Some(msg) = self.recv(left.min(Duration::from_millis(200))) {
                if pred(&msg) {
                    return Ok(Some(msg));
                }
            }
        }
    }

    /// Send `shutdown` (graceful) and wait up to `within` for `child` (the robot) to exit; prints
    /// how long it took. An error when it does not exit in time (it is left running).
    pub fn shutdown_and_wait(
        &self,
        child: &mut std::process::Child,
        within: Duration,
    ) -> Result<std::process::ExitStatus, String> {
        self.shutdown_robot(true);
        let asked = Instant::now();
        while asked.elapsed() < within {
            match child.try_wait() {
                Ok(Some(status)) => {
                    println!(
                        "robot exited after {} ms ({status})",
                        asked.elapsed().as_millis()
                    );
                    return Ok(status);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("cannot wait for the robot: {e}")),
            }
        }
        Err(format!(
            "the robot did not exit within {} s of shutdown",
            within.as_secs()
        ))
    }

    /// Every message the robot sent so far, in arrival order. Frames that were not JSON appear as
    /// `{"type": "_invalid_json", "raw": text}`.
    pub fn received(&self) -> Vec<Value> {
        self.shared.log.lock().clone()
    }

    /// Handshakes completed so far.
    pub fn connections(&self) -> usize {
        self.shared.n_connections.load(Ordering::SeqCst)
    }

    /// Handshake requests seen so far, refused ones included.
    pub fn handshake_attempts(&self) -> usize {
        self.shared.n_attempts.load(Ordering::SeqCst)
    }

    /// Connections currently open (handshake done, not closed).
    pub fn open_connections(&self) -> usize {
        self.shared
            .conns
            .lock()
            .iter()
            .filter(|c| !c.closed.load(Ordering::SeqCst))
            .count()
    }

    /// Waits until at least `n` handshakes have completed.
    pub fn wait_connections(&self, n: usize, within: Duration) -> bool {
        wait_flag(within, || self.connections() >= n)
    }

    /// Path of the last handshake request (`/ws/robot/r-1`).
    pub fn last_request_path(&self) -> Option<String> {
        self.shared
            .last_handshake
            .lock()
            .as_ref()
            .map(|h| h.path.clone())
    }

    /// Query of the last handshake request.
    pub fn last_query(&self) -> Option<String> {
        self.shared
            .last_handshake
            .lock()
            .as_ref()
            .and_then(|h| h.query.clone())
    }

    /// `X-Api-Key` header of the last handshake request.
    pub fn last_api_key(&self) -> Option<String> {
        self.shared
            .last_handshake
            .lock()
            .as_ref()
            .and_then(|h| h.api_key_header.clone())
    }

    /// Queues `value` for every open connection; returns how many connections it went to.
    pub fn send(&self, value: Value) -> usize {
        self.send_raw_text(&value.to_string())
    }

    /// Queues a raw text frame (for malformed-frame tests); returns how many connections it went to.
    pub fn send_raw_text(&self, text: &str) -> usize {
        self.broadcast(|| Command::Text(text.to_string()))
    }

    fn broadcast(&self, make: impl Fn() -> Command) -> usize {
        let conns = self.shared.conns.lock();
        conns
            .iter()
            .filter(|c| !c.closed.load(Ordering::SeqCst))
            .filter(|c| c.commands.send(make()).is_ok())
            .count()
    }

    /// Sends a job in this dialect: `job_assign` with `workflow_data` (Casare, as the real server),
    /// or `job_assignment` with `workflow` (Reference, as the reference document).
    pub fn assign_job(
        &self,
        job_id: &str,
        workflow: Value,
        variables: Value,
        timeout: Option<f64>,
    ) -> usize {
        let mut msg = json!({
            "type": self.shared.dialect.job_assign_type(),
            "job_id": job_id,
            "workflow_id": workflow.get("metadata").and_then(|m| m.get("name")).cloned().unwrap_or(Value::Null),
            "variables": variables,
            "timestamp": now_rfc3339(),
        });
        let workflow_field = match self.shared.dialect {
            Dialect::Casare => "workflow_data",
            Dialect::Reference => "workflow",
        };
        msg[workflow_field] = workflow;
        if let Some(t) = timeout {
            msg["timeout"] = json!(t);
        }
        self.send(msg)
    }

    /// Sends `job_cancel`.
    pub fn cancel_job(&self, job_id: &str, reason: &str) -> usize {
        self.send(json!({"type": "job_cancel", "job_id": job_id, "reason": reason}))
    }

    /// Sends `shutdown`.
    pub fn shutdown_robot(&self, graceful: bool) -> usize {
        self.send(json!({"type": "shutdown", "graceful": graceful}))
    }

    /// Whether to answer `register` with `register_ack` and heartbeats with `heartbeat_ack`
    /// (default true, like the real server).
    pub fn reply_to_register(&self, reply: bool) {
        self.shared.reply_to_register.store(reply, Ordering::SeqCst);
    }

    /// Refuse the next handshakes with this HTTP status (the real server: 403), or accept again
    /// with `None`. Refused attempts are counted in [`handshake_attempts`](Self::handshake_attempts).
    pub fn refuse_handshake_with(&self, status: Option<u16>) {
        *self.shared.refuse_status.lock() = status;
    }

    /// Stall the message handler (or let it run again): frames are still read, recorded and seen
    /// by [`recv`](Self::recv), and WebSocket pings are still answered, but nothing is answered
    /// (no `register_ack`, no `heartbeat_ack`), like a server whose handler hangs.
    pub fn stall_handler(&self, stalled: bool) {
        self.shared.stalled.store(stalled, Ordering::SeqCst);
    }

    /// Answer `register` with `register_ack {success: false, message}` (or accept again).
    pub fn refuse_registration(&self, refuse: bool) {
        self.shared
            .refuse_registration
            .store(refuse, Ordering::SeqCst);
    }

    /// Refuse messages larger than `bytes` on connections accepted from now on, closing with code
    /// 1009 (message too big) like uvicorn at its 16 MiB default; `None` lifts the limit.
    /// Refused messages are recorded as `{"type": "_too_big"}`.
    pub fn limit_message_size(&self, bytes: Option<usize>) {
        *self.shared.max_message.lock() = bytes;
    }

    /// Stop reading on every connection for `pause` (a slow link: what the robot sends piles up in
    /// the socket buffers). Meanwhile the fake keeps writing: queued frames, and a WebSocket ping
    /// every 200 ms, so the robot does not take the link for dead.
    pub fn pause_reading_for(&self, pause: Duration) {
        *self.shared.read_paused_until.lock() = Some(Instant::now() + pause);
    }

    /// Closes the open connections with a close frame of this code (4001/4003: auth).
    pub fn close_with(&self, code: u16) -> usize {
        self.broadcast(|| Command::Close(code))
    }

    /// Makes the open connections half-open: no more reads or writes, no close, no FIN. New
    /// connections behave normally. Returns once every connection thread has gone quiet (at most
    /// about a second), so nothing sent after this call is read or answered.
    pub fn go_silent(&self) {
        let flags: Vec<Arc<AtomicU8>> = {
            let conns = self.shared.conns.lock();
            conns.iter().map(|c| Arc::clone(&c.silent)).collect()
        };
        for f in &flags {
            let _ = f.compare_exchange(SPEAKING, SILENCE_ASKED, Ordering::SeqCst, Ordering::SeqCst);
        }
        wait_flag(Duration::from_secs(1), || {
            flags.iter().all(|f| f.load(Ordering::SeqCst) == SILENT)
        });
    }

    /// Drops every connection (TCP shutdown, no close frame) and the listener. New connection
    /// attempts are refused until [`restart`](Self::restart).
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.accept_thread.take() {
            let _ = h.join();
        }
        for c in self.shared.conns.lock().drain(..) {
            c.closed.store(true, Ordering::SeqCst);
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        let threads: Vec<JoinHandle<()>> = self.shared.conn_threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Listens again on the same port (after [`kill`](Self::kill)), retrying the bind for up to 5 s.
    pub fn restart(&mut self) {
        if self.accept_thread.is_some() {
            return;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot listen again on {addr}: {e}"),
            }
        };
        self.spawn_acceptor(listener);
    }
}

impl Drop for FakeOrchestrator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A workflow document whose nodes run in a linear exec chain, in the given order; each node
/// is `(id, type, config)`.
pub fn chain(nodes: &[(&str, &str, Value)]) -> Value {
    let mut map = serde_json::Map::new();
    for (id, ty, config) in nodes {
        map.insert(
            id.to_string(),
            json!({"node_id": id, "node_type": ty, "config": config}),
        );
    }
    let conns: Vec<Value> = nodes
        .windows(2)
        .map(|w| {
            json!({"source_node": w[0].0, "source_port": "exec_out",
                   "target_node": w[1].0, "target_port": "exec_in"})
        })
        .collect();
    json!({"metadata": {"name": "test"}, "nodes": Value::Object(map), "connections": conns})
}

/// Polls `cond` until it holds or `within` passes.
pub fn wait_flag(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut n_accepted = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                n_accepted += 1;
                let shared2 = Arc::clone(&shared);
                let name = format!("fake-orch-conn-{n_accepted}");
                match std::thread::Builder::new()
                    .name(name)
                    .spawn(move || serve_connection(stream, shared2))
                {
                    Ok(h) => shared.conn_threads.lock().push(h),
                    Err(e) => eprintln!("fake orchestrator: cannot spawn connection thread: {e}"),
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_TICK),
            Err(_) => std::thread::sleep(ACCEPT_TICK),
        }
    }
    // The listener drops here: new connections are refused.
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(cut) = stream.try_clone() else { return };

    let refuse = *shared.refuse_status.lock();
    let shared_cb = Arc::clone(&shared);
    // The signature is tungstenite's `Callback`; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        shared_cb.n_attempts.fetch_add(1, Ordering::SeqCst);
        let record = HandshakeRecord {
            path: req.uri().path().to_string(),
            query: req.uri().query().map(str::to_string),
            api_key_header: req
                .headers()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        };
        *shared_cb.last_handshake.lock() = Some(record);
        match refuse {
            Some(status) => {
                let mut err = ErrorResponse::new(None);
                *err.status_mut() = tungstenite::http::StatusCode::from_u16(status)
                    .unwrap_or(tungstenite::http::StatusCode::FORBIDDEN);
                Err(err)
            }
            None => Ok(resp),
        }
    };
    let mut config = tungstenite::protocol::WebSocketConfig::default();
    if let Some(limit) = *shared.max_message.lock() {
        config = config
            .max_message_size(Some(limit))
            .max_frame_size(Some(limit));
    }
    let mut ws = match tungstenite::accept_hdr_with_config(stream, callback, Some(config)) {
        Ok(ws) => ws,
        Err(_) => return, // refused, or the client went away mid-handshake
    };
    let _ = ws.get_ref().set_read_timeout(Some(READ_TICK));

    let (tx, rx) = unbounded();
    let silent = Arc::new(AtomicU8::new(SPEAKING));
    let closed = Arc::new(AtomicBool::new(false));
    let id = shared.n_connections.fetch_add(1, Ordering::SeqCst) + 1;
    shared.conns.lock().push(Conn {
        id,
        commands: tx,
        stream: cut,
        silent: Arc::clone(&silent),
        closed: Arc::clone(&closed),
    });

    run_connection(&mut ws, &rx, &shared, &silent, &closed);
    closed.store(true, Ordering::SeqCst);
    shared.conns.lock().retain(|c| c.id != id);
}

fn run_connection(
    ws: &mut WebSocket<TcpStream>,
    commands: &Receiver<Command>,
    shared: &Shared,
    silent: &AtomicU8,
    closed: &AtomicBool,
) {
    let mut closing_since: Option<Instant> = None;
    // Like the robot: while traffic flows the socket is non-blocking and the thread waits on its
    // command channel for up to 1 ms between polls (a queued frame goes out at once); idle, a
    // blocking read with a 20 ms timeout. Latency benchmarks then measure the robot, not this
    // stand-in (socket timeouts are rounded to scheduler ticks).
    let mut last_activity = Instant::now();
    let mut nonblocking = false;
    let mut pending: Option<Command> = None;
    loop {
        let active = last_activity.elapsed() < Duration::from_secs(2);
        if active != nonblocking {
            let _ = ws.get_ref().set_nonblocking(active);
            nonblocking = active;
        }
        if shared.stop.load(Ordering::SeqCst) || closed.load(Ordering::SeqCst) {
            return;
        }
        if silent.load(Ordering::SeqCst) != SPEAKING {
            // Half-open peer: hold the socket, never read or write, never close.
            silent.store(SILENT, Ordering::SeqCst);
            std::thread::sleep(READ_TICK);
            continue;
        }
        if closing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2)) {
            return;
        }
        let paused = shared
            .read_paused_until
            .lock()
            .is_some_and(|until| Instant::now() < until);
        if paused {
            let _ = ws.get_ref().set_nonblocking(false);
            nonblocking = false;
            while let Some(cmd) = pending.take().or_else(|| commands.try_recv().ok()) {
                if let Command::Text(text) = cmd {
                    let _ = ws.send(Message::text(text));
                }
            }
            let _ = ws.send(Message::Ping(Vec::new().into()));
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        while let Some(cmd) = pending.take().or_else(|| commands.try_recv().ok()) {
            last_activity = Instant::now();
            let sent = match cmd {
                Command::Text(text) => ws.send(Message::text(text)),
                Command::Close(code) => {
                    closing_since.get_or_insert_with(Instant::now);
                    ws.close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: "closed by fake orchestrator".into(),
                    }))
                }
            };
            if let Err(e) = sent {
                if !is_timeout(&e) {
                    return;
                }
            }
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                last_activity = Instant::now();
                handle_text(ws, shared, text.as_str())
            }
            Ok(Message::Close(_)) => {
                closing_since.get_or_insert_with(Instant::now);
            }
            Ok(_) => {} // pings are answered by tungstenite on the next flush
            Err(tungstenite::Error::Capacity(_)) => {
                let too_big = json!({"type": "_too_big"});
                shared.log.lock().push(too_big.clone());
                let _ = shared.inbox_tx.send(too_big);
                let _ = ws.get_ref().set_nonblocking(false);
                let _ = ws.close(Some(CloseFrame {
                    code: CloseCode::Size,
                    reason: "message too big".into(),
                }));
                let _ = ws.flush();
                // Like the websockets library behind uvicorn, wait for the closing handshake and
                // discard what the client is still writing: dropping the socket with its frame
                // unread would reset the connection and lose the close frame (a server that does
                // that is the other case the robot handles: two suspect drops in a row).
                drain_until_closed(ws.get_mut(), Duration::from_secs(5));
                return;
            }
            Err(e) if is_timeout(&e) => {
                let _ = ws.flush();
                if nonblocking {
                    pending = commands.recv_timeout(Duration::from_millis(1)).ok();
                }
            }
            Err(_) => return, // ConnectionClosed, reset, protocol error
        }
    }
}

/// Reads and discards until the peer closes its side or `within` passes.
fn drain_until_closed(stream: &mut TcpStream, within: Duration) {
    use std::io::Read;
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn handle_text(ws: &mut WebSocket<TcpStream>, shared: &Shared, text: &str) {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|_| json!({"type": "_invalid_json", "raw": text}));
    let msg_type = value["type"].as_str().unwrap_or("").to_string();
    shared.log.lock().push(value.clone());
    let _ = shared.inbox_tx.send(value.clone());
    if !shared.reply_to_register.load(Ordering::SeqCst) || shared.stalled.load(Ordering::SeqCst) {
        return;
    }
    let reply = match msg_type.as_str() {
        "register" if shared.refuse_registration.load(Ordering::SeqCst) => Some(json!({
            "type": "register_ack",
            "robot_id": value["robot_id"],
            "success": false,
            "message": "robot not allowed",
            "timestamp": now_rfc3339(),
        })),
        "register" => Some(json!({
            "type": "register_ack",
            "robot_id": value["robot_id"],
            "timestamp": now_rfc3339(),
        })),
        "heartbeat" | "status_update" => {
            Some(json!({"type": "heartbeat_ack", "timestamp": now_rfc3339()}))
        }
        _ => None,
    };
    if let Some(reply) = reply {
        let _ = ws.send(Message::text(reply.to_string()));
    }
}

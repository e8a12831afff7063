//! `/health` and Prometheus `/metrics` on `127.0.0.1:<health_port>`: a small synchronous HTTP/1.1
//! server (one request per connection), answering from what the agent publishes (the status
//! snapshot and the metrics text); it never touches agent state and never blocks the agent.
//!
//! Bounded: one thread accepts and [`MAX_CONNECTIONS`] threads answer, fed through a queue of
//! [`MAX_WAITING`] connections (a connection beyond that is closed at once); a request head must
//! arrive within [`HEAD_DEADLINE`] and fit in [`MAX_HEAD_BYTES`] (else 431). Idle or slow
//! clients therefore cost no threads and hold an answering thread for at most the deadline.
//! Written on `std::net` rather than tiny_http because tiny_http gives every connection a thread
//! of its own, with no bound and no deadline for the request head (300 idle connections made 189
//! threads); the subset needed here (GET of two paths, one request per connection) is small.
//!
//! `/health` says whether the robot can do its job: 503 with the reasons when the orchestrator
//! refuses its credentials, when the circuit breaker is open, when every link has been down for
//! longer than `health_disconnect_seconds`, when a job made no progress for longer than the node
//! timeout (a stuck node), when the agent stopped updating its status (a wedged robot), or while
//! it stops; 200 otherwise. The body is JSON either way. Nothing secret is in it.

use super::status::{SharedStatus, StatusSnapshot};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The Prometheus text, rendered by the agent about once a second.
pub type SharedMetricsText = Arc<parking_lot::RwLock<String>>;

/// Thresholds of `/health`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthSettings {
    /// Links down longer than this → unhealthy.
    pub disconnect_threshold: Duration,
    /// A job without progress longer than this → unhealthy.
    pub node_timeout: Duration,
    /// A status older than this → unhealthy (the agent is not running its loop).
    pub stale_after: Duration,
}

/// The verdict of `/health`.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    /// True → 200.
    pub healthy: bool,
    /// Why not (empty when healthy).
    pub reasons: Vec<String>,
}

/// Judge a status snapshot; `age` is how old it is.
pub fn evaluate(s: &StatusSnapshot, age: Duration, settings: &HealthSettings) -> Health {
    let mut reasons = Vec::new();
    if s.connection.unauthorized {
        reasons.push("the orchestrator refuses this robot's credentials (check api_key)".into());
    }
    if s.connection.breaker.as_deref() == Some("open") {
        reasons.push("the circuit breaker to the orchestrator is open".into());
    }
    if let Some(down) = s.connection.down_for_seconds {
        if down > settings.disconnect_threshold.as_secs_f64() {
            reasons.push(format!(
                "no link to the orchestrator for {down:.0} s (threshold {} s)",
                settings.disconnect_threshold.as_secs_f64()
            ));
        }
    }
    for job in &s.jobs {
        if job.since_progress_seconds > settings.node_timeout.as_secs_f64() {
            reasons.push(format!(
                "job {} made no progress for {:.0} s (node timeout {} s){}",
                job.job_id,
                job.since_progress_seconds,
                settings.node_timeout.as_secs_f64(),
                job.current_node
                    .as_deref()
                    .map(|n| format!(", last node {n}"))
                    .unwrap_or_default()
            ));
        }
    }
    if age > settings.stale_after {
        reasons.push(format!(
            "the robot has not updated its status for {:.0} s",
            age.as_secs_f64()
        ));
    }
    if let Some(damage) = &s.store_damage {
        reasons.push(damage.clone());
    }
    if matches!(s.state.as_str(), "stopping" | "stopped") {
        reasons.push(format!("the robot is {}", s.state));
    }
    Health {
        healthy: reasons.is_empty(),
        reasons,
    }
}

/// The JSON body of `/health`.
pub fn body(s: &StatusSnapshot, health: &Health) -> serde_json::Value {
    serde_json::json!({
        "status": if health.healthy { "ok" } else { "unhealthy" },
        "reasons": health.reasons,
        "robot_id": s.robot_id,
        "state": s.state,
        "connection": s.connection,
        "running_jobs": s.jobs.len(),
        "waiting_jobs": s.waiting_jobs,
        "outbox": s.outbox,
        "version": s.version,
        "checked_at": chrono::Utc::now().to_rfc3339(),
    })
}

/// Connections answered at once (one thread each, started with the server).
pub const MAX_CONNECTIONS: usize = 4;
/// Accepted connections waiting for a free thread; beyond that a new connection is closed at once.
pub const MAX_WAITING: usize = 32;
/// The whole request head must arrive within this time (slow or idle clients are closed).
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers) read; a larger one gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The server's handle: stop flag, the accepting thread and the answering threads.
pub struct HealthServer {
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    answerers: Vec<JoinHandle<()>>,
    addr: SocketAddr,
}

impl HealthServer {
    /// Listen on `127.0.0.1:port` (0 picks a free port): thread `health` accepts, and
    /// [`MAX_CONNECTIONS`] threads `health-N` answer, so idle or slow clients cannot make the
    /// robot start threads; a connection waits at most [`HEAD_DEADLINE`] for its request.
    pub fn start(
        port: u16,
        status: SharedStatus,
        metrics: SharedMetricsText,
        settings: HealthSettings,
    ) -> Result<HealthServer, String> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for /health: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("the health server has no address: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::bounded::<(TcpStream, Instant)>(MAX_WAITING);
        let mut answerers = Vec::with_capacity(MAX_CONNECTIONS);
        for n in 1..=MAX_CONNECTIONS {
            let (rx, flag) = (rx.clone(), stop.clone());
            let (status, metrics) = (status.clone(), metrics.clone());
            let thread = std::thread::Builder::new()
                .name(format!("health-{n}"))
                .spawn(move || {
                    for (stream, accepted) in rx.iter() {
                        if flag.load(Ordering::SeqCst) {
                            break;
                        }
                        serve(
                            stream,
                            accepted + HEAD_DEADLINE,
                            &status,
                            &metrics,
                            &settings,
                        );
                    }
                })
                .map_err(|e| format!("cannot start the health threads: {e}"))?;
            answerers.push(thread);
        }
        let flag = stop.clone();
        let acceptor = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                let mut failing = false;
                while !flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            failing = false;
                            // Full: too many clients at once; this one is closed unanswered.
                            let _ = tx.try_send((stream, Instant::now()));
                        }
                        Err(e) => {
                            if !failing {
                                failing = true;
                                log::warn!("health endpoint: cannot accept: {e}");
                            }
                            // Out of file descriptors, say: do not spin.
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the health thread: {e}"))?;
        Ok(HealthServer {
            stop,
            acceptor: Some(acceptor),
            answerers,
            addr,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop and join (within [`HEAD_DEADLINE`] at worst: a thread may be reading a request).
    pub fn stop(mut self) {
        self.signal_stop();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for t in self.answerers.drain(..) {
            let _ = t.join();
        }
    }

    fn signal_stop(&self) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            // Wakes the accepting thread, which then sees the flag.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

fn snapshot_age(s: &StatusSnapshot) -> Duration {
    chrono::DateTime::parse_from_rfc3339(&s.updated_at)
        .ok()
        .and_then(|t| {
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .to_std()
                .ok()
        })
        .unwrap_or(Duration::ZERO)
}

/// Why a request head cannot be answered normally: the status code to send.
#[derive(Debug, PartialEq)]
enum HeadError {
    /// 400: not an HTTP request line.
    Malformed,
    /// 431: the head is larger than [`MAX_HEAD_BYTES`].
    TooLarge,
}

/// The method and path of a complete request head (sans-IO).
fn parse_head(head: &[u8]) -> Result<(String, String), HeadError> {
    let line_end = head
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(HeadError::Malformed)?;
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| HeadError::Malformed)?;
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed);
    };
    if method.is_empty() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return Err(HeadError::Malformed);
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok((method.to_string(), path))
}

/// Where the head of `buf` ends (after the blank line), if it is complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

/// Reads a request head by `deadline` (the connection's accept time plus [`HEAD_DEADLINE`], so
/// time spent waiting for a thread counts) and at most [`MAX_HEAD_BYTES`]; `None` when the
/// client went away or was too slow (nothing is answered then).
fn read_head(
    stream: &mut TcpStream,
    deadline: Instant,
) -> Option<Result<(String, String), HeadError>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
        if let Some(end) = head_end(&buf) {
            if end > MAX_HEAD_BYTES {
                return Some(Err(HeadError::TooLarge));
            }
            return Some(parse_head(&buf[..end]));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Some(Err(HeadError::TooLarge));
        }
    }
}

/// The status, content type and body for `method path` (sans-IO apart from the shared reads).
fn route(
    method: &str,
    path: &str,
    status: &SharedStatus,
    metrics: &SharedMetricsText,
    settings: &HealthSettings,
) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    let get = matches!(method, "GET" | "HEAD");
    match (get, path) {
        (true, "/health") => {
            let snap = status.read().clone();
            let health = evaluate(&snap, snapshot_age(&snap), settings);
            let mut value = body(&snap, &health);
            crate::redact::scrub_json(&mut value);
            let code = if health.healthy { 200 } else { 503 };
            (code, JSON, value.to_string())
        }
        (true, "/metrics") => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.read().clone(),
        ),
        (false, "/health" | "/metrics") => (405, JSON, r#"{"error":"use GET"}"#.into()),
        _ => (
            404,
            JSON,
            r#"{"error":"not found: try /health or /metrics"}"#.into(),
        ),
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Answers one connection (one request, then the connection is closed).
fn serve(
    mut stream: TcpStream,
    deadline: Instant,
    status: &SharedStatus,
    metrics: &SharedMetricsText,
    settings: &HealthSettings,
) {
    let Some(head) = read_head(&mut stream, deadline) else {
        return;
    };
    let (method, (code, content_type, text)) = match head {
        Ok((method, path)) => {
            let answer = route(&method, &path, status, metrics, settings);
            (method, answer)
        }
        Err(HeadError::Malformed) => (
            String::new(),
            (
                400,
                "application/json",
                r#"{"error":"not an HTTP request"}"#.into(),
            ),
        ),
        Err(HeadError::TooLarge) => (
            String::new(),
            (
                431,
                "application/json",
                format!(r#"{{"error":"the request head is larger than {MAX_HEAD_BYTES} bytes"}}"#),
            ),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        text.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(text.as_bytes());
    }
    let _ = stream.set_write_timeout(Some(HEAD_DEADLINE));
    if let Err(e) = stream.write_all(&response) {
        log::debug!("health endpoint: cannot answer: {e}");
    }
    // A graceful close: unread request bytes would make the close a reset, which can destroy
    // the answer before the client reads it. Drain a bounded amount until the client closes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 16 * MAX_HEAD_BYTES {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{ConnectionStatus, JobStatus};

    fn settings() -> HealthSettings {
        HealthSettings {
            disconnect_threshold: Duration::from_secs(60),
            node_timeout: Duration::from_secs(120),
            stale_after: Duration::from_secs(10),
        }
    }

    fn healthy() -> StatusSnapshot {
        StatusSnapshot {
            state: "idle".into(),
            connection: ConnectionStatus {
                websocket: Some("connected".into()),
                breaker: Some("closed".into()),
                ..ConnectionStatus::default()
            },
            ..StatusSnapshot::default()
        }
    }

    #[test]
    fn each_condition_makes_it_unhealthy_with_its_reason() {
        let fresh = Duration::from_secs(1);
        assert!(evaluate(&healthy(), fresh, &settings()).healthy);
        let cases: Vec<(StatusSnapshot, &str)> = vec![
            (
                StatusSnapshot {
                    connection: ConnectionStatus {
                        unauthorized: true,
                        ..healthy().connection
                    },
                    ..healthy()
                },
                "refuses this robot's credentials",
            ),
            (
                StatusSnapshot {
                    connection: ConnectionStatus {
                        breaker: Some("open".into()),
                        ..healthy().connection
                    },
                    ..healthy()
                },
                "circuit breaker",
            ),
            (
                StatusSnapshot {
                    connection: ConnectionStatus {
                        down_for_seconds: Some(61.0),
                        ..healthy().connection
                    },
                    ..healthy()
                },
                "no link to the orchestrator for 61 s",
            ),
            (
                StatusSnapshot {
                    jobs: vec![JobStatus {
                        job_id: "j1".into(),
                        since_progress_seconds: 121.0,
                        current_node: Some("cmd".into()),
                        ..JobStatus::default()
                    }],
                    ..healthy()
                },
                "job j1 made no progress for 121 s (node timeout 120 s), last node cmd",
            ),
            (
                StatusSnapshot {
                    state: "stopping".into(),
                    ..healthy()
                },
                "the robot is stopping",
            ),
            (
                StatusSnapshot {
                    store_damage: Some("the store was damaged (integrity check)".into()),
                    ..healthy()
                },
                "the store was damaged",
            ),
        ];
        for (snap, reason) in cases {
            let h = evaluate(&snap, fresh, &settings());
            assert!(!h.healthy, "{reason}");
            assert!(
                h.reasons.iter().any(|r| r.contains(reason)),
                "{:?}",
                h.reasons
            );
        }
        let stale = evaluate(&healthy(), Duration::from_secs(30), &settings());
        assert!(stale.reasons[0].contains("has not updated its status for 30 s"));
        // Down, but not for long: still healthy.
        let brief = StatusSnapshot {
            connection: ConnectionStatus {
                down_for_seconds: Some(5.0),
                ..healthy().connection
            },
            ..healthy()
        };
        assert!(evaluate(&brief, fresh, &settings()).healthy);
    }

    #[test]
    fn the_server_answers_health_metrics_and_404() {
        let status: SharedStatus = Arc::new(parking_lot::RwLock::new(StatusSnapshot {
            updated_at: chrono::Utc::now().to_rfc3339(),
            ..healthy()
        }));
        let metrics: SharedMetricsText = Arc::new(parking_lot::RwLock::new(
            "casare_robot_jobs_running 0\n".into(),
        ));
        let server = HealthServer::start(0, status.clone(), metrics, settings()).unwrap();
        let base = format!("http://{}", server.addr());
        let get = |path: &str| -> (u16, String) {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into();
            let mut r = agent.get(&format!("{base}{path}")).call().unwrap();
            let code = r.status().as_u16();
            (code, r.body_mut().read_to_string().unwrap())
        };
        let (code, text) = get("/health");
        assert_eq!(code, 200, "{text}");
        assert!(text.contains("\"status\":\"ok\""), "{text}");
        status.write().connection.unauthorized = true;
        let (code, text) = get("/health");
        assert_eq!(code, 503, "{text}");
        assert!(text.contains("credentials"), "{text}");
        let (code, text) = get("/metrics");
        assert_eq!(
            (code, text.as_str()),
            (200, "casare_robot_jobs_running 0\n")
        );
        assert_eq!(get("/nope").0, 404);
        server.stop();
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        let ok = |m: &str, p: &str| Ok((m.to_string(), p.to_string()));
        assert_eq!(
            parse_head(b"GET /health HTTP/1.1\r\n\r\n"),
            ok("GET", "/health")
        );
        assert_eq!(
            parse_head(b"HEAD /metrics?x=1 HTTP/1.0\n\n"),
            ok("HEAD", "/metrics")
        );
        for bad in [
            &b"GET /health\r\n\r\n"[..],
            b"GET health HTTP/1.1\r\n\r\n",
            b"GET /health SMTP/1.0\r\n\r\n",
            b"\xff\xfe /health HTTP/1.1\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad), Err(HeadError::Malformed), "{bad:?}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    /// Reads a whole response (the server closes the connection after it).
    fn read_all(stream: &mut TcpStream) -> String {
        stream.set_read_timeout(Some(HEAD_DEADLINE * 3)).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn idle_slow_and_oversized_clients_are_bounded() {
        let status: SharedStatus = Arc::new(parking_lot::RwLock::new(StatusSnapshot {
            updated_at: chrono::Utc::now().to_rfc3339(),
            ..healthy()
        }));
        let metrics: SharedMetricsText = Default::default();
        let patient = HealthSettings {
            stale_after: Duration::from_secs(3600),
            ..settings()
        };
        let server = HealthServer::start(0, status, metrics, patient).unwrap();
        let addr = server.addr();
        // An oversized head gets 431 and the connection is closed.
        let mut big = TcpStream::connect(addr).unwrap();
        let head = format!(
            "GET /health HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let _ = big.write_all(head.as_bytes());
        let answer = read_all(&mut big);
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
        // Garbage gets 400.
        let mut junk = TcpStream::connect(addr).unwrap();
        junk.write_all(b"hello there\r\n\r\n").unwrap();
        assert!(read_all(&mut junk).starts_with("HTTP/1.1 400 "));
        // Many idle clients: each is closed by the server (read returns end of file) and a
        // request made meanwhile is answered once a thread is free.
        let idle: Vec<TcpStream> = (0..(MAX_CONNECTIONS + MAX_WAITING + 20))
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        let mut probe = TcpStream::connect(addr).unwrap();
        probe.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
        for mut s in idle {
            let text = read_all(&mut s);
            assert_eq!(text, "", "an idle client gets no answer, only a close");
        }
        let mut answered = read_all(&mut probe);
        if answered.is_empty() {
            // The probe was beyond the queue and closed: the server is free again now.
            let mut again = TcpStream::connect(addr).unwrap();
            again.write_all(b"GET /health HTTP/1.1\r\n\r\n").unwrap();
            answered = read_all(&mut again);
        }
        assert!(answered.starts_with("HTTP/1.1 200 OK\r\n"), "{answered:?}");
        assert!(answered.contains("\"status\":\"ok\""), "{answered}");
        server.stop();
    }
}

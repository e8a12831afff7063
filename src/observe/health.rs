//! `/health` and Prometheus `/metrics` on `127.0.0.1:<health_port>`: a small synchronous HTTP
//! server (tiny_http) on its own thread, answering from what the agent publishes (the status
//! snapshot and the metrics text); it never touches agent state and never blocks the agent.
//!
//! `/health` says whether the robot can do its job: 503 with the reasons when the orchestrator
//! refuses its credentials, when the circuit breaker is open, when every link has been down for
//! longer than `health_disconnect_seconds`, when a job made no progress for longer than the node
//! timeout (a stuck node), when the agent stopped updating its status (a wedged robot), or while
//! it stops; 200 otherwise. The body is JSON either way. Nothing secret is in it.

use super::status::{SharedStatus, StatusSnapshot};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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

/// The server's handle: stop flag and thread.
pub struct HealthServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl HealthServer {
    /// Listen on `127.0.0.1:port` (0 picks a free port) and serve on a thread `health`.
    pub fn start(
        port: u16,
        status: SharedStatus,
        metrics: SharedMetricsText,
        settings: HealthSettings,
    ) -> Result<HealthServer, String> {
        let server = tiny_http::Server::http(("127.0.0.1", port))
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for /health: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| "the health server has no IP address".to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("health".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    match server.recv_timeout(Duration::from_millis(200)) {
                        Ok(Some(req)) => answer(req, &status, &metrics, &settings),
                        Ok(None) => {}
                        Err(e) => {
                            log::warn!("health endpoint: {e}");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })
            .map_err(|e| format!("cannot start the health thread: {e}"))?;
        Ok(HealthServer {
            stop,
            thread: Some(thread),
            addr,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop and join (within about 200 ms).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
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

fn answer(
    req: tiny_http::Request,
    status: &SharedStatus,
    metrics: &SharedMetricsText,
    settings: &HealthSettings,
) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let json = |v: &serde_json::Value, code: u16| {
        tiny_http::Response::from_string(v.to_string())
            .with_status_code(code)
            .with_header(header("Content-Type", "application/json"))
    };
    let response = match (req.method(), path.as_str()) {
        (tiny_http::Method::Get | tiny_http::Method::Head, "/health") => {
            let snap = status.read().clone();
            let health = evaluate(&snap, snapshot_age(&snap), settings);
            json(
                &body(&snap, &health),
                if health.healthy { 200 } else { 503 },
            )
        }
        (tiny_http::Method::Get | tiny_http::Method::Head, "/metrics") => {
            tiny_http::Response::from_string(metrics.read().clone()).with_header(header(
                "Content-Type",
                "text/plain; version=0.0.4; charset=utf-8",
            ))
        }
        (_, "/health" | "/metrics") => json(&serde_json::json!({"error": "use GET"}), 405),
        _ => json(
            &serde_json::json!({"error": "not found: try /health or /metrics"}),
            404,
        ),
    };
    if let Err(e) = req.respond(response) {
        log::debug!("health endpoint: cannot answer: {e}");
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Both are ASCII constants: the conversion cannot fail.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|_| unreachable!("ASCII header"))
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
}

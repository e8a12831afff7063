//! Operator features with the real binary: `/health` flipping to 503 and back under each
//! condition, `/metrics`, metrics in heartbeats, `casare-robot status` against a running and a
//! stopped robot, and secrets kept out of everything an operator can read. Every wait has a
//! deadline.

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};
use support::probe::{free_port, get, health_becomes, status};
use support::robot::Robot;
use support::{chain, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(20);

/// A robot on the fake with `/health` on a free port.
fn robot_with_health(fake: &FakeOrchestrator, extra: Value) -> (Robot, u16) {
    let port = free_port();
    let mut config = json!({"orchestrator_url": fake.url(), "health_port": port});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    (Robot::start(config), port)
}

#[test]
fn health_turns_503_while_the_link_is_down_too_long_and_200_when_it_is_back() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let (robot, port) = robot_with_health(
        &fake,
        json!({"health_disconnect_seconds": 1, "circuit_failure_threshold": 1000}),
    );
    health_becomes(port, 200, "\"websocket\":\"connected\"", &robot);
    fake.kill();
    let down = health_becomes(port, 503, "no link to the orchestrator", &robot);
    assert!(down.contains("\"status\":\"unhealthy\""), "{down}");
    fake.restart();
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
}

#[test]
fn health_turns_503_when_credentials_are_refused_and_200_once_accepted() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let (robot, port) = robot_with_health(
        &fake,
        json!({"health_disconnect_seconds": 600, "max_reconnect_delay": 1, "circuit_failure_threshold": 1000}),
    );
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
    fake.refuse_handshake_with(Some(403));
    fake.kill();
    fake.restart();
    health_becomes(port, 503, "refuses this robot's credentials", &robot);
    fake.refuse_handshake_with(None);
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
}

#[test]
fn health_turns_503_while_the_circuit_breaker_is_open() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let (robot, port) = robot_with_health(
        &fake,
        json!({
            "health_disconnect_seconds": 600,
            "circuit_failure_threshold": 2,
            "circuit_timeout": 2,
            "reconnect_delay": 0.1,
            "max_reconnect_delay": 0.2,
        }),
    );
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
    fake.kill();
    health_becomes(port, 503, "circuit breaker", &robot);
    fake.restart();
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
}

#[cfg(unix)]
#[test]
fn health_turns_503_for_a_job_stuck_past_its_node_timeout() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let (robot, port) = robot_with_health(&fake, json!({"node_timeout": 1}));
    health_becomes(port, 200, "\"websocket\":\"connected\"", &robot);
    // Reading a FIFO nobody writes blocks in the kernel: a node that cannot honour its timeout.
    let fifo = robot.dir().join("never-written");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let wf = chain(&[
        (
            "before",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        ),
        (
            "stuck",
            "ReadFileNode",
            json!({"file_path": fifo.to_string_lossy()}),
        ),
    ]);
    fake.assign_job("stuck-job", wf, json!({}), None);
    let body = health_becomes(port, 503, "job stuck-job made no progress", &robot);
    assert!(body.contains("node timeout 1 s"), "{body}");
    assert!(body.contains("last node before"), "{body}");
    // Unblock it: the job ends and the robot is healthy again.
    std::fs::write(&fifo, "done").unwrap();
    fake.wait_until(WAIT, |m| {
        (m["type"] == "job_failed" || m["type"] == "job_complete") && m["job_id"] == "stuck-job"
    })
    .expect("the job ends once the node returns");
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
}

#[test]
fn metrics_travel_in_heartbeats_and_on_the_metrics_endpoint() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let (robot, port) = robot_with_health(&fake, json!({}));
    fake.wait_for("register", WAIT).expect("registered");
    let ok = chain(&[
        (
            "a",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        ),
        (
            "b",
            "SetVariableNode",
            json!({"variable_name": "y", "value": 2}),
        ),
    ]);
    let bad = chain(&[(
        "boom",
        "ThrowErrorNode",
        json!({"error_message": "it broke"}),
    )]);
    for (id, wf) in [("m1", &ok), ("m2", &ok), ("m3", &bad)] {
        fake.assign_job(id, wf.clone(), json!({}), None);
        fake.wait_until(WAIT, |m| {
            (m["type"] == "job_complete" || m["type"] == "job_failed") && m["job_id"] == id
        })
        .expect("job ended");
    }
    let hb = fake
        .wait_until(WAIT, |m| {
            m["type"] == "heartbeat" && m["metrics"]["summary"]["total_jobs"] == 3
        })
        .expect("a heartbeat with the summary");
    let s = &hb["metrics"]["summary"];
    assert_eq!(s["successful_jobs"], 2, "{s}");
    assert_eq!(s["failed_jobs"], 1, "{s}");
    assert_eq!(s["success_rate_percent"], 66.67, "{s}");
    // 5 workflow nodes plus the implicit start node of each of the 3 workflows.
    assert_eq!(s["node_executions"], 8, "{s}");
    assert!(
        s["resources"]["process_memory_mb"].as_f64().unwrap() > 0.0,
        "{s}"
    );
    // /metrics is republished within 100 ms of a job's end.
    let deadline = Instant::now() + WAIT;
    let (code, text) = loop {
        let (code, text) = get(port, "/metrics").expect("metrics endpoint");
        if text.contains("casare_robot_jobs_total{result=\"failed\"} 1")
            || Instant::now() > deadline
        {
            break (code, text);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, 200);
    assert!(
        text.contains("casare_robot_jobs_total{result=\"failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("casare_robot_jobs_total{result=\"succeeded\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("casare_robot_node_executions_total{node_type=\"SetVariableNode\"} 4"),
        "{text}"
    );
    assert!(text.contains("casare_robot_link_up 1"), "{text}");
    drop(robot);
}

#[test]
fn status_reads_the_running_robot_and_knows_when_it_is_gone() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = Robot::start(json!({"orchestrator_url": fake.url()}));
    fake.wait_for("register", WAIT).expect("registered");
    let wf = chain(&[
        (
            "first",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        ),
        ("nap", "WaitNode", json!({"duration": 30})),
    ]);
    fake.assign_job("busy-job", wf, json!({}), None);
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let (code, text) = status(&robot, false);
        if code == 0 && text.contains("busy-job") {
            break text;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", robot.output());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.starts_with("robot test-robot (Test Robot)"), "{text}");
    assert!(text.contains(": busy"), "{text}");
    assert!(
        text.contains("websocket connected (breaker closed)"),
        "{text}"
    );
    assert!(text.contains("first"), "the last completed node: {text}");
    let (code, json_text) = status(&robot, true);
    assert_eq!(code, 0, "{json_text}");
    let v: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["jobs"][0]["job_id"], "busy-job");
    assert!(v["metrics"]["summary"]["total_jobs"].is_number(), "{v}");
    assert!(v["metrics"]["node_stats"].is_object(), "{v}");
    assert_eq!(v["outbox"], 0);
    // Killed: the status file says busy, but the process is gone.
    robot.kill9();
    let (code, text) = status(&robot, false);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("ended without a clean stop"), "{text}");
    // Restarted and stopped cleanly: "stopped".
    robot.spawn();
    assert!(fake.wait_connections(2, WAIT), "{}", robot.output());
    let deadline = Instant::now() + WAIT;
    while status(&robot, false).0 != 0 {
        assert!(Instant::now() < deadline, "{}", robot.output());
        std::thread::sleep(Duration::from_millis(50));
    }
    #[cfg(unix)]
    {
        robot.interrupt();
        robot.wait_exit(WAIT).expect("exits");
        let (code, text) = status(&robot, false);
        assert_eq!(code, 1, "{text}");
        assert!(text.contains("not running (stopped at"), "{text}");
    }
}

#[test]
fn status_without_a_robot_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("robot_config.json");
    std::fs::write(
        &config,
        json!({"data_dir": dir.path().join("data")}).to_string(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .args(["status", "--config", config.to_str().unwrap()])
        .env_clear()
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no robot has run with data_dir"), "{err}");
}

#[test]
fn secrets_stay_out_of_logs_status_health_metrics_and_messages() {
    const KEY: &str = "sk-test-SUPERSECRET-0123456789";
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let (mut robot, port) = robot_with_health(&fake, json!({"api_key": KEY, "log_level": "trace"}));
    fake.wait_for("register", WAIT).expect("registered");
    assert_eq!(fake.last_api_key().as_deref(), Some(KEY), "the key is used");
    fake.assign_job(
        "s1",
        chain(&[("log", "LogNode", json!({"message": "hello"}))]),
        json!({}),
        None,
    );
    fake.wait_until(WAIT, |m| m["type"] == "job_complete")
        .unwrap();
    let (_, health) = get(port, "/health").unwrap();
    let (_, metrics) = get(port, "/metrics").unwrap();
    let (_, status_text) = status(&robot, true);
    #[cfg(unix)]
    {
        robot.interrupt();
        robot.wait_exit(WAIT).expect("exits");
    }
    robot.kill9();
    let mut everything = vec![
        ("health", health),
        ("metrics", metrics),
        ("status", status_text),
        ("output", robot.output()),
        (
            "messages",
            fake.received()
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    ];
    for entry in walk(&robot.dir().join("logs"))
        .into_iter()
        .chain(walk(&robot.data_dir()))
    {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        everything.push((
            "file",
            format!("{}: {}", entry.display(), String::from_utf8_lossy(&bytes)),
        ));
    }
    for (what, text) in &everything {
        assert!(
            !text.contains(KEY),
            "the API key leaked into {what}: {text}"
        );
        assert!(
            !text.contains("SUPERSECRET"),
            "part of the key leaked into {what}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[cfg(unix)]
#[test]
fn audit_trail_and_supabase_broadcasts_after_a_scripted_set_of_jobs() {
    use casare_robot::observe::audit::{AuditEvent, Severity};
    use support::probe::audit_entries;
    use support::recorder::Server;
    const SB_KEY: &str = "sb-test-key-0123456789-SECRET";
    let supabase = Server::ok();
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = Robot::start(json!({
        "orchestrator_url": fake.url(),
        "supabase_url": supabase.url,
        "supabase_key": SB_KEY,
    }));
    fake.wait_for("register", WAIT).expect("registered");
    let ok = chain(&[(
        "set",
        "SetVariableNode",
        json!({"variable_name": "x", "value": 1}),
    )]);
    let bad = chain(&[(
        "boom",
        "ThrowErrorNode",
        json!({"error_message": "it broke"}),
    )]);
    let slow = chain(&[("nap", "WaitNode", json!({"duration": 30}))]);
    for (id, wf) in [("a-ok", &ok), ("a-bad", &bad)] {
        fake.assign_job(id, wf.clone(), json!({}), None);
        fake.wait_until(WAIT, |m| {
            (m["type"] == "job_complete" || m["type"] == "job_failed") && m["job_id"] == id
        })
        .expect("ended");
    }
    fake.assign_job("a-cancel", slow, json!({}), None);
    fake.wait_until(WAIT, |m| {
        m["type"] == "job_accept" && m["job_id"] == "a-cancel"
    })
    .unwrap();
    fake.cancel_job("a-cancel", "changed my mind");
    fake.wait_until(WAIT, |m| m["type"] == "job_cancelled")
        .unwrap();
    robot.interrupt();
    assert!(
        robot.wait_exit(WAIT).is_some_and(|s| s.success()),
        "{}",
        robot.output()
    );

    let entries = audit_entries(&robot);
    let count = |e: AuditEvent| entries.iter().filter(|x| x.event_type == e).count();
    assert_eq!(count(AuditEvent::RobotStarted), 1);
    assert_eq!(count(AuditEvent::RobotStopped), 1);
    assert_eq!(count(AuditEvent::ConnectionEstablished), 1);
    assert_eq!(count(AuditEvent::RobotRegistered), 1);
    assert_eq!(count(AuditEvent::JobReceived), 3);
    assert_eq!(count(AuditEvent::JobStarted), 3);
    assert_eq!(count(AuditEvent::JobCompleted), 1);
    assert_eq!(count(AuditEvent::JobFailed), 1);
    assert_eq!(count(AuditEvent::JobCancelled), 1);
    let failed = entries
        .iter()
        .find(|e| e.event_type == AuditEvent::JobFailed)
        .unwrap();
    assert_eq!(failed.severity, Severity::Error);
    assert_eq!(failed.job_id.as_deref(), Some("a-bad"));
    assert!(failed.message.contains("it broke"), "{failed:?}");
    assert!(entries.iter().all(|e| e.robot_id == "test-robot"));

    // Supabase: every request authenticated, on the robot's topic; node and job events arrived.
    let mut events = Vec::new();
    while let Ok(r) = supabase.requests.try_recv() {
        assert_eq!(r.header("apikey"), Some(SB_KEY));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {SB_KEY}").as_str())
        );
        for m in r.messages() {
            assert_eq!(m["topic"], "robot:test-robot");
            events.push((
                m["event"].as_str().unwrap_or_default().to_string(),
                m["payload"].clone(),
            ));
        }
    }
    let has = |event: &str, job: &str| events.iter().any(|(e, p)| e == event && p["job_id"] == job);
    assert!(has("node_started", "a-ok"), "{events:?}");
    assert!(has("node_completed", "a-ok"), "{events:?}");
    assert!(has("node_error", "a-bad"), "{events:?}");
    for job in ["a-ok", "a-bad", "a-cancel"] {
        assert!(has("job_completed", job), "{job}: {events:?}");
    }
    let statuses: Vec<&Value> = events
        .iter()
        .filter(|(e, _)| e == "job_completed")
        .map(|(_, p)| &p["status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!("completed"), &json!("failed"), &json!("cancelled")]
    );
    // The key never reaches the robot's files.
    for f in walk(robot.dir())
        .into_iter()
        .filter(|f| !f.ends_with("robot_config.json"))
    {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("SECRET"),
            "the Supabase key leaked into {}",
            f.display()
        );
    }
}

/// Threads of process `pid` (Linux).
#[cfg(target_os = "linux")]
fn threads_of(pid: u64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[cfg(target_os = "linux")]
#[test]
fn idle_health_connections_cost_no_threads_and_are_closed() {
    use std::io::{Read, Write};
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let (robot, port) = robot_with_health(&fake, json!({}));
    health_becomes(port, 200, "\"status\":\"ok\"", &robot);
    let status_file = robot.data_dir().join("status.json");
    let mut pid = None;
    assert!(
        support::wait_flag(WAIT, || {
            pid = std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["pid"].as_u64());
            pid.is_some()
        }),
        "no status file with the pid"
    );
    let pid = pid.unwrap();
    let before = threads_of(pid);
    assert!(before > 0);
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Every connection has been accepted once a request after them is answered.
    let body = health_becomes(port, 200, "\"status\":\"ok\"", &robot);
    assert!(body.contains("robot_id"), "{body}");
    let during = threads_of(pid);
    assert!(
        during <= before + 1,
        "{during} threads with 300 idle connections (before: {before})"
    );
    // An oversized request head is refused.
    let mut big = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(100_000)
    );
    let _ = big.write_all(head.as_bytes());
    big.set_read_timeout(Some(WAIT)).unwrap();
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    // The server closes idle connections (end of file, no answer), each within the deadline.
    for s in &mut idle {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    }
}

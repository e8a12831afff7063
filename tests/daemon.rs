//! The daemon end to end: the real binary (`casare-robot start`) against the fake orchestrator on
//! 127.0.0.1, real sockets and threads. Every wait has a deadline.

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
#[cfg(unix)]
use std::process::Command;
use std::time::{Duration, Instant};
use support::robot::Robot;
use support::{chain, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(15);

fn start_robot(fake: &FakeOrchestrator, extra: Value) -> Robot {
    let mut config = json!({
        "orchestrator_url": fake.url(),
        "ws_dialect": if fake.dialect() == Dialect::Reference { "reference" } else { "casare" },
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Robot::start(config)
}

fn workflow(nodes: Value, connections: Value) -> Value {
    json!({"metadata": {"name": "test"}, "nodes": nodes, "connections": connections})
}

fn quick() -> Value {
    chain(&[
        (
            "greet",
            "SetVariableNode",
            json!({"variable_name": "greeting", "value": "hi {{who}}"}),
        ),
        ("log", "LogNode", json!({"message": "{{greeting}}"})),
    ])
}

fn waiting(secs: f64) -> Value {
    chain(&[
        (
            "before",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        ),
        ("wait", "WaitNode", json!({"duration": secs})),
        (
            "after",
            "SetVariableNode",
            json!({"variable_name": "y", "value": 2}),
        ),
    ])
}

fn for_job<'a>(job: &'a str, ty: &'a str) -> impl FnMut(&Value) -> bool + 'a {
    move |m| m["job_id"] == job && m["type"] == ty
}

fn registered(fake: &FakeOrchestrator) -> Value {
    fake.wait_for("register", WAIT)
        .expect("the robot registers")
}

#[test]
fn registers_heartbeats_and_runs_a_job_to_completion() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = start_robot(&fake, json!({"api_key": "secret-key-123456"}));
    let reg = registered(&fake);
    assert_eq!(reg["robot_id"], "test-robot");
    assert_eq!(reg["robot_name"], "Test Robot");
    assert!(reg["capabilities"]["node_types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "HttpRequestNode"));
    assert_eq!(
        fake.last_request_path().as_deref(),
        Some("/ws/robot/test-robot")
    );
    assert_eq!(fake.last_api_key().as_deref(), Some("secret-key-123456"));
    let hb = fake.wait_for("heartbeat", WAIT).expect("a heartbeat");
    assert_eq!(hb["status"], "idle");
    assert!(hb["memory_mb"].as_f64().unwrap() > 0.0);

    fake.assign_job("job-1", quick(), json!({"who": "there"}), None);
    fake.wait_until(WAIT, for_job("job-1", "job_accept"))
        .expect("job_accept");
    let done = fake
        .wait_until(WAIT, for_job("job-1", "job_complete"))
        .expect("job_complete");
    assert_eq!(done["result"]["success"], true);
    assert_eq!(done["result"]["outputs"]["greeting"], "hi there");
    assert_eq!(
        done["result"]["outputs"].get("_job_id"),
        None,
        "internal names are not outputs"
    );
    assert_eq!(done["result"]["recovered"], false);
    assert!(done["result"]["duration_s"].is_f64(), "{done}");
    // Progress reaches 100 % before the result: the last node's completion is never throttled.
    let received = fake.received();
    let last_progress = received
        .iter()
        .take_while(|m| !(m["job_id"] == "job-1" && m["type"] == "job_complete"))
        .filter(|m| m["job_id"] == "job-1" && m["type"] == "job_progress")
        .last()
        .expect("progress before the result");
    assert_eq!(last_progress["progress"], 100, "{last_progress}");
    let logs: Vec<Value> = fake
        .received()
        .into_iter()
        .filter(|m| m["type"] == "log_batch")
        .collect();
    assert!(
        logs.iter().any(|b| b["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"] == "[log] hi there")),
        "log lines reach the orchestrator: {logs:?}"
    );
    let secrets = robot.output();
    assert!(
        !secrets.contains("secret-key-123456"),
        "the API key never appears in logs"
    );
}

#[test]
fn rejects_at_capacity_and_unsupported_nodes_and_fails_invalid_workflows() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.assign_job("long", waiting(30.0), json!({}), None);
    fake.wait_until(WAIT, for_job("long", "job_accept"))
        .unwrap();
    fake.assign_job("second", quick(), json!({}), None);
    let r = fake
        .wait_until(WAIT, for_job("second", "job_reject"))
        .expect("reject at capacity");
    assert_eq!(r["reason"], "at capacity (1 of 1 jobs running)");
    fake.cancel_job("long", "test over");
    fake.wait_until(WAIT, for_job("long", "job_cancelled"))
        .expect("cancelled");

    let browser = chain(&[
        ("b", "LaunchBrowserNode", json!({})),
        ("c", "ClickElementNode", json!({})),
    ]);
    fake.assign_job("browser", browser, json!({}), None);
    let r = fake
        .wait_until(WAIT, for_job("browser", "job_reject"))
        .expect("reject unsupported");
    assert_eq!(
        r["reason"],
        "unsupported node types: ClickElementNode, LaunchBrowserNode"
    );

    let broken = workflow(
        json!({"a": {"node_id": "a", "node_type": "LogNode", "config": {}}}),
        json!([{"source_node": "a", "source_port": "exec_out", "target_node": "ghost", "target_port": "exec_in"}]),
    );
    fake.assign_job("broken", broken, json!({}), None);
    let f = fake
        .wait_until(WAIT, for_job("broken", "job_failed"))
        .expect("invalid workflow fails");
    assert!(
        f["error"]
            .as_str()
            .unwrap()
            .contains("refers to missing node \"ghost\""),
        "{f}"
    );
}

#[test]
fn cancel_interrupts_a_long_wait_and_a_long_command() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.assign_job("w", waiting(60.0), json!({}), None);
    fake.wait_until(WAIT, for_job("w", "job_accept")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    fake.cancel_job("w", "user asked");
    fake.wait_until(WAIT, for_job("w", "job_cancelled"))
        .expect("wait cancelled");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "cancel is prompt: {:?}",
        t.elapsed()
    );

    if cfg!(unix) {
        let marker = std::env::temp_dir().join(format!("casare-cancel-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let cmd = chain(&[(
            "sleep",
            "RunCommandNode",
            json!({"command": format!("sleep 30 && touch {}", marker.display()), "shell": true, "allow_dangerous": true, "timeout": 60}),
        )]);
        fake.assign_job("c", cmd, json!({}), None);
        fake.wait_until(WAIT, for_job("c", "job_accept")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        fake.cancel_job("c", "stop the command");
        fake.wait_until(WAIT, for_job("c", "job_cancelled"))
            .expect("command cancelled");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
        assert!(!marker.exists(), "the command's process tree was killed");
    }
}

#[test]
fn survives_an_orchestrator_restart_mid_job_and_delivers_the_result() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.assign_job("j", waiting(1.5), json!({}), None);
    fake.wait_until(WAIT, for_job("j", "job_accept")).unwrap();
    fake.kill();
    std::thread::sleep(Duration::from_millis(300));
    fake.restart();
    // The robot reconnects, registers again, and the result (queued while offline) arrives.
    let done = fake
        .wait_until(WAIT, for_job("j", "job_complete"))
        .expect("result after the restart");
    assert_eq!(done["result"]["success"], true);
    assert!(fake.connections() >= 2, "reconnected");
}

#[test]
fn a_silent_peer_is_detected_and_replaced() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = start_robot(&fake, json!({}));
    registered(&fake);
    assert!(fake.wait_connections(1, WAIT));
    fake.go_silent();
    // heartbeat_interval 1 s: no inbound frame for 2 s means dead; the robot connects again.
    assert!(
        fake.wait_connections(2, Duration::from_secs(20)),
        "reconnected after silence: {}",
        robot.output()
    );
    assert!(
        robot.output().contains("dead connection"),
        "{}",
        robot.output()
    );
}

#[test]
fn a_403_does_not_hammer_the_server() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    fake.refuse_handshake_with(Some(403));
    let robot = start_robot(&fake, json!({"max_reconnect_delay": 3.0}));
    let deadline = Instant::now() + WAIT;
    while fake.handshake_attempts() == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    // Unauthorized retries only at the maximum backoff (3 s here, jittered ±10%).
    assert_eq!(fake.handshake_attempts(), 1, "{}", robot.output());
    assert!(
        robot.output().contains("refuses this robot's credentials"),
        "{}",
        robot.output()
    );
}

#[test]
fn malformed_and_unknown_frames_are_ignored_and_the_link_kept() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.send_raw_text("this is not json");
    fake.send_raw_text("[1, 2, 3]");
    fake.send(json!({"no_type": true}));
    fake.send(json!({"type": "quantum_entangle", "x": 1}));
    fake.send(json!({"type": "job_assign", "job_id": "nowf"}));
    fake.send(json!({"type": "ping"}));
    fake.wait_for("pong", WAIT).expect("still answering");
    fake.send(json!({"type": "status_request"}));
    let st = fake
        .wait_for("status_response", WAIT)
        .expect("status_response");
    assert_eq!(st["status"], "idle");
    fake.assign_job("ok", quick(), json!({"who": "you"}), None);
    fake.wait_until(WAIT, for_job("ok", "job_complete"))
        .expect("jobs still run");
    assert_eq!(fake.connections(), 1, "the connection was kept");
}

#[test]
fn pause_resume_and_duplicate_assignments() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.send(json!({"type": "pause"}));
    fake.wait_until(WAIT, |m| {
        m["type"] == "heartbeat" && m["status"] == "paused"
    })
    .expect("paused heartbeat");
    fake.assign_job("p", quick(), json!({}), None);
    let r = fake.wait_until(WAIT, for_job("p", "job_reject")).unwrap();
    assert_eq!(r["reason"], "the robot is paused (draining)");
    fake.send(json!({"type": "resume"}));
    fake.assign_job("p", quick(), json!({"who": "once"}), None);
    let first = fake.wait_until(WAIT, for_job("p", "job_complete")).unwrap();
    // The same job again: answered from the record, not run again (no second progress/log).
    fake.assign_job("p", quick(), json!({"who": "twice"}), None);
    let again = fake.wait_until(WAIT, for_job("p", "job_complete")).unwrap();
    assert_eq!(again["result"]["outputs"], first["result"]["outputs"]);
    assert_eq!(again["result"]["outputs"]["greeting"], "hi once");
}

#[cfg(unix)]
#[test]
fn ctrl_c_lets_a_short_job_finish_then_exits() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.assign_job("s", waiting(1.0), json!({}), None);
    fake.wait_until(WAIT, for_job("s", "job_accept")).unwrap();
    robot.interrupt();
    fake.wait_until(WAIT, |m| {
        m["type"] == "heartbeat" && m["status"] == "stopping"
    })
    .expect("stopping");
    fake.wait_until(WAIT, for_job("s", "job_complete"))
        .expect("the running job finishes");
    let status = robot.wait_exit(WAIT).expect("the robot exits");
    assert!(status.success(), "{}", robot.output());
}

#[cfg(unix)]
#[test]
fn shutdown_past_the_grace_period_holds_jobs_and_the_next_start_resumes_them() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = start_robot(&fake, json!({"graceful_shutdown_seconds": 1}));
    registered(&fake);
    fake.assign_job("long", waiting(4.0), json!({}), None);
    fake.wait_until(WAIT, for_job("long", "job_accept"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    robot.interrupt();
    let status = robot.wait_exit(WAIT).expect("the robot exits");
    assert!(status.success(), "{}", robot.output());
    // Held, not failed: nothing is reported for it.
    let said: Vec<Value> = fake
        .received()
        .into_iter()
        .filter(|m| {
            m["job_id"] == "long" && m["type"] != "job_accept" && m["type"] != "job_progress"
        })
        .collect();
    assert!(said.is_empty(), "{said:?}");
    // Its checkpoint is kept: an operator can see it.
    let out = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .args(["checkpoints", "list", "--json"])
        .env_clear()
        .env("CASARE_DATA_DIR", robot.data_dir())
        .env("HOME", robot.data_dir())
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        rows[0]["job_id"],
        "long",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The next start resumes it on its own (no new assignment) and reports it once.
    robot.spawn();
    let done = fake
        .wait_until(WAIT, for_job("long", "job_complete"))
        .expect("resumed and completed");
    assert_eq!(done["result"]["recovered"], true, "{done}");
    assert!(robot.output().contains("it resumes"), "{}", robot.output());
}

/// A service manager stopping the robot (SIGTERM) gets the same drain as Ctrl+C.
#[cfg(unix)]
#[test]
fn sigterm_drains_like_ctrl_c() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.assign_job("t", waiting(0.5), json!({}), None);
    fake.wait_until(WAIT, for_job("t", "job_accept")).unwrap();
    robot.signal("-TERM");
    fake.wait_until(WAIT, for_job("t", "job_complete"))
        .expect("the running job finishes");
    let status = robot.wait_exit(WAIT).expect("the robot exits");
    assert!(status.success(), "{}", robot.output());
    // Named as what it was, not as a Ctrl+C.
    assert!(
        robot.output().contains("stopping (SIGTERM)"),
        "{}",
        robot.output()
    );
    assert!(
        !robot.output().contains("Ctrl+C again"),
        "{}",
        robot.output()
    );
}

#[test]
fn the_orchestrator_can_shut_the_robot_down() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.shutdown_robot(true);
    let status = robot.wait_exit(WAIT).expect("the robot exits");
    assert!(status.success(), "{}", robot.output());
}

#[test]
fn reference_dialect_round_trip() {
    let fake = FakeOrchestrator::start(Dialect::Reference);
    let _robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.wait_for("status_update", WAIT)
        .expect("status_update instead of heartbeat");
    fake.assign_job("r", quick(), json!({"who": "ref"}), None);
    let res = fake
        .wait_until(WAIT, for_job("r", "job_result"))
        .expect("job_result");
    assert_eq!(res["status"], "completed");
    assert_eq!(res["outputs"]["greeting"], "hi ref");
}

#[cfg(unix)]
#[test]
fn checkpoint_enabled_false_runs_jobs_without_checkpoints() {
    let list = |robot: &Robot| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
            .args(["checkpoints", "list", "--json"])
            .env_clear()
            .env("CASARE_DATA_DIR", robot.data_dir())
            .env("HOME", robot.dir())
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)))
    };
    for (enabled, expect_checkpoint) in [(false, false), (true, true)] {
        let fake = FakeOrchestrator::start(Dialect::Casare);
        let mut robot = start_robot(
            &fake,
            json!({"checkpoint_enabled": enabled, "graceful_shutdown_seconds": 0}),
        );
        registered(&fake);
        fake.assign_job("nc", waiting(30.0), json!({}), None);
        fake.wait_until(WAIT, for_job("nc", "job_accept")).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // Stopped by the shutdown: held for the next start, with its checkpoint when they are on.
        robot.interrupt();
        assert!(
            robot.wait_exit(WAIT).is_some_and(|s| s.success()),
            "{}",
            robot.output()
        );
        let rows = list(&robot);
        let has = rows
            .as_array()
            .is_some_and(|r| r.iter().any(|c| c["job_id"] == "nc"));
        assert_eq!(
            has, expect_checkpoint,
            "checkpoint_enabled = {enabled}: {rows}"
        );
    }
}

/// A peer that accepts TCP but never answers the WebSocket handshake must not hold up shutdown.
#[cfg(unix)]
#[test]
fn shutdown_is_prompt_while_a_handshake_hangs() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        // Accept and hold connections without a byte of reply.
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = start_robot(
        &fake,
        json!({"orchestrator_url": format!("ws://127.0.0.1:{port}")}),
    );
    // Let the robot start its connect and get stuck in the handshake.
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    robot.interrupt();
    let status = robot
        .wait_exit(Duration::from_secs(8))
        .expect("the robot exits promptly");
    assert!(status.success(), "{}", robot.output());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        asked.elapsed()
    );
    drop(holder);
}

/// `checkpoints list` and `show` while the daemon owns the store: answered by the daemon.
#[test]
fn checkpoints_can_be_inspected_while_the_daemon_runs() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = start_robot(&fake, json!({}));
    registered(&fake);
    fake.assign_job("held", waiting(30.0), json!({}), None);
    fake.wait_until(WAIT, for_job("held", "job_accept"))
        .unwrap();
    let config = robot.dir().join("robot_config.json");
    let inspect = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_casare-robot"))
            .arg("checkpoints")
            .args(args)
            .arg("--config")
            .arg(&config)
            .env_clear()
            .env("HOME", robot.dir())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The job's first checkpoint is saved once its first node completes.
    let deadline = Instant::now() + WAIT;
    let rows = loop {
        let (code, stdout, stderr) = inspect(&["list", "--json"]);
        assert_eq!(code, Some(0), "{stderr}");
        let rows: Value = serde_json::from_str(&stdout).expect("a JSON list");
        if rows.as_array().is_some_and(|r| !r.is_empty()) {
            break rows;
        }
        assert!(Instant::now() < deadline, "no checkpoint listed: {stdout}");
    };
    assert_eq!(rows[0]["job_id"], "held", "{rows}");
    assert_eq!(rows[0]["last_completed_node"], "before", "{rows}");
    let (code, stdout, stderr) = inspect(&["list"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("held") && stdout.contains("running"),
        "{stdout}"
    );
    let (code, stdout, stderr) = inspect(&["show", "held"]);
    assert_eq!(code, Some(0), "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(shown["job_id"], "held", "{shown}");
    let (code, _, stderr) = inspect(&["show", "nothing-here"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no checkpoint and no recorded result for job nothing-here"),
        "{stderr}"
    );
    // Clearing writes: refused while the robot runs, saying why.
    let (code, _, stderr) = inspect(&["clear", "held"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("stop it to clear checkpoints"), "{stderr}");
}

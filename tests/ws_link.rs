//! The WebSocket link against misbehaving orchestrators: the real binary (`casare-robot start`)
//! against the fake orchestrator on 127.0.0.1 (a stalled handler, a frame size limit, a
//! trickling handshake, refused registrations). Every wait has a deadline.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::robot::Robot;
use support::{chain, FakeOrchestrator};

use casare_robot::link::protocol::Dialect;

const WAIT: Duration = Duration::from_secs(20);

fn start_robot(fake: &FakeOrchestrator, extra: Value) -> Robot {
    let mut config = json!({ "orchestrator_url": fake.url() });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Robot::start(config)
}

fn quick() -> Value {
    chain(&[(
        "greet",
        "SetVariableNode",
        json!({"variable_name": "greeting", "value": "hi"}),
    )])
}

fn for_job<'a>(job: &'a str, ty: &'a str) -> impl FnMut(&Value) -> bool + 'a {
    move |m| m["job_id"] == job && m["type"] == ty
}

/// A robot started against `fake` (with `extra` config) that has registered.
fn registered_robot(fake: &FakeOrchestrator, extra: Value) -> Robot {
    let robot = start_robot(fake, extra);
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    robot
}

/// The outbox count a heartbeat reports.
fn outbox_of(heartbeat: &Value) -> u64 {
    heartbeat["metrics"]["outbox"]
        .as_u64()
        .unwrap_or_else(|| panic!("a heartbeat without an outbox count: {heartbeat}"))
}

#[test]
fn a_result_stays_queued_while_a_stalled_orchestrator_does_not_acknowledge_it() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = registered_robot(&fake, json!({}));
    fake.wait_for("heartbeat", WAIT).expect("a heartbeat");
    // The handler hangs; the WebSocket layer still answers the robot's keepalive pings.
    fake.stall_handler(true);
    fake.assign_job("job-1", quick(), json!({}), None);
    fake.wait_until(WAIT, for_job("job-1", "job_complete"))
        .expect("job_complete is sent");
    // Well past the acknowledgement timeout (2 × heartbeat, at least 5 s): eight heartbeats.
    let mut last = Value::Null;
    for n in 0..8 {
        last = fake
            .wait_for("heartbeat", WAIT)
            .unwrap_or_else(|| panic!("heartbeat {n} after the result"));
    }
    assert_eq!(
        outbox_of(&last),
        1,
        "an unacknowledged result stays in the outbox: {last}"
    );
    robot.wait_for_output("has not acknowledged a heartbeat", WAIT);
    // The orchestrator restarts; the result arrives on the new connection, then leaves the outbox.
    fake.kill();
    fake.stall_handler(false);
    fake.restart();
    fake.wait_until(WAIT, for_job("job-1", "job_complete"))
        .expect("the result is sent again after the restart");
    let drained = fake.wait_until(WAIT, |m| m["type"] == "heartbeat" && outbox_of(m) == 0);
    assert!(
        drained.is_some(),
        "acknowledged, the result leaves the outbox"
    );
}

#[test]
fn a_ping_behind_a_large_frame_on_a_slow_link_does_not_drop_the_connection() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = registered_robot(&fake, json!({"max_frame_mb": 64}));
    fake.wait_for("heartbeat", WAIT).expect("a heartbeat");
    // The link stops draining for longer than a ping interval (1 s) while a result larger than
    // every socket buffer is on its way.
    fake.pause_reading_for(Duration::from_secs(4));
    let big = "x".repeat(6 * 1024 * 1024);
    fake.assign_job("job-big", quick(), json!({"big": big}), None);
    let done = fake
        .wait_until(WAIT, for_job("job-big", "job_complete"))
        .expect("the large result arrives");
    assert_eq!(
        done["result"]["outputs"]["big"].as_str().map(str::len),
        Some(big.len())
    );
    assert_eq!(fake.connections(), 1, "on the first connection");
    let out = robot.output();
    assert!(!out.contains("ping failed"), "{out}");
}

#[test]
fn a_flood_of_unknown_message_types_is_not_remembered_one_by_one() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = registered_robot(&fake, json!({"log_level": "debug"}));
    for n in 0..2_000 {
        fake.send(json!({"type": format!("made_up_{n}")}));
    }
    fake.send(json!({"type": "ping"}));
    fake.wait_for("pong", WAIT)
        .expect("the robot still answers");
    let out = robot.output();
    let logged = out.matches("ignored unknown message type").count();
    assert!(
        (1..=64).contains(&logged),
        "{logged} unknown types logged (and remembered)"
    );
    assert!(out.contains("further ones are ignored without a log line"));
}

#[test]
fn the_breaker_says_in_a_sentence_that_it_opened() {
    // A port nothing listens on: every attempt fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let robot = Robot::start(json!({"orchestrator_url": format!("ws://127.0.0.1:{port}")}));
    robot.wait_for_output(
        "circuit breaker opened after 5 consecutive failures: no connection attempts for",
        WAIT,
    );
    let out = robot.output();
    assert!(
        !out.contains("Transition {"),
        "no Debug struct in the log: {out}"
    );
}

#[test]
fn a_trickling_handshake_is_bounded_as_a_whole() {
    // A peer that accepts TCP and answers the upgrade one byte per half second: every read succeeds,
    // the handshake never completes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("non-blocking");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let trickler = {
        let (stop, accepted) = (stop.clone(), accepted.clone());
        std::thread::Builder::new()
            .name("trickler".into())
            .spawn(move || {
                use std::io::Write;
                // Each peer with how much of the answer it got (the answer never completes).
                let mut peers: Vec<(std::net::TcpStream, usize)> = Vec::new();
                let answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n";
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if let Ok((peer, _)) = listener.accept() {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        peers.push((peer, 0));
                    }
                    for (peer, sent) in &mut peers {
                        if let Some(byte) = answer.get(*sent..*sent + 1) {
                            let _ = peer.write_all(byte);
                            *sent += 1;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
            .expect("spawn")
    };
    let robot = Robot::start(json!({"orchestrator_url": format!("ws://127.0.0.1:{port}")}));
    robot.wait_for_output("orchestrator unreachable", Duration::from_secs(30));
    assert!(
        support::wait_flag(Duration::from_secs(30), || {
            accepted.load(std::sync::atomic::Ordering::SeqCst) >= 2
        }),
        "the robot gives up on the first handshake and tries again"
    );
    let out = robot.output();
    assert!(
        out.contains("the handshake did not complete within 10 s"),
        "{out}"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = trickler.join();
}

#[test]
fn a_malformed_assignment_with_a_job_id_is_rejected_naming_the_field() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = registered_robot(&fake, json!({}));
    let cases = [
        (
            json!({"type": "job_assign", "job_id": "bad-wf", "workflow_data": [1, 2]}),
            "workflow_data",
        ),
        (
            json!({"type": "job_assign", "job_id": "bad-json", "workflow_json": "{nope"}),
            "workflow_json",
        ),
        (
            json!({"type": "job_assign", "job_id": "bad-vars", "workflow_data": quick(), "variables": "x=1"}),
            "variables",
        ),
        (
            json!({"type": "job_assign", "job_id": "bad-timeout", "workflow_data": quick(), "timeout": "soon"}),
            "timeout",
        ),
        (
            json!({"type": "job_assign", "job_id": "no-wf"}),
            "workflow_data/workflow_json/workflow",
        ),
    ];
    for (msg, field) in cases {
        let job_id = msg["job_id"].as_str().unwrap_or_default().to_string();
        fake.send(msg);
        let reject = fake
            .wait_until(WAIT, for_job(&job_id, "job_reject"))
            .unwrap_or_else(|| panic!("{job_id} is answered with job_reject"));
        let reason = reject["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("\"{field}\"")),
            "{job_id}: {reason}"
        );
    }
    let out = robot.output();
    assert!(
        out.contains("[WARN ] job bad-vars: malformed assignment from the orchestrator"),
        "{out}"
    );
    // The robot keeps running jobs.
    fake.assign_job("ok", quick(), json!({}), None);
    fake.wait_until(WAIT, for_job("ok", "job_complete"))
        .expect("jobs still run");
    assert_eq!(fake.connections(), 1, "the connection was kept");
}

fn assert_truncated(done: &Value, job_id: &str) {
    let result = &done["result"];
    assert_eq!(result["truncated"], true, "{result}");
    assert_eq!(result["success"], true);
    let note = result["outputs"]["truncated"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!("casare-robot checkpoints show {job_id}")),
        "the note says how to read the full result: {note}"
    );
    assert!(note.contains("max_frame_mb"), "{note}");
}

#[test]
fn a_result_over_max_frame_mb_is_delivered_truncated_with_a_note() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = registered_robot(&fake, json!({"max_frame_mb": 1}));
    let big = "x".repeat(2 * 1024 * 1024);
    fake.assign_job("job-big", quick(), json!({"big": big}), None);
    let done = fake
        .wait_until(WAIT, for_job("job-big", "job_complete"))
        .expect("the result arrives");
    assert_truncated(&done, "job-big");
    assert!(done.to_string().len() < 1024 * 1024);
    robot.wait_for_output("it is sent truncated", WAIT);
    // What the note says to run prints the whole result, from the running robot's record.
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .args(["checkpoints", "show", "job-big", "--config"])
        .arg(robot.dir().join("robot_config.json"))
        .env_clear()
        .env("HOME", robot.dir())
        .output()
        .unwrap();
    assert_eq!(
        shown.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["state"], "finished", "{}", shown["state"]);
    assert_eq!(
        shown["recorded_report"]["result"]["outputs"]["big"]
            .as_str()
            .map(str::len),
        Some(big.len()),
        "the full result is in the record"
    );
    // A result that fits is sent whole.
    fake.assign_job("job-small", quick(), json!({"small": "y"}), None);
    let done = fake
        .wait_until(WAIT, for_job("job-small", "job_complete"))
        .expect("the small result arrives");
    assert_eq!(done["result"]["outputs"]["small"], "y");
    assert_eq!(done["result"].get("truncated"), None);
}

#[test]
fn a_frame_the_orchestrator_refuses_as_too_big_is_not_sent_again_unchanged() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    // uvicorn closes with 1009 past its limit (16 MiB by default); here 1 MiB, under the
    // robot's default max_frame_mb of 8.
    fake.limit_message_size(Some(1024 * 1024));
    let robot = registered_robot(&fake, json!({}));
    let big = "x".repeat(3 * 1024 * 1024);
    fake.assign_job("job-big", quick(), json!({"big": big}), None);
    let done = fake
        .wait_until(WAIT, for_job("job-big", "job_complete"))
        .unwrap_or_else(|| {
            panic!(
                "the result arrives after the refusal:\n{}\n{:?}",
                robot.output(),
                fake.received()
                    .iter()
                    .map(|m| format!("{}:{}", m["type"], m.to_string().len()))
                    .collect::<Vec<_>>()
            )
        });
    assert_truncated(&done, "job-big");
    let refused = fake
        .received()
        .iter()
        .filter(|m| m["type"] == "_too_big")
        .count();
    assert!(refused >= 1, "the full frame was refused first");
    assert!(fake.connections() >= 2);
    robot.wait_for_output("refused a message as too big (close code 1009", WAIT);
}

#[test]
fn a_rest_result_over_max_frame_mb_is_sent_truncated_too() {
    let fake = support::rest::FakeRest::start();
    let robot = Robot::start(json!({
        "api_url": fake.url(),
        "poll_interval": 0.1,
        "poll_max_interval": 0.3,
        "max_frame_mb": 1,
    }));
    let big = "x".repeat(2 * 1024 * 1024);
    fake.submit("rest-big", quick(), json!({"big": big}));
    assert!(
        fake.wait_until(WAIT, |f| f.completions("rest-big") >= 1),
        "the result is delivered:\n{}",
        robot.output()
    );
    let results = fake.results("rest-big");
    let result = results.first().cloned().unwrap_or_default();
    assert_eq!(result["truncated"], true, "{result}");
    let note = result["outputs"]["truncated"].as_str().unwrap_or_default();
    assert!(
        note.contains("casare-robot checkpoints show rest-big"),
        "{note}"
    );
}

#[test]
fn the_robot_re_registers_soon_after_orchestrator_restarts() {
    // The reference reconnect parameters (1 s, ×2, up to 60 s), not the fast test defaults.
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = registered_robot(
        &fake,
        json!({"reconnect_delay": 1.0, "max_reconnect_delay": 60.0}),
    );
    let mut waits = Vec::new();
    for (round, down) in [1, 3, 2, 4, 3, 2].into_iter().enumerate() {
        fake.kill();
        // The orchestrator is down for a restart of `down` seconds.
        std::thread::sleep(Duration::from_secs(down));
        while fake.recv(Duration::ZERO).is_some() {}
        fake.restart();
        let back = std::time::Instant::now();
        fake.wait_for("register", Duration::from_secs(90))
            .unwrap_or_else(|| panic!("round {round}: the robot registers again"));
        waits.push(back.elapsed().as_secs_f64());
    }
    waits.sort_by(f64::total_cmp);
    // Measured, not asserted (the schedule's bound is asserted on the sans-IO connection).
    println!(
        "re-registration after a restart: {:?} s; p95 (the largest of {}) {:.2} s",
        waits.iter().map(|w| format!("{w:.2}")).collect::<Vec<_>>(),
        waits.len(),
        waits[waits.len() - 1]
    );
}

#[test]
fn a_refused_registration_waits_the_maximum_backoff_before_trying_again() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    fake.refuse_registration(true);
    let robot = registered_robot(&fake, json!({"max_reconnect_delay": 30.0}));
    robot.wait_for_output("refused the registration", WAIT);
    // The unauthorized schedule (about 30 s here) holds: no second handshake within 5 s (the
    // robot's own close used to replace it with a quick reconnect, dozens a minute).
    let again = support::wait_flag(Duration::from_secs(5), || fake.handshake_attempts() >= 2);
    assert!(
        !again,
        "{} handshakes:\n{}",
        fake.handshake_attempts(),
        robot.output()
    );
    assert!(robot.output().contains("next attempt in"));
}

#[test]
fn a_duplicate_assignment_is_answered_while_the_first_result_waits_for_its_acknowledgement() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = registered_robot(&fake, json!({}));
    // No acknowledgements: the result stays in the outbox, sent and unacknowledged.
    fake.stall_handler(true);
    fake.assign_job("dup", quick(), json!({}), None);
    let first = fake
        .wait_until(WAIT, for_job("dup", "job_complete"))
        .expect("the result");
    fake.assign_job("dup", quick(), json!({}), None);
    fake.wait_until(WAIT, for_job("dup", "job_accept"))
        .expect("the duplicate is accepted");
    let again = fake
        .wait_until(WAIT, for_job("dup", "job_complete"))
        .expect("and answered with the recorded result");
    assert_eq!(again["result"]["outputs"], first["result"]["outputs"]);
}

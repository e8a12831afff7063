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

/// The outbox count a heartbeat reports.
fn outbox_of(heartbeat: &Value) -> u64 {
    heartbeat["metrics"]["outbox"]
        .as_u64()
        .unwrap_or_else(|| panic!("a heartbeat without an outbox count: {heartbeat}"))
}

#[test]
fn a_result_stays_queued_while_a_stalled_orchestrator_does_not_acknowledge_it() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = start_robot(&fake, json!({}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
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
    let robot = start_robot(&fake, json!({}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
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
    let robot = start_robot(&fake, json!({"log_level": "debug"}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
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

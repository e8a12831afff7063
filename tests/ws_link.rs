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
    fake.wait_for("register", WAIT).expect("the robot registers");
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
    assert!(drained.is_some(), "acknowledged, the result leaves the outbox");
}

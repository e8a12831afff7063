//! What an operator (or a test) reads of a running robot binary: `/health` on a free port,
//! `casare-robot status`, and a REST-only robot on the fake REST orchestrator. Every wait has a
//! deadline.
#![allow(dead_code)]

use super::rest::FakeRest;
use super::robot::Robot;
use casare_robot::observe::audit::{read_dir, AuditEntry, AuditQuery};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long the waits here wait.
const WAIT: Duration = Duration::from_secs(20);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `http://127.0.0.1:port/path` → (status, body); None while nothing listens.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut r = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    let code = r.status().as_u16();
    Some((code, r.body_mut().read_to_string().unwrap_or_default()))
}

/// Wait until `/health` answers `code` with a body containing `text`; returns the body.
pub fn health_becomes(port: u16, code: u16, text: &str, robot: &Robot) -> String {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some((c, body)) = get(port, "/health") {
            if c == code && body.contains(text) {
                return body;
            }
            last = Some((c, body));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "/health never answered {code} with {text:?}; last {last:?}\n{}",
        robot.output()
    );
}

/// `casare-robot status [--json]` for the robot: (exit code, output).
pub fn status(robot: &Robot, json_out: bool) -> (i32, String) {
    // option_env: this module is also compiled into the demo and the benches (see robot.rs).
    let bin = option_env!("CARGO_BIN_EXE_casare-robot").unwrap_or("casare-robot");
    let mut cmd = Command::new(bin);
    cmd.arg("status").args([
        "--config",
        robot.dir().join("robot_config.json").to_str().unwrap(),
    ]);
    if json_out {
        cmd.arg("--json");
    }
    let out = cmd.env_clear().env("HOME", robot.dir()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every entry of the robot's audit trail (`<log_dir>/audit`), oldest first.
pub fn audit_entries(robot: &Robot) -> Vec<AuditEntry> {
    read_dir(
        &robot.dir().join("logs").join("audit"),
        &AuditQuery {
            limit: 1000,
            ..AuditQuery::default()
        },
    )
    .expect("audit files")
}

/// A REST-only robot on the fake (polling every 0.1 to 0.3 s, 5 s leases) with `extra` config.
pub fn rest_robot(fake: &FakeRest, extra: Value) -> Robot {
    let mut config = json!({
        "api_url": fake.url(),
        "poll_interval": 0.1,
        "poll_max_interval": 0.3,
        "lease_seconds": 5,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Robot::start(config)
}

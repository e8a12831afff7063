//! The REST link of the real binary against the fake REST orchestrator: a refused API key, an
//! orchestrator without a database (503 on robot status, heartbeat and progress), rate limiting
//! with a huge `Retry-After`, unusable claimed jobs, and the last word of a graceful stop. Every
//! wait has a deadline.

mod support;

use casare_robot::observe::audit::AuditEvent;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::chain;
use support::probe::{audit_entries, free_port, health_becomes, rest_robot, status};
use support::rest::{FakeRest, UNUSABLE_JOBS};
use support::robot::Robot;

const WAIT: Duration = Duration::from_secs(20);

/// Waits until `casare-robot status` says `text`.
fn status_says(robot: &Robot, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = status(robot, false).1;
        if out.contains(text) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "status never said {text:?}; last:\n{out}\n{}",
            robot.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn claims(fake: &FakeRest) -> Vec<Instant> {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/jobs/claim")
        .map(|r| r.at)
        .collect()
}

fn set_x() -> Value {
    chain(&[(
        "set",
        "SetVariableNode",
        json!({"variable_name": "x", "value": 1}),
    )])
}

#[test]
fn a_refused_key_is_unauthorized_until_the_orchestrator_accepts_it() {
    let fake = FakeRest::start();
    fake.require_api_key(Some("the-right-key-0123456789"));
    let port = free_port();
    let robot = rest_robot(
        &fake,
        json!({"api_key": "a-wrong-key-0123456789", "health_port": port}),
    );
    let body = health_becomes(port, 503, "credentials", &robot);
    assert!(!body.contains("a-wrong-key"), "{body}");
    let status = status_says(&robot, "rest unauthorized");
    assert!(
        status.to_lowercase().contains("credentials refused"),
        "{status}"
    );
    // Several refused claims: one log line, claims no closer than poll_max_interval.
    assert!(
        fake.wait_until(WAIT, |f| claims(f).len() >= 4),
        "{}",
        robot.output()
    );
    let at = claims(&fake);
    for pair in at.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(300),
            "claims {:?} apart while refused",
            pair[1] - pair[0]
        );
    }
    let out = robot.output();
    assert_eq!(
        out.matches("refuses this robot's API key").count(),
        1,
        "{out}"
    );
    assert!(!out.contains("a-wrong-key"), "{out}");

    // The orchestrator takes the key after all: the link is reachable again and jobs run.
    fake.require_api_key(Some("a-wrong-key-0123456789"));
    fake.submit("after", set_x(), json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f.state("after") == Some("completed")),
        "{}",
        robot.output()
    );
    health_becomes(port, 200, "\"rest\":\"reachable\"", &robot);
    assert!(robot
        .output()
        .contains("accepts this robot's API key again"));

    let entries = audit_entries(&robot);
    let denied: Vec<_> = entries
        .iter()
        .filter(|e| e.event_type == AuditEvent::AccessDenied)
        .collect();
    assert_eq!(denied.len(), 1, "one access_denied per outage: {denied:?}");
}

#[test]
fn an_orchestrator_without_a_database_keeps_the_link_reachable_and_is_asked_once() {
    let fake = FakeRest::start();
    fake.no_database(true);
    let robot = rest_robot(&fake, json!({}));
    let wf = chain(&[
        (
            "a",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        ),
        ("nap", "WaitNode", json!({"duration": 1.5})),
        (
            "b",
            "SetVariableNode",
            json!({"variable_name": "y", "value": 2}),
        ),
    ]);
    fake.submit("no-db", wf, json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f.state("no-db") == Some("completed")),
        "{}",
        robot.output()
    );
    // Heartbeats are due every second: wait for claims spanning a few of them.
    let first = claims(&fake)[0];
    assert!(
        fake.wait_until(WAIT, |f| claims(f)
            .last()
            .is_some_and(|t| *t - first > Duration::from_secs(4))),
        "{}",
        robot.output()
    );
    let count = |method: &str, suffix: &str| {
        fake.requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    };
    assert_eq!(
        count("POST", "/heartbeat"),
        1,
        "asked once, then left alone"
    );
    assert_eq!(count("PUT", "/status"), 1);
    assert!(count("PUT", "/progress") <= 1);
    let out = robot.output();
    assert!(!out.contains("unreachable"), "{out}");
    assert_eq!(
        out.matches("does not support robot heartbeats").count(),
        1,
        "{out}"
    );
    let status = status_says(&robot, "rest reachable");
    assert!(!status.contains("unreachable"), "{status}");
}

#[test]
fn a_huge_retry_after_is_capped_and_rate_limiting_is_not_an_outage() {
    let fake = FakeRest::start();
    fake.rate_limit(Some(1));
    fake.set_retry_after(99_999_999_999);
    let robot = rest_robot(&fake, json!({}));
    robot.wait_for_output("the longest wait the robot honours", WAIT);
    let out = robot.output();
    assert!(out.contains("wait 99999999999 s"), "{out}");
    assert!(out.contains("waiting 300 s"), "{out}");
    assert!(!out.contains("unreachable"), "{out}");
    status_says(&robot, "rest reachable");
}

#[test]
fn unusable_claimed_jobs_are_failed_on_the_orchestrator_with_what_is_wrong() {
    let fake = FakeRest::start();
    fake.submit_unusable();
    fake.submit("fine", set_x(), json!({}));
    let robot = rest_robot(&fake, json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f.state("fine") == Some("completed")
            && UNUSABLE_JOBS
                .iter()
                .all(|(id, _)| f.state(id) == Some("failed"))),
        "{}",
        robot.output()
    );
    for (job, text) in UNUSABLE_JOBS {
        let messages = fake.failure_messages(job);
        assert_eq!(messages.len(), 4, "every attempt answered: {messages:?}");
        assert!(messages[0].contains(text), "{messages:?}");
        let out = robot.output();
        let warned = out.lines().any(|l| {
            l.contains("[WARN") && l.contains(&format!("job {job} was claimed but cannot run"))
        });
        assert!(warned, "{out}");
    }
}

// Stopped with SIGINT (Ctrl+C), which the test support sends on Unix only.
#[cfg(unix)]
#[test]
fn a_stopped_rest_only_robot_is_left_offline() {
    let fake = FakeRest::start();
    let mut robot = rest_robot(&fake, json!({"robot_id": "r-stop"}));
    assert!(
        fake.wait_until(WAIT, |f| f
            .requests()
            .iter()
            .filter(|r| r.path == "/api/v1/robots/r-stop/heartbeat")
            .count()
            >= 2),
        "{}",
        robot.output()
    );
    assert_eq!(fake.robot_status("r-stop").as_deref(), Some("idle"));
    robot.interrupt();
    assert!(
        robot.wait_exit(WAIT).is_some_and(|s| s.success()),
        "{}",
        robot.output()
    );
    let robot_calls: Vec<(String, String, Value)> = fake
        .calls()
        .into_iter()
        .filter(|(_, path, _)| path.starts_with("/api/v1/robots/"))
        .collect();
    let last = robot_calls.last().expect("robot calls");
    assert_eq!(
        (last.0.as_str(), last.1.as_str(), &last.2["status"]),
        ("PUT", "/api/v1/robots/r-stop/status", &json!("offline")),
        "{robot_calls:?}"
    );
    assert_eq!(fake.robot_status("r-stop").as_deref(), Some("offline"));
}

#[test]
fn a_result_refused_for_its_key_waits_in_the_outbox_until_the_key_is_accepted() {
    let fake = FakeRest::start();
    fake.require_api_key(Some("key-one-0123456789"));
    let robot = rest_robot(&fake, json!({"api_key": "key-one-0123456789"}));
    let wf = chain(&[("nap", "WaitNode", json!({"duration": 1.0}))]);
    fake.submit("held", wf, json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f.state("held") == Some("running")),
        "{}",
        robot.output()
    );
    // The key is revoked while the job runs: its completion is refused (403)...
    fake.require_api_key(Some("key-two-0123456789"));
    assert!(
        fake.wait_until(WAIT, |f| f
            .requests()
            .iter()
            .any(|r| r.path == "/api/v1/jobs/held/complete")),
        "{}",
        robot.output()
    );
    assert_eq!(fake.completions("held"), 0);
    // ...and delivered once the key is accepted again.
    fake.require_api_key(Some("key-one-0123456789"));
    assert!(
        fake.wait_until(WAIT, |f| f.completions("held") == 1),
        "{}",
        robot.output()
    );
    assert!(!robot.output().contains("for good"), "{}", robot.output());
}

#[test]
fn a_lease_is_renewed_before_an_in_memory_queue_hands_the_job_to_another_robot() {
    let fake = FakeRest::start();
    // The in-memory queue keeps a job 30 s whatever the robot asks (here 14 s, still longer than
    // the 10 s renewal bound); the robot asks for 120 s.
    fake.fixed_visibility(Some(Duration::from_secs(14)));
    let first = rest_robot(&fake, json!({"robot_id": "r-one", "lease_seconds": 120}));
    fake.submit(
        "long",
        chain(&[("nap", "WaitNode", json!({"duration": 16}))]),
        json!({}),
    );
    assert!(
        fake.wait_until(WAIT, |f| f.state("long") == Some("running")),
        "{}",
        first.output()
    );
    let second = rest_robot(&fake, json!({"robot_id": "r-two", "lease_seconds": 120}));
    assert!(
        fake.wait_until(Duration::from_secs(40), |f| f.state("long")
            == Some("completed")),
        "{}\n{}",
        first.output(),
        second.output()
    );
    assert_eq!(fake.claims("long"), 1, "{}", second.output());
    assert_eq!(fake.claimer("long").as_deref(), Some("r-one"));
    assert_eq!(fake.completions("long"), 1);
}

#[test]
fn the_last_progress_of_a_completed_rest_job_is_100_and_comes_before_its_result() {
    let fake = FakeRest::start();
    let robot = rest_robot(&fake, json!({}));
    // The first progress goes at once; the quick nodes after it fall inside the one-second
    // throttle, so only the end of the job can carry the final figure.
    fake.submit(
        "to-100",
        chain(&[
            ("nap", "WaitNode", json!({"duration": 0.2})),
            (
                "a",
                "SetVariableNode",
                json!({"variable_name": "a", "value": 1}),
            ),
            (
                "b",
                "SetVariableNode",
                json!({"variable_name": "b", "value": 2}),
            ),
            (
                "c",
                "SetVariableNode",
                json!({"variable_name": "c", "value": 3}),
            ),
        ]),
        json!({}),
    );
    assert!(
        fake.wait_until(WAIT, |f| f.state("to-100") == Some("completed")),
        "{}",
        robot.output()
    );
    let progress = fake.progress("to-100");
    assert_eq!(
        progress.last().map(|p| p["progress"].clone()),
        Some(json!(100)),
        "{progress:?}"
    );
    let calls = fake.calls();
    let position = |suffix: &str| {
        calls
            .iter()
            .rposition(|(_, path, _)| path == &format!("/api/v1/jobs/to-100/{suffix}"))
    };
    let (last_progress, complete) = (position("progress"), position("complete"));
    assert!(
        last_progress.is_some() && last_progress < complete,
        "progress at {last_progress:?}, complete at {complete:?}: {calls:?}"
    );
}

#[test]
fn a_slot_freed_while_rate_limited_waits_for_the_retry_after() {
    // Every claim is refused with 429 and `Retry-After: 60`.
    let fake = FakeRest::start();
    fake.rate_limit(Some(0));
    fake.set_retry_after(60);
    let ws = support::FakeOrchestrator::start(casare_robot::link::protocol::Dialect::Casare);
    let robot = rest_robot(
        &fake,
        json!({"orchestrator_url": ws.url(), "max_concurrent_jobs": 1}),
    );
    ws.wait_for("register", WAIT).expect("the robot registers");
    assert!(
        fake.wait_until(WAIT, |f| f.n_rate_limited() >= 1),
        "{}",
        robot.output()
    );
    // The only slot is taken and freed again (pause, resume): the claim stays 60 s away.
    ws.send(json!({"type": "pause"}));
    robot.wait_for_output("paused by the orchestrator", WAIT);
    ws.send(json!({"type": "resume"}));
    robot.wait_for_output("resumed by the orchestrator", WAIT);
    let again = support::wait_flag(Duration::from_secs(3), || claims(&fake).len() >= 2);
    assert!(!again, "claims: {:?}\n{}", claims(&fake), robot.output());
}

#[test]
fn a_recovered_job_waits_out_a_refused_key_and_resumes_once_it_is_accepted() {
    let fake = FakeRest::start();
    let key = "the-right-key-0123456789";
    fake.require_api_key(Some(key));
    let mut robot = rest_robot(&fake, json!({"api_key": key, "max_concurrent_jobs": 1}));
    let wf = chain(&[
        ("wait", "WaitNode", json!({"duration": 2})),
        (
            "set",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        ),
    ]);
    fake.submit("held", wf, json!({}));
    robot.wait_for_output("job held started", WAIT);
    robot.kill9();
    // The key is rotated on the orchestrator while the robot is down: the lease check of the
    // recovered job is refused (403), which says nothing about the lease.
    fake.require_api_key(Some("another-key-0123456789"));
    robot.spawn();
    robot.wait_for_output(
        "refuses this robot's API key while its lease is checked",
        WAIT,
    );
    fake.require_api_key(Some(key));
    assert!(
        fake.wait_until(WAIT, |f| f.state("held") == Some("completed")),
        "state {:?}\n{}",
        fake.state("held"),
        robot.output()
    );
}

#[test]
fn orphaned_claims_are_reconciled_once_a_refused_key_is_accepted() {
    use casare_robot::link::rest::{RestClient, RestSettings};
    let fake = FakeRest::start();
    let key = "the-right-key-0123456789";
    fake.require_api_key(Some(key));
    fake.submit("orphan", set_x(), json!({}));
    // A claim of this robot whose answer never reached it (made here in its name).
    let mut settings = RestSettings::new(fake.url(), "test-robot");
    settings.api_key = Some(key.to_string());
    let client = RestClient::new(settings).expect("client");
    let claimed = client.claim(Duration::from_secs(60)).expect("claim");
    assert_eq!(claimed.map(|j| j.job_id).as_deref(), Some("orphan"));
    // The robot starts while the orchestrator refuses its key.
    fake.require_api_key(Some("another-key-0123456789"));
    let robot = rest_robot(&fake, json!({"api_key": key}));
    robot.wait_for_output("refuses this robot's API key", WAIT);
    fake.require_api_key(Some(key));
    assert!(
        fake.wait_until(WAIT, |f| f.state("orphan") == Some("completed")),
        "state {:?}\n{}",
        fake.state("orphan"),
        robot.output()
    );
}

#[test]
fn the_fail_of_an_unusable_claim_refused_for_its_key_is_sent_again() {
    let fake = FakeRest::start();
    fake.forbid_path_suffix(Some("/fail"));
    fake.submit_unusable();
    let robot = rest_robot(&fake, json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/fail"))),
        "{}",
        robot.output()
    );
    fake.forbid_path_suffix(None);
    assert!(
        fake.wait_until(WAIT, |f| UNUSABLE_JOBS
            .iter()
            .all(|(id, _)| f.state(id) == Some("failed"))),
        "{:?}\n{}",
        UNUSABLE_JOBS
            .iter()
            .map(|(id, _)| fake.state(id))
            .collect::<Vec<_>>(),
        robot.output()
    );
}

//! The REST client (`link::rest`) against the fake REST orchestrator (`tests/support/rest.rs`):
//! claims (empty, parsed, exactly once across threads), lease renewal and loss, settling exactly
//! once, failure truncation and re-queueing, release, error classification (429, 5xx, 4xx, auth,
//! network), the headers on the wire, and the real claim capture.

#[path = "support/rest.rs"]
mod rest_fake;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use casare_robot::link::protocol::{Capabilities, RobotStatus};
use casare_robot::link::rest::{
    ClaimedJob, LeaseOutcome, PollInterval, PollOutcome, Registration, RestClient, RestError,
    RestSettings, Settled, MAX_ERROR_MESSAGE_CHARS,
};
use rest_fake::{FakeRest, UNUSABLE_JOBS};
use serde_json::{json, Map, Value};

const WAIT: Duration = Duration::from_secs(5);
const LEASE: Duration = Duration::from_secs(30);

fn settings(fake: &FakeRest, robot_id: &str) -> RestSettings {
    let mut s = RestSettings::new(fake.url(), robot_id);
    s.version = "9.9.9".to_string();
    s.environment = "test-env".to_string();
    s.request_timeout = Duration::from_secs(5);
    s
}

fn client(fake: &FakeRest, robot_id: &str) -> RestClient {
    RestClient::new(settings(fake, robot_id)).expect("client")
}

fn client_with_key(fake: &FakeRest, robot_id: &str, key: &str) -> RestClient {
    let mut s = settings(fake, robot_id);
    s.api_key = Some(key.to_string());
    RestClient::new(s).expect("client")
}

fn workflow(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "nodes": {"start": {"node_id": "start", "node_type": "StartNode", "config": {}}},
        "connections": [],
    })
}

fn claim_one(c: &RestClient) -> ClaimedJob {
    c.claim(LEASE).expect("claim").expect("a job")
}

#[test]
fn claim_answers_none_when_the_queue_is_empty_and_sends_the_documented_body() {
    let fake = FakeRest::start();
    let c = client(&fake, "robot-a");
    assert_eq!(c.claim(Duration::from_secs(45)).expect("claim"), None);
    // Below the server's minimum the lease is raised to 5 s.
    assert_eq!(c.claim(Duration::from_secs(1)).expect("claim"), None);
    let bodies = fake.bodies("POST", "/api/v1/jobs/claim");
    assert_eq!(
        bodies,
        vec![
            json!({"environment": "test-env", "limit": 1, "visibility_timeout_seconds": 45}),
            json!({"environment": "test-env", "limit": 1, "visibility_timeout_seconds": 5}),
        ]
    );
}

#[test]
fn claim_returns_the_job_with_the_workflow_parsed_from_the_json_string() {
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("first"), json!({"name": "Ada", "n": 3}));
    let c = client(&fake, "robot-a");
    let before = chrono::Utc::now();
    let job = claim_one(&c);
    assert_eq!(job.job_id, "job-1");
    assert_eq!(job.workflow, workflow("first"));
    assert_eq!(job.workflow_name, "first");
    assert_eq!(job.variables.get("name"), Some(&json!("Ada")));
    assert_eq!(job.variables.get("n"), Some(&json!(3)));
    assert_eq!(job.retry_count, 0);
    assert_eq!(job.max_retries, Some(3));
    assert_eq!(job.environment.as_deref(), Some("test-env"));
    assert!(job.claimed_at.is_some());
    // The fake names no lease expiry: the client's own, conservative one is set.
    let expiry = job.lease_expires_at.expect("lease expiry");
    let lease = (expiry - before).num_seconds();
    assert!((29..=31).contains(&lease), "lease of {lease} s");
    assert_eq!(fake.state("job-1"), Some("running"));
    assert_eq!(fake.claimer("job-1").as_deref(), Some("robot-a"));
    assert_eq!(fake.calls().len(), 1, "one claim, one request");
    assert_eq!(c.claim(LEASE).expect("claim"), None, "one job, one claim");
}

#[test]
fn claims_are_exactly_once_across_four_threads_and_fifty_jobs() {
    let fake = FakeRest::start();
    let n_jobs = 50;
    for i in 0..n_jobs {
        fake.submit(&format!("job-{i:02}"), workflow("w"), json!({"i": i}));
    }
    let url = fake.url();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let mut s = RestSettings::new(url.clone(), format!("robot-{t}"));
            s.request_timeout = Duration::from_secs(5);
            std::thread::Builder::new()
                .name(format!("test-claimer-{t}"))
                .spawn(move || {
                    let c = RestClient::new(s).expect("client");
                    let mut got = Vec::new();
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while Instant::now() < deadline {
                        match c.claim(LEASE).expect("claim") {
                            Some(job) => {
                                let result = json!({"success": true, "i": job.variables["i"]});
                                assert_eq!(
                                    c.complete(&job.job_id, &result).expect("complete"),
                                    Settled::Accepted
                                );
                                got.push(job.job_id);
                            }
                            None => break,
                        }
                    }
                    got
                })
                .expect("spawn")
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("claimer thread"));
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), n_jobs, "every job claimed once: {all:?}");
    assert_eq!(distinct.len(), n_jobs);
    for i in 0..n_jobs {
        let id = format!("job-{i:02}");
        assert_eq!(fake.claims(&id), 1, "{id}");
        assert_eq!(fake.completions(&id), 1, "{id}");
        assert_eq!(fake.results(&id), vec![json!({"success": true, "i": i})]);
        assert_eq!(fake.state(&id), Some("completed"));
    }
}

#[test]
fn extend_lease_is_extended_for_the_claimer_and_lost_after_a_cancel() {
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("w"), json!({}));
    let c = client(&fake, "robot-a");
    let other = client(&fake, "robot-b");
    let job = c
        .claim(Duration::from_secs(10))
        .expect("claim")
        .expect("job");
    assert!(fake.lease_remaining("job-1").expect("lease") <= Duration::from_secs(10));
    assert_eq!(
        c.extend_lease(&job.job_id, Duration::from_secs(120))
            .expect("extend"),
        LeaseOutcome::Extended
    );
    assert!(fake.lease_remaining("job-1").expect("lease") > Duration::from_secs(100));
    assert_eq!(
        fake.bodies("POST", "/api/v1/jobs/job-1/extend-lease"),
        vec![json!({"extension_seconds": 120})]
    );
    // Only the claimer holds the lease.
    assert_eq!(
        other.extend_lease(&job.job_id, LEASE).expect("extend"),
        LeaseOutcome::Lost
    );
    fake.cancel("job-1");
    assert_eq!(
        c.extend_lease(&job.job_id, LEASE).expect("extend"),
        LeaseOutcome::Lost
    );
    assert_eq!(fake.state("job-1"), Some("cancelled"));
}

#[test]
fn complete_is_accepted_once_then_already_settled_and_both_count_as_delivered() {
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("w"), json!({}));
    let c = client(&fake, "robot-a");
    let job = claim_one(&c);
    let result = json!({"success": true, "outputs": {"x": 1}});
    assert_eq!(
        c.complete(&job.job_id, &result).expect("complete"),
        Settled::Accepted
    );
    assert_eq!(
        c.complete(&job.job_id, &result).expect("complete again"),
        Settled::AlreadySettled
    );
    assert_eq!(fake.completions("job-1"), 1);
    assert_eq!(fake.results("job-1"), vec![result.clone(), result]);
    assert_eq!(fake.state("job-1"), Some("completed"));
    // Settled: the lease is gone too.
    assert_eq!(
        c.extend_lease("job-1", LEASE).expect("extend"),
        LeaseOutcome::Lost
    );
    // An unknown job is a permanent rejection, not "delivered".
    let err = c.complete("no-such-job", &json!({})).expect_err("404");
    assert!(
        matches!(err, RestError::Rejected { status: 404, .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("POST /api/v1/jobs/no-such-job/complete"),
        "{err}"
    );
    assert!(
        err.to_string().contains("job no-such-job not found"),
        "{err}"
    );
}

#[test]
fn fail_truncates_to_5000_characters_requeues_and_the_fourth_failure_is_final() {
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("w"), json!({}));
    let c = client(&fake, "robot-a");
    let long = "ü".repeat(MAX_ERROR_MESSAGE_CHARS + 1000);
    let job = claim_one(&c);
    assert_eq!(c.fail(&job.job_id, &long).expect("fail"), Settled::Accepted);
    let sent = fake.failure_messages("job-1");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].chars().count(), MAX_ERROR_MESSAGE_CHARS);
    assert!(long.starts_with(&sent[0]));
    assert_eq!(fake.state("job-1"), Some("pending"));
    assert_eq!(fake.retry_count("job-1"), Some(1));
    // A second delivery of the same failure: already settled.
    assert_eq!(
        c.fail("job-1", "again").expect("fail"),
        Settled::AlreadySettled
    );
    for attempt in 1..=3u32 {
        let job = claim_one(&c);
        assert_eq!(job.retry_count, attempt);
        assert_eq!(
            c.fail(&job.job_id, "boom").expect("fail"),
            Settled::Accepted
        );
    }
    assert_eq!(fake.state("job-1"), Some("failed"));
    assert_eq!(fake.failures("job-1"), 4);
    assert_eq!(c.claim(LEASE).expect("claim"), None);
    // An empty message would be refused by the server (minLength 1): the client sends a text.
    fake.submit("job-2", workflow("w"), json!({}));
    let job = claim_one(&c);
    assert_eq!(c.fail(&job.job_id, "").expect("fail"), Settled::Accepted);
    assert_eq!(
        fake.failure_messages("job-2"),
        vec!["unknown error".to_string()]
    );
}

#[test]
fn a_failed_job_waits_the_requeue_delay() {
    let fake = FakeRest::start();
    fake.set_fail_requeue_delay(Duration::from_millis(300));
    fake.submit("job-1", workflow("w"), json!({}));
    let c = client(&fake, "robot-a");
    let job = claim_one(&c);
    c.fail(&job.job_id, "boom").expect("fail");
    assert_eq!(c.claim(LEASE).expect("claim"), None, "not before the delay");
    let mut again = None;
    assert!(fake.wait_until(WAIT, |_| {
        again = c.claim(LEASE).expect("claim");
        again.is_some()
    }));
    assert_eq!(again.expect("job").retry_count, 1);
}

#[test]
fn release_makes_the_job_claimable_again_at_once() {
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("w"), json!({}));
    fake.submit("job-2", workflow("w"), json!({}));
    let a = client(&fake, "robot-a");
    let b = client(&fake, "robot-b");
    let job = claim_one(&a);
    assert_eq!(job.job_id, "job-1");
    a.release(&job.job_id).expect("release");
    assert_eq!(fake.state("job-1"), Some("pending"));
    assert_eq!(
        fake.retry_count("job-1"),
        Some(0),
        "release counts no retry"
    );
    let again = claim_one(&b);
    assert_eq!(again.job_id, "job-1");
    assert_eq!(fake.claimer("job-1").as_deref(), Some("robot-b"));
    // The old holder has lost it.
    assert_eq!(
        a.extend_lease("job-1", LEASE).expect("extend"),
        LeaseOutcome::Lost
    );
    assert_eq!(
        a.complete("job-1", &json!({})).expect("complete"),
        Settled::AlreadySettled
    );
    assert_eq!(fake.completions("job-1"), 0);
    // Releasing a job one does not hold is a 409 rejection (not a settle call: no meaning there).
    let err = a.release("job-1").expect_err("not ours");
    assert!(
        matches!(err, RestError::Rejected { status: 409, .. }),
        "{err:?}"
    );
}

#[test]
fn a_429_carries_retry_after_and_the_poll_interval_honours_it() {
    let fake = FakeRest::start();
    fake.rate_limit(Some(2));
    let c = client(&fake, "robot-a");
    let mut poll = PollInterval::new(Duration::from_millis(100), Duration::from_millis(400));
    let mut limited = None;
    for _ in 0..3 {
        let result = c.claim(LEASE);
        let wait = poll.next(PollOutcome::of(&result));
        if let Err(e) = result {
            limited = Some((e, wait));
            break;
        }
        assert!(wait <= Duration::from_millis(400));
    }
    let (err, wait) = limited.expect("the third claim in a second is limited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(matches!(err, RestError::RateLimited { .. }));
    assert!(err.is_retryable() && !err.is_auth());
    assert_eq!(err.status(), Some(429));
    assert!(
        err.to_string()
            .contains("POST /api/v1/jobs/claim: rate limited (429)"),
        "{err}"
    );
    assert_eq!(
        wait,
        Duration::from_secs(1),
        "at least Retry-After, above the idle cap"
    );
    assert_eq!(fake.n_rate_limited(), 1);
}

#[test]
fn a_503_is_retryable_and_a_400_or_500_is_not() {
    let fake = FakeRest::start();
    let c = client(&fake, "robot-a");
    let check = |status: u16, retryable: bool| {
        fake.fail_next(1, status);
        let err = c.claim(LEASE).expect_err("injected");
        assert_eq!(err.status(), Some(status), "{err:?}");
        assert_eq!(err.is_retryable(), retryable, "{status}: {err}");
        assert!(!err.is_auth());
        assert!(
            err.to_string().contains(&format!("injected {status}")),
            "{err}"
        );
        err
    };
    assert!(matches!(check(503, true), RestError::Server { .. }));
    assert!(matches!(check(502, true), RestError::Server { .. }));
    assert!(matches!(check(504, true), RestError::Server { .. }));
    assert!(matches!(check(500, false), RestError::Server { .. }));
    assert!(matches!(check(400, false), RestError::Rejected { .. }));
    assert!(matches!(check(422, false), RestError::Rejected { .. }));
    // The switch is spent: the next call goes through.
    assert_eq!(c.claim(LEASE).expect("claim"), None);
}

#[test]
fn a_missing_key_is_401_a_wrong_key_403_and_neither_message_shows_the_key() {
    let fake = FakeRest::start();
    fake.require_api_key(Some("good-key-0123456789"));
    let none = client(&fake, "robot-a");
    let err = none.claim(LEASE).expect_err("no key");
    assert_eq!(
        err,
        RestError::Auth {
            call: "POST /api/v1/jobs/claim".into(),
            status: 401
        }
    );
    assert!(err.is_auth() && !err.is_retryable());
    let wrong = client_with_key(&fake, "robot-a", "wrong-key-0123456789");
    let err = wrong.complete("job-1", &json!({})).expect_err("wrong key");
    assert!(
        matches!(err, RestError::Auth { status: 403, .. }),
        "{err:?}"
    );
    assert!(err.is_auth());
    assert!(!err.to_string().contains("wrong-key-0123456789"), "{err}");
    assert!(!format!("{err:?}").contains("wrong-key-0123456789"));
    let good = client_with_key(&fake, "robot-a", "good-key-0123456789");
    assert_eq!(good.claim(LEASE).expect("claim"), None);
    // The health probe needs no key.
    none.health().expect("health");
}

#[test]
fn a_server_that_is_down_gives_a_quick_retryable_network_error() {
    let mut fake = FakeRest::start();
    let c = client(&fake, "robot-a");
    c.health().expect("health while up");
    fake.down();
    let started = Instant::now();
    let err = c.claim(LEASE).expect_err("down");
    assert!(matches!(err, RestError::Network { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.is_auth());
    assert_eq!(err.status(), None);
    assert!(
        err.to_string()
            .starts_with("POST /api/v1/jobs/claim: network error"),
        "{err}"
    );
    let err = c.health().expect_err("still down");
    assert!(matches!(err, RestError::Network { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused, not timed out: {:?}",
        started.elapsed()
    );
    fake.up();
    assert!(
        fake.wait_until(WAIT, |_| c.health().is_ok()),
        "reachable again after up"
    );
    fake.submit("job-1", workflow("w"), json!({}));
    assert_eq!(claim_one(&c).job_id, "job-1");
}

#[test]
fn a_request_that_outlives_the_timeout_is_a_network_error() {
    // A listener that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut s = RestSettings::new(url, "robot-a");
    s.request_timeout = Duration::from_millis(300);
    let c = RestClient::new(s).expect("client");
    let started = Instant::now();
    let err = c.health().expect_err("silent server");
    assert!(matches!(err, RestError::Network { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[test]
fn every_call_carries_the_key_the_bearer_token_the_user_agent_and_json() {
    let fake = FakeRest::start();
    fake.require_api_key(Some("key-0123456789abcdef"));
    fake.submit("job-1", workflow("w"), json!({}));
    let c = client_with_key(&fake, "robot-h", "key-0123456789abcdef");
    let job = claim_one(&c);
    c.progress(&job.job_id, 50, Some("start"), None)
        .expect("progress");
    c.extend_lease(&job.job_id, LEASE).expect("extend");
    c.complete(&job.job_id, &json!({"success": true}))
        .expect("complete");
    c.health().expect("health");
    c.release("job-1").expect_err("settled: 409");
    let requests = fake.requests();
    assert_eq!(requests.len(), 6);
    for r in &requests {
        let at = format!("{} {}", r.method, r.path);
        assert_eq!(r.header("x-api-key"), Some("key-0123456789abcdef"), "{at}");
        assert_eq!(
            r.header("authorization"),
            Some("Bearer key-0123456789abcdef"),
            "{at}"
        );
        assert_eq!(
            r.header("user-agent"),
            Some("casare-robot/9.9.9 (robot-h)"),
            "{at}"
        );
        assert_eq!(r.header("content-type"), Some("application/json"), "{at}");
    }
    let methods: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        methods,
        vec![
            "POST /api/v1/jobs/claim",
            "PUT /api/v1/jobs/job-1/progress",
            "POST /api/v1/jobs/job-1/extend-lease",
            "POST /api/v1/jobs/job-1/complete",
            "GET /health",
            "POST /api/v1/jobs/job-1/release",
        ]
    );
    // Without a key, neither auth header is sent.
    let fake2 = FakeRest::start();
    client(&fake2, "robot-h").health().expect("health");
    let r = &fake2.requests()[0];
    assert_eq!(r.header("x-api-key"), None);
    assert_eq!(r.header("authorization"), None);
}

#[test]
fn progress_is_recorded_and_clamped_to_100() {
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("w"), json!({}));
    let c = client(&fake, "robot-a");
    let job = claim_one(&c);
    c.progress(&job.job_id, 40, Some("node-2"), Some("halfway"))
        .expect("progress");
    c.progress(&job.job_id, 250, None, None).expect("progress");
    assert_eq!(
        fake.progress("job-1"),
        vec![
            json!({"progress": 40, "current_node": "node-2", "message": "halfway"}),
            json!({"progress": 100, "current_node": null, "message": null}),
        ]
    );
}

#[test]
fn register_tolerates_a_server_without_database_and_robot_calls_use_the_registry_vocabulary() {
    let fake = FakeRest::start();
    let mut s = settings(&fake, "robot-r");
    s.robot_name = "Robot-host".to_string();
    let c = RestClient::new(s).expect("client");
    let caps = Capabilities {
        types: vec!["headless".to_string()],
        max_concurrent_jobs: 500,
        hostname: "host-1".to_string(),
        tags: vec!["eu".to_string()],
        ..Capabilities::default()
    };
    match c.register(&caps).expect("register") {
        Registration::Registered(record) => assert_eq!(record["robot_id"], "robot-r"),
        other => panic!("expected a registration, got {other:?}"),
    }
    assert_eq!(
        fake.bodies("POST", "/api/v1/robots/register"),
        vec![json!({
            "robot_id": "robot-r",
            "name": "Robot-host",
            "hostname": "host-1",
            "capabilities": ["headless"],
            "environment": "test-env",
            "max_concurrent_jobs": 100,
            "tags": ["eu"],
        })]
    );
    fake.no_database(true);
    match c.register(&caps).expect("503 is tolerated") {
        Registration::Unavailable { message } => {
            assert!(message.contains("database not available"), "{message}")
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    // Without a database the robot calls answer 503 too; the bodies are checked with one.
    fake.no_database(false);
    let mut metrics = Map::new();
    metrics.insert("cpu_percent".to_string(), json!(12.5));
    c.heartbeat(RobotStatus::Busy, &metrics).expect("heartbeat");
    assert_eq!(
        fake.bodies("POST", "/api/v1/robots/robot-r/heartbeat"),
        vec![json!({"cpu_percent": 12.5, "status": "busy"})]
    );
    for status in [
        RobotStatus::Idle,
        RobotStatus::Busy,
        RobotStatus::Paused,
        RobotStatus::Stopping,
    ] {
        c.update_status(status).expect("status");
    }
    let sent: Vec<Value> = fake
        .bodies("PUT", "/api/v1/robots/robot-r/status")
        .into_iter()
        .map(|b| b["status"].clone())
        .collect();
    assert_eq!(
        sent,
        vec![
            json!("idle"),
            json!("busy"),
            json!("maintenance"),
            json!("offline")
        ]
    );
}

#[test]
fn a_running_job_belongs_to_its_claimer_alone() {
    // The fake, like the real server, never hands a running job out again (not even after its
    // lease ran out): nobody else can claim or settle it; its claimer still can.
    let fake = FakeRest::start();
    fake.submit("job-1", workflow("w"), json!({}));
    let a = client(&fake, "robot-a");
    let b = client(&fake, "robot-b");
    let job = claim_one(&a);
    assert!(fake.lease_remaining("job-1").expect("lease") <= LEASE);
    assert_eq!(b.claim(LEASE).expect("claim"), None);
    assert_eq!(
        b.complete("job-1", &json!({})).expect("complete"),
        Settled::AlreadySettled
    );
    assert_eq!(
        a.complete(&job.job_id, &json!({})).expect("complete"),
        Settled::Accepted
    );
    assert_eq!(fake.completions("job-1"), 1);
}

#[test]
fn a_claim_naming_an_unusable_job_is_a_bad_job_error_with_its_id() {
    let fake = FakeRest::start();
    fake.submit_unusable();
    let c = client(&fake, "robot-a");
    for (job, text) in UNUSABLE_JOBS {
        let err = c.claim(LEASE).expect_err("an unusable job");
        match &err {
            RestError::BadJob { job_id, detail, .. } => {
                assert_eq!(job_id, job);
                assert!(detail.contains(text), "{detail}");
            }
            other => panic!("expected a bad job, got {other:?}"),
        }
        assert!(!err.is_retryable());
        assert!(
            err.to_string().contains(&format!("job {job} cannot run")),
            "{err}"
        );
    }
}

#[test]
fn the_real_claim_capture_parses_into_a_claimed_job() {
    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/casare/orchestrator/head-rest-claim.response.json");
    let mut texts = vec![CAPTURED_CLAIM.to_string()];
    if let Ok(text) = std::fs::read_to_string(&shared) {
        texts.push(text);
    }
    for text in texts {
        let value: Value = serde_json::from_str(&text).expect("capture is json");
        assert!(
            value["workflow_json"].is_string(),
            "the capture carries a string"
        );
        let job = ClaimedJob::from_value(&value).expect("claimed job");
        assert_eq!(job.job_id, "317a32cf-e7f4-4ccc-be00-aba54b8f9f77");
        assert_eq!(job.workflow_id, "5da8c524-d3ff-4ce2-8718-a78ae1254e78");
        assert_eq!(job.workflow_name, "Batch 1.1 - Variables & Data Types");
        assert_eq!(
            job.workflow["metadata"]["name"],
            "Batch 1.1 - Variables & Data Types"
        );
        assert_eq!(job.workflow["nodes"].as_object().map(|n| n.len()), Some(20));
        assert_eq!(
            job.workflow["connections"].as_array().map(Vec::len),
            Some(19)
        );
        assert_eq!(
            job.variables.get("injected_var"),
            Some(&json!("from-orchestrator"))
        );
        assert_eq!(job.priority, 10);
        assert_eq!(job.environment.as_deref(), Some("internet"));
        assert_eq!((job.retry_count, job.max_retries), (0, Some(3)));
        assert_eq!(
            job.claimed_at.map(|t| t.to_rfc3339()),
            Some("2026-11-26T04:23:11.284556+00:00".to_string())
        );
        assert!(job.created_at.is_some());
        assert_eq!(job.lease_expires_at, None, "the server names no expiry");
    }
}

/// `head-rest-claim.response.json`, verbatim.
const CAPTURED_CLAIM: &str = r##"
{"job_id":"317a32cf-e7f4-4ccc-be00-aba54b8f9f77","workflow_id":"5da8c524-d3ff-4ce2-8718-a78ae1254e78","workflow_name":"Batch 1.1 - Variables & Data Types","workflow_json":"{\"metadata\":{\"name\":\"Batch 1.1 - Variables & Data Types\",\"description\":\"Tests SetVariableNode, GetVariableNode, IncrementVariableNode, CreateDictNode, DictGetNode, DictSetNode, DictHasKeyNode, DictRemoveNode, DictKeysNode, DictValuesNode, DictItemsNode, DictMergeNode, DictToJsonNode, CreateListNode, JsonParseNode\",\"version\":\"1.0.0\"},\"nodes\":{\"set_string\":{\"node_id\":\"set_string\",\"node_type\":\"SetVariableNode\",\"config\":{\"variable_name\":\"my_string\",\"value\":\"Hello World\"},\"position\":[0,0]},\"set_int\":{\"node_id\":\"set_int\",\"node_type\":\"SetVariableNode\",\"config\":{\"variable_name\":\"my_int\",\"value\":42},\"position\":[400,0]},\"set_list\":{\"node_id\":\"set_list\",\"node_type\":\"SetVariableNode\",\"config\":{\"variable_name\":\"my_list\",\"value\":[1,2,3]},\"position\":[800,0]},\"set_dict\":{\"node_id\":\"set_dict\",\"node_type\":\"SetVariableNode\",\"config\":{\"variable_name\":\"my_dict\",\"value\":{\"a\":1,\"b\":2}},\"position\":[1200,0]},\"get_string\":{\"node_id\":\"get_string\",\"node_type\":\"GetVariableNode\",\"config\":{\"variable_name\":\"my_string\"},\"position\":[1600,0]},\"increment_counter\":{\"node_id\":\"increment_counter\",\"node_type\":\"IncrementVariableNode\",\"config\":{\"variable_name\":\"my_int\",\"increment\":10},\"position\":[2000,0]},\"create_dict\":{\"node_id\":\"create_dict\",\"node_type\":\"CreateDictNode\",\"config\":{\"key_1\":\"name\",\"value_1\":\"Alice\",\"key_2\":\"age\",\"value_2\":30,\"key_3\":\"city\",\"value_3\":\"NYC\"},\"position\":[2400,0]},\"dict_get\":{\"node_id\":\"dict_get\",\"node_type\":\"DictGetNode\",\"config\":{\"dict\":\"{{create_dict.dict}}\",\"key\":\"name\"},\"position\":[2800,0]},\"dict_set\":{\"node_id\":\"dict_set\",\"node_type\":\"DictSetNode\",\"config\":{\"dict\":\"{{create_dict.dict}}\",\"key\":\"country\",\"value\":\"USA\"},\"position\":[3200,0]},\"dict_has_key\":{\"node_id\":\"dict_has_key\",\"node_type\":\"DictHasKeyNode\",\"config\":{\"dict\":\"{{dict_set.dict}}\",\"key\":\"country\"},\"position\":[3600,0]},\"dict_keys\":{\"node_id\":\"dict_keys\",\"node_type\":\"DictKeysNode\",\"config\":{\"dict\":\"{{dict_set.dict}}\"},\"position\":[4000,0]},\"dict_values\":{\"node_id\":\"dict_values\",\"node_type\":\"DictValuesNode\",\"config\":{\"dict\":\"{{dict_set.dict}}\"},\"position\":[4400,0]},\"dict_items\":{\"node_id\":\"dict_items\",\"node_type\":\"DictItemsNode\",\"config\":{\"dict\":\"{{dict_set.dict}}\"},\"position\":[4800,0]},\"create_dict2\":{\"node_id\":\"create_dict2\",\"node_type\":\"CreateDictNode\",\"config\":{\"key_1\":\"x\",\"value_1\":100,\"key_2\":\"y\",\"value_2\":200},\"position\":[5200,0]},\"dict_merge\":{\"node_id\":\"dict_merge\",\"node_type\":\"DictMergeNode\",\"config\":{\"dict1\":\"{{dict_set.dict}}\",\"dict2\":\"{{create_dict2.dict}}\"},\"position\":[5600,0]},\"dict_remove\":{\"node_id\":\"dict_remove\",\"node_type\":\"DictRemoveNode\",\"config\":{\"dict\":\"{{dict_merge.dict}}\",\"key\":\"x\"},\"position\":[6000,0]},\"dict_to_json\":{\"node_id\":\"dict_to_json\",\"node_type\":\"DictToJsonNode\",\"config\":{\"dict\":\"{{dict_remove.dict}}\"},\"position\":[6400,0]},\"create_list\":{\"node_id\":\"create_list\",\"node_type\":\"CreateListNode\",\"config\":{\"item_1\":\"apple\",\"item_2\":\"banana\",\"item_3\":\"cherry\",\"item_4\":\"date\",\"item_5\":\"elderberry\"},\"position\":[6800,0]},\"json_parse\":{\"node_id\":\"json_parse\",\"node_type\":\"JsonParseNode\",\"config\":{\"json_string\":\"{\\\"parsed\\\": true, \\\"count\\\": 5}\"},\"position\":[7200,0]},\"log_result\":{\"node_id\":\"log_result\",\"node_type\":\"LogNode\",\"config\":{\"message\":\"All variable & dict tests passed!\"},\"position\":[7600,0]}},\"connections\":[{\"source_node\":\"set_string\",\"source_port\":\"exec_out\",\"target_node\":\"set_int\",\"target_port\":\"exec_in\"},{\"source_node\":\"set_int\",\"source_port\":\"exec_out\",\"target_node\":\"set_list\",\"target_port\":\"exec_in\"},{\"source_node\":\"set_list\",\"source_port\":\"exec_out\",\"target_node\":\"set_dict\",\"target_port\":\"exec_in\"},{\"source_node\":\"set_dict\",\"source_port\":\"exec_out\",\"target_node\":\"get_string\",\"target_port\":\"exec_in\"},{\"source_node\":\"get_string\",\"source_port\":\"exec_out\",\"target_node\":\"increment_counter\",\"target_port\":\"exec_in\"},{\"source_node\":\"increment_counter\",\"source_port\":\"exec_out\",\"target_node\":\"create_dict\",\"target_port\":\"exec_in\"},{\"source_node\":\"create_dict\",\"source_port\":\"exec_out\",\"target_node\":\"dict_get\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_get\",\"source_port\":\"exec_out\",\"target_node\":\"dict_set\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_set\",\"source_port\":\"exec_out\",\"target_node\":\"dict_has_key\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_has_key\",\"source_port\":\"exec_out\",\"target_node\":\"dict_keys\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_keys\",\"source_port\":\"exec_out\",\"target_node\":\"dict_values\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_values\",\"source_port\":\"exec_out\",\"target_node\":\"dict_items\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_items\",\"source_port\":\"exec_out\",\"target_node\":\"create_dict2\",\"target_port\":\"exec_in\"},{\"source_node\":\"create_dict2\",\"source_port\":\"exec_out\",\"target_node\":\"dict_merge\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_merge\",\"source_port\":\"exec_out\",\"target_node\":\"dict_remove\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_remove\",\"source_port\":\"exec_out\",\"target_node\":\"dict_to_json\",\"target_port\":\"exec_in\"},{\"source_node\":\"dict_to_json\",\"source_port\":\"exec_out\",\"target_node\":\"create_list\",\"target_port\":\"exec_in\"},{\"source_node\":\"create_list\",\"source_port\":\"exec_out\",\"target_node\":\"json_parse\",\"target_port\":\"exec_in\"},{\"source_node\":\"json_parse\",\"source_port\":\"exec_out\",\"target_node\":\"log_result\",\"target_port\":\"exec_in\"}],\"variables\":{},\"settings\":{\"stop_on_error\":true,\"timeout\":60},\"__validated__\":true}","priority":10,"environment":"internet","variables":{"injected_var":"from-orchestrator"},"created_at":"2026-11-26T04:23:11.265155Z","claimed_at":"2026-11-26T04:23:11.284556Z","retry_count":0,"max_retries":3}"##;

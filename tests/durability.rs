//! Never lose, never repeat: the real binary against the fake orchestrators (WebSocket and
//! REST) through kill -9 at random moments, orchestrator outages, duplicate assignments, lost
//! leases, cancellations across a crash, a torn WAL and an unusable data directory. Every wait
//! has a deadline; the chaos runs are seeded (`CHAOS_SEED` overrides the seed to reproduce one).

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use support::probe::rest_robot;
use support::rest::FakeRest;
use support::robot::Robot;
use support::{chain, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(20);

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026)
}

/// Two nodes that draw a random token into the variable `token`: a fingerprint of the run (a
/// run from scratch draws another one, a resumed run keeps it).
fn token_nodes() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("draw", "RandomStringNode", json!({"length": 24})),
        (
            "token",
            "SetVariableNode",
            json!({"variable_name": "token", "value": "{{draw.result}}"}),
        ),
    ]
}

/// A job that draws its token first, then works for about `steps × step` seconds.
fn fingerprinted(steps: usize, step: f64) -> Value {
    let mut nodes = token_nodes();
    let ids: Vec<(String, String)> = (0..steps)
        .map(|i| (format!("wait{i}"), format!("mark{i}")))
        .collect();
    for (w, m) in &ids {
        nodes.push((w.as_str(), "WaitNode", json!({"duration": step})));
        nodes.push((
            m.as_str(),
            "SetVariableNode",
            json!({"variable_name": m, "value": true}),
        ));
    }
    chain(&nodes)
}

/// A wait of `secs`, then the token.
fn waited_token(secs: f64) -> Value {
    let mut nodes = vec![("wait", "WaitNode", json!({"duration": secs}))];
    nodes.extend(token_nodes());
    chain(&nodes)
}

fn ws_robot(fake: &FakeOrchestrator, extra: Value) -> Robot {
    let mut config = json!({"orchestrator_url": fake.url()});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        config[k] = v;
    }
    Robot::start(config)
}

fn of_type<'a>(msgs: &'a [Value], ty: &str, job: &str) -> Vec<&'a Value> {
    msgs.iter()
        .filter(|m| m["type"] == ty && m["job_id"] == job)
        .collect()
}

/// The first message after position `from` of everything received for which `pred` holds.
fn wait_new(fake: &FakeOrchestrator, from: usize, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(m) = fake
            .received()
            .get(from..)
            .and_then(|new| new.iter().find(|m| pred(m)).cloned())
        {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

// ---- kill -9 chaos ---------------------------------------------------------------------------

#[test]
fn websocket_fifty_jobs_through_twenty_kills_each_complete_once() {
    let seed = seed();
    let mut rng = fastrand::Rng::with_seed(seed);
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = ws_robot(&fake, json!({"max_concurrent_jobs": 2}));
    let workflow = fingerprinted(4, 0.08);
    let mut pending: VecDeque<String> = (0..50).map(|i| format!("ws-{i:02}")).collect();
    // Assigned and not yet complete, with when it was (last) assigned and whether accepted.
    let mut in_flight: HashMap<String, (Instant, bool)> = HashMap::new();
    let mut results: HashMap<String, Vec<Value>> = HashMap::new();
    let mut seen = 0;
    let mut kills = 0;
    let mut next_kill = Instant::now() + Duration::from_millis(rng.u64(150..500));
    let deadline = Instant::now() + Duration::from_secs(180);
    while results.len() < 50 {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: only {} of 50 jobs completed after {kills} kills; in flight: {:?}\n{}",
            results.len(),
            in_flight.keys().collect::<Vec<_>>(),
            robot.output()
        );
        let msgs = fake.received();
        for m in &msgs[seen..] {
            let id = m["job_id"].as_str().unwrap_or_default().to_string();
            match m["type"].as_str() {
                Some("job_accept") => {
                    if let Some(f) = in_flight.get_mut(&id) {
                        f.1 = true;
                    }
                }
                Some("job_reject") if in_flight.remove(&id).is_some() => pending.push_front(id),
                Some("job_complete") => {
                    in_flight.remove(&id);
                    results.entry(id).or_default().push(m["result"].clone());
                }
                Some("job_failed") => panic!("seed {seed}: a job failed: {m}"),
                _ => {}
            }
        }
        seen = msgs.len();
        let now = Instant::now();
        // An assignment the robot never acknowledged (it died first) is sent again.
        let stale: Vec<String> = in_flight
            .iter()
            .filter(|(_, (at, accepted))| !accepted && now > *at + Duration::from_secs(2))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if fake.assign_job(&id, workflow.clone(), json!({}), None) > 0 {
                in_flight.insert(id, (now, false));
            }
        }
        if in_flight.len() < 2 && fake.open_connections() > 0 {
            if let Some(id) = pending.pop_front() {
                if results.contains_key(&id)
                    || fake.assign_job(&id, workflow.clone(), json!({}), None) > 0
                {
                    in_flight.insert(id, (now, false));
                } else {
                    pending.push_front(id);
                }
            }
        }
        if kills < 20 && now >= next_kill {
            robot.kill9();
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.u64(10..120)));
            robot.spawn();
            next_kill = Instant::now() + Duration::from_millis(rng.u64(100..400));
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    assert!(kills >= 20, "seed {seed}: only {kills} kills");
    let mut resent = 0;
    let mut resumed = 0;
    for (id, rs) in &results {
        // Every delivery of a job's result is the same result: one run settled it.
        assert!(
            rs.iter().all(|r| r == &rs[0]),
            "seed {seed}: job {id} settled more than once: {rs:?}"
        );
        let token = rs[0]["outputs"]["token"].as_str().unwrap_or_default();
        assert_eq!(token.len(), 24, "seed {seed}: {id}: {}", rs[0]);
        resent += rs.len() - 1;
        resumed += usize::from(rs[0]["recovered"] == true);
    }
    eprintln!(
        "seed {seed}: 50 jobs, {kills} kills, {resumed} resumed from a checkpoint, {resent} result(s) re-sent after a reconnect"
    );
}

#[test]
fn rest_fifty_jobs_through_twenty_kills_each_complete_once() {
    let seed = seed() ^ 0xa5a5;
    let mut rng = fastrand::Rng::with_seed(seed);
    let fake = FakeRest::start();
    let workflow = fingerprinted(4, 0.08);
    for i in 0..50 {
        fake.submit(&format!("rest-{i:02}"), workflow.clone(), json!({}));
    }
    let mut robot = rest_robot(&fake, json!({"max_concurrent_jobs": 2}));
    let ids: Vec<String> = (0..50).map(|i| format!("rest-{i:02}")).collect();
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let done = ids
            .iter()
            .filter(|id| fake.state(id) == Some("completed"))
            .count();
        if done == 50 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: only {done} of 50 jobs completed after {kills} kills; states: {:?}\n{}",
            ids.iter()
                .map(|id| (id, fake.state(id)))
                .filter(|(_, s)| *s != Some("completed"))
                .collect::<Vec<_>>(),
            robot.output()
        );
        if kills < 20 {
            std::thread::sleep(Duration::from_millis(rng.u64(100..400)));
            robot.kill9();
            kills += 1;
            std::thread::sleep(Duration::from_millis(rng.u64(10..120)));
            robot.spawn();
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(kills >= 20, "seed {seed}: only {kills} kills");
    let mut reclaimed = 0;
    for id in &ids {
        assert_eq!(fake.completions(id), 1, "seed {seed}: {id}");
        assert_eq!(fake.failures(id), 0, "seed {seed}: {id}");
        let rs = fake.results(id);
        assert!(
            rs.iter().all(|r| r == &rs[0]),
            "seed {seed}: job {id} settled by two runs: {rs:?}"
        );
        assert_eq!(rs[0]["outputs"]["token"].as_str().map(str::len), Some(24));
        reclaimed += fake.claims(id) - 1;
    }
    eprintln!("seed {seed}: 50 jobs, {kills} kills, {reclaimed} orphaned claim(s) released and claimed again");
}

#[test]
fn a_claim_whose_answer_was_lost_is_released_and_runs_once() {
    let fake = FakeRest::start();
    fake.submit(
        "orphan",
        chain(&[(
            "set",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        )]),
        json!({}),
    );
    // The server hands the job out, but the robot never hears it: only the orchestrator knows
    // it is claimed by this robot, and it never recovers an expired lease on its own.
    fake.lose_next_answers("/api/v1/jobs/claim", 1);
    let robot = rest_robot(&fake, json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f.state("orphan") == Some("completed")),
        "{}",
        robot.output()
    );
    assert_eq!(fake.claims("orphan"), 2, "claimed, released, claimed again");
    assert_eq!(fake.completions("orphan"), 1);
    assert!(
        robot.output().contains("was never recorded here"),
        "{}",
        robot.output()
    );
}

#[test]
fn a_failed_rest_job_runs_again_only_as_a_new_attempt_of_the_orchestrator() {
    let fake = FakeRest::start();
    fake.submit(
        "flaky",
        chain(&[(
            "boom",
            "ThrowErrorNode",
            json!({"error_message": "attempt {{_job_id}} failed"}),
        )]),
        json!({}),
    );
    let robot = rest_robot(&fake, json!({}));
    // The server re-queues a failure three times (retry_count + 1); the fourth is final.
    assert!(
        fake.wait_until(WAIT, |f| f.state("flaky") == Some("failed")),
        "{}",
        robot.output()
    );
    assert_eq!(fake.claims("flaky"), 4);
    assert_eq!(
        fake.failures("flaky"),
        4,
        "each attempt ran and reported once"
    );
    assert!(fake.failure_messages("flaky")[0].contains("attempt flaky failed"));
    assert_eq!(robot.output().matches("job flaky started").count(), 4);
}

#[test]
fn rest_claims_never_exceed_the_free_workers() {
    let fake = FakeRest::start();
    let ids: Vec<String> = (0..10).map(|i| format!("cap-{i}")).collect();
    for id in &ids {
        fake.submit(id, fingerprinted(2, 0.1), json!({}));
    }
    let robot = rest_robot(&fake, json!({"max_concurrent_jobs": 2}));
    let deadline = Instant::now() + WAIT;
    let mut most = 0;
    loop {
        let running = ids
            .iter()
            .filter(|id| fake.state(id) == Some("running"))
            .count();
        most = most.max(running);
        if ids.iter().all(|id| fake.state(id) == Some("completed")) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", robot.output());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        most <= 2,
        "{most} jobs held at once by a robot with 2 workers"
    );
    assert_eq!(most, 2, "both workers were used");
}

// ---- orchestrator outages --------------------------------------------------------------------

#[test]
fn websocket_outage_mid_run_results_arrive_after_it_returns_in_order_once() {
    let mut fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = ws_robot(
        &fake,
        json!({"max_concurrent_jobs": 3, "circuit_timeout": 1}),
    );
    fake.wait_for("register", WAIT).expect("registered");
    let with_log = |secs: f64, text: &str| {
        chain(&[
            ("wait", "WaitNode", json!({"duration": secs})),
            ("log", "LogNode", json!({"message": text})),
            (
                "set",
                "SetVariableNode",
                json!({"variable_name": "said", "value": text}),
            ),
        ])
    };
    for (id, secs) in [("o1", 0.6), ("o2", 1.0), ("o3", 1.4)] {
        fake.assign_job(id, with_log(secs, id), json!({}), None);
    }
    for id in ["o1", "o2", "o3"] {
        fake.wait_until(WAIT, |m| m["type"] == "job_accept" && m["job_id"] == id)
            .expect("accepted");
    }
    let before = fake.received().len();
    fake.kill();
    // The jobs finish while the orchestrator is away.
    robot.wait_for_output("job o3 completed", WAIT);
    fake.restart();
    let last = fake
        .wait_until(WAIT, |m| m["type"] == "job_complete" && m["job_id"] == "o3")
        .unwrap_or_else(|| panic!("not delivered after the outage:\n{}", robot.output()));
    assert_eq!(last["result"]["outputs"]["said"], "o3");
    // Let the robot settle its deliveries, then check order and count.
    std::thread::sleep(Duration::from_millis(1500));
    let msgs = fake.received();
    let after = &msgs[before..];
    let completes: Vec<&str> = after
        .iter()
        .filter(|m| m["type"] == "job_complete")
        .filter_map(|m| m["job_id"].as_str())
        .collect();
    assert_eq!(completes, vec!["o1", "o2", "o3"], "in order, exactly once");
    // The log lines written offline arrive too, before the results they precede.
    let logs: Vec<String> = after
        .iter()
        .filter(|m| m["type"] == "log_batch")
        .flat_map(|m| m["logs"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    for id in ["o1", "o2", "o3"] {
        assert!(logs.iter().any(|l| l.ends_with(id)), "{id} in {logs:?}");
    }
    robot.kill9();
}

#[test]
fn rest_outage_mid_run_results_arrive_after_it_returns_in_order_once() {
    let mut fake = FakeRest::start();
    let wait = |secs: f64| {
        chain(&[
            ("wait", "WaitNode", json!({"duration": secs})),
            (
                "set",
                "SetVariableNode",
                json!({"variable_name": "done", "value": true}),
            ),
        ])
    };
    for (id, secs) in [("r1", 0.6), ("r2", 1.0), ("r3", 1.4)] {
        fake.submit(id, wait(secs), json!({}));
    }
    let robot = rest_robot(&fake, json!({"max_concurrent_jobs": 3}));
    assert!(fake.wait_until(WAIT, |f| ["r1", "r2", "r3"]
        .iter()
        .all(|id| f.state(id) == Some("running"))));
    let before = fake.requests().len();
    fake.down();
    robot.wait_for_output("job r3 completed", WAIT);
    fake.up();
    assert!(
        fake.wait_until(WAIT, |f| ["r1", "r2", "r3"]
            .iter()
            .all(|id| f.state(id) == Some("completed"))),
        "{}",
        robot.output()
    );
    let order: Vec<String> = fake.requests()[before..]
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/complete"))
        .map(|r| r.path.split('/').nth(4).unwrap_or_default().to_string())
        .collect();
    assert_eq!(order, vec!["r1", "r2", "r3"], "in order, exactly once");
    for id in ["r1", "r2", "r3"] {
        assert_eq!(fake.completions(id), 1);
    }
}

// ---- duplicates, leases, cancellations -------------------------------------------------------

#[test]
fn a_finished_job_assigned_again_after_a_crash_and_a_torn_wal_is_answered_from_its_record() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = ws_robot(&fake, json!({}));
    fake.wait_for("register", WAIT).expect("registered");
    let mut nodes = token_nodes();
    nodes.push(("log", "LogNode", json!({"message": "ran {{token}}"})));
    let wf = chain(&nodes);
    fake.assign_job("dup", wf.clone(), json!({}), None);
    let first = fake
        .wait_until(WAIT, |m| {
            m["type"] == "job_complete" && m["job_id"] == "dup"
        })
        .expect("completed");
    // Let the result be acknowledged, then crash.
    std::thread::sleep(Duration::from_millis(1500));
    robot.kill9();
    // A torn write: garbage after the last WAL frame (a transaction that never finished).
    let wal = robot.data_dir().join("casare-robot.db-wal");
    if wal.exists() {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&[0xAB; 3000]).unwrap();
    }
    robot.spawn();
    assert!(fake.wait_connections(2, WAIT));
    let before = fake.received().len();
    fake.assign_job("dup", wf, json!({}), None);
    let again = wait_new(&fake, before, |m| {
        m["type"] == "job_complete" && m["job_id"] == "dup"
    })
    .expect("answered");
    assert_eq!(
        again["result"], first["result"],
        "the recorded result, not a new run"
    );
    let msgs = fake.received();
    assert_eq!(of_type(&msgs[before..], "job_accept", "dup").len(), 1);
    assert!(
        robot.output().contains("answering from its record"),
        "{}",
        robot.output()
    );
    // The workflow ran once.
    assert_eq!(
        robot.output().matches("job dup started").count(),
        1,
        "{}",
        robot.output()
    );
}

#[test]
fn a_lost_lease_stops_the_job_and_nothing_is_reported_for_it() {
    let fake = FakeRest::start();
    fake.submit(
        "leased",
        chain(&[
            ("wait", "WaitNode", json!({"duration": 30})),
            (
                "set",
                "SetVariableNode",
                json!({"variable_name": "done", "value": true}),
            ),
        ]),
        json!({}),
    );
    let robot = rest_robot(&fake, json!({}));
    assert!(fake.wait_until(WAIT, |f| f.state("leased") == Some("running")));
    fake.cancel("leased");
    // The next renewal (a third of the 5 s lease) gets 409: the job stops.
    robot.wait_for_output("lease was lost; nothing is reported", WAIT);
    // The robot is free again and takes the next job.
    fake.submit(
        "next",
        chain(&[(
            "set",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        )]),
        json!({}),
    );
    assert!(fake.wait_until(WAIT, |f| f.state("next") == Some("completed")));
    assert_eq!(fake.completions("leased"), 0);
    assert_eq!(fake.failures("leased"), 0);
    assert!(fake.results("leased").is_empty());
    assert!(fake.failure_messages("leased").is_empty());
}

#[cfg(unix)]
#[test]
fn a_cancelled_job_is_never_resumed_after_a_crash() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = ws_robot(&fake, json!({"cancel_grace_seconds": 10}));
    fake.wait_for("register", WAIT).expect("registered");
    let marker = robot.dir().join("after-the-command");
    // A command that ignores SIGTERM: the run stays in its node while the cancellation waits.
    let wf = chain(&[
        (
            "cmd",
            "RunCommandNode",
            json!({"command": "sh", "args": ["-c", "trap '' TERM; sleep 2"], "timeout": 60}),
        ),
        (
            "touch",
            "WriteFileNode",
            json!({"file_path": marker.to_string_lossy(), "content": "ran"}),
        ),
    ]);
    fake.assign_job("cx", wf.clone(), json!({}), None);
    fake.wait_until(WAIT, |m| m["type"] == "job_accept" && m["job_id"] == "cx")
        .expect("accepted");
    std::thread::sleep(Duration::from_millis(300));
    fake.cancel_job("cx", "the user changed their mind");
    robot.wait_for_output("job cx: cancelling", WAIT);
    // The cancellation is on record; the run has not ended yet. Crash now.
    robot.kill9();
    assert!(of_type(&fake.received(), "job_cancelled", "cx").is_empty());
    robot.spawn();
    fake.wait_until(WAIT, |m| {
        m["type"] == "job_cancelled" && m["job_id"] == "cx"
    })
    .expect("settled as cancelled after the restart");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !marker.exists(),
        "the cancelled job ran on after the restart"
    );
    assert!(of_type(&fake.received(), "job_complete", "cx").is_empty());
    assert!(
        robot.output().contains("cancelled before the restart"),
        "{}",
        robot.output()
    );
}

#[test]
fn a_job_arriving_on_both_links_runs_once_and_is_reported_on_both() {
    let ws = FakeOrchestrator::start(Dialect::Casare);
    let rest = FakeRest::start();
    let wf = waited_token(0.8);
    let robot = Robot::start(json!({
        "orchestrator_url": ws.url(),
        "api_url": rest.url(),
        "poll_interval": 0.1,
        "poll_max_interval": 0.3,
        "lease_seconds": 5,
        "max_concurrent_jobs": 2,
    }));
    ws.wait_for("register", WAIT).expect("registered");
    ws.assign_job("twice", wf.clone(), json!({}), None);
    ws.wait_until(WAIT, |m| {
        m["type"] == "job_accept" && m["job_id"] == "twice"
    })
    .expect("accepted");
    rest.submit("twice", wf, json!({}));
    let by_ws = ws
        .wait_until(WAIT, |m| {
            m["type"] == "job_complete" && m["job_id"] == "twice"
        })
        .expect("reported on the WebSocket");
    assert!(rest.wait_until(WAIT, |f| f.state("twice") == Some("completed")));
    assert_eq!(rest.completions("twice"), 1);
    assert_eq!(
        rest.results("twice")[0]["outputs"]["token"],
        by_ws["result"]["outputs"]["token"],
        "one run, reported twice"
    );
    assert_eq!(
        robot.output().matches("job twice started").count(),
        1,
        "{}",
        robot.output()
    );
    // The other way round: claimed by REST first, then pushed on the WebSocket while it runs.
    let wf2 = waited_token(1.0);
    rest.submit("again", wf2.clone(), json!({}));
    assert!(rest.wait_until(WAIT, |f| f.state("again") == Some("running")));
    ws.assign_job("again", wf2, json!({}), None);
    let by_ws = ws
        .wait_until(WAIT, |m| {
            m["type"] == "job_complete" && m["job_id"] == "again"
        })
        .expect("reported on the WebSocket too");
    assert!(rest.wait_until(WAIT, |f| f.state("again") == Some("completed")));
    assert_eq!(
        rest.results("again")[0]["outputs"]["token"],
        by_ws["result"]["outputs"]["token"]
    );
    assert_eq!(robot.output().matches("job again started").count(), 1);
}

// ---- the data directory ----------------------------------------------------------------------

#[test]
fn an_unusable_data_dir_is_a_clear_warning_and_the_robot_keeps_working() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let dir = tempfile::tempdir().unwrap();
    // A data dir below a regular file cannot be created (even by root).
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let robot = ws_robot(&fake, json!({"data_dir": blocker.join("data")}));
    fake.wait_for("register", WAIT).expect("the robot runs");
    fake.assign_job(
        "mem",
        chain(&[(
            "set",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        )]),
        json!({}),
        None,
    );
    fake.wait_until(WAIT, |m| {
        m["type"] == "job_complete" && m["job_id"] == "mem"
    })
    .expect("jobs still run");
    let out = robot.output();
    assert!(out.contains("WITHOUT durability"), "{out}");
    assert!(
        out.contains("not-a-dir"),
        "the message names the path: {out}"
    );
    let hb = fake
        .wait_until(WAIT, |m| {
            m["type"] == "heartbeat" && m["metrics"]["store"].is_object()
        })
        .unwrap();
    assert_eq!(hb["metrics"]["store"]["durable"], false);
}

#[test]
fn heartbeats_report_the_outbox_and_durable_commits() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = ws_robot(&fake, json!({}));
    fake.wait_for("register", WAIT).expect("registered");
    fake.assign_job(
        "hb",
        chain(&[(
            "set",
            "SetVariableNode",
            json!({"variable_name": "x", "value": 1}),
        )]),
        json!({}),
        None,
    );
    fake.wait_until(WAIT, |m| m["type"] == "job_complete" && m["job_id"] == "hb")
        .unwrap();
    let hb = fake
        .wait_until(WAIT, |m| {
            m["type"] == "heartbeat"
                && m["metrics"]["jobs_done"] == 1
                && m["metrics"]["outbox"] == 0
        })
        .expect("the delivered result leaves the outbox");
    assert_eq!(hb["metrics"]["store"]["durable"], true);
    // Recording the job and settling it: two FULL commits (plus the epoch at start-up: none).
    assert_eq!(hb["metrics"]["store"]["full_commits"], 2, "{hb}");
}

/// An interrupted local `run --job-id` is recorded in the same store, but the daemon leaves it
/// alone: it resumes when it is run again by hand.
#[cfg(unix)]
#[test]
fn the_daemon_leaves_an_interrupted_local_run_for_the_next_run() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = ws_robot(&fake, json!({}));
    fake.wait_for("register", WAIT).expect("registered");
    robot.kill9();
    let wf_path = robot.dir().join("local.json");
    let mut nodes = token_nodes();
    nodes.push(("nap", "WaitNode", json!({"duration": 30})));
    std::fs::write(&wf_path, chain(&nodes).to_string()).unwrap();
    let (home, data) = (robot.dir().to_path_buf(), robot.data_dir());
    let local = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_casare-robot"));
        cmd.args([
            "run",
            wf_path.to_str().unwrap(),
            "--job-id",
            "loc",
            "--quiet",
        ])
        .args(args)
        .env_clear()
        .env("HOME", &home)
        .env("CASARE_DATA_DIR", &data)
        .env("CASARE_LOG_DIR", home.join("local-logs"));
        cmd
    };
    let mut run = local(&[])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ok = std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = run.wait().unwrap();
    assert_eq!(status.code(), Some(3), "interrupted: cancelled");
    // The daemon starts on the same store and does not touch it.
    robot.spawn();
    // Recovery runs before the robot connects.
    assert!(fake.wait_connections(2, WAIT));
    assert!(!robot.output().contains("job loc"), "{}", robot.output());
    robot.kill9();
    // Run again by hand: it resumes from its checkpoint.
    let out = local(&["--json", "--timeout", "0.5"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("resuming job loc"), "{stderr}");
}

// ---- results as the orchestrator reads them ----------------------------------------------------

/// `JobDetails.node_executions` of the orchestrator's OpenAPI document
/// (`head-orchestrator-openapi.json`), verbatim; the document itself is read too when present.
const OPENAPI_NODE_EXECUTIONS: &str = r#"{"items":{"additionalProperties":true,"type":"object"},"type":"array","title":"Node Executions","description":"Per-node execution breakdown"}"#;

fn openapi_node_executions_schemas() -> Vec<Value> {
    let mut schemas = vec![serde_json::from_str(OPENAPI_NODE_EXECUTIONS).expect("schema")];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["../shared", "../../shared"] {
        let path = root
            .join(dir)
            .join("fixtures/casare/orchestrator/head-orchestrator-openapi.json");
        if let Ok(text) = std::fs::read_to_string(path) {
            let doc: Value = serde_json::from_str(&text).expect("openapi is json");
            let schema =
                doc["components"]["schemas"]["JobDetails"]["properties"]["node_executions"].clone();
            assert!(
                schema.is_object(),
                "the OpenAPI document has JobDetails.node_executions"
            );
            schemas.push(schema);
        }
    }
    schemas
}

#[test]
fn the_rest_result_lists_node_executions_as_the_orchestrator_job_view_reads_them() {
    let fake = FakeRest::start();
    let steps: Vec<(&str, &str, Value)> = ["a", "b", "c"]
        .into_iter()
        .zip(1..)
        .map(|(id, n)| {
            (
                id,
                "SetVariableNode",
                json!({"variable_name": id, "value": n}),
            )
        })
        .collect();
    let wf = chain(&steps);
    fake.submit("view", wf.clone(), json!({}));
    fake.submit("capped", wf, json!({}));
    let robot = rest_robot(
        &fake,
        json!({"node_executions_max": 2, "max_concurrent_jobs": 1}),
    );
    assert!(
        fake.wait_until(WAIT, |f| f.state("capped") == Some("completed")
            && f.state("view") == Some("completed")),
        "{}",
        robot.output()
    );
    let result = fake.results("view").pop().expect("a result");
    let records = result["node_executions"]
        .as_array()
        .expect("a list")
        .clone();
    assert_eq!(records.len(), 2, "capped at node_executions_max: {result}");
    let count = result["node_execution_count"].as_u64().expect("the count");
    assert!(count >= 3, "{result}");
    assert_eq!(result["node_executions_omitted"].as_u64(), Some(count - 2));
    for schema in openapi_node_executions_schemas() {
        assert_eq!(schema["type"], "array");
        assert_eq!(schema["items"]["type"], "object");
        assert!(result["node_executions"].is_array());
        assert!(records.iter().all(Value::is_object));
    }
    let orders: Vec<u64> = records
        .iter()
        .map(|r| r["order"].as_u64().expect("order"))
        .collect();
    assert_eq!(orders, vec![1, 2], "in execution order");
    for r in &records {
        assert!(
            r["node_id"].is_string() && r["node_type"].is_string(),
            "{r}"
        );
        assert!(r["duration_ms"].is_u64(), "an integer: {r}");
        assert_eq!(r["success"], true);
        assert!(
            r["start_time"]
                .as_str()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{r}"
        );
    }
    // The job view answers (the real server answered 500 for every job of this robot).
    let details = fake
        .job_details("view")
        .expect("the job view reads the result");
    assert_eq!(details["node_executions"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        details["node_executions"][1]["node_id"],
        records[1]["node_id"]
    );
}

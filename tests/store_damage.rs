//! A damaged, reset or clock-stepped store with the real binary: a damaged page found at
//! start-up is moved aside and reported loudly (log, status file, heartbeat, `/health` 503)
//! while the robot keeps taking jobs; a database truncated to 0 bytes or rolled back by garbage
//! in its WAL is detected through the job journal, and no job runs twice or vanishes; a clock
//! step does not purge a finished job's record. Every wait has a deadline.

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::probe::{free_port, get};
use support::robot::Robot;
use support::{chain, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(20);

/// Waits until `probe` gives a value; panics with `what` and the robot's output at the deadline.
fn eventually<T>(robot: &Robot, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never: {what}\n{}",
            robot.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Breaks the b-tree header of `table`'s root page in the closed database file, so that
/// `PRAGMA integrity_check` says `btreeInitPage() returns error code 11`.
fn damage_root_page(db: &Path, table: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap();
    let page_size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(db).unwrap();
    bytes[((root - 1) * page_size) as usize] = 0x00;
    std::fs::write(db, bytes).unwrap();
    let conn = rusqlite::Connection::open(db).unwrap();
    let finding: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert!(
        finding.contains("btreeInitPage() returns error code 11"),
        "{finding}"
    );
}

fn one_node(var: &str) -> Value {
    chain(&[(
        "set",
        "SetVariableNode",
        json!({"variable_name": var, "value": 1}),
    )])
}

#[test]
fn a_damaged_page_is_moved_aside_reported_loudly_and_the_robot_keeps_taking_jobs() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let port = free_port();
    let mut robot = Robot::start(json!({"orchestrator_url": fake.url(), "health_port": port}));
    fake.wait_for("register", WAIT).expect("registered");
    let slow = chain(&[("wait", "WaitNode", json!({"duration": 30}))]);
    fake.assign_job("held", slow, json!({}), None);
    robot.wait_for_output("job held started", WAIT);
    robot.kill9();
    damage_root_page(&robot.data_dir().join("casare-robot.db"), "jobs");

    robot.spawn();
    robot.wait_for_output("is damaged", WAIT);
    let out = robot.output();
    assert!(out.contains("ERROR"), "said at error level: {out}");
    let hb = fake
        .wait_until(WAIT, |m| {
            m["type"] == "heartbeat" && m["metrics"]["store"]["damaged"].is_string()
        })
        .expect("the heartbeat says the store was damaged");
    let damaged = hb["metrics"]["store"]["damaged"].as_str().unwrap();
    assert!(damaged.contains("moved to"), "{damaged}");
    let body = eventually(&robot, "/health answers 503 naming the damage", || {
        get(port, "/health")
            .filter(|(code, body)| *code == 503 && body.contains("the store was damaged"))
    });
    assert!(
        body.1.contains("corrupt-"),
        "names the moved file: {}",
        body.1
    );
    let status_file = robot.data_dir().join("status.json");
    eventually(&robot, "status.json reports the damage", || {
        let text = std::fs::read_to_string(&status_file).ok()?;
        let status: Value = serde_json::from_str(&text).ok()?;
        status["store_damage"].as_str().map(str::to_string)
    });
    assert!(
        std::fs::read_dir(robot.data_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".corrupt-")),
        "the damaged file is kept for inspection"
    );
    // The held job is not silently lost: the journal knew it, and the orchestrator hears it
    // failed with the store.
    let failed = fake
        .wait_until(WAIT, |m| m["type"] == "job_failed" && m["job_id"] == "held")
        .expect("the held job is reported failed");
    assert!(failed.to_string().contains("store was lost"), "{failed}");
    // The robot keeps taking and running jobs on the new store.
    fake.assign_job("after", one_node("x"), json!({}), None);
    fake.wait_until(WAIT, |m| {
        m["type"] == "job_complete" && m["job_id"] == "after"
    })
    .expect("a new job runs after the damage");
}

#[test]
fn a_finished_job_assigned_again_after_a_clock_step_of_31_days_is_answered_not_run() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = Robot::start(json!({"orchestrator_url": fake.url()}));
    fake.wait_for("register", WAIT).expect("registered");
    fake.assign_job("once", one_node("x"), json!({}), None);
    fake.wait_until(WAIT, |m| {
        m["type"] == "job_complete" && m["job_id"] == "once"
    })
    .expect("completed");
    // The result leaves the outbox once a heartbeat after it was sent.
    robot.wait_for_output("job once completed", WAIT);
    eventually(&robot, "the result is acknowledged", || {
        fake.received()
            .iter()
            .rev()
            .find(|m| m["type"] == "heartbeat")
            .filter(|m| m["metrics"]["outbox"] == 0 && m["metrics"]["jobs_done"] == 1)
            .cloned()
    });
    robot.kill9();
    // The machine's clock steps 31 days ahead: to the robot, the job settled 31 days ago.
    let conn = rusqlite::Connection::open(robot.data_dir().join("casare-robot.db")).unwrap();
    conn.execute(
        "UPDATE jobs SET finished_at = finished_at - 31 * 86400, received_at = received_at - 31 * 86400",
        [],
    )
    .unwrap();
    drop(conn);
    robot.spawn();
    assert!(fake.wait_connections(2, WAIT));
    let before = fake.received().len();
    fake.assign_job("once", one_node("x"), json!({}), None);
    eventually(&robot, "the job is answered from its record", || {
        fake.received()[before..]
            .iter()
            .find(|m| m["type"] == "job_complete" && m["job_id"] == "once")
            .cloned()
    });
    let out = robot.output();
    assert!(out.contains("answering from its record"), "{out}");
    assert_eq!(
        out.matches("job once started").count(),
        1,
        "ran once: {out}"
    );
}

/// Runs `job` (one node) to its end and waits until its result left the outbox.
fn complete_and_acknowledge(fake: &FakeOrchestrator, robot: &Robot, job: &str, n_done: u64) {
    fake.assign_job(job, one_node("x"), json!({}), None);
    fake.wait_until(WAIT, |m| m["type"] == "job_complete" && m["job_id"] == job)
        .expect("completed");
    eventually(robot, "the result is acknowledged", || {
        fake.received()
            .iter()
            .rev()
            .find(|m| m["type"] == "heartbeat")
            .filter(|m| m["metrics"]["outbox"] == 0 && m["metrics"]["jobs_done"] == n_done)
            .cloned()
    });
}

/// Assigns `job` again and returns the `job_complete` that answers it.
fn assign_again(fake: &FakeOrchestrator, robot: &Robot, job: &str) -> Value {
    let before = fake.received().len();
    fake.assign_job(job, one_node("x"), json!({}), None);
    eventually(robot, "the job assigned again is answered", || {
        fake.received()[before..]
            .iter()
            .find(|m| m["type"] == "job_complete" && m["job_id"] == job)
            .cloned()
    })
}

#[test]
fn a_database_truncated_to_zero_bytes_is_detected_and_no_job_runs_twice_or_vanishes() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = Robot::start(json!({"orchestrator_url": fake.url()}));
    fake.wait_for("register", WAIT).expect("registered");
    complete_and_acknowledge(&fake, &robot, "done", 1);
    let slow = chain(&[("wait", "WaitNode", json!({"duration": 30}))]);
    fake.assign_job("running", slow, json!({}), None);
    robot.wait_for_output("job running started", WAIT);
    robot.kill9();
    let db = robot.data_dir().join("casare-robot.db");
    assert!(robot.data_dir().join("casare-robot.db-wal").exists());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(0)
        .unwrap();

    robot.spawn();
    robot.wait_for_output("recorded again from the journal", WAIT);
    // The job that was running does not vanish: the orchestrator hears it failed.
    let failed = fake
        .wait_until(WAIT, |m| {
            m["type"] == "job_failed" && m["job_id"] == "running"
        })
        .expect("the interrupted job is reported failed");
    assert!(failed.to_string().contains("store was lost"), "{failed}");
    let hb = fake
        .wait_until(WAIT, |m| {
            m["type"] == "heartbeat" && m["metrics"]["store"]["damaged"].is_string()
        })
        .expect("the heartbeat says the store was damaged");
    assert!(
        hb["metrics"]["store"]["damaged"]
            .as_str()
            .unwrap()
            .contains("journal"),
        "{hb}"
    );
    // The completed job is answered (from what survived, or from the journal), not run again.
    assign_again(&fake, &robot, "done");
    let out = robot.output();
    assert_eq!(out.matches("job done started").count(), 1, "{out}");
    assert_eq!(out.matches("job running started").count(), 1, "{out}");
}

#[test]
fn garbage_in_the_wal_is_detected_as_lost_commits_and_no_job_runs_twice() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = Robot::start(json!({"orchestrator_url": fake.url()}));
    fake.wait_for("register", WAIT).expect("registered");
    complete_and_acknowledge(&fake, &robot, "first", 1);
    // A clean stop writes the WAL into the database file.
    fake.shutdown_robot(true);
    assert!(robot.wait_exit(WAIT).is_some(), "{}", robot.output());
    robot.spawn();
    assert!(fake.wait_connections(2, WAIT));
    complete_and_acknowledge(&fake, &robot, "second", 1);
    robot.kill9();
    // Garbage over the WAL header: SQLite ignores the whole WAL, and with it every commit since
    // the clean stop.
    let wal = robot.data_dir().join("casare-robot.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[..32].fill(0xAB);
    std::fs::write(&wal, bytes).unwrap();

    robot.spawn();
    robot.wait_for_output("lost its newest", WAIT);
    assert!(fake.wait_connections(3, WAIT));
    let again = assign_again(&fake, &robot, "second");
    assert!(
        again["result"]["outputs"]["_result_lost"].is_string(),
        "{again}\n{}",
        robot.output()
    );
    let first = assign_again(&fake, &robot, "first");
    assert!(
        first["result"]["outputs"]["_result_lost"].is_null(),
        "its own record: {first}"
    );
    let out = robot.output();
    assert_eq!(out.matches("job second started").count(), 1, "{out}");
    assert_eq!(out.matches("job first started").count(), 1, "{out}");
}

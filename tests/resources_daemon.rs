//! Run resources in the daemon: 200 jobs each open a SQLite connection, begin a transaction,
//! insert, and never close it (a leak on purpose). The robot closes every one when its job
//! ends, rolling the transaction back and saying so, and its open file descriptors return to
//! the baseline (Linux: `/proc/PID/fd`).
#![cfg(target_os = "linux")]

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::robot::Robot;
use support::{wait_flag, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(15);
const JOBS: usize = 200;

/// Connect to `db`, create a table, begin, insert; the connection is never closed.
fn leaking(db: &Path) -> Value {
    let node = |ty: &str, config: Value| json!({"node_type": ty, "config": config});
    let mut nodes = serde_json::Map::new();
    for (id, ty, config) in [
        ("c", "DatabaseConnectNode", json!({"database": db})),
        (
            "mk",
            "ExecuteNonQueryNode",
            json!({"query": "CREATE TABLE IF NOT EXISTS t(v INTEGER)"}),
        ),
        ("b", "BeginTransactionNode", json!({})),
        (
            "i",
            "ExecuteNonQueryNode",
            json!({"query": "INSERT INTO t(v) VALUES(1)"}),
        ),
    ] {
        let mut n = node(ty, config);
        n["node_id"] = json!(id);
        nodes.insert(id.to_string(), n);
    }
    let order = ["c", "mk", "b", "i"];
    let mut conns: Vec<Value> = order
        .windows(2)
        .map(|w| json!({"source_node": w[0], "source_port": "exec_out", "target_node": w[1], "target_port": "exec_in"}))
        .collect();
    for user in ["mk", "b", "i"] {
        conns.push(json!({"source_node": "c", "source_port": "connection", "target_node": user, "target_port": "connection"}));
    }
    json!({"metadata": {"name": "leak"}, "nodes": nodes, "connections": conns})
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn run_job(fake: &FakeOrchestrator, job: &str, db: &Path) {
    fake.assign_job(job, leaking(db), json!({}), None);
    let done = fake
        .wait_until(WAIT, |m| m["job_id"] == job && m["type"] == "job_complete")
        .unwrap_or_else(|| panic!("{job} completes"));
    assert_eq!(done["result"]["success"], true, "{done}");
}

fn log_text(robot: &Robot) -> String {
    let mut text = robot.output();
    if let Ok(dir) = std::fs::read_dir(robot.dir().join("logs")) {
        for entry in dir.flatten() {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

#[test]
fn two_hundred_jobs_that_leak_connections_leave_no_descriptor_open() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let robot = Robot::start(json!({"orchestrator_url": fake.url(), "log_level": "INFO"}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    let pid = robot.pid().expect("running");
    let db = robot.dir().join("leak.db");
    // A warm-up job: whatever the first job opens for good (the store's pages, sockets) is in
    // the baseline.
    run_job(&fake, "warm-up", &db);
    let baseline = open_fds(pid);
    assert!(baseline > 0);
    for n in 0..JOBS {
        run_job(&fake, &format!("leak-{n}"), &db);
    }
    let mut now = open_fds(pid);
    let back = wait_flag(WAIT, || {
        now = open_fds(pid);
        now <= baseline
    });
    assert!(
        back,
        "{now} descriptors open after {JOBS} leaking jobs, {baseline} before"
    );
    // Every leaked transaction was rolled back: nothing was ever committed.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    let notes = log_text(&robot)
        .matches("the run ended with a transaction open; it was rolled back")
        .count();
    assert!(
        notes > JOBS,
        "the log says each rollback ({notes} of {} lines)",
        JOBS + 1
    );
}

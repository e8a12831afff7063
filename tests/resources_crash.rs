//! Run resources across a crash, with the real binary: a workflow connects to SQLite, begins a
//! transaction, inserts two rows, writes a marker file, waits, then commits. The robot is killed
//! with SIGKILL while it waits (the transaction open) and started again with the same job id:
//! the resume rewinds to before the connect, so the job completes once and the table holds the
//! rows exactly once (SQLite rolled the uncommitted work back). An `_at_most_once` node inside
//! the rewound span fails the job instead, naming it.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};
use support::robot::command_in as bin;

const JOB: &str = "crash-db";

fn workflow(work: &Path, insert_b_extra: serde_json::Value) -> PathBuf {
    let mut insert_b =
        serde_json::json!({"query": "INSERT INTO t(name) VALUES(?)", "parameters": ["b"]});
    if let (Some(o), Some(e)) = (insert_b.as_object_mut(), insert_b_extra.as_object()) {
        o.extend(e.clone());
    }
    let node = |id: &str, ty: &str, config: serde_json::Value| {
        (
            id.to_string(),
            serde_json::json!({"node_id": id, "node_type": ty, "config": config}),
        )
    };
    let nodes: serde_json::Map<String, serde_json::Value> = [
        node("c", "DatabaseConnectNode", serde_json::json!({"database": "shop.db"})),
        node("mk", "ExecuteNonQueryNode", serde_json::json!({"query": "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, name TEXT)"})),
        node("b", "BeginTransactionNode", serde_json::json!({})),
        node("ia", "ExecuteNonQueryNode", serde_json::json!({"query": "INSERT INTO t(name) VALUES(?)", "parameters": ["a"]})),
        node("ib", "ExecuteNonQueryNode", insert_b),
        node("mark", "WriteFileNode", serde_json::json!({"file_path": "marker.txt", "content": "in the transaction"})),
        node("w", "WaitNode", serde_json::json!({"duration": 1.5})),
        node("cm", "CommitTransactionNode", serde_json::json!({})),
        node("cl", "CloseDatabaseNode", serde_json::json!({})),
    ]
    .into_iter()
    .collect();
    let order = ["c", "mk", "b", "ia", "ib", "mark", "w", "cm", "cl"];
    let mut conns: Vec<serde_json::Value> = order
        .windows(2)
        .map(|w| serde_json::json!({"source_node": w[0], "source_port": "exec_out", "target_node": w[1], "target_port": "exec_in"}))
        .collect();
    for user in ["mk", "b", "ia", "ib", "cm", "cl"] {
        conns.push(serde_json::json!({"source_node": "c", "source_port": "connection", "target_node": user, "target_port": "connection"}));
    }
    let wf = serde_json::json!({"metadata": {"name": "db transaction"}, "nodes": nodes, "connections": conns});
    let path = work.join("db.json");
    std::fs::write(&path, wf.to_string()).unwrap();
    path
}

fn run_args(wf: &Path) -> Vec<String> {
    [
        "run",
        wf.to_str().unwrap(),
        "--job-id",
        JOB,
        "--json",
        "--quiet",
    ]
    .map(String::from)
    .to_vec()
}

/// Start the job and kill the robot with SIGKILL once the marker file shows it is waiting with
/// the transaction open.
fn start_and_kill_in_the_transaction(work: &Path, wf: &Path) {
    let mut child = bin(work)
        .args(run_args(wf))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !work.join("marker.txt").exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the robot ended before the marker was written"
        );
        assert!(Instant::now() < deadline, "the marker never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

fn run_to_end(work: &Path, wf: &Path) -> Output {
    bin(work).args(run_args(wf)).output().unwrap()
}

fn names(work: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(work.join("shop.db")).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM t ORDER BY id").unwrap();
    let out = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn killed_inside_a_transaction_the_job_rewinds_and_commits_the_rows_once() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let wf = workflow(work, serde_json::json!({}));
    start_and_kill_in_the_transaction(work, &wf);

    // The checkpoint names the live resource and its opener.
    let show = bin(work)
        .args(["checkpoints", "show", JOB])
        .output()
        .unwrap();
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(
        shown["resources"],
        serde_json::json!([{"kind": "Database", "name": "shop.db", "opener": "c", "opener_idx": 0}]),
        "{shown}"
    );

    let out = run_to_end(work, &wf);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["recovered"], true, "{v}");
    assert_eq!(v["node_outputs"]["c"]["connection"], "<Database shop.db>");
    assert_eq!(names(work), ["a", "b"], "the rows exactly once");

    // The job is finished: running the id again does not run it again.
    let again = run_to_end(work, &wf);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(names(work), ["a", "b"]);
}

#[test]
fn an_at_most_once_node_in_the_rewound_span_fails_the_job_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let wf = workflow(work, serde_json::json!({"_at_most_once": true}));
    start_and_kill_in_the_transaction(work, &wf);
    let out = run_to_end(work, &wf);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("ib (ExecuteNonQueryNode)") && stderr.contains("_at_most_once"),
        "{stderr}"
    );
    assert!(names(work).is_empty(), "nothing was committed");
}

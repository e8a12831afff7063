//! Rewind tests: runs cut by cancellation right after a chosen node (the checkpoint is then
//! exactly what a crash at that moment leaves), resumed through `plan_resume`.

use super::super::checkpoint::{plan_resume, CheckpointMeta, Checkpointer, ResumePlan};
use super::super::Store;
use crate::engine::node::NodeLog;
use crate::engine::runner::{self, Both, NodeEvent, Observer, RunOptions, RunState, RunStatus};
use crate::engine::{load_str, CancelToken, Dict, Workflow};
use crate::nodes::testing::{ex, graph};
use serde_json::json;
use std::time::Duration;

/// Cancels the run when node `id` completes for the `nth` time.
struct CutAfter {
    id: &'static str,
    nth: usize,
    seen: usize,
    token: CancelToken,
}

impl Observer for CutAfter {
    fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
        if ev.node_id == self.id {
            self.seen += 1;
            if self.seen == self.nth {
                self.token.cancel("crash");
            }
        }
    }
    fn node_log(&mut self, _ev: &NodeEvent<'_>, _log: &NodeLog) {}
}

/// `init` creates the table; a loop over 0..3 whose body connects, begins, inserts `item`,
/// logs, commits and closes. `extra` is merged into the insert node's config.
fn loop_workflow(db: &str, extra: serde_json::Value) -> Workflow {
    let mut insert = json!({"query": "INSERT INTO t(v) VALUES(?)", "parameters": ["{{item}}"]});
    if let (Some(o), Some(e)) = (insert.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let nodes = [
        ("mk", "DatabaseConnectNode", json!({"database": db})),
        (
            "init",
            "ExecuteNonQueryNode",
            json!({"query": "CREATE TABLE IF NOT EXISTS t(v INTEGER)"}),
        ),
        ("shut", "CloseDatabaseNode", json!({})),
        (
            "loop",
            "ForLoopStartNode",
            json!({"mode": "range", "end": 3}),
        ),
        ("c", "DatabaseConnectNode", json!({"database": db})),
        ("b", "BeginTransactionNode", json!({})),
        ("i", "ExecuteNonQueryNode", insert),
        ("w", "LogNode", json!({"message": "inserted {{item}}"})),
        ("cm", "CommitTransactionNode", json!({})),
        ("cl", "CloseDatabaseNode", json!({})),
        ("end", "ForLoopEndNode", json!({})),
    ];
    let edges = [
        ex("mk", "exec_out", "init"),
        ex("init", "exec_out", "shut"),
        ex("shut", "exec_out", "loop"),
        ex("loop", "body", "c"),
        ex("c", "exec_out", "b"),
        ex("b", "exec_out", "i"),
        ex("i", "exec_out", "w"),
        ex("w", "exec_out", "cm"),
        ex("cm", "exec_out", "cl"),
        ex("cl", "exec_out", "end"),
        ("mk", "connection", "init", "connection"),
        ("mk", "connection", "shut", "connection"),
        ("c", "connection", "b", "connection"),
        ("c", "connection", "i", "connection"),
        ("c", "connection", "cm", "connection"),
        ("c", "connection", "cl", "connection"),
    ];
    load_str(&graph(&nodes, &edges)).unwrap()
}

fn values(db: &str) -> Vec<i64> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT v FROM t ORDER BY rowid").unwrap();
    let out = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<i64>, _>>()
        .unwrap();
    out
}

fn rewind_rows(store: &Store, job: &str) -> i64 {
    store
        .conn
        .query_row(
            "SELECT count(*) FROM checkpoint_values WHERE job_id = ?1",
            [super::rewind_id(job)],
            |r| r.get(0),
        )
        .unwrap()
}

/// Run `wf` as job `job` until node `id` completed `nth` times, then cut.
fn run_and_cut(store: &mut Store, wf: &Workflow, job: &str, id: &'static str, nth: usize) {
    let meta = CheckpointMeta::new(wf, &Dict::new());
    let token = CancelToken::new();
    let mut cut = CutAfter {
        id,
        nth,
        seen: 0,
        token: token.clone(),
    };
    let mut writer = Checkpointer::new(store, job, meta, Duration::ZERO).for_workflow(wf, 0);
    let out = runner::run(
        wf,
        Dict::new(),
        &RunOptions::default(),
        &token,
        &mut Both(&mut writer, &mut cut),
    );
    assert_eq!(out.status, RunStatus::Cancelled, "{:?}", out.error);
}

fn resume(store: &mut Store, wf: &Workflow, job: &str) -> (String, runner::RunOutcome) {
    let meta = CheckpointMeta::new(wf, &Dict::new());
    let cp = match plan_resume(store, job, wf, &meta) {
        ResumePlan::Resume(cp) => cp,
        other => panic!("expected a resume, got {other:?}"),
    };
    let after = cp.node_id.clone();
    let mut writer = Checkpointer::new(store, job, meta, Duration::ZERO).for_workflow(wf, cp.seq);
    let out = runner::resume(
        wf,
        cp.state,
        &RunOptions::default(),
        &CancelToken::new(),
        &mut writer,
    );
    (after, out)
}

#[test]
fn a_cut_inside_a_loop_body_rewinds_to_before_the_opener_in_that_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db").display().to_string();
    let mut store = Store::open(&dir.path().join("data")).unwrap();
    let wf = loop_workflow(&db, json!({}));
    // Cut after the insert of iteration 1: its transaction is open and uncommitted.
    run_and_cut(&mut store, &wf, "j", "i", 2);
    assert_eq!(values(&db), [0], "the open transaction was rolled back");
    assert!(
        rewind_rows(&store, "j") > 0,
        "a rewind point is kept while the span is open"
    );
    let listed: Vec<String> = store
        .list_checkpoints()
        .unwrap()
        .into_iter()
        .map(|c| c.job_id)
        .collect();
    assert_eq!(
        listed,
        ["j"],
        "the rewind snapshot is not listed as a checkpoint"
    );
    let shown = super::super::checkpoint::describe(&store, "j")
        .unwrap()
        .unwrap();
    assert_eq!(shown["resources"][0]["kind"], "Database");
    assert_eq!(shown["resources"][0]["name"], "t.db");
    assert_eq!(shown["resources"][0]["opener"], "c");

    let (after, out) = resume(&mut store, &wf, "j");
    assert_eq!(
        after, "loop",
        "resumed from the checkpoint just before the opener"
    );
    assert!(out.success(), "{:?}", out.error);
    assert_eq!(values(&db), [0, 1, 2], "every row exactly once");
    assert_eq!(
        rewind_rows(&store, "j"),
        0,
        "the span ended, the rewind point is gone"
    );
}

#[test]
fn a_span_that_closed_drops_its_rewind_point_and_resumes_normally() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db").display().to_string();
    let mut store = Store::open(&dir.path().join("data")).unwrap();
    let wf = loop_workflow(&db, json!({}));
    run_and_cut(&mut store, &wf, "j", "cl", 1);
    assert_eq!(rewind_rows(&store, "j"), 0);
    let (after, out) = resume(&mut store, &wf, "j");
    assert_eq!(after, "cl", "nothing open: no rewind");
    assert!(out.success(), "{:?}", out.error);
    assert_eq!(values(&db), [0, 1, 2]);
}

#[test]
fn an_at_most_once_node_in_the_rewound_span_refuses_the_resume() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db").display().to_string();
    let mut store = Store::open(&dir.path().join("data")).unwrap();
    let wf = loop_workflow(&db, json!({"_at_most_once": true}));
    run_and_cut(&mut store, &wf, "j", "w", 1);
    let meta = CheckpointMeta::new(&wf, &Dict::new());
    match plan_resume(&mut store, "j", &wf, &meta) {
        ResumePlan::Refuse(err) => {
            assert_eq!(err.node_id, "i");
            assert!(
                err.message.contains("_at_most_once") && err.message.contains("<Database t.db>"),
                "{}",
                err.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_opener_right_after_the_start_rewinds_to_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db").display().to_string();
    let mut store = Store::open(&dir.path().join("data")).unwrap();
    let wf = loop_workflow(&db, json!({}));
    run_and_cut(&mut store, &wf, "j", "init", 1);
    let (after, out) = resume(&mut store, &wf, "j");
    assert_eq!(after, crate::engine::model::AUTO_START_ID);
    assert!(out.success(), "{:?}", out.error);
    assert_eq!(values(&db), [0, 1, 2]);
}

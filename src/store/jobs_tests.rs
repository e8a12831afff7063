use super::*;
use crate::store::checkpoint::CheckpointMeta;
use crate::store::Store;
use serde_json::json;
use std::sync::Arc;

fn vars() -> serde_json::Map<String, Value> {
    json!({"a": 1}).as_object().unwrap().clone()
}

fn new_job<'a>(
    id: &'a str,
    route: Route,
    v: &'a serde_json::Map<String, Value>,
    attempt: u32,
) -> NewJob<'a> {
    NewJob {
        job_id: id,
        route,
        workflow: r#"{"nodes": {}}"#,
        variables: v,
        timeout: Some(30.0),
        attempt,
        lease_expires_at: None,
    }
}

fn complete() -> Report {
    Report::Complete {
        result: json!({"success": true, "outputs": {"x": 1}}),
        duration_ms: 5,
    }
}

fn failed() -> Report {
    Report::Failed {
        error: "n1 (LogNode): boom".into(),
        error_type: "NodeError".into(),
        failed_node: Some("n1".into()),
        duration_ms: 1,
    }
}

fn progress(p: u8) -> Report {
    Report::Progress {
        progress: p,
        current_node: Some("n".into()),
        message: None,
    }
}

fn shared(store: Store) -> SharedStore {
    Arc::new(parking_lot::Mutex::new(store))
}

#[test]
fn a_job_is_recorded_once_and_a_second_route_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    assert_eq!(
        store.record_job(&new_job("j1", Route::Ws, &v, 0)).unwrap(),
        Recorded::New
    );
    let before = store.counters().full_commits;
    match store
        .record_job(&new_job("j1", Route::Rest, &v, 0))
        .unwrap()
    {
        Recorded::Known(rec) => {
            assert_eq!(rec.state, JobState::Received);
            assert!(rec.routes.has(Route::Ws) && rec.routes.has(Route::Rest));
            assert_eq!(rec.workflow, r#"{"nodes": {}}"#);
            assert_eq!(rec.variables, v);
            assert_eq!(rec.timeout, Some(30.0));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.counters().full_commits,
        before + 1,
        "recording is a FULL commit"
    );
    drop(store);
    // Durable: a new process sees it.
    let store = Store::open(dir.path()).unwrap();
    let rec = store.job("j1").unwrap().unwrap();
    assert_eq!(rec.routes.iter().count(), 2);
}

#[test]
fn the_lock_admits_one_run_per_process_and_fences_stale_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared(Store::open(dir.path()).unwrap());
    let v = vars();
    store
        .lock()
        .record_job(&new_job("j", Route::Ws, &v, 0))
        .unwrap();
    let epoch1 = store.lock().begin_epoch().unwrap();
    let locker = JobLocker::new(store.clone(), epoch1);
    assert!(!locker.is_locked("j").unwrap());
    let lock1 = locker.acquire_lock("j").unwrap().expect("first run locks");
    assert!(locker.is_locked("j").unwrap());
    assert_eq!(locker.acquire_lock("j").unwrap(), None, "one run at a time");
    assert_eq!(locker.acquire_lock("unknown").unwrap(), None);
    // A crash: the next process (a new epoch) takes the job over with a new token.
    let epoch2 = store.lock().begin_epoch().unwrap();
    assert!(epoch2 > epoch1);
    let locker2 = JobLocker::new(store.clone(), epoch2);
    let lock2 = locker2
        .acquire_lock("j")
        .unwrap()
        .expect("stale lock taken over");
    assert!(lock2.token > lock1.token);
    // The stale run cannot settle the job; the current one can, once.
    assert_eq!(
        store
            .lock()
            .finish_job("j", lock1.token, &complete())
            .unwrap(),
        Finish::Fenced
    );
    assert!(matches!(
        store
            .lock()
            .finish_job("j", lock2.token, &complete())
            .unwrap(),
        Finish::Reported(..)
    ));
    assert_eq!(
        store
            .lock()
            .finish_job("j", lock2.token, &complete())
            .unwrap(),
        Finish::Fenced
    );
    assert_eq!(
        locker2.acquire_lock("j").unwrap(),
        None,
        "never again once settled"
    );
    // release_lock of a held run lets a later process take it.
    store
        .lock()
        .record_job(&new_job("k", Route::Ws, &v, 0))
        .unwrap();
    let lock = locker2.acquire_lock("k").unwrap().unwrap();
    assert!(locker2.release_lock(&lock).unwrap());
    assert!(!locker2.is_locked("k").unwrap());
}

#[test]
fn finishing_records_the_report_drops_the_checkpoint_and_fills_the_outbox_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    store.record_job(&new_job("j", Route::Ws, &v, 0)).unwrap();
    store.record_job(&new_job("j", Route::Rest, &v, 0)).unwrap();
    let token = store.start_job("j", 1).unwrap().unwrap();
    // A checkpoint as a run leaves it.
    let wf = crate::engine::load_str(&crate::nodes::testing::chain(&[(
        "a",
        "SetVariableNode",
        json!({"variable_name": "x", "value": 1}),
    )]))
    .unwrap();
    let state = crate::engine::runner::RunState::new(
        &wf,
        crate::engine::Dict::new(),
        &crate::engine::runner::RunOptions::default(),
    );
    let meta = CheckpointMeta::new(&wf, &crate::engine::Dict::new());
    store.save_checkpoint("j", "a", &state, &meta).unwrap();
    assert!(store.has_checkpoint("j").unwrap());
    let before = store.counters().full_commits;
    let finish = store.finish_job("j", token, &complete()).unwrap();
    assert_eq!(
        store.counters().full_commits,
        before + 1,
        "one FULL transaction"
    );
    assert!(matches!(
        finish,
        Finish::Reported(Report::Complete { .. }, _)
    ));
    assert!(!store.has_checkpoint("j").unwrap());
    let rec = store.job("j").unwrap().unwrap();
    assert_eq!(rec.state, JobState::Finished);
    assert_eq!(rec.report, Some(complete()));
    assert_eq!(rec.workflow, "", "the workflow is dropped once settled");
    for route in [Route::Ws, Route::Rest] {
        let entries = store.outbox_after(route, 0, 10).unwrap();
        assert_eq!(entries.len(), 1, "{route:?}");
        assert_eq!(entries[0].report, complete());
        assert_eq!(entries[0].job_id.as_deref(), Some("j"));
    }
}

#[test]
fn a_failed_run_keeps_its_checkpoint_for_a_new_attempt_and_only_rest_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    store.record_job(&new_job("j", Route::Rest, &v, 0)).unwrap();
    let t = store.start_job("j", 1).unwrap().unwrap();
    store.finish_job("j", t, &failed()).unwrap();
    // The same attempt again (a duplicate claim): answered from the record.
    assert!(matches!(
        store.record_job(&new_job("j", Route::Rest, &v, 0)).unwrap(),
        Recorded::Known(rec) if rec.report == Some(failed())
    ));
    // A WebSocket re-assignment is a duplicate too.
    assert!(matches!(
        store.record_job(&new_job("j", Route::Ws, &v, 5)).unwrap(),
        Recorded::Known(_)
    ));
    // The server's re-queue (retry_count + 1): a new attempt.
    assert_eq!(
        store.record_job(&new_job("j", Route::Rest, &v, 1)).unwrap(),
        Recorded::Retry
    );
    let rec = store.job("j").unwrap().unwrap();
    assert_eq!(
        (rec.state, rec.attempt, rec.report),
        (JobState::Received, 1, None)
    );
    assert!(store.start_job("j", 1).unwrap().is_some());
    // A completed job is never retried.
    store.record_job(&new_job("c", Route::Rest, &v, 0)).unwrap();
    let t = store.start_job("c", 1).unwrap().unwrap();
    store.finish_job("c", t, &complete()).unwrap();
    assert!(matches!(
        store.record_job(&new_job("c", Route::Rest, &v, 3)).unwrap(),
        Recorded::Known(_)
    ));
}

#[test]
fn cancellations_are_persisted_and_decide_what_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared(Store::open(dir.path()).unwrap());
    let v = vars();
    let checker = CancellationChecker::new(store.clone());
    for (id, route) in [
        ("held", Route::Ws),
        ("ws", Route::Ws),
        ("lost", Route::Rest),
        ("early", Route::Ws),
    ] {
        store.lock().record_job(&new_job(id, route, &v, 0)).unwrap();
    }
    let tokens: Vec<u64> = ["held", "ws", "lost"]
        .iter()
        .map(|id| store.lock().start_job(id, 1).unwrap().unwrap())
        .collect();
    // Stopped without a cancellation on record (a shutdown): held, nothing reported.
    assert_eq!(
        store
            .lock()
            .finish_job("held", tokens[0], &Report::Cancelled)
            .unwrap(),
        Finish::Held
    );
    assert_eq!(
        store.lock().job("held").unwrap().unwrap().state,
        JobState::Running
    );
    // job_cancel: persisted first, then the run ends and reports job_cancelled.
    assert_eq!(
        checker
            .request("ws", CancelKind::Orchestrator, "user asked")
            .unwrap(),
        Some(JobState::Running)
    );
    assert!(checker.is_cancelled("ws").unwrap());
    assert!(matches!(
        store
            .lock()
            .finish_job("ws", tokens[1], &Report::Cancelled)
            .unwrap(),
        Finish::Reported(Report::Cancelled, _)
    ));
    // A lost lease: the job stops and nothing is reported, even when it had completed.
    checker
        .request("lost", CancelKind::LeaseLost, "409 on extend-lease")
        .unwrap();
    assert_eq!(
        store
            .lock()
            .finish_job("lost", tokens[2], &complete())
            .unwrap(),
        Finish::Silent
    );
    assert_eq!(
        store.lock().job("lost").unwrap().unwrap().state,
        JobState::Cancelled
    );
    // Cancelled before it started: never runs; acknowledging settles it.
    checker
        .request("early", CancelKind::Orchestrator, "x")
        .unwrap();
    assert_eq!(store.lock().start_job("early", 2).unwrap(), None);
    assert!(checker.acknowledge_cancellation("early").unwrap());
    assert!(!checker.acknowledge_cancellation("early").unwrap());
    let ws: Vec<_> = store
        .lock()
        .outbox_after(Route::Ws, 0, 10)
        .unwrap()
        .into_iter()
        .map(|e| (e.job_id.unwrap(), e.report))
        .collect();
    assert_eq!(
        ws,
        vec![
            ("ws".to_string(), Report::Cancelled),
            ("early".to_string(), Report::Cancelled)
        ]
    );
    assert_eq!(store.lock().outbox_len(Some(Route::Rest)).unwrap(), 0);
    // A restart resumes only the held job.
    let unsettled: Vec<String> = store
        .lock()
        .unsettled_jobs()
        .unwrap()
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(unsettled, vec!["held".to_string()]);
    // Cancelling a settled or unknown job changes nothing.
    assert_eq!(
        checker
            .request("ws", CancelKind::LeaseLost, "late")
            .unwrap(),
        Some(JobState::Cancelled)
    );
    assert_eq!(
        checker
            .request("nope", CancelKind::Orchestrator, "")
            .unwrap(),
        None
    );
}

#[test]
fn the_offline_queue_is_fifo_persistent_deduplicated_and_coalesces_progress() {
    let dir = tempfile::tempdir().unwrap();
    let store = shared(Store::open(dir.path()).unwrap());
    let q = OfflineQueue::new(store.clone(), Route::Ws);
    assert!(q.is_empty().unwrap());
    q.enqueue(Some("a"), &progress(10)).unwrap();
    q.enqueue(None, &Report::Logs { logs: vec![] }).unwrap();
    q.enqueue(Some("a"), &progress(50)).unwrap();
    assert!(q.enqueue(Some("a"), &complete()).unwrap().is_some());
    assert_eq!(
        q.enqueue(Some("a"), &complete()).unwrap(),
        None,
        "one result per job"
    );
    q.enqueue(Some("b"), &failed()).unwrap();
    // Another route is another queue.
    OfflineQueue::new(store.clone(), Route::Rest)
        .enqueue(Some("a"), &complete())
        .unwrap();
    assert_eq!(q.len().unwrap(), 4);
    drop(q);
    let store2 = {
        // Persistent across a restart.
        drop(store);
        shared(Store::open(dir.path()).unwrap())
    };
    let q = OfflineQueue::new(store2.clone(), Route::Ws);
    let order: Vec<Report> = {
        let mut seen = Vec::new();
        let mut n = 0;
        let summary = q
            .sync_with_orchestrator(|e| {
                n += 1;
                seen.push(e.report.clone());
                if n == 3 {
                    Delivery::Retry
                } else {
                    Delivery::Accepted
                }
            })
            .unwrap();
        assert_eq!(summary.delivered, 2);
        assert_eq!(summary.remaining, 2);
        seen
    };
    assert_eq!(
        order,
        vec![Report::Logs { logs: vec![] }, progress(50), complete()],
        "FIFO; the coalesced progress takes the latest position"
    );
    let head = q.peek().unwrap().unwrap();
    assert_eq!(head.report, complete());
    assert_eq!(head.attempts, 1);
    let summary = q
        .sync_with_orchestrator(|e| {
            if e.job_id.as_deref() == Some("b") {
                Delivery::Refused
            } else {
                Delivery::Accepted
            }
        })
        .unwrap();
    assert_eq!(
        (summary.delivered, summary.refused, summary.remaining),
        (1, 1, 0)
    );
    assert_eq!(
        store2.lock().outbox_len(None).unwrap(),
        1,
        "the REST entry stays"
    );
}

#[test]
fn a_full_disk_is_a_clear_error_and_the_store_keeps_working_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    store
        .record_job(&new_job("small", Route::Ws, &v, 0))
        .unwrap();
    crate::store::tests::forbid_growth(&store);
    // A large, incompressible workflow does not fit.
    let mut rng = fastrand::Rng::with_seed(7);
    let big: String = (0..400_000).map(|_| rng.alphanumeric()).collect();
    let err = store
        .record_job(&NewJob {
            workflow: &big,
            ..new_job("big", Route::Ws, &v, 0)
        })
        .unwrap_err();
    assert!(err.is_full(), "{err:?}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert_eq!(store.job("big").unwrap(), None, "nothing half-written");
    // What fits still works.
    let t = store.start_job("small", 1).unwrap().unwrap();
    assert!(matches!(
        store.finish_job("small", t, &complete()).unwrap(),
        Finish::Reported(..)
    ));
}

#[test]
fn a_damaged_record_is_settled_as_failed_instead_of_blocking_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    store.record_job(&new_job("ok", Route::Ws, &v, 0)).unwrap();
    store.record_job(&new_job("bad", Route::Ws, &v, 0)).unwrap();
    store
        .conn
        .execute(
            "UPDATE jobs SET workflow = x'01020304' WHERE job_id = 'bad'",
            [],
        )
        .unwrap();
    let ids: Vec<String> = store
        .unsettled_jobs()
        .unwrap()
        .into_iter()
        .map(|r| r.job_id)
        .collect();
    assert_eq!(ids, vec!["ok".to_string()]);
    let rec = store.job("bad");
    assert!(
        rec.is_ok(),
        "a settled record no longer carries the damaged workflow"
    );
    let entries = store.outbox_after(Route::Ws, 0, 10).unwrap();
    assert!(
        matches!(&entries[0].report, Report::Failed { error_type, .. } if error_type == "StoreError")
    );
}

#[test]
fn settled_jobs_are_purged_by_settle_order_but_not_while_their_report_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    for id in ["a", "b"] {
        store.record_job(&new_job(id, Route::Ws, &v, 0)).unwrap();
        let t = store.start_job(id, 1).unwrap().unwrap();
        store.finish_job(id, t, &complete()).unwrap();
    }
    let a_seq = store.outbox_after(Route::Ws, 0, 1).unwrap()[0].seq;
    store.outbox_remove(&[a_seq]).unwrap();
    assert_eq!(store.purge_jobs(0).unwrap(), 1);
    assert!(store.job("a").unwrap().is_none());
    assert!(store.job("b").unwrap().is_some());
    assert_eq!(store.purge_jobs(10).unwrap(), 0);
}

#[test]
fn a_clock_step_purges_nothing_only_newer_settles_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    let settle = |store: &mut Store, id: &str| {
        store.record_job(&new_job(id, Route::Ws, &v, 0)).unwrap();
        let t = store.start_job(id, 1).unwrap().unwrap();
        store.finish_job(id, t, &complete()).unwrap();
        let seqs: Vec<i64> = store
            .outbox_after(Route::Ws, 0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        store.outbox_remove(&seqs).unwrap();
    };
    settle(&mut store, "old");
    // The wall clock jumps 31 days ahead (as if the job had settled 31 days ago).
    store
        .conn
        .execute(
            "UPDATE jobs SET finished_at = finished_at - 31 * 86400, received_at = received_at - 31 * 86400",
            [],
        )
        .unwrap();
    assert_eq!(store.purge_jobs(100).unwrap(), 0);
    let again = store.record_job(&new_job("old", Route::Ws, &v, 0)).unwrap();
    assert!(matches!(again, Recorded::Known(_)), "{again:?}");
    // Only settles push a record out: with room for 2, the third settle purges the oldest.
    settle(&mut store, "b");
    settle(&mut store, "c");
    assert_eq!(store.purge_jobs(2).unwrap(), 1);
    assert!(store.job("old").unwrap().is_none());
    assert!(store.job("b").unwrap().is_some() && store.job("c").unwrap().is_some());
}

#[test]
fn an_in_memory_store_behaves_the_same() {
    let mut store = Store::open_in_memory().unwrap();
    assert!(!store.is_durable());
    let v = vars();
    assert_eq!(
        store.record_job(&new_job("j", Route::Ws, &v, 0)).unwrap(),
        Recorded::New
    );
    let t = store.start_job("j", 1).unwrap().unwrap();
    assert!(matches!(
        store.finish_job("j", t, &complete()).unwrap(),
        Finish::Reported(..)
    ));
    assert_eq!(store.outbox_len(Some(Route::Ws)).unwrap(), 1);
}

#[test]
fn log_batches_in_the_outbox_are_bounded_but_results_never_dropped() {
    let mut store = Store::open_in_memory().unwrap();
    store
        .outbox_push(Route::Ws, Some("r"), &complete())
        .unwrap();
    for i in 0..(MAX_LOG_BATCHES + 5) {
        let logs = vec![crate::link::protocol::LogEntry {
            message: format!("line {i}"),
            ..Default::default()
        }];
        store
            .outbox_push(Route::Ws, None, &Report::Logs { logs })
            .unwrap();
    }
    assert_eq!(
        store.outbox_len(Some(Route::Ws)).unwrap(),
        MAX_LOG_BATCHES + 1
    );
    let first = store.outbox_after(Route::Ws, 0, 2).unwrap();
    assert_eq!(first[0].report, complete(), "the result stays");
    match &first[1].report {
        Report::Logs { logs } => assert_eq!(logs[0].message, "line 5", "the oldest logs went"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_local_run_is_recorded_like_a_job_and_runs_again_only_after_a_failure() {
    let mut store = Store::open_in_memory().unwrap();
    let v = serde_json::Map::new();
    let local = |id| NewJob {
        workflow: "",
        ..new_job(id, Route::Local, &v, 0)
    };
    assert_eq!(store.record_job(&local("l")).unwrap(), Recorded::New);
    let rec = store.job("l").unwrap().unwrap();
    assert_eq!(
        rec.routes.iter().count(),
        0,
        "a local run reports to no link"
    );
    let t = store.start_job("l", 1).unwrap().unwrap();
    store.finish_job("l", t, &failed()).unwrap();
    assert_eq!(store.outbox_len(None).unwrap(), 0);
    // Run again by hand after a failure: a new attempt.
    assert_eq!(store.record_job(&local("l")).unwrap(), Recorded::Retry);
    let t = store.start_job("l", 2).unwrap().unwrap();
    store.finish_job("l", t, &complete()).unwrap();
    match store.record_job(&local("l")).unwrap() {
        Recorded::Known(rec) => {
            assert_eq!(rec.report, Some(complete()));
            assert!(rec.finished_at.is_some());
        }
        other => panic!("{other:?}"),
    }
    // `checkpoints clear` forgets it: the id is new again.
    assert!(store.forget_job("l").unwrap());
    assert_eq!(store.record_job(&local("l")).unwrap(), Recorded::New);
}

#[test]
fn completion_records_of_schema_2_become_local_job_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .conn
            .execute_batch(
                "CREATE TABLE completed_jobs(job_id TEXT PRIMARY KEY, finished_at REAL NOT NULL, result TEXT NOT NULL);
                 INSERT INTO completed_jobs VALUES('old', 1000.0, '{\"success\": true, \"duration_ms\": 7}');
                 INSERT INTO completed_jobs VALUES('bad', 1000.0, 'not json');
                 UPDATE meta SET value = '2' WHERE key = 'schema_version';",
            )
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let rec = store.job("old").unwrap().unwrap();
    assert_eq!(rec.state, JobState::Finished);
    assert_eq!(rec.finished_at, Some(1000.0));
    assert_eq!(
        rec.report,
        Some(Report::Complete {
            result: json!({"success": true, "duration_ms": 7}),
            duration_ms: 7
        })
    );
    assert!(
        store.job("bad").unwrap().is_none(),
        "a damaged record is dropped"
    );
    let left: i64 = store
        .conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name = 'completed_jobs'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn resumes_are_counted_durably_and_reset_by_progress_or_a_clean_hold() {
    let mut store = Store::open_in_memory().unwrap();
    let v = vars();
    store.record_job(&new_job("j", Route::Ws, &v, 0)).unwrap();
    let attempts = |store: &Store| store.job("j").unwrap().unwrap().resume_attempts;
    let poison = |store: &Store, max| poison_report(&store.job("j").unwrap().unwrap(), max);

    // A first start is not a resume, and costs no FULL commit.
    let fulls = store.counters().full_commits;
    store.start_job("j", 1).unwrap().unwrap();
    assert_eq!(attempts(&store), 0);
    assert_eq!(store.counters().full_commits, fulls);
    // Each start after a death (a new process finds it running) counts, FULL, before it runs.
    for n in 1..=3u32 {
        assert!(poison(&store, 3).is_none());
        store.start_job("j", 1 + u64::from(n)).unwrap().unwrap();
        assert_eq!(attempts(&store), n);
        assert_eq!(store.counters().full_commits, fulls + u64::from(n));
    }
    let Some(Report::Failed {
        error_type, error, ..
    }) = poison(&store, 3)
    else {
        panic!("three dead resumes make a poison job");
    };
    assert_eq!(error_type, POISON_JOB);
    assert!(error.contains("max_resume_attempts = 3"), "{error}");
    assert!(poison(&store, 4).is_none());

    // The first checkpoint of a run is progress: the count starts again.
    let wf = crate::engine::load_str(&crate::nodes::testing::chain(&[(
        "a",
        "LogNode",
        json!({"message": "x"}),
    )]))
    .unwrap();
    let state = crate::engine::runner::RunState::new(
        &wf,
        crate::engine::Dict::new(),
        &crate::engine::RunOptions::default(),
    );
    let meta = CheckpointMeta::new(&wf, &crate::engine::Dict::new());
    store.save_checkpoint("j", "a", &state, &meta).unwrap();
    assert_eq!(attempts(&store), 0);

    // A clean hold at shutdown is not a death either.
    let token = store.start_job("j", 10).unwrap().unwrap();
    assert_eq!(attempts(&store), 1);
    assert_eq!(
        store.finish_job("j", token, &Report::Cancelled).unwrap(),
        Finish::Held
    );
    assert_eq!(attempts(&store), 0);
}

#[test]
fn job_records_of_schema_3_gain_the_resume_counter() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::open(dir.path()).unwrap();
        let v = vars();
        store.record_job(&new_job("old", Route::Ws, &v, 0)).unwrap();
        store
            .conn
            .execute_batch(
                "ALTER TABLE jobs DROP COLUMN resume_attempts;
                 UPDATE meta SET value = '3' WHERE key = 'schema_version';",
            )
            .unwrap();
    }
    let mut store = Store::open(dir.path()).unwrap();
    assert_eq!(store.job("old").unwrap().unwrap().resume_attempts, 0);
    store.start_job("old", 1).unwrap().unwrap();
    store.start_job("old", 2).unwrap().unwrap();
    assert_eq!(store.job("old").unwrap().unwrap().resume_attempts, 1);
}

#[test]
fn progress_after_a_jobs_result_is_recorded_is_stale_and_not_queued() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let v = vars();
    store.record_job(&new_job("j", Route::Ws, &v, 0)).unwrap();
    let token = store.start_job("j", 1).unwrap().unwrap();
    store
        .outbox_push(Route::Ws, Some("j"), &progress(50))
        .unwrap();
    // The worker settles the job before the agent handles the job's last progress event.
    store.finish_job("j", token, &complete()).unwrap();
    assert!(store.progress_is_stale(Route::Ws, "j").unwrap());
    assert_eq!(
        store
            .outbox_push(Route::Ws, Some("j"), &progress(83))
            .unwrap(),
        None
    );
    let order = |store: &Store| -> Vec<Report> {
        store
            .outbox_after(Route::Ws, 0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.report)
            .collect()
    };
    assert_eq!(
        order(&store),
        [progress(50), complete()],
        "nothing comes after the result"
    );
    // Delivered, the result leaves; the job stays settled, its progress stale.
    let seqs: Vec<i64> = store
        .outbox_after(Route::Ws, 0, 10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    store.outbox_remove(&seqs).unwrap();
    assert_eq!(
        store
            .outbox_push(Route::Ws, Some("j"), &progress(90))
            .unwrap(),
        None
    );
    assert!(order(&store).is_empty());
    // A running job's progress is queued (and coalesced) as before.
    store.record_job(&new_job("k", Route::Ws, &v, 0)).unwrap();
    assert!(!store.progress_is_stale(Route::Ws, "k").unwrap());
    assert!(store
        .outbox_push(Route::Ws, Some("k"), &progress(10))
        .unwrap()
        .is_some());
}

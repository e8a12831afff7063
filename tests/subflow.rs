//! Sub-workflows through the real binary: `run` and `validate` with a parent and its child
//! side by side, daemon jobs with embedded `subflows` (and one whose sub-workflow is missing),
//! and kill -9 inside a sub-workflow: the resume continues inside it. Every wait has a deadline.

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::robot::Robot;
use support::{chain, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(20);

fn bin(work: &Path) -> Command {
    support::robot::command_in(work)
}

/// A child greeting its input `who` into the output `greeting`.
fn greeter() -> Value {
    let mut child = chain(&[(
        "greet",
        "SetVariableNode",
        json!({"variable_name": "greeting", "value": "hello {{who}}"}),
    )]);
    child["id"] = json!("greeter");
    child["inputs"] = json!([{"name": "who", "type": "STRING", "default_value": "nobody"}]);
    child["outputs"] = json!([{"name": "greeting", "type": "STRING"}]);
    child
}

fn caller(path: &str) -> Value {
    chain(&[
        (
            "call",
            "CallSubworkflowNode",
            json!({"subworkflow_path": path, "subworkflow_id": "greeter", "who": "{{name}}"}),
        ),
        (
            "keep",
            "SetVariableNode",
            json!({"variable_name": "message", "value": "{{call.greeting}}"}),
        ),
    ])
}

/// The node ids of a result's `node_executions`, in order.
fn executed_ids(result: &Value) -> Vec<&str> {
    result["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect()
}

#[test]
fn run_and_validate_find_the_child_next_to_the_parent() {
    let work = tempfile::tempdir().unwrap();
    let flows = work.path().join("flows");
    std::fs::create_dir_all(flows.join("lib")).unwrap();
    std::fs::write(flows.join("lib/greeter.json"), greeter().to_string()).unwrap();
    std::fs::write(
        flows.join("main.json"),
        caller("lib/greeter.json").to_string(),
    )
    .unwrap();
    // The working directory is elsewhere: the path resolves from the parent's folder.
    let out = bin(work.path())
        .args([
            "run",
            "flows/main.json",
            "--json",
            "--quiet",
            "--var",
            "name=Ada",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["outputs"]["message"], "hello Ada", "{result}");
    assert_eq!(result["node_outputs"]["call"]["success"], true);
    let ids = executed_ids(&result);
    assert!(ids.contains(&"call/greet"), "{ids:?}");

    let out = bin(work.path())
        .args(["validate", "flows/main.json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::remove_file(flows.join("lib/greeter.json")).unwrap();
    for cmd in ["validate", "run"] {
        let out = bin(work.path())
            .args([cmd, "flows/main.json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(
            stderr.contains(
                "call (CallSubworkflowNode): sub-workflow \"lib/greeter.json\" was not found"
            ),
            "{cmd}: {stderr}"
        );
    }
}

fn for_job<'a>(job: &'a str, ty: &'a str) -> impl FnMut(&Value) -> bool + 'a {
    move |m| m["job_id"] == job && m["type"] == ty
}

#[test]
fn a_daemon_job_runs_embedded_subflows_and_one_missing_is_refused() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = Robot::start(json!({"orchestrator_url": fake.url(), "ws_dialect": "casare"}));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");

    fake.send(json!({
        "type": "job_assign",
        "job_id": "with-sub",
        "workflow_data": caller("lib/greeter.json"),
        "subflows": {"lib/greeter.json": greeter()},
        "variables": {"name": "Bob"},
    }));
    let done = fake
        .wait_until(WAIT, for_job("with-sub", "job_complete"))
        .expect("job_complete");
    assert_eq!(done["result"]["outputs"]["message"], "hello Bob", "{done}");

    fake.send(json!({
        "type": "job_assign",
        "job_id": "missing-sub",
        "workflow_data": caller("lib/elsewhere.json"),
        "subflows": {"lib/greeter.json": greeter()},
    }));
    let failed = fake
        .wait_until(WAIT, for_job("missing-sub", "job_failed"))
        .expect("the job is refused");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("call (CallSubworkflowNode): sub-workflow \"lib/elsewhere.json\" was not found: not among the job's embedded subflows"),
        "{failed}"
    );
    // Refused before it ran: nothing started.
    assert!(
        !fake
            .received()
            .iter()
            .any(|m| m["job_id"] == "missing-sub" && m["type"] == "job_progress"),
        "the refused job never ran"
    );
}

#[test]
fn a_daemon_job_reads_sub_workflow_files_only_under_allowed_paths() {
    let files = tempfile::tempdir().unwrap();
    let allowed = files.path().join("allowed");
    let outside = files.path().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(allowed.join("greeter.json"), greeter().to_string()).unwrap();
    std::fs::write(outside.join("greeter.json"), greeter().to_string()).unwrap();
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = Robot::start(json!({
        "orchestrator_url": fake.url(),
        "ws_dialect": "casare",
        "allowed_paths": [allowed],
    }));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");

    let inside = allowed.join("greeter.json");
    fake.send(json!({
        "type": "job_assign",
        "job_id": "inside",
        "workflow_data": caller(inside.to_str().unwrap()),
        "variables": {"name": "Ann"},
    }));
    let done = fake
        .wait_until(WAIT, for_job("inside", "job_complete"))
        .expect("job_complete");
    assert_eq!(done["result"]["outputs"]["message"], "hello Ann", "{done}");

    // The same workflow one folder over, and a path climbing out with "..": both refused
    // before anything runs, naming the rule.
    let beside = outside.join("greeter.json");
    let climbing = format!("{}/../outside/greeter.json", allowed.display());
    for (job, path) in [
        ("outside", beside.to_str().unwrap()),
        ("climbing", &climbing),
    ] {
        fake.send(json!({
            "type": "job_assign",
            "job_id": job,
            "workflow_data": caller(path),
        }));
        let failed = fake
            .wait_until(WAIT, for_job(job, "job_failed"))
            .expect("the job is refused");
        let error = failed["error"].as_str().unwrap();
        assert!(
            error.contains(&format!(
                "sub-workflow \"{path}\" may not be read: refused path"
            )),
            "{failed}"
        );
    }
    assert!(
        !fake.received().iter().any(|m| {
            (m["job_id"] == "outside" || m["job_id"] == "climbing") && m["type"] == "job_progress"
        }),
        "the refused jobs never ran"
    );
}

/// parent: append "parent before", call the child, append "parent after".
/// child: append "child one", append "child two", wait, append "child three".
fn crash_flows(dir: &Path, wait_secs: f64) -> PathBuf {
    let append = |line: &str| json!({"file_path": "out/log.txt", "content": format!("{line}\n")});
    let child = chain(&[
        ("one", "AppendFileNode", append("child one")),
        ("two", "AppendFileNode", append("child two")),
        ("wait", "WaitNode", json!({"duration": wait_secs})),
        ("three", "AppendFileNode", append("child three")),
    ]);
    let parent = chain(&[
        ("before", "AppendFileNode", append("parent before")),
        ("call", "SubflowNode", json!({"subflow_path": "child.json"})),
        ("after", "AppendFileNode", append("parent after")),
    ]);
    std::fs::write(dir.join("child.json"), child.to_string()).unwrap();
    let path = dir.join("parent.json");
    std::fs::write(&path, parent.to_string()).unwrap();
    path
}

fn spawn_run(work: &Path, wf: &Path, job: &str) -> Child {
    bin(work)
        .args([
            "run",
            wf.to_str().unwrap(),
            "--job-id",
            job,
            "--json",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn log_lines(work: &Path) -> Vec<String> {
    std::fs::read_to_string(work.join("out/log.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn killed_inside_a_sub_workflow_the_resume_continues_inside_it() {
    let work = tempfile::tempdir().unwrap();
    let wf = crash_flows(work.path(), 3.0);
    let mut child = spawn_run(work.path(), &wf, "crash-job");
    // "child two" in the file means "child one" completed and was checkpointed (a checkpoint
    // is committed before the next node starts); the wait after it is where we kill.
    let deadline = Instant::now() + WAIT;
    while !log_lines(work.path()).iter().any(|l| l == "child two") {
        assert!(
            Instant::now() < deadline,
            "the child never reached its second node"
        );
        assert!(child.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        log_lines(work.path()),
        ["parent before", "child one", "child two"],
        "killed during the wait"
    );

    let resumed = spawn_run(work.path(), &wf, "crash-job")
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(result["recovered"], true, "{result}");
    let lines = log_lines(work.path());
    // Nothing before the kill point ran again: not the parent's first node, not the child's
    // first node; "child two" may repeat (it may have been in flight), nothing else.
    let count = |l: &str| lines.iter().filter(|x| *x == l).count();
    assert_eq!(count("parent before"), 1, "{lines:?}");
    assert_eq!(count("child one"), 1, "{lines:?}");
    assert!((1..=2).contains(&count("child two")), "{lines:?}");
    assert_eq!(count("child three"), 1, "{lines:?}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("parent after"),
        "{lines:?}"
    );
    // The resumed run's executions start inside the child.
    let ids = executed_ids(&result);
    assert!(!ids.contains(&"call/one"), "{ids:?}");
    assert!(ids.contains(&"call/three"), "{ids:?}");
}

//! Trigger-started runs end to end, with the real binary: `casare-robot run --trigger-payload`
//! and daemon jobs whose WebSocket assignment or REST claim carries `trigger_payload` (fake
//! orchestrators on 127.0.0.1).
//! Every wait has a deadline.

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;
use support::probe::rest_robot;
use support::rest::FakeRest;
use support::robot::{isolated_command, Robot};
use support::FakeOrchestrator;

const WAIT: Duration = Duration::from_secs(15);

/// A webhook trigger whose outputs are copied into variables `got_method` (over a data edge, so a
/// null output stays null) and `got_payload` (through a template).
fn webhook_workflow() -> Value {
    json!({
        "metadata": {"name": "webhook"},
        "nodes": {
            "hook": {"node_id": "hook", "node_type": "WebhookTriggerNode",
                     "config": {"endpoint": "/orders", "methods": "POST"}},
            "method": {"node_id": "method", "node_type": "SetVariableNode",
                       "config": {"variable_name": "got_method"}},
            "payload": {"node_id": "payload", "node_type": "SetVariableNode",
                        "config": {"variable_name": "got_payload", "value": "{{hook.payload}}"}},
        },
        "connections": [
            {"source_node": "hook", "source_port": "exec_out", "target_node": "method", "target_port": "exec_in"},
            {"source_node": "method", "source_port": "exec_out", "target_node": "payload", "target_port": "exec_in"},
            {"source_node": "hook", "source_port": "method", "target_node": "method", "target_port": "value"},
        ],
    })
}

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, content).expect("write temp file");
    p
}

fn run(args: &[&str]) -> Output {
    isolated_command().args(args).output().expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_with_a_trigger_payload_fills_the_trigger_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(&dir, "wf.json", &webhook_workflow().to_string());
    let payload = write(
        &dir,
        "event.json",
        r#"{"method": "POST", "payload": {"order": 42}, "path": "/orders"}"#,
    );
    let out = run(&[
        "run",
        wf.to_str().unwrap(),
        "--json",
        "--quiet",
        "--trigger-payload",
        payload.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["outputs"]["got_method"], "POST");
    assert_eq!(v["outputs"]["got_payload"], json!({"order": 42}));
    assert!(
        !text(&out.stderr).contains("no trigger payload"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn run_without_a_payload_warns_once_naming_the_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(&dir, "wf.json", &webhook_workflow().to_string());
    let out = run(&["run", wf.to_str().unwrap(), "--json", "--quiet"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["outputs"]["got_method"], Value::Null);
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("no trigger payload").count(), 1, "{stderr}");
    assert!(stderr.contains("hook (WebhookTriggerNode)"), "{stderr}");
}

#[test]
fn a_bad_trigger_payload_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write(&dir, "wf.json", &webhook_workflow().to_string());
    let list = write(&dir, "list.json", "[1, 2]");
    let broken = write(&dir, "broken.json", "{\"method\": ");
    let missing = dir.path().join("missing.json");
    for (file, needle) in [
        (&list, "must hold a JSON object, not list"),
        (&broken, "invalid JSON at line 1"),
        (&missing, "cannot read --trigger-payload"),
    ] {
        let out = run(&[
            "run",
            wf.to_str().unwrap(),
            "--trigger-payload",
            file.to_str().unwrap(),
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--trigger-payload"), "{stderr}");
        assert!(stderr.contains(needle), "{stderr} lacks {needle}");
    }
}

#[test]
fn run_help_documents_the_trigger_payload_option() {
    let out = run(&["run", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("--trigger-payload <FILE>"), "{help}");
    assert!(help.contains("trigger_payload"), "{help}");
}

#[test]
fn a_daemon_job_carrying_a_trigger_payload_reports_the_trigger_outputs() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let _robot = Robot::start(json!({
        "orchestrator_url": fake.url(),
        "ws_dialect": "casare",
    }));
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    fake.send(json!({
        "type": "job_assign",
        "job_id": "trig-1",
        "workflow_data": webhook_workflow(),
        "variables": {},
        "trigger_payload": {"method": "PUT", "payload": {"id": "a-1"}},
        "trigger_metadata": {"trigger_type": "webhook"},
    }));
    let done = fake
        .wait_until(WAIT, |m| {
            m["job_id"] == "trig-1" && m["type"] == "job_complete"
        })
        .expect("job_complete");
    assert_eq!(done["result"]["success"], true, "{done}");
    assert_eq!(done["result"]["outputs"]["got_method"], "PUT", "{done}");
    assert_eq!(
        done["result"]["outputs"]["got_payload"],
        json!({"id": "a-1"}),
        "{done}"
    );

    // A trigger_payload that is not an object refuses the job, naming the field.
    fake.send(json!({
        "type": "job_assign",
        "job_id": "trig-2",
        "workflow_data": webhook_workflow(),
        "trigger_payload": [1, 2],
    }));
    let refused = fake
        .wait_until(WAIT, |m| {
            m["job_id"] == "trig-2" && m["type"] != "job_progress"
        })
        .expect("an answer to trig-2");
    assert!(refused.to_string().contains("trigger_payload"), "{refused}");
}

#[test]
fn a_rest_claim_carrying_a_trigger_payload_reports_the_trigger_outputs() {
    let fake = FakeRest::start();
    fake.submit_with_fields(
        "trig-rest",
        webhook_workflow(),
        json!({}),
        json!({"trigger_payload": "{\"method\": \"DELETE\", \"payload\": {\"n\": 2}}"}),
    );
    let robot = rest_robot(&fake, json!({}));
    assert!(
        fake.wait_until(WAIT, |f| f.state("trig-rest") == Some("completed")),
        "{}",
        robot.output()
    );
    let results = fake.results("trig-rest");
    let outputs = &results.last().expect("a result")["outputs"];
    assert_eq!(outputs["got_method"], "DELETE", "{outputs}");
    assert_eq!(outputs["got_payload"], json!({"n": 2}), "{outputs}");
}

#[test]
fn a_triggered_run_killed_after_the_trigger_resumes_with_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc = webhook_workflow();
    // hook -> mark -> wait -> method -> payload: killed during the wait, the resumed run must not
    // run the trigger again and still have its outputs (from the checkpoint).
    doc["nodes"]["mark"] = json!({"node_id": "mark", "node_type": "SetVariableNode",
                                  "config": {"variable_name": "marked", "value": 1}});
    doc["nodes"]["wait"] = json!({"node_id": "wait", "node_type": "WaitNode",
                                  "config": {"duration": 2.0}});
    let edges = doc["connections"].as_array_mut().unwrap();
    edges[0] = json!({"source_node": "hook", "source_port": "exec_out", "target_node": "mark", "target_port": "exec_in"});
    edges.push(json!({"source_node": "mark", "source_port": "exec_out", "target_node": "wait", "target_port": "exec_in"}));
    edges.push(json!({"source_node": "wait", "source_port": "exec_out", "target_node": "method", "target_port": "exec_in"}));
    let wf = write(&dir, "wf.json", &doc.to_string());
    let payload = write(&dir, "event.json", r#"{"method": "PATCH", "payload": [7]}"#);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let command = || {
        let mut cmd = isolated_command();
        cmd.env("HOME", &home)
            .env("CASARE_DATA_DIR", home.join("data"))
            .env("CASARE_LOG_DIR", home.join("logs"))
            .current_dir(&home)
            .args([
                "run",
                wf.to_str().unwrap(),
                "--job-id",
                "t-1",
                "--trigger-payload",
                payload.to_str().unwrap(),
            ]);
        cmd
    };
    let mut child = command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The line for `mark` comes after the checkpoint that holds the trigger's outputs.
    let (tx, rx) = crossbeam_channel::unbounded();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx.recv_timeout(WAIT).expect("the mark node's line in time");
        if line.contains("mark (SetVariableNode)") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let out = command().args(["--json", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["recovered"], true, "{v}");
    let ran: Vec<&str> = v["node_executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["node_id"].as_str())
        .collect();
    assert!(!ran.contains(&"hook"), "the trigger ran again: {ran:?}");
    assert_eq!(v["outputs"]["got_method"], "PATCH", "{v}");
    assert_eq!(v["outputs"]["got_payload"], json!([7]), "{v}");
}

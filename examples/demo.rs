//! The whole loop on one machine (`make demo`): a local orchestrator stand-in, the robot daemon, the
//! example workflows pushed as jobs, their progress and results printed as they arrive; then what
//! the robot does when things go wrong: a job that fails (reported with the failing node), a job
//! the orchestrator cancels mid-run, and a dropped connection (the robot reconnects, registers
//! again and takes the next job).
//!
//! The stand-in is the fake orchestrator of the integration tests (`tests/support`), speaking the
//! real CasareRPA orchestrator's flat protocol on `127.0.0.1`. The daemon is the release binary
//! (`target/release/casare-robot`, or `$CASARE_ROBOT_BIN`), started in the foreground with a
//! temporary `robot_config.json`; its log goes to a file in the same temporary directory. The demo
//! only relies on `protocol.md`, so it works with any robot that speaks it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use support::FakeOrchestrator;

/// The example workflows submitted, in order; each completes.
const WORKFLOWS: &[&str] = &[
    "examples/hello.json",
    "examples/order_report.json",
    "examples/invoice_reminders.json",
];
/// How a demo job is expected to end (the `job_*` message type without `job_`).
type End = &'static str;
/// Launch to `register`.
const REGISTER_DEADLINE: Duration = Duration::from_secs(20);
/// Assignment to the last result.
const JOBS_DEADLINE: Duration = Duration::from_secs(120);
/// `shutdown` to process exit, before the demo kills the daemon.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn robot_binary() -> PathBuf {
    match std::env::var_os("CASARE_ROBOT_BIN") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/casare-robot"),
    }
}

/// Runs the demo; `Ok(true)` when every job ended as expected.
fn run() -> Result<bool, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = robot_binary();
    if !bin.is_file() {
        return Err(format!(
            "the robot binary {} does not exist: run `cargo build --release` first \
             (or point CASARE_ROBOT_BIN at a robot)",
            bin.display()
        ));
    }

    let fake = FakeOrchestrator::start(Dialect::Casare);
    let dir = tempfile::Builder::new()
        .prefix("casare-robot-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let config_path = dir.path().join("robot_config.json");
    let config = json!({
        "robot_id": "demo-robot",
        "robot_name": "Demo Robot",
        "orchestrator_url": fake.url(),
        "data_dir": dir.path().join("data"),
        "log_dir": dir.path().join("logs"),
        "max_concurrent_jobs": 2,
        // A prompt reconnect for the demo's dropped connection (the default starts at 1 s).
        "reconnect_delay": 0.2,
    });
    let config_text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&config_path, config_text)
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let log_path = dir.path().join("daemon.log");
    let log_file = File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_file2 = log_file.try_clone().map_err(|e| e.to_string())?;

    println!("orchestrator stand-in listening on {}", fake.url());
    println!(
        "starting {} start --foreground --config {}",
        bin.display(),
        config_path.display()
    );
    println!("daemon log: {}", log_path.display());
    let launched = Instant::now();
    let mut child = Command::new(&bin)
        .args(["start", "--foreground", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_file2))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;

    let mut fake = fake;
    let outcome = drive(&fake, &mut child, manifest, launched)
        .and_then(|ok| Ok(ok & reconnect(&mut fake, &mut child, manifest)?));
    let exited = stop(&fake, &mut child);
    if outcome.is_err() || !exited {
        print_log_tail(&log_path);
    }
    // Keep the temporary directory alive until the daemon is gone.
    drop(dir);
    outcome.map(|all_ok| all_ok && exited)
}

/// Waits for registration, submits the jobs and prints what comes back.
fn drive(
    fake: &FakeOrchestrator,
    child: &mut Child,
    manifest: &Path,
    launched: Instant,
) -> Result<bool, String> {
    let register = fake
        .wait_while_alive(child, REGISTER_DEADLINE, |m| m["type"] == "register")?
        .ok_or("the robot did not register within 20 s")?;
    println!(
        "robot {} registered after {} ms (max_concurrent_jobs {})",
        register["robot_id"].as_str().unwrap_or("?"),
        launched.elapsed().as_millis(),
        register["capabilities"]["max_concurrent_jobs"]
    );

    // job id -> (what it is, how it must end), and the set of jobs still waiting for a result.
    let mut names: BTreeMap<String, (String, End)> = BTreeMap::new();
    let mut documents: BTreeMap<String, Value> = BTreeMap::new();
    for (idx, rel) in WORKFLOWS.iter().enumerate() {
        let path = manifest.join(rel);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let workflow: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not json: {e}", path.display()))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("job");
        let job_id = format!("demo-{}-{stem}", idx + 1);
        let n_sent = fake.assign_job(&job_id, workflow, json!({}), Some(60.0));
        if n_sent == 0 {
            return Err("the robot's connection closed before the jobs could be sent".to_string());
        }
        println!("-> assigned {job_id} ({rel})");
        documents.insert(job_id.clone(), workflow_for_requeue(&text));
        names.insert(job_id, (rel.to_string(), "complete"));
    }
    // Things going wrong: a node that fails, and a long job the orchestrator cancels once the
    // robot has accepted it.
    let failing = json!({
        "metadata": {"name": "failing"},
        "nodes": {
            "read": {"node_id": "read", "node_type": "SetVariableNode",
                     "config": {"variable_name": "invoices", "value": []}},
            "check": {"node_id": "check", "node_type": "AssertNode",
                      "config": {"condition": "len({{invoices}}) > 0", "message": "no invoices to send"}}
        },
        "connections": [{"source_node": "read", "source_port": "exec_out",
                         "target_node": "check", "target_port": "exec_in"}]
    });
    let long = json!({
        "metadata": {"name": "long"},
        "nodes": {"wait": {"node_id": "wait", "node_type": "WaitNode", "config": {"duration": 60}}},
        "connections": []
    });
    let cancelled_id = "demo-5-cancelled".to_string();
    for (job_id, what, workflow, end) in [
        (
            "demo-4-failing".to_string(),
            "a failing AssertNode",
            failing,
            "failed",
        ),
        (
            cancelled_id.clone(),
            "a 60 s wait, cancelled by the orchestrator",
            long,
            "cancelled",
        ),
    ] {
        fake.assign_job(&job_id, workflow.clone(), json!({}), Some(60.0));
        println!("-> assigned {job_id} ({what})");
        documents.insert(job_id.clone(), workflow);
        names.insert(job_id, (what.to_string(), end));
    }

    let mut pending: Vec<String> = names.keys().cloned().collect();
    // Jobs the robot rejected for capacity, re-assigned when another job ends (as the real
    // orchestrator requeues a rejected job).
    let mut requeue: Vec<String> = Vec::new();
    let mut all_ok = true;
    let deadline = Instant::now() + JOBS_DEADLINE;
    while !pending.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(msg) = fake.wait_while_alive(child, left, |m| m.get("job_id").is_some())? else {
            return Err(format!(
                "no result within {} s for: {}",
                JOBS_DEADLINE.as_secs(),
                pending.join(", ")
            ));
        };
        let job_id = msg["job_id"].as_str().unwrap_or("?").to_string();
        let at_capacity = msg["type"] == "job_reject"
            && msg["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("at capacity"));
        let finished = print_job_message(&msg);
        if at_capacity {
            println!("   {job_id}: queued again until a worker is free");
            requeue.push(job_id);
            continue;
        }
        if job_id == cancelled_id && msg["type"] == "job_accept" {
            fake.cancel_job(&job_id, "cancelled by the operator");
            println!("-> job_cancel {job_id}");
        }
        if let Some(end) = finished {
            let expected = names.get(&job_id).map_or("complete", |(_, end)| *end);
            if end == expected {
                if end != "complete" {
                    println!("   {job_id}: {end}, as expected");
                }
            } else {
                println!("   {job_id}: expected it to end as {expected}, not {end}");
                all_ok = false;
            }
            pending.retain(|id| *id != job_id);
            if let Some(next) = (!requeue.is_empty()).then(|| requeue.remove(0)) {
                if let Some(workflow) = documents.get(&next) {
                    fake.assign_job(&next, workflow.clone(), json!({}), Some(60.0));
                    println!("-> assigned {next} again");
                }
            }
        }
    }
    println!("all {} jobs finished", names.len());
    Ok(all_ok)
}

/// Drops the robot's connection (the orchestrator goes away), listens again, and waits for the
/// robot to reconnect and register; then one more job shows that work flows again.
fn reconnect(
    fake: &mut FakeOrchestrator,
    child: &mut Child,
    manifest: &Path,
) -> Result<bool, String> {
    println!("-> the orchestrator drops every connection and restarts");
    let dropped = Instant::now();
    fake.kill();
    fake.restart();
    fake.wait_while_alive(child, REGISTER_DEADLINE, |m| m["type"] == "register")?
        .ok_or("the robot did not reconnect within 20 s")?;
    println!(
        "<- the robot reconnected and registered again after {} ms",
        dropped.elapsed().as_millis()
    );
    let path = manifest.join("examples/hello.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let job_id = "demo-6-after-reconnect";
    fake.assign_job(
        job_id,
        workflow_for_requeue(&text),
        json!({"name": "again"}),
        Some(60.0),
    );
    println!("-> assigned {job_id} (examples/hello.json)");
    let deadline = Instant::now() + JOBS_DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = fake
            .wait_while_alive(child, left, |m| m["job_id"] == job_id)?
            .ok_or_else(|| {
                format!(
                    "no result within {} s for {job_id}",
                    JOBS_DEADLINE.as_secs()
                )
            })?;
        if let Some(end) = print_job_message(&msg) {
            return Ok(end == "complete");
        }
    }
}

fn workflow_for_requeue(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Prints one job message; `Some(how it ended)` when it ends the job.
fn print_job_message(msg: &Value) -> Option<End> {
    let job_id = msg["job_id"].as_str().unwrap_or("?");
    match msg["type"].as_str().unwrap_or("") {
        "job_accept" => println!("   {job_id}: accepted"),
        "job_progress" => {
            let node = msg["current_node"].as_str().unwrap_or("");
            let text = msg["message"].as_str().unwrap_or("");
            println!("   {job_id}: {:>3}% {node} {text}", msg["progress"]);
        }
        "job_reject" => {
            println!(
                "<- {job_id}: REJECTED: {}",
                msg["reason"].as_str().unwrap_or("?")
            );
            return Some("reject");
        }
        "job_complete" => {
            let result = &msg["result"];
            let outputs = shorten(&result["outputs"].to_string(), 400);
            let ms = result["duration_s"].as_f64().map_or_else(
                || result["duration_ms"].to_string(),
                |s| format!("{:.1}", s * 1000.0),
            );
            println!(
                "<- {job_id}: completed in {ms} ms ({} of {} nodes executed)\n   outputs: {}",
                result["executed_nodes"], result["total_nodes"], outputs
            );
            return Some("complete");
        }
        "job_failed" => {
            println!(
                "<- {job_id}: FAILED after {} ms: {}",
                msg["duration_ms"],
                msg["error"].as_str().unwrap_or("?")
            );
            return Some("failed");
        }
        "job_cancelled" => {
            println!("<- {job_id}: cancelled");
            return Some("cancelled");
        }
        "job_result" => {
            let status = msg["status"].as_str().unwrap_or("?");
            println!(
                "<- {job_id}: {status} ({} s) outputs: {}",
                msg["execution_time"], msg["outputs"]
            );
            return Some(match status {
                "completed" => "complete",
                "failed" => "failed",
                "cancelled" => "cancelled",
                _ => "unknown",
            });
        }
        other => println!("   {job_id}: {other}"),
    }
    None
}

/// Sends `shutdown` and waits for the daemon to exit; kills it past the deadline. True when it
/// exited by itself with success.
fn stop(fake: &FakeOrchestrator, child: &mut Child) -> bool {
    if let Ok(Some(status)) = child.try_wait() {
        println!("the robot had already exited ({status})");
        return false;
    }
    println!("-> shutdown");
    match fake.shutdown_and_wait(child, EXIT_DEADLINE) {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("demo: {e}; killing it");
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

fn print_log_tail(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(30);
    eprintln!("--- last lines of {} ---", path.display());
    for line in &lines[start..] {
        eprintln!("{line}");
    }
}

//! The whole loop on one machine (`make demo`): a local orchestrator stand-in, the robot daemon, the
//! example workflows pushed as jobs, their progress and results printed as they arrive.
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

/// The example workflows submitted, in order.
const WORKFLOWS: &[&str] = &[
    "examples/hello.json",
    "examples/order_report.json",
    "examples/invoice_reminders.json",
];
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

/// Runs the demo; `Ok(true)` when every job completed.
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

    let outcome = drive(&fake, &mut child, manifest, launched);
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

    // job id -> workflow name, and the set of jobs still waiting for a result.
    let mut names = BTreeMap::new();
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
        names.insert(job_id, rel.to_string());
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
        if let Some(ok) = finished {
            all_ok &= ok;
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

fn workflow_for_requeue(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Prints one job message; `Some(success)` when it ends the job.
fn print_job_message(msg: &Value) -> Option<bool> {
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
            return Some(false);
        }
        "job_complete" => {
            let result = &msg["result"];
            let outputs = shorten(&result["outputs"].to_string(), 400);
            println!(
                "<- {job_id}: completed in {} ms ({} of {} nodes executed)\n   outputs: {}",
                result["duration_ms"], result["executed_nodes"], result["total_nodes"], outputs
            );
            return Some(true);
        }
        "job_failed" => {
            println!(
                "<- {job_id}: FAILED after {} ms: {}",
                msg["duration_ms"],
                msg["error"].as_str().unwrap_or("?")
            );
            return Some(false);
        }
        "job_cancelled" => {
            println!("<- {job_id}: cancelled");
            return Some(false);
        }
        "job_result" => {
            let status = msg["status"].as_str().unwrap_or("?");
            println!(
                "<- {job_id}: {status} ({} s) outputs: {}",
                msg["execution_time"], msg["outputs"]
            );
            return Some(status == "completed");
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

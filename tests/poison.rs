//! Poison jobs and the value budget, with the real binary under a memory limit (`RLIMIT_AS`)
//! and kill -9: a value that would outgrow the budget fails its node cleanly instead of
//! aborting the process; a job whose resumes keep killing the robot is failed with
//! `error_type: "PoisonJob"` after `max_resume_attempts` of them, on `run --job-id`, over
//! WebSocket and over REST, and the robot goes on serving the next job. Every wait has a
//! deadline.
#![cfg(unix)]

mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::rest::FakeRest;
use support::robot::{limit_memory, Robot};
use support::{chain, FakeOrchestrator};

const WAIT: Duration = Duration::from_secs(180);
/// The address space a robot process gets where the budget must save it: room for the 256 MB
/// the default budget allows, far too little for what the workflows would build without it.
const MEMORY_LIMIT: u64 = 1 << 30;
/// The address space a robot process gets where it is meant to die: enough for the robot, far
/// too little for a string doubled 64 times.
const SMALL_MEMORY_LIMIT: u64 = 512 << 20;
/// A value budget so large that only the memory limit stops the doubling.
fn no_budget() -> Value {
    json!({"max_value_mb": 1_000_000})
}

fn budget_workflow(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workflows/budget")
        .join(name)
}

fn doubling() -> Value {
    serde_json::from_str(&std::fs::read_to_string(budget_workflow("doubling.json")).unwrap())
        .unwrap()
}

/// `casare-robot run <workflow> [--job-id id] --json` with a config (data dir in `home`) under
/// the memory limit.
fn run_limited(
    home: &Path,
    workflow: &Path,
    job_id: Option<&str>,
    config: Value,
    limit: u64,
) -> Output {
    let mut full = json!({"data_dir": home.join("data"), "log_dir": home.join("logs")});
    for (k, v) in config.as_object().cloned().unwrap_or_default() {
        full[k] = v;
    }
    let config_path = home.join("robot_config.json");
    std::fs::write(&config_path, full.to_string()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_casare-robot"));
    cmd.args(["run", workflow.to_str().unwrap(), "--quiet", "--config"])
        .arg(&config_path)
        .args(job_id.map(|id| ["--job-id", id]).into_iter().flatten())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .current_dir(home)
        .stdin(Stdio::null());
    limit_memory(&mut cmd, limit);
    cmd.output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn values_past_the_budget_fail_their_node_instead_of_aborting_the_robot() {
    // The split gets the small limit: building its 8.4 million items and checking them only
    // afterwards would already pass it.
    for (workflow, node, what, limit) in [
        (
            "doubling.json",
            "grow (SetVariableNode)",
            "input 'value'",
            MEMORY_LIMIT,
        ),
        (
            "split_16mb.json",
            "split (TextSplitNode)",
            "the split result",
            SMALL_MEMORY_LIMIT,
        ),
    ] {
        let home = tempfile::tempdir().unwrap();
        let out = run_limited(
            home.path(),
            &budget_workflow(workflow),
            None,
            json!({}),
            limit,
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{workflow}: a failed run, not a dead process ({:?}): {}",
            out.status.signal(),
            err.chars().take(2000).collect::<String>()
        );
        assert!(
            err.contains(&format!(
                "error: {node}: {what} would bring this run's values to at least"
            )) && err.contains("over the limit of 256 MB (max_value_mb)"),
            "{workflow}: {err}"
        );
    }
}

#[test]
fn a_local_job_that_dies_on_every_resume_fails_as_a_poison_job() {
    let home = tempfile::tempdir().unwrap();
    let wf = budget_workflow("doubling.json");
    let config = json!({"max_value_mb": 1_000_000, "max_resume_attempts": 2});
    // The first run and two resumes die (out of memory); the next start fails the job.
    for attempt in 0..3 {
        let out = run_limited(
            home.path(),
            &wf,
            Some("greedy"),
            config.clone(),
            SMALL_MEMORY_LIMIT,
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "run {attempt} aborts on the allocation: {:?} {}",
            out.status,
            stderr(&out).chars().take(2000).collect::<String>()
        );
    }
    let out = run_limited(home.path(), &wf, Some("greedy"), config, SMALL_MEMORY_LIMIT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: job greedy failed (PoisonJob): the robot process died during each of the last 2 resumes")
            && err.contains("(max_resume_attempts = 2)"),
        "{err}"
    );
}

fn ws_robot(fake: &FakeOrchestrator) -> Robot {
    let mut config = no_budget();
    config["orchestrator_url"] = json!(fake.url());
    Robot::start_with_memory_limit(config, Some(SMALL_MEMORY_LIMIT))
}

/// Restart the robot whenever it dies, until `done` holds; returns the number of deaths.
fn restart_until(robot: &mut Robot, mut done: impl FnMut() -> bool) -> usize {
    let deadline = Instant::now() + WAIT;
    let mut deaths = 0;
    while !done() {
        assert!(Instant::now() < deadline, "{}", robot.output());
        if robot.wait_exit(Duration::from_millis(100)).is_some() {
            deaths += 1;
            robot.spawn();
        }
    }
    deaths
}

#[test]
fn a_websocket_job_that_kills_the_robot_on_every_resume_is_failed_and_the_next_job_runs() {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut robot = ws_robot(&fake);
    fake.wait_for("register", WAIT)
        .expect("the robot registers");
    fake.assign_job("greedy", doubling(), json!({}), None);
    let failed = |m: &Value| m["job_id"] == "greedy" && m["type"] == "job_failed";
    let deaths = restart_until(&mut robot, || fake.received().iter().any(failed));
    // At least the first run and max_resume_attempts (3) resumes died (a resume that got one
    // more doubling done before dying made progress and started the count again).
    assert!(deaths >= 4, "{deaths} deaths: {}", robot.output());
    assert!(
        robot
            .output()
            .contains("job greedy: 3 resumes in a row died; failing it as a poison job"),
        "{}",
        robot.output()
    );
    let msg = fake.received().into_iter().find(failed).unwrap();
    assert_eq!(msg["error_type"], "PoisonJob", "{msg}");
    assert!(
        msg["error"]
            .as_str()
            .unwrap()
            .contains("max_resume_attempts = 3"),
        "{msg}"
    );
    // The same robot process serves the next job.
    let runs = robot.runs();
    fake.assign_job(
        "next",
        chain(&[("hi", "LogNode", json!({"message": "still here"}))]),
        json!({}),
        None,
    );
    fake.wait_until(WAIT, |m| {
        m["job_id"] == "next" && m["type"] == "job_complete"
    })
    .expect("the next job completes");
    assert_eq!(robot.runs(), runs, "{}", robot.output());
}

#[test]
fn a_rest_job_killed_at_the_same_node_on_every_resume_is_failed_and_the_next_job_runs() {
    let fake = FakeRest::start();
    // A failure is re-queued only after an hour: the next job is the one that runs.
    fake.set_fail_requeue_delay(Duration::from_secs(3600));
    fake.submit(
        "stuck",
        chain(&[("wait", "WaitNode", json!({"duration": 60}))]),
        json!({}),
    );
    let mut robot = Robot::start(json!({
        "api_url": fake.url(),
        "poll_interval": 0.1,
        "poll_max_interval": 0.3,
        "lease_seconds": 30,
    }));
    // kill -9 whenever the job is running in the node; restart; until the job fails.
    let deadline = Instant::now() + WAIT;
    let mut kills = 0;
    while fake.failures("stuck") == 0 {
        assert!(Instant::now() < deadline, "{}", robot.output());
        let started = robot.output().matches("job stuck started").count();
        if started > kills {
            robot.kill9();
            kills += 1;
            robot.spawn();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every resume from the checkpoint before the wait died without completing a node: the
    // third is the last one. (Runs killed before that checkpoint was written made progress
    // when they wrote it, so they are not counted.)
    assert!(
        kills >= 4,
        "the first run and 3 resumes: {}",
        robot.output()
    );
    assert_eq!(
        robot
            .output()
            .matches("job stuck resumes after node __auto_start__ (checkpoint #1)")
            .count(),
        3,
        "{}",
        robot.output()
    );
    let message = &fake.failure_messages("stuck")[0];
    assert!(message.contains("max_resume_attempts = 3"), "{message}");
    assert!(robot.output().contains("failing it as a poison job"));
    fake.submit(
        "next",
        chain(&[("hi", "LogNode", json!({"message": "still here"}))]),
        json!({}),
    );
    assert!(
        fake.wait_until(WAIT, |f| f.state("next") == Some("completed")),
        "{}",
        robot.output()
    );
}

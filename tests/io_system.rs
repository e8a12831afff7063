//! System nodes through the real engine: RunCommand (argument forms, exit codes, working
//! directory, environment, bounded capture, timeouts and cancellation that kill the whole process
//! tree, config rules), SystemInfo, EnvironmentVariable, upstream batch 2.3 (original and
//! corrected) and the workflows under `tests/workflows/io/system/`.
//!
//! Every test runs in its own temporary directory (`safety.work_dir`). Most process tests use
//! Unix programs (`sh`, `sleep`); Windows has its job-object test in `src/nodes/system.rs`.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

mod support;

use casare_robot::engine::node::NodeLog;
use casare_robot::engine::runner::{
    self, FailureDisposition, NodeEvent, Observer, RunError, RunOptions, RunOutcome, RunState,
    RunStatus,
};
use casare_robot::engine::{load_str, CancelToken, Value};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Rec {
    /// LogNode lines (`[node_id] message`).
    logs: Vec<String>,
    /// Every node's log lines (warnings included).
    all_logs: Vec<String>,
    took: HashMap<String, Duration>,
}

impl Observer for Rec {
    fn node_completed(&mut self, ev: &NodeEvent<'_>, _state: &RunState) {
        self.took.insert(ev.node_id.to_string(), ev.elapsed);
    }
    fn node_failed(&mut self, ev: &NodeEvent<'_>, _e: &RunError, _w: FailureDisposition) {
        self.took.insert(ev.node_id.to_string(), ev.elapsed);
    }
    fn node_log(&mut self, ev: &NodeEvent<'_>, log: &NodeLog) {
        if ev.node_type == "LogNode" {
            self.logs.push(log.message.clone());
        }
        self.all_logs.push(log.message.clone());
    }
}

struct Ran {
    outcome: RunOutcome,
    logs: Vec<String>,
    all_logs: Vec<String>,
    took: HashMap<String, Duration>,
    wall: Duration,
}

impl Ran {
    fn out(&self, node: &str, port: &str) -> Value {
        self.outcome
            .node_outputs
            .get(node)
            .and_then(|o| o.as_dict())
            .and_then(|d| d.get(port))
            .cloned()
            .unwrap_or_default()
    }
    fn error(&self) -> String {
        self.outcome.error_text().unwrap_or_default()
    }
    fn error_type(&self) -> String {
        self.outcome
            .error
            .as_ref()
            .map(|e| e.error_type.clone())
            .unwrap_or_default()
    }
}

fn opts_in(dir: &Path) -> RunOptions {
    let mut opts = RunOptions {
        seed: Some(1),
        ..RunOptions::default()
    };
    opts.safety.work_dir = Some(dir.to_path_buf());
    opts
}

fn run_with(json: &str, opts: &RunOptions, token: &CancelToken) -> Ran {
    let wf = load_str(json).unwrap_or_else(|e| panic!("workflow did not load: {e}"));
    let mut rec = Rec::default();
    let start = Instant::now();
    let outcome = runner::run(&wf, Default::default(), opts, token, &mut rec);
    Ran {
        outcome,
        logs: rec.logs,
        all_logs: rec.all_logs,
        took: rec.took,
        wall: start.elapsed(),
    }
}

fn run_in(json: &str, dir: &Path) -> Ran {
    run_with(json, &opts_in(dir), &CancelToken::new())
}

/// The shared linear workflow builder, as text for `load_str`.
fn chain(nodes: &[(&str, &str, serde_json::Value)]) -> String {
    support::chain(nodes).to_string()
}

fn one(config: serde_json::Value, dir: &Path) -> Ran {
    run_in(&chain(&[("cmd", "RunCommandNode", config)]), dir)
}

fn workflow(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workflows")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn upstream(name: &str) -> Option<String> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/casare/workflows/node_tests")
        .join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(_) => {
            eprintln!("note: {} not found; original skipped", path.display());
            None
        }
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

use support::procs::wait_until;
#[cfg(unix)]
use support::procs::{alive, cancel_once_grandchild_runs, grandchild_pid};

const TREE_CMD: &str = "sleep 30 & echo $! > grandchild.pid; sleep 30";

// ---------------------------------------------------------------- upstream batch 2.3

fn check_batch_2_3(ran: &Ran) {
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(ran.outcome.executed_nodes, 9);
    assert_eq!(
        ran.out("run_command", "stdout"),
        Value::str("Hello from RunCommandNode\n")
    );
    assert_eq!(ran.out("run_command", "stderr"), Value::str(""));
    assert_eq!(ran.out("run_command", "return_code").py_repr(), "0");
    assert_eq!(ran.out("run_command", "success"), Value::Bool(true));
    let days = ran.out("datetime_diff", "total_days");
    assert!(matches!(days, Value::Float(f) if f > 700.0), "{days:?}");
    assert_eq!(
        ran.logs,
        [format!(
            "[log_result] All System, DateTime & Command tests passed! Days diff: {}",
            days.py_str()
        )]
    );
    assert!(matches!(ran.out("system_info", "info"), Value::Dict(_)));
    assert!(matches!(ran.out("system_info", "os_name"), Value::Str(_)));
}

#[test]
fn batch_2_3_original_waits_the_default_second() {
    let Some(src) = upstream("batch_2_3_system.json") else {
        return;
    };
    let dir = tmp();
    let ran = run_in(&src, dir.path());
    check_batch_2_3(&ran);
    // `seconds` is not WaitNode's property: the default duration (1 s) applies.
    assert!(matches!(ran.out("wait_node", "waited"), Value::Float(f) if f == 1.0));
    assert!(ran.took["wait_node"] >= Duration::from_millis(900));
}

#[test]
fn batch_2_3_corrected_copy() {
    let dir = tmp();
    let ran = run_in(&workflow("batch_2_3_system_fixed.json"), dir.path());
    check_batch_2_3(&ran);
    assert!(matches!(ran.out("wait_node", "waited"), Value::Float(f) if f == 0.1));
    assert!(ran.took["wait_node"] >= Duration::from_millis(90));
}

// ---------------------------------------------------------------- own workflows

#[cfg(unix)]
#[test]
fn commands_workflow() {
    let dir = tmp();
    std::fs::create_dir_all(dir.path().join("data/in")).unwrap();
    std::fs::write(dir.path().join("data/in/marker.txt"), "x").unwrap();
    let ran = run_in(&workflow("io/system/commands_unix.json"), dir.path());
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(
        ran.out("get_env", "result_value"),
        Value::str("hello overlay")
    );
    assert_eq!(
        ran.out("list_form", "stdout"),
        Value::str("hello overlay|two words")
    );
    assert_eq!(ran.out("string_form", "stdout"), Value::str("a b|c|"));
    assert_eq!(ran.out("exit_code", "return_code").py_repr(), "4");
    assert_eq!(ran.out("exit_code", "success"), Value::Bool(false));
    assert_eq!(ran.out("exit_code", "stderr"), Value::str("bad input\n"));
    assert_eq!(ran.out("in_dir", "stdout"), Value::str("marker.txt\n"));
    assert_eq!(
        ran.out("with_env", "stdout"),
        Value::str("hello overlay/extra True")
    );
    assert_eq!(
        ran.out("shell_form", "stdout"),
        Value::str("shell says it's a b\n")
    );
    assert_eq!(
        ran.logs,
        [format!(
            "[log_result] exit=4 ok=False err=bad input\nlist=hello overlay|two words string=a b|c| os={}",
            ran.out("sys_os", "info").as_dict().unwrap()["os"]
                .as_dict()
                .unwrap()["system"]
                .py_str()
        )]
    );
    // The overlay is run state (checkpointed), not a workflow output, and the robot's own
    // environment is untouched.
    assert!(ran.outcome.variables.contains_key("_env"));
    assert!(!ran.outcome.outputs().contains_key("_env"));
    assert!(std::env::var_os("GREETING").is_none());
}

#[test]
fn portable_workflow() {
    let dir = tmp();
    std::fs::create_dir_all(dir.path().join("sub/dir")).unwrap();
    let ran = run_in(&workflow("io/system/portable.json"), dir.path());
    assert!(ran.outcome.success(), "{}", ran.error());
    let system = ran.out("info", "info").as_dict().unwrap()["os"]
        .as_dict()
        .unwrap()["system"]
        .py_str();
    let expected = format!("task invoices on {system}\n");
    assert_eq!(ran.out("echo", "stdout"), Value::str(&expected));
    assert_eq!(ran.logs, [format!("[log_result] {expected}")]);
}

#[cfg(unix)]
#[test]
fn timeout_kills_the_tree_and_a_try_catches_it() {
    let dir = tmp();
    let ran = run_in(&workflow("io/system/timeout_caught_unix.json"), dir.path());
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(
        ran.logs,
        ["[handler] caught TimeoutError: command timed out after 1 s (process tree killed)"]
    );
    assert!(
        ran.took["hang"] < Duration::from_secs(3),
        "{:?}",
        ran.took["hang"]
    );
    assert_eq!(ran.out("after", "stdout"), Value::str("still healthy\n"));
    let pid = grandchild_pid(dir.path());
    assert!(
        wait_until(Duration::from_secs(2), || !alive(pid)),
        "grandchild {pid} survived the timeout"
    );
}

// ---------------------------------------------------------------- timeouts and cancellation

#[cfg(unix)]
#[test]
fn timeout_fails_the_node_within_two_seconds() {
    let dir = tmp();
    let ran = one(
        json!({"command": ["sh", "-c", TREE_CMD], "timeout": 1}),
        dir.path(),
    );
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(ran.error_type(), "TimeoutError");
    assert_eq!(
        ran.error(),
        "cmd (RunCommandNode): command timed out after 1 s (process tree killed)"
    );
    assert!(ran.wall < Duration::from_secs(3), "{:?}", ran.wall);
    let pid = grandchild_pid(dir.path());
    assert!(
        wait_until(Duration::from_secs(2), || !alive(pid)),
        "grandchild {pid} survived the timeout"
    );
}

#[cfg(unix)]
#[test]
fn the_node_deadline_caps_the_command_timeout() {
    let dir = tmp();
    let mut opts = opts_in(dir.path());
    opts.node_timeout = Duration::from_millis(800);
    let ran = run_with(
        &chain(&[(
            "cmd",
            "RunCommandNode",
            json!({"command": "sleep 30", "timeout": 60}),
        )]),
        &opts,
        &CancelToken::new(),
    );
    assert_eq!(ran.error_type(), "TimeoutError");
    assert!(
        ran.error()
            .contains("the node deadline passed (process tree killed)"),
        "{}",
        ran.error()
    );
    assert!(ran.wall < Duration::from_secs(3), "{:?}", ran.wall);
}

#[cfg(unix)]
#[test]
fn cancellation_from_another_thread_kills_the_tree() {
    let dir = tmp();
    let token = CancelToken::new();
    let canceller = cancel_once_grandchild_runs(dir.path(), &token);
    let ran = run_with(
        &chain(&[(
            "cmd",
            "RunCommandNode",
            json!({"command": ["sh", "-c", TREE_CMD], "timeout": 60}),
        )]),
        &opts_in(dir.path()),
        &token,
    );
    let pid = canceller.join().unwrap();
    assert_eq!(ran.outcome.status, RunStatus::Cancelled, "{}", ran.error());
    assert!(ran.wall < Duration::from_secs(10), "{:?}", ran.wall);
    assert!(
        wait_until(Duration::from_secs(2), || !alive(pid)),
        "grandchild {pid} survived the cancellation"
    );
}

// ---------------------------------------------------------------- output

#[cfg(unix)]
#[test]
fn flooding_output_is_bounded_and_does_not_deadlock() {
    let dir = tmp();
    // 12 MB to stderr first: a reader of stdout alone would block the program on a full pipe.
    let script = "yes e | head -c 12000000 >&2; yes o | head -c 25000000";
    let ran = one(
        json!({"command": ["sh", "-c", script], "timeout": 60}),
        dir.path(),
    );
    assert!(ran.outcome.success(), "{}", ran.error());
    let cap = 10 * 1024 * 1024;
    let out = ran.out("cmd", "stdout").py_str();
    let err = ran.out("cmd", "stderr").py_str();
    assert!(out.starts_with("o\no\n"));
    assert!(out.ends_with(&format!("…[truncated {} bytes]", 25_000_000 - cap)));
    assert_eq!(out.len(), cap + "…[truncated 14514240 bytes]".len());
    assert!(err.ends_with(&format!("…[truncated {} bytes]", 12_000_000 - cap)));
    assert_eq!(ran.out("cmd", "return_code").py_repr(), "0");
    assert!(ran
        .all_logs
        .iter()
        .any(|l| l.contains("stdout of 'sh' exceeded 10 MB")));
}

#[cfg(unix)]
#[test]
fn non_utf8_output_and_crlf() {
    let dir = tmp();
    let ran = one(
        json!({"command": "printf", "args": ["a\\377b\\r\\nc"]}),
        dir.path(),
    );
    assert_eq!(ran.out("cmd", "stdout"), Value::str("a\u{fffd}b\nc"));
}

#[cfg(unix)]
#[test]
fn a_background_process_holding_the_pipes_does_not_hang_the_node() {
    let dir = tmp();
    let ran = one(
        json!({"command": ["sh", "-c", "sleep 3 & echo started"], "timeout": 30}),
        dir.path(),
    );
    assert!(ran.outcome.success(), "{}", ran.error());
    assert_eq!(ran.out("cmd", "stdout"), Value::str("started\n"));
    assert!(ran.wall < Duration::from_millis(2500), "{:?}", ran.wall);
    assert!(ran
        .all_logs
        .iter()
        .any(|l| l.contains("still holds its output open")));
}

// ---------------------------------------------------------------- rules and bad input

#[test]
fn config_can_disable_or_allow_list_commands() {
    let dir = tmp();
    let mut opts = opts_in(dir.path());
    opts.safety.run_command_disabled = true;
    let wf = chain(&[(
        "cmd",
        "RunCommandNode",
        json!({"command": "echo hi", "shell": true}),
    )]);
    let ran = run_with(&wf, &opts, &CancelToken::new());
    assert_eq!(ran.error_type(), "PermissionError");
    assert_eq!(
        ran.error(),
        "cmd (RunCommandNode): refused command 'echo': RunCommand is disabled (run_command_enabled is false)"
    );

    let mut opts = opts_in(dir.path());
    opts.safety.run_command_allowlist = vec!["echo".into()];
    let ran = run_with(&wf, &opts, &CancelToken::new());
    assert!(
        ran.error().contains("(shell=true runs the command through"),
        "{}",
        ran.error()
    );
    let other = chain(&[("cmd", "RunCommandNode", json!({"command": ["ls", "-l"]}))]);
    let ran = run_with(&other, &opts, &CancelToken::new());
    assert!(
        ran.error()
            .starts_with("cmd (RunCommandNode): refused command 'ls': '/")
            && ran
                .error()
                .ends_with("/ls' is not in run_command_allowlist (echo)"),
        "{}",
        ran.error()
    );
    #[cfg(unix)]
    {
        let allowed = chain(&[("cmd", "RunCommandNode", json!({"command": ["echo", "ok"]}))]);
        let ran = run_with(&allowed, &opts, &CancelToken::new());
        assert_eq!(
            ran.out("cmd", "stdout"),
            Value::str("ok\n"),
            "{}",
            ran.error()
        );
        opts.safety.run_command_allowlist = vec!["echo".into(), "sh".into()];
        let ran = run_with(&wf, &opts, &CancelToken::new());
        assert_eq!(
            ran.out("cmd", "stdout"),
            Value::str("hi\n"),
            "{}",
            ran.error()
        );
    }
}

#[cfg(unix)]
#[test]
fn the_allow_list_cannot_be_beaten_by_spelling_or_environment() {
    let dir = tmp();
    let mut opts = opts_in(dir.path());
    opts.safety.run_command_allowlist = vec!["h".into(), "echo".into()];
    let marker = dir.path().join("touched");
    // The split turns `touc\h` into `touch`: the name checked must be the one that runs.
    let wf = chain(&[(
        "cmd",
        "RunCommandNode",
        json!({"command": format!("/usr/bin/touc\\h {}", marker.display())}),
    )]);
    let ran = run_with(&wf, &opts, &CancelToken::new());
    assert_eq!(ran.error_type(), "PermissionError", "{}", ran.error());
    assert!(
        ran.error()
            .ends_with("/touch' is not in run_command_allowlist (h, echo)"),
        "{}",
        ran.error()
    );
    assert!(!marker.exists(), "touch ran");
    for var in ["PATH", "LD_PRELOAD", "DYLD_INSERT_LIBRARIES"] {
        let wf = chain(&[(
            "cmd",
            "RunCommandNode",
            json!({"command": ["echo", "ok"], "env": {var: dir.path().display().to_string()}}),
        )]);
        let ran = run_with(&wf, &opts, &CancelToken::new());
        assert_eq!(
            ran.error(),
            format!("cmd (RunCommandNode): refused environment variable '{var}': with run_command_allowlist set, RunCommand may not change PATH or LD_* / DYLD_* variables")
        );
    }
    // PATH changed through EnvironmentVariableNode (the run's overlay) is refused the same way.
    let wf = chain(&[
        (
            "set",
            "EnvironmentVariableNode",
            json!({"action": "set", "var_name": "PATH", "value": dir.path().display().to_string()}),
        ),
        ("cmd", "RunCommandNode", json!({"command": ["echo", "ok"]})),
    ]);
    let ran = run_with(&wf, &opts, &CancelToken::new());
    assert!(
        ran.error().contains("refused environment variable 'PATH'"),
        "{}",
        ran.error()
    );
}

#[test]
fn upstream_blocklist_and_allow_dangerous() {
    let dir = tmp();
    let ran = one(json!({"command": "curl http://example.com"}), dir.path());
    assert_eq!(ran.error_type(), "SecurityError");
    assert!(ran.error().contains("command 'curl' is blocked for safety"));
    let ran = one(
        json!({"command": "echo a; echo b", "shell": true}),
        dir.path(),
    );
    assert_eq!(ran.error_type(), "SecurityError");
    #[cfg(unix)]
    {
        let ran = one(
            json!({"command": "echo a; echo b", "shell": true, "allow_dangerous": true}),
            dir.path(),
        );
        assert_eq!(
            ran.out("cmd", "stdout"),
            Value::str("a\nb\n"),
            "{}",
            ran.error()
        );
    }
}

#[test]
fn missing_program_and_working_dir() {
    let dir = tmp();
    let ran = one(
        json!({"command": ["casare-no-such-program", "x"]}),
        dir.path(),
    );
    assert_eq!(ran.error_type(), "FileNotFoundError");
    assert_eq!(
        ran.error(),
        "cmd (RunCommandNode): program 'casare-no-such-program' not found (is it installed and on PATH?)"
    );
    let ran = one(
        json!({"command": "echo hi", "shell": true, "working_dir": "missing\\dir"}),
        dir.path(),
    );
    assert_eq!(ran.error_type(), "FileNotFoundError");
    assert!(
        ran.error().contains("does not exist or is not a directory"),
        "{}",
        ran.error()
    );
    let wf =
        r#"{"nodes": {"cmd": {"node_id": "cmd", "node_type": "RunCommandNode", "config": {}}}}"#;
    assert!(load_str(wf).is_err(), "command is required at load time");
}

// ---------------------------------------------------------------- cancel grace

/// A cancelled command is asked to stop (SIGTERM to its group) and gets `cancel_grace` to clean
/// up; one that ignores the request is killed when the grace runs out.
#[cfg(unix)]
#[test]
fn cancellation_gives_children_a_grace_period_then_kills_them() {
    let dir = tmp();
    let cancel_after_start = |token: CancelToken, marker: std::path::PathBuf| {
        std::thread::spawn(move || {
            assert!(
                wait_until(Duration::from_secs(10), || marker.exists()),
                "the command started"
            );
            token.cancel("operator stopped the job");
        })
    };
    // Cleans up on SIGTERM: the trap runs (writes `cleaned`) and the run ends well before 30 s.
    let started = dir.path().join("started");
    let script = format!(
        "trap 'echo done > {}; exit 0' TERM; touch {}; sleep 30 & wait",
        dir.path().join("cleaned").display(),
        started.display()
    );
    let mut opts = opts_in(dir.path());
    opts.cancel_grace = Duration::from_secs(5);
    let token = CancelToken::new();
    let canceller = cancel_after_start(token.clone(), started.clone());
    let ran = run_with(
        &chain(&[(
            "cmd",
            "RunCommandNode",
            json!({"command": ["sh", "-c", script], "timeout": 60}),
        )]),
        &opts,
        &token,
    );
    canceller.join().unwrap();
    assert_eq!(ran.outcome.status, RunStatus::Cancelled);
    assert!(
        dir.path().join("cleaned").exists(),
        "the command could clean up"
    );
    assert!(ran.wall < Duration::from_secs(5), "{:?}", ran.wall);

    // Ignores SIGTERM: killed once the grace (1 s) runs out.
    let started = dir.path().join("started2");
    let script = format!("trap '' TERM; touch {}; sleep 30", started.display());
    let mut opts = opts_in(dir.path());
    opts.cancel_grace = Duration::from_secs(1);
    let token = CancelToken::new();
    let canceller = cancel_after_start(token.clone(), started);
    let ran = run_with(
        &chain(&[(
            "cmd",
            "RunCommandNode",
            json!({"command": ["sh", "-c", script], "timeout": 60}),
        )]),
        &opts,
        &token,
    );
    canceller.join().unwrap();
    assert_eq!(ran.outcome.status, RunStatus::Cancelled);
    assert!(
        ran.wall >= Duration::from_millis(900),
        "the grace was given: {:?}",
        ran.wall
    );
    assert!(
        ran.wall < Duration::from_secs(10),
        "then it was killed: {:?}",
        ran.wall
    );
}

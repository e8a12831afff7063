//! The real binary, end to end: `run`, `validate`, `validate-config`, `nodes`, exit codes, output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;

fn bin() -> Command {
    // Isolated from any robot_config.json / CASARE_* of the machine running the tests.
    support::robot::isolated_command()
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn run_hello_prints_progress_and_result() {
    let out = run(&["run", example("hello.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(stdout.contains("status: completed"), "{stdout}");
    assert!(stdout.contains("greeting = 'Hello, World!'"), "{stdout}");
    assert!(
        stderr.contains("log  [say_hello] Hello, World!"),
        "{stderr}"
    );
    assert!(stderr.contains("ok   ["), "a line per node: {stderr}");
    // Branches not taken are never visited; the last node still reports the run complete.
    let last_node_line = stderr.lines().rfind(|l| l.contains("ok   [")).unwrap();
    assert!(last_node_line.contains("[100%]"), "{stderr}");
}

#[test]
fn run_json_with_vars_gives_the_result_object() {
    let out = run(&[
        "run",
        example("hello.json").to_str().unwrap(),
        "--json",
        "--quiet",
        "--var",
        "name=Alexander",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["success"], true);
    assert_eq!(v["outputs"]["greeting"], "Hello, Alexander!");
    assert_eq!(v["outputs"]["verdict"], "that is a long name");
    assert_eq!(v["recovered"], false);
    assert!(v["duration_ms"].is_u64());
    // The precise figure beside the integer one.
    let precise = v["duration_s"].as_f64().expect("duration_s is a number");
    let whole_ms = v["duration_ms"].as_u64().unwrap() as f64;
    assert!(precise > 0.0, "{v}");
    assert!(
        (0.0..1.0).contains(&(precise * 1000.0 - whole_ms)),
        "{precise} s vs {whole_ms} ms"
    );
    assert!(
        !text(&out.stderr).contains("ok   ["),
        "--quiet hides node lines"
    );
}

#[test]
fn vars_file_and_json_typed_vars() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(
        &dir,
        "wf.json",
        r#"{"nodes": {"s": {"node_id": "s", "node_type": "SetVariableNode",
             "config": {"variable_name": "kind", "value": "{{n}}"}}}, "connections": []}"#,
    );
    let vars = write_temp(&dir, "vars.json", r#"{"n": [1, 2], "other": "x"}"#);
    let out = run(&[
        "run",
        wf.to_str().unwrap(),
        "--json",
        "--vars-file",
        vars.to_str().unwrap(),
        "--var",
        "n=5",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["outputs"]["kind"], 5,
        "--var wins over --vars-file and keeps the int type"
    );
    assert_eq!(v["outputs"]["other"], "x");

    let bad = write_temp(&dir, "bad.json", "[1]");
    let out = run(&[
        "run",
        wf.to_str().unwrap(),
        "--vars-file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("must hold a JSON object, not list"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failing_workflow_exits_1_naming_node_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(
        &dir,
        "fail.json",
        r#"{"nodes": {"boom": {"node_id": "boom", "node_type": "ThrowErrorNode",
             "config": {"error_message": "the invoice system is down"}}}, "connections": []}"#,
    );
    let out = run(&["run", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: boom (ThrowErrorNode): the invoice system is down"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["run", wf.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["failed_node"], "boom");
}

#[test]
fn validate_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(
        &dir,
        "bad.json",
        r#"{"nodes": {
             "a": {"node_id": "a", "node_type": "LaunchBrowserNode", "config": {}},
             "b": {"node_id": "b", "node_type": "OCRNode", "config": {}},
             "c": {"node_id": "c", "node_type": "LogNode", "config": {}}},
           "connections": [{"source_node": "c", "source_port": "exec_out", "target_node": "zz", "target_port": "exec_in"}]}"#,
    );
    let out = run(&["validate", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for needle in [
        "invalid workflow (3 problems)",
        "a (LaunchBrowserNode): unsupported node type",
        "b (OCRNode): unsupported node type",
        "refers to missing node \"zz\"",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    let out = run(&["validate", wf.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(
        v["unsupported_types"],
        serde_json::json!(["LaunchBrowserNode", "OCRNode"])
    );
    assert_eq!(v["problems"].as_array().unwrap().len(), 3);

    let out = run(&["validate", example("hello.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("ok: "));
}

#[test]
fn malformed_json_reports_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(
        &dir,
        "broken.json",
        "{\n  \"nodes\": {\n    \"a\": \n  }\n}",
    );
    let out = run(&["run", wf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    // The file is named, and the position is said once.
    assert!(
        stderr.contains(&format!("error: {}: invalid workflow", wf.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid JSON at line 4, column 3"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("line 4").count(), 1, "{stderr}");
    let out = run(&["run", "/definitely/not/here.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read workflow /definitely/not/here.json"));
    let bin_file = dir.path().join("binary.json");
    std::fs::write(&bin_file, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    let out = run(&["run", bin_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not UTF-8 text"));
}

#[test]
fn validate_config_prints_sources_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_temp(
        &dir,
        "robot_config.json",
        r#"{"robot_name": "Bot-7", "api_key": "sk-live-1234567890abcd", "max_concurrent_jobs": 2}"#,
    );
    let out = bin()
        .args(["validate-config", "--config", cfg.to_str().unwrap()])
        .env("CASARE_NODE_TIMEOUT", "30")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Bot-7"), "{stdout}");
    assert!(stdout.contains("env CASARE_NODE_TIMEOUT"), "{stdout}");
    assert!(
        !stdout.contains("sk-live-1234567890abcd"),
        "secret leaked: {stdout}"
    );
    assert!(
        stdout.contains("abcd"),
        "masked secret keeps its last 4 chars: {stdout}"
    );

    let bad = write_temp(
        &dir,
        "bad_config.json",
        r#"{"max_concurrent_jobs": 0, "hearbeat_interval": 5}"#,
    );
    let out = run(&["validate-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("max_concurrent_jobs"), "{err}");
    assert!(err.contains("heartbeat_interval"), "suggestion: {err}");

    let out = run(&["validate-config", "--config", "/no/such/config.json"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn nodes_lists_supported_types() {
    let out = run(&["nodes", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["node_type"].as_str().unwrap())
        .collect();
    for t in [
        "StartNode",
        "SetVariableNode",
        "IfNode",
        "ForLoopStartNode",
        "TryNode",
        "LogNode",
        "WaitNode",
    ] {
        assert!(types.contains(&t), "{t} missing");
    }
}

#[test]
fn version_and_help() {
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("casare-robot "));
    let out = run(&["run", "--help"]);
    assert!(text(&out.stdout).contains("parsed as JSON"));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn timeout_flag_stops_a_long_run_with_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(
        &dir,
        "wait.json",
        r#"{"nodes": {"w": {"node_id": "w", "node_type": "WaitNode", "config": {"duration": 30}}}, "connections": []}"#,
    );
    let started = Instant::now();
    let out = run(&["run", wf.to_str().unwrap(), "--timeout", "0.2"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(text(&out.stderr).contains("timed out"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_a_running_wait_with_exit_3() {
    let err = interrupt_a_waiting_run("-INT");
    assert!(err.contains("interrupted by Ctrl+C"), "{err}");
}

#[cfg(unix)]
#[test]
fn sigterm_cancels_a_run_and_is_named_as_sigterm() {
    let err = interrupt_a_waiting_run("-TERM");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(!err.contains("by Ctrl+C"), "{err}");
}

/// Send `signal` to a run waiting in a node; checks exit code 3 and returns its stderr.
#[cfg(unix)]
fn interrupt_a_waiting_run(signal: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(
        &dir,
        "wait.json",
        r#"{"nodes": {"w": {"node_id": "w", "node_type": "WaitNode", "config": {"duration": 60}},
                      "after": {"node_id": "after", "node_type": "LogNode", "config": {"message": "never"}}},
            "connections": [{"source_node": "w", "source_port": "exec_out", "target_node": "after", "target_port": "exec_in"}]}"#,
    );
    let mut child = bin()
        .args(["run", wf.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the run header: it is printed after the Ctrl+C handler is installed.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("run header on stderr");
        if line.starts_with("run ") {
            break;
        }
    }
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            Instant::now() < deadline,
            "the run did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let err: Vec<String> = rx.try_iter().collect();
    let err = err.join("\n");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!err.contains("never"), "{err}");
    let _ = std::io::stderr().flush();
    err
}

#[test]
fn start_verbose_logs_debug_lines_and_start_without_an_orchestrator_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // No orchestrator configured: exit 2 with what to set.
    let bare = write_temp(
        &dir,
        "bare.json",
        &format!(
            r#"{{"data_dir": {:?}, "log_dir": {:?}}}"#,
            dir.path().join("data"),
            dir.path().join("logs")
        ),
    );
    let out = run(&["start", "--config", bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("orchestrator_url") && err.contains("api_url"),
        "{err}"
    );
    // --verbose: debug lines on stderr in console mode (the orchestrator is a closed port).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_temp(
        &dir,
        "robot.json",
        &format!(
            r#"{{"orchestrator_url": "ws://127.0.0.1:{port}", "data_dir": {:?}, "log_dir": {:?}}}"#,
            dir.path().join("data"),
            dir.path().join("logs")
        ),
    );
    let log = std::fs::File::create(dir.path().join("stderr.txt")).unwrap();
    let mut child = bin()
        .args([
            "start",
            "--foreground",
            "--verbose",
            "--config",
            config.to_str().unwrap(),
        ])
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
        if seen.contains("[DEBUG]") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("[DEBUG]"), "{seen}");
}

/// The tray is Windows-only: elsewhere `start --tray` says so (before reading any config) and no
/// arguments at all is still a usage error.
#[cfg(not(windows))]
#[test]
fn the_tray_is_a_clear_error_off_windows() {
    let out = run(&["start", "--tray"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--tray needs the Windows build"), "{err}");
    assert!(err.contains("start --foreground"), "{err}");
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("requires a subcommand"));
}

/// Run the binary with stdout on a pipe whose reader is already gone (`... | head` after head
/// exited): every command exits quietly, without a panic.
fn run_into_closed_pipe(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = cmd
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_pipe_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A status file as a running robot leaves it, so `status --json` has something to print.
    let snapshot = casare_robot::observe::status::StatusSnapshot {
        pid: std::process::id(),
        state: "idle".into(),
        ..Default::default()
    };
    std::fs::write(
        data.join(casare_robot::observe::status::STATUS_FILE),
        serde_json::to_string(&snapshot).unwrap(),
    )
    .unwrap();
    let hello = example("hello.json");
    let commands: [&[&str]; 5] = [
        &["nodes"],
        &["nodes", "--json"],
        &["validate-config"],
        &["status", "--json"],
        &["run", hello.to_str().unwrap(), "--json", "--quiet"],
    ];
    for args in commands {
        let out = run_into_closed_pipe(
            bin()
                .args(args)
                .env("CASARE_DATA_DIR", &data)
                .env("CASARE_LOG_DIR", dir.path().join("logs")),
        );
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

#[test]
fn typos_in_env_vars_and_var_flags_are_warned_about() {
    // An unknown CASARE_* variable: a warning naming it and the closest key; the command runs.
    let out = bin()
        .args(["validate-config"])
        .env("CASARE_HEARTBEAT_INTERVALL", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "warning: environment variable CASARE_HEARTBEAT_INTERVALL names no configuration key \
             and is ignored (did you mean CASARE_HEARTBEAT_INTERVAL?)"
        ),
        "{}",
        text(&out.stderr)
    );
    // --var naming nothing the workflow declares or refers to: a warning with the closest name.
    let hello = example("hello.json");
    let out = run(&[
        "run",
        hello.to_str().unwrap(),
        "--quiet",
        "--var",
        "nmae=Bob",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "warning: --var nmae: the workflow declares no variable \"nmae\" and no node refers to it; \
             it is passed anyway (did you mean \"name\"?)"
        ),
        "{}",
        text(&out.stderr)
    );
    // Declared or referred-to names are not warned about.
    let out = run(&[
        "run",
        hello.to_str().unwrap(),
        "--quiet",
        "--var",
        "name=Bob",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs the binary with `args` and returns its output, killing it when it does not end within
/// `limit` (the test then fails naming the command).
#[cfg(unix)]
fn run_within(args: &[&str], limit: Duration) -> Output {
    use std::process::Stdio;
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary runs");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("casare-robot {args:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(unix)]
#[test]
fn endless_workflow_and_vars_files_are_refused_at_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let wf = write_temp(&dir, "wf.json", r#"{"nodes": {}}"#);
    let cases: [(&[&str], &str); 3] = [
        (
            &["run", "/dev/zero"],
            "workflow /dev/zero is larger than the limit",
        ),
        (
            &["validate", "/dev/zero"],
            "workflow /dev/zero is larger than the limit",
        ),
        (
            &["run", wf.to_str().unwrap(), "--vars-file", "/dev/zero"],
            "--vars-file /dev/zero is larger than the limit",
        ),
    ];
    for (args, expected) in cases {
        let out = run_within(args, Duration::from_secs(60));
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// The terminal a daemon was started from can go away (SIGHUP, or a closed pipe): the stop
/// request must still drain and exit cleanly, not die writing its notice to the lost stderr.
#[cfg(unix)]
#[test]
fn a_daemon_whose_stderr_is_gone_still_stops_gracefully() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let config = write_temp(
        &dir,
        "robot_config.json",
        &serde_json::json!({
            "robot_id": "gone-stderr",
            "orchestrator_url": "ws://127.0.0.1:1/ws",
            "data_dir": dir.path().join("data"),
            "log_dir": logs,
            "reconnect_delay": 0.1,
            "max_reconnect_delay": 0.5,
            "graceful_shutdown_seconds": 5,
        })
        .to_string(),
    );
    let mut child = bin()
        .args([
            "start",
            "--foreground",
            "--config",
            config.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away: every later write to stderr fails with a broken pipe.
    drop(child.stderr.take());
    let log = logs.join("casare-robot.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    // The stop handler is installed before the link starts connecting.
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("127.0.0.1:1")) {
        assert!(
            Instant::now() < deadline,
            "the robot never tried to connect"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the robot exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "the robot did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(code, Some(0), "{log}");
}

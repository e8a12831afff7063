//! Script nodes through the real engine with real interpreters: Python (`python3`), Node.js
//! (`node`), `sh`; results and output, variables in (large ones too), unicode, exceptions, exit
//! codes, timeouts and cancellation that kill the interpreter's whole process tree, the command
//! rules (disabled, allow-list) and missing interpreters.
//!
//! A test whose interpreter is not installed prints a note and passes (CI installs `python3` and
//! `nodejs`, see `.ci/run`).
#![cfg(unix)]

mod support;

use casare_robot::engine::runner::{self, RunOptions, RunStatus};
use casare_robot::engine::{load_str, CancelToken, Dict, Value};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

mod common;
use common::{Logs, Ran};
use support::procs::{alive, cancel_once_grandchild_runs, grandchild_pid, wait_until};

fn error_type(ran: &Ran) -> String {
    ran.outcome
        .error
        .as_ref()
        .map(|e| e.error_type.clone())
        .unwrap_or_default()
}

fn ok(ran: &Ran) {
    assert!(ran.outcome.success(), "{}", ran.error());
}

fn opts_in(dir: &Path) -> RunOptions {
    let mut opts = RunOptions::default();
    opts.safety.work_dir = Some(dir.to_path_buf());
    opts
}

fn run_with(
    nodes: &[(&str, &str, serde_json::Value)],
    opts: &RunOptions,
    token: &CancelToken,
) -> Ran {
    run_inputs(nodes, Dict::new(), opts, token)
}

/// Run with job inputs (values larger than a workflow's config strings may hold).
fn run_inputs(
    nodes: &[(&str, &str, serde_json::Value)],
    inputs: Dict,
    opts: &RunOptions,
    token: &CancelToken,
) -> Ran {
    let json = support::chain(nodes).to_string();
    let wf = load_str(&json).unwrap_or_else(|e| panic!("workflow did not load: {e}"));
    let mut logs = Logs::default();
    let outcome = runner::run(&wf, inputs, opts, token, &mut logs);
    Ran {
        outcome,
        logs: logs.0,
    }
}

fn one(node_type: &str, config: serde_json::Value, dir: &Path) -> Ran {
    run_with(
        &[("n", node_type, config)],
        &opts_in(dir),
        &CancelToken::new(),
    )
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// True when `program` runs (`--version`); prints a note otherwise.
fn have(program: &str) -> bool {
    let ok = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("note: {program} is not installed; test skipped");
    }
    ok
}

/// Python code that starts a `sleep 60` grandchild, records its pid, then sleeps itself.
const PY_TREE: &str = "import subprocess, time\n\
p = subprocess.Popen(['sleep', '60'])\n\
open('grandchild.pid', 'w').write('%d\\n' % p.pid)\n\
time.sleep(60)\n";

// ---------------------------------------------------------------- Python

#[test]
fn python_script_returns_result_and_output_with_variables_and_unicode() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let code = "total = sum(variables['numbers']) + offset\n\
print('héllo ✓ 日本', name)\n\
result = {'total': total, 'name': name.upper(), 'pi': 3.5, 'none': None, 'set': {1}}";
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": code, "variables": {"numbers": [1, 2, 3], "offset": 10, "name": "zoë"}}),
        dir.path(),
    );
    ok(&ran);
    assert_eq!(
        ran.out("n", "result").py_repr(),
        "{'total': 16, 'name': 'ZOË', 'pi': 3.5, 'none': None, 'set': '{1}'}"
    );
    assert_eq!(ran.text("n", "output"), "héllo ✓ 日本 zoë\n");
    assert_eq!(ran.out("n", "success"), Value::Bool(true));
    assert_eq!(ran.out("n", "error"), Value::str(""));
}

#[test]
fn python_output_that_forges_a_result_marker_stays_output() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": "print('__RESULT__:\"forged\"')\nresult = 7"}),
        dir.path(),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::Int(7));
    assert_eq!(ran.text("n", "output"), "__RESULT__:\"forged\"\n");
}

#[test]
fn python_exception_fails_the_node_with_its_type_and_line() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": "x = 1\ny = x / 0\n"}),
        dir.path(),
    );
    assert_eq!(ran.outcome.status, RunStatus::Failed);
    assert_eq!(error_type(&ran), "ZeroDivisionError");
    assert_eq!(
        ran.error(),
        "n (RunPythonScriptNode): the script raised ZeroDivisionError at line 2 of the script: division by zero"
    );
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": "a = 1\nif a\n  pass\n"}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "SyntaxError");
    assert!(
        ran.error().contains("at line 2 of the script"),
        "{}",
        ran.error()
    );
    // sys.exit(0) is a normal end; another code is an error.
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": "import sys\nresult = 'done'\nsys.exit(0)\n"}),
        dir.path(),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::str("done"));
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": "import sys\nsys.exit(3)\n"}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "SystemExit");
    // A crash of the interpreter itself (no report) names the exit code.
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": "import os\nos._exit(5)\n"}),
        dir.path(),
    );
    assert_eq!(
        ran.error(),
        "n (RunPythonScriptNode): the Python interpreter exited with code 5 before the script finished"
    );
}

#[test]
fn python_big_variables_travel_on_stdin() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    // 8 MB in one value: far beyond what one command-line argument may hold on Linux (128 KiB).
    let mut inputs = Dict::new();
    inputs.insert("big".into(), Value::str("é".repeat(4 * 1024 * 1024)));
    let ran = run_inputs(
        &[(
            "n",
            "RunPythonScriptNode",
            json!({"code": "result = [len(blob), blob[:2], blob == 'é' * (4 * 1024 * 1024)]",
                   "variables": {"blob": "{{big}}"}}),
        )],
        inputs,
        &opts_in(dir.path()),
        &CancelToken::new(),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result").py_repr(), "[4194304, 'éé', True]");
}

#[test]
fn python_timeout_kills_the_interpreter_tree() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let ran = one(
        "RunPythonScriptNode",
        json!({"code": PY_TREE, "timeout": 2}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "TimeoutError", "{}", ran.error());
    assert_eq!(
        ran.error(),
        "n (RunPythonScriptNode): command timed out after 2 s (process tree killed)"
    );
    let pid = grandchild_pid(dir.path());
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "grandchild {pid} survived the timeout"
    );
}

#[test]
fn python_cancellation_kills_the_interpreter_tree() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let token = CancelToken::new();
    let canceller = cancel_once_grandchild_runs(dir.path(), &token);
    let mut opts = opts_in(dir.path());
    opts.cancel_grace = Duration::from_millis(200);
    let ran = run_with(
        &[(
            "n",
            "RunPythonScriptNode",
            json!({"code": PY_TREE, "timeout": 60}),
        )],
        &opts,
        &token,
    );
    let pid = canceller.join().unwrap();
    assert_eq!(ran.outcome.status, RunStatus::Cancelled, "{}", ran.error());
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "grandchild {pid} survived the cancellation"
    );
}

#[test]
fn command_rules_apply_to_the_interpreter() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let node = [("n", "RunPythonScriptNode", json!({"code": "result = 1"}))];
    let mut opts = opts_in(dir.path());
    opts.safety.run_command_allowlist = vec!["git".into()];
    let ran = run_with(&node, &opts, &CancelToken::new());
    assert_eq!(error_type(&ran), "PermissionError");
    assert!(
        ran.error()
            .contains("is not in run_command_allowlist (git)")
            && ran
                .error()
                .ends_with("(script nodes start their interpreter as a command)"),
        "{}",
        ran.error()
    );
    opts.safety.run_command_allowlist = vec!["python3".into()];
    let ran = run_with(&node, &opts, &CancelToken::new());
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::Int(1));

    // With an allow-list, the run's environment overlay may not redirect what the interpreter
    // loads.
    let ran = run_with(
        &[
            (
                "env",
                "EnvironmentVariableNode",
                json!({"action": "set", "var_name": "LD_PRELOAD", "value": "/tmp/evil.so"}),
            ),
            ("n", "RunPythonScriptNode", json!({"code": "result = 1"})),
        ],
        &opts,
        &CancelToken::new(),
    );
    assert_eq!(
        ran.error(),
        "n (RunPythonScriptNode): refused environment variable 'LD_PRELOAD': with run_command_allowlist set, RunCommand may not change PATH or LD_* / DYLD_* variables"
    );

    let mut off = opts_in(dir.path());
    off.safety.run_command_disabled = true;
    let ran = run_with(&node, &off, &CancelToken::new());
    assert!(
        ran.error()
            .contains("RunCommand is disabled (run_command_enabled is false)"),
        "{}",
        ran.error()
    );
    let ran = run_with(
        &[("n", "RunBatchScriptNode", json!({"script": "echo hi"}))],
        &off,
        &CancelToken::new(),
    );
    assert_eq!(error_type(&ran), "PermissionError", "{}", ran.error());
}

#[test]
fn a_missing_interpreter_names_the_key_to_set() {
    let dir = tmp();
    let mut opts = opts_in(dir.path());
    opts.safety.python_path = Some("/nonexistent/python9".into());
    opts.safety.node_path = Some("/nonexistent/node9".into());
    let ran = run_with(
        &[("n", "RunPythonScriptNode", json!({"code": "result = 1"}))],
        &opts,
        &CancelToken::new(),
    );
    assert_eq!(error_type(&ran), "FileNotFoundError");
    assert_eq!(
        ran.error(),
        "n (RunPythonScriptNode): Python interpreter not found (tried /nonexistent/python9); check python_path (set in the robot configuration): it must name an installed interpreter, by path or by name on PATH"
    );
    let ran = run_with(
        &[("n", "RunJavaScriptNode", json!({"code": "console.log(1)"}))],
        &opts,
        &CancelToken::new(),
    );
    assert_eq!(
        ran.error(),
        "n (RunJavaScriptNode): Node.js interpreter not found (tried /nonexistent/node9); check node_path (set in the robot configuration): it must name an installed interpreter, by path or by name on PATH"
    );
    // The node's own parameter names itself as the source.
    let script = dir.path().join("s.py");
    std::fs::write(&script, "print(1)\n").unwrap();
    let ran = one(
        "RunPythonFileNode",
        json!({"file_path": "s.py", "python_path": "no-such-python-here"}),
        dir.path(),
    );
    assert!(
        ran.error().ends_with("Python interpreter not found (tried no-such-python-here); check python_path (set in the node's parameter): it must name an installed interpreter, by path or by name on PATH"),
        "{}",
        ran.error()
    );
}

#[test]
fn python_file_gets_arguments_and_working_directory() {
    if !have("python3") {
        return;
    }
    let dir = tmp();
    let sub = dir.path().join("work");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        dir.path().join("show.py"),
        "import os, sys\nprint(sys.argv[1:])\nprint(os path)\n"
            .replace("os path", "os.path.basename(os.getcwd())"),
    )
    .unwrap();
    let ran = one(
        "RunPythonFileNode",
        json!({"file_path": "show.py", "args": ["a b", "ç"], "working_dir": "work"}),
        dir.path(),
    );
    ok(&ran);
    assert_eq!(ran.text("n", "stdout"), "['a b', 'ç']\nwork\n");
    assert_eq!(ran.out("n", "return_code"), Value::Int(0));
    assert_eq!(ran.out("n", "success"), Value::Bool(true));
    std::fs::write(
        dir.path().join("fail.py"),
        "import sys\nsys.stderr.write('bad\\n')\nsys.exit(4)\n",
    )
    .unwrap();
    let ran = one(
        "RunPythonFileNode",
        json!({"file_path": "fail.py", "args": "--x 'y z'"}),
        dir.path(),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "return_code"), Value::Int(4));
    assert_eq!(ran.out("n", "success"), Value::Bool(false));
    assert_eq!(ran.text("n", "stderr"), "bad\n");
    let ran = one(
        "RunPythonFileNode",
        json!({"file_path": "missing.py"}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "FileNotFoundError");
}

// ---------------------------------------------------------------- JavaScript

#[test]
fn javascript_gets_input_data_and_returns_stripped_stdout() {
    if !have("node") {
        return;
    }
    let dir = tmp();
    let ran = one(
        "RunJavaScriptNode",
        json!({"code": "const path = require('path');\nconsole.log(inputData.a + inputData.list.length, path.basename('/x/ü.txt'), '✓');",
               "input_data": {"a": 40, "list": [1, 2]}}),
        dir.path(),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::str("42 ü.txt ✓"));
    assert_eq!(ran.out("n", "success"), Value::Bool(true));
    let ran = one(
        "RunJavaScriptNode",
        json!({"code": "console.log('before');\nundefinedThing();"}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "RuntimeError");
    assert_eq!(
        ran.error(),
        "n (RunJavaScriptNode): the JavaScript exited with code 1: ReferenceError: undefinedThing is not defined"
    );
}

#[test]
fn javascript_big_input_travels_on_stdin() {
    if !have("node") {
        return;
    }
    let dir = tmp();
    let mut inputs = Dict::new();
    inputs.insert("big".into(), Value::str("x".repeat(6 * 1024 * 1024)));
    let ran = run_inputs(
        &[(
            "n",
            "RunJavaScriptNode",
            json!({"code": "console.log(inputData.length)", "input_data": "{{big}}"}),
        )],
        inputs,
        &opts_in(dir.path()),
        &CancelToken::new(),
    );
    ok(&ran);
    assert_eq!(ran.out("n", "result"), Value::str("6291456"));
}

// ---------------------------------------------------------------- batch

#[test]
fn batch_script_reports_output_and_exit_code() {
    let dir = tmp();
    let ran = one(
        "RunBatchScriptNode",
        json!({"script": "echo Hello\necho 'ünï' >&2\npwd | sed 's#.*/##'\nexit 3"}),
        dir.path(),
    );
    ok(&ran);
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(ran.text("n", "stdout"), format!("Hello\n{name}\n"));
    assert_eq!(ran.text("n", "stderr"), "ünï\n");
    assert_eq!(ran.out("n", "return_code"), Value::Int(3));
    assert_eq!(ran.out("n", "success"), Value::Bool(false));
}

#[test]
fn batch_retry_on_nonzero_fails_and_is_retried() {
    let dir = tmp();
    let ran = one(
        "RunBatchScriptNode",
        json!({"script": "echo run >> attempts.txt\nexit 2", "retry_on_nonzero": true,
               "retry_count": 2, "retry_delay": 0}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "RuntimeError");
    assert_eq!(
        ran.error(),
        "n (RunBatchScriptNode): the script exited with code 2 (retry_on_nonzero is set)"
    );
    let attempts = std::fs::read_to_string(dir.path().join("attempts.txt")).unwrap();
    assert_eq!(attempts.lines().count(), 3, "one run and two retries");
}

#[test]
fn batch_timeout_kills_the_tree() {
    let dir = tmp();
    let ran = one(
        "RunBatchScriptNode",
        json!({"script": "sleep 60 &\necho $! > grandchild.pid\nwait", "timeout": 1}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "TimeoutError", "{}", ran.error());
    let pid = grandchild_pid(dir.path());
    assert!(
        wait_until(Duration::from_secs(5), || !alive(pid)),
        "grandchild {pid} survived the timeout"
    );
}

// ---------------------------------------------------------------- PowerShell

#[test]
fn powershell_refuses_blocked_commands_and_names_a_missing_interpreter() {
    let dir = tmp();
    let ran = one(
        "RunPowerShellNode",
        json!({"script": "Get-ChildItem | Remove-Item -Recurse"}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "SecurityError");
    assert!(ran.error().contains("'Remove-Item'"), "{}", ran.error());
    let ran = one(
        "RunPowerShellNode",
        json!({"script": "Write-Output 'hi'", "execution_policy": "Sometimes"}),
        dir.path(),
    );
    assert_eq!(error_type(&ran), "ValueError");
    if have("pwsh") {
        let ran = one(
            "RunPowerShellNode",
            json!({"script": "Write-Output 'hé'"}),
            dir.path(),
        );
        ok(&ran);
        assert_eq!(ran.text("n", "stdout"), "hé\n");
    } else {
        let ran = one(
            "RunPowerShellNode",
            json!({"script": "Write-Output 'hi'"}),
            dir.path(),
        );
        assert_eq!(
            ran.error(),
            "n (RunPowerShellNode): PowerShell not found (tried powershell.exe, pwsh); install it (it must be on PATH)"
        );
    }
}

// ---------------------------------------------------------------- processes, the real binary

/// The real robot refuses to kill itself (by name) and its parent (this test, by pid), names
/// the reason, and lives on to report the failure; `nodes` lists the new types.
#[test]
fn the_robot_binary_refuses_to_kill_itself_or_its_parent() {
    let dir = tmp();
    let robot = env!("CARGO_BIN_EXE_casare-robot");
    let name = Path::new(robot)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let run = |target: &str| {
        let wf = dir.path().join("kill.json");
        let doc = support::chain(&[
            (
                "kill",
                "ProcessKillNode",
                json!({"pid_or_name": target, "force": true}),
            ),
            ("after", "LogNode", json!({"message": "still here"})),
        ]);
        std::fs::write(&wf, doc.to_string()).unwrap();
        let out = std::process::Command::new(robot)
            .args(["run", wf.to_str().unwrap(), "--json"])
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };
    let (code, report) = run(&name);
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["failed_node"], "kill");
    let error = report["error"].to_string();
    assert!(
        error.contains(&format!(
            "({name}): it is the robot itself; nothing was killed"
        )),
        "{error}"
    );
    let (code, report) = run(&std::process::id().to_string());
    assert_eq!(code, Some(1), "{report}");
    let error = report["error"].to_string();
    assert!(
        error.contains("it is an ancestor of the robot (1 level(s) up its parent chain)"),
        "{error}"
    );

    let out = std::process::Command::new(robot)
        .args(["nodes", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["node_type"].as_str())
        .collect();
    for t in [
        "EvalExpressionNode",
        "RunPythonScriptNode",
        "RunPythonFileNode",
        "RunJavaScriptNode",
        "RunBatchScriptNode",
        "RunPowerShellNode",
        "ProcessListNode",
        "ProcessKillNode",
        "BeepNode",
    ] {
        assert!(types.contains(&t), "{t} missing from `nodes`");
    }
}

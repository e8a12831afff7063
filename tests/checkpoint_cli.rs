//! `run --job-id` and `checkpoints` through the real binary: resume after kill -9, a changed
//! workflow starts over, a read-only or full data dir degrades to a run without checkpoints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_casare-robot"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", data_dir)
        .env("CASARE_DATA_DIR", data_dir.join("data"))
        .env("CASARE_LOG_DIR", data_dir.join("logs"))
        .current_dir(data_dir)
        .stdin(Stdio::null());
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A loop of `n` iterations, each incrementing `count` and waiting `wait` seconds.
fn loop_workflow(dir: &Path, n: u32, wait: f64, name: &str) -> PathBuf {
    let wf = serde_json::json!({
        "metadata": {"name": name},
        "nodes": {
            "loop": {"node_id": "loop", "node_type": "ForLoopStartNode", "config": {"mode": "range", "end": n}},
            "inc": {"node_id": "inc", "node_type": "IncrementVariableNode", "config": {"variable_name": "count"}},
            "wait": {"node_id": "wait", "node_type": "WaitNode", "config": {"duration": wait}},
            "end": {"node_id": "end", "node_type": "ForLoopEndNode", "config": {}},
            "done": {"node_id": "done", "node_type": "SetVariableNode", "config": {"variable_name": "done", "value": "{{count}}"}}
        },
        "connections": [
            {"source_node": "loop", "source_port": "body", "target_node": "inc", "target_port": "exec_in"},
            {"source_node": "inc", "source_port": "exec_out", "target_node": "wait", "target_port": "exec_in"},
            {"source_node": "wait", "source_port": "exec_out", "target_node": "end", "target_port": "exec_in"},
            {"source_node": "loop", "source_port": "completed", "target_node": "done", "target_port": "exec_in"}
        ]
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, wf.to_string()).unwrap();
    path
}

fn run_json(cmd: &mut Command) -> (Output, serde_json::Value) {
    let out = cmd.output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, v)
}

#[test]
fn a_killed_run_resumes_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let wf = loop_workflow(dir.path(), 40, 0.01, "loop");
    let mut child = bin(dir.path())
        .args(["run", wf.to_str().unwrap(), "--job-id", "j-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it once it is well into the loop (a node line for the 15th wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut waits = 0;
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("wait (WaitNode)") {
            waits += 1;
            if waits == 15 {
                break;
            }
        }
        assert!(Instant::now() < deadline);
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let list = bin(dir.path())
        .args(["checkpoints", "list", "--json"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["job_id"], "j-1");
    assert_eq!(rows[0]["status"], "running");

    let (out, v) = run_json(bin(dir.path()).args([
        "run",
        wf.to_str().unwrap(),
        "--job-id",
        "j-1",
        "--json",
        "--quiet",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("resuming job j-1 from its checkpoint"),
        "{stderr}"
    );
    assert_eq!(v["outputs"]["count"], 40.0);
    assert_eq!(v["outputs"]["done"], 40.0);
    assert_eq!(v["recovered"], true);
    // Completed: the checkpoint is gone; `show` prints the recorded result instead.
    let show = bin(dir.path())
        .args(["checkpoints", "show", "j-1"])
        .output()
        .unwrap();
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["state"], "finished", "{shown}");
    assert_eq!(
        shown.get("last_completed_node"),
        None,
        "no checkpoint: {shown}"
    );
    assert_eq!(
        shown["recorded_report"]["result"]["outputs"]["count"], 40.0,
        "{shown}"
    );
}

#[test]
fn a_changed_workflow_starts_over_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wf = loop_workflow(dir.path(), 5, 0.0, "v1");
    // Leave a checkpoint behind: time out during the run.
    let slow = loop_workflow(dir.path(), 5, 10.0, "v1");
    let out = bin(dir.path())
        .args([
            "run",
            slow.to_str().unwrap(),
            "--job-id",
            "j",
            "--timeout",
            "0.3",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("keeps its checkpoint"));
    let show = bin(dir.path())
        .args(["checkpoints", "show", "j"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "cancelled");
    assert_eq!(v["variables"]["count"], "1.0");

    let changed = loop_workflow(dir.path(), 6, 0.0, "v1");
    assert_eq!(changed, wf);
    let (out, v) = run_json(bin(dir.path()).args([
        "run",
        changed.to_str().unwrap(),
        "--job-id",
        "j",
        "--json",
        "--quiet",
    ]));
    assert_eq!(out.status.code(), Some(0));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "job j starts from the beginning: the workflow changed since the checkpoint was saved"
        ),
        "{stderr}"
    );
    assert_eq!(v["outputs"]["count"], 6.0);
    assert_eq!(v["recovered"], false);
}

#[test]
fn checkpoints_clear_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let slow = loop_workflow(dir.path(), 3, 10.0, "s");
    let out = bin(dir.path())
        .args([
            "run",
            slow.to_str().unwrap(),
            "--job-id",
            "c1",
            "--timeout",
            "0.2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let out = bin(dir.path())
        .args(["checkpoints", "list"])
        .output()
        .unwrap();
    assert!(text(&out.stdout).contains("c1"), "{}", text(&out.stdout));
    let out = bin(dir.path())
        .args(["checkpoints", "clear", "c1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), "cleared the checkpoint of job c1");
    let out = bin(dir.path())
        .args(["checkpoints", "clear", "c1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no checkpoint for job c1"));
    let out = bin(dir.path())
        .args(["run", slow.to_str().unwrap(), "--job-id", ""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unusable_data_dir_runs_without_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let wf = loop_workflow(dir.path(), 3, 0.0, "w");
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let out = bin(dir.path())
        .env("CASARE_DATA_DIR", blocker.join("data"))
        .args(["run", wf.to_str().unwrap(), "--job-id", "r"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: checkpoints unavailable (cannot open the store at"),
        "{stderr}"
    );
}

#[test]
fn a_damaged_store_file_is_set_aside_and_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let wf = loop_workflow(dir.path(), 3, 0.0, "d");
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/casare-robot.db"), vec![0x5a; 8192]).unwrap();
    for _ in 0..2 {
        let out = bin(dir.path())
            .args(["run", wf.to_str().unwrap(), "--job-id", "x", "--quiet"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let aside = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .count();
    assert_eq!(aside, 1);
}

#[cfg(unix)]
#[test]
fn a_failing_disk_stops_checkpoints_not_the_run() {
    // RLIMIT_FSIZE makes writes past the limit fail with EFBIG (SIGXFSZ is ignored through exec):
    // the store's writes start failing mid-run, as on a full disk (ENOSPC is reported as
    // "the disk is full"; EFBIG as a disk I/O error).
    let dir = tempfile::tempdir().unwrap();
    let wf = loop_workflow(dir.path(), 3000, 0.0, "full");
    let script = format!(
        "trap '' XFSZ; ulimit -f 400; exec '{}' run '{}' --job-id full --quiet --json",
        env!("CARGO_BIN_EXE_casare-robot"),
        wf.display()
    );
    let mut cmd = Command::new("sh");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("CASARE_DATA_DIR", dir.path().join("data"))
        .env("CASARE_LOG_DIR", dir.path().join("logs"))
        .current_dir(dir.path())
        .args(["-c", &script]);
    let (out, v) = run_json(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(v["outputs"]["count"], 3000.0);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("checkpoints for job full stopped"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the run continues without them"),
        "{stderr}"
    );
}

#[test]
fn a_completed_job_id_is_answered_from_its_record_not_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let wf = loop_workflow(dir.path(), 4, 0.0, "once");
    let (out, first) = run_json(bin(dir.path()).args([
        "run",
        wf.to_str().unwrap(),
        "--job-id",
        "once",
        "--json",
        "--quiet",
    ]));
    assert_eq!(out.status.code(), Some(0));
    let (out, again) = run_json(bin(dir.path()).args([
        "run",
        wf.to_str().unwrap(),
        "--job-id",
        "once",
        "--json",
        "--quiet",
    ]));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("job once already completed at"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(again, first, "the recorded result is printed as it was");
    // Clearing forgets the record: the job runs again.
    let out = bin(dir.path())
        .args(["checkpoints", "clear", "once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = bin(dir.path())
        .args(["run", wf.to_str().unwrap(), "--job-id", "once", "--quiet"])
        .output()
        .unwrap();
    assert!(!text(&out.stderr).contains("already completed"));
}

#[test]
fn a_completed_job_id_rerun_with_other_inputs_says_they_differ() {
    let dir = tempfile::tempdir().unwrap();
    let wf = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello.json");
    let wf = wf.to_str().unwrap();
    let run = |name: &str| {
        let var = format!("name={name}");
        run_json(bin(dir.path()).args([
            "run", wf, "--job-id", "greet", "--json", "--quiet", "--var", &var,
        ]))
    };
    let (out, first) = run("Ann");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(first["outputs"]["greeting"], "Hello, Ann!");
    // Same inputs: the plain note, no warning.
    let (out, _) = run("Ann");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("job greet already completed at"),
        "{stderr}"
    );
    assert!(!stderr.contains("other inputs"), "{stderr}");
    // Other inputs: said, with how to run it afresh; the printed result is the recorded one,
    // exactly as it was printed the first time (nothing internal added).
    let (out, again) = run("Bob");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already completed at") && stderr.contains("with other inputs"),
        "{stderr}"
    );
    assert!(
        stderr.contains("use another --job-id")
            && stderr.contains("casare-robot checkpoints clear greet"),
        "{stderr}"
    );
    assert_eq!(again, first);
}

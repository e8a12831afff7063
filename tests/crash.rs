//! Crash-resume with the real binary: a loop appends one line per iteration to a file
//! and waits a little; the robot is killed with SIGKILL at seeded random moments and started again
//! with the same job id until the job completes. The final variables must equal an uninterrupted
//! run's, and the file must show every iteration in order, with at most one repeated line per
//! kill (the node that was in flight).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

const ITERATIONS: usize = 25;
const TRIALS: u64 = 20;

fn bin(work: &Path) -> Command {
    support::robot::command_in(work)
}

fn workflow(work: &Path) -> PathBuf {
    let wf = serde_json::json!({
        "metadata": {"name": "append loop"},
        "nodes": {
            "init": {"node_id": "init", "node_type": "SetVariableNode", "config": {"variable_name": "lines", "value": []}},
            "loop": {"node_id": "loop", "node_type": "ForLoopStartNode", "config": {"mode": "range", "end": ITERATIONS}},
            "append": {"node_id": "append", "node_type": "AppendFileNode",
                       "config": {"file_path": "out/log.txt", "content": "iteration {{item}}\n"}},
            "remember": {"node_id": "remember", "node_type": "ListAppendNode", "config": {"list": "{{lines}}", "item": "{{item}}"}},
            "store": {"node_id": "store", "node_type": "SetVariableNode", "config": {"variable_name": "lines", "value": "{{remember.result}}"}},
            "wait": {"node_id": "wait", "node_type": "WaitNode", "config": {"duration": 0.01}},
            "end": {"node_id": "end", "node_type": "ForLoopEndNode", "config": {}},
            "done": {"node_id": "done", "node_type": "SetVariableNode", "config": {"variable_name": "done", "value": true}}
        },
        "connections": [
            {"source_node": "init", "source_port": "exec_out", "target_node": "loop", "target_port": "exec_in"},
            {"source_node": "loop", "source_port": "body", "target_node": "append", "target_port": "exec_in"},
            {"source_node": "append", "source_port": "exec_out", "target_node": "remember", "target_port": "exec_in"},
            {"source_node": "remember", "source_port": "exec_out", "target_node": "store", "target_port": "exec_in"},
            {"source_node": "store", "source_port": "exec_out", "target_node": "wait", "target_port": "exec_in"},
            {"source_node": "wait", "source_port": "exec_out", "target_node": "end", "target_port": "exec_in"},
            {"source_node": "loop", "source_port": "completed", "target_node": "done", "target_port": "exec_in"}
        ]
    });
    let path = work.join("append.json");
    std::fs::write(&path, wf.to_string()).unwrap();
    path
}

/// Run to completion (no kills); returns the `--json` outputs.
fn run_once(work: &Path, wf: &Path, job: &str) -> serde_json::Value {
    let out = bin(work)
        .args([
            "run",
            wf.to_str().unwrap(),
            "--job-id",
            job,
            "--json",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["outputs"].clone()
}

/// Check the log: every iteration, in order; repeats only of the line just before, at most `kills`.
fn check_log(log: &str, kills: usize, trial: u64) {
    let lines: Vec<&str> = log.lines().collect();
    let mut expected = 0usize;
    let mut repeats = 0usize;
    for line in &lines {
        let n: usize = line
            .strip_prefix("iteration ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("trial {trial}: unexpected line {line:?} in {lines:?}"));
        if n == expected {
            expected += 1;
        } else if expected > 0 && n == expected - 1 {
            repeats += 1;
        } else {
            panic!("trial {trial}: line {line:?} out of order (expected iteration {expected}): {lines:?}");
        }
    }
    assert_eq!(
        expected, ITERATIONS,
        "trial {trial}: not every iteration ran: {lines:?}"
    );
    assert!(
        repeats <= kills,
        "trial {trial}: {repeats} repeated lines for {kills} kills: {lines:?}"
    );
}

#[test]
fn killed_at_random_moments_the_job_finishes_once_with_the_same_result() {
    let reference_dir = tempfile::tempdir().unwrap();
    let wf = workflow(reference_dir.path());
    let expected = run_once(reference_dir.path(), &wf, "reference");
    assert_eq!(expected["done"], true);
    assert_eq!(expected["lines"].as_array().unwrap().len(), ITERATIONS);
    check_log(
        &std::fs::read_to_string(reference_dir.path().join("out/log.txt")).unwrap(),
        0,
        0,
    );

    let mut rng = fastrand::Rng::with_seed(0xC4_5A_4E);
    let mut total_kills = 0;
    for trial in 1..=TRIALS {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let wf = workflow(work);
        let mut kills = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let outputs = loop {
            assert!(
                Instant::now() < deadline,
                "trial {trial}: the job did not finish"
            );
            let mut child = bin(work)
                .args([
                    "run",
                    wf.to_str().unwrap(),
                    "--job-id",
                    "crash-job",
                    "--json",
                    "--quiet",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // The kill moment: random within roughly the run's length (~25 x 10 ms plus start-up).
            // Early attempts are killed; after a few kills the run is left to finish.
            let kill_after = Duration::from_millis(rng.u64(5..260));
            let killed = if kills < 4 {
                let started = Instant::now();
                loop {
                    if child.try_wait().unwrap().is_some() {
                        break false;
                    }
                    if started.elapsed() >= kill_after {
                        child.kill().unwrap(); // SIGKILL
                        break true;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            } else {
                false
            };
            let out = child.wait_with_output().unwrap();
            if killed {
                kills += 1;
                continue;
            }
            assert_eq!(out.status.code(), Some(0), "trial {trial}");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            break v["outputs"].clone();
        };
        total_kills += kills;
        assert_eq!(
            outputs, expected,
            "trial {trial}: final variables differ after {kills} kills"
        );
        let log = std::fs::read_to_string(work.join("out/log.txt")).unwrap();
        check_log(&log, kills, trial);
    }
    assert!(
        total_kills >= TRIALS as usize,
        "only {total_kills} kills happened in {TRIALS} trials"
    );
}

/// A robot killed with SIGKILL takes the command it was running with it (Linux: the command
/// gets PR_SET_PDEATHSIG; Windows: a kill-on-close job object, checked under Wine).
#[cfg(target_os = "linux")]
#[test]
fn a_killed_robot_takes_its_running_command_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let pidfile = work.join("child.pid");
    let wf = serde_json::json!({
        "nodes": {
            "cmd": {"node_id": "cmd", "node_type": "RunCommandNode", "config": {
                "command": "sh",
                "args": ["-c", format!("echo $$ > {}; exec sleep 60", pidfile.display())],
                "timeout": 120
            }}
        },
        "connections": []
    });
    let path = work.join("wf.json");
    std::fs::write(&path, wf.to_string()).unwrap();
    let mut robot = bin(work)
        .args(["run", path.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    };
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    };
    assert!(alive(pid));
    robot.kill().unwrap();
    robot.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the command (pid {pid}) outlived the killed robot"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Fork whose branch_1 appends a line to `out/b1.txt` and finishes at once, while branch_2
/// appends to `out/b2.txt`, waits 0.5 s (by then branch_1's end is checkpointed: the run's
/// thread handles branch events in order), reads its next wait from `dur.txt` and waits that
/// long.
fn fork_workflow(work: &Path) -> PathBuf {
    let node = |id: &str, ty: &str, config: serde_json::Value| {
        (
            id.to_string(),
            serde_json::json!({"node_id": id, "node_type": ty, "config": config}),
        )
    };
    let nodes: serde_json::Map<String, serde_json::Value> = [
        node("f", "ForkNode", serde_json::json!({})),
        node(
            "a1",
            "AppendFileNode",
            serde_json::json!({"file_path": "out/b1.txt", "content": "branch 1\n"}),
        ),
        node(
            "a2",
            "SetVariableNode",
            serde_json::json!({"variable_name": "one", "value": "done"}),
        ),
        node(
            "b1",
            "AppendFileNode",
            serde_json::json!({"file_path": "out/b2.txt", "content": "branch 2\n"}),
        ),
        node("b2", "WaitNode", serde_json::json!({"duration": 0.5})),
        node(
            "bread",
            "ReadFileNode",
            serde_json::json!({"file_path": "dur.txt"}),
        ),
        node(
            "bwait",
            "WaitNode",
            serde_json::json!({"duration": "{{bread.content}}"}),
        ),
        node(
            "b3",
            "SetVariableNode",
            serde_json::json!({"variable_name": "two", "value": "done"}),
        ),
        node("j", "JoinNode", serde_json::json!({})),
        node(
            "done",
            "SetVariableNode",
            serde_json::json!({"variable_name": "finished", "value": "{{j.branch_count}}"}),
        ),
    ]
    .into_iter()
    .collect();
    let edge = |s: &str, p: &str, t: &str| serde_json::json!({"source_node": s, "source_port": p, "target_node": t, "target_port": "exec_in"});
    let wf = serde_json::json!({
        "metadata": {"name": "fork crash"},
        "nodes": nodes,
        "connections": [
            edge("f", "branch_1", "a1"), edge("a1", "exec_out", "a2"), edge("a2", "exec_out", "j"),
            edge("f", "branch_2", "b1"), edge("b1", "exec_out", "b2"), edge("b2", "exec_out", "bread"),
            edge("bread", "exec_out", "bwait"), edge("bwait", "exec_out", "b3"), edge("b3", "exec_out", "j"),
            edge("j", "exec_out", "done")
        ]
    });
    let path = work.join("fork.json");
    std::fs::write(&path, wf.to_string()).unwrap();
    path
}

#[test]
fn killed_inside_a_fork_branch_only_the_unfinished_branch_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let wf = fork_workflow(work);
    std::fs::write(work.join("dur.txt"), "60").unwrap();
    let mut child = bin(work)
        .args(["run", wf.to_str().unwrap(), "--job-id", "fork-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once branch_2 is in its long wait (the line of the node before it).
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("bread (ReadFileNode)") {
                let _ = tx.send(());
            }
        }
    });
    let seen = rx.recv_timeout(Duration::from_secs(30));
    child.kill().unwrap();
    child.wait().unwrap();
    seen.expect("branch_2 never reached its long wait");
    let lines = |name: &str| {
        std::fs::read_to_string(work.join("out").join(name))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!((lines("b1.txt"), lines("b2.txt")), (1, 1));

    std::fs::write(work.join("dur.txt"), "0").unwrap();
    let out = run_once(work, &wf, "fork-1");
    assert_eq!(out["finished"], 2, "{out}");
    assert_eq!(out["branch_1_one"], "done", "{out}");
    assert_eq!(out["branch_2_two"], "done", "{out}");
    // The finished branch was not run again; the unfinished one ran again from its start.
    assert_eq!((lines("b1.txt"), lines("b2.txt")), (1, 2));

    // The job completed once: running the id again answers from its record.
    let again = run_once(work, &wf, "fork-1");
    assert_eq!(again, out);
    assert_eq!((lines("b1.txt"), lines("b2.txt")), (1, 2));
}

//! Durable dispatch: 1,000 trivial jobs through REST polling and through WebSocket
//! push with all bookkeeping durable (job recorded before it is acknowledged, result settled
//! with its outbox entry in one FULL transaction, delivery acknowledged), against the fake
//! orchestrators on loopback and the release binary.
//!
//! `make bench` (or `cargo bench --bench durable`). Reported per link:
//! - jobs per second with `max_concurrent_jobs` = 2;
//! - FULL (fsync'd) commits per job, from the store's own counter (heartbeat metrics);
//! - fsync/fdatasync system calls per job, counted by `strace -f -c` in a second run when strace
//!   is installed (the run under strace is slower; its speed is not reported).
//!
//! Under `cargo test --all-targets` (no `--bench`) a 20-job smoke run checks that it works.

#[path = "../tests/support/mod.rs"]
mod support;

use casare_robot::link::protocol::Dialect;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::rest::FakeRest;
use support::FakeOrchestrator;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn trivial() -> Value {
    json!({
        "metadata": {"name": "trivial"},
        "nodes": {
            "set": {"node_id": "set", "node_type": "SetVariableNode", "config": {"variable_name": "x", "value": "{{n}}"}}
        },
        "connections": []
    })
}

struct Daemon {
    child: Child,
    strace_out: Option<std::path::PathBuf>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(link: Value, strace: bool) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = json!({
            "robot_id": "bench-robot",
            "data_dir": dir.path().join("data"),
            "log_dir": dir.path().join("logs"),
            "max_concurrent_jobs": 2,
            "heartbeat_interval": 1,
            "log_level": "warn",
            "poll_interval": 0.1,
            "poll_max_interval": 0.2,
        });
        for (k, v) in link.as_object().cloned().unwrap_or_default() {
            config[k] = v;
        }
        let path = dir.path().join("robot_config.json");
        std::fs::write(&path, config.to_string()).expect("config");
        let bin = env!("CARGO_BIN_EXE_casare-robot");
        let strace_out = strace.then(|| dir.path().join("strace.txt"));
        let mut cmd = match &strace_out {
            Some(out) => {
                let mut c = Command::new("strace");
                c.args(["-f", "-c", "-e", "trace=fsync,fdatasync", "-o"])
                    .arg(out)
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["start", "--config", path.to_str().expect("utf-8 path")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the daemon starts");
        Daemon {
            child,
            strace_out,
            _dir: dir,
        }
    }

    /// Stop gracefully (SIGINT to the robot) and return the fsync count when traced.
    fn stop(mut self) -> Option<u64> {
        let pid = self.robot_pid();
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.strace_out.as_deref().and_then(count_fsyncs)
    }

    /// The robot's pid (strace's child when traced).
    fn robot_pid(&self) -> u32 {
        let pid = self.child.id();
        if self.strace_out.is_none() {
            return pid;
        }
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(pid)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the `calls` column of strace's summary for fsync and fdatasync.
fn count_fsyncs(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut total = 0;
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols
            .last()
            .is_some_and(|c| *c == "fsync" || *c == "fdatasync")
            && cols.len() >= 5
        {
            total += cols[3].parse::<u64>().ok()?;
        }
    }
    Some(total)
}

fn strace_available() -> bool {
    cfg!(target_os = "linux")
        && Command::new("strace")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// WebSocket: two jobs in flight, the next assigned as one completes. Returns (seconds, FULL
/// commits per job).
fn ws_run(n: usize, strace: bool) -> (f64, f64, Option<u64>) {
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let daemon = Daemon::start(json!({"orchestrator_url": fake.url()}), strace);
    fake.wait_for("register", Duration::from_secs(30))
        .expect("registered");
    let wf = trivial();
    let started = Instant::now();
    let mut next = 0;
    while next < 2 {
        fake.assign_job(&format!("w-{next}"), wf.clone(), json!({"n": next}), None);
        next += 1;
    }
    let mut done = 0;
    while done < n {
        fake.wait_until(Duration::from_secs(60), |m| m["type"] == "job_complete")
            .expect("a job completes");
        done += 1;
        if next < n {
            fake.assign_job(&format!("w-{next}"), wf.clone(), json!({"n": next}), None);
            next += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let hb = fake
        .wait_until(Duration::from_secs(10), |m| {
            m["type"] == "heartbeat"
                && m["metrics"]["jobs_done"] == n
                && m["metrics"]["outbox"] == 0
        })
        .expect("a heartbeat after the last job, outbox delivered");
    let commits = hb["metrics"]["store"]["full_commits"]
        .as_f64()
        .unwrap_or(0.0);
    let fsyncs = daemon.stop();
    (secs, commits / n as f64, fsyncs)
}

/// REST: all jobs queued first; the robot claims as slots free up.
fn rest_run(n: usize, strace: bool) -> (f64, f64, Option<u64>) {
    let fake = FakeRest::start();
    let wf = trivial();
    for i in 0..n {
        fake.submit(&format!("r-{i}"), wf.clone(), json!({"n": i}));
    }
    let started = Instant::now();
    let daemon = Daemon::start(json!({"api_url": fake.url()}), strace);
    assert!(
        fake.wait_until(Duration::from_secs(600), |f| {
            (0..n).all(|i| f.state(&format!("r-{i}")) == Some("completed"))
        }),
        "all REST jobs complete"
    );
    let secs = started.elapsed().as_secs_f64();
    // The store counter travels in the robot's REST heartbeats.
    std::thread::sleep(Duration::from_millis(1200));
    let commits = fake
        .bodies("POST", "/api/v1/robots/bench-robot/heartbeat")
        .last()
        .and_then(|b| b["store"]["full_commits"].as_f64())
        .unwrap_or(0.0);
    let fsyncs = daemon.stop();
    (secs, commits / n as f64, fsyncs)
}

fn main() {
    let full = benchmarking();
    let n = if full { 1000 } else { 20 };
    let strace = full && strace_available();
    for (name, run) in [
        (
            "websocket push",
            ws_run as fn(usize, bool) -> (f64, f64, Option<u64>),
        ),
        ("REST polling", rest_run),
    ] {
        let (secs, commits, _) = run(n, false);
        eprintln!(
            "{name}: {n} jobs in {secs:.2} s = {:.0} jobs/s; {commits:.2} FULL commits per job",
            n as f64 / secs
        );
        if strace {
            let (_, _, fsyncs) = run(n, true);
            if let Some(f) = fsyncs {
                eprintln!(
                    "{name}: {f} fsync/fdatasync calls for {n} jobs = {:.2} per job (strace -f -c, whole process life)",
                    f as f64 / n as f64
                );
            }
        }
    }
}

//! End-to-end dispatch through the real daemon over loopback: the release binary
//! `casare-robot start` against the fake orchestrator stand-in.
//!
//! `make bench` (or `cargo bench --bench dispatch`). Reported:
//! - criterion `dispatch/assign_to_complete`: job_assign sent → job_complete received, small
//!   workflow (target: median <= 5 ms; upstream Python: 43 ms);
//! - launch → registered (target <= 100 ms), idle RSS (<= 10 MB) and idle CPU (~0) after a few
//!   seconds idle, printed once;
//! - 1,000 small jobs with `max_concurrent_jobs` = 2 (two in flight, like an orchestrator that
//!   respects capacity): jobs per second, printed once.

#[path = "../tests/support/mod.rs"]
mod support;

use casare_robot::link::protocol::Dialect;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::FakeOrchestrator;

struct Robot {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Robot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_robot(fake: &FakeOrchestrator, max_jobs: u32) -> (Robot, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = json!({
        "robot_id": "bench-robot",
        "orchestrator_url": fake.url(),
        "data_dir": dir.path().join("data"),
        "log_dir": dir.path().join("logs"),
        "max_concurrent_jobs": max_jobs,
        "heartbeat_interval": 30,
        "log_level": "warn",
    });
    let path = dir.path().join("robot_config.json");
    std::fs::write(&path, config.to_string()).expect("config");
    let launched = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_casare-robot"))
        .args(["start", "--config", path.to_str().expect("utf-8 path")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    fake.wait_for("register", Duration::from_secs(20))
        .expect("the daemon registers");
    let took = launched.elapsed();
    (Robot { child, _dir: dir }, took)
}

fn small_workflow() -> Value {
    json!({
        "metadata": {"name": "small"},
        "nodes": {
            "set": {"node_id": "set", "node_type": "SetVariableNode", "config": {"variable_name": "x", "value": "{{n}}"}},
            "inc": {"node_id": "inc", "node_type": "IncrementVariableNode", "config": {"variable_name": "x"}},
            "done": {"node_id": "done", "node_type": "SetVariableNode", "config": {"variable_name": "result", "value": "x={{x}}"}}
        },
        "connections": [
            {"source_node": "set", "source_port": "exec_out", "target_node": "inc", "target_port": "exec_in"},
            {"source_node": "inc", "source_port": "exec_out", "target_node": "done", "target_port": "exec_in"}
        ]
    })
}

fn complete(fake: &FakeOrchestrator, job_id: &str) {
    fake.wait_until(Duration::from_secs(20), |m| {
        m["type"] == "job_complete" && m["job_id"] == job_id
    })
    .unwrap_or_else(|| panic!("job {job_id} completed"));
}

#[cfg(target_os = "linux")]
fn proc_figures(pid: u32) -> (f64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = fields
        .get(11)
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
    (rss_kb / 1024.0, ticks)
}

/// True under `cargo bench`; `cargo test --all-targets` runs benches once without `--bench`, and
/// then only a small smoke version of the report runs (no idle measurement, 20 jobs).
fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn report_launch_idle_and_throughput() {
    let full = benchmarking();
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let mut launches = Vec::new();
    for _ in 0..if full { 5 } else { 1 } {
        let (robot, took) = start_robot(&fake, 2);
        launches.push(took);
        drop(robot);
    }
    launches.sort();
    eprintln!(
        "launch -> registered: median {:.1} ms (min {:.1}, max {:.1}) over {} launches",
        launches[launches.len() / 2].as_secs_f64() * 1000.0,
        launches[0].as_secs_f64() * 1000.0,
        launches[launches.len() - 1].as_secs_f64() * 1000.0,
        launches.len()
    );

    let (robot, _) = start_robot(&fake, 2);
    #[cfg(target_os = "linux")]
    if full {
        // After the register/heartbeat exchange the link counts as idle once 2 s pass quietly.
        std::thread::sleep(Duration::from_secs(3));
        let (_, t0) = proc_figures(robot.child.id());
        let idle = Duration::from_secs(5);
        std::thread::sleep(idle);
        let (rss, t1) = proc_figures(robot.child.id());
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc_sysconf_clk_tck() };
        let cpu = (t1.saturating_sub(t0)) as f64 / hz / idle.as_secs_f64() * 100.0;
        eprintln!(
            "idle daemon: RSS {rss:.1} MB, CPU {cpu:.2}% of one core over {} s",
            idle.as_secs()
        );
    }

    let n_jobs = if full { 1000 } else { 20 };
    let started = Instant::now();
    let mut next = 0;
    let mut done = 0;
    let wf = small_workflow();
    while next < 2 {
        fake.assign_job(&format!("t-{next}"), wf.clone(), json!({"n": next}), None);
        next += 1;
    }
    while done < n_jobs {
        let msg = fake
            .wait_until(Duration::from_secs(30), |m| m["type"] == "job_complete")
            .expect("a job completes");
        assert!(msg["job_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("t-")));
        done += 1;
        if next < n_jobs {
            fake.assign_job(&format!("t-{next}"), wf.clone(), json!({"n": next}), None);
            next += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{n_jobs} jobs with max_concurrent_jobs = 2: {secs:.2} s, {:.0} jobs/s",
        n_jobs as f64 / secs
    );
    drop(robot);
}

#[cfg(target_os = "linux")]
unsafe fn libc_sysconf_clk_tck() -> f64 {
    extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    // _SC_CLK_TCK is 2 on Linux.
    (sysconf(2).max(1)) as f64
}

fn bench_dispatch(c: &mut Criterion) {
    report_launch_idle_and_throughput();
    let fake = FakeOrchestrator::start(Dialect::Casare);
    let (_robot, _) = start_robot(&fake, 2);
    let wf = small_workflow();
    let mut i = 0u64;
    let mut group = c.benchmark_group("dispatch");
    group
        .sample_size(200)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("assign_to_complete", |b| {
        b.iter(|| {
            i += 1;
            let id = format!("b-{i}");
            fake.assign_job(&id, wf.clone(), json!({"n": i}), None);
            complete(&fake, &id);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_dispatch);
criterion_main!(benches);

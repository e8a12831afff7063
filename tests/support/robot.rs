//! The real robot binary in a subprocess, in its own home directory (config, data, logs), with
//! what crash tests need: kill -9, restart on the same data, Ctrl+C, and the combined output of
//! every run. Every wait has a deadline; dropping the handle kills the process.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The robot binary for a one-shot command (`run`, `validate`, `nodes`, ...), isolated from the
/// machine's robot_config.json and `CASARE_*` variables: an empty environment but `PATH`, with
/// `HOME` and the working directory in the temp dir.
pub fn isolated_command() -> Command {
    let bin = option_env!("CARGO_BIN_EXE_casare-robot").unwrap_or("casare-robot");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .current_dir(std::env::temp_dir());
    cmd
}

/// A robot process and its home.
pub struct Robot {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: PathBuf,
    runs: usize,
    memory_limit: Option<u64>,
}

impl Robot {
    /// Start `casare-robot start --foreground` with `config` over test defaults (robot id, data
    /// and log dirs in a fresh temp dir, 1 s heartbeats, fast reconnects).
    pub fn start(config: Value) -> Robot {
        Robot::start_with_memory_limit(config, None)
    }

    /// [`Robot::start`] with the address space of every run limited to `limit` bytes
    /// (`RLIMIT_AS`, Unix only; ignored elsewhere): allocations past it fail and abort the robot.
    pub fn start_with_memory_limit(config: Value, limit: Option<u64>) -> Robot {
        let dir = tempfile::tempdir().unwrap();
        let mut full = json!({
            "robot_id": "test-robot",
            "robot_name": "Test Robot",
            "data_dir": dir.path().join("data"),
            "log_dir": dir.path().join("logs"),
            "heartbeat_interval": 1,
            "max_concurrent_jobs": 1,
            "reconnect_delay": 0.1,
            "max_reconnect_delay": 1.0,
            "graceful_shutdown_seconds": 5,
            "cancel_grace_seconds": 1,
        });
        for (k, v) in config.as_object().cloned().unwrap_or_default() {
            full[k] = v;
        }
        let path = dir.path().join("robot_config.json");
        std::fs::write(&path, full.to_string()).unwrap();
        let mut robot = Robot {
            child: None,
            dir,
            config: path,
            runs: 0,
            memory_limit: limit,
        };
        robot.spawn();
        robot
    }

    /// Start the process again on the same home (after it exited or was killed).
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the robot is still running");
        self.runs += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("robot.out"))
            .unwrap();
        // option_env: this module is also compiled into the demo and the benches, which never
        // start a robot through it (outside integration tests, the binary is looked up in PATH).
        let bin = option_env!("CARGO_BIN_EXE_casare-robot").unwrap_or("casare-robot");
        let mut cmd = Command::new(bin);
        cmd.args([
            "start",
            "--foreground",
            "--config",
            self.config.to_str().unwrap(),
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", self.dir.path())
        .current_dir(self.dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        if let Some(limit) = self.memory_limit {
            limit_memory(&mut cmd, limit);
        }
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
    }

    /// SIGKILL (TerminateProcess on Windows) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the robot printed, over all runs.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("robot.out")).unwrap_or_default()
    }

    /// Wait until the robot's output contains `text`; panics with the output at the deadline.
    pub fn wait_for_output(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the robot never said {text:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait().unwrap() {
                    self.child = None;
                    return Some(status);
                }
            } else {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Ctrl+C.
    #[cfg(unix)]
    pub fn interrupt(&self) {
        self.signal("-INT");
    }

    /// Send a signal with `kill`.
    #[cfg(unix)]
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The home directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory (the store).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// How many times the process was started.
    pub fn runs(&self) -> usize {
        self.runs
    }
}

/// The binary for one-shot commands (`run`, `checkpoints`) with `work` as its home, data and
/// log directories and working directory, and nothing else from the environment.
pub fn command_in(work: &Path) -> Command {
    let bin = option_env!("CARGO_BIN_EXE_casare-robot").unwrap_or("casare-robot");
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work)
        .env("CASARE_DATA_DIR", work.join("data"))
        .env("CASARE_LOG_DIR", work.join("logs"))
        .current_dir(work)
        .stdin(Stdio::null());
    cmd
}

/// Limit the address space of the process `cmd` starts to `limit` bytes (`RLIMIT_AS`), with
/// glibc held to two malloc arenas so that the limit is reached by data, not by per-thread arena
/// reservations.
#[cfg(unix)]
pub fn limit_memory(cmd: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    cmd.env("MALLOC_ARENA_MAX", "2");
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// No address-space limit outside Unix.
#[cfg(not(unix))]
pub fn limit_memory(_cmd: &mut Command, _limit: u64) {}

impl Drop for Robot {
    fn drop(&mut self) {
        self.kill9();
    }
}

//! Helpers for tests that watch processes: bounded waits, liveness, and the pid a test command
//! leaves in `grandchild.pid` (to check that a killed tree took its grandchildren with it).
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Wait (bounded) until `cond` holds; returns whether it did.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    let mut step = Duration::from_millis(1);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(step);
        step = (step * 2).min(Duration::from_millis(20));
    }
    cond()
}

/// True while `pid` is a live (not zombie) process.
#[cfg(unix)]
pub fn alive(pid: i32) -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.trim_start().chars().next());
                !matches!(state, Some('Z') | Some('X') | None)
            }
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid, 0) == 0 }
    }
}

/// The pid a test command wrote to `grandchild.pid` in `dir` (waits, bounded, for the whole line).
pub fn grandchild_pid(dir: &Path) -> i32 {
    let file = dir.join("grandchild.pid");
    let mut pid = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            pid = std::fs::read_to_string(&file)
                .ok()
                .filter(|s| s.ends_with('\n'))
                .and_then(|s| s.trim().parse::<i32>().ok());
            pid.is_some()
        }),
        "the command never wrote {}",
        file.display()
    );
    pid.unwrap_or_default()
}

/// A thread that waits for the grandchild a test command records in `dir`, checks it runs,
/// cancels `token`, and returns the grandchild's pid (to check it died with the tree).
#[cfg(unix)]
pub fn cancel_once_grandchild_runs(
    dir: &Path,
    token: &casare_robot::engine::CancelToken,
) -> std::thread::JoinHandle<i32> {
    let other = token.clone();
    let watch = dir.to_path_buf();
    std::thread::spawn(move || {
        let pid = grandchild_pid(&watch);
        assert!(alive(pid), "the grandchild runs before the cancel");
        other.cancel("operator stopped the job");
        pid
    })
}

//! The robot's status snapshot: one value the agent keeps current (it alone writes it) and
//! others read: the `/health` endpoint, the tray, and `casare-robot status` (through the status
//! file `<data_dir>/status.json`, replaced atomically at most once a second and at exit).
//!
//! Secrets never enter it: it holds states, ids, counts, progress and error texts that were
//! already scrubbed; the status file is scrubbed again when written ([`crate::redact`]) and is
//! owner-only ([`crate::private_fs`]).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the status file in the data directory.
pub const STATUS_FILE: &str = "status.json";

/// One running job, as operators see it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    /// Job id.
    pub job_id: String,
    /// 0-100.
    pub progress: u8,
    /// The node that completed last.
    pub current_node: Option<String>,
    /// Seconds since it started.
    pub running_seconds: f64,
    /// Seconds since its last progress (a node completed).
    pub since_progress_seconds: f64,
    /// `running`, `cancelling` or `stopping`.
    pub state: String,
}

/// The orchestrator links.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    /// WebSocket link state (`connected`, `connecting`, `reconnecting`, `disconnected`,
    /// `unauthorized`); None without a WebSocket link.
    pub websocket: Option<String>,
    /// Circuit breaker state of the WebSocket link (`closed`, `open`, `half_open`).
    pub breaker: Option<String>,
    /// REST link: `reachable`, `unreachable`, `unauthorized` (the API key is refused) or
    /// `unknown`; None without REST.
    pub rest: Option<String>,
    /// The credentials were refused.
    pub unauthorized: bool,
    /// Seconds since every configured link went down (None while one is up).
    pub down_for_seconds: Option<f64>,
}

/// Everything `status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    /// Robot id.
    pub robot_id: String,
    /// Display name.
    pub robot_name: String,
    /// Robot version.
    pub version: String,
    /// Process id of the robot.
    pub pid: u32,
    /// `starting`, `idle`, `busy`, `paused`, `stopping` or `stopped`.
    pub state: String,
    /// Link states.
    pub connection: ConnectionStatus,
    /// Running jobs.
    pub jobs: Vec<JobStatus>,
    /// Jobs recorded and waiting for a worker (or for their lease to be confirmed).
    pub waiting_jobs: usize,
    /// Worker count.
    pub max_concurrent_jobs: usize,
    /// Outbox entries not yet delivered.
    pub outbox: usize,
    /// Control messages queued in memory while offline.
    pub queued_messages: usize,
    /// The store is durable (false: in-memory fallback).
    pub durable: bool,
    /// Damage found in the store file while this robot runs (moved aside; see the log).
    #[serde(default)]
    pub store_damage: Option<String>,
    /// The last error worth an operator's attention, with its time (RFC 3339).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<String>,
    /// Metrics: `summary` (jobs, success rate, durations, queues, resources), `node_stats` by
    /// node type, `top_errors`, `recent_jobs`.
    pub metrics: serde_json::Value,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// When this snapshot was taken (RFC 3339).
    pub updated_at: String,
    /// The log file.
    pub log_file: Option<PathBuf>,
    /// The configuration file, if one was read.
    pub config_file: Option<PathBuf>,
}

/// The snapshot shared between the agent (writer) and its readers.
pub type SharedStatus = Arc<parking_lot::RwLock<StatusSnapshot>>;

/// Write `snapshot` to `<data_dir>/status.json` atomically (temp file + rename).
pub fn write_status_file(data_dir: &Path, snapshot: &StatusSnapshot) -> std::io::Result<()> {
    let path = data_dir.join(STATUS_FILE);
    let tmp = data_dir.join(format!("{STATUS_FILE}.tmp"));
    let mut value = serde_json::to_value(snapshot).map_err(std::io::Error::other)?;
    crate::redact::scrub_json(&mut value);
    let text = serde_json::to_vec_pretty(&value).map_err(std::io::Error::other)?;
    crate::private_fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, &path)
}

/// Read the status file of the robot using `data_dir`.
pub fn read_status_file(data_dir: &Path) -> Result<StatusSnapshot, String> {
    let path = data_dir.join(STATUS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "no robot has run with data_dir {} (no {} there)",
                data_dir.display(),
                STATUS_FILE
            )
        } else {
            format!("cannot read {}: {e}", path.display())
        }
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{} is damaged: {e}", path.display()))
}

/// Whether the robot behind a status file is running.
#[derive(Clone, Debug, PartialEq)]
pub enum Liveness {
    /// Running, and its status is fresh.
    Running,
    /// It stopped cleanly.
    Stopped,
    /// Its process is gone without a clean stop (killed, crashed, power cut).
    Gone,
    /// Its process lives but its status is this many seconds old (the agent is stuck).
    NotResponding(f64),
}

impl Liveness {
    /// Judge a snapshot: `alive` says whether its process still exists.
    pub fn of(
        snapshot: &StatusSnapshot,
        alive: bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Liveness {
        if snapshot.state == "stopped" {
            return Liveness::Stopped;
        }
        if !alive {
            return Liveness::Gone;
        }
        let age = chrono::DateTime::parse_from_rfc3339(&snapshot.updated_at)
            .map(|t| (now - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0)
            .unwrap_or(f64::INFINITY);
        if age > 10.0 {
            Liveness::NotResponding(age)
        } else {
            Liveness::Running
        }
    }
}

/// True when a process with this id exists.
pub fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{CloseHandle, STILL_ACTIVE};
        use windows_sys::Win32::System::Threading::{
            GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
        };
        // SAFETY: OpenProcess returns null or a handle we close; the out pointer is valid.
        unsafe {
            let h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
            if h.is_null() {
                return false;
            }
            let mut code = 0u32;
            let ok = GetExitCodeProcess(h, &mut code) != 0;
            CloseHandle(h);
            ok && code == STILL_ACTIVE as u32
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = pid;
        true
    }
}

/// The human-readable status (what `casare-robot status` prints).
pub fn render(s: &StatusSnapshot, liveness: &Liveness) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let verdict = match liveness {
        Liveness::Running => s.state.clone(),
        Liveness::Stopped => format!("not running (stopped at {})", s.updated_at),
        Liveness::Gone => format!(
            "not running (process {} ended without a clean stop; last status {})",
            s.pid, s.updated_at
        ),
        Liveness::NotResponding(age) => format!(
            "{} but NOT RESPONDING (process {} alive, status {age:.0} s old)",
            s.state, s.pid
        ),
    };
    let _ = writeln!(
        out,
        "robot {} ({}) {}, pid {}: {verdict}",
        s.robot_id, s.robot_name, s.version, s.pid
    );
    let mut links = Vec::new();
    if let Some(ws) = &s.connection.websocket {
        links.push(format!(
            "websocket {ws} (breaker {})",
            s.connection.breaker.as_deref().unwrap_or("-")
        ));
    }
    if let Some(rest) = &s.connection.rest {
        links.push(format!("rest {rest}"));
    }
    if let Some(down) = s.connection.down_for_seconds {
        links.push(format!("no link for {down:.0} s"));
    }
    if s.connection.unauthorized {
        links.push("CREDENTIALS REFUSED".into());
    }
    let _ = writeln!(out, "  links: {}", links.join(", "));
    let _ = writeln!(
        out,
        "  jobs: {} running of {}, {} waiting; outbox {}, queued messages {}{}",
        s.jobs.len(),
        s.max_concurrent_jobs,
        s.waiting_jobs,
        s.outbox,
        s.queued_messages,
        if s.durable { "" } else { "; STORE NOT DURABLE" }
    );
    if let Some(damage) = &s.store_damage {
        let _ = writeln!(out, "  STORE DAMAGED: {damage}");
    }
    for j in &s.jobs {
        let _ = writeln!(
            out,
            "    {}  {:>3}%  {}  {:.1} s{}",
            j.job_id,
            j.progress,
            j.current_node.as_deref().unwrap_or("-"),
            j.running_seconds,
            if j.state == "running" {
                String::new()
            } else {
                format!("  ({})", j.state)
            }
        );
    }
    let m = &s.metrics["summary"];
    if m.is_object() {
        let _ = writeln!(
            out,
            "  done: {} jobs ({} ok, {} failed, {} cancelled; {}% success), uptime {:.0} s",
            m["total_jobs"],
            m["successful_jobs"],
            m["failed_jobs"],
            m["cancelled_jobs"],
            m["success_rate_percent"],
            s.uptime_seconds
        );
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(
            out,
            "  last error: {e} (at {})",
            s.last_error_at.as_deref().unwrap_or("?")
        );
    }
    if let Some(log) = &s.log_file {
        let _ = writeln!(out, "  log: {}", log.display());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_file_round_trips_and_a_missing_one_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_status_file(dir.path()).unwrap_err();
        assert!(err.contains("no robot has run"), "{err}");
        let snap = StatusSnapshot {
            robot_id: "r1".into(),
            state: "busy".into(),
            jobs: vec![JobStatus {
                job_id: "j".into(),
                progress: 40,
                ..JobStatus::default()
            }],
            ..StatusSnapshot::default()
        };
        write_status_file(dir.path(), &snap).unwrap();
        assert_eq!(read_status_file(dir.path()).unwrap(), snap);
        std::fs::write(dir.path().join(STATUS_FILE), "{").unwrap();
        assert!(read_status_file(dir.path())
            .unwrap_err()
            .contains("damaged"));
    }

    #[test]
    fn liveness_and_rendering() {
        let now = chrono::Utc::now();
        let mut snap = StatusSnapshot {
            robot_id: "r1".into(),
            robot_name: "Robot One".into(),
            pid: 42,
            state: "busy".into(),
            updated_at: now.to_rfc3339(),
            max_concurrent_jobs: 2,
            durable: true,
            connection: ConnectionStatus {
                websocket: Some("connected".into()),
                breaker: Some("closed".into()),
                ..ConnectionStatus::default()
            },
            jobs: vec![JobStatus {
                job_id: "job-7".into(),
                progress: 40,
                current_node: Some("fetch".into()),
                running_seconds: 3.5,
                state: "running".into(),
                ..JobStatus::default()
            }],
            last_error: Some("connection closed: reset".into()),
            ..StatusSnapshot::default()
        };
        assert_eq!(Liveness::of(&snap, true, now), Liveness::Running);
        assert_eq!(Liveness::of(&snap, false, now), Liveness::Gone);
        let later = now + chrono::Duration::seconds(30);
        assert!(
            matches!(Liveness::of(&snap, true, later), Liveness::NotResponding(a) if a >= 29.0)
        );
        let text = render(&snap, &Liveness::Running);
        assert!(text.starts_with("robot r1 (Robot One)"), "{text}");
        assert!(text.contains(": busy"), "{text}");
        assert!(
            text.contains("websocket connected (breaker closed)"),
            "{text}"
        );
        assert!(text.contains("job-7   40%  fetch  3.5 s"), "{text}");
        assert!(
            text.contains("last error: connection closed: reset"),
            "{text}"
        );
        assert!(!text.contains("STORE DAMAGED"), "{text}");
        snap.store_damage = Some("the store was damaged (integrity check)".into());
        let text = render(&snap, &Liveness::Running);
        assert!(
            text.contains("STORE DAMAGED: the store was damaged (integrity check)"),
            "{text}"
        );
        snap.state = "stopped".into();
        assert_eq!(Liveness::of(&snap, false, now), Liveness::Stopped);
        assert!(render(&snap, &Liveness::Stopped).contains("not running (stopped at"));
        assert!(process_alive(std::process::id()));
    }
}

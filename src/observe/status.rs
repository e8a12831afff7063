//! The robot's status snapshot: one value the agent keeps current (it alone writes it) and
//! others read: the `/health` endpoint, the tray, and `casare-robot status` (through the status
//! file `<data_dir>/status.json`, replaced atomically at most once a second and at exit).
//!
//! Secrets never enter it: it holds states, ids, counts, progress and error texts that were
//! already scrubbed.

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
    /// REST link: `reachable`, `unreachable` or `unknown`; None without REST.
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
    /// The last error worth an operator's attention, with its time (RFC 3339).
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<String>,
    /// Metrics summary (jobs, success rate, durations, resources).
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
    let text = serde_json::to_vec_pretty(snapshot).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
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
}

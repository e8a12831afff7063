//! The audit trail: [`AuditLogger`] records what the robot did (lifecycle, links, jobs,
//! checkpoints, errors, security, breakers) as JSON Lines, the reference robot's format
//! (`robot/audit.py`, contracts §7), and keeps the last [`RING_CAPACITY`] entries in memory for
//! `get_recent` / `query`. [`read_dir`] queries the files of a robot that has finished.
//!
//! Files: `<dir>/audit_YYYY-MM-DD.jsonl` (the UTC date when the logger started or last rotated;
//! there is no roll-over at midnight). Before each write, a file that has reached
//! `max_file_bytes` is renamed `audit_YYYY-MM-DD.HHMMSS.jsonl` (its date, the UTC time of the
//! rotation; `…HHMMSS_N.jsonl` when that name is taken, so a backup is never overwritten), all
//! but the newest `backup_count` other `audit_*.jsonl` files (by mtime) are deleted, and a new
//! base file is started. The size is seeded from an existing file.
//!
//! Invariants:
//! - Logging never panics and never fails: a file problem is reported once with `log::warn!`
//!   (and once with `log::info!` when writing works again); the entry still reaches the ring
//!   and the `log` mirror (`[AUDIT] <type>: <message>`).
//! - Secrets never leave [`AuditLogger::log`]: every occurrence of a configured secret (at least
//!   [`MIN_SECRET_CHARS`] characters) in the message, the ids and every string of the details
//!   (keys included, recursively) is replaced by `***` before the entry is stored, mirrored or
//!   written; so are the process-wide secrets and URL passwords ([`crate::redact`]).
//! - The current file is never deleted by pruning; one line is one entry, written with a single
//!   `write_all` on a file kept open in append mode (a torn line after a write error is ended
//!   with a newline before the next entry, and readers skip damaged lines).
//!
//! Differences from the reference, on purpose: timestamps always carry six fractional digits
//! (Python omits them when the microseconds are zero); `details` is `{}` when none are given;
//! the file is kept open between writes instead of being reopened for each one.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::resilience::breaker::BreakerState;

/// Entries kept in memory for [`AuditLogger::get_recent`] and [`AuditLogger::query`].
pub const RING_CAPACITY: usize = 1000;
/// What a secret is replaced with.
pub const REDACTED: &str = "***";
/// Secrets shorter than this (in characters) are not scrubbed: they would mangle ordinary text.
pub const MIN_SECRET_CHARS: usize = 4;
/// The reference's default rotation size (10 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// The reference's default number of rotated files kept.
pub const DEFAULT_BACKUP_COUNT: u32 = 5;

const FILE_PREFIX: &str = "audit_";
const FILE_SUFFIX: &str = ".jsonl";
/// Longest error text quoted in a message (the full text is in the details), as the reference.
const MESSAGE_ERROR_CHARS: usize = 200;

macro_rules! audit_events {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The kind of an audit entry; serialised as its dotted name (`job.failed`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AuditEvent {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl AuditEvent {
            /// Every event type, in the reference's order.
            pub const ALL: &'static [AuditEvent] = &[$(AuditEvent::$variant,)*];

            /// The dotted name written to the file (`connection.lost`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditEvent::$variant => $name,)*
                }
            }
        }
    };
}

audit_events! {
    /// The robot process started.
    RobotStarted => "robot.started",
    /// The robot process stopped.
    RobotStopped => "robot.stopped",
    /// The orchestrator accepted the robot's registration.
    RobotRegistered => "robot.registered",
    /// A link to the orchestrator is up.
    ConnectionEstablished => "connection.established",
    /// A link to the orchestrator went down.
    ConnectionLost => "connection.lost",
    /// A reconnection attempt starts.
    ConnectionReconnecting => "connection.reconnecting",
    /// A link could not be established.
    ConnectionFailed => "connection.failed",
    /// A job arrived.
    JobReceived => "job.received",
    /// A job was claimed (REST).
    JobClaimed => "job.claimed",
    /// A job started running.
    JobStarted => "job.started",
    /// A job succeeded.
    JobCompleted => "job.completed",
    /// A job failed.
    JobFailed => "job.failed",
    /// A job was cancelled.
    JobCancelled => "job.cancelled",
    /// A job result was kept locally for later delivery.
    JobCached => "job.cached",
    /// A locally kept job result was delivered.
    JobSynced => "job.synced",
    /// A workflow was loaded.
    WorkflowLoaded => "execution.workflow_loaded",
    /// A node started.
    NodeStarted => "execution.node_started",
    /// A node completed.
    NodeCompleted => "execution.node_completed",
    /// A node failed.
    NodeFailed => "execution.node_failed",
    /// A node was skipped.
    NodeSkipped => "execution.node_skipped",
    /// A node is retried.
    NodeRetried => "execution.node_retried",
    /// A checkpoint was saved.
    CheckpointSaved => "checkpoint.saved",
    /// A run resumed from a checkpoint.
    CheckpointRestored => "checkpoint.restored",
    /// A checkpoint was removed.
    CheckpointCleared => "checkpoint.cleared",
    /// An error that may go away on a retry.
    ErrorTransient => "error.transient",
    /// An error that will not go away on a retry.
    ErrorPermanent => "error.permanent",
    /// An error of unknown kind.
    ErrorUnknown => "error.unknown",
    /// Credentials were checked and are usable.
    CredentialValidated => "security.credential_validated",
    /// Credentials are missing or malformed.
    CredentialInvalid => "security.credential_invalid",
    /// The orchestrator refused the robot's credentials.
    AccessDenied => "security.access_denied",
    /// A circuit breaker opened.
    CircuitOpened => "circuit.opened",
    /// A circuit breaker lets trial calls through.
    CircuitHalfOpen => "circuit.half_open",
    /// A circuit breaker closed.
    CircuitClosed => "circuit.closed",
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much an entry matters, in increasing order; serialised lowercase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Per-node detail.
    Debug,
    /// Lifecycle.
    Info,
    /// Something an operator may want to look at.
    Warning,
    /// Something failed.
    Error,
    /// The robot cannot work.
    Critical,
}

impl Severity {
    /// The lowercase name written to the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The `log` level the entry is mirrored at (critical is logged as an error).
    pub fn log_level(self) -> log::Level {
        match self {
            Severity::Debug => log::Level::Debug,
            Severity::Info => log::Level::Info,
            Severity::Warning => log::Level::Warn,
            Severity::Error | Severity::Critical => log::Level::Error,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit entry; one line of an audit file, with the fields in this order:
///
/// ```json
/// {"timestamp":"2025-11-29T10:31:02.123456+00:00","event_type":"job.failed","severity":"error",
///  "message":"Job failed: Element not found","robot_id":"r1","job_id":"b1c2","node_id":null,
///  "details":{"error":"Element not found","duration_ms":5321.7}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it was logged (UTC, microsecond precision).
    #[serde(with = "timestamp_micros")]
    pub timestamp: DateTime<Utc>,
    /// What happened.
    pub event_type: AuditEvent,
    /// How much it matters.
    pub severity: Severity,
    /// Human-readable text.
    pub message: String,
    /// The robot that logged it.
    pub robot_id: String,
    /// The job it concerns.
    #[serde(default)]
    pub job_id: Option<String>,
    /// The node it concerns.
    #[serde(default)]
    pub node_id: Option<String>,
    /// Event-specific data (`{}` when there is none).
    #[serde(default = "empty_object")]
    pub details: Value,
}

impl AuditEntry {
    /// The entry as one JSON line, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        // Serialising plain strings, enums and a `Value` cannot fail; the fallback keeps the
        // "never panics" promise anyway.
        serde_json::to_string(self).unwrap_or_else(|e| {
            json!({
                "timestamp": self.timestamp.to_rfc3339_opts(SecondsFormat::Micros, false),
                "event_type": self.event_type,
                "severity": self.severity,
                "message": format!("audit entry could not be encoded: {e}"),
                "robot_id": self.robot_id,
                "job_id": self.job_id,
                "node_id": self.node_id,
                "details": {},
            })
            .to_string()
        })
    }
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// RFC 3339 with six fractional digits and `+00:00`, as Python's `isoformat()`.
mod timestamp_micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Micros, false))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("bad timestamp '{text}': {e}")))
    }
}

/// Where and how the audit trail is written.
#[derive(Clone)]
pub struct AuditConfig {
    /// The directory of the audit files (created when missing).
    pub dir: PathBuf,
    /// A file that has reached this size is rotated before the next write (0: before every
    /// write).
    pub max_file_bytes: u64,
    /// Rotated (and older) audit files kept in the directory besides the current one.
    pub backup_count: u32,
    /// Written into every entry.
    pub robot_id: String,
    /// Texts that must never be written (API keys, tokens); shorter than
    /// [`MIN_SECRET_CHARS`] characters are ignored.
    pub secrets: Vec<String>,
}

impl fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditConfig")
            .field("dir", &self.dir)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("backup_count", &self.backup_count)
            .field("robot_id", &self.robot_id)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .finish()
    }
}

/// Why the audit directory or a file in it cannot be used.
#[derive(Debug)]
pub enum AuditError {
    /// The directory does not exist and cannot be created.
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The current audit file cannot be opened for appending.
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The directory cannot be listed.
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file cannot be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl fmt::Display for AuditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditError::CreateDir { path, source } => write!(
                f,
                "cannot create the audit directory {}: {source}; make it writable, point \
                 log_dir elsewhere, or set audit_enabled = false",
                path.display()
            ),
            AuditError::Open { path, source } => write!(
                f,
                "cannot open the audit file {} for appending: {source}; make the directory \
                 writable, point log_dir elsewhere, or set audit_enabled = false",
                path.display()
            ),
            AuditError::ReadDir { path, source } => write!(
                f,
                "cannot list the audit directory {}: {source}; check that it exists and is \
                 readable",
                path.display()
            ),
            AuditError::Read { path, source } => write!(
                f,
                "cannot read the audit file {}: {source}; check its permissions",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AuditError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditError::CreateDir { source, .. }
            | AuditError::Open { source, .. }
            | AuditError::ReadDir { source, .. }
            | AuditError::Read { source, .. } => Some(source),
        }
    }
}

/// A filter over audit entries, newest first. Empty / `None` fields do not filter.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditQuery {
    /// Only these event types (empty: all).
    pub event_types: Vec<AuditEvent>,
    /// Only entries at least this severe.
    pub min_severity: Option<Severity>,
    /// Only entries of this job.
    pub job_id: Option<String>,
    /// Only entries logged at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many entries.
    pub limit: usize,
}

impl Default for AuditQuery {
    /// No filter, at most 100 entries (the reference's default).
    fn default() -> Self {
        AuditQuery {
            event_types: Vec::new(),
            min_severity: None,
            job_id: None,
            since: None,
            limit: 100,
        }
    }
}

impl AuditQuery {
    /// Whether `entry` passes every filter (the limit aside).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        (self.event_types.is_empty() || self.event_types.contains(&entry.event_type))
            && self.min_severity.is_none_or(|min| entry.severity >= min)
            && self
                .job_id
                .as_deref()
                .is_none_or(|id| entry.job_id.as_deref() == Some(id))
            && self.since.is_none_or(|since| entry.timestamp >= since)
    }
}

/// The audit trail of one robot: files (unless in memory only), a ring of recent entries and
/// the `log` mirror. Not shared: wrap it in a mutex to log from several threads.
pub struct AuditLogger {
    robot_id: String,
    /// Secrets to scrub, longest first (so a secret containing another is scrubbed whole).
    secrets: Vec<String>,
    ring: VecDeque<AuditEntry>,
    file: Option<AuditFile>,
}

impl fmt::Debug for AuditLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLogger")
            .field("robot_id", &self.robot_id)
            .field("file", &self.current_file())
            .field("entries", &self.ring.len())
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .finish()
    }
}

impl AuditLogger {
    /// An audit trail written to `config.dir`: creates the directory, opens (appends to) the
    /// file of today's UTC date and seeds its size. Fails when the directory cannot be created
    /// or the file cannot be opened; callers fall back to [`AuditLogger::in_memory`].
    pub fn new(config: AuditConfig) -> Result<AuditLogger, AuditError> {
        crate::private_fs::create_dir_all(&config.dir).map_err(|source| AuditError::CreateDir {
            path: config.dir.clone(),
            source,
        })?;
        let path = base_path(&config.dir, Utc::now());
        let (file, size) = open_append(&path).map_err(|source| AuditError::Open {
            path: path.clone(),
            source,
        })?;
        let mut logger = AuditLogger::in_memory(&config.robot_id, &config.secrets);
        logger.file = Some(AuditFile {
            dir: config.dir,
            max_file_bytes: config.max_file_bytes,
            backup_count: config.backup_count,
            path,
            file: Some(file),
            size,
            torn: false,
            failing: false,
            last_rotation: None,
        });
        Ok(logger)
    }

    /// An audit trail kept in memory only (the ring and the `log` mirror): for a robot whose
    /// audit is disabled or whose audit directory is unusable.
    pub fn in_memory(robot_id: &str, secrets: &[String]) -> AuditLogger {
        let mut secrets: Vec<String> = secrets
            .iter()
            .filter(|s| s.chars().count() >= MIN_SECRET_CHARS)
            .cloned()
            .collect();
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let mut logger = AuditLogger {
            robot_id: String::new(),
            secrets,
            ring: VecDeque::with_capacity(RING_CAPACITY),
            file: None,
        };
        logger.robot_id = logger.scrub_str(robot_id);
        logger
    }

    /// The file entries are appended to now (None in memory only).
    pub fn current_file(&self) -> Option<&Path> {
        self.file.as_ref().map(|f| f.path.as_path())
    }

    /// Records one entry: scrubs secrets, mirrors it to `log` as `[AUDIT] <type>: <message>`,
    /// appends it to the file (rotating first when needed) and keeps it in the ring. `Null`
    /// details become `{}`. Never fails: a file problem is logged once.
    pub fn log(
        &mut self,
        event: AuditEvent,
        severity: Severity,
        message: &str,
        job_id: Option<&str>,
        node_id: Option<&str>,
        details: Value,
    ) {
        let mut details = if details.is_null() {
            empty_object()
        } else {
            details
        };
        self.scrub_value(&mut details);
        let entry = AuditEntry {
            timestamp: Utc::now().trunc_subsecs(6),
            event_type: event,
            severity,
            message: self.scrub_str(message),
            robot_id: self.robot_id.clone(),
            job_id: job_id.map(|s| self.scrub_str(s)),
            node_id: node_id.map(|s| self.scrub_str(s)),
            details,
        };
        log::log!(
            severity.log_level(),
            "[AUDIT] {}: {}",
            event.as_str(),
            entry.message
        );
        if let Some(file) = &mut self.file {
            let mut line = entry.to_json_line();
            line.push('\n');
            file.append(line.as_bytes());
        }
        if self.ring.len() == RING_CAPACITY {
            self.ring.pop_front();
        }
        self.ring.push_back(entry);
    }

    /// The last `limit` entries, newest first.
    pub fn get_recent(&self, limit: usize) -> Vec<AuditEntry> {
        self.ring.iter().rev().take(limit).cloned().collect()
    }

    /// The entries in the ring that match `q`, newest first, at most `q.limit`.
    pub fn query(&self, q: &AuditQuery) -> Vec<AuditEntry> {
        self.ring
            .iter()
            .rev()
            .filter(|e| q.matches(e))
            .take(q.limit)
            .cloned()
            .collect()
    }

    // Convenience methods: the reference's messages and details.

    /// `robot.started` (info): "Robot agent started", with `details`.
    pub fn robot_started(&mut self, details: Value) {
        self.info(
            AuditEvent::RobotStarted,
            "Robot agent started",
            None,
            details,
        );
    }

    /// `robot.stopped` (info): "Robot agent stopped: <reason>" (no suffix when empty).
    pub fn robot_stopped(&mut self, reason: &str) {
        let message = with_reason("Robot agent stopped", reason);
        self.info(AuditEvent::RobotStopped, &message, None, Value::Null);
    }

    /// `robot.registered` (info): "Robot registered with backend".
    pub fn robot_registered(&mut self) {
        self.info(
            AuditEvent::RobotRegistered,
            "Robot registered with backend",
            None,
            Value::Null,
        );
    }

    /// `connection.established` (info): "Connected to backend".
    pub fn connection_established(&mut self) {
        self.info(
            AuditEvent::ConnectionEstablished,
            "Connected to backend",
            None,
            Value::Null,
        );
    }

    /// `connection.lost` (warning): "Connection lost: <reason>" (no suffix when empty).
    pub fn connection_lost(&mut self, reason: &str) {
        let message = with_reason("Connection lost", reason);
        self.log(
            AuditEvent::ConnectionLost,
            Severity::Warning,
            &message,
            None,
            None,
            Value::Null,
        );
    }

    /// `connection.reconnecting` (info): "Reconnection attempt <n>", details `{attempt}`.
    pub fn connection_reconnecting(&mut self, attempt: u32) {
        self.info(
            AuditEvent::ConnectionReconnecting,
            &format!("Reconnection attempt {attempt}"),
            None,
            json!({ "attempt": attempt }),
        );
    }

    /// `connection.failed` (error): "Connection failed: <error>", details `{error}` (the
    /// reference has the event but no method; the message follows the others).
    pub fn connection_failed(&mut self, error: &str) {
        self.log(
            AuditEvent::ConnectionFailed,
            Severity::Error,
            &format!(
                "Connection failed: {}",
                truncate_chars(error, MESSAGE_ERROR_CHARS)
            ),
            None,
            None,
            json!({ "error": error }),
        );
    }

    /// `job.received` (info): "Received job: <workflow_name>", details `{workflow_name}`.
    pub fn job_received(&mut self, job_id: &str, workflow_name: &str) {
        self.info(
            AuditEvent::JobReceived,
            &format!("Received job: {workflow_name}"),
            Some(job_id),
            json!({ "workflow_name": workflow_name }),
        );
    }

    /// `job.claimed` (info): "Job claimed for execution".
    pub fn job_claimed(&mut self, job_id: &str) {
        self.info(
            AuditEvent::JobClaimed,
            "Job claimed for execution",
            Some(job_id),
            Value::Null,
        );
    }

    /// `job.started` (info): "Job execution started (<n> nodes)", details `{total_nodes}`.
    pub fn job_started(&mut self, job_id: &str, total_nodes: usize) {
        self.info(
            AuditEvent::JobStarted,
            &format!("Job execution started ({total_nodes} nodes)"),
            Some(job_id),
            json!({ "total_nodes": total_nodes }),
        );
    }

    /// `job.completed` (info): "Job completed successfully in <ms>ms", details `{duration_ms}`.
    pub fn job_completed(&mut self, job_id: &str, duration_ms: f64) {
        self.info(
            AuditEvent::JobCompleted,
            &format!("Job completed successfully in {duration_ms:.0}ms"),
            Some(job_id),
            json!({ "duration_ms": duration_ms }),
        );
    }

    /// `job.failed` (error): "Job failed: <first 200 chars of error>", details
    /// `{error, duration_ms}`.
    pub fn job_failed(&mut self, job_id: &str, error: &str, duration_ms: f64) {
        self.log(
            AuditEvent::JobFailed,
            Severity::Error,
            &format!("Job failed: {}", truncate_chars(error, MESSAGE_ERROR_CHARS)),
            Some(job_id),
            None,
            json!({ "error": error, "duration_ms": duration_ms }),
        );
    }

    /// `job.cancelled` (warning): "Job cancelled: <reason>" (no suffix when empty).
    pub fn job_cancelled(&mut self, job_id: &str, reason: &str) {
        let message = with_reason("Job cancelled", reason);
        self.log(
            AuditEvent::JobCancelled,
            Severity::Warning,
            &message,
            Some(job_id),
            None,
            Value::Null,
        );
    }

    /// `checkpoint.restored` (info): "Restored from checkpoint: <job_id>" (a job has one
    /// checkpoint, named by the job id), details `{checkpoint_id, restored_at_node}`.
    pub fn checkpoint_restored(&mut self, job_id: &str, node_id: &str) {
        self.info(
            AuditEvent::CheckpointRestored,
            &format!("Restored from checkpoint: {job_id}"),
            Some(job_id),
            json!({ "checkpoint_id": job_id, "restored_at_node": node_id }),
        );
    }

    /// `error.transient` / `error.permanent` / `error.unknown` (by `category`; any other
    /// category is unknown) (error): "Error (<category>): <first 200 chars>", details
    /// `{category, error}`.
    pub fn error_logged(&mut self, category: &str, error: &str) {
        let event = match category {
            "transient" => AuditEvent::ErrorTransient,
            "permanent" => AuditEvent::ErrorPermanent,
            _ => AuditEvent::ErrorUnknown,
        };
        self.log(
            event,
            Severity::Error,
            &format!(
                "Error ({category}): {}",
                truncate_chars(error, MESSAGE_ERROR_CHARS)
            ),
            None,
            None,
            json!({ "category": category, "error": error }),
        );
    }

    /// `circuit.opened` / `circuit.half_open` / `circuit.closed` (warning when open, else
    /// info): "Circuit breaker '<name>' -> <state>", details `{circuit_name, state}`.
    pub fn circuit_state_changed(&mut self, name: &str, state: BreakerState) {
        let (event, severity) = match state {
            BreakerState::Open => (AuditEvent::CircuitOpened, Severity::Warning),
            BreakerState::HalfOpen => (AuditEvent::CircuitHalfOpen, Severity::Info),
            BreakerState::Closed => (AuditEvent::CircuitClosed, Severity::Info),
        };
        self.log(
            event,
            severity,
            &format!("Circuit breaker '{name}' -> {}", state.as_str()),
            None,
            None,
            json!({ "circuit_name": name, "state": state.as_str() }),
        );
    }

    /// `security.access_denied` (error: the robot cannot work until the credentials change):
    /// "Access denied: <reason>", details `{reason}`.
    pub fn access_denied(&mut self, reason: &str) {
        self.log(
            AuditEvent::AccessDenied,
            Severity::Error,
            &with_reason("Access denied", reason),
            None,
            None,
            json!({ "reason": reason }),
        );
    }

    /// `security.credential_invalid` (error): "Credential validation failed: <reason>", as the
    /// reference agent logs it.
    pub fn credential_invalid(&mut self, reason: &str) {
        self.log(
            AuditEvent::CredentialInvalid,
            Severity::Error,
            &with_reason("Credential validation failed", reason),
            None,
            None,
            Value::Null,
        );
    }

    fn info(&mut self, event: AuditEvent, message: &str, job_id: Option<&str>, details: Value) {
        self.log(event, Severity::Info, message, job_id, None, details);
    }

    /// This logger's secrets, then the process-wide ones and URL passwords ([`crate::redact`]).
    fn scrub_str(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        crate::redact::scrub(&out).into_owned()
    }

    fn scrub_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.scrub_str(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                let old = std::mem::take(map);
                for (key, mut v) in old {
                    self.scrub_value(&mut v);
                    map.insert(self.scrub_str(&key), v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

fn with_reason(head: &str, reason: &str) -> String {
    if reason.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {reason}")
    }
}

/// The first `n` characters (Python's `s[:n]`).
fn truncate_chars(text: &str, n: usize) -> &str {
    match text.char_indices().nth(n) {
        Some((idx, _)) => &text[..idx],
        None => text,
    }
}

/// The audit file being appended to, and its rotation.
struct AuditFile {
    dir: PathBuf,
    max_file_bytes: u64,
    backup_count: u32,
    /// The current base file, `audit_YYYY-MM-DD.jsonl`.
    path: PathBuf,
    /// Open in append mode; None after an error (reopened at the next write).
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// A write failed part-way: the next line starts with a newline.
    torn: bool,
    /// A problem was reported and writing has not worked since.
    failing: bool,
    /// The UTC time (`HHMMSS`) and collision suffix of the last rotation.
    last_rotation: Option<(String, u32)>,
}

impl AuditFile {
    fn append(&mut self, line: &[u8]) {
        if self.size >= self.max_file_bytes {
            self.rotate();
        }
        if self.file.is_none() {
            match open_append(&self.path) {
                Ok((file, size)) => {
                    self.file = Some(file);
                    self.size = size;
                }
                Err(e) => {
                    self.report(&format!(
                        "cannot open the audit file {}: {e}",
                        self.path.display()
                    ));
                    return;
                }
            }
        }
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let result = if self.torn {
            file.write_all(b"\n").map(|()| 1)
        } else {
            Ok(0)
        }
        .and_then(|extra| file.write_all(line).map(|()| extra));
        match result {
            Ok(extra) => {
                self.size += line.len() as u64 + extra;
                self.torn = false;
                if self.failing {
                    self.failing = false;
                    log::info!("audit: writing to {} again", self.path.display());
                }
            }
            Err(e) => {
                self.torn = true;
                self.file = None;
                self.report(&format!(
                    "cannot write to the audit file {}: {e}",
                    self.path.display()
                ));
            }
        }
    }

    /// Renames the current file to a free `…HHMMSS[_N].jsonl` name, prunes old files and
    /// switches to a new base file. When the rename fails, the same file stays current (and
    /// rotation is tried again before the next write).
    fn rotate(&mut self) {
        // Closed first: Windows cannot rename an open file.
        self.file = None;
        let now = Utc::now();
        let stem = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(FILE_SUFFIX))
            .unwrap_or("audit")
            .to_string();
        let time = now.format("%H%M%S").to_string();
        // Within one second the suffix only grows: a name freed by pruning is not reused, so
        // names stay in rotation order (they break ties between equal mtimes).
        let mut n = match &self.last_rotation {
            Some((last_time, last_n)) if *last_time == time => last_n + 1,
            _ => 0,
        };
        let name = |n: u32| match n {
            0 => format!("{stem}.{time}{FILE_SUFFIX}"),
            n => format!("{stem}.{time}_{n}{FILE_SUFFIX}"),
        };
        let mut target = self.dir.join(name(n));
        while target.exists() {
            n += 1;
            target = self.dir.join(name(n));
        }
        self.last_rotation = Some((time.clone(), n));
        match fs::rename(&self.path, &target) {
            Ok(()) => {}
            // The file vanished (deleted by hand): nothing to keep, start a new one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                let problem = format!(
                    "cannot rotate the audit file {} to {}: {e}",
                    self.path.display(),
                    target.display()
                );
                self.report(&problem);
                return;
            }
        }
        self.path = base_path(&self.dir, now);
        self.size = 0;
        if let Err(problem) = prune(&self.dir, self.backup_count, &self.path) {
            self.report(&problem);
        }
    }

    fn report(&mut self, problem: &str) {
        if self.failing {
            log::debug!("audit: {problem}");
        } else {
            self.failing = true;
            log::warn!(
                "audit: {problem}; entries are kept in memory only until writing works again"
            );
        }
    }
}

fn base_path(dir: &Path, now: DateTime<Utc>) -> PathBuf {
    dir.join(format!(
        "{FILE_PREFIX}{}{FILE_SUFFIX}",
        now.format("%Y-%m-%d")
    ))
}

fn open_append(path: &Path) -> io::Result<(File, u64)> {
    let file = crate::private_fs::open_append(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

/// An `audit_*.jsonl` file, with what orders it among the others.
struct AuditFileInfo {
    path: PathBuf,
    modified: SystemTime,
    /// The name between `audit_` and `.jsonl`, split at a collision suffix `_N`: equal mtimes
    /// (coarse file-system clocks) are ordered by name, which is chronological.
    name_key: (String, u32),
}

/// The audit files of `dir`, oldest first.
fn list_audit_files(dir: &Path) -> io::Result<Vec<AuditFileInfo>> {
    let mut files = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(middle) = name
            .strip_prefix(FILE_PREFIX)
            .and_then(|n| n.strip_suffix(FILE_SUFFIX))
        else {
            continue;
        };
        let Ok(meta) = item.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name_key = match middle.rsplit_once('_') {
            Some((head, n)) => match n.parse::<u32>() {
                Ok(n) => (head.to_string(), n),
                Err(_) => (middle.to_string(), 0),
            },
            None => (middle.to_string(), 0),
        };
        files.push(AuditFileInfo {
            path: item.path(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            name_key,
        });
    }
    files.sort_by(|a, b| {
        a.modified
            .cmp(&b.modified)
            .then_with(|| a.name_key.cmp(&b.name_key))
    });
    Ok(files)
}

/// Deletes all but the newest `keep` audit files other than `current`; the first problem is
/// returned (the other files are still tried).
fn prune(dir: &Path, keep: u32, current: &Path) -> Result<(), String> {
    let files = list_audit_files(dir).map_err(|e| {
        format!(
            "cannot list {} to delete old audit files: {e}",
            dir.display()
        )
    })?;
    let others: Vec<&AuditFileInfo> = files.iter().filter(|f| f.path != current).collect();
    let n_delete = others.len().saturating_sub(keep as usize);
    let mut first_problem = None;
    for old in &others[..n_delete] {
        if let Err(e) = fs::remove_file(&old.path) {
            if e.kind() != io::ErrorKind::NotFound && first_problem.is_none() {
                first_problem = Some(format!(
                    "cannot delete the old audit file {}: {e}",
                    old.path.display()
                ));
            }
        }
    }
    first_problem.map_or(Ok(()), Err)
}

/// The entries of the audit files in `dir` (rotated ones included) that match `q`, newest
/// first, at most `q.limit`. Damaged lines (a torn last line, foreign text) are skipped; a file
/// that disappears while being read (rotated by a running robot) is skipped.
pub fn read_dir(dir: &Path, q: &AuditQuery) -> Result<Vec<AuditEntry>, AuditError> {
    let files = list_audit_files(dir).map_err(|source| AuditError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // (entry, file rank, line index): ties in time keep the order they were written in.
    let mut found: Vec<(AuditEntry, usize, usize)> = Vec::new();
    let mut n_damaged = 0usize;
    for (file_idx, info) in files.iter().enumerate() {
        let mut bytes = Vec::new();
        let read = File::open(&info.path).and_then(|mut f| f.read_to_end(&mut bytes));
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(AuditError::Read {
                    path: info.path.clone(),
                    source,
                })
            }
        }
        for (line_idx, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AuditEntry>(line) {
                Ok(entry) if q.matches(&entry) => found.push((entry, file_idx, line_idx)),
                Ok(_) => {}
                Err(_) => n_damaged += 1,
            }
        }
    }
    if n_damaged > 0 {
        log::debug!(
            "audit: skipped {n_damaged} damaged lines in {}",
            dir.display()
        );
    }
    found.sort_by(|a, b| {
        b.0.timestamp
            .cmp(&a.0.timestamp)
            .then_with(|| (b.1, b.2).cmp(&(a.1, a.2)))
    });
    Ok(found
        .into_iter()
        .take(q.limit)
        .map(|(entry, _, _)| entry)
        .collect())
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;

//! Wire types of the orchestrator WebSocket link, in both dialects, without any I/O.
//!
//! This module owns the translation between JSON text frames and typed messages:
//! [`parse_inbound`] turns an orchestrator frame into an [`Inbound`], [`encode`] turns an
//! [`Outbound`] into a frame, and [`ws_url`] builds the connection URL. The rules come from
//! `protocol.md`; the captures of the real orchestrator (`head-ws-*.json`) are test vectors.
//!
//! Invariants:
//! - Parsing never panics and never fails on an unknown message type or unknown fields: an unknown
//!   type is [`Inbound::Unknown`], unknown fields are ignored. Only frames that cannot be understood
//!   at all (bad JSON, not an object, no `type`, a job without id or workflow) are errors.
//! - Inbound, both dialects' names are accepted (`job_assign` and `job_assignment`); outbound, the
//!   [`Dialect`] chooses the names.
//! - Every outbound message carries at least the fields the real robot sent in the captures, plus the
//!   fields of `protocol.md`'s tables.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// Frames larger than this are refused before any parsing (64 MiB).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Longest job id accepted (in characters); a longer one makes the message invalid.
pub const MAX_JOB_ID_CHARS: usize = 256;

/// The most log entries the orchestrator accepts in one `log_batch`; callers split larger sets.
pub const MAX_LOG_BATCH: usize = 100;

/// Which message names the link speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// The real CasareRPA orchestrator's flat JSON (`heartbeat`, `job_complete`, ...). The default.
    #[default]
    Casare,
    /// The names of the Robot Reference document (`status_update`, `job_result`, `job_assignment`).
    Reference,
}

impl Dialect {
    /// Parses a config value (`casare` or `reference`, case-insensitive).
    pub fn parse(text: &str) -> Option<Dialect> {
        match text.trim().to_ascii_lowercase().as_str() {
            "casare" => Some(Dialect::Casare),
            "reference" => Some(Dialect::Reference),
            _ => None,
        }
    }

    /// The config spelling of this dialect.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Casare => "casare",
            Dialect::Reference => "reference",
        }
    }

    /// The name of the job assignment message an orchestrator of this dialect sends.
    pub fn job_assign_type(self) -> &'static str {
        match self {
            Dialect::Casare => "job_assign",
            Dialect::Reference => "job_assignment",
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame or URL that cannot be understood. Messages are lowercase and name the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    TooLarge {
        /// Size of the refused frame in bytes.
        len: usize,
    },
    /// The frame is not valid JSON.
    Json(String),
    /// The frame is JSON but not an object.
    NotAnObject,
    /// The object has no string `type`.
    MissingType,
    /// A required field is absent (or null).
    MissingField {
        /// The message type.
        msg_type: String,
        /// The missing field (alternatives separated by `/`).
        field: &'static str,
    },
    /// A field is present but has the wrong shape.
    InvalidField {
        /// The message type.
        msg_type: String,
        /// The offending field.
        field: &'static str,
        /// What was expected.
        reason: String,
    },
    /// The orchestrator URL cannot be used.
    Url(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::TooLarge { len } => write!(
                f,
                "frame of {len} bytes is larger than the limit of {MAX_FRAME_BYTES} bytes"
            ),
            ProtocolError::Json(e) => write!(f, "frame is not valid json: {e}"),
            ProtocolError::NotAnObject => f.write_str("frame is not a json object"),
            ProtocolError::MissingType => f.write_str("frame has no string \"type\" field"),
            ProtocolError::MissingField { msg_type, field } => {
                write!(f, "{msg_type} message has no \"{field}\" field")
            }
            ProtocolError::InvalidField {
                msg_type,
                field,
                reason,
            } => write!(f, "{msg_type} message has an invalid \"{field}\": {reason}"),
            ProtocolError::Url(e) => write!(f, "invalid orchestrator url: {e}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

// ---------------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------------

/// A message from the orchestrator.
#[derive(Clone, Debug, PartialEq)]
pub enum Inbound {
    /// Answer to `register`. The real server sends no `success`; absent means accepted.
    RegisterAck {
        /// False when registration was refused.
        success: bool,
        /// The server's explanation, if any.
        message: Option<String>,
    },
    /// Answer to a heartbeat.
    HeartbeatAck,
    /// A job to run (`job_assign` or `job_assignment`).
    JobAssign(JobAssignment),
    /// Cancel a queued or running job.
    JobCancel {
        /// The job to cancel.
        job_id: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// Answer with `status_response`.
    StatusRequest,
    /// Stop taking new jobs; running jobs continue.
    Pause,
    /// Take new jobs again.
    Resume,
    /// Drain, then exit.
    Shutdown {
        /// Let running jobs finish first (default true).
        graceful: bool,
    },
    /// Answer with `pong`.
    Ping,
    /// The orchestrator reports a problem: log it, never fatal.
    Error {
        /// `error_code` (or `code`), if given.
        code: Option<String>,
        /// `error_message` (or `message`); empty if none was given.
        message: String,
    },
    /// A message type this robot does not know: log once and ignore.
    Unknown {
        /// The frame's `type`.
        msg_type: String,
    },
}

impl Inbound {
    /// A short name for logs (the canonical message type).
    pub fn kind(&self) -> &str {
        match self {
            Inbound::RegisterAck { .. } => "register_ack",
            Inbound::HeartbeatAck => "heartbeat_ack",
            Inbound::JobAssign(_) => "job_assign",
            Inbound::JobCancel { .. } => "job_cancel",
            Inbound::StatusRequest => "status_request",
            Inbound::Pause => "pause",
            Inbound::Resume => "resume",
            Inbound::Shutdown { .. } => "shutdown",
            Inbound::Ping => "ping",
            Inbound::Error { .. } => "error",
            Inbound::Unknown { msg_type } => msg_type,
        }
    }
}

/// A job assignment, normalised from any of the accepted field spellings.
#[derive(Clone, Debug, PartialEq)]
pub struct JobAssignment {
    /// The job id (never empty).
    pub job_id: String,
    /// The workflow id, if given.
    pub workflow_id: Option<String>,
    /// The workflow document, always a JSON object.
    pub workflow: Value,
    /// Input variables (`variables` or `parameters`); empty when absent.
    pub variables: Map<String, Value>,
    /// Timeout in seconds (`timeout` or `timeout_seconds`); `None` when absent or not positive.
    pub timeout: Option<f64>,
    /// Priority, if given as an integer.
    pub priority: Option<i64>,
}

/// Parses one text frame from the orchestrator.
///
/// Accepts both dialects. Unknown types give [`Inbound::Unknown`]; frames that cannot be understood
/// give a [`ProtocolError`]. Never panics.
pub fn parse_inbound(text: &str) -> Result<Inbound, ProtocolError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ProtocolError::TooLarge { len: text.len() });
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ProtocolError::NotAnObject);
    };
    let msg_type = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ProtocolError::MissingType),
    };
    let msg = match msg_type.as_str() {
        "register_ack" => Inbound::RegisterAck {
            success: obj.get("success").and_then(Value::as_bool).unwrap_or(true),
            message: opt_string(&obj, &["message"]),
        },
        "heartbeat_ack" => Inbound::HeartbeatAck,
        "job_assign" | "job_assignment" => Inbound::JobAssign(parse_assignment(&msg_type, &obj)?),
        "job_cancel" => Inbound::JobCancel {
            job_id: required_id(&msg_type, &obj)?,
            reason: opt_string(&obj, &["reason"]),
        },
        "status_request" => Inbound::StatusRequest,
        "pause" => Inbound::Pause,
        "resume" => Inbound::Resume,
        "shutdown" => Inbound::Shutdown {
            graceful: obj.get("graceful").and_then(Value::as_bool).unwrap_or(true),
        },
        "ping" => Inbound::Ping,
        "error" => Inbound::Error {
            code: opt_string(&obj, &["error_code", "code"]),
            message: opt_string(&obj, &["error_message", "message", "error"]).unwrap_or_default(),
        },
        _ => Inbound::Unknown {
            msg_type: bounded_type(msg_type),
        },
    };
    Ok(msg)
}

/// Longest unknown message type kept (in characters): the agent remembers and logs unknown
/// types, and a frame may be 64 MiB.
pub const MAX_UNKNOWN_TYPE_CHARS: usize = 64;

/// `msg_type` cut to [`MAX_UNKNOWN_TYPE_CHARS`] characters (marked with `…` when cut).
fn bounded_type(msg_type: String) -> String {
    if msg_type.chars().count() <= MAX_UNKNOWN_TYPE_CHARS {
        return msg_type;
    }
    let mut cut: String = msg_type.chars().take(MAX_UNKNOWN_TYPE_CHARS).collect();
    cut.push('…');
    cut
}

/// The job id to answer when `text`, a frame that failed with `error`, is a job assignment whose
/// `job_id` is usable but whose other fields are malformed (the workflow is not an object or a
/// JSON string holding one, the variables are not an object, ...). `None` for any other error:
/// without a job id there is nobody to answer.
pub fn rejectable_assignment(text: &str, error: &ProtocolError) -> Option<String> {
    let (ProtocolError::MissingField { msg_type, field }
    | ProtocolError::InvalidField {
        msg_type, field, ..
    }) = error
    else {
        return None;
    };
    if *field == "job_id" || !matches!(msg_type.as_str(), "job_assign" | "job_assignment") {
        return None;
    }
    let Ok(Value::Object(obj)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    required_id(msg_type, &obj).ok()
}

/// The first of `keys` present as a string (numbers are rendered), ignoring nulls.
fn opt_string(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match obj.get(*k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The first of `keys` that is present and not null.
fn first_present<'a>(
    obj: &'a Map<String, Value>,
    keys: &[&'static str],
) -> Option<(&'static str, &'a Value)> {
    keys.iter()
        .find_map(|k| obj.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
}

/// `job_id` as a non-empty string (a number is accepted and rendered).
fn required_id(msg_type: &str, obj: &Map<String, Value>) -> Result<String, ProtocolError> {
    let id = match obj.get("job_id") {
        None | Some(Value::Null) => {
            return Err(ProtocolError::MissingField {
                msg_type: msg_type.to_string(),
                field: "job_id",
            })
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(ProtocolError::InvalidField {
                msg_type: msg_type.to_string(),
                field: "job_id",
                reason: "expected a string".to_string(),
            })
        }
    };
    if id.is_empty() {
        return Err(ProtocolError::InvalidField {
            msg_type: msg_type.to_string(),
            field: "job_id",
            reason: "it is empty".to_string(),
        });
    }
    let chars = id.chars().count();
    if chars > MAX_JOB_ID_CHARS {
        return Err(ProtocolError::InvalidField {
            msg_type: msg_type.to_string(),
            field: "job_id",
            reason: format!(
                "it is {chars} characters long; at most {MAX_JOB_ID_CHARS} are allowed"
            ),
        });
    }
    Ok(id)
}

fn parse_assignment(
    msg_type: &str,
    obj: &Map<String, Value>,
) -> Result<JobAssignment, ProtocolError> {
    let invalid = |field: &'static str, reason: &str| ProtocolError::InvalidField {
        msg_type: msg_type.to_string(),
        field,
        reason: reason.to_string(),
    };
    let job_id = required_id(msg_type, obj)?;
    let workflow = match first_present(obj, &["workflow_data", "workflow_json", "workflow"]) {
        None => {
            return Err(ProtocolError::MissingField {
                msg_type: msg_type.to_string(),
                field: "workflow_data/workflow_json/workflow",
            })
        }
        Some((_, Value::Object(o))) => Value::Object(o.clone()),
        Some(("workflow_json", Value::String(s))) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Value::Object(o),
            Ok(_) => {
                return Err(invalid(
                    "workflow_json",
                    "the string does not hold a json object",
                ))
            }
            Err(e) => {
                return Err(invalid(
                    "workflow_json",
                    &format!("the string is not valid json: {e}"),
                ))
            }
        },
        Some((field, _)) => return Err(invalid(field, "expected a json object")),
    };
    let mut workflow = workflow;
    crate::engine::subflow::embed(&mut workflow, obj.get("subflows"));
    let mut variables = match first_present(obj, &["variables", "parameters"]) {
        None => Map::new(),
        Some((_, Value::Object(o))) => o.clone(),
        Some((field, _)) => return Err(invalid(field, "expected a json object")),
    };
    super::trigger_fields::merge_into(obj, &mut variables)
        .map_err(|(field, reason)| invalid(field, &reason))?;
    let timeout = match first_present(obj, &["timeout", "timeout_seconds"]) {
        None => None,
        Some((_, Value::Number(n))) => n.as_f64().filter(|t| t.is_finite() && *t > 0.0),
        Some((field, _)) => return Err(invalid(field, "expected a number of seconds")),
    };
    Ok(JobAssignment {
        job_id,
        workflow_id: opt_string(obj, &["workflow_id"]),
        workflow,
        variables,
        timeout,
        priority: obj.get("priority").and_then(Value::as_i64),
    })
}

// ---------------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------------

/// The robot's state as reported in heartbeats and status responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RobotStatus {
    /// Connected, no job running, taking jobs.
    #[default]
    Idle,
    /// At least one job running.
    Busy,
    /// Not taking new jobs (paused by the orchestrator).
    Paused,
    /// Shutting down (draining).
    Stopping,
}

impl RobotStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RobotStatus::Idle => "idle",
            RobotStatus::Busy => "busy",
            RobotStatus::Paused => "paused",
            RobotStatus::Stopping => "stopping",
        }
    }
}

/// What the robot can do, sent with `register`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Capabilities {
    /// Kinds of work (`capabilities.types`, one of the two fields the real server reads).
    pub types: Vec<String>,
    /// Jobs run at once (the other field the real server reads).
    pub max_concurrent_jobs: usize,
    /// Operating system (`Linux`, `Windows`, `macOS`).
    pub platform: String,
    /// Host name.
    pub hostname: String,
    /// Robot version.
    pub version: String,
    /// Node types this robot can execute.
    pub node_types: Vec<String>,
    /// Free routing tags.
    pub tags: Vec<String>,
    /// Logical CPUs.
    pub cpu_cores: usize,
    /// Physical memory in GB (two decimals are enough).
    pub memory_gb: f64,
}

/// The figures of one heartbeat.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HeartbeatInfo {
    /// Robot state.
    pub status: RobotStatus,
    /// Number of jobs running.
    pub current_jobs: usize,
    /// Ids of the jobs running.
    pub active_job_ids: Vec<String>,
    /// Host CPU use, percent.
    pub cpu_percent: f64,
    /// Host memory use, percent.
    pub memory_percent: f64,
    /// This process's resident memory in MB.
    pub memory_mb: f64,
    /// Use of the data directory's disk, percent.
    pub disk_percent: f64,
    /// A summary of the robot's own metrics (an object; `null` sends `{}`).
    pub metrics: Value,
}

/// The body of a `status_response`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatusInfo {
    /// Robot state.
    pub status: RobotStatus,
    /// Number of jobs running.
    pub current_jobs: usize,
    /// Ids of the jobs running.
    pub active_job_ids: Vec<String>,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// Platform, resources, connection and breaker state (an object).
    pub system_info: Value,
}

/// One entry of a `log_batch`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// RFC 3339 time of the record.
    pub timestamp: String,
    /// `TRACE`, `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.
    pub level: String,
    /// The text.
    pub message: String,
    /// Where it came from (module or node id).
    pub source: String,
    /// Extra structured fields (an object; `null` sends `{}`).
    pub extra: Value,
}

/// A message from the robot to the orchestrator.
#[derive(Clone, Debug, PartialEq)]
pub enum Outbound {
    /// Sent first, right after connecting.
    Register {
        /// Display name.
        robot_name: String,
        /// Routing tag (`lan`, `internet`, `default`, ...).
        environment: String,
        /// What the robot can do.
        capabilities: Capabilities,
    },
    /// Periodic presence (`status_update` in the reference dialect).
    Heartbeat(HeartbeatInfo),
    /// The job was recorded and will run.
    JobAccept {
        /// The job.
        job_id: String,
    },
    /// The job will not run here.
    JobReject {
        /// The job.
        job_id: String,
        /// Why (capacity, draining, unsupported node types listed).
        reason: String,
    },
    /// Progress of a running job.
    JobProgress {
        /// The job.
        job_id: String,
        /// Percent, 0 to 100 (larger values are clamped).
        progress: u8,
        /// The node running, if any.
        current_node: Option<String>,
        /// A human-readable line, if any.
        message: Option<String>,
    },
    /// The job succeeded.
    JobComplete {
        /// The job.
        job_id: String,
        /// The engine's result object (`outputs`, `executed_nodes`, `total_nodes`, `recovered`, ...).
        result: Value,
        /// Wall time of execution proper.
        duration_ms: u64,
    },
    /// The job failed.
    JobFailed {
        /// The job.
        job_id: String,
        /// `"<node_id> (<NodeType>): <message>"`.
        error: String,
        /// Error class (`NodeError`, `Timeout`, ...).
        error_type: String,
        /// The failing node, if known.
        failed_node: Option<String>,
        /// Wall time of execution proper.
        duration_ms: u64,
    },
    /// The job was cancelled.
    JobCancelled {
        /// The job.
        job_id: String,
    },
    /// Log records (at most [`MAX_LOG_BATCH`] per batch).
    LogBatch {
        /// Increasing batch number.
        sequence: u64,
        /// The records.
        logs: Vec<LogEntry>,
    },
    /// Answer to `status_request`.
    StatusResponse(StatusInfo),
    /// Answer to `ping`.
    Pong,
}

impl Outbound {
    /// The `type` this message has on the wire in `dialect`.
    pub fn msg_type(&self, dialect: Dialect) -> &'static str {
        let reference = dialect == Dialect::Reference;
        match self {
            Outbound::Register { .. } => "register",
            Outbound::Heartbeat(_) if reference => "status_update",
            Outbound::Heartbeat(_) => "heartbeat",
            Outbound::JobAccept { .. } => "job_accept",
            Outbound::JobReject { .. } => "job_reject",
            Outbound::JobProgress { .. } => "job_progress",
            Outbound::JobComplete { .. }
            | Outbound::JobFailed { .. }
            | Outbound::JobCancelled { .. }
                if reference =>
            {
                "job_result"
            }
            Outbound::JobComplete { .. } => "job_complete",
            Outbound::JobFailed { .. } => "job_failed",
            Outbound::JobCancelled { .. } => "job_cancelled",
            Outbound::LogBatch { .. } => "log_batch",
            Outbound::StatusResponse(_) => "status_response",
            Outbound::Pong => "pong",
        }
    }

    /// The job this message is about, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Outbound::JobAccept { job_id }
            | Outbound::JobReject { job_id, .. }
            | Outbound::JobProgress { job_id, .. }
            | Outbound::JobComplete { job_id, .. }
            | Outbound::JobFailed { job_id, .. }
            | Outbound::JobCancelled { job_id } => Some(job_id),
            _ => None,
        }
    }
}

/// Encodes `msg` as a JSON text frame in `dialect`, stamped with the current time.
pub fn encode(msg: &Outbound, dialect: Dialect, robot_id: &str) -> String {
    encode_at(msg, dialect, robot_id, Utc::now())
}

/// Like [`encode`] with an explicit clock, for exact tests.
pub fn encode_at(msg: &Outbound, dialect: Dialect, robot_id: &str, now: DateTime<Utc>) -> String {
    to_value(msg, dialect, robot_id, now).to_string()
}

/// An object, or `{}` for anything else (null included).
fn object_or_empty(v: &Value) -> Value {
    if v.is_object() {
        v.clone()
    } else {
        Value::Object(Map::new())
    }
}

/// Builds the JSON object of `msg` (what [`encode_at`] serialises).
pub fn to_value(msg: &Outbound, dialect: Dialect, robot_id: &str, now: DateTime<Utc>) -> Value {
    let timestamp = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let msg_type = msg.msg_type(dialect);
    let reference = dialect == Dialect::Reference;
    match msg {
        Outbound::Register {
            robot_name,
            environment,
            capabilities: c,
        } => json!({
            "type": msg_type,
            "robot_id": robot_id,
            "robot_name": robot_name,
            "environment": environment,
            "tenant_id": null,
            "capabilities": {
                "types": c.types,
                "max_concurrent_jobs": c.max_concurrent_jobs,
                "platform": c.platform,
                "hostname": c.hostname,
                "version": c.version,
                "node_types": c.node_types,
                "tags": c.tags,
                "cpu_cores": c.cpu_cores,
                "memory_gb": (c.memory_gb * 100.0).round() / 100.0,
                "browser_engines": [],
                "desktop_automation": false,
            },
            "timestamp": timestamp,
        }),
        Outbound::Heartbeat(h) if reference => {
            let mut metrics = Map::new();
            metrics.insert("cpu_percent".into(), json!(h.cpu_percent));
            metrics.insert("memory_percent".into(), json!(h.memory_percent));
            metrics.insert("memory_mb".into(), json!(h.memory_mb));
            metrics.insert("disk_percent".into(), json!(h.disk_percent));
            metrics.insert("current_jobs".into(), json!(h.current_jobs));
            metrics.insert("active_job_ids".into(), json!(h.active_job_ids));
            if let Value::Object(extra) = &h.metrics {
                for (k, v) in extra {
                    metrics.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            json!({
                "type": msg_type,
                "robot_id": robot_id,
                "status": h.status.as_str(),
                "current_job": h.active_job_ids.first(),
                "metrics": metrics,
                "timestamp": timestamp,
            })
        }
        Outbound::Heartbeat(h) => json!({
            "type": msg_type,
            "robot_id": robot_id,
            "status": h.status.as_str(),
            "current_jobs": h.current_jobs,
            "active_job_ids": h.active_job_ids,
            "cpu_percent": h.cpu_percent,
            "memory_percent": h.memory_percent,
            "memory_mb": h.memory_mb,
            "disk_percent": h.disk_percent,
            "metrics": object_or_empty(&h.metrics),
            "timestamp": timestamp,
        }),
        Outbound::JobAccept { job_id } => json!({
            "type": msg_type, "job_id": job_id, "robot_id": robot_id, "timestamp": timestamp,
        }),
        Outbound::JobReject { job_id, reason } => json!({
            "type": msg_type, "job_id": job_id, "robot_id": robot_id, "reason": reason,
            "timestamp": timestamp,
        }),
        Outbound::JobProgress {
            job_id,
            progress,
            current_node,
            message,
        } => json!({
            "type": msg_type,
            "job_id": job_id,
            "robot_id": robot_id,
            "progress": (*progress).min(100),
            "current_node": current_node,
            "message": message,
            "timestamp": timestamp,
        }),
        Outbound::JobComplete {
            job_id,
            result,
            duration_ms,
        } => {
            let outputs = object_or_empty(result.get("outputs").unwrap_or(&Value::Null));
            let field = |k: &str, default: Value| result.get(k).cloned().unwrap_or(default);
            // A result sent truncated (see `link::bound`) says so.
            let truncated = ["truncated", "result_bytes"]
                .into_iter()
                .filter_map(|k| result.get(k).map(|v| (k.to_string(), v.clone())));
            if reference {
                let mut msg = json!({
                    "type": msg_type,
                    "job_id": job_id,
                    "robot_id": robot_id,
                    "status": "completed",
                    "outputs": outputs,
                    "execution_time": *duration_ms as f64 / 1000.0,
                    "error": null,
                    "timestamp": timestamp,
                });
                if let Some(obj) = msg.as_object_mut() {
                    obj.extend(truncated);
                }
                return msg;
            }
            let executed = field("executed_nodes", json!(0));
            let mut msg = json!({
                "type": msg_type,
                "job_id": job_id,
                "robot_id": robot_id,
                "result": {
                    "success": true,
                    "outputs": outputs,
                    "executed_nodes": executed,
                    "total_nodes": field("total_nodes", json!(0)),
                    "duration_ms": duration_ms,
                    // The precise figure (duration_ms is whole milliseconds, as JobDetails says).
                    "duration_s": field("duration_s", json!(*duration_ms as f64 / 1000.0)),
                    "recovered": field("recovered", json!(false)),
                    // The per-node list, as in the REST result (the orchestrator's job view).
                    "node_executions": field("node_executions", json!([])),
                    "node_execution_count": field("node_execution_count", json!(0)),
                    "node_executions_omitted": field("node_executions_omitted", json!(0)),
                    // The names the upstream Python robot used (seen in the captures).
                    "nodes_executed": executed,
                    "variables": outputs,
                    "error": null,
                },
                "duration_ms": duration_ms,
                "timestamp": timestamp,
            });
            if let Some(obj) = msg["result"].as_object_mut() {
                obj.extend(truncated);
            }
            msg
        }
        Outbound::JobFailed {
            job_id,
            error,
            error_type,
            failed_node,
            duration_ms,
        } if reference => json!({
            "type": msg_type,
            "job_id": job_id,
            "robot_id": robot_id,
            "status": "failed",
            "outputs": {},
            "execution_time": *duration_ms as f64 / 1000.0,
            "error": error,
            "error_type": error_type,
            "failed_node": failed_node,
            "timestamp": timestamp,
        }),
        Outbound::JobFailed {
            job_id,
            error,
            error_type,
            failed_node,
            duration_ms,
        } => json!({
            "type": msg_type,
            "job_id": job_id,
            "robot_id": robot_id,
            "error": error,
            "error_message": error,
            "error_type": error_type,
            "failed_node": failed_node,
            "duration_ms": duration_ms,
            "timestamp": timestamp,
        }),
        Outbound::JobCancelled { job_id } if reference => json!({
            "type": msg_type,
            "job_id": job_id,
            "robot_id": robot_id,
            "status": "cancelled",
            "outputs": {},
            "execution_time": null,
            "error": null,
            "timestamp": timestamp,
        }),
        Outbound::JobCancelled { job_id } => json!({
            "type": msg_type, "job_id": job_id, "robot_id": robot_id, "timestamp": timestamp,
        }),
        Outbound::LogBatch { sequence, logs } => {
            let logs: Vec<Value> = logs
                .iter()
                .map(|l| {
                    json!({
                        "timestamp": l.timestamp,
                        "level": l.level,
                        "message": l.message,
                        "source": l.source,
                        "extra": object_or_empty(&l.extra),
                    })
                })
                .collect();
            json!({"type": msg_type, "robot_id": robot_id, "sequence": sequence, "logs": logs})
        }
        Outbound::StatusResponse(s) => json!({
            "type": msg_type,
            "robot_id": robot_id,
            "status": s.status.as_str(),
            "current_jobs": s.current_jobs,
            "active_job_ids": s.active_job_ids,
            "uptime_seconds": s.uptime_seconds,
            "system_info": object_or_empty(&s.system_info),
            "timestamp": timestamp,
        }),
        Outbound::Pong => json!({"type": msg_type, "robot_id": robot_id, "timestamp": timestamp}),
    }
}

// ---------------------------------------------------------------------------------------------
// URL
// ---------------------------------------------------------------------------------------------

/// Builds the WebSocket URL of `protocol.md`.
///
/// No path (or `/`) → `{url}/ws/robot/{robot_id}`; a path containing `{robot_id}` → substituted;
/// any other path → `/{robot_id}` appended. With a non-empty `api_key`, the query gets
/// `api_key=<percent-encoded key>` (merged with an existing query, replacing an `api_key` there).
/// Only `ws://` and `wss://` are accepted; a fragment is dropped.
pub fn ws_url(
    orchestrator_url: &str,
    robot_id: &str,
    api_key: Option<&str>,
) -> Result<String, ProtocolError> {
    let url = orchestrator_url.trim();
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        ProtocolError::Url(format!("{url:?} has no scheme (expected ws:// or wss://)"))
    })?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "ws" && scheme != "wss" {
        return Err(ProtocolError::Url(format!(
            "{url:?} uses {scheme}://, expected ws:// or wss://"
        )));
    }
    if robot_id.is_empty() {
        return Err(ProtocolError::Url("the robot id is empty".to_string()));
    }
    let rest = rest.split('#').next().unwrap_or_default();
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, q),
        None => (rest, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => (&before_query[..i], &before_query[i..]),
        None => (before_query, ""),
    };
    if authority.is_empty() || authority.starts_with(':') {
        return Err(ProtocolError::Url(format!("{url:?} has no host")));
    }
    if authority.chars().any(|c| c.is_whitespace()) {
        return Err(ProtocolError::Url(format!(
            "{url:?} has whitespace in its host"
        )));
    }
    let id = percent_encode(robot_id);
    let path = if path.is_empty() || path == "/" {
        format!("/ws/robot/{id}")
    } else if path.contains("{robot_id}") {
        path.replace("{robot_id}", &id)
    } else {
        format!("{}/{id}", path.trim_end_matches('/'))
    };
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(key) = api_key.filter(|k| !k.is_empty()) {
        params.retain(|p| p != "api_key" && !p.starts_with("api_key="));
        params.push(format!("api_key={}", percent_encode(key)));
    }
    let mut out = format!("{scheme}://{authority}{path}");
    if !params.is_empty() {
        out.push('?');
        out.push_str(&params.join("&"));
    }
    Ok(out)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::path::PathBuf;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 4, 20, 5).unwrap()
    }

    fn enc(msg: &Outbound, dialect: Dialect) -> Value {
        let text = encode_at(msg, dialect, "robot-cap-1", now());
        serde_json::from_str(&text).expect("encode produces json")
    }

    /// The captures folder, when the shared fixtures sit next to the checkout.
    fn captures_dir() -> Option<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/casare/orchestrator");
        dir.is_dir().then_some(dir)
    }

    /// `(direction, message)` of every `head-ws-*.json` capture.
    fn captured_messages() -> Option<Vec<(String, Value)>> {
        let dir = captures_dir()?;
        let mut out = Vec::new();
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("read captures dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("head-ws-") && name.ends_with(".json")
            })
            .collect();
        names.sort();
        assert!(
            !names.is_empty(),
            "no head-ws-*.json captures in {}",
            dir.display()
        );
        for path in names {
            let text = std::fs::read_to_string(&path).expect("read capture");
            let items: Vec<Value> = serde_json::from_str(&text).expect("capture is a json array");
            for item in items {
                let dir = item["dir"].as_str().unwrap_or("").to_string();
                out.push((dir, item["msg"].clone()));
            }
        }
        Some(out)
    }

    // ---- inbound: real server messages ------------------------------------------------------

    /// Literal copies of the real server's messages (head-ws-job-roundtrip.json), so the suite
    /// means something without `../shared`.
    const REAL_REGISTER_ACK: &str = r#"{"type":"register_ack","robot_id":"robot-cap-1","timestamp":"2026-11-26T04:23:20.361597+00:00"}"#;
    const REAL_HEARTBEAT_ACK: &str =
        r#"{"type":"heartbeat_ack","timestamp":"2026-11-26T04:23:20.362056+00:00"}"#;
    const REAL_JOB_ASSIGN: &str = r#"{"type":"job_assign","job_id":"0d8be270-2d06-4ecb-bd70-17e7ead86029",
        "workflow_id":"wf-batch-1-1","workflow_data":{"<omitted>":"5754 bytes","metadata":{
        "name":"Batch 1.1 - Variables & Data Types","version":"1.0.0"}},
        "variables":{"injected_var":"via-ws"},"timeout":3600,"timestamp":"2026-11-26T04:23:23.514847+00:00"}"#;

    #[test]
    fn real_server_messages_embedded() {
        assert_eq!(
            parse_inbound(REAL_REGISTER_ACK),
            Ok(Inbound::RegisterAck {
                success: true,
                message: None
            })
        );
        assert_eq!(parse_inbound(REAL_HEARTBEAT_ACK), Ok(Inbound::HeartbeatAck));
        let Ok(Inbound::JobAssign(job)) = parse_inbound(REAL_JOB_ASSIGN) else {
            panic!("job_assign did not parse")
        };
        assert_eq!(job.job_id, "0d8be270-2d06-4ecb-bd70-17e7ead86029");
        assert_eq!(job.workflow_id.as_deref(), Some("wf-batch-1-1"));
        assert_eq!(job.workflow["metadata"]["version"], json!("1.0.0"));
        assert_eq!(job.variables.get("injected_var"), Some(&json!("via-ws")));
        assert_eq!(job.timeout, Some(3600.0));
        assert_eq!(job.priority, None);
    }

    #[test]
    fn unknown_message_types_are_bounded() {
        let unknown = |t: &str| match parse_inbound(&json!({ "type": t }).to_string()) {
            Ok(Inbound::Unknown { msg_type }) => msg_type,
            other => panic!("{other:?}"),
        };
        assert_eq!(unknown("made_up"), "made_up");
        let longest = "t".repeat(MAX_UNKNOWN_TYPE_CHARS);
        assert_eq!(unknown(&longest), longest);
        let cut = unknown(&"é".repeat(1_000_000));
        assert_eq!(cut, format!("{}…", "é".repeat(MAX_UNKNOWN_TYPE_CHARS)));
    }

    #[test]
    fn job_ids_are_bounded() {
        let msg = |id: &str| json!({"type": "job_cancel", "job_id": id}).to_string();
        let longest = "j".repeat(MAX_JOB_ID_CHARS);
        assert!(
            matches!(parse_inbound(&msg(&longest)), Ok(Inbound::JobCancel { job_id, .. }) if job_id == longest)
        );
        let err = parse_inbound(&msg(&"j".repeat(1_000_000))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "job_cancel message has an invalid \"job_id\": it is 1000000 characters long; at most 256 are allowed"
        );
        let assign = json!({"type": "job_assign", "job_id": "é".repeat(257), "workflow_data": {}});
        assert!(matches!(
            parse_inbound(&assign.to_string()),
            Err(ProtocolError::InvalidField {
                field: "job_id",
                ..
            })
        ));
    }

    #[test]
    fn every_captured_server_message_parses() {
        let Some(messages) = captured_messages() else {
            eprintln!("note: ../shared/fixtures not found; capture files skipped (embedded copies still tested)");
            return;
        };
        let mut n_checked = 0;
        for (dir, msg) in messages.iter().filter(|(d, _)| d == "server->client") {
            let parsed =
                parse_inbound(&msg.to_string()).unwrap_or_else(|e| panic!("{dir} {msg}: {e}"));
            let expected = msg["type"].as_str().unwrap();
            assert_eq!(parsed.kind(), expected, "{msg}");
            assert!(!matches!(parsed, Inbound::Unknown { .. }), "{msg}");
            if let Inbound::JobAssign(job) = &parsed {
                assert_eq!(Some(job.job_id.as_str()), msg["job_id"].as_str());
                assert!(job.workflow.is_object());
                assert_eq!(Value::Object(job.variables.clone()), msg["variables"]);
                assert_eq!(job.timeout, msg["timeout"].as_f64());
            }
            n_checked += 1;
        }
        assert!(n_checked >= 5, "only {n_checked} server messages found");
    }

    // ---- outbound: field names against the real robot's messages ----------------------------

    /// The `Outbound` equivalent to a captured robot message.
    fn outbound_like(msg: &Value) -> Outbound {
        let s = |k: &str| msg[k].as_str().unwrap_or_default().to_string();
        match msg["type"].as_str().unwrap() {
            "register" => Outbound::Register {
                robot_name: s("robot_name"),
                environment: s("environment"),
                capabilities: Capabilities {
                    max_concurrent_jobs: 1,
                    platform: "Linux".into(),
                    ..Capabilities::default()
                },
            },
            "heartbeat" => Outbound::Heartbeat(HeartbeatInfo {
                cpu_percent: msg["cpu_percent"].as_f64().unwrap_or(0.0),
                ..HeartbeatInfo::default()
            }),
            "status_response" => Outbound::StatusResponse(StatusInfo::default()),
            "pong" => Outbound::Pong,
            "job_accept" => Outbound::JobAccept {
                job_id: s("job_id"),
            },
            "job_progress" => Outbound::JobProgress {
                job_id: s("job_id"),
                progress: msg["progress"].as_u64().unwrap() as u8,
                current_node: msg["current_node"].as_str().map(str::to_string),
                message: None,
            },
            "job_complete" => Outbound::JobComplete {
                job_id: s("job_id"),
                result: json!({"success": true, "outputs": {"a": 1}, "executed_nodes": 8,
                               "total_nodes": 8, "duration_ms": 42, "recovered": false}),
                duration_ms: 42,
            },
            other => panic!("no equivalent for captured robot message {other}"),
        }
    }

    /// Every field name of `real` (recursively into `capabilities` and `result`) is in `ours`.
    fn assert_has_fields(real: &Value, ours: &Value, at: &str) {
        let (Some(real), Some(ours_obj)) = (real.as_object(), ours.as_object()) else {
            panic!("{at}: not objects")
        };
        for (key, value) in real {
            assert!(
                ours_obj.contains_key(key),
                "{at}: field {key:?} missing in {ours}"
            );
            if matches!(key.as_str(), "capabilities" | "result") && value.is_object() {
                assert_has_fields(value, &ours[key], &format!("{at}.{key}"));
            }
        }
    }

    #[test]
    fn encoded_messages_carry_every_field_the_real_robot_sent() {
        let Some(messages) = captured_messages() else {
            eprintln!("note: ../shared/fixtures not found; capture comparison skipped");
            return;
        };
        let mut n_checked = 0;
        for (_, real) in messages.iter().filter(|(d, _)| d == "client->server") {
            let ours = enc(&outbound_like(real), Dialect::Casare);
            assert_eq!(ours["type"], real["type"]);
            assert_has_fields(real, &ours, real["type"].as_str().unwrap());
            if let Some(id) = real.get("job_id") {
                assert_eq!(&ours["job_id"], id);
            }
            n_checked += 1;
        }
        assert!(n_checked >= 10, "only {n_checked} robot messages found");
    }

    #[test]
    fn embedded_real_robot_messages_field_names() {
        let real_register: Value = serde_json::from_str(
            r#"{"type":"register","robot_id":"robot-cap-1","robot_name":"Capture Robot",
            "capabilities":{"platform":"Linux","browser_engines":[],"desktop_automation":false,
            "max_concurrent_jobs":1,"cpu_cores":2,"memory_gb":24.0,"tags":[]},
            "environment":"default","tenant_id":null}"#,
        )
        .unwrap();
        let real_heartbeat: Value = serde_json::from_str(
            r#"{"type":"heartbeat","robot_id":"robot-cap-1","status":"idle","current_jobs":0,
            "cpu_percent":3.5,"memory_percent":41.0,"disk_percent":12.0,"active_job_ids":[]}"#,
        )
        .unwrap();
        let real_complete: Value = serde_json::from_str(
            r#"{"type":"job_complete","job_id":"j1","robot_id":"robot-cap-1","result":{"success":true,
            "nodes_executed":8,"duration_ms":42,"error":null,"variables":{"x":1}}}"#,
        )
        .unwrap();
        for real in [real_register, real_heartbeat, real_complete] {
            let ours = enc(&outbound_like(&real), Dialect::Casare);
            assert_has_fields(&real, &ours, real["type"].as_str().unwrap());
        }
    }

    // ---- outbound: exact shapes of protocol.md ----------------------------------------------

    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    fn sample_messages() -> Vec<Outbound> {
        vec![
            Outbound::Register {
                robot_name: "Robot-host".into(),
                environment: "lan".into(),
                capabilities: Capabilities {
                    types: vec!["headless".into()],
                    max_concurrent_jobs: 2,
                    platform: "Linux".into(),
                    hostname: "host".into(),
                    version: "0.1.0".into(),
                    node_types: vec!["SetVariable".into()],
                    tags: vec![],
                    cpu_cores: 2,
                    memory_gb: 15.937,
                },
            },
            Outbound::Heartbeat(HeartbeatInfo {
                status: RobotStatus::Busy,
                current_jobs: 1,
                active_job_ids: vec!["j1".into()],
                cpu_percent: 1.5,
                memory_percent: 20.0,
                memory_mb: 6.2,
                disk_percent: 30.0,
                metrics: json!({"jobs_completed": 3}),
            }),
            Outbound::JobAccept {
                job_id: "j1".into(),
            },
            Outbound::JobReject {
                job_id: "j1".into(),
                reason: "unsupported node types: BrowserOpen".into(),
            },
            Outbound::JobProgress {
                job_id: "j1".into(),
                progress: 250,
                current_node: Some("n1".into()),
                message: None,
            },
            Outbound::JobComplete {
                job_id: "j1".into(),
                result: json!({"success": true, "status": "completed", "outputs": {"total": 3, "_x": 1},
                               "executed_nodes": 4, "total_nodes": 5,
                               "node_executions": [{"node_id": "n1", "node_type": "LogNode",
                                   "duration_ms": 1, "success": true, "order": 1,
                                   "start_time": "2026-11-26T04:20:05.000000Z"}],
                               "node_execution_count": 9, "node_executions_omitted": 8,
                               "duration_ms": 12, "recovered": true, "node_outputs": {"n1": {}}}),
                duration_ms: 12,
            },
            Outbound::JobFailed {
                job_id: "j1".into(),
                error: "n2 (Fail): boom".into(),
                error_type: "NodeError".into(),
                failed_node: Some("n2".into()),
                duration_ms: 1500,
            },
            Outbound::JobCancelled {
                job_id: "j1".into(),
            },
            Outbound::LogBatch {
                sequence: 7,
                logs: vec![LogEntry {
                    timestamp: "2026-11-26T04:20:05.000Z".into(),
                    level: "INFO".into(),
                    message: "hello".into(),
                    source: "n1".into(),
                    extra: Value::Null,
                }],
            },
            Outbound::StatusResponse(StatusInfo {
                status: RobotStatus::Idle,
                current_jobs: 0,
                active_job_ids: vec![],
                uptime_seconds: 61,
                system_info: json!({"platform": "Linux"}),
            }),
            Outbound::Pong,
        ]
    }

    #[test]
    fn casare_shapes_follow_protocol_md() {
        let expected: &[(&str, &[&str])] = &[
            (
                "register",
                &[
                    "type",
                    "robot_id",
                    "robot_name",
                    "environment",
                    "tenant_id",
                    "capabilities",
                ],
            ),
            (
                "heartbeat",
                &[
                    "type",
                    "robot_id",
                    "status",
                    "current_jobs",
                    "active_job_ids",
                    "cpu_percent",
                    "memory_percent",
                    "memory_mb",
                    "metrics",
                    "timestamp",
                ],
            ),
            ("job_accept", &["type", "job_id", "robot_id"]),
            ("job_reject", &["type", "job_id", "robot_id", "reason"]),
            (
                "job_progress",
                &[
                    "type",
                    "job_id",
                    "robot_id",
                    "progress",
                    "current_node",
                    "message",
                ],
            ),
            ("job_complete", &["type", "job_id", "robot_id", "result"]),
            (
                "job_failed",
                &[
                    "type",
                    "job_id",
                    "robot_id",
                    "error",
                    "error_message",
                    "error_type",
                    "failed_node",
                    "duration_ms",
                ],
            ),
            ("job_cancelled", &["type", "job_id", "robot_id"]),
            ("log_batch", &["type", "robot_id", "sequence", "logs"]),
            (
                "status_response",
                &[
                    "type",
                    "robot_id",
                    "status",
                    "current_jobs",
                    "active_job_ids",
                    "uptime_seconds",
                    "system_info",
                ],
            ),
            ("pong", &["type", "robot_id", "timestamp"]),
        ];
        let msgs = sample_messages();
        assert_eq!(msgs.len(), expected.len());
        for (msg, (ty, fields)) in msgs.iter().zip(expected) {
            let v = enc(msg, Dialect::Casare);
            assert_eq!(v["type"], json!(ty));
            assert_eq!(msg.msg_type(Dialect::Casare), *ty);
            for f in *fields {
                assert!(v.get(*f).is_some(), "{ty}: field {f} missing in {v}");
            }
            if *ty != "log_batch" && *ty != "register" {
                assert_eq!(v["robot_id"], json!("robot-cap-1"));
            }
        }
        let reg = enc(&msgs[0], Dialect::Casare);
        assert_eq!(reg["tenant_id"], Value::Null);
        for f in [
            "types",
            "max_concurrent_jobs",
            "platform",
            "hostname",
            "version",
            "node_types",
            "tags",
        ] {
            assert!(reg["capabilities"].get(f).is_some(), "capabilities.{f}");
        }
        assert_eq!(reg["capabilities"]["memory_gb"], json!(15.94));
        let hb = enc(&msgs[1], Dialect::Casare);
        assert_eq!(hb["status"], json!("busy"));
        assert_eq!(hb["timestamp"], json!("2026-11-26T04:20:05.000Z"));
        assert_eq!(hb["metrics"], json!({"jobs_completed": 3}));
        let progress = enc(&msgs[4], Dialect::Casare);
        assert_eq!(progress["progress"], json!(100), "clamped");
        assert_eq!(progress["message"], Value::Null);
        let done = enc(&msgs[5], Dialect::Casare);
        let result = &done["result"];
        assert_eq!(
            keys(result),
            [
                "success",
                "outputs",
                "executed_nodes",
                "total_nodes",
                "duration_ms",
                "duration_s",
                "recovered",
                "node_executions",
                "node_execution_count",
                "node_executions_omitted",
                "nodes_executed",
                "variables",
                "error"
            ]
        );
        assert_eq!(result["node_executions"][0]["node_id"], json!("n1"));
        assert_eq!(result["node_execution_count"], json!(9));
        assert_eq!(result["node_executions_omitted"], json!(8));
        assert_eq!(result["success"], json!(true));
        assert_eq!(result["executed_nodes"], json!(4));
        assert_eq!(result["total_nodes"], json!(5));
        assert_eq!(result["recovered"], json!(true));
        assert_eq!(result["duration_ms"], json!(12));
        assert_eq!(
            result["outputs"],
            json!({"total": 3, "_x": 1}),
            "outputs are passed through as given"
        );
        let failed = enc(&msgs[6], Dialect::Casare);
        assert_eq!(failed["error"], failed["error_message"]);
        assert_eq!(failed["failed_node"], json!("n2"));
        let logs = enc(&msgs[8], Dialect::Casare);
        assert_eq!(
            keys(&logs["logs"][0]),
            ["timestamp", "level", "message", "source", "extra"]
        );
        assert_eq!(logs["logs"][0]["extra"], json!({}));
    }

    #[test]
    fn reference_dialect_names_and_shapes() {
        let msgs = sample_messages();
        let types: Vec<&str> = msgs
            .iter()
            .map(|m| m.msg_type(Dialect::Reference))
            .collect();
        assert_eq!(
            types,
            [
                "register",
                "status_update",
                "job_accept",
                "job_reject",
                "job_progress",
                "job_result",
                "job_result",
                "job_result",
                "log_batch",
                "status_response",
                "pong"
            ]
        );
        let su = enc(&msgs[1], Dialect::Reference);
        for f in ["robot_id", "status", "current_job", "metrics"] {
            assert!(su.get(f).is_some(), "status_update.{f}");
        }
        assert_eq!(su["current_job"], json!("j1"));
        assert_eq!(su["metrics"]["cpu_percent"], json!(1.5));
        assert_eq!(su["metrics"]["jobs_completed"], json!(3));
        let idle = enc(
            &Outbound::Heartbeat(HeartbeatInfo::default()),
            Dialect::Reference,
        );
        assert_eq!(idle["current_job"], Value::Null);

        let expect = [
            (5, "completed", json!(0.012), Value::Null),
            (6, "failed", json!(1.5), json!("n2 (Fail): boom")),
            (7, "cancelled", Value::Null, Value::Null),
        ];
        for (idx, status, time, error) in expect {
            let v = enc(&msgs[idx], Dialect::Reference);
            assert_eq!(v["type"], json!("job_result"));
            assert_eq!(v["job_id"], json!("j1"));
            assert_eq!(v["status"], json!(status));
            assert!(v["outputs"].is_object());
            assert_eq!(v["execution_time"], time);
            assert_eq!(v["error"], error);
        }
        assert_eq!(
            enc(&msgs[5], Dialect::Reference)["outputs"],
            json!({"total": 3, "_x": 1})
        );
        // Messages without a reference name are the same in both dialects.
        for idx in [0, 2, 3, 4, 8, 9, 10] {
            assert_eq!(
                enc(&msgs[idx], Dialect::Reference),
                enc(&msgs[idx], Dialect::Casare)
            );
        }
    }

    #[test]
    fn dialect_names() {
        assert_eq!(Dialect::default(), Dialect::Casare);
        assert_eq!(Dialect::parse(" Reference "), Some(Dialect::Reference));
        assert_eq!(Dialect::parse("casare"), Some(Dialect::Casare));
        assert_eq!(Dialect::parse("envelope"), None);
        assert_eq!(Dialect::Reference.job_assign_type(), "job_assignment");
        assert_eq!(Dialect::Casare.to_string(), "casare");
    }

    // ---- inbound: both dialects, every spelling ---------------------------------------------

    fn assign(text: &str) -> JobAssignment {
        match parse_inbound(text) {
            Ok(Inbound::JobAssign(job)) => job,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn trigger_fields_of_an_assignment_become_variables() {
        let job = assign(
            r#"{"type":"job_assign","job_id":"t","workflow":{},"variables":{"x":1},
            "trigger_payload":{"method":"POST"},"input_data":{"trigger_metadata":{"id":"tr1"}}}"#,
        );
        assert_eq!(job.variables.get("x"), Some(&json!(1)));
        assert_eq!(
            job.variables.get("trigger_payload"),
            Some(&json!({"method": "POST"}))
        );
        assert_eq!(
            job.variables.get("trigger_metadata"),
            Some(&json!({"id": "tr1"}))
        );
    }

    #[test]
    fn an_assignments_subflows_travel_inside_its_workflow() {
        let job = assign(
            r#"{"type":"job_assign","job_id":"a","workflow_data":{"nodes":{}},
                "subflows":{"lib/child.json":{"nodes":{}}}}"#,
        );
        assert_eq!(
            job.workflow["subflows"],
            serde_json::json!({"lib/child.json": {"nodes": {}}})
        );
        // A map the workflow already carries is kept.
        let job = assign(
            r#"{"type":"job_assign","job_id":"a","workflow_data":{"nodes":{},"subflows":{"x":{}}},
                "subflows":{"y":{}}}"#,
        );
        assert_eq!(job.workflow["subflows"], serde_json::json!({"x": {}}));
    }

    #[test]
    fn job_assignment_spellings() {
        let wf = r#"{"nodes":{},"connections":[]}"#;
        let cases = [
            format!(r#"{{"type":"job_assign","job_id":"a","workflow_data":{wf}}}"#),
            format!(
                r#"{{"type":"job_assign","job_id":"a","workflow_json":{}}}"#,
                json!(wf)
            ),
            format!(r#"{{"type":"job_assign","job_id":"a","workflow_json":{wf}}}"#),
            format!(r#"{{"type":"job_assignment","job_id":"a","workflow":{wf}}}"#),
            format!(
                r#"{{"type":"job_assignment","job_id":"a","workflow_data":null,"workflow":{wf}}}"#
            ),
        ];
        for text in &cases {
            let job = assign(text);
            assert_eq!(job.job_id, "a");
            assert_eq!(
                job.workflow,
                serde_json::from_str::<Value>(wf).unwrap(),
                "{text}"
            );
            assert!(job.variables.is_empty());
            assert_eq!(job.timeout, None);
        }
        let job = assign(&format!(
            r#"{{"type":"job_assign","job_id":"b","workflow":{wf},"parameters":{{"x":1}},
            "timeout_seconds":90,"priority":3,"workflow_id":"wf1"}}"#
        ));
        assert_eq!(job.variables.get("x"), Some(&json!(1)));
        assert_eq!(job.timeout, Some(90.0));
        assert_eq!(job.priority, Some(3));
        assert_eq!(job.workflow_id.as_deref(), Some("wf1"));
        let job = assign(&format!(
            r#"{{"type":"job_assign","job_id":7,"workflow":{wf},"timeout":0}}"#
        ));
        assert_eq!(job.job_id, "7");
        assert_eq!(job.timeout, None, "a zero timeout means none");
    }

    #[test]
    fn control_messages() {
        let check =
            |text: &str, expected: Inbound| assert_eq!(parse_inbound(text), Ok(expected), "{text}");
        check(
            r#"{"type":"register_ack","success":false,"message":"nope"}"#,
            Inbound::RegisterAck {
                success: false,
                message: Some("nope".into()),
            },
        );
        check(
            r#"{"type":"job_cancel","job_id":"j","reason":"user"}"#,
            Inbound::JobCancel {
                job_id: "j".into(),
                reason: Some("user".into()),
            },
        );
        check(
            r#"{"type":"job_cancel","job_id":"j"}"#,
            Inbound::JobCancel {
                job_id: "j".into(),
                reason: None,
            },
        );
        check(
            r#"{"type":"status_request","robot_id":"r"}"#,
            Inbound::StatusRequest,
        );
        check(r#"{"type":"pause"}"#, Inbound::Pause);
        check(r#"{"type":"resume"}"#, Inbound::Resume);
        check(
            r#"{"type":"shutdown"}"#,
            Inbound::Shutdown { graceful: true },
        );
        check(
            r#"{"type":"shutdown","graceful":false}"#,
            Inbound::Shutdown { graceful: false },
        );
        check(r#"{"type":"ping"}"#, Inbound::Ping);
        check(
            r#"{"type":"error","error_code":"INVALID_JSON","error_message":"bad"}"#,
            Inbound::Error {
                code: Some("INVALID_JSON".into()),
                message: "bad".into(),
            },
        );
        check(
            r#"{"type":"error"}"#,
            Inbound::Error {
                code: None,
                message: String::new(),
            },
        );
        check(
            r#"{"type":"robot_disconnected","extra":1}"#,
            Inbound::Unknown {
                msg_type: "robot_disconnected".into(),
            },
        );
        check(
            r#"{"type":""}"#,
            Inbound::Unknown {
                msg_type: String::new(),
            },
        );
    }

    // ---- malformed input --------------------------------------------------------------------

    #[test]
    fn malformed_frames_are_errors_with_clear_messages() {
        let cases: &[(&str, &str)] = &[
            ("", "frame is not valid json"),
            ("garbage", "frame is not valid json"),
            ("{\"type\":", "frame is not valid json"),
            ("[]", "frame is not a json object"),
            ("42", "frame is not a json object"),
            ("\"ping\"", "frame is not a json object"),
            ("null", "frame is not a json object"),
            ("{}", "frame has no string \"type\" field"),
            (r#"{"type":5}"#, "frame has no string \"type\" field"),
            (
                r#"{"type":"job_assign","workflow_data":{}}"#,
                "job_assign message has no \"job_id\" field",
            ),
            (
                r#"{"type":"job_assign","job_id":"","workflow_data":{}}"#,
                "invalid \"job_id\": it is empty",
            ),
            (
                r#"{"type":"job_assign","job_id":[],"workflow_data":{}}"#,
                "invalid \"job_id\"",
            ),
            (
                r#"{"type":"job_assign","job_id":"a"}"#,
                "job_assign message has no \"workflow_data/workflow_json/workflow\" field",
            ),
            (
                r#"{"type":"job_assignment","job_id":"a","workflow":"x"}"#,
                "invalid \"workflow\": expected a json object",
            ),
            (
                r#"{"type":"job_assign","job_id":"a","workflow_json":"{nope"}"#,
                "the string is not valid json",
            ),
            (
                r#"{"type":"job_assign","job_id":"a","workflow_json":"[1]"}"#,
                "does not hold a json object",
            ),
            (
                r#"{"type":"job_assign","job_id":"a","workflow":{},"variables":[1]}"#,
                "invalid \"variables\"",
            ),
            (
                r#"{"type":"job_assign","job_id":"a","workflow":{},"timeout":"soon"}"#,
                "invalid \"timeout\"",
            ),
            (
                r#"{"type":"job_assign","job_id":"a","workflow":{},"trigger_payload":[1]}"#,
                "invalid \"trigger_payload\": expected a json object",
            ),
            (
                r#"{"type":"job_cancel"}"#,
                "job_cancel message has no \"job_id\" field",
            ),
        ];
        for (text, needle) in cases {
            let err = parse_inbound(text).expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains(needle), "{text}: {msg:?} lacks {needle:?}");
            assert!(msg.chars().next().unwrap().is_lowercase(), "{msg}");
        }
    }

    #[test]
    fn malformed_assignments_with_a_job_id_can_be_answered() {
        let cases: &[(&str, Option<&str>)] = &[
            (r#"{"type":"job_assign","job_id":"a"}"#, Some("a")),
            (
                r#"{"type":"job_assignment","job_id":"b","workflow":"x"}"#,
                Some("b"),
            ),
            (
                r#"{"type":"job_assign","job_id":7,"workflow_json":"[1]"}"#,
                Some("7"),
            ),
            (
                r#"{"type":"job_assign","job_id":"c","workflow":{},"variables":[1]}"#,
                Some("c"),
            ),
            (
                r#"{"type":"job_assign","job_id":"d","workflow":{},"timeout":"x"}"#,
                Some("d"),
            ),
            (r#"{"type":"job_assign","workflow_data":{}}"#, None),
            (
                r#"{"type":"job_assign","job_id":"","workflow_data":{}}"#,
                None,
            ),
            (r#"{"type":"job_cancel"}"#, None),
            ("{nope", None),
        ];
        for (text, expected) in cases {
            let err = parse_inbound(text).expect_err(text);
            assert_eq!(
                rejectable_assignment(text, &err).as_deref(),
                *expected,
                "{text}"
            );
        }
    }

    #[test]
    fn huge_and_deep_frames() {
        let huge = format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(
            parse_inbound(&huge),
            Err(ProtocolError::TooLarge { len: huge.len() })
        );
        // Deep nesting hits serde_json's recursion limit: an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(parse_inbound(&deep), Err(ProtocolError::Json(_))));
        let deep_obj = format!(
            r#"{{"type":"ping","x":{}1{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse_inbound(&deep_obj).is_err());
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_cafe);
        let seeds: Vec<String> = [
            REAL_REGISTER_ACK,
            REAL_HEARTBEAT_ACK,
            REAL_JOB_ASSIGN,
            r#"{"type":"job_cancel","job_id":"j"}"#,
            r#"{"type":"shutdown","graceful":false}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let alphabet: Vec<char> = "{}[]\":,0123456789.-+eEtruefalsnl \\/u\u{e9}\u{1F600}abc_type"
            .chars()
            .collect();
        for _ in 0..20_000 {
            let text: String = match rng.u8(0..3) {
                // Pure noise from a JSON-ish alphabet.
                0 => (0..rng.usize(0..64))
                    .map(|_| alphabet[rng.usize(..alphabet.len())])
                    .collect(),
                // A real message with some characters replaced, inserted or removed.
                _ => {
                    let mut chars: Vec<char> = seeds[rng.usize(..seeds.len())].chars().collect();
                    for _ in 0..rng.usize(1..6) {
                        let at = rng.usize(..=chars.len());
                        match rng.u8(0..3) {
                            0 if at < chars.len() => {
                                chars[at] = alphabet[rng.usize(..alphabet.len())]
                            }
                            1 => chars.insert(at, alphabet[rng.usize(..alphabet.len())]),
                            _ if at < chars.len() => {
                                chars.remove(at);
                            }
                            _ => {}
                        }
                    }
                    chars.into_iter().collect()
                }
            };
            if let Err(e) = parse_inbound(&text) {
                assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn old_envelope_examples_do_not_panic() {
        let Some(dir) = captures_dir() else { return };
        let Ok(text) = std::fs::read_to_string(
            dir.join("old-cc72f47d-parent-protocol-envelope-examples.json"),
        ) else {
            return;
        };
        let items: Vec<Value> = serde_json::from_str(&text).unwrap();
        for item in items {
            // Not a target format: anything but a panic is fine.
            let _ = parse_inbound(&item.to_string());
        }
    }

    // ---- URL rules --------------------------------------------------------------------------

    #[test]
    fn ws_url_rules() {
        let ok: &[(&str, Option<&str>, &str)] = &[
            (
                "ws://127.0.0.1:8000",
                None,
                "ws://127.0.0.1:8000/ws/robot/r-1",
            ),
            (
                "ws://127.0.0.1:8000/",
                None,
                "ws://127.0.0.1:8000/ws/robot/r-1",
            ),
            (
                "wss://api.casare.net",
                None,
                "wss://api.casare.net/ws/robot/r-1",
            ),
            (
                "WSS://api.casare.net",
                None,
                "wss://api.casare.net/ws/robot/r-1",
            ),
            ("  ws://h:1  ", None, "ws://h:1/ws/robot/r-1"),
            (
                "wss://api.casare.net/ws/robot",
                None,
                "wss://api.casare.net/ws/robot/r-1",
            ),
            (
                "wss://api.casare.net/ws/robot/",
                None,
                "wss://api.casare.net/ws/robot/r-1",
            ),
            ("ws://h/agents/{robot_id}/ws", None, "ws://h/agents/r-1/ws"),
            ("ws://h/{robot_id}", Some("k"), "ws://h/r-1?api_key=k"),
            (
                "ws://h",
                Some("crpa_abc_DEF-12"),
                "ws://h/ws/robot/r-1?api_key=crpa_abc_DEF-12",
            ),
            (
                "ws://h",
                Some("a b&c=d/+?"),
                "ws://h/ws/robot/r-1?api_key=a%20b%26c%3Dd%2F%2B%3F",
            ),
            ("ws://h", Some(""), "ws://h/ws/robot/r-1"),
            ("ws://h?x=1", None, "ws://h/ws/robot/r-1?x=1"),
            (
                "ws://h/?x=1",
                Some("k"),
                "ws://h/ws/robot/r-1?x=1&api_key=k",
            ),
            (
                "ws://h/p?x=1&api_key=old",
                Some("new"),
                "ws://h/p/r-1?x=1&api_key=new",
            ),
            ("ws://h/p?api_key=keep", None, "ws://h/p/r-1?api_key=keep"),
            ("ws://h/p#frag", None, "ws://h/p/r-1"),
            ("ws://[::1]:8000", None, "ws://[::1]:8000/ws/robot/r-1"),
        ];
        for (url, key, expected) in ok {
            assert_eq!(
                ws_url(url, "r-1", *key).as_deref(),
                Ok(*expected),
                "{url} {key:?}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("http://h", "expected ws:// or wss://"),
            ("https://h/ws", "expected ws:// or wss://"),
            ("h:8000", "no scheme"),
            ("", "no scheme"),
            ("ws://", "no host"),
            ("ws:///path", "no host"),
            ("ws://:80", "no host"),
            ("ws://h st", "whitespace"),
        ];
        for (url, needle) in bad {
            let err = ws_url(url, "r-1", None).expect_err(url).to_string();
            assert!(err.starts_with("invalid orchestrator url"), "{err}");
            assert!(err.contains(needle), "{url}: {err}");
        }
        assert!(ws_url("ws://h", "", None).is_err());
    }
}

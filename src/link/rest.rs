//! A blocking client for the CasareRPA Orchestrator API v1 (REST polling), and the sans-IO
//! adaptive claim interval [`PollInterval`].
//!
//! The API (`protocol.md`, "REST", and the orchestrator's OpenAPI document):
//!
//! | method | call | answer |
//! |---|---|---|
//! | [`RestClient::claim`] | `POST /api/v1/jobs/claim` `{environment, limit: 1, visibility_timeout_seconds}` | a job, or `null` |
//! | [`RestClient::extend_lease`] | `POST /api/v1/jobs/{id}/extend-lease` `{extension_seconds}` | 200, or 409: the job is no longer ours |
//! | [`RestClient::progress`] | `PUT /api/v1/jobs/{id}/progress` `{progress, current_node, message}` | 200 |
//! | [`RestClient::complete`] | `POST /api/v1/jobs/{id}/complete` `{result}` | 200, or 409: already settled |
//! | [`RestClient::fail`] | `POST /api/v1/jobs/{id}/fail` `{error_message}` (≤ 5000 chars) | 200, or 409 |
//! | [`RestClient::release`] | `POST /api/v1/jobs/{id}/release` | 200 |
//! | [`RestClient::register`] | `POST /api/v1/robots/register` | 200, or 503 without a database |
//! | [`RestClient::heartbeat`] | `POST /api/v1/robots/{id}/heartbeat` (body: a metrics object) | 200 |
//! | [`RestClient::update_status`] | `PUT /api/v1/robots/{id}/status` `{status}` | 200 |
//! | [`RestClient::health`] | `GET /health` | 200 |
//!
//! Every call carries `X-Api-Key` and `Authorization: Bearer` (when a key is configured),
//! `Content-Type: application/json` and `User-Agent: casare-robot/<version> (<robot_id>)`.
//!
//! **Error policy.** Each method makes exactly one HTTP request; retrying is the caller's policy
//! (its backoff, breaker and outbox). What a method does is to classify the answer into a
//! [`RestError`]: network failures (connect, timeout, reset, a truncated answer) and 429/502/503/504
//! are [retryable](RestError::is_retryable); 401/403 are [auth](RestError::is_auth) failures; any
//! other 4xx except 409 is a permanent rejection of that request (log it, do not loop); a 2xx whose
//! body cannot be read is a protocol error. A 409 is an answer, not an error, where the protocol
//! gives it a meaning: a lost lease for `extend-lease`, "already settled" (= delivered) for
//! `complete` and `fail`. A 429 carries the server's `Retry-After` so no caller spins on it.
//! A claim answer that names a job the robot cannot run (its `workflow_json` is not JSON or not
//! an object, its `variables` not an object) is a [`RestError::BadJob`] carrying the job id, so
//! the caller can answer it with `fail` instead of leaving it `running` on the server.
//! Messages are lowercase, name the call (`POST /api/v1/jobs/claim`) and never contain the API
//! key (a server message echoing it is redacted). Headers are never logged; the process's log
//! set-up silences ureq's own trace output, which would print them.
//!
//! **Transport.** One ureq agent per client: HTTP status codes are not errors
//! (`http_status_as_error(false)`), proxies are not read from the environment, one global timeout
//! bounds each request, no redirects are followed, and idle keep-alive connections are dropped after
//! 4 s, before uvicorn (the orchestrator's server) closes them at 5 s, so a poll rarely lands on a
//! connection the server has just closed.
//!
//! **A lost claim answer.** A claim whose answer is lost (the connection breaks after the server
//! committed it) leaves a job `running` under this robot that it never heard of; the real server
//! never recovers expired leases. Nothing on the robot can see such a job, so callers should keep
//! claim timeouts generous; the orchestrator's operators see it as a stuck `running` job.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use super::protocol::{Capabilities, RobotStatus};

/// Largest answer body read (a claimed workflow can be large; anything bigger is a protocol error).
const MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// The orchestrator refuses a longer `error_message` (OpenAPI: `maxLength: 5000`).
pub const MAX_ERROR_MESSAGE_CHARS: usize = 5000;
/// Idle keep-alive connections older than this are not reused (uvicorn closes them at 5 s).
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);
/// Bounds of `visibility_timeout_seconds` and `extension_seconds` in the OpenAPI document.
const LEASE_SECONDS_MIN: u64 = 5;
const LEASE_SECONDS_MAX: u64 = 3600;
/// At most this many characters of a server message are kept in an error.
const MAX_MESSAGE_CHARS: usize = 500;

// ---------------------------------------------------------------------------------------------
// Settings and client
// ---------------------------------------------------------------------------------------------

/// What a [`RestClient`] needs to know. `Debug` redacts the API key.
#[derive(Clone)]
pub struct RestSettings {
    /// `http(s)://host:port` of the orchestrator (a trailing `/` is ignored).
    pub base_url: String,
    /// Sent as `X-Api-Key` and `Authorization: Bearer`; `None` sends neither.
    pub api_key: Option<String>,
    /// This robot's id (path of the robot calls, part of the `User-Agent`).
    pub robot_id: String,
    /// Display name, sent with `register`.
    pub robot_name: String,
    /// Robot version, part of the `User-Agent`.
    pub version: String,
    /// Routing tag sent with `claim` and `register`.
    pub environment: String,
    /// Bound on one whole request (connect, send, answer). Default 10 s.
    pub request_timeout: Duration,
}

impl RestSettings {
    /// Settings with the defaults: no key, name `robot_id`, this crate's version, environment
    /// `default` (the server's default), a 10 s request timeout.
    pub fn new(base_url: impl Into<String>, robot_id: impl Into<String>) -> RestSettings {
        let robot_id = robot_id.into();
        RestSettings {
            base_url: base_url.into(),
            api_key: None,
            robot_name: robot_id.clone(),
            robot_id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            environment: "default".to_string(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for RestSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestSettings")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("robot_id", &self.robot_id)
            .field("robot_name", &self.robot_name)
            .field("version", &self.version)
            .field("environment", &self.environment)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A blocking client for the orchestrator's REST API. Cheap to share between threads (`&self`
/// methods; the connection pool is internal). `Debug` redacts the API key.
pub struct RestClient {
    agent: ureq::Agent,
    /// `base_url` without a trailing `/`.
    base: String,
    api_key: Option<String>,
    robot_id: String,
    robot_name: String,
    environment: String,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("robot_id", &self.robot_id)
            .field("environment", &self.environment)
            .finish()
    }
}

/// A job handed to this robot by `claim`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedJob {
    /// The job id (path of every later job call).
    pub job_id: String,
    /// The workflow's id (empty when the server gave none).
    pub workflow_id: String,
    /// The workflow's display name (empty when the server gave none).
    pub workflow_name: String,
    /// The workflow document, parsed from the `workflow_json` string (an object is accepted too,
    /// as are `workflow_data` and `workflow`).
    pub workflow: Value,
    /// Variables injected by the orchestrator (`{}` when absent or `null`).
    pub variables: Map<String, Value>,
    /// Queue priority.
    pub priority: i64,
    /// The job's environment (execution mode), when given.
    pub environment: Option<String>,
    /// How many times the job failed before (the server re-queues a failed job).
    pub retry_count: u32,
    /// How many failures the server retries (3 on the real server), when given.
    pub max_retries: Option<u32>,
    /// When the job was submitted, when given.
    pub created_at: Option<DateTime<Utc>>,
    /// When the server handed it out, when given.
    pub claimed_at: Option<DateTime<Utc>>,
    /// When the lease ends unless extended: the server's value when it names one
    /// (`lease_expires_at` or `visibility_expires_at`), otherwise, from [`RestClient::claim`], the
    /// local clock when the claim was sent plus the visibility timeout (early, never late).
    pub lease_expires_at: Option<DateTime<Utc>>,
}

/// The answer to `extend-lease`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// 200: the lease runs on.
    Extended,
    /// 409: the job was cancelled, settled, or taken away: stop it and report nothing.
    Lost,
}

/// The answer to `complete` or `fail`: either way the outcome is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// 200: recorded now.
    Accepted,
    /// 409: the server had already settled the job (an earlier delivery got through).
    AlreadySettled,
}

/// The answer to `register`.
#[derive(Clone, Debug, PartialEq)]
pub enum Registration {
    /// 200: the server's robot record (`RobotResponse`).
    Registered(Value),
    /// 503: the orchestrator runs without a database and keeps no robot registry. Not an error:
    /// claiming jobs still works.
    Unavailable {
        /// The server's explanation.
        message: String,
    },
}

impl RestClient {
    /// Builds a client. Fails with [`RestError::Config`] when `base_url` is not `http(s)://…`.
    pub fn new(settings: RestSettings) -> Result<RestClient, RestError> {
        let base = settings.base_url.trim().trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| {
                RestError::Config(format!(
                    "api url '{base}' must start with http:// or https://"
                ))
            })?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(RestError::Config(format!("api url '{base}' has no host")));
        }
        if settings.robot_id.is_empty() {
            return Err(RestError::Config("robot id is empty".to_string()));
        }
        let user_agent = format!("casare-robot/{} ({})", settings.version, settings.robot_id);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .save_redirect_history(false)
            .timeout_global(Some(settings.request_timeout))
            .max_idle_age(MAX_IDLE_AGE)
            .user_agent(user_agent)
            .build();
        Ok(RestClient {
            agent: config.into(),
            base,
            api_key: settings.api_key.filter(|k| !k.is_empty()),
            robot_id: settings.robot_id,
            robot_name: settings.robot_name,
            environment: settings.environment,
        })
    }

    /// The base URL in use (without a trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /api/v1/jobs/claim`: takes the next pending job for this robot's environment, leased
    /// for `visibility_timeout` (clamped to the server's 5..=3600 s). `Ok(None)` when the queue is
    /// empty. Always claims with `limit: 1` (a larger limit strands jobs on the real server).
    pub fn claim(&self, visibility_timeout: Duration) -> Result<Option<ClaimedJob>, RestError> {
        let seconds = lease_seconds(visibility_timeout);
        let sent_at = Utc::now();
        let body = json!({
            "environment": self.environment,
            "limit": 1,
            "visibility_timeout_seconds": seconds,
        });
        let reply = self.call(Method::Post, "/api/v1/jobs/claim", Some(&body))?;
        let call = reply.call.clone();
        let value = reply.expect_success(self)?.json_or_null(&call)?;
        if value.is_null() {
            return Ok(None);
        }
        let mut job = ClaimedJob::from_value(&value)
            .map_err(|detail| unusable_claim(&call, &value, detail))?;
        if job.lease_expires_at.is_none() {
            job.lease_expires_at = Some(sent_at + chrono::Duration::seconds(seconds as i64));
        }
        Ok(Some(job))
    }

    /// `POST /api/v1/jobs/{id}/extend-lease`: 200 → [`LeaseOutcome::Extended`], 409 →
    /// [`LeaseOutcome::Lost`]. `extension` is clamped to 5..=3600 s.
    pub fn extend_lease(
        &self,
        job_id: &str,
        extension: Duration,
    ) -> Result<LeaseOutcome, RestError> {
        let body = json!({ "extension_seconds": lease_seconds(extension) });
        let path = job_path(job_id, "extend-lease");
        let reply = self.call(Method::Post, &path, Some(&body))?;
        if reply.status == 409 {
            return Ok(LeaseOutcome::Lost);
        }
        reply.expect_success(self)?;
        Ok(LeaseOutcome::Extended)
    }

    /// `PUT /api/v1/jobs/{id}/progress` with `progress` (clamped to 100), the node running now and a
    /// message.
    pub fn progress(
        &self,
        job_id: &str,
        progress: u8,
        current_node: Option<&str>,
        message: Option<&str>,
    ) -> Result<(), RestError> {
        let body = json!({
            "progress": progress.min(100),
            "current_node": current_node,
            "message": message,
        });
        let path = job_path(job_id, "progress");
        self.call(Method::Put, &path, Some(&body))?
            .expect_success(self)?;
        Ok(())
    }

    /// `POST /api/v1/jobs/{id}/complete` with `{result}`. 200 and 409 both mean delivered.
    pub fn complete(&self, job_id: &str, result: &Value) -> Result<Settled, RestError> {
        let body = json!({ "result": result });
        self.settle(&job_path(job_id, "complete"), &body)
    }

    /// `POST /api/v1/jobs/{id}/fail` with `{error_message}`, cut to
    /// [`MAX_ERROR_MESSAGE_CHARS`] characters (an empty message becomes `"unknown error"`: the
    /// server requires at least one character). 200 and 409 both mean delivered.
    pub fn fail(&self, job_id: &str, error_message: &str) -> Result<Settled, RestError> {
        let body = json!({ "error_message": fail_message(error_message) });
        self.settle(&job_path(job_id, "fail"), &body)
    }

    /// `POST /api/v1/jobs/{id}/release`: gives back a claimed job that will not run; the server
    /// makes it claimable at once without counting a retry.
    pub fn release(&self, job_id: &str) -> Result<(), RestError> {
        self.call(Method::Post, &job_path(job_id, "release"), None)?
            .expect_success(self)?;
        Ok(())
    }

    /// `POST /api/v1/robots/register` (`RobotRegistration`: robot id, name, host name,
    /// capability types, environment, max concurrent jobs clamped to 1..=100, tags). A 503 (the
    /// orchestrator has no database) is [`Registration::Unavailable`], not an error.
    pub fn register(&self, capabilities: &Capabilities) -> Result<Registration, RestError> {
        let hostname = if capabilities.hostname.is_empty() {
            "unknown"
        } else {
            capabilities.hostname.as_str()
        };
        let body = json!({
            "robot_id": self.robot_id,
            "name": self.robot_name,
            "hostname": hostname,
            "capabilities": capabilities.types,
            "environment": self.environment,
            "max_concurrent_jobs": capabilities.max_concurrent_jobs.clamp(1, 100),
            "tags": capabilities.tags,
        });
        let reply = self.call(Method::Post, "/api/v1/robots/register", Some(&body))?;
        if reply.status == 503 {
            let message = reply.message(self);
            return Ok(Registration::Unavailable { message });
        }
        let call = reply.call.clone();
        let value = reply.expect_success(self)?.json_or_null(&call)?;
        Ok(Registration::Registered(value))
    }

    /// `POST /api/v1/robots/{id}/heartbeat`. The body is the metrics object (the OpenAPI's only
    /// field) with `status` added as one more entry; the robot's registry status proper is set
    /// with [`update_status`](Self::update_status).
    pub fn heartbeat(
        &self,
        status: RobotStatus,
        metrics: &Map<String, Value>,
    ) -> Result<(), RestError> {
        let mut body = metrics.clone();
        body.insert("status".to_string(), Value::from(status.as_str()));
        let path = format!(
            "/api/v1/robots/{}/heartbeat",
            encode_segment(&self.robot_id)
        );
        self.call(Method::Post, &path, Some(&Value::Object(body)))?
            .expect_success(self)?;
        Ok(())
    }

    /// `PUT /api/v1/robots/{id}/status` with the status in the server's vocabulary
    /// ([`registry_status`]).
    pub fn update_status(&self, status: RobotStatus) -> Result<(), RestError> {
        let body = json!({ "status": registry_status(status) });
        let path = format!("/api/v1/robots/{}/status", encode_segment(&self.robot_id));
        self.call(Method::Put, &path, Some(&body))?
            .expect_success(self)?;
        Ok(())
    }

    /// `GET /api/v1/metrics/jobs?robot_id=<this robot>&limit=500`: the ids of the jobs the
    /// orchestrator believes this robot holds (of its 500 newest jobs). A robot that finds one it
    /// has no record of (a claim whose answer was lost to a crash or a network error) releases it.
    ///
    /// No `status` filter is sent: the real server marks a claimed job `running`, so
    /// `status=claimed` finds nothing, and it refuses `status=running` as a filter. The rows are
    /// filtered here instead: status `running` or `claimed`, held by this robot.
    pub fn claimed_jobs(&self) -> Result<Vec<String>, RestError> {
        let path = format!(
            "/api/v1/metrics/jobs?robot_id={}&limit=500",
            encode_segment(&self.robot_id)
        );
        let reply = self.call(Method::Get, &path, None)?;
        let call = reply.call.clone();
        let value = reply.expect_success(self)?.json_or_null(&call)?;
        let rows = value.as_array().ok_or_else(|| RestError::Protocol {
            call: call.clone(),
            detail: "expected an array of job summaries".into(),
        })?;
        Ok(rows
            .iter()
            .filter(|r| r["status"] == "claimed" || r["status"] == "running")
            .filter(|r| r["robot_id"].as_str().is_none_or(|id| id == self.robot_id))
            .filter_map(|r| r["job_id"].as_str().map(str::to_string))
            .collect())
    }

    /// `GET /health`: `Ok` on any 2xx.
    pub fn health(&self) -> Result<(), RestError> {
        self.call(Method::Get, "/health", None)?
            .expect_success(self)?;
        Ok(())
    }

    /// `complete` and `fail`: 200 → accepted, 409 → already settled.
    fn settle(&self, path: &str, body: &Value) -> Result<Settled, RestError> {
        let reply = self.call(Method::Post, path, Some(body))?;
        if reply.status == 409 {
            return Ok(Settled::AlreadySettled);
        }
        reply.expect_success(self)?;
        Ok(Settled::Accepted)
    }

    /// One HTTP exchange. Network failures become [`RestError::Network`]; any status comes back as
    /// a [`Reply`] for the method to interpret.
    fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, RestError> {
        let call = format!("{} {path}", method.as_str());
        let url = format!("{}{path}", self.base);
        let mut builder = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(url.as_str())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(key) = &self.api_key {
            builder = builder
                .header("X-Api-Key", key.as_str())
                .header("Authorization", format!("Bearer {key}"));
        }
        let started = Instant::now();
        let sent = match body {
            Some(value) => {
                let bytes = serde_json::to_vec(value).map_err(|e| RestError::Protocol {
                    call: call.clone(),
                    detail: format!("cannot encode the request body: {e}"),
                })?;
                builder
                    .body(bytes)
                    .map_err(|e| self.bad_request(&call, &e))
                    .and_then(|r| {
                        self.agent
                            .run(r)
                            .map_err(|e| self.transport_error(&call, &e))
                    })
            }
            None => builder
                .body(())
                .map_err(|e| self.bad_request(&call, &e))
                .and_then(|r| {
                    self.agent
                        .run(r)
                        .map_err(|e| self.transport_error(&call, &e))
                }),
        };
        let mut resp = match sent {
            Ok(resp) => resp,
            Err(e) => {
                log::debug!(
                    "rest: {call} failed after {} ms: {e}",
                    started.elapsed().as_millis()
                );
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|e| self.transport_error(&call, &e))?;
        log::debug!(
            "rest: {call} -> {status} ({} bytes, {} ms)",
            text.len(),
            started.elapsed().as_millis()
        );
        Ok(Reply {
            call,
            status,
            retry_after,
            body: text,
        })
    }

    fn bad_request(&self, call: &str, e: &ureq::http::Error) -> RestError {
        RestError::Config(self.redact(&format!("{call}: cannot build the request: {e}")))
    }

    fn transport_error(&self, call: &str, e: &ureq::Error) -> RestError {
        let detail = self.redact(&e.to_string());
        match e {
            ureq::Error::Timeout(_)
            | ureq::Error::Io(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::BodyStalled
            | ureq::Error::Protocol(_) => RestError::Network {
                call: call.to_string(),
                detail,
            },
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                RestError::Config(format!("{call}: {detail}"))
            }
            _ => RestError::Protocol {
                call: call.to_string(),
                detail,
            },
        }
    }

    /// Removes the API key from text that came from elsewhere.
    fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(key) if key.len() >= 4 && text.contains(key.as_str()) => {
                text.replace(key.as_str(), "<redacted>")
            }
            _ => text.to_string(),
        }
    }
}

/// The `PUT /status` vocabulary (`idle|online|busy|offline|error|maintenance`) for a robot
/// status: paused → `maintenance` (not taking jobs), stopping → `offline` (about to leave).
pub fn registry_status(status: RobotStatus) -> &'static str {
    match status {
        RobotStatus::Idle => "idle",
        RobotStatus::Busy => "busy",
        RobotStatus::Paused => "maintenance",
        RobotStatus::Stopping => "offline",
    }
}

/// HTTP methods used here.
#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// A response, read in full.
struct Reply {
    /// `POST /api/v1/jobs/claim`, for messages.
    call: String,
    status: u16,
    retry_after: Option<Duration>,
    body: String,
}

impl Reply {
    /// `Ok(self)` on 2xx; otherwise the classified error.
    fn expect_success(self, client: &RestClient) -> Result<Reply, RestError> {
        if (200..300).contains(&self.status) {
            return Ok(self);
        }
        let message = self.message(client);
        let call = self.call;
        Err(match self.status {
            401 | 403 => RestError::Auth {
                call,
                status: self.status,
            },
            429 => RestError::RateLimited {
                call,
                retry_after: self.retry_after,
            },
            500..=599 => RestError::Server {
                call,
                status: self.status,
                message,
            },
            400..=499 => RestError::Rejected {
                call,
                status: self.status,
                message,
            },
            status => RestError::Protocol {
                call,
                detail: format!("unexpected status {status}: {message}"),
            },
        })
    }

    /// The body as JSON; an empty body is `null`.
    fn json_or_null(&self, call: &str) -> Result<Value, RestError> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(|e| RestError::Protocol {
            call: call.to_string(),
            detail: format!("answer is not json: {e}"),
        })
    }

    /// The server's message in an error body, redacted and shortened.
    fn message(&self, client: &RestClient) -> String {
        client.redact(&error_message(&self.body))
    }
}

/// The message of an error body: `{success: false, error: {code, message}}`, FastAPI's
/// `{"detail": "..."}` or `{"detail": [{"msg": ...}]}`, or the text itself.
fn error_message(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            if let Some(err) = v.get("error") {
                let message = err
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| err.as_str().map(str::to_string))
                    .unwrap_or_else(|| err.to_string());
                match err.get("code").and_then(Value::as_str) {
                    Some(code) => format!("{message} ({code})"),
                    None => message,
                }
            } else if let Some(detail) = v.get("detail") {
                match detail {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.get("msg")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                    other => other.to_string(),
                }
            } else if let Some(m) = v.get("message").and_then(Value::as_str) {
                m.to_string()
            } else {
                body.trim().to_string()
            }
        }
        Err(_) => body.trim().to_string(),
    };
    if text.is_empty() {
        return "no message".to_string();
    }
    truncate_chars(&text, MAX_MESSAGE_CHARS)
}

/// `Retry-After`: delay-seconds, or an HTTP date (a date in the past is zero).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Some(Duration::from_secs_f64(seconds.min(86_400.0)));
        }
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&Utc) - Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The longest wait between two lease renewals.
///
/// The robot asks for `lease_seconds` at claim and at each renewal, but a server may keep a job
/// invisible for less than it was asked: the orchestrator's in-memory queue fixes its visibility
/// at 30 s whatever the robot asks, and re-queues the job to another robot once that passes. So
/// a lease is renewed every third of it, but at least every 10 s: well inside 30 s even when one
/// renewal fails and is retried.
pub const MAX_RENEWAL_INTERVAL: Duration = Duration::from_secs(10);

/// How often a lease of `lease` is renewed: a third of it, at most [`MAX_RENEWAL_INTERVAL`], at
/// least 0.5 s.
pub fn lease_renewal_interval(lease: Duration) -> Duration {
    (lease / 3)
        .min(MAX_RENEWAL_INTERVAL)
        .max(Duration::from_millis(500))
}

/// The error for a claim answer `value` that [`ClaimedJob::from_value`] refused with `detail`:
/// [`RestError::BadJob`] when it names a usable job id (the caller answers it with `fail`), else
/// a protocol error. An over-long id is not usable: it would be repeated in every log line and
/// in the `fail` URL.
fn unusable_claim(call: &str, value: &Value, detail: String) -> RestError {
    let usable =
        job_id_of(value).filter(|id| id.chars().count() <= super::protocol::MAX_JOB_ID_CHARS);
    match usable {
        Some(job_id) => RestError::BadJob {
            call: call.to_string(),
            job_id,
            detail,
        },
        None => RestError::Protocol {
            call: call.to_string(),
            detail,
        },
    }
}

/// The job id of a claim answer, when it names one.
fn job_id_of(value: &Value) -> Option<String> {
    match value.get("job_id") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// Whole seconds within the server's lease bounds.
fn lease_seconds(d: Duration) -> u64 {
    d.as_secs().clamp(LEASE_SECONDS_MIN, LEASE_SECONDS_MAX)
}

/// `/api/v1/jobs/{id}/{action}` with the id percent-encoded.
fn job_path(job_id: &str, action: &str) -> String {
    format!("/api/v1/jobs/{}/{action}", encode_segment(job_id))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `error_message` sent by `fail`: at most 5000 characters, never empty.
fn fail_message(message: &str) -> String {
    if message.trim().is_empty() {
        return "unknown error".to_string();
    }
    truncate_chars(message, MAX_ERROR_MESSAGE_CHARS)
}

/// The first `max` characters of `s` (characters, not bytes: never splits a code point).
fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((idx, _)) => s[..idx].to_string(),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Claimed jobs
// ---------------------------------------------------------------------------------------------

impl ClaimedJob {
    /// Reads a claim answer object (`JobClaimResponse`). Required: `job_id` and a workflow
    /// (`workflow_json` as a JSON string or an object, or `workflow_data` / `workflow`). Other
    /// fields are optional; unknown fields are ignored. The error is a lowercase description.
    pub fn from_value(value: &Value) -> Result<ClaimedJob, String> {
        let obj = value
            .as_object()
            .ok_or_else(|| format!("a claimed job must be an object, got {}", kind(value)))?;
        let Some(job_id) = job_id_of(value) else {
            return Err("claimed job has no job_id".to_string());
        };
        // As on the WebSocket: an over-long id would be repeated in every log line.
        let id_chars = job_id.chars().count();
        if id_chars > super::protocol::MAX_JOB_ID_CHARS {
            return Err(format!(
                "the claimed job's id is {id_chars} characters long; at most {} are allowed",
                super::protocol::MAX_JOB_ID_CHARS
            ));
        }
        let raw_workflow = ["workflow_json", "workflow_data", "workflow"]
            .iter()
            .find_map(|k| obj.get(*k).filter(|v| !v.is_null()))
            .ok_or_else(|| format!("claimed job {job_id} has no workflow_json"))?;
        let mut workflow = match raw_workflow {
            Value::String(text) => serde_json::from_str::<Value>(text)
                .map_err(|e| format!("workflow_json of job {job_id} is not json: {e}"))?,
            other => other.clone(),
        };
        crate::engine::subflow::embed(&mut workflow, obj.get("subflows"));
        if !workflow.is_object() {
            return Err(format!(
                "workflow of job {job_id} must be an object, got {}",
                kind(&workflow)
            ));
        }
        let mut variables = match obj.get("variables").or_else(|| obj.get("parameters")) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                _ => return Err(format!("variables of job {job_id} are not an object")),
            },
            Some(other) => {
                return Err(format!(
                    "variables of job {job_id} must be an object, got {}",
                    kind(other)
                ))
            }
        };
        super::trigger_fields::merge_into(obj, &mut variables)
            .map_err(|(field, reason)| format!("{field} of job {job_id}: {reason}"))?;
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let count = |k: &str| {
            obj.get(k)
                .and_then(Value::as_u64)
                .map(|n| n.min(u32::MAX as u64) as u32)
        };
        let time = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_str).and_then(parse_time))
        };
        Ok(ClaimedJob {
            workflow_id: text("workflow_id").unwrap_or_default(),
            workflow_name: text("workflow_name").unwrap_or_default(),
            workflow,
            variables,
            priority: obj.get("priority").and_then(Value::as_i64).unwrap_or(0),
            environment: text("environment"),
            retry_count: count("retry_count").unwrap_or(0),
            max_retries: count("max_retries"),
            created_at: time(&["created_at"]),
            claimed_at: time(&["claimed_at"]),
            lease_expires_at: time(&["lease_expires_at", "visibility_expires_at"]),
            job_id,
        })
    }
}

/// RFC 3339, or Python's naive `isoformat()` (taken as UTC).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What went wrong with one REST call. `call` is `METHOD /path` (never the key).
#[derive(Clone, Debug, PartialEq)]
pub enum RestError {
    /// Connect, DNS, timeout, reset, or an answer cut short. Retryable.
    Network {
        /// `METHOD /path`.
        call: String,
        /// What the transport said.
        detail: String,
    },
    /// 429. Wait `retry_after` (the server's `Retry-After`) before the next call. Retryable.
    RateLimited {
        /// `METHOD /path`.
        call: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// 5xx. 502, 503 and 504 are retryable; 500 and the rest are not.
    Server {
        /// `METHOD /path`.
        call: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// A 4xx other than 401, 403, 409 (where it has a meaning) and 429: permanent for this request.
    Rejected {
        /// `METHOD /path`.
        call: String,
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
    },
    /// 401 or 403: the API key is missing, wrong, or not allowed to do this.
    Auth {
        /// `METHOD /path`.
        call: String,
        /// HTTP status.
        status: u16,
    },
    /// A claim answer naming a job this robot cannot run (its workflow or variables are
    /// unusable). Not retryable: answer the job with `fail`.
    BadJob {
        /// `METHOD /path`.
        call: String,
        /// The job's id.
        job_id: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A successful status with a body that cannot be understood, or an unexpected status.
    Protocol {
        /// `METHOD /path`.
        call: String,
        /// What was wrong.
        detail: String,
    },
    /// The client's settings are unusable (bad base URL, empty robot id).
    Config(String),
}

impl RestError {
    /// Worth trying again later: network errors, 429, 502, 503, 504.
    pub fn is_retryable(&self) -> bool {
        match self {
            RestError::Network { .. } | RestError::RateLimited { .. } => true,
            RestError::Server { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// 401 or 403: retrying will not help until the key is fixed.
    pub fn is_auth(&self) -> bool {
        matches!(self, RestError::Auth { .. })
    }

    /// 503: the server is there but the service is not (the orchestrator without a database
    /// answers it to robot status, heartbeat and job progress).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, RestError::Server { status: 503, .. })
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RestError::RateLimited { .. } => Some(429),
            RestError::Server { status, .. }
            | RestError::Rejected { status, .. }
            | RestError::Auth { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After` of a 429.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RestError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestError::Network { call, detail } => write!(f, "{call}: network error: {detail}"),
            RestError::RateLimited {
                call,
                retry_after: Some(d),
            } => write!(
                f,
                "{call}: rate limited (429), retry after {} s",
                d.as_secs_f64().ceil() as u64
            ),
            RestError::RateLimited {
                call,
                retry_after: None,
            } => write!(f, "{call}: rate limited (429)"),
            RestError::Server {
                call,
                status,
                message,
            } => write!(f, "{call}: server error {status}: {message}"),
            RestError::Rejected {
                call,
                status,
                message,
            } => write!(f, "{call}: rejected with {status}: {message}"),
            RestError::Auth { call, status } => write!(
                f,
                "{call}: not authorised ({status}): check the robot's api key"
            ),
            RestError::BadJob {
                call,
                job_id,
                detail,
            } => write!(f, "{call}: job {job_id} cannot run: {detail}"),
            RestError::Protocol { call, detail } => write!(f, "{call}: bad answer: {detail}"),
            RestError::Config(detail) => write!(f, "rest client settings: {detail}"),
        }
    }
}

impl std::error::Error for RestError {}

// ---------------------------------------------------------------------------------------------
// Adaptive claim interval (sans-IO)
// ---------------------------------------------------------------------------------------------

/// What the last claim attempt gave, as [`PollInterval`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// A job was claimed.
    Claimed,
    /// The queue was empty (`null`).
    Empty,
    /// 429, with the server's `Retry-After` when it sent one.
    RateLimited(Option<Duration>),
    /// Any other failure (the caller's backoff/breaker decides about errors; the interval still
    /// grows so polling never spins).
    Failed,
}

impl PollOutcome {
    /// Classifies a claim result.
    pub fn of(result: &Result<Option<ClaimedJob>, RestError>) -> PollOutcome {
        match result {
            Ok(Some(_)) => PollOutcome::Claimed,
            Ok(None) => PollOutcome::Empty,
            Err(RestError::RateLimited { retry_after, .. }) => {
                PollOutcome::RateLimited(*retry_after)
            }
            Err(_) => PollOutcome::Failed,
        }
    }
}

/// The adaptive claim interval: how long to wait before the next claim.
///
/// Starts at `poll_interval`; each empty (or failed) claim waits the current interval and then
/// grows it ×1.5 up to `poll_max_interval`; a successful claim resets it and asks for the next
/// claim at once (the queue likely holds more); a 429 waits at least the server's `Retry-After`
/// (or [`rate_limited_default`](Self::with_rate_limited_default), 60 s, when it gave none), so a
/// rate-limited robot never spins, but at most [`retry_after_cap`](Self::retry_after_cap): the
/// larger of [`MAX_RETRY_AFTER`] and `poll_max_interval`, so a huge `Retry-After` cannot stop
/// claiming for a day. No clock, no randomness: jitter is the caller's.
#[derive(Clone, Debug, PartialEq)]
pub struct PollInterval {
    base: Duration,
    max: Duration,
    current: Duration,
    rate_limited_default: Duration,
}

/// The longest `Retry-After` honoured (unless `poll_max_interval` is longer): five minutes, well
/// above the real server's 60 s.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl PollInterval {
    /// `poll_interval` is the first and shortest idle wait; `poll_max_interval` the longest (raised
    /// to `poll_interval` when smaller).
    pub fn new(poll_interval: Duration, poll_max_interval: Duration) -> PollInterval {
        PollInterval {
            base: poll_interval,
            max: poll_max_interval.max(poll_interval),
            current: poll_interval,
            rate_limited_default: Duration::from_secs(60),
        }
    }

    /// The wait after a 429 without `Retry-After` (default 60 s, the real server's value).
    pub fn with_rate_limited_default(mut self, wait: Duration) -> PollInterval {
        self.rate_limited_default = wait;
        self
    }

    /// The wait an empty claim would get now.
    pub fn current(&self) -> Duration {
        self.current
    }

    /// The longest wait a 429 gets, whatever its `Retry-After` says.
    pub fn retry_after_cap(&self) -> Duration {
        MAX_RETRY_AFTER.max(self.max)
    }

    /// How long to wait before the next claim, given the outcome of the last one.
    pub fn next(&mut self, outcome: PollOutcome) -> Duration {
        match outcome {
            PollOutcome::Claimed => {
                self.current = self.base;
                Duration::ZERO
            }
            PollOutcome::Empty | PollOutcome::Failed => {
                let wait = self.current;
                self.current = self.current.mul_f64(1.5).min(self.max);
                wait
            }
            PollOutcome::RateLimited(retry_after) => {
                let asked = retry_after.unwrap_or(self.rate_limited_default);
                asked
                    .min(self.retry_after_cap())
                    .max(self.current)
                    .max(self.base)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn poll_interval_grows_by_half_up_to_the_cap_and_resets_on_a_claim() {
        let mut p = PollInterval::new(secs(2.0), secs(5.0));
        let waits: Vec<Duration> = (0..5).map(|_| p.next(PollOutcome::Empty)).collect();
        assert_eq!(
            waits,
            vec![secs(2.0), secs(3.0), secs(4.5), secs(5.0), secs(5.0)]
        );
        assert_eq!(p.next(PollOutcome::Claimed), Duration::ZERO);
        assert_eq!(p.next(PollOutcome::Empty), secs(2.0));
        assert_eq!(p.next(PollOutcome::Failed), secs(3.0));
        assert_eq!(p.current(), secs(4.5));
    }

    #[test]
    fn poll_interval_honours_retry_after_and_never_spins_on_429() {
        let mut p = PollInterval::new(secs(1.0), secs(30.0));
        assert_eq!(
            p.next(PollOutcome::RateLimited(Some(secs(60.0)))),
            secs(60.0)
        );
        // A zero Retry-After still waits the idle interval.
        assert_eq!(
            p.next(PollOutcome::RateLimited(Some(Duration::ZERO))),
            secs(1.0)
        );
        // No Retry-After: the default.
        assert_eq!(p.next(PollOutcome::RateLimited(None)), secs(60.0));
        let mut p = PollInterval::new(secs(1.0), secs(30.0)).with_rate_limited_default(secs(7.0));
        assert_eq!(p.next(PollOutcome::RateLimited(None)), secs(7.0));
        // 429 neither grows nor resets the idle interval.
        assert_eq!(p.next(PollOutcome::Empty), secs(1.0));
    }

    #[test]
    fn a_huge_retry_after_is_capped() {
        let mut p = PollInterval::new(secs(1.0), secs(30.0));
        assert_eq!(p.retry_after_cap(), MAX_RETRY_AFTER);
        assert_eq!(
            p.next(PollOutcome::RateLimited(Some(secs(99_999_999_999.0)))),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            parse_retry_after("99999999999").map(|d| d.min(p.retry_after_cap())),
            Some(MAX_RETRY_AFTER)
        );
        // A longer poll_max_interval raises the cap.
        let mut p = PollInterval::new(secs(1.0), secs(900.0));
        assert_eq!(
            p.next(PollOutcome::RateLimited(Some(secs(86_400.0)))),
            secs(900.0)
        );
    }

    #[test]
    fn leases_are_renewed_every_third_but_at_least_every_ten_seconds() {
        let check = |lease: f64, expected: f64| {
            assert_eq!(
                lease_renewal_interval(secs(lease)),
                secs(expected),
                "{lease}"
            );
        };
        // The in-memory queue re-queues a job after 30 s whatever the robot asks.
        check(120.0, 10.0);
        check(3600.0, 10.0);
        check(60.0, 10.0);
        check(15.0, 5.0);
        check(1.0, 0.5);
        assert_eq!(lease_renewal_interval(secs(5.0)), secs(5.0) / 3);
    }

    #[test]
    fn poll_interval_cap_below_base_is_raised() {
        let mut p = PollInterval::new(secs(5.0), secs(1.0));
        assert_eq!(p.next(PollOutcome::Empty), secs(5.0));
        assert_eq!(p.next(PollOutcome::Empty), secs(5.0));
    }

    #[test]
    fn poll_outcome_classifies_claim_results() {
        let limited: Result<Option<ClaimedJob>, RestError> = Err(RestError::RateLimited {
            call: "POST /api/v1/jobs/claim".into(),
            retry_after: Some(secs(1.0)),
        });
        assert_eq!(
            PollOutcome::of(&limited),
            PollOutcome::RateLimited(Some(secs(1.0)))
        );
        assert_eq!(PollOutcome::of(&Ok(None)), PollOutcome::Empty);
        let down: Result<Option<ClaimedJob>, RestError> = Err(RestError::Network {
            call: "POST /api/v1/jobs/claim".into(),
            detail: "connection refused".into(),
        });
        assert_eq!(PollOutcome::of(&down), PollOutcome::Failed);
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let check = |input: &str, expected: Option<Duration>| {
            assert_eq!(parse_retry_after(input), expected, "{input}");
        };
        check("60", Some(secs(60.0)));
        check(" 1 ", Some(secs(1.0)));
        check("0.5", Some(secs(0.5)));
        check("soon", None);
        check("-3", None);
        check("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO));
        let future = (Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&future).expect("a date");
        assert!(d > secs(100.0) && d <= secs(120.0), "{d:?}");
    }

    #[test]
    fn error_messages_come_from_every_body_shape() {
        let check =
            |body: &str, expected: &str| assert_eq!(error_message(body), expected, "{body}");
        check(
            r#"{"success": false, "error": {"code": "JOB_NOT_FOUND", "message": "job x not found"}}"#,
            "job x not found (JOB_NOT_FOUND)",
        );
        check(r#"{"detail": "120 per 1 minute"}"#, "120 per 1 minute");
        check(
            r#"{"detail": [{"loc": ["body", "progress"], "msg": "too big", "type": "x"}]}"#,
            "too big",
        );
        check("Internal Server Error", "Internal Server Error");
        check("", "no message");
    }

    #[test]
    fn classification_predicates() {
        let server = |status| RestError::Server {
            call: "c".into(),
            status,
            message: "m".into(),
        };
        assert!(server(502).is_retryable());
        assert!(server(503).is_retryable());
        assert!(server(504).is_retryable());
        assert!(!server(500).is_retryable());
        let rejected = RestError::Rejected {
            call: "c".into(),
            status: 400,
            message: "m".into(),
        };
        assert!(!rejected.is_retryable() && !rejected.is_auth());
        let auth = RestError::Auth {
            call: "c".into(),
            status: 401,
        };
        assert!(auth.is_auth() && !auth.is_retryable());
        assert_eq!(auth.status(), Some(401));
    }

    #[test]
    fn fail_message_is_cut_by_characters_and_never_empty() {
        let long = "é".repeat(6000);
        let cut = fail_message(&long);
        assert_eq!(cut.chars().count(), MAX_ERROR_MESSAGE_CHARS);
        assert_eq!(fail_message("  "), "unknown error");
        assert_eq!(fail_message("boom"), "boom");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(job_path("a b/c", "fail"), "/api/v1/jobs/a%20b%2Fc/fail");
        assert_eq!(
            job_path("317a32cf-e7f4-4ccc-be00-aba54b8f9f77", "complete"),
            "/api/v1/jobs/317a32cf-e7f4-4ccc-be00-aba54b8f9f77/complete"
        );
    }

    #[test]
    fn a_claims_subflows_travel_inside_its_workflow() {
        let job = ClaimedJob::from_value(&json!({
            "job_id": "j", "workflow_json": "{\"nodes\": {}}",
            "subflows": {"child": {"nodes": {}}}
        }))
        .unwrap();
        assert_eq!(job.workflow["subflows"], json!({"child": {"nodes": {}}}));
    }

    #[test]
    fn claimed_job_accepts_an_object_workflow_and_naive_times() {
        let v = json!({
            "job_id": "j-1",
            "workflow_json": {"nodes": {}},
            "variables": null,
            "claimed_at": "2026-11-26T04:23:11.284556",
            "lease_expires_at": "2026-11-26T04:23:41+00:00",
        });
        let job = ClaimedJob::from_value(&v).expect("job");
        assert_eq!(job.workflow, json!({"nodes": {}}));
        assert!(job.variables.is_empty());
        assert_eq!(
            job.claimed_at.map(|t| t.to_rfc3339()),
            Some("2026-11-26T04:23:11.284556+00:00".to_string())
        );
        assert!(job.lease_expires_at.is_some());
        let err = ClaimedJob::from_value(&json!({"job_id": "j", "workflow_json": "{not json"}))
            .expect_err("bad workflow");
        assert!(err.contains("workflow_json of job j is not json"), "{err}");
        assert!(ClaimedJob::from_value(&json!({"workflow_json": "{}"})).is_err());
    }

    #[test]
    fn claimed_job_trigger_fields_become_variables_or_refuse_the_claim() {
        let v = json!({"job_id": "j-2", "workflow_json": "{}", "variables": {"a": 1},
                       "trigger_payload": "{\"file_path\": \"/in/a.txt\"}"});
        let job = ClaimedJob::from_value(&v).expect("job");
        assert_eq!(job.variables.get("a"), Some(&json!(1)));
        assert_eq!(
            job.variables.get("trigger_payload"),
            Some(&json!({"file_path": "/in/a.txt"}))
        );
        let bad = json!({"job_id": "j-3", "workflow_json": "{}", "trigger_metadata": 5});
        let err = ClaimedJob::from_value(&bad).unwrap_err();
        assert!(
            err.starts_with("trigger_metadata of job j-3: expected"),
            "{err}"
        );
    }

    #[test]
    fn claimed_job_ids_are_bounded_as_on_the_websocket() {
        let job = |id: String| json!({"job_id": id, "workflow_json": "{}"});
        let longest = "j".repeat(crate::link::protocol::MAX_JOB_ID_CHARS);
        assert!(ClaimedJob::from_value(&job(longest)).is_ok());
        let err = ClaimedJob::from_value(&job("j".repeat(1_000_000))).expect_err("too long");
        assert!(err.contains("1000000 characters long"), "{err}");
        assert!(
            err.len() < 200,
            "the error repeats the id: {} bytes",
            err.len()
        );
    }

    #[test]
    fn an_unusable_claim_is_a_bad_job_only_with_a_usable_id() {
        let call = "POST /api/v1/jobs/claim";
        let check = |value: Value, bad_job: Option<&str>| {
            let detail = ClaimedJob::from_value(&value).expect_err("unusable");
            let err = unusable_claim(call, &value, detail);
            match (&err, bad_job) {
                (RestError::BadJob { job_id, .. }, Some(id)) => assert_eq!(job_id, id),
                (RestError::Protocol { .. }, None) => {}
                _ => panic!("{value}: {err:?}"),
            }
            assert!(
                err.to_string().len() < 300,
                "{} bytes",
                err.to_string().len()
            );
        };
        check(
            json!({"job_id": "j-1", "workflow_json": "nope"}),
            Some("j-1"),
        );
        check(json!({"workflow_json": "{}"}), None);
        check(
            json!({"job_id": "j".repeat(1_000_000), "workflow_json": "{}"}),
            None,
        );
    }

    #[test]
    fn settings_and_client_debug_redact_the_key() {
        let mut s = RestSettings::new("http://127.0.0.1:1/", "r-1");
        s.api_key = Some("secret-key-123".into());
        assert!(!format!("{s:?}").contains("secret-key-123"));
        let c = RestClient::new(s).expect("client");
        assert!(!format!("{c:?}").contains("secret-key-123"));
        assert_eq!(c.base_url(), "http://127.0.0.1:1");
        assert_eq!(c.redact("echo secret-key-123"), "echo <redacted>");
        let bad = RestClient::new(RestSettings::new("ws://x", "r")).expect_err("ws url");
        assert!(matches!(bad, RestError::Config(_)));
    }
}

//! Robot configuration: the effective [`RobotConfig`], layered `robot_config.json` < environment
//! variables < command-line overrides, and where every value came from ([`Source`]).
//!
//! Parsing runs in two phases: each layer is first read into raw key/value entries (the file as JSON
//! values, env vars and flags as text), later layers replacing earlier ones; then one validation pass
//! turns the raw entries into typed values. Every problem (unknown key, wrong type, out of range) is
//! collected, so the user sees all of them at once. The environment is always an injected lookup
//! ([`EnvLookup`]) so tests never touch the process environment. Secrets ([`Secret`]) never appear in
//! `Debug` output, in [`RobotConfig::describe`] or in error messages.

use indexmap::IndexMap;
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Looks up an environment variable by name; [`process_env`] reads the real process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable from the process environment (the production [`EnvLookup`]).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Every key accepted in `robot_config.json`, as `CASARE_<KEY>` and by CLI overrides. The file also
/// accepts `checkpoint_dir` (alias of `data_dir`) and a nested `circuit_breaker` object.
pub const ALL_KEYS: &[&str] = &[
    "robot_id",
    "robot_name",
    "orchestrator_url",
    "api_url",
    "api_key",
    "supabase_url",
    "supabase_key",
    "environment",
    "max_concurrent_jobs",
    "heartbeat_interval",
    "reconnect_delay",
    "max_reconnect_delay",
    "reconnect_backoff_factor",
    "circuit_failure_threshold",
    "circuit_success_threshold",
    "circuit_timeout",
    "circuit_half_open_max_calls",
    "checkpoint_enabled",
    "checkpoint_retention_hours",
    "checkpoint_max_mb",
    "data_dir",
    "log_level",
    "log_dir",
    "node_timeout",
    "job_timeout",
    "node_max_retries",
    "node_initial_delay",
    "node_max_delay",
    "max_parallel_branches",
    "ws_dialect",
    "graceful_shutdown_seconds",
    "cancel_grace_seconds",
    "health_port",
    "allow_private_network",
    "allowed_paths",
    "run_command_enabled",
    "run_command_allowlist",
    "python_path",
    "node_path",
    "process_kill_allowlist",
    "poll_interval",
    "poll_max_interval",
    "lease_seconds",
    "health_disconnect_seconds",
    "log_max_mb",
    "log_backups",
    "audit_enabled",
    "audit_max_mb",
    "audit_backups",
    "max_value_mb",
    "max_resume_attempts",
    "node_executions_max",
    "finished_job_records",
    "max_frame_mb",
];

/// Keys that are also read from an unprefixed env var (`ROBOT_ID`, …), after `CASARE_<KEY>`.
const UNPREFIXED_ENV: &[&str] = &[
    "robot_id",
    "robot_name",
    "orchestrator_url",
    "supabase_url",
    "supabase_key",
];
/// Names accepted at the top of the file besides [`ALL_KEYS`] (for suggestions).
const FILE_KEYS: &[&str] = &["checkpoint_dir", "circuit_breaker"];
const SECRET_KEYS: &[&str] = &["api_key", "supabase_key"];
const CIRCUIT_KEYS: &[&str] = &[
    "failure_threshold",
    "success_threshold",
    "timeout",
    "half_open_max_calls",
];
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];
const FILE_NAME: &str = "robot_config.json";

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The config file at this path.
    File(PathBuf),
    /// The named environment variable.
    Env(String),
    /// The named command-line flag.
    Cli(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "env {var}"),
            Source::Cli(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A secret string (API key); `Debug` shows only its masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value, for the code that sends it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `****` plus the last 4 characters when the secret is longer than 8, else `****`.
    pub fn masked(&self) -> String {
        let n_chars = self.0.chars().count();
        if n_chars > 8 {
            let tail: String = self.0.chars().skip(n_chars - 4).collect();
            format!("****{tail}")
        } else {
            "****".to_string()
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.masked())
    }
}

/// Which message names the WebSocket link speaks (see the protocol brief).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsDialect {
    /// The CasareRPA orchestrator's flat `/ws/robot/{robot_id}` protocol.
    Casare,
    /// The message names of the Robot Reference document.
    Reference,
}

/// One configuration problem; messages are lowercase and name the key, value, origin and what is allowed.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigError {
    /// The config file given explicitly (`--config`) does not exist.
    NotFound { path: PathBuf },
    /// The config file exists but could not be read.
    Read { path: PathBuf, message: String },
    /// The config file is not valid JSON.
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// The config file's top level is not a JSON object.
    NotAnObject { path: PathBuf },
    /// A key nobody reads, with the closest known key when one is near.
    UnknownKey {
        key: String,
        source: Source,
        suggestion: Option<String>,
    },
    /// The same setting appears twice in the file under different names.
    Duplicate {
        key: &'static str,
        alias: String,
        path: PathBuf,
    },
    /// A value of the wrong type, out of range, or not one of the allowed values.
    Invalid {
        key: &'static str,
        value: String,
        source: Source,
        expected: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotFound { path } => {
                write!(f, "config file {} not found", path.display())
            }
            ConfigError::Read { path, message } => {
                write!(f, "cannot read config file {}: {message}", path.display())
            }
            ConfigError::Syntax {
                path,
                line,
                column,
                message,
            } => write!(
                f,
                "invalid JSON in {} at line {line}, column {column}: {message}",
                path.display()
            ),
            ConfigError::NotAnObject { path } => write!(
                f,
                "config file {} must hold a JSON object of settings at the top level",
                path.display()
            ),
            ConfigError::UnknownKey {
                key,
                source,
                suggestion,
            } => {
                write!(f, "unknown key {key:?} in {source}")?;
                match suggestion {
                    Some(known) => write!(f, " (did you mean {known:?}?)"),
                    None => Ok(()),
                }
            }
            ConfigError::Duplicate { key, alias, path } => write!(
                f,
                "{key} is set twice in {} (also as {alias:?}): keep one",
                path.display()
            ),
            ConfigError::Invalid {
                key,
                value,
                source,
                expected,
            } => {
                write!(f, "{key} = {value} (from {source}): {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// All the problems found while loading the configuration (never empty).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (idx, error) in self.0.iter().enumerate() {
            if idx > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A command-line override: `key` set to the text `value` by the flag named `flag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliOverride {
    /// The config key (or the `checkpoint_dir` alias).
    pub key: String,
    /// The value as typed; parsed like an env var.
    pub value: String,
    /// The flag's name as the user typed it, e.g. `--log-level`.
    pub flag: String,
}

impl CliOverride {
    /// Builds an override.
    pub fn new(key: impl Into<String>, value: impl Into<String>, flag: impl Into<String>) -> Self {
        CliOverride {
            key: key.into(),
            value: value.into(),
            flag: flag.into(),
        }
    }
}

/// The platform whose default directories are computed (a parameter, so both are testable anywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// `%PROGRAMDATA%\CasareRPA\Robot`.
    Windows,
    /// XDG base directories.
    Unix,
}

impl Platform {
    /// The platform this binary was built for.
    pub fn current() -> Self {
        if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Unix
        }
    }
}

/// Default locations for the config file's directory, durable data and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultDirs {
    /// Directory of the default `robot_config.json`.
    pub config_dir: PathBuf,
    /// Default `data_dir` (store, checkpoints, identity).
    pub data_dir: PathBuf,
    /// Default `log_dir`.
    pub log_dir: PathBuf,
}

/// Computes the default directories for `platform`, reading variables through `env`.
///
/// Windows: `%PROGRAMDATA%\CasareRPA\Robot` (else `%LOCALAPPDATA%`), logs in its `logs` subfolder.
/// Unix: `$XDG_CONFIG_HOME/casare-robot`, `$XDG_DATA_HOME/casare-robot` and
/// `$XDG_STATE_HOME/casare-robot/logs`, each falling back to `~/.config`, `~/.local/share`, `~/.local/state`.
pub fn default_dirs(platform: Platform, env: EnvLookup) -> DefaultDirs {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    match platform {
        Platform::Windows => {
            let base = var("PROGRAMDATA")
                .or_else(|| var("LOCALAPPDATA"))
                .unwrap_or_else(|| r"C:\ProgramData".to_string());
            let root = join(platform, &base, &["CasareRPA", "Robot"]);
            let log_dir = join(platform, &root, &["logs"]);
            DefaultDirs {
                config_dir: root.clone().into(),
                data_dir: root.into(),
                log_dir: log_dir.into(),
            }
        }
        Platform::Unix => {
            let home = var("HOME").unwrap_or_else(|| ".".to_string());
            let xdg = |name: &str, fallback: &[&str]| {
                var(name)
                    .filter(|dir| Path::new(dir).is_absolute())
                    .unwrap_or_else(|| join(platform, &home, fallback))
            };
            let config = xdg("XDG_CONFIG_HOME", &[".config"]);
            let data = xdg("XDG_DATA_HOME", &[".local", "share"]);
            let state = xdg("XDG_STATE_HOME", &[".local", "state"]);
            DefaultDirs {
                config_dir: join(platform, &config, &["casare-robot"]).into(),
                data_dir: join(platform, &data, &["casare-robot"]).into(),
                log_dir: join(platform, &state, &["casare-robot", "logs"]).into(),
            }
        }
    }
}

fn join(platform: Platform, base: &str, parts: &[&str]) -> String {
    let sep = if platform == Platform::Windows {
        '\\'
    } else {
        '/'
    };
    let mut path = base.to_string();
    for part in parts {
        if !path.ends_with(sep) {
            path.push(sep);
        }
        path.push_str(part);
    }
    path
}

/// The config file used without `--config`: `robot_config.json` in the current directory if it
/// exists, else `robot_config.json` in the platform's config directory.
pub fn default_config_path(env: EnvLookup) -> PathBuf {
    let local = PathBuf::from(FILE_NAME);
    if local.is_file() {
        return local;
    }
    default_dirs(Platform::current(), env)
        .config_dir
        .join(FILE_NAME)
}

/// The machine's host name: `COMPUTERNAME`, `HOSTNAME`, `/etc/hostname`, else `localhost`.
pub fn hostname(env: EnvLookup) -> String {
    ["COMPUTERNAME", "HOSTNAME"]
        .iter()
        .find_map(|name| env(name).filter(|host| !host.trim().is_empty()))
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_string())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether `id` matches `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_valid_robot_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Generates a fresh robot id `robot-{hostname}-{8 hex}`: characters outside `[A-Za-z0-9_-]` become
/// `-`, and the host part is truncated so the id is at most 64 characters.
pub fn sanitize_robot_id(hostname: &str) -> String {
    robot_id_with(hostname, fastrand::u32(..))
}

fn robot_id_with(hostname: &str, random: u32) -> String {
    let host: String = hostname
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut host = host.trim_matches('-').to_string();
    if host.is_empty() {
        host = "localhost".to_string();
    }
    host.truncate(64 - "robot-".len() - "-".len() - 8); // all ASCII by now
    format!("robot-{host}-{random:08x}")
}

/// The robot's effective configuration. Field names are the config keys; durations are given in
/// seconds (int or float) in the file and env.
#[derive(Debug, Clone, PartialEq)]
pub struct RobotConfig {
    /// Stable robot id (`^[A-Za-z0-9_-]{1,64}$`); `None` means "generate and persist one".
    pub robot_id: Option<String>,
    /// Display name, default `Robot-{hostname}`.
    pub robot_name: String,
    /// WebSocket orchestrator URL (`ws://` or `wss://`).
    pub orchestrator_url: Option<String>,
    /// REST orchestrator URL (`http://` or `https://`), enables polling.
    pub api_url: Option<String>,
    /// Orchestrator API key.
    pub api_key: Option<Secret>,
    /// Supabase project URL (`http://` or `https://`), for progress broadcast.
    pub supabase_url: Option<String>,
    /// Supabase API key.
    pub supabase_key: Option<Secret>,
    /// Routing tag sent with register and claim.
    pub environment: String,
    /// Jobs run at once, 1..=64. Default 3, the reference design's `job_execution.max_concurrent_jobs`
    /// (the current upstream robot and the orchestrator's `register` default use 1).
    pub max_concurrent_jobs: u32,
    /// Heartbeat period (30 s, as the reference WebSocket robot).
    pub heartbeat_interval: Duration,
    /// First reconnect delay.
    pub reconnect_delay: Duration,
    /// Reconnect delay cap.
    pub max_reconnect_delay: Duration,
    /// Reconnect delay multiplier, >= 1.0.
    pub reconnect_backoff_factor: f64,
    /// Failures that open the circuit breaker.
    pub circuit_failure_threshold: u32,
    /// Half-open successes that close it.
    pub circuit_success_threshold: u32,
    /// How long the breaker stays open.
    pub circuit_timeout: Duration,
    /// Calls allowed while half-open.
    pub circuit_half_open_max_calls: u32,
    /// Whether per-node checkpoints are written.
    pub checkpoint_enabled: bool,
    /// How long checkpoints of failed or cancelled jobs are kept before they are purged.
    pub checkpoint_retention_hours: Duration,
    /// Upper bound on the checkpoint store; the oldest finished checkpoints are purged past it.
    pub checkpoint_max_mb: u64,
    /// Durable state directory (store, checkpoints); `checkpoint_dir` in the file is an alias.
    pub data_dir: PathBuf,
    /// Log level filter.
    pub log_level: log::LevelFilter,
    /// Log file directory.
    pub log_dir: PathBuf,
    /// Default per-node timeout.
    pub node_timeout: Duration,
    /// Per-job timeout.
    pub job_timeout: Duration,
    /// Default node retries.
    pub node_max_retries: u32,
    /// First node retry delay.
    pub node_initial_delay: Duration,
    /// Node retry delay cap.
    pub node_max_delay: Duration,
    /// Branches of one Fork (items of one ParallelForEach) that run at the same time.
    pub max_parallel_branches: usize,
    /// WebSocket message dialect.
    pub ws_dialect: WsDialect,
    /// Time running jobs get to finish on shutdown.
    pub graceful_shutdown_seconds: Duration,
    /// Time between a cooperative cancel and killing child processes.
    pub cancel_grace_seconds: Duration,
    /// Port of the localhost `/health` endpoint; 0 disables it.
    pub health_port: u16,
    /// Lets HTTP nodes reach loopback and private addresses.
    pub allow_private_network: bool,
    /// Paths file nodes may touch; empty means unrestricted.
    pub allowed_paths: Vec<PathBuf>,
    /// Whether the run-command node is enabled.
    pub run_command_enabled: bool,
    /// Programs the run-command node may start; empty means any.
    pub run_command_allowlist: Vec<String>,
    /// The Python interpreter of the Python script nodes; `None` searches the platform defaults.
    pub python_path: Option<String>,
    /// The Node.js interpreter of `RunJavaScriptNode`; `None` means `node`.
    pub node_path: Option<String>,
    /// Process names `ProcessKillNode` may kill; empty means any (but the robot and its ancestors).
    pub process_kill_allowlist: Vec<String>,
    /// REST poll interval when idle.
    pub poll_interval: Duration,
    /// Cap of the growing idle poll interval.
    pub poll_max_interval: Duration,
    /// The REST job lease asked for at claim and renewal (renewed at a third of it).
    pub lease_seconds: Duration,
    /// `/health` answers 503 once the orchestrator link has been down this long.
    pub health_disconnect_seconds: Duration,
    /// The log file is rotated when it reaches this size (MB).
    pub log_max_mb: u64,
    /// Rotated log files kept.
    pub log_backups: u32,
    /// Write the audit trail (`<log_dir>/audit/audit_YYYY-MM-DD.jsonl`).
    pub audit_enabled: bool,
    /// An audit file is rotated when it reaches this size (MB).
    pub audit_max_mb: u64,
    /// Rotated audit files kept.
    pub audit_backups: u32,
    /// A run's value budget (MB): what its variables and node outputs may hold together.
    pub max_value_mb: u64,
    /// Resumes of an interrupted job that may die in a row before the job fails as a poison job.
    pub max_resume_attempts: u32,
    /// Node executions listed in a job's result (`node_executions`); the rest are only counted.
    pub node_executions_max: usize,
    /// Settled job records kept to answer a job assigned again (the newest by settle order;
    /// wall-clock time plays no part, so a clock step purges nothing).
    pub finished_job_records: u64,
    /// The largest message the robot sends to the orchestrator (MB); a larger result is sent
    /// truncated (its outputs replaced by a note), its full text kept in the store.
    pub max_frame_mb: u64,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    sources: IndexMap<&'static str, Source>,
}

static DEFAULT_SOURCE: Source = Source::Default;

impl RobotConfig {
    /// Loads the configuration: `explicit_path` (from `--config`, which must exist) or the
    /// [`default_config_path`] (which may be missing), then env, then `cli` overrides.
    pub fn load(
        explicit_path: Option<&Path>,
        env: EnvLookup,
        cli: &[CliOverride],
    ) -> Result<Self, ConfigErrors> {
        match explicit_path {
            Some(path) => Self::load_at(path, true, env, cli),
            None => Self::load_at(&default_config_path(env), false, env, cli),
        }
    }

    /// [`RobotConfig::load`] with the process environment.
    pub fn load_from_process_env(
        explicit_path: Option<&Path>,
        cli: &[CliOverride],
    ) -> Result<Self, ConfigErrors> {
        Self::load(explicit_path, &process_env, cli)
    }

    fn load_at(
        path: &Path,
        explicit: bool,
        env: EnvLookup,
        cli: &[CliOverride],
    ) -> Result<Self, ConfigErrors> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigErrors(vec![ConfigError::NotFound {
                    path: path.into(),
                }]))
            }
            Err(e) => {
                let message = e.to_string().to_lowercase();
                return Err(ConfigErrors(vec![ConfigError::Read {
                    path: path.into(),
                    message,
                }]));
            }
        };
        Self::from_sources(text.as_deref().map(|text| (path, text)), env, cli)
    }

    /// Builds the configuration from a file's path and text (if any), an env lookup and overrides.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: EnvLookup,
        cli: &[CliOverride],
    ) -> Result<Self, ConfigErrors> {
        let mut raw = IndexMap::new();
        let mut errors = Vec::new();
        if let Some((path, text)) = file {
            read_file_layer(path, text, &mut raw, &mut errors);
        }
        read_env_layer(env, &mut raw);
        for o in cli {
            match canonical_key(&o.key) {
                Some(key) => {
                    let value = RawValue::Text(o.value.clone());
                    raw.insert(
                        key,
                        RawEntry {
                            value,
                            source: Source::Cli(o.flag.clone()),
                        },
                    );
                }
                None => {
                    let source = Source::Cli(o.flag.clone());
                    errors.push(unknown_key(o.key.clone(), source, "", ALL_KEYS));
                }
            }
        }
        let (mut config, validation_errors) = validate(&raw, env);
        errors.extend(validation_errors);
        config.config_file = file.map(|(path, _)| path.to_path_buf());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// All defaults, with host `test-host` and directories under the system temp dir.
    pub fn default_for_tests() -> Self {
        let data_dir = std::env::temp_dir().join("casare-robot-tests");
        let data = data_dir.to_string_lossy().into_owned();
        let env = move |name: &str| match name {
            "HOSTNAME" => Some("test-host".to_string()),
            "XDG_DATA_HOME" | "XDG_STATE_HOME" | "XDG_CONFIG_HOME" | "HOME" => Some(data.clone()),
            _ => None,
        };
        validate(&IndexMap::new(), &env).0
    }

    /// Where `key`'s value came from ([`Source::Default`] for unknown keys).
    pub fn source(&self, key: &str) -> &Source {
        self.sources.get(key).unwrap_or(&DEFAULT_SOURCE)
    }

    /// Every key with its display value and source, in [`ALL_KEYS`] order, for `validate-config`.
    /// Secrets are masked and unset values shown as `(not set)`.
    pub fn describe(&self) -> Vec<(&'static str, String, Source)> {
        ALL_KEYS
            .iter()
            .map(|&key| (key, self.display_value(key), self.source(key).clone()))
            .collect()
    }

    fn display_value(&self, key: &str) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".to_string());
        let secret =
            |v: &Option<Secret>| v.as_ref().map_or("(not set)".to_string(), Secret::masked);
        let url = |v: &Option<String>| crate::redact::mask_url_passwords(&opt(v)).into_owned();
        let secs = |d: &Duration| format!("{}s", d.as_secs_f64());
        let list = |items: Vec<String>| {
            if items.is_empty() {
                "(empty)".to_string()
            } else {
                items.join(", ")
            }
        };
        match key {
            "robot_id" => opt(&self.robot_id),
            "robot_name" => self.robot_name.clone(),
            "orchestrator_url" => url(&self.orchestrator_url),
            "api_url" => url(&self.api_url),
            "api_key" => secret(&self.api_key),
            "supabase_url" => url(&self.supabase_url),
            "supabase_key" => secret(&self.supabase_key),
            "environment" => self.environment.clone(),
            "max_concurrent_jobs" => self.max_concurrent_jobs.to_string(),
            "heartbeat_interval" => secs(&self.heartbeat_interval),
            "reconnect_delay" => secs(&self.reconnect_delay),
            "max_reconnect_delay" => secs(&self.max_reconnect_delay),
            "reconnect_backoff_factor" => self.reconnect_backoff_factor.to_string(),
            "circuit_failure_threshold" => self.circuit_failure_threshold.to_string(),
            "circuit_success_threshold" => self.circuit_success_threshold.to_string(),
            "circuit_timeout" => secs(&self.circuit_timeout),
            "circuit_half_open_max_calls" => self.circuit_half_open_max_calls.to_string(),
            "checkpoint_enabled" => self.checkpoint_enabled.to_string(),
            "checkpoint_retention_hours" => {
                format!(
                    "{}h",
                    self.checkpoint_retention_hours.as_secs_f64() / 3600.0
                )
            }
            "checkpoint_max_mb" => self.checkpoint_max_mb.to_string(),
            "data_dir" => self.data_dir.display().to_string(),
            "log_level" => self.log_level.to_string().to_lowercase(),
            "log_dir" => self.log_dir.display().to_string(),
            "node_timeout" => secs(&self.node_timeout),
            "job_timeout" => secs(&self.job_timeout),
            "node_max_retries" => self.node_max_retries.to_string(),
            "node_initial_delay" => secs(&self.node_initial_delay),
            "node_max_delay" => secs(&self.node_max_delay),
            "max_parallel_branches" => self.max_parallel_branches.to_string(),
            "ws_dialect" => format!("{:?}", self.ws_dialect).to_lowercase(),
            "graceful_shutdown_seconds" => secs(&self.graceful_shutdown_seconds),
            "cancel_grace_seconds" => secs(&self.cancel_grace_seconds),
            "health_port" => self.health_port.to_string(),
            "allow_private_network" => self.allow_private_network.to_string(),
            "allowed_paths" => list(
                self.allowed_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            ),
            "run_command_enabled" => self.run_command_enabled.to_string(),
            "run_command_allowlist" => list(self.run_command_allowlist.clone()),
            "python_path" => self
                .python_path
                .clone()
                .unwrap_or_else(|| "(search)".into()),
            "node_path" => self.node_path.clone().unwrap_or_else(|| "node".into()),
            "process_kill_allowlist" => list(self.process_kill_allowlist.clone()),
            "poll_interval" => secs(&self.poll_interval),
            "poll_max_interval" => secs(&self.poll_max_interval),
            "lease_seconds" => secs(&self.lease_seconds),
            "health_disconnect_seconds" => secs(&self.health_disconnect_seconds),
            "log_max_mb" => self.log_max_mb.to_string(),
            "log_backups" => self.log_backups.to_string(),
            "audit_enabled" => self.audit_enabled.to_string(),
            "audit_max_mb" => self.audit_max_mb.to_string(),
            "audit_backups" => self.audit_backups.to_string(),
            "max_value_mb" => self.max_value_mb.to_string(),
            "max_resume_attempts" => self.max_resume_attempts.to_string(),
            "node_executions_max" => self.node_executions_max.to_string(),
            "finished_job_records" => self.finished_job_records.to_string(),
            "max_frame_mb" => self.max_frame_mb.to_string(),
            _ => "(unknown key)".to_string(),
        }
    }
}

// ---- phase 1: raw layers -------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum RawValue {
    Json(Value),
    Text(String),
}

#[derive(Debug, Clone)]
struct RawEntry {
    value: RawValue,
    source: Source,
}

type RawConfig = IndexMap<&'static str, RawEntry>;

fn canonical_key(name: &str) -> Option<&'static str> {
    if name == "checkpoint_dir" {
        return Some("data_dir");
    }
    ALL_KEYS.iter().copied().find(|&key| key == name)
}

/// An unknown-key error suggesting the nearest of `candidates` (each prefixed with `prefix`).
fn unknown_key(key: String, source: Source, prefix: &str, candidates: &[&str]) -> ConfigError {
    let suggestion = candidates
        .iter()
        .map(|known| format!("{prefix}{known}"))
        .map(|known| (edit_distance(&key, &known), known))
        .filter(|(distance, _)| *distance <= 3)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known);
    ConfigError::UnknownKey {
        key,
        source,
        suggestion,
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

fn read_file_layer(path: &Path, text: &str, raw: &mut RawConfig, errors: &mut Vec<ConfigError>) {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            let message = e.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string();
            let (line, column) = (e.line(), e.column());
            errors.push(ConfigError::Syntax {
                path: path.into(),
                line,
                column,
                message,
            });
            return;
        }
    };
    let Value::Object(map) = value else {
        errors.push(ConfigError::NotAnObject { path: path.into() });
        return;
    };
    let source = Source::File(path.into());
    let mut put = |name: String, key: &'static str, value: Value, errors: &mut Vec<ConfigError>| {
        let entry = RawEntry {
            value: RawValue::Json(value),
            source: source.clone(),
        };
        if raw.insert(key, entry).is_some() {
            errors.push(ConfigError::Duplicate {
                key,
                alias: name,
                path: path.into(),
            });
        }
    };
    for (name, value) in map {
        if name.starts_with(['_', '$']) {
            continue;
        }
        if name == "circuit_breaker" {
            let Value::Object(inner) = value else {
                let expected = format!("must be an object with {}", CIRCUIT_KEYS.join(", "));
                let value = value.to_string();
                errors.push(ConfigError::Invalid {
                    key: "circuit_breaker",
                    value,
                    source: source.clone(),
                    expected,
                });
                continue;
            };
            for (sub, value) in inner {
                match canonical_key(&format!("circuit_{sub}"))
                    .filter(|_| CIRCUIT_KEYS.contains(&sub.as_str()))
                {
                    Some(key) => put(format!("circuit_breaker.{sub}"), key, value, errors),
                    None if sub.starts_with(['_', '$']) => {}
                    None => {
                        let key = format!("circuit_breaker.{sub}");
                        let prefix = "circuit_breaker.";
                        errors.push(unknown_key(key, source.clone(), prefix, CIRCUIT_KEYS));
                    }
                }
            }
            continue;
        }
        match canonical_key(&name) {
            Some(key) => put(name, key, value, errors),
            None => {
                let candidates = [ALL_KEYS, FILE_KEYS].concat();
                errors.push(unknown_key(name, source.clone(), "", &candidates));
            }
        }
    }
}

/// A `CASARE_*` environment variable that names no configuration key (a typo such as
/// `CASARE_HEARTBEAT_INTERVALL` would otherwise be ignored in silence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownEnvVar {
    /// The variable.
    pub name: String,
    /// The closest `CASARE_<KEY>`, when one is near.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownEnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {} names no configuration key and is ignored",
            self.name
        )?;
        match &self.suggestion {
            Some(known) => write!(f, " (did you mean {known}?)"),
            None => write!(f, " (CASARE_<KEY> for a key of robot_config.json)"),
        }
    }
}

/// The `CASARE_*` variables among `names` (the environment's variable names) that name no
/// configuration key, sorted, each with the closest `CASARE_<KEY>`.
pub fn unknown_env_vars(names: impl IntoIterator<Item = String>) -> Vec<UnknownEnvVar> {
    let known: Vec<String> = ALL_KEYS
        .iter()
        .map(|key| format!("CASARE_{}", key.to_uppercase()))
        .collect();
    let known: Vec<&str> = known.iter().map(String::as_str).collect();
    let mut unknown: Vec<UnknownEnvVar> = names
        .into_iter()
        .filter(|name| name.starts_with("CASARE_") && !known.contains(&name.as_str()))
        .map(
            |name| match unknown_key(name, Source::Default, "", &known) {
                ConfigError::UnknownKey {
                    key, suggestion, ..
                } => UnknownEnvVar {
                    name: key,
                    suggestion,
                },
                other => unreachable!("unknown_key made {other:?}"),
            },
        )
        .collect();
    unknown.sort_by(|a, b| a.name.cmp(&b.name));
    unknown
}

fn read_env_layer(env: EnvLookup, raw: &mut RawConfig) {
    for &key in ALL_KEYS {
        let mut names = vec![format!("CASARE_{}", key.to_uppercase())];
        if UNPREFIXED_ENV.contains(&key) {
            names.push(key.to_uppercase());
        }
        let found = names.into_iter().find_map(|name| {
            env(&name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| (name, value))
        });
        if let Some((name, value)) = found {
            raw.insert(
                key,
                RawEntry {
                    value: RawValue::Text(value),
                    source: Source::Env(name),
                },
            );
        }
    }
}

impl RawValue {
    fn as_u64(&self) -> Option<u64> {
        match self {
            RawValue::Json(value) => value.as_u64(),
            RawValue::Text(text) => text.trim().parse().ok(),
        }
    }
    fn as_f64(&self) -> Option<f64> {
        let number = match self {
            RawValue::Json(value) => value.as_f64(),
            RawValue::Text(text) => text.trim().parse().ok(),
        };
        number.filter(|n: &f64| n.is_finite())
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            RawValue::Json(value) => value.as_bool(),
            RawValue::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            },
        }
    }
    fn as_str(&self) -> Option<&str> {
        match self {
            RawValue::Json(Value::String(text)) | RawValue::Text(text) => Some(text.trim()),
            RawValue::Json(_) => None,
        }
    }
    fn as_list(&self) -> Option<Vec<String>> {
        let items: Vec<String> = match self {
            RawValue::Json(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
            RawValue::Json(_) => return None,
            RawValue::Text(text) => text.split(',').map(str::to_string).collect(),
        };
        Some(
            items
                .into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }
    fn shown(&self, key: &str) -> String {
        if SECRET_KEYS.contains(&key) {
            let text = match self {
                RawValue::Json(Value::String(text)) | RawValue::Text(text) => text.clone(),
                RawValue::Json(value) => value.to_string(),
            };
            return format!("{:?}", Secret(text).masked());
        }
        let shown = match self {
            RawValue::Json(value) => value.to_string(),
            RawValue::Text(text) => format!("{text:?}"),
        };
        crate::redact::mask_url_passwords(&shown).into_owned()
    }
}

// ---- phase 2: validation -------------------------------------------------------------------------

struct Validator<'a> {
    raw: &'a RawConfig,
    sources: IndexMap<&'static str, Source>,
    errors: Vec<ConfigError>,
}

impl Validator<'_> {
    fn get<T>(
        &mut self,
        key: &'static str,
        default: T,
        expected: &str,
        parse: impl FnOnce(&RawValue) -> Option<T>,
    ) -> T {
        let raw = self.raw;
        let Some(entry) = raw.get(key) else {
            self.sources.insert(key, Source::Default);
            return default;
        };
        self.sources.insert(key, entry.source.clone());
        parse(&entry.value).unwrap_or_else(|| {
            let (value, source) = (entry.value.shown(key), entry.source.clone());
            let expected = expected.to_string();
            self.errors.push(ConfigError::Invalid {
                key,
                value,
                source,
                expected,
            });
            default
        })
    }
    fn int(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        let expected = format!("must be an integer from {min} to {max}");
        self.get(key, default, &expected, |v| {
            v.as_u64().filter(|n| (min..=max).contains(n))
        })
    }
    fn float(&mut self, key: &'static str, default: f64, min: f64, max: f64) -> f64 {
        let expected = format!("must be a number from {min} to {max}");
        self.get(key, default, &expected, |v| {
            v.as_f64().filter(|n| (min..=max).contains(n))
        })
    }
    fn secs(&mut self, key: &'static str, default: f64, min: f64, max: f64) -> Duration {
        let expected = format!("must be a number of seconds from {min} to {max}");
        let secs = self.get(key, default, &expected, |v| {
            v.as_f64().filter(|n| (min..=max).contains(n))
        });
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
    }
    fn bool(&mut self, key: &'static str, default: bool) -> bool {
        self.get(key, default, "must be true or false", RawValue::as_bool)
    }
    fn text(&mut self, key: &'static str, default: String) -> String {
        let expected =
            "must be a non-empty string of at most 128 characters, without control characters";
        self.get(key, default, expected, |v| {
            v.as_str()
                .filter(|s| (1..=128).contains(&s.chars().count()))
                .filter(|s| !s.chars().any(char::is_control))
                .map(str::to_string)
        })
    }
    /// An optional string: JSON `null` or an empty string means "not set".
    fn optional(
        &mut self,
        key: &'static str,
        expected: &str,
        check: fn(&str) -> bool,
    ) -> Option<String> {
        self.get(key, None, expected, |v| match v {
            RawValue::Json(Value::Null) => Some(None),
            _ => v
                .as_str()
                .filter(|s| s.is_empty() || check(s))
                .map(|s| (!s.is_empty()).then(|| s.to_string())),
        })
    }
    /// An optional URL with one of `schemes`; a wrong one is reported with what is wrong in it.
    fn url(
        &mut self,
        key: &'static str,
        expected: &str,
        schemes: &[&str],
        check: fn(&str) -> bool,
    ) -> Option<String> {
        let problem = self
            .raw
            .get(key)
            .and_then(|entry| entry.value.as_str())
            .filter(|url| has_scheme(url, schemes))
            .and_then(|url| url_problem(url, schemes));
        let expected = match problem {
            Some(problem) => format!("{expected}: {problem}"),
            None => expected.to_string(),
        };
        self.optional(key, &expected, check)
    }
    /// A path; JSON `null` means "the platform default".
    fn path(&mut self, key: &'static str, default: PathBuf) -> PathBuf {
        let fallback = default.clone();
        self.get(
            key,
            default,
            "must be a non-empty path (or null for the platform default)",
            |v| match v {
                RawValue::Json(Value::Null) => Some(fallback),
                _ => v.as_str().filter(|s| !s.is_empty()).map(PathBuf::from),
            },
        )
    }
    fn list(&mut self, key: &'static str, expected: &str) -> Vec<String> {
        self.get(key, Vec::new(), expected, RawValue::as_list)
    }
    fn choice(
        &mut self,
        key: &'static str,
        default: &'static str,
        choices: &[&'static str],
    ) -> &'static str {
        let expected = format!("must be one of {}", choices.join(", "));
        self.get(key, default, &expected, |v| {
            v.as_str()
                .and_then(|s| choices.iter().copied().find(|c| c.eq_ignore_ascii_case(s)))
        })
    }
    /// Reports `key` when its value is below `lower_key`'s.
    fn at_least(&mut self, key: &'static str, value: Duration, lower_key: &str, lower: Duration) {
        if value < lower {
            let source = self.sources.get(key).cloned().unwrap_or(Source::Default);
            let (value, lower) = (value.as_secs_f64(), lower.as_secs_f64());
            let expected = format!("must be at least {lower_key} ({lower})");
            self.errors.push(ConfigError::Invalid {
                key,
                value: value.to_string(),
                source,
                expected,
            });
        }
    }
}

const HTTP_EXPECTED: &str = "must be an http:// or https:// URL";

const WS_SCHEMES: &[&str] = &["ws", "wss"];
const HTTP_SCHEMES: &[&str] = &["http", "https"];

fn is_ws_url(url: &str) -> bool {
    url_problem(url, WS_SCHEMES).is_none()
}

fn is_http_url(url: &str) -> bool {
    url_problem(url, HTTP_SCHEMES).is_none()
}

/// What is wrong with `url` as a URL with one of `schemes` (host name or IP literal, optional
/// port 1-65535), or `None` when nothing is.
fn url_problem(url: &str, schemes: &[&str]) -> Option<String> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains a space or a control character".into());
    }
    if !has_scheme(url, schemes) {
        return Some("wrong scheme".into());
    }
    let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port, bracketed) = if let Some(inner) = host_port.strip_prefix('[') {
        let Some((ip, after)) = inner.split_once(']') else {
            return Some(format!("'[{inner}' has no closing ']'"));
        };
        // A zone id (`%25eth0`) may follow a link-local address.
        let address = ip.split('%').next().unwrap_or(ip);
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Some(format!("'{ip}' is not an IPv6 address"));
        }
        match after {
            "" => (ip, None, true),
            _ => match after.strip_prefix(':') {
                Some(port) => (ip, Some(port), true),
                None => return Some(format!("unexpected '{after}' after ']'")),
            },
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port), false),
            None => (host_port, None, false),
        }
    };
    if host.is_empty() {
        return Some("the host is missing".into());
    }
    let host_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '%');
    if let Some(bad) = host.chars().find(|c| !bracketed && !host_char(*c)) {
        return Some(format!("the host '{host}' contains {bad:?}"));
    }
    if let Some(port) = port {
        let valid =
            port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0);
        if !valid {
            return Some(format!("port '{port}' is not a number from 1 to 65535"));
        }
    }
    None
}

fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    let lower = url.to_ascii_lowercase();
    schemes.iter().any(|scheme| {
        lower
            .strip_prefix(scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|rest| !rest.is_empty())
    })
}

const PROGRAM_EXPECTED: &str =
    "must be a program name or path (or null for the default), without control characters";

fn is_program_text(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

fn is_header_text(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Validates the raw layers into a config (bad values replaced by defaults) plus every error found.
fn validate(raw: &RawConfig, env: EnvLookup) -> (RobotConfig, Vec<ConfigError>) {
    let dirs = default_dirs(Platform::current(), env);
    let mut v = Validator {
        raw,
        sources: IndexMap::new(),
        errors: Vec::new(),
    };
    let id_expected = "must be 1 to 64 characters from A-Z, a-z, 0-9, _ and -";
    // Keys travel in HTTP headers, which carry printable ASCII only.
    let secret = |v: &mut Validator, key| {
        v.optional(
            key,
            "must be a string of printable ASCII characters (no control characters)",
            is_header_text,
        )
        .map(Secret)
    };
    let mut config = RobotConfig {
        robot_id: v.optional("robot_id", id_expected, is_valid_robot_id),
        robot_name: v.text("robot_name", format!("Robot-{}", hostname(env))),
        orchestrator_url: v.url(
            "orchestrator_url",
            "must be a ws:// or wss:// URL",
            WS_SCHEMES,
            is_ws_url,
        ),
        api_url: v.url("api_url", HTTP_EXPECTED, HTTP_SCHEMES, is_http_url),
        api_key: secret(&mut v, "api_key"),
        supabase_url: v.url("supabase_url", HTTP_EXPECTED, HTTP_SCHEMES, is_http_url),
        supabase_key: secret(&mut v, "supabase_key"),
        environment: v.text("environment", "default".to_string()),
        max_concurrent_jobs: v.int("max_concurrent_jobs", 3, 1, 64) as u32,
        heartbeat_interval: v.secs("heartbeat_interval", 30.0, 1.0, 3600.0),
        reconnect_delay: v.secs("reconnect_delay", 1.0, 0.1, 3600.0),
        max_reconnect_delay: v.secs("max_reconnect_delay", 60.0, 0.1, 86400.0),
        reconnect_backoff_factor: v.float("reconnect_backoff_factor", 2.0, 1.0, 10.0),
        circuit_failure_threshold: v.int("circuit_failure_threshold", 5, 1, 1000) as u32,
        circuit_success_threshold: v.int("circuit_success_threshold", 2, 1, 1000) as u32,
        circuit_timeout: v.secs("circuit_timeout", 60.0, 0.1, 86400.0),
        circuit_half_open_max_calls: v.int("circuit_half_open_max_calls", 3, 1, 1000) as u32,
        checkpoint_enabled: v.bool("checkpoint_enabled", true),
        checkpoint_retention_hours: Duration::from_secs_f64(
            v.float("checkpoint_retention_hours", 72.0, 0.0, 8760.0) * 3600.0,
        ),
        checkpoint_max_mb: v.int("checkpoint_max_mb", 1024, 1, 1_000_000),
        data_dir: v.path("data_dir", dirs.data_dir),
        log_level: match v.choice("log_level", "info", LOG_LEVELS) {
            "trace" => log::LevelFilter::Trace,
            "debug" => log::LevelFilter::Debug,
            "warn" => log::LevelFilter::Warn,
            "error" => log::LevelFilter::Error,
            _ => log::LevelFilter::Info,
        },
        log_dir: v.path("log_dir", dirs.log_dir),
        node_timeout: v.secs("node_timeout", 120.0, 0.1, 86400.0),
        job_timeout: v.secs("job_timeout", 3600.0, 1.0, 604800.0),
        node_max_retries: v.int("node_max_retries", 0, 0, 100) as u32,
        node_initial_delay: v.secs("node_initial_delay", 1.0, 0.0, 3600.0),
        node_max_delay: v.secs("node_max_delay", 30.0, 0.0, 86400.0),
        max_parallel_branches: v.int("max_parallel_branches", 4, 1, 64) as usize,
        ws_dialect: match v.choice("ws_dialect", "casare", &["casare", "reference"]) {
            "reference" => WsDialect::Reference,
            _ => WsDialect::Casare,
        },
        graceful_shutdown_seconds: v.secs("graceful_shutdown_seconds", 30.0, 0.0, 3600.0),
        cancel_grace_seconds: v.secs("cancel_grace_seconds", 10.0, 0.0, 3600.0),
        health_port: v.int("health_port", 0, 0, 65535) as u16,
        allow_private_network: v.bool("allow_private_network", false),
        allowed_paths: v
            .list("allowed_paths", "must be a list of paths")
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        run_command_enabled: v.bool("run_command_enabled", true),
        run_command_allowlist: v.list("run_command_allowlist", "must be a list of program names"),
        python_path: v.optional("python_path", PROGRAM_EXPECTED, is_program_text),
        node_path: v.optional("node_path", PROGRAM_EXPECTED, is_program_text),
        process_kill_allowlist: v.list("process_kill_allowlist", "must be a list of process names"),
        poll_interval: v.secs("poll_interval", 5.0, 0.1, 3600.0),
        poll_max_interval: v.secs("poll_max_interval", 30.0, 0.1, 86400.0),
        lease_seconds: v.secs("lease_seconds", 60.0, 5.0, 3600.0),
        health_disconnect_seconds: v.secs("health_disconnect_seconds", 60.0, 0.0, 86400.0),
        log_max_mb: v.int("log_max_mb", 10, 1, 100_000),
        log_backups: v.int("log_backups", 5, 0, 1000) as u32,
        audit_enabled: v.bool("audit_enabled", true),
        audit_max_mb: v.int("audit_max_mb", 10, 1, 100_000),
        audit_backups: v.int("audit_backups", 5, 0, 1000) as u32,
        max_value_mb: v.int("max_value_mb", 256, 1, 1_000_000),
        max_resume_attempts: v.int("max_resume_attempts", 3, 1, 1000) as u32,
        node_executions_max: v.int(
            "node_executions_max",
            crate::engine::runner::DEFAULT_MAX_NODE_RECORDS as u64,
            0,
            100_000,
        ) as usize,
        finished_job_records: v.int("finished_job_records", 10_000, 100, 10_000_000),
        max_frame_mb: v.int(
            "max_frame_mb",
            crate::link::bound::DEFAULT_MAX_FRAME_MB,
            1,
            (crate::link::protocol::MAX_FRAME_BYTES / 1_048_576) as u64,
        ),
        config_file: None,
        sources: IndexMap::new(),
    };
    v.at_least(
        "max_reconnect_delay",
        config.max_reconnect_delay,
        "reconnect_delay",
        config.reconnect_delay,
    );
    v.at_least(
        "node_max_delay",
        config.node_max_delay,
        "node_initial_delay",
        config.node_initial_delay,
    );
    v.at_least(
        "poll_max_interval",
        config.poll_max_interval,
        "poll_interval",
        config.poll_interval,
    );
    config.sources = v.sources;
    (config, v.errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const FILE: &str = "/x/robot_config.json";

    /// Environment variables for one test case.
    type Pairs = &'static [(&'static str, &'static str)];

    /// An env lookup over `pairs`, with a fixed host name and home unless `pairs` overrides them.
    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let base = [("HOSTNAME", "test-host"), ("HOME", "/home/u")];
        let map: HashMap<String, String> = base
            .iter()
            .chain(pairs)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn load(
        json: Option<&str>,
        env: &[(&str, &str)],
        cli: &[CliOverride],
    ) -> Result<RobotConfig, ConfigErrors> {
        let env = env_of(env);
        RobotConfig::from_sources(json.map(|text| (Path::new(FILE), text)), &env, cli)
    }

    fn messages(json: &str, env: &[(&str, &str)], cli: &[CliOverride]) -> Vec<String> {
        match load(Some(json), env, cli) {
            Ok(config) => panic!("expected errors, got {config:?}"),
            Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// Asserts `key`'s display value and source in `describe()`.
    fn check(config: &RobotConfig, expected: &[(&str, &str, Source)]) {
        let described = config.describe();
        for (key, value, source) in expected {
            let found = described.iter().find(|(k, _, _)| k == key);
            let found = found.map(|(_, v, s)| (v.as_str(), s));
            assert_eq!(found, Some((*value, source)), "key {key}");
        }
    }

    fn file() -> Source {
        Source::File(FILE.into())
    }

    #[test]
    fn unknown_casare_env_vars_are_named_with_the_closest_key() {
        let names = [
            "CASARE_HEARTBEAT_INTERVALL",
            "CASARE_HEARTBEAT_INTERVAL",
            "PATH",
            "ROBOT_ID",
            "CASARE_NOTHING_LIKE_IT",
            "CASARE_LOGLEVEL",
        ];
        let found: Vec<String> = unknown_env_vars(names.iter().map(|n| n.to_string()))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "environment variable CASARE_HEARTBEAT_INTERVALL names no configuration key and is ignored (did you mean CASARE_HEARTBEAT_INTERVAL?)",
                "environment variable CASARE_LOGLEVEL names no configuration key and is ignored (did you mean CASARE_LOG_LEVEL?)",
                "environment variable CASARE_NOTHING_LIKE_IT names no configuration key and is ignored (CASARE_<KEY> for a key of robot_config.json)",
            ]
        );
    }

    #[test]
    fn layers_apply_file_then_env_then_cli_and_record_sources() {
        let json = r#"{"heartbeat_interval": 10, "robot_name": "file-name",
            "log_level": "debug", "max_concurrent_jobs": 2}"#;
        let env = [
            ("CASARE_HEARTBEAT_INTERVAL", "20"),
            ("CASARE_LOG_LEVEL", "WARN"),
        ];
        let cli = [CliOverride::new(
            "heartbeat_interval",
            "40",
            "--heartbeat-interval",
        )];
        let config = load(Some(json), &env, &cli).expect("valid config");
        check(
            &config,
            &[
                (
                    "heartbeat_interval",
                    "40s",
                    Source::Cli("--heartbeat-interval".into()),
                ),
                ("log_level", "warn", Source::Env("CASARE_LOG_LEVEL".into())),
                ("robot_name", "file-name", file()),
                ("max_concurrent_jobs", "2", file()),
                ("environment", "default", Source::Default),
            ],
        );
        assert_eq!(config.heartbeat_interval, Duration::from_secs(40));
        assert_eq!(config.log_level, log::LevelFilter::Warn);
        assert_eq!(config.config_file.as_deref(), Some(Path::new(FILE)));
    }

    #[test]
    fn defaults_follow_the_reference() {
        let config = load(None, &[], &[]).expect("defaults are valid");
        let env = env_of(&[]);
        let dirs = default_dirs(Platform::current(), &env);
        assert_eq!(config.robot_id, None);
        assert_eq!(config.robot_name, "Robot-test-host");
        assert_eq!(config.max_concurrent_jobs, 3);
        assert_eq!(config.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(config.reconnect_delay, Duration::from_secs(1));
        assert_eq!(config.max_reconnect_delay, Duration::from_secs(60));
        assert_eq!(config.reconnect_backoff_factor, 2.0);
        let circuit = (
            config.circuit_failure_threshold,
            config.circuit_success_threshold,
        );
        assert_eq!(circuit, (5, 2));
        assert_eq!(config.circuit_timeout, Duration::from_secs(60));
        assert_eq!(config.circuit_half_open_max_calls, 3);
        assert_eq!(
            (config.data_dir.clone(), config.log_dir.clone()),
            (dirs.data_dir, dirs.log_dir)
        );
        assert_eq!(config.log_level, log::LevelFilter::Info);
        assert_eq!(config.ws_dialect, WsDialect::Casare);
        assert_eq!(config.job_timeout, Duration::from_secs(3600));
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert!(config.checkpoint_enabled && config.run_command_enabled);
        assert!(!config.allow_private_network && config.allowed_paths.is_empty());
        assert!(config
            .describe()
            .iter()
            .all(|(_, _, source)| *source == Source::Default));
        assert_eq!(config.config_file, None);
        assert_eq!(
            RobotConfig::default_for_tests().robot_name,
            "Robot-test-host"
        );
    }

    #[test]
    fn each_invalid_value_is_reported_with_key_value_origin_and_rule() {
        let cases: &[(&str, Pairs, &str)] = &[
            (r#"{"hearbeat_interval": 5}"#, &[],
             r#"unknown key "hearbeat_interval" in /x/robot_config.json (did you mean "heartbeat_interval"?)"#),
            (r#"{"zzzz": 1}"#, &[], r#"unknown key "zzzz" in /x/robot_config.json"#),
            (r#"{"circuit_breaker": {"failure_treshold": 3}}"#, &[],
             r#"unknown key "circuit_breaker.failure_treshold" in /x/robot_config.json (did you mean "circuit_breaker.failure_threshold"?)"#),
            (r#"{"max_concurrent_jobs": 0}"#, &[],
             "max_concurrent_jobs = 0 (from /x/robot_config.json): must be an integer from 1 to 64"),
            (r#"{"max_concurrent_jobs": "three"}"#, &[],
             r#"max_concurrent_jobs = "three" (from /x/robot_config.json): must be an integer from 1 to 64"#),
            (r#"{"checkpoint_enabled": "yes"}"#, &[],
             r#"checkpoint_enabled = "yes" (from /x/robot_config.json): must be true or false"#),
            ("{}", &[("CASARE_LOG_LEVEL", "loud")],
             r#"log_level = "loud" (from env CASARE_LOG_LEVEL): must be one of trace, debug, info, warn, error"#),
            ("{}", &[("CASARE_HEALTH_PORT", "70000")],
             r#"health_port = "70000" (from env CASARE_HEALTH_PORT): must be an integer from 0 to 65535"#),
            (r#"{"max_value_mb": 0}"#, &[],
             "max_value_mb = 0 (from /x/robot_config.json): must be an integer from 1 to 1000000"),
            ("{}", &[("CASARE_MAX_RESUME_ATTEMPTS", "0")],
             r#"max_resume_attempts = "0" (from env CASARE_MAX_RESUME_ATTEMPTS): must be an integer from 1 to 1000"#),
            ("{}", &[("CASARE_FINISHED_JOB_RECORDS", "5")],
             r#"finished_job_records = "5" (from env CASARE_FINISHED_JOB_RECORDS): must be an integer from 100 to 10000000"#),
            ("{}", &[("CASARE_WS_DIALECT", "json")],
             r#"ws_dialect = "json" (from env CASARE_WS_DIALECT): must be one of casare, reference"#),
            (r#"{"orchestrator_url": "http://host:8000"}"#, &[],
             r#"orchestrator_url = "http://host:8000" (from /x/robot_config.json): must be a ws:// or wss:// URL"#),
            (r#"{"api_url": "ftp://host"}"#, &[],
             r#"api_url = "ftp://host" (from /x/robot_config.json): must be an http:// or https:// URL"#),
            (r#"{"robot_id": "my robot"}"#, &[],
             r#"robot_id = "my robot" (from /x/robot_config.json): must be 1 to 64 characters from A-Z, a-z, 0-9, _ and -"#),
            (r#"{"reconnect_backoff_factor": 0.5}"#, &[],
             "reconnect_backoff_factor = 0.5 (from /x/robot_config.json): must be a number from 1 to 10"),
            (r#"{"heartbeat_interval": -1}"#, &[],
             "heartbeat_interval = -1 (from /x/robot_config.json): must be a number of seconds from 1 to 3600"),
            (r#"{"reconnect_delay": 90}"#, &[],
             "max_reconnect_delay = 60 (from default): must be at least reconnect_delay (90)"),
            (r#"{"allowed_paths": "/data"}"#, &[],
             r#"allowed_paths = "/data" (from /x/robot_config.json): must be a list of paths"#),
            (r#"{"circuit_breaker": 5}"#, &[],
             "circuit_breaker = 5 (from /x/robot_config.json): must be an object with failure_threshold, success_threshold, timeout, half_open_max_calls"),
            (r#"{"api_key": 12345678901}"#, &[],
             r#"api_key = "****8901" (from /x/robot_config.json): must be a string of printable ASCII characters (no control characters)"#),
            ("{}", &[("CASARE_API_KEY", "abcd\u{7}efgh1234")],
             r#"api_key = "****1234" (from env CASARE_API_KEY): must be a string of printable ASCII characters (no control characters)"#),
            (r#"{"supabase_key": "key\nwith-newline"}"#, &[],
             r#"supabase_key = "****line" (from /x/robot_config.json): must be a string of printable ASCII characters (no control characters)"#),
            (r#"{"orchestrator_url": "ws://127.0.0.1:99999"}"#, &[],
             r#"orchestrator_url = "ws://127.0.0.1:99999" (from /x/robot_config.json): must be a ws:// or wss:// URL: port '99999' is not a number from 1 to 65535"#),
            (r#"{"orchestrator_url": "ws://[::1"}"#, &[],
             r#"orchestrator_url = "ws://[::1" (from /x/robot_config.json): must be a ws:// or wss:// URL: '[::1' has no closing ']'"#),
            (r#"{"orchestrator_url": "ws://[::1]x/ws"}"#, &[],
             r#"orchestrator_url = "ws://[::1]x/ws" (from /x/robot_config.json): must be a ws:// or wss:// URL: unexpected 'x' after ']'"#),
            (r#"{"api_url": "http://host:0/api"}"#, &[],
             r#"api_url = "http://host:0/api" (from /x/robot_config.json): must be an http:// or https:// URL: port '0' is not a number from 1 to 65535"#),
            (r#"{"supabase_url": "https://:443"}"#, &[],
             r#"supabase_url = "https://:443" (from /x/robot_config.json): must be an http:// or https:// URL: the host is missing"#),
            (r#"{"orchestrator_url": "ws://a:b:80/ws"}"#, &[],
             r#"orchestrator_url = "ws://a:b:80/ws" (from /x/robot_config.json): must be a ws:// or wss:// URL: the host 'a:b' contains ':'"#),
            (r#"{"api_url": "http://ho st"}"#, &[],
             r#"api_url = "http://ho st" (from /x/robot_config.json): must be an http:// or https:// URL: it contains a space or a control character"#),
            (r#"{"robot_name": "a\u0000b"}"#, &[],
             r#"robot_name = "a\u0000b" (from /x/robot_config.json): must be a non-empty string of at most 128 characters, without control characters"#),
            ("{}", &[("CASARE_ENVIRONMENT", "prod\nWARN forged")],
             r#"environment = "prod\nWARN forged" (from env CASARE_ENVIRONMENT): must be a non-empty string of at most 128 characters, without control characters"#),
            (r#"{"data_dir": "/a", "checkpoint_dir": "/b"}"#, &[],
             r#"data_dir is set twice in /x/robot_config.json (also as "checkpoint_dir"): keep one"#),
            (r#"{"circuit_timeout": 5, "circuit_breaker": {"timeout": 6}}"#, &[],
             r#"circuit_timeout is set twice in /x/robot_config.json (also as "circuit_breaker.timeout"): keep one"#),
        ];
        for (json, env, expected) in cases {
            assert_eq!(
                messages(json, env, &[]),
                vec![expected.to_string()],
                "input {json}"
            );
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let json = r#"{"hearbeat_interval": 5, "max_concurrent_jobs": 0, "robot_id": "a.b"}"#;
        let cli = [CliOverride::new("log_levl", "info", "--set")];
        let errors = load(Some(json), &[("CASARE_LOG_LEVEL", "loud")], &cli).unwrap_err();
        let text = errors.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with(r#"unknown key "hearbeat_interval""#));
        assert_eq!(
            lines[1],
            r#"unknown key "log_levl" in flag --set (did you mean "log_level"?)"#
        );
        assert!(lines[2].starts_with("robot_id = \"a.b\""));
        assert!(lines[3].starts_with("max_concurrent_jobs = 0"));
        assert!(lines[4].starts_with("log_level = \"loud\" (from env CASARE_LOG_LEVEL)"));
    }

    #[test]
    fn script_and_process_keys() {
        let config = load(None, &[], &[]).expect("defaults");
        assert_eq!(config.python_path, None);
        assert_eq!(config.node_path, None);
        assert!(config.process_kill_allowlist.is_empty());
        let env = [
            (
                "CASARE_PYTHON_PATH",
                "C:\\Program Files\\Python312\\python.exe",
            ),
            ("CASARE_NODE_PATH", "/opt/node/bin/node"),
            ("CASARE_PROCESS_KILL_ALLOWLIST", "notepad.exe, excel"),
        ];
        let config = load(None, &env, &[]).expect("valid env");
        assert_eq!(
            config.python_path.as_deref(),
            Some("C:\\Program Files\\Python312\\python.exe")
        );
        assert_eq!(config.node_path.as_deref(), Some("/opt/node/bin/node"));
        assert_eq!(config.process_kill_allowlist, ["notepad.exe", "excel"]);
        let options = crate::app::run_options(&config);
        assert_eq!(
            options.safety.node_path.as_deref(),
            Some("/opt/node/bin/node")
        );
        assert_eq!(
            options.safety.process_kill_allowlist,
            ["notepad.exe", "excel"]
        );
        let err = load(None, &[("CASARE_PYTHON_PATH", "py\u{7}")], &[]).unwrap_err();
        assert!(err.to_string().contains("python_path"), "{err}");
    }

    #[test]
    fn env_text_is_parsed_into_each_key_type() {
        let env = [
            ("CASARE_CHECKPOINT_ENABLED", "No"),
            ("CASARE_ALLOW_PRIVATE_NETWORK", "1"),
            ("CASARE_RUN_COMMAND_ALLOWLIST", "git, python ,,"),
            ("CASARE_ALLOWED_PATHS", "/data,/tmp/x"),
            ("CASARE_HEALTH_PORT", "8080"),
            ("CASARE_RECONNECT_DELAY", "0.5"),
            ("CASARE_MAX_CONCURRENT_JOBS", " 4 "),
            ("CASARE_WS_DIALECT", "Reference"),
            ("CASARE_API_KEY", "key-1234567890"),
            ("ROBOT_ID", "env-robot"),
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("CASARE_DATA_DIR", "/srv/robot"),
        ];
        let config = load(None, &env, &[]).expect("valid env");
        assert!(!config.checkpoint_enabled && config.allow_private_network);
        assert_eq!(config.run_command_allowlist, ["git", "python"]);
        assert_eq!(
            config.allowed_paths,
            [PathBuf::from("/data"), PathBuf::from("/tmp/x")]
        );
        assert_eq!(config.health_port, 8080);
        assert_eq!(config.reconnect_delay, Duration::from_millis(500));
        assert_eq!(config.max_concurrent_jobs, 4);
        assert_eq!(config.ws_dialect, WsDialect::Reference);
        assert_eq!(
            config.api_key.as_ref().map(Secret::expose),
            Some("key-1234567890")
        );
        assert_eq!(config.robot_id.as_deref(), Some("env-robot"));
        assert_eq!(config.source("robot_id"), &Source::Env("ROBOT_ID".into()));
        assert_eq!(
            config.supabase_url.as_deref(),
            Some("https://abc.supabase.co")
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/robot"));
    }

    #[test]
    fn prefixed_env_wins_and_empty_env_values_are_ignored() {
        let env = [
            ("ROBOT_ID", "plain"),
            ("CASARE_ROBOT_ID", "prefixed"),
            ("CASARE_LOG_LEVEL", " "),
        ];
        let config = load(Some(r#"{"log_level": "Debug"}"#), &env, &[]).expect("valid");
        check(
            &config,
            &[
                (
                    "robot_id",
                    "prefixed",
                    Source::Env("CASARE_ROBOT_ID".into()),
                ),
                ("log_level", "debug", file()),
            ],
        );
    }

    #[test]
    fn every_key_has_an_env_var_and_a_description() {
        for &key in ALL_KEYS {
            let var = format!("CASARE_{}", key.to_uppercase());
            let env = |name: &str| (name == var).then(|| "x".to_string());
            let mut raw = RawConfig::new();
            read_env_layer(&env, &mut raw);
            assert_eq!(
                raw.get(key).map(|e| &e.source),
                Some(&Source::Env(var.clone()))
            );
        }
        let described = RobotConfig::default_for_tests().describe();
        let keys: Vec<&str> = described.iter().map(|(key, _, _)| *key).collect();
        assert_eq!(keys, ALL_KEYS);
        assert!(described
            .iter()
            .all(|(_, value, _)| value != "(unknown key)"));
    }

    #[test]
    fn circuit_breaker_is_accepted_nested_or_flat() {
        let nested = r#"{"circuit_breaker": {"failure_threshold": 7, "success_threshold": 1,
            "timeout": 12.5, "half_open_max_calls": 2, "_note": "ignored"}}"#;
        let flat = r#"{"circuit_failure_threshold": 7, "circuit_success_threshold": 1,
            "circuit_timeout": 12.5, "circuit_half_open_max_calls": 2}"#;
        for json in [nested, flat] {
            let config = load(Some(json), &[], &[]).expect("valid circuit breaker");
            let thresholds = (
                config.circuit_failure_threshold,
                config.circuit_success_threshold,
            );
            assert_eq!(thresholds, (7, 1), "{json}");
            assert_eq!(config.circuit_timeout, Duration::from_millis(12_500));
            assert_eq!(config.circuit_half_open_max_calls, 2);
            assert_eq!(config.source("circuit_timeout"), &file());
        }
    }

    #[test]
    fn checkpoint_dir_is_an_alias_of_data_dir() {
        let config = load(Some(r#"{"checkpoint_dir": "/var/robot"}"#), &[], &[]).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/var/robot"));
        assert_eq!(config.source("data_dir"), &file());
        let cli = [CliOverride::new(
            "checkpoint_dir",
            "/cli",
            "--checkpoint-dir",
        )];
        let config = load(None, &[], &cli).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/cli"));
    }

    #[test]
    fn comment_and_schema_keys_are_ignored() {
        let json =
            r#"{"_comment": "hi", "$schema": "./s.json", "robot_name": "r", "robot_id": null}"#;
        let config = load(Some(json), &[], &[]).expect("comments are fine");
        assert_eq!(config.robot_name, "r");
        assert_eq!(config.robot_id, None);
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let errors = load(Some("{\n  \"robot_name\": \"r\",\n  oops\n}"), &[], &[]).unwrap_err();
        assert_eq!(
            errors.0,
            [ConfigError::Syntax {
                path: FILE.into(),
                line: 3,
                column: 3,
                message: "key must be a string".into()
            }]
        );
        assert_eq!(
            errors.to_string(),
            "invalid JSON in /x/robot_config.json at line 3, column 3: key must be a string"
        );
        let errors = load(Some("[1]"), &[], &[]).unwrap_err();
        assert_eq!(errors.0, [ConfigError::NotAnObject { path: FILE.into() }]);
    }

    #[test]
    fn secrets_are_masked_in_describe_and_debug() {
        let env = [
            ("CASARE_API_KEY", "abcdefghijkl1234"),
            ("SUPABASE_KEY", "shh123"),
        ];
        let config = load(None, &env, &[]).expect("valid");
        check(
            &config,
            &[
                ("api_key", "****1234", Source::Env("CASARE_API_KEY".into())),
                ("supabase_key", "****", Source::Env("SUPABASE_KEY".into())),
                ("orchestrator_url", "(not set)", Source::Default),
            ],
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("abcdefghijkl") && !debug.contains("shh123"),
            "{debug}"
        );
        assert!(debug.contains("Secret(****1234)"));
    }

    #[test]
    fn usable_urls_are_accepted() {
        for url in [
            "ws://127.0.0.1:8000/ws",
            "wss://orch.example.com/ws?x=1",
            "ws://[::1]:65535/ws",
            "ws://[fe80::1%25eth0]/ws",
            "WS://bot:p%40ss@host:1",
            "ws://host",
            "ws://ex-ample_1.com./path#frag",
        ] {
            assert_eq!(url_problem(url, WS_SCHEMES), None, "{url}");
        }
        assert_eq!(
            url_problem("https://api.example.com:443/v1", HTTP_SCHEMES),
            None
        );
    }

    #[test]
    fn url_passwords_are_masked_in_describe_and_errors() {
        let env = [
            (
                "CASARE_ORCHESTRATOR_URL",
                "wss://bot:hunter2pw@orch.example/ws",
            ),
            ("CASARE_API_URL", "https://bot:hunter2pw@orch.example/api"),
        ];
        let config = load(None, &env, &[]).expect("valid");
        let described = format!("{:?}", config.describe());
        assert!(!described.contains("hunter2pw"), "{described}");
        assert!(
            described.contains("wss://bot:****@orch.example/ws"),
            "{described}"
        );
        let env = [("CASARE_ORCHESTRATOR_URL", "ws://bot:hunter2pw@h:99999/ws")];
        let errors = load(None, &env, &[]).unwrap_err().to_string();
        assert!(!errors.contains("hunter2pw"), "{errors}");
        assert!(errors.contains("ws://bot:****@h:99999/ws"), "{errors}");
    }

    #[test]
    fn default_dirs_per_platform() {
        let cases: &[(Platform, Pairs, [&str; 3])] = &[
            (
                Platform::Windows,
                &[
                    ("PROGRAMDATA", r"C:\ProgramData"),
                    ("LOCALAPPDATA", r"C:\L"),
                ],
                [
                    r"C:\ProgramData\CasareRPA\Robot",
                    r"C:\ProgramData\CasareRPA\Robot",
                    r"C:\ProgramData\CasareRPA\Robot\logs",
                ],
            ),
            (
                Platform::Windows,
                &[("LOCALAPPDATA", r"C:\Users\u\AppData\Local")],
                [
                    r"C:\Users\u\AppData\Local\CasareRPA\Robot",
                    r"C:\Users\u\AppData\Local\CasareRPA\Robot",
                    r"C:\Users\u\AppData\Local\CasareRPA\Robot\logs",
                ],
            ),
            (
                Platform::Unix,
                &[
                    ("XDG_CONFIG_HOME", "/c"),
                    ("XDG_DATA_HOME", "/d"),
                    ("XDG_STATE_HOME", "/s/"),
                ],
                ["/c/casare-robot", "/d/casare-robot", "/s/casare-robot/logs"],
            ),
            (
                Platform::Unix,
                &[("XDG_DATA_HOME", "relative/ignored")],
                [
                    "/home/u/.config/casare-robot",
                    "/home/u/.local/share/casare-robot",
                    "/home/u/.local/state/casare-robot/logs",
                ],
            ),
        ];
        for (platform, env, [config, data, logs]) in cases {
            let env = env_of(env);
            let dirs = default_dirs(*platform, &env);
            let expected = DefaultDirs {
                config_dir: config.into(),
                data_dir: data.into(),
                log_dir: logs.into(),
            };
            assert_eq!(dirs, expected);
        }
    }

    #[test]
    fn missing_file_is_an_error_only_when_explicit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.json");
        let env = env_of(&[]);
        let errors = RobotConfig::load(Some(&missing), &env, &[]).unwrap_err();
        assert_eq!(
            errors.to_string(),
            format!("config file {} not found", missing.display())
        );
        let config = RobotConfig::load_at(&missing, false, &env, &[]).expect("defaults");
        assert_eq!((config.config_file, config.max_concurrent_jobs), (None, 3));

        let path = dir.path().join("robot_config.json");
        std::fs::write(&path, r#"{"environment": "lan"}"#).expect("write config");
        let config = RobotConfig::load(Some(&path), &env, &[]).expect("valid file");
        assert_eq!(config.environment, "lan");
        assert_eq!(config.source("environment"), &Source::File(path));
    }

    #[test]
    fn generated_robot_ids_are_valid_and_bounded() {
        assert_eq!(
            robot_id_with("my.host name", 0xabcd),
            "robot-my-host-name-0000abcd"
        );
        assert_eq!(robot_id_with(" ..", 1), "robot-localhost-00000001");
        let long = robot_id_with(&"h".repeat(100), u32::MAX);
        assert_eq!((long.len(), long.ends_with("-ffffffff")), (64, true));
        let random = sanitize_robot_id("PC-01.corp.example");
        assert!(random.starts_with("robot-PC-01-corp-example-") && is_valid_robot_id(&random));
        assert!(!is_valid_robot_id("") && !is_valid_robot_id(&"a".repeat(65)));
        assert_eq!(hostname(&env_of(&[("COMPUTERNAME", "WIN-PC")])), "WIN-PC");
        assert_eq!(hostname(&env_of(&[("COMPUTERNAME", " ")])), "test-host");
    }

    #[test]
    fn node_executions_max_comes_from_file_or_env_and_is_bounded() {
        let config = load(Some("{}"), &[], &[]).expect("defaults");
        assert_eq!(config.node_executions_max, 200);
        let config = load(Some(r#"{"node_executions_max": 0}"#), &[], &[]).expect("valid");
        assert_eq!(config.node_executions_max, 0);
        let config = load(Some("{}"), &[("CASARE_NODE_EXECUTIONS_MAX", "50")], &[]).expect("env");
        assert_eq!(config.node_executions_max, 50);
        assert_eq!(
            messages(r#"{"node_executions_max": 100001}"#, &[], &[]),
            ["node_executions_max = 100001 (from /x/robot_config.json): must be an integer from 0 to 100000"]
        );
    }
}

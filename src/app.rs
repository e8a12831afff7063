//! Command implementations: what `casare-robot <command>` does, returning an exit code.
//!
//! Exit codes: 0 success, 1 the workflow failed, 2 invalid input (workflow, variables, config,
//! usage), 3 cancelled (Ctrl+C), 4 timed out, 141 stdout or stderr closed by its reader (see
//! `output`).

use crate::cli::{
    CheckpointAction, CheckpointsArgs, Cli, Command, ConfigArgs, NodesArgs, RunArgs, StartArgs,
    ValidateArgs,
};
use crate::config::RobotConfig;
use crate::engine::model::{self, read_capped, MAX_WORKFLOW_BYTES};
use crate::engine::runner::{self, RunOptions, RunStatus};
use crate::engine::runner::{Both, RunOutcome};
use crate::engine::{CancelToken, Dict, LoadError, Value, Workflow};
use crate::progress::ConsoleProgress;
use crate::store::checkpoint::{self, CheckpointMeta, CheckpointStatus, Checkpointer, ResumePlan};
use crate::store::jobs::{Finish, NewJob, Recorded, Report, Route};
use crate::store::Store;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the workflow failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: invalid input (workflow, variables, config, usage).
pub const EXIT_INVALID: u8 = 2;
/// Exit code: cancelled.
pub const EXIT_CANCELLED: u8 = 3;
/// Exit code: timed out.
pub const EXIT_TIMED_OUT: u8 = 4;

/// Run a parsed command line; returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    let Some(command) = cli.command else {
        // Only Windows tray builds accept no command: the tray app with the default config.
        return cmd_start(&StartArgs {
            foreground: false,
            verbose: false,
            config: None,
            tray: true,
        });
    };
    match command {
        Command::Start(args) => cmd_start(&args),
        Command::Run(args) => cmd_run(&args),
        Command::Validate(args) => cmd_validate(&args),
        Command::ValidateConfig(args) => cmd_validate_config(&args),
        Command::Nodes(args) => cmd_nodes(&args),
        Command::Checkpoints(args) => cmd_checkpoints(&args),
        Command::Status(args) => cmd_status(&args),
    }
}

/// Why a workflow file could not be used.
#[derive(Debug)]
pub enum WorkflowFileError {
    /// Reading failed.
    Io(String),
    /// It did not load.
    Invalid(LoadError),
}

impl WorkflowFileError {
    /// The error as `run` and `validate` print it: a load problem is prefixed with the file
    /// (a read error already names it).
    pub fn describe(&self, path: &Path) -> String {
        match self {
            WorkflowFileError::Io(m) => m.clone(),
            WorkflowFileError::Invalid(e) => format!("{}: {e}", path.display()),
        }
    }
}

impl std::fmt::Display for WorkflowFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkflowFileError::Io(m) => f.write_str(m),
            WorkflowFileError::Invalid(e) => e.fmt(f),
        }
    }
}

/// Read and load a workflow file.
pub fn read_workflow(path: &Path) -> Result<Workflow, WorkflowFileError> {
    let bytes = read_capped(path, "workflow", MAX_WORKFLOW_BYTES).map_err(WorkflowFileError::Io)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        WorkflowFileError::Io(format!(
            "workflow {} is not UTF-8 text: {e}",
            path.display()
        ))
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    crate::engine::subflow::load_str_at(text, path).map_err(WorkflowFileError::Invalid)
}

/// Parse `name=value`: the value as JSON when it is valid JSON, else as a string.
pub fn parse_var(arg: &str) -> Result<(String, Value), String> {
    let Some((name, raw)) = arg.split_once('=') else {
        return Err(format!("--var {arg:?}: expected NAME=VALUE"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("--var {arg:?}: the variable name is empty"));
    }
    let value = Value::parse_json(raw).unwrap_or_else(|_| Value::str(raw));
    Ok((name.to_string(), value))
}

/// A warning per `--var` that names no variable the workflow declares or refers to (a typo
/// such as `--var nmae=Bob` would otherwise add a variable nobody reads), with the closest
/// declared name when one is near. A name counts as referred to when it appears as a whole word
/// in any node's config (templates, expressions, variable names).
pub fn unknown_var_warnings(wf: &Workflow, vars: &[String]) -> Vec<String> {
    let configs: Vec<String> = wf
        .nodes
        .iter()
        .flat_map(|n| {
            n.config
                .iter()
                .map(|(_, entry)| entry.raw.to_json().to_string())
        })
        .collect();
    let mentioned = |name: &str| {
        configs.iter().any(|text| {
            text.match_indices(name).any(|(at, _)| {
                let word = |c: char| c.is_alphanumeric() || c == '_';
                let before = text[..at].chars().next_back();
                let after = text[at + name.len()..].chars().next();
                !before.is_some_and(word) && !after.is_some_and(word)
            })
        })
    };
    let mut warnings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (name, _) in vars.iter().filter_map(|arg| parse_var(arg).ok()) {
        if wf.variables.contains_key(&name) || mentioned(&name) || !seen.insert(name.clone()) {
            continue;
        }
        let near = wf
            .variables
            .keys()
            .map(|known| (model::edit_distance(&name, known), known))
            .filter(|(d, _)| *d <= 2)
            .min();
        let hint = match near {
            Some((_, known)) => format!(" (did you mean {known:?}?)"),
            None if wf.variables.is_empty() => String::new(),
            None => {
                let declared: Vec<&str> = wf.variables.keys().map(String::as_str).collect();
                format!(" (it declares: {})", declared.join(", "))
            }
        };
        warnings.push(format!(
            "--var {name}: the workflow declares no variable {name:?} and no node refers to it; \
             it is passed anyway{hint}"
        ));
    }
    warnings
}

/// Engine options from the robot configuration.
pub fn run_options(config: &RobotConfig) -> RunOptions {
    RunOptions {
        node_timeout: config.node_timeout,
        job_timeout: config.job_timeout,
        node_max_retries: config.node_max_retries,
        node_initial_delay: config.node_initial_delay,
        node_max_delay: config.node_max_delay,
        max_parallel_branches: config.max_parallel_branches,
        seed: None,
        safety: crate::engine::safety::Safety {
            allow_private_network: config.allow_private_network,
            allowed_paths: config.allowed_paths.clone(),
            run_command_disabled: !config.run_command_enabled,
            run_command_allowlist: config.run_command_allowlist.clone(),
            work_dir: None,
            python_path: config.python_path.clone(),
            node_path: config.node_path.clone(),
            process_kill_allowlist: config.process_kill_allowlist.clone(),
        },
        cancel_grace: config.cancel_grace_seconds,
        max_value_bytes: config.max_value_mb.saturating_mul(1 << 20),
        max_node_records: config.node_executions_max,
    }
}

/// The audit trail in `<log_dir>/audit` (in memory only when disabled or when the directory is
/// unusable; the robot runs either way).
fn open_audit(
    config: &RobotConfig,
    robot_id: &str,
    secrets: &[String],
) -> crate::observe::audit::AuditLogger {
    use crate::observe::audit::{AuditConfig, AuditLogger};
    if !config.audit_enabled {
        return AuditLogger::in_memory(robot_id, secrets);
    }
    let audit_config = AuditConfig {
        dir: config.log_dir.join("audit"),
        max_file_bytes: config.audit_max_mb.saturating_mul(1024 * 1024),
        backup_count: config.audit_backups,
        robot_id: robot_id.to_string(),
        secrets: secrets.to_vec(),
    };
    match AuditLogger::new(audit_config) {
        Ok(audit) => audit,
        Err(e) => {
            log::error!("{e}; the audit trail is kept in memory only");
            AuditLogger::in_memory(robot_id, secrets)
        }
    }
}

/// The Supabase Realtime progress reporter, when `supabase_url` and `supabase_key` are set and
/// valid (a bad pair is a logged error, not a reason to stop taking jobs).
fn start_supabase(
    config: &RobotConfig,
    robot_id: &str,
) -> Option<crate::observe::supabase::ProgressReporter> {
    use crate::observe::supabase::ProgressReporter;
    let url = config.supabase_url.as_deref();
    let key = config.supabase_key.as_ref().map(|k| k.expose());
    if url.is_none() && key.is_none() {
        return None;
    }
    let started = crate::observe::supabase::validate_credentials(url, key)
        .and_then(|()| ProgressReporter::start(url.unwrap_or(""), key.unwrap_or(""), robot_id));
    match started {
        Ok(r) => {
            log::info!("progress is also broadcast to Supabase Realtime");
            Some(r)
        }
        Err(e) => {
            log::error!("supabase_url / supabase_key: {e}; progress is not broadcast to Supabase");
            eprintln!("warning: supabase_url / supabase_key: {e}");
            None
        }
    }
}

/// The log file rotation from the configuration.
fn log_rotation(config: &RobotConfig) -> crate::logging::Rotation {
    crate::logging::Rotation {
        max_bytes: config.log_max_mb.saturating_mul(1024 * 1024),
        backups: config.log_backups,
    }
}

/// The configuration, with a warning on stderr per unknown `CASARE_*` variable.
fn load_config(path: Option<&Path>) -> Result<RobotConfig, u8> {
    let config = read_config(path)?;
    for unknown in unknown_env_vars() {
        eprintln!("warning: {unknown}");
    }
    Ok(config)
}

/// The configuration (a clear error on stderr when invalid).
fn read_config(path: Option<&Path>) -> Result<RobotConfig, u8> {
    let config = RobotConfig::load_from_process_env(path, &[]).map_err(|errors| {
        eprintln!("error: invalid robot configuration:\n{errors}");
        EXIT_INVALID
    })?;
    // From here on every log line, job report and status file is scrubbed of the keys.
    crate::redact::register_secrets(
        [&config.api_key, &config.supabase_key]
            .into_iter()
            .flatten()
            .map(|k| k.expose()),
    );
    Ok(config)
}

/// The process's `CASARE_*` variables that name no configuration key.
fn unknown_env_vars() -> Vec<crate::config::UnknownEnvVar> {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    crate::config::unknown_env_vars(names)
}

fn load_inputs(args: &RunArgs) -> Result<Dict, String> {
    let mut inputs = Dict::new();
    if let Some(file) = &args.vars_file {
        let d = read_json_object(file, "--vars-file")?;
        inputs.extend(d.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for arg in &args.vars {
        let (name, value) = parse_var(arg)?;
        inputs.insert(name, value);
    }
    if let Some(file) = &args.trigger_payload {
        let payload = read_json_object(file, "--trigger-payload")?;
        inputs.insert(
            crate::nodes::trigger::PAYLOAD_VAR.to_string(),
            Value::Dict(payload),
        );
    }
    Ok(inputs)
}

/// The JSON object in `file`, given by command-line option `option` (errors name both).
fn read_json_object(file: &Path, option: &str) -> Result<Arc<Dict>, String> {
    let bytes = read_capped(file, option, MAX_WORKFLOW_BYTES)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{option} {} is not UTF-8 text: {e}", file.display()))?;
    match Value::parse_json(&text) {
        Ok(Value::Dict(d)) => Ok(d),
        Ok(other) => Err(format!(
            "{option} {} must hold a JSON object, not {}",
            file.display(),
            other.type_name()
        )),
        Err(e) => Err(format!(
            "{option} {}: invalid JSON at line {}, column {}: {}",
            file.display(),
            e.line(),
            e.column(),
            model::json_error_reason(&e)
        )),
    }
}

fn cmd_run(args: &RunArgs) -> u8 {
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stderr_level = if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    if let Err(e) = crate::logging::init(
        config.log_level,
        Some(&config.log_dir),
        Some(stderr_level),
        log_rotation(&config),
    ) {
        eprintln!("warning: {e}");
    }
    let wf = match read_workflow(&args.workflow) {
        Ok(wf) => wf,
        Err(e) => {
            let e = e.describe(&args.workflow);
            log::info!("run refused: {e}");
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let inputs = match load_inputs(args) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    for warning in unknown_var_warnings(&wf, &args.vars) {
        log::warn!("{warning}");
        eprintln!("warning: {warning}");
    }
    let mut opts = run_options(&config);
    opts.seed = args.seed;
    if let Some(secs) = args.timeout {
        if !secs.is_finite() || secs <= 0.0 {
            eprintln!("error: --timeout {secs}: must be a positive number of seconds");
            return EXIT_INVALID;
        }
        opts.job_timeout = Duration::from_secs_f64(secs.min(1e9));
    }
    let cancel = CancelToken::new();
    install_ctrlc(&cancel);
    if !args.quiet {
        eprintln!(
            "run {} ({} nodes) from {}",
            wf.name,
            wf.total_nodes,
            args.workflow.display()
        );
    }
    log::info!(
        "run started: workflow \"{}\" ({} nodes, hash {}) from {}",
        wf.name,
        wf.total_nodes,
        wf.hash,
        args.workflow.display()
    );
    let mut progress = ConsoleProgress::new(args.quiet);
    let outcome = match &args.job_id {
        Some(_) => {
            match run_with_checkpoints(args, &config, &wf, inputs, &opts, &cancel, &mut progress) {
                Ok(outcome) => outcome,
                Err(code) => return code,
            }
        }
        None => runner::run(&wf, inputs, &opts, &cancel, &mut progress),
    };
    log::info!(
        "run finished: {:?} in {:.3} ms, {} node executions{}",
        outcome.status,
        outcome.duration.as_secs_f64() * 1000.0,
        outcome.node_executions,
        outcome
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.to_json()).unwrap_or_default()
        );
    } else {
        let mut out = String::new();
        out.push_str(&format!(
            "status: {}\nduration: {:.3} ms\nexecuted nodes: {} of {} ({} executions)\n",
            match outcome.status {
                RunStatus::Completed => "completed",
                RunStatus::Failed => "failed",
                RunStatus::Cancelled => "cancelled",
                RunStatus::TimedOut => "timed out",
            },
            outcome.duration.as_secs_f64() * 1000.0,
            outcome.executed_nodes,
            outcome.total_nodes,
            outcome.node_executions
        ));
        let outputs = outcome.outputs();
        if !outputs.is_empty() {
            out.push_str("outputs:\n");
            for (k, v) in &outputs {
                out.push_str(&format!("  {k} = {}\n", v.py_repr()));
            }
        }
        print!("{out}");
    }
    match outcome.status {
        RunStatus::Completed => EXIT_OK,
        status => {
            if let Some(e) = &outcome.error {
                eprintln!("error: {e}");
            }
            match status {
                RunStatus::Cancelled => EXIT_CANCELLED,
                RunStatus::TimedOut => EXIT_TIMED_OUT,
                _ => EXIT_FAILED,
            }
        }
    }
}

/// The robot id: from the configuration, else the one persisted in the store, else a new one
/// (`robot-{hostname}-{8 hex}`) persisted for the next start.
fn robot_identity(config: &RobotConfig, store: Option<&crate::store::SharedStore>) -> String {
    if let Some(id) = &config.robot_id {
        return id.clone();
    }
    if let Some(store) = store {
        let mut guard = store.lock();
        if let Ok(Some(id)) = guard.meta_get("robot_id") {
            if crate::config::is_valid_robot_id(&id) {
                return id;
            }
        }
        let id =
            crate::config::sanitize_robot_id(&crate::config::hostname(&crate::config::process_env));
        if let Err(e) = guard.meta_set("robot_id", &id) {
            log::warn!("cannot persist the generated robot id {id}: {e}");
        }
        return id;
    }
    crate::config::sanitize_robot_id(&crate::config::hostname(&crate::config::process_env))
}

fn cmd_start(args: &StartArgs) -> u8 {
    use crate::agent::{self, connection::Connection, Agent, AgentSettings, Event, Links};
    use crate::link::protocol::{self, Dialect};
    use crate::link::rest::{RestClient, RestSettings};
    use crate::link::rest_io::{RestHandle, RestIoSettings};
    use crate::link::ws::{WsHandle, WsSettings};
    use crate::observe::health::{HealthServer, HealthSettings};
    use crate::resilience::backoff::Backoff;
    use crate::resilience::breaker::BreakerConfig;
    use crate::worker::WorkerPool;

    // Tray mode: Windows only; failures before the tray runs are also shown in a box.
    let mut tray_start = match crate::tray::TrayStart::begin(args.tray) {
        Ok(tray_start) => tray_start,
        Err(code) => return code,
    };
    // Unknown CASARE_* variables are logged (file and stderr) once logging is set up.
    let config = match read_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let level = if args.verbose {
        config.log_level.max(log::LevelFilter::Debug)
    } else {
        config.log_level
    };
    let stderr_level = if args.foreground {
        level
    } else {
        log::LevelFilter::Warn
    };
    let log_file = match crate::logging::init(
        level,
        Some(&config.log_dir),
        Some(stderr_level),
        log_rotation(&config),
    ) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("warning: {e}");
            None
        }
    };
    for unknown in unknown_env_vars() {
        log::warn!("{unknown}");
    }
    // Tray mode: one tray robot per data_dir and session.
    if let Err(code) = tray_start.configured(&config) {
        return code;
    }
    if config.orchestrator_url.is_none() && config.api_url.is_none() {
        eprintln!(
            "error: no orchestrator is configured: set orchestrator_url (ws:// or wss://, WebSocket push; \
             CASARE_ORCHESTRATOR_URL or ORCHESTRATOR_URL) and/or api_url (http:// or https://, REST polling; \
             CASARE_API_URL) in robot_config.json or the environment"
        );
        return EXIT_INVALID;
    }
    let store = match Store::open(&config.data_dir) {
        Ok(store) => store,
        Err(e @ crate::store::StoreError::Busy(_)) => {
            eprintln!(
                "error: another robot is already running with data_dir {}: {e}",
                config.data_dir.display()
            );
            return EXIT_FAILED;
        }
        Err(e) => {
            // Not a crash loop: the robot runs, without durability, and says so loudly.
            log::error!(
                "the store in {} is unusable ({e}): the robot runs WITHOUT durability (jobs, results and \
                 checkpoints are kept in memory only and lost if the robot stops); fix data_dir and restart",
                config.data_dir.display()
            );
            eprintln!("warning: the store is unusable ({e}); running without durability");
            match Store::open_in_memory() {
                Ok(store) => store,
                Err(e) => {
                    eprintln!("error: cannot create even an in-memory store: {e}");
                    return EXIT_FAILED;
                }
            }
        }
    };
    let status_dir = store.is_durable().then(|| config.data_dir.clone());
    let store: crate::store::SharedStore = Arc::new(parking_lot::Mutex::new(store));
    let epoch = match store.lock().begin_epoch() {
        Ok(epoch) => epoch,
        Err(e) => {
            log::error!("cannot write to the store ({e}); job locks use a process-local epoch");
            u64::from(std::process::id())
        }
    };
    let robot_id = robot_identity(&config, Some(&store));
    let api_key = config.api_key.as_ref().map(|k| k.expose().to_string());
    let ws_url = match &config.orchestrator_url {
        Some(url) => match protocol::ws_url(url, &robot_id, api_key.as_deref()) {
            Ok(u) => Some(u),
            Err(e) => {
                eprintln!("error: orchestrator_url: {e}");
                return EXIT_INVALID;
            }
        },
        None => None,
    };
    let dialect = match config.ws_dialect {
        crate::config::WsDialect::Casare => Dialect::Casare,
        crate::config::WsDialect::Reference => Dialect::Reference,
    };
    let run_options = run_options(&config);
    if !config.checkpoint_enabled {
        log::info!("checkpoint_enabled is false: jobs run without checkpoints");
    }
    let settings = AgentSettings {
        robot_id: robot_id.clone(),
        robot_name: config.robot_name.clone(),
        environment: config.environment.clone(),
        ws_url: ws_url.clone(),
        api_key: api_key.clone(),
        dialect,
        max_concurrent_jobs: config.max_concurrent_jobs as usize,
        heartbeat_interval: config.heartbeat_interval,
        max_frame_bytes: (config.max_frame_mb as usize).saturating_mul(1_048_576),
        graceful_shutdown: config.graceful_shutdown_seconds,
        cancel_grace: config.cancel_grace_seconds,
        run_options,
        checkpoints: config.checkpoint_enabled,
        max_resume_attempts: config.max_resume_attempts,
        status_dir,
        log_file,
        config_file: config.config_file.clone(),
        finished_job_records: config.finished_job_records,
    };
    let (tx, rx) = agent::channel();
    let signal_tx = tx.clone();
    let seen = std::sync::atomic::AtomicBool::new(false);
    if let Err(e) = crate::interrupt::set_handler(move |interrupt| {
        // The notices are written without `eprintln!`: stderr may be gone (the terminal closed,
        // which is what SIGHUP says), and a failed print must not replace the drain by an exit.
        use std::io::Write as _;
        if seen.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let _ = writeln!(
                std::io::stderr(),
                "{} again: exiting now (the store is consistent)",
                interrupt.name()
            );
            std::process::exit(130);
        }
        let by = interrupt.name();
        let _ = signal_tx.send(Event::Shutdown {
            graceful: true,
            source: interrupt.name(),
        });
        let _ = writeln!(
            std::io::stderr(),
            "stopping ({by}): running jobs get graceful_shutdown_seconds to finish ({by} again to exit now)"
        );
    }) {
        log::warn!("cannot install the Ctrl+C handler: {e}");
    }
    // Windows: console close, logoff and shutdown stop the agent in order (see winhost).
    #[cfg(windows)]
    let _shutdown_hooks = crate::winhost::ShutdownHooks::install(tx.clone());
    let tray_tx = tx.clone();
    let ws = match ws_url {
        None => None,
        Some(_) => {
            let ws_settings = WsSettings {
                silence_limit: (config.heartbeat_interval * 2).max(Duration::from_secs(2)),
                ping_every: Duration::from_secs(30).min(config.heartbeat_interval),
                ..WsSettings::default()
            };
            let ws = match WsHandle::start(ws_settings, tx.clone(), Event::Ws) {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("error: cannot start the ws-io thread: {e}");
                    return EXIT_FAILED;
                }
            };
            let backoff = Backoff::new(
                config.reconnect_delay,
                config.reconnect_backoff_factor,
                config.max_reconnect_delay,
            );
            let breaker = BreakerConfig {
                failure_threshold: config.circuit_failure_threshold,
                success_threshold: config.circuit_success_threshold,
                timeout: config.circuit_timeout,
                half_open_max_calls: config.circuit_half_open_max_calls,
            };
            Some((
                ws,
                Connection::new(backoff, breaker, std::time::Instant::now()),
            ))
        }
    };
    let rest = match &config.api_url {
        None => None,
        Some(api_url) => {
            let mut rest_settings = RestSettings::new(api_url.clone(), robot_id.clone());
            rest_settings.api_key = api_key.clone();
            rest_settings.robot_name = config.robot_name.clone();
            rest_settings.environment = config.environment.clone();
            let client = match RestClient::new(rest_settings) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: api_url: {e}");
                    return EXIT_INVALID;
                }
            };
            let io = RestIoSettings {
                poll_interval: config.poll_interval,
                poll_max_interval: config.poll_max_interval,
                lease: config.lease_seconds,
                capabilities: agent::capabilities(config.max_concurrent_jobs as usize),
                max_body_bytes: (config.max_frame_mb as usize).saturating_mul(1_048_576),
            };
            match RestHandle::start(client, io, store.clone(), tx.clone(), Event::Rest) {
                Ok(h) => Some(h),
                Err(e) => {
                    eprintln!("error: cannot start the rest-io thread: {e}");
                    return EXIT_FAILED;
                }
            }
        }
    };
    let pool = match WorkerPool::start(
        config.max_concurrent_jobs as usize,
        Some(store.clone()),
        tx,
        Event::Job,
    ) {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: cannot start the workers: {e}");
            return EXIT_FAILED;
        }
    };
    let secrets: Vec<String> = [&config.api_key, &config.supabase_key]
        .into_iter()
        .flatten()
        .map(|k| k.expose().to_string())
        .collect();
    let audit = open_audit(&config, &robot_id, &secrets);
    let reporter = start_supabase(&config, &robot_id);
    let published = agent::Published {
        status: Default::default(),
        metrics_text: Default::default(),
        audit,
        broadcast: reporter.as_ref().map(|r| r.sink()),
    };
    let health = match config.health_port {
        0 => None,
        port => {
            let settings = HealthSettings {
                disconnect_threshold: config.health_disconnect_seconds,
                node_timeout: config.node_timeout,
                stale_after: Duration::from_secs(10),
            };
            match HealthServer::start(
                port,
                published.status.clone(),
                published.metrics_text.clone(),
                settings,
            ) {
                Ok(server) => {
                    log::info!(
                        "health endpoint on http://{}/health (and /metrics)",
                        server.addr()
                    );
                    Some(server)
                }
                Err(e) => {
                    // Monitoring is not worth not running jobs: say so and go on.
                    log::error!("{e}; the robot runs without its health endpoint");
                    eprintln!("warning: {e}");
                    None
                }
            }
        }
    };
    let status = published.status.clone();
    let agent = Agent::new(
        settings,
        rx,
        Links { ws, rest },
        pool,
        store,
        epoch,
        published,
    );
    // Tray mode: the agent on its own thread and the tray on this one; else the agent here.
    let code = crate::tray::run_agent_with_tray(tray_start, agent, status, tray_tx);
    if let Some(server) = health {
        server.stop();
    }
    if let Some(reporter) = reporter {
        reporter.stop(std::time::Instant::now() + Duration::from_secs(3));
    }
    code
}

/// `status`: what the robot using this configuration's data_dir is doing, from its status file.
/// Exit code 0 when it runs and responds, 1 otherwise, 2 for a configuration error.
fn cmd_status(args: &crate::cli::StatusArgs) -> u8 {
    use crate::observe::status::{process_alive, read_status_file, render, Liveness};
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let snapshot = match read_status_file(&config.data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let liveness = Liveness::of(&snapshot, process_alive(snapshot.pid), chrono::Utc::now());
    if args.json {
        let mut value = serde_json::to_value(&snapshot).unwrap_or_default();
        value["running"] = serde_json::json!(liveness == Liveness::Running);
        value["liveness"] = serde_json::json!(match liveness {
            Liveness::Running => "running",
            Liveness::Stopped => "stopped",
            Liveness::Gone => "gone",
            Liveness::NotResponding(_) => "not_responding",
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{}", render(&snapshot, &liveness));
    }
    if liveness == Liveness::Running {
        0
    } else {
        EXIT_FAILED
    }
}

/// Validate a job id given on the command line.
fn check_job_id(job_id: &str) -> Result<(), String> {
    if job_id.trim().is_empty() || job_id.len() > 128 || job_id.chars().any(char::is_control) {
        return Err(format!(
            "--job-id {job_id:?}: must be 1 to 128 printable characters"
        ));
    }
    Ok(())
}

/// Run with a durable checkpoint after every node, resuming a matching earlier checkpoint.
/// `Err` carries an exit code when the run must not start.
fn run_with_checkpoints(
    args: &RunArgs,
    config: &RobotConfig,
    wf: &Workflow,
    inputs: Dict,
    opts: &RunOptions,
    cancel: &CancelToken,
    progress: &mut ConsoleProgress,
) -> Result<RunOutcome, u8> {
    let job_id = args.job_id.as_deref().unwrap_or_default();
    let run_key = RunKey::new(wf, &inputs);
    if let Err(e) = check_job_id(job_id) {
        eprintln!("error: {e}");
        return Err(EXIT_INVALID);
    }
    if !config.checkpoint_enabled {
        eprintln!("note: checkpoint_enabled is false: job {job_id} runs without checkpoints");
        return Ok(runner::run(wf, inputs, opts, cancel, progress));
    }
    let mut store = match Store::open(&config.data_dir) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("warning: checkpoints unavailable ({e}); job {job_id} runs without them");
            return Ok(runner::run(wf, inputs, opts, cancel, progress));
        }
    };
    let max_bytes = config.checkpoint_max_mb.saturating_mul(1 << 20);
    match store.purge_checkpoints(config.checkpoint_retention_hours, max_bytes) {
        Ok(0) => {}
        Ok(n) => log::info!("purged {n} expired checkpoint(s)"),
        Err(e) => log::warn!("cannot purge old checkpoints: {e}"),
    }
    // The job is recorded like a daemon job (route Local): a completed one is answered from its
    // record, a failed one runs again (resuming), an interrupted one resumes.
    let no_vars = serde_json::Map::new();
    let recorded = store.record_job(&NewJob {
        job_id,
        route: Route::Local,
        workflow: "",
        variables: &no_vars,
        timeout: None,
        attempt: 0,
        lease_expires_at: None,
    });
    match recorded {
        Ok(Recorded::Known(rec)) if rec.state.is_settled() => {
            let Some(Report::Complete { result, .. }) = rec.report else {
                eprintln!(
                    "error: job {job_id} was cancelled; it is not run again. Use another --job-id, or \
                     `casare-robot checkpoints clear {job_id}`, to run it again."
                );
                return Err(EXIT_CANCELLED);
            };
            let recorded_with = RunKey::of_result(&result);
            let at = rec.finished_at.unwrap_or(0.0);
            let when = chrono::DateTime::from_timestamp(at as i64, 0)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default();
            let changed = recorded_with
                .map(|recorded| recorded.differences(&run_key))
                .unwrap_or_default();
            if changed.is_empty() {
                eprintln!(
                    "job {job_id} already completed at {when}; it is not run again (its recorded result follows). \
                     Use another --job-id, or `casare-robot checkpoints clear {job_id}`, to run it again."
                );
            } else {
                let what = changed.join(" and ");
                log::warn!(
                    "job {job_id} completed before with other {what}; its recorded result is shown"
                );
                eprintln!(
                    "warning: job {job_id} already completed at {when} with other {what} than this run's; \
                     it is not run again, and the result that follows is the recorded one, not a result \
                     for these {what}. To run it afresh with them, use another --job-id, or \
                     `casare-robot checkpoints clear {job_id}` first."
                );
            }
            return Err(print_recorded_result(&result, args.json));
        }
        Ok(Recorded::Known(rec)) => {
            if let Some(report) =
                crate::store::jobs::poison_report(&rec, config.max_resume_attempts)
            {
                if let Report::Failed {
                    error, error_type, ..
                } = &report
                {
                    log::warn!("job {job_id} fails as a poison job: {error}");
                    eprintln!("error: job {job_id} failed ({error_type}): {error}");
                }
                if let Err(e) = store.settle_unstarted(job_id, Some(&report)) {
                    eprintln!("warning: job {job_id}: cannot record its end: {e}");
                }
                return Err(EXIT_FAILED);
            }
        }
        Ok(_) => {}
        Err(e) => {
            eprintln!(
                "warning: job {job_id} cannot be recorded ({e}); it runs without checkpoints"
            );
            return Ok(runner::run(wf, inputs, opts, cancel, progress));
        }
    }
    let epoch = store.begin_epoch().unwrap_or(u64::from(std::process::id()));
    let token = match store.start_job(job_id, epoch) {
        Ok(Some(token)) => token,
        Ok(None) => {
            eprintln!(
                "error: job {job_id} is running in another robot process or was cancelled; it is not started \
                 (`casare-robot checkpoints clear {job_id}` forgets it so it can run again)"
            );
            return Err(EXIT_FAILED);
        }
        Err(e) => {
            eprintln!("warning: job {job_id} cannot be locked ({e}); it runs without checkpoints");
            return Ok(runner::run(wf, inputs, opts, cancel, progress));
        }
    };
    let meta = CheckpointMeta::new(wf, &inputs);
    let plan = checkpoint::plan_resume(&mut store, job_id, wf, &meta);
    let outcome = match plan {
        ResumePlan::Refuse(err) => {
            log::warn!("job {job_id} not resumed: {err}");
            eprintln!("error: {err}");
            return Err(EXIT_FAILED);
        }
        ResumePlan::Fresh { reason } => {
            if let Some(reason) = reason {
                log::warn!("job {job_id} starts from the beginning: {reason}");
                eprintln!("note: job {job_id} starts from the beginning: {reason}");
            }
            let mut writer =
                Checkpointer::new(&mut store, job_id, meta, Duration::ZERO).for_workflow(wf, 0);
            let outcome = runner::run(wf, inputs, opts, cancel, &mut Both(progress, &mut writer));
            log::info!(
                "job {job_id}: {} checkpoints, {} bytes written",
                writer.stats.saves,
                writer.stats.bytes
            );
            outcome
        }
        ResumePlan::Resume(cp) => {
            let prior = Duration::from_millis(cp.state.prior_elapsed_ms);
            log::info!(
                "job {job_id} resumes after node {} (checkpoint #{})",
                cp.node_id,
                cp.seq
            );
            eprintln!(
                "resuming job {job_id} from its checkpoint: {} node executions done, last completed node {} ({:?})",
                cp.state.executions, cp.node_id, cp.status
            );
            let mut writer =
                Checkpointer::new(&mut store, job_id, meta, prior).for_workflow(wf, cp.seq);
            let outcome =
                runner::resume(wf, cp.state, opts, cancel, &mut Both(progress, &mut writer));
            log::info!(
                "job {job_id}: {} checkpoints, {} bytes written",
                writer.stats.saves,
                writer.stats.bytes
            );
            outcome
        }
    };
    // The whole result (with node_outputs) is kept: a rerun prints it as this run did. Ctrl+C
    // (cancelled without a cancellation on record) holds the job for the next run.
    let report = match outcome.status {
        RunStatus::Completed => Report::Complete {
            result: run_key.stamp(outcome.to_json()),
            duration_ms: outcome.duration.as_millis() as u64,
        },
        _ => Report::from_outcome(&outcome),
    };
    match store.finish_job(job_id, token, &report) {
        // Interrupted or timed out: the checkpoint is kept as "cancelled" (purged after
        // checkpoint_retention_hours); running the job again resumes it.
        Ok(finish) if finish == Finish::Held || outcome.status == RunStatus::TimedOut => {
            if let Err(e) = store.finish_checkpoint(job_id, CheckpointStatus::Cancelled) {
                log::warn!("job {job_id}: cannot update its checkpoint: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => log::warn!("job {job_id}: cannot record its end: {e}"),
    }
    if outcome.status != RunStatus::Completed {
        eprintln!("note: job {job_id} keeps its checkpoint; run it again with --job-id {job_id} to resume");
    }
    Ok(outcome)
}

/// What a local run with `--job-id` ran: the workflow and the inputs, as hashes (inputs may hold
/// secrets). Kept in the recorded result under [`RunKey::FIELD`] so a rerun of the id can say
/// that it was given other inputs or another workflow.
#[derive(Debug, PartialEq)]
struct RunKey {
    workflow_hash: String,
    inputs_hash: String,
}

impl RunKey {
    /// The field of a recorded local result that holds the key (never printed).
    const FIELD: &'static str = "_run_key";

    fn new(wf: &Workflow, inputs: &Dict) -> RunKey {
        RunKey {
            workflow_hash: wf.hash.clone(),
            inputs_hash: checkpoint::inputs_hash(inputs),
        }
    }

    /// `result` with the key added.
    fn stamp(&self, mut result: serde_json::Value) -> serde_json::Value {
        result[Self::FIELD] = serde_json::json!({
            "workflow_hash": self.workflow_hash, "inputs_hash": self.inputs_hash,
        });
        result
    }

    /// The key a recorded result carries (none for results recorded before keys were kept).
    fn of_result(result: &serde_json::Value) -> Option<RunKey> {
        let key = result.get(Self::FIELD)?;
        Some(RunKey {
            workflow_hash: key["workflow_hash"].as_str()?.to_string(),
            inputs_hash: key["inputs_hash"].as_str()?.to_string(),
        })
    }

    /// What differs from `other`: "inputs", "workflow".
    fn differences(&self, other: &RunKey) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.inputs_hash != other.inputs_hash {
            changed.push("inputs");
        }
        if self.workflow_hash != other.workflow_hash {
            changed.push("workflow");
        }
        changed
    }
}

/// Print a stored result as `run` would have printed it; returns the exit code it had.
fn print_recorded_result(result: &serde_json::Value, json_output: bool) -> u8 {
    let mut result = result.clone();
    if let Some(obj) = result.as_object_mut() {
        obj.remove(RunKey::FIELD);
    }
    if json_output {
        println!(
            "{}",
            serde_json::to_string_pretty(&result).unwrap_or_default()
        );
    } else {
        println!(
            "status: {} (recorded)",
            result["status"].as_str().unwrap_or("completed")
        );
        if let Some(secs) = result["duration_s"].as_f64() {
            println!("duration: {:.3} ms", secs * 1000.0);
        }
        if let Some(outputs) = result["outputs"].as_object() {
            if !outputs.is_empty() {
                println!("outputs:");
                for (k, v) in outputs {
                    println!("  {k} = {}", Value::from_json(v).py_repr());
                }
            }
        }
    }
    EXIT_OK
}

/// Print the answer to `checkpoints list` (rows of `inspect::list_row`) or `show` (a description,
/// or null) as the command does; returns the exit code.
fn print_checkpoints(action: &CheckpointAction, value: &serde_json::Value, data_dir: &Path) -> u8 {
    match action {
        CheckpointAction::List { json: true } => println!("{value}"),
        CheckpointAction::List { json: false } => {
            let rows = value.as_array().map(Vec::as_slice).unwrap_or_default();
            if rows.is_empty() {
                println!(
                    "no checkpoints in {}",
                    data_dir.join(crate::store::DB_FILE).display()
                );
            } else {
                println!(
                    "{:<24} {:<10} {:>7} {:>9}  {:<19}  last completed node",
                    "job", "status", "saves", "bytes", "saved"
                );
                for c in rows {
                    let saved = c["saved_at"]
                        .as_f64()
                        .and_then(|at| chrono::DateTime::from_timestamp(at as i64, 0))
                        .map(|t| {
                            t.with_timezone(&chrono::Local)
                                .format("%Y-%m-%d %H:%M:%S")
                                .to_string()
                        })
                        .unwrap_or_default();
                    println!(
                        "{:<24} {:<10} {:>7} {:>9}  {:<19}  {}",
                        c["job_id"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["seq"],
                        c["bytes"],
                        saved,
                        c["last_completed_node"].as_str().unwrap_or("")
                    );
                }
            }
        }
        CheckpointAction::Show { job_id } => {
            if value.is_null() {
                eprintln!("error: no checkpoint and no recorded result for job {job_id}");
                return EXIT_INVALID;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        }
        CheckpointAction::Clear { .. } => {}
    }
    EXIT_OK
}

fn cmd_checkpoints(args: &CheckpointsArgs) -> u8 {
    use crate::observe::inspect::{self, Query};
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let query = match &args.action {
        CheckpointAction::List { .. } => Some(Query::List),
        CheckpointAction::Show { job_id } => Some(Query::Show(job_id.clone())),
        CheckpointAction::Clear { .. } => None,
    };
    let mut store = match Store::open(&config.data_dir) {
        Ok(s) => s,
        // A running robot owns the store: reading commands ask it, over files in data_dir.
        Err(crate::store::StoreError::Busy(_)) if query.is_some() => {
            let query = query.unwrap_or(Query::List);
            let answer = inspect::ask(&config.data_dir, &query, Duration::from_secs(5));
            return match answer {
                Ok(value) => print_checkpoints(&args.action, &value, &config.data_dir),
                Err(e) => {
                    eprintln!("error: {e}");
                    EXIT_FAILED
                }
            };
        }
        Err(e @ crate::store::StoreError::Busy(_)) => {
            eprintln!(
                "error: {e}; a running robot owns the store in {}: stop it to clear checkpoints",
                config.data_dir.display()
            );
            return EXIT_FAILED;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    match &args.action {
        CheckpointAction::List { .. } | CheckpointAction::Show { .. } => {
            match inspect::answer(&store, &query.unwrap_or(Query::List)) {
                serde_json::Value::Object(mut reply) => match reply.remove("ok") {
                    Some(value) => print_checkpoints(&args.action, &value, &config.data_dir),
                    None => {
                        eprintln!("error: {}", reply["error"].as_str().unwrap_or("?"));
                        EXIT_FAILED
                    }
                },
                _ => EXIT_FAILED,
            }
        }
        CheckpointAction::Clear { job_id } => match store
            .clear_checkpoint(job_id)
            .and_then(|had| Ok(had | store.forget_job(job_id)?))
        {
            Ok(true) => {
                println!("cleared the checkpoint of job {job_id}");
                EXIT_OK
            }
            Ok(false) => {
                eprintln!("error: no checkpoint for job {job_id}");
                EXIT_INVALID
            }
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_FAILED
            }
        },
    }
}

/// The first Ctrl+C (or SIGTERM, SIGHUP: named as what it was) cancels the run at the next node
/// boundary (waits are interrupted); a second one exits at once.
fn install_ctrlc(cancel: &CancelToken) {
    let token = cancel.clone();
    let result = crate::interrupt::set_handler(move |interrupt| {
        let by = interrupt.name();
        if token.is_cancelled() {
            eprintln!("interrupted again ({by}): exiting now");
            std::process::exit(130);
        }
        eprintln!("interrupted ({by}): stopping at the next node ({by} again to exit now)");
        token.cancel(format!("interrupted by {by}"));
    });
    if let Err(e) = result {
        log::debug!("cannot install the Ctrl+C handler: {e}");
    }
}

fn cmd_validate(args: &ValidateArgs) -> u8 {
    match read_workflow(&args.workflow) {
        Ok(wf) => {
            let n_edges: usize = wf
                .nodes
                .iter()
                .map(|n| n.routes.iter().map(|(_, t)| t.len()).sum::<usize>() + n.data_in.len())
                .sum();
            if args.json {
                let report = serde_json::json!({
                    "valid": true, "name": wf.name, "nodes": wf.total_nodes, "edges": n_edges, "problems": [],
                });
                println!("{report}");
            } else {
                println!(
                    "ok: {} is valid ({} nodes, {} edges)",
                    args.workflow.display(),
                    wf.total_nodes,
                    n_edges
                );
            }
            EXIT_OK
        }
        Err(e) => {
            if args.json {
                let problems: Vec<serde_json::Value> = match &e {
                    WorkflowFileError::Invalid(le) => le
                        .problems
                        .iter()
                        .map(|p| {
                            serde_json::json!({"node_id": p.node_id, "node_type": p.node_type, "message": p.message})
                        })
                        .collect(),
                    WorkflowFileError::Io(m) => vec![serde_json::json!({"node_id": null, "node_type": null, "message": m})],
                };
                let unsupported = match &e {
                    WorkflowFileError::Invalid(le) => le.unsupported_types.clone(),
                    WorkflowFileError::Io(_) => Vec::new(),
                };
                let report = serde_json::json!({"valid": false, "problems": problems, "unsupported_types": unsupported});
                println!("{report}");
            } else {
                eprintln!("error: {}", e.describe(&args.workflow));
            }
            EXIT_INVALID
        }
    }
}

fn cmd_validate_config(args: &ConfigArgs) -> u8 {
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match &config.config_file {
        Some(p) => println!("config file: {}", p.display()),
        None => println!("config file: (none; defaults and environment only)"),
    }
    let rows = config.describe();
    let key_w = rows.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
    let val_w = rows
        .iter()
        .map(|(_, v, _)| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    for (key, value, source) in rows {
        println!("{key:<key_w$}  {value:<val_w$}  ({source})");
    }
    println!("configuration is valid");
    EXIT_OK
}

fn cmd_nodes(args: &NodesArgs) -> u8 {
    let defs = crate::nodes::all();
    if args.json {
        let list: Vec<serde_json::Value> = defs
            .iter()
            .map(|d| {
                serde_json::json!({
                    "node_type": d.node_type,
                    "params": d.params.iter().map(|p| serde_json::json!({
                        "name": p.name, "default": p.default.to_value().to_json(), "required": p.required,
                    })).collect::<Vec<_>>(),
                    "outputs": d.outputs,
                    "routes": d.routes,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
    } else {
        for d in &defs {
            let params: Vec<String> = d
                .params
                .iter()
                .map(|p| {
                    if p.required {
                        format!("{}*", p.name)
                    } else {
                        p.name.to_string()
                    }
                })
                .collect();
            println!(
                "{:<28} in: {}  out: {}",
                d.node_type,
                params.join(", "),
                d.outputs.join(", ")
            );
        }
        println!("{} node types (* = required)", defs.len());
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_flags_naming_nothing_the_workflow_uses_are_warned_about() {
        let wf = model::load_str(
            r#"{"nodes": {"a": {"node_id": "a", "node_type": "LogNode",
                                 "config": {"message": "hi {{who}}, {{count_2}}"}}},
                "variables": {"limit": 3}}"#,
        )
        .unwrap();
        let check = |vars: &[&str], expected: &[&str]| {
            let vars: Vec<String> = vars.iter().map(|v| v.to_string()).collect();
            assert_eq!(unknown_var_warnings(&wf, &vars), expected, "{vars:?}");
        };
        // Declared, or referred to in a config: fine.
        check(&["limit=4", "who=Bob", "count_2=1"], &[]);
        // A part of a word is not a reference; the closest declared name is offered.
        check(
            &["count=1", "limt=9", "limt=10"],
            &[
                "--var count: the workflow declares no variable \"count\" and no node refers to it; it is passed anyway (it declares: limit)",
                "--var limt: the workflow declares no variable \"limt\" and no node refers to it; it is passed anyway (did you mean \"limit\"?)",
            ],
        );
    }

    #[test]
    fn var_values_are_json_when_valid() {
        let check = |arg: &str, name: &str, expected: Value| {
            let (n, v) = parse_var(arg).unwrap();
            assert_eq!(n, name);
            assert_eq!(v, expected);
            assert_eq!(v.type_name(), expected.type_name(), "{arg}");
        };
        check("n=5", "n", Value::Int(5));
        check("f=2.5", "f", Value::Float(2.5));
        check("b=true", "b", Value::Bool(true));
        check(
            "l=[1,2]",
            "l",
            Value::list(vec![Value::Int(1), Value::Int(2)]),
        );
        check("s=hello world", "s", Value::str("hello world"));
        check("q=\"5\"", "q", Value::str("5"));
        check("e=", "e", Value::str(""));
        check("eq=a=b", "eq", Value::str("a=b"));
        assert!(parse_var("novalue").is_err());
        assert!(parse_var("=5").is_err());
    }
}

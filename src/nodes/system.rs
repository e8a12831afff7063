//! System nodes: `RunCommandNode`, `SystemInfoNode`, `EnvironmentVariableNode`.
//!
//! Process handling (spawn, bounded capture, interruptible wait, process-tree kill) is in
//! [`process`]; machine facts are in [`info`]. Deviations from upstream, and why:
//! - **RunCommand safety.** The robot's own rules come first (`safety::check_command`: the config can
//!   disable RunCommand or allow-list program names). With `shell=true` the shell (`sh`/`cmd`) must
//!   be allowed too, since a shell runs anything. Upstream's checks are kept unless
//!   `allow_dangerous` is set: its list of blocked programs (`rm`, `curl`, `powershell`, ...; matched
//!   on the file name, so `/bin/rm` is blocked as well, which upstream missed) and, with
//!   `shell=true`, its list of shell metacharacters (`| & ; $ \` ( ) { } < >` and newlines). The
//!   errors are `SecurityError`s, as upstream.
//! - **Timeout and cancellation** kill the whole process tree and fail the node (`TimeoutError`
//!   "command timed out after N s (process tree killed)", or cancelled); upstream killed only the
//!   direct child. The wait is also capped by the node deadline. A non-zero exit code is still a
//!   node success (as upstream); the `success` output says whether it was 0.
//! - **Output** is decoded as UTF-8 (invalid bytes replaced; upstream used the locale encoding,
//!   which on Windows is a legacy code page) with Python's universal newlines (`\r\n` → `\n`). Each
//!   stream keeps its first 10 MB; the rest is drained and counted: `…[truncated N bytes]`. With
//!   `capture_output=false` the output goes to the null device (a robot has no console) and the
//!   outputs are empty strings. stdin is the null device.
//! - **Splitting.** A string command with `shell=false` is split like `shlex.split`; on Windows a
//!   backslash is an ordinary character there (paths), and an unclosed quote is an error instead of
//!   upstream's silent fallback to splitting on spaces. `command` may also be a list. List `args`
//!   appended to a shell command are quoted for that shell.
//! - **New parameter `env`** (a dict of extra environment variables; `null` removes one). The
//!   working directory defaults to the job's working directory (`safety.work_dir`) when set.
//! - **EnvironmentVariable** `set` with scope `process` does not touch the robot's environment (the
//!   daemon runs several jobs at once): it sets the value in this run's overlay, kept in the
//!   variable `_env` so checkpoints carry it; `get` and RunCommand see the overlay first.
//!   The robot's own secret variables (`safety::hidden_env`) are not visible to `get` and are
//!   removed from the environment RunCommand's programs inherit.
//!   Scopes `user`/`system` (upstream: Windows registry) are not supported: `success` is false and a
//!   warning is logged, as upstream does where it cannot write the registry.
//! - **SystemInfo** reads `/proc`, `statvfs`, `getifaddrs` and `uname` (no psutil). On Windows only
//!   the CPU figure and names are available (see [`info`]); unknown figures are `None`. The `os`
//!   section reports `robot_version` in place of `python_version`. An unknown `info_type` is an error.

pub(crate) mod info;
pub(crate) mod process;

use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::safety;
use crate::engine::value::{Dict, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "RunCommandNode",
        &[
            req("command"),
            opt("args", Lit::Str("")),
            opt("shell", Lit::Bool(false)),
            opt("timeout", Lit::Int(60)),
            opt("working_dir", Lit::Str("")),
            opt("env", Lit::Null),
            opt("capture_output", Lit::Bool(true)),
            opt("allow_dangerous", Lit::Bool(false)),
        ],
        &["stdout", "stderr", "return_code", "success"],
        run_command,
    ),
    NodeDef::plain(
        "SystemInfoNode",
        &[opt("info_type", Lit::Str("all"))],
        &[
            "info",
            "os_name",
            "cpu_percent",
            "ram_percent",
            "disk_percent",
        ],
        system_info,
    ),
    NodeDef::plain(
        "EnvironmentVariableNode",
        &[
            opt("action", Lit::Str("get")),
            opt("var_name", Lit::Str("")),
            opt("value", Lit::Str("")),
            opt("scope", Lit::Str("process")),
        ],
        &["result_value", "exists", "success"],
        environment_variable,
    ),
];

/// Bytes kept from each of stdout and stderr.
const MAX_CAPTURE: usize = 10 * 1024 * 1024;

/// The run variable holding environment changes made by `EnvironmentVariableNode`.
const ENV_OVERLAY: &str = "_env";

/// Programs upstream refuses unless `allow_dangerous` is set.
const BLOCKED_COMMANDS: &[&str] = &[
    "rm",
    "del",
    "format",
    "fdisk",
    "mkfs",
    "wget",
    "curl",
    "invoke-webrequest",
    "nc",
    "netcat",
    "ncat",
    "powershell",
    "pwsh",
    "cmd",
    "reg",
    "regedit",
    "net",
    "sc",
    "shutdown",
    "reboot",
];

/// Shell metacharacters upstream refuses with `shell=true` unless `allow_dangerous` is set.
const DANGEROUS_CHARS: &[char] = &[
    '|', '&', ';', '$', '`', '(', ')', '{', '}', '<', '>', '\n', '\r',
];

/// Split a command line like Python's `shlex.split` (POSIX mode). With `backslash_escapes` false
/// (Windows) a backslash is an ordinary character. An unclosed quote is an error.
fn split_words(text: &str, backslash_escapes: bool) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' if backslash_escapes => {
                in_word = true;
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return Err("the command ends with a lone backslash".into()),
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(n) => cur.push(n),
                        None => return Err("the command has an unclosed single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if backslash_escapes => match chars.peek() {
                            Some(&n) if matches!(n, '\\' | '"' | '$' | '`' | '\n') => {
                                chars.next();
                                cur.push(n);
                            }
                            _ => cur.push('\\'),
                        },
                        Some(n) => cur.push(n),
                        None => return Err("the command has an unclosed double quote".into()),
                    }
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// Split a command line like `shlex.split`, with this platform's backslash rule (Windows: an
/// ordinary character); shared with the script nodes.
pub(crate) fn split_command_line(text: &str) -> Result<Vec<String>, String> {
    split_words(text, !cfg!(windows))
}

/// Quote one argument for `sh` (Python's `shlex.quote`).
fn quote_sh(arg: &str) -> String {
    if arg.is_empty() {
        return "''".into();
    }
    if arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\"'\"'"))
}

/// Quote one argument for a Windows command line (the usual `"..."` / `\"` convention).
fn quote_win(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"', '&', '|', '<', '>', '^']) {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            c => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// The program's bare name for rule checks: file name, lowercase, without `.exe/.cmd/.bat`.
fn base_name(program: &str) -> String {
    let name = program
        .replace('\\', "/")
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    for ext in [".exe", ".cmd", ".bat"] {
        if let Some(stem) = name.strip_suffix(ext) {
            return stem.to_string();
        }
    }
    name
}

/// `N` for messages: `60`, `0.5`.
fn secs_text(secs: f64) -> String {
    if secs.fract() == 0.0 && secs.abs() < 1e15 {
        format!("{secs:.0}")
    } else {
        format!("{secs}")
    }
}

/// Decode captured output (shared with the script nodes): UTF-8 with replacement, universal newlines, truncation note.
pub(crate) fn decode(out: &process::Captured) -> String {
    let text = String::from_utf8_lossy(&out.bytes);
    let mut s = if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text.into_owned()
    };
    if out.dropped > 0 {
        if !s.ends_with('\n') {
            s.push('\n');
        }
        s.push_str(&format!("…[truncated {} bytes]", out.dropped));
    }
    s
}

/// The run's environment overlay (`_env`): name → value, `None` for a removed variable.
fn overlay(ctx: &NodeCtx<'_>) -> Vec<(String, Option<String>)> {
    match ctx.var(ENV_OVERLAY) {
        Some(Value::Dict(d)) => d
            .iter()
            .map(|(k, v)| (k.clone(), (!v.is_null()).then(|| v.py_str())))
            .collect(),
        _ => Vec::new(),
    }
}

fn env_name_ok(name: &str) -> Result<(), NodeError> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(NodeError::value(format!(
            "invalid environment variable name {name:?}"
        )));
    }
    Ok(())
}

fn same_env_name(a: &str, b: &str) -> bool {
    if cfg!(windows) {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// The working directory of a started program (shared with the script nodes): the checked
/// `working_dir` parameter, else the job's working directory (`None`: the robot's own).
pub(crate) fn working_dir(ctx: &NodeCtx<'_>) -> Result<Option<std::path::PathBuf>, NodeError> {
    if ctx.param_str("working_dir").trim().is_empty() {
        return Ok(ctx.options().safety.work_dir.clone());
    }
    let dir = ctx.path_param("working_dir")?;
    if !dir.is_dir() {
        return Err(NodeError::new(
            "FileNotFoundError",
            format!(
                "working directory '{}' does not exist or is not a directory",
                dir.display()
            ),
        ));
    }
    Ok(Some(dir))
}

/// The environment changes of a started program (shared with the script nodes): the robot's
/// secret variables removed, then this run's overlay (`_env`).
pub(crate) fn inherited_env(ctx: &NodeCtx<'_>) -> Vec<(String, Option<String>)> {
    let mut env: Vec<(String, Option<String>)> = safety::hidden_env_names()
        .into_iter()
        .map(|name| (name, None))
        .collect();
    env.extend(overlay(ctx));
    env
}

/// The program and arguments to run, after the safety checks.
fn build_spec(ctx: &NodeCtx<'_>) -> Result<process::Spec, NodeError> {
    let shell = ctx.param_bool("shell");
    let allow_dangerous = ctx.param_bool("allow_dangerous");
    let backslash_escapes = !cfg!(windows);
    let split = |s: &str| split_words(s, backslash_escapes).map_err(NodeError::value);

    let command = ctx.param("command");
    let (command_text, mut words) = match &command {
        Value::List(items) => {
            let words: Vec<String> = items.iter().map(Value::py_str).collect();
            let text = words
                .iter()
                .map(|w| {
                    if cfg!(windows) {
                        quote_win(w)
                    } else {
                        quote_sh(w)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            (text, Some(words))
        }
        Value::Dict(_) => {
            return Err(NodeError::type_error(format!(
                "command must be a string or a list, got dict {}",
                command.py_repr()
            )))
        }
        Value::Null => (String::new(), None),
        other => (other.py_str(), None),
    };
    if command_text.trim().is_empty() {
        return Err(NodeError::value("command is required"));
    }
    let args = ctx.param("args");
    let args_text = match &args {
        Value::Str(s) => Some(s.to_string()),
        Value::Null | Value::List(_) => None,
        Value::Dict(_) => {
            return Err(NodeError::type_error(format!(
                "args must be a string or a list, got dict {}",
                args.py_repr()
            )))
        }
        other => Some(other.py_str()),
    };
    // The first word as it will be run (split with the same rules), so the checks below see
    // the program that starts, not its spelling.
    let first_word = match &words {
        Some(w) => w.first().cloned().unwrap_or_default(),
        None => split(&command_text)
            .ok()
            .and_then(|w| w.into_iter().next())
            .unwrap_or_else(|| {
                command_text
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string()
            }),
    };

    // Upstream's checks (unless allow_dangerous).
    if !allow_dangerous {
        let base = base_name(&first_word);
        if BLOCKED_COMMANDS.contains(&base.as_str()) {
            return Err(NodeError::new(
                "SecurityError",
                format!("command '{base}' is blocked for safety; set allow_dangerous to true to run it (not recommended)"),
            ));
        }
        if shell {
            let scanned = [Some(command_text.as_str()), args_text.as_deref()];
            for text in scanned.into_iter().flatten() {
                if let Some(c) = text.chars().find(|c| DANGEROUS_CHARS.contains(c)) {
                    return Err(NodeError::new(
                        "SecurityError",
                        format!(
                            "dangerous character {:?} in the command: with shell=true it could enable command injection; use shell=false or set allow_dangerous to true",
                            c.to_string()
                        ),
                    ));
                }
            }
        }
    }

    // The robot's rules (config).
    let rules = &ctx.options().safety;
    if shell || rules.run_command_disabled {
        // Without a shell the program is checked once its working directory is known (below).
        safety::check_command(&first_word, rules.work_dir.as_deref(), rules)?;
    }

    let mut spec = process::Spec {
        capture: ctx.param_bool("capture_output"),
        ..process::Spec::default()
    };
    if shell {
        let mut line = command_text;
        match &args {
            Value::List(items) if !items.is_empty() => {
                for a in items.iter() {
                    line.push(' ');
                    let a = a.py_str();
                    line.push_str(&if cfg!(windows) {
                        quote_win(&a)
                    } else {
                        quote_sh(&a)
                    });
                }
            }
            _ => {
                if let Some(a) = args_text.as_deref().filter(|a| !a.is_empty()) {
                    line.push(' ');
                    line.push_str(a);
                }
            }
        }
        let shell_program = if cfg!(windows) {
            std::env::var("COMSPEC").unwrap_or_else(|_| "cmd.exe".into())
        } else {
            "/bin/sh".to_string()
        };
        let shell_program = safety::check_command(&shell_program, None, rules).map_err(|mut e| {
            e.message.push_str(&format!(
                " (shell=true runs the command through '{shell_program}', which must be allowed too)"
            ));
            e
        })?;
        spec.program = shell_program;
        spec.args = if cfg!(windows) {
            vec![
                process::Arg::Plain("/c".into()),
                process::Arg::Raw(format!("\"{line}\"")),
            ]
        } else {
            vec![process::Arg::Plain("-c".into()), process::Arg::Plain(line)]
        };
    } else {
        let mut all = match words.take() {
            Some(w) => w,
            None => split(&command_text)?,
        };
        match &args {
            Value::List(items) => all.extend(items.iter().map(Value::py_str)),
            _ => {
                if let Some(a) = args_text.as_deref() {
                    all.extend(split(a)?);
                }
            }
        }
        if all.is_empty() || all[0].is_empty() {
            return Err(NodeError::value("command is required"));
        }
        spec.program = all.remove(0);
        spec.args = all.into_iter().map(process::Arg::Plain).collect();
    }

    // Working directory and environment.
    spec.cwd = working_dir(ctx)?;
    let mut env = inherited_env(ctx);
    for (k, v) in ctx.param_dict("env")?.iter() {
        env_name_ok(k)?;
        env.retain(|(name, _)| !same_env_name(name, k));
        env.push((k.clone(), (!v.is_null()).then(|| v.py_str())));
    }
    safety::check_command_env(&env, rules)?;
    spec.env = env;
    if !shell {
        // With an allow-list this is the absolute path that was checked.
        spec.program = safety::check_command(&spec.program, spec.cwd.as_deref(), rules)?;
    }
    Ok(spec)
}

/// Run a program (or a shell command line) and capture its output. Parameters: `command` (string
/// or list), `args` (string split like a shell, or list), `shell`, `timeout` (seconds, capped by
/// the node deadline), `working_dir`, `env`, `capture_output`, `allow_dangerous`. Outputs `stdout`,
/// `stderr`, `return_code` and `success` (exit code 0). A non-zero exit is still a node success;
/// a timeout or cancellation kills the process tree and fails the node.
fn run_command(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let spec = build_spec(ctx)?;
    let timeout = ctx.param_f64("timeout")?;
    let done = execute(ctx, &spec, timeout)?;
    ctx.set_output("stdout", Value::str(decode(&done.stdout)));
    ctx.set_output("stderr", Value::str(decode(&done.stderr)));
    ctx.set_output("return_code", Value::Int(done.code));
    ctx.set_output("success", Value::Bool(done.code == 0));
    Ok(Flow::Next)
}

/// Run `spec` for a node (RunCommand and the script nodes): at most `timeout` seconds, capped by
/// the node deadline; a timeout or cancellation kills the process tree and fails the node; a
/// program that cannot start is a `FileNotFoundError` / `PermissionError` / `OSError`. Truncated
/// output and pipes left open are logged.
pub(crate) fn execute(
    ctx: &mut NodeCtx<'_>,
    spec: &process::Spec,
    timeout: f64,
) -> Result<process::Finished, NodeError> {
    if !timeout.is_finite() || timeout <= 0.0 {
        return Err(NodeError::value(format!(
            "timeout must be a positive number of seconds, got {}",
            secs_text(timeout)
        )));
    }
    let started = Instant::now();
    let wanted = started + Duration::from_secs_f64(timeout.min(10.0 * 365.0 * 86_400.0));
    let until = wanted.min(ctx.deadline());
    let program = spec.program.clone();
    let result = process::run(
        spec,
        until,
        ctx.cancel_token(),
        MAX_CAPTURE,
        ctx.options().cancel_grace,
    );
    let done = match result {
        Ok(done) => done,
        Err(process::Failure::TimedOut) => {
            return Err(NodeError::timeout(if until < wanted {
                format!(
                    "command timed out after {:.1} s: the node deadline passed (process tree killed)",
                    started.elapsed().as_secs_f64()
                )
            } else {
                format!(
                    "command timed out after {} s (process tree killed)",
                    secs_text(timeout)
                )
            }))
        }
        Err(process::Failure::Cancelled) => {
            return Err(NodeError::cancelled(
                "cancelled while the command ran (process tree killed)",
            ))
        }
        Err(process::Failure::Spawn(e)) => {
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound => NodeError::new(
                    "FileNotFoundError",
                    format!("program '{program}' not found (is it installed and on PATH?)"),
                ),
                std::io::ErrorKind::PermissionDenied => NodeError::new(
                    "PermissionError",
                    format!("program '{program}' cannot be run: permission denied"),
                ),
                _ => NodeError::new("OSError", format!("cannot run program '{program}': {e}")),
            })
        }
    };
    for (name, out) in [("stdout", &done.stdout), ("stderr", &done.stderr)] {
        if out.dropped > 0 {
            ctx.log(
                log::Level::Warn,
                format!(
                    "{name} of '{program}' exceeded {} MB; {} bytes were dropped",
                    MAX_CAPTURE / (1024 * 1024),
                    out.dropped
                ),
            );
        }
    }
    if done.pipes_left_open {
        ctx.log(
            log::Level::Warn,
            format!("'{program}' exited but a process it started still holds its output open; later output is not captured"),
        );
    }
    // The command line itself is not logged: it may contain resolved secrets.
    ctx.log(
        log::Level::Debug,
        format!(
            "'{program}' exited with code {} after {:.3} s",
            done.code,
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(done)
}

/// Machine facts, as upstream's psutil-based node: `info_type` ∈ os, cpu, ram, disk, network, all
/// selects the sections of `info`; `os_name` is `"<system> <release>"`; `cpu_percent` (sampled over
/// ~0.1 s, interruptibly), `ram_percent`, `disk_percent` (the root file system) are floats, `0.0`
/// for a section not requested and `None` where this platform cannot tell.
fn system_info(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let info_type = ctx.param_str("info_type").trim().to_ascii_lowercase();
    let info_type = if info_type.is_empty() {
        "all".to_string()
    } else {
        info_type
    };
    if !["os", "cpu", "ram", "disk", "network", "all"].contains(&info_type.as_str()) {
        return Err(NodeError::value(format!(
            "unknown info_type '{info_type}' (expected os, cpu, ram, disk, network or all)"
        )));
    }
    let want = |s: &str| info_type == "all" || info_type == s;
    let os = info::os();
    let mut sections = Dict::new();
    if want("os") {
        let opt_str = |s: &Option<String>| s.as_ref().map_or(Value::Null, Value::str);
        sections.insert(
            "os".into(),
            Value::dict_from([
                ("system", Value::str(&os.system)),
                ("release", opt_str(&os.release)),
                ("version", opt_str(&os.version)),
                ("machine", Value::str(&os.machine)),
                ("processor", Value::str(&os.processor)),
                ("hostname", opt_str(&os.hostname)),
                ("robot_version", Value::str(env!("CARGO_PKG_VERSION"))),
            ]),
        );
    }
    let mut cpu_percent = Value::Float(0.0);
    if want("cpu") {
        let pct = match info::cpu_times() {
            Some(a) => {
                ctx.sleep(Duration::from_millis(100))?;
                info::cpu_times().map(|b| info::cpu_percent(a, b))
            }
            None => None,
        };
        cpu_percent = pct.map_or(Value::Null, Value::Float);
        let logical = std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .ok();
        let (physical, mhz) = info::cpu_details();
        sections.insert(
            "cpu".into(),
            Value::dict_from([
                ("percent", cpu_percent.clone()),
                (
                    "cores_physical",
                    physical.or(logical).map_or(Value::Null, Value::Int),
                ),
                ("cores_logical", logical.map_or(Value::Null, Value::Int)),
                ("frequency_mhz", Value::Float(mhz.unwrap_or(0.0))),
            ]),
        );
    }
    let mut ram_percent = Value::Float(0.0);
    if want("ram") {
        let ram = info::ram_section();
        ram_percent = ram
            .as_dict()
            .and_then(|d| d.get("percent").cloned())
            .unwrap_or(Value::Null);
        sections.insert("ram".into(), ram);
    }
    let mut disk_percent = Value::Float(0.0);
    if want("disk") {
        let disks = info::disks();
        disk_percent = disks
            .first()
            .map_or(Value::Null, |d| Value::Float(d.percent()));
        sections.insert(
            "disk".into(),
            Value::list(disks.iter().map(info::Disk::to_value).collect()),
        );
    }
    if want("network") {
        let io = info::net_io();
        sections.insert(
            "network".into(),
            Value::dict_from([
                (
                    "bytes_sent",
                    io.map_or(Value::Null, |(s, _)| Value::Int(s as i64)),
                ),
                (
                    "bytes_recv",
                    io.map_or(Value::Null, |(_, r)| Value::Int(r as i64)),
                ),
                ("interfaces", Value::list(info::interfaces())),
            ]),
        );
    }
    let os_name = match &os.release {
        Some(r) => format!("{} {r}", os.system),
        None => os.system.clone(),
    };
    ctx.set_output("info", Value::Dict(Arc::new(sections)));
    ctx.set_output("os_name", Value::str(os_name));
    ctx.set_output("cpu_percent", cpu_percent);
    ctx.set_output("ram_percent", ram_percent);
    ctx.set_output("disk_percent", disk_percent);
    Ok(Flow::Next)
}

/// Get or set an environment variable. `get` reads this run's overlay, then the robot's
/// environment (`result_value` "" and `exists` false when unset). `set` with scope `process`
/// records the value in the run's overlay (variable `_env`), which later `get`s and every
/// RunCommand of the run see; the robot's own environment is not changed. An empty `var_name`
/// gives `success` false (as upstream); scopes `user`/`system` are not supported (`success` false).
fn environment_variable(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let action = ctx.param_str("action").trim().to_ascii_lowercase();
    let name = ctx.param_str("var_name").trim().to_string();
    let value = ctx.param_str("value");
    let scope = ctx.param_str("scope").trim().to_ascii_lowercase();
    let scope = if scope.is_empty() {
        "process".to_string()
    } else {
        scope
    };
    if !["get", "set"].contains(&action.as_str()) {
        return Err(NodeError::value(format!(
            "unknown action '{action}' (expected get or set)"
        )));
    }
    if !["process", "user", "system"].contains(&scope.as_str()) {
        return Err(NodeError::value(format!(
            "unknown scope '{scope}' (expected process, user or system)"
        )));
    }
    let (mut result, mut exists, mut success) = (String::new(), false, false);
    if name.is_empty() {
        ctx.log(
            log::Level::Warn,
            "no environment variable name given; nothing done",
        );
    } else if action == "get" {
        let from_overlay = overlay(ctx)
            .into_iter()
            .rev()
            .find(|(k, _)| same_env_name(k, &name));
        let found = match from_overlay {
            Some((_, v)) => v,
            None => std::env::var_os(&name)
                .map(|v| v.to_string_lossy().into_owned())
                .filter(|v| !safety::hidden_env(&name, v)),
        };
        exists = found.is_some();
        result = found.unwrap_or_default();
        success = true;
    } else if scope == "process" {
        env_name_ok(&name)?;
        let mut map: Dict = match ctx.var(ENV_OVERLAY) {
            Some(Value::Dict(d)) => (**d).clone(),
            _ => Dict::new(),
        };
        map.retain(|k, _| !same_env_name(k, &name));
        map.insert(name.clone(), Value::str(&value));
        ctx.set_var(ENV_OVERLAY, Value::Dict(Arc::new(map)));
        result = value;
        exists = true;
        success = true;
    } else {
        ctx.log(
            log::Level::Warn,
            format!("setting {scope} environment variables is not supported by this robot; '{name}' was not set"),
        );
    }
    ctx.set_output("result_value", Value::str(result));
    ctx.set_output("exists", Value::Bool(exists));
    ctx.set_output("success", Value::Bool(success));
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn split_like_shlex() {
        let ok = |s: &str, bs: bool| split_words(s, bs).unwrap();
        assert_eq!(ok("echo  hi there", true), ["echo", "hi", "there"]);
        assert_eq!(ok("a 'b c' \"d e\"", true), ["a", "b c", "d e"]);
        assert_eq!(ok(r#"a\ b "x\"y" 'q\n'"#, true), ["a b", "x\"y", "q\\n"]);
        assert_eq!(ok("x''y \"\"", true), ["xy", ""]);
        assert_eq!(
            ok(r"C:\Tools\app.exe 'C:\My Files'", false),
            [r"C:\Tools\app.exe", r"C:\My Files"]
        );
        assert_eq!(ok("   ", true), Vec::<String>::new());
        assert_eq!(
            split_words("echo 'oops", true).unwrap_err(),
            "the command has an unclosed single quote"
        );
        assert_eq!(
            split_words("echo \"oops", false).unwrap_err(),
            "the command has an unclosed double quote"
        );
        assert!(split_words("echo \\", true).is_err());
    }

    #[test]
    fn quoting_and_names() {
        assert_eq!(quote_sh("plain-1.txt"), "plain-1.txt");
        assert_eq!(quote_sh(""), "''");
        assert_eq!(quote_sh("it's here"), "'it'\"'\"'s here'");
        assert_eq!(quote_win("plain"), "plain");
        assert_eq!(quote_win("a b"), "\"a b\"");
        assert_eq!(quote_win(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote_win(r"dir\ x\"), r#""dir\ x\\""#);
        assert_eq!(base_name("/bin/RM"), "rm");
        assert_eq!(base_name(r"C:\Windows\System32\cmd.exe"), "cmd");
        assert_eq!(base_name("format.com"), "format.com");
        assert_eq!(secs_text(60.0), "60");
        assert_eq!(secs_text(0.5), "0.5");
    }

    #[test]
    fn decoding_normalises_newlines_and_notes_truncation() {
        let c = process::Captured {
            bytes: b"a\r\nb\rc\xff".to_vec(),
            dropped: 0,
        };
        assert_eq!(decode(&c), "a\nb\nc\u{fffd}");
        let c = process::Captured {
            bytes: b"xyz".to_vec(),
            dropped: 7,
        };
        assert_eq!(decode(&c), "xyz\n…[truncated 7 bytes]");
    }

    #[cfg(unix)]
    #[test]
    fn runs_programs_and_reports_exit_codes() {
        let ran = run_node(
            "RunCommandNode",
            json!({"command": "echo hello world"}),
            json!({}),
        );
        assert_eq!(ran.error(), "");
        assert_eq!(ran.out("n", "stdout"), Value::str("hello world\n"));
        assert_eq!(ran.out("n", "stderr"), Value::str(""));
        assert_eq!(ran.out("n", "return_code").py_repr(), "0");
        assert_eq!(ran.out("n", "success"), Value::Bool(true));

        let ran = run_node(
            "RunCommandNode",
            json!({"command": ["sh", "-c", "echo oops >&2; exit 3"]}),
            json!({}),
        );
        assert_eq!(ran.error(), "", "a non-zero exit is a node success");
        assert_eq!(ran.out("n", "stderr"), Value::str("oops\n"));
        assert_eq!(ran.out("n", "return_code").py_repr(), "3");
        assert_eq!(ran.out("n", "success"), Value::Bool(false));

        let ran = run_node(
            "RunCommandNode",
            json!({"command": "printf", "args": ["%s|", "a b", "c"]}),
            json!({}),
        );
        assert_eq!(ran.out("n", "stdout"), Value::str("a b|c|"));
        let ran = run_node(
            "RunCommandNode",
            json!({"command": "printf '%s|'", "args": "'x y' z"}),
            json!({}),
        );
        assert_eq!(ran.out("n", "stdout"), Value::str("x y|z|"));
        let ran = run_node(
            "RunCommandNode",
            json!({"command": "echo", "args": ["it's", "a b"], "shell": true}),
            json!({}),
        );
        assert_eq!(ran.out("n", "stdout"), Value::str("it's a b\n"));
        let ran = run_node(
            "RunCommandNode",
            json!({"command": "echo hi", "capture_output": false}),
            json!({}),
        );
        assert_eq!(ran.out("n", "stdout"), Value::str(""));
        assert_eq!(ran.out("n", "success"), Value::Bool(true));
    }

    #[test]
    fn refusals_and_bad_input() {
        let err = |config: serde_json::Value| run_node("RunCommandNode", config, json!({})).error();
        assert_eq!(
            err(json!({"command": "/bin/rm -rf x"})),
            "n (RunCommandNode): command 'rm' is blocked for safety; set allow_dangerous to true to run it (not recommended)"
        );
        assert_eq!(
            err(json!({"command": "echo a | cat", "shell": true})),
            "n (RunCommandNode): dangerous character \"|\" in the command: with shell=true it could enable command injection; use shell=false or set allow_dangerous to true"
        );
        assert!(
            err(json!({"command": "echo", "args": "$(id)", "shell": true}))
                .contains("dangerous character \"$\"")
        );
        assert_eq!(
            err(json!({"command": "  "})),
            "n (RunCommandNode): command is required"
        );
        assert_eq!(
            err(json!({"command": "echo 'x"})),
            "n (RunCommandNode): the command has an unclosed single quote"
        );
        assert_eq!(
            err(json!({"command": {"a": 1}})),
            "n (RunCommandNode): command must be a string or a list, got dict {'a': 1}"
        );
        assert_eq!(
            err(json!({"command": "echo", "timeout": 0})),
            "n (RunCommandNode): timeout must be a positive number of seconds, got 0"
        );
        assert_eq!(
            err(json!({"command": "echo", "env": {"A=B": "1"}})),
            "n (RunCommandNode): invalid environment variable name \"A=B\""
        );
        assert_eq!(
            err(json!({"command": "no-such-program-xyz --flag"})),
            "n (RunCommandNode): program 'no-such-program-xyz' not found (is it installed and on PATH?)"
        );
        assert!(err(json!({"command": "echo", "working_dir": "../up"}))
            .contains("'..' (parent directory) components are not allowed"));
    }

    #[cfg(windows)]
    #[test]
    fn windows_shell_and_job_object_kill() {
        let ran = run_node(
            "RunCommandNode",
            json!({"command": "echo hello", "shell": true}),
            json!({}),
        );
        assert_eq!(ran.error(), "");
        assert_eq!(ran.out("n", "stdout"), Value::str("hello\n"));
        // cmd (the child) starts another cmd (a grandchild) running a loop that writes a tick and
        // starts ping about once a second; killing the job stops all of them.
        let dir = tempfile::tempdir().unwrap();
        let ticks = dir.path().join("ticks.txt");
        let bat = dir.path().join("loop.bat");
        std::fs::write(
            &bat,
            format!(
                "@echo off\r\nfor /l %%i in (1,1,60) do (\r\n  echo %%i >> \"{}\"\r\n  ping -n 2 127.0.0.1 > nul\r\n)\r\n",
                ticks.display()
            ),
        )
        .unwrap();
        let script = format!("cmd /c \"{}\"", bat.display());
        let started = std::time::Instant::now();
        let ran = run_node(
            "RunCommandNode",
            json!({"command": script, "shell": true, "timeout": 2, "allow_dangerous": true}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (RunCommandNode): command timed out after 2 s (process tree killed)"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let size = std::fs::metadata(&ticks).map(|m| m.len()).unwrap_or(0);
        assert!(size > 0, "the loop ran before the kill");
        // A negative check needs a wait: nothing may write after the kill.
        std::thread::sleep(std::time::Duration::from_millis(2500));
        assert_eq!(
            std::fs::metadata(&ticks).map(|m| m.len()).unwrap_or(0),
            size
        );
    }

    #[test]
    fn environment_variables_live_in_the_run_overlay() {
        let ran = run_chain(&[
            (
                "set",
                "EnvironmentVariableNode",
                json!({"action": "set", "var_name": "CASARE_T_VAR", "value": "v1"}),
            ),
            (
                "get",
                "EnvironmentVariableNode",
                json!({"var_name": "CASARE_T_VAR"}),
            ),
            (
                "missing",
                "EnvironmentVariableNode",
                json!({"var_name": "CASARE_T_NOT_SET_ANYWHERE"}),
            ),
            ("empty", "EnvironmentVariableNode", json!({})),
            (
                "user",
                "EnvironmentVariableNode",
                json!({"action": "set", "var_name": "X", "value": "1", "scope": "user"}),
            ),
        ]);
        assert_eq!(ran.error(), "");
        assert_eq!(ran.out("set", "result_value"), Value::str("v1"));
        assert_eq!(ran.out("set", "success"), Value::Bool(true));
        assert_eq!(ran.out("get", "result_value"), Value::str("v1"));
        assert_eq!(ran.out("get", "exists"), Value::Bool(true));
        assert_eq!(ran.out("missing", "result_value"), Value::str(""));
        assert_eq!(ran.out("missing", "exists"), Value::Bool(false));
        assert_eq!(ran.out("missing", "success"), Value::Bool(true));
        assert_eq!(ran.out("empty", "success"), Value::Bool(false));
        assert_eq!(ran.out("user", "success"), Value::Bool(false));
        assert_eq!(ran.var("_env").py_repr(), "{'CASARE_T_VAR': 'v1'}");
        assert!(
            std::env::var_os("CASARE_T_VAR").is_none(),
            "the robot's environment is untouched"
        );
        let ran = run_node(
            "EnvironmentVariableNode",
            json!({"action": "delete", "var_name": "X"}),
            json!({}),
        );
        assert_eq!(
            ran.error(),
            "n (EnvironmentVariableNode): unknown action 'delete' (expected get or set)"
        );
        let ran = run_node(
            "EnvironmentVariableNode",
            json!({"var_name": "X", "scope": "galaxy"}),
            json!({}),
        );
        assert!(ran.error().contains("unknown scope 'galaxy'"));
    }

    #[cfg(unix)]
    #[test]
    fn run_command_sees_the_overlay_and_env() {
        let ran = run_chain(&[
            (
                "set",
                "EnvironmentVariableNode",
                json!({"action": "set", "var_name": "CASARE_T_A", "value": "from overlay"}),
            ),
            (
                "run",
                "RunCommandNode",
                json!({"command": ["sh", "-c", "printf '%s/%s' \"$CASARE_T_A\" \"$CASARE_T_B\""],
                       "env": {"CASARE_T_B": "from env"}}),
            ),
        ]);
        assert_eq!(ran.error(), "");
        assert_eq!(
            ran.out("run", "stdout"),
            Value::str("from overlay/from env")
        );
    }

    #[test]
    fn system_info_sections() {
        let ran = run_node("SystemInfoNode", json!({}), json!({}));
        assert_eq!(ran.error(), "");
        let info = ran.out("n", "info");
        let d = info.as_dict().unwrap();
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(keys, ["os", "cpu", "ram", "disk", "network"]);
        let os = d["os"].as_dict().unwrap();
        assert_eq!(os["robot_version"], Value::str(env!("CARGO_PKG_VERSION")));
        assert!(
            matches!(&ran.out("n", "os_name"), Value::Str(s) if s.starts_with(os["system"].as_str().unwrap()))
        );
        #[cfg(target_os = "linux")]
        {
            assert_eq!(os["system"], Value::str("Linux"));
            for port in ["cpu_percent", "ram_percent", "disk_percent"] {
                let v = ran.out("n", port);
                assert!(
                    matches!(v, Value::Float(f) if (0.0..=100.0).contains(&f)),
                    "{port}: {v:?}"
                );
            }
            let cpu = d["cpu"].as_dict().unwrap();
            assert!(matches!(cpu["cores_logical"], Value::Int(n) if n >= 1));
            let disk = d["disk"].as_list().unwrap();
            assert_eq!(disk[0].as_dict().unwrap()["mountpoint"], Value::str("/"));
        }
        let ran = run_node("SystemInfoNode", json!({"info_type": "ram"}), json!({}));
        let keys: Vec<String> = ran
            .out("n", "info")
            .as_dict()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["ram"]);
        assert!(matches!(ran.out("n", "cpu_percent"), Value::Float(f) if f == 0.0));
        let ran = run_node("SystemInfoNode", json!({"info_type": "gpu"}), json!({}));
        assert_eq!(
            ran.error(),
            "n (SystemInfoNode): unknown info_type 'gpu' (expected os, cpu, ram, disk, network or all)"
        );
    }
}

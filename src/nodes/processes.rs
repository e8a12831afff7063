//! Process nodes: `ProcessListNode` and `ProcessKillNode` (upstream: psutil), on the process
//! table of [`table`] (`/proc` on Linux, Toolhelp on Windows; no new dependency).
//!
//! Decisions:
//! - **Protected processes.** The robot itself and its ancestors (parent, grandparent, ... up to
//!   the root, e.g. the service manager or the shell that started it) are never killed: a request
//!   that would hit one fails with a `PermissionError` naming it, and nothing is killed.
//! - **`process_kill_allowlist`** (robot config, default empty): when set, only processes whose
//!   name is listed (case-insensitive, with or without `.exe`) may be killed; any other target is
//!   a `PermissionError` naming the process and the list, and nothing is killed. Empty means any
//!   process the robot's user may signal, except the protected ones.
//! - **Targets.** `pid_or_name` is a pid (digits) or a process name, matched case-insensitively on
//!   the whole name, with or without `.exe` (`notepad` finds `notepad.exe`). No match is not an
//!   error: `killed_count` 0, `success` false (logged at info), as upstream.
//! - **Killing.** Without `force`: SIGTERM on Unix; on Windows WM_CLOSE to the process's windows
//!   (a process without windows is terminated). With `force`: SIGKILL / TerminateProcess. The node
//!   then waits up to `timeout` seconds (1-60) for the targets to exit, through the run's
//!   cancellable sleep; `killed_count` counts the targets that exited, `success` is true when all
//!   did. A pid reused since the listing is never signalled (pid and start time must match).
//! - **Listing.** `processes` is a list of dicts sorted by pid: `pid` and `name`, and with
//!   `include_details` also `ppid`, `status`, `username`, `memory_mb` (resident, 2 decimals),
//!   `create_time` (ISO 8601, local time) and `cmdline` (list of arguments); values the system
//!   does not show this robot are `None` (on Windows `cmdline` and `username` always are).
//!   `filter_name` keeps processes whose name contains it (case-insensitive).
//! - On systems other than Linux and Windows both nodes fail with a clear `OSError`.

pub(crate) mod table;
#[cfg(test)]
mod tests;

use crate::engine::node::{opt, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::Value;
use std::time::{Duration, Instant};
use table::{Proc, Sent};

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "ProcessListNode",
        &[
            opt("filter_name", Lit::Str("")),
            opt("include_details", Lit::Bool(true)),
        ],
        &["processes", "count"],
        process_list,
    ),
    NodeDef::plain(
        "ProcessKillNode",
        &[
            opt("pid_or_name", Lit::Str("")),
            opt("force", Lit::Bool(false)),
            opt("timeout", Lit::Int(5)),
        ],
        &["killed_count", "success"],
        process_kill,
    ),
];

fn unsupported() -> Result<(), NodeError> {
    if table::SUPPORTED {
        Ok(())
    } else {
        Err(NodeError::new(
            "OSError",
            "process nodes are supported on Linux and Windows only",
        ))
    }
}

/// A name without case and without a trailing `.exe`, for comparisons.
fn bare(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    match lower.strip_suffix(".exe") {
        Some(stem) => stem.to_string(),
        None => lower,
    }
}

fn process_value(p: &Proc, details: bool) -> Value {
    let mut pairs = vec![
        ("pid", Value::Int(i64::from(p.pid))),
        ("name", Value::str(&p.name)),
    ];
    if details {
        let opt_str = |s: &Option<String>| s.as_ref().map_or(Value::Null, Value::str);
        pairs.extend([
            ("ppid", Value::Int(i64::from(p.ppid))),
            ("status", Value::str(p.status)),
            ("username", opt_str(&p.username)),
            (
                "memory_mb",
                p.memory_bytes.map_or(Value::Null, |b| {
                    Value::Float((b as f64 / 1_048_576.0 * 100.0).round() / 100.0)
                }),
            ),
            (
                "create_time",
                p.create_time
                    .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
                    .map_or(Value::Null, |t| {
                        Value::str(
                            t.with_timezone(&chrono::Local)
                                .format("%Y-%m-%dT%H:%M:%S")
                                .to_string(),
                        )
                    }),
            ),
            (
                "cmdline",
                p.cmdline.as_ref().map_or(Value::Null, |c| {
                    Value::list(c.iter().map(Value::str).collect())
                }),
            ),
        ]);
    }
    Value::dict_from(pairs)
}

/// List processes; outputs `processes` and `count`.
fn process_list(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    unsupported()?;
    let filter = ctx.param_str("filter_name").trim().to_lowercase();
    let details = ctx.param_bool("include_details");
    let procs: Vec<Value> = table::list()
        .iter()
        .filter(|p| filter.is_empty() || p.name.to_lowercase().contains(&filter))
        .map(|p| process_value(p, details))
        .collect();
    ctx.set_output("count", Value::Int(procs.len() as i64));
    ctx.set_output("processes", Value::list(procs));
    Ok(Flow::Next)
}

/// What `pid_or_name` asks for.
#[derive(Debug, PartialEq)]
enum Target {
    Pid(u32),
    Name(String),
}

fn parse_target(text: &str) -> Result<Target, NodeError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(NodeError::value(
            "pid_or_name is empty: give a process id or a process name",
        ));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u32>()
            .map(Target::Pid)
            .map_err(|_| NodeError::value(format!("pid_or_name '{t}' is not a valid process id")));
    }
    Ok(Target::Name(t.to_string()))
}

/// The processes `target` names, checked against the protected set and the allow-list.
fn select(
    target: &Target,
    procs: Vec<Proc>,
    protected: &[u32],
    allowlist: &[String],
) -> Result<Vec<Proc>, NodeError> {
    let chosen: Vec<Proc> = procs
        .into_iter()
        .filter(|p| p.status != "zombie")
        .filter(|p| match target {
            Target::Pid(pid) => p.pid == *pid,
            Target::Name(name) => bare(&p.name) == bare(name),
        })
        .collect();
    for p in &chosen {
        if let Some(i) = protected.iter().position(|&q| q == p.pid) {
            let role = if i == 0 {
                "it is the robot itself".to_string()
            } else {
                format!("it is an ancestor of the robot ({i} level(s) up its parent chain)")
            };
            return Err(NodeError::new(
                "PermissionError",
                format!(
                    "refused to kill process {} ({}): {role}; nothing was killed",
                    p.pid, p.name
                ),
            ));
        }
        if !allowlist.is_empty() && !allowlist.iter().any(|a| bare(a) == bare(&p.name)) {
            return Err(NodeError::new(
                "PermissionError",
                format!(
                    "refused to kill process {} ({}): its name is not in process_kill_allowlist ({}); nothing was killed",
                    p.pid,
                    p.name,
                    allowlist.join(", ")
                ),
            ));
        }
    }
    Ok(chosen)
}

/// Kill processes by pid or name; outputs `killed_count` and `success`.
fn process_kill(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    unsupported()?;
    let target = parse_target(&ctx.param_str("pid_or_name"))?;
    let force = ctx.param_bool("force");
    let timeout = ctx.param_f64("timeout")?;
    if !(1.0..=60.0).contains(&timeout) {
        return Err(NodeError::value(format!(
            "timeout must be from 1 to 60 seconds, got {timeout}"
        )));
    }
    let chosen = select(
        &target,
        table::list(),
        &table::protected(),
        &ctx.options().safety.process_kill_allowlist,
    )?;
    if chosen.is_empty() {
        let what = match &target {
            Target::Pid(pid) => format!("with pid {pid}"),
            Target::Name(name) => format!("named '{name}'"),
        };
        ctx.log(
            log::Level::Info,
            format!("no process {what} is running; nothing to kill"),
        );
        ctx.set_output("killed_count", Value::Int(0));
        ctx.set_output("success", Value::Bool(false));
        return Ok(Flow::Next);
    }
    let mut waiting = Vec::new();
    let mut gone = 0usize;
    for p in &chosen {
        match table::signal(p.pid, p.started, force) {
            Sent::Delivered => waiting.push(p),
            Sent::Gone => gone += 1,
            Sent::Denied => ctx.log(
                log::Level::Warn,
                format!(
                    "the system refused to let the robot kill process {} ({})",
                    p.pid, p.name
                ),
            ),
        }
    }
    let exited = wait_exited(ctx, &waiting, Duration::from_secs_f64(timeout))?;
    if exited < waiting.len() {
        ctx.log(
            log::Level::Warn,
            format!(
                "{} of {} process(es) were still running {timeout} s after the {} request",
                waiting.len() - exited,
                waiting.len(),
                if force { "kill" } else { "termination" }
            ),
        );
    }
    let killed = exited + gone;
    ctx.set_output("killed_count", Value::Int(killed as i64));
    ctx.set_output("success", Value::Bool(killed == chosen.len()));
    Ok(Flow::Next)
}

/// Wait (cancellable, at most `limit` and the node deadline) until the signalled processes
/// exited; returns how many did.
fn wait_exited(ctx: &NodeCtx<'_>, procs: &[&Proc], limit: Duration) -> Result<usize, NodeError> {
    let until = (Instant::now() + limit).min(ctx.deadline());
    let count = || {
        procs
            .iter()
            .filter(|p| table::started(p.pid) != Some(p.started))
            .count()
    };
    let mut step = Duration::from_millis(2);
    loop {
        let n = count();
        let now = Instant::now();
        if n == procs.len() || now >= until {
            return Ok(n);
        }
        if ctx.cancel_token().sleep_until((now + step).min(until)) {
            return Err(NodeError::cancelled(
                "cancelled while waiting for processes to exit",
            ));
        }
        step = (step * 2).min(Duration::from_millis(50));
    }
}

//! Script nodes: `EvalExpressionNode` (the robot's own expression evaluator) and the nodes that run
//! a script in an external interpreter: `RunPythonScriptNode`, `RunPythonFileNode`,
//! `RunJavaScriptNode`, `RunBatchScriptNode`, `RunPowerShellNode`.
//!
//! Every interpreter runs through RunCommand's machinery (`system::execute`): the node's
//! `timeout` capped by the node deadline, cancellation, the whole process tree killed on either,
//! 10 MB kept per output stream, the robot's secret variables removed from the environment and
//! the run's `_env` overlay applied. The interpreter is the program the command rules check
//! (`run_command_enabled`, `run_command_allowlist`); which one is used is in [`interp`]. A missing
//! interpreter is a `FileNotFoundError` naming what was tried and the key to set (`python_path`,
//! `node_path`). Deviations from upstream, and why:
//! - **Python never runs inside the robot.** Upstream's default (inline) mode `exec()`s the code in
//!   the robot's own process; here both modes run like upstream's `isolated=True`, in a separate
//!   interpreter that holds none of the robot's state, so `isolated` changes nothing. The request
//!   (code and `variables`) goes to the interpreter's stdin as JSON, never on the command line
//!   (upstream put the variables in argv, which limits their size and shows them in process
//!   listings). The result comes back in a file of its own in an owner-only scratch directory
//!   (upstream parsed a `__RESULT__:` line from stdout, which a script's own output can forge or,
//!   past the capture limit, lose), so `output` is exactly what the script printed. In the
//!   script, `variables` is the dict and each key that is an identifier is also a name; the
//!   value of `result` at the end is the output `result` (JSON types; other values via `str()`).
//! - **A script that raises fails the node** (upstream only set `success` False and went on):
//!   the error type is the Python exception's (`ZeroDivisionError`, `SyntaxError`, ...) and the
//!   message names the script's line, so Try/Catch and node retries see it. `success` is true and
//!   `error` empty when a node succeeds. The same holds for `EvalExpressionNode` (an expression
//!   error is the node's error) and `RunJavaScriptNode` (a non-zero exit fails the node with the
//!   JavaScript error line from stderr).
//! - **Programs' exit codes** (`RunPythonFileNode`, `RunBatchScriptNode`, `RunPowerShellNode`) are
//!   results, as RunCommand's: `return_code` and `success` (code 0). With `retry_on_nonzero` a
//!   non-zero code fails the node instead, so the robot's node retry (`retry_count`, delay
//!   `retry_delay` s) runs it again. Upstream's `retry_interval` (ms) is not read.
//! - **Batch scripts** are written to a file in the scratch directory and run with `cmd /c` on
//!   Windows (prefixed with `@echo off`, so the output is the script's, not echoed commands) and
//!   with `sh` elsewhere (upstream: `bash`).
//! - **PowerShell** runs `powershell.exe` (Windows PowerShell), else `pwsh`, with `-NoProfile
//!   -NonInteractive -ExecutionPolicy <execution_policy> -File`, the script saved as UTF-8 with a
//!   BOM and prefixed to write UTF-8. `constrained_mode` switches the session to
//!   `ConstrainedLanguage` first. Unless `allow_dangerous`, scripts naming one of
//!   [`POWERSHELL_BLOCKED`] are refused (`SecurityError`): our list, since upstream's is not in
//!   the catalogue.
//! - **JavaScript**: `inputData` is a global holding `input_data` (JSON types), the code runs as a
//!   CommonJS module (`require` works relative to the working directory), `result` is the
//!   stripped stdout text, as upstream.

mod interp;
#[cfg(test)]
mod tests;

use super::system::{self, process};
use crate::engine::node::{opt, req, Flow, Lit, NodeCtx, NodeDef, NodeError};
use crate::engine::value::Value;
use interp::{Interpreter, Kind, ScratchDir};
use std::sync::Arc;

/// Node types of this family.
pub const NODES: &[NodeDef] = &[
    NodeDef::plain(
        "EvalExpressionNode",
        &[req("expression"), opt("variables", Lit::Null)],
        &["result", "type", "success", "error"],
        eval_expression,
    ),
    NodeDef::plain(
        "RunPythonScriptNode",
        &[
            req("code"),
            opt("variables", Lit::Null),
            opt("timeout", Lit::Int(60)),
            opt("isolated", Lit::Bool(false)),
        ],
        &["result", "output", "success", "error"],
        run_python_script,
    ),
    NodeDef::plain(
        "RunPythonFileNode",
        &[
            req("file_path"),
            opt("args", Lit::Null),
            opt("working_dir", Lit::Null),
            opt("timeout", Lit::Int(60)),
            opt("python_path", Lit::Null),
            opt("retry_on_nonzero", Lit::Bool(false)),
        ],
        PROGRAM_OUTPUTS,
        run_python_file,
    ),
    NodeDef::plain(
        "RunBatchScriptNode",
        &[
            req("script"),
            opt("working_dir", Lit::Null),
            opt("timeout", Lit::Int(60)),
            opt("retry_on_nonzero", Lit::Bool(false)),
        ],
        PROGRAM_OUTPUTS,
        run_batch_script,
    ),
    NodeDef::plain(
        "RunPowerShellNode",
        &[
            req("script"),
            opt("timeout", Lit::Int(60)),
            opt("execution_policy", Lit::Str("RemoteSigned")),
            opt("allow_dangerous", Lit::Bool(false)),
            opt("constrained_mode", Lit::Bool(false)),
        ],
        PROGRAM_OUTPUTS,
        run_powershell,
    ),
    NodeDef::plain(
        "RunJavaScriptNode",
        &[
            req("code"),
            opt("input_data", Lit::Null),
            opt("timeout", Lit::Int(60)),
            opt("node_path", Lit::Str("node")),
        ],
        &["result", "success", "error"],
        run_javascript,
    ),
];

/// The outputs of the nodes that run a program and report its exit.
const PROGRAM_OUTPUTS: &[&str] = &["stdout", "stderr", "return_code", "success"];

/// PowerShell commands refused unless `allow_dangerous` (matched case-insensitively as words).
pub const POWERSHELL_BLOCKED: &[&str] = &[
    "Remove-Item",
    "Format-Volume",
    "Clear-Disk",
    "Initialize-Disk",
    "Stop-Computer",
    "Restart-Computer",
    "Invoke-Expression",
    "iex",
    "Invoke-WebRequest",
    "iwr",
    "Invoke-RestMethod",
    "irm",
    "Start-BitsTransfer",
    "DownloadString",
    "DownloadFile",
    "Set-ExecutionPolicy",
    "New-Service",
    "Remove-Service",
    "Set-MpPreference",
    "Remove-ItemProperty",
];

const EXECUTION_POLICIES: &[&str] = &[
    "RemoteSigned",
    "Bypass",
    "Unrestricted",
    "AllSigned",
    "Restricted",
];

/// The text of a parameter before templating: a data edge's value, else the raw config.
fn raw_text(ctx: &NodeCtx<'_>, name: &str) -> String {
    match ctx.port_value(name).or_else(|| ctx.raw_config(name)) {
        Some(Value::Str(s)) => s.to_string(),
        Some(other) => other.py_str(),
        None => String::new(),
    }
}

/// Evaluate `expression` with the robot's expression evaluator. Names resolve from the
/// `variables` dict first, then the workflow's variables and node outputs; `{{refs}}` keep
/// their type. Outputs `result`, `type` (the Python type name), `success` and `error`.
fn eval_expression(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let text = raw_text(ctx, "expression");
    if text.trim().is_empty() {
        return Err(NodeError::value("expression is empty"));
    }
    let extra = ctx.param_dict("variables")?;
    let result = if extra.is_empty() {
        ctx.eval_text(&text)?
    } else {
        let src = crate::engine::node::rewrite_refs(text.trim());
        let lookup = |name: &str| {
            if name == "variables" {
                return Some(Value::Dict(extra.clone()));
            }
            extra.get(name).or_else(|| ctx.var(name)).cloned()
        };
        crate::engine::expr::eval(&src, &lookup)?
    };
    ctx.set_output("type", Value::str(result.type_name()));
    ctx.set_output("result", result);
    succeeded(ctx);
    Ok(Flow::Next)
}

fn succeeded(ctx: &mut NodeCtx<'_>) {
    ctx.set_output("success", Value::Bool(true));
    ctx.set_output("error", Value::str(""));
}

/// A script's timeout parameter in seconds.
fn timeout(ctx: &NodeCtx<'_>) -> Result<f64, NodeError> {
    ctx.param_f64("timeout")
}

/// A spec for `interp` with `args` after its own, in `cwd`, with the run's environment (checked
/// by the command rules: with an allow-list the run's overlay may not change `PATH`/`LD_*`).
fn spec_for(
    ctx: &NodeCtx<'_>,
    interp: Interpreter,
    args: Vec<process::Arg>,
    cwd: Option<std::path::PathBuf>,
    extra_env: &[(&str, &str)],
) -> Result<process::Spec, NodeError> {
    let mut env = system::inherited_env(ctx);
    crate::engine::safety::check_command_env(&env, &ctx.options().safety)?;
    for (k, v) in extra_env {
        env.push(((*k).to_string(), Some((*v).to_string())));
    }
    let mut all: Vec<process::Arg> = interp.args.into_iter().map(process::Arg::Plain).collect();
    all.extend(args);
    Ok(process::Spec {
        program: interp.program,
        args: all,
        cwd,
        env,
        capture: true,
        stdin: None,
    })
}

/// Python's streams in UTF-8 whatever the locale (Windows consoles use a legacy code page).
const PYTHON_ENV: &[(&str, &str)] = &[("PYTHONIOENCODING", "utf-8"), ("PYTHONUTF8", "1")];

/// Run `code` in a Python interpreter with `variables`; outputs `result` (the script's `result`
/// variable), `output` (what it printed), `success`, `error`. A Python exception fails the node.
fn run_python_script(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let code = ctx.param_str("code");
    if code.trim().is_empty() {
        return Err(NodeError::value("code is empty"));
    }
    let variables = ctx.param_dict("variables")?;
    let timeout = timeout(ctx)?;
    let cwd = ctx.options().safety.work_dir.clone();
    let interp = interp::find(ctx, Kind::Python, None, cwd.as_deref())?;
    let scratch = ScratchDir::new()?;
    let result_path = scratch.path().join("result.json");
    let request = serde_json::json!({
        "code": code,
        "variables": Value::Dict(variables).to_json(),
        "result_path": result_path.to_string_lossy(),
    });
    let mut spec = spec_for(
        ctx,
        interp,
        vec![
            process::Arg::Plain("-c".into()),
            process::Arg::Plain(interp::PYTHON_BOOTSTRAP.into()),
        ],
        cwd,
        PYTHON_ENV,
    )?;
    spec.stdin = Some(Arc::from(request.to_string().into_bytes()));
    let done = system::execute(ctx, &spec, timeout)?;
    let report = read_python_report(ctx, &result_path, &done)?;
    let output = system::decode(&done.stdout);
    match report {
        PythonReport::Ok(result) => {
            ctx.set_output("result", result);
            ctx.set_output("output", Value::str(output));
            succeeded(ctx);
            Ok(Flow::Next)
        }
        PythonReport::Raised {
            kind,
            message,
            line,
        } => {
            let at = line.map_or_else(String::new, |n| format!(" at line {n} of the script"));
            Err(NodeError::new(
                kind.clone(),
                format!("the script raised {kind}{at}: {message}"),
            ))
        }
    }
}

/// What the Python bootstrap reported.
#[derive(Debug, PartialEq)]
enum PythonReport {
    /// The script ended; its `result`.
    Ok(Value),
    /// The script raised.
    Raised {
        kind: String,
        message: String,
        line: Option<i64>,
    },
}

/// Read the bootstrap's report file. No file means the interpreter died before the script ended
/// (a crash, `os._exit`, a bootstrap that could not start): an error with its exit code and the
/// last line of its stderr.
fn read_python_report(
    ctx: &NodeCtx<'_>,
    path: &std::path::Path,
    done: &process::Finished,
) -> Result<PythonReport, NodeError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Err(NodeError::new(
            "RuntimeError",
            format!(
                "the Python interpreter exited with code {} before the script finished{}",
                done.code,
                stderr_tail(done)
            ),
        ));
    };
    ctx.check_value_budget("the script's result", meta.len())?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| NodeError::new("OSError", format!("cannot read the script's result: {e}")))?;
    parse_python_report(&text)
}

fn parse_python_report(text: &str) -> Result<PythonReport, NodeError> {
    let bad = |why: &str| NodeError::new("RuntimeError", format!("bad script report: {why}"));
    let report = Value::parse_json(text).map_err(|e| bad(&e.to_string()))?;
    let Some(d) = report.as_dict() else {
        return Err(bad("not an object"));
    };
    if d.get("ok") == Some(&Value::Bool(true)) {
        return Ok(PythonReport::Ok(
            d.get("result").cloned().unwrap_or(Value::Null),
        ));
    }
    let text_of = |k: &str| d.get(k).map(Value::py_str).unwrap_or_default();
    Ok(PythonReport::Raised {
        kind: Some(text_of("type"))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_else(|| "RuntimeError".into()),
        message: text_of("message"),
        line: d.get("line").and_then(Value::as_i64),
    })
}

/// `": <last non-empty stderr line>"`, or nothing when stderr is empty.
fn stderr_tail(done: &process::Finished) -> String {
    let text = system::decode(&done.stderr);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map_or_else(String::new, |l| format!(": {}", truncate(l, 500)))
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(max_chars).collect();
    cut.push('…');
    cut
}

/// Set the outputs of a finished program; with `retry_on_nonzero` a non-zero exit fails the node.
fn program_outputs(ctx: &mut NodeCtx<'_>, done: &process::Finished) -> Result<Flow, NodeError> {
    if done.code != 0
        && ctx
            .workflow()
            .nodes
            .get(ctx.node_index())
            .is_some_and(|n| n.def.param("retry_on_nonzero").is_some())
        && ctx.param_bool("retry_on_nonzero")
    {
        return Err(NodeError::new(
            "RuntimeError",
            format!(
                "the script exited with code {} (retry_on_nonzero is set){}",
                done.code,
                stderr_tail(done)
            ),
        ));
    }
    ctx.set_output("stdout", Value::str(system::decode(&done.stdout)));
    ctx.set_output("stderr", Value::str(system::decode(&done.stderr)));
    ctx.set_output("return_code", Value::Int(done.code));
    ctx.set_output("success", Value::Bool(done.code == 0));
    Ok(Flow::Next)
}

/// Run a Python file: `python file_path args...` in `working_dir`; outputs `stdout`, `stderr`,
/// `return_code`, `success`. `python_path` (the parameter) overrides the robot's interpreter.
fn run_python_file(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let file = ctx.path_param("file_path")?;
    if !file.is_file() {
        return Err(NodeError::new(
            "FileNotFoundError",
            format!("Python file '{}' does not exist", file.display()),
        ));
    }
    let mut args = vec![process::Arg::Plain(file.to_string_lossy().into_owned())];
    args.extend(program_args(ctx, "args")?);
    let timeout = timeout(ctx)?;
    let cwd = system::working_dir(ctx)?;
    let chosen = Some(ctx.param_str("python_path")).filter(|p| !p.trim().is_empty());
    let interp = interp::find(ctx, Kind::Python, chosen, cwd.as_deref())?;
    let spec = spec_for(ctx, interp, args, cwd, PYTHON_ENV)?;
    let done = system::execute(ctx, &spec, timeout)?;
    program_outputs(ctx, &done)
}

/// Arguments given as a list (each one argument) or as text (split like a shell command line).
fn program_args(ctx: &NodeCtx<'_>, name: &str) -> Result<Vec<process::Arg>, NodeError> {
    let words: Vec<String> = match ctx.param(name) {
        Value::Null => Vec::new(),
        Value::List(items) => items.iter().map(Value::py_str).collect(),
        Value::Dict(_) => {
            return Err(NodeError::type_error(format!(
                "{name} must be a string or a list"
            )))
        }
        other => system::split_command_line(&other.py_str()).map_err(NodeError::value)?,
    };
    Ok(words.into_iter().map(process::Arg::Plain).collect())
}

/// Run a batch script: saved to a file and run by `cmd /c` (Windows) or `sh`; outputs `stdout`,
/// `stderr`, `return_code`, `success`.
fn run_batch_script(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let script = ctx.param_str("script");
    if script.trim().is_empty() {
        return Err(NodeError::value("script is empty"));
    }
    let timeout = timeout(ctx)?;
    let cwd = system::working_dir(ctx)?;
    let interp = interp::find(ctx, Kind::Shell, None, cwd.as_deref())?;
    let scratch = ScratchDir::new()?;
    let args = if cfg!(windows) {
        let body = format!(
            "@echo off\r\n{}\r\n",
            script.replace("\r\n", "\n").replace('\n', "\r\n")
        );
        let file = scratch.write("script.bat", body.as_bytes())?;
        vec![
            process::Arg::Plain("/c".into()),
            process::Arg::Raw(format!("\"{}\"", file.display())),
        ]
    } else {
        let file = scratch.write("script.sh", script.as_bytes())?;
        vec![process::Arg::Plain(file.to_string_lossy().into_owned())]
    };
    let spec = spec_for(ctx, interp, args, cwd, &[])?;
    let done = system::execute(ctx, &spec, timeout)?;
    program_outputs(ctx, &done)
}

/// The first blocked PowerShell command `script` names, as a whole word, if any.
fn powershell_blocked(script: &str) -> Option<&'static str> {
    let lower = script.to_ascii_lowercase();
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    POWERSHELL_BLOCKED.iter().copied().find(|word| {
        let w = word.to_ascii_lowercase();
        lower.match_indices(&w).any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + w.len()..].chars().next();
            !before.is_some_and(is_word) && !after.is_some_and(is_word)
        })
    })
}

/// The script file PowerShell runs: UTF-8 with a BOM (Windows PowerShell reads BOM-less files in
/// the legacy code page), writing UTF-8, optionally in constrained language mode.
fn powershell_file_text(script: &str, constrained: bool) -> String {
    let mut text =
        String::from("\u{feff}[Console]::OutputEncoding = [System.Text.Encoding]::UTF8\n");
    if constrained {
        text.push_str("$ExecutionContext.SessionState.LanguageMode = 'ConstrainedLanguage'\n");
    }
    text.push_str(script);
    text.push('\n');
    text
}

/// Run a PowerShell script; outputs `stdout`, `stderr`, `return_code`, `success`.
fn run_powershell(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let script = ctx.param_str("script");
    if script.trim().is_empty() {
        return Err(NodeError::value("script is empty"));
    }
    let policy_text = ctx.param_str("execution_policy");
    let Some(policy) = EXECUTION_POLICIES
        .iter()
        .find(|p| p.eq_ignore_ascii_case(policy_text.trim()))
    else {
        return Err(NodeError::value(format!(
            "unknown execution_policy '{policy_text}' (allowed: {})",
            EXECUTION_POLICIES.join(", ")
        )));
    };
    if !ctx.param_bool("allow_dangerous") {
        if let Some(word) = powershell_blocked(&script) {
            return Err(NodeError::new(
                "SecurityError",
                format!("the script uses '{word}', which is blocked for safety; set allow_dangerous to true to run it"),
            ));
        }
    }
    let timeout = timeout(ctx)?;
    let cwd = ctx.options().safety.work_dir.clone();
    let interp = interp::find(ctx, Kind::PowerShell, None, cwd.as_deref())?;
    let scratch = ScratchDir::new()?;
    let text = powershell_file_text(&script, ctx.param_bool("constrained_mode"));
    let file = scratch.write("script.ps1", text.as_bytes())?;
    let args = [
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        policy,
        "-File",
    ]
    .iter()
    .map(|a| process::Arg::Plain((*a).to_string()))
    .chain(std::iter::once(process::Arg::Plain(
        file.to_string_lossy().into_owned(),
    )))
    .collect();
    let spec = spec_for(ctx, interp, args, cwd, &[])?;
    let done = system::execute(ctx, &spec, timeout)?;
    program_outputs(ctx, &done)
}

/// Run JavaScript in Node.js with the global `inputData`; `result` is the stripped stdout. A
/// non-zero exit (an uncaught error) fails the node with the error line from stderr.
fn run_javascript(ctx: &mut NodeCtx<'_>) -> Result<Flow, NodeError> {
    let code = ctx.param_str("code");
    if code.trim().is_empty() {
        return Err(NodeError::value("code is empty"));
    }
    let input = ctx.param("input_data");
    let timeout = timeout(ctx)?;
    let cwd = ctx.options().safety.work_dir.clone();
    let chosen = (ctx.port_value("node_path").is_some() || ctx.has_config("node_path"))
        .then(|| ctx.param_str("node_path"))
        .filter(|p| !p.trim().is_empty());
    let interp = interp::find(ctx, Kind::Node, chosen, cwd.as_deref())?;
    let request = serde_json::json!({"code": code, "input": input.to_json()});
    let mut spec = spec_for(
        ctx,
        interp,
        vec![
            process::Arg::Plain("-e".into()),
            process::Arg::Plain(interp::NODE_BOOTSTRAP.into()),
        ],
        cwd,
        &[],
    )?;
    spec.stdin = Some(Arc::from(request.to_string().into_bytes()));
    let done = system::execute(ctx, &spec, timeout)?;
    if done.code != 0 {
        return Err(NodeError::new(
            "RuntimeError",
            format!(
                "the JavaScript exited with code {}{}",
                done.code,
                js_error_line(&system::decode(&done.stderr))
            ),
        ));
    }
    let out = system::decode(&done.stdout);
    ctx.set_output("result", Value::str(out.trim()));
    succeeded(ctx);
    Ok(Flow::Next)
}

/// `": TypeError: ..."` from Node's report of an uncaught error (the first line that looks like
/// `SomethingError: message`), else the last line of stderr.
fn js_error_line(stderr: &str) -> String {
    let looks_like_error = |l: &str| {
        l.split_once(':').is_some_and(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                && (name.ends_with("Error") || name.ends_with("Exception") || name == "Uncaught")
        })
    };
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|l| looks_like_error(l))
        .or_else(|| stderr.lines().map(str::trim).rev().find(|l| !l.is_empty()));
    line.map_or_else(String::new, |l| format!(": {}", truncate(l, 500)))
}

//! Interpreters for the script nodes: which program runs a script (robot config, node parameter,
//! platform defaults), the safety checks on it, the scratch directory a script file lives in, and
//! the small bootstrap programs that carry a script and its data in and its result out.
//!
//! Invariants:
//! - The interpreter is the program the command rules see: `run_command_enabled = false` refuses
//!   every script node, and with `run_command_allowlist` set the interpreter's file name (after it
//!   was resolved to an absolute path) must be listed.
//! - A script's data (variables, `input_data`) never travels on the command line: the request is
//!   one JSON document on the interpreter's stdin, so its size is bounded by memory only and it
//!   does not show in process listings.
//! - Scratch directories are owner-only (0700 on Unix), live under the system temp directory and
//!   are removed when the node ends, however it ends.

use crate::engine::node::{NodeCtx, NodeError};
use crate::engine::safety;
use std::path::{Path, PathBuf};

/// Which interpreter a node needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// CPython 3 (config `python_path`).
    Python,
    /// Node.js (config `node_path`).
    Node,
    /// Windows PowerShell or PowerShell 7.
    PowerShell,
    /// `cmd` on Windows, `sh` elsewhere.
    Shell,
}

/// A program to start and the arguments that come before the script's own.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Interpreter {
    /// The program (absolute when an allow-list resolved it).
    pub program: String,
    /// Leading arguments (`-3` for the `py` launcher).
    pub args: Vec<String>,
}

/// The programs tried, in order, when nothing is configured.
fn default_candidates(kind: Kind) -> Vec<(String, Vec<String>)> {
    let one = |p: &str| (p.to_string(), Vec::new());
    match kind {
        Kind::Python if cfg!(windows) => vec![("py".into(), vec!["-3".into()]), one("python")],
        Kind::Python => vec![one("python3"), one("python")],
        Kind::Node => vec![one("node")],
        Kind::PowerShell => vec![one("powershell.exe"), one("pwsh")],
        Kind::Shell if cfg!(windows) => {
            vec![one(
                &std::env::var("COMSPEC").unwrap_or_else(|_| "cmd.exe".into())
            )]
        }
        Kind::Shell => vec![one("/bin/sh"), one("sh")],
    }
}

/// The configuration key that names this interpreter, if there is one.
fn config_key(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Python => Some("python_path"),
        Kind::Node => Some("node_path"),
        Kind::PowerShell | Kind::Shell => None,
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Python => "Python interpreter",
        Kind::Node => "Node.js interpreter",
        Kind::PowerShell => "PowerShell",
        Kind::Shell => "shell",
    }
}

/// Pick the interpreter for `kind`: `chosen` (a node parameter such as RunPythonFile's
/// `python_path`) wins, then the robot's configuration, then the platform defaults, the first
/// one found on `PATH`. Then the command rules are applied to it.
pub(super) fn find(
    ctx: &NodeCtx<'_>,
    kind: Kind,
    chosen: Option<String>,
    cwd: Option<&Path>,
) -> Result<Interpreter, NodeError> {
    let rules = &ctx.options().safety;
    let configured = match kind {
        Kind::Python => rules.python_path.clone(),
        Kind::Node => rules.node_path.clone(),
        Kind::PowerShell | Kind::Shell => None,
    };
    let explicit = chosen
        .map(|p| (p, "the node's parameter"))
        .or_else(|| configured.map(|p| (p, "the robot configuration")));
    let candidates = match &explicit {
        Some((program, _)) => vec![(program.trim().to_string(), Vec::new())],
        None => default_candidates(kind),
    };
    let found = candidates
        .iter()
        .find(|(program, _)| safety::resolve_program(program, cwd).is_some());
    let Some((program, args)) = found else {
        return Err(not_found(kind, &candidates, explicit.map(|(_, from)| from)));
    };
    let program = safety::check_command(program, cwd, rules).map_err(|mut e| {
        e.message
            .push_str(" (script nodes start their interpreter as a command)");
        e
    })?;
    Ok(Interpreter {
        program,
        args: args.clone(),
    })
}

fn not_found(kind: Kind, candidates: &[(String, Vec<String>)], from: Option<&str>) -> NodeError {
    let names: Vec<String> = candidates
        .iter()
        .map(|(p, a)| {
            let mut words = vec![p.clone()];
            words.extend(a.iter().cloned());
            words.join(" ")
        })
        .collect();
    let what = describe(kind);
    let hint = match (config_key(kind), from) {
        (Some(key), Some(from)) => format!(
            "check {key} (set in {from}): it must name an installed interpreter, by path or by name on PATH"
        ),
        (Some(key), None) => format!(
            "install it, or set {key} in the robot configuration to its path"
        ),
        (None, _) => "install it (it must be on PATH)".to_string(),
    };
    NodeError::new(
        "FileNotFoundError",
        format!("{what} not found (tried {}); {hint}", names.join(", ")),
    )
}

/// An owner-only scratch directory, removed on drop.
pub(super) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Create a new directory under the system temp directory.
    pub(super) fn new() -> Result<ScratchDir, NodeError> {
        let base = std::env::temp_dir();
        let mut last = None;
        for _ in 0..8 {
            let path = base.join(format!(
                "casare-script-{}-{:016x}",
                std::process::id(),
                fastrand::u64(..)
            ));
            match crate::private_fs::create_dir_all(&path) {
                Ok(()) if path.is_dir() => return Ok(ScratchDir { path }),
                Ok(()) => {}
                Err(e) => last = Some(e),
            }
        }
        Err(NodeError::new(
            "OSError",
            format!(
                "cannot create a scratch directory for the script in '{}': {}",
                base.display(),
                last.map_or_else(|| "name collision".to_string(), |e| e.to_string())
            ),
        ))
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Write `bytes` to a new owner-only file `name` in the directory.
    pub(super) fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, NodeError> {
        let path = self.path.join(name);
        crate::private_fs::write(&path, bytes).map_err(|e| {
            NodeError::new(
                "OSError",
                format!("cannot write the script file '{}': {e}", path.display()),
            )
        })?;
        Ok(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The Python bootstrap (`python -c`). It reads the request `{code, variables, result_path}` from
/// stdin, runs `code` with full builtins in a fresh namespace holding `variables` and, for each
/// key that is an identifier, that name; then writes `{"ok": true, "result": ...}` or
/// `{"ok": false, "type", "message", "line"}` as UTF-8 JSON to `result_path`. Values JSON cannot
/// hold are converted with `str()`; `NaN` and infinities are refused. `sys.exit(0)` (or `None`)
/// ends the script normally; another exit code is an error.
pub(super) const PYTHON_BOOTSTRAP: &str = r#"import sys, os, json, traceback
def _casare_run():
    req = json.loads(sys.stdin.buffer.read().decode('utf-8'))
    sys.stdin.close()
    sys.stdin = open(os.devnull, 'r')
    variables = req['variables']
    ns = {'__name__': '__main__', '__builtins__': __builtins__}
    for k, v in variables.items():
        if k.isidentifier():
            ns[k] = v
    ns['variables'] = variables
    ns['result'] = None
    def failure(e, line):
        return {'ok': False, 'type': type(e).__name__, 'message': str(e), 'line': line}
    try:
        exec(compile(req['code'], '<script>', 'exec'), ns)
        report = {'ok': True, 'result': ns.get('result')}
    except SystemExit as e:
        if e.code is None or e.code == 0:
            report = {'ok': True, 'result': ns.get('result')}
        else:
            report = failure(e, None)
            report['message'] = 'the script exited with code %s' % (e.code,)
    except SyntaxError as e:
        report = failure(e, e.lineno)
        report['message'] = e.msg
    except BaseException as e:
        frames = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == '<script>']
        report = failure(e, frames[-1] if frames else None)
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    try:
        text = json.dumps(report, default=str, allow_nan=False, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError) as e:
        text = json.dumps({'ok': False, 'type': 'ValueError', 'line': None,
                           'message': 'the result cannot be returned as JSON: %s' % (e,)})
    with open(req['result_path'], 'w', encoding='utf-8') as f:
        f.write(text)
_casare_run()
"#;

/// The Node.js bootstrap (`node -e`). It reads the request `{code, input}` from stdin, defines the
/// global `inputData`, and runs `code` as a CommonJS module whose directory is the working
/// directory (so `require` finds its packages there).
pub(super) const NODE_BOOTSTRAP: &str = r#"const fs = require('fs'), path = require('path'), Module = require('module');
const req = JSON.parse(fs.readFileSync(0, 'utf8'));
globalThis.inputData = req.input;
const file = path.join(process.cwd(), '[script].js');
const m = new Module(file, null);
m.filename = file;
m.paths = Module._nodeModulePaths(process.cwd());
m._compile(req.code, file);
"#;

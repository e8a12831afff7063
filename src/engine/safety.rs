//! Safety rules for nodes that touch the machine: file paths, network targets, commands.
//!
//! Paths: NUL bytes, `..` components and Windows device names (`CON`, `NUL`, `COM1`, ... with or
//! without an extension) are refused everywhere; environment references (`%VAR%`, `$VAR`,
//! `${VAR}`) are expanded as upstream's `os.path.expandvars`; relative paths resolve against the
//! job's working directory; with `allowed_paths` set, the resolved path must lie under one of them
//! (symlinks resolved where the path exists). On non-Windows hosts `\` is read as a separator, so
//! workflows written on Windows with relative paths run unchanged.
//!
//! Network: HTTP nodes may not reach any special-purpose address (the IANA IPv4 and IPv6
//! special-purpose registries: loopback, private, shared, link-local, documentation,
//! benchmarking, unique-local, reserved, multicast, ...), nor the IPv4-mapped, IPv4-compatible,
//! NAT64 or 6to4 form of a blocked IPv4 address, unless `allow_private_network` is set. Every address a host name resolves
//! to is checked (a name that resolves to any private address is refused).
//!
//! Environment: the robot's own secrets ([`ROBOT_SECRET_ENV`], and any variable whose value holds
//! a configured key) are hidden from workflows: not expanded in paths, not found by
//! EnvironmentVariableNode, not inherited by RunCommand's programs. File nodes refuse
//! `/proc/<pid|self>/{environ,mem,cmdline}` (also through symlinks and `task/<tid>/`).
//!
//! Commands: RunCommand can be disabled, or limited to an allow-list of program names. With an
//! allow-list the program is resolved to an absolute path first (name through `PATH`, relative
//! path against the working directory), the name of that file is checked and that path is run;
//! the workflow may then not change `PATH` or set `LD_*` / `DYLD_*` for the program.
//!
//! Every refusal says what was refused and by which rule; the runner adds the node id and type.

use super::node::NodeError;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};

/// The safety switches of a run (from the robot configuration).
#[derive(Clone, Debug, Default)]
pub struct Safety {
    /// Let HTTP nodes reach loopback and private addresses.
    pub allow_private_network: bool,
    /// When non-empty, file nodes may only touch paths under these roots.
    pub allowed_paths: Vec<PathBuf>,
    /// When false, RunCommand nodes fail.
    pub run_command_disabled: bool,
    /// When non-empty, RunCommand may only start these programs (file name, case-insensitive,
    /// with or without `.exe`).
    pub run_command_allowlist: Vec<String>,
    /// Where relative paths resolve (default: the process's current directory).
    pub work_dir: Option<PathBuf>,
    /// The Python interpreter of the Python script nodes (config `python_path`; `None`: search
    /// `python3` then `python`, on Windows `py -3` then `python`).
    pub python_path: Option<String>,
    /// The Node.js interpreter of `RunJavaScriptNode` (config `node_path`; `None`: `node`).
    pub node_path: Option<String>,
    /// When non-empty, `ProcessKillNode` may only kill processes with these names (config
    /// `process_kill_allowlist`; case-insensitive, with or without `.exe`).
    pub process_kill_allowlist: Vec<String>,
}

const DEVICE_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "CONIN$",
    "CONOUT$",
];

fn refuse(what: &str, value: &str, rule: &str) -> NodeError {
    NodeError::new(
        "PermissionError",
        format!("refused {what} '{value}': {rule}"),
    )
}

/// Expand `%VAR%`, `$VAR` and `${VAR}` from the process environment; unknown names stay as they are.
pub fn expand_vars(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let Some(end) = text[i + 1..].find('%') {
                let name = &text[i + 1..i + 1 + end];
                if !name.is_empty() && name.bytes().all(is_name) {
                    if let Some(v) = env(name) {
                        out.push_str(&v);
                        i += end + 2;
                        continue;
                    }
                }
            }
        } else if b == b'$' {
            let (name, len) = if bytes.get(i + 1) == Some(&b'{') {
                match text[i + 2..].find('}') {
                    Some(end) => (&text[i + 2..i + 2 + end], end + 3),
                    None => ("", 0),
                }
            } else {
                let n = bytes[i + 1..].iter().take_while(|b| is_name(**b)).count();
                (&text[i + 1..i + 1 + n], n + 1)
            };
            if !name.is_empty() && name.bytes().all(is_name) {
                if let Some(v) = env(name) {
                    out.push_str(&v);
                    i += len;
                    continue;
                }
            }
        }
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    out
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !hidden_env(name, value))
}

/// The robot's own secret environment variables (its configuration keys).
pub const ROBOT_SECRET_ENV: &[&str] = &["CASARE_API_KEY", "CASARE_SUPABASE_KEY", "SUPABASE_KEY"];

/// True when workflows may not see the robot's environment variable `name`: it is one of
/// [`ROBOT_SECRET_ENV`], or its value holds one of the robot's secrets (`crate::redact`).
pub fn hidden_env(name: &str, value: &str) -> bool {
    ROBOT_SECRET_ENV
        .iter()
        .any(|secret| secret.eq_ignore_ascii_case(name))
        || crate::redact::holds_secret(value)
}

/// The names of the robot's environment variables workflows may not see ([`hidden_env`]):
/// EnvironmentVariableNode does not find them, path expansion does not expand them, and the
/// programs RunCommand starts do not inherit them.
pub fn hidden_env_names() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.to_string_lossy().into_owned();
            hidden_env(&name, &value.to_string_lossy()).then_some(name)
        })
        .collect()
}

/// The per-process files under `/proc` no file node may touch: `environ` (the robot's
/// environment, secrets included), `mem` (its memory) and `cmdline` (other programs' arguments
/// may carry passwords), for every process (`self`, a pid, a thread under `task/`).
const PROC_PRIVATE_FILES: &[&str] = &["environ", "mem", "cmdline"];

fn is_proc_private(path: &Path) -> bool {
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir)
        || parts.next() != Some(Component::Normal("proc".as_ref()))
    {
        return false;
    }
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| PROC_PRIVATE_FILES.contains(&name))
}

/// Check and resolve a path given to a file node.
pub fn check_path(raw: &str, safety: &Safety) -> Result<PathBuf, NodeError> {
    check_path_with_env(raw, safety, &process_env)
}

/// [`check_path`] with an injected environment (for tests).
pub fn check_path_with_env(
    raw: &str,
    safety: &Safety,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<PathBuf, NodeError> {
    if raw.trim().is_empty() {
        return Err(NodeError::value("the path is empty"));
    }
    if raw.contains('\0') {
        return Err(refuse(
            "path",
            &raw.replace('\0', "\\0"),
            "it contains a NUL byte",
        ));
    }
    let expanded = expand_vars(raw.trim(), env);
    let text = if cfg!(windows) {
        expanded.clone()
    } else {
        expanded.replace('\\', "/")
    };
    let path = Path::new(&text);
    for comp in path.components() {
        match comp {
            Component::ParentDir => {
                return Err(refuse(
                    "path",
                    raw,
                    "'..' (parent directory) components are not allowed",
                ))
            }
            Component::Normal(part) => {
                let part = part.to_string_lossy();
                let stem = part
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .trim_end()
                    .to_ascii_uppercase();
                if DEVICE_NAMES.contains(&stem.as_str()) {
                    return Err(refuse(
                        "path",
                        raw,
                        &format!("'{part}' is a Windows device name"),
                    ));
                }
            }
            _ => {}
        }
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let base = match &safety.work_dir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir()
                .map_err(|e| NodeError::new("OSError", format!("no current directory: {e}")))?,
        };
        base.join(path)
    };
    // Where the path really leads: every symlink followed, dangling ones included (a write
    // through a dangling link creates its target).
    let resolved = resolve_target(&absolute);
    if cfg!(unix) && (is_proc_private(&absolute) || is_proc_private(&resolved)) {
        return Err(refuse(
            "path",
            raw,
            "a process's environ, mem and cmdline files under /proc are not readable by workflows",
        ));
    }
    if !safety.allowed_paths.is_empty() {
        let inside = safety.allowed_paths.iter().any(|root| {
            let root = resolve_target(root);
            resolved.starts_with(&root)
        });
        if !inside {
            let roots: Vec<String> = safety
                .allowed_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(refuse(
                "path",
                raw,
                &format!(
                    "it is outside the allowed paths ({}); add its folder to allowed_paths in the robot configuration to allow it",
                    roots.join(", ")
                ),
            ));
        }
    }
    Ok(absolute)
}

/// The file `path` leads to: symlinks resolved component by component, dangling ones too (a
/// write through one creates its target), then the longest existing prefix canonicalized (which
/// also resolves Windows junctions). Gives up following after 40 links (a loop); what is left is
/// then kept as written.
pub fn resolve_target(path: &Path) -> PathBuf {
    const MAX_LINKS: usize = 40;
    let mut todo: Vec<PathBuf> = path
        .components()
        .rev()
        .map(|c| PathBuf::from(c.as_os_str()))
        .collect();
    let mut out = PathBuf::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.components().next() {
            Some(Component::Prefix(_)) | Some(Component::RootDir) => out.push(&part),
            Some(Component::CurDir) | None => {}
            Some(Component::ParentDir) => {
                out.pop();
            }
            Some(Component::Normal(name)) => {
                let candidate = out.join(name);
                let is_link =
                    std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
                match std::fs::read_link(&candidate) {
                    Ok(target) if is_link && links < MAX_LINKS => {
                        links += 1;
                        if target.is_absolute() {
                            out = PathBuf::new();
                        }
                        todo.extend(
                            target
                                .components()
                                .rev()
                                .map(|c| PathBuf::from(c.as_os_str())),
                        );
                    }
                    _ => out = candidate,
                }
            }
        }
    }
    resolve_existing_prefix(&out)
}

/// Canonicalize the longest existing prefix of `path` (resolving symlinks), keep the rest as is.
fn resolve_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(canon) = existing.canonicalize() {
            let mut out = canon;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|f| f.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// IPv4 blocks HTTP nodes may not reach by default: every entry of the IANA IPv4
/// Special-Purpose Address Registry, plus multicast and the reserved 240/4.
const BLOCKED_V4: &[([u8; 4], u8)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 31, 196, 0], 24), // AS112-v4
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // direct delegation AS112
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, includes 255.255.255.255 (broadcast)
];

/// IPv6 blocks HTTP nodes may not reach by default: the IANA IPv6 Special-Purpose Address
/// Registry (with its whole IETF protocol assignments block), site-local and multicast. The
/// forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address
/// in [`is_private`] before this list.
const BLOCKED_V6: &[([u16; 8], u8)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128),         // unspecified
    ([0, 0, 0, 0, 0, 0, 0, 1], 128),         // loopback
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),  // local-use NAT64
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64),      // discard-only
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),     // IETF protocol assignments (Teredo, ...)
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),     // documentation
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),     // segment routing SIDs
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),      // unique-local
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),     // link-local
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),     // site-local (deprecated)
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),      // multicast
];

fn in_prefix(addr: u128, net: u128, len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(len);
    len == 0 || (shift < 128 && (addr >> shift) == (net >> shift))
}

/// The IPv4 address an IPv6 address carries: IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`, except `::` and `::1`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4
/// (`2002:aabb:ccdd::`).
fn embedded_v4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let bits = u128::from(v6);
    let low = std::net::Ipv4Addr::from(bits as u32);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    if bits >> 32 == 0 && bits > 1 {
        return Some(low);
    }
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low);
    }
    if bits >> 112 == 0x2002 {
        return Some(std::net::Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// True for addresses HTTP nodes may not reach by default (see [`BLOCKED_V4`], [`BLOCKED_V6`]).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let addr = u128::from(u32::from(v4));
            BLOCKED_V4
                .iter()
                .any(|(net, len)| in_prefix(addr, u128::from(u32::from_be_bytes(*net)), *len, 32))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_private(IpAddr::V4(v4));
            }
            let addr = u128::from(v6);
            BLOCKED_V6.iter().any(|(net, len)| {
                in_prefix(addr, u128::from(std::net::Ipv6Addr::from(*net)), *len, 128)
            })
        }
    }
}

/// Check that `host:port` may be contacted; returns the resolved addresses.
pub fn check_host(
    host: &str,
    port: u16,
    safety: &Safety,
) -> Result<Vec<std::net::SocketAddr>, NodeError> {
    let host_trim = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<std::net::SocketAddr> = (host_trim, port)
        .to_socket_addrs()
        .map_err(|e| {
            NodeError::new(
                "ConnectionError",
                format!("cannot resolve host '{host}': {e}"),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(NodeError::new(
            "ConnectionError",
            format!("host '{host}' resolves to no address"),
        ));
    }
    if !safety.allow_private_network {
        if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
            return Err(refuse(
                "address",
                &format!("{host} ({})", a.ip()),
                "loopback and private networks are blocked (set allow_private_network to allow them)",
            ));
        }
    }
    Ok(addrs)
}

/// Check that RunCommand may start `program`; returns the program to start.
///
/// With `run_command_allowlist` set, the program is first resolved to an absolute path (a bare
/// name through the robot's `PATH`, a relative path against `cwd`), the allow-list is checked on
/// the file name of that path, and that absolute path is what gets started: the name checked is
/// the program run, whatever quoting or separators the command used. Without an allow-list the
/// program is returned unchanged.
pub fn check_command(
    program: &str,
    cwd: Option<&Path>,
    safety: &Safety,
) -> Result<String, NodeError> {
    if safety.run_command_disabled {
        return Err(refuse(
            "command",
            program,
            "RunCommand is disabled (run_command_enabled is false)",
        ));
    }
    if safety.run_command_allowlist.is_empty() {
        return Ok(program.to_string());
    }
    let Some(resolved) = resolve_program(program, cwd) else {
        return Err(refuse(
            "command",
            program,
            "no such program (with run_command_allowlist set, a program must resolve to an existing file, by name through PATH or by path)",
        ));
    };
    let name = resolved
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bare = name.strip_suffix(".exe").unwrap_or(&name).to_string();
    let allowed = safety.run_command_allowlist.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == name || a.strip_suffix(".exe").unwrap_or(&a) == bare
    });
    if !allowed {
        return Err(refuse(
            "command",
            program,
            &format!(
                "'{}' is not in run_command_allowlist ({})",
                resolved.display(),
                safety.run_command_allowlist.join(", ")
            ),
        ));
    }
    Ok(resolved.to_string_lossy().into_owned())
}

/// Check the environment changes RunCommand would make. With `run_command_allowlist` set, a
/// workflow may not change `PATH` nor set `LD_*` / `DYLD_*` variables: they decide which code a
/// started program loads, which would defeat the allow-list.
pub fn check_command_env(
    env: &[(String, Option<String>)],
    safety: &Safety,
) -> Result<(), NodeError> {
    if safety.run_command_allowlist.is_empty() {
        return Ok(());
    }
    for (name, _) in env {
        let upper = name.to_ascii_uppercase();
        if upper == "PATH" || upper.starts_with("LD_") || upper.starts_with("DYLD_") {
            return Err(refuse(
                "environment variable",
                name,
                "with run_command_allowlist set, RunCommand may not change PATH or LD_* / DYLD_* variables",
            ));
        }
    }
    Ok(())
}

/// The absolute path `program` starts: a path (it has a separator) against `cwd`, a bare name
/// through `PATH` (on Windows also with `.exe`, `.com`, `.bat`, `.cmd`). `None` when no such file.
pub(crate) fn resolve_program(program: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    let has_separator = if cfg!(windows) {
        program.contains(['/', '\\', ':'])
    } else {
        program.contains('/')
    };
    let exts: &[&str] = if cfg!(windows) && Path::new(program).extension().is_none() {
        &["", ".exe", ".com", ".bat", ".cmd"]
    } else {
        &[""]
    };
    let find = |base: PathBuf| -> Option<PathBuf> {
        exts.iter().find_map(|ext| {
            let mut candidate = base.clone().into_os_string();
            candidate.push(ext);
            let candidate = PathBuf::from(candidate);
            is_program_file(&candidate).then_some(candidate)
        })
    };
    if has_separator {
        let path = Path::new(program);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            let base = match cwd {
                Some(dir) => dir.to_path_buf(),
                None => std::env::current_dir().ok()?,
            };
            base.join(path)
        };
        return find(absolute);
    }
    if program.is_empty() {
        return None;
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .filter(|dir| dir.is_absolute())
        .find_map(|dir| find(dir.join(program)))
}

fn is_program_file(path: &Path) -> bool {
    match std::fs::metadata(path) {
        #[cfg(unix)]
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            meta.is_file() && meta.permissions().mode() & 0o111 != 0
        }
        #[cfg(not(unix))]
        Ok(meta) => meta.is_file(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DATA" => Some("/srv/data".into()),
            "USER" => Some("bot".into()),
            _ => None,
        }
    }

    fn check(raw: &str, safety: &Safety) -> Result<PathBuf, String> {
        check_path_with_env(raw, safety, &env).map_err(|e| e.message)
    }

    #[test]
    fn refusals_name_the_path_and_the_rule() {
        let s = Safety {
            work_dir: Some("/work".into()),
            ..Safety::default()
        };
        assert_eq!(
            check("../etc/passwd", &s).unwrap_err(),
            "refused path '../etc/passwd': '..' (parent directory) components are not allowed"
        );
        assert_eq!(
            check("a\\..\\b", &s).unwrap_err(),
            "refused path 'a\\..\\b': '..' (parent directory) components are not allowed"
        );
        assert_eq!(
            check("out/CON.txt", &s).unwrap_err(),
            "refused path 'out/CON.txt': 'CON.txt' is a Windows device name"
        );
        assert_eq!(
            check("nul", &s).unwrap_err(),
            "refused path 'nul': 'nul' is a Windows device name"
        );
        assert_eq!(
            check("a\0b", &s).unwrap_err(),
            "refused path 'a\\0b': it contains a NUL byte"
        );
        assert_eq!(check("  ", &s).unwrap_err(), "the path is empty");
        assert!(check("console.log", &s).is_ok(), "CON only as a whole stem");
    }

    #[cfg(unix)]
    #[test]
    fn process_private_files_under_proc_are_refused() {
        let s = Safety::default();
        for path in [
            "/proc/self/environ",
            "/proc/1/environ",
            "/proc/self/task/1/environ",
            "/proc/self/mem",
            "/proc/self/cmdline",
            "/proc//self/environ",
        ] {
            let err = check(path, &s).unwrap_err();
            assert!(
                err.contains("under /proc are not readable by workflows"),
                "{path}: {err}"
            );
        }
        assert!(check("/proc/self/status", &s).is_ok());
        assert!(check("/data/proc/environ", &s).is_ok());
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc/self/environ", dir.path().join("env")).unwrap();
        let via = dir.path().join("env");
        let err = check(via.to_str().unwrap(), &s).unwrap_err();
        assert!(err.contains("under /proc"), "{err}");
    }

    #[test]
    fn the_robots_secret_variables_are_hidden() {
        crate::redact::register_secrets(["safety-test-secret-value"]);
        assert!(hidden_env("CASARE_API_KEY", "x"));
        assert!(hidden_env("supabase_key", "x"));
        assert!(hidden_env("MY_COPY", "Bearer safety-test-secret-value"));
        assert!(!hidden_env("HOME", "/home/u"));
    }

    #[test]
    fn expansion_and_resolution() {
        let s = Safety {
            work_dir: Some("/work".into()),
            ..Safety::default()
        };
        assert_eq!(
            check("$DATA/in.csv", &s).unwrap(),
            PathBuf::from("/srv/data/in.csv")
        );
        assert_eq!(check("%DATA%/x", &s).unwrap(), PathBuf::from("/srv/data/x"));
        assert_eq!(
            check("${USER}.txt", &s).unwrap(),
            PathBuf::from("/work/bot.txt")
        );
        assert_eq!(
            check("$NOPE/x", &s).unwrap(),
            PathBuf::from("/work/$NOPE/x")
        );
        if !cfg!(windows) {
            assert_eq!(
                check("reports\\today.txt", &s).unwrap(),
                PathBuf::from("/work/reports/today.txt")
            );
        }
    }

    #[test]
    fn allowed_roots_confine_paths_even_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        let s = Safety {
            allowed_paths: vec![inside.clone()],
            work_dir: Some(inside.clone()),
            ..Safety::default()
        };
        assert!(check("new/file.txt", &s).is_ok());
        let outside = dir.path().join("outside.txt");
        let err = check(outside.to_str().unwrap(), &s).unwrap_err();
        assert!(err.contains("it is outside the allowed paths"), "{err}");
        assert!(
            err.ends_with("add its folder to allowed_paths in the robot configuration to allow it"),
            "{err}"
        );
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), inside.join("escape")).unwrap();
            let err = check("escape/outside.txt", &s).unwrap_err();
            assert!(err.contains("outside the allowed paths"), "{err}");
            // Dangling links: to a missing file outside, through a chain, relative.
            let gone = dir.path().join("gone").join("new.txt");
            std::os::unix::fs::symlink(&gone, inside.join("dangling")).unwrap();
            std::os::unix::fs::symlink("dangling", inside.join("chain")).unwrap();
            std::os::unix::fs::symlink("../missing.txt", inside.join("rel")).unwrap();
            for name in ["dangling", "chain", "rel", "chain/x"] {
                let err = check(name, &s).unwrap_err();
                assert!(err.contains("outside the allowed paths"), "{name}: {err}");
            }
            // A link loop is kept as written (and stays inside).
            std::os::unix::fs::symlink("loop", inside.join("loop")).unwrap();
            assert!(check("loop", &s).is_ok());
            // A dangling link that stays inside is fine.
            std::os::unix::fs::symlink("later.txt", inside.join("soon")).unwrap();
            assert!(check("soon", &s).is_ok());
        }
    }

    #[test]
    fn private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.19.255.255",
            "192.0.0.8",
            "240.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::",
            "64:ff9b::127.0.0.1",
            "64:ff9b::c0a8:101",
            "64:ff9b:1::8.8.8.8",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:808:808::",
            "192.0.3.1",
            "198.20.0.1",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
        let err = check_host("127.0.0.1", 80, &Safety::default()).unwrap_err();
        assert!(
            err.message
                .contains("loopback and private networks are blocked"),
            "{}",
            err.message
        );
        let allowed = Safety {
            allow_private_network: true,
            ..Safety::default()
        };
        assert!(check_host("127.0.0.1", 80, &allowed).is_ok());
        assert!(check_host("localhost", 80, &Safety::default()).is_err());
    }

    #[test]
    fn command_rules() {
        assert_eq!(
            check_command("echo", None, &Safety::default()).unwrap(),
            "echo"
        );
        let off = Safety {
            run_command_disabled: true,
            ..Safety::default()
        };
        assert!(check_command("echo", None, &off)
            .unwrap_err()
            .message
            .contains("RunCommand is disabled"));
    }

    #[cfg(unix)]
    #[test]
    fn the_allow_list_checks_the_resolved_program() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for name in ["git", "h", "touch"] {
            let path = dir.path().join(name);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let list = Safety {
            run_command_allowlist: vec!["git".into(), "python.exe".into(), "h".into()],
            ..Safety::default()
        };
        let git = dir.path().join("git");
        let cwd = Some(dir.path());
        assert_eq!(
            check_command(git.to_str().unwrap(), None, &list).unwrap(),
            git.to_str().unwrap()
        );
        assert_eq!(
            check_command("./git", cwd, &list).unwrap(),
            dir.path().join("./git").to_str().unwrap()
        );
        // A backslash is no separator here: "touc\h" is a file of that name, which is missing.
        let sneaky = format!("{}/touc\\h", dir.path().display());
        let err = check_command(&sneaky, None, &list).unwrap_err().message;
        assert!(err.contains("no such program"), "{err}");
        let touch = dir.path().join("touch");
        let err = check_command(touch.to_str().unwrap(), None, &list)
            .unwrap_err()
            .message;
        assert!(
            err.ends_with("is not in run_command_allowlist (git, python.exe, h)"),
            "{err}"
        );
        let err = check_command("no-such-program-here", None, &list)
            .unwrap_err()
            .message;
        assert!(err.contains("no such program"), "{err}");
        // Found through PATH: the absolute path is what runs.
        let sh = check_command(
            "sh",
            None,
            &Safety {
                run_command_allowlist: vec!["sh".into()],
                ..Safety::default()
            },
        )
        .unwrap();
        assert!(Path::new(&sh).is_absolute(), "{sh}");
    }

    #[test]
    fn the_allow_list_refuses_loader_and_path_changes() {
        let list = Safety {
            run_command_allowlist: vec!["git".into()],
            ..Safety::default()
        };
        let env = |name: &str| vec![(name.to_string(), Some("x".to_string()))];
        for name in [
            "PATH",
            "Path",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
        ] {
            let err = check_command_env(&env(name), &list).unwrap_err().message;
            assert_eq!(
                err,
                format!("refused environment variable '{name}': with run_command_allowlist set, RunCommand may not change PATH or LD_* / DYLD_* variables")
            );
            assert!(check_command_env(&env(name), &Safety::default()).is_ok());
        }
        assert!(check_command_env(&env("GIT_DIR"), &list).is_ok());
    }
}

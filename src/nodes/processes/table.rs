//! The machine's process table and the signals the process nodes send, per platform: `/proc` on
//! Linux, Toolhelp snapshots and `TerminateProcess` on Windows. Other platforms list nothing and
//! kill nothing (the nodes say so).
//!
//! A process is identified by its pid *and* its start time ([`Proc::started`]): before a signal is
//! sent the start time is read again, so a pid reused since the listing is never hit.

/// One process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Proc {
    /// Process id.
    pub pid: u32,
    /// Parent process id (0 when unknown).
    pub ppid: u32,
    /// Executable name (`sleep`, `notepad.exe`).
    pub name: String,
    /// Scheduler state (`running`, `sleeping`, `zombie`, ...).
    pub status: &'static str,
    /// Command line, when readable.
    pub cmdline: Option<Vec<String>>,
    /// Owner's user name, when known.
    pub username: Option<String>,
    /// Resident memory in bytes, when readable.
    pub memory_bytes: Option<u64>,
    /// Start time in seconds since the Unix epoch, when known.
    pub create_time: Option<f64>,
    /// The platform's start stamp (identity together with the pid).
    pub started: u64,
}

/// What happened to one kill request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The signal was delivered.
    Delivered,
    /// The process was already gone (or its pid now names another process).
    Gone,
    /// The system refused (another user's process).
    Denied,
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Proc, Sent};
    use std::collections::HashMap;

    fn clock_ticks() -> u64 {
        // SAFETY: sysconf only reads a configuration value.
        let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if t > 0 {
            t as u64
        } else {
            100
        }
    }

    fn page_size() -> u64 {
        // SAFETY: sysconf only reads a configuration value.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if p > 0 {
            p as u64
        } else {
            4096
        }
    }

    fn boot_time() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    fn users() -> HashMap<u32, String> {
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((uid, name.to_string()))
            })
            .collect()
    }

    /// `(name in parentheses, fields after it)` of `/proc/<pid>/stat`.
    fn stat_fields(pid: u32) -> Option<(String, Vec<String>)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let name = stat.get(open + 1..close)?.to_string();
        let rest = stat.get(close + 1..)?;
        Some((name, rest.split_whitespace().map(str::to_string).collect()))
    }

    /// The start stamp (clock ticks after boot) of `pid`, if it is alive and not a zombie.
    pub(crate) fn started(pid: u32) -> Option<u64> {
        let (_, f) = stat_fields(pid)?;
        if matches!(f.first().map(String::as_str), Some("Z" | "X")) {
            return None;
        }
        f.get(19)?.parse().ok()
    }

    fn status_text(state: &str) -> &'static str {
        match state {
            "R" => "running",
            "S" => "sleeping",
            "D" => "disk-sleep",
            "Z" => "zombie",
            "T" => "stopped",
            "t" => "tracing-stop",
            "X" | "x" => "dead",
            "I" => "idle",
            "P" => "parked",
            _ => "unknown",
        }
    }

    fn read(pid: u32, users: &HashMap<u32, String>, boot: Option<u64>) -> Option<Proc> {
        let (comm, f) = stat_fields(pid)?;
        let state = f.first()?.clone();
        let ppid = f.get(1)?.parse().unwrap_or(0);
        let started: u64 = f.get(19)?.parse().ok()?;
        let rss_pages: Option<u64> = f.get(21).and_then(|v| v.parse().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
            });
        // The kernel truncates names to 15 bytes; the program's file name is the full one.
        let name = match cmdline.as_ref().and_then(|c| c.first()) {
            Some(arg0) if comm.len() >= 15 => {
                let base = arg0.rsplit('/').next().unwrap_or(arg0);
                if base.starts_with(&comm) {
                    base.to_string()
                } else {
                    comm
                }
            }
            _ => comm,
        };
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
            });
        Some(Proc {
            pid,
            ppid,
            name,
            status: status_text(&state),
            cmdline,
            username: uid.map(|u| users.get(&u).cloned().unwrap_or_else(|| u.to_string())),
            memory_bytes: rss_pages.map(|p| p * page_size()),
            create_time: boot.map(|b| b as f64 + started as f64 / clock_ticks() as f64),
            started,
        })
    }

    /// Every process this robot can see.
    pub(crate) fn list() -> Vec<Proc> {
        let users = users();
        let boot = boot_time();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let mut procs: Vec<Proc> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| read(pid, &users, boot))
            .collect();
        procs.sort_by_key(|p| p.pid);
        procs
    }

    /// The parent of `pid`.
    pub(crate) fn parent(pid: u32) -> Option<u32> {
        let (_, f) = stat_fields(pid)?;
        f.get(1)?.parse().ok()
    }

    /// Send SIGTERM (or SIGKILL with `force`) to `pid` if it is still the process started at
    /// `started`.
    pub(crate) fn signal(pid: u32, started: u64, force: bool) -> Sent {
        if self::started(pid) != Some(started) {
            return Sent::Gone;
        }
        let Ok(raw) = i32::try_from(pid) else {
            return Sent::Gone;
        };
        let sig = if force { libc::SIGKILL } else { libc::SIGTERM };
        // SAFETY: plain syscall on a positive pid checked just above.
        if unsafe { libc::kill(raw, sig) } == 0 {
            return Sent::Delivered;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EPERM) => Sent::Denied,
            _ => Sent::Gone,
        }
    }
}

#[cfg(windows)]
mod imp {
    use super::{Proc, Sent};
    use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, HWND, LPARAM};
    use windows_sys::Win32::System::Diagnostics::ToolHelp::{
        CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W,
        TH32CS_SNAPPROCESS,
    };
    use windows_sys::Win32::System::ProcessStatus::{
        K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS,
    };
    use windows_sys::Win32::System::Threading::{
        GetProcessTimes, OpenProcess, TerminateProcess, WaitForSingleObject,
        PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
    };
    use windows_sys::Win32::UI::WindowsAndMessaging::{
        EnumWindows, GetWindowThreadProcessId, PostMessageW, WM_CLOSE,
    };

    /// An open process handle, closed on drop.
    struct Handle(HANDLE);

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: closing a handle we opened, once.
            unsafe { CloseHandle(self.0) };
        }
    }

    fn open(pid: u32, access: u32) -> Option<Handle> {
        // SAFETY: plain call; a null result means failure.
        let h = unsafe { OpenProcess(access, 0, pid) };
        (!h.is_null()).then_some(Handle(h))
    }

    fn creation(h: &Handle) -> Option<u64> {
        let zero = FILETIME {
            dwLowDateTime: 0,
            dwHighDateTime: 0,
        };
        let (mut c, mut e, mut k, mut u) = (zero, zero, zero, zero);
        // SAFETY: the handle is open; the four out-pointers are valid locals.
        let ok = unsafe { GetProcessTimes(h.0, &mut c, &mut e, &mut k, &mut u) } != 0;
        ok.then(|| (u64::from(c.dwHighDateTime) << 32) | u64::from(c.dwLowDateTime))
    }

    fn memory(h: &Handle) -> Option<u64> {
        // SAFETY: zeroed counters are a valid value; the size matches the struct.
        let mut m: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
        // SAFETY: the handle is open and `m` is a valid out-pointer of `size` bytes.
        let ok = unsafe { K32GetProcessMemoryInfo(h.0, &mut m, size) } != 0;
        ok.then_some(m.WorkingSetSize as u64)
    }

    /// 100 ns ticks since 1601 → seconds since 1970.
    fn unix_secs(filetime: u64) -> f64 {
        filetime as f64 / 1e7 - 11_644_473_600.0
    }

    fn snapshot() -> Vec<(u32, u32, String)> {
        // SAFETY: plain call; INVALID_HANDLE_VALUE (-1) means failure.
        let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
        if snap.is_null() || snap as isize == -1 {
            return Vec::new();
        }
        let snap = Handle(snap);
        let mut out = Vec::new();
        // SAFETY: a zeroed PROCESSENTRY32W with dwSize set is what the API expects.
        let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
        entry.dwSize = std::mem::size_of::<PROCESSENTRY32W>() as u32;
        // SAFETY: the snapshot handle is open; `entry` is a valid out-pointer.
        let mut more = unsafe { Process32FirstW(snap.0, &mut entry) } != 0;
        while more {
            let len = entry
                .szExeFile
                .iter()
                .position(|c| *c == 0)
                .unwrap_or(entry.szExeFile.len());
            out.push((
                entry.th32ProcessID,
                entry.th32ParentProcessID,
                String::from_utf16_lossy(&entry.szExeFile[..len]),
            ));
            // SAFETY: as above.
            more = unsafe { Process32NextW(snap.0, &mut entry) } != 0;
        }
        out
    }

    /// Every process this robot can see (details where it may open the process).
    pub(crate) fn list() -> Vec<Proc> {
        let mut procs: Vec<Proc> = snapshot()
            .into_iter()
            .map(|(pid, ppid, name)| {
                let h = open(pid, PROCESS_QUERY_LIMITED_INFORMATION);
                let started = h.as_ref().and_then(creation);
                Proc {
                    pid,
                    ppid,
                    name,
                    status: "running",
                    cmdline: None,
                    username: None,
                    memory_bytes: h.as_ref().and_then(memory),
                    create_time: started.map(unix_secs),
                    started: started.unwrap_or(0),
                }
            })
            .collect();
        procs.sort_by_key(|p| p.pid);
        procs
    }

    /// The parent of `pid`.
    pub(crate) fn parent(pid: u32) -> Option<u32> {
        snapshot()
            .into_iter()
            .find(|(p, _, _)| *p == pid)
            .map(|(_, ppid, _)| ppid)
    }

    /// The creation stamp of `pid`, if it runs.
    pub(crate) fn started(pid: u32) -> Option<u64> {
        let h = open(pid, PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE)?;
        // SAFETY: the handle is open; a zero wait only tests whether it exited.
        if unsafe { WaitForSingleObject(h.0, 0) } == 0 {
            return None;
        }
        creation(&h)
    }

    struct CloseRequest {
        pid: u32,
        posted: bool,
    }

    unsafe extern "system" fn close_windows_of(hwnd: HWND, lparam: LPARAM) -> i32 {
        // SAFETY: `lparam` is the `CloseRequest` that `signal` passed to EnumWindows, alive for
        // the whole enumeration.
        let req = unsafe { &mut *(lparam as *mut CloseRequest) };
        let mut owner = 0u32;
        // SAFETY: `hwnd` comes from the enumeration; `owner` is a valid out-pointer.
        unsafe { GetWindowThreadProcessId(hwnd, &mut owner) };
        if owner == req.pid {
            // SAFETY: posting a message to a window handle from the enumeration.
            if unsafe { PostMessageW(hwnd, WM_CLOSE, 0, 0) } != 0 {
                req.posted = true;
            }
        }
        1
    }

    /// Without `force`, ask the process's windows to close (WM_CLOSE); a process without windows,
    /// and every process with `force`, is terminated.
    pub(crate) fn signal(pid: u32, started: u64, force: bool) -> Sent {
        let Some(h) = open(
            pid,
            PROCESS_TERMINATE | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_SYNCHRONIZE,
        ) else {
            return match open(pid, PROCESS_QUERY_LIMITED_INFORMATION) {
                Some(_) => Sent::Denied,
                None => Sent::Gone,
            };
        };
        if creation(&h) != Some(started) {
            return Sent::Gone;
        }
        if !force {
            let mut req = CloseRequest { pid, posted: false };
            // SAFETY: the callback only reads `req` through the pointer while EnumWindows runs.
            unsafe {
                EnumWindows(
                    Some(close_windows_of),
                    &mut req as *mut CloseRequest as LPARAM,
                )
            };
            if req.posted {
                return Sent::Delivered;
            }
        }
        // SAFETY: the handle is open with PROCESS_TERMINATE.
        if unsafe { TerminateProcess(h.0, 1) } != 0 {
            Sent::Delivered
        } else {
            Sent::Denied
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    use super::{Proc, Sent};
    pub(crate) fn list() -> Vec<Proc> {
        Vec::new()
    }
    pub(crate) fn parent(_pid: u32) -> Option<u32> {
        None
    }
    pub(crate) fn started(_pid: u32) -> Option<u64> {
        None
    }
    pub(crate) fn signal(_pid: u32, _started: u64, _force: bool) -> Sent {
        Sent::Gone
    }
}

/// True when this platform has a process table the nodes can use.
pub(crate) const SUPPORTED: bool = cfg!(any(target_os = "linux", windows));

pub(crate) use imp::{list, parent, signal, started};

/// The robot and its ancestors (parent, grandparent, ... up to the root): processes the nodes
/// never kill.
pub(crate) fn protected() -> Vec<u32> {
    let mut chain = vec![std::process::id()];
    while let Some(&last) = chain.last() {
        match parent(last) {
            Some(p) if p != 0 && !chain.contains(&p) && chain.len() < 1024 => chain.push(p),
            _ => break,
        }
    }
    chain
}

//! How the daemon lives in a Windows session (Windows only): the end of the console or of the
//! session stops it in order, and small shell helpers for the tray (message boxes, opening
//! files, hiding the console, one instance per data directory).
//!
//! **Console close, logoff, shutdown.** The `ctrlc` crate registers one console handler for
//! every console event: it wakes its thread and returns TRUE at once, and for
//! `CTRL_CLOSE_EVENT`, `CTRL_LOGOFF_EVENT` and `CTRL_SHUTDOWN_EVENT` Windows terminates the
//! process as soon as a handler returns, so the graceful stop it starts would never run. And a
//! process that loads `user32.dll` (the tray does; so does this module) gets no logoff/shutdown
//! console events at all: Windows sends `WM_QUERYENDSESSION`/`WM_ENDSESSION` to its top-level
//! windows instead. So [`ShutdownHooks::install`] adds, after `ctrlc`'s (handlers run last
//! registered first):
//!
//! - a console handler that leaves Ctrl+C and Ctrl+Break to `ctrlc` (graceful stop; a second one
//!   exits at once) and, for close/logoff/shutdown, sends `Event::Shutdown { graceful: false }`
//!   and **blocks** until the agent has finished (or Windows' own deadline, about 5 s for a
//!   closed console, ends the process);
//! - a hidden top-level window on a `session-watch` thread that does the same on
//!   `WM_ENDSESSION`.
//!
//! "Not graceful" because there is no time to let jobs finish: running jobs stop at their next
//! node, keep their checkpoints and `running` state, and resume at the next start; the outbox is
//! kept. If Windows ends the process before the agent is done, nothing is lost either: every
//! store write is a transaction.
//!
//! **Child processes.** They do not outlive a killed robot without a process-wide job object:
//! each RunCommand child runs in its own job object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`
//! whose only handle the robot holds (see `nodes::system::process`), so when the robot dies,
//! however it dies, Windows closes that handle and kills the command's whole tree. A
//! process-wide job would also kill what must survive: applications a workflow deliberately
//! left running, and the Notepad the tray opened.

use crate::agent::Event;
use crossbeam_channel::Sender;
use std::ffi::OsStr;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use windows_sys::core::BOOL;
use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ALREADY_EXISTS, HANDLE, HWND, LPARAM, LRESULT, WPARAM,
};
use windows_sys::Win32::System::Console::{
    FreeConsole, GetConsoleProcessList, SetConsoleCtrlHandler, CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT,
    CTRL_SHUTDOWN_EVENT,
};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::System::Threading::CreateMutexW;
use windows_sys::Win32::UI::Shell::ShellExecuteW;
use windows_sys::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DispatchMessageW, GetMessageW, MessageBoxW, RegisterClassW,
    TranslateMessage, IDYES, MB_ICONERROR, MB_ICONINFORMATION, MB_ICONQUESTION, MB_OK,
    MB_SETFOREGROUND, MB_YESNO, MSG, SW_SHOWNORMAL, WM_ENDSESSION, WM_QUERYENDSESSION, WNDCLASSW,
    WS_OVERLAPPED,
};

/// How long a session-end or console-close handler waits for the agent to finish.
pub const SESSION_END_WAIT: Duration = Duration::from_secs(20);

/// `s` as a NUL-terminated UTF-16 string.
pub fn wide(s: impl AsRef<OsStr>) -> Vec<u16> {
    s.as_ref().encode_wide().chain(Some(0)).collect()
}

/// What kind of message box.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoxKind {
    /// An error, with OK.
    Error,
    /// Information, with OK.
    Info,
    /// A question with Yes and No.
    Question,
}

/// Show a message box titled "CasareRPA Robot"; true when the answer was Yes.
pub fn message_box(text: &str, kind: BoxKind) -> bool {
    let style = match kind {
        BoxKind::Error => MB_OK | MB_ICONERROR,
        BoxKind::Info => MB_OK | MB_ICONINFORMATION,
        BoxKind::Question => MB_YESNO | MB_ICONQUESTION,
    } | MB_SETFOREGROUND;
    let text = wide(text);
    let title = wide("CasareRPA Robot");
    // SAFETY: both strings are NUL-terminated and outlive the call; no owner window.
    unsafe { MessageBoxW(std::ptr::null_mut(), text.as_ptr(), title.as_ptr(), style) == IDYES }
}

/// Open `path` (a file or a folder) as Explorer would (its associated program).
pub fn shell_open(path: &Path) -> Result<(), String> {
    let verb = wide("open");
    let file = wide(path);
    // SAFETY: NUL-terminated strings that outlive the call; null parameters are allowed.
    let result = unsafe {
        ShellExecuteW(
            std::ptr::null_mut(),
            verb.as_ptr(),
            file.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
            SW_SHOWNORMAL,
        )
    };
    // Values above 32 mean success; smaller ones are SE_ERR_* codes.
    let code = result as usize;
    if code > 32 {
        Ok(())
    } else {
        Err(format!("cannot open {} (error {code})", path.display()))
    }
}

/// Hide the console window when this process is the only one using it (started by a
/// double-click, a shortcut or the Task Scheduler, not from a command prompt).
pub fn hide_own_console() -> bool {
    let mut pids = [0u32; 4];
    // SAFETY: the buffer and its length match.
    let n = unsafe { GetConsoleProcessList(pids.as_mut_ptr(), pids.len() as u32) };
    // SAFETY: detaching from our own console.
    n == 1 && unsafe { FreeConsole() } != 0
}

/// A named mutex held while the robot runs: one robot per data directory and session.
#[derive(Debug)]
pub struct SingleInstance {
    handle: HANDLE,
}

// SAFETY: a mutex handle may be used and closed from any thread.
unsafe impl Send for SingleInstance {}

impl SingleInstance {
    /// The mutex name for `data_dir`: `Local\casare-robot-<16 hex>`, the hash of the
    /// lowercased path (Windows paths are case-insensitive).
    pub fn name(data_dir: &Path) -> String {
        // FNV-1a, 64 bits: stable across builds and platforms.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data_dir.to_string_lossy().to_lowercase().bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("Local\\casare-robot-{hash:016x}")
    }

    /// Take the mutex for `data_dir`; `Ok(None)` when another process holds it.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Option<SingleInstance>> {
        let name = wide(Self::name(data_dir));
        // SAFETY: default security, not initially owned, a NUL-terminated name.
        let handle = unsafe { CreateMutexW(std::ptr::null(), 0, name.as_ptr()) };
        if handle.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: reads the calling thread's last error, set by CreateMutexW just above.
        if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
            // SAFETY: closing the handle we were just given.
            unsafe { CloseHandle(handle) };
            return Ok(None);
        }
        Ok(Some(SingleInstance { handle }))
    }
}

impl Drop for SingleInstance {
    fn drop(&mut self) {
        // SAFETY: our handle, closed once.
        unsafe { CloseHandle(self.handle) };
    }
}

/// The shared state of the console handler and the session window (process-wide: Windows calls
/// them without context).
struct Hooks {
    events: Sender<Event>,
    done: Mutex<bool>,
    finished: Condvar,
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// Ask the agent to stop now and wait until it is done (or `SESSION_END_WAIT`).
fn stop_and_wait(source: &'static str) {
    let Some(hooks) = HOOKS.get() else {
        return;
    };
    log::info!("{source}: stopping the robot now");
    let _ = hooks.events.send(Event::Shutdown {
        graceful: false,
        source,
    });
    let deadline = Instant::now() + SESSION_END_WAIT;
    let mut done = hooks.done.lock().unwrap_or_else(|p| p.into_inner());
    while !*done {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!("{source}: the robot did not stop in time");
            return;
        }
        done = match hooks.finished.wait_timeout(done, left) {
            Ok((guard, _)) => guard,
            Err(p) => p.into_inner().0,
        };
    }
}

unsafe extern "system" fn console_handler(ctrl: u32) -> BOOL {
    let source = match ctrl {
        CTRL_CLOSE_EVENT => "console window closed",
        CTRL_LOGOFF_EVENT => "Windows logoff",
        CTRL_SHUTDOWN_EVENT => "Windows shutdown",
        // Ctrl+C, Ctrl+Break: the next handler (ctrlc's) stops gracefully.
        _ => return 0,
    };
    stop_and_wait(source);
    1
}

unsafe extern "system" fn session_window_proc(
    hwnd: HWND,
    msg: u32,
    wparam: WPARAM,
    lparam: LPARAM,
) -> LRESULT {
    match msg {
        // Never veto the end of the session.
        WM_QUERYENDSESSION => 1,
        WM_ENDSESSION => {
            if wparam != 0 {
                stop_and_wait("Windows logoff or shutdown");
            }
            0
        }
        // SAFETY: the default handling of a message to our own window.
        _ => unsafe { DefWindowProcW(hwnd, msg, wparam, lparam) },
    }
}

/// Run the hidden session window's message loop (never returns unless the window fails).
fn session_window_loop() {
    let class = wide("CasareRobotSessionWatch");
    // SAFETY: plain Win32 window creation with a static window procedure; every pointer passed
    // is to a live, NUL-terminated buffer or null where allowed.
    unsafe {
        let instance = GetModuleHandleW(std::ptr::null());
        let mut wc: WNDCLASSW = std::mem::zeroed();
        wc.lpfnWndProc = Some(session_window_proc);
        wc.hInstance = instance;
        wc.lpszClassName = class.as_ptr();
        RegisterClassW(&wc);
        let title = wide("CasareRPA Robot session watch");
        // A top-level window (message-only windows get no WM_ENDSESSION), never shown.
        let hwnd = CreateWindowExW(
            0,
            class.as_ptr(),
            title.as_ptr(),
            WS_OVERLAPPED,
            0,
            0,
            0,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            instance,
            std::ptr::null(),
        );
        if hwnd.is_null() {
            log::warn!(
                "cannot create the session window ({}): logoff and shutdown will not stop the robot in order",
                std::io::Error::last_os_error()
            );
            return;
        }
        let mut msg: MSG = std::mem::zeroed();
        while GetMessageW(&mut msg, std::ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&msg);
            DispatchMessageW(&msg);
        }
    }
}

/// While alive, console close, logoff and shutdown stop the agent in order (see the module
/// documentation). Drop it when the agent has finished: that releases a waiting handler.
#[derive(Debug)]
pub struct ShutdownHooks {
    _private: (),
}

impl ShutdownHooks {
    /// Install the console handler (after `ctrlc`'s) and start the session window, sending
    /// shutdown requests on `events`. Once per process; later calls only return a guard.
    pub fn install(events: Sender<Event>) -> ShutdownHooks {
        let fresh = HOOKS
            .set(Hooks {
                events,
                done: Mutex::new(false),
                finished: Condvar::new(),
            })
            .is_ok();
        if fresh {
            // SAFETY: registering a static handler function.
            if unsafe { SetConsoleCtrlHandler(Some(console_handler), 1) } == 0 {
                log::debug!(
                    "no console handler ({}): a closed console ends the robot abruptly",
                    std::io::Error::last_os_error()
                );
            }
            if let Err(e) = std::thread::Builder::new()
                .name("session-watch".into())
                .spawn(session_window_loop)
            {
                log::warn!("cannot start the session-watch thread: {e}");
            }
        }
        ShutdownHooks { _private: () }
    }
}

impl Drop for ShutdownHooks {
    fn drop(&mut self) {
        if let Some(hooks) = HOOKS.get() {
            *hooks.done.lock().unwrap_or_else(|p| p.into_inner()) = true;
            hooks.finished.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_name_ignores_case_and_differs_per_directory() {
        let a = SingleInstance::name(Path::new(r"C:\ProgramData\CasareRPA\Robot"));
        assert_eq!(
            a,
            SingleInstance::name(Path::new(r"c:\programdata\casarerpa\robot"))
        );
        assert_ne!(a, SingleInstance::name(Path::new(r"D:\robot2")));
        assert!(
            a.starts_with(r"Local\casare-robot-") && a.len() == 19 + 16,
            "{a}"
        );
        let first = SingleInstance::acquire(Path::new(r"C:\casare-test-instance"))
            .unwrap()
            .expect("the first holder");
        assert!(
            SingleInstance::acquire(Path::new(r"C:\CASARE-test-instance"))
                .unwrap()
                .is_none()
        );
        drop(first);
        assert!(
            SingleInstance::acquire(Path::new(r"C:\casare-test-instance"))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn console_close_stops_the_agent_and_waits_for_it() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let hooks = ShutdownHooks::install(tx);
        let agent = std::thread::spawn(move || {
            let ev = rx.recv_timeout(Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(200));
            drop(hooks); // the agent finished
            ev
        });
        let started = Instant::now();
        // SAFETY: calling our handler as Windows would.
        assert_eq!(unsafe { console_handler(CTRL_CLOSE_EVENT) }, 1);
        assert!(started.elapsed() >= Duration::from_millis(200));
        let ev = agent.join().unwrap();
        assert!(
            matches!(
                ev,
                Ok(Event::Shutdown {
                    graceful: false,
                    source: "console window closed"
                })
            ),
            "{ev:?}"
        );
        // Ctrl+C (0) and Ctrl+Break (1) go on to ctrlc's handler.
        // SAFETY: as above.
        assert_eq!(unsafe { console_handler(0) }, 0);
        assert_eq!(unsafe { console_handler(1) }, 0);
    }
}

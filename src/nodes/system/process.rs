//! Running one external program for `RunCommandNode`: spawn, bounded capture, interruptible wait,
//! and killing the whole process tree on timeout or cancellation.
//!
//! - **Process tree.** On Unix the child starts in its own process group (`process_group(0)`), so
//!   `kill(-pgid, SIGKILL)` reaches every process it started that stayed in the group. On Windows the
//!   child is created suspended, put in a Job Object with `JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE`, then
//!   resumed (so not even its first grandchild escapes the job); `TerminateJobObject` kills the tree.
//!   The robot holds the job's only handle (not inheritable), so while a command runs its tree also
//!   dies when the robot dies, however it dies: Windows closes the handle and kill-on-close does
//!   the rest (checked under Wine by `tools/wine-smoke.sh`). That is why the robot needs no
//!   process-wide job object. On Linux the command itself gets `PR_SET_PDEATHSIG` = SIGKILL, so
//!   it dies with a killed robot too (what it started in the background survives; other Unixes
//!   leave the whole group running).
//!   A process that deliberately leaves the group/job (`setsid`, breakaway) is out of reach.
//! - **Normal exit leaves background processes alone** (a workflow may start an application and go
//!   on automating it): on Windows the kill-on-close flag is cleared before the job handle closes.
//! - **Capture** reads stdout and stderr on two threads (a program flooding one stream cannot block
//!   on the other), keeps the first `cap` bytes of each and counts (drains) the rest.
//! - **Waiting** polls the child with short, growing waits on the cancel token, so a cancellation is
//!   seen at once. After the child exits, its pipes may still be held open by a background process
//!   it started; we wait at most [`PIPE_GRACE`] for them to close, then return what was captured
//!   (the reader threads finish on their own when the pipes close; their memory is bounded).
//! - **stdin** is the null device: a robot has no one to type, and a program waiting for input would
//!   otherwise hang until its timeout. A [`Spec`] with `stdin` bytes (the script nodes' request)
//!   gets a pipe instead, fed by a thread and closed after the last byte, so the child sees EOF
//!   and a child that stops reading cannot block the robot.

use crate::engine::CancelToken;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long to wait for the output pipes to close after the child exited.
pub(crate) const PIPE_GRACE: Duration = Duration::from_secs(1);

/// One argument of the program.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Arg {
    /// Passed as one argument (quoted by the standard library as the platform needs).
    Plain(String),
    /// Passed verbatim on the Windows command line (`cmd /c "..."`); a plain argument elsewhere.
    Raw(String),
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub(crate) struct Spec {
    /// The program (a name looked up on `PATH`, or a path).
    pub program: String,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// Working directory (inherited when `None`).
    pub cwd: Option<PathBuf>,
    /// Environment changes: `Some(value)` sets, `None` removes.
    pub env: Vec<(String, Option<String>)>,
    /// Capture stdout/stderr (else they go to the null device).
    pub capture: bool,
    /// Bytes fed to the child's stdin, which is then closed (`None`: the null device).
    pub stdin: Option<Arc<[u8]>>,
}

/// The bytes kept from one output stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Captured {
    /// The first `cap` bytes.
    pub bytes: Vec<u8>,
    /// Bytes read and dropped after the cap.
    pub dropped: u64,
}

/// A finished command.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Exit code; a Unix signal `n` gives `-n` (as Python's `returncode`).
    pub code: i64,
    /// Captured stdout.
    pub stdout: Captured,
    /// Captured stderr.
    pub stderr: Captured,
    /// The pipes were still open [`PIPE_GRACE`] after exit (a background process holds them).
    pub pipes_left_open: bool,
}

/// Why a command did not finish.
#[derive(Debug)]
pub(crate) enum Failure {
    /// It could not be started.
    Spawn(io::Error),
    /// `until` passed; the process tree was killed.
    TimedOut,
    /// The cancel token fired; the process tree was killed.
    Cancelled,
}

type Shared = Arc<Mutex<Captured>>;

fn take(shared: &Shared) -> Captured {
    match shared.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    mut stream: R,
    cap: usize,
    name: &str,
) -> io::Result<(Shared, JoinHandle<()>)> {
    let shared: Shared = Arc::new(Mutex::new(Captured::default()));
    let sink = shared.clone();
    let handle = std::thread::Builder::new()
        .name(format!("cmd-{name}"))
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut g = match sink.lock() {
                            Ok(g) => g,
                            Err(p) => p.into_inner(),
                        };
                        let room = cap.saturating_sub(g.bytes.len()).min(n);
                        g.bytes.extend_from_slice(&buf[..room]);
                        g.dropped += (n - room) as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
        })?;
    Ok((shared, handle))
}

/// Write `bytes` to the child's stdin on a thread of its own, then close it. A child that exits or
/// closes its stdin early ends the thread with a broken pipe, which is not an error here.
fn spawn_feeder(
    mut pipe: std::process::ChildStdin,
    bytes: Arc<[u8]>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cmd-stdin".into())
        .spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&bytes);
        })
}

/// Wait with growing steps until `done()` or `until` (false) or cancellation (`Err`).
fn wait_for(
    mut done: impl FnMut() -> bool,
    until: Instant,
    cancel: &CancelToken,
) -> Result<bool, ()> {
    let mut step = Duration::from_millis(1);
    loop {
        if done() {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(false);
        }
        if cancel.sleep_until((now + step).min(until)) {
            return Err(());
        }
        step = (step * 2).min(Duration::from_millis(25));
    }
}

/// Run `spec` to completion, or until `until` / cancellation (then the process tree is killed).
///
/// On cancellation the tree first gets a chance to stop cleanly (SIGTERM to the process group on
/// Unix) for up to `cancel_grace`, then it is killed. A timeout kills at once.
pub(crate) fn run(
    spec: &Spec,
    until: Instant,
    cancel: &CancelToken,
    cap: usize,
    cancel_grace: Duration,
) -> Result<Finished, Failure> {
    if cancel.is_cancelled() {
        return Err(Failure::Cancelled);
    }
    let mut cmd = Command::new(&spec.program);
    for arg in &spec.args {
        match arg {
            Arg::Plain(a) => {
                cmd.arg(a);
            }
            Arg::Raw(a) => {
                #[cfg(windows)]
                {
                    use std::os::windows::process::CommandExt;
                    cmd.raw_arg(a);
                }
                #[cfg(not(windows))]
                {
                    cmd.arg(a);
                }
            }
        }
    }
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in &spec.env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(if spec.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    if spec.capture {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let (mut child, tree) = tree::spawn(&mut cmd).map_err(Failure::Spawn)?;

    let mut readers: Vec<(Shared, JoinHandle<()>)> = Vec::new();
    let outs = (child.stdout.take(), child.stderr.take());
    let started = (|| -> io::Result<()> {
        if let Some(out) = outs.0 {
            readers.push(spawn_reader(out, cap, "stdout")?);
        }
        if let Some(err) = outs.1 {
            readers.push(spawn_reader(err, cap, "stderr")?);
        }
        Ok(())
    })();
    let fed = match (child.stdin.take(), &spec.stdin) {
        (Some(pipe), Some(bytes)) => spawn_feeder(pipe, bytes.clone()).map(|_| ()),
        _ => Ok(()),
    };
    if let Err(e) = started.and(fed) {
        tree.kill(&mut child);
        return Err(Failure::Spawn(e));
    }

    // Phase 1: the child itself.
    let mut status = None;
    let waited = wait_for(
        || match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(Ok(s));
                true
            }
            Ok(None) => false,
            Err(e) => {
                status = Some(Err(e));
                true
            }
        },
        until,
        cancel,
    );
    let failure = match waited {
        Ok(true) => None,
        Ok(false) => Some(Failure::TimedOut),
        Err(()) => Some(Failure::Cancelled),
    };
    if let Some(f) = failure {
        if matches!(f, Failure::Cancelled) && !cancel_grace.is_zero() && tree.terminate() {
            let _ = wait_for(
                || matches!(child.try_wait(), Ok(Some(_)) | Err(_)),
                Instant::now() + cancel_grace,
                &CancelToken::new(),
            );
        }
        tree.kill(&mut child);
        // The tree is dead, so the pipes close; do not wait long for stragglers.
        let _ = wait_for(
            || readers.iter().all(|(_, h)| h.is_finished()),
            Instant::now() + PIPE_GRACE,
            &CancelToken::new(),
        );
        return Err(f);
    }
    let status = match status {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            tree.kill(&mut child);
            return Err(Failure::Spawn(e));
        }
        // `wait_for` only returns `Ok(true)` once `status` is set; wait properly if not.
        None => match child.wait() {
            Ok(s) => s,
            Err(e) => {
                tree.kill(&mut child);
                return Err(Failure::Spawn(e));
            }
        },
    };

    // Phase 2: the pipes (a background process may still hold them).
    let grace = (Instant::now() + PIPE_GRACE).min(until.max(Instant::now()));
    let closed = wait_for(
        || readers.iter().all(|(_, h)| h.is_finished()),
        grace,
        cancel,
    );
    match closed {
        Err(()) => {
            tree.kill(&mut child);
            Err(Failure::Cancelled)
        }
        Ok(all_closed) => {
            tree.release();
            let mut it = readers.into_iter().map(|(shared, handle)| {
                let out = take(&shared);
                if handle.is_finished() {
                    let _ = handle.join();
                }
                out
            });
            let (stdout, stderr) = if spec.capture {
                (it.next().unwrap_or_default(), it.next().unwrap_or_default())
            } else {
                Default::default()
            };
            Ok(Finished {
                code: exit_code(status),
                stdout,
                stderr,
                pipes_left_open: !all_closed,
            })
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i64 {
    if let Some(c) = status.code() {
        return i64::from(c);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return -i64::from(sig);
        }
    }
    -1
}

#[cfg(unix)]
mod tree {
    //! Unix: a process group per command.
    use std::io;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    pub(super) struct Tree {
        pgid: i32,
    }

    pub(super) fn spawn(cmd: &mut Command) -> io::Result<(Child, Tree)> {
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe syscalls (prctl, getppid).
        unsafe {
            let parent = libc::getpid();
            cmd.pre_exec(move || {
                // Killed when the spawning thread (a long-lived worker) or the robot dies.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The robot may have died between fork and prctl.
                if libc::getppid() != parent {
                    return Err(io::Error::other(
                        "the robot exited while starting the command",
                    ));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pgid = i32::try_from(child.id()).unwrap_or(0);
        Ok((child, Tree { pgid }))
    }

    impl Tree {
        /// SIGKILL the whole group, then reap the child.
        pub(super) fn kill(self, child: &mut Child) {
            if self.pgid > 0 {
                // SAFETY: plain syscall; the group id is our child's pid, which is not reaped yet
                // (we reap below), so it cannot have been reused.
                unsafe {
                    libc::kill(-self.pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }

        /// The command finished normally: leave any background processes alone.
        pub(super) fn release(self) {}

        /// Ask the whole group to stop (SIGTERM); true when the signal was sent.
        pub(super) fn terminate(&self) -> bool {
            // SAFETY: plain syscall on our own child's group (not reaped yet).
            self.pgid > 0 && unsafe { libc::kill(-self.pgid, libc::SIGTERM) } == 0
        }
    }
}

#[cfg(windows)]
mod tree {
    //! Windows: a Job Object per command, the child created suspended and resumed once inside it.
    use std::io;
    use std::os::windows::io::AsRawHandle;
    use std::os::windows::process::CommandExt;
    use std::process::{Child, Command};
    use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JobObjectExtendedLimitInformation,
        SetInformationJobObject, TerminateJobObject, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
        JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    use windows_sys::Win32::System::Threading::CREATE_SUSPENDED;

    #[link(name = "ntdll")]
    extern "system" {
        fn NtResumeProcess(process: HANDLE) -> i32;
    }

    pub(super) struct Tree {
        job: HANDLE,
    }

    fn set_limits(job: HANDLE, flags: u32) -> bool {
        // SAFETY: a zeroed JOBOBJECT_EXTENDED_LIMIT_INFORMATION is a valid value (plain data).
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
        info.BasicLimitInformation.LimitFlags = flags;
        // SAFETY: `info` lives across the call and the size matches the class.
        unsafe {
            SetInformationJobObject(
                job,
                JobObjectExtendedLimitInformation,
                &info as *const _ as *const core::ffi::c_void,
                std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
            ) != 0
        }
    }

    pub(super) fn spawn(cmd: &mut Command) -> io::Result<(Child, Tree)> {
        // SAFETY: creating an anonymous job object; null means default security, no name.
        let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        let job = if !job.is_null() && set_limits(job, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE) {
            job
        } else {
            if !job.is_null() {
                // SAFETY: closing the handle we just created.
                unsafe { CloseHandle(job) };
            }
            std::ptr::null_mut()
        };
        if job.is_null() {
            log::warn!("RunCommand: no job object; only the direct child can be killed");
            return Ok((cmd.spawn()?, Tree { job }));
        }
        cmd.creation_flags(CREATE_SUSPENDED);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: closing our own job handle (no process in it).
                unsafe { CloseHandle(job) };
                return Err(e);
            }
        };
        let handle = child.as_raw_handle() as HANDLE;
        // SAFETY: both handles are valid and owned by us for the duration of the calls.
        let assigned = unsafe { AssignProcessToJobObject(job, handle) } != 0;
        if !assigned {
            log::warn!("RunCommand: could not put the command in a job object; only the direct child can be killed");
        }
        // SAFETY: resuming the suspended process we created.
        let status = unsafe { NtResumeProcess(handle) };
        let tree = Tree {
            job: if assigned { job } else { std::ptr::null_mut() },
        };
        if !assigned {
            // SAFETY: closing our own (empty) job handle.
            unsafe { CloseHandle(job) };
        }
        if status < 0 {
            tree.kill(&mut child);
            return Err(io::Error::other(format!(
                "could not resume the new process (NTSTATUS {status:#x})"
            )));
        }
        Ok((child, tree))
    }

    impl Tree {
        /// Terminate every process in the job, then reap the child.
        pub(super) fn kill(self, child: &mut Child) {
            if !self.job.is_null() {
                // SAFETY: the job handle is ours and open until `drop`.
                unsafe { TerminateJobObject(self.job, 1) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }

        /// The command finished normally: clear kill-on-close so background processes survive.
        pub(super) fn release(self) {
            if !self.job.is_null() {
                set_limits(self.job, 0);
            }
        }

        /// Windows has no polite stop signal for arbitrary (console-less) processes: a cancelled
        /// command is terminated at once.
        pub(super) fn terminate(&self) -> bool {
            false
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            if !self.job.is_null() {
                // SAFETY: closing the job handle we own, once.
                unsafe { CloseHandle(self.job) };
            }
        }
    }
}

#[cfg(not(any(unix, windows)))]
mod tree {
    use std::io;
    use std::process::{Child, Command};

    pub(super) struct Tree;

    pub(super) fn spawn(cmd: &mut Command) -> io::Result<(Child, Tree)> {
        Ok((cmd.spawn()?, Tree))
    }

    impl Tree {
        pub(super) fn kill(self, child: &mut Child) {
            let _ = child.kill();
            let _ = child.wait();
        }
        pub(super) fn release(self) {}

        pub(super) fn terminate(&self) -> bool {
            false
        }
    }
}

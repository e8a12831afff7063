//! Stop requests from the operating system, named for what they were.
//!
//! `ctrlc` (feature `termination`) runs one handler for SIGINT, SIGTERM and SIGHUP (Ctrl+C,
//! Ctrl+Break and console close on Windows) without saying which arrived, so a service manager's
//! SIGTERM used to be reported as "Ctrl+C". On Unix [`set_handler`] puts a small recording handler
//! in front of ctrlc's for those three signals: it stores the signal number (async-signal-safe, an
//! atomic store) and calls ctrlc's handler, whose thread then calls ours with the [`Interrupt`].
//! On Windows every request is reported as Ctrl+C (console close and shutdown are `winhost`'s).

/// What asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// Ctrl+C at the console (SIGINT; Ctrl+C or Ctrl+Break on Windows).
    CtrlC,
    /// A termination request (SIGTERM: a service manager, `kill`).
    Terminate,
    /// The terminal went away (SIGHUP).
    Hangup,
}

impl Interrupt {
    /// How messages name it: "Ctrl+C", "SIGTERM", "SIGHUP".
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::CtrlC => "Ctrl+C",
            Interrupt::Terminate => "SIGTERM",
            Interrupt::Hangup => "SIGHUP",
        }
    }
}

/// Run `handler` on a dedicated thread for every stop request, with what it was.
pub fn set_handler<F>(mut handler: F) -> Result<(), ctrlc::Error>
where
    F: FnMut(Interrupt) + Send + 'static,
{
    ctrlc::set_handler(move || handler(last()))?;
    #[cfg(unix)]
    unix::record_in_front_of_ctrlc();
    Ok(())
}

/// The request being handled.
fn last() -> Interrupt {
    #[cfg(unix)]
    {
        unix::last()
    }
    #[cfg(not(unix))]
    {
        Interrupt::CtrlC
    }
}

#[cfg(unix)]
mod unix {
    use super::Interrupt;
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    /// The last signal received (0: none yet).
    static LAST: AtomicI32 = AtomicI32::new(0);
    /// The handlers found for SIGNALS (ctrlc's), called after recording.
    static NEXT: [AtomicUsize; 3] = [
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ];

    pub(super) fn last() -> Interrupt {
        match LAST.load(Ordering::SeqCst) {
            libc::SIGTERM => Interrupt::Terminate,
            libc::SIGHUP => Interrupt::Hangup,
            _ => Interrupt::CtrlC,
        }
    }

    extern "C" fn record(sig: libc::c_int) {
        LAST.store(sig, Ordering::SeqCst);
        let Some(idx) = SIGNALS.iter().position(|s| *s == sig) else {
            return;
        };
        let next = NEXT[idx].load(Ordering::SeqCst);
        if next != libc::SIG_DFL && next != libc::SIG_IGN && next != libc::SIG_ERR {
            // SAFETY: `next` is the plain (non-SA_SIGINFO) handler that was installed for this
            // signal (ctrlc's), stored by `record_in_front_of_ctrlc` before ours was installed.
            let next: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(next) };
            next(sig);
        }
    }

    pub(super) fn record_in_front_of_ctrlc() {
        for (idx, sig) in SIGNALS.iter().enumerate() {
            // SAFETY: plain sigaction calls with zeroed, then filled, structs; `record` only does
            // atomic loads/stores and calls the previous handler.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(*sig, std::ptr::null(), &mut old) != 0
                    || old.sa_flags & libc::SA_SIGINFO != 0
                {
                    continue;
                }
                NEXT[idx].store(old.sa_sigaction, Ordering::SeqCst);
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = record as extern "C" fn(libc::c_int) as usize;
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(*sig, &new, std::ptr::null_mut()) != 0 {
                    log::debug!("cannot record which signal stops the robot ({sig})");
                }
            }
        }
    }
}

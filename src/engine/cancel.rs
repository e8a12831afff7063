//! Cooperative cancellation shared between a job's owner and the thread running it.
//!
//! The runner checks the token between nodes; long nodes (Wait, commands, HTTP) sleep on it so a
//! cancel wakes them at once. Cloning is cheap (one `Arc`).

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Inner {
    flag: AtomicBool,
    reason: Mutex<Option<String>>,
    wake: Condvar,
}

/// A cancellation token; all clones observe the same cancellation.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    /// A fresh, not-cancelled token.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Request cancellation (idempotent; the first reason wins) and wake every sleeper.
    pub fn cancel(&self, reason: impl Into<String>) {
        let mut guard = self.inner.reason.lock();
        if guard.is_none() {
            *guard = Some(reason.into());
        }
        self.inner.flag.store(true, Ordering::Release);
        self.inner.wake.notify_all();
    }

    /// True once cancelled.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.flag.load(Ordering::Acquire)
    }

    /// The reason given to [`CancelToken::cancel`].
    pub fn reason(&self) -> Option<String> {
        self.inner.reason.lock().clone()
    }

    /// Sleep until `deadline` or until cancelled; returns true when cancelled.
    pub fn sleep_until(&self, deadline: Instant) -> bool {
        let mut guard = self.inner.reason.lock();
        loop {
            if self.is_cancelled() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let _ = self.inner.wake.wait_until(&mut guard, deadline);
        }
    }

    /// Sleep for `duration` or until cancelled; returns true when cancelled.
    pub fn sleep(&self, duration: Duration) -> bool {
        self.sleep_until(Instant::now() + duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wakes_a_sleeper_early() {
        let token = CancelToken::new();
        let other = token.clone();
        let start = Instant::now();
        let handle = std::thread::spawn(move || other.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        token.cancel("stop");
        assert!(handle.join().unwrap());
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(token.reason().as_deref(), Some("stop"));
    }

    #[test]
    fn sleep_without_cancel_returns_false() {
        let token = CancelToken::new();
        assert!(!token.sleep(Duration::from_millis(5)));
        token.cancel("a");
        token.cancel("b");
        assert_eq!(token.reason().as_deref(), Some("a"));
        assert!(token.sleep(Duration::from_secs(5)));
    }
}

//! The connection state machine (sans-IO): when to connect, how long to back off, what to log.
//!
//! States: `Disconnected` (not started or stopped), `Connecting` (an attempt is in flight),
//! `Connected`, `Reconnecting` (waiting for the next attempt), `Unauthorized` (the orchestrator
//! refused our credentials: HTTP 401/403 at the handshake, close code 4001/4003, or a refused
//! registration; retried only at the maximum backoff, so a revoked key never hammers the server).
//! Every attempt passes the [`CircuitBreaker`]; delays come from [`Backoff`] with full jitter.
//! When a connection that was up drops, the first [`QUICK_ATTEMPTS`] delays are capped at
//! [`QUICK_CAP`] (still jittered, so a fleet stays spread out) and the schedule then resumes from
//! the cap: a robot re-registers within seconds of an orchestrator restart. Quick attempts do not
//! count toward the breaker (they are bounded); it opens after the failures that follow them.
//! Time and randomness are injected: `handle(now, input, rng)` and `poll_timeout()`.
//! Logging is rate-limited by design: the caller logs [`Transition`]s, one per outage start and
//! end, while individual retries are debug-level.

use crate::resilience::backoff::Backoff;
use crate::resilience::breaker::{BreakerConfig, BreakerSnapshot, CircuitBreaker, Permit};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Link states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Not started, or stopped.
    Disconnected,
    /// An attempt is in flight.
    Connecting,
    /// Connected.
    Connected,
    /// Waiting to try again.
    Reconnecting,
    /// Credentials refused; retrying only at the maximum backoff.
    Unauthorized,
}

/// What happened (inputs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkInput {
    /// Begin connecting.
    Start,
    /// The handshake succeeded.
    Connected,
    /// The attempt failed; `auth` when the server refused the credentials.
    ConnectFailed {
        /// Credentials refused.
        auth: bool,
    },
    /// An established connection ended; `auth` for close codes 4001/4003.
    Closed {
        /// Credentials refused.
        auth: bool,
    },
    /// The orchestrator refused the registration (`register_ack` with `success: false`).
    RegistrationRefused,
    /// Stop for good (shutdown).
    Stop,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkAction {
    /// Start a connection attempt now.
    Connect,
    /// Close the current connection.
    Close,
}

/// A state change worth an info line.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// An outage began.
    OutageStarted {
        /// Why.
        unauthorized: bool,
    },
    /// Connected again after an outage.
    Restored {
        /// Attempts it took.
        attempts: u32,
        /// How long the robot was disconnected.
        outage: Duration,
    },
}

/// After a connection that was up drops, this many reconnect attempts wait at most
/// [`QUICK_CAP`] (jittered), so a robot re-registers within seconds of an orchestrator restart
/// (about 5 s of attempts cover a typical restart); the schedule then resumes from the cap (4 s,
/// 8 s … with the reference parameters). Quick attempts do not count toward the breaker.
pub const QUICK_ATTEMPTS: u32 = 5;

/// The longest wait of the quick attempts after a drop.
pub const QUICK_CAP: Duration = Duration::from_secs(2);

/// The connection manager.
pub struct Connection {
    state: LinkState,
    backoff: Backoff,
    breaker: CircuitBreaker,
    permit: Option<Permit>,
    next_attempt: Option<Instant>,
    outage_since: Option<Instant>,
    attempts: u32,
    /// Quick attempts left in this outage (set when a connection that was up drops).
    quick_left: u32,
    /// The scheduled (or in-flight) attempt is a quick one.
    quick_attempt: bool,
    transitions: Vec<Transition>,
}

/// A serializable summary for status output.
#[derive(Clone, Debug, Serialize)]
pub struct LinkSnapshot {
    /// State.
    pub state: LinkState,
    /// Attempts in the current outage.
    pub attempts: u32,
    /// Seconds until the next attempt, when one is scheduled.
    pub next_attempt_in_secs: Option<f64>,
    /// The breaker.
    pub breaker: BreakerSnapshot,
}

impl Connection {
    /// A manager with the given backoff and breaker settings.
    pub fn new(backoff: Backoff, breaker: BreakerConfig, now: Instant) -> Connection {
        Connection {
            state: LinkState::Disconnected,
            backoff,
            breaker: CircuitBreaker::new(breaker, now),
            permit: None,
            next_attempt: None,
            outage_since: None,
            attempts: 0,
            quick_left: 0,
            quick_attempt: false,
            transitions: Vec::new(),
        }
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// The breaker (for status and logging its transitions).
    pub fn breaker_mut(&mut self) -> &mut CircuitBreaker {
        &mut self.breaker
    }

    /// Transitions since the last call.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// When [`Connection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_attempt
    }

    /// Feed an input.
    pub fn handle(
        &mut self,
        now: Instant,
        input: LinkInput,
        rng: &mut fastrand::Rng,
    ) -> Option<LinkAction> {
        match input {
            LinkInput::Start => {
                if matches!(self.state, LinkState::Disconnected) {
                    self.state = LinkState::Reconnecting;
                    self.next_attempt = Some(now);
                    return self.handle_timeout(now);
                }
                None
            }
            LinkInput::Connected => {
                if let Some(p) = self.permit.take() {
                    self.breaker.record_success(now, p);
                }
                if let Some(since) = self.outage_since.take() {
                    self.transitions.push(Transition::Restored {
                        attempts: self.attempts,
                        outage: now - since,
                    });
                }
                self.attempts = 0;
                self.backoff.reset();
                self.state = LinkState::Connected;
                self.next_attempt = None;
                None
            }
            LinkInput::ConnectFailed { auth } => {
                if let Some(p) = self.permit.take() {
                    if self.quick_attempt {
                        // Quick attempts are bounded by QUICK_ATTEMPTS: they do not count
                        // toward opening the breaker (an orchestrator restart is not an outage).
                        self.breaker.release(now, p);
                    } else {
                        self.breaker.record_failure(now, p);
                    }
                }
                self.schedule_retry(now, auth, rng);
                None
            }
            LinkInput::Closed { auth } => {
                if matches!(self.state, LinkState::Disconnected) {
                    return None;
                }
                if self.state == LinkState::Unauthorized && self.next_attempt.is_some() {
                    // The close the robot asked for after a refused registration: the
                    // unauthorized schedule (the maximum backoff) stays.
                    if let Some(p) = self.permit.take() {
                        self.breaker.release(now, p);
                    }
                    return None;
                }
                if let Some(p) = self.permit.take() {
                    self.breaker.release(now, p);
                }
                if self.state == LinkState::Connected {
                    self.quick_left = QUICK_ATTEMPTS;
                }
                self.schedule_retry(now, auth, rng);
                None
            }
            LinkInput::RegistrationRefused => {
                self.schedule_retry(now, true, rng);
                Some(LinkAction::Close)
            }
            LinkInput::Stop => {
                if let Some(p) = self.permit.take() {
                    self.breaker.release(now, p);
                }
                let was_connected = self.state == LinkState::Connected;
                self.state = LinkState::Disconnected;
                self.next_attempt = None;
                was_connected.then_some(LinkAction::Close)
            }
        }
    }

    fn schedule_retry(&mut self, now: Instant, auth: bool, rng: &mut fastrand::Rng) {
        if self.outage_since.is_none() {
            self.outage_since = Some(now);
            self.transitions
                .push(Transition::OutageStarted { unauthorized: auth });
        }
        self.quick_attempt = !auth && self.quick_left > 0;
        let delay = if auth {
            self.quick_left = 0;
            self.backoff.max_delay(rng)
        } else if self.quick_attempt {
            self.quick_left -= 1;
            self.backoff.next_delay_capped(rng, QUICK_CAP)
        } else {
            self.backoff.next_delay(rng)
        };
        self.state = if auth {
            LinkState::Unauthorized
        } else {
            LinkState::Reconnecting
        };
        self.next_attempt = Some(now + delay);
    }

    /// Time passed: start an attempt when one is due and the breaker admits it.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<LinkAction> {
        let due = self.next_attempt.is_some_and(|t| now >= t);
        if !due
            || !matches!(
                self.state,
                LinkState::Reconnecting | LinkState::Unauthorized
            )
        {
            return None;
        }
        match self.breaker.try_acquire(now) {
            Ok(permit) => {
                self.permit = Some(permit);
                self.attempts += 1;
                self.next_attempt = None;
                if self.state != LinkState::Unauthorized {
                    self.state = LinkState::Connecting;
                }
                Some(LinkAction::Connect)
            }
            Err(rejected) => {
                let wait = rejected
                    .retry_after()
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_millis(100));
                self.next_attempt = Some(now + wait);
                None
            }
        }
    }

    /// Status figures.
    pub fn snapshot(&self, now: Instant) -> LinkSnapshot {
        LinkSnapshot {
            state: self.state,
            attempts: self.attempts,
            next_attempt_in_secs: self
                .next_attempt
                .map(|t| t.saturating_duration_since(now).as_secs_f64()),
            breaker: self.breaker.snapshot(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(now: Instant) -> Connection {
        Connection::new(
            Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(60)),
            BreakerConfig::default(),
            now,
        )
    }

    /// A manager whose first attempt connected at `t0`.
    fn connected(t0: Instant, rng: &mut fastrand::Rng) -> Connection {
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, rng);
        c.handle(t0, LinkInput::Connected, rng);
        c
    }

    #[test]
    fn start_connects_at_once_and_success_resets() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(1);
        let mut c = conn(t0);
        assert_eq!(
            c.handle(t0, LinkInput::Start, &mut rng),
            Some(LinkAction::Connect)
        );
        assert_eq!(c.state(), LinkState::Connecting);
        assert_eq!(c.handle(t0, LinkInput::Connected, &mut rng), None);
        assert_eq!(c.state(), LinkState::Connected);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.take_transitions().is_empty(), "no outage, nothing to log");
    }

    #[test]
    fn failures_back_off_with_growing_ceilings_and_one_outage_line() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(2);
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..4 {
            c.handle(now, LinkInput::ConnectFailed { auth: false }, &mut rng);
            assert_eq!(c.state(), LinkState::Reconnecting);
            let next = c.poll_timeout().unwrap();
            delays.push(next - now);
            assert_eq!(
                c.handle_timeout(next - Duration::from_millis(1)),
                None,
                "not yet due"
            );
            now = next;
            assert_eq!(c.handle_timeout(now), Some(LinkAction::Connect));
        }
        for (i, d) in delays.iter().enumerate() {
            assert!(*d <= Duration::from_secs(1 << i), "attempt {i}: {d:?}");
        }
        assert_eq!(
            c.take_transitions(),
            [Transition::OutageStarted {
                unauthorized: false
            }]
        );
        c.handle(now + Duration::from_secs(1), LinkInput::Connected, &mut rng);
        match c.take_transitions().as_slice() {
            [Transition::Restored { attempts, outage }] => {
                assert_eq!(*attempts, 5);
                assert!(*outage >= delays.iter().sum::<Duration>());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_breaker_opens_after_five_failures_and_holds_attempts() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        let mut now = t0;
        let mut opened_at = t0;
        for _ in 0..5 {
            c.handle(now, LinkInput::ConnectFailed { auth: false }, &mut rng);
            opened_at = now;
            now = c.poll_timeout().unwrap();
            c.handle_timeout(now);
        }
        // The fifth failure opened the breaker: no attempt until 60 s after it opened.
        assert_eq!(c.snapshot(now).breaker.state.as_str(), "open");
        let mut attempts = 0;
        let end = opened_at + Duration::from_secs(59);
        while let Some(t) = c.poll_timeout() {
            if t > end {
                break;
            }
            now = t;
            if c.handle_timeout(now).is_some() {
                attempts += 1;
            }
        }
        assert_eq!(attempts, 0, "no attempt while the breaker is open");
    }

    #[test]
    fn unauthorized_waits_the_maximum_and_never_hammers() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(4);
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        c.handle(t0, LinkInput::ConnectFailed { auth: true }, &mut rng);
        assert_eq!(c.state(), LinkState::Unauthorized);
        let wait = c.poll_timeout().unwrap() - t0;
        assert!(
            wait >= Duration::from_secs(54) && wait <= Duration::from_secs(66),
            "{wait:?}"
        );
        // Ten minutes of refusals: at most ~10 attempts (one per maximum backoff).
        let mut now = t0;
        let mut attempts = 0;
        while now < t0 + Duration::from_secs(600) {
            now = c.poll_timeout().unwrap();
            if c.handle_timeout(now) == Some(LinkAction::Connect) {
                attempts += 1;
                c.handle(now, LinkInput::ConnectFailed { auth: true }, &mut rng);
            }
        }
        assert!(attempts <= 11, "{attempts} attempts in 10 minutes");
        assert_eq!(
            c.take_transitions(),
            [Transition::OutageStarted { unauthorized: true }]
        );
    }

    #[test]
    fn auth_close_codes_and_refused_registration_are_unauthorized() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(5);
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        c.handle(t0, LinkInput::Connected, &mut rng);
        c.handle(t0, LinkInput::Closed { auth: true }, &mut rng);
        assert_eq!(c.state(), LinkState::Unauthorized);
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        c.handle(t0, LinkInput::Connected, &mut rng);
        assert_eq!(
            c.handle(t0, LinkInput::RegistrationRefused, &mut rng),
            Some(LinkAction::Close)
        );
        assert_eq!(c.state(), LinkState::Unauthorized);
    }

    #[test]
    fn the_close_after_a_refused_registration_keeps_the_unauthorized_schedule() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut c = connected(t0, &mut rng);
        assert_eq!(
            c.handle(t0, LinkInput::RegistrationRefused, &mut rng),
            Some(LinkAction::Close)
        );
        let scheduled = c.poll_timeout();
        // The socket closes because the robot asked it to (a normal close, not an auth code).
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(
            c.handle(t1, LinkInput::Closed { auth: false }, &mut rng),
            None
        );
        assert_eq!(c.state(), LinkState::Unauthorized);
        assert_eq!(c.poll_timeout(), scheduled, "the close keeps the schedule");
        let wait = scheduled.unwrap() - t0;
        assert!(wait >= Duration::from_secs(54), "{wait:?}");
        // Twenty seconds later: no attempt was made.
        let mut attempts = 0;
        while let Some(now) = c.poll_timeout() {
            if now > t0 + Duration::from_secs(20) {
                break;
            }
            if c.handle_timeout(now).is_some() {
                attempts += 1;
                c.handle(now, LinkInput::Connected, &mut rng);
                c.handle(now, LinkInput::RegistrationRefused, &mut rng);
                c.handle(now, LinkInput::Closed { auth: false }, &mut rng);
            }
        }
        assert_eq!(attempts, 0);
    }

    /// Seconds from the orchestrator being back (after `down` seconds) to the robot connected
    /// again, for a robot with the reference reconnect parameters whose connection dropped at t0.
    fn reregister_after(down: f64, seed: u64) -> f64 {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed);
        // `conn` has the reference parameters (1 s, ×2, 60 s) and the default breaker.
        let mut c = connected(t0, &mut rng);
        c.handle(t0, LinkInput::Closed { auth: false }, &mut rng);
        let back = t0 + Duration::from_secs_f64(down);
        loop {
            let now = c.poll_timeout().expect("an attempt is scheduled");
            if c.handle_timeout(now) != Some(LinkAction::Connect) {
                continue;
            }
            if now >= back {
                return (now - back).as_secs_f64();
            }
            c.handle(now, LinkInput::ConnectFailed { auth: false }, &mut rng);
        }
    }

    #[test]
    fn after_an_orchestrator_restart_the_robot_is_back_within_5_s_at_p95() {
        // Restarts that take 1 to 5 s, 1,000 robots of a fleet each.
        let mut seed = 0;
        for down in [1.0, 2.0, 3.0, 4.0, 5.0] {
            let mut waits: Vec<f64> = (0..1_000)
                .map(|_| {
                    seed += 1;
                    reregister_after(down, seed)
                })
                .collect();
            waits.sort_by(f64::total_cmp);
            let p95 = waits[waits.len() * 95 / 100];
            println!("down {down} s: p95 {p95:.2} s");
            assert!(p95 <= 5.0, "down {down} s: p95 {p95:.2} s");
            // The fleet stays spread out: first attempts differ by more than a second overall.
            let spread = waits[waits.len() - 1] - waits[0];
            assert!(spread >= 1.0, "down {down} s: spread {spread:.2} s");
        }
    }

    #[test]
    fn quick_attempts_are_capped_then_the_schedule_resumes_from_the_cap() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(9);
        let mut c = connected(t0, &mut rng);
        c.handle(t0, LinkInput::Closed { auth: false }, &mut rng);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..7 {
            let next = c.poll_timeout().unwrap();
            waits.push(next - now);
            now = next;
            assert_eq!(c.handle_timeout(now), Some(LinkAction::Connect));
            c.handle(now, LinkInput::ConnectFailed { auth: false }, &mut rng);
            if c.snapshot(now).breaker.state.as_str() == "open" {
                break;
            }
        }
        let ceilings = [1, 2, 2, 2, 2, 4, 8].map(Duration::from_secs);
        for (idx, (wait, ceiling)) in waits.iter().zip(ceilings).enumerate() {
            assert!(
                *wait <= ceiling,
                "attempt {}: {wait:?} > {ceiling:?}",
                idx + 1
            );
        }
        // A first start (no connection was up) keeps the plain schedule.
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        let mut now = t0;
        let mut third = Duration::ZERO;
        for _ in 0..3 {
            c.handle(now, LinkInput::ConnectFailed { auth: false }, &mut rng);
            let next = c.poll_timeout().unwrap();
            third = next - now;
            now = next;
            c.handle_timeout(now);
        }
        assert!(
            third >= Duration::from_millis(400),
            "{third:?}: ceiling 4 s, floor 0.4 s"
        );
    }

    #[test]
    fn a_drop_reconnects_quickly_and_stop_is_final() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(6);
        let mut c = conn(t0);
        c.handle(t0, LinkInput::Start, &mut rng);
        c.handle(t0, LinkInput::Connected, &mut rng);
        c.handle(t0, LinkInput::Closed { auth: false }, &mut rng);
        assert_eq!(c.state(), LinkState::Reconnecting);
        assert!(c.poll_timeout().unwrap() - t0 <= Duration::from_secs(1));
        assert_eq!(c.handle(t0, LinkInput::Stop, &mut rng), None);
        assert_eq!(c.state(), LinkState::Disconnected);
        assert_eq!(c.poll_timeout(), None);
        assert_eq!(
            c.handle(t0, LinkInput::Closed { auth: false }, &mut rng),
            None
        );
        assert_eq!(c.state(), LinkState::Disconnected);
    }
}

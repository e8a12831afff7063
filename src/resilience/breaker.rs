//! The circuit breaker around connection attempts and orchestrator calls (reference:
//! `robot/circuit_breaker.py`): CLOSED / OPEN / HALF_OPEN, sans-IO with the clock injected.
//!
//! - **Closed**: every call is admitted. `failure_threshold` consecutive failures open the breaker; a
//!   success resets the count.
//! - **Open**: every call is rejected with the time left. Once `timeout` has passed since it opened
//!   (`now - opened_at >= timeout`, as the reference) the breaker is half-open.
//! - **HalfOpen**: at most `half_open_max_calls` trial calls are in flight at once. Any trial failure
//!   opens it again with a fresh timeout; `success_threshold` trial successes close it.
//!
//! A call is admitted by [`CircuitBreaker::try_acquire`], which hands out a [`Permit`]; the caller
//! gives the permit back with exactly one of [`CircuitBreaker::record_success`],
//! [`CircuitBreaker::record_failure`] or [`CircuitBreaker::release`] (the call ended with neither
//! outcome, e.g. it was cancelled). A permit remembers the period (the span between two transitions)
//! it was issued in: an outcome counts only in that period, so a slow call admitted while closed and
//! finishing after the breaker re-opened neither closes it nor frees a half-open slot. A permit that is
//! dropped unreturned keeps its half-open slot until the next transition; return every permit.
//!
//! Invariants: no clock reads, no threads; the OPEN → HALF_OPEN change is computed from `now`, so
//! [`CircuitBreaker::state`] and [`CircuitBreaker::snapshot`] are exact at any instant, and the
//! transition is recorded at the instant it became due (`opened_at + timeout`) by the next `&mut`
//! call. Drivers wait for [`CircuitBreaker::poll_timeout`] and call
//! [`CircuitBreaker::handle_timeout`]. Every transition is kept for
//! [`CircuitBreaker::take_transitions`] (the last [`MAX_PENDING_TRANSITIONS`]).

use std::fmt;
use std::time::{Duration, Instant};

/// Transitions kept for [`CircuitBreaker::take_transitions`]; older ones are discarded first.
pub const MAX_PENDING_TRANSITIONS: usize = 1024;

/// The breaker's parameters. [`Default`] gives the reference values (5, 2, 60 s, 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures in Closed that open the breaker (0 is treated as 1).
    pub failure_threshold: u32,
    /// Trial successes in HalfOpen that close it (0 is treated as 1).
    pub success_threshold: u32,
    /// How long it stays Open before admitting trial calls.
    pub timeout: Duration,
    /// Trial calls in flight at once in HalfOpen (0 is treated as 1, or it could never close).
    pub half_open_max_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            timeout: Duration::from_secs(60),
            half_open_max_calls: 3,
        }
    }
}

/// The three states of the reference breaker; serialised as `closed`, `open`, `half_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow; failures are counted.
    Closed,
    /// Calls are rejected until the timeout has passed.
    Open,
    /// A few trial calls decide between Closed and Open.
    HalfOpen,
}

impl BreakerState {
    /// The lowercase name used in logs, status and audit (`circuit.half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum TransitionReason {
    /// Closed → Open: this many consecutive failures reached `failure_threshold`.
    FailureThreshold {
        /// The consecutive failures counted.
        consecutive_failures: u32,
    },
    /// Open → HalfOpen: `timeout` passed since the breaker opened.
    TimeoutElapsed,
    /// HalfOpen → Open: a trial call failed.
    TrialFailed,
    /// HalfOpen → Closed: this many trial calls succeeded.
    TrialsSucceeded {
        /// The trial successes counted.
        successes: u32,
    },
    /// Any → Closed: [`CircuitBreaker::reset`].
    Reset,
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransitionReason::FailureThreshold {
                consecutive_failures,
            } => {
                write!(f, "{consecutive_failures} consecutive failures")
            }
            TransitionReason::TimeoutElapsed => f.write_str("open timeout elapsed"),
            TransitionReason::TrialFailed => f.write_str("a trial call failed"),
            TransitionReason::TrialsSucceeded { successes } => {
                write!(f, "{successes} trial calls succeeded")
            }
            TransitionReason::Reset => f.write_str("reset"),
        }
    }
}

/// One state change, for the log, the audit (`circuit.opened` …) and the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// Why.
    pub reason: TransitionReason,
    /// When it happened (for Open → HalfOpen: the instant the timeout expired, even if noticed later).
    pub at: Instant,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker {} -> {} ({})",
            self.from, self.to, self.reason
        )
    }
}

impl Transition {
    /// The transition as a sentence for an info line about `what` (e.g. "connection attempts");
    /// `retry_in` is how long an open breaker holds attempts back.
    pub fn sentence(&self, what: &str, retry_in: Option<Duration>) -> String {
        let wait = retry_in
            .map(|d| format!(" for {:.0} s", d.as_secs_f64()))
            .unwrap_or_default();
        match (self.to, self.reason) {
            (BreakerState::Open, TransitionReason::TrialFailed) => {
                format!("circuit breaker opened again (a trial failed): no {what}{wait}")
            }
            (BreakerState::Open, reason) => {
                format!("circuit breaker opened after {reason}: no {what}{wait}")
            }
            (BreakerState::HalfOpen, _) => {
                format!(
                    "circuit breaker half-open (its open timeout elapsed): trial {what} allowed"
                )
            }
            (BreakerState::Closed, TransitionReason::Reset) => {
                format!("circuit breaker reset: {what} flow again")
            }
            (BreakerState::Closed, reason) => {
                format!("circuit breaker closed after {reason}: {what} flow again")
            }
        }
    }
}

/// Admission of one call. Give it back with exactly one of `record_success`, `record_failure` or
/// `release`; it is neither `Clone` nor `Copy`, so it cannot be returned twice.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "give the permit back with record_success, record_failure or release"]
pub struct Permit {
    period: u64,
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The breaker is open; trial calls are admitted after `retry_after`.
    Open {
        /// Time left until the breaker turns half-open.
        retry_after: Duration,
    },
    /// The breaker is half-open and all its trial slots are taken; retry when one of them ends.
    HalfOpenFull {
        /// Trial calls in flight (= `half_open_max_calls`).
        in_flight: u32,
    },
}

impl Rejected {
    /// How long to wait before trying again, when that is known (not for [`Rejected::HalfOpenFull`]).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Rejected::Open { retry_after } => Some(*retry_after),
            Rejected::HalfOpenFull { .. } => None,
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Open { retry_after } => write!(
                f,
                "circuit breaker is open; retry in {:.1}s",
                retry_after.as_secs_f64()
            ),
            Rejected::HalfOpenFull { in_flight } => write!(
                f,
                "circuit breaker is half-open and its {in_flight} trial calls are in flight"
            ),
        }
    }
}

impl std::error::Error for Rejected {}

/// What the status output shows about the breaker.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BreakerSnapshot {
    /// The state at the snapshot's `now`.
    pub state: BreakerState,
    /// Failures since the last success (reset when the breaker closes).
    pub consecutive_failures: u32,
    /// Seconds since the breaker last opened; `None` once it closed again.
    pub opened_at_secs_ago: Option<f64>,
    /// Seconds until trial calls are admitted; `Some` only while open.
    pub next_attempt_in_secs: Option<f64>,
    /// How many times the breaker opened (Closed → Open and HalfOpen → Open).
    pub total_trips: u64,
    /// Calls rejected (open, or half-open with every slot taken).
    pub rejected_calls: u64,
    /// Trial calls in flight while half-open.
    pub half_open_in_flight: u32,
}

/// The state proper, with the data each state needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open { opened_at: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A sans-IO circuit breaker; see the module docs for the rules.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    phase: Phase,
    /// Incremented by every transition; permits carry the value of their period.
    period: u64,
    consecutive_failures: u32,
    last_opened_at: Option<Instant>,
    total_trips: u64,
    rejected_calls: u64,
    transitions: Vec<Transition>,
}

impl CircuitBreaker {
    /// A closed breaker. Thresholds and the half-open limit of 0 are raised to 1. `now` is the
    /// construction time; it is not needed by a closed breaker and kept out of the state.
    pub fn new(config: BreakerConfig, now: Instant) -> CircuitBreaker {
        let _ = now;
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            success_threshold: config.success_threshold.max(1),
            timeout: config.timeout,
            half_open_max_calls: config.half_open_max_calls.max(1),
        };
        CircuitBreaker {
            config,
            phase: Phase::Closed,
            period: 0,
            consecutive_failures: 0,
            last_opened_at: None,
            total_trips: 0,
            rejected_calls: 0,
            transitions: Vec::new(),
        }
    }

    /// The configuration in force (after normalisation).
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The state at `now`: an open breaker whose timeout has passed is half-open.
    pub fn state(&self, now: Instant) -> BreakerState {
        self.effective_phase(now).state()
    }

    /// Admits a call, or says why not. Closed: always. Open: rejected with the time left. HalfOpen:
    /// admitted while fewer than `half_open_max_calls` trial calls are in flight.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, Rejected> {
        self.advance(now);
        let max = self.config.half_open_max_calls;
        match &mut self.phase {
            Phase::Closed => Ok(Permit {
                period: self.period,
            }),
            Phase::Open { opened_at } => {
                let due = deadline(*opened_at, self.config.timeout);
                let retry_after =
                    due.map_or(Duration::MAX, |due| due.saturating_duration_since(now));
                self.rejected_calls += 1;
                Err(Rejected::Open { retry_after })
            }
            Phase::HalfOpen { in_flight, .. } if *in_flight >= max => {
                let in_flight = *in_flight;
                self.rejected_calls += 1;
                Err(Rejected::HalfOpenFull { in_flight })
            }
            Phase::HalfOpen { in_flight, .. } => {
                *in_flight += 1;
                Ok(Permit {
                    period: self.period,
                })
            }
        }
    }

    /// The admitted call succeeded. Closed: the failure count goes back to 0. HalfOpen: one more
    /// trial success; `success_threshold` of them close the breaker. A permit from an earlier period
    /// changes nothing.
    pub fn record_success(&mut self, now: Instant, permit: Permit) {
        self.advance(now);
        if permit.period != self.period {
            return;
        }
        match &mut self.phase {
            Phase::Closed => self.consecutive_failures = 0,
            Phase::HalfOpen {
                in_flight,
                successes,
            } => {
                *in_flight = in_flight.saturating_sub(1);
                *successes += 1;
                let successes = *successes;
                self.consecutive_failures = 0;
                if successes >= self.config.success_threshold {
                    self.enter(
                        Phase::Closed,
                        TransitionReason::TrialsSucceeded { successes },
                        now,
                    );
                }
            }
            // No permit is issued in Open, and entering Open starts a new period.
            Phase::Open { .. } => {}
        }
    }

    /// The admitted call failed. Closed: one more consecutive failure; `failure_threshold` of them
    /// open the breaker. HalfOpen: the breaker opens again with a fresh timeout. A permit from an
    /// earlier period changes nothing.
    pub fn record_failure(&mut self, now: Instant, permit: Permit) {
        self.advance(now);
        if permit.period != self.period {
            return;
        }
        match self.phase {
            Phase::Closed => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let consecutive_failures = self.consecutive_failures;
                if consecutive_failures >= self.config.failure_threshold {
                    let reason = TransitionReason::FailureThreshold {
                        consecutive_failures,
                    };
                    self.enter(Phase::Open { opened_at: now }, reason, now);
                }
            }
            Phase::HalfOpen { .. } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.enter(
                    Phase::Open { opened_at: now },
                    TransitionReason::TrialFailed,
                    now,
                );
            }
            Phase::Open { .. } => {}
        }
    }

    /// The admitted call ended with neither outcome (cancelled, shut down): frees its half-open slot
    /// and counts nothing.
    pub fn release(&mut self, now: Instant, permit: Permit) {
        self.advance(now);
        if permit.period != self.period {
            return;
        }
        if let Phase::HalfOpen { in_flight, .. } = &mut self.phase {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// When the state will change by itself: the end of the open timeout, while open. `None` in the
    /// other states (only calls change them). A deadline in the past means "now".
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { opened_at } => deadline(opened_at, self.config.timeout),
            Phase::Closed | Phase::HalfOpen { .. } => None,
        }
    }

    /// Applies the time-driven transition (Open → HalfOpen) if it is due at `now`. Call it when
    /// [`CircuitBreaker::poll_timeout`] has passed, so the transition is logged without waiting for
    /// the next call.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// Forces the breaker closed and clears the failure count (e.g. after the configuration changed).
    /// Outstanding permits become stale.
    pub fn reset(&mut self, now: Instant) {
        self.advance(now);
        self.consecutive_failures = 0;
        if self.phase != Phase::Closed {
            self.enter(Phase::Closed, TransitionReason::Reset, now);
        }
    }

    /// The transitions since the last call, oldest first.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// The figures the status output shows, as of `now`.
    pub fn snapshot(&self, now: Instant) -> BreakerSnapshot {
        let phase = self.effective_phase(now);
        let next_attempt_in_secs = match phase {
            Phase::Open { opened_at } => Some(
                deadline(opened_at, self.config.timeout).map_or(f64::INFINITY, |due| {
                    due.saturating_duration_since(now).as_secs_f64()
                }),
            ),
            Phase::Closed | Phase::HalfOpen { .. } => None,
        };
        let half_open_in_flight = match phase {
            Phase::HalfOpen { in_flight, .. } => in_flight,
            Phase::Closed | Phase::Open { .. } => 0,
        };
        BreakerSnapshot {
            state: phase.state(),
            consecutive_failures: self.consecutive_failures,
            opened_at_secs_ago: self
                .last_opened_at
                .map(|at| now.saturating_duration_since(at).as_secs_f64()),
            next_attempt_in_secs,
            total_trips: self.total_trips,
            rejected_calls: self.rejected_calls,
            half_open_in_flight,
        }
    }

    /// The phase at `now` without recording anything: Open past its timeout reads as a fresh HalfOpen.
    fn effective_phase(&self, now: Instant) -> Phase {
        match self.phase {
            Phase::Open { opened_at } if self.timeout_due(opened_at, now) => Phase::HalfOpen {
                in_flight: 0,
                successes: 0,
            },
            phase => phase,
        }
    }

    fn timeout_due(&self, opened_at: Instant, now: Instant) -> bool {
        deadline(opened_at, self.config.timeout).is_some_and(|due| now >= due)
    }

    /// Records the Open → HalfOpen transition if it is due, dated when it became due.
    fn advance(&mut self, now: Instant) {
        if let Phase::Open { opened_at } = self.phase {
            if let Some(due) = deadline(opened_at, self.config.timeout).filter(|due| now >= *due) {
                let half_open = Phase::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                };
                self.enter(half_open, TransitionReason::TimeoutElapsed, due);
            }
        }
    }

    fn enter(&mut self, phase: Phase, reason: TransitionReason, at: Instant) {
        let from = self.phase.state();
        self.phase = phase;
        self.period += 1;
        match phase {
            Phase::Open { .. } => {
                self.total_trips += 1;
                self.last_opened_at = Some(at);
            }
            Phase::Closed => {
                self.consecutive_failures = 0;
                self.last_opened_at = None;
            }
            Phase::HalfOpen { .. } => {}
        }
        if self.transitions.len() >= MAX_PENDING_TRANSITIONS {
            self.transitions.remove(0);
        }
        self.transitions.push(Transition {
            from,
            to: phase.state(),
            reason,
            at,
        });
    }
}

/// `opened_at + timeout`, or `None` when that is beyond what `Instant` can represent (never due).
fn deadline(opened_at: Instant, timeout: Duration) -> Option<Instant> {
    opened_at.checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::BreakerState::{Closed, HalfOpen, Open};
    use super::*;

    const SEC: u64 = 1000;

    /// What `try_acquire` answered.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Got {
        Granted,
        Open(u64),
        Full(u32),
    }

    /// One step of a script; times are milliseconds after the base instant, permits are numbered in
    /// the order they were granted.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        Acquire(u64, Got),
        Succeed(u64, usize),
        Fail(u64, usize),
        Release(u64, usize),
        /// Acquire and fail this many calls in a row.
        Failures(u64, u32),
        State(u64, BreakerState),
        /// `consecutive_failures` in the snapshot.
        Failed(u64, u32),
        /// `handle_timeout`.
        Tick(u64),
    }
    use Step::*;

    type Seen = (BreakerState, BreakerState, TransitionReason, u64);

    fn run(config: BreakerConfig, steps: &[Step]) -> (CircuitBreaker, Vec<Seen>, Instant) {
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let mut breaker = CircuitBreaker::new(config, base);
        let mut permits: Vec<Option<Permit>> = Vec::new();
        for (idx, step) in steps.iter().enumerate() {
            match *step {
                Acquire(ms, expected) => {
                    let got = match breaker.try_acquire(at(ms)) {
                        Ok(permit) => {
                            permits.push(Some(permit));
                            Got::Granted
                        }
                        Err(Rejected::Open { retry_after }) => {
                            Got::Open(retry_after.as_millis() as u64)
                        }
                        Err(Rejected::HalfOpenFull { in_flight }) => Got::Full(in_flight),
                    };
                    assert_eq!(got, expected, "step {idx}: {step:?}");
                }
                Succeed(ms, n) => breaker.record_success(at(ms), permit(&mut permits, n)),
                Fail(ms, n) => breaker.record_failure(at(ms), permit(&mut permits, n)),
                Release(ms, n) => breaker.release(at(ms), permit(&mut permits, n)),
                Failures(ms, count) => {
                    for _ in 0..count {
                        let permit = breaker.try_acquire(at(ms));
                        assert!(permit.is_ok(), "step {idx}: {step:?}");
                        if let Ok(permit) = permit {
                            permits.push(None);
                            breaker.record_failure(at(ms), permit);
                        }
                    }
                }
                State(ms, expected) => {
                    assert_eq!(breaker.state(at(ms)), expected, "step {idx}: {step:?}")
                }
                Tick(ms) => breaker.handle_timeout(at(ms)),
                Failed(ms, expected) => assert_eq!(
                    breaker.snapshot(at(ms)).consecutive_failures,
                    expected,
                    "step {idx}: {step:?}"
                ),
            }
        }
        let seen = breaker
            .take_transitions()
            .into_iter()
            .map(|t| {
                (
                    t.from,
                    t.to,
                    t.reason,
                    t.at.duration_since(base).as_millis() as u64,
                )
            })
            .collect();
        (breaker, seen, base)
    }

    fn permit(permits: &mut [Option<Permit>], n: usize) -> Permit {
        permits[n].take().expect("each permit is returned once")
    }

    const TRIPPED: TransitionReason = TransitionReason::FailureThreshold {
        consecutive_failures: 5,
    };
    const TIMED_OUT: TransitionReason = TransitionReason::TimeoutElapsed;
    const CLOSED_AFTER_2: TransitionReason = TransitionReason::TrialsSucceeded { successes: 2 };

    #[test]
    fn scripts() {
        // (name, steps, expected transitions (from, to, reason, at ms))
        let cases: &[(&str, &[Step], &[Seen])] = &[
            (
                "four failures stay closed",
                &[Failures(0, 4), State(0, Closed), Failed(0, 4)],
                &[],
            ),
            (
                "the fifth consecutive failure opens",
                &[
                    Failures(0, 4),
                    Failures(4 * SEC, 1),
                    State(4 * SEC, Open),
                    Acquire(10 * SEC, Got::Open(54 * SEC)),
                ],
                &[(Closed, Open, TRIPPED, 4 * SEC)],
            ),
            (
                "a success in closed resets the count",
                &[
                    Failures(0, 4),
                    Acquire(0, Got::Granted),
                    Succeed(0, 4),
                    Failed(0, 0),
                    Failures(0, 4),
                    State(0, Closed),
                    Failures(0, 1),
                    State(0, Open),
                ],
                &[(Closed, Open, TRIPPED, 0)],
            ),
            (
                "open rejects with the time left, then turns half-open at the timeout",
                &[
                    Failures(0, 5),
                    Acquire(1, Got::Open(59_999)),
                    Acquire(59_999, Got::Open(1)),
                    State(59_999, Open),
                    State(60 * SEC, HalfOpen),
                    Acquire(60 * SEC, Got::Granted),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                ],
            ),
            (
                "the half-open transition is dated when it was due, not when noticed",
                &[Failures(0, 5), Acquire(500 * SEC, Got::Granted)],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                ],
            ),
            (
                "half-open admits three trial calls in flight, a fourth waits for a slot",
                &[
                    Failures(0, 5),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Full(3)),
                    Release(61 * SEC, 5),
                    Acquire(61 * SEC, Got::Granted),
                    Acquire(61 * SEC, Got::Full(3)),
                    Succeed(62 * SEC, 6),
                    Acquire(62 * SEC, Got::Granted),
                    State(62 * SEC, HalfOpen),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                ],
            ),
            (
                "two trial successes close; the third trial's late failure is stale",
                &[
                    Failures(0, 5),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Granted),
                    Succeed(61 * SEC, 5),
                    State(61 * SEC, HalfOpen),
                    Succeed(62 * SEC, 6),
                    State(62 * SEC, Closed),
                    Fail(63 * SEC, 7),
                    State(63 * SEC, Closed),
                    Failed(63 * SEC, 0),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                    (HalfOpen, Closed, CLOSED_AFTER_2, 62 * SEC),
                ],
            ),
            (
                "a trial failure reopens with a fresh timeout",
                &[
                    Failures(0, 5),
                    Acquire(70 * SEC, Got::Granted),
                    Acquire(70 * SEC, Got::Granted),
                    Succeed(71 * SEC, 5),
                    Fail(72 * SEC, 6),
                    State(72 * SEC, Open),
                    Acquire(72 * SEC, Got::Open(60 * SEC)),
                    State(131_999, Open),
                    State(132 * SEC, HalfOpen),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                    (HalfOpen, Open, TransitionReason::TrialFailed, 72 * SEC),
                ],
            ),
            (
                "a call admitted while closed that ends in half-open counts nothing",
                &[
                    Acquire(0, Got::Granted),
                    Failures(0, 5),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Granted),
                    Acquire(60 * SEC, Got::Granted),
                    Succeed(61 * SEC, 0),
                    Acquire(61 * SEC, Got::Full(3)),
                    State(61 * SEC, HalfOpen),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                ],
            ),
            (
                "a stale failure in half-open does not reopen",
                &[
                    Acquire(0, Got::Granted),
                    Failures(0, 5),
                    Acquire(60 * SEC, Got::Granted),
                    Fail(61 * SEC, 0),
                    State(61 * SEC, HalfOpen),
                    Succeed(62 * SEC, 6),
                    Acquire(62 * SEC, Got::Granted),
                    Succeed(62 * SEC, 7),
                    State(62 * SEC, Closed),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                    (HalfOpen, Closed, CLOSED_AFTER_2, 62 * SEC),
                ],
            ),
            (
                "failures while open (stale permits) do not extend the timeout",
                &[
                    Acquire(0, Got::Granted),
                    Failures(0, 5),
                    Fail(30 * SEC, 0),
                    State(59_999, Open),
                    Tick(60 * SEC),
                    State(60 * SEC, HalfOpen),
                ],
                &[
                    (Closed, Open, TRIPPED, 0),
                    (Open, HalfOpen, TIMED_OUT, 60 * SEC),
                ],
            ),
            (
                "release in closed counts nothing",
                &[
                    Failures(0, 4),
                    Acquire(0, Got::Granted),
                    Release(0, 4),
                    Failed(0, 4),
                    State(0, Closed),
                ],
                &[],
            ),
        ];
        for (name, steps, expected) in cases {
            let (_, seen, _) = run(BreakerConfig::default(), steps);
            assert_eq!(&seen, expected, "{name}");
        }
    }

    #[test]
    fn threshold_edges() {
        // (failure_threshold, failures that keep it closed)
        for threshold in [1, 2, 5, 10] {
            let config = BreakerConfig {
                failure_threshold: threshold,
                ..BreakerConfig::default()
            };
            let (breaker, seen, base) = run(config, &[Failures(0, threshold - 1)]);
            assert_eq!(
                (breaker.state(base), seen.len()),
                (Closed, 0),
                "threshold {threshold}"
            );
            let (breaker, seen, base) = run(config, &[Failures(0, threshold)]);
            let reason = TransitionReason::FailureThreshold {
                consecutive_failures: threshold,
            };
            assert_eq!(breaker.state(base), Open, "threshold {threshold}");
            assert_eq!(seen, [(Closed, Open, reason, 0)], "threshold {threshold}");
        }
        // success_threshold 1 and 3: closed by exactly that many trial successes
        for success_threshold in [1u32, 3] {
            let config = BreakerConfig {
                success_threshold,
                half_open_max_calls: 5,
                ..BreakerConfig::default()
            };
            let mut steps = vec![Failures(0, 5)];
            for _ in 0..success_threshold {
                steps.push(Acquire(60 * SEC, Got::Granted));
            }
            for n in 0..success_threshold as usize {
                steps.push(State(61 * SEC, HalfOpen));
                steps.push(Succeed(61 * SEC, 5 + n));
            }
            steps.push(State(61 * SEC, Closed));
            let (_, seen, _) = run(config, &steps);
            let reason = TransitionReason::TrialsSucceeded {
                successes: success_threshold,
            };
            assert_eq!(seen.last(), Some(&(HalfOpen, Closed, reason, 61 * SEC)));
        }
    }

    #[test]
    fn zero_config_values_are_raised_to_one() {
        let config = BreakerConfig {
            failure_threshold: 0,
            success_threshold: 0,
            timeout: Duration::ZERO,
            half_open_max_calls: 0,
        };
        let breaker = CircuitBreaker::new(config, Instant::now());
        assert_eq!(
            *breaker.config(),
            BreakerConfig {
                failure_threshold: 1,
                success_threshold: 1,
                timeout: Duration::ZERO,
                half_open_max_calls: 1
            }
        );
        // timeout 0: open is half-open at once; one trial at a time.
        let (_, seen, _) = run(
            config,
            &[
                Failures(0, 1),
                State(0, HalfOpen),
                Acquire(0, Got::Granted),
                Acquire(0, Got::Full(1)),
                Succeed(0, 1),
                State(0, Closed),
            ],
        );
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn timeout_boundary_to_the_nanosecond() {
        let base = Instant::now();
        let mut breaker = CircuitBreaker::new(BreakerConfig::default(), base);
        for _ in 0..5 {
            let permit = breaker.try_acquire(base).expect("closed admits");
            breaker.record_failure(base, permit);
        }
        let due = base + Duration::from_secs(60);
        let just_before = due - Duration::from_nanos(1);
        assert_eq!(breaker.poll_timeout(), Some(due));
        assert_eq!(breaker.state(just_before), Open);
        assert_eq!(
            breaker.try_acquire(just_before),
            Err(Rejected::Open {
                retry_after: Duration::from_nanos(1)
            })
        );
        breaker.handle_timeout(just_before);
        assert_eq!(breaker.poll_timeout(), Some(due), "not yet due");
        assert_eq!(breaker.state(due), HalfOpen);
        breaker.take_transitions();
        breaker.handle_timeout(due);
        assert_eq!(breaker.poll_timeout(), None);
        let seen = breaker.take_transitions();
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].from, seen[0].to, seen[0].reason, seen[0].at),
            (Open, HalfOpen, TIMED_OUT, due)
        );
        assert!(breaker.take_transitions().is_empty(), "taken once");
    }

    #[test]
    fn poll_timeout_only_while_open() {
        let base = Instant::now();
        let mut breaker = CircuitBreaker::new(BreakerConfig::default(), base);
        assert_eq!(breaker.poll_timeout(), None);
        for _ in 0..5 {
            let permit = breaker.try_acquire(base).expect("closed admits");
            breaker.record_failure(base, permit);
        }
        assert_eq!(breaker.poll_timeout(), Some(base + Duration::from_secs(60)));
        breaker.handle_timeout(base + Duration::from_secs(61));
        assert_eq!(breaker.poll_timeout(), None);
        // An unrepresentable deadline is never due.
        let forever = BreakerConfig {
            timeout: Duration::MAX,
            ..BreakerConfig::default()
        };
        let mut breaker = CircuitBreaker::new(forever, base);
        for _ in 0..5 {
            let permit = breaker.try_acquire(base).expect("closed admits");
            breaker.record_failure(base, permit);
        }
        assert_eq!(breaker.poll_timeout(), None);
        assert_eq!(breaker.state(base + Duration::from_secs(1 << 40)), Open);
        assert_eq!(
            breaker.try_acquire(base).map_err(|e| e.retry_after()),
            Err(Some(Duration::MAX))
        );
    }

    #[test]
    fn reset_closes_and_stales_permits() {
        let (mut breaker, _, base) = run(
            BreakerConfig::default(),
            &[Failures(0, 5), Acquire(60 * SEC, Got::Granted)],
        );
        let now = base + Duration::from_secs(61);
        let permit = breaker.try_acquire(now).expect("half-open slot");
        breaker.reset(now);
        assert_eq!(breaker.state(now), Closed);
        breaker.record_failure(now, permit);
        assert_eq!(
            breaker.snapshot(now).consecutive_failures,
            0,
            "stale after reset"
        );
        let seen: Vec<_> = breaker
            .take_transitions()
            .into_iter()
            .map(|t| (t.from, t.to, t.reason))
            .collect();
        assert_eq!(seen, [(HalfOpen, Closed, TransitionReason::Reset)]);
        breaker.reset(now);
        assert!(
            breaker.take_transitions().is_empty(),
            "reset of a closed breaker is no transition"
        );
    }

    #[test]
    fn snapshots() {
        let (breaker, _, base) = run(
            BreakerConfig::default(),
            &[
                Failures(0, 3),
                Failures(10 * SEC, 2),
                Acquire(15 * SEC, Got::Open(55 * SEC)),
            ],
        );
        let at = |secs| base + Duration::from_secs(secs);
        let json = |secs| serde_json::to_value(breaker.snapshot(at(secs))).unwrap_or_default();
        assert_eq!(
            json(40),
            serde_json::json!({"state": "open", "consecutive_failures": 5, "opened_at_secs_ago": 30.0,
                "next_attempt_in_secs": 30.0, "total_trips": 1, "rejected_calls": 1, "half_open_in_flight": 0})
        );
        assert_eq!(
            json(75),
            serde_json::json!({"state": "half_open", "consecutive_failures": 5, "opened_at_secs_ago": 65.0,
                "next_attempt_in_secs": null, "total_trips": 1, "rejected_calls": 1, "half_open_in_flight": 0})
        );
        let fresh = CircuitBreaker::new(BreakerConfig::default(), base);
        assert_eq!(
            serde_json::to_value(fresh.snapshot(base)).unwrap_or_default(),
            serde_json::json!({"state": "closed", "consecutive_failures": 0, "opened_at_secs_ago": null,
                "next_attempt_in_secs": null, "total_trips": 0, "rejected_calls": 0, "half_open_in_flight": 0})
        );
    }

    #[test]
    fn messages() {
        let open = Rejected::Open {
            retry_after: Duration::from_millis(12_345),
        };
        assert_eq!(open.to_string(), "circuit breaker is open; retry in 12.3s");
        assert_eq!(
            Rejected::HalfOpenFull { in_flight: 3 }.to_string(),
            "circuit breaker is half-open and its 3 trial calls are in flight"
        );
        let transition = Transition {
            from: Closed,
            to: Open,
            reason: TRIPPED,
            at: Instant::now(),
        };
        assert_eq!(
            transition.to_string(),
            "circuit breaker closed -> open (5 consecutive failures)"
        );
        let secs = Some(Duration::from_secs(60));
        let sentence = |from, to, reason, retry_in| {
            Transition {
                from,
                to,
                reason,
                at: Instant::now(),
            }
            .sentence("connection attempts", retry_in)
        };
        assert_eq!(
            sentence(Closed, Open, TRIPPED, secs),
            "circuit breaker opened after 5 consecutive failures: no connection attempts for 60 s"
        );
        assert_eq!(
            sentence(HalfOpen, Open, TransitionReason::TrialFailed, secs),
            "circuit breaker opened again (a trial failed): no connection attempts for 60 s"
        );
        assert_eq!(
            sentence(Open, HalfOpen, TIMED_OUT, None),
            "circuit breaker half-open (its open timeout elapsed): trial connection attempts allowed"
        );
        assert_eq!(
            sentence(HalfOpen, Closed, CLOSED_AFTER_2, None),
            "circuit breaker closed after 2 trial calls succeeded: connection attempts flow again"
        );
        assert_eq!(
            serde_json::to_value(TRIPPED).unwrap_or_default(),
            serde_json::json!({"reason": "failure_threshold", "consecutive_failures": 5})
        );
    }
}

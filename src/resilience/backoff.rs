//! Reconnect delays: exponential backoff with full jitter and a floor.
//!
//! [`Backoff`] owns one counter, the number of delays handed out since the last [`Backoff::reset`].
//! The delay for attempt `n` is drawn from `[floor(c), c]` where the ceiling
//! `c = min(max, initial × factor^n)` and the floor is `max(c / 10, 100 ms)` (see [`MIN_DELAY`]):
//! full jitter spreads a fleet of robots that lost the same orchestrator, and the floor makes sure a
//! reconnect loop never spins, whatever the configuration says.
//!
//! Invariants: no clock, no threads, no sleeping; randomness comes from the caller's
//! `fastrand::Rng`, so a seeded generator gives exact, repeatable delays. No input overflows: the
//! ceiling is computed in `f64`, where a huge `factor^n` becomes infinity and is then capped at `max`.
//! Reference parameters: `reconnect_delay` 1 s, `reconnect_backoff_factor` 2, `max_reconnect_delay` 60 s.

use std::time::Duration;

/// The absolute lower bound of any delay this module returns: 100 ms. A configuration of zeros still
/// yields a reconnect rate of at most ten attempts a second.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// The reference `reconnect_delay`: the ceiling of the first delay.
pub const DEFAULT_INITIAL: Duration = Duration::from_secs(1);

/// The reference `reconnect_backoff_factor`.
pub const DEFAULT_FACTOR: f64 = 2.0;

/// The reference `max_reconnect_delay`: the largest ceiling.
pub const DEFAULT_MAX: Duration = Duration::from_secs(60);

/// Exponential backoff with full jitter, a floor and a cap. Sans-IO: the caller sleeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    attempt: u32,
}

/// What the status output shows about the reconnect backoff.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BackoffSnapshot {
    /// Delays handed out since the last reset (the number of the next attempt, from 0).
    pub attempt: u32,
    /// The un-jittered ceiling of the next delay, in seconds.
    pub next_ceiling_secs: f64,
    /// The cap of every ceiling (`max_reconnect_delay`), in seconds.
    pub max_secs: f64,
}

impl Default for Backoff {
    /// The reference parameters: 1 s, ×2, up to 60 s.
    fn default() -> Backoff {
        Backoff::new(DEFAULT_INITIAL, DEFAULT_FACTOR, DEFAULT_MAX)
    }
}

impl Backoff {
    /// A backoff whose first ceiling is `initial`, multiplied by `factor` per attempt, capped at `max`.
    ///
    /// Normalisation (config validation should reject these, this keeps the core total): a `factor`
    /// that is below 1.0 or not finite becomes 1.0 (constant delays); a `max` below `initial` is
    /// raised to `initial`.
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Backoff {
        let factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        Backoff {
            initial,
            factor,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next attempt, then counts that attempt.
    ///
    /// Uniform in `[max(c / 10, MIN_DELAY), max(c, MIN_DELAY)]` with `c` = [`Backoff::ceiling`].
    pub fn next_delay(&mut self, rng: &mut fastrand::Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let floor = (ceiling / 10).max(MIN_DELAY);
        uniform(rng, floor, ceiling.max(MIN_DELAY))
    }

    /// Like [`Backoff::next_delay`] with the ceiling capped at `cap`: uniform in
    /// `[max(cap / 10, MIN_DELAY), cap]` once the ceiling passes the cap. The counter advances only
    /// while the ceiling is within the cap, so the schedule resumes *from* the cap afterwards
    /// (1 s, 2 s, 2 s, then 4 s, 8 s … with the reference parameters and a 2 s cap).
    pub fn next_delay_capped(&mut self, rng: &mut fastrand::Rng, cap: Duration) -> Duration {
        if self.ceiling() <= cap {
            return self.next_delay(rng);
        }
        let floor = (cap / 10).max(MIN_DELAY);
        uniform(rng, floor, cap.max(MIN_DELAY))
    }

    /// The un-jittered ceiling of the next delay: `min(max, initial × factor^attempt)`.
    pub fn ceiling(&self) -> Duration {
        ceiling_for(self.initial, self.factor, self.max, self.attempt)
    }

    /// Delays handed out since construction or the last [`Backoff::reset`].
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Starts over at the first delay: call it once a connection is established (registered).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The configured cap of the ceilings (`max_reconnect_delay`), without jitter.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// What an unauthorized robot waits between attempts: the maximum, jittered ±10 %
    /// (uniform in `[0.9 × max, 1.1 × max]`, never below [`MIN_DELAY`]). It does not count an attempt.
    pub fn max_delay(&self, rng: &mut fastrand::Rng) -> Duration {
        let low = (self.max - self.max / 10).max(MIN_DELAY);
        let high = (self.max.saturating_add(self.max / 10)).max(MIN_DELAY);
        uniform(rng, low, high)
    }

    /// The figures the status output shows.
    pub fn snapshot(&self) -> BackoffSnapshot {
        BackoffSnapshot {
            attempt: self.attempt,
            next_ceiling_secs: self.ceiling().as_secs_f64(),
            max_secs: self.max.as_secs_f64(),
        }
    }
}

/// `min(max, initial × factor^attempt)`, total for every input (`factor` ≥ 1 and finite).
fn ceiling_for(initial: Duration, factor: f64, max: Duration, attempt: u32) -> Duration {
    let max_secs = max.as_secs_f64();
    // factor ≥ 1, so the power is ≥ 1 or +infinity; the product is NaN only for 0 × infinity.
    let raw = initial.as_secs_f64() * factor.powf(f64::from(attempt));
    if raw.is_nan() {
        return Duration::ZERO;
    }
    if raw >= max_secs {
        return max;
    }
    Duration::from_secs_f64(raw)
}

/// Uniform in `[low, high]` at nanosecond resolution (`low <= high`; both far below 584 years).
fn uniform(rng: &mut fastrand::Rng, low: Duration, high: Duration) -> Duration {
    let low_ns = u64::try_from(low.as_nanos()).unwrap_or(u64::MAX);
    let high_ns = u64::try_from(high.as_nanos())
        .unwrap_or(u64::MAX)
        .max(low_ns);
    Duration::from_nanos(rng.u64(low_ns..=high_ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn ceilings(backoff: &mut Backoff, n: usize) -> Vec<Duration> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..n)
            .map(|_| {
                let ceiling = backoff.ceiling();
                backoff.next_delay(&mut rng);
                ceiling
            })
            .collect()
    }

    #[test]
    fn reference_ceilings() {
        let mut backoff = Backoff::default();
        assert_eq!(
            ceilings(&mut backoff, 8),
            [S(1), S(2), S(4), S(8), S(16), S(32), S(60), S(60)]
        );
        assert_eq!(backoff.attempt(), 8);
    }

    #[test]
    fn ceiling_table() {
        // (initial, factor, max, expected ceilings for attempts 0..)
        let cases: &[(Duration, f64, Duration, &[Duration])] = &[
            (
                S(1),
                2.0,
                S(60),
                &[S(1), S(2), S(4), S(8), S(16), S(32), S(60)],
            ),
            (S(1), 1.0, S(60), &[S(1), S(1), S(1), S(1)]),
            (S(5), 2.0, S(60), &[S(5), S(10), S(20), S(40), S(60), S(60)]),
            (MS(100), 3.0, S(1), &[MS(100), MS(300), MS(900), S(1), S(1)]),
            // factor below 1 or not finite: constant
            (S(2), 0.5, S(60), &[S(2), S(2), S(2)]),
            (S(2), f64::NAN, S(60), &[S(2), S(2)]),
            (S(2), f64::INFINITY, S(60), &[S(2), S(2)]),
            // max below initial is raised to initial
            (S(10), 2.0, S(3), &[S(10), S(10)]),
            (
                Duration::ZERO,
                2.0,
                S(60),
                &[Duration::ZERO, Duration::ZERO],
            ),
        ];
        for &(initial, factor, max, expected) in cases {
            let mut backoff = Backoff::new(initial, factor, max);
            let got = ceilings(&mut backoff, expected.len());
            assert_eq!(
                got, expected,
                "initial {initial:?} factor {factor} max {max:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_floor_and_ceiling() {
        let mut rng = fastrand::Rng::with_seed(42);
        for _ in 0..200 {
            let mut backoff = Backoff::default();
            for _ in 0..10 {
                let ceiling = backoff.ceiling();
                let floor = (ceiling / 10).max(MIN_DELAY);
                let delay = backoff.next_delay(&mut rng);
                assert!(
                    floor <= delay && delay <= ceiling,
                    "{delay:?} not in [{floor:?}, {ceiling:?}]"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads_over_the_range() {
        // 2,000 draws at the 60 s ceiling cover both ends of [6 s, 60 s] and average near 33 s.
        let mut rng = fastrand::Rng::with_seed(1);
        let mut backoff = Backoff::default();
        for _ in 0..6 {
            backoff.next_delay(&mut rng);
        }
        let draws: Vec<Duration> = (0..2000).map(|_| backoff.next_delay(&mut rng)).collect();
        let min = draws.iter().min().copied().unwrap_or_default();
        let max = draws.iter().max().copied().unwrap_or_default();
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / draws.len() as f64;
        assert!(min >= S(6) && min < S(7), "min {min:?}");
        assert!(max <= S(60) && max > S(59), "max {max:?}");
        assert!((31.0..35.0).contains(&mean), "mean {mean}");
    }

    #[test]
    fn seeded_draws_repeat_exactly() {
        let draw = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut backoff = Backoff::default();
            (0..8)
                .map(|_| backoff.next_delay(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn floor_applies_to_tiny_and_zero_configs() {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut zero = Backoff::new(Duration::ZERO, 2.0, Duration::ZERO);
        let mut tiny = Backoff::new(MS(1), 2.0, MS(50));
        for _ in 0..100 {
            assert_eq!(zero.next_delay(&mut rng), MIN_DELAY);
            assert_eq!(tiny.next_delay(&mut rng), MIN_DELAY);
        }
        assert_eq!(zero.max_delay(&mut rng), MIN_DELAY);
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = fastrand::Rng::with_seed(5);
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_delay(&mut rng);
        }
        assert_eq!((backoff.attempt(), backoff.ceiling()), (5, S(32)));
        backoff.reset();
        assert_eq!((backoff.attempt(), backoff.ceiling()), (0, S(1)));
        let delay = backoff.next_delay(&mut rng);
        assert!(MIN_DELAY <= delay && delay <= S(1));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut rng = fastrand::Rng::with_seed(11);
        for factor in [1.0, 1.0001, 2.0, 10.0, 1e300] {
            let mut backoff = Backoff::new(S(1), factor, S(60));
            backoff.attempt = u32::MAX - 1;
            let expected = if factor == 1.0 { S(1) } else { S(60) };
            assert_eq!(backoff.ceiling(), expected, "factor {factor}");
            backoff.next_delay(&mut rng);
            backoff.next_delay(&mut rng);
            assert_eq!(backoff.attempt(), u32::MAX, "the counter saturates");
            assert_eq!(backoff.ceiling(), expected, "factor {factor}");
        }
        // A huge max does not overflow the jitter or the ±10 % either.
        let mut backoff = Backoff::new(S(1), 2.0, Duration::MAX);
        backoff.attempt = 1000;
        assert_eq!(backoff.ceiling(), Duration::MAX);
        backoff.next_delay(&mut rng);
        backoff.max_delay(&mut rng);
    }

    #[test]
    fn max_delay_is_the_maximum_jittered_ten_percent() {
        let mut rng = fastrand::Rng::with_seed(13);
        let backoff = Backoff::default();
        let draws: Vec<Duration> = (0..2000).map(|_| backoff.max_delay(&mut rng)).collect();
        assert!(draws.iter().all(|d| (S(54)..=S(66)).contains(d)));
        assert!(draws.iter().any(|d| *d < S(55)) && draws.iter().any(|d| *d > S(65)));
        assert_eq!(backoff.attempt(), 0, "max_delay does not count an attempt");
        assert_eq!(backoff.max(), S(60));
    }

    #[test]
    fn snapshot_shows_attempt_and_ceiling() {
        let mut rng = fastrand::Rng::with_seed(17);
        let mut backoff = Backoff::default();
        backoff.next_delay(&mut rng);
        backoff.next_delay(&mut rng);
        let json = serde_json::to_value(backoff.snapshot()).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"attempt": 2, "next_ceiling_secs": 4.0, "max_secs": 60.0})
        );
    }
}

//! Reconnection policy for network sources: exponential backoff with a cap, an optional attempt limit
//! and optional jitter.
//!
//! `vigilsrc` asks [`Backoff::next_delay`] how long to wait before each reconnection attempt after a
//! failure, and calls [`Backoff::reset`] once a (re)connected source delivers a frame. The policy is
//! plain Rust and has no clock of its own: callers sleep.
//!
//! ```
//! use std::time::Duration;
//! use vigil_core::backoff::{Backoff, BackoffPolicy};
//!
//! let mut b = Backoff::new(BackoffPolicy {
//!     initial: Duration::from_millis(500),
//!     max: Duration::from_secs(2),
//!     max_attempts: Some(4),
//!     jitter: 0.0,
//! });
//! let delays: Vec<_> = std::iter::from_fn(|| b.next_delay()).collect();
//! assert_eq!(delays, [500, 1000, 2000, 2000].map(Duration::from_millis));
//! ```

use std::time::Duration;

/// How a source waits between reconnection attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first attempt after a failure.
    pub initial: Duration,
    /// Largest delay; the delay doubles after each failed attempt until it reaches this.
    pub max: Duration,
    /// Attempts allowed before giving up; `None` = forever, `Some(0)` = never reconnect.
    pub max_attempts: Option<u32>,
    /// Fraction (0..=1) by which each delay is randomly shortened, so that many cameras that fail
    /// together do not all reconnect at the same instant. 0 = exact delays (tests).
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(1000),
            max: Duration::from_millis(30_000),
            max_attempts: None,
            jitter: 0.0,
        }
    }
}

impl BackoffPolicy {
    /// The policy of `vigilsrc`'s properties: intervals in milliseconds, `attempts` < 0 = forever.
    pub fn from_millis(initial_ms: u32, max_ms: u32, attempts: i32) -> Self {
        Self {
            initial: Duration::from_millis(u64::from(initial_ms)),
            max: Duration::from_millis(u64::from(max_ms.max(initial_ms))),
            max_attempts: u32::try_from(attempts).ok(),
            jitter: 0.0,
        }
    }
}

/// The state of one source's reconnection: which attempt comes next.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_seed(policy, 0x9e37_79b9_7f4a_7c15)
    }

    /// Like [`Backoff::new`] with the seed of the jitter generator given (each source should use its own).
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Self {
        Self {
            policy,
            attempt: 0,
            rng: seed | 1,
        }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Attempts made since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// True when no attempt is left.
    pub fn exhausted(&self) -> bool {
        self.policy
            .max_attempts
            .is_some_and(|max| self.attempt >= max)
    }

    /// The delay before the next attempt, counting it; `None` when the attempts are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.exhausted() {
            return None;
        }
        let base = self.base_delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = self.policy.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return Some(base);
        }
        let u = self.next_unit();
        Some(base.mul_f64(1.0 - jitter * u))
    }

    /// After a successful connection: the next failure starts again at the initial delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// `initial * 2^attempt`, capped at `max`, without overflow.
    fn base_delay(&self, attempt: u32) -> Duration {
        let max = self.policy.max.max(self.policy.initial);
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.policy
            .initial
            .checked_mul(factor)
            .map_or(max, |d| d.min(max))
    }

    /// A number in [0, 1) from a xorshift generator.
    fn next_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: ms(1000),
            max: ms(30_000),
            max_attempts: None,
            jitter: 0.0,
        });
        let d: Vec<_> = (0..8).map(|_| b.next_delay().unwrap()).collect();
        assert_eq!(
            d,
            [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000].map(ms)
        );
        assert_eq!(b.attempts(), 8);
    }

    #[test]
    fn backoff_attempt_limit_and_reset() {
        let mut b = Backoff::new(BackoffPolicy::from_millis(500, 2000, 3));
        assert_eq!(b.next_delay(), Some(ms(500)));
        assert_eq!(b.next_delay(), Some(ms(1000)));
        assert_eq!(b.next_delay(), Some(ms(2000)));
        assert!(b.exhausted());
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert!(!b.exhausted());
        assert_eq!(b.next_delay(), Some(ms(500)));
    }

    #[test]
    fn backoff_zero_attempts_never_reconnects_and_negative_is_forever() {
        let mut never = Backoff::new(BackoffPolicy::from_millis(1000, 30_000, 0));
        assert!(never.exhausted());
        assert_eq!(never.next_delay(), None);
        let mut forever = Backoff::new(BackoffPolicy::from_millis(1000, 30_000, -1));
        for _ in 0..10_000 {
            assert!(forever.next_delay().is_some());
        }
        assert_eq!(forever.next_delay(), Some(ms(30_000)));
    }

    #[test]
    fn backoff_never_overflows() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_secs(u64::MAX / 4),
            max: Duration::MAX,
            max_attempts: None,
            jitter: 0.0,
        });
        for _ in 0..100 {
            assert!(b.next_delay().is_some());
        }
        assert_eq!(b.next_delay(), Some(Duration::MAX));
    }

    #[test]
    fn backoff_max_below_initial_uses_initial() {
        let mut b = Backoff::new(BackoffPolicy::from_millis(2000, 100, -1));
        assert_eq!(b.next_delay(), Some(ms(2000)));
        assert_eq!(b.next_delay(), Some(ms(2000)));
    }

    #[test]
    fn backoff_jitter_only_shortens_within_the_fraction() {
        let mut b = Backoff::with_seed(
            BackoffPolicy {
                initial: ms(1000),
                max: ms(1000),
                max_attempts: None,
                jitter: 0.25,
            },
            42,
        );
        let d: Vec<_> = (0..200).map(|_| b.next_delay().unwrap()).collect();
        assert!(d.iter().all(|d| *d <= ms(1000) && *d >= ms(750)), "{d:?}");
        assert!(d.iter().any(|x| *x != d[0]), "jitter varies the delays");
    }
}

//! Exponential backoff with seeded jitter: the one delay policy for watches, store retries and leases.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shape of an exponential backoff.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffConfig {
    /// The first delay.
    pub initial: Duration,
    /// No delay is ever longer than this.
    pub max: Duration,
    /// Each failure multiplies the delay by this (≥ 1).
    pub factor: f64,
    /// Fraction of each delay that is random, in `[0, 1]`: a delay `d` becomes `d * (1 - jitter * u)`, `u ∈ [0, 1)`.
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: 0.2,
        }
    }
}

/// A stateful backoff: `next_delay` after each failure, `reset` after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff whose jitter is drawn from a generator seeded with `seed` (deterministic).
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            failures: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The delay to wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let factor = self.config.factor.max(1.0);
        let exp = factor.powi(self.failures.min(64) as i32);
        let max = self.config.max.as_secs_f64();
        let base = (self.config.initial.as_secs_f64() * exp).min(max);
        let jitter = self.config.jitter.clamp(0.0, 1.0);
        let u: f64 = self.rng.random();
        self.failures = self.failures.saturating_add(1);
        Duration::from_secs_f64((base * (1.0 - jitter * u)).max(0.0))
    }

    /// Forgets past failures: the next delay is `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            factor: 2.0,
            jitter,
        }
    }

    #[test]
    fn grows_exponentially_to_the_cap_without_jitter() {
        let mut b = Backoff::new(cfg(0.0), 1);
        let got: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(b.failures(), 7);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_bounds_and_is_deterministic_per_seed() {
        let mut a = Backoff::new(cfg(0.5), 42);
        let mut b = Backoff::new(cfg(0.5), 42);
        let mut c = Backoff::new(cfg(0.5), 43);
        let da: Vec<Duration> = (0..10).map(|_| a.next_delay()).collect();
        let db: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        let dc: Vec<Duration> = (0..10).map(|_| c.next_delay()).collect();
        assert_eq!(da, db);
        assert_ne!(da, dc);
        for (i, d) in da.iter().enumerate() {
            let base = (100.0 * 2f64.powi(i as i32)).min(2000.0);
            let ms = d.as_secs_f64() * 1000.0;
            assert!(
                ms <= base + 1e-6 && ms >= base * 0.5 - 1e-6,
                "{i}: {ms} vs {base}"
            );
        }
    }
}

//! Pure: a token bucket that puts a floor under how often something may start (watch starts).
//!
//! The watch guard ([`crate::watch::WatchGuard`]) backs off watches that end *without* progress.
//! A server that closes every watch right after one new event defeats it: each watch made
//! progress, so each re-watch is "healthy" and immediate — client-go's reflector and kube-runtime's
//! watcher both storm there. [`StartFloor`] bounds the rate regardless: `burst` starts at once,
//! then one every `1 / per_second`. It never delays a client that re-watches at the normal pace
//! (a server timeout every few minutes), and it is pure: the caller passes the clock and sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// How many starts may happen at once, and how many per second after that.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartRate {
    /// Starts allowed back to back after a quiet spell (the bucket's size, at least 1).
    pub burst: u32,
    /// Sustained starts per second (the refill rate, > 0).
    pub per_second: f64,
}

impl Default for StartRate {
    /// 5 at once, then 1 per second: far above a healthy watch's pace (one per server
    /// timeout), far below a storm's.
    fn default() -> Self {
        Self {
            burst: 5,
            per_second: 1.0,
        }
    }
}

/// The bucket. `admit(now)` says how long to wait before the next start; the caller waits that
/// long and starts (the start is accounted at `now + wait`).
#[derive(Debug, Clone)]
pub struct StartFloor {
    rate: StartRate,
    tokens: f64,
    /// When `tokens` was last brought up to date (or the reserved start time).
    at: Option<Instant>,
}

impl StartFloor {
    pub fn new(rate: StartRate) -> Self {
        let burst = f64::from(rate.burst.max(1));
        Self {
            rate: StartRate {
                burst: rate.burst.max(1),
                per_second: if rate.per_second > 0.0 {
                    rate.per_second
                } else {
                    1.0
                },
            },
            tokens: burst,
            at: None,
        }
    }

    /// One start is wanted at `now`: how long to wait first (zero while the burst lasts).
    pub fn admit(&mut self, now: Instant) -> Duration {
        let at = *self.at.get_or_insert(now);
        if now > at {
            let refill = (now - at).as_secs_f64() * self.rate.per_second;
            self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
            self.at = Some(now);
        }
        let base = self.at.map_or(now, |a| a.max(now));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return base - now;
        }
        let need = Duration::from_secs_f64((1.0 - self.tokens) / self.rate.per_second);
        let start = base + need;
        self.tokens = 0.0;
        self.at = Some(start);
        start - now
    }
}

impl StartFloor {
    /// A start that never waits (a loop's first watch: a new loop is not a storm, and must not
    /// queue behind other loops' re-watches): takes a token if one is there; `false` if none was.
    pub fn take(&mut self, now: Instant) -> bool {
        let at = *self.at.get_or_insert(now);
        if now > at {
            let refill = (now - at).as_secs_f64() * self.rate.per_second;
            self.tokens = (self.tokens + refill).min(f64::from(self.rate.burst));
            self.at = Some(now);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One [`StartFloor`] shared by every watch loop of a client. The API server sees the client's
/// total, not each loop's: three loops with a floor each may start three times as often (the
/// fuzzer's find: 22 watch starts in 10 s across pods, services and secrets). client-go's REST
/// client shares one token bucket across its requests the same way.
#[derive(Debug, Clone)]
pub struct SharedStartFloor(Arc<Mutex<StartFloor>>);

impl SharedStartFloor {
    pub fn new(rate: StartRate) -> Self {
        Self(Arc::new(Mutex::new(StartFloor::new(rate))))
    }

    /// [`StartFloor::admit`] on the shared bucket.
    pub fn admit(&self, now: Instant) -> Duration {
        self.0.lock().expect("start floor lock poisoned").admit(now)
    }

    /// [`StartFloor::take`] on the shared bucket.
    pub fn take(&self, now: Instant) -> bool {
        self.0.lock().expect("start floor lock poisoned").take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor(burst: u32, per_second: f64) -> StartFloor {
        StartFloor::new(StartRate { burst, per_second })
    }

    #[test]
    fn a_first_start_takes_a_token_when_there_is_one_and_never_waits() {
        let t = Instant::now();
        let mut f = floor(2, 1.0);
        assert!(f.take(t));
        assert!(f.take(t));
        assert!(!f.take(t), "bucket empty: started anyway, nothing taken");
        // The re-watches after them still wait for the refill.
        assert_eq!(f.admit(t), Duration::from_secs(1));
        assert!(!f.take(t), "the refill is reserved");
        assert!(f.take(t + Duration::from_secs(2)));
    }

    #[test]
    fn a_burst_passes_then_starts_are_spaced_at_the_sustained_rate() {
        let t0 = Instant::now();
        let mut f = floor(3, 2.0);
        let waits: Vec<u128> = (0..3).map(|_| f.admit(t0).as_millis()).collect();
        assert_eq!(waits, vec![0, 0, 0], "the burst");
        // Asked again at once: 0.5 s, and a caller that did not wait is queued behind it.
        assert_eq!(f.admit(t0).as_millis(), 500);
        assert_eq!(f.admit(t0).as_millis(), 1000);
        // A caller that waits what it is told starts every 0.5 s.
        let mut now = t0 + Duration::from_millis(1000);
        for _ in 0..10 {
            let w = f.admit(now);
            assert_eq!(w.as_millis(), 500);
            now += w;
        }
    }

    #[test]
    fn a_quiet_spell_refills_the_burst_but_no_more() {
        let t0 = Instant::now();
        let mut f = floor(2, 1.0);
        assert_eq!(f.admit(t0), Duration::ZERO);
        assert_eq!(f.admit(t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(f.admit(later), Duration::ZERO);
        assert_eq!(f.admit(later), Duration::ZERO);
        assert_eq!(f.admit(later).as_millis(), 1000, "the burst is 2, not 3600");
    }

    #[test]
    fn a_healthy_pace_is_never_delayed() {
        // One re-watch per server timeout (290 s) never waits.
        let t0 = Instant::now();
        let mut f = StartFloor::new(StartRate::default());
        for i in 0..100u64 {
            assert_eq!(f.admit(t0 + Duration::from_secs(290 * i)), Duration::ZERO);
        }
    }

    #[test]
    fn nonsense_rates_are_clamped_not_panicking() {
        let t0 = Instant::now();
        let mut f = floor(0, 0.0);
        assert_eq!(f.admit(t0), Duration::ZERO, "burst 0 means 1");
        assert_eq!(f.admit(t0).as_millis(), 1000, "rate 0 means 1/s");
    }

    #[test]
    fn a_partial_refill_shortens_the_wait_by_the_time_already_waited() {
        // Burst 1, 2 per second: after the one start, a token takes 0.5 s to refill. Asked
        // 0.25 s later, half a token has refilled, so the wait is the other 0.25 s.
        let t0 = Instant::now();
        let mut f = floor(1, 2.0);
        assert_eq!(f.admit(t0), Duration::ZERO);
        assert_eq!(f.admit(t0 + Duration::from_millis(250)).as_millis(), 250);
        // The start was accounted at 0.5 s; asked 0.1 s after it, 0.4 s remain.
        assert_eq!(f.admit(t0 + Duration::from_millis(600)).as_millis(), 400);
    }
}

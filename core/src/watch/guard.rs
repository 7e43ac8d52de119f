//! Pure: the rule that tells a healthy watch end from a failure, with backoff after failures.

use std::time::Duration;

use crate::backoff::Backoff;

/// Decides, at the end of each watch, whether it was healthy; backs off after failures.
#[derive(Debug, Clone)]
pub struct WatchGuard {
    min_healthy: Duration,
    backoff: Backoff,
}

impl WatchGuard {
    pub fn new(min_healthy: Duration, backoff: Backoff) -> Self {
        Self {
            min_healthy,
            backoff,
        }
    }

    /// A watch ended after `lived`, having delivered `progress` new events. `None`: it was
    /// healthy, re-watch now (and the backoff is reset). `Some(d)`: it was a failure, wait `d`.
    pub fn watch_ended(&mut self, lived: Duration, progress: u64) -> Option<Duration> {
        if lived >= self.min_healthy || progress > 0 {
            self.backoff.reset();
            None
        } else {
            Some(self.backoff.next_delay())
        }
    }

    /// A watch ended with 410 Gone after `lived`, having delivered `progress` new events.
    /// `again`: the resourceVersion it used came from the relist that the previous 410 caused.
    /// A first 410 means our resourceVersion went stale (compaction while we were away, backing
    /// off): relist at once, as client-go's reflector does, whatever the backoff has grown to —
    /// waiting out a 30 s backoff here left a deleted Service's grants in place for 40 s (the
    /// fuzzer's find, seed 5). A 410 on a fresh list's version is the server misbehaving: the
    /// usual rule applies, so an expire-every-watch server is backed off, not stormed.
    pub fn watch_expired(
        &mut self,
        lived: Duration,
        progress: u64,
        again: bool,
    ) -> Option<Duration> {
        if again {
            self.watch_ended(lived, progress)
        } else {
            None
        }
    }

    /// A request failed outright: wait this long before the next one.
    pub fn request_failed(&mut self) -> Duration {
        self.backoff.next_delay()
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::BackoffConfig;

    #[test]
    fn guard_backs_off_only_unhealthy_watches_and_resets_after_a_healthy_one() {
        let b = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
        };
        let mut g = WatchGuard::new(Duration::from_secs(1), Backoff::new(b, 7));
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis());
        assert_eq!(ms(g.watch_ended(Duration::ZERO, 0)), Some(100));
        assert_eq!(ms(g.watch_ended(Duration::from_millis(999), 0)), Some(200));
        assert_eq!(ms(g.watch_ended(Duration::ZERO, 0)), Some(400));
        assert_eq!(g.request_failed().as_millis(), 800);
        assert_eq!(ms(g.watch_ended(Duration::ZERO, 0)), Some(1000));
        assert_eq!(ms(g.watch_ended(Duration::ZERO, 0)), Some(1000), "capped");
        // A short watch that delivered events is healthy, as is a long quiet one.
        assert_eq!(g.watch_ended(Duration::ZERO, 1), None);
        assert_eq!(ms(g.watch_ended(Duration::ZERO, 0)), Some(100), "reset");
        assert_eq!(g.watch_ended(Duration::from_secs(1), 0), None);
        assert_eq!(g.failures(), 0);
    }

    #[test]
    fn guard_counts_consecutive_failures() {
        let mut g = WatchGuard::new(
            Duration::from_secs(1),
            Backoff::new(BackoffConfig::default(), 1),
        );
        assert_eq!(g.failures(), 0);
        g.watch_ended(Duration::ZERO, 0);
        g.request_failed();
        assert_eq!(g.failures(), 2);
        g.watch_ended(Duration::from_secs(5), 0);
        assert_eq!(g.failures(), 0);
    }
}

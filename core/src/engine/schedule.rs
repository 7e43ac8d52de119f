//! Pure: when the engine reconciles — debounce, periodic resync, backoff after failure, leadership.
//!
//! The engine's loop tells the [`Scheduler`] what happened (a change, the initial lists synced,
//! leadership moved, a reconcile finished) and asks it when to wake and whether to start a
//! reconcile now. At most one reconcile runs at a time; changes that arrive while one runs are
//! coalesced into the next. Time is an input: every method takes `now`.

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};

/// What the scheduler needs to know, from [`crate::engine::EngineConfig`].
#[derive(Debug, Clone)]
pub(crate) struct ScheduleConfig {
    pub debounce: Duration,
    pub resync_interval: Duration,
    pub backoff: BackoffConfig,
    pub seed: u64,
}

/// A reconcile the scheduler started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Start {
    /// Recompute and plan every account (else only the changed ones).
    pub whole: bool,
    /// This is the periodic resync (or the first reconcile): success schedules the next one.
    pub resync: bool,
}

/// The reconcile schedule. See the module docs.
#[derive(Debug)]
pub(crate) struct Scheduler {
    config: ScheduleConfig,
    backoff: Backoff,
    /// When the next reconcile is due (a change, a retry, a forced start).
    due: Option<Instant>,
    /// When the next periodic resync is due; `None` before the first reconcile.
    next_resync: Option<Instant>,
    /// The next reconcile must be whole (startup, new leader, after a failure).
    full: bool,
    leading: bool,
    /// The view is complete (every watch has listed).
    synced: bool,
    /// It was complete once (the first time starts a whole reconcile at once).
    ever_synced: bool,
    /// The reconcile in flight, if any.
    running: Option<Start>,
}

impl Scheduler {
    pub fn new(config: ScheduleConfig, leading: bool) -> Self {
        Self {
            backoff: Backoff::new(config.backoff.clone(), config.seed),
            config,
            due: None,
            next_resync: None,
            full: true,
            leading,
            synced: false,
            ever_synced: false,
            running: None,
        }
    }

    /// The desired state changed: reconcile within one debounce window (a window, not a sliding
    /// timer — a steady flood still reconciles once per window; a pending retry is not hurried).
    pub fn changed(&mut self, now: Instant) {
        if self.due.is_none() {
            self.due = Some(now + self.config.debounce);
        }
    }

    /// The view is complete (`true`) or not: nothing starts while it is incomplete (a watch of a
    /// newly named Secret has not listed yet). The first time it is complete: a whole reconcile
    /// at once, before anything else.
    pub fn set_synced(&mut self, synced: bool, now: Instant) {
        self.synced = synced;
        if synced && !self.ever_synced {
            self.ever_synced = true;
            self.full = true;
            self.due = Some(now);
        }
    }

    /// Leadership is now `leading`. A new leader trusts nothing: a whole reconcile at once.
    pub fn set_leading(&mut self, leading: bool, now: Instant) {
        let gained = leading && !self.leading;
        self.leading = leading;
        if gained {
            self.full = true;
            self.due = Some(now);
        }
    }

    /// Whether a reconcile is in flight.
    #[cfg(test)]
    pub fn running(&self) -> bool {
        self.running.is_some()
    }

    /// When the loop should next call [`Scheduler::start`]; `None`: only an input can change that.
    pub fn wake_at(&self) -> Option<Instant> {
        if self.running.is_some() || !self.leading || !self.synced {
            return None;
        }
        self.due.or(self.next_resync)
    }

    /// Starts a reconcile if one is due at `now` (and none is running, and this replica leads
    /// and has synced).
    pub fn start(&mut self, now: Instant) -> Option<Start> {
        if self.wake_at().is_none_or(|t| t > now) {
            return None;
        }
        self.due = None;
        let resync = self.next_resync.is_none_or(|t| now >= t);
        let start = Start {
            whole: std::mem::take(&mut self.full) || resync,
            resync,
        };
        self.running = Some(start);
        Some(start)
    }

    /// The running reconcile converged.
    pub fn succeeded(&mut self, now: Instant) {
        let started = self
            .running
            .take()
            .expect("succeeded without a running reconcile");
        self.backoff.reset();
        if started.resync || self.next_resync.is_none() {
            self.next_resync = Some(now + self.config.resync_interval);
        }
    }

    /// The running reconcile failed: the next one is whole, after a backoff delay (returned),
    /// which changes arriving meanwhile do not shorten.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.running
            .take()
            .expect("failed without a running reconcile");
        let delay = self.backoff.next_delay();
        self.full = true;
        self.due = Some(now + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBOUNCE: Duration = Duration::from_millis(250);
    const RESYNC: Duration = Duration::from_secs(300);

    fn scheduler(leading: bool) -> Scheduler {
        Scheduler::new(
            ScheduleConfig {
                debounce: DEBOUNCE,
                resync_interval: RESYNC,
                backoff: BackoffConfig {
                    initial: Duration::from_secs(1),
                    max: Duration::from_secs(8),
                    factor: 2.0,
                    jitter: 0.0,
                },
                seed: 1,
            },
            leading,
        )
    }

    fn whole(resync: bool) -> Option<Start> {
        Some(Start {
            whole: true,
            resync,
        })
    }

    const KEYED: Option<Start> = Some(Start {
        whole: false,
        resync: false,
    });

    #[test]
    fn nothing_runs_before_the_initial_lists_sync() {
        let t0 = Instant::now();
        let mut s = scheduler(true);
        s.changed(t0);
        assert_eq!(s.wake_at(), None);
        assert_eq!(s.start(t0 + RESYNC), None);
        s.set_synced(true, t0);
        assert_eq!(s.wake_at(), Some(t0));
        // The first reconcile is whole and counts as the first resync.
        assert_eq!(s.start(t0), whole(true));
    }

    #[test]
    fn nothing_starts_while_the_view_is_incomplete_and_changes_wait_for_it() {
        let t0 = Instant::now();
        let mut s = scheduler(true);
        s.set_synced(true, t0);
        s.start(t0).unwrap();
        s.succeeded(t0);
        let t1 = t0 + Duration::from_secs(1);
        // A Service names a new Secret: its watch has not listed yet.
        s.changed(t1);
        s.set_synced(false, t1);
        assert_eq!(
            s.wake_at(),
            None,
            "no wake-up (and no spin) while incomplete"
        );
        assert_eq!(s.start(t1 + RESYNC), None);
        let t2 = t1 + Duration::from_secs(2);
        s.set_synced(true, t2);
        assert_eq!(s.start(t2), KEYED, "not whole: only the first sync is");
    }

    #[test]
    fn changes_debounce_into_one_keyed_reconcile_per_window() {
        let t0 = Instant::now();
        let mut s = scheduler(true);
        s.set_synced(true, t0);
        s.start(t0).unwrap();
        s.succeeded(t0);
        assert_eq!(s.wake_at(), Some(t0 + RESYNC), "idle: only the resync");
        let t1 = t0 + Duration::from_secs(1);
        s.changed(t1);
        s.changed(t1 + Duration::from_millis(200));
        assert_eq!(
            s.wake_at(),
            Some(t1 + DEBOUNCE),
            "a window, not a sliding timer"
        );
        assert_eq!(s.start(t1 + Duration::from_millis(249)), None);
        assert_eq!(s.start(t1 + DEBOUNCE), KEYED);
    }

    #[test]
    fn one_reconcile_at_a_time_and_changes_meanwhile_coalesce() {
        let t0 = Instant::now();
        let mut s = scheduler(true);
        s.set_synced(true, t0);
        s.start(t0).unwrap();
        assert!(s.running());
        let t1 = t0 + Duration::from_secs(1);
        s.changed(t1);
        s.changed(t1 + Duration::from_secs(5));
        assert_eq!(s.wake_at(), None, "nothing starts while one runs");
        assert_eq!(s.start(t1 + Duration::from_secs(10)), None);
        let t2 = t1 + Duration::from_secs(10);
        s.succeeded(t2);
        // The window opened by the first change meanwhile has passed: start at once.
        assert_eq!(s.wake_at(), Some(t1 + DEBOUNCE));
        assert_eq!(s.start(t2), KEYED);
        s.succeeded(t2);
        assert_eq!(
            s.wake_at(),
            Some(t2 + RESYNC),
            "the next resync counts from the end of the first"
        );
    }

    #[test]
    fn failures_back_off_exponentially_and_retry_whole_even_under_changes() {
        let t0 = Instant::now();
        let mut s = scheduler(true);
        s.set_synced(true, t0);
        s.start(t0).unwrap();
        s.succeeded(t0);
        let mut now = t0 + Duration::from_secs(1);
        s.changed(now);
        now += DEBOUNCE;
        assert_eq!(s.start(now), KEYED);
        for expected in [1, 2, 4, 8, 8] {
            let delay = s.failed(now);
            assert_eq!(delay, Duration::from_secs(expected));
            // A change does not hurry the retry.
            s.changed(now);
            assert_eq!(s.wake_at(), Some(now + delay));
            assert_eq!(s.start(now + delay - Duration::from_millis(1)), None);
            now += delay;
            assert_eq!(s.start(now), whole(false), "a retry is whole");
        }
        s.succeeded(now);
        // Reset: the next failure waits the initial delay again.
        s.changed(now);
        now += DEBOUNCE;
        assert_eq!(s.start(now), KEYED);
        assert_eq!(s.failed(now), Duration::from_secs(1));
    }

    #[test]
    fn the_periodic_resync_is_whole_and_reschedules_itself() {
        let t0 = Instant::now();
        let mut s = scheduler(true);
        s.set_synced(true, t0);
        s.start(t0).unwrap();
        s.succeeded(t0);
        assert_eq!(s.start(t0 + RESYNC - Duration::from_millis(1)), None);
        assert_eq!(s.start(t0 + RESYNC), whole(true));
        s.succeeded(t0 + RESYNC + Duration::from_secs(2));
        assert_eq!(s.wake_at(), Some(t0 + 2 * RESYNC + Duration::from_secs(2)));
        // A keyed reconcile in between does not move it.
        let t1 = t0 + RESYNC + Duration::from_secs(10);
        s.changed(t1);
        assert_eq!(s.start(t1 + DEBOUNCE), KEYED);
        s.succeeded(t1 + DEBOUNCE);
        assert_eq!(s.wake_at(), Some(t0 + 2 * RESYNC + Duration::from_secs(2)));
    }

    #[test]
    fn only_a_leader_reconciles_and_a_new_leader_starts_whole() {
        let t0 = Instant::now();
        let mut s = scheduler(false);
        s.set_synced(true, t0);
        s.changed(t0);
        assert_eq!(
            s.wake_at(),
            None,
            "a follower keeps a warm index and applies nothing"
        );
        assert_eq!(s.start(t0 + RESYNC), None);
        let t1 = t0 + Duration::from_secs(3);
        s.set_leading(true, t1);
        assert_eq!(s.start(t1), whole(true));
        s.succeeded(t1);
        // Lost and regained while a keyed reconcile runs: whole again once it ends.
        s.changed(t1);
        let t2 = t1 + DEBOUNCE;
        assert_eq!(s.start(t2), KEYED);
        s.set_leading(false, t2);
        s.set_leading(true, t2);
        s.succeeded(t2);
        assert_eq!(s.start(t2), whole(false));
        // Staying leader is not gaining it.
        s.succeeded(t2);
        s.set_leading(true, t2);
        assert_eq!(s.wake_at(), Some(t1 + RESYNC));
    }
}

//! The one watchdog for paused-clock runs: simulated time must advance while wall time passes, or the run is a named spin with a pprof capture.
//!
//! Under tokio's paused clock, simulated time moves only when every task is waiting. A task
//! that is always ready (the seed's bug: a loop on a closed channel) therefore freezes
//! simulated time forever, and a test that waits on a simulated deadline never ends — `cargo
//! test` hangs instead of failing. [`watch`] is the decision loop shared by the scenario runner
//! ([`crate::scenario::run`]) and [`run_paused`] (every paused-clock engine test): it samples
//! simulated time from another thread and trips when it stays frozen for
//! [`Limits::stall_after`] of wall time (only under the paused clock), or when the whole run
//! exceeds [`Limits::wall_limit`]. [`capture_stuck`] then profiles the stuck thread.
//!
//! A thread that never yields cannot be stopped from outside; [`run_paused`] leaves it behind
//! (it is reported, and it dies with the process) so that the test fails instead of hanging.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::capture::{Artifacts, Capture, DEFAULT_FREQUENCY};

/// When the watchdog trips.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall time with simulated time frozen before a paused-clock run is declared a spin.
    pub stall_after: Duration,
    /// Wall time for the whole run, paused clock or not.
    pub wall_limit: Duration,
    /// Whether the run is under the paused clock (a real-time run only has the wall limit).
    pub paused: bool,
    /// How often simulated time is sampled.
    pub poll: Duration,
}

impl Limits {
    /// Generous defaults for paused-clock tests on a loaded 2-core machine: a debug build
    /// digesting a 10,000-event flood keeps simulated time still for a few seconds at most.
    pub fn paused_test() -> Self {
        Self {
            stall_after: Duration::from_secs(30),
            wall_limit: Duration::from_secs(600),
            paused: true,
            poll: Duration::from_millis(20),
        }
    }
}

/// Why the watchdog stopped a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Trip {
    /// Simulated time stayed at `at_sim` for `frozen_for` of wall time: something never waits.
    Frozen {
        at_sim: Duration,
        frozen_for: Duration,
    },
    /// The run took `wall` of wall time (over the limit) and had reached `at_sim`.
    WallLimit { at_sim: Duration, wall: Duration },
}

impl Trip {
    /// Simulated time reached when the watchdog tripped.
    pub fn at_sim(&self) -> Duration {
        match self {
            Trip::Frozen { at_sim, .. } | Trip::WallLimit { at_sim, .. } => *at_sim,
        }
    }
}

impl fmt::Display for Trip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trip::Frozen { at_sim, frozen_for } => write!(
                f,
                "engine spin: simulated time frozen for {:.1}s (at {:.3}s simulated): a task that never waits",
                frozen_for.as_secs_f64(),
                at_sim.as_secs_f64()
            ),
            Trip::WallLimit { at_sim, wall } => write!(
                f,
                "wall deadline: still running after {:.1}s of wall time (at {:.3}s simulated)",
                wall.as_secs_f64(),
                at_sim.as_secs_f64()
            ),
        }
    }
}

/// The pure part: given the last progress and the current sample, has the run tripped?
#[derive(Debug, Clone)]
pub struct Progress {
    last_sim: Duration,
    last_moved: Instant,
    started: Instant,
}

impl Progress {
    pub fn new(sim: Duration, now: Instant) -> Self {
        Self {
            last_sim: sim,
            last_moved: now,
            started: now,
        }
    }

    /// Feeds one sample; `Ok(moved)` if the run may go on, `Err(trip)` if it must stop.
    pub fn sample(&mut self, sim: Duration, now: Instant, limits: &Limits) -> Result<bool, Trip> {
        let moved = sim != self.last_sim;
        if moved {
            self.last_sim = sim;
            self.last_moved = now;
        }
        let wall = now.saturating_duration_since(self.started);
        if wall > limits.wall_limit {
            return Err(Trip::WallLimit { at_sim: sim, wall });
        }
        let frozen_for = now.saturating_duration_since(self.last_moved);
        if limits.paused && frozen_for > limits.stall_after {
            return Err(Trip::Frozen {
                at_sim: sim,
                frozen_for,
            });
        }
        Ok(moved)
    }
}

/// Samples `sim_now` every [`Limits::poll`] until `done()`; `on_tick(moved)` after each sample
/// that did not trip. `None`: the run finished; `Some(trip)`: it must be stopped.
pub fn watch(
    limits: &Limits,
    mut sim_now: impl FnMut() -> Duration,
    done: impl Fn() -> bool,
    mut on_tick: impl FnMut(bool),
) -> Option<Trip> {
    let mut progress = Progress::new(sim_now(), Instant::now());
    while !done() {
        std::thread::sleep(limits.poll);
        if done() {
            break;
        }
        match progress.sample(sim_now(), Instant::now(), limits) {
            Ok(moved) => on_tick(moved),
            Err(trip) => return Some(trip),
        }
    }
    None
}

/// Profiles the threads named `thread_prefix*` for `window` and writes the artifacts to
/// `dir`. `None` if the profiler could not run (the trip is reported regardless).
pub fn capture_stuck(dir: &Path, thread_prefix: &str, window: Duration) -> Option<Artifacts> {
    match Capture::start(DEFAULT_FREQUENCY) {
        Ok(c) => {
            std::thread::sleep(window);
            match c.finish(dir, thread_prefix) {
                Ok(a) => Some(a),
                Err(e) => {
                    eprintln!("watchdog: writing the capture failed: {e}");
                    None
                }
            }
        }
        Err(e) => {
            eprintln!("watchdog: the profiler did not start: {e}");
            None
        }
    }
}

/// A run stopped by the watchdog, with the capture of the stuck thread.
#[derive(Debug)]
pub struct Tripped {
    pub name: String,
    pub trip: Trip,
    pub capture: Option<Artifacts>,
    /// The run's thread never returned: it was left behind.
    pub leaked: bool,
}

impl fmt::Display for Tripped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.name, self.trip)?;
        if self.leaked {
            f.write_str(" (its thread never yielded and was left behind)")?;
        }
        match &self.capture {
            Some(a) => write!(f, "\n{}", a.describe()),
            None => f.write_str("\n(no capture)"),
        }
    }
}

impl std::error::Error for Tripped {}

/// Runs `make()`'s future on its own thread (named `pg-wd-<hash of name>`, so the capture
/// keeps only it) in a current-thread runtime under the paused clock, with the watchdog
/// sampling that runtime's clock. A panic in the future is resumed on the caller's thread
/// unchanged. On a trip the stuck thread is profiled into `artifacts`, then the run is
/// cancelled (its runtime dropped) if it still yields at all; one that never yields is left
/// behind ([`Tripped::leaked`]).
pub fn run_paused<F, Fut, T>(
    name: &str,
    limits: &Limits,
    artifacts: &Path,
    make: F,
) -> Result<T, Box<Tripped>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds");
    let handle = rt.handle().clone();
    // Entering the handle makes `tokio::time::Instant::now` read that runtime's paused clock.
    let sim_now = move || {
        let _in = handle.enter();
        tokio::time::Instant::now()
    };
    let started = sim_now();
    // Linux limits thread names to 15 bytes; the capture filters by this prefix.
    let thread_name = format!("pg-wd-{}", short(name));
    let done = Arc::new(AtomicBool::new(false));
    let abort = Arc::new(tokio::sync::Notify::new());
    let thread = {
        let (done, abort) = (done.clone(), abort.clone());
        std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    rt.block_on(async {
                        tokio::select! {
                            biased;
                            _ = abort.notified() => None,
                            v = make() => Some(v),
                        }
                    })
                }));
                done.store(true, Ordering::SeqCst);
                drop(rt);
                out
            })
            .expect("spawning the test thread")
    };
    let trip = watch(
        limits,
        || sim_now() - started,
        || done.load(Ordering::SeqCst),
        |_| {},
    );
    let Some(trip) = trip else {
        return match thread.join().expect("the test thread catches its panics") {
            Ok(Some(v)) => Ok(v),
            Ok(None) => unreachable!("aborted only after a trip"),
            Err(panic) => std::panic::resume_unwind(panic),
        };
    };
    let capture = capture_stuck(artifacts, &thread_name, Duration::from_millis(700));
    abort.notify_one();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(Box::new(Tripped {
        name: name.to_string(),
        trip,
        capture,
        leaked: !thread.is_finished(),
    }))
}

fn short(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{:08x}", h as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            stall_after: Duration::from_secs(5),
            wall_limit: Duration::from_secs(60),
            paused: true,
            poll: Duration::from_millis(1),
        }
    }

    #[test]
    fn frozen_simulated_time_trips_only_after_stall_after() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::ZERO, t0);
        let l = limits();
        assert_eq!(
            p.sample(Duration::ZERO, t0 + Duration::from_secs(5), &l),
            Ok(false)
        );
        assert_eq!(
            p.sample(Duration::ZERO, t0 + Duration::from_secs(6), &l),
            Err(Trip::Frozen {
                at_sim: Duration::ZERO,
                frozen_for: Duration::from_secs(6)
            })
        );
    }

    #[test]
    fn moving_simulated_time_resets_the_stall_but_not_the_wall_limit() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::ZERO, t0);
        let l = limits();
        for s in 1..60 {
            let r = p.sample(Duration::from_secs(s), t0 + Duration::from_secs(s), &l);
            assert_eq!(r, Ok(true), "{s}");
        }
        assert!(matches!(
            p.sample(Duration::from_secs(99), t0 + Duration::from_secs(61), &l),
            Err(Trip::WallLimit { .. })
        ));
    }

    #[test]
    fn real_time_runs_never_trip_on_a_frozen_sample() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::ZERO, t0);
        let l = Limits {
            paused: false,
            ..limits()
        };
        assert_eq!(
            p.sample(Duration::ZERO, t0 + Duration::from_secs(30), &l),
            Ok(false)
        );
    }

    #[test]
    fn the_trip_message_names_the_spin() {
        let t = Trip::Frozen {
            at_sim: Duration::from_millis(1500),
            frozen_for: Duration::from_secs(3),
        };
        assert!(
            t.to_string()
                .starts_with("engine spin: simulated time frozen for 3.0s"),
            "{t}"
        );
    }

    #[test]
    fn a_finished_run_returns_its_value_and_a_panic_is_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let v = run_paused("ok", &limits(), dir.path(), || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            7
        })
        .unwrap();
        assert_eq!(v, 7);
        let r = std::panic::catch_unwind(|| {
            let _ = run_paused("boom", &limits(), dir.path(), || async { panic!("boom") });
        });
        let msg = r.unwrap_err();
        assert_eq!(msg.downcast_ref::<&str>(), Some(&"boom"));
    }

    /// A task that is always ready freezes the paused clock: the run trips instead of hanging,
    /// the capture is on disk, and since the spin still yields, the run is cancelled.
    #[test]
    fn a_yielding_spin_trips_is_captured_and_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let l = Limits {
            stall_after: Duration::from_millis(300),
            ..limits()
        };
        let r = run_paused("spin", &l, dir.path(), || async {
            tokio::spawn(async {
                loop {
                    tokio::task::yield_now().await;
                }
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let t = r.expect_err("the watchdog tripped");
        assert!(matches!(t.trip, Trip::Frozen { .. }), "{t}");
        assert!(!t.leaked, "{t}");
        let cap = t.capture.as_ref().expect("a capture");
        assert!(cap.profile.is_file(), "{t}");
    }
}

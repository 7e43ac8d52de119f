//! Pure: one list/watch loop as a state enum and one transition function that returns actions.
//!
//! Modelled on kube-runtime's `watcher::State` and `step`, with the difference that matters:
//! every end of a watch goes through the [`WatchGuard`], so a server that closes watches at once
//! is backed off instead of re-watched in a tight loop. The shell
//! ([`crate::watch::guarded_watch`]) performs each [`Action`] (a list page request, a watch
//! request, reading the next event) and feeds what happened back as an [`Input`]; it owns no
//! decision. Time is an input (`now`), so every path is testable without a runtime.
//!
//! ```text
//!            Page(cont)               Page(last)                 Opened
//!   Listing ───────────► Listing ───────────────► Starting ───────────────► Watching ─┐
//!     ▲  ▲                                         ▲   ▲  Refused(other)       │  Event│
//!     │  └── ListFailed (backoff) ─────────────────┘   └── (backoff) ◄─────────┤ ◄────┘
//!     └── Refused(410) / Ended(Expired): relist (at once the first time)        │
//!                                          Starting ◄── Ended(closed, stalled, error): guard
//! ```

use std::time::Duration;

use tokio::time::Instant;

use super::guard::WatchGuard;
use crate::metrics::RestartReason;

/// Where the loop is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// (Re)listing at one consistent resourceVersion; the page after `continue_token` is
    /// requested (`None`: the first page — the shell forgets pages gathered so far).
    Listing { continue_token: Option<String> },
    /// A watch from `from` is requested.
    Starting { from: String },
    /// A watch opened at `started` is delivering events; `last_rv` is where to resume from,
    /// `progress` the events that advanced it.
    Watching {
        last_rv: String,
        started: Instant,
        progress: u64,
    },
}

/// What happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A list page arrived: its version, and the token of the next page if any.
    Page {
        resource_version: &'a str,
        continue_token: Option<String>,
    },
    /// The list request failed or timed out; the server may have asked to wait (`Retry-After`).
    ListFailed { retry_after: Option<Duration> },
    /// The watch request was answered with a stream.
    Opened,
    /// The watch request was refused (`gone`: with 410) or timed out; the server may have
    /// asked to wait (`Retry-After`).
    Refused {
        gone: bool,
        retry_after: Option<Duration>,
    },
    /// The open watch delivered an event (`object`: an object, not a bookmark) at this version.
    Event {
        resource_version: &'a str,
        object: bool,
    },
    /// The open watch ended.
    Ended(End),
}

/// How an open watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed it.
    Closed,
    /// Nothing arrived within the idle timeout.
    Stalled,
    /// The stream failed, or carried an error event other than 410.
    Failed,
    /// An in-stream 410: the version fell out of the server's window.
    Expired,
}

/// What the shell does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Wait `after`, then request the list page after `continue_token` (`None`: start over).
    List {
        continue_token: Option<String>,
        after: Duration,
    },
    /// Wait `after` (and, unless this is the loop's `first` watch, for the shared start
    /// floor), then request a watch from `from`.
    Watch {
        from: String,
        after: Duration,
        first: bool,
    },
    /// Read the next event of the open watch.
    Read,
}

/// One transition's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub action: Action,
    /// The pages gathered form a complete list: yield them as one relist before acting.
    pub relisted: bool,
    /// Why a watch or request ended, for the restart counter.
    pub restart: Option<RestartReason>,
}

impl Step {
    fn act(action: Action) -> Self {
        Self {
            action,
            relisted: false,
            restart: None,
        }
    }

    fn restart(action: Action, reason: RestartReason) -> Self {
        Self {
            action,
            relisted: false,
            restart: Some(reason),
        }
    }
}

/// The loop's state and its guard. Start with [`Machine::new`] and [`Machine::first`].
#[derive(Debug, Clone)]
pub struct Machine {
    state: State,
    guard: WatchGuard,
    /// A server's `Retry-After` is honoured up to this long.
    max_retry_after: Duration,
    /// A watch has opened before (later watches are re-watches, held to the start floor).
    opened: bool,
    /// The last watch ended with 410, so the current version is a relist's answer to it.
    expired_last: bool,
}

/// Whether `new` is a newer resourceVersion than `old` (numeric when both parse; else "differs").
pub(crate) fn advances(old: &str, new: &str) -> bool {
    match (old.parse::<u64>(), new.parse::<u64>()) {
        (Ok(o), Ok(n)) => n > o,
        _ => !new.is_empty() && new != old,
    }
}

fn relist(after: Duration) -> Action {
    Action::List {
        continue_token: None,
        after,
    }
}

impl Machine {
    /// A loop judged by `guard`, waiting at most `max_retry_after` when a server asks to.
    pub fn new(guard: WatchGuard, max_retry_after: Duration) -> Self {
        Self {
            state: State::Listing {
                continue_token: None,
            },
            guard,
            max_retry_after,
            opened: false,
            expired_last: false,
        }
    }

    /// The first action: list from the start.
    pub fn first(&self) -> Action {
        relist(Duration::ZERO)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The guard's consecutive failures (for logs).
    pub fn failures(&self) -> u32 {
        self.guard.failures()
    }

    /// The transition function. `now` is when the input happened (for [`Input::Opened`]: when
    /// the watch was requested). An input the state does not expect is a bug in the shell.
    pub fn step(&mut self, input: Input<'_>, now: Instant) -> Step {
        let state = std::mem::replace(
            &mut self.state,
            State::Listing {
                continue_token: None,
            },
        );
        let (next, step) = self.transition(state, input, now);
        self.state = next;
        step
    }

    fn transition(&mut self, state: State, input: Input<'_>, now: Instant) -> (State, Step) {
        match (state, input) {
            (
                State::Listing { .. },
                Input::Page {
                    continue_token: Some(token),
                    ..
                },
            ) => (
                State::Listing {
                    continue_token: Some(token.clone()),
                },
                Step::act(Action::List {
                    continue_token: Some(token),
                    after: Duration::ZERO,
                }),
            ),
            (
                State::Listing { .. },
                Input::Page {
                    resource_version,
                    continue_token: None,
                },
            ) => {
                let from = resource_version.to_string();
                let step = Step {
                    action: Action::Watch {
                        from: from.clone(),
                        after: Duration::ZERO,
                        first: !self.opened,
                    },
                    relisted: true,
                    restart: None,
                };
                (State::Starting { from }, step)
            }
            (State::Listing { .. }, Input::ListFailed { retry_after }) => {
                let delay = self.failed(retry_after);
                (
                    State::Listing {
                        continue_token: None,
                    },
                    Step::restart(relist(delay), RestartReason::ListFailed),
                )
            }
            (State::Starting { from }, Input::Opened) => {
                self.opened = true;
                (
                    State::Watching {
                        last_rv: from,
                        started: now,
                        progress: 0,
                    },
                    Step::act(Action::Read),
                )
            }
            (State::Starting { .. }, Input::Refused { gone: true, .. }) => {
                self.expired(Duration::ZERO, 0)
            }
            (
                State::Starting { from },
                Input::Refused {
                    gone: false,
                    retry_after,
                },
            ) => {
                let delay = self.failed(retry_after);
                (
                    State::Starting { from: from.clone() },
                    Step::restart(
                        Action::Watch {
                            from,
                            after: delay,
                            first: !self.opened,
                        },
                        RestartReason::WatchFailed,
                    ),
                )
            }
            (
                State::Watching {
                    last_rv,
                    started,
                    progress,
                },
                Input::Event {
                    resource_version,
                    object,
                },
            ) => {
                let (last_rv, progress) = if advances(&last_rv, resource_version) {
                    (resource_version.to_string(), progress + u64::from(object))
                } else {
                    (last_rv, progress)
                };
                (
                    State::Watching {
                        last_rv,
                        started,
                        progress,
                    },
                    Step::act(Action::Read),
                )
            }
            (
                State::Watching {
                    last_rv,
                    started,
                    progress,
                },
                Input::Ended(end),
            ) => {
                let lived = now.saturating_duration_since(started);
                if end == End::Expired {
                    return self.expired(lived, progress);
                }
                self.expired_last = false;
                let delay = self.guard.watch_ended(lived, progress);
                let reason = match end {
                    End::Closed if delay.is_some() => RestartReason::ClosedEarly,
                    End::Closed => RestartReason::Closed,
                    End::Stalled => RestartReason::Stalled,
                    End::Failed | End::Expired => RestartReason::StreamError,
                };
                let action = Action::Watch {
                    from: last_rv.clone(),
                    after: delay.unwrap_or_default(),
                    first: false,
                };
                (
                    State::Starting { from: last_rv },
                    Step::restart(action, reason),
                )
            }
            (state, input) => {
                unreachable!("watch loop: input {input:?} in state {state:?}")
            }
        }
    }

    /// A request failed: the backoff's delay, or the server's `Retry-After` (bounded) if longer.
    fn failed(&mut self, retry_after: Option<Duration>) -> Duration {
        let backoff = self.guard.request_failed();
        retry_after.map_or(backoff, |asked| {
            backoff.max(asked.min(self.max_retry_after))
        })
    }

    /// The version is gone (410): relist — at once the first time, by the guard's rule after
    /// a relist's own version was refused too.
    fn expired(&mut self, lived: Duration, progress: u64) -> (State, Step) {
        let again = std::mem::replace(&mut self.expired_last, true);
        let delay = self
            .guard
            .watch_expired(lived, progress, again)
            .unwrap_or_default();
        (
            State::Listing {
                continue_token: None,
            },
            Step::restart(relist(delay), RestartReason::Expired),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{Backoff, BackoffConfig};

    const SEC: Duration = Duration::from_secs(1);

    fn machine() -> Machine {
        let backoff = BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
        };
        Machine::new(WatchGuard::new(SEC, Backoff::new(backoff, 7)), 10 * SEC)
    }

    /// A re-watch (held to the start floor).
    fn watch(from: &str, after_ms: u64) -> Action {
        Action::Watch {
            from: from.into(),
            after: Duration::from_millis(after_ms),
            first: false,
        }
    }

    /// The loop's first watch (not held to the floor).
    fn first_watch(from: &str, after_ms: u64) -> Action {
        Action::Watch {
            from: from.into(),
            after: Duration::from_millis(after_ms),
            first: true,
        }
    }

    fn list(after_ms: u64) -> Action {
        relist(Duration::from_millis(after_ms))
    }

    fn page<'a>(rv: &'a str, next: Option<&str>) -> Input<'a> {
        Input::Page {
            resource_version: rv,
            continue_token: next.map(String::from),
        }
    }

    fn refused(retry_after: Option<Duration>) -> Input<'static> {
        Input::Refused {
            gone: false,
            retry_after,
        }
    }

    fn event(rv: &str) -> Input<'_> {
        Input::Event {
            resource_version: rv,
            object: true,
        }
    }

    /// A machine that listed at 10 and opened a watch at `t`.
    fn watching(t: Instant) -> Machine {
        let mut m = machine();
        m.step(page("10", None), t);
        m.step(Input::Opened, t);
        m
    }

    #[test]
    fn pages_are_gathered_into_one_relist_then_a_watch_from_its_version() {
        let t = Instant::now();
        let mut m = machine();
        assert_eq!(m.first(), list(0));
        let s = m.step(page("10", Some("c1")), t);
        assert_eq!(
            s.action,
            Action::List {
                continue_token: Some("c1".into()),
                after: Duration::ZERO
            }
        );
        assert!(!s.relisted);
        let s = m.step(page("10", None), t);
        assert!(s.relisted, "the last page completes the list");
        assert_eq!(s.action, first_watch("10", 0));
        assert_eq!(m.state(), &State::Starting { from: "10".into() });
        assert_eq!(m.step(Input::Opened, t).action, Action::Read);
    }

    #[test]
    fn a_failed_list_page_starts_the_list_over_after_a_backoff() {
        let t = Instant::now();
        let mut m = machine();
        m.step(page("10", Some("c1")), t);
        let s = m.step(Input::ListFailed { retry_after: None }, t);
        assert_eq!(s.action, list(100));
        assert_eq!(s.restart, Some(RestartReason::ListFailed));
        assert_eq!(
            m.step(Input::ListFailed { retry_after: None }, t).action,
            list(200)
        );
    }

    #[test]
    fn a_watch_closed_at_once_with_nothing_new_backs_off_and_resumes_from_the_same_version() {
        let t = Instant::now();
        let mut m = watching(t);
        let s = m.step(Input::Ended(End::Closed), t);
        assert_eq!(s.restart, Some(RestartReason::ClosedEarly));
        assert_eq!(s.action, watch("10", 100));
        m.step(Input::Opened, t);
        // A bookmark or a replayed event at an old version is no progress.
        m.step(
            Input::Event {
                resource_version: "11",
                object: false,
            },
            t,
        );
        m.step(event("9"), t);
        let s = m.step(Input::Ended(End::Closed), t);
        assert_eq!(s.action, watch("11", 200), "resumes after the bookmark");
        for backoff in [400, 800, 1000, 1000] {
            m.step(Input::Opened, t);
            assert_eq!(
                m.step(Input::Ended(End::Closed), t).action,
                watch("11", backoff)
            );
        }
    }

    #[test]
    fn a_healthy_watch_resets_the_backoff() {
        let t = Instant::now();
        let mut m = watching(t);
        m.step(Input::Ended(End::Closed), t);
        m.step(Input::Opened, t);
        m.step(Input::Ended(End::Closed), t);
        // Lived past `min_healthy`: healthy, even with no events.
        m.step(Input::Opened, t);
        let s = m.step(Input::Ended(End::Closed), t + SEC);
        assert_eq!(
            (s.action, s.restart),
            (watch("10", 0), Some(RestartReason::Closed))
        );
        // Delivered a new event at once: healthy too.
        m.step(Input::Opened, t);
        m.step(event("12"), t);
        let s = m.step(Input::Ended(End::Stalled), t);
        assert_eq!(
            (s.action, s.restart),
            (watch("12", 0), Some(RestartReason::Stalled))
        );
        m.step(Input::Opened, t);
        assert_eq!(
            m.step(Input::Ended(End::Failed), t).action,
            watch("12", 100),
            "reset"
        );
    }

    #[test]
    fn a_refused_watch_backs_off_and_retries_the_same_version() {
        let t = Instant::now();
        let mut m = machine();
        m.step(page("10", None), t);
        let s = m.step(refused(None), t);
        assert_eq!(s.restart, Some(RestartReason::WatchFailed));
        assert_eq!(
            s.action,
            first_watch("10", 100),
            "never opened: still the first"
        );
        m.step(Input::Opened, t);
        m.step(Input::Ended(End::Closed), t + SEC);
        assert_eq!(
            m.step(refused(None), t).action,
            watch("10", 100),
            "reset by the healthy watch"
        );
    }

    #[test]
    fn a_servers_retry_after_is_waited_out_when_longer_than_the_backoff_and_bounded() {
        let t = Instant::now();
        let mut m = machine();
        m.step(page("10", None), t);
        // 429 with Retry-After: 5 s — longer than the 100 ms backoff: wait 5 s.
        let s = m.step(refused(Some(5 * SEC)), t);
        assert_eq!(
            (s.action, s.restart),
            (first_watch("10", 5000), Some(RestartReason::WatchFailed))
        );
        // Shorter than the backoff (now 200 ms): the backoff stands.
        assert_eq!(
            m.step(refused(Some(Duration::from_millis(50))), t).action,
            first_watch("10", 200)
        );
        // An hour is bounded by `max_retry_after` (10 s here).
        assert_eq!(
            m.step(refused(Some(3600 * SEC)), t).action,
            first_watch("10", 10_000)
        );
        // A list refused with Retry-After too.
        let mut m = machine();
        let s = m.step(
            Input::ListFailed {
                retry_after: Some(2 * SEC),
            },
            t,
        );
        assert_eq!(s.action, list(2000));
    }

    #[test]
    fn a_first_410_relists_at_once_and_a_410_to_a_fresh_version_is_backed_off() {
        let t = Instant::now();
        let mut m = watching(t);
        m.step(Input::Ended(End::Closed), t);
        m.step(Input::Opened, t);
        // Backed off once already; the stale version's 410 still relists at once.
        m.step(Input::Ended(End::Closed), t);
        let s = m.step(
            Input::Refused {
                gone: true,
                retry_after: None,
            },
            t,
        );
        assert_eq!(
            (s.action, s.restart),
            (list(0), Some(RestartReason::Expired))
        );
        m.step(page("20", None), t);
        // The fresh list's version refused too: the server misbehaves; back off.
        assert_eq!(
            m.step(
                Input::Refused {
                    gone: true,
                    retry_after: None
                },
                t
            )
            .action,
            list(400)
        );
        m.step(page("30", None), t);
        m.step(Input::Opened, t);
        // An in-stream 410 after a healthy stretch is a first 410 again.
        m.step(event("31"), t);
        m.step(Input::Ended(End::Closed), t + SEC);
        m.step(Input::Opened, t);
        assert_eq!(m.step(Input::Ended(End::Expired), t).action, list(0));
    }

    #[test]
    #[should_panic(expected = "watch loop: input")]
    fn an_input_out_of_order_is_a_bug() {
        let mut m = machine();
        m.step(Input::Opened, Instant::now());
    }

    #[test]
    fn resource_versions_advance_numerically_else_by_differing() {
        // (old, new, advances?): numeric when both parse, so "9" is older than "10", and an
        // event replayed at the same or an older version is no progress.
        let table = [
            ("10", "11", true),
            ("10", "10", false),
            ("11", "10", false),
            ("10", "9", false),
            ("9", "10", true),
            ("abc", "abd", true),
            ("abc", "abc", false),
            ("abc", "", false),
            ("", "5", true),
        ];
        for (old, new, want) in table {
            assert_eq!(advances(old, new), want, "advances({old:?}, {new:?})");
        }
    }
}

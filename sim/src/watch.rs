//! Watch streams: initial events, live events filtered by namespace and selectors, bookmarks, timeouts, armed faults and fault-plan changes.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use crate::body::BodyError;
use crate::clock::Clock;
use crate::fault::{CloseMode, CloseWhen, Decision, FaultCell, WatchFaults};
use crate::resource::ResourceInfo;
use crate::selector::Selectors;
use crate::stats::Stats;
use crate::store::{Event, EventType};
use crate::table::TableOpts;

/// What a watch is scoped to and how it behaves.
pub struct WatchSpec {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    pub bookmarks: bool,
    pub bookmark_interval: Duration,
    pub timeout: Option<Duration>,
    /// Streaming list: end the initial ADDED events with a `k8s.io/initial-events-end` bookmark.
    pub initial_events_end: bool,
    /// Send each event's object as a one-row `Table` (kubectl get -w); column definitions on the first only.
    pub table: Option<(TableOpts, Clock)>,
    /// Fault-plan changes this watch re-checks its rules on (`None`: it keeps the faults it started with).
    pub plan_changes: Option<PlanChanges>,
}

/// Where a watch starts.
pub enum WatchStart {
    /// Replay these history events (all after the requested RV).
    Replay {
        events: Vec<Arc<Event>>,
        from_rv: u64,
    },
    /// Synthetic ADDED events for the current objects at `rv`.
    Snapshot { objects: Vec<Value>, rv: u64 },
    /// The requested RV is older than the window: one in-stream 410 ERROR event.
    Expired { requested: u64, oldest: u64 },
}

/// Encode one watch line: `{"type":T,"object":O}\n`.
pub fn line(kind: &str, obj: &Value) -> Bytes {
    let mut v = Vec::with_capacity(512);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut v, obj);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

fn bookmark(info: &ResourceInfo, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}),
    )
}

/// Encode an object event, as a one-row Table when asked.
fn event_line(spec: &WatchSpec, kind: &str, obj: &Value, first: &mut bool) -> Bytes {
    match &spec.table {
        None => line(kind, obj),
        Some((opts, clock)) => {
            let t = crate::table::from_object(spec.info, obj, clock.now(), *opts, *first);
            *first = false;
            line(kind, &t)
        }
    }
}

/// How an event appears to a watch with this scope: `None` if it is not visible.
/// On a selector-scoped watch an object that stops matching is a DELETED (previous content, new RV)
/// and one that starts matching is an ADDED.
pub fn project<'a>(
    ev: &'a Event,
    info: &ResourceInfo,
    namespace: Option<&str>,
    sel: &Selectors,
) -> Option<(EventType, Cow<'a, Value>)> {
    if ev.resource != info.plural || namespace.is_some_and(|ns| ns != ev.namespace) {
        return None;
    }
    let now = sel.matches(&ev.object);
    match ev.kind {
        EventType::Added | EventType::Deleted => {
            now.then_some((ev.kind, Cow::Borrowed(&ev.object)))
        }
        EventType::Modified => {
            let before = ev.old.as_ref().is_some_and(|o| sel.matches(o));
            match (before, now) {
                (true, true) => Some((EventType::Modified, Cow::Borrowed(&ev.object))),
                (false, true) => Some((EventType::Added, Cow::Borrowed(&ev.object))),
                (true, false) => {
                    let mut old = ev.old.clone().unwrap_or(Value::Null);
                    if let Some(m) = old.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.insert("resourceVersion".into(), json!(ev.rv.to_string()));
                    }
                    Some((EventType::Deleted, Cow::Owned(old)))
                }
                (false, false) => None,
            }
        }
    }
}

/// Sends lines, applying chaos and close faults after each event.
struct Emitter {
    rng: ChaCha8Rng,
    faults: WatchFaults,
    sent: u64,
    stats: Arc<Mutex<Stats>>,
    /// The armed faults came from a plan set while this watch was open.
    rearmed: bool,
}

impl Emitter {
    fn count(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }

    fn count_fault(&self, kind: &str) {
        let open = self.rearmed;
        self.count(|s| s.count_watch_fault(kind, open));
    }

    /// Outputs for one event line, and whether the watch must now be closed.
    fn event(&mut self, data: Bytes) -> (Vec<Result<Bytes, BodyError>>, bool) {
        let mut out = vec![Ok(data.clone())];
        self.sent += 1;
        self.count(|s| s.events_sent += 1);
        if let Some(p) = self.faults.duplicate_p {
            if self.rng.random::<f64>() < p {
                out.push(Ok(data));
                self.count_fault("duplicate");
            }
        }
        if let Some(p) = self.faults.malformed_p {
            if self.rng.random::<f64>() < p {
                out.push(Ok(Bytes::from_static(
                    b"{\"type\":\"MODIFIED\",\"object\":not-json}\n",
                )));
                self.count_fault("malformed_line");
            }
        }
        let close = match &self.faults.close {
            Some((CloseWhen::AfterEvents { n }, _)) => self.sent >= *n,
            Some((CloseWhen::Probability { p }, _)) => self.rng.random::<f64>() < *p,
            _ => false,
        };
        (out, close)
    }

    /// The final output when a fault closes the watch.
    fn close(&self) -> Option<Result<Bytes, BodyError>> {
        let mode = self.faults.close.as_ref().map(|c| c.1).unwrap_or_default();
        match mode {
            CloseMode::Clean => {
                self.count_fault("close_watch");
                None
            }
            CloseMode::Reset => {
                self.count_fault("close_watch_reset");
                Some(Err(BodyError::Reset))
            }
        }
    }

    /// Arm faults re-decided after a plan change; returns when an `after_duration` close is due.
    fn rearm(&mut self, faults: WatchFaults, now: Instant) -> Option<Instant> {
        self.rng = ChaCha8Rng::seed_from_u64(faults.seed);
        self.faults = faults;
        self.sent = 0;
        self.rearmed = true;
        match &self.faults.close {
            Some((CloseWhen::AfterDuration { after }, _)) => Some(now + *after),
            Some((CloseWhen::AfterInitialEvents, _)) => Some(now),
            _ => None,
        }
    }
}

/// An open watch's view of fault-plan changes: it waits on the plan's generation (no polling).
pub struct PlanChanges {
    cell: Arc<FaultCell>,
    rx: tokio::sync::watch::Receiver<u64>,
}

impl PlanChanges {
    /// Changes from now on (subscribe when the watch starts).
    pub(crate) fn new(cell: Arc<FaultCell>) -> Self {
        let rx = cell.subscribe();
        Self { cell, rx }
    }

    /// The next plan change that applies to open watches, decided for this watch.
    async fn next(&mut self, resource: &str, namespace: Option<&str>) -> Decision {
        loop {
            if self.rx.changed().await.is_err() {
                return std::future::pending().await;
            }
            if let Some(d) = self.cell.decide_open(resource, namespace) {
                return d;
            }
        }
    }
}

async fn next_plan(p: &mut Option<PlanChanges>, resource: &str, ns: Option<&str>) -> Decision {
    match p {
        Some(p) => p.next(resource, ns).await,
        None => std::future::pending().await,
    }
}

/// What a plan change does to an open watch.
#[derive(Debug)]
enum Rearm {
    /// End with an in-stream ERROR event (a 410, or an injected HTTP error) counted under `kind`.
    Error { status: Value, kind: String },
    /// Go silent (the response is already open), then drop the connection.
    Stall(Option<Duration>),
    /// Keep streaming with these faults armed instead.
    Arm(WatchFaults),
}

/// Pure: the effect on an open watch of a decision re-made for it, in the request path's
/// precedence (stall, HTTP error, expire). Latency only delays requests, so it does nothing here.
fn rearm(d: Decision, last_rv: u64) -> Rearm {
    if let Some((_, duration)) = d.stall {
        Rearm::Stall(duration)
    } else if let Some((code, _)) = d.http_error {
        Rearm::Error {
            status: crate::status::injected(code),
            kind: format!("http_{code}"),
        }
    } else if d.expire {
        Rearm::Error {
            status: crate::status::expired(last_rv, last_rv),
            kind: "expire".into(),
        }
    } else {
        Rearm::Arm(d.watch)
    }
}

/// How a watch stream ends.
enum End {
    /// Nothing more to send (timeout, lagged, or an initial 410 already sent).
    Quiet,
    /// An armed close fault fired.
    Closed,
    /// A plan change ended it with an in-stream ERROR event.
    Error(Bytes, String),
    /// A plan change stalled it.
    Stall(Option<Duration>),
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The body stream of one watch.
pub fn stream(
    spec: WatchSpec,
    start: WatchStart,
    mut rx: broadcast::Receiver<Arc<Event>>,
    faults: WatchFaults,
    stats: Arc<Mutex<Stats>>,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send {
    async_stream::stream! {
        let mut spec = spec;
        let mut plan_changes = spec.plan_changes.take();
        let started = Instant::now();
        let deadline = spec.timeout.map(|t| started + t);
        let mut close_at = match &faults.close {
            Some((CloseWhen::AfterDuration { after }, _)) => Some(started + *after),
            _ => None,
        };
        let close_after_initial = matches!(faults.close, Some((CloseWhen::AfterInitialEvents, _)));
        let mut em = Emitter { rng: ChaCha8Rng::seed_from_u64(faults.seed), faults, sent: 0, stats, rearmed: false };
        let ns = spec.namespace.as_deref();
        let mut last_rv;
        let mut first = true;
        let end = 'run: {
            match start {
                WatchStart::Expired { requested, oldest } => {
                    yield Ok(line("ERROR", &crate::status::expired(requested, oldest)));
                    break 'run End::Quiet;
                }
                WatchStart::Replay { events, from_rv } => {
                    last_rv = from_rv;
                    for ev in events {
                        last_rv = last_rv.max(ev.rv);
                        if let Some((t, obj)) = project(&ev, spec.info, ns, &spec.selectors) {
                            let (out, close) = em.event(event_line(&spec, t.as_str(), &obj, &mut first));
                            for o in out { yield o; }
                            if close { break 'run End::Closed; }
                        }
                    }
                }
                WatchStart::Snapshot { objects, rv } => {
                    last_rv = rv;
                    for obj in objects.iter().filter(|o| spec.selectors.matches(o)) {
                        let (out, close) = em.event(event_line(&spec, "ADDED", obj, &mut first));
                        for o in out { yield o; }
                        if close { break 'run End::Closed; }
                    }
                    if spec.initial_events_end {
                        em.count(|s| s.bookmarks_sent += 1);
                        yield Ok(bookmark(spec.info, rv, true));
                    }
                }
            }
            if close_after_initial { break 'run End::Closed; }
            let period = spec.bookmark_interval.max(Duration::from_millis(1));
            let mut ticker = tokio::time::interval_at(started + period, period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = sleep_opt(close_at) => break 'run End::Closed,
                    _ = sleep_opt(deadline) => break 'run End::Quiet,
                    d = next_plan(&mut plan_changes, spec.info.plural, ns) => match rearm(d, last_rv) {
                        Rearm::Error { status, kind } => break 'run End::Error(line("ERROR", &status), kind),
                        Rearm::Stall(d) => break 'run End::Stall(d),
                        Rearm::Arm(faults) => close_at = em.rearm(faults, Instant::now()),
                    },
                    r = rx.recv() => match r {
                        Ok(ev) => {
                            if ev.rv <= last_rv { continue; }
                            last_rv = ev.rv;
                            if let Some((t, obj)) = project(&ev, spec.info, ns, &spec.selectors) {
                                let (out, close) = em.event(event_line(&spec, t.as_str(), &obj, &mut first));
                                for o in out { yield o; }
                                if close { break 'run End::Closed; }
                            }
                        }
                        // A watcher that fell a whole buffer behind is dropped, as the apiserver's cacher does.
                        Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break 'run End::Quiet,
                    },
                    _ = ticker.tick(), if spec.bookmarks => {
                        em.count(|s| s.bookmarks_sent += 1);
                        yield Ok(bookmark(spec.info, last_rv, false));
                    }
                }
            }
        };
        // The one place a watch ends.
        match end {
            End::Quiet => {}
            End::Closed => {
                if let Some(e) = em.close() {
                    // Return Pending once so the transport flushes what was sent before the reset.
                    tokio::task::yield_now().await;
                    yield e;
                }
            }
            End::Error(data, kind) => {
                em.count(|s| s.count_watch_fault(&kind, true));
                yield Ok(data);
            }
            End::Stall(duration) => {
                em.count(|s| s.count_watch_fault("stall", true));
                sleep_opt(duration.map(|d| Instant::now() + d)).await;
                yield Err(BodyError::Reset);
            }
        }
    }
}

//! Watch streams: initial events, live events filtered by namespace and selectors, bookmarks, timeouts, armed faults and fault-plan changes.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::TryRecvError};
use tokio::time::Instant;

use crate::body::BodyError;
use crate::clock::Clock;
use crate::encoded::Obj;
use crate::fault::{CloseMode, CloseWhen, Decision, FaultCell, WatchFaults};
use crate::resource::{Resource, ResourceInfo};
use crate::selector::Selectors;
use crate::stats::Stats;
use crate::store::{restamped, Event, EventType};
use crate::table::TableOpts;

/// What a watch is scoped to and how it behaves.
pub struct WatchSpec {
    pub info: Resource,
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
    Snapshot { objects: Vec<Arc<Obj>>, rv: u64 },
    /// The requested RV is older than the window: one in-stream 410 ERROR event.
    Expired { requested: u64, oldest: u64 },
    /// The watch could not start: this `Status` as its one ERROR event (the cacher's `newErrWatcher`).
    Failed(Value),
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

/// An object event's line: the shared encoded line, or a one-row Table when asked.
fn event_line(
    spec: &WatchSpec,
    kind: EventType,
    obj: &Obj,
    shared: Bytes,
    first: &mut bool,
) -> Bytes {
    match &spec.table {
        None => shared,
        Some((opts, clock)) => {
            let t = crate::table::from_object(&spec.info, obj.value(), clock.now(), *opts, *first);
            *first = false;
            line(kind.as_str(), &t)
        }
    }
}

/// Events are sent in chunks of about this many bytes when a watcher has several waiting.
const CHUNK: usize = 64 * 1024;

/// The lines waiting to be sent as one chunk: a single shared line is passed on as is (no copy).
#[derive(Default)]
struct Chunk {
    single: Option<Bytes>,
    buf: Vec<u8>,
}

impl Chunk {
    fn spill(&mut self) {
        if let Some(b) = self.single.take() {
            self.buf.reserve(CHUNK.max(b.len() * 2));
            self.buf.extend_from_slice(&b);
        }
    }

    fn push(&mut self, data: Bytes) {
        if self.single.is_none() && self.buf.is_empty() {
            self.single = Some(data);
        } else {
            self.spill();
            self.buf.extend_from_slice(&data);
        }
    }

    /// Append an `ADDED`-style line for already-encoded JSON.
    fn push_line(&mut self, kind: &str, json: &[u8]) {
        self.spill();
        crate::encoded::push_line(&mut self.buf, kind, json);
    }

    fn len(&self) -> usize {
        self.single.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    fn full(&self) -> bool {
        self.len() >= CHUNK
    }

    fn take(&mut self) -> Option<Bytes> {
        match self.single.take() {
            Some(b) => Some(b),
            None if self.buf.is_empty() => None,
            None => Some(Bytes::from(std::mem::take(&mut self.buf))),
        }
    }
}

/// How an event appears to a watch with this scope: `None` if it is not visible.
/// On a selector-scoped watch an object that stops matching is a DELETED (previous content, new RV)
/// and one that starts matching is an ADDED.
/// Returns the type, the object and its encoded line (the event's shared line when it applies as is).
pub fn project<'a>(
    ev: &'a Event,
    info: &ResourceInfo,
    namespace: Option<&str>,
    sel: &Selectors,
) -> Option<(EventType, Cow<'a, Arc<Obj>>, Bytes)> {
    if *ev.resource != *info.id || namespace.is_some_and(|ns| ns != ev.namespace) {
        return None;
    }
    let same = || Some((ev.kind, Cow::Borrowed(&ev.object), ev.line.clone()));
    if sel.is_empty() {
        return same();
    }
    let now = ev.object.matches(sel);
    match ev.kind {
        EventType::Added | EventType::Deleted => now.then(same).flatten(),
        EventType::Modified => {
            let before = ev.old.as_ref().is_some_and(|o| o.matches(sel));
            match (before, now, &ev.old) {
                (true, true, _) => same(),
                (false, true, _) => {
                    let line = crate::encoded::line("ADDED", ev.object.json());
                    Some((EventType::Added, Cow::Borrowed(&ev.object), line))
                }
                (true, false, Some(old)) => {
                    let kind = EventType::Deleted;
                    let (obj, line) = restamped(&ev.resource, kind.as_str(), old, ev.rv);
                    Some((kind, Cow::Owned(obj), line))
                }
                _ => None,
            }
        }
    }
}

/// Sends lines, applying chaos and close faults after each event.
struct Emitter {
    rng: ChaCha8Rng,
    faults: WatchFaults,
    sent: u64,
    /// Events queued but not yet counted in `stats` (counted once per chunk).
    unflushed: u64,
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

    /// Counts the events queued since the last flush (call before sending them).
    fn flush(&mut self) {
        if self.unflushed > 0 {
            let n = std::mem::take(&mut self.unflushed);
            self.count(|s| s.events_sent += n);
        }
    }

    /// Queue one event line (and any injected duplicate or malformed line); whether the watch must now be closed.
    fn event(&mut self, out: &mut Chunk, data: Bytes) -> bool {
        self.sent += 1;
        self.unflushed += 1;
        if self
            .faults
            .duplicate_p
            .is_some_and(|p| self.rng.random::<f64>() < p)
        {
            out.push(data.clone());
            self.count_fault("duplicate");
        }
        out.push(data);
        if let Some(p) = self.faults.malformed_p {
            if self.rng.random::<f64>() < p {
                out.push(Bytes::from_static(
                    b"{\"type\":\"MODIFIED\",\"object\":not-json}\n",
                ));
                self.count_fault("malformed_line");
            }
        }
        self.close_due()
    }

    /// After an event: whether an armed close fault fires now.
    fn close_due(&mut self) -> bool {
        match &self.faults.close {
            Some((CloseWhen::AfterEvents { n }, _)) => self.sent >= *n,
            Some((CloseWhen::Probability { p }, _)) => self.rng.random::<f64>() < *p,
            _ => false,
        }
    }

    /// Queue an `ADDED` line for an already-encoded object; whether the watch must now be closed.
    fn added(&mut self, out: &mut Chunk, json: &[u8]) -> bool {
        if self.faults.duplicate_p.is_none() && self.faults.malformed_p.is_none() {
            out.push_line("ADDED", json);
            self.sent += 1;
            self.unflushed += 1;
            return self.close_due();
        }
        self.event(out, crate::encoded::line("ADDED", json))
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
    } else if let Some(e) = d.http_error {
        // In-stream, an error is always a Status event: the response is already open.
        Rearm::Error {
            status: crate::status::injected(e.code),
            kind: format!("http_{}", e.code),
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

/// Counts one watch in [`Stats::live_watches`] while it lives.
/// Whether `ev` is the removal of the CRD that defines `info`: its API is gone, so its watches
/// end (after the deletions of its objects, committed before it), as the apiextensions
/// handler's storage for a removed CRD is torn down.
fn crd_gone(ev: &Event, info: &ResourceInfo) -> bool {
    info.custom.as_ref().is_some_and(|c| {
        ev.kind == EventType::Deleted && *ev.resource == *crate::crd::CRD_ID && ev.name == c.crd
    })
}

struct LiveWatch {
    stats: Arc<Mutex<Stats>>,
    resource: String,
}

impl LiveWatch {
    fn new(stats: &Arc<Mutex<Stats>>, resource: &str) -> Self {
        if let Ok(mut s) = stats.lock() {
            s.watch_live(resource, true);
        }
        Self {
            stats: stats.clone(),
            resource: resource.to_string(),
        }
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stats.lock() {
            s.watch_live(&self.resource, false);
        }
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
        let mut em = Emitter { rng: ChaCha8Rng::seed_from_u64(faults.seed), faults, sent: 0, unflushed: 0, stats, rearmed: false };
        let mut chunk = Chunk::default();
        let ns = spec.namespace.as_deref();
        let mut last_rv;
        let mut first = true;
        // Held while the watch can deliver events; dropped when it ends, stalls or is dropped.
        let mut live = None;
        let end = 'run: {
            match start {
                WatchStart::Expired { requested, oldest } => {
                    yield Ok(line("ERROR", &crate::status::expired(requested, oldest)));
                    break 'run End::Quiet;
                }
                WatchStart::Failed(status) => {
                    yield Ok(line("ERROR", &status));
                    break 'run End::Quiet;
                }
                WatchStart::Replay { events, from_rv } => {
                    live = Some(LiveWatch::new(&em.stats, &spec.info.plural));
                    last_rv = from_rv;
                    for ev in events {
                        last_rv = last_rv.max(ev.rv);
                        if let Some((t, obj, shared)) = project(&ev, &spec.info, ns, &spec.selectors) {
                            let close = em.event(&mut chunk, event_line(&spec, t, &obj, shared, &mut first));
                            if close || chunk.full() {
                                em.flush();
                                if let Some(c) = chunk.take() { yield Ok(c); }
                            }
                            if close { break 'run End::Closed; }
                        }
                    }
                    em.flush();
                    if let Some(c) = chunk.take() { yield Ok(c); }
                }
                WatchStart::Snapshot { objects, rv } => {
                    live = Some(LiveWatch::new(&em.stats, &spec.info.plural));
                    last_rv = rv;
                    for obj in objects.iter().filter(|o| o.matches(&spec.selectors)) {
                        let close = if spec.table.is_some() {
                            let line = event_line(&spec, EventType::Added, obj, Bytes::new(), &mut first);
                            em.event(&mut chunk, line)
                        } else {
                            em.added(&mut chunk, obj.json())
                        };
                        if close || chunk.full() {
                            em.flush();
                            if let Some(c) = chunk.take() { yield Ok(c); }
                        }
                        if close { break 'run End::Closed; }
                    }
                    em.flush();
                    if let Some(c) = chunk.take() { yield Ok(c); }
                    if spec.initial_events_end {
                        em.count(|s| s.bookmarks_sent += 1);
                        yield Ok(bookmark(&spec.info, rv, true));
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
                    d = next_plan(&mut plan_changes, &spec.info.plural, ns) => match rearm(d, last_rv) {
                        Rearm::Error { status, kind } => break 'run End::Error(line("ERROR", &status), kind),
                        Rearm::Stall(d) => break 'run End::Stall(d),
                        Rearm::Arm(faults) => close_at = em.rearm(faults, Instant::now()),
                    },
                    r = rx.recv() => {
                        // This event and whatever else is already waiting (up to a chunk), sent as one chunk.
                        let mut r = r.map_err(|_| ());
                        let (mut close, mut lagged, mut gone) = (false, false, false);
                        loop {
                            match r {
                                Ok(ev) => {
                                    if ev.rv > last_rv {
                                        last_rv = ev.rv;
                                        if crd_gone(&ev, &spec.info) {
                                            gone = true;
                                        } else if let Some((t, obj, shared)) = project(&ev, &spec.info, ns, &spec.selectors) {
                                            close = em.event(&mut chunk, event_line(&spec, t, &obj, shared, &mut first));
                                        }
                                    }
                                }
                                // A watcher that fell a whole buffer behind is dropped, as the apiserver's cacher does.
                                Err(_) => lagged = true,
                            }
                            if close || lagged || gone || chunk.full() { break; }
                            r = match rx.try_recv() {
                                Ok(ev) => Ok(ev),
                                Err(TryRecvError::Empty) => break,
                                Err(_) => Err(()),
                            };
                        }
                        em.flush();
                        if let Some(c) = chunk.take() { yield Ok(c); }
                        if close { break 'run End::Closed; }
                        if lagged || gone { break 'run End::Quiet; }
                    },
                    _ = ticker.tick(), if spec.bookmarks => {
                        em.count(|s| s.bookmarks_sent += 1);
                        yield Ok(bookmark(&spec.info, last_rv, false));
                    }
                }
            }
        };
        // The one place a watch ends.
        drop(live);
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

//! Churn generator: MODIFIED events with changing labels, annotations and status, at a rate or as a burst, re-encoded by patching bytes; floods started by steps are kept by id so a `stop_flood` step can end them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::{AbortHandle, JoinHandle};

use crate::encoded::{extract_fields, extract_labels, Fields, Labels, Obj, LINE_SUFFIX};
use crate::error::SimError;
use crate::lifecycle::{self, UpdateMode};
use crate::resource::Resource;
use crate::sim::{lock, Sim};
use crate::store::Key;

/// What to churn and how fast. Exactly one of `rate_per_second` and `burst` should be set
/// (both: the burst first, then the rate; neither: nothing).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloodSpec {
    /// A name for a flood started by a step, for a later `stop_flood` step (default: `flood-N`,
    /// reported by `/_sim/steps`). [`Sim::flood`] ignores it: its caller holds the handle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Resource plural to churn (default `pods`).
    #[serde(default = "pods")]
    pub resource: String,
    /// Only objects in this namespace (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Events per second (tokio time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Emit this many events immediately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Stop a rate flood after this long (default: until stopped).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
}

fn pods() -> String {
    "pods".into()
}

impl FloodSpec {
    /// A burst of `n` MODIFIED events on pods in `namespace`.
    pub fn burst(namespace: &str, n: u64) -> Self {
        Self {
            resource: pods(),
            namespace: Some(namespace.into()),
            burst: Some(n),
            ..Self::default()
        }
    }
    /// `per_second` MODIFIED events per second on pods in `namespace`.
    pub fn rate(namespace: &str, per_second: f64) -> Self {
        Self {
            resource: pods(),
            namespace: Some(namespace.into()),
            rate_per_second: Some(per_second),
            ..Self::default()
        }
    }
    /// Stop a rate flood after `d`.
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }
    /// Name the flood, for a later `stop_flood` step.
    pub fn named(mut self, id: &str) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A running flood. Dropping it does not stop it; call [`FloodHandle::stop`].
#[derive(Debug)]
pub struct FloodHandle {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

impl FloodHandle {
    /// Events emitted so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    /// Stop a rate flood.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = &self.task {
            t.abort();
        }
    }
    /// Wait for a bounded rate flood to finish (returns at once for a burst).
    pub async fn finished(mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// The churned values in an object: what changes from one flood event to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Rv,
    Parity,
    Seq,
    Message,
}

impl Slot {
    const ALL: [Slot; 4] = [Slot::Rv, Slot::Parity, Slot::Seq, Slot::Message];

    /// A string no real object contains, put where the value goes before encoding the template.
    fn sentinel(self) -> &'static str {
        match self {
            Slot::Rv => "\u{1}podgrant-sim-rv\u{1}",
            Slot::Parity => "\u{1}podgrant-sim-parity\u{1}",
            Slot::Seq => "\u{1}podgrant-sim-seq\u{1}",
            Slot::Message => "\u{1}podgrant-sim-message\u{1}",
        }
    }
}

/// Pure: `obj` churned with `counter` (what one flood event changes), resourceVersion dropped.
fn churned(mut obj: Value, counter: u64) -> Value {
    churn_values(
        &mut obj,
        json!((counter % 2).to_string()),
        json!(counter.to_string()),
        json!(format!("churn {counter}")),
    );
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    obj
}

fn churn_values(obj: &mut Value, parity: Value, seq: Value, message: Value) {
    for field in ["labels", "annotations"] {
        if !obj
            .pointer(&format!("/metadata/{field}"))
            .is_some_and(Value::is_object)
        {
            obj["metadata"][field] = json!({});
        }
    }
    obj["metadata"]["labels"]["podgrant-sim/churn"] = parity;
    obj["metadata"]["annotations"]["podgrant-sim/churn-seq"] = seq;
    if obj.get("status").is_some_and(Value::is_object) {
        obj["status"]["message"] = message;
    }
}

/// An object's encoding split at its churned values, so that the next event on it is put
/// together from bytes instead of being validated and serialized again.
struct Template {
    /// The version this template last produced; any other writer's change invalidates it.
    last: Arc<Obj>,
    last_counter: u64,
    /// The encoded object, split around `slots` (one more piece than slots).
    pieces: Vec<Bytes>,
    slots: Vec<Slot>,
    /// The labels for an even and an odd counter.
    labels: [Labels; 2],
    fields: Fields,
}

/// Pure: the template for `stored` (a churned object as committed), or `None` if its encoding
/// does not split cleanly (then every event takes the general path).
fn template(resource: &str, stored: &Value, last: Arc<Obj>, counter: u64) -> Option<Template> {
    let mut v = stored.clone();
    churn_values(
        &mut v,
        json!(Slot::Parity.sentinel()),
        json!(Slot::Seq.sentinel()),
        json!(Slot::Message.sentinel()),
    );
    v.get_mut("metadata")?
        .as_object_mut()?
        .insert("resourceVersion".into(), json!(Slot::Rv.sentinel()));
    let bytes = Bytes::from(serde_json::to_vec(&v).ok()?);
    let mut found = Vec::new();
    for slot in Slot::ALL {
        let needle = serde_json::to_vec(slot.sentinel()).ok()?;
        let mut hits = bytes
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle.as_slice())
            .map(|(i, _)| i);
        match (hits.next(), hits.next()) {
            (Some(at), None) => found.push((at, at + needle.len(), slot)),
            (None, None) if slot == Slot::Message => {}
            _ => return None,
        }
    }
    found.sort_by_key(|f| f.0);
    let mut pieces = Vec::with_capacity(found.len() + 1);
    let mut from = 0;
    for (at, end, _) in &found {
        pieces.push(bytes.slice(from..*at));
        from = *end;
    }
    pieces.push(bytes.slice(from..));
    let fields = extract_fields(resource, stored);
    if fields.iter().any(|(_, f)| f.contains('\u{1}')) {
        return None;
    }
    let labels = [0u64, 1].map(|p| {
        let mut l = stored.clone();
        l["metadata"]["labels"]["podgrant-sim/churn"] = json!(p.to_string());
        extract_labels(&l)
    });
    Some(Template {
        last,
        last_counter: counter,
        pieces,
        slots: found.into_iter().map(|f| f.2).collect(),
        labels,
        fields,
    })
}

impl Template {
    /// The watch line and object of the event churning with `counter` at `rv`.
    fn encode(&self, counter: u64, rv: u64) -> (Arc<Obj>, Bytes) {
        let size: usize = self.pieces.iter().map(Bytes::len).sum();
        let mut buf = Vec::with_capacity(size + 80);
        buf.extend_from_slice(b"{\"type\":\"MODIFIED\",\"object\":");
        let start = buf.len();
        for (piece, slot) in self
            .pieces
            .iter()
            .zip(self.slots.iter().map(Some).chain([None]))
        {
            buf.extend_from_slice(piece);
            // Writing into a Vec cannot fail.
            let _ = match slot {
                Some(Slot::Rv) => write!(buf, "\"{rv}\""),
                Some(Slot::Parity) => write!(buf, "\"{}\"", counter % 2),
                Some(Slot::Seq) => write!(buf, "\"{counter}\""),
                Some(Slot::Message) => write!(buf, "\"churn {counter}\""),
                None => Ok(()),
            };
        }
        let end = buf.len();
        buf.extend_from_slice(LINE_SUFFIX);
        let line = Bytes::from(buf);
        let labels = self.labels[usize::from(counter % 2 == 1)].clone();
        let obj = Obj::from_parts(line.slice(start..end), labels, self.fields.clone());
        (obj, line)
    }
}

/// The templates of the objects floods have churned, kept across floods (lock after the store).
#[derive(Default)]
pub(crate) struct Templates(HashMap<(Arc<str>, Key), Template>);

/// The objects a flood goes round.
struct Churner {
    info: Resource,
    namespace: Option<String>,
    keys: Vec<Key>,
    /// Set by a stop; read under the store lock, so no event follows a stop that took that lock.
    stop: Arc<AtomicBool>,
}

impl Churner {
    fn new(sim: &Sim, spec: &FloodSpec, stop: Arc<AtomicBool>) -> Option<Self> {
        let info = sim.resolve(&spec.resource).ok()?;
        Some(Self {
            info,
            namespace: spec.namespace.clone(),
            keys: Vec::new(),
            stop,
        })
    }

    /// Emit one churn event on the `counter % n`-th of the `n` objects; false if there is
    /// nothing to churn or the flood was stopped.
    fn churn(&mut self, sim: &Sim, counter: u64) -> bool {
        let plural: Arc<str> = self.info.id.clone();
        let mut store = lock(&sim.inner.store);
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        // Go round the objects as they are; re-read them when one has gone or a round is done.
        let mut key = self.pick(counter);
        let mut templates = lock(&sim.inner.flood_templates);
        if key.as_ref().is_none_or(|k| !store.contains(&plural, k))
            || counter.is_multiple_of(self.len())
        {
            self.keys = store.keys(&plural, self.namespace.as_deref());
            key = self.pick(counter);
            // Templates of objects that have gone are dropped with them.
            templates.0.retain(|(r, k), _| store.contains(r, k));
        }
        let Some(key) = key else {
            return false;
        };
        let Some(cur) = store.get_obj(&plural, &key).cloned() else {
            return false;
        };
        let slot = (plural.clone(), key);
        if let Some(t) = templates.0.get_mut(&slot) {
            if Arc::ptr_eq(&t.last, &cur) {
                if t.last_counter == counter {
                    // The same churn again changes nothing: no event (as a no-op replace).
                    return true;
                }
                let (obj, line) = t.encode(counter, store.next_rv());
                store.commit_encoded(&plural, slot.1, obj.clone(), line);
                t.last = obj;
                t.last_counter = counter;
                return true;
            }
        }
        // First churn of this object here, or someone else changed it: the general path.
        let new = match lifecycle::prepare_update(
            &self.info,
            cur.value(),
            churned(cur.to_value(), counter),
            UpdateMode::Whole,
        ) {
            Ok(Some(new)) => new,
            Ok(None) => return true,
            Err(_) => return false,
        };
        let stored = store.commit(&plural, slot.1.clone(), Some(new));
        let made = store
            .get_obj(&plural, &slot.1)
            .cloned()
            .and_then(|obj| template(&plural, &stored, obj, counter));
        match made {
            Some(t) => templates.0.insert(slot, t),
            None => templates.0.remove(&slot),
        };
        true
    }

    fn len(&self) -> u64 {
        (self.keys.len() as u64).max(1)
    }

    fn pick(&self, counter: u64) -> Option<Key> {
        let n = self.keys.len() as u64;
        (n > 0)
            .then(|| self.keys.get(usize::try_from(counter % n).ok()?).cloned())
            .flatten()
    }
}

pub(crate) fn start(sim: Sim, spec: FloodSpec) -> FloodHandle {
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut churner = Churner::new(&sim, &spec, stop.clone());
    if let (Some(n), Some(c)) = (spec.burst, churner.as_mut()) {
        let done = (0..n).filter(|i| c.churn(&sim, *i)).count() as u64;
        sent.fetch_add(done, Ordering::Relaxed);
        lock(&sim.inner.stats).count_faults("flood_event", done);
    }
    let task = match (spec.rate_per_second.filter(|r| *r > 0.0), churner) {
        (Some(rate), Some(mut churner)) if tokio::runtime::Handle::try_current().is_ok() => {
            let (sent, stop) = (sent.clone(), stop.clone());
            Some(tokio::spawn(async move {
                let period = Duration::from_secs_f64(1.0 / rate);
                let start = tokio::time::Instant::now();
                let end = spec.duration.map(|d| start + d);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut counter = spec.burst.unwrap_or(0);
                loop {
                    let at = tick.tick().await;
                    if stop.load(Ordering::Relaxed) || end.is_some_and(|e| at >= e) {
                        return;
                    }
                    if churner.churn(&sim, counter) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        lock(&sim.inner.stats).count_fault("flood_event");
                    }
                    counter += 1;
                }
            }))
        }
        _ => None,
    };
    FloodHandle { sent, stop, task }
}

/// A flood a step started that may still be running.
struct Running {
    stop: Arc<AtomicBool>,
    task: AbortHandle,
}

/// The floods steps started, by id (lock before `store`; finished ones are dropped on each use).
#[derive(Default)]
pub(crate) struct Floods {
    running: BTreeMap<String, Running>,
    /// The last `flood-N` given to a flood without an id.
    last_auto: u64,
}

impl Floods {
    fn prune(&mut self) {
        self.running.retain(|_, r| !r.task.is_finished());
    }

    fn auto_id(&mut self) -> String {
        loop {
            self.last_auto += 1;
            let id = format!("flood-{}", self.last_auto);
            if !self.running.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Start a flood for a step (a burst is emitted before this returns). A rate flood is kept
/// under its id, or `flood-N`, which is returned; a flood with nothing left to run after the
/// burst is not kept (`None`). An id already running is 409 `AlreadyExists`, and nothing starts.
pub(crate) fn start_for_step(sim: &Sim, spec: &FloodSpec) -> Result<Option<String>, SimError> {
    let mut floods = lock(&sim.inner.floods);
    floods.prune();
    if let Some(id) = spec
        .id
        .as_ref()
        .filter(|id| floods.running.contains_key(*id))
    {
        return Err(SimError::AlreadyExists {
            resource: "floods".into(),
            name: id.clone(),
        });
    }
    let handle = start(sim.clone(), spec.clone());
    let Some(task) = handle.task.as_ref().map(JoinHandle::abort_handle) else {
        return Ok(None);
    };
    let id = match &spec.id {
        Some(id) => id.clone(),
        None => floods.auto_id(),
    };
    let stop = handle.stop.clone();
    floods.running.insert(id.clone(), Running { stop, task });
    Ok(Some(id))
}

/// Whether a step-started rate flood runs under `id`.
pub(crate) fn step_flood_running(sim: &Sim, id: &str) -> bool {
    let mut floods = lock(&sim.inner.floods);
    floods.prune();
    floods.running.contains_key(id)
}

/// Stop the step-started flood `id`, or with `None` every one; returns the ids that were
/// running (none is not an error: a flood that ended or never started is already stopped).
/// When this returns, the stopped floods emit no more events.
pub(crate) fn stop_for_step(sim: &Sim, id: Option<&str>) -> Vec<String> {
    let stopped: Vec<(String, Running)> = {
        let mut floods = lock(&sim.inner.floods);
        floods.prune();
        match id {
            Some(id) => floods.running.remove_entry(id).into_iter().collect(),
            None => std::mem::take(&mut floods.running).into_iter().collect(),
        }
    };
    for (_, r) in &stopped {
        r.stop.store(true, Ordering::Relaxed);
        r.task.abort();
    }
    // A churn already past its stop check holds the store lock: wait for it to commit.
    drop(lock(&sim.inner.store));
    stopped.into_iter().map(|(id, _)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Step;
    use crate::store::Replay;

    fn sim() -> Sim {
        let sim = Sim::builder()
            .start_time(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .build();
        for p in ["p0", "p1"] {
            sim.apply(&Step::create_pod("ns", p)).unwrap();
        }
        sim
    }

    fn lines(sim: &Sim) -> Vec<Bytes> {
        match lock(&sim.inner.store).replay_after(1) {
            Replay::Events(events, _) => events.iter().map(|e| e.line.clone()).collect(),
            Replay::Expired { .. } => panic!("expired"),
        }
    }

    /// Events put together from a template are byte for byte what validating, replacing and
    /// encoding each churned object would have produced, stored objects and selectors included.
    #[tokio::test(start_paused = true)]
    async fn templated_churn_is_a_replace_byte_for_byte() {
        let (fast, slow) = (sim(), sim());
        assert_eq!(fast.flood(FloodSpec::burst("ns", 7)).sent(), 7);
        for i in 0..7 {
            let name = format!("p{}", i % 2);
            let obj = slow.get("pods", Some("ns"), &name).unwrap();
            slow.replace("pods", Some("ns"), churned(obj, i)).unwrap();
        }
        assert_eq!(lines(&fast), lines(&slow));
        assert_eq!(fast.list("pods", None), slow.list("pods", None));
        let (f, s) = (lock(&fast.inner.store), lock(&slow.inner.store));
        for (k, o) in f.iter_objs("pods", None) {
            let other = s.get_obj("pods", k).unwrap();
            assert_eq!(o.json(), other.json());
            assert_eq!(o.labels(), other.labels());
            assert_eq!(o.fields(), other.fields());
        }
        assert_eq!(fast.stats().faults("flood_event"), 7);
    }

    /// A write by someone else between two churns is not overwritten with stale template bytes.
    #[tokio::test(start_paused = true)]
    async fn a_foreign_write_invalidates_the_template() {
        let sim = sim();
        sim.flood(FloodSpec::burst("ns", 2));
        sim.apply(&Step::set_pod_phase("ns", "p0", "Failed"))
            .unwrap();
        sim.flood(FloodSpec::burst("ns", 4));
        let p0 = sim.get("pods", Some("ns"), "p0").unwrap();
        assert_eq!(p0["status"]["phase"], "Failed");
        assert_eq!(p0["metadata"]["annotations"]["podgrant-sim/churn-seq"], "2");
    }
}

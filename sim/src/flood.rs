//! Churn generator: MODIFIED events with changing labels, annotations and status, at a rate or as a burst.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::sim::{lock, Sim};

/// What to churn and how fast. Exactly one of `rate_per_second` and `burst` should be set
/// (both: the burst first, then the rate; neither: nothing).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FloodSpec {
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

/// Emit one churn event; returns false if there is nothing to churn.
fn churn_one(sim: &Sim, spec: &FloodSpec, counter: u64) -> bool {
    let Ok(info) = sim.resolve(&spec.resource) else {
        return false;
    };
    let picked = lock(&sim.inner.store).nth(info.plural, spec.namespace.as_deref(), counter);
    let Some(mut obj) = picked else {
        return false;
    };
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    if !obj
        .pointer("/metadata/labels")
        .is_some_and(Value::is_object)
    {
        obj["metadata"]["labels"] = json!({});
    }
    if !obj
        .pointer("/metadata/annotations")
        .is_some_and(Value::is_object)
    {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["labels"]["podgrant-sim/churn"] = json!((counter % 2).to_string());
    obj["metadata"]["annotations"]["podgrant-sim/churn-seq"] = json!(counter.to_string());
    if obj.get("status").is_some_and(Value::is_object) {
        obj["status"]["message"] = json!(format!("churn {counter}"));
    }
    // Unconditional replace of the latest state.
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let ok = sim.replace(&spec.resource, ns.as_deref(), obj).is_ok();
    if ok {
        lock(&sim.inner.stats).count_fault("flood_event");
    }
    ok
}

pub(crate) fn start(sim: Sim, spec: FloodSpec) -> FloodHandle {
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(n) = spec.burst {
        for i in 0..n {
            if churn_one(&sim, &spec, i) {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let task = match spec.rate_per_second.filter(|r| *r > 0.0) {
        Some(rate) if tokio::runtime::Handle::try_current().is_ok() => {
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
                    if churn_one(&sim, &spec, counter) {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    counter += 1;
                }
            }))
        }
        _ => None,
    };
    FloodHandle { sent, stop, task }
}

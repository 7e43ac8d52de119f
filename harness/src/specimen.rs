//! The seed's bug, kept as a specimen (never in core): a faithful port of Go's `WatchPodsBySelector`.
//!
//! The Go original (see `../shared/seed/`):
//!
//! ```go
//! watchPods, err := clientset.CoreV1().Pods(namespace).Watch(metav1.ListOptions{LabelSelector: selector})
//! for {
//!     select {
//!     case wPods := <-watchPods.ResultChan():
//!         t, err := json.Marshal(wPods.Object)
//!         var p v1.Pod
//!         err = json.Unmarshal(t, &p)
//!         switch wPods.Type { case watch.Added: … case watch.Modified: … case watch.Deleted: … }
//!     }
//! }
//! ```
//!
//! client-go pumps the HTTP watch stream into `ResultChan()` from a goroutine and closes the
//! channel when the API server ends the watch. A receive from a closed Go channel returns at once
//! with the zero value — `watch.Event{Type: "", Object: nil}` — so the loop marshals `null`,
//! unmarshals it into an empty `Pod`, matches no case, and goes round again: forever, a full core.
//!
//! The port keeps every piece: a pump task feeding a channel that closes when the watch ends,
//! and `loop { tokio::select! { ev = rx.recv() => … } }` where a closed channel (`None`) becomes
//! the zero value and is ignored — the same JSON round-trip included. It never re-watches and
//! never returns. Stop it by dropping its runtime or aborting its task.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};

/// Counters the specimen updates as it runs (read them from another thread).
#[derive(Debug, Default)]
pub struct SpecimenStats {
    /// Real watch events received (ADDED, MODIFIED, DELETED, …).
    pub events: AtomicU64,
    /// Receives that returned the zero value because the channel was closed.
    pub empty_receives: AtomicU64,
    /// Times the watch was established (always 1: the seed never re-watches).
    pub watches: AtomicU64,
    /// Pods currently believed granted (ADDED/MODIFIED minus DELETED).
    pub granted: AtomicU64,
}

impl SpecimenStats {
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
    pub fn empty_receives(&self) -> u64 {
        self.empty_receives.load(Ordering::Relaxed)
    }
    pub fn watches(&self) -> u64 {
        self.watches.load(Ordering::Relaxed)
    }
}

/// Errors that end the specimen (only starting the watch can fail, as in the Go code).
#[derive(Debug, thiserror::Error)]
pub enum SpecimenError {
    #[error("WatchPodsBySelector watch error: {0}")]
    Watch(#[from] kube::Error),
}

/// Go's `watch.Event`: the zero value has an empty type and a nil object.
#[derive(Debug, Default, Clone)]
pub struct GoWatchEvent {
    pub type_: String,
    pub object: Option<serde_json::Value>,
}

impl GoWatchEvent {
    fn from_kube(ev: Result<WatchEvent<Pod>, kube::Error>) -> Self {
        let obj = |p: &Pod| serde_json::to_value(p).ok();
        match ev {
            Ok(WatchEvent::Added(p)) => Self {
                type_: "ADDED".into(),
                object: obj(&p),
            },
            Ok(WatchEvent::Modified(p)) => Self {
                type_: "MODIFIED".into(),
                object: obj(&p),
            },
            Ok(WatchEvent::Deleted(p)) => Self {
                type_: "DELETED".into(),
                object: obj(&p),
            },
            Ok(WatchEvent::Bookmark(_)) => Self {
                type_: "BOOKMARK".into(),
                object: None,
            },
            Ok(WatchEvent::Error(e)) => Self {
                type_: "ERROR".into(),
                object: serde_json::to_value(e).ok(),
            },
            Err(e) => Self {
                type_: "ERROR".into(),
                object: Some(serde_json::Value::String(e.to_string())),
            },
        }
    }
}

/// The specimen's future. Its `poll` is never inlined, so that the seed's function shows by
/// name (`WatchPodsBySelector`) on a profile even in a release build, where the async body is
/// inlined into it and keeps only a short name (`{async_fn#0}`) in line-tables-only debuginfo.
pub struct WatchPodsBySelector<F>(Pin<Box<F>>);

impl<F: Future> Future for WatchPodsBySelector<F> {
    type Output = F::Output;
    #[inline(never)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}

/// The seed's `WatchPodsBySelector`, faithfully: spins on the closed channel once the server
/// ends the watch. Resolves only if the watch cannot be started. An empty `namespace` watches
/// all namespaces.
pub fn watch_pods_by_selector(
    client: kube::Client,
    namespace: String,
    selector: String,
    stats: Arc<SpecimenStats>,
) -> WatchPodsBySelector<impl Future<Output = Result<(), SpecimenError>> + Send> {
    WatchPodsBySelector(Box::pin(watch_pods_by_selector_loop(
        client, namespace, selector, stats,
    )))
}

#[inline(never)]
async fn watch_pods_by_selector_loop(
    client: kube::Client,
    namespace: String,
    selector: String,
    stats: Arc<SpecimenStats>,
) -> Result<(), SpecimenError> {
    let pods: Api<Pod> = if namespace.is_empty() {
        Api::all(client)
    } else {
        Api::namespaced(client, &namespace)
    };
    let watch = pods
        .watch(&WatchParams::default().labels(&selector), "0")
        .await?;
    stats.watches.fetch_add(1, Ordering::Relaxed);
    // client-go's StreamWatcher: a goroutine decodes the stream into an unbuffered channel
    // and closes it when the stream ends.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<GoWatchEvent>(1);
    tokio::spawn(async move {
        let mut watch = std::pin::pin!(watch);
        while let Some(ev) = watch.next().await {
            if tx.send(GoWatchEvent::from_kube(ev)).await.is_err() {
                return;
            }
        }
        // Dropping tx closes the channel, like close(sw.result).
    });
    loop {
        tokio::select! {
            ev = rx.recv() => {
                // A receive from a closed Go channel yields the zero value, immediately.
                let closed = ev.is_none();
                let w_pods = ev.unwrap_or_default();
                if closed {
                    stats.empty_receives.fetch_add(1, Ordering::Relaxed);
                }
                handle_watch_event(&w_pods, &stats);
            }
        }
    }
}

/// The body of the Go `case`: marshal, unmarshal into a Pod, switch on the type.
#[inline(never)]
fn handle_watch_event(w_pods: &GoWatchEvent, stats: &SpecimenStats) {
    let Ok(t) = serde_json::to_vec(&w_pods.object) else {
        return; // xLog.Errorf("…Marshal…"); return — never happens for a Value
    };
    // Go's json.Unmarshal of `null` into a struct succeeds and leaves the zero value.
    let p: Pod = match serde_json::from_slice::<Option<Pod>>(&t) {
        Ok(p) => p.unwrap_or_default(),
        Err(_) => return,
    };
    match w_pods.type_.as_str() {
        "ADDED" | "MODIFIED" => {
            stats.events.fetch_add(1, Ordering::Relaxed);
            if p.status.and_then(|s| s.pod_ip).is_some() {
                stats.granted.fetch_add(1, Ordering::Relaxed);
            }
        }
        "DELETED" => {
            stats.events.fetch_add(1, Ordering::Relaxed);
            let _ = stats
                .granted
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| g.checked_sub(1));
        }
        "BOOKMARK" | "ERROR" => {
            stats.events.fetch_add(1, Ordering::Relaxed);
        }
        _ => {} // the zero value: no case matches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{named_runtime, CpuMeter};
    use std::time::{Duration, Instant};

    /// A client whose every request is answered by a watch stream of two ADDED pods that then
    /// ends cleanly — what an API server that closes the watch looks like to the client.
    fn closing_watch_client() -> kube::Client {
        let svc = tower::service_fn(|_req: http::Request<kube::client::Body>| async {
            let pod = |name: &str, ip: &str| {
                serde_json::json!({"type": "ADDED", "object": {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
                    "status": {"podIP": ip}}})
                .to_string()
            };
            let body = format!("{}\n{}\n", pod("a", "10.0.0.1"), pod("b", "10.0.0.2"));
            Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                body.into_bytes(),
            )))
        });
        kube::Client::new(svc, "default")
    }

    #[test]
    fn specimen_spins_a_core_after_the_watch_closes() {
        let meter = CpuMeter::new("pgt-specimen", Duration::from_millis(20)).expect("meter");
        let rt = named_runtime("pgt-specimen", 1).expect("runtime");
        let stats = Arc::new(SpecimenStats::default());
        let task = {
            let stats = stats.clone();
            rt.spawn(async move {
                watch_pods_by_selector(
                    closing_watch_client(),
                    "default".into(),
                    "app=x".into(),
                    stats,
                )
                .await
            })
        };
        let end = Instant::now() + Duration::from_secs(20);
        while (stats.events() < 2 || stats.empty_receives() < 1000) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(stats.events(), 2, "both ADDED events handled");
        assert_eq!(stats.watches(), 1, "the seed never re-watches");
        let iv = meter.interval().expect("interval");
        let before = stats.empty_receives();
        while iv.cpu_so_far().expect("cpu") < Duration::from_millis(300) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = iv.finish(stats.empty_receives() - before).expect("finish");
        task.abort();
        rt.shutdown_timeout(Duration::from_secs(5));
        assert!(r.demand > 0.8, "specimen should want a whole core: {r:?}");
        assert!(r.events > 10_000, "closed-channel receives: {r:?}");
        assert_eq!(stats.granted.load(Ordering::Relaxed), 2);
    }
}

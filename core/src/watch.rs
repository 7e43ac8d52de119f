//! Guarded list/watch loops for Services, Pods and Secrets, reduced to `model` facts at once.
//!
//! Why not `kube::runtime::watcher`: in kube-runtime 5, when the server ends a watch cleanly
//! the watcher's state machine goes back to `InitListed` and starts a new watch inside the same
//! poll (`step` trampolines on `None`), so the consumer never even sees that the watch ended;
//! and `default_backoff` is reset by every `Ok` item. A server that closes every watch at once
//! therefore makes a bare watcher re-watch in a tight loop. This loop owns list and watch
//! itself, so every watch end goes through a [`WatchGuard`]: a watch that lived under
//! [`WatchConfig::min_healthy`] and delivered no new event is a failure and backs off
//! exponentially (seeded jitter, capped); only a healthy watch resets the backoff. Like
//! client-go's reflector.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};
use crate::metrics::{Metrics, Resource, RestartReason};
use crate::model::{ObjectRef, Password, PodFacts, SecretFacts, ServiceFacts};
use crate::rate::{SharedStartFloor, StartRate};
use crate::validate::ANNOTATION_PREFIX;

/// Settings of one guarded watch loop.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    /// A watch that ends sooner than this with no new event counts as a failure.
    pub min_healthy: Duration,
    /// Delays after failures (unhealthy watch ends, failed requests).
    pub backoff: BackoffConfig,
    /// `timeoutSeconds` asked of the server for each watch.
    pub server_timeout_secs: u32,
    /// No event nor bookmark for this long: the watch is stalled and is restarted.
    pub idle_timeout: Duration,
    /// A list or watch request that gets no answer in this long has failed.
    pub request_timeout: Duration,
    /// `limit` of each list page.
    pub page_size: Option<u32>,
    /// Optional label selector for the pods watch (a pod leaving it arrives as DELETED).
    pub pod_label_selector: Option<String>,
    /// A floor under watch starts, even when every watch made progress (see [`crate::rate`]):
    /// the rate of one [`SharedStartFloor`], shared by all of a client's watch loops.
    pub rewatch_rate: StartRate,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            min_healthy: Duration::from_secs(1),
            backoff: BackoffConfig {
                initial: Duration::from_millis(800),
                max: Duration::from_secs(30),
                factor: 2.0,
                jitter: 0.25,
            },
            server_timeout_secs: 290,
            idle_timeout: Duration::from_secs(295),
            request_timeout: Duration::from_secs(30),
            page_size: Some(500),
            pod_label_selector: None,
            rewatch_rate: StartRate::default(),
        }
    }
}

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

/// One list page.
#[derive(Debug, Clone)]
pub struct Page<K> {
    pub items: Vec<K>,
    pub resource_version: String,
    pub continue_token: Option<String>,
}

/// One watch event, as the loop needs it.
#[derive(Debug, Clone)]
pub enum RawEvent<K> {
    Added(K, String),
    Modified(K, String),
    Deleted(K, String),
    Bookmark(String),
    /// An in-stream `ERROR` event carrying a `Status`.
    Error {
        code: u16,
        message: String,
    },
}

/// A failed list or watch request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("API server answered {code}: {message}")]
    Status { code: u16, message: String },
    #[error("transport: {0}")]
    Transport(String),
}

impl SourceError {
    /// `410 Gone`: the resourceVersion or continue token is too old.
    pub fn is_gone(&self) -> bool {
        matches!(self, SourceError::Status { code: 410, .. })
    }
}

impl From<kube::Error> for SourceError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => SourceError::Status {
                code: s.code,
                message: s.message,
            },
            other => SourceError::Transport(other.to_string()),
        }
    }
}

/// The stream a watch request opens.
pub type RawStream<K> = BoxStream<'static, Result<RawEvent<K>, SourceError>>;

/// Where objects are listed and watched from: the API server (via [`ApiSource`]) or a test fake.
pub trait ListWatchSource: Send + Sync + 'static {
    type Object: Send + 'static;
    fn list(
        &self,
        limit: Option<u32>,
        continue_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<Self::Object>, SourceError>>;
    fn watch(
        &self,
        resource_version: String,
        timeout_secs: u32,
    ) -> BoxFuture<'_, Result<RawStream<Self::Object>, SourceError>>;
}

/// A [`ListWatchSource`] over a kube `Api`, with an optional label selector.
pub struct ApiSource<K> {
    pub api: Api<K>,
    pub label_selector: Option<String>,
}

impl<K> ListWatchSource for ApiSource<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    type Object = K;

    fn list(
        &self,
        limit: Option<u32>,
        continue_token: Option<String>,
    ) -> BoxFuture<'_, Result<Page<K>, SourceError>> {
        Box::pin(async move {
            let lp = ListParams {
                label_selector: self.label_selector.clone(),
                limit,
                continue_token,
                ..ListParams::default()
            };
            let list = self.api.list(&lp).await?;
            Ok(Page {
                items: list.items,
                resource_version: list.metadata.resource_version.unwrap_or_default(),
                continue_token: list.metadata.continue_.filter(|c| !c.is_empty()),
            })
        })
    }

    fn watch(
        &self,
        resource_version: String,
        timeout_secs: u32,
    ) -> BoxFuture<'_, Result<RawStream<K>, SourceError>> {
        Box::pin(async move {
            let mut wp = WatchParams::default().timeout(timeout_secs);
            wp.label_selector = self.label_selector.clone();
            wp.bookmarks = true;
            let stream = self.api.watch(&wp, &resource_version).await?;
            Ok(stream
                .map(|item| match item {
                    Ok(WatchEvent::Added(o)) => {
                        let rv = o.resource_version().unwrap_or_default();
                        Ok(RawEvent::Added(o, rv))
                    }
                    Ok(WatchEvent::Modified(o)) => {
                        let rv = o.resource_version().unwrap_or_default();
                        Ok(RawEvent::Modified(o, rv))
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        let rv = o.resource_version().unwrap_or_default();
                        Ok(RawEvent::Deleted(o, rv))
                    }
                    Ok(WatchEvent::Bookmark(b)) => {
                        Ok(RawEvent::Bookmark(b.metadata.resource_version))
                    }
                    Ok(WatchEvent::Error(s)) => Ok(RawEvent::Error {
                        code: s.code,
                        message: s.message,
                    }),
                    Err(e) => Err(SourceError::from(e)),
                })
                .boxed())
        })
    }
}

/// What a guarded watch yields, already converted to facts.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<F> {
    /// A complete (re)list: replaces everything known of this resource.
    Relisted(Vec<F>),
    Applied(F),
    /// Deleted — or no longer matching a selector-scoped watch, which means the same here.
    Deleted(F),
}

/// Whether `new` is a newer resourceVersion than `old` (numeric when both parse; else "differs").
fn advances(old: &str, new: &str) -> bool {
    match (old.parse::<u64>(), new.parse::<u64>()) {
        (Ok(o), Ok(n)) => n > o,
        _ => !new.is_empty() && new != old,
    }
}

/// The guarded list/watch loop as a stream of [`Change`]s. Never ends; never spins.
pub fn guarded_watch<S, F, C>(
    source: S,
    convert: C,
    config: WatchConfig,
    seed: u64,
    resource: Resource,
    metrics: Arc<Metrics>,
    floor: SharedStartFloor,
) -> impl Stream<Item = Change<F>> + Send
where
    S: ListWatchSource,
    F: Send + 'static,
    C: Fn(S::Object) -> F + Send + 'static,
{
    async_stream::stream! {
        let mut guard = WatchGuard::new(config.min_healthy, Backoff::new(config.backoff.clone(), seed));
        let mut rv: Option<String> = None;
        // The last watch ended with 410 (so the current resourceVersion is a relist's answer to it).
        let mut expired_last = false;
        loop {
            let current_rv = match rv.clone() {
                Some(v) => v,
                None => {
                    // (Re)list, all pages, at one consistent resourceVersion.
                    let mut items = Vec::new();
                    let mut cont: Option<String> = None;
                    let listed = loop {
                        metrics.list_request(resource);
                        let res = tokio::time::timeout(
                            config.request_timeout,
                            source.list(config.page_size, cont.clone()),
                        )
                        .await;
                        match res {
                            Ok(Ok(page)) => {
                                items.extend(page.items.into_iter().map(&convert));
                                match page.continue_token {
                                    Some(c) => cont = Some(c),
                                    None => break Ok(page.resource_version),
                                }
                            }
                            Ok(Err(e)) => break Err(e.to_string()),
                            Err(_) => break Err("list request timed out".to_string()),
                        }
                    };
                    match listed {
                        Ok(list_rv) => {
                            metrics.event(resource, items.len() as u64);
                            yield Change::Relisted(items);
                            rv = Some(list_rv.clone());
                            list_rv
                        }
                        Err(why) => {
                            metrics.watch_restart(resource, RestartReason::ListFailed);
                            let delay = guard.request_failed();
                            tracing::warn!(resource = resource.as_str(), error = %why, ?delay, "list failed; backing off");
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                    }
                }
            };

            let wait = floor.admit(Instant::now());
            if !wait.is_zero() {
                tracing::debug!(resource = resource.as_str(), ?wait, "re-watch rate floor");
                tokio::time::sleep(wait).await;
            }
            metrics.watch_request(resource);
            let started = Instant::now();
            let opened = tokio::time::timeout(
                config.request_timeout,
                source.watch(current_rv.clone(), config.server_timeout_secs),
            )
            .await;
            let mut stream = match opened {
                Ok(Ok(s)) => s,
                Ok(Err(e)) if e.is_gone() => {
                    metrics.watch_restart(resource, RestartReason::Expired);
                    rv = None;
                    let again = std::mem::replace(&mut expired_last, true);
                    if let Some(delay) = guard.watch_expired(started.elapsed(), 0, again) {
                        tokio::time::sleep(delay).await;
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    metrics.watch_restart(resource, RestartReason::WatchFailed);
                    let delay = guard.request_failed();
                    tracing::warn!(resource = resource.as_str(), error = %e, ?delay, "watch request failed; backing off");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(_) => {
                    metrics.watch_restart(resource, RestartReason::WatchFailed);
                    let delay = guard.request_failed();
                    tracing::warn!(resource = resource.as_str(), ?delay, "watch request timed out; backing off");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };

            let mut progress = 0u64;
            let mut last_rv = current_rv;
            let reason = loop {
                match tokio::time::timeout(config.idle_timeout, stream.next()).await {
                    Err(_) => break RestartReason::Stalled,
                    Ok(None) => break RestartReason::Closed,
                    Ok(Some(Err(e))) => {
                        tracing::debug!(resource = resource.as_str(), error = %e, "watch stream failed");
                        break RestartReason::StreamError;
                    }
                    Ok(Some(Ok(ev))) => {
                        let (change, erv) = match ev {
                            RawEvent::Added(o, erv) | RawEvent::Modified(o, erv) => {
                                (Some(Change::Applied(convert(o))), erv)
                            }
                            RawEvent::Deleted(o, erv) => (Some(Change::Deleted(convert(o))), erv),
                            RawEvent::Bookmark(erv) => (None, erv),
                            RawEvent::Error { code: 410, .. } => {
                                rv = None;
                                break RestartReason::Expired;
                            }
                            RawEvent::Error { code, message } => {
                                tracing::debug!(resource = resource.as_str(), code, %message, "error event in watch");
                                break RestartReason::StreamError;
                            }
                        };
                        if advances(&last_rv, &erv) {
                            last_rv = erv;
                            rv = Some(last_rv.clone());
                            if change.is_some() {
                                progress += 1;
                            }
                        }
                        if let Some(c) = change {
                            metrics.event(resource, 1);
                            yield c;
                        }
                    }
                }
            };
            drop(stream);
            let delay = if reason == RestartReason::Expired {
                let again = std::mem::replace(&mut expired_last, true);
                guard.watch_expired(started.elapsed(), progress, again)
            } else {
                expired_last = false;
                guard.watch_ended(started.elapsed(), progress)
            };
            let reason = if reason == RestartReason::Closed && delay.is_some() {
                RestartReason::ClosedEarly
            } else {
                reason
            };
            metrics.watch_restart(resource, reason);
            if let Some(delay) = delay {
                tracing::debug!(resource = resource.as_str(), reason = reason.as_str(), ?delay, failures = guard.failures(), "unhealthy watch; backing off");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Only podgrant's annotations are kept.
pub fn service_facts(svc: Service) -> ServiceFacts {
    let id = ObjectRef::new(svc.namespace().unwrap_or_default(), svc.name_any());
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let annotations = svc
        .metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    let selector = svc.spec.and_then(|s| s.selector);
    ServiceFacts {
        id,
        uid,
        selector,
        annotations,
    }
}

/// Labels, IP, phase, readiness, deletion and hostNetwork; nothing else.
pub fn pod_facts(pod: Pod) -> PodFacts {
    let id = ObjectRef::new(pod.namespace().unwrap_or_default(), pod.name_any());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let labels = pod.metadata.labels.unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let status = pod.status.unwrap_or_default();
    let ip = status
        .pod_ip
        .as_deref()
        .and_then(|s| s.parse::<IpAddr>().ok());
    let running = status.phase.as_deref() == Some("Running");
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    PodFacts {
        id,
        uid,
        labels,
        ip,
        running,
        ready,
        terminating,
        host_network,
    }
}

/// The decoded data of a Secret; values that are not UTF-8 are left out (MySQL passwords are text).
pub fn secret_facts(secret: Secret) -> SecretFacts {
    let id = ObjectRef::new(secret.namespace().unwrap_or_default(), secret.name_any());
    let data: BTreeMap<String, Password> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|s| (k, Password::new(s))))
        .collect();
    SecretFacts { id, data }
}

/// `Api` for a namespace, or all namespaces.
pub fn api_for<K>(client: kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// What the fake source does for one watch request.
    #[derive(Clone)]
    enum Script {
        /// Opens, yields these events, then ends cleanly.
        Events(Vec<RawEvent<u32>>),
        /// Refuses the request.
        Fail(SourceError),
        /// Opens and never sends anything.
        Stall,
    }

    struct Fake {
        list_items: Mutex<Vec<u32>>,
        list_rv: Mutex<u64>,
        watches: Mutex<VecDeque<Script>>,
        /// When the script runs out: end every watch immediately (the seed's failure).
        calls: Mutex<(u64, u64)>,
        /// When each list ('l') and watch ('w') request was made.
        times: Mutex<Vec<(char, Instant)>>,
    }

    impl ListWatchSource for Arc<Fake> {
        type Object = u32;
        fn list(
            &self,
            _limit: Option<u32>,
            _c: Option<String>,
        ) -> BoxFuture<'_, Result<Page<u32>, SourceError>> {
            Box::pin(async move {
                self.calls.lock().unwrap().0 += 1;
                self.times.lock().unwrap().push(('l', Instant::now()));
                Ok(Page {
                    items: self.list_items.lock().unwrap().clone(),
                    resource_version: self.list_rv.lock().unwrap().to_string(),
                    continue_token: None,
                })
            })
        }
        fn watch(
            &self,
            _rv: String,
            _t: u32,
        ) -> BoxFuture<'_, Result<RawStream<u32>, SourceError>> {
            Box::pin(async move {
                self.calls.lock().unwrap().1 += 1;
                self.times.lock().unwrap().push(('w', Instant::now()));
                let script = self
                    .watches
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(Script::Events(vec![]));
                match script {
                    Script::Events(evs) => {
                        Ok(futures::stream::iter(evs.into_iter().map(Ok)).boxed())
                    }
                    Script::Fail(e) => Err(e),
                    Script::Stall => Ok(futures::stream::pending().boxed()),
                }
            })
        }
    }

    fn fake(items: Vec<u32>, rv: u64, scripts: Vec<Script>) -> Arc<Fake> {
        Arc::new(Fake {
            list_items: Mutex::new(items),
            list_rv: Mutex::new(rv),
            watches: Mutex::new(scripts.into()),
            calls: Mutex::new((0, 0)),
            times: Mutex::new(Vec::new()),
        })
    }

    fn cfg() -> WatchConfig {
        WatchConfig {
            min_healthy: Duration::from_secs(1),
            backoff: BackoffConfig {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(10),
                factor: 2.0,
                jitter: 0.2,
            },
            idle_timeout: Duration::from_secs(60),
            ..WatchConfig::default()
        }
    }

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

    /// The seed's failure: every watch ends the moment it opens. A bare kube-runtime watcher
    /// re-watches without pause; the guarded loop backs off to the cap.
    #[tokio::test(start_paused = true)]
    async fn every_watch_closed_at_once_backs_off_instead_of_spinning() {
        let src = fake(vec![1, 2], 10, vec![]);
        let metrics = Arc::new(Metrics::new());
        let s = guarded_watch(
            src.clone(),
            |x| x,
            cfg(),
            1,
            Resource::Pods,
            metrics.clone(),
            SharedStartFloor::new(cfg().rewatch_rate),
        );
        let mut s = Box::pin(s);
        assert_eq!(s.next().await, Some(Change::Relisted(vec![1, 2])));
        let driver = tokio::spawn(async move { while s.next().await.is_some() {} });
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(600)).await;
        let (lists, watches) = *src.calls.lock().unwrap();
        driver.abort();
        // Backoff 0.5, 1, 2, 4, 8, then 10 s (±20%): ~5 + 590/10 ≈ 65 watches in 10 minutes.
        assert_eq!(lists, 1, "a clean close is not a reason to relist");
        assert!((40..=90).contains(&watches), "watches in 600 s: {watches}");
        let snap = metrics.snapshot();
        let early = snap.restarts(RestartReason::ClosedEarly);
        assert!(
            early + 1 >= watches && early <= watches,
            "{early} vs {watches}"
        );
        assert_eq!(snap.total_restarts(), early);
        assert!(start.elapsed() >= Duration::from_secs(600));
    }

    /// The fuzzer's find (issue 8's faults that fire): a server that closes every watch right
    /// after one new event. Each watch made progress, so the guard never backs off; without a
    /// floor the loop re-watched once per event, as fast as the server answered.
    #[tokio::test(start_paused = true)]
    async fn every_watch_closing_after_one_new_event_rewatches_at_the_floor_rate() {
        let scripts = (0..10_000u64)
            .map(|i| Script::Events(vec![RawEvent::Added(i as u32, (11 + i).to_string())]))
            .collect();
        let src = fake(vec![], 10, scripts);
        let metrics = Arc::new(Metrics::new());
        let mut s = Box::pin(guarded_watch(
            src.clone(),
            |x| x,
            cfg(),
            1,
            Resource::Pods,
            metrics.clone(),
            SharedStartFloor::new(cfg().rewatch_rate),
        ));
        assert_eq!(s.next().await, Some(Change::Relisted(vec![])));
        let driver = tokio::spawn(async move { while s.next().await.is_some() {} });
        tokio::time::sleep(Duration::from_secs(100)).await;
        let (lists, watches) = *src.calls.lock().unwrap();
        driver.abort();
        // Burst 5, then 1 per second: ~105 in 100 s (it was one per event: thousands).
        assert_eq!(lists, 1);
        assert!(
            (100..=106).contains(&watches),
            "watches in 100 s: {watches}"
        );
        let events = metrics.snapshot().events["pods"];
        assert!(
            events + 1 >= watches && events <= watches,
            "{events} events, {watches} watches"
        );
    }

    /// The fuzzer's second find (seed 5, 10,000 cases): with a floor per loop, the engine's three
    /// loops under a close-after-one-event server started 22 watches in 10 s between them, over
    /// the 2/s budget. One floor shared by the loops bounds the client's total: in any window of
    /// `t` seconds at most `burst + rate·t` starts, however many loops there are.
    #[tokio::test(start_paused = true)]
    async fn loops_sharing_a_floor_start_no_more_watches_together_than_one_floor_allows() {
        let shared = SharedStartFloor::new(cfg().rewatch_rate);
        let StartRate { burst, per_second } = cfg().rewatch_rate;
        let mut sources = Vec::new();
        let mut drivers = Vec::new();
        for (i, resource) in [Resource::Pods, Resource::Services, Resource::Secrets]
            .into_iter()
            .enumerate()
        {
            let scripts = (0..10_000u64)
                .map(|n| Script::Events(vec![RawEvent::Added(n as u32, (11 + n).to_string())]))
                .collect();
            let src = fake(vec![], 10, scripts);
            sources.push(src.clone());
            let mut s = Box::pin(guarded_watch(
                src,
                |x| x,
                cfg(),
                i as u64,
                resource,
                Arc::new(Metrics::new()),
                shared.clone(),
            ));
            drivers.push(tokio::spawn(
                async move { while s.next().await.is_some() {} },
            ));
        }
        let secs = 10.0;
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        let watches: u64 = sources.iter().map(|s| s.calls.lock().unwrap().1).sum();
        for d in drivers {
            d.abort();
        }
        let bound = f64::from(burst) + per_second * secs;
        // Each loop alone would have started ~`bound` times (three times as many together).
        assert!(
            (watches as f64) <= bound + 1.0 && (watches as f64) >= bound - 2.0,
            "{watches} watch starts in {secs} s across three loops; one floor allows {bound}"
        );
    }

    /// A services loop over `src` with the test config and a floor of its own.
    fn services_watch(src: &Arc<Fake>) -> std::pin::Pin<Box<impl Stream<Item = Change<u32>>>> {
        Box::pin(guarded_watch(
            src.clone(),
            |x| x,
            cfg(),
            1,
            Resource::Services,
            Arc::new(Metrics::new()),
            SharedStartFloor::new(cfg().rewatch_rate),
        ))
    }

    /// The requests `src` saw, as a string of 'l' (list) and 'w' (watch), and when each came.
    fn call_log(src: &Arc<Fake>) -> (String, Vec<(char, Instant)>) {
        let times = src.times.lock().unwrap().clone();
        (times.iter().map(|(k, _)| *k).collect(), times)
    }

    fn gone() -> Script {
        Script::Fail(SourceError::Status {
            code: 410,
            message: "too old resource version".into(),
        })
    }

    /// The fuzzer's third find (seed 5, 10,000 cases): a Service was deleted while the services
    /// watch was backing off (every watch closed at once), then the history was compacted. The
    /// next watch got 410, and the guard waited out its grown backoff *again* before relisting,
    /// so the deleted Service's grants stayed 40 s. A first 410 relists at once.
    #[tokio::test(start_paused = true)]
    async fn a_stale_resource_version_relists_at_once_even_after_a_long_backoff() {
        let mut scripts = vec![Script::Events(vec![]); 5];
        scripts.push(gone());
        scripts.push(Script::Stall);
        let src = fake(vec![1], 10, scripts);
        let mut s = services_watch(&src);
        assert_eq!(s.next().await, Some(Change::Relisted(vec![1])));
        *src.list_items.lock().unwrap() = vec![];
        *src.list_rv.lock().unwrap() = 20;
        assert_eq!(s.next().await, Some(Change::Relisted(vec![])));
        let (kinds, times) = call_log(&src);
        assert_eq!(
            kinds, "lwwwwwwl",
            "five closed watches, the 410, the relist"
        );
        let (_, gone_at) = times[6];
        let (_, relist_at) = times[7];
        assert_eq!(
            relist_at - gone_at,
            Duration::ZERO,
            "no backoff between a first 410 and its relist"
        );
        assert!(
            gone_at - times[0].1 >= Duration::from_secs(10),
            "the closed watches were backed off"
        );
    }

    /// The other half of the rule: a server that answers 410 even to the resourceVersion of the
    /// list it just served is misbehaving, and is backed off instead of relisted in a loop.
    #[tokio::test(start_paused = true)]
    async fn a_410_to_a_fresh_lists_version_is_backed_off() {
        let src = fake(vec![1], 10, vec![gone(), gone(), gone(), Script::Stall]);
        let mut s = services_watch(&src);
        for _ in 0..4 {
            assert_eq!(s.next().await, Some(Change::Relisted(vec![1])));
        }
        let (kinds, times) = call_log(&src);
        assert_eq!(kinds, "lwlwlwl");
        assert_eq!(
            times[2].1 - times[1].1,
            Duration::ZERO,
            "the first 410 relists at once"
        );
        let second = times[4].1 - times[3].1;
        let third = times[6].1 - times[5].1;
        assert!(
            second >= Duration::from_millis(400),
            "then backs off: {second:?}"
        );
        assert!(
            third > second,
            "and the backoff grows: {second:?} then {third:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_flow_and_expired_relists_with_the_new_contents() {
        let src = fake(
            vec![1, 2, 3],
            10,
            vec![Script::Events(vec![
                RawEvent::Added(4, "11".into()),
                RawEvent::Deleted(1, "12".into()),
                RawEvent::Bookmark("13".into()),
                RawEvent::Error {
                    code: 410,
                    message: "too old".into(),
                },
            ])],
        );
        let metrics = Arc::new(Metrics::new());
        let mut s = Box::pin(guarded_watch(
            src.clone(),
            |x| x,
            cfg(),
            1,
            Resource::Pods,
            metrics.clone(),
            SharedStartFloor::new(cfg().rewatch_rate),
        ));
        assert_eq!(s.next().await, Some(Change::Relisted(vec![1, 2, 3])));
        assert_eq!(s.next().await, Some(Change::Applied(4)));
        assert_eq!(s.next().await, Some(Change::Deleted(1)));
        *src.list_items.lock().unwrap() = vec![2, 3, 4, 5];
        *src.list_rv.lock().unwrap() = 20;
        assert_eq!(s.next().await, Some(Change::Relisted(vec![2, 3, 4, 5])));
        let snap = metrics.snapshot();
        assert_eq!(snap.restarts(RestartReason::Expired), 1);
        assert_eq!(src.calls.lock().unwrap().0, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_watch_is_restarted_and_failed_requests_back_off() {
        let src = fake(
            vec![],
            5,
            vec![
                Script::Stall,
                Script::Fail(SourceError::Status {
                    code: 429,
                    message: "slow down".into(),
                }),
                Script::Fail(SourceError::Status {
                    code: 503,
                    message: "unavailable".into(),
                }),
                Script::Events(vec![RawEvent::Added(9, "6".into())]),
            ],
        );
        let metrics = Arc::new(Metrics::new());
        let mut s = Box::pin(guarded_watch(
            src.clone(),
            |x| x,
            cfg(),
            3,
            Resource::Secrets,
            metrics.clone(),
            SharedStartFloor::new(cfg().rewatch_rate),
        ));
        let t0 = Instant::now();
        assert_eq!(s.next().await, Some(Change::Relisted(vec![])));
        assert_eq!(s.next().await, Some(Change::Applied(9)));
        let waited = t0.elapsed();
        // 60 s idle timeout, then two backoffs (≥ 0.4 s and ≥ 0.8 s).
        assert!(waited >= Duration::from_secs(61), "{waited:?}");
        let snap = metrics.snapshot();
        assert_eq!(snap.restarts(RestartReason::Stalled), 1);
        assert_eq!(snap.restarts(RestartReason::WatchFailed), 2);
        assert_eq!(snap.events["secrets"], 1);
    }

    #[test]
    fn pod_facts_keep_only_what_granting_needs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"},
                         "annotations": {"big": "x"}, "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"phase": "Running", "podIP": "10.0.0.7",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let f = pod_facts(pod);
        assert_eq!(f.id, ObjectRef::new("ns", "p"));
        assert_eq!(f.ip, Some("10.0.0.7".parse().unwrap()));
        assert!(f.running && f.ready && f.terminating && f.host_network);
        assert_eq!(f.grantable_ip(), None);
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns", "uid": "u2",
                         "annotations": {"podgrant.io/mysql-user": "app", "other/x": "y"}},
            "spec": {"selector": {"app": "a"}}
        }))
        .unwrap();
        let f = service_facts(svc);
        assert_eq!(f.annotations.len(), 1);
        assert!(f.selects(&BTreeMap::from([("app".to_string(), "a".to_string())])));
        let sec: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "ns"},
            "data": {"password": "aHVudGVyMg==", "bin": "/w=="}
        }))
        .unwrap();
        let f = secret_facts(sec);
        assert_eq!(f.data.len(), 1);
        assert_eq!(f.data["password"].expose(), "hunter2");
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

    #[test]
    fn only_a_410_refusal_is_gone() {
        let status = |code| SourceError::Status {
            code,
            message: String::new(),
        };
        assert!(status(410).is_gone());
        assert!(!status(404).is_gone());
        assert!(!status(500).is_gone());
        assert!(!SourceError::Transport("410".into()).is_gone());
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

    #[test]
    fn a_pod_is_ready_only_with_a_true_ready_condition() {
        let pod = |conditions: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "status": {"phase": "Running", "podIP": "10.0.0.7", "conditions": conditions}
            }))
            .unwrap()
        };
        let ready = |c| pod_facts(pod(c)).ready;
        assert!(ready(
            serde_json::json!([{"type": "Ready", "status": "True"}])
        ));
        assert!(!ready(
            serde_json::json!([{"type": "Ready", "status": "False"}])
        ));
        assert!(!ready(serde_json::json!([
            {"type": "ContainersReady", "status": "True"},
            {"type": "Ready", "status": "False"}
        ])));
        assert!(!ready(serde_json::json!([])));
    }

    /// `ApiSource::list` sends the engine's label selector, page size and continue token, and
    /// reads the page's version and next token back: a real kube `Client` over a fake HTTP
    /// service that records each request's URI.
    #[tokio::test]
    async fn api_source_lists_with_its_selector_page_size_and_continue_token() {
        use k8s_openapi::api::core::v1::Pod;
        let uris = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = uris.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            seen.lock().unwrap().push(req.uri().to_string());
            async move {
                let page = br#"{"apiVersion":"v1","kind":"PodList","metadata":{"resourceVersion":"7","continue":"next-page"},"items":[]}"#;
                Ok::<_, std::convert::Infallible>(http::Response::new(kube::client::Body::from(
                    page.to_vec(),
                )))
            }
        });
        let source = ApiSource {
            api: Api::<Pod>::all(kube::Client::new(service, "default")),
            label_selector: Some("app=web".into()),
        };
        let page = source
            .list(Some(50), Some("token-1".into()))
            .await
            .expect("list");
        assert_eq!(page.resource_version, "7");
        assert_eq!(page.continue_token.as_deref(), Some("next-page"));
        let uri = uris.lock().unwrap().first().cloned().expect("one request");
        for part in ["labelSelector=app%3Dweb", "limit=50", "continue=token-1"] {
            assert!(uri.contains(part), "{part} missing from {uri}");
        }
    }
}

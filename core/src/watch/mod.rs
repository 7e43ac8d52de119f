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
//!
//! The map: [`machine`] is the loop as a state enum and one pure transition function;
//! [`guarded_watch`] here is its thin async shell (requests, timeouts, sleeps, the shared start
//! floor of [`crate::rate`]); `guard` is the healthy-or-failure rule; `source` the list/watch
//! API it talks to; `wire` the engine's source, decoding straight into facts, over `lines`, the
//! framing of a watch body; `facts` the typed reduction of objects to what granting needs.

mod facts;
mod guard;
pub mod lines;
pub mod machine;
mod source;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::Api;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};
use crate::metrics::{Metrics, Resource, RestartReason};
use crate::rate::{SharedStartFloor, StartRate};

pub use facts::{pod_facts, secret_facts, service_facts};
pub use guard::WatchGuard;
use machine::{Action, End, Input, Machine};
pub use source::{ApiSource, ListWatchSource, Page, RawEvent, RawStream, SourceError};

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
    /// A 429/503's `Retry-After` is waited out up to this long (longer asks are cut to it).
    pub max_retry_after: Duration,
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
            max_retry_after: Duration::from_secs(60),
        }
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

/// A watch's `timeoutSeconds`: uniform in `[base / 2, base]`, so that loops started together
/// (one per named Secret, at startup) do not all re-watch at the same moment, as client-go's
/// reflector spreads its own. Never above `base`, which stays under the idle timeout.
fn jittered(base: u32, rng: &mut StdRng) -> u32 {
    let half = base / 2;
    half + rng.random_range(0..=base - half)
}

/// Waits `d` (no timer at all when it is zero).
async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// The guarded list/watch loop as a stream of [`Change`]s: the async shell of
/// [`machine::Machine`], which makes every decision. Never ends; never spins.
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
        let guard = WatchGuard::new(config.min_healthy, Backoff::new(config.backoff.clone(), seed));
        let mut machine = Machine::new(guard, config.max_retry_after);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7137);
        let mut action = machine.first();
        // The pages of the list in progress.
        let mut items: Vec<F> = Vec::new();
        let mut stream: Option<RawStream<S::Object>> = None;
        // The idle timeout of the open watch: one timer per loop, re-armed lazily (only when it
        // fires before its due time), not a timer armed and cancelled for every event.
        let mut idle = Box::pin(tokio::time::sleep(config.idle_timeout));
        let mut last_seen = Instant::now();
        loop {
            let step = match action {
                Action::List { continue_token, after } => {
                    stream = None;
                    pause(after).await;
                    if continue_token.is_none() {
                        items.clear();
                    }
                    metrics.list_request(resource);
                    let res = tokio::time::timeout(
                        config.request_timeout,
                        source.list(config.page_size, continue_token),
                    )
                    .await;
                    match res {
                        Ok(Ok(page)) => {
                            items.extend(page.items.into_iter().map(&convert));
                            let input = Input::Page {
                                resource_version: &page.resource_version,
                                continue_token: page.continue_token,
                            };
                            machine.step(input, Instant::now())
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(resource = resource.as_str(), error = %e, failures = machine.failures(), "list failed; backing off");
                            machine.step(Input::ListFailed { retry_after: e.retry_after() }, Instant::now())
                        }
                        Err(_) => {
                            tracing::warn!(resource = resource.as_str(), failures = machine.failures(), "list request timed out; backing off");
                            machine.step(Input::ListFailed { retry_after: None }, Instant::now())
                        }
                    }
                }
                Action::Watch { from, after, first } => {
                    stream = None;
                    pause(after).await;
                    if first {
                        // A new loop is not a storm: it never queues behind re-watches.
                        floor.take(Instant::now());
                    } else {
                        let wait = floor.admit(Instant::now());
                        if !wait.is_zero() {
                            tracing::debug!(resource = resource.as_str(), ?wait, "re-watch rate floor");
                            tokio::time::sleep(wait).await;
                        }
                    }
                    metrics.watch_request(resource);
                    let started = Instant::now();
                    let opened = tokio::time::timeout(
                        config.request_timeout,
                        source.watch(from, jittered(config.server_timeout_secs, &mut rng)),
                    )
                    .await;
                    match opened {
                        Ok(Ok(s)) => {
                            stream = Some(s);
                            last_seen = Instant::now();
                            idle.as_mut().reset(last_seen + config.idle_timeout);
                            machine.step(Input::Opened, started)
                        }
                        Ok(Err(e)) => {
                            let gone = e.is_gone();
                            if !gone {
                                tracing::warn!(resource = resource.as_str(), error = %e, failures = machine.failures(), "watch request failed; backing off");
                            }
                            machine.step(Input::Refused { gone, retry_after: e.retry_after() }, Instant::now())
                        }
                        Err(_) => {
                            tracing::warn!(resource = resource.as_str(), failures = machine.failures(), "watch request timed out; backing off");
                            machine.step(Input::Refused { gone: false, retry_after: None }, Instant::now())
                        }
                    }
                }
                Action::Read => {
                    let open = stream.as_mut().expect("reading with no open watch");
                    // `None`: nothing arrived for the idle timeout since the last item.
                    let next = loop {
                        tokio::select! {
                            biased;
                            item = open.next() => break Some(item),
                            () = idle.as_mut() => {
                                let due = last_seen + config.idle_timeout;
                                if Instant::now() >= due {
                                    break None;
                                }
                                idle.as_mut().reset(due);
                            }
                        }
                    };
                    let now = Instant::now();
                    last_seen = now;
                    match next {
                        None => machine.step(Input::Ended(End::Stalled), now),
                        Some(None) => machine.step(Input::Ended(End::Closed), now),
                        Some(Some(Err(e))) => {
                            tracing::debug!(resource = resource.as_str(), error = %e, "watch stream failed");
                            machine.step(Input::Ended(End::Failed), now)
                        }
                        Some(Some(Ok(RawEvent::Error { code: 410, .. }))) => {
                            machine.step(Input::Ended(End::Expired), now)
                        }
                        Some(Some(Ok(RawEvent::Error { code, message }))) => {
                            tracing::debug!(resource = resource.as_str(), code, %message, "error event in watch");
                            machine.step(Input::Ended(End::Failed), now)
                        }
                        Some(Some(Ok(RawEvent::Bookmark(rv)))) => machine.step(
                            Input::Event { resource_version: &rv, object: false },
                            now,
                        ),
                        Some(Some(Ok(RawEvent::Added(o, rv) | RawEvent::Modified(o, rv)))) => {
                            let step = machine.step(Input::Event { resource_version: &rv, object: true }, now);
                            metrics.event(resource, 1);
                            yield Change::Applied(convert(o));
                            step
                        }
                        Some(Some(Ok(RawEvent::Deleted(o, rv)))) => {
                            let step = machine.step(Input::Event { resource_version: &rv, object: true }, now);
                            metrics.event(resource, 1);
                            yield Change::Deleted(convert(o));
                            step
                        }
                    }
                }
            };
            if step.relisted {
                metrics.event(resource, items.len() as u64);
                yield Change::Relisted(std::mem::take(&mut items));
            }
            if let Some(reason) = step.restart {
                metrics.watch_restart(resource, reason);
                if reason != RestartReason::Closed {
                    tracing::debug!(resource = resource.as_str(), reason = reason.as_str(), failures = machine.failures(), "watch restart");
                }
            }
            action = step.action;
        }
    }
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
    use futures::future::BoxFuture;
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
            retry_after: None,
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
                    retry_after: None,
                }),
                Script::Fail(SourceError::Status {
                    code: 503,
                    message: "unavailable".into(),
                    retry_after: None,
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
}

//! The async shell: watch events → index → debounce → desired → observe → plan → apply, with retries.
//!
//! Level-triggered throughout, and cheap in proportion to what changed: each watch change
//! updates the desired state incrementally ([`IncrementalDesired`]), which records the accounts
//! whose desired value changed. A reconcile plans only those dirty accounts against the store's
//! observed state; with none, it is skipped without touching the store (floods that change no
//! membership coalesce to nothing). A full reconcile — at startup, on becoming leader, after a
//! failed reconcile and at every periodic resync — recomputes the desired state from the whole
//! index and plans every account, so drift (an account dropped or altered by hand) is repaired
//! and a failed or interrupted reconcile loses nothing.
//!
//! The loop is a thin shell over two pure parts: `schedule` decides when a reconcile starts
//! (debounce, resync, backoff, leadership) and `reconcile` decides, reply by reply, which
//! store call comes next. Each store call runs in its own task, so watch events keep being
//! ingested and coalesced while MySQL is slow; at most one reconcile runs at a time.

mod reconcile;
mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{AbortHandle, SelectAll};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::Api;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use self::reconcile::{Call, Reconcile, ReconcileError, Reply, World};
use self::schedule::{ScheduleConfig, Scheduler, Start};
use crate::backoff::BackoffConfig;
use crate::desired::{HolderIndex, ServiceProblem};
use crate::events::{EventConfig, ProblemFilter, Recorder, Report};
use crate::incremental::IncrementalDesired;
use crate::index::{referenced_secrets, ClusterEvent, Delta, Index};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::{Metrics, Resource};
use crate::model::ObjectRef;
use crate::rate::SharedStartFloor;
use crate::store::{GrantStore, StoreError};
use crate::validate::Policy;
use crate::watch::wire::{PodWire, SecretWire, ServiceWire, Wire, WireSource};
use crate::watch::{api_for, guarded_watch, WatchConfig};

/// Everything the engine can be told.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub policy: Policy,
    /// Watch one namespace, or all (`None`).
    pub namespace: Option<String>,
    /// After the first change, wait this long for more before reconciling (a window, not a
    /// sliding timer: a steady flood still reconciles once per window).
    pub debounce: Duration,
    /// Reconcile against the store at least this often even with no change (repairs drift).
    pub resync_interval: Duration,
    /// The watch guard and list/watch settings.
    pub watch: WatchConfig,
    /// Backoff of failed reconciles (store errors).
    pub apply_backoff: BackoffConfig,
    /// Observe→plan→apply rounds per reconcile before giving up until the next retry.
    pub max_rounds: u32,
    /// A store call (observe or apply) that takes longer than this has failed (transient).
    /// `None` (the default, safe under a paused test clock with real I/O): no limit.
    /// The binary sets 120 s.
    pub store_timeout: Option<Duration>,
    /// Seed of all jitter.
    pub seed: u64,
    /// Leader election; `None`: this replica always applies.
    pub leader: Option<LeaseConfig>,
    pub events: EventConfig,
    /// Name used in Events (`reportingInstance`) and logs.
    pub identity: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            namespace: None,
            debounce: Duration::from_millis(250),
            resync_interval: Duration::from_secs(300),
            watch: WatchConfig::default(),
            apply_backoff: BackoffConfig {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(60),
                factor: 2.0,
                jitter: 0.2,
            },
            max_rounds: 4,
            store_timeout: None,
            seed: 0x5eed,
            leader: None,
            events: EventConfig::default(),
            identity: "podgrant".into(),
        }
    }
}

/// Why the engine stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("all watch streams ended")]
    WatchesEnded,
}

/// The engine. Build with [`Engine::new`], read counters with [`Engine::metrics`], drive with [`Engine::run`].
pub struct Engine<S: GrantStore> {
    client: kube::Client,
    store: Arc<S>,
    config: EngineConfig,
    metrics: Arc<Metrics>,
}

/// A merged watch stream.
type EventStream = futures::stream::BoxStream<'static, ClusterEvent>;

/// Decoded straight into facts (see `watch::wire`): no `k8s_openapi` objects on the way.
fn source<K, W>(client: &kube::Client, ns: Option<&str>, selector: Option<String>) -> WireSource<W>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    let url = api_for::<K>(client.clone(), ns).resource_url().to_string();
    WireSource::new(client.clone(), url, selector)
}

/// Runs a store call with an optional time limit; running out is a transient error.
async fn bounded<T>(
    limit: Option<Duration>,
    what: &str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match limit {
        None => call.await,
        Some(d) => tokio::time::timeout(d, call).await.unwrap_or_else(|_| {
            Err(StoreError::Transient(format!(
                "{what} timed out after {d:?}"
            )))
        }),
    }
}

/// Aborts a background task when dropped (so a dropped engine leaves nothing running).
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// A store call running in its own task.
type StoreTask = AbortOnDrop<Result<Reply, StoreError>>;

/// The reply of the store call in flight (pending while there is none).
async fn join(in_flight: &mut Option<(Reconcile, StoreTask)>) -> Result<Reply, StoreError> {
    let Some(handle) = in_flight.as_mut().and_then(|(_, task)| task.0.as_mut()) else {
        return std::future::pending().await;
    };
    match handle.await {
        Ok(reply) => reply,
        // A panic in the store is a bug: surface it.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled (the runtime is shutting down): the call's outcome is unknown, as after a
        // lost connection; the reconcile fails and is retried whole.
        Err(e) => Err(StoreError::Transient(format!(
            "store call did not finish: {e}"
        ))),
    }
}

impl<S: GrantStore> Engine<S> {
    pub fn new(client: kube::Client, store: Arc<S>, config: EngineConfig) -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.set_tenancy_enforced(config.policy.tenancy.enforced);
        Self {
            client,
            store,
            config,
            metrics,
        }
    }

    /// The engine's counters (shared; valid before, during and after `run`).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The guarded watch streams of Services and Pods (Secrets are watched one by one, see
    /// [`Engine::secret_watch`]).
    fn cluster_watches(&self, starts: &SharedStartFloor) -> Vec<EventStream> {
        let ns = self.config.namespace.as_deref();
        let c = &self.config;
        let m = &self.metrics;
        let services = guarded_watch(
            source::<Service, ServiceWire>(&self.client, ns, None),
            ServiceWire::into_facts,
            c.watch.clone(),
            c.seed ^ 0x5e,
            Resource::Services,
            m.clone(),
            starts.clone(),
        )
        .map(ClusterEvent::Services);
        let pods = guarded_watch(
            source::<Pod, PodWire>(&self.client, ns, c.watch.pod_label_selector.clone()),
            PodWire::into_facts,
            c.watch.clone(),
            c.seed ^ 0x90d,
            Resource::Pods,
            m.clone(),
            starts.clone(),
        )
        .map(ClusterEvent::Pods);
        vec![services.boxed(), pods.boxed()]
    }

    /// The guarded watch of one Secret (`fieldSelector=metadata.name=…` in its namespace), so
    /// the engine holds only the Secrets Services name — and RBAC can grant `get, list, watch`
    /// on exactly those (`resourceNames`). Stopped with the returned handle.
    fn secret_watch(
        &self,
        id: &ObjectRef,
        starts: &SharedStartFloor,
    ) -> (EventStream, AbortHandle) {
        let c = &self.config;
        let src = source::<Secret, SecretWire>(&self.client, Some(&id.namespace), None)
            .with_field_selector(format!("metadata.name={}", id.name));
        let seed = id
            .namespace
            .bytes()
            .chain([b'/'])
            .chain(id.name.bytes())
            .fold(c.seed ^ 0x5ec, |h, b| h.rotate_left(5) ^ u64::from(b));
        let key = id.clone();
        let stream = guarded_watch(
            src,
            SecretWire::into_facts,
            c.watch.clone(),
            seed,
            Resource::Secrets,
            self.metrics.clone(),
            starts.clone(),
        )
        .map(move |change| ClusterEvent::Secret(key.clone(), change));
        let (stream, handle) = futures::stream::abortable(stream);
        (stream.boxed(), handle)
    }

    /// Starts a watch for every Secret the Services now name and stops those no longer named;
    /// what forgetting the stopped ones changed.
    fn sync_secret_watches(
        &self,
        index: &mut Index,
        watches: &mut BTreeMap<ObjectRef, AbortHandle>,
        events: &mut SelectAll<EventStream>,
        starts: &SharedStartFloor,
    ) -> Vec<Delta> {
        let wanted = referenced_secrets(index.cluster(), &self.config.policy);
        let mut deltas = Vec::new();
        watches.retain(|id, handle| {
            let keep = wanted.contains(id);
            if !keep {
                handle.abort();
                deltas.push(index.forget_secret(id));
            }
            keep
        });
        for id in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = watches.entry(id) {
                let (stream, handle) = self.secret_watch(slot.key(), starts);
                index.expect_secret(slot.key().clone());
                events.push(stream);
                slot.insert(handle);
            }
        }
        deltas
    }

    /// Runs until `shutdown` completes. Watches always run (a follower keeps a warm index);
    /// only the leader reconciles, one reconcile at a time, each store call in its own task
    /// while watch events keep being ingested and coalesced.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), EngineError> {
        let metrics = self.metrics.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (leading_tx, mut leading_rx) = watch::channel(self.config.leader.is_none());
        // Without election the sender must outlive the loop (a closed channel would wake it forever).
        let mut _keep_leading_tx = None;
        let mut elector_alive = self.config.leader.is_some();
        let elector = match self.config.leader.clone() {
            Some(lc) => {
                let api: Api<Lease> = Api::namespaced(self.client.clone(), &lc.namespace);
                let mut stop = stop_rx.clone();
                let elector = LeaderElector::new(api, lc);
                // Only an explicit stop releases the lease; if `run` is dropped (a crash, an
                // aborted task) the elector is aborted too and the lease simply expires.
                Some(AbortOnDrop(Some(tokio::spawn(elector.run(
                    leading_tx,
                    async move {
                        if stop.wait_for(|s| *s).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    },
                )))))
            }
            None => {
                _keep_leading_tx = Some(leading_tx);
                None
            }
        };
        let recorder = self.config.events.enabled.then(|| {
            Recorder::spawn(
                self.client.clone(),
                self.config.identity.clone(),
                metrics.clone(),
            )
        });
        let mut filter = ProblemFilter::new(self.config.events.clone());

        // One floor under the watch starts of all loops (see `SharedStartFloor`).
        let starts = SharedStartFloor::new(self.config.watch.rewatch_rate);
        let mut events: SelectAll<EventStream> =
            futures::stream::select_all(self.cluster_watches(&starts));
        let mut secret_watches: BTreeMap<ObjectRef, AbortHandle> = BTreeMap::new();
        let mut index = Index::new();
        index.secrets_by_name();
        // The desired state has been built (from the first complete view).
        let mut built = false;
        let mut desired = IncrementalDesired::new(self.config.policy.clone());
        // Tenancy rule 3's ledger holders, kept from whole and keyed observes alike.
        let mut holders = HolderIndex::default();
        let leading = *leading_rx.borrow();
        let mut schedule = Scheduler::new(
            ScheduleConfig {
                debounce: self.config.debounce,
                resync_interval: self.config.resync_interval,
                backoff: self.config.apply_backoff.clone(),
                seed: self.config.seed ^ 0xa9,
            },
            leading,
        );
        metrics.set_leader(leading);
        // The reconcile in flight and its pending store call.
        let mut in_flight: Option<(Reconcile, StoreTask)> = None;

        tokio::pin!(shutdown);
        let result = loop {
            let wake = schedule.wake_at();
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                changed = leading_rx.changed(), if elector_alive => {
                    let leading = if changed.is_err() {
                        // The elector is gone: stop applying.
                        elector_alive = false;
                        false
                    } else {
                        *leading_rx.borrow_and_update()
                    };
                    metrics.set_leader(leading);
                    schedule.set_leading(leading, Instant::now());
                }
                reply = join(&mut in_flight), if in_flight.is_some() => {
                    let (mut rec, _) = in_flight.take().expect("polled without a call in flight");
                    let mut world = World {
                        desired: &mut desired,
                        holders: &mut holders,
                        cluster: index.cluster(),
                        tenancy: self.config.policy.tenancy.enforced,
                        leading: *leading_rx.borrow(),
                    };
                    if let Ok(Reply::Applied(report)) = &reply {
                        metrics.store_apply(report.statements);
                        metrics.set_sessions_unmatched(self.store.sessions_unmatched());
                        for a in rec.applying().iter().take(report.applied) {
                            metrics.action(a.kind());
                        }
                    }
                    let step = rec.step(reply, &mut world);
                    metrics.set_ledger_size(holders.len() as u64);
                    self.report(&step.foreign, &index, &mut filter, recorder.as_ref());
                    if step.restaged {
                        self.report_desired(&desired, &index, &mut filter, recorder.as_ref());
                    }
                    match step.next {
                        Ok(Some(call)) => in_flight = Some((rec, self.spawn_call(call))),
                        Ok(None) => schedule.succeeded(Instant::now()),
                        Err(e) => self.failed(&mut schedule, &e),
                    }
                }
                ev = events.next() => {
                    let Some(ev) = ev else { break Err(EngineError::WatchesEnded) };
                    let services = matches!(ev, ClusterEvent::Services(_));
                    let delta = index.apply_delta(ev);
                    // Only a Service change can change which Secrets are watched (a pod event,
                    // the hot path, allocates no list of deltas).
                    let more = if services {
                        self.sync_secret_watches(&mut index, &mut secret_watches, &mut events, &starts)
                    } else {
                        Vec::new()
                    };
                    let now = Instant::now();
                    if delta.changed() || more.iter().any(Delta::changed) {
                        schedule.changed(now);
                    }
                    if built {
                        for delta in std::iter::once(&delta).chain(&more) {
                            desired.apply(index.cluster(), delta);
                        }
                    } else if index.synced() {
                        built = true;
                        metrics.set_synced(true);
                        // Startup: reconcile the ledger against desired before anything else.
                        desired.rebuild(index.cluster());
                    }
                    schedule.set_synced(index.synced(), now);
                }
                _ = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
            // Checked after every input, not only on the timer: a flood that keeps the event
            // branch ready never starves a due reconcile.
            if in_flight.is_none() {
                if let Some(start) = schedule.start(Instant::now()) {
                    in_flight =
                        self.begin(start, &index, &mut desired, &mut filter, recorder.as_ref());
                    if in_flight.is_none() {
                        schedule.succeeded(Instant::now());
                    }
                }
            }
            metrics.set_reconciling(in_flight.is_some());
        };
        let _ = stop_tx.send(true);
        if let Some(mut guard) = elector {
            // Let the elector release the lease; bounded.
            if let Some(handle) = guard.0.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle).await;
            }
        }
        metrics.set_leader(false);
        result
    }

    /// Starts the reconcile the schedule asked for: its first store call, or `None` when there
    /// is nothing to do (no account changed), which is a success.
    fn begin(
        &self,
        start: Start,
        index: &Index,
        desired: &mut IncrementalDesired,
        filter: &mut ProblemFilter,
        recorder: Option<&Recorder>,
    ) -> Option<(Reconcile, StoreTask)> {
        let keys = if start.whole {
            // The reference recomputation: anything it changes, the incremental updates
            // missed (a bug, repaired here).
            desired.take_dirty();
            desired.rebuild(index.cluster());
            let missed = desired.take_dirty();
            if !missed.is_empty() {
                tracing::warn!(
                    accounts = missed.len(),
                    "incremental desired state had drifted from the full recomputation; repaired"
                );
            }
            BTreeSet::new()
        } else {
            desired.take_dirty()
        };
        self.report_desired(desired, index, filter, recorder);
        let Some((rec, call)) =
            Reconcile::start(start.whole, keys, self.config.max_rounds, desired)
        else {
            self.metrics.reconcile_skipped();
            return None;
        };
        self.metrics.reconcile();
        Some((rec, self.spawn_call(call)))
    }

    /// Runs one store call in its own task (bounded by `store_timeout`).
    fn spawn_call(&self, call: Call) -> StoreTask {
        let store = self.store.clone();
        let limit = self.config.store_timeout;
        if !matches!(call, Call::Apply(_)) {
            self.metrics.store_observe();
        }
        AbortOnDrop(Some(tokio::spawn(async move {
            match call {
                Call::Observe(wanted) => bounded(limit, "observe", store.observe(&wanted))
                    .await
                    .map(Reply::Observed),
                Call::ObserveKeys(keys) => bounded(limit, "observe", store.observe_keys(&keys))
                    .await
                    .map(Reply::Observed),
                Call::Apply(actions) => {
                    tracing::debug!(actions = actions.len(), "applying");
                    bounded(limit, "apply", store.apply(&actions))
                        .await
                        .map(Reply::Applied)
                }
            }
        })))
    }

    /// Counts and logs a failed reconcile and schedules its retry.
    fn failed(&self, schedule: &mut Scheduler, e: &ReconcileError) {
        let delay = schedule.failed(Instant::now());
        match e {
            ReconcileError::Store(err) => {
                self.metrics.store_error(err.is_transient());
                tracing::warn!(error = %err, ?delay, "reconcile failed; will re-observe and re-plan");
            }
            ReconcileError::NotConverged(n) => {
                tracing::warn!(remaining = n, ?delay, "store did not converge; retrying");
            }
            ReconcileError::LostLeadership => {
                tracing::warn!("leadership lost during a reconcile; stopped applying");
            }
        }
    }

    /// Logs and counts every new problem (never rate-limited) and posts an Event when the
    /// Event filter admits it.
    fn report(
        &self,
        problems: &[ServiceProblem],
        index: &Index,
        filter: &mut ProblemFilter,
        recorder: Option<&Recorder>,
    ) {
        let m = &self.metrics;
        let now = Instant::now();
        for problem in problems {
            let admission = filter.admit(problem, now);
            if admission.log {
                m.refusal(problem.kind.as_str());
                tracing::warn!(service = %problem.service, kind = problem.kind.as_str(), reason = %problem.reason, "service skipped");
            }
            match recorder {
                Some(r) if admission.event => {
                    let uid = index
                        .cluster()
                        .services
                        .get(&problem.service)
                        .map(|s| s.uid.clone())
                        .unwrap_or_default();
                    if !r.record(Report {
                        problem: problem.clone(),
                        uid,
                    }) {
                        m.k8s_event(false);
                    }
                }
                Some(_) => m.k8s_event(false),
                None => {}
            }
        }
    }

    /// Reports the current problems and the desired-accounts gauge.
    fn report_desired(
        &self,
        desired: &IncrementalDesired,
        index: &Index,
        filter: &mut ProblemFilter,
        recorder: Option<&Recorder>,
    ) {
        self.metrics.set_desired(desired.accounts().len() as u64);
        let problems = desired.problems();
        if !problems.is_empty() {
            self.metrics.service_problems(problems.len() as u64);
            self.report(&problems, index, filter, recorder);
        }
    }
}

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

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::Api;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use crate::backoff::{Backoff, BackoffConfig};
use crate::desired::{HolderIndex, ProblemKind, ServiceProblem};
use crate::events::{EventConfig, ProblemFilter, Recorder, Report};
use crate::grant::AccountKey;
use crate::incremental::IncrementalDesired;
use crate::index::{ClusterEvent, Index};
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::{Metrics, Resource};
use crate::planner::{plan_dirty, plan_with_report};
use crate::rate::SharedStartFloor;
use crate::store::{GrantStore, StoreError};
use crate::validate::Policy;
use crate::watch::{
    api_for, guarded_watch, pod_facts, secret_facts, service_facts, ApiSource, WatchConfig,
};

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
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Why a reconcile did not finish.
#[derive(Debug)]
enum ReconcileError {
    Store(StoreError),
    NotConverged(usize),
    /// Leadership was lost during the reconcile: stop applying at once.
    LostLeadership,
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

    /// The merged, guarded watch streams of Services, Pods and Secrets.
    fn cluster_events(&self) -> impl Stream<Item = ClusterEvent> + Send + 'static {
        let ns = self.config.namespace.as_deref();
        let c = &self.config;
        let m = &self.metrics;
        // One floor under the watch starts of all three loops (see `SharedStartFloor`).
        let starts = SharedStartFloor::new(c.watch.rewatch_rate);
        let services = guarded_watch(
            ApiSource {
                api: api_for::<Service>(self.client.clone(), ns),
                label_selector: None,
            },
            service_facts,
            c.watch.clone(),
            c.seed ^ 0x5e,
            Resource::Services,
            m.clone(),
            starts.clone(),
        )
        .map(ClusterEvent::Services);
        let pods = guarded_watch(
            ApiSource {
                api: api_for::<Pod>(self.client.clone(), ns),
                label_selector: c.watch.pod_label_selector.clone(),
            },
            pod_facts,
            c.watch.clone(),
            c.seed ^ 0x90d,
            Resource::Pods,
            m.clone(),
            starts.clone(),
        )
        .map(ClusterEvent::Pods);
        let secrets = guarded_watch(
            ApiSource {
                api: api_for::<Secret>(self.client.clone(), ns),
                label_selector: None,
            },
            secret_facts,
            c.watch.clone(),
            c.seed ^ 0x5ec,
            Resource::Secrets,
            m.clone(),
            starts.clone(),
        )
        .map(ClusterEvent::Secrets);
        futures::stream::select_all([services.boxed(), pods.boxed(), secrets.boxed()])
    }

    /// Runs until `shutdown` completes. Watches always run (a follower keeps a warm index);
    /// only the leader reconciles.
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

        let mut events = self.cluster_events();
        let mut index = Index::new();
        let mut backoff = Backoff::new(self.config.apply_backoff.clone(), self.config.seed ^ 0xa9);
        let mut desired = IncrementalDesired::new(self.config.policy.clone());
        // Accounts whose desired value changed since the last reconcile that converged.
        let mut pending: BTreeSet<AccountKey> = BTreeSet::new();
        // The next reconcile recomputes and plans everything.
        let mut full = true;
        // Tenancy rule 3's ledger holders, kept from full and keyed observes alike.
        let mut holders = HolderIndex::default();
        let mut due: Option<Instant> = None;
        let mut next_resync: Option<Instant> = None;
        let mut leading = *leading_rx.borrow();
        metrics.set_leader(leading);

        tokio::pin!(shutdown);
        let result = loop {
            let can_act = leading && index.synced();
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                changed = leading_rx.changed(), if elector_alive => {
                    if changed.is_err() {
                        // The elector is gone: stop applying.
                        elector_alive = false;
                        leading = false;
                    } else {
                        leading = *leading_rx.borrow_and_update();
                    }
                    metrics.set_leader(leading);
                    if leading {
                        // A new leader trusts nothing: full reconcile from the ledger.
                        full = true;
                        due = Some(Instant::now());
                    }
                }
                ev = events.next() => {
                    let Some(ev) = ev else { break Err(EngineError::WatchesEnded) };
                    let was_synced = index.synced();
                    let delta = index.apply_delta(ev);
                    if delta.changed() && due.is_none() {
                        due = Some(Instant::now() + self.config.debounce);
                    }
                    if !was_synced && index.synced() {
                        metrics.set_synced(true);
                        // Startup: reconcile the ledger against desired before anything else.
                        desired.rebuild(index.cluster());
                        full = true;
                        due = Some(Instant::now());
                    } else if was_synced {
                        desired.apply(index.cluster(), &delta);
                    }
                }
                _ = sleep_until(due.unwrap_or_else(Instant::now)), if can_act && due.is_some() => {
                    due = None;
                    let force = next_resync.is_none_or(|t| Instant::now() >= t);
                    let whole = full || force;
                    if whole {
                        full = false;
                        // The reference recomputation: anything it changes, the incremental
                        // updates missed (a bug, repaired here).
                        pending.append(&mut desired.take_dirty());
                        desired.rebuild(index.cluster());
                        let missed = desired.take_dirty();
                        if !missed.is_empty() {
                            tracing::warn!(accounts = missed.len(), "incremental desired state had drifted from the full recomputation; repaired");
                        }
                        pending.extend(missed);
                    }
                    match self.reconcile(&index, &mut desired, &mut pending, &mut holders, whole, &mut filter, recorder.as_ref(), &leading_rx).await {
                        Ok(()) => {
                            backoff.reset();
                            if force || next_resync.is_none() {
                                next_resync = Some(Instant::now() + self.config.resync_interval);
                            }
                        }
                        Err(e) => {
                            let delay = backoff.next_delay();
                            match &e {
                                ReconcileError::Store(err) => {
                                    metrics.store_error(err.is_transient());
                                    tracing::warn!(error = %err, ?delay, "reconcile failed; will re-observe and re-plan");
                                }
                                ReconcileError::NotConverged(n) => {
                                    tracing::warn!(remaining = n, ?delay, "store did not converge; retrying");
                                }
                                ReconcileError::LostLeadership => {
                                    tracing::warn!("leadership lost during a reconcile; stopped applying");
                                }
                            }
                            full = true;
                            due = Some(Instant::now() + delay);
                        }
                    }
                }
                _ = sleep_until(next_resync.unwrap_or_else(Instant::now)), if can_act && due.is_none() && next_resync.is_some() => {
                    due = Some(Instant::now());
                }
            }
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

    /// Tenancy rule 3 with the ledger holders as now known: `true` when that changed what is
    /// wanted (the changed accounts join `pending`, the new problems are reported).
    fn holders_moved(
        &self,
        desired: &mut IncrementalDesired,
        holders: &HolderIndex,
        pending: &mut BTreeSet<AccountKey>,
        index: &Index,
        filter: &mut ProblemFilter,
        recorder: Option<&Recorder>,
    ) -> bool {
        if !self.config.policy.tenancy.enforced {
            return false;
        }
        desired.set_held(index.cluster(), holders.holders());
        let changed = desired.take_dirty();
        if changed.is_empty() {
            return false;
        }
        pending.extend(changed);
        self.report_desired(desired, index, filter, recorder);
        true
    }

    /// One level-triggered reconcile: of every account when `whole`, else of the `pending` ones
    /// only — observed by key ([`GrantStore::observe_keys`]), so its cost follows their number.
    /// `pending` is emptied only when the store converged.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        index: &Index,
        desired: &mut IncrementalDesired,
        pending: &mut BTreeSet<AccountKey>,
        holders: &mut HolderIndex,
        whole: bool,
        filter: &mut ProblemFilter,
        recorder: Option<&Recorder>,
        leading: &watch::Receiver<bool>,
    ) -> Result<(), ReconcileError> {
        let m = &self.metrics;
        pending.append(&mut desired.take_dirty());
        self.report_desired(desired, index, filter, recorder);
        if !whole && pending.is_empty() {
            m.reconcile_skipped();
            return Ok(());
        }
        m.reconcile();
        let mut remaining = 0;
        for _ in 0..self.config.max_rounds.max(1) {
            m.store_observe();
            let wanted: BTreeSet<AccountKey> = if whole {
                desired.accounts().keys().cloned().collect()
            } else {
                BTreeSet::new()
            };
            let observed = bounded(self.config.store_timeout, "observe", async {
                if whole {
                    self.store.observe(&wanted).await
                } else {
                    self.store.observe_keys(pending).await
                }
            })
            .await
            .map_err(ReconcileError::Store)?;
            if whole {
                holders.replace_all(&observed.owned);
            } else {
                holders.update(pending, &observed.owned);
            }
            m.set_ledger_size(holders.len() as u64);
            if self.holders_moved(desired, holders, pending, index, filter, recorder) {
                // Who owns a user name changed what is wanted: observe that instead.
                continue;
            }
            let accounts = desired.accounts();
            let planned = if whole {
                plan_with_report(accounts, &observed)
            } else {
                plan_dirty(accounts, &observed, pending.iter())
            };
            let foreign: Vec<ServiceProblem> = planned
                .foreign
                .iter()
                .map(|key| ServiceProblem {
                    service: accounts[key].owner.clone(),
                    reason: format!(
                        "account {key} already exists in MySQL and is not podgrant's (no ledger row); left untouched"
                    ),
                    kind: ProblemKind::Foreign,
                })
                .collect();
            self.report(&foreign, index, filter, recorder);
            let actions = planned.actions;
            if actions.is_empty() {
                pending.clear();
                return Ok(());
            }
            remaining = actions.len();
            // The elector runs in its own task: if it stepped down meanwhile, apply nothing more.
            if !*leading.borrow() {
                return Err(ReconcileError::LostLeadership);
            }
            tracing::debug!(actions = actions.len(), "applying");
            let report = bounded(
                self.config.store_timeout,
                "apply",
                self.store.apply(&actions),
            )
            .await
            .map_err(ReconcileError::Store)?;
            m.store_apply(report.statements);
            m.set_sessions_unmatched(self.store.sessions_unmatched());
            for a in actions.iter().take(report.applied) {
                m.action(a.kind());
            }
            holders.record(&actions[..report.applied.min(actions.len())]);
            m.set_ledger_size(holders.len() as u64);
            if !whole && report.applied == actions.len() {
                // Every action applied: by the planner's contract a re-observe of these
                // accounts would plan nothing, so don't pay for it. (A full reconcile still
                // verifies; drift is repaired at the next resync.) Unless the applied claims
                // and releases moved a user name to another namespace (tenancy rule 3).
                if self.holders_moved(desired, holders, pending, index, filter, recorder) {
                    continue;
                }
                pending.clear();
                return Ok(());
            }
        }
        Err(ReconcileError::NotConverged(remaining))
    }
}

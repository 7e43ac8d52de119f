//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder applies grants.
//!
//! Expiry is judged by this replica's own clock from the moment it last saw the lease record
//! change (as client-go does), never by comparing the remote `renewTime` with the local clock,
//! so clock skew between replicas cannot make two leaders. A leader that cannot renew within
//! `renew_deadline` (< `lease_duration`) steps down before anyone else may take over.

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Lease settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's holder identity (unique per replica).
    pub identity: String,
    /// How long a lease is valid after its last renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down. Must be < `lease_duration`.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// A failed lease request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// 409: someone else wrote the lease first (stale resourceVersion or already exists).
    #[error("lease conflict")]
    Conflict,
    #[error("lease request failed: {0}")]
    Other(String),
}

impl From<kube::Error> for LeaseError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.code == 409 => LeaseError::Conflict,
            other => LeaseError::Other(other.to_string()),
        }
    }
}

/// The three calls election needs; implemented for `Api<Lease>` and by test fakes.
pub trait LeaseClient: Send + Sync + 'static {
    fn get(&self, name: &str) -> BoxFuture<'_, Result<Option<Lease>, LeaseError>>;
    fn create(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>>;
    /// Update with optimistic concurrency: fails with [`LeaseError::Conflict`] on a stale resourceVersion.
    fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>>;
}

impl LeaseClient for Api<Lease> {
    fn get(&self, name: &str) -> BoxFuture<'_, Result<Option<Lease>, LeaseError>> {
        let name = name.to_string();
        Box::pin(async move { Ok(self.get_opt(&name).await?) })
    }
    fn create(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
        Box::pin(async move { Ok(Api::create(self, &PostParams::default(), &lease).await?) })
    }
    fn replace(&self, lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
        Box::pin(async move {
            let name = lease.metadata.name.clone().unwrap_or_default();
            Ok(Api::replace(self, &name, &PostParams::default(), &lease).await?)
        })
    }
}

/// What identifies one version of the lease record (to notice that the holder renewed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RecordKey {
    holder: Option<String>,
    renew: Option<String>,
    transitions: Option<i32>,
}

fn record_key(l: &Lease) -> RecordKey {
    let spec = l.spec.clone().unwrap_or_default();
    RecordKey {
        holder: spec.holder_identity,
        renew: spec.renew_time.map(|t| t.0.to_string()),
        transitions: spec.lease_transitions,
    }
}

/// One replica's elector. Drive it with [`LeaderElector::run`], or step it with [`LeaderElector::tick`].
pub struct LeaderElector<C: LeaseClient> {
    client: C,
    config: LeaseConfig,
    observed: Option<(RecordKey, Instant)>,
    last_renew: Option<Instant>,
}

impl<C: LeaseClient> LeaderElector<C> {
    pub fn new(client: C, config: LeaseConfig) -> Self {
        Self {
            client,
            config,
            observed: None,
            last_renew: None,
        }
    }

    fn now_micro() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::now())
    }

    fn spec_for_me(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquire.unwrap_or_else(Self::now_micro)),
            renew_time: Some(Self::now_micro()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew. `Ok(true)`: this replica holds the lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaseError> {
        let now = Instant::now();
        let current = match self.client.get(&self.config.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec_for_me(0, None)),
                };
                return match self.client.create(lease).await {
                    Ok(l) => {
                        self.observed = Some((record_key(&l), now));
                        self.last_renew = Some(now);
                        Ok(true)
                    }
                    Err(LeaseError::Conflict) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Some(l) => l,
        };
        let key = record_key(&current);
        match &self.observed {
            Some((k, _)) if *k == key => {}
            _ => self.observed = Some((key.clone(), now)),
        }
        let observed_at = self.observed.as_ref().map(|(_, t)| *t).unwrap_or(now);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(self.config.lease_duration);
        if !mine && holder.is_some() && now < observed_at + duration {
            return Ok(false); // someone else holds a live lease
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if mine {
            self.spec_for_me(transitions, spec.acquire_time.clone())
        } else {
            self.spec_for_me(transitions + 1, None)
        };
        let mut next = current.clone();
        next.spec = Some(new_spec);
        match self.client.replace(next).await {
            Ok(l) => {
                self.observed = Some((record_key(&l), now));
                self.last_renew = Some(now);
                Ok(true)
            }
            Err(LeaseError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One election step given whether we currently lead; returns whether we lead after it.
    pub async fn tick(&mut self, leading: bool) -> bool {
        match self.try_acquire_or_renew().await {
            Ok(true) => true,
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(lease = %self.config.name, error = %e, "lease request failed");
                // Keep leading only while the last renewal is within the renew deadline.
                leading
                    && self
                        .last_renew
                        .is_some_and(|t| t.elapsed() < self.config.renew_deadline)
            }
        }
    }

    /// Gives the lease up (so a successor need not wait out the duration). Best effort.
    pub async fn release(&mut self) {
        if let Ok(Some(mut l)) = self.client.get(&self.config.name).await {
            let spec = l.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                spec.renew_time = Some(Self::now_micro());
                let _ = self.client.replace(l).await;
            }
        }
    }

    /// Runs election until `shutdown`, publishing leadership on `tx`; releases the lease at the end.
    pub async fn run(
        mut self,
        tx: watch::Sender<bool>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut leading = false;
        loop {
            let next = self.tick(leading).await;
            if next != leading {
                tracing::info!(identity = %self.config.identity, leading = next, "leadership changed");
                leading = next;
                let _ = tx.send(leading);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.config.retry_period) => {}
            }
        }
        if leading {
            let _ = tx.send(false);
            self.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// An in-memory lease store with resourceVersion checks, shared by replicas.
    #[derive(Default)]
    struct FakeLeases {
        lease: Mutex<Option<Lease>>,
        rv: Mutex<u64>,
        down: Mutex<bool>,
    }

    impl LeaseClient for Arc<FakeLeases> {
        fn get(&self, _name: &str) -> BoxFuture<'_, Result<Option<Lease>, LeaseError>> {
            Box::pin(async move {
                if *self.down.lock().unwrap() {
                    return Err(LeaseError::Other("down".into()));
                }
                Ok(self.lease.lock().unwrap().clone())
            })
        }
        fn create(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
            Box::pin(async move {
                let mut slot = self.lease.lock().unwrap();
                if slot.is_some() {
                    return Err(LeaseError::Conflict);
                }
                let mut rv = self.rv.lock().unwrap();
                *rv += 1;
                lease.metadata.resource_version = Some(rv.to_string());
                *slot = Some(lease.clone());
                Ok(lease)
            })
        }
        fn replace(&self, mut lease: Lease) -> BoxFuture<'_, Result<Lease, LeaseError>> {
            Box::pin(async move {
                if *self.down.lock().unwrap() {
                    return Err(LeaseError::Other("down".into()));
                }
                let mut slot = self.lease.lock().unwrap();
                let cur = slot
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone());
                if cur != lease.metadata.resource_version {
                    return Err(LeaseError::Conflict);
                }
                let mut rv = self.rv.lock().unwrap();
                *rv += 1;
                lease.metadata.resource_version = Some(rv.to_string());
                *slot = Some(lease.clone());
                Ok(lease)
            })
        }
    }

    fn cfg(id: &str) -> LeaseConfig {
        LeaseConfig::new("podgrant", "ns", id)
    }

    #[tokio::test(start_paused = true)]
    async fn one_leader_at_a_time_and_takeover_within_the_lease_duration() {
        let store = Arc::new(FakeLeases::default());
        let mut a = LeaderElector::new(store.clone(), cfg("a"));
        let mut b = LeaderElector::new(store.clone(), cfg("b"));
        assert!(a.tick(false).await);
        assert!(!b.tick(false).await);
        // While a renews, b never takes over.
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(2)).await;
            assert!(a.tick(true).await);
            assert!(!b.tick(false).await);
        }
        // a dies (stops renewing). b takes over once the record has been unchanged for 15 s.
        let died = Instant::now();
        let mut took = None;
        for _ in 0..20 {
            tokio::time::advance(Duration::from_secs(2)).await;
            if b.tick(false).await {
                took = Some(died.elapsed());
                break;
            }
        }
        let took = took.expect("b became leader");
        assert!(
            took >= Duration::from_secs(15) && took <= Duration::from_secs(18),
            "{took:?}"
        );
        let spec = store.lease.lock().unwrap().clone().unwrap().spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(1));
        // a comes back: its renewal fails on the stale record; it is not leader.
        assert!(!a.tick(true).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_steps_down_before_the_lease_expires() {
        let store = Arc::new(FakeLeases::default());
        let mut a = LeaderElector::new(store.clone(), cfg("a"));
        assert!(a.tick(false).await);
        *store.down.lock().unwrap() = true;
        let start = Instant::now();
        let mut leading = true;
        while leading {
            tokio::time::advance(Duration::from_secs(2)).await;
            leading = a.tick(leading).await;
        }
        let lost = start.elapsed();
        assert!(
            lost >= Duration::from_secs(10) && lost < Duration::from_secs(15),
            "{lost:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn release_lets_a_successor_in_without_waiting() {
        let store = Arc::new(FakeLeases::default());
        let mut a = LeaderElector::new(store.clone(), cfg("a"));
        let mut b = LeaderElector::new(store.clone(), cfg("b"));
        assert!(a.tick(false).await);
        assert!(!b.tick(false).await);
        a.release().await;
        assert!(b.tick(false).await);
    }
}

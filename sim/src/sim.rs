//! `Sim`, its builder, and the shared state behind the object API and the HTTP handler.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::auth::BearerToken;
use crate::clock::Clock;
use crate::error::SimError;
use crate::fault::{FaultCell, FaultPlan};
use crate::flood::{FloodHandle, FloodSpec};
use crate::gc::{self, Dependent, GcAction, Propagation};
use crate::ipam::Ipam;
use crate::lifecycle::{self, DeleteAction, DeleteOptions, NewMeta, UpdateMode};
use crate::resource::{Registry, Resource, ResourceInfo};
use crate::selector::Selectors;
use crate::server::SimServer;
use crate::service::SimService;
use crate::stats::Stats;
use crate::store::{Key, Store, StoreSizes};

/// Lock a mutex, recovering from poisoning (a panicking test thread must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tunables fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub bookmark_interval: Duration,
    /// The longest a watch stays open (a client's shorter `timeoutSeconds` wins).
    pub watch_timeout: Duration,
    pub max_body: usize,
    pub pod_cidr: String,
    /// When set, every request (API and `/_sim`) must carry `Authorization: Bearer <token>`.
    pub token: Option<BearerToken>,
}

/// Shared state.
pub(crate) struct Inner {
    pub store: Mutex<Store>,
    pub rng: Mutex<ChaCha8Rng>,
    pub clock: Clock,
    pub faults: Arc<FaultCell>,
    pub stats: Arc<Mutex<Stats>>,
    pub ipam: Mutex<Ipam>,
    pub config: Config,
    service_ips: AtomicU32,
    /// The flood generator's per-object byte templates (locked after `store`).
    pub flood_templates: Mutex<crate::flood::Templates>,
    /// Floods started by steps, by id, for `stop_flood` (locked before `store`).
    pub floods: Mutex<crate::flood::Floods>,
    /// Held while one `/_sim/steps` list is rehearsed and applied (locked before everything).
    pub steps: Mutex<()>,
    /// This state itself, for the grace timers a delete started under the store lock.
    me: Weak<Inner>,
}

/// Builder for [`Sim`].
#[derive(Clone, Debug)]
pub struct SimBuilder {
    seed: u64,
    history_window: usize,
    watch_buffer: usize,
    faults: FaultPlan,
    pod_cidr: String,
    bookmark_interval: Duration,
    watch_timeout: Duration,
    max_body: usize,
    start_time: Option<SystemTime>,
    token: Option<BearerToken>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self {
            seed: 0,
            history_window: 10_000,
            watch_buffer: 4096,
            faults: FaultPlan::default(),
            pod_cidr: "10.244.0.0/16".into(),
            bookmark_interval: Duration::from_secs(60),
            watch_timeout: Duration::from_secs(1800),
            max_body: 3 * 1024 * 1024,
            start_time: None,
            token: None,
        }
    }
}

impl SimBuilder {
    /// Seed for UIDs, generated names and everything random outside the fault plan.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Events kept for watch resumption and consistent pagination (default 10 000).
    pub fn history_window(mut self, n: usize) -> Self {
        self.history_window = n;
        self
    }
    /// Undelivered events buffered per watcher before it is dropped as too slow (default 4096).
    pub fn watch_buffer(mut self, n: usize) -> Self {
        self.watch_buffer = n;
        self
    }
    /// The initial fault plan.
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = plan;
        self
    }
    /// Pod IP range (default `10.244.0.0/16`). An invalid CIDR makes `build` fall back to the default; use `try_build` to see the error.
    pub fn pod_cidr(mut self, cidr: &str) -> Self {
        self.pod_cidr = cidr.into();
        self
    }
    /// Interval between BOOKMARK events on watches that allow them (default 60 s, tokio time).
    pub fn bookmark_interval(mut self, d: Duration) -> Self {
        self.bookmark_interval = d;
        self
    }
    /// Server-side cap on how long a watch stays open (default 1800 s, tokio time); a client's
    /// shorter `timeoutSeconds` wins. A short cap makes clients re-watch often.
    pub fn watch_timeout(mut self, d: Duration) -> Self {
        self.watch_timeout = d;
        self
    }
    /// Largest accepted request body (default 3 MiB, like kube-apiserver); larger gets 413.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
    /// Wall-clock time at build (default: now); creation timestamps advance with tokio time from here.
    pub fn start_time(mut self, t: SystemTime) -> Self {
        self.start_time = Some(t);
        self
    }

    /// Require `Authorization: Bearer <token>` on every request, in-process and over TCP;
    /// without it (or with another token) the answer is 401 with an `Unauthorized` Status.
    pub fn bearer_token(mut self, token: BearerToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Build, or explain why the configuration is invalid.
    pub fn try_build(self) -> Result<Sim, SimError> {
        let ipam = Ipam::new(&self.pod_cidr)?;
        let inner = Arc::new_cyclic(|me| Inner {
            store: Mutex::new(Store::new(self.history_window, self.watch_buffer)),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(self.seed)),
            clock: Clock::new(self.start_time.unwrap_or_else(SystemTime::now)),
            faults: Arc::new(FaultCell::new(self.faults)),
            stats: Arc::new(Mutex::new(Stats::default())),
            ipam: Mutex::new(ipam),
            config: Config {
                bookmark_interval: self.bookmark_interval,
                watch_timeout: self.watch_timeout,
                max_body: self.max_body,
                pod_cidr: self.pod_cidr,
                token: self.token,
            },
            service_ips: AtomicU32::new(1),
            flood_templates: Mutex::default(),
            floods: Mutex::default(),
            steps: Mutex::default(),
            me: me.clone(),
        });
        let sim = Sim { inner };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            sim.create("namespaces", None, json!({"metadata": {"name": ns}}))?;
        }
        Ok(sim)
    }

    /// Build (an invalid pod CIDR falls back to `10.244.0.0/16`).
    pub fn build(self) -> Sim {
        let fallback = self.clone().pod_cidr("10.244.0.0/16");
        match self.try_build() {
            Ok(sim) => sim,
            Err(_) => match fallback.try_build() {
                Ok(sim) => sim,
                Err(e) => unreachable!("default configuration is valid: {e}"),
            },
        }
    }
}

/// A simulated Kubernetes API server. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("sizes", &self.sizes()).finish()
    }
}

fn info_for(registry: &Registry, resource: &str) -> Result<Resource, SimError> {
    registry
        .resolve(resource)
        .cloned()
        .ok_or_else(|| SimError::UnknownResource(resource.to_string()))
}

/// What a dry-run update or patch answers: the object it would store, at the stored object's
/// resourceVersion (nothing was written, so no new one exists).
pub(crate) fn dry_run_result(old: &Value, mut new: Value) -> Value {
    if let Some(rv) = old.pointer("/metadata/resourceVersion").cloned() {
        new["metadata"]["resourceVersion"] = rv;
    }
    new
}

fn key_for(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Result<Key, SimError> {
    match (info.namespaced, namespace) {
        (true, Some(ns)) => Ok((ns.to_string(), name.to_string())),
        (true, None) => Err(SimError::BadRequest(format!(
            "{} is namespaced: a namespace is required",
            info.plural
        ))),
        (false, _) => Ok((String::new(), name.to_string())),
    }
}

impl Sim {
    /// A builder with defaults (seed 0, window 10 000, CIDR 10.244.0.0/16).
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// The in-process `tower::Service` (for `kube::Client::new(sim.service(), "default")`).
    pub fn service(&self) -> SimService {
        SimService::new(self.inner.clone())
    }

    /// Serve plain HTTP over TCP on `addr` (use port 0 for any free port; loopback only).
    pub async fn serve_tcp(&self, addr: std::net::SocketAddr) -> Result<SimServer, SimError> {
        SimServer::start(self.clone(), addr).await
    }

    /// Serve HTTPS on `addr` with a CA and serving certificate made now (loopback only); write
    /// the kubeconfig that trusts it with [`SimServer::write_kubeconfig`].
    pub async fn serve_https(&self, addr: std::net::SocketAddr) -> Result<SimServer, SimError> {
        SimServer::start_https_with(self, addr, crate::server::ServerLimits::default()).await
    }

    /// The bearer token requests must carry, if one was configured.
    pub fn bearer_token(&self) -> Option<&BearerToken> {
        self.inner.config.token.as_ref()
    }

    /// Write a kubeconfig pointing at `server_url` (with this sim's bearer token, if any; no CA:
    /// for an HTTPS server use [`SimServer::write_kubeconfig`]).
    pub fn write_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), SimError> {
        crate::kubeconfig::write(
            path,
            server_url,
            &crate::kubeconfig::Credentials {
                ca_pem: None,
                token: self.bearer_token(),
            },
        )
    }

    /// Replace the fault plan (its RNG restarts from the plan's seed). With
    /// [`FaultPlan::apply_to_open_watches`], open watches re-check it at once.
    pub fn set_faults(&self, plan: FaultPlan) {
        self.inner.faults.set(plan);
    }

    /// The current fault plan.
    pub fn faults(&self) -> FaultPlan {
        self.inner.faults.plan()
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> Stats {
        lock(&self.inner.stats).clone()
    }

    /// Per watched resource, what clients can see of it now: live watches and full lists
    /// served (cheaper than [`Sim::stats`]; the harness's safety oracle reads it every tick).
    pub fn visibility(&self) -> std::collections::BTreeMap<String, crate::stats::Visibility> {
        lock(&self.inner.stats).visibility()
    }

    /// Reset every counter to zero.
    pub fn reset_stats(&self) {
        let mut stats = lock(&self.inner.stats);
        // The gauge of live watches describes watches still open; it is not a counter.
        let live_watches = std::mem::take(&mut stats.live_watches);
        *stats = Stats {
            live_watches,
            ..Stats::default()
        };
    }

    /// Internal sizes of the store (objects, history, watchers), for bounded-memory checks.
    pub fn sizes(&self) -> StoreSizes {
        lock(&self.inner.store).sizes()
    }

    /// The current store-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        lock(&self.inner.store).current_rv()
    }

    /// Pod IPs currently allocated from the CIDR.
    pub fn ips_in_use(&self) -> usize {
        lock(&self.inner.ipam).in_use()
    }

    /// Create an object (no faults, no namespace-existence check; status is kept as given).
    pub fn create(
        &self,
        resource: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, SimError> {
        self.inner
            .create(&self.resolve(resource)?, namespace, obj, false, false, None)
    }

    /// Replace an object wholesale, status and deletionTimestamp included (RV precondition honoured if set).
    pub fn replace(
        &self,
        resource: &str,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value, SimError> {
        let info = self.resolve(resource)?;
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.inner
            .update(&info, namespace, &name, obj, UpdateMode::Whole, false, None)
    }

    /// Delete an object at once (no grace, finalizers ignored — what a scenario's delete step means).
    pub fn delete(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), SimError> {
        self.inner
            .remove(&self.resolve(resource)?, namespace, name)
            .map(|_| ())
    }

    /// Get an object.
    pub fn get(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, SimError> {
        self.inner.get(&self.resolve(resource)?, namespace, name)
    }

    /// List objects (all namespaces when `namespace` is `None`), sorted by namespace and name.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        match self.resolve(resource) {
            Ok(info) => lock(&self.inner.store)
                .list(&info.id, namespace)
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Apply one scenario step.
    pub fn apply(&self, step: &crate::scenario::Step) -> Result<(), SimError> {
        crate::scenario::apply(self, step)
    }

    /// Start a churn generator (a burst is applied before this returns; a rate needs a tokio runtime).
    pub fn flood(&self, spec: FloodSpec) -> FloodHandle {
        crate::flood::start(self.clone(), spec)
    }

    /// Drop the whole event history now: a watch or continue from any earlier RV gets 410.
    pub fn compact(&self) {
        lock(&self.inner.store).compact();
        lock(&self.inner.stats).count_fault("compact");
    }

    pub(crate) fn resolve(&self, resource: &str) -> Result<Resource, SimError> {
        info_for(&self.inner.registry(), resource)
    }

    pub(crate) fn ipam(&self) -> MutexGuard<'_, Ipam> {
        lock(&self.inner.ipam)
    }

    /// The pod CIDR.
    pub fn pod_cidr(&self) -> &str {
        &self.inner.config.pod_cidr
    }
}

/// A deletion stamp (uid, deletionTimestamp, deletionGracePeriodSeconds), owned.
type Stamp = [Option<Value>; 3];

fn stamp_of(obj: &Value) -> Stamp {
    lifecycle::deletion_stamp(obj).map(|v| v.cloned())
}

fn not_found(info: &ResourceInfo, name: &str) -> SimError {
    SimError::NotFound {
        resource: info.qualified(),
        name: name.to_string(),
    }
}

fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// What a delete with `policy` stores before `plan_delete` sees it: a Foreground delete of an
/// object not yet being deleted gets the `foregroundDeletion` finalizer (generic store
/// `deletionFinalizersForGarbageCollection`), so it waits for its dependents.
fn with_gc_finalizer(obj: &Value, policy: Propagation) -> Value {
    let mut out = obj.clone();
    if policy == Propagation::Foreground
        && obj.pointer("/metadata/deletionTimestamp").is_none()
        && !lifecycle::finalizers(obj).contains(&gc::FOREGROUND)
    {
        let mut fins: Vec<Value> = out
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        fins.push(json!(gc::FOREGROUND));
        out["metadata"]["finalizers"] = Value::Array(fins);
    }
    out
}

/// The owner an ownerReference of an object in `ns` resolves to, if it exists with that uid.
fn owner_of(store: &Store, ns: &str, r: &gc::OwnerRef) -> Option<(Resource, Key)> {
    let info = store.registry().by_kind(&r.api_version, &r.kind)?.clone();
    let ns = if info.namespaced { ns } else { "" };
    let key = (ns.to_string(), r.name.clone());
    let live = store.get(&info.id, &key)?;
    (uid_of(live) == r.uid).then_some((info, key))
}

/// A dependent, owned: `(resource, key, object, another owner is alive, owns objects)`.
type Dep = (Arc<str>, Key, Value, bool, bool);

/// The objects whose ownerReferences name `uid`: in the owner's namespace, any namespace for
/// a cluster-scoped owner (the index, not a scan).
fn dependents(store: &Store, owner_ns: &str, namespaced: bool, uid: &str) -> Vec<Dep> {
    store
        .dependents_of(uid)
        .into_iter()
        .filter(|(_, k)| !namespaced || k.0 == owner_ns)
        .filter_map(|(r, k)| {
            let v = store.get(&r, &k)?.clone();
            let alive = gc::owner_refs(&v)
                .iter()
                .any(|o| o.uid != uid && owner_of(store, &k.0, o).is_some());
            let owns = !store.dependents_of(uid_of(&v)).is_empty();
            Some((r, k, v, alive, owns))
        })
        .collect()
}

fn as_dependents(deps: &[Dep]) -> Vec<Dependent<'_>> {
    deps.iter()
        .map(|(r, k, v, alive, owns)| Dependent {
            resource: r.clone(),
            key: k.clone(),
            object: v,
            other_owner_alive: *alive,
            has_dependents: *owns,
        })
        .collect()
}

/// Remove `key` (a namespace takes its objects with it); pods whose IP is to be released are
/// pushed to `released`. Returns the removed object, at the new resourceVersion.
fn remove_locked(store: &mut Store, info: &Resource, key: Key, released: &mut Vec<Key>) -> Value {
    if *info.id == *"namespaces" {
        for r in store.registry().clone().namespaced() {
            for k in store.keys(&r.id, Some(&key.1)) {
                store.commit(&r.id, k.clone(), None);
                if *r.id == *"pods" {
                    released.push(k);
                }
            }
        }
    }
    if *info.id == *crate::crd::CRD_ID {
        // The apiextensions finalizer's work, done at once: the API goes with the objects.
        if let Some(crd) = store.get(&info.id, &key).cloned() {
            let id = crd_resource_id(&crd);
            store.drop_resource(&id);
            let registry = store.registry().without(&id);
            store.set_registry(registry);
        }
    }
    if *info.id == *"pods" {
        released.push(key.clone());
    }
    store.commit(&info.id, key, None)
}

/// The store key of the custom resource a CRD defines.
fn crd_resource_id(crd: &Value) -> Arc<str> {
    let s = |p: &str| crd.pointer(p).and_then(Value::as_str).unwrap_or("");
    crate::resource::id_of(s("/spec/group"), s("/spec/names/plural"))
}

/// After a CRD is stored: serve what it now declares, in the same critical section (so its
/// API is there when the create answers, as it is once upstream reports it `Established`).
fn crd_committed(store: &mut Store, info: &ResourceInfo, stored: &Value) {
    if *info.id != *crate::crd::CRD_ID {
        return;
    }
    let id = crd_resource_id(stored);
    if crate::resource::built_in(&id).is_some() {
        return;
    }
    let registry = store.registry().with(&id, crate::crd::served(stored));
    store.set_registry(registry);
}

impl Inner {
    /// The served resources now (a snapshot: a CRD created later is not in it).
    pub(crate) fn registry(&self) -> Arc<Registry> {
        lock(&self.store).registry().clone()
    }

    fn new_meta(&self) -> NewMeta {
        let mut rng = lock(&self.rng);
        let b: [u8; 16] = rng.random();
        let uid = format!(
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6] & 0xf, b[7], 8 | (b[8] & 0x3), b[8] >> 4, b[9], b[10], b[11], b[12], b[13], b[14], b[15]
        );
        const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|_| ALPHA[rng.random_range(0..ALPHA.len())] as char)
            .collect();
        NewMeta {
            uid,
            now: self.clock.now_rfc3339(),
            suffix,
        }
    }

    pub(crate) fn get(
        &self,
        info: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, SimError> {
        let key = key_for(info, namespace, name)?;
        lock(&self.store)
            .get(&info.id, &key)
            .cloned()
            .ok_or_else(|| SimError::NotFound {
                resource: info.qualified(),
                name: name.to_string(),
            })
    }

    /// Create; `require_namespace` enforces that the namespace exists (HTTP path). A dry run
    /// checks everything a create checks and answers what would be stored, with no
    /// resourceVersion, writing nothing (no event, no RV, no cluster IP taken).
    /// `manager`: who the create is recorded under in managedFields (`None`: not recorded, as for
    /// a server-side apply that recorded itself, or the `Sim` API's own writes).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create(
        &self,
        info: &Resource,
        namespace: Option<&str>,
        obj: Value,
        require_namespace: bool,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Value, SimError> {
        let meta = self.new_meta();
        let sent_fields = obj
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let (ns, name, mut obj) = lifecycle::prepare_create(info, namespace, obj, meta)?;
        if let Some(m) = manager.filter(|_| !sent_fields) {
            // A create sending managedFields keeps them as given (lifecycle::prepare_create).
            crate::apply::record_update(None, &mut obj, m, false, &self.clock.now_rfc3339());
        }
        // Encode before taking the lock (a Service still waiting for its cluster IP is encoded at commit).
        let needs_ip = info.builtin_kind() == "Service"
            && obj.pointer("/spec/clusterIP").is_none()
            && obj.pointer("/spec/type") != Some(&json!("ExternalName"));
        let pending = if needs_ip {
            None
        } else {
            crate::encoded::Pending::encode(&info.id, &mut obj)
        };
        let mut store = lock(&self.store);
        if info.namespaced && require_namespace {
            // NamespaceLifecycle admission: the namespace must exist and not be terminating.
            match store.get("namespaces", &(String::new(), ns.clone())) {
                None => {
                    return Err(SimError::NotFound {
                        resource: "namespaces".into(),
                        name: ns,
                    })
                }
                Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                    return Err(SimError::NamespaceTerminating {
                        resource: info.qualified(),
                        name,
                        namespace: ns,
                    })
                }
                Some(_) => {}
            }
        }
        if info.custom.is_some() && !store.registry().serves(info) {
            // Its CRD went (or changed) after this request was routed.
            return Err(SimError::UnknownResource(
                "the server could not find the requested resource".into(),
            ));
        }
        let key = (ns, name.clone());
        if store.contains(&info.id, &key) {
            return Err(SimError::AlreadyExists {
                resource: info.qualified(),
                name,
            });
        }
        if dry_run {
            if needs_ip {
                // The address a real create would take next, not taken.
                let n = self.service_ips.load(Ordering::Relaxed);
                let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
                obj["spec"]["clusterIP"] = json!(ip);
                obj["spec"]["clusterIPs"] = json!([ip]);
            }
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
            return Ok(obj);
        }
        if let Some(pending) = pending {
            let stored = store.commit_pending(&info.id, key, pending, obj);
            crd_committed(&mut store, info, &stored);
            return Ok(stored);
        }
        if needs_ip {
            let n = self.service_ips.fetch_add(1, Ordering::Relaxed);
            let ip = format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff);
            obj["spec"]["clusterIP"] = json!(ip);
            obj["spec"]["clusterIPs"] = json!([ip]);
        }
        Ok(store.commit(&info.id, key, Some(obj)))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &self,
        info: &Resource,
        namespace: Option<&str>,
        name: &str,
        obj: Value,
        mode: UpdateMode,
        dry_run: bool,
        manager: Option<&str>,
    ) -> Result<Value, SimError> {
        if let Some(body_name) = obj.pointer("/metadata/name").and_then(Value::as_str) {
            if !body_name.is_empty() && body_name != name {
                return Err(SimError::BadRequest(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
        }
        let key = key_for(info, namespace, name)?;
        let mut store = lock(&self.store);
        let old = store
            .get(&info.id, &key)
            .ok_or_else(|| SimError::NotFound {
                resource: info.qualified(),
                name: name.to_string(),
            })?;
        let prepared = lifecycle::prepare_update(info, old, obj, mode)?.map(|mut new| {
            if let Some(m) = manager {
                let status = mode == UpdateMode::Status;
                crate::apply::record_update(
                    Some(old),
                    &mut new,
                    m,
                    status,
                    &self.clock.now_rfc3339(),
                );
            }
            new
        });
        let (stored, released) = match prepared {
            None => return Ok(old.clone()),
            Some(new) if dry_run => return Ok(dry_run_result(old, new)),
            Some(new) => self.commit_update(&mut store, info, key, mode, new),
        };
        drop(store);
        self.release(&released);
        Ok(stored)
    }

    /// Delete as kube-apiserver does (`lifecycle::plan_delete`): preconditions, finalizers
    /// holding the object with a `deletionTimestamp`, graceful deletion of bound pods (removed
    /// by a timer on tokio's clock when the grace ends), a namespace marked Terminating while
    /// its content is deleted, and dependents collected per the `propagationPolicy` (`gc`).
    /// A dry run answers what the delete would store or remove, writing nothing.
    pub(crate) fn delete(
        self: &Arc<Self>,
        info: &Resource,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, SimError> {
        let key = key_for(info, namespace, name)?;
        let mut released = Vec::new();
        let answer = {
            let mut store = lock(&self.store);
            if opts.dry_run {
                self.dry_delete(&store, info, &key, opts)?
            } else {
                self.delete_locked(&mut store, info, key, opts, &mut released)?
            }
        };
        self.release(&released);
        Ok(answer)
    }

    fn dry_delete(
        &self,
        store: &Store,
        info: &Resource,
        key: &Key,
        opts: &DeleteOptions,
    ) -> Result<Value, SimError> {
        let now = self.clock.now();
        let stored = store
            .get(&info.id, key)
            .ok_or_else(|| not_found(info, &key.1))?;
        let current = with_gc_finalizer(stored, gc::propagation(opts));
        let action = lifecycle::plan_delete(info, &current, opts, now)?;
        if info.plural == "namespaces" {
            return Ok(dry_run_result(
                stored,
                lifecycle::mark_terminating(stored, now),
            ));
        }
        Ok(match action {
            DeleteAction::Pending | DeleteAction::Remove => stored.clone(),
            DeleteAction::Mark { object, .. } => dry_run_result(stored, object),
        })
    }

    /// A client's delete of `key`, under the store lock (also the namespace controller's and
    /// the garbage collector's deletes, which are client deletes upstream).
    fn delete_locked(
        &self,
        store: &mut Store,
        info: &Resource,
        key: Key,
        opts: &DeleteOptions,
        released: &mut Vec<Key>,
    ) -> Result<Value, SimError> {
        let now = self.clock.now();
        let stored = store
            .get(&info.id, &key)
            .cloned()
            .ok_or_else(|| not_found(info, &key.1))?;
        let policy = gc::propagation(opts);
        let current = with_gc_finalizer(&stored, policy);
        let action = lifecycle::plan_delete(info, &current, opts, now)?;
        if info.plural == "namespaces" {
            return Ok(self.terminate_namespace(store, key, &stored, now, released));
        }
        let uid = uid_of(&current).to_string();
        if policy == Propagation::Orphan {
            let deps = dependents(store, &key.0, info.namespaced, &uid);
            let acts = gc::orphan(&uid, &as_dependents(&deps));
            self.apply_gc(store, acts, released);
        }
        Ok(match action {
            DeleteAction::Pending => stored,
            DeleteAction::Remove => self.remove_obj(store, info, key, released),
            DeleteAction::Mark {
                object,
                remove_after,
            } => {
                let marked = store.commit(&info.id, key.clone(), Some(object));
                if let Some(after) = remove_after {
                    self.remove_after_grace(info, key.clone(), stamp_of(&marked), after);
                }
                if lifecycle::finalizers(&marked).contains(&gc::FOREGROUND) {
                    let deps = dependents(store, &key.0, info.namespaced, &uid);
                    let acts = gc::foreground(&as_dependents(&deps));
                    self.apply_gc(store, acts, released);
                    self.check_foreground(store, info, &key, released);
                }
                marked
            }
        })
    }

    /// `pkg/registry/core/namespace/storage` `Delete` then the namespace controller's pass:
    /// mark it Terminating, delete everything in it as a client would, and remove it if nothing
    /// is left (else record the conditions; the last removal in it removes it later).
    fn terminate_namespace(
        &self,
        store: &mut Store,
        key: Key,
        stored: &Value,
        now: SystemTime,
        released: &mut Vec<Key>,
    ) -> Value {
        if stored.pointer("/metadata/deletionTimestamp").is_some() {
            return stored.clone();
        }
        let marked = store.commit(
            "namespaces",
            key.clone(),
            Some(lifecycle::mark_terminating(stored, now)),
        );
        let ns = key.1.clone();
        for r in store.registry().clone().namespaced() {
            for k in store.keys(&r.id, Some(&ns)) {
                // Already collected or held: the controller's next pass is the removal hook.
                let _ = self.delete_locked(store, &r, k, &DeleteOptions::default(), released);
            }
        }
        let Some(current) = store.get("namespaces", &key).cloned() else {
            return marked;
        };
        let mut remaining = Vec::new();
        let mut held = std::collections::BTreeMap::<String, usize>::new();
        for r in store.registry().clone().namespaced() {
            let mut n = 0;
            for (_, o) in store.iter_objs(&r.id, Some(&ns)) {
                n += 1;
                for f in lifecycle::finalizers(o.value()) {
                    *held.entry(f.to_string()).or_default() += 1;
                }
            }
            if n > 0 {
                remaining.push((r.plural.clone(), r.group.clone(), n));
            }
        }
        if remaining.is_empty() {
            if let Some(info) = crate::resource::built_in("namespaces") {
                self.remove_obj(store, info, key, released);
            }
            return marked;
        }
        let mut status = current;
        let remaining: Vec<(&str, &str, usize)> = remaining
            .iter()
            .map(|(p, g, n)| (p.as_ref(), g.as_ref(), *n))
            .collect();
        status["status"]["conditions"] =
            lifecycle::namespace_conditions(&remaining, &held.into_iter().collect::<Vec<_>>(), now);
        store.commit("namespaces", key, Some(status));
        marked
    }

    /// Carry out the garbage collector's actions (a vanished dependent is skipped).
    fn apply_gc(&self, store: &mut Store, acts: Vec<GcAction>, released: &mut Vec<Key>) {
        for act in acts {
            match act {
                GcAction::Delete {
                    resource,
                    key,
                    foreground,
                } => {
                    let Some(info) = store.registry().by_id(&resource).cloned() else {
                        continue;
                    };
                    let opts = DeleteOptions {
                        propagation_policy: foreground.then(|| "Foreground".to_string()),
                        ..DeleteOptions::default()
                    };
                    let _ = self.delete_locked(store, &info, key, &opts, released);
                }
                GcAction::Update {
                    resource,
                    key,
                    object,
                } => {
                    if store.contains(&resource, &key) {
                        store.commit(&resource, key, Some(object));
                    }
                }
            }
        }
    }

    /// An owner deleted in the foreground loses its `foregroundDeletion` finalizer (and so is
    /// removed, if nothing else holds it) once no blocking dependent is left.
    fn check_foreground(
        &self,
        store: &mut Store,
        info: &Resource,
        key: &Key,
        released: &mut Vec<Key>,
    ) {
        let Some(owner) = store.get(&info.id, key).cloned() else {
            return;
        };
        if !lifecycle::finalizers(&owner).contains(&gc::FOREGROUND) {
            return;
        }
        let deps = dependents(store, &key.0, info.namespaced, uid_of(&owner));
        let objs: Vec<&Value> = deps.iter().map(|d| &d.2).collect();
        let Some(new) = gc::release_foreground(&owner, &objs) else {
            return;
        };
        if lifecycle::removed_by_update(&owner, &new) {
            self.remove_obj(store, info, key.clone(), released);
        } else {
            store.commit(&info.id, key.clone(), Some(new));
        }
    }

    /// Remove `key` and run what a removal sets off: its dependents collected (Background),
    /// owners waiting for it in the foreground released, and its namespace removed if it is
    /// terminating and now empty. Each check costs a lookup unless there is work.
    fn remove_obj(
        &self,
        store: &mut Store,
        info: &Resource,
        key: Key,
        released: &mut Vec<Key>,
    ) -> Value {
        let removed = remove_locked(store, info, key.clone(), released);
        let uid = uid_of(&removed);
        if !uid.is_empty() && !store.dependents_of(uid).is_empty() {
            let deps = dependents(store, &key.0, info.namespaced, uid);
            let acts = gc::owner_gone(uid, &as_dependents(&deps));
            self.apply_gc(store, acts, released);
        }
        for r in gc::owner_refs(&removed) {
            if let Some((owner_info, owner_key)) = owner_of(store, &key.0, &r) {
                self.check_foreground(store, &owner_info, &owner_key, released);
            }
        }
        if info.namespaced {
            self.finish_namespace(store, &key.0, released);
        }
        removed
    }

    /// The namespace controller's last step: a terminating namespace with nothing left in it
    /// is removed (only a terminating namespace is looked into).
    fn finish_namespace(&self, store: &mut Store, ns: &str, released: &mut Vec<Key>) {
        let key = (String::new(), ns.to_string());
        let terminating = store
            .get("namespaces", &key)
            .is_some_and(|n| n.pointer("/metadata/deletionTimestamp").is_some());
        if !terminating {
            return;
        }
        let empty = store
            .registry()
            .namespaced()
            .iter()
            .all(|r| store.iter_objs(&r.id, Some(ns)).next().is_none());
        if let (true, Some(info)) = (empty, crate::resource::built_in("namespaces")) {
            self.remove_obj(store, info, key, released);
        }
    }

    /// Remove at once, finalizers and grace notwithstanding (the Rust API's `Sim::delete`).
    pub(crate) fn remove(
        &self,
        info: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, SimError> {
        let key = key_for(info, namespace, name)?;
        let mut released = Vec::new();
        let removed = {
            let mut store = lock(&self.store);
            if !store.contains(&info.id, &key) {
                return Err(SimError::NotFound {
                    resource: info.qualified(),
                    name: name.to_string(),
                });
            }
            self.remove_obj(&mut store, info, key, &mut released)
        };
        self.release(&released);
        Ok(removed)
    }

    /// Commit an update (or patch) of `old` to `new`; one that empties the finalizers of an
    /// object whose deletion is due removes it instead (`lifecycle::removed_by_update`).
    pub(crate) fn commit_update(
        &self,
        store: &mut Store,
        info: &Resource,
        key: Key,
        mode: UpdateMode,
        new: Value,
    ) -> (Value, Vec<Key>) {
        let mut released = Vec::new();
        let removes = mode != UpdateMode::Whole
            && store
                .get(&info.id, &key)
                .is_some_and(|old| lifecycle::removed_by_update(old, &new));
        let stored = if removes {
            self.remove_obj(store, info, key, &mut released)
        } else {
            let stored = store.commit(&info.id, key, Some(new));
            crd_committed(store, info, &stored);
            stored
        };
        (stored, released)
    }

    /// Give the IPs of removed pods back (after the store lock is dropped: ipam is locked first elsewhere).
    pub(crate) fn release(&self, pods: &[Key]) {
        if pods.is_empty() {
            return;
        }
        let mut ipam = lock(&self.ipam);
        for k in pods {
            ipam.release(k);
        }
    }

    /// When `after` has passed on tokio's clock, delete the object with grace 0 — what the
    /// kubelet does once a pod's grace is over — if its deletion stamp is still `stamp` (a
    /// shortened grace has its own timer; a removed or recreated object is left alone).
    fn remove_after_grace(&self, info: &Resource, key: Key, stamp: Stamp, after: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = self.me.clone();
        let info = info.clone();
        // The deadline is fixed now, not when the task is first polled.
        let due = tokio::time::Instant::now() + after;
        rt.spawn(async move {
            tokio::time::sleep_until(due).await;
            if let Some(inner) = weak.upgrade() {
                inner.grace_over(&info, key, &stamp);
            }
        });
    }

    fn grace_over(&self, info: &Resource, key: Key, stamp: &Stamp) {
        let mut released = Vec::new();
        {
            let mut store = lock(&self.store);
            let Some(current) = store.get(&info.id, &key) else {
                return;
            };
            if &stamp_of(current) != stamp {
                return;
            }
            let now = self.clock.now();
            match lifecycle::plan_delete(info, current, &DeleteOptions::immediate(), now) {
                Ok(DeleteAction::Remove) => {
                    self.remove_obj(&mut store, info, key, &mut released);
                }
                Ok(DeleteAction::Mark { object, .. }) => {
                    store.commit(&info.id, key, Some(object));
                }
                Ok(DeleteAction::Pending) | Err(_) => {}
            }
        }
        self.release(&released);
    }

    /// Objects matching selectors, for list and deletecollection.
    pub(crate) fn selected(
        &self,
        info: &Resource,
        namespace: Option<&str>,
        sel: &Selectors,
    ) -> Vec<Value> {
        let picked = lock(&self.store)
            .iter_objs(&info.id, namespace)
            .filter(|(_, o)| o.matches(sel))
            .map(|(_, o)| o.clone())
            .collect::<Vec<_>>();
        picked.iter().map(|o| o.to_value()).collect()
    }
}

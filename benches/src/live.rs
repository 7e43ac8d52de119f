//! Live rigs for the engine benches: an in-process sim with opted-in services, the engine (or a bare kube-rs watcher) on its own named runtime, and that runtime's CPU time.
//!
//! The measured side runs on a runtime whose threads all carry one name
//! ([`podgrant_harness::cpu::named_runtime`]), and [`podgrant_harness::cpu::CpuMeter`] reads
//! exactly those threads' CPU clocks — so a busy neighbour on this 2-core machine is not
//! counted. The bench's own thread drives the sim on a separate, unnamed runtime.
//!
//! The in-process sim has no sockets: a watch body is produced when the client polls it, so
//! serialising events is charged to the consumer's runtime — equally for the engine and for
//! the bare-watcher floor, which is what makes their ratio fair.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::metrics::Metrics;
use podgrant_core::store::memory::MemoryStore;
use podgrant_core::store::GrantStore;
use podgrant_core::watch::WatchConfig;
use podgrant_harness::cpu::{named_runtime, CpuMeter};
use podgrant_sim::{Sim, Step};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The namespace every rig uses.
pub const NS: &str = "bench";

/// A failure to set a rig up or to see it reach a state in time.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("sim step {step}: {reason}")]
    Sim { step: String, reason: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("cpu accounting: {0}")]
    Cpu(String),
}

/// A sim with `services` opted-in services in [`NS`] and `pods` ready pods spread over them
/// (pod `i` → service `i % services`). Histories and watch buffers are sized for floods.
pub fn populated_sim(pods: usize, services: usize) -> Result<Sim, RigError> {
    populated_sim_with(&SimLayout {
        pods,
        granted: pods,
        services,
        user_prefix: "u",
        pod_cidr: None,
    })
}

/// The shape of a [`populated_sim_with`] cluster.
#[derive(Debug, Clone)]
pub struct SimLayout<'a> {
    pub pods: usize,
    /// Pods `0..granted` are selected (pod `i` by service `i % services`); the others carry a
    /// label no service selects.
    pub granted: usize,
    pub services: usize,
    /// Service `s` asks for user `{NS}_{user_prefix}{s}` (unique names on a shared MySQL).
    pub user_prefix: &'a str,
    /// The sim's pod network (`None`: its default).
    pub pod_cidr: Option<String>,
}

/// A sim laid out as `layout` says, every pod ready.
pub fn populated_sim_with(layout: &SimLayout<'_>) -> Result<Sim, RigError> {
    let SimLayout {
        pods,
        granted,
        services,
        user_prefix,
        ..
    } = *layout;
    let mut builder = Sim::builder()
        .seed(7)
        .history_window(200_000)
        .watch_buffer(200_000);
    if let Some(cidr) = &layout.pod_cidr {
        builder = builder.pod_cidr(cidr);
    }
    let sim = builder.build();
    let apply = |step: Step| {
        let name = format!("{step:?}");
        sim.apply(&step).map_err(|e| RigError::Sim {
            step: name.chars().take(80).collect(),
            reason: e.to_string(),
        })
    };
    apply(Step::create_namespace(NS))?;
    for s in 0..services {
        apply(Step::create_secret(
            NS,
            &format!("pw-{s}"),
            [("password", format!("bench-{s}"))],
        ))?;
        apply(
            Step::create_service(NS, &format!("svc-{s}"), [("app", format!("svc-{s}"))])
                .annotations([
                    ("podgrant.io/mysql-user", format!("{NS}_{user_prefix}{s}")),
                    ("podgrant.io/mysql-database", format!("{NS}_db{s}")),
                    ("podgrant.io/mysql-privileges", "SELECT,INSERT".to_string()),
                    (
                        "podgrant.io/mysql-password-secret",
                        format!("pw-{s}/password"),
                    ),
                ]),
        )?;
    }
    for i in 0..pods {
        let app = if i < granted {
            format!("svc-{}", i % services)
        } else {
            "idle".to_string()
        };
        apply(Step::create_pod(NS, &pod_name(i)).labels([("app", app)]))?;
    }
    Ok(sim)
}

/// The name of pod `i` in [`populated_sim`].
pub fn pod_name(i: usize) -> String {
    format!("pod-{i}")
}

/// A current-thread runtime for the bench's own driving (not measured).
pub fn driver() -> Result<Runtime, RigError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RigError::Runtime(e.to_string()))
}

/// Engine settings for benches: watch only [`NS`], reconcile 50 ms after a change, no
/// periodic resync during a measurement.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        namespace: Some(NS.into()),
        debounce: Duration::from_millis(50),
        resync_interval: Duration::from_secs(3600),
        watch: WatchConfig {
            idle_timeout: Duration::from_secs(600),
            ..WatchConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// Polls `cond` every millisecond on the driver until it holds; the wall time it took.
pub fn wait(
    driver: &Runtime,
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, RigError> {
    let start = Instant::now();
    driver.block_on(async {
        loop {
            if cond() {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                return Err(RigError::Timeout {
                    what: what.to_string(),
                    after: within,
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

/// The engine on its own runtime (threads named `name`), with the in-memory store unless
/// started with another ([`EngineRig::start_with`]).
pub struct EngineRig<S = MemoryStore> {
    pub store: S,
    pub metrics: Arc<Metrics>,
    meter: CpuMeter,
    stop: Option<oneshot::Sender<()>>,
    // dropped last: shuts the engine's threads down
    runtime: Runtime,
}

impl EngineRig<MemoryStore> {
    /// Starts the engine against `sim` on a runtime of `workers` threads named `name`.
    pub fn start(
        sim: &Sim,
        name: &str,
        workers: usize,
        config: EngineConfig,
    ) -> Result<Self, RigError> {
        Self::start_with(sim, name, workers, config, MemoryStore::new())
    }

    /// The accounts in the store.
    pub fn accounts(&self) -> usize {
        self.store.accounts().len()
    }
}

impl<S: GrantStore + Clone> EngineRig<S> {
    /// [`EngineRig::start`] with this store (the rig keeps a clone to read it).
    pub fn start_with(
        sim: &Sim,
        name: &str,
        workers: usize,
        config: EngineConfig,
        store: S,
    ) -> Result<Self, RigError> {
        let runtime = named_runtime(name, workers).map_err(|e| RigError::Runtime(e.to_string()))?;
        let meter = CpuMeter::new(name, Duration::from_millis(50))
            .map_err(|e| RigError::Cpu(e.to_string()))?;
        let (tx, rx) = oneshot::channel::<()>();
        let metrics = {
            let _enter = runtime.enter();
            let client = podgrant_core::retry_after::client(sim.service(), "default");
            let engine = Engine::new(client, Arc::new(store.clone()), config);
            let metrics = engine.metrics();
            runtime.spawn(engine.run(async {
                let _ = rx.await;
            }));
            metrics
        };
        Ok(Self {
            store,
            metrics,
            meter,
            stop: Some(tx),
            runtime,
        })
    }

    /// Pod events the engine has handled so far.
    pub fn pod_events(&self) -> u64 {
        self.metrics
            .snapshot()
            .events
            .get("pods")
            .copied()
            .unwrap_or(0)
    }

    /// Watch (re)starts the engine has made so far, all resources.
    pub fn watches(&self) -> u64 {
        self.metrics.snapshot().watches.values().sum()
    }

    /// CPU time of the engine's threads so far.
    pub fn cpu(&self) -> Result<Duration, RigError> {
        self.meter.total().map_err(|e| RigError::Cpu(e.to_string()))
    }
}

impl<S> Drop for EngineRig<S> {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // give run() a moment to return, then the runtime drop cancels what's left
        let _ = &self.runtime;
    }
}

/// The floor: a bare kube-rs `watcher` + `reflector` on pods in [`NS`], counting events,
/// on its own runtime named `name`.
pub struct WatcherRig {
    events: Arc<AtomicU64>,
    meter: CpuMeter,
    runtime: Runtime,
}

impl WatcherRig {
    pub fn start(sim: &Sim, name: &str, workers: usize) -> Result<Self, RigError> {
        let runtime = named_runtime(name, workers).map_err(|e| RigError::Runtime(e.to_string()))?;
        let meter = CpuMeter::new(name, Duration::from_millis(50))
            .map_err(|e| RigError::Cpu(e.to_string()))?;
        let events = Arc::new(AtomicU64::new(0));
        {
            let _enter = runtime.enter();
            let client = kube::Client::new(sim.service(), "default");
            let api: kube::Api<Pod> = kube::Api::namespaced(client, NS);
            let (_reader, writer) = kube::runtime::reflector::store::<Pod>();
            let stream = kube::runtime::reflector(
                writer,
                kube::runtime::watcher(api, kube::runtime::watcher::Config::default()),
            );
            let count = events.clone();
            runtime.spawn(async move {
                let mut stream = std::pin::pin!(stream);
                while let Some(ev) = stream.next().await {
                    // the initial list arrives as InitApply, later changes as Apply/Delete
                    use kube::runtime::watcher::Event;
                    if let Ok(Event::InitApply(_) | Event::Apply(_) | Event::Delete(_)) = ev {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        Ok(Self {
            events,
            meter,
            runtime,
        })
    }

    /// Objects seen so far: the initial list (InitApply) plus later Apply/Delete events.
    pub fn pod_events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// CPU time of the watcher's threads so far.
    pub fn cpu(&self) -> Result<Duration, RigError> {
        self.meter.total().map_err(|e| RigError::Cpu(e.to_string()))
    }

    /// The runtime (kept alive as long as the rig).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }
}

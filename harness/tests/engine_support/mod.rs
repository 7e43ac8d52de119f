//! Shared helpers of the engine-vs-sim tests: an in-process sim, an engine on the MemoryStore, waiting on conditions.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::grant::Privilege;
use podgrant_core::metrics::{Metrics, MetricsSnapshot};
use podgrant_core::store::memory::MemoryStore;
use podgrant_core::store::GrantStore;
use podgrant_core::watch::WatchConfig;
use podgrant_sim::{Sim, Step};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NS: &str = "apps";

pub fn sim() -> Sim {
    let sim = Sim::builder().seed(7).build();
    sim.apply(&Step::create_namespace(NS)).expect("namespace");
    sim
}

pub fn client(sim: &Sim) -> kube::Client {
    podgrant_core::retry_after::client(sim.service(), "default")
}

/// Engine settings for tests: short debounce, no resync during a test unless asked.
pub fn config() -> EngineConfig {
    EngineConfig {
        debounce: Duration::from_millis(100),
        resync_interval: Duration::from_secs(3600),
        watch: WatchConfig {
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            ..WatchConfig::default()
        },
        ..EngineConfig::default()
    }
}

/// A running engine: its counters and a way to stop it (gracefully) or kill it (abort).
pub struct Running {
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), podgrant_core::engine::EngineError>>,
}

impl Running {
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }
    /// Graceful shutdown; waits for `run` to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let res = tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("engine stops within 30 s");
        res.expect("engine task").expect("engine result");
    }
    /// A crash: the task is aborted, nothing is released.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub fn start<S: GrantStore>(sim: &Sim, store: Arc<S>, config: EngineConfig) -> Running {
    let engine = Engine::new(client(sim), store, config);
    let metrics = engine.metrics();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(engine.run(async {
        let _ = rx.await;
    }));
    Running {
        metrics,
        stop: Some(tx),
        task,
    }
}

/// Polls `cond` every 50 ms of (simulated) time until it holds; panics after `within`.
pub async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Like [`wait_until`] for an async condition.
pub async fn wait_until_async<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {within:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Annotations that opt a Service in.
pub fn grant_annotations(user: &str, db: &str, privs: &str, secret: &str) -> Vec<(String, String)> {
    vec![
        ("podgrant.io/mysql-user".into(), user.into()),
        ("podgrant.io/mysql-database".into(), db.into()),
        ("podgrant.io/mysql-privileges".into(), privs.into()),
        (
            "podgrant.io/mysql-password-secret".into(),
            format!("{secret}/password"),
        ),
    ]
}

/// Creates a Secret and an opted-in Service selecting `app=<app>`.
pub fn opt_in(sim: &Sim, service: &str, app: &str, user: &str, db: &str, privs: &str) {
    let secret = format!("{service}-db");
    sim.apply(&Step::create_secret(
        NS,
        &secret,
        [("password", format!("pw-{service}"))],
    ))
    .expect("secret");
    sim.apply(
        &Step::create_service(NS, service, [("app", app)])
            .annotations(grant_annotations(user, db, privs, &secret)),
    )
    .expect("service");
}

pub fn pod(sim: &Sim, name: &str, app: &str) {
    sim.apply(&Step::create_pod(NS, name).labels([("app", app)]))
        .expect("pod");
}

pub fn pod_ip(sim: &Sim, name: &str) -> IpAddr {
    let v = sim.get("pods", Some(NS), name).expect("pod exists");
    v.pointer("/status/podIP")
        .and_then(|s| s.as_str())
        .and_then(|s| s.parse().ok())
        .expect("pod has an IP")
}

/// The accounts in the store as (user, host) → (database → privileges).
pub fn accounts(
    store: &MemoryStore,
) -> BTreeMap<(String, IpAddr), BTreeMap<String, BTreeSet<String>>> {
    store
        .accounts()
        .into_iter()
        .map(|(k, a)| {
            (
                (k.user.clone(), k.host),
                a.grants
                    .into_iter()
                    .map(|(db, p)| (db, p.into_iter().map(|Privilege(s)| s).collect()))
                    .collect(),
            )
        })
        .collect()
}

/// Just the (user, host) pairs.
pub fn account_keys(store: &MemoryStore) -> BTreeSet<(String, IpAddr)> {
    accounts(store).into_keys().collect()
}

pub fn set(items: &[(&str, IpAddr)]) -> BTreeSet<(String, IpAddr)> {
    items.iter().map(|(u, ip)| (u.to_string(), *ip)).collect()
}

pub const LONG: Duration = Duration::from_secs(120);

/// Runs one paused-clock engine test under the harness's watchdog
/// ([`podgrant_harness::watchdog::run_paused`]): if simulated time stays frozen for 30 s of
/// wall time (a spin) or the test runs 10 min, it fails with "engine spin: simulated time
/// frozen for …" (or "wall deadline: …") and a pprof capture in
/// `target/tmp/watchdog/<test>/` instead of hanging `cargo test`.
pub fn paused<F, Fut>(name: &str, make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    paused_with(
        name,
        &podgrant_harness::watchdog::Limits::paused_test(),
        make,
    );
}

/// [`paused`] with explicit limits.
pub fn paused_with<F, Fut>(name: &str, limits: &podgrant_harness::watchdog::Limits, make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    assert_built_from_this_tree();
    let dir = watchdog_artifacts(name);
    if let Err(tripped) = podgrant_harness::watchdog::run_paused(name, limits, &dir, make) {
        panic!("{tripped}");
    }
}

/// Fails when this binary holds code from another tree than the one cargo runs it for. Cargo
/// names a workspace member's artifacts by its path *relative to the workspace root*, so two
/// worktrees sharing one `CARGO_TARGET_DIR` write the same file names, and a test run in one
/// can silently execute the other's build (issue 8, cause 5: a "spin on `main`" that was
/// another worktree's zero-delay re-watch). `cargo test` and nextest set `CARGO_MANIFEST_DIR`
/// when they run a test; the crates record theirs when compiled.
pub fn assert_built_from_this_tree() {
    use std::path::Path;
    let harness = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = harness
        .parent()
        .expect("the harness crate sits in the workspace root");
    for (krate, dir) in [
        ("podgrant-core", podgrant_core::BUILT_FROM),
        ("podgrant-sim", podgrant_sim::BUILT_FROM),
    ] {
        assert_eq!(
            Path::new(dir).parent(),
            Some(root),
            "{krate} in this test binary was built from {dir}, the harness from {}: a target dir shared between trees mixed their builds",
            harness.display()
        );
    }
    if let Ok(run) = std::env::var("CARGO_MANIFEST_DIR") {
        assert_eq!(
            Path::new(&run),
            harness,
            "this test binary was built from {} but cargo ran it for {run}: a stale build from another tree (give each tree its own CARGO_TARGET_DIR)",
            harness.display()
        );
    }
}

/// Where the watchdog's capture of test `name` goes.
pub fn watchdog_artifacts(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("watchdog")
        .join(name.replace("::", "."))
}

/// Declares paused-clock engine tests: each `async fn` named here (no attribute of its own)
/// becomes a `#[test]` `watched::<name>` run by [`paused`], on a fresh paused runtime, under
/// the watchdog. Use this instead of `#[tokio::test(start_paused = true)]` for any test that
/// runs the engine (`engine_watchdog::no_paused_engine_test_escapes_the_watchdog` checks).
#[allow(unused_macros)]
macro_rules! paused_tests {
    ($($name:ident),* $(,)?) => {
        mod watched {
            $(
                #[test]
                fn $name() {
                    $crate::engine_support::paused(
                        concat!(module_path!(), "::", stringify!($name)),
                        || super::$name(),
                    );
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use paused_tests;

/// Real time: polls `cond` every 100 ms until it holds, failing after `within` with `what`.
pub async fn wait_real<F: Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut cond: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + within;
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Drops every account of `users` (all created by the calling test) and its ledger schema.
pub async fn cleanup(pool: &mysql_async::Pool, users: &[&str], schema: &str) {
    use mysql_async::prelude::Queryable;
    let mut c = pool.get_conn().await.expect("conn");
    for u in users {
        let hosts: Vec<String> = c
            .exec("SELECT host FROM mysql.user WHERE user = ?", (*u,))
            .await
            .unwrap_or_default();
        for h in hosts {
            let _ = c
                .query_drop(format!("DROP USER IF EXISTS '{u}'@'{h}'"))
                .await;
        }
    }
    let _ = c
        .query_drop(format!("DROP DATABASE IF EXISTS `{schema}`"))
        .await;
}

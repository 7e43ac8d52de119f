//! Readiness-flip bench on a real MariaDB/MySQL: the engine's CPU and statements per membership change, at two cluster sizes.
//!
//! What it measures: the in-process sim holding `pods` ready pods, `accounts` of them selected
//! by 100 opted-in services (the rest carry a label nothing selects); the engine on its own
//! runtime (`pgb-flips`, 1 worker) with the real `MysqlStore` and the binary's defaults
//! (tenancy enforced, 250 ms debounce), converged. One iteration is 40
//! readiness flips paced at 20/s — 20 granted pods turn not-ready, then the same 20 turn
//! ready again — and the wait until the engine has handled them and the ledger again holds
//! every account. Criterion records the CPU time of the engine's threads over the iteration
//! (`iter_custom`, thread CPU: a busy neighbour is not counted); throughput is flips, so
//! criterion's "elem/s" is flips per engine CPU-second. The statements per flip (observe and
//! apply, as the store counts them) are printed once per size.
//! - `flips/per_flip/1000_pods_500_accounts`
//! - `flips/per_flip/20000_pods_5000_accounts`
//!
//! Issue 11's target: the second within 2x of the first (the engine's cost follows the change,
//! not the cluster). Before them, once: 10,000 pods over 10 services granted from cold (an
//! empty ledger) — the wall time from the engine's start until MariaDB holds every account,
//! and the statements it took (target ≤ 5 s, ≤ 60 statements; a `GRANT` names one database
//! and privilege set, so N distinct services need at least N of them). MySQL comes from the harness's provider as in the `mysql_apply` bench;
//! users and the ledger schema are this run's own and are dropped at the end.
//!
//! Run: `cargo bench -p podgrant-benches --bench flips`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use podgrant_benches::live::{self, EngineRig, SimLayout, NS};
use podgrant_core::store::mysql::MysqlStore;
use podgrant_core::validate::Policy;
use podgrant_sim::Step;

const SERVICES: usize = 100;
const FLIPS: usize = 40;
const RATE: f64 = 20.0;
const WITHIN: Duration = Duration::from_secs(300);
const SIZES: [(usize, usize); 2] = [(1_000, 500), (20_000, 5_000)];
/// The cold grant: pods (all granted) and the services they are spread over.
const COLD: (usize, usize) = (10_000, 10);

fn engine_config() -> podgrant_core::engine::EngineConfig {
    podgrant_core::engine::EngineConfig {
        // tenancy enforced, as the binary runs by default
        policy: Policy::default(),
        // the binary's default debounce (the other live benches use 50 ms)
        debounce: podgrant_core::engine::EngineConfig::default().debounce,
        ..live::engine_config()
    }
}

/// Grants `COLD` from an empty ledger once and prints how long it took and how many statements.
fn cold(driver: &tokio::runtime::Runtime, mysql_url: &str, tag: u32) {
    let (pods, services) = COLD;
    let scope = driver
        .block_on(podgrant_harness::run_scope::RunScope::claim(
            mysql_url,
            "pgbench_ledger",
        ))
        .expect("claim a run scope on MySQL");
    let store = driver
        .block_on(MysqlStore::connect(mysql_url, scope.schema()))
        .expect("connect to MySQL");
    let sim = live::populated_sim_with(&SimLayout {
        pods,
        granted: pods,
        services,
        user_prefix: &format!("c{tag}_"),
        pod_cidr: Some(scope.pod_cidr()),
    })
    .expect("sim");
    let t0 = Instant::now();
    let engine =
        EngineRig::start_with(&sim, "pgb-cold", 1, engine_config(), store.clone()).expect("engine");
    live::wait(driver, "the cold grant", WITHIN, || {
        let m = engine.metrics.snapshot();
        m.ledger_size == pods as u64 && m.desired_accounts == pods as u64 && !m.reconciling
    })
    .expect("engine converged");
    let took = t0.elapsed();
    let m = engine.metrics.snapshot();
    eprintln!(
        "flips/cold: {pods} pods over {services} services granted from cold in {took:?} \
         ({:.2} s of engine CPU), {} statements ({} reconciles)",
        engine.cpu().expect("cpu").as_secs_f64(),
        store.statements(),
        m.reconciles,
    );
    drop(engine);
    let _ = driver.block_on(store.disconnect());
    driver
        .block_on(scope.cleanup())
        .expect("drop the cold run's accounts and schema");
}

fn flips(c: &mut Criterion) {
    let driver = live::driver().expect("driver runtime");
    let mysql = match driver.block_on(podgrant_harness::mysql::provide("flips bench")) {
        Ok(Some(m)) => m,
        Ok(None) => {
            eprintln!("flips: SKIPPED — no MySQL reachable (see the provider message above); nothing measured");
            return;
        }
        // Includes PODGRANT_REQUIRE=mysql with no server: a failure, not a skip.
        Err(e) => panic!("flips: no MySQL: {e}"),
    };
    eprintln!("flips: using {}", mysql.redacted_url());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tag = (nanos ^ std::process::id().rotate_left(16)) % 100_000;
    cold(&driver, mysql.url(), tag);

    let mut g = c.benchmark_group("flips/per_flip");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20))
        // one iteration is a paced burst: the same iteration count in every sample
        .sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(FLIPS as u64));
    for (pods, accounts) in SIZES {
        let scope = driver
            .block_on(podgrant_harness::run_scope::RunScope::claim(
                mysql.url(),
                "pgbench_ledger",
            ))
            .expect("claim a run scope on MySQL");
        let store = driver
            .block_on(MysqlStore::connect(mysql.url(), scope.schema()))
            .expect("connect to MySQL");
        let sim = live::populated_sim_with(&SimLayout {
            pods,
            granted: accounts,
            services: SERVICES,
            user_prefix: &format!("f{tag}_{pods}_"),
            pod_cidr: Some(scope.pod_cidr()),
        })
        .expect("sim");
        let engine = EngineRig::start_with(&sim, "pgb-flips", 1, engine_config(), store.clone())
            .expect("engine");
        // ... and idle: the whole reconcile's verifying observe has ended too.
        let converged = || {
            let m = engine.metrics.snapshot();
            m.ledger_size == accounts as u64
                && m.desired_accounts == accounts as u64
                && !m.reconciling
        };
        let t0 = Instant::now();
        live::wait(
            &driver,
            "the engine to grant every account",
            WITHIN,
            converged,
        )
        .expect("engine converged");
        eprintln!(
            "flips: {pods} pods / {accounts} accounts granted from cold in {:?}, {} statements",
            t0.elapsed(),
            store.statements()
        );

        // one paced burst; the engine CPU it cost
        let run = || -> Duration {
            let e0 = engine.pod_events();
            let r0 = {
                let m = engine.metrics.snapshot();
                m.reconciles + m.reconciles_skipped
            };
            let cpu0 = engine.cpu().expect("cpu");
            let start = Instant::now();
            for i in 0..FLIPS {
                // pods 0..20 of the granted ones (spread over the services) go down, then up
                let pod = (i % (FLIPS / 2)) * (accounts / (FLIPS / 2));
                let ready = i >= FLIPS / 2;
                let due = start + Duration::from_secs_f64(i as f64 / RATE);
                // Paced on the driver runtime, not by a thread sleep: the store's connection
                // pool was made there and its background tasks must keep running.
                driver.block_on(async { tokio::time::sleep_until(due.into()).await });
                sim.apply(&Step::set_pod_ready(NS, &live::pod_name(pod), ready))
                    .expect("flip readiness");
            }
            live::wait(&driver, "the flips handled", WITHIN, || {
                let m = engine.metrics.snapshot();
                engine.pod_events() >= e0 + FLIPS as u64
                    && m.reconciles + m.reconciles_skipped > r0
                    && converged()
            })
            .expect("converged after the flips");
            engine.cpu().expect("cpu").saturating_sub(cpu0)
        };
        let s0 = store.statements();
        let m0 = engine.metrics.snapshot();
        let cpu = run();
        let m1 = engine.metrics.snapshot();
        eprintln!(
            "flips: {pods} pods / {accounts} accounts: {:.2} ms engine CPU and {:.2} statements per flip \
             (one burst of {FLIPS}: {} reconciles, {} skipped, {} actions)",
            cpu.as_secs_f64() * 1e3 / FLIPS as f64,
            (store.statements() - s0) as f64 / FLIPS as f64,
            m1.reconciles - m0.reconciles,
            m1.reconciles_skipped - m0.reconciles_skipped,
            m1.actions.values().sum::<u64>() - m0.actions.values().sum::<u64>(),
        );
        g.bench_function(format!("{pods}_pods_{accounts}_accounts"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run();
                }
                total
            })
        });
        drop(engine);
        let _ = driver.block_on(store.disconnect());
        let removed = driver
            .block_on(scope.cleanup())
            .expect("drop the bench's ledger schema");
        eprintln!(
            "flips: removed {} accounts and {}",
            removed.accounts,
            removed.schemas.join(", ")
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = flips
}
criterion_main!(benches);

//! Ingest bench: pod events through the engine (in-memory store) vs a bare kube-rs watcher + reflector, from the in-process sim.
//!
//! What it measures: a burst of 2,000 pod MODIFIED events (label/annotation/status churn
//! that changes no grant) from the sim to 200 ready pods across 10 opted-in services.
//! - `ingest/engine` — CPU time of the engine's own runtime threads (`pgb-engine`, 1 worker)
//!   per burst, until the engine has counted every event.
//! - `ingest/kube_watcher_floor` — the same bursts through `kube::runtime::watcher` +
//!   `reflector` on their own runtime (`pgb-floor`): the floor any kube-rs controller pays.
//!
//! Both consumers watch every burst; each bench reports only its own threads' CPU
//! (`iter_custom`), so the engine's overhead is the ratio of the two, and a busy neighbour
//! is not counted. criterion's throughput line is events per CPU-second.
//!
//! Run: `cargo bench -p podgrant-benches --bench ingest` (`-- --profile-time 5` for profiles).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use podgrant_benches::live::{self, EngineRig, WatcherRig, NS};
use podgrant_sim::FloodSpec;

const PODS: usize = 200;
const SERVICES: usize = 10;
const BURST: u64 = 2_000;
const WITHIN: Duration = Duration::from_secs(120);

fn ingest(c: &mut Criterion) {
    let driver = live::driver().expect("driver runtime");
    let sim = live::populated_sim(PODS, SERVICES).expect("sim");
    let engine = EngineRig::start(&sim, "pgb-engine", 1, live::engine_config()).expect("engine");
    live::wait(&driver, "the engine to grant every pod", WITHIN, || {
        engine.accounts() == PODS
    })
    .expect("engine converged");
    let floor = WatcherRig::start(&sim, "pgb-floor", 1).expect("watcher");
    live::wait(&driver, "the watcher's initial list", WITHIN, || {
        floor.pod_events() >= PODS as u64
    })
    .expect("watcher listed");

    // one burst, waited for by both consumers; returns (engine CPU, floor CPU) it cost
    let burst = || -> (Duration, Duration) {
        let (e0, f0) = (engine.pod_events(), floor.pod_events());
        let (ec0, fc0) = (engine.cpu().expect("cpu"), floor.cpu().expect("cpu"));
        driver.block_on(sim.flood(FloodSpec::burst(NS, BURST)).finished());
        live::wait(&driver, "both consumers to see the burst", WITHIN, || {
            engine.pod_events() >= e0 + BURST && floor.pod_events() >= f0 + BURST
        })
        .expect("burst consumed");
        (
            engine.cpu().expect("cpu").saturating_sub(ec0),
            floor.cpu().expect("cpu").saturating_sub(fc0),
        )
    };

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(BURST))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        // one iteration is a whole burst: same iteration count in every sample
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("engine", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| burst().0).sum())
    });
    g.bench_function("kube_watcher_floor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| burst().1).sum())
    });
    g.finish();
    assert_eq!(engine.accounts(), PODS, "the churn changed no grant");
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = ingest
}
criterion_main!(benches);

//! Flood-to-convergence bench: CPU and time for the engine to converge after a 10k-event flood of membership changes.
//!
//! What it measures: 100 ready pods of one opted-in service in the in-process sim, the engine
//! on its own runtime (`pgb-engine`, 1 worker) with the in-memory store, converged. One
//! iteration is a flood of 10,000 readiness flips (100 rounds over the 100 pods, alternately
//! not-ready and ready; the last round leaves every pod ready), then waiting until the
//! engine has handled all 10,000 events and holds exactly the 100 accounts again.
//! - `flood/converge_10k/cpu` — CPU time of the engine's threads over the iteration
//!   (`iter_custom`; a busy neighbour is not counted). Throughput: events per CPU-second.
//! - `flood/converge_10k/wall` — wall time from the last event sent to convergence.
//!
//! Run: `cargo bench -p podgrant-benches --bench flood` (`-- --profile-time 5` for profiles).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use podgrant_benches::live::{self, EngineRig, NS};
use podgrant_sim::Step;

const PODS: usize = 100;
const FLOOD: u64 = 10_000;
const WITHIN: Duration = Duration::from_secs(300);

fn flood(c: &mut Criterion) {
    let driver = live::driver().expect("driver runtime");
    let sim = live::populated_sim(PODS, 1).expect("sim");
    let engine = EngineRig::start(&sim, "pgb-engine", 1, live::engine_config()).expect("engine");
    live::wait(&driver, "the engine to grant every pod", WITHIN, || {
        engine.accounts() == PODS
    })
    .expect("engine converged");

    // one flood; returns (engine CPU for the whole iteration, wall from last event to convergence)
    let run = || -> (Duration, Duration) {
        let e0 = engine.pod_events();
        let cpu0 = engine.cpu().expect("cpu");
        for i in 0..FLOOD as usize {
            let ready = (i / PODS) % 2 == 1;
            sim.apply(&Step::set_pod_ready(NS, &live::pod_name(i % PODS), ready))
                .expect("flip readiness");
        }
        let sent = Instant::now();
        live::wait(&driver, "convergence after the flood", WITHIN, || {
            engine.pod_events() >= e0 + FLOOD && engine.accounts() == PODS
        })
        .expect("converged");
        (
            engine.cpu().expect("cpu").saturating_sub(cpu0),
            sent.elapsed(),
        )
    };

    let mut g = c.benchmark_group("flood/converge_10k");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        // one iteration is a whole burst: same iteration count in every sample
        .sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(FLOOD));
    g.bench_function("cpu", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run().0).sum())
    });
    g.bench_function("wall", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run().1).sum())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = flood
}
criterion_main!(benches);

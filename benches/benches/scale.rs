//! Scale bench: the whole engine at 100,000 pods (in-memory store) — its RSS per pod, its cold sync, and one readiness flip's CPU.
//!
//! What it measures: the in-process sim holding 100,000 ready pods, 10,000 of them selected by
//! 100 opted-in services; the engine on its own runtime (`pgb-scale`, 1 worker) with the
//! in-memory store. Printed once: how much the process's RSS grew from the engine's start
//! until it had listed everything and granted every account (the engine's index, incremental
//! desired state, ledger holders, watch buffers — and the in-memory store's 10,000 accounts,
//! which MySQL would hold instead), per pod; and the cold sync's wall time and engine CPU.
//! Criterion then measures one iteration = one granted pod turning not-ready and ready again,
//! each waited for until the store has applied it: the engine threads' CPU (`iter_custom`).
//! - `scale/flip_pair/100000_pods`
//!
//! Issue 11's targets: engine RSS ≤ 1 KB per pod at 100,000 pods; a pod event's cost
//! independent of the cluster's size (compare `flips/per_flip`, which also pays MySQL).
//!
//! Run: `cargo bench -p podgrant-benches --bench scale`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use podgrant_benches::live::{self, EngineRig, SimLayout, NS};
use podgrant_sim::Step;

const PODS: usize = 100_000;
const GRANTED: usize = 10_000;
const SERVICES: usize = 100;
const WITHIN: Duration = Duration::from_secs(600);

/// Gives glibc's free heap memory back to the system (it keeps freed memory — the list pages,
/// the relist's second copy — in its arenas), so RSS shows what is held.
fn trim() {
    // SAFETY: malloc_trim only releases free heap memory; no pointer is invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn rss_kib() -> u64 {
    podgrant_harness::cpu::mem_stats()
        .map(|m| m.rss_kib)
        .unwrap_or(0)
}

fn scale(c: &mut Criterion) {
    let driver = live::driver().expect("driver runtime");
    let sim = live::populated_sim_with(&SimLayout {
        pods: PODS,
        granted: GRANTED,
        services: SERVICES,
        user_prefix: "s",
        // a /14: room for 100,000 pod IPs
        pod_cidr: Some("10.64.0.0/14".into()),
    })
    .expect("sim");
    let before = rss_kib();
    trim();
    let trimmed_before = rss_kib();
    let t0 = Instant::now();
    let engine = EngineRig::start(&sim, "pgb-scale", 1, live::engine_config()).expect("engine");
    let rig = &engine;
    let granted = |n: usize| {
        move || {
            let m = rig.metrics.snapshot();
            m.ledger_size == n as u64 && m.desired_accounts == n as u64 && !m.reconciling
        }
    };
    live::wait(&driver, "the cold sync and grant", WITHIN, granted(GRANTED))
        .expect("engine converged");
    let took = t0.elapsed();
    let added = rss_kib().saturating_sub(before);
    trim();
    let held = rss_kib().saturating_sub(trimmed_before);
    let per_pod = |kib: u64| kib as f64 * 1024.0 / PODS as f64;
    eprintln!(
        "scale: {PODS} pods ({GRANTED} granted, {SERVICES} services): listed and granted from cold in \
         {took:?} ({:.2} s of CPU on the engine's thread, which also runs the in-process sim's \
         list serving); RSS +{added} KiB = {:.0} bytes per pod, +{held} KiB = {:.0} bytes per pod \
         after malloc_trim (the engine and its in-memory store of {GRANTED} accounts)",
        engine.cpu().expect("cpu").as_secs_f64(),
        per_pod(added),
        per_pod(held),
    );

    // one granted pod down and up again; the engine CPU it cost
    let mut round = 0usize;
    let mut flip_pair = || -> Duration {
        let pod = live::pod_name((round * 97) % GRANTED);
        round += 1;
        let cpu0 = engine.cpu().expect("cpu");
        for (ready, want) in [(false, GRANTED - 1), (true, GRANTED)] {
            sim.apply(&Step::set_pod_ready(NS, &pod, ready))
                .expect("flip readiness");
            live::wait(&driver, "the flip applied", WITHIN, granted(want)).expect("flip applied");
        }
        engine.cpu().expect("cpu").saturating_sub(cpu0)
    };
    let mut g = c.benchmark_group("scale/flip_pair");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(2));
    g.bench_function(format!("{PODS}_pods"), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| flip_pair()).sum())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = scale
}
criterion_main!(benches);

//! Reconnect-storm bench: CPU per watch re-establishment when the sim closes every watch right after its initial events.
//!
//! What it measures: the in-process sim with 100 ready pods of one opted-in service and a
//! fault closing every watch (clean end of stream) right after its initial events — the
//! seed's fault.
//! - `reconnect/engine` — CPU time of the engine's own threads (`pgb-engine`) per watch it
//!   re-establishes. The engine's guard backs off after short, empty watches; the bench
//!   shortens that backoff (10–50 ms) so that re-establishments happen often enough to time,
//!   and reports the cost of each (`iter_custom`, one iteration = one re-watch).
//! - `reconnect/kube_watcher_floor` — a bare kube-rs `watcher` under the same fault: it
//!   re-watches immediately with no backoff (the hot loop); CPU of its threads (`pgb-floor`)
//!   per watch request the sim counted.
//!
//! Neither counts a busy neighbour. What matters in production is the *rate*: the engine's
//! default backoff keeps it far below one re-watch per second (see the harness tests); this
//! bench prices one re-watch.
//!
//! Run: `cargo bench -p podgrant-benches --bench reconnect`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use podgrant_benches::live::{self, EngineRig, WatcherRig};
use podgrant_core::backoff::BackoffConfig;
use podgrant_core::watch::WatchConfig;
use podgrant_sim::{CloseMode, CloseWhen, Fault, FaultPlan, FaultRule};

const PODS: usize = 100;
const WITHIN: Duration = Duration::from_secs(120);

fn close_every_watch() -> FaultPlan {
    FaultPlan::new(1).rule(
        FaultRule::new(Fault::CloseWatch {
            when: CloseWhen::AfterInitialEvents,
            mode: CloseMode::Clean,
        })
        .verb("watch"),
    )
}

fn sim_watches(sim: &podgrant_sim::Sim) -> u64 {
    let s = sim.stats();
    ["pods", "services", "secrets"]
        .iter()
        .map(|r| s.requests("watch", r))
        .sum()
}

fn reconnect(c: &mut Criterion) {
    let driver = live::driver().expect("driver runtime");
    let mut g = c.benchmark_group("reconnect");
    // iter_custom returns CPU time, far less than the wall time a re-watch takes (the backoff
    // sleeps): criterion sizes the run by the returned time, so a short measurement time
    // keeps the wall time to about a minute.
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_millis(500))
        .sampling_mode(SamplingMode::Flat);

    {
        let sim = live::populated_sim(PODS, 1).expect("sim");
        let mut config = live::engine_config();
        config.watch = WatchConfig {
            backoff: BackoffConfig {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
                factor: 2.0,
                jitter: 0.2,
            },
            ..config.watch
        };
        // the fault is in place from the start: a rule applies to watches opened after it
        // is set, and the engine converges from its lists alone
        sim.set_faults(close_every_watch());
        let engine = EngineRig::start(&sim, "pgb-engine", 1, config).expect("engine");
        live::wait(&driver, "the engine to grant every pod", WITHIN, || {
            engine.accounts() == PODS
        })
        .expect("engine converged");
        g.bench_function("engine", |b| {
            b.iter_custom(|iters| {
                let (w0, cpu0) = (sim_watches(&sim), engine.cpu().expect("cpu"));
                live::wait(&driver, "re-watches", WITHIN, || {
                    sim_watches(&sim) >= w0 + iters
                })
                .expect("the engine re-watches");
                engine.cpu().expect("cpu").saturating_sub(cpu0)
            })
        });
        sim.set_faults(FaultPlan::new(1));
        assert_eq!(engine.accounts(), PODS, "grants survive the storm");
    }

    {
        let sim = live::populated_sim(PODS, 1).expect("sim");
        sim.set_faults(close_every_watch());
        let floor = WatcherRig::start(&sim, "pgb-floor", 1).expect("watcher");
        g.bench_function("kube_watcher_floor", |b| {
            b.iter_custom(|iters| {
                let (w0, cpu0) = (sim_watches(&sim), floor.cpu().expect("cpu"));
                live::wait(&driver, "re-watches", WITHIN, || {
                    sim_watches(&sim) >= w0 + iters
                })
                .expect("the watcher re-watches");
                floor.cpu().expect("cpu").saturating_sub(cpu0)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = reconnect
}
criterion_main!(benches);

//! Fuzz bench: generated scenarios end to end, as `scenario fuzz` runs each case (sim, engine, oracle, invariants, report) under the paused clock.
//!
//! What it measures: the first 8 cases of `scenario fuzz --seed 5` (the README's command),
//! each realized into a scenario and run by [`podgrant_harness::generate::run_generated`] —
//! its own thread and current-thread runtime, the in-process sim, the engine on the memory
//! store, the oracle and every invariant on each 100 ms tick, the watchdog, the report files.
//! - `fuzz/seed5_first8/wall` — wall time per 8 cases (throughput: cases/s), the figure behind
//!   the fuzz's cases/s on one core; noisy when the machine is busy.
//! - `fuzz/seed5_first8/scenario_cpu` — the CPU time of the cases' scenario threads only (each
//!   report's own meter), so a busy neighbour is not read as a regression.
//!
//! Every case must pass (it is the fuzz corpus); a failing case stops the bench.
//!
//! Run: `cargo bench -p podgrant-benches --bench fuzz`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podgrant_harness::generate::{self, FuzzOptions};
use podgrant_harness::scenario::{ScenarioReport, StoreKind, Subject};

const SEED: u64 = 5;
const MAX_OPS: usize = 24;
const CASES: u32 = 8;

fn fuzz_cases(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = generate::generated_cases(SEED, MAX_OPS, CASES).expect("cases generate");
    let opts = FuzzOptions {
        cases: CASES,
        seed: SEED,
        max_ops: MAX_OPS,
        subject: Subject::Engine,
        real_time_rerun: false,
        artifacts: dir.path().to_path_buf(),
        store: StoreKind::Memory,
        arm: Default::default(),
        jobs: 1,
    };
    let run_all = || -> Vec<ScenarioReport> {
        cases
            .iter()
            .map(|ops| {
                let r = generate::run_generated(&opts, ops, dir.path()).expect("case runs");
                assert!(r.passed, "a corpus case failed:\n{r}");
                r
            })
            .collect()
    };

    let mut g = c.benchmark_group("fuzz/seed5_first8");
    g.throughput(Throughput::Elements(u64::from(CASES)))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    g.bench_function("wall", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(run_all());
            }
            start.elapsed()
        })
    });
    g.bench_function("scenario_cpu", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .flat_map(|_| run_all())
                .map(|r| r.cpu.expect("every run is metered").cpu)
                .sum()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = fuzz_cases
}
criterion_main!(benches);

//! Planner benches: the pure core's cost, without I/O.
//!
//! What it measures: the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, via
//! `iter_custom`) per iteration — not wall time, so a busy neighbour on this 2-core machine
//! does not read as a regression. One iteration is one reconcile's pure work:
//! - `planner/full_diff/{1000,10000,100000}` — 1k/10k/100k ready pods across 100 opted-in
//!   services: `desired_state` over the whole cluster, then `plan` against a converged store
//!   (the steady-state resync, no action comes out).
//! - `planner/cold_start/{1000,10000,100000}` — the same against an empty store: the first
//!   reconcile after start, planning every Claim/Create/Grant.
//! - `planner/one_event/{1000,10000,100000}` — the incremental cost of one pod event as the
//!   engine pays it: `Index::apply` of one pod's readiness flip, `desired_state` over the whole
//!   cluster, `plan` against the converged store (one Drop/Release or Claim/Create/Grant).
//!
//! Run: `cargo bench -p podgrant-benches --bench planner` (add `-- --profile-time 5` for
//! `flamegraph.svg` and `profile.pb` in `target/criterion/planner_*/…/profile/`).
//! `PODGRANT_BENCH_SLOWDOWN=N` repeats the measured work 1+N times: the regression gate's
//! planted slowdown (see `podgrant-bench-gate`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use podgrant_benches::cpu_clock::measure_thread_cpu;
use podgrant_benches::{fixtures, slowdown};
use podgrant_core::desired::desired_state;
use podgrant_core::grant::Observed;
use podgrant_core::index::{ClusterEvent, Index};
use podgrant_core::planner::plan;
use podgrant_core::watch::Change;

const SERVICES: usize = 100;
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

fn configure(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, pods: usize) {
    // 100k pods take tens of ms per iteration: fewer samples keep the run short.
    if pods >= 100_000 {
        g.sample_size(10);
    }
}

fn full_diff(c: &mut Criterion) {
    let extra = slowdown::extra_runs();
    let policy = fixtures::policy();
    for (name, converged) in [("planner/full_diff", true), ("planner/cold_start", false)] {
        let mut g = c.benchmark_group(name);
        for pods in SIZES {
            let cluster = fixtures::cluster(pods, SERVICES);
            let desired = desired_state(&cluster, &policy);
            assert_eq!(
                desired.accounts.len(),
                pods,
                "fixture: every pod is granted"
            );
            assert!(
                desired.problems.is_empty(),
                "fixture: {:?}",
                desired.problems
            );
            let observed = if converged {
                fixtures::converged(&desired.accounts)
            } else {
                Observed::default()
            };
            configure(&mut g, pods);
            g.throughput(Throughput::Elements(pods as u64));
            g.bench_with_input(BenchmarkId::from_parameter(pods), &pods, |b, _| {
                b.iter_custom(|iters| {
                    measure_thread_cpu(iters, || {
                        let mut n = 0;
                        for _ in 0..=extra {
                            let state = desired_state(black_box(&cluster), &policy);
                            n += plan(&state.accounts, black_box(&observed)).len();
                        }
                        n
                    })
                })
            });
        }
        g.finish();
    }
}

fn one_event(c: &mut Criterion) {
    let extra = slowdown::extra_runs();
    let policy = fixtures::policy();
    let mut g = c.benchmark_group("planner/one_event");
    for pods in SIZES {
        let cluster = fixtures::cluster(pods, SERVICES);
        let mut index = Index::new();
        index.apply(ClusterEvent::Services(Change::Relisted(
            cluster.services.values().cloned().collect(),
        )));
        index.apply(ClusterEvent::Secrets(Change::Relisted(
            cluster.secrets.values().cloned().collect(),
        )));
        index.apply(ClusterEvent::Pods(Change::Relisted(
            cluster.pods.values().cloned().collect(),
        )));
        let observed = fixtures::converged(&desired_state(index.cluster(), &policy).accounts);
        // the pod that flaps: Ready → not Ready → Ready …
        let mut flapping = fixtures::pod(pods / 2, SERVICES);
        configure(&mut g, pods);
        g.bench_with_input(BenchmarkId::from_parameter(pods), &pods, |b, _| {
            b.iter_custom(|iters| {
                measure_thread_cpu(iters, || {
                    let mut n = 0;
                    for _ in 0..=extra {
                        flapping.ready = !flapping.ready;
                        let changed =
                            index.apply(ClusterEvent::Pods(Change::Applied(flapping.clone())));
                        assert!(changed);
                        let state = desired_state(index.cluster(), &policy);
                        n += plan(&state.accounts, black_box(&observed)).len();
                    }
                    n
                })
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = full_diff, one_event
}
criterion_main!(benches);

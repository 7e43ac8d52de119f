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
//! - `planner/full_resync/{1000,10000,100000}` — what the engine's periodic resync pays in
//!   pure CPU: `IncrementalDesired::rebuild` of an already warm incremental state (the drift
//!   check against the full recomputation; nothing changed, so nothing comes out dirty) and
//!   `plan` of every account against a converged store (the "full resync" target).
//! - `planner/one_event/{1000,10000,100000}` — the cost of one pod event as the engine pays
//!   it: `Index::apply_delta` of one pod's readiness flip, `IncrementalDesired::apply` (only
//!   the accounts at that pod's IP are recomputed), `take_dirty`, and `plan_dirty` of the dirty
//!   accounts against the converged store (one Drop/Release or Claim/Create/Grant).
//! - `planner/one_event_full/{1000,10000,100000}` — the same event answered by the reference
//!   computation the engine used before it was incremental: `desired_state` over the whole
//!   cluster and `plan` of every account. Kept to show the difference.
//!
//!
//! Memory: at 100,000 pods the bench prints the RSS the engine's pure state adds per pod (the
//! index of pod/service/secret facts plus the incremental desired state with its 100,000
//! accounts), from `/proc/self/status` before and after building them.
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
use podgrant_core::incremental::IncrementalDesired;
use podgrant_core::index::{ClusterEvent, Index};
use podgrant_core::planner::{plan, plan_dirty};
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

/// An index holding the fixture cluster, the converged store, and the pod that flaps.
fn flapping_setup(
    pods: usize,
) -> (
    Index,
    podgrant_core::grant::Observed,
    podgrant_core::model::PodFacts,
) {
    let policy = fixtures::policy();
    let cluster = fixtures::cluster(pods, SERVICES);
    let index = fixtures::index(&cluster);
    let observed = fixtures::converged(&desired_state(index.cluster(), &policy).accounts);
    // the pod that flaps: Ready → not Ready → Ready …
    (index, observed, fixtures::pod(pods / 2, SERVICES))
}

fn one_event(c: &mut Criterion) {
    let extra = slowdown::extra_runs();
    let policy = fixtures::policy();
    let mut g = c.benchmark_group("planner/one_event");
    for pods in SIZES {
        let cluster = fixtures::cluster(pods, SERVICES);
        let observed = fixtures::converged(&desired_state(&cluster, &policy).accounts);
        let rss = || {
            podgrant_harness::cpu::mem_stats()
                .map(|m| m.rss_kib)
                .unwrap_or(0)
        };
        let before = rss();
        let mut index = fixtures::index(&cluster);
        let mut desired = IncrementalDesired::new(policy.clone());
        desired.rebuild(index.cluster());
        if pods == 100_000 {
            let added = rss().saturating_sub(before);
            eprintln!(
                "planner/one_event: the index and incremental desired state of {pods} pods add {added} KiB RSS ({:.0} bytes per pod)",
                added as f64 * 1024.0 / pods as f64
            );
        }
        drop(cluster);
        let mut flapping = fixtures::pod(pods / 2, SERVICES);
        assert_eq!(
            desired.accounts().len(),
            pods,
            "fixture: every pod is granted"
        );
        desired.take_dirty();
        g.bench_with_input(BenchmarkId::from_parameter(pods), &pods, |b, _| {
            b.iter_custom(|iters| {
                measure_thread_cpu(iters, || {
                    let mut n = 0;
                    for _ in 0..=extra {
                        flapping.ready = !flapping.ready;
                        let delta = index
                            .apply_delta(ClusterEvent::Pods(Change::Applied(flapping.clone())));
                        assert!(delta.changed());
                        desired.apply(index.cluster(), &delta);
                        let dirty = desired.take_dirty();
                        assert_eq!(dirty.len(), 1, "one account changes");
                        let plan = plan_dirty(desired.accounts(), black_box(&observed), &dirty);
                        n += plan.actions.len();
                    }
                    n
                })
            })
        });
    }
    g.finish();
}

fn full_resync(c: &mut Criterion) {
    let extra = slowdown::extra_runs();
    let policy = fixtures::policy();
    let mut g = c.benchmark_group("planner/full_resync");
    for pods in SIZES {
        let cluster = fixtures::cluster(pods, SERVICES);
        let observed = fixtures::converged(&desired_state(&cluster, &policy).accounts);
        let index = fixtures::index(&cluster);
        drop(cluster);
        let mut desired = IncrementalDesired::new(policy.clone());
        desired.rebuild(index.cluster());
        desired.take_dirty();
        configure(&mut g, pods);
        g.throughput(Throughput::Elements(pods as u64));
        g.bench_with_input(BenchmarkId::from_parameter(pods), &pods, |b, _| {
            b.iter_custom(|iters| {
                measure_thread_cpu(iters, || {
                    let mut n = 0;
                    for _ in 0..=extra {
                        desired.rebuild(black_box(index.cluster()));
                        assert!(
                            desired.take_dirty().is_empty(),
                            "a warm rebuild changes nothing"
                        );
                        n += plan(desired.accounts(), black_box(&observed)).len();
                    }
                    assert_eq!(n, 0, "converged: nothing to do");
                    n
                })
            })
        });
    }
    g.finish();
}

fn one_event_full(c: &mut Criterion) {
    let extra = slowdown::extra_runs();
    let policy = fixtures::policy();
    let mut g = c.benchmark_group("planner/one_event_full");
    for pods in SIZES {
        let (mut index, observed, mut flapping) = flapping_setup(pods);
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
    targets = full_diff, full_resync, one_event, one_event_full
}
criterion_main!(benches);

//! Instruction-count benches (gungraun, on valgrind's callgrind): planner, pod event decode, watch guard, sim encode — CI's CPU gate.
//!
//! What it measures: instructions executed (and callgrind's other counts), repeatable to a
//! few instructions from run to run and untouched by a busy machine (inputs are fixed; maps
//! in the setup are BTreeMaps; the jitter generator is seeded). `.ci/run` compares the counts
//! with `benches/instruction-limits.json` (scripts/check-instructions.sh):
//! - `planner::one_event::n1000` / `n10000` — the engine's path for one pod event among 1,000 /
//!   10,000 ready pods over 100 services: `Index::apply_delta` of the pod turning not-ready,
//!   `IncrementalDesired::apply`, `take_dirty` and `plan_dirty` against the converged store (one
//!   Drop and one Release come out). Setup (the index and the incremental state) is not counted.
//! - `planner::full_diff::n1000` / `n10000` — the steady-state resync: `desired_state` +
//!   `plan` of the same clusters against their converged store (no action comes out).
//! - `decode::pod_modified` — one watch line (`{"type":"MODIFIED","object":{…pod…}}`) parsed
//!   into `kube::core::WatchEvent<PodWire>` with serde_json and reduced to `PodFacts` by
//!   `Wire::into_facts`: the engine's per-event decode path (`podgrant_core::watch::wire`).
//! - `decode_typed::pod_modified` — the same line through `WatchEvent<k8s_openapi Pod>` and
//!   `podgrant_core::watch::pod_facts`: the typed reference (and what a kube-rs watcher decodes).
//! - `watch_guard::watch_ended::mixed1000` — 1,000 `WatchGuard::watch_ended` decisions (one
//!   watch end in four short with no progress: a backoff delay; the others healthy: a reset).
//! - `sim_encode::line::pod_modified` — the sim's watch encode path: the same pod object as a
//!   `serde_json::Value` written as one `{"type":"MODIFIED","object":…}\n` line
//!   (`podgrant_sim::watch::line`).
//!
//! Run (needs valgrind and the runner of the same version as the library):
//! `cargo install gungraun-runner --version 0.20.0` then
//! `cargo bench -p podgrant-benches --features gungraun --bench instructions`.
//! Off by default (feature `gungraun`) so that a plain `cargo bench` needs neither.

use std::hint::black_box;

use gungraun::prelude::*;
use k8s_openapi::api::core::v1::Pod;
use podgrant_benches::fixtures;
use podgrant_core::desired::desired_state;
use podgrant_core::grant::{Action, Observed};
use podgrant_core::incremental::IncrementalDesired;
use podgrant_core::index::{ClusterEvent, Index};
use podgrant_core::model::Cluster;
use podgrant_core::planner::{plan, plan_dirty};
use podgrant_core::validate::Policy;
use podgrant_core::watch::Change;
use podgrant_core::watch::{WatchConfig, WatchGuard};
use std::time::Duration;

const SERVICES: usize = 100;

/// The engine's state for `pods` pods (index, incremental desired state, converged store) and
/// the event that turns pod 0 not-ready.
fn before_one_event(pods: usize) -> (Index, IncrementalDesired, Observed, ClusterEvent) {
    let policy = fixtures::policy();
    let cluster = fixtures::cluster(pods, SERVICES);
    let observed = fixtures::converged(&desired_state(&cluster, &policy).accounts);
    let mut index = fixtures::index(&cluster);
    let mut desired = IncrementalDesired::new(policy);
    desired.rebuild(index.cluster());
    desired.take_dirty();
    // Warm up on another pod, down and up: the setup freed large maps, and the allocator's
    // first call after that consolidates its free lists (hundreds of thousands of
    // instructions that depend on the setup, not on the event).
    for ready in [false, true] {
        let mut other = fixtures::pod(1, SERVICES);
        other.ready = ready;
        let delta = index.apply_delta(ClusterEvent::Pods(Change::Applied(other)));
        desired.apply(index.cluster(), &delta);
        let dirty = desired.take_dirty();
        black_box(plan_dirty(desired.accounts(), &observed, &dirty));
    }
    let mut pod = fixtures::pod(0, SERVICES);
    pod.ready = false;
    (
        index,
        desired,
        observed,
        ClusterEvent::Pods(Change::Applied(pod)),
    )
}

#[library_benchmark]
#[bench::n1000(before_one_event(1_000))]
#[bench::n10000(before_one_event(10_000))]
fn one_event(
    input: (Index, IncrementalDesired, Observed, ClusterEvent),
) -> (Vec<Action>, Index, IncrementalDesired, Observed) {
    let (mut index, mut desired, observed, event) = input;
    let delta = index.apply_delta(black_box(event));
    desired.apply(index.cluster(), &delta);
    let dirty = desired.take_dirty();
    let actions = black_box(plan_dirty(desired.accounts(), black_box(&observed), &dirty).actions);
    // Returned, not dropped here: tearing down the 10,000-pod state is not the event's cost.
    (actions, index, desired, observed)
}

/// A converged store for `pods` pods and the unchanged cluster: the steady-state resync.
fn converged(pods: usize) -> (Cluster, Observed, Policy) {
    let policy = fixtures::policy();
    let cluster = fixtures::cluster(pods, SERVICES);
    let observed = fixtures::converged(&desired_state(&cluster, &policy).accounts);
    (cluster, observed, policy)
}

#[library_benchmark]
#[bench::n1000(converged(1_000))]
#[bench::n10000(converged(10_000))]
fn full_diff(input: (Cluster, Observed, Policy)) -> Vec<Action> {
    let (cluster, observed, policy) = input;
    let state = desired_state(black_box(&cluster), &policy);
    black_box(plan(&state.accounts, black_box(&observed)))
}

/// The engine's watch guard (default config, seeded jitter) and 1,000 watch ends: every
/// fourth short (10 ms) with no progress, the others long-lived or with events.
fn watch_ends() -> (WatchGuard, Vec<(Duration, u64)>) {
    let cfg = WatchConfig::default();
    let guard = WatchGuard::new(
        cfg.min_healthy,
        podgrant_core::backoff::Backoff::new(cfg.backoff, 7),
    );
    let ends = (0..1_000u64)
        .map(|i| match i % 4 {
            0 => (Duration::from_millis(10), 0),
            1 => (Duration::from_secs(290), 0),
            2 => (Duration::from_millis(10), 3),
            _ => (Duration::from_secs(60), 12),
        })
        .collect();
    (guard, ends)
}

#[library_benchmark]
#[bench::mixed1000(watch_ends())]
fn watch_ended(input: (WatchGuard, Vec<(Duration, u64)>)) -> u128 {
    let (mut guard, ends) = input;
    let mut waited = 0u128;
    for (lived, progress) in black_box(ends) {
        if let Some(d) = guard.watch_ended(lived, progress) {
            waited += d.as_nanos();
        }
    }
    black_box(waited)
}

/// A ready pod with labels, annotations and an IP, as the API server stores it.
fn pod_object() -> serde_json::Value {
    serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web-7d9f8c6b5-x2x4q",
                "namespace": "shop",
                "uid": "2f1c7a7e-4a51-4b1e-9b0e-8d7d2b1f5c3a",
                "resourceVersion": "123456",
                "labels": {"app": "web", "pod-template-hash": "7d9f8c6b5", "tier": "frontend"},
                "annotations": {"churn": "42", "kubectl.kubernetes.io/restartedAt": "2026-11-26T10:00:00Z"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f8c6b5", "uid": "9a7e", "controller": true}]
            },
            "spec": {
                "nodeName": "node-3",
                "containers": [{"name": "web", "image": "registry.example/web:1.2.3", "ports": [{"containerPort": 8080}]}]
            },
            "status": {
                "phase": "Running",
                "podIP": "10.42.3.17",
                "podIPs": [{"ip": "10.42.3.17"}],
                "hostIP": "192.0.2.13",
                "conditions": [
                    {"type": "Initialized", "status": "True"},
                    {"type": "Ready", "status": "True"},
                    {"type": "ContainersReady", "status": "True"},
                    {"type": "PodScheduled", "status": "True"}
                ]
            }
    })
}

/// One MODIFIED watch line for [`pod_object`].
fn pod_line() -> String {
    serde_json::json!({"type": "MODIFIED", "object": pod_object()}).to_string()
}

#[library_benchmark]
#[bench::pod_modified(pod_object())]
fn encode(pod: serde_json::Value) -> usize {
    black_box(podgrant_sim::watch::line("MODIFIED", black_box(&pod))).len()
}

#[library_benchmark]
#[bench::pod_modified(pod_line())]
fn decode(line: String) -> Option<podgrant_core::model::PodFacts> {
    use podgrant_core::watch::wire::{PodWire, Wire};
    match serde_json::from_str::<kube::core::WatchEvent<PodWire>>(black_box(&line)) {
        Ok(kube::core::WatchEvent::Modified(pod)) => Some(black_box(pod.into_facts())),
        _ => None,
    }
}

library_benchmark_group!(name = planner; benchmarks = one_event, full_diff);
#[library_benchmark]
#[bench::pod_modified(pod_line())]
fn decode_typed(line: String) -> Option<podgrant_core::model::PodFacts> {
    match serde_json::from_str::<kube::core::WatchEvent<Pod>>(black_box(&line)) {
        Ok(kube::core::WatchEvent::Modified(pod)) => {
            Some(black_box(podgrant_core::watch::pod_facts(pod)))
        }
        _ => None,
    }
}

library_benchmark_group!(name = event_decode; benchmarks = decode, decode_typed);
library_benchmark_group!(name = watch_guard; benchmarks = watch_ended);
library_benchmark_group!(name = sim_encode; benchmarks = encode);
main!(
    library_benchmark_groups = planner,
    event_decode,
    watch_guard,
    sim_encode
);

//! podgrant-benches: shared helpers for the criterion benches, the pprof profiler, and the regression gate.
//!
//! The map:
//! - [`profiler`] — criterion 0.8 `Profiler` around `pprof::ProfilerGuard` (flamegraph.svg, profile.pb, profile.folded).
//! - [`cpu_clock`] — the calling thread's CPU clock, for `iter_custom` CPU-time benches.
//! - [`fixtures`] — deterministic synthetic clusters for the planner benches.
//! - [`slowdown`] — `PODGRANT_BENCH_SLOWDOWN=N`: the planted slowdown the gate's test catches.
//! - [`live`] — in-process sim + engine (or a bare kube-rs watcher) on a named runtime, CPU-metered.
//! - [`gate`] — the regression gate behind the `podgrant-bench-gate` binary.
//! - [`instr`] — the CPU gate behind `podgrant-instruction-gate`: instruction counts against committed limits.
//!
//! [`criterion`] is the `Criterion` every bench should use, so `--profile-time` profiles.

pub mod cpu_clock;
pub mod fixtures;
pub mod gate;
pub mod instr;
pub mod live;
pub mod profiler;
pub mod slowdown;

/// The `Criterion` configuration every podgrant bench uses: the pprof profiler at
/// [`profiler::DEFAULT_HZ`], so `cargo bench -- --profile-time 5` writes profiles.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default().with_profiler(profiler::PprofProfiler::default())
}

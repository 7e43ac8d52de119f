//! podgrant-harness: runs the engine against the simulated API server and asserts correctness and bounded CPU.
//!
//! The map:
//! - [`capture`] — pprof-rs captures: `profile.pb.gz`, `flamegraph.svg`, pprof-style `top` tables.
//! - [`cpu`] — per-thread CPU accounting of a named runtime, CPU share, CPU per event, RSS.
//! - [`drift`] — `store_drift` steps: the grant store changed behind the engine's back (memory or MySQL).
//! - [`generate`] — proptest scenario generation (state-machine style), fuzz loop, minimal cases as JSON.
//! - [`invariants`] — pure checks: convergence, safety (with grace), ledger consistency, budgets.
//! - [`mysql`] — the one test-MySQL provider: `MYSQL_URL`, local, a self-started mariadbd, Docker; skipped loudly or, required, failed.
//! - [`planted`] — planted engines: core's pipeline fed a view with a planted bug (the oracle's teeth).
//! - [`plot`] — a hand-drawn SVG line chart (CPU share over time for `soak`).
//! - [`probe`] — `probe -- CMD`: any client process through the fault catalogue; per-phase CPU, requests, recovery, verdicts.
//! - [`require`] — `PODGRANT_REQUIRE`: a missing required component (mysql, kubectl, go, …) fails a test instead of skipping it.
//! - [`reproduce`] — `reproduce busy-loop`: the specimen pegs a core, the engine stays near zero, side by side.
//! - [`run_scope`] — one run's unique ledger schema and pod network on a shared MySQL, cleaned up at the end; dead runs' leftovers swept.
//! - [`scenario`] — scenario files (JSON), the runner (paused clock or real time), watchdog, reports.
//! - [`soak`] — the engine in real time under long generated churn and faults; CPU-over-time SVG.
//! - [`specimen`] — the seed's bug kept as a specimen: `watch_pods_by_selector` spins on a closed channel.
//! - [`truth`] — the independent oracle: the expected accounts from the sim's raw JSON, sharing no code with core's decisions.
//! - [`watchdog`] — the one watchdog of paused-clock runs: frozen simulated time is a named spin with a capture.

pub mod capture;
pub mod cpu;
pub mod drift;
pub mod generate;
pub mod invariants;
pub mod mysql;
pub mod planted;
pub mod plot;
pub mod probe;
pub mod reproduce;
pub mod require;
pub mod run_scope;
pub mod scenario;
pub mod soak;
pub mod specimen;
pub mod truth;
pub mod watchdog;

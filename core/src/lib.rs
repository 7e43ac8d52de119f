//! podgrant's watch/grant engine: Services and their ready pods become MySQL accounts.
//!
//! The map (functional core first, imperative shell after):
//! - [`model`] — pods, services and secrets reduced to the facts granting needs.
//! - [`grant`] — accounts, privileges, desired and observed state, and [`grant::Action`] values.
//! - [`validate`] — turns a Service's annotations into a validated [`grant::GrantSpec`].
//! - [`desired`] — pure: cluster facts → the desired set of accounts (plus per-service problems).
//! - [`incremental`] — pure: the same result kept up to date per change, with the accounts it dirtied.
//! - [`planner`] — pure: desired + observed → actions as data. No I/O, no clock.
//! - [`sql`] — pure: actions → batched SQL statements, with validated values and safe quoting.
//! - [`store`] — the [`store::GrantStore`] trait and its MySQL and in-memory adapters.
//!
//! The async shell (watchers, index, engine loop, leader election, metrics, HTTP) lives in
//! the modules added beside these; `main.rs` is the `podgrant` binary.

pub mod backoff; // exponential backoff with seeded jitter
pub mod desired;
pub mod engine; // the async shell: watch → index → debounce → desired → observe → plan → apply
pub mod events; // Kubernetes Events for bad annotations (deduplicated, rate-limited)
pub mod grant;
pub mod http; // /metrics, /healthz, /readyz, /debug/pprof/profile
pub mod incremental; // pure: the desired state updated per change (same result as `desired`)
pub mod index; // the sync index: Cluster facts kept level-correct from watch changes
pub mod leader; // Lease leader election
pub mod metrics; // atomic counters and Prometheus text
pub mod model;
mod native; // the mysql_native_password hash (re-exported as `sql::native_hash`)
pub mod planner;
pub mod profile; // bounded-memory CPU sampler → pprof protobuf
pub mod rate; // pure token bucket: a floor under watch starts
pub mod retry_after; // tower layer: the API server's Retry-After kept through kube's errors
pub mod sql;
pub mod store;
pub mod tenancy; // pure: which namespace may use which user and database names
pub mod validate;
pub mod watch; // guarded list/watch loops (no hot re-watch) → model facts

/// Where this crate was compiled from. Tests compare it with the tree cargo runs them for, so a
/// binary another worktree built into a shared target dir fails loudly instead of testing
/// foreign code (issue 8, cause 5).
#[doc(hidden)]
pub const BUILT_FROM: &str = env!("CARGO_MANIFEST_DIR");

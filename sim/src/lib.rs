//! podgrant-sim: a simulated Kubernetes API server that speaks the real wire protocol and misbehaves on purpose.
//!
//! Start with [`Sim::builder`]; use [`Sim::service`] for an in-process `kube::Client`, or [`Sim::serve_https`] / [`Sim::serve_tcp`] (plain HTTP) for kubectl and other processes.

pub mod admin; // the /_sim admin endpoint (faults, stats, compact)
mod apply; // server-side apply: managedFields, conflicts, removal
pub mod auth; // optional bearer-token auth, checked first on every request
pub mod body; // SimBody: full or streamed response bodies
pub mod clock; // simulated wall clock over tokio time
mod crd; // CustomResourceDefinitions: validation, served versions, pruning
pub mod discovery; // /version, /api, /apis discovery documents
pub mod encoded; // objects encoded once: shared JSON bytes and selector values
pub mod error; // SimError, mapped to metav1.Status codes
pub mod fault; // fault plans, rules, per-request decisions
pub mod fields; // server-side field validation: unknown fields pruned and reported
pub mod flood; // churn generator
mod gc; // garbage-collector decisions over ownerReferences
mod handler; // HTTP handler: verbs on resources
pub mod ipam; // pod IP allocation from a CIDR
pub mod kubeconfig; // kubeconfig writer
pub mod lifecycle; // create/update validation and defaulting
pub mod limits; // bounds on request size, patch work, durations; accept backoff
pub mod list; // list pages and continue tokens
mod microtime; // metav1.MicroTime fields checked and stored as upstream
pub mod openapi; // minimal OpenAPI v3 for kubectl's field-validation probe
pub mod patch; // merge, JSON and strategic merge patches
mod protobuf; // application/vnd.kubernetes.protobuf bodies for built-in kinds
pub mod query; // query-string parsing and list/watch parameters
pub mod resource; // the table of served resources
pub mod routes; // URL routing
mod scale; // the scale subresource of the apps/v1 workloads
pub mod scenario; // scenario steps and files
pub mod selector; // label and field selectors
pub mod server; // TCP serving
pub mod service; // tower::Service for in-process clients
mod sim; // Sim, SimBuilder and shared state
pub mod stats; // request/fault/watch counters
pub mod status; // metav1.Status builders
pub mod store; // object store, RV, event history, broadcast
pub mod table; // meta.k8s.io/v1 Table responses for kubectl get
pub mod tls; // the CA and serving certificate made at start
pub mod validation; // names and labels, as the apiserver validates them
pub mod watch; // watch streams

pub use auth::BearerToken;
pub use body::SimBody;
pub use error::SimError;
pub use fault::{CloseMode, CloseWhen, ErrorBody, Fault, FaultPlan, FaultRule};
pub use flood::{FloodHandle, FloodSpec};
pub use scenario::{Scenario, Step, TimedStep};
pub use server::{Scheme, ServerLimits, SimServer};
pub use service::SimService;
pub use sim::{Sim, SimBuilder};
pub use stats::Stats;
pub use store::StoreSizes;
pub use tls::TlsIdentity;

/// Where this crate was compiled from. Tests compare it with the tree cargo runs them for, so a
/// binary another worktree built into a shared target dir fails loudly instead of testing
/// foreign code (issue 8, cause 5).
#[doc(hidden)]
pub const BUILT_FROM: &str = env!("CARGO_MANIFEST_DIR");

//! The [`GrantStore`] trait — where actions meet a database — and its adapters.

use std::collections::BTreeSet;
use std::future::Future;

use crate::grant::{AccountKey, Action, Observed};

pub mod memory;
pub mod mysql;
pub mod sessions;

pub use memory::MemoryStore;
pub use mysql::MysqlStore;

/// Outcome of applying a batch of actions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// How many of the actions were applied before the store returned.
    pub applied: usize,
    /// SQL statements (or their in-memory equivalent) issued.
    pub statements: u64,
}

/// Errors from a grant store. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying with backoff: connection lost, server down, lock wait, ...
    #[error("transient store error: {0}")]
    Transient(String),
    /// Retrying the same statement will not help (bad privilege name, permission denied, ...).
    #[error("store error: {0}")]
    Permanent(String),
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// Where grants live: MySQL in production, memory in scenarios and benches. Same semantics.
pub trait GrantStore: Send + Sync + 'static {
    /// Reads the ledger and the real state of the accounts it names. `wanted` are the accounts
    /// the engine would like to exist: any of them that exists but is not in the ledger is
    /// reported in [`Observed::foreign`] so that it is never adopted or touched.
    fn observe(
        &self,
        wanted: &BTreeSet<AccountKey>,
    ) -> impl Future<Output = Result<Observed, StoreError>> + Send;

    /// [`GrantStore::observe`] of exactly `keys`: [`Observed::owned`] holds the ledger rows
    /// among them, [`Observed::foreign`] those of them that exist without one. What the engine
    /// reads between full resyncs, so that a reconcile costs in proportion to the accounts that
    /// changed, not to the ledger. The default reads everything and keeps `keys`.
    fn observe_keys(
        &self,
        keys: &BTreeSet<AccountKey>,
    ) -> impl Future<Output = Result<Observed, StoreError>> + Send {
        async move {
            let mut all = self.observe(keys).await?;
            all.owned.retain(|k, _| keys.contains(k));
            all.foreign.retain(|k| keys.contains(k));
            Ok(all)
        }
    }

    /// Applies `actions` in order (batching where it can). On error, the report in the error
    /// path is lost; the engine re-observes and re-plans, which is always safe.
    fn apply(
        &self,
        actions: &[Action],
    ) -> impl Future<Output = Result<ApplyReport, StoreError>> + Send;

    /// Sessions a revoke left open so far because they could not be matched to the revoked
    /// account (see [`sessions`]); a running total.
    fn sessions_unmatched(&self) -> u64 {
        0
    }
}

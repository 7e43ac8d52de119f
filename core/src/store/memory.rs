//! The in-memory [`GrantStore`]: the same ledger-and-accounts semantics as MySQL, for scenarios,
//! benches and property tests, with statement counting, open-session tracking and fault injection.
//!
//! [`MemoryState`] is the pure, synchronous model (usable directly in property tests);
//! [`MemoryStore`] wraps it behind a mutex as an async `GrantStore`. Statements are counted
//! exactly as [`crate::store::mysql::MysqlStore`] would issue them for the same actions (the
//! same [`crate::sql`] builder is run), except that `KILL`s are one per open session here too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::grant::{AccountKey, Action, Observed, ObservedAccount, Privilege};
use crate::model::{ObjectRef, Password};
use crate::sql;
use crate::store::{ApplyReport, GrantStore, StoreError};

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub owner: ObjectRef,
    pub fingerprint: String,
}

/// An account as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountState {
    pub password: Password,
    /// Database → privileges (never an empty set).
    pub grants: BTreeMap<String, BTreeSet<Privilege>>,
}

/// The whole modelled database: podgrant's ledger, every account (owned or not), open sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryState {
    pub ledger: BTreeMap<AccountKey, LedgerRow>,
    pub accounts: BTreeMap<AccountKey, AccountState>,
    /// Open sessions per account (ended by `Drop` and `Revoke`, like `KILL CONNECTION`).
    pub sessions: BTreeMap<AccountKey, u32>,
}

impl MemoryState {
    /// What [`GrantStore::observe`] reports for this state.
    pub fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Observed {
        let owned = self
            .ledger
            .iter()
            .map(|(key, row)| {
                let account = self.accounts.get(key);
                (
                    key.clone(),
                    ObservedAccount {
                        key: key.clone(),
                        owner: row.owner.clone(),
                        fingerprint: row.fingerprint.clone(),
                        exists: account.is_some(),
                        grants: account.map(|a| a.grants.clone()).unwrap_or_default(),
                    },
                )
            })
            .collect();
        let foreign = wanted
            .iter()
            .filter(|k| self.accounts.contains_key(*k) && !self.ledger.contains_key(*k))
            .cloned()
            .collect();
        Observed { owned, foreign }
    }

    /// Applies one action with MySQL's semantics (all statements idempotent).
    pub fn apply_one(&mut self, action: &Action) -> Result<(), StoreError> {
        match action {
            Action::Claim {
                key,
                owner,
                fingerprint,
            } => {
                self.ledger.insert(
                    key.clone(),
                    LedgerRow {
                        owner: owner.clone(),
                        fingerprint: fingerprint.clone(),
                    },
                );
            }
            Action::Create { key, password } => {
                // CREATE USER IF NOT EXISTS, then ALTER USER ... IDENTIFIED BY.
                let acc = self
                    .accounts
                    .entry(key.clone())
                    .or_insert_with(|| AccountState {
                        password: password.clone(),
                        grants: BTreeMap::new(),
                    });
                acc.password = password.clone();
            }
            Action::SetPassword {
                key,
                password,
                fingerprint,
            } => {
                // ALTER USER IF EXISTS, then UPDATE ledger.
                if let Some(acc) = self.accounts.get_mut(key) {
                    acc.password = password.clone();
                }
                if let Some(row) = self.ledger.get_mut(key) {
                    row.fingerprint = fingerprint.clone();
                }
            }
            Action::Grant {
                key,
                database,
                privileges,
            } => {
                let Some(acc) = self.accounts.get_mut(key) else {
                    // MySQL: "You are not allowed to create a user with GRANT" — state moved.
                    return Err(StoreError::Transient(format!(
                        "GRANT to {key}: the account does not exist"
                    )));
                };
                acc.grants
                    .entry(database.clone())
                    .or_default()
                    .extend(privileges.iter().cloned());
            }
            Action::Revoke {
                key,
                database,
                privileges,
            } => {
                if let Some(acc) = self.accounts.get_mut(key) {
                    if let Some(held) = acc.grants.get_mut(database) {
                        held.retain(|p| !privileges.contains(p));
                        if held.is_empty() {
                            acc.grants.remove(database);
                        }
                    }
                }
                // REVOKE, then KILL the account's sessions.
                self.sessions.remove(key);
            }
            Action::Drop { key } => {
                self.accounts.remove(key);
                self.sessions.remove(key);
            }
            Action::Release { key } => {
                self.ledger.remove(key);
            }
        }
        Ok(())
    }

    /// Applies actions in order, stopping at the first error.
    pub fn apply_all(&mut self, actions: &[Action]) -> Result<(), StoreError> {
        actions.iter().try_for_each(|a| self.apply_one(a))
    }
}

/// Faults to inject into the next calls (for harness tests).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Faults {
    fail_applies: u32,
    fail_observes: u32,
    /// The next apply applies only this many actions, then fails with `Transient`.
    crash_after: Option<usize>,
}

/// Counters, readable at any time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Statements a MySQL server would have received (including observe queries).
    pub statements: u64,
    pub observes: u64,
    pub applies: u64,
    pub actions_applied: u64,
    pub injected_failures: u64,
}

#[derive(Debug, Default)]
struct Inner {
    state: MemoryState,
    faults: Faults,
    stats: MemoryStats,
}

/// An in-memory grant store. Cloning shares the same state (keep a clone to inspect it).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    ledger_schema: Arc<str>,
}

/// Statements one observe costs on MySQL: ledger, `mysql.user`, schema privileges (only the
/// ledger query when there is nothing in the ledger and nothing wanted).
pub const OBSERVE_STATEMENTS: u64 = 3;

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            ledger_schema: Arc::from("podgrant"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug elsewhere; the state is still consistent
        // (every mutation is one action), so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the whole modelled database.
    pub fn snapshot(&self) -> MemoryState {
        self.lock().state.clone()
    }

    /// The accounts that exist (owned or not), with their grants.
    pub fn accounts(&self) -> BTreeMap<AccountKey, AccountState> {
        self.lock().state.accounts.clone()
    }

    /// The counters so far.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats.clone()
    }

    /// Statements issued so far (observe and apply).
    pub fn statements(&self) -> u64 {
        self.lock().stats.statements
    }

    /// The next `n` applies fail with `Transient` before doing anything.
    pub fn fail_next_applies(&self, n: u32) {
        self.lock().faults.fail_applies = n;
    }

    /// The next `n` observes fail with `Transient`.
    pub fn fail_next_observes(&self, n: u32) {
        self.lock().faults.fail_observes = n;
    }

    /// The next apply applies only its first `actions` actions, then fails with `Transient`
    /// (a crash or lost connection between statements).
    pub fn crash_after(&self, actions: usize) {
        self.lock().faults.crash_after = Some(actions);
    }

    /// Creates an account podgrant does not own (for tests of "never touch foreign accounts").
    pub fn insert_foreign(&self, key: AccountKey, password: Password) {
        self.lock().state.accounts.insert(
            key,
            AccountState {
                password,
                grants: BTreeMap::new(),
            },
        );
    }

    /// Opens a session as `key` (like a pod connecting); `false` if the account does not exist.
    pub fn open_session(&self, key: &AccountKey) -> bool {
        let mut g = self.lock();
        if !g.state.accounts.contains_key(key) {
            return false;
        }
        *g.state.sessions.entry(key.clone()).or_insert(0) += 1;
        true
    }

    /// Replaces the whole state (for tests that start from a given database).
    pub fn set_state(&self, state: MemoryState) {
        self.lock().state = state;
    }
}

impl GrantStore for MemoryStore {
    async fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        let mut g = self.lock();
        g.stats.observes += 1;
        if g.faults.fail_observes > 0 {
            g.faults.fail_observes -= 1;
            g.stats.injected_failures += 1;
            return Err(StoreError::Transient(
                "injected: connection lost during observe".into(),
            ));
        }
        g.stats.statements += if g.state.ledger.is_empty() && wanted.is_empty() {
            1
        } else {
            OBSERVE_STATEMENTS
        };
        Ok(g.state.observe(wanted))
    }

    async fn apply(&self, actions: &[Action]) -> Result<ApplyReport, StoreError> {
        let mut g = self.lock();
        g.stats.applies += 1;
        if g.faults.fail_applies > 0 {
            g.faults.fail_applies -= 1;
            g.stats.injected_failures += 1;
            return Err(StoreError::Transient(
                "injected: connection lost before apply".into(),
            ));
        }
        let limit = g.faults.crash_after.take();
        let mut report = ApplyReport::default();
        for range in sql::batches(actions) {
            let batch = &actions[range.clone()];
            // Build the real statements: counts them and re-checks every value, as MySQL would.
            let stmts = sql::statements(&self.ledger_schema, batch)
                .map_err(|e| StoreError::Permanent(e.to_string()))?;
            let mut issued = stmts.len() as u64;
            if matches!(batch[0], Action::Drop { .. } | Action::Revoke { .. }) {
                let kills: u32 = batch
                    .iter()
                    .filter_map(|a| g.state.sessions.get(a.key()))
                    .sum();
                issued += u64::from(kills);
            }
            for (i, action) in batch.iter().enumerate() {
                if limit.is_some_and(|l| report.applied >= l) {
                    g.stats.statements += report.statements + if i > 0 { issued } else { 0 };
                    g.stats.actions_applied += report.applied as u64;
                    g.stats.injected_failures += 1;
                    return Err(StoreError::Transient(format!(
                        "injected: connection lost after {} actions",
                        report.applied
                    )));
                }
                if let Err(e) = g.state.apply_one(action) {
                    g.stats.statements += report.statements + issued;
                    g.stats.actions_applied += report.applied as u64;
                    return Err(e);
                }
                report.applied += 1;
            }
            report.statements += issued;
        }
        g.stats.statements += report.statements;
        g.stats.actions_applied += report.applied as u64;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fingerprint;
    use crate::grant::{Desired, DesiredAccount};
    use crate::planner::plan;

    fn desired(n: u8) -> Desired {
        (1..=n)
            .map(|i| {
                let key = AccountKey {
                    user: "app".into(),
                    host: std::net::IpAddr::from([10, 0, 0, i]),
                };
                (
                    key.clone(),
                    DesiredAccount {
                        key,
                        owner: ObjectRef::new("ns", "svc"),
                        pod: ObjectRef::new("ns", format!("p{i}")),
                        database: "appdb".into(),
                        privileges: BTreeSet::from([Privilege("SELECT".into())]),
                        password: Password::new("pw"),
                        fingerprint: fingerprint("app", "pw"),
                    },
                )
            })
            .collect()
    }

    async fn converge(store: &MemoryStore, d: &Desired) -> usize {
        let wanted: BTreeSet<AccountKey> = d.keys().cloned().collect();
        for round in 0..5 {
            let actions = plan(d, &store.observe(&wanted).await.unwrap());
            if actions.is_empty() {
                return round;
            }
            store.apply(&actions).await.unwrap();
        }
        panic!("no convergence");
    }

    #[tokio::test(start_paused = true)]
    async fn statements_are_counted_per_batch_not_per_account() {
        let store = MemoryStore::default();
        let d = desired(50);
        let wanted: BTreeSet<AccountKey> = d.keys().cloned().collect();
        let actions = plan(&d, &store.observe(&wanted).await.unwrap());
        assert_eq!(actions.len(), 150);
        let report = store.apply(&actions).await.unwrap();
        // Claim (1), CREATE + ALTER (2), GRANT (1).
        assert_eq!(report.statements, 4);
        assert_eq!(report.applied, 150);
        assert_eq!(store.statements(), OBSERVE_STATEMENTS + 4);
        assert_eq!(store.accounts().len(), 50);
        assert_eq!(converge(&store, &d).await, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn injected_failures_then_convergence() {
        let store = MemoryStore::new();
        let d = desired(5);
        let wanted: BTreeSet<AccountKey> = d.keys().cloned().collect();
        store.fail_next_observes(1);
        assert!(store.observe(&wanted).await.unwrap_err().is_transient());
        let actions = plan(&d, &store.observe(&wanted).await.unwrap());
        store.fail_next_applies(2);
        assert!(store.apply(&actions).await.unwrap_err().is_transient());
        assert!(store.apply(&actions).await.unwrap_err().is_transient());
        assert!(
            store.accounts().is_empty(),
            "nothing applied by a failed apply"
        );
        store.crash_after(7);
        assert!(store.apply(&actions).await.unwrap_err().is_transient());
        let snap = store.snapshot();
        assert_eq!(snap.ledger.len(), 5);
        assert_eq!(snap.accounts.len(), 2, "a prefix of the plan was applied");
        assert_eq!(converge(&store, &d).await, 1);
        assert_eq!(store.stats().injected_failures, 4);
        for acc in store.accounts().values() {
            assert_eq!(acc.grants["appdb"].len(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn drop_ends_sessions_and_foreign_is_untouched() {
        let store = MemoryStore::new();
        let d = desired(2);
        converge(&store, &d).await;
        let k1 = d.keys().next().unwrap().clone();
        assert!(store.open_session(&k1));
        assert!(store.open_session(&k1));
        let foreign = AccountKey {
            user: "other".into(),
            host: "10.0.0.9".parse().unwrap(),
        };
        store.insert_foreign(foreign.clone(), Password::new("x"));
        let before = store.statements();
        converge(&store, &Desired::new()).await;
        // observe, DROP + FindSessions + 2 KILLs, DELETE, observe of an empty ledger
        assert_eq!(store.statements() - before, OBSERVE_STATEMENTS + 5 + 1);
        let snap = store.snapshot();
        assert!(snap.sessions.is_empty());
        assert_eq!(snap.accounts.keys().collect::<Vec<_>>(), vec![&foreign]);
        assert!(snap.ledger.is_empty());
        assert!(!store.open_session(&k1));
    }
}

//! The in-memory [`GrantStore`]: the same ledger-and-accounts semantics as MySQL, for scenarios,
//! benches and property tests, with statement counting, open-session tracking and fault injection.
//!
//! [`MemoryState`] is the pure, synchronous model (usable directly in property tests);
//! [`MemoryStore`] wraps it behind a mutex as an async `GrantStore`. Every batch runs the same
//! [`crate::sql`] builder [`crate::store::mysql::MysqlStore`] runs, so statements are counted
//! exactly as MySQL would receive them, and the session side is *interpreted from the emitted
//! text*: `DROP USER` removes the accounts its text names; the `FindSessions` query returns the
//! process-list rows of the users its text names; the accounts the `DROP USER`/`REVOKE` text
//! names go through the same [`sessions::select`] MySQL uses; and each `KILL CONNECTION <id>`
//! it produces ends that row's session. A builder bug (a wrong host, a missing user, a kill
//! of the wrong row) therefore shows in memory runs too. Sessions are modelled as a server with
//! `skip_name_resolve` shows them: `user`, `ip:port`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::grant::{AccountKey, Action, Credential, Observed, ObservedAccount, Privilege};
use crate::model::{ObjectRef, Password};
use crate::sql::{self, Statement, StatementKind};
use crate::store::sessions::{self, ProcessRow};
use crate::store::{ApplyReport, GrantStore, StoreError};

/// The ledger schema the memory model's statements name.
const SCHEMA: &str = "podgrant";

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
    /// Open sessions per (user, client IP) — usually the account of that key, but a session
    /// of `'user'@'%'` from that IP has the same key, as in a real process list. Ended by the
    /// `KILL CONNECTION`s a `Drop` or `Revoke` batch produces.
    pub sessions: BTreeMap<AccountKey, u32>,
}

/// What one batch did: statements MySQL would have received, sessions left open unmatched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub statements: u64,
    /// Always 0 in this model (every row has an IP); kept so both stores count alike.
    pub sessions_unmatched: u64,
}

impl MemoryState {
    /// What [`GrantStore::observe`] reports for this state.
    pub fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Observed {
        let owned = self
            .ledger
            .keys()
            .filter_map(|key| self.observed_account(key))
            .collect();
        Observed {
            owned,
            foreign: self.foreign_among(wanted.iter()),
        }
    }

    /// What [`GrantStore::observe_keys`] reports for this state: only `keys`.
    pub fn observe_keys(&self, keys: &BTreeSet<AccountKey>) -> Observed {
        let owned = keys
            .iter()
            .filter_map(|key| self.observed_account(key))
            .collect();
        Observed {
            owned,
            foreign: self.foreign_among(keys.iter()),
        }
    }

    /// The ledger row of `key` joined with its account, if the ledger has it.
    fn observed_account(&self, key: &AccountKey) -> Option<(AccountKey, ObservedAccount)> {
        let row = self.ledger.get(key)?;
        let account = self.accounts.get(key);
        Some((
            key.clone(),
            ObservedAccount {
                key: key.clone(),
                owner: row.owner.clone(),
                fingerprint: row.fingerprint.clone(),
                exists: account.is_some(),
                grants: account.map(|a| a.grants.clone()).unwrap_or_default(),
                // Modelled as MariaDB stores it: the native hash of the password.
                credential: account.map_or(Credential::Unknown, |a| {
                    Credential::Native(a.password.native_hash().to_string())
                }),
            },
        ))
    }

    fn foreign_among<'a>(
        &self,
        keys: impl Iterator<Item = &'a AccountKey>,
    ) -> BTreeSet<AccountKey> {
        keys.filter(|k| self.accounts.contains_key(*k) && !self.ledger.contains_key(*k))
            .cloned()
            .collect()
    }

    /// Applies one action with MySQL's semantics (all statements idempotent).
    pub fn apply_one(&mut self, action: &Action) -> Result<(), StoreError> {
        self.apply_batch(std::slice::from_ref(action)).map(|_| ())
    }

    /// Applies actions in order (batched as MySQL would be), stopping at the first error.
    pub fn apply_all(&mut self, actions: &[Action]) -> Result<(), StoreError> {
        for range in sql::batches(actions) {
            self.apply_batch(&actions[range])?;
        }
        Ok(())
    }

    /// Applies one batch (a range of [`sql::batches`]) by building its statements and
    /// interpreting them.
    pub fn apply_batch(&mut self, batch: &[Action]) -> Result<BatchOutcome, StoreError> {
        let stmts =
            sql::statements(SCHEMA, batch).map_err(|e| StoreError::Permanent(e.to_string()))?;
        let mut issued = 0;
        let mut unmatched = 0;
        // The accounts named by the last DROP USER / REVOKE: whose sessions FindSessions ends.
        let mut revoked: BTreeSet<AccountKey> = BTreeSet::new();
        for st in &stmts {
            issued += 1;
            match st.kind {
                StatementKind::DropUsers => {
                    revoked = accounts_named(st, "DROP USER IF EXISTS ")?;
                    for key in &revoked {
                        self.accounts.remove(key);
                    }
                }
                StatementKind::Revoke => {
                    revoked = accounts_named(st, " FROM ")?;
                    for action in batch {
                        self.apply_effect(action)?;
                    }
                }
                StatementKind::FindSessions => {
                    let rows = self.process_list(&users_named(st)?);
                    let selection = sessions::select(&rows, &revoked, None);
                    unmatched += selection.unmatched.len() as u64;
                    for id in selection.kill {
                        issued += 1;
                        self.kill(&sql::kill_session(id), &rows)?;
                    }
                }
                // One statement carries the whole batch's effect: apply it once, at the first.
                StatementKind::CreateUsers
                | StatementKind::ClaimRows
                | StatementKind::ReleaseRows
                | StatementKind::Grant => {
                    for action in batch {
                        self.apply_effect(action)?;
                    }
                }
                StatementKind::SetPasswords if matches!(batch[0], Action::SetPassword { .. }) => {
                    for action in batch {
                        self.apply_effect(action)?;
                    }
                }
                StatementKind::SetPasswords
                | StatementKind::UpdateFingerprints
                | StatementKind::KillSession => {}
            }
        }
        Ok(BatchOutcome {
            statements: issued,
            sessions_unmatched: unmatched,
        })
    }

    /// The account and ledger effect of one action (sessions are the statements' business).
    fn apply_effect(&mut self, action: &Action) -> Result<(), StoreError> {
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
            }
            Action::Drop { .. } => {}
            Action::Release { key } => {
                self.ledger.remove(key);
            }
        }
        Ok(())
    }

    /// The process list a `FindSessions` query returns for these users: one row per session,
    /// ids in a fixed order, hosts as `ip:port`.
    fn process_list(&self, users: &BTreeSet<String>) -> Vec<ProcessRow> {
        let mut rows = Vec::new();
        let mut id = 0u64;
        for (key, n) in &self.sessions {
            for _ in 0..*n {
                id += 1;
                if !users.contains(&key.user) {
                    continue;
                }
                let port = 40_000 + id % 20_000;
                let host = match key.host {
                    std::net::IpAddr::V4(ip) => format!("{ip}:{port}"),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
                };
                rows.push(ProcessRow {
                    id,
                    user: Some(key.user.clone()),
                    host: Some(host),
                });
            }
        }
        rows
    }

    /// Interprets `KILL CONNECTION <id>` against the rows it was chosen from.
    fn kill(&mut self, st: &Statement, rows: &[ProcessRow]) -> Result<(), StoreError> {
        let id: u64 = st
            .text
            .strip_prefix("KILL CONNECTION ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| uninterpretable(st))?;
        // Unknown thread id: already gone, like MySQL's 1094 (tolerated by the MySQL store too).
        let Some(row) = rows.iter().find(|r| r.id == id) else {
            return Ok(());
        };
        let (Some(user), Some(host)) = (&row.user, &row.host) else {
            return Ok(());
        };
        let Ok(ip) = sql::processlist_host(host).parse() else {
            return Ok(());
        };
        let key = AccountKey {
            user: user.clone(),
            host: ip,
        };
        if let Some(n) = self.sessions.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.sessions.remove(&key);
            }
        }
        Ok(())
    }
}

fn uninterpretable(st: &Statement) -> StoreError {
    // The kind only: the text of some statements holds password hashes.
    StoreError::Permanent(format!(
        "memory store cannot interpret a {:?} statement",
        st.kind
    ))
}

/// The accounts `'user'@'ip', ...` that follow `marker` in a statement's text.
fn accounts_named(st: &Statement, marker: &str) -> Result<BTreeSet<AccountKey>, StoreError> {
    let (_, list) = st
        .text
        .rsplit_once(marker)
        .ok_or_else(|| uninterpretable(st))?;
    list.split(", ")
        .map(|grantee| {
            let (user, host) = sql::parse_grantee(grantee).ok_or_else(|| uninterpretable(st))?;
            let host = host.parse().map_err(|_| uninterpretable(st))?;
            Ok(AccountKey { user, host })
        })
        .collect()
}

/// The user names of a `... WHERE USER IN ('a', 'b')` query.
fn users_named(st: &Statement) -> Result<BTreeSet<String>, StoreError> {
    let (_, list) = st
        .text
        .rsplit_once(" IN (")
        .ok_or_else(|| uninterpretable(st))?;
    let list = list.strip_suffix(')').ok_or_else(|| uninterpretable(st))?;
    list.split(", ")
        .map(|u| {
            u.strip_prefix('\'')
                .and_then(|u| u.strip_suffix('\''))
                .map(str::to_string)
                .ok_or_else(|| uninterpretable(st))
        })
        .collect()
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
    /// Sessions a revoke left open, unmatched (see [`crate::store::sessions`]).
    pub sessions_unmatched: u64,
}

#[derive(Debug, Default)]
struct Inner {
    state: MemoryState,
    faults: Faults,
    stats: MemoryStats,
}

impl Inner {
    /// Counts an observe; fails it when a failure was injected.
    fn observe_fault(&mut self) -> Result<(), StoreError> {
        self.stats.observes += 1;
        if self.faults.fail_observes > 0 {
            self.faults.fail_observes -= 1;
            self.stats.injected_failures += 1;
            return Err(StoreError::Transient(
                "injected: connection lost during observe".into(),
            ));
        }
        Ok(())
    }
}

/// An in-memory grant store. Cloning shares the same state (keep a clone to inspect it).
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
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

    /// Opens a session as `key.user` from `key.host` whether or not that account exists (a
    /// client of a `'user'@'%'` account, say, connecting from that IP).
    pub fn open_session_from(&self, key: &AccountKey) {
        *self.lock().state.sessions.entry(key.clone()).or_insert(0) += 1;
    }

    /// Replaces the whole state (for tests that start from a given database).
    pub fn set_state(&self, state: MemoryState) {
        self.lock().state = state;
    }
}

impl GrantStore for MemoryStore {
    async fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        let mut g = self.lock();
        g.observe_fault()?;
        g.stats.statements += if g.state.ledger.is_empty() && wanted.is_empty() {
            1
        } else {
            OBSERVE_STATEMENTS
        };
        Ok(g.state.observe(wanted))
    }

    async fn observe_keys(&self, keys: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        let mut g = self.lock();
        g.observe_fault()?;
        g.stats.statements += if keys.is_empty() {
            0
        } else {
            OBSERVE_STATEMENTS
        };
        Ok(g.state.observe_keys(keys))
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
            let mut batch = &actions[range];
            let crash = limit.is_some_and(|l| report.applied + batch.len() > l);
            if let Some(l) = limit.filter(|_| crash) {
                batch = &batch[..l - report.applied];
            }
            let result = if batch.is_empty() {
                Ok(BatchOutcome::default())
            } else {
                g.state.apply_batch(batch)
            };
            match result {
                Ok(outcome) => {
                    report.statements += outcome.statements;
                    g.stats.sessions_unmatched += outcome.sessions_unmatched;
                    report.applied += batch.len();
                }
                Err(e) => {
                    g.stats.statements += report.statements;
                    g.stats.actions_applied += report.applied as u64;
                    return Err(e);
                }
            }
            if crash {
                g.stats.statements += report.statements;
                g.stats.actions_applied += report.applied as u64;
                g.stats.injected_failures += 1;
                return Err(StoreError::Transient(format!(
                    "injected: connection lost after {} actions",
                    report.applied
                )));
            }
        }
        g.stats.statements += report.statements;
        g.stats.actions_applied += report.applied as u64;
        Ok(report)
    }

    fn sessions_unmatched(&self) -> u64 {
        self.lock().stats.sessions_unmatched
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

    #[tokio::test(start_paused = true)]
    async fn a_revoke_ends_exactly_the_dropped_accounts_sessions() {
        let store = MemoryStore::new();
        let d = desired(2);
        converge(&store, &d).await;
        let mut keys = d.keys().cloned();
        let (k1, k2) = (keys.next().unwrap(), keys.next().unwrap());
        let unowned = AccountKey {
            user: "app".into(),
            host: "10.0.0.9".parse().unwrap(),
        };
        let other_user = AccountKey {
            user: "dba".into(),
            host: k1.host,
        };
        assert!(store.open_session(&k1));
        assert!(store.open_session(&k2));
        store.open_session_from(&unowned);
        store.open_session_from(&other_user);
        // k1's pod goes: only k1's session is killed.
        let only_k2: Desired = d.clone().into_iter().filter(|(k, _)| *k == k2).collect();
        let before = store.statements();
        converge(&store, &only_k2).await;
        let sessions = store.snapshot().sessions;
        assert_eq!(
            sessions.keys().collect::<Vec<_>>(),
            vec![&k2, &unowned, &other_user]
        );
        // observe, DROP + FindSessions + 1 KILL, DELETE, observe
        assert_eq!(store.statements() - before, 2 * OBSERVE_STATEMENTS + 4);
        assert_eq!(store.sessions_unmatched(), 0);
    }
}

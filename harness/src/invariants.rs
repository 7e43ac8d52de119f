//! Pure invariant checks: convergence, safety, ledger consistency and budgets, as data.
//!
//! Every check takes plain values — the cluster's truth (from the sim), the desired set computed
//! from it, the grant store's state, counters — and returns the [`Violation`]s it found. Time
//! enters only as arguments (the [`SafetyTracker`] is told "now"), so the checks run the same
//! under tokio's paused clock and in real time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use podgrant_core::grant::{AccountKey, Desired, Observed};
use podgrant_core::model::{Cluster, ObjectRef};
use podgrant_core::store::memory::MemoryState;
use serde::{Deserialize, Serialize};

/// The invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// After the last step and quiescence, the store equals the desired set exactly.
    Convergence,
    /// Past the grace period, no account for an IP whose current pod its service does not select.
    Safety,
    /// Ledger and accounts agree; foreign accounts untouched.
    Ledger,
    /// Watch (re)connects per second over budget.
    RewatchRate,
    /// Counted work (requests, reconciles, statements) per simulated second over budget.
    WorkRate,
    /// CPU share of the engine's threads while the cluster is idle, over budget.
    IdleCpu,
    /// CPU µs per event during a flood, over budget.
    CpuPerEvent,
    /// Resident memory grew more than allowed.
    MemoryGrowth,
    /// Simulated time stopped advancing (a busy loop under the paused clock), or the
    /// process burned CPU without progress.
    BusyLoop,
}

impl Invariant {
    pub fn name(self) -> &'static str {
        match self {
            Invariant::Convergence => "convergence",
            Invariant::Safety => "safety",
            Invariant::Ledger => "ledger",
            Invariant::RewatchRate => "rewatch_rate",
            Invariant::WorkRate => "work_rate",
            Invariant::IdleCpu => "idle_cpu",
            Invariant::CpuPerEvent => "cpu_per_event",
            Invariant::MemoryGrowth => "memory_growth",
            Invariant::BusyLoop => "busy_loop",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One broken invariant, with a human-readable explanation (never a password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Self {
        Self {
            invariant,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.invariant, self.detail)
    }
}

/// Convergence: the owned accounts are exactly the desired ones, each with the desired
/// password, privileges (on exactly the desired database) and ledger owner/fingerprint.
pub fn check_convergence(desired: &Desired, state: &MemoryState) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |d: String| Violation::new(Invariant::Convergence, d);
    for (key, want) in desired {
        let Some(row) = state.ledger.get(key) else {
            out.push(v(format!(
                "{key} is desired (for {}) but not in the ledger",
                want.owner
            )));
            continue;
        };
        if row.owner != want.owner {
            out.push(v(format!(
                "{key}: ledger owner {} but desired for {}",
                row.owner, want.owner
            )));
        }
        if row.fingerprint != want.fingerprint {
            out.push(v(format!("{key}: ledger password fingerprint is stale")));
        }
        let Some(acct) = state.accounts.get(key) else {
            out.push(v(format!(
                "{key} is desired (for {}) but does not exist",
                want.owner
            )));
            continue;
        };
        if acct.password != want.password {
            out.push(v(format!("{key}: password differs from the Secret's")));
        }
        let want_grants: BTreeMap<String, _> =
            [(want.database.clone(), want.privileges.clone())].into();
        if acct.grants != want_grants {
            out.push(v(format!(
                "{key}: grants {:?} but desired {:?}",
                acct.grants, want_grants
            )));
        }
    }
    for key in state.ledger.keys() {
        if !desired.contains_key(key) {
            let exists = if state.accounts.contains_key(key) {
                "exists"
            } else {
                "ledger row only"
            };
            out.push(v(format!("{key} is not desired but is owned ({exists})")));
        }
    }
    out
}

/// Convergence against a store read back through [`podgrant_core::store::GrantStore::observe`]
/// (the MySQL case: passwords are compared through the ledger fingerprint).
pub fn check_convergence_observed(desired: &Desired, observed: &Observed) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |d: String| Violation::new(Invariant::Convergence, d);
    for (key, want) in desired {
        match observed.owned.get(key) {
            None => out.push(v(format!(
                "{key} is desired (for {}) but not owned",
                want.owner
            ))),
            Some(o) => {
                if !o.exists {
                    out.push(v(format!("{key} is in the ledger but does not exist")));
                }
                if o.owner != want.owner {
                    out.push(v(format!(
                        "{key}: ledger owner {} but desired for {}",
                        o.owner, want.owner
                    )));
                }
                if o.fingerprint != want.fingerprint {
                    out.push(v(format!("{key}: ledger password fingerprint is stale")));
                }
                let want_grants: BTreeMap<String, _> =
                    [(want.database.clone(), want.privileges.clone())].into();
                if o.grants != want_grants {
                    out.push(v(format!(
                        "{key}: grants {:?} but desired {:?}",
                        o.grants, want_grants
                    )));
                }
            }
        }
    }
    for key in observed.owned.keys() {
        if !desired.contains_key(key) {
            out.push(v(format!("{key} is not desired but is owned")));
        }
    }
    out
}

/// Why an owned account is unsafe right now, if it is (pure).
pub fn unsafe_reason(cluster: &Cluster, owner: &ObjectRef, host: IpAddr) -> Option<String> {
    let pods_here: Vec<_> = cluster
        .pods
        .values()
        .filter(|p| p.grantable_ip() == Some(host))
        .collect();
    let Some(svc) = cluster.services.get(owner) else {
        return Some(format!("its service {owner} no longer exists"));
    };
    if pods_here.is_empty() {
        return Some(format!("no grantable pod has IP {host}"));
    }
    let selected = pods_here
        .iter()
        .any(|p| p.id.namespace == owner.namespace && svc.selects(&p.labels));
    if selected {
        None
    } else {
        let names: Vec<String> = pods_here.iter().map(|p| p.id.to_string()).collect();
        Some(format!(
            "the pod at {host} ({}) is not selected by {owner}",
            names.join(", ")
        ))
    }
}

/// Tracks how long each owned account has been unsafe; a violation once past the grace period
/// (the engine's debounce plus a reconcile's latency).
#[derive(Debug, Clone, Default)]
pub struct SafetyTracker {
    /// Account → (since when unsafe, reason).
    unsafe_since: BTreeMap<AccountKey, (Duration, String)>,
    /// Violations already reported (one per account).
    reported: BTreeSet<AccountKey>,
}

impl SafetyTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the current state at time `now` (any monotonic clock, as an offset).
    pub fn observe(
        &mut self,
        now: Duration,
        grace: Duration,
        cluster: &Cluster,
        state: &MemoryState,
    ) -> Vec<Violation> {
        let mut current = BTreeMap::new();
        for (key, row) in &state.ledger {
            if !state.accounts.contains_key(key) {
                continue; // a ledger row without an account grants nothing
            }
            if let Some(reason) = unsafe_reason(cluster, &row.owner, key.host) {
                current.insert(key.clone(), reason);
            }
        }
        self.unsafe_since.retain(|k, _| current.contains_key(k));
        let mut out = Vec::new();
        for (key, reason) in current {
            let since = self
                .unsafe_since
                .entry(key.clone())
                .or_insert((now, reason.clone()))
                .0;
            if now.saturating_sub(since) > grace && self.reported.insert(key.clone()) {
                out.push(Violation::new(
                    Invariant::Safety,
                    format!(
                        "{key} unsafe for {:?} (> grace {grace:?}): {reason}",
                        now.saturating_sub(since)
                    ),
                ));
            }
        }
        out
    }

    /// Accounts unsafe right now (inside or past the grace period).
    pub fn currently_unsafe(&self) -> usize {
        self.unsafe_since.len()
    }
}

/// Ledger consistency: every ledger row with an account has exactly one owner; accounts not in
/// the ledger are exactly the foreign ones the scenario created, untouched; after quiescence no
/// ledger row lacks its account.
pub fn check_ledger(
    state: &MemoryState,
    foreign_before: &MemoryState,
    quiescent: bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (key, acct) in &state.accounts {
        if state.ledger.contains_key(key) {
            continue;
        }
        match foreign_before.accounts.get(key) {
            None => out.push(Violation::new(
                Invariant::Ledger,
                format!("{key} exists without a ledger row and is not a foreign account"),
            )),
            Some(before) if before != acct => out.push(Violation::new(
                Invariant::Ledger,
                format!("foreign account {key} was modified"),
            )),
            Some(_) => {}
        }
    }
    for key in foreign_before.accounts.keys() {
        if !state.accounts.contains_key(key) {
            out.push(Violation::new(
                Invariant::Ledger,
                format!("foreign account {key} was dropped"),
            ));
        }
        if state.ledger.contains_key(key) {
            out.push(Violation::new(
                Invariant::Ledger,
                format!("foreign account {key} was adopted into the ledger"),
            ));
        }
    }
    if quiescent {
        for key in state.ledger.keys() {
            if !state.accounts.contains_key(key) {
                out.push(Violation::new(
                    Invariant::Ledger,
                    format!("ledger row {key} has no account after quiescence"),
                ));
            }
        }
    }
    out
}

/// Budgets a scenario sets. `None`: not checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// Max watch requests (all resources) per simulated second, averaged over the run.
    pub max_rewatch_per_sec: Option<f64>,
    /// Max requests of any kind to the sim per simulated second.
    pub max_requests_per_sec: Option<f64>,
    /// Max reconciles per simulated second.
    pub max_reconciles_per_sec: Option<f64>,
    /// Max store statements per simulated second.
    pub max_statements_per_sec: Option<f64>,
    /// Max CPU share of the engine's threads while idle (real-time runs).
    pub max_idle_cpu_share: Option<f64>,
    /// Max CPU µs per event during floods (real-time runs).
    pub max_cpu_us_per_event: Option<f64>,
    /// Max RSS growth in KiB over the run (real-time runs).
    pub max_rss_growth_kib: Option<u64>,
}

/// Counted work over an interval of simulated time.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkCounts {
    #[serde(with = "humantime_serde")]
    pub elapsed: Duration,
    pub requests: u64,
    pub watch_requests: u64,
    pub list_requests: u64,
    pub reconciles: u64,
    pub statements: u64,
    pub events: u64,
}

impl WorkCounts {
    pub fn per_sec(&self, n: u64) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s <= 0.0 {
            n as f64
        } else {
            n as f64 / s
        }
    }
}

/// Checks the counted-work budgets (pure).
pub fn check_work(b: &Budgets, w: &WorkCounts) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut check = |max: Option<f64>, n: u64, what: &str, inv: Invariant| {
        if let Some(max) = max {
            let rate = w.per_sec(n);
            if rate > max {
                out.push(Violation::new(
                    inv,
                    format!(
                        "{what}: {rate:.2}/s over {:?} ({n} total) > budget {max}/s",
                        w.elapsed
                    ),
                ));
            }
        }
    };
    check(
        b.max_rewatch_per_sec,
        w.watch_requests,
        "watch requests",
        Invariant::RewatchRate,
    );
    check(
        b.max_requests_per_sec,
        w.requests,
        "requests to the API server",
        Invariant::WorkRate,
    );
    check(
        b.max_reconciles_per_sec,
        w.reconciles,
        "reconciles",
        Invariant::WorkRate,
    );
    check(
        b.max_statements_per_sec,
        w.statements,
        "store statements",
        Invariant::WorkRate,
    );
    out
}

/// Checks the real-time CPU and memory budgets (pure).
pub fn check_cpu(
    b: &Budgets,
    idle_share: Option<f64>,
    cpu_us_per_event: Option<f64>,
    rss_growth_kib: Option<i64>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    if let (Some(max), Some(share)) = (b.max_idle_cpu_share, idle_share) {
        if share > max {
            out.push(Violation::new(
                Invariant::IdleCpu,
                format!("idle CPU share {share:.3} of a core > budget {max}"),
            ));
        }
    }
    if let (Some(max), Some(us)) = (b.max_cpu_us_per_event, cpu_us_per_event) {
        if us > max {
            out.push(Violation::new(
                Invariant::CpuPerEvent,
                format!("{us:.1} CPU-µs per event > budget {max}"),
            ));
        }
    }
    if let (Some(max), Some(g)) = (b.max_rss_growth_kib, rss_growth_kib) {
        if g > max as i64 {
            out.push(Violation::new(
                Invariant::MemoryGrowth,
                format!("RSS grew {g} KiB > budget {max} KiB"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgrant_core::grant::{DesiredAccount, Privilege};
    use podgrant_core::model::{Password, PodFacts, ServiceFacts};
    use podgrant_core::store::memory::{AccountState, LedgerRow};

    fn key(ip: &str) -> AccountKey {
        AccountKey {
            user: "app".into(),
            host: ip.parse().unwrap(),
        }
    }

    fn desired_one(ip: &str, owner: &str) -> Desired {
        let k = key(ip);
        [(
            k.clone(),
            DesiredAccount {
                key: k,
                owner: ObjectRef::new("ns", owner),
                pod: ObjectRef::new("ns", "p"),
                database: "db".into(),
                privileges: [Privilege("SELECT".into())].into(),
                password: Password::new("pw"),
                fingerprint: "fp".into(),
            },
        )]
        .into()
    }

    fn state_from(d: &Desired) -> MemoryState {
        let mut s = MemoryState::default();
        for (k, a) in d {
            s.ledger.insert(
                k.clone(),
                LedgerRow {
                    owner: a.owner.clone(),
                    fingerprint: a.fingerprint.clone(),
                },
            );
            s.accounts.insert(
                k.clone(),
                AccountState {
                    password: a.password.clone(),
                    grants: [(a.database.clone(), a.privileges.clone())].into(),
                },
            );
        }
        s
    }

    #[test]
    fn convergence_exact_match_and_each_kind_of_drift() {
        let d = desired_one("10.0.0.1", "svc");
        let s = state_from(&d);
        assert!(check_convergence(&d, &s).is_empty());
        assert_eq!(
            check_convergence(&Desired::new(), &s).len(),
            1,
            "extra account"
        );
        assert_eq!(
            check_convergence(&d, &MemoryState::default()).len(),
            1,
            "missing"
        );
        let mut wrong = s.clone();
        wrong.accounts.get_mut(&key("10.0.0.1")).unwrap().grants =
            [("db".into(), [Privilege("INSERT".into())].into())].into();
        let v = check_convergence(&d, &wrong);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].invariant, Invariant::Convergence);
        assert!(v[0].detail.contains("grants"), "{}", v[0]);
        let mut pw = s;
        pw.accounts.get_mut(&key("10.0.0.1")).unwrap().password = Password::new("other");
        let v = check_convergence(&d, &pw);
        assert!(!v[0].detail.contains("other"), "no password in messages");
    }

    fn cluster(pod_labels: &[(&str, &str)], ip: &str) -> Cluster {
        let mut c = Cluster::default();
        let svc = ServiceFacts {
            id: ObjectRef::new("ns", "svc"),
            uid: "u".into(),
            selector: Some([("app".to_string(), "a".to_string())].into()),
            annotations: BTreeMap::new(),
        };
        c.services.insert(svc.id.clone(), svc);
        let pod = PodFacts {
            id: ObjectRef::new("ns", "p"),
            uid: "pu".into(),
            labels: pod_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: Some(ip.parse().unwrap()),
            running: true,
            ready: true,
            terminating: false,
            host_network: false,
        };
        c.pods.insert(pod.id.clone(), pod);
        c
    }

    #[test]
    fn safety_fires_only_after_grace() {
        let s = state_from(&desired_one("10.0.0.1", "svc"));
        let good = cluster(&[("app", "a")], "10.0.0.1");
        let relabelled = cluster(&[("app", "b")], "10.0.0.1");
        let mut t = SafetyTracker::new();
        let grace = Duration::from_secs(2);
        assert!(t.observe(Duration::ZERO, grace, &good, &s).is_empty());
        assert!(t
            .observe(Duration::from_secs(1), grace, &relabelled, &s)
            .is_empty());
        assert_eq!(t.currently_unsafe(), 1);
        assert!(t
            .observe(Duration::from_secs(3), grace, &relabelled, &s)
            .is_empty());
        let v = t.observe(Duration::from_millis(3001), grace, &relabelled, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("not selected"), "{}", v[0]);
        // Becoming safe again resets the clock.
        assert!(t
            .observe(Duration::from_secs(4), grace, &good, &s)
            .is_empty());
        assert_eq!(t.currently_unsafe(), 0);
    }

    #[test]
    fn ledger_foreign_untouched_and_orphans() {
        let mut foreign = MemoryState::default();
        foreign.accounts.insert(
            key("10.0.0.9"),
            AccountState {
                password: Password::new("x"),
                grants: BTreeMap::new(),
            },
        );
        let mut s = state_from(&desired_one("10.0.0.1", "svc"));
        s.accounts
            .insert(key("10.0.0.9"), foreign.accounts[&key("10.0.0.9")].clone());
        assert!(check_ledger(&s, &foreign, true).is_empty());
        let mut dropped = s.clone();
        dropped.accounts.remove(&key("10.0.0.9"));
        assert_eq!(check_ledger(&dropped, &foreign, true).len(), 1);
        let mut orphan = s.clone();
        orphan.accounts.remove(&key("10.0.0.1"));
        assert!(check_ledger(&orphan, &foreign, false).is_empty());
        assert_eq!(check_ledger(&orphan, &foreign, true).len(), 1);
        let mut stray = s;
        stray.accounts.insert(
            key("10.0.0.7"),
            AccountState {
                password: Password::new("y"),
                grants: BTreeMap::new(),
            },
        );
        assert_eq!(check_ledger(&stray, &foreign, true).len(), 1);
    }

    #[test]
    fn work_and_cpu_budgets() {
        let b = Budgets {
            max_rewatch_per_sec: Some(1.0),
            max_idle_cpu_share: Some(0.05),
            ..Budgets::default()
        };
        let w = WorkCounts {
            elapsed: Duration::from_secs(10),
            watch_requests: 11,
            ..WorkCounts::default()
        };
        let v = check_work(&b, &w);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].invariant, Invariant::RewatchRate);
        assert!(check_work(
            &b,
            &WorkCounts {
                watch_requests: 10,
                ..w
            }
        )
        .is_empty());
        assert_eq!(
            check_cpu(&b, Some(0.9), None, None)[0].invariant,
            Invariant::IdleCpu
        );
        assert!(check_cpu(&b, Some(0.01), Some(1e9), Some(1 << 30)).is_empty());
    }
}

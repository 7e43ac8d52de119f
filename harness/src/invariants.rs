//! Pure invariant checks: convergence, safety, ledger consistency and budgets, as data.
//!
//! Every check takes plain values — the cluster's truth (from the sim), the desired set computed
//! from it, the grant store's state, counters — and returns the [`Violation`]s it found. Time
//! enters only as arguments (the [`SafetyTracker`] is told "now"), so the checks run the same
//! under tokio's paused clock and in real time.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use podgrant_core::grant::{AccountKey, Observed};
use podgrant_core::model::ObjectRef;
use podgrant_core::store::memory::MemoryState;
use serde::{Deserialize, Serialize};

use crate::truth::{Expected, Truth};

/// The invariant a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// After the last step and quiescence, the store equals the desired set exactly.
    Convergence,
    /// Past the grace period, no owned account the oracle does not allow; never a privilege
    /// outside the allowlist; never one user's accounts in two namespaces at once (tenancy).
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
    /// A `store_drift` step was not repaired within the resync bound.
    DriftRepair,
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
            Invariant::DriftRepair => "drift_repair",
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

fn grants_as_strings(
    grants: &BTreeMap<String, BTreeSet<podgrant_core::grant::Privilege>>,
) -> BTreeMap<String, BTreeSet<String>> {
    grants
        .iter()
        .map(|(db, ps)| (db.clone(), ps.iter().map(|p| p.0.clone()).collect()))
        .collect()
}

/// The owned accounts as the checks need them: key → (owner, fingerprint, grants if the account exists).
type OwnedView = BTreeMap<
    AccountKey,
    (
        ObjectRef,
        String,
        Option<BTreeMap<String, BTreeSet<String>>>,
    ),
>;

fn owned_from_state(state: &MemoryState) -> OwnedView {
    state
        .ledger
        .iter()
        .map(|(k, row)| {
            let grants = state.accounts.get(k).map(|a| grants_as_strings(&a.grants));
            (
                k.clone(),
                (row.owner.clone(), row.fingerprint.clone(), grants),
            )
        })
        .collect()
}

fn owned_from_observed(observed: &Observed) -> OwnedView {
    observed
        .owned
        .iter()
        .map(|(k, o)| {
            let grants = o.exists.then(|| grants_as_strings(&o.grants));
            (k.clone(), (o.owner.clone(), o.fingerprint.clone(), grants))
        })
        .collect()
}

fn convergence(expected: &Expected, owned: &OwnedView) -> Vec<Violation> {
    let mut out = Vec::new();
    let v = |d: String| Violation::new(Invariant::Convergence, d);
    for (key, want) in &expected.accounts {
        let Some((owner, fingerprint, grants)) = owned.get(key) else {
            out.push(v(format!(
                "{key} is expected (for {}, pod {}) but not in the ledger",
                want.owner, want.pod
            )));
            continue;
        };
        if *owner != want.owner {
            out.push(v(format!(
                "{key}: ledger owner {owner} but expected {}",
                want.owner
            )));
        }
        if *fingerprint != want.fingerprint(&key.user) {
            out.push(v(format!("{key}: ledger password fingerprint is stale")));
        }
        let Some(grants) = grants else {
            out.push(v(format!(
                "{key} is expected (for {}) but does not exist",
                want.owner
            )));
            continue;
        };
        let want_grants: BTreeMap<String, BTreeSet<String>> =
            [(want.database.clone(), want.privileges.clone())].into();
        if *grants != want_grants {
            out.push(v(format!(
                "{key}: grants {grants:?} but expected {want_grants:?}"
            )));
        }
    }
    for (key, (owner, _, grants)) in owned {
        if expected.accounts.contains_key(key) {
            continue;
        }
        // A contested user's accounts are not predicted; safety checks who holds them.
        if expected.contested_users.contains(&key.user)
            && expected.allowed.get(key).is_some_and(|o| o.contains(owner))
        {
            continue;
        }
        let exists = if grants.is_some() {
            "exists"
        } else {
            "ledger row only"
        };
        out.push(v(format!(
            "{key} is not expected but is owned by {owner} ({exists})"
        )));
    }
    out
}

/// Convergence: the owned accounts are exactly the oracle's, each with the Secret's password,
/// exactly the expected privileges on exactly the expected database, and the ledger's
/// owner/fingerprint.
pub fn check_convergence(expected: &Expected, state: &MemoryState) -> Vec<Violation> {
    let mut out = convergence(expected, &owned_from_state(state));
    for (key, want) in &expected.accounts {
        if let Some(acct) = state.accounts.get(key) {
            if state.ledger.contains_key(key) && acct.password.expose() != want.password.expose() {
                out.push(Violation::new(
                    Invariant::Convergence,
                    format!("{key}: password differs from the Secret's"),
                ));
            }
        }
    }
    out
}

/// Convergence against a store read back through [`podgrant_core::store::GrantStore::observe`]
/// (the MySQL case: passwords are compared through the ledger fingerprint).
pub fn check_convergence_observed(expected: &Expected, observed: &Observed) -> Vec<Violation> {
    convergence(expected, &owned_from_observed(observed))
}

/// Privileges outside the allowlist on an owned account: always unsafe, no grace (pure).
pub fn dangerous_privileges(
    allowlist: &BTreeSet<String>,
    grants: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    grants
        .values()
        .flatten()
        .filter(|p| !allowlist.contains(*p))
        .cloned()
        .collect()
}

/// With tenancy, users whose owned accounts belong to more than one namespace at once (pure).
pub fn shared_users(expected: &Expected, owned: &OwnedView) -> BTreeMap<String, BTreeSet<String>> {
    if !expected.tenancy {
        return BTreeMap::new();
    }
    let mut by_user: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, (owner, _, grants)) in owned {
        if grants.is_some() {
            by_user
                .entry(k.user.clone())
                .or_default()
                .insert(owner.namespace.clone());
        }
    }
    by_user.retain(|_, ns| ns.len() > 1);
    by_user
}

/// What the API server has let its clients see, per watched resource (from [`podgrant_sim::Sim::visibility`]).
pub type ServerView = BTreeMap<String, podgrant_sim::stats::Visibility>;

/// Tracks how long each owned account has been unsafe; a violation once past the grace period
/// (the engine's debounce plus a reconcile's latency). A privilege outside the allowlist and a
/// user owned by two namespaces at once are violations at once.
///
/// The grace period counts from when the server *let the subject see* what made the account
/// unsafe, not from the change itself: a server that refuses every list and expires every watch
/// keeps any client blind, and a correct client backs off while it is (client-go's reflector
/// waits up to 30 s between failed lists, and a second failure waits again). The subject could
/// see the change once, for every resource it watches, a watch was live (open and delivering:
/// it delivers the change, or replays it when it starts) or a full list was served after the
/// account became unsafe. So a bug in how the subject handles what it was shown is caught within
/// the grace; a slow recovery from a failing server is the rewatch and convergence checks' to judge.
#[derive(Debug, Clone, Default)]
pub struct SafetyTracker {
    unsafe_since: BTreeMap<AccountKey, Unsafe>,
    /// Violations already reported (one per account or user and kind).
    reported: BTreeSet<(String, &'static str)>,
}

/// One account unsafe right now.
#[derive(Debug, Clone)]
struct Unsafe {
    since: Duration,
    reason: String,
    /// Full lists served per resource when it became unsafe.
    lists_then: BTreeMap<String, u64>,
    /// When the subject could first see what made it unsafe.
    seen: Option<Duration>,
}

/// Pure: whether every watched resource has been visible since `lists_then` was read.
fn visible_since(view: &ServerView, lists_then: &BTreeMap<String, u64>) -> bool {
    view.iter().all(|(resource, v)| {
        v.live_watches > 0 || v.lists_served > lists_then.get(resource).copied().unwrap_or(0)
    })
}

impl SafetyTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the memory store's state at time `now` (any monotonic clock, as an offset), with
    /// what the server let the subject see by then.
    pub fn observe(
        &mut self,
        now: Duration,
        grace: Duration,
        view: &ServerView,
        truth: &Truth,
        expected: &Expected,
        state: &MemoryState,
    ) -> Vec<Violation> {
        self.observe_owned(now, grace, view, truth, expected, &owned_from_state(state))
    }

    #[allow(clippy::too_many_arguments)]
    fn observe_owned(
        &mut self,
        now: Duration,
        grace: Duration,
        view: &ServerView,
        truth: &Truth,
        expected: &Expected,
        owned: &OwnedView,
    ) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut current = BTreeMap::new();
        for (key, (owner, _, grants)) in owned {
            let Some(grants) = grants else {
                continue; // a ledger row without an account grants nothing
            };
            let bad = dangerous_privileges(&expected.allowlist, grants);
            if !bad.is_empty() && self.reported.insert((key.to_string(), "privilege")) {
                out.push(Violation::new(
                    Invariant::Safety,
                    format!(
                        "{key} (owned by {owner}) holds privileges outside the allowlist: {bad:?}"
                    ),
                ));
            }
            if let Some(reason) = expected.unsafe_reason(truth, owner, key) {
                current.insert(key.clone(), reason);
            }
        }
        for (user, namespaces) in shared_users(expected, owned) {
            if self.reported.insert((user.clone(), "exclusive")) {
                out.push(Violation::new(
                    Invariant::Safety,
                    format!("user {user} has accounts owned by namespaces {namespaces:?} at once"),
                ));
            }
        }
        self.unsafe_since.retain(|k, _| current.contains_key(k));
        for (key, reason) in current {
            let u = self
                .unsafe_since
                .entry(key.clone())
                .or_insert_with(|| Unsafe {
                    since: now,
                    reason,
                    lists_then: view
                        .iter()
                        .map(|(r, v)| (r.clone(), v.lists_served))
                        .collect(),
                    seen: None,
                });
            if u.seen.is_none() && visible_since(view, &u.lists_then) {
                u.seen = Some(now);
            }
            let Some(seen) = u.seen else {
                continue; // the server keeps the subject blind: the grace has not started
            };
            let late = now.saturating_sub(seen);
            if late > grace && self.reported.insert((key.to_string(), "grace")) {
                let total = now.saturating_sub(u.since);
                let blind = seen.saturating_sub(u.since);
                out.push(Violation::new(
                    Invariant::Safety,
                    format!(
                        "{key} unsafe for {total:?} (> grace {grace:?}, counted from {blind:?} in, when the server let the subject see it): {}",
                        u.reason
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
    /// The sliding window every rate budget is checked over (default 10 s of simulated time;
    /// a run shorter than the window is one window).
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    /// Max watch requests (all resources) per simulated second.
    pub max_rewatch_per_sec: Option<f64>,
    /// Max requests of any kind to the sim per simulated second.
    pub max_requests_per_sec: Option<f64>,
    /// Max reconciles per simulated second.
    pub max_reconciles_per_sec: Option<f64>,
    /// Max store statements per simulated second.
    pub max_statements_per_sec: Option<f64>,
    /// Max CPU share of the engine's threads in any idle window (real-time runs).
    pub max_idle_cpu_share: Option<f64>,
    /// Max CPU µs per event in any window with enough events (real-time runs).
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

/// The default sliding window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// Cumulative counters at one moment of a run (simulated offset `t`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WorkSample {
    pub t: Duration,
    pub requests: u64,
    pub watch_requests: u64,
    pub reconciles: u64,
    pub statements: u64,
    pub events: u64,
    /// CPU of the scenario thread so far (real-time runs).
    pub cpu: Option<Duration>,
}

/// Every window `[a, b]` of length `window` between samples (`b` a sample, `a` the first sample at
/// or after `b - window`); one window over the whole run when it is shorter (pure).
pub fn windows(samples: &[WorkSample], window: Duration) -> Vec<(WorkSample, WorkSample)> {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return Vec::new();
    };
    if last.t.saturating_sub(first.t) <= window {
        return vec![(*first, *last)];
    }
    let mut out = Vec::new();
    let mut j = 0;
    for b in samples.iter().filter(|s| s.t >= first.t + window) {
        while samples[j].t + window < b.t {
            j += 1;
        }
        out.push((samples[j], *b));
    }
    out
}

fn rate(a: &WorkSample, b: &WorkSample, f: impl Fn(&WorkSample) -> u64) -> f64 {
    let n = f(b).saturating_sub(f(a)) as f64;
    let s = b.t.saturating_sub(a.t).as_secs_f64();
    if s <= 0.0 {
        n
    } else {
        n / s
    }
}

/// Checks the counted-work budgets over every sliding window (pure); one violation per budget,
/// naming the worst window.
pub fn check_work_windows(b: &Budgets, samples: &[WorkSample]) -> Vec<Violation> {
    let ws = windows(samples, b.window.unwrap_or(DEFAULT_WINDOW));
    let mut out = Vec::new();
    type Get = fn(&WorkSample) -> u64;
    let budgets: [(Option<f64>, Get, &str, Invariant); 4] = [
        (
            b.max_rewatch_per_sec,
            |s| s.watch_requests,
            "watch requests",
            Invariant::RewatchRate,
        ),
        (
            b.max_requests_per_sec,
            |s| s.requests,
            "requests to the API server",
            Invariant::WorkRate,
        ),
        (
            b.max_reconciles_per_sec,
            |s| s.reconciles,
            "reconciles",
            Invariant::WorkRate,
        ),
        (
            b.max_statements_per_sec,
            |s| s.statements,
            "store statements",
            Invariant::WorkRate,
        ),
    ];
    for (max, get, what, inv) in budgets {
        let Some(max) = max else { continue };
        let worst = ws
            .iter()
            .map(|(a, z)| (rate(a, z, get), a, z))
            .max_by(|x, y| x.0.total_cmp(&y.0));
        if let Some((r, a, z)) = worst {
            if r > max {
                out.push(Violation::new(
                    inv,
                    format!(
                        "{what}: {r:.2}/s in the window {:?}..{:?} ({} there) > budget {max}/s",
                        a.t,
                        z.t,
                        get(z).saturating_sub(get(a))
                    ),
                ));
            }
        }
    }
    out
}

/// Fewest events in a window for its CPU-per-event to count.
pub const MIN_EVENTS_PER_WINDOW: u64 = 100;

/// Checks the real-time CPU budgets over every sliding window (pure): the idle share only over
/// windows with no step in them nor in the `settle` before them (nor the run's first `settle`);
/// CPU per event over windows with at least [`MIN_EVENTS_PER_WINDOW`] events, else over the run.
pub fn check_cpu_windows(
    b: &Budgets,
    samples: &[WorkSample],
    steps_at: &[Duration],
    settle: Duration,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let ws = windows(samples, b.window.unwrap_or(DEFAULT_WINDOW));
    let cpu_of = |s: &WorkSample| s.cpu.unwrap_or_default();
    let start = samples.first().map_or(Duration::ZERO, |s| s.t);
    if let Some(max) = b.max_idle_cpu_share {
        let idle = ws.iter().filter(|(a, z)| {
            a.t >= start + settle && !steps_at.iter().any(|t| *t + settle >= a.t && *t <= z.t)
        });
        let worst = idle
            .map(|(a, z)| {
                let dt = z.t.saturating_sub(a.t).as_secs_f64().max(1e-9);
                (cpu_of(z).saturating_sub(cpu_of(a)).as_secs_f64() / dt, a, z)
            })
            .max_by(|x, y| x.0.total_cmp(&y.0));
        if let Some((share, a, z)) = worst {
            if share > max {
                out.push(Violation::new(
                    Invariant::IdleCpu,
                    format!(
                        "idle CPU share {share:.3} of a core in the idle window {:?}..{:?} > budget {max}",
                        a.t, z.t
                    ),
                ));
            }
        }
    }
    if let Some(max) = b.max_cpu_us_per_event {
        let per_event = |a: &WorkSample, z: &WorkSample| {
            let n = z.events.saturating_sub(a.events);
            (
                cpu_of(z).saturating_sub(cpu_of(a)).as_secs_f64() * 1e6 / n.max(1) as f64,
                n,
            )
        };
        let mut busy: Vec<(f64, WorkSample, WorkSample)> = ws
            .iter()
            .filter(|(a, z)| z.events.saturating_sub(a.events) >= MIN_EVENTS_PER_WINDOW)
            .map(|(a, z)| (per_event(a, z).0, *a, *z))
            .collect();
        if busy.is_empty() {
            if let (Some(a), Some(z)) = (samples.first(), samples.last()) {
                if z.events > a.events {
                    busy.push((per_event(a, z).0, *a, *z));
                }
            }
        }
        if let Some((us, a, z)) = busy.into_iter().max_by(|x, y| x.0.total_cmp(&y.0)) {
            if us > max {
                out.push(Violation::new(
                    Invariant::CpuPerEvent,
                    format!(
                        "{us:.1} CPU-µs per event in the window {:?}..{:?} ({} events) > budget {max}",
                        a.t,
                        z.t,
                        z.events.saturating_sub(a.events)
                    ),
                ));
            }
        }
    }
    out
}

/// One drifted account whose repair is awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRepair {
    pub key: AccountKey,
    /// What was done to it, for the message.
    pub what: String,
    pub at: Duration,
    pub deadline: Duration,
    /// For a changed password on the memory store: the Secret's password is expected back.
    pub check_password: bool,
}

/// Whether a drifted account is repaired: the one key agrees with the oracle (pure).
pub fn repair_problems(
    expected: &Expected,
    state: Option<&MemoryState>,
    observed: Option<&Observed>,
    p: &PendingRepair,
) -> Vec<Violation> {
    let mut one = expected.clone();
    one.accounts.retain(|k, _| *k == p.key);
    let mut problems = match (state, observed) {
        (Some(s), _) => {
            let mut owned = owned_from_state(s);
            owned.retain(|k, _| *k == p.key);
            let mut v = convergence(&one, &owned);
            if p.check_password {
                if let (Some(want), Some(acct)) = (one.accounts.get(&p.key), s.accounts.get(&p.key))
                {
                    if acct.password.expose() != want.password.expose() {
                        v.push(Violation::new(
                            Invariant::Convergence,
                            format!("{}: password differs from the Secret's", p.key),
                        ));
                    }
                }
            }
            v
        }
        (None, Some(o)) => {
            let mut owned = owned_from_observed(o);
            owned.retain(|k, _| *k == p.key);
            convergence(&one, &owned)
        }
        (None, None) => Vec::new(),
    };
    problems.iter_mut().for_each(|v| {
        v.invariant = Invariant::DriftRepair;
        v.detail = format!(
            "{} at {:?} not repaired by {:?}: {}",
            p.what, p.at, p.deadline, v.detail
        );
    });
    problems
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
    use crate::truth::{expect, OracleConfig};
    use podgrant_core::grant::Privilege;
    use podgrant_core::model::Password;
    use podgrant_core::store::memory::{AccountState, LedgerRow};
    use serde_json::{json, Value};

    fn key(ip: &str) -> AccountKey {
        AccountKey {
            user: "shop_app".into(),
            host: ip.parse().unwrap(),
        }
    }

    fn truth(app: &str) -> Truth {
        let pod = json!({
            "metadata": {"namespace": "shop", "name": "p", "labels": {"app": app}},
            "status": {"phase": "Running", "podIP": "10.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let svc = json!({
            "metadata": {"namespace": "shop", "name": "svc", "annotations": {
                "podgrant.io/mysql-user": "shop_app",
                "podgrant.io/mysql-database": "shop_db",
                "podgrant.io/mysql-privileges": "SELECT",
                "podgrant.io/mysql-password-secret": "db/password"}},
            "spec": {"selector": {"app": "a"}}
        });
        let secret: Value =
            json!({"metadata": {"namespace": "shop", "name": "db"}, "data": {"password": "cHc="}});
        Truth::from_objects(&[pod], &[svc], &[secret]).unwrap()
    }

    fn expected(t: &Truth) -> Expected {
        expect(&OracleConfig::default(), t, &BTreeSet::new())
    }

    fn state_from(e: &Expected) -> MemoryState {
        let mut s = MemoryState::default();
        for (k, a) in &e.accounts {
            s.ledger.insert(
                k.clone(),
                LedgerRow {
                    owner: a.owner.clone(),
                    fingerprint: a.fingerprint(&k.user),
                },
            );
            s.accounts.insert(
                k.clone(),
                AccountState {
                    password: a.password.clone(),
                    grants: [(
                        a.database.clone(),
                        a.privileges.iter().map(|p| Privilege(p.clone())).collect(),
                    )]
                    .into(),
                },
            );
        }
        s
    }

    #[test]
    fn convergence_exact_match_and_each_kind_of_drift() {
        let e = expected(&truth("a"));
        assert_eq!(e.accounts.len(), 1);
        let s = state_from(&e);
        assert!(check_convergence(&e, &s).is_empty());
        assert_eq!(
            check_convergence(&expected(&truth("b")), &s).len(),
            1,
            "extra account"
        );
        assert_eq!(
            check_convergence(&e, &MemoryState::default()).len(),
            1,
            "missing"
        );
        let mut wrong = s.clone();
        wrong.accounts.get_mut(&key("10.0.0.1")).unwrap().grants =
            [("shop_db".into(), [Privilege("INSERT".into())].into())].into();
        let v = check_convergence(&e, &wrong);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].invariant, Invariant::Convergence);
        assert!(v[0].detail.contains("grants"), "{}", v[0]);
        let mut pw = s;
        pw.accounts.get_mut(&key("10.0.0.1")).unwrap().password = Password::new("other");
        let v = check_convergence(&e, &pw);
        assert_eq!(v.len(), 1);
        assert!(!v[0].detail.contains("other"), "no password in messages");
    }

    #[test]
    fn safety_fires_only_after_grace_and_dangerous_privileges_at_once() {
        let good = truth("a");
        let relabelled = truth("b");
        let s = state_from(&expected(&good));
        let mut t = SafetyTracker::new();
        let grace = Duration::from_secs(2);
        let obs = |t: &mut SafetyTracker, at: u64, tr: &Truth, s: &MemoryState| {
            t.observe(
                Duration::from_millis(at),
                grace,
                &live(),
                tr,
                &expected(tr),
                s,
            )
        };
        assert!(obs(&mut t, 0, &good, &s).is_empty());
        assert!(obs(&mut t, 1000, &relabelled, &s).is_empty());
        assert_eq!(t.currently_unsafe(), 1);
        assert!(obs(&mut t, 3000, &relabelled, &s).is_empty());
        let v = obs(&mut t, 3001, &relabelled, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("not selected"), "{}", v[0]);
        assert!(obs(&mut t, 4000, &good, &s).is_empty());
        assert_eq!(t.currently_unsafe(), 0);

        let mut super_ = s.clone();
        super_
            .accounts
            .get_mut(&key("10.0.0.1"))
            .unwrap()
            .grants
            .get_mut("shop_db")
            .unwrap()
            .insert(Privilege("GRANT OPTION".into()));
        let v = obs(&mut SafetyTracker::new(), 0, &good, &super_);
        assert_eq!(v.len(), 1, "no grace for a dangerous privilege: {v:?}");
        assert!(v[0].detail.contains("GRANT OPTION"), "{}", v[0]);
    }

    /// A server view of pods and services: live watches, and full lists served so far.
    fn view(live_watches: u64, lists_served: u64) -> ServerView {
        let v = podgrant_sim::stats::Visibility {
            live_watches,
            lists_served,
        };
        [("pods".to_string(), v), ("services".to_string(), v)].into()
    }

    fn live() -> ServerView {
        view(1, 1)
    }

    #[test]
    fn safety_grace_counts_from_when_the_server_let_the_subject_see_the_change() {
        let (good, relabelled) = (truth("a"), truth("b"));
        let s = state_from(&expected(&good));
        let grace = Duration::from_secs(2);
        let mut t = SafetyTracker::new();
        let mut obs = |at: u64, v: &ServerView| {
            t.observe(
                Duration::from_secs(at),
                grace,
                v,
                &relabelled,
                &expected(&relabelled),
                &s,
            )
        };
        // Every watch refused and no list answered since the relabel: the subject is blind.
        assert!(obs(0, &view(0, 3)).is_empty());
        assert!(
            obs(100, &view(0, 3)).is_empty(),
            "blind for 100 s is excused"
        );
        // Pods were listed again, services not yet: still blind to a Service change.
        let mut half = view(0, 3);
        half.get_mut("pods").unwrap().lists_served = 4;
        assert!(obs(101, &half).is_empty());
        // Both listed at 102 s: from here the grace runs.
        assert!(obs(102, &view(0, 4)).is_empty());
        assert!(
            obs(104, &view(0, 4)).is_empty(),
            "2 s after it was seen: inside the grace"
        );
        let v = obs(105, &view(0, 4));
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("unsafe for 105s"), "{}", v[0]);
        assert!(v[0].detail.contains("from 102s in"), "{}", v[0]);

        // A live watch on every resource shows the change at once: the grace starts with it.
        let mut t = SafetyTracker::new();
        let mut obs = |at: u64| {
            t.observe(
                Duration::from_secs(at),
                grace,
                &view(1, 0),
                &relabelled,
                &expected(&relabelled),
                &s,
            )
        };
        assert!(obs(0).is_empty());
        assert_eq!(
            obs(3).len(),
            1,
            "3 s unsafe with live watches is past a 2 s grace"
        );
    }

    #[test]
    fn exclusivity_one_user_two_namespaces_is_unsafe_at_once() {
        let e = expected(&truth("a"));
        let mut s = state_from(&e);
        let other = key("10.0.0.2");
        s.ledger.insert(
            other.clone(),
            LedgerRow {
                owner: ObjectRef::new("shop-eu", "svc"),
                fingerprint: "f".into(),
            },
        );
        s.accounts
            .insert(other, s.accounts[&key("10.0.0.1")].clone());
        let owned = owned_from_state(&s);
        assert_eq!(shared_users(&e, &owned).len(), 1);
        let mut off = e.clone();
        off.tenancy = false;
        assert!(shared_users(&off, &owned).is_empty());
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
        let mut s = state_from(&expected(&truth("a")));
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
    }

    fn samples(per_sec: &[u64]) -> Vec<WorkSample> {
        let mut total = 0;
        let mut out = vec![WorkSample::default()];
        for (i, n) in per_sec.iter().enumerate() {
            total += n;
            out.push(WorkSample {
                t: Duration::from_secs(i as u64 + 1),
                requests: total,
                cpu: Some(Duration::from_millis(total)),
                ..WorkSample::default()
            });
        }
        out
    }

    #[test]
    fn a_five_second_storm_in_a_long_run_fails_the_window_but_not_the_average() {
        // 300 s at 1 request/s, with a 5 s storm of 40/s at 100 s.
        let mut per_sec = vec![1; 300];
        per_sec[100..105].fill(40);
        let s = samples(&per_sec);
        let b = Budgets {
            max_requests_per_sec: Some(5.0),
            ..Budgets::default()
        };
        let whole = WorkCounts {
            elapsed: Duration::from_secs(300),
            requests: s.last().unwrap().requests,
            ..WorkCounts::default()
        };
        assert!(check_work(&b, &whole).is_empty(), "the average hides it");
        let v = check_work_windows(&b, &s);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].detail.contains("20.50/s"), "{}", v[0]);
        assert!(check_work_windows(&b, &samples(&[1; 300])).is_empty());
        // Shorter than a window: one window over the run.
        assert_eq!(windows(&samples(&[1; 5]), DEFAULT_WINDOW).len(), 1);
    }

    #[test]
    fn idle_cpu_only_over_idle_windows() {
        // cpu = 1 ms per request; a busy stretch at 50..52 s right after a step at 50 s.
        let mut per_sec = vec![10; 120];
        per_sec[50..52].fill(900);
        let s = samples(&per_sec);
        let b = Budgets {
            max_idle_cpu_share: Some(0.05),
            ..Budgets::default()
        };
        let settle = Duration::from_secs(3);
        assert!(check_cpu_windows(&b, &s, &[Duration::from_secs(50)], settle).is_empty());
        let v = check_cpu_windows(&b, &s, &[], settle);
        assert_eq!(
            v.len(),
            1,
            "without the step the busy stretch is idle time: {v:?}"
        );
        assert_eq!(v[0].invariant, Invariant::IdleCpu);
    }
}

//! The engine's counters: lock-free atomics, a plain snapshot, and Prometheus text rendering.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The resources the engine watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Services,
    Pods,
    Secrets,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Services, Resource::Pods, Resource::Secrets];
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Services => "services",
            Resource::Pods => "pods",
            Resource::Secrets => "secrets",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// Why a watch was re-established (or a list redone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RestartReason {
    /// The server ended a healthy watch (lived long enough or delivered events): re-watch at once.
    Closed,
    /// The server ended a watch that lived under the threshold with no events: counted as a failure, backed off.
    ClosedEarly,
    /// `410 Gone` / `Expired`: the resourceVersion fell out of the window; relist.
    Expired,
    /// No event nor bookmark for longer than the idle timeout.
    Stalled,
    /// The watch stream failed (transport error, malformed line, error event other than 410).
    StreamError,
    /// The watch request itself failed (429, 500, 503, connection refused, ...).
    WatchFailed,
    /// The list request failed.
    ListFailed,
}

impl RestartReason {
    pub const ALL: [RestartReason; 7] = [
        RestartReason::Closed,
        RestartReason::ClosedEarly,
        RestartReason::Expired,
        RestartReason::Stalled,
        RestartReason::StreamError,
        RestartReason::WatchFailed,
        RestartReason::ListFailed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Closed => "closed",
            RestartReason::ClosedEarly => "closed_early",
            RestartReason::Expired => "expired",
            RestartReason::Stalled => "stalled",
            RestartReason::StreamError => "stream_error",
            RestartReason::WatchFailed => "watch_failed",
            RestartReason::ListFailed => "list_failed",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// The action kinds, in [`crate::grant::Action::kind`] spelling.
pub const ACTION_KINDS: [&str; 7] = [
    "claim",
    "create",
    "set_password",
    "grant",
    "revoke",
    "drop",
    "release",
];

/// The reasons of `podgrant_grant_refusals_total`, in [`crate::desired::ProblemKind::as_str`] spelling.
pub const REFUSAL_REASONS: [&str; 6] = [
    "invalid",
    "conflict",
    "namespace",
    "user_owned",
    "reserved",
    "foreign",
];

const NR: usize = 3;
const NREASON: usize = 7;

/// All counters. Cheap to update from any task; read with [`Metrics::snapshot`].
#[derive(Debug, Default)]
pub struct Metrics {
    events: [AtomicU64; NR],
    lists: [AtomicU64; NR],
    watches: [AtomicU64; NR],
    restarts: [[AtomicU64; NREASON]; NR],
    reconciles: AtomicU64,
    reconciles_skipped: AtomicU64,
    store_observes: AtomicU64,
    store_applies: AtomicU64,
    statements: AtomicU64,
    actions: [AtomicU64; 7],
    store_errors_transient: AtomicU64,
    store_errors_permanent: AtomicU64,
    service_problems: AtomicU64,
    k8s_events_posted: AtomicU64,
    k8s_events_suppressed: AtomicU64,
    leader_transitions: AtomicU64,
    ledger_size: AtomicU64,
    desired_accounts: AtomicU64,
    is_leader: AtomicU64,
    synced: AtomicU64,
    reconciling: AtomicU64,
    refusals: [AtomicU64; 6],
    tenancy_enforced: AtomicU64,
    sessions_unmatched: AtomicU64,
    /// The HTTP endpoint's counters and the store reachability `/readyz` reads.
    pub endpoint: EndpointMetrics,
}

/// A plain copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Watch events (objects added/modified/deleted, listed objects) received, by resource.
    pub events: BTreeMap<&'static str, u64>,
    /// List requests made, by resource.
    pub lists: BTreeMap<&'static str, u64>,
    /// Watch requests made, by resource.
    pub watches: BTreeMap<&'static str, u64>,
    /// Watch restarts by (resource, reason).
    pub watch_restarts: BTreeMap<(&'static str, &'static str), u64>,
    /// Reconciles that ran the store (observe → plan → apply).
    pub reconciles: u64,
    /// Reconciles skipped because no account's desired value changed since the last one that converged.
    pub reconciles_skipped: u64,
    pub store_observes: u64,
    /// `GrantStore::apply` calls that succeeded.
    pub store_applies: u64,
    /// Statements reported by the store's apply calls.
    pub statements: u64,
    /// Actions applied, by kind.
    pub actions: BTreeMap<&'static str, u64>,
    pub store_errors_transient: u64,
    pub store_errors_permanent: u64,
    /// Service problems (bad annotations, missing secrets) found, counted per reconcile.
    pub service_problems: u64,
    pub k8s_events_posted: u64,
    pub k8s_events_suppressed: u64,
    pub leader_transitions: u64,
    /// Owned accounts in the ledger after the last reconcile.
    pub ledger_size: u64,
    pub desired_accounts: u64,
    pub is_leader: bool,
    /// Every watcher has completed its initial list.
    pub synced: bool,
    /// A reconcile is in flight (its store calls run beside the watch loop).
    pub reconciling: bool,
    /// Services (or accounts) skipped, by reason; each (service, reason) counted once per
    /// dedup window, like its log line.
    pub refusals: BTreeMap<&'static str, u64>,
    /// Tenancy rules are enforced (`false` with `--tenancy=off`).
    pub tenancy_enforced: bool,
    /// Sessions of a revoked account's user left open because the server showed a host name,
    /// not an IP (see `store::sessions`), as the store reports them.
    pub sessions_unmatched: u64,
}

impl MetricsSnapshot {
    /// Watch restarts of all resources for one reason.
    pub fn restarts(&self, reason: RestartReason) -> u64 {
        self.watch_restarts
            .iter()
            .filter(|((_, r), _)| *r == reason.as_str())
            .map(|(_, v)| v)
            .sum()
    }
    /// Watch restarts of all resources and reasons.
    pub fn total_restarts(&self) -> u64 {
        self.watch_restarts.values().sum()
    }
    /// Events of all resources.
    pub fn total_events(&self) -> u64 {
        self.events.values().sum()
    }
    /// Watch + list requests of all resources.
    pub fn total_requests(&self) -> u64 {
        self.lists.values().sum::<u64>() + self.watches.values().sum::<u64>()
    }
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn event(&self, r: Resource, n: u64) {
        inc(&self.events[r.idx()], n);
    }
    pub fn list_request(&self, r: Resource) {
        inc(&self.lists[r.idx()], 1);
    }
    pub fn watch_request(&self, r: Resource) {
        inc(&self.watches[r.idx()], 1);
    }
    pub fn watch_restart(&self, r: Resource, reason: RestartReason) {
        inc(&self.restarts[r.idx()][reason.idx()], 1);
    }
    pub fn reconcile(&self) {
        inc(&self.reconciles, 1);
    }
    pub fn reconcile_skipped(&self) {
        inc(&self.reconciles_skipped, 1);
    }
    pub fn store_observe(&self) {
        inc(&self.store_observes, 1);
    }
    pub fn store_apply(&self, statements: u64) {
        inc(&self.store_applies, 1);
        inc(&self.statements, statements);
    }
    pub fn action(&self, kind: &str) {
        if let Some(i) = ACTION_KINDS.iter().position(|k| *k == kind) {
            inc(&self.actions[i], 1);
        }
    }
    pub fn store_error(&self, transient: bool) {
        if transient {
            inc(&self.store_errors_transient, 1);
        } else {
            inc(&self.store_errors_permanent, 1);
        }
    }
    pub fn service_problems(&self, n: u64) {
        inc(&self.service_problems, n);
    }
    pub fn k8s_event(&self, posted: bool) {
        if posted {
            inc(&self.k8s_events_posted, 1);
        } else {
            inc(&self.k8s_events_suppressed, 1);
        }
    }
    pub fn set_leader(&self, leading: bool) {
        let prev = self.is_leader.swap(leading as u64, Ordering::Relaxed);
        if prev != leading as u64 {
            inc(&self.leader_transitions, 1);
        }
    }
    pub fn set_ledger_size(&self, n: u64) {
        self.ledger_size.store(n, Ordering::Relaxed);
    }
    pub fn set_desired(&self, n: u64) {
        self.desired_accounts.store(n, Ordering::Relaxed);
    }
    pub fn set_synced(&self, synced: bool) {
        self.synced.store(synced as u64, Ordering::Relaxed);
    }
    /// One skipped Service (or account), by [`REFUSAL_REASONS`] label; unknown labels are ignored.
    pub fn refusal(&self, reason: &str) {
        if let Some(i) = REFUSAL_REASONS.iter().position(|k| *k == reason) {
            inc(&self.refusals[i], 1);
        }
    }
    pub fn set_tenancy_enforced(&self, enforced: bool) {
        self.tenancy_enforced
            .store(enforced as u64, Ordering::Relaxed);
    }
    /// The store's running total of unmatched sessions ([`crate::store::GrantStore::sessions_unmatched`]).
    pub fn set_sessions_unmatched(&self, total: u64) {
        self.sessions_unmatched.fetch_max(total, Ordering::Relaxed);
    }
    pub fn set_reconciling(&self, running: bool) {
        self.reconciling.store(running as u64, Ordering::Relaxed);
    }
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed) != 0
    }

    /// A consistent-enough copy of every counter (each read is atomic; the set is not).
    pub fn snapshot(&self) -> MetricsSnapshot {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut s = MetricsSnapshot::default();
        for r in Resource::ALL {
            s.events.insert(r.as_str(), ld(&self.events[r.idx()]));
            s.lists.insert(r.as_str(), ld(&self.lists[r.idx()]));
            s.watches.insert(r.as_str(), ld(&self.watches[r.idx()]));
            for reason in RestartReason::ALL {
                s.watch_restarts.insert(
                    (r.as_str(), reason.as_str()),
                    ld(&self.restarts[r.idx()][reason.idx()]),
                );
            }
        }
        for (i, k) in ACTION_KINDS.iter().enumerate() {
            s.actions.insert(k, ld(&self.actions[i]));
        }
        s.reconciles = ld(&self.reconciles);
        s.reconciles_skipped = ld(&self.reconciles_skipped);
        s.store_observes = ld(&self.store_observes);
        s.store_applies = ld(&self.store_applies);
        s.statements = ld(&self.statements);
        s.store_errors_transient = ld(&self.store_errors_transient);
        s.store_errors_permanent = ld(&self.store_errors_permanent);
        s.service_problems = ld(&self.service_problems);
        s.k8s_events_posted = ld(&self.k8s_events_posted);
        s.k8s_events_suppressed = ld(&self.k8s_events_suppressed);
        s.leader_transitions = ld(&self.leader_transitions);
        s.ledger_size = ld(&self.ledger_size);
        s.desired_accounts = ld(&self.desired_accounts);
        s.is_leader = ld(&self.is_leader) != 0;
        s.synced = ld(&self.synced) != 0;
        s.reconciling = ld(&self.reconciling) != 0;
        for (i, k) in REFUSAL_REASONS.iter().enumerate() {
            s.refusals.insert(k, ld(&self.refusals[i]));
        }
        s.tenancy_enforced = ld(&self.tenancy_enforced) != 0;
        s.sessions_unmatched = ld(&self.sessions_unmatched);
        s
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let s = self.snapshot();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
            let _ = writeln!(out, "# HELP podgrant_{name} {help}");
            let _ = writeln!(out, "# TYPE podgrant_{name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "podgrant_{name}{labels} {v}");
            }
        };
        let by_res = |m: &BTreeMap<&'static str, u64>| -> Vec<(String, u64)> {
            m.iter()
                .map(|(r, v)| (format!("{{resource=\"{r}\"}}"), *v))
                .collect()
        };
        family(
            "watch_events_total",
            "counter",
            "Watch events and listed objects received.",
            by_res(&s.events),
        );
        family(
            "list_requests_total",
            "counter",
            "List requests made to the API server.",
            by_res(&s.lists),
        );
        family(
            "watch_requests_total",
            "counter",
            "Watch requests made to the API server.",
            by_res(&s.watches),
        );
        family(
            "watch_restarts_total",
            "counter",
            "Watches re-established, by reason.",
            s.watch_restarts
                .iter()
                .map(|((r, why), v)| (format!("{{resource=\"{r}\",reason=\"{why}\"}}"), *v))
                .collect(),
        );
        family(
            "reconciles_total",
            "counter",
            "Reconciles that consulted the store.",
            vec![(String::new(), s.reconciles)],
        );
        family(
            "sessions_unmatched_total",
            "counter",
            "Sessions of a revoked account's user left open: the server showed a host name, not an IP (use skip_name_resolve).",
            vec![(String::new(), s.sessions_unmatched)],
        );
        family(
            "reconciles_skipped_total",
            "counter",
            "Reconciles skipped: desired set unchanged.",
            vec![(String::new(), s.reconciles_skipped)],
        );
        family(
            "store_observes_total",
            "counter",
            "Store observe calls.",
            vec![(String::new(), s.store_observes)],
        );
        family(
            "store_applies_total",
            "counter",
            "Successful store apply calls.",
            vec![(String::new(), s.store_applies)],
        );
        family(
            "store_statements_total",
            "counter",
            "Statements issued by store apply calls.",
            vec![(String::new(), s.statements)],
        );
        family(
            "actions_total",
            "counter",
            "Grant actions applied, by kind.",
            s.actions
                .iter()
                .map(|(k, v)| (format!("{{kind=\"{k}\"}}"), *v))
                .collect(),
        );
        family(
            "errors_total",
            "counter",
            "Errors, by kind.",
            vec![
                (
                    "{kind=\"store_transient\"}".into(),
                    s.store_errors_transient,
                ),
                (
                    "{kind=\"store_permanent\"}".into(),
                    s.store_errors_permanent,
                ),
                ("{kind=\"service_problem\"}".into(), s.service_problems),
            ],
        );
        family(
            "k8s_events_posted_total",
            "counter",
            "Kubernetes Events posted about services.",
            vec![(String::new(), s.k8s_events_posted)],
        );
        family(
            "k8s_events_suppressed_total",
            "counter",
            "Kubernetes Events suppressed (duplicate or rate-limited).",
            vec![(String::new(), s.k8s_events_suppressed)],
        );
        family(
            "leader_transitions_total",
            "counter",
            "Changes of this replica's leadership.",
            vec![(String::new(), s.leader_transitions)],
        );
        family(
            "ledger_size",
            "gauge",
            "Accounts in the ledger after the last reconcile.",
            vec![(String::new(), s.ledger_size)],
        );
        family(
            "desired_accounts",
            "gauge",
            "Accounts desired at the last reconcile.",
            vec![(String::new(), s.desired_accounts)],
        );
        family(
            "is_leader",
            "gauge",
            "1 when this replica holds the lease.",
            vec![(String::new(), s.is_leader as u64)],
        );
        family(
            "synced",
            "gauge",
            "1 when every watcher completed its initial list.",
            vec![(String::new(), s.synced as u64)],
        );
        family(
            "reconciling",
            "gauge",
            "1 while a reconcile is in flight.",
            vec![(String::new(), s.reconciling as u64)],
        );
        family(
            "grant_refusals_total",
            "counter",
            "Services or accounts skipped (each once per dedup window), by reason.",
            s.refusals
                .iter()
                .map(|(k, v)| (format!("{{reason=\"{k}\"}}"), *v))
                .collect(),
        );
        family(
            "tenancy_enforced",
            "gauge",
            "1 when namespaces are confined to their assigned names; 0 with --tenancy=off.",
            vec![(String::new(), s.tenancy_enforced as u64)],
        );
        self.endpoint.render(&mut out);
        out
    }
}

/// The HTTP endpoint's counters, and whether the store answered its last probe.
#[derive(Debug)]
pub struct EndpointMetrics {
    open: AtomicU64,
    refused: AtomicU64,
    idle_closed: AtomicU64,
    accept_errors: AtomicU64,
    profiles: AtomicU64,
    profiles_refused: AtomicU64,
    /// 1 until a probe fails (a store without probes is reachable).
    store_reachable: AtomicU64,
    store_probe_failures: AtomicU64,
}

impl Default for EndpointMetrics {
    fn default() -> Self {
        Self {
            open: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            profiles: AtomicU64::new(0),
            profiles_refused: AtomicU64::new(0),
            store_reachable: AtomicU64::new(1),
            store_probe_failures: AtomicU64::new(0),
        }
    }
}

impl EndpointMetrics {
    pub fn connection_opened(&self) {
        inc(&self.open, 1);
    }
    pub fn connection_closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn connection_refused(&self) {
        inc(&self.refused, 1);
    }
    pub fn connection_idle_closed(&self) {
        inc(&self.idle_closed, 1);
    }
    pub fn accept_error(&self) {
        inc(&self.accept_errors, 1);
    }
    pub fn profile_started(&self) {
        inc(&self.profiles, 1);
    }
    pub fn profile_refused(&self) {
        inc(&self.profiles_refused, 1);
    }
    /// Records a store probe's outcome.
    pub fn set_store_reachable(&self, reachable: bool) {
        self.store_reachable
            .store(reachable as u64, Ordering::Relaxed);
        if !reachable {
            inc(&self.store_probe_failures, 1);
        }
    }
    pub fn store_reachable(&self) -> bool {
        self.store_reachable.load(Ordering::Relaxed) != 0
    }
    pub fn connections_open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }
    pub fn profiles(&self) -> u64 {
        self.profiles.load(Ordering::Relaxed)
    }
    pub fn connections_refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        let ld = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows = [
            (
                "http_connections_open",
                "gauge",
                "HTTP connections being served.",
                ld(&self.open),
            ),
            (
                "http_connections_refused_total",
                "counter",
                "HTTP connections refused at once because the connection cap was reached.",
                ld(&self.refused),
            ),
            (
                "http_connections_idle_closed_total",
                "counter",
                "HTTP connections closed by the idle timeout.",
                ld(&self.idle_closed),
            ),
            (
                "http_accept_errors_total",
                "counter",
                "Failed accepts (EMFILE, ...), each backed off.",
                ld(&self.accept_errors),
            ),
            (
                "profiles_total",
                "counter",
                "CPU profiles started.",
                ld(&self.profiles),
            ),
            (
                "profiles_refused_total",
                "counter",
                "CPU profile requests refused (409) because one was running.",
                ld(&self.profiles_refused),
            ),
            (
                "store_reachable",
                "gauge",
                "1 when the store answered its last probe (read by /readyz).",
                ld(&self.store_reachable),
            ),
            (
                "store_probe_failures_total",
                "counter",
                "Store probes that failed.",
                ld(&self.store_probe_failures),
            ),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(out, "# HELP podgrant_{name} {help}");
            let _ = writeln!(out, "# TYPE podgrant_{name} {kind}");
            let _ = writeln!(out, "podgrant_{name} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_in_snapshot_and_prometheus_text() {
        let m = Metrics::new();
        m.event(Resource::Pods, 3);
        m.watch_restart(Resource::Pods, RestartReason::ClosedEarly);
        m.watch_restart(Resource::Services, RestartReason::ClosedEarly);
        m.action("grant");
        m.action("not-a-kind");
        m.store_apply(5);
        m.set_leader(true);
        m.set_ledger_size(7);
        let s = m.snapshot();
        assert_eq!(s.events["pods"], 3);
        assert_eq!(s.restarts(RestartReason::ClosedEarly), 2);
        assert_eq!(s.total_restarts(), 2);
        assert_eq!(s.actions["grant"], 1);
        assert_eq!(s.actions.values().sum::<u64>(), 1);
        assert_eq!((s.store_applies, s.statements), (1, 5));
        assert!(s.is_leader);
        assert_eq!(s.leader_transitions, 1);
        let text = m.render_prometheus();
        assert!(text.contains("podgrant_watch_events_total{resource=\"pods\"} 3\n"));
        assert!(text.contains(
            "podgrant_watch_restarts_total{resource=\"pods\",reason=\"closed_early\"} 1\n"
        ));
        assert!(text.contains("podgrant_actions_total{kind=\"grant\"} 1\n"));
        assert!(text.contains("podgrant_ledger_size 7\n"));
        assert!(text.contains("# TYPE podgrant_ledger_size gauge\n"));
        assert!(text.contains("podgrant_tenancy_enforced 0\n"));
        m.set_tenancy_enforced(true);
        m.refusal("namespace");
        m.refusal("bogus");
        let text = m.render_prometheus();
        assert!(text.contains("podgrant_tenancy_enforced 1\n"));
        assert!(text.contains("podgrant_grant_refusals_total{reason=\"namespace\"} 1\n"));
        assert!(text.contains("podgrant_grant_refusals_total{reason=\"foreign\"} 0\n"));
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').expect("sample line");
            v.parse::<u64>().expect("numeric value");
        }
    }
}

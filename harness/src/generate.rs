//! proptest generation of scenarios (state-machine style), the fuzz loop, and minimal failing cases written as JSON.
//!
//! A generated case is a list of abstract [`Op`]s over small index spaces (pod slots, service
//! slots). [`realize`] replays them against a model of what exists and turns each into a valid sim
//! step (or skips it when it does not apply, e.g. deleting a pod slot that is empty), so that
//! proptest's shrinking — dropping and simplifying ops — always yields a valid, smaller scenario.
//! Faults are armed from the start ([`Op::ArmFault`], the scenario's initial plan) and as
//! steps, which may also reach watches already open ([`Op::SetFault`] `open`); the server's
//! watch timeout and bookmark interval are generated too ([`Op::ServerTimeouts`]), so watches
//! are re-opened — and re-faulted — within a run. The plan is lifted (open watches included)
//! before the quiescence period, so convergence is always expected at the end. Every run
//! reports per kind how often its faults hit a watch; [`fuzz`] sums that into a
//! [`FaultCoverage`] and a scheduled kind that never fired fails the fuzz run. The minimal failing case is written as a scenario file that
//! `podgrant-harness scenario run` replays exactly (same seed, same result), then re-run in real
//! time with a pprof capture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use podgrant_sim::{
    CloseMode, CloseWhen, ErrorBody, Fault, FaultPlan, FaultRule, FloodSpec, Step, TimedStep,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::invariants::Budgets;
use crate::scenario::{self, RunOptions, Scenario, ScenarioReport, StoreKind, Subject};

/// Namespaces, pod slots and service slots of generated scenarios.
pub const NAMESPACES: [&str; 2] = ["alpha", "beta"];
pub const POD_SLOTS: u8 = 8;
pub const SERVICE_SLOTS: u8 = 3;

/// Hostile annotation values (each must be rejected, with the other services unaffected).
pub const HOSTILE: [(&str, &str); 8] = [
    ("podgrant.io/mysql-user", "bob'; DROP USER root; --"),
    ("podgrant.io/mysql-user", "a`b"),
    ("podgrant.io/mysql-user", "user\u{0}nul"),
    ("podgrant.io/mysql-user", "аdmin"), // Cyrillic а
    ("podgrant.io/mysql-privileges", "ALL PRIVILEGES"),
    ("podgrant.io/mysql-privileges", "SELECT, SUPER"),
    ("podgrant.io/mysql-database", "db/*comment*/"),
    ("podgrant.io/mysql-user", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
];

/// One abstract operation. Indices are taken modulo the slot counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    CreatePod {
        pod: u8,
        svc: u8,
        ready: bool,
        host_network: bool,
    },
    DeletePod {
        pod: u8,
    },
    Relabel {
        pod: u8,
        svc: u8,
    },
    SetReady {
        pod: u8,
        ready: bool,
    },
    SetTerminating {
        pod: u8,
    },
    /// Delete pod `from` and give its IP to a new pod in slot `to` selected by `svc`.
    RecycleIp {
        from: u8,
        to: u8,
        svc: u8,
    },
    CreateService {
        svc: u8,
    },
    DeleteService {
        svc: u8,
    },
    /// Change the privileges annotation (0: SELECT, 1: SELECT, INSERT, 2: SELECT, UPDATE, DELETE).
    SetPrivileges {
        svc: u8,
        variant: u8,
    },
    /// Set one hostile annotation on a service.
    Hostile {
        svc: u8,
        which: u8,
    },
    /// Change the password in the service's secret.
    RotatePassword {
        svc: u8,
    },
    /// Replace the fault plan; with `open`, watches already open re-check it at once.
    SetFault {
        kind: FaultKind,
        open: bool,
    },
    /// Add this fault to the plan armed before the engine starts.
    ArmFault {
        kind: FaultKind,
    },
    /// Server watch timeout and bookmark interval (indices into [`WATCH_TIMEOUTS`] and
    /// [`BOOKMARK_INTERVALS`]); the last one in a case wins.
    ServerTimeouts {
        watch: u8,
        bookmark: u8,
    },
    Flood {
        n: u16,
    },
    Compact,
}

/// Every fault the sim has, as generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    None,
    CloseAfterInitial,
    CloseAfterEvents,
    CloseReset,
    CloseProbability,
    CloseAfterDuration,
    Expire,
    Http429,
    Http500,
    Http503,
    Latency,
    Stall,
    Duplicate,
    Malformed,
}

pub const FAULT_KINDS: [FaultKind; 14] = [
    FaultKind::None,
    FaultKind::CloseAfterInitial,
    FaultKind::CloseAfterEvents,
    FaultKind::CloseReset,
    FaultKind::CloseProbability,
    FaultKind::CloseAfterDuration,
    FaultKind::Expire,
    FaultKind::Http429,
    FaultKind::Http500,
    FaultKind::Http503,
    FaultKind::Latency,
    FaultKind::Stall,
    FaultKind::Duplicate,
    FaultKind::Malformed,
];

impl FaultKind {
    /// The sim fault plan for this kind (pure).
    pub fn plan(self, seed: u64) -> FaultPlan {
        let close = |when, mode| Fault::CloseWatch { when, mode };
        let (fault, verb): (Option<Fault>, Option<&str>) = match self {
            FaultKind::None => (None, None),
            FaultKind::CloseAfterInitial => (
                Some(close(CloseWhen::AfterInitialEvents, CloseMode::Clean)),
                Some("watch"),
            ),
            FaultKind::CloseAfterEvents => (
                Some(close(CloseWhen::AfterEvents { n: 2 }, CloseMode::Clean)),
                Some("watch"),
            ),
            FaultKind::CloseReset => (
                Some(close(CloseWhen::AfterInitialEvents, CloseMode::Reset)),
                Some("watch"),
            ),
            FaultKind::CloseProbability => (
                Some(close(CloseWhen::Probability { p: 0.3 }, CloseMode::Clean)),
                Some("watch"),
            ),
            FaultKind::CloseAfterDuration => (
                Some(close(
                    CloseWhen::AfterDuration {
                        after: Duration::from_millis(500),
                    },
                    CloseMode::Clean,
                )),
                Some("watch"),
            ),
            FaultKind::Expire => (Some(Fault::Expire), Some("watch")),
            FaultKind::Http429 => (
                Some(Fault::HttpError {
                    code: 429,
                    fraction: 0.5,
                    retry_after_seconds: Some(1),
                    body: ErrorBody::Auto,
                }),
                None,
            ),
            FaultKind::Http500 => (
                Some(Fault::HttpError {
                    code: 500,
                    fraction: 0.3,
                    retry_after_seconds: None,
                    body: ErrorBody::Auto,
                }),
                None,
            ),
            FaultKind::Http503 => (
                Some(Fault::HttpError {
                    code: 503,
                    fraction: 0.5,
                    retry_after_seconds: None,
                    body: ErrorBody::Auto,
                }),
                None,
            ),
            FaultKind::Latency => (
                Some(Fault::Latency {
                    delay: Duration::from_millis(300),
                }),
                None,
            ),
            FaultKind::Stall => (
                Some(Fault::Stall {
                    headers: true,
                    duration: Some(Duration::from_secs(5)),
                }),
                Some("watch"),
            ),
            FaultKind::Duplicate => (Some(Fault::Duplicate { p: 0.3 }), Some("watch")),
            FaultKind::Malformed => (Some(Fault::MalformedLine { p: 0.1 }), Some("watch")),
        };
        let mut plan = FaultPlan::new(seed);
        if let Some(fault) = fault {
            let mut rule = FaultRule::new(fault);
            if let Some(v) = verb {
                rule = rule.verb(v);
            }
            // Never fault the engine's Event posts and leases: only pods/services/secrets traffic.
            for r in ["pods", "services", "secrets"] {
                let mut r2 = rule.clone();
                r2.resource = Some(r.into());
                plan = plan.rule(r2);
            }
        }
        plan
    }
}

/// Generated server watch timeouts: short enough that watches re-open within a run.
pub const WATCH_TIMEOUTS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(90),
];
/// Generated server bookmark intervals.
pub const BOOKMARK_INTERVALS: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(20),
    Duration::from_secs(60),
];

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    proptest::sample::select(FAULT_KINDS.to_vec())
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let pod = 0..POD_SLOTS;
    let svc = 0..SERVICE_SLOTS;
    prop_oneof![
        4 => (pod.clone(), svc.clone(), proptest::bool::weighted(0.8), proptest::bool::weighted(0.1))
            .prop_map(|(pod, svc, ready, host_network)| Op::CreatePod { pod, svc, ready, host_network }),
        2 => pod.clone().prop_map(|pod| Op::DeletePod { pod }),
        2 => (pod.clone(), svc.clone()).prop_map(|(pod, svc)| Op::Relabel { pod, svc }),
        2 => (pod.clone(), any::<bool>()).prop_map(|(pod, ready)| Op::SetReady { pod, ready }),
        1 => pod.clone().prop_map(|pod| Op::SetTerminating { pod }),
        2 => (pod.clone(), pod.clone(), svc.clone()).prop_map(|(from, to, svc)| Op::RecycleIp { from, to, svc }),
        1 => svc.clone().prop_map(|svc| Op::CreateService { svc }),
        1 => svc.clone().prop_map(|svc| Op::DeleteService { svc }),
        1 => (svc.clone(), 0..3u8).prop_map(|(svc, variant)| Op::SetPrivileges { svc, variant }),
        1 => (svc.clone(), 0..HOSTILE.len() as u8).prop_map(|(svc, which)| Op::Hostile { svc, which }),
        1 => svc.prop_map(|svc| Op::RotatePassword { svc }),
        2 => (fault_kind(), any::<bool>()).prop_map(|(kind, open)| Op::SetFault { kind, open }),
        1 => (1..2000u16).prop_map(|n| Op::Flood { n }),
        1 => Just(Op::Compact),
    ]
}

/// A generated case: ops with the simulated gap (ms) before each. Most cases start with a
/// fault armed from the start and server timeouts (shrinking drops them like any op).
pub fn case_strategy(max_ops: usize) -> impl Strategy<Value = Vec<(u16, Op)>> {
    (
        proptest::option::weighted(0.8, fault_kind()),
        proptest::option::weighted(
            0.7,
            (
                0..WATCH_TIMEOUTS.len() as u8,
                0..BOOKMARK_INTERVALS.len() as u8,
            ),
        ),
        proptest::collection::vec((0..4000u16, op_strategy()), 1..=max_ops),
    )
        .prop_map(|(arm, timeouts, ops)| {
            let head = arm.map(|kind| (0, Op::ArmFault { kind }));
            let timeouts =
                timeouts.map(|(watch, bookmark)| (0, Op::ServerTimeouts { watch, bookmark }));
            head.into_iter().chain(timeouts).chain(ops).collect()
        })
}

fn ns_of(slot: u8) -> &'static str {
    NAMESPACES[(slot as usize) % NAMESPACES.len()]
}
fn pod_name(slot: u8) -> String {
    format!("pod-{slot}")
}
/// The `n`th password of service slot `svc`'s Secret: SQL-hostile on purpose (quotes, `;`,
/// comment openers, non-ASCII), so every generated run shows that no password is ever parsed as
/// SQL and the hash the engine sends matches what the client logs in with.
pub fn secret_password(svc: u8, n: u32) -> String {
    const HOSTILE: [&str; 8] = [
        "'",
        "\"",
        ";",
        "--",
        "/*",
        "ü密",
        "' OR '1'='1",
        "*/; DROP USER root; -- \"",
    ];
    let tail = HOSTILE[(usize::from(svc) + n as usize) % HOSTILE.len()];
    format!("pw-{svc}-{n}{tail}")
}
fn svc_name(slot: u8) -> String {
    format!("svc-{slot}")
}
fn app(svc: u8) -> BTreeMap<String, String> {
    [("app".to_string(), format!("app-{svc}"))].into()
}

fn service_step(svc: u8, ns: &str) -> Step {
    Step::create_service(ns, &svc_name(svc), app(svc)).annotations([
        (
            "podgrant.io/mysql-user",
            format!("{}_user{svc}", ns.replace('-', "_")),
        ),
        (
            "podgrant.io/mysql-database",
            format!("{}_db{svc}", ns.replace('-', "_")),
        ),
        ("podgrant.io/mysql-privileges", "SELECT, INSERT".to_string()),
        (
            "podgrant.io/mysql-password-secret",
            format!("{}-pw/password", svc_name(svc)),
        ),
    ])
}

/// Pure: turns ops into a valid scenario (same ops + seed → same scenario).
pub fn realize(name: &str, seed: u64, ops: &[(u16, Op)]) -> Scenario {
    // Model of what exists: pod slot → (namespace, has IP to recycle), service slots per namespace.
    let mut pods: BTreeMap<u8, &'static str> = BTreeMap::new();
    let mut services: BTreeSet<(&'static str, u8)> = BTreeSet::new();
    let mut rotation: BTreeMap<(&str, u8), u32> = BTreeMap::new();
    let mut initial = Vec::new();
    for ns in NAMESPACES {
        initial.push(Step::create_namespace(ns));
        for svc in 0..SERVICE_SLOTS {
            initial.push(Step::create_secret(
                ns,
                &format!("{}-pw", svc_name(svc)),
                [("password", secret_password(svc, 0))],
            ));
        }
    }
    // Two services exist from the start in the first namespace.
    for svc in 0..2 {
        initial.push(service_step(svc, NAMESPACES[0]));
        services.insert((NAMESPACES[0], svc));
    }
    let mut armed = FaultPlan::new(seed);
    let (mut watch_timeout, mut bookmark_interval) = (None, None);
    let mut steps = Vec::new();
    let mut at = Duration::ZERO;
    let mut push = |at: Duration, step: Step| steps.push(TimedStep { at, step });
    for (gap, op) in ops {
        at += Duration::from_millis(u64::from(*gap));
        match *op {
            Op::CreatePod {
                pod,
                svc,
                ready,
                host_network,
            } => {
                if pods.contains_key(&pod) {
                    continue;
                }
                let ns = ns_of(pod);
                pods.insert(pod, ns);
                push(
                    at,
                    Step::create_pod(ns, &pod_name(pod))
                        .labels(app(svc % SERVICE_SLOTS))
                        .ready(ready)
                        .host_network(host_network),
                );
            }
            Op::DeletePod { pod } => {
                if let Some(ns) = pods.remove(&pod) {
                    push(at, Step::delete_pod(ns, &pod_name(pod)));
                }
            }
            Op::Relabel { pod, svc } => {
                if let Some(ns) = pods.get(&pod) {
                    push(
                        at,
                        Step::relabel_pod(ns, &pod_name(pod), app(svc % SERVICE_SLOTS)),
                    );
                }
            }
            Op::SetReady { pod, ready } => {
                if let Some(ns) = pods.get(&pod) {
                    push(at, Step::set_pod_ready(ns, &pod_name(pod), ready));
                }
            }
            Op::SetTerminating { pod } => {
                if let Some(ns) = pods.get(&pod) {
                    push(at, Step::set_pod_terminating(ns, &pod_name(pod)));
                }
            }
            Op::RecycleIp { from, to, svc } => {
                // Same namespace only (the sim recycles within one); `to` must be free.
                let Some(ns) = pods.get(&from).copied() else {
                    continue;
                };
                if from == to || pods.contains_key(&to) || ns_of(to) != ns {
                    continue;
                }
                pods.remove(&from);
                pods.insert(to, ns);
                push(
                    at,
                    Step::RecycleIp {
                        namespace: ns.into(),
                        from: pod_name(from),
                        to: pod_name(to),
                        labels: app(svc % SERVICE_SLOTS),
                    },
                );
            }
            Op::CreateService { svc } => {
                let ns = NAMESPACES[(svc as usize + 1) % NAMESPACES.len()];
                let key = (ns, svc % SERVICE_SLOTS);
                if services.insert(key) {
                    push(at, service_step(key.1, ns));
                }
            }
            Op::DeleteService { svc } => {
                if let Some(key) = services
                    .iter()
                    .find(|(_, s)| *s == svc % SERVICE_SLOTS)
                    .copied()
                {
                    services.remove(&key);
                    push(at, Step::delete_service(key.0, &svc_name(key.1)));
                }
            }
            Op::SetPrivileges { svc, variant } => {
                if let Some((ns, s)) = services
                    .iter()
                    .find(|(_, s)| *s == svc % SERVICE_SLOTS)
                    .copied()
                {
                    let p = ["SELECT", "SELECT, INSERT", "SELECT, UPDATE, DELETE"]
                        [variant as usize % 3];
                    push(
                        at,
                        Step::AnnotateService {
                            namespace: ns.into(),
                            name: svc_name(s),
                            annotations: [(
                                "podgrant.io/mysql-privileges".to_string(),
                                Some(p.to_string()),
                            )]
                            .into(),
                        },
                    );
                }
            }
            Op::Hostile { svc, which } => {
                if let Some((ns, s)) = services
                    .iter()
                    .find(|(_, s)| *s == svc % SERVICE_SLOTS)
                    .copied()
                {
                    let (k, v) = HOSTILE[which as usize % HOSTILE.len()];
                    push(
                        at,
                        Step::AnnotateService {
                            namespace: ns.into(),
                            name: svc_name(s),
                            annotations: [(k.to_string(), Some(v.to_string()))].into(),
                        },
                    );
                }
            }
            Op::RotatePassword { svc } => {
                let ns = NAMESPACES[0];
                let s = svc % SERVICE_SLOTS;
                let n = rotation.entry((ns, s)).or_insert(0);
                *n += 1;
                let secret = format!("{}-pw", svc_name(s));
                push(at, Step::delete_secret(ns, &secret));
                push(
                    at,
                    Step::create_secret(ns, &secret, [("password", secret_password(s, *n))]),
                );
            }
            Op::SetFault { kind, open } => {
                let mut plan = kind.plan(seed);
                plan.apply_to_open_watches = open;
                push(at, Step::SetFaults { plan });
            }
            Op::ArmFault { kind } => armed.rules.extend(kind.plan(seed).rules),
            Op::ServerTimeouts { watch, bookmark } => {
                watch_timeout = Some(WATCH_TIMEOUTS[watch as usize % WATCH_TIMEOUTS.len()]);
                bookmark_interval =
                    Some(BOOKMARK_INTERVALS[bookmark as usize % BOOKMARK_INTERVALS.len()]);
            }
            Op::Flood { n } => push(
                at,
                Step::Flood(FloodSpec::burst(NAMESPACES[0], u64::from(n))),
            ),
            Op::Compact => push(at, Step::Compact),
        }
    }
    // Lift every fault before quiescence, on open watches too: convergence is expected once
    // the cluster is healthy.
    at += Duration::from_secs(1);
    steps.push(TimedStep {
        at,
        step: Step::SetFaults {
            plan: FaultPlan::new(seed).to_open_watches(),
        },
    });
    Scenario {
        name: name.to_string(),
        description: format!("generated by proptest (seed {seed}, {} ops)", ops.len()),
        seed,
        store: StoreKind::Memory,
        initial,
        steps,
        quiesce: Duration::from_secs(45),
        // Counted from when the server let the engine see the change (a full list or a live
        // watch, `SafetyTracker`), so a server's failures don't eat into it: debounce plus a
        // reconcile, with room for a relist the engine chooses to make.
        safety_grace: Duration::from_secs(10),
        budgets: fuzz_budgets(),
        engine: Default::default(),
        store_drift: Vec::new(),
        oracle: crate::truth::OracleOptions::default(),
        faults: armed,
        watch_timeout,
        bookmark_interval,
    }
}

/// Budgets of generated scenarios (over every sliding window of simulated time).
pub fn fuzz_budgets() -> Budgets {
    Budgets {
        max_rewatch_per_sec: Some(2.0),
        max_requests_per_sec: Some(10.0),
        max_reconciles_per_sec: Some(2.0),
        max_statements_per_sec: Some(50.0),
        // Checked only when a case is re-run in real time (`scenario run --real-time`, the fuzz
        // re-run). Debug build here: basic-churn measured 24.6 ms of scenario-thread CPU per event
        // over the run (the harness's own 100 ms oracle ticks dominate), 1.6 % idle, +13 MiB RSS.
        max_cpu_us_per_event: Some(100_000.0),
        max_idle_cpu_share: Some(0.25),
        max_rss_growth_kib: Some(256 * 1024),
        ..Budgets::default()
    }
}

/// One fault kind over a corpus.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KindCoverage {
    /// Cases that scheduled the kind.
    pub cases_scheduled: u64,
    /// Of those, cases in which it hit a watch at least once.
    pub cases_fired: u64,
    /// Times it hit a watch (its request or its open stream), over every case.
    pub fired_while_watching: u64,
}

/// Per fault kind (as the sim counts them), what a corpus scheduled and what fired while the
/// subject was watching.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FaultCoverage {
    pub kinds: BTreeMap<String, KindCoverage>,
}

impl FaultCoverage {
    /// Add one case's report.
    pub fn add(&mut self, report: &ScenarioReport) {
        for (kind, n) in &report.faults_fired_while_watching {
            self.kinds
                .entry(kind.clone())
                .or_default()
                .fired_while_watching += n;
        }
        for kind in &report.faults_scheduled {
            let k = self.kinds.entry(kind.clone()).or_default();
            k.cases_scheduled += 1;
            if report
                .faults_fired_while_watching
                .get(kind)
                .is_some_and(|n| *n > 0)
            {
                k.cases_fired += 1;
            }
        }
    }

    /// Kinds scheduled somewhere in the corpus that never hit a watch.
    pub fn unfired(&self) -> Vec<&str> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.cases_scheduled > 0 && k.fired_while_watching == 0)
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

impl std::fmt::Display for FaultCoverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "fault coverage (kind: cases scheduled, cases where it hit a watch, hits on watches):"
        )?;
        for (name, k) in &self.kinds {
            writeln!(
                f,
                "  {name:<18} {:>6} {:>6} {:>8}{}",
                k.cases_scheduled,
                k.cases_fired,
                k.fired_while_watching,
                if k.cases_scheduled > 0 && k.fired_while_watching == 0 {
                    "  NEVER FIRED"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

/// Outcome of a fuzz run.
#[derive(Debug)]
pub struct FuzzOutcome {
    pub cases: u32,
    pub runs: u64,
    /// Cases that ran at once.
    pub jobs: usize,
    pub wall: Duration,
    /// Fault coverage of the generated corpus (shrinking runs excluded).
    pub coverage: FaultCoverage,
    /// The minimal failing case, if any: its file and its real-time re-run.
    pub failure: Option<FuzzFailure>,
}

#[derive(Debug)]
pub struct FuzzFailure {
    pub file: PathBuf,
    pub reason: String,
    pub paused_report: Box<ScenarioReport>,
    pub real_time_report: Option<Box<ScenarioReport>>,
}

/// Errors of the fuzz loop itself.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("proptest aborted: {0}")]
    Aborted(String),
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed.wrapping_add(i as u64 * 0x9e37_79b9)).to_le_bytes());
    }
    b
}

/// What to fuzz and how.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    pub cases: u32,
    pub seed: u64,
    /// Most ops per generated scenario.
    pub max_ops: usize,
    /// The engine, or a planted bug (to check that the fuzzer finds and shrinks it).
    pub subject: Subject,
    /// Re-run the minimal failing case in real time with a capture (takes its full
    /// simulated duration in wall time).
    pub real_time_rerun: bool,
    pub artifacts: PathBuf,
    /// The store every generated case runs on. MySQL cases run in real time (their full
    /// simulated duration each), each in its own run scope on the server, removed afterwards.
    pub store: StoreKind,
    /// Rules armed from the start of every generated case, on top of the generated ones.
    pub arm: FaultPlan,
    /// Cases run at once (each on its own thread, runtime and sim); the outcome is the same
    /// for any value ([`default_jobs`]: one per CPU).
    pub jobs: usize,
}

/// How many cases run at once by default: one per CPU.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The scenario a generated case runs (pure: same ops and options, same scenario).
fn case_scenario(opts: &FuzzOptions, name: &str, ops: &[(u16, Op)]) -> Scenario {
    let mut sc = realize(name, opts.seed, ops);
    sc.store = opts.store;
    sc.faults.rules.extend(opts.arm.rules.iter().cloned());
    sc
}

/// proptest's runner for a fuzz seed: its cases come from [`next_case`], in proptest's order.
fn case_runner(cases: u32, seed: u64) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed));
    TestRunner::new_with_rng(config, rng)
}

/// The runner's next case, as `TestRunner::run` draws it: reseed from its own stream, then
/// generate (so a seed's cases are those of a plain proptest run over [`case_strategy`]).
fn next_case<S: Strategy>(runner: &mut TestRunner, strategy: &S) -> Result<S::Tree, FuzzError> {
    let reseeded = runner.new_rng();
    *runner.rng() = reseeded;
    strategy
        .new_tree(runner)
        .map_err(|e| FuzzError::Aborted(e.to_string()))
}

/// The first `n` cases `scenario fuzz --seed SEED --max-ops MAX_OPS` runs, in its order.
pub fn generated_cases(
    seed: u64,
    max_ops: usize,
    n: u32,
) -> Result<Vec<Vec<(u16, Op)>>, FuzzError> {
    let mut runner = case_runner(n, seed);
    let strategy = case_strategy(max_ops);
    (0..n)
        .map(|_| next_case(&mut runner, &strategy).map(|t| t.current()))
        .collect()
}

/// Runs one generated case as the fuzz loop does (paused clock, report in `dir`); `Err` is a
/// run that could not start, which fails the case as proptest would (its message is the reason).
pub fn run_generated(
    opts: &FuzzOptions,
    ops: &[(u16, Op)],
    dir: &std::path::Path,
) -> Result<ScenarioReport, String> {
    let sc = case_scenario(opts, &format!("fuzz-{}", opts.seed), ops);
    let mut run_opts = RunOptions::paused(dir);
    run_opts.subject = opts.subject;
    scenario::run(&sc, &run_opts).map_err(|e| e.to_string())
}

/// A report's verdict as proptest sees it: the violations, joined, fail the case.
fn verdict(report: &ScenarioReport) -> Result<(), String> {
    if report.passed {
        Ok(())
    } else {
        Err(report
            .violations
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("; "))
    }
}

/// Proptest's shrink loop (`TestRunner::shrink`, proptest 1.x), step for step: simplify while
/// the case still fails, complicate when it passes, at most `max_iters` runs (then back to the
/// last failing value). Returns the last failure's reason, if a simpler case failed.
fn shrink<T: ValueTree>(
    tree: &mut T,
    max_iters: u32,
    mut test: impl FnMut(T::Value) -> Result<(), String>,
) -> Option<String> {
    let mut last_failure = None;
    let mut iterations = 0;
    if !tree.simplify() {
        return None;
    }
    loop {
        if iterations >= max_iters {
            while tree.complicate() {}
            break;
        }
        iterations += 1;
        match test(tree.current()) {
            Ok(()) => {
                if !tree.complicate() {
                    break;
                }
            }
            Err(why) => {
                last_failure = Some(why);
                if !tree.simplify() {
                    break;
                }
            }
        }
    }
    last_failure
}

/// A generated case: ops with the simulated gap (ms) before each.
pub type Case = Vec<(u16, Op)>;

/// What [`search`] runs on a case: `Some(worker)`, or `None` while shrinking.
pub type RunCase<'a, R> = dyn Fn(Option<usize>, &[(u16, Op)]) -> Result<R, String> + Sync + 'a;

/// What [`search`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Runs, shrinking included (cases past the first failure are not counted).
    pub runs: u64,
    /// The first failing case (by index), shrunk, with the last failure's reason.
    pub failure: Option<(Vec<(u16, Op)>, String)>,
}

/// The search, over any test: proptest's cases for `seed` (see [`next_case`]), `run` on `jobs`
/// threads at once (`Some(worker)`; `None` while shrinking), each result handed to `judge` on
/// this thread in case order (`shrinking` false), so the first failing case by index is the one
/// a sequential run finds, whatever `jobs` is; then proptest's shrink loop on it, sequential
/// (`shrinking` true). `on_case` after every judged run (runs so far, shrinking). A panic in
/// `run` fails its case.
pub fn search<R: Send>(
    cases: u32,
    seed: u64,
    max_ops: usize,
    jobs: usize,
    run: &RunCase<'_, R>,
    judge: &mut dyn FnMut(R, bool) -> Result<(), String>,
    on_case: &mut dyn FnMut(u64, bool),
) -> Result<Search, FuzzError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Mutex};

    let guarded = |worker: Option<usize>, ops: &[(u16, Op)]| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(worker, ops)))
            .unwrap_or_else(|_| Err("the case panicked".to_string()))
    };
    let mut runner = case_runner(cases, seed);
    let max_shrink_iters = runner.config().max_shrink_iters();
    let strategy = case_strategy(max_ops);
    let jobs = jobs.max(1);
    let mut runs = 0u64;
    let (job_tx, job_rx) = mpsc::channel::<(u32, Vec<(u16, Op)>)>();
    let job_rx = Mutex::new(job_rx);
    let stop = AtomicBool::new(false);
    let first_failure = std::thread::scope(|scope| -> Result<_, FuzzError> {
        let (done_tx, done_rx) = mpsc::channel::<(u32, Result<R, String>)>();
        for w in 0..jobs {
            let (job_rx, done_tx, stop, guarded) = (&job_rx, done_tx.clone(), &stop, &guarded);
            std::thread::Builder::new()
                .name(format!("pgh-fuzz-{w}"))
                .spawn_scoped(scope, move || loop {
                    let job = job_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((index, ops)) = job else { break };
                    if stop.load(Ordering::Relaxed) {
                        continue; // later than a failure: not needed
                    }
                    if done_tx.send((index, guarded(Some(w), &ops))).is_err() {
                        break;
                    }
                })
                .map_err(|e| FuzzError::Aborted(format!("starting a fuzz worker: {e}")))?;
        }
        drop(done_tx);
        // Cases generated ahead of the next one judged: enough to keep every worker busy
        // while a slow case (a flood) holds up the order.
        let ahead = 4 * jobs as u32;
        let mut trees = BTreeMap::new();
        let mut finished = BTreeMap::new();
        let (mut generated, mut judged) = (0u32, 0u32);
        let mut failure = None;
        while failure.is_none() {
            while generated < cases && generated - judged < ahead {
                let tree = next_case(&mut runner, &strategy)?;
                if job_tx.send((generated, tree.current())).is_err() {
                    return Err(FuzzError::Aborted("every fuzz worker stopped".into()));
                }
                trees.insert(generated, tree);
                generated += 1;
            }
            if judged == generated {
                break;
            }
            let Ok((index, result)) = done_rx.recv() else {
                return Err(FuzzError::Aborted("every fuzz worker stopped".into()));
            };
            finished.insert(index, result);
            while let Some(result) = finished.remove(&judged) {
                let tree = trees
                    .remove(&judged)
                    .expect("every judged case was generated");
                judged += 1;
                runs += 1;
                let verdict = result.and_then(|r| judge(r, false));
                on_case(runs, false);
                if let Err(reason) = verdict {
                    stop.store(true, Ordering::Relaxed);
                    failure = Some((tree, reason));
                    break;
                }
            }
        }
        drop(job_tx);
        Ok(failure)
    })?;
    let failure = first_failure.map(|(mut tree, reason)| {
        let reason = shrink(&mut tree, max_shrink_iters, |ops| {
            runs += 1;
            let verdict = guarded(None, &ops).and_then(|r| judge(r, true));
            on_case(runs, true);
            verdict
        })
        .unwrap_or(reason);
        (tree.current(), reason)
    });
    Ok(Search { runs, failure })
}

/// Runs `cases` generated scenarios under the paused clock (deterministic for a seed); on a
/// failure, shrinks it, writes the minimal case as `minimal-<seed>.json` under `artifacts`,
/// replays that file under the paused clock with a capture, and (optionally) re-runs it in real
/// time with a capture. `on_case` is called after every run (with the number of runs so far
/// and whether a failure has been found, i.e. whether proptest is shrinking).
///
/// The cases are proptest's own, in proptest's order, run [`FuzzOptions::jobs`] at once, each
/// on its own thread, runtime and sim, and judged in case order ([`search`]): the first
/// failure, its shrinking, the coverage (of the cases up to the first failure) and the counts
/// are those of a one-at-a-time run.
pub fn fuzz(
    opts: &FuzzOptions,
    on_case: &mut dyn FnMut(u64, bool),
) -> Result<FuzzOutcome, FuzzError> {
    let (cases, seed, artifacts) = (opts.cases, opts.seed, opts.artifacts.as_path());
    let start = std::time::Instant::now();
    let jobs = opts.jobs.max(1);
    let case_dir = artifacts.join("cases");
    let dirs: Vec<PathBuf> = (0..jobs)
        .map(|w| {
            case_dir.join(if jobs == 1 {
                "last".into()
            } else {
                format!("last-{w}")
            })
        })
        .collect();
    let shrink_dir = case_dir.join("shrink");
    let mut coverage = FaultCoverage::default();
    let found = search(
        cases,
        seed,
        opts.max_ops,
        jobs,
        &|worker, ops| run_generated(opts, ops, worker.map_or(&shrink_dir, |w| &dirs[w])),
        &mut |report, shrinking| {
            if !shrinking {
                coverage.add(&report);
            }
            verdict(&report)
        },
        on_case,
    )?;
    let failure = match found.failure {
        None => None,
        Some((ops, reason)) => {
            let sc = case_scenario(opts, &format!("fuzz-{seed}-minimal"), &ops);
            std::fs::create_dir_all(artifacts).map_err(|source| FuzzError::Write {
                path: artifacts.to_path_buf(),
                source,
            })?;
            let file = artifacts.join(format!("minimal-{seed}.json"));
            std::fs::write(&file, sc.to_json()).map_err(|source| FuzzError::Write {
                path: file.clone(),
                source,
            })?;
            // Replay exactly what `scenario run FILE` will run.
            let replay = Scenario::load(&file)?;
            let mut paused_opts = RunOptions::paused(artifacts.join("minimal-paused"));
            paused_opts.subject = opts.subject;
            paused_opts.capture = true;
            let paused = scenario::run(&replay, &paused_opts)?;
            let real = if opts.real_time_rerun {
                let mut o = RunOptions::real_time(artifacts.join("minimal-real-time"));
                o.subject = opts.subject;
                Some(scenario::run(&replay, &o)?)
            } else {
                None
            };
            Some(FuzzFailure {
                file,
                reason,
                paused_report: Box::new(paused),
                real_time_report: real.map(Box::new),
            })
        }
    };
    Ok(FuzzOutcome {
        cases,
        runs: found.runs,
        jobs,
        wall: start.elapsed(),
        coverage,
        failure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn realize_skips_ops_that_do_not_apply_and_is_deterministic() {
        let ops = vec![
            (0, Op::DeletePod { pod: 3 }), // nothing there: skipped
            (
                100,
                Op::CreatePod {
                    pod: 3,
                    svc: 0,
                    ready: true,
                    host_network: false,
                },
            ),
            (
                100,
                Op::CreatePod {
                    pod: 3,
                    svc: 1,
                    ready: true,
                    host_network: false,
                },
            ), // taken: skipped
            (
                100,
                Op::RecycleIp {
                    from: 3,
                    to: 5,
                    svc: 1,
                },
            ), // pod-5 is in the same namespace
            (
                100,
                Op::SetFault {
                    kind: FaultKind::CloseAfterInitial,
                    open: true,
                },
            ),
        ];
        let a = realize("t", 9, &ops);
        let b = realize("t", 9, &ops);
        assert_eq!(a, b);
        let kinds: Vec<String> = a
            .steps
            .iter()
            .map(|s| {
                serde_json::to_value(&s.step).unwrap()["op"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            ["create_pod", "recycle_ip", "set_faults", "set_faults"]
        );
        // The last step lifts every fault.
        match &a.steps.last().unwrap().step {
            Step::SetFaults { plan } => assert!(plan.rules.is_empty()),
            other => panic!("{other:?}"),
        }
        // JSON round-trip: what `scenario run` replays is exactly this.
        let back = Scenario::from_json(Path::new("x"), &a.to_json()).expect("parses");
        assert_eq!(back, a);
    }

    /// A cheap property in place of a scenario: two big floods in one case fail it.
    fn two_big_floods(ops: &[(u16, Op)]) -> Result<(), String> {
        let big = ops
            .iter()
            .filter(|(_, op)| matches!(op, Op::Flood { n } if *n > 1000))
            .count();
        if big >= 2 {
            Err(format!("{big} big floods"))
        } else {
            Ok(())
        }
    }

    /// Every case proptest's own `TestRunner::run` tests, in order (shrinking included), and
    /// its verdict.
    type Prop = fn(&[(u16, Op)]) -> Result<(), String>;

    fn proptest_run(cases: u32, seed: u64, prop: Prop) -> (Vec<Case>, Option<(Case, String)>) {
        use proptest::test_runner::{TestCaseError, TestError};
        let seen = std::cell::RefCell::new(Vec::new());
        let result = case_runner(cases, seed).run(&case_strategy(24), |ops| {
            seen.borrow_mut().push(ops.clone());
            prop(&ops).map_err(TestCaseError::fail)
        });
        let failure = match result {
            Ok(()) => None,
            Err(TestError::Fail(reason, ops)) => Some((ops, reason.to_string())),
            Err(e) => panic!("{e}"),
        };
        (seen.into_inner(), failure)
    }

    #[test]
    fn search_tests_exactly_what_proptest_does_whatever_the_jobs() {
        for (cases, seed, prop) in [
            (
                300,
                11,
                two_big_floods as fn(&[(u16, Op)]) -> Result<(), String>,
            ),
            (40, 3, |_: &[(u16, Op)]| Ok(())),
        ] {
            let (theirs, their_failure) = proptest_run(cases, seed, prop);
            if cases == 300 {
                assert!(their_failure.is_some(), "the property must fail somewhere");
            }
            for jobs in [1, 2, 5] {
                let mut judged = Vec::new();
                let mut calls = Vec::new();
                let found = search(
                    cases,
                    seed,
                    24,
                    jobs,
                    &|_, ops| Ok(ops.to_vec()),
                    &mut |ops, _| {
                        let verdict = prop(&ops);
                        judged.push(ops);
                        verdict
                    },
                    &mut |runs, _| calls.push(runs),
                )
                .expect("search runs");
                assert_eq!(judged, theirs, "jobs {jobs}: the cases, in order");
                assert_eq!(found.failure, their_failure, "jobs {jobs}: the shrunk case");
                assert_eq!(found.runs, theirs.len() as u64, "jobs {jobs}");
                assert_eq!(calls, (1..=found.runs).collect::<Vec<_>>());
            }
        }
        // The cases `generated_cases` lists are the fuzz loop's.
        let (theirs, _) = proptest_run(40, 3, |_| Ok(()));
        assert_eq!(generated_cases(3, 24, 40).expect("generates"), theirs);
    }

    #[test]
    fn a_panicking_case_fails_and_is_shrunk() {
        let found = search(
            20,
            1,
            24,
            2,
            &|_, ops| {
                assert!(ops.len() < 3, "boom");
                Ok(())
            },
            &mut |(), _| Ok(()),
            &mut |_, _| {},
        )
        .expect("search runs");
        let (ops, reason) = found.failure.expect("a case with 3 ops panics");
        assert_eq!(
            ops.len(),
            3,
            "shrunk to the smallest panicking case: {ops:?}"
        );
        assert_eq!(reason, "the case panicked");
    }

    #[test]
    fn every_fault_kind_has_a_plan() {
        for k in FAULT_KINDS {
            let p = k.plan(1);
            assert_eq!(p.rules.is_empty(), k == FaultKind::None, "{k:?}");
        }
    }
}

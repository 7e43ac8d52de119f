//! Scenarios: a JSON file (initial cluster, timed steps, fault changes, budgets, store) and the runner that checks every invariant.
//!
//! # Format (see `harness/scenarios/*.json`)
//!
//! ```json
//! {
//!   "name": "relabel-under-watch-closes",
//!   "description": "free text",
//!   "seed": 7,
//!   "store": "memory",                       // or "mysql" (forces real time)
//!   "initial": [ {"op": "create_namespace", "name": "shop"}, … ],   // sim steps, before the engine starts
//!   "steps": [ {"at": "2s", "step": {"op": "relabel_pod", …}},       // sim steps at simulated offsets;
//!              {"at": "5s", "step": {"op": "set_faults", "plan": {…}}} ],  // fault-plan changes are steps too
//!   "quiesce": "40s",                        // after the last step, before convergence is checked
//!   "safety_grace": "3s",                    // how long an account may stay unsafe (debounce + latency)
//!   "budgets": {"max_rewatch_per_sec": 1.0, "window": "10s", …},   // checked over every sliding window
//!   "engine": {"resync_interval": "10s", "debounce": "250ms"},   // optional engine timing
//!   "store_drift": [{"at": "20s", "drift": {"op": "drop_account", …}}],   // behind the engine's back
//!   "oracle": {"tenancy": true},
//!   "faults": {"rules": […], …},             // fault plan armed before the engine starts (default none)
//!   "watch_timeout": "20s",                  // server-side cap on a watch's life (default 1800 s)
//!   "bookmark_interval": "10s",              // server BOOKMARK period (default 60 s)
//! }
//! ```
//!
//! Steps are the sim's own scenario steps ([`podgrant_sim::Step`]): create/delete/relabel pods and
//! services, readiness, phase, terminating, IPs and IP recycling, secrets, annotations,
//! `set_faults`, `flood`, `compact`. `store_drift` steps ([`crate::drift`]) change the grant
//! store itself; each that expects a repair must be repaired within the resync interval plus the
//! safety grace ([`Invariant::DriftRepair`]). Convergence and safety are judged by the
//! independent oracle ([`crate::truth`]), never by core's own decision functions.
//!
//! # Runner
//!
//! The engine, the sim (in-process, no sockets) and the steps share one current-thread runtime
//! on a thread of its own (named `pg-scn-NNNN`). By default tokio's clock is **paused**: simulated time jumps
//! whenever everything waits, so a minute of cluster life takes milliseconds and the counted work
//! per simulated second (requests to the sim, watches, reconciles, statements) is deterministic.
//! A busy loop stops simulated time from advancing at all; a wall-clock watchdog on another
//! thread notices, samples the stuck thread with pprof, and stops the run with a
//! [`Invariant::BusyLoop`] (or [`Invariant::RewatchRate`] when the frozen time was spent
//! re-watching) violation instead of hanging.
//!
//! Every report counts, per fault kind, the faults the sim dealt (`faults_fired`) and the part
//! of them that hit a watch of the subject — its request or its open stream
//! (`faults_fired_while_watching`) — next to the kinds the scenario scheduled, so a run proves
//! its faults reached the engine.
//!
//! Every run can be profiled ([`RunOptions::capture`]); on any violation the capture's artifacts
//! (`profile.pb.gz`, `flamegraph.svg`, `top.txt`) are written next to `report.txt`/`report.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::grant::{AccountKey, Action, Observed};
use podgrant_core::metrics::Metrics;
use podgrant_core::store::memory::MemoryState;
use podgrant_core::store::{ApplyReport, GrantStore, MemoryStore, StoreError};
use podgrant_sim::{FaultPlan, Sim, Step, TimedStep};
use serde::{Deserialize, Serialize};

use crate::capture::{Artifacts, Capture, DEFAULT_FREQUENCY};
use crate::cpu::{CpuMeter, CpuReport};
use crate::drift::TimedDrift;
use crate::invariants::{
    check_convergence, check_convergence_observed, check_ledger, check_work_windows,
    repair_problems, Budgets, Invariant, PendingRepair, SafetyTracker, Violation, WorkCounts,
    WorkSample,
};
use crate::truth::{OracleConfig, OracleOptions, Truth};

/// Thread-name prefix of the runtimes scenarios run on. Each run gets its own name
/// (`pg-scn-0001`, fixed width), so that runs in parallel never count each other's CPU.
pub const SCENARIO_THREADS: &str = "pg-scn-";

static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

fn run_thread_name() -> String {
    let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed) % 10_000;
    format!("{SCENARIO_THREADS}{n:04}")
}

/// Errors that stop a scenario from running at all (bad file, setup failure) — not violations.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading scenario {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("scenario {name}: initial step {index} ({step}): {message}")]
    Initial {
        name: String,
        index: usize,
        step: String,
        message: String,
    },
    #[error("scenario {name}: step {index} at {at:?}: {message}")]
    Step {
        name: String,
        index: usize,
        at: Duration,
        message: String,
    },
    #[error("scenario {name}: steps must be in time order (step {index} at {at:?} is before the previous one)")]
    Order {
        name: String,
        index: usize,
        at: Duration,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("scenario {name}: store_drift {index}: {message}")]
    Drift {
        name: String,
        index: usize,
        message: String,
    },
    #[error("runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error(transparent)]
    Cpu(#[from] crate::cpu::CpuError),
    #[error(transparent)]
    Truth(#[from] crate::truth::TruthError),
    #[error(transparent)]
    Mysql(#[from] crate::mysql::MysqlError),
    #[error("store: {0}")]
    Store(String),
    #[error(
        "store \"mysql\": no MySQL available (MYSQL_URL unset, no mariadbd/mysqld, no Docker)"
    )]
    NoMysql,
}

/// Which grant store the engine uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Memory,
    Mysql,
}

fn default_quiesce() -> Duration {
    Duration::from_secs(40)
}
fn default_grace() -> Duration {
    Duration::from_secs(3)
}

fn no_faults(p: &FaultPlan) -> bool {
    *p == FaultPlan::default()
}

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub store: StoreKind,
    /// Applied before the engine starts.
    #[serde(default)]
    pub initial: Vec<Step>,
    /// Applied at their offsets (simulated time) after the engine starts.
    #[serde(default)]
    pub steps: Vec<TimedStep>,
    /// Simulated time after the last step before convergence is checked.
    #[serde(default = "default_quiesce", with = "humantime_serde")]
    pub quiesce: Duration,
    /// How long an owned account may stay unsafe before it is a violation, counted from when
    /// the server let the subject see why (see [`SafetyTracker`]).
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub safety_grace: Duration,
    #[serde(default)]
    pub budgets: Budgets,
    /// Engine timing (resync interval, debounce); default: the engine's own.
    #[serde(default, skip_serializing_if = "EngineTuning::is_default")]
    pub engine: EngineTuning,
    /// Changes to the grant store behind the engine's back, at simulated offsets, in time order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_drift: Vec<TimedDrift>,
    /// How the oracle reads the rules (tenancy on unless switched off).
    #[serde(default)]
    pub oracle: OracleOptions,
    /// Fault plan armed before the engine starts (later `set_faults` steps replace it).
    #[serde(default, skip_serializing_if = "no_faults")]
    pub faults: FaultPlan,
    /// Server-side cap on how long a watch stays open (default: the sim's 1800 s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub watch_timeout: Option<Duration>,
    /// Server BOOKMARK interval (default: the sim's 60 s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub bookmark_interval: Option<Duration>,
}

/// Engine timing a scenario sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineTuning {
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub resync_interval: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub debounce: Option<Duration>,
}

impl EngineTuning {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The engine's configuration with these settings.
    pub fn config(&self, seed: u64) -> EngineConfig {
        let d = EngineConfig::default();
        EngineConfig {
            seed,
            resync_interval: self.resync_interval.unwrap_or(d.resync_interval),
            debounce: self.debounce.unwrap_or(d.debounce),
            ..d
        }
    }
}

impl Scenario {
    /// Fault kinds (as the sim counts them) that the initial plan or a `set_faults` step schedules.
    pub fn scheduled_fault_kinds(&self) -> BTreeSet<String> {
        let steps = self.steps.iter().filter_map(|s| match &s.step {
            Step::SetFaults { plan } => Some(plan),
            _ => None,
        });
        std::iter::once(&self.faults)
            .chain(steps)
            .flat_map(|p| p.rules.iter().map(|r| r.fault.kind_name()))
            .collect()
    }

    /// Parses a scenario; errors carry serde's line and column.
    pub fn from_json(path: &Path, text: &str) -> Result<Self, ScenarioError> {
        let s: Self = serde_json::from_str(text).map_err(|e| ScenarioError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        s.validate()?;
        Ok(s)
    }

    /// Loads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(path, &text)
    }

    /// Steps must be in time order.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let mut last = Duration::ZERO;
        for (index, s) in self.steps.iter().enumerate() {
            if s.at < last {
                return Err(ScenarioError::Order {
                    name: self.name.clone(),
                    index,
                    at: s.at,
                });
            }
            last = s.at;
        }
        let mut last = Duration::ZERO;
        let cfg = self.engine.config(self.seed);
        let end = self.last_step_at() + self.quiesce;
        for (index, d) in self.store_drift.iter().enumerate() {
            let err = |message: String| ScenarioError::Drift {
                name: self.name.clone(),
                index,
                message,
            };
            if d.at < last {
                return Err(err("store_drift steps must be in time order".into()));
            }
            last = d.at;
            let deadline = d.at + cfg.resync_interval + cfg.debounce + self.safety_grace;
            if d.drift.expects_repair() && deadline > end {
                return Err(err(format!(
                    "its repair deadline {deadline:?} (resync interval {:?} + debounce + safety_grace) is after the run ends at {end:?}: lengthen quiesce or shorten engine.resync_interval",
                    cfg.resync_interval
                )));
            }
        }
        Ok(())
    }

    /// Offset of the last step (cluster or store drift).
    pub fn last_step_at(&self) -> Duration {
        let sim = self.steps.last().map_or(Duration::ZERO, |s| s.at);
        let drift = self.store_drift.last().map_or(Duration::ZERO, |s| s.at);
        sim.max(drift)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a scenario always serializes")
    }
}

/// What runs against the sim: the real engine, or a deliberately broken one (planted bugs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// podgrant's engine.
    #[default]
    Engine,
    /// The engine over a store that silently ignores Revoke, Drop and Release.
    NeverRevokes,
    /// The seed's loop (the specimen): spins on the closed watch channel.
    SpinOnClosedStream,
    /// A bare `kube::runtime::watcher` over pods, consumed in a loop: re-watches with no backoff.
    BareWatcher,
    /// The engine over a store that also drops every account missing from its ledger (foreign ones).
    DropsForeign,
    /// The engine with its periodic resync effectively off (ten years): drift is never repaired.
    NeverResyncs,
    /// The engine, plus a 5 s storm of 50 pod lists per second starting at 60 s.
    RequestStorm,
    /// Core's desired state and planner fed a view with a planted bug ([`crate::planted`]).
    Planted(crate::planted::Bug),
}

/// When the [`Subject::RequestStorm`] starts, and how long it lasts.
pub const STORM_AT: Duration = Duration::from_secs(60);
pub const STORM_FOR: Duration = Duration::from_secs(5);

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tokio's paused clock (deterministic, fast) or real time.
    pub paused: bool,
    /// Profile the run (always in real time; on a busy loop, the watchdog profiles regardless).
    pub capture: bool,
    /// Where the report and, on failure, the capture go.
    pub artifacts: PathBuf,
    /// Wall time without simulated progress before the watchdog declares a busy loop.
    pub stall_after: Duration,
    /// Upper bound on wall time for the whole run (real-time runs).
    pub wall_limit: Duration,
    pub subject: Subject,
    /// MySQL runs: this server instead of the provider's (`None`: [`crate::mysql::provide`]).
    pub mysql_url: Option<String>,
}

impl RunOptions {
    pub fn paused(artifacts: impl Into<PathBuf>) -> Self {
        Self {
            paused: true,
            capture: false,
            artifacts: artifacts.into(),
            stall_after: Duration::from_secs(3),
            wall_limit: Duration::from_secs(600),
            subject: Subject::Engine,
            mysql_url: None,
        }
    }
    pub fn real_time(artifacts: impl Into<PathBuf>) -> Self {
        Self {
            paused: false,
            capture: true,
            ..Self::paused(artifacts)
        }
    }
}

/// The outcome of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub seed: u64,
    pub subject: Subject,
    pub paused_clock: bool,
    pub passed: bool,
    pub violations: Vec<Violation>,
    /// Simulated time covered.
    #[serde(with = "humantime_serde")]
    pub simulated: Duration,
    #[serde(with = "humantime_serde")]
    pub wall: Duration,
    pub work: WorkCounts,
    /// Fault kinds the scenario scheduled.
    pub faults_scheduled: BTreeSet<String>,
    /// Faults the sim dealt, per kind.
    pub faults_fired: BTreeMap<String, u64>,
    /// The part of `faults_fired` that hit a watch of the subject (its request or open stream).
    pub faults_fired_while_watching: BTreeMap<String, u64>,
    pub desired_accounts: usize,
    pub owned_accounts: usize,
    /// CPU of the scenario thread (engine + sim + steps).
    pub cpu: Option<CpuReport>,
    pub artifacts_dir: PathBuf,
    pub capture: Option<CapturePaths>,
    /// A MySQL run's ledger schema and pod-network slot `10.<slot>.0.0/16`, both removed from
    /// the server when the run ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mysql_run: Option<(String, u8)>,
}

/// Where a capture was written.
#[derive(Debug, Clone, Serialize)]
pub struct CapturePaths {
    pub profile: PathBuf,
    pub flamegraph: PathBuf,
    pub top: PathBuf,
    #[serde(skip)]
    pub tables: String,
}

impl From<&Artifacts> for CapturePaths {
    fn from(a: &Artifacts) -> Self {
        Self {
            profile: a.profile.clone(),
            flamegraph: a.flamegraph.clone(),
            top: a.top_file.clone(),
            tables: format!("{}\n{}", a.top, a.top_cum),
        }
    }
}

impl ScenarioReport {
    /// The invariants broken, deduplicated, in order of first appearance.
    pub fn broken(&self) -> Vec<Invariant> {
        let mut seen = BTreeSet::new();
        self.violations
            .iter()
            .map(|v| v.invariant)
            .filter(|i| seen.insert(*i))
            .collect()
    }
}

impl std::fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "scenario {} (seed {}, subject {:?}, {} clock): {}",
            self.name,
            self.seed,
            self.subject,
            if self.paused_clock {
                "paused"
            } else {
                "real-time"
            },
            if self.passed { "PASSED" } else { "FAILED" }
        )?;
        writeln!(
            f,
            "  simulated {:?} in {:.2?} wall; accounts: {} owned / {} desired",
            self.simulated, self.wall, self.owned_accounts, self.desired_accounts
        )?;
        let w = &self.work;
        writeln!(
            f,
            "  work: {} requests ({:.2}/s), {} watches ({:.2}/s), {} lists, {} reconciles ({:.2}/s), {} statements ({:.2}/s), {} events",
            w.requests,
            w.per_sec(w.requests),
            w.watch_requests,
            w.per_sec(w.watch_requests),
            w.list_requests,
            w.reconciles,
            w.per_sec(w.reconciles),
            w.statements,
            w.per_sec(w.statements),
            w.events
        )?;
        if !self.faults_scheduled.is_empty() || !self.faults_fired.is_empty() {
            let kinds: BTreeSet<&String> = self
                .faults_scheduled
                .iter()
                .chain(self.faults_fired.keys())
                .collect();
            let per_kind: Vec<String> = kinds
                .into_iter()
                .map(|k| {
                    let n = |m: &BTreeMap<String, u64>| m.get(k).copied().unwrap_or(0);
                    format!(
                        "{k} {}/{}{}",
                        n(&self.faults_fired_while_watching),
                        n(&self.faults_fired),
                        if self.faults_scheduled.contains(k) {
                            ""
                        } else {
                            " (unscheduled)"
                        }
                    )
                })
                .collect();
            writeln!(
                f,
                "  faults fired (while watching/all): {}",
                per_kind.join(", ")
            )?;
        }
        if let Some(c) = &self.cpu {
            writeln!(
                f,
                "  cpu of the scenario thread: {:.2?} ({:.3} of a core, demand {:.3})",
                c.cpu, c.share, c.demand
            )?;
        }
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        if let Some(c) = &self.capture {
            writeln!(
                f,
                "  capture: {} (go tool pprof -top {})\n           {}\n           {}\n{}",
                c.profile.display(),
                c.profile.display(),
                c.flamegraph.display(),
                c.top.display(),
                c.tables
            )?;
        }
        writeln!(
            f,
            "  report: {}",
            self.artifacts_dir.join("report.json").display()
        )
    }
}

/// A store wrapper that never revokes: Revoke, Drop and Release are acknowledged and ignored.
#[derive(Debug, Clone)]
pub struct NeverRevokes(pub MemoryStore);

impl GrantStore for NeverRevokes {
    async fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        self.0.observe(wanted).await
    }
    async fn apply(&self, actions: &[Action]) -> Result<ApplyReport, StoreError> {
        let kept: Vec<Action> = actions
            .iter()
            .filter(|a| {
                !matches!(
                    a,
                    Action::Revoke { .. } | Action::Drop { .. } | Action::Release { .. }
                )
            })
            .cloned()
            .collect();
        let r = self.0.apply(&kept).await?;
        Ok(ApplyReport {
            applied: actions.len(),
            statements: r.statements,
        })
    }
}

/// A store wrapper that, on every observe, drops the accounts its ledger doesn't know.
#[derive(Debug, Clone)]
pub struct DropsForeign(pub MemoryStore);

impl GrantStore for DropsForeign {
    async fn observe(&self, wanted: &BTreeSet<AccountKey>) -> Result<Observed, StoreError> {
        let mut st = self.0.snapshot();
        let ledger = st.ledger.clone();
        st.accounts.retain(|k, _| ledger.contains_key(k));
        self.0.set_state(st);
        self.0.observe(wanted).await
    }
    async fn apply(&self, actions: &[Action]) -> Result<ApplyReport, StoreError> {
        self.0.apply(actions).await
    }
}

/// Shared between the scenario thread and the watchdog.
#[derive(Debug, Default)]
struct Heartbeat {
    /// Simulated milliseconds reached.
    sim_ms: AtomicU64,
    /// Set by the watchdog to stop the run.
    abort: AtomicBool,
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

/// What the watchdog saw when it stopped a run.
#[derive(Debug, Clone)]
struct Stall {
    at_sim: Duration,
    requests_during: u64,
    watches_during: u64,
    capture: Option<Artifacts>,
}

/// Runs a scenario and writes `report.txt` and `report.json` into `opts.artifacts`.
pub fn run(scenario: &Scenario, opts: &RunOptions) -> Result<ScenarioReport, ScenarioError> {
    scenario.validate()?;
    let mut opts = opts.clone();
    if scenario.store == StoreKind::Mysql {
        opts.paused = false; // real I/O under a paused clock would jump timers
    }
    std::fs::create_dir_all(&opts.artifacts).map_err(|source| ScenarioError::Write {
        path: opts.artifacts.clone(),
        source,
    })?;
    let thread_name = run_thread_name();
    let meter = CpuMeter::new(&thread_name, Duration::from_millis(50))?;
    let cpu_iv = meter.interval()?;
    let capture = if opts.capture {
        Some(Capture::start(DEFAULT_FREQUENCY)?)
    } else {
        None
    };
    // After the profiler started (pprof-rs allocates its sample table then, ~340 MB here).
    let rss_start = crate::cpu::mem_stats()?.rss_kib;
    let beat = Arc::new(Heartbeat::default());
    let sim_cell: Arc<std::sync::Mutex<Option<Sim>>> = Arc::default();
    let wall_start = Instant::now();

    // Wakes the watchdog the moment the run ends (a sleep-and-check adds its period to every run).
    let (finished_tx, finished_rx) = std::sync::mpsc::channel::<()>();
    let thread = {
        let (scenario, opts, beat, sim_cell) = (
            scenario.clone(),
            opts.clone(),
            beat.clone(),
            sim_cell.clone(),
        );
        let name = thread_name.clone();
        let finished_tx = finished_tx.clone();
        std::thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .thread_name(name.clone()) // its blocking pool, if any, is counted too
                    .start_paused(opts.paused)
                    .build()
                    .map_err(|e| ScenarioError::Runtime(e.to_string()))?;
                let out = rt.block_on(drive(&scenario, &opts, &beat, &sim_cell));
                beat.done.store(true, Ordering::SeqCst);
                // Drop the runtime here, cancelling any task still spinning.
                drop(rt);
                let _ = finished_tx.send(());
                out
            })
            .map_err(|e| ScenarioError::Runtime(e.to_string()))?
    };

    let mut finished = false;
    drop(finished_tx);
    // The watchdog (crate::watchdog): simulated time must advance while the run is not done.
    let limits = crate::watchdog::Limits {
        stall_after: opts.stall_after,
        wall_limit: opts.wall_limit,
        paused: opts.paused,
        poll: Duration::from_millis(20),
    };
    let sim_stats = || {
        sim_cell
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|s| s.stats())
    };
    let mut stats_at_last = None;
    let sim_now = || Duration::from_millis(beat.sim_ms.load(Ordering::SeqCst));
    // The shared watchdog's decision ([`crate::watchdog::Progress`]) sampled every poll, but
    // woken by the run's end at once: a sleep-then-check loop adds half a poll (10 ms) of wall
    // time to every run, which is most of a short generated case.
    let mut progress = crate::watchdog::Progress::new(sim_now(), Instant::now());
    let trip = loop {
        match finished_rx.recv_timeout(limits.poll) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                finished = true;
                break None;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if beat.done.load(Ordering::SeqCst) {
            break None;
        }
        match progress.sample(sim_now(), Instant::now(), &limits) {
            Ok(moved) => {
                if moved || stats_at_last.is_none() {
                    stats_at_last = sim_stats();
                }
            }
            Err(trip) => break Some(trip),
        }
    };
    let stall = trip.map(|trip| {
        // Profile the stuck thread for a moment (unless a capture is already running).
        let cap = if capture.is_none() {
            crate::watchdog::capture_stuck(
                &opts.artifacts.join("capture"),
                &thread_name,
                Duration::from_millis(700),
            )
        } else {
            None
        };
        let after = sim_stats();
        let (req, watches) = match (&stats_at_last, &after) {
            (Some(a), Some(b)) => (
                b.total_requests().saturating_sub(a.total_requests()),
                total_watches(b).saturating_sub(total_watches(a)),
            ),
            _ => (0, 0),
        };
        beat.abort.store(true, Ordering::SeqCst);
        beat.notify.notify_one();
        Stall {
            at_sim: trip.at_sim(),
            requests_during: req,
            watches_during: watches,
            capture: cap,
        }
    });
    // Wait (bounded) for the scenario thread; a spin that never yields is left behind, reported.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !finished && !thread.is_finished() && Instant::now() < deadline {
        finished = matches!(
            finished_rx.recv_timeout(Duration::from_millis(20)),
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
    let outcome = if finished || thread.is_finished() {
        match thread.join() {
            Ok(r) => Some(r?),
            Err(_) => {
                return Err(ScenarioError::Runtime(
                    "the scenario thread panicked".into(),
                ))
            }
        }
    } else {
        None // leaked: it never yields
    };
    let wall = wall_start.elapsed();
    let cpu = cpu_iv.finish(0).ok();

    let mut violations = Vec::new();
    let mut drove = outcome.unwrap_or_default();
    if let Some(s) = &stall {
        let why = if s.watches_during > 100 {
            Violation::new(
                Invariant::RewatchRate,
                format!(
                    "simulated time froze at {:?} while the subject made {} watch requests ({} requests) in {:?} of wall time: re-watching without backoff",
                    s.at_sim, s.watches_during, s.requests_during, opts.stall_after
                ),
            )
        } else {
            Violation::new(
                Invariant::BusyLoop,
                format!(
                    "simulated time froze at {:?} for {:?} of wall time with {} requests to the sim: a busy loop that never waits (stopped by the watchdog)",
                    s.at_sim, opts.stall_after, s.requests_during
                ),
            )
        };
        violations.push(why);
        drove.simulated = s.at_sim;
    }
    violations.extend(drove.violations.iter().cloned());
    if !opts.paused && stall.is_none() {
        // Real time: the thread's CPU demand (on-CPU + run-queue wait) against the idle budget,
        // CPU per event handled, and resident memory growth over the run.
        // The idle share and CPU per event over every sliding window (idle windows only for the
        // idle budget); RSS growth over the whole run.
        violations.extend(crate::invariants::check_cpu_windows(
            &scenario.budgets,
            &drove.samples,
            &drove.steps_at,
            scenario.safety_grace,
        ));
        let rss_growth = crate::cpu::mem_stats()
            .ok()
            .map(|m| m.rss_kib as i64 - rss_start as i64);
        violations.extend(crate::invariants::check_cpu(
            &scenario.budgets,
            None,
            None,
            rss_growth,
        ));
    }

    let mut capture_paths = stall
        .as_ref()
        .and_then(|s| s.capture.as_ref())
        .map(CapturePaths::from);
    if let Some(c) = capture {
        let failed = !violations.is_empty();
        if failed || opts.capture {
            let a = c.finish(&opts.artifacts.join("capture"), &thread_name)?;
            if capture_paths.is_none() {
                capture_paths = Some(CapturePaths::from(&a));
            }
        }
    }
    let report = ScenarioReport {
        name: scenario.name.clone(),
        seed: scenario.seed,
        subject: opts.subject,
        paused_clock: opts.paused,
        passed: violations.is_empty(),
        violations,
        simulated: drove.simulated,
        wall,
        work: drove.work,
        faults_scheduled: scenario.scheduled_fault_kinds(),
        faults_fired: drove.faults_fired,
        faults_fired_while_watching: drove.faults_fired_while_watching,
        desired_accounts: drove.desired,
        owned_accounts: drove.owned,
        cpu,
        artifacts_dir: opts.artifacts.clone(),
        capture: capture_paths,
        mysql_run: drove.mysql_run.clone(),
    };
    write_report(&report, scenario, &opts.artifacts)?;
    Ok(report)
}

fn total_watches(s: &podgrant_sim::Stats) -> u64 {
    s.watch_starts.values().sum()
}

fn write_report(r: &ScenarioReport, s: &Scenario, dir: &Path) -> Result<(), ScenarioError> {
    let w = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ScenarioError::Write { path, source })
    };
    w("report.txt", r.to_string())?;
    w(
        "report.json",
        serde_json::to_string_pretty(r).expect("a report always serializes"),
    )?;
    w("scenario.json", s.to_json())
}

/// What the scenario thread produced.
#[derive(Debug, Default)]
struct Drove {
    violations: Vec<Violation>,
    simulated: Duration,
    work: WorkCounts,
    faults_fired: BTreeMap<String, u64>,
    faults_fired_while_watching: BTreeMap<String, u64>,
    desired: usize,
    owned: usize,
    /// A MySQL run's ledger schema and pod-network slot (both removed by now).
    mysql_run: Option<(String, u8)>,
    /// Cumulative counters at every tick (for the sliding-window budgets).
    samples: Vec<WorkSample>,
    /// When steps (cluster or store) were applied: windows near them are not idle.
    steps_at: Vec<Duration>,
}

/// The subject's counters, when it has any.
enum SubjectHandle {
    Engine(Arc<Metrics>),
    Other,
}

fn spawn_subject(
    subject: Subject,
    sim: &Sim,
    client: kube::Client,
    store: &AnyStore,
    config: EngineConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (SubjectHandle, tokio::task::JoinHandle<()>) {
    let mut config = config;
    if subject == Subject::NeverResyncs {
        config.resync_interval = Duration::from_secs(10 * 365 * 24 * 3600);
    }
    match (subject, store) {
        (Subject::RequestStorm, _) => {
            let storm_client = client.clone();
            let (h, task) = spawn_subject(Subject::Engine, sim, client, store, config, shutdown);
            let storm = tokio::spawn(async move {
                tokio::time::sleep(STORM_AT).await;
                let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(storm_client);
                let until = tokio::time::Instant::now() + STORM_FOR;
                while tokio::time::Instant::now() < until {
                    let _ = api.list(&Default::default()).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let both = tokio::spawn(async move {
                let _ = task.await;
                storm.abort();
            });
            (h, both)
        }
        (Subject::Planted(bug), AnyStore::Memory(s)) => {
            let (sim, s) = (sim.clone(), s.clone());
            let h = tokio::spawn(async move {
                tokio::select! {
                    _ = crate::planted::run(sim, s, bug) => {}
                    _ = shutdown => {}
                }
            });
            (SubjectHandle::Other, h)
        }
        (Subject::Engine | Subject::NeverResyncs, AnyStore::Memory(s)) => {
            let e = Engine::new(client, Arc::new(s.clone()), config);
            let m = e.metrics();
            (
                SubjectHandle::Engine(m),
                tokio::spawn(async move {
                    let _ = e.run(shutdown).await;
                }),
            )
        }
        (Subject::Engine | Subject::NeverResyncs, AnyStore::Mysql { store: s, .. }) => {
            let e = Engine::new(client, Arc::new(s.clone()), config);
            let m = e.metrics();
            (
                SubjectHandle::Engine(m),
                tokio::spawn(async move {
                    let _ = e.run(shutdown).await;
                }),
            )
        }
        (Subject::DropsForeign, AnyStore::Memory(s)) => {
            let e = Engine::new(client, Arc::new(DropsForeign(s.clone())), config);
            let m = e.metrics();
            (
                SubjectHandle::Engine(m),
                tokio::spawn(async move {
                    let _ = e.run(shutdown).await;
                }),
            )
        }
        (Subject::NeverRevokes, AnyStore::Memory(s)) => {
            let e = Engine::new(client, Arc::new(NeverRevokes(s.clone())), config);
            let m = e.metrics();
            (
                SubjectHandle::Engine(m),
                tokio::spawn(async move {
                    let _ = e.run(shutdown).await;
                }),
            )
        }
        (
            Subject::NeverRevokes | Subject::DropsForeign | Subject::Planted(_),
            AnyStore::Mysql { .. },
        ) => {
            unreachable!("planted bugs run on the memory store (checked in drive)")
        }
        (Subject::SpinOnClosedStream, _) => {
            let stats = Arc::new(crate::specimen::SpecimenStats::default());
            let h = tokio::spawn(async move {
                let _ = crate::specimen::watch_pods_by_selector(
                    client,
                    String::new(),
                    String::new(),
                    stats,
                )
                .await;
            });
            (SubjectHandle::Other, h)
        }
        (Subject::BareWatcher, _) => {
            let h = tokio::spawn(async move {
                let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
                let stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default());
                let mut stream = std::pin::pin!(stream);
                while stream.next().await.is_some() {}
            });
            (SubjectHandle::Other, h)
        }
    }
}

enum AnyStore {
    Memory(MemoryStore),
    Mysql {
        store: podgrant_core::store::mysql::MysqlStore,
        /// The server (for drift steps and cleanup over the harness's own connection).
        url: String,
        /// This run's ledger schema.
        schema: String,
    },
}

/// The scenario itself, on the scenario thread. A MySQL run first claims its own scope on the
/// server (unique ledger schema and pod network, dead runs' leftovers swept; see
/// [`crate::run_scope`]) and removes it afterwards, whether the run passed or failed.
async fn drive(
    scenario: &Scenario,
    opts: &RunOptions,
    beat: &Heartbeat,
    sim_cell: &std::sync::Mutex<Option<Sim>>,
) -> Result<Drove, ScenarioError> {
    if scenario.store != StoreKind::Mysql {
        return drive_on(scenario, opts, beat, sim_cell, None).await;
    }
    if opts.subject == Subject::NeverRevokes {
        return Err(ScenarioError::Store(
            "the never-revokes subject runs on the memory store only".into(),
        ));
    }
    let (url, server) = match &opts.mysql_url {
        Some(url) => (url.clone(), None),
        None => {
            let m = crate::mysql::provide(&scenario.name)
                .await?
                .ok_or(ScenarioError::NoMysql)?;
            (m.url().to_string(), Some(m))
        }
    };
    let scope = crate::run_scope::RunScope::claim(&url, "pgh_run")
        .await
        .map_err(|e| ScenarioError::Store(e.to_string()))?;
    let names = (scope.schema().to_string(), scope.slot());
    let result = drive_on(scenario, opts, beat, sim_cell, Some((&url, &scope))).await;
    let cleaned = scope
        .cleanup()
        .await
        .map_err(|e| ScenarioError::Store(e.to_string()));
    drop(server);
    let mut drove = result?;
    cleaned?;
    drove.mysql_run = Some(names);
    Ok(drove)
}

/// Pure: MySQL's observed state in the memory store's shape, for the invariants written over
/// it (the password is unknown and left empty; the invariants don't read it).
fn as_memory_state(o: &podgrant_core::grant::Observed) -> MemoryState {
    let mut state = MemoryState::default();
    for (key, a) in &o.owned {
        state.ledger.insert(
            key.clone(),
            podgrant_core::store::memory::LedgerRow {
                owner: a.owner.clone(),
                fingerprint: a.fingerprint.clone(),
            },
        );
        if a.exists {
            state.accounts.insert(
                key.clone(),
                podgrant_core::store::memory::AccountState {
                    password: podgrant_core::model::Password::new(""),
                    grants: a.grants.clone(),
                },
            );
        }
    }
    state
}

/// [`drive`] on a store: memory, or MySQL at `url` within `scope`.
async fn drive_on(
    scenario: &Scenario,
    opts: &RunOptions,
    beat: &Heartbeat,
    sim_cell: &std::sync::Mutex<Option<Sim>>,
    mysql: Option<(&str, &crate::run_scope::RunScope)>,
) -> Result<Drove, ScenarioError> {
    let mut builder = Sim::builder()
        .seed(scenario.seed)
        .faults(scenario.faults.clone());
    if let Some(t) = scenario.watch_timeout {
        builder = builder.watch_timeout(t);
    }
    if let Some(b) = scenario.bookmark_interval {
        builder = builder.bookmark_interval(b);
    }
    if let Some((_, scope)) = mysql {
        builder = builder.pod_cidr(&scope.pod_cidr());
    }
    let sim = builder.build();
    *sim_cell.lock().unwrap_or_else(|e| e.into_inner()) = Some(sim.clone());
    for (index, step) in scenario.initial.iter().enumerate() {
        sim.apply(step).map_err(|e| ScenarioError::Initial {
            name: scenario.name.clone(),
            index,
            step: format!("{step:?}"),
            message: e.to_string(),
        })?;
    }
    let store = match mysql {
        None => AnyStore::Memory(MemoryStore::new()),
        Some((url, scope)) => {
            if matches!(
                opts.subject,
                Subject::NeverRevokes | Subject::DropsForeign | Subject::Planted(_)
            ) {
                return Err(ScenarioError::Store(format!(
                    "the {:?} subject runs on the memory store only",
                    opts.subject
                )));
            }
            let s = podgrant_core::store::mysql::MysqlStore::connect(url, scope.schema())
                .await
                .map_err(|e| ScenarioError::Store(e.to_string()))?;
            AnyStore::Mysql {
                store: s,
                url: url.to_string(),
                schema: scope.schema().to_string(),
            }
        }
    };
    let mut foreign_before = match &store {
        AnyStore::Memory(s) => s.snapshot(),
        AnyStore::Mysql { .. } => MemoryState::default(),
    };
    let mut oracle = OracleConfig::with_options(&scenario.oracle);
    if let AnyStore::Mysql { url, schema, .. } = &store {
        oracle.ledger_schema = Some(schema.clone());
        oracle.engine_user = mysql_async::Opts::from_url(url)
            .ok()
            .and_then(|o| o.user().map(str::to_string));
    }
    let config = scenario.engine.config(scenario.seed);
    let repair_bound = config.resync_interval + config.debounce + scenario.safety_grace;
    let client = podgrant_core::retry_after::client(sim.service(), "default");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (handle, task) = spawn_subject(opts.subject, &sim, client, &store, config, async move {
        let _ = stop_rx.await;
    });

    let start = tokio::time::Instant::now();
    let end = start + scenario.last_step_at() + scenario.quiesce;
    let tick = Duration::from_millis(100);
    let mut safety = SafetyTracker::new();
    let mut violations = Vec::new();
    let mut reported_ledger = BTreeSet::new();
    let mut pending: Vec<PendingRepair> = Vec::new();
    let mut samples: Vec<WorkSample> = Vec::new();
    let mut steps_at: Vec<Duration> = Vec::new();
    let mut next_step = 0;
    let mut next_drift = 0;
    let mut oracle_cache: Option<((u64, usize), Truth, crate::truth::Expected)> = None;
    let aborted = loop {
        let now = tokio::time::Instant::now();
        let elapsed = now - start;
        beat.sim_ms
            .store(elapsed.as_millis() as u64, Ordering::SeqCst);
        while let Some(ts) = scenario.steps.get(next_step) {
            if ts.at > elapsed {
                break;
            }
            sim.apply(&ts.step).map_err(|e| ScenarioError::Step {
                name: scenario.name.clone(),
                index: next_step,
                at: ts.at,
                message: e.to_string(),
            })?;
            steps_at.push(elapsed);
            next_step += 1;
        }
        while let Some(td) = scenario.store_drift.get(next_drift) {
            if td.at > elapsed {
                break;
            }
            let err = |message: String| ScenarioError::Drift {
                name: scenario.name.clone(),
                index: next_drift,
                message,
            };
            let key = td.drift.key(&sim).map_err(|e| err(e.to_string()))?;
            match &store {
                AnyStore::Memory(s) => {
                    // No await between snapshot and set_state: the engine cannot interleave.
                    let mut st = s.snapshot();
                    td.drift
                        .apply_memory(&key, &mut st)
                        .map_err(|e| err(e.to_string()))?;
                    if let Some(acct) = st.accounts.get(&key).filter(|_| !td.drift.expects_repair())
                    {
                        foreign_before.accounts.insert(key.clone(), acct.clone());
                    }
                    s.set_state(st);
                }
                AnyStore::Mysql { url, .. } => {
                    let sql = td.drift.statements(&key).map_err(|e| err(e.to_string()))?;
                    crate::drift::apply_mysql(url, &sql)
                        .await
                        .map_err(|e| err(e.to_string()))?;
                    if !td.drift.expects_repair() {
                        foreign_before.accounts.insert(
                            key.clone(),
                            podgrant_core::store::memory::AccountState {
                                password: podgrant_core::model::Password::new(""),
                                grants: Default::default(),
                            },
                        );
                    }
                }
            }
            if td.drift.expects_repair() {
                pending.push(PendingRepair {
                    key: key.clone(),
                    what: td.drift.describe(&key),
                    at: elapsed,
                    deadline: elapsed + repair_bound,
                    check_password: matches!(
                        td.drift,
                        crate::drift::StoreDrift::AlterPassword { .. }
                    ) && matches!(store, AnyStore::Memory(_)),
                });
            }
            steps_at.push(elapsed);
            next_drift += 1;
        }
        let foreign_keys: BTreeSet<AccountKey> = foreign_before.accounts.keys().cloned().collect();
        let due: Vec<PendingRepair> = pending
            .iter()
            .filter(|p| p.deadline <= elapsed)
            .cloned()
            .collect();
        pending.retain(|p| p.deadline > elapsed);
        // The oracle's verdict changes only with the sim's store or the foreign accounts.
        let version = (sim.resource_version(), foreign_keys.len());
        if oracle_cache.as_ref().is_none_or(|(v, _, _)| *v != version) {
            let truth = Truth::from_sim(&sim)?;
            let expected = crate::truth::expect(&oracle, &truth, &foreign_keys);
            oracle_cache = Some((version, truth, expected));
        }
        let (_, truth, expected) = oracle_cache.as_ref().expect("just filled");
        // Safety on every tick, whichever the store: MySQL's state is read back from the server
        // (a failed read, transient, skips this tick's check only; the final checks still run).
        let state = match &store {
            AnyStore::Memory(s) => Some(s.snapshot()),
            AnyStore::Mysql { store: s, .. } => s
                .observe(&BTreeSet::new())
                .await
                .ok()
                .map(|o| as_memory_state(&o)),
        };
        if let Some(state) = &state {
            violations.extend(safety.observe(
                elapsed,
                scenario.safety_grace,
                &sim.visibility(),
                truth,
                expected,
                state,
            ));
        }
        if let (AnyStore::Memory(_), Some(state)) = (&store, &state) {
            for v in check_ledger(state, &foreign_before, false) {
                if reported_ledger.insert(v.detail.clone()) {
                    violations.push(v);
                }
            }
            for p in &due {
                violations.extend(repair_problems(expected, Some(state), None, p));
            }
        } else if let (AnyStore::Mysql { store: s, .. }, false) = (&store, due.is_empty()) {
            let wanted = expected.accounts.keys().cloned().collect();
            let observed = s
                .observe(&wanted)
                .await
                .map_err(|e| ScenarioError::Store(e.to_string()))?;
            for p in &due {
                violations.extend(repair_problems(expected, None, Some(&observed), p));
            }
        }
        samples.push(sample(elapsed, &sim, &handle, opts.paused));
        if now >= end {
            break false;
        }
        let wake = scenario
            .steps
            .get(next_step)
            .map_or(end, |s| start + s.at)
            .min(
                scenario
                    .store_drift
                    .get(next_drift)
                    .map_or(end, |s| start + s.at),
            )
            .min(now + tick);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = beat.notify.notified() => {}
        }
        if beat.abort.load(Ordering::SeqCst) {
            break true;
        }
    };
    let simulated = tokio::time::Instant::now() - start;
    let _ = stop_tx.send(());
    if aborted {
        task.abort();
    } else if tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .is_err()
    {
        violations.push(Violation::new(
            Invariant::BusyLoop,
            "the subject did not stop within 10 s of shutdown",
        ));
    }

    // Final checks, after quiescence.
    let foreign_keys: BTreeSet<AccountKey> = foreign_before.accounts.keys().cloned().collect();
    let expected = crate::truth::expect(&oracle, &Truth::from_sim(&sim)?, &foreign_keys);
    let (owned, final_violations) = match &store {
        AnyStore::Memory(s) => {
            let state = s.snapshot();
            let mut v = check_convergence(&expected, &state);
            v.extend(
                check_ledger(&state, &foreign_before, true)
                    .into_iter()
                    .filter(|v| !reported_ledger.contains(&v.detail)),
            );
            (state.ledger.len(), v)
        }
        AnyStore::Mysql { store: s, url, .. } => {
            let wanted: BTreeSet<AccountKey> = expected
                .accounts
                .keys()
                .chain(foreign_keys.iter())
                .cloned()
                .collect();
            let observed = s
                .observe(&wanted)
                .await
                .map_err(|e| ScenarioError::Store(e.to_string()))?;
            let mut v = check_convergence_observed(&expected, &observed);
            // The ledger checks the memory store gets, on the server's state read back (foreign
            // accounts are checked just below, from what the server reports as foreign).
            v.extend(check_ledger(
                &as_memory_state(&observed),
                &MemoryState::default(),
                true,
            ));
            // Foreign accounts: never adopted, still there; then removed (we created them).
            let mut cleanup = Vec::new();
            for key in foreign_before.accounts.keys() {
                if observed.owned.contains_key(key) {
                    v.push(Violation::new(
                        Invariant::Ledger,
                        format!("foreign account {key} was adopted into the ledger"),
                    ));
                } else if !observed.foreign.contains(key) {
                    v.push(Violation::new(
                        Invariant::Ledger,
                        format!("foreign account {key} was dropped"),
                    ));
                }
                cleanup.push(format!("DROP USER IF EXISTS '{}'@'{}'", key.user, key.host));
            }
            if !cleanup.is_empty() {
                let _ = crate::drift::apply_mysql(url, &cleanup).await;
            }
            let _ = s.disconnect().await;
            (observed.owned.len(), v)
        }
    };
    if !aborted {
        violations.extend(final_violations);
    }
    let stats = sim.stats();
    let (reconciles, statements, events) = match &handle {
        SubjectHandle::Engine(m) => {
            let s = m.snapshot();
            (s.reconciles, s.statements, s.total_events())
        }
        SubjectHandle::Other => (0, 0, 0),
    };
    let work = WorkCounts {
        elapsed: simulated,
        requests: stats.total_requests(),
        watch_requests: total_watches(&stats),
        list_requests: stats
            .requests
            .iter()
            .filter(|(k, _)| k.starts_with("list "))
            .map(|(_, v)| v)
            .sum(),
        reconciles,
        statements,
        events,
    };
    if !aborted {
        samples.push(sample(simulated, &sim, &handle, opts.paused));
        violations.extend(check_work_windows(&scenario.budgets, &samples));
    }
    Ok(Drove {
        violations,
        simulated,
        work,
        faults_fired: stats.faults.clone(),
        faults_fired_while_watching: stats.watch_faults.clone(),
        desired: expected.accounts.len(),
        owned,
        mysql_run: None,
        samples,
        steps_at,
    })
}

/// The run's cumulative counters now (and, in real time, the scenario thread's CPU).
fn sample(t: Duration, sim: &Sim, handle: &SubjectHandle, paused: bool) -> WorkSample {
    let stats = sim.stats();
    let (reconciles, statements, events) = match handle {
        SubjectHandle::Engine(m) => {
            let s = m.snapshot();
            (s.reconciles, s.statements, s.total_events())
        }
        SubjectHandle::Other => (0, 0, 0),
    };
    let cpu = (!paused)
        .then(|| std::fs::read_to_string("/proc/thread-self/schedstat").ok())
        .flatten()
        .and_then(|l| crate::cpu::parse_schedstat(&l))
        .map(|(run, _)| Duration::from_nanos(run));
    WorkSample {
        t,
        requests: stats.total_requests(),
        watch_requests: total_watches(&stats),
        reconciles,
        statements,
        events,
        cpu,
    }
}

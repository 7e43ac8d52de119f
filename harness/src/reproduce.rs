//! `reproduce busy-loop`: the seed's loop (pegs a core), the field's default client (kube-rs `watcher`) and podgrant, side by side.
//!
//! Four runtimes, each with its own thread name so that CPU is attributed exactly:
//! `pg-sim` serves the simulated API server over loopback TCP (with the seed's fault: the API
//! server cleanly ends every pod watch right after its initial events); `pg-specimen` runs the
//! faithful port of the Go loop; `pg-watcher` runs a bare kube-rs `watcher` with its default
//! config (measured and captured, not judged); `pg-engine` runs podgrant's engine. The phases run one after
//! the other so they do not compete for the two cores. Each phase is profiled with pprof; the
//! report puts the two side by side, and the verdict fails if the engine breaks its budget **or**
//! the specimen fails to reproduce (the harness's teeth are checked too).

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::grant::AccountKey;
use podgrant_core::store::{GrantStore, MemoryStore};
use podgrant_sim::{CloseMode, CloseWhen, Fault, FaultPlan, FaultRule, Sim, Step};
use serde::Serialize;

use crate::capture::{Artifacts, Capture, DEFAULT_FREQUENCY};
use crate::cpu::{mem_stats, named_runtime, CpuMeter, CpuReport};
use crate::invariants::{check_convergence, check_convergence_observed, Violation};
use crate::specimen::{watch_pods_by_selector, SpecimenStats};

/// The namespace, service and labels of the reproduction's cluster.
pub const NAMESPACE: &str = "shop";
pub const SERVICE: &str = "orders";
pub const SELECTOR: &str = "app=orders";
/// Thread names of the three runtimes.
pub const SIM_THREADS: &str = "pg-sim";
pub const SPECIMEN_THREADS: &str = "pg-specimen";
pub const WATCHER_THREADS: &str = "pg-watcher";
pub const ENGINE_THREADS: &str = "pg-engine";

/// Errors that stop the reproduction itself (not verdicts).
#[derive(Debug, thiserror::Error)]
pub enum ReproduceError {
    #[error(transparent)]
    Cpu(#[from] crate::cpu::CpuError),
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error(transparent)]
    Truth(#[from] crate::truth::TruthError),
    #[error("sim: {0}")]
    Sim(String),
    #[error("kube client for {url}: {message}")]
    Client { url: String, message: String },
    #[error("grant store: {0}")]
    Store(String),
    #[error(transparent)]
    Mysql(#[from] crate::mysql::MysqlError),
    #[error("the specimen never reached the closed channel within {waited:?} ({events} watch events received): the fault did not close its watch")]
    SpecimenNeverSpun { waited: Duration, events: u64 },
    #[error("--mysql: no MySQL available (MYSQL_URL unset, no mariadbd/mysqld, no Docker)")]
    NoMysql,
    #[error(transparent)]
    RunScope(#[from] crate::run_scope::RunScopeError),
}

/// Which grant store the engine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Memory,
    /// MySQL: `MYSQL_URL`, else a self-started mariadbd (see [`crate::mysql`]).
    Mysql,
}

/// What the engine must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineBudget {
    /// CPU share of the engine's threads over the phase (1.0 = a core).
    pub max_cpu_share: f64,
    /// CPU demand (on-CPU + run-queue wait) of the engine's threads: catches a spinning engine
    /// even when the machine is too busy to give it much CPU.
    pub max_cpu_demand: f64,
    /// Pod watch (re)connects per second.
    pub max_reconnects_per_sec: f64,
}

impl Default for EngineBudget {
    fn default() -> Self {
        Self {
            max_cpu_share: 0.05,
            max_cpu_demand: 0.5,
            max_reconnects_per_sec: 2.0,
        }
    }
}

/// Options of `reproduce busy-loop`.
#[derive(Debug, Clone)]
pub struct BusyLoopOptions {
    /// Length of each phase.
    pub duration: Duration,
    /// Pods behind the service.
    pub pods: usize,
    pub store: StoreChoice,
    pub artifacts: PathBuf,
    pub budget: EngineBudget,
    /// The specimen reproduces the bug when its CPU demand (on-CPU + run-queue wait, 1.0 = a
    /// core) reaches this: a loop that never sleeps wants a whole core, whatever the load.
    pub specimen_min_share: f64,
}

impl Default for BusyLoopOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(5),
            pods: 20,
            store: StoreChoice::Memory,
            artifacts: PathBuf::from("target/podgrant-artifacts/busy-loop"),
            budget: EngineBudget::default(),
            specimen_min_share: 0.8,
        }
    }
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    pub label: String,
    pub cpu: CpuReport,
    /// Pod watch requests the sim received during the phase.
    pub pod_watches: u64,
    /// Pod watches after the first, per second of the phase.
    pub reconnects_per_sec: f64,
    /// Watch events the side handled.
    pub events: u64,
    /// For the specimen: receives of the zero value from the closed channel.
    pub empty_receives: Option<u64>,
    /// Accounts present / desired, and whether they match exactly.
    pub grants: Option<(usize, usize)>,
    pub grants_correct: Option<bool>,
    pub grant_problems: Vec<String>,
    /// The first podgrant function of `top -cum` (where the time goes).
    pub hot_function: Option<String>,
    /// Share of samples in the hot function's stack.
    pub hot_share: f64,
    pub capture_dir: PathBuf,
    #[serde(skip)]
    pub capture: Option<Artifacts>,
}

/// The whole comparison and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct BusyLoopReport {
    pub duration: Duration,
    pub pods: usize,
    pub store: String,
    pub specimen: SideReport,
    /// The bare kube-rs `watcher` (default config): the third column, measured, not judged.
    pub watcher: SideReport,
    pub engine: SideReport,
    pub budget: EngineBudget,
    pub specimen_min_share: f64,
    pub peak_rss_kib: u64,
    /// Why the specimen did not reproduce (empty: it did).
    pub specimen_failures: Vec<String>,
    /// How the engine broke its budget (empty: it did not).
    pub engine_failures: Vec<String>,
}

impl BusyLoopReport {
    pub fn specimen_reproduced(&self) -> bool {
        self.specimen_failures.is_empty()
    }
    pub fn engine_within_budget(&self) -> bool {
        self.engine_failures.is_empty()
    }
    /// Exit code for the CLI: 0 only if both hold.
    pub fn success(&self) -> bool {
        self.specimen_reproduced() && self.engine_within_budget()
    }
}

/// Pure: judges both sides.
pub fn verdicts(
    specimen: &SideReport,
    engine: &SideReport,
    budget: &EngineBudget,
    specimen_min_share: f64,
) -> (Vec<String>, Vec<String>) {
    let mut s = Vec::new();
    if specimen.cpu.demand < specimen_min_share {
        s.push(format!(
            "specimen CPU demand {:.3} < {specimen_min_share} of a core (on-CPU share {:.3}): the busy loop did not reproduce",
            specimen.cpu.demand, specimen.cpu.share
        ));
    }
    if specimen.empty_receives.unwrap_or(0) == 0 {
        s.push(
            "specimen never received from a closed channel: the sim did not end the watch".into(),
        );
    }
    match &specimen.hot_function {
        Some(f) if is_specimen_fn(f) => {}
        other => s.push(format!(
            "top -cum does not show watch_pods_by_selector first (got {other:?})"
        )),
    }
    let mut e = Vec::new();
    if engine.cpu.share > budget.max_cpu_share {
        e.push(format!(
            "engine CPU share {:.4} > budget {}",
            engine.cpu.share, budget.max_cpu_share
        ));
    }
    if engine.cpu.demand > budget.max_cpu_demand {
        e.push(format!(
            "engine CPU demand {:.4} (on-CPU + run-queue wait) > budget {}",
            engine.cpu.demand, budget.max_cpu_demand
        ));
    }
    if engine.reconnects_per_sec > budget.max_reconnects_per_sec {
        e.push(format!(
            "engine pod watch reconnects {:.2}/s > budget {}/s",
            engine.reconnects_per_sec, budget.max_reconnects_per_sec
        ));
    }
    if engine.grants_correct != Some(true) {
        e.push(format!(
            "engine grants did not converge: {}",
            engine.grant_problems.join("; ")
        ));
    }
    (s, e)
}

impl fmt::Display for BusyLoopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, w, e) = (&self.specimen, &self.watcher, &self.engine);
        let row = |f: &mut fmt::Formatter<'_>, k: &str, a: String, m: String, b: String| {
            writeln!(f, "  {k:<26} {a:<40} {m:<40} {b}")
        };
        writeln!(
            f,
            "\nreproduce busy-loop — fault: the API server cleanly ends every pod watch after its initial events\n  {} pods behind {NAMESPACE}/{SERVICE}, {:?} per phase, engine store: {}\n",
            self.pods, self.duration, self.store
        )?;
        row(
            f,
            "",
            "seed's loop (specimen)".into(),
            "kube-rs watcher (default config)".into(),
            "podgrant engine".into(),
        )?;
        row(f, "", "-".repeat(22), "-".repeat(32), "-".repeat(15))?;
        row(
            f,
            "CPU share (1.0 = a core)",
            format!("{:.3}", s.cpu.share),
            format!("{:.4}", w.cpu.share),
            format!("{:.4}", e.cpu.share),
        )?;
        row(
            f,
            "CPU demand (run + wait)",
            format!("{:.3}", s.cpu.demand),
            format!("{:.4}", w.cpu.demand),
            format!("{:.4}", e.cpu.demand),
        )?;
        row(
            f,
            "CPU time / wall",
            format!("{:.2?} / {:.2?}", s.cpu.cpu, s.cpu.wall),
            format!("{:.2?} / {:.2?}", w.cpu.cpu, w.cpu.wall),
            format!("{:.2?} / {:.2?}", e.cpu.cpu, e.cpu.wall),
        )?;
        row(
            f,
            "pod watches (reconnects/s)",
            format!(
                "{} ({:.2} reconnects/s)",
                s.pod_watches, s.reconnects_per_sec
            ),
            format!(
                "{} ({:.2} reconnects/s)",
                w.pod_watches, w.reconnects_per_sec
            ),
            format!(
                "{} ({:.2} reconnects/s)",
                e.pod_watches, e.reconnects_per_sec
            ),
        )?;
        row(
            f,
            "events handled",
            format!(
                "{} (+{} empty receives)",
                s.events,
                s.empty_receives.unwrap_or(0)
            ),
            format!("{}", w.events),
            format!("{}", e.events),
        )?;
        let grants = |x: &SideReport| match (x.grants, x.grants_correct) {
            (Some((have, want)), Some(true)) => format!("yes ({have}/{want} accounts exact)"),
            (Some((have, want)), _) => format!("NO ({have} present, {want} desired)"),
            (None, _) => "n/a (it never grants)".into(),
        };
        row(f, "grants correct", grants(s), grants(w), grants(e))?;
        let hot = |x: &SideReport| match &x.hot_function {
            Some(h) => format!("{} ({:.0}%)", short_fn(h), x.hot_share * 100.0),
            None => "-".into(),
        };
        row(f, "hottest podgrant function", hot(s), hot(w), hot(e))?;
        row(
            f,
            "capture",
            s.capture_dir.display().to_string(),
            w.capture_dir.display().to_string(),
            e.capture_dir.display().to_string(),
        )?;
        row(
            f,
            "verdict",
            if self.specimen_reproduced() {
                format!("REPRODUCED (demand ≥ {})", self.specimen_min_share)
            } else {
                "DID NOT REPRODUCE".into()
            },
            "(measured, not judged)".into(),
            if self.engine_within_budget() {
                format!(
                    "WITHIN BUDGET (share ≤ {}, ≤ {}/s reconnects, converged)",
                    self.budget.max_cpu_share, self.budget.max_reconnects_per_sec
                )
            } else {
                "OVER BUDGET".into()
            },
        )?;
        writeln!(
            f,
            "  peak RSS of the whole process: {} KiB (most of it pprof-rs's sample table, ~340 MB)",
            self.peak_rss_kib
        )?;
        for p in self.specimen_failures.iter().chain(&self.engine_failures) {
            writeln!(f, "  FAIL: {p}")?;
        }
        if let Some(a) = &s.capture {
            writeln!(
                f,
                "\nspecimen profile ({}):\n{}\n{}",
                a.profile.display(),
                a.top,
                a.top_cum
            )?;
        }
        if let Some(a) = &w.capture {
            writeln!(
                f,
                "kube-rs watcher profile ({}):\n{}\n{}",
                a.profile.display(),
                a.top,
                a.top_cum
            )?;
        }
        if let Some(a) = &e.capture {
            writeln!(
                f,
                "engine profile ({}):\n{}\n{}",
                a.profile.display(),
                a.top,
                a.top_cum
            )?;
        }
        Ok(())
    }
}

/// Whether a profile function name is the seed's loop (its future or its body).
pub fn is_specimen_fn(f: &str) -> bool {
    // In a release build the loop's inlined body is labelled by its file (see capture::label).
    f.contains("watch_pods_by_selector")
        || f.contains("WatchPodsBySelector")
        || f.ends_with("@specimen.rs")
}

fn short_fn(f: &str) -> String {
    f.trim_start_matches("podgrant_harness::")
        .trim_start_matches("podgrant_core::")
        .to_string()
}

/// The reproduction's cluster: one opted-in service, its secret, `pods` ready pods.
pub fn cluster_steps(pods: usize) -> Vec<Step> {
    let mut steps = vec![
        Step::create_namespace(NAMESPACE),
        Step::create_secret(NAMESPACE, "orders-db", [("password", "orders-pw-1")]),
        Step::create_service(NAMESPACE, SERVICE, [("app", "orders")]).annotations([
            ("podgrant.io/mysql-user", "shop_orders"),
            ("podgrant.io/mysql-database", "shop"),
            ("podgrant.io/mysql-privileges", "SELECT, INSERT"),
            ("podgrant.io/mysql-password-secret", "orders-db/password"),
        ]),
    ];
    for i in 0..pods {
        steps.push(Step::create_pod(NAMESPACE, &format!("orders-{i}")).labels([("app", "orders")]));
    }
    steps
}

/// The seed's fault: every pod watch ends cleanly right after its initial events.
pub fn seed_fault(seed: u64) -> FaultPlan {
    FaultPlan::new(seed).rule(
        FaultRule::new(Fault::CloseWatch {
            when: CloseWhen::AfterInitialEvents,
            mode: CloseMode::Clean,
        })
        .resource("pods")
        .verb("watch"),
    )
}

/// A plain `kube::Client` for a URL (the field's default); must be called inside the runtime
/// that will drive it.
pub fn tcp_client(url: &str) -> Result<kube::Client, ReproduceError> {
    tcp_client_with(url, false)
}

/// [`tcp_client`] as podgrant's binary builds it: with the Retry-After layer.
pub fn engine_tcp_client(url: &str) -> Result<kube::Client, ReproduceError> {
    tcp_client_with(url, true)
}

fn tcp_client_with(url: &str, retry_after: bool) -> Result<kube::Client, ReproduceError> {
    let err = |message: String| ReproduceError::Client {
        url: url.to_string(),
        message,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
    let mut config = kube::Config::new(uri);
    config.default_namespace = NAMESPACE.into();
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| err(e.to_string()))?;
    Ok(if retry_after {
        builder
            .with_layer(&podgrant_core::retry_after::RetryAfterLayer)
            .build()
    } else {
        builder.build()
    })
}

/// Progress lines go here (the CLI prints them; tests may collect them).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Runs the reproduction. Blocking: builds its own runtimes.
pub fn run_busy_loop(
    opts: &BusyLoopOptions,
    progress: Progress<'_>,
) -> Result<BusyLoopReport, ReproduceError> {
    // MySQL: the server, and this run's own corner of it (unique ledger schema and pod network,
    // dead runs' leftovers swept), claimed before the sim exists so its pods get that network.
    let mysql = match opts.store {
        StoreChoice::Memory => None,
        StoreChoice::Mysql => Some(MysqlRun::claim(progress)?),
    };
    let phases = run_phases(opts, mysql.as_ref(), progress);
    // Removed on success and on failure (a crash is swept by the next run).
    let cleaned = mysql.map(|m| m.cleanup(progress));
    let (specimen, watcher, engine) = phases?;
    if let Some(cleaned) = cleaned {
        cleaned?;
    }
    let (specimen_failures, engine_failures) =
        verdicts(&specimen, &engine, &opts.budget, opts.specimen_min_share);
    Ok(BusyLoopReport {
        duration: opts.duration,
        pods: opts.pods,
        store: match opts.store {
            StoreChoice::Memory => "in-memory".into(),
            StoreChoice::Mysql => "MySQL".into(),
        },
        specimen,
        watcher,
        engine,
        budget: opts.budget,
        specimen_min_share: opts.specimen_min_share,
        peak_rss_kib: mem_stats().map(|m| m.peak_rss_kib).unwrap_or(0),
        specimen_failures,
        engine_failures,
    })
}

/// The three phases on one sim (pod network from `mysql`'s scope when there is one).
fn run_phases(
    opts: &BusyLoopOptions,
    mysql: Option<&MysqlRun>,
    progress: Progress<'_>,
) -> Result<(SideReport, SideReport, SideReport), ReproduceError> {
    let sim_rt = named_runtime(SIM_THREADS, 1)?;
    let mut builder = Sim::builder().seed(1).faults(seed_fault(1));
    if let Some(m) = mysql {
        builder = builder.pod_cidr(&m.scope.pod_cidr());
    }
    let sim = builder.build();
    for step in cluster_steps(opts.pods) {
        sim.apply(&step)
            .map_err(|e| ReproduceError::Sim(e.to_string()))?;
    }
    let server = sim_rt
        .block_on(sim.serve_tcp(([127, 0, 0, 1], 0).into()))
        .map_err(|e| ReproduceError::Sim(e.to_string()))?;
    let url = server.url();
    progress(&format!(
        "sim serving {url} ({} pods in {NAMESPACE}, fault: close every pod watch after initial events)",
        opts.pods
    ));

    let specimen = run_specimen_phase(opts, &sim, &url, progress)?;
    let watcher = run_watcher_phase(opts, &sim, &url, progress)?;
    let engine = run_engine_phase(opts, &sim, &url, mysql, progress)?;

    drop(server);
    sim_rt.shutdown_timeout(Duration::from_secs(2));
    Ok((specimen, watcher, engine))
}

/// `--mysql`: the server (kept alive for the run) and the run's scope on it.
struct MysqlRun {
    /// Drives the scope's lock connection for the whole run.
    rt: tokio::runtime::Runtime,
    server: crate::mysql::TestMysql,
    scope: crate::run_scope::RunScope,
}

impl MysqlRun {
    fn claim(progress: Progress<'_>) -> Result<MysqlRun, ReproduceError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ReproduceError::Store(format!("runtime: {e}")))?;
        let server = rt
            .block_on(crate::mysql::provide("reproduce busy-loop"))?
            .ok_or(ReproduceError::NoMysql)?;
        progress(&format!(
            "  MySQL: {} ({})",
            server.provider(),
            server.redacted_url()
        ));
        let scope = rt.block_on(crate::run_scope::RunScope::claim(
            server.url(),
            "podgrant_repro",
        ))?;
        let swept = scope.swept();
        if !swept.schemas.is_empty() {
            progress(&format!(
                "  swept leftovers of dead runs: {} schemas, {} accounts ({})",
                swept.schemas.len(),
                swept.accounts,
                swept.schemas.join(", ")
            ));
        }
        progress(&format!(
            "  this run: ledger schema {}, pod network {}",
            scope.schema(),
            scope.pod_cidr()
        ));
        Ok(MysqlRun { rt, server, scope })
    }

    fn cleanup(self, progress: Progress<'_>) -> Result<(), ReproduceError> {
        let MysqlRun { rt, server, scope } = self;
        let removed = rt.block_on(scope.cleanup())?;
        progress(&format!(
            "  cleaned up: {} accounts and ledger schema {}",
            removed.accounts,
            removed.schemas.join(", ")
        ));
        drop(server);
        Ok(())
    }
}

/// How long the specimen may take to connect, list and reach the closed channel.
const SPECIMEN_START_DEADLINE: Duration = Duration::from_secs(20);

/// Polls `done` every few milliseconds until it holds; `Err(waited)` past `deadline`.
fn wait_for(deadline: Duration, mut done: impl FnMut() -> bool) -> Result<(), Duration> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() >= deadline {
            return Err(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Waits `duration` of wall time, printing a progress line about once a second.
fn tick(duration: Duration, progress: Progress<'_>, mut line: impl FnMut(Duration) -> String) {
    let start = Instant::now();
    let mut next = Duration::from_secs(1);
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_millis(50).min(duration.saturating_sub(start.elapsed())));
        if start.elapsed() >= next || start.elapsed() >= duration {
            progress(&line(start.elapsed()));
            next += Duration::from_secs(1);
        }
    }
}

fn run_specimen_phase(
    opts: &BusyLoopOptions,
    sim: &Sim,
    url: &str,
    progress: Progress<'_>,
) -> Result<SideReport, ReproduceError> {
    progress("phase 1/3: the seed's loop (specimen) on runtime pg-specimen, profiled");
    let meter = CpuMeter::new(SPECIMEN_THREADS, Duration::from_millis(50))?;
    let rt = named_runtime(SPECIMEN_THREADS, 1)?;
    let stats = Arc::new(SpecimenStats::default());
    let watches_before = sim.stats().watch_starts("pods");
    let capture = Capture::start(DEFAULT_FREQUENCY)?;
    // The client's connection tasks must live on the specimen's runtime: build it there.
    let client = rt.block_on(async { tcp_client(url) })?;
    // Spawn the seed's function itself, so that it is the outermost podgrant frame on the profile.
    let task = rt.spawn(watch_pods_by_selector(
        client,
        NAMESPACE.into(),
        SELECTOR.into(),
        stats.clone(),
    ));
    // Measure the loop from its first empty receive: connecting and listing wait on the sim
    // (slow on a loaded machine) and are not the bug; from the closed channel on it never sleeps.
    if let Err(e) = wait_for(SPECIMEN_START_DEADLINE, || stats.empty_receives() > 0) {
        task.abort();
        rt.shutdown_timeout(Duration::from_secs(2));
        return Err(ReproduceError::SpecimenNeverSpun {
            waited: e,
            events: stats.events(),
        });
    }
    let interval = meter.interval()?;
    tick(opts.duration, progress, |t| {
        format!(
            "  [{:>4.1}s] specimen: CPU {:.2} core so far, {} events, {} empty receives from the closed channel",
            t.as_secs_f64(),
            interval.cpu_so_far().map(|c| c.as_secs_f64() / t.as_secs_f64()).unwrap_or(0.0),
            stats.events(),
            stats.empty_receives()
        )
    });
    let cpu = interval.finish(stats.events())?;
    let dir = opts.artifacts.join("specimen");
    let artifacts = capture.finish(&dir, SPECIMEN_THREADS)?;
    task.abort();
    rt.shutdown_timeout(Duration::from_secs(2));
    let pod_watches = sim.stats().watch_starts("pods") - watches_before;
    Ok(SideReport {
        label: "specimen".into(),
        cpu,
        pod_watches,
        // The first watch is a connect, not a reconnect.
        reconnects_per_sec: pod_watches.saturating_sub(1) as f64 / cpu.wall.as_secs_f64(),
        events: stats.events(),
        empty_receives: Some(stats.empty_receives()),
        grants: None,
        grants_correct: None,
        grant_problems: Vec::new(),
        hot_function: artifacts.top_cum.first().map(str::to_string),
        hot_share: artifacts
            .top_cum
            .first()
            .map(|f| artifacts.top_cum.cum_share_of(f))
            .unwrap_or(0.0),
        capture_dir: dir,
        capture: Some(artifacts),
    })
}

/// The bare kube-rs `watcher` with its default config, the way most Rust controllers start.
async fn bare_watcher(client: kube::Client, events: Arc<std::sync::atomic::AtomicU64>) {
    use futures::StreamExt;
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, NAMESPACE);
    let stream = kube::runtime::watcher(api, kube::runtime::watcher::Config::default());
    let mut stream = std::pin::pin!(stream);
    while stream.next().await.is_some() {
        events.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn run_watcher_phase(
    opts: &BusyLoopOptions,
    sim: &Sim,
    url: &str,
    progress: Progress<'_>,
) -> Result<SideReport, ReproduceError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    progress("phase 2/3: a bare kube-rs watcher (default config) on runtime pg-watcher, same fault, profiled");
    let meter = CpuMeter::new(WATCHER_THREADS, Duration::from_millis(50))?;
    let rt = named_runtime(WATCHER_THREADS, 1)?;
    let events = Arc::new(AtomicU64::new(0));
    let watches_before = sim.stats().watch_starts("pods");
    let capture = Capture::start(DEFAULT_FREQUENCY)?;
    let interval = meter.interval()?;
    let client = rt.block_on(async { tcp_client(url) })?;
    let task = rt.spawn(bare_watcher(client, events.clone()));
    tick(opts.duration, progress, |t| {
        format!(
            "  [{:>4.1}s] kube-rs watcher: CPU {:.3} core so far, {} stream items, {} pod watches",
            t.as_secs_f64(),
            interval
                .cpu_so_far()
                .map(|c| c.as_secs_f64() / t.as_secs_f64())
                .unwrap_or(0.0),
            events.load(Ordering::Relaxed),
            sim.stats().watch_starts("pods") - watches_before
        )
    });
    let n = events.load(Ordering::Relaxed);
    let cpu = interval.finish(n)?;
    let dir = opts.artifacts.join("watcher");
    let artifacts = capture.finish(&dir, WATCHER_THREADS)?;
    task.abort();
    rt.shutdown_timeout(Duration::from_secs(2));
    let pod_watches = sim.stats().watch_starts("pods") - watches_before;
    Ok(SideReport {
        label: "kube-rs watcher".into(),
        cpu,
        pod_watches,
        reconnects_per_sec: pod_watches.saturating_sub(1) as f64 / cpu.wall.as_secs_f64(),
        events: n,
        empty_receives: None,
        grants: None,
        grants_correct: None,
        grant_problems: Vec::new(),
        hot_function: artifacts.top_cum.first().map(str::to_string),
        hot_share: artifacts
            .top_cum
            .first()
            .map(|f| artifacts.top_cum.cum_share_of(f))
            .unwrap_or(0.0),
        capture_dir: dir,
        capture: Some(artifacts),
    })
}

/// The engine's store, whichever was chosen, behind one enum so the phase is written once.
enum AnyStore {
    Memory(MemoryStore),
    Mysql {
        store: podgrant_core::store::mysql::MysqlStore,
    },
}

fn run_engine_phase(
    opts: &BusyLoopOptions,
    sim: &Sim,
    url: &str,
    mysql: Option<&MysqlRun>,
    progress: Progress<'_>,
) -> Result<SideReport, ReproduceError> {
    progress("phase 3/3: podgrant's engine on runtime pg-engine, same fault, profiled");
    let meter = CpuMeter::new(ENGINE_THREADS, Duration::from_millis(50))?;
    let rt = named_runtime(ENGINE_THREADS, 2)?;
    let store = match mysql {
        None => AnyStore::Memory(MemoryStore::new()),
        Some(m) => {
            let s = rt
                .block_on(podgrant_core::store::mysql::MysqlStore::connect(
                    m.server.url(),
                    m.scope.schema(),
                ))
                .map_err(|e| ReproduceError::Store(e.to_string()))?;
            AnyStore::Mysql { store: s }
        }
    };
    let config = EngineConfig {
        namespace: Some(NAMESPACE.into()),
        ..EngineConfig::default()
    };
    let watches_before = sim.stats().watch_starts("pods");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let capture = Capture::start(DEFAULT_FREQUENCY)?;
    let interval = meter.interval()?;
    let client = rt.block_on(async { engine_tcp_client(url) })?;
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let (metrics, task) = match &store {
        AnyStore::Memory(s) => {
            let engine = Engine::new(client, Arc::new(s.clone()), config);
            (engine.metrics(), rt.spawn(engine.run(shutdown)))
        }
        AnyStore::Mysql { store: s, .. } => {
            let engine = Engine::new(client, Arc::new(s.clone()), config);
            (engine.metrics(), rt.spawn(engine.run(shutdown)))
        }
    };
    tick(opts.duration, progress, |t| {
        let m = metrics.snapshot();
        format!(
            "  [{:>4.1}s] engine: CPU {:.3} core so far, {} events, {} pod watches, {} reconciles, ledger {}",
            t.as_secs_f64(),
            interval.cpu_so_far().map(|c| c.as_secs_f64() / t.as_secs_f64()).unwrap_or(0.0),
            m.total_events(),
            sim.stats().watch_starts("pods") - watches_before,
            m.reconciles,
            m.ledger_size
        )
    });
    let snapshot = metrics.snapshot();
    let cpu = interval.finish(snapshot.total_events())?;
    let dir = opts.artifacts.join("engine");
    let artifacts = capture.finish(&dir, ENGINE_THREADS)?;
    let pod_watches = sim.stats().watch_starts("pods") - watches_before;

    // Grants: the store against the desired set implied by the sim's truth.
    // The busy-loop fixture predates tenancy: the oracle runs with it off (flip after tenancy lands).
    let desired = crate::truth::expect(
        &crate::truth::OracleConfig::default(),
        &crate::truth::Truth::from_sim(sim)?,
        &Default::default(),
    );
    let (have, problems): (usize, Vec<Violation>) = match &store {
        AnyStore::Memory(s) => {
            let state = s.snapshot();
            (state.ledger.len(), check_convergence(&desired, &state))
        }
        AnyStore::Mysql { store: s, .. } => {
            let wanted: BTreeSet<AccountKey> = desired.accounts.keys().cloned().collect();
            let observed = rt
                .block_on(s.observe(&wanted))
                .map_err(|e| ReproduceError::Store(e.to_string()))?;
            (
                observed.owned.len(),
                check_convergence_observed(&desired, &observed),
            )
        }
    };
    let _ = stop_tx.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
    if let AnyStore::Mysql { store: s, .. } = &store {
        let _ = rt.block_on(s.disconnect());
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(store);
    Ok(SideReport {
        label: "engine".into(),
        cpu,
        pod_watches,
        // The first watch is a connect, not a reconnect.
        reconnects_per_sec: pod_watches.saturating_sub(1) as f64 / cpu.wall.as_secs_f64(),
        events: snapshot.total_events(),
        empty_receives: None,
        grants: Some((have, desired.accounts.len())),
        grants_correct: Some(problems.is_empty() && !desired.accounts.is_empty()),
        grant_problems: problems.iter().map(|v| v.to_string()).collect(),
        hot_function: artifacts.top_cum.first().map(str::to_string),
        hot_share: artifacts
            .top_cum
            .first()
            .map(|f| artifacts.top_cum.cum_share_of(f))
            .unwrap_or(0.0),
        capture_dir: dir,
        capture: Some(artifacts),
    })
}

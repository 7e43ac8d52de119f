//! `soak`: the engine against the sim in real time for a long stretch, with generated churn and faults; CPU over time as SVG.
//!
//! The sim runs on `pg-sim` (served over loopback TCP), the engine on `pg-engine`; the churn is a
//! long generated scenario ([`crate::generate`]) whose steps the sim runtime applies at their
//! offsets. Every second the engine threads' CPU is sampled; at the end faults are lifted, the
//! engine gets a bounded time to converge, and the report (text + JSON) and `cpu.svg` are written.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::store::MemoryStore;
use podgrant_sim::{FaultPlan, Sim};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::Serialize;

use crate::cpu::{mem_stats, named_runtime, CpuMeter};
use crate::generate::{case_strategy, realize};
use crate::invariants::{check_convergence, Violation};
use crate::reproduce::{engine_tcp_client, ENGINE_THREADS, SIM_THREADS};

/// Errors that stop a soak run.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error(transparent)]
    Cpu(#[from] crate::cpu::CpuError),
    #[error(transparent)]
    Truth(#[from] crate::truth::TruthError),
    #[error(transparent)]
    Reproduce(#[from] crate::reproduce::ReproduceError),
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error("sim: {0}")]
    Sim(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Options of `soak`.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub duration: Duration,
    pub seed: u64,
    /// Time allowed to converge after faults are lifted.
    pub settle: Duration,
    pub artifacts: PathBuf,
    /// Budget on the engine's average CPU share (1.0 = a core).
    pub max_cpu_share: f64,
}

/// One CPU sample.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    pub t_secs: f64,
    pub cpu_share: f64,
    pub events: u64,
    pub pod_watches: u64,
}

/// The soak's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub seed: u64,
    pub steps_applied: usize,
    pub samples: Vec<Sample>,
    pub avg_cpu_share: f64,
    pub max_cpu_share: f64,
    pub cpu_us_per_event: Option<f64>,
    pub watches_per_sec: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub converged: bool,
    pub violations: Vec<Violation>,
    pub svg: PathBuf,
    pub report_json: PathBuf,
    /// The engine's profile over the soak.
    pub profile: PathBuf,
    #[serde(skip)]
    pub top: String,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "soak (seed {}): {} — {} steps applied, {} samples",
            self.seed,
            if self.passed() { "PASSED" } else { "FAILED" },
            self.steps_applied,
            self.samples.len()
        )?;
        writeln!(
            f,
            "  engine CPU share: avg {:.4}, max {:.4}; CPU-µs/event: {}; watches/s: {:.2}",
            self.avg_cpu_share,
            self.max_cpu_share,
            self.cpu_us_per_event
                .map_or("-".into(), |v| format!("{v:.1}")),
            self.watches_per_sec
        )?;
        writeln!(
            f,
            "  RSS {} → {} KiB; converged after faults lifted: {}",
            self.rss_start_kib, self.rss_end_kib, self.converged
        )?;
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        if !self.passed() {
            writeln!(f, "{}", self.top)?;
        }
        writeln!(
            f,
            "  cpu over time: {}\n  profile: {}\n  report: {}",
            self.svg.display(),
            self.profile.display(),
            self.report_json.display()
        )
    }
}

/// A generated scenario long enough to cover `duration` (deterministic for a seed).
fn churn(seed: u64, duration: Duration) -> podgrant_sim::Scenario {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &{
            let mut b = [7u8; 32];
            b[..8].copy_from_slice(&seed.to_le_bytes());
            b
        }),
    );
    let mut ops = Vec::new();
    let mut total = Duration::ZERO;
    while total < duration {
        let case = case_strategy(32)
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or_default();
        for (gap, op) in case {
            total += Duration::from_millis(u64::from(gap));
            ops.push((gap, op));
            if total >= duration {
                break;
            }
        }
    }
    let sc = realize("soak", seed, &ops);
    podgrant_sim::Scenario {
        seed,
        pod_cidr: None,
        steps: sc
            .initial
            .into_iter()
            .map(|step| podgrant_sim::TimedStep {
                at: Duration::ZERO,
                step,
            })
            .chain(sc.steps)
            .collect(),
    }
}

/// Runs the soak; `progress(fraction, line)` is called about once a second.
pub fn run(
    opts: &SoakOptions,
    progress: &mut dyn FnMut(f64, &str),
) -> Result<SoakReport, SoakError> {
    std::fs::create_dir_all(&opts.artifacts).map_err(|source| SoakError::Write {
        path: opts.artifacts.clone(),
        source,
    })?;
    let sim_rt = named_runtime(SIM_THREADS, 1)?;
    let sim = Sim::builder().seed(opts.seed).build();
    let server = sim_rt
        .block_on(sim.serve_tcp(([127, 0, 0, 1], 0).into()))
        .map_err(|e| SoakError::Sim(e.to_string()))?;
    let plan = churn(opts.seed, opts.duration);
    // Cut the generated tail (the final fault lift) at the soak's end: the harness lifts faults itself.
    let steps: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.at < opts.duration)
        .cloned()
        .collect();
    let steps_applied = steps.len();
    let churn_task = {
        let sim = sim.clone();
        let sc = podgrant_sim::Scenario { steps, ..plan };
        sim_rt.spawn(async move { sc.run(&sim).await })
    };

    let meter = CpuMeter::new(ENGINE_THREADS, Duration::from_millis(50))?;
    let rt = named_runtime(ENGINE_THREADS, 2)?;
    let store = MemoryStore::new();
    let config = EngineConfig {
        seed: opts.seed,
        ..EngineConfig::default()
    };
    let client = rt.block_on(async { engine_tcp_client(&server.url()) })?;
    let engine = Engine::new(client, Arc::new(store.clone()), config);
    let metrics = engine.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(engine.run(async move {
        let _ = stop_rx.await;
    }));

    // Every real-time run is profiled; the capture is written with the report.
    let capture = crate::capture::Capture::start(crate::capture::DEFAULT_FREQUENCY)?;
    // After the profiler started: pprof-rs allocates its sample table (~340 MB here) then.
    let rss_start = mem_stats()?.rss_kib;
    let total_iv = meter.interval()?;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut last_cpu = meter.total()?;
    let mut last_t = start;
    while start.elapsed() < opts.duration {
        std::thread::sleep(
            Duration::from_secs(1).min(opts.duration.saturating_sub(start.elapsed())),
        );
        let now = Instant::now();
        let cpu = meter.total()?;
        let share = (cpu - last_cpu).as_secs_f64() / (now - last_t).as_secs_f64().max(1e-9);
        (last_cpu, last_t) = (cpu, now);
        let m = metrics.snapshot();
        let s = Sample {
            t_secs: start.elapsed().as_secs_f64(),
            cpu_share: share,
            events: m.total_events(),
            pod_watches: sim.stats().watch_starts("pods"),
        };
        progress(
            s.t_secs / opts.duration.as_secs_f64(),
            &format!(
                "cpu {:.3} core, {} events, {} pod watches, ledger {}",
                share, s.events, s.pod_watches, m.ledger_size
            ),
        );
        samples.push(s);
    }
    let total = total_iv.finish(metrics.snapshot().total_events())?;
    // Before the capture is symbolized (that maps the binary's debuginfo): only the run's growth.
    let rss_end = mem_stats()?.rss_kib;
    let artifacts = capture.finish(&opts.artifacts.join("capture"), ENGINE_THREADS)?;
    // Lift faults and give the engine a bounded time to converge.
    sim.set_faults(FaultPlan::new(opts.seed));
    churn_task.abort();
    let settle_start = Instant::now();
    let (converged, problems) = loop {
        // The soak's fixtures predate tenancy: the oracle runs with it off (flip after tenancy lands).
        let expected = crate::truth::expect(
            &crate::truth::OracleConfig::default(),
            &crate::truth::Truth::from_sim(&sim)?,
            &Default::default(),
        );
        let problems = check_convergence(&expected, &store.snapshot());
        if problems.is_empty() {
            break (true, problems);
        }
        if settle_start.elapsed() > opts.settle {
            break (false, problems);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = stop_tx.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await });
    rt.shutdown_timeout(Duration::from_secs(2));
    drop(server);
    sim_rt.shutdown_timeout(Duration::from_secs(2));

    let mut violations = Vec::new();
    if !converged {
        violations.extend(problems);
    }
    if total.share > opts.max_cpu_share {
        violations.push(Violation::new(
            crate::invariants::Invariant::IdleCpu,
            format!(
                "engine average CPU share {:.4} > budget {}",
                total.share, opts.max_cpu_share
            ),
        ));
    }
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.t_secs, s.cpu_share)).collect();
    let svg = opts.artifacts.join("cpu.svg");
    std::fs::write(
        &svg,
        crate::plot::line_chart_svg(
            &format!("podgrant engine CPU during soak (seed {})", opts.seed),
            "CPU share of pg-engine threads (1.0 = a core)",
            &points,
            Some(opts.max_cpu_share),
        ),
    )
    .map_err(|source| SoakError::Write {
        path: svg.clone(),
        source,
    })?;
    let watches = samples.last().map_or(0, |s| s.pod_watches);
    let report = SoakReport {
        seed: opts.seed,
        steps_applied,
        max_cpu_share: samples.iter().map(|s| s.cpu_share).fold(0.0, f64::max),
        samples,
        avg_cpu_share: total.share,
        cpu_us_per_event: total.cpu_us_per_event,
        watches_per_sec: watches as f64 / total.wall.as_secs_f64().max(1e-9),
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
        converged,
        violations,
        svg,
        report_json: opts.artifacts.join("soak.json"),
        profile: artifacts.profile.clone(),
        top: format!("{}\n{}", artifacts.top, artifacts.top_cum),
    };
    std::fs::write(
        &report.report_json,
        serde_json::to_string_pretty(&report).expect("a report always serializes"),
    )
    .map_err(|source| SoakError::Write {
        path: report.report_json.clone(),
        source,
    })?;
    Ok(report)
}

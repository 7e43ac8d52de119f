//! The `podgrant-harness` CLI: reproduce the seed's busy loop, run and fuzz scenarios, soak, serve the sim.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use podgrant_harness::reproduce::{self, BusyLoopOptions, StoreChoice};
use podgrant_harness::scenario;

#[derive(Parser)]
#[command(
    name = "podgrant-harness",
    version,
    about = "Runs podgrant's engine against the simulated API server; asserts it is correct and cheap"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-enact a known failure next to the real engine.
    Reproduce {
        #[command(subcommand)]
        what: Reproduce,
    },
    /// Scenario files: run one, or fuzz generated ones.
    Scenario {
        #[command(subcommand)]
        what: ScenarioCmd,
    },
    /// The engine against the sim in real time with churn and faults; writes a CPU-over-time SVG.
    Soak {
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        duration: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Time allowed to converge once faults are lifted at the end.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        settle: Duration,
        /// Budget on the engine's average CPU share (1.0 = a core).
        #[arg(long, default_value_t = 0.05)]
        max_cpu_share: f64,
        #[arg(long, default_value = "target/podgrant-artifacts/soak")]
        artifacts: PathBuf,
    },
    /// Walk any client process (CMD) through the sim's fault catalogue; a verdict per phase.
    ///
    /// Runs CMD with KUBECONFIG pointing at the sim, one phase per fault; per phase the CPU share
    /// of CMD's process tree, peak RSS, requests/s and watch starts/s, and whether it recovered
    /// (watched again and was sent a change made after the fault lifted). Writes report.json,
    /// report.md and cpu.svg; exits 1 if any phase is SPINS, STORMS or STUCK.
    Probe(ProbeArgs),
    /// The simulated API server.
    Sim {
        #[command(subcommand)]
        what: SimCmd,
    },
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// A sim scenario file (JSON); default: a namespace with a Service and 20 ready pods.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Length of each phase's fault window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    phase: Duration,
    /// Time allowed to recover after each fault lifts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    recover: Duration,
    /// Time allowed for CMD to start its first watch.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    startup: Duration,
    /// Comma-separated subset of: baseline, closed-after-initial, resets, flood-close,
    /// expire-410, compaction, http-429, http-503, stall, burst, tail (default: all).
    #[arg(long, default_value = "all")]
    phases: String,
    /// Budget: CPU share of CMD's process tree (1.0 = a core).
    #[arg(long, default_value_t = 0.05)]
    max_cpu_share: f64,
    /// Budget: watch starts per second.
    #[arg(long, default_value_t = 2.0)]
    max_watch_starts: f64,
    /// Budget: API requests per second.
    #[arg(long, default_value_t = 10.0)]
    max_requests: f64,
    /// Where report.json, report.md, cpu.svg, the kubeconfig and CMD's output go.
    #[arg(long, default_value = "target/podgrant-artifacts/probe")]
    artifacts: PathBuf,
    /// The command to probe, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum Reproduce {
    /// The seed's bug: a loop spinning on a closed watch channel, next to podgrant's engine.
    BusyLoop {
        /// Length of each phase (humantime: 5s, 1500ms).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Use the real MySQL store (MYSQL_URL, else a self-started mariadbd) instead of the in-memory one.
        #[arg(long)]
        mysql: bool,
        /// Where profiles, flamegraphs and top tables go.
        #[arg(long, default_value = "target/podgrant-artifacts/busy-loop")]
        artifacts: PathBuf,
        /// Pods behind the service.
        #[arg(long, default_value_t = 20)]
        pods: usize,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ScenarioCmd {
    /// Run a scenario file; writes report.txt and report.json (and a capture on failure).
    Run {
        file: PathBuf,
        /// Run in real time (profiled) instead of under tokio's paused clock.
        #[arg(long)]
        real_time: bool,
        /// Run a deliberately broken subject instead of the engine (checks the harness's teeth).
        #[arg(long, value_enum, default_value = "engine")]
        subject: SubjectArg,
        #[arg(long, default_value = "target/podgrant-artifacts/scenario")]
        artifacts: PathBuf,
    },
    /// Generate scenarios with proptest and run them on the engine under the paused clock;
    /// a failure is shrunk, written as a scenario file, and re-run in real time with a capture.
    Fuzz {
        #[arg(long, default_value_t = 64)]
        cases: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Most operations per generated scenario.
        #[arg(long, default_value_t = 24)]
        max_ops: usize,
        #[arg(long, default_value = "target/podgrant-artifacts/fuzz")]
        artifacts: PathBuf,
        /// Fuzz a deliberately broken subject (the fuzzer must find and shrink its bug).
        #[arg(long, value_enum, default_value = "engine")]
        subject: SubjectArg,
        /// Do not re-run the minimal failing case in real time.
        #[arg(long)]
        no_real_time_rerun: bool,
        /// The store the cases run on: memory (paused clock), or mysql (a real server from the
        /// provider; each case in real time, in its own run scope, removed afterwards).
        #[arg(long, value_enum, default_value = "memory")]
        store: StoreArg,
        /// A fault plan (JSON) whose rules are armed from the start of every case, on top of
        /// the generated ones; its kinds count toward the coverage check.
        #[arg(long)]
        arm: Option<PathBuf>,
        /// Cases run at once (default: one per CPU with the memory store, one with MySQL).
        /// The outcome — cases, first failure, shrinking, coverage — is the same for any value.
        #[arg(long)]
        jobs: Option<usize>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StoreArg {
    Memory,
    Mysql,
}

impl From<StoreArg> for scenario::StoreKind {
    fn from(s: StoreArg) -> Self {
        match s {
            StoreArg::Memory => scenario::StoreKind::Memory,
            StoreArg::Mysql => scenario::StoreKind::Mysql,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SubjectArg {
    Engine,
    NeverRevokes,
    SpinOnClosedStream,
    BareWatcher,
    NeverResyncs,
    DropsForeign,
    RequestStorm,
    PlantedReadinessIgnored,
    PlantedHostNetworkIgnored,
    PlantedSubsetSelector,
    PlantedAllowlistIgnored,
    PlantedTerminatingIgnored,
}

impl From<SubjectArg> for scenario::Subject {
    fn from(s: SubjectArg) -> Self {
        use podgrant_harness::planted::Bug;
        use scenario::Subject::Planted;
        match s {
            SubjectArg::Engine => scenario::Subject::Engine,
            SubjectArg::NeverRevokes => scenario::Subject::NeverRevokes,
            SubjectArg::SpinOnClosedStream => scenario::Subject::SpinOnClosedStream,
            SubjectArg::BareWatcher => scenario::Subject::BareWatcher,
            SubjectArg::NeverResyncs => scenario::Subject::NeverResyncs,
            SubjectArg::DropsForeign => scenario::Subject::DropsForeign,
            SubjectArg::RequestStorm => scenario::Subject::RequestStorm,
            SubjectArg::PlantedReadinessIgnored => Planted(Bug::ReadinessIgnored),
            SubjectArg::PlantedHostNetworkIgnored => Planted(Bug::HostNetworkIgnored),
            SubjectArg::PlantedSubsetSelector => Planted(Bug::SubsetSelector),
            SubjectArg::PlantedAllowlistIgnored => Planted(Bug::AllowlistIgnored),
            SubjectArg::PlantedTerminatingIgnored => Planted(Bug::TerminatingIgnored),
        }
    }
}

#[derive(Subcommand)]
enum SimCmd {
    /// Serve the sim over loopback TCP and write a kubeconfig (Ctrl-C to stop).
    Serve {
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A fault plan (JSON) to start with.
        #[arg(long)]
        faults: Option<PathBuf>,
        /// A sim scenario (JSON) to apply.
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the kubeconfig.
        #[arg(long, default_value = "target/podgrant-sim.kubeconfig")]
        kubeconfig: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Print the chain, skipping causes their parent's message already includes.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg = format!("{msg}: {c}");
                }
            }
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Reproduce {
            what:
                Reproduce::BusyLoop {
                    duration,
                    mysql,
                    artifacts,
                    pods,
                    json,
                },
        } => {
            let opts = BusyLoopOptions {
                duration,
                pods,
                store: if mysql {
                    StoreChoice::Mysql
                } else {
                    StoreChoice::Memory
                },
                artifacts,
                ..BusyLoopOptions::default()
            };
            let report = reproduce::run_busy_loop(&opts, &mut |line| eprintln!("{line}"))
                .context("reproduce busy-loop")?;
            println!("{report}");
            if let Some(path) = json {
                let text = serde_json::to_string_pretty(&report)?;
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Scenario {
            what:
                ScenarioCmd::Run {
                    file,
                    real_time,
                    subject,
                    artifacts,
                },
        } => {
            let sc = scenario::Scenario::load(&file)?;
            let mut opts = if real_time {
                scenario::RunOptions::real_time(artifacts.join(&sc.name))
            } else {
                scenario::RunOptions::paused(artifacts.join(&sc.name))
            };
            opts.subject = subject.into();
            opts.capture = true;
            let report = scenario::run(&sc, &opts)?;
            print!("{report}");
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Scenario {
            what:
                ScenarioCmd::Fuzz {
                    cases,
                    seed,
                    max_ops,
                    artifacts,
                    subject,
                    no_real_time_rerun,
                    store,
                    arm,
                    jobs,
                },
        } => {
            let arm = match &arm {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading fault plan {}", path.display()))?;
                    podgrant_sim::FaultPlan::from_json(&text)
                        .with_context(|| format!("fault plan {}", path.display()))?
                }
                None => podgrant_sim::FaultPlan::default(),
            };
            fuzz(&podgrant_harness::generate::FuzzOptions {
                cases,
                seed,
                max_ops,
                subject: subject.into(),
                real_time_rerun: !no_real_time_rerun,
                artifacts,
                store: store.into(),
                arm,
                jobs: jobs.unwrap_or(match store {
                    StoreArg::Memory => podgrant_harness::generate::default_jobs(),
                    StoreArg::Mysql => 1,
                }),
            })
        }
        Command::Soak {
            duration,
            seed,
            settle,
            max_cpu_share,
            artifacts,
        } => {
            let bar = indicatif::ProgressBar::new(1000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {msg}",
                )
                .expect("static template"),
            );
            let report = podgrant_harness::soak::run(
                &podgrant_harness::soak::SoakOptions {
                    duration,
                    seed,
                    settle,
                    artifacts,
                    max_cpu_share,
                },
                &mut |frac, line| {
                    bar.set_position((frac * 1000.0) as u64);
                    bar.set_message(line.to_string());
                },
            )?;
            bar.finish();
            print!("{report}");
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Probe(args) => probe(args),
        Command::Sim {
            what:
                SimCmd::Serve {
                    port,
                    faults,
                    scenario,
                    seed,
                    kubeconfig,
                },
        } => sim_serve(port, faults, scenario, seed, kubeconfig),
    }
}

fn probe(args: ProbeArgs) -> Result<ExitCode> {
    use podgrant_harness::probe;
    for (flag, v) in [
        ("--max-cpu-share", args.max_cpu_share),
        ("--max-watch-starts", args.max_watch_starts),
        ("--max-requests", args.max_requests),
    ] {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "{flag} must be a number ≥ 0 (got {v})"
        );
    }
    let opts = probe::ProbeOptions {
        command: args.command,
        scenario: args.scenario,
        phases: probe::phases::parse_phases(&args.phases)?,
        phase: args.phase,
        recover: args.recover,
        startup: args.startup,
        budget: probe::Budget {
            max_cpu_share: args.max_cpu_share,
            max_watch_starts_per_sec: args.max_watch_starts,
            max_requests_per_sec: args.max_requests,
        },
        artifacts: args.artifacts,
    };
    let report = probe::run_probe(&opts, &mut |line| eprintln!("{line}")).context("probe")?;
    println!("{}", report.markdown());
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn fuzz(opts: &podgrant_harness::generate::FuzzOptions) -> Result<ExitCode> {
    let (cases, seed) = (opts.cases, opts.seed);
    let load_before = load_average();
    let bar = indicatif::ProgressBar::new(u64::from(cases));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} cases {msg}",
        )
        .expect("static template"),
    );
    let outcome = podgrant_harness::generate::fuzz(opts, &mut |runs, shrinking| {
        if shrinking {
            bar.set_message(format!("(failure found; shrinking, run {runs})"));
        } else {
            bar.set_position(runs.min(u64::from(cases)));
        }
    })?;
    bar.finish();
    println!(
        "fuzz: seed {seed}, {} cases ({} runs incl. shrinking) in {:.1?}",
        outcome.cases, outcome.runs, outcome.wall
    );
    let rate = outcome.runs as f64 / outcome.wall.as_secs_f64().max(1e-9);
    println!(
        "{rate:.1} cases/s ({} at once; load average before {load_before}, after {})",
        outcome.jobs,
        load_average()
    );
    print!("{}", outcome.coverage);
    let unfired = outcome.coverage.unfired();
    match outcome.failure {
        None if !unfired.is_empty() => {
            println!(
                "FAILED: scheduled fault kinds never hit a watch across the corpus: {}",
                unfired.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
        None => {
            println!("all cases passed; every scheduled fault kind hit a watch");
            Ok(ExitCode::SUCCESS)
        }
        Some(f) => {
            println!("FAILED: {}", f.reason);
            println!(
                "minimal case: {} (replay: podgrant-harness scenario run {})",
                f.file.display(),
                f.file.display()
            );
            print!("{}", f.paused_report);
            if let Some(r) = &f.real_time_report {
                print!("real-time re-run:\n{r}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`), to print next to a rate.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn sim_serve(
    port: u16,
    faults: Option<PathBuf>,
    scenario: Option<PathBuf>,
    seed: u64,
    kubeconfig: PathBuf,
) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pg-sim")
        .build()?;
    rt.block_on(async {
        let mut b = podgrant_sim::Sim::builder().seed(seed);
        if let Some(path) = &faults {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading fault plan {}", path.display()))?;
            let plan = podgrant_sim::FaultPlan::from_json(&text)
                .with_context(|| format!("fault plan {}", path.display()))?;
            b = b.faults(plan);
        }
        let sc = match &scenario {
            Some(path) => Some(
                podgrant_sim::Scenario::load(path)
                    .with_context(|| format!("scenario {}", path.display()))?,
            ),
            None => None,
        };
        let sim = b.build();
        let server = sim
            .serve_tcp(([127, 0, 0, 1], port).into())
            .await
            .context("serving")?;
        if let Some(parent) = kubeconfig.parent() {
            std::fs::create_dir_all(parent).ok();
        }
        sim.write_kubeconfig(&kubeconfig, &server.url())
            .context("writing kubeconfig")?;
        println!("sim serving {}", server.url());
        println!("kubeconfig: {}", kubeconfig.display());
        println!(
            "try: kubectl --kubeconfig {} get pods -A -w",
            kubeconfig.display()
        );
        if let Some(sc) = sc {
            sc.run(&sim).await.context("scenario")?;
        }
        tokio::signal::ctrl_c().await.ok();
        drop(server);
        Ok(ExitCode::SUCCESS)
    })
}

//! `probe -- CMD`: walks any Kubernetes client process through the sim's fault catalogue and judges each phase.
//!
//! The shell: starts the sim over loopback TCP with a scenario, writes a kubeconfig, runs CMD
//! (its own process group) with `KUBECONFIG` set, waits until it starts watching, then runs one
//! phase per fault ([`phases`]). Each phase sets its fault plan (reaching watches already open)
//! and/or flood, samples the CMD's process tree once a second ([`proctree`]), lifts the fault and
//! checks recovery, and is judged against the budgets ([`verdict`]); [`report`] renders it.
//!
//! **Recovered** means: within `--recover` of the fault lifting, (1) the subject is watching
//! again — it started a watch after the lift, or every resource it watches has a live watch
//! (open and delivering, [`Sim::visibility`]: it re-watched during the phase already), or no
//! fault reached any of its watches during the phase (its watch is intact) — and (2) after the
//! harness created a marker pod (labels of the scenario's first pod, in its namespace) it saw it: the sim sent it a watch event, or answered
//! a pod list (which holds the marker; a client that relists then watches from the list's RV is
//! sent no event for it). The sim counts events sent, not which object they carried, so (2) can
//! be met by a reconnect's initial events of another resource.

pub mod phases;
pub mod proctree;
pub mod report;
pub mod verdict;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podgrant_sim::{FaultPlan, Sim, Stats, Step};

pub use phases::PhaseKind;
pub use report::{PhaseReport, ProbeReport};
pub use verdict::{Budget, Measured, Verdict};

/// Thread name of the sim's runtime (so the harness's own threads are never mistaken for the subject's).
pub const SIM_THREADS: &str = "pg-probe-sim";

/// Errors that stop the probe (a subject that breaks its budget is a verdict, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no command to probe: give it after `--`, e.g. `probe -- my-controller --flag`")]
    NoCommand,
    #[error("--phase must be longer than zero")]
    ZeroPhase,
    #[error("cannot start {command:?}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command:?} exited early ({status}) during {during}; the last lines of its output ({log}):\n{tail}")]
    Exited {
        command: String,
        status: String,
        during: String,
        log: String,
        tail: String,
    },
    #[error("{command:?} started no watch within {after:?}; the last lines of its output ({log}):\n{tail}")]
    NeverWatched {
        command: String,
        after: Duration,
        log: String,
        tail: String,
    },
    #[error("scenario {path}: {message}")]
    Scenario { path: String, message: String },
    #[error("the scenario has no pods: the probe needs one to copy labels from for its floods and marker")]
    NoPods,
    #[error("sim: {0}")]
    Sim(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] crate::cpu::CpuError),
}

/// Options of `probe`.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub command: Vec<String>,
    /// A sim scenario file; default: `reproduce::cluster_steps(20)` (a namespace, a Service, 20 ready pods).
    pub scenario: Option<PathBuf>,
    pub phases: Vec<PhaseKind>,
    /// Length of each phase's fault window.
    pub phase: Duration,
    /// How long after the fault lifts the subject has to recover.
    pub recover: Duration,
    /// How long CMD has to start its first watch.
    pub startup: Duration,
    pub budget: Budget,
    pub artifacts: PathBuf,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            scenario: None,
            phases: PhaseKind::ALL.to_vec(),
            phase: Duration::from_secs(10),
            recover: Duration::from_secs(10),
            startup: Duration::from_secs(30),
            budget: Budget::default(),
            artifacts: PathBuf::from("target/podgrant-artifacts/probe"),
        }
    }
}

/// Progress lines go here (the CLI prints them).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// Runs the probe. Blocking: builds its own runtime for the sim.
pub fn run_probe(opts: &ProbeOptions, progress: Progress<'_>) -> Result<ProbeReport, ProbeError> {
    if opts.command.is_empty() {
        return Err(ProbeError::NoCommand);
    }
    if opts.phase.is_zero() {
        return Err(ProbeError::ZeroPhase);
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ProbeError::Io { path, source }
    };
    std::fs::create_dir_all(&opts.artifacts).map_err(io(&opts.artifacts))?;
    let rt = crate::cpu::named_runtime(SIM_THREADS, 1)?;
    let sim = build_sim(opts, &rt)?;
    let (namespace, labels) = marker_template(&sim)?;
    let server = rt
        .block_on(sim.serve_tcp(([127, 0, 0, 1], 0).into()))
        .map_err(|e| ProbeError::Sim(e.to_string()))?;
    let kubeconfig = opts.artifacts.join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, &server.url())
        .map_err(|e| ProbeError::Sim(e.to_string()))?;
    progress(&format!(
        "sim serving {} ({} pods; floods and markers in namespace {namespace}); KUBECONFIG={}",
        server.url(),
        sim.list("pods", None).len(),
        kubeconfig.display()
    ));
    let log = opts.artifacts.join("subject.log");
    let mut subject = Subject::spawn(&opts.command, &kubeconfig, &log)?;
    let result = walk(opts, &rt, &sim, &mut subject, &namespace, &labels, progress);
    subject.stop();
    drop(server);
    rt.shutdown_timeout(Duration::from_secs(2));
    let report = result?;
    let write = |name: &str, text: String| {
        let path = opts.artifacts.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };
    write(
        "report.json",
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    )?;
    write("report.md", report.markdown())?;
    write("cpu.svg", report.svg())?;
    progress(&format!(
        "wrote {0}/report.json, {0}/report.md, {0}/cpu.svg (subject output: {0}/subject.log)",
        opts.artifacts.display()
    ));
    Ok(report)
}

fn build_sim(opts: &ProbeOptions, rt: &tokio::runtime::Runtime) -> Result<Sim, ProbeError> {
    match &opts.scenario {
        None => {
            let sim = Sim::builder().seed(1).build();
            for step in crate::reproduce::cluster_steps(20) {
                sim.apply(&step)
                    .map_err(|e| ProbeError::Sim(e.to_string()))?;
            }
            Ok(sim)
        }
        Some(path) => {
            let err = |message: String| ProbeError::Scenario {
                path: path.display().to_string(),
                message,
            };
            let sc = podgrant_sim::Scenario::load(path).map_err(|e| err(e.to_string()))?;
            let sim = sc.builder().try_build().map_err(|e| err(e.to_string()))?;
            rt.block_on(sc.run(&sim)).map_err(|e| err(e.to_string()))?;
            Ok(sim)
        }
    }
}

/// The namespace and labels of the scenario's first pod.
fn marker_template(sim: &Sim) -> Result<(String, BTreeMap<String, String>), ProbeError> {
    let pods = sim.list("pods", None);
    let first = pods.first().ok_or(ProbeError::NoPods)?;
    let meta = &first["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
    let labels = meta["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok((ns, labels))
}

/// The process under probe, in its own process group (so its whole tree is stopped at the end).
struct Subject {
    child: Child,
    command: String,
    log: PathBuf,
}

impl Subject {
    fn spawn(command: &[String], kubeconfig: &Path, log: &Path) -> Result<Subject, ProbeError> {
        let io = |source| ProbeError::Io {
            path: log.display().to_string(),
            source,
        };
        let out = File::create(log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let name = command.join(" ");
        let child = Command::new(&command[0])
            .args(&command[1..])
            .env("KUBECONFIG", kubeconfig)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|source| ProbeError::Spawn {
                command: name.clone(),
                source,
            })?;
        Ok(Subject {
            child,
            command: name,
            log: log.to_path_buf(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// An error if it has exited.
    fn check(&mut self, during: &str) -> Result<(), ProbeError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ProbeError::Exited {
                command: self.command.clone(),
                status: status.to_string(),
                during: during.to_string(),
                log: self.log.display().to_string(),
                tail: self.tail(),
            }),
            _ => Ok(()),
        }
    }

    /// SIGTERM to the group, SIGKILL after 2 s if anything of it is still alive.
    fn stop(&mut self) {
        let pgid = self.pid() as i32;
        // SAFETY: signals the process group this probe created for the subject.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; descendants that ignored SIGTERM go too.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The per-second sampler of the subject's tree.
struct Sampler {
    start: Instant,
    last: (Instant, Duration),
    series: Vec<(f64, f64)>,
}

impl Sampler {
    fn new(pid: u32) -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: (now, proctree::sample(pid).cpu),
            series: Vec::new(),
        }
    }

    fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// One reading: the CPU share since the previous one, and the tree itself.
    fn sample(&mut self, pid: u32) -> (f64, proctree::TreeSample) {
        let s = proctree::sample(pid);
        let now = Instant::now();
        let dt = now.duration_since(self.last.0).as_secs_f64().max(1e-3);
        // A child that exits unreaped by its parent takes its CPU with it: never negative.
        let share = s.cpu.saturating_sub(self.last.1).as_secs_f64() / dt;
        self.last = (now, s.cpu);
        self.series.push((self.t(), share));
        (share, s)
    }
}

fn total_watch_starts(s: &Stats) -> u64 {
    s.watch_starts.values().sum()
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn walk(
    opts: &ProbeOptions,
    rt: &tokio::runtime::Runtime,
    sim: &Sim,
    subject: &mut Subject,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    progress: Progress<'_>,
) -> Result<ProbeReport, ProbeError> {
    let pid = subject.pid();
    let mut sampler = Sampler::new(pid);
    // Startup: until the first watch.
    let began = Instant::now();
    let mut next = Duration::from_secs(1);
    while total_watch_starts(&sim.stats()) == 0 {
        subject.check("startup")?;
        if began.elapsed() >= opts.startup {
            return Err(ProbeError::NeverWatched {
                command: subject.command.clone(),
                after: opts.startup,
                log: subject.log.display().to_string(),
                tail: subject.tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
        if began.elapsed() >= next {
            progress(&format!(
                "  [{:>4.1}s] waiting for {} to start watching",
                began.elapsed().as_secs_f64(),
                subject.command
            ));
            next += Duration::from_secs(1);
        }
    }
    // Let its initial list and watches settle before the baseline is measured.
    settle(sim, Duration::from_secs(1), Duration::from_secs(5));
    let mut reports = Vec::new();
    let n = opts.phases.len();
    for (i, kind) in opts.phases.iter().copied().enumerate() {
        progress(&format!(
            "phase {}/{n} {}: {}",
            i + 1,
            kind.name(),
            kind.describe()
        ));
        let before = sim.stats();
        let start_s = sampler.t();
        let (_, s0) = sampler.sample(pid);
        let t0 = Instant::now();
        let flood = kind.flood(namespace).map(|spec| {
            let _g = rt.enter();
            sim.flood(spec)
        });
        if kind.compacts() {
            sim.compact();
        }
        let plan = kind.plan(i as u64 + 1, opts.phase);
        if !plan.is_empty() {
            sim.set_faults(plan);
        }
        let mut peak_rss = s0.rss_kib;
        let mut next = Duration::from_secs(1);
        while t0.elapsed() < opts.phase {
            std::thread::sleep(
                Duration::from_millis(50).min(opts.phase - t0.elapsed().min(opts.phase)),
            );
            subject.check(kind.name())?;
            if t0.elapsed() >= next || t0.elapsed() >= opts.phase {
                let (share, s) = sampler.sample(pid);
                peak_rss = peak_rss.max(s.rss_kib);
                let st = sim.stats();
                let secs = t0.elapsed().as_secs_f64();
                progress(&format!(
                    "  [{}/{n} {} {:>4.1}s] CPU {:>5.1}% of a core, RSS {:.1} MiB, {:.1} requests/s, {:.1} watch starts/s",
                    i + 1,
                    kind.name(),
                    secs,
                    share * 100.0,
                    s.rss_kib as f64 / 1024.0,
                    (st.total_requests() - before.total_requests()) as f64 / secs,
                    (total_watch_starts(&st) - total_watch_starts(&before)) as f64 / secs,
                ));
                next += Duration::from_secs(1);
            }
        }
        let after = sim.stats();
        let s1 = proctree::sample(pid);
        let wall = t0.elapsed().as_secs_f64();
        let end_s = sampler.t();
        // Lift the fault.
        if let Some(f) = &flood {
            f.stop();
        }
        sim.set_faults(FaultPlan::default());
        let lifted = Instant::now();
        let recovery = recover(
            opts,
            sim,
            subject,
            &mut sampler,
            &after,
            &before,
            namespace,
            labels,
            i,
            progress,
        )?;
        let cpu_share = s1.cpu.saturating_sub(s0.cpu).as_secs_f64() / wall;
        let per_sec = |m: BTreeMap<String, u64>| -> BTreeMap<String, f64> {
            m.into_iter().map(|(k, v)| (k, v as f64 / wall)).collect()
        };
        let measured = Measured {
            cpu_share,
            watch_starts_per_sec: (total_watch_starts(&after) - total_watch_starts(&before)) as f64
                / wall,
            requests_per_sec: (after.total_requests() - before.total_requests()) as f64 / wall,
            recovered: recovery.is_some(),
        };
        let (v, why) = verdict::judge(&measured, &opts.budget);
        progress(&format!(
            "  → {} {v}{}",
            kind.name(),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {}", why.join("; "))
            }
        ));
        reports.push(PhaseReport {
            name: kind.name().into(),
            description: kind.describe().into(),
            start_s,
            end_s,
            cpu_share,
            peak_rss_kib: peak_rss.max(s1.rss_kib),
            requests_per_sec: measured.requests_per_sec,
            requests_by: per_sec(diff(&after.requests, &before.requests)),
            watch_starts_per_sec: measured.watch_starts_per_sec,
            watch_starts_by: diff(&after.watch_starts, &before.watch_starts),
            faults: diff(&after.faults, &before.faults),
            recovered: recovery.is_some(),
            recovery_s: recovery.map(|t| t.duration_since(lifted).as_secs_f64()),
            verdict: v,
            why,
        });
    }
    Ok(ProbeReport {
        command: opts.command.clone(),
        phase_s: opts.phase.as_secs_f64(),
        recover_s: opts.recover.as_secs_f64(),
        budget: opts.budget,
        phases: reports,
        cpu_series: sampler.series,
    })
}

/// Waits until no request reached the sim for `quiet` (or `max` passed).
fn settle(sim: &Sim, quiet: Duration, max: Duration) {
    let start = Instant::now();
    let mut last = sim.stats().total_requests();
    let mut since = Instant::now();
    while start.elapsed() < max && since.elapsed() < quiet {
        std::thread::sleep(Duration::from_millis(50));
        let now = sim.stats().total_requests();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

/// Pure: every watched resource has a watch open and delivering (none watched: false).
fn all_live(view: &BTreeMap<String, podgrant_sim::stats::Visibility>) -> bool {
    !view.is_empty() && view.values().all(|v| v.live_watches > 0)
}

/// After the lift: the marker pod, then wait for the subject to watch again and be sent an event.
/// Returns when it recovered, or `None` by the deadline.
#[allow(clippy::too_many_arguments)]
fn recover(
    opts: &ProbeOptions,
    sim: &Sim,
    subject: &mut Subject,
    sampler: &mut Sampler,
    at_lift: &Stats,
    before: &Stats,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    i: usize,
    progress: Progress<'_>,
) -> Result<Option<Instant>, ProbeError> {
    let start = Instant::now();
    let broken = diff(&at_lift.watch_faults, &before.watch_faults)
        .values()
        .sum::<u64>()
        > 0;
    let marked = sim.stats();
    let name = format!("probe-marker-{i}");
    sim.apply(&Step::create_pod(namespace, &name).labels(labels.clone()))
        .map_err(|e| ProbeError::Sim(e.to_string()))?;
    let mut next = Duration::from_secs(1);
    loop {
        let st = sim.stats();
        // Watching: no fault reached its watches, or it started one since the lift, or every
        // resource it watches has a live watch now (it already re-watched during the phase, as
        // after a one-off close it should, and needs no new start).
        let watching = !broken
            || total_watch_starts(&st) > total_watch_starts(at_lift)
            || all_live(&sim.visibility());
        // It saw the marker: a watch event was sent, or a pod list (which holds it) was answered.
        let saw = st.events_sent > marked.events_sent
            || st.requests("list", "pods") > marked.requests("list", "pods");
        if watching && saw {
            return Ok(Some(Instant::now()));
        }
        subject.check("recovery")?;
        if start.elapsed() >= opts.recover {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
        if start.elapsed() >= next {
            let (share, _) = sampler.sample(subject.pid());
            progress(&format!(
                "  [recovery {:>4.1}s] CPU {:>5.1}%, watches restarted: {}, marker seen: {}",
                start.elapsed().as_secs_f64(),
                share * 100.0,
                total_watch_starts(&st) - total_watch_starts(at_lift),
                saw
            ));
            next += Duration::from_secs(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podgrant_sim::stats::Visibility;

    #[test]
    fn watching_again_needs_a_live_watch_on_every_watched_resource() {
        let v = |live_watches| Visibility {
            live_watches,
            lists_served: 3,
        };
        let view = |pairs: &[(&str, u64)]| -> BTreeMap<String, Visibility> {
            pairs.iter().map(|(r, n)| (r.to_string(), v(*n))).collect()
        };
        assert!(all_live(&view(&[("pods", 1)])));
        assert!(all_live(&view(&[("pods", 2), ("services", 1)])));
        assert!(
            !all_live(&view(&[("pods", 1), ("services", 0)])),
            "services blind"
        );
        assert!(!all_live(&view(&[])), "watching nothing is not watching");
    }
}

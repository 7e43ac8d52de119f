//! The bench regression gate: criterion's estimates → suspects → paired confirmation → profiled re-runs → a report.
//!
//! - [`estimates`] — reading criterion's folders (`new/`, `<baseline>/`, `change/`).
//! - [`decide`] — pure: the suspicion for one bench at a threshold, and the confirmation
//!   over paired re-measurements.
//! - [`folded`] — folded stacks: per-function before/after table, differential flame graph.
//! - [`runner`] — the shell: `cargo bench … --profile-time N --exact ID`, and the bench
//!   executables (kept for the baseline, current) run directly.
//! - [`report`] — the Markdown and JSON report and the captured files.
//!
//! Workflow: `cargo bench -- --save-baseline main` on the reference commit, then
//! `podgrant-bench-gate --baseline main --capture-baseline` (keeps the bench executables for
//! confirmation, and profiles for the differential view); on the change
//! `cargo bench -- --baseline main` and `podgrant-bench-gate --baseline main`.
//!
//! criterion's comparison only makes a bench a *suspect*: its baseline was measured at
//! another time under other load. A suspect is re-measured by the baseline's kept executable
//! and the current one in alternating pairs (A B, B A, A B …, so drift falls on both sides)
//! and fails the gate only if [`decide::confirm`] says so.

pub mod decide;
pub mod estimates;
pub mod folded;
pub mod report;
pub mod runner;

use std::fs;
use std::path::{Path, PathBuf};

use decide::Verdict;
use estimates::BenchData;
use report::{BenchResult, Capture, Report};
use runner::BenchRunner;

/// Everything that can go wrong in the gate itself (not a regression: that is a result).
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("no criterion output at {0} (run `cargo bench` first, or pass --criterion-dir)")]
    NoCriterionDir(PathBuf),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("folded stacks, line {line}: {reason}")]
    Folded { line: usize, reason: String },
    #[error("rendering a flame graph: {0}")]
    Render(String),
    #[error("{what}: cannot run cargo: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: cargo failed ({status}):\n{stderr_tail}")]
    Command {
        what: String,
        status: String,
        stderr_tail: String,
    },
    #[error("cargo metadata: {0}")]
    Metadata(String),
    #[error("no bench target lists a bench named {0:?}")]
    UnknownBench(String),
    #[error("the profiled run left no profile in {0} (is the bench's criterion configured with podgrant_benches::criterion()?)")]
    NoProfile(PathBuf),
    #[error("no kept baseline executables in {dir} (keep them on the reference with --capture-baseline or --keep-baseline-bin): {source}")]
    NoKeptBin {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("bench target {target} is not among the kept baseline executables in {dir}")]
    NotKept { target: String, dir: PathBuf },
    #[error("the measuring run left no estimates in {0}")]
    NoMeasurement(PathBuf),
    #[error("no bench in {dir} was compared with baseline {baseline:?}: run `cargo bench -- --baseline {baseline}` first (and `--save-baseline {baseline}` on the reference before that)")]
    NothingCompared { dir: PathBuf, baseline: String },
}

/// What the gate is asked to do.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub criterion_dir: PathBuf,
    pub baseline: String,
    /// Fraction: 0.05 = 5%.
    pub threshold: f64,
    pub out_dir: PathBuf,
    /// Seconds of `--profile-time` for each re-run.
    pub profile_time: u64,
    /// Re-run regressions under the profiler (off: numbers only).
    pub rerun: bool,
    /// Pairs of confirmation runs per suspect (0: criterion's suspicion is the verdict).
    pub confirm_rounds: usize,
    /// How long each confirmation run measures.
    pub quick: runner::Quick,
    /// Treat every compared bench as a suspect (confirmation decides alone).
    pub suspect_all: bool,
}

impl GateConfig {
    /// Where the baseline's bench executables are kept.
    pub fn kept_bin_dir(&self) -> PathBuf {
        runner::kept_bin_dir(&self.criterion_dir, &self.baseline)
    }
}

/// The default confirmation run: short, since it is repeated.
pub const DEFAULT_QUICK: runner::Quick = runner::Quick {
    warm_up_s: 0.3,
    measurement_s: 1.0,
    sample_size: 10,
};

/// Reads the estimates, decides, profiles each regression, and writes the report into
/// `config.out_dir`. A regression is a result (see [`Report::regressions`]), not an error.
pub fn run(config: &GateConfig, runner: &mut dyn BenchRunner) -> Result<Report, GateError> {
    let benches = estimates::discover(&config.criterion_dir, &config.baseline)?;
    if !benches.iter().any(|b| b.change.is_some()) {
        return Err(GateError::NothingCompared {
            dir: config.criterion_dir.clone(),
            baseline: config.baseline.clone(),
        });
    }
    mkdir(&config.out_dir)?;
    let mut results = Vec::new();
    for bench in &benches {
        let suspicion = decide::verdict(bench, config.threshold);
        let suspect =
            suspicion == Verdict::Regressed || (config.suspect_all && bench.change.is_some());
        let (verdict, confirmation, confirm_error) = if suspect && config.confirm_rounds > 0 {
            match confirm(config, runner, bench) {
                Ok(c) if c.confirmed => (Verdict::Regressed, Some(c), None),
                Ok(c) if suspicion == Verdict::Regressed => (Verdict::Unconfirmed, Some(c), None),
                Ok(c) => (suspicion, Some(c), None),
                // fail closed: a suspect that cannot be re-measured stands as criterion said
                Err(e) => (suspicion, None, Some(e.to_string())),
            }
        } else {
            (suspicion, None, None)
        };
        let capture = if verdict == Verdict::Regressed && config.rerun {
            Some(capture(config, runner, bench))
        } else {
            None
        };
        let mut result = BenchResult::new(bench, verdict, capture);
        result.suspicion = suspicion;
        result.confirmation = confirmation;
        result.confirm_error = confirm_error;
        results.push(result);
    }
    let report = Report {
        baseline: config.baseline.clone(),
        threshold: config.threshold,
        confirm_rounds: config.confirm_rounds,
        criterion_dir: config.criterion_dir.clone(),
        results,
    };
    report::write(&report, &config.out_dir)?;
    Ok(report)
}

/// Re-measures a suspect: `config.confirm_rounds` pairs of runs, the baseline's kept
/// executable and the current one back to back, the order alternating from pair to pair.
fn confirm(
    config: &GateConfig,
    runner: &mut dyn BenchRunner,
    bench: &BenchData,
) -> Result<decide::Confirmation, GateError> {
    use runner::Side;
    let id = &bench.id.full_id;
    let kept = config.kept_bin_dir();
    let scratch_root = config.out_dir.join("confirm").join(report::safe_name(id));
    let mut pairs = Vec::new();
    for round in 0..config.confirm_rounds {
        let order = if round % 2 == 0 {
            [Side::Baseline, Side::Current]
        } else {
            [Side::Current, Side::Baseline]
        };
        let mut pair = decide::Pair {
            baseline_ns: f64::NAN,
            current_ns: f64::NAN,
        };
        for side in order {
            let scratch = scratch_root.join(format!("{round}-{side:?}").to_lowercase());
            if scratch.exists() {
                fs::remove_dir_all(&scratch).map_err(|source| GateError::Write {
                    path: scratch.clone(),
                    source,
                })?;
            }
            mkdir(&scratch)?;
            let run = runner::MeasureRun {
                side,
                kept: &kept,
                scratch: &scratch,
                quick: config.quick,
            };
            let ns = runner.measure(bench, &run)?;
            match side {
                Side::Baseline => pair.baseline_ns = ns,
                Side::Current => pair.current_ns = ns,
            }
        }
        eprintln!(
            "podgrant-bench-gate: confirming {id}: pair {}/{}: baseline {} current {} ({:+.1}%)",
            round + 1,
            config.confirm_rounds,
            report::human_ns(pair.baseline_ns),
            report::human_ns(pair.current_ns),
            (pair.ratio() - 1.0) * 100.0
        );
        pairs.push(pair);
    }
    Ok(decide::confirm(&pairs, config.threshold))
}

/// Keeps the current bench executables as baseline `config.baseline`'s, for confirmation
/// runs later. Returns the files written.
pub fn keep_baseline_bin(
    config: &GateConfig,
    runner: &mut dyn BenchRunner,
) -> Result<Vec<PathBuf>, GateError> {
    runner.keep_executables(&config.kept_bin_dir())
}

/// Keeps the bench executables ([`keep_baseline_bin`]) and profiles every bench now, keeping
/// the profile as baseline `config.baseline`'s for the differential view of later
/// regressions. Returns the files and folders written.
pub fn capture_baseline(
    config: &GateConfig,
    runner: &mut dyn BenchRunner,
) -> Result<Vec<PathBuf>, GateError> {
    let benches = estimates::discover(&config.criterion_dir, &config.baseline)?;
    let mut written = keep_baseline_bin(config, runner)?;
    for bench in &benches {
        let from = runner.profile(bench, config.profile_time)?;
        let to = runner::baseline_profile_dir(&bench.dir, &config.baseline);
        mkdir(&to)?;
        for name in [
            crate::profiler::PROTOBUF,
            crate::profiler::FOLDED,
            crate::profiler::FLAMEGRAPH,
        ] {
            copy(&from.join(name), &to.join(name))?;
        }
        written.push(to);
    }
    Ok(written)
}

fn capture(config: &GateConfig, runner: &mut dyn BenchRunner, bench: &BenchData) -> Capture {
    let dir = config.out_dir.join(report::safe_name(&bench.id.full_id));
    let mut cap = Capture::empty(dir.clone());
    let result = (|| -> Result<(), GateError> {
        let profile = runner.profile(bench, config.profile_time)?;
        mkdir(&dir)?;
        cap.profile_pb_gz = Some(gzip(
            &profile.join(crate::profiler::PROTOBUF),
            &dir.join("profile.pb.gz"),
        )?);
        cap.flamegraph = Some(copy(
            &profile.join(crate::profiler::FLAMEGRAPH),
            &dir.join("flamegraph.svg"),
        )?);
        let after_text = read(&profile.join(crate::profiler::FOLDED))?;
        cap.folded = Some(write(&dir.join("profile.folded"), after_text.as_bytes())?);
        let after = folded::parse(&after_text)?;
        cap.top = folded::top(&after, 10);

        let base = runner::baseline_profile_dir(&bench.dir, &config.baseline);
        if base.join(crate::profiler::FOLDED).is_file() {
            let before = folded::parse(&read(&base.join(crate::profiler::FOLDED))?)?;
            cap.deltas = folded::top_deltas(&before, &after, 10);
            let svg = folded::differential_svg(
                &before,
                &after,
                &format!(
                    "{}: {} → current (red grew)",
                    bench.id.full_id, config.baseline
                ),
            )?;
            cap.diff_flamegraph = Some(write(&dir.join("diff-flamegraph.svg"), &svg)?);
            cap.baseline_profile_pb_gz = Some(gzip(
                &base.join(crate::profiler::PROTOBUF),
                &dir.join("baseline.pb.gz"),
            )?);
        } else {
            cap.note = Some(format!(
                "no baseline profile in {} (make one with --capture-baseline on the reference), so no differential view",
                base.display()
            ));
        }
        Ok(())
    })();
    if let Err(e) = result {
        cap.error = Some(e.to_string());
    }
    cap
}

fn mkdir(dir: &Path) -> Result<(), GateError> {
    fs::create_dir_all(dir).map_err(|source| GateError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<String, GateError> {
    fs::read_to_string(path).map_err(|source| GateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<PathBuf, GateError> {
    fs::write(path, bytes).map_err(|source| GateError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

fn copy(from: &Path, to: &Path) -> Result<PathBuf, GateError> {
    fs::copy(from, to).map_err(|source| GateError::Read {
        path: from.to_path_buf(),
        source,
    })?;
    Ok(to.to_path_buf())
}

fn gzip(from: &Path, to: &Path) -> Result<PathBuf, GateError> {
    use std::io::Write;
    let bytes = fs::read(from).map_err(|source| GateError::Read {
        path: from.to_path_buf(),
        source,
    })?;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes)
        .and_then(|_| enc.finish())
        .map_err(|source| GateError::Write {
            path: to.to_path_buf(),
            source,
        })
        .and_then(|gz| write(to, &gz))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::estimates::tests::write_bench;

    /// Pretends to profile: writes a fixed profile into the bench's `profile/` folder; and to
    /// measure: the current executable takes `ratio` times the baseline's, except in the
    /// rounds listed in `noisy` (the baseline run hit by a burst: twice as slow).
    struct FakeRunner {
        folded: &'static str,
        calls: Vec<String>,
        ratio: f64,
        noisy: Vec<usize>,
        measured: Vec<(String, runner::Side)>,
    }

    impl FakeRunner {
        fn new(folded: &'static str, ratio: f64) -> Self {
            Self {
                folded,
                calls: vec![],
                ratio,
                noisy: vec![],
                measured: vec![],
            }
        }
    }

    impl BenchRunner for FakeRunner {
        fn measure(
            &mut self,
            bench: &BenchData,
            run: &runner::MeasureRun<'_>,
        ) -> Result<f64, GateError> {
            assert!(run.scratch.is_dir(), "an empty scratch dir is given");
            let round = self.measured.len() / 2;
            self.measured.push((bench.id.full_id.clone(), run.side));
            Ok(match run.side {
                runner::Side::Baseline if self.noisy.contains(&round) => 2000.0,
                runner::Side::Baseline => 1000.0,
                runner::Side::Current => 1000.0 * self.ratio,
            })
        }

        fn keep_executables(&mut self, dir: &Path) -> Result<Vec<PathBuf>, GateError> {
            Ok(vec![dir.join(runner::KEPT_MANIFEST)])
        }

        fn profile(&mut self, bench: &BenchData, _seconds: u64) -> Result<PathBuf, GateError> {
            self.calls.push(bench.id.full_id.clone());
            let dir = bench.dir.join("profile");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(crate::profiler::PROTOBUF), b"\x0a\x00").unwrap();
            fs::write(dir.join(crate::profiler::FLAMEGRAPH), "<svg/>").unwrap();
            fs::write(dir.join(crate::profiler::FOLDED), self.folded).unwrap();
            Ok(dir)
        }
    }

    fn config(root: &Path) -> GateConfig {
        GateConfig {
            criterion_dir: root.join("criterion"),
            baseline: "main".into(),
            threshold: 0.05,
            out_dir: root.join("out"),
            profile_time: 1,
            rerun: true,
            confirm_rounds: 5,
            quick: DEFAULT_QUICK,
            suspect_all: false,
        }
    }

    #[test]
    fn only_the_regressed_bench_is_profiled_and_reported_with_captures() {
        let tmp = tempfile::tempdir().unwrap();
        let crit = tmp.path().join("criterion");
        write_bench(
            &crit,
            "p/slow",
            "p/slow",
            150.0,
            Some(("main", 100.0)),
            Some((0.5, 0.4, 0.6)),
        );
        write_bench(
            &crit,
            "p/same",
            "p/same",
            101.0,
            Some(("main", 100.0)),
            Some((0.01, -0.02, 0.04)),
        );
        // a baseline profile for p/slow, so the differential view is made
        let base = runner::baseline_profile_dir(&crit.join("p/slow"), "main");
        fs::create_dir_all(&base).unwrap();
        fs::write(
            base.join(crate::profiler::FOLDED),
            "main;plan 10\nmain;other 10\n",
        )
        .unwrap();
        fs::write(base.join(crate::profiler::PROTOBUF), b"\x0a\x00").unwrap();

        let mut runner = FakeRunner::new("main;plan 30\nmain;other 10\n", 1.5);
        let report = run(&config(tmp.path()), &mut runner).unwrap();
        assert_eq!(runner.calls, vec!["p/slow"]);
        // only the suspect was re-measured, alternating A B, B A, …
        use runner::Side::{Baseline as A, Current as B};
        let sides: Vec<_> = runner.measured.iter().map(|(_, s)| *s).collect();
        assert_eq!(sides, vec![A, B, B, A, A, B, B, A, A, B]);
        assert!(runner.measured.iter().all(|(id, _)| id == "p/slow"));
        assert_eq!(report.regressions().count(), 1);
        let slow = report.results.iter().find(|r| r.id == "p/slow").unwrap();
        assert_eq!(slow.suspicion, Verdict::Regressed);
        let c = slow.confirmation.as_ref().unwrap();
        assert!(c.confirmed && c.median_ratio == 1.5, "{c:?}");
        let cap = slow.capture.as_ref().unwrap();
        assert_eq!(cap.error, None);
        for f in [
            "profile.pb.gz",
            "flamegraph.svg",
            "diff-flamegraph.svg",
            "baseline.pb.gz",
        ] {
            assert!(cap.dir.join(f).is_file(), "{f} missing");
        }
        assert_eq!(cap.deltas[0].function, "plan");
        let md = fs::read_to_string(tmp.path().join("out/report.md")).unwrap();
        assert!(
            md.contains("REGRESSED") && md.contains("p/slow") && md.contains("diff-flamegraph.svg"),
            "{md}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(tmp.path().join("out/report.json")).unwrap())
                .unwrap();
        assert_eq!(json["regressions"], 1);
    }

    #[test]
    fn noise_is_not_flagged_and_nothing_is_profiled() {
        let tmp = tempfile::tempdir().unwrap();
        let crit = tmp.path().join("criterion");
        write_bench(
            &crit,
            "p/a",
            "p/a",
            101.0,
            Some(("main", 100.0)),
            Some((0.01, -0.03, 0.05)),
        );
        let mut runner = FakeRunner::new("", 1.0);
        let report = run(&config(tmp.path()), &mut runner).unwrap();
        assert!(runner.calls.is_empty());
        assert!(runner.measured.is_empty());
        assert_eq!(report.regressions().count(), 0);
    }

    /// The false alarm: criterion says +22.9% [+14.5%, +31.4%] on a clean rerun.
    fn suspect_bench(root: &Path) {
        write_bench(
            &root.join("criterion"),
            "p/a",
            "p/a",
            123.0,
            Some(("main", 100.0)),
            Some((0.229, 0.145, 0.314)),
        );
    }

    #[test]
    fn a_suspect_the_paired_runs_do_not_confirm_passes_and_is_not_profiled() {
        let tmp = tempfile::tempdir().unwrap();
        suspect_bench(tmp.path());
        // the same code on both sides, one noise burst in pair 3
        let mut runner = FakeRunner::new("", 1.0);
        runner.noisy = vec![2];
        let report = run(&config(tmp.path()), &mut runner).unwrap();
        assert_eq!(report.regressions().count(), 0);
        let r = &report.results[0];
        assert_eq!(
            (r.suspicion, r.verdict),
            (Verdict::Regressed, Verdict::Unconfirmed)
        );
        assert_eq!(r.confirmation.as_ref().unwrap().pairs.len(), 5);
        assert!(
            runner.calls.is_empty(),
            "an unconfirmed suspect is not profiled"
        );
        let md = fs::read_to_string(tmp.path().join("out/report.md")).unwrap();
        assert!(
            md.contains("suspect") && md.contains("not confirmed"),
            "{md}"
        );
    }

    #[test]
    fn a_real_regression_survives_one_noisy_pair() {
        let tmp = tempfile::tempdir().unwrap();
        suspect_bench(tmp.path());
        let mut runner = FakeRunner::new("main;plan 1\n", 4.0);
        runner.noisy = vec![1];
        let report = run(&config(tmp.path()), &mut runner).unwrap();
        assert_eq!(report.regressions().count(), 1);
        assert_eq!(runner.calls, vec!["p/a"]);
    }

    #[test]
    fn a_suspect_that_cannot_be_re_measured_fails_closed_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        suspect_bench(tmp.path());
        let mut cfg = config(tmp.path());
        cfg.rerun = false;
        let report = run(&cfg, &mut Failing).unwrap();
        let r = &report.results[0];
        assert_eq!(r.verdict, Verdict::Regressed);
        assert!(r.confirm_error.as_deref().unwrap().contains("p/a"));
    }

    #[test]
    fn suspect_all_confirms_benches_criterion_did_not_flag() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(
            &tmp.path().join("criterion"),
            "p/a",
            "p/a",
            101.0,
            Some(("main", 100.0)),
            Some((0.01, -0.03, 0.05)),
        );
        let mut cfg = config(tmp.path());
        cfg.suspect_all = true;
        let mut runner = FakeRunner::new("", 1.0);
        let report = run(&cfg, &mut runner).unwrap();
        let r = &report.results[0];
        assert_eq!(r.verdict, Verdict::NoChange);
        assert!(!r.confirmation.as_ref().unwrap().confirmed);
        let mut slow = FakeRunner::new("main;plan 1\n", 3.0);
        let report = run(&cfg, &mut slow).unwrap();
        assert_eq!(report.results[0].verdict, Verdict::Regressed);
    }

    #[test]
    fn without_confirmation_criterion_alone_decides() {
        let tmp = tempfile::tempdir().unwrap();
        suspect_bench(tmp.path());
        let mut cfg = config(tmp.path());
        cfg.confirm_rounds = 0;
        cfg.rerun = false;
        let mut runner = FakeRunner::new("", 1.0);
        let report = run(&cfg, &mut runner).unwrap();
        assert_eq!(report.regressions().count(), 1);
        assert!(runner.measured.is_empty());
    }

    #[test]
    fn no_comparison_at_all_is_an_error_not_a_pass() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(&tmp.path().join("criterion"), "p/a", "p/a", 1.0, None, None);
        let mut runner = FakeRunner::new("", 1.0);
        let err = run(&config(tmp.path()), &mut runner).unwrap_err();
        assert!(matches!(err, GateError::NothingCompared { .. }), "{err}");
    }

    /// Fails every run: profiling and measuring.
    struct Failing;
    impl BenchRunner for Failing {
        fn profile(&mut self, b: &BenchData, _: u64) -> Result<PathBuf, GateError> {
            Err(GateError::UnknownBench(b.id.full_id.clone()))
        }
        fn measure(&mut self, b: &BenchData, _: &runner::MeasureRun<'_>) -> Result<f64, GateError> {
            Err(GateError::UnknownBench(b.id.full_id.clone()))
        }
        fn keep_executables(&mut self, dir: &Path) -> Result<Vec<PathBuf>, GateError> {
            Err(GateError::NotKept {
                target: "t".into(),
                dir: dir.to_path_buf(),
            })
        }
    }

    #[test]
    fn a_failed_rerun_still_reports_the_regression_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(
            &tmp.path().join("criterion"),
            "p/a",
            "p/a",
            200.0,
            Some(("main", 100.0)),
            Some((1.0, 0.9, 1.1)),
        );
        let report = run(&config(tmp.path()), &mut Failing).unwrap();
        assert_eq!(report.regressions().count(), 1);
        let err = report.results[0]
            .capture
            .as_ref()
            .unwrap()
            .error
            .clone()
            .unwrap();
        assert!(err.contains("p/a"), "{err}");
    }
}

//! The bench regression gate: criterion's estimates → verdicts → profiled re-runs → a report.
//!
//! - [`estimates`] — reading criterion's folders (`new/`, `<baseline>/`, `change/`).
//! - [`decide`] — pure: the verdict for one bench at a threshold.
//! - [`folded`] — folded stacks: per-function before/after table, differential flame graph.
//! - [`runner`] — the shell: `cargo bench … --profile-time N --exact ID`.
//! - [`report`] — the Markdown and JSON report and the captured files.
//!
//! Workflow: `cargo bench -- --save-baseline main` on the reference commit (and, for a
//! differential profile, `podgrant-bench-gate --baseline main --capture-baseline`), then on
//! the change `cargo bench -- --baseline main` and `podgrant-bench-gate --baseline main`.

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
}

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
        let verdict = decide::verdict(bench, config.threshold);
        let capture = if verdict == Verdict::Regressed && config.rerun {
            Some(capture(config, runner, bench))
        } else {
            None
        };
        results.push(BenchResult::new(bench, verdict, capture));
    }
    let report = Report {
        baseline: config.baseline.clone(),
        threshold: config.threshold,
        criterion_dir: config.criterion_dir.clone(),
        results,
    };
    report::write(&report, &config.out_dir)?;
    Ok(report)
}

/// Profiles every bench now and keeps the profile as baseline `config.baseline`'s, for the
/// differential view of later regressions. Returns the folders written.
pub fn capture_baseline(
    config: &GateConfig,
    runner: &mut dyn BenchRunner,
) -> Result<Vec<PathBuf>, GateError> {
    let benches = estimates::discover(&config.criterion_dir, &config.baseline)?;
    let mut written = Vec::new();
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

    /// Pretends to profile: writes a fixed profile into the bench's `profile/` folder.
    struct FakeRunner {
        folded: &'static str,
        calls: Vec<String>,
    }

    impl BenchRunner for FakeRunner {
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

        let mut runner = FakeRunner {
            folded: "main;plan 30\nmain;other 10\n",
            calls: vec![],
        };
        let report = run(&config(tmp.path()), &mut runner).unwrap();
        assert_eq!(runner.calls, vec!["p/slow"]);
        assert_eq!(report.regressions().count(), 1);
        let slow = report.results.iter().find(|r| r.id == "p/slow").unwrap();
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
        let mut runner = FakeRunner {
            folded: "",
            calls: vec![],
        };
        let report = run(&config(tmp.path()), &mut runner).unwrap();
        assert!(runner.calls.is_empty());
        assert_eq!(report.regressions().count(), 0);
    }

    #[test]
    fn no_comparison_at_all_is_an_error_not_a_pass() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(&tmp.path().join("criterion"), "p/a", "p/a", 1.0, None, None);
        let mut runner = FakeRunner {
            folded: "",
            calls: vec![],
        };
        let err = run(&config(tmp.path()), &mut runner).unwrap_err();
        assert!(matches!(err, GateError::NothingCompared { .. }), "{err}");
    }

    #[test]
    fn a_failed_rerun_still_reports_the_regression_with_the_reason() {
        struct Failing;
        impl BenchRunner for Failing {
            fn profile(&mut self, b: &BenchData, _: u64) -> Result<PathBuf, GateError> {
                Err(GateError::UnknownBench(b.id.full_id.clone()))
            }
        }
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

//! `podgrant-bench-gate`: fails (exit 1) when a bench regressed against a criterion baseline, confirmed by paired re-runs, with profiles attached.
//!
//! Make a baseline on the reference commit, keep its bench executables, compare on the
//! change, then gate:
//!
//! ```text
//! cargo bench -p podgrant-benches -- --save-baseline main
//! cargo run -p podgrant-benches --bin podgrant-bench-gate -- --baseline main --capture-baseline   # keeps the bench executables (+ profiles for the diff view)
//! # … apply the change …
//! cargo bench -p podgrant-benches -- --baseline main
//! cargo run -p podgrant-benches --bin podgrant-bench-gate -- --baseline main --threshold 5%
//! ```
//!
//! A bench criterion flags is only a suspect: the baseline's kept executable and the current
//! one re-measure it in `--confirm-rounds` alternating pairs, and only a confirmed suspect
//! fails. Without kept executables a suspect cannot be re-measured and fails as before.
//!
//! Exit status: 0 no regression, 1 regression (report written), 2 the gate could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use podgrant_benches::gate::{self, decide, runner::CargoRunner, GateConfig};

#[derive(Parser, Debug)]
#[command(name = "podgrant-bench-gate", version, about)]
struct Args {
    /// The criterion baseline to compare with (made with `cargo bench -- --save-baseline NAME`).
    #[arg(long)]
    baseline: String,
    /// Flag a bench when the lower bound of its mean change's 95% interval exceeds this.
    #[arg(long, default_value = "5%", value_parser = decide::parse_threshold)]
    threshold: f64,
    /// criterion's output folder [default: $CRITERION_HOME, else $CARGO_TARGET_DIR/criterion,
    /// else target/criterion — where criterion itself writes].
    #[arg(long)]
    criterion_dir: Option<PathBuf>,
    /// Where the report goes.
    #[arg(long, default_value = "bench-gate-report")]
    out: PathBuf,
    /// Seconds of profiling (`--profile-time`) per re-run.
    #[arg(long, default_value_t = 5)]
    profile_time: u64,
    /// Do not re-run regressions under the profiler (numbers only).
    #[arg(long)]
    no_rerun: bool,
    /// Pairs of runs (baseline's kept executable, current one) that re-measure each suspect;
    /// 0 trusts criterion's comparison alone.
    #[arg(long, default_value_t = 5)]
    confirm_rounds: usize,
    /// Seconds each confirmation run measures (after a 0.3 s warm-up, 10 samples).
    #[arg(long, default_value_t = 1.0)]
    confirm_time: f64,
    /// Re-measure every compared bench, not only criterion's suspects (confirmation decides).
    #[arg(long)]
    suspect_all: bool,
    /// Instead of gating: keep the bench executables as the baseline's (for confirmation),
    /// and profile every bench now, keeping the profiles for the differential view.
    #[arg(long)]
    capture_baseline: bool,
    /// Instead of gating: only keep the bench executables as the baseline's (no profiling).
    #[arg(long, conflicts_with = "capture_baseline")]
    keep_baseline_bin: bool,
    /// The workspace to run `cargo bench` in.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// The package whose bench targets hold the benches.
    #[arg(long, default_value = "podgrant-benches")]
    package: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podgrant-bench-gate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let criterion_dir = args.criterion_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CRITERION_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::var_os("CARGO_TARGET_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| args.workspace.join("target"))
                    .join("criterion")
            })
    });
    let config = GateConfig {
        criterion_dir,
        baseline: args.baseline.clone(),
        threshold: args.threshold,
        out_dir: args.out.clone(),
        profile_time: args.profile_time,
        rerun: !args.no_rerun,
        confirm_rounds: args.confirm_rounds,
        quick: gate::runner::Quick {
            measurement_s: args.confirm_time,
            ..gate::DEFAULT_QUICK
        },
        suspect_all: args.suspect_all,
    };
    let mut runner = CargoRunner::new(&args.workspace, &args.package);
    if args.keep_baseline_bin {
        let files = gate::keep_baseline_bin(&config, &mut runner).with_context(|| {
            format!(
                "keeping the bench executables of baseline {:?}",
                args.baseline
            )
        })?;
        for f in &files {
            println!("kept: {}", f.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.capture_baseline {
        let dirs = gate::capture_baseline(&config, &mut runner)
            .with_context(|| format!("capturing the profiles of baseline {:?}", args.baseline))?;
        for d in &dirs {
            println!("baseline profile: {}", d.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = gate::run(&config, &mut runner).context("running the bench gate")?;
    print!("{}", gate::report::markdown(&report, &config.out_dir));
    println!(
        "\nreport: {} and {}",
        config.out_dir.join("report.md").display(),
        config.out_dir.join("report.json").display()
    );
    let n = report.regressions().count();
    if n > 0 {
        eprintln!(
            "podgrant-bench-gate: {n} bench(es) regressed beyond {:.2}%",
            config.threshold * 100.0
        );
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

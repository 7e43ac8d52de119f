//! `podgrant-instruction-gate`: fails (exit 1) when an instruction-count bench is over its committed limit, with its callgrind profile as pprof and a flame graph.
//!
//! ```text
//! cargo bench -p podgrant-benches --features gungraun --bench instructions -- --save-summary=json
//! cargo run -p podgrant-benches --bin podgrant-instruction-gate -- --limits benches/instruction-limits.json
//! ```
//!
//! `--update` rewrites the limits file from the counts just measured (plus its headroom)
//! instead of checking: do that, and commit the file, when a change costs instructions on
//! purpose. Exit status: 0 within limits, 1 over a limit (or a bench/limit missing), 2 the
//! gate could not run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use podgrant_benches::instr::{self, limits, summary};

#[derive(Parser, Debug)]
#[command(name = "podgrant-instruction-gate", version, about)]
struct Args {
    /// The committed limits.
    #[arg(long, default_value = "benches/instruction-limits.json")]
    limits: PathBuf,
    /// gungraun's output folder, searched for summary.json files [default:
    /// $CARGO_TARGET_DIR/gungraun, else target/gungraun].
    #[arg(long)]
    gungraun_dir: Option<PathBuf>,
    /// Where the profiles of over-limit benches go.
    #[arg(long, default_value = "instruction-gate-report")]
    out: PathBuf,
    /// Rewrite the limits file from the measured counts (plus its headroom); no check.
    #[arg(long)]
    update: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podgrant-instruction-gate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let dir = args.gungraun_dir.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target"))
            .join("gungraun")
    });
    let text = std::fs::read_to_string(&args.limits)
        .with_context(|| format!("reading {}", args.limits.display()))?;
    let mut file: limits::LimitsFile = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", args.limits.display()))?;
    let found = summary::discover(&dir)
        .with_context(|| format!("reading gungraun's summaries in {}", dir.display()))?;
    anyhow::ensure!(
        !found.is_empty(),
        "no summary.json in {}: run the bench with --save-summary=json first",
        dir.display()
    );
    let measured: BTreeMap<String, u64> = found
        .iter()
        .map(|m| (m.id.clone(), m.instructions))
        .collect();

    if args.update {
        file.limits = limits::updated(&measured, file.headroom);
        let text = serde_json::to_string_pretty(&file)? + "\n";
        std::fs::write(&args.limits, text)
            .with_context(|| format!("writing {}", args.limits.display()))?;
        println!(
            "wrote {} limits (+{:.0}% headroom) to {}",
            file.limits.len(),
            file.headroom * 100.0,
            args.limits.display()
        );
        return Ok(ExitCode::SUCCESS);
    }

    let rows = limits::check(&file.limits, &measured);
    println!(
        "{:<52} {:>14} {:>14} {:>9}  status",
        "bench", "instructions", "limit", "vs limit"
    );
    for r in &rows {
        let n = |x: Option<u64>| x.map(|v| v.to_string()).unwrap_or_else(|| "–".into());
        let pct = r
            .over_by()
            .map(|p| format!("{:+.2}%", p * 100.0))
            .unwrap_or_else(|| "–".into());
        println!(
            "{:<52} {:>14} {:>14} {:>9}  {:?}",
            r.id,
            n(r.instructions),
            n(r.limit),
            pct,
            r.status
        );
    }
    let failing: Vec<&limits::Row> = rows.iter().filter(|r| r.fails()).collect();
    if failing.is_empty() {
        println!("ok: every instruction count is within its limit");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &failing {
        match r.status {
            limits::Status::Over => {
                let m = found
                    .iter()
                    .find(|m| m.id == r.id)
                    .context("an over-limit row comes from a summary")?;
                let files = summary::callgrind_files(&m.output_dir)?;
                let title = format!(
                    "{}: {} instructions, limit {}",
                    r.id,
                    r.instructions.unwrap_or_default(),
                    r.limit.unwrap_or_default()
                );
                let a = instr::artifacts(&files, &args.out.join(r.id.replace("::", "_")), &title)
                    .with_context(|| format!("profiles of {}", r.id))?;
                eprintln!(
                    "podgrant-instruction-gate: {} is over its limit by {:.2}%\n  profile: {} (go tool pprof -top {2})\n  flame graph: {}\n  callgrind: {}",
                    r.id,
                    r.over_by().unwrap_or_default() * 100.0,
                    a.profile_pb_gz.display(),
                    a.flamegraph.display(),
                    a.callgrind
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            limits::Status::NoLimit => eprintln!(
                "podgrant-instruction-gate: {} has no limit in {}: add one (or run with --update)",
                r.id,
                args.limits.display()
            ),
            limits::Status::NotMeasured => eprintln!(
                "podgrant-instruction-gate: {} has a limit but did not run: remove it from {} (or run with --update)",
                r.id,
                args.limits.display()
            ),
            limits::Status::Within => {}
        }
    }
    eprintln!(
        "podgrant-instruction-gate: {} bench(es) failed the CPU gate; artifacts in {}",
        failing.len(),
        args.out.display()
    );
    Ok(ExitCode::from(1))
}

//! The gate's report: one row per bench (numbers and verdict), captures per regression; Markdown and JSON.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::decide::{Confirmation, Verdict};
use super::estimates::BenchData;
use super::folded::FunctionDelta;
use super::GateError;

/// The profile files attached to one regression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Capture {
    pub dir: PathBuf,
    pub profile_pb_gz: Option<PathBuf>,
    pub flamegraph: Option<PathBuf>,
    pub folded: Option<PathBuf>,
    pub diff_flamegraph: Option<PathBuf>,
    pub baseline_profile_pb_gz: Option<PathBuf>,
    /// The current profile's top functions: (function, flat share, cumulative share).
    pub top: Vec<(String, f64, f64)>,
    /// Functions whose self-time share grew most against the baseline profile.
    pub deltas: Vec<FunctionDelta>,
    /// Why there is no differential view, if there is none.
    pub note: Option<String>,
    /// Why the capture failed, if it did (the regression stands regardless).
    pub error: Option<String>,
}

impl Capture {
    pub(crate) fn empty(dir: PathBuf) -> Self {
        Self {
            dir,
            profile_pb_gz: None,
            flamegraph: None,
            folded: None,
            diff_flamegraph: None,
            baseline_profile_pb_gz: None,
            top: Vec::new(),
            deltas: Vec::new(),
            note: None,
            error: None,
        }
    }
}

/// One bench's numbers and verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    pub id: String,
    /// The gate's verdict: criterion's suspicion, settled by the confirmation if one ran.
    pub verdict: Verdict,
    /// What criterion's comparison alone said.
    pub suspicion: Verdict,
    /// The paired re-measurement of a suspect, if it ran.
    pub confirmation: Option<Confirmation>,
    /// Why a suspect could not be re-measured (it then stands as criterion said).
    pub confirm_error: Option<String>,
    /// ns per iteration (mean), baseline and current.
    pub baseline_mean_ns: Option<f64>,
    pub new_mean_ns: f64,
    pub new_median_ns: f64,
    /// Mean change as fractions: point estimate and 95% interval.
    pub change_mean: Option<(f64, f64, f64)>,
    pub capture: Option<Capture>,
}

impl BenchResult {
    pub(crate) fn new(b: &BenchData, verdict: Verdict, capture: Option<Capture>) -> Self {
        Self {
            id: b.id.full_id.clone(),
            verdict,
            suspicion: verdict,
            confirmation: None,
            confirm_error: None,
            baseline_mean_ns: b.baseline.map(|e| e.mean.point_estimate),
            new_mean_ns: b.new.mean.point_estimate,
            new_median_ns: b.new.median.point_estimate,
            change_mean: b.change.map(|c| {
                (
                    c.mean.point_estimate,
                    c.mean.confidence_interval.lower_bound,
                    c.mean.confidence_interval.upper_bound,
                )
            }),
            capture,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub baseline: String,
    pub threshold: f64,
    /// Pairs of confirmation runs per suspect (0: none ran).
    pub confirm_rounds: usize,
    pub criterion_dir: PathBuf,
    pub results: Vec<BenchResult>,
}

impl Report {
    /// The regressed benches.
    pub fn regressions(&self) -> impl Iterator<Item = &BenchResult> {
        self.results
            .iter()
            .filter(|r| r.verdict == Verdict::Regressed)
    }
}

/// A file/folder name for a bench id (`planner/full_diff/1000` → `planner_full_diff_1000`).
pub fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A duration in ns, human-sized.
pub fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn pct(x: f64) -> String {
    format!("{:+.2}%", x * 100.0)
}

fn rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The Markdown report.
pub fn markdown(r: &Report, out_dir: &Path) -> String {
    let mut s = String::new();
    let n = r.regressions().count();
    let _ = writeln!(s, "# Bench regression gate\n");
    let _ = writeln!(
        s,
        "Baseline `{}`, threshold {} on the lower bound of the mean change's 95% interval. **{}**\n",
        r.baseline,
        pct(r.threshold),
        if n == 0 { "No regression.".to_string() } else { format!("{n} REGRESSED.") }
    );
    if r.confirm_rounds > 0 {
        let _ = writeln!(
            s,
            "A criterion suspect fails only if confirmed: {} pairs of runs, the baseline's kept executable and the current one back to back (order alternating), need a median ratio above {:.3} and nearly every pair slower by more than the threshold.\n",
            r.confirm_rounds,
            1.0 + r.threshold
        );
    }
    let _ = writeln!(s, "| bench | baseline mean | current mean | current median | mean change [95% CI] | criterion | confirmation | verdict |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|---|---|---|");
    let word = |v: Verdict| match v {
        Verdict::Regressed => "**REGRESSED**",
        Verdict::Unconfirmed => "unconfirmed (passes)",
        Verdict::Improved => "improved",
        Verdict::NoChange => "no change",
        Verdict::NotCompared => "not compared",
    };
    for b in &r.results {
        let verdict = word(b.verdict);
        let suspicion = match b.suspicion {
            Verdict::Regressed => "suspect",
            v => word(v),
        };
        let confirmation = match (&b.confirmation, &b.confirm_error) {
            (Some(c), _) => format!(
                "{} ×{:.3} median, {}/{} pairs slower",
                if c.confirmed {
                    "confirmed"
                } else {
                    "not confirmed"
                },
                c.median_ratio,
                c.slower_pairs,
                c.pairs.len()
            ),
            (None, Some(_)) => "could not run (see below)".into(),
            (None, None) => "–".into(),
        };
        let change = b
            .change_mean
            .map(|(p, lo, hi)| format!("{} [{}, {}]", pct(p), pct(lo), pct(hi)))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            b.id,
            b.baseline_mean_ns
                .map(human_ns)
                .unwrap_or_else(|| "–".into()),
            human_ns(b.new_mean_ns),
            human_ns(b.new_median_ns),
            change,
            suspicion,
            confirmation,
            verdict
        );
    }
    for b in r.results.iter().filter(|b| b.confirm_error.is_some()) {
        let _ = writeln!(
            s,
            "\n`{}`: the suspect could not be re-measured, so criterion's verdict stands: {}",
            b.id,
            b.confirm_error.as_deref().unwrap_or_default()
        );
    }
    for b in r.results.iter().filter(|b| b.confirmation.is_some()) {
        let Some(c) = &b.confirmation else { continue };
        let _ = writeln!(
            s,
            "\nConfirmation runs of `{}` (median ns/iter per run):\n",
            b.id
        );
        let _ = writeln!(
            s,
            "| pair | baseline exe | current exe | ratio |\n|---:|---:|---:|---:|"
        );
        for (i, p) in c.pairs.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | ×{:.3} |",
                i + 1,
                human_ns(p.baseline_ns),
                human_ns(p.current_ns),
                p.ratio()
            );
        }
    }
    for b in r.regressions() {
        let _ = writeln!(s, "\n## `{}`\n", b.id);
        let Some(c) = &b.capture else {
            let _ = writeln!(s, "Not re-run under the profiler (--no-rerun).");
            continue;
        };
        if let Some(e) = &c.error {
            let _ = writeln!(s, "Capture failed: {e}\n");
        }
        for (label, p) in [
            (
                "CPU profile (pprof, `go tool pprof -top`)",
                &c.profile_pb_gz,
            ),
            ("flame graph", &c.flamegraph),
            ("folded stacks", &c.folded),
            ("differential flame graph (red grew)", &c.diff_flamegraph),
            ("baseline CPU profile", &c.baseline_profile_pb_gz),
        ] {
            if let Some(p) = p {
                let _ = writeln!(s, "- {label}: [{0}]({0})", rel(p, out_dir));
            }
        }
        if let (Some(cur), Some(base)) = (&c.profile_pb_gz, &c.baseline_profile_pb_gz) {
            let _ = writeln!(
                s,
                "- compare: `go tool pprof -top -diff_base {} {}`",
                rel(base, out_dir),
                rel(cur, out_dir)
            );
        }
        if let Some(note) = &c.note {
            let _ = writeln!(s, "- {note}");
        }
        if !c.deltas.is_empty() {
            let _ = writeln!(s, "\nSelf-time share, baseline profile → current:\n");
            let _ = writeln!(
                s,
                "| function | flat before | flat now | cum before | cum now |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|");
            for d in &c.deltas {
                let _ = writeln!(
                    s,
                    "| `{}` | {:.1}% | {:.1}% | {:.1}% | {:.1}% |",
                    d.function,
                    d.before_share * 100.0,
                    d.after_share * 100.0,
                    d.before_cum_share * 100.0,
                    d.after_cum_share * 100.0
                );
            }
        } else if !c.top.is_empty() {
            let _ = writeln!(
                s,
                "\nTop functions now:\n\n| function | flat | cum |\n|---|---:|---:|"
            );
            for (f, flat, cum) in &c.top {
                let _ = writeln!(s, "| `{f}` | {:.1}% | {:.1}% |", flat * 100.0, cum * 100.0);
            }
        }
    }
    s
}

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    regressions: usize,
}

/// Writes `report.md` and `report.json` into `out_dir`.
pub fn write(r: &Report, out_dir: &Path) -> Result<(), GateError> {
    let md = out_dir.join("report.md");
    fs::write(&md, markdown(r, out_dir)).map_err(|source| GateError::Write { path: md, source })?;
    let json = out_dir.join("report.json");
    let text = serde_json::to_string_pretty(&JsonReport {
        report: r,
        regressions: r.regressions().count(),
    })
    .map_err(|e| GateError::Render(e.to_string()))?;
    fs::write(&json, text).map_err(|source| GateError::Write { path: json, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_durations() {
        assert_eq!(
            safe_name("planner/full_diff/1000"),
            "planner_full_diff_1000"
        );
        assert_eq!(human_ns(1500.0), "1.500 µs");
        assert_eq!(human_ns(2.5e6), "2.500 ms");
        assert_eq!(pct(0.0512), "+5.12%");
    }
}

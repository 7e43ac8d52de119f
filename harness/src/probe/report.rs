//! The probe's report: data, a Markdown/terminal table, JSON, and a CPU-over-time SVG with the phases shaded (pure).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::verdict::{Budget, Verdict};

/// One phase's measurements and verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub description: String,
    /// Start and end of the fault window, seconds since the probe started.
    pub start_s: f64,
    pub end_s: f64,
    /// CPU of the subject's process tree over the window (1.0 = a core).
    pub cpu_share: f64,
    /// Highest summed RSS of the tree seen during the window.
    pub peak_rss_kib: u64,
    pub requests_per_sec: f64,
    /// Requests per second by `"<verb> <resource>"`.
    pub requests_by: BTreeMap<String, f64>,
    pub watch_starts_per_sec: f64,
    /// Watch starts (counts) by resource.
    pub watch_starts_by: BTreeMap<String, u64>,
    /// Faults the sim dealt during the window, by kind.
    pub faults: BTreeMap<String, u64>,
    pub recovered: bool,
    /// Seconds from the fault lifting to the change being delivered.
    pub recovery_s: Option<f64>,
    pub verdict: Verdict,
    pub why: Vec<String>,
}

/// The whole probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub command: Vec<String>,
    pub phase_s: f64,
    pub recover_s: f64,
    pub budget: Budget,
    pub phases: Vec<PhaseReport>,
    /// (seconds since start, CPU share over the previous second) of the tree.
    pub cpu_series: Vec<(f64, f64)>,
}

impl ProbeReport {
    /// No phase broke its budget.
    pub fn passed(&self) -> bool {
        self.phases.iter().all(|p| p.verdict.is_ok())
    }

    /// The Markdown table (also what the terminal shows).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Probe of `{}` — {:.0}s per phase; budgets: CPU ≤ {:.0}% of a core, ≤ {} watch starts/s, ≤ {} requests/s\n",
            self.command.join(" "),
            self.phase_s,
            self.budget.max_cpu_share * 100.0,
            self.budget.max_watch_starts_per_sec,
            self.budget.max_requests_per_sec
        );
        let _ = writeln!(
            s,
            "| phase | CPU % core | peak RSS MiB | requests/s | watch starts/s | recovered | verdict |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---|");
        for p in &self.phases {
            let rec = match (p.recovered, p.recovery_s) {
                (true, Some(t)) => format!("yes ({t:.1}s)"),
                (true, None) => "yes".into(),
                (false, _) => "no".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | **{}** |",
                p.name,
                p.cpu_share * 100.0,
                p.peak_rss_kib as f64 / 1024.0,
                p.requests_per_sec,
                p.watch_starts_per_sec,
                rec,
                p.verdict
            );
        }
        let broken: Vec<&PhaseReport> = self.phases.iter().filter(|p| !p.verdict.is_ok()).collect();
        if !broken.is_empty() {
            let _ = writeln!(s);
            for p in broken {
                let _ = writeln!(s, "- {} {}: {}", p.name, p.verdict, p.why.join("; "));
            }
        }
        s
    }

    /// CPU over time, each phase shaded and labelled, the CPU budget as a dashed line.
    pub fn svg(&self) -> String {
        const W: f64 = 960.0;
        const H: f64 = 380.0;
        const L: f64 = 60.0;
        const R: f64 = 20.0;
        const T: f64 = 40.0;
        const B: f64 = 70.0;
        let x_max = self
            .cpu_series
            .iter()
            .map(|p| p.0)
            .chain(self.phases.iter().map(|p| p.end_s))
            .fold(1.0_f64, f64::max);
        let y_max = self
            .cpu_series
            .iter()
            .map(|p| p.1)
            .chain([self.budget.max_cpu_share, 0.1])
            .fold(0.0_f64, f64::max)
            * 1.1;
        let sx = |x: f64| L + (x / x_max) * (W - L - R);
        let sy = |y: f64| H - B - (y / y_max) * (H - T - B);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11"><rect width="{W}" height="{H}" fill="white"/>"#
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            W / 2.0,
            escape(&format!(
                "probe: CPU of {} (process tree)",
                self.command.join(" ")
            ))
        );
        for (i, p) in self.phases.iter().enumerate() {
            let fill = match p.verdict {
                Verdict::Ok => ["#e8f4e8", "#d6ecd6"][i % 2],
                _ => ["#f8e0e0", "#f0cccc"][i % 2],
            };
            let (x0, x1) = (sx(p.start_s), sx(p.end_s));
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="{T}" width="{:.1}" height="{}" fill="{fill}"/><text transform="translate({:.1},{}) rotate(40)" font-size="10">{} {}</text>"#,
                (x1 - x0).max(0.5),
                H - T - B,
                x0 + 2.0,
                H - B + 14.0,
                escape(&p.name),
                p.verdict
            );
        }
        let _ = write!(
            s,
            r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#,
            H - B,
            W - R,
            H - B,
            H - B
        );
        for i in 0..=4 {
            let y = y_max * f64::from(i) / 4.0;
            let _ = write!(
                s,
                r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"#,
                L - 6.0,
                sy(y) + 4.0,
                y * 100.0
            );
        }
        let by = sy(self.budget.max_cpu_share);
        let _ = write!(
            s,
            r##"<line x1="{L}" y1="{by:.1}" x2="{}" y2="{by:.1}" stroke="#c00" stroke-dasharray="6,4"/><text x="{}" y="{:.1}" fill="#c00" text-anchor="end">budget {:.0}%</text>"##,
            W - R,
            W - R,
            by - 4.0,
            self.budget.max_cpu_share * 100.0
        );
        let pts: Vec<String> = self
            .cpu_series
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="#1f5fbf" stroke-width="1.5"/>"##,
            pts.join(" ")
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">seconds (shaded: fault windows; red: over budget)</text></svg>"#,
            W / 2.0,
            H - 6.0
        );
        s
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, verdict: Verdict, start: f64) -> PhaseReport {
        PhaseReport {
            name: name.into(),
            description: String::new(),
            start_s: start,
            end_s: start + 10.0,
            cpu_share: 0.012,
            peak_rss_kib: 20480,
            requests_per_sec: 0.3,
            requests_by: BTreeMap::new(),
            watch_starts_per_sec: 0.1,
            watch_starts_by: BTreeMap::new(),
            faults: BTreeMap::new(),
            recovered: verdict != Verdict::Stuck,
            recovery_s: Some(0.2),
            verdict,
            why: if verdict.is_ok() {
                vec![]
            } else {
                vec!["because".into()]
            },
        }
    }

    fn report(verdicts: &[Verdict]) -> ProbeReport {
        ProbeReport {
            command: vec!["my-ctl".into(), "<x>".into()],
            phase_s: 10.0,
            recover_s: 10.0,
            budget: Budget::default(),
            phases: verdicts
                .iter()
                .enumerate()
                .map(|(i, v)| phase(&format!("p{i}"), *v, i as f64 * 12.0))
                .collect(),
            cpu_series: vec![(1.0, 0.01), (2.0, 0.9)],
        }
    }

    #[test]
    fn it_passes_only_when_every_phase_is_ok() {
        assert!(report(&[Verdict::Ok, Verdict::Ok]).passed());
        assert!(!report(&[Verdict::Ok, Verdict::Stuck]).passed());
    }

    #[test]
    fn the_table_has_a_row_per_phase_and_explains_the_broken_ones() {
        let md = report(&[Verdict::Ok, Verdict::Storms]).markdown();
        assert!(
            md.contains("| p0 | 1.2 | 20.0 | 0.3 | 0.1 | yes (0.2s) | **OK** |"),
            "{md}"
        );
        assert!(md.contains("**STORMS**"));
        assert!(md.contains("- p1 STORMS: because"));
    }

    #[test]
    fn the_svg_shades_each_phase_and_escapes_the_command() {
        let svg = report(&[Verdict::Ok, Verdict::Spins]).svg();
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("p1 SPINS"));
        assert!(svg.contains("&lt;x&gt;"));
        assert!(svg.contains("<polyline"));
    }
}

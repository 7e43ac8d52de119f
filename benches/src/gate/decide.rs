//! Pure: a bench's change against the baseline → regression, improvement, no change, or no data.
//!
//! Regression iff the lower bound of the mean change's confidence interval is above the
//! threshold: even the most favourable reading of the data is slower by more than allowed.
//! Improvement iff the upper bound is below minus the threshold. Otherwise no change.

use serde::Serialize;

use super::estimates::BenchData;

/// The verdict for one bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Regressed,
    Improved,
    NoChange,
    /// No `change/estimates.json`: criterion did not compare this bench with the baseline.
    NotCompared,
}

/// A parsed threshold: `5%`, `5`, or `0.05` (a bare number below 1 is a fraction).
pub fn parse_threshold(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("threshold {s:?}: want e.g. 5% or 0.05"))?;
    let frac = if percent || v >= 1.0 { v / 100.0 } else { v };
    if !frac.is_finite() || !(0.0..=10.0).contains(&frac) {
        return Err(format!("threshold {s:?}: out of range (0% to 1000%)"));
    }
    Ok(frac)
}

/// The verdict for one bench at `threshold` (a fraction, 0.05 = 5%).
pub fn verdict(bench: &BenchData, threshold: f64) -> Verdict {
    match &bench.change {
        None => Verdict::NotCompared,
        Some(c) => {
            let ci = c.mean.confidence_interval;
            if ci.lower_bound > threshold {
                Verdict::Regressed
            } else if ci.upper_bound < -threshold {
                Verdict::Improved
            } else {
                Verdict::NoChange
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::estimates::load_bench;
    use crate::gate::estimates::tests::write_bench;

    fn bench(change: Option<(f64, f64, f64)>) -> BenchData {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(tmp.path(), "b", "g/b", 110.0, Some(("main", 100.0)), change);
        load_bench(&tmp.path().join("b"), "main").unwrap()
    }

    #[test]
    fn regression_needs_the_lower_bound_above_the_threshold() {
        assert_eq!(
            verdict(&bench(Some((0.20, 0.15, 0.25))), 0.05),
            Verdict::Regressed
        );
        // point estimate well above, but the interval reaches below the threshold: not proven
        assert_eq!(
            verdict(&bench(Some((0.20, 0.04, 0.36))), 0.05),
            Verdict::NoChange
        );
        // exactly at the threshold is not above it
        assert_eq!(
            verdict(&bench(Some((0.06, 0.05, 0.07))), 0.05),
            Verdict::NoChange
        );
    }

    #[test]
    fn improvement_and_noise() {
        assert_eq!(
            verdict(&bench(Some((-0.2, -0.25, -0.15))), 0.05),
            Verdict::Improved
        );
        assert_eq!(
            verdict(&bench(Some((0.01, -0.02, 0.03))), 0.05),
            Verdict::NoChange
        );
        assert_eq!(verdict(&bench(None), 0.05), Verdict::NotCompared);
    }

    #[test]
    fn thresholds_parse_as_percent_or_fraction() {
        assert_eq!(parse_threshold("5%"), Ok(0.05));
        assert_eq!(parse_threshold(" 12.5 % "), Ok(0.125));
        assert_eq!(parse_threshold("5"), Ok(0.05));
        assert_eq!(parse_threshold("0.05"), Ok(0.05));
        assert!(parse_threshold("five").is_err());
        assert!(parse_threshold("-5%").is_err());
    }
}

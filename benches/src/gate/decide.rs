//! Pure: a bench's change against the baseline → suspicion; paired re-measurements → confirmation.
//!
//! Suspicion ([`verdict`]): regressed iff the lower bound of the mean change's confidence
//! interval is above the threshold: even the most favourable reading of criterion's data is
//! slower by more than allowed. Improvement iff the upper bound is below minus the threshold.
//! Otherwise no change. On a shared machine this alone cries wolf: the baseline was measured
//! minutes or commits ago, under other load.
//!
//! Confirmation ([`confirm`]): the baseline's kept bench executable and the current one are
//! re-run in pairs, back to back, under the same conditions. A suspect is confirmed only if
//! the median of the per-pair ratios (current / baseline) is above `1 + threshold` *and*
//! nearly every pair (all but one in five, see [`allowed_misses`]) is slower by more than the
//! threshold. A noise burst hits one run, not the same side of every pair.

use serde::Serialize;

use super::estimates::BenchData;

/// The verdict for one bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Slower beyond the threshold (and, when confirmation runs, confirmed by it).
    Regressed,
    /// criterion suspected a regression; the paired re-measurement did not confirm it.
    Unconfirmed,
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

/// One round of the re-measurement: the same bench by each executable, back to back (ns per
/// iteration, the run's median).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    pub baseline_ns: f64,
    pub current_ns: f64,
}

impl Pair {
    /// current / baseline; `NaN` when either side is not a positive finite time.
    pub fn ratio(&self) -> f64 {
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if ok(self.baseline_ns) && ok(self.current_ns) {
            self.current_ns / self.baseline_ns
        } else {
            f64::NAN
        }
    }
}

/// The fewest rounds [`confirm`] decides on; fewer is never a confirmation.
pub const MIN_ROUNDS: usize = 3;

/// How many of `n` pairs may fail to be slower while the suspect is still confirmed: one in
/// five (0 for 3–4 pairs, 1 for 5–9, 2 for 10–14 …).
pub fn allowed_misses(n: usize) -> usize {
    n / 5
}

/// What the paired re-measurement concluded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confirmation {
    pub pairs: Vec<Pair>,
    /// Median of current/baseline over the pairs (NaN pairs excluded; NaN if none is left).
    pub median_ratio: f64,
    /// Pairs where the current run was slower than `1 + threshold` times the baseline run.
    pub slower_pairs: usize,
    /// The fewest slower pairs that confirm.
    pub needed_pairs: usize,
    pub confirmed: bool,
}

/// Pure: is the suspected regression real, judged on paired runs at `threshold` (a fraction)?
pub fn confirm(pairs: &[Pair], threshold: f64) -> Confirmation {
    let limit = 1.0 + threshold;
    let mut ratios: Vec<f64> = pairs
        .iter()
        .map(Pair::ratio)
        .filter(|r| !r.is_nan())
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median_ratio = match ratios.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ratios[n / 2],
        n => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
    };
    let slower_pairs = ratios.iter().filter(|&&r| r > limit).count();
    let needed_pairs = pairs.len() - allowed_misses(pairs.len());
    let confirmed =
        pairs.len() >= MIN_ROUNDS && median_ratio > limit && slower_pairs >= needed_pairs;
    Confirmation {
        pairs: pairs.to_vec(),
        median_ratio,
        slower_pairs,
        needed_pairs,
        confirmed,
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

    fn pairs(ratios: &[f64]) -> Vec<Pair> {
        ratios
            .iter()
            .map(|r| Pair {
                baseline_ns: 1000.0,
                current_ns: 1000.0 * r,
            })
            .collect()
    }

    #[test]
    fn a_real_slowdown_is_confirmed_even_with_one_noisy_pair_in_five() {
        let c = confirm(&pairs(&[4.0, 3.9, 4.1, 4.0, 4.2]), 0.05);
        assert!(c.confirmed, "{c:?}");
        assert_eq!(c.median_ratio, 4.0);
        assert_eq!((c.slower_pairs, c.needed_pairs), (5, 5 - 1));
        // one pair where the baseline run was hit by a neighbour's build: still confirmed
        assert!(confirm(&pairs(&[4.0, 0.9, 4.1, 4.0, 4.2]), 0.05).confirmed);
    }

    #[test]
    fn noise_is_not_confirmed() {
        // a clean rerun: ratios around 1, one burst up
        assert!(!confirm(&pairs(&[1.02, 0.97, 1.30, 1.01, 0.99]), 0.05).confirmed);
        // slower on average (median 1.2) but two pairs of five are not: not "nearly every"
        let c = confirm(&pairs(&[1.2, 1.0, 1.3, 1.25, 1.01]), 0.05);
        assert!(!c.confirmed, "{c:?}");
        assert_eq!(c.slower_pairs, 3);
        // every pair slower, but not beyond the threshold
        assert!(!confirm(&pairs(&[1.04, 1.03, 1.04, 1.02, 1.03]), 0.05).confirmed);
    }

    #[test]
    fn with_fewer_than_five_pairs_every_pair_must_be_slower() {
        assert!(confirm(&pairs(&[2.0, 2.0, 2.0]), 0.05).confirmed);
        assert!(!confirm(&pairs(&[2.0, 2.0, 1.0]), 0.05).confirmed);
        // too few rounds to decide on, however slow
        assert!(!confirm(&pairs(&[3.0, 3.0]), 0.05).confirmed);
        assert!(!confirm(&[], 0.05).confirmed);
    }

    #[test]
    fn broken_measurements_never_confirm() {
        let mut p = pairs(&[3.0, 3.0, 3.0]);
        p[1].baseline_ns = 0.0;
        let c = confirm(&p, 0.05);
        assert!(!c.confirmed, "{c:?}");
        assert_eq!(c.slower_pairs, 2);
        assert!(confirm(
            &[Pair {
                baseline_ns: f64::NAN,
                current_ns: 1.0
            }; 3],
            0.05
        )
        .median_ratio
        .is_nan());
        assert_eq!(
            Pair {
                baseline_ns: 100.0,
                current_ns: 150.0
            }
            .ratio(),
            1.5
        );
    }
}

//! Pure: one phase's measurements against the budgets → `STORMS`, `SPINS`, `STUCK` or `OK`.
//!
//! A client over the request or watch-start budget STORMS (its CPU, however high, goes into
//! those requests); one over the CPU budget while within them SPINS (it burns a core without
//! talking to the server, like the seed's loop); within both but not recovered is STUCK.

use serde::{Deserialize, Serialize};

/// What a subject may spend in any phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// CPU share of the process tree (1.0 = one core).
    pub max_cpu_share: f64,
    /// Watch starts per second (all resources).
    pub max_watch_starts_per_sec: f64,
    /// API requests per second (every verb and resource, watches included).
    pub max_requests_per_sec: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_cpu_share: 0.05,
            max_watch_starts_per_sec: 2.0,
            max_requests_per_sec: 10.0,
        }
    }
}

/// The counted facts of one phase that the verdict reads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub cpu_share: f64,
    pub watch_starts_per_sec: f64,
    pub requests_per_sec: f64,
    /// It resumed watching and the sim delivered a change made after the fault lifted (see `probe` docs).
    pub recovered: bool,
}

/// A phase's verdict, in the order they are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Over the watch-start or request budget (whatever its CPU).
    Storms,
    /// Over the CPU budget while within the request budgets.
    Spins,
    /// Within budget but never resumed after the fault lifted.
    Stuck,
    Ok,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Spins => "SPINS",
            Verdict::Storms => "STORMS",
            Verdict::Stuck => "STUCK",
            Verdict::Ok => "OK",
        }
    }
    pub fn is_ok(self) -> bool {
        self == Verdict::Ok
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict and every budget the phase broke, as sentences.
pub fn judge(m: &Measured, b: &Budget) -> (Verdict, Vec<String>) {
    let mut why = Vec::new();
    let spins = m.cpu_share > b.max_cpu_share;
    if spins {
        why.push(format!(
            "CPU {:.1}% of a core > {:.1}%",
            m.cpu_share * 100.0,
            b.max_cpu_share * 100.0
        ));
    }
    let storms_w = m.watch_starts_per_sec > b.max_watch_starts_per_sec;
    if storms_w {
        why.push(format!(
            "{:.1} watch starts/s > {}",
            m.watch_starts_per_sec, b.max_watch_starts_per_sec
        ));
    }
    let storms_r = m.requests_per_sec > b.max_requests_per_sec;
    if storms_r {
        why.push(format!(
            "{:.1} requests/s > {}",
            m.requests_per_sec, b.max_requests_per_sec
        ));
    }
    if !m.recovered {
        why.push("did not resume watching and see a change after the fault lifted".into());
    }
    let v = if storms_w || storms_r {
        Verdict::Storms
    } else if spins {
        Verdict::Spins
    } else if !m.recovered {
        Verdict::Stuck
    } else {
        Verdict::Ok
    };
    (v, why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> Measured {
        Measured {
            cpu_share: 0.01,
            watch_starts_per_sec: 0.1,
            requests_per_sec: 0.5,
            recovered: true,
        }
    }

    #[test]
    fn a_quiet_recovered_phase_is_ok() {
        let (v, why) = judge(&quiet(), &Budget::default());
        assert_eq!(v, Verdict::Ok);
        assert!(why.is_empty());
    }

    #[test]
    fn a_storm_is_a_storm_whatever_it_costs_in_cpu() {
        let m = Measured {
            cpu_share: 0.9,
            watch_starts_per_sec: 500.0,
            recovered: false,
            ..quiet()
        };
        let (v, why) = judge(&m, &Budget::default());
        assert_eq!(v, Verdict::Storms);
        assert_eq!(why.len(), 3, "{why:?}");
    }

    #[test]
    fn cpu_over_budget_without_requests_spins_even_when_stuck() {
        let m = Measured {
            cpu_share: 1.0,
            watch_starts_per_sec: 0.0,
            requests_per_sec: 0.0,
            recovered: false,
        };
        assert_eq!(judge(&m, &Budget::default()).0, Verdict::Spins);
    }

    #[test]
    fn too_many_watch_starts_or_requests_storm() {
        let b = Budget::default();
        let m = Measured {
            watch_starts_per_sec: 2.5,
            ..quiet()
        };
        assert_eq!(judge(&m, &b).0, Verdict::Storms);
        let m = Measured {
            requests_per_sec: 11.0,
            ..quiet()
        };
        assert_eq!(judge(&m, &b).0, Verdict::Storms);
    }

    #[test]
    fn budgets_are_inclusive_limits() {
        let b = Budget::default();
        let m = Measured {
            cpu_share: 0.05,
            watch_starts_per_sec: 2.0,
            requests_per_sec: 10.0,
            recovered: true,
        };
        assert_eq!(judge(&m, &b).0, Verdict::Ok);
    }

    #[test]
    fn within_budget_but_never_resumed_is_stuck() {
        let m = Measured {
            recovered: false,
            ..quiet()
        };
        let (v, why) = judge(&m, &Budget::default());
        assert_eq!(v, Verdict::Stuck);
        assert!(why[0].contains("resume"));
    }

    #[test]
    fn changed_budgets_change_the_verdict() {
        let m = Measured {
            cpu_share: 0.2,
            ..quiet()
        };
        assert_eq!(judge(&m, &Budget::default()).0, Verdict::Spins);
        let loose = Budget {
            max_cpu_share: 0.5,
            ..Budget::default()
        };
        assert_eq!(judge(&m, &loose).0, Verdict::Ok);
    }

    #[test]
    fn verdicts_serialize_uppercase() {
        assert_eq!(
            serde_json::to_string(&Verdict::Storms).unwrap(),
            "\"STORMS\""
        );
    }
}

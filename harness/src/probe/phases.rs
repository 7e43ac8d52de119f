//! The probe's fault catalogue as data: one phase per fault, its plan, its flood, its one-off actions.

use std::time::Duration;

use podgrant_sim::{CloseMode, CloseWhen, ErrorBody, Fault, FaultPlan, FaultRule, FloodSpec};
use serde::Serialize;

/// One phase of the catalogue, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    /// No fault: what the subject costs at rest.
    Baseline,
    /// Every watch ends cleanly right after its initial events (the seed's fault).
    ClosedAfterInitial,
    /// Every watch's connection is reset right after its initial events.
    Resets,
    /// A watch closed after every event during a 1,000 events/s flood on pods.
    FloodClose,
    /// An in-stream 410 Expired on every watch.
    Expire410,
    /// A few pod changes, the whole history compacted, then each open watch closed once: resuming gets 410.
    Compaction,
    /// 429 Too Many Requests (with `Retry-After: 1`) on every request.
    Http429,
    /// 503 Service Unavailable on every request.
    Http503,
    /// Every request gets a 200 and its headers, then silence.
    Stall,
    /// 10,000 pod MODIFIED events at once.
    Burst,
    /// No fault: does it settle again.
    Tail,
}

impl PhaseKind {
    /// The whole catalogue, in order.
    pub const ALL: [PhaseKind; 11] = [
        PhaseKind::Baseline,
        PhaseKind::ClosedAfterInitial,
        PhaseKind::Resets,
        PhaseKind::FloodClose,
        PhaseKind::Expire410,
        PhaseKind::Compaction,
        PhaseKind::Http429,
        PhaseKind::Http503,
        PhaseKind::Stall,
        PhaseKind::Burst,
        PhaseKind::Tail,
    ];

    /// The name used by `--phases` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::Baseline => "baseline",
            PhaseKind::ClosedAfterInitial => "closed-after-initial",
            PhaseKind::Resets => "resets",
            PhaseKind::FloodClose => "flood-close",
            PhaseKind::Expire410 => "expire-410",
            PhaseKind::Compaction => "compaction",
            PhaseKind::Http429 => "http-429",
            PhaseKind::Http503 => "http-503",
            PhaseKind::Stall => "stall",
            PhaseKind::Burst => "burst",
            PhaseKind::Tail => "tail",
        }
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            PhaseKind::Baseline => "healthy baseline",
            PhaseKind::ClosedAfterInitial => "watches closed cleanly after their initial events",
            PhaseKind::Resets => "connection reset after each watch's initial events",
            PhaseKind::FloodClose => {
                "a watch closed after every event during a 1,000 events/s flood"
            }
            PhaseKind::Expire410 => "in-stream 410 Expired on every watch",
            PhaseKind::Compaction => {
                "history compacted, open watches closed once: resuming gets 410"
            }
            PhaseKind::Http429 => "429 on every request (Retry-After: 1)",
            PhaseKind::Http503 => "503 on every request",
            PhaseKind::Stall => {
                "a stall after headers on every request (each dropped a phase later)"
            }
            PhaseKind::Burst => "a 10,000-event burst",
            PhaseKind::Tail => "healthy tail",
        }
    }

    /// Whether a fault is active in this phase (the two healthy ones have none).
    pub fn is_fault(self) -> bool {
        !matches!(self, PhaseKind::Baseline | PhaseKind::Tail)
    }

    /// The fault plan set at the start of the phase (reaching watches already open); empty for none.
    /// `phase` bounds a stall: a stalled connection is dropped `phase` after it went silent, so
    /// the stall ends with the phase instead of poisoning every later one.
    pub fn plan(self, seed: u64, phase: Duration) -> FaultPlan {
        let watches = |fault: Fault| FaultRule::new(fault).verb("watch");
        let close = |when: CloseWhen, mode: CloseMode| Fault::CloseWatch { when, mode };
        let rules: Vec<FaultRule> = match self {
            PhaseKind::Baseline | PhaseKind::Tail | PhaseKind::Burst => Vec::new(),
            PhaseKind::ClosedAfterInitial => vec![watches(close(
                CloseWhen::AfterInitialEvents,
                CloseMode::Clean,
            ))],
            PhaseKind::Resets => vec![watches(close(
                CloseWhen::AfterInitialEvents,
                CloseMode::Reset,
            ))],
            PhaseKind::FloodClose => vec![watches(close(
                CloseWhen::AfterEvents { n: 1 },
                CloseMode::Clean,
            ))],
            PhaseKind::Expire410 => vec![watches(Fault::Expire)],
            // Enough closes for every open watch of a typical controller (pods, services, secrets, leases…).
            PhaseKind::Compaction => {
                vec![watches(close(CloseWhen::AfterInitialEvents, CloseMode::Clean)).times(8)]
            }
            PhaseKind::Http429 => vec![FaultRule::new(Fault::HttpError {
                code: 429,
                fraction: 1.0,
                retry_after_seconds: Some(1),
                body: ErrorBody::Auto,
            })],
            PhaseKind::Http503 => vec![FaultRule::new(Fault::HttpError {
                code: 503,
                fraction: 1.0,
                retry_after_seconds: None,
                body: ErrorBody::Auto,
            })],
            PhaseKind::Stall => vec![FaultRule::new(Fault::Stall {
                headers: true,
                duration: Some(phase),
            })],
        };
        let mut plan = FaultPlan::new(seed);
        plan.rules = rules;
        if !plan.is_empty() {
            plan = plan.to_open_watches();
        }
        plan
    }

    /// The churn started with the phase (stopped when it ends).
    pub fn flood(self, namespace: &str) -> Option<FloodSpec> {
        match self {
            PhaseKind::FloodClose => Some(FloodSpec::rate(namespace, 1000.0)),
            PhaseKind::Burst => Some(FloodSpec::burst(namespace, 10_000)),
            // A few events so that the compacted history is not empty.
            PhaseKind::Compaction => Some(FloodSpec::burst(namespace, 20)),
            _ => None,
        }
    }

    /// Compact the sim's history at the start of the phase (after its flood).
    pub fn compacts(self) -> bool {
        self == PhaseKind::Compaction
    }
}

impl std::fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A `--phases` value that names no phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--phases: unknown phase {unknown:?} (expected a comma-separated list of {})", names().join(", "))]
pub struct UnknownPhase {
    pub unknown: String,
}

fn names() -> Vec<&'static str> {
    PhaseKind::ALL.iter().map(|p| p.name()).collect()
}

/// Parses `--phases` (comma-separated names, blanks ignored) into catalogue order; `all` or empty is everything.
pub fn parse_phases(value: &str) -> Result<Vec<PhaseKind>, UnknownPhase> {
    let mut wanted = Vec::new();
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            return Ok(PhaseKind::ALL.to_vec());
        }
        let kind = PhaseKind::ALL
            .iter()
            .find(|p| p.name() == part)
            .ok_or_else(|| UnknownPhase {
                unknown: part.to_string(),
            })?;
        wanted.push(*kind);
    }
    if wanted.is_empty() {
        return Ok(PhaseKind::ALL.to_vec());
    }
    Ok(PhaseKind::ALL
        .iter()
        .copied()
        .filter(|p| wanted.contains(p))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_runs_healthy_first_and_last_and_faults_between() {
        assert_eq!(PhaseKind::ALL.first(), Some(&PhaseKind::Baseline));
        assert_eq!(PhaseKind::ALL.last(), Some(&PhaseKind::Tail));
        for p in &PhaseKind::ALL[1..PhaseKind::ALL.len() - 1] {
            assert!(p.is_fault(), "{p} should be a fault");
        }
    }

    #[test]
    fn fault_phases_inject_something_and_reach_open_watches() {
        for p in PhaseKind::ALL {
            let plan = p.plan(7, Duration::from_secs(1));
            let injects = !plan.is_empty() || p.flood("shop").is_some() || p.compacts();
            assert_eq!(injects, p.is_fault(), "{p}");
            if !plan.is_empty() {
                assert!(
                    plan.apply_to_open_watches,
                    "{p}: must reach watches already open"
                );
            }
        }
    }

    #[test]
    fn the_http_phases_hit_every_request_and_429_says_when_to_retry() {
        let rule = &PhaseKind::Http429.plan(1, Duration::from_secs(1)).rules[0];
        assert_eq!(rule.verb, None);
        assert_eq!(
            rule.fault,
            Fault::HttpError {
                code: 429,
                fraction: 1.0,
                retry_after_seconds: Some(1),
                body: ErrorBody::Auto,
            }
        );
        assert!(matches!(
            PhaseKind::Http503.plan(1, Duration::from_secs(1)).rules[0].fault,
            Fault::HttpError { code: 503, .. }
        ));
    }

    #[test]
    fn the_flood_phase_floods_at_a_thousand_per_second_and_the_burst_is_ten_thousand() {
        assert_eq!(
            PhaseKind::FloodClose
                .flood("ns")
                .and_then(|f| f.rate_per_second),
            Some(1000.0)
        );
        assert_eq!(
            PhaseKind::Burst.flood("ns").and_then(|f| f.burst),
            Some(10_000)
        );
    }

    #[test]
    fn names_are_unique_and_parse_back() {
        let all: Vec<_> = PhaseKind::ALL.iter().map(|p| p.name()).collect();
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
        assert_eq!(
            parse_phases(&all.join(",")).unwrap(),
            PhaseKind::ALL.to_vec()
        );
    }

    #[test]
    fn phases_parse_into_catalogue_order_and_reject_typos() {
        assert_eq!(
            parse_phases("tail, baseline").unwrap(),
            vec![PhaseKind::Baseline, PhaseKind::Tail]
        );
        assert_eq!(parse_phases("").unwrap().len(), PhaseKind::ALL.len());
        assert_eq!(parse_phases("all").unwrap().len(), PhaseKind::ALL.len());
        let err = parse_phases("baseline,stal").unwrap_err();
        assert_eq!(err.unknown, "stal");
        assert!(err.to_string().contains("closed-after-initial"));
    }
}

//! Pure: measured instruction counts against the committed limits → one row per bench, and the new limits an update would write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `benches/instruction-limits.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsFile {
    /// How to read and update the file (kept when the file is rewritten).
    #[serde(rename = "_readme", default)]
    pub readme: Vec<String>,
    /// The headroom `--update` puts over a measured count (fraction: 0.04 = 4%).
    pub headroom: f64,
    /// bench id (`instructions::group::function::id`) → most instructions allowed.
    pub limits: BTreeMap<String, u64>,
}

/// How one bench stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Within,
    /// More instructions than its limit.
    Over,
    /// Measured, but the file has no limit for it (a new bench: add one).
    NoLimit,
    /// A limit whose bench did not run (renamed or removed: update the file).
    NotMeasured,
}

/// One bench's count, limit and status.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub instructions: Option<u64>,
    pub limit: Option<u64>,
    pub status: Status,
}

impl Row {
    /// instructions / limit − 1 (negative: under the limit).
    pub fn over_by(&self) -> Option<f64> {
        match (self.instructions, self.limit) {
            (Some(i), Some(l)) if l > 0 => Some(i as f64 / l as f64 - 1.0),
            _ => None,
        }
    }

    /// Everything but [`Status::Within`] fails the check.
    pub fn fails(&self) -> bool {
        self.status != Status::Within
    }
}

/// Pure: every bench measured or limited, sorted by id.
pub fn check(limits: &BTreeMap<String, u64>, measured: &BTreeMap<String, u64>) -> Vec<Row> {
    let ids: std::collections::BTreeSet<&String> = limits.keys().chain(measured.keys()).collect();
    ids.into_iter()
        .map(|id| {
            let instructions = measured.get(id).copied();
            let limit = limits.get(id).copied();
            let status = match (instructions, limit) {
                (Some(i), Some(l)) if i > l => Status::Over,
                (Some(_), Some(_)) => Status::Within,
                (Some(_), None) => Status::NoLimit,
                (None, _) => Status::NotMeasured,
            };
            Row {
                id: id.clone(),
                instructions,
                limit,
                status,
            }
        })
        .collect()
}

/// Pure: the limits an update writes: each measured count plus `headroom`, rounded up to a
/// thousand (so the file does not churn on a few instructions).
pub fn updated(measured: &BTreeMap<String, u64>, headroom: f64) -> BTreeMap<String, u64> {
    measured
        .iter()
        .map(|(id, &n)| {
            let with = (n as f64 * (1.0 + headroom)).ceil() as u64;
            (id.clone(), with.div_ceil(1000) * 1000)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, u64)]) -> BTreeMap<String, u64> {
        items.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn over_the_limit_fails_and_at_the_limit_passes() {
        let limits = map(&[("a", 1000), ("b", 1000)]);
        let rows = check(&limits, &map(&[("a", 1000), ("b", 1001)]));
        assert_eq!(rows[0].status, Status::Within);
        assert!(!rows[0].fails());
        assert_eq!(rows[1].status, Status::Over);
        assert!(rows[1].fails());
        assert!((rows[1].over_by().unwrap() - 0.001).abs() < 1e-12);
    }

    #[test]
    fn a_bench_without_a_limit_and_a_limit_without_a_bench_both_fail() {
        let rows = check(&map(&[("gone", 5)]), &map(&[("new", 5)]));
        let by = |id: &str| rows.iter().find(|r| r.id == id).unwrap().status;
        assert_eq!(by("gone"), Status::NotMeasured);
        assert_eq!(by("new"), Status::NoLimit);
        assert!(rows.iter().all(Row::fails));
    }

    #[test]
    fn an_update_adds_the_headroom_and_rounds_up_to_a_thousand() {
        let new = updated(&map(&[("a", 1_000_000), ("b", 10)]), 0.04);
        assert_eq!(new["a"], 1_040_000);
        assert_eq!(new["b"], 1000);
        // the updated limits pass the counts they came from
        let m = map(&[("a", 1_000_000), ("b", 10)]);
        assert!(check(&new, &m).iter().all(|r| !r.fails()));
    }

    #[test]
    fn the_committed_limits_file_limits_exactly_the_instruction_benches() {
        let text = include_str!("../../instruction-limits.json");
        let f: LimitsFile = serde_json::from_str(text).expect("instruction-limits.json");
        assert!(f.headroom > 0.0 && f.headroom < 0.2);
        let known = [
            "instructions::planner::one_event::n1000",
            "instructions::planner::one_event::n10000",
            "instructions::planner::full_diff::n1000",
            "instructions::planner::full_diff::n10000",
            "instructions::event_decode::decode::pod_modified",
            "instructions::event_decode::decode_typed::pod_modified",
            "instructions::watch_guard::watch_ended::mixed1000",
            "instructions::sim_encode::encode::pod_modified",
        ];
        for id in f.limits.keys() {
            assert!(
                known.contains(&id.as_str()),
                "limit for an unknown bench {id}"
            );
        }
        for id in known {
            assert!(f.limits.contains_key(id), "no limit for bench {id}");
        }
    }
}

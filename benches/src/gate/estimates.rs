//! Reading criterion's output folder: each bench's id, its new and baseline estimates, and the change.
//!
//! Layout (criterion 0.8, `target/criterion/<directory_name>/`): `new/benchmark.json` (the id),
//! `new/estimates.json` (this run), `<baseline>/estimates.json` (saved by
//! `--save-baseline NAME`) and `change/estimates.json` (relative change, written by
//! `--baseline NAME`). Times are nanoseconds per iteration; changes are fractions (0.05 = +5%).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::GateError;

/// A confidence interval, as criterion writes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    pub confidence_level: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

/// One statistic's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub confidence_interval: ConfidenceInterval,
    pub point_estimate: f64,
    pub standard_error: f64,
}

/// `estimates.json` of a run (absolute times; other statistics are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimates {
    pub mean: Estimate,
    pub median: Estimate,
}

/// `change/estimates.json`: relative change of the mean and median against the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangeEstimates {
    pub mean: Estimate,
    pub median: Estimate,
}

/// `new/benchmark.json`: who the bench is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchId {
    pub group_id: String,
    pub function_id: Option<String>,
    pub value_str: Option<String>,
    pub full_id: String,
    pub directory_name: String,
}

/// Everything the gate knows about one bench.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchData {
    pub id: BenchId,
    /// The folder under the criterion dir.
    pub dir: PathBuf,
    pub new: Estimates,
    /// `None` if this bench has no saved baseline of that name.
    pub baseline: Option<Estimates>,
    /// `None` if criterion did not compare this run (no `--baseline NAME` run).
    pub change: Option<ChangeEstimates>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, GateError> {
    let text = fs::read_to_string(path).map_err(|source| GateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| GateError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn read_optional<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, GateError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// Loads one bench from its folder (the one holding `new/`).
pub fn load_bench(dir: &Path, baseline: &str) -> Result<BenchData, GateError> {
    Ok(BenchData {
        id: read_json(&dir.join("new").join("benchmark.json"))?,
        dir: dir.to_path_buf(),
        new: read_json(&dir.join("new").join("estimates.json"))?,
        baseline: read_optional(&dir.join(baseline).join("estimates.json"))?,
        change: read_optional(&dir.join("change").join("estimates.json"))?,
    })
}

/// Every bench under `criterion_dir` (any depth: a folder with `new/benchmark.json`), sorted by id.
pub fn discover(criterion_dir: &Path, baseline: &str) -> Result<Vec<BenchData>, GateError> {
    if !criterion_dir.is_dir() {
        return Err(GateError::NoCriterionDir(criterion_dir.to_path_buf()));
    }
    let mut found = Vec::new();
    let mut stack = vec![criterion_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| GateError::Read {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| GateError::Read {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name();
            // criterion's own folders inside a bench, and its HTML report
            if matches!(name.to_str(), Some("new" | "change" | "report" | "profile"))
                || name == baseline
            {
                continue;
            }
            if path.join("new").join("benchmark.json").is_file() {
                found.push(load_bench(&path, baseline)?);
            }
            stack.push(path);
        }
    }
    found.sort_by(|a, b| a.id.full_id.cmp(&b.id.full_id));
    Ok(found)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a synthetic bench folder, as criterion would.
    pub(crate) fn write_bench(
        root: &Path,
        dir: &str,
        full_id: &str,
        new_mean_ns: f64,
        baseline: Option<(&str, f64)>,
        change: Option<(f64, f64, f64)>,
    ) {
        let est = |point: f64, lo: f64, hi: f64| {
            serde_json::json!({
                "confidence_interval": {"confidence_level": 0.95, "lower_bound": lo, "upper_bound": hi},
                "point_estimate": point, "standard_error": (hi - lo) / 4.0
            })
        };
        let abs = |mean: f64| {
            serde_json::json!({
                "mean": est(mean, mean * 0.99, mean * 1.01),
                "median": est(mean, mean * 0.99, mean * 1.01),
                "std_dev": est(1.0, 0.5, 1.5),
                "median_abs_dev": est(1.0, 0.5, 1.5),
                "slope": null
            })
        };
        let d = root.join(dir);
        fs::create_dir_all(d.join("new")).unwrap();
        let (group, function) = full_id.split_once('/').unwrap_or((full_id, ""));
        fs::write(
            d.join("new/benchmark.json"),
            serde_json::json!({
                "group_id": group, "function_id": (!function.is_empty()).then_some(function),
                "value_str": null, "throughput": null, "full_id": full_id,
                "directory_name": dir, "title": full_id
            })
            .to_string(),
        )
        .unwrap();
        fs::write(d.join("new/estimates.json"), abs(new_mean_ns).to_string()).unwrap();
        if let Some((name, mean)) = baseline {
            fs::create_dir_all(d.join(name)).unwrap();
            fs::write(d.join(name).join("estimates.json"), abs(mean).to_string()).unwrap();
        }
        if let Some((point, lo, hi)) = change {
            fs::create_dir_all(d.join("change")).unwrap();
            fs::write(
                d.join("change/estimates.json"),
                serde_json::json!({"mean": est(point, lo, hi), "median": est(point, lo, hi)})
                    .to_string(),
            )
            .unwrap();
        }
    }

    #[test]
    fn discovers_nested_benches_with_baseline_and_change() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(
            tmp.path(),
            "planner/full_diff/1000",
            "planner/full_diff/1000",
            120.0,
            Some(("main", 100.0)),
            Some((0.2, 0.15, 0.25)),
        );
        write_bench(
            tmp.path(),
            "ingest/engine",
            "ingest/engine",
            50.0,
            None,
            None,
        );
        fs::create_dir_all(tmp.path().join("report")).unwrap();

        let benches = discover(tmp.path(), "main").unwrap();
        assert_eq!(benches.len(), 2);
        assert_eq!(benches[0].id.full_id, "ingest/engine");
        assert!(benches[0].baseline.is_none() && benches[0].change.is_none());
        let p = &benches[1];
        assert_eq!(p.id.full_id, "planner/full_diff/1000");
        assert_eq!(p.new.mean.point_estimate, 120.0);
        assert_eq!(p.baseline.unwrap().mean.point_estimate, 100.0);
        assert_eq!(p.change.unwrap().mean.confidence_interval.lower_bound, 0.15);
    }

    #[test]
    fn a_corrupt_estimates_file_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_bench(tmp.path(), "a", "a", 1.0, None, None);
        fs::write(tmp.path().join("a/new/estimates.json"), "{not json").unwrap();
        let err = discover(tmp.path(), "main").unwrap_err();
        assert!(matches!(err, GateError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("a/new/estimates.json"), "{err}");
    }

    #[test]
    fn a_missing_criterion_dir_is_a_clear_error() {
        let err = discover(Path::new("/nonexistent/criterion"), "main").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/criterion"), "{err}");
    }
}

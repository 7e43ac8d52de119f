//! The imperative shell of the gate: runs a bench under the profiler through cargo.
//!
//! `cargo bench -p <package> --bench <target> -- --profile-time N --exact <full id>` makes
//! criterion call [`crate::profiler::PprofProfiler`], which writes the profile files into
//! `<criterion dir>/<bench dir>/profile/`. Which bench target holds an id is asked of the
//! targets themselves (`-- --list`), so no naming convention is assumed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::estimates::BenchData;
use super::GateError;

/// Runs one bench under the profiler and says where its profile went.
pub trait BenchRunner {
    /// Profiles `bench` for `seconds`; returns the folder holding `profile.pb` & co.
    fn profile(&mut self, bench: &BenchData, seconds: u64) -> Result<PathBuf, GateError>;
}

/// Runs benches through `cargo bench` in a workspace.
pub struct CargoRunner {
    workspace: PathBuf,
    package: String,
    /// full id → bench target, filled lazily from `--list`.
    index: Option<BTreeMap<String, String>>,
}

impl CargoRunner {
    /// A runner for `package`'s bench targets in the workspace at `workspace`.
    pub fn new(workspace: impl Into<PathBuf>, package: impl Into<String>) -> Self {
        Self {
            workspace: workspace.into(),
            package: package.into(),
            index: None,
        }
    }

    fn cargo(&self) -> Command {
        let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        c.current_dir(&self.workspace);
        c
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<String, GateError> {
        eprintln!("podgrant-bench-gate: {what}: {cmd:?}");
        let out = cmd.output().map_err(|source| GateError::Spawn {
            what: what.to_string(),
            source,
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            return Err(GateError::Command {
                what: what.to_string(),
                status: out.status.to_string(),
                stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The package's bench targets, from `cargo metadata`.
    pub fn bench_targets(&self) -> Result<Vec<String>, GateError> {
        let mut cmd = self.cargo();
        cmd.args(["metadata", "--no-deps", "--format-version", "1"]);
        let text = self.run(cmd, "listing bench targets")?;
        let meta: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| GateError::Metadata(e.to_string()))?;
        let packages = meta["packages"]
            .as_array()
            .ok_or_else(|| GateError::Metadata("no packages array".into()))?;
        let pkg = packages
            .iter()
            .find(|p| p["name"] == self.package.as_str())
            .ok_or_else(|| GateError::Metadata(format!("no package {}", self.package)))?;
        let mut targets: Vec<String> = pkg["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bench"))
            })
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect();
        targets.sort();
        Ok(targets)
    }

    fn list(&self, target: &str) -> Result<Vec<String>, GateError> {
        let mut cmd = self.cargo();
        cmd.args([
            "bench",
            "-p",
            &self.package,
            "--bench",
            target,
            "--",
            "--list",
        ]);
        let listing = self.run(cmd, &format!("listing the benches of {target}"))?;
        Ok(parse_list(&listing))
    }

    fn target_of(&mut self, full_id: &str) -> Result<String, GateError> {
        if let Some(t) = self.index.as_ref().and_then(|i| i.get(full_id)) {
            return Ok(t.clone());
        }
        // podgrant's convention (`planner/...` lives in the `planner` target) is tried first;
        // any other layout falls back to listing every target.
        let first = full_id.split('/').next().unwrap_or_default();
        let mut targets = self.bench_targets()?;
        targets.sort_by_key(|t| t.as_str() != first);
        for target in targets {
            let ids = self.list(&target)?;
            let index = self.index.get_or_insert_with(BTreeMap::new);
            for id in ids {
                index.insert(id, target.clone());
            }
            if let Some(t) = index.get(full_id) {
                return Ok(t.clone());
            }
        }
        Err(GateError::UnknownBench(full_id.to_string()))
    }
}

/// The ids in criterion's `--list` output (`<id>: benchmark` per line).
pub fn parse_list(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| l.strip_suffix(": benchmark"))
        .map(str::to_string)
        .collect()
}

impl BenchRunner for CargoRunner {
    fn profile(&mut self, bench: &BenchData, seconds: u64) -> Result<PathBuf, GateError> {
        let target = self.target_of(&bench.id.full_id)?;
        let mut cmd = self.cargo();
        cmd.args(["bench", "-p", &self.package, "--bench", &target, "--"])
            .args([
                "--profile-time",
                &seconds.to_string(),
                "--exact",
                &bench.id.full_id,
            ]);
        self.run(cmd, &format!("profiling {}", bench.id.full_id))?;
        let dir = bench.dir.join("profile");
        if !dir.join(crate::profiler::PROTOBUF).is_file() {
            return Err(GateError::NoProfile(dir));
        }
        Ok(dir)
    }
}

/// Where `--capture-baseline` keeps the profile of baseline `name` for the bench in `bench_dir`.
pub fn baseline_profile_dir(bench_dir: &Path, name: &str) -> PathBuf {
    bench_dir.join(format!("{name}-profile"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_criterion_list_output() {
        let out = "planner/full_diff/1000: benchmark\nplanner/one_event/1000: benchmark\n\nnoise\n";
        assert_eq!(
            parse_list(out),
            vec!["planner/full_diff/1000", "planner/one_event/1000"]
        );
    }
}

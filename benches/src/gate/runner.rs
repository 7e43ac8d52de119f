//! The imperative shell of the gate: profiles a bench through cargo, keeps and re-runs bench executables.
//!
//! `cargo bench -p <package> --bench <target> -- --profile-time N --exact <full id>` makes
//! criterion call [`crate::profiler::PprofProfiler`], which writes the profile files into
//! `<criterion dir>/<bench dir>/profile/`. Which bench target holds an id is asked of the
//! targets themselves (`--list`), so no naming convention is assumed.
//!
//! For confirmation the bench executables themselves are run (no cargo in between): the
//! current ones from `cargo bench --no-run --message-format=json`, the baseline's from the
//! copies [`BenchRunner::keep_executables`] made into [`kept_bin_dir`] on the reference
//! commit, together with the values the `PODGRANT_BENCH_*` knobs had then ([`KEPT_ENV`]).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::estimates::BenchData;
use super::GateError;

/// Which executable a confirmation run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The copy kept on the reference commit.
    Baseline,
    /// The one built from the working tree now.
    Current,
}

/// How long one confirmation run measures (criterion's own options).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quick {
    pub warm_up_s: f64,
    pub measurement_s: f64,
    /// criterion's minimum is 10.
    pub sample_size: usize,
}

/// One confirmation run: which side, where the kept executables are, where criterion writes.
#[derive(Debug, Clone, Copy)]
pub struct MeasureRun<'a> {
    pub side: Side,
    pub kept: &'a Path,
    /// An empty folder: the run's `CRITERION_HOME`.
    pub scratch: &'a Path,
    pub quick: Quick,
}

/// Runs benches for the gate: under the profiler, and measured by a chosen executable.
pub trait BenchRunner {
    /// Profiles `bench` for `seconds`; returns the folder holding `profile.pb` & co.
    fn profile(&mut self, bench: &BenchData, seconds: u64) -> Result<PathBuf, GateError>;
    /// Measures `bench` once with `run.side`'s executable; ns per iteration (the run's median).
    fn measure(&mut self, bench: &BenchData, run: &MeasureRun<'_>) -> Result<f64, GateError>;
    /// Copies the current bench executables into `dir` (with a [`KEPT_MANIFEST`]); returns
    /// the files written.
    fn keep_executables(&mut self, dir: &Path) -> Result<Vec<PathBuf>, GateError>;
}

/// The environment knobs recorded with kept executables and restored when they run (the
/// planted slowdown is part of what the baseline was).
pub const KEPT_ENV: [&str; 1] = [crate::slowdown::ENV];

/// The manifest file in a kept-executables folder.
pub const KEPT_MANIFEST: &str = "manifest.json";

/// What [`KEPT_MANIFEST`] says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptBins {
    /// The folder the benches run in (cargo runs them in their package's folder).
    pub package_dir: PathBuf,
    /// bench target → file name in the kept folder.
    pub exes: BTreeMap<String, String>,
    /// [`KEPT_ENV`] as it was when kept (`None`: unset).
    pub env: BTreeMap<String, Option<String>>,
}

/// Where baseline `name`'s bench executables are kept.
pub fn kept_bin_dir(criterion_dir: &Path, name: &str) -> PathBuf {
    criterion_dir.join("podgrant-gate-bin").join(name)
}

/// A bench executable cargo built: its target, file, and package folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchExe {
    pub target: String,
    pub exe: PathBuf,
    pub package_dir: PathBuf,
}

/// Pure: the bench executables in `cargo … --message-format=json` output.
pub fn parse_bench_executables(messages: &str) -> Vec<BenchExe> {
    let mut out: Vec<BenchExe> = messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bench"))
        })
        .filter_map(|m| {
            Some(BenchExe {
                target: m["target"]["name"].as_str()?.to_string(),
                exe: PathBuf::from(m["executable"].as_str()?),
                package_dir: Path::new(m["manifest_path"].as_str()?)
                    .parent()?
                    .to_path_buf(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.target.cmp(&b.target));
    out.dedup_by(|a, b| a.target == b.target);
    out
}

/// Runs benches through `cargo bench` in a workspace.
pub struct CargoRunner {
    workspace: PathBuf,
    package: String,
    /// full id → bench target, filled lazily from `--list`.
    index: Option<BTreeMap<String, String>>,
    /// The current bench executables, filled lazily from `cargo bench --no-run`.
    exes: Option<Vec<BenchExe>>,
    /// The kept executables' manifests, by folder.
    kept: BTreeMap<PathBuf, KeptBins>,
}

impl CargoRunner {
    /// A runner for `package`'s bench targets in the workspace at `workspace`.
    pub fn new(workspace: impl Into<PathBuf>, package: impl Into<String>) -> Self {
        Self {
            workspace: workspace.into(),
            package: package.into(),
            index: None,
            exes: None,
            kept: BTreeMap::new(),
        }
    }

    /// The current bench executables (built now if they are not: cargo decides).
    fn current_exes(&mut self) -> Result<&[BenchExe], GateError> {
        if self.exes.is_none() {
            let mut cmd = self.cargo();
            cmd.args([
                "bench",
                "-p",
                &self.package,
                "--no-run",
                "--message-format=json",
            ]);
            let text = self.run(cmd, "locating the bench executables")?;
            self.exes = Some(parse_bench_executables(&text));
        }
        Ok(self.exes.as_deref().unwrap_or_default())
    }

    fn kept_bins(&mut self, dir: &Path) -> Result<&KeptBins, GateError> {
        if !self.kept.contains_key(dir) {
            let path = dir.join(KEPT_MANIFEST);
            let text = fs::read_to_string(&path).map_err(|source| GateError::NoKeptBin {
                dir: dir.to_path_buf(),
                source,
            })?;
            let bins: KeptBins =
                serde_json::from_str(&text).map_err(|source| GateError::Parse { path, source })?;
            self.kept.insert(dir.to_path_buf(), bins);
        }
        Ok(&self.kept[dir])
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

    fn list(&mut self, target: &str) -> Result<Vec<String>, GateError> {
        let exe = self
            .current_exes()?
            .iter()
            .find(|e| e.target == target)
            .cloned();
        let Some(exe) = exe else {
            // not built by `cargo bench --no-run` (e.g. needs a feature): nothing of ours in it
            return Ok(Vec::new());
        };
        let mut cmd = Command::new(&exe.exe);
        cmd.current_dir(&exe.package_dir)
            .args(["--bench", "--list"]);
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

    fn measure(&mut self, bench: &BenchData, run: &MeasureRun<'_>) -> Result<f64, GateError> {
        let id = &bench.id.full_id;
        let target = self.target_of(id)?;
        let mut cmd = match run.side {
            Side::Current => {
                let exe = self
                    .current_exes()?
                    .iter()
                    .find(|e| e.target == target)
                    .cloned()
                    .ok_or_else(|| GateError::UnknownBench(id.clone()))?;
                let mut cmd = Command::new(&exe.exe);
                cmd.current_dir(&exe.package_dir);
                cmd
            }
            Side::Baseline => {
                let kept = self.kept_bins(run.kept)?.clone();
                let file = kept.exes.get(&target).ok_or_else(|| GateError::NotKept {
                    target: target.clone(),
                    dir: run.kept.to_path_buf(),
                })?;
                let mut cmd = Command::new(run.kept.join(file));
                cmd.current_dir(&kept.package_dir);
                for (k, v) in &kept.env {
                    match v {
                        Some(v) => cmd.env(k, v),
                        None => cmd.env_remove(k),
                    };
                }
                cmd
            }
        };
        let q = run.quick;
        cmd.env("CRITERION_HOME", run.scratch)
            .args(["--bench", "--exact", id, "--noplot"])
            .args(["--warm-up-time", &q.warm_up_s.to_string()])
            .args(["--measurement-time", &q.measurement_s.to_string()])
            .args(["--sample-size", &q.sample_size.to_string()]);
        let what = match run.side {
            Side::Baseline => format!("measuring {id} (baseline executable)"),
            Side::Current => format!("measuring {id} (current executable)"),
        };
        self.run(cmd, &what)?;
        let found = super::estimates::discover(run.scratch, "")?;
        let b = found
            .iter()
            .find(|b| &b.id.full_id == id)
            .ok_or_else(|| GateError::NoMeasurement(run.scratch.to_path_buf()))?;
        Ok(b.new.median.point_estimate)
    }

    fn keep_executables(&mut self, dir: &Path) -> Result<Vec<PathBuf>, GateError> {
        let exes = self.current_exes()?.to_vec();
        let package_dir = exes
            .first()
            .map(|e| e.package_dir.clone())
            .ok_or_else(|| GateError::Metadata("cargo built no bench executable".into()))?;
        fs::create_dir_all(dir).map_err(|source| GateError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        let mut bins = KeptBins {
            package_dir,
            exes: BTreeMap::new(),
            env: KEPT_ENV
                .iter()
                .map(|k| (k.to_string(), std::env::var(k).ok()))
                .collect(),
        };
        for e in exes {
            let to = dir.join(&e.target);
            fs::copy(&e.exe, &to).map_err(|source| GateError::Read {
                path: e.exe.clone(),
                source,
            })?;
            bins.exes.insert(e.target.clone(), e.target.clone());
            written.push(to);
        }
        let manifest = dir.join(KEPT_MANIFEST);
        let text =
            serde_json::to_string_pretty(&bins).map_err(|e| GateError::Render(e.to_string()))?;
        fs::write(&manifest, text).map_err(|source| GateError::Write {
            path: manifest.clone(),
            source,
        })?;
        self.kept.insert(dir.to_path_buf(), bins);
        written.push(manifest);
        Ok(written)
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

    #[test]
    fn finds_the_bench_executables_in_cargos_json_messages() {
        let msgs = [
            r#"{"reason":"compiler-artifact","manifest_path":"/w/core/Cargo.toml","target":{"kind":["lib"],"name":"podgrant_core"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/benches/Cargo.toml","target":{"kind":["bench"],"name":"planner"},"executable":"/t/release/deps/planner-1a2b"}"#,
            r#"{"reason":"compiler-artifact","manifest_path":"/w/benches/Cargo.toml","target":{"kind":["bin"],"name":"podgrant-bench-gate"},"executable":"/t/release/podgrant-bench-gate"}"#,
            "not json",
            r#"{"reason":"compiler-artifact","manifest_path":"/w/benches/Cargo.toml","target":{"kind":["bench"],"name":"flood"},"executable":"/t/release/deps/flood-3c"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        let exes = parse_bench_executables(&msgs);
        assert_eq!(
            exes,
            vec![
                BenchExe {
                    target: "flood".into(),
                    exe: "/t/release/deps/flood-3c".into(),
                    package_dir: "/w/benches".into()
                },
                BenchExe {
                    target: "planner".into(),
                    exe: "/t/release/deps/planner-1a2b".into(),
                    package_dir: "/w/benches".into()
                },
            ]
        );
    }
}

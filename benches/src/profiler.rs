//! A criterion `Profiler` around `pprof::ProfilerGuard`: `--profile-time N` writes `flamegraph.svg`, `profile.pb` and `profile.folded`.
//!
//! pprof 0.15's own criterion integration is tied to criterion 0.5; this is the same idea for
//! criterion 0.8. criterion calls [`PprofProfiler::start_profiling`] / `stop_profiling` around
//! the `--profile-time` run of each bench, with `target/criterion/<id>/profile` as the folder.
//!
//! The files: `profile.pb` is the pprof protobuf (`go tool pprof -top profile.pb`),
//! `flamegraph.svg` an inferno flame graph, and `profile.folded` the folded stacks
//! (`frame;frame;leaf count`, root first) that the regression gate diffs against a baseline.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use criterion::profiler::Profiler;
use pprof::protos::Message;

/// Default sampling rate. The kernel here ticks at 250 Hz, so higher rates lose samples;
/// 199 Hz stays under it and does not alias with it.
pub const DEFAULT_HZ: i32 = 199;

/// The file names written into criterion's profile folder.
pub const FLAMEGRAPH: &str = "flamegraph.svg";
/// See [`FLAMEGRAPH`].
pub const PROTOBUF: &str = "profile.pb";
/// See [`FLAMEGRAPH`].
pub const FOLDED: &str = "profile.folded";

/// Errors from writing a profile's files.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// pprof could not start or build its report.
    #[error("pprof: {0}")]
    Pprof(#[from] pprof::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// criterion's `Profiler`, sampling the whole process with pprof-rs at a fixed rate.
pub struct PprofProfiler {
    hz: i32,
    guard: Option<pprof::ProfilerGuard<'static>>,
}

impl PprofProfiler {
    /// A profiler sampling at `hz` (clamped to 99..=250, see [`DEFAULT_HZ`]).
    pub fn new(hz: i32) -> Self {
        Self {
            hz: hz.clamp(99, 250),
            guard: None,
        }
    }

    /// The configured sampling rate.
    pub fn hz(&self) -> i32 {
        self.hz
    }
}

impl Default for PprofProfiler {
    fn default() -> Self {
        Self::new(DEFAULT_HZ)
    }
}

impl Profiler for PprofProfiler {
    fn start_profiling(&mut self, benchmark_id: &str, _benchmark_dir: &Path) {
        match pprof::ProfilerGuardBuilder::default()
            .frequency(self.hz)
            // Unwinding through these from a signal handler can deadlock.
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
        {
            Ok(guard) => self.guard = Some(guard),
            // criterion's trait has no error channel: say so and leave the bench running.
            Err(e) => eprintln!("podgrant-benches: cannot profile {benchmark_id}: {e}"),
        }
    }

    fn stop_profiling(&mut self, benchmark_id: &str, benchmark_dir: &Path) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        match write_profile(&guard, benchmark_dir) {
            Ok(written) => eprintln!(
                "podgrant-benches: profile of {benchmark_id} ({} samples at {} Hz) in {}",
                written,
                self.hz,
                benchmark_dir.display()
            ),
            Err(e) => eprintln!("podgrant-benches: profile of {benchmark_id} not written: {e}"),
        }
    }
}

/// Writes `flamegraph.svg`, `profile.pb` and `profile.folded` for `guard` into `dir`;
/// returns the number of samples.
pub fn write_profile(
    guard: &pprof::ProfilerGuard<'static>,
    dir: &Path,
) -> Result<usize, ProfileError> {
    let report = guard.report().build()?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ProfileError::Write { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;

    let svg = dir.join(FLAMEGRAPH);
    let file = fs::File::create(&svg).map_err(io(&svg))?;
    report.flamegraph(file)?;

    let pb = dir.join(PROTOBUF);
    let mut bytes = Vec::new();
    report
        .pprof()?
        .encode(&mut bytes)
        .map_err(|e| ProfileError::Write {
            path: pb.clone(),
            source: std::io::Error::other(e),
        })?;
    fs::write(&pb, bytes).map_err(io(&pb))?;

    let folded = dir.join(FOLDED);
    let stacks = folded_stacks(&report);
    let mut out = Vec::new();
    for (stack, count) in &stacks {
        writeln!(out, "{stack} {count}").map_err(io(&folded))?;
    }
    fs::write(&folded, out).map_err(io(&folded))?;
    Ok(stacks.values().map(|c| *c as usize).sum())
}

/// Folded stacks (root first, `;`-separated, thread names left out so that two runs compare)
/// with their sample counts, merged and sorted.
pub fn folded_stacks(report: &pprof::Report) -> BTreeMap<String, u64> {
    let mut stacks = BTreeMap::new();
    for (frames, count) in &report.data {
        let names: Vec<String> = frames
            .frames
            .iter()
            .rev()
            .flat_map(|symbols| symbols.iter().rev().map(|s| s.name()))
            .map(|name| name.replace([';', ' '], "_"))
            .collect();
        if names.is_empty() || *count <= 0 {
            continue;
        }
        *stacks.entry(names.join(";")).or_insert(0) += *count as u64;
    }
    stacks
}

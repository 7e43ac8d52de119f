//! The CPU gate: gungraun's instruction counts against committed limits; an over-limit's callgrind profile as pprof and a flame graph.
//!
//! - [`limits`] — pure: counts against `benches/instruction-limits.json`, and an update.
//! - [`callgrind`] — pure: callgrind's output format → stacks → pprof protobuf / folded lines.
//! - [`summary`] — reading gungraun's `summary.json` files (written with `--save-summary`).
//!
//! The shell is [`artifacts`]: for each bench over its limit, `profile.pb.gz`
//! (`go tool pprof -top`) and `flamegraph.svg` next to a copy of the callgrind file. The
//! binary is `podgrant-instruction-gate`; CI runs it through `scripts/check-instructions.sh`.

pub mod callgrind;
pub mod limits;
pub mod summary;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What can go wrong in the instruction gate (an over-limit is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum InstrError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Callgrind {
        path: PathBuf,
        source: callgrind::ParseError,
    },
    #[error("rendering the flame graph: {0}")]
    Render(String),
}

/// The files written for one over-limit bench.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifacts {
    pub dir: PathBuf,
    pub profile_pb_gz: PathBuf,
    pub flamegraph: PathBuf,
    pub callgrind: Vec<PathBuf>,
}

/// Floor of the stack expansion, as a fraction of the total: smaller calls are not drawn
/// (their cost stays in the caller's frame).
const FLOOR: f64 = 1e-4;
const MAX_DEPTH: usize = 96;

/// Converts the callgrind files of one bench into `profile.pb.gz` and `flamegraph.svg` in
/// `dir` (and copies the files there), titled `title`.
pub fn artifacts(
    callgrind_files: &[PathBuf],
    dir: &Path,
    title: &str,
) -> Result<Artifacts, InstrError> {
    fs::create_dir_all(dir).map_err(|source| InstrError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut text = String::new();
    let mut copies = Vec::new();
    for f in callgrind_files {
        let t = fs::read_to_string(f).map_err(|source| InstrError::Read {
            path: f.clone(),
            source,
        })?;
        let to = dir.join(f.file_name().unwrap_or_default());
        write(&to, t.as_bytes())?;
        copies.push(to);
        text.push_str(&t);
        text.push('\n');
    }
    let path = callgrind_files.first().cloned().unwrap_or_default();
    let graph = callgrind::parse(&text).map_err(|source| InstrError::Callgrind { path, source })?;
    let stacks = graph.stacks(graph.total() as f64 * FLOOR, MAX_DEPTH);

    use pprof::protos::Message;
    let profile = callgrind::to_pprof(&graph, &stacks);
    let mut pb = Vec::new();
    profile
        .encode(&mut pb)
        .map_err(|e| InstrError::Render(e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let profile_pb_gz = dir.join("profile.pb.gz");
    let gz = gz
        .write_all(&pb)
        .and_then(|_| gz.finish())
        .map_err(|source| InstrError::Write {
            path: profile_pb_gz.clone(),
            source,
        })?;
    write(&profile_pb_gz, &gz)?;

    let lines = callgrind::folded_lines(&graph, &stacks);
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = "instructions".into();
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| InstrError::Render(e.to_string()))?;
    let flamegraph = dir.join("flamegraph.svg");
    write(&flamegraph, &svg)?;
    write(&dir.join("profile.folded"), lines.join("\n").as_bytes())?;
    Ok(Artifacts {
        dir: dir.to_path_buf(),
        profile_pb_gz,
        flamegraph,
        callgrind: copies,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), InstrError> {
    fs::write(path, bytes).map_err(|source| InstrError::Write {
        path: path.to_path_buf(),
        source,
    })
}

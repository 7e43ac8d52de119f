//! CPU profile captures with pprof-rs: `profile.pb.gz`, `flamegraph.svg` and a pprof-style `top` table.
//!
//! The profiler is process-global (one `SIGPROF` timer), so captures are serialised by a lock:
//! [`Capture::start`] waits for any other capture in the process to finish. A capture samples
//! every thread; [`Capture::finish`] keeps only the threads whose name starts with a prefix
//! (the runtime under test) and writes the artifacts into a folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use pprof::protos::Message;

/// Sampling frequency. The kernel ticks at 250 Hz here; 199 Hz avoids aliasing with it.
pub const DEFAULT_FREQUENCY: i32 = 199;

static PROFILER_LOCK: Mutex<()> = Mutex::new(());

/// Errors from capturing or writing a profile.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("starting the profiler: {0}")]
    Start(pprof::Error),
    #[error("building the profile report: {0}")]
    Report(pprof::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rendering {what}: {reason}")]
    Render { what: &'static str, reason: String },
}

/// A running CPU profile. Dropping it without [`Capture::finish`] discards it.
pub struct Capture {
    guard: pprof::ProfilerGuard<'static>,
    frequency: i32,
    _lock: MutexGuard<'static, ()>,
}

impl Capture {
    /// Starts sampling the whole process at `frequency` Hz (see [`DEFAULT_FREQUENCY`]).
    pub fn start(frequency: i32) -> Result<Self, CaptureError> {
        let lock = PROFILER_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(frequency)
            // Unwinding through these from a signal handler can deadlock.
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(CaptureError::Start)?;
        Ok(Self {
            guard,
            frequency,
            _lock: lock,
        })
    }

    /// Stops sampling and writes the artifacts for the threads named `thread_prefix*` (all
    /// threads when empty) into `dir` (created if needed).
    pub fn finish(self, dir: &Path, thread_prefix: &str) -> Result<Artifacts, CaptureError> {
        let mut report = self
            .guard
            .report()
            .frames_post_processor(strip_unwinder_frames)
            .build()
            .map_err(CaptureError::Report)?;
        drop(self.guard);
        report
            .data
            .retain(|frames, _| frames.thread_name.starts_with(thread_prefix));
        write_artifacts(&report, self.frequency, dir, thread_prefix)
    }
}

/// Removes the profiler's own frames (the unwinder called from the signal handler) from the
/// leaf end of a stack, so that flat time lands on the sampled code, not on `backtrace::trace`.
fn strip_unwinder_frames(frames: &mut pprof::Frames) {
    let is_unwinder = |f: &Vec<pprof::Symbol>| {
        f.iter().any(|s| {
            let n = s.name();
            let n = n.trim_start_matches('<');
            n.starts_with("backtrace::")
                || n.starts_with("pprof::")
                || n.contains("perf_signal_handler")
        })
    };
    // Only look near the leaf: the unwinder sits on top of the sampled stack.
    if let Some(last) = frames.frames.iter().take(16).rposition(is_unwinder) {
        frames.frames.drain(..=last);
    }
}

/// What a capture wrote, and the `top` tables computed from it.
#[derive(Debug, Clone)]
pub struct Artifacts {
    pub dir: PathBuf,
    /// Gzipped pprof protobuf: `go tool pprof -top <this>`.
    pub profile: PathBuf,
    pub flamegraph: PathBuf,
    /// The text of [`Artifacts::top`] and [`Artifacts::top_cum`].
    pub top_file: PathBuf,
    /// Like pprof's `top10`: sorted by flat.
    pub top: TopTable,
    /// Like pprof's `top10 -cum -focus=podgrant`: sorted by cum, podgrant's own functions only.
    pub top_cum: TopTable,
}

impl Artifacts {
    /// A block for failure messages: the paths, then both tables.
    pub fn describe(&self) -> String {
        format!(
            "capture in {}:\n  profile   {}  (go tool pprof -top {})\n  flamegraph {}\n  top       {}\n\n{}\n{}",
            self.dir.display(),
            self.profile.display(),
            self.profile.display(),
            self.flamegraph.display(),
            self.top_file.display(),
            self.top,
            self.top_cum
        )
    }
}

fn write_artifacts(
    report: &pprof::Report,
    frequency: i32,
    dir: &Path,
    thread_prefix: &str,
) -> Result<Artifacts, CaptureError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaptureError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;

    let profile = dir.join("profile.pb.gz");
    let proto = report.pprof().map_err(CaptureError::Report)?;
    let mut raw = Vec::new();
    proto.encode(&mut raw).map_err(|e| CaptureError::Render {
        what: "pprof protobuf",
        reason: e.to_string(),
    })?;
    let file = std::fs::File::create(&profile).map_err(io(&profile))?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    gz.write_all(&raw).map_err(io(&profile))?;
    gz.finish().map_err(io(&profile))?;

    let flamegraph = dir.join("flamegraph.svg");
    let mut svg = Vec::new();
    if report.data.is_empty() {
        svg.extend_from_slice(
            br#"<svg xmlns="http://www.w3.org/2000/svg" width="600" height="40"><text x="10" y="25">no samples</text></svg>"#,
        );
    } else {
        let mut opts = pprof::flamegraph::Options::default();
        opts.title = format!("podgrant-harness capture (threads {thread_prefix}*)");
        report
            .flamegraph_with_options(&mut svg, &mut opts)
            .map_err(|e| CaptureError::Render {
                what: "flamegraph",
                reason: e.to_string(),
            })?;
    }
    std::fs::write(&flamegraph, svg).map_err(io(&flamegraph))?;

    let stacks = stacks_of(report);
    let sample_ns = 1_000_000_000 / i64::from(frequency.max(1));
    let top = TopTable::compute(&stacks, sample_ns, TopSort::Flat, 10, &[]);
    let top_cum = TopTable::compute(&stacks, sample_ns, TopSort::Cum, 10, &["podgrant"]);
    let top_file = dir.join("top.txt");
    std::fs::write(&top_file, format!("{top}\n{top_cum}")).map_err(io(&top_file))?;
    Ok(Artifacts {
        dir: dir.to_path_buf(),
        profile,
        flamegraph,
        top_file,
        top,
        top_cum,
    })
}

/// One sampled stack: function names from leaf to root (inlined frames expanded), and a count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub functions: Vec<String>,
    pub count: i64,
}

/// Strips rustc's `::h0123456789abcdef` hash suffix.
pub fn clean_name(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => name.to_string(),
    }
}

/// The workspace root at build time: frames from files under it are podgrant's own.
const WORKSPACE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A display name for a symbol. Release builds keep only short names (`{async_fn#0}`,
/// `poll<…>`) for inlined frames; those get their source file appended, and frames from
/// podgrant's own sources are marked so that `-focus=podgrant` finds them.
pub fn label(name: &str, file: &str) -> String {
    let name = clean_name(name);
    let ours = (file.contains("/harness/src/")
        || file.contains("/core/src/")
        || file.contains("/sim/src/")
        || file.contains("/benches/src/")
        || file.starts_with(WORKSPACE_ROOT))
        && !file.contains("/.cargo/")
        && !file.contains("/rustc/");
    if name.contains("::") {
        name
    } else if ours {
        format!("podgrant {name} @{}", basename(file))
    } else {
        format!("{name} @{}", basename(file))
    }
}

fn basename(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

fn stacks_of(report: &pprof::Report) -> Vec<Stack> {
    report
        .data
        .iter()
        .map(|(frames, count)| Stack {
            functions: frames
                .frames
                .iter()
                .flat_map(|f| f.iter().map(|s| label(&s.name(), &s.filename())))
                .collect(),
            count: *count as i64,
        })
        .collect()
}

/// How a [`TopTable`] is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopSort {
    Flat,
    Cum,
}

/// One row of a `top` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopRow {
    pub flat_ns: i64,
    pub cum_ns: i64,
    pub function: String,
}

/// A pprof-style `top` table: flat, flat%, sum%, cum, cum%, function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopTable {
    pub title: String,
    pub total_ns: i64,
    pub rows: Vec<TopRow>,
}

impl TopTable {
    /// Pure: computes the table from stacks. `flat` counts samples whose leaf is the function;
    /// `cum` counts samples with the function anywhere in the stack (once per sample). With a
    /// non-empty `focus`, only functions whose name (ignoring a leading `<`) starts with one of
    /// those prefixes are listed (totals still cover every sample).
    pub fn compute(
        stacks: &[Stack],
        sample_ns: i64,
        sort: TopSort,
        n: usize,
        focus: &[&str],
    ) -> Self {
        let mut flat: HashMap<&str, i64> = HashMap::new();
        let mut cum: HashMap<&str, i64> = HashMap::new();
        let mut total = 0;
        for s in stacks {
            total += s.count;
            if let Some(leaf) = s.functions.first() {
                *flat.entry(leaf).or_default() += s.count;
            }
            let mut seen = HashSet::new();
            for f in &s.functions {
                if seen.insert(f.as_str()) {
                    *cum.entry(f).or_default() += s.count;
                }
            }
        }
        let focused = |f: &str| {
            focus.is_empty()
                || focus
                    .iter()
                    .any(|p| f.trim_start_matches('<').starts_with(p))
        };
        let mut rows: Vec<TopRow> = cum
            .iter()
            .filter(|(f, _)| focused(f))
            .map(|(f, c)| TopRow {
                flat_ns: flat.get(f).copied().unwrap_or(0) * sample_ns,
                cum_ns: c * sample_ns,
                function: f.to_string(),
            })
            .collect();
        rows.sort_by(|a, b| {
            let key = |r: &TopRow| match sort {
                TopSort::Flat => (r.flat_ns, r.cum_ns),
                TopSort::Cum => (r.cum_ns, r.flat_ns),
            };
            key(b)
                .cmp(&key(a))
                .then_with(|| a.function.cmp(&b.function))
        });
        rows.truncate(n);
        let title = match (sort, focus.is_empty()) {
            (TopSort::Flat, true) => format!("top{n}"),
            (TopSort::Flat, false) => format!("top{n} -focus={}", focus.join("|")),
            (TopSort::Cum, true) => format!("top{n} -cum"),
            (TopSort::Cum, false) => format!("top{n} -cum -focus={}", focus.join("|")),
        };
        Self {
            title,
            total_ns: total * sample_ns,
            rows,
        }
    }

    /// The function of the first row, if any.
    pub fn first(&self) -> Option<&str> {
        self.rows.first().map(|r| r.function.as_str())
    }

    /// The share (0..=1) of all samples that have `function` (a substring) in their stack.
    pub fn cum_share_of(&self, function: &str) -> f64 {
        self.rows
            .iter()
            .filter(|r| r.function.contains(function))
            .map(|r| r.cum_ns)
            .max()
            .map_or(0.0, |c| pct(c, self.total_ns) / 100.0)
    }
}

fn pct(part: i64, total: i64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

fn human(ns: i64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else {
        format!("{}ms", ns / 1_000_000)
    }
}

impl fmt::Display for TopTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "(pprof) {}", self.title)?;
        writeln!(f, "Total samples = {}", human(self.total_ns))?;
        writeln!(
            f,
            "{:>10} {:>6} {:>6} {:>10} {:>6}  function",
            "flat", "flat%", "sum%", "cum", "cum%"
        )?;
        let mut sum = 0;
        for r in &self.rows {
            sum += r.flat_ns;
            writeln!(
                f,
                "{:>10} {:>5.2}% {:>5.2}% {:>10} {:>5.2}%  {}",
                human(r.flat_ns),
                pct(r.flat_ns, self.total_ns),
                pct(sum, self.total_ns),
                human(r.cum_ns),
                pct(r.cum_ns, self.total_ns),
                r.function
            )?;
        }
        Ok(())
    }
}

/// Samples per thread name in a set of stacks' source report (for diagnostics).
pub fn samples_by_thread(report: &pprof::Report) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for (frames, count) in &report.data {
        *out.entry(frames.thread_name_or_id()).or_default() += *count as i64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn stack(fs: &[&str], count: i64) -> Stack {
        Stack {
            functions: fs.iter().map(|s| s.to_string()).collect(),
            count,
        }
    }

    #[test]
    fn top_table_flat_cum_and_focus() {
        let stacks = vec![
            stack(&["malloc", "podgrant_x::hot", "main"], 6),
            stack(&["podgrant_x::hot", "main"], 3),
            stack(&["recurse", "recurse", "main"], 1),
        ];
        let t = TopTable::compute(&stacks, 10_000_000, TopSort::Flat, 10, &[]);
        assert_eq!(t.total_ns, 100_000_000);
        assert_eq!(t.first(), Some("malloc"));
        let hot = t
            .rows
            .iter()
            .find(|r| r.function == "podgrant_x::hot")
            .unwrap();
        assert_eq!((hot.flat_ns, hot.cum_ns), (30_000_000, 90_000_000));
        let rec = t.rows.iter().find(|r| r.function == "recurse").unwrap();
        assert_eq!(rec.cum_ns, 10_000_000, "a function counts once per sample");
        let c = TopTable::compute(&stacks, 10_000_000, TopSort::Cum, 10, &["podgrant"]);
        assert_eq!(c.first(), Some("podgrant_x::hot"));
        assert_eq!(c.rows.len(), 1);
        assert!((c.cum_share_of("hot") - 0.9).abs() < 1e-9);
        let text = t.to_string();
        assert!(text.contains("flat%"), "{text}");
        assert!(text.contains("  60ms 60.00% 60.00%"), "{text}");
    }

    #[test]
    fn labels_short_inlined_names_with_their_file() {
        assert_eq!(
            label("{async_fn#0}", "/work/main/harness/src/specimen.rs"),
            "podgrant {async_fn#0} @specimen.rs"
        );
        assert_eq!(
            label(
                "poll<X>",
                "/root/.cargo/registry/src/x/tokio-1/src/runtime/task.rs"
            ),
            "poll<X> @task.rs"
        );
        assert_eq!(
            label("podgrant_core::a::b", "/work/main/core/src/a.rs"),
            "podgrant_core::a::b"
        );
    }

    #[test]
    fn clean_name_strips_hash_only() {
        assert_eq!(clean_name("a::b::h0123456789abcdef"), "a::b");
        assert_eq!(clean_name("a::hello"), "a::hello");
    }

    #[inline(never)]
    fn capture_test_burner(stop: &AtomicBool) -> u64 {
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    }

    #[test]
    fn capture_writes_profile_flamegraph_and_top() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cap = Capture::start(DEFAULT_FREQUENCY).expect("start");
        let stop = Arc::new(AtomicBool::new(false));
        let meter = crate::cpu::CpuMeter::new("pgt-cap", Duration::from_millis(20)).expect("meter");
        let h = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("pgt-cap".into())
                .spawn(move || capture_test_burner(&stop))
                .expect("spawn")
        };
        // Wait for 400 ms of the burner's CPU (bounded), i.e. ~80 samples at 199 Hz.
        let end = Instant::now() + Duration::from_secs(30);
        while meter.total().expect("cpu") < Duration::from_millis(400) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("join");
        let art = cap.finish(dir.path(), "pgt-cap").expect("finish");
        let describe = art.describe();
        assert!(art.top.total_ns > 0, "no samples: {describe}");
        assert!(
            art.top_cum.cum_share_of("capture_test_burner") > 0.5,
            "{describe}"
        );
        let gz = std::fs::read(&art.profile).expect("profile");
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip magic");
        let svg = std::fs::read_to_string(&art.flamegraph).expect("svg");
        assert!(svg.contains("<svg") && svg.contains("capture_test_burner"));
        let top = std::fs::read_to_string(&art.top_file).expect("top");
        assert!(top.contains("flat%"));

        match std::process::Command::new("go")
            .args(["tool", "pprof", "-top"])
            .arg(&art.profile)
            .output()
        {
            Ok(out) => {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "go tool pprof failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(text.contains("capture_test_burner"), "{text}");
                eprintln!("{describe}\ngo tool pprof -top:\n{text}");
            }
            Err(e) => crate::require::skip_or_fail(
                crate::require::Component::Go,
                "capture",
                &format!(
                    "`go tool pprof` not runnable ({e}); profile not verified by pprof itself"
                ),
            ),
        }
    }
}

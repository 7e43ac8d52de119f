//! End to end: the gate catches (and confirms) a planted planner slowdown with captures attached, and passes a clean rerun it re-measures.
//!
//! Runs the real `planner` bench through cargo (tiny measurement times) into a private
//! `CRITERION_HOME`: baseline → `--capture-baseline` (keeps the bench executables, with
//! `PODGRANT_BENCH_SLOWDOWN=0`, and profiles) → run with `PODGRANT_BENCH_SLOWDOWN=3` (four
//! times the planner work per iteration) → gate (must be a criterion suspect, confirmed by
//! the paired runs, exit 1 with profile.pb.gz, flamegraph.svg and a differential flame
//! graph) → run without the slowdown → gate with `--suspect-all`, so the pairs are run
//! whatever criterion says (must not confirm, exit 0). The planner bench measures thread CPU
//! time, but on a shared 2-core machine cache and SMT contention still move criterion's
//! comparison by 20%: the confirmation is what keeps the clean rerun green.
//!
//! The differential flame graph is read, not just found: the function the gate's delta table
//! ranks as grown most must be drawn as grown (a positive delta in its frame's title, a red fill).

use std::path::Path;
use std::process::{Command, Output};

const BENCH: &str = "planner/one_event/1000";
const BASELINE: &str = "gate-e2e";
const QUICK: [&str; 7] = [
    "--warm-up-time",
    "0.5",
    "--measurement-time",
    "2",
    "--sample-size",
    "20",
    "--noplot",
];

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is inside the workspace")
}

fn show(what: &str, out: &Output) {
    eprintln!(
        "--- {what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn bench(home: &Path, slowdown: u32, mode: &str) {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .env("CRITERION_HOME", home)
        .env("PODGRANT_BENCH_SLOWDOWN", slowdown.to_string())
        .args([
            "bench",
            "-p",
            "podgrant-benches",
            "--bench",
            "planner",
            "--",
        ])
        .args(["--exact", BENCH, mode, BASELINE])
        .args(QUICK)
        .output()
        .expect("cargo runs");
    show(&format!("cargo bench {mode} (slowdown {slowdown})"), &out);
    assert!(out.status.success(), "cargo bench failed");
}

fn gate(home: &Path, out_dir: &Path, slowdown: u32, extra: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_podgrant-bench-gate"))
        .current_dir(workspace())
        .env("CRITERION_HOME", home)
        .env("PODGRANT_BENCH_SLOWDOWN", slowdown.to_string())
        .args([
            "--baseline",
            BASELINE,
            "--threshold",
            "10%",
            "--profile-time",
            "2",
            "--confirm-rounds",
            "5",
            "--confirm-time",
            "0.5",
        ])
        .arg("--out")
        .arg(out_dir)
        .args(extra)
        .output()
        .expect("the gate runs");
    show(&format!("gate (slowdown {slowdown}) {extra:?}"), &out);
    out
}

/// One frame of an inferno differential flame graph: name, delta (percentage points), fill.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    name: String,
    delta: Option<f64>,
    fill: String,
}

impl Frame {
    /// Drawn as grown: a positive delta and inferno's red scale (`rgb(255,c,c)`, c < 250).
    fn shown_grown(&self) -> bool {
        let red = self
            .fill
            .strip_prefix("rgb(255,")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|gb| gb.split_once(','))
            .and_then(|(g, b)| Some((g.parse::<u8>().ok()?, b.parse::<u8>().ok()?)))
            .is_some_and(|(g, b)| g == b && g < 250);
        red && self.delta.is_some_and(|d| d > 0.0)
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Pure: the frames of an inferno SVG, from each `<title>name (… samples, p%; ±d%)</title>`
/// and the `fill` of the `<rect>` that follows it.
fn frames(svg: &str) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find("<title>") {
        rest = &rest[i + "<title>".len()..];
        let Some(end) = rest.find("</title>") else {
            break;
        };
        let title = unescape(&rest[..end]);
        rest = &rest[end..];
        let fill = rest
            .find("fill=\"")
            .map(|f| &rest[f + "fill=\"".len()..])
            .and_then(|f| f.split_once('"'))
            .map(|(v, _)| v.to_string())
            .unwrap_or_default();
        let Some((name, info)) = title.rsplit_once(" (") else {
            continue;
        };
        let delta = info
            .rsplit_once("; ")
            .and_then(|(_, d)| d.strip_suffix("%)"))
            .and_then(|d| d.parse::<f64>().ok());
        out.push(Frame {
            name: name.to_string(),
            delta,
            fill,
        });
    }
    out
}

#[test]
fn frames_reads_grown_and_shrunk_frames_of_a_differential_flame_graph() {
    use podgrant_benches::gate::folded;
    let before = folded::parse("main;plan 50\nmain;decode 50\n").expect("folded");
    let after = folded::parse("main;plan 90\nmain;decode 10\n").expect("folded");
    let svg = String::from_utf8(folded::differential_svg(&before, &after, "t").expect("svg"))
        .expect("utf8");
    let f = frames(&svg);
    let named = |n: &str| {
        f.iter()
            .find(|x| x.name == n)
            .unwrap_or_else(|| panic!("no {n} frame in {f:?}"))
    };
    assert!(named("plan").shown_grown(), "{:?}", named("plan"));
    assert!(named("plan").delta.is_some_and(|d| (d - 40.0).abs() < 0.5));
    assert!(!named("decode").shown_grown(), "{:?}", named("decode"));
    assert!(named("decode").delta.is_some_and(|d| d < 0.0));
}

fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

#[test]
fn the_gate_catches_a_planted_slowdown_and_passes_noise() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("criterion");

    // the reference: a baseline, and its profile for the differential view
    bench(&home, 0, "--save-baseline");
    let cap = gate(
        &home,
        &tmp.path().join("unused"),
        0,
        &["--capture-baseline"],
    );
    assert!(
        cap.status.success(),
        "capturing the baseline profile failed"
    );

    // the planted slowdown: flagged, exit 1, captures attached
    bench(&home, 3, "--baseline");
    let slow_dir = tmp.path().join("slow");
    let slow = gate(&home, &slow_dir, 3, &[]);
    assert_eq!(
        slow.status.code(),
        Some(1),
        "a 4x slower planner must fail the gate"
    );
    let r = report(&slow_dir);
    assert_eq!(r["regressions"], 1);
    let result = &r["results"][0];
    assert_eq!(result["id"], BENCH);
    assert_eq!(result["verdict"], "regressed");
    assert_eq!(result["suspicion"], "regressed");
    let lower = result["change_mean"][1]
        .as_f64()
        .expect("a change interval");
    assert!(lower > 0.10, "lower bound {lower}");
    let conf = &result["confirmation"];
    assert_eq!(conf["confirmed"], true, "{conf}");
    assert_eq!(conf["pairs"].as_array().map(Vec::len), Some(5));
    let ratio = conf["median_ratio"].as_f64().expect("a median ratio");
    eprintln!(
        "planted slowdown: criterion lower bound {lower:+.3}, paired median ratio {ratio:.3}"
    );
    assert!(ratio > 2.0, "4x the work, median ratio {ratio}");
    let cap = &result["capture"];
    assert!(cap["error"].is_null(), "capture failed: {}", cap["error"]);
    let file = |key: &str| -> std::path::PathBuf {
        let p = cap[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing from the report"));
        assert!(Path::new(p).is_file(), "{p} does not exist");
        p.into()
    };
    let pb = std::fs::read(file("profile_pb_gz")).expect("read profile.pb.gz");
    assert_eq!(&pb[..2], &[0x1f, 0x8b], "profile.pb.gz is gzip");
    let svg = std::fs::read_to_string(file("flamegraph")).expect("read flamegraph.svg");
    assert!(svg.contains("<svg"));
    let diff = std::fs::read_to_string(file("diff_flamegraph")).expect("read diff svg");
    assert!(diff.contains("<svg"));
    // The content: the function that grew most (by the gate's own delta table) is drawn grown.
    let grew = cap["deltas"]
        .as_array()
        .expect("deltas")
        .iter()
        .filter_map(|d| {
            let change = d["after_cum_share"].as_f64()? - d["before_cum_share"].as_f64()?;
            Some((d["function"].as_str()?.to_string(), change))
        })
        .filter(|(_, change)| *change > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let (grew, change) = grew.expect("the planted slowdown made some function's share grow");
    let drawn = frames(&diff);
    assert!(
        drawn.iter().any(|f| f.name == grew && f.shown_grown()),
        "{grew} grew by {:.1} points, but no frame of it is drawn as grown: {:?}",
        change * 100.0,
        drawn.iter().filter(|f| f.name == grew).collect::<Vec<_>>()
    );
    file("baseline_profile_pb_gz");
    assert!(
        cap["deltas"].as_array().is_some_and(|d| !d.is_empty()),
        "no per-function deltas"
    );
    let md = std::fs::read_to_string(slow_dir.join("report.md")).expect("report.md");
    assert!(md.contains("REGRESSED") && md.contains(BENCH));

    // a clean rerun of the unchanged code: compared, re-measured in pairs (whatever criterion
    // made of it), not confirmed, exit 0
    bench(&home, 0, "--baseline");
    let noise_dir = tmp.path().join("noise");
    let noise = gate(&home, &noise_dir, 0, &["--suspect-all"]);
    assert_eq!(noise.status.code(), Some(0), "noise must not fail the gate");
    let r = report(&noise_dir);
    assert_eq!(r["regressions"], 0);
    let result = &r["results"][0];
    assert_ne!(result["verdict"], "not_compared");
    assert_ne!(result["verdict"], "regressed");
    let conf = &result["confirmation"];
    assert_eq!(conf["confirmed"], false, "{conf}");
    assert_eq!(conf["pairs"].as_array().map(Vec::len), Some(5));
    let ratio = conf["median_ratio"].as_f64().expect("a median ratio");
    eprintln!(
        "clean rerun: criterion {} {}, paired median ratio {ratio:.3}",
        result["suspicion"], result["change_mean"]
    );
}

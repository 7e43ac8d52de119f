//! End to end: the gate catches a planted planner slowdown with captures attached, and passes a noise-only rerun.
//!
//! Runs the real `planner` bench through cargo (tiny measurement times) into a private
//! `CRITERION_HOME`: baseline → baseline profile → run with `PODGRANT_BENCH_SLOWDOWN=3` (four
//! times the planner work per iteration) → gate (must exit 1 with profile.pb.gz,
//! flamegraph.svg and a differential flame graph) → run without the slowdown → gate (must
//! exit 0). The planner bench measures thread CPU time, so a busy machine is not a slowdown.

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
        ])
        .arg("--out")
        .arg(out_dir)
        .args(extra)
        .output()
        .expect("the gate runs");
    show(&format!("gate (slowdown {slowdown}) {extra:?}"), &out);
    out
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
    let lower = result["change_mean"][1]
        .as_f64()
        .expect("a change interval");
    assert!(lower > 0.10, "lower bound {lower}");
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
    file("baseline_profile_pb_gz");
    assert!(
        cap["deltas"].as_array().is_some_and(|d| !d.is_empty()),
        "no per-function deltas"
    );
    let md = std::fs::read_to_string(slow_dir.join("report.md")).expect("report.md");
    assert!(md.contains("REGRESSED") && md.contains(BENCH));

    // a noise-only rerun of the unchanged code: compared, not flagged, exit 0
    bench(&home, 0, "--baseline");
    let noise_dir = tmp.path().join("noise");
    let noise = gate(&home, &noise_dir, 0, &[]);
    assert_eq!(noise.status.code(), Some(0), "noise must not fail the gate");
    let r = report(&noise_dir);
    assert_eq!(r["regressions"], 0);
    assert_ne!(r["results"][0]["verdict"], "not_compared");
    assert_ne!(r["results"][0]["verdict"], "regressed");
}

//! Generated faults reach the engine: the corpus fires every fault kind it schedules, and `scenario fuzz` fails when one never fires.

use std::process::Command;

use podgrant_harness::generate::{fuzz, FuzzOptions};
use podgrant_harness::scenario::Subject;

/// A corpus of generated cases fires, while the engine is watching, every fault kind it
/// schedules — and it schedules most of them. (Before faults were armed from the start and
/// could reach open watches, most scheduled watch faults met no watch at all.)
#[test]
fn a_generated_corpus_fires_every_scheduled_fault_kind_while_the_engine_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = FuzzOptions {
        cases: 16,
        seed: 20_261_203,
        max_ops: 16,
        subject: Subject::Engine,
        real_time_rerun: false,
        artifacts: dir.path().to_path_buf(),
        arm: Default::default(),
    };
    let out = fuzz(&opts, &mut |_, _| {}).expect("fuzz runs");
    if let Some(f) = &out.failure {
        panic!("{}: {}\n{}", f.file.display(), f.reason, f.paused_report);
    }
    eprint!("{}", out.coverage);
    assert_eq!(
        out.coverage.unfired(),
        Vec::<&str>::new(),
        "{}",
        out.coverage
    );
    let scheduled = out
        .coverage
        .kinds
        .values()
        .filter(|k| k.cases_scheduled > 0)
        .count();
    assert!(
        scheduled >= 8,
        "only {scheduled} kinds scheduled:\n{}",
        out.coverage
    );
    for (name, k) in &out.coverage.kinds {
        if k.cases_scheduled > 0 {
            assert!(k.cases_fired >= 1, "{name}: {k:?}");
        }
    }
}

fn fuzz_with_arm(plan: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let arm = dir.path().join("arm.json");
    std::fs::write(&arm, plan).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_podgrant-harness"))
        .args([
            "scenario",
            "fuzz",
            "--cases",
            "2",
            "--seed",
            "5",
            "--max-ops",
            "6",
        ])
        .args(["--no-real-time-rerun", "--arm"])
        .arg(&arm)
        .arg("--artifacts")
        .arg(dir.path().join("out"))
        .output()
        .expect("runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A scheduled kind that never hits a watch fails the fuzz run and is named. (`http_502` is
/// never generated, so only the armed rule schedules it, and the engine never touches configmaps.)
#[test]
fn scenario_fuzz_fails_when_a_scheduled_fault_kind_never_fires() {
    let (ok, text) = fuzz_with_arm(
        r#"{"rules": [{"resource": "configmaps", "fault": {"kind": "http_error", "code": 502}}]}"#,
    );
    assert!(!ok, "{text}");
    assert!(text.contains("never hit a watch"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("http_502"))
        .unwrap_or_else(|| panic!("no http_502 coverage line:\n{text}"));
    assert!(line.contains("NEVER FIRED"), "{text}");
    assert!(
        !text.contains("minimal case"),
        "the cases themselves passed:\n{text}"
    );
}

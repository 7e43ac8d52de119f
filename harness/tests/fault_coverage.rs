//! Generated faults reach the engine: the corpus fires every fault kind it schedules, and `scenario fuzz` fails when one never fires.

use std::process::Command;

use podgrant_harness::generate::{realize, FaultCoverage, FaultKind, Op, FAULT_KINDS};
use podgrant_harness::scenario::{self, RunOptions};

/// A generated corpus — one case per fault kind, the kind armed from the start and set again
/// mid-run for open watches, as the generator realizes them — fires every kind it schedules
/// while the engine watches. (Before, faults were only timed steps that applied to new requests,
/// and the engine's watches live 290 s: most scheduled watch faults met no watch at all.)
#[test]
fn a_generated_corpus_fires_every_scheduled_fault_kind_while_the_engine_watches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut coverage = FaultCoverage::default();
    for (i, kind) in FAULT_KINDS
        .into_iter()
        .filter(|k| *k != FaultKind::None)
        .enumerate()
    {
        let pod = |pod, svc| Op::CreatePod {
            pod,
            svc,
            ready: true,
            host_network: false,
        };
        let ops = [
            (0, Op::ArmFault { kind }),
            (0, pod(0, 0)),
            (2000, Op::SetFault { kind, open: true }),
            (500, pod(2, 1)),
            (500, Op::Relabel { pod: 0, svc: 1 }),
            (500, Op::Flood { n: 50 }),
        ];
        let sc = realize(&format!("coverage-{kind:?}"), 40 + i as u64, &ops);
        let report =
            scenario::run(&sc, &RunOptions::paused(dir.path().join(format!("{i}")))).expect("runs");
        assert!(report.passed, "{report}");
        coverage.add(&report);
    }
    eprint!("{coverage}");
    assert_eq!(coverage.unfired(), Vec::<&str>::new(), "{coverage}");
    let scheduled = coverage
        .kinds
        .values()
        .filter(|k| k.cases_scheduled > 0)
        .count();
    assert!(
        scheduled >= 10,
        "only {scheduled} kinds scheduled:\n{coverage}"
    );
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

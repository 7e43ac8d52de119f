//! proptest-generated scenarios (churn, relabels, readiness flaps, IP reuse, hostile
//! annotations, every fault kind) on the real engine, under the paused clock; and the fuzzer's
//! teeth: it finds a planted bug, shrinks it, and writes a case that replays identically.

use podgrant_harness::generate::{fuzz, FuzzOptions};
use podgrant_harness::invariants::Invariant;
use podgrant_harness::scenario::{self, RunOptions, Scenario, Subject};

fn opts(cases: u32, seed: u64, subject: Subject, dir: &std::path::Path) -> FuzzOptions {
    FuzzOptions {
        cases,
        seed,
        max_ops: 24,
        subject,
        real_time_rerun: false,
        artifacts: dir.to_path_buf(),
        store: scenario::StoreKind::Memory,
        arm: Default::default(),
        jobs: podgrant_harness::generate::default_jobs(),
    }
}

#[test]
fn generated_scenarios_pass_on_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = std::env::var("PODGRANT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_126);
    let out =
        fuzz(&opts(24, seed, Subject::Engine, dir.path()), &mut |_, _| {}).expect("fuzz runs");
    eprintln!(
        "proptest: seed {seed}, {} cases, {} runs, {:.1?}",
        out.cases, out.runs, out.wall
    );
    if let Some(f) = &out.failure {
        panic!(
            "minimal failing case {} ({}):\n{}",
            f.file.display(),
            f.reason,
            f.paused_report
        );
    }
    assert_eq!(out.runs, 24);
}

#[test]
fn fuzzer_finds_shrinks_and_replays_a_planted_bug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = fuzz(
        &opts(64, 7, Subject::NeverRevokes, dir.path()),
        &mut |_, _| {},
    )
    .expect("fuzz runs");
    let f = out
        .failure
        .expect("the never-revoking engine must be caught");
    eprintln!(
        "shrunk after {} runs to {}:\n{}",
        out.runs,
        f.file.display(),
        f.paused_report
    );
    // The replayed file fails the same way, with a capture.
    let r = &f.paused_report;
    assert!(!r.passed);
    assert!(
        r.broken()
            .iter()
            .any(|i| matches!(i, Invariant::Convergence | Invariant::Safety)),
        "{r}"
    );
    assert!(
        r.capture.as_ref().is_some_and(|c| c.profile.is_file()),
        "{r}"
    );
    // Minimal: a handful of steps (the never-revoke bug needs one grant and one revocation).
    let sc = Scenario::load(&f.file).expect("minimal case loads");
    assert!(sc.steps.len() <= 6, "not shrunk: {} steps", sc.steps.len());
    // Same seed, same result.
    let mut o = RunOptions::paused(dir.path().join("again"));
    o.subject = Subject::NeverRevokes;
    let again = scenario::run(&sc, &o).expect("replay");
    assert_eq!(again.violations, r.violations);
    assert_eq!(again.work, r.work);
}

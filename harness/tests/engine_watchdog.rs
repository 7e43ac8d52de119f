//! The watchdog around paused-clock engine tests has teeth: a planted spin fails by name with a capture, and no engine test runs paused without it.

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use engine_support::*;
use podgrant_harness::specimen::{watch_pods_by_selector, SpecimenStats};
use podgrant_harness::watchdog::Limits;

/// The seed's `WatchPodsBySelector` (harness/src/specimen.rs) against the seed's fault, inside
/// a paused-clock test that then waits one simulated minute: the spin freezes simulated time,
/// so without the watchdog this test never ends. With it, it fails with "engine spin:
/// simulated time frozen for …" and a pprof profile on disk.
#[test]
fn planted_spin_fails_as_engine_spin_with_a_capture_instead_of_hanging() {
    let name = "engine_watchdog::planted_spin";
    let dir = watchdog_artifacts(name);
    let _ = std::fs::remove_dir_all(&dir);
    let limits = Limits {
        stall_after: Duration::from_secs(2),
        wall_limit: Duration::from_secs(120),
        ..Limits::paused_test()
    };
    let stats = Arc::new(SpecimenStats::default());
    let seen = stats.clone();
    let failed = std::panic::catch_unwind(|| {
        paused_with(name, &limits, move || async move {
            let sim = sim();
            pod(&sim, "web-1", "web");
            sim.set_faults(podgrant_harness::reproduce::seed_fault(1));
            let spin = tokio::spawn(watch_pods_by_selector(
                client(&sim),
                NS.into(),
                String::new(),
                stats,
            ));
            tokio::time::sleep(Duration::from_secs(60)).await;
            spin.abort();
        })
    });
    let panic = failed.expect_err("the watchdog must fail the spinning test");
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| "<not a string>".into());
    assert!(
        msg.starts_with(&format!("{name}: engine spin: simulated time frozen for ")),
        "{msg}"
    );
    assert!(
        seen.empty_receives() > 1000,
        "the subject really spun: {} empty receives",
        seen.empty_receives()
    );
    let profile = dir.join("profile.pb.gz");
    assert!(
        std::fs::metadata(&profile).is_ok_and(|m| m.len() > 0),
        "no capture at {}: {msg}",
        profile.display()
    );
    assert!(dir.join("flamegraph.svg").is_file(), "{msg}");
}

/// Every paused-clock test in this crate's tests goes through `paused_tests!` (or
/// `paused`/`paused_with`): a bare `#[tokio::test(start_paused = true)]` has no watchdog, and a
/// spin in it would hang `cargo test` again.
#[test]
fn no_paused_engine_test_escapes_the_watchdog() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut offenders = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("harness/tests") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read test file");
            let n = text
                .lines()
                .map(str::trim_start)
                .filter(|l| l.starts_with("#[tokio::test(") && l.contains("start_paused"))
                .count();
            if n > 0 {
                offenders.push(format!("{} ({n})", path.display()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "paused-clock tests without the watchdog (use engine_support::paused_tests!): {offenders:?}"
    );
}

/// The guard every paused engine test runs first (`engine_support::assert_built_from_this_tree`)
/// has teeth: this test binary, run as cargo would run another tree's copy of it, fails by name.
/// (Issue 8, cause 5: a test binary another worktree had built into a shared target dir ran in
/// place of this tree's and spun; nothing said whose code it was.)
#[test]
fn a_test_binary_run_for_another_tree_fails_by_name() {
    if std::env::var_os("PODGRANT_GUARD_CHILD").is_some() {
        assert_built_from_this_tree();
        return;
    }
    // This tree's own run passes.
    assert_built_from_this_tree();
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "a_test_binary_run_for_another_tree_fails_by_name",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PODGRANT_GUARD_CHILD", "1")
        .env("CARGO_MANIFEST_DIR", "/elsewhere/podgrant/harness")
        .output()
        .expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "a foreign tree's run must fail: {text}"
    );
    assert!(
        text.contains("stale build from another tree")
            && text.contains("/elsewhere/podgrant/harness"),
        "{text}"
    );
}

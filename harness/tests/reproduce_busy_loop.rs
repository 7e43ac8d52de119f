//! A short `reproduce busy-loop` in real time: the specimen must peg a core (the harness's
//! teeth), and the engine must stay cheap and converge under the same fault.

use std::time::Duration;

use podgrant_harness::reproduce::{run_busy_loop, BusyLoopOptions};

#[test]
fn busy_loop_reproduces_and_engine_stays_within_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = BusyLoopOptions {
        duration: Duration::from_millis(1500),
        pods: 5,
        artifacts: dir.path().to_path_buf(),
        ..BusyLoopOptions::default()
    };
    let mut lines = Vec::new();
    let report = run_busy_loop(&opts, &mut |l| lines.push(l.to_string())).expect("runs");
    let text = report.to_string();
    eprintln!("{}\n{text}", lines.join("\n"));

    // The specimen: wanted a whole core, spun on the closed channel, loop on top of the profile.
    assert!(report.specimen_reproduced(), "{text}");
    assert!(report.specimen.cpu.demand > 0.8, "{text}");
    assert!(
        report.specimen.empty_receives.unwrap_or(0) > 10_000,
        "{text}"
    );
    assert_eq!(
        report.specimen.pod_watches, 1,
        "the seed never re-watches: {text}"
    );
    let spec = report.specimen.capture.as_ref().expect("capture");
    assert!(spec.profile.is_file() && spec.flamegraph.is_file() && spec.top_file.is_file());
    assert!(
        spec.top_cum
            .first()
            .is_some_and(podgrant_harness::reproduce::is_specimen_fn),
        "{}",
        spec.top_cum
    );

    // The engine: cheap, few reconnects, grants exact.
    assert!(report.engine_within_budget(), "{text}");
    assert!(report.engine.cpu.share < 0.2, "{text}");
    assert_eq!(report.engine.grants, Some((5, 5)), "{text}");
    assert!(report.success());
}

//! A short real-time soak: churn and faults for a few seconds, then convergence, a CPU series
//! and its SVG on disk.

use std::time::Duration;

use podgrant_harness::soak::{run, SoakOptions};

#[test]
fn short_soak_converges_and_plots_cpu() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SoakOptions {
        duration: Duration::from_secs(4),
        seed: 3,
        settle: Duration::from_secs(60),
        artifacts: dir.path().to_path_buf(),
        // Generous: this is a functional check; the budget figure comes from longer runs.
        max_cpu_share: 0.5,
    };
    let mut ticks = 0;
    let r = run(&opts, &mut |_, _| ticks += 1).expect("soak runs");
    eprintln!("{r}");
    assert!(r.converged, "{r}");
    assert!(r.passed(), "{r}");
    assert!(r.samples.len() >= 3 && ticks >= 3, "{r}");
    let svg = std::fs::read_to_string(&r.svg).expect("svg");
    assert!(svg.contains("<polyline"), "a CPU line is drawn");
    assert!(r.report_json.is_file());
}

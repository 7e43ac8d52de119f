//! Memory per stored pod: RSS (from /proc/self/statm) before and after storing 100 000 pods, per pod.
//!
//! Run: `cargo run --release -p podgrant-sim --example rss_per_pod` (Linux only).

use podgrant_sim::{Sim, Step};

const PODS: usize = 100_000;

/// Resident set size in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    // 4 KiB pages (x86_64 Linux).
    pages * 4096
}

fn main() {
    let sim = Sim::builder().pod_cidr("10.0.0.0/12").build();
    let before = rss();
    for i in 0..PODS {
        sim.apply(
            &Step::create_pod(&format!("ns{}", i % 10), &format!("pod-{i}"))
                .labels([("app", "web")]),
        )
        .expect("pod");
    }
    let after = rss();
    assert_eq!(sim.sizes().objects, PODS + 4 + 10, "{:?}", sim.sizes());
    println!(
        "rss before {:.1} MB, after {:.1} MB with {PODS} pods: {:.0} bytes per stored pod (history window {})",
        before as f64 / 1e6,
        after as f64 / 1e6,
        (after.saturating_sub(before)) as f64 / PODS as f64,
        sim.sizes().history_window,
    );
}

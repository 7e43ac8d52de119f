//! Bounded memory: a long run of churn keeps the history window, watcher buffers, IP pool and counters bounded.

mod common;

use std::time::Duration;

use common::{send, types, watch_lines, WatchEnd};
use podgrant_sim::{FloodSpec, Sim, Step};

#[tokio::test(start_paused = true)]
async fn long_churn_keeps_internal_sizes_bounded() {
    let sim = Sim::builder().history_window(500).watch_buffer(128).build();
    for i in 0..20 {
        sim.apply(&Step::create_pod("ns", &format!("p{i}")))
            .unwrap();
    }
    // A watcher that never reads while 30 000 events go by.
    let stalled = send(
        &sim,
        "GET",
        "/api/v1/namespaces/ns/pods?watch=true",
        None,
        "",
    )
    .await;
    // A watcher that keeps up, reading as the churn goes.
    let rv = sim.resource_version();
    let live = send(
        &sim,
        "GET",
        &format!("/api/v1/namespaces/ns/pods?watch=true&resourceVersion={rv}"),
        None,
        "",
    )
    .await;
    let reader =
        tokio::spawn(async move { watch_lines(live.into_body(), Duration::from_secs(5)).await });
    let mut max_history = 0;
    for round in 0..300 {
        sim.flood(FloodSpec::burst("ns", 100));
        // Create and delete pods too, so objects and IPs come and go.
        let name = format!("tmp{round}");
        sim.apply(&Step::create_pod("ns", &name)).unwrap();
        sim.apply(&Step::delete_pod("ns", &name)).unwrap();
        max_history = max_history.max(sim.sizes().history);
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    let sizes = sim.sizes();
    assert!(sizes.resource_version > 30_000, "{sizes:?}");
    assert_eq!(max_history, 500, "history never exceeds the window");
    assert_eq!(sizes.history, 500);
    assert_eq!(
        sizes.objects,
        20 + 5,
        "20 pods + 5 namespaces: churn does not accumulate objects"
    );
    assert_eq!(sim.ips_in_use(), 20);
    assert!(sizes.watchers <= 2);
    let stats = sim.stats();
    assert!(
        stats.requests.len() <= 2 && stats.faults.len() <= 1,
        "{stats:?}"
    );

    // The stalled watcher was dropped as too slow rather than buffering 30 000 events:
    // it gets its initial events, then its stream ends.
    let (lines, end) = watch_lines(stalled.into_body(), Duration::from_secs(5)).await;
    assert_eq!(end, WatchEnd::Clean);
    assert!(
        types(&lines).iter().all(|t| t == "ADDED") && lines.len() == 20,
        "{}",
        lines.len()
    );
    // The watcher that kept up saw every event and is still open.
    let (live_lines, live_end) = reader.await.unwrap();
    assert_eq!(live_end, WatchEnd::StillOpen);
    assert_eq!(
        live_lines.len(),
        300 * 102,
        "100 churn + 1 create + 1 delete per round"
    );
    // Once both watch streams are gone, no receivers remain.
    assert_eq!(sim.sizes().watchers, 0);
}

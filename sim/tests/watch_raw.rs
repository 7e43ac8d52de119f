//! Watch wire details checked on raw lines: timeoutSeconds, streaming-list bookmark annotation, replay from an RV, and fault closes over TCP.

mod common;

use std::time::Duration;

use common::{send, types, watch_lines, WatchEnd};
use podgrant_sim::{CloseMode, CloseWhen, Fault, FaultPlan, FaultRule, Sim, Step};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn timeout_seconds_ends_the_watch_cleanly() {
    let sim = Sim::builder().build();
    let start = Instant::now();
    let resp = send(
        &sim,
        "GET",
        "/api/v1/pods?watch=1&timeoutSeconds=7",
        None,
        "",
    )
    .await;
    let (_, end) = watch_lines(resp.into_body(), Duration::from_secs(30)).await;
    assert_eq!(end, WatchEnd::Clean);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(30),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn streaming_list_ends_initial_events_with_annotated_bookmark() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    sim.apply(&Step::create_pod("other", "b")).unwrap();
    let uri = "/api/v1/namespaces/ns/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion=";
    let (lines, _) = watch_lines(
        send(&sim, "GET", uri, None, "").await.into_body(),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(types(&lines), ["ADDED", "BOOKMARK"]);
    let bm: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(
        bm["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(
        bm["object"]["metadata"]["resourceVersion"],
        sim.resource_version().to_string()
    );
    // sendInitialEvents without resourceVersionMatch=NotOlderThan is a 400, as on a real apiserver.
    let (c, _, _) = common::raw(
        &sim,
        "GET",
        "/api/v1/pods?watch=true&sendInitialEvents=true",
        None,
        "",
    )
    .await;
    assert_eq!(c, 400);
}

#[tokio::test(start_paused = true)]
async fn watch_from_rv_replays_every_later_event_in_order() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let rv = sim.resource_version();
    sim.apply(&Step::set_pod_ready("ns", "a", false)).unwrap();
    sim.apply(&Step::create_pod("ns", "b")).unwrap();
    sim.apply(&Step::delete_pod("ns", "a")).unwrap();
    let uri = format!("/api/v1/namespaces/ns/pods?watch=true&resourceVersion={rv}");
    let (lines, _) = watch_lines(
        send(&sim, "GET", &uri, None, "").await.into_body(),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(types(&lines), ["MODIFIED", "ADDED", "DELETED"]);
    let rvs: Vec<u64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        rvs.windows(2).all(|w| w[0] < w[1]) && rvs[0] > rv,
        "{rvs:?}"
    );
}

async fn tcp_watch(sim: &Sim, mode: CloseMode) -> String {
    sim.set_faults(
        FaultPlan::new(1).rule(
            FaultRule::new(Fault::CloseWatch {
                when: CloseWhen::AfterEvents { n: 1 },
                mode,
            })
            .verb("watch"),
        ),
    );
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    conn.write_all(b"GET /api/v1/namespaces/ns/pods?watch=true HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    // Reads to EOF: the server closes the connection (reset) or ends the chunked body; ask to close after.
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn close_watch_over_tcp_clean_ends_chunked_body_reset_drops_connection() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let clean = tcp_watch(&sim, CloseMode::Clean).await;
    assert!(
        clean.contains("transfer-encoding: chunked") && clean.contains("\"ADDED\""),
        "{clean}"
    );
    assert!(
        clean.ends_with("\r\n0\r\n\r\n"),
        "clean close sends the final chunk: {clean:?}"
    );
    let reset = tcp_watch(&sim, CloseMode::Reset).await;
    assert!(reset.contains("\"ADDED\""), "{reset}");
    assert!(
        !reset.ends_with("0\r\n\r\n"),
        "reset must not send the final chunk: {reset:?}"
    );
    let s = sim.stats();
    assert_eq!(
        (s.faults("close_watch"), s.faults("close_watch_reset")),
        (1, 1)
    );
}

/// `Sim::visibility` — what the harness's safety oracle reads: a watch refused with 410 is never
/// live, an open one is until it ends; a list counts once its last page is served.
#[tokio::test(start_paused = true)]
async fn visibility_counts_live_watches_and_only_full_lists() {
    let sim = Sim::builder().seed(3).build();
    for n in ["a", "b", "c"] {
        sim.apply(&Step::create_pod("ns", n)).unwrap();
    }
    let pods = |sim: &Sim| sim.visibility().get("pods").copied();
    assert_eq!(
        pods(&sim),
        None,
        "no watch asked for yet: not a watched resource"
    );

    sim.set_faults(FaultPlan::new(1).rule(FaultRule::new(Fault::Expire).resource("pods").times(1)));
    let rv = sim.resource_version();
    let resp = send(
        &sim,
        "GET",
        &format!("/api/v1/pods?watch=1&resourceVersion={rv}"),
        None,
        "",
    )
    .await;
    let (lines, end) = watch_lines(resp.into_body(), Duration::from_secs(5)).await;
    assert_eq!(
        (types(&lines), end),
        (vec!["ERROR".to_string()], WatchEnd::Clean)
    );
    let v = pods(&sim).expect("watched now");
    assert_eq!(
        (v.live_watches, v.lists_served),
        (0, 0),
        "a 410 is never live"
    );

    sim.set_faults(FaultPlan::new(1));
    let watcher = {
        let sim = sim.clone();
        tokio::spawn(async move {
            let uri = format!("/api/v1/pods?watch=1&timeoutSeconds=5&resourceVersion={rv}");
            watch_lines(
                send(&sim, "GET", &uri, None, "").await.into_body(),
                Duration::from_secs(30),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods(&sim).unwrap().live_watches, 1, "open and delivering");
    assert_eq!(watcher.await.unwrap().1, WatchEnd::Clean);
    assert_eq!(pods(&sim).unwrap().live_watches, 0, "ended at its timeout");

    let (code, _, first) = common::raw(&sim, "GET", "/api/v1/pods?limit=2", None, "").await;
    assert_eq!(code, 200);
    assert_eq!(
        pods(&sim).unwrap().lists_served,
        0,
        "a first page is not the whole list"
    );
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("more to come")
        .to_string();
    let (code, _, _) = common::raw(
        &sim,
        "GET",
        &format!("/api/v1/pods?limit=2&continue={token}"),
        None,
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        pods(&sim).unwrap().lists_served,
        1,
        "its last page completes it"
    );
    common::raw(&sim, "GET", "/api/v1/namespaces/ns/pods", None, "").await;
    assert_eq!(pods(&sim).unwrap().lists_served, 2);
}

//! The kube-rs behaviours of kube_inprocess.rs again, over a real loopback TCP connection (real time, short bookmark interval).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use podgrant_sim::{Sim, SimServer, Step};

async fn setup(window: usize) -> (Sim, SimServer, kube::Client) {
    let sim = Sim::builder()
        .history_window(window)
        .bookmark_interval(Duration::from_millis(200))
        .build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    (sim, server, client)
}

async fn next<S: futures::Stream + Unpin>(s: &mut S) -> S::Item {
    tokio::time::timeout(Duration::from_secs(30), s.next())
        .await
        .expect("event within 30s")
        .expect("stream open")
}

#[tokio::test]
async fn tcp_pagination_conflict_and_expired_continue() {
    let (sim, _server, client) = setup(100).await;
    for i in 0..5 {
        sim.apply(&Step::create_pod("ns", &format!("p{i}")))
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns");
    let first = pods.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    sim.apply(&Step::delete_pod("ns", "p2")).unwrap();
    let second = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<_> = second
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["p2", "p3"],
        "pages are consistent at the first page's RV"
    );
    sim.compact();
    let err = pods
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410),
        "{err:?}"
    );

    sim.apply(&Step::create_service("ns", "db", [("app", "db")]))
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(client, "ns");
    let stale = svcs.get("db").await.unwrap();
    sim.apply(&Step::annotate_service("ns", "db", [("x", Some("1"))]))
        .unwrap();
    let err = svcs
        .replace("db", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
}

#[tokio::test]
async fn tcp_selector_scoped_deleted_bookmarks_and_410() {
    let (sim, _server, client) = setup(5).await;
    sim.apply(&Step::create_pod("ns", "a").labels([("app", "web")]))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "ns");
    let rv = sim.resource_version().to_string();
    let mut s = pods
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    sim.apply(&Step::relabel_pod("ns", "a", [("app", "db")]))
        .unwrap();
    assert!(
        matches!(next(&mut s).await.unwrap(), WatchEvent::Deleted(p) if p.metadata.labels.as_ref().unwrap()["app"] == "web")
    );
    assert!(
        matches!(next(&mut s).await.unwrap(), WatchEvent::Bookmark(_)),
        "bookmark after the interval"
    );
    // Push the watch RV out of the window.
    for i in 0..10 {
        sim.apply(&Step::set_pod_phase(
            "ns",
            "a",
            if i % 2 == 0 { "Pending" } else { "Running" },
        ))
        .unwrap();
    }
    let mut old = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match next(&mut old).await {
        Ok(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }
}

#[tokio::test]
async fn tcp_streaming_list_and_relist_after_compaction() {
    let (sim, _server, client) = setup(100).await;
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns");
    let mut w =
        watcher::watcher(pods.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert!(matches!(next(&mut w).await.unwrap(), Event::Init));
    assert!(
        matches!(next(&mut w).await.unwrap(), Event::InitApply(p) if p.metadata.name.as_deref() == Some("a"))
    );
    assert!(matches!(next(&mut w).await.unwrap(), Event::InitDone));
    assert_eq!(sim.stats().requests("list", "pods"), 0);

    let mut lw = watcher::watcher(pods, watcher::Config::default().timeout(1)).boxed();
    while !matches!(next(&mut lw).await.unwrap(), Event::InitDone) {}
    let lists = sim.stats().requests("list", "pods");
    sim.compact();
    sim.apply(&Step::set_pod_phase("ns", "a", "Pending"))
        .unwrap();
    sim.compact();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().requests("list", "pods") == lists {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher did not relist over TCP"
        );
        let _ = tokio::time::timeout(Duration::from_millis(500), lw.next()).await;
    }
}

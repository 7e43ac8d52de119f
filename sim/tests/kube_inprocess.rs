//! kube-rs against the in-process service under tokio's paused clock: CRUD, list/watch, pagination, selectors, 409, 410, bookmarks, streaming lists.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use kube::Client;
use podgrant_sim::{Sim, Step};
use serde_json::json;

fn client(sim: &Sim) -> Client {
    Client::new(sim.service(), "default")
}

async fn next_within<S: futures::Stream + Unpin>(s: &mut S, secs: u64) -> Option<S::Item> {
    tokio::time::timeout(Duration::from_secs(secs), s.next())
        .await
        .ok()
        .flatten()
}

#[tokio::test(start_paused = true)]
async fn crud_roundtrip_in_process() {
    let sim = Sim::builder().seed(1).build();
    let pods: Api<Pod> = Api::namespaced(client(&sim), "default");
    let created = pods
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "p1", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}})).unwrap())
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    let got = pods.get("p1").await.unwrap();
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    let patched = pods
        .patch(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "fe"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["tier"], "fe");
    let st = pods
        .patch_status(
            "p1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().phase.as_deref(), Some("Running"));
    let err = pods.get("nope").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    pods.delete("p1", &Default::default()).await.unwrap();
    assert!(sim.get("pods", Some("default"), "p1").is_err());

    let ns: Api<Namespace> = Api::all(client(&sim));
    assert!(ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .any(|n| n.metadata.name.as_deref() == Some("kube-system")));
    let leases: Api<Lease> = Api::namespaced(client(&sim), "default");
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        leases
            .get("l")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("me")
    );
    let secrets: Api<Secret> = Api::namespaced(client(&sim), "default");
    sim.apply(&Step::create_secret("default", "db", [("password", "pw")]))
        .unwrap();
    let s = secrets.get("db").await.unwrap();
    assert_eq!(s.data.unwrap()["password"].0, b"pw");
}

#[tokio::test(start_paused = true)]
async fn stale_update_is_409() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_service("default", "db", [("app", "db")]))
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(client(&sim), "default");
    let mut a = svcs.get("db").await.unwrap();
    let mut b = a.clone();
    a.metadata.labels = Some([("x".to_string(), "1".to_string())].into());
    svcs.replace("db", &PostParams::default(), &a)
        .await
        .unwrap();
    b.metadata.labels = Some([("x".to_string(), "2".to_string())].into());
    let err = svcs
        .replace("db", &PostParams::default(), &b)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn pagination_is_consistent_and_expired_continue_is_410() {
    let sim = Sim::builder().history_window(50).build();
    for i in 0..7 {
        sim.apply(&Step::create_pod("ns", &format!("p{i}")))
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap();
    // Changes after the first page do not show in later pages.
    sim.apply(&Step::create_pod("ns", "p9")).unwrap();
    sim.apply(&Step::delete_pod("ns", "p5")).unwrap();
    let second = pods
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<_> = second
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["p3", "p4", "p5"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    let third = pods
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(third.metadata.continue_.is_none());
    sim.compact();
    let err = pods
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410 && s.reason == "Expired"),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn watcher_sees_lifecycle_in_process() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a").labels([("app", "web")]))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let mut w = watcher::watcher(pods, watcher::Config::default()).boxed();
    let mut seen_init = false;
    loop {
        match next_within(&mut w, 30).await.expect("event").unwrap() {
            Event::InitApply(p) => {
                assert_eq!(p.metadata.name.as_deref(), Some("a"));
                seen_init = true;
            }
            Event::InitDone => break,
            _ => {}
        }
    }
    assert!(seen_init);
    sim.apply(&Step::create_pod("ns", "b")).unwrap();
    match next_within(&mut w, 30).await.expect("event").unwrap() {
        Event::Apply(p) => assert_eq!(p.metadata.name.as_deref(), Some("b")),
        e => panic!("unexpected {e:?}"),
    }
    sim.apply(&Step::delete_pod("ns", "a")).unwrap();
    match next_within(&mut w, 30).await.expect("event").unwrap() {
        Event::Delete(p) => assert_eq!(p.metadata.name.as_deref(), Some("a")),
        e => panic!("unexpected {e:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn watch_from_compacted_rv_gets_in_stream_410_and_watcher_relists() {
    let sim = Sim::builder().history_window(5).build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let rv = sim.resource_version();
    for i in 0..10 {
        sim.apply(&Step::set_pod_phase(
            "ns",
            "a",
            if i % 2 == 0 { "Pending" } else { "Running" },
        ))
        .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let mut raw = pods
        .watch(&WatchParams::default(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    match next_within(&mut raw, 5).await.expect("event").unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        e => panic!("expected ERROR, got {e:?}"),
    }
    // watcher: list, then a compaction makes its resumed watch expire, and it relists.
    let lists_before = sim.stats().requests("list", "pods");
    let mut w = watcher::watcher(pods, watcher::Config::default().timeout(1)).boxed();
    loop {
        if let Event::InitDone = next_within(&mut w, 30).await.expect("event").unwrap() {
            break;
        }
    }
    sim.compact();
    for i in 0..10 {
        sim.apply(&Step::set_pod_phase(
            "ns",
            "a",
            if i % 2 == 0 { "Pending" } else { "Running" },
        ))
        .unwrap();
    }
    sim.compact();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sim.stats().requests("list", "pods") < lists_before + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watcher did not relist"
        );
        let _ = next_within(&mut w, 5).await;
    }
}

#[tokio::test(start_paused = true)]
async fn bookmarks_arrive_periodically() {
    let sim = Sim::builder()
        .bookmark_interval(Duration::from_secs(5))
        .build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let rv = sim.resource_version();
    let mut raw = pods
        .watch(&WatchParams::default(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    sim.apply(&Step::set_pod_phase("ns", "a", "Pending"))
        .unwrap();
    assert!(matches!(
        next_within(&mut raw, 5).await.unwrap().unwrap(),
        WatchEvent::Modified(_)
    ));
    match next_within(&mut raw, 10).await.expect("bookmark").unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(
            b.metadata.resource_version,
            sim.resource_version().to_string()
        ),
        e => panic!("expected BOOKMARK, got {e:?}"),
    }
    assert!(sim.stats().bookmarks_sent >= 1);
}

#[tokio::test(start_paused = true)]
async fn streaming_list_sends_initial_events_then_marked_bookmark() {
    let sim = Sim::builder().build();
    for n in ["a", "b"] {
        sim.apply(&Step::create_pod("ns", n)).unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let mut w = watcher::watcher(pods, watcher::Config::default().streaming_lists()).boxed();
    let mut names = Vec::new();
    loop {
        match next_within(&mut w, 30).await.expect("event").unwrap() {
            Event::InitApply(p) => names.push(p.metadata.name.unwrap()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        sim.stats().requests("list", "pods"),
        0,
        "streaming list must not LIST"
    );
    sim.apply(&Step::create_pod("ns", "c")).unwrap();
    assert!(
        matches!(next_within(&mut w, 30).await.unwrap().unwrap(), Event::Apply(p) if p.metadata.name.as_deref() == Some("c"))
    );
}

#[tokio::test(start_paused = true)]
async fn selector_scoped_watch_sends_deleted_and_added_on_relabel() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a").labels([("app", "web")]))
        .unwrap();
    sim.apply(&Step::create_pod("ns", "b").labels([("app", "db")]))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let listed = pods
        .list(&ListParams::default().labels("app in (web),!gone"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let rv = listed.metadata.resource_version.unwrap();
    let mut raw = pods
        .watch(&WatchParams::default().labels("app=web"), &rv)
        .await
        .unwrap()
        .boxed();
    sim.apply(&Step::relabel_pod("ns", "a", [("app", "other")]))
        .unwrap();
    match next_within(&mut raw, 5).await.unwrap().unwrap() {
        WatchEvent::Deleted(p) => {
            assert_eq!(p.metadata.name.as_deref(), Some("a"));
            assert_eq!(p.metadata.labels.unwrap()["app"], "web", "previous content");
        }
        e => panic!("expected DELETED, got {e:?}"),
    }
    assert!(
        sim.get("pods", Some("ns"), "a").is_ok(),
        "object still exists"
    );
    sim.apply(&Step::relabel_pod("ns", "b", [("app", "web")]))
        .unwrap();
    assert!(
        matches!(next_within(&mut raw, 5).await.unwrap().unwrap(), WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("b"))
    );
    let by_field = pods
        .list(&ListParams::default().fields("metadata.name=b,status.phase=Running"))
        .await
        .unwrap();
    assert_eq!(by_field.items.len(), 1);
    let all: Vec<Pod> = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn patch_flavours_deletecollection_and_namespace_cascade() {
    use kube::api::DeleteParams;
    let sim = Sim::builder().build();
    for (n, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        sim.apply(&Step::create_pod("team", n).labels([("app", app)]))
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client(&sim), "team");
    let p = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"app": null, "x": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        p.metadata.labels.unwrap().into_iter().collect::<Vec<_>>(),
        [("x".to_string(), "1".to_string())]
    );
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}}]),
    )
    .unwrap();
    let p = pods
        .patch("b", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(p.metadata.annotations.unwrap()["k"], "v");
    let ips_before = sim.ips_in_use();
    // Grace 0: these pods are bound, so a plain delete would leave them Terminating for 30 s.
    let gone = pods
        .delete_collection(
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
            &ListParams::default().labels("app=web"),
        )
        .await
        .unwrap();
    assert_eq!(
        gone.left().unwrap().items.len(),
        1,
        "only b still has app=web"
    );
    assert_eq!(sim.ips_in_use(), ips_before - 1);
    let ns: Api<Namespace> = Api::all(client(&sim));
    ns.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(sim.list("pods", Some("team")).is_empty());
    assert_eq!(sim.ips_in_use(), 0);
}

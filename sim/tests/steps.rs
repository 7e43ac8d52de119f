//! `POST /_sim/steps` (scenario steps over HTTP, checked whole before any is applied) and the `stop_flood` step, in-process and over TCP.

mod common;

use std::time::Duration;

use common::raw;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use podgrant_sim::{Scenario, Sim};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn post_steps(sim: &Sim, body: &Value) -> (u16, Value) {
    let (code, _, v) = raw(
        sim,
        "POST",
        "/_sim/steps",
        Some("application/json"),
        body.to_string(),
    )
    .await;
    (code, v)
}

/// The next watch event, or `None` if `quiet` passes without one (tokio time).
async fn next_within<S>(s: &mut S, quiet: Duration) -> Option<WatchEvent<Pod>>
where
    S: Stream<Item = kube::Result<WatchEvent<Pod>>> + Unpin,
{
    match tokio::time::timeout(quiet, s.next()).await {
        Ok(Some(ev)) => Some(ev.expect("a decodable watch event")),
        Ok(None) => panic!("the watch ended"),
        Err(_) => None,
    }
}

fn added_name(ev: &WatchEvent<Pod>) -> Option<String> {
    match ev {
        WatchEvent::Added(p) => p.metadata.name.clone(),
        _ => None,
    }
}

fn rv_of(ev: &WatchEvent<Pod>) -> u64 {
    match ev {
        WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => p
            .metadata
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse().ok())
            .expect("an object with a resourceVersion"),
        other => panic!("unexpected {other:?}"),
    }
}

fn cause_fields(status: &Value) -> Vec<&str> {
    status["details"]["causes"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["field"].as_str()).collect())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn steps_create_pods_and_a_service_that_list_and_watch_see() {
    let sim = Sim::builder().build();
    let client = common::client(&sim);
    let pods: Api<Pod> = Api::all(client.clone());
    let rv = sim.resource_version().to_string();
    let mut watch = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let (code, summary) = post_steps(
        &sim,
        &json!([
            {"op": "create_pod", "namespace": "shop", "name": "web-1", "labels": {"app": "web"}},
            {"at": "0s", "step": {"op": "create_pod", "namespace": "shop", "name": "web-2", "labels": {"app": "web"}, "ready": false}},
            {"op": "create_service", "namespace": "shop", "name": "db", "selector": {"app": "web"}},
        ]),
    )
    .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["applied"], 3);
    assert_eq!(
        summary["resourceVersion"],
        sim.resource_version().to_string()
    );
    let listed = Api::<Pod>::namespaced(client.clone(), "shop")
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["web-1", "web-2"]);
    assert!(listed.items.iter().all(|p| p
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_ref())
        .is_some()));
    let svc = Api::<Service>::namespaced(client, "shop")
        .get("db")
        .await
        .unwrap();
    let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(selector.get("app").map(String::as_str), Some("web"));
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = next_within(&mut watch, Duration::from_secs(30))
            .await
            .expect("the created pods reach the watch");
        seen.extend(added_name(&ev));
    }
    assert_eq!(seen, ["web-1", "web-2"]);
}

#[tokio::test(start_paused = true)]
async fn a_bad_list_is_refused_whole_naming_index_and_field() {
    let sim = Sim::builder().build();
    let pods: Api<Pod> = Api::all(common::client(&sim));
    let rv = sim.resource_version();
    let mut watch = pods
        .watch(&WatchParams::default(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    let (code, status) = post_steps(
        &sim,
        &json!([
            {"op": "create_pod", "namespace": "shop", "name": "fine"},
            {"op": "create_pod", "namespace": "shop", "name": "Not_A_Name"},
            {"op": "explode"},
            {"op": "flood", "rate_per_second": -1},
        ]),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        cause_fields(&status),
        ["steps[1].name", "steps[2].op", "steps[3].rate_per_second"]
    );
    assert_eq!(sim.resource_version(), rv, "nothing of the list applied");
    assert!(sim.list("pods", None).is_empty());
    assert!(sim.get("namespaces", None, "shop").is_err());
    // The watch's first event is the pod of the next good request: the refused one sent none.
    let (code, summary) = post_steps(
        &sim,
        &json!({"op": "create_pod", "namespace": "default", "name": "after"}),
    )
    .await;
    assert_eq!(code, 200, "{summary}");
    let first = next_within(&mut watch, Duration::from_secs(30))
        .await
        .expect("an event");
    assert_eq!(added_name(&first).as_deref(), Some("after"));

    // Not JSON: 400. Too big a body: 413, like every other admin body.
    let (code, _, _) = raw(&sim, "POST", "/_sim/steps", None, "[{").await;
    assert_eq!(code, 400);
    let small = Sim::builder().max_body(1024).build();
    let big = json!([{"op": "create_namespace", "name": "x".repeat(2000)}]);
    assert_eq!(post_steps(&small, &big).await.0, 413);
    assert_eq!(
        raw(&sim, "GET", "/_sim/steps", None, "").await.0,
        405,
        "only POST"
    );

    // A step the cluster's state refuses fails the whole list: the list is rehearsed first,
    // so the Status names the step and nothing of the list is applied.
    let rv = sim.resource_version();
    let (code, status) = post_steps(
        &sim,
        &json!([
            {"op": "create_pod", "namespace": "default", "name": "twice"},
            {"op": "create_pod", "namespace": "default", "name": "twice"},
            {"op": "create_pod", "namespace": "default", "name": "never"},
        ]),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(cause_fields(&status), ["steps[1]"]);
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing was applied")),
        "{status}"
    );
    assert_eq!(sim.resource_version(), rv, "no write, no event");
    assert!(sim.get("pods", Some("default"), "twice").is_err());
    assert!(sim.get("pods", Some("default"), "never").is_err());
}

/// Every way a step can meet the cluster's state, rehearsed: the list that would fail at step
/// `i` answers that step's own error and leaves the store, the IP pool and the floods as they
/// were; a list whose steps depend on the ones before them passes the rehearsal.
#[tokio::test(start_paused = true)]
async fn a_list_that_would_fail_midway_applies_nothing() {
    let sim = Sim::builder().build();
    let setup = json!([
        {"op": "create_pod", "namespace": "shop", "name": "a", "ip": "10.244.0.10"},
        {"op": "create_service", "namespace": "shop", "name": "orders", "selector": {"app": "x"}},
        {"op": "flood", "id": "churn", "namespace": "quiet", "rate_per_second": 5},
    ]);
    assert_eq!(post_steps(&sim, &setup).await.0, 200);
    let ips = sim.ips_in_use();

    let failing: Vec<(Value, u16, &str)> = vec![
        // Not found: a pod the list itself deleted.
        (
            json!([{"op": "create_pod", "namespace": "shop", "name": "b"},
                   {"op": "delete_pod", "namespace": "shop", "name": "a"},
                   {"op": "set_pod_ready", "namespace": "shop", "name": "a", "ready": false}]),
            404,
            "steps[2]",
        ),
        // An IP taken by a pod that exists.
        (
            json!([{"op": "create_pod", "namespace": "shop", "name": "b"},
                   {"op": "create_pod", "namespace": "shop", "name": "c", "ip": "10.244.0.10"}]),
            400,
            "steps[1]",
        ),
        // An IP an earlier step of the same list allocated (the lowest free address).
        (
            json!([{"op": "create_pod", "namespace": "shop", "name": "b"},
                   {"op": "create_pod", "namespace": "shop", "name": "c", "ip": "10.244.0.1"}]),
            400,
            "steps[1]",
        ),
        // A Service that exists; a Secret that does not.
        (
            json!([{"op": "create_secret", "namespace": "shop", "name": "s"},
                   {"op": "create_service", "namespace": "shop", "name": "orders"}]),
            409,
            "steps[1]",
        ),
        (
            json!([{"op": "create_pod", "namespace": "shop", "name": "b"},
                   {"op": "delete_secret", "namespace": "shop", "name": "nope"}]),
            404,
            "steps[1]",
        ),
        // A flood id that runs.
        (
            json!([{"op": "create_pod", "namespace": "shop", "name": "b"},
                   {"op": "flood", "id": "churn", "namespace": "quiet", "rate_per_second": 5}]),
            409,
            "steps[1]",
        ),
        // A recycle from a pod with no known IP.
        (
            json!([{"op": "create_pod", "namespace": "shop", "name": "b"},
                   {"op": "recycle_ip", "namespace": "shop", "from": "ghost", "to": "c"}]),
            400,
            "steps[1]",
        ),
    ];
    for (list, want, field) in failing {
        let rv = sim.resource_version();
        let (code, status) = post_steps(&sim, &list).await;
        assert_eq!(code, want, "{list}: {status}");
        assert_eq!(cause_fields(&status), [field], "{status}");
        assert_eq!(sim.resource_version(), rv, "{list} wrote something");
        assert_eq!(sim.ips_in_use(), ips, "{list} moved the IP pool");
        assert!(sim.get("pods", Some("shop"), "b").is_err(), "{list}");
        assert!(sim.get("pods", Some("shop"), "a").is_ok(), "{list}");
    }

    // Steps that depend on earlier ones in the list pass: delete and recreate under the same
    // name, recycle the IP of a pod created in the list, stop the running flood and start it
    // again under the same id, a pod in a namespace the list creates implicitly.
    let (code, summary) = post_steps(
        &sim,
        &json!([
            {"op": "delete_pod", "namespace": "shop", "name": "a"},
            {"op": "create_pod", "namespace": "shop", "name": "a", "ip": "10.244.0.10"},
            {"op": "create_pod", "namespace": "shop", "name": "b", "ip": "10.244.0.20"},
            {"op": "recycle_ip", "namespace": "shop", "from": "b", "to": "b2"},
            {"op": "stop_flood", "id": "churn"},
            {"op": "flood", "id": "churn", "namespace": "quiet", "rate_per_second": 5},
            {"op": "create_pod", "namespace": "new-ns", "name": "p"},
            {"op": "set_pod_ip", "namespace": "new-ns", "name": "p", "ip": "10.244.0.30"},
            {"op": "stop_flood"},
        ]),
    )
    .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["applied"], 9);
    let b2 = sim.get("pods", Some("shop"), "b2").expect("b2");
    assert_eq!(b2["status"]["podIP"], "10.244.0.20");
    assert!(sim.get("pods", Some("shop"), "b").is_err());
}

#[tokio::test(start_paused = true)]
async fn a_flood_started_by_a_step_ends_at_its_stop_step() {
    let sim = Sim::builder().build();
    let pods: Api<Pod> = Api::all(common::client(&sim));
    let make: Vec<Value> = (0..3)
        .map(|i| json!({"op": "create_pod", "namespace": "shop", "name": format!("p{i}")}))
        .collect();
    assert_eq!(post_steps(&sim, &json!(make)).await.0, 200);
    let rv = sim.resource_version().to_string();
    let mut watch = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let flood = json!({"op": "flood", "id": "churn", "namespace": "shop", "rate_per_second": 200});
    let (code, summary) = post_steps(&sim, &flood).await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["floodsStarted"], json!(["churn"]));
    let mut modified = 0;
    while modified < 20 {
        let ev = next_within(&mut watch, Duration::from_secs(30))
            .await
            .expect("flood events reach the watch");
        modified += usize::from(matches!(ev, WatchEvent::Modified(_)));
    }
    // The id is taken while the flood runs.
    let (code, status) = post_steps(&sim, &flood).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );

    let (code, summary) = post_steps(&sim, &json!({"op": "stop_flood", "id": "churn"})).await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["floodsStopped"], json!(["churn"]));
    let stopped_at: u64 = summary["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Events up to the stop may still be in flight to the watch; none after it, across a quiet
    // window of 10 s on the paused clock (the flood would have sent 2,000).
    while let Some(ev) = next_within(&mut watch, Duration::from_secs(10)).await {
        assert!(rv_of(&ev) <= stopped_at, "event after the stop: {ev:?}");
    }
    assert_eq!(sim.resource_version(), stopped_at);

    // Stopping what is not running is a clear no-op; the id is free again.
    let (code, summary) = post_steps(&sim, &json!({"op": "stop_flood", "id": "churn"})).await;
    assert_eq!((code, summary["floodsStopped"].clone()), (200, json!([])));
    let (code, summary) = post_steps(
        &sim,
        &json!([flood, {"op": "flood", "namespace": "shop", "rate_per_second": 5}, {"op": "stop_flood"}]),
    )
    .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["floodsStarted"], json!(["churn", "flood-1"]));
    assert_eq!(summary["floodsStopped"], json!(["churn", "flood-1"]));
}

#[tokio::test(start_paused = true)]
async fn a_scenario_file_stops_its_flood_at_the_stop_step() {
    let sc = Scenario::from_json(
        &json!({"steps": [
            {"step": {"op": "create_pod", "namespace": "shop", "name": "p"}},
            {"step": {"op": "flood", "id": "f", "namespace": "shop", "rate_per_second": 100}},
            {"at": "2s", "step": {"op": "stop_flood", "id": "f"}},
        ]})
        .to_string(),
    )
    .unwrap();
    let sim = sc.builder().build();
    sc.run(&sim).await.unwrap();
    let (events, rv) = (sim.stats().faults("flood_event"), sim.resource_version());
    // 100/s for 2 s of tokio time, give or take the ticks at either end.
    assert!((190..=202).contains(&events), "{events} flood events");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        (sim.stats().faults("flood_event"), sim.resource_version()),
        (events, rv)
    );
    let bad = json!({"steps": [{"step": {"op": "create_pod", "namespace": "shop", "name": "P"}}]});
    let err = Scenario::from_json(&bad.to_string()).unwrap_err();
    assert!(err.to_string().contains("steps[0].step.name"), "{err}");
}

/// A request as curl would send it: one connection, `Connection: close`.
async fn http_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp))
        .await
        .expect("the response within 30 s")
        .unwrap();
    let text = String::from_utf8(resp).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[tokio::test]
async fn steps_over_tcp_from_a_plain_http_client() {
    let sim = Sim::builder().build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let addr = server.addr();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let steps = json!([
        {"op": "create_pod", "namespace": "shop", "name": "web-1", "labels": {"app": "web"}},
        {"op": "create_pod", "namespace": "shop", "name": "web-2", "labels": {"app": "web"}},
        {"op": "create_service", "namespace": "shop", "name": "db", "selector": {"app": "web"}},
    ]);
    let (code, summary) = http_post(addr, "/_sim/steps", &steps.to_string()).await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["applied"], 3);
    let listed = Api::<Pod>::namespaced(client.clone(), "shop")
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 2);
    Api::<Service>::namespaced(client, "shop")
        .get("db")
        .await
        .unwrap();

    let rv = sim.resource_version();
    let bad = json!([{"op": "delete_pod", "namespace": "shop", "name": "web-1"}, {"op": "relabel_pod", "namespace": "shop", "name": "web-2"}]);
    let (code, status) = http_post(addr, "/_sim/steps", &bad.to_string()).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(cause_fields(&status), ["steps[1].labels"]);
    assert_eq!(sim.resource_version(), rv);

    let flood = json!({"op": "flood", "id": "f", "rate_per_second": 500});
    let (code, summary) = http_post(addr, "/_sim/steps", &flood.to_string()).await;
    assert_eq!(
        (code, summary["floodsStarted"].clone()),
        (200, json!(["f"]))
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().faults("flood_event") < 10 {
        assert!(tokio::time::Instant::now() < deadline, "the flood emits");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = json!({"op": "stop_flood", "id": "f"}).to_string();
    let (code, summary) = http_post(addr, "/_sim/steps", &stop).await;
    assert_eq!(
        (code, summary["floodsStopped"].clone()),
        (200, json!(["f"]))
    );
    let (events, rv) = (sim.stats().faults("flood_event"), sim.resource_version());
    assert_eq!(summary["resourceVersion"], rv.to_string());
    // The stop is synchronous: at 500/s, a 200 ms window would hold ~100 more events.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        (sim.stats().faults("flood_event"), sim.resource_version()),
        (events, rv)
    );
}

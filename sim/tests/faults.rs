//! One test per fault kind: a client observes the fault and the counters agree. In-process, paused clock.

mod common;

use std::time::Duration;

use common::{client, raw, send, types, watch_lines, WatchEnd};
use futures::StreamExt;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use podgrant_sim::{
    CloseMode, CloseWhen, ErrorBody, Fault, FaultPlan, FaultRule, FloodSpec, Sim, Step,
};
use tokio::time::Instant;

fn sim_with_pods(n: usize) -> Sim {
    let sim = Sim::builder().seed(3).build();
    for i in 0..n {
        sim.apply(&Step::create_pod("ns", &format!("p{i}")))
            .unwrap();
    }
    sim
}

fn plan(rule: FaultRule) -> FaultPlan {
    FaultPlan::new(11).rule(rule)
}

fn close(when: CloseWhen, mode: CloseMode) -> Fault {
    Fault::CloseWatch { when, mode }
}

const WATCH: &str = "/api/v1/namespaces/ns/pods?watch=true";

#[tokio::test(start_paused = true)]
async fn close_watch_after_initial_events_clean() {
    let sim = sim_with_pods(3);
    sim.set_faults(plan(
        FaultRule::new(close(CloseWhen::AfterInitialEvents, CloseMode::Clean))
            .resource("pods")
            .verb("watch"),
    ));
    let (lines, end) = watch_lines(
        send(&sim, "GET", WATCH, None, "").await.into_body(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(types(&lines), ["ADDED", "ADDED", "ADDED"]);
    assert_eq!(end, WatchEnd::Clean);
    assert_eq!(sim.stats().faults("close_watch"), 1);
    assert_eq!(sim.stats().requests("watch", "pods"), 1);
    assert_eq!(sim.stats().events_sent, 3);
}

#[tokio::test(start_paused = true)]
async fn close_watch_after_n_events_reset_is_an_error_for_kube_rs() {
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(close(CloseWhen::AfterEvents { n: 2 }, CloseMode::Reset)).verb("watch"),
    ));
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let rv = sim.resource_version().to_string();
    let mut s = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    sim.apply(&Step::set_pod_phase("ns", "p0", "Pending"))
        .unwrap();
    sim.apply(&Step::set_pod_phase("ns", "p0", "Running"))
        .unwrap();
    sim.apply(&Step::set_pod_phase("ns", "p0", "Failed"))
        .unwrap();
    let mut modified = 0;
    let mut errored = false;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(5), s.next()).await {
        match item {
            Ok(WatchEvent::Modified(_)) => modified += 1,
            Err(_) => {
                errored = true;
                break;
            }
            Ok(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(modified, 2);
    assert!(errored, "an abrupt reset must surface as a stream error");
    assert_eq!(sim.stats().faults("close_watch_reset"), 1);
}

#[tokio::test(start_paused = true)]
async fn close_watch_after_duration_makes_watcher_rewatch() {
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(close(
            CloseWhen::AfterDuration {
                after: Duration::from_secs(10),
            },
            CloseMode::Clean,
        ))
        .verb("watch"),
    ));
    let start = Instant::now();
    let (_, end) = watch_lines(
        send(&sim, "GET", WATCH, None, "").await.into_body(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(end, WatchEnd::Clean);
    assert!(
        start.elapsed() >= Duration::from_secs(10),
        "closed too early: {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    // kube-rs' watcher re-watches after each close: one watch per 10 s of (paused) time.
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let mut w = watcher::watcher(pods, watcher::Config::default()).boxed();
    let deadline = Instant::now() + Duration::from_secs(35);
    while Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, w.next()).await;
    }
    let s = sim.stats();
    assert!(s.watch_starts("pods") >= 4, "{s:?}");
    // Every watch but the one still open was closed by the fault.
    assert_eq!(s.faults("close_watch"), s.watch_starts("pods") - 1, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn close_watch_with_probability_one_closes_after_first_event() {
    let sim = sim_with_pods(4);
    sim.set_faults(plan(
        FaultRule::new(close(CloseWhen::Probability { p: 1.0 }, CloseMode::Clean)).verb("watch"),
    ));
    let (lines, end) = watch_lines(
        send(&sim, "GET", WATCH, None, "").await.into_body(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!((lines.len(), end), (1, WatchEnd::Clean));
    assert_eq!(sim.stats().faults("close_watch"), 1);
}

#[tokio::test(start_paused = true)]
async fn expire_in_stream_on_watch_and_410_on_list_continue() {
    let sim = sim_with_pods(5);
    sim.set_faults(plan(
        FaultRule::new(Fault::Expire).resource("pods").times(2),
    ));
    let rv = sim.resource_version();
    let (lines, end) = watch_lines(
        send(
            &sim,
            "GET",
            &format!("{WATCH}&resourceVersion={rv}"),
            None,
            "",
        )
        .await
        .into_body(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(end, WatchEnd::Clean);
    let ev: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["code"].as_u64(),
            ev["object"]["reason"].as_str()
        ),
        (Some("ERROR"), Some(410), Some("Expired"))
    );
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let page = pods.list(&ListParams::default().limit(2)).await.unwrap();
    let err = pods
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410),
        "{err:?}"
    );
    assert_eq!(sim.stats().faults("expire"), 2);
    // The rule is used up: the next continue works.
    assert!(pods
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(page.metadata.continue_.as_deref().unwrap())
        )
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn compact_makes_watcher_relist() {
    let sim = sim_with_pods(2);
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let mut w = watcher::watcher(pods, watcher::Config::default().timeout(5)).boxed();
    while !matches!(
        tokio::time::timeout(Duration::from_secs(30), w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Event::InitDone
    ) {}
    let lists = sim.stats().requests("list", "pods");
    sim.apply(&Step::Compact).unwrap();
    sim.apply(&Step::set_pod_phase("ns", "p0", "Pending"))
        .unwrap();
    sim.apply(&Step::Compact).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.stats().requests("list", "pods") == lists {
        assert!(Instant::now() < deadline, "no relist after compaction");
        let _ = tokio::time::timeout(Duration::from_secs(1), w.next()).await;
    }
    assert_eq!(sim.stats().faults("compact"), 2);
}

#[tokio::test(start_paused = true)]
async fn http_errors_429_500_503_on_a_fraction() {
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(Fault::HttpError {
            code: 429,
            fraction: 1.0,
            retry_after_seconds: Some(7),
            body: ErrorBody::Auto,
        })
        .verb("list")
        .times(1),
    ));
    // A 429 reads as kube-apiserver's priority-and-fairness rejection
    // (apiserver/pkg/server/filters/priority-and-fairness.go → maxinflight.go tooManyRequests):
    // plain text from http.Error, Retry-After, the flow-schema UID headers, no Status.
    let resp = send(&sim, "GET", "/api/v1/namespaces/ns/pods", None, "").await;
    let (parts, body) = resp.into_parts();
    let text = body.collect().await.unwrap().to_bytes();
    assert_eq!(parts.status.as_u16(), 429);
    assert_eq!(&text[..], b"Too many requests, please try again later.\n");
    let h = &parts.headers;
    assert_eq!(h.get("retry-after").unwrap(), "7");
    assert_eq!(h.get("content-type").unwrap(), "text/plain; charset=utf-8");
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert!(h.contains_key("x-kubernetes-pf-flowschema-uid"), "{h:?}");
    assert!(h.contains_key("x-kubernetes-pf-prioritylevel-uid"), "{h:?}");
    // kube-rs turns the text into an API error with the code, as client-go does.
    sim.set_faults(plan(
        FaultRule::new(Fault::HttpError {
            code: 429,
            fraction: 1.0,
            retry_after_seconds: None,
            body: ErrorBody::Auto,
        })
        .verb("get"),
    ));
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let err = pods.get("p0").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 429),
        "{err:?}"
    );
    // The JSON Status 429 a webhook or an aggregated API server sends stays available.
    sim.set_faults(plan(
        FaultRule::new(Fault::HttpError {
            code: 429,
            fraction: 1.0,
            retry_after_seconds: None,
            body: ErrorBody::Status,
        })
        .verb("list"),
    ));
    let (c, h, v) = raw(&sim, "GET", "/api/v1/namespaces/ns/pods", None, "").await;
    assert_eq!((c, v["reason"].as_str()), (429, Some("TooManyRequests")));
    assert_eq!(h.get("retry-after").unwrap(), "1");
    assert_eq!(h.get("content-type").unwrap(), "application/json");
    for code in [500u16, 503] {
        sim.set_faults(plan(
            FaultRule::new(Fault::HttpError {
                code,
                fraction: 1.0,
                retry_after_seconds: None,
                body: ErrorBody::Auto,
            })
            .verb("get"),
        ));
        let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
        let err = pods.get("p0").await.unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == code),
            "{err:?}"
        );
        assert_eq!(sim.stats().faults(&format!("http_{code}")), 1);
    }
    sim.reset_stats();
    sim.set_faults(plan(
        FaultRule::new(Fault::HttpError {
            code: 503,
            fraction: 0.3,
            retry_after_seconds: None,
            body: ErrorBody::Auto,
        })
        .verb("get"),
    ));
    let mut failed = 0;
    for _ in 0..200 {
        let (c, _, _) = raw(&sim, "GET", "/api/v1/namespaces/ns/pods/p0", None, "").await;
        if c == 503 {
            failed += 1;
        }
    }
    assert!(
        (30..=90).contains(&failed),
        "fraction 0.3 of 200 gave {failed}"
    );
    assert_eq!(sim.stats().faults("http_503"), failed);
    assert_eq!(sim.stats().requests("get", "pods"), 200);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_answers_in_tokio_time() {
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(Fault::Latency {
            delay: Duration::from_millis(1500),
        })
        .verb("get"),
    ));
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let start = Instant::now();
    pods.get("p0").await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert_eq!(sim.stats().faults("latency"), 1);
}

#[tokio::test(start_paused = true)]
async fn stall_with_and_without_headers() {
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(Fault::Stall {
            headers: true,
            duration: None,
        })
        .verb("watch"),
    ));
    let resp = send(&sim, "GET", WATCH, None, "").await;
    assert_eq!(resp.status(), 200);
    let (lines, end) = watch_lines(resp.into_body(), Duration::from_secs(120)).await;
    assert_eq!((lines.len(), end), (0, WatchEnd::StillOpen));
    sim.set_faults(plan(
        FaultRule::new(Fault::Stall {
            headers: false,
            duration: None,
        })
        .verb("get"),
    ));
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    assert!(
        tokio::time::timeout(Duration::from_secs(120), pods.get("p0"))
            .await
            .is_err(),
        "a stall without headers never answers"
    );
    // Bounded stalls end by dropping the connection: an error for the client, not an answer.
    sim.set_faults(plan(
        FaultRule::new(Fault::Stall {
            headers: false,
            duration: Some(Duration::from_secs(5)),
        })
        .verb("get"),
    ));
    let start = Instant::now();
    assert!(
        tokio::time::timeout(Duration::from_secs(60), pods.get("p0"))
            .await
            .expect("ends after 5s")
            .is_err()
    );
    assert!(start.elapsed() >= Duration::from_secs(5));
    sim.set_faults(plan(
        FaultRule::new(Fault::Stall {
            headers: true,
            duration: Some(Duration::from_secs(5)),
        })
        .verb("watch"),
    ));
    let (lines, end) = watch_lines(
        send(&sim, "GET", WATCH, None, "").await.into_body(),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!((lines.len(), end), (0, WatchEnd::Reset));
    assert_eq!(sim.stats().faults("stall"), 4);
}

#[tokio::test]
async fn stall_without_headers_over_tcp_sends_nothing_then_drops() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(Fault::Stall {
            headers: false,
            duration: Some(Duration::from_millis(300)),
        })
        .verb("list"),
    ));
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    conn.write_all(b"GET /api/v1/pods HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut out))
        .await
        .expect("connection dropped");
    assert!(
        out.is_empty(),
        "no response bytes: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(sim.stats().faults("stall"), 1);
}

#[tokio::test(start_paused = true)]
async fn chaos_duplicate_redelivery() {
    let sim = sim_with_pods(2);
    sim.set_faults(plan(
        FaultRule::new(Fault::Duplicate { p: 1.0 }).verb("watch"),
    ));
    let (lines, _) = watch_lines(
        send(&sim, "GET", WATCH, None, "").await.into_body(),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], lines[1]);
    assert_eq!(sim.stats().faults("duplicate"), 2);
}

#[tokio::test(start_paused = true)]
async fn chaos_malformed_line_is_a_decode_error_for_kube_rs() {
    let sim = sim_with_pods(1);
    sim.set_faults(plan(
        FaultRule::new(Fault::MalformedLine { p: 1.0 }).verb("watch"),
    ));
    let pods: Api<Pod> = Api::namespaced(client(&sim), "ns");
    let mut s = pods
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let mut saw_error = false;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(2), s.next()).await {
        if item.is_err() {
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
    assert_eq!(sim.stats().faults("malformed_line"), 1);
}

#[tokio::test(start_paused = true)]
async fn flood_burst_and_rate_reach_a_watcher() {
    let sim = sim_with_pods(3);
    let rv = sim.resource_version();
    let resp = send(
        &sim,
        "GET",
        &format!("{WATCH}&resourceVersion={rv}"),
        None,
        "",
    )
    .await;
    let h = sim.flood(FloodSpec::burst("ns", 50));
    assert_eq!(h.sent(), 50);
    let (lines, _) = watch_lines(resp.into_body(), Duration::from_secs(1)).await;
    assert_eq!(
        types(&lines).iter().filter(|t| *t == "MODIFIED").count(),
        50
    );
    let h = sim.flood(FloodSpec::rate("ns", 100.0).for_duration(Duration::from_secs(2)));
    h.finished().await;
    let s = sim.stats();
    assert!(
        (199..=201).contains(&(s.faults("flood_event") - 50)),
        "{s:?}"
    );
    // The same through a scenario step.
    sim.apply(&Step::Flood(FloodSpec::burst("ns", 5))).unwrap();
    assert_eq!(
        sim.stats().faults("flood_event"),
        s.faults("flood_event") + 5
    );
}

/// Waits (bounded, in simulated time) until the sim has sent `n` watch events.
async fn until_events_sent(sim: &Sim, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.stats().events_sent < n {
        assert!(Instant::now() < deadline, "{n} events never sent");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A plan set with `apply_to_open_watches` reaches a watch opened before it: the watch ends as
/// the fault says, and the fault is counted as dealt to an open watch. (Before the option
/// existed, a plan applied to new requests only and these watches stayed open.)
#[tokio::test(start_paused = true)]
async fn a_plan_for_open_watches_ends_a_watch_opened_before_it() {
    let table: [(Fault, &[&str], WatchEnd, &str); 4] = [
        (
            Fault::Expire,
            &["ADDED", "ADDED", "ERROR"],
            WatchEnd::Clean,
            "expire",
        ),
        (
            Fault::HttpError {
                code: 500,
                fraction: 1.0,
                retry_after_seconds: None,
                body: ErrorBody::Auto,
            },
            &["ADDED", "ADDED", "ERROR"],
            WatchEnd::Clean,
            "http_500",
        ),
        (
            close(CloseWhen::AfterInitialEvents, CloseMode::Reset),
            &["ADDED", "ADDED"],
            WatchEnd::Reset,
            "close_watch_reset",
        ),
        (
            Fault::Stall {
                headers: true,
                duration: Some(Duration::from_secs(5)),
            },
            &["ADDED", "ADDED"],
            WatchEnd::Reset,
            "stall",
        ),
    ];
    for (fault, want_types, want_end, kind) in table {
        let sim = sim_with_pods(2);
        let body = send(&sim, "GET", WATCH, None, "").await.into_body();
        let reader = tokio::spawn(watch_lines(body, Duration::from_secs(60)));
        until_events_sent(&sim, 2).await;
        sim.set_faults(
            plan(FaultRule::new(fault).resource("pods").verb("watch")).to_open_watches(),
        );
        let (lines, end) = reader.await.unwrap();
        assert_eq!(types(&lines), want_types, "{kind}");
        assert_eq!(end, want_end, "{kind}");
        if kind == "expire" {
            let err: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
            assert_eq!(err["object"]["code"], 410, "{err}");
        }
        let s = sim.stats();
        assert_eq!(s.open_watch_faults(kind), 1, "{kind}: {s:?}");
        assert_eq!(s.watch_faults(kind), 1, "{kind}: {s:?}");
        assert_eq!(
            s.requests("watch", "pods"),
            1,
            "{kind}: no new watch was needed"
        );
    }
}

/// Without the option, and for a plan whose rules do not match the watch, an open watch keeps
/// streaming: plan changes reach open watches only when asked to.
#[tokio::test(start_paused = true)]
async fn a_plan_without_the_open_watch_option_or_not_matching_leaves_open_watches_alone() {
    for p in [
        plan(FaultRule::new(Fault::Expire).verb("watch")),
        plan(FaultRule::new(Fault::Expire).resource("services")).to_open_watches(),
    ] {
        let sim = sim_with_pods(1);
        let body = send(&sim, "GET", WATCH, None, "").await.into_body();
        let reader = tokio::spawn(watch_lines(body, Duration::from_secs(30)));
        until_events_sent(&sim, 1).await;
        sim.set_faults(p.clone());
        sim.apply(&Step::create_pod("ns", "late")).unwrap();
        let (lines, end) = reader.await.unwrap();
        assert_eq!(types(&lines), ["ADDED", "ADDED"], "{p:?}");
        assert_eq!(end, WatchEnd::StillOpen, "{p:?}");
        assert_eq!(sim.stats().total_faults(), 0, "{p:?}");
    }
}

/// Chaos re-armed on an open watch applies to the events that follow, counted as open-watch faults.
#[tokio::test(start_paused = true)]
async fn chaos_rearmed_on_an_open_watch_duplicates_the_next_event() {
    let sim = sim_with_pods(1);
    let body = send(&sim, "GET", WATCH, None, "").await.into_body();
    let reader = tokio::spawn(watch_lines(body, Duration::from_secs(30)));
    until_events_sent(&sim, 1).await;
    sim.set_faults(
        plan(FaultRule::new(Fault::Duplicate { p: 1.0 }).verb("watch")).to_open_watches(),
    );
    sim.apply(&Step::create_pod("ns", "late")).unwrap();
    let (lines, _) = reader.await.unwrap();
    assert_eq!(types(&lines), ["ADDED", "ADDED", "ADDED"]);
    assert_eq!(lines[1], lines[2]);
    assert_eq!(sim.stats().open_watch_faults("duplicate"), 1);
}

/// The server's watch timeout caps a client's longer `timeoutSeconds`; a shorter one wins.
#[tokio::test(start_paused = true)]
async fn server_watch_timeout_caps_the_clients_timeout() {
    for (client_timeout, want) in [(Some(290), 5), (Some(2), 2), (None, 5)] {
        let sim = Sim::builder().watch_timeout(Duration::from_secs(5)).build();
        let uri = match client_timeout {
            Some(t) => format!("{WATCH}&timeoutSeconds={t}"),
            None => WATCH.to_string(),
        };
        let t0 = Instant::now();
        let (_, end) = watch_lines(
            send(&sim, "GET", &uri, None, "").await.into_body(),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(end, WatchEnd::Clean, "{client_timeout:?}");
        assert_eq!(t0.elapsed().as_secs(), want, "{client_timeout:?}");
    }
}

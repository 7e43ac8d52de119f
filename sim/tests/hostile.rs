//! Hostile requests get a Status (or a closed connection), never a crash, a spin, a hang or unbounded memory.

mod common;

use std::time::Duration;

use common::{raw, send};
use http_body_util::BodyExt;
use podgrant_sim::server::{ServerLimits, SimServer};
use podgrant_sim::{CloseWhen, Fault, FaultPlan, FaultRule, Sim};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JSON: Option<&str> = Some("application/json");
const JSON_PATCH: Option<&str> = Some("application/json-patch+json");
const MERGE_PATCH: Option<&str> = Some("application/merge-patch+json");

fn assert_status(code: u16, v: &Value, want: u16, reason: &str) {
    assert_eq!(code, want, "{v}");
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["code"], want, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
}

async fn secret(sim: &Sim, name: &str, data: Value) -> Value {
    let body = json!({"metadata": {"name": name}, "data": data}).to_string();
    let (c, _, v) = raw(
        sim,
        "POST",
        "/api/v1/namespaces/default/secrets",
        JSON,
        body,
    )
    .await;
    assert_eq!(c, 201, "{v}");
    v
}

// (1) Patch amplification.

#[tokio::test(start_paused = true)]
async fn a_doubling_json_patch_is_refused_and_changes_nothing() {
    let sim = Sim::builder().build();
    let before = secret(&sim, "cm", json!({"d": "x".repeat(1024)})).await;
    let uri = "/api/v1/namespaces/default/secrets/cm";
    // About 1 KB of patch that would double a 1 KiB value 20 times (1 GiB).
    let ops: Vec<Value> = (0..20)
        .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
        .collect();
    let (c, _, v) = raw(&sim, "PATCH", uri, JSON_PATCH, Value::from(ops).to_string()).await;
    assert_status(c, &v, 422, "Invalid");
    let (c, _, after) = raw(&sim, "GET", uri, None, "").await;
    assert_eq!(c, 200);
    assert_eq!(after, before, "a refused patch stores nothing");
    // More operations than kube-apiserver allows: 413.
    let ops = vec![json!({"op": "test", "path": "/data/d", "value": "x"}); 10_001];
    let (c, _, v) = raw(&sim, "PATCH", uri, JSON_PATCH, Value::from(ops).to_string()).await;
    assert_status(c, &v, 413, "RequestEntityTooLarge");
    // A merge patch that would store more than the 1.5 MiB object limit: 422 naming the limit.
    let big = json!({"data": {"big": "y".repeat(1_600_000)}}).to_string();
    let (c, _, v) = raw(&sim, "PATCH", uri, MERGE_PATCH, big.clone()).await;
    assert_status(c, &v, 422, "Invalid");
    assert!(v["message"].as_str().unwrap().contains("1572864"), "{v}");
    // And a create that large, too.
    let create = json!({"metadata": {"name": "big"}, "data": {"big": "y".repeat(1_600_000)}});
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/secrets",
        JSON,
        create.to_string(),
    )
    .await;
    assert_status(c, &v, 422, "Invalid");
    // A body over the 3 MiB request limit: 413.
    let huge = json!({"data": {"big": "y".repeat(3 * 1024 * 1024)}}).to_string();
    let (c, _, v) = raw(&sim, "PATCH", uri, MERGE_PATCH, huge).await;
    assert_status(c, &v, 413, "RequestEntityTooLarge");
    assert_eq!(sim.get("secrets", Some("default"), "cm").unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_applied_outside_the_lock_lose_no_update() {
    let sim = Sim::builder().build();
    secret(&sim, "cm", json!({})).await;
    let n = 24;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let sim = sim.clone();
            tokio::spawn(async move {
                let body = json!({"metadata": {"labels": {format!("l{i}"): "v"}}}).to_string();
                raw(
                    &sim,
                    "PATCH",
                    "/api/v1/namespaces/default/secrets/cm",
                    MERGE_PATCH,
                    body,
                )
                .await
                .0
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    // Each patch either committed on an unchanged object or retried; a 409 after the bounded
    // retries is allowed, a silently lost update is not.
    let ok = codes.iter().filter(|c| **c == 200).count();
    assert!(codes.iter().all(|c| *c == 200 || *c == 409), "{codes:?}");
    let labels = sim.get("secrets", Some("default"), "cm").unwrap()["metadata"]["labels"].clone();
    assert_eq!(
        labels.as_object().map_or(0, |m| m.len()),
        ok,
        "{labels} {codes:?}"
    );
}

// (3) Slow and never-ending clients over TCP.

async fn serve(sim: &Sim, limits: ServerLimits) -> SimServer {
    SimServer::start_with(sim, ([127, 0, 0, 1], 0).into(), limits)
        .await
        .unwrap()
}

fn short() -> ServerLimits {
    ServerLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        max_connections: 1024,
        ..ServerLimits::default()
    }
}

/// Read until the server closes the connection (EOF or reset); panics after `deadline`.
async fn read_until_closed(conn: &mut TcpStream, deadline: Duration) -> String {
    let mut out = Vec::new();
    let r = tokio::time::timeout(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "connection still open after {deadline:?}: {:?}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

async fn get_version(addr: std::net::SocketAddr) -> String {
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    read_until_closed(&mut c, Duration::from_secs(30)).await
}

#[tokio::test]
async fn slowloris_connections_are_closed_after_the_header_timeout_while_others_are_served() {
    let sim = Sim::builder().build();
    let server = serve(&sim, short()).await;
    // A watch that is open before and after: long responses are not subject to the header timeout.
    let mut watch = TcpStream::connect(server.addr()).await.unwrap();
    watch
        .write_all(b"GET /api/v1/namespaces/default/secrets?watch=true HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        c.write_all(b"GET /api/v1/pods HTTP/1.1\r\nhost: x\r\nx-half: ")
            .await
            .unwrap();
        slow.push(c);
    }
    let ok = get_version(server.addr()).await;
    assert!(
        ok.starts_with("HTTP/1.1 200 OK") && ok.contains("gitVersion"),
        "{ok}"
    );
    for c in &mut slow {
        let out = read_until_closed(c, Duration::from_secs(30)).await;
        assert!(!out.contains("200 OK"), "{out}");
    }
    // An idle keep-alive connection is closed the same way after its request.
    let mut idle = TcpStream::connect(server.addr()).await.unwrap();
    idle.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let out = read_until_closed(&mut idle, Duration::from_secs(30)).await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    // The watch outlived all of that and still delivers.
    secret(&sim, "after", json!({})).await;
    let mut seen = Vec::new();
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("\"after\"") {
            let n = watch.read(&mut buf).await.unwrap();
            assert!(n > 0, "watch closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(got.is_ok(), "{}", String::from_utf8_lossy(&seen));
}

#[tokio::test]
async fn a_never_ending_chunked_body_gets_408_and_the_connection_closes() {
    let sim = Sim::builder().build();
    let server = serve(&sim, short()).await;
    let mut c = TcpStream::connect(server.addr()).await.unwrap();
    c.write_all(b"POST /api/v1/namespaces/default/secrets HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n1\r\n{\r\n")
        .await
        .unwrap();
    let out = read_until_closed(&mut c, Duration::from_secs(30)).await;
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(out.contains("\"reason\":\"Timeout\""), "{out}");
    assert!(sim.list("secrets", Some("default")).is_empty());
}

#[tokio::test]
async fn connections_over_the_cap_get_a_503_status_and_are_closed() {
    let sim = Sim::builder().build();
    let limits = ServerLimits {
        max_connections: 2,
        ..ServerLimits::default()
    };
    let server = serve(&sim, limits).await;
    // Two connections that each finished a request hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(server.addr()).await.unwrap();
        c.write_all(b"GET /version HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(30), c.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    let out = get_version(server.addr()).await;
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(out.contains("ServiceUnavailable"), "{out}");
    // Freeing a slot lets the next client in (the slot returns once the server sees the close).
    drop(held.pop());
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let out = get_version(server.addr()).await;
            if out.starts_with("HTTP/1.1 200 OK") {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(served.is_ok());
}

// (4) Durations from requests and plans never overflow.

#[tokio::test(start_paused = true)]
async fn huge_timeouts_and_durations_are_clamped_not_panics() {
    let sim = Sim::builder().build();
    let resp = send(
        &sim,
        "GET",
        "/api/v1/namespaces/default/secrets?watch=true&timeoutSeconds=9223372036854775807",
        None,
        "",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    secret(&sim, "a", json!({})).await;
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    assert!(matches!(frame, Ok(Some(Ok(_)))), "the watch delivers");
    let (c, _, v) = raw(
        &sim,
        "GET",
        "/api/v1/secrets?watch=true&timeoutSeconds=99999999999999999999",
        None,
        "",
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    // A plan set through the Rust API, never validated: durations are clamped at use.
    let forever = Duration::from_secs(500_000_000_000 * 365 * 24 * 3600);
    sim.set_faults(
        FaultPlan::new(1)
            .rule(
                FaultRule::new(Fault::CloseWatch {
                    when: CloseWhen::AfterDuration { after: forever },
                    mode: Default::default(),
                })
                .verb("watch"),
            )
            .rule(FaultRule::new(Fault::Latency { delay: forever }).verb("watch"))
            .rule(FaultRule::new(Fault::Latency { delay: forever }).verb("watch")),
    );
    let watch = tokio::spawn({
        let sim = sim.clone();
        async move {
            send(
                &sim,
                "GET",
                "/api/v1/namespaces/default/secrets?watch=true",
                None,
                "",
            )
            .await
        }
    });
    // A day of simulated latency later (the clamp), the watch is answered.
    tokio::time::sleep(Duration::from_secs(24 * 3600 + 1)).await;
    let resp = watch.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the initial ADDED arrives"
    );
}

// (5) Fault plans with values the server cannot act on.

#[tokio::test(start_paused = true)]
async fn bad_fault_plans_are_refused_whole_naming_the_field() {
    let sim = Sim::builder().build();
    let good = r#"{"seed":3,"rules":[{"fault":{"kind":"latency","delay":"1ms"}}]}"#;
    let (c, _, _) = raw(&sim, "PUT", "/_sim/faults", JSON, good).await;
    assert_eq!(c, 200);
    for (plan, field) in [
        (
            r#"{"rules":[{"verb":"watch","fault":{"kind":"duplicate","p":7.5}}]}"#,
            "rules[0].fault.p",
        ),
        (
            r#"{"rules":[{"fault":{"kind":"http_error","code":299}}]}"#,
            "rules[0].fault.code",
        ),
        (
            r#"{"rules":[{"fault":{"kind":"http_error","code":503,"fraction":-0.25}}]}"#,
            "rules[0].fault.fraction",
        ),
        (
            r#"{"rules":[{"fault":{"kind":"latency","delay":"1s"}},{"fault":{"kind":"stall","duration":"500000000000years"}}]}"#,
            "rules[1].fault.duration",
        ),
        (
            r#"{"rules":[{"fault":{"kind":"close_watch","when":{"type":"after_duration","after":"500000000000years"}}}]}"#,
            "rules[0].fault.when.after",
        ),
    ] {
        let (c, _, v) = raw(&sim, "PUT", "/_sim/faults", JSON, plan).await;
        assert_status(c, &v, 400, "BadRequest");
        assert!(
            v["message"].as_str().unwrap().contains(field),
            "{field}: {v}"
        );
    }
    let (_, _, armed) = raw(&sim, "GET", "/_sim/faults", None, "").await;
    assert_eq!(
        armed["seed"], 3,
        "nothing of a refused plan is applied: {armed}"
    );
}

// (6) Names, labels and path segments.

#[tokio::test(start_paused = true)]
async fn invalid_names_and_labels_are_422_with_causes_and_paths_are_percent_decoded() {
    let sim = Sim::builder().build();
    let post = |uri: &'static str, body: Value| {
        let sim = sim.clone();
        async move { raw(&sim, "POST", uri, JSON, body.to_string()).await }
    };
    let cms = "/api/v1/namespaces/default/secrets";
    let cases = [
        (cms, json!({"metadata": {"name": "a..b"}}), "metadata.name"),
        (cms, json!({"metadata": {"name": "Upper"}}), "metadata.name"),
        (
            cms,
            json!({"metadata": {"name": "ok", "labels": {"k": "a\u{0}b"}}}),
            "metadata.labels",
        ),
        (
            cms,
            json!({"metadata": {"name": "ok", "labels": {"k": "v".repeat(64)}}}),
            "metadata.labels",
        ),
        (
            cms,
            json!({"metadata": {"name": "ok", "labels": {"bad key": "v"}}}),
            "metadata.labels",
        ),
        (
            "/api/v1/namespaces",
            json!({"metadata": {"name": "a.b"}}),
            "metadata.name",
        ),
        (
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "a".repeat(64)}}),
            "metadata.name",
        ),
    ];
    for (uri, body, field) in cases {
        let (c, _, v) = post(uri, body.clone()).await;
        assert_status(c, &v, 422, "Invalid");
        assert_eq!(v["details"]["causes"][0]["field"], field, "{body}: {v}");
    }
    assert!(sim.list("secrets", Some("default")).is_empty());
    // A patch cannot sneak a bad label in either.
    secret(&sim, "cm", json!({})).await;
    let (c, _, v) = raw(
        &sim,
        "PATCH",
        "/api/v1/namespaces/default/secrets/cm",
        MERGE_PATCH,
        json!({"metadata": {"labels": {"k": "-v"}}}).to_string(),
    )
    .await;
    assert_status(c, &v, 422, "Invalid");
    // Percent-encoded path segments are decoded like upstream.
    let (c, _, v) = post("/api/v1/namespaces", json!({"metadata": {"name": "a-b"}})).await;
    assert_eq!(c, 201, "{v}");
    let (c, _, v) = post(
        "/api/v1/namespaces/a%2Db/secrets",
        json!({"metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(
        (c, v["metadata"]["namespace"].as_str()),
        (201, Some("a-b")),
        "{v}"
    );
    let (c, _, v) = raw(
        &sim,
        "GET",
        "/api/v1/namespaces/a%2db/secrets/%78",
        None,
        "",
    )
    .await;
    assert_eq!((c, v["metadata"]["name"].as_str()), (200, Some("x")), "{v}");
    let (c, _, v) = raw(&sim, "GET", "/api/v1/namespaces/a%2Fb/secrets", None, "").await;
    assert_status(c, &v, 404, "NotFound");
    let (c, _, v) = raw(&sim, "GET", "/api/v1/namespaces/a%zz/secrets", None, "").await;
    assert_status(c, &v, 400, "BadRequest");
}

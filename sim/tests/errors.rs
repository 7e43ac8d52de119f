//! Bad requests get a metav1.Status with the real code, never a panic, hang or dropped connection.

mod common;

use common::raw;
use podgrant_sim::Sim;
use serde_json::json;

fn assert_status(code: u16, v: &serde_json::Value, want: u16, reason: &str) {
    assert_eq!(code, want, "{v}");
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["code"], want, "{v}");
    assert_eq!(v["reason"], reason, "{v}");
    assert_eq!(v["status"], "Failure");
}

#[tokio::test(start_paused = true)]
async fn bad_requests_get_status_objects() {
    let sim = Sim::builder().max_body(1024).build();
    let (c, _, v) = raw(&sim, "GET", "/api/v1/namespaces/default/widgets", None, "").await;
    assert_status(c, &v, 404, "NotFound");
    let (c, _, v) = raw(&sim, "GET", "/apis/nope.example.com/v1/things", None, "").await;
    assert_status(c, &v, 404, "NotFound");
    let (c, _, v) = raw(
        &sim,
        "GET",
        "/api/v1/pods?labelSelector=app%20in%20(a",
        None,
        "",
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    let (c, _, v) = raw(
        &sim,
        "GET",
        "/api/v1/pods?fieldSelector=spec.bogus%3D1",
        None,
        "",
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        "{not json",
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    let (c, _, v) = raw(&sim, "GET", "/api/v1/pods?resourceVersion=abc", None, "").await;
    assert_status(c, &v, 400, "BadRequest");
    let (c, _, v) = raw(
        &sim,
        "GET",
        "/api/v1/pods?watch=true&resourceVersion=12x",
        None,
        "",
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    let (c, _, v) = raw(&sim, "GET", "/api/v1/pods?limit=-5", None, "").await;
    assert_status(c, &v, 400, "BadRequest");
    let (c, _, v) = raw(
        &sim,
        "GET",
        "/api/v1/pods?limit=2&continue=garbage",
        None,
        "",
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    let big = format!(
        r#"{{"metadata":{{"name":"big","annotations":{{"a":"{}"}}}}}}"#,
        "x".repeat(4096)
    );
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        big,
    )
    .await;
    assert_status(c, &v, 413, "RequestEntityTooLarge");
    let (c, _, v) = raw(
        &sim,
        "PUT",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        "{}",
    )
    .await;
    assert_status(c, &v, 405, "MethodNotAllowed");
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/yaml"),
        "a: b",
    )
    .await;
    assert_status(c, &v, 415, "UnsupportedMediaType");
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        r#"{"metadata":{"name":"Not_Valid"}}"#,
    )
    .await;
    assert_status(c, &v, 422, "Invalid");
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/missing/pods",
        Some("application/json"),
        r#"{"metadata":{"name":"p"}}"#,
    )
    .await;
    assert_status(c, &v, 404, "NotFound");
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        r#"{"metadata":{"name":"p"}}"#,
    )
    .await;
    assert_eq!(c, 201, "{v}");
    let (c, _, v) = raw(
        &sim,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some("application/json"),
        r#"{"metadata":{"name":"p"}}"#,
    )
    .await;
    assert_status(c, &v, 409, "AlreadyExists");
    let (c, _, v) = raw(
        &sim,
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        Some("application/apply-patch+yaml"),
        "x: y",
    )
    .await;
    // Server-side apply without a fieldManager (fieldmanager: "is required for apply patch").
    assert_status(c, &v, 422, "Invalid");
    let (c, _, v) = raw(
        &sim,
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        Some("application/yaml"),
        "x: y",
    )
    .await;
    assert_status(c, &v, 415, "UnsupportedMediaType");
    let (c, _, v) = raw(
        &sim,
        "PATCH",
        "/api/v1/namespaces/default/pods/p",
        Some("application/json-patch+json"),
        r#"[{"op":"test","path":"/metadata/name","value":"q"}]"#,
    )
    .await;
    assert_status(c, &v, 422, "Invalid");
    let (c, _, v) = raw(
        &sim,
        "PUT",
        "/api/v1/namespaces/default/pods/p",
        Some("application/json"),
        json!({"metadata": {"name": "p", "resourceVersion": "1"}}).to_string(),
    )
    .await;
    assert_status(c, &v, 409, "Conflict");
    let (c, _, v) = raw(
        &sim,
        "PUT",
        "/api/v1/namespaces/default/pods/other",
        Some("application/json"),
        json!({"metadata": {"name": "p"}}).to_string(),
    )
    .await;
    assert_status(c, &v, 400, "BadRequest");
    // The server is still fine afterwards.
    let (c, _, v) = raw(&sim, "GET", "/api/v1/namespaces/default/pods/p", None, "").await;
    assert_eq!(c, 200);
    assert_eq!(v["metadata"]["name"], "p");
    assert!(sim.stats().unrouted >= 2);
}

#[tokio::test]
async fn bad_requests_over_tcp_keep_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = Sim::builder().build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let mut conn = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let req = "GET /api/v1/pods?limit=-1 HTTP/1.1\r\nhost: x\r\n\r\nGET /api/v1/pods?labelSelector=%3D HTTP/1.1\r\nhost: x\r\n\r\nGET /version HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        conn.read_to_string(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.matches("HTTP/1.1 400 Bad Request").count(), 2, "{out}");
    assert!(
        out.contains("HTTP/1.1 200 OK") && out.contains("gitVersion"),
        "{out}"
    );
}

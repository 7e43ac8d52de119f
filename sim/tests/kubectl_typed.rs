//! kubectl's typed commands (`create namespace/secret/configmap/serviceaccount/deployment`, `run`, `expose`, `scale`) over HTTPS with the written kubeconfig: they send protobuf bodies and accept protobuf, and the stored objects have their fields.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use http_body_util::{BodyExt, Full};
use podgrant_sim::{Sim, SimServer};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Env {
    sim: Sim,
    _server: SimServer,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

async fn env() -> Env {
    let sim = Sim::builder().seed(11).build();
    let server = SimServer::start_https_with(
        &sim,
        ([127, 0, 0, 1], 0).into(),
        podgrant_sim::ServerLimits::default(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    Env {
        sim,
        _server: server,
        _dir: dir,
        kubeconfig,
    }
}

async fn kubectl_ok(kc: &Path, args: &[&str]) -> (String, String) {
    let (ok, out, err) = common::run_kubectl(kc, args).await;
    assert!(ok, "kubectl {args:?} failed: {err}");
    (out, err)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `kubectl create namespace` sends a protobuf body and reads the protobuf answer (its `-v=8`
/// log shows both Content-Types); the stored Namespace has what the server sets and none of
/// the zero fields Go's protobuf writes for an unset field.
#[tokio::test]
async fn create_namespace_speaks_protobuf_both_ways() {
    let e = env().await;
    let (out, log) = kubectl_ok(&e.kubeconfig, &["create", "namespace", "shop", "-v=8"]).await;
    assert_eq!(out.trim(), "namespace/shop created");
    let header = |line: &str, ct: &str| line.contains("Content-Type") && line.contains(ct);
    let proto_headers = log
        .lines()
        .filter(|l| header(l, "application/vnd.kubernetes.protobuf"))
        .count();
    // One on the request, one on the response.
    assert!(proto_headers >= 2, "kubectl did not speak protobuf:\n{log}");
    let ns = e.sim.get("namespaces", None, "shop").unwrap();
    assert_eq!(ns["metadata"]["name"], "shop");
    assert!(ns["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    assert!(ns["metadata"]["creationTimestamp"].as_str().is_some());
    for zero in ["generateName", "generation", "selfLink", "namespace"] {
        assert!(ns["metadata"].get(zero).is_none(), "{zero}: {ns}");
    }
    // Read back through kubectl's own JSON path too.
    let (out, _) = kubectl_ok(&e.kubeconfig, &["get", "namespace", "shop", "-o", "json"]).await;
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(got["metadata"]["uid"], ns["metadata"]["uid"]);
}

#[tokio::test]
async fn create_secret_configmap_and_serviceaccount_store_their_data() {
    let e = env().await;
    let kc = &e.kubeconfig;
    kubectl_ok(kc, &["create", "namespace", "shop"]).await;
    let (out, _) = kubectl_ok(
        kc,
        &[
            "create",
            "secret",
            "generic",
            "db",
            "-n",
            "shop",
            "--from-literal=user=orders",
            "--from-literal=password=p@ss w0rd:é",
        ],
    )
    .await;
    assert_eq!(out.trim(), "secret/db created");
    let s = e.sim.get("secrets", Some("shop"), "db").unwrap();
    assert_eq!(s["type"], "Opaque");
    assert_eq!(
        s["data"],
        json!({"user": b64("orders"), "password": b64("p@ss w0rd:é")})
    );
    kubectl_ok(
        kc,
        &[
            "create",
            "configmap",
            "cfg",
            "-n",
            "shop",
            "--from-literal=mode=fast",
            "--from-literal=empty=",
        ],
    )
    .await;
    let cm = e.sim.get("configmaps", Some("shop"), "cfg").unwrap();
    assert_eq!(cm["data"], json!({"mode": "fast", "empty": ""}));
    kubectl_ok(kc, &["create", "serviceaccount", "robot", "-n", "shop"]).await;
    let sa = e.sim.get("serviceaccounts", Some("shop"), "robot").unwrap();
    assert_eq!(sa["metadata"]["namespace"], "shop");
    // And kubectl reads them back (JSON, through its unstructured path).
    let (out, _) = kubectl_ok(
        kc,
        &[
            "get",
            "secret",
            "db",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.password}",
        ],
    )
    .await;
    assert_eq!(out, b64("p@ss w0rd:é"));
}

/// A deployment made, exposed and scaled (to 5, then to 0: a zero that must not read as
/// unset), a pod run and exposed: ports, replicas, selectors and target ports as asked.
#[tokio::test]
async fn create_deployment_run_expose_and_scale() {
    let e = env().await;
    let kc = &e.kubeconfig;
    kubectl_ok(kc, &["create", "namespace", "shop"]).await;
    let (out, _) = kubectl_ok(
        kc,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "shop",
            "--image=nginx:1.27",
            "--replicas=3",
            "--port=8080",
        ],
    )
    .await;
    assert_eq!(out.trim(), "deployment.apps/web created");
    let d = e.sim.get("deployments", Some("shop"), "web").unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"], json!({"app": "web"}));
    // Go sends the unset strategy as `{}`; the server defaults it as upstream does.
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"][0]["containerPort"], 8080);

    let (out, _) = kubectl_ok(
        kc,
        &[
            "expose",
            "deployment",
            "web",
            "-n",
            "shop",
            "--port=80",
            "--target-port=8080",
        ],
    )
    .await;
    assert_eq!(out.trim(), "service/web exposed");
    let svc = e.sim.get("services", Some("shop"), "web").unwrap();
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    let (out, _) = kubectl_ok(
        kc,
        &[
            "run",
            "probe",
            "-n",
            "shop",
            "--image=busybox",
            "--port=9000",
            "--labels=app=probe,tier=test",
        ],
    )
    .await;
    assert_eq!(out.trim(), "pod/probe created");
    let pod = e.sim.get("pods", Some("shop"), "probe").unwrap();
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app": "probe", "tier": "test"})
    );
    assert_eq!(
        pod["spec"]["containers"][0]["ports"][0]["containerPort"],
        9000
    );
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox");
    kubectl_ok(
        kc,
        &[
            "expose",
            "pod",
            "probe",
            "-n",
            "shop",
            "--name=probe-svc",
            "--port=90",
            "--target-port=9000",
        ],
    )
    .await;
    let svc = e.sim.get("services", Some("shop"), "probe-svc").unwrap();
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app": "probe", "tier": "test"})
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 9000);

    for n in [5, 0] {
        let (out, _) = kubectl_ok(
            kc,
            &[
                "scale",
                "deployment",
                "web",
                "-n",
                "shop",
                &format!("--replicas={n}"),
            ],
        )
        .await;
        assert_eq!(out.trim(), "deployment.apps/web scaled");
        let d = e.sim.get("deployments", Some("shop"), "web").unwrap();
        assert_eq!(d["spec"]["replicas"], n);
    }
}

async fn request(
    sim: &Sim,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sim
        .service()
        .oneshot(req.body(Full::new(bytes::Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("body completes")
        .unwrap()
        .to_bytes();
    (parts.status.as_u16(), parts.headers, bytes.to_vec())
}

const PROTO: &str = "application/vnd.kubernetes.protobuf";

/// Responses negotiate: protobuf when Accept prefers it (lists too), JSON by default and for
/// Table requests; a malformed protobuf body is a 400 Status, an unknown type 415.
#[tokio::test]
async fn negotiation_lists_tables_and_bad_bodies() {
    let e = env().await;
    let sim = &e.sim;
    sim.create("namespaces", None, json!({"metadata": {"name": "shop"}}))
        .unwrap();
    sim.create(
        "pods",
        Some("shop"),
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    let uri = "/api/v1/namespaces/shop/pods";
    let (code, h, body) = request(
        sim,
        "GET",
        uri,
        &[(
            "accept",
            "application/vnd.kubernetes.protobuf, application/json",
        )],
        vec![],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(h["content-type"], PROTO);
    assert!(body.starts_with(b"k8s\0"));
    assert!(body.windows(7).any(|w| w == b"PodList"));
    let (_, h, body) = request(sim, "GET", uri, &[], vec![]).await;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["kind"],
        "PodList"
    );
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/vnd.kubernetes.protobuf";
    let (_, h, body) = request(sim, "GET", uri, &[("accept", table)], vec![]).await;
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["kind"],
        "Table"
    );

    for (ct, body, want) in [
        (PROTO, b"k8s\0\x0a\xff\xff".to_vec(), 400),
        (PROTO, b"{\"metadata\":{\"name\":\"x\"}}".to_vec(), 400),
        ("application/x-thrift", b"{}".to_vec(), 415),
    ] {
        let (code, h, resp) = request(sim, "POST", uri, &[("content-type", ct)], body).await;
        assert_eq!(code, want, "{ct}: {}", String::from_utf8_lossy(&resp));
        assert_eq!(h["content-type"], "application/json");
        let status: Value = serde_json::from_slice(&resp).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], want);
    }
}

/// A protobuf watch is frames of a 4-byte big-endian length and a `WatchEvent` whose object is
/// a protobuf envelope.
#[tokio::test]
async fn a_protobuf_watch_streams_length_prefixed_watch_events() {
    let e = env().await;
    let sim = &e.sim;
    sim.create("namespaces", None, json!({"metadata": {"name": "shop"}}))
        .unwrap();
    for n in ["a", "b"] {
        sim.create(
            "pods",
            Some("shop"),
            json!({"metadata": {"name": n}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
    }
    let req = http::Request::builder()
        .uri("/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1")
        .header("accept", "application/vnd.kubernetes.protobuf;stream=watch")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sim.service().oneshot(req).await.unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let body = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect())
        .await
        .expect("the watch ends at its timeout")
        .unwrap()
        .to_bytes();
    let mut frames = Vec::new();
    let mut rest = &body[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        frames.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    assert_eq!(frames.len(), 2, "{body:?}");
    for (f, name) in frames.iter().zip(["a", "b"]) {
        // Field 1 (type) = "ADDED", then field 2 (object) holding a RawExtension whose raw is an envelope.
        assert_eq!(&f[..7], b"\x0a\x05ADDED");
        assert!(f.windows(4).any(|w| w == b"k8s\0"));
        assert!(f.windows(3).any(|w| w == b"Pod"));
        assert!(f
            .windows(name.len() + 1)
            .any(|w| w[0] == 1 && &w[1..] == name.as_bytes()));
    }
}

//! `dryRun=All` on create, update, patch, delete and deletecollection: every check runs, nothing is stored, no event, no resourceVersion — in-process and with kubectl `--dry-run=server`.
//!
//! Upstream rules copied: the API conventions' "Dry-run" section (a dry-run request is
//! validated and admitted like the real one and "the response body … should be as close as
//! possible to a non dry-run response", with nothing persisted), apiserver
//! `pkg/registry/generic/registry/dryrun.go` (create of an existing key still answers
//! AlreadyExists; a dry-run create carries no resourceVersion, a dry-run update the stored
//! one) and `ValidateDryRun` in `apimachinery/pkg/api/validation` (`All` is the only value).

mod common;

use std::time::Duration;

use common::{raw, send, watch_lines, WatchEnd};
use podgrant_sim::{Sim, Step};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/shop/pods";

fn pod(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
           "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    .to_string()
}

/// Nothing of `sim` changed since `rv`: no write, no event (a watch from `rv` stays silent).
async fn assert_untouched(sim: &Sim, rv: u64, what: &str) {
    assert_eq!(sim.resource_version(), rv, "{what}: the store's RV moved");
    let resp = send(
        sim,
        "GET",
        &format!("/api/v1/pods?watch=true&resourceVersion={rv}"),
        None,
        "",
    )
    .await;
    let (lines, end) = watch_lines(resp.into_body(), Duration::from_secs(1)).await;
    assert_eq!(end, WatchEnd::StillOpen, "{what}");
    assert!(lines.is_empty(), "{what}: a dry run emitted {lines:?}");
}

#[tokio::test(start_paused = true)]
async fn dry_run_writes_answer_what_would_be_stored_and_store_nothing() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("shop", "live").labels([("app", "web")]))
        .unwrap();
    let rv = sim.resource_version();
    let live = sim.get("pods", Some("shop"), "live").unwrap();

    // Create: 201 with the generated fields, no resourceVersion; not readable afterwards.
    let (code, _, made) = raw(
        &sim,
        "POST",
        &format!("{PODS}?dryRun=All"),
        Some("application/json"),
        pod("dry"),
    )
    .await;
    assert_eq!(code, 201, "{made}");
    assert!(made["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    assert!(made["metadata"]["creationTimestamp"].is_string(), "{made}");
    assert!(made["metadata"].get("resourceVersion").is_none(), "{made}");
    assert!(sim.get("pods", Some("shop"), "dry").is_err());
    assert_untouched(&sim, rv, "create").await;

    // Update (PUT) and patch: the changed object at the stored RV; the store keeps the old one.
    let mut changed = live.clone();
    changed["metadata"]["labels"]["tier"] = json!("gold");
    let (code, _, put) = raw(
        &sim,
        "PUT",
        &format!("{PODS}/live?dryRun=All"),
        Some("application/json"),
        changed.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{put}");
    assert_eq!(put["metadata"]["labels"]["tier"], "gold");
    assert_eq!(
        put["metadata"]["resourceVersion"],
        live["metadata"]["resourceVersion"]
    );
    let (code, _, patched) = raw(
        &sim,
        "PATCH",
        &format!("{PODS}/live?dryRun=All"),
        Some("application/merge-patch+json"),
        r#"{"metadata":{"labels":{"app":"api"}}}"#,
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"]["app"], "api");
    assert_eq!(sim.get("pods", Some("shop"), "live").unwrap(), live);
    assert_untouched(&sim, rv, "update and patch").await;

    // Delete and deletecollection: the objects answered, still there.
    let (code, _, gone) = raw(&sim, "DELETE", &format!("{PODS}/live?dryRun=All"), None, "").await;
    assert_eq!(
        (code, gone["metadata"]["name"].as_str()),
        (200, Some("live"))
    );
    // kubectl and client-go put it in the DeleteOptions body instead.
    let (code, _, _) = raw(
        &sim,
        "DELETE",
        &format!("{PODS}/live"),
        Some("application/json"),
        r#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["All"]}"#,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _, _) = raw(&sim, "DELETE", &format!("{PODS}/live"), None, "{not json").await;
    assert_eq!(code, 400, "a broken DeleteOptions body deletes nothing");
    let (code, _, list) = raw(&sim, "DELETE", &format!("{PODS}?dryRun=All"), None, "").await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    let (code, _, _) = raw(
        &sim,
        "DELETE",
        "/api/v1/namespaces/shop?dryRun=All",
        None,
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(sim.get("pods", Some("shop"), "live").unwrap(), live);
    assert!(sim.get("namespaces", None, "shop").is_ok());
    assert_untouched(&sim, rv, "delete").await;
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_is_refused_exactly_where_the_write_would_be() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("shop", "live")).unwrap();
    let rv = sim.resource_version();
    let post = |path: String, body: String| {
        let sim = sim.clone();
        async move { raw(&sim, "POST", &path, Some("application/json"), body).await }
    };
    // The existing key, the missing namespace, the missing object, a bad name: as for real.
    let (code, _, s) = post(format!("{PODS}?dryRun=All"), pod("live")).await;
    assert_eq!((code, s["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, _, s) = post(
        "/api/v1/namespaces/nowhere/pods?dryRun=All".into(),
        pod("p"),
    )
    .await;
    assert_eq!((code, s["reason"].as_str()), (404, Some("NotFound")));
    let (code, _, _) = raw(
        &sim,
        "DELETE",
        &format!("{PODS}/ghost?dryRun=All"),
        None,
        "",
    )
    .await;
    assert_eq!(code, 404);
    let (code, _, _) = post(format!("{PODS}?dryRun=All"), pod("Not_A_Name")).await;
    assert_eq!(code, 422);

    // `All` is the only value; anything else is 422 against the verb's options, naming dryRun.
    for (method, path, options) in [
        ("POST", format!("{PODS}?dryRun=true"), "CreateOptions"),
        (
            "DELETE",
            format!("{PODS}/live?dryRun=server"),
            "DeleteOptions",
        ),
        (
            "PUT",
            format!("{PODS}/live?dryRun=All&dryRun=x"),
            "UpdateOptions",
        ),
    ] {
        // A DELETE's body is DeleteOptions (a Pod there is 400, sim/tests/deletion.rs).
        let body = if method == "DELETE" {
            String::new()
        } else {
            pod("live")
        };
        let (code, _, s) = raw(&sim, method, &path, Some("application/json"), body).await;
        assert_eq!(code, 422, "{method} {path}: {s}");
        assert_eq!(
            s["details"]["kind"],
            format!("{options}.meta.k8s.io"),
            "{s}"
        );
        assert_eq!(s["details"]["causes"][0]["field"], "dryRun", "{s}");
        assert_eq!(
            s["details"]["causes"][0]["reason"],
            "FieldValueNotSupported"
        );
    }
    assert!(sim.get("pods", Some("shop"), "live").is_ok());
    assert_untouched(&sim, rv, "refused dry runs").await;
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_service_shows_the_cluster_ip_it_would_take_without_taking_it() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_namespace("shop")).unwrap();
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "orders"},
                     "spec": {"ports": [{"port": 80}]}})
    .to_string();
    let path = "/api/v1/namespaces/shop/services";
    let (code, _, dry) = raw(
        &sim,
        "POST",
        &format!("{path}?dryRun=All"),
        Some("application/json"),
        svc.clone(),
    )
    .await;
    assert_eq!(code, 201, "{dry}");
    let (code, _, real) = raw(&sim, "POST", path, Some("application/json"), svc).await;
    assert_eq!(code, 201, "{real}");
    assert!(dry["spec"]["clusterIP"].is_string(), "{dry}");
    assert_eq!(dry["spec"]["clusterIP"], real["spec"]["clusterIP"]);
}

/// kubectl's `--dry-run=server` over TCP: create, label and delete leave no trace.
#[tokio::test]
async fn kubectl_dry_run_server_leaves_no_trace() {
    let sim = Sim::builder().seed(3).build();
    sim.apply(&Step::create_pod("shop", "live")).unwrap();
    let mut server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc, &server.url()).unwrap();
    let manifest = dir.path().join("pod.json");
    std::fs::write(&manifest, pod("dry")).unwrap();
    let rv = sim.resource_version();
    let kc = kc.to_str().unwrap();
    let manifest = manifest.to_str().unwrap();
    for args in [
        vec![
            "create",
            "-n",
            "shop",
            "-f",
            manifest,
            "--dry-run=server",
            "-o",
            "json",
        ],
        vec![
            "label",
            "-n",
            "shop",
            "pod",
            "live",
            "tier=gold",
            "--dry-run=server",
        ],
        vec!["delete", "-n", "shop", "pod", "live", "--dry-run=server"],
    ] {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(common::kubectl())
                .arg("--kubeconfig")
                .arg(kc)
                .args(&args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubectl timed out")
        .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "create" {
            let v: Value = serde_json::from_str(&stdout).expect("json");
            assert_eq!(v["metadata"]["name"], "dry");
            assert!(v["metadata"]["uid"].is_string(), "the server answered: {v}");
        } else {
            assert!(stdout.contains("(server dry run)"), "{stdout}");
        }
    }
    assert_eq!(sim.resource_version(), rv, "kubectl's dry runs wrote");
    assert!(sim.get("pods", Some("shop"), "dry").is_err());
    let live = sim.get("pods", Some("shop"), "live").unwrap();
    assert!(live["metadata"]["labels"].get("tier").is_none());
    server.shutdown();
}

//! The real kubectl (`$KUBECTL`, else /usr/bin/kubectl) and kube-rs over TCP against the simulator's loopback server.

mod common;

use common::run_kubectl as kubectl;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use podgrant_sim::{Sim, SimServer, Step};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

struct Env {
    sim: Sim,
    server: SimServer,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

async fn env() -> Env {
    let sim = Sim::builder().seed(7).build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, &server.url()).unwrap();
    Env {
        sim,
        server,
        _dir: dir,
        kubeconfig,
    }
}

async fn kubectl_ok(kc: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kc, args).await;
    assert!(ok, "kubectl {args:?} failed: {err}");
    out
}

#[tokio::test]
async fn kubectl_get_pods_all_namespaces_json() {
    let e = env().await;
    e.sim
        .apply(&Step::create_pod("alpha", "a-1").labels([("app", "web")]))
        .unwrap();
    e.sim.apply(&Step::create_pod("beta", "b-1")).unwrap();
    let out = kubectl_ok(&e.kubeconfig, &["get", "pods", "-A", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, ["alpha/a-1", "beta/b-1"]);
    assert_eq!(v["items"][0]["status"]["podIP"], "10.244.0.1");
    assert!(e.sim.stats().requests("list", "pods") >= 1);
}

#[tokio::test]
async fn kubectl_create_label_annotate_patch_delete() {
    let e = env().await;
    let manifest = e._dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  labels: {app: web}\nspec:\n  containers: [{name: c, image: nginx}]\n",
    )
    .unwrap();
    let out = kubectl_ok(&e.kubeconfig, &["create", "-f", manifest.to_str().unwrap()]).await;
    assert!(out.contains("pod/web-1 created"), "{out}");
    assert!(e.sim.get("pods", Some("default"), "web-1").is_ok());

    kubectl_ok(&e.kubeconfig, &["label", "pod", "web-1", "tier=fe"]).await;
    kubectl_ok(&e.kubeconfig, &["annotate", "pod", "web-1", "note=hello"]).await;
    kubectl_ok(
        &e.kubeconfig,
        &[
            "patch",
            "pod",
            "web-1",
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
        ],
    )
    .await;
    let pod = e.sim.get("pods", Some("default"), "web-1").unwrap();
    assert_eq!(pod["metadata"]["labels"]["tier"], "fe");
    assert_eq!(pod["metadata"]["labels"]["patched"], "yes");
    assert_eq!(pod["metadata"]["annotations"]["note"], "hello");
    // Overwriting without --overwrite is refused client-side; removing a label works.
    kubectl_ok(&e.kubeconfig, &["label", "pod", "web-1", "tier-"]).await;
    assert!(
        e.sim.get("pods", Some("default"), "web-1").unwrap()["metadata"]["labels"]
            .get("tier")
            .is_none()
    );

    let (ok, _, err) = kubectl(&e.kubeconfig, &["create", "-f", manifest.to_str().unwrap()]).await;
    assert!(
        !ok && (err.contains("AlreadyExists") || err.contains("already exists")),
        "{err}"
    );

    let out = kubectl_ok(&e.kubeconfig, &["delete", "pod", "web-1"]).await;
    assert!(out.contains("deleted"), "{out}");
    assert!(e.sim.get("pods", Some("default"), "web-1").is_err());
    let (ok, _, err) = kubectl(&e.kubeconfig, &["get", "pod", "web-1"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

#[tokio::test]
async fn kubectl_get_raw_api_v1() {
    let e = env().await;
    let out = kubectl_ok(&e.kubeconfig, &["get", "--raw", "/api/v1"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "APIResourceList");
    let names: Vec<&str> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for r in [
        "pods",
        "pods/status",
        "services",
        "secrets",
        "events",
        "namespaces",
    ] {
        assert!(names.contains(&r), "{r} missing from {names:?}");
    }
    let leases = kubectl_ok(&e.kubeconfig, &["get", "leases", "-A", "-o", "json"]).await;
    assert_eq!(
        serde_json::from_str::<Value>(&leases).unwrap()["items"],
        serde_json::json!([])
    );
}

async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    deadline: tokio::time::Instant,
) -> Option<String> {
    tokio::time::timeout_at(deadline, lines.next_line())
        .await
        .expect("kubectl -w output within deadline")
        .unwrap()
}

#[tokio::test]
async fn kubectl_watch_sees_created_pod() {
    let e = env().await;
    e.sim.apply(&Step::create_pod("default", "first")).unwrap();
    let mut child = Command::new(common::kubectl())
        .arg("--kubeconfig")
        .arg(&e.kubeconfig)
        .args(["get", "pods", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    assert_eq!(
        next_line(&mut lines, deadline).await.as_deref(),
        Some("pod/first")
    );
    // Wait until the watch itself is open, then create the pod.
    while e.sim.stats().watch_starts("pods") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl never started a watch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.sim.apply(&Step::create_pod("default", "second")).unwrap();
    assert_eq!(
        next_line(&mut lines, deadline).await.as_deref(),
        Some("pod/second")
    );
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kube_rs_over_tcp_lists_and_watches() {
    let e = env().await;
    e.sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let config = kube::Config::new(e.server.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "ns");
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    let mut w = watcher::watcher(pods, watcher::Config::default()).boxed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout_at(deadline, w.next())
            .await
            .expect("InitDone")
            .unwrap()
            .unwrap()
        {
            Event::InitDone => break,
            _ => continue,
        }
    }
    e.sim.apply(&Step::create_pod("ns", "b")).unwrap();
    match tokio::time::timeout_at(deadline, w.next())
        .await
        .expect("Apply")
        .unwrap()
        .unwrap()
    {
        Event::Apply(p) => assert_eq!(p.metadata.name.as_deref(), Some("b")),
        ev => panic!("unexpected {ev:?}"),
    }
}

#[tokio::test]
async fn kubectl_get_prints_server_side_table_columns() {
    let e = env().await;
    e.sim.apply(&Step::create_pod("default", "web-1")).unwrap();
    e.sim
        .apply(
            &Step::create_pod("default", "web-2")
                .ready(false)
                .phase("Pending"),
        )
        .unwrap();
    e.sim
        .apply(&Step::create_service("default", "db", [("app", "db")]))
        .unwrap();
    let out = kubectl_ok(&e.kubeconfig, &["get", "pods", "-o", "wide"]).await;
    let lines: Vec<&str> = out.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        "{out}"
    );
    let row1: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (row1[0], row1[1], row1[2], row1[5]),
        ("web-1", "1/1", "Running", "10.244.0.1"),
        "{out}"
    );
    let row2: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(
        (row2[0], row2[1], row2[2]),
        ("web-2", "0/1", "Pending"),
        "{out}"
    );
    let svc = kubectl_ok(&e.kubeconfig, &["get", "svc", "db"]).await;
    assert!(
        svc.lines().next().unwrap().contains("CLUSTER-IP") && svc.contains("3306/TCP"),
        "{svc}"
    );

    // Watch in table mode prints a row per event, headers once.
    let mut child = Command::new(common::kubectl())
        .arg("--kubeconfig")
        .arg(&e.kubeconfig)
        .args(["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    assert!(next_line(&mut lines, deadline)
        .await
        .unwrap()
        .starts_with("NAME"));
    assert!(next_line(&mut lines, deadline)
        .await
        .unwrap()
        .starts_with("web-1"));
    assert!(next_line(&mut lines, deadline)
        .await
        .unwrap()
        .starts_with("web-2"));
    while e.sim.stats().watch_starts("pods") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl never started a watch"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.sim
        .apply(&Step::set_pod_ready("default", "web-2", true))
        .unwrap();
    let line = next_line(&mut lines, deadline).await.unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!((cols[0], cols[1]), ("web-2", "1/1"), "{line}");
    child.kill().await.unwrap();
}

/// Client-side `kubectl apply` of a changed manifest: kubectl computes a three-way strategic
/// merge patch (with `$setElementOrder` and `null` for removed fields) and the sim merges it
/// by the types' strategies (strategicpatch: Service ports keyed by `port`).
#[tokio::test]
async fn kubectl_apply_of_a_changed_manifest_merges_three_ways() {
    let e = env().await;
    e.sim.apply(&Step::create_namespace("shop")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("svc.yaml");
    let write = |labels: &str, target: u16| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  labels: {{{labels}}}\n\
                 spec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80, targetPort: {target}}}\n  \
                 - {{name: dns, port: 53, protocol: UDP}}\n"
            ),
        )
        .unwrap();
    };
    let path = manifest.to_str().unwrap().to_string();
    write("app: web, tier: fe", 80);
    let out = kubectl_ok(&e.kubeconfig, &["apply", "-f", &path]).await;
    assert!(out.contains("service/web created"), "{out}");
    // Someone else adds a label the manifest never had: a three-way merge keeps it.
    kubectl_ok(
        &e.kubeconfig,
        &["label", "-n", "shop", "svc/web", "owner=ops"],
    )
    .await;
    write("app: web", 8080);
    let out = kubectl_ok(&e.kubeconfig, &["apply", "-f", &path]).await;
    assert!(out.contains("service/web configured"), "{out}");
    let svc = e.sim.get("services", Some("shop"), "web").unwrap();
    let labels = &svc["metadata"]["labels"];
    assert_eq!(
        labels.get("tier"),
        None,
        "removed from the manifest: {labels}"
    );
    assert_eq!(
        labels["owner"], "ops",
        "not the manifest's to remove: {labels}"
    );
    let ports = svc["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(ports[0]["targetPort"], 8080);
    assert_eq!(ports[1]["port"], 53);
}

//! The registry's built-in kinds beyond the engine's six — configmaps, serviceaccounts, endpoints,
//! PVCs, nodes, apps/v1 workloads, endpointslices — through kube-rs (typed `Api`, `Discovery`) and
//! the real kubectl (`apply -f`, `get`, `api-resources`), each one registry entry in `sim/src/resource.rs`.

mod common;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use kube::runtime::watcher::{self, Event};
use podgrant_sim::{Sim, Step};
use serde_json::json;

fn sim() -> Sim {
    let sim = Sim::builder().seed(4).build();
    sim.apply(&Step::create_namespace("apps")).unwrap();
    sim
}

#[tokio::test]
async fn typed_apis_create_list_patch_watch_and_delete_the_new_kinds() {
    let sim = sim();
    let client = common::client(&sim);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "conf"}, "data": {"a": "1"}
    }))
    .unwrap();
    let made = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(made.metadata.uid.is_some());
    // Core kinds other than pods keep no generation (their strategies set none).
    assert_eq!(made.metadata.generation, None);
    let patched = cms
        .patch(
            "conf",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap().len(), 2);

    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "apps");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    }))
    .unwrap();
    let made = deploys.create(&PostParams::default(), &d).await.unwrap();
    let spec = &made.spec;
    // pkg/apis/apps/v1/defaults.go SetDefaults_Deployment, and the pod template's defaults.
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.progress_deadline_seconds, Some(600));
    let strategy = spec.strategy.as_ref().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let tpl = spec.template.spec.as_ref().unwrap();
    assert_eq!(tpl.dns_policy.as_deref(), Some("ClusterFirst"));
    assert_eq!(
        tpl.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    assert_eq!(made.metadata.generation, Some(1));
    let scaled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2), "a spec change");

    // A watcher on the new kind sees a later change.
    let mut w = watcher::watcher(deploys.clone(), watcher::Config::default()).boxed();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("watch ended before InitDone: {other:?}"),
        }
    }
    deploys
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(Event::Delete(d)))) => {
                assert_eq!(d.metadata.name.as_deref(), Some("web"));
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no delete event: {other:?}"),
        }
    }

    // Cluster-scoped and namespaced kinds in a namespace that does not exist (404), as upstream.
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let missing: Api<ServiceAccount> = Api::namespaced(client, "nope");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    let err = missing
        .create(&PostParams::default(), &sa)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn kube_discovery_finds_every_served_group() {
    let sim = sim();
    let discovery = Discovery::new(common::client(&sim)).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in ["", "apps", "coordination.k8s.io", "discovery.k8s.io"] {
        assert!(
            groups.iter().any(|n| n == g),
            "{g:?} missing from {groups:?}"
        );
    }
    let apps = discovery.get("apps").unwrap();
    let kinds: Vec<String> = apps
        .recommended_resources()
        .into_iter()
        .map(|(ar, _)| ar.kind)
        .collect();
    for k in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
        assert!(kinds.iter().any(|n| n == k), "{k} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn kubectl_applies_and_gets_the_new_kinds() {
    let sim = sim();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc, &server.url()).unwrap();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf, namespace: apps}\ndata: {a: \"1\"}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: apps}\n\
         spec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
         spec: {containers: [{name: c, image: nginx}]}\n",
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let kc = kc.clone();
        async move {
            let out = tokio::time::timeout(
                Duration::from_secs(60),
                tokio::process::Command::new(common::kubectl())
                    .arg("--kubeconfig")
                    .arg(&kc)
                    .args(&args)
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("kubectl within 60 s")
            .expect("kubectl runs");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "kubectl {args:?}: {text}");
            text
        }
    };
    let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let mut apply = args("apply -f");
    apply.push(manifest.display().to_string());
    let out = run(apply).await;
    assert!(
        out.contains("configmap/conf created") && out.contains("deployment.apps/web created"),
        "{out}"
    );
    let out = run(args("get deploy,cm -n apps -o name")).await;
    assert!(
        out.contains("deployment.apps/web") && out.contains("configmap/conf"),
        "{out}"
    );
    let out = run(args("api-resources -o name")).await;
    for r in [
        "configmaps",
        "serviceaccounts",
        "nodes",
        "endpoints",
        "persistentvolumeclaims",
        "deployments.apps",
        "statefulsets.apps",
        "endpointslices.discovery.k8s.io",
    ] {
        assert!(out.lines().any(|l| l == r), "{r} missing from:\n{out}");
    }
}

//! Server-side apply (KEP-555; `apiserver/pkg/endpoints/handlers/fieldmanager`): kube-rs
//! `Patch::Apply` creates, a second manager changing an owned field gets 409 listing it unless
//! forced, a field a manager stops applying is removed, and the real `kubectl apply --server-side`.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use podgrant_sim::{Sim, Step};
use serde_json::{json, Value};

fn deploy(replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}
    })
}

fn managers(d: &Deployment) -> Vec<(String, String)> {
    d.metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn kube_rs_apply_creates_conflicts_forces_and_removes_dropped_fields() {
    let sim = Sim::builder().seed(2).build();
    sim.apply(&Step::create_namespace("ssa")).unwrap();
    let api: Api<Deployment> = Api::namespaced(common::client(&sim), "ssa");

    // Apply creates when absent, recording the manager.
    let made = api
        .patch(
            "web",
            &PatchParams::apply("alpha"),
            &Patch::Apply(deploy(2, json!({"team": "a"}))),
        )
        .await
        .unwrap();
    assert_eq!(made.spec.replicas, Some(2));
    assert_eq!(
        managers(&made),
        [("alpha".to_string(), "Apply".to_string())]
    );

    // A second manager changing alpha's replicas: 409 naming the field and its owner.
    let err = api
        .patch(
            "web",
            &PatchParams::apply("beta"),
            &Patch::Apply(deploy(5, json!({}))),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(
                s.message.contains("conflict with \"alpha\"")
                    && s.message.contains(".spec.replicas"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Forced, beta takes replicas over.
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("beta").force(),
            &Patch::Apply(deploy(5, json!({}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(5));

    // alpha stops applying its label (and replicas, now beta's): the label goes, replicas stays.
    let mut config = deploy(2, json!({}));
    config["metadata"].as_object_mut().unwrap().remove("labels");
    config["spec"].as_object_mut().unwrap().remove("replicas");
    let after = api
        .patch("web", &PatchParams::apply("alpha"), &Patch::Apply(config))
        .await
        .unwrap();
    assert!(
        after
            .metadata
            .labels
            .as_ref()
            .is_none_or(|l| !l.contains_key("team")),
        "{:?}",
        after.metadata.labels
    );
    assert_eq!(after.spec.replicas, Some(5));
    assert_eq!(
        managers(&after),
        [
            ("alpha".to_string(), "Apply".to_string()),
            ("beta".to_string(), "Apply".to_string())
        ]
    );

    // No fieldManager: 422 as upstream.
    let (code, _, body) = common::raw(
        &sim,
        "PATCH",
        "/apis/apps/v1/namespaces/ssa/deployments/web",
        Some("application/apply-patch+yaml"),
        serde_json::to_vec(&deploy(1, json!({}))).unwrap(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("fieldManager: Required value"),
        "{body}"
    );
}

#[tokio::test]
async fn kubectl_apply_server_side_twice_conflicts_then_forces() {
    let sim = Sim::builder().seed(2).build();
    sim.apply(&Step::create_namespace("ssa")).unwrap();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc, &server.url()).unwrap();
    let write = |replicas: i64| {
        let path = dir.path().join(format!("d{replicas}.json"));
        let mut d = deploy(replicas, json!({}));
        d["metadata"]["namespace"] = json!("ssa");
        std::fs::write(&path, serde_json::to_vec(&d).unwrap()).unwrap();
        path
    };
    let kubectl = |args: Vec<String>| {
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
            (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        }
    };
    let apply = |file: &std::path::Path, manager: &str, extra: &[&str]| {
        let mut a: Vec<String> = ["apply", "--server-side", "--field-manager", manager, "-f"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.push(file.display().to_string());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let two = write(2);
    let (ok, out) = kubectl(apply(&two, "ops", &[])).await;
    assert!(
        ok && out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let (ok, out) = kubectl(apply(&two, "ops", &[])).await;
    assert!(
        ok && out.contains("serverside-applied"),
        "applying again is fine: {out}"
    );
    let five = write(5);
    let (ok, out) = kubectl(apply(&five, "other", &[])).await;
    assert!(
        !ok && out.contains("conflict") && out.contains(".spec.replicas"),
        "{out}"
    );
    assert_eq!(
        sim.get("deployments", Some("ssa"), "web").unwrap()["spec"]["replicas"],
        2
    );
    let (ok, out) = kubectl(apply(&five, "other", &["--force-conflicts"])).await;
    assert!(ok, "{out}");
    assert_eq!(
        sim.get("deployments", Some("ssa"), "web").unwrap()["spec"]["replicas"],
        5
    );
}

/// Every write records its manager (structured-merge-diff `Update`, fieldmanager
/// `managerOrUserAgent`): create and merge-patch own what they set or change as
/// `operation: Update`, a `/status` write owns status under `subresource: status`, and an apply
/// changing an updater's field conflicts with it as upstream prints it ("… using apps/v1 at …").
#[tokio::test]
async fn updates_and_patches_record_managed_fields_and_an_apply_conflicts_with_them() {
    use kube::api::PostParams;
    let sim = Sim::builder().seed(3).build();
    sim.apply(&Step::create_namespace("ssa")).unwrap();
    let api: Api<Deployment> = Api::namespaced(common::client(&sim), "ssa");
    let made: Deployment = api
        .create(
            &PostParams {
                field_manager: Some("maker".into()),
                ..Default::default()
            },
            &serde_json::from_value(deploy(2, json!({"team": "a"}))).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(managers(&made), [("maker".into(), "Update".into())]);
    let fields = serde_json::to_value(&made.metadata.managed_fields.as_ref().unwrap()[0]).unwrap();
    assert!(
        fields.pointer("/fieldsV1/f:spec/f:replicas").is_some(),
        "{fields}"
    );

    // A merge patch by "editor" takes replicas from "maker".
    let edited = api
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let entries = serde_json::to_value(edited.metadata.managed_fields.as_ref().unwrap()).unwrap();
    let owner_of_replicas: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.pointer("/fieldsV1/f:spec/f:replicas").is_some())
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owner_of_replicas, ["editor"], "{entries}");

    // A status write is its own entry, on the status subresource.
    let status = api
        .patch_status(
            "web",
            &PatchParams {
                field_manager: Some("ctl".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"status": {"observedGeneration": 2}})),
        )
        .await
        .unwrap();
    let entries = serde_json::to_value(status.metadata.managed_fields.as_ref().unwrap()).unwrap();
    let ctl = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "ctl")
        .unwrap_or_else(|| panic!("{entries}"));
    assert_eq!(ctl["subresource"], "status");
    assert!(ctl
        .pointer("/fieldsV1/f:status/f:observedGeneration")
        .is_some());

    // An apply changing editor's replicas conflicts with editor, printed as upstream does.
    let err = api
        .patch(
            "web",
            &PatchParams::apply("alpha"),
            &Patch::Apply(deploy(7, json!({}))),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err}")
    };
    assert_eq!(s.code, 409);
    assert!(
        s.message
            .contains("conflict with \"editor\" using apps/v1 at ")
            && s.message.contains(".spec.replicas"),
        "{}",
        s.message
    );
    // Same replicas as live: no conflict, shared ownership.
    api.patch(
        "web",
        &PatchParams::apply("alpha"),
        &Patch::Apply(deploy(3, json!({}))),
    )
    .await
    .unwrap();
}

/// Without `fieldManager` a write is recorded under the User-Agent's first segment; an invalid
/// `fieldManager` is 422 (apimachinery `ValidateFieldManager`).
#[tokio::test]
async fn the_user_agent_names_the_manager_and_a_bad_field_manager_is_422() {
    use tower::ServiceExt;
    let sim = Sim::builder().seed(4).build();
    sim.apply(&Step::create_namespace("ua")).unwrap();
    let send = |uri: String| {
        let svc = sim.service();
        async move {
            let req = http::Request::post(uri)
                .header("content-type", "application/json")
                .header("user-agent", "mytool/1.2 (linux)")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    serde_json::to_vec(&json!({"metadata": {"name": "c"}, "data": {"a": "b"}}))
                        .unwrap(),
                )))
                .unwrap();
            let resp = svc.oneshot(req).await.unwrap();
            let code = resp.status().as_u16();
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap()
                .to_bytes();
            (code, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let (code, made) = send("/api/v1/namespaces/ua/configmaps".into()).await;
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["metadata"]["managedFields"][0]["manager"], "mytool");
    assert_eq!(made["metadata"]["managedFields"][0]["operation"], "Update");
    let long = "m".repeat(129);
    let (code, status) = send(format!(
        "/api/v1/namespaces/ua/configmaps?fieldManager={long}"
    ))
    .await;
    assert_eq!(code, 422, "{status}");
    assert!(status["message"].as_str().unwrap().contains("fieldManager"));
}

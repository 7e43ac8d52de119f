//! Namespace deletion (Terminating until its content is gone, creates in it 403) and garbage collection by `metadata.ownerReferences` per `propagationPolicy` — in-process on a paused clock, and with the real kubectl.
//!
//! Upstream rules copied: `pkg/registry/core/namespace/storage/storage.go` `Delete` (a
//! namespace with spec finalizers is marked: `deletionTimestamp`, `status.phase: Terminating`),
//! `pkg/controller/namespace/deletion/namespaced_resources_deleter.go` (content deleted as a
//! client would; conditions; the namespace goes when nothing is left),
//! `plugin/pkg/admission/namespace/lifecycle/admission.go` (403 Forbidden on create in a
//! terminating namespace, cause `NamespaceTerminating`), `pkg/controller/garbagecollector`
//! `attemptToDeleteItem`/`orphanDependents`/`processDeletingDependentsItem`, and the docs'
//! "Garbage Collection" (Background, Orphan, Foreground, `blockOwnerDeletion`) and "Namespaces".

mod common;

use common::run_kubectl as kubectl;

use std::time::{Duration, SystemTime};

use common::{raw, send, types, watch_lines};
use podgrant_sim::Sim;
use serde_json::{json, Value};

const START: u64 = 1_700_000_000;

fn sim() -> Sim {
    Sim::builder()
        .start_time(SystemTime::UNIX_EPOCH + Duration::from_secs(START))
        .build()
}

async fn post(sim: &Sim, uri: &str, body: Value) -> Value {
    let (code, _, v) = raw(sim, "POST", uri, Some("application/json"), body.to_string()).await;
    assert_eq!(code, 201, "{v}");
    v
}

async fn call(sim: &Sim, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let ct = match method {
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (code, _, v) = raw(sim, method, uri, Some(ct), body).await;
    (code, v)
}

async fn status_of(sim: &Sim, uri: &str) -> u16 {
    call(sim, "GET", uri, Value::Null).await.0
}

/// An open watch on `path` after `rv`.
async fn watch(sim: &Sim, path: &str, rv: u64) -> podgrant_sim::SimBody {
    send(
        sim,
        "GET",
        &format!("{path}?watch=1&resourceVersion={rv}"),
        None,
        "",
    )
    .await
    .into_body()
}

/// `(type, name, has deletionTimestamp)` of each event the watch has buffered.
async fn events(body: podgrant_sim::SimBody) -> Vec<(String, String, bool)> {
    let (lines, _) = watch_lines(body, Duration::from_millis(10)).await;
    let kinds = types(&lines);
    lines
        .iter()
        .zip(kinds)
        .map(|(l, t)| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            let meta = &v["object"]["metadata"];
            (
                t,
                meta["name"].as_str().unwrap_or("").to_string(),
                meta.get("deletionTimestamp").is_some(),
            )
        })
        .collect()
}

fn ev(t: &str, name: &str, terminating: bool) -> (String, String, bool) {
    (t.to_string(), name.to_string(), terminating)
}

/// Let spawned tasks (the grace timers) run, without moving the clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

const NS: &str = "/api/v1/namespaces";
const SHOP: &str = "/api/v1/namespaces/shop";

async fn shop(sim: &Sim) {
    post(sim, NS, json!({"metadata": {"name": "shop"}})).await;
}

fn bound_pod(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})
}

// storage.go Delete marks the namespace (deletionTimestamp, phase Terminating) and answers it;
// the namespace controller deletes its content as a client would (graceful pods keep their
// grace, finalizers hold their objects), NamespaceLifecycle admission forbids creates in it,
// and the namespace is removed only after the last object in it goes.
#[tokio::test(start_paused = true)]
async fn a_deleted_namespace_terminates_until_its_last_object_goes() {
    let sim = sim();
    shop(&sim).await;
    post(&sim, &format!("{SHOP}/pods"), bound_pod("web-1")).await;
    post(
        &sim,
        &format!("{SHOP}/secrets"),
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    post(
        &sim,
        &format!("{SHOP}/secrets"),
        json!({"metadata": {"name": "plain"}}),
    )
    .await;
    let ns_watch = watch(&sim, NS, sim.resource_version()).await;

    let (code, ns) = call(&sim, "DELETE", SHOP, Value::Null).await;
    assert_eq!(code, 200, "{ns}");
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
    assert!(ns["metadata"]["deletionTimestamp"].is_string(), "{ns}");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));

    // Content deleted as a client would: the plain secret is gone, the pod has its grace,
    // the held secret waits for its finalizer.
    assert_eq!(status_of(&sim, &format!("{SHOP}/secrets/plain")).await, 404);
    let (_, pod) = call(&sim, "GET", &format!("{SHOP}/pods/web-1"), Value::Null).await;
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30, "{pod}");
    let (_, held) = call(&sim, "GET", &format!("{SHOP}/secrets/held"), Value::Null).await;
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");

    // The controller's conditions name what remains.
    let (_, ns) = call(&sim, "GET", SHOP, Value::Null).await;
    let conditions = ns["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let remaining = conditions
        .iter()
        .find(|c| c["type"] == "NamespaceContentRemaining")
        .unwrap_or_else(|| panic!("no content condition: {ns}"));
    assert_eq!(remaining["status"], "True");
    assert_eq!(
        remaining["message"],
        "Some resources are remaining: pods. has 1 resource instances, secrets. has 1 resource instances"
    );
    let fins = conditions
        .iter()
        .find(|c| c["type"] == "NamespaceFinalizersRemaining")
        .unwrap_or_else(|| panic!("no finalizer condition: {ns}"));
    assert_eq!(
        fins["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );

    // NamespaceLifecycle admission: 403 Forbidden, cause NamespaceTerminating.
    let (code, st) = call(
        &sim,
        "POST",
        &format!("{SHOP}/secrets"),
        json!({"metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(code, 403, "{st}");
    assert_eq!(st["reason"], "Forbidden");
    assert_eq!(
        st["message"],
        "secrets \"late\" is forbidden: unable to create new content in namespace shop because it is being terminated"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "NamespaceTerminating", "message": "namespace shop is being terminated", "field": "metadata.namespace"}])
    );

    // A repeated delete answers the terminating namespace, unchanged.
    let (code, again) = call(&sim, "DELETE", SHOP, Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(
        again["metadata"]["resourceVersion"],
        ns["metadata"]["resourceVersion"]
    );

    // The pod's grace ends: the namespace still holds the finalized secret.
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(status_of(&sim, &format!("{SHOP}/pods/web-1")).await, 404);
    assert_eq!(status_of(&sim, SHOP).await, 200);

    // Its finalizer goes: the namespace is empty and removed.
    let (code, v) = call(
        &sim,
        "PATCH",
        &format!("{SHOP}/secrets/held"),
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(status_of(&sim, &format!("{SHOP}/secrets/held")).await, 404);
    assert_eq!(status_of(&sim, SHOP).await, 404);
    assert_eq!(sim.ips_in_use(), 0);

    assert_eq!(
        events(ns_watch).await,
        vec![
            ev("MODIFIED", "shop", true),
            ev("MODIFIED", "shop", true),
            ev("DELETED", "shop", true),
        ]
    );
}

// A namespace with nothing in it is marked and, the controller finding no content, removed.
// A create after that is a 404 for the namespace, not a 403.
#[tokio::test(start_paused = true)]
async fn an_empty_namespace_goes_at_once() {
    let sim = sim();
    shop(&sim).await;
    // A dry run answers the marked namespace and changes nothing.
    let (code, dry) = call(&sim, "DELETE", &format!("{SHOP}?dryRun=All"), Value::Null).await;
    assert_eq!(code, 200, "{dry}");
    assert_eq!(dry["status"]["phase"], "Terminating");
    let (_, live) = call(&sim, "GET", SHOP, Value::Null).await;
    assert_eq!(live["status"]["phase"], "Active");
    let w = watch(&sim, NS, sim.resource_version()).await;
    let (code, ns) = call(&sim, "DELETE", SHOP, Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert_eq!(status_of(&sim, SHOP).await, 404);
    assert_eq!(
        events(w).await,
        vec![ev("MODIFIED", "shop", true), ev("DELETED", "shop", true)]
    );
    let (code, _) = call(
        &sim,
        "POST",
        &format!("{SHOP}/secrets"),
        json!({"metadata": {"name": "late"}}),
    )
    .await;
    assert_eq!(code, 404);
    // The Rust API still removes a namespace and its content at once.
    shop(&sim).await;
    post(&sim, &format!("{SHOP}/pods"), bound_pod("web-1")).await;
    sim.delete("namespaces", None, "shop").unwrap();
    assert!(sim.list("pods", Some("shop")).is_empty());
}

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const PODS: &str = "/api/v1/namespaces/default/pods";

/// An owner secret and a dependent secret and pod; `block` sets `blockOwnerDeletion` on the pod.
async fn family(sim: &Sim, pod: Value, block: bool) -> String {
    let owner = post(sim, SECRETS, json!({"metadata": {"name": "owner"}})).await;
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    let oref = |b: bool| json!([{"apiVersion": "v1", "kind": "Secret", "name": "owner", "uid": uid, "blockOwnerDeletion": b}]);
    post(
        sim,
        SECRETS,
        json!({"metadata": {"name": "dep", "ownerReferences": oref(false)}}),
    )
    .await;
    let mut pod = pod;
    pod["metadata"]["ownerReferences"] = oref(block);
    post(sim, PODS, pod).await;
    uid
}

// Background (the default): the owner is removed at once, its dependents deleted after it.
#[tokio::test(start_paused = true)]
async fn background_deletes_dependents_after_the_owner() {
    let sim = sim();
    family(&sim, json!({"metadata": {"name": "p"}}), false).await;
    let rv = sim.resource_version();
    let (secrets, pods) = (
        watch(&sim, "/api/v1/secrets", rv).await,
        watch(&sim, "/api/v1/pods", rv).await,
    );
    let (code, v) = call(&sim, "DELETE", &format!("{SECRETS}/owner"), Value::Null).await;
    assert_eq!(code, 200, "{v}");
    for path in ["secrets/owner", "secrets/dep", "pods/p"] {
        assert_eq!(
            status_of(&sim, &format!("/api/v1/namespaces/default/{path}")).await,
            404,
            "{path}"
        );
    }
    assert_eq!(
        events(secrets).await,
        vec![ev("DELETED", "owner", false), ev("DELETED", "dep", false)]
    );
    assert_eq!(events(pods).await, vec![ev("DELETED", "p", false)]);
}

// Background collection runs when the owner is removed, not when its deletion is asked for: a
// bound pod's dependents outlive its grace, then go.
#[tokio::test(start_paused = true)]
async fn dependents_of_a_graceful_owner_go_when_its_grace_ends() {
    let sim = sim();
    let pod = post(&sim, PODS, bound_pod("o")).await;
    post(
        &sim,
        SECRETS,
        json!({"metadata": {"name": "dep", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": "o", "uid": pod["metadata"]["uid"]}]}}),
    )
    .await;
    let (code, _) = call(&sim, "DELETE", &format!("{PODS}/o"), Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(status_of(&sim, &format!("{SECRETS}/dep")).await, 200);
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(status_of(&sim, &format!("{PODS}/o")).await, 404);
    assert_eq!(status_of(&sim, &format!("{SECRETS}/dep")).await, 404);
}

// A dependent with another live owner is not deleted: the dangling reference is removed.
#[tokio::test(start_paused = true)]
async fn a_dependent_with_another_owner_loses_only_the_reference() {
    let sim = sim();
    let a = post(&sim, SECRETS, json!({"metadata": {"name": "a"}})).await;
    let b = post(&sim, SECRETS, json!({"metadata": {"name": "b"}})).await;
    let r = |o: &Value| json!({"apiVersion": "v1", "kind": "Secret", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]});
    post(
        &sim,
        SECRETS,
        json!({"metadata": {"name": "shared", "ownerReferences": [r(&a), r(&b)]}}),
    )
    .await;
    let (code, _) = call(&sim, "DELETE", &format!("{SECRETS}/a"), Value::Null).await;
    assert_eq!(code, 200);
    let (code, shared) = call(&sim, "GET", &format!("{SECRETS}/shared"), Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(shared["metadata"]["ownerReferences"], json!([r(&b)]));
    // The last owner goes: now it is collected.
    call(&sim, "DELETE", &format!("{SECRETS}/b"), Value::Null).await;
    assert_eq!(status_of(&sim, &format!("{SECRETS}/shared")).await, 404);
}

// Orphan (and the deprecated orphanDependents=true): dependents are kept, each loses its
// reference to the owner (MODIFIED) before the owner is removed.
#[tokio::test(start_paused = true)]
async fn orphan_keeps_dependents_without_the_reference() {
    for how in ["body", "query"] {
        let sim = sim();
        family(&sim, json!({"metadata": {"name": "p"}}), true).await;
        let rv = sim.resource_version();
        let (secrets, pods) = (
            watch(&sim, "/api/v1/secrets", rv).await,
            watch(&sim, "/api/v1/pods", rv).await,
        );
        let (code, v) = match how {
            "body" => {
                call(
                    &sim,
                    "DELETE",
                    &format!("{SECRETS}/owner"),
                    json!({"propagationPolicy": "Orphan"}),
                )
                .await
            }
            _ => {
                call(
                    &sim,
                    "DELETE",
                    &format!("{SECRETS}/owner?orphanDependents=true"),
                    Value::Null,
                )
                .await
            }
        };
        assert_eq!(code, 200, "{how}: {v}");
        assert_eq!(status_of(&sim, &format!("{SECRETS}/owner")).await, 404);
        for path in ["secrets/dep", "pods/p"] {
            let (code, v) = call(
                &sim,
                "GET",
                &format!("/api/v1/namespaces/default/{path}"),
                Value::Null,
            )
            .await;
            assert_eq!(code, 200, "{how} {path}");
            assert!(v["metadata"].get("ownerReferences").is_none(), "{how}: {v}");
        }
        assert_eq!(
            events(secrets).await,
            vec![ev("MODIFIED", "dep", false), ev("DELETED", "owner", false)],
            "{how}"
        );
        assert_eq!(
            events(pods).await,
            vec![ev("MODIFIED", "p", false)],
            "{how}"
        );
    }
}

// Foreground: the owner gets deletionTimestamp and the foregroundDeletion finalizer and stays
// readable while a dependent with blockOwnerDeletion is being deleted (a bound pod's grace);
// dependents go first, the owner when no blocking one is left.
#[tokio::test(start_paused = true)]
async fn foreground_removes_the_owner_after_its_blocking_dependents() {
    let sim = sim();
    family(&sim, bound_pod("p"), true).await;
    let rv = sim.resource_version();
    let (secrets, pods) = (
        watch(&sim, "/api/v1/secrets", rv).await,
        watch(&sim, "/api/v1/pods", rv).await,
    );
    let (code, owner) = call(
        &sim,
        "DELETE",
        &format!("{SECRETS}/owner"),
        json!({"propagationPolicy": "Foreground"}),
    )
    .await;
    assert_eq!(code, 200, "{owner}");
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    assert_eq!(
        owner["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert_eq!(status_of(&sim, &format!("{SECRETS}/owner")).await, 200);
    assert_eq!(status_of(&sim, &format!("{SECRETS}/dep")).await, 404);
    let (_, pod) = call(&sim, "GET", &format!("{PODS}/p"), Value::Null).await;
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30, "{pod}");

    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(status_of(&sim, &format!("{PODS}/p")).await, 404);
    assert_eq!(status_of(&sim, &format!("{SECRETS}/owner")).await, 404);
    assert_eq!(
        events(secrets).await,
        vec![
            ev("MODIFIED", "owner", true),
            ev("DELETED", "dep", false),
            ev("DELETED", "owner", true),
        ]
    );
    assert_eq!(
        events(pods).await,
        vec![ev("MODIFIED", "p", true), ev("DELETED", "p", true)]
    );
}

// Foreground with no blocking dependent: the owner is marked, then removed at once.
#[tokio::test(start_paused = true)]
async fn foreground_without_blockers_removes_the_owner_at_once() {
    let sim = sim();
    family(&sim, json!({"metadata": {"name": "p"}}), false).await;
    let (code, owner) = call(
        &sim,
        "DELETE",
        &format!("{SECRETS}/owner"),
        json!({"propagationPolicy": "Foreground"}),
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        owner["metadata"]["deletionTimestamp"].is_string(),
        "{owner}"
    );
    for path in ["secrets/owner", "secrets/dep", "pods/p"] {
        assert_eq!(
            status_of(&sim, &format!("/api/v1/namespaces/default/{path}")).await,
            404,
            "{path}"
        );
    }
}

// Real kubectl: `delete namespace --wait=false` returns with the namespace listed as
// Terminating while a pod with a finalizer holds it; a create in it is refused; once the
// finalizer is removed the namespace is gone.
#[tokio::test]
async fn kubectl_shows_a_namespace_terminating_while_a_finalizer_holds_it() {
    let sim = Sim::builder().seed(4).build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc, &server.url()).unwrap();
    sim.create("namespaces", None, json!({"metadata": {"name": "shop"}}))
        .unwrap();
    sim.create(
        "pods",
        Some("shop"),
        json!({"metadata": {"name": "web-1", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();

    let (ok, out, err) = kubectl(&kc, &["delete", "namespace", "shop", "--wait=false"]).await;
    assert!(ok && out.contains("deleted"), "{out} {err}");
    let (ok, out, err) = kubectl(&kc, &["get", "namespace", "shop"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("shop") && l.contains("Terminating")),
        "{out}"
    );
    let late = dir.path().join("late.json");
    std::fs::write(
        &late,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late"}}).to_string(),
    )
    .unwrap();
    let (ok, _, err) = kubectl(&kc, &["-n", "shop", "create", "-f", late.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(
        err.contains(
            "unable to create new content in namespace shop because it is being terminated"
        ),
        "{err}"
    );
    let (ok, out, err) = kubectl(
        &kc,
        &[
            "-n",
            "shop",
            "patch",
            "pod",
            "web-1",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
    )
    .await;
    assert!(ok, "{out} {err}");
    let (ok, _, err) = kubectl(&kc, &["get", "namespace", "shop"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

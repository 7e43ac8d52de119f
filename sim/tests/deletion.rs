//! Deletion as kube-apiserver does it: DeleteOptions preconditions and validation, finalizers holding an object with a deletionTimestamp, graceful pod deletion on tokio's clock, force delete — in-process, with kube-rs and with kubectl.
//!
//! Upstream rules copied: `staging/src/k8s.io/apiserver/pkg/registry/rest/delete.go`
//! `BeforeDelete` (preconditions checked first: 409; a negative grace is 1 s; a terminating
//! object's grace may only be shortened), `staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`
//! `Delete`/`updateForGracefulDeletionAndFinalizers`/`ShouldDeleteDuringUpdate` (finalizers keep
//! the object with `deletionTimestamp` and grace 0 until an update empties them),
//! `pkg/registry/core/pod/strategy.go` `CheckGracefulDelete` (bound pods get the requested grace,
//! else `terminationGracePeriodSeconds`; unbound pods go at once), apimachinery
//! `ValidateDeleteOptions` and `ValidateNoNewFinalizers`, and the API conventions' "Finalizers"
//! and "Graceful deletion" sections.

mod common;

use common::run_kubectl as kubectl;

use std::time::{Duration, SystemTime};

use common::{raw, send, types, watch_lines};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Preconditions};
use podgrant_sim::{Sim, Step};
use serde_json::{json, Value};

const START: u64 = 1_700_000_000;

fn sim() -> Sim {
    Sim::builder()
        .start_time(SystemTime::UNIX_EPOCH + Duration::from_secs(START))
        .build()
}

/// The sim's clock `secs` after the start, as `metav1.Time` renders it.
fn at(secs: u64) -> String {
    podgrant_sim::clock::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(START + secs))
}

async fn post(sim: &Sim, uri: &str, body: Value) -> Value {
    let (code, _, v) = raw(sim, "POST", uri, Some("application/json"), body.to_string()).await;
    assert_eq!(code, 201, "{v}");
    v
}

async fn delete(sim: &Sim, uri: &str, body: &str) -> (u16, Value) {
    let (code, _, v) = raw(
        sim,
        "DELETE",
        uri,
        Some("application/json"),
        body.to_string(),
    )
    .await;
    (code, v)
}

async fn get(sim: &Sim, uri: &str) -> (u16, Value) {
    let (code, _, v) = raw(sim, "GET", uri, None, "").await;
    (code, v)
}

async fn merge_patch(sim: &Sim, uri: &str, body: Value) -> (u16, Value) {
    let (code, _, v) = raw(
        sim,
        "PATCH",
        uri,
        Some("application/merge-patch+json"),
        body.to_string(),
    )
    .await;
    (code, v)
}

/// Open a watch on every pod and secret event after `rv`; `events` reads what it got so far.
struct Watch {
    pods: podgrant_sim::SimBody,
    secrets: podgrant_sim::SimBody,
}

async fn watch_from(sim: &Sim, rv: u64) -> Watch {
    let pods = send(
        sim,
        "GET",
        &format!("/api/v1/pods?watch=1&resourceVersion={rv}"),
        None,
        "",
    )
    .await;
    let secrets = send(
        sim,
        "GET",
        &format!("/api/v1/secrets?watch=1&resourceVersion={rv}"),
        None,
        "",
    )
    .await;
    Watch {
        pods: pods.into_body(),
        secrets: secrets.into_body(),
    }
}

/// `(type, name, has deletionTimestamp)` of each event the body has buffered (read until idle).
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

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const PODS: &str = "/api/v1/namespaces/shop/pods";

// BeforeDelete (registry/rest/delete.go): preconditions are checked before anything else and a
// mismatch is 409 Conflict naming the kind; ValidateDeleteOptions refuses bad values with 422
// against DeleteOptions.meta.k8s.io; a body that does not decode as DeleteOptions is 400.
#[tokio::test(start_paused = true)]
async fn preconditions_and_bad_options_refuse_the_delete_and_keep_the_object() {
    let sim = sim();
    let s = post(&sim, SECRETS, json!({"metadata": {"name": "s"}})).await;
    let uid = s["metadata"]["uid"].as_str().unwrap().to_string();
    let rv = s["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("{SECRETS}/s");
    let cases: Vec<(String, String, u16, String)> = vec![
        (
            uri.clone(),
            json!({"preconditions": {"uid": "wrong"}}).to_string(),
            409,
            format!("Operation cannot be fulfilled on Secret \"s\": the UID in the precondition (wrong) does not match the UID in record ({uid}). The object might have been deleted and then recreated"),
        ),
        (
            uri.clone(),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid, "resourceVersion": "1"}}).to_string(),
            409,
            format!("Operation cannot be fulfilled on Secret \"s\": the ResourceVersion in the precondition (1) does not match the ResourceVersion in record ({rv}). The object might have been modified"),
        ),
        (
            uri.clone(),
            json!({"propagationPolicy": "Bogus"}).to_string(),
            422,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Bogus\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\"".into(),
        ),
        (
            uri.clone(),
            json!({"propagationPolicy": "Orphan", "orphanDependents": true}).to_string(),
            422,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Orphan\": orphanDependents and deletionPropagation cannot be both set".into(),
        ),
        (
            format!("{uri}?propagationPolicy=Sideways"),
            String::new(),
            422,
            "propagationPolicy: Unsupported value: \"Sideways\"".into(),
        ),
        (uri.clone(), "[1, 2]".into(), 400, "error decoding DeleteOptions body".into()),
        (
            uri.clone(),
            json!({"gracePeriodSeconds": "soon"}).to_string(),
            400,
            "error decoding DeleteOptions body".into(),
        ),
        (
            uri.clone(),
            json!({"kind": "Pod", "apiVersion": "v1"}).to_string(),
            400,
            "cannot be converted to DeleteOptions".into(),
        ),
        (
            format!("{uri}?gracePeriodSeconds=abc"),
            String::new(),
            400,
            "gracePeriodSeconds".into(),
        ),
    ];
    let before = sim.resource_version();
    for (uri, body, code, message) in &cases {
        let (got, status) = delete(&sim, uri, body).await;
        assert_eq!(
            (got, status["code"].as_u64()),
            (*code, Some(*code as u64)),
            "{body}: {status}"
        );
        let text = status["message"].as_str().unwrap_or("");
        assert!(
            text.contains(message.as_str()),
            "{body}: {text:?} lacks {message:?}"
        );
        assert_eq!(
            sim.resource_version(),
            before,
            "{body}: something was written"
        );
        assert!(
            sim.get("secrets", Some("default"), "s").is_ok(),
            "{body}: deleted"
        );
    }
    // Matching preconditions (and a negative grace, read as 1 s) delete it.
    let body =
        json!({"gracePeriodSeconds": -5, "preconditions": {"uid": uid, "resourceVersion": rv}});
    let (code, gone) = delete(&sim, &uri, &body.to_string()).await;
    assert_eq!(code, 200, "{gone}");
    assert_eq!(get(&sim, &uri).await.0, 404);
}

// API conventions "Finalizers"; store.go updateForGracefulDeletionAndFinalizers (markAsDeleting:
// deletionTimestamp now, grace 0), ShouldDeleteDuringUpdate (emptying the finalizers removes it),
// ValidateNoNewFinalizers, rest.BeforeUpdate (an update can't change the deletion stamp).
#[tokio::test(start_paused = true)]
async fn finalizers_hold_a_deleted_object_until_an_update_empties_them() {
    let sim = sim();
    tokio::time::advance(Duration::from_secs(5)).await;
    let rv = sim.resource_version();
    let w = watch_from(&sim, rv).await;
    post(
        &sim,
        SECRETS,
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let uri = format!("{SECRETS}/held");

    let (code, marked) = delete(&sim, &uri, "").await;
    assert_eq!(code, 200, "{marked}");
    assert_eq!(marked["metadata"]["deletionTimestamp"], at(5), "{marked}");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 0);
    let (code, still) = get(&sim, &uri).await;
    assert_eq!(code, 200, "still readable while finalizers remain");
    assert_eq!(still["metadata"]["finalizers"], json!(["example.com/hold"]));

    // A repeated delete answers the object unchanged: no write.
    tokio::time::advance(Duration::from_secs(3)).await;
    let rv_marked = sim.resource_version();
    let (code, again) = delete(&sim, &uri, "").await;
    assert_eq!(code, 200);
    assert_eq!(again, still);
    assert_eq!(sim.resource_version(), rv_marked);

    // No new finalizer while deleting.
    let (code, refused) = merge_patch(
        &sim,
        &uri,
        json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
    )
    .await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(
        refused["message"],
        "Secret \"held\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/more\"}"
    );
    assert_eq!(
        refused["details"]["causes"][0]["field"],
        "metadata.finalizers"
    );

    // A client can't clear (or move) the deletion stamp: ignored, so this update is a no-op.
    let mut cleared = still.clone();
    cleared["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    cleared["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    let (code, _, put) = raw(
        &sim,
        "PUT",
        &uri,
        Some("application/json"),
        cleared.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{put}");
    assert_eq!(put["metadata"]["deletionTimestamp"], at(5));
    assert_eq!(put["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(sim.resource_version(), rv_marked);

    // Emptying the finalizers removes it.
    let (code, last) = merge_patch(&sim, &uri, json!({"metadata": {"finalizers": null}})).await;
    assert_eq!(code, 200, "{last}");
    assert_eq!(get(&sim, &uri).await.0, 404);
    assert_eq!(
        events(w.secrets).await,
        [
            ev("ADDED", "held", false),
            ev("MODIFIED", "held", true),
            ev("DELETED", "held", true)
        ]
    );
    drop(w.pods);
}

// API conventions "Graceful deletion"; pod strategy CheckGracefulDelete (bound pod: the pod's
// terminationGracePeriodSeconds, default 30); BeforeDelete (only a shorter grace is taken, the
// deadline moving back by the difference; gracePeriodSeconds=0 deletes at once).
#[tokio::test(start_paused = true)]
async fn graceful_pod_delete_stays_visible_until_its_grace_ends() {
    let sim = sim();
    for name in ["web-1", "web-2", "web-3"] {
        sim.apply(&Step::create_pod("shop", name)).unwrap();
    }
    assert_eq!(sim.ips_in_use(), 3);
    let w = watch_from(&sim, sim.resource_version()).await;

    // Plain delete of a bound pod: 30 s of grace, still listed, IP still held.
    let (code, marked) = delete(&sim, &format!("{PODS}/web-1"), "").await;
    assert_eq!(code, 200, "{marked}");
    assert_eq!(marked["metadata"]["deletionTimestamp"], at(30));
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    tokio::time::advance(Duration::from_secs(29)).await;
    settle().await;
    assert_eq!(
        get(&sim, &format!("{PODS}/web-1")).await.0,
        200,
        "removed before its grace ended"
    );
    assert_eq!(sim.ips_in_use(), 3);
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(
        get(&sim, &format!("{PODS}/web-1")).await.0,
        404,
        "not removed when its grace ended"
    );
    assert_eq!(sim.ips_in_use(), 2, "IP released");

    // Grace asked for 60 s, then 100 s (not taken: never lengthened), then 10 s (taken).
    let uri = format!("{PODS}/web-2");
    let (_, first) = delete(&sim, &uri, r#"{"gracePeriodSeconds": 60}"#).await;
    assert_eq!(first["metadata"]["deletionTimestamp"], at(90));
    let (_, longer) = delete(&sim, &uri, r#"{"gracePeriodSeconds": 100}"#).await;
    assert_eq!(longer, first, "a longer grace changes nothing");
    tokio::time::advance(Duration::from_secs(2)).await;
    let (_, shorter) = delete(&sim, &uri, r#"{"gracePeriodSeconds": 10}"#).await;
    assert_eq!(shorter["metadata"]["deletionTimestamp"], at(40));
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
    tokio::time::advance(Duration::from_secs(7)).await;
    settle().await;
    assert_eq!(get(&sim, &uri).await.0, 200);
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(
        get(&sim, &uri).await.0,
        404,
        "the shortened grace did not end it"
    );

    // gracePeriodSeconds=0 (kubectl --force --grace-period=0): gone at once.
    let (code, _) = delete(&sim, &format!("{PODS}/web-3?gracePeriodSeconds=0"), "").await;
    assert_eq!(code, 200);
    assert_eq!(get(&sim, &format!("{PODS}/web-3")).await.0, 404);
    assert_eq!(sim.ips_in_use(), 0);

    let seen = events(w.pods).await;
    assert_eq!(
        seen,
        [
            ev("MODIFIED", "web-1", true),
            ev("DELETED", "web-1", true),
            ev("MODIFIED", "web-2", true),
            ev("MODIFIED", "web-2", true),
            ev("DELETED", "web-2", true),
            ev("DELETED", "web-3", false),
        ]
    );
    drop(w.secrets);
}

// CheckGracefulDelete: an unbound pod (no spec.nodeName) and a finished one go at once; the pod's
// own terminationGracePeriodSeconds is the default grace; store.go: finalizers and grace
// combine — the pod goes when the grace is over (deletionGracePeriodSeconds 0) and the
// finalizers are empty.
#[tokio::test(start_paused = true)]
async fn unbound_pods_go_at_once_and_finalizers_outlast_the_grace() {
    let sim = sim();
    sim.apply(&Step::create_namespace("shop")).unwrap();
    let pod = |name: &str, spec: Value, finalizers: Value| json!({"metadata": {"name": name, "finalizers": finalizers}, "spec": spec});
    let c = json!([{"name": "c", "image": "nginx"}]);
    post(
        &sim,
        PODS,
        pod("unbound", json!({"containers": c}), json!([])),
    )
    .await;
    post(
        &sim,
        PODS,
        pod(
            "held",
            json!({"containers": c, "nodeName": "n1", "terminationGracePeriodSeconds": 5}),
            json!(["example.com/hold"]),
        ),
    )
    .await;
    let (code, _) = delete(&sim, &format!("{PODS}/unbound"), "").await;
    assert_eq!(code, 200);
    assert_eq!(get(&sim, &format!("{PODS}/unbound")).await.0, 404);

    let uri = format!("{PODS}/held");
    let (_, marked) = delete(&sim, &uri, "").await;
    assert_eq!(
        marked["metadata"]["deletionTimestamp"],
        at(5),
        "the pod's own grace"
    );
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 5);
    // Deleting: no finalizer may be added; when the grace ends the finalizer still holds it.
    let (code, _) = merge_patch(
        &sim,
        &uri,
        json!({"metadata": {"finalizers": ["example.com/hold", "example.com/b"]}}),
    )
    .await;
    assert_eq!(code, 422, "no new finalizers during deletion");
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    let (code, after) = get(&sim, &uri).await;
    assert_eq!(code, 200, "finalizers still hold it");
    assert_eq!(after["metadata"]["deletionGracePeriodSeconds"], 0);
    let (code, _) = merge_patch(&sim, &uri, json!({"metadata": {"finalizers": []}})).await;
    assert_eq!(code, 200);
    assert_eq!(get(&sim, &uri).await.0, 404);
}

// The Rust API's Sim::delete (and scenario delete steps) keeps meaning "gone now".
#[tokio::test(start_paused = true)]
async fn sim_delete_and_delete_steps_remove_at_once() {
    let sim = sim();
    sim.apply(&Step::create_pod("shop", "a")).unwrap();
    sim.apply(&Step::create_pod("shop", "b")).unwrap();
    sim.delete("pods", Some("shop"), "a").unwrap();
    sim.apply(&Step::delete_pod("shop", "b")).unwrap();
    assert!(sim.list("pods", Some("shop")).is_empty());
    assert_eq!(sim.ips_in_use(), 0);
}

// A delete_pod step with grace_seconds deletes like `kubectl delete --grace-period` (the HTTP
// path above): Terminating, IP held, gone when the grace ends; the step's grace is bounded.
#[tokio::test(start_paused = true)]
async fn a_delete_pod_step_with_grace_seconds_deletes_gracefully() {
    let sim = sim();
    sim.apply(&Step::create_pod("shop", "a")).unwrap();
    sim.apply(&Step::create_pod("shop", "b")).unwrap();
    sim.apply(&Step::delete_pod("shop", "a").grace_seconds(10))
        .unwrap();
    let (code, _, done) = raw(
        &sim,
        "POST",
        "/_sim/steps",
        Some("application/json"),
        r#"{"op": "delete_pod", "namespace": "shop", "name": "b", "grace_seconds": 5}"#,
    )
    .await;
    assert_eq!(code, 200, "{done}");
    let a = sim.get("pods", Some("shop"), "a").unwrap();
    assert_eq!(a["metadata"]["deletionTimestamp"], at(10));
    assert_eq!(sim.ips_in_use(), 2);
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert!(
        sim.get("pods", Some("shop"), "b").is_err(),
        "b's 5 s are over"
    );
    assert!(sim.get("pods", Some("shop"), "a").is_ok(), "a has 5 s left");
    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert!(sim.list("pods", Some("shop")).is_empty());
    assert_eq!(sim.ips_in_use(), 0);
    let (code, _, refused) = raw(
        &sim,
        "POST",
        "/_sim/steps",
        Some("application/json"),
        r#"{"op": "delete_pod", "namespace": "shop", "name": "a", "grace_seconds": 100000}"#,
    )
    .await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(
        refused["details"]["causes"][0]["field"],
        "steps[0].grace_seconds"
    );
}

// BeforeDelete via kube-rs: DeleteParams.preconditions with a wrong uid is 409 Conflict.
#[tokio::test(start_paused = true)]
async fn kube_rs_delete_with_a_wrong_uid_precondition_is_a_conflict() {
    let sim = sim();
    sim.apply(&Step::create_pod("shop", "web-1")).unwrap();
    let pods: Api<Pod> = Api::namespaced(common::client(&sim), "shop");
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let err = pods.delete("web-1", &dp).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict" && s.message.contains("the UID in the precondition (not-the-uid)")),
        "{err:?}"
    );
    assert!(pods.get("web-1").await.is_ok());
    let uid = pods.get("web-1").await.unwrap().metadata.uid;
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete("web-1", &dp).await.unwrap();
    assert!(pods.get_opt("web-1").await.unwrap().is_none());
}

// Real kubectl: a plain delete of a bound pod returns (--wait=false) with the pod still listed
// as Terminating; `--grace-period=0 --force` removes it at once.
#[tokio::test]
async fn kubectl_graceful_then_forced_delete() {
    let sim = Sim::builder().seed(3).build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc, &server.url()).unwrap();
    sim.apply(&Step::create_pod("default", "web-1")).unwrap();

    let (ok, out, err) = kubectl(&kc, &["delete", "pod", "web-1", "--wait=false"]).await;
    assert!(ok && out.contains("deleted"), "{out} {err}");
    let (ok, out, err) = kubectl(&kc, &["get", "pods"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("web-1") && l.contains("Terminating")),
        "{out}"
    );
    let pod = sim.get("pods", Some("default"), "web-1").unwrap();
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);

    let (ok, out, err) = kubectl(
        &kc,
        &["delete", "pod", "web-1", "--grace-period=0", "--force"],
    )
    .await;
    assert!(ok, "{out} {err}");
    assert!(
        sim.get("pods", Some("default"), "web-1").is_err(),
        "still there after --force"
    );
    assert_eq!(sim.ips_in_use(), 0);
}

/// `handlers/delete.go`: a delete that leaves the object in place (here held by a finalizer)
/// answers 202 Accepted when the client asked for cascading deletion with the deprecated
/// `orphanDependents: false`, 200 otherwise; a delete that removes at once is 200 either way.
#[tokio::test(start_paused = true)]
async fn a_held_delete_with_orphan_dependents_false_is_202() {
    let sim = sim();
    for name in ["held", "gone"] {
        let finalizers = if name == "held" {
            json!(["example.com/hold"])
        } else {
            json!([])
        };
        post(
            &sim,
            SECRETS,
            json!({"metadata": {"name": name, "finalizers": finalizers}}),
        )
        .await;
    }
    let body = json!({"orphanDependents": false}).to_string();
    let (code, held) = delete(&sim, &format!("{SECRETS}/held"), &body).await;
    assert_eq!(code, 202, "{held}");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    let (code, gone) = delete(&sim, &format!("{SECRETS}/gone"), &body).await;
    assert_eq!(code, 200, "{gone}");
    let (code, _) = get(&sim, &format!("{SECRETS}/gone")).await;
    assert_eq!(code, 404);
}

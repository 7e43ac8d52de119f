//! Server-side field validation (`fieldValidation=Ignore|Warn|Strict`) on create, update and patch, over raw HTTP, kubectl and kube-rs.

mod common;

use common::run_kubectl as kubectl;

use http::HeaderMap;
use podgrant_sim::Sim;
use serde_json::{json, Value};

fn warnings(h: &HeaderMap) -> Vec<String> {
    h.get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

/// Every unknown field name the create table sends.
const UNKNOWN: &[&str] = &["foo", "bar", "nodePortz", "typo", "extra"];

const POD_WITH_UNKNOWNS: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
  "spec":{"containers":[{"name":"c","image":"nginx","foo":1}],"bar":true}}"#;

/// (path, body, fieldValidation) → (code, keys of the stored object's `spec` or the object,
/// Warning headers). Upstream: KEP-2885 and apiserver/pkg/endpoints/handlers/create.go
/// (`addStrictDecodingWarnings`, `transformDecodeError`), rest.go (`fieldValidation` defaults to
/// Warn), apimachinery ValidateFieldValidation.
#[tokio::test]
async fn create_honours_field_validation_table() {
    struct Row {
        path: &'static str,
        body: &'static str,
        fv: Option<&'static str>,
        code: u16,
        /// (pointer into the stored object, keys it must have) — checked when the create
        /// succeeded, with every name in [`UNKNOWN`] absent there.
        stored: (&'static str, &'static [&'static str]),
        warnings: &'static [&'static str],
        message: Option<&'static str>,
    }
    let both = &[
        r#"299 - "unknown field \"spec.containers[0].foo\"""#,
        r#"299 - "unknown field \"spec.bar\"""#,
    ];
    let rows = [
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: POD_WITH_UNKNOWNS,
            fv: None,
            code: 201,
            stored: ("/spec", &["containers", "restartPolicy", "schedulerName"]),
            warnings: both,
            message: None,
        },
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: POD_WITH_UNKNOWNS,
            fv: Some("Warn"),
            code: 201,
            stored: ("/spec/containers/0", &["image", "name"]),
            warnings: both,
            message: None,
        },
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: POD_WITH_UNKNOWNS,
            fv: Some("Ignore"),
            code: 201,
            stored: ("/spec", &["containers", "restartPolicy", "schedulerName"]),
            warnings: &[],
            message: None,
        },
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: POD_WITH_UNKNOWNS,
            fv: Some("Strict"),
            code: 400,
            stored: ("", &[]),
            warnings: &[],
            message: Some(
                r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].foo", unknown field "spec.bar""#,
            ),
        },
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: POD_WITH_UNKNOWNS,
            fv: Some("strict"),
            code: 422,
            stored: ("", &[]),
            warnings: &[],
            message: Some(
                r#"CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "strict": supported values: "", "Ignore", "Strict", "Warn""#,
            ),
        },
        // A clean body: no warning, nothing pruned.
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: r#"{"metadata":{"name":"web","labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#,
            fv: Some("Strict"),
            code: 201,
            stored: ("/metadata/labels", &["a"]),
            warnings: &[],
            message: None,
        },
        // Duplicate keys are strict errors too (sigs.k8s.io/json `duplicate field`).
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: r#"{"metadata":{"name":"web","name":"web"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#,
            fv: Some("Strict"),
            code: 400,
            stored: ("", &[]),
            warnings: &[],
            message: Some(
                r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: duplicate field "metadata.name""#,
            ),
        },
        // A type error fails the decode whatever the directive: 400, before validation.
        Row {
            path: "/api/v1/namespaces/default/pods",
            body: r#"{"metadata":{"name":"web"},"spec":{"containers":"nginx"}}"#,
            fv: Some("Ignore"),
            code: 400,
            stored: ("", &[]),
            warnings: &[],
            message: Some(
                r#"Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container"#,
            ),
        },
        Row {
            path: "/api/v1/namespaces/default/services",
            body: r#"{"metadata":{"name":"db"},"spec":{"ports":[{"port":80,"nodePortz":1}]}}"#,
            fv: None,
            code: 201,
            stored: ("/spec/ports/0", &["port"]),
            warnings: &[r#"299 - "unknown field \"spec.ports[0].nodePortz\"""#],
            message: None,
        },
        Row {
            path: "/api/v1/namespaces/default/secrets",
            body: r#"{"metadata":{"name":"s"},"stringData":{"a":"b"},"typo":1}"#,
            fv: Some("Warn"),
            code: 201,
            stored: ("", &["apiVersion", "data", "kind", "metadata", "type"]),
            warnings: &[r#"299 - "unknown field \"typo\"""#],
            message: None,
        },
        Row {
            path: "/apis/coordination.k8s.io/v1/namespaces/default/leases",
            body: r#"{"metadata":{"name":"l"},"spec":{"holderIdentity":"a","holder":"b"}}"#,
            fv: Some("Strict"),
            code: 400,
            stored: ("", &[]),
            warnings: &[],
            message: Some(
                r#"Lease in version "v1" cannot be handled as a Lease: strict decoding error: unknown field "spec.holder""#,
            ),
        },
        Row {
            path: "/api/v1/namespaces",
            body: r#"{"metadata":{"name":"team","extra":"x"}}"#,
            fv: Some("Ignore"),
            code: 201,
            stored: ("/metadata", &["name", "labels"]),
            warnings: &[],
            message: None,
        },
    ];
    for r in rows {
        let sim = Sim::builder().seed(1).build();
        let uri = match r.fv {
            Some(fv) => format!("{}?fieldValidation={fv}", r.path),
            None => r.path.to_string(),
        };
        let (code, headers, body) =
            common::raw(&sim, "POST", &uri, Some("application/json"), r.body).await;
        let what = format!("{uri} {}", r.body);
        assert_eq!(code, r.code, "{what}: {body}");
        assert_eq!(warnings(&headers), r.warnings, "{what}");
        if let Some(m) = r.message {
            assert_eq!(body["message"], m, "{what}");
            assert_eq!(body["kind"], "Status", "{what}");
        }
        if code == 400 {
            assert_eq!(body["reason"], "BadRequest", "{what}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot be handled as a"),
                "{what}: {body}"
            );
        }
        if code == 201 {
            let plural = r.path.rsplit('/').next().unwrap();
            let ns = r.path.contains("/namespaces/").then_some("default");
            let name = body["metadata"]["name"].as_str().unwrap();
            let stored = sim.get(plural, ns, name).unwrap();
            let at = stored.pointer(r.stored.0).unwrap();
            // The keys the client sent that are known are all there (with the sim's defaults
            // beside them); the unknown ones are not.
            let have = keys(at);
            for k in r.stored.1 {
                assert!(have.iter().any(|h| h == k), "{what}: {k} in {stored}");
            }
            for k in UNKNOWN {
                assert!(!have.iter().any(|h| h == k), "{what}: {k} in {stored}");
            }
            // What the response says is what was stored.
            assert_eq!(body, stored, "{what}");
        }
    }
}

/// Update (PUT) decodes its body the same way (apiserver handlers/update.go).
#[tokio::test]
async fn update_prunes_warns_and_refuses() {
    let sim = Sim::builder().seed(1).build();
    let pods = "/api/v1/namespaces/default/pods";
    let body =
        r#"{"metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#;
    let (code, _, created) = common::raw(&sim, "POST", pods, None, body).await;
    assert_eq!(code, 201);
    let mut next = created.clone();
    next["spec"]["containers"][0]["imagePullPolice"] = json!("Always");
    next["metadata"]["labels"] = json!({"v": "2"});
    let uri = format!("{pods}/web?fieldValidation=Strict");
    let (code, _, status) = common::raw(&sim, "PUT", &uri, None, next.to_string()).await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagePullPolice""#
    );
    let uri = format!("{pods}/web");
    let (code, headers, updated) = common::raw(&sim, "PUT", &uri, None, next.to_string()).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(
        warnings(&headers),
        [r#"299 - "unknown field \"spec.containers[0].imagePullPolice\"""#]
    );
    let stored = sim.get("pods", Some("default"), "web").unwrap();
    assert_eq!(stored["metadata"]["labels"], json!({"v": "2"}));
    assert!(stored["spec"]["containers"][0]
        .get("imagePullPolice")
        .is_none());
}

/// Patches: the *patched object* is decoded (apiserver handlers/patch.go
/// `applyPatchToCurrentObject` / `applyPatchToObject`): unknown fields the patch brings are
/// reported; under Strict, and for type errors, the answer is 422 Invalid on field `patch`.
#[tokio::test]
async fn patches_validate_the_patched_object() {
    let sim = Sim::builder().seed(1).build();
    let pods = "/api/v1/namespaces/default/pods";
    let body =
        r#"{"metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"nginx"}]}}"#;
    assert_eq!(common::raw(&sim, "POST", pods, None, body).await.0, 201);
    let uri = |fv: &str| format!("{pods}/web?fieldValidation={fv}");
    let merge = Some("application/merge-patch+json");
    let smp = Some("application/strategic-merge-patch+json");
    let jsonp = Some("application/json-patch+json");

    // (content type, patch, fieldValidation) → (code, warnings, message fragment)
    type Row<'a> = (
        Option<&'a str>,
        &'a str,
        &'a str,
        u16,
        &'a [&'a str],
        &'a str,
    );
    let rows: [Row; 7] = [
        (
            merge,
            r#"{"metadata":{"labels":{"a":"1"}},"spec":{"fooBar":1}}"#,
            "Warn",
            200,
            &[r#"299 - "unknown field \"spec.fooBar\"""#],
            "",
        ),
        (merge, r#"{"spec":{"fooBar":1}}"#, "Ignore", 200, &[], ""),
        (
            merge,
            r#"{"spec":{"fooBar":1}}"#,
            "Strict",
            422,
            &[],
            r#"strict decoding error: unknown field "spec.fooBar""#,
        ),
        (
            smp,
            r#"{"spec":{"containers":[{"name":"c","bogus":"x"}]}}"#,
            "Strict",
            422,
            &[],
            r#" "" is invalid: patch: Invalid value: "map[spec:map[containers:[map[bogus:x name:c]]]]": strict decoding error: unknown field "spec.containers[0].bogus""#,
        ),
        (
            smp,
            r#"{"spec":{"containers":[{"name":"c","bogus":"x"}]}}"#,
            "Warn",
            200,
            &[r#"299 - "unknown field \"spec.containers[0].bogus\"""#],
            "",
        ),
        (
            jsonp,
            r#"[{"op":"add","path":"/spec/zzz","value":1}]"#,
            "Strict",
            422,
            &[],
            r#"strict decoding error: unknown field "spec.zzz""#,
        ),
        // A type error in the patched object: 422 whatever the directive.
        (
            merge,
            r#"{"spec":{"containers":"nginx"}}"#,
            "Ignore",
            422,
            &[],
            r#"": json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container"#,
        ),
    ];
    for (ct, patch, fv, code, warns, fragment) in rows {
        let (got, headers, body) = common::raw(&sim, "PATCH", &uri(fv), ct, patch).await;
        let what = format!("{ct:?} {patch} {fv}");
        assert_eq!(got, code, "{what}: {body}");
        assert_eq!(warnings(&headers), warns, "{what}");
        if code == 422 {
            assert_eq!(body["reason"], "Invalid", "{what}");
            assert_eq!(body["details"]["causes"][0]["field"], "patch", "{what}");
            let m = body["message"].as_str().unwrap();
            assert!(m.contains(fragment), "{what}: {m}");
            assert!(
                m.starts_with(r#" "" is invalid: patch: Invalid value: "#),
                "{what}: {m}"
            );
        }
        let stored = sim.get("pods", Some("default"), "web").unwrap();
        for unknown in ["/spec/fooBar", "/spec/containers/0/bogus", "/spec/zzz"] {
            assert!(stored.pointer(unknown).is_none(), "{what}: {stored}");
        }
        if code == 200 {
            assert_eq!(body, stored, "{what}");
        }
    }
    let stored = sim.get("pods", Some("default"), "web").unwrap();
    assert_eq!(stored["metadata"]["labels"], json!({"a": "1"}));
}

/// The cost of the typed round trip on a typical pod create, printed (not asserted).
#[tokio::test]
async fn cost_of_a_validated_pod_create() {
    let sim = Sim::builder().seed(1).build();
    let pod = |i: usize| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("web-{i}"), "labels": {"app": "web", "tier": "fe"},
                "annotations": {"note": "x".repeat(200)}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}],
                "restartPolicy": "Always"}})
        .to_string()
    };
    let info = podgrant_sim::resource::built_ins()
        .iter()
        .find(|r| r.kind == "Pod")
        .unwrap();
    let n = 200;
    let bodies: Vec<String> = (0..n).map(pod).collect();
    let start = std::time::Instant::now();
    for b in &bodies {
        let v: Value = serde_json::from_str(b).unwrap();
        let checked = podgrant_sim::fields::check_body(info, b.as_bytes(), &v).unwrap();
        assert!(checked.problems.is_empty());
    }
    let check = start.elapsed() / n as u32;
    let start = std::time::Instant::now();
    for b in &bodies {
        let (code, _, _) = common::raw(
            &sim,
            "POST",
            "/api/v1/namespaces/default/pods",
            None,
            b.clone(),
        )
        .await;
        assert_eq!(code, 201);
    }
    let create = start.elapsed() / n as u32;
    println!("field validation of a typical pod: {check:?}; a whole in-process create: {create:?}");
}

/// kube-rs: an `Api<DynamicObject>` create with an unknown field succeeds (kube-rs sends no
/// fieldValidation, so the default Warn applies) and the stored object lacks the field.
#[tokio::test]
async fn kube_rs_create_with_unknown_field_is_pruned() {
    use kube::api::{Api, ApiResource, DynamicObject, PostParams};
    let sim = Sim::builder().seed(1).build();
    let client = common::client(&sim);
    let ar = ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "nginx", "colour": "blue"}]}
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(created.data["spec"]["containers"][0]
        .get("colour")
        .is_none());
    let stored = sim.get("pods", Some("default"), "web").unwrap();
    assert!(stored["spec"]["containers"][0].get("colour").is_none());
    assert_eq!(stored["spec"]["containers"][0]["image"], "nginx");
}

/// kubectl ≥ 1.27 sends `fieldValidation=Strict` on `create -f` (server-side validation, as
/// the sim's /openapi/v3 advertises); `--validate=false` sends `Ignore`.
#[tokio::test]
async fn kubectl_create_strict_fails_and_validate_false_prunes() {
    let sim = Sim::builder().seed(7).build();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kc, &server.url()).unwrap();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\nspec:\n  containers:\n  - name: c\n    image: nginx\n    imagePullPolice: Always\n",
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let (ok, _, err) = kubectl(&kc, &["create", "-f", m]).await;
    assert!(!ok);
    assert!(
        err.contains(r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagePullPolice""#),
        "{err}"
    );
    assert!(err.contains("Error from server (BadRequest)"), "{err}");
    assert!(sim.get("pods", Some("default"), "web-1").is_err());

    let (ok, out, err) = kubectl(&kc, &["create", "--validate=false", "-f", m]).await;
    assert!(ok, "{err}");
    assert!(out.contains("pod/web-1 created"), "{out}");
    let stored = sim.get("pods", Some("default"), "web-1").unwrap();
    let c = &stored["spec"]["containers"][0];
    assert!(c.get("imagePullPolice").is_none(), "{stored}");
    assert_eq!(c["image"], "nginx");
}

/// An object stored through the Rust API (which does not validate) with a field the typed
/// struct lacks: a Strict patch that brings no unknown field of its own succeeds, and the
/// stored object is the typed one (upstream stores only typed objects, so it never holds one).
#[tokio::test]
async fn strict_patch_reports_only_what_the_patch_brings() {
    let sim = Sim::builder().seed(1).build();
    sim.create(
        "pods",
        Some("default"),
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "i"}],
            "simOnly": 1}}),
    )
    .unwrap();
    let uri = "/api/v1/namespaces/default/pods/web?fieldValidation=Strict";
    let patch = r#"{"metadata":{"labels":{"a":"1"}}}"#;
    let ct = Some("application/merge-patch+json");
    let (code, headers, body) = common::raw(&sim, "PATCH", uri, ct, patch).await;
    assert_eq!(code, 200, "{body}");
    assert!(warnings(&headers).is_empty());
    let stored = sim.get("pods", Some("default"), "web").unwrap();
    assert_eq!(stored["metadata"]["labels"], json!({"a": "1"}));
    assert!(stored["spec"].get("simOnly").is_none(), "{stored}");
    let patch = r#"{"spec":{"other":2}}"#;
    let (code, _, body) = common::raw(&sim, "PATCH", uri, ct, patch).await;
    assert_eq!(code, 422, "{body}");
    let m = body["message"].as_str().unwrap();
    assert!(
        m.ends_with(r#"strict decoding error: unknown field "spec.other""#),
        "{m}"
    );
}

/// Warnings go out with the answer whatever it is: a create that decodes with an unknown field
/// and then fails (409, the name exists) still carries the Warning (apiserver
/// `warning.AddWarning` records into the request context; the headers are written with any
/// response).
#[tokio::test]
async fn warnings_go_out_with_a_later_error() {
    let sim = Sim::builder().seed(1).build();
    let pods = "/api/v1/namespaces/default/pods";
    let (code, headers, _) = common::raw(&sim, "POST", pods, None, POD_WITH_UNKNOWNS).await;
    assert_eq!(code, 201);
    assert_eq!(warnings(&headers).len(), 2);
    let (code, headers, body) = common::raw(&sim, "POST", pods, None, POD_WITH_UNKNOWNS).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["reason"], "AlreadyExists");
    assert_eq!(
        warnings(&headers),
        [
            r#"299 - "unknown field \"spec.containers[0].foo\"""#,
            r#"299 - "unknown field \"spec.bar\"""#,
        ]
    );
}

//! CustomResourceDefinitions against the sim, in-process with kube-rs: a `#[derive(CustomResource)]` type's own CRD accepted and served at once, CRUD/list/watch, pruning and type checks, the status and scale subresources, a `Controller` applying status with server-side apply, `Discovery`, a `Recorder` event on events.k8s.io/v1, and the CRD's deletion taking its objects along.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as RecorderEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use podgrant_sim::{Sim, Step};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A custom resource as a kube-rs user writes it.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Foo",
    namespaced,
    status = "FooStatus",
    shortname = "fo",
    category = "podgrant",
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size"),
    scale(
        spec_replicas_path = ".spec.size",
        status_replicas_path = ".status.observed"
    )
)]
pub struct FooSpec {
    size: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct FooStatus {
    ready: bool,
    observed: i32,
}

fn foo(name: &str, size: i32) -> Foo {
    Foo::new(name, FooSpec { size, note: None })
}

/// Create `Foo::crd()` exactly as generated; it comes back Established.
async fn install(client: &kube::Client) -> CustomResourceDefinition {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let made = crds
        .create(&PostParams::default(), &Foo::crd())
        .await
        .expect("the generated CRD is accepted as is");
    let conditions = made
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for want in ["NamesAccepted", "Established"] {
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == want && c.status == "True"),
            "{want} in {conditions:?}"
        );
    }
    made
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_derived_crd_is_served_at_once_with_crud_list_status_scale_and_pruning() {
    let sim = Sim::builder().seed(21).build();
    sim.apply(&Step::create_namespace("crd")).unwrap();
    let client = common::client(&sim);
    // Before the CRD: not served.
    let foos: Api<Foo> = Api::namespaced(client.clone(), "crd");
    assert!(foos.list(&ListParams::default()).await.is_err());
    install(&client).await;

    // Served in the same request cycle: no wait between the CRD's create and the first object.
    let made = foos
        .create(&PostParams::default(), &foo("a", 1))
        .await
        .unwrap();
    assert_eq!(made.spec.size, 1);
    assert_eq!(made.metadata.generation, Some(1));
    foos.create(&PostParams::default(), &foo("b", 2))
        .await
        .unwrap();
    let names: Vec<String> = foos
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|f| f.name_any())
        .collect();
    assert_eq!(names, ["a", "b"]);

    // Update: the spec changes and generation moves; the main resource ignores status.
    let mut a = foos.get("a").await.unwrap();
    a.spec.size = 3;
    a.status = Some(FooStatus {
        ready: true,
        observed: 9,
    });
    let a = foos.replace("a", &PostParams::default(), &a).await.unwrap();
    assert_eq!((a.spec.size, a.metadata.generation), (3, Some(2)));
    assert_eq!(a.status, None, "status goes through /status only");
    // The status subresource changes only status (and not the generation).
    let st = foos
        .patch_status(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 100}, "status": {"ready": true, "observed": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(st.spec.size, 3);
    assert_eq!(st.metadata.generation, Some(2));
    assert_eq!(
        st.status,
        Some(FooStatus {
            ready: true,
            observed: 3
        })
    );

    // Scale subresource at the CRD's paths (`customresource_handler.go` scale).
    let scale = foos.get_scale("a").await.unwrap();
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(3));
    assert_eq!(scale.status.map(|s| s.replicas), Some(3));
    foos.patch_scale(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(foos.get("a").await.unwrap().spec.size, 5);

    // Pruning (schema/pruning): unknown fields are dropped and warned about; metadata keeps
    // only ObjectMeta. A wrong type is 422 with the schema's wording.
    let (code, headers, body) = common::raw(
        &sim,
        "POST",
        "/apis/example.com/v1/namespaces/crd/foos",
        Some("application/json"),
        json!({"apiVersion": "example.com/v1", "kind": "Foo",
               "metadata": {"name": "c", "junk": 1},
               "spec": {"size": 1, "extra": {"x": 1}}, "bogus": true})
        .to_string(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(body["spec"].get("extra").is_none() && body.get("bogus").is_none());
    assert!(body["metadata"].get("junk").is_none());
    let warnings: Vec<&str> = headers
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(r#"unknown field \"spec.extra\""#)),
        "{warnings:?}"
    );
    assert!(sim.get("foos", Some("crd"), "c").unwrap()["spec"]
        .get("extra")
        .is_none());
    let (code, _, body) = common::raw(
        &sim,
        "POST",
        "/apis/example.com/v1/namespaces/crd/foos?fieldValidation=Strict",
        Some("application/json"),
        json!({"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "d"},
               "spec": {"size": 1, "extra": 1}})
        .to_string(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains(r#"strict decoding error: unknown field "spec.extra""#));
    let (code, _, body) = common::raw(
        &sim,
        "POST",
        "/apis/example.com/v1/namespaces/crd/foos",
        Some("application/json"),
        json!({"apiVersion": "example.com/v1", "kind": "Foo", "metadata": {"name": "e"},
               "spec": {"size": "big"}})
        .to_string(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.size");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("spec.size in body must be of type integer"));

    // Delete, then the namespace's other objects still list.
    foos.delete("b", &DeleteParams::default()).await.unwrap();
    assert!(foos.get("b").await.is_err());
    assert_eq!(
        foos.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
}

/// Upstream: the apiextensions finalizer deletes every custom resource and the API goes with
/// the CRD (`pkg/controller/finalizer/crd_finalizer.go`); watchers see each object deleted.
#[tokio::test]
async fn watchers_see_objects_and_deleting_the_crd_removes_them_and_its_api() {
    let sim = Sim::builder().seed(22).build();
    sim.apply(&Step::create_namespace("crd")).unwrap();
    let client = common::client(&sim);
    install(&client).await;
    let foos: Api<Foo> = Api::namespaced(client.clone(), "crd");
    let all: Api<Foo> = Api::all(client.clone());
    let mut events = watcher::watcher(all, watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let mut created = false;
    let mut crd_deleted = false;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("the stream goes on");
        match ev {
            Ok(watcher::Event::InitDone) if !created => {
                foos.create(&PostParams::default(), &foo("w1", 1))
                    .await
                    .unwrap();
                foos.create(&PostParams::default(), &foo("w2", 2))
                    .await
                    .unwrap();
                created = true;
            }
            Ok(watcher::Event::Apply(f)) => {
                seen.push(format!("apply {}", f.name_any()));
                if seen.len() == 2 && !crd_deleted {
                    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
                    crds.delete("foos.example.com", &DeleteParams::default())
                        .await
                        .unwrap();
                    crd_deleted = true;
                }
            }
            Ok(watcher::Event::Delete(f)) => {
                seen.push(format!("delete {}", f.name_any()));
                if seen.len() == 4 {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["apply w1", "apply w2", "delete w1", "delete w2"]);
    assert!(sim.list("foos.example.com", None).is_empty());
    let (code, _, _) = common::raw(&sim, "GET", "/apis/example.com/v1/foos", None, "").await;
    assert_eq!(code, 404);
    let (_, _, groups) = common::raw(&sim, "GET", "/apis", None, "").await;
    assert!(!groups.to_string().contains("example.com"));
    // Recreated, it is served again and empty.
    install(&client).await;
    assert!(foos
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

async fn reconcile(obj: Arc<Foo>, api: Arc<Api<Foo>>) -> Result<Action, Failed> {
    // The status this controller owns, applied with server-side apply on /status.
    let status = json!({
        "apiVersion": "example.com/v1", "kind": "Foo",
        "status": {"ready": true, "observed": obj.spec.size},
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply("foo-controller").force(),
        &Patch::Apply(&status),
    )
    .await
    .map_err(|e| Failed(e.to_string()))?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Foo>, _: &Failed, _: Arc<Api<Foo>>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// A kube-runtime Controller on the custom resource applies its status with SSA; a second
/// manager applying a field the first owns gets 409 listing it, then takes it with force
/// (issue 12; upstream `fieldmanager` conflicts).
#[tokio::test]
async fn a_controller_applies_status_and_a_second_manager_conflicts_until_it_forces() {
    let sim = Sim::builder().seed(23).build();
    sim.apply(&Step::create_namespace("crd")).unwrap();
    let client = common::client(&sim);
    install(&client).await;
    let foos: Api<Foo> = Api::namespaced(client.clone(), "crd");
    let controller = tokio::spawn(
        Controller::new(foos.clone(), watcher::Config::default())
            .run(reconcile, error_policy, Arc::new(foos.clone()))
            .for_each(|_| async {}),
    );
    foos.create(&PostParams::default(), &foo("c1", 4))
        .await
        .unwrap();
    until("the controller's status", || {
        sim.get("foos", Some("crd"), "c1")
            .is_ok_and(|f| f.pointer("/status/observed") == Some(&json!(4)))
    })
    .await;
    controller.abort();

    // Spec by SSA: manager "alice" owns spec.size.
    let apply = |size: i32| {
        json!({"apiVersion": "example.com/v1", "kind": "Foo",
               "metadata": {"name": "s1"}, "spec": {"size": size}})
    };
    foos.patch("s1", &PatchParams::apply("alice"), &Patch::Apply(apply(1)))
        .await
        .unwrap();
    let err = foos
        .patch("s1", &PatchParams::apply("bob"), &Patch::Apply(apply(2)))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 409, "{status:?}");
    assert!(
        status.message.contains(".spec.size") && status.message.contains("alice"),
        "{}",
        status.message
    );
    let forced = foos
        .patch(
            "s1",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(apply(2)),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.size, 2);
    let managers: Vec<String> = forced
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(managers.contains(&"bob".to_string()), "{managers:?}");
}

#[tokio::test]
async fn discovery_finds_the_custom_resource_and_a_recorder_event_is_stored() {
    let sim = Sim::builder().seed(24).build();
    sim.apply(&Step::create_namespace("crd")).unwrap();
    let client = common::client(&sim);
    install(&client).await;

    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Foo")
        .expect("Discovery lists Foo");
    assert_eq!(
        (ar.group.as_str(), ar.version.as_str(), ar.plural.as_str()),
        ("example.com", "v1", "foos")
    );
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let subs: Vec<&str> = caps
        .subresources
        .iter()
        .map(|(s, _)| s.plural.as_str())
        .collect();
    assert_eq!(subs, ["scale", "status"]);
    assert!(discovery.has_group("events.k8s.io"));

    // kube-runtime's Recorder posts to events.k8s.io/v1 (not core/v1 events).
    let foos: Api<Foo> = Api::namespaced(client.clone(), "crd");
    let made = foos
        .create(&PostParams::default(), &foo("r1", 1))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), Reporter::from("foo-controller"));
    recorder
        .publish(
            &RecorderEvent {
                type_: EventType::Normal,
                reason: "Reconciled".into(),
                note: Some("all good".into()),
                action: "Reconcile".into(),
                secondary: None,
            },
            &made.object_ref(&()),
        )
        .await
        .unwrap();
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "crd");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1, "{:?}", list.items);
    let ev = &list.items[0];
    assert_eq!(ev.reason.as_deref(), Some("Reconciled"));
    assert_eq!(ev.note.as_deref(), Some("all good"));
    assert_eq!(
        ev.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("r1")
    );
    assert_eq!(ev.reporting_controller.as_deref(), Some("foo-controller"));
    // Stored apart from core/v1 events, which stay empty.
    assert!(sim.list("events", Some("crd")).is_empty());
    assert_eq!(sim.list("events.events.k8s.io", Some("crd")).len(), 1);
}

/// `ValidateCustomResourceDefinition`: a bad CRD is 422 naming the field.
#[tokio::test]
async fn an_invalid_crd_is_422() {
    let sim = Sim::builder().seed(25).build();
    let mut crd: Value = serde_json::to_value(Foo::crd()).unwrap();
    crd["metadata"]["name"] = json!("wrong.example.com");
    crd["spec"]["versions"][0]["storage"] = json!(false);
    let (code, _, body) = common::raw(
        &sim,
        "POST",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        Some("application/json"),
        crd.to_string(),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<&str> = body["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, ["metadata.name", "spec.versions"], "{body}");
    let (code, _, _) = common::raw(&sim, "GET", "/apis/example.com/v1", None, "").await;
    assert_eq!(code, 404);
}

const CRD_YAML: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.shop.example.com
spec:
  group: shop.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Count
      type: integer
      jsonPath: .spec.count
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              color: {type: string}
              count: {type: integer}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

const WIDGET_YAML: &str = r#"apiVersion: shop.example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: default
spec:
  color: blue
  count: 7
"#;

/// Real kubectl over HTTPS with the written kubeconfig: `apply -f` a CRD, create an object of
/// it, `get` shows its printer columns (by plural and short name), `api-resources` lists it.
#[tokio::test]
async fn kubectl_applies_a_crd_and_gets_its_objects_with_printer_columns() {
    let sim = Sim::builder().seed(26).build();
    let mut server = sim.serve_https(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kc).unwrap();
    let crd = dir.path().join("crd.yaml");
    std::fs::write(&crd, CRD_YAML).unwrap();
    let widget = dir.path().join("widget.yaml");
    std::fs::write(&widget, WIDGET_YAML).unwrap();

    let (ok, out, err) = common::run_kubectl(&kc, &["apply", "-f", crd.to_str().unwrap()]).await;
    assert!(ok, "{out} {err}");
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.shop.example.com created"
        ),
        "{out}"
    );
    let (ok, out, err) =
        common::run_kubectl(&kc, &["create", "-f", widget.to_str().unwrap()]).await;
    assert!(ok, "{out} {err}");
    assert!(out.contains("widget.shop.example.com/w1 created"), "{out}");

    for name in ["widgets", "wdg", "widget.shop.example.com"] {
        let (ok, out, err) = common::run_kubectl(&kc, &["get", name]).await;
        assert!(ok, "get {name}: {out} {err}");
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["NAME", "COLOR", "COUNT"], "{out}");
        assert_eq!(lines[1], ["w1", "blue", "7"], "{out}");
    }
    let (ok, out, err) =
        common::run_kubectl(&kc, &["api-resources", "--api-group=shop.example.com"]).await;
    assert!(ok, "{out} {err}");
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("widgets"))
        .unwrap_or_else(|| panic!("{out}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["widgets", "wdg", "shop.example.com/v1", "true", "Widget"],
        "{out}"
    );
    // `kubectl get -w` prints the rows as they change: a second widget created while it
    // watches shows up with its columns.
    let mut watch = tokio::process::Command::new(common::kubectl())
        .arg("--kubeconfig")
        .arg(&kc)
        .args(["get", "widgets", "-w"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs");
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut made = false;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no w2 row from kubectl get -w: {seen:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("kubectl get -w ended: {seen:?}"));
        let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        seen.push(line);
        if cells.first().map(String::as_str) == Some("w1") && !made {
            let w2 = WIDGET_YAML
                .replace("name: w1", "name: w2")
                .replace("count: 7", "count: 8");
            sim.create(
                "widgets",
                Some("default"),
                serde_yaml_ng::from_str(&w2).unwrap(),
            )
            .unwrap();
            made = true;
        }
        if cells == ["w2", "blue", "8"] {
            break;
        }
    }
    let _ = watch.kill().await;

    // An unknown field under kubectl's default (Strict) is refused by the server.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        WIDGET_YAML
            .replace("name: w1", "name: w2")
            .replace("count: 7", "count: 7\n  shape: round"),
    )
    .unwrap();
    let (ok, out, err) = common::run_kubectl(&kc, &["create", "-f", bad.to_str().unwrap()]).await;
    assert!(!ok, "{out}");
    assert!(err.contains(r#"unknown field "spec.shape""#), "{err}");
    server.shutdown();
}

/// A watch on a custom resource gets its objects' deletions, then ends cleanly when the CRD
/// goes (its API is torn down; a re-watch is 404).
#[tokio::test]
async fn a_watch_on_a_custom_resource_ends_after_its_crd_goes() {
    let sim = Sim::builder().seed(27).build();
    sim.apply(&Step::create_namespace("crd")).unwrap();
    let client = common::client(&sim);
    install(&client).await;
    let foos: Api<Foo> = Api::namespaced(client.clone(), "crd");
    foos.create(&PostParams::default(), &foo("x", 1))
        .await
        .unwrap();
    let resp = common::send(
        &sim,
        "GET",
        "/apis/example.com/v1/namespaces/crd/foos?watch=true",
        None,
        "",
    )
    .await;
    assert_eq!(resp.status(), 200);
    let (code, _, body) = common::raw(
        &sim,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/foos.example.com",
        None,
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (lines, end) = common::watch_lines(resp.into_body(), Duration::from_secs(5)).await;
    assert_eq!(common::types(&lines), ["ADDED", "DELETED"], "{lines:?}");
    assert!(matches!(end, common::WatchEnd::Clean), "{end:?}");
}

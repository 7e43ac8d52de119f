//! kube-runtime's `Controller` with its `finalizer` helper against the sim: the finalizer is added
//! (a JSON patch testing an absent `metadata.finalizers` against null), a delete is held by it
//! until the cleanup ran, and removing it lets the object go — as on a real API server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::watcher;
use kube::ResourceExt;
use podgrant_sim::{Sim, Step};

const FINALIZER: &str = "podgrant.io/cleanup";

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

struct Ctx {
    api: Api<Secret>,
    log: Mutex<Vec<String>>,
}

async fn reconcile(obj: Arc<Secret>, ctx: Arc<Ctx>) -> Result<Action, Failed> {
    let log = |what: String| ctx.log.lock().unwrap().push(what);
    finalizer(&ctx.api, FINALIZER, obj, |event| async {
        match event {
            Event::Apply(s) => log(format!("apply {}", s.name_any())),
            Event::Cleanup(s) => log(format!("cleanup {}", s.name_any())),
        }
        Ok::<_, Failed>(Action::await_change())
    })
    .await
    .map_err(|e| Failed(e.to_string()))
}

fn error_policy(_: Arc<Secret>, _: &Failed, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// Poll `check` (reads of the sim's store, no sleeps in between other than yielding to the
/// controller) until it holds or 20 s pass.
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
async fn a_controllers_finalizer_holds_a_delete_until_its_cleanup_ran() {
    let sim = Sim::builder().seed(9).build();
    sim.apply(&Step::create_namespace("fin")).unwrap();
    let client = common::client(&sim);
    let api: Api<Secret> = Api::namespaced(client, "fin");
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        log: Mutex::new(Vec::new()),
    });
    let controller = tokio::spawn(
        Controller::new(api.clone(), watcher::Config::default())
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|_| async {}),
    );

    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "held"}, "stringData": {"k": "v"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();
    let has_finalizer = |sim: &Sim| {
        sim.get("secrets", Some("fin"), "held").is_ok_and(|s| {
            s.pointer("/metadata/finalizers")
                .is_some_and(|f| f == &serde_json::json!([FINALIZER]))
        })
    };
    until("the finalizer added by the helper's JSON patch", || {
        has_finalizer(&sim)
    })
    .await;
    until("the apply event", || {
        ctx.log.lock().unwrap().contains(&"apply held".to_string())
    })
    .await;

    // A delete is held: the secret stays, marked, until the cleanup removed the finalizer.
    api.delete("held", &DeleteParams::default()).await.unwrap();
    until("the cleanup and the secret gone", || {
        sim.get("secrets", Some("fin"), "held").is_err()
    })
    .await;
    let log = ctx.log.lock().unwrap().clone();
    assert_eq!(
        log.last().map(String::as_str),
        Some("cleanup held"),
        "{log:?}"
    );
    controller.abort();
}

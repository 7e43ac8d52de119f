//! resourceVersion and resourceVersionMatch on list and watch, checked against kube-apiserver's answers (raw HTTP and kube-rs).

mod common;

use std::time::Duration;

use common::{raw, send, types, watch_lines, WatchEnd};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, VersionMatch};
use podgrant_sim::{Sim, Step};
use serde_json::Value;
use tokio::time::Instant;

/// The RVs of a small history: `x` (app=web) created, then compacted away as history, then `a`
/// (app=web) created and modified, `b` (app=db) created, `x` deleted.
struct History {
    sim: Sim,
    x: u64,
    a: u64,
    a_modified: u64,
    b: u64,
    now: u64,
}

fn history() -> History {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "x").labels([("app", "web")]))
        .unwrap();
    let x = sim.resource_version();
    // History before this point is gone: an Exact read before `x` is 410 from here on.
    sim.compact();
    sim.apply(&Step::create_pod("ns", "a").labels([("app", "web")]))
        .unwrap();
    let a = sim.resource_version();
    sim.apply(&Step::set_pod_ready("ns", "a", false)).unwrap();
    let a_modified = sim.resource_version();
    sim.apply(&Step::create_pod("ns", "b").labels([("app", "db")]))
        .unwrap();
    let b = sim.resource_version();
    sim.apply(&Step::delete_pod("ns", "x")).unwrap();
    let now = sim.resource_version();
    History {
        sim,
        x,
        a,
        a_modified,
        b,
        now,
    }
}

/// What a case must answer.
enum Want {
    /// 200 with `metadata.resourceVersion` = `rv` and these items as `(name, item resourceVersion)`.
    List {
        rv: u64,
        items: Vec<(&'static str, u64)>,
    },
    /// A `Status` with this code and reason whose message contains `message`, and (if set)
    /// `details.causes[0]` with this `reason` and `field`.
    Status {
        code: u16,
        reason: &'static str,
        message: String,
        cause: Option<(&'static str, &'static str)>,
    },
}

fn status(code: u16, reason: &'static str, message: impl Into<String>) -> Want {
    Want::Status {
        code,
        reason,
        message: message.into(),
        cause: None,
    }
}

fn invalid(message: &str, cause: &'static str) -> Want {
    Want::Status {
        code: 422,
        reason: "Invalid",
        message: format!(
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: {message}"
        ),
        cause: Some((cause, "resourceVersionMatch")),
    }
}

fn too_large(requested: u64, current: u64) -> Want {
    Want::Status {
        code: 504,
        reason: "Timeout",
        message: format!("Timeout: Too large resource version: {requested}, current: {current}"),
        cause: Some(("ResourceVersionTooLarge", "")),
    }
}

fn check(name: &str, code: u16, headers: &http::HeaderMap, body: &Value, want: &Want) {
    match want {
        Want::List { rv, items } => {
            assert_eq!(code, 200, "{name}: {body}");
            assert_eq!(
                body["metadata"]["resourceVersion"],
                rv.to_string(),
                "{name}"
            );
            let got: Vec<(String, u64)> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    let m = &i["metadata"];
                    let rv = m["resourceVersion"].as_str().unwrap().parse().unwrap();
                    (m["name"].as_str().unwrap().to_string(), rv)
                })
                .collect();
            let want: Vec<(String, u64)> =
                items.iter().map(|(n, rv)| (n.to_string(), *rv)).collect();
            assert_eq!(got, want, "{name}");
        }
        Want::Status {
            code: want_code,
            reason,
            message,
            cause,
        } => {
            assert_eq!(code, *want_code, "{name}: {body}");
            assert_eq!(body["kind"], "Status", "{name}");
            assert_eq!(body["code"], *want_code, "{name}");
            assert_eq!(body["reason"], *reason, "{name}");
            let got = body["message"].as_str().unwrap_or("");
            assert!(got.contains(message.as_str()), "{name}: {got:?}");
            if let Some((cause, field)) = cause {
                let c = &body["details"]["causes"][0];
                assert_eq!(c["reason"], *cause, "{name}: {body}");
                assert_eq!(c["field"].as_str().unwrap_or(""), *field, "{name}");
            }
            if *want_code == 504 {
                // NewTooLargeResourceVersionError: retry after 1 s, in the Status and the header.
                assert_eq!(body["details"]["retryAfterSeconds"], 1, "{name}");
                assert_eq!(
                    body["details"]["causes"][0]["message"],
                    "Too large resource version"
                );
                assert_eq!(headers["retry-after"], "1", "{name}");
            }
        }
    }
}

/// The API conventions' "Semantics for get and list" table, the `ValidateListOptions` rules
/// (apimachinery `pkg/apis/meta/internalversion/validation`, answered by the list handler in
/// `apiserver/pkg/endpoints/handlers/get.go` as 422 against `ListOptions`), the etcd3 store's 410
/// for a compacted revision (`pkg/storage/etcd3/errors.go`: "The resourceVersion for the provided
/// list is too old.") and its 400 for a resourceVersion with `continue`, and the watch cache's 3 s
/// freshness wait ending in `storage.NewTooLargeResourceVersionError` (`pkg/storage/errors.go`).
#[tokio::test(start_paused = true)]
async fn list_resource_version_table() {
    let h = history();
    let (x, a, am, b, now) = (h.x, h.a, h.a_modified, h.b, h.now);
    let latest = || Want::List {
        rv: now,
        items: vec![("a", am), ("b", b)],
    };
    let page1 = {
        let (_, _, v) = raw(&h.sim, "GET", "/api/v1/pods?limit=1", None, "").await;
        v["metadata"]["continue"].as_str().unwrap().to_string()
    };
    let cases: Vec<(&str, String, Want)> = vec![
        // Unset: most recent. "0": any (the sim serves the most recent).
        ("unset", String::new(), latest()),
        ("any", "resourceVersion=0".into(), latest()),
        (
            "any, NotOlderThan",
            "resourceVersion=0&resourceVersionMatch=NotOlderThan".into(),
            latest(),
        ),
        // NotOlderThan (explicit or legacy) an RV the store has passed: the most recent.
        ("legacy not older than", format!("resourceVersion={a}"), latest()),
        (
            "NotOlderThan an old RV",
            format!("resourceVersion={x}&resourceVersionMatch=NotOlderThan"),
            latest(),
        ),
        (
            "NotOlderThan the current RV",
            format!("resourceVersion={now}&resourceVersionMatch=NotOlderThan"),
            latest(),
        ),
        // Exact: the collection as it was, metadata.resourceVersion = N.
        (
            "Exact at a's creation",
            format!("resourceVersion={a}&resourceVersionMatch=Exact"),
            Want::List {
                rv: a,
                items: vec![("a", a), ("x", x)],
            },
        ),
        (
            "Exact at the compaction point",
            format!("resourceVersion={x}&resourceVersionMatch=Exact"),
            Want::List {
                rv: x,
                items: vec![("x", x)],
            },
        ),
        (
            "Exact with a label selector",
            format!("resourceVersion={b}&resourceVersionMatch=Exact&labelSelector=app%3Dweb"),
            Want::List {
                rv: b,
                items: vec![("a", am), ("x", x)],
            },
        ),
        (
            "Exact with a field selector",
            format!("resourceVersion={b}&resourceVersionMatch=Exact&fieldSelector=metadata.name%3Db"),
            Want::List {
                rv: b,
                items: vec![("b", b)],
            },
        ),
        (
            "Exact at the current RV",
            format!("resourceVersion={now}&resourceVersionMatch=Exact"),
            latest(),
        ),
        (
            "Exact before the window",
            format!("resourceVersion={}&resourceVersionMatch=Exact", x - 1),
            status(410, "Expired", "The resourceVersion for the provided list is too old."),
        ),
        // ValidateListOptions.
        (
            "match without RV",
            "resourceVersionMatch=NotOlderThan".into(),
            invalid(
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                "FieldValueForbidden",
            ),
        ),
        (
            "Exact without RV",
            "resourceVersionMatch=Exact&resourceVersion=".into(),
            invalid(
                "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                "FieldValueForbidden",
            ),
        ),
        (
            "Exact at 0",
            "resourceVersion=0&resourceVersionMatch=Exact".into(),
            invalid(
                "Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                "FieldValueForbidden",
            ),
        ),
        (
            "match with continue",
            format!("resourceVersion={a}&resourceVersionMatch=Exact&continue={page1}"),
            invalid(
                "Forbidden: resourceVersionMatch is forbidden when continue is provided",
                "FieldValueForbidden",
            ),
        ),
        (
            "unsupported match",
            format!("resourceVersion={a}&resourceVersionMatch=Newest"),
            invalid(
                "Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\"",
                "FieldValueNotSupported",
            ),
        ),
        (
            "RV with continue",
            format!("resourceVersion={a}&continue={page1}"),
            status(
                400,
                "BadRequest",
                "specifying resource version is not allowed when using continue",
            ),
        ),
        // Ahead of the store: wait 3 s, then 504 with the ResourceVersionTooLarge cause.
        (
            "legacy RV ahead",
            format!("resourceVersion={}", now + 5),
            too_large(now + 5, now),
        ),
        (
            "NotOlderThan ahead",
            format!("resourceVersion={}&resourceVersionMatch=NotOlderThan", now + 1),
            too_large(now + 1, now),
        ),
        (
            "Exact ahead",
            format!("resourceVersion={}&resourceVersionMatch=Exact", now + 2),
            too_large(now + 2, now),
        ),
    ];
    for (name, query, want) in &cases {
        let started = Instant::now();
        let (code, headers, body) =
            raw(&h.sim, "GET", &format!("/api/v1/pods?{query}"), None, "").await;
        check(name, code, &headers, &body, want);
        let waited = started.elapsed();
        if code == 504 {
            assert!(waited >= Duration::from_secs(3), "{name}: {waited:?}");
        } else {
            assert!(waited < Duration::from_secs(1), "{name}: {waited:?}");
        }
    }
    // Nothing above changed the store.
    assert_eq!(h.sim.resource_version(), now);
}

/// Paging an Exact list (API concepts, "Retrieving large results sets in chunks": the continue
/// token keeps the list consistent at the first page's RV) — every page is read at N.
#[tokio::test(start_paused = true)]
async fn exact_list_pages_stay_at_the_requested_rv() {
    let h = history();
    let mut uri = format!(
        "/api/v1/namespaces/ns/pods?resourceVersion={}&resourceVersionMatch=Exact&limit=1",
        h.a
    );
    let mut names = Vec::new();
    for page in 0.. {
        assert!(page < 5, "too many pages");
        let (code, _, v) = raw(&h.sim, "GET", &uri, None, "").await;
        assert_eq!(code, 200, "{v}");
        assert_eq!(v["metadata"]["resourceVersion"], h.a.to_string());
        for i in v["items"].as_array().unwrap() {
            names.push(i["metadata"]["name"].as_str().unwrap().to_string());
        }
        match v["metadata"]["continue"].as_str() {
            Some(c) => uri = format!("/api/v1/namespaces/ns/pods?limit=1&continue={c}"),
            None => break,
        }
        // A write between pages does not show up in later ones.
        h.sim
            .apply(&Step::create_pod("ns", &format!("late-{page}")))
            .unwrap();
    }
    assert_eq!(names, ["a", "x"]);
}

/// The watch cache's wait wakes on the commit it waits for (`waitUntilFreshAndBlock` waits on
/// the cache's condition variable, not a poll): the list is answered as soon as the store
/// reaches N, and the wait holds no lock (the write that ends it gets through meanwhile).
#[tokio::test(start_paused = true)]
async fn a_list_ahead_of_the_store_is_answered_when_the_store_catches_up() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let target = sim.resource_version() + 2;
    let started = Instant::now();
    let uri = format!("/api/v1/pods?resourceVersion={target}&resourceVersionMatch=Exact");
    let writes = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sim.apply(&Step::create_pod("ns", "b")).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        sim.apply(&Step::create_pod("ns", "c")).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        sim.apply(&Step::create_pod("ns", "d")).unwrap();
    };
    let list = async {
        let answer = raw(&sim, "GET", &uri, None, "").await;
        (answer, started.elapsed())
    };
    let (((code, _, v), waited), ()) = tokio::join!(list, writes);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["resourceVersion"], target.to_string());
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    // Answered at the second write (1 s), not at the third nor at the 3 s timeout.
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
}

/// A streaming list (`sendInitialEvents=true`) at an RV the store has not reached: the cacher
/// waits for it (`waitUntilWatchCacheFreshAndForceAllEvents`) and, when the 3 s run out, the
/// watch answers 200 with the TooLargeResourceVersion Status as its one ERROR event
/// (`newErrWatcher` in `apiserver/pkg/storage/cacher/cacher.go`).
#[tokio::test(start_paused = true)]
async fn streaming_list_ahead_of_the_store_waits_then_sends_the_504_status() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let now = sim.resource_version();
    let uri = format!(
        "/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={}",
        now + 3
    );
    let started = Instant::now();
    let resp = send(&sim, "GET", &uri, None, "").await;
    assert_eq!(resp.status(), 200);
    let (lines, end) = watch_lines(resp.into_body(), Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert_eq!(end, WatchEnd::Clean);
    assert_eq!(types(&lines), ["ERROR"]);
    let ev: Value = serde_json::from_str(&lines[0]).unwrap();
    let s = &ev["object"];
    assert_eq!(s["code"], 504);
    assert_eq!(s["reason"], "Timeout");
    assert_eq!(
        s["message"],
        format!(
            "Timeout: Too large resource version: {}, current: {now}",
            now + 3
        )
    );
    assert_eq!(
        s["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    assert_eq!(s["details"]["retryAfterSeconds"], 1);

    // Reached in time: the initial events, then the bookmark at an RV not older than asked.
    let target = sim.resource_version() + 1;
    let uri = format!(
        "/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&resourceVersion={target}"
    );
    let write = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.apply(&Step::create_pod("ns", "b")).unwrap();
    };
    let (resp, ()) = tokio::join!(send(&sim, "GET", &uri, None, ""), write);
    let (lines, _) = watch_lines(resp.into_body(), Duration::from_secs(1)).await;
    assert_eq!(types(&lines), ["ADDED", "ADDED", "BOOKMARK"]);
    let bm: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(
        bm["object"]["metadata"]["resourceVersion"],
        target.to_string()
    );
}

/// A plain watch at a future RV starts at once and sends only the events after that RV: the
/// cacher waits for freshness only for `sendInitialEvents` ("otherwise, we allow for
/// establishing the connection because the clients can wait for events without unnecessary
/// blocking", `waitUntilWatchCacheFreshAndForceAllEvents`), and a cacheWatcher drops events
/// not newer than its start RV.
#[tokio::test(start_paused = true)]
async fn plain_watch_at_a_future_rv_starts_and_sends_events_after_it() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let from = sim.resource_version() + 2;
    let resp = send(
        &sim,
        "GET",
        &format!("/api/v1/pods?watch=true&resourceVersion={from}"),
        None,
        "",
    )
    .await;
    assert_eq!(resp.status(), 200);
    for n in ["b", "c", "d"] {
        sim.apply(&Step::create_pod("ns", n)).unwrap();
    }
    let (lines, end) = watch_lines(resp.into_body(), Duration::from_secs(5)).await;
    assert_eq!(end, WatchEnd::StillOpen);
    assert_eq!(types(&lines), ["ADDED"]);
    let ev: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(ev["object"]["metadata"]["name"], "d");
}

/// kube-rs `Api::list` with `VersionMatch::Exact` (its own `ListParams`) gets the collection as
/// it was at N (API conventions, "Semantics for get and list": Exact).
#[tokio::test(start_paused = true)]
async fn kube_list_exact_returns_the_old_items() {
    let h = history();
    let pods: Api<Pod> = Api::namespaced(common::client(&h.sim), "ns");
    let lp = ListParams {
        resource_version: Some(h.a.to_string()),
        version_match: Some(VersionMatch::Exact),
        ..ListParams::default()
    };
    let list = pods.list(&lp).await.unwrap();
    assert_eq!(list.metadata.resource_version, Some(h.a.to_string()));
    let got: Vec<(String, String)> = list
        .items
        .iter()
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.metadata.resource_version.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a".to_string(), h.a.to_string()),
            ("x".to_string(), h.x.to_string())
        ]
    );
    // a as created (ready), not as modified later.
    let a = &list.items[0];
    let ready = a.status.as_ref().unwrap().conditions.as_ref().unwrap();
    assert!(ready
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"));
}

/// The 504 reaches kube-rs as `Error::Api` with code 504 and the `ResourceVersionTooLarge`
/// cause — what client-go's reflector checks (`storage.IsTooLargeResourceVersion`,
/// `apiserver/pkg/storage/errors.go`).
#[tokio::test(start_paused = true)]
async fn kube_list_ahead_of_the_store_is_a_504_error_response() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let now = sim.resource_version();
    let pods: Api<Pod> = Api::all(common::client(&sim));
    let lp = ListParams {
        resource_version: Some((now + 10).to_string()),
        version_match: Some(VersionMatch::NotOlderThan),
        ..ListParams::default()
    };
    let started = Instant::now();
    let err = pods.list(&lp).await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(3));
    let kube::Error::Api(s) = err else {
        panic!("expected an ErrorResponse, got {err:?}");
    };
    assert_eq!(s.code, 504);
    assert_eq!(s.reason, "Timeout");
    assert_eq!(
        s.message,
        format!(
            "Timeout: Too large resource version: {}, current: {now}",
            now + 10
        )
    );
    let details = s.details.as_ref().unwrap();
    assert_eq!(details.causes[0].reason, "ResourceVersionTooLarge");
    assert_eq!(details.retry_after_seconds, 1);
}

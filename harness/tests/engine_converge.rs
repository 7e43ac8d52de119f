//! The engine against the in-process sim with the MemoryStore: it converges on every kind of change.

mod engine_support;

use std::sync::Arc;

use engine_support::*;
use podgrant_core::store::memory::MemoryStore;
use podgrant_sim::{Fault, FaultPlan, FaultRule, Step};

paused_tests! {
    converges_on_create_delete_relabel_readiness_terminating_and_host_network,
    ip_reuse_across_services_moves_the_grant,
    restarted_engine_drops_accounts_of_a_service_deleted_while_it_was_down,
    bad_annotations_post_an_event_and_leave_other_services_alone,
    only_the_secrets_services_name_are_watched_and_switching_secrets_revokes_nothing,
    many_named_secrets_do_not_delay_the_pods_watch,
}

async fn converges_on_create_delete_relabel_readiness_terminating_and_host_network() {
    let sim = sim();
    let store = MemoryStore::new();
    opt_in(&sim, "web", "web", "apps_web_ro", "apps", "SELECT");
    pod(&sim, "web-1", "web");
    pod(&sim, "web-2", "web");
    pod(&sim, "other-1", "other");
    let engine = start(&sim, Arc::new(store.clone()), config());
    let (ip1, ip2) = (pod_ip(&sim, "web-1"), pod_ip(&sim, "web-2"));

    wait_until("two accounts", LONG, || {
        account_keys(&store) == set(&[("apps_web_ro", ip1), ("apps_web_ro", ip2)])
    })
    .await;
    let acc = accounts(&store);
    assert_eq!(
        acc[&("apps_web_ro".to_string(), ip1)]["apps"],
        ["SELECT".to_string()].into_iter().collect()
    );

    // Not ready → dropped; ready again → back.
    sim.apply(&Step::set_pod_ready(NS, "web-1", false)).unwrap();
    wait_until("web-1 dropped when not ready", LONG, || {
        account_keys(&store) == set(&[("apps_web_ro", ip2)])
    })
    .await;
    sim.apply(&Step::set_pod_ready(NS, "web-1", true)).unwrap();
    wait_until("web-1 back when ready", LONG, || {
        account_keys(&store).len() == 2
    })
    .await;

    // Relabelled out of the selector → dropped.
    sim.apply(&Step::relabel_pod(NS, "web-2", [("app", "other")]))
        .unwrap();
    wait_until("web-2 dropped when relabelled", LONG, || {
        account_keys(&store) == set(&[("apps_web_ro", ip1)])
    })
    .await;

    // Terminating → dropped.
    sim.apply(&Step::set_pod_terminating(NS, "web-1")).unwrap();
    wait_until("web-1 dropped when terminating", LONG, || {
        account_keys(&store).is_empty()
    })
    .await;

    // A hostNetwork pod is never granted; a normal one created beside it is.
    sim.apply(
        &Step::create_pod(NS, "web-h")
            .labels([("app", "web")])
            .host_network(true)
            .ip("10.9.9.9"),
    )
    .unwrap();
    pod(&sim, "web-3", "web");
    let ip3 = pod_ip(&sim, "web-3");
    wait_until("only web-3", LONG, || {
        account_keys(&store) == set(&[("apps_web_ro", ip3)])
    })
    .await;

    // Pod deleted → dropped; Service deleted → everything dropped.
    pod(&sim, "web-4", "web");
    let ip4 = pod_ip(&sim, "web-4");
    wait_until("web-4 granted", LONG, || {
        account_keys(&store).contains(&("apps_web_ro".into(), ip4))
    })
    .await;
    sim.apply(&Step::delete_pod(NS, "web-3")).unwrap();
    wait_until("web-3 dropped when deleted", LONG, || {
        account_keys(&store) == set(&[("apps_web_ro", ip4)])
    })
    .await;
    sim.apply(&Step::delete_service(NS, "web")).unwrap();
    wait_until("all dropped with the service", LONG, || {
        account_keys(&store).is_empty()
    })
    .await;
    let snap = store.snapshot();
    assert!(snap.ledger.is_empty(), "ledger released");
    let m = engine.snapshot();
    assert!(m.reconciles >= 6, "{m:?}");
    assert_eq!(m.store_errors_transient + m.store_errors_permanent, 0);
    engine.stop().await;
}

async fn ip_reuse_across_services_moves_the_grant() {
    let sim = sim();
    let store = MemoryStore::new();
    opt_in(&sim, "a", "a", "apps_user_a", "apps_db_a", "SELECT");
    opt_in(&sim, "b", "b", "apps_user_b", "apps_db_b", "SELECT,INSERT");
    pod(&sim, "a-1", "a");
    let engine = start(&sim, Arc::new(store.clone()), config());
    let ip = pod_ip(&sim, "a-1");
    wait_until("a's account", LONG, || {
        account_keys(&store) == set(&[("apps_user_a", ip)])
    })
    .await;

    // a-1 goes away and its IP is given to a pod of service b.
    sim.apply(&Step::recycle_ip(NS, "a-1", "b-1").labels([("app", "b")]))
        .unwrap();
    assert_eq!(pod_ip(&sim, "b-1"), ip);
    wait_until("b's account at the reused IP, a's gone", LONG, || {
        account_keys(&store) == set(&[("apps_user_b", ip)])
    })
    .await;
    let acc = accounts(&store);
    assert_eq!(
        acc[&("apps_user_b".to_string(), ip)]
            .keys()
            .collect::<Vec<_>>(),
        vec!["apps_db_b"]
    );
    engine.stop().await;
}

async fn restarted_engine_drops_accounts_of_a_service_deleted_while_it_was_down() {
    let sim = sim();
    let store = MemoryStore::new();
    opt_in(&sim, "gone", "gone", "apps_gone_u", "apps_db", "SELECT");
    opt_in(&sim, "stays", "stays", "apps_stays_u", "apps_db", "SELECT");
    pod(&sim, "gone-1", "gone");
    pod(&sim, "stays-1", "stays");
    let (g, s) = (pod_ip(&sim, "gone-1"), pod_ip(&sim, "stays-1"));
    let first = start(&sim, Arc::new(store.clone()), config());
    wait_until("both granted", LONG, || {
        account_keys(&store) == set(&[("apps_gone_u", g), ("apps_stays_u", s)])
    })
    .await;
    first.kill().await;

    sim.apply(&Step::delete_service(NS, "gone")).unwrap();
    sim.apply(&Step::delete_pod(NS, "gone-1")).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    assert_eq!(
        account_keys(&store).len(),
        2,
        "nobody running: nothing changes"
    );

    let second = start(&sim, Arc::new(store.clone()), config());
    wait_until(
        "the deleted service's account dropped at startup",
        LONG,
        || account_keys(&store) == set(&[("apps_stays_u", s)]),
    )
    .await;
    assert!(!store
        .snapshot()
        .ledger
        .keys()
        .any(|k| k.user == "apps_gone_u"));
    second.stop().await;
}

async fn bad_annotations_post_an_event_and_leave_other_services_alone() {
    let sim = sim();
    let store = MemoryStore::new();
    opt_in(&sim, "good", "good", "apps_good_u", "apps_db", "SELECT");
    sim.apply(&Step::create_secret(NS, "evil-db", [("password", "x")]))
        .unwrap();
    sim.apply(
        &Step::create_service(NS, "evil", [("app", "evil")]).annotations(grant_annotations(
            "x'; DROP USER root; --",
            "apps_db",
            "ALL PRIVILEGES",
            "evil-db",
        )),
    )
    .unwrap();
    pod(&sim, "good-1", "good");
    pod(&sim, "evil-1", "evil");
    let ip = pod_ip(&sim, "good-1");
    let engine = start(&sim, Arc::new(store.clone()), config());
    wait_until("good granted", LONG, || {
        account_keys(&store) == set(&[("apps_good_u", ip)])
    })
    .await;
    wait_until("a Warning Event on the bad Service", LONG, || {
        sim.list("events", Some(NS)).iter().any(|e| {
            e.pointer("/involvedObject/name").and_then(|v| v.as_str()) == Some("evil")
                && e.pointer("/type").and_then(|v| v.as_str()) == Some("Warning")
        })
    })
    .await;
    // Deduplicated: more reconciles do not post more Events for the same problem.
    pod(&sim, "good-2", "good");
    wait_until("good-2 granted", LONG, || account_keys(&store).len() == 2).await;
    let events = sim
        .list("events", Some(NS))
        .iter()
        .filter(|e| e.pointer("/involvedObject/name").and_then(|v| v.as_str()) == Some("evil"))
        .count();
    assert_eq!(events, 1);
    let m = engine.snapshot();
    assert!(m.service_problems >= 2 && m.k8s_events_posted == 1, "{m:?}");
    engine.stop().await;
}

/// The password of the one account of `user` in the store.
fn password_of(store: &MemoryStore, user: &str) -> Option<String> {
    store
        .accounts()
        .into_iter()
        .find(|(k, _)| k.user == user)
        .map(|(_, a)| a.password.expose().to_string())
}

fn secret_doc(name: &str, password: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS}, "stringData": {"password": password}})
}

/// Issue 11: the engine watches each Secret a Service names (`fieldSelector=metadata.name=…`),
/// not every Secret in the namespace. Fifty unrelated Secrets (with data) cost it no event; a
/// rotation of the named one is applied; a Service switched to another Secret takes its
/// password without a revoke in between, even when that Secret's first list is slow (nothing
/// reconciles until the new watch has listed).
async fn only_the_secrets_services_name_are_watched_and_switching_secrets_revokes_nothing() {
    let sim = sim();
    let store = MemoryStore::new();
    opt_in(&sim, "web", "web", "apps_web_ro", "apps", "SELECT");
    pod(&sim, "web-1", "web");
    let engine = start(&sim, Arc::new(store.clone()), config());
    wait_until("granted with the first password", LONG, || {
        password_of(&store, "apps_web_ro").as_deref() == Some("pw-web")
    })
    .await;
    let secret_events = |e: &Running| e.snapshot().events.get("secrets").copied().unwrap_or(0);
    let e0 = secret_events(&engine);
    assert_eq!(e0, 1, "the one named Secret was listed");
    for i in 0..50 {
        sim.apply(&Step::create_secret(
            NS,
            &format!("unrelated-{i}"),
            [("password", "x")],
        ))
        .unwrap();
    }
    sim.replace("secrets", Some(NS), secret_doc("web-db", "rotated"))
        .unwrap();
    wait_until("rotation applied", LONG, || {
        password_of(&store, "apps_web_ro").as_deref() == Some("rotated")
    })
    .await;
    assert_eq!(
        secret_events(&engine),
        e0 + 1,
        "only the named Secret's change arrived"
    );

    // Switch to another Secret, whose first list is slow (5 s): no reconcile may run on a view
    // without it (that view would have no password for the Service and drop its account).
    sim.create("secrets", Some(NS), secret_doc("web-db-v2", "second"))
        .unwrap();
    sim.set_faults(
        FaultPlan::new(2).rule(
            FaultRule::new(Fault::Latency {
                delay: std::time::Duration::from_secs(5),
            })
            .resource("secrets")
            .verb("list"),
        ),
    );
    let r0 = engine.snapshot().reconciles;
    sim.apply(&Step::annotate_service(
        NS,
        "web",
        [(
            "podgrant.io/mysql-password-secret",
            Some("web-db-v2/password"),
        )],
    ))
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        engine.snapshot().reconciles,
        r0,
        "waiting for the new Secret's list"
    );
    assert_eq!(
        password_of(&store, "apps_web_ro").as_deref(),
        Some("rotated")
    );
    wait_until("the new Secret's password applied", LONG, || {
        password_of(&store, "apps_web_ro").as_deref() == Some("second")
    })
    .await;
    sim.set_faults(FaultPlan::default());
    let m = engine.snapshot();
    assert_eq!(
        m.actions.get("drop").copied().unwrap_or(0),
        0,
        "{:?}",
        m.actions
    );
    let watches = sim.stats().requests("watch", "secrets");
    assert!(watches >= 2, "one watch per named Secret: {watches}");
    engine.stop().await;
}

/// Thirty Services, thirty Secrets: thirty new watch loops start the moment the Services are
/// listed. A loop's first watch never queues behind the shared re-watch floor, so the pods
/// watch (still paging through its list meanwhile) opens at once, and a pod change right after
/// the initial grant is applied within seconds. (Queued behind the Secrets' first watches at
/// the floor's 1/s, it opened ~25 s late: the flips bench's 20,000-pod run saw no change for
/// its whole first burst.)
async fn many_named_secrets_do_not_delay_the_pods_watch() {
    let sim = sim();
    let store = MemoryStore::new();
    for i in 0..30 {
        opt_in(
            &sim,
            &format!("s{i}"),
            &format!("a{i}"),
            &format!("apps_u{i}"),
            "apps",
            "SELECT",
        );
    }
    for i in 0..90 {
        pod(&sim, &format!("p{i}"), "a0");
    }
    let mut cfg = config();
    // Ninety list pages of pods, thirty of Services: the Services are listed (and their
    // Secrets' loops started) first.
    cfg.watch.page_size = Some(1);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    wait_until("ninety grants", LONG, || account_keys(&store).len() == 90).await;
    let t0 = tokio::time::Instant::now();
    sim.apply(&Step::set_pod_ready(NS, "p3", false)).unwrap();
    wait_until("the unready pod's account dropped", LONG, || {
        account_keys(&store).len() == 89
    })
    .await;
    let took = t0.elapsed();
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    engine.stop().await;
}

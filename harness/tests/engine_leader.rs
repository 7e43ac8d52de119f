//! Two engine replicas, one Lease: only the holder applies; a successor takes over within the lease duration.

mod engine_support;

use std::sync::Arc;
use std::time::Duration;

use engine_support::*;
use podgrant_core::engine::EngineConfig;
use podgrant_core::leader::LeaseConfig;
use podgrant_core::store::memory::MemoryStore;
use tokio::time::Instant;

paused_tests! {
    two_replicas_one_lease_only_the_holder_applies_and_a_successor_takes_over,
}

fn replica(identity: &str) -> EngineConfig {
    let mut lease = LeaseConfig::new("podgrant", NS, identity);
    lease.lease_duration = Duration::from_secs(15);
    lease.renew_deadline = Duration::from_secs(10);
    lease.retry_period = Duration::from_secs(2);
    EngineConfig {
        leader: Some(lease),
        identity: identity.into(),
        ..config()
    }
}

async fn two_replicas_one_lease_only_the_holder_applies_and_a_successor_takes_over() {
    let sim = sim();
    let store = MemoryStore::new();
    opt_in(&sim, "web", "web", "apps_web_ro", "apps", "SELECT");
    pod(&sim, "web-1", "web");
    let a = start(&sim, Arc::new(store.clone()), replica("replica-a"));
    wait_until("a leads", LONG, || a.snapshot().is_leader).await;
    let b = start(&sim, Arc::new(store.clone()), replica("replica-b"));
    let ip1 = pod_ip(&sim, "web-1");
    wait_until("a converged", LONG, || {
        account_keys(&store) == set(&[("apps_web_ro", ip1)])
    })
    .await;

    // For a minute, with changes flowing, b watches but never leads nor touches the store.
    for i in 0..60 {
        if i == 20 {
            pod(&sim, "web-2", "web");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (sa, sb) = (a.snapshot(), b.snapshot());
        assert!(sa.is_leader && !sb.is_leader, "exactly one leader at {i} s");
    }
    let sb = b.snapshot();
    assert!(sb.synced, "the follower keeps a warm index");
    assert_eq!(
        (sb.reconciles, sb.store_observes, sb.store_applies),
        (0, 0, 0)
    );
    assert_eq!(account_keys(&store).len(), 2);

    // a crashes without releasing the lease. b takes over within the lease duration (+ one retry).
    a.kill().await;
    let crashed = Instant::now();
    pod(&sim, "web-3", "web");
    wait_until("b leads", LONG, || b.snapshot().is_leader).await;
    let took = crashed.elapsed();
    println!("takeover after a crash: {took:?} (lease 15 s, retry 2 s)");
    assert!(took <= Duration::from_secs(15 + 2 + 1), "{took:?}");
    assert!(
        took >= Duration::from_secs(10),
        "not before the lease could expire: {took:?}"
    );
    wait_until("b converged", LONG, || account_keys(&store).len() == 3).await;
    let lease = sim.get("leases", Some(NS), "podgrant").expect("lease");
    assert_eq!(
        lease
            .pointer("/spec/holderIdentity")
            .and_then(|v| v.as_str()),
        Some("replica-b")
    );
    assert_eq!(
        lease
            .pointer("/spec/leaseTransitions")
            .and_then(|v| v.as_i64()),
        Some(1)
    );

    // A graceful stop releases the lease: a new replica takes over at its first attempt.
    b.stop().await;
    let released = Instant::now();
    let c = start(&sim, Arc::new(store.clone()), replica("replica-c"));
    wait_until("c leads", LONG, || c.snapshot().is_leader).await;
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "{:?}",
        released.elapsed()
    );
    c.stop().await;
}

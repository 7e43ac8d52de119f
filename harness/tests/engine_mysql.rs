//! The engine against the sim and a real MariaDB/MySQL: accounts appear in `mysql.user` and
//! `SHOW GRANTS` with exactly the right privileges, and vanish when their pods go.
//!
//! MySQL comes from the harness's provider (`MYSQL_URL`, else `mysql://root@127.0.0.1:3306/test`,
//! else a self-started mariadbd); skipped loudly when none answers, failed under
//! `PODGRANT_REQUIRE=mysql`. Runs on the real clock (real I/O).

mod engine_support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::*;
use mysql_async::prelude::*;
use podgrant_core::store::mysql::MysqlStore;
use podgrant_sim::Step;

/// A reachable server URL and the guard that keeps it alive, from the harness's one provider
/// (`MYSQL_URL`, the local server, a self-started mariadbd, Docker). `None` only when it skipped
/// loudly; under `PODGRANT_REQUIRE=mysql` a missing server fails the test here.
async fn server(test: &str) -> Option<(String, Option<podgrant_harness::mysql::TestMysql>)> {
    match podgrant_harness::mysql::provide(test).await {
        Ok(Some(m)) => Some((m.url().to_string(), Some(m))),
        Ok(None) => None,
        Err(e) => panic!("[{test}] no MySQL: {e}"),
    }
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}{:x}",
        (n as u64) ^ (std::process::id() as u64) << 20
    )
    .chars()
    .take(20)
    .collect()
}

async fn accounts_of(pool: &mysql_async::Pool, user: &str) -> BTreeSet<IpAddr> {
    let mut c = pool.get_conn().await.expect("conn");
    let hosts: Vec<String> = c
        .exec("SELECT host FROM mysql.user WHERE user = ?", (user,))
        .await
        .expect("mysql.user");
    hosts.into_iter().filter_map(|h| h.parse().ok()).collect()
}

async fn grants_of(pool: &mysql_async::Pool, user: &str, ip: IpAddr) -> Vec<String> {
    let mut c = pool.get_conn().await.expect("conn");
    c.query(format!("SHOW GRANTS FOR '{user}'@'{ip}'"))
        .await
        .expect("SHOW GRANTS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_appear_in_mysql_with_exact_privileges_and_vanish_with_their_pods() {
    let Some((url, _guard)) = server("engine_mysql").await else {
        return;
    };
    let schema = unique("pge2e_");
    let (ro, rw) = (unique("apps_ro"), unique("apps_rw"));
    let store = MysqlStore::connect(&url, &schema)
        .await
        .expect("MysqlStore");
    let pool = mysql_async::Pool::new(url.as_str());

    let sim = sim();
    opt_in(&sim, "reader", "reader", &ro, "apps", "SELECT");
    opt_in(
        &sim,
        "writer",
        "writer",
        &rw,
        "apps",
        "SELECT,INSERT,UPDATE",
    );
    pod(&sim, "reader-1", "reader");
    pod(&sim, "reader-2", "reader");
    pod(&sim, "writer-1", "writer");
    let (r1, r2, w1) = (
        pod_ip(&sim, "reader-1"),
        pod_ip(&sim, "reader-2"),
        pod_ip(&sim, "writer-1"),
    );
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(&schema);
    let engine = start(&sim, Arc::new(store.clone()), cfg);

    wait_real(
        "accounts in mysql.user",
        Duration::from_secs(60),
        || async {
            accounts_of(&pool, &ro).await == BTreeSet::from([r1, r2])
                && accounts_of(&pool, &rw).await == BTreeSet::from([w1])
        },
    )
    .await;
    // Accounts are created before they are granted: wait for the grants too.
    wait_real("grants in place", Duration::from_secs(60), || async {
        grants_of(&pool, &ro, r1)
            .await
            .join("\n")
            .contains(" ON `apps`.*")
            && grants_of(&pool, &rw, w1)
                .await
                .join("\n")
                .contains(" ON `apps`.*")
    })
    .await;
    let g = grants_of(&pool, &ro, r1).await.join("\n");
    assert!(g.contains("GRANT SELECT ON `apps`.*"), "{g}");
    assert!(!g.contains("INSERT"), "{g}");
    let g = grants_of(&pool, &rw, w1).await.join("\n");
    assert!(
        g.contains("GRANT SELECT, INSERT, UPDATE ON `apps`.*"),
        "{g}"
    );
    assert!(
        !g.contains("DELETE") && !g.contains("ALL PRIVILEGES"),
        "{g}"
    );

    // A pod goes: its account goes. A service goes: all its accounts go.
    sim.apply(&Step::delete_pod(NS, "reader-2")).unwrap();
    wait_real(
        "reader-2's account dropped",
        Duration::from_secs(60),
        || async { accounts_of(&pool, &ro).await == BTreeSet::from([r1]) },
    )
    .await;
    sim.apply(&Step::delete_service(NS, "writer")).unwrap();
    wait_real(
        "writer's accounts dropped",
        Duration::from_secs(60),
        || async { accounts_of(&pool, &rw).await.is_empty() },
    )
    .await;
    let m = engine.snapshot();
    println!(
        "mysql e2e: reconciles={} statements={} actions={:?}",
        m.reconciles, m.statements, m.actions
    );
    engine.stop().await;
    cleanup(&pool, &[&ro, &rw], &schema).await;
    let _ = pool.disconnect().await;
}

/// Accounts of `users` that exist (`granted == false`) or that also hold their db-level grant.
async fn count_accounts(pool: &mysql_async::Pool, users: &[String], granted: bool) -> u64 {
    let from = if granted {
        "mysql.user u JOIN mysql.db d ON d.User = u.User AND d.Host = u.Host"
    } else {
        "mysql.user u"
    };
    let marks = users.iter().map(|_| "?").collect::<Vec<_>>().join(",");
    let mut c = pool.get_conn().await.expect("conn");
    let n: Option<u64> = c
        .exec_first(
            format!("SELECT COUNT(*) FROM {from} WHERE u.User IN ({marks})"),
            users.to_vec(),
        )
        .await
        .expect("count");
    n.unwrap_or(0)
}

/// Figures for the closing note: 1,000 pods across 10 services granted, then revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_and_revoke_1000_pods_across_10_services_on_mysql() {
    let Some((url, _guard)) = server("engine_mysql_1000").await else {
        return;
    };
    let schema = unique("pgk_");
    let users: Vec<String> = (0..10).map(|i| unique(&format!("apps_k{i}_"))).collect();
    let store = MysqlStore::connect(&url, &schema)
        .await
        .expect("MysqlStore");
    let pool = mysql_async::Pool::new(url.as_str());
    let sim = sim();
    for (i, u) in users.iter().enumerate() {
        opt_in(
            &sim,
            &format!("svc{i}"),
            &format!("app{i}"),
            u,
            "apps",
            "SELECT,INSERT",
        );
        for p in 0..100 {
            pod(&sim, &format!("svc{i}-{p}"), &format!("app{i}"));
        }
    }
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(&schema);
    let before = store.statements();
    let t0 = Instant::now();
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    wait_real(
        "1000 accounts granted, verified",
        Duration::from_secs(300),
        || async {
            count_accounts(&pool, &users, true).await == 1000
                && engine.snapshot().ledger_size == 1000
        },
    )
    .await;
    let grant_time = t0.elapsed();
    let grant_statements = store.statements() - before;
    let mid = store.statements();
    let t1 = Instant::now();
    for i in 0..10 {
        sim.apply(&Step::delete_service(NS, &format!("svc{i}")))
            .unwrap();
    }
    wait_real("0 accounts, verified", Duration::from_secs(300), || async {
        count_accounts(&pool, &users, false).await == 0 && engine.snapshot().ledger_size == 0
    })
    .await;
    let revoke_time = t1.elapsed();
    let revoke_statements = store.statements() - mid;
    println!(
        "1000 pods / 10 services on {}: grant {grant_statements} statements in {grant_time:?}; revoke {revoke_statements} statements in {revoke_time:?}",
        podgrant_harness::mysql::redact(&url)
    );
    assert!(grant_statements < 1000, "batched: {grant_statements}");
    engine.stop().await;
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    cleanup(&pool, &refs, &schema).await;
    let _ = pool.disconnect().await;
}

/// The MySQL connection is killed (`KILL CONNECTION` from another session) in the middle of
/// an apply: the engine backs off, re-observes, re-plans and converges; every account exists
/// exactly once, with its grant, and the ledger matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_connection_killed_mid_reconcile_converges() {
    let Some((url, _guard)) = server("engine_mysql_kill").await else {
        return;
    };
    let schema = unique("pgkill_");
    let user = unique("apps_kl");
    let store = MysqlStore::connect(&url, &schema)
        .await
        .expect("MysqlStore");
    let pool = mysql_async::Pool::new(url.as_str());
    let sim = sim();
    opt_in(&sim, "web", "web", &user, "apps", "SELECT");
    for i in 0..30 {
        pod(&sim, &format!("web-{i}"), "web");
    }
    let want: BTreeSet<IpAddr> = (0..30).map(|i| pod_ip(&sim, &format!("web-{i}"))).collect();
    store.kill_connection_after(2);
    let mut cfg = config();
    cfg.policy = cfg.policy.with_ledger_schema(&schema);
    cfg.apply_backoff.initial = Duration::from_millis(100);
    let engine = start(&sim, Arc::new(store.clone()), cfg);
    // Accounts may exist before their grants (the kill can land between the two): wait for both.
    wait_real(
        "30 accounts with their grant despite the kill",
        Duration::from_secs(120),
        || async {
            if accounts_of(&pool, &user).await != want {
                return false;
            }
            for ip in &want {
                if !grants_of(&pool, &user, *ip)
                    .await
                    .join("\n")
                    .contains("GRANT SELECT ON `apps`.*")
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    let m = engine.snapshot();
    println!(
        "connection killed mid-reconcile: transient errors={} reconciles={} statements={}",
        m.store_errors_transient, m.reconciles, m.statements
    );
    assert!(m.store_errors_transient >= 1, "the kill happened: {m:?}");
    for ip in &want {
        let g = grants_of(&pool, &user, *ip).await.join("\n");
        assert!(g.contains("GRANT SELECT ON `apps`.*"), "{ip}: {g}");
    }
    let mut c = pool.get_conn().await.unwrap();
    let table = podgrant_core::sql::ledger_table(&schema).unwrap();
    let rows: Option<u64> = c
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .expect("ledger count");
    drop(c);
    assert_eq!(rows, Some(30), "ledger rows");
    engine.stop().await;
    cleanup(&pool, &[&user], &schema).await;
    let _ = pool.disconnect().await;
}

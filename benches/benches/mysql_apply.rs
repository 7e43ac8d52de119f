//! MySQL apply bench: accounts granted and revoked per second on a real MariaDB/MySQL, batched vs one account at a time.
//!
//! What it measures: wall time (the work happens in the MySQL server, another process, so
//! thread CPU would not see it) to grant 200 accounts (10 services × 20 pods: ledger claim,
//! CREATE USER, GRANT) and then revoke them all (DROP USER with session kill, ledger release)
//! through core's `MysqlStore`, the actions coming from the real planner.
//! - `mysql_apply/batched` — one `apply` call with every action: the store batches
//!   consecutive actions of a kind into multi-account statements.
//! - `mysql_apply/one_per_account` — one `apply` call per account: no batching.
//!
//! Throughput: accounts per second (400 account changes per iteration: 200 up, 200 down).
//! Statements per iteration are printed once for each mode.
//!
//! MySQL comes from the harness's provider (`MYSQL_URL`, else a `mariadbd` on PATH started in
//! a temp datadir, else Docker); with none, the bench prints why and measures nothing — or, under
//! `PODGRANT_REQUIRE=mysql`, fails. Accounts use a per-run user prefix; the ledger schema is the
//! run's own (`pgbench_ledger_n<slot>_<id>`, from the harness's `run_scope`), and the accounts
//! its ledger lists and the schema are dropped when the bench ends (a crashed run's are swept
//! by the next harness or bench run).
//!
//! Run: `cargo bench -p podgrant-benches --bench mysql_apply`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use podgrant_benches::fixtures;
use podgrant_core::desired::desired_state;
use podgrant_core::grant::{AccountKey, Action, Desired};
use podgrant_core::planner::plan;
use podgrant_core::store::mysql::MysqlStore;
use podgrant_core::store::GrantStore;

const SERVICES: usize = 10;
const PODS: usize = 200;

/// Actions grouped per account, in the planner's order.
fn per_account(actions: &[Action]) -> Vec<Vec<Action>> {
    let mut by: BTreeMap<AccountKey, Vec<Action>> = BTreeMap::new();
    for a in actions {
        by.entry(a.key().clone()).or_default().push(a.clone());
    }
    by.into_values().collect()
}

async fn apply(store: &MysqlStore, actions: &[Action], batched: bool) {
    if batched {
        store.apply(actions).await.expect("apply");
    } else {
        for one in per_account(actions) {
            store.apply(&one).await.expect("apply");
        }
    }
}

/// Grants every desired account, then revokes them all; checks both ends.
async fn grant_then_revoke(store: &MysqlStore, desired: &Desired, batched: bool) {
    let wanted: BTreeSet<AccountKey> = desired.keys().cloned().collect();
    let up = plan(desired, &store.observe(&wanted).await.expect("observe"));
    apply(store, &up, batched).await;
    let now = store.observe(&wanted).await.expect("observe");
    assert_eq!(now.owned.len(), desired.len(), "every account granted");
    let down = plan(&Desired::new(), &now);
    apply(store, &down, batched).await;
    let left = store.observe(&BTreeSet::new()).await.expect("observe");
    assert!(left.owned.is_empty(), "every account revoked");
}

fn mysql_apply(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mysql = match rt.block_on(podgrant_harness::mysql::provide("mysql_apply bench")) {
        Ok(Some(m)) => m,
        Ok(None) => {
            eprintln!("mysql_apply: SKIPPED — no MySQL reachable (see the provider message above); nothing measured");
            return;
        }
        // Includes PODGRANT_REQUIRE=mysql with no server: a failure, not a skip.
        Err(e) => panic!("mysql_apply: no MySQL: {e}"),
    };
    eprintln!("mysql_apply: using {}", mysql.redacted_url());
    // Per run, not per process id (ids repeat across runs): the clock's nanoseconds and the id.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tag = (nanos ^ std::process::id().rotate_left(16)) % 100_000;
    let scope = rt
        .block_on(podgrant_harness::run_scope::RunScope::claim(
            mysql.url(),
            "pgbench_ledger",
        ))
        .expect("claim a run scope on MySQL");
    let store = rt
        .block_on(MysqlStore::connect(mysql.url(), scope.schema()))
        .expect("connect to MySQL");
    let cluster = fixtures::cluster_with_users(PODS, SERVICES, &format!("pgb{tag}u"));
    let desired = desired_state(&cluster, &fixtures::policy()).accounts;
    assert_eq!(desired.len(), PODS);

    let mut g = c.benchmark_group("mysql_apply");
    g.throughput(Throughput::Elements(2 * PODS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .sampling_mode(SamplingMode::Flat);
    for (name, batched) in [("batched", true), ("one_per_account", false)] {
        let s0 = store.statements();
        let t0 = Instant::now();
        rt.block_on(grant_then_revoke(&store, &desired, batched));
        eprintln!(
            "mysql_apply/{name}: {} statements, {:?} to grant and revoke {PODS} accounts (one run)",
            store.statements() - s0,
            t0.elapsed()
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    rt.block_on(grant_then_revoke(&store, &desired, batched));
                }
                start.elapsed()
            })
        });
    }
    g.finish();
    let _ = rt.block_on(store.disconnect());
    let removed = rt
        .block_on(scope.cleanup())
        .expect("drop the bench's ledger schema");
    eprintln!(
        "mysql_apply: removed {} accounts and {}",
        removed.accounts,
        removed.schemas.join(", ")
    );
}

criterion_group! {
    name = benches;
    config = podgrant_benches::criterion();
    targets = mysql_apply
}
criterion_main!(benches);

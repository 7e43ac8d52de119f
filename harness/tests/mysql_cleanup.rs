//! Nothing left behind on a MySQL server: `reproduce busy-loop --mysql` and the MySQL scenario pass twice in a row on one server, remove what they created, and sweep a crashed run's leftovers.
//!
//! MySQL comes from the harness's provider (skipped loudly without one, failed under
//! `PODGRANT_REQUIRE=mysql`). Each check looks only at what *its* run created (its ledger
//! schema and its pod network `10.<slot>.0.0/16`), so other runs on the same server don't matter.

use std::process::Command;

use mysql_async::prelude::Queryable;
use podgrant_harness::mysql::{self, TestMysql};
use podgrant_harness::run_scope::RunScope;
use podgrant_harness::scenario::{self, RunOptions, Scenario};

async fn server(test: &str) -> Option<TestMysql> {
    match mysql::provide(test).await {
        Ok(m) => m,
        Err(e) => panic!("[{test}] no MySQL: {e}"),
    }
}

async fn leftovers(url: &str, schema: &str, slot: u8) -> (u64, u64) {
    podgrant_harness::run_scope::leftovers(url, schema, slot)
        .await
        .expect("count leftovers")
}

/// Waits until the slot's lock is free (its holder's connection is gone), at most 30 s.
async fn wait_lock_free(url: &str, slot: u8) {
    let mut c = mysql_async::Conn::new(mysql_async::Opts::from_url(url).expect("url"))
        .await
        .expect("connect");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let free: Option<Option<i64>> = c
            .exec_first(
                "SELECT IS_FREE_LOCK(?)",
                (format!("podgrant_run_slot_{slot}"),),
            )
            .await
            .expect("IS_FREE_LOCK");
        if free.flatten() == Some(1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slot {slot}'s lock still held 30 s after its connection was dropped"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = c.disconnect().await;
}

/// `(schema, slot)` from the run's "this run: ledger schema X, pod network 10.N.0.0/16" line.
fn run_names(log: &str) -> (String, u8) {
    let line = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("this run: ledger schema "))
        .unwrap_or_else(|| panic!("no 'this run' line in:\n{log}"));
    let (schema, net) = line.split_once(", pod network 10.").expect("pod network");
    let slot = net.split('.').next().expect("slot").parse().expect("slot");
    (schema.to_string(), slot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reproduce_busy_loop_mysql_twice_on_one_server_both_pass_and_leave_nothing() {
    let test = "reproduce_busy_loop_mysql_twice";
    let Some(m) = server(test).await else { return };
    let artifacts = tempfile::tempdir().expect("tempdir");
    for run in 1..=2 {
        let out = Command::new(env!("CARGO_BIN_EXE_podgrant-harness"))
            .env("MYSQL_URL", m.url())
            .env("PODGRANT_TEST_MYSQL", "url")
            .args(["reproduce", "busy-loop", "--mysql", "--duration", "1500ms"])
            .args(["--pods", "20", "--artifacts"])
            .arg(artifacts.path())
            .output()
            .expect("the harness runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        eprintln!("--- run {run}: {}\n{stderr}\n{stdout}", out.status);
        // The second run failed here before: the first run's 20 accounts were foreign to its
        // fresh ledger (`grants correct: NO (0 present, 20 desired)`).
        assert!(
            stdout.contains("grants correct") && !stdout.contains("NO (0 present"),
            "run {run}: {stdout}"
        );
        assert!(
            out.status.success(),
            "run {run} failed:\n{stderr}\n{stdout}"
        );
        let (schema, slot) = run_names(&stderr);
        assert!(
            stderr.contains("cleaned up: 20 accounts"),
            "run {run}: {stderr}"
        );
        assert_eq!(
            leftovers(m.url(), &schema, slot).await,
            (0, 0),
            "run {run} left its ledger schema {schema} or accounts in 10.{slot}.0.0/16 behind"
        );
    }
}

#[test]
fn mysql_short_scenario_twice_on_one_server_both_pass_and_leave_nothing() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let Some(m) = rt.block_on(server("mysql_short_twice")) else {
        return;
    };
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/mysql-short.json");
    let sc = Scenario::load(std::path::Path::new(path)).expect("mysql-short.json parses");
    for run in 1..=2 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = RunOptions::real_time(dir.path());
        opts.capture = false;
        opts.mysql_url = Some(m.url().to_string());
        let r = scenario::run(&sc, &opts).expect("scenario runs");
        eprintln!("--- run {run}\n{r}");
        assert!(r.passed, "run {run}: {r}");
        let (schema, slot) = r.mysql_run.clone().expect("a MySQL run names its scope");
        assert_eq!(
            rt.block_on(leftovers(m.url(), &schema, slot)),
            (0, 0),
            "run {run} left {schema} or accounts in 10.{slot}.0.0/16 behind"
        );
    }
}

#[tokio::test]
async fn a_crashed_runs_leftovers_are_swept_by_the_next_run() {
    let Some(m) = server("crashed_run_swept").await else {
        return;
    };
    // A run that "crashes": claims its scope, grants an account through the store, and
    // vanishes without cleanup (its connection, and with it the slot lock, just goes away).
    let dead = RunScope::claim(m.url(), "pgh_run").await.expect("claim");
    let (dead_schema, dead_slot) = (dead.schema().to_string(), dead.slot());
    let store = podgrant_core::store::mysql::MysqlStore::connect(m.url(), &dead_schema)
        .await
        .expect("store");
    let key = podgrant_core::grant::AccountKey {
        user: format!("pgh_crash_{:06x}", rand::random::<u32>() & 0xff_ffff),
        host: format!("10.{dead_slot}.0.9").parse().expect("ip"),
    };
    let desired: podgrant_core::grant::Desired = [(
        key.clone(),
        podgrant_core::grant::DesiredAccount {
            key: key.clone(),
            owner: podgrant_core::model::ObjectRef::new("ns", "svc"),
            pod: podgrant_core::model::ObjectRef::new("ns", "pod"),
            database: "test".into(),
            privileges: [podgrant_core::grant::Privilege("SELECT".into())].into(),
            password: podgrant_core::model::Password::new("pw"),
            fingerprint: podgrant_core::desired::fingerprint(&key.user, "pw"),
        },
    )]
    .into_iter()
    .collect();
    let observed =
        podgrant_core::store::GrantStore::observe(&store, &desired.keys().cloned().collect())
            .await
            .expect("observe");
    let actions = podgrant_core::planner::plan(&desired, &observed);
    podgrant_core::store::GrantStore::apply(&store, &actions)
        .await
        .expect("apply");
    let _ = store.disconnect().await;
    assert_eq!(leftovers(m.url(), &dead_schema, dead_slot).await, (1, 1));
    drop(dead);
    // The server notices the dropped connection asynchronously: wait (bounded) for the lock to die.
    wait_lock_free(m.url(), dead_slot).await;

    // The next run claims a scope: the dead run's schema and account are gone before it starts.
    let next = RunScope::claim(m.url(), "pgh_run").await.expect("claim");
    assert!(
        next.swept().schemas.contains(&dead_schema),
        "{dead_schema} not swept: {:?}",
        next.swept()
    );
    assert_eq!(leftovers(m.url(), &dead_schema, dead_slot).await, (0, 0));
    let (schema, slot) = (next.schema().to_string(), next.slot());
    next.cleanup().await.expect("cleanup");
    assert_eq!(leftovers(m.url(), &schema, slot).await, (0, 0));
}

//! The MySQL apply bench leaves nothing on the server: its `pgbench_ledger_*` schema is gone when it ends (its accounts are revoked by every iteration).
//!
//! Runs the real bench once (`cargo bench --bench mysql_apply -- --test`) against the harness
//! provider's server (skipped loudly without one; failed under `PODGRANT_REQUIRE=mysql`).
//! It builds the bench profile, so it is `#[ignore]`d in the test phase and run by
//! `scripts/check-bench-smoke.sh` right after the bench smoke run has built that profile.

use std::process::Command;

#[test]
#[ignore = "builds the bench profile: run by scripts/check-bench-smoke.sh after the smoke run"]
fn mysql_apply_bench_removes_its_ledger_schema_and_accounts() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let m = match rt.block_on(podgrant_harness::mysql::provide("mysql_apply_cleanup")) {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => panic!("no MySQL: {e}"),
    };
    let out = Command::new(env!("CARGO"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("MYSQL_URL", m.url())
        .env("PODGRANT_TEST_MYSQL", "url")
        .args(["bench", "-p", "podgrant-benches", "--bench", "mysql_apply"])
        .args(["--", "--test"])
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}\n{stderr}", out.status);
    assert!(out.status.success(), "the bench failed");
    // Before: the ledger schema `pgbench_ledger_<pid>` stayed on the server after every run.
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("mysql_apply: removed "))
        .unwrap_or_else(|| panic!("the bench did not say what it removed:\n{stderr}"));
    let schema = line
        .split_whitespace()
        .last()
        .expect("schema name")
        .to_string();
    let slot = podgrant_harness::run_scope::slot_of(&schema)
        .unwrap_or_else(|| panic!("{schema:?} is not a run-scoped schema"));
    let (schemas, _) = rt
        .block_on(podgrant_harness::run_scope::leftovers(
            m.url(),
            &schema,
            slot,
        ))
        .expect("leftovers");
    assert_eq!(schemas, 0, "{schema} is still on the server");
}

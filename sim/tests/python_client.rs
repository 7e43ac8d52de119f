//! The official Python `kubernetes` client (PyPI) runs `tests/python/client_suite.py` against the sim over TCP: list/watch/resume/410, Exact lists, dry run, defaults, preconditions, graceful deletion, finalizers, throttling and the client's Retry-After, server-side apply.

mod common;
#[path = "../../harness/src/require.rs"]
mod require;

use std::path::Path;
use std::time::Duration;

use podgrant_sim::{Sim, Step};

/// Every case the suite prints `ok <case>` for, in order.
const CASES: &[&str] = &[
    "watch_resumes_from_the_list_resource_version",
    "list_exact_and_not_older_than",
    "watch_from_a_compacted_rv_is_410",
    "dry_run_create_stores_nothing",
    "pod_defaults",
    "delete_precondition_uid_mismatch_is_409",
    "graceful_delete_keeps_a_bound_pod_terminating",
    "grace_zero_removes_at_once",
    "finalizer_holds_deletion_until_removed",
    "throttled_429_reads_as_priority_and_fairness",
    "the_client_waits_retry_after_and_retries",
    "server_side_apply_conflicts_unless_forced",
];

#[tokio::test]
async fn the_python_client_suite_passes_against_the_sim() {
    let py = match common::python() {
        Ok(p) => p,
        Err(reason) => {
            return require::skip_or_fail(
                require::Component::Python,
                "python client suite",
                &reason,
            );
        }
    };
    let sim = Sim::builder().seed(5).build();
    sim.apply(&Step::create_namespace("py")).unwrap();
    for name in ["bound-0", "bound-1"] {
        sim.apply(&Step::create_pod("py", name)).unwrap();
    }
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, &server.url()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_suite.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&py)
            .arg(&script)
            .arg(&kubeconfig)
            .arg(server.url())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the suite finished within 120 s")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .collect();
    assert!(
        out.status.success(),
        "passed {passed:?}\n{stdout}\n{stderr}"
    );
    assert_eq!(passed, CASES, "{stderr}");
    // The pod deleted gracefully and then with grace 0 is gone from the store too.
    assert!(sim.get("pods", Some("py"), "bound-0").is_err());
    assert!(sim.get("pods", Some("py"), "bound-1").is_ok());
}

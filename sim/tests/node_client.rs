//! The official JavaScript client, `@kubernetes/client-node` from npm, runs `tests/node/client_suite.mjs` against the sim over HTTPS with the written kubeconfig: list/watch/resume/410, an informer, typed CRUD with conflicts, dry run, server-side apply.

mod common;
#[path = "../../harness/src/require.rs"]
mod require;

use std::path::Path;
use std::time::Duration;

use podgrant_sim::{Sim, Step};

/// Every case the suite prints `ok <case>` for, in order.
const CASES: &[&str] = &[
    "watch_resumes_from_the_list_resource_version",
    "watch_from_a_compacted_rv_is_410",
    "informer_lists_then_watches",
    "typed_crud_with_conflicts",
    "dry_run_create_stores_nothing",
    "server_side_apply_conflicts_unless_forced",
];

#[tokio::test]
async fn the_node_client_suite_passes_against_the_sim_over_https() {
    let (node, modules) = match common::node_client() {
        Ok(found) => found,
        Err(reason) => {
            return require::skip_or_fail(require::Component::Node, "node client suite", &reason);
        }
    };
    let sim = Sim::builder().seed(6).build();
    sim.apply(&Step::create_namespace("js")).unwrap();
    for name in ["bound-0", "bound-1"] {
        sim.apply(&Step::create_pod("js", name)).unwrap();
    }
    let server = sim.serve_https(([127, 0, 0, 1], 0).into()).await.unwrap();
    assert!(server.url().starts_with("https://"), "{}", server.url());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // The server's kubeconfig carries its CA as certificate-authority-data.
    server.write_kubeconfig(&kubeconfig).unwrap();
    // ES modules resolve packages from the script's own folder: the suite runs from a temp
    // folder whose node_modules is the installed client's.
    let script = dir.path().join("client_suite.mjs");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/client_suite.mjs"),
        &script,
    )
    .unwrap();
    std::os::unix::fs::symlink(
        modules.join("node_modules"),
        dir.path().join("node_modules"),
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&node)
            .arg(&script)
            .arg(&kubeconfig)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the suite finished within 120 s")
    .expect("node runs");
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
    // What the suite wrote is in the store.
    assert!(sim.get("pods", Some("js"), "by-watch").is_ok());
    assert_eq!(
        sim.get("deployments", Some("js"), "web").unwrap()["spec"]["replicas"],
        5
    );
    assert!(sim.get("pods", Some("js"), "dry").is_err());
}

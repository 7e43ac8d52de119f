//! The admin endpoint (`/_sim/faults`, `/_sim/stats`, `/_sim/compact`), scenario files, and the `podgrant-sim serve` binary.

mod common;

use std::time::Duration;

use common::raw;
use podgrant_sim::{Fault, FaultPlan, FaultRule, Scenario, Sim, Step};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(start_paused = true)]
async fn admin_endpoint_sets_faults_reports_stats_and_compacts() {
    let sim = Sim::builder().build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    let plan = json!({"seed": 5, "rules": [{"resource": "pods", "verb": "list", "fault": {"kind": "http_error", "code": 503}}]});
    let (c, _, v) = raw(
        &sim,
        "PUT",
        "/_sim/faults",
        Some("application/json"),
        plan.to_string(),
    )
    .await;
    assert_eq!(c, 200, "{v}");
    assert_eq!(sim.faults().rules.len(), 1);
    let (c, _, got) = raw(&sim, "GET", "/_sim/faults", None, "").await;
    assert_eq!(
        (c, got["rules"][0]["fault"]["code"].as_u64()),
        (200, Some(503))
    );
    let (c, _, _) = raw(&sim, "GET", "/api/v1/namespaces/ns/pods", None, "").await;
    assert_eq!(c, 503);
    let (c, _, stats) = raw(&sim, "GET", "/_sim/stats", None, "").await;
    assert_eq!(c, 200);
    assert_eq!(stats["requests"]["list pods"], 1);
    assert_eq!(stats["faults"]["http_503"], 1);
    let (c, _, v) = raw(
        &sim,
        "PUT",
        "/_sim/faults",
        Some("application/json"),
        r#"{"rules":[{"fault":{"kind":"nope"}}]}"#,
    )
    .await;
    assert_eq!((c, v["reason"].as_str()), (400, Some("BadRequest")));
    assert_eq!(sim.faults().rules.len(), 1, "a bad plan changes nothing");
    let rv = sim.resource_version();
    let (c, _, _) = raw(&sim, "POST", "/_sim/compact", None, "").await;
    assert_eq!(c, 200);
    assert_eq!(sim.sizes().history, 0);
    assert_eq!(sim.sizes().compacted_rv, rv);
    let (c, _, _) = raw(&sim, "DELETE", "/_sim/faults", None, "").await;
    assert_eq!(c, 405);
    // Admin calls are not counted as API requests.
    assert_eq!(sim.stats().total_requests(), 1);
    sim.set_faults(FaultPlan::new(1).rule(FaultRule::new(Fault::Expire)));
    assert_eq!(sim.faults().rules[0].fault, Fault::Expire);
}

#[tokio::test(start_paused = true)]
async fn scenario_file_runs_on_tokio_time_and_reports_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.json");
    std::fs::write(
        &path,
        json!({"seed": 9, "pod_cidr": "10.9.0.0/24", "steps": [
            {"step": {"op": "create_pod", "namespace": "app", "name": "web-1", "labels": {"app": "web"}}},
            {"at": "1s", "step": {"op": "create_service", "namespace": "app", "name": "db", "selector": {"app": "web"}, "annotations": {"podgrant/grant": "yes"}}},
            {"at": "2s", "step": {"op": "recycle_ip", "namespace": "app", "from": "web-1", "to": "web-2"}},
            {"at": "3s", "step": {"op": "set_pod_terminating", "namespace": "app", "name": "web-2"}},
            {"at": "3s", "step": {"op": "annotate_service", "namespace": "app", "name": "db", "annotations": {"podgrant/grant": null}}}
        ]})
        .to_string(),
    )
    .unwrap();
    let sc = Scenario::load(&path).unwrap();
    let sim = sc.builder().build();
    let start = tokio::time::Instant::now();
    sc.run(&sim).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(3));
    assert!(sim.get("pods", Some("app"), "web-1").is_err());
    let web2 = sim.get("pods", Some("app"), "web-2").unwrap();
    assert_eq!(web2["status"]["podIP"], "10.9.0.1", "recycled IP");
    assert!(web2["metadata"]["deletionTimestamp"].is_string());
    let svc = sim.get("services", Some("app"), "db").unwrap();
    assert!(svc["metadata"]["annotations"]
        .get("podgrant/grant")
        .is_none());

    std::fs::write(
        &path,
        r#"{"steps": [{"step": {"op": "create_pod", "namespace": "x"}}]}"#,
    )
    .unwrap();
    let err = Scenario::load(&path).unwrap_err().to_string();
    assert!(err.contains("s.json") && err.contains("name"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn pod_ips_are_allocated_freed_and_reused() {
    let sim = Sim::builder().pod_cidr("10.1.0.0/30").build();
    sim.apply(&Step::create_pod("ns", "a")).unwrap();
    sim.apply(&Step::create_pod("ns", "b")).unwrap();
    assert!(
        sim.apply(&Step::create_pod("ns", "c")).is_err(),
        "a /30 has two addresses"
    );
    assert!(
        sim.get("pods", Some("ns"), "c").is_err(),
        "nothing half-applied"
    );
    sim.apply(&Step::delete_pod("ns", "a")).unwrap();
    sim.apply(
        &Step::create_pod("ns", "c")
            .labels([("app", "x")])
            .ready(false)
            .phase("Pending"),
    )
    .unwrap();
    let c = sim.get("pods", Some("ns"), "c").unwrap();
    assert_eq!(c["status"]["podIP"], "10.1.0.1");
    assert_eq!(c["status"]["conditions"][0]["status"], "False");
    sim.apply(&Step::create_pod("ns", "h").host_network(true))
        .unwrap();
    assert_eq!(
        sim.get("pods", Some("ns"), "h").unwrap()["spec"]["hostNetwork"],
        true
    );
    assert_eq!(sim.ips_in_use(), 2);
}

#[tokio::test]
async fn binary_serves_scenario_to_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.json");
    std::fs::write(
        &scenario,
        json!({"steps": [{"step": {"op": "create_pod", "namespace": "demo", "name": "hello"}}]})
            .to_string(),
    )
    .unwrap();
    let kc = dir.path().join("kc");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_podgrant-sim"))
        .args(["serve", "--port", "0", "--seed", "4", "--scenario"])
        .arg(&scenario)
        .arg("--kubeconfig")
        .arg(&kc)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut url = None;
    while url.is_none() || !kc.exists() {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("binary prints its URL")
            .unwrap()
            .expect("output");
        if let Some(u) = line.strip_prefix("url: ") {
            url = Some(u.to_string());
        }
    }
    assert!(url.unwrap().starts_with("https://127.0.0.1:"));
    let mut found = false;
    while !found {
        assert!(
            tokio::time::Instant::now() < deadline,
            "scenario pod never appeared"
        );
        let out = tokio::process::Command::new(common::kubectl())
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["get", "pods", "-n", "demo", "-o", "name"])
            .output()
            .await
            .unwrap();
        found = String::from_utf8_lossy(&out.stdout).contains("pod/hello");
    }
    child.kill().await.unwrap();
}

//! A kopf operator (`kopf run --standalone`, from the venv `.ci/run` makes) against the sim over
//! TCP: it starts, handles a pod's creation and patches the pod's status, logging no error or warning.

mod common;
#[path = "../../harness/src/require.rs"]
mod require;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use podgrant_sim::{Sim, Step};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Wait until `check` holds, polling the sim's store, or fail after 60 s with `log`.
async fn until(what: &str, log: &Mutex<Vec<String>>, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; kopf said:\n{}",
            log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_kopf_operator_handles_a_create_and_patches_status_without_errors() {
    let py = match common::python().and_then(|py| {
        let o = std::process::Command::new(&py)
            .args(["-c", "import kopf"])
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(py)
        } else {
            Err(format!(
                "{} cannot import kopf: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ))
        }
    }) {
        Ok(p) => p,
        Err(reason) => {
            return require::skip_or_fail(require::Component::Python, "kopf operator", &reason);
        }
    };
    let sim = Sim::builder().seed(3).build();
    sim.apply(&Step::create_namespace("k1")).unwrap();
    let server = sim.serve_tcp(([127, 0, 0, 1], 0).into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, &server.url()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kopf_operator.py");
    let mut child = tokio::process::Command::new(&py)
        .args(["-m", "kopf", "run", "--standalone", "--all-namespaces"])
        .arg(&script)
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kopf starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let log = log.clone();
        let stderr = child.stderr.take().expect("stderr");
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        })
    };
    until("kopf to watch pods", &log, || {
        sim.stats().watch_starts("pods") >= 1
    })
    .await;

    // Created over the API, as any client would: kopf sees it on its watch.
    sim.create(
        "pods",
        Some("k1"),
        json!({"metadata": {"name": "p1"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    )
    .unwrap();
    until("the handler's status patch", &log, || {
        sim.get("pods", Some("k1"), "p1")
            .is_ok_and(|p| p.pointer("/status/message") == Some(&json!("seen by kopf: p1")))
    })
    .await;
    until("kopf to report the creation processed", &log, || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("Creation is processed: 1 succeeded; 0 failed"))
    })
    .await;
    child.kill().await.ok();
    reader.await.ok();
    let log = log.lock().unwrap().clone();
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARNING") || l.contains("Traceback"))
        .collect();
    assert!(bad.is_empty(), "kopf logged problems:\n{}", log.join("\n"));
    // kopf keeps its progress in an annotation, written with a merge patch.
    let pod = sim.get("pods", Some("k1"), "p1").unwrap();
    assert!(
        pod.pointer("/metadata/annotations/kopf.zalando.org~1last-handled-configuration")
            .is_some(),
        "{pod}"
    );
}

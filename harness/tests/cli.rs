//! The `podgrant-harness` binary: clear errors for bad files and flags, `scenario run`, `sim serve` with kubectl.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podgrant-harness"))
}

#[test]
fn bad_files_and_flags_get_clear_errors() {
    let out = bin()
        .args(["scenario", "run", "/nonexistent/nope.json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/nope.json"), "{err}");

    let out = bin()
        .args(["reproduce", "busy-loop", "--duration", "soon"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--duration"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"name\": 3}").expect("write");
    let out = bin()
        .args(["scenario", "run"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.json") && err.contains("line 1"), "{err}");
}

#[test]
fn scenario_run_passes_an_example_and_writes_reports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/basic-churn.json");
    let out = bin()
        .args(["scenario", "run", file, "--artifacts"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("PASSED"), "{text}");
    assert!(dir.path().join("basic-churn/report.json").is_file());
    assert!(dir.path().join("basic-churn/report.txt").is_file());
}

#[test]
fn sim_serve_answers_kubectl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = bin()
        .args(["sim", "serve", "--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf8");
    assert!(
        first.starts_with("sim serving http://127.0.0.1:"),
        "{first}"
    );
    // Wait (bounded) for the kubeconfig line too: the file is written before it.
    let _ = lines.next();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    let ok = loop {
        let out = Command::new(std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into()))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "--raw", "/api/v1"])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                break String::from_utf8_lossy(&o.stdout).contains("pods")
            }
            Ok(o) => last = String::from_utf8_lossy(&o.stderr).to_string(),
            Err(e) => {
                podgrant_harness::require::skip_or_fail(
                    podgrant_harness::require::Component::Kubectl,
                    "sim_serve_answers_kubectl",
                    &format!("kubectl not runnable: {e}"),
                );
                break true;
            }
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "kubectl against sim serve: {last}");
}

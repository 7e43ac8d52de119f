//! Shared helpers for the sim integration tests: raw in-process HTTP requests and kube clients.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use podgrant_sim::{Sim, SimBody};
use tower::ServiceExt;

/// The kubectl to run: `$KUBECTL` (the Nix checks point it at nixpkgs' kubectl), else
/// `/usr/bin/kubectl` when it exists, else `kubectl` from PATH.
pub fn kubectl() -> std::ffi::OsString {
    std::env::var_os("KUBECTL").unwrap_or_else(|| {
        if std::path::Path::new("/usr/bin/kubectl").exists() {
            "/usr/bin/kubectl".into()
        } else {
            "kubectl".into()
        }
    })
}

/// A kube client on the in-process service.
pub fn client(sim: &Sim) -> kube::Client {
    kube::Client::new(sim.service(), "default")
}

/// Send a raw request in-process; returns the response with its streaming body.
pub async fn send(
    sim: &Sim,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> http::Response<SimBody> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    sim.service().oneshot(req).await.unwrap()
}

/// Send a raw request and read the whole body.
pub async fn raw(
    sim: &Sim,
    method: &str,
    uri: &str,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> (u16, HeaderMap, serde_json::Value) {
    let resp = send(sim, method, uri, content_type, body).await;
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("body completes")
        .unwrap()
        .to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status.as_u16(), parts.headers, v)
}

/// Read watch lines from a streaming body until it ends, errors, or `idle` passes without a frame.
/// Returns the lines and whether the stream ended with an error.
pub async fn watch_lines(body: SimBody, idle: Duration) -> (Vec<String>, WatchEnd) {
    let mut body = body;
    let mut buf = Vec::new();
    let end = loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => break WatchEnd::StillOpen,
            Ok(None) => break WatchEnd::Clean,
            Ok(Some(Err(_))) => break WatchEnd::Reset,
            Ok(Some(Ok(f))) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
            }
        }
    };
    let text = String::from_utf8_lossy(&buf).into_owned();
    (text.lines().map(str::to_string).collect(), end)
}

/// How a watch body ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum WatchEnd {
    Clean,
    Reset,
    StillOpen,
}

/// The `type` of each watch line (lines that are not JSON read as `MALFORMED`).
pub fn types(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) => v["type"].as_str().unwrap_or("?").to_string(),
            Err(_) => "MALFORMED".to_string(),
        })
        .collect()
}

/// The venv `.ci/run` creates (`PODGRANT_PYTHON`), else `~/.cache/podgrant-venv`, else
/// `python3`, if it can import `kubernetes`.
pub fn python() -> Result<std::path::PathBuf, String> {
    use std::path::PathBuf;
    let venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/podgrant-venv/bin/python"))
        .filter(|p| p.exists());
    let py = std::env::var_os("PODGRANT_PYTHON")
        .map(PathBuf::from)
        .or(venv)
        .unwrap_or_else(|| PathBuf::from("python3"));
    match std::process::Command::new(&py)
        .args(["-c", "import kubernetes"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(py),
        Ok(o) => Err(format!(
            "{} cannot import kubernetes: {}",
            py.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{}: {e}", py.display())),
    }
}

/// Node.js and the folder holding `node_modules/@kubernetes/client-node` (`PODGRANT_NODE_CLIENT`,
/// which `.ci/run` fills, else `~/.cache/podgrant-node`), if both are there and Node runs.
#[allow(dead_code)]
pub fn node_client() -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    use std::path::PathBuf;
    let dir = std::env::var_os("PODGRANT_NODE_CLIENT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/podgrant-node")))
        .ok_or("neither PODGRANT_NODE_CLIENT nor HOME is set")?;
    let module = dir.join("node_modules/@kubernetes/client-node/package.json");
    if !module.exists() {
        return Err(format!(
            "{} is missing (npm install @kubernetes/client-node@1.4.0 there)",
            module.display()
        ));
    }
    let node = PathBuf::from("node");
    match std::process::Command::new(&node).arg("--version").output() {
        Ok(o) if o.status.success() => Ok((node, dir)),
        Ok(o) => Err(format!(
            "node --version failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("node: {e}")),
    }
}

/// Run the real kubectl with `--kubeconfig kc` (at most 60 s): (success, stdout, stderr).
pub async fn run_kubectl(kc: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(kubectl())
            .arg("--kubeconfig")
            .arg(kc)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("kubectl timed out")
    .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//! Writing a kubeconfig that points kubectl (or kube-rs) at a simulator URL.

use std::path::Path;

use crate::error::SimError;

/// The kubeconfig text for a server URL (context `podgrant-sim`, namespace `default`, no credentials).
pub fn render(server_url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: podgrant-sim
  cluster:
    server: {server_url}
contexts:
- name: podgrant-sim
  context:
    cluster: podgrant-sim
    user: podgrant-sim
    namespace: default
current-context: podgrant-sim
preferences: {{}}
users:
- name: podgrant-sim
  user: {{}}
"
    )
}

/// Write the kubeconfig to `path`.
pub fn write(path: &Path, server_url: &str) -> Result<(), SimError> {
    std::fs::write(path, render(server_url))
        .map_err(|e| SimError::io(format!("writing kubeconfig {}", path.display()), e))
}

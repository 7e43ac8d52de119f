//! Probe subject: a bare kube-rs `watcher` on all pods with the default config (the field's default client), from KUBECONFIG.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let api: kube::Api<Pod> = kube::Api::all(client);
    let mut stream = std::pin::pin!(watcher(api, watcher::Config::default()));
    let mut events = 0u64;
    while let Some(ev) = stream.next().await {
        events += 1;
        if let Err(e) = ev {
            eprintln!("watcher error after {events} events: {e}");
        }
    }
    anyhow::bail!("the watcher stream ended")
}

//! Probe subject: the seed's loop (the specimen) watching all pods, from KUBECONFIG; spins once the watch ends.

use std::sync::Arc;

use podgrant_harness::specimen::{watch_pods_by_selector, SpecimenStats};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let stats = Arc::new(SpecimenStats::default());
    watch_pods_by_selector(client, String::new(), String::new(), stats).await?;
    Ok(())
}

//! Probe subject: podgrant's engine with the in-memory grant store (no database), from KUBECONFIG.

use std::sync::Arc;

use podgrant_core::engine::{Engine, EngineConfig};
use podgrant_core::store::MemoryStore;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let engine = Engine::new(
        client,
        Arc::new(MemoryStore::new()),
        EngineConfig::default(),
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    engine.run(shutdown).await?;
    Ok(())
}

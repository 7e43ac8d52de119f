//! Probe subject: a kube-rs `Controller` over pods whose reconcile does nothing and waits for changes, from KUBECONFIG.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

async fn reconcile(_pod: Arc<Pod>, _ctx: Arc<()>) -> Result<Action, Never> {
    Ok(Action::await_change())
}

fn error_policy(_pod: Arc<Pod>, _e: &Never, _ctx: Arc<()>) -> Action {
    Action::requeue(Duration::from_secs(60))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let client = kube::Client::try_default().await?;
    let api: kube::Api<Pod> = kube::Api::all(client);
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(()))
        .for_each(|r| async move {
            if let Err(e) = r {
                eprintln!("controller: {e}");
            }
        })
        .await;
    anyhow::bail!("the controller stream ended")
}

//! Planted engines: core's own decision pipeline fed a corrupted view, to prove the oracle sees bug classes it used to share.
//!
//! The old oracle computed its expectation with core's `pod_facts` / `desired_state` and its
//! safety check with core's `grantable_ip` / `selects`; a bug in any of them moved the
//! expectation with the engine. Each [`Bug`] here reproduces one such bug *in the facts or the
//! decision* — readiness ignored, hostNetwork ignored, terminating pods taken as live, a Service selecting by a subset of its
//! selector, the privilege allowlist not enforced — and runs core's real `desired_state` and
//! `planner` on it against the store, every 250 ms of (simulated) time. No hook is added to
//! core: the bug lives in the view this loop hands to core's pure functions. The new oracle
//! ([`crate::truth`]) reads the sim's raw JSON and must catch every one.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use podgrant_core::desired::desired_state;
use podgrant_core::model::Cluster;
use podgrant_core::planner::plan;
use podgrant_core::store::{GrantStore, MemoryStore};
use podgrant_core::validate::{Policy, KNOWN_DB_PRIVILEGES};
use podgrant_core::watch::{pod_facts, secret_facts, service_facts};
use podgrant_sim::Sim;
use serde::{Deserialize, Serialize};

/// The bug planted into the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bug {
    /// Every pod is taken as Ready.
    ReadinessIgnored,
    /// `hostNetwork` pods are taken as pod-network pods.
    HostNetworkIgnored,
    /// A Service selects by the first pair of its selector only.
    SubsetSelector,
    /// The privilege allowlist is every privilege MySQL knows (`GRANT OPTION` included).
    AllowlistIgnored,
    /// A pod being deleted (`deletionTimestamp` set, still listed through its grace period)
    /// is taken as live: its account goes only when the pod does.
    TerminatingIgnored,
}

/// The cluster as core's facts, with the bug applied.
pub fn buggy_view(sim: &Sim, bug: Bug) -> Cluster {
    let mut c = Cluster::default();
    for v in sim.list("services", None) {
        let Ok(s) = serde_json::from_value::<Service>(v) else {
            continue;
        };
        let mut f = service_facts(s);
        if bug == Bug::SubsetSelector {
            if let Some(sel) = &mut f.selector {
                let first = sel.iter().next().map(|(k, v)| (k.clone(), v.clone()));
                sel.retain(|k, _| first.as_ref().is_some_and(|(fk, _)| fk == k));
            }
        }
        c.services.insert(f.id.clone(), f);
    }
    for v in sim.list("pods", None) {
        let Ok(p) = serde_json::from_value::<Pod>(v) else {
            continue;
        };
        let mut f = pod_facts(p);
        match bug {
            Bug::ReadinessIgnored => f.ready = true,
            Bug::HostNetworkIgnored => f.host_network = false,
            Bug::TerminatingIgnored => f.terminating = false,
            _ => {}
        }
        c.pods.insert(f.id.clone(), f);
    }
    for v in sim.list("secrets", None) {
        if let Ok(s) = serde_json::from_value::<Secret>(v) {
            let f = secret_facts(s);
            c.secrets.insert(f.id.clone(), f);
        }
    }
    c
}

fn policy(bug: Bug) -> Policy {
    match bug {
        Bug::AllowlistIgnored => Policy::default()
            .with_allowed_privileges(KNOWN_DB_PRIVILEGES)
            .expect("the known privileges are valid"),
        _ => Policy::default(),
    }
}

/// Runs the planted engine until the task is aborted.
pub async fn run(sim: Sim, store: MemoryStore, bug: Bug) {
    let policy = policy(bug);
    loop {
        let desired = desired_state(&buggy_view(&sim, bug), &policy).accounts;
        let wanted: BTreeSet<_> = desired.keys().cloned().collect();
        if let Ok(observed) = store.observe(&wanted).await {
            let actions = plan(&desired, &observed);
            if !actions.is_empty() {
                let _ = store.apply(&actions).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

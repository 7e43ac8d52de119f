//! The cluster's truth, read straight from the sim's store, reduced to core's facts; and the desired set it implies.
//!
//! The engine learns the cluster through watches that the sim may break on purpose; the harness
//! reads the sim's store directly (no HTTP, no faults), so its view is the ground truth the
//! engine must converge to.

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use podgrant_core::desired::{desired_state, DesiredState};
use podgrant_core::model::Cluster;
use podgrant_core::validate::Policy;
use podgrant_core::watch::{pod_facts, secret_facts, service_facts};
use podgrant_sim::Sim;

/// Errors reading the truth.
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("the sim holds a {kind} that does not parse as one: {message}")]
    Decode { kind: &'static str, message: String },
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    v: serde_json::Value,
) -> Result<T, TruthError> {
    serde_json::from_value(v).map_err(|e| TruthError::Decode {
        kind,
        message: e.to_string(),
    })
}

/// Every pod, service and secret in the sim, as core's facts.
pub fn cluster(sim: &Sim) -> Result<Cluster, TruthError> {
    let mut c = Cluster::default();
    for v in sim.list("services", None) {
        let f = service_facts(decode::<Service>("Service", v)?);
        c.services.insert(f.id.clone(), f);
    }
    for v in sim.list("pods", None) {
        let f = pod_facts(decode::<Pod>("Pod", v)?);
        c.pods.insert(f.id.clone(), f);
    }
    for v in sim.list("secrets", None) {
        let f = secret_facts(decode::<Secret>("Secret", v)?);
        c.secrets.insert(f.id.clone(), f);
    }
    Ok(c)
}

/// The desired state implied by the sim's truth under `policy`.
pub fn desired(sim: &Sim, policy: &Policy) -> Result<(Cluster, DesiredState), TruthError> {
    let c = cluster(sim)?;
    let d = desired_state(&c, policy);
    Ok((c, d))
}

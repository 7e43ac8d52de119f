//! Pure: the cluster facts and the operator's policy → the set of accounts that should exist.

use crate::grant::Desired;
use crate::model::{Cluster, ObjectRef};
use crate::validate::Policy;

/// A Service skipped because of its annotations or its Secret; shown as an Event and a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProblem {
    pub service: ObjectRef,
    /// Human-readable, never containing a password.
    pub reason: String,
}

/// The desired accounts and the services skipped on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub accounts: Desired,
    pub problems: Vec<ServiceProblem>,
}

/// Computes the desired state from the cluster view.
pub fn desired_state(cluster: &Cluster, policy: &Policy) -> DesiredState {
    let _ = (cluster, policy);
    todo!("desired state")
}

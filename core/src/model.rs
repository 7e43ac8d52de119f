//! Pods, Services and Secrets reduced to the few facts the engine needs (never whole objects).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Namespace and name of a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What granting needs to know about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFacts {
    pub id: ObjectRef,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`, parsed; `None` while unassigned or unparsable.
    pub ip: Option<IpAddr>,
    /// `status.phase == "Running"`.
    pub running: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `spec.hostNetwork`: the pod shares its node's IP, so it is never granted.
    pub host_network: bool,
}

impl PodFacts {
    /// The IP this pod may be granted at, if it qualifies at all:
    /// Running, Ready, not terminating, not host-network, and with an IP.
    pub fn grantable_ip(&self) -> Option<IpAddr> {
        if self.running && self.ready && !self.terminating && !self.host_network {
            self.ip
        } else {
            None
        }
    }
}

/// What granting needs to know about a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    pub id: ObjectRef,
    pub uid: String,
    /// `spec.selector`; `None` (or empty) selects no pods, as in Kubernetes.
    pub selector: Option<BTreeMap<String, String>>,
    /// Only the annotations under podgrant's prefix are kept.
    pub annotations: BTreeMap<String, String>,
}

impl ServiceFacts {
    /// Whether this Service's selector selects a pod with these labels.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        match &self.selector {
            Some(sel) if !sel.is_empty() => sel.iter().all(|(k, v)| labels.get(k) == Some(v)),
            _ => false,
        }
    }
}

/// A secret value. Its `Debug` and `Display` never print the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The plaintext, for the one place that must send it to MySQL.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What granting needs to know about a Secret: its data, decoded, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFacts {
    pub id: ObjectRef,
    pub data: BTreeMap<String, Password>,
}

/// The engine's whole view of the cluster: the sync index the watchers keep up to date,
/// and the single input (with a [`crate::validate::Policy`]) of [`crate::desired::desired_state`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    pub services: BTreeMap<ObjectRef, ServiceFacts>,
    pub pods: BTreeMap<ObjectRef, PodFacts>,
    pub secrets: BTreeMap<ObjectRef, SecretFacts>,
}

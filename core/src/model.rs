//! Pods, Services and Secrets reduced to the few facts the engine needs (never whole objects).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

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
///
/// Clones share the value (one allocation per Secret key, however many accounts use it), and
/// its `mysql_native_password` hash is computed at most once, on first use: a reconcile that
/// compares thousands of stored credentials with the same password hashes it once.
#[derive(Clone)]
pub struct Password(Arc<PasswordInner>);

struct PasswordInner {
    value: String,
    native: OnceLock<String>,
}

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::new(PasswordInner {
            value: value.into(),
            native: OnceLock::new(),
        }))
    }
    /// The plaintext, for the one place that must send it to MySQL.
    pub fn expose(&self) -> &str {
        &self.0.value
    }
    /// Its `mysql_native_password` hash ([`crate::native::native_hash`]), cached.
    /// Password-equivalent: never logged.
    pub fn native_hash(&self) -> &str {
        self.0
            .native
            .get_or_init(|| crate::native::native_hash(&self.0.value))
    }
}

impl PartialEq for Password {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.value == other.0.value
    }
}

impl Eq for Password {}

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

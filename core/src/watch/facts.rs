//! Watched objects reduced to the facts granting needs ([`crate::model`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::ResourceExt;

use crate::model::{ObjectRef, Password, PodFacts, SecretFacts, ServiceFacts};
use crate::validate::ANNOTATION_PREFIX;

/// Only podgrant's annotations are kept.
pub fn service_facts(svc: Service) -> ServiceFacts {
    let id = ObjectRef::new(svc.namespace().unwrap_or_default(), svc.name_any());
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let annotations = svc
        .metadata
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    let selector = svc.spec.and_then(|s| s.selector);
    ServiceFacts {
        id,
        uid,
        selector,
        annotations,
    }
}

/// Labels, IP, phase, readiness, deletion and hostNetwork; nothing else.
pub fn pod_facts(pod: Pod) -> PodFacts {
    let id = ObjectRef::new(pod.namespace().unwrap_or_default(), pod.name_any());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let labels = pod.metadata.labels.unwrap_or_default();
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let status = pod.status.unwrap_or_default();
    let ip = status
        .pod_ip
        .as_deref()
        .and_then(|s| s.parse::<IpAddr>().ok());
    let running = status.phase.as_deref() == Some("Running");
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    PodFacts {
        id,
        uid,
        labels,
        ip,
        running,
        ready,
        terminating,
        host_network,
    }
}

/// The decoded data of a Secret; values that are not UTF-8 are left out (MySQL passwords are text).
pub fn secret_facts(secret: Secret) -> SecretFacts {
    let id = ObjectRef::new(secret.namespace().unwrap_or_default(), secret.name_any());
    let data: BTreeMap<String, Password> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(k, v)| String::from_utf8(v.0).ok().map(|s| (k, Password::new(s))))
        .collect();
    SecretFacts { id, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_facts_keep_only_what_granting_needs() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"},
                         "annotations": {"big": "x"}, "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"phase": "Running", "podIP": "10.0.0.7",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let f = pod_facts(pod);
        assert_eq!(f.id, ObjectRef::new("ns", "p"));
        assert_eq!(f.ip, Some("10.0.0.7".parse().unwrap()));
        assert!(f.running && f.ready && f.terminating && f.host_network);
        assert_eq!(f.grantable_ip(), None);
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "namespace": "ns", "uid": "u2",
                         "annotations": {"podgrant.io/mysql-user": "app", "other/x": "y"}},
            "spec": {"selector": {"app": "a"}}
        }))
        .unwrap();
        let f = service_facts(svc);
        assert_eq!(f.annotations.len(), 1);
        assert!(f.selects(&BTreeMap::from([("app".to_string(), "a".to_string())])));
        let sec: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "ns"},
            "data": {"password": "aHVudGVyMg==", "bin": "/w=="}
        }))
        .unwrap();
        let f = secret_facts(sec);
        assert_eq!(f.data.len(), 1);
        assert_eq!(f.data["password"].expose(), "hunter2");
    }

    #[test]
    fn a_pod_is_ready_only_with_a_true_ready_condition() {
        let pod = |conditions: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns"},
                "status": {"phase": "Running", "podIP": "10.0.0.7", "conditions": conditions}
            }))
            .unwrap()
        };
        let ready = |c| pod_facts(pod(c)).ready;
        assert!(ready(
            serde_json::json!([{"type": "Ready", "status": "True"}])
        ));
        assert!(!ready(
            serde_json::json!([{"type": "Ready", "status": "False"}])
        ));
        assert!(!ready(serde_json::json!([
            {"type": "ContainersReady", "status": "True"},
            {"type": "Ready", "status": "False"}
        ])));
        assert!(!ready(serde_json::json!([])));
    }
}

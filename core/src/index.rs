//! The sync index: a [`Cluster`] kept level-correct from watch [`Change`]s. No I/O, no clock.

use std::collections::BTreeMap;

use crate::metrics::Resource;
use crate::model::{Cluster, ObjectRef, PodFacts, SecretFacts, ServiceFacts};
use crate::watch::Change;

/// A change to one of the three watched resources.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    Services(Change<ServiceFacts>),
    Pods(Change<PodFacts>),
    Secrets(Change<SecretFacts>),
}

impl ClusterEvent {
    pub fn resource(&self) -> Resource {
        match self {
            ClusterEvent::Services(_) => Resource::Services,
            ClusterEvent::Pods(_) => Resource::Pods,
            ClusterEvent::Secrets(_) => Resource::Secrets,
        }
    }
}

/// The engine's view of the cluster. Level-triggered: a relist replaces a resource's whole
/// contents (objects missing from it are gone), an apply overwrites, a delete removes — also
/// when a selector-scoped watch reports an object that merely stopped matching.
#[derive(Debug, Clone, Default)]
pub struct Index {
    cluster: Cluster,
    synced: [bool; 3],
}

fn apply_change<F: PartialEq>(
    map: &mut BTreeMap<ObjectRef, F>,
    change: Change<F>,
    id: impl Fn(&F) -> &ObjectRef,
) -> bool {
    match change {
        Change::Relisted(items) => {
            let fresh: BTreeMap<ObjectRef, F> =
                items.into_iter().map(|f| (id(&f).clone(), f)).collect();
            if *map == fresh {
                false
            } else {
                *map = fresh;
                true
            }
        }
        Change::Applied(f) => {
            let key = id(&f).clone();
            if map.get(&key) == Some(&f) {
                false
            } else {
                map.insert(key, f);
                true
            }
        }
        Change::Deleted(f) => map.remove(id(&f)).is_some(),
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change; `true` when the cluster view changed (a no-op MODIFIED returns `false`).
    pub fn apply(&mut self, event: ClusterEvent) -> bool {
        let r = event.resource() as usize;
        if let ClusterEvent::Services(Change::Relisted(_))
        | ClusterEvent::Pods(Change::Relisted(_))
        | ClusterEvent::Secrets(Change::Relisted(_)) = &event
        {
            self.synced[r] = true;
        }
        match event {
            ClusterEvent::Services(c) => apply_change(&mut self.cluster.services, c, |f| &f.id),
            ClusterEvent::Pods(c) => apply_change(&mut self.cluster.pods, c, |f| &f.id),
            ClusterEvent::Secrets(c) => apply_change(&mut self.cluster.secrets, c, |f| &f.id),
        }
    }

    /// Every resource has been listed at least once: the view is complete enough to act on.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| *s)
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, app: &str) -> PodFacts {
        PodFacts {
            id: ObjectRef::new("ns", name),
            uid: format!("uid-{name}"),
            labels: BTreeMap::from([("app".to_string(), app.to_string())]),
            ip: ip.parse().ok(),
            running: true,
            ready: true,
            terminating: false,
            host_network: false,
        }
    }

    #[test]
    fn relist_replaces_and_drops_objects_missing_from_it() {
        let mut ix = Index::new();
        assert!(!ix.synced());
        assert!(ix.apply(ClusterEvent::Pods(Change::Relisted(vec![
            pod("a", "10.0.0.1", "x"),
            pod("b", "10.0.0.2", "x"),
        ]))));
        ix.apply(ClusterEvent::Services(Change::Relisted(vec![])));
        assert!(!ix.synced());
        ix.apply(ClusterEvent::Secrets(Change::Relisted(vec![])));
        assert!(ix.synced());
        // After a 410 the relist no longer has "a": it must go.
        assert!(ix.apply(ClusterEvent::Pods(Change::Relisted(vec![pod(
            "b", "10.0.0.2", "x"
        )]))));
        assert_eq!(ix.cluster().pods.len(), 1);
        assert!(ix.cluster().pods.contains_key(&ObjectRef::new("ns", "b")));
        // The same relist again changes nothing.
        assert!(!ix.apply(ClusterEvent::Pods(Change::Relisted(vec![pod(
            "b", "10.0.0.2", "x"
        )]))));
    }

    #[test]
    fn identical_modified_is_not_a_change_and_delete_removes_even_if_still_existing() {
        let mut ix = Index::new();
        assert!(ix.apply(ClusterEvent::Pods(Change::Applied(pod(
            "a", "10.0.0.1", "x"
        )))));
        assert!(!ix.apply(ClusterEvent::Pods(Change::Applied(pod(
            "a", "10.0.0.1", "x"
        )))));
        assert!(ix.apply(ClusterEvent::Pods(Change::Applied(pod(
            "a", "10.0.0.1", "y"
        )))));
        // A pod that left a selector-scoped watch arrives as DELETED with its old content.
        assert!(ix.apply(ClusterEvent::Pods(Change::Deleted(pod(
            "a", "10.0.0.1", "x"
        )))));
        assert!(ix.cluster().pods.is_empty());
        assert!(!ix.apply(ClusterEvent::Pods(Change::Deleted(pod(
            "a", "10.0.0.1", "x"
        )))));
        // When it matches again it is ADDED again.
        assert!(ix.apply(ClusterEvent::Pods(Change::Applied(pod(
            "a", "10.0.0.1", "x"
        )))));
        assert_eq!(ix.cluster().pods.len(), 1);
    }
}

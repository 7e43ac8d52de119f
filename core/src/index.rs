//! The sync index: a [`Cluster`] kept level-correct from watch [`Change`]s. No I/O, no clock.

use std::collections::BTreeMap;
use std::net::IpAddr;

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

/// What one applied event changed, for consumers that update incrementally
/// ([`crate::incremental::IncrementalDesired`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// Nothing: a no-op MODIFIED, an identical relist, a delete of an unknown object.
    None,
    /// One or more Services changed.
    Services,
    /// One or more Secrets changed.
    Secrets,
    /// These pods changed (added, modified or removed).
    Pods(Vec<PodDelta>),
}

impl Delta {
    pub fn changed(&self) -> bool {
        *self != Delta::None
    }
}

/// One pod's change, as granting sees it: the IP it could be granted at before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDelta {
    pub id: ObjectRef,
    /// [`PodFacts::grantable_ip`] before the change (`None`: absent or not grantable).
    pub before: Option<IpAddr>,
    /// [`PodFacts::grantable_ip`] after it.
    pub after: Option<IpAddr>,
}

/// Applies a change to one map; reports each object that changed as `(before, after)`.
fn apply_change<F: PartialEq>(
    map: &mut BTreeMap<ObjectRef, F>,
    change: Change<F>,
    id: impl Fn(&F) -> &ObjectRef,
    mut changed: impl FnMut(&ObjectRef, Option<&F>, Option<&F>),
) {
    match change {
        Change::Relisted(items) => {
            let fresh: BTreeMap<ObjectRef, F> =
                items.into_iter().map(|f| (id(&f).clone(), f)).collect();
            if *map == fresh {
                return;
            }
            for (k, old) in map.iter() {
                match fresh.get(k) {
                    Some(new) if new == old => {}
                    new => changed(k, Some(old), new),
                }
            }
            for (k, new) in &fresh {
                if !map.contains_key(k) {
                    changed(k, None, Some(new));
                }
            }
            *map = fresh;
        }
        Change::Applied(f) => {
            let key = id(&f).clone();
            let old = map.get(&key);
            if old != Some(&f) {
                changed(&key, old, Some(&f));
                map.insert(key, f);
            }
        }
        Change::Deleted(f) => {
            if let Some(old) = map.remove(id(&f)) {
                changed(id(&f), Some(&old), None);
            }
        }
    }
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one change; `true` when the cluster view changed (a no-op MODIFIED returns `false`).
    pub fn apply(&mut self, event: ClusterEvent) -> bool {
        self.apply_delta(event).changed()
    }

    /// Applies one change and says what it changed.
    pub fn apply_delta(&mut self, event: ClusterEvent) -> Delta {
        let r = event.resource() as usize;
        if let ClusterEvent::Services(Change::Relisted(_))
        | ClusterEvent::Pods(Change::Relisted(_))
        | ClusterEvent::Secrets(Change::Relisted(_)) = &event
        {
            self.synced[r] = true;
        }
        let mut any = false;
        match event {
            ClusterEvent::Services(c) => {
                apply_change(
                    &mut self.cluster.services,
                    c,
                    |f| &f.id,
                    |_, _, _| any = true,
                );
                if any {
                    return Delta::Services;
                }
            }
            ClusterEvent::Secrets(c) => {
                apply_change(
                    &mut self.cluster.secrets,
                    c,
                    |f| &f.id,
                    |_, _, _| any = true,
                );
                if any {
                    return Delta::Secrets;
                }
            }
            ClusterEvent::Pods(c) => {
                let mut pods = Vec::new();
                apply_change(
                    &mut self.cluster.pods,
                    c,
                    |f| &f.id,
                    |id, old, new| {
                        pods.push(PodDelta {
                            id: id.clone(),
                            before: old.and_then(PodFacts::grantable_ip),
                            after: new.and_then(PodFacts::grantable_ip),
                        })
                    },
                );
                if !pods.is_empty() {
                    return Delta::Pods(pods);
                }
            }
        }
        Delta::None
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

    #[test]
    fn deltas_name_each_changed_pod_with_its_grantable_ip_before_and_after() {
        let mut ix = Index::new();
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let d = ix.apply_delta(ClusterEvent::Pods(Change::Relisted(vec![
            pod("a", "10.0.0.1", "x"),
            pod("b", "10.0.0.2", "x"),
        ])));
        assert_eq!(
            d,
            Delta::Pods(vec![
                PodDelta {
                    id: ObjectRef::new("ns", "a"),
                    before: None,
                    after: ip("10.0.0.1")
                },
                PodDelta {
                    id: ObjectRef::new("ns", "b"),
                    before: None,
                    after: ip("10.0.0.2")
                },
            ])
        );
        let mut unready = pod("a", "10.0.0.1", "x");
        unready.ready = false;
        assert_eq!(
            ix.apply_delta(ClusterEvent::Pods(Change::Applied(unready.clone()))),
            Delta::Pods(vec![PodDelta {
                id: ObjectRef::new("ns", "a"),
                before: ip("10.0.0.1"),
                after: None
            }])
        );
        assert_eq!(
            ix.apply_delta(ClusterEvent::Pods(Change::Applied(unready))),
            Delta::None
        );
        // A relist reports only what differs: b moved, a vanished, c is new.
        let d = ix.apply_delta(ClusterEvent::Pods(Change::Relisted(vec![
            pod("b", "10.0.0.9", "x"),
            pod("c", "10.0.0.3", "x"),
        ])));
        assert_eq!(
            d,
            Delta::Pods(vec![
                PodDelta {
                    id: ObjectRef::new("ns", "a"),
                    before: None,
                    after: None
                },
                PodDelta {
                    id: ObjectRef::new("ns", "b"),
                    before: ip("10.0.0.2"),
                    after: ip("10.0.0.9")
                },
                PodDelta {
                    id: ObjectRef::new("ns", "c"),
                    before: None,
                    after: ip("10.0.0.3")
                },
            ])
        );
        assert_eq!(
            ix.apply_delta(ClusterEvent::Pods(Change::Deleted(pod(
                "c", "10.0.0.3", "x"
            )))),
            Delta::Pods(vec![PodDelta {
                id: ObjectRef::new("ns", "c"),
                before: ip("10.0.0.3"),
                after: None
            }])
        );
        assert_eq!(
            ix.apply_delta(ClusterEvent::Services(Change::Relisted(vec![]))),
            Delta::None
        );
        assert_eq!(
            ix.apply_delta(ClusterEvent::Secrets(Change::Applied(SecretFacts {
                id: ObjectRef::new("ns", "pw"),
                data: BTreeMap::new(),
            }))),
            Delta::Secrets
        );
    }
}

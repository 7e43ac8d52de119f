//! The sync index: a [`Cluster`] kept level-correct from watch [`Change`]s. No I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::metrics::Resource;
use crate::model::{Cluster, ObjectRef, PodFacts, SecretFacts, ServiceFacts};
use crate::validate::{grant_spec, Policy};
use crate::watch::Change;

/// A change to one of the three watched resources.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterEvent {
    Services(Change<ServiceFacts>),
    Pods(Change<PodFacts>),
    /// From a watch of every Secret (a relist replaces them all).
    Secrets(Change<SecretFacts>),
    /// From the watch of this one Secret (`fieldSelector=metadata.name=…`; a relist of zero
    /// items means it does not exist). See [`Index::expect_secret`].
    Secret(ObjectRef, Change<SecretFacts>),
}

impl ClusterEvent {
    pub fn resource(&self) -> Resource {
        match self {
            ClusterEvent::Services(_) => Resource::Services,
            ClusterEvent::Pods(_) => Resource::Pods,
            ClusterEvent::Secrets(_) | ClusterEvent::Secret(..) => Resource::Secrets,
        }
    }
}

/// The Secrets that opted-in Services name for their passwords (valid annotations only): what
/// the engine watches, one Secret each, instead of every Secret in the namespace.
pub fn referenced_secrets(cluster: &Cluster, policy: &Policy) -> BTreeSet<ObjectRef> {
    cluster
        .services
        .values()
        .filter_map(|svc| grant_spec(svc, policy).ok().flatten())
        .map(|spec| spec.password_secret)
        .collect()
}

/// The engine's view of the cluster. Level-triggered: a relist replaces a resource's whole
/// contents (objects missing from it are gone), an apply overwrites, a delete removes — also
/// when a selector-scoped watch reports an object that merely stopped matching.
#[derive(Debug, Clone, Default)]
pub struct Index {
    cluster: Cluster,
    synced: [bool; 3],
    /// Secrets watched one by one whose watch has not listed yet: the view is incomplete.
    pending_secrets: BTreeSet<ObjectRef>,
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

    /// Secrets are watched one by one ([`ClusterEvent::Secret`]), not listed as a whole: the
    /// Secrets half of the view is complete whenever no expected Secret is pending.
    pub fn secrets_by_name(&mut self) {
        self.synced[Resource::Secrets as usize] = true;
    }

    /// A watch of Secret `id` started: the view is incomplete until its first list arrives.
    pub fn expect_secret(&mut self, id: ObjectRef) {
        if !self.cluster.secrets.contains_key(&id) {
            self.pending_secrets.insert(id);
        }
    }

    /// The watch of Secret `id` stopped (no Service names it any more): forget it.
    pub fn forget_secret(&mut self, id: &ObjectRef) -> Delta {
        self.pending_secrets.remove(id);
        match self.cluster.secrets.remove(id) {
            Some(_) => Delta::Secrets,
            None => Delta::None,
        }
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
            ClusterEvent::Secret(id, c) => {
                let change = match c {
                    Change::Relisted(items) => {
                        self.pending_secrets.remove(&id);
                        match items.into_iter().find(|f| f.id == id) {
                            Some(f) => Change::Applied(f),
                            None => match self.cluster.secrets.get(&id) {
                                Some(old) => Change::Deleted(old.clone()),
                                None => return Delta::None,
                            },
                        }
                    }
                    other => other,
                };
                apply_change(
                    &mut self.cluster.secrets,
                    change,
                    |f| &f.id,
                    |_, _, _| any = true,
                );
                if any {
                    return Delta::Secrets;
                }
            }
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
        self.synced.iter().all(|s| *s) && self.pending_secrets.is_empty()
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

    fn secret(name: &str, pw: &str) -> SecretFacts {
        SecretFacts {
            id: ObjectRef::new("ns", name),
            data: BTreeMap::from([("password".to_string(), crate::model::Password::new(pw))]),
        }
    }

    #[test]
    fn secrets_watched_one_by_one_complete_the_view_when_each_has_listed() {
        let mut ix = Index::new();
        ix.secrets_by_name();
        ix.apply(ClusterEvent::Pods(Change::Relisted(vec![])));
        ix.apply(ClusterEvent::Services(Change::Relisted(vec![])));
        assert!(ix.synced(), "no Secret named: nothing to wait for");
        let (a, b) = (ObjectRef::new("ns", "a"), ObjectRef::new("ns", "b"));
        ix.expect_secret(a.clone());
        ix.expect_secret(b.clone());
        assert!(!ix.synced());
        let d = ix.apply_delta(ClusterEvent::Secret(
            a.clone(),
            Change::Relisted(vec![secret("a", "x")]),
        ));
        assert_eq!(d, Delta::Secrets);
        assert!(!ix.synced(), "b still pending");
        // b does not exist: an empty list completes it all the same.
        assert_eq!(
            ix.apply_delta(ClusterEvent::Secret(b.clone(), Change::Relisted(vec![]))),
            Delta::None
        );
        assert!(ix.synced());
        // A later relist of a without it: a was deleted.
        assert_eq!(
            ix.apply_delta(ClusterEvent::Secret(a.clone(), Change::Relisted(vec![]))),
            Delta::Secrets
        );
        assert!(ix.cluster().secrets.is_empty());
        ix.apply(ClusterEvent::Secret(
            a.clone(),
            Change::Applied(secret("a", "y")),
        ));
        // A relist by one Secret's watch touches no other Secret.
        ix.apply(ClusterEvent::Secret(
            b.clone(),
            Change::Relisted(vec![secret("b", "z")]),
        ));
        assert_eq!(ix.cluster().secrets.len(), 2);
        assert_eq!(ix.forget_secret(&a), Delta::Secrets);
        assert_eq!(ix.forget_secret(&a), Delta::None);
        assert_eq!(ix.cluster().secrets.len(), 1);
        // Expecting one already held does not make the view incomplete.
        ix.expect_secret(b);
        assert!(ix.synced());
    }

    #[test]
    fn referenced_secrets_are_the_valid_opted_in_services_password_secrets() {
        use crate::validate::{ANN_DATABASE, ANN_PASSWORD_SECRET, ANN_PRIVILEGES, ANN_USER};
        let svc = |name: &str, secret: &str, user: Option<&str>| {
            let mut annotations = BTreeMap::from([
                (ANN_DATABASE.to_string(), "appdb".to_string()),
                (ANN_PRIVILEGES.to_string(), "SELECT".to_string()),
                (ANN_PASSWORD_SECRET.to_string(), secret.to_string()),
            ]);
            if let Some(u) = user {
                annotations.insert(ANN_USER.to_string(), u.to_string());
            }
            ServiceFacts {
                id: ObjectRef::new("ns", name),
                uid: String::new(),
                selector: None,
                annotations,
            }
        };
        let mut ix = Index::new();
        ix.apply(ClusterEvent::Services(Change::Relisted(vec![
            svc("a", "db/password", Some("ns_a")),
            svc("b", "db/other", Some("ns_b")),
            svc("c", "cache/password", Some("ns_c")),
            svc("not-opted-in", "x/password", None),
            svc("hostile", "../etc/password", Some("ns_d")),
        ])));
        let got = referenced_secrets(ix.cluster(), &Policy::default());
        let want: BTreeSet<_> = [ObjectRef::new("ns", "cache"), ObjectRef::new("ns", "db")].into();
        assert_eq!(got, want);
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

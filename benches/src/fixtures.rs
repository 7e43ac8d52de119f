//! Synthetic clusters for the planner benches: N pods spread over S opted-in services.
//!
//! Deterministic: pod `i` belongs to service `i % S`, has IP `10.(i>>16).(i>>8).(i)` (data
//! only, never contacted) and is Running and Ready. Service `s` lives in namespace
//! `team-{s % 10}`, selects `app=svc-{s}`, and asks for `SELECT,INSERT` on `team_{s % 10}_db{s}` for user `team_{s % 10}_u{s}` (tenancy: the namespace's prefix).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use podgrant_core::grant::{Credential, Desired, Observed, ObservedAccount};
use podgrant_core::index::{ClusterEvent, Index};
use podgrant_core::model::{Cluster, ObjectRef, Password, PodFacts, SecretFacts, ServiceFacts};
use podgrant_core::sql::native_hash;
use podgrant_core::validate::{
    Policy, ANN_DATABASE, ANN_PASSWORD_SECRET, ANN_PRIVILEGES, ANN_USER,
};
use podgrant_core::watch::Change;

/// The namespace of service `s`.
pub fn namespace(s: usize) -> String {
    format!("team-{}", s % 10)
}

/// The IP of pod `i` (unique for `i < 2^24`).
pub fn pod_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        ((i >> 16) & 0xff) as u8,
        ((i >> 8) & 0xff) as u8,
        (i & 0xff) as u8,
    ))
}

/// Pod `i` of a cluster with `services` services: Running, Ready, with an IP.
pub fn pod(i: usize, services: usize) -> PodFacts {
    let s = i % services;
    PodFacts {
        id: ObjectRef::new(namespace(s), format!("pod-{i}")),
        uid: format!("uid-pod-{i}"),
        labels: BTreeMap::from([("app".to_string(), format!("svc-{s}"))]),
        ip: Some(pod_ip(i)),
        running: true,
        ready: true,
        terminating: false,
        host_network: false,
    }
}

/// A cluster of `pods` ready pods across `services` opted-in services, with their Secrets.
pub fn cluster(pods: usize, services: usize) -> Cluster {
    cluster_with_users(pods, services, "u")
}

/// [`cluster`] with user names `{user_prefix}{s}` (unique names for benches on a real MySQL).
pub fn cluster_with_users(pods: usize, services: usize, user_prefix: &str) -> Cluster {
    assert!(services > 0, "a fixture needs at least one service");
    let mut c = Cluster::default();
    for s in 0..services {
        let id = ObjectRef::new(namespace(s), format!("svc-{s}"));
        let annotations = BTreeMap::from([
            (
                ANN_USER.to_string(),
                format!("{}_{user_prefix}{s}", namespace(s).replace('-', "_")),
            ),
            (
                ANN_DATABASE.to_string(),
                format!("{}_db{s}", namespace(s).replace('-', "_")),
            ),
            (ANN_PRIVILEGES.to_string(), "SELECT,INSERT".to_string()),
            (ANN_PASSWORD_SECRET.to_string(), format!("pw-{s}/password")),
        ]);
        c.services.insert(
            id.clone(),
            ServiceFacts {
                id,
                uid: format!("uid-svc-{s}"),
                selector: Some(BTreeMap::from([("app".to_string(), format!("svc-{s}"))])),
                annotations,
            },
        );
        let secret = ObjectRef::new(namespace(s), format!("pw-{s}"));
        c.secrets.insert(
            secret.clone(),
            SecretFacts {
                id: secret,
                data: BTreeMap::from([(
                    "password".to_string(),
                    Password::new(format!("bench-password-{s}")),
                )]),
            },
        );
    }
    for i in 0..pods {
        let p = pod(i, services);
        c.pods.insert(p.id.clone(), p);
    }
    c
}

/// The policy the fixtures are valid under.
pub fn policy() -> Policy {
    Policy::default()
}

/// The observed state of a store that already holds exactly `desired` (a converged engine).
pub fn converged(desired: &Desired) -> Observed {
    let owned = desired
        .values()
        .map(|d| {
            (
                d.key.clone(),
                ObservedAccount {
                    key: d.key.clone(),
                    owner: d.owner.clone(),
                    fingerprint: d.fingerprint.clone(),
                    exists: true,
                    grants: BTreeMap::from([(d.database.clone(), d.privileges.clone())]),
                    credential: Credential::Native(native_hash(d.password.expose())),
                },
            )
        })
        .collect();
    Observed {
        owned,
        foreign: BTreeSet::new(),
    }
}

/// One pod event: pod `i` flips readiness (Ready → not Ready, or back).
pub fn flip_ready(cluster: &mut Cluster, i: usize, services: usize) {
    let id = pod(i, services).id;
    if let Some(p) = cluster.pods.get_mut(&id) {
        p.ready = !p.ready;
    }
}

/// An [`Index`] holding `cluster`, synced (Services, Secrets, then pods relisted).
pub fn index(cluster: &Cluster) -> Index {
    let mut index = Index::new();
    index.apply(ClusterEvent::Services(Change::Relisted(
        cluster.services.values().cloned().collect(),
    )));
    index.apply(ClusterEvent::Secrets(Change::Relisted(
        cluster.secrets.values().cloned().collect(),
    )));
    index.apply(ClusterEvent::Pods(Change::Relisted(
        cluster.pods.values().cloned().collect(),
    )));
    index
}

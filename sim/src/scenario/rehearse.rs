//! A step list rehearsed against the cluster's state before any step is applied, so `POST /_sim/steps` applies all of it or nothing.
//!
//! The rehearsal walks the list over an overlay of the store (which objects exist after each
//! step) and a copy of the IP pool (the real allocator, so a fixed IP a later step wants is
//! seen taken by an earlier step's allocation), and answers the first step that would fail
//! with the same error applying it would give. It reads the store but writes nothing.
//!
//! What it cannot foresee: a burst flood's own writes within the list, and a client writing
//! the same objects between the rehearsal and the apply (step lists themselves are applied
//! one at a time, see `admin.rs`).

use std::collections::HashMap;

use super::{Step, HOST_IP};
use crate::error::SimError;
use crate::ipam::Ipam;
use crate::sim::{lock, Sim};
use crate::store::Key;

/// `Err((i, e))`: applying `steps[i]` would fail with `e`, `steps[..i]` having been applied.
pub(crate) fn rehearse(sim: &Sim, steps: &[Step]) -> Result<(), (usize, SimError)> {
    let mut r = Rehearsal {
        sim,
        ipam: sim.ipam().clone(),
        exists: HashMap::new(),
        pod_ips: HashMap::new(),
        floods: HashMap::new(),
        all_floods_stopped: false,
    };
    for (i, step) in steps.iter().enumerate() {
        r.step(step).map_err(|e| (i, e))?;
    }
    Ok(())
}

struct Rehearsal<'a> {
    sim: &'a Sim,
    ipam: Ipam,
    /// `(plural, namespace, name)` → exists after the steps so far; absent = as in the store.
    exists: HashMap<(&'static str, Key), bool>,
    /// Pod IPs set by the steps so far; absent = as in the store.
    pod_ips: HashMap<Key, Option<String>>,
    /// Step-started flood ids running after the steps so far; absent = as now.
    floods: HashMap<String, bool>,
    all_floods_stopped: bool,
}

impl Rehearsal<'_> {
    fn step(&mut self, step: &Step) -> Result<(), SimError> {
        match step {
            Step::CreateNamespace { name } => self.create("namespaces", "", name),
            Step::CreatePod {
                namespace,
                name,
                host_network,
                ip,
                ..
            } => self.create_pod(namespace, name, *host_network, ip.as_deref()),
            Step::DeletePod {
                namespace,
                name,
                grace_seconds,
            } => {
                self.need("pods", namespace, name)?;
                // A graceful delete leaves the (bound) pod Terminating, its IP held.
                if grace_seconds.unwrap_or(0) == 0 {
                    self.delete_pod(namespace, name);
                }
                Ok(())
            }
            Step::RelabelPod {
                namespace, name, ..
            }
            | Step::SetPodReady {
                namespace, name, ..
            }
            | Step::SetPodPhase {
                namespace, name, ..
            }
            | Step::SetPodTerminating { namespace, name } => self.need("pods", namespace, name),
            Step::SetPodIp {
                namespace,
                name,
                ip,
            } => {
                // As applied: the pool first, then the pod.
                let key = key(namespace, name);
                match ip {
                    Some(ip) => self.ipam.claim(&key, ip)?,
                    None => self.ipam.release(&key),
                }
                self.need("pods", namespace, name)?;
                self.pod_ips.insert(key, ip.clone());
                Ok(())
            }
            Step::RecycleIp {
                namespace,
                from,
                to,
                ..
            } => {
                let ip = if self.present("pods", namespace, from) {
                    let ip = self.pod_ip(namespace, from);
                    self.delete_pod(namespace, from);
                    ip
                } else {
                    self.ipam
                        .released_ip(&key(namespace, from))
                        .map(|ip| ip.to_string())
                };
                let ip = ip.ok_or_else(|| {
                    SimError::BadRequest(format!(
                        "recycle_ip: pod {namespace}/{from} has no known IP"
                    ))
                })?;
                self.create_pod(namespace, to, false, Some(&ip))
            }
            Step::CreateService {
                namespace, name, ..
            } => {
                self.ensure_namespace(namespace);
                self.create("services", namespace, name)
            }
            Step::CreateSecret {
                namespace, name, ..
            } => {
                self.ensure_namespace(namespace);
                self.create("secrets", namespace, name)
            }
            Step::DeleteService { namespace, name } => {
                self.need("services", namespace, name)?;
                self.exists
                    .insert(("services", key(namespace, name)), false);
                Ok(())
            }
            Step::DeleteSecret { namespace, name } => {
                self.need("secrets", namespace, name)?;
                self.exists.insert(("secrets", key(namespace, name)), false);
                Ok(())
            }
            Step::AnnotateService {
                namespace, name, ..
            } => self.need("services", namespace, name),
            Step::Flood(spec) => {
                if let Some(id) = &spec.id {
                    if self.flood_running(id) {
                        return Err(SimError::AlreadyExists {
                            resource: "floods".into(),
                            name: id.clone(),
                        });
                    }
                    if spec.rate_per_second.is_some() {
                        self.floods.insert(id.clone(), true);
                    }
                }
                Ok(())
            }
            Step::StopFlood { id: Some(id) } => {
                self.floods.insert(id.clone(), false);
                Ok(())
            }
            Step::StopFlood { id: None } => {
                self.floods.clear();
                self.all_floods_stopped = true;
                Ok(())
            }
            Step::SetFaults { .. } | Step::Compact => Ok(()),
        }
    }

    fn present(&self, plural: &'static str, namespace: &str, name: &str) -> bool {
        let key = key(namespace, name);
        match self.exists.get(&(plural, key.clone())) {
            Some(e) => *e,
            None => lock(&self.sim.inner.store).contains(plural, &key),
        }
    }

    /// The NotFound applying a write to a missing object gives.
    fn need(&self, plural: &'static str, namespace: &str, name: &str) -> Result<(), SimError> {
        if self.present(plural, namespace, name) {
            Ok(())
        } else {
            Err(SimError::NotFound {
                resource: plural.into(),
                name: name.into(),
            })
        }
    }

    fn create(
        &mut self,
        plural: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<(), SimError> {
        if self.present(plural, namespace, name) {
            return Err(SimError::AlreadyExists {
                resource: plural.into(),
                name: name.into(),
            });
        }
        self.exists.insert((plural, key(namespace, name)), true);
        Ok(())
    }

    /// Steps that create namespaced objects create their namespace when it is missing.
    fn ensure_namespace(&mut self, namespace: &str) {
        self.exists.insert(("namespaces", key("", namespace)), true);
    }

    fn create_pod(
        &mut self,
        namespace: &str,
        name: &str,
        host_network: bool,
        ip: Option<&str>,
    ) -> Result<(), SimError> {
        self.ensure_namespace(namespace);
        if self.present("pods", namespace, name) {
            return Err(SimError::AlreadyExists {
                resource: "pods".into(),
                name: name.into(),
            });
        }
        let key = key(namespace, name);
        let ip = if host_network {
            ip.unwrap_or(HOST_IP).to_string()
        } else {
            match ip {
                Some(ip) => {
                    self.ipam.claim(&key, ip)?;
                    ip.to_string()
                }
                None => self.ipam.allocate(&key)?.to_string(),
            }
        };
        self.exists.insert(("pods", key.clone()), true);
        self.pod_ips.insert(key, Some(ip));
        Ok(())
    }

    fn delete_pod(&mut self, namespace: &str, name: &str) {
        let key = key(namespace, name);
        self.ipam.release(&key);
        self.exists.insert(("pods", key.clone()), false);
        self.pod_ips.insert(key, None);
    }

    fn pod_ip(&self, namespace: &str, name: &str) -> Option<String> {
        let key = key(namespace, name);
        match self.pod_ips.get(&key) {
            Some(ip) => ip.clone(),
            None => lock(&self.sim.inner.store)
                .get("pods", &key)
                .and_then(|pod| pod.pointer("/status/podIP"))
                .and_then(|ip| ip.as_str())
                .map(str::to_string),
        }
    }

    fn flood_running(&self, id: &str) -> bool {
        match self.floods.get(id) {
            Some(running) => *running,
            None => !self.all_floods_stopped && crate::flood::step_flood_running(self.sim, id),
        }
    }
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_string(), name.to_string())
}

//! Scenario steps (JSON `{"op": …}` or Rust builders) that drive the simulated cluster, and timed scenario files.

mod check; // steps parsed and validated as a whole before any is applied
mod rehearse; // a list walked over the cluster's state before any step is applied

pub(crate) use check::parse_steps;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::SimError;
use crate::fault::FaultPlan;
use crate::flood::FloodSpec;
use crate::sim::Sim;

/// Labels, annotations, selectors: string maps.
pub type Map = BTreeMap<String, String>;

fn yes() -> bool {
    true
}
fn running() -> String {
    "Running".into()
}

/// One step. JSON: `{"op": "create_pod", "namespace": "ns", "name": "web-1", "labels": {"app": "web"}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    CreateNamespace {
        name: String,
    },
    CreatePod {
        namespace: String,
        name: String,
        #[serde(default)]
        labels: Map,
        #[serde(default = "yes")]
        ready: bool,
        #[serde(default = "running")]
        phase: String,
        #[serde(default)]
        host_network: bool,
        /// Fixed IP; absent = the lowest free address of the pod CIDR.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
    },
    /// Remove the pod at once; with `grace_seconds` > 0, delete it gracefully instead, as
    /// `kubectl delete --grace-period` does (Terminating until the grace ends on tokio's clock).
    DeletePod {
        namespace: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grace_seconds: Option<u64>,
    },
    /// Replace the pod's labels.
    RelabelPod {
        namespace: String,
        name: String,
        labels: Map,
    },
    SetPodReady {
        namespace: String,
        name: String,
        ready: bool,
    },
    SetPodPhase {
        namespace: String,
        name: String,
        phase: String,
    },
    /// Set `metadata.deletionTimestamp` (the pod stays, as while a kubelet drains it).
    SetPodTerminating {
        namespace: String,
        name: String,
    },
    /// Set (or with `null`, clear) the pod IP.
    SetPodIp {
        namespace: String,
        name: String,
        ip: Option<String>,
    },
    /// Delete pod `from` (if it still exists) and create pod `to` with the IP `from` had.
    RecycleIp {
        namespace: String,
        from: String,
        to: String,
        #[serde(default)]
        labels: Map,
    },
    CreateService {
        namespace: String,
        name: String,
        #[serde(default)]
        selector: Map,
        #[serde(default)]
        annotations: Map,
    },
    DeleteService {
        namespace: String,
        name: String,
    },
    /// Merge annotations; a `null` value removes the key.
    AnnotateService {
        namespace: String,
        name: String,
        annotations: BTreeMap<String, Option<String>>,
    },
    CreateSecret {
        namespace: String,
        name: String,
        #[serde(default)]
        string_data: Map,
    },
    DeleteSecret {
        namespace: String,
        name: String,
    },
    SetFaults {
        plan: FaultPlan,
    },
    /// Start a churn generator; a rate flood is kept under `id` (default `flood-N`).
    Flood(FloodSpec),
    /// Stop the step-started flood `id`, or every one when `id` is absent. Stopping a flood
    /// that is not running (ended, never started) does nothing and is not an error.
    StopFlood {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    Compact,
}

fn map<K: Into<String>, V: Into<String>>(kv: impl IntoIterator<Item = (K, V)>) -> Map {
    kv.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

/// Builders: `Step::create_pod("ns", "web-1").labels([("app", "web")]).ready(false)`.
impl Step {
    pub fn create_namespace(name: &str) -> Self {
        Step::CreateNamespace { name: name.into() }
    }
    /// A ready, Running pod with an IP from the CIDR.
    pub fn create_pod(namespace: &str, name: &str) -> Self {
        Step::CreatePod {
            namespace: namespace.into(),
            name: name.into(),
            labels: Map::new(),
            ready: true,
            phase: running(),
            host_network: false,
            ip: None,
        }
    }
    pub fn delete_pod(namespace: &str, name: &str) -> Self {
        Step::DeletePod {
            namespace: namespace.into(),
            name: name.into(),
            grace_seconds: None,
        }
    }
    pub fn relabel_pod<K: Into<String>, V: Into<String>>(
        namespace: &str,
        name: &str,
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Step::RelabelPod {
            namespace: namespace.into(),
            name: name.into(),
            labels: map(labels),
        }
    }
    pub fn set_pod_ready(namespace: &str, name: &str, ready: bool) -> Self {
        Step::SetPodReady {
            namespace: namespace.into(),
            name: name.into(),
            ready,
        }
    }
    pub fn set_pod_phase(namespace: &str, name: &str, phase: &str) -> Self {
        Step::SetPodPhase {
            namespace: namespace.into(),
            name: name.into(),
            phase: phase.into(),
        }
    }
    pub fn set_pod_terminating(namespace: &str, name: &str) -> Self {
        Step::SetPodTerminating {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
    pub fn set_pod_ip(namespace: &str, name: &str, ip: Option<&str>) -> Self {
        Step::SetPodIp {
            namespace: namespace.into(),
            name: name.into(),
            ip: ip.map(str::to_string),
        }
    }
    pub fn recycle_ip(namespace: &str, from: &str, to: &str) -> Self {
        Step::RecycleIp {
            namespace: namespace.into(),
            from: from.into(),
            to: to.into(),
            labels: Map::new(),
        }
    }
    pub fn create_service<K: Into<String>, V: Into<String>>(
        namespace: &str,
        name: &str,
        selector: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Step::CreateService {
            namespace: namespace.into(),
            name: name.into(),
            selector: map(selector),
            annotations: Map::new(),
        }
    }
    pub fn delete_service(namespace: &str, name: &str) -> Self {
        Step::DeleteService {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
    /// Annotate; a `None` value removes the key.
    pub fn annotate_service<K: Into<String>>(
        namespace: &str,
        name: &str,
        annotations: impl IntoIterator<Item = (K, Option<&'static str>)>,
    ) -> Self {
        Step::AnnotateService {
            namespace: namespace.into(),
            name: name.into(),
            annotations: annotations
                .into_iter()
                .map(|(k, v)| (k.into(), v.map(str::to_string)))
                .collect(),
        }
    }
    pub fn create_secret<K: Into<String>, V: Into<String>>(
        namespace: &str,
        name: &str,
        string_data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Step::CreateSecret {
            namespace: namespace.into(),
            name: name.into(),
            string_data: map(string_data),
        }
    }
    pub fn delete_secret(namespace: &str, name: &str) -> Self {
        Step::DeleteSecret {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
    /// Replace the fault plan.
    pub fn set_faults(plan: FaultPlan) -> Self {
        Step::SetFaults { plan }
    }
    /// Start a flood (name it with [`FloodSpec::named`] to stop it later).
    pub fn flood(spec: FloodSpec) -> Self {
        Step::Flood(spec)
    }
    /// Stop the step-started flood `id`, or every one (`None`).
    pub fn stop_flood(id: Option<&str>) -> Self {
        Step::StopFlood {
            id: id.map(str::to_string),
        }
    }

    /// Labels (create_pod, relabel_pod, recycle_ip); ignored by other steps.
    pub fn labels<K: Into<String>, V: Into<String>>(
        mut self,
        kv: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        if let Step::CreatePod { labels, .. }
        | Step::RelabelPod { labels, .. }
        | Step::RecycleIp { labels, .. } = &mut self
        {
            *labels = map(kv);
        }
        self
    }
    /// Readiness (create_pod).
    /// Delete gracefully with this grace (delete_pod; 0 = at once).
    pub fn grace_seconds(mut self, secs: u64) -> Self {
        if let Step::DeletePod { grace_seconds, .. } = &mut self {
            *grace_seconds = Some(secs);
        }
        self
    }
    pub fn ready(mut self, r: bool) -> Self {
        if let Step::CreatePod { ready, .. } = &mut self {
            *ready = r;
        }
        self
    }
    /// Phase (create_pod).
    pub fn phase(mut self, p: &str) -> Self {
        if let Step::CreatePod { phase, .. } = &mut self {
            *phase = p.into();
        }
        self
    }
    /// hostNetwork (create_pod).
    pub fn host_network(mut self, h: bool) -> Self {
        if let Step::CreatePod { host_network, .. } = &mut self {
            *host_network = h;
        }
        self
    }
    /// Fixed IP (create_pod).
    pub fn ip(mut self, addr: &str) -> Self {
        if let Step::CreatePod { ip, .. } = &mut self {
            *ip = Some(addr.into());
        }
        self
    }
    /// Annotations (create_service).
    pub fn annotations<K: Into<String>, V: Into<String>>(
        mut self,
        kv: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        if let Step::CreateService { annotations, .. } = &mut self {
            *annotations = map(kv);
        }
        self
    }
}

/// A step at an offset from the scenario start.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimedStep {
    /// Offset from start, humantime (`"1s"`, `"250ms"`); default 0.
    #[serde(default, with = "humantime_serde")]
    pub at: Duration,
    pub step: Step,
}

/// A scenario file: `{"seed": 1, "pod_cidr": "10.244.0.0/16", "steps": [{"at": "1s", "step": {"op": …}}]}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    #[serde(default)]
    pub steps: Vec<TimedStep>,
}

impl Scenario {
    /// Load from a JSON file; errors name the path and the serde message (with line and column).
    pub fn load(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            SimError::File { message, .. } => SimError::File {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parse from JSON text; a step with a bad value (name, label, IP, flood rate, fault plan…)
    /// is refused with its index and field (`steps[2].step.name: …`), as `/_sim/steps` does.
    pub fn from_json(text: &str) -> Result<Self, SimError> {
        let file_error = |message: String| SimError::File {
            path: "<scenario>".into(),
            message,
        };
        let sc: Self = serde_json::from_str(text).map_err(|e| file_error(e.to_string()))?;
        let causes = check::check_timed(&sc.steps);
        if causes.is_empty() {
            Ok(sc)
        } else {
            Err(file_error(check::invalid(causes).to_string()))
        }
    }

    /// A `Sim` builder with this scenario's seed and CIDR.
    pub fn builder(&self) -> crate::SimBuilder {
        let b = Sim::builder().seed(self.seed);
        match &self.pod_cidr {
            Some(c) => b.pod_cidr(c),
            None => b,
        }
    }

    /// Apply the steps at their offsets (tokio time), stopping at the first error.
    pub async fn run(&self, sim: &Sim) -> Result<(), SimError> {
        let start = tokio::time::Instant::now();
        for (i, ts) in self.steps.iter().enumerate() {
            tokio::time::sleep_until(start + ts.at).await;
            sim.apply(&ts.step).map_err(|e| {
                SimError::BadRequest(format!("scenario step {i} ({}): {e}", op_name(&ts.step)))
            })?;
        }
        Ok(())
    }
}

fn op_name(step: &Step) -> String {
    serde_json::to_value(step)
        .ok()
        .and_then(|v| v.get("op").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default()
}

const HOST_IP: &str = "172.18.0.2";

/// The parameters of a pod a step creates.
struct NewPod<'a> {
    namespace: &'a str,
    name: &'a str,
    labels: &'a Map,
    ready: bool,
    phase: &'a str,
    host_network: bool,
    ip: Option<&'a str>,
}

fn pod_doc(sim: &Sim, p: &NewPod<'_>, ip: &str) -> Value {
    let now = sim.inner.clock.now_rfc3339();
    let status = if p.ready { "True" } else { "False" };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": p.labels},
        "spec": {
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
            "nodeName": "sim-node-1",
            "hostNetwork": p.host_network,
        },
        "status": {
            "phase": p.phase,
            "hostIP": HOST_IP,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "startTime": now,
            "conditions": [
                {"type": "Ready", "status": status, "lastTransitionTime": now},
                {"type": "ContainersReady", "status": status, "lastTransitionTime": now},
            ],
        },
    })
}

fn ensure_namespace(sim: &Sim, ns: &str) -> Result<(), SimError> {
    if sim.get("namespaces", None, ns).is_err() {
        sim.create("namespaces", None, json!({"metadata": {"name": ns}}))?;
    }
    Ok(())
}

fn create_pod(sim: &Sim, p: &NewPod<'_>) -> Result<(), SimError> {
    let NewPod {
        namespace,
        name,
        host_network,
        ip,
        ..
    } = *p;
    ensure_namespace(sim, namespace)?;
    let key = (namespace.to_string(), name.to_string());
    if sim.get("pods", Some(namespace), name).is_ok() {
        return Err(SimError::AlreadyExists {
            resource: "pods".into(),
            name: name.into(),
        });
    }
    let ip = if host_network {
        ip.unwrap_or(HOST_IP).to_string()
    } else {
        match ip {
            Some(ip) => {
                sim.ipam().claim(&key, ip)?;
                ip.to_string()
            }
            None => sim.ipam().allocate(&key)?.to_string(),
        }
    };
    let doc = pod_doc(sim, p, &ip);
    sim.create("pods", Some(namespace), doc)
        .map(|_| ())
        .inspect_err(|_| sim.ipam().release(&key))
}

fn modify(
    sim: &Sim,
    resource: &str,
    namespace: &str,
    name: &str,
    f: impl FnOnce(&mut Value),
) -> Result<(), SimError> {
    let mut obj = sim.get(resource, Some(namespace), name)?;
    f(&mut obj);
    sim.replace(resource, Some(namespace), obj).map(|_| ())
}

/// What applying one step did besides writing the store (`/_sim/steps` reports it).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Outcome {
    /// The id a rate flood was started under.
    pub flood_started: Option<String>,
    /// The floods a `stop_flood` stopped.
    pub floods_stopped: Vec<String>,
}

pub(crate) use rehearse::rehearse;

/// Apply one step to a simulator (bypasses HTTP and faults).
pub fn apply(sim: &Sim, step: &Step) -> Result<(), SimError> {
    run_step(sim, step).map(drop)
}

/// Apply one step and say what it started or stopped: the one executor behind
/// [`Sim::apply`], [`Scenario::run`] and `POST /_sim/steps`.
pub(crate) fn run_step(sim: &Sim, step: &Step) -> Result<Outcome, SimError> {
    let done = Outcome::default();
    let written = match step {
        Step::CreateNamespace { name } => sim
            .create("namespaces", None, json!({"metadata": {"name": name}}))
            .map(|_| ()),
        Step::CreatePod {
            namespace,
            name,
            labels,
            ready,
            phase,
            host_network,
            ip,
        } => create_pod(
            sim,
            &NewPod {
                namespace,
                name,
                labels,
                ready: *ready,
                phase,
                host_network: *host_network,
                ip: ip.as_deref(),
            },
        ),
        Step::DeletePod {
            namespace,
            name,
            grace_seconds: Some(g),
        } if *g > 0 => {
            // The HTTP delete path: a bound pod stays Terminating and a timer (armed only inside
            // a tokio runtime) removes it when the grace ends.
            let opts = crate::lifecycle::DeleteOptions {
                grace_period_seconds: Some(i64::try_from(*g).unwrap_or(i64::MAX)),
                ..Default::default()
            };
            sim.inner
                .delete(&sim.resolve("pods")?, Some(namespace), name, &opts)
                .map(drop)
        }
        Step::DeletePod {
            namespace, name, ..
        } => sim.delete("pods", Some(namespace), name),
        Step::RelabelPod {
            namespace,
            name,
            labels,
        } => modify(sim, "pods", namespace, name, |o| {
            o["metadata"]["labels"] = json!(labels)
        }),
        Step::SetPodReady {
            namespace,
            name,
            ready,
        } => {
            let now = sim.inner.clock.now_rfc3339();
            modify(sim, "pods", namespace, name, |o| {
                let s = if *ready { "True" } else { "False" };
                let mut conds: Vec<Value> = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                conds.retain(|c| c["type"] != "Ready" && c["type"] != "ContainersReady");
                conds.push(json!({"type": "Ready", "status": s, "lastTransitionTime": now}));
                conds.push(
                    json!({"type": "ContainersReady", "status": s, "lastTransitionTime": now}),
                );
                if !o.get("status").is_some_and(Value::is_object) {
                    o["status"] = json!({});
                }
                o["status"]["conditions"] = json!(conds);
            })
        }
        Step::SetPodPhase {
            namespace,
            name,
            phase,
        } => modify(sim, "pods", namespace, name, |o| {
            if !o.get("status").is_some_and(Value::is_object) {
                o["status"] = json!({});
            }
            o["status"]["phase"] = json!(phase);
        }),
        Step::SetPodTerminating { namespace, name } => {
            let now = sim.inner.clock.now_rfc3339();
            modify(sim, "pods", namespace, name, |o| {
                o["metadata"]["deletionTimestamp"] = json!(now);
                o["metadata"]["deletionGracePeriodSeconds"] = json!(30);
            })
        }
        Step::SetPodIp {
            namespace,
            name,
            ip,
        } => {
            let key = (namespace.clone(), name.clone());
            match ip {
                Some(ip) => sim.ipam().claim(&key, ip)?,
                None => sim.ipam().release(&key),
            }
            modify(sim, "pods", namespace, name, |o| {
                if !o.get("status").is_some_and(Value::is_object) {
                    o["status"] = json!({});
                }
                match ip {
                    Some(ip) => {
                        o["status"]["podIP"] = json!(ip);
                        o["status"]["podIPs"] = json!([{"ip": ip}]);
                    }
                    None => {
                        if let Some(s) = o["status"].as_object_mut() {
                            s.remove("podIP");
                            s.remove("podIPs");
                        }
                    }
                }
            })
        }
        Step::RecycleIp {
            namespace,
            from,
            to,
            labels,
        } => {
            let key = (namespace.clone(), from.clone());
            let ip = match sim.get("pods", Some(namespace), from) {
                Ok(pod) => {
                    let ip = pod
                        .pointer("/status/podIP")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    sim.delete("pods", Some(namespace), from)?;
                    ip
                }
                Err(_) => sim.ipam().released_ip(&key).map(|ip| ip.to_string()),
            };
            let ip = ip.ok_or_else(|| {
                SimError::BadRequest(format!(
                    "recycle_ip: pod {namespace}/{from} has no known IP"
                ))
            })?;
            create_pod(
                sim,
                &NewPod {
                    namespace,
                    name: to,
                    labels,
                    ready: true,
                    phase: "Running",
                    host_network: false,
                    ip: Some(&ip),
                },
            )
        }
        Step::CreateService {
            namespace,
            name,
            selector,
            annotations,
        } => {
            ensure_namespace(sim, namespace)?;
            let doc = json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
                "spec": {"selector": selector, "ports": [{"name": "mysql", "port": 3306, "protocol": "TCP", "targetPort": 3306}]},
            });
            sim.create("services", Some(namespace), doc).map(|_| ())
        }
        Step::DeleteService { namespace, name } => sim.delete("services", Some(namespace), name),
        Step::AnnotateService {
            namespace,
            name,
            annotations,
        } => modify(sim, "services", namespace, name, |o| {
            if !o
                .pointer("/metadata/annotations")
                .is_some_and(Value::is_object)
            {
                o["metadata"]["annotations"] = json!({});
            }
            if let Some(a) = o["metadata"]["annotations"].as_object_mut() {
                for (k, v) in annotations {
                    match v {
                        Some(v) => {
                            a.insert(k.clone(), json!(v));
                        }
                        None => {
                            a.remove(k);
                        }
                    }
                }
            }
        }),
        Step::CreateSecret {
            namespace,
            name,
            string_data,
        } => {
            ensure_namespace(sim, namespace)?;
            let doc = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "stringData": string_data});
            sim.create("secrets", Some(namespace), doc).map(|_| ())
        }
        Step::DeleteSecret { namespace, name } => sim.delete("secrets", Some(namespace), name),
        Step::SetFaults { plan } => {
            sim.set_faults(plan.clone());
            Ok(())
        }
        Step::Flood(spec) => {
            return crate::flood::start_for_step(sim, spec).map(|id| Outcome {
                flood_started: id,
                ..done
            })
        }
        Step::StopFlood { id } => {
            return Ok(Outcome {
                floods_stopped: crate::flood::stop_for_step(sim, id.as_deref()),
                ..done
            })
        }
        Step::Compact => {
            sim.compact();
            Ok(())
        }
    };
    written.map(|()| done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_json_and_errors() {
        let text = r#"{"seed": 3, "steps": [
            {"at": "1s", "step": {"op": "create_pod", "namespace": "a", "name": "p", "labels": {"app": "web"}}},
            {"step": {"op": "flood", "burst": 3}},
            {"at": "2s", "step": {"op": "compact"}}]}"#;
        let s = Scenario::from_json(text).unwrap();
        assert_eq!(s.steps[0].at, Duration::from_secs(1));
        assert_eq!(
            s.steps[0].step,
            Step::create_pod("a", "p").labels([("app", "web")])
        );
        let err = Scenario::from_json(r#"{"steps": [{"step": {"op": "explode"}}]}"#).unwrap_err();
        assert!(err.to_string().contains("explode"), "{err}");
    }
}

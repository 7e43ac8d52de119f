//! Pure object lifecycle rules: validation, defaulting and metadata on create, update and delete.
//!
//! Deletion, as kube-apiserver's generic store does it (`registry/generic/registry/store.go`
//! `Delete`/`updateForGracefulDeletionAndFinalizers`, `registry/rest/delete.go` `BeforeDelete`,
//! `pkg/registry/core/pod/strategy.go` `CheckGracefulDelete`):
//!
//! | stored object                                   | delete with grace `g`             | [`DeleteAction`]                |
//! |-------------------------------------------------|-----------------------------------|---------------------------------|
//! | preconditions (uid, resourceVersion) mismatch   | any                               | 409 Conflict                    |
//! | bound pod, not terminating, `g` (or spec, 30) > 0 | —                               | `Mark` ts = now+g, timer g      |
//! | pod terminating with grace G > 0                | `g` < G                           | `Mark` shortened (ts − G + g)   |
//! | pod terminating with grace G > 0                | none or `g` ≥ G                   | `Pending` (unchanged)           |
//! | anything else with finalizers                   | —                                 | `Mark` ts = now, grace 0 (or `Pending` if already so) |
//! | anything else                                   | —                                 | `Remove`                        |
//!
//! An object marked for deletion is removed by an update that empties its finalizers once its
//! grace is 0 ([`removed_by_update`]); the grace timer is a delete with grace 0 (the kubelet's).

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::error::SimError;
use crate::resource::ResourceInfo;

/// Values the caller supplies for a new object (time and randomness are inputs).
pub struct NewMeta {
    pub uid: String,
    pub now: String,
    /// Five lowercase alphanumerics for `generateName`.
    pub suffix: String,
}

/// How an update treats `status` (the pod `status` subresource rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// PUT/PATCH on the main resource: status changes are ignored for resources with a status subresource.
    Main,
    /// PUT/PATCH on `/status`: only status changes are taken.
    Status,
    /// The Rust object API: everything, including status and deletionTimestamp, is taken.
    Whole,
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn invalid(info: &ResourceInfo, name: &str, message: String) -> SimError {
    SimError::Invalid {
        kind: info.kind.to_string(),
        name: name.to_string(),
        message,
    }
}

fn check_type(info: &ResourceInfo, obj: &Value) -> Result<(), SimError> {
    if !obj.is_object() {
        return Err(SimError::BadRequest(format!(
            "the body of the request must be a JSON object of kind {}",
            info.kind
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != info.kind {
            return Err(SimError::BadRequest(format!(
                "the API version in the data ({}) does not match the expected API version ({}) or kind {} does not match {}",
                obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                info.api_version(),
                k,
                info.kind
            )));
        }
    }
    if let Some(m) = obj.get("metadata") {
        if !m.is_object() {
            return Err(SimError::BadRequest("metadata must be an object".into()));
        }
        for field in ["labels", "annotations"] {
            if let Some(map) = m.get(field) {
                let ok = map.is_null()
                    || map
                        .as_object()
                        .is_some_and(|o| o.values().all(Value::is_string));
                if !ok {
                    return Err(SimError::BadRequest(format!(
                        "metadata.{field} must be a map of strings"
                    )));
                }
            }
        }
    }
    Ok(())
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// Validate and default a new object. Returns `(namespace, name, object)`; RV is stamped by the store.
pub fn prepare_create(
    info: &ResourceInfo,
    namespace: Option<&str>,
    mut obj: Value,
    new: NewMeta,
) -> Result<(String, String, Value), SimError> {
    check_type(info, &obj)?;
    crate::microtime::normalize(info, &mut obj)?;
    obj["kind"] = json!(info.kind);
    obj["apiVersion"] = json!(info.api_version());
    let meta = meta_mut(&mut obj);
    let name = match meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        Some(n) => n.to_string(),
        None => match meta.get("generateName").and_then(Value::as_str) {
            Some(g) if !g.is_empty() => format!("{g}{}", new.suffix),
            _ => {
                return Err(invalid(
                    info,
                    "",
                    "metadata.name: Required value: name or generateName is required".into(),
                ));
            }
        },
    };
    if !is_dns_subdomain(&name) {
        return Err(invalid(
            info,
            &name,
            format!("metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ));
    }
    let ns = if info.namespaced {
        let body_ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let ns = match (namespace, body_ns) {
            (Some(p), Some(b)) if p != b => {
                return Err(SimError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ))
            }
            (Some(p), _) => p.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => {
                return Err(SimError::BadRequest("the namespace of the object is required".into()));
            }
        };
        meta.insert("namespace".into(), json!(ns));
        ns
    } else {
        meta.remove("namespace");
        String::new()
    };
    meta.insert("name".into(), json!(name));
    meta.insert("uid".into(), json!(new.uid));
    meta.insert("creationTimestamp".into(), json!(new.now));
    if has_generation(info) {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    // A client may set managedFields on create (upstream takes a valid list as given; the
    // sim's server-side apply creates objects this way); anything else is dropped.
    if !meta.get("managedFields").is_some_and(Value::is_array) {
        meta.remove("managedFields");
    }
    default_object(info, &mut obj, &new.now);
    if let Some(custom) = &info.custom {
        // Every write path (create, apply, the Rust API) stores the pruned object.
        obj = crate::crd::prune(custom, &obj).0;
        crate::crd::validate_object(info, custom, &obj)?;
    }
    if info.builtin_kind() == "CustomResourceDefinition" {
        crate::crd::validate_crd(&obj)?;
    }
    Ok((ns, name, obj))
}

/// Per-kind defaulting, as the registry's defaulting functions (`pkg/apis/core/v1/defaults.go`
/// `SetDefaults_PodSpec`, `SetDefaults_Container`, `SetDefaults_Service`) and strategies'
/// `PrepareForCreate` (`pkg/registry/core/{pod,service,namespace}/strategy.go`) add on create.
/// Admission plugins' additions (service account token volume, default tolerations, priority)
/// are not made: the sim runs no admission chain.
fn default_object(info: &ResourceInfo, obj: &mut Value, now: &str) {
    match info.builtin_kind() {
        "Pod" => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            default_pod_spec(&mut obj["spec"]);
            // A real server always starts at Pending; the sim keeps a status the caller gave
            // (scenario steps create running pods: there is no kubelet to make them so).
            if !obj.get("status").is_some_and(Value::is_object) {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        "Service" => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            let spec = &mut obj["spec"];
            default_field(spec, "type", json!("ClusterIP"));
            default_field(spec, "sessionAffinity", json!("None"));
            let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
            if ty != "ExternalName" {
                default_field(spec, "internalTrafficPolicy", json!("Cluster"));
                // The IP allocator's answer on a single-stack IPv4 cluster.
                default_field(spec, "ipFamilyPolicy", json!("SingleStack"));
                default_field(spec, "ipFamilies", json!(["IPv4"]));
            }
            if ty == "NodePort" || ty == "LoadBalancer" {
                default_field(spec, "externalTrafficPolicy", json!("Cluster"));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for port in ports.iter_mut().filter(|p| p.is_object()) {
                    default_field(port, "protocol", json!("TCP"));
                    if port.get("targetPort").is_none_or(Value::is_null) {
                        if let Some(p) = port.get("port").cloned() {
                            port["targetPort"] = p;
                        }
                    }
                }
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            // pkg/apis/apps/v1/defaults.go; the strategies' PrepareForCreate clear status.
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            let kind = info.builtin_kind();
            let spec = &mut obj["spec"];
            if kind != "DaemonSet" {
                default_field(spec, "replicas", json!(1));
            }
            if kind != "ReplicaSet" {
                default_field(spec, "revisionHistoryLimit", json!(10));
            }
            match kind {
                "Deployment" => {
                    default_strategy(
                        spec,
                        "strategy",
                        json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
                    );
                    default_field(spec, "progressDeadlineSeconds", json!(600));
                }
                "StatefulSet" => {
                    default_field(spec, "podManagementPolicy", json!("OrderedReady"));
                    default_strategy(spec, "updateStrategy", json!({"partition": 0}));
                    default_field(
                        spec,
                        "persistentVolumeClaimRetentionPolicy",
                        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                    );
                }
                "DaemonSet" => {
                    default_strategy(
                        spec,
                        "updateStrategy",
                        json!({"maxUnavailable": 1, "maxSurge": 0}),
                    );
                }
                _ => {}
            }
            if let Some(pod) = spec.pointer_mut("/template/spec").filter(|v| v.is_object()) {
                default_pod_spec(pod);
            }
            obj["status"] = json!({});
        }
        "Secret" => {
            fold_string_data(obj);
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        "CustomResourceDefinition" => crate::crd::default_and_establish(obj, now),
        "Namespace" => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            let name = obj
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null);
            let meta = meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if labels.is_object() {
                labels["kubernetes.io/metadata.name"] = name;
            }
        }
        "Event" if obj.get("firstTimestamp").is_none() => {
            obj["firstTimestamp"] = json!(now);
        }
        _ => {}
    }
}

/// `SetDefaults_PodSpec` and its containers' defaults, for a pod or a pod template.
fn default_pod_spec(spec: &mut Value) {
    for (key, value) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
        ("enableServiceLinks", json!(true)),
    ] {
        default_field(spec, key, value);
    }
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
}

/// Set `obj[key]` when it is absent or null.
/// A workload's update strategy as `SetDefaults_{Deployment,StatefulSet,DaemonSet}` default it
/// field by field: an empty type is `RollingUpdate`, whose missing parameters get `rolling`'s
/// (so `strategy: {}`, which Go clients send for an unset strategy, is defaulted too).
fn default_strategy(spec: &mut Value, key: &str, rolling: Value) {
    if !spec.get(key).is_some_and(Value::is_object) {
        spec[key] = json!({});
    }
    let strategy = &mut spec[key];
    if strategy.get("type").is_none_or(|t| t.is_null() || t == "") {
        strategy["type"] = json!("RollingUpdate");
    }
    if strategy["type"] != "RollingUpdate" {
        return;
    }
    default_field(strategy, "rollingUpdate", json!({}));
    if let (Some(ru), Some(defaults)) = (
        strategy["rollingUpdate"].as_object_mut(),
        rolling.as_object(),
    ) {
        for (k, v) in defaults {
            if ru.get(k).is_none_or(Value::is_null) {
                ru.insert(k.clone(), v.clone());
            }
        }
    }
}

fn default_field(obj: &mut Value, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj[key] = value;
    }
}

/// `SetDefaults_Container` and `SetDefaults_ContainerPort`: termination message, pull policy by
/// the image's tag (`:latest` or none → `Always`, else `IfNotPresent`), `resources: {}`, port protocol.
fn default_container(c: &mut Value) {
    if !c.is_object() {
        return;
    }
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    default_field(c, "resources", json!({}));
    let policy = pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
    default_field(c, "imagePullPolicy", json!(policy));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter(|p| p.is_object()) {
            default_field(port, "protocol", json!("TCP"));
        }
    }
}

/// The default `imagePullPolicy` for `image`, as `SetDefaults_Container` parses its reference.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent"; // pinned by digest
    }
    // The tag follows the last ':' after the last '/' (a registry's ':port' is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Whether the kind's strategy keeps `metadata.generation` (set to 1 on create, bumped by spec
/// changes only): pods (`podStrategy.PrepareForCreate`, Kubernetes ≥ 1.33) and the apps/v1
/// workloads — not Services, Secrets, ConfigMaps, Namespaces, Events, Leases and the other
/// core kinds, whose strategies never set it.
fn has_generation(info: &ResourceInfo) -> bool {
    // Custom resources too (apiextensions-apiserver `customResourceStrategy`).
    info.custom.is_some()
        || matches!(
            info.builtin_kind(),
            "Pod" | "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet"
        )
}

/// Secrets: `stringData` is write-only and folded into base64 `data`.
fn fold_string_data(obj: &mut Value) {
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    if let Some(sd) = sd.as_object() {
        for (k, v) in sd {
            let raw = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(raw));
        }
    }
}

/// Validate an update of `old` to `new` and produce the object to store, or `None` for a no-op.
pub fn prepare_update(
    info: &ResourceInfo,
    old: &Value,
    mut new: Value,
    mode: UpdateMode,
) -> Result<Option<Value>, SimError> {
    check_type(info, &new)?;
    crate::microtime::normalize(info, &mut new)?;
    let name = old
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let new_name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !new_name.is_empty() && new_name != name {
        return Err(SimError::BadRequest(
            "the name of the object does not match the name on the URL".into(),
        ));
    }
    let old_rv = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(rv) = new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        if !rv.is_empty() && rv != old_rv {
            return Err(SimError::Conflict {
                resource: info.qualified(),
                name,
                message: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
    }
    if info.builtin_kind() == "Secret" {
        fold_string_data(&mut new);
    }
    new["kind"] = json!(info.kind);
    new["apiVersion"] = json!(info.api_version());
    let mut out = match mode {
        UpdateMode::Status => {
            let mut out = old.clone();
            out["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            out
        }
        UpdateMode::Main if info.has_status => {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
            new
        }
        _ => new,
    };
    // Immutable / server-owned metadata comes from the old object.
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = meta_mut(&mut out);
    // A client that doesn't send managedFields (or sends `[]`) keeps the live ones (fieldmanager:
    // "prevent clients who don't understand managedFields from deleting it accidentally").
    if meta
        .get("managedFields")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        match old_meta.get("managedFields") {
            Some(v) => {
                meta.insert("managedFields".into(), v.clone());
            }
            None => {
                meta.remove("managedFields");
            }
        }
    }
    for key in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
    ] {
        match old_meta.get(key) {
            Some(v) => {
                meta.insert(key.into(), v.clone());
            }
            None => {
                meta.remove(key);
            }
        }
    }
    if mode != UpdateMode::Whole {
        // rest.BeforeUpdate: an update can never set, change or clear the deletion stamp.
        for key in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
            match old_meta.get(key) {
                Some(v) => {
                    meta.insert(key.into(), v.clone());
                }
                None => {
                    meta.remove(key);
                }
            }
        }
        if old_meta.get("deletionTimestamp").is_some() {
            no_new_finalizers(info, &name, old, &out)?;
        }
    }
    if out.get("status").is_some_and(Value::is_null) {
        if let Some(o) = out.as_object_mut() {
            o.remove("status");
        }
    }
    if let Some(custom) = &info.custom {
        out = crate::crd::prune(custom, &out).0;
        crate::crd::validate_object(info, custom, &out)?;
    }
    if info.builtin_kind() == "CustomResourceDefinition" && mode != UpdateMode::Status {
        crate::crd::validate_crd_update(old, &out)?;
    }
    if &out == old {
        return Ok(None);
    }
    if has_generation(info) && out.get("spec") != old.get("spec") {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut out).insert("generation".into(), json!(generation + 1));
    }
    Ok(Some(out))
}

/// `ValidateNoNewFinalizers` (apimachinery `ValidateObjectMetaUpdate`): while an object is
/// being deleted, an update may remove finalizers but not add any.
fn no_new_finalizers(
    info: &ResourceInfo,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), SimError> {
    let before = finalizers(old);
    let mut extra: Vec<&str> = finalizers(new)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    extra.sort_unstable();
    extra.dedup();
    let quoted: Vec<String> = extra.iter().map(|f| format!("{f:?}")).collect();
    Err(SimError::InvalidFields {
        kind: info.kind.to_string(),
        name: name.to_string(),
        causes: vec![crate::error::FieldCause {
            reason: "FieldValueForbidden",
            field: "metadata.finalizers".into(),
            message: format!(
                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                quoted.join(", ")
            ),
        }],
    })
}

/// `metadata.finalizers` (non-string entries are not finalizers).
pub fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `ShouldDeleteDuringUpdate` (generic store): an update that leaves no finalizers on an
/// object whose deletion was requested and whose grace is over (0 or unset) removes it.
pub fn removed_by_update(old: &Value, new: &Value) -> bool {
    finalizers(new).is_empty()
        && old.pointer("/metadata/deletionTimestamp").is_some()
        && old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
}

/// `metav1.DeleteOptions`, parsed and validated (`Query::delete_options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// `dryRun: ["All"]`.
    pub dry_run: bool,
    /// Seconds; a negative value was already made 1 (`BeforeDelete`).
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `Orphan`, `Background` or `Foreground` (the garbage collector's, `gc::propagation`).
    pub propagation_policy: Option<String>,
    /// Deprecated `orphanDependents` (`true` means Orphan).
    pub orphan_dependents: Option<bool>,
}

impl DeleteOptions {
    /// What the kubelet sends once a pod's grace is over (and `kubectl delete --force --grace-period=0`).
    pub fn immediate() -> Self {
        Self {
            grace_period_seconds: Some(0),
            ..Self::default()
        }
    }
}

/// What a delete does to the stored object.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteAction {
    /// Remove it now (DELETED).
    Remove,
    /// Store `object` (MODIFIED: deletion requested or its grace shortened); with `remove_after`,
    /// delete it again with grace 0 after that long.
    Mark {
        object: Value,
        remove_after: Option<Duration>,
    },
    /// Its deletion is pending already: answer it as stored, change nothing.
    Pending,
}

/// The deletion stamp a grace timer was set for: the timer acts only if it is still the same.
pub fn deletion_stamp(obj: &Value) -> [Option<&Value>; 3] {
    [
        obj.pointer("/metadata/uid"),
        obj.pointer("/metadata/deletionTimestamp"),
        obj.pointer("/metadata/deletionGracePeriodSeconds"),
    ]
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let ts = s.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
    let secs = u64::try_from(ts.as_second()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn add_secs(t: SystemTime, secs: i64) -> SystemTime {
    let d = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        t.checked_add(d).unwrap_or(t)
    } else {
        t.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The resource as `BeforeDelete` names it in a Conflict: the kind, with its group.
fn kind_qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.kind.to_string()
    } else {
        format!("{}.{}", info.kind, info.group)
    }
}

/// `CheckGracefulDelete` for pods: the grace a delete gets (0 = at once).
fn pod_grace(obj: &Value, requested: Option<i64>) -> i64 {
    let bound = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Failed" | "Succeeded")
    );
    if !bound || finished {
        return 0;
    }
    requested.unwrap_or_else(|| {
        obj.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
            .max(0)
    })
}

fn bump_generation(meta: &mut Map<String, Value>) {
    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
        if g > 0 {
            meta.insert("generation".into(), json!(g + 1));
        }
    }
}

/// Decide what deleting `obj` with `opts` at `now` does (see the module table).
pub fn plan_delete(
    info: &ResourceInfo,
    obj: &Value,
    opts: &DeleteOptions,
    now: SystemTime,
) -> Result<DeleteAction, SimError> {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let name = text("/metadata/name");
    let conflict = |message: String| SimError::Conflict {
        resource: kind_qualified(info),
        name: name.to_string(),
        message,
    };
    if let Some(uid) = &opts.uid {
        let stored = text("/metadata/uid");
        if uid != stored {
            return Err(conflict(format!("the UID in the precondition ({uid}) does not match the UID in record ({stored}). The object might have been deleted and then recreated")));
        }
    }
    if let Some(rv) = &opts.resource_version {
        let stored = text("/metadata/resourceVersion");
        if rv != stored {
            return Err(conflict(format!("the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({stored}). The object might have been modified")));
        }
    }
    let requested = opts.grace_period_seconds.map(|g| g.max(0));
    let stamped = obj
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str);
    let stamped_grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut out = obj.clone();
    // The grace BeforeDelete settled on, for a resource that deletes gracefully (pods).
    let mut graceful: Option<i64> = None;
    if info.builtin_kind() == "Pod" {
        match stamped {
            Some(ts) if stamped_grace > 0 => match requested {
                // Only a shorter grace may be asked for; the deadline moves back by the difference.
                Some(g) if g < stamped_grace => {
                    let requested_at = add_secs(parse_time(ts).unwrap_or(now), -stamped_grace);
                    let meta = meta_mut(&mut out);
                    meta.insert(
                        "deletionTimestamp".into(),
                        json!(crate::clock::rfc3339(add_secs(requested_at, g))),
                    );
                    meta.insert("deletionGracePeriodSeconds".into(), json!(g));
                    graceful = Some(g);
                }
                _ => return Ok(DeleteAction::Pending),
            },
            // Terminating with grace 0: not graceful any more (finalizers may still hold it).
            Some(_) => {}
            None => {
                let g = pod_grace(obj, requested);
                let meta = meta_mut(&mut out);
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(crate::clock::rfc3339(add_secs(now, g))),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(g));
                bump_generation(meta);
                graceful = Some(g);
            }
        }
    }
    if let Some(g) = graceful.filter(|g| *g > 0) {
        let due = out
            .pointer("/metadata/deletionTimestamp")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .unwrap_or(now);
        let remove_after = if stamped.is_none() {
            Duration::from_secs(g.unsigned_abs())
        } else {
            due.duration_since(now).unwrap_or(Duration::ZERO)
        };
        return Ok(DeleteAction::Mark {
            object: out,
            remove_after: Some(remove_after),
        });
    }
    if finalizers(obj).is_empty() {
        return Ok(DeleteAction::Remove);
    }
    if graceful.is_none() {
        // markAsDeleting: the deletion time is now unless an earlier one is recorded; grace 0.
        let meta = meta_mut(&mut out);
        let earlier = stamped.and_then(parse_time).is_some_and(|t| t <= now);
        if !earlier {
            if stamped.is_none() {
                bump_generation(meta);
            }
            meta.insert(
                "deletionTimestamp".into(),
                json!(crate::clock::rfc3339(now)),
            );
        }
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    if &out == obj {
        return Ok(DeleteAction::Pending);
    }
    Ok(DeleteAction::Mark {
        object: out,
        remove_after: None,
    })
}

/// A namespace's delete (`pkg/registry/core/namespace/storage/storage.go` `Delete`): it keeps
/// its `spec.finalizers` and gets `deletionTimestamp` (now, unless set) and `status.phase:
/// Terminating`; the namespace controller then deletes its content.
pub fn mark_terminating(ns: &Value, now: SystemTime) -> Value {
    let mut out = ns.clone();
    let meta = meta_mut(&mut out);
    if !meta.contains_key("deletionTimestamp") {
        meta.insert(
            "deletionTimestamp".into(),
            json!(crate::clock::rfc3339(now)),
        );
    }
    if !out.get("status").is_some_and(Value::is_object) {
        out["status"] = json!({});
    }
    out["status"]["phase"] = json!("Terminating");
    out
}

/// The `status.conditions` the namespace controller (`pkg/controller/namespace/deletion`
/// `namespaced_resources_deleter.go`) writes after a pass that left content behind:
/// `remaining` is `(resource, group, count)`, `finalizers` is `(finalizer, count)`.
pub fn namespace_conditions(
    remaining: &[(&str, &str, usize)],
    finalizers: &[(String, usize)],
    now: SystemTime,
) -> Value {
    let t = crate::clock::rfc3339(now);
    let cond = |ty: &str, status: bool, reason: &str, message: String| {
        json!({"type": ty, "status": if status { "True" } else { "False" },
               "lastTransitionTime": t, "reason": reason, "message": message})
    };
    let content = if remaining.is_empty() {
        cond(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let each: Vec<String> = remaining
            .iter()
            .map(|(r, g, n)| format!("{r}.{g} has {n} resource instances"))
            .collect();
        cond(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", each.join(", ")),
        )
    };
    let fin = if finalizers.is_empty() {
        cond(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let each: Vec<String> = finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        cond(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                each.join(", ")
            ),
        )
    };
    json!([
        cond(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into()
        ),
        cond(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into()
        ),
        cond(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into()
        ),
        content,
        fin,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> NewMeta {
        NewMeta {
            uid: "u".into(),
            now: "2026-01-01T00:00:00Z".into(),
            suffix: "abcde".into(),
        }
    }

    /// `SetDefaults_Deployment`/`_StatefulSet`/`_DaemonSet` default an update strategy field by
    /// field: the `strategy: {}` a Go client sends for an unset one gets RollingUpdate and its
    /// parameters; a Recreate keeps none; a given parameter stays.
    #[test]
    fn workload_strategies_default_field_by_field() {
        let cases = [
            (
                "deployments",
                "strategy",
                json!({}),
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            ),
            (
                "deployments",
                "strategy",
                json!({"type": "Recreate"}),
                json!({"type": "Recreate"}),
            ),
            (
                "deployments",
                "strategy",
                json!({"rollingUpdate": {"maxSurge": 2}}),
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2}}),
            ),
            (
                "statefulsets",
                "updateStrategy",
                json!({}),
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            (
                "daemonsets",
                "updateStrategy",
                json!({"type": "OnDelete"}),
                json!({"type": "OnDelete"}),
            ),
        ];
        for (plural, field, given, want) in cases {
            let info = crate::resource::by_plural(plural).unwrap();
            let mut obj = json!({"spec": {field: given}});
            default_object(info, &mut obj, "2026-01-01T00:00:00Z");
            assert_eq!(obj["spec"][field], want, "{plural} {given}");
        }
    }

    #[test]
    fn create_validates_and_defaults() {
        let pods = crate::resource::by_plural("pods").unwrap();
        let (ns, name, obj) = prepare_create(
            pods,
            Some("d"),
            json!({"metadata": {"generateName": "w-"}}),
            meta(),
        )
        .unwrap();
        assert_eq!((ns.as_str(), name.as_str()), ("d", "w-abcde"));
        assert_eq!(obj["status"]["phase"], "Pending");
        assert_eq!(
            prepare_create(
                pods,
                Some("d"),
                json!({"metadata": {"name": "Bad_Name"}}),
                meta()
            )
            .unwrap_err()
            .code(),
            422
        );
        assert_eq!(
            prepare_create(
                pods,
                Some("d"),
                json!({"metadata": {"name": "x", "namespace": "o"}}),
                meta()
            )
            .unwrap_err()
            .code(),
            400
        );
        let secrets = crate::resource::by_plural("secrets").unwrap();
        let (_, _, s) = prepare_create(
            secrets,
            Some("d"),
            json!({"metadata": {"name": "s"}, "stringData": {"p": "pw"}}),
            meta(),
        )
        .unwrap();
        assert_eq!(s["data"]["p"], "cHc=");
    }

    #[test]
    fn update_conflict_status_and_noop() {
        let pods = crate::resource::by_plural("pods").unwrap();
        let old = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "resourceVersion": "5"}, "status": {"phase": "Pending"}});
        let mut stale = old.clone();
        stale["metadata"]["resourceVersion"] = json!("4");
        assert_eq!(
            prepare_update(pods, &old, stale, UpdateMode::Main)
                .unwrap_err()
                .code(),
            409
        );
        let mut st = old.clone();
        st["status"]["phase"] = json!("Running");
        assert!(prepare_update(pods, &old, st.clone(), UpdateMode::Main)
            .unwrap()
            .is_none());
        let out = prepare_update(pods, &old, st, UpdateMode::Status)
            .unwrap()
            .unwrap();
        assert_eq!(out["status"]["phase"], "Running");
    }

    /// `pkg/apis/core/v1/defaults.go` (SetDefaults_PodSpec, SetDefaults_Container,
    /// SetDefaults_Service) as a table: (image, expected imagePullPolicy).
    #[test]
    fn pod_and_service_defaults_are_upstreams() {
        let pods = crate::resource::by_plural("pods").unwrap();
        for (image, policy) in [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.27", "IfNotPresent"),
            ("registry:5000/team/app", "Always"),
            ("registry:5000/team/app:v2", "IfNotPresent"),
            ("app@sha256:0123", "IfNotPresent"),
        ] {
            let (_, _, p) = prepare_create(
                pods,
                Some("d"),
                json!({"metadata": {"name": "p"}, "spec": {"containers": [
                    {"name": "c", "image": image, "ports": [{"containerPort": 80}]}]}}),
                meta(),
            )
            .unwrap();
            assert_eq!(
                p["spec"]["containers"][0]["imagePullPolicy"], policy,
                "{image}"
            );
            let spec = &p["spec"];
            assert_eq!(spec["dnsPolicy"], "ClusterFirst");
            assert_eq!(spec["restartPolicy"], "Always");
            assert_eq!(spec["terminationGracePeriodSeconds"], 30);
            assert_eq!(spec["enableServiceLinks"], true);
            let c = &spec["containers"][0];
            assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
            assert_eq!(c["terminationMessagePolicy"], "File");
            assert_eq!(c["ports"][0]["protocol"], "TCP");
            assert_eq!(p["metadata"]["generation"], 1);
        }
        let services = crate::resource::by_plural("services").unwrap();
        let (_, _, svc) = prepare_create(
            services,
            Some("d"),
            json!({"metadata": {"name": "s"}, "spec": {"ports": [
                {"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
            meta(),
        )
        .unwrap();
        let spec = &svc["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(spec["ports"][1]["protocol"], "UDP");
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        // Services, like Secrets and Namespaces, keep no generation (their strategies set none).
        assert!(svc["metadata"].get("generation").is_none(), "{svc}");
    }

    /// `metadata.generation` moves with spec changes only (pod strategy `updatePodGeneration`),
    /// and only on kinds that keep one.
    #[test]
    fn generation_counts_spec_changes_only_on_kinds_that_keep_it() {
        let pods = crate::resource::by_plural("pods").unwrap();
        let old = json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p", "resourceVersion": "5", "generation": 1},
            "spec": {"nodeName": "a"}, "status": {"phase": "Pending"}});
        let mut labelled = old.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        let out = prepare_update(pods, &old, labelled, UpdateMode::Main)
            .unwrap()
            .unwrap();
        assert_eq!(out["metadata"]["generation"], 1, "metadata only");
        let mut status = old.clone();
        status["status"]["phase"] = json!("Running");
        let out = prepare_update(pods, &old, status, UpdateMode::Status)
            .unwrap()
            .unwrap();
        assert_eq!(out["metadata"]["generation"], 1, "status only");
        let mut spec = old.clone();
        spec["spec"]["activeDeadlineSeconds"] = json!(5);
        let out = prepare_update(pods, &old, spec, UpdateMode::Main)
            .unwrap()
            .unwrap();
        assert_eq!(out["metadata"]["generation"], 2, "spec");

        let services = crate::resource::by_plural("services").unwrap();
        let old = json!({"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": "s", "resourceVersion": "5"}, "spec": {"selector": {"a": "b"}},
            "status": {"loadBalancer": {}}});
        let mut spec = old.clone();
        spec["spec"]["selector"] = json!({"a": "c"});
        spec["status"] = json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}});
        let out = prepare_update(services, &old, spec, UpdateMode::Main)
            .unwrap()
            .unwrap();
        assert!(out["metadata"].get("generation").is_none(), "{out}");
        // services/status is a subresource: the main resource ignores status changes.
        assert_eq!(out["status"], old["status"]);
    }

    /// `plan_delete` as a table: (stored object, requested grace) → what the delete does.
    #[test]
    fn plan_delete_follows_before_delete_and_the_finalizer_rules() {
        let pods = crate::resource::by_plural("pods").unwrap();
        let secrets = crate::resource::by_plural("secrets").unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t = |s: u64| crate::clock::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        let bound = json!({"metadata": {"name": "p", "uid": "u", "generation": 1}, "spec": {"nodeName": "n"}});
        let mut terminating = bound.clone();
        terminating["metadata"]["deletionTimestamp"] = json!(t(1020));
        terminating["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        let mut held = json!({"metadata": {"name": "s", "finalizers": ["f"]}});
        let mut held_marked = held.clone();
        held_marked["metadata"]["deletionTimestamp"] = json!(t(990));
        held_marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let unbound = json!({"metadata": {"name": "p"}});
        let plain = json!({"metadata": {"name": "s"}});
        let stamp = |a: &DeleteAction| match a {
            DeleteAction::Mark {
                object,
                remove_after,
            } => format!(
                "mark {} {} {:?}",
                object["metadata"]["deletionTimestamp"]
                    .as_str()
                    .unwrap_or("-"),
                object["metadata"]["deletionGracePeriodSeconds"],
                remove_after.map(|d| d.as_secs())
            ),
            other => format!("{other:?}"),
        };
        let cases: Vec<(&ResourceInfo, &Value, Option<i64>, String)> = vec![
            (pods, &bound, None, format!("mark {} 30 Some(30)", t(1030))),
            (pods, &bound, Some(5), format!("mark {} 5 Some(5)", t(1005))),
            (pods, &bound, Some(0), "Remove".into()),
            (pods, &unbound, None, "Remove".into()),
            (pods, &terminating, None, "Pending".into()),
            (pods, &terminating, Some(60), "Pending".into()),
            (
                pods,
                &terminating,
                Some(10),
                format!("mark {} 10 Some(0)", t(1000)),
            ),
            (pods, &terminating, Some(0), "Remove".into()),
            (secrets, &held, None, format!("mark {} 0 None", t(1000))),
            (secrets, &held_marked, Some(0), "Pending".into()),
            (secrets, &plain, Some(30), "Remove".into()),
        ];
        for (info, obj, grace, want) in cases {
            let opts = DeleteOptions {
                grace_period_seconds: grace,
                ..DeleteOptions::default()
            };
            let got = plan_delete(info, obj, &opts, now).unwrap();
            assert_eq!(stamp(&got), want, "{obj} grace {grace:?}");
        }
        held["metadata"]["uid"] = json!("u1");
        let wrong = DeleteOptions {
            uid: Some("u2".into()),
            ..DeleteOptions::default()
        };
        assert_eq!(
            plan_delete(secrets, &held, &wrong, now).unwrap_err().code(),
            409
        );
    }

    /// Namespace deletion (`pkg/registry/core/namespace/storage` `Delete`): marking keeps an
    /// earlier deletionTimestamp and the spec finalizers; the controller's conditions name
    /// what remains as `<resource>.<group> has N resource instances`.
    #[test]
    fn namespace_deletion_marks_once_and_names_what_remains() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let later = now + Duration::from_secs(5);
        let ns = json!({"metadata": {"name": "shop"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let marked = mark_terminating(&ns, now);
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(marked["spec"], ns["spec"]);
        assert_eq!(mark_terminating(&marked, later), marked, "idempotent");
        let conds = namespace_conditions(
            &[("pods", "", 2), ("leases", "coordination.k8s.io", 1)],
            &[("example.com/hold".into(), 1)],
            now,
        );
        let by_type = |t: &str| {
            conds
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .cloned()
                .unwrap()
        };
        let cases = [
            ("NamespaceDeletionContentFailure", "False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
            ("NamespaceContentRemaining", "True", "SomeResourcesRemain", "Some resources are remaining: pods. has 2 resource instances, leases.coordination.k8s.io has 1 resource instances"),
            ("NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"),
        ];
        for (ty, status, reason, message) in cases {
            let c = by_type(ty);
            assert_eq!(
                (
                    c["status"].as_str(),
                    c["reason"].as_str(),
                    c["message"].as_str()
                ),
                (Some(status), Some(reason), Some(message)),
                "{ty}"
            );
        }
    }
}

//! The `scale` subresource of deployments, replicasets and statefulsets: an `autoscaling/v1` Scale read from and written to `spec.replicas`.
//!
//! As upstream's scale REST storage (`pkg/registry/apps/deployment/storage/storage.go`
//! `ScaleREST`): GET answers a Scale (`spec.replicas`, `status.replicas`, `status.selector` as a
//! label-selector string); PUT and PATCH (of the Scale document) change only `spec.replicas`, a
//! stale `metadata.resourceVersion` is 409, a negative or non-integer count is 422.

use serde_json::{json, Value};

use crate::error::{FieldCause, SimError};
use crate::resource::ResourceInfo;

/// Whether `info` has a `scale` subresource (DaemonSets do not, upstream).
pub fn has_scale(info: &ResourceInfo) -> bool {
    info.custom.as_ref().is_some_and(|c| c.scale.is_some())
        || matches!(
            info.builtin_kind(),
            "Deployment" | "ReplicaSet" | "StatefulSet"
        )
}

/// Where a resource keeps what a Scale shows: the apps/v1 fields, or a CRD's
/// `subresources.scale` paths (`customresource_handler.go` `scaleSpec`).
fn paths(info: &ResourceInfo) -> (&str, &str, Option<&str>) {
    match info.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(p) => (
            &p.spec_replicas,
            &p.status_replicas,
            p.label_selector.as_deref(),
        ),
        None => ("/spec/replicas", "/status/replicas", None),
    }
}

/// Pure: the Scale of a stored workload or custom resource.
pub fn to_scale(info: &ResourceInfo, obj: &Value) -> Value {
    let (spec_ptr, status_ptr, selector_ptr) = paths(info);
    let selector = match (&info.custom, selector_ptr) {
        (Some(_), Some(p)) => obj
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        (Some(_), None) => String::new(),
        (None, _) => selector_string(obj.pointer("/spec/selector")),
    };
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": obj.pointer(spec_ptr).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": obj.pointer(status_ptr).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// `metav1.FormatLabelSelector`: `k=v` for match labels, `k in (a,b)` / `k notin (…)` / `k` /
/// `!k` for expressions, joined by commas.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(es) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in es {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values = || {
                let mut vs: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                vs.sort_unstable();
                vs.join(",")
            };
            match e
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default()
            {
                "In" => parts.push(format!("{key} in ({})", values())),
                "NotIn" => parts.push(format!("{key} notin ({})", values())),
                "Exists" => parts.push(key.to_string()),
                "DoesNotExist" => parts.push(format!("!{key}")),
                _ => {}
            }
        }
    }
    parts.join(",")
}

/// Pure: the workload with the replicas a (whole or patched) Scale asks for, carrying the
/// Scale's resourceVersion as the update's precondition.
pub fn apply_scale(info: &ResourceInfo, obj: &Value, scale: &Value) -> Result<Value, SimError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let invalid = |message: String| SimError::InvalidFields {
        kind: "Scale".into(),
        name: name.clone(),
        causes: vec![FieldCause {
            reason: "FieldValueInvalid",
            field: "spec.replicas".into(),
            message,
        }],
    };
    let replicas = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(r) if (0..=i64::from(i32::MAX)).contains(&r) => r,
            Some(r) if r < 0 => {
                return Err(invalid(format!(
                    "Invalid value: {r}: must be greater than or equal to 0"
                )))
            }
            _ => return Err(invalid(format!("Invalid value: {n}: must be an int32"))),
        },
        Some(other) => {
            return Err(SimError::BadRequest(format!(
                "Scale in version \"v1\" cannot be handled as a Scale: json: cannot unmarshal {} into Go struct field ScaleSpec.spec.replicas of type int32",
                if other.is_string() { "string" } else { "value" }
            )))
        }
    };
    let mut out = obj.clone();
    crate::crd::set_pointer(&mut out, paths(info).0, json!(replicas));
    if let Some(rv) = scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        out["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_reads_replicas_and_the_selector_and_writes_only_replicas() {
        let deploy = json!({"metadata": {"name": "web", "namespace": "d", "resourceVersion": "7", "uid": "u"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "tier": "fe"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                     {"key": "canary", "operator": "DoesNotExist"}]}}});
        let info = crate::resource::by_plural("deployments").unwrap();
        let s = to_scale(info, &deploy);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["replicas"], 0);
        assert_eq!(
            s["status"]["selector"],
            "app=web,tier=fe,env in (dev,prod),!canary"
        );
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        let out = apply_scale(info, &deploy, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(out["spec"]["selector"], deploy["spec"]["selector"]);
        // (scale, expected code)
        for (scale, code) in [
            (json!({"spec": {"replicas": -1}}), 422),
            (json!({"spec": {"replicas": 3_000_000_000u64}}), 422),
            (json!({"spec": {"replicas": "3"}}), 400),
        ] {
            assert_eq!(
                apply_scale(info, &deploy, &scale).unwrap_err().code(),
                code,
                "{scale}"
            );
        }
    }
}

//! Pure object lifecycle rules: validation, defaulting and metadata on create and update.

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
    meta.insert("generation".into(), json!(1));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("managedFields");
    default_object(info, &mut obj, &new.now);
    Ok((ns, name, obj))
}

/// Per-kind defaulting (what admission and registry strategies would add).
fn default_object(info: &ResourceInfo, obj: &mut Value, now: &str) {
    match info.kind {
        "Pod" => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            if obj["spec"].get("restartPolicy").is_none() {
                obj["spec"]["restartPolicy"] = json!("Always");
            }
            if obj["spec"].get("schedulerName").is_none() {
                obj["spec"]["schedulerName"] = json!("default-scheduler");
            }
            if !obj.get("status").is_some_and(Value::is_object) {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        "Service" => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            if obj["spec"].get("type").is_none() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if obj["spec"].get("sessionAffinity").is_none() {
                obj["spec"]["sessionAffinity"] = json!("None");
            }
            if obj.get("status").is_none() {
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
        "Secret" => {
            fold_string_data(obj);
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
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
    if info.kind == "Secret" {
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
        match old_meta.get("deletionTimestamp") {
            Some(v) => {
                meta.insert("deletionTimestamp".into(), v.clone());
            }
            None => {
                meta.remove("deletionTimestamp");
            }
        }
    }
    if out.get("status").is_some_and(Value::is_null) {
        if let Some(o) = out.as_object_mut() {
            o.remove("status");
        }
    }
    if &out == old {
        return Ok(None);
    }
    if out.get("spec") != old.get("spec") {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta_mut(&mut out).insert("generation".into(), json!(generation + 1));
    }
    Ok(Some(out))
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
}

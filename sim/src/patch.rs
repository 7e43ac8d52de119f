//! PATCH bodies: JSON merge patch, JSON patch, and strategic merge patch (maps, scalars, keyed lists).

use serde_json::{Map, Value};

use crate::error::SimError;

/// The patch flavours the apiserver accepts (server-side apply is not supported: 415).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
}

impl PatchType {
    /// From a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Result<Self, SimError> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            other => Err(SimError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got \"{other}\")"
            ))),
        }
    }
}

/// Apply a patch body to a document.
pub fn apply(kind: PatchType, target: &Value, body: &[u8]) -> Result<Value, SimError> {
    let mut doc = target.clone();
    match kind {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| SimError::BadRequest(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| SimError::Invalid {
                kind: kind_of(target),
                name: name_of(target),
                message: format!(
                    "the server rejected our request due to an error in our request: {e}"
                ),
            })?;
        }
        PatchType::Merge => {
            let p: Value = parse_object(body)?;
            json_patch::merge(&mut doc, &p);
        }
        PatchType::Strategic => {
            let p: Value = parse_object(body)?;
            strategic_merge(&mut doc, &p);
        }
    }
    Ok(doc)
}

fn parse_object(body: &[u8]) -> Result<Value, SimError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| SimError::BadRequest(format!("error decoding patch: {e}")))?;
    if !v.is_object() {
        return Err(SimError::BadRequest(
            "error decoding patch: patch must be a JSON object".into(),
        ));
    }
    Ok(v)
}

fn kind_of(v: &Value) -> String {
    v.get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn name_of(v: &Value) -> String {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Strategic merge: like merge patch, but honours `$patch` directives, drops other `$` keys,
/// and merges lists of objects keyed by `name` (containers, ports) or `type` (conditions).
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pmap) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match pmap.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = pmap.clone();
            clean.remove("$patch");
            *target = Value::Object(clean);
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(tmap) = target.as_object_mut() else {
        return;
    };
    for (k, v) in pmap {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                tmap.remove(k);
            }
            Value::Object(_) => {
                let entry = tmap.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(entry, v);
                if entry.is_null() {
                    tmap.remove(k);
                }
            }
            Value::Array(items) => {
                let merged = match tmap.get(k) {
                    Some(Value::Array(existing)) => merge_list(existing, items),
                    _ => None,
                };
                tmap.insert(k.clone(), merged.unwrap_or_else(|| v.clone()));
            }
            _ => {
                tmap.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_key(items: &[Value]) -> Option<&'static str> {
    ["name", "type", "containerPort", "ip"]
        .into_iter()
        .find(|key| !items.is_empty() && items.iter().all(|i| i.get(*key).is_some()))
}

fn merge_list(existing: &[Value], patch: &[Value]) -> Option<Value> {
    let key = merge_key(patch)?;
    if !existing.iter().all(|i| i.get(key).is_some()) {
        return None;
    }
    let mut out: Vec<Value> = existing.to_vec();
    for p in patch {
        let id = p.get(key);
        let delete = p.get("$patch").and_then(Value::as_str) == Some("delete");
        match out.iter().position(|e| e.get(key) == id) {
            Some(i) if delete => {
                out.remove(i);
            }
            Some(i) => strategic_merge(&mut out[i], p),
            None if delete => {}
            None => out.push(p.clone()),
        }
    }
    Some(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_maps_scalars_and_keyed_lists() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
        let p = br#"{"metadata":{"labels":{"a":null,"c":"3"}},"spec":{"$setElementOrder/containers":[{"name":"c"}],"containers":[{"name":"c","image":"y"}]}}"#;
        let out = apply(PatchType::Strategic, &doc, p).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "y"}])
        );
    }

    #[test]
    fn json_patch_and_errors() {
        let doc = json!({"metadata": {"name": "x"}});
        let out = apply(
            PatchType::Json,
            &doc,
            br#"[{"op":"add","path":"/metadata/labels","value":{"k":"v"}}]"#,
        )
        .unwrap();
        assert_eq!(out["metadata"]["labels"]["k"], "v");
        assert_eq!(
            apply(
                PatchType::Json,
                &doc,
                br#"[{"op":"remove","path":"/nope"}]"#
            )
            .unwrap_err()
            .code(),
            422
        );
        assert_eq!(apply(PatchType::Merge, &doc, b"{").unwrap_err().code(), 400);
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml")
                .unwrap_err()
                .code(),
            415
        );
    }
}

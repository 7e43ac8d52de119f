//! PATCH bodies: JSON merge patch, JSON patch, and strategic merge patch (maps, scalars, keyed lists).

use serde_json::{Map, Value};

use crate::error::SimError;
use crate::limits;

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

/// Apply a patch body to a copy of a document, bounding the work: at most
/// [`limits::MAX_JSON_PATCH_OPS`] JSON-patch operations (413, like kube-apiserver), at most
/// [`limits::MAX_PATCH_COPY_BYTES`] duplicated by `copy` ops and at most
/// [`limits::MAX_PATCH_SHIFT_WORK`] array elements shifted in total, and a result of at most
/// [`limits::MAX_OBJECT_BYTES`] (both 422). No lock is needed: the target is only read.
pub fn apply(kind: PatchType, target: &Value, body: &[u8]) -> Result<Value, SimError> {
    let mut doc = target.clone();
    match kind {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| SimError::BadRequest(format!("error decoding patch: {e}")))?;
            if p.0.len() > limits::MAX_JSON_PATCH_OPS {
                return Err(SimError::EntityTooLarge(format!(
                    "The allowed maximum operations in a JSON patch is {}, got {}",
                    limits::MAX_JSON_PATCH_OPS,
                    p.0.len()
                )));
            }
            apply_json_bounded(target, &mut doc, &p.0)?;
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
    if let Err(size) = limits::check_size(&doc, limits::MAX_OBJECT_BYTES) {
        return Err(too_large(target, size));
    }
    Ok(doc)
}

/// 422 for an object that would be stored larger than [`limits::MAX_OBJECT_BYTES`].
/// (kube-apiserver answers etcd's "request is too large" with a 413/500 depending on the
/// version; the sim says 422 `Invalid` because it is the request that made the object too big.)
pub fn too_large(target: &Value, at_least: usize) -> SimError {
    SimError::Invalid {
        kind: kind_of(target),
        name: name_of(target),
        message: format!(
            "Request entity too large: the object would be more than {} bytes (at least {at_least}); limit is {}",
            limits::MAX_OBJECT_BYTES,
            limits::MAX_OBJECT_BYTES
        ),
    }
}

fn parent_len(doc: &Value, pointer: &str) -> usize {
    let parent = pointer.rsplit_once('/').map_or("", |(p, _)| p);
    match doc.pointer(parent) {
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// Apply JSON-patch operations one at a time, charging `copy` by the bytes it duplicates
/// (measured with an early stop, so the charge costs no more than the budget) and array
/// inserts/removals by the elements they shift.
fn apply_json_bounded(
    target: &Value,
    doc: &mut Value,
    ops: &[json_patch::PatchOperation],
) -> Result<(), SimError> {
    use json_patch::PatchOperation as Op;
    let mut copied = 0usize;
    let mut shifted = 0usize;
    for op in ops {
        shifted = shifted.saturating_add(match op {
            Op::Add(o) => parent_len(doc, o.path.as_str()),
            Op::Remove(o) => parent_len(doc, o.path.as_str()),
            Op::Move(o) => {
                parent_len(doc, o.from.as_str()).saturating_add(parent_len(doc, o.path.as_str()))
            }
            Op::Copy(o) => parent_len(doc, o.path.as_str()),
            Op::Replace(_) | Op::Test(_) => 0,
        });
        if shifted > limits::MAX_PATCH_SHIFT_WORK {
            return Err(invalid_patch(
                target,
                format!(
                    "the patch moves more than {} array elements in total",
                    limits::MAX_PATCH_SHIFT_WORK
                ),
            ));
        }
        if let Op::Copy(o) = op {
            let budget = limits::MAX_PATCH_COPY_BYTES.saturating_sub(copied);
            if let Some(from) = doc.pointer(o.from.as_str()) {
                match limits::size_within(from, budget) {
                    Some(n) => copied += n,
                    None => {
                        return Err(invalid_patch(
                            target,
                            format!(
                            "the allowed accumulated copy size limit of {} bytes has been exceeded",
                            limits::MAX_PATCH_COPY_BYTES
                        ),
                        ))
                    }
                }
            }
        }
        if let Op::Test(t) = op {
            if t.value.is_null() && member_absent(doc, t.path.as_str()) {
                // evanphx/json-patch (the apiserver's) passes a `test` of a missing member of an
                // existing object against null; kube-runtime's finalizer helper relies on it.
                continue;
            }
        }
        // The document is a private copy, discarded on error: no undo log needed.
        json_patch::patch_unsafe(doc, std::slice::from_ref(op)).map_err(|e| {
            invalid_patch(
                target,
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Whether `path` names a key absent from an object that exists (not an array slot, not a
/// member of a missing parent).
fn member_absent(doc: &Value, path: &str) -> bool {
    let Some((parent, _)) = path.rsplit_once('/') else {
        return false;
    };
    doc.pointer(path).is_none() && doc.pointer(parent).is_some_and(Value::is_object)
}

fn invalid_patch(target: &Value, message: String) -> SimError {
    SimError::Invalid {
        kind: kind_of(target),
        name: name_of(target),
        message,
    }
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

/// How a list field merges in a strategic merge patch: the built-in types' `patchStrategy` /
/// `patchMergeKey` struct tags (k8s.io/api, e.g. `PodSpec.Containers`
/// `patchStrategy:"merge" patchMergeKey:"name"`, `ServiceSpec.Ports` keyed by `port`,
/// `ObjectMeta.Finalizers` `patchStrategy:"merge"`). A list with no strategy is replaced whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Items are objects merged by this key.
    MergeByKey(&'static str),
    /// Items are scalars; the patch's are added (a set union in order).
    MergePrimitives,
    /// The patch's list replaces the live one.
    Replace,
}

fn list_strategy(field: &str, sample: Option<&Value>) -> ListStrategy {
    use ListStrategy::*;
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => MergeByKey("name"),
        "volumeMounts" => MergeByKey("mountPath"),
        "volumeDevices" => MergeByKey("devicePath"),
        // Container ports are keyed by containerPort, Service ports by port.
        "ports" if sample.is_some_and(|i| i.get("containerPort").is_some()) => {
            MergeByKey("containerPort")
        }
        "ports" => MergeByKey("port"),
        "conditions" => MergeByKey("type"),
        "ownerReferences" => MergeByKey("uid"),
        "hostAliases" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "finalizers" => MergePrimitives,
        _ => Replace,
    }
}

/// Strategic merge (`k8s.io/apimachinery/pkg/util/strategicpatch`): maps merge as in a merge
/// patch (`null` deletes), list fields merge by their strategy ([`list_strategy`]); the
/// directives `$patch: replace|delete` (a map or a list item), `$retainKeys` (keys not listed
/// are cleared), `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured.
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
    if let Some(keep) = pmap.get("$retainKeys").and_then(Value::as_array) {
        let keep: std::collections::HashSet<&str> = keep.iter().filter_map(Value::as_str).collect();
        tmap.retain(|k, _| keep.contains(k.as_str()));
    }
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
                    Some(Value::Array(existing)) => merge_list(k, existing, items),
                    _ => None,
                };
                let value = merged.unwrap_or_else(|| {
                    // No live list: the patch's, without delete directives.
                    Value::Array(
                        items
                            .iter()
                            .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .cloned()
                            .collect(),
                    )
                });
                tmap.insert(k.clone(), value);
            }
            _ => {
                tmap.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in pmap {
        if let (Some(field), Some(gone)) =
            (k.strip_prefix("$deleteFromPrimitiveList/"), v.as_array())
        {
            if let Some(Value::Array(list)) = tmap.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
        }
    }
    for (k, v) in pmap {
        if let (Some(field), Some(order)) = (k.strip_prefix("$setElementOrder/"), v.as_array()) {
            if let Some(Value::Array(list)) = tmap.get_mut(field) {
                set_element_order(field, list, order);
            }
        }
    }
}

/// `$setElementOrder/<field>`: the listed items first, in that order (matched by merge key or
/// value), then any others as they were.
fn set_element_order(field: &str, list: &mut [Value], order: &[Value]) {
    let key = match list_strategy(field, order.first()) {
        ListStrategy::MergeByKey(k) => Some(k),
        _ => None,
    };
    let id = |v: &Value| match key {
        Some(k) => v.get(k).map(|x| x.to_string()).unwrap_or_default(),
        None => v.to_string(),
    };
    let rank: std::collections::HashMap<String, usize> =
        order.iter().enumerate().map(|(i, v)| (id(v), i)).collect();
    // A stable sort: unlisted items keep their relative order, after the listed ones.
    list.sort_by_key(|v| rank.get(&id(v)).copied().unwrap_or(usize::MAX));
}

/// Merge a patch list into a live one by the field's strategy, in O(n + m) (live items are
/// indexed by their key's JSON text); `None` when the list is replaced.
fn merge_list(field: &str, existing: &[Value], patch: &[Value]) -> Option<Value> {
    let key = match list_strategy(field, patch.first().or(existing.first())) {
        ListStrategy::Replace => return None,
        ListStrategy::MergePrimitives => {
            let mut out = existing.to_vec();
            let mut seen: std::collections::HashSet<String> =
                out.iter().map(|v| v.to_string()).collect();
            for p in patch {
                if seen.insert(p.to_string()) {
                    out.push(p.clone());
                }
            }
            return Some(Value::Array(out));
        }
        ListStrategy::MergeByKey(key) => key,
    };
    if !patch.iter().all(|i| i.get(key).is_some()) {
        return None;
    }
    let id_of = |v: &Value| v.get(key).map(|k| k.to_string()).unwrap_or_default();
    let mut out: Vec<Option<Value>> = existing.iter().cloned().map(Some).collect();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, e) in existing.iter().enumerate() {
        index.entry(id_of(e)).or_insert(i);
    }
    for p in patch {
        let id = id_of(p);
        let directive = p.get("$patch").and_then(Value::as_str);
        match index.get(&id).copied() {
            Some(i) if directive == Some("delete") => {
                out[i] = None;
                index.remove(&id);
            }
            Some(i) if directive == Some("replace") => {
                let mut clean = p.clone();
                if let Some(m) = clean.as_object_mut() {
                    m.remove("$patch");
                }
                out[i] = Some(clean);
            }
            Some(i) => {
                if let Some(item) = out[i].as_mut() {
                    strategic_merge(item, p);
                }
            }
            None if directive == Some("delete") => {}
            None => {
                let mut item = Value::Null;
                strategic_merge(&mut item, p);
                index.insert(id, out.len());
                out.push(Some(item));
            }
        }
    }
    Some(Value::Array(out.into_iter().flatten().collect()))
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

    /// strategicpatch by the types' tags: one Service port patched keeps the others (merge key
    /// `port`), finalizers merge as a set, a list without a strategy (args) is replaced, and the
    /// `$retainKeys`, `$deleteFromPrimitiveList`, `$setElementOrder`, `$patch` directives.
    #[test]
    fn strategic_lists_merge_by_the_fields_strategy() {
        let svc = json!({"metadata": {"finalizers": ["a"]}, "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]}});
        // (patch, pointer, expected)
        let cases: &[(&str, &str, Value)] = &[
            (
                r#"{"spec":{"ports":[{"port":80,"targetPort":8080}]}}"#,
                "/spec/ports",
                json!([{"name": "http", "port": 80, "targetPort": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            (
                r#"{"metadata":{"finalizers":["b","a"]}}"#,
                "/metadata/finalizers",
                json!(["a", "b"]),
            ),
            (
                r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}"#,
                "/metadata/finalizers",
                json!([]),
            ),
            (
                r#"{"spec":{"ports":[{"port":53,"$patch":"delete"}]}}"#,
                "/spec/ports",
                json!([{"name": "http", "port": 80, "targetPort": 80}]),
            ),
            (
                r#"{"spec":{"$setElementOrder/ports":[{"port":53},{"port":80}],"ports":[{"port":80,"name":"web"}]}}"#,
                "/spec/ports",
                json!([{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "web", "port": 80, "targetPort": 80}]),
            ),
            (
                r#"{"spec":{"$retainKeys":["ports"],"type":null}}"#,
                "/spec",
                svc["spec"].clone(),
            ),
        ];
        for (patch, ptr, want) in cases {
            let out = apply(PatchType::Strategic, &svc, patch.as_bytes()).unwrap();
            assert_eq!(out.pointer(ptr), Some(want), "{patch}");
        }
        let pod =
            json!({"spec": {"containers": [{"name": "c", "image": "x", "args": ["a", "b"]}]}});
        let out = apply(
            PatchType::Strategic,
            &pod,
            br#"{"spec":{"containers":[{"name":"c","args":["z"]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "c", "image": "x", "args": ["z"]}])
        );
        let out = apply(
            PatchType::Strategic,
            &pod,
            br#"{"spec":{"$retainKeys":["containers"],"containers":[{"name":"d","image":"y"}]}}"#,
        )
        .unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 2);
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
            apply(PatchType::Strategic, &doc, b"[]").unwrap_err().code(),
            400
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml")
                .unwrap_err()
                .code(),
            415
        );
    }

    /// evanphx/json-patch `test`: a missing member of an existing object equals null; a member
    /// of a missing parent, or a missing array slot, is an error.
    #[test]
    fn a_test_of_an_absent_member_against_null_passes() {
        let doc = json!({"metadata": {"name": "x"}, "spec": {"l": [1]}});
        let cases: &[(&str, bool)] = &[
            (
                r#"[{"op":"test","path":"/metadata/finalizers","value":null}]"#,
                true,
            ),
            (
                r#"[{"op":"test","path":"/metadata/name","value":null}]"#,
                false,
            ),
            (
                r#"[{"op":"test","path":"/nope/finalizers","value":null}]"#,
                false,
            ),
            (r#"[{"op":"test","path":"/spec/l/3","value":null}]"#, false),
            (
                r#"[{"op":"test","path":"/metadata/finalizers","value":[]}]"#,
                false,
            ),
        ];
        for (patch, passes) in cases {
            let got = apply(PatchType::Json, &doc, patch.as_bytes());
            assert_eq!(got.is_ok(), *passes, "{patch}: {got:?}");
        }
    }

    #[test]
    fn json_patch_work_is_bounded() {
        let doc = json!({"metadata": {"name": "x"}, "data": {"d": "x".repeat(1024)}});
        // 20 copies doubling a 1 KiB value would make 1 GiB: refused at the copy budget.
        let doubling: Vec<Value> = (0..20)
            .map(|i| json!({"op": "copy", "from": "/data", "path": format!("/data/c{i}")}))
            .collect();
        let e = apply(
            PatchType::Json,
            &doc,
            &serde_json::to_vec(&doubling).unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.code(), 422, "{e}");
        assert!(e.to_string().contains("copy size limit"), "{e}");
        // Too many operations: 413, before anything is applied.
        let many = vec![
            json!({"op": "test", "path": "/metadata/name", "value": "x"});
            limits::MAX_JSON_PATCH_OPS + 1
        ];
        let e = apply(PatchType::Json, &doc, &serde_json::to_vec(&many).unwrap()).unwrap_err();
        assert_eq!((e.code(), e.reason()), (413, "RequestEntityTooLarge"));
        // A result over the object limit: 422 naming the limit.
        let big = json!([{"op": "add", "path": "/data/big", "value": "y".repeat(limits::MAX_OBJECT_BYTES)}]);
        let e = apply(PatchType::Json, &doc, &serde_json::to_vec(&big).unwrap()).unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(
            e.to_string()
                .contains(&limits::MAX_OBJECT_BYTES.to_string()),
            "{e}"
        );
        // Shifting a long array element by element: refused at the shift budget.
        let arr = json!({"metadata": {"name": "x"}, "a": vec![0; 100_000]});
        let shifts = vec![json!({"op": "remove", "path": "/a/0"}); 10_000];
        let e = apply(PatchType::Json, &arr, &serde_json::to_vec(&shifts).unwrap()).unwrap_err();
        assert_eq!(e.code(), 422, "{e}");
    }

    #[test]
    fn strategic_keyed_lists_merge_in_linear_time() {
        let n = 20_000;
        let existing: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("c{i}"), "v": 0}))
            .collect();
        let patch: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("c{i}"), "v": 1}))
            .collect();
        let out = merge_list("containers", &existing, &patch).unwrap();
        assert_eq!(out.as_array().unwrap().len(), n);
        assert!(out.as_array().unwrap().iter().all(|c| c["v"] == 1));
        let del = [
            json!({"name": "c1", "$patch": "delete"}),
            json!({"name": "new"}),
        ];
        let out = merge_list("containers", &existing[..3], &del).unwrap();
        let names: Vec<_> = out
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, [json!("c0"), json!("c2"), json!("new")]);
    }
}

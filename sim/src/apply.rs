//! Server-side apply (`application/apply-patch+yaml`): field ownership per manager in `metadata.managedFields` (FieldsV1), conflicts, and removal of fields a manager stops applying.
//!
//! The rules copied from structured-merge-diff as kube-apiserver runs it
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager`, KEP-555):
//!
//! | step | rule |
//! |---|---|
//! | owned set | the fields the applied configuration sets: every leaf (scalar, atomic list, empty map), every associative-list item by its key (`k:{"name":"c"}`), every set member (`v:"x"`) |
//! | conflict | a field in the new set whose applied value differs from the live one and that another manager owns → 409 listing each, unless `force` (ownership moves to the applier) |
//! | merge | maps merge, associative lists merge item by item on their keys, sets union, anything else is replaced |
//! | removal | a field this manager owned before and no longer applies, owned by no one else, is removed from the object |
//! | record | the applier's entry (`operation: Apply`) is replaced by its new set; managers left with no fields are dropped |
//!
//! Associative lists are known by their field name (the built-in schemas' `x-kubernetes-list-map-keys`):
//! containers, env, volumes by `name`, ports by `containerPort`+`protocol` (containers) or
//! `port`+`protocol` (Services), `volumeMounts` by `mountPath`, `conditions` by `type`,
//! `ownerReferences` by `uid`; `finalizers` is a set. Other lists are atomic. Not done:
//! `operation: Update` entries for PUT/PATCH (those writes are not tracked: a later apply does
//! not conflict with them), `x-kubernetes-map-type`, per-version schemas.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::error::SimError;

/// One step of a field path, rendered as in FieldsV1 (`f:name`, `k:{…}`, `v:…`).
type Path = Vec<String>;

/// The list key fields of an associative list, by the list's field name and a sample item.
fn list_keys(field: &str, item: &Value) -> Option<&'static [&'static str]> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some(&["name"]),
        "ports" if item.get("containerPort").is_some() => Some(&["containerPort", "protocol"]),
        "ports" if item.get("port").is_some() => Some(&["port", "protocol"]),
        "volumeMounts" => Some(&["mountPath"]),
        "conditions" => Some(&["type"]),
        "ownerReferences" => Some(&["uid"]),
        _ => None,
    }
}

fn is_set(field: &str) -> bool {
    field == "finalizers"
}

fn item_key(keys: &[&str], item: &Value) -> String {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = item.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

/// Fields the apiserver owns and never records.
fn ignored(path: &[String]) -> bool {
    matches!(
        path,
        [a, ..] if a == "f:apiVersion" || a == "f:kind" || a == "f:status"
    ) || matches!(
        path,
        [m, f, ..] if m == "f:metadata" && matches!(f.as_str(),
            "f:name" | "f:namespace" | "f:uid" | "f:resourceVersion" | "f:generation"
            | "f:creationTimestamp" | "f:managedFields" | "f:deletionTimestamp"
            | "f:deletionGracePeriodSeconds" | "f:selfLink")
    )
}

/// Pure: the set of field paths `config` sets.
pub fn field_set(config: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    walk(config, &mut Vec::new(), &mut out);
    out.retain(|p| !ignored(p));
    out
}

fn walk(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk_field(k, child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

fn walk_field(field: &str, v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    match v {
        Value::Array(items) if is_set(field) => {
            for item in items {
                path.push(format!("v:{item}"));
                out.insert(path.clone());
                path.pop();
            }
        }
        Value::Array(items) if items.first().and_then(|i| list_keys(field, i)).is_some() => {
            for item in items {
                let keys = list_keys(field, item).unwrap_or(&["name"]);
                path.push(item_key(keys, item));
                path.push(".".into());
                out.insert(path.clone());
                path.pop();
                walk(item, path, out);
                path.pop();
            }
        }
        other => walk(other, path, out),
    }
}

/// FieldsV1 JSON for a set of paths.
pub fn to_fields_v1(set: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut node = &mut root;
        for step in p {
            node = node
                .entry(step.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("FieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// A set from FieldsV1 JSON (leaves are empty objects).
pub fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    fn go(v: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// The value at a FieldsV1 path in an object (`None` if absent); a `.` step names the item itself.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    let mut field = "";
    for step in path {
        if step == "." {
            continue;
        }
        if let Some(f) = step.strip_prefix("f:") {
            cur = cur.get(f)?;
            field = f;
        } else if let Some(k) = step.strip_prefix("k:") {
            let want: Value = serde_json::from_str(k).ok()?;
            cur = cur.as_array()?.iter().find(|item| {
                want.as_object()
                    .is_some_and(|w| w.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))
            })?;
        } else if let Some(v) = step.strip_prefix("v:") {
            let want: Value = serde_json::from_str(v).ok()?;
            cur = cur.as_array()?.iter().find(|item| **item == want)?;
        }
    }
    let _ = field;
    Some(cur)
}

/// Remove the field at `path` from `obj` (a list item for a `k:`/`v:` path ending in `.` or `v:`).
fn remove_at(obj: &mut Value, path: &[String]) {
    let steps: Vec<&String> = path.iter().filter(|s| *s != ".").collect();
    let Some((last, parents)) = steps.split_last() else {
        return;
    };
    let mut cur = obj;
    for step in parents {
        let next = if let Some(f) = step.strip_prefix("f:") {
            cur.get_mut(f)
        } else if let Some(k) = step.strip_prefix("k:") {
            let want: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            cur.as_array_mut().and_then(|a| {
                a.iter_mut().find(|item| {
                    want.as_object()
                        .is_some_and(|w| w.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))
                })
            })
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(k) = last.strip_prefix("k:") {
        let want: Value = serde_json::from_str(k).unwrap_or(Value::Null);
        if let Some(a) = cur.as_array_mut() {
            a.retain(|item| {
                !want
                    .as_object()
                    .is_some_and(|w| w.iter().all(|(kk, vv)| item.get(kk) == Some(vv)))
            });
        }
    } else if let Some(v) = last.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).unwrap_or(Value::Null);
        if let Some(a) = cur.as_array_mut() {
            a.retain(|item| *item != want);
        }
    }
}

/// Merge `config` into `live` by the apply rules (maps merge, associative lists by key, sets union).
fn merge(live: &mut Value, config: &Value, field: &str) {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, cv) in c {
                match l.get_mut(k) {
                    Some(lv) => merge(lv, cv, k),
                    None => {
                        l.insert(k.clone(), cv.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) if is_set(field) => {
            for item in c {
                if !l.contains(item) {
                    l.push(item.clone());
                }
            }
        }
        (Value::Array(l), Value::Array(c))
            if c.first().and_then(|i| list_keys(field, i)).is_some() =>
        {
            for item in c {
                let keys = list_keys(field, item).unwrap_or(&["name"]);
                let same = |x: &Value| keys.iter().all(|k| x.get(*k) == item.get(*k));
                match l.iter_mut().find(|x| same(x)) {
                    Some(existing) => merge(existing, item, ""),
                    None => l.push(item.clone()),
                }
            }
        }
        (l, c) => *l = c.clone(),
    }
}

/// The managers recorded on an object: (manager, operation) → (entry, fields).
type Managers = BTreeMap<(String, String), (Value, BTreeSet<Path>)>;

fn managers(obj: &Value) -> Managers {
    let mut out = BTreeMap::new();
    for e in obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = e
            .get("manager")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let op = e
            .get("operation")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let set = e.get("fieldsV1").map(from_fields_v1).unwrap_or_default();
        out.insert((name, op), (e.clone(), set));
    }
    out
}

/// Pure: apply `config` as `manager` over `live` (`None`: the object does not exist yet and is
/// created from the config). Returns the object to store, `managedFields` recorded.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, SimError> {
    let new_set = field_set(config);
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string();
    let me = (manager.to_string(), "Apply".to_string());
    let (mut object, mut mgrs) = match live {
        Some(l) => (l.clone(), managers(l)),
        None => (json!({}), Managers::new()),
    };
    // Conflicts: a field another manager owns that this apply would change.
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for p in &new_set {
        // An item's own entry (`.`) says it exists: two managers wanting it is no conflict.
        if p.last().is_some_and(|s| s == ".") {
            continue;
        }
        let differs = value_at(&object, p) != value_at(config, p);
        if !differs {
            continue;
        }
        for ((name, op), (_, set)) in mgrs.iter_mut() {
            if (name.as_str(), op.as_str()) == (me.0.as_str(), me.1.as_str()) || !set.contains(p) {
                continue;
            }
            if force {
                set.remove(p);
            } else {
                conflicts.push((name.clone(), render(p)));
            }
        }
    }
    if !conflicts.is_empty() {
        let list = conflicts
            .iter()
            .map(|(m, f)| format!("- conflict with \"{m}\": {f}"))
            .collect::<Vec<_>>()
            .join("\n");
        let message = if conflicts.len() == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\": {}",
                conflicts[0].0, conflicts[0].1
            )
        } else {
            format!("Apply failed with {} conflicts: {list}", conflicts.len())
        };
        return Err(SimError::ApplyConflict {
            message,
            causes: conflicts
                .into_iter()
                .map(|(m, f)| (format!("conflict with \"{m}\""), f))
                .collect(),
        });
    }
    // Removal of what this manager stops applying and no one else owns.
    let old_set = mgrs.get(&me).map(|(_, s)| s.clone()).unwrap_or_default();
    for p in old_set.difference(&new_set) {
        let shared = mgrs.iter().any(|(k, (_, set))| *k != me && set.contains(p));
        if !shared {
            remove_at(&mut object, p);
        }
    }
    merge(&mut object, config, "");
    mgrs.insert(me.clone(), (json!({}), new_set));
    let entries: Vec<Value> = mgrs
        .into_iter()
        .filter(|(_, (_, set))| !set.is_empty())
        .map(|((name, op), (old, set))| {
            let fresh = name == me.0 && op == me.1;
            json!({
                "manager": name,
                "operation": op,
                "apiVersion": if fresh { json!(api_version) } else { old.get("apiVersion").cloned().unwrap_or(json!(api_version)) },
                "time": if fresh { json!(now) } else { old.get("time").cloned().unwrap_or(json!(now)) },
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&set),
            })
        })
        .collect();
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]["managedFields"] = Value::Array(entries);
    Ok(object)
}

/// A path as upstream's conflict message writes it: `.spec.replicas`, `.spec.containers[name="c"].image`.
fn render(p: &[String]) -> String {
    let mut s = String::new();
    for step in p {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let v: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let inner = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(kk, vv)| format!("{kk}={vv}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            s.push_str(&format!("[{inner}]"));
        } else if let Some(v) = step.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Whether a PATCH's content type is server-side apply.
pub fn is_apply(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == "application/apply-patch+yaml"
}

/// The applied configuration from a request body: JSON, or YAML (kubectl and kube-rs send JSON).
pub fn parse_config(body: &[u8]) -> Result<Value, SimError> {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => serde_yaml_ng::from_slice(body)
            .map_err(|e| SimError::BadRequest(format!("error decoding YAML: {e}")))?,
    };
    if !v.is_object() {
        return Err(SimError::BadRequest(
            "the body of an apply patch must be an object".into(),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(replicas: i64, image: &str, labels: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn the_field_set_keys_list_items_and_skips_server_fields() {
        let set = field_set(&deploy(2, "nginx", json!({"a": "1"})));
        let fields = to_fields_v1(&set);
        assert_eq!(
            fields,
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
                   "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                       "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(from_fields_v1(&fields), set);
    }

    #[test]
    fn a_second_manager_conflicts_unless_forced_and_a_dropped_field_is_removed() {
        let one = apply(
            None,
            &deploy(2, "nginx", json!({"a": "1"})),
            "one",
            false,
            "t",
        )
        .unwrap();
        // Same values from another manager: shared ownership, no conflict.
        let shared = apply(
            Some(&one),
            &deploy(2, "nginx", json!({})),
            "two",
            false,
            "t",
        )
        .unwrap();
        // A different replicas: conflict naming the owner and the field.
        let err = apply(
            Some(&shared),
            &deploy(5, "nginx", json!({})),
            "two",
            false,
            "t",
        )
        .unwrap_err();
        assert_eq!(err.code(), 409);
        assert!(
            err.to_string()
                .contains("conflict with \"one\": .spec.replicas"),
            "{err}"
        );
        let forced = apply(
            Some(&shared),
            &deploy(5, "nginx", json!({})),
            "two",
            true,
            "t",
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        // "one" stops applying label a: removed, it was only theirs.
        let dropped = apply(Some(&forced), &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
            "one", false, "t").unwrap();
        assert!(dropped.pointer("/metadata/labels/a").is_none(), "{dropped}");
        // replicas is two's now and stays.
        assert_eq!(dropped["spec"]["replicas"], 5);
        let managers: Vec<_> = dropped["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap(),
                    e["operation"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(managers, [("one", "Apply"), ("two", "Apply")]);
    }

    #[test]
    fn finalizers_are_a_set_and_containers_merge_by_name() {
        let a = apply(
            None,
            &json!({"metadata": {"finalizers": ["x"]},
            "spec": {"containers": [{"name": "a", "image": "i"}]}}),
            "m1",
            false,
            "t",
        )
        .unwrap();
        let b = apply(
            Some(&a),
            &json!({"metadata": {"finalizers": ["y"]},
            "spec": {"containers": [{"name": "b", "image": "j"}]}}),
            "m2",
            false,
            "t",
        )
        .unwrap();
        assert_eq!(b["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(b["spec"]["containers"].as_array().unwrap().len(), 2);
    }
}

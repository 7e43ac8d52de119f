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
//! `ownerReferences` by `uid`; `finalizers` is a set. Other lists are atomic.
//!
//! Every other write records too ([`record_update`], structured-merge-diff's `Update`): a create,
//! PUT or non-apply PATCH gives its manager (`fieldManager`, else the User-Agent up to its first
//! `/`) an `operation: Update` entry owning the fields it added or changed, taken from whoever
//! owned them, so a later apply changing one of them conflicts with that manager (`conflict with
//! "kubectl-edit"`). Writes to `/status` own `status` fields in an entry with `subresource:
//! status`. Not done: `x-kubernetes-map-type`, per-version schemas.

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

/// Pure: the fields of `obj.status` (what a write to the `/status` subresource can own).
fn status_field_set(obj: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    if let Some(status) = obj.get("status") {
        let mut path = vec!["f:status".to_string()];
        walk_field("status", status, &mut path, &mut out);
    }
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

/// Who owns a set of fields: manager, operation (`Apply`/`Update`) and subresource (`""` for the
/// main resource) — upstream keys managedFields entries by all three.
type Owner = (String, String, String);

/// The managers recorded on an object: owner → (entry, fields).
type Managers = BTreeMap<Owner, (Value, BTreeSet<Path>)>;

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
        let sub = e
            .get("subresource")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let set = e.get("fieldsV1").map(from_fields_v1).unwrap_or_default();
        out.insert((name, op, sub), (e.clone(), set));
    }
    out
}

/// Render managers as `metadata.managedFields` entries (managers owning nothing are dropped);
/// `fresh` gets `api_version` and `now`, the others keep theirs.
fn entries(mgrs: Managers, fresh: &Owner, api_version: &str, now: &str) -> Vec<Value> {
    mgrs.into_iter()
        .filter(|(_, (_, set))| !set.is_empty())
        .map(|(owner, (old, set))| {
            let is_fresh = owner == *fresh;
            let (name, op, sub) = owner;
            let mut e = json!({
                "manager": name,
                "operation": op,
                "apiVersion": if is_fresh { json!(api_version) } else { old.get("apiVersion").cloned().unwrap_or(json!(api_version)) },
                "time": if is_fresh { json!(now) } else { old.get("time").cloned().unwrap_or(json!(now)) },
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&set),
            });
            if !sub.is_empty() {
                e["subresource"] = json!(sub);
            }
            e
        })
        .collect()
}

/// The manager a non-apply write is recorded under, as upstream's `managerOrUserAgent`: the
/// `fieldManager` parameter, else the User-Agent up to its first `/` (printable characters, at
/// most 128), e.g. `kubectl-edit`, `OpenAPI-Generator`.
pub fn manager_or_user_agent(field_manager: Option<&str>, user_agent: &str) -> String {
    match field_manager.filter(|m| !m.is_empty()) {
        Some(m) => m.to_string(),
        None => user_agent
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(128)
            .collect(),
    }
}

/// `fieldManager` as upstream validates it (`ValidateFieldManager`): at most 128 characters,
/// all printable.
pub fn validate_field_manager(m: &str) -> Result<(), SimError> {
    let message = if m.chars().count() > 128 {
        "Too long: may not be more than 128 bytes"
    } else if m.chars().any(char::is_control) {
        "Invalid value: must only contain printable characters"
    } else {
        return Ok(());
    };
    Err(SimError::InvalidFields {
        kind: "Options.meta.k8s.io".into(),
        name: String::new(),
        causes: vec![crate::error::FieldCause {
            reason: "FieldValueInvalid",
            field: "fieldManager".into(),
            message: message.into(),
        }],
    })
}

/// Pure: record a non-apply write (create when `old` is `None`, update, patch) in `new`'s
/// `metadata.managedFields`, as structured-merge-diff's `Update` does: the fields `new` adds or
/// changes against `old` go to `manager`'s `operation: Update` entry and are taken from every
/// other manager; fields `new` removes leave every manager. The base is the managedFields the
/// request carried, if any, else `old`'s (a client that doesn't know managedFields can't wipe
/// them); a request carrying `[{}]` clears them and records nothing (upstream's reset).
/// `status` is a write through the `/status` subresource, which owns only `status` fields.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, status: bool, now: &str) {
    let sent = new.pointer("/metadata/managedFields").cloned();
    if let Some(Value::Array(a)) = &sent {
        if a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty) {
            if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("managedFields");
            }
            return;
        }
    }
    let base = match &sent {
        Some(v @ Value::Array(a)) if !a.is_empty() => {
            managers(&json!({"metadata": {"managedFields": v}}))
        }
        _ => old.map(managers).unwrap_or_default(),
    };
    let sets = |o: &Value| {
        if status {
            status_field_set(o)
        } else {
            field_set(o)
        }
    };
    let empty = json!({});
    let before_obj = old.unwrap_or(&empty);
    let before = sets(before_obj);
    let after = sets(new);
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|p| value_at(before_obj, p) != value_at(new, p))
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = before.difference(&after).cloned().collect();
    let me: Owner = (
        manager.to_string(),
        "Update".to_string(),
        if status {
            "status".into()
        } else {
            String::new()
        },
    );
    let mut mgrs = base;
    for (owner, (_, set)) in mgrs.iter_mut() {
        set.retain(|p| !removed.contains(p) && (*owner == me || !changed.contains(p)));
    }
    mgrs.entry(me.clone())
        .or_insert_with(|| (json!({}), BTreeSet::new()))
        .1
        .extend(changed);
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string();
    let list = entries(mgrs, &me, &api_version, now);
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = json!({});
    }
    if list.is_empty() {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        new["metadata"]["managedFields"] = Value::Array(list);
    }
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
    let me: Owner = (manager.to_string(), "Apply".to_string(), String::new());
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
        for (owner, (entry, set)) in mgrs.iter_mut() {
            if *owner == me || !set.contains(p) {
                continue;
            }
            if force {
                set.remove(p);
            } else {
                conflicts.push((print_manager(owner, entry), render(p)));
            }
        }
    }
    if !conflicts.is_empty() {
        let list = conflicts
            .iter()
            .map(|(m, f)| format!("- conflict with {m}: {f}"))
            .collect::<Vec<_>>()
            .join("\n");
        let message = if conflicts.len() == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                conflicts[0].0, conflicts[0].1
            )
        } else {
            format!("Apply failed with {} conflicts: {list}", conflicts.len())
        };
        return Err(SimError::ApplyConflict {
            message,
            causes: conflicts
                .into_iter()
                .map(|(m, f)| (format!("conflict with {m}"), f))
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
    let entries = entries(mgrs, &me, &api_version, now);
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]["managedFields"] = Value::Array(entries);
    Ok(object)
}

/// A manager as upstream's conflict message names it (fieldmanager `printManager`): `"one"`,
/// `"kubectl-edit" using v1 at 2026-01-01T00:00:00Z`, `"x" with subresource "status"`.
fn print_manager(owner: &Owner, entry: &Value) -> String {
    let (name, op, sub) = owner;
    let mut s = format!("{name:?}");
    if !sub.is_empty() {
        s.push_str(&format!(" with subresource {sub:?}"));
    }
    if op == "Update" {
        let api_version = entry
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        s.push_str(&format!(" using {api_version}"));
        if let Some(t) = entry.get("time").and_then(Value::as_str) {
            s.push_str(&format!(" at {t}"));
        }
    }
    s
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

    #[test]
    fn an_update_owns_what_it_changes_and_takes_it_from_other_managers() {
        let mut made = deploy(2, "nginx", json!({"a": "1"}));
        record_update(None, &mut made, "maker", false, "t0");
        let owners = managers(&made);
        let maker = ("maker".to_string(), "Update".to_string(), String::new());
        assert!(owners[&maker]
            .1
            .contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));

        let mut edited = made.clone();
        edited["spec"]["replicas"] = json!(4);
        edited["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("a");
        record_update(Some(&made), &mut edited, "editor", false, "t1");
        let owners = managers(&edited);
        let editor = ("editor".to_string(), "Update".to_string(), String::new());
        let replicas = vec!["f:spec".to_string(), "f:replicas".to_string()];
        let label = vec![
            "f:metadata".to_string(),
            "f:labels".to_string(),
            "f:a".to_string(),
        ];
        // (The emptied labels map is a leaf now, so the editor owns `f:labels` too, as in SMD.)
        assert!(owners[&editor].1.contains(&replicas));
        assert!(!owners[&maker].1.contains(&replicas));
        assert!(
            !owners[&maker].1.contains(&label),
            "a removed field leaves its owner"
        );
        assert_eq!(
            owners[&maker].0["time"], "t0",
            "an untouched manager keeps its time"
        );

        // An apply changing replicas now conflicts with the updater, as upstream prints it.
        let err = apply(
            Some(&edited),
            &deploy(9, "nginx", json!({})),
            "ssa",
            false,
            "t2",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("conflict with \"editor\" using apps/v1 at t1: .spec.replicas"),
            "{err}"
        );

        // `[{}]` resets managedFields; nothing is recorded.
        let mut reset = edited.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        record_update(Some(&edited), &mut reset, "x", false, "t3");
        assert!(reset.pointer("/metadata/managedFields").is_none());
    }

    #[test]
    fn the_user_agent_names_a_manager_and_field_managers_are_validated() {
        assert_eq!(
            manager_or_user_agent(None, "kubectl/v1.31.0 (linux/amd64)"),
            "kubectl"
        );
        assert_eq!(manager_or_user_agent(Some("m"), "kubectl/v1"), "m");
        assert_eq!(manager_or_user_agent(Some(""), "a\u{1}b/c"), "ab");
        assert!(validate_field_manager(&"x".repeat(128)).is_ok());
        assert_eq!(
            validate_field_manager(&"x".repeat(129)).unwrap_err().code(),
            422
        );
        assert_eq!(validate_field_manager("a\nb").unwrap_err().code(), 422);
    }
}

//! Pure garbage-collector decisions over `metadata.ownerReferences` (upstream `pkg/controller/garbagecollector`).
//!
//! | event                                     | dependent                                  | [`GcAction`]                       |
//! |-------------------------------------------|--------------------------------------------|------------------------------------|
//! | owner removed (Background, the default)   | another owner it names is still alive      | `Update`: the dangling ref removed |
//! | owner removed                             | no other live owner, not being deleted     | `Delete` (Background)              |
//! | owner deleted with `Orphan`               | any                                        | `Update`: the ref to it removed    |
//! | owner deleted with `Foreground`           | not being deleted                          | `Delete` (Foreground if it owns objects) |
//! | owner with `foregroundDeletion` finalizer | none left with `blockOwnerDeletion: true`  | the finalizer removed ([`release_foreground`]) |
//!
//! Dependents already being deleted are left to their own deletion.

use serde_json::Value;

use crate::encoded::Obj;
use crate::lifecycle::{finalizers, DeleteOptions};
use crate::store::Key;

/// The finalizer a Foreground delete puts on the owner (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND: &str = "foregroundDeletion";

/// `metav1.DeletionPropagation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Orphan,
    Foreground,
}

/// The propagation a delete asks for: `propagationPolicy`, else the deprecated
/// `orphanDependents: true` (Orphan), else Background (the default for every kind the sim serves).
pub fn propagation(opts: &DeleteOptions) -> Propagation {
    match opts.propagation_policy.as_deref() {
        Some("Orphan") => Propagation::Orphan,
        Some("Foreground") => Propagation::Foreground,
        Some(_) => Propagation::Background,
        None if opts.orphan_dependents == Some(true) => Propagation::Orphan,
        None => Propagation::Background,
    }
}

/// One `metadata.ownerReferences` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub block: bool,
}

/// The ownerReferences of `v` (entries without a uid are skipped).
pub fn owner_refs(v: &Value) -> Vec<OwnerRef> {
    let Some(refs) = v
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    refs.iter()
        .filter_map(|r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let uid = s("uid");
            (!uid.is_empty()).then(|| OwnerRef {
                api_version: s("apiVersion"),
                kind: s("kind"),
                name: s("name"),
                uid,
                block: r.get("blockOwnerDeletion") == Some(&Value::Bool(true)),
            })
        })
        .collect()
}

/// The owner uids an encoded object names; objects without ownerReferences cost one byte scan.
pub fn owner_uids(obj: &Obj) -> Vec<String> {
    const NEEDLE: &[u8] = b"\"ownerReferences\"";
    if !obj.json().windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return Vec::new();
    }
    owner_refs(obj.value()).into_iter().map(|r| r.uid).collect()
}

/// A dependent as the collector sees it.
pub struct Dependent<'a> {
    pub resource: std::sync::Arc<str>,
    pub key: Key,
    pub object: &'a Value,
    /// Whether an owner other than the one in question still exists.
    pub other_owner_alive: bool,
    /// Whether it owns objects itself.
    pub has_dependents: bool,
}

/// What the collector does to one dependent.
#[derive(Clone, Debug, PartialEq)]
pub enum GcAction {
    /// Delete it as a client would (Foreground when its owner waits for it).
    Delete {
        resource: std::sync::Arc<str>,
        key: Key,
        foreground: bool,
    },
    /// Store `object` (MODIFIED): the dependent with an ownerReference removed.
    Update {
        resource: std::sync::Arc<str>,
        key: Key,
        object: Value,
    },
}

fn being_deleted(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some()
}

/// `v` without its ownerReferences to `uid` (the key dropped when none remain).
pub fn without_owner(v: &Value, uid: &str) -> Value {
    let mut out = v.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let left: Vec<Value> = meta
            .get("ownerReferences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if left.is_empty() {
            meta.remove("ownerReferences");
        } else {
            meta.insert("ownerReferences".into(), Value::Array(left));
        }
    }
    out
}

/// The owner `uid` is gone: delete the dependents it alone owned, unlink the others.
pub fn owner_gone(uid: &str, deps: &[Dependent]) -> Vec<GcAction> {
    deps.iter()
        .filter_map(|d| {
            if d.other_owner_alive {
                Some(GcAction::Update {
                    resource: d.resource.clone(),
                    key: d.key.clone(),
                    object: without_owner(d.object, uid),
                })
            } else if being_deleted(d.object) {
                None
            } else {
                Some(GcAction::Delete {
                    resource: d.resource.clone(),
                    key: d.key.clone(),
                    foreground: false,
                })
            }
        })
        .collect()
}

/// The owner `uid` is deleted with `Orphan`: every dependent loses its reference to it.
pub fn orphan(uid: &str, deps: &[Dependent]) -> Vec<GcAction> {
    deps.iter()
        .map(|d| GcAction::Update {
            resource: d.resource.clone(),
            key: d.key.clone(),
            object: without_owner(d.object, uid),
        })
        .collect()
}

/// The owner is deleted with `Foreground`: its dependents are deleted, in the foreground
/// those that own objects themselves (`attemptToDeleteItem`), else in the background.
pub fn foreground(deps: &[Dependent]) -> Vec<GcAction> {
    deps.iter()
        .filter(|d| !being_deleted(d.object))
        .map(|d| GcAction::Delete {
            resource: d.resource.clone(),
            key: d.key.clone(),
            foreground: d.has_dependents,
        })
        .collect()
}

/// Whether any of `deps` blocks the deletion of owner `uid` (`blockOwnerDeletion: true`).
pub fn blocks(uid: &str, deps: &[&Value]) -> bool {
    deps.iter()
        .any(|d| owner_refs(d).iter().any(|r| r.uid == uid && r.block))
}

/// An owner waiting in the foreground whose blocking dependents are gone: it without the
/// `foregroundDeletion` finalizer; `None` when it is not waiting or still blocked.
pub fn release_foreground(owner: &Value, deps: &[&Value]) -> Option<Value> {
    let uid = owner.pointer("/metadata/uid").and_then(Value::as_str)?;
    if !being_deleted(owner) || !finalizers(owner).contains(&FOREGROUND) || blocks(uid, deps) {
        return None;
    }
    let mut out = owner.clone();
    if let Some(f) = out
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        f.retain(|x| x.as_str() != Some(FOREGROUND));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dep(name: &str, owners: &[(&str, bool)], terminating: bool) -> Value {
        let refs: Vec<Value> = owners
            .iter()
            .map(|(uid, block)| json!({"kind": "Secret", "name": uid, "uid": uid, "blockOwnerDeletion": block}))
            .collect();
        let mut v = json!({"metadata": {"name": name, "ownerReferences": refs}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
        }
        v
    }

    fn key(n: &str) -> Key {
        ("ns".into(), n.into())
    }

    /// The module table, row by row: (decision, dependents) → actions, summarised.
    #[test]
    fn decisions_follow_the_garbage_collector() {
        let only = dep("only", &[("o", false)], false);
        let shared = dep("shared", &[("o", false), ("p", false)], false);
        let going = dep("going", &[("o", true)], true);
        let deps = [
            Dependent {
                resource: "pods".into(),
                key: key("only"),
                object: &only,
                other_owner_alive: false,
                has_dependents: true,
            },
            Dependent {
                resource: "pods".into(),
                key: key("shared"),
                object: &shared,
                other_owner_alive: true,
                has_dependents: false,
            },
            Dependent {
                resource: "pods".into(),
                key: key("going"),
                object: &going,
                other_owner_alive: false,
                has_dependents: false,
            },
        ];
        let summary = |acts: Vec<GcAction>| -> Vec<String> {
            acts.into_iter()
                .map(|a| match a {
                    GcAction::Delete {
                        key, foreground, ..
                    } => format!("delete {} fg={foreground}", key.1),
                    GcAction::Update { key, object, .. } => {
                        format!("update {} refs={}", key.1, owner_refs(&object).len())
                    }
                })
                .collect()
        };
        let cases: Vec<(&str, Vec<GcAction>, Vec<&str>)> = vec![
            (
                "background",
                owner_gone("o", &deps),
                vec!["delete only fg=false", "update shared refs=1"],
            ),
            (
                "orphan",
                orphan("o", &deps),
                vec![
                    "update only refs=0",
                    "update shared refs=1",
                    "update going refs=0",
                ],
            ),
            (
                "foreground",
                foreground(&deps),
                vec!["delete only fg=true", "delete shared fg=false"],
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(summary(got), want, "{name}");
        }
        let orphaned = without_owner(&only, "o");
        assert!(orphaned["metadata"].get("ownerReferences").is_none());

        let mut owner =
            json!({"metadata": {"name": "o", "uid": "o", "finalizers": [FOREGROUND, "x"]}});
        assert_eq!(release_foreground(&owner, &[]), None, "not being deleted");
        owner["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:20Z");
        assert_eq!(release_foreground(&owner, &[&going]), None, "blocked");
        let released = release_foreground(&owner, &[&only]).unwrap();
        assert_eq!(released["metadata"]["finalizers"], json!(["x"]));
    }

    #[test]
    fn propagation_defaults_to_background_and_honours_orphan_dependents() {
        let with = |p: Option<&str>, o: Option<bool>| {
            propagation(&DeleteOptions {
                propagation_policy: p.map(String::from),
                orphan_dependents: o,
                ..DeleteOptions::default()
            })
        };
        assert_eq!(with(None, None), Propagation::Background);
        assert_eq!(with(None, Some(true)), Propagation::Orphan);
        assert_eq!(with(None, Some(false)), Propagation::Background);
        assert_eq!(with(Some("Foreground"), None), Propagation::Foreground);
        assert_eq!(with(Some("Orphan"), None), Propagation::Orphan);
    }
}

//! CustomResourceDefinitions: validating a CRD, the registry entries it serves, and its objects pruned and type-checked against the structural schema.
//!
//! Behaviour copied from `staging/src/k8s.io/apiextensions-apiserver`:
//! - `pkg/apis/apiextensions/validation/validation.go` `ValidateCustomResourceDefinition`: the
//!   name is `<plural>.<group>`, the group has a dot, names are DNS labels, scope is
//!   `Namespaced` or `Cluster`, versions are unique DNS-1035 labels with exactly one storage
//!   version, and every version has an `openAPIV3Schema` whose root is an object (a CRD with no
//!   served version is stored and serves nothing).
//! - `pkg/apis/apiextensions/v1/defaults.go`: `singular` defaults to the lowercased kind,
//!   `listKind` to `<kind>List`, `conversion.strategy` to `None`.
//! - `pkg/controller/establish` and `pkg/controller/status/naming_controller.go`: with no name
//!   conflict the CRD gets `NamesAccepted` and `Established` at once (the sim serves it in the
//!   same commit, so it is established when the create answers).
//! - `pkg/apiserver/schema/pruning/algorithm.go`: unknown fields are dropped unless
//!   `x-kubernetes-preserve-unknown-fields`; `x-kubernetes-embedded-resource` objects keep
//!   `apiVersion`, `kind`, `metadata`; `pkg/apiserver/schema/objectmeta`: metadata is pruned to
//!   ObjectMeta's fields. Nulls where the schema is not `nullable` are dropped.
//! - `pkg/apiserver/validation`: types (`x-kubernetes-int-or-string` takes both),
//!   `required` and `enum`, reported as a 422 with one cause per field.
//! - `pkg/apiserver/customresource_handler.go` `serveDefaultColumnsIfEmpty` and
//!   `pkg/registry/customresource/tableconvertor`: the printer columns, `Age` by default.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::error::{FieldCause, SimError};
use crate::resource::{id_of, Resource, ResourceInfo};

/// The store key of CustomResourceDefinitions.
pub const CRD_ID: &str = "customresourcedefinitions.apiextensions.k8s.io";

/// What a CRD declares for one served version of its custom resource.
#[derive(Debug, PartialEq)]
pub struct Custom {
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    /// The version's `openAPIV3Schema`.
    pub schema: Value,
    /// `additionalPrinterColumns` (an `Age` column when none are declared).
    pub printer_columns: Vec<PrinterColumn>,
    /// `subresources.scale`.
    pub scale: Option<ScalePaths>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
}

/// `subresources.scale`'s paths, as JSON pointers (`/spec/replicas`).
#[derive(Debug, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn cause(reason: &'static str, field: impl Into<String>, message: String) -> FieldCause {
    FieldCause {
        reason,
        field: field.into(),
        message,
    }
}

/// `.spec.replicas` (a CRD's simple JSONPath) as the JSON pointer `/spec/replicas`.
pub fn json_path_pointer(path: &str) -> Option<String> {
    let p = path.strip_prefix('.')?;
    if p.is_empty() {
        return None;
    }
    let mut out = String::new();
    for seg in p.split('.') {
        let (name, idx) = match seg.split_once('[') {
            Some((n, rest)) => (n, Some(rest.strip_suffix(']')?)),
            None => (seg, None),
        };
        if name.is_empty() {
            return None;
        }
        out.push('/');
        out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        if let Some(i) = idx {
            i.parse::<usize>().ok()?;
            out.push('/');
            out.push_str(i);
        }
    }
    Some(out)
}

/// Set the value at a JSON pointer, making the objects on the way.
pub fn set_pointer(obj: &mut Value, ptr: &str, v: Value) {
    let mut cur = obj;
    let segs: Vec<&str> = ptr.split('/').skip(1).collect();
    for (i, seg) in segs.iter().enumerate() {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        if i + 1 == segs.len() {
            map.insert(seg, v);
            return;
        }
        cur = map.entry(seg).or_insert_with(|| json!({}));
    }
}

/// The v1 defaults (`SetDefaults_CustomResourceDefinitionSpec`) and the status the naming and
/// establishing controllers write when nothing conflicts, applied on create.
pub fn default_and_establish(obj: &mut Value, now: &str) {
    let kind = s(obj, "/spec/names/kind").to_string();
    if let Some(names) = obj
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
    {
        if names
            .get("singular")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        if !spec.get("conversion").is_some_and(Value::is_object) {
            spec.insert("conversion".into(), json!({"strategy": "None"}));
        }
    }
    let storage: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    let accepted = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
        "storedVersions": storage,
    });
}

fn is_dns_label(s: &str) -> bool {
    crate::validation::dns1123_label(s).is_empty()
}

/// RFC 1035 label: a DNS label that starts with a letter.
fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// Validate a CRD as `ValidateCustomResourceDefinition` does (the parts the sim relies on).
pub fn validate_crd(obj: &Value) -> Result<(), SimError> {
    let name = s(obj, "/metadata/name");
    let group = s(obj, "/spec/group");
    let plural = s(obj, "/spec/names/plural");
    let singular = s(obj, "/spec/names/singular");
    let kind = s(obj, "/spec/names/kind");
    let list_kind = s(obj, "/spec/names/listKind");
    let mut c = Vec::new();
    if name != format!("{plural}.{group}") {
        c.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if group.is_empty() {
        c.push(cause(
            "FieldValueRequired",
            "spec.group",
            "Required value".into(),
        ));
    } else if !crate::validation::dns1123_subdomain(group).is_empty() || !group.contains('.') {
        c.push(cause(
            "FieldValueInvalid",
            "spec.group",
            format!("Invalid value: {group:?}: should be a domain with at least one dot"),
        ));
    }
    match s(obj, "/spec/scope") {
        "Namespaced" | "Cluster" => {}
        "" => c.push(cause(
            "FieldValueRequired",
            "spec.scope",
            "Required value".into(),
        )),
        other => c.push(cause(
            "FieldValueNotSupported",
            "spec.scope",
            format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""),
        )),
    }
    for (field, v) in [("plural", plural), ("singular", singular)] {
        if v.is_empty() && field == "plural" {
            c.push(cause(
                "FieldValueRequired",
                "spec.names.plural",
                "Required value".into(),
            ));
        } else if !v.is_empty() && !is_dns_label(v) {
            c.push(cause(
                "FieldValueInvalid",
                format!("spec.names.{field}"),
                format!("Invalid value: {v:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
            ));
        }
    }
    for (field, v) in [("kind", kind), ("listKind", list_kind)] {
        if v.is_empty() && field == "kind" {
            c.push(cause(
                "FieldValueRequired",
                "spec.names.kind",
                "Required value".into(),
            ));
        } else if !v.is_empty() && !is_dns1035_label(&v.to_lowercase()) {
            c.push(cause(
                "FieldValueInvalid",
                format!("spec.names.{field}"),
                format!("Invalid value: {v:?}: may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?"),
            ));
        }
    }
    for (i, sn) in strings(obj.pointer("/spec/names/shortNames"))
        .iter()
        .enumerate()
    {
        if !is_dns_label(sn) {
            c.push(cause(
                "FieldValueInvalid",
                format!("spec.names.shortNames[{i}]"),
                format!("Invalid value: {sn:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"),
            ));
        }
    }
    let versions = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        c.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            "Invalid value: null: must have exactly one version marked as storage version".into(),
        ));
    }
    let mut seen = Vec::new();
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let vn = s(v, "/name");
        if !is_dns1035_label(vn) {
            c.push(cause(
                "FieldValueInvalid",
                format!("spec.versions[{i}].name"),
                format!("Invalid value: {vn:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"),
            ));
        }
        if seen.contains(&vn) {
            c.push(cause(
                "FieldValueDuplicate",
                format!("spec.versions[{i}].name"),
                format!("Duplicate value: {vn:?}"),
            ));
        }
        seen.push(vn);
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        match v.pointer("/schema/openAPIV3Schema") {
            None | Some(Value::Null) => c.push(cause(
                "FieldValueRequired",
                format!("spec.versions[{i}].schema.openAPIV3Schema"),
                "Required value: schemas are required".into(),
            )),
            Some(schema) if s(schema, "/type") != "object" => c.push(cause(
                "FieldValueInvalid",
                format!("spec.versions[{i}].schema.openAPIV3Schema.type"),
                format!(
                    "Invalid value: {:?}: must be object at the root",
                    s(schema, "/type")
                ),
            )),
            Some(_) => {}
        }
    }
    if !versions.is_empty() && storage != 1 {
        c.push(cause(
            "FieldValueInvalid",
            "spec.versions",
            format!(
                "Invalid value: {}: must have exactly one version marked as storage version",
                json!(versions)
            ),
        ));
    }
    if c.is_empty() {
        return Ok(());
    }
    Err(SimError::InvalidFields {
        kind: "CustomResourceDefinition.apiextensions.k8s.io".into(),
        name: name.to_string(),
        causes: c,
    })
}

/// A CRD that may not change as asked (`ValidateCustomResourceDefinitionUpdate`): group, names'
/// plural and scope are immutable once established.
pub fn validate_crd_update(old: &Value, new: &Value) -> Result<(), SimError> {
    validate_crd(new)?;
    let mut c = Vec::new();
    for (ptr, field) in [
        ("/spec/group", "spec.group"),
        ("/spec/scope", "spec.scope"),
        ("/spec/names/plural", "spec.names.plural"),
    ] {
        if s(old, ptr) != s(new, ptr) {
            c.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {:?}: field is immutable", s(new, ptr)),
            ));
        }
    }
    if c.is_empty() {
        return Ok(());
    }
    Err(SimError::InvalidFields {
        kind: "CustomResourceDefinition.apiextensions.k8s.io".into(),
        name: s(new, "/metadata/name").to_string(),
        causes: c,
    })
}

/// Kubernetes version priority (`k8s.io/apimachinery/pkg/version.CompareKubeAwareVersionStrings`):
/// GA before beta before alpha, higher numbers first, anything else last, alphabetically.
fn version_rank(v: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (tier, word) in [(1, "beta"), (2, "alpha")] {
            if let Some(n) = tail.strip_prefix(word) {
                let minor: i64 = n.parse().ok()?;
                return Some((tier, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((t, a, b)) => (t, a, b, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

/// The registry entries a stored CRD serves: one per served version, in version priority
/// order (the first is the group's preferred version).
pub fn served(crd: &Value) -> Vec<Resource> {
    let name = s(crd, "/metadata/name");
    let group = s(crd, "/spec/group");
    let plural = s(crd, "/spec/names/plural");
    let kind = s(crd, "/spec/names/kind");
    let singular = match s(crd, "/spec/names/singular") {
        "" => kind.to_lowercase(),
        sg => sg.to_string(),
    };
    let id = id_of(group, plural);
    let mut versions: Vec<&Value> = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| version_rank(s(v, "/name")));
    versions
        .into_iter()
        .map(|v| {
            let mut columns: Vec<PrinterColumn> = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| PrinterColumn {
                            name: s(c, "/name").to_string(),
                            type_: s(c, "/type").to_string(),
                            format: s(c, "/format").to_string(),
                            description: s(c, "/description").to_string(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            json_path: s(c, "/jsonPath").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            if columns.is_empty() {
                columns.push(PrinterColumn {
                    name: "Age".into(),
                    type_: "date".into(),
                    format: String::new(),
                    description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
                    priority: 0,
                    json_path: ".metadata.creationTimestamp".into(),
                });
            }
            let scale = v.pointer("/subresources/scale").map(|sc| ScalePaths {
                spec_replicas: json_path_pointer(s(sc, "/specReplicasPath"))
                    .unwrap_or_else(|| "/spec/replicas".into()),
                status_replicas: json_path_pointer(s(sc, "/statusReplicasPath"))
                    .unwrap_or_else(|| "/status/replicas".into()),
                label_selector: json_path_pointer(s(sc, "/labelSelectorPath")),
            });
            Arc::new(ResourceInfo {
                plural: plural.to_string(),
                singular: singular.clone(),
                kind: kind.to_string(),
                group: group.to_string(),
                version: s(v, "/name").to_string(),
                namespaced: s(crd, "/spec/scope") == "Namespaced",
                short_names: strings(crd.pointer("/spec/names/shortNames")),
                categories: strings(crd.pointer("/spec/names/categories")),
                has_status: v.pointer("/subresources/status").is_some(),
                fields: &[],
                id: id.clone(),
                custom: Some(Arc::new(Custom {
                    crd: name.to_string(),
                    schema: v
                        .pointer("/schema/openAPIV3Schema")
                        .cloned()
                        .unwrap_or(json!({"type": "object"})),
                    printer_columns: columns,
                    scale,
                })),
            })
        })
        .collect()
}

/// ObjectMeta's fields (`schema/objectmeta` keeps only these in a custom resource's metadata).
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn prune_meta(meta: &Value, path: &str, unknown: &mut Vec<String>) -> Value {
    let Some(m) = meta.as_object() else {
        return meta.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        if OBJECT_META.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        } else {
            unknown.push(join(path, k));
        }
    }
    Value::Object(out)
}

/// Prune `v` against `schema` (`pruning.PruneWithOptions`), recording the dropped paths.
fn prune_value(
    v: &Value,
    schema: &Value,
    path: &str,
    root: bool,
    unknown: &mut Vec<String>,
) -> Value {
    match v {
        Value::Object(m) => {
            let preserve = flag(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let mut out = Map::new();
            for (k, val) in m {
                let p = join(path, k);
                if embedded && (k == "apiVersion" || k == "kind") {
                    out.insert(k.clone(), val.clone());
                    continue;
                }
                if embedded && k == "metadata" {
                    out.insert(k.clone(), prune_meta(val, &p, unknown));
                    continue;
                }
                let sub = props
                    .and_then(|ps| ps.get(k))
                    .or_else(|| additional.filter(|a| a.is_object()));
                match sub {
                    Some(sub) => {
                        if val.is_null() && !flag(sub, "nullable") {
                            continue;
                        }
                        out.insert(k.clone(), prune_value(val, sub, &p, false, unknown));
                    }
                    None if preserve || additional == Some(&Value::Bool(true)) => {
                        out.insert(k.clone(), val.clone());
                    }
                    None => unknown.push(p),
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => match schema.get("items") {
            Some(item_schema) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| {
                        prune_value(it, item_schema, &format!("{path}[{i}]"), false, unknown)
                    })
                    .collect(),
            ),
            None => v.clone(),
        },
        _ => v.clone(),
    }
}

/// Prune a custom resource against its version's structural schema: the object without its
/// unknown fields and their paths (`spec.foo`), for the field-validation reports.
pub fn prune(custom: &Custom, obj: &Value) -> (Value, Vec<String>) {
    let mut unknown = Vec::new();
    let out = prune_value(obj, &custom.schema, "", true, &mut unknown);
    (out, unknown)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match (want, v) {
        ("", _) => true,
        ("number", Value::Number(_)) => true,
        (w, v) => w == type_name(v),
    }
}

fn check_value(v: &Value, schema: &Value, path: &str, out: &mut Vec<FieldCause>) {
    if v.is_null() {
        return;
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(v.is_string() || type_name(v) == "integer") {
            out.push(cause(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {:?}: {path} in body must be of type integer,string: {:?}",
                    type_name(v),
                    type_name(v)
                ),
            ));
        }
        return;
    }
    let want = schema.get("type").and_then(Value::as_str).unwrap_or("");
    if !type_ok(want, v) {
        let shown = if path.is_empty() { "body" } else { path };
        out.push(cause(
            "FieldValueTypeInvalid",
            shown,
            format!(
                "Invalid value: {:?}: {shown} in body must be of type {want}: {:?}",
                type_name(v),
                type_name(v)
            ),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(v) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            out.push(cause(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {v}: supported values: {}",
                    list.join(", ")
                ),
            ));
        }
    }
    match v {
        Value::Object(m) => {
            for r in strings(schema.get("required")) {
                if !m.contains_key(&r) {
                    out.push(cause(
                        "FieldValueRequired",
                        join(path, &r),
                        "Required value".into(),
                    ));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, val) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = props.and_then(|ps| ps.get(k)).or(additional) {
                    check_value(val, sub, &join(path, k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    check_value(it, sub, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Validate a (pruned) custom resource against its schema: 422 with one cause per problem.
pub fn validate_object(info: &ResourceInfo, custom: &Custom, obj: &Value) -> Result<(), SimError> {
    let mut causes = Vec::new();
    check_value(obj, &custom.schema, "", &mut causes);
    if causes.is_empty() {
        return Ok(());
    }
    Err(SimError::InvalidFields {
        kind: format!("{}.{}", info.kind, info.group),
        name: s(obj, "/metadata/name").to_string(),
        causes,
    })
}

/// The value a printer column's JSONPath picks (simple paths only; a filter expression reads
/// as missing, which upstream prints as an empty cell too when nothing matches).
pub fn column_value<'a>(obj: &'a Value, json_path: &str) -> Option<&'a Value> {
    obj.pointer(&json_path_pointer(json_path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "foos.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "foos", "kind": "Foo", "shortNames": ["fo"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["size"], "properties": {
                            "size": {"type": "integer"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "mode": {"type": "string", "enum": ["a", "b"]},
                            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "tmpl": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "properties": {"spec": {"type": "object"}}},
                            "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                        }},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}}}
                ]}
        })
    }

    /// Upstream: `ValidateCustomResourceDefinition` (validation.go): name, group, one storage version.
    #[test]
    fn a_crd_is_validated() {
        assert!(validate_crd(&crd()).is_ok());
        for (ptr, v, field) in [
            ("/metadata/name", json!("bars.example.com"), "metadata.name"),
            ("/spec/group", json!("example"), "spec.group"),
            ("/spec/scope", json!("Global"), "spec.scope"),
            ("/spec/names/plural", json!("Foos"), "spec.names.plural"),
            ("/spec/versions/0/storage", json!(true), "spec.versions"),
            (
                "/spec/versions/1/schema",
                json!(null),
                "spec.versions[1].schema.openAPIV3Schema",
            ),
        ] {
            let mut bad = crd();
            *bad.pointer_mut(ptr).unwrap() = v;
            let Err(SimError::InvalidFields { causes, .. }) = validate_crd(&bad) else {
                panic!("{ptr} accepted")
            };
            assert!(causes.iter().any(|c| c.field == field), "{ptr}: {causes:?}");
        }
    }

    #[test]
    fn served_versions_in_priority_order_with_their_subresources() {
        let rs = served(&crd());
        assert_eq!(rs.len(), 2);
        assert_eq!(
            (rs[0].version.as_str(), rs[1].version.as_str()),
            ("v1", "v1beta1")
        );
        assert!(rs[0].has_status && !rs[1].has_status);
        assert_eq!(&*rs[0].id, "foos.example.com");
        let sc = rs[0].custom.as_ref().unwrap().scale.as_ref().unwrap();
        assert_eq!(sc.spec_replicas, "/spec/replicas");
        assert_eq!(
            rs[1].custom.as_ref().unwrap().printer_columns[0].name,
            "Age"
        );
        let mut v = vec!["v1alpha1", "v2", "v1beta2", "v1", "v10", "foo"];
        v.sort_by_key(|x| version_rank(x));
        assert_eq!(v, ["v10", "v2", "v1", "v1beta2", "v1alpha1", "foo"]);
    }

    /// Upstream: schema/pruning/algorithm.go and schema/objectmeta: unknown fields go, except
    /// under preserve-unknown-fields; embedded resources keep apiVersion/kind/metadata.
    #[test]
    fn pruning_and_types() {
        let info = &served(&crd())[0];
        let c = info.custom.as_ref().unwrap();
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Foo",
            "metadata": {"name": "a", "bogus": 1},
            "spec": {"size": 1, "port": "http", "extra": true, "free": {"x": {"y": 1}},
                     "tmpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "t"}, "spec": {}, "junk": 1},
                     "list": [{"a": "x", "b": "y"}], "mode": null},
            "top": 1});
        let (pruned, unknown) = prune(c, &obj);
        assert_eq!(
            unknown,
            [
                "metadata.bogus",
                "spec.extra",
                "spec.list[0].b",
                "spec.tmpl.junk",
                "top"
            ]
        );
        assert_eq!(pruned["spec"]["free"], json!({"x": {"y": 1}}));
        assert_eq!(pruned["spec"]["tmpl"]["kind"], "Pod");
        assert!(pruned["spec"].get("mode").is_none());
        assert!(validate_object(info, c, &pruned).is_ok());
        let bad =
            json!({"metadata": {"name": "a"}, "spec": {"size": "big", "port": 1.5, "mode": "c"}});
        let Err(SimError::InvalidFields { causes, .. }) = validate_object(info, c, &bad) else {
            panic!()
        };
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.mode", "spec.port", "spec.size"]);
        assert_eq!(
            causes[2].message,
            "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
        );
        let missing = json!({"metadata": {"name": "a"}, "spec": {}});
        assert!(validate_object(info, c, &missing).is_err());
    }
}

//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for with `Accept: …;as=Table`), with kubectl's usual columns.

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::resource::ResourceInfo;

/// How much of each object a row carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// Table options for one request.
#[derive(Clone, Copy, Debug)]
pub struct TableOpts {
    pub include: IncludeObject,
}

impl TableOpts {
    /// `Some` when the `Accept` header asks for a Table.
    pub fn from_request(accept: &str, include_object: Option<&str>) -> Option<Self> {
        if !accept.contains("as=Table") {
            return None;
        }
        let include = match include_object {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        };
        Some(Self { include })
    }
}

fn col(name: &str, priority: u8, format: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": "", "priority": priority})
}

fn columns(info: &ResourceInfo) -> Vec<Value> {
    let mut c = vec![col("Name", 0, "name")];
    if let Some(custom) = &info.custom {
        // tableconvertor.New: Name, then the CRD's additionalPrinterColumns.
        c[0]["description"] = json!("Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition.");
        c.extend(custom.printer_columns.iter().map(|pc| {
            json!({"name": pc.name, "type": pc.type_, "format": pc.format,
                   "description": pc.description, "priority": pc.priority})
        }));
        return c;
    }
    match info.builtin_kind() {
        "Pod" => {
            c.extend([
                col("Ready", 0, ""),
                col("Status", 0, ""),
                col("Restarts", 0, ""),
                col("Age", 0, ""),
                col("IP", 1, ""),
                col("Node", 1, ""),
            ]);
        }
        "Service" => {
            c.extend([
                col("Type", 0, ""),
                col("Cluster-IP", 0, ""),
                col("External-IP", 0, ""),
                col("Port(s)", 0, ""),
                col("Age", 0, ""),
                col("Selector", 1, ""),
            ]);
        }
        "Secret" => c.extend([col("Type", 0, ""), col("Data", 0, ""), col("Age", 0, "")]),
        "Namespace" => c.extend([col("Status", 0, ""), col("Age", 0, "")]),
        "Lease" => c.extend([col("Holder", 0, ""), col("Age", 0, "")]),
        _ => c.push(col("Age", 0, "")),
    }
    c
}

/// kubectl-style short age (`42s`, `5m`, `3h`, `2d`).
pub fn age(created: Option<&str>, now: SystemTime) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let s = (now_s - ts.as_second()).max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `tableconvertor` `cellForJSONValue`: a value of the column's type, a date as an age, a
/// missing or mistyped value as null (kubectl prints `<none>`).
fn custom_cell(type_: &str, v: Option<&Value>, now: SystemTime) -> Value {
    let Some(v) = v else {
        return Value::Null;
    };
    match (type_, v) {
        ("date", Value::String(ts)) => json!(age(Some(ts), now)),
        ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => v.clone(),
        ("number", Value::Number(_)) | ("boolean", Value::Bool(_)) => v.clone(),
        ("string", Value::String(_)) => v.clone(),
        ("string", Value::Number(_) | Value::Bool(_)) => json!(v.to_string()),
        ("string", other) => json!(other.to_string()),
        _ => Value::Null,
    }
}

fn str_at<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn cells(info: &ResourceInfo, o: &Value, now: SystemTime) -> Vec<Value> {
    let name = str_at(o, "/metadata/name");
    let age = age(
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now,
    );
    if let Some(custom) = &info.custom {
        let mut row = vec![json!(name)];
        row.extend(
            custom
                .printer_columns
                .iter()
                .map(|pc| custom_cell(&pc.type_, crate::crd::column_value(o, &pc.json_path), now)),
        );
        return row;
    }
    match info.builtin_kind() {
        "Pod" => {
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            let status = if o.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                o.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("Pending")
            };
            let ip = o
                .pointer("/status/podIP")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            let node = o
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("<none>");
            vec![
                json!(name),
                json!(format!("{}/{}", if ready { total } else { 0 }, total)),
                json!(status),
                json!(0),
                json!(age),
                json!(ip),
                json!(node),
            ]
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selector: Vec<String> = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            let ports = if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            };
            let selector = if selector.is_empty() {
                "<none>".to_string()
            } else {
                selector.join(",")
            };
            vec![
                json!(name),
                json!(str_at(o, "/spec/type")),
                json!(o
                    .pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or("<none>")),
                json!("<none>"),
                json!(ports),
                json!(age),
                json!(selector),
            ]
        }
        "Secret" => {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            vec![json!(name), json!(str_at(o, "/type")), json!(n), json!(age)]
        }
        "Namespace" => vec![json!(name), json!(str_at(o, "/status/phase")), json!(age)],
        "Lease" => vec![
            json!(name),
            json!(str_at(o, "/spec/holderIdentity")),
            json!(age),
        ],
        _ => vec![json!(name), json!(age)],
    }
}

/// One row for an object.
fn row(info: &ResourceInfo, o: &Value, now: SystemTime, opts: TableOpts) -> Value {
    let mut r = json!({"cells": cells(info, o, now)});
    match opts.include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(Value::Null)});
        }
        IncludeObject::Object => r["object"] = o.clone(),
    }
    r
}

/// A Table for one list page (`metadata` carries resourceVersion and continue).
pub fn from_items(
    info: &ResourceInfo,
    items: &[&Value],
    metadata: Value,
    now: SystemTime,
    opts: TableOpts,
) -> Value {
    let rows: Vec<Value> = items.iter().map(|o| row(info, o, now, opts)).collect();
    let mut doc = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "columnDefinitions": columns(info),
    });
    doc["metadata"] = metadata;
    doc["rows"] = Value::Array(rows);
    doc
}

/// A one-row Table for one object or watch event; column definitions only when `headers`.
pub fn from_object(
    info: &ResourceInfo,
    o: &Value,
    now: SystemTime,
    opts: TableOpts,
    headers: bool,
) -> Value {
    let rv = o
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv},
        "columnDefinitions": if headers { json!(columns(info)) } else { json!([]) },
        "rows": [row(info, o, now, opts)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ages_and_pod_cells() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let created = crate::clock::rfc3339(t0);
        assert_eq!(age(Some(&created), t0 + Duration::from_secs(30)), "30s");
        assert_eq!(age(Some(&created), t0 + Duration::from_secs(600)), "10m");
        assert_eq!(
            age(Some(&created), t0 + Duration::from_secs(5 * 86400)),
            "5d"
        );
        let pods = crate::resource::by_plural("pods").unwrap();
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": created}, "spec": {"containers": [{}]}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let c = cells(pods, &pod, t0);
        assert_eq!(
            (c[1].as_str(), c[2].as_str()),
            (Some("1/1"), Some("Running"))
        );
    }
}

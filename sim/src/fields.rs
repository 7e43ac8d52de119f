//! Server-side field validation (KEP-2885): decode a body into its kind's typed struct, report the fields the round trip drops, store the pruned object.
//!
//! kube-apiserver decodes every write into the kind's Go struct; a JSON key the struct has no
//! field for is dropped, and the strict decoder (`sigs.k8s.io/json`, surfaced through
//! `apimachinery/pkg/runtime` `strictDecodingError`) reports it as `unknown field "<path>"` (and a
//! key given twice as `duplicate field "<path>"`). The `fieldValidation` query parameter decides
//! what happens to those reports (`apiserver/pkg/endpoints/handlers/{create,update,patch}.go`):
//!
//! | directive          | unknown / duplicate fields                          | stored object |
//! |--------------------|-----------------------------------------------------|---------------|
//! | `Ignore`           | nothing                                             | pruned        |
//! | `Warn` (or absent) | one `Warning: 299 - "<report>"` header per report   | pruned        |
//! | `Strict`           | refused (create/update 400, patch 422)              | —             |
//!
//! A type error (a string where an integer belongs) is not a strict error: the decode fails
//! whatever the directive ([`DecodeError`]).
//!
//! The sim's typed struct is `k8s_openapi`'s: decode, re-serialize, and a key present (non-null)
//! in the input but absent from the round trip is unknown. The stored object is the *input*
//! minus those keys — the client's values for known fields are kept byte for byte (a quantity
//! sent as a number stays a number), nulls are kept as sent.

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::resource::ResourceInfo;

/// The `fieldValidation` query parameter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop them and send one `Warning` header per field (the default).
    Warn,
    /// Refuse the write.
    Strict,
}

/// The body could not be decoded into the kind's struct at all (a type error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

/// The result of decoding a body: the pruned object and the strict-decoding reports.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The input without its unknown fields.
    pub object: Value,
    /// `unknown field "spec.foo"`, `duplicate field "metadata.name"`, in document order.
    pub problems: Vec<String>,
}

/// Check a create/update body: `obj` is `body` parsed. Reports come in the order the keys
/// appear in the body (as the streaming strict decoder finds them), duplicates included.
pub fn check_body(info: &ResourceInfo, body: &[u8], obj: &Value) -> Result<Checked, DecodeError> {
    let (object, unknown) = prune_unknown(info, obj)?;
    let mut problems = Vec::new();
    if let Ok(keys) = key_order(body) {
        for k in keys {
            if k.duplicate {
                problems.push(format!("duplicate field {:?}", k.path));
            } else if unknown.contains(&k.path) {
                problems.push(format!("unknown field {:?}", k.path));
            }
        }
    } else {
        problems.extend(unknown.iter().map(|p| format!("unknown field {p:?}")));
    }
    Ok(Checked { object, problems })
}

/// Check an object that is not a request body (the result of a patch): reports in key order,
/// as the apiserver's decode of the patched JSON (Go marshals maps with sorted keys) finds them.
pub fn check(info: &ResourceInfo, obj: &Value) -> Result<Checked, DecodeError> {
    let (object, unknown) = prune_unknown(info, obj)?;
    let problems = unknown
        .iter()
        .map(|p| format!("unknown field {p:?}"))
        .collect();
    Ok(Checked { object, problems })
}

/// Decode `obj` into the kind's typed struct and back; return the input without the keys the
/// round trip dropped, and their paths (`spec.containers[0].foo`). Bodies that are not an object
/// of this kind are returned unchanged: the sim's own type checks answer those.
fn prune_unknown(info: &ResourceInfo, obj: &Value) -> Result<(Value, Vec<String>), DecodeError> {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{
        ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolumeClaim, Pod, Secret, Service,
        ServiceAccount,
    };
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let Some(map) = obj.as_object() else {
        return Ok((obj.clone(), Vec::new()));
    };
    if let Some(custom) = &info.custom {
        // A custom resource's "typed struct" is its structural schema; type errors are the
        // schema validation's 422, not a decode error.
        return Ok(crate::crd::prune(custom, obj));
    }
    if map
        .get("kind")
        .is_some_and(|k| k.as_str() != Some(info.kind.as_str()))
    {
        return Ok((obj.clone(), Vec::new()));
    }
    // apiVersion and kind are TypeMeta: always known, checked elsewhere.
    let mut body = map.clone();
    body.remove("apiVersion");
    body.remove("kind");
    let body = Value::Object(body);
    let kind = info.kind.as_str();
    let typed = match info.builtin_kind() {
        "Pod" => round_trip::<Pod>(kind, body),
        "Service" => round_trip::<Service>(kind, body),
        "Secret" => round_trip::<Secret>(kind, body),
        "Event" => round_trip::<Event>(kind, body),
        "events.k8s.io/Event" => round_trip::<k8s_openapi::api::events::v1::Event>(kind, body),
        "Namespace" => round_trip::<Namespace>(kind, body),
        "Lease" => round_trip::<Lease>(kind, body),
        "ConfigMap" => round_trip::<ConfigMap>(kind, body),
        "ServiceAccount" => round_trip::<ServiceAccount>(kind, body),
        "Endpoints" => round_trip::<Endpoints>(kind, body),
        "PersistentVolumeClaim" => round_trip::<PersistentVolumeClaim>(kind, body),
        "Node" => round_trip::<Node>(kind, body),
        "Deployment" => round_trip::<Deployment>(kind, body),
        "ReplicaSet" => round_trip::<ReplicaSet>(kind, body),
        "StatefulSet" => round_trip::<StatefulSet>(kind, body),
        "DaemonSet" => round_trip::<DaemonSet>(kind, body),
        "EndpointSlice" => round_trip::<EndpointSlice>(kind, body),
        "CustomResourceDefinition" => round_trip::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(kind, body),
        _ => return Ok((obj.clone(), Vec::new())),
    }?;
    let mut unknown = Vec::new();
    let mut pruned = Map::new();
    for (k, v) in map {
        if k == "apiVersion" || k == "kind" {
            pruned.insert(k.clone(), v.clone());
            continue;
        }
        if let Some(v) = prune(v, typed.get(k), k.clone(), &mut unknown) {
            pruned.insert(k.clone(), v);
        }
    }
    Ok((Value::Object(pruned), unknown))
}

fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    kind: &str,
    body: Value,
) -> Result<Value, DecodeError> {
    let typed: T = match serde_json::from_value(body.clone()) {
        Ok(t) => t,
        Err(e) => {
            return Err(DecodeError(
                go_type_error::<T>(kind, &body).unwrap_or_else(|| e.to_string()),
            ))
        }
    };
    serde_json::to_value(&typed).map_err(|e| DecodeError(e.to_string()))
}

/// A type error as Go's `encoding/json` words it (`UnmarshalTypeError`): `json: cannot
/// unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of
/// type int32` — the JSON kind of the value, the innermost struct's Go name, the path of JSON
/// field names (no indices, no map keys) and the Go type. The path is found by decoding a
/// pretty-printed copy (one key per line) and the Go names by probing: a `0` put where a struct,
/// list or map is makes the typed decoder name what it expected. `None` when the error is not a
/// plain type mismatch (the caller keeps serde's text).
fn go_type_error<T: serde::de::DeserializeOwned>(kind: &str, body: &Value) -> Option<String> {
    let pretty = serde_json::to_string_pretty(body).ok()?;
    let mut lines = vec![String::new()];
    pretty_lines(body, "", &mut lines);
    let err = serde_json::from_str::<T>(&pretty).err()?;
    let ptr = lines.get(err.line().checked_sub(1)?)?.clone();
    let expected = expected_of(&err.to_string())?;
    let value = body.pointer(&ptr)?;
    let ty = go_type::<T>(body, &ptr, &expected)?;
    // Walk up to the innermost struct: skip list indices and map keys.
    let segments: Vec<&str> = ptr.split('/').skip(1).collect();
    let mut fields: Vec<&str> = Vec::new();
    let mut strukt = None;
    let mut i = segments.len();
    while i > 0 {
        let parent = format!("/{}", segments[..i - 1].join("/"));
        let parent = if i == 1 { String::new() } else { parent };
        let container = body.pointer(&parent)?;
        if container.is_object() {
            let probed = if parent.is_empty() {
                kind.to_string()
            } else {
                probe::<T>(body, &parent, Value::from(0))?
            };
            if probed != "a map" {
                fields.push(segments[i - 1]);
                if strukt.is_none() {
                    strukt = Some(probed);
                }
            }
        }
        i -= 1;
    }
    fields.reverse();
    let what = match value {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => return None,
    };
    let unescape = |f: &&str| f.replace("~1", "/").replace("~0", "~");
    let fields: Vec<String> = fields.iter().map(unescape).collect();
    Some(format!(
        "json: cannot unmarshal {what} into Go struct field {}.{} of type {ty}",
        strukt?,
        fields.join(".")
    ))
}

/// The JSON pointer each line of `serde_json::to_string_pretty(v)` belongs to (index = line - 1).
fn pretty_lines(v: &Value, ptr: &str, lines: &mut Vec<String>) {
    let esc = |k: &str| k.replace('~', "~0").replace('/', "~1");
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let p = format!("{ptr}/{}", esc(k));
                lines.push(p.clone());
                pretty_lines(child, &p, lines);
            }
            lines.push(ptr.to_string());
        }
        Value::Array(a) if !a.is_empty() => {
            for (n, child) in a.iter().enumerate() {
                let p = format!("{ptr}/{n}");
                lines.push(p.clone());
                pretty_lines(child, &p, lines);
            }
            lines.push(ptr.to_string());
        }
        _ => {}
    }
}

/// `i32` from serde's `invalid type: string "x", expected i32 at line 3 column 9`.
fn expected_of(message: &str) -> Option<String> {
    let rest = message.strip_prefix("invalid type: ")?;
    let (_, expected) = rest.split_once(", expected ")?;
    let expected = match expected.rfind(" at line ") {
        Some(at) => &expected[..at],
        None => expected,
    };
    Some(expected.to_string())
}

/// What the typed decoder expects at `ptr` once `replacement` is put there.
fn probe<T: serde::de::DeserializeOwned>(
    body: &Value,
    ptr: &str,
    replacement: Value,
) -> Option<String> {
    let mut copy = body.clone();
    *copy.pointer_mut(ptr)? = replacement;
    let err = serde_json::from_value::<T>(copy).err()?;
    expected_of(&err.to_string())
}

/// The Go type name for serde's `expected` text at `ptr` (`i32` → `int32`, `Container` →
/// `v1.Container`, `a sequence` → `[]` and the element's type, probed).
fn go_type<T: serde::de::DeserializeOwned>(
    body: &Value,
    ptr: &str,
    expected: &str,
) -> Option<String> {
    Some(match expected {
        "i32" => "int32".into(),
        "i64" => "int64".into(),
        "f64" => "float64".into(),
        "a string" => "string".into(),
        "a boolean" => "bool".into(),
        "a sequence" => {
            let inner = probe::<T>(body, ptr, json_array_of_zero())?;
            let elem = go_type::<T>(body, &format!("{ptr}/0"), &inner)?;
            format!("[]{elem}")
        }
        "a map" => {
            let inner = probe::<T>(body, ptr, serde_json::json!({"k": 0}))?;
            let elem = go_type::<T>(body, &format!("{ptr}/k"), &inner)?;
            format!("map[string]{elem}")
        }
        // Types with their own UnmarshalJSON in Go word their errors differently.
        "Quantity" | "IntOrString" | "Time" | "MicroTime" | "ByteString" => return None,
        s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => format!("v1.{s}"),
        _ => return None,
    })
}

fn json_array_of_zero() -> Value {
    Value::Array(vec![Value::from(0)])
}

/// `input` at `path`, pruned against its round trip `typed` (`None`: the key did not survive).
fn prune(
    input: &Value,
    typed: Option<&Value>,
    path: String,
    unknown: &mut Vec<String>,
) -> Option<Value> {
    let typed = match typed {
        Some(t) => t,
        None if input.is_null() => return Some(Value::Null),
        None => {
            unknown.push(path);
            return None;
        }
    };
    Some(match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            let mut out = Map::new();
            for (k, v) in i {
                if let Some(v) = prune(v, t.get(k), format!("{path}.{k}"), unknown) {
                    out.insert(k.clone(), v);
                }
            }
            Value::Object(out)
        }
        (Value::Array(i), Value::Array(t)) if i.len() == t.len() => Value::Array(
            i.iter()
                .zip(t)
                .enumerate()
                .map(|(n, (iv, tv))| {
                    prune(iv, Some(tv), format!("{path}[{n}]"), unknown).unwrap_or(Value::Null)
                })
                .collect(),
        ),
        _ => input.clone(),
    })
}

/// One object key as it appears in a JSON document.
#[derive(Debug, PartialEq, Eq)]
struct KeyAt {
    path: String,
    duplicate: bool,
}

/// Every object key of `body` in document order, with whether it repeats a key of its object.
fn key_order(body: &[u8]) -> Result<Vec<KeyAt>, serde_json::Error> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    Walk {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de)?;
    Ok(out)
}

struct Walk<'a> {
    path: String,
    out: &'a mut Vec<KeyAt>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        loop {
            let path = format!("{}[{n}]", self.path);
            let seed = Walk {
                path,
                out: &mut *self.out,
            };
            if seq.next_element_seed(seed)?.is_none() {
                return Ok(());
            }
            n += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            let duplicate = !seen.insert(key);
            self.out.push(KeyAt {
                path: path.clone(),
                duplicate,
            });
            map.next_value_seed(Walk {
                path,
                out: &mut *self.out,
            })?;
        }
        Ok(())
    }
}

/// A JSON value as Go's `fmt.Sprintf("%+v", v)` prints the `map[string]interface{}` it decodes
/// to (the apiserver quotes a strategic-merge patch this way in its 422): `map[k:v k2:[a b]]`.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_format).collect();
            format!("[{}]", items.join(" "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_format(&m[*k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// A `Warning` header value for one report, as the apiserver's warning recorder writes it
/// (RFC 7234 code 299, agent `-`, the text quoted with `"` and `\` escaped).
pub fn warning_header(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("299 - \"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{built_ins, Resource};
    use serde_json::json;

    fn info(kind: &str) -> &'static Resource {
        built_ins().iter().find(|r| r.kind == kind).unwrap()
    }

    /// (kind, body, expected reports, expected stored object or None = the body unchanged).
    /// Upstream: sigs.k8s.io/json strict decoding as used by
    /// apimachinery/pkg/runtime/serializer/json (KEP-2885 unknown-field paths).
    #[test]
    fn check_body_table() {
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}},
            "spec":{"containers":[{"name":"c","image":"i","foo":1,"resources":{"limits":{"cpu":1}}}],"bar":{"x":1}}}"#;
        let rows: Vec<(&str, &str, Vec<&str>, Option<Value>)> = vec![
            (
                "Pod",
                r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#,
                vec![],
                None,
            ),
            (
                "Pod",
                pod,
                vec![
                    r#"unknown field "spec.containers[0].foo""#,
                    r#"unknown field "spec.bar""#,
                ],
                Some(
                    json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"b"}},
                    "spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":1}}}]}}),
                ),
            ),
            (
                "Pod",
                r#"{"metadata":{"name":"p","nope":"x"},"zzz":true,"aaa":null}"#,
                vec![r#"unknown field "metadata.nope""#, r#"unknown field "zzz""#],
                Some(json!({"metadata":{"name":"p"},"aaa":null})),
            ),
            (
                "Pod",
                r#"{"metadata":{"name":"p","name":"q"}}"#,
                vec![r#"duplicate field "metadata.name""#],
                None,
            ),
            (
                "Service",
                r#"{"metadata":{"name":"s"},"spec":{"ports":[{"port":80,"targetPort":"http","extra":1}]}}"#,
                vec![r#"unknown field "spec.ports[0].extra""#],
                Some(
                    json!({"metadata":{"name":"s"},"spec":{"ports":[{"port":80,"targetPort":"http"}]}}),
                ),
            ),
            (
                "Secret",
                r#"{"metadata":{"name":"s"},"data":{"k":"dg=="},"stringData":{"a":"b"},"type":"Opaque","typo":1}"#,
                vec![r#"unknown field "typo""#],
                Some(
                    json!({"metadata":{"name":"s"},"data":{"k":"dg=="},"stringData":{"a":"b"},"type":"Opaque"}),
                ),
            ),
            (
                "Namespace",
                r#"{"metadata":{"name":"n"},"spec":{"finalizers":["kubernetes"],"x":1}}"#,
                vec![r#"unknown field "spec.x""#],
                Some(json!({"metadata":{"name":"n"},"spec":{"finalizers":["kubernetes"]}})),
            ),
            (
                "Lease",
                r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"},"spec":{"holderIdentity":"a","leaseDurationSeconds":15,"y":2}}"#,
                vec![r#"unknown field "spec.y""#],
                Some(
                    json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"},"spec":{"holderIdentity":"a","leaseDurationSeconds":15}}),
                ),
            ),
            (
                "Event",
                r#"{"metadata":{"name":"e"},"involvedObject":{"kind":"Pod","name":"p","bogus":1},"reason":"R"}"#,
                vec![r#"unknown field "involvedObject.bogus""#],
                Some(
                    json!({"metadata":{"name":"e"},"involvedObject":{"kind":"Pod","name":"p"},"reason":"R"}),
                ),
            ),
            (
                "Deployment",
                r#"{"metadata":{"name":"d"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"i","x":1}]}}}}"#,
                vec![r#"unknown field "spec.template.spec.containers[0].x""#],
                Some(
                    json!({"metadata":{"name":"d"},"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
                ),
            ),
            (
                "ConfigMap",
                r#"{"metadata":{"name":"c"},"data":{"k":"v"},"binaryData":{},"datta":{}}"#,
                vec![r#"unknown field "datta""#],
                Some(json!({"metadata":{"name":"c"},"data":{"k":"v"},"binaryData":{}})),
            ),
            (
                "EndpointSlice",
                r#"{"metadata":{"name":"e"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"],"zone2":"a"}]}"#,
                vec![r#"unknown field "endpoints[0].zone2""#],
                Some(
                    json!({"metadata":{"name":"e"},"addressType":"IPv4","endpoints":[{"addresses":["10.0.0.1"]}]}),
                ),
            ),
            // Not an object of this kind: left to the sim's own type checks.
            ("Pod", r#"[1,2]"#, vec![], None),
            ("Pod", r#"{"kind":"Service","x":1}"#, vec![], None),
        ];
        for (kind, body, problems, stored) in rows {
            let obj: Value = serde_json::from_str(body).unwrap();
            let got = check_body(info(kind), body.as_bytes(), &obj).unwrap();
            assert_eq!(got.problems, problems, "{kind} {body}");
            assert_eq!(got.object, stored.unwrap_or(obj), "{kind} {body}");
        }
    }

    /// Upstream: a type mismatch fails decoding whatever fieldValidation says
    /// (apiserver handlers/create.go: a non-strict decode error is always answered), worded by
    /// Go's encoding/json `UnmarshalTypeError` (struct name, JSON field path, Go type).
    #[test]
    fn type_errors_read_as_go_json() {
        let rows = [
            (
                "Pod",
                r#"{"spec":{"containers":"web"}}"#,
                "json: cannot unmarshal string into Go struct field PodSpec.spec.containers of type []v1.Container",
            ),
            (
                "Pod",
                r#"{"metadata":{"name":"p"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":"80"}]}]}}"#,
                "json: cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports.containerPort of type int32",
            ),
            (
                "Pod",
                r#"{"spec":"x"}"#,
                "json: cannot unmarshal string into Go struct field Pod.spec of type v1.PodSpec",
            ),
            (
                "Pod",
                r#"{"metadata":{"labels":{"a":1}}}"#,
                "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string",
            ),
            (
                "Lease",
                r#"{"spec":{"leaseDurationSeconds":"15"}}"#,
                "json: cannot unmarshal string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32",
            ),
            (
                "Service",
                r#"{"spec":{"ports":{"port":80}}}"#,
                "json: cannot unmarshal object into Go struct field ServiceSpec.spec.ports of type []v1.ServicePort",
            ),
            (
                "Namespace",
                r#"{"spec":{"finalizers":[1]}}"#,
                "json: cannot unmarshal number into Go struct field NamespaceSpec.spec.finalizers of type string",
            ),
        ];
        for (kind, body, message) in rows {
            let obj: Value = serde_json::from_str(body).unwrap();
            let got = check_body(info(kind), body.as_bytes(), &obj);
            assert_eq!(got, Err(DecodeError(message.into())), "{kind} {body}");
        }
        // A type with its own UnmarshalJSON in Go: still a decode error, in serde's words.
        let body = r#"{"spec":{"ports":[{"port":80,"targetPort":{"x":1}}]}}"#;
        let obj: Value = serde_json::from_str(body).unwrap();
        let got = check_body(info("Service"), body.as_bytes(), &obj).unwrap_err();
        assert!(!got.0.starts_with("json: "), "{got}");
    }

    #[test]
    fn go_format_and_warning_header() {
        assert_eq!(
            go_format(&json!({"spec": {"b": [1, "x"], "a": null}, "m": true})),
            "map[m:true spec:map[a:<nil> b:[1 x]]]"
        );
        assert_eq!(
            warning_header(r#"unknown field "spec.foo""#),
            r#"299 - "unknown field \"spec.foo\"""#
        );
    }
}

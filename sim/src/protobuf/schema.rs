//! The message schemas of the built-in kinds, read from the vendored upstream `generated.proto` files (`sim/proto/`).

use std::collections::HashMap;
use std::sync::OnceLock;

/// The vendored files (path under `sim/proto/`, text).
const FILES: &[(&str, &str)] = &[
    (
        "k8s.io/apimachinery/pkg/api/resource/generated.proto",
        include_str!("../../proto/k8s.io/apimachinery/pkg/api/resource/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
        include_str!("../../proto/k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/runtime/generated.proto",
        include_str!("../../proto/k8s.io/apimachinery/pkg/runtime/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/runtime/schema/generated.proto",
        include_str!("../../proto/k8s.io/apimachinery/pkg/runtime/schema/generated.proto"),
    ),
    (
        "k8s.io/apimachinery/pkg/util/intstr/generated.proto",
        include_str!("../../proto/k8s.io/apimachinery/pkg/util/intstr/generated.proto"),
    ),
    (
        "k8s.io/api/core/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/core/v1/generated.proto"),
    ),
    (
        "k8s.io/api/apps/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/apps/v1/generated.proto"),
    ),
    (
        "k8s.io/api/autoscaling/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/autoscaling/v1/generated.proto"),
    ),
    (
        "k8s.io/api/coordination/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/coordination/v1/generated.proto"),
    ),
    (
        "k8s.io/api/discovery/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/discovery/v1/generated.proto"),
    ),
    (
        "k8s.io/api/events/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/events/v1/generated.proto"),
    ),
    (
        "k8s.io/api/policy/v1/generated.proto",
        include_str!("../../proto/k8s.io/api/policy/v1/generated.proto"),
    ),
];

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

/// Go fields embedded without a JSON name (`json:",inline"` or `json:""`): in JSON their
/// fields sit in the parent object; in protobuf they are one nested message (found by
/// grepping the upstream `types.go` files for anonymous fields with a protobuf tag).
const INLINE: &[(&str, &str)] = &[
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    (
        "k8s.io.api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
    (
        "k8s.io.api.core.v1.SecretProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapVolumeSource",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapProjection",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.SecretKeySelector",
        "localObjectReference",
    ),
    (
        "k8s.io.api.core.v1.ConfigMapEnvSource",
        "localObjectReference",
    ),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    (
        "k8s.io.api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    ("k8s.io.apimachinery.pkg.runtime.Unknown", "typeMeta"),
];

/// A scalar or message field type (the only ones the Kubernetes schemas use).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    /// An index into [`Schema::messages`].
    Message(usize),
}

/// How often a field occurs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Label {
    Optional,
    Repeated,
    /// `map<string, V>`: repeated entries `{1: key, 2: value}`.
    Map,
}

/// One field: its JSON name is its proto name (go-to-protobuf names them so), unless inline.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: String,
    pub number: u32,
    pub label: Label,
    pub ty: Ty,
    pub inline: bool,
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `meta/v1.Time`: `{seconds, nanos}` ↔ RFC 3339 to the second.
    Time,
    /// `meta/v1.MicroTime`: `{seconds, nanos}` ↔ RFC 3339 to the microsecond.
    MicroTime,
    /// `meta/v1.Duration`: nanoseconds ↔ a Go duration string.
    Duration,
    /// `util/intstr.IntOrString`: `{type, intVal, strVal}` ↔ a number or a string.
    IntOrString,
    /// `api/resource.Quantity`: `{string}` ↔ the string.
    Quantity,
    /// `runtime.RawExtension` / `meta/v1.FieldsV1`: raw JSON bytes ↔ the JSON value.
    RawJson,
    /// `meta/v1.Verbs`: `{repeated items}` ↔ the array.
    Items,
}

/// One message type.
#[derive(Debug)]
pub(crate) struct Message {
    pub fields: Vec<Field>,
    pub special: Special,
    /// Field index by number (dense: Kubernetes numbers fields from 1 without big gaps).
    by_number: Vec<Option<usize>>,
}

impl Message {
    /// The field with this number.
    pub fn field(&self, number: u32) -> Option<&Field> {
        let i = (*self.by_number.get(number as usize)?)?;
        self.fields.get(i)
    }
}

/// Every message of the vendored files.
#[derive(Debug)]
pub(crate) struct Schema {
    pub messages: Vec<Message>,
    by_name: HashMap<String, usize>,
}

/// A line of a `.proto` file the reader does not understand.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: cannot read {text:?}")]
pub(crate) struct ParseError {
    file: String,
    line: usize,
    text: String,
}

impl Schema {
    /// The schema of the vendored files, read once.
    pub fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        // The vendored files are part of the build and a unit test reads them: a failure here is a bug.
        SCHEMA.get_or_init(|| Schema::parse(FILES).expect("the vendored .proto files parse"))
    }

    /// A message by its full name (`k8s.io.api.core.v1.Pod`).
    pub fn message(&self, full_name: &str) -> Option<usize> {
        self.by_name.get(full_name).copied()
    }

    /// The message of a kind in an API version (`v1`, `apps/v1`, …), or a `meta/v1` one
    /// (`Status`, `WatchEvent`, `DeleteOptions`).
    pub fn for_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let package = match group.split('.').next().unwrap_or("") {
            "" => "core",
            g => g,
        };
        self.message(&format!("k8s.io.api.{package}.{version}.{kind}"))
            .or_else(|| self.message(&format!("{META}.{kind}")))
    }

    /// Parse the subset of proto2 the Kubernetes `generated.proto` files use: top-level
    /// messages of `optional`/`repeated` scalar or message fields and `map<string, V>`.
    pub fn parse(files: &[(&str, &str)]) -> Result<Schema, ParseError> {
        struct Raw {
            full_name: String,
            package: String,
            fields: Vec<(String, u32, Label, String)>,
        }
        let mut raws: Vec<Raw> = Vec::new();
        for (file, text) in files {
            let mut package = String::new();
            let mut current: Option<Raw> = None;
            let mut in_comment = false;
            for (n, line) in text.lines().enumerate() {
                let err = || ParseError {
                    file: file.to_string(),
                    line: n + 1,
                    text: line.to_string(),
                };
                let l = line.trim();
                if in_comment {
                    in_comment = !l.ends_with("*/");
                    continue;
                }
                if l.starts_with("/*") {
                    in_comment = !l.ends_with("*/");
                    continue;
                }
                if l.is_empty() || l.starts_with("//") {
                    continue;
                }
                if let Some(raw) = current.as_mut() {
                    if l == "}" {
                        raws.extend(current.take());
                        continue;
                    }
                    let decl = l.strip_suffix(';').ok_or_else(err)?;
                    let (lhs, number) = decl.split_once(" = ").ok_or_else(err)?;
                    let number: u32 = number.trim().parse().map_err(|_| err())?;
                    let (label, ty, name) = if let Some(rest) = lhs.strip_prefix("map<") {
                        let (types, name) = rest.split_once("> ").ok_or_else(err)?;
                        let (k, v) = types.split_once(", ").ok_or_else(err)?;
                        if k != "string" {
                            return Err(err());
                        }
                        (Label::Map, v.to_string(), name)
                    } else {
                        let mut parts = lhs.split(' ');
                        let label = match parts.next() {
                            Some("optional") => Label::Optional,
                            Some("repeated") => Label::Repeated,
                            _ => return Err(err()),
                        };
                        let ty = parts.next().ok_or_else(err)?;
                        let name = parts.next().ok_or_else(err)?;
                        if parts.next().is_some() {
                            return Err(err());
                        }
                        (label, ty.to_string(), name)
                    };
                    raw.fields.push((name.to_string(), number, label, ty));
                    continue;
                }
                if let Some(p) = l.strip_prefix("package ") {
                    package = p.trim_end_matches(';').to_string();
                } else if let Some(m) = l.strip_prefix("message ") {
                    let name = m.strip_suffix(" {").ok_or_else(err)?;
                    current = Some(Raw {
                        full_name: format!("{package}.{name}"),
                        package: package.clone(),
                        fields: Vec::new(),
                    });
                } else if !(l.starts_with("syntax ")
                    || l.starts_with("import ")
                    || l.starts_with("option "))
                {
                    return Err(err());
                }
            }
        }
        let by_name: HashMap<String, usize> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| (r.full_name.clone(), i))
            .collect();
        let mut messages = Vec::with_capacity(raws.len());
        for raw in raws {
            let mut fields = Vec::with_capacity(raw.fields.len());
            for (name, number, label, ty) in raw.fields {
                let ty = match ty.as_str() {
                    "string" => Ty::String,
                    "bytes" => Ty::Bytes,
                    "bool" => Ty::Bool,
                    "int32" => Ty::Int32,
                    "int64" => Ty::Int64,
                    other => {
                        let full = match other.strip_prefix('.') {
                            Some(f) => f.to_string(),
                            None => format!("{}.{other}", raw.package),
                        };
                        Ty::Message(*by_name.get(&full).ok_or_else(|| ParseError {
                            file: raw.full_name.clone(),
                            line: 0,
                            text: format!("unknown type {other} of {name}"),
                        })?)
                    }
                };
                let inline = INLINE.contains(&(raw.full_name.as_str(), name.as_str()));
                fields.push(Field {
                    name,
                    number,
                    label,
                    ty,
                    inline,
                });
            }
            let max = fields.iter().map(|f| f.number).max().unwrap_or(0) as usize;
            let mut by_number = vec![None; max + 1];
            for (i, f) in fields.iter().enumerate() {
                by_number[f.number as usize] = Some(i);
            }
            let special = match raw.full_name.as_str() {
                "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => Special::Time,
                "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => Special::MicroTime,
                "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => Special::Duration,
                "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Special::IntOrString,
                "k8s.io.apimachinery.pkg.api.resource.Quantity"
                | "k8s.io.apimachinery.pkg.api.resource.QuantityValue" => Special::Quantity,
                "k8s.io.apimachinery.pkg.runtime.RawExtension"
                | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => Special::RawJson,
                "k8s.io.apimachinery.pkg.apis.meta.v1.Verbs" => Special::Items,
                _ => Special::None,
            };
            messages.push(Message {
                fields,
                special,
                by_number,
            });
        }
        Ok(Schema { messages, by_name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendored_file_parses_and_every_inline_field_exists() {
        let s = Schema::parse(FILES).unwrap();
        assert!(s.messages.len() > 300, "{}", s.messages.len());
        for (msg, field) in INLINE {
            let m = &s.messages[s.message(msg).unwrap()];
            assert!(
                m.fields.iter().any(|f| f.name == *field && f.inline),
                "{msg}.{field}"
            );
        }
        let pod = &s.messages[s.for_kind("v1", "Pod").unwrap()];
        assert_eq!(pod.field(1).unwrap().name, "metadata");
        assert_eq!(pod.field(3).unwrap().name, "status");
        assert!(s.for_kind("apps/v1", "Deployment").is_some());
        assert!(s.for_kind("coordination.k8s.io/v1", "Lease").is_some());
        assert!(s.for_kind("events.k8s.io/v1", "Event").is_some());
        assert!(s.for_kind("v1", "Status").is_some());
        assert!(s.for_kind("example.com/v1", "Foo").is_none());
    }

    #[test]
    fn an_unknown_declaration_is_an_error_not_a_guess() {
        for text in [
            "package a;\nmessage M {\n  required string x = 1;\n}\n",
            "package a;\nmessage M {\n  optional Missing x = 1;\n}\n",
            "package a;\nenum E {\n}\n",
            "package a;\nmessage M {\n  map<int32, string> x = 1;\n}\n",
        ] {
            assert!(Schema::parse(&[("t.proto", text)]).is_err(), "{text}");
        }
    }
}

//! Committed objects encoded once: the JSON bytes every watcher and list page shares, and the label and field values selectors read.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;

use crate::selector::Selectors;

/// An object's labels (string values only), as selectors read them.
pub type Labels = Arc<[(Box<str>, Box<str>)]>;
/// An object's selectable fields (`metadata.name`, `metadata.namespace` and the resource's own), missing ones as "".
pub type Fields = Arc<[(&'static str, Box<str>)]>;

/// One committed object version: its JSON, the values selectors need, and (on demand) its parsed form.
pub struct Obj {
    json: Bytes,
    labels: Labels,
    fields: Fields,
    /// Parsed from `json` the first time someone asks for a `Value`.
    value: OnceLock<Value>,
    /// Its protobuf message, encoded the first time a protobuf list asks for it.
    protobuf: OnceLock<Bytes>,
}

impl std::fmt::Debug for Obj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.json))
    }
}

/// `{"type":"<kind>","object":` — what precedes the object in a watch line.
pub fn line_prefix(kind: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(32);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(kind.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    v
}

/// What follows the object in a watch line.
pub const LINE_SUFFIX: &[u8] = b"}\n";

/// Append the watch line `{"type":T,"object":<json>}\n` to `out`.
pub fn push_line(out: &mut Vec<u8>, kind: &str, json: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(json);
    out.extend_from_slice(LINE_SUFFIX);
}

/// The watch line for an already-encoded object.
pub fn line(kind: &str, json: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(json.len() + kind.len() + 24);
    push_line(&mut v, kind, json);
    Bytes::from(v)
}

/// Pure: the labels selectors see (`metadata.labels`, string values only).
pub fn extract_labels(v: &Value) -> Labels {
    match v.pointer("/metadata/labels").and_then(Value::as_object) {
        Some(m) => m
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().into(), v.as_str()?.into())))
            .collect(),
        None => Arc::new([]),
    }
}

/// Pure: the selectable fields of an object of `resource` (a missing or non-string field reads as "").
pub fn extract_fields(resource: &str, v: &Value) -> Fields {
    let own = crate::resource::fields_of(resource);
    ["metadata.name", "metadata.namespace"]
        .iter()
        .chain(own)
        .map(|f| {
            let mut cur = Some(v);
            for seg in f.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            (*f, cur.and_then(Value::as_str).unwrap_or("").into())
        })
        .collect()
}

impl Obj {
    /// Encode `v` as the object of a watch line of `kind`: returns the object (its JSON a slice of the line) and the line.
    pub fn encode(resource: &str, kind: &str, v: &Value) -> (Arc<Obj>, Bytes) {
        let mut buf = line_prefix(kind);
        let start = buf.len();
        // Serializing a Value into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut buf, v);
        let end = buf.len();
        buf.extend_from_slice(LINE_SUFFIX);
        // A Vec's spare capacity would live as long as the object.
        buf.shrink_to_fit();
        let line = Bytes::from(buf);
        let obj = Obj::from_parts(
            line.slice(start..end),
            extract_labels(v),
            extract_fields(resource, v),
        );
        (obj, line)
    }

    /// An object from its JSON and its already-extracted selector values.
    pub fn from_parts(json: Bytes, labels: Labels, fields: Fields) -> Arc<Obj> {
        Arc::new(Obj {
            json,
            labels,
            fields,
            value: OnceLock::new(),
            protobuf: OnceLock::new(),
        })
    }

    /// The object's JSON.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The labels selectors see.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The selectable fields.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The parsed object (parsed once, then kept).
    pub fn value(&self) -> &Value {
        self.value
            .get_or_init(|| serde_json::from_slice(&self.json).unwrap_or(Value::Null))
    }

    /// A parsed copy, without keeping a parsed form around when there is none yet.
    pub fn to_value(&self) -> Value {
        match self.value.get() {
            Some(v) => v.clone(),
            None => serde_json::from_slice(&self.json).unwrap_or(Value::Null),
        }
    }

    /// The object's protobuf message: encoded by `encode` from its value the first time, then kept.
    pub(crate) fn protobuf<E>(
        &self,
        encode: impl FnOnce(&Value) -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if let Some(b) = self.protobuf.get() {
            return Ok(b.clone());
        }
        let b = encode(&self.to_value())?;
        Ok(self.protobuf.get_or_init(|| b).clone())
    }

    /// Whether both selectors match, from the pre-extracted values (no parsing).
    pub fn matches(&self, sel: &Selectors) -> bool {
        if sel.is_empty() {
            return true;
        }
        let label = |k: &str| {
            self.labels
                .iter()
                .find(|(lk, _)| &**lk == k)
                .map(|(_, v)| &**v)
        };
        let field = |f: &str| {
            self.fields
                .iter()
                .find(|(fk, _)| *fk == f)
                .map_or("", |(_, v)| &**v)
        };
        sel.matches_with(label, field)
    }
}

/// An object encoded before its resourceVersion is known (outside the store lock): its JSON
/// with a gap where the RV goes, so that committing it is a copy, not a serialization.
pub struct Pending {
    json: Vec<u8>,
    /// Where the RV digits go (between the quotes of `"resourceVersion":""`).
    gap: usize,
    labels: Labels,
    fields: Fields,
}

impl Pending {
    /// Encode `v`, whose `metadata.resourceVersion` is set to "" to mark its place; `None` if it has no metadata.
    pub fn encode(resource: &str, v: &mut Value) -> Option<Pending> {
        let top = v.as_object_mut()?;
        top.get_mut("metadata")?
            .as_object_mut()?
            .insert("resourceVersion".into(), Value::String(String::new()));
        let mut json = Vec::with_capacity(1024);
        let mut gap = None;
        // The same bytes serde_json's compact writer produces for `v`, noting where the RV goes.
        json.push(b'{');
        for (i, (k, val)) in top.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            let _ = serde_json::to_writer(&mut json, k);
            json.push(b':');
            match val.as_object().filter(|_| k == "metadata") {
                Some(meta) => {
                    json.push(b'{');
                    for (j, (mk, mv)) in meta.iter().enumerate() {
                        if j > 0 {
                            json.push(b',');
                        }
                        let _ = serde_json::to_writer(&mut json, mk);
                        json.push(b':');
                        if mk == "resourceVersion" {
                            json.push(b'"');
                            gap = Some(json.len());
                            json.push(b'"');
                        } else {
                            let _ = serde_json::to_writer(&mut json, mv);
                        }
                    }
                    json.push(b'}');
                }
                None => {
                    let _ = serde_json::to_writer(&mut json, val);
                }
            }
        }
        json.push(b'}');
        Some(Pending {
            json,
            gap: gap?,
            labels: extract_labels(v),
            fields: extract_fields(resource, v),
        })
    }

    /// The object with `rv` spliced in, and its watch line of `kind`.
    pub fn finish(self, kind: &str, rv: u64) -> (Arc<Obj>, Bytes) {
        let rv = rv.to_string();
        let mut buf = Vec::with_capacity(self.json.len() + rv.len() + kind.len() + 24);
        buf.extend_from_slice(&line_prefix(kind));
        let start = buf.len();
        buf.extend_from_slice(&self.json[..self.gap]);
        buf.extend_from_slice(rv.as_bytes());
        buf.extend_from_slice(&self.json[self.gap..]);
        let end = buf.len();
        buf.extend_from_slice(LINE_SUFFIX);
        let line = Bytes::from(buf);
        let obj = Obj::from_parts(line.slice(start..end), self.labels, self.fields);
        (obj, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::{FieldSelector, LabelSelector};
    use serde_json::json;

    #[test]
    fn encoded_object_is_a_slice_of_its_line_and_selects_like_the_value() {
        let v = json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "n": 1}},
                       "status": {"phase": "Running"}});
        let (obj, line) = Obj::encode("pods", "ADDED", &v);
        assert_eq!(
            serde_json::from_slice::<Value>(&line).unwrap(),
            json!({"type": "ADDED", "object": v})
        );
        assert_eq!(obj.value(), &v);
        let info = crate::resource::by_plural("pods").unwrap();
        for (l, f) in [
            ("app=web", ""),
            ("app=db", ""),
            ("n", ""),
            ("!n", ""),
            ("", "status.phase=Running"),
            ("", "spec.nodeName="),
            ("app", "metadata.name!=p"),
            ("", "metadata.namespace=ns"),
        ] {
            let sel = Selectors {
                labels: LabelSelector::parse(l).unwrap(),
                fields: FieldSelector::parse(f, info).unwrap(),
            };
            assert_eq!(obj.matches(&sel), sel.matches(&v), "{l} / {f}");
        }
    }

    #[test]
    fn pending_encoding_is_the_serialization_with_the_rv_spliced_in() {
        let mut v = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": {"a\"b": "}"}, "uid": "u"},
                           "spec": {"x": [1, 2.5, null]}});
        let (obj, line) = Pending::encode("pods", &mut v)
            .unwrap()
            .finish("MODIFIED", 42);
        v["metadata"]["resourceVersion"] = json!("42");
        assert_eq!(
            obj.json().as_ref(),
            serde_json::to_vec(&v).unwrap().as_slice()
        );
        assert_eq!(line, Obj::encode("pods", "MODIFIED", &v).1);
        assert!(Pending::encode("pods", &mut json!({"spec": {}})).is_none());
    }
}

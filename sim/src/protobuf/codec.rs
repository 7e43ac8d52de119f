//! JSON ↔ protobuf wire bytes for one message type, driven by the schema, with Kubernetes' JSON mapping (inline fields, Time, IntOrString, Quantity, bytes as base64, raw JSON).

use base64::Engine;
use serde_json::{Map, Number, Value};

use super::schema::{Field, Label, Message, Schema, Special, Ty};
use super::time;

/// Why bytes or a JSON value could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CodecError {
    /// The bytes are not a well-formed message.
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    /// A value does not fit its field.
    #[error("{path}: {problem}")]
    Field { path: String, problem: String },
}

fn field_err(path: &str, problem: impl Into<String>) -> CodecError {
    CodecError::Field {
        path: path.to_string(),
        problem: problem.into(),
    }
}

/// Fields whose zero value means something: Go's protobuf writes every non-pointer field, so a
/// zero on the wire usually is an unset field that Go's JSON omits (`omitempty`) — and is
/// dropped here — but these pointer fields hold a zero (or `false`, or `""`) that is a value.
const KEEP_ZERO: &[&str] = &[
    "replicas",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "immutable",
    "optional",
    "readOnly",
    "privileged",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "allowPrivilegeEscalation",
    "readOnlyRootFilesystem",
    "hostUsers",
    "shareProcessNamespace",
    "setHostnameAsFQDN",
    "storageClassName",
    "defaultMode",
    "mode",
    "backoffLimit",
    "parallelism",
    "completions",
    "suspend",
    "partition",
    "allocateLoadBalancerNodePorts",
    "ready",
    "serving",
    "terminating",
    "started",
    "leaseDurationSeconds",
    "leaseTransitions",
    "exitCode",
    "restartCount",
    "desiredHealthy",
    "currentHealthy",
    "disruptionsAllowed",
    "expectedPods",
];

// ---- the wire

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_key(out: &mut Vec<u8>, number: u32, wire: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire));
}

/// A length-delimited field.
pub(crate) fn put_bytes(out: &mut Vec<u8>, number: u32, b: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Start a length-delimited field whose length is not known yet: one byte is reserved, and
/// [`end_len`] widens it if the contents need a longer varint.
pub(crate) fn begin_len(out: &mut Vec<u8>, number: u32) -> usize {
    put_key(out, number, LEN);
    out.push(0);
    out.len()
}

pub(crate) fn end_len(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    if len < 0x80 {
        out[start - 1] = len as u8;
    } else {
        let mut v = Vec::with_capacity(10);
        put_varint(&mut v, len as u64);
        out.splice(start - 1..start, v);
    }
}

/// Reads a message's fields one at a time.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field occurrence on the wire.
pub(crate) enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32/64-bit values (no Kubernetes field has them): skipped.
    Fixed,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(CodecError::Malformed("truncated varint"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(CodecError::Malformed("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError::Malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CodecError::Malformed("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next field: its number and value; `None` at the end.
    pub fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, CodecError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| CodecError::Malformed("field number"))?;
        if number == 0 {
            return Err(CodecError::Malformed("field number 0"));
        }
        let value = match (key & 7) as u8 {
            VARINT => Wire::Varint(self.varint()?),
            LEN => {
                let n =
                    usize::try_from(self.varint()?).map_err(|_| CodecError::Malformed("length"))?;
                Wire::Bytes(self.take(n)?)
            }
            FIXED64 => {
                self.take(8)?;
                Wire::Fixed
            }
            FIXED32 => {
                self.take(4)?;
                Wire::Fixed
            }
            _ => return Err(CodecError::Malformed("unsupported wire type")),
        };
        Ok(Some((number, value)))
    }
}

// ---- JSON → protobuf

/// Append the fields of message `msg` encoded from the JSON `v` (an object, or the JSON form of
/// a special message). Unknown JSON fields are left out, as Go's decoder drops them.
pub(crate) fn encode(
    schema: &Schema,
    msg: usize,
    v: &Value,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), CodecError> {
    let m = &schema.messages[msg];
    if m.special != Special::None {
        return encode_special(m.special, v, out, path);
    }
    let obj = v
        .as_object()
        .ok_or_else(|| field_err(path, "expected an object"))?;
    encode_fields(schema, m, obj, out, path)
}

fn encode_fields(
    schema: &Schema,
    m: &Message,
    obj: &Map<String, Value>,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), CodecError> {
    for f in &m.fields {
        if f.inline {
            if let Ty::Message(child) = f.ty {
                let start = begin_len(out, f.number);
                encode_fields(schema, &schema.messages[child], obj, out, path)?;
                end_len(out, start);
            }
            continue;
        }
        let Some(v) = obj.get(&f.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let here = join(path, &f.name);
        match f.label {
            Label::Optional => encode_one(schema, f.number, f.ty, v, out, &here)?,
            Label::Repeated => {
                let items = v
                    .as_array()
                    .ok_or_else(|| field_err(&here, "expected an array"))?;
                for item in items {
                    encode_one(schema, f.number, f.ty, item, out, &here)?;
                }
            }
            Label::Map => {
                let entries = v
                    .as_object()
                    .ok_or_else(|| field_err(&here, "expected an object"))?;
                for (k, val) in entries {
                    let start = begin_len(out, f.number);
                    put_bytes(out, 1, k.as_bytes());
                    if !val.is_null() {
                        encode_one(schema, 2, f.ty, val, out, &join(&here, k))?;
                    }
                    end_len(out, start);
                }
            }
        }
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn int(v: &Value, path: &str) -> Result<i64, CodecError> {
    v.as_i64()
        .or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                .map(|f| f as i64)
        })
        .ok_or_else(|| field_err(path, "expected an integer"))
}

fn string<'v>(v: &'v Value, path: &str) -> Result<&'v str, CodecError> {
    v.as_str()
        .ok_or_else(|| field_err(path, "expected a string"))
}

/// One occurrence of a field (its key included).
fn encode_one(
    schema: &Schema,
    number: u32,
    ty: Ty,
    v: &Value,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), CodecError> {
    match ty {
        Ty::String => put_bytes(out, number, string(v, path)?.as_bytes()),
        Ty::Bytes => {
            let b = base64::engine::general_purpose::STANDARD
                .decode(string(v, path)?)
                .map_err(|e| field_err(path, format!("illegal base64 data: {e}")))?;
            put_bytes(out, number, &b);
        }
        Ty::Bool => {
            let b = v
                .as_bool()
                .ok_or_else(|| field_err(path, "expected a boolean"))?;
            put_key(out, number, VARINT);
            put_varint(out, u64::from(b));
        }
        Ty::Int32 => {
            let n = int(v, path)?;
            let n = i32::try_from(n).map_err(|_| field_err(path, "out of int32 range"))?;
            put_key(out, number, VARINT);
            put_varint(out, i64::from(n) as u64);
        }
        Ty::Int64 => {
            put_key(out, number, VARINT);
            put_varint(out, int(v, path)? as u64);
        }
        Ty::Message(child) => {
            let start = begin_len(out, number);
            encode(schema, child, v, out, path)?;
            end_len(out, start);
        }
    }
    Ok(())
}

fn encode_special(
    special: Special,
    v: &Value,
    out: &mut Vec<u8>,
    path: &str,
) -> Result<(), CodecError> {
    match special {
        Special::Time | Special::MicroTime => {
            let (secs, nanos) = time::parse_rfc3339(string(v, path)?)
                .ok_or_else(|| field_err(path, "expected an RFC 3339 time"))?;
            put_key(out, 1, VARINT);
            put_varint(out, secs as u64);
            put_key(out, 2, VARINT);
            put_varint(out, u64::from(nanos));
        }
        Special::Duration => {
            let nanos = time::parse_duration(string(v, path)?)
                .ok_or_else(|| field_err(path, "expected a duration"))?;
            put_key(out, 1, VARINT);
            put_varint(out, nanos as u64);
        }
        Special::IntOrString => match v {
            Value::String(s) => {
                put_key(out, 1, VARINT);
                put_varint(out, 1);
                put_key(out, 2, VARINT);
                put_varint(out, 0);
                put_bytes(out, 3, s.as_bytes());
            }
            _ => {
                let n = i32::try_from(int(v, path)?)
                    .map_err(|_| field_err(path, "out of int32 range"))?;
                put_key(out, 1, VARINT);
                put_varint(out, 0);
                put_key(out, 2, VARINT);
                put_varint(out, i64::from(n) as u64);
                put_bytes(out, 3, b"");
            }
        },
        Special::Quantity => {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(field_err(path, "expected a quantity")),
            };
            put_bytes(out, 1, s.as_bytes());
        }
        Special::RawJson => {
            let raw = serde_json::to_vec(v).map_err(|e| field_err(path, e.to_string()))?;
            put_bytes(out, 1, &raw);
        }
        Special::Items => {
            let items = v
                .as_array()
                .ok_or_else(|| field_err(path, "expected an array"))?;
            for item in items {
                put_bytes(out, 1, string(item, path)?.as_bytes());
            }
        }
        Special::None => {}
    }
    Ok(())
}

// ---- protobuf → JSON

/// Decode the bytes of message `msg` into its JSON form. `Null` stands for a value Go's JSON
/// would not write (a zero Time); fields Go omits when empty are left out.
pub(crate) fn decode(
    schema: &Schema,
    msg: usize,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, CodecError> {
    decode_depth(schema, msg, bytes, depth)
}

/// Deeper than any Kubernetes type nests: a hostile body gets an error, not a stack overflow.
const MAX_DEPTH: usize = 64;

fn decode_depth(
    schema: &Schema,
    msg: usize,
    bytes: &[u8],
    depth: usize,
) -> Result<Value, CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::Malformed("nested too deeply"));
    }
    let m = &schema.messages[msg];
    if m.special != Special::None {
        return decode_special(m.special, bytes, depth);
    }
    let mut obj = Map::new();
    decode_into(schema, m, bytes, &mut obj, depth)?;
    Ok(Value::Object(obj))
}

fn decode_into(
    schema: &Schema,
    m: &Message,
    bytes: &[u8],
    obj: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), CodecError> {
    let mut r = Reader::new(bytes);
    while let Some((number, wire)) = r.next_field()? {
        let Some(f) = m.field(number) else {
            continue;
        };
        if f.inline {
            if let (Ty::Message(child), Wire::Bytes(b)) = (f.ty, &wire) {
                decode_into(schema, &schema.messages[child], b, obj, depth + 1)?;
            }
            continue;
        }
        match f.label {
            Label::Optional => {
                let v = decode_one(schema, f, wire, depth)?;
                if keep(f, &v) {
                    obj.insert(f.name.clone(), v);
                } else {
                    obj.remove(&f.name);
                }
            }
            Label::Repeated => {
                let arr = obj
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(arr) = arr else {
                    return Err(CodecError::Malformed("field repeated and not"));
                };
                match (f.ty, wire) {
                    // Packed scalars (Go writes them unpacked; both are valid protobuf).
                    (Ty::Int32 | Ty::Int64 | Ty::Bool, Wire::Bytes(b)) => {
                        let mut packed = Reader { buf: b, pos: 0 };
                        while packed.pos < b.len() {
                            let v = packed.varint()?;
                            arr.push(scalar(f.ty, v));
                        }
                    }
                    (_, wire) => arr.push(decode_one(schema, f, wire, depth)?),
                }
            }
            Label::Map => {
                let Wire::Bytes(entry) = wire else {
                    return Err(CodecError::Malformed("map entry is not a message"));
                };
                let mut er = Reader::new(entry);
                let (mut key, mut value) = (String::new(), Value::Null);
                while let Some((n, w)) = er.next_field()? {
                    match (n, w) {
                        (1, Wire::Bytes(k)) => key = utf8(k)?,
                        (2, w) => value = decode_one(schema, f, w, depth)?,
                        _ => {}
                    }
                }
                if value.is_null() {
                    value = empty(f.ty);
                }
                let map = obj
                    .entry(f.name.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(())
}

/// Pure: whether a decoded optional field goes into the JSON.
fn keep(f: &Field, v: &Value) -> bool {
    let zero = match v {
        Value::Null => return false,
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    };
    let scalar = !matches!(f.ty, Ty::Message(_));
    !(zero && scalar) || KEEP_ZERO.contains(&f.name.as_str())
}

/// The value of a map entry that has no value field (Go writes it that way for a zero value).
fn empty(ty: Ty) -> Value {
    match ty {
        Ty::String | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::Int32 | Ty::Int64 => Value::from(0),
        Ty::Message(_) => Value::Object(Map::new()),
    }
}

fn utf8(b: &[u8]) -> Result<String, CodecError> {
    String::from_utf8(b.to_vec()).map_err(|_| CodecError::Malformed("string is not UTF-8"))
}

fn scalar(ty: Ty, v: u64) -> Value {
    match ty {
        Ty::Bool => Value::Bool(v != 0),
        Ty::Int32 => Value::from(v as i64 as i32),
        _ => Value::from(v as i64),
    }
}

fn decode_one(
    schema: &Schema,
    f: &Field,
    wire: Wire<'_>,
    depth: usize,
) -> Result<Value, CodecError> {
    match (f.ty, wire) {
        (Ty::String, Wire::Bytes(b)) => Ok(Value::String(utf8(b)?)),
        (Ty::Bytes, Wire::Bytes(b)) => Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(b),
        )),
        (Ty::Bool | Ty::Int32 | Ty::Int64, Wire::Varint(v)) => Ok(scalar(f.ty, v)),
        (Ty::Message(child), Wire::Bytes(b)) => decode_depth(schema, child, b, depth + 1),
        _ => Err(CodecError::Malformed("wire type does not match the field")),
    }
}

fn decode_special(special: Special, bytes: &[u8], depth: usize) -> Result<Value, CodecError> {
    let mut r = Reader::new(bytes);
    let (mut n1, mut n2, mut s3, mut b1) = (0u64, 0u64, String::new(), None::<&[u8]>);
    let mut items = Vec::new();
    while let Some((n, w)) = r.next_field()? {
        match (n, w) {
            (1, Wire::Varint(v)) => n1 = v,
            (1, Wire::Bytes(b)) => {
                b1 = Some(b);
                if special == Special::Items {
                    items.push(Value::String(utf8(b)?));
                }
            }
            (2, Wire::Varint(v)) => n2 = v,
            (3, Wire::Bytes(b)) => s3 = utf8(b)?,
            _ => {}
        }
    }
    Ok(match special {
        Special::Time | Special::MicroTime => {
            let (secs, nanos) = (n1 as i64, n2 as i64 as i32);
            if secs == 0 && nanos == 0 {
                Value::Null
            } else {
                let micros = special == Special::MicroTime;
                Value::String(time::format_rfc3339(secs, nanos.max(0) as u32, micros))
            }
        }
        Special::Duration => Value::String(time::format_duration(n1 as i64)),
        Special::IntOrString => {
            if n1 == 1 {
                Value::String(s3)
            } else {
                Value::Number(Number::from(n2 as i64 as i32))
            }
        }
        Special::Quantity => match b1 {
            Some(b) if !b.is_empty() => Value::String(utf8(b)?),
            _ => Value::Null,
        },
        Special::RawJson => match b1 {
            None | Some([]) => Value::Null,
            Some(b) if b.starts_with(super::MAGIC) => {
                if depth > MAX_DEPTH {
                    return Err(CodecError::Malformed("nested too deeply"));
                }
                super::decode_envelope_at(b, depth + 1)
                    .map_err(|_| CodecError::Malformed("embedded object"))?
            }
            Some(b) => serde_json::from_slice(b)
                .map_err(|_| CodecError::Malformed("raw extension is not JSON"))?,
        },
        Special::Items => Value::Array(items),
        Special::None => Value::Null,
    })
}

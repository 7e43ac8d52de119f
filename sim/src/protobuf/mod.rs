//! Protobuf on the wire (`application/vnd.kubernetes.protobuf`) for the built-in kinds: a codec at the edge between the store's JSON and the bytes clients send and accept.
//!
//! The format is upstream's `k8s.io/apimachinery/pkg/runtime/serializer/protobuf`: the magic
//! `k8s\0`, then a `runtime.Unknown` {1: typeMeta {1: apiVersion, 2: kind}, 2: raw (the
//! object's own message), 3: contentEncoding, 4: contentType}. A watch in protobuf
//! (`…;stream=watch`) is frames of a 4-byte big-endian length and a bare `metav1.WatchEvent`
//! {1: type, 2: object {1: raw = the object's envelope}} (upstream's raw serializer and
//! length-delimited framer). The messages come from the vendored upstream `generated.proto`
//! files (`sim/proto/`, read by [`schema`]); [`codec`] walks them to convert JSON values, with
//! the JSON forms Kubernetes gives its special types. Kinds without a message (custom
//! resources) stay JSON, as upstream serves them.

mod codec;
mod schema;
mod time;

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{header, HeaderValue, Response};
use serde_json::Value;

use crate::body::{BodyError, SimBody};
use crate::encoded::Obj;
use crate::error::SimError;
use crate::resource::ResourceInfo;
use codec::{begin_len, end_len, put_bytes, put_key, put_varint, CodecError, Reader, Wire as W};
use schema::Schema;

/// What precedes every protobuf-encoded object.
pub(crate) const MAGIC: &[u8] = b"k8s\0";
/// The protobuf media type.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a protobuf watch stream.
const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The body format a response is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Wire {
    #[default]
    Json,
    Protobuf,
}

impl Wire {
    /// Pure: the format an `Accept` header prefers, as the apiserver's negotiation reads it:
    /// media ranges by descending `q` (ties in order), the first one served wins; JSON when
    /// none is, or when the header is absent. A range with `as=` (Table, PartialObjectMetadata)
    /// is JSON here: the sim writes those as JSON only.
    pub fn negotiate(accept: &str) -> Wire {
        let mut ranges: Vec<(f32, usize, &str, bool)> = Vec::new();
        for (i, range) in accept.split(',').enumerate() {
            let mut parts = range.split(';');
            let base = parts.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            let mut as_other = false;
            for p in parts {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                match k.trim() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "as" => as_other = true,
                    _ => {}
                }
            }
            if q > 0.0 && !base.is_empty() {
                ranges.push((q, i, base, as_other));
            }
        }
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, base, as_other) in ranges {
            if base.eq_ignore_ascii_case(MEDIA_TYPE) && !as_other {
                return Wire::Protobuf;
            }
            if ["application/json", "*/*", "application/*"]
                .iter()
                .any(|t| base.eq_ignore_ascii_case(t))
            {
                return Wire::Json;
            }
        }
        Wire::Json
    }

    /// A response with `v` (an object or a list, its `apiVersion`/`kind` naming its message;
    /// `info`'s when absent): protobuf when negotiated and the kind has a message, else JSON.
    /// An object that does not fit its message (one stored through the Rust API, which does
    /// not validate) goes out as JSON, which every client that asks for protobuf also accepts.
    pub fn object(self, code: u16, info: &ResourceInfo, v: &Value) -> Response<SimBody> {
        if self == Wire::Protobuf {
            match encode_object(info, v) {
                Ok(Some(bytes)) => return response(code, bytes, MEDIA_TYPE),
                Ok(None) => {}
                Err(e) => tracing::warn!(kind = info.kind, "sent as JSON: {e}"),
            }
        }
        crate::handler::json_response(code, v)
    }

    /// Whether a watch of `info` streams protobuf frames.
    pub fn watch_in_protobuf(self, info: &ResourceInfo) -> bool {
        self == Wire::Protobuf && has_message(info)
    }
}

fn response(code: u16, body: Vec<u8>, content_type: &'static str) -> Response<SimBody> {
    let mut resp = crate::handler::bytes_response(code, body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A response with an encoded body: protobuf if it starts with the magic (no JSON document
/// does), else JSON.
pub(crate) fn body_response(code: u16, body: Vec<u8>) -> Response<SimBody> {
    if body.starts_with(MAGIC) {
        response(code, body, MEDIA_TYPE)
    } else {
        crate::handler::bytes_response(code, body)
    }
}

/// Whether the kind of `info` has a protobuf message (built-ins do; custom resources not).
fn has_message(info: &ResourceInfo) -> bool {
    Schema::get()
        .for_kind(&info.api_version(), &info.kind)
        .is_some()
}

/// Decode a create/update body by its `Content-Type`: JSON (also when none is given) or, for
/// kinds with a message, protobuf. Returns the object and its JSON bytes (for the field checks
/// that read the bytes). Another type is 415; a malformed body 400, as the apiserver's
/// `transformDecodeError` words it.
pub(crate) fn decode_body(
    info: &ResourceInfo,
    content_type: &str,
    bytes: Bytes,
) -> Result<(Value, Bytes), SimError> {
    decode_typed((&info.api_version(), &info.kind), content_type, bytes)
}

/// [`decode_body`] for an object of this API version and kind (a subresource's: `Scale`).
pub(crate) fn decode_typed(
    (api_version, kind): (&str, &str),
    content_type: &str,
    bytes: Bytes,
) -> Result<(Value, Bytes), SimError> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    let has_message = Schema::get().for_kind(api_version, kind).is_some();
    if base.eq_ignore_ascii_case(MEDIA_TYPE) && has_message {
        let version = api_version.rsplit('/').next().unwrap_or(api_version);
        let cannot = |detail: String| {
            SimError::BadRequest(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: {detail}"
            ))
        };
        let v = decode_envelope(&bytes).map_err(|e| cannot(e.to_string()))?;
        let (got_version, got_kind) = (v["apiVersion"].as_str(), v["kind"].as_str());
        if got_version != Some(api_version) || got_kind != Some(kind) {
            return Err(SimError::BadRequest(format!(
                "the API version in the data ({}) does not match the expected API version ({api_version}) or kind {} does not match {kind}",
                got_version.unwrap_or(""),
                got_kind.unwrap_or(""),
            )));
        }
        let json = serde_json::to_vec(&v).map_err(|e| SimError::Internal(e.to_string()))?;
        return Ok((v, Bytes::from(json)));
    }
    if base.is_empty() || base.eq_ignore_ascii_case("application/json") || base == "*/*" {
        let v = serde_json::from_slice(&bytes)
            .map_err(|e| SimError::BadRequest(format!("error decoding request body: {e}")))?;
        return Ok((v, bytes));
    }
    let accepted = if has_message {
        format!("application/json, {MEDIA_TYPE}")
    } else {
        "application/json".to_string()
    };
    Err(SimError::UnsupportedMediaType(format!(
        "the body of the request was in an unknown format - accepted media types include: {accepted} (got \"{content_type}\")"
    )))
}

/// Errors of an envelope.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NoMagic,
    #[error("object has no kind or apiVersion in its typeMeta")]
    NoKind,
    #[error("no protobuf message for {0}")]
    UnknownKind(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Pure: the JSON object of an envelope (`k8s\0` + `runtime.Unknown`), with its `apiVersion` and `kind`.
pub(crate) fn decode_envelope(bytes: &[u8]) -> Result<Value, EnvelopeError> {
    decode_envelope_at(bytes, 0)
}

/// [`decode_envelope`] for an envelope nested `depth` deep (in a `RawExtension`).
pub(crate) fn decode_envelope_at(bytes: &[u8], depth: usize) -> Result<Value, EnvelopeError> {
    let body = bytes.strip_prefix(MAGIC).ok_or(EnvelopeError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader::new(body);
    let utf8 = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::Malformed("string is not UTF-8"))
    };
    while let Some((n, w)) = r.next_field()? {
        match (n, w) {
            (1, W::Bytes(tm)) => {
                let mut tr = Reader::new(tm);
                while let Some((tn, tw)) = tr.next_field()? {
                    match (tn, tw) {
                        (1, W::Bytes(b)) => api_version = utf8(b)?,
                        (2, W::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, W::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err(EnvelopeError::NoKind);
    }
    let schema = Schema::get();
    let msg = schema
        .for_kind(&api_version, &kind)
        .ok_or_else(|| EnvelopeError::UnknownKind(format!("{api_version}, Kind={kind}")))?;
    let mut v = codec::decode(schema, msg, raw, depth)?;
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), Value::String(api_version));
        m.insert("kind".into(), Value::String(kind));
    }
    Ok(v)
}

/// The envelope of `v`; `None` when its kind has no message.
fn encode_object(info: &ResourceInfo, v: &Value) -> Result<Option<Vec<u8>>, CodecError> {
    let api_version = v
        .get("apiVersion")
        .and_then(Value::as_str)
        .map_or_else(|| info.api_version(), str::to_string);
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or(&info.kind);
    let schema = Schema::get();
    let Some(msg) = schema.for_kind(&api_version, kind) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(MAGIC);
    type_meta(&mut out, &api_version, kind);
    let start = begin_len(&mut out, 2);
    codec::encode(schema, msg, v, &mut out, "")?;
    end_len(&mut out, start);
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(Some(out))
}

fn type_meta(out: &mut Vec<u8>, api_version: &str, kind: &str) {
    let start = begin_len(out, 1);
    put_bytes(out, 1, api_version.as_bytes());
    put_bytes(out, 2, kind.as_bytes());
    end_len(out, start);
}

fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// A `<Kind>List` envelope of stored objects, each item's message encoded once and kept with
/// the object (the watch cache's `cachingObject` idea). `None` when the kind has no message or
/// an object does not fit it (the list then goes out as JSON, as [`Wire::object`] does).
pub(crate) fn list(info: &ResourceInfo, metadata: &Value, items: &[Arc<Obj>]) -> Option<Vec<u8>> {
    match list_inner(info, metadata, items) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(kind = info.kind, "list sent as JSON: {e}");
            None
        }
    }
}

fn list_inner(
    info: &ResourceInfo,
    metadata: &Value,
    items: &[Arc<Obj>],
) -> Result<Option<Vec<u8>>, CodecError> {
    let schema = Schema::get();
    let api_version = info.api_version();
    let list_kind = info.list_kind();
    let (Some(list_msg), Some(item_msg)) = (
        schema.for_kind(&api_version, &list_kind),
        schema.for_kind(&api_version, &info.kind),
    ) else {
        return Ok(None);
    };
    let m = &schema.messages[list_msg];
    let field = |name: &str| m.fields.iter().find(|f| f.name == name).map(|f| f.number);
    let (Some(meta_no), Some(items_no)) = (field("metadata"), field("items")) else {
        return Ok(None);
    };
    let meta_msg = match m.fields.iter().find(|f| f.number == meta_no).map(|f| f.ty) {
        Some(schema::Ty::Message(i)) => i,
        _ => return Ok(None),
    };
    let mut meta = Vec::new();
    codec::encode(schema, meta_msg, metadata, &mut meta, "metadata")?;
    let mut encoded = Vec::with_capacity(items.len());
    for o in items {
        let bytes = o.protobuf(|v| {
            let mut b = Vec::with_capacity(o.json().len() / 2);
            codec::encode(schema, item_msg, v, &mut b, "").map(|()| Bytes::from(b))
        })?;
        encoded.push(bytes);
    }
    let field_len =
        |n: u32, len: usize| varint_len(u64::from(n) << 3) + varint_len(len as u64) + len;
    let raw_len = field_len(meta_no, meta.len())
        + encoded
            .iter()
            .map(|b| field_len(items_no, b.len()))
            .sum::<usize>();
    let mut out = Vec::with_capacity(raw_len + 64);
    out.extend_from_slice(MAGIC);
    type_meta(&mut out, &api_version, &list_kind);
    put_key(&mut out, 2, 2);
    put_varint(&mut out, raw_len as u64);
    put_bytes(&mut out, meta_no, &meta);
    for b in &encoded {
        put_bytes(&mut out, items_no, b);
    }
    put_bytes(&mut out, 3, b"");
    put_bytes(&mut out, 4, b"");
    Ok(Some(out))
}

/// One watch frame: the 4-byte big-endian length, then the `WatchEvent` of a JSON watch line.
/// A line that is not a watch event (an injected malformed one) is sent as it is, framed.
fn watch_frame(info: &ResourceInfo, line: &[u8]) -> Vec<u8> {
    let mut event = Vec::with_capacity(line.len());
    let parsed: Option<Value> = serde_json::from_slice(line).ok();
    let encoded = parsed.as_ref().and_then(|ev| {
        let ty = ev.get("type")?.as_str()?;
        let obj = ev.get("object")?;
        let raw = encode_object(info, obj).ok()??;
        put_bytes(&mut event, 1, ty.as_bytes());
        let start = begin_len(&mut event, 2);
        put_bytes(&mut event, 1, &raw);
        end_len(&mut event, start);
        Some(())
    });
    if encoded.is_none() {
        event.clear();
        event.extend_from_slice(line);
    }
    let mut frame = Vec::with_capacity(event.len() + 4);
    frame.extend_from_slice(&(event.len() as u32).to_be_bytes());
    frame.extend_from_slice(&event);
    frame
}

/// A JSON watch stream (newline-terminated events) re-encoded as protobuf frames, chunk for chunk.
pub(crate) fn watch_stream<S>(
    info: std::sync::Arc<ResourceInfo>,
    s: S,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send
where
    S: Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
{
    let mut pending: Vec<u8> = Vec::new();
    s.filter_map(move |chunk| {
        let framed = chunk.map(|chunk| {
            pending.extend_from_slice(&chunk);
            let mut out = Vec::new();
            let mut start = 0;
            while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
                let line = &pending[start..start + nl];
                if !line.is_empty() {
                    out.extend_from_slice(&watch_frame(&info, line));
                }
                start += nl + 1;
            }
            pending.drain(..start);
            out
        });
        futures::future::ready(match framed {
            Ok(out) if out.is_empty() => None,
            Ok(out) => Some(Ok(Bytes::from(out))),
            Err(e) => Some(Err(e)),
        })
    })
}

/// The headers of a protobuf watch response.
pub(crate) fn watch_content_type() -> HeaderValue {
    HeaderValue::from_static(WATCH_MEDIA_TYPE)
}

#[cfg(test)]
mod tests;

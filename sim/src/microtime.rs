//! `metav1.MicroTime` fields checked and re-serialized as kube-apiserver decodes them (exactly six fraction digits, written back in UTC).
//!
//! Upstream (`staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/micro_time.go`) parses a
//! MicroTime with Go's `time.Parse(RFC3339Micro, s)`, layout
//! `2006-01-02T15:04:05.000000Z07:00`: a fixed `.000000` demands exactly six digits, so
//! `2024-01-01T00:00:00Z` (client-go's `metav1.Time` format) or `…00.123Z` fail to decode — the
//! request is a 400 `BadRequest` "… cannot be handled as a Lease: parsing time …" — and a value
//! with an offset is stored as `UTC().Format(RFC3339Micro)`.

use serde_json::Value;

use crate::error::SimError;
use crate::resource::ResourceInfo;

const LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// The MicroTime fields of a kind, as JSON pointers.
fn fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Lease" => &["/spec/acquireTime", "/spec/renewTime"],
        "Event" | "events.k8s.io/Event" => &["/eventTime", "/series/lastObservedTime"],
        _ => &[],
    }
}

/// Check every MicroTime field of `obj` and rewrite it in the form the server stores.
pub fn normalize(info: &ResourceInfo, obj: &mut Value) -> Result<(), SimError> {
    for ptr in fields(info.builtin_kind()) {
        let Some(v) = obj.pointer_mut(ptr) else {
            continue;
        };
        match v {
            Value::Null => {}
            Value::String(s) => {
                let stored = parse(s).map_err(|why| {
                    SimError::BadRequest(format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: parsing time \"{s}\" as \"{LAYOUT}\": {why}",
                        kind = info.kind,
                        version = info.version,
                    ))
                })?;
                *s = stored;
            }
            other => {
                return Err(SimError::BadRequest(format!(
                    "{kind} in version \"{version}\" cannot be handled as a {kind}: json: cannot unmarshal {t} into Go struct field {field} of type v1.MicroTime",
                    kind = info.kind,
                    version = info.version,
                    t = json_type(other),
                    field = ptr.trim_start_matches('/').replace('/', "."),
                )));
            }
        }
    }
    Ok(())
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::String(_) | Value::Null => "string",
    }
}

/// `s` as stored (UTC, six digits), or why Go's parser refuses it.
fn parse(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    // `2006-01-02T15:04:05` — 19 bytes of digits and separators.
    let shape = |i: usize, c: u8| match c {
        b'-' | b'T' | b':' => b.get(i) == Some(&c),
        _ => b.get(i).is_some_and(u8::is_ascii_digit),
    };
    if !LAYOUT.as_bytes()[..19]
        .iter()
        .enumerate()
        .all(|(i, c)| shape(i, *c))
    {
        return Err(format!("cannot parse \"{s}\" as \"2006\""));
    }
    let rest = &s[19..];
    let frac_ok = rest.len() >= 7
        && rest.as_bytes()[0] == b'.'
        && rest.as_bytes()[1..7].iter().all(u8::is_ascii_digit);
    if !frac_ok {
        return Err(format!("cannot parse \"{rest}\" as \".000000\""));
    }
    let zone = &rest[7..];
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':'
            && [1, 2, 4, 5]
                .iter()
                .all(|&i| zone.as_bytes()[i].is_ascii_digit()));
    if !zone_ok {
        return Err(format!("cannot parse \"{zone}\" as \"Z07:00\""));
    }
    let ts: k8s_openapi::jiff::Timestamp = s
        .parse()
        .map_err(|e| format!("parsing time \"{s}\": {e}"))?;
    let micros = ts.subsec_microsecond();
    Ok(format!("{}.{micros:06}Z", ts.strftime("%Y-%m-%dT%H:%M:%S")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn six_fraction_digits_are_required_and_offsets_become_utc() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                "2026-01-02T03:04:05.123456Z",
                Ok("2026-01-02T03:04:05.123456Z"),
            ),
            (
                "2026-01-02T03:04:05.000000+02:00",
                Ok("2026-01-02T01:04:05.000000Z"),
            ),
            (
                "2026-01-02T03:04:05Z",
                Err("cannot parse \"Z\" as \".000000\""),
            ),
            (
                "2026-01-02T03:04:05.123Z",
                Err("cannot parse \".123Z\" as \".000000\""),
            ),
            (
                "2026-01-02T03:04:05.1234567Z",
                Err("cannot parse \"7Z\" as \"Z07:00\""),
            ),
            ("yesterday", Err("cannot parse \"yesterday\" as \"2006\"")),
        ];
        for (input, want) in cases {
            let got = parse(input);
            match want {
                Ok(w) => assert_eq!(got.as_deref(), Ok(*w), "{input}"),
                Err(w) => assert_eq!(got.unwrap_err(), *w, "{input}"),
            }
        }
    }

    #[test]
    fn a_lease_renew_time_without_microseconds_is_a_bad_request() {
        let leases = crate::resource::by_plural("leases").unwrap();
        let mut ok =
            json!({"spec": {"renewTime": "2026-01-02T03:04:05.5-01:00", "holderIdentity": "a"}});
        let err = normalize(leases, &mut ok).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(
            err.to_string().contains("Lease in version \"v1\" cannot be handled as a Lease: parsing time \"2026-01-02T03:04:05.5-01:00\""),
            "{err}"
        );
        let mut ok =
            json!({"spec": {"renewTime": "2026-01-02T03:04:05.500000-01:00", "acquireTime": null}});
        normalize(leases, &mut ok).unwrap();
        assert_eq!(ok["spec"]["renewTime"], "2026-01-02T04:04:05.500000Z");
        let mut bad = json!({"spec": {"acquireTime": 5}});
        assert_eq!(normalize(leases, &mut bad).unwrap_err().code(), 400);
    }
}

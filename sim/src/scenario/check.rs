//! Pure checks of scenario steps before any is applied: decoding with the failing field named, and the values the apiserver would refuse.
//!
//! | problem | `reason` | `field` |
//! |---|---|---|
//! | body not JSON, or neither an object nor a list | (400 BadRequest) | — |
//! | more than [`MAX_STEPS`] steps | `FieldValueTooMany` | `steps` |
//! | a list item that is not an object | `FieldValueInvalid` | `steps[i]` |
//! | unknown `op` | `FieldValueNotSupported` | `steps[i].op` |
//! | a required field missing | `FieldValueRequired` | `steps[i].<field>` |
//! | an unknown field | `FieldValueForbidden` | `steps[i].<field>` |
//! | a value of the wrong type or shape | `FieldValueInvalid` | `steps[i].<field>` (top-level field it is in) |
//! | a bad namespace, name, label, annotation key, Secret key, IP or phase | `FieldValueInvalid` | `steps[i].<field>` |
//! | a flood: unknown resource, rate not in (0, 100,000], burst over 100,000, duration over a day, neither rate nor burst | `FieldValueInvalid` / `FieldValueRequired` | `steps[i].<field>` |
//! | a fault plan `validate` refuses | `FieldValueInvalid` | `steps[i].plan` |
//! | a non-zero `at` in the `{"at", "step"}` form (`/_sim/steps` only) | `FieldValueForbidden` | `steps[i].at` |
//!
//! What a step meets only against the cluster's state (an object that exists already or not at
//! all, an IP taken, a running flood id) is checked by `rehearse.rs`, not here.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map as JsonMap, Value};

use super::{Map, Step, TimedStep};
use crate::error::{FieldCause, SimError};
use crate::flood::FloodSpec;
use crate::validation::{dns1123_label, dns1123_subdomain, label_key, label_value};

/// The most steps one `/_sim/steps` request may carry.
pub const MAX_STEPS: usize = 10_000;
/// The largest flood burst a step may ask for (a burst is emitted before the step returns).
pub const MAX_FLOOD_BURST: u64 = 100_000;
/// The highest flood rate a step may ask for, events per second.
pub const MAX_FLOOD_RATE: f64 = 100_000.0;
/// At most this many causes are reported; the rest are counted in the last one.
const MAX_CAUSES: usize = 100;

const PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Unknown"];

/// The 422 `Invalid` for these causes.
pub(crate) fn invalid(mut causes: Vec<FieldCause>) -> SimError {
    if causes.len() > MAX_CAUSES {
        let more = causes.len() - (MAX_CAUSES - 1);
        causes.truncate(MAX_CAUSES - 1);
        causes.push(FieldCause {
            reason: "FieldValueInvalid",
            field: "steps".into(),
            message: format!("and {more} more problems"),
        });
    }
    SimError::InvalidFields {
        kind: "Scenario".into(),
        name: "steps".into(),
        causes,
    }
}

/// Parse a `/_sim/steps` body: one step or a list of them, each `{"op": …}` or the scenario
/// file's `{"at": "0s", "step": {"op": …}}`. Every step is decoded and checked before the answer:
/// either all of them, or a 422 naming each bad step's index and field (400 if not JSON).
pub(crate) fn parse_steps(body: &[u8]) -> Result<Vec<Step>, SimError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| SimError::BadRequest(format!("the steps are not JSON: {e}")))?;
    let items = match v {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(SimError::BadRequest(
                "the body must be one step object or a JSON list of them".into(),
            ))
        }
    };
    if items.len() > MAX_STEPS {
        return Err(invalid(vec![FieldCause {
            reason: "FieldValueTooMany",
            field: "steps".into(),
            message: format!(
                "Too many: {}: must have at most {MAX_STEPS} items",
                items.len()
            ),
        }]));
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut causes = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("steps[{i}]");
        match decode_item(item) {
            Ok((step, prefix)) => {
                causes.extend(under(&format!("{at}{prefix}"), check(&step)));
                steps.push(step);
            }
            Err(c) => causes.extend(under(&at, c)),
        }
    }
    if causes.is_empty() {
        Ok(steps)
    } else {
        Err(invalid(causes))
    }
}

/// The causes of a scenario file's steps (fields `steps[i].step.<field>`).
pub(crate) fn check_timed(steps: &[TimedStep]) -> Vec<FieldCause> {
    steps
        .iter()
        .enumerate()
        .flat_map(|(i, ts)| under(&format!("steps[{i}].step"), check(&ts.step)))
        .collect()
}

fn under(prefix: &str, causes: Vec<FieldCause>) -> Vec<FieldCause> {
    causes
        .into_iter()
        .map(|c| FieldCause {
            field: match c.field.as_str() {
                "" => prefix.to_string(),
                f => format!("{prefix}.{f}"),
            },
            ..c
        })
        .collect()
}

fn cause(reason: &'static str, field: &str, message: impl Into<String>) -> FieldCause {
    FieldCause {
        reason,
        field: field.to_string(),
        message: message.into(),
    }
}

/// A `Duration` in humantime form (`"1s"`).
#[derive(Deserialize)]
struct At(#[serde(with = "humantime_serde")] Duration);

/// Decode one list item; the prefix is where the step's own fields are (`""` or `".step"`).
fn decode_item(item: &Value) -> Result<(Step, &'static str), Vec<FieldCause>> {
    let Some(obj) = item.as_object() else {
        return Err(vec![cause(
            "FieldValueInvalid",
            "",
            r#"must be a step object, {"op": …}"#,
        )]);
    };
    if obj.contains_key("op") || !obj.contains_key("step") {
        return decode_step(obj).map(|s| (s, "")).map_err(|c| vec![c]);
    }
    // The scenario file's timed form.
    let mut causes: Vec<FieldCause> = obj
        .keys()
        .filter(|k| *k != "at" && *k != "step")
        .map(|k| cause("FieldValueForbidden", k, format!("unknown field `{k}`")))
        .collect();
    if let Some(at) = obj.get("at") {
        match serde_json::from_value::<At>(at.clone()) {
            Ok(At(d)) if d.is_zero() => {}
            Ok(At(d)) => causes.push(cause(
                "FieldValueForbidden",
                "at",
                format!("{d:?}: /_sim/steps applies every step at once; post a step when it is due, or run it from a scenario file"),
            )),
            Err(e) => causes.push(cause("FieldValueInvalid", "at", e.to_string())),
        }
    }
    let step = match obj.get("step").and_then(Value::as_object) {
        Some(inner) => decode_step(inner).map_err(|c| causes.extend(under("step", vec![c]))),
        None => {
            causes.push(cause("FieldValueInvalid", "step", "must be an object"));
            Err(())
        }
    };
    match step {
        Ok(step) if causes.is_empty() => Ok((step, ".step")),
        _ => Err(causes),
    }
}

fn quoted_after<'a>(msg: &'a str, lead: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(lead)?;
    rest.split('`').next()
}

/// Decode a `{"op": …}` object, naming the top-level field a failure is in.
fn decode_step(obj: &JsonMap<String, Value>) -> Result<Step, FieldCause> {
    let err = match serde_json::from_value::<Step>(Value::Object(obj.clone())) {
        Ok(step) => return Ok(step),
        Err(e) => e.to_string(),
    };
    let op = obj.get("op").map(|op| match op {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if op.is_some_and(|op| err.starts_with(&format!("unknown variant `{op}`"))) {
        return Err(cause("FieldValueNotSupported", "op", err));
    }
    // Serde names a missing or unknown field of the step itself; nested ones it names too,
    // but without the path, so those are found below like any bad value.
    if let Some(f) = quoted_after(&err, "missing field `").filter(|f| !obj.contains_key(*f)) {
        return Err(cause("FieldValueRequired", f, err.clone()));
    }
    if let Some(f) = quoted_after(&err, "unknown field `").filter(|f| obj.contains_key(*f)) {
        return Err(cause("FieldValueForbidden", f, err.clone()));
    }
    // A bad value fails as the field is read, before any check for missing fields: the field
    // that fails the same way on its own is the one.
    let field = obj
        .iter()
        .filter(|(k, _)| *k != "op")
        .find(|(k, v)| {
            let mut alone = JsonMap::new();
            alone.insert("op".into(), obj["op"].clone());
            alone.insert((*k).clone(), (*v).clone());
            serde_json::from_value::<Step>(Value::Object(alone))
                .is_err_and(|e| e.to_string() == err)
        })
        .map(|(k, _)| k.as_str())
        .unwrap_or("");
    Err(cause("FieldValueInvalid", field, err))
}

/// Collects the causes of one step.
#[derive(Default)]
struct Causes(Vec<FieldCause>);

impl Causes {
    fn each(&mut self, field: &str, value: &str, errs: Vec<String>) {
        let shown: String = value.chars().take(100).collect();
        let quoted = serde_json::to_string(&shown).unwrap_or_default();
        for e in errs {
            self.0.push(cause(
                "FieldValueInvalid",
                field,
                format!("Invalid value: {quoted}: {e}"),
            ));
        }
    }
    fn namespace(&mut self, ns: &str) {
        self.each("namespace", ns, dns1123_label(ns));
    }
    fn label_name(&mut self, field: &str, name: &str) {
        self.each(field, name, dns1123_label(name));
    }
    fn subdomain(&mut self, field: &str, name: &str) {
        self.each(field, name, dns1123_subdomain(name));
    }
    fn labels(&mut self, field: &str, labels: &Map) {
        for (k, v) in labels {
            self.each(field, k, label_key(k));
            self.each(field, v, label_value(v));
        }
    }
    fn keys<'a>(&mut self, field: &str, keys: impl IntoIterator<Item = &'a String>) {
        for k in keys {
            self.each(field, k, label_key(k));
        }
    }
    fn ip(&mut self, field: &str, ip: &str) {
        if ip.parse::<Ipv4Addr>().is_err() {
            self.each(field, ip, vec!["must be a valid IPv4 address".into()]);
        }
    }
    fn phase(&mut self, phase: &str) {
        if !PHASES.contains(&phase) {
            let e = format!("must be one of {}", PHASES.join(", "));
            self.each("phase", phase, vec![e]);
        }
    }
    fn secret_keys(&mut self, data: &Map) {
        for k in data.keys() {
            let ok = !k.is_empty()
                && k.len() <= 253
                && k != "."
                && k != ".."
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !ok {
                let e = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (at most 253, not '.' or '..')";
                self.each("string_data", k, vec![e.into()]);
            }
        }
    }
    fn flood(&mut self, spec: &FloodSpec) {
        if let Some(id) = &spec.id {
            self.label_name("id", id);
        }
        if let Some(ns) = &spec.namespace {
            self.namespace(ns);
        }
        let r = spec.resource.as_str();
        let known = crate::resource::built_ins().iter().any(|i| i.answers_to(r));
        if !known {
            self.each("resource", r, vec!["not a resource the sim serves".into()]);
        }
        match spec.rate_per_second {
            Some(rate) if !(rate > 0.0 && rate <= MAX_FLOOD_RATE) => self.0.push(cause(
                "FieldValueInvalid",
                "rate_per_second",
                format!("Invalid value: {rate}: must be more than 0 and at most {MAX_FLOOD_RATE}"),
            )),
            None if spec.burst.is_none() => self.0.push(cause(
                "FieldValueRequired",
                "rate_per_second",
                "Required value: a flood needs rate_per_second or burst",
            )),
            _ => {}
        }
        if let Some(n) = spec.burst.filter(|n| *n > MAX_FLOOD_BURST) {
            self.0.push(cause(
                "FieldValueInvalid",
                "burst",
                format!("Invalid value: {n}: must be at most {MAX_FLOOD_BURST}"),
            ));
        }
        let max = crate::limits::MAX_FAULT_DURATION;
        if let Some(d) = spec.duration.filter(|d| *d > max) {
            self.0.push(cause(
                "FieldValueInvalid",
                "duration",
                format!("Invalid value: {d:?}: must be at most {max:?}"),
            ));
        }
    }
}

/// The values in a decoded step that the apiserver (or the sim's own bounds) would refuse.
pub(crate) fn check(step: &Step) -> Vec<FieldCause> {
    let mut c = Causes::default();
    match step {
        Step::CreateNamespace { name } => c.label_name("name", name),
        Step::CreatePod {
            namespace,
            name,
            labels,
            phase,
            ip,
            ..
        } => {
            c.namespace(namespace);
            c.subdomain("name", name);
            c.labels("labels", labels);
            c.phase(phase);
            if let Some(ip) = ip {
                c.ip("ip", ip);
            }
        }
        Step::DeletePod {
            namespace,
            name,
            grace_seconds,
        } => {
            c.namespace(namespace);
            c.subdomain("name", name);
            if grace_seconds.is_some_and(|g| g > 86_400) {
                c.0.push(cause(
                    "FieldValueInvalid",
                    "grace_seconds",
                    "must be at most 86400 (one day)",
                ));
            }
        }
        Step::SetPodReady {
            namespace, name, ..
        }
        | Step::SetPodTerminating { namespace, name } => {
            c.namespace(namespace);
            c.subdomain("name", name);
        }
        Step::RelabelPod {
            namespace,
            name,
            labels,
        } => {
            c.namespace(namespace);
            c.subdomain("name", name);
            c.labels("labels", labels);
        }
        Step::SetPodPhase {
            namespace,
            name,
            phase,
        } => {
            c.namespace(namespace);
            c.subdomain("name", name);
            c.phase(phase);
        }
        Step::SetPodIp {
            namespace,
            name,
            ip,
        } => {
            c.namespace(namespace);
            c.subdomain("name", name);
            if let Some(ip) = ip {
                c.ip("ip", ip);
            }
        }
        Step::RecycleIp {
            namespace,
            from,
            to,
            labels,
        } => {
            c.namespace(namespace);
            c.subdomain("from", from);
            c.subdomain("to", to);
            c.labels("labels", labels);
        }
        Step::CreateService {
            namespace,
            name,
            selector,
            annotations,
        } => {
            c.namespace(namespace);
            c.label_name("name", name);
            c.labels("selector", selector);
            c.keys("annotations", annotations.keys());
        }
        Step::DeleteService { namespace, name } => {
            c.namespace(namespace);
            c.label_name("name", name);
        }
        Step::AnnotateService {
            namespace,
            name,
            annotations,
        } => {
            c.namespace(namespace);
            c.label_name("name", name);
            c.keys("annotations", annotations.keys());
        }
        Step::CreateSecret {
            namespace,
            name,
            string_data,
        } => {
            c.namespace(namespace);
            c.subdomain("name", name);
            c.secret_keys(string_data);
        }
        Step::DeleteSecret { namespace, name } => {
            c.namespace(namespace);
            c.subdomain("name", name);
        }
        Step::SetFaults { plan } => {
            if let Err(e) = plan.validate() {
                c.0.push(cause("FieldValueInvalid", "plan", e));
            }
        }
        Step::Flood(spec) => c.flood(spec),
        Step::StopFlood { id: Some(id) } => c.label_name("id", id),
        Step::StopFlood { id: None } | Step::Compact => {}
    }
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (body, expected `(field, reason)` of every cause), in the style of core's validate tests.
    const REFUSED: &[(&str, &[(&str, &str)])] = &[
        (
            r#"{"op": "explode"}"#,
            &[("steps[0].op", "FieldValueNotSupported")],
        ),
        (r#"{"name": "x"}"#, &[("steps[0].op", "FieldValueRequired")]),
        (r#"[1]"#, &[("steps[0]", "FieldValueInvalid")]),
        (
            r#"{"op": "create_pod", "namespace": "a"}"#,
            &[("steps[0].name", "FieldValueRequired")],
        ),
        (
            r#"{"op": "create_pod", "namespace": "a", "name": "p", "nmae": "q"}"#,
            &[("steps[0].nmae", "FieldValueForbidden")],
        ),
        (
            r#"{"op": "create_pod", "namespace": "a", "name": 3}"#,
            &[("steps[0].name", "FieldValueInvalid")],
        ),
        (
            r#"{"op": "create_pod", "namespace": "a", "name": "p", "labels": {"app": 1}}"#,
            &[("steps[0].labels", "FieldValueInvalid")],
        ),
        (
            r#"{"op": "create_pod", "namespace": "A", "name": "p..q"}"#,
            &[
                ("steps[0].namespace", "FieldValueInvalid"),
                ("steps[0].name", "FieldValueInvalid"),
            ],
        ),
        (
            r#"{"op": "create_pod", "namespace": "a", "name": "p", "labels": {"-bad": "ok"}, "ip": "10.0.0.300", "phase": "Dancing"}"#,
            &[
                ("steps[0].labels", "FieldValueInvalid"),
                ("steps[0].phase", "FieldValueInvalid"),
                ("steps[0].ip", "FieldValueInvalid"),
            ],
        ),
        (
            r#"{"op": "create_service", "namespace": "a", "name": "db.x", "selector": {"app": "-"}}"#,
            &[
                ("steps[0].name", "FieldValueInvalid"),
                ("steps[0].selector", "FieldValueInvalid"),
            ],
        ),
        (
            r#"{"op": "create_secret", "namespace": "a", "name": "s", "string_data": {"a/b": "x"}}"#,
            &[("steps[0].string_data", "FieldValueInvalid")],
        ),
        (
            r#"{"op": "set_faults", "plan": {"rules": [{"fault": {"kind": "nope"}}]}}"#,
            &[("steps[0].plan", "FieldValueInvalid")],
        ),
        (
            r#"{"op": "set_faults", "plan": {"rules": [{"fault": {"kind": "http_error", "code": 200}}]}}"#,
            &[("steps[0].plan", "FieldValueInvalid")],
        ),
        (
            r#"{"op": "flood"}"#,
            &[("steps[0].rate_per_second", "FieldValueRequired")],
        ),
        (
            r#"{"op": "flood", "rate_per_second": 0, "burst": 1000000, "duration": "2days", "resource": "widgets", "id": "Big"}"#,
            &[
                ("steps[0].id", "FieldValueInvalid"),
                ("steps[0].resource", "FieldValueInvalid"),
                ("steps[0].rate_per_second", "FieldValueInvalid"),
                ("steps[0].burst", "FieldValueInvalid"),
                ("steps[0].duration", "FieldValueInvalid"),
            ],
        ),
        (
            r#"{"op": "flood", "burst": 1, "speed": 3}"#,
            &[("steps[0].speed", "FieldValueForbidden")],
        ),
        (
            r#"{"op": "stop_flood", "id": "a_b"}"#,
            &[("steps[0].id", "FieldValueInvalid")],
        ),
        (
            r#"{"at": "1s", "step": {"op": "compact"}}"#,
            &[("steps[0].at", "FieldValueForbidden")],
        ),
        (
            r#"{"at": "0s", "when": 1, "step": {"op": "delete_pod", "namespace": "a"}}"#,
            &[
                ("steps[0].when", "FieldValueForbidden"),
                ("steps[0].step.name", "FieldValueRequired"),
            ],
        ),
        (
            r#"[{"op": "compact"}, {"op": "create_namespace", "name": "ok"}, {"op": "delete_secret", "namespace": "a", "name": "S"}]"#,
            &[("steps[2].name", "FieldValueInvalid")],
        ),
    ];

    #[test]
    fn refused_steps_name_their_index_field_and_reason() {
        for (body, want) in REFUSED {
            let err = parse_steps(body.as_bytes()).expect_err(body);
            assert_eq!(err.code(), 422, "{body}: {err}");
            let SimError::InvalidFields { causes, .. } = &err else {
                panic!("{body}: {err:?}")
            };
            let got: Vec<(&str, &str)> = causes
                .iter()
                .map(|c| (c.field.as_str(), c.reason))
                .collect();
            assert_eq!(got, *want, "{body}: {err}");
        }
    }

    #[test]
    fn accepted_forms_one_step_a_list_and_the_timed_form() {
        let one = parse_steps(br#"{"op": "create_pod", "namespace": "a", "name": "p"}"#).unwrap();
        assert_eq!(one, [Step::create_pod("a", "p")]);
        let list = parse_steps(
            br#"[{"op": "compact"}, {"at": "0s", "step": {"op": "stop_flood", "id": "f"}}, {"step": {"op": "flood", "burst": 2}}]"#,
        )
        .unwrap();
        assert_eq!(
            list,
            [
                Step::Compact,
                Step::stop_flood(Some("f")),
                Step::flood(FloodSpec {
                    resource: "pods".into(),
                    burst: Some(2),
                    ..FloodSpec::default()
                })
            ]
        );
        assert_eq!(parse_steps(b"[]").unwrap(), []);
    }

    #[test]
    fn not_json_or_not_steps_is_400_and_too_many_is_422() {
        assert_eq!(parse_steps(b"{").unwrap_err().code(), 400);
        assert_eq!(parse_steps(b"\"compact\"").unwrap_err().code(), 400);
        let many = format!("[{}]", vec![r#"{"op":"compact"}"#; MAX_STEPS + 1].join(","));
        let err = parse_steps(many.as_bytes()).unwrap_err();
        let SimError::InvalidFields { causes, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            (causes[0].field.as_str(), causes[0].reason),
            ("steps", "FieldValueTooMany")
        );
        let limit = format!("[{}]", vec![r#"{"op":"compact"}"#; MAX_STEPS].join(","));
        assert_eq!(parse_steps(limit.as_bytes()).unwrap().len(), MAX_STEPS);
    }

    #[test]
    fn causes_are_capped() {
        let bad = format!(
            "[{}]",
            vec![r#"{"op":"create_namespace","name":"A"}"#; 500].join(",")
        );
        let SimError::InvalidFields { causes, .. } = parse_steps(bad.as_bytes()).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(causes.len(), MAX_CAUSES);
        assert!(
            causes[MAX_CAUSES - 1].message.contains("401 more"),
            "{causes:?}"
        );
    }
}

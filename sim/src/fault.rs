//! Fault plans (seeded, JSON-serializable rules matched by resource, verb and namespace) and their per-request decisions.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::limits;

/// A seeded set of fault rules. `FaultPlan::default()` injects nothing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// Also apply this plan to watches already open when it is set: each open watch re-checks
    /// the rules at once (as if it had just been requested) and, e.g., gets its in-stream 410,
    /// its close, its stall or its chaos now. Without it a plan applies to new requests only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub apply_to_open_watches: bool,
}

impl FaultPlan {
    /// An empty plan with a seed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rules: Vec::new(),
            apply_to_open_watches: false,
        }
    }

    /// No rules: injects nothing.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Apply this plan to already-open watches too (see [`FaultPlan::apply_to_open_watches`]).
    pub fn to_open_watches(mut self) -> Self {
        self.apply_to_open_watches = true;
        self
    }

    /// Add a rule.
    pub fn rule(mut self, rule: FaultRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Parse and [validate](FaultPlan::validate) a plan from JSON text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let plan: Self = serde_json::from_str(text)?;
        plan.validate()
            .map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(plan)
    }

    /// Check every value is one the server can act on: probabilities and fractions in [0, 1],
    /// error codes 400–599, durations at most [`limits::MAX_FAULT_DURATION`], at most
    /// [`limits::MAX_FAULT_RULES`] rules. The message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if self.rules.len() > limits::MAX_FAULT_RULES {
            return Err(format!(
                "rules: Too many: {}: must have at most {} items",
                self.rules.len(),
                limits::MAX_FAULT_RULES
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            rule.fault.validate().map_err(|(field, msg)| {
                format!("rules[{i}].fault.{field}: Invalid value: {msg}")
            })?;
        }
        Ok(())
    }
}

fn check_p(field: &'static str, p: f64) -> Result<(), (&'static str, String)> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err((field, format!("{p}: must be between 0 and 1")))
    }
}

fn check_duration(field: &'static str, d: Duration) -> Result<(), (&'static str, String)> {
    if d <= limits::MAX_FAULT_DURATION {
        Ok(())
    } else {
        Err((
            field,
            format!("{d:?}: must be at most {:?}", limits::MAX_FAULT_DURATION),
        ))
    }
}

/// One rule: a fault applied to requests matching every given filter (absent = any).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Resource plural (`pods`, `leases`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Apply at most this many times (absent = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    pub fault: Fault,
}

impl FaultRule {
    /// A rule matching every request.
    pub fn new(fault: Fault) -> Self {
        Self {
            resource: None,
            verb: None,
            namespace: None,
            times: None,
            fault,
        }
    }
    /// Only this resource.
    pub fn resource(mut self, r: &str) -> Self {
        self.resource = Some(r.into());
        self
    }
    /// Only this verb.
    pub fn verb(mut self, v: &str) -> Self {
        self.verb = Some(v.into());
        self
    }
    /// Only this namespace.
    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.into());
        self
    }
    /// At most `n` times.
    pub fn times(mut self, n: u64) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, resource: &str, verb: &str, namespace: Option<&str>) -> bool {
        self.resource.as_deref().is_none_or(|r| r == resource)
            && self.verb.as_deref().is_none_or(|v| v == verb)
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| Some(n) == namespace)
    }
}

/// When an armed watch is closed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CloseWhen {
    /// Right after the initial events (replayed history or synthetic ADDED); immediately if there are none.
    AfterInitialEvents,
    /// After `n` events have been sent.
    AfterEvents { n: u64 },
    /// After a duration (tokio time).
    AfterDuration {
        #[serde(with = "humantime_serde")]
        after: Duration,
    },
    /// With probability `p` after each sent event.
    Probability { p: f64 },
}

/// How a watch is closed.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CloseMode {
    /// End the chunked response normally (the client sees end-of-stream).
    #[default]
    Clean,
    /// Abort the response mid-stream (over TCP, the connection is dropped without the final chunk).
    Reset,
}

/// One kind of misbehaviour.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Close matching watches.
    CloseWatch {
        when: CloseWhen,
        #[serde(default)]
        mode: CloseMode,
    },
    /// 410 Expired: an in-stream ERROR event on watch, HTTP 410 on a list with `continue`.
    Expire,
    /// An HTTP error (429, 500 or 503) on a fraction of matching requests; 429 carries `Retry-After`.
    /// `body` says who answers: by default a 429 reads as kube-apiserver's priority-and-fairness
    /// rejection (plain text), anything else as a JSON `Status`.
    HttpError {
        code: u16,
        #[serde(default = "one")]
        fraction: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_seconds: Option<u64>,
        #[serde(default, skip_serializing_if = "ErrorBody::is_auto")]
        body: ErrorBody,
    },
    /// Delay before answering (tokio time).
    Latency {
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Accept the request, then go silent: with `headers`, a 200 and no body bytes; without, nothing at all.
    /// `duration` bounds the silence, after which the connection is dropped; absent = silent forever.
    Stall {
        #[serde(default)]
        headers: bool,
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        duration: Option<Duration>,
    },
    /// CHAOS (beyond what a real apiserver does): re-deliver an already-sent watch event with probability `p`.
    Duplicate { p: f64 },
    /// CHAOS (beyond what a real apiserver does): emit a non-JSON watch line with probability `p` per event.
    MalformedLine { p: f64 },
}

fn one() -> f64 {
    1.0
}

/// Who writes an injected error's body.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorBody {
    /// `text` for a 429 (what a real API server's throttling sends), `status` otherwise.
    #[default]
    Auto,
    /// A JSON `metav1.Status`, as the registry, a webhook or an aggregated API server answers.
    Status,
    /// Plain text, as kube-apiserver's priority-and-fairness and max-in-flight filters write it
    /// (`staging/src/k8s.io/apiserver/pkg/server/filters/maxinflight.go` `tooManyRequests`:
    /// `http.Error`, `Retry-After`, no Status), with the flow-schema headers on a 429.
    Text,
}

impl ErrorBody {
    fn is_auto(&self) -> bool {
        *self == ErrorBody::Auto
    }

    /// `Auto` resolved for `code`.
    pub fn for_code(self, code: u16) -> ErrorBody {
        match self {
            ErrorBody::Auto if code == 429 => ErrorBody::Text,
            ErrorBody::Auto => ErrorBody::Status,
            other => other,
        }
    }
}

/// An HTTP error a request gets instead of its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedError {
    pub code: u16,
    /// `Retry-After` seconds, if the rule set one (a 429 always sends one, 1 by default).
    pub retry_after_seconds: Option<u64>,
    /// Never `Auto`.
    pub body: ErrorBody,
}

impl Fault {
    /// `Err((field, message))` for a value the server cannot act on (see [`FaultPlan::validate`]).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        match self {
            Fault::CloseWatch { when, .. } => match when {
                CloseWhen::AfterDuration { after } => check_duration("when.after", *after),
                CloseWhen::Probability { p } => check_p("when.p", *p),
                CloseWhen::AfterInitialEvents | CloseWhen::AfterEvents { .. } => Ok(()),
            },
            Fault::Expire => Ok(()),
            Fault::HttpError {
                code,
                fraction,
                retry_after_seconds,
                ..
            } => {
                if !(400..=599).contains(code) {
                    return Err((
                        "code",
                        format!("{code}: must be an HTTP error code (400-599)"),
                    ));
                }
                check_p("fraction", *fraction)?;
                match retry_after_seconds {
                    Some(s) if *s > limits::MAX_FAULT_DURATION.as_secs() => Err((
                        "retry_after_seconds",
                        format!(
                            "{s}: must be at most {}",
                            limits::MAX_FAULT_DURATION.as_secs()
                        ),
                    )),
                    _ => Ok(()),
                }
            }
            Fault::Latency { delay } => check_duration("delay", *delay),
            Fault::Stall { duration, .. } => {
                duration.map_or(Ok(()), |d| check_duration("duration", d))
            }
            Fault::Duplicate { p } | Fault::MalformedLine { p } => check_p("p", *p),
        }
    }

    /// The key this fault is counted under in [`crate::Stats::faults`].
    pub fn kind_name(&self) -> String {
        match self {
            Fault::CloseWatch {
                mode: CloseMode::Clean,
                ..
            } => "close_watch".into(),
            Fault::CloseWatch {
                mode: CloseMode::Reset,
                ..
            } => "close_watch_reset".into(),
            Fault::Expire => "expire".into(),
            Fault::HttpError { code, .. } => format!("http_{code}"),
            Fault::Latency { .. } => "latency".into(),
            Fault::Stall { .. } => "stall".into(),
            Fault::Duplicate { .. } => "duplicate".into(),
            Fault::MalformedLine { .. } => "malformed_line".into(),
        }
    }
}

/// Faults armed on one watch; fired inside the watch stream.
#[derive(Clone, Debug, Default)]
pub struct WatchFaults {
    pub close: Option<(CloseWhen, CloseMode)>,
    pub duplicate_p: Option<f64>,
    pub malformed_p: Option<f64>,
    /// Seed for this watch's own RNG (drawn from the plan's RNG, so runs are reproducible).
    pub seed: u64,
}

/// What to do to one request.
#[derive(Clone, Debug, Default)]
pub struct Decision {
    pub latency: Duration,
    pub http_error: Option<InjectedError>,
    pub stall: Option<(bool, Option<Duration>)>,
    pub expire: bool,
    pub watch: WatchFaults,
    /// Fault kinds that fired now (to be counted).
    pub fired: Vec<String>,
}

/// A plan plus its RNG and per-rule application counts.
#[derive(Debug)]
pub struct FaultState {
    plan: FaultPlan,
    rng: ChaCha8Rng,
    applied: Vec<u64>,
}

impl FaultState {
    /// Arm a plan (its RNG restarts from the plan's seed).
    pub fn new(plan: FaultPlan) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(plan.seed);
        let applied = vec![0; plan.rules.len()];
        Self { plan, rng, applied }
    }

    /// The armed plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Decide the faults for one request. `has_continue` says whether a list carries a continue token.
    pub fn decide(
        &mut self,
        resource: &str,
        verb: &str,
        namespace: Option<&str>,
        has_continue: bool,
    ) -> Decision {
        let mut d = Decision::default();
        let is_watch = verb == "watch";
        if is_watch {
            d.watch.seed = self.rng.random();
        }
        for (i, rule) in self.plan.rules.iter().enumerate() {
            if !rule.matches(resource, verb, namespace) {
                continue;
            }
            if rule.times.is_some_and(|t| self.applied[i] >= t) {
                continue;
            }
            let applies = match &rule.fault {
                Fault::HttpError {
                    code,
                    fraction,
                    retry_after_seconds,
                    body,
                } if d.http_error.is_none() && self.rng.random::<f64>() < *fraction => {
                    d.http_error = Some(InjectedError {
                        code: *code,
                        retry_after_seconds: *retry_after_seconds,
                        body: body.for_code(*code),
                    });
                    d.fired.push(rule.fault.kind_name());
                    true
                }
                Fault::Latency { delay } => {
                    d.latency = d
                        .latency
                        .saturating_add(limits::clamp(*delay, limits::MAX_FAULT_DURATION))
                        .min(limits::MAX_FAULT_DURATION);
                    d.fired.push(rule.fault.kind_name());
                    true
                }
                Fault::Stall { headers, duration } if d.stall.is_none() => {
                    d.stall = Some((
                        *headers,
                        duration.map(|t| limits::clamp(t, limits::MAX_FAULT_DURATION)),
                    ));
                    d.fired.push(rule.fault.kind_name());
                    true
                }
                Fault::Expire if is_watch || (verb == "list" && has_continue) => {
                    d.expire = true;
                    d.fired.push(rule.fault.kind_name());
                    true
                }
                Fault::CloseWatch { when, mode } if is_watch && d.watch.close.is_none() => {
                    let when = match when {
                        CloseWhen::AfterDuration { after } => CloseWhen::AfterDuration {
                            after: limits::clamp(*after, limits::MAX_FAULT_DURATION),
                        },
                        other => other.clone(),
                    };
                    d.watch.close = Some((when, *mode));
                    true
                }
                Fault::Duplicate { p } if is_watch => {
                    d.watch.duplicate_p = Some(*p);
                    true
                }
                Fault::MalformedLine { p } if is_watch => {
                    d.watch.malformed_p = Some(*p);
                    true
                }
                _ => false,
            };
            if applies {
                self.applied[i] += 1;
            }
        }
        d
    }
}

/// The armed plan, shared by the request handler and every open watch. Setting a plan bumps a
/// generation that open watches wait on (no polling); a plan with `apply_to_open_watches` is
/// then re-decided by each of them ([`FaultCell::decide_open`]).
#[derive(Debug)]
pub(crate) struct FaultCell {
    state: Mutex<FaultState>,
    generation: tokio::sync::watch::Sender<u64>,
}

impl FaultCell {
    pub(crate) fn new(plan: FaultPlan) -> Self {
        Self {
            state: Mutex::new(FaultState::new(plan)),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arm a plan (its RNG restarts from its seed) and tell open watches.
    pub(crate) fn set(&self, plan: FaultPlan) {
        *self.state() = FaultState::new(plan);
        self.generation.send_modify(|g| *g += 1);
    }

    pub(crate) fn plan(&self) -> FaultPlan {
        self.state().plan().clone()
    }

    /// See [`FaultState::decide`].
    pub(crate) fn decide(
        &self,
        resource: &str,
        verb: &str,
        namespace: Option<&str>,
        has_continue: bool,
    ) -> Decision {
        self.state().decide(resource, verb, namespace, has_continue)
    }

    /// Plan changes from now on (for one open watch).
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// After a plan change, the decision for a watch that is already open on `resource`
    /// (`None`: the plan leaves open watches alone).
    pub(crate) fn decide_open(&self, resource: &str, namespace: Option<&str>) -> Option<Decision> {
        let mut st = self.state();
        st.plan
            .apply_to_open_watches
            .then(|| st.decide(resource, "watch", namespace, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_json_roundtrip_and_matching() {
        let text = r#"{"seed":7,"rules":[
            {"resource":"pods","verb":"watch","fault":{"kind":"close_watch","when":{"type":"after_events","n":3},"mode":"reset"}},
            {"verb":"list","times":1,"fault":{"kind":"http_error","code":429,"retry_after_seconds":1}},
            {"fault":{"kind":"latency","delay":"50ms"}}]}"#;
        let plan = FaultPlan::from_json(text).unwrap();
        assert_eq!(
            serde_json::from_value::<FaultPlan>(serde_json::to_value(&plan).unwrap()).unwrap(),
            plan
        );
        let mut st = FaultState::new(plan);
        let w = st.decide("pods", "watch", Some("d"), false);
        assert!(matches!(
            w.watch.close,
            Some((CloseWhen::AfterEvents { n: 3 }, CloseMode::Reset))
        ));
        assert_eq!(w.latency, Duration::from_millis(50));
        assert_eq!(
            st.decide("pods", "list", None, false).http_error,
            Some(InjectedError {
                code: 429,
                retry_after_seconds: Some(1),
                body: ErrorBody::Text
            })
        );
        assert_eq!(st.decide("pods", "list", None, false).http_error, None);
        assert!(FaultPlan::from_json(r#"{"rules":[{"fault":{"kind":"nope"}}]}"#).is_err());
    }

    #[test]
    fn plans_with_values_the_server_cannot_act_on_are_refused_naming_the_field() {
        let bad = |fault: &str, field: &str| {
            let text = format!(
                r#"{{"rules":[{{"fault":{{"kind":"latency","delay":"1s"}}}},{{"fault":{fault}}}]}}"#
            );
            let plan: FaultPlan = serde_json::from_str(&text).unwrap();
            let msg = plan.validate().unwrap_err();
            assert!(
                msg.starts_with(&format!("rules[1].fault.{field}:")),
                "{msg}"
            );
            assert!(FaultPlan::from_json(&text).is_err());
        };
        bad(r#"{"kind":"duplicate","p":7.5}"#, "p");
        bad(r#"{"kind":"malformed_line","p":-0.1}"#, "p");
        bad(r#"{"kind":"http_error","code":299}"#, "code");
        bad(
            r#"{"kind":"http_error","code":500,"fraction":-0.5}"#,
            "fraction",
        );
        bad(
            r#"{"kind":"http_error","code":429,"retry_after_seconds":18446744073709551615}"#,
            "retry_after_seconds",
        );
        bad(r#"{"kind":"latency","delay":"500000000000years"}"#, "delay");
        bad(
            r#"{"kind":"stall","duration":"500000000000years"}"#,
            "duration",
        );
        bad(
            r#"{"kind":"close_watch","when":{"type":"after_duration","after":"500000000000years"}}"#,
            "when.after",
        );
        bad(
            r#"{"kind":"close_watch","when":{"type":"probability","p":2}}"#,
            "when.p",
        );
        let ok = r#"{"rules":[{"fault":{"kind":"http_error","code":503,"fraction":0}},{"fault":{"kind":"duplicate","p":1}}]}"#;
        assert!(FaultPlan::from_json(ok).is_ok());
    }

    #[test]
    fn decisions_clamp_durations_of_unvalidated_plans() {
        let huge = Duration::from_secs(u64::MAX);
        let plan = FaultPlan::new(1)
            .rule(FaultRule::new(Fault::Latency { delay: huge }))
            .rule(FaultRule::new(Fault::Latency { delay: huge }))
            .rule(FaultRule::new(Fault::Stall {
                headers: false,
                duration: Some(huge),
            }));
        let d = FaultState::new(plan).decide("pods", "get", None, false);
        assert_eq!(d.latency, limits::MAX_FAULT_DURATION);
        assert_eq!(d.stall, Some((false, Some(limits::MAX_FAULT_DURATION))));
    }
}

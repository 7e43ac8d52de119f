//! Kubernetes Events on Services with bad annotations or refused grants: deduplicated, rate-limited, posted off the hot path.
//!
//! Only Events are rate-limited. [`ProblemFilter::admit`] answers two questions: log (and count)
//! this problem — once per (service, reason) per dedup window, never limited by the token
//! bucket — and post an Event for it — deduplicated the same way and limited by the bucket; an
//! Event dropped by the bucket is offered again at the next reconcile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::desired::ServiceProblem;
use crate::metrics::Metrics;
use crate::model::ObjectRef;

/// How often the same problem may be reported, and how many reports overall.
#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    /// Post Events at all (log lines are always written).
    pub enabled: bool,
    /// The same (service, reason) is reported at most once per this window.
    pub dedup_window: Duration,
    /// Token bucket: at most `burst` Events at once, refilled at `per_minute`.
    pub burst: u32,
    pub per_minute: u32,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dedup_window: Duration::from_secs(600),
            burst: 25,
            per_minute: 60,
        }
    }
}

/// What to do with a problem now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Write the log line and count it: a new (service, reason) in this window.
    pub log: bool,
    /// Post an Event.
    pub event: bool,
}

/// Pure admission: dedup by (service, reason) within a window, plus a token bucket for Events
/// only. Time is an input.
#[derive(Debug)]
pub struct ProblemFilter {
    config: EventConfig,
    last: HashMap<(ObjectRef, String), Instant>,
    logged: HashMap<(ObjectRef, String), Instant>,
    tokens: f64,
    refilled: Option<Instant>,
}

impl ProblemFilter {
    pub fn new(config: EventConfig) -> Self {
        let tokens = config.burst as f64;
        Self {
            config,
            last: HashMap::new(),
            logged: HashMap::new(),
            tokens,
            refilled: None,
        }
    }

    /// Whether to log and whether to post an Event for `problem` now (and remember it).
    pub fn admit(&mut self, problem: &ServiceProblem, now: Instant) -> Admission {
        let key = (problem.service.clone(), problem.reason.clone());
        let window = self.config.dedup_window;
        let log = match self.logged.get(&key) {
            Some(at) if now.saturating_duration_since(*at) < window => false,
            _ => {
                if self.logged.len() > 10_000 {
                    self.logged
                        .retain(|_, at| now.saturating_duration_since(*at) < window);
                }
                self.logged.insert(key.clone(), now);
                true
            }
        };
        let event = self.admit_event(key, now);
        Admission { log, event }
    }

    /// Dedup within the window plus the token bucket.
    fn admit_event(&mut self, key: (ObjectRef, String), now: Instant) -> bool {
        if let Some(at) = self.last.get(&key) {
            if now.saturating_duration_since(*at) < self.config.dedup_window {
                return false;
            }
        }
        if let Some(prev) = self.refilled {
            let secs = now.saturating_duration_since(prev).as_secs_f64();
            self.tokens = (self.tokens + secs * self.config.per_minute as f64 / 60.0)
                .min(self.config.burst as f64);
        }
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        // Bound memory: forget entries whose window has passed.
        if self.last.len() > 10_000 {
            let window = self.config.dedup_window;
            self.last
                .retain(|_, at| now.saturating_duration_since(*at) < window);
        }
        self.last.insert(key, now);
        true
    }
}

/// A problem to report, with the Service's uid (for `involvedObject`).
#[derive(Debug, Clone)]
pub struct Report {
    pub problem: ServiceProblem,
    pub uid: String,
}

/// Sends reports to a background poster; never blocks the engine (drops when the queue is full).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Report>,
}

impl Recorder {
    /// Starts the poster task on the current runtime; it ends when every `Recorder` is dropped.
    pub fn spawn(client: kube::Client, identity: String, metrics: Arc<Metrics>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Report>(256);
        tokio::spawn(async move {
            let mut serial: u64 = 0;
            while let Some(report) = rx.recv().await {
                serial += 1;
                let api: Api<Event> =
                    Api::namespaced(client.clone(), &report.problem.service.namespace);
                let ev = event_for(&report, &identity, serial);
                match api.create(&PostParams::default(), &ev).await {
                    Ok(_) => metrics.k8s_event(true),
                    Err(e) => {
                        metrics.k8s_event(false);
                        tracing::warn!(service = %report.problem.service, error = %e, "could not post Event");
                    }
                }
            }
        });
        Self { tx }
    }

    /// Queues a report; `false` if the queue is full.
    pub fn record(&self, report: Report) -> bool {
        self.tx.try_send(report).is_ok()
    }
}

/// The Event reason: `GrantRefused` for tenancy and foreign-account refusals,
/// `InvalidGrantAnnotations` for broken Services.
pub fn event_reason(problem: &ServiceProblem) -> &'static str {
    if problem.kind.is_refusal() {
        "GrantRefused"
    } else {
        "InvalidGrantAnnotations"
    }
}

/// The Event object for a report.
pub fn event_for(report: &Report, identity: &str, serial: u64) -> Event {
    let now = k8s_openapi::jiff::Timestamp::now();
    let svc = &report.problem.service;
    Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}.podgrant.{:x}{:04x}",
                svc.name,
                now.as_nanosecond() as u64,
                serial & 0xffff
            )),
            namespace: Some(svc.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some(svc.name.clone()),
            namespace: Some(svc.namespace.clone()),
            uid: (!report.uid.is_empty()).then(|| report.uid.clone()),
            ..Default::default()
        },
        reason: Some(event_reason(&report.problem).into()),
        message: Some(report.problem.reason.clone()),
        type_: Some("Warning".into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some("podgrant".into()),
            host: None,
        }),
        reporting_component: Some("podgrant".into()),
        reporting_instance: Some(identity.to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::ProblemKind;

    fn p(svc: &str, reason: &str) -> ServiceProblem {
        ServiceProblem {
            service: ObjectRef::new("ns", svc),
            reason: reason.into(),
            kind: ProblemKind::Invalid,
        }
    }

    fn ev(f: &mut ProblemFilter, p: &ServiceProblem, at: Instant) -> bool {
        f.admit(p, at).event
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_suppressed_within_the_window_and_bursts_are_capped() {
        let mut f = ProblemFilter::new(EventConfig {
            enabled: true,
            dedup_window: Duration::from_secs(60),
            burst: 3,
            per_minute: 6,
        });
        let t0 = Instant::now();
        assert!(ev(&mut f, &p("a", "bad user"), t0));
        assert!(!ev(
            &mut f,
            &p("a", "bad user"),
            t0 + Duration::from_secs(59)
        ));
        assert!(
            ev(&mut f, &p("a", "bad database"), t0),
            "another reason is another problem"
        );
        assert!(ev(&mut f, &p("b", "bad user"), t0));
        assert!(!ev(&mut f, &p("c", "bad user"), t0), "bucket empty");
        // 10 s later one token is back (6 per minute).
        assert!(ev(
            &mut f,
            &p("c", "bad user"),
            t0 + Duration::from_secs(10)
        ));
        assert!(!ev(
            &mut f,
            &p("d", "bad user"),
            t0 + Duration::from_secs(10)
        ));
        // After the window the first problem may be reported again.
        assert!(ev(
            &mut f,
            &p("a", "bad user"),
            t0 + Duration::from_secs(70)
        ));
    }

    #[test]
    fn event_names_the_service_and_the_reason() {
        let r = Report {
            problem: p("web", "annotation podgrant.io/mysql-user: bad"),
            uid: "u-1".into(),
        };
        let ev = event_for(&r, "replica-0", 1);
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Service"));
        assert_eq!(ev.involved_object.name.as_deref(), Some("web"));
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u-1"));
        assert_eq!(ev.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(ev.type_.as_deref(), Some("Warning"));
        assert!(ev.message.unwrap().contains("mysql-user"));
        assert!(ev.metadata.name.unwrap().starts_with("web.podgrant."));
        assert_eq!(ev.reason.as_deref(), Some("InvalidGrantAnnotations"));
        let refused = Report {
            problem: ServiceProblem {
                kind: ProblemKind::Namespace,
                ..r.problem.clone()
            },
            uid: String::new(),
        };
        assert_eq!(
            event_for(&refused, "replica-0", 2).reason.as_deref(),
            Some("GrantRefused")
        );
    }

    /// Regression (issue 9 item 6): 37 bad Services at once got 26 log lines, because the log
    /// line shared the Event token bucket. Every new problem is logged; only Events are limited.
    #[tokio::test(start_paused = true)]
    async fn every_new_problem_is_logged_even_when_the_event_bucket_is_empty() {
        let mut f = ProblemFilter::new(EventConfig::default());
        let t0 = Instant::now();
        let bad: Vec<_> = (0..37).map(|i| p(&format!("s{i}"), "refused")).collect();
        let first: Vec<_> = bad.iter().map(|b| f.admit(b, t0)).collect();
        assert_eq!(first.iter().filter(|a| a.log).count(), 37);
        assert_eq!(first.iter().filter(|a| a.event).count(), 25, "burst");
        // The next reconcile, a little later: no second log line; dropped Events get another go.
        let t1 = t0 + Duration::from_secs(2);
        let again: Vec<_> = bad.iter().map(|b| f.admit(b, t1)).collect();
        assert_eq!(again.iter().filter(|a| a.log).count(), 0);
        assert_eq!(again.iter().filter(|a| a.event).count(), 2, "60/min refill");
    }
}

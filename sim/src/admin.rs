//! The admin endpoint outside `/api`: `GET|PUT /_sim/faults`, `GET /_sim/stats`, `POST /_sim/compact`, `GET /_sim/sizes`, `POST /_sim/steps`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response};
use serde_json::{json, Value};

use crate::body::SimBody;
use crate::error::SimError;
use crate::fault::FaultPlan;
use crate::handler::{error_response, json_response, read_body};
use crate::scenario::{self, Step};
use crate::sim::{lock, Inner, Sim};

/// Handle an admin request (never counted, never faulted).
pub(crate) async fn handle<B>(
    inner: &Arc<Inner>,
    method: &Method,
    path: &str,
    body: B,
) -> Response<SimBody>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/_sim/faults") => json_response(200, &json!(inner.faults.plan())),
        ("PUT", "/_sim/faults") | ("POST", "/_sim/faults") => {
            let bytes = match read_body(body, inner.config.max_body).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            };
            match serde_json::from_slice::<FaultPlan>(&bytes) {
                // A plan with a value the server cannot act on is refused whole; the armed plan stays.
                Ok(plan) if plan.validate().is_err() => {
                    let msg = plan.validate().err().unwrap_or_default();
                    error_response(&SimError::BadRequest(format!("invalid fault plan: {msg}")))
                }
                Ok(plan) => {
                    let doc = json!(plan);
                    inner.faults.set(plan);
                    json_response(200, &doc)
                }
                Err(e) => error_response(&SimError::BadRequest(format!("invalid fault plan: {e}"))),
            }
        }
        ("GET", "/_sim/stats") => json_response(200, &json!(*lock(&inner.stats))),
        ("DELETE", "/_sim/stats") => {
            *lock(&inner.stats) = Default::default();
            json_response(200, &json!({}))
        }
        ("GET", "/_sim/sizes") => json_response(200, &json!(lock(&inner.store).sizes())),
        ("POST", "/_sim/compact") => {
            lock(&inner.store).compact();
            lock(&inner.stats).count_fault("compact");
            json_response(200, &json!({"compacted": true}))
        }
        ("POST", "/_sim/steps") => {
            let steps = match read_body(body, inner.config.max_body).await {
                Ok(b) => scenario::parse_steps(&b),
                Err(e) => Err(e),
            };
            match steps {
                Ok(steps) => apply_steps(
                    &Sim {
                        inner: inner.clone(),
                    },
                    &steps,
                ),
                Err(e) => error_response(&e),
            }
        }
        (_, "/_sim/faults" | "/_sim/stats" | "/_sim/compact" | "/_sim/sizes" | "/_sim/steps") => {
            error_response(&SimError::MethodNotAllowed)
        }
        _ => error_response(&SimError::UnknownResource(path.to_string())),
    }
}

/// Apply checked steps in order with the scenario executor; answer with what they did, or with
/// the Status of the first step that failed against the cluster's state (the ones before it
/// stay applied: the message and `details.causes` say which).
fn apply_steps(sim: &Sim, steps: &[Step]) -> Response<SimBody> {
    let mut started = Vec::new();
    let mut stopped = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match scenario::run_step(sim, step) {
            Ok(done) => {
                started.extend(done.flood_started);
                stopped.extend(done.floods_stopped);
            }
            Err(e) => return json_response(e.code(), &step_failure(i, step, &e)),
        }
    }
    json_response(
        200,
        &json!({
            "kind": "StepsApplied",
            "applied": steps.len(),
            "resourceVersion": sim.resource_version().to_string(),
            "floodsStarted": started,
            "floodsStopped": stopped,
        }),
    )
}

/// The Status for step `i` failing when applied, steps `0..i` having been applied.
fn step_failure(i: usize, step: &Step, e: &SimError) -> Value {
    let op = serde_json::to_value(step)
        .ok()
        .and_then(|v| v.get("op").cloned())
        .unwrap_or_default();
    let op = op.as_str().unwrap_or_default();
    let mut status = e.to_status();
    status["message"] = json!(format!(
        "steps[{i}] ({op}): {e} (steps before it were applied: {i})"
    ));
    if !status.get("details").is_some_and(Value::is_object) {
        status["details"] = json!({});
    }
    status["details"]["causes"] =
        json!([{"reason": e.reason(), "field": format!("steps[{i}]"), "message": e.to_string()}]);
    status
}

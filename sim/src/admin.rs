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

/// Apply checked steps, all or nothing: the list is first rehearsed against the cluster's
/// state (`scenario::rehearse`), and the first step that would fail is answered with its
/// Status and nothing applied; then the steps run in order with the scenario executor. One
/// list at a time, so two lists cannot invalidate each other's rehearsal.
fn apply_steps(sim: &Sim, steps: &[Step]) -> Response<SimBody> {
    let _one_list = lock(&sim.inner.steps);
    if let Err((i, e)) = scenario::rehearse(sim, steps) {
        return json_response(e.code(), &step_failure(i, &steps[i], &e, Applied::Nothing));
    }
    let mut started = Vec::new();
    let mut stopped = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match scenario::run_step(sim, step) {
            Ok(done) => {
                started.extend(done.flood_started);
                stopped.extend(done.floods_stopped);
            }
            // Only when another client wrote the same objects since the rehearsal.
            Err(e) => {
                return json_response(e.code(), &step_failure(i, step, &e, Applied::Before(i)))
            }
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

/// What of a failed list was applied.
enum Applied {
    Nothing,
    /// Steps `0..i`: the cluster changed between the rehearsal and the apply.
    Before(usize),
}

/// The Status for step `i` failing.
fn step_failure(i: usize, step: &Step, e: &SimError, applied: Applied) -> Value {
    let op = serde_json::to_value(step)
        .ok()
        .and_then(|v| v.get("op").cloned())
        .unwrap_or_default();
    let op = op.as_str().unwrap_or_default();
    let mut status = e.to_status();
    let applied = match applied {
        Applied::Nothing => "nothing was applied".to_string(),
        Applied::Before(n) => format!(
            "the cluster changed after the steps were checked: the {n} before it were applied"
        ),
    };
    status["message"] = json!(format!("steps[{i}] ({op}): {e} ({applied})"));
    if !status.get("details").is_some_and(Value::is_object) {
        status["details"] = json!({});
    }
    status["details"]["causes"] =
        json!([{"reason": e.reason(), "field": format!("steps[{i}]"), "message": e.to_string()}]);
    status
}

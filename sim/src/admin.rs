//! The admin endpoint outside `/api`: `GET|PUT /_sim/faults`, `GET /_sim/stats`, `POST /_sim/compact`, `GET /_sim/sizes`.

use bytes::Bytes;
use http::{Method, Response};
use serde_json::json;

use crate::body::SimBody;
use crate::error::SimError;
use crate::fault::FaultPlan;
use crate::handler::{error_response, json_response, read_body};
use crate::sim::{lock, Inner};

/// Handle an admin request (never counted, never faulted).
pub(crate) async fn handle<B>(
    inner: &Inner,
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
        (_, "/_sim/faults" | "/_sim/stats" | "/_sim/compact" | "/_sim/sizes") => {
            error_response(&SimError::MethodNotAllowed)
        }
        _ => error_response(&SimError::UnknownResource(path.to_string())),
    }
}

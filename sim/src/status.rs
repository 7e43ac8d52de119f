//! Builders for `metav1.Status` objects.

use serde_json::{json, Value};

/// A `Status` with `status: Failure`.
pub fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

/// The in-stream 410 Expired status a real apiserver sends for a watch from a compacted resourceVersion.
pub fn expired(rv: u64, oldest: u64) -> Value {
    failure(
        410,
        "Expired",
        &format!("too old resource version: {rv} ({oldest})"),
    )
}

/// A `Status` for an HTTP error injected by the fault plan.
pub fn injected(code: u16) -> Value {
    let (reason, message) = match code {
        429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
        500 => ("InternalError", "an error on the server (\"injected by podgrant-sim\") has prevented the request from succeeding"),
        _ => ("InternalError", "injected error"),
    };
    failure(code, reason, message)
}

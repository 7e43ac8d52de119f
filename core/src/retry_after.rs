//! A tower layer that keeps the API server's `Retry-After` on 429/503, which kube's error path drops.
//!
//! kube-client turns an error response into `Error::Api(Status)` from the body alone, so the
//! `Retry-After` header the API server's priority-and-fairness filter (429) or a restarting
//! server (503) sends never reaches the caller. [`RetryAfterLayer`] sits under the client and
//! writes the header's value into the body's `Status.details.retryAfterSeconds` — where the
//! API conventions put it, and where a JSON Status from the server may already have it — so
//! [`crate::watch::SourceError`] carries it and the watch loops wait at least that long
//! (bounded by [`crate::watch::WatchConfig::max_retry_after`]). A plain-text body (the real
//! 429 is text) becomes a Status with the text as message. Error bodies read here are bounded.
//!
//! Use [`client`] (or add the layer to your own `ClientBuilder`).

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use serde_json::{json, Value};
use tower::{Layer, Service};

/// Error bodies longer than this are cut (a hostile or broken server can't make us buffer more).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// A plain-text message is kept up to this many bytes.
const MAX_MESSAGE: usize = 1024;

/// See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryAfterLayer;

impl<S> Layer<S> for RetryAfterLayer {
    type Service = RetryAfter<S>;
    fn layer(&self, inner: S) -> RetryAfter<S> {
        RetryAfter { inner }
    }
}

/// The service [`RetryAfterLayer`] makes.
#[derive(Debug, Clone)]
pub struct RetryAfter<S> {
    inner: S,
}

/// `Retry-After` in whole seconds, on a 429 or 503; `None` otherwise (an HTTP-date, which the
/// API server never sends, is ignored).
fn retry_after_secs<B>(res: &Response<B>) -> Option<u32> {
    let status = res.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let secs: u32 = res
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs > 0).then_some(secs)
}

/// Pure: the error body with `details.retryAfterSeconds = secs` (kept if the server set one).
pub fn with_retry_after(body: &[u8], status: StatusCode, secs: u32) -> Bytes {
    let mut v = match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) if v["kind"] == "Status" => v,
        _ => {
            let text = String::from_utf8_lossy(body);
            let mut message = text.trim().to_string();
            if message.len() > MAX_MESSAGE {
                let mut end = MAX_MESSAGE;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            let reason = if status == StatusCode::TOO_MANY_REQUESTS {
                "TooManyRequests"
            } else {
                "ServiceUnavailable"
            };
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": status.as_u16(),
            })
        }
    };
    let details = &mut v["details"];
    if !details.is_object() {
        *details = json!({});
    }
    if details["retryAfterSeconds"].as_u64().unwrap_or(0) == 0 {
        details["retryAfterSeconds"] = json!(secs);
    }
    Bytes::from(serde_json::to_vec(&v).expect("a JSON value serializes"))
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for RetryAfter<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Either<B, Full<Bytes>>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let call = self.inner.call(req);
        Box::pin(async move {
            let res = call.await?;
            let Some(secs) = retry_after_secs(&res) else {
                return Ok(res.map(Either::Left));
            };
            let (mut parts, body) = res.into_parts();
            // A body that fails or runs over the limit still carries the status and the delay.
            let bytes = Limited::new(body, MAX_ERROR_BODY)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let rewritten = with_retry_after(&bytes, parts.status, secs);
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("valid"),
            );
            Ok(Response::from_parts(
                parts,
                Either::Right(Full::new(rewritten)),
            ))
        })
    }
}

/// A kube `Client` over `service` (the API server, or the sim's in-process service) with
/// [`RetryAfterLayer`].
pub fn client<S, B>(service: S, default_namespace: &str) -> kube::Client
where
    S: Service<Request<kube::client::Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    kube::Client::new(RetryAfterLayer.layer(service), default_namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn a_json_status_gains_the_delay_and_keeps_everything_else() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"slow down","reason":"TooManyRequests","code":429}"#;
        let v = parsed(&with_retry_after(body, StatusCode::TOO_MANY_REQUESTS, 7));
        assert_eq!(v["details"]["retryAfterSeconds"], 7);
        assert_eq!(v["message"], "slow down");
        assert_eq!(v["code"], 429);
        // The server's own value wins.
        let body = br#"{"kind":"Status","code":429,"details":{"retryAfterSeconds":3,"name":"x"}}"#;
        let v = parsed(&with_retry_after(body, StatusCode::TOO_MANY_REQUESTS, 7));
        assert_eq!(v["details"]["retryAfterSeconds"], 3);
        assert_eq!(v["details"]["name"], "x");
    }

    #[test]
    fn a_plain_text_body_becomes_a_status_kube_can_parse() {
        let body = b"Too many requests, please try again later.\n";
        let out = with_retry_after(body, StatusCode::TOO_MANY_REQUESTS, 2);
        let status: kube::core::Status = serde_json::from_slice(&out).unwrap();
        assert_eq!(status.code, 429);
        assert_eq!(status.reason, "TooManyRequests");
        assert_eq!(status.message, "Too many requests, please try again later.");
        assert_eq!(status.details.unwrap().retry_after_seconds, 2);
        let long = "é".repeat(2000);
        let out = with_retry_after(long.as_bytes(), StatusCode::SERVICE_UNAVAILABLE, 1);
        let status: kube::core::Status = serde_json::from_slice(&out).unwrap();
        assert!(status.message.len() <= MAX_MESSAGE);
        assert_eq!(status.reason, "ServiceUnavailable");
    }

    fn response(code: u16, retry_after: Option<&str>) -> Response<()> {
        let mut b = Response::builder().status(code);
        if let Some(v) = retry_after {
            b = b.header(header::RETRY_AFTER, v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_whole_seconds_on_429_or_503_count() {
        assert_eq!(retry_after_secs(&response(429, Some("5"))), Some(5));
        assert_eq!(retry_after_secs(&response(503, Some(" 12 "))), Some(12));
        assert_eq!(retry_after_secs(&response(500, Some("5"))), None);
        assert_eq!(retry_after_secs(&response(429, None)), None);
        assert_eq!(retry_after_secs(&response(429, Some("0"))), None);
        assert_eq!(retry_after_secs(&response(429, Some("-1"))), None);
        assert_eq!(
            retry_after_secs(&response(429, Some("Wed, 21 Oct 2026 07:28:00 GMT"))),
            None
        );
    }

    /// Through a real kube `Client`: the delay of a plain-text 429 reaches the caller's error.
    #[tokio::test]
    async fn the_delay_reaches_kubes_error() {
        use k8s_openapi::api::core::v1::Pod;
        let service = tower::service_fn(|_req: Request<kube::client::Body>| async {
            let res = Response::builder()
                .status(429)
                .header(header::RETRY_AFTER, "9")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Full::new(Bytes::from_static(b"Too many requests")))
                .unwrap();
            Ok::<_, std::convert::Infallible>(res)
        });
        let api = kube::Api::<Pod>::all(client(service, "default"));
        let err = api.list(&Default::default()).await.unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("expected an API error, got {err:?}");
        };
        assert_eq!(status.code, 429);
        assert_eq!(status.details.unwrap().retry_after_seconds, 9);
    }
}

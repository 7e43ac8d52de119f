//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/debug/pprof/profile?seconds=N`.
//!
//! The profile endpoint is the Rust counterpart of Go's `net/http/pprof`: it samples the whole
//! process at ~99 Hz for N seconds and answers a CPU profile in pprof's protobuf format, which
//! `go tool pprof` reads (`go tool pprof -top http://127.0.0.1:PORT/debug/pprof/profile?seconds=5`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Longest profile a request may ask for.
pub const MAX_PROFILE_SECONDS: u64 = 300;
/// Sampling frequency of the CPU profiler.
pub const PROFILE_HZ: i32 = 99;

/// What the handlers need.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// One profile at a time (the profiler is process-wide).
    profiling: Arc<tokio::sync::Mutex<()>>,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            profiling: Arc::new(tokio::sync::Mutex::new(())),
        }
    }
}

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profiler: {0}")]
    Profiler(#[from] pprof::Error),
    #[error("profiler task failed: {0}")]
    Join(String),
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Parses `seconds` from a query string: default 30, 1..=[`MAX_PROFILE_SECONDS`].
pub fn profile_seconds(query: Option<&str>) -> Result<u64, String> {
    let mut seconds = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "seconds" {
            seconds = Some(v);
        }
    }
    match seconds {
        None => Ok(30),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=MAX_PROFILE_SECONDS).contains(&n) => Ok(n),
            _ => Err(format!(
                "seconds must be an integer from 1 to {MAX_PROFILE_SECONDS}, got {:?}",
                v.chars().take(32).collect::<String>()
            )),
        },
    }
}

/// Samples the process for `duration` and returns the profile as pprof protobuf bytes.
pub async fn cpu_profile(duration: Duration) -> Result<Vec<u8>, ProfileError> {
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ProfileError> {
        use pprof::protos::Message;
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(PROFILE_HZ)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()?;
        std::thread::sleep(duration);
        let report = guard.report().build()?;
        let profile = report.pprof()?;
        Ok(profile.encode_to_vec())
    })
    .await
    .map_err(|e| ProfileError::Join(e.to_string()))?
}

/// Routes one request.
pub async fn handle(state: HttpState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if state.metrics.is_synced() {
                text(StatusCode::OK, "ok\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "watches not synced yet\n")
            }
        }
        "/metrics" => {
            let mut r = text(StatusCode::OK, state.metrics.render_prometheus());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/debug/pprof/profile" => {
            let seconds = match profile_seconds(req.uri().query()) {
                Ok(s) => s,
                Err(msg) => return text(StatusCode::BAD_REQUEST, format!("{msg}\n")),
            };
            let Ok(_busy) = state.profiling.try_lock() else {
                return text(StatusCode::CONFLICT, "a profile is already being taken\n");
            };
            match cpu_profile(Duration::from_secs(seconds)).await {
                Ok(bytes) => {
                    let mut r = Response::new(Full::new(Bytes::from(bytes)));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/octet-stream"),
                    );
                    r.headers_mut().insert(
                        http::header::CONTENT_DISPOSITION,
                        http::HeaderValue::from_static("attachment; filename=\"profile\""),
                    );
                    r
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        let head = String::from_utf8_lossy(&buf[..split]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, buf[split + 4..].to_vec())
    }

    async fn server() -> (
        std::net::SocketAddr,
        Arc<Metrics>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, HttpState::new(metrics.clone()), async {
            let _ = rx.await;
        }));
        (addr, metrics, tx)
    }

    #[test]
    fn seconds_are_validated() {
        assert_eq!(profile_seconds(None), Ok(30));
        assert_eq!(profile_seconds(Some("seconds=2")), Ok(2));
        assert_eq!(profile_seconds(Some("debug=1&seconds=300")), Ok(300));
        for bad in [
            "seconds=0",
            "seconds=301",
            "seconds=-1",
            "seconds=abc",
            "seconds=",
            "seconds=1.5",
        ] {
            assert!(profile_seconds(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn endpoints_answer_and_bad_seconds_is_400() {
        let (addr, metrics, _stop) = server().await;
        let (st, body) = get(addr, "/healthz").await;
        assert_eq!((st, body.as_slice()), (200, &b"ok\n"[..]));
        assert_eq!(get(addr, "/readyz").await.0, 503);
        metrics.set_synced(true);
        assert_eq!(get(addr, "/readyz").await.0, 200);
        metrics.event(crate::metrics::Resource::Pods, 2);
        let (st, body) = get(addr, "/metrics").await;
        assert_eq!(st, 200);
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("podgrant_watch_events_total{resource=\"pods\"} 2"));
        let (st, body) = get(addr, "/debug/pprof/profile?seconds=zero").await;
        assert_eq!(st, 400);
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("seconds must be an integer"));
        assert_eq!(get(addr, "/nope").await.0, 404);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn profile_over_http_decodes_as_pprof_with_cpu_samples() {
        use pprof::protos::Message;
        let (addr, _metrics, _stop) = server().await;
        // Burn CPU in a named thread while the profile is taken.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let burner = std::thread::Builder::new()
            .name("burner".into())
            .spawn(move || {
                let mut x = 0u64;
                while !s2.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
            .unwrap();
        let (st, body) = get(addr, "/debug/pprof/profile?seconds=1").await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        burner.join().unwrap();
        assert_eq!(st, 200);
        let profile = pprof::protos::Profile::decode(body.as_slice()).expect("pprof protobuf");
        let strings = &profile.string_table;
        let types: Vec<&str> = profile
            .sample_type
            .iter()
            .map(|t| strings[t.ty as usize].as_str())
            .collect();
        assert!(types.contains(&"cpu"), "{types:?}");
        assert!(!profile.sample.is_empty(), "no samples");
        let total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
        assert!(
            total >= 10,
            "too few samples at 99 Hz over 1 s of busy CPU: {total}"
        );
        assert!(profile.duration_nanos > 0);
    }
}

//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/debug/pprof/profile?seconds=N`.
//!
//! The profile endpoint is the Rust counterpart of Go's `net/http/pprof`: it samples the whole
//! process at ~99 Hz for N seconds and answers a CPU profile in pprof's protobuf format, which
//! `go tool pprof` reads (`go tool pprof -top http://127.0.0.1:PORT/debug/pprof/profile?seconds=5`).
//!
//! The endpoint can't starve the engine (every limit is an [`HttpConfig`] field and a flag):
//!
//! | threat | limit |
//! |---|---|
//! | idle or slow (slowloris) connections | a request head must arrive within `header_read_timeout` of connecting or of the previous response (hyper's timer; this is also the keep-alive idle limit); a connection with no bytes moving and no request being handled for `idle_timeout` is closed |
//! | many connections | at most [`connection_cap`] at once; an excess one is accepted, answered `503` and closed at once (it never waits, holding a descriptor) |
//! | `EMFILE`/`ENFILE` on accept | backed off exponentially (10 ms → 1 s), never a hot accept loop |
//! | profiles | one at a time ([`ProfileSlot`]; a second gets `409`), at most [`MAX_PROFILE_SECONDS`]; a client that goes away stops the profile and frees the slot; memory bounded by [`crate::profile`] |
//!
//! `/healthz` is liveness (the process serves HTTP); `/readyz` is readiness ([`readiness`]:
//! watches synced *and* the store reachable, as last probed by the binary).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::backoff::{Backoff, BackoffConfig};
use crate::metrics::Metrics;
use crate::profile::{Sampler, SamplerError};

/// Longest profile a request may ask for.
pub const MAX_PROFILE_SECONDS: u64 = 60;
/// Sampling frequency of the CPU profiler.
pub const PROFILE_HZ: i32 = 99;
/// Descriptors [`connection_cap`] leaves to the engine (Kubernetes client, MySQL pool, runtime).
pub const ENGINE_FD_RESERVE: u64 = 128;

/// The endpoint's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// A request head must be complete this long after the connection opened or the previous
    /// response was sent.
    pub header_read_timeout: Duration,
    /// No bytes either way and no request in a handler for this long: the connection is closed.
    pub idle_timeout: Duration,
    /// Concurrent connections served (before [`connection_cap`] clamps it to the descriptors).
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 64,
        }
    }
}

/// The connection cap actually used: `requested`, but never more than half of the descriptors
/// left after the engine's `reserve` (at least 1), so that idle HTTP clients can never take
/// the descriptors the engine needs to reach MySQL and the API server. `nofile` is the soft
/// `RLIMIT_NOFILE` (`None`: unknown or unlimited).
pub fn connection_cap(requested: usize, nofile: Option<u64>, reserve: u64) -> usize {
    let requested = requested.max(1);
    match nofile {
        Some(n) => requested.min((n.saturating_sub(reserve) / 2).max(1) as usize),
        None => requested,
    }
}

/// The soft `RLIMIT_NOFILE` of this process (`None` when unlimited or unreadable).
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain syscall with a valid pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// Whether `/readyz` answers ready: watches synced and the store reachable.
pub fn readiness(synced: bool, store_reachable: bool) -> Result<(), &'static str> {
    match (synced, store_reachable) {
        (true, true) => Ok(()),
        (false, _) => Err("watches not synced yet"),
        (true, false) => Err("mysql unreachable"),
    }
}

/// After `idle_for` without bytes moving and with `in_flight` requests in handlers, with limit
/// `limit`: `None` to close the connection now, `Some(d)` to look again in `d`.
pub fn idle_check(idle_for: Duration, in_flight: usize, limit: Duration) -> Option<Duration> {
    if in_flight > 0 {
        Some(limit)
    } else if idle_for >= limit {
        None
    } else {
        Some(limit - idle_for)
    }
}

/// The one-profile-at-a-time slot. The guard travels with the profiling job, so the slot is
/// held exactly as long as the profiler runs — whatever the client does.
#[derive(Debug, Clone, Default)]
pub struct ProfileSlot(Arc<AtomicBool>);

/// Holds the [`ProfileSlot`]; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard(Arc<AtomicBool>);

impl ProfileSlot {
    /// The slot, or `None` while a profile holds it.
    pub fn try_take(&self) -> Option<SlotGuard> {
        (!self.0.swap(true, Ordering::AcqRel)).then(|| SlotGuard(self.0.clone()))
    }
    pub fn is_busy(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What the handlers need.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    /// One profile at a time (the profiler is process-wide).
    profiling: ProfileSlot,
}

impl HttpState {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            profiling: ProfileSlot::default(),
        }
    }
}

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("profiler: {0}")]
    Sampler(#[from] SamplerError),
    #[error("profiler task failed: {0}")]
    Join(String),
    #[error("profile cancelled")]
    Cancelled,
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
    let (_cancel, cancelled) = std::sync::mpsc::channel::<()>();
    profile_job(duration, cancelled, None).await
}

/// The profiling job on a blocking thread. Dropping the sender of `cancelled` (the request's
/// future was dropped: the client went away) stops it early; `slot` is freed when it ends.
async fn profile_job(
    duration: Duration,
    cancelled: std::sync::mpsc::Receiver<()>,
    slot: Option<SlotGuard>,
) -> Result<Vec<u8>, ProfileError> {
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ProfileError> {
        use pprof::protos::Message;
        let _slot = slot;
        let sampler = Sampler::start(PROFILE_HZ as u32)?;
        match cancelled.recv_timeout(duration) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(sampler.finish().encode_to_vec()),
            _ => Err(ProfileError::Cancelled),
        }
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
        "/readyz" => match readiness(
            state.metrics.is_synced(),
            state.metrics.endpoint.store_reachable(),
        ) {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
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
            let busy = || {
                state.metrics.endpoint.profile_refused();
                text(StatusCode::CONFLICT, "a profile is already being taken\n")
            };
            let Some(slot) = state.profiling.try_take() else {
                return busy();
            };
            state.metrics.endpoint.profile_started();
            // Dropped with this future (the client went away): the job stops early.
            let (_cancel, cancelled) = std::sync::mpsc::channel::<()>();
            match profile_job(Duration::from_secs(seconds), cancelled, Some(slot)).await {
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
                Err(ProfileError::Sampler(SamplerError::Busy)) => busy(),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// When a connection last moved bytes, and how many of its requests are in a handler.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// A request in a handler (decrements on drop, also when hyper drops the handler's future).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A TCP stream that records when bytes last moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves on `listener` with the default [`HttpConfig`] until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, state, HttpConfig::default(), shutdown).await
}

/// Serves on `listener` within `config`'s limits until `shutdown` completes.
pub async fn serve_with(
    listener: TcpListener,
    state: HttpState,
    config: HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = connection_cap(config.max_connections, nofile_limit(), ENGINE_FD_RESERVE);
    if cap < config.max_connections {
        tracing::warn!(
            requested = config.max_connections,
            cap,
            nofile = ?nofile_limit(),
            "HTTP connection cap lowered to leave descriptors to the engine"
        );
    }
    let permits = Arc::new(tokio::sync::Semaphore::new(cap));
    let mut backoff = Backoff::new(
        BackoffConfig {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.2,
        },
        0x4cce97,
    );
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff.reset();
                    stream
                }
                Err(e) => {
                    state.metrics.endpoint.accept_error();
                    let delay = backoff.next_delay();
                    if backoff.failures() == 1 || backoff.failures().is_power_of_two() {
                        tracing::warn!(error = %e, failures = backoff.failures(), ?delay, "HTTP accept failed; backing off");
                    }
                    tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            state.metrics.endpoint.connection_refused();
            // Best effort, never waits: the socket's send buffer takes this at once.
            let _ = stream.try_write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 20\r\nconnection: close\r\n\r\ntoo many connections",
            );
            drop(stream);
            continue;
        };
        let state = state.clone();
        let config = config.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, state, &config).await;
        });
    }
}

async fn serve_connection(stream: TcpStream, state: HttpState, config: &HttpConfig) {
    let metrics = state.metrics.clone();
    metrics.endpoint.connection_opened();
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    let svc_activity = activity.clone();
    let svc = service_fn(move |req| {
        let state = state.clone();
        svc_activity.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight(svc_activity.clone());
        async move {
            let _in_flight = in_flight;
            Ok::<_, Infallible>(handle(state, req).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let mut next_check = config.idle_timeout;
    loop {
        tokio::select! {
            ended = &mut conn => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "http connection ended with an error");
                }
                break;
            }
            _ = tokio::time::sleep(next_check) => {
                let in_flight = activity.in_flight.load(Ordering::Relaxed);
                match idle_check(activity.idle_for(), in_flight, config.idle_timeout) {
                    Some(d) => next_check = d.max(Duration::from_millis(10)),
                    None => {
                        metrics.endpoint.connection_idle_closed();
                        break;
                    }
                }
            }
        }
    }
    metrics.endpoint.connection_closed();
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
        server_with(HttpConfig::default()).await
    }

    async fn server_with(
        config: HttpConfig,
    ) -> (
        std::net::SocketAddr,
        Arc<Metrics>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(
            listener,
            HttpState::new(metrics.clone()),
            config,
            async {
                let _ = rx.await;
            },
        ));
        (addr, metrics, tx)
    }

    /// The sampler is process-wide: tests that profile take turns.
    static PROFILING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Polls `cond` every 20 ms until it holds or `deadline` passes.
    async fn wait_for<F: Future<Output = bool>>(
        what: &str,
        deadline: Duration,
        mut cond: impl FnMut() -> F,
    ) {
        let end = Instant::now() + deadline;
        while !cond().await {
            assert!(Instant::now() < end, "not within {deadline:?}: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn connection_cap_leaves_descriptors_to_the_engine() {
        // (requested, soft RLIMIT_NOFILE, reserve) -> cap
        for (requested, nofile, reserve, want) in [
            (64, Some(1024), 128, 64),
            (64, Some(256), 128, 64),
            (64, Some(200), 128, 36),
            (64, Some(128), 128, 1),
            (64, Some(10), 128, 1),
            (64, None, 128, 64),
            (0, None, 128, 1),
            (1000, Some(1 << 20), 128, 1000),
        ] {
            assert_eq!(
                connection_cap(requested, nofile, reserve),
                want,
                "{requested} {nofile:?} {reserve}"
            );
        }
    }

    #[test]
    fn readiness_needs_sync_and_a_reachable_store() {
        assert_eq!(readiness(true, true), Ok(()));
        assert_eq!(readiness(false, true), Err("watches not synced yet"));
        assert_eq!(readiness(false, false), Err("watches not synced yet"));
        assert_eq!(readiness(true, false), Err("mysql unreachable"));
    }

    #[test]
    fn idle_check_closes_only_idle_connections_with_no_request_in_a_handler() {
        let s = Duration::from_secs;
        // (idle for, in flight, limit) -> verdict
        for (idle, in_flight, limit, want) in [
            (s(0), 0, s(30), Some(s(30))),
            (s(10), 0, s(30), Some(s(20))),
            (s(30), 0, s(30), None),
            (s(99), 0, s(30), None),
            (s(99), 1, s(30), Some(s(30))),
        ] {
            assert_eq!(
                idle_check(idle, in_flight, limit),
                want,
                "{idle:?} {in_flight}"
            );
        }
    }

    #[test]
    fn profile_slot_is_exclusive_and_freed_by_its_guard() {
        let slot = ProfileSlot::default();
        let guard = slot.try_take().expect("free at first");
        assert!(slot.is_busy());
        assert!(slot.try_take().is_none(), "a second profile is refused");
        drop(guard);
        assert!(!slot.is_busy());
        assert!(
            slot.try_take().is_some(),
            "free again after the guard is dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_by_the_header_timeout() {
        let (addr, metrics, _stop) = server_with(HttpConfig {
            header_read_timeout: Duration::from_secs(2),
            ..HttpConfig::default()
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        // Before: hyper had no timer, so this waited forever (the outer timeout fails the test).
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
            .await
            .expect("the server closes a silent connection")
            .ok();
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
        wait_for("the connection is released", Duration::from_secs(5), || {
            let m = metrics.clone();
            async move { m.endpoint.connections_open() == 0 }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_over_the_cap_are_refused_at_once() {
        let (addr, metrics, _stop) = server_with(HttpConfig {
            header_read_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            max_connections: 2,
        })
        .await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        wait_for("two connections served", Duration::from_secs(10), || {
            let m = metrics.clone();
            async move { m.endpoint.connections_open() == 2 }
        })
        .await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut buf))
            .await
            .expect("an excess connection is closed at once")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 503"),
            "{:?}",
            String::from_utf8_lossy(&buf)
        );
        assert_eq!(metrics.endpoint.connections_refused(), 1);
        assert!(metrics
            .render_prometheus()
            .contains("podgrant_http_connections_refused_total 1"));
        // The admitted ones still work.
        drop(_a);
        wait_for("a slot frees", Duration::from_secs(10), || {
            let m = metrics.clone();
            async move { m.endpoint.connections_open() == 1 }
        })
        .await;
        assert_eq!(get(addr, "/healthz").await.0, 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_profile_is_409_and_an_aborted_one_frees_the_slot() {
        let _turn = PROFILING.lock().await;
        let (addr, metrics, _stop) = server().await;
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first
            .write_all(b"GET /debug/pprof/profile?seconds=40 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        wait_for("the first profile runs", Duration::from_secs(10), || {
            let m = metrics.clone();
            async move { m.endpoint.profiles() == 1 }
        })
        .await;
        let (st, body) = get(addr, "/debug/pprof/profile?seconds=1").await;
        assert_eq!(st, 409, "{}", String::from_utf8_lossy(&body));
        // The client goes away mid-profile: the profiler stops and the slot frees, long before
        // the 40 s it asked for (before: the slot freed but the profiler ran on, so the next
        // profile failed until then).
        drop(first);
        let start = Instant::now();
        wait_for(
            "a new profile succeeds after the abort",
            Duration::from_secs(15),
            || async move { get(addr, "/debug/pprof/profile?seconds=1").await.0 == 200 },
        )
        .await;
        assert!(start.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn seconds_are_validated() {
        assert_eq!(profile_seconds(None), Ok(30));
        assert_eq!(profile_seconds(Some("seconds=2")), Ok(2));
        assert_eq!(profile_seconds(Some("debug=1&seconds=60")), Ok(60));
        for bad in [
            "seconds=0",
            "seconds=61",
            "seconds=300",
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
        let _turn = PROFILING.lock().await;
        let (addr, _metrics, _stop) = server().await;
        // Burn CPU in a named thread while the profile is taken.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        let burner = std::thread::Builder::new()
            .name("burner".into())
            .spawn(move || burn_until_stopped(&s2))
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
        // Symbolized: the burner is named (it is never inlined, so optimized builds — the bench
        // smoke runs these tests in the bench profile — keep its frame too).
        let names: Vec<&str> = profile
            .function
            .iter()
            .map(|f| strings[f.name as usize].as_str())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("burn_until_stopped")),
            "{names:?}"
        );
    }

    /// Busy CPU until `stop`, in a frame of its own.
    #[inline(never)]
    fn burn_until_stopped(stop: &std::sync::atomic::AtomicBool) {
        let mut x = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            std::hint::black_box(x);
        }
    }
}

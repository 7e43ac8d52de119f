//! TCP serving (HTTP/1.1 on a loopback port, over TLS or plain) of the same handler the in-process service uses, with connection and handshake limits.
//!
//! One accept loop for both schemes. A plain connection goes straight to [`serve_http1`]; a TLS
//! one first waits for a handshake slot and completes its handshake, both within
//! [`ServerLimits::tls_handshake_timeout`] from accept (a client that connects and never speaks
//! is dropped then, and at most [`ServerLimits::max_tls_handshakes`] handshakes run at once), and
//! then goes to the same [`serve_http1`]. Everything after the handshake — hyper, the header and
//! body deadlines, the handler with its auth check — is shared, line for line.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::error::SimError;
use crate::limits::Backoff;
use crate::sim::Sim;
use crate::tls::TlsIdentity;

/// What one TCP client may hold. Long-running watch responses are not timed by any of these
/// (the server's watch timeout ends them): the header timeout only runs while the server waits
/// for a request head, the body timeout only while it reads a request body.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// The whole request head must arrive within this; it also closes an idle keep-alive
    /// connection that sends no next request (hyper starts it whenever it awaits a head).
    pub header_read_timeout: Duration,
    /// The whole request body must arrive within this (then 408 and the connection closes).
    pub body_read_timeout: Duration,
    /// Open connections at most; one more gets a 503 Status and is closed (over TLS: closed).
    pub max_connections: usize,
    /// TLS only: from accept, the wait for a handshake slot plus the handshake itself must end
    /// within this, or the connection is dropped.
    pub tls_handshake_timeout: Duration,
    /// TLS only: handshakes in progress at most; more connections wait for a slot (within their
    /// handshake timeout), so silent clients cannot take the server's CPU or its accept loop.
    pub max_tls_handshakes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            tls_handshake_timeout: Duration::from_secs(10),
            max_tls_handshakes: 64,
        }
    }
}

/// How a [`SimServer`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS with a certificate made at start.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running TCP server; dropping it stops the server and its connections.
#[derive(Debug)]
pub struct SimServer {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    tls: Option<TlsIdentity>,
    sim: Sim,
    /// The TLS handshake slots, `max_tls_handshakes` of them.
    handshakes: Arc<Semaphore>,
    max_handshakes: usize,
}

/// The error a request body yields when it did not arrive within [`ServerLimits::body_read_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyDeadline(pub Duration);

/// A request body that fails with [`BodyDeadline`] once its deadline passes.
struct DeadlineBody<B> {
    inner: B,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadline(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A minimal HTTP/1.1 503 with a `Status` body, for a connection over the cap.
fn over_capacity_response() -> Vec<u8> {
    let body = serde_json::to_vec(&crate::status::failure(
        503,
        "ServiceUnavailable",
        "the server has too many open connections; try again later",
    ))
    .unwrap_or_default();
    let mut out = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// `accept` failures that mean "out of a resource, try later" rather than "this one client failed".
fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 (Linux numbering; elsewhere they are still errors worth backing off on).
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

impl SimServer {
    pub(crate) async fn start(sim: Sim, addr: SocketAddr) -> Result<Self, SimError> {
        Self::start_with(&sim, addr, ServerLimits::default()).await
    }

    /// Serve `sim` over plain HTTP on `addr` (loopback only) with explicit connection limits.
    pub async fn start_with(
        sim: &Sim,
        addr: SocketAddr,
        limits: ServerLimits,
    ) -> Result<Self, SimError> {
        Self::bind(sim, addr, limits, None).await
    }

    /// Serve `sim` over HTTPS on `addr` (loopback only) with a CA and serving certificate made
    /// now for the loopback names and `addr`'s host.
    pub async fn start_https_with(
        sim: &Sim,
        addr: SocketAddr,
        limits: ServerLimits,
    ) -> Result<Self, SimError> {
        let identity = TlsIdentity::generate(&[addr.ip().to_string()])?;
        Self::start_tls_with(sim, addr, limits, identity).await
    }

    /// Serve `sim` over HTTPS on `addr` (loopback only) with a given identity.
    pub async fn start_tls_with(
        sim: &Sim,
        addr: SocketAddr,
        limits: ServerLimits,
        identity: TlsIdentity,
    ) -> Result<Self, SimError> {
        Self::bind(sim, addr, limits, Some(identity)).await
    }

    async fn bind(
        sim: &Sim,
        addr: SocketAddr,
        limits: ServerLimits,
        tls: Option<TlsIdentity>,
    ) -> Result<Self, SimError> {
        if !addr.ip().is_loopback() {
            return Err(SimError::BadRequest(format!(
                "refusing to listen on non-loopback address {addr}"
            )));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| SimError::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SimError::io("local_addr", e))?;
        let acceptor = tls.as_ref().map(TlsIdentity::acceptor);
        let max_handshakes = limits.max_tls_handshakes.max(1);
        let handshakes = Arc::new(Semaphore::new(max_handshakes));
        let task = tokio::spawn(accept_loop(
            sim.clone(),
            listener,
            limits,
            acceptor,
            handshakes.clone(),
        ));
        Ok(Self {
            addr,
            task: Some(task),
            tls,
            sim: sim.clone(),
            handshakes,
            max_handshakes,
        })
    }

    /// TLS handshakes holding a slot now (a connection accepted and not yet through its
    /// handshake or its timeout): what a test waits on instead of sleeping.
    pub fn tls_handshakes_in_progress(&self) -> usize {
        self.max_handshakes - self.handshakes.available_permits()
    }

    /// `http://127.0.0.1:<port>` or `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// Plain or TLS.
    pub fn scheme(&self) -> Scheme {
        match self.tls {
            Some(_) => Scheme::Https,
            None => Scheme::Http,
        }
    }

    /// The CA that signed the serving certificate (HTTPS only), PEM.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(TlsIdentity::ca_pem)
    }

    /// The kubeconfig for this server: its URL, its CA (HTTPS) and the sim's token (if any).
    pub fn kubeconfig(&self) -> String {
        crate::kubeconfig::render_with(&self.url(), &self.credentials())
    }

    /// Write [`SimServer::kubeconfig`] to `path` (owner-only when it holds a token).
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> Result<(), SimError> {
        crate::kubeconfig::write(path, &self.url(), &self.credentials())
    }

    fn credentials(&self) -> crate::kubeconfig::Credentials<'_> {
        crate::kubeconfig::Credentials {
            ca_pem: self.ca_pem(),
            token: self.sim.bearer_token(),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and drop every connection.
    pub fn shutdown(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Accept the next connection; on failure (out of descriptors, buffers, memory) wait with
/// doubling backoff instead of retrying at once, which would spin a core, and log only on the
/// 1st, 2nd, 4th, 8th… failure in a row.
async fn accept_with_backoff<F, Fut, T>(
    accept: &mut F,
    backoff: &mut Backoff,
    failures: &mut u64,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(t) => {
                backoff.reset();
                *failures = 0;
                return t;
            }
            Err(e) => {
                *failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures = *failures, exhaustion = is_resource_exhaustion(&e), "accept failed; backing off");
                }
                tokio::time::sleep(backoff.fail()).await;
            }
        }
    }
}

async fn accept_loop(
    sim: Sim,
    listener: TcpListener,
    limits: ServerLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshakes: Arc<Semaphore>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    let mut failures: u64 = 0;
    let mut accept = || listener.accept();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            (stream, peer) = accept_with_backoff(&mut accept, &mut backoff, &mut failures) => {
                let _ = stream.set_nodelay(true);
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    if tls.is_none() {
                        conns.spawn(async move {
                            let mut stream = stream;
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                stream.write_all(&over_capacity_response()),
                            )
                            .await;
                        });
                    }
                    // Over TLS a plain-text 503 would be noise: the connection just closes.
                    continue;
                };
                let sim = sim.clone();
                let limits = limits.clone();
                match &tls {
                    None => {
                        conns.spawn(async move {
                            let _permit = permit;
                            serve_http1(stream, &sim, &limits).await;
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let handshakes = handshakes.clone();
                        conns.spawn(async move {
                            let _permit = permit;
                            let handshake = async {
                                let _slot = handshakes
                                    .acquire_owned()
                                    .await
                                    .map_err(std::io::Error::other)?;
                                acceptor.accept(stream).await
                            };
                            match tokio::time::timeout(limits.tls_handshake_timeout, handshake).await {
                                Ok(Ok(tls_stream)) => serve_http1(tls_stream, &sim, &limits).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, timeout = ?limits.tls_handshake_timeout, "TLS handshake timed out; dropping the connection"),
                            }
                        });
                    }
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Serve HTTP/1.1 on one connection, plain or after its TLS handshake: the request-body
/// deadline, the header deadline (also the keep-alive idle limit) and the shared handler.
async fn serve_http1<IO>(io: IO, sim: &Sim, limits: &ServerLimits)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = sim.service();
    let body_limit = limits.body_read_timeout;
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let req = req.map(|inner| DeadlineBody {
            inner,
            limit: body_limit,
            sleep: Box::pin(tokio::time::sleep(body_limit)),
        });
        svc.clone().oneshot(req)
    });
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_errors_are_recognised_and_the_503_is_well_formed() {
        assert!(is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            24
        )));
        assert!(!is_resource_exhaustion(&std::io::Error::from_raw_os_error(
            104
        )));
        let r = String::from_utf8(over_capacity_response()).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["reason"], "ServiceUnavailable");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_accept_backs_off_instead_of_spinning() {
        let calls = std::sync::atomic::AtomicU64::new(0);
        let mut accept = || {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Err::<(), _>(std::io::Error::from_raw_os_error(24)))
        };
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let mut failures = 0;
        // Ten simulated seconds of EMFILE: 10+20+…+640 ms, then one try a second.
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            accept_with_backoff(&mut accept, &mut backoff, &mut failures),
        )
        .await;
        assert!(r.is_err());
        let n = calls.load(std::sync::atomic::Ordering::Relaxed);
        assert!((8..=20).contains(&n), "{n} accept calls in 10 s");
        assert_eq!(failures, n);
        // One success resets the backoff.
        let mut ok = || std::future::ready(Ok::<u8, std::io::Error>(7));
        assert_eq!(
            accept_with_backoff(&mut ok, &mut backoff, &mut failures).await,
            7
        );
        assert_eq!((failures, backoff.fail()), (0, Duration::from_millis(10)));
    }
}

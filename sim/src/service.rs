//! `SimService`: the simulator as a `tower::Service`, used in-process by kube-rs and by the TCP server.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};

use crate::body::{BodyError, SimBody};
use crate::sim::Inner;

/// The in-process service. Clone freely.
#[derive(Clone)]
pub struct SimService {
    inner: Arc<Inner>,
}

impl SimService {
    pub(crate) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }
}

impl<B> tower::Service<Request<B>> for SimService
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<SimBody>;
    /// An injected stall that ends by dropping the connection (no response at all).
    type Error = BodyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<SimBody>, BodyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BodyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(crate::handler::handle(inner, req))
    }
}

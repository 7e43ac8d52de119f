//! `SimBody`: the response body type, either a full buffer or a (watch) stream that can end abruptly.
//!
//! In-process, a body is polled directly by kube-client on the test's runtime, so it is built
//! so that it can never be busy-polled: it is fused (after its end or its error every poll
//! answers `None` and [`Body::is_end_stream`] is true, whatever the inner stream would do),
//! and every frame spends tokio's cooperative budget, so a consumer that drains an
//! always-ready body still returns to the scheduler every budget's worth of frames.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};

/// Why a streamed body ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// An injected abrupt connection reset (over TCP the connection is closed mid-stream).
    #[error("connection reset by podgrant-sim fault injection")]
    Reset,
}

/// The response body of every simulator response.
pub struct SimBody {
    inner: UnsyncBoxBody<Bytes, BodyError>,
    /// The body has ended (cleanly or with an error): it answers `None` from now on.
    finished: bool,
}

impl SimBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            inner: Full::new(bytes.into())
                .map_err(|never| match never {})
                .boxed_unsync(),
            finished: false,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// A streamed body (chunked transfer encoding over TCP).
    pub fn stream<S>(s: S) -> Self
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send + 'static,
    {
        Self {
            inner: StreamBody::new(s.map(|r| r.map(Frame::data))).boxed_unsync(),
            finished: false,
        }
    }
}

impl std::fmt::Debug for SimBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimBody")
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(_))) => coop.made_progress(),
            Poll::Ready(Some(Err(_)) | None) => {
                self.finished = true;
                coop.made_progress();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finished || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn poll(body: &mut SimBody) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    /// After a reset (or a clean end) the body stays ended, and says so, even if polled again.
    #[tokio::test]
    async fn a_body_is_finished_for_good_after_its_error() {
        let mut body = SimBody::stream(futures::stream::iter([
            Ok(Bytes::from_static(b"line\n")),
            Err(BodyError::Reset),
            Ok(Bytes::from_static(b"never\n")),
        ]));
        assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(!body.is_end_stream());
        assert!(matches!(
            poll(&mut body),
            Poll::Ready(Some(Err(BodyError::Reset)))
        ));
        assert!(body.is_end_stream(), "ended by its error");
        for _ in 0..3 {
            assert!(matches!(poll(&mut body), Poll::Ready(None)));
        }
    }

    /// A stream that is always ready cannot keep its consumer from yielding: the body spends
    /// tokio's cooperative budget and answers `Pending` once it is exhausted.
    #[tokio::test]
    async fn an_always_ready_body_returns_to_the_scheduler() {
        let mut body = SimBody::stream(futures::stream::repeat_with(|| {
            Ok(Bytes::from_static(b"x\n"))
        }));
        let pending_after = std::future::poll_fn(|cx| {
            for i in 0..10_000u32 {
                if Pin::new(&mut body).poll_frame(cx).is_pending() {
                    return Poll::Ready(Some(i));
                }
            }
            Poll::Ready(None)
        })
        .await;
        let n = pending_after.expect("the body yielded");
        assert!(n <= 1_000, "yielded only after {n} frames");
    }
}

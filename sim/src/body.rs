//! `SimBody`: the response body type, either a full buffer or a (watch) stream that can end abruptly.

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
}

impl SimBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Self {
            inner: Full::new(bytes.into())
                .map_err(|never| match never {})
                .boxed_unsync(),
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
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

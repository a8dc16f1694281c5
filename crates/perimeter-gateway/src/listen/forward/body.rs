//! The bodies of a forwarded exchange: the request body, checked against revocation frame by
//! frame, and the response body; each one's end is a part of the request's decision event. And
//! the body of a refused request, read or held until the refusal is sent.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};

use crate::decision::EventVerdict;
use crate::listen::event::SharedDraft;
use crate::listen::refusal::ProxyBody;
use crate::listen::refusal::Why;
use crate::listen::revoke::Revocation;

/// The error a request body ends with once the policy revoked it.
#[derive(Debug)]
pub(super) struct RevokedError(pub(super) String);

impl std::fmt::Display for RevokedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "revoked by {}", self.0)
    }
}

impl StdError for RevokedError {}

/// A request body on its way upstream: each frame is checked against revocation after it was
/// read and before it is handed on, and the body's end is one of the event's two parts.
pub(crate) struct RequestBody {
    pub(super) inner: Incoming,
    pub(super) revocation: Revocation,
    pub(super) shared: Option<Arc<SharedDraft>>,
}

impl RequestBody {
    fn done(&mut self) {
        if let Some(s) = self.shared.take() {
            s.part_done();
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Err(why) = self.revocation.check() {
                    if let Some(s) = &self.shared {
                        s.set_outcome((EventVerdict::Denied, Why::PolicyRevoked.as_str()));
                    }
                    self.done();
                    return Poll::Ready(Some(Err(Box::new(RevokedError(why.to_string())))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                self.done();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.done();
    }
}

/// A response body: its end (or drop) is the other part of the event.
pub(super) struct EventBody {
    pub(super) inner: Incoming,
    pub(super) shared: Option<Arc<SharedDraft>>,
}

impl EventBody {
    fn done(&mut self) {
        if let Some(s) = self.shared.take() {
            s.part_done();
        }
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for EventBody {
    fn drop(&mut self) {
        self.done();
    }
}

/// Most of a refused HTTP/2 request body read (and dropped) before the refusal is sent, and for
/// how long.
const DRAIN_BYTES: usize = 1 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Read and drop `body` up to [`DRAIN_BYTES`] within [`DRAIN_TIME`].
pub(super) async fn drain(body: &mut Incoming) {
    let read = async {
        let mut seen = 0usize;
        while seen <= DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => seen += frame.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// A response body that holds the unread request body until it ends.
pub(super) struct Holding {
    pub(super) inner: ProxyBody,
    pub(super) _request: Incoming,
}

impl hyper::body::Body for Holding {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

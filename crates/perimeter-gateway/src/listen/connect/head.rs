//! The first request head of a client connection, read without hyper. A plain CONNECT (the
//! common case: HTTP/1.1, an authority-form target, no body framing, no `Connection`,
//! `Upgrade` or `Expect` header) is decided and answered by the proxy itself, and its tunnel
//! starts on the socket; everything else goes to hyper together with the bytes read, so hyper
//! sees the connection exactly as the client sent it. Both paths decide a CONNECT with the same
//! function ([`super::admit_connect`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::http_head::{HeadError, HeadLimits, parse_request_head};

/// Most header fields the fast path parses; a head with more goes to hyper (its own limit).
const MAX_HEADERS: usize = 64;

/// The Host header fields of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostField {
    None,
    One(Bytes),
    Many,
}

/// What the first bytes of a connection turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FirstHead {
    /// A plain CONNECT: its request target, its Host, and the bytes after its head (the start
    /// of the tunnel, if the client did not wait for the answer).
    Connect {
        authority: String,
        host: HostField,
        rest: Bytes,
    },
    /// Anything else, hyper's to serve: every byte read so far.
    Other(Bytes),
    /// A head whose framing or syntax is refused ([`refused_by_parser`]): answered with its
    /// reason, then the connection is closed (nothing after it can be delimited).
    Refused(HeadError),
    /// The client closed before a complete head.
    Closed,
}

/// Read until the first request head is complete (or clearly not a plain CONNECT, or `max`
/// bytes came without a complete head: hyper answers that one).
pub(super) async fn read_first_head(stream: &mut TcpStream, max: usize) -> io::Result<FirstHead> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(FirstHead::Closed);
        }
        if let Some(head) = classify(&mut buf, max) {
            return Ok(head);
        }
    }
}

/// `None` while more bytes are needed.
fn classify(buf: &mut BytesMut, max: usize) -> Option<FirstHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < max => return None,
        // Too large, too many fields for this parser, malformed: the project's own parser says
        // why, or hyper answers as it always does.
        Ok(httparse::Status::Partial) | Err(_) => return Some(other(buf, max)),
    };
    let plain_connect = req.method == Some("CONNECT")
        && req.version == Some(1)
        && !req.headers.iter().any(|h| {
            [
                "content-length",
                "transfer-encoding",
                "connection",
                "upgrade",
                "expect",
            ]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n))
        });
    let authority = req
        .path
        .filter(|p| plain_connect && p.parse::<http::uri::Authority>().is_ok())
        .map(str::to_string);
    let Some(authority) = authority else {
        return Some(other(buf, max));
    };
    let mut hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"));
    let host = match (hosts.next(), hosts.next()) {
        (None, _) => HostField::None,
        (Some(h), None) => HostField::One(Bytes::copy_from_slice(h.value)),
        (Some(_), Some(_)) => HostField::Many,
    };
    let rest = buf.split_off(len).freeze();
    Some(FirstHead::Connect {
        authority,
        host,
        rest,
    })
}

/// A first head that is not a plain CONNECT: refused when the project's request-head parser
/// ([`parse_request_head`]) refuses its framing or syntax, else hyper's. hyper would answer
/// most of these itself, but without `x-perimeter-error`, and a request with both
/// Content-Length and Transfer-Encoding it would serve (as chunked) instead of refusing it.
/// Destination and Host problems are left to the handler, which names them as it does on
/// every later request of the connection.
fn other(buf: &mut BytesMut, max: usize) -> FirstHead {
    let limits = HeadLimits {
        max_head_bytes: max,
        max_headers: MAX_PARSED_HEADERS,
    };
    match parse_request_head(buf, &limits) {
        Err(e) if refused_by_parser(&e) => FirstHead::Refused(e),
        _ => FirstHead::Other(std::mem::take(buf).freeze()),
    }
}

/// Header fields hyper's server accepts, and so the parser of the first head.
const MAX_PARSED_HEADERS: usize = 100;

/// The parser's refusals that are about the head itself rather than its destination.
fn refused_by_parser(e: &HeadError) -> bool {
    matches!(
        e,
        HeadError::HeadTooLarge { .. }
            | HeadError::TooManyHeaders { .. }
            | HeadError::BareCr
            | HeadError::ObsFold
            | HeadError::Malformed(_)
            | HeadError::AmbiguousFraming
            | HeadError::ConflictingContentLength
            | HeadError::InvalidContentLength
            | HeadError::UnsupportedTransferEncoding
    )
}

/// The status of a refused head: 431 for size, else 400.
pub(super) fn refused_status(e: &HeadError) -> http::StatusCode {
    match e {
        HeadError::HeadTooLarge { .. } | HeadError::TooManyHeaders { .. } => {
            http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        }
        _ => http::StatusCode::BAD_REQUEST,
    }
}

/// The response head that opens a tunnel.
pub(super) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";

/// Whether the connection stays open after a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Then {
    KeepAlive,
    Close,
}

/// A refusal as bytes on the wire, as hyper would have sent the same response.
pub(super) fn refusal_bytes(
    status: http::StatusCode,
    reason: &str,
    message: &str,
    then: Then,
) -> Vec<u8> {
    let body_len = message.len() + 1;
    let mut out = Vec::with_capacity(160 + body_len);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
    if http::HeaderValue::from_str(reason).is_ok() {
        out.extend_from_slice(super::X_PERIMETER_ERROR.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body_len.to_string().as_bytes());
    if then == Then::Close {
        out.extend_from_slice(b"\r\nconnection: close");
    }
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
    out
}

/// A stream that yields `prefix` before reading from `inner`: bytes read to classify a
/// connection, handed back to the HTTP server.
pub(in crate::listen) struct Prefixed<S> {
    pub(in crate::listen) prefix: Bytes,
    pub(in crate::listen) inner: S,
}

impl<S> Prefixed<S> {
    pub(in crate::listen) fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;

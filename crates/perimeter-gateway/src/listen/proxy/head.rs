//! The first request head of a client connection, read without hyper. A plain CONNECT (the
//! common case: HTTP/1.1, an authority-form target, no body framing, no `Connection`,
//! `Upgrade` or `Expect` header) is decided and answered by the proxy itself, and its tunnel
//! starts on the socket; everything else goes to hyper together with the bytes read, so hyper
//! sees the connection exactly as the client sent it. Both paths decide a CONNECT with the same
//! function ([`super::admit_connect`]).

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
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

/// A first head that is not a plain CONNECT: refused with the reason of the project's
/// request-head parser ([`parse_request_head`]) when it refuses it, else hyper's, with every
/// byte. hyper would answer many of these itself, but without `x-perimeter-error` (a target it
/// cannot parse, such as a non-ASCII authority, gets a bare 400), and a request with both
/// Content-Length and Transfer-Encoding it would serve (as chunked) instead of refusing it.
/// Left to hyper, which serves them as it always did: bare LF line ends (the head is checked
/// again with CRLF ends instead), and the Host of an origin-form request (the handler names
/// such a request `origin_form_to_proxy`).
fn other(buf: &mut BytesMut, max: usize) -> FirstHead {
    let limits = HeadLimits {
        max_head_bytes: max,
        max_headers: MAX_PARSED_HEADERS,
    };
    let refused = match parse_request_head(buf, &limits) {
        Err(HeadError::BareLf) => parse_request_head(&with_crlf(buf), &limits).err(),
        r => r.err(),
    };
    match refused {
        Some(e) if e != HeadError::BareLf && (!origin_form(buf) || about_the_head(&e)) => {
            FirstHead::Refused(e)
        }
        _ => FirstHead::Other(std::mem::take(buf).freeze()),
    }
}

/// Whether the request line's target is origin-form (`/path`, `*`): a request meant for an
/// origin server, which the handler answers with `origin_form_to_proxy` whatever its Host.
fn origin_form(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    method != b"CONNECT"
        && parts
            .next()
            .is_some_and(|t| t.starts_with(b"/") || t == b"*")
}

/// The parser's refusals that are about the head itself (its size, syntax or framing) rather
/// than its destination or Host.
fn about_the_head(e: &HeadError) -> bool {
    matches!(
        e,
        HeadError::HeadTooLarge { .. }
            | HeadError::TooManyHeaders { .. }
            | HeadError::BareCr
            | HeadError::ObsFold
            | HeadError::Malformed(_)
            | HeadError::InvalidTarget(_)
            | HeadError::AmbiguousFraming
            | HeadError::ConflictingContentLength
            | HeadError::InvalidContentLength
            | HeadError::UnsupportedTransferEncoding
    )
}

/// `buf` with every bare LF made CRLF.
fn with_crlf(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len() + 16);
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' && (i == 0 || buf[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Header fields hyper's server accepts, and so the parser of the first head.
const MAX_PARSED_HEADERS: usize = 100;

/// The response head that opens a tunnel.
pub(super) const ESTABLISHED: &[u8] = b"HTTP/1.1 200 OK\r\n\r\n";

#[cfg(test)]
mod tests;

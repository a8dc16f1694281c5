//! HTTP/2 inside an inspected tunnel: the connection's server, and what a stream may not carry
//! past the h2 codec's own checks.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Route, route_request};
use crate::listen::ProxyContext;
use crate::listen::refusal::{Refusal, Why};

/// Most concurrent streams of one client HTTP/2 connection (an inspected tunnel's).
const H2_MAX_STREAMS: u32 = 100;

/// Serve the HTTP/2 requests of an inspected tunnel whose client chose `h2`: each stream is a
/// request of its own, decided and forwarded as an HTTP/1.1 request is ([`route_request`]).
/// The h2 codec refuses malformed streams itself before they reach the gateway (a missing or
/// repeated pseudo-header, one after a regular header, an unknown one, connection-specific
/// headers, upper-case names, a body longer or shorter than its `content-length`): the stream
/// is reset with `PROTOCOL_ERROR`, and the others of the connection go on.
pub(crate) async fn serve_h2<T>(ctx: ProxyContext, io: T, peer: SocketAddr, route: Route)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    server
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(
            u32::try_from(ctx.limits.max_header_bytes.max(8192)).unwrap_or(u32::MAX),
        );
    let svc = service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let route = route.clone();
        async move { Ok::<_, Infallible>(route_request(ctx, peer, route, req).await) }
    });
    if let Err(e) = server.serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!(%peer, error = %e, "inspected HTTP/2 connection ended with an error");
    }
}

/// What a request inside an inspected HTTP/2 session may not carry past the h2 codec's own
/// checks: a `:scheme` other than `https` (it arrived over TLS), or CONNECT (a tunnel inside
/// the tunnel would carry bytes no path decides). A request without `:authority` has no
/// scheme in its URI (hyper keeps `:scheme` only beside an authority); it names its host in
/// a Host header, checked as any other.
pub(super) fn h2_pseudo(req: &http::request::Parts) -> Result<(), Refusal> {
    if req.method == http::Method::CONNECT {
        return Err(Refusal::new(
            Why::InvalidHttpRequest,
            "CONNECT is not forwarded inside an inspected HTTP/2 session",
        ));
    }
    if req.uri.authority().is_some() && req.uri.scheme_str() != Some("https") {
        return Err(Refusal::new(
            Why::InvalidHttpRequest,
            format!(
                ":scheme must be https inside TLS, not {:?}",
                req.uri.scheme_str().unwrap_or("")
            ),
        ));
    }
    Ok(())
}

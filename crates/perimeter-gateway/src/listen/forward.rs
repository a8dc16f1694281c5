//! Forward plain HTTP, request by request: absolute-form requests to the explicit proxy,
//! plaintext HTTP inside a CONNECT tunnel, and plaintext HTTP redirected to the transparent
//! listener. Every request goes down the same steps:
//!
//! 1. its target: the absolute URI's authority, the tunnel's target, or the Host header at the
//!    redirected connection's port;
//! 2. one Host header, consistent with that target ([`super::consistency`]);
//! 3. the path normalised and decided with the target, on the snapshot in force now; resolved,
//!    pinned (the tunnel's dialled address, the redirected connection's original address) and
//!    dialled ([`super::dial::admit`]);
//! 4. sent in origin-form over the dialled connection, with hop-by-hop headers removed but
//!    never the Host; the request body is checked against revocation frame by frame, and the
//!    upstream connection closed when a newer policy revokes;
//! 5. the response streamed back; the request's decision event is finished once both its body
//!    and its response are done, so it counts the whole upload.

mod body;
mod h2;
mod upstream;

use std::convert::Infallible;
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use perimeter_policy::normalize_path;
use tokio::io::{AsyncRead, AsyncWrite};

use self::body::{EventBody, Holding, RequestBody, RevokedError, drain};
use self::h2::h2_pseudo;
pub(crate) use self::h2::serve_h2;
use self::upstream::upstream_conn;
pub(crate) use self::upstream::{Kept, Upstream};
use super::consistency::{AtLiteral, check_host};
use super::decide::{decide, private_endpoint};
use super::endpoint;
use super::event::{Draft, SharedDraft, allowed_outcome};
use super::prefixed::Prefixed;
use super::refusal::{ProxyBody, Refusal, Why};
use super::resolve::resolve_and_pin;
use super::revoke::{EndpointRoute, Revocation};
use super::target::{Target, TargetHost};
use super::{GatewayLimits, ProxyContext};
use crate::decision::EventVerdict;

/// The HTTP/1 server settings of client connections.
pub(crate) fn http1_server(limits: &GatewayLimits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    b
}

/// Where the requests of a plaintext connection go.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Inside a CONNECT tunnel: every request must name the tunnel's target (or, for a
    /// literal, a name the policy allows at the dialled address) and goes to `dialled`.
    Tunnel {
        target: Target,
        dialled: IpAddr,
        kept: Kept,
    },
    /// Redirected to the transparent listener: each request's Host (at the original port) is
    /// its destination, pinned to the original address.
    Redirected { original: SocketAddr },
    /// Decrypted from an inspected tunnel ([`super::inspect`]): every request must name the
    /// tunnel's target, is decided with its path, and goes upstream over TLS to `name`,
    /// verified with `tls`.
    Inspected {
        target: Target,
        name: perimeter_policy::Hostname,
        kept: Kept,
        tls: std::sync::Arc<rustls::ClientConfig>,
    },
}

/// Serve the plaintext HTTP requests of a connection (`first`: its bytes already read).
pub(crate) async fn serve_http<T>(
    ctx: ProxyContext,
    io: T,
    first: Bytes,
    peer: SocketAddr,
    route: Route,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let server = http1_server(&ctx.limits);
    let svc = service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let route = route.clone();
        async move { Ok::<_, Infallible>(route_request(ctx, peer, route, req).await) }
    });
    let conn = server.serve_connection(TokioIo::new(Prefixed::new(first, io)), svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "plaintext HTTP connection ended with an error");
    }
}

async fn route_request(
    ctx: ProxyContext,
    peer: SocketAddr,
    route: Route,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    match route {
        Route::Tunnel {
            target,
            dialled,
            kept,
        } => {
            let draft = Draft::new(&ctx, peer, target.host.to_string(), target.port);
            let port = target.port;
            let how = How {
                port_if_omitted: port,
                pin: Some(dialled),
                at_literal: AtLiteral::AllowedNames,
                kept: Some(kept),
                tls: None,
            };
            forward(ctx, draft, req, target, how).await
        }
        Route::Redirected { original } => redirected(ctx, peer, original, req).await,
        Route::Inspected {
            target,
            name,
            kept,
            tls,
        } => {
            let draft = Draft::new(&ctx, peer, target.host.to_string(), target.port);
            let how = How {
                port_if_omitted: target.port,
                pin: None,
                at_literal: AtLiteral::OnlyItself,
                kept: Some(kept),
                tls: Some((tls, name)),
            };
            forward(ctx, draft, req, target, how).await
        }
    }
}

/// A request redirected to the transparent listener: its Host (or, without one, the original
/// address) at the original port.
async fn redirected(
    ctx: ProxyContext,
    peer: SocketAddr,
    original: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let mut draft = Draft::new(&ctx, peer, original.ip().to_string(), original.port());
    let host = match single_host(req.headers()) {
        Err(r) => return draft.refuse(r),
        Ok(h) => h.cloned(),
    };
    let target = match &host {
        None => Target {
            host: TargetHost::Ip(original.ip()),
            port: original.port(),
        },
        Some(value) => {
            let parsed = value
                .to_str()
                .map_err(|_| "not ASCII text".to_string())
                .and_then(|v| Target::parse_host_header(v).map_err(|e| e.to_string()));
            match parsed {
                Ok((host, _)) => Target {
                    host,
                    port: original.port(),
                },
                Err(e) => {
                    draft.sni_or_host = Some(String::from_utf8_lossy(value.as_bytes()).into());
                    return draft.refuse(Refusal::new(
                        Why::HostMismatch,
                        format!("the Host header is not valid: {e}"),
                    ));
                }
            }
        }
    };
    draft.destination = target.host.to_string();
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return draft.refuse(Refusal::new(
            Why::AbsoluteFormToTransparent,
            "requests redirected to the gateway are sent in origin-form (GET /path)",
        ));
    }
    let how = How {
        port_if_omitted: original.port(),
        pin: Some(original.ip()),
        at_literal: AtLiteral::OnlyItself,
        kept: None,
        tls: None,
    };
    forward(ctx, draft, req, target, how).await
}

/// An absolute-form request to the explicit proxy (`GET http://host/path`).
pub(crate) async fn absolute_form(
    ctx: ProxyContext,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let mut draft = Draft::new(&ctx, peer, authority.clone(), 0);
    if uri.scheme_str() != Some("http") {
        return draft.refuse(Refusal::new(
            Why::Head(crate::http_head::HeadError::UnsupportedScheme),
            "only http:// is forwarded in absolute form; use CONNECT (HTTPS_PROXY) for https://",
        ));
    }
    let target = match Target::parse_authority(&authority, Some(80)) {
        Ok(t) => t,
        Err(e) => return draft.refuse(e.refusal()),
    };
    draft.destination = target.host.to_string();
    draft.port = target.port;
    let how = How {
        port_if_omitted: 80,
        pin: None,
        at_literal: AtLiteral::OnlyItself,
        kept: None,
        tls: None,
    };
    forward(ctx, draft, req, target, how).await
}

/// How a request's Host is checked and where it may go.
struct How {
    /// The port a Host without one names.
    port_if_omitted: u16,
    /// The only address that may be dialled.
    pin: Option<IpAddr>,
    at_literal: AtLiteral,
    /// The tunnel's upstream connection, reused between its requests.
    kept: Option<Kept>,
    /// Upstream over TLS to this name, verified with this configuration (inspected tunnels).
    tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        perimeter_policy::Hostname,
    )>,
}

/// The one Host header of a request, if any.
pub(crate) fn single_host(headers: &HeaderMap) -> Result<Option<&HeaderValue>, Refusal> {
    let mut all = headers.get_all(header::HOST).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(Refusal::new(
            Why::MultipleHostHeaders,
            "more than one Host header",
        ));
    }
    Ok(first)
}

/// Forward one request to `target`. An HTTP/2 request refused before its body was read has the
/// body read first (up to 1 MiB, for 2 s), so that a small refused upload ends as usual: some
/// clients (curl 7.88) take any reset during their upload for a failed transfer and never show
/// the 403. A longer body is kept until the answer is sent: dropping it before would reset the
/// stream (`CANCEL`) ahead of the answer; after it, the reset is the early answer RFC 9113
/// section 8.1 allows (`NO_ERROR`).
async fn forward(
    ctx: ProxyContext,
    draft: Draft,
    req: Request<Incoming>,
    target: Target,
    how: How,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let h2 = parts.version == http::Version::HTTP_2;
    let mut body = Some(body);
    let response = forward_parts(ctx, draft, parts, &mut body, target, how).await;
    match body {
        None => response,
        Some(mut unread) => {
            if h2 {
                // A small refused upload is read to its end first, so that the stream closes
                // as usual (some clients take any reset during their upload for a failure).
                drain(&mut unread).await;
            }
            response.map(|answer| {
                Holding {
                    inner: answer,
                    _request: unread,
                }
                .boxed()
            })
        }
    }
}

/// [`forward`] on the request's head; takes `body` only to send it upstream.
async fn forward_parts(
    ctx: ProxyContext,
    mut draft: Draft,
    parts: http::request::Parts,
    body: &mut Option<Incoming>,
    target: Target,
    how: How,
) -> Response<ProxyBody> {
    let snap = ctx.snapshots.borrow().clone();
    draft.cluster = snap.cluster_id().to_string();
    draft.method = Some(parts.method.to_string());
    let uri = parts.uri.clone();
    let host_header = match single_host(&parts.headers) {
        Err(r) => return draft.refuse(r),
        Ok(h) => h.cloned(),
    };
    // An HTTP/2 request names its host in `:authority` (hyper puts it in the URI); a Host
    // beside it must name the same target. Both are checked.
    let h2 = parts.version == http::Version::HTTP_2;
    if h2 {
        if let Err(r) = h2_pseudo(&parts) {
            return draft.refuse(r);
        }
    } else if parts.method == http::Method::CONNECT {
        return draft.refuse(Refusal::new(
            Why::InvalidHttpRequest,
            "CONNECT is not forwarded inside a tunnel",
        ));
    }
    let authority = if h2 {
        uri.authority().map(|a| HeaderValue::from_str(a.as_str()))
    } else {
        None
    };
    let named: Vec<HeaderValue> = match authority {
        Some(Err(_)) => {
            return draft.refuse(Refusal::new(
                Why::HostMismatch,
                ":authority is not a valid header value",
            ));
        }
        Some(Ok(a)) => std::iter::once(a).chain(host_header.clone()).collect(),
        None => host_header.iter().cloned().collect(),
    };
    for h in &named {
        draft.sni_or_host = Some(String::from_utf8_lossy(h.as_bytes()).into_owned());
        let checked = check_host(
            &ctx,
            &snap,
            &target,
            how.pin,
            h.as_bytes(),
            how.port_if_omitted,
            how.at_literal,
        )
        .await;
        if let Err(r) = checked {
            return draft.refuse(r);
        }
    }
    if let Some(h) = named.first() {
        draft.sni_or_host = Some(String::from_utf8_lossy(h.as_bytes()).into_owned());
    }
    let path = match normalize_path(uri.path()) {
        Ok(p) => p,
        Err(e) => return draft.refuse(Refusal::new(Why::InvalidPath, e.to_string())),
    };
    draft.path = Some(path.clone());
    let path_text = path.clone();
    if double_encoded(&path) && governed_by_path_rules(&snap, &target) {
        return draft.refuse(double_encoded_refusal(&path));
    }
    let origin_form = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    let Ok(origin_form) = origin_form.parse::<Uri>() else {
        return draft.refuse(Refusal::new(
            Why::InvalidPath,
            "the request path cannot be forwarded",
        ));
    };
    let decided = match decide(snap, target.clone(), Some(path)) {
        Ok(d) => d,
        Err(r) => return draft.refuse(r),
    };
    let (outcome, upstream_addr, revocation, watch, kept) = if let Some(id) = decided.endpoint() {
        // Plain HTTP to a private endpoint (absolute-form through the explicit proxy): to the
        // backend of its port, as a tunnel to it would go. A redirected connection's later
        // request that names an endpoint is not one the transparent listener routed.
        if how.pin.is_some() || how.kept.is_some() {
            return draft.refuse(private_endpoint());
        }
        let routed = match endpoint::route(
            &ctx,
            decided.snap.clone(),
            decided.target.clone(),
            id.clone(),
        )
        .await
        {
            Ok(r) => r,
            Err(r) => return draft.refuse(r),
        };
        let Some((mut stream, addr, backend)) = routed.upstream else {
            return draft.refuse(Refusal::new(
                Why::PrivateEndpointServerName,
                "this port of the private endpoint is routed by TLS server name: plaintext HTTP names no backend",
            ));
        };
        let local = SocketAddr::new(addr.ip(), target.port);
        if let Err(e) =
            endpoint::preamble(&decided.snap, &id, &mut stream, draft.source, local).await
        {
            return draft.refuse(Refusal::new(
                Why::UpstreamFailed,
                format!("while opening backend {backend}: {e}"),
            ));
        }
        draft.rule = Some(format!("private-endpoint:{id}"));
        draft.endpoint = Some(id.clone());
        let watch = Revocation::for_endpoint(
            &ctx,
            decided.snap.clone(),
            decided.target.clone(),
            addr,
            EndpointRoute {
                id,
                backend,
                by_port_in: None,
            },
        );
        let outcome = (EventVerdict::Allowed, endpoint::ROUTED);
        (
            outcome,
            addr,
            watch.clone(),
            watch,
            Some(Upstream::Fresh(stream, addr)),
        )
    } else {
        let chosen = match resolve_and_pin(&ctx, &decided, how.pin).await {
            Ok(c) => c,
            Err(r) => return draft.refuse(r),
        };
        // Allowed by a rule with paths (whatever the name alone said: a CIDR rule on the port
        // leaves it to the addresses), the path must not be one a server decoding twice
        // would read as another.
        if double_encoded(&path_text)
            && chosen
                .decision
                .rule()
                .is_some_and(perimeter_policy::RuleRef::has_paths)
        {
            return draft.refuse(double_encoded_refusal(&path_text));
        }
        draft.allowed_by(&chosen.decision);
        let outcome = allowed_outcome(&chosen.decision);
        let upstream_addr = SocketAddr::new(chosen.addr, target.port);
        let revocation = Revocation::new(
            &ctx,
            decided.snap.clone(),
            decided.target.clone(),
            upstream_addr,
            decided.path.clone(),
        );
        // The connection outlives a request when a tunnel keeps it: watched for the target
        // without a path (a tunnel is admitted without one; each request's path is checked by
        // its own body's revocation).
        let watch = Revocation::new(
            &ctx,
            decided.snap.clone(),
            decided.target.clone(),
            upstream_addr,
            None,
        );
        // The connection: the tunnel's own (kept between its requests), else a new one.
        let kept = how.kept.as_ref().and_then(|k| k.take(upstream_addr));
        (outcome, upstream_addr, revocation, watch, kept)
    };
    let (mut sender, activity) =
        match upstream_conn(&ctx, kept, upstream_addr, watch, how.tls.clone()).await {
            Ok(c) => c,
            Err(r) => return draft.refuse(r),
        };
    // The Host a request without one gets (the :authority of an HTTP/2 upstream's).
    let host = if how.tls.is_some() {
        host_value_tls(&target)
    } else {
        host_value(&target)
    };
    let upstream_uri = if sender.is_h2() {
        match format!("https://{host}{origin_form}").parse::<Uri>() {
            Ok(u) => u,
            Err(_) => {
                return draft.refuse(Refusal::new(
                    Why::InvalidPath,
                    "the request path cannot be forwarded",
                ));
            }
        }
    } else {
        origin_form
    };
    // Two parts finish the event: the request body and the response. Its bytes are this
    // request's share of a connection that may serve several.
    let shared = SharedDraft::new(draft, outcome, 2, activity);
    let mut parts = parts;
    let Some(body) = body.take() else {
        shared.set_outcome((EventVerdict::Failed, Why::UpstreamFailed.as_str()));
        shared.part_done();
        shared.part_done();
        return Refusal::new(Why::UpstreamFailed, "the request body was already taken").response();
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.uri = upstream_uri;
    if sender.is_h2() {
        // HTTP/2 upstream: the target in `:scheme` and `:authority`, no Host beside it.
        parts.headers.remove(header::HOST);
        parts.version = http::Version::HTTP_2;
    } else {
        parts.version = http::Version::HTTP_11;
        if host_header.is_none()
            && let Ok(v) = HeaderValue::from_str(&host)
        {
            parts.headers.insert(header::HOST, v);
        }
    }
    let body = RequestBody {
        inner: body,
        revocation,
        shared: Some(shared.clone()),
    };
    let mut watch = body.revocation.clone();
    let sent = tokio::time::timeout(
        ctx.limits.response_head_timeout,
        sender.send_request(Request::from_parts(parts, body)),
    )
    .await;
    let mut failed = |why: Why, message: String| {
        // A failure the revocation caused (the connection closed under it) is the revocation.
        let r = match watch.check() {
            Err(revoked) => Refusal::new(Why::PolicyRevoked, revoked.to_string()),
            Ok(()) => Refusal::new(why, message),
        };
        shared.set_outcome((r.why.verdict(), r.why.as_str()));
        shared.part_done();
        r.response()
    };
    let response = match sent {
        Err(_) => {
            return failed(
                Why::UpstreamTimeout,
                format!(
                    "upstream {upstream_addr} did not answer within {:?}",
                    ctx.limits.response_head_timeout
                ),
            );
        }
        Ok(Err(e)) if e.source().is_some_and(|s| s.is::<RevokedError>()) => {
            return failed(
                Why::PolicyRevoked,
                "the new policy no longer allows this request".into(),
            );
        }
        Ok(Err(e)) => {
            return failed(
                Why::UpstreamFailed,
                format!("while forwarding to upstream {upstream_addr}: {e}"),
            );
        }
        Ok(Ok(r)) => r,
    };
    // The connection may serve the tunnel's next request once this response is read.
    if let Some(k) = &how.kept {
        k.keep(Upstream::Open {
            sender,
            addr: upstream_addr,
            activity: shared.activity().clone(),
        });
    }
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = EventBody {
        inner: body,
        shared: Some(shared),
    };
    Response::from_parts(parts, body.boxed())
}

fn double_encoded_refusal(path: &str) -> Refusal {
    Refusal::new(
        Why::DoubleEncodedPath,
        format!(
            "{path} is percent-encoded twice (%25 followed by an escape); path rules govern this destination, and a server that decodes twice would see another path"
        ),
    )
}

/// Whether a normalised path holds a percent-escape of a percent-escape (`%252F`, `%252e`).
fn double_encoded(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| {
        w[0] == b'%' && w[1] == b'2' && w[2] == b'5' && w[3..].iter().all(u8::is_ascii_hexdigit)
    })
}

/// Whether path rules decide for `target`: without a path, only rules with paths would allow
/// it (the decision is then `path_needs_tls_inspection`).
pub(crate) fn governed_by_path_rules(snap: &perimeter_policy::Snapshot, target: &Target) -> bool {
    let without_path = snap.decide_target(target.destination(), target.port, None);
    without_path
        .final_decision()
        .is_some_and(|d| d.reason() == perimeter_policy::Reason::PathNeedsTlsInspection)
}

/// The `:authority` of an HTTP/2 request upstream: the target, with its port unless 443.
fn host_value_tls(target: &Target) -> String {
    if target.port == 443 {
        match &target.host {
            TargetHost::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.to_string(),
        }
    } else {
        target.to_string()
    }
}

/// The Host of a request that came without one: the target, with its port unless 80.
fn host_value(target: &Target) -> String {
    if target.port == 80 {
        match &target.host {
            TargetHost::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.to_string(),
        }
    } else {
        target.to_string()
    }
}

/// Hop-by-hop headers, never forwarded (RFC 9110 section 7.6.1, plus the proxy's own).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Remove hop-by-hop headers, and those `Connection` lists, except the Host: the decision was
/// taken on it, and a request without it would be served by the upstream's default virtual
/// host (`Connection: host` must not undo the Host check).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|name| *name != header::HOST)
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests;

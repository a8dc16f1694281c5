//! The explicit proxy: `CONNECT host:port` tunnels and absolute-form plain HTTP
//! (`GET http://host/path`), for workloads that use the gateway as `HTTPS_PROXY`/`HTTP_PROXY`.
//!
//! One connection, top to bottom:
//!
//! 1. **accept** ([`super::serve_loop`]): a slot of `max_connections`, else 503;
//! 2. **read the target** ([`head`], [`super::target`]): the first request head is read and
//!    parsed strictly; a plain CONNECT is served here, anything else by hyper with every byte.
//!    Hostnames are normalised, IP literals only in canonical spellings; the Host header must
//!    agree ([`super::consistency`]). Every refusal carries its reason.
//! 3. **decide** ([`super::decide`]), 4. **resolve and pin** ([`super::resolve`]),
//!    5. **dial** ([`super::dial`]): a deny is 403, a DNS or connect failure 502/504;
//! 6. **first bytes** and 7. **tunnel, with revocation** ([`super::tunnel`]) for CONNECT after
//!    its `200`; absolute-form requests are **forwarded** ([`super::forward`]) request by
//!    request, each with its own decision.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use self::head::{FirstHead, HostField};
use super::consistency::{AtLiteral, check_host};
use super::dial::{Admission, Admitted, admit};
use super::endpoint;
use super::event::{Draft, allowed_outcome};
use super::forward::{
    Kept, Route, absolute_form, governed_by_path_rules, http1_server, single_host,
};
use super::inspect;
use super::prefixed::Prefixed;
use super::refusal::{ProxyBody, Refusal, Then, Why, empty};
use super::target::{Target, TargetHost};
use super::tunnel::{TunnelClient, tunnel};
use super::{ProxyContext, serve_loop};
use crate::decision::EventVerdict;

pub(super) mod head;

/// Serve the explicit proxy on `listener` until `shutdown` resolves. Connections in flight are
/// left to finish on their own (tunnels end with their clients or the idle timeout).
pub async fn serve(
    listener: TcpListener,
    ctx: ProxyContext,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    serve_loop(
        listener,
        ctx,
        "proxy",
        shutdown,
        |ctx, stream, peer, permit| tokio::spawn(serve_connection(ctx, stream, peer, permit)),
        |stream| {
            tokio::spawn(overloaded(stream));
        },
    )
    .await
}

/// Answer 503 to a connection over the limit, without parsing anything it sends.
async fn overloaded(stream: TcpStream) {
    let r = Refusal::new(
        Why::GatewayOverloaded,
        "the gateway is serving as many connections as it may; retry later",
    );
    Box::pin(answer_and_close(stream, &r.to_bytes(Then::Close))).await;
}

/// Send a last answer and close, draining what the client still sends for a moment (at most
/// 2 s) so that it reads the answer instead of a reset.
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

pub(super) async fn serve_connection(
    ctx: ProxyContext,
    mut stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    // The first request head is read here: a plain CONNECT is served without hyper (its
    // tunnel runs in this task, on the socket); anything else goes to hyper with every byte.
    let max = ctx.limits.max_header_bytes.max(8192);
    let first = Box::pin(tokio::time::timeout(
        ctx.limits.header_read_timeout,
        head::read_first_head(&mut stream, max),
    ))
    .await;
    let prefix = match first {
        Err(_) => {
            tracing::debug!(%peer, "no complete request head in time; closing");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "client connection failed before a request head");
            return;
        }
        Ok(Ok(FirstHead::Closed)) => return,
        Ok(Ok(FirstHead::Other(bytes))) => bytes,
        Ok(Ok(FirstHead::Refused(e))) => {
            let draft = Draft::new(&ctx, peer, "-".to_string(), 0);
            let r = Refusal::head(e);
            let answer = r.to_bytes(Then::Close);
            draft.finish_why(&r.why, 0, 0);
            return Box::pin(answer_and_close(stream, &answer)).await;
        }
        Ok(Ok(FirstHead::Connect {
            authority,
            host,
            rest,
        })) => match Box::pin(admit_connect(&ctx, peer, Some(&authority), host)).await {
            Ok((Connect::Inspect(i), draft)) => {
                if let Err(e) = stream.write_all(head::ESTABLISHED).await {
                    tracing::debug!(%peer, error = %e, "client left before the tunnel opened");
                    return draft.finish(EventVerdict::Allowed, "tls_inspection", 0, 0);
                }
                let serve = inspect::serve(
                    ctx,
                    i.inspector,
                    i.target,
                    i.name,
                    draft,
                    stream,
                    rest,
                    peer,
                );
                return Box::pin(serve).await;
            }
            Ok((Connect::Admitted(admission), draft)) => {
                if let Err(e) = stream.write_all(head::ESTABLISHED).await {
                    tracing::debug!(%peer, error = %e, "client left before the tunnel opened");
                    return abandon(admission, draft);
                }
                let client = TunnelClient::Socket(stream);
                // Boxed, as every phase: the connection's task holds only the phase it is in
                // (no wrapper around the phase: an idle tunnel holds its own state only).
                return match admission {
                    Admission::Public(admitted) => {
                        let route = tunnel_route(&admitted);
                        Box::pin(tunnel(ctx, admitted, draft, client, rest, route)).await
                    }
                    Admission::Endpoint(routed) => {
                        Box::pin(endpoint::forward(ctx, routed, draft, client, rest)).await
                    }
                };
            }
            Err((draft, r)) => {
                let answer = r.to_bytes(Then::KeepAlive);
                draft.finish_why(&r.why, 0, 0);
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
                // Keep-alive: whatever the client sends next is hyper's.
                rest
            }
        },
    };
    // Boxed, as every phase: the connection's task holds only the phase it is in.
    Box::pin(serve_hyper(ctx, stream, prefix, peer, permit)).await;
}

/// Everything but a plain CONNECT first: hyper serves the connection (`prefix`: the bytes
/// already read), request by request.
async fn serve_hyper(
    ctx: ProxyContext,
    stream: TcpStream,
    prefix: Bytes,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let server = http1_server(&ctx.limits);
    let permit = Arc::new(permit);
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        let permit = permit.clone();
        async move { Ok::<_, Infallible>(handle(ctx, peer, permit, req).await) }
    });
    let conn = server
        .serve_connection(TokioIo::new(Prefixed::new(prefix, stream)), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// Where plaintext HTTP inside a tunnel goes: the tunnel's target, at the dialled address.
fn tunnel_route(admitted: &Admitted) -> Route {
    Route::Tunnel {
        target: admitted.target.clone(),
        dialled: admitted.addr.ip(),
        kept: Kept::default(),
    }
}

/// The client left before the tunnel opened: the decision stands, nothing moved.
fn abandon(admission: Admission, mut draft: Draft) {
    match admission {
        Admission::Public(admitted) => {
            draft.allowed_by(&admitted.decision);
            let (verdict, reason) = allowed_outcome(&admitted.decision);
            draft.finish(verdict, reason, 0, 0);
        }
        Admission::Endpoint(_) => endpoint::abandon(draft),
    }
}

/// A request hyper parsed.
async fn handle(
    ctx: ProxyContext,
    peer: SocketAddr,
    permit: Arc<OwnedSemaphorePermit>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return handle_connect(ctx, peer, permit, req).await;
    }
    if req.uri().scheme().is_some() {
        return absolute_form(ctx, peer, req).await;
    }
    let draft = Draft::new(&ctx, peer, String::from("-"), 0);
    draft.refuse(Refusal::new(
        Why::OriginFormToProxy,
        "this is an egress proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port, e.g. through HTTP_PROXY / HTTPS_PROXY",
    ))
}

/// A CONNECT that hyper parsed (one the fast path does not take).
async fn handle_connect(
    ctx: ProxyContext,
    peer: SocketAddr,
    permit: Arc<OwnedSemaphorePermit>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let host = match single_host(req.headers()) {
        Err(_) => HostField::Many,
        Ok(None) => HostField::None,
        Ok(Some(v)) => HostField::One(Bytes::copy_from_slice(v.as_bytes())),
    };
    let (admission, draft) = match admit_connect(&ctx, peer, authority.as_deref(), host).await {
        Ok((Connect::Admitted(a), draft)) => (a, draft),
        Ok((Connect::Inspect(i), draft)) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let _permit = permit;
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let io = TokioIo::new(upgraded);
                        let serve = inspect::serve(
                            ctx,
                            i.inspector,
                            i.target,
                            i.name,
                            draft,
                            io,
                            Bytes::new(),
                            peer,
                        );
                        Box::pin(serve).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "CONNECT upgrade failed");
                        draft.finish(EventVerdict::Allowed, "tls_inspection", 0, 0);
                    }
                }
            });
            return Response::new(empty());
        }
        Err((draft, r)) => return draft.refuse(r),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _permit = permit;
        match on_upgrade.await {
            Ok(upgraded) => {
                let (client, already) = TunnelClient::from_upgraded(upgraded);
                match admission {
                    Admission::Public(admitted) => {
                        let route = tunnel_route(&admitted);
                        Box::pin(tunnel(ctx, admitted, draft, client, already, route)).await
                    }
                    Admission::Endpoint(routed) => {
                        Box::pin(endpoint::forward(ctx, routed, draft, client, already)).await
                    }
                }
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "CONNECT upgrade failed");
                abandon(admission, draft);
            }
        }
    });
    Response::new(empty())
}

/// What an admitted CONNECT becomes.
enum Connect {
    /// A tunnel (or a private endpoint's), dialled.
    Admitted(Admission),
    /// A tunnel the gateway terminates ([`inspect`]): only rules with paths allow the
    /// destination, and the cluster inspects TLS. Nothing is dialled yet: each request is
    /// decided and dialled on its own.
    Inspect(Inspect),
}

struct Inspect {
    inspector: std::sync::Arc<inspect::Inspector>,
    target: Target,
    name: perimeter_policy::Hostname,
}

/// Read the target of a CONNECT (`authority` is its request target, `host` its Host header),
/// check the Host, decide, resolve and dial: the one admission of both the hyper path and the
/// fast path of [`head`]. A refusal comes with the draft of its decision event.
async fn admit_connect(
    ctx: &ProxyContext,
    peer: SocketAddr,
    authority: Option<&str>,
    host: HostField,
) -> Result<(Connect, Draft), (Draft, Refusal)> {
    let snap = ctx.snapshots.borrow().clone();
    let mut draft = Draft::on(ctx, &snap, peer, authority.unwrap_or("-").to_string(), 0);
    let Some(authority) = authority else {
        return Err((
            draft,
            Refusal::head(crate::http_head::HeadError::InvalidTarget(
                "CONNECT needs host:port",
            )),
        ));
    };
    let target = match Target::parse_authority(authority, None) {
        Ok(t) => t,
        Err(e) => return Err((draft, e.refusal())),
    };
    draft.destination = target.host.to_string();
    draft.port = target.port;
    let host_checked = match &host {
        HostField::None => Ok(()),
        HostField::One(value) => {
            draft.sni_or_host = Some(String::from_utf8_lossy(value).into_owned());
            check_host(
                ctx,
                &snap,
                &target,
                None,
                value,
                target.port,
                AtLiteral::OnlyItself,
            )
            .await
        }
        HostField::Many => Err(Refusal::new(
            Why::MultipleHostHeaders,
            "more than one Host header",
        )),
    };
    if let Err(r) = host_checked {
        return Err((draft, r));
    }
    if governed_by_path_rules(&snap, &target) {
        return inspect_or_refuse(ctx, &snap, target, draft, None);
    }
    match admit(ctx, snap.clone(), target.clone(), None).await {
        Ok(a) => Ok((Connect::Admitted(a), draft)),
        // Undecided by the name alone (a CIDR rule names the port, and may cover its address),
        // the addresses then showed that only rules with paths allow it.
        Err(r) if r.why == Why::Policy(perimeter_policy::Reason::PathNeedsTlsInspection) => {
            inspect_or_refuse(ctx, &snap, target, draft, Some(r))
        }
        Err(r) => Err((draft, r)),
    }
}

/// A destination that only rules with paths allow: inspected when the cluster inspects TLS and
/// the name is not on its never-inspect list; else refused (`refused`, or
/// `path_needs_tls_inspection`).
#[allow(clippy::result_large_err)]
fn inspect_or_refuse(
    ctx: &ProxyContext,
    snap: &perimeter_policy::Snapshot,
    target: Target,
    draft: Draft,
    refused: Option<Refusal>,
) -> Result<(Connect, Draft), (Draft, Refusal)> {
    let refused = || {
        refused.unwrap_or_else(|| Refusal::policy(perimeter_policy::Reason::PathNeedsTlsInspection))
    };
    let (Some(inspection), TargetHost::Name(name)) = (snap.inspection(), &target.host) else {
        return Err((draft, refused()));
    };
    if inspection.never_inspects(name) {
        return Err((
            draft,
            Refusal::new(
                Why::NeverInspected,
                format!(
                    "only rules with paths allow {name}, and it is on the cluster's never-inspect list: its paths cannot be seen"
                ),
            ),
        ));
    }
    match ctx.inspection.inspector(inspection) {
        Ok(inspector) => Ok((
            Connect::Inspect(Inspect {
                inspector,
                name: name.clone(),
                target,
            }),
            draft,
        )),
        Err(e) => {
            tracing::error!(error = %e, "TLS inspection is on but its CA cannot be used");
            Err((draft, Refusal::new(Why::InspectionUnavailable, e)))
        }
    }
}

//! The transparent listener: connections that the host's firewall redirected to the gateway
//! (`iptables -t nat ... -j REDIRECT`), from workloads that know nothing of a proxy.
//!
//! The destination is what the client's first bytes name, never just the address it dialled:
//!
//! 1. The original destination comes from `SO_ORIGINAL_DST`; a connection that was not
//!    redirected (it names the listener itself) is refused.
//! 2. The client's first bytes are read (bounded in size and time) before anything is dialled.
//!    - A TLS ClientHello with an SNI: the SNI is the destination. It is decided with the
//!      original port, resolved by the gateway, and the original destination address must be
//!      among its addresses (else `original_destination_mismatch`); only that address is
//!      dialled, after the address guard. Then the bytes are relayed.
//!    - A plaintext HTTP request: served request by request as the explicit proxy's
//!      absolute-form requests are, with the Host header as the destination (its port, when
//!      given, must be the original port) and the same pinning to the original address, so
//!      path rules hold for every request of a keep-alive connection.
//!    - Anything else (TLS without SNI, another protocol): the original address is the
//!      destination, allowed only as an IP destination (a CIDR rule, or ALLOW_ALL for an
//!      ordinary address).
//!    - Nothing for `server_first_after` (a client waiting for the server's greeting: SMTP,
//!      MySQL, FTP): the original address is decided as an IP destination and dialled; the
//!      greeting is passed on and the client's first bytes are checked when they come, before
//!      they go upstream.
//! 3. A refusal closes the connection (plaintext HTTP gets the explicit proxy's 403/400/502
//!    answer first); the decision event says why.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ProxyContext;
use super::connect::head::Prefixed;
use super::connect::{
    Draft, FirstBytes, Opening, Refusal, TunnelClient, allowed_outcome, check_first_bytes, forward,
    opening, read_first_bytes, resolve_and_dial, revoked,
};
use super::relay::{Activity, RelayEnd, relay};
use super::target::{Target, TargetHost};
use crate::decision::EventVerdict;
use crate::original_dst::original_dst;

/// Serve redirected connections on `listener` until `shutdown` resolves.
pub async fn serve_transparent(
    listener: TcpListener,
    ctx: ProxyContext,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = super::accept(&listener, "transparent") => a,
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve_redirected(ctx.clone(), stream, peer, permit));
            }
            Err(_) => {
                // No answer is possible without knowing the protocol: close at once.
                metrics::counter!("perimeter_gateway_overloaded_total").increment(1);
                drop(stream);
            }
        }
    }
}

async fn serve_redirected(
    ctx: ProxyContext,
    stream: TcpStream,
    peer: SocketAddr,
    // Held until the connection ends: it is one of `max_connections`.
    _permit: OwnedSemaphorePermit,
) {
    let mut draft = Draft::new(&ctx, peer, "-".to_string(), 0);
    let original = match original_dst(&stream) {
        Ok(a) if Some(a) != stream.local_addr().ok() => a,
        Ok(_) | Err(_) => {
            tracing::info!(%peer, "refusing a connection to the transparent listener that no firewall rule redirected");
            return draft.finish(EventVerdict::Denied, "not_redirected", 0, 0);
        }
    };
    // Unwrap an IPv4 client of a dual-stack socket.
    let original = SocketAddr::new(original.ip().to_canonical(), original.port());
    draft.destination = original.ip().to_string();
    draft.port = original.port();

    let max = ctx.limits.max_header_bytes.max(8192);
    let mut client = TunnelClient::Socket(stream);
    let mut buf = BytesMut::with_capacity(4096);
    // A client that says nothing at first may be waiting for the server to speak (SMTP,
    // MySQL, FTP): past `server_first_after`, its original address is the destination.
    let limits = &ctx.limits;
    let grace = limits.server_first_after.min(limits.first_bytes_timeout);
    let mut read = tokio::time::timeout(grace, read_first_bytes(&mut client, &mut buf, max)).await;
    if read.is_err() && !buf.is_empty() {
        let rest = limits.first_bytes_timeout.saturating_sub(grace);
        read = tokio::time::timeout(rest, read_first_bytes(&mut client, &mut buf, max)).await;
    }
    let TunnelClient::Socket(stream) = client else {
        unreachable!("the transparent listener's client is always a socket")
    };
    let first = match read {
        Err(_) if buf.is_empty() => {
            let target = Target {
                host: TargetHost::Ip(original.ip()),
                port: original.port(),
            };
            return relay_to(ctx, draft, target, original, stream, buf).await;
        }
        Err(_) => {
            tracing::info!(%peer, %original, "closing redirected connection: the client sent nothing to check in time");
            return draft.finish(EventVerdict::Denied, "first_bytes_timeout", 0, 0);
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "redirected client failed before its first bytes");
            return draft.finish(EventVerdict::Denied, "client_closed", 0, 0);
        }
        Ok(Ok(FirstBytes::NeedMore)) if buf.is_empty() => {
            return draft.finish(EventVerdict::Denied, "client_closed", 0, 0);
        }
        Ok(Ok(FirstBytes::NeedMore)) => {
            return draft.finish(EventVerdict::Denied, "incomplete_first_bytes", 0, 0);
        }
        Ok(Ok(FirstBytes::Invalid(why))) => {
            return draft.finish(EventVerdict::Denied, why, 0, 0);
        }
        Ok(Ok(first)) => first,
    };
    match first {
        FirstBytes::Http(_) => serve_http(ctx, stream, buf.freeze(), peer, original, None).await,
        FirstBytes::Tls(Some(sni)) => {
            draft.sni_or_host = Some(sni.clone());
            let target = match sni.parse() {
                Ok(name) => Target {
                    host: TargetHost::Name(name),
                    port: original.port(),
                },
                Err(_) => return draft.finish(EventVerdict::Denied, "invalid_sni", 0, 0),
            };
            relay_to(ctx, draft, target, original, stream, buf).await;
        }
        FirstBytes::Tls(None) | FirstBytes::Other => {
            let target = Target {
                host: TargetHost::Ip(original.ip()),
                port: original.port(),
            };
            relay_to(ctx, draft, target, original, stream, buf).await;
        }
        FirstBytes::NeedMore | FirstBytes::Invalid(_) => unreachable!("handled above"),
    }
}

/// Decide, dial the original address and relay: TLS with an SNI, or an IP destination. With
/// no first bytes yet (`first` empty: the client waits for the server), the client's first
/// bytes are read once the upstream is dialled, while the upstream's greeting is passed on,
/// and checked before they go upstream.
async fn relay_to(
    ctx: ProxyContext,
    mut draft: Draft,
    target: Target,
    original: SocketAddr,
    mut client: TcpStream,
    mut first: BytesMut,
) {
    draft.destination = target.host.to_string();
    let snap = ctx.snapshots.borrow().clone();
    draft.cluster = snap.cluster_id().to_string();
    let dialled = match resolve_and_dial(&ctx, &snap, &target, None, Some(original.ip())).await {
        Ok(d) => d,
        Err(r) => {
            tracing::info!(source = %draft.source, destination = %target, %original, reason = %r.reason, "refusing redirected connection: {}", r.message);
            return draft.finish(r.verdict, r.reason, 0, 0);
        }
    };
    draft.rule = dialled.decision.rule().map(|r| r.name.to_string());
    let (verdict, reason) = allowed_outcome(&dialled.decision);
    let addr = dialled.addr;
    let activity = Activity::new();
    if first.is_empty() {
        let opened = opening(&ctx, &mut client, &dialled.stream, &mut first, &activity).await;
        let (up, down) = (activity.up(), activity.down());
        let judged = match opened {
            Opening::TimedOut => {
                tracing::info!(source = %draft.source, %original, "closing redirected connection: the client sent nothing to check in time");
                return draft.finish(EventVerdict::Denied, "first_bytes_timeout", up, down);
            }
            Opening::Failed(direction, e) => {
                tracing::debug!(source = %draft.source, %original, direction = direction.as_str(), error = %e, "redirected connection failed before the client's first bytes");
                return draft.finish(verdict, reason, up, down);
            }
            Opening::First(FirstBytes::NeedMore) if first.is_empty() => {
                return draft.finish(verdict, reason, up, down);
            }
            // Plaintext HTTP after all, the server silent: served request by request.
            Opening::First(FirstBytes::Http(_)) if down == 0 => {
                drop(dialled);
                let peer = draft.source;
                return serve_http(ctx, client, first.freeze(), peer, original, None).await;
            }
            Opening::First(judged) => judged,
        };
        if let FirstBytes::Tls(sni) | FirstBytes::Http(sni) = &judged {
            draft.sni_or_host.clone_from(sni);
        }
        if let Err(why) = check_first_bytes(&ctx, &snap, &target, addr.ip(), &judged) {
            tracing::info!(source = %draft.source, %original, sni_or_host = draft.sni_or_host.as_deref().unwrap_or(""), reason = why, "closing redirected connection: the client's first bytes are not allowed at the address it dialled");
            return draft.finish(EventVerdict::Denied, why, up, down);
        }
    }
    let stop = revoked(&ctx, &snap, &target, addr);
    let end = relay(
        client,
        dialled.stream,
        first.freeze(),
        activity.clone(),
        ctx.limits.idle_timeout,
        stop,
    )
    .await;
    let (verdict, reason) = match end {
        RelayEnd::Stopped(why) => {
            tracing::info!(destination = %target, address = %addr, reason = %why, "closing redirected connection: the new policy no longer allows it");
            (EventVerdict::Denied, "policy_revoked")
        }
        _ => (verdict, reason),
    };
    draft.finish(verdict, reason, activity.up(), activity.down());
}

/// Plaintext HTTP: every request is decided on its Host (and path), pinned to the original
/// address. With `expect` (plaintext HTTP in a CONNECT tunnel), every request must name that
/// target instead.
pub(super) async fn serve_http<T>(
    ctx: ProxyContext,
    io: T,
    first: Bytes,
    peer: SocketAddr,
    original: SocketAddr,
    expect: Option<Target>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = ctx.limits.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let expect = expect.clone();
        async move {
            Ok::<_, Infallible>(match expect {
                Some(target) => {
                    let draft = Draft::new(&ctx, peer, target.host.to_string(), target.port);
                    let port = target.port;
                    forward(ctx, draft, req, target, port, Some(original.ip())).await
                }
                None => handle_request(ctx, peer, original, req).await,
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true)
        .serve_connection(TokioIo::new(Prefixed::new(first, io)), svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "plaintext HTTP connection ended with an error");
    }
}

async fn handle_request(
    ctx: ProxyContext,
    peer: SocketAddr,
    original: SocketAddr,
    req: Request<Incoming>,
) -> http::Response<super::connect::ProxyBody> {
    let mut draft = Draft::new(&ctx, peer, original.ip().to_string(), original.port());
    let host = match super::connect::single_host(req.headers()) {
        Err(r) => return draft.refuse(r),
        Ok(h) => h.and_then(|v| v.to_str().ok()).map(str::to_string),
    };
    // The destination: the Host's name (or literal) at the original port; without a Host, the
    // original address.
    let target = match &host {
        None => Target {
            host: TargetHost::Ip(original.ip()),
            port: original.port(),
        },
        Some(value) => match Target::parse_host_header(value) {
            Ok((host, port)) if port.is_none_or(|p| p == original.port()) => Target {
                host,
                port: original.port(),
            },
            Ok(_) => {
                return draft.refuse(Refusal::client(
                    "host_mismatch",
                    format!(
                        "the Host header {value:?} names a port other than the one dialled ({})",
                        original.port()
                    ),
                ));
            }
            Err(e) => {
                return draft.refuse(Refusal::client(
                    "host_mismatch",
                    format!("the Host header {value:?} is not valid: {e}"),
                ));
            }
        },
    };
    draft.destination = target.host.to_string();
    if req.uri().scheme().is_some() || req.uri().authority().is_some() {
        return draft.refuse(Refusal::client(
            "absolute_form_to_transparent",
            "requests redirected to the gateway are sent in origin-form (GET /path)",
        ));
    }
    let port = target.port;
    forward(ctx, draft, req, target, port, Some(original.ip())).await
}

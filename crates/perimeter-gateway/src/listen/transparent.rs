//! The transparent listener: connections that the host's firewall redirected to the gateway
//! (`iptables -t nat ... -j REDIRECT`), from workloads that know nothing of a proxy.
//!
//! One connection, top to bottom:
//!
//! 1. **accept** ([`super::serve_loop`]); the original destination comes from
//!    `SO_ORIGINAL_DST`, and a connection that was not redirected (it names the listener
//!    itself) is refused.
//! 2. **read the target** from the client's first bytes ([`super::first_bytes`]), bounded in
//!    size and time, before anything is dialled:
//!    - a TLS ClientHello with an SNI: the SNI at the original port (a private endpoint's name
//!      goes to the endpoint, whatever address the client dialled: the DNS listener answers the
//!      transparent address for those names);
//!    - plaintext HTTP: served request by request ([`super::forward`]), each request's Host
//!      at the original port its destination; a first request whose Host names a private
//!      endpoint sends the whole connection to that endpoint ([`super::endpoint`]);
//!    - anything else (TLS without SNI, another protocol): the original address, allowed only
//!      as an IP destination (a CIDR rule, or ALLOW_ALL for an ordinary address);
//!    - nothing for `server_first_after` (a client waiting for the server's greeting: SMTP,
//!      MySQL, FTP): the original address; the client's first bytes are checked when they
//!      come, before they go upstream.
//! 3. **decide**, 4. **resolve and pin**: the original address must be among the addresses
//!    the gateway resolves for the name (else `original_destination_mismatch`) and is the only
//!    one dialled, after the address guard; 5. **dial**.
//! 6. and 7. **first bytes** and **tunnel, with revocation** ([`super::tunnel`]).
//!
//! A refusal closes the connection (plaintext HTTP gets the explicit proxy's 403/400/502
//! answer first); the decision event says why.

use std::io;
use std::net::SocketAddr;

use bytes::BytesMut;
use perimeter_policy::Verdict;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::dial::{Admission, admit};
use super::endpoint;
use super::event::Draft;
use super::first_bytes::{FirstBytes, read_first_bytes};
use super::forward::{Route, serve_http};
use super::refusal::Why;
use super::target::{Target, TargetHost};
use super::tunnel::{TunnelClient, tunnel};
use super::{ProxyContext, serve_loop};
use crate::http_head::{HeadLimits, Host, parse_request_head};
use crate::original_dst::original_dst;

/// Serve redirected connections on `listener` until `shutdown` resolves.
pub async fn serve_transparent(
    listener: TcpListener,
    ctx: ProxyContext,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    serve_loop(
        listener,
        ctx,
        "transparent",
        shutdown,
        |ctx, stream, peer, permit| tokio::spawn(serve_redirected(ctx, stream, peer, permit)),
        // No answer is possible without knowing the protocol: close at once.
        drop,
    )
    .await
}

/// The target of a plaintext HTTP connection whose first request's Host names a private
/// endpoint of the cluster (at the original port), reading the rest of that head if it has not
/// all come yet. `None`: served request by request as any plaintext HTTP.
async fn endpoint_host(
    ctx: &ProxyContext,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    original: SocketAddr,
) -> Option<Target> {
    let limits = HeadLimits {
        max_head_bytes: ctx.limits.max_header_bytes.max(8192),
        max_headers: 100,
    };
    let read_head = async {
        loop {
            match parse_request_head(buf, &limits) {
                Ok(Some(head)) => return Some(head),
                Ok(None) => {}
                Err(_) => return None,
            }
            buf.reserve(4096);
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    };
    let head = tokio::time::timeout(ctx.limits.first_bytes_timeout, read_head)
        .await
        .ok()??;
    let Host::Name(name) = head.destination(original.port())?.host else {
        return None;
    };
    let snap = ctx.snapshots.borrow().clone();
    let target = Target {
        host: TargetHost::Name(name),
        port: original.port(),
    };
    let decided = snap.decide_target(target.destination(), target.port, None);
    match decided.final_decision().map(|d| d.verdict()) {
        Some(Verdict::PrivateEndpoint { .. }) => Some(target),
        _ => None,
    }
}

async fn serve_redirected(
    ctx: ProxyContext,
    mut stream: TcpStream,
    peer: SocketAddr,
    // Held until the connection ends: it is one of `max_connections`.
    _permit: OwnedSemaphorePermit,
) {
    let mut draft = Draft::new(&ctx, peer, "-".to_string(), 0);
    // 1. The original destination.
    let original = match original_dst(&stream) {
        Ok(a) if Some(a) != stream.local_addr().ok() => a,
        Ok(_) | Err(_) => {
            tracing::info!(%peer, "refusing a connection to the transparent listener that no firewall rule redirected");
            return draft.finish_why(&Why::NotRedirected, 0, 0);
        }
    };
    // Unwrap an IPv4 client of a dual-stack socket.
    let original = SocketAddr::new(original.ip().to_canonical(), original.port());
    draft.destination = original.ip().to_string();
    draft.port = original.port();

    // 2. The target, from the first bytes. A client that says nothing at first may be waiting
    // for the server to speak (SMTP, MySQL, FTP): past `server_first_after`, its original
    // address is the destination.
    let max = ctx.limits.max_header_bytes.max(8192);
    let mut buf = BytesMut::with_capacity(4096);
    let limits = &ctx.limits;
    let grace = limits.server_first_after.min(limits.first_bytes_timeout);
    let mut read = tokio::time::timeout(grace, read_first_bytes(&mut stream, &mut buf, max)).await;
    // To the endpoint answer address, bytes that may yet become a request line but stopped
    // (a text protocol waiting for its answer) name no endpoint: the port picks it.
    let to_endpoints = ctx.endpoint_answer == Some(original.ip().to_canonical());
    if read.is_err() && !buf.is_empty() && !to_endpoints {
        let rest = limits.first_bytes_timeout.saturating_sub(grace);
        read = tokio::time::timeout(rest, read_first_bytes(&mut stream, &mut buf, max)).await;
    }
    let at_original = Target {
        host: TargetHost::Ip(original.ip()),
        port: original.port(),
    };
    let target = match read {
        // Silent: the server may speak first.
        Err(_) if buf.is_empty() || to_endpoints => at_original,
        Err(_) => {
            tracing::info!(%peer, %original, "closing redirected connection: the client sent nothing to check in time");
            return draft.finish_why(&Why::FirstBytesTimeout, 0, 0);
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "redirected client failed before its first bytes");
            return draft.finish_why(&Why::IncompleteFirstBytes, 0, 0);
        }
        Ok(Ok(FirstBytes::NeedMore)) => {
            return draft.finish_why(&Why::IncompleteFirstBytes, 0, 0);
        }
        Ok(Ok(FirstBytes::Invalid(why))) => return draft.finish_why(&why, 0, 0),
        Ok(Ok(FirstBytes::Http)) => {
            // A Host that names a private endpoint: the connection goes to the endpoint.
            if let Some(target) = endpoint_host(&ctx, &mut stream, &mut buf, original).await {
                draft.sni_or_host = Some(target.host.to_string());
                target
            } else {
                let route = Route::Redirected { original };
                return Box::pin(serve_http(ctx, stream, buf.freeze(), peer, route)).await;
            }
        }
        Ok(Ok(FirstBytes::Tls { sni: Some(sni), .. })) => {
            draft.sni_or_host = Some(sni.clone());
            match sni.parse() {
                Ok(name) => Target {
                    host: TargetHost::Name(name),
                    port: original.port(),
                },
                Err(_) => return draft.finish_why(&Why::InvalidSni, 0, 0),
            }
        }
        Ok(Ok(FirstBytes::Tls { sni: None, .. } | FirstBytes::Other)) => at_original,
    };

    // 3-5. Decide, resolve and pin to the original address, dial.
    draft.destination = target.host.to_string();
    let snap = ctx.snapshots.borrow().clone();
    draft.cluster = snap.cluster_id().to_string();
    // A connection to the address the DNS listener answers for endpoint names that names none
    // itself: the region's one endpoint on that port.
    if let TargetHost::Ip(ip) = target.host
        && ctx.endpoint_answer == Some(ip)
    {
        let region = ctx.sink.region();
        let routed = match endpoint::by_port(&ctx, &snap, target.port) {
            Ok(id) => Box::pin(endpoint::route(&ctx, snap, target, id))
                .await
                .map(|mut r| {
                    r.by_port_in = Some(region);
                    r
                }),
            Err(r) => Err(r),
        };
        return match routed {
            Ok(routed) => {
                let client = TunnelClient::Socket(stream);
                Box::pin(endpoint::forward(ctx, routed, draft, client, buf.freeze())).await
            }
            Err(r) => {
                tracing::info!(source = %peer, %original, reason = r.why.as_str(), "refusing redirected connection: {}", r.message);
                draft.finish_why(&r.why, 0, 0)
            }
        };
    }
    let admitted = match Box::pin(admit(&ctx, snap, target, Some(original.ip()))).await {
        Ok(Admission::Public(a)) => a,
        // A name routed to a private endpoint (the DNS listener answers the transparent
        // address for it): forwarded to the endpoint's backends.
        Ok(Admission::Endpoint(routed)) => {
            let client = TunnelClient::Socket(stream);
            return Box::pin(endpoint::forward(ctx, routed, draft, client, buf.freeze())).await;
        }
        Err(r) => {
            tracing::info!(source = %peer, destination = %draft.destination, %original, reason = r.why.as_str(), "refusing redirected connection: {}", r.message);
            return draft.finish_why(&r.why, 0, 0);
        }
    };
    // 6-7. First bytes (already read, or read now while the server greets) and the tunnel.
    let route = Route::Redirected { original };
    let client = TunnelClient::Socket(stream);
    Box::pin(tunnel(ctx, admitted, draft, client, buf.freeze(), route)).await;
}

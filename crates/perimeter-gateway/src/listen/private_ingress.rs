//! The private ingress listener (`private_ingress_address`): where the cluster's private
//! endpoint service is served, behind a load balancer or another cluster's forwarder that
//! speaks PROXY protocol v2 as an AWS NLB does.
//!
//! 1. Every connection must open with a PROXY protocol header, read within the header timeout
//!    and at most [`MAX_HEADER_LEN`](crate::proxy_protocol::MAX_HEADER_LEN) bytes; a missing,
//!    malformed, truncated or slow one closes the connection before the workload is dialled.
//! 2. The header's AWS VPC-endpoint TLV (type 0xEA, subtype 0x01) must name an endpoint id with
//!    an admitted private endpoint connection in the current snapshot
//!    ([`Snapshot::admit_private_ingress`]). No TLV (a v1 header has none), or an id the
//!    snapshot does not admit: closed unread. The IP allowlist does not apply here.
//! 3. Admitted: the SQL workload of the gateway's region is dialled and the bytes past the
//!    header are relayed, with a revocation that closes the connection once a snapshot no longer
//!    admits the endpoint (its connection deleted, or its owner no longer trusted).
//!
//! Every admission and refusal is an ingress decision event (listener `private`), counted in
//! `perimeter_ingress_decisions_total`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use perimeter_policy::{IngressListener, Snapshot};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::ingress::{Ev, dial_workload, read_proxy_header};
use super::relay::{Activity, RelayEnd, relay};
use super::revoke::Revocation;
use super::{ProxyContext, serve_loop};

/// Serve the private ingress listener on `socket` until `shutdown`.
pub async fn serve_private_ingress(
    socket: TcpListener,
    ctx: ProxyContext,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    serve_loop(
        socket,
        ctx,
        "private ingress",
        shutdown,
        |ctx, stream, peer, permit| tokio::spawn(serve_one(ctx, stream, peer, permit)),
        drop,
    )
    .await
}

async fn serve_one(
    ctx: ProxyContext,
    mut client: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let listener = IngressListener::Private;
    let header = read_proxy_header(&mut client, ctx.limits.header_read_timeout).await;
    let snap: Arc<Snapshot> = ctx.snapshots.borrow().clone();
    let (header, pending) = match header {
        Ok(h) => h,
        Err(refusal) => {
            drop(client);
            tracing::info!(%peer, reason = refusal.reason(), "closing a private ingress connection: {}", refusal.detail());
            let ev = Ev {
                snap,
                listener,
                source: peer,
                peer,
                entry: None,
                started,
            };
            ev.emit(&ctx, "REFUSED", refusal.reason(), 0, 0);
            return;
        }
    };
    let source = header
        .source()
        .map(|s| SocketAddr::new(s.ip().to_canonical(), s.port()))
        .unwrap_or(peer);
    let endpoint_id = header.vpce_id().map(str::to_owned);
    let decision = snap.admit_private_ingress(endpoint_id.as_deref());
    let mut ev = Ev {
        snap: snap.clone(),
        listener,
        source,
        peer,
        entry: endpoint_id.clone(),
        started,
    };
    if !decision.admitted {
        drop(client);
        tracing::info!(%peer, %source, endpoint_id = endpoint_id.as_deref().unwrap_or(""), reason = decision.reason.as_str(), "closing a private ingress connection: no admitted private endpoint connection");
        ev.emit(&ctx, decision.verdict(), decision.reason.as_str(), 0, 0);
        return;
    }
    let Some(upstream) = dial_workload(&ctx, &snap, listener, &ev).await else {
        return;
    };
    ev.emit(&ctx, "ADMITTED", decision.reason.as_str(), 0, 0);
    ev.started = Instant::now();
    let activity = Activity::new();
    let id: Arc<str> = endpoint_id.unwrap_or_default().into();
    let revocation = Revocation::for_private_ingress(ctx.snapshots.clone(), snap, id);
    let end = Box::pin(relay(
        client,
        upstream,
        Bytes::from(pending),
        activity.clone(),
        ctx.limits.idle_timeout,
        revocation,
        None,
    ))
    .await;
    if let RelayEnd::Revoked(why) = end {
        tracing::info!(%source, %peer, endpoint_id = ev.entry.as_deref().unwrap_or(""), reason = %why, "closing a private ingress connection: its private endpoint connection is no longer admitted");
        ev.emit(
            &ctx,
            "REVOKED",
            why.reason.as_str(),
            activity.up(),
            activity.down(),
        );
    }
}

#[cfg(test)]
mod tests;

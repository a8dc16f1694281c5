//! The public ingress listeners (`sql`, `ui`): the gateway facing the other way, in front of the
//! cluster's own workload.
//!
//! 1. Accept; judge the TCP peer with the current snapshot's IP allowlist for this listener
//!    ([`Snapshot::admit_ingress`]). Refused: the connection is closed before anything is read
//!    from it or sent anywhere.
//! 2. Admitted: dial the workload address of the gateway's region from the same snapshot (none,
//!    or unreachable: closed, with the reason logged and counted).
//! 3. Relay with a revocation that judges the source again on every new snapshot, so an open
//!    connection is cut as soon as the allowlist no longer admits it.
//!
//! Every admission and refusal is an [`IngressEvent`], counted in
//! `perimeter_ingress_decisions_total{cluster,region,listener,verdict,reason}`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use perimeter_policy::{BackendHost, IngressDecision, IngressListener, Snapshot};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

use super::dial::dial;
use super::relay::{Activity, RelayEnd, relay};
use super::revoke::Revocation;
use super::{ProxyContext, serve_loop};
use crate::decision::IngressEvent;

/// Serve the ingress `listener` on `socket` until `shutdown`.
pub async fn serve_ingress(
    socket: TcpListener,
    listener: IngressListener,
    ctx: ProxyContext,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    let what = match listener {
        IngressListener::Sql => "sql ingress",
        IngressListener::Ui => "ui ingress",
    };
    serve_loop(
        socket,
        ctx,
        what,
        shutdown,
        |stream| {
            let _ = stream.set_nodelay(true);
        },
        move |ctx, stream, peer, permit| {
            tokio::spawn(serve_one(ctx, listener, stream, peer, permit))
        },
        drop,
    )
    .await
}

/// A decision event being filled in for one ingress connection.
struct Ev {
    snap: Arc<Snapshot>,
    listener: IngressListener,
    source: SocketAddr,
    entry: Option<String>,
    started: Instant,
}

impl Ev {
    fn emit(
        &self,
        ctx: &ProxyContext,
        verdict: &'static str,
        reason: &'static str,
        up: u64,
        down: u64,
    ) {
        ctx.sink.record_ingress(&IngressEvent {
            cluster: self.snap.cluster_id().to_string(),
            region: ctx.sink.region(),
            listener: self.listener.as_str(),
            source: self.source,
            verdict,
            reason,
            entry: self.entry.clone(),
            bytes_up: up,
            bytes_down: down,
            duration: self.started.elapsed(),
        });
    }
}

fn entry_label(d: &IngressDecision) -> Option<String> {
    d.entry.as_ref().map(|e| {
        if e.name().is_empty() {
            e.cidr().to_string()
        } else {
            format!("{} ({})", e.cidr(), e.name())
        }
    })
}

async fn serve_one(
    ctx: ProxyContext,
    listener: IngressListener,
    client: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let snap = ctx.snapshots.borrow().clone();
    let decision = snap.admit_ingress(peer.ip(), listener);
    let mut ev = Ev {
        snap: snap.clone(),
        listener,
        source: peer,
        entry: entry_label(&decision),
        started: Instant::now(),
    };
    if !decision.admitted {
        // Closed unread: not a byte of it reaches the workload.
        drop(client);
        ev.emit(&ctx, decision.verdict(), decision.reason.as_str(), 0, 0);
        return;
    }
    let region = ctx.sink.region();
    let Some(backend) = snap
        .ingress()
        .workload(&region)
        .and_then(|w| w.address(listener))
        .cloned()
    else {
        tracing::warn!(listener = listener.as_str(), %region, source = %peer, "closing an admitted ingress connection: the platform set no workload address for this region and listener");
        ev.emit(&ctx, "REFUSED", "no_workload_address", 0, 0);
        return;
    };
    let addrs: Vec<IpAddr> = match backend.host() {
        BackendHost::Ip(ip) => vec![*ip],
        BackendHost::Name(name) => match ctx.resolver.resolve(name).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = listener.as_str(), workload = %backend, error = %e, "closing an admitted ingress connection: the workload address does not resolve");
                ev.emit(&ctx, "REFUSED", "workload_unreachable", 0, 0);
                return;
            }
        },
    };
    let mut upstream = None;
    for ip in addrs {
        match dial(&ctx, SocketAddr::new(ip, backend.port())).await {
            Ok(s) => {
                upstream = Some(s);
                break;
            }
            Err(r) => {
                tracing::warn!(listener = listener.as_str(), workload = %backend, reason = r.why.as_str(), "dialling the workload failed: {}", r.message);
            }
        }
    }
    let Some(upstream) = upstream else {
        ev.emit(&ctx, "REFUSED", "workload_unreachable", 0, 0);
        return;
    };
    ev.emit(&ctx, "ADMITTED", decision.reason.as_str(), 0, 0);
    ev.started = Instant::now();
    let activity = Activity::new();
    let revocation = Revocation::for_ingress(ctx.snapshots.clone(), snap, peer.ip(), listener);
    let end = Box::pin(relay(
        client,
        upstream,
        Bytes::new(),
        activity.clone(),
        ctx.limits.idle_timeout,
        revocation,
        None,
    ))
    .await;
    if let RelayEnd::Revoked(why) = end {
        tracing::info!(listener = listener.as_str(), source = %peer, reason = %why, "closing an ingress connection: the allowlist no longer admits it");
        ev.entry = None;
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

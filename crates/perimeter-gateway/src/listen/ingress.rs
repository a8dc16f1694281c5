//! The public ingress listeners (`sql`, `ui`): the gateway facing the other way, in front of the
//! cluster's own workload.
//!
//! 1. Accept. A peer in the trusted proxies ([`GatewayLimits::trusted_proxies`]) must open with
//!    a PROXY protocol v1 or v2 header ([`crate::proxy_protocol`]), read within the header
//!    timeout and at most [`MAX_HEADER_LEN`] bytes; the source is the client it names (LOCAL or
//!    UNKNOWN: the peer itself). A missing, malformed, truncated or slow header closes the
//!    connection before the workload is dialled. Any other peer is its own source.
//! 2. Judge the source with the current snapshot's IP allowlist for this listener
//!    ([`Snapshot::admit_ingress`]). Refused: the connection is closed before anything more is
//!    read from it or sent anywhere.
//! 3. Admitted: dial the workload address of the gateway's region from the same snapshot (none,
//!    or unreachable: closed, with the reason logged and counted).
//! 4. An untrusted peer's first bytes are held until they show whether they open with a PROXY
//!    signature (the workload's greeting, for protocols where the server speaks first, is
//!    passed on meanwhile): one that does is refused, so a workload that reads PROXY headers
//!    never takes one from a client for its load balancer's.
//! 5. Relay with a revocation that judges the source again on every new snapshot, so an open
//!    connection is cut as soon as the allowlist no longer admits it.
//!
//! Every admission and refusal is an [`IngressEvent`], counted in
//! `perimeter_ingress_decisions_total{cluster,region,listener,verdict,reason}`.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use perimeter_policy::{BackendHost, IngressDecision, IngressListener, Snapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

#[cfg(doc)]
use super::GatewayLimits;
use super::dial::dial;
use super::relay::{Activity, RelayEnd, relay};
use super::revoke::Revocation;
use super::{ProxyContext, serve_loop};
use crate::decision::IngressEvent;
use crate::proxy_protocol::{self, Invalid, MAX_HEADER_LEN, Parsed};

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
        IngressListener::Private => "private ingress",
    };
    serve_loop(
        socket,
        ctx,
        what,
        shutdown,
        move |ctx, stream, peer, permit| {
            tokio::spawn(serve_one(ctx, listener, stream, peer, permit))
        },
        drop,
    )
    .await
}

/// Serve the public ingress `listener` on `socket` until `shutdown`, closing the socket while the
/// snapshot says the public side is closed (`network_visibility: PRIVATE`) and binding the same
/// address again when it opens. `open` tells whether the socket is bound and served.
pub async fn serve_public_ingress(
    socket: TcpListener,
    listener: IngressListener,
    ctx: ProxyContext,
    shutdown: impl std::future::Future<Output = ()>,
    open: tokio::sync::watch::Sender<bool>,
) -> io::Result<()> {
    let addr = socket.local_addr()?;
    let mut socket = Some(socket);
    let mut snapshots = ctx.snapshots.clone();
    tokio::pin!(shutdown);
    loop {
        let public = snapshots.borrow_and_update().ingress().public();
        if public {
            let bound = match socket.take() {
                Some(s) => Ok(s),
                None => TcpListener::bind(addr).await,
            };
            match bound {
                Ok(s) => {
                    open.send_replace(true);
                    tracing::info!(listener = listener.as_str(), %addr, "public ingress listener open");
                    let mut watch = ctx.snapshots.clone();
                    let closed = async move {
                        // No more snapshots (the sync is gone): the one in hand stands.
                        if watch.wait_for(|s| !s.ingress().public()).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        r = serve_ingress(s, listener, ctx.clone(), closed) => r?,
                        _ = &mut shutdown => return Ok(()),
                    }
                    // The socket is dropped: closed.
                    open.send_replace(false);
                    tracing::info!(listener = listener.as_str(), %addr, "public ingress listener closed: network_visibility is PRIVATE");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(listener = listener.as_str(), %addr, error = %e, "cannot bind the public ingress listener again; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = &mut shutdown => return Ok(()),
                    }
                    continue;
                }
            }
        }
        open.send_replace(false);
        tokio::select! {
            r = snapshots.changed() => if r.is_err() {
                // No more snapshots: stays closed until shutdown.
                shutdown.as_mut().await;
                return Ok(());
            },
            _ = &mut shutdown => return Ok(()),
        }
    }
}

/// A decision event being filled in for one ingress connection.
pub(super) struct Ev {
    pub(super) snap: Arc<Snapshot>,
    pub(super) listener: IngressListener,
    pub(super) source: SocketAddr,
    pub(super) peer: SocketAddr,
    pub(super) entry: Option<String>,
    pub(super) started: Instant,
}

impl Ev {
    pub(super) fn emit(
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
            peer: self.peer,
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

/// Why a trusted proxy's connection is refused before its header is read through.
#[derive(Debug)]
pub(super) enum HeaderRefusal {
    /// The bytes are not a header (`Invalid::NoSignature`: no PROXY signature at all).
    Invalid(Invalid),
    /// The peer closed (or reset) before the header was complete.
    Truncated,
    /// The header was not complete within the header timeout.
    Timeout,
}

impl HeaderRefusal {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            HeaderRefusal::Invalid(Invalid::NoSignature) => "proxy_header_missing",
            HeaderRefusal::Invalid(_) => "proxy_header_invalid",
            HeaderRefusal::Truncated => "proxy_header_truncated",
            HeaderRefusal::Timeout => "proxy_header_timeout",
        }
    }

    pub(super) fn detail(&self) -> String {
        match self {
            HeaderRefusal::Invalid(i) => format!("{i} ({})", i.as_str()),
            HeaderRefusal::Truncated => "the peer closed before the header was complete".into(),
            HeaderRefusal::Timeout => {
                "the header was not complete within the header timeout".into()
            }
        }
    }
}

/// Read a PROXY protocol header from a trusted proxy, within `timeout` and [`MAX_HEADER_LEN`]
/// bytes: the header and the bytes read past it (the client's own, for the workload).
pub(super) async fn read_proxy_header(
    client: &mut TcpStream,
    timeout: Duration,
) -> Result<(proxy_protocol::Header, Vec<u8>), HeaderRefusal> {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            let room = MAX_HEADER_LEN - buf.len();
            let mut chunk = (&mut *client).take(room as u64);
            match chunk.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return Err(HeaderRefusal::Truncated),
                Ok(_) => {}
            }
            match proxy_protocol::parse(&buf) {
                Parsed::NeedMore if buf.len() < MAX_HEADER_LEN => {}
                // The parser never asks past its cap; were it to, the header is refused.
                Parsed::NeedMore => return Err(HeaderRefusal::Invalid(Invalid::V2TooLong)),
                Parsed::Invalid(i) => return Err(HeaderRefusal::Invalid(i)),
                Parsed::Header(h) => {
                    let rest = buf.split_off(h.header_len);
                    return Ok((h, rest));
                }
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(HeaderRefusal::Timeout))
}

/// How an untrusted peer's opening ended before the relay.
enum Opening {
    /// Its first bytes, which open with no PROXY signature: the relay sends them first.
    Clean(Vec<u8>),
    /// It opened with a PROXY signature.
    Signature,
    /// It or the workload closed, or it stayed silent for the idle timeout.
    Closed,
}

/// Hold an untrusted peer's first bytes until they show whether they open with a PROXY
/// signature, passing on what the workload sends meanwhile (its greeting, for protocols where
/// the server speaks first). Returns the bytes held and what the workload sent (to count).
/// A client silent for `idle` is closed; one that has sent the start of a signature must show
/// what follows within `header_timeout`.
async fn check_opening(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    idle: Duration,
    header_timeout: Duration,
) -> (Opening, u64) {
    let mut first = Vec::with_capacity(64);
    // Filled by `read_buf` into spare capacity: nothing is zeroed for clients that speak first.
    let mut greeting: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut down = 0u64;
    let mut quiet = tokio::time::Instant::now() + idle;
    loop {
        tokio::select! {
            r = client.read_buf(&mut first) => match r {
                Ok(0) | Err(_) => return (Opening::Closed, down),
                Ok(_) => match proxy_protocol::starts_with_signature(&first) {
                    Some(true) => return (Opening::Signature, down),
                    Some(false) => return (Opening::Clean(first), down),
                    None => quiet = tokio::time::Instant::now() + header_timeout,
                },
            },
            r = upstream.read_buf(&mut greeting) => match r {
                Ok(0) | Err(_) => return (Opening::Closed, down),
                Ok(n) => {
                    let sent = client.write_all(&greeting).await;
                    greeting.clear();
                    if sent.is_err() {
                        return (Opening::Closed, down);
                    }
                    down += n as u64;
                    if first.is_empty() {
                        quiet = tokio::time::Instant::now() + idle;
                    }
                }
            },
            _ = tokio::time::sleep_until(quiet) => return (Opening::Closed, down),
        }
    }
}

/// Dial the workload of the gateway's region for `listener` from `snap`; `None` (the refusal
/// emitted and logged) when there is no address or it cannot be reached.
pub(super) async fn dial_workload(
    ctx: &ProxyContext,
    snap: &Snapshot,
    listener: IngressListener,
    ev: &Ev,
) -> Option<TcpStream> {
    let region = ctx.sink.region();
    let Some(backend) = snap
        .ingress()
        .workload(&region)
        .and_then(|w| w.address(listener))
        .cloned()
    else {
        tracing::warn!(listener = listener.as_str(), %region, source = %ev.source, "closing an admitted ingress connection: the platform set no workload address for this region and listener");
        ev.emit(ctx, "REFUSED", "no_workload_address", 0, 0);
        return None;
    };
    let addrs: Vec<IpAddr> = match backend.host() {
        BackendHost::Ip(ip) => vec![*ip],
        BackendHost::Name(name) => match ctx.resolver.resolve(name).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(listener = listener.as_str(), workload = %backend, error = %e, "closing an admitted ingress connection: the workload address does not resolve");
                ev.emit(ctx, "REFUSED", "workload_unreachable", 0, 0);
                return None;
            }
        },
    };
    for ip in addrs {
        match dial(ctx, SocketAddr::new(ip, backend.port())).await {
            Ok(s) => return Some(s),
            Err(r) => {
                tracing::warn!(listener = listener.as_str(), workload = %backend, reason = r.why.as_str(), "dialling the workload failed: {}", r.message);
            }
        }
    }
    ev.emit(ctx, "REFUSED", "workload_unreachable", 0, 0);
    None
}

async fn serve_one(
    ctx: ProxyContext,
    listener: IngressListener,
    mut client: TcpStream,
    peer: SocketAddr,
    _permit: OwnedSemaphorePermit,
) {
    let started = Instant::now();
    let trusted = ctx
        .limits
        .trusted_proxies
        .iter()
        .any(|c| c.contains(peer.ip().to_canonical()));
    let mut pending = Vec::new();
    let mut source = peer;
    if trusted {
        match read_proxy_header(&mut client, ctx.limits.header_read_timeout).await {
            Ok((header, rest)) => {
                if let Some(s) = header.source() {
                    source = SocketAddr::new(s.ip().to_canonical(), s.port());
                }
                pending = rest;
            }
            Err(refusal) => {
                drop(client);
                tracing::info!(listener = listener.as_str(), %peer, reason = refusal.reason(), "closing a trusted proxy's ingress connection: {}", refusal.detail());
                let ev = Ev {
                    snap: ctx.snapshots.borrow().clone(),
                    listener,
                    source: peer,
                    peer,
                    entry: None,
                    started,
                };
                ev.emit(&ctx, "REFUSED", refusal.reason(), 0, 0);
                return;
            }
        }
    }
    let snap = ctx.snapshots.borrow().clone();
    let decision = snap.admit_ingress(source.ip(), listener);
    let mut ev = Ev {
        snap: snap.clone(),
        listener,
        source,
        peer,
        entry: entry_label(&decision),
        started,
    };
    if !decision.admitted {
        // Closed unread (past a trusted proxy's header): not a byte reaches the workload.
        drop(client);
        ev.emit(&ctx, decision.verdict(), decision.reason.as_str(), 0, 0);
        return;
    }
    let Some(mut upstream) = dial_workload(&ctx, &snap, listener, &ev).await else {
        return;
    };
    let mut greeted = 0;
    if !trusted {
        let (opening, down) = check_opening(
            &mut client,
            &mut upstream,
            ctx.limits.idle_timeout,
            ctx.limits.header_read_timeout,
        )
        .await;
        greeted = down;
        match opening {
            Opening::Clean(first) => pending = first,
            Opening::Signature => {
                tracing::warn!(listener = listener.as_str(), %peer, "closing an ingress connection: it opens with a PROXY protocol header but its peer is not a trusted proxy (--trusted-proxy)");
                ev.emit(&ctx, "REFUSED", "proxy_header_untrusted", 0, down);
                return;
            }
            Opening::Closed => {
                ev.emit(&ctx, "REFUSED", "client_closed", 0, down);
                return;
            }
        }
    }
    ev.emit(&ctx, "ADMITTED", decision.reason.as_str(), 0, greeted);
    ev.started = Instant::now();
    let activity = Activity::new();
    let revocation = Revocation::for_ingress(ctx.snapshots.clone(), snap, source.ip(), listener);
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
        tracing::info!(listener = listener.as_str(), %source, %peer, reason = %why, "closing an ingress connection: the allowlist or the network visibility no longer admits it");
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
pub(super) mod tests;

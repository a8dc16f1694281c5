//! Tunnel: an admitted connection (a CONNECT after its `200`, or a redirected connection after
//! its dial) from its first bytes to its end.
//!
//! 1. First bytes ([`super::first_bytes`]): read before anything goes upstream, while what the
//!    upstream says first (SMTP, MySQL) is passed on; a revocation meanwhile closes it.
//! 2. Consistency ([`super::consistency`]): a ClientHello's SNI must name the target.
//! 3. Plaintext HTTP is served request by request ([`super::forward`]), each request's Host and
//!    path checked; anything else is relayed ([`super::relay`]), every client byte checked
//!    against revocation before it goes upstream.
//!
//! The connection's decision event is finished once, with the bytes relayed and why it ended.

use bytes::{Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ProxyContext;
use super::consistency::check_sni;
use super::dial::Admitted;
use super::event::{Draft, allowed_outcome};
use super::first_bytes::{FirstBytes, Opening, opening, read_first_bytes};
use super::forward::{Route, Upstream, serve_http};
use super::prefixed::Prefixed;
use super::refusal::Why;
use super::relay::{Activity, Direction, RelayEnd, relay, relay_stream};
use super::requests::{Checked, Requests};
use super::revoke::Revocation;

/// The client's side of an established tunnel: the socket itself when it can be had (so the
/// relay can splice), else hyper's upgraded stream.
pub(crate) enum TunnelClient {
    Socket(TcpStream),
    Stream(TokioIo<hyper::upgrade::Upgraded>),
}

impl TunnelClient {
    /// The client of an upgraded CONNECT and the bytes hyper read past its head, which come
    /// first.
    pub(crate) fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> (Self, Bytes) {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return (TunnelClient::Socket(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>() {
            Ok(parts) => {
                // hyper read its buffer before what is left of the prefix.
                let Prefixed { prefix, inner } = parts.io.into_inner();
                let already = match (parts.read_buf.is_empty(), prefix.is_empty()) {
                    (_, true) => parts.read_buf,
                    (true, false) => prefix,
                    (false, false) => [parts.read_buf, prefix].concat().into(),
                };
                (TunnelClient::Socket(inner), already)
            }
            Err(upgraded) => (TunnelClient::Stream(TokioIo::new(upgraded)), Bytes::new()),
        }
    }
}

/// Run an admitted tunnel. `already`: client bytes read before (after the CONNECT head, or the
/// redirected connection's judged first bytes). Plaintext HTTP goes to `http` request by
/// request.
pub(crate) async fn tunnel(
    ctx: ProxyContext,
    admitted: Admitted,
    mut draft: Draft,
    mut client: TunnelClient,
    already: Bytes,
    http: Route,
) {
    let Admitted {
        snap,
        target,
        stream: upstream,
        addr,
        decision,
        ..
    } = admitted;
    draft.allowed_by(&decision);
    let (verdict, reason) = allowed_outcome(&decision);
    let activity = Activity::new();
    let revocation = Revocation::new(&ctx, snap.clone(), target.clone(), addr, None);

    // 1. First bytes.
    let max = ctx.limits.max_header_bytes.max(8192);
    let mut buf = BytesMut::with_capacity(already.len().max(4096));
    buf.extend_from_slice(&already);
    // `already` may share the allocation of a larger read buffer: let it go.
    drop(already);
    // Boxed: the first bytes' phase is over before the relay starts.
    let opened = Box::pin(async {
        let read = async {
            match &mut client {
                TunnelClient::Socket(c) => opening(&ctx, c, &upstream, &mut buf, &activity).await,
                TunnelClient::Stream(c) => {
                    let read = tokio::time::timeout(
                        ctx.limits.first_bytes_timeout,
                        read_first_bytes(c, &mut buf, max),
                    );
                    match read.await {
                        Err(_) => Opening::TimedOut,
                        Ok(Ok(first)) => Opening::First(first),
                        Ok(Err(e)) => Opening::Failed(Direction::Up, e),
                    }
                }
            }
        };
        tokio::select! {
            o = read => Some(o),
            why = revocation.clone().revoked() => {
                tracing::info!(destination = %target, address = %addr, reason = %why, "closing tunnel before its first bytes: the new policy no longer allows it");
                None
            }
        }
    })
    .await;
    let (up, down) = (activity.up(), activity.down());
    let first = match opened {
        None => return draft.finish_why(&Why::PolicyRevoked, up, down),
        Some(Opening::TimedOut) => {
            tracing::info!(destination = %target, "closing tunnel: the client sent nothing to check in time");
            return draft.finish_why(&Why::FirstBytesTimeout, up, down);
        }
        Some(Opening::Failed(direction, e)) => {
            tracing::debug!(destination = %target, direction = direction.as_str(), error = %e, "tunnel failed before the client's first bytes");
            return draft.finish(verdict, reason, up, down);
        }
        // The client closed without sending anything.
        Some(Opening::First(FirstBytes::NeedMore)) if buf.is_empty() => {
            return draft.finish(verdict, reason, up, down);
        }
        Some(Opening::First(FirstBytes::NeedMore)) => {
            return draft.finish_why(&Why::IncompleteFirstBytes, up, down);
        }
        Some(Opening::First(first)) => first,
    };

    // 2. Consistency.
    let checked = match &first {
        FirstBytes::Invalid(why) => Err(why.clone()),
        FirstBytes::Tls { sni, ech } => {
            draft.sni_or_host.clone_from(sni);
            Box::pin(check_sni(
                &ctx,
                &snap,
                &target,
                addr.ip(),
                sni.as_deref(),
                *ech,
            ))
            .await
        }
        FirstBytes::Http | FirstBytes::Other | FirstBytes::NeedMore => Ok(()),
    };
    if let Err(why) = checked {
        tracing::info!(destination = %target, sni_or_host = draft.sni_or_host.as_deref().unwrap_or(""), reason = why.as_str(), "closing tunnel: the client's first bytes are not allowed on it");
        return draft.finish_why(&why, up, down);
    }

    // 3. Plaintext HTTP, request by request; or the relay. A tunnel whose first request is
    // strictly well-formed and names the target is relayed, its stream checked request by
    // request as it passes; any other is served by hyper, request by request.
    let mut checked = None;
    if first == FirstBytes::Http
        && matches!(
            (&http, &client),
            (Route::Tunnel { .. }, TunnelClient::Socket(_))
        )
        && let Some((host, requests, first_head)) = Requests::takes(&target, &buf, max)
    {
        draft.sni_or_host = Some(host);
        let stream = Checked::new(&ctx, snap.clone(), requests, first_head, addr.ip());
        checked = Some(Box::new(stream));
    } else if first == FirstBytes::Http {
        // The upstream dialled for the tunnel serves its first request (and the next ones
        // while it stays open); a redirected connection's requests dial their own.
        if let Route::Tunnel { kept, .. } = &http {
            kept.keep(Upstream::Fresh(upstream, addr));
        } else {
            drop(upstream);
        }
        let peer = draft.source;
        draft.finish(verdict, reason, up, down);
        let first = buf.freeze();
        match client {
            TunnelClient::Socket(c) => Box::pin(serve_http(ctx, c, first, peer, http)).await,
            TunnelClient::Stream(c) => Box::pin(serve_http(ctx, c, first, peer, http)).await,
        }
        return;
    }
    let idle = ctx.limits.idle_timeout;
    let pending = buf.freeze();
    // Boxed, as every phase of a tunnel: the task holds only the phase it is in.
    let counted = activity.clone();
    let end = match client {
        TunnelClient::Socket(c) => {
            let relayed = relay(c, upstream, pending, counted, idle, revocation, checked);
            Box::pin(relayed).await
        }
        TunnelClient::Stream(c) => {
            Box::pin(relay_stream(
                c, upstream, pending, counted, idle, revocation,
            ))
            .await
        }
    };
    let (up, down) = (activity.up(), activity.down());
    match end {
        RelayEnd::Closed | RelayEnd::Idle => draft.finish(verdict, reason, up, down),
        RelayEnd::Failed { direction, error } => {
            tracing::debug!(destination = %target, direction = direction.as_str(), error = %error, "tunnel ended with an error");
            draft.finish(verdict, reason, up, down);
        }
        RelayEnd::Refused { why, host } => {
            tracing::info!(destination = %target, host = host.as_deref().unwrap_or(""), reason = why.as_str(), "closing tunnel: a request in it is not allowed on it");
            draft.sni_or_host = host;
            draft.finish_why(&why, up, down);
        }
        RelayEnd::Revoked(why) => {
            tracing::info!(destination = %target, address = %addr, reason = %why, "closing tunnel: the new policy no longer allows it");
            draft.finish_why(&Why::PolicyRevoked, up, down);
        }
    }
}

//! The upstream connection of forwarded requests: a tunnel keeps its own between requests
//! ([`Kept`]); any other request dials one.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::body::RequestBody;
use crate::listen::ProxyContext;
use crate::listen::dial::dial;
use crate::listen::refusal::{Refusal, Why};
use crate::listen::relay::{Activity, Counted};
use crate::listen::revoke::Revocation;

/// A tunnel's upstream connection, kept between the requests of a plaintext tunnel: the one
/// dialled when the tunnel was admitted, then the client connection that served its last
/// request. A request to another address (a new resolution) dials its own.
#[derive(Clone, Default)]
pub(crate) struct Kept(Arc<std::sync::Mutex<Option<Upstream>>>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

pub(crate) enum Upstream {
    /// Dialled when the tunnel was admitted; nothing sent yet.
    Fresh(TcpStream, SocketAddr),
    /// Served a request; ready for the next once its response was read.
    Open {
        sender: http1::SendRequest<RequestBody>,
        addr: SocketAddr,
        activity: Arc<Activity>,
    },
}

impl Kept {
    pub(crate) fn keep(&self, upstream: Upstream) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(upstream);
    }

    /// The kept connection, if it goes to `addr`.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<Upstream> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        kept.filter(|u| match u {
            Upstream::Fresh(_, a) | Upstream::Open { addr: a, .. } => *a == addr,
        })
    }
}

/// A client connection to `addr` for one request: `kept` when it is still usable, else a new
/// one, dialled and handshaken, whose task closes it when a newer policy revokes the target.
/// A connection for a forwarded request to `addr`: the kept one if it is still open, else a new
/// one. `watch` ends it once a snapshot no longer allows it (the connection outlives a request
/// when a tunnel keeps it).
pub(super) async fn upstream_conn(
    ctx: &ProxyContext,
    kept: Option<Upstream>,
    addr: SocketAddr,
    watch: Revocation,
    tls: Option<(Arc<rustls::ClientConfig>, perimeter_policy::Hostname)>,
) -> Result<(http1::SendRequest<RequestBody>, Arc<Activity>), Refusal> {
    let stream = match kept {
        Some(Upstream::Open {
            mut sender,
            activity,
            ..
        }) => {
            // Ready at once unless the upstream closed it (then a new one is dialled).
            if sender.ready().await.is_ok() {
                return Ok((sender, activity));
            }
            dial(ctx, addr).await?
        }
        Some(Upstream::Fresh(stream, _)) => stream,
        None => dial(ctx, addr).await?,
    };
    let activity = Activity::new();
    let counted = Counted::new(stream, activity.clone());
    let sender = match tls {
        None => handshake(TokioIo::new(counted), addr, watch).await?,
        Some((config, name)) => {
            let server_name = ServerName::try_from(name.as_str().to_string()).map_err(|e| {
                Refusal::new(
                    Why::UpstreamFailed,
                    format!("{name} is not a TLS server name: {e}"),
                )
            })?;
            let connected = tokio::time::timeout(
                ctx.limits.connect_timeout,
                tokio_rustls::TlsConnector::from(config).connect(server_name, counted),
            )
            .await;
            let stream = match connected {
                Err(_) => {
                    return Err(Refusal::new(
                        Why::UpstreamConnectTimeout,
                        format!(
                            "no TLS handshake with upstream {addr} within {:?}",
                            ctx.limits.connect_timeout
                        ),
                    ));
                }
                Ok(Err(e)) => {
                    let certificate = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                    let why = if certificate {
                        Why::UpstreamCertificate
                    } else {
                        Why::UpstreamFailed
                    };
                    return Err(Refusal::new(
                        why,
                        format!("TLS with upstream {name} ({addr}) failed: {e}"),
                    ));
                }
                Ok(Ok(s)) => s,
            };
            handshake(TokioIo::new(stream), addr, watch).await?
        }
    };
    Ok((sender, activity))
}

/// The HTTP/1 client handshake over `io`; its connection task ends when a newer policy
/// revokes the target.
async fn handshake<T>(
    io: TokioIo<T>,
    addr: SocketAddr,
    watch: Revocation,
) -> Result<http1::SendRequest<RequestBody>, Refusal>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(io).await.map_err(|e| {
        Refusal::new(
            Why::UpstreamFailed,
            format!("while talking to upstream {addr}: {e}"),
        )
    })?;
    let stop = watch.revoked();
    tokio::spawn(async move {
        tokio::select! {
            r = conn => if let Err(e) = r {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            },
            why = stop => {
                tracing::info!(address = %addr, reason = %why, "closing an upstream connection of forwarded requests: the new policy no longer allows it");
            }
        }
    });
    Ok(sender)
}

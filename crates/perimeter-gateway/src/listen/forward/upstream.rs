//! The upstream connection of forwarded requests: a tunnel keeps its own between requests
//! ([`Kept`]); any other request dials one. Plaintext upstreams speak HTTP/1.1; an inspected
//! tunnel's TLS upstream speaks what its ALPN chose (HTTP/2 or HTTP/1.1), whatever the client
//! speaks: hyper translates between the two.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    /// Served a request; ready for the next once its response was read (HTTP/1.1), or shared
    /// by concurrent requests (HTTP/2).
    Open {
        sender: Sender,
        addr: SocketAddr,
        activity: Arc<Activity>,
    },
}

/// The request side of an upstream client connection, in the protocol its ALPN chose.
pub(crate) enum Sender {
    H1(http1::SendRequest<RequestBody>),
    /// Streams of one connection: clones send concurrently.
    H2(http2::SendRequest<RequestBody>),
}

impl Sender {
    /// Whether requests go as HTTP/2 (absolute URI: `:scheme` and `:authority`, no Host).
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    /// Wait until the connection takes a request; `Err` once it is closed.
    async fn ready(&mut self) -> Result<(), hyper::Error> {
        match self {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }

    pub(crate) async fn send_request(
        &mut self,
        req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

impl Kept {
    pub(crate) fn keep(&self, upstream: Upstream) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(upstream);
    }

    /// The kept connection, if it goes to `addr`. An HTTP/2 connection stays kept (its clone
    /// is handed out): concurrent requests share it as streams.
    pub(super) fn take(&self, addr: SocketAddr) -> Option<Upstream> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Upstream::Open {
            sender: Sender::H2(sender),
            addr: a,
            activity,
        }) = slot.as_ref()
        {
            if *a != addr || sender.is_closed() {
                *slot = None;
                return None;
            }
            return Some(Upstream::Open {
                sender: Sender::H2(sender.clone()),
                addr: *a,
                activity: activity.clone(),
            });
        }
        slot.take().filter(|u| match u {
            Upstream::Fresh(_, a) | Upstream::Open { addr: a, .. } => *a == addr,
        })
    }
}

/// A connection for a forwarded request to `addr`: the kept one if it is still open, else a new
/// one. `watch` ends it once a snapshot no longer allows it (the connection outlives a request
/// when a tunnel keeps it).
pub(super) async fn upstream_conn(
    ctx: &ProxyContext,
    kept: Option<Upstream>,
    addr: SocketAddr,
    watch: Revocation,
    tls: Option<(Arc<rustls::ClientConfig>, perimeter_policy::Hostname)>,
) -> Result<(Sender, Arc<Activity>), Refusal> {
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
        None => Sender::H1(handshake(TokioIo::new(counted), addr, watch).await?),
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
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                Sender::H2(handshake_h2(TokioIo::new(stream), addr, watch).await?)
            } else {
                Sender::H1(handshake(TokioIo::new(stream), addr, watch).await?)
            }
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
    drive(conn, addr, watch);
    Ok(sender)
}

/// The HTTP/2 client handshake over `io` (an inspected tunnel's TLS upstream whose ALPN chose
/// `h2`); its connection task ends when a newer policy revokes the target.
async fn handshake_h2<T>(
    io: TokioIo<T>,
    addr: SocketAddr,
    watch: Revocation,
) -> Result<http2::SendRequest<RequestBody>, Refusal>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(io)
        .await
        .map_err(|e| {
            Refusal::new(
                Why::UpstreamFailed,
                format!("while opening HTTP/2 with upstream {addr}: {e}"),
            )
        })?;
    drive(conn, addr, watch);
    Ok(sender)
}

/// Run an upstream connection until it ends or a newer policy revokes its target.
fn drive<C, E>(conn: C, addr: SocketAddr, watch: Revocation)
where
    C: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
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
}

//! Listeners of the data plane. [`proxy`]: the explicit HTTP proxy (CONNECT and absolute-form
//! plain HTTP) that workloads use through `HTTPS_PROXY` / `HTTP_PROXY`; [`transparent`]:
//! connections redirected by the host's firewall, judged by their SNI or Host;
//! [`dns_listener`]: the name service of workloads in transparent mode, which answers only
//! what the policy lets through.
//!
//! Every connection goes down one pipeline, one small module a step, each used by both
//! listeners (no step imports a later one's caller):
//!
//! | step | module |
//! |---|---|
//! | accept | [`serve_loop`], [`proxy`], [`transparent`] |
//! | read the target | `proxy::head`, [`target`], [`first_bytes`] (transparent) |
//! | decide | [`decide`] |
//! | resolve and pin the address | [`resolve`] (the guard: [`own`]) |
//! | dial | [`dial`] |
//! | first bytes | [`first_bytes`], checked by [`consistency`] |
//! | tunnel or forward, with revocation | [`tunnel`], [`relay`] (plaintext checked by [`requests`]), [`forward`], [`revoke`] |
//! | or: route to a private endpoint | [`endpoint`] (after decide: region, port, backend by SNI, PROXY v2, relay, metering) |
//!
//! Every refusal is a [`refusal::Refusal`] (who caused it, why, a sentence), and every
//! connection or request ends in one decision event ([`event`]).

mod consistency;
mod decide;
mod dial;
pub mod dns_listener;
pub(crate) mod endpoint;
mod event;
pub(crate) mod first_bytes;
mod forward;
pub mod ingress;
pub mod inspect;
pub mod own;
mod prefixed;
pub mod private_ingress;
pub mod proxy;
pub mod refusal;
mod relay;
mod requests;
mod resolve;
mod revoke;
mod spread;
mod target;
pub mod transparent;
mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use perimeter_policy::Snapshot;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::decision::DecisionSink;
use crate::dns::Resolver;

pub use ingress::{serve_ingress, serve_public_ingress};
pub use own::OwnAddresses;
pub use private_ingress::serve_private_ingress;
pub use proxy::serve;
pub use refusal::{Party, Refusal, Why};
pub use target::{Target, TargetHost};
pub use transparent::serve_transparent;

/// Limits of a listener. The defaults are safe for a gateway facing untrusted workloads.
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// Longest time a client may take to send a complete request head (slowloris).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; at least 8192.
    pub max_header_bytes: usize,
    /// Most client connections served at once (a CONNECT tunnel holds its connection's slot);
    /// past it a client gets 503 with `x-perimeter-error: gateway_overloaded`.
    pub max_connections: usize,
    /// A tunnel (or forwarded exchange) with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Longest TCP connect to an upstream address.
    pub connect_timeout: Duration,
    /// Longest wait, after `200 Connection established`, for the client's first bytes (TLS
    /// ClientHello or HTTP request head), which are checked before anything is relayed.
    pub first_bytes_timeout: Duration,
    /// Transparent listener: a client that has sent nothing this long after connecting is
    /// taken to wait for the server to speak first (SMTP, MySQL, FTP). Its original address
    /// is then decided as an IP destination and dialled, the server's greeting is passed on,
    /// and the client's first bytes are still checked before they go upstream.
    pub server_first_after: Duration,
    /// Longest wait for an upstream's response head to a forwarded request.
    pub response_head_timeout: Duration,
    /// Peers whose PROXY protocol header (v1 or v2) the public ingress listeners honour: a
    /// connection from one must open with a header, read within `header_read_timeout`, and
    /// the allowlist judges the client it names. Any other peer is judged by its own address,
    /// and one that opens with a PROXY header is refused.
    pub trusted_proxies: Arc<[perimeter_policy::Cidr]>,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 32 * 1024,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            first_bytes_timeout: Duration::from_secs(30),
            server_first_after: Duration::from_secs(1),
            response_head_timeout: Duration::from_secs(60),
            trusted_proxies: Arc::from([]),
        }
    }
}

/// Everything a listener needs: the current policy, the resolver, limits, the decision sink
/// and the host's own addresses.
#[derive(Clone)]
pub struct ProxyContext {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub resolver: Arc<Resolver>,
    pub limits: GatewayLimits,
    pub sink: Arc<DecisionSink>,
    /// The gateway host's own addresses: judged as special by the address guard.
    pub own: OwnAddresses,
    /// The address the DNS listener answers for private endpoint names: a redirected
    /// connection to it that names no endpoint (no SNI, no Host) goes to the one endpoint of the
    /// region serving its port.
    pub endpoint_answer: Option<std::net::IpAddr>,
    /// TLS inspection: the roots inspected upstreams are verified against, and the current
    /// CA's configurations.
    pub inspection: Arc<inspect::InspectionState>,
}

/// The accept step of every listener: take connections until `shutdown`, each with a slot of
/// `max_connections` held for its life; a connection over the limit goes to `overloaded`.
/// Accept errors (EMFILE and friends) are logged and retried after a pause instead of spinning.
///
/// On a multi-thread runtime the listener is served by one accept loop per core, each on a
/// thread of its own with the connections it accepted ([`spread`]); the sockets close when
/// this returns.
pub(crate) async fn serve_loop<Serve, Over>(
    listener: TcpListener,
    ctx: ProxyContext,
    what: &'static str,
    shutdown: impl std::future::Future<Output = ()>,
    serve: Serve,
    overloaded: Over,
) -> std::io::Result<()>
where
    Serve: FnMut(
            ProxyContext,
            TcpStream,
            SocketAddr,
            OwnedSemaphorePermit,
        ) -> tokio::task::JoinHandle<()>
        + Clone
        + Send
        + 'static,
    Over: FnMut(TcpStream) + Clone + Send + 'static,
{
    let accepting = Accepting {
        slots: Arc::new(Semaphore::new(ctx.limits.max_connections.max(1))),
        // Set before the siblings are made: they copy it.
        nodelay: NoDelay::new(&listener),
        ctx,
        what,
    };
    let Some(loops) = spread::Loops::for_current() else {
        return accept_loop(listener, accepting, shutdown, serve, overloaded).await;
    };
    let sockets = spread::group(listener, loops.handles().len())?;
    // Dropped when this returns (or is dropped): every loop stops and closes its socket.
    let (stop, stopped) = watch::channel(());
    let mut running = Vec::with_capacity(sockets.len());
    for (socket, rt) in sockets.into_iter().zip(loops.handles()) {
        let (accepting, serve, overloaded) = (accepting.clone(), serve.clone(), overloaded.clone());
        let mut stopped = stopped.clone();
        running.push(rt.spawn(async move {
            // Registered with this loop's own reactor.
            let listener = TcpListener::from_std(socket)?;
            let shutdown = async move {
                let _ = stopped.changed().await;
            };
            accept_loop(listener, accepting, shutdown, serve, overloaded).await
        }));
    }
    shutdown.await;
    drop(stop);
    let mut result = Ok(());
    for r in running {
        match r.await {
            Ok(Err(e)) if result.is_ok() => result = Err(e),
            Err(e) if result.is_ok() => result = Err(std::io::Error::other(e)),
            _ => {}
        }
    }
    result
}

/// What the accept loops of one listener share (each loop has its own copy).
#[derive(Clone)]
struct Accepting {
    ctx: ProxyContext,
    /// The listener's connection limit, one across its loops.
    slots: Arc<Semaphore>,
    /// The listener's name, for logs.
    what: &'static str,
    nodelay: NoDelay,
}

/// One accept loop of [`serve_loop`].
async fn accept_loop<Serve, Over>(
    listener: TcpListener,
    mut accepting: Accepting,
    shutdown: impl std::future::Future<Output = ()>,
    mut serve: Serve,
    mut overloaded: Over,
) -> std::io::Result<()>
where
    Serve: FnMut(
        ProxyContext,
        TcpStream,
        SocketAddr,
        OwnedSemaphorePermit,
    ) -> tokio::task::JoinHandle<()>,
    Over: FnMut(TcpStream),
{
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = accepting.what, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        accepting.nodelay.apply(&stream);
        match accepting.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                serve(accepting.ctx.clone(), stream, peer, permit);
            }
            Err(_) => {
                metrics::counter!("perimeter_gateway_overloaded_total").increment(1);
                overloaded(stream);
            }
        }
    }
}

/// TCP_NODELAY for accepted sockets (every listener wants it: relayed bytes are not held back):
/// set once on the listener, which Linux passes on to the sockets it accepts, and per socket
/// only if the first accepted one did not inherit it.
#[derive(Clone)]
pub(crate) struct NoDelay {
    inherited: Option<bool>,
}

impl NoDelay {
    pub(crate) fn new(listener: &TcpListener) -> Self {
        let set =
            nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true);
        Self {
            inherited: if set.is_ok() { None } else { Some(false) },
        }
    }

    pub(crate) fn apply(&mut self, stream: &TcpStream) {
        let inherited = *self
            .inherited
            .get_or_insert_with(|| stream.nodelay().unwrap_or(false));
        if !inherited {
            let _ = stream.set_nodelay(true);
        }
    }
}

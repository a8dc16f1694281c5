//! Listeners of the data plane. [`connect`]: the explicit HTTP proxy (CONNECT and absolute-form
//! plain HTTP) that workloads use through `HTTPS_PROXY` / `HTTP_PROXY`; [`transparent`]:
//! connections redirected by the host's firewall, judged by their SNI or Host.

pub mod connect;
mod relay;
mod target;
pub mod transparent;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use perimeter_policy::Snapshot;
use tokio::sync::watch;

use crate::decision::DecisionSink;
use crate::dns::Resolver;

pub use connect::serve;
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
        }
    }
}

/// Everything a listener needs: the current policy, the resolver, limits and the decision sink.
#[derive(Clone)]
pub struct ProxyContext {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub resolver: Arc<Resolver>,
    pub limits: GatewayLimits,
    pub sink: Arc<DecisionSink>,
    /// The gateway's own addresses: judged as special by the address guard.
    pub own_addrs: Arc<HashSet<IpAddr>>,
}

impl ProxyContext {
    pub(crate) fn is_own(&self, addr: IpAddr) -> bool {
        self.own_addrs.contains(&addr)
    }
}

/// The next connection on `listener`. Accept errors (EMFILE and friends) are logged and
/// retried after a pause instead of spinning. Cancel-safe.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    what: &'static str,
) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(a) => return a,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The gateway's own addresses for a listener bound to `listen`: that address, or every
/// interface address when it is unspecified (0.0.0.0 / ::).
pub fn own_addresses(listen: &[SocketAddr]) -> HashSet<IpAddr> {
    let mut set = HashSet::new();
    let mut any = false;
    for a in listen {
        if a.ip().is_unspecified() {
            any = true;
        } else {
            set.insert(a.ip());
        }
    }
    if any {
        match nix::ifaddrs::getifaddrs() {
            Ok(addrs) => {
                for ifa in addrs {
                    let Some(sa) = ifa.address else { continue };
                    if let Some(v4) = sa.as_sockaddr_in() {
                        set.insert(IpAddr::V4(v4.ip()));
                    } else if let Some(v6) = sa.as_sockaddr_in6() {
                        set.insert(IpAddr::V6(v6.ip()));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list interface addresses; the gateway's own addresses are judged by class only");
            }
        }
    }
    set
}

//! Dial the chosen address, bounded by the connect timeout. The whole admission of a
//! connection ([`admit`]) is decide, resolve and pin, dial.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use perimeter_policy::{Decision, Snapshot};
use tokio::net::TcpStream;

use super::ProxyContext;
use super::decide::decide;
use super::endpoint::{Routed, route};
use super::refusal::{Refusal, Why};
use super::resolve::resolve_and_pin;
use super::target::Target;

/// What admission found: a public upstream the policy allows, or a private endpoint.
pub(crate) enum Admission {
    Public(Admitted),
    Endpoint(Routed),
}

/// An upstream connection the policy allows.
pub(crate) struct Admitted {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) target: Target,
    pub(crate) stream: TcpStream,
    pub(crate) addr: SocketAddr,
    pub(crate) decision: Decision,
}

/// Admit a connection (a tunnel, a redirected connection) to `target`: decide it on `snap`
/// without a path, resolve, guard and pin its address, dial it; or route it to its private
/// endpoint (where `pin` does not apply: the endpoint, not the address the client dialled,
/// picks the backends). Forwarded requests take the same steps one by one
/// ([`super::forward`]).
pub(crate) async fn admit(
    ctx: &ProxyContext,
    snap: Arc<Snapshot>,
    target: Target,
    pin: Option<IpAddr>,
) -> Result<Admission, Refusal> {
    let decided = decide(snap, target, None)?;
    if let Some(endpoint) = decided.endpoint() {
        let routed = route(ctx, decided.snap, decided.target, endpoint).await?;
        return Ok(Admission::Endpoint(routed));
    }
    let chosen = resolve_and_pin(ctx, &decided, pin).await?;
    let addr = SocketAddr::new(chosen.addr, decided.target.port);
    let stream = dial(ctx, addr).await?;
    Ok(Admission::Public(Admitted {
        snap: decided.snap,
        target: decided.target,
        stream,
        addr,
        decision: chosen.decision,
    }))
}

pub(crate) async fn dial(ctx: &ProxyContext, addr: SocketAddr) -> Result<TcpStream, Refusal> {
    let timeout = ctx.limits.connect_timeout;
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Refusal::new(
            Why::UpstreamConnectTimeout,
            format!("connecting to {addr} timed out after {timeout:?}"),
        )),
        Ok(Err(e)) => Err(Refusal::new(
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                Why::UpstreamConnectRefused
            } else {
                Why::UpstreamConnectFailed
            },
            format!("while connecting to upstream {addr}: {e}"),
        )),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

//! Dial the chosen address, bounded by the connect timeout. The whole admission of a
//! connection ([`admit`]) is decide, resolve and pin, dial.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use perimeter_policy::{Decision, Snapshot};
use tokio::net::TcpStream;

use super::ProxyContext;
use super::decide::decide;
use super::refusal::{Refusal, Why};
use super::resolve::resolve_and_pin;
use super::target::Target;

/// An upstream connection the policy allows.
pub(crate) struct Admitted {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) target: Target,
    pub(crate) stream: TcpStream,
    pub(crate) addr: SocketAddr,
    pub(crate) decision: Decision,
}

/// Admit a connection (a tunnel, a redirected connection) to `target`: decide it on `snap`
/// without a path, resolve, guard and pin its address, dial it. Forwarded requests take the
/// same steps one by one ([`super::forward`]).
pub(crate) async fn admit(
    ctx: &ProxyContext,
    snap: Arc<Snapshot>,
    target: Target,
    pin: Option<IpAddr>,
) -> Result<Admitted, Refusal> {
    let decided = decide(snap, target, None)?;
    let chosen = resolve_and_pin(ctx, &decided, pin).await?;
    let addr = SocketAddr::new(chosen.addr, decided.target.port);
    let stream = dial(ctx, addr).await?;
    Ok(Admitted {
        snap: decided.snap,
        target: decided.target,
        stream,
        addr,
        decision: chosen.decision,
    })
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

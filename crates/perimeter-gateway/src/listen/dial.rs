//! Dial the chosen address, bounded by the connect timeout. The whole admission of a
//! connection ([`admit`]) is decide, resolve and pin, dial.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use perimeter_policy::{Decision, Snapshot};
use tokio::io::Interest;
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
    match tokio::time::timeout(timeout, connect(addr)).await {
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
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// A TCP connection to `addr`, with TCP_NODELAY (set before the connect). Unlike tokio's
/// connect, which reads SO_ERROR once the socket is writable, the socket's error is read only
/// when the kernel reports one (EPOLLERR, EPOLLHUP): a system call less per connection.
async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, connect, setsockopt, socket, sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let _ = setsockopt(&fd, sockopt::TcpNoDelay, &true);
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(addr)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    // Non-blocking since its creation, as `from_std` needs.
    let stream = TcpStream::from_std(std::net::TcpStream::from(fd))?;
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::NotConnected)));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn connects_with_nodelay_and_says_why_it_cannot() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = connect(addr).await.unwrap();
        assert!(stream.nodelay().unwrap());
        assert_eq!(stream.peer_addr().unwrap(), addr);
        let (mut accepted, _) = listener.accept().await.unwrap();
        let mut stream = stream;
        stream.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        accepted.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");

        // Nobody listens on the port any more: refused, and said so.
        drop((listener, accepted));
        let e = connect(addr).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

        let v6 = match tokio::net::TcpListener::bind("[::1]:0").await {
            Ok(l) => l,
            // No IPv6 loopback on this host.
            Err(_) => return,
        };
        let stream = connect(v6.local_addr().unwrap()).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), v6.local_addr().unwrap());
    }
}

//! Connections spread over per-core loops.
//!
//! On a multi-thread runtime, a connection's task is woken by its sockets on whichever worker
//! polled them, and tokio wakes an idle worker to share the work each time a worker finds more
//! than one task ready (and that one wakes another as it stops searching). For a gateway these
//! are wake-ups of a sleeping thread per connection, each a context switch and, on a virtual
//! machine, an inter-processor interrupt (perf on the ingress bench: most of `serve`'s futex
//! calls were `notify_parked_local` from `transition_worker_from_searching`). In interleaved
//! runs of that bench, serving as below took `serve`'s CPU per connection setup from 242-254 µs
//! to 194-216 µs, and the p50 the listener adds from +166..+211 µs to +159..+172 µs.
//!
//! So a listener is served by one accept loop per core instead: each loop runs on a
//! current-thread runtime of its own thread ([`Loops`]) with a listening socket of its own,
//! bound to the same address with `SO_REUSEPORT`, so the kernel hands each new connection to
//! one loop, and everything of that connection (its admission, dial, relay and timers) stays on
//! that thread. The connection limit is one semaphore across the loops.
//!
//! Only on a multi-thread runtime (`perimeter serve`, `perimeter gateway`): a current-thread
//! caller (`gateway --worker-threads 1`, tests with paused time) keeps its one loop.
//!
//! `SO_REUSEPORT` is set on the caller's socket only after it was bound, so binding an address
//! another process listens on still fails as before (`EADDRINUSE`); only sockets that set
//! `SO_REUSEPORT` before binding, as the siblings here do, join the group, and Linux admits
//! only those of the same user to it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, getsockopt, listen,
    setsockopt, socket, sockopt,
};
use tokio::net::TcpListener;
use tokio::runtime::{Handle, RuntimeFlavor};

/// The per-core loops of the process: threads, each running a current-thread runtime for as
/// long as the process runs (as tokio's own worker threads do).
pub(crate) struct Loops {
    handles: Vec<Handle>,
}

static LOOPS: OnceLock<Loops> = OnceLock::new();

impl Loops {
    /// The process's loops, when the caller runs on a multi-thread runtime: as many as its
    /// workers (started on first use). `None` on a current-thread runtime, or with fewer than
    /// two loops.
    pub(crate) fn for_current() -> Option<&'static Loops> {
        let rt = Handle::try_current().ok()?;
        if rt.runtime_flavor() != RuntimeFlavor::MultiThread {
            return None;
        }
        let n = rt.metrics().num_workers();
        let loops = LOOPS.get_or_init(|| Loops::start(n));
        (loops.handles.len() >= 2).then_some(loops)
    }

    fn start(n: usize) -> Loops {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a connection loop; serving with fewer");
                    break;
                }
            };
            let handle = rt.handle().clone();
            let spawned = std::thread::Builder::new()
                .name(format!("perimeter-conn-{i}"))
                .spawn(move || rt.block_on(std::future::pending::<()>()));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a connection loop; serving with fewer");
                break;
            }
            handles.push(handle);
        }
        Loops { handles }
    }

    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// `listener` and `n - 1` more listening sockets on its address, in the same `SO_REUSEPORT`
/// group, as std sockets (non-blocking) to register on the loops that serve them. Fewer when
/// the kernel refuses a sibling (logged; the ones made serve); just `listener` when it refuses
/// the group.
pub(crate) fn group(listener: TcpListener, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    let addr = listener.local_addr()?;
    let nodelay = getsockopt(&listener, sockopt::TcpNoDelay).unwrap_or(false);
    let v6only = addr.is_ipv6() && getsockopt(&listener, sockopt::Ipv6V6Only).unwrap_or(false);
    let original = listener.into_std()?;
    let mut sockets = Vec::with_capacity(n);
    if let Err(e) = setsockopt(&original, sockopt::ReusePort, &true) {
        tracing::debug!(%addr, error = %e, "SO_REUSEPORT refused: one accept loop");
        sockets.push(original);
        return Ok(sockets);
    }
    sockets.push(original);
    while sockets.len() < n {
        match sibling(addr, nodelay, v6only) {
            Ok(s) => sockets.push(s),
            Err(e) => {
                tracing::debug!(%addr, error = %e, loops = sockets.len(), "cannot bind another accept loop's socket");
                break;
            }
        }
    }
    Ok(sockets)
}

/// A listening socket on `addr` that joins its `SO_REUSEPORT` group, with the original's
/// `TCP_NODELAY` (inherited by accepted sockets) and `IPV6_V6ONLY`.
fn sibling(addr: SocketAddr, nodelay: bool, v6only: bool) -> io::Result<std::net::TcpListener> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // As std and tokio bind listeners.
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    if addr.is_ipv6() {
        setsockopt(&fd, sockopt::Ipv6V6Only, &v6only)?;
    }
    if nodelay {
        let _ = setsockopt(&fd, sockopt::TcpNoDelay, &true);
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(std::net::TcpListener::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_shares_the_address_and_keeps_others_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        setsockopt(&l, sockopt::TcpNoDelay, &true).unwrap();
        let addr = l.local_addr().unwrap();
        let sockets = group(l, 3).unwrap();
        assert_eq!(sockets.len(), 3);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), addr);
        }
        // Another process binding the address as usual (no SO_REUSEPORT before bind) is
        // refused, as it was before the group.
        let err = std::net::TcpListener::bind(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // Every connection lands on one of the group's sockets, with the original's
        // TCP_NODELAY.
        let mut clients = Vec::new();
        for _ in 0..16 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
        }
        let mut accepted = 0;
        for s in &sockets {
            s.set_nonblocking(true).unwrap();
            while let Ok((c, _)) = s.accept() {
                assert!(c.nodelay().unwrap());
                accepted += 1;
            }
        }
        assert_eq!(accepted, 16);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_ipv6_group_keeps_the_original_v6only() {
        // A host without IPv6 loopback has nothing to check.
        let Ok(l) = TcpListener::bind("[::1]:0").await else {
            return;
        };
        let v6only = getsockopt(&l, sockopt::Ipv6V6Only).unwrap();
        let addr = l.local_addr().unwrap();
        let sockets = group(l, 2).unwrap();
        assert_eq!(sockets.len(), 2);
        for s in &sockets {
            assert_eq!(s.local_addr().unwrap(), addr);
            assert_eq!(getsockopt(s, sockopt::Ipv6V6Only).unwrap(), v6only);
        }
    }

    #[test]
    fn a_current_thread_runtime_keeps_one_loop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { assert!(Loops::for_current().is_none()) });
    }
}

//! The gateway host's own addresses, which the address guard treats as special under every
//! traffic policy (a service bound to 0.0.0.0 on the gateway host must not be reachable through
//! the gateway unless a CIDR rule names its address).
//!
//! The set is every interface address of the host plus the addresses the listeners are bound
//! to. One thread per process keeps it current: it listens on a netlink route socket for
//! address changes (`RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`) and re-reads the interface
//! addresses on each, and at least every few seconds in case a notification was lost.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Longest time between two reads of the interface addresses when no change is notified.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// A handle on the host's own addresses (cheap to clone; all handles see every refresh).
#[derive(Clone, Debug)]
pub struct OwnAddresses {
    host: Arc<RwLock<Arc<HashSet<IpAddr>>>>,
    /// The listeners' bound addresses (interface addresses too, unless unspecified).
    listeners: Arc<HashSet<IpAddr>>,
    /// The listeners' sockets themselves: what a forwarder must never dial (a loop).
    sockets: Arc<Vec<SocketAddr>>,
}

impl OwnAddresses {
    /// The host's addresses, kept current by the process-wide watcher, plus `listen`.
    pub fn watched(listen: &[SocketAddr]) -> Self {
        Self {
            host: host_set().clone(),
            listeners: Arc::new(bound(listen)),
            sockets: Arc::new(listen.to_vec()),
        }
    }

    /// A fixed set (tests).
    pub fn fixed(addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        Self {
            host: Arc::new(RwLock::new(Arc::new(HashSet::new()))),
            listeners: Arc::new(addrs.into_iter().collect()),
            sockets: Arc::new(Vec::new()),
        }
    }

    /// Whether `addr` is one of the host's own addresses.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        if self.listeners.contains(&addr) {
            return true;
        }
        self.host
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&addr)
    }

    /// Whether `addr` is one of the gateway's own listening sockets (one bound to an
    /// unspecified address listens on every own address at its port).
    pub fn is_listener(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.sockets.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip().to_canonical() == ip || (l.ip().is_unspecified() && self.contains(ip)))
        })
    }

    /// A snapshot of the set (diagnostics, tests).
    pub fn current(&self) -> HashSet<IpAddr> {
        let host = self.host.read().unwrap_or_else(|e| e.into_inner()).clone();
        host.iter().chain(self.listeners.iter()).copied().collect()
    }
}

fn bound(listen: &[SocketAddr]) -> HashSet<IpAddr> {
    listen
        .iter()
        .map(|a| a.ip().to_canonical())
        .filter(|ip| !ip.is_unspecified())
        .collect()
}

/// The process-wide set, started (with its watcher) on first use.
fn host_set() -> &'static Arc<RwLock<Arc<HashSet<IpAddr>>>> {
    static SET: OnceLock<Arc<RwLock<Arc<HashSet<IpAddr>>>>> = OnceLock::new();
    SET.get_or_init(|| {
        let set = Arc::new(RwLock::new(Arc::new(interface_addresses())));
        let watched = set.clone();
        let started = std::thread::Builder::new()
            .name("perimeter-own-addrs".into())
            .spawn(move || watch(&watched));
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the interface address watcher; own addresses are read once");
        }
        set
    })
}

/// Every address of every interface of the host.
fn interface_addresses() -> HashSet<IpAddr> {
    let mut set = HashSet::new();
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => {
            for ifa in addrs {
                let Some(sa) = ifa.address else { continue };
                if let Some(v4) = sa.as_sockaddr_in() {
                    set.insert(IpAddr::V4(v4.ip()));
                } else if let Some(v6) = sa.as_sockaddr_in6() {
                    set.insert(IpAddr::V6(v6.ip()).to_canonical());
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interface addresses");
        }
    }
    set
}

/// Re-read the interface addresses on every netlink address notification, and at least every
/// [`REFRESH_EVERY`]. Runs for the life of the process.
fn watch(set: &RwLock<Arc<HashSet<IpAddr>>>) {
    let socket = netlink_socket();
    if let Err(e) = &socket {
        tracing::warn!(error = %e, "no netlink notifications of address changes; own addresses are re-read every {REFRESH_EVERY:?}");
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match &socket {
            // Any message (or a lost one: ENOBUFS), or the timeout: re-read.
            Ok(fd) => {
                let _ = nix::sys::socket::recv(
                    std::os::fd::AsRawFd::as_raw_fd(fd),
                    &mut buf,
                    nix::sys::socket::MsgFlags::empty(),
                );
            }
            Err(_) => std::thread::sleep(REFRESH_EVERY),
        }
        let fresh = interface_addresses();
        let mut current = set.write().unwrap_or_else(|e| e.into_inner());
        if **current != fresh {
            tracing::info!(count = fresh.len(), "the host's addresses changed");
            *current = Arc::new(fresh);
        }
    }
}

/// A netlink route socket subscribed to address changes, with a receive timeout of
/// [`REFRESH_EVERY`].
fn netlink_socket() -> nix::Result<std::os::fd::OwnedFd> {
    use nix::sys::socket::{
        AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, setsockopt, socket,
        sockopt::ReceiveTimeout,
    };
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &NetlinkAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR),
    )?;
    setsockopt(
        &fd,
        ReceiveTimeout,
        &nix::sys::time::TimeVal::new(REFRESH_EVERY.as_secs() as _, 0),
    )?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_address_is_own_and_listeners_count_too() {
        let own =
            OwnAddresses::watched(&["0.0.0.0:0".parse().unwrap(), "127.0.0.9:1".parse().unwrap()]);
        // Loopback is an interface address of every Linux host.
        assert!(own.contains("127.0.0.1".parse().unwrap()));
        assert!(own.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(
            own.contains("127.0.0.9".parse().unwrap()),
            "a bound listener address"
        );
        assert!(!own.contains("0.0.0.0".parse().unwrap()));
        for ip in interface_addresses() {
            assert!(own.contains(ip), "{ip}");
        }
        assert!(!own.contains("203.0.113.254".parse().unwrap()));
    }
}

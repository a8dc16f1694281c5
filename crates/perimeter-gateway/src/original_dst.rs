//! The destination a client meant before an iptables/nftables `REDIRECT` or `TPROXY`-less NAT
//! rule sent its connection to the transparent listener.
//!
//! Linux keeps it in the connection-tracking entry and hands it out through
//! `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (IPv4) or `getsockopt(SOL_IPV6,
//! IP6T_SO_ORIGINAL_DST)` (IPv6). The transparent listener uses it to check that the address
//! the client dialled is among those the gateway resolves for the SNI or Host (DESIGN
//! "Consistency").

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::TcpStream;

/// The original destination of a redirected connection accepted on `stream`.
///
/// On a connection that no NAT rule redirected, what the kernel answers depends on connection
/// tracking: with `nf_conntrack` loaded (and the connection tracked) it returns the
/// connection's own local address, since that *was* the destination; without it the call fails
/// (`ENOPROTOOPT` when the option is not registered, `ENOENT` when there is no tracking entry).
/// Callers treat an error as "not redirected" and refuse the connection on the transparent
/// listener.
pub fn original_dst(stream: &TcpStream) -> io::Result<SocketAddr> {
    let local = stream.local_addr()?;
    let v4_socket = match local {
        SocketAddr::V4(_) => true,
        // A dual-stack socket that accepted an IPv4 client: conntrack holds an IPv4 entry.
        SocketAddr::V6(v6) => v6.ip().to_ipv4_mapped().is_some(),
    };
    if v4_socket {
        let sin = getsockopt(stream, sockopt::OriginalDst).map_err(io::Error::from)?;
        let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Ok(SocketAddr::V4(SocketAddrV4::new(
            ip,
            u16::from_be(sin.sin_port),
        )))
    } else {
        let sin6 = getsockopt(stream, sockopt::Ip6tOriginalDst).map_err(io::Error::from)?;
        let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
        Ok(SocketAddr::V6(SocketAddrV6::new(
            ip,
            u16::from_be(sin6.sin6_port),
            u32::from_be(sin6.sin6_flowinfo),
            sin6.sin6_scope_id,
        )))
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// Without a redirect the kernel answers with the local address (conntrack loaded) or an
    /// error (no conntrack); it must never invent another address.
    async fn check(bind: &str) {
        let Ok(listener) = TcpListener::bind(bind).await else {
            return; // no IPv6 loopback in this sandbox
        };
        let addr = listener.local_addr().unwrap();
        let client = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(TcpStream::connect(addr), listener.accept())
        })
        .await
        .expect("loopback connect hung");
        let _client = client.0.unwrap();
        let (server, _) = client.1.unwrap();
        match original_dst(&server) {
            Ok(dst) => assert_eq!(dst, server.local_addr().unwrap()),
            Err(e) => {
                let code = e.raw_os_error();
                assert!(
                    code == Some(libc_enoent()) || code == Some(libc_enoprotoopt()),
                    "unexpected error {e:?}"
                );
            }
        }
    }

    fn libc_enoent() -> i32 {
        nix::errno::Errno::ENOENT as i32
    }

    fn libc_enoprotoopt() -> i32 {
        nix::errno::Errno::ENOPROTOOPT as i32
    }

    #[tokio::test]
    async fn not_redirected_ipv4() {
        check("127.0.0.1:0").await;
    }

    #[tokio::test]
    async fn not_redirected_ipv6() {
        check("[::1]:0").await;
    }
}

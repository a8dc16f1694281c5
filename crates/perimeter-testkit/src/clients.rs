//! TCP clients of the ingress tests: bound to a chosen loopback source, sending a line and
//! reading its echo, or seeing the gateway close the connection.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};

/// A TCP connection to the IPv4 address `to` from the loopback source `from`, with a 10 s read
/// timeout.
pub fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 listener expected: {to}")
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to))?;
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Send a line and read its echo: the connection reaches an echo workload.
pub fn echoes(s: &mut TcpStream, line: &str) -> bool {
    if s.write_all(line.as_bytes()).is_err() {
        return false;
    }
    let mut got = vec![0u8; line.len()];
    s.read_exact(&mut got).is_ok() && got == line.as_bytes()
}

/// The gateway closed the connection: a read ends (end of stream or reset) within the read
/// timeout, with no byte.
pub fn closed(s: &mut TcpStream) -> bool {
    let _ = s.write_all(b"should not arrive\n");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

//! A raw CONNECT tunnel through an explicit proxy, as a client that speaks HTTP/1.1 itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Open a CONNECT tunnel through `proxy` to `target`: the proxy's status code (0 when it
/// answered nothing readable) and the stream, past the proxy's answer head.
pub fn connect_tunnel(proxy: &str, target: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

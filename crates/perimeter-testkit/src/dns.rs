//! A DNS server on loopback, so that gateways under test never ask the machine's resolver.

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::{Arc, Mutex};

/// A DNS server on 127.0.0.1:0 answering A queries from `records` (names in lower case, no
/// trailing dot); other types of a known name get an empty answer, unknown names NXDOMAIN (so
/// an empty map answers NXDOMAIN to everything). Returns its `ip:port`; it serves until the
/// process ends.
pub fn dns_server(records: HashMap<String, Vec<Ipv4Addr>>) -> String {
    recording_dns_server(records).0
}

/// The names a [`recording_dns_server`] was asked about, in order (lower case, no trailing
/// dot).
#[derive(Clone, Default)]
pub struct SeenQueries(Arc<Mutex<Vec<String>>>);

impl SeenQueries {
    pub fn names(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// [`dns_server`] that also keeps the name of every query it receives.
pub fn recording_dns_server(records: HashMap<String, Vec<Ipv4Addr>>) -> (String, SeenQueries) {
    let seen = SeenQueries::default();
    let keep = seen.clone();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            if n < 17 || u16::from_be_bytes([q[4], q[5]]) != 1 {
                continue;
            }
            let mut labels = Vec::new();
            let mut i = 12;
            while i < n && q[i] != 0 {
                let len = q[i] as usize;
                if len > 63 || i + 1 + len > n {
                    break;
                }
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + len]).to_lowercase());
                i += 1 + len;
            }
            let end = i + 5;
            if end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let name = labels.join(".");
            keep.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(name.clone());
            let found = records.get(&name);
            let answers: Vec<Ipv4Addr> = match (found, qtype) {
                (Some(ips), 1) => ips.clone(),
                _ => Vec::new(),
            };
            let mut r = Vec::with_capacity(end + 16 * answers.len());
            r.extend_from_slice(&q[..2]);
            r.push(0x84 | (q[2] & 0x01)); // QR, AA, keep RD
            r.push(0x80 | if found.is_some() { 0 } else { 3 }); // RA, NOERROR/NXDOMAIN
            r.extend_from_slice(&[0, 1]);
            r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]);
            for ip in answers {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
                r.extend_from_slice(&ip.octets());
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    (addr, seen)
}

/// A DNS server on 127.0.0.1:0 that answers NXDOMAIN to everything.
pub fn nxdomain_dns() -> String {
    dns_server(HashMap::new())
}

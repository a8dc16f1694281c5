//! The PROXY protocol v2 header a forwarder sends first on a backend connection of a service
//! that asks for one, as an AWS Network Load Balancer in front of a VPC endpoint service does:
//! the client's address, the address it connected to, and the endpoint's connection id in the
//! TLV that AWS uses for VPC endpoint ids (type 0xEA, subtype 0x01).

use std::net::{IpAddr, SocketAddr};

/// The v2 signature.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
const VERSION_PROXY: u8 = 0x21;
/// TCP over IPv4 / IPv6.
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
/// AWS's custom TLV and its VPC endpoint id subtype.
pub(crate) const TLV_AWS: u8 = 0xEA;
pub(crate) const AWS_VPCE_ID: u8 = 0x01;

/// The header for a connection from `source` to `destination` through the endpoint whose
/// connection id is `vpce_id` (at most 255 bytes, checked when the snapshot is compiled; a
/// longer one is cut). IPv4 addresses behind IPv6 (`::ffff:a.b.c.d`) count as IPv4; a mixed pair
/// is sent as IPv6.
pub(crate) fn encode(source: SocketAddr, destination: SocketAddr, vpce_id: &str) -> Vec<u8> {
    let id = &vpce_id.as_bytes()[..vpce_id.len().min(255)];
    let (src, dst) = (source.ip().to_canonical(), destination.ip().to_canonical());
    let mut addresses = Vec::with_capacity(36);
    let family = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            addresses.extend_from_slice(&s.octets());
            addresses.extend_from_slice(&d.octets());
            TCP4
        }
        (s, d) => {
            addresses.extend_from_slice(&v6(s).octets());
            addresses.extend_from_slice(&v6(d).octets());
            TCP6
        }
    };
    addresses.extend_from_slice(&source.port().to_be_bytes());
    addresses.extend_from_slice(&destination.port().to_be_bytes());
    let tlv_len = 1 + id.len();
    let len = addresses.len() + 3 + tlv_len;
    let mut out = Vec::with_capacity(16 + len);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_PROXY);
    out.push(family);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&addresses);
    out.push(TLV_AWS);
    out.extend_from_slice(&(tlv_len as u16).to_be_bytes());
    out.push(AWS_VPCE_ID);
    out.extend_from_slice(id);
    out
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (family, addresses, source port, destination port, TLVs).
    type Parsed = (u8, Vec<u8>, u16, u16, Vec<(u8, Vec<u8>)>);

    /// A reader of the parts a backend uses, written from the specification's layout.
    fn read(h: &[u8]) -> Parsed {
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(h[12], VERSION_PROXY);
        let len = u16::from_be_bytes([h[14], h[15]]) as usize;
        assert_eq!(h.len(), 16 + len, "length field covers the rest");
        let body = &h[16..];
        let alen = if h[13] == TCP4 { 12 } else { 36 };
        let ip_len = (alen - 4) / 2;
        let addrs = body[..2 * ip_len].to_vec();
        let sport = u16::from_be_bytes([body[2 * ip_len], body[2 * ip_len + 1]]);
        let dport = u16::from_be_bytes([body[2 * ip_len + 2], body[2 * ip_len + 3]]);
        let mut tlvs = Vec::new();
        let mut rest = &body[alen..];
        while !rest.is_empty() {
            let t = rest[0];
            let l = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            tlvs.push((t, rest[3..3 + l].to_vec()));
            rest = &rest[3 + l..];
        }
        (h[13], addrs, sport, dport, tlvs)
    }

    #[test]
    fn ipv4_with_the_vpce_tlv() {
        let h = encode(
            "198.51.100.7:40000".parse().unwrap(),
            "203.0.113.9:9092".parse().unwrap(),
            "vpce-0a1b2c3d4e5f67890",
        );
        let (family, addrs, sport, dport, tlvs) = read(&h);
        assert_eq!(family, TCP4);
        assert_eq!(addrs, [198, 51, 100, 7, 203, 0, 113, 9]);
        assert_eq!((sport, dport), (40000, 9092));
        let mut value = vec![AWS_VPCE_ID];
        value.extend_from_slice(b"vpce-0a1b2c3d4e5f67890");
        assert_eq!(tlvs, [(TLV_AWS, value)]);
    }

    #[test]
    fn mapped_ipv4_is_ipv4_and_mixed_pairs_are_ipv6() {
        let mapped = encode(
            "[::ffff:127.0.0.1]:1".parse().unwrap(),
            "127.0.0.2:2".parse().unwrap(),
            "pe-1",
        );
        assert_eq!(read(&mapped).0, TCP4);
        let mixed = encode(
            "[2001:db8::1]:1".parse().unwrap(),
            "127.0.0.2:2".parse().unwrap(),
            "pe-1",
        );
        let (family, addrs, ..) = read(&mixed);
        assert_eq!(family, TCP6);
        assert_eq!(
            &addrs[16..],
            &"::ffff:127.0.0.2"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }
}

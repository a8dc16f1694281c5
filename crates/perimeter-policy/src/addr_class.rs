//! Address classes of the address guard (SSRF and DNS rebinding).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ipv4_behind;

/// What kind of address an IP address is, as the address guard sees it. Every class but
/// [`AddrClass::Public`] is *special*: the gateway dials a special address only when a CIDR rule
/// covers it (and the port), under every traffic policy.
///
/// The list is explicit. The documentation ranges (192.0.2.0/24, 198.51.100.0/24,
/// 203.0.113.0/24, 2001:db8::/32) are deliberately [`AddrClass::Public`], so tests can stand
/// "public" upstreams on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrClass {
    /// Any address not listed below.
    Public,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16), IPv6 ULA fc00::/7 and deprecated site-local
    /// fec0::/10.
    Private,
    /// 169.254.0.0/16 and fe80::/10, except the metadata addresses.
    LinkLocal,
    /// Cloud instance metadata: 169.254.169.254 and fd00:ec2::254.
    Metadata,
    /// Carrier-grade NAT shared space 100.64.0.0/10.
    Cgnat,
    /// 224.0.0.0/4 and ff00::/8.
    Multicast,
    /// 0.0.0.0 and ::.
    Unspecified,
    /// The rest of 0.0.0.0/8 ("this network").
    ThisNetwork,
    /// 255.255.255.255.
    Broadcast,
    /// Reserved space nothing legitimate is dialled on: 240.0.0.0/4 (but broadcast), IPv6
    /// discard-only 100::/64 and local-use NAT64 64:ff9b:1::/48.
    Reserved,
    /// One of the gateway's own addresses. [`classify`] never returns it: only the gateway
    /// knows its addresses, and passes them to the decision as a predicate.
    OwnAddress,
}

impl AddrClass {
    /// Stable snake_case name, for logs and metric labels.
    /// Whether a private endpoint's forwarder refuses to dial a backend of this class, whoever
    /// registered it: cloud metadata and link-local addresses, and addresses no host is
    /// dialled on. (Loopback, private and public backends are the service owner's choice.)
    pub fn refused_as_backend(self) -> bool {
        matches!(
            self,
            AddrClass::Metadata
                | AddrClass::LinkLocal
                | AddrClass::Multicast
                | AddrClass::Unspecified
                | AddrClass::ThisNetwork
                | AddrClass::Broadcast
                | AddrClass::Reserved
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link_local",
            AddrClass::Metadata => "metadata",
            AddrClass::Cgnat => "cgnat",
            AddrClass::Multicast => "multicast",
            AddrClass::Unspecified => "unspecified",
            AddrClass::ThisNetwork => "this_network",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Reserved => "reserved",
            AddrClass::OwnAddress => "own_address",
        }
    }

    /// Whether the address guard refuses this class unless a CIDR rule covers the address.
    pub fn is_special(self) -> bool {
        self != AddrClass::Public
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of `addr`. IPv4-mapped and IPv4-embedding IPv6 forms (`::ffff:a.b.c.d`, NAT64,
/// 6to4, Teredo; see [`ipv4_behind`]) are judged as the IPv4 address they carry, so
/// `::ffff:127.0.0.1` and `64:ff9b::7f00:1` are [`AddrClass::Loopback`].
pub fn classify(addr: IpAddr) -> AddrClass {
    match ipv4_behind(addr) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(addr: Ipv4Addr) -> AddrClass {
    let [a, b, c, d] = addr.octets();
    match (a, b) {
        _ if addr == Ipv4Addr::BROADCAST => AddrClass::Broadcast,
        _ if addr == Ipv4Addr::UNSPECIFIED => AddrClass::Unspecified,
        (0, _) => AddrClass::ThisNetwork,
        (127, _) => AddrClass::Loopback,
        (10, _) | (192, 168) => AddrClass::Private,
        (172, 16..=31) => AddrClass::Private,
        (169, 254) if (c, d) == (169, 254) => AddrClass::Metadata,
        (169, 254) => AddrClass::LinkLocal,
        (100, 64..=127) => AddrClass::Cgnat,
        (224..=239, _) => AddrClass::Multicast,
        (240..=255, _) => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

/// fd00:ec2::254, the IPv6 instance metadata address of EC2.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn classify_v6(addr: Ipv6Addr) -> AddrClass {
    let s = addr.segments();
    if addr.is_unspecified() {
        AddrClass::Unspecified
    } else if addr.is_loopback() {
        AddrClass::Loopback
    } else if addr == METADATA_V6 {
        AddrClass::Metadata
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        AddrClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddrClass::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        AddrClass::Multicast
    } else if s[..4] == [0x100, 0, 0, 0] || s[..3] == [0x64, 0xff9b, 1] {
        AddrClass::Reserved
    } else {
        AddrClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_table() {
        let cases: &[(&str, &str, AddrClass)] = &[
            ("loopback v4", "127.0.0.1", AddrClass::Loopback),
            ("loopback v4 high", "127.255.255.254", AddrClass::Loopback),
            ("loopback v6", "::1", AddrClass::Loopback),
            ("rfc1918 10", "10.1.2.3", AddrClass::Private),
            ("rfc1918 172.16", "172.16.0.1", AddrClass::Private),
            ("rfc1918 172.31", "172.31.255.255", AddrClass::Private),
            ("not rfc1918 172.32", "172.32.0.1", AddrClass::Public),
            ("rfc1918 192.168", "192.168.1.1", AddrClass::Private),
            ("ula", "fd12:3456::1", AddrClass::Private),
            ("ula fc", "fc00::1", AddrClass::Private),
            ("site-local", "fec0::1", AddrClass::Private),
            ("link-local v4", "169.254.1.1", AddrClass::LinkLocal),
            ("link-local v6", "fe80::1", AddrClass::LinkLocal),
            ("metadata v4", "169.254.169.254", AddrClass::Metadata),
            ("metadata v6", "fd00:ec2::254", AddrClass::Metadata),
            ("cgnat low", "100.64.0.1", AddrClass::Cgnat),
            ("cgnat high", "100.127.255.255", AddrClass::Cgnat),
            ("not cgnat", "100.128.0.1", AddrClass::Public),
            ("multicast v4", "224.0.0.251", AddrClass::Multicast),
            ("multicast v6", "ff02::1", AddrClass::Multicast),
            ("unspecified v4", "0.0.0.0", AddrClass::Unspecified),
            ("unspecified v6", "::", AddrClass::Unspecified),
            ("this network", "0.1.2.3", AddrClass::ThisNetwork),
            ("broadcast", "255.255.255.255", AddrClass::Broadcast),
            ("class e", "240.0.0.1", AddrClass::Reserved),
            ("discard-only v6", "100::1", AddrClass::Reserved),
            ("local-use nat64", "64:ff9b:1::7f00:1", AddrClass::Reserved),
            ("mapped loopback", "::ffff:127.0.0.1", AddrClass::Loopback),
            (
                "mapped metadata",
                "::ffff:169.254.169.254",
                AddrClass::Metadata,
            ),
            ("nat64 loopback", "64:ff9b::7f00:1", AddrClass::Loopback),
            ("nat64 private", "64:ff9b::a01:203", AddrClass::Private),
            ("6to4 private", "2002:a00:1::", AddrClass::Private),
            ("compat loopback", "::127.0.0.1", AddrClass::Loopback),
            ("compat this-network", "::2", AddrClass::ThisNetwork),
            ("doc 192.0.2", "192.0.2.1", AddrClass::Public),
            ("doc 198.51.100", "198.51.100.7", AddrClass::Public),
            ("doc 203.0.113", "203.0.113.9", AddrClass::Public),
            ("doc v6", "2001:db8::1", AddrClass::Public),
            ("public v4", "8.8.8.8", AddrClass::Public),
            ("public v6", "2606:4700::1111", AddrClass::Public),
            ("mapped public", "::ffff:203.0.113.9", AddrClass::Public),
        ];
        for (name, addr, want) in cases {
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(classify(addr), *want, "{name}: {addr}");
            assert_eq!(want.is_special(), *want != AddrClass::Public, "{name}");
        }
    }
}

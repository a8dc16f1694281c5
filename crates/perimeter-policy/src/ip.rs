//! IP literals and CIDR prefixes, in canonical spellings only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::quote;

/// Why a string is not a canonical IP literal. Non-canonical spellings are refused, never
/// reinterpreted: different parsers read them as different addresses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpLiteralError {
    #[error("IP address is empty; give a canonical address such as 192.0.2.1 or 2001:db8::1")]
    Empty,
    #[error(
        "{input} is an IPv4 address written as a single number; write it as a dotted quad of four decimal parts, such as 192.0.2.1"
    )]
    Decimal { input: String },
    #[error(
        "{input} is a shortened IPv4 address; write all four decimal parts, such as 127.0.0.1 rather than 127.1"
    )]
    Short { input: String },
    #[error(
        "{input} has a hexadecimal part; write an IPv4 address as four decimal parts, such as 127.0.0.1"
    )]
    Hex { input: String },
    #[error(
        "{input} has a part with a leading zero, which some parsers read as octal; write each part in decimal without leading zeros, such as 10.0.0.1"
    )]
    LeadingZero { input: String },
    #[error("{input} has a part greater than 255; each IPv4 part is 0-255")]
    OctetOutOfRange { input: String },
    #[error("{input} has too many parts; an IPv4 address has exactly four, such as 192.0.2.1")]
    TooManyParts { input: String },
    #[error(
        "{input} carries an IPv6 zone id ('%...'); zone ids are not allowed, give the address alone"
    )]
    ZoneId { input: String },
    #[error(
        "{input} is not a valid IPv6 address; write it as in RFC 5952, such as 2001:db8::1 or [2001:db8::1]"
    )]
    InvalidIpv6 { input: String },
    #[error(
        "{input} is not an IP address; give a canonical IPv4 (192.0.2.1) or IPv6 (2001:db8::1) address"
    )]
    NotAnIp { input: String },
}

/// Parse a destination IP literal: a canonical dotted-quad IPv4 address, or an IPv6 address,
/// bracketed or not, without zone id. Everything else (decimal `2130706433`, octal
/// `0177.0.0.1`, hex `0x7f.0.0.1`, short `127.1`, zero-padded `127.000.0.1`) is refused with a
/// reason. IPv4-mapped IPv6 addresses are returned as IPv6; see [`ipv4_behind`] to judge them.
pub fn parse_ip_literal(s: &str) -> Result<IpAddr, IpLiteralError> {
    if s.is_empty() {
        return Err(IpLiteralError::Empty);
    }
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| IpLiteralError::InvalidIpv6 { input: quote(s) })?;
        return parse_ipv6(inner, s).map(IpAddr::V6);
    }
    if s.contains(':') || s.contains('%') {
        return parse_ipv6(s, s).map(IpAddr::V6);
    }
    parse_ipv4(s).map(IpAddr::V4)
}

/// The IPv4 address an IPv6 address carries, when it is IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, not `::` or `::1`), NAT64 (`64:ff9b::/96`), 6to4
/// (`2002::/16`) or Teredo (`2001::/32`, client address obfuscated); the address itself
/// otherwise. The address guard judges such addresses as the IPv4 address they carry.
pub fn ipv4_behind(addr: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = addr else {
        return addr;
    };
    let o = v6.octets();
    let s = v6.segments();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        IpAddr::V4(v4)
    } else if (s[..6] == [0; 6] && u32::from(tail) > 1) || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) or NAT64 well-known prefix.
        IpAddr::V4(tail)
    } else if s[0] == 0x2002 {
        IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else if s[0] == 0x2001 && s[1] == 0 {
        IpAddr::V4(Ipv4Addr::from(!u32::from(tail)))
    } else {
        addr
    }
}

fn parse_ipv6(inner: &str, input: &str) -> Result<Ipv6Addr, IpLiteralError> {
    if inner.contains('%') {
        return Err(IpLiteralError::ZoneId {
            input: quote(input),
        });
    }
    inner.parse().map_err(|_| IpLiteralError::InvalidIpv6 {
        input: quote(input),
    })
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, IpLiteralError> {
    let input = || quote(s);
    if !s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
    {
        return Err(IpLiteralError::NotAnIp { input: input() });
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(IpLiteralError::NotAnIp { input: input() });
    }
    if parts
        .iter()
        .any(|p| p.len() > 1 && (p.starts_with("0x") || p.starts_with("0X")))
    {
        return Err(IpLiteralError::Hex { input: input() });
    }
    if !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(IpLiteralError::NotAnIp { input: input() });
    }
    if parts.iter().any(|p| p.len() > 1 && p.starts_with('0')) {
        return Err(IpLiteralError::LeadingZero { input: input() });
    }
    match parts.len() {
        1 => return Err(IpLiteralError::Decimal { input: input() }),
        2 | 3 => return Err(IpLiteralError::Short { input: input() }),
        4 => {}
        _ => return Err(IpLiteralError::TooManyParts { input: input() }),
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        *octet = part
            .parse()
            .map_err(|_| IpLiteralError::OctetOutOfRange { input: input() })?;
    }
    Ok(Ipv4Addr::from(octets))
}

/// A CIDR prefix with zero host bits, parsed strictly: `10.0.0.0/8`, `2001:db8::/32`. A bare
/// address is accepted as `/32` or `/128`. Displayed canonically (`10.0.0.1/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(IpNet);

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("CIDR is empty; give a prefix such as 10.0.0.0/8 or 2001:db8::/32")]
    Empty,
    #[error(transparent)]
    Address(#[from] IpLiteralError),
    #[error("{input}: write a CIDR without brackets, such as 2001:db8::/32 or 2001:db8::1/128")]
    Brackets { input: String },
    #[error(
        "{input} has an invalid prefix length; write it in decimal without leading zeros, such as /8"
    )]
    InvalidPrefixLen { input: String },
    #[error("{input} has prefix length {len}; it must be 0-{max} for {family}")]
    PrefixOutOfRange {
        input: String,
        len: u32,
        max: u8,
        family: &'static str,
    },
    #[error("{input} has host bits set; use {suggested}")]
    HostBitsSet { input: String, suggested: String },
}

impl Cidr {
    /// A prefix from a network; fails when host bits are set.
    pub fn new(net: IpNet) -> Result<Self, CidrError> {
        if net.trunc() != net {
            return Err(CidrError::HostBitsSet {
                input: net.to_string(),
                suggested: net.trunc().to_string(),
            });
        }
        Ok(Self(net))
    }

    pub fn net(&self) -> IpNet {
        self.0
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(CidrError::Empty);
        }
        let (addr, len) = match s.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (s, None),
        };
        if addr.starts_with('[') || addr.ends_with(']') {
            return Err(CidrError::Brackets { input: quote(s) });
        }
        let addr = parse_ip_literal(addr)?;
        let (max, family) = match addr {
            IpAddr::V4(_) => (32u8, "IPv4"),
            IpAddr::V6(_) => (128u8, "IPv6"),
        };
        let len = match len {
            None => max,
            Some(len) => {
                let canonical = !len.is_empty()
                    && len.len() <= 3
                    && len.bytes().all(|b| b.is_ascii_digit())
                    && (len == "0" || !len.starts_with('0'));
                if !canonical {
                    return Err(CidrError::InvalidPrefixLen { input: quote(s) });
                }
                let value: u32 = len
                    .parse()
                    .map_err(|_| CidrError::InvalidPrefixLen { input: quote(s) })?;
                if value > u32::from(max) {
                    return Err(CidrError::PrefixOutOfRange {
                        input: quote(s),
                        len: value,
                        max,
                        family,
                    });
                }
                value as u8
            }
        };
        let net =
            IpNet::new(addr, len).map_err(|_| CidrError::InvalidPrefixLen { input: quote(s) })?;
        if net.trunc() != net {
            return Err(CidrError::HostBitsSet {
                input: s.to_owned(),
                suggested: net.trunc().to_string(),
            });
        }
        Ok(Self(net))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Cidr> for IpNet {
    fn from(cidr: Cidr) -> Self {
        cidr.0
    }
}

crate::serde_as_string!(Cidr);

#[cfg(test)]
mod tests;

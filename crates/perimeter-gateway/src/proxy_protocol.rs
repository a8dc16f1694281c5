//! A strict, incremental reader of PROXY protocol headers (v1 text and v2 binary), as a load
//! balancer sends them first on a connection to say whose connection it relays. The layout is
//! haproxy's `proxy-protocol.txt`.
//!
//! [`parse`] takes the bytes read so far and answers [`Parsed::NeedMore`], a complete
//! [`Header`] (with its length: what follows is the client's own stream), or
//! [`Parsed::Invalid`] with the reason. It never panics and never asks for more than
//! [`MAX_HEADER_LEN`] bytes, so a reader that stops at that cap holds a bounded buffer. Every
//! strict prefix of a valid header is `NeedMore`; bytes that can no longer start a valid header
//! are refused as soon as they are seen.
//!
//! - v1: `PROXY TCP4|TCP6 src dst sport dport\r\n` (addresses of the named family, ports in
//!   decimal without leading zeros), or `PROXY UNKNOWN ...\r\n` (the receiver uses the
//!   connection's own endpoints); at most 107 bytes, CRLF included.
//! - v2: the 12-byte signature, version 2, command LOCAL (the connection is the proxy's own: the
//!   addresses are ignored) or PROXY; families UNSPEC (treated as unknown), TCP over IPv4 and
//!   IPv6. UNIX sockets and datagrams are refused, as no listener here relays them. The address
//!   block must fit in the length; the TLVs after it must fill the rest exactly. The AWS TLV
//!   (0xEA) must carry a subtype; its VPC endpoint id (subtype 0x01) must be printable ASCII.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 header, CRLF included.
pub const V1_MAX_LEN: usize = 107;
/// Longest v2 header accepted (16 fixed bytes, addresses and TLVs). The protocol allows up to
/// 16 + 65535; load balancers send a few hundred bytes at most.
pub const V2_MAX_LEN: usize = 16 + 2048;
/// Longest header of either version: a reader never needs more bytes than this.
pub const MAX_HEADER_LEN: usize = V2_MAX_LEN;

/// AWS's TLV type and its VPC endpoint id subtype.
pub const TLV_AWS: u8 = 0xEA;
pub const AWS_VPCE_ID: u8 = 0x01;

/// What the bytes read so far are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header: read more (at most up to [`MAX_HEADER_LEN`] in all).
    NeedMore,
    Header(Header),
    Invalid(Invalid),
}

/// A complete header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    pub addresses: Addresses,
    /// v2 TLVs in order (v1 has none).
    pub tlvs: Vec<Tlv>,
    /// Bytes the header takes: the client's stream starts after them.
    pub header_len: usize,
}

/// Whose connection the header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// v2 LOCAL: the proxy's own connection (a health check); use the connection's endpoints.
    Local,
    /// v1 UNKNOWN or v2 PROXY with family UNSPEC: the sender does not know; use the
    /// connection's endpoints.
    Unknown,
    /// A TCP connection from `source` to `destination`.
    Tcp {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// One v2 TLV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub kind: u8,
    pub value: Vec<u8>,
}

impl Header {
    /// The client's address: the header's source, or `None` when the connection's own peer is
    /// to be used (LOCAL, UNKNOWN).
    pub fn source(&self) -> Option<SocketAddr> {
        match self.addresses {
            Addresses::Tcp { source, .. } => Some(source),
            Addresses::Local | Addresses::Unknown => None,
        }
    }

    pub fn destination(&self) -> Option<SocketAddr> {
        match self.addresses {
            Addresses::Tcp { destination, .. } => Some(destination),
            Addresses::Local | Addresses::Unknown => None,
        }
    }

    /// The AWS VPC endpoint id (TLV 0xEA, subtype 0x01), if the header carries one.
    pub fn vpce_id(&self) -> Option<&str> {
        self.tlvs.iter().find_map(|t| match t.value.split_first() {
            Some((&AWS_VPCE_ID, id)) if t.kind == TLV_AWS => std::str::from_utf8(id).ok(),
            _ => None,
        })
    }
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the connection does not open with a PROXY protocol signature")]
    NoSignature,
    #[error("the v1 header has no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("the v1 header has a CR or LF that is not its closing CRLF")]
    V1BadLineEnd,
    #[error("the v1 header has a byte that is not printable ASCII")]
    V1BadByte,
    #[error("the v1 header's protocol is not TCP4, TCP6 or UNKNOWN")]
    V1BadProtocol,
    #[error("the v1 header does not have exactly four address fields separated by single spaces")]
    V1BadFields,
    #[error("the v1 header has an address that is not of its protocol's family")]
    V1BadAddress,
    #[error("the v1 header has a port that is not a decimal number 0-65535 without leading zeros")]
    V1BadPort,
    #[error("the v2 header's version is not 2")]
    V2BadVersion,
    #[error("the v2 header's command is neither LOCAL nor PROXY")]
    V2BadCommand,
    #[error("the v2 header's address family or transport is not defined")]
    V2BadFamily,
    #[error("the v2 header names a UNIX socket or datagram connection, which is not relayed here")]
    V2UnsupportedFamily,
    #[error("the v2 header's length is over {V2_MAX_LEN} bytes")]
    V2TooLong,
    #[error("the v2 header's length is too short for its address block")]
    V2ShortAddresses,
    #[error("a v2 TLV runs past the end of the header")]
    V2TlvOverrun,
    #[error("the v2 AWS TLV is empty or its VPC endpoint id is not printable ASCII")]
    V2BadAwsTlv,
}

impl Invalid {
    /// A stable, short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Invalid::NoSignature => "no_signature",
            Invalid::V1TooLong => "v1_too_long",
            Invalid::V1BadLineEnd => "v1_bad_line_end",
            Invalid::V1BadByte => "v1_bad_byte",
            Invalid::V1BadProtocol => "v1_bad_protocol",
            Invalid::V1BadFields => "v1_bad_fields",
            Invalid::V1BadAddress => "v1_bad_address",
            Invalid::V1BadPort => "v1_bad_port",
            Invalid::V2BadVersion => "v2_bad_version",
            Invalid::V2BadCommand => "v2_bad_command",
            Invalid::V2BadFamily => "v2_bad_family",
            Invalid::V2UnsupportedFamily => "v2_unsupported_family",
            Invalid::V2TooLong => "v2_too_long",
            Invalid::V2ShortAddresses => "v2_short_addresses",
            Invalid::V2TlvOverrun => "v2_tlv_overrun",
            Invalid::V2BadAwsTlv => "v2_bad_aws_tlv",
        }
    }
}

/// Whether `data` opens with a PROXY signature (v1 or v2), or may still: `Some(true)` it does,
/// `Some(false)` it does not, `None` too few bytes to tell.
pub fn starts_with_signature(data: &[u8]) -> Option<bool> {
    let v1 = prefix_state(data, V1_PREFIX);
    let v2 = prefix_state(data, &V2_SIGNATURE);
    match (v1, v2) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

/// `Some(true)`: `data` starts with `sig`; `Some(false)`: it cannot; `None`: a strict prefix.
fn prefix_state(data: &[u8], sig: &[u8]) -> Option<bool> {
    let n = data.len().min(sig.len());
    if data[..n] != sig[..n] {
        Some(false)
    } else if data.len() >= sig.len() {
        Some(true)
    } else {
        None
    }
}

/// Read a header from the bytes received so far.
pub fn parse(data: &[u8]) -> Parsed {
    if prefix_state(data, &V2_SIGNATURE) != Some(false) {
        if data.len() < 16 {
            return match data.get(12) {
                Some(&b) if b >> 4 != 2 => Parsed::Invalid(Invalid::V2BadVersion),
                Some(&b) if b & 0x0F > 1 => Parsed::Invalid(Invalid::V2BadCommand),
                _ => Parsed::NeedMore,
            };
        }
        return parse_v2(data);
    }
    match prefix_state(data, V1_PREFIX) {
        None => Parsed::NeedMore,
        Some(false) => Parsed::Invalid(Invalid::NoSignature),
        Some(true) => parse_v1(data),
    }
}

fn parse_v1(data: &[u8]) -> Parsed {
    let window = &data[..data.len().min(V1_MAX_LEN)];
    let mut end = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    end = Some(i);
                    break;
                }
                Some(_) => return Parsed::Invalid(Invalid::V1BadLineEnd),
                None => {}
            },
            b'\n' => return Parsed::Invalid(Invalid::V1BadLineEnd),
            b' '..=b'~' => {}
            _ => return Parsed::Invalid(Invalid::V1BadByte),
        }
    }
    let Some(end) = end else {
        return if data.len() >= V1_MAX_LEN {
            Parsed::Invalid(Invalid::V1TooLong)
        } else {
            Parsed::NeedMore
        };
    };
    // Printable ASCII only, checked above: the line is UTF-8.
    let Ok(line) = std::str::from_utf8(&data[V1_PREFIX.len()..end]) else {
        return Parsed::Invalid(Invalid::V1BadByte);
    };
    let header_len = end + 2;
    let mut fields = line.split(' ');
    let protocol = fields.next().unwrap_or_default();
    let v4 = match protocol {
        "UNKNOWN" => {
            // The receiver ignores whatever follows UNKNOWN.
            return Parsed::Header(Header {
                version: 1,
                addresses: Addresses::Unknown,
                tlvs: vec![],
                header_len,
            });
        }
        "TCP4" => true,
        "TCP6" => false,
        _ => return Parsed::Invalid(Invalid::V1BadProtocol),
    };
    let rest: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return Parsed::Invalid(Invalid::V1BadFields);
    };
    let ip = |s: &str| -> Option<IpAddr> {
        if v4 {
            s.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        } else {
            s.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        }
    };
    let (Some(src), Some(dst)) = (ip(src), ip(dst)) else {
        return Parsed::Invalid(Invalid::V1BadAddress);
    };
    let (Some(sport), Some(dport)) = (port(sport), port(dport)) else {
        return Parsed::Invalid(Invalid::V1BadPort);
    };
    Parsed::Header(Header {
        version: 1,
        addresses: Addresses::Tcp {
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
        },
        tlvs: vec![],
        header_len,
    })
}

fn port(s: &str) -> Option<u16> {
    let canonical = !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

fn parse_v2(data: &[u8]) -> Parsed {
    let ver_cmd = data[12];
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid(Invalid::V2BadVersion);
    }
    let local = match ver_cmd & 0x0F {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid(Invalid::V2BadCommand),
    };
    let fam = data[13];
    let (family, transport) = (fam >> 4, fam & 0x0F);
    if family > 3 || transport > 2 {
        return Parsed::Invalid(Invalid::V2BadFamily);
    }
    let len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    if 16 + len > V2_MAX_LEN {
        return Parsed::Invalid(Invalid::V2TooLong);
    }
    let addr_len = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if len < addr_len {
        return Parsed::Invalid(Invalid::V2ShortAddresses);
    }
    if !local && family != 0 && (family == 3 || transport != 1) {
        return Parsed::Invalid(Invalid::V2UnsupportedFamily);
    }
    if data.len() < 16 + len {
        return Parsed::NeedMore;
    }
    let body = &data[16..16 + len];
    let (block, mut rest) = body.split_at(addr_len);
    let mut tlvs = Vec::new();
    while !rest.is_empty() {
        let [kind, hi, lo, tail @ ..] = rest else {
            return Parsed::Invalid(Invalid::V2TlvOverrun);
        };
        let n = usize::from(u16::from_be_bytes([*hi, *lo]));
        if tail.len() < n {
            return Parsed::Invalid(Invalid::V2TlvOverrun);
        }
        let (value, after) = tail.split_at(n);
        if *kind == TLV_AWS {
            match value.split_first() {
                None => return Parsed::Invalid(Invalid::V2BadAwsTlv),
                Some((&AWS_VPCE_ID, id))
                    if id.is_empty() || !id.iter().all(|b| b.is_ascii_graphic()) =>
                {
                    return Parsed::Invalid(Invalid::V2BadAwsTlv);
                }
                Some(_) => {}
            }
        }
        tlvs.push(Tlv {
            kind: *kind,
            value: value.to_vec(),
        });
        rest = after;
    }
    let addresses = if local {
        Addresses::Local
    } else {
        match family {
            1 => {
                let ip = |o: usize| {
                    IpAddr::from(<[u8; 4]>::try_from(&block[o..o + 4]).unwrap_or_default())
                };
                let p = |o: usize| u16::from_be_bytes([block[o], block[o + 1]]);
                Addresses::Tcp {
                    source: SocketAddr::new(ip(0), p(8)),
                    destination: SocketAddr::new(ip(4), p(10)),
                }
            }
            2 => {
                let ip = |o: usize| {
                    IpAddr::from(<[u8; 16]>::try_from(&block[o..o + 16]).unwrap_or_default())
                };
                let p = |o: usize| u16::from_be_bytes([block[o], block[o + 1]]);
                Addresses::Tcp {
                    source: SocketAddr::new(ip(0), p(32)),
                    destination: SocketAddr::new(ip(16), p(34)),
                }
            }
            _ => Addresses::Unknown,
        }
    };
    Parsed::Header(Header {
        version: 2,
        addresses,
        tlvs,
        header_len: 16 + len,
    })
}

#[cfg(test)]
mod tests;

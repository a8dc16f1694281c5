//! [`Destination`]: a host and port a URI makes its user connect to, and why. Host names are
//! normalised (lower case, one trailing dot removed) and must be DNS names of ASCII labels; IP
//! literals must be canonical (dotted-quad IPv4, bracketed IPv6), never reinterpreted.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A destination host: a DNS name or an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl Host {
    /// The host as egress-check and egress rules take it (IPv6 without brackets).
    pub fn as_check_destination(&self) -> String {
        match self {
            Host::Name(n) => n.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }

    /// Whether this is an IP literal (matched by CIDR rules, never by FQDN rules).
    pub fn is_ip(&self) -> bool {
        !matches!(self, Host::Name(_))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Why a URI implies a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The storage service holding the bucket or container.
    Storage,
    /// A Kafka broker of the bootstrap list.
    Broker,
    /// The webhook endpoint.
    Webhook,
    /// AWS STS, where the role chain (`ASSUME_ROLE`, `sasl_aws_iam_role_arn`) is assumed.
    AssumeRole,
    /// Google's IAM credentials service, where service accounts are impersonated.
    Impersonation,
    /// An OAuth token endpoint (Google, Microsoft Entra ID, `sasl_token_url`).
    Token,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Storage => "storage",
            Purpose::Broker => "broker",
            Purpose::Webhook => "webhook",
            Purpose::AssumeRole => "assume-role",
            Purpose::Impersonation => "impersonation",
            Purpose::Token => "token",
        }
    }
}

/// A host and port a URI implies, and why.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: Host,
    pub port: u16,
    pub purpose: Purpose,
}

impl Destination {
    pub(crate) fn name(host: impl Into<String>, port: u16, purpose: Purpose) -> Destination {
        Destination {
            host: Host::Name(host.into()),
            port,
            purpose,
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Which half of `host:port` is wrong, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostPortError {
    Host(&'static str),
    Port(&'static str),
}

/// Parse `host[:port]`, `[v6][:port]`; `default_port` when none is written.
pub(crate) fn host_port(s: &str, default_port: u16) -> Result<(Host, u16), HostPortError> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(HostPortError::Host(
                "an IPv6 literal without its closing ']'",
            ));
        };
        let addr: Ipv6Addr = v6
            .parse()
            .map_err(|_| HostPortError::Host("not an IPv6 address (zone ids are refused)"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(HostPortError::Port("expected ':' and a port after ']'"))?,
            ),
        };
        (Host::V6(addr), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        (Host::parse_plain(h)?, p)
    };
    let port = match port {
        None => default_port,
        Some(p) => parse_port(p).ok_or(HostPortError::Port("expected a number 1-65535"))?,
    };
    Ok((host, port))
}

/// A port: 1-65535 in plain decimal digits, no sign, no leading zero.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.starts_with('0') {
        return None;
    }
    p.parse::<u16>().ok().filter(|n| *n != 0)
}

impl Host {
    /// A DNS name or a canonical dotted-quad IPv4 address (no brackets).
    pub(crate) fn parse_plain(h: &str) -> Result<Host, HostPortError> {
        if h.is_empty() {
            return Err(HostPortError::Host("empty; expected a host name"));
        }
        if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return match h.parse::<Ipv4Addr>() {
                Ok(a) if a.to_string() == h => Ok(Host::V4(a)),
                _ => Err(HostPortError::Host(
                    "looks like an IPv4 address but is not canonical dotted-quad (a.b.c.d, no \
                     leading zeros)",
                )),
            };
        }
        dns_name(h).map(Host::Name).map_err(HostPortError::Host)
    }
}

/// Validate and normalise a DNS name: lower case, one trailing dot dropped, labels of letters,
/// digits and inner hyphens, 1-63 bytes each, 253 in all; the last label not all digits.
pub(crate) fn dns_name(h: &str) -> Result<String, &'static str> {
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    if h.is_empty() || h.len() > 253 {
        return Err("expected a host name of 1-253 characters");
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("every label (between dots) must be 1-63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(
                "expected letters, digits, '-' and '.' (an internationalised name goes in its \
                 xn-- form)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with '-'");
        }
    }
    if h.rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(
            "the last label is all digits; expected a host name or a canonical IPv4 address (a.b.c.d)",
        );
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            host_port("Broker.Example.COM.:9093", 9092),
            Ok((Host::Name("broker.example.com".into()), 9093))
        );
        assert_eq!(
            host_port("10.0.0.1", 9092),
            Ok((Host::V4(Ipv4Addr::new(10, 0, 0, 1)), 9092))
        );
        assert_eq!(
            host_port("[::1]:443", 1),
            Ok((Host::V6(Ipv6Addr::LOCALHOST), 443))
        );
        for bad in [
            "010.0.0.1",
            "127.1",
            "2130706433",
            "a..b",
            "-a.b",
            "[::1",
            "[fe80::1%eth0]",
            "h:0",
            "h:65536",
            "h:08",
            "h:",
            "h_x.example",
        ] {
            assert!(host_port(bad, 1).is_err(), "{bad}");
        }
    }
}

/// A URL-valued parameter (`AWS_ENDPOINT`, `sasl_token_url`): scheme, host, port, path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: Host,
    pub port: u16,
    /// Empty or starting with '/'.
    pub path: String,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Parse a URL-valued parameter (already percent-decoded): `https://host[:port][/path]`, or
/// `http://` when `allow_http`; a path only when `allow_path`. Userinfo, query and fragment
/// are refused (they are where credentials hide).
pub(crate) fn endpoint(
    param: &'static str,
    value: &str,
    allow_http: bool,
    allow_path: bool,
) -> Result<Endpoint, crate::UriError> {
    let err = |m: &str| crate::UriError::param(param, m.to_string());
    let expected = if allow_http {
        "expected http(s)://host[:port]"
    } else {
        "expected https://host[:port][/path]"
    };
    let (https, rest) = if let Some(r) = value.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = value.strip_prefix("http://").filter(|_| allow_http) {
        (false, r)
    } else {
        return Err(err(expected));
    };
    if rest.contains(['?', '#']) {
        return Err(err("a query or fragment is not accepted; drop it"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(err(
            "credentials before '@' are not accepted in this URL; drop them",
        ));
    }
    if !allow_path && !path.is_empty() && path != "/" {
        return Err(err(
            "a path is not accepted; give scheme, host and port only",
        ));
    }
    if path.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(err(
            "the path holds a space, control or non-ASCII character",
        ));
    }
    let (host, port) = host_port(authority, if https { 443 } else { 80 }).map_err(|e| match e {
        HostPortError::Host(m) => err(&format!("host: {m}")),
        HostPortError::Port(m) => err(&format!("port: {m}")),
    })?;
    Ok(Endpoint {
        https,
        host,
        port,
        path: if allow_path {
            path.to_string()
        } else {
            String::new()
        },
    })
}

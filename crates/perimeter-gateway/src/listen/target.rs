//! The destination a client names (`CONNECT host:port`, an absolute-form URI's authority, a
//! Host header), parsed once into a [`Target`]: a normalised [`Hostname`] or a canonical IP
//! literal, and a port. Non-canonical IP spellings (`2130706433`, `0177.0.0.1`, `127.1`...) are
//! refused with their reason, never reinterpreted.

use std::fmt;
use std::net::IpAddr;

use perimeter_policy::{Destination, Hostname, HostnameError, parse_ip_literal};

/// A host as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetHost {
    Name(Hostname),
    Ip(IpAddr),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Name(n) => f.write_str(n.as_str()),
            TargetHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Host and port a client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: TargetHost,
    pub port: u16,
}

/// Why an authority or Host value was refused (400). `reason` is a stable snake_case name for
/// `x-perimeter-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    pub reason: &'static str,
    pub message: String,
}

impl TargetError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Target {
    pub fn destination(&self) -> Destination<'_> {
        match &self.host {
            TargetHost::Name(n) => Destination::Name(n),
            TargetHost::Ip(ip) => Destination::Ip(*ip),
        }
    }

    pub fn name(&self) -> Option<&Hostname> {
        match &self.host {
            TargetHost::Name(n) => Some(n),
            TargetHost::Ip(_) => None,
        }
    }

    /// Parse `host:port` (`[v6]:port` for IPv6). Without a port, `default_port` is used; when
    /// that is `None` a port is required (CONNECT).
    pub fn parse_authority(s: &str, default_port: Option<u16>) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(s)?;
        let port = match (port, default_port) {
            (Some(p), _) => parse_port(p)?,
            (None, Some(d)) => d,
            (None, None) => {
                return Err(TargetError::new(
                    "missing_port",
                    format!("{s:?} has no port; CONNECT needs host:port, such as example.com:443"),
                ));
            }
        };
        Ok(Target {
            host: parse_host(host)?,
            port,
        })
    }

    /// Parse a Host header value: `host[:port]`; returns the host and the port if one was given.
    pub fn parse_host_header(s: &str) -> Result<(TargetHost, Option<u16>), TargetError> {
        let (host, port) = split_host_port(s.trim())?;
        let port = port.map(parse_port).transpose()?;
        Ok((parse_host(host)?, port))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            TargetHost::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<&str>), TargetError> {
    if s.is_empty() {
        return Err(TargetError::new("invalid_authority", "the host is empty"));
    }
    if s.contains('@') {
        return Err(TargetError::new(
            "invalid_authority",
            "credentials in the authority (user@host) are not accepted",
        ));
    }
    if s.starts_with('[') {
        let end = s.find(']').ok_or_else(|| {
            TargetError::new("invalid_authority", format!("{s:?}: unterminated '['"))
        })?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(TargetError::new(
                    "invalid_authority",
                    format!("{s:?}: expected ':port' after ']'"),
                )),
            },
        };
    }
    match s.split_once(':') {
        None => Ok((s, None)),
        Some((_, rest)) if rest.contains(':') => Err(TargetError::new(
            "invalid_authority",
            format!("{s:?}: an IPv6 address must be bracketed, such as [2001:db8::1]:443"),
        )),
        Some((host, port)) => Ok((host, Some(port))),
    }
}

fn parse_port(p: &str) -> Result<u16, TargetError> {
    let bad = || {
        TargetError::new(
            "invalid_port",
            format!("port {p:?} is not a number from 1 to 65535 without leading zeros"),
        )
    };
    // Leading zeros are refused, not read: `0080` is no canonical spelling of 80.
    if p.is_empty() || p.len() > 5 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

fn parse_host(host: &str) -> Result<TargetHost, TargetError> {
    if host.starts_with('[') {
        return parse_ip_literal(host)
            .map(TargetHost::Ip)
            .map_err(|e| TargetError::new("non_canonical_ip", e.to_string()));
    }
    let ip_err = match parse_ip_literal(host) {
        Ok(ip) => return Ok(TargetHost::Ip(ip)),
        Err(e) => e,
    };
    match host.parse::<Hostname>() {
        Ok(name) => Ok(TargetHost::Name(name)),
        // Something that reads as a number: a non-canonical IP spelling. Say why as an IP.
        Err(HostnameError::LooksLikeIp { .. }) => {
            Err(TargetError::new("non_canonical_ip", ip_err.to_string()))
        }
        Err(e) if host.bytes().all(|b| b.is_ascii_digit()) => {
            let _ = e;
            Err(TargetError::new("non_canonical_ip", ip_err.to_string()))
        }
        Err(e) => Err(TargetError::new("invalid_hostname", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        let ok = [
            ("Example.COM.:443", "example.com:443"),
            ("127.0.0.1:80", "127.0.0.1:80"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
        ];
        for (input, want) in ok {
            let t = Target::parse_authority(input, None).unwrap();
            assert_eq!(t.to_string(), want, "{input}");
        }
        let refused = [
            ("2130706433:80", "non_canonical_ip"),
            ("0177.0.0.1:80", "non_canonical_ip"),
            ("127.1:80", "non_canonical_ip"),
            ("0x7f.0.0.1:80", "non_canonical_ip"),
            ("127.000.0.1:80", "non_canonical_ip"),
            ("[fe80::1%25eth0]:80", "non_canonical_ip"),
            ("example.com", "missing_port"),
            ("example.com:0", "invalid_port"),
            ("example.com:65536", "invalid_port"),
            ("example.com:+80", "invalid_port"),
            ("example.com:0080", "invalid_port"),
            ("user@example.com:80", "invalid_authority"),
            ("2001:db8::1:80", "invalid_authority"),
            ("exa_mple.com:80", "invalid_hostname"),
            ("localhost:80", "invalid_hostname"),
        ];
        for (input, reason) in refused {
            let e = Target::parse_authority(input, None).unwrap_err();
            assert_eq!(e.reason, reason, "{input}: {e}");
        }
        let t = Target::parse_authority("example.com", Some(80)).unwrap();
        assert_eq!(t.port, 80);
    }

    #[test]
    fn host_headers() {
        let (h, p) = Target::parse_host_header("Example.com:8080").unwrap();
        assert_eq!(h.to_string(), "example.com");
        assert_eq!(p, Some(8080));
        let (_, p) = Target::parse_host_header("example.com").unwrap();
        assert_eq!(p, None);
        assert!(Target::parse_host_header("2130706433").is_err());
    }
}

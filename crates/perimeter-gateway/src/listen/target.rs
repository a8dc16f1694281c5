//! The destination a client names (`CONNECT host:port`, an absolute-form URI's authority, a
//! Host header), parsed once into a [`Target`]: a normalised [`Hostname`] or a canonical IP
//! literal, and a port. Non-canonical IP spellings (`2130706433`, `0177.0.0.1`, `127.1`...) are
//! refused with their reason, never reinterpreted.

use std::fmt;
use std::net::IpAddr;

use perimeter_policy::{Destination, Hostname};

use super::refusal::{Refusal, Why};
use crate::http_head::{HeadError, Host, HostHeader};

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

/// Why an authority or Host value was refused (400): the parser's error and a sentence that
/// quotes the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetError {
    pub error: HeadError,
    pub message: String,
}

impl TargetError {
    /// The stable reason (`x-perimeter-error`).
    pub fn reason(&self) -> &'static str {
        Why::from(self.error.clone()).as_str()
    }

    /// The refusal to answer with.
    pub fn refusal(&self) -> Refusal {
        Refusal::new(self.error.clone().into(), self.message.clone())
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
        let (host, port) = parse_host_port(s)?;
        match port.or(default_port) {
            Some(port) => Ok(Target {
                host: host.into(),
                port,
            }),
            None => Err(TargetError {
                error: HeadError::ConnectPortRequired,
                message: format!(
                    "{s:?} has no port; CONNECT needs host:port, such as example.com:443"
                ),
            }),
        }
    }

    /// Parse a Host header value: `host[:port]`; returns the host and the port if one was given.
    pub fn parse_host_header(s: &str) -> Result<(TargetHost, Option<u16>), TargetError> {
        let h = HostHeader::parse(s.as_bytes()).map_err(|e| TargetError::from_head(s, &e))?;
        Ok((h.host.into(), h.port))
    }
}

/// `host[:port]` by the request-head parser's rules (one parser of hosts for the gateway).
fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), TargetError> {
    crate::http_head::parse_host_port(s).map_err(|e| TargetError::from_head(s, &e))
}

impl TargetError {
    fn from_head(input: &str, e: &HeadError) -> Self {
        Self {
            error: e.clone(),
            message: format!("{input:?}: {e}"),
        }
    }
}

impl From<Host> for TargetHost {
    fn from(h: Host) -> Self {
        match h {
            Host::Name(n) => TargetHost::Name(n),
            Host::Ip(ip) => TargetHost::Ip(ip),
        }
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
            ("example.com", "connect_port_required"),
            ("example.com:0", "invalid_port"),
            ("example.com:65536", "invalid_port"),
            ("example.com:+80", "invalid_port"),
            ("example.com:0080", "invalid_port"),
            ("user@example.com:80", "userinfo_in_authority"),
            ("2001:db8::1:80", "ipv6_brackets_required"),
            ("exa_mple.com:80", "invalid_hostname"),
            ("localhost:80", "invalid_hostname"),
        ];
        for (input, reason) in refused {
            let e = Target::parse_authority(input, None).unwrap_err();
            assert_eq!(e.reason(), reason, "{input}: {e}");
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

//! HTTP/1.x request heads as the proxy reads them: CONNECT (authority-form), absolute-form
//! forward-proxy requests, and origin-form requests on the transparent listener.
//!
//! [`parse_request_head`] takes every byte received so far and answers `Ok(None)` until the
//! head is complete. A complete head has been checked for everything the proxy relies on:
//! limits, unambiguous line endings and body framing, a destination whose host is a normalised
//! [`Hostname`] or a canonical IP literal, and (DESIGN "Consistency") a Host header that
//! agrees with the request target. Every refusal is a [`HeadError`] with a stable reason, the
//! `x-perimeter-error` value of the proxy's answer (400, or 431 for an oversized head).

use std::fmt;
use std::net::IpAddr;

use perimeter_policy::{Hostname, HostnameError, IpLiteralError, parse_ip_literal};

/// Limits on a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes of the head, request line and final empty line included.
    pub max_head_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl HeadLimits {
    /// 16 KiB and 100 headers, the limits of common proxies.
    pub const DEFAULT: Self = Self {
        max_head_bytes: 16 * 1024,
        max_headers: 100,
    };
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a request head is refused. `as_str()` names are stable: they are the
/// `x-perimeter-error` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is longer than {limit} bytes")]
    HeadTooLarge { limit: usize },
    #[error("the request head has more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    #[error("a line ends with a bare LF; HTTP lines end with CRLF")]
    BareLf,
    #[error("the head contains a CR not followed by LF")]
    BareCr,
    #[error("a header line starts with whitespace (obsolete line folding)")]
    ObsFold,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("the request target does not fit the method: {0}")]
    InvalidTarget(&'static str),
    #[error("only http:// is accepted in absolute-form; use CONNECT for https")]
    UnsupportedScheme,
    #[error("the authority carries user information ('@'); give the host alone")]
    Userinfo,
    #[error("the port is not a number in 1-65535 written without leading zeros")]
    InvalidPort,
    #[error("CONNECT needs an explicit port, as in example.com:443")]
    ConnectPortRequired,
    #[error("an IPv6 address in an authority must be in brackets, as in [2001:db8::1]:443")]
    UnbracketedIpv6,
    #[error("invalid host: {0}")]
    InvalidHostname(HostnameError),
    #[error("invalid IP address: {0}")]
    InvalidIpLiteral(IpLiteralError),
    #[error("the Host header is not valid UTF-8 text")]
    HostNotText,
    #[error("an HTTP/1.1 request needs a Host header")]
    MissingHost,
    #[error("the request has more than one Host header")]
    DuplicateHost,
    #[error("the Host header does not name the same host and port as the request target")]
    HostMismatch,
    #[error("the request has both Content-Length and Transfer-Encoding")]
    AmbiguousFraming,
    #[error("the request has Content-Length values that differ")]
    ConflictingContentLength,
    #[error("Content-Length is not a decimal number")]
    InvalidContentLength,
    #[error("only Transfer-Encoding: chunked is accepted, on HTTP/1.1")]
    UnsupportedTransferEncoding,
}

impl HeadError {
    /// Stable snake_case name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::HeadTooLarge { .. } => "head_too_large",
            Self::TooManyHeaders { .. } => "too_many_headers",
            Self::BareLf => "bare_lf",
            Self::BareCr => "bare_cr",
            Self::ObsFold => "obs_fold",
            Self::Malformed(_) => "malformed_request",
            Self::InvalidTarget(_) => "invalid_request_target",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::Userinfo => "userinfo_in_authority",
            Self::InvalidPort => "invalid_port",
            Self::ConnectPortRequired => "connect_port_required",
            Self::UnbracketedIpv6 => "ipv6_brackets_required",
            Self::InvalidHostname(_) => "invalid_hostname",
            Self::InvalidIpLiteral(_) => "non_canonical_ip",
            Self::HostNotText => "invalid_host_header",
            Self::MissingHost => "missing_host",
            Self::DuplicateHost => "multiple_host_headers",
            Self::HostMismatch => "host_mismatch",
            Self::AmbiguousFraming => "ambiguous_framing",
            Self::ConflictingContentLength => "conflicting_content_length",
            Self::InvalidContentLength => "invalid_content_length",
            Self::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
        }
    }
}

/// A destination host: a normalised name or a canonical IP literal. Names and addresses never
/// compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Name(Hostname),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => name.fmt(f),
            Self::Ip(IpAddr::V4(ip)) => ip.fmt(f),
            Self::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Host and port of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A parsed Host header (or any `host[:port]`): the port is `None` when omitted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostHeader {
    pub host: Host,
    pub port: Option<u16>,
}

impl HostHeader {
    /// Parse a Host header value (surrounding whitespace ignored).
    pub fn parse(value: &[u8]) -> Result<Self, HeadError> {
        let text = std::str::from_utf8(value).map_err(|_| HeadError::HostNotText)?;
        let (host, port) = parse_host_port(text.trim_matches([' ', '\t']))?;
        Ok(Self { host, port })
    }

    /// Whether this Host names `expected` (DESIGN "Consistency"): the same normalised name or
    /// the same address, and the same port, where an omitted port stands for
    /// `port_if_omitted` (the CONNECT port, or the scheme's default port).
    pub fn agrees_with(&self, expected: &Authority, port_if_omitted: u16) -> Result<(), HeadError> {
        if self.host == expected.host && self.port.unwrap_or(port_if_omitted) == expected.port {
            Ok(())
        } else {
            Err(HeadError::HostMismatch)
        }
    }
}

/// The request target, by form (RFC 9112 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port`: the port is always explicit.
    Authority(Authority),
    /// `http://host[:port]/path?query`: `path` is the path and query as sent, at least `/`.
    Absolute { authority: Authority, path: String },
    /// `/path?query`, as sent.
    Origin(String),
    /// `OPTIONS *`.
    Asterisk,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One header field: the name as sent, the value without surrounding whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// A complete, checked request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method as sent (methods are case-sensitive).
    pub method: String,
    pub target: RequestTarget,
    /// `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    /// The parsed Host header, if there was one.
    pub host: Option<HostHeader>,
    pub body: BodyFraming,
    /// Length of the head in bytes, final CRLF CRLF included: the body (or tunnel data)
    /// starts here.
    pub head_len: usize,
}

/// The default port of `http://`.
pub const HTTP_DEFAULT_PORT: u16 = 80;

impl RequestHead {
    /// Values of the headers named `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Whether this is a CONNECT request.
    pub fn is_connect(&self) -> bool {
        matches!(self.target, RequestTarget::Authority(_))
    }

    /// The destination the request names: the CONNECT authority, the absolute-form authority,
    /// or for origin-form (transparent listener) the Host header with `default_port` when it
    /// omits the port. `None` for an origin-form or asterisk request without Host.
    pub fn destination(&self, default_port: u16) -> Option<Authority> {
        match &self.target {
            RequestTarget::Authority(a) | RequestTarget::Absolute { authority: a, .. } => {
                Some(a.clone())
            }
            RequestTarget::Origin(_) | RequestTarget::Asterisk => {
                self.host.as_ref().map(|h| Authority {
                    host: h.host.clone(),
                    port: h.port.unwrap_or(default_port),
                })
            }
        }
    }
}

/// Header slots parsed without an allocation.
const STACK_HEADERS: usize = 100;

/// Parse the request head at the start of `buf`. `Ok(None)`: not complete yet, read more.
pub fn parse_request_head(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HeadError> {
    let Some(head_len) = find_head_end(buf, limits.max_head_bytes)? else {
        return Ok(None);
    };
    // On the stack up to the usual limit (no allocation per request head), else on the heap.
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut heap
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(n)) if n == head_len => {}
        Ok(_) => return Err(HeadError::Malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        Err(e) => return Err(HeadError::Malformed(httparse_reason(e))),
    }
    let (Some(method), Some(path), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    let headers: Vec<Header> = req
        .headers
        .iter()
        .map(|h| Header {
            name: h.name.to_owned(),
            value: trim_ows(h.value).to_vec(),
        })
        .collect();

    // RFC 9112 section 3.2: the request-target is ASCII. A name in another script is sent as
    // A-labels (punycode); raw UTF-8 here is refused rather than guessed at.
    if !path.is_ascii() {
        return Err(HeadError::InvalidTarget(
            "the request target is not ASCII; send a name in A-labels (punycode)",
        ));
    }
    let target = parse_target(method, path)?;
    let body = body_framing(&headers, minor_version)?;

    let mut host = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
    {
        if host.is_some() {
            return Err(HeadError::DuplicateHost);
        }
        host = Some(HostHeader::parse(&h.value)?);
    }
    match (&target, &host) {
        (RequestTarget::Authority(a), Some(h)) => h.agrees_with(a, a.port)?,
        (RequestTarget::Absolute { authority, .. }, Some(h)) => {
            h.agrees_with(authority, HTTP_DEFAULT_PORT)?;
        }
        (RequestTarget::Origin(_) | RequestTarget::Asterisk, None) if minor_version >= 1 => {
            return Err(HeadError::MissingHost);
        }
        _ => {}
    }

    Ok(Some(RequestHead {
        method: method.to_owned(),
        target,
        minor_version,
        headers,
        host,
        body,
        head_len,
    }))
}

/// Find the end of the head (after CRLF CRLF), refusing bare LF, bare CR, obs-fold and leading
/// whitespace as soon as they are seen. `Ok(None)`: not complete yet.
fn find_head_end(buf: &[u8], max: usize) -> Result<Option<usize>, HeadError> {
    if let Some(&first) = buf.first()
        && matches!(first, b'\r' | b'\n' | b' ' | b'\t')
    {
        return Err(HeadError::Malformed("the head starts with whitespace"));
    }
    let window = &buf[..buf.len().min(max)];
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\n' => {
                if i == 0 || window[i - 1] != b'\r' {
                    return Err(HeadError::BareLf);
                }
                if i >= 3 && &window[i - 3..i] == b"\r\n\r" {
                    return Ok(Some(i + 1));
                }
                if let Some(&next) = window.get(i + 1)
                    && (next == b' ' || next == b'\t')
                {
                    return Err(HeadError::ObsFold);
                }
            }
            b'\r' => {
                if let Some(&next) = window.get(i + 1)
                    && next != b'\n'
                {
                    return Err(HeadError::BareCr);
                }
            }
            _ => {}
        }
    }
    if buf.len() >= max {
        Err(HeadError::HeadTooLarge { limit: max })
    } else {
        Ok(None)
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid method or token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

fn parse_target(method: &str, target: &str) -> Result<RequestTarget, HeadError> {
    if target.contains('#') {
        return Err(HeadError::InvalidTarget(
            "a request target carries no fragment",
        ));
    }
    if method == "CONNECT" {
        let (host, port) = parse_host_port(target)?;
        let port = port.ok_or(HeadError::ConnectPortRequired)?;
        return Ok(RequestTarget::Authority(Authority { host, port }));
    }
    if target.starts_with('/') {
        return Ok(RequestTarget::Origin(target.to_owned()));
    }
    if target == "*" {
        return if method == "OPTIONS" {
            Ok(RequestTarget::Asterisk)
        } else {
            Err(HeadError::InvalidTarget("'*' is only for OPTIONS"))
        };
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(HeadError::InvalidTarget(
            "expected /path, http://host/path, or CONNECT host:port",
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(HeadError::UnsupportedScheme);
    }
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let (host, port) = parse_host_port(authority)?;
    let path = match path.as_bytes().first() {
        None => "/".to_owned(),
        Some(b'?') => format!("/{path}"),
        Some(_) => path.to_owned(),
    };
    Ok(RequestTarget::Absolute {
        authority: Authority {
            host,
            port: port.unwrap_or(HTTP_DEFAULT_PORT),
        },
        path,
    })
}

/// Parse `host[:port]`: a name (normalised as a [`Hostname`]), a canonical IPv4 literal, or a
/// bracketed IPv6 literal without zone id. No userinfo; ports 1-65535.
pub fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), HeadError> {
    if s.contains('@') {
        return Err(HeadError::Userinfo);
    }
    if s.starts_with('[') {
        let Some(close) = s.find(']') else {
            return Err(HeadError::InvalidIpLiteral(
                parse_ip_literal(s).err().unwrap_or(IpLiteralError::Empty),
            ));
        };
        let (literal, rest) = s.split_at(close + 1);
        let ip = parse_ip_literal(literal).map_err(HeadError::InvalidIpLiteral)?;
        if !ip.is_ipv6() {
            return Err(HeadError::UnbracketedIpv6);
        }
        let port = match rest {
            "" => None,
            _ => Some(parse_port(
                rest.strip_prefix(':').ok_or(HeadError::InvalidPort)?,
            )?),
        };
        return Ok((Host::Ip(ip), port));
    }
    let (host, port) = match s.split_once(':') {
        Some((_, p)) if p.contains(':') => return Err(HeadError::UnbracketedIpv6),
        Some((h, p)) => (h, Some(parse_port(p)?)),
        None => (s, None),
    };
    Ok((parse_host(host)?, port))
}

fn parse_host(s: &str) -> Result<Host, HeadError> {
    // A dotted quad in its one canonical spelling (the standard library's parser takes no other:
    // four decimal octets, no leading zeros) is what the steps below would make of it too,
    // without first trying it as a name.
    if let Ok(v4) = s.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(v4.into()));
    }
    match s.parse::<Hostname>() {
        Ok(name) => Ok(Host::Name(name)),
        Err(HostnameError::LooksLikeIp { .. }) => parse_ip_literal(s)
            .map(Host::Ip)
            .map_err(HeadError::InvalidIpLiteral),
        Err(e) => Err(HeadError::InvalidHostname(e)),
    }
}

fn parse_port(s: &str) -> Result<u16, HeadError> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 5 || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::InvalidPort);
    }
    s.parse::<u16>().map_err(|_| HeadError::InvalidPort)
}

fn body_framing(headers: &[Header], minor_version: u8) -> Result<BodyFraming, HeadError> {
    let mut length: Option<u64> = None;
    let mut codings: Vec<String> = Vec::new();
    let mut saw_te = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let text =
                std::str::from_utf8(&h.value).map_err(|_| HeadError::InvalidContentLength)?;
            for part in text.split(',') {
                let part = part.trim_matches([' ', '\t']);
                if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(HeadError::InvalidContentLength);
                }
                let n: u64 = part.parse().map_err(|_| HeadError::InvalidContentLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::ConflictingContentLength);
                }
                length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            saw_te = true;
            let text = std::str::from_utf8(&h.value)
                .map_err(|_| HeadError::UnsupportedTransferEncoding)?;
            codings.extend(
                text.split(',')
                    .map(|c| c.trim_matches([' ', '\t']).to_ascii_lowercase()),
            );
        }
    }
    match (length, saw_te) {
        (Some(_), true) => Err(HeadError::AmbiguousFraming),
        (_, true) if minor_version == 0 || codings != ["chunked"] => {
            Err(HeadError::UnsupportedTransferEncoding)
        }
        (_, true) => Ok(BodyFraming::Chunked),
        (Some(0) | None, false) => Ok(BodyFraming::None),
        (Some(n), false) => Ok(BodyFraming::ContentLength(n)),
    }
}

#[cfg(test)]
mod tests;

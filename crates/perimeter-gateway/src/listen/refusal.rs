//! The one refusal type of the listeners: who caused it ([`Party`]), why ([`Why`], whose
//! [`Why::as_str`] is the stable `x-perimeter-error` value and decision reason), and a
//! sentence for people. The party picks the status (400 client, 403 policy, 502/504 upstream,
//! 5xx internal) and the decision verdict; every answer carries its reason.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use perimeter_policy::Reason;

use crate::decision::EventVerdict;
use crate::dns::{DnsError, DnsFailure};
use crate::http_head::HeadError;
use crate::tls::InvalidHello;

/// Header that names the reason of every refusal.
pub(crate) const X_PERIMETER_ERROR: &str = "x-perimeter-error";

/// Body of every response the listeners send.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Who caused a refusal (pingora's error source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// A malformed or inconsistent request: 400.
    Client,
    /// The egress policy, or a check that stands for it (the address guard, SNI and Host
    /// consistency): 403.
    Policy,
    /// DNS or the upstream failed: 502, or 504 for a timeout.
    Upstream,
    /// The gateway itself (overloaded, a route it does not serve): 5xx.
    Internal,
}

/// Why a connection or request was refused or closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The policy denied (`no_rule_for_destination`, `special_address`, ...).
    Policy(Reason),
    /// The request head was refused by the parser (framing, syntax, destination spelling).
    Head(HeadError),
    /// Bytes that start like TLS are not an acceptable ClientHello.
    Tls(InvalidHello),
    /// An origin-form request sent to the explicit proxy.
    OriginFormToProxy,
    /// More than one Host header.
    MultipleHostHeaders,
    /// A Host (or SNI-less HTTP) that does not name the target.
    HostMismatch,
    /// Plaintext HTTP to a name without a Host header.
    HostMissing,
    /// A path that cannot be normalised or forwarded.
    InvalidPath,
    /// An absolute-form request on the transparent listener.
    AbsoluteFormToTransparent,
    /// An SNI that is not a valid host name.
    InvalidSni,
    /// A ClientHello without SNI in a tunnel to a name.
    SniMissing,
    /// An SNI other than the tunnel's name.
    SniMismatch,
    /// Bytes an HTTP server would take for a request, in a form the gateway does not serve
    /// (a leading space, tabs as delimiters, a malformed line).
    InvalidHttpRequest,
    /// An HTTP/0.9 request (`GET /path` without a version): no Host to check.
    Http09Request,
    /// A first request head in a tunnel longer than the head limit.
    RequestHeadTooLarge,
    /// A ClientHello longer than the head limit.
    ClientHelloTooLarge,
    /// The client closed before its first bytes could be judged.
    IncompleteFirstBytes,
    /// The client sent nothing that could be judged in time.
    FirstBytesTimeout,
    /// A connection to the transparent listener that no firewall rule redirected.
    NotRedirected,
    /// An SNI or Host naming a destination the policy does not allow at the dialled address.
    SniNotAllowed,
    /// A ClientHello with `encrypted_client_hello` under `DEFAULT_DENY`: the name the server
    /// routes on cannot be checked.
    EncryptedClientHello,
    /// A double percent-encoded path (`%252F`) to a destination that path rules govern: an
    /// upstream that decodes twice would see another path than the one decided.
    DoubleEncodedPath,
    /// The redirected connection's address is not among the name's resolved addresses.
    OriginalDestinationMismatch,
    /// A newer policy no longer allows the connection.
    PolicyRevoked,
    /// The name could not be resolved.
    Dns(DnsFailure),
    /// The name resolves to no address.
    DnsNoAddresses,
    UpstreamConnectTimeout,
    UpstreamConnectRefused,
    UpstreamConnectFailed,
    /// The upstream did not answer a forwarded request in time.
    UpstreamTimeout,
    /// The upstream failed while a request was forwarded.
    UpstreamFailed,
    /// The destination is routed to a private endpoint, which this listener or request form
    /// does not serve (absolute-form HTTP: use CONNECT).
    PrivateEndpointNotServed,
    /// The destination is a private endpoint of another region than this gateway's.
    PrivateEndpointOtherRegion,
    /// The private endpoint serves no backend on the requested port.
    PrivateEndpointPort,
    /// A connection to a private endpoint routed by TLS server name whose ClientHello names no
    /// backend of it (or none at all).
    PrivateEndpointServerName,
    /// A private endpoint backend the gateway never dials (one of its own listeners).
    PrivateEndpointBackendRefused,
    /// The gateway serves as many connections as it may.
    GatewayOverloaded,
    /// Only rules with paths allow the destination, and it is on the never-inspect list: its
    /// paths cannot be seen.
    NeverInspected,
    /// The TLS handshake of an inspected connection failed on the client's side.
    InspectionHandshake,
    /// The cluster's inspection CA cannot be used (the gateway cannot sign leaves).
    InspectionUnavailable,
    /// An inspected connection's upstream presented a certificate that does not verify.
    UpstreamCertificate,
}

impl Why {
    /// Stable snake_case name: the `x-perimeter-error` value and the decision reason.
    pub fn as_str(&self) -> &'static str {
        match self {
            Why::Policy(r) => r.as_str(),
            Why::Head(e) => e.as_str(),
            Why::Tls(e) => e.as_str(),
            Why::OriginFormToProxy => "origin_form_to_proxy",
            Why::MultipleHostHeaders => "multiple_host_headers",
            Why::HostMismatch => "host_mismatch",
            Why::HostMissing => "host_missing",
            Why::InvalidPath => "invalid_path",
            Why::AbsoluteFormToTransparent => "absolute_form_to_transparent",
            Why::InvalidSni => "invalid_sni",
            Why::SniMissing => "sni_missing",
            Why::SniMismatch => "sni_mismatch",
            Why::InvalidHttpRequest => "invalid_http_request",
            Why::Http09Request => "http09_request",
            Why::RequestHeadTooLarge => "request_head_too_large",
            Why::ClientHelloTooLarge => "client_hello_too_large",
            Why::IncompleteFirstBytes => "incomplete_first_bytes",
            Why::FirstBytesTimeout => "first_bytes_timeout",
            Why::NotRedirected => "not_redirected",
            Why::SniNotAllowed => "sni_not_allowed",
            Why::EncryptedClientHello => "tls_encrypted_client_hello",
            Why::DoubleEncodedPath => "double_encoded_path",
            Why::OriginalDestinationMismatch => "original_destination_mismatch",
            Why::PolicyRevoked => "policy_revoked",
            Why::Dns(failure) => failure.as_str(),
            Why::DnsNoAddresses => "dns_no_addresses",
            Why::UpstreamConnectTimeout => "upstream_connect_timeout",
            Why::UpstreamConnectRefused => "upstream_connect_refused",
            Why::UpstreamConnectFailed => "upstream_connect_failed",
            Why::UpstreamTimeout => "upstream_timeout",
            Why::UpstreamFailed => "upstream_failed",
            Why::PrivateEndpointNotServed => "private_endpoint_not_served",
            Why::PrivateEndpointOtherRegion => "private_endpoint_other_region",
            Why::PrivateEndpointPort => "private_endpoint_port",
            Why::PrivateEndpointServerName => "private_endpoint_server_name",
            Why::PrivateEndpointBackendRefused => "private_endpoint_backend_refused",
            Why::GatewayOverloaded => "gateway_overloaded",
            Why::NeverInspected => "path_rule_never_inspected",
            Why::InspectionHandshake => "inspection_handshake_failed",
            Why::InspectionUnavailable => "inspection_unavailable",
            Why::UpstreamCertificate => "upstream_certificate_invalid",
        }
    }

    /// Who caused it.
    pub fn party(&self) -> Party {
        match self {
            Why::Policy(_)
            | Why::SniNotAllowed
            | Why::EncryptedClientHello
            | Why::OriginalDestinationMismatch
            | Why::PolicyRevoked
            | Why::PrivateEndpointPort
            | Why::PrivateEndpointServerName
            | Why::PrivateEndpointBackendRefused
            | Why::NeverInspected
            | Why::NotRedirected => Party::Policy,
            Why::Head(_)
            | Why::Tls(_)
            | Why::OriginFormToProxy
            | Why::MultipleHostHeaders
            | Why::HostMismatch
            | Why::HostMissing
            | Why::InvalidPath
            | Why::DoubleEncodedPath
            | Why::AbsoluteFormToTransparent
            | Why::InvalidSni
            | Why::SniMissing
            | Why::SniMismatch
            | Why::InvalidHttpRequest
            | Why::Http09Request
            | Why::RequestHeadTooLarge
            | Why::ClientHelloTooLarge
            | Why::IncompleteFirstBytes
            | Why::InspectionHandshake
            | Why::FirstBytesTimeout => Party::Client,
            Why::Dns(_)
            | Why::DnsNoAddresses
            | Why::UpstreamConnectTimeout
            | Why::UpstreamConnectRefused
            | Why::UpstreamConnectFailed
            | Why::UpstreamTimeout
            | Why::UpstreamCertificate
            | Why::UpstreamFailed => Party::Upstream,
            Why::InspectionUnavailable
            | Why::PrivateEndpointNotServed
            | Why::PrivateEndpointOtherRegion
            | Why::GatewayOverloaded => Party::Internal,
        }
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        match (self.party(), self) {
            (_, Why::Head(HeadError::HeadTooLarge { .. } | HeadError::TooManyHeaders { .. })) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            (Party::Client, _) => StatusCode::BAD_REQUEST,
            (Party::Policy, _) => StatusCode::FORBIDDEN,
            (
                Party::Upstream,
                Why::Dns(DnsFailure::Timeout) | Why::UpstreamConnectTimeout | Why::UpstreamTimeout,
            ) => StatusCode::GATEWAY_TIMEOUT,
            (Party::Upstream, _) => StatusCode::BAD_GATEWAY,
            (Party::Internal, Why::GatewayOverloaded) => StatusCode::SERVICE_UNAVAILABLE,
            (Party::Internal, _) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The decision event's verdict: a refusal by the client's or the policy's doing is
    /// `Denied`, a failure of the upstream or the gateway `Failed`.
    pub fn verdict(&self) -> EventVerdict {
        match self.party() {
            Party::Client | Party::Policy => EventVerdict::Denied,
            Party::Upstream | Party::Internal => EventVerdict::Failed,
        }
    }
}

impl From<HeadError> for Why {
    /// Parser refusals that the listeners name themselves keep one name.
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::DuplicateHost => Why::MultipleHostHeaders,
            HeadError::HostMismatch => Why::HostMismatch,
            e => Why::Head(e),
        }
    }
}

impl From<&DnsError> for Why {
    fn from(e: &DnsError) -> Self {
        Why::Dns(e.failure())
    }
}

/// A refusal: why, and a sentence for people.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub why: Why,
    pub message: Cow<'static, str>,
}

impl Refusal {
    pub fn new(why: Why, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            why,
            message: message.into(),
        }
    }

    /// A policy denial, described by the policy.
    pub fn policy(reason: Reason) -> Self {
        let message = match reason.addr_class() {
            Some(class) => Cow::Owned(format!("{} ({class})", reason.description())),
            None => Cow::Borrowed(reason.description()),
        };
        Self {
            why: Why::Policy(reason),
            message,
        }
    }

    /// A parser refusal, described by the parser.
    pub fn head(e: HeadError) -> Self {
        let message = e.to_string();
        Self::new(e.into(), message)
    }

    /// The answer as hyper sends it.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(full(format!("{}\n", self.message)));
        *resp.status_mut() = self.why.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(
            X_PERIMETER_ERROR,
            HeaderValue::from_static(self.why.as_str()),
        );
        resp
    }

    /// The same answer as bytes on the wire, for a connection hyper does not serve.
    pub fn to_bytes(&self, then: Then) -> Vec<u8> {
        let status = self.why.status();
        let body_len = self.message.len() + 1;
        let mut out = Vec::with_capacity(160 + body_len);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\n");
        out.extend_from_slice(X_PERIMETER_ERROR.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(self.why.as_str().as_bytes());
        out.extend_from_slice(b"\r\ncontent-length: ");
        out.extend_from_slice(body_len.to_string().as_bytes());
        if then == Then::Close {
            out.extend_from_slice(b"\r\nconnection: close");
        }
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(self.message.as_bytes());
        out.push(b'\n');
        out
    }
}

/// Whether the connection stays open after a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    KeepAlive,
    Close,
}

pub(crate) fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn empty() -> ProxyBody {
    full(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_valid_header_values_and_statuses_follow_the_party() {
        let samples = [
            (Why::Policy(Reason::NoRuleForDestination), 403),
            (Why::Head(HeadError::HeadTooLarge { limit: 1 }), 431),
            (Why::Head(HeadError::InvalidPort), 400),
            (Why::Tls(InvalidHello::Sslv2Hello), 400),
            (Why::SniNotAllowed, 403),
            (Why::Dns(DnsFailure::Timeout), 504),
            (Why::Dns(DnsFailure::NxDomain), 502),
            (Why::UpstreamConnectTimeout, 504),
            (Why::GatewayOverloaded, 503),
            (Why::PrivateEndpointNotServed, 502),
        ];
        for (why, status) in samples {
            assert_eq!(why.status().as_u16(), status, "{why:?}");
            assert!(HeaderValue::from_str(why.as_str()).is_ok(), "{why:?}");
            let bytes = Refusal::new(why.clone(), "m").to_bytes(Then::Close);
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.contains(&format!("x-perimeter-error: {}\r\n", why.as_str())),
                "{text}"
            );
        }
    }

    #[test]
    fn parser_names_the_listeners_share_are_one_name() {
        assert_eq!(
            Why::from(HeadError::DuplicateHost).as_str(),
            "multiple_host_headers"
        );
        assert_eq!(Why::from(HeadError::HostMismatch), Why::HostMismatch);
    }
}

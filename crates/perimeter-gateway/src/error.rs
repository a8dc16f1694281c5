//! Data-plane errors that say who caused them (STYLE habit 6).
//!
//! Every refusal the gateway answers carries an HTTP status chosen by the [`Party`] at fault
//! and an `x-perimeter-error` header whose value is [`GatewayError::reason`], a stable
//! snake_case name that also labels metrics and decision events.

use std::borrow::Cow;
use std::fmt;

use crate::dns::DnsError;
use crate::http_head::HeadError;
use crate::tls::InvalidHello;

/// Name of the response header that carries [`GatewayError::reason`].
pub const ERROR_HEADER: &str = "x-perimeter-error";

/// Who caused a data-plane error. It picks the status, whether a retry can help, and the
/// metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The client sent something malformed or inconsistent: 400, retrying the same request
    /// cannot help.
    Client,
    /// The upstream (or its DNS) failed or timed out: 502 or 504, a retry may help.
    Upstream,
    /// The egress policy refused the destination: 403.
    Policy,
    /// A bug or resource problem in the gateway itself: 500.
    Internal,
}

impl Party {
    /// Stable lower-case name, for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Policy => "policy",
            Self::Internal => "internal",
        }
    }
}

/// What went wrong. Each kind belongs to exactly one [`Party`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A malformed, over-limit or inconsistent HTTP request head.
    BadRequest(HeadError),
    /// Bytes that start like TLS but are not an acceptable ClientHello.
    BadClientHello(InvalidHello),
    /// The upstream name does not exist (NXDOMAIN) or has no A/AAAA records.
    DnsNotFound,
    /// DNS servers failed (SERVFAIL, REFUSED, unreachable, unusable answer).
    DnsFailure,
    /// DNS servers did not answer in time.
    DnsTimeout,
    /// Connecting to the upstream failed (refused, unreachable, reset).
    UpstreamConnect,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The egress policy denied the destination; the string is the policy's stable deny reason.
    PolicyDenied(&'static str),
    /// A failure inside the gateway.
    Internal,
}

impl ErrorKind {
    /// The party that caused this kind of error.
    pub fn party(&self) -> Party {
        match self {
            Self::BadRequest(_) | Self::BadClientHello(_) => Party::Client,
            Self::DnsNotFound
            | Self::DnsFailure
            | Self::DnsTimeout
            | Self::UpstreamConnect
            | Self::UpstreamTimeout => Party::Upstream,
            Self::PolicyDenied(_) => Party::Policy,
            Self::Internal => Party::Internal,
        }
    }

    /// Stable snake_case reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest(e) => e.as_str(),
            Self::BadClientHello(e) => e.as_str(),
            Self::DnsNotFound => "dns_not_found",
            Self::DnsFailure => "dns_failure",
            Self::DnsTimeout => "dns_timeout",
            Self::UpstreamConnect => "upstream_connect_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::PolicyDenied(reason) => reason,
            Self::Internal => "internal_error",
        }
    }

    fn is_timeout(&self) -> bool {
        matches!(self, Self::DnsTimeout | Self::UpstreamTimeout)
    }
}

impl From<HeadError> for ErrorKind {
    fn from(e: HeadError) -> Self {
        Self::BadRequest(e)
    }
}

impl From<InvalidHello> for ErrorKind {
    fn from(e: InvalidHello) -> Self {
        Self::BadClientHello(e)
    }
}

impl From<&DnsError> for ErrorKind {
    fn from(e: &DnsError) -> Self {
        match e {
            DnsError::NotFound { .. } | DnsError::NoRecords { .. } => Self::DnsNotFound,
            DnsError::Timeout { .. } => Self::DnsTimeout,
            DnsError::ServerFailure { .. } => Self::DnsFailure,
        }
    }
}

/// A data-plane error: what happened, who caused it, and what the gateway was doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    kind: ErrorKind,
    party: Party,
    context: Cow<'static, str>,
}

impl GatewayError {
    /// An error of `kind`, with `context` written as "while resolving upstream example.com".
    /// The party follows from the kind.
    pub fn new(kind: impl Into<ErrorKind>, context: impl Into<Cow<'static, str>>) -> Self {
        let kind = kind.into();
        Self {
            party: kind.party(),
            kind,
            context: context.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Who caused it.
    pub fn party(&self) -> Party {
        self.party
    }

    /// What the gateway was doing, for logs (never sent to the client).
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The HTTP status of the refusal: 400 client, 403 policy, 502 upstream (504 when it timed
    /// out), 500 internal.
    pub fn status(&self) -> u16 {
        match self.party {
            Party::Client => 400,
            Party::Policy => 403,
            Party::Upstream if self.kind.is_timeout() => 504,
            Party::Upstream => 502,
            Party::Internal => 500,
        }
    }

    /// Stable reason for the `x-perimeter-error` header and metric labels.
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} error {}: {}",
            self.party.as_str(),
            self.context,
            self.reason()
        )?;
        if let ErrorKind::BadRequest(e) = &self.kind {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_picks_the_status() {
        let cases: Vec<(&str, ErrorKind, Party, u16, &str)> = vec![
            (
                "bare LF",
                ErrorKind::BadRequest(HeadError::BareLf),
                Party::Client,
                400,
                "bare_lf",
            ),
            (
                "host mismatch",
                ErrorKind::BadRequest(HeadError::HostMismatch),
                Party::Client,
                400,
                "host_mismatch",
            ),
            (
                "two SNIs",
                ErrorKind::BadClientHello(InvalidHello::MultipleServerNames),
                Party::Client,
                400,
                "tls_multiple_server_names",
            ),
            (
                "nxdomain",
                ErrorKind::DnsNotFound,
                Party::Upstream,
                502,
                "dns_not_found",
            ),
            (
                "servfail",
                ErrorKind::DnsFailure,
                Party::Upstream,
                502,
                "dns_failure",
            ),
            (
                "dns timeout",
                ErrorKind::DnsTimeout,
                Party::Upstream,
                504,
                "dns_timeout",
            ),
            (
                "connect refused",
                ErrorKind::UpstreamConnect,
                Party::Upstream,
                502,
                "upstream_connect_failed",
            ),
            (
                "upstream timeout",
                ErrorKind::UpstreamTimeout,
                Party::Upstream,
                504,
                "upstream_timeout",
            ),
            (
                "denied",
                ErrorKind::PolicyDenied("no_rule_matched"),
                Party::Policy,
                403,
                "no_rule_matched",
            ),
            (
                "internal",
                ErrorKind::Internal,
                Party::Internal,
                500,
                "internal_error",
            ),
        ];
        for (name, kind, party, status, reason) in cases {
            let err = GatewayError::new(kind, "while testing");
            assert_eq!(err.party(), party, "{name}");
            assert_eq!(err.status(), status, "{name}");
            assert_eq!(err.reason(), reason, "{name}");
            assert_eq!(err.context(), "while testing", "{name}");
        }
    }

    #[test]
    fn dns_errors_are_upstream_failures_never_denials() {
        let name: perimeter_policy::Hostname = "example.com".parse().unwrap();
        let cases = [
            (DnsError::NotFound { name: name.clone() }, 502),
            (DnsError::NoRecords { name: name.clone() }, 502),
            (
                DnsError::ServerFailure {
                    name: name.clone(),
                    detail: "SERVFAIL".into(),
                },
                502,
            ),
            (DnsError::Timeout { name }, 504),
        ];
        for (e, status) in cases {
            let err = GatewayError::new(&e, "while resolving upstream");
            assert_eq!(err.party(), Party::Upstream, "{e}");
            assert_eq!(err.status(), status, "{e}");
        }
    }

    #[test]
    fn display_has_party_context_and_reason() {
        let err = GatewayError::new(HeadError::BareLf, "while reading the request head");
        assert_eq!(
            err.to_string(),
            format!(
                "client error while reading the request head: bare_lf ({})",
                HeadError::BareLf
            )
        );
    }
}

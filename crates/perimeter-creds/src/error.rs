//! The one error type of URI validation. A message says which part of the URI is at fault and
//! what is expected there; it is built only from this crate's own text (parameter names it
//! knows, positions, counts), never from a value of the URI, so that it can be logged and shown
//! whatever the URI carried.

use std::fmt;

/// The part of a URI an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriPart {
    /// The URI as a whole (length, characters).
    Uri,
    Scheme,
    /// `user:password@` before the host.
    Userinfo,
    /// The authority when it is empty or cannot be split.
    Authority,
    /// The S3 or GCS bucket.
    Bucket,
    /// The Azure container.
    Container,
    /// The webhook's host.
    Host,
    /// The webhook's port.
    Port,
    /// A Kafka broker of the authority's list, by index from 0.
    Broker(usize),
    Path,
    Fragment,
    /// The query string as a whole, or a parameter this crate does not know (named by position).
    Query,
    /// A known query parameter.
    Param(&'static str),
    /// One entry, by index from 0, of a list-valued parameter (`ASSUME_ROLE[1]`).
    Entry(&'static str, usize),
}

impl fmt::Display for UriPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriPart::Uri => f.write_str("uri"),
            UriPart::Scheme => f.write_str("scheme"),
            UriPart::Userinfo => f.write_str("userinfo"),
            UriPart::Authority => f.write_str("authority"),
            UriPart::Bucket => f.write_str("bucket"),
            UriPart::Container => f.write_str("container"),
            UriPart::Host => f.write_str("host"),
            UriPart::Port => f.write_str("port"),
            UriPart::Broker(i) => write!(f, "broker[{i}]"),
            UriPart::Path => f.write_str("path"),
            UriPart::Fragment => f.write_str("fragment"),
            UriPart::Query => f.write_str("query"),
            UriPart::Param(name) => f.write_str(name),
            UriPart::Entry(name, i) => write!(f, "{name}[{i}]"),
        }
    }
}

/// A refused URI: the part at fault and what is expected there (`AUTH: expected implicit or
/// specified`). It never holds a value taken from the URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {message}")]
pub struct UriError {
    part: UriPart,
    message: String,
}

impl UriError {
    pub(crate) fn new(part: UriPart, message: impl Into<String>) -> UriError {
        UriError {
            part,
            message: message.into(),
        }
    }

    pub(crate) fn param(name: &'static str, message: impl Into<String>) -> UriError {
        UriError::new(UriPart::Param(name), message)
    }

    /// The part of the URI at fault.
    pub fn part(&self) -> &UriPart {
        &self.part
    }

    /// What is wrong and what is expected, without the part's name.
    pub fn message(&self) -> &str {
        &self.message
    }
}

//! Normalised DNS hostnames.

use std::fmt;
use std::str::FromStr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

use crate::error::quote;

/// Longest DNS name in presentation form, without the trailing dot.
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest DNS label.
pub const MAX_LABEL_LEN: usize = 63;

/// Normalised DNS name: lower-case, one trailing dot removed, IDNA to A-labels (punycode,
/// UTS-46 with STD3 rules, non-transitional), each label 1-63 of `[a-z0-9-]` not starting or
/// ending with `-`, at most 253 characters, at least two labels, and a last label that is not a
/// number (so IP-literal-like strings such as `127.0.0.1`, `2130706433` or `0x7f.1` are not
/// hostnames).
///
/// ```
/// # use perimeter_policy::Hostname;
/// let name: Hostname = "Example.COM.".parse().unwrap();
/// assert_eq!(name.as_str(), "example.com");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(String);

/// Why a string is not a [`Hostname`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error("hostname is empty; give a DNS name such as example.com")]
    Empty,
    #[error(
        "hostname is {len} characters long; a DNS name has at most {MAX_HOSTNAME_LEN} characters"
    )]
    TooLong { len: usize },
    #[error("{name} has an empty label (a leading dot or two dots in a row); remove the extra dot")]
    EmptyLabel { name: String },
    #[error(
        "label {label} is {len} characters long; a DNS label has at most {MAX_LABEL_LEN} characters"
    )]
    LabelTooLong { label: String, len: usize },
    #[error("{name} contains '_', which is not allowed in a hostname; use letters, digits and '-'")]
    Underscore { name: String },
    #[error(
        "{name} contains '*'; a wildcard is allowed only as the whole first label of a host pattern, as in *.example.com"
    )]
    Wildcard { name: String },
    #[error("{name} contains {ch:?}, which is not allowed in a hostname; {hint}")]
    InvalidChar {
        name: String,
        ch: char,
        hint: &'static str,
    },
    #[error("label {label} starts or ends with '-'; remove the hyphen")]
    HyphenAtEdge { label: String },
    #[error(
        "{name} is not a valid internationalised domain name (IDNA processing refused it); check for disallowed characters or a malformed xn-- label"
    )]
    Idna { name: String },
    #[error(
        "{name} is a single label; give a fully qualified name with a domain, such as {name_unquoted}.example.com"
    )]
    SingleLabel { name: String, name_unquoted: String },
    #[error(
        "{name} looks like an IP address, not a hostname; IP addresses are matched only by CIDR rules (type CIDR), written as a canonical address or prefix such as 192.0.2.1/32"
    )]
    LooksLikeIp { name: String },
}

impl Hostname {
    /// The normalised name, e.g. `xn--bcher-kva.example`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The normalised name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Labels from left to right.
    pub fn labels(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether `self` is strictly below `parent` (`a.b.example.com` is below `example.com`; a
    /// name is not below itself).
    pub fn is_below(&self, parent: &Hostname) -> bool {
        let (s, p) = (self.0.as_str(), parent.0.as_str());
        s.len() > p.len() + 1 && s.ends_with(p) && s.as_bytes()[s.len() - p.len() - 1] == b'.'
    }

    /// Build from a string already normalised by [`normalize_name`] with at least two labels.
    pub(crate) fn from_normalized(name: String) -> Result<Self, HostnameError> {
        let last = name.rsplit('.').next().unwrap_or_default();
        if is_numeric_label(last) {
            return Err(HostnameError::LooksLikeIp { name: quote(&name) });
        }
        if !name.contains('.') {
            return Err(HostnameError::SingleLabel {
                name: quote(&name),
                name_unquoted: name,
            });
        }
        Ok(Self(name))
    }
}

impl FromStr for Hostname {
    type Err = HostnameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_normalized(normalize_name(s)?)
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hostname({:?})", self.0)
    }
}

impl AsRef<str> for Hostname {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

crate::serde_as_string!(Hostname);

/// A label that an IPv4 parser in the WHATWG URL sense would read as a number: all decimal
/// digits, or `0x` followed by hex digits. A name ending in such a label is IP-literal-like.
fn is_numeric_label(label: &str) -> bool {
    let b = label.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    b.len() >= 2 && b[0] == b'0' && b[1] == b'x' && b[2..].iter().all(u8::is_ascii_hexdigit)
}

fn char_hint(ch: char) -> &'static str {
    match ch {
        ':' => {
            "a hostname carries no port or IPv6 address: put ports in \"ports\" and IP addresses in a CIDR rule"
        }
        '/' => {
            "give the bare host name, without scheme or path (example.com, not https://example.com/)"
        }
        '[' | ']' => "IP addresses are matched only by CIDR rules (type CIDR)",
        '@' => "give the bare host name, without user information",
        c if c.is_whitespace() || c.is_control() => "remove whitespace and control characters",
        _ => "use letters, digits, '-' and '.'",
    }
}

/// Normalise a DNS name without the hostname-only rules (two labels, non-numeric last label):
/// lower-case, one trailing dot removed, IDNA to A-labels, LDH labels of 1-63 characters not
/// starting or ending with `-`, at most 253 characters.
pub(crate) fn normalize_name(input: &str) -> Result<String, HostnameError> {
    if input.is_empty() {
        return Err(HostnameError::Empty);
    }
    // Cheap bound before any Unicode processing; punycode never makes a name shorter than its
    // number of characters, so this refuses nothing valid.
    if input.chars().count() > MAX_HOSTNAME_LEN + 1 {
        return Err(HostnameError::TooLong {
            len: input.chars().count(),
        });
    }
    let name = input.strip_suffix('.').unwrap_or(input);
    if name.is_empty() {
        return Err(HostnameError::Empty);
    }
    for ch in name.chars() {
        match ch {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => {}
            '_' => return Err(HostnameError::Underscore { name: quote(input) }),
            '*' => return Err(HostnameError::Wildcard { name: quote(input) }),
            c if c.is_ascii() || c.is_whitespace() || c.is_control() => {
                return Err(HostnameError::InvalidChar {
                    name: quote(input),
                    ch: c,
                    hint: char_hint(c),
                });
            }
            _ => {}
        }
    }
    if name.split('.').any(str::is_empty) {
        return Err(HostnameError::EmptyLabel { name: quote(input) });
    }
    let ascii = if ldh_without_a_labels(name) {
        // UTS-46 maps these to themselves, upper case to lower case: the common case (every
        // name a gateway sees per connection) without the Unicode machinery.
        name.to_ascii_lowercase()
    } else {
        uts46_to_ascii(name).map_err(|_| HostnameError::Idna { name: quote(input) })?
    };
    if ascii.len() > MAX_HOSTNAME_LEN {
        return Err(HostnameError::TooLong { len: ascii.len() });
    }
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err(HostnameError::EmptyLabel { name: quote(input) });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostnameError::LabelTooLong {
                label: quote(label),
                len: label.len(),
            });
        }
        if let Some(ch) = label
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
        {
            // UTS-46 mapped a character to something outside LDH.
            return Err(HostnameError::InvalidChar {
                name: quote(input),
                ch,
                hint: char_hint(ch),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostnameError::HyphenAtEdge {
                label: quote(label),
            });
        }
    }
    Ok(ascii)
}

/// Whether `name` is ASCII letters, digits, hyphens and dots with no label in A-label form
/// (`xn--`): UTS-46 processing would only lower its case.
fn ldh_without_a_labels(name: &str) -> bool {
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name
            .split('.')
            .any(|label| label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--"))
}

/// UTS-46 ToASCII (STD3 rules, hyphens allowed, lengths checked by the caller), lower case.
fn uts46_to_ascii(name: &str) -> Result<String, ()> {
    let ascii = Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| ())?;
    Ok(ascii.to_ascii_lowercase())
}

#[cfg(test)]
mod tests;

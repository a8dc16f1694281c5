//! Request path normalisation and path patterns of path rules.

use std::fmt;
use std::fmt::Write as _;
use std::str::FromStr;

use crate::error::quote;

/// Why a request path cannot be normalised. A request whose path cannot be normalised is denied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty; a path starts with '/'")]
    Empty,
    #[error("{path} does not start with '/'; give an absolute path such as /v1/objects")]
    NotAbsolute { path: String },
    #[error(
        "{path} has an invalid percent-escape; '%' must be followed by two hex digits (write a literal '%' as %25)"
    )]
    InvalidEscape { path: String },
    #[error(
        "{path} contains an encoded {what} ({escape}), which servers disagree about; send it unencoded or not at all"
    )]
    EncodedSeparator {
        path: String,
        what: &'static str,
        escape: &'static str,
    },
    #[error("{path} contains a backslash; use '/' to separate segments")]
    Backslash { path: String },
    #[error(
        "{path} contains a space, control character or '#'; percent-encode it (a space is %20)"
    )]
    InvalidChar { path: String },
    #[error("{path} climbs above the root with '..'; remove the extra '..' segments")]
    AboveRoot { path: String },
    #[error(
        "{path} has a dot-segment with parameters (such as '..;x'), which servers disagree about; remove it"
    )]
    DotSegmentWithParams { path: String },
}

/// Normalise a request path: percent-decode unreserved characters (`ALPHA DIGIT - . _ ~`),
/// upper-case the hex digits of the remaining percent-escapes, percent-encode raw non-ASCII
/// characters (as UTF-8), remove dot-segments (RFC 3986 section 5.2.4), keep `//` distinct,
/// keep `;params`, keep case. If the input contains `?`, only the part before it is normalised
/// and returned.
///
/// Refused ([`PathError`]): a path not starting with `/`; an invalid percent-escape; an encoded
/// `/` (`%2F`), `\` (`%5C`) or NUL (`%00`); raw control characters, spaces or `#`; a raw `\`;
/// dot-segments that climb above the root; dot-segments with parameters (`..;x`), which some
/// servers read as `..`.
///
/// ```
/// # use perimeter_policy::normalize_path;
/// assert_eq!(normalize_path("/a/%2e%2e/b%7e?q=1").unwrap(), "/b~");
/// ```
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let path = raw.split_once('?').map_or(raw, |(path, _query)| path);
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute { path: quote(path) });
    }
    let decoded = decode_unreserved(path)?;
    remove_dot_segments(&decoded, path)
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.char_indices();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '%' => {
                let escape = path
                    .get(i + 1..i + 3)
                    .filter(|h| h.len() == 2 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                let Some(hex) = escape else {
                    return Err(PathError::InvalidEscape { path: quote(path) });
                };
                chars.next();
                chars.next();
                let byte = u8::from_str_radix(hex, 16)
                    .map_err(|_| PathError::InvalidEscape { path: quote(path) })?;
                let separator = match byte {
                    b'/' => Some(("slash", "%2F")),
                    b'\\' => Some(("backslash", "%5C")),
                    0 => Some(("NUL", "%00")),
                    _ => None,
                };
                if let Some((what, escape)) = separator {
                    return Err(PathError::EncodedSeparator {
                        path: quote(path),
                        what,
                        escape,
                    });
                }
                if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
                    out.push(char::from(byte));
                } else {
                    let _ = write!(out, "%{byte:02X}");
                }
            }
            '\\' => return Err(PathError::Backslash { path: quote(path) }),
            '#' => return Err(PathError::InvalidChar { path: quote(path) }),
            c if c.is_control() || c.is_whitespace() => {
                return Err(PathError::InvalidChar { path: quote(path) });
            }
            c if c.is_ascii() => out.push(c),
            c => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{byte:02X}");
                }
            }
        }
    }
    Ok(out)
}

/// RFC 3986 5.2.4 on an absolute path, except that climbing above the root is refused instead
/// of ignored, and a dot-segment with parameters is refused. `original` is for messages.
fn remove_dot_segments(path: &str, original: &str) -> Result<String, PathError> {
    let rest = &path[1..];
    let mut out: Vec<&str> = Vec::new();
    let mut segments = rest.split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot {
                        path: quote(original),
                    });
                }
            }
            s if matches!(s.split(';').next(), Some("." | "..")) => {
                return Err(PathError::DotSegmentWithParams {
                    path: quote(original),
                });
            }
            s => {
                out.push(s);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    let mut normalised = String::with_capacity(path.len());
    for segment in out {
        normalised.push('/');
        normalised.push_str(segment);
    }
    if normalised.is_empty() {
        normalised.push('/');
    }
    Ok(normalised)
}

/// A path pattern of a path rule: an exact path (`/v1/objects`), or a prefix ending in `/*`
/// (`/v1/*`). Stored normalised with [`normalize_path`]; a `Prefix` holds the normalised part
/// before `*` and so always ends with `/` (`/v1/*` is `Prefix("/v1/")`, `/*` is
/// `Prefix("/")`). A prefix matches every path below it, not the path without its trailing
/// slash: `/v1/*` matches `/v1/` and `/v1/a/b`, not `/v1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathPattern {
    Exact(String),
    Prefix(String),
}

/// Why a string is not a [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathPatternError {
    #[error(
        "{pattern} has '*' other than as the final \"/*\"; a path pattern is an exact path (/v1/objects) or a prefix ending in /* (/v1/*)"
    )]
    MisplacedWildcard { pattern: String },
    #[error(
        "{pattern} contains '?' or '#'; a path pattern matches the path only, without query or fragment"
    )]
    QueryOrFragment { pattern: String },
    #[error("not in canonical form; its canonical form is {0}")]
    NotCanonical(String),
    #[error(transparent)]
    Path(#[from] PathError),
}

impl PathPattern {
    /// Whether the pattern matches a path already normalised with [`normalize_path`].
    pub fn matches(&self, normalised_path: &str) -> bool {
        match self {
            PathPattern::Exact(path) => path == normalised_path,
            PathPattern::Prefix(prefix) => normalised_path.starts_with(prefix.as_str()),
        }
    }
}

impl FromStr for PathPattern {
    type Err = PathPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains('?') || s.contains('#') {
            return Err(PathPatternError::QueryOrFragment { pattern: quote(s) });
        }
        let (body, prefix) = match s.strip_suffix("/*") {
            Some(body) => (&s[..body.len() + 1], true),
            None => (s, false),
        };
        if body.contains('*') {
            return Err(PathPatternError::MisplacedWildcard { pattern: quote(s) });
        }
        let normalised = normalize_path(body)?;
        Ok(if prefix {
            // A normalised "/x/" always keeps its trailing slash, but stay safe.
            if normalised.ends_with('/') {
                PathPattern::Prefix(normalised)
            } else {
                PathPattern::Prefix(normalised + "/")
            }
        } else {
            PathPattern::Exact(normalised)
        })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(path) => f.write_str(path),
            PathPattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

crate::serde_as_string!(PathPattern);

#[cfg(test)]
mod tests;

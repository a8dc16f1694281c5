//! The lexical layer: a URI string split into scheme, userinfo, authority, path, query and
//! fragment (RFC 3986 delimiters), query parameters split on `&` and `=`, and strict
//! percent-decoding. `+` is a literal plus sign, not a space: base64 values (keys,
//! certificates) carry it, and RFC 3986 gives it no other meaning in a query.

use crate::error::{UriError, UriPart};

/// The longest URI accepted (a base64 service-account key is a few KiB).
pub const MAX_URI_LEN: usize = 64 * 1024;

/// A URI split at its delimiters; nothing decoded yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split<'a> {
    pub scheme: &'a str,
    pub userinfo: Option<&'a str>,
    pub authority: &'a str,
    /// Empty, or starting with `/`.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub fragment: Option<&'a str>,
}

/// Split `input` at its delimiters, refusing what is not a URI at all.
pub(crate) fn split(input: &str) -> Result<Split<'_>, UriError> {
    if input.is_empty() {
        return Err(UriError::new(UriPart::Uri, "empty; expected scheme://..."));
    }
    if input.len() > MAX_URI_LEN {
        return Err(UriError::new(
            UriPart::Uri,
            format!("longer than {MAX_URI_LEN} bytes"),
        ));
    }
    if let Some(pos) = input.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
        return Err(UriError::new(
            UriPart::Uri,
            format!(
                "the character at byte {pos} is a space, a control character or not ASCII; \
                 percent-encode it"
            ),
        ));
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err(UriError::new(
            UriPart::Scheme,
            "missing; expected one of s3://, gs://, azure-blob://, kafka://, webhook-https://",
        ));
    };
    if !is_scheme(scheme) {
        return Err(UriError::new(
            UriPart::Scheme,
            "not a scheme name; expected one of s3://, gs://, azure-blob://, kafka://, \
             webhook-https://",
        ));
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (rest, None),
    };
    let (hier, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match hier.find('/') {
        Some(i) => hier.split_at(i),
        None => (hier, ""),
    };
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some((u, a)) => (Some(u), a),
        None => (None, authority),
    };
    Ok(Split {
        scheme,
        userinfo,
        authority,
        path,
        query,
        fragment,
    })
}

/// RFC 3986 scheme: a letter, then letters, digits, `+`, `-`, `.`.
pub(crate) fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// One `name=value` of a query, still encoded. `position` counts from 1.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawParam<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub position: usize,
}

/// Split a query into its parameters; every one must be `name=value`.
pub(crate) fn params(query: &str) -> Result<Vec<RawParam<'_>>, UriError> {
    let mut out = Vec::new();
    for (i, segment) in query.split('&').enumerate() {
        let position = i + 1;
        if segment.is_empty() {
            return Err(UriError::new(
                UriPart::Query,
                format!("parameter {position} is empty (a stray '&'); expected NAME=VALUE"),
            ));
        }
        let Some((name, value)) = segment.split_once('=') else {
            return Err(UriError::new(
                UriPart::Query,
                format!("parameter {position} has no '='; expected NAME=VALUE"),
            ));
        };
        if name.is_empty() {
            return Err(UriError::new(
                UriPart::Query,
                format!("parameter {position} has no name; expected NAME=VALUE"),
            ));
        }
        out.push(RawParam {
            name,
            value,
            position,
        });
    }
    Ok(out)
}

/// Why a percent-encoded string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl DecodeError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            DecodeError::BadEscape => "a '%' not followed by two hex digits; write '%' as %25",
            DecodeError::NotUtf8 => "percent-escapes that do not decode to UTF-8",
        }
    }
}

/// Strict percent-decoding: every `%` starts a two-hex-digit escape.
pub(crate) fn decode(s: &str) -> Result<String, DecodeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
            match (hi, lo) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(DecodeError::BadEscape),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_strict_and_plus_is_literal() {
        assert_eq!(decode("a%2Bb+c").as_deref(), Ok("a+b+c"));
        assert_eq!(decode("%41%62"), Ok("Ab".to_string()));
        assert_eq!(decode("%4"), Err(DecodeError::BadEscape));
        assert_eq!(decode("%zz"), Err(DecodeError::BadEscape));
        assert_eq!(decode("%"), Err(DecodeError::BadEscape));
        assert_eq!(decode("%ff"), Err(DecodeError::NotUtf8));
        for s in ["", "a b&c=d/é%", "+/=", "\u{1F600}"] {
            assert_eq!(decode(&encode(s)).as_deref(), Ok(s));
        }
    }

    #[test]
    fn split_finds_each_part() {
        let s = split("s3://u:p@bucket/a/b?X=1&Y=2#frag").expect("splits");
        assert_eq!(s.scheme, "s3");
        assert_eq!(s.userinfo, Some("u:p"));
        assert_eq!(s.authority, "bucket");
        assert_eq!(s.path, "/a/b");
        assert_eq!(s.query, Some("X=1&Y=2"));
        assert_eq!(s.fragment, Some("frag"));
        let s = split("kafka://a:1,b:2").expect("splits");
        assert_eq!((s.authority, s.path, s.query), ("a:1,b:2", "", None));
    }
}

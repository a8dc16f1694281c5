//! [`redact`]: a URI with its secrets replaced, whether or not it is valid. It works on the
//! raw text, delimiter by delimiter, and shows a value only when it knows the value is not
//! secret: the value of an unknown or misspelt parameter, a fragment, a userinfo password and
//! a webhook path are all replaced, and a name it does not know is replaced too (a stray '&'
//! in a secret would otherwise show the rest of it as a "name").

use crate::params::{CHAIN_PARAMS, SECRET_PARAMS, URL_PARAMS, known_ignoring_case};
use crate::syntax::{decode, is_scheme};

/// What replaces a secret.
pub const REDACTED: &str = "redacted";

/// `input` with every secret replaced by `redacted`. The result is printable ASCII (anything
/// else is percent-encoded), so it is safe to log and to print on a terminal.
pub fn redact(input: &str) -> String {
    let (rest, fragment) = match input.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (input, None),
    };
    let (pre, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    // A raw '?', '#' or '&' in a userinfo password ends the authority early: the real '@' then
    // shows up in the query (in a segment that is not a known parameter) or in the fragment,
    // and everything after "://" is taken for the password.
    let cut_short = fragment.is_some_and(|f| f.contains('@'))
        || query.is_some_and(|q| {
            q.split('&').any(|seg| {
                seg.contains('@')
                    && seg
                        .split_once('=')
                        .and_then(|(n, _)| decode(n).ok())
                        .is_none_or(|n| known_ignoring_case(&n).is_none())
            })
        });
    let mut out = match pre.split_once("://") {
        Some((scheme, after)) => {
            let webhook = scheme.eq_ignore_ascii_case("webhook-https");
            let scheme = if is_scheme(scheme) { scheme } else { REDACTED };
            if cut_short {
                format!("{scheme}://{REDACTED}")
            } else {
                format!("{scheme}://{}", authority_and_path(after, webhook))
            }
        }
        None if pre.is_empty() => String::new(),
        None => REDACTED.to_string(),
    };
    if let Some(q) = query {
        out.push('?');
        let params: Vec<String> = q.split('&').map(param).collect();
        out.push_str(&params.join("&"));
    }
    if fragment.is_some() {
        out.push('#');
        out.push_str(REDACTED);
    }
    printable(&out)
}

/// Userinfo password and (for webhooks) path replaced; a `host:port` whose port is not digits
/// is taken for a password cut short by a raw '?' or '#', and replaced too.
fn authority_and_path(after: &str, webhook: bool) -> String {
    if let Some(at) = after.rfind('@') {
        let (userinfo, hostpath) = (&after[..at], &after[at + 1..]);
        let user = match userinfo.split_once(':') {
            Some((u, _)) => format!("{u}:{REDACTED}"),
            // A lone userinfo is often a token (https://TOKEN@host): not shown either.
            None => REDACTED.to_string(),
        };
        return format!("{user}@{}", host_and_path(hostpath, webhook));
    }
    host_and_path(after, webhook)
}

fn host_and_path(s: &str, webhook: bool) -> String {
    let (authority, path) = match s.find('/') {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    // Hosts, ports and broker lists hold only these; anything else is taken for a stray piece
    // of a password, and nothing from here on is shown.
    if !authority.bytes().all(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b',' | b'[' | b']')
    }) {
        return REDACTED.to_string();
    }
    let mut items = Vec::new();
    for item in authority.split(',') {
        let port = match item.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map(|(_, after)| after),
            None => item.find(':').map(|i| &item[i..]),
        };
        match port {
            None | Some("") => items.push(item.to_string()),
            Some(p)
                if p.len() > 1
                    && p[1..].bytes().all(|b| b.is_ascii_digit())
                    && p.starts_with(':') =>
            {
                items.push(item.to_string())
            }
            // Not a port: a password cut short. What follows it (more of the authority, the
            // path) may be more of the password, so nothing more is shown.
            Some(p) => {
                items.push(format!("{}:{REDACTED}", &item[..item.len() - p.len()]));
                return items.join(",");
            }
        }
    }
    let path = if webhook && !path.is_empty() && path != "/" {
        format!("/{REDACTED}")
    } else {
        path.to_string()
    };
    format!("{}{path}", items.join(","))
}

/// One `name=value` of the query, redacted.
fn param(segment: &str) -> String {
    if segment.is_empty() {
        return String::new();
    }
    let Some((name, value)) = segment.split_once('=') else {
        return REDACTED.to_string();
    };
    let Some(known) = decode(name).ok().and_then(|n| known_ignoring_case(&n)) else {
        return format!("{REDACTED}={REDACTED}");
    };
    let value = if value.is_empty() {
        String::new()
    } else if SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(known)) {
        REDACTED.to_string()
    } else if URL_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(known)) {
        match decode(value) {
            Ok(v) if !v.contains(['@', '?', '#']) => value.to_string(),
            _ => REDACTED.to_string(),
        }
    } else if CHAIN_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(known)) {
        match decode(value) {
            Ok(v) => chain(&v),
            Err(_) => REDACTED.to_string(),
        }
    } else {
        value.to_string()
    };
    format!("{name}={value}")
}

/// A role chain with each principal shown (when it looks like one) and each option replaced.
fn chain(value: &str) -> String {
    let principal = |p: &str| {
        !p.is_empty()
            && p.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b':' | b'/' | b'_' | b'+' | b'=' | b'.' | b'@' | b'-')
            })
    };
    value
        .split(',')
        .map(|link| {
            let mut pieces = link.split(';');
            let first = pieces.next().unwrap_or_default();
            let mut out = if principal(first) {
                first.to_string()
            } else {
                REDACTED.to_string()
            };
            for option in pieces {
                out.push(';');
                if option.starts_with("external_id=") {
                    out.push_str("external_id=");
                }
                out.push_str(REDACTED);
            }
            out
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Percent-encode anything outside printable ASCII.
fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c as u32) >= 0x21 && (c as u32) <= 0x7e {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

//! Tables of IP literals and of names that resolve to special addresses (DESIGN "IP literals",
//! "Address guard").

use std::net::Ipv4Addr;

use crate::case::{Case, case, curl, curl_with, raw_bytes};
use crate::fixture::Addrs;

/// Non-canonical spellings of `addr`. Only spellings whose every plausible misreading (octal
/// read as decimal, decimal read as octal, hex, short forms) is `addr` itself or no address at
/// all, so that even a gateway that reinterpreted one would stay inside the namespaces.
pub fn non_canonical(addr: Ipv4Addr) -> Vec<(String, &'static str)> {
    let [a, b, c, d] = addr.octets();
    let n = u32::from(addr);
    let mut out = vec![
        (n.to_string(), "decimal"),
        (format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"), "hex parts"),
        (format!("0x{n:08x}"), "hex"),
        (format!("{a}.0x{b:x}.{c}.{d}"), "mixed hex"),
        (
            format!("{a}.{b}.{}", u32::from(c) * 256 + u32::from(d)),
            "three parts",
        ),
        (format!("{a}.{}", n & 0x00ff_ffff), "two parts"),
        (format!("{a}.{b}.{c}.{d}."), "trailing dot"),
    ];
    // Octal, when reading its parts as decimal gives no address.
    let octal = [a, b, c, d].map(|o| format!("0{o:o}"));
    if octal.iter().any(|p| p.parse::<u32>().unwrap_or(0) > 255) {
        out.push((octal.join("."), "octal"));
    }
    // Zero-padded: a zero part, or a first part with a digit that octal does not have.
    if let Some(i) = [a, b, c, d].iter().position(|o| *o == 0) {
        let mut parts = [a, b, c, d].map(|o| o.to_string());
        parts[i] = "000".into();
        out.push((parts.join("."), "zero-padded"));
    } else if a.to_string().contains(['8', '9']) {
        out.push((format!("0{a}.{b}.{c}.{d}"), "zero-padded"));
    }
    out
}

/// An absolute-form GET of `/api/x` at `spelled`, Host the same.
pub fn get_at(spelled: &str, path: &str) -> Vec<u8> {
    format!("GET http://{spelled}{path} HTTP/1.1\r\nHost: {spelled}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// IP literals in non-canonical spellings: 400, never reinterpreted.
pub fn non_canonical_literals(a: Addrs) -> Vec<Case> {
    let spellings = non_canonical(a.allowed)
        .into_iter()
        .chain(non_canonical(Ipv4Addr::LOCALHOST))
        .chain([
            // Misread, these could name 177.0.0.1 or 87.0.0.1; harmless only because under
            // DEFAULT_DENY without a CIDR rule no literal is dialled. Not used under ALLOW_ALL.
            ("127.000.000.001".to_string(), "zero-padded loopback"),
            ("0177.0.0.1".to_string(), "octal loopback"),
            ("[::1%25lo]".to_string(), "zone id (URI form)"),
            ("[::1%lo]".to_string(), "zone id"),
        ]);
    let mut cases = Vec::new();
    for (spelled, what) in spellings {
        cases.push(
            case(
                format!("GET {what} {spelled}"),
                raw_bytes(get_at(&spelled, "/api/x")),
            )
            .refused(400, "non_canonical_ip"),
        );
        cases.push(
            case(
                format!("CONNECT {what} {spelled}"),
                raw_bytes(format!(
                    "CONNECT {spelled}:443 HTTP/1.1\r\nHost: {spelled}:443\r\n\r\n"
                )),
            )
            .refused(400, "non_canonical_ip"),
        );
    }
    cases
}

/// Canonical literals without a CIDR rule: 403. The allowed upstream's own address is not
/// allowed by the FQDN rule; special addresses are refused by the guard.
pub fn literals_without_a_cidr_rule(a: Addrs, ca: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = [
        (
            format!("http://{}/api/x", a.allowed),
            "ip_literal_needs_cidr_rule",
        ),
        (
            format!("http://[::ffff:{}]/api/x", a.allowed),
            "ip_literal_needs_cidr_rule",
        ),
        (
            format!("http://{}/api/x", a.denied),
            "ip_literal_needs_cidr_rule",
        ),
        (format!("http://{}/api/x", a.private), "special_address"),
        ("http://127.0.0.1/api/x".to_string(), "special_address"),
        ("http://[::1]/api/x".to_string(), "special_address"),
        (
            "http://[::ffff:127.0.0.1]/api/x".to_string(),
            "special_address",
        ),
    ]
    .into_iter()
    .map(|(url, reason)| case(url.clone(), curl(url)).refused(403, reason))
    .collect();
    for target in [
        format!("{}:443", a.allowed),
        format!("[::ffff:{}]:443", a.allowed),
    ] {
        cases.push(
            case(
                format!("CONNECT {target}"),
                raw_bytes(format!(
                    "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
                )),
            )
            .refused(403, "ip_literal_needs_cidr_rule"),
        );
    }
    cases.push(
        case(
            "CONNECT to the private literal",
            curl_with(&["--cacert", ca], format!("https://{}/", a.private)),
        )
        .refused(403, "special_address"),
    );
    cases
}

/// Names a rule allows that resolve to special addresses: refused by the guard.
pub fn names_of_special_addresses(ca: &str) -> Vec<Case> {
    vec![
        case(
            "an allowed name resolving to a private address",
            curl("http://private.allowed.test/api/x"),
        )
        .refused(403, "special_address"),
        case(
            "an allowed name resolving to loopback",
            curl("http://loopback.allowed.test/api/x"),
        )
        .refused(403, "special_address"),
        case(
            "the refusal names the address class",
            curl("http://private.allowed.test/"),
        )
        .refused(403, "special_address")
        .contains("private"),
        case(
            "CONNECT to an allowed name resolving to a private address",
            curl_with(&["--cacert", ca], "https://private.allowed.test/"),
        )
        .refused(403, "special_address"),
        case(
            "CONNECT to an allowed name resolving to loopback",
            curl_with(&["--cacert", ca], "https://loopback.allowed.test/"),
        )
        .refused(403, "special_address"),
    ]
}

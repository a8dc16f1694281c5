//! Entry points for the fuzz targets in `fuzz/` (one per parser). Each parses arbitrary bytes,
//! asserts the parser's invariants (canonical output, round-trip idempotence) and must never
//! panic otherwise. They also run under `cargo test` over generated inputs.

use std::net::IpAddr;

use crate::{
    Cidr, HostPattern, Hostname, PathPattern, RuleDestination, RuleInput, RuleType, normalize_path,
    parse_canonical_path, parse_ip_literal, validate_rule,
};

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

fn assert_hostname_invariants(name: &Hostname) {
    let s = name.as_str();
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'),
        "non-LDH output {s:?}"
    );
    assert!(s.len() <= crate::MAX_HOSTNAME_LEN, "too long {s:?}");
    assert!(s.contains('.'), "single label {s:?}");
    let again: Hostname = s.parse().expect("a normalised hostname re-parses");
    assert_eq!(&again, name, "hostname normalisation is not idempotent");
}

pub fn fuzz_hostname(data: &[u8]) {
    if let Ok(name) = text(data).parse::<Hostname>() {
        assert_hostname_invariants(&name);
    }
}

pub fn fuzz_host_pattern(data: &[u8]) {
    let Ok(pattern) = text(data).parse::<HostPattern>() else {
        return;
    };
    let shown = pattern.to_string();
    let again: HostPattern = shown.parse().expect("a canonical host pattern re-parses");
    assert_eq!(
        again, pattern,
        "host pattern normalisation is not idempotent"
    );
    let name = pattern.hostname();
    assert_hostname_invariants(name);
    match &pattern {
        HostPattern::Exact(_) => assert!(pattern.matches(name)),
        HostPattern::Wildcard(suffix) => {
            assert!(!pattern.matches(suffix), "a wildcard matched its apex");
            assert!(!crate::is_public_suffix(suffix.as_str()));
            if let Ok(below) = format!("a.{suffix}").parse::<Hostname>() {
                assert!(pattern.matches(&below));
            }
        }
    }
}

pub fn fuzz_cidr(data: &[u8]) {
    let Ok(cidr) = text(data).parse::<Cidr>() else {
        return;
    };
    assert_eq!(cidr.net(), cidr.net().trunc(), "host bits set in {cidr}");
    let again: Cidr = cidr
        .to_string()
        .parse()
        .expect("a canonical CIDR re-parses");
    assert_eq!(again, cidr);
}

pub fn fuzz_ip_literal(data: &[u8]) {
    let Ok(addr) = parse_ip_literal(&text(data)) else {
        return;
    };
    assert_eq!(parse_ip_literal(&addr.to_string()), Ok(addr));
    if let IpAddr::V6(v6) = addr {
        assert_eq!(parse_ip_literal(&format!("[{v6}]")), Ok(addr));
    }
}

pub fn fuzz_path(data: &[u8]) {
    let raw = text(data);
    if let Ok(path) = normalize_path(&raw) {
        assert_path_invariants(&path);
    }
    if let Ok(pattern) = raw.parse::<PathPattern>() {
        let again: PathPattern = pattern
            .to_string()
            .parse()
            .expect("a canonical path pattern re-parses");
        assert_eq!(
            again, pattern,
            "path pattern normalisation is not idempotent"
        );
    }
}

fn assert_path_invariants(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains('?'), "{path:?}");
    for segment in path.split('/').skip(1) {
        assert!(
            segment != "." && segment != "..",
            "dot-segment left in {path:?}"
        );
    }
    assert_eq!(
        normalize_path(path).as_deref(),
        Ok(path),
        "path normalisation is not idempotent"
    );
}

/// The fields of a rule, split out of fuzzer bytes by hand (no JSON parser in this crate).
struct RuleFields<'a> {
    rule_type: &'a str,
    destination: &'a str,
    ports: Option<Vec<i64>>,
    paths: Option<Vec<String>>,
}

fn parse_ports(list: &str) -> Vec<i64> {
    list.split(',')
        .filter_map(|p| p.trim().parse::<i64>().ok())
        .collect()
}

/// JSON-ish: `{"type":"FQDN","destination":"example.com","ports":[443],"paths":["/a/*"]}`.
/// Only flat string values without escapes are understood; that is enough to replay API bodies.
fn split_json(raw: &str) -> RuleFields<'_> {
    fn after<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
        let at = raw.find(&format!("\"{key}\""))?;
        let rest = raw[at + key.len() + 2..].trim_start();
        Some(rest.strip_prefix(':')?.trim_start())
    }
    fn string<'a>(raw: &'a str, key: &str) -> &'a str {
        after(raw, key)
            .and_then(|v| v.strip_prefix('"'))
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
    }
    fn array<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
        let v = after(raw, key)?.strip_prefix('[')?;
        Some(v.split(']').next().unwrap_or(v))
    }
    RuleFields {
        rule_type: string(raw, "type"),
        destination: string(raw, "destination"),
        ports: array(raw, "ports").map(parse_ports),
        paths: array(raw, "paths").map(|list| {
            list.split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect()
        }),
    }
}

/// Lines: `type`, `destination`, `ports` (comma-separated integers; `-` means absent), then one
/// path per line.
fn split_lines(raw: &str) -> RuleFields<'_> {
    let mut lines = raw.split('\n');
    let rule_type = lines.next().unwrap_or_default();
    let destination = lines.next().unwrap_or_default();
    let ports = match lines.next() {
        None | Some("-") => None,
        Some(line) => Some(parse_ports(line)),
    };
    let paths: Vec<String> = lines.map(str::to_owned).collect();
    RuleFields {
        rule_type,
        destination,
        ports,
        paths: (!paths.is_empty()).then_some(paths),
    }
}

/// Rule input from bytes, either a JSON-ish object (when the input starts with `{"`) or lines
/// (see `split_lines`), fed to [`validate_rule`]; a valid rule must be canonical and validate
/// to itself again.
pub fn fuzz_rule_json(data: &[u8]) {
    let raw = text(data);
    let fields = if raw.starts_with("{\"") {
        split_json(&raw)
    } else {
        split_lines(&raw)
    };
    let input = RuleInput {
        rule_type: fields.rule_type,
        destination: fields.destination,
        ports: fields.ports.as_deref(),
        paths: fields.paths.as_deref(),
    };
    let Ok(rule) = validate_rule(&input) else {
        return;
    };
    assert!(
        rule.ports.windows(2).all(|w| w[0] < w[1]),
        "ports not sorted"
    );
    assert!(!rule.ports.contains(&0));
    assert_eq!(rule.destination.rule_type(), rule.rule_type);
    if rule.rule_type == RuleType::Cidr {
        assert!(rule.paths.is_empty(), "CIDR rule with paths");
    }
    // What is stored is the canonical text, and it reads back as the same values.
    let destination = rule.destination.to_string();
    assert_eq!(
        RuleDestination::parse_canonical(rule.rule_type, &destination).as_ref(),
        Ok(&rule.destination),
        "destination does not read back"
    );
    let paths: Vec<String> = rule.paths.iter().map(ToString::to_string).collect();
    for (path, pattern) in paths.iter().zip(&rule.paths) {
        assert_eq!(
            parse_canonical_path(path).as_ref(),
            Ok(pattern),
            "path does not read back"
        );
    }
    // Validating the canonical rule gives the same rule.
    let ports: Vec<i64> = rule.ports.iter().map(|&p| i64::from(p)).collect();
    let again = validate_rule(&RuleInput {
        rule_type: rule.rule_type.as_str(),
        destination: &destination,
        ports: Some(&ports),
        paths: Some(&paths),
    })
    .expect("a validated rule validates again");
    assert_eq!(again, rule, "rule validation is not idempotent");
}

#[cfg(test)]
mod tests;

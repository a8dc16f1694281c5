//! Validation of egress rules as the API receives them.

use std::fmt;
use std::str::FromStr;

use crate::error::quote;
use crate::{
    Cidr, FieldError, HostPattern, HostPatternError, HostnameError, IpLiteralError, PathPattern,
    parse_ip_literal, validate_ports,
};

/// Longest destination accepted (a DNS name's limit; every CIDR is shorter).
pub const MAX_DESTINATION_LEN: usize = 253;
/// Most path patterns one rule may carry.
pub const MAX_PATHS: usize = 100;
/// Longest path pattern accepted.
pub const MAX_PATH_LEN: usize = 2048;

/// The kind of destination an egress rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleType {
    /// A host pattern: `example.com` or `*.example.com`.
    Fqdn,
    /// An IPv4 or IPv6 prefix.
    Cidr,
}

/// A rule type other than `FQDN` or `CIDR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule type {input} is not known; use \"FQDN\" or \"CIDR\"")]
pub struct RuleTypeError {
    input: String,
}

impl RuleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleType::Fqdn => "FQDN",
            RuleType::Cidr => "CIDR",
        }
    }
}

impl FromStr for RuleType {
    type Err = RuleTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("FQDN") {
            Ok(RuleType::Fqdn)
        } else if s.eq_ignore_ascii_case("CIDR") {
            Ok(RuleType::Cidr)
        } else {
            Err(RuleTypeError { input: quote(s) })
        }
    }
}

impl fmt::Display for RuleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::serde_as_string!(RuleType);

/// An egress rule as the API receives it, before validation.
#[derive(Debug, Clone, Copy)]
pub struct RuleInput<'a> {
    pub rule_type: &'a str,
    pub destination: &'a str,
    pub ports: Option<&'a [i64]>,
    pub paths: Option<&'a [String]>,
}

/// What an egress rule allows: host names (FQDN rules) or an address prefix (CIDR rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleDestination {
    Host(HostPattern),
    Cidr(Cidr),
}

/// A stored destination that is not its rule type's canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{rule_type} destination {value:?} is not canonical: {reason}")]
pub struct RuleDestinationError {
    rule_type: RuleType,
    value: String,
    reason: String,
}

impl RuleDestination {
    pub fn rule_type(&self) -> RuleType {
        match self {
            RuleDestination::Host(_) => RuleType::Fqdn,
            RuleDestination::Cidr(_) => RuleType::Cidr,
        }
    }

    /// Read a destination as [`validate_rule`] wrote it (its `Display` form). Anything else,
    /// a non-canonical spelling included, is an error: a stored value is never corrected.
    pub fn parse_canonical(
        rule_type: RuleType,
        value: &str,
    ) -> Result<RuleDestination, RuleDestinationError> {
        let error = |reason: String| RuleDestinationError {
            rule_type,
            value: value.chars().take(80).collect(),
            reason,
        };
        let parsed = match rule_type {
            RuleType::Fqdn => value
                .parse::<HostPattern>()
                .map(RuleDestination::Host)
                .map_err(|e| error(e.to_string()))?,
            RuleType::Cidr => value
                .parse::<Cidr>()
                .map(RuleDestination::Cidr)
                .map_err(|e| error(e.to_string()))?,
        };
        if parsed.to_string() != value {
            return Err(error(format!("its canonical form is {parsed}")));
        }
        Ok(parsed)
    }
}

impl fmt::Display for RuleDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleDestination::Host(h) => h.fmt(f),
            RuleDestination::Cidr(c) => c.fmt(f),
        }
    }
}

impl serde::Serialize for RuleDestination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read a stored path pattern (its `Display` form); a non-canonical spelling is an error.
pub fn parse_canonical_path(value: &str) -> Result<PathPattern, crate::PathPatternError> {
    let parsed: PathPattern = value.parse()?;
    if parsed.to_string() != value {
        return Err(crate::PathPatternError::NotCanonical(parsed.to_string()));
    }
    Ok(parsed)
}

/// A valid egress rule in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidatedRule {
    pub rule_type: RuleType,
    pub destination: RuleDestination,
    /// Sorted and deduplicated; empty means every port.
    pub ports: Vec<u16>,
    /// Deduplicated, in the order given.
    pub paths: Vec<PathPattern>,
    /// Things that are valid but probably not what the user meant.
    pub warnings: Vec<String>,
}

/// Validate an egress rule. Errors name the JSON field: `type`, `destination`, `ports`,
/// `ports[i]`, `paths`, `paths[i]`.
///
/// An FQDN rule whose destination is an IP literal or a CIDR is refused with a pointer to type
/// CIDR; a CIDR rule with paths is refused. Warnings (not errors): no ports (the rule allows
/// every port), and an exact FQDN (`example.com` does not cover `www.example.com`).
pub fn validate_rule(input: &RuleInput<'_>) -> Result<ValidatedRule, FieldError> {
    let rule_type: RuleType = input
        .rule_type
        .parse()
        .map_err(|e: RuleTypeError| FieldError::new("type", e.to_string()))?;

    let destination = input.destination;
    if destination.is_empty() {
        return Err(FieldError::new(
            "destination",
            match rule_type {
                RuleType::Fqdn => {
                    "destination is empty; give a host name such as example.com or *.example.com"
                }
                RuleType::Cidr => {
                    "destination is empty; give a CIDR such as 10.0.0.0/8 or 2001:db8::/32"
                }
            },
        ));
    }
    if destination.len() > MAX_DESTINATION_LEN {
        return Err(FieldError::new(
            "destination",
            format!(
                "destination is {} bytes long; at most {MAX_DESTINATION_LEN} are allowed",
                destination.len()
            ),
        ));
    }

    let mut warnings = Vec::new();
    let (destination, exact) = match rule_type {
        RuleType::Fqdn => {
            let pattern = parse_fqdn_destination(destination)?;
            let exact = match &pattern {
                HostPattern::Exact(name) => Some(name.clone()),
                HostPattern::Wildcard(_) => None,
            };
            (RuleDestination::Host(pattern), exact)
        }
        RuleType::Cidr => {
            let cidr: Cidr = destination
                .parse()
                .map_err(|e: crate::CidrError| FieldError::new("destination", e.to_string()))?;
            (RuleDestination::Cidr(cidr), None)
        }
    };

    let paths = match input.paths {
        Some(paths) if !paths.is_empty() => {
            if rule_type == RuleType::Cidr {
                return Err(FieldError::new(
                    "paths",
                    "CIDR rules carry no paths; remove \"paths\", or use an FQDN rule for the host names whose paths you want to allow",
                ));
            }
            validate_paths(paths)?
        }
        _ => Vec::new(),
    };

    let ports = validate_ports(input.ports.unwrap_or_default())?;
    if ports.is_empty() {
        warnings.push(format!(
            "no ports listed: this rule allows every port to {destination}; list the ports you need in \"ports\", such as [443]"
        ));
    }
    if let Some(name) = exact {
        warnings.push(format!(
            "{name} matches only {name} itself, not names below it such as www.{name}; add a rule for *.{name} if those should be allowed too"
        ));
    }

    Ok(ValidatedRule {
        rule_type,
        destination,
        ports,
        paths,
        warnings,
    })
}

fn parse_fqdn_destination(destination: &str) -> Result<HostPattern, FieldError> {
    let use_cidr = |what: &str, suggestion: String| {
        FieldError::new(
            "destination",
            format!(
                "{} is {what}; FQDN rules match host names only: use type CIDR with destination {suggestion}",
                quote(destination)
            ),
        )
    };
    if let Ok(addr) = parse_ip_literal(destination) {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        return Err(use_cidr("an IP address", format!("{addr}/{len}")));
    }
    if let Some((addr, _len)) = destination.split_once('/')
        && parse_ip_literal(addr).is_ok()
    {
        return Err(match destination.parse::<Cidr>() {
            Ok(cidr) => use_cidr("a CIDR", cidr.to_string()),
            Err(e) => FieldError::new(
                "destination",
                format!(
                    "{} is a CIDR; FQDN rules match host names only: use type CIDR (and note: {e})",
                    quote(destination)
                ),
            ),
        });
    }
    destination.parse::<HostPattern>().map_err(|e| {
        let message = match e {
            // A non-canonical IP spelling: say why it is not an address either.
            HostPatternError::Hostname(HostnameError::LooksLikeIp { .. }) => {
                match parse_ip_literal(destination) {
                    Err(IpLiteralError::NotAnIp { .. }) | Ok(_) => e.to_string(),
                    Err(ip) => format!("{e}; as an IP address it is refused too: {ip}"),
                }
            }
            e => e.to_string(),
        };
        FieldError::new("destination", message)
    })
}

fn validate_paths(paths: &[String]) -> Result<Vec<PathPattern>, FieldError> {
    if paths.len() > MAX_PATHS {
        return Err(FieldError::new(
            "paths",
            format!(
                "{} paths listed; a rule carries at most {MAX_PATHS}; use prefix patterns such as /v1/*",
                paths.len()
            ),
        ));
    }
    let mut out: Vec<PathPattern> = Vec::with_capacity(paths.len());
    for (i, raw) in paths.iter().enumerate() {
        let field = || format!("paths[{i}]");
        if raw.len() > MAX_PATH_LEN {
            return Err(FieldError::new(
                field(),
                format!(
                    "path pattern is {} bytes long; at most {MAX_PATH_LEN} are allowed",
                    raw.len()
                ),
            ));
        }
        let pattern: PathPattern = raw
            .parse()
            .map_err(|e: crate::PathPatternError| FieldError::new(field(), e.to_string()))?;
        if !out.contains(&pattern) {
            out.push(pattern);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

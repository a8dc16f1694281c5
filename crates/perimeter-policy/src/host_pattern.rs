//! Host patterns of FQDN rules: an exact name or `*.suffix`.

use std::fmt;
use std::str::FromStr;

use crate::error::quote;
use crate::hostname::{Hostname, HostnameError, normalize_name};
use crate::psl::is_public_suffix;

/// The destination of an FQDN rule.
///
/// `Exact(name)` matches exactly that name. `Wildcard(suffix)`, written `*.suffix`, matches any
/// name strictly below `suffix`, at any depth, and never `suffix` itself. Refused: a bare `*`, a
/// `*` in any label but the first, `**`, partial wildcards such as `foo*.example.com`, and a
/// wildcard over a public suffix (`*.com`, `*.co.uk`, `*.github.io`), because anyone can
/// register a name there.
///
/// The derived order puts `Exact` before `Wildcard`; use [`HostPattern::specificity`] to rank
/// patterns that match the same name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(Hostname),
    Wildcard(Hostname),
}

/// Why a string is not a [`HostPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostPatternError {
    #[error(
        "a bare \"*\" would allow every host; name the hosts, or a wildcard under a domain you trust such as *.example.com"
    )]
    BareWildcard,
    #[error(
        "{pattern} has '*' outside the first label; a wildcard must be the whole first label, as in *.example.com"
    )]
    MisplacedWildcard { pattern: String },
    #[error(
        "{pattern} is a partial wildcard; '*' must be the whole first label followed by a dot, as in *.example.com"
    )]
    PartialWildcard { pattern: String },
    #[error(
        "*.{suffix} is a wildcard over a public suffix: anyone can register a name under {suffix}; name the domain you mean, such as *.example.{suffix}"
    )]
    PublicSuffix { suffix: String },
    #[error(transparent)]
    Hostname(#[from] HostnameError),
}

impl HostPattern {
    /// Whether this pattern matches the (normalised) name.
    pub fn matches(&self, name: &Hostname) -> bool {
        match self {
            HostPattern::Exact(exact) => exact == name,
            HostPattern::Wildcard(suffix) => name.is_below(suffix),
        }
    }

    /// The name of an exact pattern or the suffix of a wildcard.
    pub fn hostname(&self) -> &Hostname {
        match self {
            HostPattern::Exact(name) | HostPattern::Wildcard(name) => name,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostPattern::Wildcard(_))
    }

    /// Rank among patterns matching the same name: an exact match beats any wildcard, and a
    /// longer wildcard suffix beats a shorter one. Higher is more specific.
    pub fn specificity(&self) -> (bool, usize) {
        match self {
            HostPattern::Exact(name) => (true, name.as_str().len()),
            HostPattern::Wildcard(suffix) => (false, suffix.as_str().len()),
        }
    }
}

impl FromStr for HostPattern {
    type Err = HostPatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" || s == "*." {
            return Err(HostPatternError::BareWildcard);
        }
        let Some(rest) = s.strip_prefix("*.") else {
            if let Some(first) = s.split('.').next()
                && first.contains('*')
            {
                return Err(HostPatternError::PartialWildcard { pattern: quote(s) });
            }
            if s.contains('*') {
                return Err(HostPatternError::MisplacedWildcard { pattern: quote(s) });
            }
            return Ok(HostPattern::Exact(s.parse()?));
        };
        if rest.contains('*') {
            return Err(HostPatternError::MisplacedWildcard { pattern: quote(s) });
        }
        let suffix = normalize_name(rest)?;
        if is_public_suffix(&suffix) {
            return Err(HostPatternError::PublicSuffix { suffix });
        }
        Ok(HostPattern::Wildcard(Hostname::from_normalized(suffix)?))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => write!(f, "{name}"),
            HostPattern::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

crate::serde_as_string!(HostPattern);

#[cfg(test)]
mod tests;

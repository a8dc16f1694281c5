//! The policy document: the wire format the control plane publishes and gateways compile.

use std::fmt;
use std::str::FromStr;

use crate::RuleType;
use crate::error::quote;

/// The only document format this crate compiles. A gateway refuses (and keeps its last-known-good
/// snapshot) rather than guess at a format it does not know.
pub const POLICY_FORMAT: u32 = 1;

/// A cluster's egress policy as plain data, versioned. Unknown fields are refused: a gateway that
/// silently ignored a field it does not understand could enforce less than the control plane
/// meant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Wire format, [`POLICY_FORMAT`].
    pub format: u32,
    /// Monotonically increasing per cluster.
    pub version: u64,
    pub cluster_id: String,
    pub traffic_policy: TrafficPolicy,
    /// Customer rules and operator rules (`crl_managed`).
    pub rules: Vec<RuleDoc>,
    pub private_endpoints: Vec<EndpointDoc>,
}

/// One egress rule in a [`PolicyDocument`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    pub id: String,
    pub name: String,
    pub rule_type: RuleType,
    /// A host pattern (`example.com`, `*.example.com`) or a CIDR.
    pub destination: String,
    /// Empty means every port.
    pub ports: Vec<u16>,
    /// Path patterns (FQDN rules only); empty means every path.
    pub paths: Vec<String>,
    /// An operator-managed rule for an essential service of the platform: always allowed.
    pub crl_managed: bool,
}

/// One egress private endpoint in a [`PolicyDocument`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointDoc {
    pub id: String,
    /// The endpoint's own DNS name; may be empty.
    pub endpoint_address: String,
    /// Custom domain names routed to the endpoint: host patterns, `*.x.y` allowed.
    pub domain_names: Vec<String>,
    /// Where the endpoint's forwarder connects: `host:port`.
    pub backends: Vec<String>,
}

/// How a cluster's rules are applied. There is deliberately no `Default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficPolicy {
    /// Everything the address guard lets through is allowed.
    AllowAll,
    /// Only what a rule allows is allowed.
    DefaultDeny,
    /// As `AllowAll`, but every decision says what `DefaultDeny` would have said.
    ReportOnly,
}

/// A traffic policy other than `ALLOW_ALL`, `DEFAULT_DENY` or `REPORT_ONLY`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "traffic policy {input} is not known; use \"ALLOW_ALL\", \"DEFAULT_DENY\" or \"REPORT_ONLY\""
)]
pub struct TrafficPolicyError {
    input: String,
}

impl TrafficPolicy {
    pub const ALL: [TrafficPolicy; 3] = [
        TrafficPolicy::AllowAll,
        TrafficPolicy::DefaultDeny,
        TrafficPolicy::ReportOnly,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrafficPolicy::AllowAll => "ALLOW_ALL",
            TrafficPolicy::DefaultDeny => "DEFAULT_DENY",
            TrafficPolicy::ReportOnly => "REPORT_ONLY",
        }
    }
}

impl FromStr for TrafficPolicy {
    type Err = TrafficPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrafficPolicy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| TrafficPolicyError { input: quote(s) })
    }
}

impl fmt::Display for TrafficPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::serde_as_string!(TrafficPolicy);

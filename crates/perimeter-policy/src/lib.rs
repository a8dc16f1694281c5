//! Pure policy model of Perimeter: hostnames, host patterns, CIDRs, IP literals, ports, paths,
//! and validation of the values the API accepts (egress rules, regions, private endpoint targets,
//! cluster names, private endpoint domain names); the policy document the control plane
//! publishes, its compiled [`Snapshot`], and egress decisions ([`Snapshot::decide_target`],
//! [`Snapshot::decide_address`], [`Snapshot::check`]).
//!
//! Every security-relevant string is parsed once, at the boundary, into a newtype that cannot be
//! wrong ([`Hostname`], [`HostPattern`], [`Cidr`], [`PathPattern`]). Validation failures that reach
//! the API are [`FieldError`]s: the JSON field path and a message that says what is wrong and how
//! to fix it. This crate does no I/O, reads no clock and logs nothing.

/// Implement `Serialize` as the `Display` string and `Deserialize` through `FromStr`, so the
/// wire format can never carry a value the parser would refuse.
macro_rules! serde_as_string {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s =
                    <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_as_string;

mod addr_class;
mod cluster;
mod decide;
mod document;
mod endpoint;
mod error;
pub mod fuzzing;
mod host_pattern;
mod hostname;
mod ingress;
mod ip;
mod name_index;
mod path;
mod port;
mod prefix_table;
mod psl;
mod region;
mod rule;
mod snapshot;

pub use addr_class::{AddrClass, classify};
pub use cluster::validate_cluster_name;
pub use decide::{
    Decision, Destination, NameAnswer, Reason, RuleMeta, RuleRef, TargetDecision, Verdict,
};
pub use document::{
    AllowlistDoc, BackendDoc, EndpointDoc, IngressDoc, POLICY_FORMAT, PolicyDocument, RuleDoc,
    TlsInspectionDoc, TrafficPolicy, TrafficPolicyError, WorkloadDoc,
};
pub use endpoint::{
    MAX_DOMAIN_NAMES, MAX_TARGET_IDENTIFIER_LEN, TargetServiceType, TargetServiceTypeError,
    validate_domain_names, validate_endpoint_target,
};
pub use error::FieldError;
pub use host_pattern::{HostPattern, HostPatternError};
pub use hostname::{Hostname, HostnameError, MAX_HOSTNAME_LEN, MAX_LABEL_LEN};
pub use ingress::{
    AllowlistEntry, Ingress, IngressDecision, IngressListener, IngressReason, Workload,
    validate_workload_address,
};
pub use ip::{Cidr, CidrError, IpLiteralError, ipv4_behind, parse_ip_literal};
pub use path::{PathError, PathPattern, PathPatternError, normalize_path};
pub use port::{MAX_PORTS, validate_ports};
pub use psl::is_public_suffix;
pub use region::{Provider, ProviderError, validate_region};
pub use rule::{
    MAX_DESTINATION_LEN, MAX_PATH_LEN, MAX_PATHS, RuleDestination, RuleDestinationError, RuleInput,
    RuleType, RuleTypeError, ValidatedRule, parse_canonical_path, validate_rule,
};
pub use snapshot::{Backend, BackendHost, CompileError, Endpoint, Inspection, Snapshot, compile};

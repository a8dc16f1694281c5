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
    /// The ingress side: the IP allowlist of the public listeners and the workload addresses
    /// they forward to.
    #[serde(default)]
    pub ingress: IngressDoc,
    /// TLS inspection of the cluster's HTTPS destinations whose allowing rules carry paths;
    /// absent when it is off (such destinations are then denied: the path cannot be seen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_inspection: Option<TlsInspectionDoc>,
}

/// The cluster's inspection CA and what it may not inspect.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsInspectionDoc {
    /// The cluster's CA certificate (PEM): what workloads trust, and the issuer of the leaf
    /// certificates the gateway presents.
    pub ca_certificate: String,
    /// Its private key (PEM, PKCS#8), for the gateways to sign leaves with. Never logged, and
    /// never written into a gateway's last-known-good file.
    pub ca_key: String,
    /// Host patterns never inspected (pinning-sensitive destinations): their path rules deny.
    #[serde(default)]
    pub never_inspect: Vec<String>,
}

impl std::fmt::Debug for TlsInspectionDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsInspectionDoc")
            .field("ca_certificate", &self.ca_certificate)
            .field("ca_key", &"(redacted)")
            .field("never_inspect", &self.never_inspect)
            .finish()
    }
}

/// The ingress side of a [`PolicyDocument`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressDoc {
    /// The cluster's IP allowlist. Empty admits no one on the public listeners.
    #[serde(default)]
    pub allowlist: Vec<AllowlistDoc>,
    /// Where the cluster's own SQL and UI listen, per region.
    #[serde(default)]
    pub workloads: Vec<WorkloadDoc>,
    /// Whether the public listeners are open (`network_visibility: PUBLIC`); a document that
    /// does not say is public.
    #[serde(default = "public_by_default")]
    pub public: bool,
    /// Endpoint ids (`vpce-...`) whose private endpoint connections the private ingress
    /// listener admits.
    #[serde(default)]
    pub private_endpoints: Vec<String>,
}

impl Default for IngressDoc {
    fn default() -> Self {
        Self {
            allowlist: Vec::new(),
            workloads: Vec::new(),
            public: true,
            private_endpoints: Vec::new(),
        }
    }
}

fn public_by_default() -> bool {
    true
}

/// One IP allowlist entry in an [`IngressDoc`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistDoc {
    /// A CIDR without host bits: `192.168.1.0/24`, `2001:db8::/32`.
    pub cidr: String,
    #[serde(default)]
    pub name: String,
    /// Admits on the SQL listener.
    pub sql: bool,
    /// Admits on the UI listener.
    pub ui: bool,
}

/// The workload addresses of one region in an [`IngressDoc`]: `host:port`, empty when unset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDoc {
    pub region: String,
    #[serde(default)]
    pub sql: String,
    #[serde(default)]
    pub ui: String,
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
    /// The cluster region whose gateways serve the endpoint's forwarder.
    #[serde(default)]
    pub region: String,
    /// The endpoint's connection id (`endpoint_connection_id`), carried to the service in the
    /// PROXY v2 header when the service asks for one.
    #[serde(default)]
    pub connection_id: String,
    /// The endpoint's own DNS name; may be empty.
    pub endpoint_address: String,
    /// Custom domain names routed to the endpoint: host patterns, `*.x.y` allowed.
    pub domain_names: Vec<String>,
    /// Where the endpoint's forwarder connects.
    pub backends: Vec<BackendDoc>,
    /// The ports the endpoint exposes, each reaching every backend whatever its own port (an
    /// MSK broker port); empty: each backend's own port reaches the backends on that port.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Open each backend connection with a PROXY protocol v2 header.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Its backends may be special addresses (loopback, private, CGNAT): a platform operator
    /// registered them so. Without it, forwarders dial public addresses only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub special_addresses: bool,
}

/// One backend of a private endpoint's service: `"host:port"`, or an object naming the TLS
/// server names it serves (`{"address": "host:port", "server_names": ["b-1.kafka.example"]}`),
/// by which connections are routed on their ClientHello's SNI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(into = "BackendRepr")]
pub struct BackendDoc {
    pub address: String,
    pub server_names: Vec<String>,
}

impl BackendDoc {
    /// A backend that takes every connection.
    pub fn plain(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            server_names: Vec::new(),
        }
    }
}

/// How a backend is written: the plain form when it names no server names.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum BackendRepr {
    Plain(String),
    Named {
        address: String,
        server_names: Vec<String>,
    },
}

impl From<BackendDoc> for BackendRepr {
    fn from(b: BackendDoc) -> Self {
        if b.server_names.is_empty() {
            BackendRepr::Plain(b.address)
        } else {
            BackendRepr::Named {
                address: b.address,
                server_names: b.server_names,
            }
        }
    }
}

/// Read by hand rather than as an untagged enum, so that a wrong key or type is named in the
/// error (`unknown field "adress", expected "address" or "server_names"`).
impl<'de> serde::Deserialize<'de> for BackendDoc {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            address: String,
            #[serde(default)]
            server_names: Vec<String>,
        }

        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = BackendDoc;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#""host:port" or {"address": "host:port", "server_names": ["name", ...]}"#,
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<BackendDoc, E> {
                Ok(BackendDoc::plain(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<BackendDoc, A::Error> {
                let n: Named = serde::Deserialize::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(BackendDoc {
                    address: n.address,
                    server_names: n.server_names,
                })
            }
        }

        d.deserialize_any(Visitor)
    }
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

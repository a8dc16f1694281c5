//! The messages between a gateway and the control plane, defined once: the control plane
//! (`perimeter-api`) answers and reads them, the gateway (`perimeter-gateway`) reads and sends
//! them. A field renamed, added or made optional here changes both sides at once.
//!
//! Three calls, each authenticated with the gateway's token (`Authorization: Bearer PRGW.…`):
//!
//! - `GET` [`SNAPSHOT_PATH`]`?after_version=&wait_seconds=`: the long-poll, answered with a
//!   [`SnapshotResponse`] (the policy document when newer, and the gateway's
//!   [`GatewayRegistration`]);
//! - `POST` [`ACK_PATH`] with an [`AckRequest`]: a version applied, or failed and why;
//! - `POST` [`DECISIONS_PATH`] with a [`PushDecisionsRequest`]: decision counts
//!   ([`DecisionCount`], with a [`Verdict`]) and private endpoint bytes ([`EndpointBytes`])
//!   since the last push.
//!
//! The crate holds types and their JSON only: no HTTP client or server, no runtime. With the
//! feature `schema`, the types derive `utoipa::ToSchema` for the control plane's OpenAPI
//! document.

use std::fmt;
use std::str::FromStr;

use perimeter_policy::PolicyDocument;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The snapshot long-poll (`GET`).
pub const SNAPSHOT_PATH: &str = "/api/v1/gateway/snapshot";
/// Acknowledgements of snapshot versions (`POST`).
pub const ACK_PATH: &str = "/api/v1/gateway/ack";
/// Pushes of decision counts (`POST`).
pub const DECISIONS_PATH: &str = "/api/v1/gateway/decisions";

// The answer to a snapshot long-poll. (Items that are schemas of the OpenAPI document carry
// the control plane's descriptions as doc comments; other notes are plain comments.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct SnapshotResponse {
    /// The cluster's current policy version.
    pub version: u64,
    /// The document at `version`, or null when it is not newer than `after_version` (the wait ended).
    #[cfg_attr(feature = "schema", schema(value_type = Option<Object>))]
    pub document: Option<PolicyDocument>,
    /// The asking gateway's registration. Its region labels the gateway's metrics and decision
    /// events; gateways keep it beside their last-known-good policy.
    // The control plane always sends it; a gateway reads its absence (a control plane older
    // than the registration) as `None`.
    #[serde(default)]
    #[cfg_attr(
        feature = "schema",
        schema(value_type = GatewayRegistration, required = true)
    )]
    pub gateway: Option<GatewayRegistration>,
}

/// Who a gateway is, as registered with `POST /api/v1/clusters/{cluster_id}/gateways`.
// The gateway also keeps it, as this JSON, in its state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct GatewayRegistration {
    // The gateway's id (the one its token `PRGW.<id>.<secret>` carries).
    pub id: String,
    pub cluster_id: String,
    // Unique in the cluster, e.g. the host the gateway runs on.
    pub name: String,
    // The region of the cluster the gateway serves: the `region` label of its decisions.
    pub region: String,
}

// A gateway's acknowledgement of a snapshot version. The gateway sends `error` always (null
// when applied) and `private_ingress_address` only when it has that listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    pub version: u64,
    pub applied: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// Where the gateway's private ingress listener is reached (`host:port` with an IP), when
    /// it has one: the backend of the cluster's private endpoint service in its region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ingress_address: Option<String>,
}

/// What the gateway decided about a connection or request, as the control plane counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// `ALLOWED`
    Allowed,
    /// `DENIED`
    Denied,
    /// `WOULD_DENY`: allowed under `REPORT_ONLY`; `DEFAULT_DENY` would have refused it.
    WouldDeny,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Allowed, Verdict::Denied, Verdict::WouldDeny];

    /// The wire string: `ALLOWED`, `DENIED` or `WOULD_DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "ALLOWED",
            Verdict::Denied => "DENIED",
            Verdict::WouldDeny => "WOULD_DENY",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the three verdicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verdict must be ALLOWED, DENIED or WOULD_DENY")]
pub struct UnknownVerdict;

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    fn from_str(s: &str) -> Result<Self, UnknownVerdict> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or(UnknownVerdict)
    }
}

impl Serialize for Verdict {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A string naming one of the verdicts; anything else is refused with [`UnknownVerdict`]'s
/// message, which the control plane reports on the field (`decisions[3].verdict`).
impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Verdict;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("ALLOWED, DENIED or WOULD_DENY")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Verdict, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

// Decisions of one kind since the last push: one (destination, port, verdict, rule, reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DecisionCount {
    pub destination: String,
    pub port: u16,
    /// `ALLOWED`, `DENIED` or `WOULD_DENY`.
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub verdict: Verdict,
    #[serde(default)]
    pub rule_name: String,
    pub reason: String,
    pub count: u64,
    #[serde(default)]
    pub bytes: u64,
    pub first_seen: String,
    pub last_seen: String,
}

// A gateway's push of what it decided and relayed since the last push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PushDecisionsRequest {
    #[serde(deserialize_with = "null_as_empty")]
    pub decisions: Vec<DecisionCount>,
    /// Bytes the gateway's forwarders relayed per private endpoint since the last push.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub endpoint_bytes: Vec<EndpointBytes>,
}

// Bytes a gateway's forwarders relayed for one private endpoint (both directions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EndpointBytes {
    pub endpoint_id: String,
    pub bytes: u64,
}

/// Read a JSON `null` as an empty array, as the published API's JSON front end reads repeated
/// fields (the official SDK sends `"roles": null` when it has none). A missing field stays an
/// error where the field is required (`#[serde(deserialize_with = ...)]` without `default`).
pub fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(<Option<Vec<T>> as Deserialize>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests;

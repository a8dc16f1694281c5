//! Rows as the store returns them. Enum-like columns are kept as the API's own strings (the
//! store validates nothing: the API parses at the boundary before anything reaches here).

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    pub role: String,
    /// `ORGANIZATION` or `CLUSTER`.
    pub resource_type: String,
    /// Empty for organization scope.
    pub resource_id: String,
}

#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub description: String,
    pub creator_name: String,
    pub created_at: String,
    pub roles: Vec<RoleBinding>,
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub service_account_id: String,
    pub name: String,
    pub created_at: String,
}

/// What an authenticated key may do: its account and the account's bindings.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub service_account_id: String,
    pub service_account_name: String,
    pub roles: Vec<RoleBinding>,
}

#[derive(Debug, Clone)]
pub struct Region {
    pub name: String,
    pub node_count: i64,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub plan: String,
    pub account_id: String,
    pub state: String,
    pub network_visibility: String,
    /// The configured egress policy: `ALLOW_ALL`, `DEFAULT_DENY` or `REPORT_ONLY`.
    pub egress_policy: String,
    /// True while gateways have not all applied `egress_policy`.
    pub egress_policy_updating: bool,
    /// An egress private endpoint of the cluster is being created, deleted or given domain
    /// names: with `egress_policy_updating`, what holds the cluster lock.
    pub endpoint_locked: bool,
    /// Snapshot version that carried the last traffic policy change, and when it was made.
    pub egress_policy_version: i64,
    pub egress_policy_changed_at: String,
    /// True while gateways have not all applied the latest allowlist change.
    pub allowlist_propagating: bool,
    pub allowlist_version: i64,
    pub allowlist_changed_at: String,
    /// True while gateways have not all applied the latest `network_visibility` change, made
    /// at `visibility_version`: it holds the cluster lock.
    pub visibility_changing: bool,
    pub visibility_version: i64,
    pub policy_version: i64,
    pub labels: BTreeMap<String, String>,
    pub hardware: serde_json::Value,
    pub cockroach_version: String,
    pub creator_id: String,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    pub regions: Vec<Region>,
    /// The functional roles the platform set, in purpose order (none once deleted).
    pub credential_roles: Vec<CredentialRole>,
}

/// A functional role: for one purpose (`backup`, `changefeed`), the role ARN template the
/// platform puts first in the cluster's role chains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRole {
    pub purpose: String,
    pub template: String,
}

/// A cluster's TLS inspection setting, as stored. `ca_key_sealed` is the CA's private key as the
/// control plane sealed it; the store never sees it in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsInspection {
    pub enabled: bool,
    /// PEM; kept when inspection is turned off.
    pub ca_certificate: String,
    pub ca_key_sealed: String,
    /// Host patterns never inspected, canonical, in the order given.
    pub never_inspect: Vec<String>,
    /// The latest change has not yet been applied by every live gateway.
    pub propagating: bool,
    /// The policy version of the latest change.
    pub changed_version: i64,
    pub changed_at: String,
}

impl std::fmt::Debug for TlsInspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsInspection")
            .field("enabled", &self.enabled)
            .field("ca_certificate", &self.ca_certificate)
            .field("ca_key_sealed", &"(sealed)")
            .field("never_inspect", &self.never_inspect)
            .field("propagating", &self.propagating)
            .field("changed_version", &self.changed_version)
            .field("changed_at", &self.changed_at)
            .finish()
    }
}

/// A new inspection CA for a cluster that has none: its certificate and its sealed key.
#[derive(Clone)]
pub struct NewInspectionCa {
    pub ca_certificate: String,
    pub ca_key_sealed: String,
}

impl Cluster {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct EgressRule {
    pub id: String,
    pub cluster_id: String,
    pub name: String,
    pub rule_type: perimeter_policy::RuleType,
    /// Of `rule_type`'s kind (the store refuses a row where they disagree).
    pub destination: perimeter_policy::RuleDestination,
    pub description: String,
    pub state: RuleState,
    pub crl_managed: bool,
    pub ports: Vec<u16>,
    pub paths: Vec<perimeter_policy::PathPattern>,
    /// Snapshot version that carried the rule's last change.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// Where an egress rule stands: pending until every live gateway applied its last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleState {
    PendingCreation,
    PendingUpdate,
    PendingDeletion,
    Active,
    Inconsistent,
    CreationFailed,
    UpdateFailed,
    DeletionFailed,
}

impl RuleState {
    pub const ALL: [RuleState; 8] = [
        RuleState::PendingCreation,
        RuleState::PendingUpdate,
        RuleState::PendingDeletion,
        RuleState::Active,
        RuleState::Inconsistent,
        RuleState::CreationFailed,
        RuleState::UpdateFailed,
        RuleState::DeletionFailed,
    ];

    /// The API's (and the store column's) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleState::PendingCreation => "PENDING_CREATION",
            RuleState::PendingUpdate => "PENDING_UPDATE",
            RuleState::PendingDeletion => "PENDING_DELETION",
            RuleState::Active => "ACTIVE",
            RuleState::Inconsistent => "INCONSISTENT",
            RuleState::CreationFailed => "CREATION_FAILED",
            RuleState::UpdateFailed => "UPDATE_FAILED",
            RuleState::DeletionFailed => "DELETION_FAILED",
        }
    }

    /// A rule no gateway ever applied: deleting it removes it at once, and editing it keeps
    /// it a creation.
    pub fn never_applied(self) -> bool {
        matches!(self, RuleState::PendingCreation | RuleState::CreationFailed)
    }
}

impl std::fmt::Display for RuleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RuleState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleState::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a rule state"))
    }
}

/// The validated content of an egress rule, for creates and edits.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub destination: perimeter_policy::RuleDestination,
    pub description: String,
    pub ports: Vec<u16>,
    pub paths: Vec<perimeter_policy::PathPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowlistEntry {
    pub cidr_ip: String,
    pub cidr_mask: i64,
    pub name: String,
    pub sql: bool,
    pub ui: bool,
}

/// Where a region's workload listens: `host:port`, `""` when unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionWorkload {
    pub region: String,
    pub sql: String,
    pub ui: String,
}

#[derive(Debug, Clone)]
pub struct EgressEndpoint {
    pub id: String,
    pub cluster_id: String,
    pub region: String,
    pub target_service_identifier: String,
    pub target_service_type: String,
    pub endpoint_connection_id: String,
    pub endpoint_address: String,
    pub state: String,
    /// Why the endpoint is in its state (ext; e.g. "no endpoint service named ... in us-east-1").
    pub state_reason: String,
    pub domain_names: Vec<String>,
    pub domain_names_state: String,
    pub created_at: String,
    pub updated_at: String,
    /// The policy version of the last change to the endpoint's routing: entering the snapshot
    /// (accepted), leaving it (failed, deleting). Its state follows the gateways' acknowledgements
    /// of that version.
    pub routed_version: i64,
    /// The policy version that carried the last change of `domain_names`.
    pub domain_names_version: i64,
    /// Bytes relayed through the endpoint's forwarders, both directions, as gateways pushed them.
    pub bytes_processed: i64,
    /// Who carries it (`local`, `aws`).
    pub provider: String,
    /// The provider's hosted zone of `endpoint_address` (alias records point into it).
    pub dns_zone_id: String,
    /// Domain names whose records exist at the provider.
    pub applied_domain_names: Vec<String>,
    /// The provider's DNS changes not yet in sync.
    pub domain_changes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct EndpointService {
    pub id: String,
    pub service_name: String,
    pub region: String,
    pub backends: Vec<perimeter_policy::BackendDoc>,
    /// Backend connections open with a PROXY protocol v2 header.
    pub proxy_protocol: bool,
    pub acceptance_required: bool,
    pub auto_accept_accounts: Vec<String>,
    pub acceptance_timeout_seconds: i64,
    pub created_at: String,
    /// A platform operator registered special-address backends explicitly.
    pub special_addresses: bool,
}

#[derive(Debug, Clone)]
pub struct EndpointConnection {
    pub id: String,
    pub service_id: String,
    pub cluster_id: String,
    pub account_id: String,
    pub egress_private_endpoint_id: String,
    pub status: String,
    pub expires_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct IngressService {
    pub region: String,
    pub endpoint_service_id: String,
    pub service_name: String,
    pub status: String,
    /// The snapshot version that put it in front of the gateways.
    pub routed_version: i64,
    /// Who carries it (`local`, `aws`), its state there (`""` on local), and the provider's last
    /// error.
    pub provider: String,
    pub provider_state: String,
    pub provider_reason: String,
    /// When this record of the service was made (a provider's create is named after it).
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct IngressConnection {
    pub endpoint_id: String,
    pub region: String,
    pub endpoint_service_id: String,
    pub service_name: String,
    pub status: String,
    /// The connecting endpoint's owner (an account id), `""` when it cannot be told.
    pub owner_account: String,
    /// The snapshot version that admitted it; 0 while it is not admitted.
    pub admitted_version: i64,
    /// Its state at the provider: `""` on local; AWS's `VpcEndpointState` on aws (`unseen`
    /// until AWS shows it).
    pub provider_state: String,
}

#[derive(Debug, Clone)]
pub struct TrustedOwner {
    pub id: String,
    pub cluster_id: String,
    pub owner_type: String,
    pub external_owner_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub id: String,
    pub created_at: String,
    pub action: String,
    pub cluster_id: String,
    pub cluster_name: String,
    pub service_account_id: String,
    pub service_account_name: String,
    pub source: String,
    pub payload: String,
    pub error: String,
}

// ---- row decoding -------------------------------------------------------------------------

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String> {
    row.try_get::<String, _>(col).map_err(|e| corrupt(col, e))
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    row.try_get::<Option<String>, _>(col)
        .map_err(|e| corrupt(col, e))
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64> {
    row.try_get::<i64, _>(col).map_err(|e| corrupt(col, e))
}

/// A counter column, read so that no stored value fails the read: SQLite turns an integer sum
/// that overflowed into a REAL, which is read saturated (a negative or non-finite one as 0).
pub(crate) fn counter(row: &AnyRow, col: &str) -> i64 {
    match row.try_get::<i64, _>(col) {
        Ok(n) => n.max(0),
        Err(_) => match row.try_get::<f64, _>(col) {
            Ok(f) if f.is_finite() && f > 0.0 => {
                if f >= i64::MAX as f64 {
                    i64::MAX
                } else {
                    f as i64
                }
            }
            _ => 0,
        },
    }
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool> {
    Ok(int(row, col)? != 0)
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T> {
    let raw = text(row, col)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt {
        table: "row",
        detail: format!("column {col}: {e}"),
    })
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serialising plain data cannot fail")
}

fn corrupt(col: &str, e: sqlx::Error) -> StoreError {
    StoreError::Corrupt {
        table: "row",
        detail: format!("column {col}: {e}"),
    }
}

/// A registered gateway and what it last acknowledged.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub id: String,
    pub cluster_id: String,
    pub region: String,
    pub name: String,
    pub created_at: String,
    pub last_seen_at: Option<String>,
    /// Highest snapshot version it applied (0: none).
    pub applied_version: i64,
    /// Latest version it failed to apply, with the error.
    pub failed_version: i64,
    pub last_error: String,
    /// Where its private ingress listener is reached, as it reports (`""` without one).
    pub private_ingress_address: String,
    /// Highest snapshot version the control plane delivered to it: what it may acknowledge.
    pub delivered_version: i64,
}

/// Aggregated decisions a gateway saw, pushed to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionAggregate {
    pub destination: String,
    pub port: i64,
    /// `ALLOWED`, `DENIED` or `WOULD_DENY`.
    pub verdict: String,
    pub rule_name: String,
    pub reason: String,
    pub count: i64,
    pub bytes: i64,
    pub first_seen: String,
    pub last_seen: String,
}

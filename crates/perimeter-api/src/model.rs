//! Wire shapes. Compat types keep the field names, required fields and quirks of the published
//! CockroachDB Cloud API (`Rule` vs `rule`, zero values emitted rather than omitted).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::Pagination;

// ---- identity -------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// `ORGANIZATION` or `CLUSTER`.
    #[serde(rename = "type")]
    pub resource_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A role binding (`BuiltInRole`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BuiltInRole {
    pub name: String,
    pub resource: Resource,
}

impl From<&perimeter_store::RoleBinding> for BuiltInRole {
    fn from(b: &perimeter_store::RoleBinding) -> Self {
        BuiltInRole {
            name: b.role.clone(),
            resource: Resource {
                resource_type: b.resource_type.clone(),
                id: (!b.resource_id.is_empty()).then(|| b.resource_id.clone()),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccount {
    pub id: String,
    pub name: String,
    pub description: String,
    pub creator_name: String,
    pub created_at: String,
    pub roles: Vec<BuiltInRole>,
    pub group_roles: Vec<serde_json::Value>,
}

impl From<perimeter_store::ServiceAccount> for ServiceAccount {
    fn from(s: perimeter_store::ServiceAccount) -> Self {
        ServiceAccount {
            roles: s.roles.iter().map(BuiltInRole::from).collect(),
            id: s.id,
            name: s.name,
            description: s.description,
            creator_name: s.creator_name,
            created_at: s.created_at,
            group_roles: vec![],
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListServiceAccountsResponse {
    pub service_accounts: Vec<ServiceAccount>,
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GetAllRolesForUserResponse {
    pub roles: Vec<BuiltInRole>,
    pub group_roles: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub service_account_id: String,
    pub name: String,
    pub created_at: String,
}

impl From<perimeter_store::ApiKey> for ApiKey {
    fn from(k: perimeter_store::ApiKey) -> Self {
        ApiKey {
            id: k.id,
            service_account_id: k.service_account_id,
            name: k.name,
            created_at: k.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateApiKeyResponse {
    pub api_key: ApiKey,
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListApiKeysResponse {
    pub api_keys: Vec<ApiKey>,
    pub pagination: Option<Pagination>,
}

// ---- clusters -------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct Region {
    pub name: String,
    pub sql_dns: String,
    pub ui_dns: String,
    pub internal_dns: String,
    pub private_endpoint_dns: String,
    pub node_count: i64,
    pub primary: bool,
    /// ext: `host:port` of the region's embedded egress gateway (HTTP proxy), empty until it runs.
    pub egress_proxy_address: String,
    /// ext: `host:port` of the region's embedded DNS listener (UDP and TCP), empty until it
    /// runs.
    pub dns_address: String,
    /// ext: `host:port` of the region's embedded public SQL ingress listener, empty until it
    /// runs.
    pub sql_ingress_address: String,
    /// ext: `host:port` of the region's embedded public UI ingress listener, empty until it
    /// runs.
    pub ui_ingress_address: String,
    /// ext: `host:port` of the region's embedded private ingress listener (PROXY protocol v2,
    /// private endpoint connections only), empty until it runs.
    pub private_ingress_address: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterConfig {
    pub dedicated: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub cockroach_version: String,
    pub upgrade_status: String,
    pub plan: String,
    pub cloud_provider: String,
    pub account_id: String,
    /// `CREATING|CREATED|CREATION_FAILED|DELETED|LOCKED`
    pub state: String,
    pub creator_id: String,
    pub operation_status: String,
    pub config: ClusterConfig,
    pub regions: Vec<Region>,
    pub cidr_range: String,
    pub labels: BTreeMap<String, String>,
    pub is_customer_cloud_account: bool,
    pub network_visibility: String,
    /// `ALLOW_ALL|DEFAULT_DENY|UPDATING|ERROR`, ext `REPORT_ONLY`.
    pub egress_traffic_policy: String,
    pub delete_protection: String,
    pub created_at: String,
    pub updated_at: String,
    pub deleted_at: Option<String>,
    /// ext: the functional roles the platform puts first in the cluster's role chains, by
    /// purpose (`backup`, `changefeed`): the role ARN a customer's role must trust. `{}` when
    /// none is set.
    pub credential_roles: BTreeMap<String, String>,
}

/// A stored functional role template's ARN for a cluster. The template was checked with this
/// cluster's id and account when it was set, and neither changes.
pub fn credential_role_arn(template: &str, cluster_id: &str, account_id: &str) -> String {
    let id = perimeter_creds::ClusterIdentity {
        cluster_id,
        account_id,
    };
    match template.parse::<perimeter_creds::RoleTemplate>() {
        Ok(t) => t.render(&id),
        // Not a template this build accepts: shown as stored rather than hidden.
        Err(_) => template.to_string(),
    }
}

impl From<perimeter_store::Cluster> for Cluster {
    fn from(c: perimeter_store::Cluster) -> Self {
        let short = &c.id[..8];
        let domain = "perimeter.internal";
        let regions = c
            .regions
            .iter()
            .enumerate()
            .map(|(i, r)| Region {
                sql_dns: format!("{}-{short}.{}.{domain}", c.name, r.name),
                ui_dns: format!("admin-{}-{short}.{}.{domain}", c.name, r.name),
                internal_dns: format!("internal-{}-{short}.{}.{domain}", c.name, r.name),
                private_endpoint_dns: format!("{}-{short}.private.{}.{domain}", c.name, r.name),
                name: r.name.clone(),
                node_count: r.node_count,
                primary: i == 0,
                egress_proxy_address: String::new(),
                dns_address: String::new(),
                sql_ingress_address: String::new(),
                ui_ingress_address: String::new(),
                private_ingress_address: String::new(),
            })
            .collect();
        let policy = if c.egress_policy_updating {
            "UPDATING".to_string()
        } else {
            c.egress_policy.clone()
        };
        let credential_roles = c
            .credential_roles
            .iter()
            .map(|r| {
                (
                    r.purpose.clone(),
                    credential_role_arn(&r.template, &c.id, &c.account_id),
                )
            })
            .collect();
        Cluster {
            credential_roles,
            id: c.id,
            name: c.name,
            cockroach_version: c.cockroach_version,
            upgrade_status: "FINALIZED".into(),
            plan: c.plan,
            cloud_provider: c.provider,
            account_id: c.account_id,
            // The reference's LOCKED: a networking operation holds the cluster lock.
            state: if c.state == "CREATED"
                && (c.egress_policy_updating || c.endpoint_locked || c.visibility_changing)
            {
                "LOCKED".to_string()
            } else {
                c.state
            },
            creator_id: c.creator_id,
            operation_status: "UNSPECIFIED".into(),
            config: ClusterConfig {
                dedicated: c.hardware,
            },
            regions,
            cidr_range: String::new(),
            labels: c.labels,
            is_customer_cloud_account: false,
            network_visibility: c.network_visibility,
            egress_traffic_policy: policy,
            delete_protection: "DISABLED".into(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListClustersResponse {
    pub clusters: Vec<Cluster>,
    pub pagination: Option<Pagination>,
}

// ---- allowlist ------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AllowlistEntry {
    pub cidr_ip: String,
    pub cidr_mask: i64,
    #[serde(default)]
    pub name: String,
    pub sql: bool,
    pub ui: bool,
}

impl From<perimeter_store::AllowlistEntry> for AllowlistEntry {
    fn from(e: perimeter_store::AllowlistEntry) -> Self {
        AllowlistEntry {
            cidr_ip: e.cidr_ip,
            cidr_mask: e.cidr_mask,
            name: e.name,
            sql: e.sql,
            ui: e.ui,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListAllowlistEntriesResponse {
    pub allowlist: Vec<AllowlistEntry>,
    pub propagating: bool,
    pub pagination: Option<Pagination>,
}

// ---- egress rules ---------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EgressRule {
    pub id: String,
    pub cluster_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub rule_type: String,
    pub state: String,
    pub crl_managed: bool,
    pub destination: String,
    pub ports: Vec<u16>,
    pub paths: Vec<String>,
    pub description: String,
    pub created_at: String,
}

impl From<perimeter_store::EgressRule> for EgressRule {
    fn from(r: perimeter_store::EgressRule) -> Self {
        EgressRule {
            id: r.id,
            cluster_id: r.cluster_id,
            name: r.name,
            rule_type: r.rule_type.as_str().to_string(),
            destination: r.destination.to_string(),
            description: r.description,
            state: r.state.as_str().to_string(),
            crl_managed: r.crl_managed,
            ports: r.ports,
            paths: r.paths.iter().map(ToString::to_string).collect(),
            created_at: r.created_at,
        }
    }
}

/// Add/Edit/Delete answer with the capitalised key `Rule` (a quirk of the published API).
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleResponse {
    #[serde(rename = "Rule")]
    pub rule: EgressRule,
    /// ext: advice that is not an error (all ports allowed, apex without wildcard twin).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GetEgressRuleResponse {
    pub rule: EgressRule,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListEgressRulesResponse {
    pub rules: Vec<EgressRule>,
    pub pagination: Option<Pagination>,
}

/// An empty object (`{}`), the answer of several compat routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct Empty {}

// ---- egress private endpoints ---------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct EgressPrivateEndpoint {
    pub id: String,
    pub endpoint_connection_id: String,
    pub region: String,
    pub target_service_identifier: String,
    pub target_service_type: String,
    pub endpoint_address: String,
    pub state: String,
    pub domain_names: Vec<String>,
    pub domain_names_state: String,
    /// ext: bytes relayed through the endpoint in both directions, summed over the gateways'
    /// pushes ("Private endpoint - bytes processed").
    pub bytes_processed: i64,
}

impl From<perimeter_store::EgressEndpoint> for EgressPrivateEndpoint {
    fn from(e: perimeter_store::EgressEndpoint) -> Self {
        EgressPrivateEndpoint {
            id: e.id,
            endpoint_connection_id: e.endpoint_connection_id,
            region: e.region,
            target_service_identifier: e.target_service_identifier,
            target_service_type: e.target_service_type,
            endpoint_address: e.endpoint_address,
            state: e.state,
            domain_names: e.domain_names,
            domain_names_state: e.domain_names_state,
            bytes_processed: e.bytes_processed,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListEgressPrivateEndpointsResponse {
    pub egress_private_endpoints: Vec<EgressPrivateEndpoint>,
    pub pagination: Option<Pagination>,
}

// ---- endpoint services (ext) ----------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointService {
    pub id: String,
    pub service_name: String,
    pub region: String,
    /// `"host:port"`, or `{"address", "server_names"}` for a backend routed by TLS SNI.
    #[schema(value_type = Vec<Object>)]
    pub backends: Vec<perimeter_policy::BackendDoc>,
    pub proxy_protocol: bool,
    pub acceptance_required: bool,
    pub auto_accept_accounts: Vec<String>,
    pub acceptance_timeout_seconds: i64,
    pub created_at: String,
    /// Its backends may be special addresses (loopback, private, CGNAT): a platform operator
    /// registered them so.
    pub allow_special_addresses: bool,
}

impl From<perimeter_store::EndpointService> for EndpointService {
    fn from(s: perimeter_store::EndpointService) -> Self {
        EndpointService {
            id: s.id,
            service_name: s.service_name,
            region: s.region,
            backends: s.backends,
            proxy_protocol: s.proxy_protocol,
            acceptance_required: s.acceptance_required,
            auto_accept_accounts: s.auto_accept_accounts,
            acceptance_timeout_seconds: s.acceptance_timeout_seconds,
            created_at: s.created_at,
            allow_special_addresses: s.special_addresses,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListEndpointServicesResponse {
    pub endpoint_services: Vec<EndpointService>,
    pub pagination: Option<Pagination>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointConnection {
    pub id: String,
    pub cluster_id: String,
    pub account_id: String,
    pub egress_private_endpoint_id: String,
    /// `PENDING_ACCEPTANCE | AVAILABLE | REJECTED | EXPIRED | DELETED`
    pub status: String,
    pub created_at: String,
}

impl From<perimeter_store::EndpointConnection> for EndpointConnection {
    fn from(c: perimeter_store::EndpointConnection) -> Self {
        EndpointConnection {
            id: c.id,
            cluster_id: c.cluster_id,
            account_id: c.account_id,
            egress_private_endpoint_id: c.egress_private_endpoint_id,
            status: c.status,
            created_at: c.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListConnectionsResponse {
    pub connections: Vec<EndpointConnection>,
    pub pagination: Option<Pagination>,
}

// ---- ingress private endpoints --------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct AwsPrivateLinkServiceDetail {
    pub service_name: String,
    pub service_id: String,
    pub availability_zone_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrivateEndpointService {
    pub region_name: String,
    pub cloud_provider: String,
    /// `CREATING | AVAILABLE | CREATE_FAILED | DELETING | DELETE_FAILED`
    pub status: String,
    pub name: String,
    pub endpoint_service_id: String,
    pub availability_zone_ids: Vec<String>,
    pub aws: Option<AwsPrivateLinkServiceDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrivateEndpointServices {
    pub services: Vec<PrivateEndpointService>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrivateEndpointConnection {
    pub region_name: String,
    pub cloud_provider: String,
    pub status: String,
    pub endpoint_id: String,
    pub endpoint_service_id: String,
    pub service_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrivateEndpointConnections {
    pub connections: Vec<PrivateEndpointConnection>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PrivateEndpointTrustedOwner {
    pub id: String,
    pub cluster_id: String,
    #[serde(rename = "type")]
    pub owner_type: String,
    pub external_owner_id: String,
    pub created_at: String,
}

impl From<perimeter_store::TrustedOwner> for PrivateEndpointTrustedOwner {
    fn from(o: perimeter_store::TrustedOwner) -> Self {
        PrivateEndpointTrustedOwner {
            id: o.id,
            cluster_id: o.cluster_id,
            owner_type: o.owner_type,
            external_owner_id: o.external_owner_id,
            created_at: o.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListPrivateEndpointTrustedOwnersResponse {
    pub trusted_owners: Vec<PrivateEndpointTrustedOwner>,
}

/// Add/Get/Remove trusted owner responses share this shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrustedOwnerResponse {
    pub trusted_owner: PrivateEndpointTrustedOwner,
}

// ---- audit ----------------------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLogEntry {
    pub id: String,
    pub created_at: String,
    pub action: String,
    pub cluster_id: String,
    pub cluster_name: String,
    /// ext: the id of the service account that made the change (empty for the platform's own
    /// changes and for entries written before ids were recorded). Names may be reused after a
    /// deletion; the id identifies the account.
    pub service_account_id: String,
    pub service_account_name: String,
    pub user_email: String,
    pub source: String,
    pub payload: String,
    pub error: String,
}

impl From<perimeter_store::AuditRecord> for AuditLogEntry {
    fn from(a: perimeter_store::AuditRecord) -> Self {
        AuditLogEntry {
            id: a.id,
            created_at: a.created_at,
            action: a.action,
            cluster_id: a.cluster_id,
            cluster_name: a.cluster_name,
            service_account_id: a.service_account_id,
            service_account_name: a.service_account_name,
            user_email: String::new(),
            source: a.source,
            payload: a.payload,
            error: a.error,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListAuditLogsResponse {
    pub entries: Vec<AuditLogEntry>,
    pub next_starting_from: Option<String>,
}

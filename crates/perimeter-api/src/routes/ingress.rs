//! Ingress private endpoints: the cluster's endpoint services, customers' connections to them,
//! and the owners trusted to connect.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, ClusterScope, access, agrees, uuid_param};
use crate::model::{
    AwsPrivateLinkServiceDetail, Empty, ListPrivateEndpointTrustedOwnersResponse,
    PrivateEndpointConnection, PrivateEndpointConnections, PrivateEndpointService,
    PrivateEndpointServices, TrustedOwnerResponse,
};
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_services, create_services))
        .routes(routes!(list_connections, add_connection))
        .routes(routes!(delete_connection))
        .routes(routes!(list_owners, add_owner))
        .routes(routes!(get_owner, remove_owner))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPrivateEndpointConnectionRequest {
    /// The customer's endpoint id (e.g. `vpce-0123456789abcdef0`).
    pub endpoint_id: String,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddPrivateEndpointTrustedOwnerRequest {
    /// `AWS_ACCOUNT_ID`
    #[serde(rename = "type")]
    pub owner_type: String,
    /// A 12-digit AWS account id, or `*` for every owner.
    pub external_owner_id: String,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

async fn provider_of(st: &AppState, cluster_id: &str) -> ApiResult<String> {
    Ok(st.store.get_live_cluster(cluster_id).await?.provider)
}

fn service_view(provider: &str, s: perimeter_store::IngressService) -> PrivateEndpointService {
    PrivateEndpointService {
        region_name: s.region,
        cloud_provider: provider.to_string(),
        status: s.status,
        name: s.service_name.clone(),
        endpoint_service_id: s.endpoint_service_id.clone(),
        availability_zone_ids: vec![],
        aws: (provider == "AWS").then(|| AwsPrivateLinkServiceDetail {
            service_name: s.service_name,
            service_id: s.endpoint_service_id,
            availability_zone_ids: vec![],
        }),
    }
}

fn connection_view(
    provider: &str,
    c: perimeter_store::IngressConnection,
) -> PrivateEndpointConnection {
    PrivateEndpointConnection {
        region_name: c.region,
        cloud_provider: provider.to_string(),
        status: c.status,
        endpoint_id: c.endpoint_id,
        endpoint_service_id: c.endpoint_service_id,
        service_name: c.service_name,
    }
}

/// The cluster's private endpoint services, one per region.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-services", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = PrivateEndpointServices), (status = "default", body = crate::error::Status)))]
async fn list_services(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
) -> ApiResult<Json<PrivateEndpointServices>> {
    let provider = provider_of(&st, &cluster_id).await?;
    let services = st.store.list_ingress_services(&cluster_id).await?;
    Ok(Json(PrivateEndpointServices {
        services: services
            .into_iter()
            .map(|s| service_view(&provider, s))
            .collect(),
    }))
}

/// Create the cluster's private endpoint services (state `CREATING` until the ingress listener serves them).
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-services", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = PrivateEndpointServices), (status = "default", body = crate::error::Status)))]
async fn create_services(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
) -> ApiResult<Json<PrivateEndpointServices>> {
    let provider = provider_of(&st, &cluster_id).await?;
    let payload = serde_json::json!({"cluster_id": cluster_id});
    let services = st
        .store
        .create_ingress_services(
            &cluster_id,
            &audit(&p, "AUDIT_LOG_ACTION_CREATE_PRIVATE_LINK", &payload),
        )
        .await?;
    st.changed();
    Ok(Json(PrivateEndpointServices {
        services: services
            .into_iter()
            .map(|s| service_view(&provider, s))
            .collect(),
    }))
}

/// Customers' endpoints connected to the cluster's services.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-connections", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = PrivateEndpointConnections), (status = "default", body = crate::error::Status)))]
async fn list_connections(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
) -> ApiResult<Json<PrivateEndpointConnections>> {
    let provider = provider_of(&st, &cluster_id).await?;
    let conns = st.store.list_ingress_connections(&cluster_id).await?;
    Ok(Json(PrivateEndpointConnections {
        connections: conns
            .into_iter()
            .map(|c| connection_view(&provider, c))
            .collect(),
    }))
}

/// Register a customer endpoint with the cluster's service.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-connections", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path)), request_body = AddPrivateEndpointConnectionRequest,
    responses((status = 200, body = PrivateEndpointConnection), (status = "default", body = crate::error::Status)))]
async fn add_connection(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    AppJson(req): AppJson<AddPrivateEndpointConnectionRequest>,
) -> ApiResult<Json<PrivateEndpointConnection>> {
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    let id = &req.endpoint_id;
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::invalid(
            "endpoint_id",
            "endpoint_id must be 1-128 characters of letters, digits, '-' or '_' (e.g. vpce-0123456789abcdef0)",
        ));
    }
    let provider = provider_of(&st, &cluster_id).await?;
    let c = st
        .store
        .add_ingress_connection(
            &cluster_id,
            id,
            &audit(&p, "AUDIT_LOG_ACTION_ACCEPT_PRIVATE_LINK", &req),
        )
        .await?;
    st.changed();
    Ok(Json(connection_view(&provider, c)))
}

/// Remove a customer endpoint's connection.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-connections/{endpoint_id}", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path), ("endpoint_id" = String, Path)),
    responses((status = 200, body = Empty), (status = "default", body = crate::error::Status)))]
async fn delete_connection(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    Path((_, endpoint_id)): Path<(String, String)>,
) -> ApiResult<Json<Empty>> {
    st.store.get_live_cluster(&cluster_id).await?;
    let payload = serde_json::json!({"endpoint_id": endpoint_id});
    st.store
        .delete_ingress_connection(
            &cluster_id,
            &endpoint_id,
            &audit(&p, "AUDIT_LOG_ACTION_REJECT_PRIVATE_LINK", &payload),
        )
        .await?;
    st.changed();
    Ok(Json(Empty {}))
}

/// Owners trusted to connect private endpoints to the cluster.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-trusted-owners", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = ListPrivateEndpointTrustedOwnersResponse), (status = "default", body = crate::error::Status)))]
async fn list_owners(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
) -> ApiResult<Json<ListPrivateEndpointTrustedOwnersResponse>> {
    let owners = st.store.list_trusted_owners(&cluster_id).await?;
    Ok(Json(ListPrivateEndpointTrustedOwnersResponse {
        trusted_owners: owners.into_iter().map(Into::into).collect(),
    }))
}

/// Trust an owner.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-trusted-owners", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path)), request_body = AddPrivateEndpointTrustedOwnerRequest,
    responses((status = 200, body = TrustedOwnerResponse), (status = "default", body = crate::error::Status)))]
async fn add_owner(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::TrustedOwners>,
    AppJson(req): AppJson<AddPrivateEndpointTrustedOwnerRequest>,
) -> ApiResult<Json<TrustedOwnerResponse>> {
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    if req.owner_type != "AWS_ACCOUNT_ID" {
        return Err(ApiError::invalid(
            "type",
            format!(
                "type: {:?} is not supported; use AWS_ACCOUNT_ID",
                req.owner_type
            ),
        ));
    }
    let ext = &req.external_owner_id;
    if !(ext == "*" || (ext.len() == 12 && ext.chars().all(|c| c.is_ascii_digit()))) {
        return Err(ApiError::invalid(
            "external_owner_id",
            format!("external_owner_id: {ext:?} must be a 12-digit AWS account id or \"*\""),
        ));
    }
    st.store.get_live_cluster(&cluster_id).await?;
    let o = st
        .store
        .add_trusted_owner(
            &cluster_id,
            &req.owner_type,
            ext,
            &audit(
                &p,
                "AUDIT_LOG_ACTION_ADD_PRIVATE_ENDPOINT_TRUSTED_OWNER",
                &req,
            ),
        )
        .await?;
    st.changed();
    Ok(Json(TrustedOwnerResponse {
        trusted_owner: o.into(),
    }))
}

/// Get a trusted owner.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-trusted-owners/{owner_id}", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path), ("owner_id" = String, Path)),
    responses((status = 200, body = TrustedOwnerResponse), (status = "default", body = crate::error::Status)))]
async fn get_owner(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    Path((_, owner_id)): Path<(String, String)>,
) -> ApiResult<Json<TrustedOwnerResponse>> {
    uuid_param("owner_id", &owner_id)?;
    Ok(Json(TrustedOwnerResponse {
        trusted_owner: st
            .store
            .get_trusted_owner(&cluster_id, &owner_id)
            .await?
            .into(),
    }))
}

/// Stop trusting an owner; answers with the removed owner.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}/networking/private-endpoint-trusted-owners/{owner_id}", tag = "Ingress private endpoints",
    params(("cluster_id" = String, Path), ("owner_id" = String, Path)),
    responses((status = 200, body = TrustedOwnerResponse), (status = "default", body = crate::error::Status)))]
async fn remove_owner(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::TrustedOwners>,
    Path((_, owner_id)): Path<(String, String)>,
) -> ApiResult<Json<TrustedOwnerResponse>> {
    uuid_param("owner_id", &owner_id)?;
    st.store.get_live_cluster(&cluster_id).await?;
    let payload = serde_json::json!({"owner_id": owner_id});
    let o = st
        .store
        .remove_trusted_owner(
            &cluster_id,
            &owner_id,
            &audit(
                &p,
                "AUDIT_LOG_ACTION_REMOVE_PRIVATE_ENDPOINT_TRUSTED_OWNER",
                &payload,
            ),
        )
        .await?;
    st.changed();
    Ok(Json(TrustedOwnerResponse {
        trusted_owner: o.into(),
    }))
}

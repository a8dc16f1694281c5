//! Egress private endpoints of a cluster, and the `local` provider's endpoint services (the
//! service owner's side: registration, connections, acceptance).

use axum::Json;
use axum::extract::{Path, State};
use perimeter_policy::{
    Provider, validate_domain_names, validate_endpoint_target, validate_region,
};
use perimeter_store::NewEndpointService;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Need, require};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, Auth, ClusterScope, PageQuery, Query, access, agrees, uuid_param};
use crate::model::{
    EgressPrivateEndpoint, Empty, EndpointConnection, EndpointService, ListConnectionsResponse,
    ListEgressPrivateEndpointsResponse, ListEndpointServicesResponse,
};
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(update_domain_names))
        .routes(routes!(list_services, create_service))
        .routes(routes!(get_service, delete_service))
        .routes(routes!(list_connections))
        .routes(routes!(accept_connection))
        .routes(routes!(reject_connection))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEgressPrivateEndpointRequest {
    pub region: String,
    pub target_service_identifier: String,
    /// `PRIVATE_SERVICE | MSK_SASL_SCRAM | MSK_SASL_IAM | MSK_TLS`
    pub target_service_type: String,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEgressPrivateEndpointRequest {
    #[serde(deserialize_with = "crate::extract::null_as_empty")]
    pub domain_names: Vec<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub endpoint_id: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpointServiceRequest {
    /// e.g. `com.amazonaws.vpce.us-east-1.vpce-svc-example`: what endpoints name as `target_service_identifier`.
    pub service_name: String,
    pub region: String,
    /// What the service's forwarders dial: `"host:port"`, or `{"address": "host:port",
    /// "server_names": [...]}` for a backend that serves those TLS server names (several
    /// brokers behind one service, routed by SNI).
    #[schema(value_type = Vec<Object>)]
    #[serde(deserialize_with = "crate::extract::null_as_empty")]
    pub backends: Vec<perimeter_policy::BackendDoc>,
    /// Open each backend connection with a PROXY protocol v2 header carrying the client address
    /// and the endpoint's connection id (TLV 0xEA/0x01), as an AWS NLB does.
    #[serde(default)]
    pub proxy_protocol: bool,
    #[serde(default)]
    pub acceptance_required: bool,
    /// Cluster `account_id`s accepted at once when acceptance is required.
    #[serde(default, deserialize_with = "crate::extract::null_as_empty")]
    pub auto_accept_accounts: Vec<String>,
    /// How long a connection may wait for acceptance (default 7 days).
    #[serde(default)]
    pub acceptance_timeout_seconds: Option<i64>,
    /// Let backends be special addresses (loopback, private, CGNAT), which the address guard
    /// refuses otherwise, at registration and when forwarders dial. PLATFORM_OPERATOR only.
    #[serde(default)]
    pub allow_special_addresses: bool,
}

const DEFAULT_ACCEPTANCE_TIMEOUT: i64 = 7 * 24 * 3600;

/// Create an egress private endpoint (state `PENDING`).
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints", tag = "Egress private endpoints",
    params(("cluster_id" = String, Path)), request_body = CreateEgressPrivateEndpointRequest,
    responses((status = 200, body = EgressPrivateEndpoint), (status = "default", body = crate::error::Status)))]
async fn create_endpoint(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    AppJson(req): AppJson<CreateEgressPrivateEndpointRequest>,
) -> ApiResult<Json<EgressPrivateEndpoint>> {
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    let cluster = st.store.get_live_cluster(&cluster_id).await?;
    let provider: Provider = cluster.provider.parse().map_err(ApiError::internal)?;
    let kind = validate_endpoint_target(
        provider,
        &req.region,
        &req.target_service_type,
        &req.target_service_identifier,
    )?;
    let ep = st
        .store
        .create_endpoint(
            &cluster_id,
            &req.region,
            &req.target_service_identifier,
            kind.as_str(),
            &audit(&p, "AUDIT_LOG_ACTION_CREATE_EGRESS_PRIVATE_ENDPOINT", &req),
        )
        .await?;
    st.changed();
    Ok(Json(ep.into()))
}

/// List a cluster's egress private endpoints.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints", tag = "Egress private endpoints",
    params(("cluster_id" = String, Path), PageQuery),
    responses((status = 200, body = ListEgressPrivateEndpointsResponse), (status = "default", body = crate::error::Status)))]
async fn list_endpoints(
    State(st): State<AppState>,
    ClusterScope {
        principal,
        cluster_id,
        ..
    }: ClusterScope<access::ReadEndpoints>,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListEgressPrivateEndpointsResponse>> {
    let paging = pq
        .paging(
            &st.store,
            &principal,
            &format!("clusters/{cluster_id}/egress-private-endpoints"),
            &[],
        )
        .await?;
    st.store.get_live_cluster(&cluster_id).await?;
    let page = st.store.list_endpoints(&cluster_id, &paging.req).await?;
    let pagination = paging.pagination(&page);
    Ok(Json(ListEgressPrivateEndpointsResponse {
        egress_private_endpoints: page.items.into_iter().map(Into::into).collect(),
        pagination,
    }))
}

/// Get one egress private endpoint.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints/{id}", tag = "Egress private endpoints",
    params(("cluster_id" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = EgressPrivateEndpoint), (status = "default", body = crate::error::Status)))]
async fn get_endpoint(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadEndpoints>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<EgressPrivateEndpoint>> {
    uuid_param("id", &id)?;
    st.store.get_live_cluster(&cluster_id).await?;
    Ok(Json(st.store.get_endpoint(&cluster_id, &id).await?.into()))
}

async fn set_domains(
    st: &AppState,
    p: &perimeter_store::Principal,
    cluster_id: &str,
    id: &str,
    req: &UpdateEgressPrivateEndpointRequest,
) -> ApiResult<perimeter_store::EgressEndpoint> {
    uuid_param("cluster_id", cluster_id)?;
    uuid_param("id", id)?;
    agrees("cluster_id", &req.cluster_id, cluster_id)?;
    agrees("endpoint_id", &req.endpoint_id, id)?;
    agrees("id", &req.id, id)?;
    let names = validate_domain_names(&req.domain_names)?;
    require(p, Need::WriteNetworking, Some(cluster_id))?;
    st.store.get_live_cluster(cluster_id).await?;
    let set = st
        .store
        .set_domain_names(
            cluster_id,
            id,
            &names,
            &audit(p, "AUDIT_LOG_ACTION_UPDATE_EGRESS_PRIVATE_ENDPOINT", req),
        )
        .await;
    // The store names a place in the list as checked (canonical, without repeats): name the
    // place of that name in the request instead.
    let ep = match set {
        Err(perimeter_store::StoreError::Precondition { field, message })
            if field.starts_with("domain_names[") =>
        {
            let checked = field
                .trim_start_matches("domain_names[")
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .and_then(|i| names.get(i));
            let sent = checked.and_then(|name| {
                req.domain_names.iter().position(|raw| {
                    validate_domain_names(std::slice::from_ref(raw))
                        .is_ok_and(|c| c.first() == Some(name))
                })
            });
            let field = sent.map_or(field, |i| format!("domain_names[{i}]"));
            return Err(ApiError::from(perimeter_store::StoreError::Precondition {
                field,
                message,
            }));
        }
        other => other?,
    };
    st.changed();
    Ok(ep)
}

/// Set the custom domain names of an `AVAILABLE` endpoint.
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints/{id}", tag = "Egress private endpoints",
    params(("cluster_id" = String, Path), ("id" = String, Path)), request_body = UpdateEgressPrivateEndpointRequest,
    responses((status = 200, body = EgressPrivateEndpoint), (status = "default", body = crate::error::Status)))]
async fn update_endpoint(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((cluster_id, id)): Path<(String, String)>,
    AppJson(req): AppJson<UpdateEgressPrivateEndpointRequest>,
) -> ApiResult<Json<EgressPrivateEndpoint>> {
    Ok(Json(
        set_domains(&st, &p, &cluster_id, &id, &req).await?.into(),
    ))
}

/// Deprecated twin of the PATCH above; answers `{}`.
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints/{id}/domain-names", tag = "Egress private endpoints",
    params(("cluster_id" = String, Path), ("id" = String, Path)), request_body = UpdateEgressPrivateEndpointRequest,
    responses((status = 200, body = Empty), (status = "default", body = crate::error::Status)))]
async fn update_domain_names(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((cluster_id, id)): Path<(String, String)>,
    AppJson(req): AppJson<UpdateEgressPrivateEndpointRequest>,
) -> ApiResult<Json<Empty>> {
    set_domains(&st, &p, &cluster_id, &id, &req).await?;
    Ok(Json(Empty {}))
}

/// Delete an egress private endpoint: `DELETING`, then gone.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints/{id}", tag = "Egress private endpoints",
    params(("cluster_id" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Empty), (status = "default", body = crate::error::Status)))]
async fn delete_endpoint(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Empty>> {
    uuid_param("id", &id)?;
    st.store.get_live_cluster(&cluster_id).await?;
    let payload = serde_json::json!({"id": id});
    st.store
        .delete_endpoint(
            &cluster_id,
            &id,
            &audit(
                &p,
                "AUDIT_LOG_ACTION_DELETE_EGRESS_PRIVATE_ENDPOINT",
                &payload,
            ),
        )
        .await?;
    st.changed();
    Ok(Json(Empty {}))
}

// ---- endpoint services (ext) ----------------------------------------------------------------

fn validate_service(
    req: &CreateEndpointServiceRequest,
    platform: &[std::net::SocketAddr],
) -> ApiResult<()> {
    let n = &req.service_name;
    if n.is_empty() || n.len() > 255 || n.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ApiError::invalid(
            "service_name",
            "service_name must be 1-255 characters without spaces",
        ));
    }
    let known = [Provider::Aws, Provider::Gcp, Provider::Azure]
        .into_iter()
        .any(|pr| validate_region(pr, &req.region, "region").is_ok());
    if !known {
        validate_region(Provider::Aws, &req.region, "region")?;
    }
    if req.backends.is_empty() || req.backends.len() > 64 {
        return Err(ApiError::invalid(
            "backends",
            "backends must list 1 to 64 host:port addresses",
        ));
    }
    for (i, backend) in req.backends.iter().enumerate() {
        // The plain string form is the field itself; the object form has `address`.
        let field = if backend.server_names.is_empty() {
            format!("backends[{i}]")
        } else {
            format!("backends[{i}].address")
        };
        let b = &backend.address;
        let (host, port) = b.rsplit_once(':').ok_or_else(|| {
            ApiError::invalid(&field, format!("{field}: {b:?} must be host:port"))
        })?;
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                host.parse::<std::net::Ipv4Addr>().is_ok()
                    || host.parse::<perimeter_policy::Hostname>().is_ok()
            }
        };
        if !port_ok || !host_ok {
            return Err(ApiError::invalid(
                &field,
                format!(
                    "{field}: {b:?} must be host:port with a valid host ([v6] in brackets) and a port 1-65535"
                ),
            ));
        }
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>();
        if let Ok(ip) = ip {
            let ip = ip.to_canonical();
            let class = perimeter_policy::classify(ip);
            if class.refused_as_backend() {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "{field}: {b:?} is a {} address, which forwarders never dial",
                        class.as_str()
                    ),
                ));
            }
            let port: u16 = port.parse().unwrap_or_default();
            if platform.iter().any(|p| {
                p.port() == port && (p.ip().is_unspecified() || p.ip().to_canonical() == ip)
            }) {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "{field}: {b:?} is one of the platform's own listeners, which forwarders never dial"
                    ),
                ));
            }
            if class != perimeter_policy::AddrClass::Public && !req.allow_special_addresses {
                return Err(ApiError::invalid(
                    &field,
                    format!(
                        "{field}: {b:?} is a {} address, which the address guard refuses; a PLATFORM_OPERATOR may register it with allow_special_addresses: true",
                        class.as_str()
                    ),
                ));
            }
        }
        if backend.server_names.len() > 100 {
            return Err(ApiError::invalid(
                format!("backends[{i}].server_names"),
                "a backend may name at most 100 server names",
            ));
        }
        for (j, name) in backend.server_names.iter().enumerate() {
            let field = format!("backends[{i}].server_names[{j}]");
            name.parse::<perimeter_policy::HostPattern>()
                .map_err(|e| ApiError::invalid(&field, format!("{field}: {e}")))?;
        }
    }
    for (i, account) in req.auto_accept_accounts.iter().enumerate() {
        let field = format!("auto_accept_accounts[{i}]");
        if account == "*" {
            return Err(ApiError::invalid(
                &field,
                format!(
                    "{field}: \"*\" would accept every account; list the account ids to accept"
                ),
            ));
        }
        if account.is_empty()
            || account.len() > 128
            || !account
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        {
            return Err(ApiError::invalid(
                &field,
                format!(
                    "{field}: {account:?} must be an account id: 1-128 letters, digits, '-', '_', '.' or ':'"
                ),
            ));
        }
    }
    if let Some(t) = req.acceptance_timeout_seconds
        && !(1..=90 * 24 * 3600).contains(&t)
    {
        return Err(ApiError::invalid(
            "acceptance_timeout_seconds",
            "acceptance_timeout_seconds must be 1 to 7776000 (90 days)",
        ));
    }
    Ok(())
}

/// Register an endpoint service of the `local` provider.
#[utoipa::path(post, path = "/api/v1/endpoint-services", tag = "Endpoint services", request_body = CreateEndpointServiceRequest,
    responses((status = 200, body = EndpointService), (status = "default", body = crate::error::Status)))]
async fn create_service(
    State(st): State<AppState>,
    Auth(p): Auth,
    AppJson(req): AppJson<CreateEndpointServiceRequest>,
) -> ApiResult<Json<EndpointService>> {
    require(&p, Need::EndpointServices, None)?;
    if req.allow_special_addresses {
        require(&p, Need::SpecialBackends, None)?;
    }
    validate_service(&req, &st.platform_listeners())?;
    let new = NewEndpointService {
        service_name: req.service_name.clone(),
        region: req.region.clone(),
        backends: req.backends.clone(),
        proxy_protocol: req.proxy_protocol,
        acceptance_required: req.acceptance_required,
        auto_accept_accounts: req.auto_accept_accounts.clone(),
        acceptance_timeout_seconds: req
            .acceptance_timeout_seconds
            .unwrap_or(DEFAULT_ACCEPTANCE_TIMEOUT),
        special_addresses: req.allow_special_addresses,
    };
    let s = st
        .store
        .create_endpoint_service(
            &new,
            &audit(&p, "AUDIT_LOG_ACTION_CREATE_ENDPOINT_SERVICE", &req),
        )
        .await?;
    st.changed();
    Ok(Json(s.into()))
}

/// List endpoint services.
#[utoipa::path(get, path = "/api/v1/endpoint-services", tag = "Endpoint services", params(PageQuery),
    responses((status = 200, body = ListEndpointServicesResponse), (status = "default", body = crate::error::Status)))]
async fn list_services(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListEndpointServicesResponse>> {
    let paging = pq.paging(&st.store, &p, "endpoint-services", &[]).await?;
    require(&p, Need::EndpointServices, None)?;
    let page = st.store.list_endpoint_services(&paging.req).await?;
    let pagination = paging.pagination(&page);
    Ok(Json(ListEndpointServicesResponse {
        endpoint_services: page.items.into_iter().map(Into::into).collect(),
        pagination,
    }))
}

/// Get an endpoint service.
#[utoipa::path(get, path = "/api/v1/endpoint-services/{id}", tag = "Endpoint services", params(("id" = String, Path)),
    responses((status = 200, body = EndpointService), (status = "default", body = crate::error::Status)))]
async fn get_service(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointService>> {
    uuid_param("id", &id)?;
    require(&p, Need::EndpointServices, None)?;
    Ok(Json(st.store.get_endpoint_service(&id).await?.into()))
}

/// Delete an endpoint service that no live endpoint uses.
#[utoipa::path(delete, path = "/api/v1/endpoint-services/{id}", tag = "Endpoint services", params(("id" = String, Path)),
    responses((status = 200, body = EndpointService), (status = "default", body = crate::error::Status)))]
async fn delete_service(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointService>> {
    uuid_param("id", &id)?;
    require(&p, Need::EndpointServices, None)?;
    let payload = serde_json::json!({"id": id});
    let s = st
        .store
        .delete_endpoint_service(
            &id,
            &audit(&p, "AUDIT_LOG_ACTION_DELETE_ENDPOINT_SERVICE", &payload),
        )
        .await?;
    Ok(Json(s.into()))
}

/// Connections from egress private endpoints to a service.
#[utoipa::path(get, path = "/api/v1/endpoint-services/{id}/connections", tag = "Endpoint services",
    params(("id" = String, Path), PageQuery),
    responses((status = 200, body = ListConnectionsResponse), (status = "default", body = crate::error::Status)))]
async fn list_connections(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListConnectionsResponse>> {
    uuid_param("id", &id)?;
    let paging = pq
        .paging(
            &st.store,
            &p,
            &format!("endpoint-services/{id}/connections"),
            &[],
        )
        .await?;
    require(&p, Need::EndpointServices, None)?;
    let page = st.store.list_connections(&id, &paging.req).await?;
    let pagination = paging.pagination(&page);
    Ok(Json(ListConnectionsResponse {
        connections: page.items.into_iter().map(Into::into).collect(),
        pagination,
    }))
}

async fn decide(
    st: &AppState,
    p: &perimeter_store::Principal,
    id: &str,
    conn: &str,
    status: &str,
    action: &str,
) -> ApiResult<EndpointConnection> {
    uuid_param("id", id)?;
    require(p, Need::EndpointServices, None)?;
    let payload = serde_json::json!({"endpoint_service_id": id, "connection_id": conn});
    let c = st
        .store
        .decide_connection(id, conn, status, &audit(p, action, &payload))
        .await?;
    st.changed();
    Ok(c.into())
}

/// Accept a connection waiting in `PENDING_ACCEPTANCE`.
#[utoipa::path(post, path = "/api/v1/endpoint-services/{id}/connections/{connection_id}/accept", tag = "Endpoint services",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    responses((status = 200, body = EndpointConnection), (status = "default", body = crate::error::Status)))]
async fn accept_connection(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((id, conn)): Path<(String, String)>,
) -> ApiResult<Json<EndpointConnection>> {
    Ok(Json(
        decide(
            &st,
            &p,
            &id,
            &conn,
            "AVAILABLE",
            "AUDIT_LOG_ACTION_ACCEPT_PRIVATE_LINK",
        )
        .await?,
    ))
}

/// Reject a connection waiting in `PENDING_ACCEPTANCE`.
#[utoipa::path(post, path = "/api/v1/endpoint-services/{id}/connections/{connection_id}/reject", tag = "Endpoint services",
    params(("id" = String, Path), ("connection_id" = String, Path)),
    responses((status = 200, body = EndpointConnection), (status = "default", body = crate::error::Status)))]
async fn reject_connection(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((id, conn)): Path<(String, String)>,
) -> ApiResult<Json<EndpointConnection>> {
    Ok(Json(
        decide(
            &st,
            &p,
            &id,
            &conn,
            "REJECTED",
            "AUDIT_LOG_ACTION_REJECT_PRIVATE_LINK",
        )
        .await?,
    ))
}

//! The ingress IP allowlist of a cluster.

use axum::Json;
use axum::extract::{Path, State};
use perimeter_policy::Cidr;
use perimeter_store::{AllowlistEntry as StoreEntry, Upsert};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Need, require};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, Auth, ClusterScope, PageQuery, Query, access, agrees, uuid_param};
use crate::model::{AllowlistEntry, ListAllowlistEntriesResponse};
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_allowlist, add_allowlist))
        .routes(routes!(put_allowlist, patch_allowlist, delete_allowlist))
        .routes(routes!(ingress_check))
}

/// ext: which listener, from which source.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressCheckRequest {
    /// The connection's source address (canonical IPv4 or IPv6, no zone id); for the public
    /// listeners.
    #[serde(default)]
    pub source: String,
    /// `sql`, `ui`, or `private` (the private ingress listener).
    pub listener: String,
    /// For `private`: the endpoint id the connection's PROXY v2 header names.
    #[serde(default)]
    pub endpoint_id: Option<String>,
}

/// ext: the verdict of the public ingress listener, and the entry that decides it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct IngressCheckResponse {
    pub source: String,
    pub listener: String,
    pub admitted: bool,
    /// `ADMITTED` or `REFUSED`.
    pub verdict: String,
    /// Public listeners: `allowlisted`, `allowlist_empty`, `not_allowlisted`,
    /// `listener_not_allowed` or `network_visibility_private`; the private one:
    /// `private_endpoint` or `unknown_endpoint`.
    pub reason: String,
    /// For `private`: the endpoint id judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    /// The deciding entry: the most specific one containing the source that admits it, or, when
    /// none admits, the most specific one containing it.
    pub entry: Option<AllowlistEntry>,
    /// The policy version judged.
    pub version: u64,
}

/// What-if for ingress: the verdict the public `sql` or `ui` listener gives a source, or the
/// private listener an endpoint id, under the cluster's newest snapshot, computed by the code
/// the gateways run.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/ingress-check", tag = "IP allowlist",
    params(("cluster_id" = String, Path)), request_body = IngressCheckRequest,
    responses((status = 200, body = IngressCheckResponse), (status = "default", body = crate::error::Status)))]
async fn ingress_check(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    AppJson(req): AppJson<IngressCheckRequest>,
) -> ApiResult<Json<IngressCheckResponse>> {
    use perimeter_policy::{IngressListener, parse_ip_literal};
    let listener = match req.listener.as_str() {
        "sql" => IngressListener::Sql,
        "ui" => IngressListener::Ui,
        "private" => IngressListener::Private,
        other => {
            return Err(ApiError::invalid(
                "listener",
                format!("listener {other:?} is not known; use \"sql\", \"ui\" or \"private\""),
            ));
        }
    };
    if listener == IngressListener::Private {
        let id = req.endpoint_id.as_deref().unwrap_or("").trim();
        if id.is_empty() {
            return Err(ApiError::invalid(
                "endpoint_id",
                "the private listener judges an endpoint id: give endpoint_id (e.g. vpce-0a1b2c3d4e5f67890)",
            ));
        }
        st.store.get_live_cluster(&cluster_id).await?;
        let snap = st
            .snapshots
            .current(&st.store, st.secrets.as_deref(), &cluster_id, None)
            .await?;
        let d = snap.admit_private_ingress(Some(id));
        return Ok(Json(IngressCheckResponse {
            source: String::new(),
            listener: listener.as_str().to_string(),
            admitted: d.admitted,
            verdict: d.verdict().to_string(),
            reason: d.reason.as_str().to_string(),
            endpoint_id: Some(id.to_string()),
            entry: None,
            version: snap.version(),
        }));
    }
    let source = parse_ip_literal(req.source.trim())
        .map_err(|e| ApiError::invalid("source", format!("source: {e}")))?;
    st.store.get_live_cluster(&cluster_id).await?;
    let snap = st
        .snapshots
        .current(&st.store, st.secrets.as_deref(), &cluster_id, None)
        .await?;
    let d = snap.admit_ingress(source, listener);
    Ok(Json(IngressCheckResponse {
        source: source.to_string(),
        listener: listener.as_str().to_string(),
        admitted: d.admitted,
        verdict: d.verdict().to_string(),
        reason: d.reason.as_str().to_string(),
        endpoint_id: None,
        entry: d.entry.map(|e| {
            let net = e.cidr().net();
            AllowlistEntry {
                cidr_ip: net.network().to_string(),
                cidr_mask: i64::from(net.prefix_len()),
                name: e.name().to_string(),
                sql: e.admits(IngressListener::Sql),
                ui: e.admits(IngressListener::Ui),
            }
        }),
        version: snap.version(),
    }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddAllowlistEntryRequest {
    pub cidr_ip: String,
    pub cidr_mask: i64,
    #[serde(default)]
    pub name: String,
    pub sql: bool,
    pub ui: bool,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllowlistEntryUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub sql: Option<bool>,
    #[serde(default)]
    pub ui: Option<bool>,
    /// Accepted when equal to the path.
    #[serde(default)]
    pub cidr_ip: Option<String>,
    #[serde(default)]
    pub cidr_mask: Option<i64>,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

/// Validate a CIDR given as address and mask; returns the canonical (ip, mask).
fn validate_cidr(ip: &str, mask: i64) -> ApiResult<(String, i64)> {
    let cidr: Cidr = format!("{ip}/{mask}")
        .parse()
        .map_err(|e| ApiError::invalid("cidr_ip", format!("cidr_ip/cidr_mask: {e}")))?;
    let net = cidr.net();
    Ok((net.network().to_string(), net.prefix_len() as i64))
}

fn validate_entry_name(name: &str) -> ApiResult<()> {
    if name.len() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "name must be at most 128 printable characters",
        ));
    }
    Ok(())
}

/// List the IP allowlist; `propagating` is true until every gateway applied the latest change.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/allowlist", tag = "IP allowlist",
    params(("cluster_id" = String, Path), PageQuery),
    responses((status = 200, body = ListAllowlistEntriesResponse), (status = "default", body = crate::error::Status)))]
async fn list_allowlist(
    State(st): State<AppState>,
    ClusterScope {
        principal,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListAllowlistEntriesResponse>> {
    let paging = pq
        .paging(
            &st.store,
            &principal,
            &format!("clusters/{cluster_id}/allowlist"),
            &[],
        )
        .await?;
    let (page, propagating) = st.store.list_allowlist(&cluster_id, &paging.req).await?;
    let pagination = paging.pagination(&page);
    Ok(Json(ListAllowlistEntriesResponse {
        allowlist: page.items.into_iter().map(Into::into).collect(),
        propagating,
        pagination,
    }))
}

/// Add an entry (409 if that CIDR is already listed).
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/allowlist", tag = "IP allowlist",
    params(("cluster_id" = String, Path)), request_body = AddAllowlistEntryRequest,
    responses((status = 200, body = AllowlistEntry), (status = "default", body = crate::error::Status)))]
async fn add_allowlist(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    AppJson(req): AppJson<AddAllowlistEntryRequest>,
) -> ApiResult<Json<AllowlistEntry>> {
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    let (ip, mask) = validate_cidr(&req.cidr_ip, req.cidr_mask)?;
    validate_entry_name(&req.name)?;
    let entry = StoreEntry {
        cidr_ip: ip,
        cidr_mask: mask,
        name: req.name.clone(),
        sql: req.sql,
        ui: req.ui,
    };
    let e = st
        .store
        .write_allowlist(
            &cluster_id,
            &entry,
            Upsert::CreateOnly,
            &audit(&p, "AUDIT_LOG_ACTION_ADD_IP_ALLOWLIST", &req),
        )
        .await?;
    st.changed();
    Ok(Json(e.into()))
}

async fn write(
    st: &AppState,
    p: &perimeter_store::Principal,
    cluster_id: &str,
    ip: &str,
    mask: &str,
    req: &AllowlistEntryUpdate,
    mode: Upsert,
) -> ApiResult<AllowlistEntry> {
    uuid_param("cluster_id", cluster_id)?;
    agrees("cluster_id", &req.cluster_id, cluster_id)?;
    let mask_n: i64 = mask.parse().map_err(|_| {
        ApiError::invalid(
            "cidr_mask",
            format!("cidr_mask must be a number, got {mask:?}"),
        )
    })?;
    let (ip, mask_n) = validate_cidr(ip, mask_n)?;
    if let Some(b) = &req.cidr_ip
        && b != &ip
    {
        return Err(ApiError::invalid(
            "cidr_ip",
            format!("cidr_ip in the body ({b}) disagrees with the path ({ip})"),
        ));
    }
    if req.cidr_mask.is_some_and(|m| m != mask_n) {
        return Err(ApiError::invalid(
            "cidr_mask",
            "cidr_mask in the body disagrees with the path",
        ));
    }
    let name = req.name.clone().unwrap_or_default();
    validate_entry_name(&name)?;
    if mode == Upsert::CreateOrReplace && (req.sql.is_none() || req.ui.is_none()) {
        let field = if req.sql.is_none() { "sql" } else { "ui" };
        return Err(ApiError::invalid(field, format!("{field} is required")));
    }
    require(p, Need::WriteNetworking, Some(cluster_id))?;
    let mut entry = StoreEntry {
        cidr_ip: ip.clone(),
        cidr_mask: mask_n,
        name,
        sql: req.sql.unwrap_or(false),
        ui: req.ui.unwrap_or(false),
    };
    if mode == Upsert::UpdateOnly {
        // PATCH keeps what it does not name.
        if let Some(cur) = st
            .store
            .get_allowlist_entry(cluster_id, &ip, mask_n)
            .await?
        {
            entry.name = req.name.clone().unwrap_or_else(|| cur.name.clone());
            entry.sql = req.sql.unwrap_or(cur.sql);
            entry.ui = req.ui.unwrap_or(cur.ui);
        }
    }
    let e = st
        .store
        .write_allowlist(
            cluster_id,
            &entry,
            mode,
            &audit(
                p,
                "AUDIT_LOG_ACTION_EDIT_IP_ALLOWLIST",
                &(format!("{ip}/{mask_n}"), req),
            ),
        )
        .await?;
    st.changed();
    Ok(e.into())
}

/// Create or replace the entry for a CIDR.
#[utoipa::path(put, path = "/api/v1/clusters/{cluster_id}/networking/allowlist/{cidr_ip}/{cidr_mask}", tag = "IP allowlist",
    params(("cluster_id" = String, Path), ("cidr_ip" = String, Path), ("cidr_mask" = i32, Path)), request_body = AllowlistEntryUpdate,
    responses((status = 200, body = AllowlistEntry), (status = "default", body = crate::error::Status)))]
async fn put_allowlist(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((cluster_id, ip, mask)): Path<(String, String, String)>,
    AppJson(req): AppJson<AllowlistEntryUpdate>,
) -> ApiResult<Json<AllowlistEntry>> {
    Ok(Json(
        write(
            &st,
            &p,
            &cluster_id,
            &ip,
            &mask,
            &req,
            Upsert::CreateOrReplace,
        )
        .await?,
    ))
}

/// Update an existing entry (404 if absent).
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster_id}/networking/allowlist/{cidr_ip}/{cidr_mask}", tag = "IP allowlist",
    params(("cluster_id" = String, Path), ("cidr_ip" = String, Path), ("cidr_mask" = i32, Path)), request_body = AllowlistEntryUpdate,
    responses((status = 200, body = AllowlistEntry), (status = "default", body = crate::error::Status)))]
async fn patch_allowlist(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((cluster_id, ip, mask)): Path<(String, String, String)>,
    AppJson(req): AppJson<AllowlistEntryUpdate>,
) -> ApiResult<Json<AllowlistEntry>> {
    Ok(Json(
        write(&st, &p, &cluster_id, &ip, &mask, &req, Upsert::UpdateOnly).await?,
    ))
}

/// Delete an entry; answers with the deleted entry.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}/networking/allowlist/{cidr_ip}/{cidr_mask}", tag = "IP allowlist",
    params(("cluster_id" = String, Path), ("cidr_ip" = String, Path), ("cidr_mask" = i32, Path)),
    responses((status = 200, body = AllowlistEntry), (status = "default", body = crate::error::Status)))]
async fn delete_allowlist(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    Path((_, ip, mask)): Path<(String, String, String)>,
) -> ApiResult<Json<AllowlistEntry>> {
    let mask_n: i64 = mask.parse().map_err(|_| {
        ApiError::invalid(
            "cidr_mask",
            format!("cidr_mask must be a number, got {mask:?}"),
        )
    })?;
    let (ip, mask_n) = validate_cidr(&ip, mask_n)?;
    let payload = serde_json::json!({"cidr_ip": ip, "cidr_mask": mask_n});
    let e = st
        .store
        .delete_allowlist(
            &cluster_id,
            &ip,
            mask_n,
            &audit(&p, "AUDIT_LOG_ACTION_DELETE_IP_ALLOWLIST", &payload),
        )
        .await?;
    st.changed();
    Ok(Json(e.into()))
}

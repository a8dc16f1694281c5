//! Gateways (ext): registration with a token, the snapshot long-poll, acknowledgements, decision
//! aggregates, and what the cluster's gateways saw.

use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use perimeter_store::{DecisionAggregate, DecisionQuery, Gateway};
use perimeter_wire::{
    AckRequest, DecisionCount, GatewayRegistration, PushDecisionsRequest, SnapshotResponse, Verdict,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{authenticate_gateway, generate_gateway_token, hash_secret};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, ClusterScope, Query, access, uuid_param};
use crate::model::Empty;
use crate::{AppState, audit, publish};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_gateways, create_gateway))
        .routes(routes!(delete_gateway))
        .routes(routes!(snapshot))
        .routes(routes!(ack))
        .routes(routes!(push_decisions))
        .routes(routes!(list_decisions))
}

/// How long a gateway counts as live after it was last seen (long-polls renew it).
pub const GATEWAY_LIVENESS: Duration = Duration::from_secs(60);
/// Longest wait of a snapshot long-poll.
const MAX_WAIT: u64 = 60;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GatewayView {
    pub id: String,
    pub cluster_id: String,
    pub region: String,
    pub name: String,
    pub created_at: String,
    /// Last request from the gateway (long-poll, ack or decisions); null before the first.
    pub last_seen_at: Option<String>,
    /// Highest snapshot version it applied (0: none yet).
    pub applied_version: i64,
    /// Latest version it failed to apply and why (0 and "" when none).
    pub failed_version: i64,
    pub last_error: String,
    /// Seen within the liveness window: its acknowledgements count for rule states.
    pub live: bool,
}

impl From<Gateway> for GatewayView {
    fn from(g: Gateway) -> Self {
        let live = g.last_seen_at.as_deref().is_some_and(is_live);
        GatewayView {
            id: g.id,
            cluster_id: g.cluster_id,
            region: g.region,
            name: g.name,
            created_at: g.created_at,
            last_seen_at: g.last_seen_at,
            applied_version: g.applied_version,
            failed_version: g.failed_version,
            last_error: g.last_error,
            live,
        }
    }
}

pub(crate) fn is_live(last_seen: &str) -> bool {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(GATEWAY_LIVENESS).unwrap_or_default();
    last_seen >= perimeter_store::ts(cutoff).as_str()
}

/// The registration a snapshot answer carries.
fn registration(g: &Gateway) -> GatewayRegistration {
    GatewayRegistration {
        id: g.id.clone(),
        cluster_id: g.cluster_id.clone(),
        name: g.name.clone(),
        region: g.region.clone(),
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGatewayRequest {
    /// A region of the cluster.
    pub region: String,
    /// Unique in the cluster, e.g. the host it runs on.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreateGatewayResponse {
    pub gateway: GatewayView,
    /// Shown once; the gateway sends it as `Authorization: Bearer <token>`.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListGatewaysResponse {
    pub gateways: Vec<GatewayView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// Answer once the cluster's policy is newer than this version (0: at once).
    #[serde(default)]
    pub after_version: Option<String>,
    /// Longest wait in seconds (default 25, at most 60).
    #[serde(default)]
    pub wait_seconds: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ListDecisionsResponse {
    pub decisions: Vec<DecisionCount>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionsQuery {
    /// `ALLOWED`, `DENIED` or `WOULD_DENY`.
    #[serde(default)]
    pub verdict: Option<String>,
    /// RFC 3339: only destinations seen since then.
    #[serde(default)]
    pub since: Option<String>,
    /// At most 1000 (default 200).
    #[serde(default)]
    pub limit: Option<String>,
}

/// The calling gateway, authenticated by its token; every call renews its liveness.
pub struct GatewayAuth(pub Gateway);

impl FromRequestParts<AppState> for GatewayAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = crate::extract::bearer(parts, "gateway token")?;
        let id = authenticate_gateway(&state.store, token.trim()).await?;
        let gw = still_registered(state, &id).await?;
        state.store.touch_gateway(&id).await?;
        Ok(GatewayAuth(gw))
    }
}

/// Gateway `id`, if it is still registered to a live cluster; else the 401 of a revoked
/// token. A cluster's deletion removes its gateways; a gateway kept from before that rule
/// (its cluster deleted) is refused all the same.
async fn still_registered(state: &AppState, id: &str) -> Result<Gateway, ApiError> {
    let revoked = || {
        ApiError::unauthenticated("gateway token revoked: the gateway or its cluster was deleted")
    };
    let gw = match state.store.get_gateway(id).await {
        Ok(gw) => gw,
        Err(perimeter_store::StoreError::NotFound(_)) => return Err(revoked()),
        Err(e) => return Err(e.into()),
    };
    match state.store.policy_version_of(&gw.cluster_id).await? {
        Some((_, false)) => Ok(gw),
        _ => Err(revoked()),
    }
}

fn validate_name(name: &str) -> ApiResult<()> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        return Err(ApiError::invalid(
            "name",
            "name must be 1-63 characters of letters, digits, '-', '.' or '_'",
        ));
    }
    if name.starts_with(crate::EMBEDDED_GATEWAY_PREFIX) {
        return Err(ApiError::invalid(
            "name",
            format!(
                "names starting with {:?} are reserved for the gateways `perimeter serve` runs itself",
                crate::EMBEDDED_GATEWAY_PREFIX
            ),
        ));
    }
    Ok(())
}

/// Register a gateway for a region of the cluster; answers its token once.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/gateways", tag = "Gateways",
    params(("cluster_id" = String, Path)), request_body = CreateGatewayRequest,
    responses((status = 200, body = CreateGatewayResponse), (status = "default", body = crate::error::Status)))]
async fn create_gateway(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    AppJson(req): AppJson<CreateGatewayRequest>,
) -> ApiResult<Json<CreateGatewayResponse>> {
    validate_name(&req.name)?;
    let id = uuid::Uuid::new_v4().to_string();
    let token = generate_gateway_token(&id);
    let gw = st
        .store
        .create_gateway(
            &cluster_id,
            &req.region,
            &req.name,
            &id,
            &hash_secret(&token),
            Some(&audit(&p, "AUDIT_LOG_ACTION_CREATE_GATEWAY", &req)),
        )
        .await?;
    Ok(Json(CreateGatewayResponse {
        gateway: gw.into(),
        token,
    }))
}

/// The cluster's gateways: when each was last seen and which version it applied.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/gateways", tag = "Gateways",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = ListGatewaysResponse), (status = "default", body = crate::error::Status)))]
async fn list_gateways(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
) -> ApiResult<Json<ListGatewaysResponse>> {
    st.store.get_live_cluster(&cluster_id).await?;
    let gws = st.store.list_gateways(&cluster_id).await?;
    Ok(Json(ListGatewaysResponse {
        gateways: gws.into_iter().map(Into::into).collect(),
    }))
}

/// Deregister a gateway (its token stops working at once).
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}/gateways/{gateway_id}", tag = "Gateways",
    params(("cluster_id" = String, Path), ("gateway_id" = String, Path)),
    responses((status = 200, body = GatewayView), (status = "default", body = crate::error::Status)))]
async fn delete_gateway(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    Path((_, gateway_id)): Path<(String, String)>,
) -> ApiResult<Json<GatewayView>> {
    uuid_param("gateway_id", &gateway_id)?;
    let payload = serde_json::json!({"gateway_id": gateway_id});
    let gw = st
        .store
        .delete_gateway(
            &cluster_id,
            &gateway_id,
            &audit(&p, "AUDIT_LOG_ACTION_DELETE_GATEWAY", &payload),
        )
        .await?;
    st.changed();
    Ok(Json(gw.into()))
}

fn parse_u64(field: &str, v: Option<&str>, default: u64) -> ApiResult<u64> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            ApiError::invalid(field, format!("{field} must be a whole number, got {s:?}"))
        }),
    }
}

/// Long-poll for the next policy snapshot of the gateway's cluster (gateway token). Every answer
/// carries the gateway's registration (`gateway`): its region labels the gateway's metrics. A
/// poll whose gateway (or cluster) is deleted while it waits ends with 401, as every later call
/// with its token does: the gateway then denies everything.
#[utoipa::path(get, path = perimeter_wire::SNAPSHOT_PATH, tag = "Gateways", params(SnapshotQuery),
    responses((status = 200, body = SnapshotResponse), (status = "default", body = crate::error::Status)))]
async fn snapshot(
    State(st): State<AppState>,
    GatewayAuth(gw): GatewayAuth,
    Query(q): Query<SnapshotQuery>,
) -> ApiResult<Json<SnapshotResponse>> {
    let after = parse_u64("after_version", q.after_version.as_deref(), 0)?;
    let wait = parse_u64("wait_seconds", q.wait_seconds.as_deref(), 25)?.min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut changes = st.changes.subscribe();
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            // Woken: the gateway may have been deleted meanwhile.
            still_registered(&st, &gw.id).await?;
        }
        // The version the store's notifications keep, when they are followed: an idle
        // long-poll then reads nothing from the store.
        let version = match st.store_changes.version(&gw.cluster_id) {
            Some(v) => v,
            None => {
                let (v, _) = st
                    .store
                    .policy_version_of(&gw.cluster_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::not_found(format!("cluster {} not found", gw.cluster_id))
                    })?;
                st.store_changes.observe(&gw.cluster_id, v);
                v
            }
        };
        let version = version.max(0) as u64;
        if version > after {
            let inputs = st.store.policy_inputs(&gw.cluster_id).await?;
            let doc = publish::document(&inputs, st.secrets.as_deref())?;
            // Deleted while this document was compiled: not delivered.
            let gw = still_registered(&st, &gw.id).await?;
            st.store
                .record_delivery(&gw.id, i64::try_from(doc.version).unwrap_or(i64::MAX))
                .await?;
            return Ok(Json(SnapshotResponse {
                version: doc.version,
                document: Some(doc),
                gateway: Some(registration(&gw)),
            }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Json(SnapshotResponse {
                version,
                document: None,
                gateway: Some(registration(&gw)),
            }));
        }
        // Woken by a change in this process or one the store notifies; without notifications,
        // every second for changes made by other replicas.
        let fallback = if st.store_changes.live() {
            Duration::from_secs(MAX_WAIT)
        } else {
            Duration::from_secs(1)
        };
        let nap = deadline.min(tokio::time::Instant::now() + fallback);
        let _ = tokio::time::timeout_at(nap, changes.changed()).await;
    }
}

/// Acknowledge a snapshot version: applied, or failed with the error (gateway token).
#[utoipa::path(post, path = perimeter_wire::ACK_PATH, tag = "Gateways", request_body = AckRequest,
    responses((status = 200, body = GatewayView), (status = "default", body = crate::error::Status)))]
async fn ack(
    State(st): State<AppState>,
    GatewayAuth(gw): GatewayAuth,
    AppJson(req): AppJson<AckRequest>,
) -> ApiResult<Json<GatewayView>> {
    let version = i64::try_from(req.version)
        .map_err(|_| ApiError::invalid("version", "version is too large"))?;
    // Only what was delivered to this gateway can be acknowledged: an acknowledgement is what
    // turns rules ACTIVE and settles propagation.
    if version < 1 || version > gw.delivered_version {
        return Err(ApiError::invalid(
            "version",
            format!(
                "version {version} was never delivered to this gateway (the latest it was given is {})",
                gw.delivered_version
            ),
        ));
    }
    let error = req.error.as_deref().unwrap_or("");
    if error.len() > 4096 {
        return Err(ApiError::invalid(
            "error",
            "error must be at most 4096 characters",
        ));
    }
    if !req.applied && error.is_empty() {
        return Err(ApiError::invalid(
            "error",
            "a failed acknowledgement (applied: false) must say why in error",
        ));
    }
    let private_ingress = match req.private_ingress_address.as_deref() {
        None => None,
        Some(a) => match a.parse::<std::net::SocketAddr>() {
            Ok(sa) if !sa.ip().is_unspecified() && sa.port() != 0 => Some(sa.to_string()),
            _ => {
                return Err(ApiError::invalid(
                    "private_ingress_address",
                    format!(
                        "private_ingress_address: {a:?} must be an IP address and a port that other gateways can dial (not 0.0.0.0, [::] or port 0)"
                    ),
                ));
            }
        },
    };
    let g = st
        .store
        .ack_gateway(&gw.id, version, req.applied, error)
        .await?;
    if let Some(a) = private_ingress
        && st.store.report_private_ingress(&gw.id, &a).await?
    {
        tracing::info!(gateway = %gw.id, cluster = %gw.cluster_id, address = %a, "gateway reports its private ingress listener");
        st.changed();
    }
    if !req.applied {
        tracing::warn!(gateway = %gw.id, cluster = %gw.cluster_id, version, error, "gateway failed to apply a snapshot");
    }
    st.reconcile.notify_one();
    Ok(Json(g.into()))
}

/// Push aggregated decision counts since the last push (gateway token).
#[utoipa::path(post, path = perimeter_wire::DECISIONS_PATH, tag = "Gateways", request_body = PushDecisionsRequest,
    responses((status = 200, body = Empty), (status = "default", body = crate::error::Status)))]
async fn push_decisions(
    State(st): State<AppState>,
    GatewayAuth(gw): GatewayAuth,
    AppJson(req): AppJson<PushDecisionsRequest>,
) -> ApiResult<Json<Empty>> {
    if req.decisions.len() > 10_000 {
        return Err(ApiError::invalid(
            "decisions",
            "at most 10000 aggregates per push",
        ));
    }
    let mut items = Vec::with_capacity(req.decisions.len());
    for (i, d) in req.decisions.iter().enumerate() {
        // The verdict is one of the three: the body does not parse otherwise, and the error
        // names the field (`decisions[3].verdict`).
        if d.destination.is_empty()
            || d.destination.len() > 300
            || d.reason.len() > 200
            || d.rule_name.len() > 200
        {
            return Err(ApiError::invalid(
                format!("decisions[{i}]"),
                "destination (1-300), reason and rule_name (<= 200) lengths",
            ));
        }
        items.push(DecisionAggregate {
            destination: d.destination.clone(),
            port: d.port as i64,
            verdict: d.verdict.as_str().to_string(),
            rule_name: d.rule_name.clone(),
            reason: d.reason.clone(),
            count: d.count.min(i64::MAX as u64) as i64,
            bytes: d.bytes.min(i64::MAX as u64) as i64,
            first_seen: d.first_seen.clone(),
            last_seen: d.last_seen.clone(),
        });
    }
    if req.endpoint_bytes.len() > 10_000 {
        return Err(ApiError::invalid(
            "endpoint_bytes",
            "at most 10000 endpoints per push",
        ));
    }
    let bytes: Vec<(String, u64)> = req
        .endpoint_bytes
        .iter()
        .map(|b| (b.endpoint_id.clone(), b.bytes))
        .collect();
    st.store
        .record_decisions(&gw.cluster_id, &items, &bytes)
        .await?;
    Ok(Json(Empty {}))
}

/// What the cluster's gateways saw, aggregated: in REPORT_ONLY, `verdict=WOULD_DENY` lists what
/// default-deny would refuse.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/egress-decisions", tag = "Egress rules",
    params(("cluster_id" = String, Path), DecisionsQuery),
    responses((status = 200, body = ListDecisionsResponse), (status = "default", body = crate::error::Status)))]
async fn list_decisions(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    Query(q): Query<DecisionsQuery>,
) -> ApiResult<Json<ListDecisionsResponse>> {
    let verdict = q
        .verdict
        .as_deref()
        .map(str::parse::<Verdict>)
        .transpose()
        .map_err(|e| ApiError::invalid("verdict", e.to_string()))?;
    let since = match q.since.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(perimeter_store::ts(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    ApiError::invalid(
                        "since",
                        format!("since must be an RFC 3339 timestamp, got {s:?}"),
                    )
                })?
                .with_timezone(&chrono::Utc),
        )),
    };
    let limit = parse_u64("limit", q.limit.as_deref(), 200)?.clamp(1, 1000) as u32;
    st.store.get_live_cluster(&cluster_id).await?;
    let rows = st
        .store
        .list_decisions(
            &cluster_id,
            &DecisionQuery {
                verdict: verdict.map(|v| v.as_str().to_string()),
                since,
                limit,
            },
        )
        .await?;
    let decisions = rows
        .into_iter()
        .map(|d| {
            // Stored only after the push parsed it, so a verdict that does not parse is a
            // fault of the store, not of the request.
            let verdict = d.verdict.parse::<Verdict>().map_err(|e| {
                ApiError::internal(format!("stored decision verdict {:?}: {e}", d.verdict))
            })?;
            Ok(DecisionCount {
                destination: d.destination,
                port: d.port as u16,
                verdict,
                rule_name: d.rule_name,
                reason: d.reason,
                count: d.count as u64,
                bytes: d.bytes as u64,
                first_seen: d.first_seen,
                last_seen: d.last_seen,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(ListDecisionsResponse { decisions }))
}

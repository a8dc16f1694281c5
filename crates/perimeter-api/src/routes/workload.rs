//! Where a cluster's own SQL and UI listen in each region: what its ingress listeners forward
//! admitted connections to. The platform sets it; cluster admins read it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use perimeter_store::RegionWorkload;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, ClusterScope, access};
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_workload, put_workload))
}

/// The workload addresses of one region: `host:port`, `""` when unset.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionWorkloadView {
    #[serde(default)]
    pub sql: String,
    #[serde(default)]
    pub ui: String,
}

/// `{"regions": {"us-east-1": {"sql": "127.0.0.1:26257", "ui": "127.0.0.1:8080"}}}`
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub regions: BTreeMap<String, RegionWorkloadView>,
}

fn view(w: Vec<RegionWorkload>) -> Workload {
    Workload {
        regions: w
            .into_iter()
            .map(|w| {
                (
                    w.region,
                    RegionWorkloadView {
                        sql: w.sql,
                        ui: w.ui,
                    },
                )
            })
            .collect(),
    }
}

/// Where the cluster's workloads listen, per region (every region of the cluster is listed).
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/workload", tag = "Ingress",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = Workload), (status = "default", body = crate::error::Status)))]
async fn get_workload(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadWorkload>,
) -> ApiResult<Json<Workload>> {
    Ok(Json(view(st.store.get_workload(&cluster_id).await?)))
}

/// Set where the cluster's workloads listen; regions not named are unset. The addresses reach the
/// gateways in the next snapshot.
#[utoipa::path(put, path = "/api/v1/clusters/{cluster_id}/workload", tag = "Ingress",
    params(("cluster_id" = String, Path)), request_body = Workload,
    responses((status = 200, body = Workload), (status = "default", body = crate::error::Status)))]
async fn put_workload(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteWorkload>,
    AppJson(req): AppJson<Workload>,
) -> ApiResult<Json<Workload>> {
    let mut workloads = Vec::with_capacity(req.regions.len());
    for (region, w) in &req.regions {
        for (field, address) in [("sql", &w.sql), ("ui", &w.ui)] {
            if address.is_empty() {
                continue;
            }
            perimeter_policy::validate_workload_address(address).map_err(|message| {
                ApiError::invalid(format!("regions.{region}.{field}"), message)
            })?;
        }
        workloads.push(RegionWorkload {
            region: region.clone(),
            sql: w.sql.clone(),
            ui: w.ui.clone(),
        });
    }
    let w = st
        .store
        .put_workload(
            &cluster_id,
            &workloads,
            &audit(&p, "AUDIT_LOG_ACTION_SET_WORKLOAD", &req),
        )
        .await?;
    st.changed();
    Ok(Json(view(w)))
}

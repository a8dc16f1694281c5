//! `/api/v1/clusters`: create, list, get, update, delete.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use perimeter_policy::{Provider, validate_cluster_name, validate_region};
use perimeter_store::{ClusterUpdate, NewCluster};
use rand::Rng;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{CLUSTER_ADMIN, Need, readable_clusters, require};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, Auth, PageQuery, Query, uuid_param};
use crate::model::{Cluster, ListClustersResponse};
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster, delete_cluster))
}

const PLANS: &[&str] = &["BASIC", "STANDARD", "ADVANCED"];

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterRequest {
    pub name: String,
    /// `AWS`, `GCP` or `AZURE`.
    pub provider: String,
    #[serde(default)]
    pub plan: Option<String>,
    pub spec: CreateClusterSpecification,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClusterSpecification {
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub dedicated: Option<DedicatedClusterCreateSpecification>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub delete_protection: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DedicatedClusterCreateSpecification {
    pub region_nodes: BTreeMap<String, i64>,
    #[serde(default)]
    pub hardware: Option<DedicatedHardwareSpecification>,
    #[serde(default)]
    pub restrict_egress_traffic: Option<bool>,
    /// `PUBLIC` (default) or `PRIVATE`.
    #[serde(default)]
    pub network_visibility: Option<String>,
    #[serde(default)]
    pub cockroach_version: Option<String>,
    #[serde(default)]
    pub cidr_range: Option<String>,
    #[serde(default)]
    pub supports_cluster_virtualization: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DedicatedHardwareSpecification {
    #[serde(default)]
    pub machine_spec: Option<MachineSpec>,
    #[serde(default)]
    pub storage_gib: Option<i64>,
    #[serde(default)]
    pub disk_iops: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    #[serde(default)]
    pub machine_type: Option<String>,
    #[serde(default)]
    pub num_virtual_cpus: Option<i64>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClusterSpecification {
    #[serde(default)]
    pub dedicated: Option<DedicatedClusterUpdateSpecification>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default)]
    pub cockroach_version: Option<String>,
    #[serde(default)]
    pub delete_protection: Option<String>,
    #[serde(default)]
    pub upgrade_status: Option<String>,
    #[serde(default)]
    pub parent_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DedicatedClusterUpdateSpecification {
    #[serde(default)]
    pub region_nodes: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    pub hardware: Option<DedicatedHardwareSpecification>,
    /// ext: `PRIVATE` closes the public ingress listeners, `PUBLIC` opens them again; a
    /// networking change (the cluster reads `LOCKED` until every live gateway applied it).
    #[serde(default)]
    pub network_visibility: Option<String>,
}

/// `PUBLIC` or `PRIVATE` (also in the reference's `NETWORK_VISIBILITY_*` spelling).
fn parse_visibility(v: &str, field: &str) -> ApiResult<&'static str> {
    match v {
        "PUBLIC" | "NETWORK_VISIBILITY_PUBLIC" => Ok("PUBLIC"),
        "PRIVATE" | "NETWORK_VISIBILITY_PRIVATE" => Ok("PRIVATE"),
        v => Err(ApiError::invalid(
            field,
            format!("network_visibility: {v:?} is not PUBLIC or PRIVATE"),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListClustersQuery {
    /// Include deleted clusters.
    #[serde(default)]
    pub show_inactive: Option<String>,
}

fn validate_plan(plan: &str, field: &str) -> ApiResult<()> {
    if PLANS.contains(&plan) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "{field}: {plan:?} is not a plan; use one of {}",
                PLANS.join(", ")
            ),
        ))
    }
}

fn validate_regions(
    provider: Provider,
    regions: &BTreeMap<String, i64>,
    field: &str,
) -> ApiResult<Vec<(String, i64)>> {
    if regions.is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("{field}: at least one region is needed, e.g. {{\"us-east-1\": 3}}"),
        ));
    }
    let mut out = Vec::new();
    for (name, nodes) in regions {
        validate_region(provider, name, &format!("{field}.{name}"))?;
        if !(1..=150).contains(nodes) {
            return Err(ApiError::invalid(
                format!("{field}.{name}"),
                format!("{field}.{name}: node count must be 1 to 150, got {nodes}"),
            ));
        }
        out.push((name.clone(), *nodes));
    }
    Ok(out)
}

/// Most labels a cluster carries.
pub const MAX_LABELS: usize = 64;

fn validate_labels(labels: &BTreeMap<String, String>) -> ApiResult<()> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid(
            "labels",
            format!(
                "labels: {} given; a cluster carries at most {MAX_LABELS}",
                labels.len()
            ),
        ));
    }
    for (k, v) in labels {
        let ok_key = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok_key {
            return Err(ApiError::invalid(
                format!("labels.{k}"),
                format!("labels: key {k:?} must be 1-63 characters of [a-z0-9_-]"),
            ));
        }
        if v.len() > 63 || v.chars().any(|c| c.is_control()) {
            return Err(ApiError::invalid(
                format!("labels.{k}"),
                format!("labels.{k}: value must be at most 63 printable characters"),
            ));
        }
    }
    Ok(())
}

/// The `config.dedicated` block shown for a hardware request.
fn hardware_config(
    provider: Provider,
    hw: Option<&DedicatedHardwareSpecification>,
) -> ApiResult<serde_json::Value> {
    let ms = hw.and_then(|h| h.machine_spec.as_ref());
    let vcpus = ms.and_then(|m| m.num_virtual_cpus).unwrap_or(4);
    if !(2..=256).contains(&vcpus) {
        return Err(ApiError::invalid(
            "spec.dedicated.hardware.machine_spec.num_virtual_cpus",
            format!("num_virtual_cpus must be 2 to 256, got {vcpus}"),
        ));
    }
    let machine_type = ms
        .and_then(|m| m.machine_type.clone())
        .unwrap_or_else(|| match provider {
            Provider::Aws => format!(
                "m6i.{}xlarge",
                if vcpus > 4 {
                    (vcpus / 4).to_string()
                } else {
                    String::new()
                }
            ),
            Provider::Gcp => format!("n2-standard-{vcpus}"),
            Provider::Azure => format!("Standard_D{vcpus}ds_v5"),
        });
    let storage = hw.and_then(|h| h.storage_gib).unwrap_or(150);
    if !(15..=65536).contains(&storage) {
        return Err(ApiError::invalid(
            "spec.dedicated.hardware.storage_gib",
            format!("storage_gib must be 15 to 65536, got {storage}"),
        ));
    }
    Ok(serde_json::json!({
        "machine_type": machine_type,
        "num_virtual_cpus": vcpus,
        "storage_gib": storage,
        "memory_gib": (vcpus * 4) as f64,
        "disk_iops": hw.and_then(|h| h.disk_iops).unwrap_or(storage * 30).min(64000),
    }))
}

fn account_id(provider: Provider) -> String {
    let mut rng = rand::thread_rng();
    match provider {
        Provider::Aws => format!("{:012}", rng.gen_range(100_000_000_000u64..999_999_999_999)),
        Provider::Gcp => format!("perimeter-{:08x}", rng.r#gen::<u32>()),
        Provider::Azure => uuid::Uuid::new_v4().to_string(),
    }
}

/// Create a cluster.
///
/// A creator that is not CLUSTER_ADMIN of the organization (a CLUSTER_CREATOR) is granted
/// CLUSTER_ADMIN on the new cluster, as in the reference.
#[utoipa::path(post, path = "/api/v1/clusters", tag = "Clusters", request_body = CreateClusterRequest,
    responses((status = 200, body = Cluster), (status = "default", body = crate::error::Status)))]
async fn create_cluster(
    State(st): State<AppState>,
    Auth(p): Auth,
    AppJson(req): AppJson<CreateClusterRequest>,
) -> ApiResult<Json<Cluster>> {
    validate_cluster_name(&req.name)?;
    let provider: Provider = req.provider.parse().map_err(|_| {
        ApiError::invalid(
            "provider",
            format!(
                "provider: {:?} is not a cloud provider; use AWS, GCP or AZURE",
                req.provider
            ),
        )
    })?;
    let plan = req
        .plan
        .clone()
        .or_else(|| req.spec.plan.clone())
        .unwrap_or_else(|| "ADVANCED".into());
    validate_plan(&plan, "plan")?;
    let dedicated = req
        .spec
        .dedicated
        .as_ref()
        .ok_or_else(|| ApiError::invalid("spec.dedicated", "spec.dedicated is required: give at least region_nodes, e.g. {\"region_nodes\": {\"us-east-1\": 3}}"))?;
    let regions = validate_regions(
        provider,
        &dedicated.region_nodes,
        "spec.dedicated.region_nodes",
    )?;
    let visibility = dedicated
        .network_visibility
        .clone()
        .unwrap_or_else(|| "PUBLIC".into());
    let visibility = parse_visibility(&visibility, "spec.dedicated.network_visibility")?;
    let labels = req.spec.labels.clone().unwrap_or_default();
    validate_labels(&labels)?;
    let hardware = hardware_config(provider, dedicated.hardware.as_ref())?;
    require(&p, Need::CreateCluster, None)?;
    let policy = if dedicated.restrict_egress_traffic == Some(true) {
        "DEFAULT_DENY"
    } else {
        "ALLOW_ALL"
    };
    let new = NewCluster {
        name: req.name.clone(),
        provider: provider.as_str().to_string(),
        plan,
        account_id: account_id(provider),
        network_visibility: visibility.to_string(),
        egress_policy: policy.to_string(),
        labels,
        hardware,
        cockroach_version: dedicated
            .cockroach_version
            .clone()
            .unwrap_or_else(|| "v25.2".into()),
        creator_id: p.service_account_id.clone(),
        regions,
    };
    // As in the reference, the creator administers what it creates (a CLUSTER_CREATOR could not
    // even read it otherwise), unless it already does on the whole organization.
    let administers_all = p
        .roles
        .iter()
        .any(|b| b.role == CLUSTER_ADMIN && b.resource_type == "ORGANIZATION");
    let c = st
        .store
        .create_cluster_granting(
            &new,
            (!administers_all).then_some(CLUSTER_ADMIN),
            &audit(&p, "AUDIT_LOG_ACTION_CREATE_CLUSTER", &req),
        )
        .await?;
    if !administers_all {
        st.principals.clear();
    }
    st.changed();
    st.embedded.wait_for_regions(&c).await;
    Ok(Json(st.embedded.view(c)))
}

/// List clusters.
#[utoipa::path(get, path = "/api/v1/clusters", tag = "Clusters", params(ListClustersQuery, PageQuery),
    responses((status = 200, body = ListClustersResponse), (status = "default", body = crate::error::Status)))]
async fn list_clusters(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ListClustersQuery>,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListClustersResponse>> {
    let show_inactive = match q.show_inactive.as_deref() {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::invalid(
                "show_inactive",
                format!("show_inactive must be true or false, got {v:?}"),
            ));
        }
    };
    let show = if show_inactive { "true" } else { "false" };
    let paging = pq
        .paging(&st.store, &p, "clusters", &[("show_inactive", show)])
        .await?;
    let visible = readable_clusters(&p);
    if visible.as_ref().is_some_and(|v| v.is_empty()) {
        require(&p, Need::ReadCluster, None)?;
    }
    // Filtered in the query, before paging: a caller scoped to some clusters pages over those
    // alone, and its tokens and page boundaries say nothing of the others.
    let page = st
        .store
        .list_clusters(show_inactive, visible.as_deref(), &paging.req)
        .await?;
    let pagination = paging.pagination(&page);
    let clusters = page
        .items
        .into_iter()
        .map(|c| st.embedded.view(c))
        .collect();
    Ok(Json(ListClustersResponse {
        clusters,
        pagination,
    }))
}

/// Get a cluster (deleted clusters answer with `state: DELETED`).
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}", tag = "Clusters", params(("cluster_id" = String, Path)),
    responses((status = 200, body = Cluster), (status = "default", body = crate::error::Status)))]
async fn get_cluster(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Cluster>> {
    uuid_param("cluster_id", &id)?;
    require(&p, Need::ReadCluster, Some(&id))?;
    Ok(Json(st.embedded.view(st.store.get_cluster(&id).await?)))
}

/// Update a cluster's regions, labels, plan or hardware.
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster_id}", tag = "Clusters", params(("cluster_id" = String, Path)),
    request_body = UpdateClusterSpecification,
    responses((status = 200, body = Cluster), (status = "default", body = crate::error::Status)))]
async fn update_cluster(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<UpdateClusterSpecification>,
) -> ApiResult<Json<Cluster>> {
    uuid_param("cluster_id", &id)?;
    if let Some(plan) = &req.plan {
        validate_plan(plan, "plan")?;
    }
    if let Some(labels) = &req.labels {
        validate_labels(labels)?;
    }
    require(&p, Need::UpdateCluster, Some(&id))?;
    let cur = st.store.get_live_cluster(&id).await?;
    let provider: Provider = cur.provider.parse().map_err(ApiError::internal)?;
    let mut update = ClusterUpdate {
        labels: req.labels.clone(),
        plan: req.plan.clone(),
        ..Default::default()
    };
    if let Some(d) = &req.dedicated {
        if let Some(rn) = &d.region_nodes {
            update.regions = Some(validate_regions(provider, rn, "dedicated.region_nodes")?);
        }
        if d.hardware.is_some() {
            update.hardware = Some(hardware_config(provider, d.hardware.as_ref())?);
        }
        if let Some(v) = &d.network_visibility {
            update.network_visibility =
                Some(parse_visibility(v, "dedicated.network_visibility")?.to_string());
        }
    }
    let c = st
        .store
        .update_cluster(
            &id,
            &update,
            &audit(&p, "AUDIT_LOG_ACTION_UPDATE_CLUSTER", &req),
        )
        .await?;
    st.changed();
    st.embedded.wait_for_regions(&c).await;
    Ok(Json(st.embedded.view(c)))
}

/// Delete a cluster with its endpoints, rules and allowlist.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}", tag = "Clusters", params(("cluster_id" = String, Path)),
    responses((status = 200, body = Cluster), (status = "default", body = crate::error::Status)))]
async fn delete_cluster(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Cluster>> {
    uuid_param("cluster_id", &id)?;
    require(&p, Need::DeleteCluster, Some(&id))?;
    let c = st
        .store
        .delete_cluster(
            &id,
            &audit(
                &p,
                "AUDIT_LOG_ACTION_DELETE_CLUSTER",
                &serde_json::json!({"cluster_id": id}),
            ),
        )
        .await?;
    st.changed();
    Ok(Json(st.embedded.view(c)))
}

//! A cluster's functional roles: per purpose (`backup`, `changefeed`), the role ARN template
//! the platform puts first in every role chain the cluster's jobs assume. The platform sets
//! them; whoever may read the cluster reads them, with the ARNs expanded, to know which role
//! their own roles must trust.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use perimeter_creds::{ClusterIdentity, RolePurpose, RoleTemplate};
use perimeter_store::CredentialRole;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, ClusterScope, access};
use crate::model::credential_role_arn;
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_credential_roles, put_credential_roles))
}

/// Most functional roles one cluster holds.
pub const MAX_CREDENTIAL_ROLES: usize = 32;

/// `{"roles": {"backup": "arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}"}}`:
/// per purpose, a role ARN template with the placeholders `{cluster_id}` and `{account_id}`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialRolesRequest {
    pub roles: BTreeMap<String, String>,
}

/// One functional role: its template and the role ARN it gives this cluster.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialRoleView {
    pub template: String,
    pub role_arn: String,
}

/// `{"roles": {"backup": {"template": "...", "role_arn": "arn:aws:iam::...:role/crl-dr-store-user-<cluster id>"}}}`
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialRoles {
    pub roles: BTreeMap<String, CredentialRoleView>,
}

fn view(roles: Vec<CredentialRole>, cluster_id: &str, account_id: &str) -> CredentialRoles {
    CredentialRoles {
        roles: roles
            .into_iter()
            .map(|r| {
                let role_arn = credential_role_arn(&r.template, cluster_id, account_id);
                (
                    r.purpose,
                    CredentialRoleView {
                        template: r.template,
                        role_arn,
                    },
                )
            })
            .collect(),
    }
}

/// The cluster's functional roles, with the role ARNs they give it.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/credential-roles", tag = "Clusters",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = CredentialRoles), (status = "default", body = crate::error::Status)))]
async fn get_credential_roles(
    State(st): State<AppState>,
    ClusterScope { cluster_id, .. }: ClusterScope<access::ReadCredentialRoles>,
) -> ApiResult<Json<CredentialRoles>> {
    let c = st.store.get_live_cluster(&cluster_id).await?;
    Ok(Json(view(c.credential_roles, &c.id, &c.account_id)))
}

/// Replace the cluster's functional roles (`{}` clears them). Each template must expand, with
/// this cluster's id and account, to an IAM role ARN whose name fits 64 characters.
#[utoipa::path(put, path = "/api/v1/clusters/{cluster_id}/credential-roles", tag = "Clusters",
    params(("cluster_id" = String, Path)), request_body = CredentialRolesRequest,
    responses((status = 200, body = CredentialRoles), (status = "default", body = crate::error::Status)))]
async fn put_credential_roles(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteCredentialRoles>,
    AppJson(req): AppJson<CredentialRolesRequest>,
) -> ApiResult<Json<CredentialRoles>> {
    if req.roles.len() > MAX_CREDENTIAL_ROLES {
        return Err(ApiError::invalid(
            "roles",
            format!(
                "roles: {} given; a cluster holds at most {MAX_CREDENTIAL_ROLES}",
                req.roles.len()
            ),
        ));
    }
    let mut parsed = Vec::with_capacity(req.roles.len());
    for (purpose, template) in &req.roles {
        let field = format!("roles.{purpose}");
        let invalid = |e: perimeter_creds::FunctionalRoleError| {
            ApiError::invalid(field.clone(), format!("{field}: {e}"))
        };
        purpose.parse::<RolePurpose>().map_err(invalid)?;
        parsed.push((purpose, template.parse::<RoleTemplate>().map_err(invalid)?));
    }
    // The real identity: a cluster whose account is no AWS account, or an id longer than the
    // one the templates were checked with, is refused here.
    let cluster = st.store.get_live_cluster(&cluster_id).await?;
    let id = ClusterIdentity {
        cluster_id: &cluster.id,
        account_id: &cluster.account_id,
    };
    let mut roles = Vec::with_capacity(parsed.len());
    for (purpose, template) in parsed {
        template.expand(&id).map_err(|e| {
            let field = format!("roles.{purpose}");
            ApiError::invalid(field.clone(), format!("{field}: for this cluster, {e}"))
        })?;
        roles.push(CredentialRole {
            purpose: purpose.clone(),
            template: template.as_str().to_string(),
        });
    }
    let roles = st
        .store
        .put_credential_roles(
            &cluster_id,
            &roles,
            &audit(&p, "AUDIT_LOG_ACTION_SET_CREDENTIAL_ROLES", &req),
        )
        .await?;
    Ok(Json(view(roles, &cluster.id, &cluster.account_id)))
}

//! Service accounts, API keys, role bindings, and the audit log.

use axum::Json;
use axum::extract::{Path, State};
use perimeter_store::{AuditQuery, RoleBinding};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{
    Need, ORG_ROLES, ROLES, generate_key, hash_secret, may_grant, protected, require,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, Auth, PageQuery, Query, uuid_param};
use crate::model::{
    ApiKey, BuiltInRole, CreateApiKeyResponse, GetAllRolesForUserResponse, ListApiKeysResponse,
    ListAuditLogsResponse, ListServiceAccountsResponse, ServiceAccount,
};
use crate::{AppState, audit};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_service_accounts, create_service_account))
        .routes(routes!(
            get_service_account,
            update_service_account,
            delete_service_account
        ))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(get_api_key, update_api_key, delete_api_key))
        .routes(routes!(get_roles, set_roles))
        .routes(routes!(list_audit_logs))
        .routes(routes!(whoami))
}

/// ext: who the calling key is, and what it may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmIResponse {
    pub service_account_id: String,
    pub service_account_name: String,
    pub api_key_id: String,
    /// The account's role bindings, as `GET /api/v1/roles/{user_id}` gives them.
    pub roles: Vec<BuiltInRole>,
}

/// ext: the calling key's service account and roles. Any valid key may ask about itself, so a
/// client (the console) can show what its key may change before it tries.
#[utoipa::path(get, path = "/api/v1/whoami", tag = "Identity",
    responses((status = 200, body = WhoAmIResponse), (status = "default", body = crate::error::Status)))]
async fn whoami(Auth(p): Auth) -> Json<WhoAmIResponse> {
    Json(WhoAmIResponse {
        roles: p.roles.iter().map(BuiltInRole::from).collect(),
        service_account_id: p.service_account_id,
        service_account_name: p.service_account_name,
        api_key_id: p.key_id,
    })
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccountRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "crate::extract::null_as_empty")]
    pub roles: Vec<BuiltInRole>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServiceAccountSpecification {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    pub name: String,
    pub service_account_id: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApiKeySpecification {
    pub name: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesForUserRequest {
    #[serde(deserialize_with = "crate::extract::null_as_empty")]
    pub roles: Vec<BuiltInRole>,
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApiKeysQuery {
    /// Only the keys of this service account.
    #[serde(default)]
    pub service_account_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQueryParams {
    /// RFC 3339 timestamp to start from (inclusive).
    #[serde(default)]
    pub starting_from: Option<String>,
    /// `ASC` (default) or `DESC`.
    #[serde(default)]
    pub sort_order: Option<String>,
    /// At most 1000 (default 200).
    #[serde(default)]
    pub limit: Option<String>,
}

/// Why `c` may not appear in a name people read, if it may not: control and format characters
/// (bidi overrides such as U+202E, zero-width characters), line and paragraph separators,
/// private-use, surrogate and unassigned code points.
fn unprintable(c: char) -> Option<&'static str> {
    use unicode_properties::{GeneralCategory as G, UnicodeGeneralCategory};
    match c.general_category() {
        G::Control => Some("a control character"),
        G::Format => Some("a format character (bidi control or invisible)"),
        G::LineSeparator | G::ParagraphSeparator => Some("a line break"),
        G::PrivateUse | G::Surrogate | G::Unassigned => Some("not a printable character"),
        _ => None,
    }
}

/// A name people read in lists and the audit log (of a service account, an API key): 1-`max`
/// bytes of printable characters, no markup (`<`, `>`), no space at either end, so that what is
/// shown is what it is.
fn validate_name(field: &str, v: &str, max: usize) -> ApiResult<()> {
    let bad = |why: String| {
        Err(ApiError::invalid(
            field,
            format!("{field} {why}; use 1-{max} bytes of printable characters"),
        ))
    };
    if v.is_empty() || v.len() > max {
        return bad(format!("has {} bytes", v.len()));
    }
    if let Some((c, why)) = v.chars().find_map(|c| unprintable(c).map(|w| (c, w))) {
        return bad(format!("holds U+{:04X}, {why}", c as u32));
    }
    if v.contains(['<', '>']) {
        return bad("holds markup (< or >)".into());
    }
    if v.starts_with(char::is_whitespace) || v.ends_with(char::is_whitespace) {
        return bad("begins or ends with a space".into());
    }
    Ok(())
}

/// A description: at most 1024 bytes, printable but for line breaks and tabs.
fn validate_description(v: &str) -> ApiResult<()> {
    if v.len() > 1024 {
        return Err(ApiError::invalid(
            "description",
            "description must be at most 1024 characters",
        ));
    }
    let found = v
        .chars()
        .filter(|c| !matches!(c, '\n' | '\t'))
        .find_map(|c| unprintable(c).map(|w| (c, w)));
    if let Some((c, why)) = found {
        return Err(ApiError::invalid(
            "description",
            format!(
                "description holds U+{:04X}, {why}; use printable characters, line breaks and tabs",
                c as u32
            ),
        ));
    }
    Ok(())
}

/// Parse bindings: known role names, ORGANIZATION (no id, or an empty one) or CLUSTER (UUID id)
/// scope; the organization roles (ORG_ADMIN, CLUSTER_CREATOR) at ORGANIZATION scope only.
/// Nothing is widened or dropped: a binding means what it says or is a 400.
fn bindings(roles: &[BuiltInRole]) -> ApiResult<Vec<RoleBinding>> {
    roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !ROLES.contains(&r.name.as_str()) {
                return Err(ApiError::invalid(
                    format!("roles[{i}].name"),
                    format!(
                        "roles[{i}].name: {:?} is not a role; use one of {}",
                        r.name,
                        ROLES.join(", ")
                    ),
                ));
            }
            let id = match (r.resource.resource_type.as_str(), r.resource.id.as_deref()) {
                ("ORGANIZATION", None | Some("")) => String::new(),
                ("ORGANIZATION", Some(id)) => {
                    return Err(ApiError::invalid(
                        format!("roles[{i}].resource.id"),
                        format!(
                            "roles[{i}].resource.id: an ORGANIZATION binding covers every \
                             cluster and takes no id (got {id:?}); for one cluster use type CLUSTER"
                        ),
                    ));
                }
                ("CLUSTER", Some(_)) if ORG_ROLES.contains(&r.name.as_str()) => {
                    return Err(ApiError::invalid(
                        format!("roles[{i}].resource.type"),
                        format!(
                            "roles[{i}].resource.type: {} is an organization role; bind it \
                             with type ORGANIZATION",
                            r.name
                        ),
                    ));
                }
                ("CLUSTER", Some(id)) => {
                    uuid_param(&format!("roles[{i}].resource.id"), id)?;
                    id.to_string()
                }
                ("CLUSTER", None) => {
                    return Err(ApiError::invalid(
                        format!("roles[{i}].resource.id"),
                        "a CLUSTER binding needs the cluster id",
                    ));
                }
                (t, _) => {
                    return Err(ApiError::invalid(
                        format!("roles[{i}].resource.type"),
                        format!("resource type {t:?} must be ORGANIZATION or CLUSTER"),
                    ));
                }
            };
            Ok(RoleBinding {
                role: r.name.clone(),
                resource_type: r.resource.resource_type.clone(),
                resource_id: id,
            })
        })
        .collect()
}

/// Create a service account with its role bindings.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(post, path = "/api/v1/service-accounts", tag = "Identity", request_body = CreateServiceAccountRequest,
    responses((status = 200, body = ServiceAccount), (status = "default", body = crate::error::Status)))]
async fn create_service_account(
    State(st): State<AppState>,
    Auth(p): Auth,
    AppJson(req): AppJson<CreateServiceAccountRequest>,
) -> ApiResult<Json<ServiceAccount>> {
    validate_name("name", &req.name, 128)?;
    validate_description(&req.description)?;
    let roles = bindings(&req.roles)?;
    require(&p, Need::Identity, None)?;
    may_grant(&p, &roles)?;
    let sa = st
        .store
        .create_service_account(
            &req.name,
            &req.description,
            &p.service_account_name,
            &roles,
            &audit(&p, "AUDIT_LOG_ACTION_CREATE_SERVICE_ACCOUNT", &req),
        )
        .await?;
    Ok(Json(sa.into()))
}

/// List service accounts.
#[utoipa::path(get, path = "/api/v1/service-accounts", tag = "Identity", params(PageQuery),
    responses((status = 200, body = ListServiceAccountsResponse), (status = "default", body = crate::error::Status)))]
async fn list_service_accounts(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListServiceAccountsResponse>> {
    let paging = pq.paging(&st.store, &p, "service-accounts", &[]).await?;
    require(&p, Need::Identity, None)?;
    let page = st.store.list_service_accounts(&paging.req).await?;
    let pagination = paging.pagination(&page);
    Ok(Json(ListServiceAccountsResponse {
        service_accounts: page.items.into_iter().map(Into::into).collect(),
        pagination,
    }))
}

/// Get a service account.
#[utoipa::path(get, path = "/api/v1/service-accounts/{id}", tag = "Identity", params(("id" = String, Path)),
    responses((status = 200, body = ServiceAccount), (status = "default", body = crate::error::Status)))]
async fn get_service_account(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ServiceAccount>> {
    uuid_param("id", &id)?;
    require(&p, Need::Identity, None)?;
    Ok(Json(st.store.get_service_account(&id).await?.into()))
}

/// Rename or re-describe a service account.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(patch, path = "/api/v1/service-accounts/{id}", tag = "Identity", params(("id" = String, Path)),
    request_body = UpdateServiceAccountSpecification,
    responses((status = 200, body = ServiceAccount), (status = "default", body = crate::error::Status)))]
async fn update_service_account(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<UpdateServiceAccountSpecification>,
) -> ApiResult<Json<ServiceAccount>> {
    uuid_param("id", &id)?;
    if let Some(n) = &req.name {
        validate_name("name", n, 128)?;
    }
    if let Some(d) = &req.description {
        validate_description(d)?;
    }
    require(&p, Need::Identity, None)?;
    let sa = st
        .store
        .update_service_account(
            &id,
            req.name.as_deref(),
            req.description.as_deref(),
            protected(&p),
            &audit(&p, "AUDIT_LOG_ACTION_UPDATE_SERVICE_ACCOUNT", &req),
        )
        .await?;
    st.principals.clear();
    Ok(Json(sa.into()))
}

/// Delete a service account with its keys.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(delete, path = "/api/v1/service-accounts/{id}", tag = "Identity", params(("id" = String, Path)),
    responses((status = 200, body = ServiceAccount), (status = "default", body = crate::error::Status)))]
async fn delete_service_account(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ServiceAccount>> {
    uuid_param("id", &id)?;
    require(&p, Need::Identity, None)?;
    if id == p.service_account_id {
        return Err(ApiError::precondition(
            "id",
            "a service account cannot delete itself; use another admin account",
        ));
    }
    let payload = serde_json::json!({"id": id});
    let gone = st
        .store
        .delete_service_account(
            &id,
            protected(&p),
            &audit(&p, "AUDIT_LOG_ACTION_DELETE_SERVICE_ACCOUNT", &payload),
        )
        .await?;
    // After the delete: a request racing it cannot leave its keys cached.
    st.principals.clear();
    Ok(Json(gone.into()))
}

/// Create an API key; the secret is shown only in this answer.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "Identity", request_body = CreateApiKeyRequest,
    responses((status = 200, body = CreateApiKeyResponse), (status = "default", body = crate::error::Status)))]
async fn create_api_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    AppJson(req): AppJson<CreateApiKeyRequest>,
) -> ApiResult<Json<CreateApiKeyResponse>> {
    validate_name("name", &req.name, 128)?;
    uuid_param("service_account_id", &req.service_account_id)?;
    require(&p, Need::Identity, None)?;
    let (id, secret) = generate_key();
    let key = st
        .store
        .create_api_key(
            &id,
            &req.service_account_id,
            &req.name,
            &hash_secret(&secret),
            protected(&p),
            &audit(&p, "AUDIT_LOG_ACTION_CREATE_API_KEY", &(&req, &id)),
        )
        .await?;
    Ok(Json(CreateApiKeyResponse {
        api_key: key.into(),
        secret,
    }))
}

/// List API keys (never their secrets).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "Identity", params(ApiKeysQuery, PageQuery),
    responses((status = 200, body = ListApiKeysResponse), (status = "default", body = crate::error::Status)))]
async fn list_api_keys(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<ApiKeysQuery>,
    Query(pq): Query<PageQuery>,
) -> ApiResult<Json<ListApiKeysResponse>> {
    if let Some(sa) = &q.service_account_id {
        uuid_param("service_account_id", sa)?;
    }
    let paging = pq
        .paging(
            &st.store,
            &p,
            "api-keys",
            &[(
                "service_account_id",
                q.service_account_id.as_deref().unwrap_or_default(),
            )],
        )
        .await?;
    require(&p, Need::Identity, None)?;
    let page = st
        .store
        .list_api_keys(q.service_account_id.as_deref(), &paging.req)
        .await?;
    let pagination = paging.pagination(&page);
    Ok(Json(ListApiKeysResponse {
        api_keys: page.items.into_iter().map(Into::into).collect(),
        pagination,
    }))
}

/// Get an API key.
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "Identity", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = "default", body = crate::error::Status)))]
async fn get_api_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    require(&p, Need::Identity, None)?;
    Ok(Json(st.store.get_api_key(&id).await?.into()))
}

/// Rename an API key.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(patch, path = "/api/v1/api-keys/{id}", tag = "Identity", params(("id" = String, Path)), request_body = UpdateApiKeySpecification,
    responses((status = 200, body = ApiKey), (status = "default", body = crate::error::Status)))]
async fn update_api_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<UpdateApiKeySpecification>,
) -> ApiResult<Json<ApiKey>> {
    validate_name("name", &req.name, 128)?;
    require(&p, Need::Identity, None)?;
    Ok(Json(
        st.store
            .rename_api_key(
                &id,
                &req.name,
                protected(&p),
                &audit(&p, "AUDIT_LOG_ACTION_UPDATE_API_KEY", &(&id, &req)),
            )
            .await?
            .into(),
    ))
}

/// Delete (revoke) an API key at once.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "Identity", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = "default", body = crate::error::Status)))]
async fn delete_api_key(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKey>> {
    require(&p, Need::Identity, None)?;
    let payload = serde_json::json!({"id": id});
    let gone = st
        .store
        .delete_api_key(
            &id,
            protected(&p),
            &audit(&p, "AUDIT_LOG_ACTION_DELETE_API_KEY", &payload),
        )
        .await?;
    // After the delete: a request racing it cannot leave the key cached.
    st.principals.clear();
    Ok(Json(gone.into()))
}

/// A service account's role bindings.
#[utoipa::path(get, path = "/api/v1/roles/{user_id}", tag = "Identity", params(("user_id" = String, Path)),
    responses((status = 200, body = GetAllRolesForUserResponse), (status = "default", body = crate::error::Status)))]
async fn get_roles(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<GetAllRolesForUserResponse>> {
    uuid_param("user_id", &user_id)?;
    require(&p, Need::Identity, None)?;
    let sa = st.store.get_service_account(&user_id).await?;
    Ok(Json(GetAllRolesForUserResponse {
        roles: sa.roles.iter().map(BuiltInRole::from).collect(),
        group_roles: vec![],
    }))
}

/// Replace a service account's role bindings.
///
/// PLATFORM_OPERATOR is the platform's: only a caller holding it on the organization may grant
/// it, or change an account that holds it (its roles, name, keys, existence); others get 403.
#[utoipa::path(put, path = "/api/v1/roles/{user_id}", tag = "Identity", params(("user_id" = String, Path)), request_body = SetRolesForUserRequest,
    responses((status = 200, body = GetAllRolesForUserResponse), (status = "default", body = crate::error::Status)))]
async fn set_roles(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(user_id): Path<String>,
    AppJson(req): AppJson<SetRolesForUserRequest>,
) -> ApiResult<Json<GetAllRolesForUserResponse>> {
    uuid_param("user_id", &user_id)?;
    crate::extract::agrees("user_id", &req.user_id, &user_id)?;
    let roles = bindings(&req.roles)?;
    require(&p, Need::Identity, None)?;
    may_grant(&p, &roles)?;
    let sa = st
        .store
        .set_roles(
            &user_id,
            &roles,
            protected(&p),
            &audit(&p, "AUDIT_LOG_ACTION_ASSIGN_USER_ROLE", &(&user_id, &req)),
        )
        .await?;
    st.principals.clear();
    Ok(Json(GetAllRolesForUserResponse {
        roles: sa.roles.iter().map(BuiltInRole::from).collect(),
        group_roles: vec![],
    }))
}

/// The audit log: every accepted change, secrets redacted.
#[utoipa::path(get, path = "/api/v1/auditlogevents", tag = "Audit", params(AuditQueryParams),
    responses((status = 200, body = ListAuditLogsResponse), (status = "default", body = crate::error::Status)))]
async fn list_audit_logs(
    State(st): State<AppState>,
    Auth(p): Auth,
    Query(q): Query<AuditQueryParams>,
) -> ApiResult<Json<ListAuditLogsResponse>> {
    let limit = match q.limit.as_deref() {
        None | Some("") => 200,
        Some(s) => match s.parse::<u32>() {
            Ok(n @ 1..=1000) => n,
            _ => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be a whole number from 1 to 1000, got {s:?}"),
                ));
            }
        },
    };
    let descending = match q.sort_order.as_deref() {
        None | Some("") | Some("ASC") => false,
        Some("DESC") => true,
        Some(o) => {
            return Err(ApiError::invalid(
                "sort_order",
                format!("sort_order must be ASC or DESC, got {o:?}"),
            ));
        }
    };
    let starting_from = match q.starting_from.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    ApiError::invalid(
                        "starting_from",
                        format!("starting_from must be an RFC 3339 timestamp, got {s:?}"),
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    require(&p, Need::Identity, None)?;
    let (entries, next) = st
        .store
        .list_audit(&AuditQuery {
            starting_from,
            descending,
            limit,
        })
        .await?;
    Ok(Json(ListAuditLogsResponse {
        entries: entries.into_iter().map(Into::into).collect(),
        next_starting_from: next,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_print_as_what_they_are() {
        for ok in [
            "admin",
            "ci/cd bot (prod) #2",
            "Équipe données",
            "デプロイ",
            "a b",
            "R&D",
        ] {
            assert!(validate_name("name", ok, 128).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            " admin",
            "admin\u{a0}",
            "admin\u{202e}nimda",
            "\u{2066}x",
            "a\u{200d}b",
            "a\u{2028}b",
            "a\u{e000}b",
            "tab\there",
            "<i>x</i>",
            &"x".repeat(129),
        ] {
            let e = validate_name("name", bad, 128).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("name"), "{bad:?}");
        }
        assert!(validate_description("two\nlines\tand a tab").is_ok());
        assert!(validate_description("rtl \u{202e} override").is_err());
    }
}

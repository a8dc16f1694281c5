//! Egress rules and the egress traffic policy of a cluster.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use perimeter_policy::{RuleInput, validate_rule};
use perimeter_store::{EgressRule as StoreRule, RuleSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Need, allowed, require};
use crate::error::{ApiError, ApiResult, Code};
use crate::extract::{AppJson, Auth, ClusterScope, PageQuery, Query, access, agrees, uuid_param};
use crate::model::{Empty, GetEgressRuleResponse, ListEgressRulesResponse, RuleResponse};
use crate::{AppState, audit};
use perimeter_store::Principal;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, add_rule))
        .routes(routes!(get_rule, edit_rule, delete_rule))
        .routes(routes!(set_traffic_policy))
        .routes(routes!(validate_rule_request))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEgressRuleRequest {
    pub name: String,
    /// `FQDN` or `CIDR`.
    #[serde(rename = "type")]
    pub rule_type: String,
    pub destination: String,
    #[serde(default)]
    pub description: String,
    /// Allowed TCP ports; absent or empty allows every port.
    #[serde(default)]
    pub ports: Option<Vec<i64>>,
    /// ext: enforced path patterns (`/exact` or `/prefix/*`), FQDN rules only.
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// ext: an operator-managed rule; only PLATFORM_OPERATOR may send `true`.
    #[serde(default)]
    pub crl_managed: Option<bool>,
    /// Accepted when equal to the path's cluster id.
    #[serde(default)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditEgressRuleRequest {
    #[serde(default)]
    pub destination: Option<String>,
    #[serde(default, rename = "type")]
    pub rule_type: Option<String>,
    #[serde(default)]
    pub ports: Option<Vec<i64>>,
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub rule_id: Option<String>,
    /// Names cannot change; sending the current name is accepted.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetEgressTrafficPolicyRequest {
    /// true: unrestricted egress; false: default-deny, managed by egress rules.
    pub allow_all: bool,
    /// ext: with `allow_all: false`, let traffic flow but report what default-deny would refuse.
    #[serde(default)]
    pub report_only: Option<bool>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IdempotencyQuery {
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

fn validate_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!(
                "name: {name:?} must be 1-128 characters of letters, digits, space, '-', '_' or '.'"
            ),
        ))
    }
}

fn validate_description(d: &str) -> ApiResult<()> {
    if d.len() > 1024 || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::invalid(
            "description",
            "description must be at most 1024 printable characters",
        ));
    }
    Ok(())
}

/// The checks of a new rule's fields, in the order a create makes them (name, description,
/// then the rule itself): shared by the create and its dry run, so both say the same.
fn checked_rule(
    name: Option<&str>,
    description: &str,
    rule_type: &str,
    destination: &str,
    ports: Option<&[i64]>,
    paths: Option<&[String]>,
) -> ApiResult<perimeter_policy::ValidatedRule> {
    if let Some(name) = name {
        validate_name(name)?;
    }
    validate_description(description)?;
    Ok(validate_rule(&RuleInput {
        rule_type,
        destination,
        ports,
        paths,
    })?)
}

/// Ports as validated, but in the order the client gave them (the docs echo `[443, 80]`).
fn ordered_ports(given: Option<&[i64]>, validated: &[u16]) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::with_capacity(validated.len());
    for p in given.unwrap_or_default() {
        if let Ok(p) = u16::try_from(*p)
            && validated.contains(&p)
            && !out.contains(&p)
        {
            out.push(p);
        }
    }
    out
}

/// A stored answer for a repeated idempotency key, if the request is the same; a conflict if
/// the key was used for a different request.
async fn replay(
    st: &AppState,
    scope: &str,
    key: Option<&str>,
    body: &impl Serialize,
) -> ApiResult<Option<(String, String)>> {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Ok(None);
    };
    if key.len() > 256 {
        return Err(ApiError::invalid(
            "idempotency_key",
            "idempotency_key must be at most 256 characters",
        ));
    }
    let hash = format!(
        "{:x}",
        Sha256::digest(serde_json::to_vec(body).unwrap_or_default())
    );
    match st.store.idempotent_response(scope, key).await? {
        Some((h, resp)) if h == hash => Ok(Some((hash, resp))),
        Some(_) => Err(ApiError::new(
            Code::AlreadyExists,
            format!("idempotency_key {key:?} was already used for a different request"),
        )
        .with_field("idempotency_key")),
        None => Ok(Some((hash, String::new()))),
    }
}

/// Editing or deleting a rule needs a customer writer role, or PLATFORM_OPERATOR (whose rules
/// only it may change); which one applies is known once the rule is read.
fn require_rule_writer(p: &Principal, cluster_id: &str) -> ApiResult<()> {
    if allowed(p, Need::OperatorRules, Some(cluster_id)) {
        return Ok(());
    }
    require(p, Need::WriteNetworking, Some(cluster_id))
}

fn require_for_rule(p: &Principal, cluster_id: &str, rule: &StoreRule) -> ApiResult<()> {
    if rule.crl_managed {
        require(p, Need::OperatorRules, Some(cluster_id)).map_err(|e| {
            ApiError::forbidden(format!(
                "egress rule {:?} is operator-managed (crl_managed); {}",
                rule.name, e.message
            ))
        })
    } else {
        require(p, Need::WriteNetworking, Some(cluster_id))
    }
}

/// ext: a rule as it would be sent, checked without storing it.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateEgressRuleRequest {
    /// Checked when given (an edit sends none: names cannot change).
    #[serde(default)]
    pub name: Option<String>,
    /// `FQDN` or `CIDR`.
    #[serde(rename = "type")]
    pub rule_type: String,
    pub destination: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub ports: Option<Vec<i64>>,
    #[serde(default)]
    pub paths: Option<Vec<String>>,
    /// Accepted and ignored, so a create's body can be checked as it is.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// An operator-managed rule: checked against the caller's roles as a create would be.
    #[serde(default)]
    pub crl_managed: Option<bool>,
    #[serde(default)]
    pub cluster_id: Option<String>,
}

/// ext: what a create or edit with these fields would say, without storing anything.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateEgressRuleResponse {
    /// The destination as it would be stored (lower case, trailing dot removed).
    pub destination: String,
    /// The warnings a create or edit would answer with (apex-only name, every port).
    pub warnings: Vec<String>,
}

/// ext: check a rule's fields without storing it: the same 400s, with the field named, and
/// the same warnings as a create or edit, so a client can show them before saving. Whoever may
/// read the cluster's rules may ask (an operator-managed rule needs PLATFORM_OPERATOR, as its
/// create does). Name uniqueness and the cluster lock are not checked (they can change before
/// the save).
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules/validate", tag = "Egress rules",
    params(("cluster_id" = String, Path)), request_body = ValidateEgressRuleRequest,
    responses((status = 200, body = ValidateEgressRuleResponse), (status = "default", body = crate::error::Status)))]
async fn validate_rule_request(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(cluster_id): Path<String>,
    AppJson(req): AppJson<ValidateEgressRuleRequest>,
) -> ApiResult<Json<ValidateEgressRuleResponse>> {
    // The order of a create: the request (400), then roles (403), then existence (404).
    uuid_param("cluster_id", &cluster_id)?;
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    let v = checked_rule(
        req.name.as_deref(),
        &req.description,
        &req.rule_type,
        &req.destination,
        req.ports.as_deref(),
        req.paths.as_deref(),
    )?;
    require(&p, Need::ReadNetworking, Some(&cluster_id))?;
    if req.crl_managed == Some(true) {
        require(&p, Need::OperatorRules, Some(&cluster_id))?;
    }
    st.store.get_live_cluster(&cluster_id).await?;
    Ok(Json(ValidateEgressRuleResponse {
        destination: v.destination.to_string(),
        warnings: v.warnings,
    }))
}

fn to_rule_response(rule: StoreRule, warnings: Vec<String>) -> RuleResponse {
    RuleResponse {
        rule: rule.into(),
        warnings,
    }
}

/// Add an egress rule.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules", tag = "Egress rules",
    params(("cluster_id" = String, Path)), request_body = AddEgressRuleRequest,
    responses((status = 200, body = RuleResponse), (status = "default", body = crate::error::Status)))]
async fn add_rule(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path(cluster_id): Path<String>,
    AppJson(req): AppJson<AddEgressRuleRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    uuid_param("cluster_id", &cluster_id)?;
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    let v = checked_rule(
        Some(&req.name),
        &req.description,
        &req.rule_type,
        &req.destination,
        req.ports.as_deref(),
        req.paths.as_deref(),
    )?;
    let crl = req.crl_managed.unwrap_or(false);
    require(
        &p,
        if crl {
            Need::OperatorRules
        } else {
            Need::WriteNetworking
        },
        Some(&cluster_id),
    )?;
    let scope = format!("add-rule/{cluster_id}");
    let replayed = replay(&st, &scope, req.idempotency_key.as_deref(), &req).await?;
    if let Some((_, resp)) = &replayed
        && !resp.is_empty()
    {
        return Ok(Json(
            serde_json::from_str(resp).map_err(ApiError::internal)?,
        ));
    }
    let spec = RuleSpec {
        destination: v.destination,
        description: req.description.clone(),
        ports: ordered_ports(req.ports.as_deref(), &v.ports),
        paths: v.paths,
    };
    let rule = st
        .store
        .create_rule(
            &cluster_id,
            &req.name,
            &spec,
            crl,
            &audit(&p, "AUDIT_LOG_ACTION_ADD_EGRESS_RULE", &req),
        )
        .await?;
    let body =
        serde_json::to_value(to_rule_response(rule, v.warnings)).map_err(ApiError::internal)?;
    if let (Some((hash, _)), Some(key)) = (replayed, req.idempotency_key.as_deref()) {
        st.store
            .remember_response(&scope, key, &hash, &body.to_string())
            .await?;
    }
    st.changed();
    Ok(Json(body))
}

/// List a cluster's egress rules, sorted by name.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules", tag = "Egress rules",
    params(("cluster_id" = String, Path), PageQuery),
    responses((status = 200, body = ListEgressRulesResponse), (status = "default", body = crate::error::Status)))]
async fn list_rules(
    State(st): State<AppState>,
    ClusterScope {
        principal,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    Query(pq): Query<PageQuery>,
) -> ApiResult<axum::response::Response> {
    let paging = pq
        .paging(
            &st.store,
            &principal,
            &format!("clusters/{cluster_id}/egress-rules"),
            &[],
        )
        .await?;
    let req = &paging.req;
    // One indexed read tells whether the cluster is live and whether a cached page is current:
    // the epoch changes in the same transaction as any change of the cluster's rules.
    let epoch = st.store.rules_epoch(&cluster_id).await?;
    // The answer's tokens are bound to the caller: so is the cache entry.
    let key = format!(
        "{cluster_id}|{}|{:?}|{:?}|{}|{}",
        principal.service_account_id, req.after, req.before, req.limit, req.descending
    );
    let body = st
        .rule_pages
        .fill(key, epoch, || async {
            let page = st.store.list_rules(&cluster_id, req).await?;
            let pagination = paging.pagination(&page);
            let resp = ListEgressRulesResponse {
                rules: page.items.into_iter().map(Into::into).collect(),
                pagination,
            };
            Ok::<_, ApiError>(axum::body::Bytes::from(
                serde_json::to_vec(&resp).map_err(ApiError::internal)?,
            ))
        })
        .await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// Get one egress rule (answers with the lower-case key `rule`).
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules/{rule_id}", tag = "Egress rules",
    params(("cluster_id" = String, Path), ("rule_id" = String, Path)),
    responses((status = 200, body = GetEgressRuleResponse), (status = "default", body = crate::error::Status)))]
async fn get_rule(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    Path((_, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<GetEgressRuleResponse>> {
    uuid_param("rule_id", &rule_id)?;
    st.store.get_live_cluster(&cluster_id).await?;
    Ok(Json(GetEgressRuleResponse {
        rule: st.store.get_rule(&cluster_id, &rule_id).await?.into(),
    }))
}

/// Edit an egress rule (its name cannot change).
#[utoipa::path(patch, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules/{rule_id}", tag = "Egress rules",
    params(("cluster_id" = String, Path), ("rule_id" = String, Path)), request_body = EditEgressRuleRequest,
    responses((status = 200, body = RuleResponse), (status = "default", body = crate::error::Status)))]
async fn edit_rule(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((cluster_id, rule_id)): Path<(String, String)>,
    AppJson(req): AppJson<EditEgressRuleRequest>,
) -> ApiResult<Json<RuleResponse>> {
    uuid_param("cluster_id", &cluster_id)?;
    uuid_param("rule_id", &rule_id)?;
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    agrees("rule_id", &req.rule_id, &rule_id)?;
    if let Some(d) = &req.description {
        validate_description(d)?;
    }
    require_rule_writer(&p, &cluster_id)?;
    st.store.get_live_cluster(&cluster_id).await?;
    let cur = st.store.get_rule(&cluster_id, &rule_id).await?;
    require_for_rule(&p, &cluster_id, &cur)?;
    if let Some(n) = &req.name
        && n != &cur.name
    {
        return Err(ApiError::invalid(
            "name",
            format!(
                "name cannot change (rule is named {:?}); create a new rule instead",
                cur.name
            ),
        ));
    }
    let rule_type = req
        .rule_type
        .clone()
        .unwrap_or_else(|| cur.rule_type.as_str().to_string());
    let destination = req
        .destination
        .clone()
        .unwrap_or_else(|| cur.destination.to_string());
    let cur_ports: Vec<i64> = cur.ports.iter().map(|&p| p as i64).collect();
    let ports = req.ports.clone().unwrap_or(cur_ports);
    // A type change to CIDR drops paths unless new ones are given (CIDR rules carry none).
    let paths = match (&req.paths, rule_type.eq_ignore_ascii_case("CIDR")) {
        (Some(p), _) => p.clone(),
        (None, true) => vec![],
        (None, false) => cur.paths.iter().map(ToString::to_string).collect(),
    };
    let v = validate_rule(&RuleInput {
        rule_type: &rule_type,
        destination: &destination,
        ports: Some(&ports),
        paths: Some(&paths),
    })?;
    let spec = RuleSpec {
        destination: v.destination,
        description: req.description.clone().unwrap_or(cur.description),
        ports: ordered_ports(Some(&ports), &v.ports),
        paths: v.paths,
    };
    let rule = st
        .store
        .edit_rule(
            &cluster_id,
            &rule_id,
            &spec,
            &audit(&p, "AUDIT_LOG_ACTION_EDIT_EGRESS_RULE", &req),
        )
        .await?;
    st.changed();
    Ok(Json(to_rule_response(rule, v.warnings)))
}

/// Delete an egress rule: answers with the rule in `PENDING_DELETION`.
#[utoipa::path(delete, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules/{rule_id}", tag = "Egress rules",
    params(("cluster_id" = String, Path), ("rule_id" = String, Path), IdempotencyQuery),
    responses((status = 200, body = RuleResponse), (status = "default", body = crate::error::Status)))]
async fn delete_rule(
    State(st): State<AppState>,
    Auth(p): Auth,
    Path((cluster_id, rule_id)): Path<(String, String)>,
    Query(q): Query<IdempotencyQuery>,
) -> ApiResult<Json<RuleResponse>> {
    uuid_param("cluster_id", &cluster_id)?;
    uuid_param("rule_id", &rule_id)?;
    require_rule_writer(&p, &cluster_id)?;
    st.store.get_live_cluster(&cluster_id).await?;
    let scope = format!("delete-rule/{cluster_id}/{rule_id}");
    let replayed = replay(&st, &scope, q.idempotency_key.as_deref(), &rule_id).await?;
    if let Some((_, resp)) = &replayed
        && !resp.is_empty()
    {
        let rule: crate::model::EgressRule =
            serde_json::from_str(resp).map_err(ApiError::internal)?;
        return Ok(Json(RuleResponse {
            rule,
            warnings: vec![],
        }));
    }
    let cur = st.store.get_rule(&cluster_id, &rule_id).await?;
    require_for_rule(&p, &cluster_id, &cur)?;
    let payload = serde_json::json!({"rule_id": rule_id, "name": cur.name});
    let rule = st
        .store
        .delete_rule(
            &cluster_id,
            &rule_id,
            &audit(&p, "AUDIT_LOG_ACTION_DELETE_EGRESS_RULE", &payload),
        )
        .await?;
    let resp = to_rule_response(rule, vec![]);
    if let (Some((hash, _)), Some(key)) = (replayed, q.idempotency_key.as_deref()) {
        let stored = serde_json::to_string(&resp.rule).map_err(ApiError::internal)?;
        st.store
            .remember_response(&scope, key, &hash, &stored)
            .await?;
    }
    st.changed();
    Ok(Json(resp))
}

/// Set the egress traffic policy. The cluster reads `UPDATING` until every gateway applied it.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/egress-rules/egress-traffic-policy", tag = "Egress rules",
    params(("cluster_id" = String, Path)), request_body = SetEgressTrafficPolicyRequest,
    responses((status = 200, body = Empty), (status = "default", body = crate::error::Status)))]
async fn set_traffic_policy(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteNetworking>,
    AppJson(req): AppJson<SetEgressTrafficPolicyRequest>,
) -> ApiResult<Json<Empty>> {
    agrees("cluster_id", &req.cluster_id, &cluster_id)?;
    let policy = match (req.allow_all, req.report_only.unwrap_or(false)) {
        (true, true) => {
            return Err(ApiError::invalid(
                "report_only",
                "report_only: true needs allow_all: false (report-only reports what default-deny would refuse)",
            ));
        }
        (true, false) => "ALLOW_ALL",
        (false, false) => "DEFAULT_DENY",
        (false, true) => "REPORT_ONLY",
    };
    let cur = st.store.get_live_cluster(&cluster_id).await?;
    let scope = format!("traffic-policy/{cluster_id}");
    let replayed = replay(&st, &scope, req.idempotency_key.as_deref(), &req).await?;
    if replayed.as_ref().is_some_and(|(_, r)| !r.is_empty()) {
        return Ok(Json(Empty {}));
    }
    // Setting the policy it already has (and has applied) changes nothing and locks nothing.
    if cur.egress_policy != policy || cur.egress_policy_updating {
        st.store
            .set_egress_policy(
                &cluster_id,
                policy,
                &audit(&p, "AUDIT_LOG_ACTION_SET_EGRESS_TRAFFIC_POLICY", &req),
            )
            .await?;
    }
    if let (Some((hash, _)), Some(key)) = (replayed, req.idempotency_key.as_deref()) {
        st.store.remember_response(&scope, key, &hash, "{}").await?;
    }
    st.changed();
    Ok(Json(Empty {}))
}

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
        .routes(routes!(egress_check))
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

/// Ports as validated, but in the order the client gave them (the docs echo `[443, 80]`).
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

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressCheckRequest {
    /// A host name, or a canonical IP literal (IPv6 with or without brackets).
    pub destination: String,
    pub port: u16,
    /// The request path, for path rules; without it a destination that only path rules allow
    /// is denied with the reason that a path is needed.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EgressCheckResponse {
    /// Whether the cluster's gateways allow it now.
    pub allowed: bool,
    pub would_allow_under_default_deny: bool,
    /// The rule that decided, if a rule did: for a name, possibly a CIDR rule covering the
    /// address the gateways dial.
    pub rule: Option<crate::model::EgressRule>,
    /// Stable reason name, e.g. `allowed_by_rule`, `no_rule_for_destination`, `special_address`;
    /// `path_rule_never_inspected` when the cluster inspects TLS and only rules with paths
    /// allow a destination on its never-inspect list (the gateways refuse its CONNECT).
    pub reason: String,
    pub warnings: Vec<String>,
    pub snapshot_version: u64,
    /// ext: for a name the gateways resolve before deciding, the addresses they resolved, in the
    /// order they try them, each with its verdict; the first allowed one is dialled. Null for
    /// an IP literal, for a name decided before resolution (no rule could allow it on this
    /// port, or a private endpoint), and for a name that could not be resolved.
    pub addresses: Option<Vec<AddressVerdict>>,
    /// ext: why the gateways cannot resolve the name now (their connections to it fail with
    /// 502 or 504); null when it resolved or did not need to be. The verdict is then the FQDN
    /// rules' word on the name alone.
    pub resolution_error: Option<ResolutionError>,
}

/// ext: one address a name resolved to, and what the gateways decide for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressVerdict {
    pub address: String,
    pub allowed: bool,
    /// Name of the rule that allows this address, if a rule does.
    pub rule_name: Option<String>,
    /// Stable reason name, as for the destination (`special_address` for an address the guard
    /// refuses).
    pub reason: String,
    /// Whether the gateways dial this address: the first allowed one.
    pub dialled: bool,
}

/// ext: why a name could not be resolved.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResolutionError {
    /// `dns_nxdomain`, `dns_no_records`, `dns_timeout` or `dns_failure`, as the gateways'
    /// refusals name it.
    pub reason: String,
    pub message: String,
}

/// What-if: the verdict the cluster's gateways give under the newest compiled snapshot,
/// computed by the same code they run. A name is resolved as the gateways resolve it (same DNS
/// servers and hosts file as `perimeter serve`'s embedded gateways) and judged per address, so
/// a CIDR rule covering its address allows it; the answer lists the addresses with their
/// verdicts. A name that cannot be resolved is not an error: the answer says so. With a path,
/// path rules decide it (inspection on or off: plain HTTP shows its path); a cluster that
/// inspects TLS denies a name on its never-inspect list that only path rules allow
/// (`path_rule_never_inspected`), whatever the path.
#[utoipa::path(post, path = "/api/v1/clusters/{cluster_id}/networking/egress-check", tag = "Egress rules",
    params(("cluster_id" = String, Path)), request_body = EgressCheckRequest,
    responses((status = 200, body = EgressCheckResponse), (status = "default", body = crate::error::Status)))]
async fn egress_check(
    State(st): State<AppState>,
    ClusterScope {
        principal: _,
        cluster_id,
        ..
    }: ClusterScope<access::ReadNetworking>,
    AppJson(req): AppJson<EgressCheckRequest>,
) -> ApiResult<Json<EgressCheckResponse>> {
    use crate::what_if::{
        PATH_RULE_NEVER_INSPECTED, gateway_verdict, governed_by_path_rules, needs_resolution,
        never_inspected,
    };
    use perimeter_policy::{
        Destination, Hostname, TrafficPolicy, normalize_path, parse_ip_literal,
    };
    if req.port == 0 {
        return Err(ApiError::invalid("port", "port must be 1 to 65535"));
    }
    let raw = req.destination.trim();
    let bracketless = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    let looks_ip = bracketless.contains(':')
        || bracketless
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == 'x' || c == 'X');
    let (name, ip) = if looks_ip {
        let ip = parse_ip_literal(bracketless)
            .map_err(|e| ApiError::invalid("destination", format!("destination: {e}")))?;
        (None, Some(ip))
    } else {
        let h: Hostname = raw
            .parse()
            .map_err(|e| ApiError::invalid("destination", format!("destination: {e}")))?;
        (Some(h), None)
    };
    let path = match req.path.as_deref() {
        None => None,
        Some(p) => {
            Some(normalize_path(p).map_err(|e| ApiError::invalid("path", format!("path: {e}")))?)
        }
    };
    st.store.get_live_cluster(&cluster_id).await?;
    let dest = || match (&name, ip) {
        (Some(h), _) => Destination::Name(h),
        (None, Some(ip)) => Destination::Ip(ip),
        (None, None) => unreachable!("one of the two was parsed above"),
    };
    let path = path.as_deref();
    let snap = st
        .snapshots
        .current(&st.store, st.secrets.as_deref(), &cluster_id, None)
        .await?;
    let strict = st
        .snapshots
        .current(
            &st.store,
            st.secrets.as_deref(),
            &cluster_id,
            Some(TrafficPolicy::DefaultDeny),
        )
        .await?;
    // Under TLS inspection, a name on the never-inspect list that only path rules allow is
    // refused at the CONNECT, before resolution, whatever the path.
    let never = never_inspected(&snap, dest(), req.port);
    let strict_never = never_inspected(&strict, dest(), req.port);
    // Resolve only what the gateways would resolve: a name that the target step leaves open.
    let resolution = match (&name, &st.resolver) {
        (Some(h), Some(resolver))
            if (!never && needs_resolution(&snap, dest(), req.port, path))
                || (!strict_never && needs_resolution(&strict, dest(), req.port, path)) =>
        {
            Some(resolver.resolve(h).await)
        }
        _ => None,
    };
    let resolved = match &resolution {
        Some(Ok(addrs)) => Some(addrs.as_slice()),
        _ => None,
    };
    let outcome = gateway_verdict(&snap, dest(), req.port, path, resolved);
    let strict_outcome = gateway_verdict(&strict, dest(), req.port, path, resolved);
    let decision = &outcome.decision;
    let allowed = !never && decision.is_allowed();
    let rule = match decision.rule().filter(|_| !never) {
        Some(r) => st
            .store
            .get_rule(&cluster_id, &r.id)
            .await
            .ok()
            .map(Into::into),
        None => None,
    };
    let mut warnings = Vec::new();
    if name.is_some() && st.resolver.is_none() && !never && !allowed && decision.rule().is_none() {
        warnings.push("a CIDR rule covering the addresses this name resolves to would also allow it; the gateways decide on the resolved address".into());
    }
    if never {
        warnings.push(format!(
            "{} is on the cluster's never-inspect list and only rules with paths allow it: the gateways refuse HTTPS to it at the CONNECT ({PATH_RULE_NEVER_INSPECTED}); plain HTTP requests to it are still decided by their path",
            req.destination.trim()
        ));
    } else if path.is_some()
        && snap.inspection().is_none()
        && governed_by_path_rules(&snap, dest(), req.port)
    {
        warnings.push(
            "only rules with paths allow this destination and the cluster does not inspect TLS: the verdict holds for plain HTTP; HTTPS to it is refused at the CONNECT (path_needs_tls_inspection) until TLS inspection is on".into(),
        );
    }
    let resolution_error = match resolution {
        Some(Err(e)) => {
            warnings.push(format!(
                "the gateways cannot resolve this name now ({e}): connections to it fail until it resolves; the verdict is the FQDN rules' word on the name alone"
            ));
            Some(ResolutionError {
                reason: e.reason.to_string(),
                message: e.message,
            })
        }
        _ => None,
    };
    let addresses = outcome.addresses.filter(|_| !never).map(|list| {
        list.into_iter()
            .map(|a| AddressVerdict {
                address: a.addr.to_string(),
                allowed: a.decision.is_allowed(),
                rule_name: a.decision.rule().map(|r| r.name.to_string()),
                reason: a.decision.reason().as_str().to_string(),
                dialled: a.dialled,
            })
            .collect()
    });
    Ok(Json(EgressCheckResponse {
        allowed,
        would_allow_under_default_deny: !strict_never && strict_outcome.decision.is_allowed(),
        rule,
        reason: if never {
            PATH_RULE_NEVER_INSPECTED.to_string()
        } else {
            decision.reason().as_str().to_string()
        },
        warnings,
        snapshot_version: snap.version(),
        addresses,
        resolution_error,
    }))
}

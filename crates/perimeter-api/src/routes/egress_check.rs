//! What-if for egress (`egress-check`): the verdict the cluster's gateways would give a
//! destination, computed by the code they run.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{AppJson, ClusterScope, access};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(egress_check))
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

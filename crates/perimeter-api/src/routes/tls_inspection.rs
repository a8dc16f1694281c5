//! TLS inspection of a cluster's egress (ext): on or off, the host patterns never inspected, and
//! the cluster's inspection CA, which workloads must trust. The CA is generated on the first
//! enable and kept from then on (turning inspection off and on again keeps it); its private key
//! is sealed under the control plane's secrets key before it reaches the store, and travels
//! opened only in the snapshots the cluster's gateways fetch.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use perimeter_policy::HostPattern;
use perimeter_store::{NewInspectionCa, TlsInspection};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, Code};
use crate::extract::{AppJson, ClusterScope, access};
use crate::{AppState, audit, inspection_ca};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_tls_inspection, put_tls_inspection))
        .routes(routes!(get_ca_pem))
}

/// Most never-inspect patterns one cluster holds.
pub const MAX_NEVER_INSPECT: usize = 100;

/// `{"enabled": true, "never_inspect": ["pinned.example.com", "*.bank.example"]}`
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsInspectionRequest {
    pub enabled: bool,
    /// FQDN host patterns (`name` or `*.suffix`) never inspected; absent means none.
    #[serde(default)]
    pub never_inspect: Vec<String>,
}

/// The cluster's TLS inspection setting and its CA.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct TlsInspectionView {
    pub enabled: bool,
    pub never_inspect: Vec<String>,
    /// The inspection CA certificate (PEM) that workloads must trust; `""` before the first
    /// enable.
    pub ca_certificate: String,
    /// SHA-256 of the certificate's DER, upper-case hex pairs joined by `:` (as openssl shows
    /// it); `""` before the first enable.
    pub ca_fingerprint_sha256: String,
    /// The latest change has not yet been applied by every live gateway.
    pub propagating: bool,
}

fn view(t: Option<TlsInspection>) -> ApiResult<TlsInspectionView> {
    let Some(t) = t else {
        return Ok(TlsInspectionView {
            enabled: false,
            never_inspect: Vec::new(),
            ca_certificate: String::new(),
            ca_fingerprint_sha256: String::new(),
            propagating: false,
        });
    };
    let ca_fingerprint_sha256 = if t.ca_certificate.is_empty() {
        String::new()
    } else {
        inspection_ca::fingerprint_sha256(&t.ca_certificate)
            .map_err(|e| ApiError::internal(format!("the stored inspection CA certificate: {e}")))?
    };
    Ok(TlsInspectionView {
        enabled: t.enabled,
        never_inspect: t.never_inspect,
        ca_certificate: t.ca_certificate,
        ca_fingerprint_sha256,
        propagating: t.propagating,
    })
}

/// The never-inspect patterns, canonical and without repeats, in the order given.
fn validate_never_inspect(patterns: &[String]) -> ApiResult<Vec<String>> {
    if patterns.len() > MAX_NEVER_INSPECT {
        return Err(ApiError::invalid(
            "never_inspect",
            format!(
                "never_inspect: {} patterns given; a cluster holds at most {MAX_NEVER_INSPECT}",
                patterns.len()
            ),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        let field = format!("never_inspect[{i}]");
        let pattern = p
            .trim()
            .parse::<HostPattern>()
            .map_err(|e| ApiError::invalid(field.clone(), format!("{field}: {e}")))?
            .to_string();
        if !out.contains(&pattern) {
            out.push(pattern);
        }
    }
    Ok(out)
}

/// The cluster's TLS inspection setting, its CA certificate and whether the latest change is
/// still propagating to its gateways.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/tls-inspection", tag = "TLS inspection",
    params(("cluster_id" = String, Path)),
    responses((status = 200, body = TlsInspectionView), (status = "default", body = crate::error::Status)))]
async fn get_tls_inspection(
    State(st): State<AppState>,
    ClusterScope { cluster_id, .. }: ClusterScope<access::ReadTlsInspection>,
) -> ApiResult<Json<TlsInspectionView>> {
    Ok(Json(view(st.store.get_tls_inspection(&cluster_id).await?)?))
}

/// Turn TLS inspection on or off and set the host patterns never inspected. The first enable
/// generates the cluster's inspection CA; it is kept from then on. A networking change: refused
/// while the cluster is locked, and `propagating` until every live gateway applied it.
#[utoipa::path(put, path = "/api/v1/clusters/{cluster_id}/networking/tls-inspection", tag = "TLS inspection",
    params(("cluster_id" = String, Path)), request_body = TlsInspectionRequest,
    responses((status = 200, body = TlsInspectionView), (status = "default", body = crate::error::Status)))]
async fn put_tls_inspection(
    State(st): State<AppState>,
    ClusterScope {
        principal: p,
        cluster_id,
        ..
    }: ClusterScope<access::WriteTlsInspection>,
    AppJson(req): AppJson<TlsInspectionRequest>,
) -> ApiResult<Json<TlsInspectionView>> {
    let never_inspect = validate_never_inspect(&req.never_inspect)?;
    let current = st.store.get_tls_inspection(&cluster_id).await?;
    let has_ca = current
        .as_ref()
        .is_some_and(|t| !t.ca_certificate.is_empty());
    let new_ca = if req.enabled && !has_ca {
        let secrets = st.secrets.as_deref().ok_or_else(|| {
            ApiError::new(
                Code::FailedPrecondition,
                "this control plane has no secrets key to seal the inspection CA key with",
            )
        })?;
        let ca = inspection_ca::generate(&cluster_id).map_err(ApiError::internal)?;
        Some(NewInspectionCa {
            ca_certificate: ca.certificate_pem,
            ca_key_sealed: secrets
                .seal(ca.key_pem.as_bytes(), &cluster_id)
                .map_err(ApiError::internal)?,
        })
    } else {
        None
    };
    let payload = TlsInspectionRequest {
        enabled: req.enabled,
        never_inspect: never_inspect.clone(),
    };
    let t = st
        .store
        .put_tls_inspection(
            &cluster_id,
            req.enabled,
            &never_inspect,
            new_ca.as_ref(),
            &audit(&p, "AUDIT_LOG_ACTION_SET_TLS_INSPECTION", &payload),
        )
        .await?;
    st.changed();
    if new_ca.is_some() && t.ca_certificate == new_ca.as_ref().map_or("", |c| &c.ca_certificate) {
        tracing::info!(cluster = %cluster_id, "generated the cluster's TLS inspection CA");
    }
    Ok(Json(view(Some(t))?))
}

/// The cluster's inspection CA certificate alone (PEM), for workloads' trust stores. 404 when
/// inspection was never enabled.
#[utoipa::path(get, path = "/api/v1/clusters/{cluster_id}/networking/tls-inspection/ca.pem", tag = "TLS inspection",
    params(("cluster_id" = String, Path)),
    responses((status = 200, content_type = "application/x-pem-file", body = String),
        (status = "default", body = crate::error::Status)))]
async fn get_ca_pem(
    State(st): State<AppState>,
    ClusterScope { cluster_id, .. }: ClusterScope<access::ReadTlsInspection>,
) -> ApiResult<Response> {
    let pem = st
        .store
        .get_tls_inspection(&cluster_id)
        .await?
        .map(|t| t.ca_certificate)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "cluster {cluster_id} has no TLS inspection CA: inspection was never enabled"
            ))
        })?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_inspect_is_checked_canonical_and_bounded() {
        assert_eq!(
            validate_never_inspect(&[
                "Pinned.Example.com".into(),
                "*.bank.example".into(),
                "pinned.example.com".into(),
            ])
            .unwrap(),
            vec!["pinned.example.com", "*.bank.example"]
        );
        let e = validate_never_inspect(&["ok.example.com".into(), "no spaces.example".into()])
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("never_inspect[1]"));
        let many: Vec<String> = (0..=MAX_NEVER_INSPECT)
            .map(|i| format!("h{i}.example.com"))
            .collect();
        let e = validate_never_inspect(&many).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("never_inspect"));
        assert!(validate_never_inspect(&many[..MAX_NEVER_INSPECT]).is_ok());
    }
}

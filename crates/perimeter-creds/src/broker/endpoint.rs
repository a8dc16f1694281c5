//! The credential endpoint: the AWS container-credentials protocol, as ECS and EKS serve it.
//! A workload's AWS SDK or CLI, given `AWS_CONTAINER_CREDENTIALS_FULL_URI` (this endpoint's
//! `/v1/credentials/<profile>`) and `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `..._TOKEN_FILE`),
//! gets the profile's chained credentials, refreshed by the cache, and never the base
//! credentials the chain starts from.
//!
//! - `GET /v1/credentials/{profile}` with `Authorization: <token>`: 200 with
//!   `{AccessKeyId, SecretAccessKey, Token, Expiration, RoleArn}`; 401 without the right token;
//!   404 for a profile that is not configured; 502 naming the failing hop when the chain cannot
//!   be assumed.
//! - Errors are `{"code", "message"}`. The log records the profile, the outcome and the expiry:
//!   never a key, a token or an external id.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::cache::CredentialCache;
use super::sts::RoleChain;

/// What the endpoint serves and to whom.
pub struct Endpoint {
    cache: CredentialCache,
    profiles: BTreeMap<String, RoleChain>,
    token: String,
}

impl Endpoint {
    /// `token` is what callers must send as `Authorization`; it must not be empty.
    pub fn new(
        cache: CredentialCache,
        profiles: BTreeMap<String, RoleChain>,
        token: String,
    ) -> Endpoint {
        assert!(!token.is_empty(), "the endpoint's token must not be empty");
        Endpoint {
            cache,
            profiles,
            token,
        }
    }

    pub fn cache(&self) -> &CredentialCache {
        &self.cache
    }

    /// The routes, to serve with `axum::serve`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/credentials/{profile}", get(credentials))
            .with_state(self)
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

async fn credentials(
    State(ep): State<Arc<Endpoint>>,
    Path(profile): Path<String>,
    headers: HeaderMap,
) -> Response {
    let sent = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(sent.ct_eq(ep.token.as_bytes())) {
        tracing::warn!(%profile, "credential request refused: missing or wrong token");
        return error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong Authorization token",
        );
    }
    let Some(chain) = ep.profiles.get(&profile) else {
        tracing::warn!(%profile, "credential request for an unknown profile");
        return error(
            StatusCode::NOT_FOUND,
            "NoSuchProfile",
            format!(
                "no profile named {profile:?}; configured: {}",
                ep.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    };
    match ep.cache.get(chain).await {
        Ok(c) => {
            let expiration = DateTime::from(c.expiration)
                .fmt(Format::DateTime)
                .unwrap_or_default();
            tracing::info!(%profile, %expiration, role = %c.assumed_role_arn, "credentials served");
            Json(json!({
                "AccessKeyId": c.access_key_id,
                "SecretAccessKey": c.secret_access_key.expose(),
                "Token": c.session_token.as_ref().map(|t| t.expose()).unwrap_or_default(),
                "Expiration": expiration,
                "RoleArn": c.assumed_role_arn,
            }))
            .into_response()
        }
        Err(e) => {
            tracing::warn!(%profile, error = %e, "credentials could not be assumed");
            error(StatusCode::BAD_GATEWAY, "ChainFailed", e.to_string())
        }
    }
}

/// Serve the endpoint on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    endpoint: Arc<Endpoint>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, endpoint.router())
        .with_graceful_shutdown(shutdown)
        .await
}

//! Unauthenticated endpoints: health, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Liveness: answers once the store answers.
#[utoipa::path(get, path = "/health", tag = "Other", security(()),
    responses((status = 200, body = Health), (status = 503, body = crate::error::Status)))]
async fn health(State(st): State<AppState>) -> ApiResult<Json<Health>> {
    st.store.ping().await.map_err(|e| {
        let mut err = ApiError::internal(e);
        err.code = crate::Code::Unavailable;
        err.message = "store unavailable".into();
        err
    })?;
    Ok(Json(Health {
        status: "ok".into(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "Other", security(()), responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(state: State<AppState>) -> impl IntoResponse {
    crate::metrics_text(state).await
}

/// This document: the OpenAPI 3 description of every route, generated from the code.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "Other", security(()),
    responses((status = 200, content_type = "application/json", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| {
        crate::openapi()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".into())
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        doc.as_str(),
    )
}

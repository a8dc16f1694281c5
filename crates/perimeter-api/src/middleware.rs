//! Middleware of every route: the `Cc-Version` header, the request id, request metrics and the
//! access log; and the `/metrics` text.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{API_VERSION, ApiError, AppState, error};

static CC_VERSION: HeaderName = HeaderName::from_static("cc-version");
static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Validate and echo `Cc-Version` (a date `YYYY-MM-DD` or `latest`).
pub(crate) async fn cc_version(req: Request, next: Next) -> Response {
    let version = match req.headers().get(&CC_VERSION) {
        None => API_VERSION.to_string(),
        Some(v) => match v.to_str().map(str::trim) {
            Ok("latest") => API_VERSION.to_string(),
            Ok(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() && d.len() == 10 => {
                d.to_string()
            }
            _ => return ApiError::invalid("Cc-Version", "invalid Cc-Version.").into_response(),
        },
    };
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&version) {
        resp.headers_mut().insert(CC_VERSION.clone(), v);
    }
    resp
}

/// Request id (taken from `x-request-id` or generated), request metrics, and access log.
pub(crate) async fn observe(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let mut resp = error::REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("perimeter_api_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!("perimeter_api_request_duration_seconds", "method" => method.clone(), "route" => route.clone()).record(elapsed.as_secs_f64());
    tracing::debug!(target: "perimeter::access", request_id = %id, %method, %route, %status, elapsed_ms = elapsed.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }
    resp
}

/// Serve `/metrics` text from the installed recorder.
pub(crate) async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

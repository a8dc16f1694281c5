//! Perimeter's control plane API: routes, authentication and roles, the error shape, the
//! OpenAPI document, and the reconciler that drives asynchronous states.

mod auditing;
pub mod auth;
pub mod changes;
pub mod error;
pub mod extract;
pub mod inspection_ca;
mod middleware;
pub mod model;
mod openapi;
pub mod publish;
mod read_cache;
pub mod reconcile;
pub mod resolve;
mod routes;
pub mod secrets;
pub mod server;
mod state;
pub mod what_if;

use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

pub(crate) use auditing::audit;
pub use auditing::redact;
pub(crate) use middleware::metrics_text;
pub use openapi::{app, openapi, router_and_doc};
pub use read_cache::{READ_CACHE_BYTES, ReadCache};
pub use state::{AppState, EMBEDDED_GATEWAY_PREFIX, EmbeddedGateways, IngressAddresses};

pub use auth::{generate_key, hash_secret};
pub use error::{ApiError, ApiResult, Code};

/// The API version answered in `Cc-Version` for `latest` or no header.
pub const API_VERSION: &str = "2024-09-16";

/// How long the reconciler waits between scans when nothing wakes it.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

/// Install the process-wide Prometheus recorder; its handle renders `/metrics`.
pub fn install_metrics() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
}

/// Serve the API on `listener` until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, server::ServerLimits::default(), shutdown).await
}

/// [`serve`] within `limits` (connections, header and request timeouts).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: server::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_bounded(listener, app(state), limits, shutdown).await
}

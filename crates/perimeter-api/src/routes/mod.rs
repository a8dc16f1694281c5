//! One router per resource, merged with their OpenAPI paths.

mod allowlist;
mod clusters;
mod credential_roles;
mod egress;
mod egress_check;
mod endpoints;
mod gateways;
mod identity;
mod ingress;
mod meta;
mod tls_inspection;
mod workload;

use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

pub use gateways::GATEWAY_LIVENESS;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(clusters::router())
        .merge(allowlist::router())
        .merge(egress::router())
        .merge(egress_check::router())
        .merge(endpoints::router())
        .merge(ingress::router())
        .merge(identity::router())
        .merge(gateways::router())
        .merge(workload::router())
        .merge(credential_roles::router())
        .merge(tls_inspection::router())
        .merge(meta::router())
}

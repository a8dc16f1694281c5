//! The router and the OpenAPI document, built from one route list.

use axum::Router;
use axum::middleware;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::middleware::{cc_version, observe};
use crate::{ApiError, AppState, Code, error, routes};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Perimeter control plane API",
        description = "Egress rules, traffic policy, private endpoints and IP allowlists, in the shapes of the CockroachDB Cloud API (compat) with Perimeter's extensions (ext).",
        version = "2024-09-16"
    ),
    components(schemas(error::Status)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new::<
            _,
            _,
            &str,
        >("bearer", [])]);
    }
}

/// The router and the OpenAPI document built from the same route list.
pub fn router_and_doc(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts();
    let router = if state.console {
        router.merge(perimeter_console::router())
    } else {
        router
    };
    let router = router
        .fallback(|| async { ApiError::not_found("no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::InvalidArgument,
                "method not allowed on this route; see /api/v1/openapi.json",
            )
        })
        .layer(middleware::from_fn(cc_version))
        .layer(middleware::from_fn(observe))
        .with_state(state);
    (router, doc)
}

/// The application router.
pub fn app(state: AppState) -> Router {
    router_and_doc(state).0
}

/// The OpenAPI document alone.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts()
        .1
}

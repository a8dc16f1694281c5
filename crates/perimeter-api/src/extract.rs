//! Extractors: JSON bodies with field-naming errors, API key authentication, pagination.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use perimeter_store::{Cursor, PageBinding, PageRequest, PageTokens, Principal, Store};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth;
use crate::error::{ApiError, ApiResult, Code};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// A JSON body whose errors name the offending field (unknown keys included) in the API's shape.
/// An empty body reads as `{}` so that routes whose fields are all optional accept none.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(format!("request body larger than {MAX_BODY} bytes"))
                } else {
                    ApiError::invalid("body", format!("could not read the request body: {e}"))
                }
            })?;
        if bytes.len() > MAX_BODY {
            return Err(ApiError::too_large(format!(
                "request body larger than {MAX_BODY} bytes"
            )));
        }
        parse_json(if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        })
        .map(AppJson)
    }
}

/// Parse JSON, turning serde's message into an error on the field it concerns.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner().to_string();
        let msg = inner
            .split(" at line ")
            .next()
            .unwrap_or(&inner)
            .to_string();
        let prefix = if path == "." {
            String::new()
        } else {
            format!("{path}.")
        };
        let named = |marker: &str| {
            msg.strip_prefix(marker)
                .and_then(|rest| rest.split('`').next())
                .map(|k| format!("{prefix}{k}"))
        };
        // For an unknown key the path already ends with it; for a missing one it names the parent.
        let unknown = msg
            .starts_with("unknown field `")
            .then(|| {
                if path == "." {
                    named("unknown field `")
                } else {
                    Some(path.clone())
                }
            })
            .flatten();
        let field = unknown
            .or_else(|| named("missing field `"))
            .unwrap_or_else(|| {
                if path == "." {
                    "body".to_string()
                } else {
                    path.clone()
                }
            });
        let message = if msg.starts_with("unknown field") {
            format!("{field}: unknown field; {msg}")
        } else {
            format!("{field}: {msg}")
        };
        ApiError::invalid(field, message)
    })
}

/// The credential of `Authorization: Bearer <credential>`, or a 401 saying what to send. A
/// request with several Authorization headers is a 401 too, whichever of them is valid: which
/// one counts would be a guess that proxies and servers make differently.
pub fn bearer<'a>(parts: &'a Parts, what: &str) -> Result<&'a str, ApiError> {
    let mut headers = parts
        .headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter();
    let header = headers.next().ok_or_else(|| {
        ApiError::unauthenticated(format!(
            "missing Authorization header; send Authorization: Bearer <{what}>"
        ))
    })?;
    if headers.next().is_some() {
        return Err(ApiError::unauthenticated(format!(
            "several Authorization headers; send exactly one Authorization header: Bearer <{what}>"
        )));
    }
    header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthenticated(format!("Authorization header must be Bearer <{what}>"))
        })
}

/// The authenticated caller.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let secret = bearer(parts, "api key secret")?;
        let principal = auth::authenticate(&state.store, &state.principals, secret).await?;
        if let Some(limiter) = &state.rate_limiter
            && let Err(retry) = limiter.check(&principal.key_id)
        {
            let mut e = ApiError::new(
                Code::ResourceExhausted,
                "rate limit exceeded for this API key; retry later",
            );
            e.retry_after = Some(retry);
            return Err(e);
        }
        Ok(Auth(principal))
    }
}

/// Pagination query parameters (compat).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Opaque token from a previous response's `next_page` or `previous_page`, valid only for
    /// the same list, caller and query (filters, page size, order) that it came with.
    #[serde(rename = "pagination.page")]
    #[param(rename = "pagination.page")]
    pub page: Option<String>,
    /// Page size, default 100, at most 500.
    #[serde(rename = "pagination.limit")]
    #[param(rename = "pagination.limit")]
    pub limit: Option<String>,
    /// `ASC` (default) or `DESC`.
    #[serde(rename = "pagination.sort_order")]
    #[param(rename = "pagination.sort_order")]
    pub sort_order: Option<String>,
    /// Accepted for compatibility; reads are always current.
    #[serde(rename = "pagination.as_of_time")]
    #[param(rename = "pagination.as_of_time")]
    pub as_of_time: Option<String>,
}

/// `KeysetPaginationResponse`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Pagination {
    pub next_page: String,
    pub previous_page: String,
}

/// A list request as the route reads it: the page asked for, and what the tokens it reads and
/// answers are bound to.
pub struct Paging {
    pub req: PageRequest,
    tokens: PageTokens,
    binding: PageBinding,
}

impl PageQuery {
    /// Read the pagination parameters of a list. The list is `resource` (with the ids of the
    /// path, so each cluster's rules are a list of their own) narrowed by the route's `filters`
    /// (name and value as the route understood them). A `pagination.page` token opens only if
    /// this store issued it for the same list, filters, page size and order, to the same
    /// service account; anything else is a 400 naming `pagination.page`.
    pub async fn paging(
        &self,
        store: &Store,
        caller: &Principal,
        resource: &str,
        filters: &[(&str, &str)],
    ) -> ApiResult<Paging> {
        let limit = match self.limit.as_deref() {
            None | Some("") => 100,
            Some(s) => match s.parse::<u32>() {
                Ok(n @ 1..=500) => n,
                _ => {
                    return Err(ApiError::invalid(
                        "pagination.limit",
                        format!("pagination.limit must be a whole number from 1 to 500, got {s:?}"),
                    ));
                }
            },
        };
        let descending = match self.sort_order.as_deref() {
            None | Some("") | Some("ASC") => false,
            Some("DESC") => true,
            Some(o) => {
                return Err(ApiError::invalid(
                    "pagination.sort_order",
                    format!("pagination.sort_order must be ASC or DESC, got {o:?}"),
                ));
            }
        };
        let mut binding = PageBinding::new(resource, &caller.service_account_id);
        for (name, value) in filters {
            binding = binding.with(name, value);
        }
        let binding = binding.with("pagination.limit", &limit.to_string()).with(
            "pagination.sort_order",
            if descending { "DESC" } else { "ASC" },
        );
        let tokens = store.page_tokens().await?;
        let mut req = PageRequest {
            limit,
            descending,
            ..Default::default()
        };
        if let Some(tok) = self.page.as_deref().filter(|t| !t.is_empty()) {
            match tokens.open(&binding, tok) {
                Ok(Cursor::After(k)) => req.after = Some(k),
                Ok(Cursor::Before(k)) => req.before = Some(k),
                Err(_) => {
                    return Err(ApiError::invalid(
                        "pagination.page",
                        "pagination.page is not a token this server issued for this list, caller, filters, page size and order; pass next_page or previous_page from the previous response with the same query",
                    ));
                }
            }
        }
        Ok(Paging {
            req,
            tokens,
            binding,
        })
    }
}

impl Paging {
    /// The `pagination` value of the answer: null when everything fit on one page.
    pub fn pagination<T>(&self, page: &perimeter_store::Page<T>) -> Option<Pagination> {
        if !page.more_after && !page.more_before {
            return None;
        }
        let token = |c: Cursor| self.tokens.seal(&self.binding, &c);
        let next_page = match (&page.last_key, page.more_after) {
            (Some(k), true) => token(Cursor::After(k.clone())),
            _ => String::new(),
        };
        let previous_page = match (&page.first_key, page.more_before) {
            (Some(k), true) => token(Cursor::Before(k.clone())),
            _ => String::new(),
        };
        Some(Pagination {
            next_page,
            previous_page,
        })
    }
}

/// Check that a path id is a UUID.
/// What a route needs of its caller on the cluster of its path, as a type ([`ClusterScope`]).
pub trait Access {
    const NEED: crate::auth::Need;
}

/// The accesses routes ask of [`ClusterScope`], named as [`crate::auth::Need`]'s variants.
pub mod access {
    use super::Access;
    use crate::auth::Need;

    macro_rules! accesses {
        ($($name:ident),*) => {$(
            #[doc = concat!("[`Need::", stringify!($name), "`]")]
            pub struct $name;
            impl Access for $name {
                const NEED: Need = Need::$name;
            }
        )*};
    }
    accesses!(
        ReadNetworking,
        ReadEndpoints,
        WriteNetworking,
        TrustedOwners,
        ReadWorkload,
        WriteWorkload,
        ReadCredentialRoles,
        WriteCredentialRoles,
        ReadTlsInspection,
        WriteTlsInspection
    );
}

/// The `{cluster_id}` of the route's path (a UUID, else 400 naming it) and the authenticated
/// caller, allowed `A::NEED` on that cluster (else 403): the preamble of every cluster route.
/// It checks the caller before the body is read, so a caller without the role learns nothing
/// of what a valid body would be.
pub struct ClusterScope<A> {
    pub principal: Principal,
    pub cluster_id: String,
    pub access: std::marker::PhantomData<A>,
}

impl<A: Access> FromRequestParts<AppState> for ClusterScope<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let axum::extract::Path(params) = axum::extract::Path::<
            std::collections::HashMap<String, String>,
        >::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::invalid("cluster_id", e.body_text()))?;
        let cluster_id = params
            .get("cluster_id")
            .cloned()
            .ok_or_else(|| ApiError::internal("ClusterScope on a route without {cluster_id}"))?;
        uuid_param("cluster_id", &cluster_id)?;
        let Auth(principal) = Auth::from_request_parts(parts, state).await?;
        crate::auth::require(&principal, A::NEED, Some(&cluster_id))?;
        Ok(ClusterScope {
            principal,
            cluster_id,
            access: std::marker::PhantomData,
        })
    }
}

pub fn uuid_param(field: &str, value: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(value)
        .map(|_| ())
        .map_err(|_| ApiError::invalid(field, format!("{field} must be a UUID, got {value:?}")))
}

/// A body key that repeats a path parameter (the docs' examples send `cluster_id`, `rule_id`,
/// `endpoint_id` in bodies): accepted when equal, refused otherwise.
pub fn agrees(field: &str, body: &Option<String>, path: &str) -> ApiResult<()> {
    match body {
        Some(v) if v != path => Err(ApiError::invalid(
            field,
            format!("{field} in the body ({v}) disagrees with the path ({path})"),
        )),
        _ => Ok(()),
    }
}

/// Read a JSON `null` as an empty array (the official SDK sends `"roles": null` when it has
/// none): the one the gateway's messages use too.
pub use perimeter_wire::null_as_empty;

/// Query-string parameters, whose rejections (a duplicate key, a value of the wrong type) are
/// the API's error shape naming the parameter, not axum's plain-text 400.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = e.into_inner().to_string();
                // serde names the key in its message (`duplicate field `limit``); the path
                // names it when the value is wrong.
                let field = if path.is_empty() || path == "." {
                    message
                        .split('`')
                        .nth(1)
                        .map_or_else(|| "query".to_string(), str::to_string)
                } else {
                    path
                };
                ApiError::invalid(field, format!("query string: {message}"))
            })
    }
}

//! The one error shape of the API: google.rpc.Status, with a BadRequest detail naming the field.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use perimeter_policy::FieldError;
use perimeter_store::StoreError;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// gRPC status codes used by the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidArgument = 3,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    pub fn status(self) -> StatusCode {
        match self {
            Code::InvalidArgument | Code::FailedPrecondition => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An API error. `field` (when set) becomes a `google.rpc.BadRequest` field violation.
/// Internal errors keep their cause for the log and show the client only a request id.
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    pub field: Option<String>,
    /// Internal cause, logged once with the request id; never sent.
    pub internal: Option<String>,
    pub retry_after: Option<u64>,
    /// An HTTP status other than the code's (413 for a body over the cap).
    pub status: Option<StatusCode>,
}

/// google.rpc.Status as sent on the wire.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub code: i32,
    pub message: String,
    pub details: Vec<serde_json::Value>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
            internal: None,
            retry_after: None,
            status: None,
        }
    }

    /// A request body over the cap: 413, naming the field `body`.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError {
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
            ..Self::invalid("body", message)
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..Self::new(Code::InvalidArgument, message)
        }
    }

    pub fn precondition(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..Self::new(Code::FailedPrecondition, message)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Code::PermissionDenied, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            internal: Some(cause.to_string()),
            ..Self::new(Code::Internal, "internal error")
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::invalid(e.field.clone(), e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Forbidden(m) => ApiError::forbidden(m),
            StoreError::Conflict { field, message } => ApiError {
                field: Some(field),
                ..ApiError::new(Code::AlreadyExists, message)
            },
            StoreError::Locked(m) => ApiError::new(Code::Aborted, m),
            StoreError::Precondition { field, message } => ApiError::precondition(field, message),
            e @ (StoreError::Database { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Io { .. }) => ApiError::internal(e),
        }
    }
}

/// Set by the request-id middleware so that error bodies and logs can name the request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

tokio::task_local! {
    pub static REQUEST_ID: String;
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = REQUEST_ID.try_with(|id| id.clone()).unwrap_or_default();
        let mut details = Vec::new();
        let message = if self.code == Code::Internal || self.code == Code::Unavailable {
            tracing::error!(request_id = %request_id, cause = self.internal.as_deref().unwrap_or(""), "{}", self.message);
            details.push(json!({"@type": "type.googleapis.com/google.rpc.RequestInfo", "request_id": request_id}));
            format!("{} (request id {request_id})", self.message)
        } else {
            self.message.clone()
        };
        if let Some(field) = &self.field {
            details.push(json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [{"field": field, "description": self.message}],
            }));
        }
        let body = Status {
            code: self.code as i32,
            message,
            details,
        };
        let status = self.status.unwrap_or(self.code.status());
        let mut resp = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

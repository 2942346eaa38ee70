//! `ApiError`: every failure leaves the server as JSON `{"code", "message", "field"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;
use crate::store::StoreError;

/// The JSON body of every error response. `code` is stable; `message` is for people.
#[derive(Debug, Serialize, serde::Deserialize, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Who holds a lock, on `lock_held`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                field: None,
                holder: None,
            },
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        let field = field.into();
        self.body.field = (!field.is_empty()).then_some(field);
        self
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::Invalid { code, field, .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, code, message).with_field(field)
            }
            ServiceError::Rule { code, field, .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
            }
            ServiceError::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", message).with_field("name")
            }
            ServiceError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            ServiceError::VersionMismatch { .. } => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "version_mismatch", message)
                    .with_field("If-Match")
            }
            ServiceError::Conflict { code, .. } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            ServiceError::LockHeld { holder, .. } => {
                let mut error = ApiError::new(StatusCode::CONFLICT, "lock_held", message);
                error.body.holder = Some(holder);
                error
            }
            ServiceError::Store(StoreError::Duplicate { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message).with_field("name")
            }
            ServiceError::Store(StoreError::Busy(source)) => {
                tracing::warn!(error = %source, "database busy");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
            }
            ServiceError::Store(store) => {
                tracing::error!(error = ?store, "store failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
            ServiceError::Internal(text) => {
                tracing::error!(error = %text, "internal failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

//! `ApiError`: every failure leaves the server as JSON `{"code", "message", "field"}`.

use crate::api::ErrorCode;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::service::ServiceError;
use crate::store::StoreError;

pub use crate::api::ErrorBody;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with `code`, sent with the status the code has in [`ErrorCode`]'s table.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: ErrorBody {
                code: code.as_str().to_owned(),
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
        ApiError::new(ErrorCode::Unauthorized, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let code = error.code();
        let field = error.field().unwrap_or_default().to_owned();
        let message = match &error {
            ServiceError::Store(StoreError::Busy(source)) => {
                tracing::warn!(error = %source, "database busy");
                error.to_string()
            }
            ServiceError::Store(StoreError::Duplicate { .. }) => error.to_string(),
            ServiceError::Store(store) => {
                tracing::error!(error = ?store, "store failure");
                "internal error; see the server log".to_owned()
            }
            ServiceError::Internal(text) => {
                tracing::error!(error = %text, "internal failure");
                "internal error; see the server log".to_owned()
            }
            _ => error.to_string(),
        };
        let mut api = ApiError::new(code, message).with_field(field);
        if let ServiceError::LockHeld { holder, .. } = error {
            api.body.holder = Some(holder);
        }
        api
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

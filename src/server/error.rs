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

/// Gives every error response the documented JSON body: what axum and hyper answer by
/// themselves (405 with `Allow`, a path that is not UTF-8, 413, 414) comes out bodiless or as
/// text otherwise. Headers such as `Allow` and `Retry-After` stay.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // JSON errors are the API's own; HTML ones are the web interface's pages.
    let has_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| {
            value.as_bytes().starts_with(b"application/json")
                || value.as_bytes().starts_with(b"text/html")
        });
    if has_body {
        return response;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this path does not take that method; `Allow` lists the ones it takes",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::BodyTooLarge, "the body is too large"),
        StatusCode::URI_TOO_LONG => (ErrorCode::UriTooLong, "the request's URI is too long"),
        StatusCode::NOT_FOUND => (ErrorCode::NotFound, "no such endpoint"),
        StatusCode::UNAUTHORIZED => (
            ErrorCode::Unauthorized,
            "this endpoint needs a bearer token",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            ErrorCode::RequestTimeout,
            "the request took too long to arrive",
        ),
        status if status.is_server_error() => (ErrorCode::Internal, "internal error"),
        // axum's path rejections; any other status no route sends is answered as one, with
        // the status its code has.
        _ => (
            ErrorCode::InvalidPath,
            "the path is not valid: its segments must be UTF-8 text the route takes",
        ),
    };
    let (parts, _) = response.into_parts();
    let mut replaced = ApiError::new(code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().insert(name.clone(), value.clone());
        }
    }
    replaced
}

/// The longest request URI served, in bytes. (Past 64 KiB the HTTP layer itself answers 414,
/// without a body, before any route sees the request.)
pub const MAX_URI_BYTES: usize = 8192;

/// Refuses a URI over [`MAX_URI_BYTES`] with the documented JSON error.
pub async fn limit_uri(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |path| path.as_str().len());
    if length > MAX_URI_BYTES {
        return ApiError::new(
            ErrorCode::UriTooLong,
            format!(
                "the request's path and query hold {length} bytes; the limit is {MAX_URI_BYTES}"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

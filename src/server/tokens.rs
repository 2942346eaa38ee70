//! Token routes: list, create (the token shown once), revoke. Administrators only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::routes::JsonObject;
use super::{ApiError, AppState};
use crate::api::ErrorCode;
use crate::api::wire::TokenRequest;
use crate::service::{Caller, Role, ServiceError};

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let items = state.service.tokens(&caller).await?;
    Ok(Json(serde_json::json!({"items": items})).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: TokenRequest = serde_path_to_error::deserialize(serde_json::Value::Object(body))
        .map_err(ServiceError::from_json_path)?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidField,
            format!("role is admin or user, not `{}`", request.role),
        )
        .with_field("role")
    })?;
    let created = state
        .service
        .issue_token(&caller, &request.user, role, request.expires_in.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /v1/tokens/{id}`: the id `GET /v1/tokens` shows (or the token itself).
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.service.revoke_token(&caller, &id).await? {
        Some(info) => Ok(Json(info).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no token has the id `{}`", crate::text::excerpt(&id, 64)),
        )
        .with_field("id")),
    }
}

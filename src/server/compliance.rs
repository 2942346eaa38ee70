//! Compliance routes beyond the configuration: the audit trail, legal holds and retention.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::routes::JsonObject;
use super::{ApiError, AppState};
use crate::api::ErrorCode;
use crate::api::wire::{AuditFilter, HoldRequest};
use crate::domain::Kind;
use crate::service::{Caller, ServiceError};

pub async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<AuditFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) =
        query.map_err(|rejection| ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))?;
    Ok(Json(state.service.audit(&caller, filter).await?).into_response())
}

pub async fn list_holds(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    Ok(Json(serde_json::json!({"items": state.service.holds(&caller).await?})).into_response())
}

/// `rooms` or `categories`: what a hold may stand on.
fn held_kind(collection: &str) -> Result<Kind, ApiError> {
    match collection {
        "rooms" => Ok(Kind::Room),
        "categories" => Ok(Kind::Category),
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("holds stand on rooms or categories, not `{collection}`"),
        )),
    }
}

pub async fn place_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, name)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let kind = held_kind(&collection)?;
    let request: HoldRequest = serde_path_to_error::deserialize(serde_json::Value::Object(body))
        .map_err(ServiceError::from_json_path)?;
    let hold = state
        .service
        .place_hold(&caller, kind, &name, &request.reason)
        .await?;
    Ok(Json(hold).into_response())
}

pub async fn release_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = held_kind(&collection)?;
    let hold = state.service.release_hold(&caller, kind, &name).await?;
    Ok(Json(hold).into_response())
}

pub async fn run_retention(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.expire_messages(&caller).await?).into_response())
}

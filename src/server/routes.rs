//! Every route of the API, and the extractors they share.

use crate::api::ErrorCode;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::{ApiError, AppState};
use crate::api::wire::{
    ExportOptions, Level, LockRequest, collection_of, percent_decode, percent_encode,
};
use crate::domain::{ComplianceConfiguration, Kind};
use crate::service::{
    Caller, Object, Ownership, PostingCaller, Precondition, ServiceError, Stored,
};

pub fn router(app_state: AppState, metrics_route: bool) -> Router<AppState> {
    let metrics = app_state.metrics.clone();
    let router = if metrics_route {
        Router::new().route("/metrics", get(super::metrics::serve_metrics))
    } else {
        Router::new()
    };
    router
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/v1/openapi.json",
            get(|| async { Json(crate::api::openapi::document()) }),
        )
        .route("/v1/state", get(state))
        .route("/v1/state/changes", get(state_changes))
        .route("/v1/compliance", get(read_compliance).put(replace_compliance))
        .route("/v1/compliance/run", post(run_archiver))
        .route("/v1/audit", get(super::compliance::audit))
        .route(
            "/v1/tokens",
            get(super::tokens::list).post(super::tokens::create),
        )
        .route("/v1/tokens/{id}", axum::routing::delete(super::tokens::revoke))
        .route("/v1/holds", get(super::compliance::list_holds))
        .route(
            "/v1/holds/{collection}/{name}",
            axum::routing::put(super::compliance::place_hold)
                .delete(super::compliance::release_hold),
        )
        .route("/v1/retention/run", post(super::compliance::run_retention))
        .route(
            "/v1/applied",
            get(read_applied)
                .put(record_applied)
                // Manifests of a large server: 100,000 rooms are about 30 MB of YAML.
                .layer(axum::extract::DefaultBodyLimit::max(APPLIED_BODY_LIMIT)),
        )
        .route("/v1/data/export", get(export_data))
        .route(
            "/v1/data/import",
            post(import_data).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/v1/locks/{name}",
            get(read_lock).post(acquire_lock).delete(release_lock),
        )
        .route("/v1/events", get(super::chat::events))
        .route("/v1/rooms/{name}/events", get(super::chat::room_events))
        .route(
            "/v1/rooms/{name}/messages",
            get(super::chat::read_messages).post(super::chat::post_message),
        )
        .route("/v1/rooms/{name}/messages/remove", post(super::chat::remove_messages))
        .route("/v1/rooms/{name}/clear", post(super::chat::clear_room))
        .route("/v1/messages/counts", post(super::chat::message_counts))
        .route("/v1/{collection}", get(list).post(create))
        .route(
            "/v1/{collection}/{name}",
            get(read).put(replace).patch(patch).delete(remove),
        )
        .merge(super::web::router())
        .fallback(|| async {
            ApiError::new(ErrorCode::NotFound, "no such endpoint; see /v1/categories, /v1/rooms, /v1/addins, /v1/groups, /v1/compliance")
        })
        .layer(axum::middleware::from_fn_with_state(
            app_state,
            super::limits::limit_rate,
        ))
        .layer(axum::middleware::map_response(super::error::json_errors))
        .layer(axum::middleware::from_fn(super::error::limit_uri))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            super::request_log::log_request,
        ))
}

/// The largest record of an apply `PUT /v1/applied` takes.
pub const APPLIED_BODY_LIMIT: usize = 256 << 20;

async fn read_applied(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    match state.service.applied(&caller).await? {
        Some(applied) => Ok(Json(applied).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            "no apply has been recorded yet; `perch apply` records its manifests",
        )),
    }
}

async fn record_applied(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: crate::api::wire::AppliedRequest =
        serde_path_to_error::deserialize(Value::Object(body))
            .map_err(ServiceError::from_json_path)?;
    state.service.record_applied(&caller, request).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn kind_of(collection: &str) -> Result<Kind, ApiError> {
    [Kind::Group, Kind::Addin, Kind::Category, Kind::Room]
        .into_iter()
        .find(|kind| collection_of(*kind) == collection)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no collection `{collection}`; expected categories, rooms, addins or groups"
                ),
            )
        })
}

/// The bearer token a request carries: `None` without an `Authorization` header.
fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    // The scheme is case-insensitive (RFC 9110, section 11.1).
    header
        .to_str()
        .ok()
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Some(token.trim()))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer TOKEN`"))
}

/// Without a bearer token: the caller the session cookie signs in (the chat client's script).
async fn cookie_caller(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
    super::web::api_caller_from_cookie(parts, state)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this endpoint needs `Authorization: Bearer TOKEN`"))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer_token(parts)? else {
            return cookie_caller(parts, state).await;
        };
        state
            .service
            .authenticate(token)
            .await?
            .ok_or_else(|| ApiError::unauthorized(crate::service::TOKEN_NOT_VALID))
    }
}

/// A post's caller: as [`Caller`], but a token this node remembers is not read again here;
/// the poster confirms it as it stores the post (see [`PostingCaller`]).
impl FromRequestParts<AppState> for PostingCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = bearer_token(parts)? else {
            return cookie_caller(parts, state).await.map(PostingCaller::from);
        };
        state
            .service
            .authenticate_to_post(token)
            .await?
            .ok_or_else(|| ApiError::unauthorized(crate::service::TOKEN_NOT_VALID))
    }
}

/// A request body that must be one JSON object.
pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let reading = Bytes::from_request(request, state);
        // A client that sends its body a byte at a time does not hold a worker for ever.
        let read = tokio::time::timeout(super::limits::BODY_TIMEOUT, reading)
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "the body did not arrive within {} s",
                        super::limits::BODY_TIMEOUT.as_secs()
                    ),
                )
            })?;
        let bytes = read.map_err(|rejection| {
            let code = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ErrorCode::BodyTooLarge
            } else {
                ErrorCode::InvalidBody
            };
            ApiError::new(code, rejection.body_text())
        })?;
        crate::api::json::parse_object(&bytes)
            .map(JsonObject)
            .map_err(|message| ApiError::new(ErrorCode::InvalidJson, message))
    }
}

/// `If-Match` as RFC 9110 reads it: `*` matches any existing object, a strong tag `"N"` matches
/// version N, and any other tag (weak, opaque, a list) matches nothing, so the write answers
/// 412 as a stale one does.
fn precondition(headers: &HeaderMap) -> Precondition {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Precondition::None;
    };
    let Ok(text) = value.to_str() else {
        return Precondition::Unmatchable;
    };
    let text = text.trim();
    if text == "*" {
        return Precondition::None;
    }
    text.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .and_then(|version| version.parse::<i64>().ok())
        .map_or(Precondition::Unmatchable, Precondition::Version)
}

fn query_flag(query: Option<&str>, name: &str) -> Result<bool, ApiError> {
    query_value(query, name).map(|value| value.unwrap_or(false))
}

/// A boolean query parameter, or `None` when it is not given.
fn query_value(query: Option<&str>, name: &str) -> Result<Option<bool>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key == name {
            return match value {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("`{name}` takes true or false, not `{value}`"),
                )
                .with_field(name)),
            };
        }
    }
    Ok(None)
}

/// `?managed=true` marks the object as the reconciler's; `&protect=true` also protects it;
/// `?managed=false` ends the reconciler's management (and protection).
fn ownership(query: Option<&str>) -> Result<Ownership, ApiError> {
    Ok(match query_value(query, "managed")? {
        Some(true) => Ownership::Managed {
            protect: query_flag(query, "protect")?,
        },
        Some(false) => Ownership::Unmanaged,
        None => Ownership::Keep,
    })
}

fn with_etag<T: serde::Serialize>(status: StatusCode, stored: &Stored<T>) -> Response {
    let mut response = (status, Json(stored)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", stored.meta.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn parse_object(kind: Kind, body: Map<String, Value>) -> Result<Object, ApiError> {
    Object::from_json(kind, Value::Object(body))
        .map_err(|error| ServiceError::from_json_path(error).into())
}

/// Liveness: the process answers. A load balancer that should stop sending work asks
/// `/readyz`; a supervisor that restarts dead processes asks this.
async fn healthz() -> Response {
    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
}

/// Readiness: the database answers (the store migrated it before the server listened) and
/// the node is not draining, so that a load balancer sends new work elsewhere while it stops.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.service.is_draining() {
        return ApiError::new(ErrorCode::Unavailable, "this node is shutting down").into_response();
    }
    match state.service.health().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            ApiError::new(ErrorCode::Unavailable, "the database does not answer").into_response()
        }
    }
}

/// The most rooms one page of `GET /v1/rooms?limit=` holds.
const MAX_ROOM_PAGE: usize = 500;

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    let limit = query_values(uri.query(), "limit").first().map(|text| {
        text.parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_ROOM_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidQuery,
                    format!("limit is 1 to {MAX_ROOM_PAGE}"),
                )
                .with_field("limit")
            })
    });
    let limit = limit.transpose()?;
    if kind == Kind::Room {
        let rooms: crate::api::wire::RoomQuery = axum::extract::Query::try_from_uri(&uri)
            .map(|axum::extract::Query(query)| query)
            .map_err(|rejection| ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))?;
        if rooms.is_paged() || limit.is_some() {
            // Filters as Get-CsPersistentChatRoom's, pages by a cursor.
            let filter = rooms.filter().map_err(|(field, message)| {
                ApiError::new(ErrorCode::InvalidQuery, message).with_field(field)
            })?;
            let page = state
                .service
                .rooms_page(
                    &caller,
                    &filter,
                    rooms.after.as_deref(),
                    limit.unwrap_or(100),
                )
                .await?;
            let items = page
                .rooms
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(ServiceError::internal)?;
            return Ok(Json(crate::api::wire::RoomListPage {
                items,
                next: page.next,
            })
            .into_response());
        }
    }
    let items = state.service.list(&caller, kind).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    let object = state.service.get(&caller, kind, &name).await?;
    Ok(with_etag(StatusCode::OK, &object))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(collection): Path<String>,
    RawQuery(query): RawQuery,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    let object = parse_object(kind, body)?;
    let stored = state
        .service
        .create(&caller, object, ownership(query.as_deref())?)
        .await?;
    let mut response = with_etag(StatusCode::CREATED, &stored);
    let location = format!("/v1/{collection}/{}", percent_encode(stored.spec.name()));
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonObject(mut body): JsonObject,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    body.entry("name")
        .or_insert_with(|| Value::String(name.clone()));
    let object = parse_object(kind, body)?;
    let stored = state
        .service
        .replace(
            &caller,
            &name,
            object,
            precondition(&headers),
            ownership(query.as_deref())?,
        )
        .await?;
    Ok(with_etag(StatusCode::OK, &stored))
}

async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, name)): Path<(String, String)>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    let stored = state
        .service
        .patch(&caller, kind, &name, body, precondition(&headers))
        .await?;
    Ok(with_etag(StatusCode::OK, &stored))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((collection, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = kind_of(&collection)?;
    state
        .service
        .remove(
            &caller,
            kind,
            &name,
            precondition(&headers),
            query_flag(query.as_deref(), "force")?,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn read_compliance(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let stored = state.service.compliance(&caller).await?;
    Ok(with_etag(StatusCode::OK, &stored))
}

async fn replace_compliance(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let configuration: ComplianceConfiguration =
        serde_path_to_error::deserialize(Value::Object(body))
            .map_err(ServiceError::from_json_path)?;
    let stored = state
        .service
        .set_compliance(
            &caller,
            configuration,
            precondition(&headers),
            ownership(query.as_deref())?,
        )
        .await?;
    Ok(with_etag(StatusCode::OK, &stored))
}

/// The values of a query parameter, decoded; a parameter may repeat.
fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
        .collect()
}

async fn export_data(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let level = match query_values(query.as_deref(), "level").first() {
        None => Level::All,
        Some(text) => Level::parse(text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!("level takes all, user, category, room-directory or content, not `{text}`"),
            )
            .with_field("level")
        })?,
    };
    let options = ExportOptions {
        level,
        scope: query_values(query.as_deref(), "scope"),
        since: query_values(query.as_deref(), "since").into_iter().next(),
        disable_exported: query_flag(query.as_deref(), "disableExported")?,
    };
    let bytes = state
        .service
        .export_data(&caller, &options, &mut |_| {})
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], bytes).into_response())
}

/// The largest `perch-data` file an import reads.
pub const MAX_IMPORT_BYTES: usize = 2 << 30;

async fn import_data(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    // Rights before the body: a caller who may not import never makes the server hold it.
    state.service.may_import(&caller)?;
    let reading = axum::body::to_bytes(body, MAX_IMPORT_BYTES);
    let body = tokio::time::timeout(super::limits::IMPORT_BODY_TIMEOUT, reading)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the import did not arrive within {} s",
                    super::limits::IMPORT_BODY_TIMEOUT.as_secs()
                ),
            )
        })?
        .map_err(|_| {
            ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("an import holds at most {MAX_IMPORT_BYTES} bytes"),
            )
        })?;
    let replace_existing = query_flag(query.as_deref(), "replaceExisting")?;
    let report = if query_flag(query.as_deref(), "dryRun")? {
        state
            .service
            .check_import(&caller, &body, replace_existing)
            .await?
    } else {
        state
            .service
            .import_data(&caller, &body, replace_existing)
            .await?
    };
    Ok(Json(report).into_response())
}

async fn run_archiver(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let run = state.service.archive_now(&caller).await?;
    Ok(Json(run).into_response())
}

async fn state(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    use tokio_stream::StreamExt as _;
    let layout = match query_values(query.as_deref(), "layout").into_iter().next() {
        None => crate::api::wire::StateLayout::Objects,
        Some(text) => crate::api::wire::StateLayout::parse(&text).ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidQuery,
                format!(
                    "`layout` takes objects or rows, not `{}`",
                    crate::text::excerpt(&text, 40)
                ),
            )
            .with_field("layout")
        })?,
    };
    // Sent as the database writes it: a hundred thousand objects are sixty megabytes.
    let parts = state.service.state_json_stream(&caller, layout).await?;
    let body = axum::body::Body::from_stream(parts.map(|part| {
        part.map_err(|error| {
            tracing::error!(%error, "GET /v1/state: the read failed; the document is cut short");
            std::io::Error::other(error.to_string())
        })
    }));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn state_changes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    Ok(Json(state.service.change_counter(&caller).await?).into_response())
}

async fn acquire_lock(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: LockRequest = serde_path_to_error::deserialize(Value::Object(body))
        .map_err(ServiceError::from_json_path)?;
    let ttl = request.ttl_seconds.clamp(5, 3600);
    state
        .service
        .acquire_lock(&caller, &name, &request.holder, ttl)
        .await?;
    Ok(Json(json!({"name": name, "holder": request.holder, "ttlSeconds": ttl})).into_response())
}

async fn read_lock(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match state.service.lock_holder(&caller, &name).await? {
        Some((holder, since)) => {
            Ok(Json(json!({"name": name, "holder": holder, "since": since})).into_response())
        }
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("nobody holds lock `{name}`"),
        )),
    }
}

async fn release_lock(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    if query_flag(query.as_deref(), "force")? {
        // `perch unlock`: whoever holds it.
        return match state.service.break_lock(&caller, &name).await? {
            Some(holder) => {
                Ok(Json(json!({"name": name, "holder": holder, "broken": true})).into_response())
            }
            None => Err(ApiError::new(
                ErrorCode::NotFound,
                format!("nobody holds lock `{name}`"),
            )),
        };
    }
    let holder = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("holder="))
        .map(percent_decode)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::MissingField, "pass ?holder=NAME").with_field("holder")
        })?;
    if state.service.release_lock(&caller, &name, &holder).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("lock `{name}` is not held by `{holder}`"),
        ))
    }
}

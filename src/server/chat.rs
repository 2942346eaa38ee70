//! Chat routes: messages, live events, clearing and removal.

use crate::api::ErrorCode;
use bytes::Bytes;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::routes::JsonObject;
use super::sse::{self, LiveBody};
use super::{ApiError, AppState};
use crate::api::wire::{ClearReply, ClearRequest, RemoveReply, RemoveRequest};
use crate::domain::ComplianceEventType;
use crate::service::{
    Caller, Heard, PageRequest, PostingCaller, RemoveFilter, ServiceError, StreamEnd,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    body: String,
}

pub async fn post_message(
    State(state): State<AppState>,
    caller: PostingCaller,
    Path(room): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: PostBody = serde_path_to_error::deserialize(serde_json::Value::Object(body))
        .map_err(ServiceError::from_json_path)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok());
    let (message, fresh) = state
        .service
        .post_message_as(&caller, &room, &request.body, key)
        .await?;
    let status = if fresh {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(message)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    before: Option<i64>,
    after: Option<i64>,
    limit: Option<i64>,
    q: Option<String>,
}

pub async fn read_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))?;
    let page = state
        .service
        .messages(
            &caller,
            &room,
            PageRequest {
                before: query.before,
                after: query.after,
                limit: query.limit,
                query: query.q,
            },
        )
        .await?;
    Ok(Json(page).into_response())
}

/// `POST /v1/messages/counts`: how many messages rooms hold, for a plan that removes them.
pub async fn message_counts(
    State(state): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: crate::api::wire::MessageCountsRequest =
        serde_path_to_error::deserialize(serde_json::Value::Object(body))
            .map_err(ServiceError::from_json_path)?;
    let counts = state
        .service
        .message_counts(&caller, &request.room_ids)
        .await?;
    Ok(Json(crate::api::wire::MessageCounts { counts }).into_response())
}

pub async fn clear_room(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: ClearRequest = serde_path_to_error::deserialize(serde_json::Value::Object(body))
        .map_err(ServiceError::from_json_path)?;
    let removed = if request.dry_run {
        state
            .service
            .preview_clear_room(&caller, &room, &request.end_date)
            .await?
    } else {
        state
            .service
            .clear_room(&caller, &room, &request.end_date)
            .await?
    };
    Ok(Json(ClearReply {
        room,
        removed,
        dry_run: request.dry_run,
    })
    .into_response())
}

pub async fn remove_messages(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request: RemoveRequest = serde_path_to_error::deserialize(serde_json::Value::Object(body))
        .map_err(ServiceError::from_json_path)?;
    let dry_run = request.dry_run;
    let filter = RemoveFilter::try_from(request)?;
    let touched = if dry_run {
        state
            .service
            .preview_remove_messages(&caller, &room, filter)
            .await?
    } else {
        state
            .service
            .remove_messages(&caller, &room, filter)
            .await?
    };
    Ok(Json(RemoveReply {
        room,
        touched,
        dry_run,
    })
    .into_response())
}

/// Where a live stream stands: the last message and the last room change it delivered.
///
/// Sent as each event's id, `MESSAGE:CHANGE`; a bare `MESSAGE` (as earlier clients sent) starts
/// room changes from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cursor {
    message: i64,
    change: i64,
}

/// The event id: `MESSAGE:CHANGE`.
impl std::fmt::Display for Cursor {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}:{}", self.message, self.change)
    }
}

impl Cursor {
    /// Whether a stretch of the log that starts after `(message, change)` leaves a gap
    /// behind this cursor, to be read from the database.
    fn is_behind(self, (message, change): (i64, i64)) -> bool {
        message > self.message || change > self.change
    }

    /// Moves past a stretch of the log that ends at `(message, change)`.
    fn pass(&mut self, (message, change): (i64, i64)) {
        self.message = self.message.max(message);
        self.change = self.change.max(change);
    }
}

fn parse_cursor(text: &str) -> Option<(i64, Option<i64>)> {
    match text.trim().split_once(':') {
        Some((message, change)) => Some((message.parse().ok()?, Some(change.parse().ok()?))),
        None => Some((text.trim().parse().ok()?, None)),
    }
}

/// Server-Sent Events: every new message in a room the caller may read (`event: message`) and
/// every change of a room it may see (`event: room`), each with an id, so that a client
/// reconnecting with `Last-Event-ID` resumes without a gap or a duplicate.
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    query: Result<Query<Finite>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let finite = finite(query)?;
    stream(state, caller, &headers, None, finite).await
}

/// A live stream's finite mode, for tools that test the route: end after `maxEvents` events,
/// or once the stream has passed message id `until`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Finite {
    max_events: Option<usize>,
    until: Option<i64>,
    /// Where to resume, as `Last-Event-ID` says it, for clients that cannot send that header
    /// on their first connection (a browser's EventSource); the header wins when both come.
    last_event_id: Option<String>,
}

/// The most events `maxEvents` may ask for.
const MAX_FINITE_EVENTS: usize = 10_000;

fn finite(
    query: Result<Query<Finite>, axum::extract::rejection::QueryRejection>,
) -> Result<Finite, ApiError> {
    let Query(finite) =
        query.map_err(|rejection| ApiError::new(ErrorCode::InvalidQuery, rejection.body_text()))?;
    if finite.max_events.is_some_and(|max| max > MAX_FINITE_EVENTS) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("maxEvents is 0 to {MAX_FINITE_EVENTS}"),
        )
        .with_field("maxEvents"));
    }
    Ok(finite)
}

/// One room's live stream: its messages and changes only. Opening it joins the room and
/// closing it leaves, which compliance records (JOIN, PART).
pub async fn room_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(room): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Finite>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let finite = finite(query)?;
    let (room_id, room_name) = state.service.readable_room_id(&caller, &room).await?;
    stream(state, caller, &headers, Some((room_id, room_name)), finite).await
}

async fn stream(
    state: AppState,
    caller: Caller,
    headers: &HeaderMap,
    room: Option<(i64, String)>,
    finite: Finite,
) -> Result<Response, ApiError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .or(finite.last_event_id.as_deref())
        .map(|text| {
            parse_cursor(text).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidHeader,
                    "Last-Event-ID must be an event id (MESSAGE:CHANGE)",
                )
                .with_field("Last-Event-ID")
            })
        })
        .transpose()?;
    let service = state.service.clone();
    // Messages stored before the stream opened are replayed, not live (chat history rules).
    let live_after = service.last_message_id().await?;
    let mut cursor = Cursor {
        message: match resume {
            Some((message, _)) => message,
            None => live_after,
        },
        change: match resume {
            Some((_, Some(change))) => change,
            _ => service.last_room_change_id().await?,
        },
    };
    if let Some((room_id, room_name)) = &room {
        service
            .record_presence(&caller, *room_id, room_name, ComplianceEventType::Join)
            .await?;
    }
    let presence = Presence {
        service: service.clone(),
        caller: caller.clone(),
        room: std::sync::Arc::new(std::sync::Mutex::new(room.clone())),
        _open: state.metrics.stream_opened(),
    };
    let leaving = presence.clone_for_delivery();
    let queue = Queue::default();
    let outlet_queue = queue.clone();
    let delivering = async move {
        let mut filter = match &room {
            Some((room_id, _)) => service.room_event_filter(&caller, live_after, *room_id),
            None => service.event_filter(&caller, live_after),
        };
        filter.ends_after(finite.until);
        let room_name = room.as_ref().map(|(_, name)| name.as_str());
        let mut outlet = Outlet {
            queue: outlet_queue,
            left: finite.max_events.unwrap_or(usize::MAX),
            until: finite.until,
        };
        deliver(
            &service,
            &caller,
            &mut filter,
            &mut cursor,
            room_name,
            &mut outlet,
        )
        .await;
        // A stream that ends itself (the server drains, the token is revoked, the finite
        // mode's end) records PART before its response ends, so that a draining server
        // writes it before it closes the database.
        if let Some(recording) = leaving.record_part() {
            let _ = recording.await;
        }
    };
    let stream = Delivery {
        delivering: Some(Box::pin(delivering)),
        queue,
        _presence: presence,
    };
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/event-stream"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::new(LiveBody::new(stream)),
    )
        .into_response())
}

/// Events that [`deliver`] framed and the response has not yet taken.
type Queue = std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<Bytes>>>;

/// Most events [`deliver`] queues before it lets the response send them.
const QUEUED_EVENTS: usize = 64;

/// A live stream's response body: it runs [`deliver`] itself, each time the connection asks
/// for more, rather than a task of its own that hands events over a channel: one task wakes
/// per event, not two, and an idle stream holds no task and no channel. When the client goes
/// away the connection drops the body, and with it the delivery.
struct Delivery {
    delivering: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    queue: Queue,
    _presence: Presence,
}

impl tokio_stream::Stream for Delivery {
    type Item = Bytes;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let pop = |queue: &Queue| {
            queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop_front()
        };
        if let Some(event) = pop(&self.queue) {
            return Poll::Ready(Some(event));
        }
        let Some(delivering) = self.delivering.as_mut() else {
            return Poll::Ready(None);
        };
        let finished = delivering.as_mut().poll(context).is_ready();
        if finished {
            self.delivering = None;
        }
        match pop(&self.queue) {
            Some(event) => Poll::Ready(Some(event)),
            None if finished => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// Records once, however a room's stream ends, that its caller left the room (compliance's
/// PART), and counts the stream closed: the delivery records it when it ends by itself, and
/// dropping the body (the client went away) records it if the delivery did not.
struct Presence {
    service: crate::service::Service,
    caller: Caller,
    /// The room, until PART is recorded for it.
    room: std::sync::Arc<std::sync::Mutex<Option<(i64, String)>>>,
    _open: super::metrics::StreamOpen,
}

/// The delivery's handle on its stream's [`Presence`].
struct Leaving {
    service: crate::service::Service,
    caller: Caller,
    room: std::sync::Arc<std::sync::Mutex<Option<(i64, String)>>>,
}

impl Presence {
    fn clone_for_delivery(&self) -> Leaving {
        Leaving {
            service: self.service.clone(),
            caller: self.caller.clone(),
            room: self.room.clone(),
        }
    }
}

impl Leaving {
    fn take_room(&self) -> Option<(i64, String)> {
        self.room
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Starts recording PART, unless it was: a task of its own, so that a response dropped
    /// while it waits does not cancel the write. `None` outside a runtime (one shutting down
    /// takes the record with it).
    fn record_part(self) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (room_id, room_name) = self.take_room()?;
        Some(runtime.spawn(async move {
            if let Err(error) = self
                .service
                .record_presence(&self.caller, room_id, &room_name, ComplianceEventType::Part)
                .await
            {
                tracing::error!(%error, room = %room_name, "compliance: cannot record leaving a room");
            }
        }))
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        // Dropped inside the runtime (the connection's task); nobody waits for the record.
        drop(self.clone_for_delivery().record_part());
    }
}

/// Sends events until the client goes away, its token is revoked, the server drains, or the
/// finite mode's end is reached.
///
/// A stream first reads the log from the database after its cursor (a replay, or the moment it
/// opened); once that read comes back empty it hears the node's hub, which reads the log once
/// for every stream and wakes this one only for batches that may concern it, telling it the
/// stretches it passed over. A batch or stretch that starts past the stream's cursor (it
/// subscribed while reading, or fell behind the hub) sends it back to the database for the
/// gap.
async fn deliver(
    service: &crate::service::Service,
    caller: &Caller,
    filter: &mut crate::service::EventFilter,
    cursor: &mut Cursor,
    room_name: Option<&str>,
    outlet: &mut Outlet,
) {
    // Subscribed before the first read, so that nothing committed meanwhile goes unheard.
    let log = service.subscribe_log(filter);
    let mut from_database = true;
    loop {
        if outlet.done(cursor) {
            return;
        }
        if log.is_draining() {
            // The server is stopping: end the stream; the client resumes by Last-Event-ID.
            return;
        }
        if from_database {
            let start = *cursor;
            let mut read_failed = false;
            // Boxed: rare reads, whose futures would otherwise make every idle stream larger.
            match Box::pin(service.events_after(filter, cursor.message, 500)).await {
                Ok((messages, last)) => {
                    for message in messages {
                        let data = serde_json::to_string(&message).unwrap_or_default();
                        let framed = |at| sse::frame(at, "message", &data);
                        if !outlet.message(cursor, message.id, framed).await {
                            return;
                        }
                    }
                    cursor.message = cursor.message.max(last);
                }
                Err(StreamEnd::Revoked) => return,
                Err(StreamEnd::Failed(error)) => {
                    tracing::warn!(%error, "live events: cannot read messages");
                    read_failed = true;
                }
            }
            match Box::pin(service.room_changes_after(caller, cursor.change, 500)).await {
                Ok((changes, last)) => {
                    for (id, change) in changes {
                        if !outlet.change(cursor, id, &change, room_name).await {
                            return;
                        }
                    }
                    cursor.change = cursor.change.max(last);
                }
                Err(error) => {
                    tracing::warn!(%error, "live events: cannot read room changes");
                    read_failed = true;
                }
            }
            if read_failed {
                // The cursor may be behind what the hub hands on, which would not wake the
                // stream for it: read again after a while.
                tokio::select! {
                    () = log.drained() => return,
                    () = tokio::time::sleep(service.events_poll_interval()) => {}
                }
                continue;
            }
            // Read again at once while there was something to read: batches are bounded.
            if *cursor != start {
                continue;
            }
            from_database = false;
        }
        let batch = match log.recv().await {
            Heard::Batch(batch) => batch,
            Heard::Nothing { after, through } => {
                // Nothing for this stream there: past it, unless the cursor is short of it.
                if cursor.is_behind(after) {
                    from_database = true;
                } else {
                    cursor.pass(through);
                }
                continue;
            }
            Heard::Lagged => {
                from_database = true;
                continue;
            }
            Heard::Draining => return,
        };
        if cursor.is_behind(batch.starts_after()) {
            from_database = true;
            continue;
        }
        // Held inline, unlike the reads above: judging a batch reads the database only on
        // a miss (a stream's first event in a room, a new generation), and boxes those reads
        // itself, so its future is small and a delivery allocates no box for it (848 bytes
        // a stream idle; with those reads inline it was 3,120 to 4,032:
        // `an_idle_stream_holds_a_small_delivery`).
        match service
            .events_in_batch(filter, &batch, cursor.message)
            .await
        {
            Ok(messages) => {
                for message in messages {
                    // Framed once for every stream caught up with the log, as this one
                    // mostly is.
                    let framed = |at: Cursor| {
                        message.framed(at.change, |json| sse::frame(at, "message", json))
                    };
                    if !outlet.message(cursor, message.id, framed).await {
                        return;
                    }
                }
            }
            Err(StreamEnd::Revoked) => return,
            Err(StreamEnd::Failed(error)) => {
                tracing::warn!(%error, "live events: cannot judge messages");
                from_database = true;
                continue;
            }
        }
        if !batch.has_changes_after(cursor.change) {
            cursor.pass(batch.ends_at());
            continue;
        }
        match Box::pin(service.room_changes_in_batch(caller, &batch, cursor.change)).await {
            Ok(changes) => {
                for (id, change) in changes {
                    if !outlet.change(cursor, id, &change, room_name).await {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "live events: cannot judge room changes");
                from_database = true;
                continue;
            }
        }
        cursor.pass(batch.ends_at());
    }
}

/// Where a stream's events go, counting what its finite mode allows.
struct Outlet {
    queue: Queue,
    left: usize,
    until: Option<i64>,
}

impl Outlet {
    fn done(&self, cursor: &Cursor) -> bool {
        self.left == 0 || self.until.is_some_and(|until| cursor.message >= until)
    }

    /// Sends message `id`, as `framed` frames it at the cursor that delivers it; false once
    /// the stream must end (the client left, or the finite mode's end).
    async fn message(
        &mut self,
        cursor: &mut Cursor,
        id: i64,
        framed: impl FnOnce(Cursor) -> Bytes,
    ) -> bool {
        if self.until.is_some_and(|until| id > until) {
            return false;
        }
        cursor.message = id;
        self.send(framed(*cursor)).await
    }

    /// Sends room change `id`, unless it is of another room than the stream's.
    async fn change(
        &mut self,
        cursor: &mut Cursor,
        id: i64,
        change: &crate::service::RoomChange,
        room_name: Option<&str>,
    ) -> bool {
        cursor.change = id;
        if room_name.is_some_and(|name| name != change.room) {
            return true;
        }
        let data = serde_json::to_string(change).unwrap_or_default();
        self.send(sse::frame(*cursor, "room", &data)).await
    }

    async fn send(&mut self, event: Bytes) -> bool {
        let queued = {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.push_back(event);
            queue.len()
        };
        if queued >= QUEUED_EVENTS {
            // The response takes every queued event before it polls the delivery again.
            tokio::task::yield_now().await;
        }
        self.left -= 1;
        self.left > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle live stream holds its delivery's state: a future held inline across an
    /// `.await` of `deliver` grows them all (the batch judgments, inline, made it 4,032 bytes
    /// a stream). Boxing what runs rarely or may read the database keeps it small.
    #[tokio::test]
    async fn an_idle_stream_holds_a_small_delivery() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}/perch.db", dir.path().display());
        let service =
            crate::service::Service::new(crate::store::Store::open(&url).await.expect("store"));
        let caller = Caller::local_operator();
        let mut filter = service.event_filter(&caller, 0);
        let mut cursor = Cursor {
            message: 0,
            change: 0,
        };
        let mut outlet = Outlet {
            queue: Queue::default(),
            left: 1,
            until: None,
        };
        let delivery = deliver(
            &service,
            &caller,
            &mut filter,
            &mut cursor,
            None,
            &mut outlet,
        );
        let size = std::mem::size_of_val(&delivery);
        assert!(size <= 1024, "a stream's delivery holds {size} bytes");
    }
}

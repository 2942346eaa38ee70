//! The chat client: the rooms a person may see, a room's history and live messages, search
//! and posting. Pages are rendered here; `assets/chat.js` adds what must be live (new messages
//! through the room's event stream, resumed by `Last-Event-ID`; older pages on scroll;
//! posting without a reload) through the same API a script with a token would use.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Section, notice};
use super::{AppState, Signed};
use crate::api::wire::percent_encode;
use crate::domain::RoomFilter;
use crate::domain::access::PostRefusal;
use crate::service::{Message, Object, PageRequest, ServiceError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chat", get(rooms))
        .route("/chat/rooms/{name}", get(room).post(post))
}

/// How many messages a history page shows.
pub const MESSAGES_PER_PAGE: i64 = 50;

#[derive(Deserialize)]
struct RoomsQuery {
    q: Option<String>,
    after: Option<String>,
}

async fn rooms(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<RoomsQuery>,
) -> Response {
    let filter = RoomFilter {
        text: query.q.clone().filter(|text| !text.trim().is_empty()),
        ..RoomFilter::default()
    };
    let page = match state
        .service
        .rooms_page(signed.caller(), &filter, query.after.as_deref(), 100)
        .await
    {
        Ok(page) => page,
        Err(error) => return layout::service_error_page(&error),
    };
    let body = html! {
        form.filters method="get" action="/chat" role="search" aria-label="Find a room" {
            div.field { label for="room-q" { "Find a room" } input #room-q type="search" name="q" value=(query.q.clone().unwrap_or_default()); }
            button type="submit" { "Find" }
        }
        ul.rooms #room-list {
            @for stored in &page.rooms {
                @if let Object::Room(room) = &stored.spec {
                    li {
                        a href={"/chat/rooms/" (percent_encode(&room.name))} { (room.name) }
                        span.meta { (room.category) " · " (format!("{:?}", room.privacy).to_lowercase()) " · " (format!("{:?}", room.room_type).to_lowercase())
                            @if room.disabled { " · disabled" } }
                        @if !room.description.is_empty() { p.description { (room.description) } }
                    }
                }
            }
        }
        @if page.rooms.is_empty() { p { "No rooms to show." } }
        @if let Some(next) = &page.next {
            p { a rel="next" href={"/chat?after=" (percent_encode(next)) @if let Some(q) = &query.q { "&q=" (percent_encode(q)) }} { "More rooms" } }
        }
    };
    layout::page(&signed, Section::Chat, "Rooms", body)
}

#[derive(Deserialize)]
struct RoomQuery {
    before: Option<i64>,
    q: Option<String>,
    posted: Option<String>,
}

fn refusal_text(refusal: PostRefusal) -> &'static str {
    match refusal {
        PostRefusal::Disabled => "This room is disabled: nobody posts in it.",
        PostRefusal::NotMember => {
            "Only members post in this room. A manager of the room can add you."
        }
        PostRefusal::NotPresenter => "This room is an auditorium: only its presenters post.",
    }
}

pub fn message_item(message: &Message) -> Markup {
    html! {
        li data-id=(message.id) {
            span.author { (message.author) }
            " "
            time datetime=(message.posted_at) { (message.posted_at.get(..16).unwrap_or(&message.posted_at).replace('T', " ")) }
            @if message.replaced { " " span.tag { "replaced" } }
            p.body { (message.body) }
        }
    }
}

async fn room(
    State(state): State<AppState>,
    signed: Signed,
    Path(name): Path<String>,
    Query(query): Query<RoomQuery>,
) -> Response {
    room_view(&state, &signed, &name, &query, None).await
}

async fn room_view(
    state: &AppState,
    signed: &Signed,
    name: &str,
    query: &RoomQuery,
    problem: Option<(String, String)>,
) -> Response {
    let caller = signed.caller();
    let view = match state.service.room_view(caller, name).await {
        Ok(view) => view,
        Err(error) => {
            let mut response = layout::page(
                signed,
                Section::Chat,
                name,
                notice("error", html! { (error.to_string()) }),
            );
            *response.status_mut() = layout::status_of(&error);
            return response;
        }
    };
    let searching = query.q.as_deref().is_some_and(|q| !q.trim().is_empty());
    let history = state
        .service
        .messages(
            caller,
            name,
            PageRequest {
                before: query.before,
                after: None,
                limit: Some(MESSAGES_PER_PAGE),
                query: query.q.clone().filter(|_| searching),
            },
        )
        .await;
    let room = &view.room;
    let encoded = percent_encode(&room.name);
    let body = html! {
        section #room data-room=(room.name) data-live=(if searching || query.before.is_some() { "off" } else { "on" }) {
            p.meta { (room.category) " · " (format!("{:?}", room.privacy).to_lowercase()) " · " (format!("{:?}", room.room_type).to_lowercase())
                @if !room.description.is_empty() { " — " (room.description) } }
            form.filters method="get" action={"/chat/rooms/" (encoded)} role="search" aria-label="Search this room" {
                div.field { label for="search-q" { "Search this room" } input #search-q type="search" name="q" value=(query.q.clone().unwrap_or_default()); }
                button type="submit" { "Search" }
                @if searching { " " a href={"/chat/rooms/" (encoded)} { "Back to the room" } }
            }
            @match &history {
                Ok(page) => {
                    @if let Some(before) = page.before {
                        p #older { a href={"/chat/rooms/" (encoded) "?before=" (before) @if let Some(q) = query.q.as_deref().filter(|_| searching) { "&q=" (percent_encode(q)) }} data-before=(before) data-q=(query.q.as_deref().filter(|_| searching).unwrap_or_default()) { "Older messages" } }
                    }
                    ol #messages aria-label="Messages" aria-live="polite" {
                        @for message in &page.items { (message_item(message)) }
                    }
                    @if page.items.is_empty() { p #no-messages { @if searching { "No message matches." } @else { "No messages yet." } } }
                    @if query.before.is_some() && !searching { p { a href={"/chat/rooms/" (encoded)} { "Newest messages" } } }
                }
                Err(ServiceError::Forbidden { .. } | ServiceError::NotFound { .. }) => {
                    ol #messages aria-label="Messages" aria-live="polite" {}
                    p.help { "This room's history is not shown to you; new messages appear here as they are posted." }
                }
                Err(error) => {
                    ol #messages aria-label="Messages" aria-live="polite" {}
                    p.help { (error.to_string()) }
                }
            }
            p #live-status.help aria-live="polite" {}
            @if query.posted.is_some() { (notice("success", html! { "Posted." })) }
            @if let Some((_, message)) = &problem { (notice("error", html! { "Not posted: " (message) })) }
            @match view.posting {
                Ok(()) => {
                    form #composer method="post" action={"/chat/rooms/" (encoded)} {
                        input type="hidden" name="csrf" value=(signed.csrf());
                        label for="message-body" { "Message" }
                        textarea #message-body name="body" rows="2" required maxlength="8000" {}
                        button type="submit" { "Post" }
                        p #post-error.error role="alert" {}
                    }
                }
                Err(refusal) => {
                    p #cannot-post.notice.info role="status" { (refusal_text(refusal)) }
                }
            }
            @if caller.is_admin() {
                p.meta { a href={"/admin/rooms/" (encoded)} { "Room settings" } " · " a href={"/admin/history/" (encoded)} { "History administration" } }
            }
        }
        script src="/assets/chat.js" defer {}
    };
    let mut response = layout::page(signed, Section::Chat, &room.name, body);
    if problem.is_some() {
        *response.status_mut() = StatusCode::FORBIDDEN;
    }
    response
}

#[derive(Deserialize)]
struct PostForm {
    csrf: Option<String>,
    body: String,
}

/// Posting without the script: the form posts here and comes back to the room.
async fn post(
    State(state): State<AppState>,
    signed: Signed,
    Path(name): Path<String>,
    headers: HeaderMap,
    super::WebForm(form): super::WebForm<PostForm>,
) -> Response {
    if let Some(refusal) = signed.check(&headers, form.csrf.as_deref()) {
        return refusal;
    }
    match state
        .service
        .post_message(signed.caller(), &name, &form.body, None)
        .await
    {
        Ok(_) => {
            Redirect::to(&format!("/chat/rooms/{}?posted=1", percent_encode(&name))).into_response()
        }
        Err(error) => {
            let query = RoomQuery {
                before: None,
                q: None,
                posted: None,
            };
            let mut response = room_view(
                &state,
                &signed,
                &name,
                &query,
                Some((error.field().unwrap_or("").to_owned(), error.to_string())),
            )
            .await;
            *response.status_mut() = layout::status_of(&error);
            response
        }
    }
}

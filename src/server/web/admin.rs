//! The control panel: the Persistent Chat section of the SfB Control Panel, and what it
//! lacked. Every page calls the service as the signed-in person; the service decides.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::forms::{self, Field};
use super::layout::{self, Section, managed_warning, notice};
use super::{AppState, Signed};
use crate::api::wire::{Level, RoomQuery, collection_of, percent_encode};
use crate::domain::{Kind, Principal};
use crate::service::{
    Match, Object, Ownership, Precondition, RemoveFilter, Role, ServiceError, Stored,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(overview))
        .route("/admin/check-principals", get(check_principals))
        .route(
            "/admin/compliance",
            get(compliance_page).post(save_compliance),
        )
        .route("/admin/tokens", get(tokens_page).post(token_action))
        .route("/admin/data", get(data_page))
        .route(
            "/admin/history/{room}",
            get(history_page).post(history_action),
        )
        .route("/admin/new/{collection}", get(new_page).post(create_object))
        .route("/admin/{collection}", get(list_page))
        .route(
            "/admin/{collection}/{name}",
            get(edit_page).post(save_object),
        )
}

type Form = super::WebForm<Vec<(String, String)>>;

fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn kind_of(collection: &str) -> Option<Kind> {
    [Kind::Category, Kind::Room, Kind::Addin, Kind::Group]
        .into_iter()
        .find(|kind| collection_of(*kind) == collection)
}

fn section_of(kind: Kind) -> Section {
    match kind {
        Kind::Category => Section::Categories,
        Kind::Room => Section::Rooms,
        Kind::Addin => Section::Addins,
        Kind::Group => Section::Groups,
        Kind::ComplianceConfiguration => Section::Compliance,
    }
}

fn title_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Category => "Categories",
        Kind::Room => "Rooms",
        Kind::Addin => "Add-ins",
        Kind::Group => "Groups",
        Kind::ComplianceConfiguration => "Compliance",
    }
}

pub fn object_href(kind: Kind, name: &str) -> String {
    format!("/admin/{}/{}", collection_of(kind), percent_encode(name))
}

fn not_found(signed: &Signed, what: &str) -> Response {
    layout::page_with_status(
        StatusCode::NOT_FOUND,
        signed,
        Section::Overview,
        "Not found",
        notice("error", html! { (what) }),
    )
}

/// A page that shows a refusal of the service where the page's content would be.
fn refused(signed: &Signed, section: Section, title: &str, error: &ServiceError) -> Response {
    layout::page_with_status(
        layout::status_of(error),
        signed,
        section,
        title,
        notice("error", html! { (error.to_string()) }),
    )
}

// ---------------------------------------------------------------------------------------------
// Overview

async fn overview(State(state): State<AppState>, signed: Signed) -> Response {
    let service = &state.service;
    let caller = signed.caller();
    let archive = match service.archive_state(caller).await {
        Ok(archive) => archive,
        Err(error) => return refused(&signed, Section::Overview, "Overview", &error),
    };
    let mut counts = Vec::new();
    for kind in [Kind::Category, Kind::Addin, Kind::Group] {
        match service.list(caller, kind).await {
            Ok(objects) => counts.push((kind, objects.len())),
            Err(error) => return refused(&signed, Section::Overview, "Overview", &error),
        }
    }
    let rooms = service.room_count().await.unwrap_or_default();
    let body = html! {
        section aria-labelledby="counts" {
            h2 #counts { "Configuration" }
            ul.cards {
                li { a href="/admin/rooms" { strong { (rooms) } " rooms" } }
                @for (kind, count) in &counts {
                    li { a href={"/admin/" (collection_of(*kind))} { strong { (count) } " " (title_of(*kind).to_lowercase()) } }
                }
            }
        }
        section aria-labelledby="archive" {
            h2 #archive { "Compliance archive" }
            dl {
                dt { "Capture" } dd { @if archive.enabled { "on" } @else { "off" } }
                dt { "Archived through event" } dd { (archive.archived_through) }
                dt { "Newest event" } dd { (archive.newest_event) }
                dt { "Lag" } dd #archive-lag { (archive.lag()) " events" }
                dt { "Last batch" } dd { (archive.last_run_at.as_deref().unwrap_or("never")) }
                dt { "Lease" } dd {
                    @match &archive.holder {
                        Some((node, since)) => { "held by " code { (node) } " since " (since) }
                        None => { "no node holds it" }
                    }
                }
            }
        }
    };
    layout::page(&signed, Section::Overview, "Overview", body)
}

// ---------------------------------------------------------------------------------------------
// Validation as you type

#[derive(Deserialize)]
struct CheckQuery {
    #[serde(default)]
    text: String,
}

/// `{"problems": [{"line": 2, "message": ...}]}` for a list of principals, one per line: the
/// same parser the service uses.
async fn check_principals(_signed: Signed, Query(query): Query<CheckQuery>) -> Response {
    let problems: Vec<Value> = query
        .text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .filter_map(|(index, line)| {
            Principal::parse(line.trim())
                .err()
                .map(|error| serde_json::json!({"line": index + 1, "message": error.to_string()}))
        })
        .take(50)
        .collect();
    axum::Json(serde_json::json!({"problems": problems})).into_response()
}

// ---------------------------------------------------------------------------------------------
// Lists

#[derive(Deserialize, Default)]
struct ListQuery {
    done: Option<String>,
    #[serde(flatten)]
    rooms: RoomQuery,
}

fn done_notice(done: Option<&str>) -> Option<Markup> {
    let text = match done? {
        "created" => "Created.",
        "saved" => "Saved.",
        "removed" => "Removed.",
        _ => return None,
    };
    Some(notice("success", html! { (text) }))
}

async fn list_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(collection): Path<String>,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(kind) = kind_of(&collection) else {
        return not_found(&signed, "No such page.");
    };
    if kind == Kind::Room {
        return rooms_page(&state, &signed, &query).await;
    }
    let objects = match state.service.list(signed.caller(), kind).await {
        Ok(objects) => objects,
        Err(error) => return refused(&signed, section_of(kind), title_of(kind), &error),
    };
    let body = html! {
        @if let Some(done) = done_notice(query.done.as_deref()) { (done) }
        p { a.button href={"/admin/new/" (collection)} { "New " (kind.as_str().to_lowercase()) } }
        table {
            caption.visually-hidden { (title_of(kind)) }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Details" } th scope="col" { "Git" } th scope="col" { "Changed" } } }
            tbody {
                @for object in &objects {
                    tr {
                        td { a href=(object_href(kind, object.spec.name())) { (object.spec.name()) } }
                        td { (summary(&object.spec)) }
                        td { @if object.meta.managed { "managed" } }
                        td { (object.meta.updated_by) br; small { (object.meta.updated_at) } }
                    }
                }
            }
        }
        @if objects.is_empty() { p { "None yet." } }
    };
    layout::page(&signed, section_of(kind), title_of(kind), body)
}

fn summary(object: &Object) -> String {
    match object {
        Object::Category(category) => format!(
            "{} allowed, {} denied, {} creators{}",
            category.allowed_members.len(),
            category.denied_members.len(),
            category.creators.len(),
            if category.chat_history {
                ""
            } else {
                "; no chat history"
            }
        ),
        Object::Room(room) => format!(
            "{} · {:?} · {:?}",
            room.category, room.privacy, room.room_type
        ),
        Object::Addin(addin) => addin.url.clone(),
        Object::Group(group) => format!("{} members", group.members.len()),
    }
}

/// The rooms page: server-side paging and the filters of `Get-CsPersistentChatRoom`.
pub const ROOMS_PER_PAGE: usize = 50;

async fn rooms_page(state: &AppState, signed: &Signed, query: &ListQuery) -> Response {
    let filter = match query.rooms.filter() {
        Ok(filter) => filter,
        Err((field, message)) => {
            let mut response = layout::page(
                signed,
                Section::Rooms,
                "Rooms",
                html! { (room_filter_form(&query.rooms)) (notice("error", html! { (field) ": " (message) })) },
            );
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let page = match state
        .service
        .rooms_page(
            signed.caller(),
            &filter,
            query.rooms.after.as_deref(),
            ROOMS_PER_PAGE,
        )
        .await
    {
        Ok(page) => page,
        Err(error) => return refused(signed, Section::Rooms, "Rooms", &error),
    };
    // The server's whole count would tell a user when secret rooms come and go.
    let total = if signed.caller().is_admin() {
        Some(state.service.room_count().await.unwrap_or_default())
    } else {
        None
    };
    let filters = query.rooms.filter_query();
    let body = html! {
        @if let Some(done) = done_notice(query.done.as_deref()) { (done) }
        p { a.button href="/admin/new/rooms" { "New room" } }
        (room_filter_form(&query.rooms))
        p #room-count { (page.rooms.len()) " shown"
            @if let Some(total) = total { " of " (total) " rooms on the server" }
            @if !filter.is_empty() { " (filtered)" } "." }
        table #rooms {
            caption.visually-hidden { "Rooms" }
            thead { tr {
                th scope="col" { "Name" } th scope="col" { "Category" } th scope="col" { "Privacy" }
                th scope="col" { "Type" } th scope="col" { "Members" } th scope="col" { "Git" } th scope="col" { "History" }
            } }
            tbody {
                @for stored in &page.rooms {
                    @if let Object::Room(room) = &stored.spec {
                        tr {
                            td { a href=(object_href(Kind::Room, &room.name)) { (room.name) }
                                @if room.disabled { " " span.tag { "disabled" } } }
                            td { (room.category) }
                            td { (format!("{:?}", room.privacy).to_lowercase()) }
                            td { (format!("{:?}", room.room_type).to_lowercase()) }
                            td { (room.members.len()) }
                            td { @if stored.meta.managed { "managed" } }
                            td { a href={"/admin/history/" (percent_encode(&room.name))} { "History" } }
                        }
                    }
                }
            }
        }
        @if page.rooms.is_empty() { p { "No rooms match." } }
        @if let Some(next) = &page.next {
            p { a #next-page rel="next" href={"/admin/rooms?" (filters) @if !filters.is_empty() { "&" } "after=" (percent_encode(next))} { "Next page" } }
        }
    };
    layout::page(signed, Section::Rooms, "Rooms", body)
}

fn room_filter_form(query: &RoomQuery) -> Markup {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    let choice = |name: &'static str,
                  label: &'static str,
                  options: &'static [&'static str],
                  value: &Option<String>| {
        html! {
            div.field {
                label for={"filter-" (name)} { (label) }
                select id={"filter-" (name)} name=(name) {
                    option value="" { "any" }
                    @for option in options {
                        option value=(option) selected[value.as_deref() == Some(*option)] { (option) }
                    }
                }
            }
        }
    };
    html! {
        form.filters method="get" action="/admin/rooms" role="search" aria-label="Filter rooms" {
            div.field { label for="filter-q" { "Name or description" } input #filter-q type="search" name="q" value=(text(&query.q)); }
            div.field { label for="filter-category" { "Category" } input #filter-category type="text" name="category" value=(text(&query.category)); }
            div.field { label for="filter-addin" { "Add-in" } input #filter-addin type="text" name="addin" value=(text(&query.addin)); }
            div.field { label for="filter-member" { "Member" } input #filter-member type="text" name="member" placeholder="sip:user@domain" value=(text(&query.member)); }
            div.field { label for="filter-manager" { "Manager" } input #filter-manager type="text" name="manager" placeholder="sip:user@domain" value=(text(&query.manager)); }
            (choice("privacy", "Privacy", &["open", "closed", "secret"], &query.privacy))
            (choice("type", "Type", &["normal", "auditorium"], &query.room_type))
            (choice("disabled", "Disabled", &["true", "false"], &query.disabled))
            button type="submit" { "Filter" }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One object

/// The edit form of an object: its fields, the version it was read at, and the CSRF token.
fn object_form(
    signed: &Signed,
    action: &str,
    fields: &[Field],
    values: &Map<String, Value>,
    version: Option<i64>,
    problem: Option<(&str, &str)>,
    removable: bool,
) -> Markup {
    html! {
        form.object method="post" action=(action) novalidate {
            input type="hidden" name="csrf" value=(signed.csrf());
            @if let Some(version) = version { input type="hidden" name="version" value=(version); }
            (forms::render(fields, values, problem))
            div.actions {
                button type="submit" name="action" value="save" { "Save" }
                @if removable {
                    button.danger type="submit" name="action" value="remove" { "Remove" }
                }
            }
        }
    }
}

fn problem_of(error: &ServiceError) -> (String, String) {
    (error.field().unwrap_or("").to_owned(), error.to_string())
}

async fn new_page(signed: Signed, Path(collection): Path<String>) -> Response {
    let Some(kind) = kind_of(&collection) else {
        return not_found(&signed, "No such page.");
    };
    let mut values = Map::new();
    if kind == Kind::Category {
        values.insert("chatHistory".into(), Value::Bool(true));
    }
    let title = format!("New {}", kind.as_str().to_lowercase());
    let form = object_form(
        &signed,
        &format!("/admin/new/{collection}"),
        forms::fields(kind),
        &values,
        None,
        None,
        false,
    );
    layout::page(&signed, section_of(kind), &title, form)
}

async fn create_object(
    State(state): State<AppState>,
    signed: Signed,
    Path(collection): Path<String>,
    headers: HeaderMap,
    super::WebForm(form): Form,
) -> Response {
    let Some(kind) = kind_of(&collection) else {
        return not_found(&signed, "No such page.");
    };
    if let Some(refusal) = signed.check(&headers, form_value(&form, "csrf")) {
        return refusal;
    }
    let values = forms::parse(forms::fields(kind), &form);
    let outcome = match Object::from_json(kind, Value::Object(values.clone())) {
        Ok(object) => {
            state
                .service
                .create(signed.caller(), object, Ownership::Keep)
                .await
        }
        Err(error) => Err(ServiceError::from_json_path(error)),
    };
    match outcome {
        Ok(created) => Redirect::to(&format!(
            "{}?done=created",
            object_href(kind, created.spec.name())
        ))
        .into_response(),
        Err(error) => {
            let (field, message) = problem_of(&error);
            let title = format!("New {}", kind.as_str().to_lowercase());
            let body = html! {
                (notice("error", html! { "Not created: " (message) }))
                (object_form(&signed, &format!("/admin/new/{collection}"), forms::fields(kind), &values, None, Some((&field, &message)), false))
            };
            layout::page_with_status(
                layout::status_of(&error),
                &signed,
                section_of(kind),
                &title,
                body,
            )
        }
    }
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

fn object_values(stored: &Stored<Object>) -> Map<String, Value> {
    match serde_json::to_value(&stored.spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

fn object_header(kind: Kind, stored: &Stored<Object>) -> Markup {
    html! {
        p.meta {
            "Version " (stored.meta.version) ", changed by " (stored.meta.updated_by) " at " (stored.meta.updated_at) "."
            @if kind == Kind::Room {
                " " a href={"/admin/history/" (percent_encode(stored.spec.name()))} { "History administration" }
                " · " a href={"/chat/rooms/" (percent_encode(stored.spec.name()))} { "Open in chat" }
            }
        }
        @if stored.meta.managed { (managed_warning()) }
    }
}

async fn edit_page(
    State(state): State<AppState>,
    signed: Signed,
    Path((collection, name)): Path<(String, String)>,
    Query(query): Query<DoneQuery>,
) -> Response {
    let Some(kind) = kind_of(&collection) else {
        return not_found(&signed, "No such page.");
    };
    let stored = match state.service.get(signed.caller(), kind, &name).await {
        Ok(stored) => stored,
        Err(error) => return refused(&signed, section_of(kind), &name, &error),
    };
    let body = html! {
        @if let Some(done) = done_notice(query.done.as_deref()) { (done) }
        (object_header(kind, &stored))
        (object_form(&signed, &object_href(kind, &name), forms::fields(kind), &object_values(&stored), Some(stored.meta.version), None, true))
    };
    layout::page(
        &signed,
        section_of(kind),
        &format!("{} {}", kind.as_str(), name),
        body,
    )
}

/// The refusal of a stale edit: who changed the object since the page was opened, and when.
fn stale_notice(current: Option<&Stored<Object>>) -> Markup {
    notice(
        "error",
        html! {
            strong { "Not saved: someone else changed this object since you opened the page. " }
            @if let Some(current) = current {
                span #stale-by { "Changed by " (current.meta.updated_by) " at " (current.meta.updated_at) " (version " (current.meta.version) "). " }
            }
            "Your edit is below; reload the page to see their change, then make yours again."
        },
    )
}

async fn save_object(
    State(state): State<AppState>,
    signed: Signed,
    Path((collection, name)): Path<(String, String)>,
    headers: HeaderMap,
    super::WebForm(form): Form,
) -> Response {
    let Some(kind) = kind_of(&collection) else {
        return not_found(&signed, "No such page.");
    };
    if let Some(refusal) = signed.check(&headers, form_value(&form, "csrf")) {
        return refusal;
    }
    let precondition = form_value(&form, "version")
        .and_then(|version| version.parse().ok())
        .map_or(Precondition::None, Precondition::Version);
    let caller = signed.caller();
    if form_value(&form, "action") == Some("remove") {
        return match state
            .service
            .remove(caller, kind, &name, precondition, false)
            .await
        {
            Ok(()) => Redirect::to(&format!("/admin/{collection}?done=removed")).into_response(),
            Err(error) => {
                let current = state.service.get(caller, kind, &name).await.ok();
                let top = if matches!(error, ServiceError::VersionMismatch { .. }) {
                    stale_notice(current.as_ref())
                } else {
                    notice("error", html! { "Not removed: " (error.to_string()) })
                };
                let values = current.as_ref().map(object_values).unwrap_or_default();
                let body = html! {
                    (top)
                    (object_form(&signed, &object_href(kind, &name), forms::fields(kind), &values, current.as_ref().map(|c| c.meta.version), None, true))
                };
                layout::page_with_status(
                    layout::status_of(&error),
                    &signed,
                    section_of(kind),
                    &format!("{} {}", kind.as_str(), name),
                    body,
                )
            }
        };
    }
    let values = forms::parse(forms::fields(kind), &form);
    let outcome = match Object::from_json(kind, Value::Object(values.clone())) {
        Ok(object) => {
            state
                .service
                .replace(caller, &name, object, precondition, Ownership::Keep)
                .await
        }
        Err(error) => Err(ServiceError::from_json_path(error)),
    };
    match outcome {
        Ok(saved) => Redirect::to(&format!(
            "{}?done=saved",
            object_href(kind, saved.spec.name())
        ))
        .into_response(),
        Err(error) => {
            let current = state.service.get(caller, kind, &name).await.ok();
            let (field, message) = problem_of(&error);
            let edit_was_stale = matches!(error, ServiceError::VersionMismatch { .. });
            let body = html! {
                @if edit_was_stale { (stale_notice(current.as_ref())) }
                @else { (notice("error", html! { "Not saved: " (message) })) }
                @if let Some(current) = &current { (object_header(kind, current)) }
                // The version stays the one the person edited: saving again stays refused
                // until they reload and see the other change.
                (object_form(&signed, &object_href(kind, &name), forms::fields(kind), &values,
                    form_value(&form, "version").and_then(|v| v.parse().ok()),
                    (!edit_was_stale).then_some((field.as_str(), message.as_str())), true))
            };
            layout::page_with_status(
                layout::status_of(&error),
                &signed,
                section_of(kind),
                &format!("{} {}", kind.as_str(), name),
                body,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compliance

async fn compliance_page(
    State(state): State<AppState>,
    signed: Signed,
    Query(query): Query<DoneQuery>,
) -> Response {
    let stored = match state.service.compliance(signed.caller()).await {
        Ok(stored) => stored,
        Err(error) => return refused(&signed, Section::Compliance, "Compliance", &error),
    };
    let values = match serde_json::to_value(&stored.spec) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let body = html! {
        @if let Some(done) = done_notice(query.done.as_deref()) { (done) }
        p.meta { "Version " (stored.meta.version) ", changed by " (stored.meta.updated_by) " at " (stored.meta.updated_at) "." }
        @if stored.meta.managed { (managed_warning()) }
        (compliance_form(&signed, &values, Some(stored.meta.version), None))
    };
    layout::page(&signed, Section::Compliance, "Compliance", body)
}

fn compliance_form(
    signed: &Signed,
    values: &Map<String, Value>,
    version: Option<i64>,
    problem: Option<(&str, &str)>,
) -> Markup {
    html! {
        form.object method="post" action="/admin/compliance" novalidate {
            input type="hidden" name="csrf" value=(signed.csrf());
            @if let Some(version) = version { input type="hidden" name="version" value=(version); }
            (forms::render(forms::COMPLIANCE, values, problem))
            div.actions { button type="submit" { "Save" } }
        }
    }
}

async fn save_compliance(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    super::WebForm(form): Form,
) -> Response {
    if let Some(refusal) = signed.check(&headers, form_value(&form, "csrf")) {
        return refusal;
    }
    let values = forms::parse(forms::COMPLIANCE, &form);
    let precondition = form_value(&form, "version")
        .and_then(|version| version.parse().ok())
        .map_or(Precondition::None, Precondition::Version);
    let outcome = match serde_path_to_error::deserialize(Value::Object(values.clone())) {
        Ok(configuration) => {
            state
                .service
                .set_compliance(
                    signed.caller(),
                    configuration,
                    precondition,
                    Ownership::Keep,
                )
                .await
        }
        Err(error) => Err(ServiceError::from_json_path(error)),
    };
    match outcome {
        Ok(_) => Redirect::to("/admin/compliance?done=saved").into_response(),
        Err(error) => {
            let (field, message) = problem_of(&error);
            let current = state.service.compliance(signed.caller()).await.ok();
            let edit_was_stale = matches!(error, ServiceError::VersionMismatch { .. });
            let body = html! {
                @if edit_was_stale {
                    (notice("error", html! {
                        strong { "Not saved: someone else changed the compliance configuration since you opened the page. " }
                        @if let Some(current) = &current { "Changed by " (current.meta.updated_by) " at " (current.meta.updated_at) ". " }
                        "Reload the page to see their change."
                    }))
                } @else {
                    (notice("error", html! { "Not saved: " (message) }))
                }
                (compliance_form(&signed, &values, form_value(&form, "version").and_then(|v| v.parse().ok()), (!edit_was_stale).then_some((field.as_str(), message.as_str()))))
            };
            layout::page_with_status(
                layout::status_of(&error),
                &signed,
                Section::Compliance,
                "Compliance",
                body,
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

async fn tokens_page(State(state): State<AppState>, signed: Signed) -> Response {
    tokens_view(&state, &signed, None).await
}

async fn tokens_view(state: &AppState, signed: &Signed, top: Option<Markup>) -> Response {
    let tokens = match state.service.tokens(signed.caller()).await {
        Ok(tokens) => tokens,
        Err(error) => return refused(signed, Section::Tokens, "Tokens", &error),
    };
    let body = html! {
        @if let Some(top) = top { (top) }
        form.object method="post" action="/admin/tokens" {
            input type="hidden" name="csrf" value=(signed.csrf());
            input type="hidden" name="action" value="create";
            div.field { label for="token-user" { "User" } input #token-user type="text" name="user" required placeholder="sip:user@domain"; }
            div.field { label for="token-role" { "Role" } select #token-role name="role" { option value="user" { "user" } option value="admin" { "admin" } } }
            div.field { label for="token-expires" { "Expires in" } input #token-expires type="text" name="expiresIn" placeholder="30d (empty: never)" aria-describedby="token-expires-help";
                p.help #token-expires-help { "Seconds, minutes, hours or days: 3600s, 90m, 12h, 30d." } }
            div.actions { button type="submit" { "Create token" } }
        }
        table #tokens {
            caption.visually-hidden { "Tokens" }
            thead { tr { th scope="col" { "Id" } th scope="col" { "User" } th scope="col" { "Role" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { span.visually-hidden { "Revoke" } } } }
            tbody {
                @for token in &tokens {
                    tr {
                        td { code { (token.id) } }
                        td { (token.user) }
                        td { (token.role) }
                        td { (token.created_at) }
                        td { (token.expires_at.as_deref().unwrap_or("never")) }
                        td { (token.last_used_at.as_deref().unwrap_or("never")) }
                        td {
                            form method="post" action="/admin/tokens" {
                                input type="hidden" name="csrf" value=(signed.csrf());
                                input type="hidden" name="action" value="revoke";
                                input type="hidden" name="id" value=(token.id);
                                button.danger type="submit" aria-label={"Revoke token " (token.id) " of " (token.user)} { "Revoke" }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page(signed, Section::Tokens, "Tokens", body)
}

async fn token_action(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    super::WebForm(form): Form,
) -> Response {
    if let Some(refusal) = signed.check(&headers, form_value(&form, "csrf")) {
        return refusal;
    }
    let caller = signed.caller();
    let top = match form_value(&form, "action") {
        Some("create") => {
            let role =
                Role::parse(form_value(&form, "role").unwrap_or("user")).unwrap_or(Role::User);
            let expires = form_value(&form, "expiresIn")
                .map(str::trim)
                .filter(|text| !text.is_empty());
            match state
                .service
                .issue_token(
                    caller,
                    form_value(&form, "user").unwrap_or_default().trim(),
                    role,
                    expires,
                )
                .await
            {
                Ok(created) => notice(
                    "success",
                    html! {
                        p { "Token created for " (created.info.user) ". Copy it now: it is shown only once." }
                        p { code #new-token { (created.token) } }
                    },
                ),
                Err(error) => notice("error", html! { "Not created: " (error.to_string()) }),
            }
        }
        Some("revoke") => match state
            .service
            .revoke_token(caller, form_value(&form, "id").unwrap_or_default())
            .await
        {
            Ok(Some(info)) => notice(
                "success",
                html! { "Revoked token " code { (info.id) } " of " (info.user) "." },
            ),
            Ok(None) => notice("error", html! { "No such token." }),
            Err(error) => notice("error", html! { "Not revoked: " (error.to_string()) }),
        },
        _ => notice("error", html! { "Unknown action." }),
    };
    tokens_view(&state, &signed, Some(top)).await
}

// ---------------------------------------------------------------------------------------------
// Room history administration

async fn history_page(
    State(state): State<AppState>,
    signed: Signed,
    Path(room): Path<String>,
) -> Response {
    if let Err(error) = state.service.get(signed.caller(), Kind::Room, &room).await {
        return refused(&signed, Section::Rooms, &room, &error);
    }
    history_view(&signed, &room, &[], None)
}

fn history_view(
    signed: &Signed,
    room: &str,
    form: &[(String, String)],
    top: Option<Markup>,
) -> Response {
    let value = |name: &str| form_value(form, name).unwrap_or_default().to_owned();
    let action = format!("/admin/history/{}", percent_encode(room));
    let body = html! {
        p.meta { a href=(object_href(Kind::Room, room)) { "Room settings" } " · " a href={"/chat/rooms/" (percent_encode(room))} { "Open in chat" } }
        @if let Some(top) = top { (top) }
        section aria-labelledby="clear-heading" {
            h2 #clear-heading { "Clear the room" }
            form.object method="post" action=(action) {
                input type="hidden" name="csrf" value=(signed.csrf());
                div.field { label for="clear-end" { "Everything posted on or before" }
                    input #clear-end type="text" name="endDate" required placeholder="2026-11-30 or 2026-11-30T12:00:00Z" value=(value("endDate")); }
                div.actions { button type="submit" name="action" value="preview-clear" { "Preview" } }
            }
        }
        section aria-labelledby="remove-heading" {
            h2 #remove-heading { "Remove or replace messages" }
            form.object method="post" action=(action) {
                input type="hidden" name="csrf" value=(signed.csrf());
                div.field { label for="rm-user" { "Author" } input #rm-user type="text" name="user" placeholder="sip:user@domain" value=(value("user")); }
                div.field { label for="rm-start" { "From" } input #rm-start type="text" name="startDate" placeholder="2026-11-01" value=(value("startDate")); }
                div.field { label for="rm-end" { "Until" } input #rm-end type="text" name="endDate" placeholder="2026-11-30" value=(value("endDate")); }
                div.field { label for="rm-filter" { "Keywords" } input #rm-filter type="text" name="filter" value=(value("filter")); }
                div.field { label for="rm-match" { "Match" } select #rm-match name="match" {
                    @for option in ["all", "or", "exact"] { option value=(option) selected[value("match") == option] { (option) } } } }
                div.field { input #rm-case type="checkbox" name="caseSensitive" value="true" checked[value("caseSensitive") == "true"]; label for="rm-case" { "Case-sensitive" } }
                div.field { label for="rm-replace" { "Replace with (empty: remove)" } input #rm-replace type="text" name="replace" value=(value("replace")); }
                div.actions { button type="submit" name="action" value="preview-remove" { "Preview" } }
            }
        }
    };
    layout::page(signed, Section::Rooms, &format!("History of {room}"), body)
}

fn remove_filter(form: &[(String, String)]) -> Result<RemoveFilter, ServiceError> {
    let given = |name: &str| {
        form_value(form, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let matching = match given("match") {
        None => Match::All,
        Some(text) => Match::parse(&text).ok_or_else(|| {
            ServiceError::invalid(
                "match",
                crate::api::ErrorCode::InvalidField,
                format!("match takes all, or or exact, not `{text}`"),
            )
        })?,
    };
    Ok(RemoveFilter {
        author: given("user"),
        start: given("startDate"),
        end: given("endDate"),
        words: given("filter"),
        matching,
        case_sensitive: form_value(form, "caseSensitive") == Some("true"),
        replacement: form_value(form, "replace")
            .filter(|text| !text.is_empty())
            .map(str::to_owned),
    })
}

/// A form that repeats the previewed values with the button that acts on them.
fn confirm_form(
    signed: &Signed,
    room: &str,
    form: &[(String, String)],
    action: &str,
    label: &str,
) -> Markup {
    html! {
        form method="post" action={"/admin/history/" (percent_encode(room))} {
            input type="hidden" name="csrf" value=(signed.csrf());
            @for (name, value) in form.iter().filter(|(name, _)| name != "csrf" && name != "action") {
                input type="hidden" name=(name) value=(value);
            }
            button.danger type="submit" name="action" value=(action) { (label) }
        }
    }
}

async fn history_action(
    State(state): State<AppState>,
    signed: Signed,
    Path(room): Path<String>,
    headers: HeaderMap,
    super::WebForm(form): Form,
) -> Response {
    if let Some(refusal) = signed.check(&headers, form_value(&form, "csrf")) {
        return refusal;
    }
    let caller = signed.caller();
    let service = &state.service;
    let end = form_value(&form, "endDate")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let top = match form_value(&form, "action") {
        Some("preview-clear") => match service.preview_clear_room(caller, &room, &end).await {
            Ok(count) => html! {
                (notice("warning", html! { span #preview-count { (count) } " messages were posted on or before " (end) "." }))
                @if count > 0 { (confirm_form(&signed, &room, &form, "clear", &format!("Clear these {count} messages"))) }
            },
            Err(error) => notice("error", html! { (error.to_string()) }),
        },
        Some("clear") => match service.clear_room(caller, &room, &end).await {
            Ok(count) => notice(
                "success",
                html! { "Cleared: " span #done-count { (count) } " messages removed." },
            ),
            Err(error) => notice("error", html! { "Not cleared: " (error.to_string()) }),
        },
        Some(action @ ("preview-remove" | "remove")) => match remove_filter(&form) {
            Err(error) => notice("error", html! { (error.to_string()) }),
            Ok(filter) => {
                let verb = if filter.replacement.is_some() {
                    "Replace"
                } else {
                    "Remove"
                };
                if action == "preview-remove" {
                    match service.preview_remove_messages(caller, &room, filter).await {
                        Ok(count) => html! {
                            (notice("warning", html! { span #preview-count { (count) } " messages match." }))
                            @if count > 0 { (confirm_form(&signed, &room, &form, "remove", &format!("{verb} these {count} messages"))) }
                        },
                        Err(error) => notice("error", html! { (error.to_string()) }),
                    }
                } else {
                    match service.remove_messages(caller, &room, filter).await {
                        Ok(count) => notice(
                            "success",
                            html! { "Done: " span #done-count { (count) } " messages touched." },
                        ),
                        Err(error) => {
                            notice("error", html! { "Nothing changed: " (error.to_string()) })
                        }
                    }
                }
            }
        },
        _ => notice("error", html! { "Unknown action." }),
    };
    history_view(&signed, &room, &form, Some(top))
}

// ---------------------------------------------------------------------------------------------
// Chat data

async fn data_page(State(state): State<AppState>, signed: Signed) -> Response {
    let categories = match state.service.list(signed.caller(), Kind::Category).await {
        Ok(categories) => categories,
        Err(error) => return refused(&signed, Section::Data, "Chat data", &error),
    };
    let body = html! {
        section aria-labelledby="export-heading" {
            h2 #export-heading { "Export" }
            p { "The same file as " code { "perch data export" } ": JSON Lines, levels and scope as the CLI." }
            form.object method="get" action="/v1/data/export" {
                div.field { label for="export-level" { "Level" } select #export-level name="level" {
                    @for level in Level::ALL { option value=(level.as_str()) { (level.as_str()) } } } }
                div.field { label for="export-scope" { "Categories" } select #export-scope name="scope" multiple size="4" aria-describedby="export-scope-help" {
                    @for category in &categories { option value=(category.spec.name()) { (category.spec.name()) } } }
                    p.help #export-scope-help { "None selected: all." } }
                div.field { label for="export-since" { "Messages since" } input #export-since type="text" name="since" placeholder="2026-01-01"; }
                div.actions { button type="submit" { "Download" } }
            }
        }
        section aria-labelledby="import-heading" {
            h2 #import-heading { "Import" }
            p { "A file written by an export. Checked whole before anything is written; nothing is written if any line is wrong." }
            form.object #import-form data-upload="/v1/data/import" {
                div.field { label for="import-file" { "File" } input #import-file type="file" name="file" required; }
                div.actions { button type="submit" { "Import" } }
                progress #import-progress max="100" value="0" hidden {}
                p #import-status aria-live="polite" {}
            }
        }
    };
    layout::page(&signed, Section::Data, "Chat data", body)
}

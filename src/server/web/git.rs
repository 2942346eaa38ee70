//! The Git view: what changed on the server since the last `perch apply`, object by object and
//! field by field, who changed it and when, and the plan that would restore Git's version;
//! and a plan preview for pasted manifests. Read-only: applying stays in Git.
//!
//! Both pages run the reconciler's own code: the manifests go through `manifest::load_texts`
//! (every check `perch plan` makes), the live state is read as `perch plan --db` reads it, and
//! the plan is printed by `plan::render::human`, exactly as `perch plan` prints it.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde_json::Value;

use super::layout::{self, Section, notice};
use super::{AppState, Signed};
use crate::live::Target;
use crate::live::embedded::EmbeddedTarget;
use crate::manifest::{self, SourceFile};
use crate::plan::{self, Action, FieldChange, Plan, Verb, render};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/git", get(git_view))
        .route("/admin/plan", get(preview_page).post(preview))
        .layer(axum::extract::DefaultBodyLimit::max(PREVIEW_BODY_LIMIT))
}

/// The most manifest text the plan preview takes in one form.
const PREVIEW_BODY_LIMIT: usize = 16 << 20;

/// The most drifted objects the Git view lists in detail (the plan below lists them all).
const MAX_DRIFT_SHOWN: usize = 500;

/// The plan for `files` against this server, as the signed-in person reads it.
async fn plan_for(
    state: &AppState,
    signed: &Signed,
    files: &[SourceFile],
) -> Result<(Plan, EmbeddedTarget), Markup> {
    let desired = {
        let files = files.to_vec();
        tokio::task::spawn_blocking(move || manifest::load_texts(&files))
            .await
            .map_err(|error| {
                notice(
                    "error",
                    html! { "The manifests could not be checked: " (error.to_string()) },
                )
            })?
    };
    let desired = desired.map_err(|problems| {
        html! {
            (notice("error", html! { (problems.len()) " problem(s) in the manifests:" }))
            pre.problems #problems { (manifest::render_problems(&problems)) }
        }
    })?;
    let target = EmbeddedTarget::serving(state.service.clone(), signed.caller().clone());
    let live = target.live().await.map_err(|error| {
        notice(
            "error",
            html! { "Cannot read the live state: " (error.to_string()) },
        )
    })?;
    let plan = plan::plan(&desired, &live)
        .map_err(|error| notice("error", html! { (error.to_string()) }))?;
    Ok((plan, target))
}

fn value_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "(none)".to_owned(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// One field of a drifted object: Git's value against the server's, lists as the principals
/// added and removed on the server.
fn field_row(change: &FieldChange) -> Markup {
    html! {
        tr {
            th scope="row" { (change.field) }
            @if !change.added.is_empty() || !change.removed.is_empty() {
                td colspan="2" {
                    // The restoring plan adds what the server lost and removes what it gained.
                    @if !change.removed.is_empty() {
                        p { "Added on the server: " @for (index, entry) in change.removed.iter().enumerate() { @if index > 0 { ", " } code.added { (entry) } } }
                    }
                    @if !change.added.is_empty() {
                        p { "Removed on the server: " @for (index, entry) in change.added.iter().enumerate() { @if index > 0 { ", " } code.removed { (entry) } } }
                    }
                }
            } @else {
                td { (value_text(change.to.as_ref())) }
                td { (value_text(change.from.as_ref())) }
            }
        }
    }
}

async fn git_view(State(state): State<AppState>, signed: Signed) -> Response {
    let applied = match state.service.applied(signed.caller()).await {
        Ok(applied) => applied,
        Err(error) => {
            let mut response = layout::page(
                &signed,
                Section::Git,
                "Git view",
                notice("error", html! { (error.to_string()) }),
            );
            *response.status_mut() = layout::status_of(&error);
            return response;
        }
    };
    let Some(applied) = applied else {
        let body = html! {
            p #no-apply { "No apply has been recorded yet. " code { "perch apply" } " records the manifests it applies here; give it "
                code { "--revision $(git rev-parse HEAD)" } " to name the commit." }
            p { a href="/admin/plan" { "Preview a plan for pasted manifests" } }
        };
        return layout::page(&signed, Section::Git, "Git view", body);
    };
    let header = html! {
        dl.applied {
            dt { "Last apply" } dd #applied-at { (applied.applied_at) }
            dt { "By" } dd #applied-by { (applied.applied_by) }
            dt { "Revision" } dd #applied-revision { (applied.revision.as_deref().unwrap_or("(not given)")) }
            dt { "Files" } dd { (applied.files.len()) }
        }
        @if let Some(stopped) = &applied.stopped {
            (notice("warning", html! {
                strong { "That apply did not finish: " } (stopped) ". "
                "What it did is done; what it did not reach shows below as drift."
            }))
        }
    };
    let (plan, target) = match plan_for(&state, &signed, &applied.files).await {
        Ok(outcome) => outcome,
        Err(problem) => {
            return layout::page(
                &signed,
                Section::Git,
                "Git view",
                html! { (header) (problem) },
            );
        }
    };
    let drifted: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|action| !action.adopt_only)
        .collect();
    let removals = crate::live::who_removed(&target, &drifted).await;
    let body = html! {
        (header)
        @if drifted.is_empty() {
            p #in-sync .notice.success { "The server matches the manifests last applied." }
        } @else {
            p #drift-count { (drifted.len()) " object(s) drifted since the last apply." }
            @for action in drifted.iter().take(MAX_DRIFT_SHOWN) {
                section.drift aria-label=(action.subject()) {
                    h2 { (action.subject()) }
                    p.meta {
                        @match action.action {
                            Verb::Create => {
                                "Removed from the server"
                                @if let Some(entry) = removals.get(&(action.kind, action.name.clone())) {
                                    " by " span.who { (entry.actor) } " at " (entry.at)
                                }
                                "."
                            }
                            Verb::Set => {
                                "Changed on the server"
                                @if let Some(by) = &action.live_updated_by { " by " span.who { (by) } }
                                @if let Some(at) = &action.live_updated_at { " at " (at) }
                                "."
                            }
                            Verb::Remove => {
                                "On the server and managed, but not in the manifests"
                                @if let Some(by) = &action.live_updated_by { "; last changed by " span.who { (by) } }
                                "."
                            }
                        }
                    }
                    @if action.action == Verb::Set && !action.changes.is_empty() {
                        table {
                            thead { tr { th scope="col" { "Field" } th scope="col" { "In Git" } th scope="col" { "On the server" } } }
                            tbody { @for change in &action.changes { (field_row(change)) } }
                        }
                    }
                }
            }
            @if drifted.len() > MAX_DRIFT_SHOWN { p { "And " (drifted.len() - MAX_DRIFT_SHOWN) " more; the plan below lists every one." } }
        }
        h2 { "The plan that restores Git's version" }
        p.help { "What " code { "perch apply" } " of the same manifests would do now. Applying stays in Git." }
        pre.plan #restore-plan { (render::human(&plan, "this server")) }
    };
    layout::page(&signed, Section::Git, "Git view", body)
}

fn preview_form(signed: &Signed, text: &str) -> Markup {
    html! {
        form.object method="post" action="/admin/plan" #plan-form {
            input type="hidden" name="csrf" value=(signed.csrf());
            div.field {
                label for="manifests" { "Manifests (YAML; several documents separated by ---)" }
                textarea #manifests name="manifests" rows="16" spellcheck="false" { (text) }
            }
            div.field {
                label for="manifest-file" { "Or load files" }
                input #manifest-file type="file" multiple accept=".yaml,.yml" data-fills="manifests";
            }
            div.actions { button type="submit" { "Show the plan" } }
        }
    }
}

/// The plan pages parse manifests and read the whole configuration: administrators only, and
/// refused before anything is parsed.
fn refuse_non_admin(signed: &Signed, title: &str) -> Option<Response> {
    if signed.caller().is_admin() {
        return None;
    }
    let mut response = layout::page(
        signed,
        Section::Git,
        title,
        notice("error", html! { "Only administrators preview plans." }),
    );
    *response.status_mut() = StatusCode::FORBIDDEN;
    Some(response)
}

async fn preview_page(signed: Signed) -> Response {
    if let Some(refusal) = refuse_non_admin(&signed, "Plan preview") {
        return refusal;
    }
    let body = html! {
        p.help { "Shows the plan exactly as " code { "perch plan" } " prints it against this server. Nothing is applied." }
        (preview_form(&signed, ""))
    };
    layout::page(&signed, Section::Git, "Plan preview", body)
}

async fn preview(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    super::WebForm(form): super::WebForm<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    if let Some(refusal) = signed.check(&headers, field("csrf")) {
        return refusal;
    }
    if let Some(refusal) = refuse_non_admin(&signed, "Plan preview") {
        return refusal;
    }
    let text = field("manifests").unwrap_or_default();
    let files = [SourceFile {
        path: "pasted.yaml".into(),
        text: text.to_owned(),
    }];
    let (outcome, status) = match plan_for(&state, &signed, &files).await {
        Ok((plan, _)) => (
            html! { pre.plan #preview-plan { (render::human(&plan, "this server")) } },
            StatusCode::OK,
        ),
        Err(problem) => (problem, StatusCode::UNPROCESSABLE_ENTITY),
    };
    let body = html! {
        (outcome)
        (preview_form(&signed, text))
    };
    layout::page_with_status(status, &signed, Section::Git, "Plan preview", body)
}

//! The page shell, notices and error pages. Every page is built here or from here.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Signed;
use crate::service::ServiceError;

/// Where a page sits, so the navigation marks it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Chat,
    Overview,
    Categories,
    Rooms,
    Addins,
    Groups,
    Compliance,
    Tokens,
    Git,
    Data,
}

const ADMIN_SECTIONS: [(Section, &str, &str); 9] = [
    (Section::Overview, "/admin", "Overview"),
    (Section::Categories, "/admin/categories", "Categories"),
    (Section::Rooms, "/admin/rooms", "Rooms"),
    (Section::Addins, "/admin/addins", "Add-ins"),
    (Section::Groups, "/admin/groups", "Groups"),
    (Section::Compliance, "/admin/compliance", "Compliance"),
    (Section::Tokens, "/admin/tokens", "Tokens"),
    (Section::Git, "/admin/git", "Git view"),
    (Section::Data, "/admin/data", "Chat data"),
];

/// A whole page for a signed-in person.
#[allow(
    clippy::needless_pass_by_value,
    reason = "every page's body is markup made for it; taking it by value reads plainer at each call"
)]
pub fn page(signed: &Signed, section: Section, title: &str, body: Markup) -> Response {
    let caller = signed.caller();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="perch-csrf" content=(signed.csrf());
                title { (title) " · Perch" }
                link rel="stylesheet" href="/assets/perch.css";
                script src="/assets/panel.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Main" {
                        a.brand href="/chat" { "Perch" }
                        a href="/chat" aria-current=[(section == Section::Chat).then_some("page")] { "Chat" }
                        @if caller.is_admin() {
                            @for (item, href, label) in ADMIN_SECTIONS {
                                a href=(href) aria-current=[(section == item).then_some("page")] { (label) }
                            }
                        }
                    }
                    form.signout method="post" action="/signout" {
                        input type="hidden" name="csrf" value=(signed.csrf());
                        span.who { (caller.name()) @if caller.is_admin() { " (admin)" } }
                        button type="submit" { "Sign out" }
                    }
                }
                main #main tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// [`page`], answered with `status` (a refusal, a problem with what was sent).
pub fn page_with_status(
    status: StatusCode,
    signed: &Signed,
    section: Section,
    title: &str,
    body: Markup,
) -> Response {
    let mut response = page(signed, section, title, body);
    *response.status_mut() = status;
    response
}

/// The sign-in page, with a problem to show if the last try failed.
pub fn signin(problem: Option<&str>, next: &str) -> Response {
    let status = if problem.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Sign in · Perch" }
                link rel="stylesheet" href="/assets/perch.css";
            }
            body.signin {
                main #main {
                    h1 { "Sign in to Perch" }
                    @if let Some(problem) = problem {
                        p.error role="alert" #signin-error { (problem) }
                    }
                    form method="post" action="/signin" {
                        input type="hidden" name="next" value=(next);
                        label for="token" { "Token" }
                        input #token type="password" name="token" required autocomplete="off"
                            autofocus aria-describedby="token-help";
                        p.help #token-help {
                            "An administrator creates one with "
                            code { "perch token create --user sip:you@example.com --role user" } "."
                        }
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// A page that only says what went wrong (for requests without a signed-in page to show).
pub fn error_page(status: StatusCode, message: &str, back: Option<&str>) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Perch" }
                link rel="stylesheet" href="/assets/perch.css";
            }
            body {
                main #main {
                    h1 { (status.canonical_reason().unwrap_or("Error")) }
                    p.error role="alert" { (message) }
                    p { a href=(back.unwrap_or("/")) { "Back" } }
                }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// The status a service error is shown with.
pub fn status_of(error: &ServiceError) -> StatusCode {
    StatusCode::from_u16(error.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub fn service_error_page(error: &ServiceError) -> Response {
    if matches!(error, ServiceError::Store(_) | ServiceError::Internal(_)) {
        tracing::error!(%error, "web: request failed");
    }
    error_page(status_of(error), &error.to_string(), None)
}

/// A notice above a page's content.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the text is markup made for the notice; taking it by value reads plainer at each call"
)]
pub fn notice(kind: &str, text: Markup) -> Markup {
    html! { div class={"notice " (kind)} role=(if kind == "error" { "alert" } else { "status" }) { (text) } }
}

/// The warning an object under Git's management carries.
pub fn managed_warning() -> Markup {
    notice(
        "warning",
        html! {
            strong { "Managed by Git. " }
            "This object is kept by "
            code { "perch apply" }
            "; a change made here is reverted by the next apply unless the manifests change too."
        },
    )
}

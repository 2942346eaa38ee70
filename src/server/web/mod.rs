//! The web interface: the control panel (`/admin`) and the chat client (`/chat`), rendered on
//! the server from the same service calls as the API, with a little script for what must be
//! live (new messages, older pages on scroll, validation as you type).
//!
//! Guarantees:
//! - A person signs in with a token, which becomes a session cookie (HttpOnly,
//!   `SameSite=Strict`, `Secure` behind TLS) that ends on sign-out, on expiry and when the token
//!   is revoked ([`crate::service::Service::open_session`]).
//! - Every state-changing request carries the session's CSRF token (a form field, or the
//!   `X-Perch-CSRF` header for the API) and must come from this origin.
//! - Every page is sent with a strict Content-Security-Policy: scripts, styles and images from
//!   this server only, no inline script or style, no frames; all assets are in the binary.
//! - Every text shown is escaped by construction (maud escapes every interpolation).

mod admin;
mod chat;
mod forms;
mod git;
mod layout;

use axum::Router;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::AppState;
use crate::service::{Caller, SessionCaller};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "perch_session";
/// The header that carries the CSRF token on API requests authenticated by the cookie.
pub const CSRF_HEADER: &str = "x-perch-csrf";

/// The policy every page is sent with: nothing inline, nothing from elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/assets/{file}", get(asset))
        .merge(chat::router())
        .merge(admin::router())
        .merge(git::router())
        .layer(axum::middleware::map_response(secure_headers))
}

/// Headers every page and asset carries.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The embedded assets: (name, content type, text).
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "perch.css",
        "text/css; charset=utf-8",
        include_str!("assets/perch.css"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/chat.js"),
    ),
    (
        "panel.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/panel.js"),
    ),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, text)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *text,
        )
            .into_response(),
        None => layout::error_page(StatusCode::NOT_FOUND, "No such file.", None),
    }
}

fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether a state-changing request comes from a page of this server: the browser's own
/// `Sec-Fetch-Site` and `Origin` say so (a request without them is not from a browser, which
/// the CSRF token still guards).
fn same_origin(headers: &HeaderMap) -> bool {
    let site_ok = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
        .is_none_or(|site| matches!(site, "same-origin" | "none"));
    // Behind a proxy that rewrites `Host`, the browser's host is in `X-Forwarded-Host`.
    let hosts: Vec<&str> = [header::HOST.as_str(), "x-forwarded-host"]
        .into_iter()
        .filter_map(|name| headers.get(name).and_then(|value| value.to_str().ok()))
        .collect();
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| hosts.contains(&authority)),
        None => true,
    };
    site_ok && origin_ok
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A form body. One that does not read (no body, a wrong content type) is refused with a page,
/// not with the API's JSON error.
pub struct WebForm<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for WebForm<T> {
    type Rejection = Response;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(WebForm(value)),
            Err(rejection) => Err(layout::error_page(
                StatusCode::BAD_REQUEST,
                &format!(
                    "This form did not arrive whole ({}). Go back, reload the page and try again.",
                    rejection.body_text()
                ),
                None,
            )),
        }
    }
}

/// The signed-in person of a page request; without a session the page redirects to sign-in.
pub struct Signed(pub SessionCaller);

impl Signed {
    pub fn caller(&self) -> &Caller {
        &self.0.caller
    }

    pub fn csrf(&self) -> &str {
        &self.0.csrf
    }

    /// Checks a form's CSRF token and origin: `Some(page)` refuses the request.
    pub fn check(&self, headers: &HeaderMap, token: Option<&str>) -> Option<Response> {
        if same_origin(headers) && token.is_some_and(|token| same_secret(token, &self.0.csrf)) {
            None
        } else {
            Some(layout::error_page(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this server. Go back, reload the page and try again.",
                None,
            ))
        }
    }
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_signin = || {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/", axum::http::uri::PathAndQuery::as_str);
            let query = if parts.method == Method::GET && next != "/" {
                format!("?next={}", crate::api::wire::percent_encode(next))
            } else {
                String::new()
            };
            Redirect::to(&format!("/signin{query}")).into_response()
        };
        let Some(cookie) = read_cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_signin());
        };
        match state.service.session_caller(cookie).await {
            Ok(Some(session)) => Ok(Signed(session)),
            Ok(None) => Err(to_signin()),
            Err(error) => Err(layout::service_error_page(&error)),
        }
    }
}

/// The caller of an API request that came with a session cookie instead of a bearer token:
/// what the chat client's script sends. A state-changing request must carry the session's
/// CSRF token in [`CSRF_HEADER`] and come from this origin.
pub async fn api_caller_from_cookie(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<Caller>, super::ApiError> {
    use crate::api::ErrorCode;
    let Some(cookie) = read_cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = state.service.session_caller(cookie).await? else {
        return Ok(None);
    };
    let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let token = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok());
        if !same_origin(&parts.headers)
            || !token.is_some_and(|token| same_secret(token, &session.csrf))
        {
            return Err(super::ApiError::new(
                ErrorCode::Forbidden,
                "a request signed in by the session cookie must carry the X-Perch-CSRF header of its page",
            )
            .with_field(CSRF_HEADER));
        }
    }
    Ok(Some(session.caller))
}

async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = match read_cookie(&headers, SESSION_COOKIE) {
        Some(cookie) => matches!(state.service.session_caller(cookie).await, Ok(Some(_))),
        None => false,
    };
    Redirect::to(if signed_in { "/chat" } else { "/signin" }).into_response()
}

#[derive(serde::Deserialize)]
struct SigninQuery {
    next: Option<String>,
}

/// Where to go after signing in: a path of this server only, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && !next.contains('\\')
                && !next.chars().any(char::is_control) =>
        {
            next.to_owned()
        }
        _ => "/chat".to_owned(),
    }
}

async fn signin_page(query: axum::extract::Query<SigninQuery>) -> Response {
    layout::signin(None, &safe_next(query.next.as_deref()))
}

#[derive(serde::Deserialize)]
struct SigninForm {
    token: String,
    next: Option<String>,
}

async fn signin(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<SigninForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let next = form.as_ref().ok().and_then(|form| form.next.clone());
    let next = safe_next(next.as_deref());
    // No session yet, so no CSRF token: the origin check and SameSite=Strict stand in (a
    // forged sign-in could only sign someone in as the forger's token).
    if !same_origin(&headers) {
        return layout::error_page(
            StatusCode::FORBIDDEN,
            "Sign in from this server's own page.",
            None,
        );
    }
    let Ok(axum::Form(form)) = form else {
        return layout::signin(Some("Paste the token `perch token create` printed."), &next);
    };
    // A new sign-in ends the session this browser had, if any.
    if let Some(cookie) = read_cookie(&headers, SESSION_COOKIE)
        && let Ok(Some(previous)) = state.service.session_caller(cookie).await
        && let Err(error) = state.service.close_session(&previous).await
    {
        return layout::service_error_page(&error);
    }
    match state.service.open_session(form.token.trim()).await {
        Ok(Some(opened)) => {
            let secure = if behind_tls(&headers) { "; Secure" } else { "" };
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                opened.cookie, opened.max_age
            );
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Ok(None) => layout::signin(
            Some("That token is not valid: it is unknown, revoked or expired."),
            &next,
        ),
        Err(error) => layout::service_error_page(&error),
    }
}

/// Whether the browser reached us over TLS, as a proxy says: the first (the browser's) entry
/// of `X-Forwarded-Proto` or of `Forwarded`'s `proto=`.
fn behind_tls(headers: &HeaderMap) -> bool {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .map(str::trim)
    };
    let forwarded_proto = first("forwarded").and_then(|entry| {
        entry.split(';').find_map(|pair| {
            pair.trim()
                .split_once('=')
                .filter(|(key, _)| key.trim().eq_ignore_ascii_case("proto"))
                .map(|(_, value)| value.trim().trim_matches('"'))
        })
    });
    [first("x-forwarded-proto"), forwarded_proto]
        .into_iter()
        .flatten()
        .any(|proto| proto.eq_ignore_ascii_case("https"))
}

#[derive(serde::Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn signout(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    WebForm(form): WebForm<CsrfForm>,
) -> Response {
    if let Some(refused) = signed.check(&headers, form.csrf.as_deref()) {
        return refused;
    }
    if let Err(error) = state.service.close_session(&signed.0).await {
        return layout::service_error_page(&error);
    }
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("perch_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

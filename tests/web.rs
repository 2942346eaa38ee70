//! The web interface's guarantees through the router in process (`server::app()`): sessions,
//! CSRF, the Content-Security-Policy, escaping of stored text on every page, and where a
//! sign-in may send the browser. The browser itself is driven in `tests/browser.rs`.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use perch::service::{Role, Service};
use perch::store::Store;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Web {
    app: axum::Router,
    service: Service,
    admin: String,
    user: String,
    _db: common::TestDb,
}

/// One answer: status, headers, body text.
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// The session's CSRF token, as every signed-in page carries it.
    fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"perch-csrf\" content=\"")
            .expect("a signed-in page")
            + "name=\"perch-csrf\" content=\"".len();
        self.body[start..start + 64].to_owned()
    }
}

impl Web {
    async fn new() -> Web {
        let db = common::TestDb::new();
        let service = Service::new(Store::open(&db.url).await.expect("store"));
        let admin = service
            .create_token("sip:admin@contoso.com", Role::Admin)
            .await
            .expect("admin token");
        let user = service
            .create_token("sip:user@contoso.com", Role::User)
            .await
            .expect("user token");
        Web {
            app: perch::server::app(service.clone()),
            service,
            admin,
            user,
            _db: db,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Page {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("answer");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("body");
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, cookie: &str) -> Page {
        self.send("GET", path, Some(cookie), &[], "").await
    }

    async fn form(&self, path: &str, cookie: &str, fields: &[(&str, &str)]) -> Page {
        let body = fields
            .iter()
            .map(|(name, value)| format!("{name}={}", perch::api::wire::percent_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            "POST",
            path,
            Some(cookie),
            &[("content-type", "application/x-www-form-urlencoded")],
            &body,
        )
        .await
    }

    /// Signs in; the `Set-Cookie` header and the cookie to send back.
    async fn sign_in(&self, token: &str, headers: &[(&str, &str)]) -> (String, String) {
        let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        let page = self
            .send("POST", "/signin", None, &all, &format!("token={token}"))
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let set_cookie = page.header("set-cookie").to_owned();
        let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
        (set_cookie, cookie)
    }

    async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        let page = self
            .send(
                method,
                path,
                None,
                &[
                    ("authorization", &format!("Bearer {}", self.admin)),
                    ("content-type", "application/json"),
                ],
                &body.to_string(),
            )
            .await;
        assert!(page.status.is_success(), "{method} {path}: {}", page.body);
        serde_json::from_str(&page.body).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn a_session_cookie_is_strict_and_ends_on_sign_out() {
    let web = Web::new().await;
    let (set_cookie, cookie) = web.sign_in(&web.admin, &[]).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "no Secure over plain HTTP: {set_cookie}"
    );
    assert!(
        !set_cookie.contains(&web.admin),
        "the cookie is not the token"
    );
    let (behind_tls, _) = web
        .sign_in(&web.admin, &[("x-forwarded-proto", "https")])
        .await;
    assert!(behind_tls.contains("; Secure"), "{behind_tls}");

    let page = web.get("/chat", &cookie).await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.csrf();
    let refused = web.form("/signout", &cookie, &[("csrf", "0")]).await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "sign-out needs the CSRF token"
    );
    let out = web.form("/signout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    let after = web.get("/chat", &cookie).await;
    assert_eq!(
        after.status,
        StatusCode::SEE_OTHER,
        "the server ended the session"
    );
    assert_eq!(after.header("location"), "/signin?next=%2Fchat");
    let api = web.get("/v1/rooms", &cookie).await;
    assert_eq!(
        api.status,
        StatusCode::UNAUTHORIZED,
        "nor does the API take it"
    );
}

#[tokio::test]
async fn revoking_a_token_ends_its_sessions_and_expiry_bounds_them() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.user, &[]).await;
    assert_eq!(web.get("/chat", &cookie).await.status, StatusCode::OK);
    web.service
        .revoke_token(&perch::service::Caller::local_operator(), &web.user)
        .await
        .expect("revoke");
    assert_eq!(
        web.get("/chat", &cookie).await.status,
        StatusCode::SEE_OTHER
    );

    let short = web
        .service
        .issue_token(
            &perch::service::Caller::local_operator(),
            "sip:short@contoso.com",
            Role::User,
            Some("1h"),
        )
        .await
        .expect("token");
    let (set_cookie, _) = web.sign_in(&short.token, &[]).await;
    let max_age: i64 = set_cookie
        .split("Max-Age=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|age| age.parse().ok())
        .expect("Max-Age");
    assert!(
        (3500..=3600).contains(&max_age),
        "a session ends with its token: {max_age}"
    );

    let bad = web
        .send(
            "POST",
            "/signin",
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
            "token=perch_unknown",
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(bad.header("set-cookie").is_empty());
}

#[tokio::test]
async fn forms_and_cookie_writes_need_the_csrf_token_and_this_origin() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.admin, &[]).await;
    let csrf = web.get("/admin", &cookie).await.csrf();
    let category = [
        ("csrf", csrf.as_str()),
        ("name", "Eng"),
        ("chatHistory", "true"),
        ("allowedMembers", "domain:contoso.com"),
    ];
    let without = [("name", "Eng")];
    let wrong = [("csrf", "a".repeat(64)), ("name", "Eng".to_owned())];
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        web.form("/admin/new/categories", &cookie, &without)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        web.form("/admin/new/categories", &cookie, &wrong)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    for cross_site in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let page = web
            .send(
                "POST",
                "/admin/new/categories",
                Some(&cookie),
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    cross_site,
                ],
                &format!("csrf={csrf}&name=Eng"),
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{cross_site:?}");
    }
    let listed = web.api("GET", "/v1/categories", json!(null)).await;
    assert_eq!(
        listed["items"],
        json!([]),
        "nothing was created by a refused form"
    );
    let made = web.form("/admin/new/categories", &cookie, &category).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);

    // The chat client's API writes, signed in by the cookie.
    web.api("POST", "/v1/rooms", json!({"name": "general", "category": "Eng", "privacy": "open", "members": ["sip:admin@contoso.com"]})).await;
    let post = |headers: Vec<(&'static str, String)>| {
        let cookie = cookie.clone();
        let web = &web;
        async move {
            let mut all: Vec<(&str, &str)> = vec![("content-type", "application/json")];
            all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            web.send(
                "POST",
                "/v1/rooms/general/messages",
                Some(&cookie),
                &all,
                r#"{"body":"hi"}"#,
            )
            .await
        }
    };
    let bare = post(vec![]).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    let error: Value = serde_json::from_str(&bare.body).expect("a JSON error");
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("forbidden"), Some("x-perch-csrf"))
    );
    let foreign = post(vec![
        ("x-perch-csrf", csrf.clone()),
        ("origin", "https://evil.example".into()),
    ])
    .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let ok = post(vec![
        ("x-perch-csrf", csrf.clone()),
        ("origin", "http://localhost".into()),
        ("host", "localhost".into()),
    ])
    .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    // Reads need no CSRF token.
    assert_eq!(
        web.get("/v1/rooms/general/messages", &cookie).await.status,
        StatusCode::OK
    );
}

/// Whether HTML has an attribute such as ` onclick=` (which the policy would block anyway).
fn has_event_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name_length = rest.bytes().take_while(u8::is_ascii_lowercase).count();
        name_length > 0 && rest[name_length..].starts_with('=')
    })
}

#[tokio::test]
async fn every_page_carries_the_policy_and_no_inline_script_or_style() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.admin, &[]).await;
    web.api(
        "POST",
        "/v1/categories",
        json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
    )
    .await;
    web.api(
        "POST",
        "/v1/rooms",
        json!({"name": "general", "category": "Eng", "privacy": "open"}),
    )
    .await;
    for path in [
        "/signin",
        "/chat",
        "/chat/rooms/general",
        "/admin",
        "/admin/categories",
        "/admin/categories/Eng",
        "/admin/new/categories",
        "/admin/rooms",
        "/admin/rooms/general",
        "/admin/history/general",
        "/admin/addins",
        "/admin/groups",
        "/admin/compliance",
        "/admin/tokens",
        "/admin/data",
        "/admin/git",
        "/admin/plan",
        "/admin/rooms/nothing",
        "/assets/perch.css",
        "/assets/chat.js",
        "/assets/panel.js",
    ] {
        let page = web.get(path, &cookie).await;
        assert!(
            page.status == StatusCode::OK || page.status == StatusCode::NOT_FOUND,
            "{path}: {}",
            page.status
        );
        assert_eq!(
            page.header("content-security-policy"),
            perch::server::web::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(page.header("x-frame-options"), "DENY", "{path}");
        if page.header("content-type").starts_with("text/html") {
            assert!(!page.body.contains("<script>"), "{path}: inline script");
            assert!(!page.body.contains(" style="), "{path}: inline style");
            assert!(
                !has_event_handler(&page.body),
                "{path}: an event handler attribute"
            );
            assert_eq!(page.header("cache-control"), "no-store", "{path}");
        }
    }
    assert!(
        perch::server::web::CONTENT_SECURITY_POLICY.contains("script-src 'self'")
            && !perch::server::web::CONTENT_SECURITY_POLICY.contains("unsafe")
    );
}

#[tokio::test]
async fn stored_text_is_inert_on_every_page() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.admin, &[]).await;
    let hostile = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    web.api(
        "POST",
        "/v1/categories",
        json!({"name": "Eng", "description": hostile, "allowedMembers": ["domain:contoso.com"]}),
    )
    .await;
    web.api("POST", "/v1/rooms", json!({"name": "general", "category": "Eng", "privacy": "open", "description": hostile, "members": ["sip:admin@contoso.com"]})).await;
    web.api(
        "POST",
        "/v1/rooms/general/messages",
        json!({"body": hostile}),
    )
    .await;
    web.api(
        "POST",
        "/v1/groups",
        json!({"name": "ops", "description": hostile}),
    )
    .await;
    for path in [
        "/chat",
        "/chat/rooms/general",
        "/chat/rooms/general?q=alert",
        "/admin/categories",
        "/admin/categories/Eng",
        "/admin/rooms",
        "/admin/rooms/general",
        "/admin/groups/ops",
        "/admin/rooms?q=%3Cscript%3E",
        "/chat?q=%3Cimg%20src%3Dx%3E",
    ] {
        let page = web.get(path, &cookie).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains("<script>alert"), "{path}");
        assert!(!page.body.contains("<img"), "{path}");
    }
    let room = web.get("/chat/rooms/general", &cookie).await;
    assert!(
        room.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "shown, as text"
    );
}

#[tokio::test]
async fn a_sign_in_only_sends_the_browser_within_this_server() {
    let web = Web::new().await;
    for (next, expected) in [
        ("/admin/rooms?q=x", "/admin/rooms?q=x"),
        ("//evil.example/", "/chat"),
        ("https://evil.example/", "/chat"),
        ("/\\evil.example", "/chat"),
        ("", "/chat"),
    ] {
        let page = web
            .send(
                "POST",
                "/signin",
                None,
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!(
                    "token={}&next={}",
                    web.admin,
                    perch::api::wire::percent_encode(next)
                ),
            )
            .await;
        assert_eq!(page.header("location"), expected, "next={next}");
    }
}

#[tokio::test]
async fn a_history_preview_changes_nothing_and_counts_what_the_change_does() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.admin, &[]).await;
    let csrf = web.get("/admin", &cookie).await.csrf();
    web.api(
        "POST",
        "/v1/categories",
        json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
    )
    .await;
    web.api("POST", "/v1/rooms", json!({"name": "general", "category": "Eng", "privacy": "open", "members": ["sip:admin@contoso.com"]})).await;
    for body in ["release q3", "Q30 numbers", "lunch"] {
        web.api("POST", "/v1/rooms/general/messages", json!({"body": body}))
            .await;
    }
    let audit_before = web.api("GET", "/v1/audit?limit=1000", json!(null)).await["items"]
        .as_array()
        .map(Vec::len);
    let preview = web
        .form(
            "/admin/history/general",
            &cookie,
            &[
                ("csrf", &csrf),
                ("action", "preview-remove"),
                ("filter", "lunch"),
            ],
        )
        .await;
    assert!(
        preview.body.contains("<span id=\"preview-count\">1</span>"),
        "{}",
        preview.body
    );
    let audit_after = web.api("GET", "/v1/audit?limit=1000", json!(null)).await["items"]
        .as_array()
        .map(Vec::len);
    assert_eq!(audit_before, audit_after, "a preview is not an act");
    let history = web
        .api("GET", "/v1/rooms/general/messages", json!(null))
        .await;
    assert_eq!(
        history["items"].as_array().map(Vec::len),
        Some(3),
        "a preview removes nothing"
    );
    let done = web
        .form(
            "/admin/history/general",
            &cookie,
            &[("csrf", &csrf), ("action", "remove"), ("filter", "lunch")],
        )
        .await;
    assert!(
        done.body.contains("<span id=\"done-count\">1</span>"),
        "{}",
        done.body
    );
    let history = web
        .api("GET", "/v1/rooms/general/messages", json!(null))
        .await;
    assert_eq!(history["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn export_reads_by_cookie_and_a_proxy_may_name_the_host() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.admin, &[]).await;
    let export = web.get("/v1/data/export?level=all", &cookie).await;
    assert_eq!(export.status, StatusCode::OK, "{}", export.body);
    assert!(
        export.body.starts_with("{\"format\":\"perch-data\""),
        "{}",
        export.body
    );
    let csrf = web.get("/admin", &cookie).await.csrf();
    let behind_proxy = web
        .send(
            "POST",
            "/admin/new/groups",
            Some(&cookie),
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("host", "127.0.0.1:8470"),
                ("x-forwarded-host", "chat.contoso.com"),
                ("origin", "https://chat.contoso.com"),
            ],
            &format!("csrf={csrf}&name=ops"),
        )
        .await;
    assert_eq!(
        behind_proxy.status,
        StatusCode::SEE_OTHER,
        "{}",
        behind_proxy.body
    );
}

#[tokio::test]
async fn apply_records_its_manifests_and_revision_for_the_git_view() {
    let db = common::TestDb::new();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let (code, _, stderr) = common::perch(&[
        "apply",
        "--db",
        &db.url,
        "--yes",
        "--revision",
        "0123abc",
        examples,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let service = Service::new(Store::open(&db.url).await.expect("store"));
    let operator = perch::service::Caller::local_operator();
    let applied = service
        .applied(&operator)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(applied.revision.as_deref(), Some("0123abc"));
    let yaml_files = walk(std::path::Path::new(examples));
    assert_eq!(
        applied.files.len(),
        yaml_files,
        "every manifest file, as read"
    );
    assert!(
        applied
            .files
            .iter()
            .all(|file| file.text.contains("apiVersion: perch/v1"))
    );

    // A no-op apply records again (the latest apply is the one the Git view compares with).
    let (code, _, stderr) = common::perch(&["apply", "--db", &db.url, "--yes", examples]);
    assert_eq!(code, 0, "{stderr}");
    let again = service
        .applied(&operator)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(again.revision, None);
    assert!(again.applied_at > applied.applied_at);

    let user = service
        .create_token("sip:user@contoso.com", Role::User)
        .await
        .expect("token");
    let app = perch::server::app(service.clone());
    let request = Request::get("/v1/applied")
        .header("authorization", format!("Bearer {user}"))
        .body(Body::empty())
        .expect("request");
    let response = app.oneshot(request).await.expect("answer");
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "administrators only"
    );
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .expect("examples")
        .map(|entry| entry.expect("entry").path())
        // As the manifest walk does: hidden entries (the CI recipes' .github) are no manifests.
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|path| {
            if path.is_dir() {
                walk(&path)
            } else {
                usize::from(
                    path.extension()
                        .is_some_and(|ext| ext == "yaml" || ext == "yml"),
                )
            }
        })
        .sum()
}

#[tokio::test]
async fn what_review_found_stays_fixed() {
    let web = Web::new().await;
    let (_, admin) = web.sign_in(&web.admin, &[]).await;
    let (_, user) = web.sign_in(&web.user, &[]).await;
    web.api(
        "POST",
        "/v1/categories",
        json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
    )
    .await;
    web.api(
        "POST",
        "/v1/rooms",
        json!({"name": "general", "category": "Eng", "privacy": "open",
        "members": ["sip:\"odd\\name\"@contoso.com"]}),
    )
    .await;

    // The category filter ignores case as the filter's rule says; a principal JSON escapes is
    // still found.
    let rooms = web.get("/admin/rooms?category=eNG", &admin).await;
    assert!(rooms.body.contains(">general</a>"), "{}", rooms.body);
    let odd = perch::api::wire::percent_encode("sip:\"odd\\name\"@contoso.com");
    let rooms = web.get(&format!("/admin/rooms?member={odd}"), &admin).await;
    assert!(rooms.body.contains(">general</a>"), "{}", rooms.body);

    // A user learns nothing of the server's size, and previews no plans.
    let rooms = web.get("/admin/rooms", &user).await;
    assert_eq!(rooms.status, StatusCode::OK);
    assert!(
        !rooms.body.contains("rooms on the server"),
        "{}",
        rooms.body
    );
    let csrf = web.get("/chat", &user).await.csrf();
    let preview = web
        .form(
            "/admin/plan",
            &user,
            &[("csrf", &csrf), ("manifests", "apiVersion: perch/v1\n")],
        )
        .await;
    assert_eq!(preview.status, StatusCode::FORBIDDEN);

    // Signing in again ends the browser's previous session.
    let page = web
        .send(
            "POST",
            "/signin",
            Some(&user),
            &[("content-type", "application/x-www-form-urlencoded")],
            &format!("token={}", web.user),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(web.get("/chat", &user).await.status, StatusCode::SEE_OTHER);

    // `Forwarded: proto=https` marks the cookie Secure too.
    let (set_cookie, _) = web
        .sign_in(
            &web.admin,
            &[("forwarded", "for=10.0.0.1;proto=https, for=10.0.0.2")],
        )
        .await;
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");

    // An apply's record names each file once.
    let twice = web
        .send(
            "PUT",
            "/v1/applied",
            None,
            &[
                ("authorization", &format!("Bearer {}", web.admin)),
                ("content-type", "application/json"),
            ],
            &json!({"files": [{"path": "a.yaml", "text": ""}, {"path": "a.yaml", "text": ""}]})
                .to_string(),
        )
        .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.body);
    let stopped = json!({"stopped": "stopped at `create Room \"x\"`: refused",
        "files": [{"path": "a.yaml", "text": "apiVersion: perch/v1\nkind: Group\nname: ops\n"}]});
    web.api("PUT", "/v1/applied", stopped).await;
    let git = web.get("/admin/git", &admin).await;
    assert!(
        git.body.contains("That apply did not finish"),
        "{}",
        git.body
    );
}

#[tokio::test]
async fn a_form_that_does_not_arrive_whole_is_refused_with_a_page() {
    let web = Web::new().await;
    let (_, cookie) = web.sign_in(&web.admin, &[]).await;
    for path in [
        "/signout",
        "/admin/new/categories",
        "/chat/rooms/general",
        "/admin/plan",
    ] {
        let page = web.send("POST", path, Some(&cookie), &[], "").await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            page.body
        );
        assert!(
            page.header("content-type").starts_with("text/html"),
            "{path}"
        );
        assert!(page.body.contains("did not arrive whole"), "{path}");
    }
}

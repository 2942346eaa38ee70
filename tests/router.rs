//! The router in process: `server::app()` driven with `tower::ServiceExt::oneshot`, no socket
//! and no binary. One table of requests, one snapshot of status, code and field: every error
//! path of the API answers with its documented code and names the field at fault.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use expect_test::expect;
use perch::api::Envelope;
use perch::service::{Role, Service};
use perch::store::Store;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

struct Api {
    app: axum::Router,
    service: Service,
    admin: String,
    user: String,
    _db: common::TestDb,
}

impl Api {
    async fn new() -> Api {
        let db = common::TestDb::new();
        let store = Store::open(&db.url).await.expect("store");
        let service = Service::new(store);
        let admin = service
            .create_token("sip:admin@contoso.com", Role::Admin)
            .await
            .expect("admin token");
        let user = service
            .create_token("sip:user@contoso.com", Role::User)
            .await
            .expect("user token");
        Api {
            app: perch::server::app(service.clone()),
            service,
            admin,
            user,
            _db: db,
        }
    }

    /// Sends one request; the answer's status and JSON body (`null` when empty).
    async fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body.to_owned())).expect("request");
        let response = self.app.clone().oneshot(request).await.expect("answer");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json)
    }

    async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, reply) = self
            .call(Some(&self.admin), method, path, &[], &body.to_string())
            .await;
        assert!(status.is_success(), "{method} {path}: {status} {reply}");
        reply
    }
}

/// Who sends a request in the table.
#[derive(Clone, Copy)]
enum Who {
    Nobody,
    Admin,
    User,
    Forged,
}

/// A row: its name, who sends it, method, path, headers, body.
type Case = (
    &'static str,
    Who,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn every_error_answers_its_code_and_field() {
    use Who::{Admin, Forged, Nobody, User};
    let api = Api::new().await;
    api.admin(
        "POST",
        "/v1/groups",
        json!({"name": "team", "members": ["sip:a@contoso.com"]}),
    )
    .await;
    api.admin(
        "POST",
        "/v1/categories",
        json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"], "creators": ["sip:user@contoso.com"]}),
    )
    .await;
    api.admin(
        "POST",
        "/v1/rooms",
        json!({"name": "eng", "category": "Eng", "privacy": "open", "members": ["group:team"]}),
    )
    .await;
    api.admin(
        "POST",
        "/v1/rooms",
        json!({"name": "hidden", "category": "Eng", "privacy": "secret"}),
    )
    .await;

    // A path past the 8 KiB limit.
    let long_path: &'static str =
        Box::leak(format!("/v1/rooms/{}", "a".repeat(9000)).into_boxed_str());
    let cases: &[Case] = &[
        ("no token", Nobody, "GET", "/v1/rooms", &[], ""),
        ("forged token", Forged, "GET", "/v1/rooms", &[], ""),
        ("health needs none", Nobody, "GET", "/healthz", &[], ""),
        ("readiness needs none", Nobody, "GET", "/readyz", &[], ""),
        (
            "message counts are for admins",
            User,
            "POST",
            "/v1/messages/counts",
            &[],
            r#"{"roomIds":[1]}"#,
        ),
        (
            "message counts without a token",
            Nobody,
            "POST",
            "/v1/messages/counts",
            &[],
            r#"{"roomIds":[1]}"#,
        ),
        (
            "message counts by an admin",
            Admin,
            "POST",
            "/v1/messages/counts",
            &[],
            r#"{"roomIds":[1,2]}"#,
        ),
        ("unknown route", Admin, "GET", "/v2/rooms", &[], ""),
        ("unknown collection", Admin, "GET", "/v1/chairs", &[], ""),
        ("read a room", User, "GET", "/v1/rooms/eng", &[], ""),
        (
            "hidden room reads as absent",
            User,
            "GET",
            "/v1/rooms/hidden",
            &[],
            "",
        ),
        ("absent room", Admin, "GET", "/v1/rooms/nowhere", &[], ""),
        ("not JSON", Admin, "POST", "/v1/groups", &[], "{"),
        ("not an object", Admin, "POST", "/v1/groups", &[], "[1]"),
        (
            "unknown field",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            r#"{"name":"x","colour":1}"#,
        ),
        (
            "missing field",
            Admin,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"category":"Eng"}"#,
        ),
        (
            "bad principal",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            r#"{"name":"x","members":["bob"]}"#,
        ),
        (
            "bad name",
            Admin,
            "POST",
            "/v1/categories",
            &[],
            r#"{"name":"a/b"}"#,
        ),
        (
            "bad enum",
            Admin,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"name":"r","category":"Eng","privacy":"hidden"}"#,
        ),
        (
            "duplicate",
            Admin,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"name":"eng","category":"Eng"}"#,
        ),
        (
            "create onto hidden",
            User,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"name":"hidden","category":"Eng"}"#,
        ),
        (
            "unknown category",
            Admin,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"name":"r","category":"Ops"}"#,
        ),
        (
            "unknown group",
            Admin,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"name":"r","category":"Eng","members":["group:nobody"]}"#,
        ),
        (
            "user makes a category",
            User,
            "POST",
            "/v1/categories",
            &[],
            r#"{"name":"Mine"}"#,
        ),
        (
            "user sets marks",
            User,
            "POST",
            "/v1/rooms?managed=true",
            &[],
            r#"{"name":"mine","category":"Eng"}"#,
        ),
        (
            "bad flag",
            Admin,
            "POST",
            "/v1/rooms?managed=maybe",
            &[],
            r#"{"name":"mine","category":"Eng"}"#,
        ),
        (
            "kind mismatch",
            Admin,
            "PUT",
            "/v1/groups/team",
            &[],
            r#"{"name":"team","kind":"Room"}"#,
        ),
        (
            "stale If-Match",
            Admin,
            "PUT",
            "/v1/groups/team",
            &[("if-match", "\"99\"")],
            r#"{"name":"team"}"#,
        ),
        (
            "opaque If-Match",
            Admin,
            "PUT",
            "/v1/groups/team",
            &[("if-match", "\"abc\"")],
            r#"{"name":"team"}"#,
        ),
        (
            "star If-Match on absent",
            Admin,
            "PUT",
            "/v1/groups/ghost",
            &[("if-match", "*")],
            r#"{"name":"ghost"}"#,
        ),
        ("group in use", Admin, "DELETE", "/v1/groups/team", &[], ""),
        (
            "category not empty",
            Admin,
            "DELETE",
            "/v1/categories/Eng",
            &[],
            "",
        ),
        (
            "bad list change",
            Admin,
            "PATCH",
            "/v1/groups/team",
            &[],
            r#"{"members":{"swap":[]}}"#,
        ),
        (
            "bad history query",
            User,
            "GET",
            "/v1/rooms/eng/messages?limit=many",
            &[],
            "",
        ),
        (
            "post to an open room",
            User,
            "POST",
            "/v1/rooms/eng/messages",
            &[],
            r#"{"body":"hi"}"#,
        ),
        (
            "empty message",
            Admin,
            "POST",
            "/v1/rooms/eng/messages",
            &[],
            r#"{"body":""}"#,
        ),
        (
            "bad match clause",
            Admin,
            "POST",
            "/v1/rooms/eng/messages/remove",
            &[],
            r#"{"match":"some"}"#,
        ),
        (
            "bad clear date",
            Admin,
            "POST",
            "/v1/rooms/eng/clear",
            &[],
            r#"{"endDate":"soon"}"#,
        ),
        ("user exports", User, "GET", "/v1/data/export", &[], ""),
        (
            "bad export level",
            Admin,
            "GET",
            "/v1/data/export?level=everything",
            &[],
            "",
        ),
        (
            "bad state layout",
            Admin,
            "GET",
            "/v1/state?layout=columns",
            &[],
            "",
        ),
        (
            "corrupt import",
            Admin,
            "POST",
            "/v1/data/import",
            &[],
            "nonsense",
        ),
        (
            "release a free lock",
            Admin,
            "DELETE",
            "/v1/locks/apply?holder=me",
            &[],
            "",
        ),
        ("method not allowed", Admin, "PATCH", "/v1/rooms", &[], ""),
        ("path not UTF-8", Admin, "GET", "/v1/rooms/%FF%FE", &[], ""),
        (
            "key twice",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            r#"{"name":"x","name":"y"}"#,
        ),
        (
            "nested too deep",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            r#"{"name":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ),
        (
            "lower-case bearer",
            Nobody,
            "GET",
            "/v1/rooms",
            &[("authorization", "bearer TOKEN")],
            "",
        ),
        ("user imports", User, "POST", "/v1/data/import", &[], "{}"),
        ("URI too long", Admin, "GET", long_path, &[], ""),
        (
            "name differs only in case",
            Admin,
            "POST",
            "/v1/rooms",
            &[],
            r#"{"name":"ENG","category":"Eng"}"#,
        ),
        (
            "retention ending in a wide character",
            User,
            "POST",
            "/v1/categories",
            &[],
            "{\"name\":\"x\",\"retention\":\"P\\u00e9\"}",
        ),
        (
            "zero-width name",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            "{\"name\":\"\\u200b\"}",
        ),
        (
            "bidi override name",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            "{\"name\":\"\\u202egnp.exe\"}",
        ),
        (
            "dot name",
            Admin,
            "POST",
            "/v1/groups",
            &[],
            r#"{"name":".."}"#,
        ),
        (
            "decomposed name",
            Admin,
            "POST",
            "/v1/addins",
            &[],
            "{\"name\":\"cafe\\u0301\",\"url\":\"https://x\"}",
        ),
        (
            "read it precomposed",
            Admin,
            "GET",
            "/v1/addins/caf%C3%A9",
            &[],
            "",
        ),
        (
            "read it decomposed",
            Admin,
            "GET",
            "/v1/addins/cafe%CC%81",
            &[],
            "",
        ),
    ];
    let mut table = String::new();
    for (name, who, method, path, headers, body) in cases {
        let token = match who {
            Nobody => None,
            Admin => Some(api.admin.as_str()),
            User => Some(api.user.as_str()),
            Forged => Some("perch_not-a-token"),
        };
        // The lower-case scheme carries the real admin token.
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(name, value)| (*name, value.replace("TOKEN", &api.admin)))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let (status, reply) = api.call(token, method, path, &headers, body).await;
        let text = |key: &str| reply[key].as_str().unwrap_or("-").to_owned();
        // Every error is the documented JSON body.
        if !status.is_success() {
            assert!(
                reply["code"].is_string() && reply["message"].is_string(),
                "{name}: {status} without an error body: {reply}"
            );
        }
        table.push_str(&format!(
            "{name:<28} {:<4} {:<22} {}\n",
            status.as_u16(),
            text("code"),
            text("field")
        ));
    }
    expect![[r"
        no token                     401  unauthorized           -
        forged token                 401  unauthorized           -
        health needs none            200  -                      -
        readiness needs none         200  -                      -
        message counts are for admins 403  forbidden              -
        message counts without a token 401  unauthorized           -
        message counts by an admin   200  -                      -
        unknown route                404  not_found              -
        unknown collection           404  not_found              -
        read a room                  200  -                      -
        hidden room reads as absent  404  not_found              name
        absent room                  404  not_found              name
        not JSON                     400  invalid_json           -
        not an object                400  invalid_json           -
        unknown field                400  unknown_field          colour
        missing field                400  missing_field          name
        bad principal                400  invalid_principal      members[0]
        bad name                     400  invalid_name           name
        bad enum                     400  invalid_field          privacy
        duplicate                    409  already_exists         name
        create onto hidden           404  not_found              name
        unknown category             422  unknown_category       category
        unknown group                422  unknown_group          members
        user makes a category        403  forbidden              -
        user sets marks              403  forbidden              -
        bad flag                     400  invalid_query          managed
        kind mismatch                400  unknown_field          kind
        stale If-Match               412  version_mismatch       If-Match
        opaque If-Match              412  version_mismatch       If-Match
        star If-Match on absent      404  not_found              name
        group in use                 409  group_in_use           -
        category not empty           409  category_not_empty     -
        bad list change              400  unknown_field          members.swap
        bad history query            400  invalid_query          -
        post to an open room         201  -                      -
        empty message                400  invalid_field          body
        bad match clause             400  invalid_field          match
        bad clear date               400  invalid_field          endDate
        user exports                 403  forbidden              -
        bad export level             400  invalid_query          level
        bad state layout             400  invalid_query          layout
        corrupt import               400  corrupt_import         file
        release a free lock          404  not_found              -
        method not allowed           405  method_not_allowed     -
        path not UTF-8               400  invalid_path           -
        key twice                    400  invalid_json           -
        nested too deep              400  invalid_json           -
        lower-case bearer            200  -                      -
        user imports                 403  forbidden              -
        URI too long                 414  uri_too_long           -
        name differs only in case    409  already_exists         name
        retention ending in a wide character 400  invalid_field          retention
        zero-width name              400  invalid_name           name
        bidi override name           400  invalid_name           name
        dot name                     400  invalid_name           name
        decomposed name              201  -                      -
        read it precomposed          200  -                      -
        read it decomposed           200  -                      -
    "]]
    .assert_eq(&table);
}

/// The envelope is one shape: a `GET`, a list item and `/v1/state` show the same fields for an
/// object, and they are [`Envelope::FIELDS`] plus the object's own.
#[tokio::test]
async fn envelope_fields_are_the_ones_every_path_sends() {
    let api = Api::new().await;
    api.admin("POST", "/v1/groups", json!({"name": "team"}))
        .await;
    api.admin(
        "PUT",
        "/v1/compliance",
        json!({"enabled": true, "adapterOutputDirectory": "/tmp/perch-archive"}),
    )
    .await;
    let keys = |object: &Value| -> Vec<String> {
        let mut keys: Vec<String> = object
            .as_object()
            .map(Map::keys)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    let got = api.admin("GET", "/v1/groups/team", Value::Null).await;
    let listed = api.admin("GET", "/v1/groups", Value::Null).await["items"][0].clone();
    let state = api.admin("GET", "/v1/state", Value::Null).await;
    let objects = state["objects"].as_array().expect("objects");
    let from_state = objects
        .iter()
        .find(|object| object["kind"] == "Group")
        .expect("the group in the state");
    assert_eq!(keys(&got), keys(from_state));
    assert_eq!(keys(&listed), keys(from_state));
    let own = ["name", "description", "members"];
    let mut expected: Vec<String> = Envelope::FIELDS
        .iter()
        .chain(own.iter())
        .map(|field| (*field).to_owned())
        .collect();
    expected.sort();
    assert_eq!(keys(&got), expected);

    let compliance = api.admin("GET", "/v1/compliance", Value::Null).await;
    let compliance_in_state = objects
        .iter()
        .find(|object| object["kind"] == "ComplianceConfiguration")
        .expect("the compliance configuration in the state");
    assert_eq!(keys(&compliance), keys(compliance_in_state));
    for field in Envelope::FIELDS {
        assert!(compliance.get(field).is_some(), "compliance lacks {field}");
    }
}

/// A caller who may not import is refused before the server reads the body: here a body that
/// never ends, which a server reading it first would wait on for ever.
#[tokio::test]
async fn an_import_by_a_user_is_refused_before_its_body_is_read() {
    let api = Api::new().await;
    let endless = futures_util_stream();
    let request = Request::builder()
        .method("POST")
        .uri("/v1/data/import")
        .header("authorization", format!("Bearer {}", api.user))
        .body(Body::from_stream(endless))
        .expect("request");
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        api.app.clone().oneshot(request),
    )
    .await
    .expect("the server waited on the body instead of refusing")
    .expect("answer");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

/// One chunk, then nothing ever again.
fn futures_util_stream()
-> impl tokio_stream::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static {
    use tokio_stream::StreamExt;
    tokio_stream::once(Ok(axum::body::Bytes::from_static(b"{\"format\":")))
        .chain(tokio_stream::pending())
}

/// The OpenAPI document and the router agree: every documented operation reaches a route (no
/// "no such endpoint", no 405), and the document is served as committed.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let api = Api::new().await;
    for (method, path) in perch::api::openapi::documented_operations() {
        if path.ends_with("events") {
            // Live streams stay open; their routing is tested where they are read.
            continue;
        }
        let concrete = path
            .replace("{collection}", "rooms")
            .replace("{name}", "nowhere")
            .replace("{id}", "0123456789abcdef");
        let body = if matches!(method, "post" | "put" | "patch") {
            "{}"
        } else {
            ""
        };
        let (status, reply) = api
            .call(
                Some(&api.admin),
                &method.to_uppercase(),
                &concrete,
                &[],
                body,
            )
            .await;
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {reply}"
        );
        assert!(
            !reply["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no such endpoint"),
            "{method} {path} is documented but not routed: {reply}"
        );
    }
    let (status, served) = api.call(None, "GET", "/v1/openapi.json", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, perch::api::openapi::document());
}

/// A state document cut short over HTTP (a server or proxy that ends the answer cleanly in
/// the middle of the objects) is an error, never a shorter state.
#[tokio::test]
async fn a_state_cut_short_over_http_is_an_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    let object = r#"{"kind":"Group","name":"g","version":1,"managed":true,"protect":false,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z","updatedBy":"sip:a@x.com"}"#;
    let row = r#"["Group",1,1,true,false,"2026-01-01T00:00:00Z","sip:a@x.com","2026-01-01T00:00:00Z",{"name":"g"}]"#;
    for body in [
        format!("{}{object},", perch::api::wire::STATE_OPENING),
        format!("{}{object},{object}", perch::api::wire::STATE_OPENING),
        format!("{}{object}]", perch::api::wire::STATE_OPENING),
        format!("{}{row},", perch::api::wire::STATE_ROWS_OPENING),
        format!("{}{row},{row}", perch::api::wire::STATE_ROWS_OPENING),
        format!("{}{row}]", perch::api::wire::STATE_ROWS_OPENING),
    ] {
        let target = perch::live::http::HttpTarget::new(&base, "token").expect("an HTTP target");
        let ((), read) = tokio::join!(
            answer_once(&listener, &body),
            perch::live::Target::live(&target)
        );
        let error = read.expect_err("a document cut short");
        assert!(error.to_string().contains("cut short"), "{error}");
    }
}

/// Answers one request on `listener` with `body` as JSON, whatever was asked, then closes:
/// a server as a test wants it, down to the bytes.
async fn answer_once(listener: &tokio::net::TcpListener, body: &str) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let (mut socket, _) = listener.accept().await.expect("the target's request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket
            .read_exact(&mut byte)
            .await
            .expect("the request's head");
        head.push(byte[0]);
    }
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket
        .write_all(answer.as_bytes())
        .await
        .expect("the answer");
}

/// `GET /v1/state` is sent in parts as the database writes its pages (1,000 objects each):
/// over an empty store, one page and several, the document is byte for byte the one the
/// service writes whole, the embedded target reads every object of it, so does the HTTP
/// target (which splits the document into pages of its own as it arrives) from the router
/// served on a socket, and a user is refused with a JSON error before any part is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_sent_in_parts_is_the_state_written_whole() {
    use perch::domain::Kind;
    use perch::service::{Caller, Object, Ownership};

    let api = Api::new().await;
    let service = &api.service;
    let operator = Caller::local_operator();
    let get_state_at = |uri: &'static str, token: String| {
        let app = api.app.clone();
        async move {
            let request = Request::builder()
                .uri(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .expect("request");
            let response = app.oneshot(request).await.expect("answer");
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
                .await
                .expect("body");
            (status, String::from_utf8(bytes.to_vec()).expect("UTF-8"))
        }
    };
    let get_state = |token: String| get_state_at("/v1/state", token);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    let served = tokio::spawn(axum::serve(listener, api.app.clone()).into_future());
    let over_http = perch::live::http::HttpTarget::new(&base, &api.admin).expect("an HTTP target");
    // Objects of every kind, written by an administrator whose name needs escaping in JSON,
    // with text that does too: the embedded target reads the store's rows, the HTTP target
    // the objects as shown, and both must read the same.
    let quoted_admin = service
        .create_token("sip:o\"brien\\x@contoso.com", Role::Admin)
        .await
        .expect("a token for a name with a quote and a backslash");
    let tricky = "é\n\"quoted\" \\ \u{1F600} </script>";
    for (path, body) in [
        (
            "/v1/categories",
            json!({"name": "cat \"one\"", "description": tricky, "allowedMembers": ["domain:contoso.com"]}),
        ),
        (
            "/v1/addins",
            json!({"name": "addin-1", "url": "https://example.com/addin?a=1&b=\"2\""}),
        ),
        (
            "/v1/rooms",
            json!({"name": "room \\ one", "category": "cat \"one\"", "description": tricky, "members": ["sip:ana@contoso.com"], "addin": "addin-1"}),
        ),
    ] {
        let (status, answer) = api
            .call(Some(&quoted_admin), "POST", path, &[], &body.to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{path}: {answer}");
    }
    let (status, answer) = api
        .call(
            Some(&quoted_admin),
            "PUT",
            "/v1/compliance",
            &[],
            &json!({"enabled": true, "adapterOutputDirectory": "/tmp/perch-archive"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "compliance: {answer}");
    let others = 3;
    let mut created = 0;
    for total in [0, 1, 5_000, 12_345] {
        let groups = (created..total)
            .map(|index| {
                let object =
                    Object::from_json(Kind::Group, json!({"name": format!("group-{index:05}")}))
                        .expect("a group");
                // Each pair of marks, so that a column read in another's place shows.
                let ownership = match index % 3 {
                    0 => Ownership::Keep,
                    1 => Ownership::Managed { protect: false },
                    _ => Ownership::Managed { protect: true },
                };
                (object, ownership)
            })
            .collect();
        let mut batch = service.batch().await.expect("batch");
        batch
            .create_all(&operator, groups)
            .await
            .map_err(|(index, error)| format!("group {index}: {error}"))
            .expect("groups");
        batch.commit().await.expect("commit");
        created = total;

        if total == 5_000 {
            // Changed well after it was made: its `createdAt` and `updatedAt` differ.
            let (status, answer) = api
                .call(
                    Some(&quoted_admin),
                    "PATCH",
                    "/v1/categories/cat%20%22one%22",
                    &[],
                    &json!({"description": "changed"}).to_string(),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "the category changed: {answer}");
        }
        let (status, sent) = get_state(api.admin.clone()).await;
        assert_eq!(status, StatusCode::OK, "{total} objects: {sent}");
        let total = total + others;
        let whole = service
            .state_json(&operator)
            .await
            .expect("the state whole");
        assert!(
            sent == whole,
            "{total} objects: the parts differ from the whole"
        );
        let document: Value = serde_json::from_str(&sent).expect("a JSON document");
        assert_eq!(
            document["objects"].as_array().map(Vec::len),
            Some(total + 1)
        );
        // The same objects as rows, under the rows' opening, each of the envelope's fields in
        // its column.
        let (status, in_rows) = get_state_at("/v1/state?layout=rows", api.admin.clone()).await;
        assert_eq!(status, StatusCode::OK, "{total} objects in rows: {in_rows}");
        assert!(in_rows.starts_with(perch::api::wire::STATE_ROWS_OPENING));
        let rows: Value = serde_json::from_str(&in_rows).expect("a JSON document");
        let rows = rows["objects"].as_array().expect("rows");
        assert_eq!(rows.len(), total + 1);
        // Matched by id: the order within a page is the database's.
        let by_id: std::collections::BTreeMap<i64, &Value> = document["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .map(|object| (object["id"].as_i64().expect("an id"), object))
            .collect();
        for row in rows {
            let object = by_id[&row[1].as_i64().expect("an id in the second column")];
            let columns = ["kind", "id", "version", "managed", "protect", "createdAt"]
                .into_iter()
                .chain(["updatedBy", "updatedAt"]);
            for (index, field) in columns.enumerate() {
                assert_eq!(row[index], object[field], "{field} of {object}");
            }
            let mut fields = object.as_object().expect("an object").clone();
            fields.retain(|field, _| !Envelope::FIELDS.contains(&field.as_str()));
            assert_eq!(row[8], Value::Object(fields), "the fields of {object}");
        }
        // `perch plan --db` reads the same pages, without the document around them.
        let embedded =
            perch::live::embedded::EmbeddedTarget::serving(service.clone(), operator.clone());
        let live = perch::live::Target::live(&embedded)
            .await
            .expect("the live state");
        assert_eq!(live.objects.len(), total, "{total} objects read embedded");
        let last = format!("group-{:05}", created.saturating_sub(1));
        assert_eq!(
            live.objects.contains_key(&(Kind::Group, last)),
            created > 0,
            "{total} objects: the last one read embedded"
        );
        assert!(
            live.compliance
                .as_ref()
                .is_some_and(|compliance| compliance.meta.version > 0),
            "the compliance configuration read embedded"
        );
        // The HTTP target asks for rows; a server that does not know the layout sends the
        // objects as shown (here the document written whole, from a socket of the test's).
        let in_rows = perch::live::Target::live(&over_http)
            .await
            .expect("the live state over HTTP");
        let older = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let older_base = format!("http://{}", older.local_addr().expect("its address"));
        let from_older =
            perch::live::http::HttpTarget::new(&older_base, &api.admin).expect("an HTTP target");
        let ((), as_shown) = tokio::join!(
            answer_once(&older, &whole),
            perch::live::Target::live(&from_older)
        );
        let as_shown = as_shown.expect("the live state from a server that sends objects");
        let names = |live: &perch::api::Live| -> Vec<(Kind, String)> {
            live.objects.keys().cloned().collect()
        };
        let same = |http: &perch::api::LiveObject, embedded: &perch::api::LiveObject| {
            http.fields.to_map() == embedded.fields.to_map()
                && http.meta == embedded.meta
                && http.kind == embedded.kind
                && http.name == embedded.name
        };
        for (how, read_over_http) in [("in rows", &in_rows), ("as shown", &as_shown)] {
            assert_eq!(
                names(read_over_http),
                names(&live),
                "{total} objects read over HTTP {how}"
            );
            for (http, embedded) in read_over_http.objects.values().zip(live.objects.values()) {
                assert!(
                    same(http, embedded),
                    "{total} objects: read over HTTP {how} {http:?}, embedded {embedded:?}"
                );
            }
            let (Some(http), Some(embedded)) = (&read_over_http.compliance, &live.compliance)
            else {
                panic!("the compliance configuration read both ways");
            };
            assert!(same(http, embedded), "{how}: {http:?} against {embedded:?}");
        }
        if total > 5_000 {
            let category = &live.objects[&(Kind::Category, "cat \"one\"".to_owned())];
            assert_eq!(category.meta.version, 2);
            assert_ne!(category.meta.created_at, category.meta.updated_at);
        }
        let room = &live.objects[&(Kind::Room, "room \\ one".to_owned())];
        assert_eq!(room.fields["description"], tricky);
        assert_eq!(room.meta.updated_by, "sip:o\"brien\\x@contoso.com");
    }
    served.abort();
    let (status, refused) = get_state(api.user.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let refused: Value = serde_json::from_str(&refused).expect("a JSON error");
    assert_eq!(refused["code"], "forbidden");
}

//! Property-based fuzzing with bounded cases: the manifest loader and the API's bodies take
//! whatever they are given without a panic, a 500 or output a terminal would obey, and the
//! server stays healthy after.

mod common;

use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use tower::ServiceExt;

/// Text with what hostile input holds: controls, bidi overrides, zero-width characters,
/// decomposed accents, YAML and JSON punctuation, long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._/-]{0,20}",
        "[\\x00-\\x1f\\x7f\u{200b}\u{202e}\u{2066}\u{feff}e\u{301}:\\[\\]{}&*!|>'\"%@`#,?-]{0,30}",
        (1usize..5000).prop_map(|n| "x".repeat(n)),
    ]
}

/// A manifest: a document of fields chosen from the real ones and others, with hostile values,
/// or free text.
fn manifest() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        Just("name"),
        Just("kind"),
        Just("apiVersion"),
        Just("category"),
        Just("members"),
        Just("description"),
        Just("privacy"),
        Just("url"),
        Just("runInterval"),
        Just("retention"),
        Just("protect"),
        Just("colour"),
    ];
    let value = prop_oneof![
        hostile_text().prop_map(|text| serde_json::to_string(&text).unwrap_or_default()),
        hostile_text(),
        Just("[sip:a@contoso.com, group:x, domain:y]".to_owned()),
        Just("&anchor [a, b, c]".to_owned()),
        Just("*anchor".to_owned()),
        Just("{a: {b: {c: [1, 2, [3]]}}}".to_owned()),
        Just("perch/v1".to_owned()),
        Just("Room".to_owned()),
    ];
    let document = proptest::collection::vec((field, value), 0..8).prop_map(|fields| {
        fields
            .into_iter()
            .fold(String::new(), |mut text, (field, value)| {
                use std::fmt::Write as _;
                let _ = writeln!(text, "{field}: {value}");
                text
            })
    });
    prop_oneof![
        proptest::collection::vec(document, 1..4).prop_map(|documents| documents.join("---\n")),
        hostile_text(),
    ]
}

#[test]
fn the_manifest_loader_takes_anything_without_a_panic_or_raw_controls() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fuzz.yaml");
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&manifest(), |text| {
            std::fs::write(&file, &text).unwrap();
            let outcome =
                std::panic::catch_unwind(|| perch::manifest::load(std::slice::from_ref(&file)));
            let Ok(outcome) = outcome else {
                return Err(TestCaseError::fail(format!(
                    "the loader panicked on {text:?}"
                )));
            };
            if let Err(problems) = outcome {
                let shown = perch::manifest::render_problems(&problems);
                let raw = shown
                    .chars()
                    .find(|c| perch::text::is_unsafe_for_terminal(*c) && *c != '\n');
                prop_assert!(raw.is_none(), "{raw:?} printed raw for {text:?}:\n{shown}");
            }
            Ok(())
        })
        .unwrap();
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        hostile_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("category".to_owned()),
                    Just("members".to_owned()),
                    Just("body".to_owned()),
                    Just("endDate".to_owned()),
                    Just("reason".to_owned()),
                    "[a-zA-Z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

#[test]
fn api_bodies_never_cause_a_server_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = common::TestDb::new();
    let (app, admin) = runtime.block_on(async {
        let store = perch::store::Store::open(&db.url).await.unwrap();
        let service = perch::service::Service::new(store);
        let admin = service
            .create_token("sip:admin@contoso.com", perch::service::Role::Admin)
            .await
            .unwrap();
        (perch::server::app_with(service, None), admin)
    });
    let routes = [
        ("POST", "/v1/categories"),
        ("POST", "/v1/rooms"),
        ("POST", "/v1/addins"),
        ("POST", "/v1/groups"),
        ("PUT", "/v1/compliance"),
        ("PUT", "/v1/rooms/fuzz"),
        ("PATCH", "/v1/rooms/fuzz"),
        ("POST", "/v1/rooms/fuzz/messages"),
        ("POST", "/v1/rooms/fuzz/clear"),
        ("POST", "/v1/rooms/fuzz/messages/remove"),
        ("POST", "/v1/locks/apply"),
        ("POST", "/v1/tokens"),
        ("PUT", "/v1/holds/rooms/fuzz"),
        ("POST", "/v1/data/import"),
    ];
    let send = |method: &str, path: &str, body: String| {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {admin}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        runtime.block_on(async {
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            (status, bytes)
        })
    };
    // A room to aim the room routes at.
    let (status, _) = send("POST", "/v1/categories", r#"{"name":"Fuzz"}"#.to_owned());
    assert!(status.is_success());
    let (status, _) = send(
        "POST",
        "/v1/rooms",
        r#"{"name":"fuzz","category":"Fuzz","privacy":"open"}"#.to_owned(),
    );
    assert!(status.is_success());

    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let case = (0..routes.len(), json_value(), any::<bool>());
    runner
        .run(&case, |(route, value, mangle)| {
            let (method, path) = routes[route];
            let mut body = value.to_string();
            if mangle {
                // Cut it short (at a character): not JSON any more.
                let cut = body
                    .char_indices()
                    .nth(body.chars().count() / 2)
                    .map_or(0, |(at, _)| at);
                body.truncate(cut);
            }
            let (status, bytes) = send(method, path, body.clone());
            prop_assert!(
                !status.is_server_error(),
                "{method} {path} with {body}: {status}"
            );
            if !status.is_success() {
                let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                prop_assert!(
                    reply["code"].is_string() && reply["message"].is_string(),
                    "{method} {path} with {body}: {status} without the error body"
                );
            }
            Ok(())
        })
        .unwrap();
    let (status, _) = send("GET", "/healthz", String::new());
    assert!(
        status.is_success(),
        "the server is not healthy after the fuzzing"
    );
}

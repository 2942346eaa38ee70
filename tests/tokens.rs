//! Tokens: created with a lifetime, listed with their last use, revoked by id, refused once
//! expired, on the command line (embedded and through a server) and over the API.

mod common;

use std::time::Duration;

use common::Fixture;
use serde_json::{Value, json};

/// Moves a token's expiry into the past, as time would. (A stream reads its token's expiry
/// when access changes and compares it with the clock at every read; the expiry of a real
/// token never changes, so the test bumps the configuration generation for the stream to read
/// the new one.)
async fn expire(db_url: &str, id: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.expect("connect");
    let changed = sqlx::query(
        "UPDATE tokens SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE substr(hash, 1, 16) = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("update");
    assert_eq!(changed.rows_affected(), 1);
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&pool)
        .await
        .expect("bump");
    pool.close().await;
}

fn list(fixture: &Fixture, via_server: bool) -> Vec<Value> {
    let mut args = vec!["token", "list", "--json"];
    let server;
    if via_server {
        server = fixture.server.base.clone();
        args.extend(["--server", &server, "--token", &fixture.admin_token]);
    } else {
        args.extend(["--db", &fixture.db.url]);
    }
    let (code, stdout, stderr) = common::perch(&args);
    assert_eq!(code, 0, "{stderr}");
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    listed["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn tokens_are_listed_revoked_by_id_and_expire() {
    let fixture = Fixture::new();
    // Created through the server, with a lifetime; the token is printed alone on stdout.
    let (code, stdout, stderr) = common::perch(&[
        "token",
        "create",
        "--user",
        "sip:ana@contoso.com",
        "--role",
        "user",
        "--expires-in",
        "30d",
        "--server",
        &fixture.server.base,
        "--token",
        &fixture.admin_token,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let ana_token = stdout.trim().to_owned();
    assert!(ana_token.starts_with("perch_"), "{stdout}");
    assert!(stderr.contains("expires 20"), "{stderr}");
    let ana = fixture.server.client(&ana_token);
    ana.get("/v1/rooms").await.expect(200);

    // Through the server first: a node writes the uses it gathered when it lists tokens,
    // and a read of the database then finds them too.
    for via_server in [true, false] {
        let tokens = list(&fixture, via_server);
        let entry = tokens
            .iter()
            .find(|token| token["user"] == "sip:ana@contoso.com")
            .unwrap_or_else(|| panic!("{tokens:#?}"));
        assert_eq!(entry["role"], "user");
        assert!(entry["expiresAt"].is_string(), "{entry}");
        assert!(entry["lastUsedAt"].is_string(), "used once: {entry}");
        assert_eq!(entry["id"].as_str().unwrap().len(), 16);
        // Never the token.
        assert!(
            !serde_json::to_string(&tokens)
                .unwrap()
                .contains(&ana_token[6..])
        );
    }

    // Expired: refused, and a live stream opened with it ends.
    let bob_token = common::create_token(&fixture.db.url, "sip:bob@contoso.com", "user");
    let bob = fixture.server.client(&bob_token);
    bob.get("/v1/rooms").await.expect(200);
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/events", fixture.server.base))
        .bearer_auth(&bob_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let bob_id = list(&fixture, false)
        .iter()
        .find(|token| token["user"] == "sip:bob@contoso.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expire(&fixture.db.url, &bob_id).await;
    bob.get("/v1/rooms").await.expect_error(401, "unauthorized");
    let ended = tokio::time::timeout(Duration::from_secs(20), stream.bytes()).await;
    assert!(ended.is_ok(), "the stream of an expired token went on");

    // Revoked by id: refused at once; the list no longer shows it.
    let ana_id = list(&fixture, false)
        .iter()
        .find(|token| token["user"] == "sip:ana@contoso.com")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, stdout, stderr) =
        common::perch(&["token", "revoke", &ana_id, "--db", &fixture.db.url]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("revoked {ana_id} (sip:ana@contoso.com, user)")),
        "{stdout}"
    );
    ana.get("/v1/rooms").await.expect_error(401, "unauthorized");
    assert!(
        list(&fixture, false)
            .iter()
            .all(|token| token["id"] != ana_id.as_str())
    );
    let (code, _, stderr) = common::perch(&["token", "revoke", &ana_id, "--db", &fixture.db.url]);
    assert_eq!(code, 1);
    assert!(stderr.contains("no such token"), "{stderr}");
}

#[tokio::test]
async fn the_token_api_is_for_administrators() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    let created = admin
        .post(
            "/v1/tokens",
            json!({"user": "sip:cara@contoso.com", "role": "user", "expiresIn": "12h"}),
        )
        .await
        .expect(201)
        .body;
    let token = created["token"].as_str().unwrap();
    let cara = fixture.server.client(token);
    cara.get("/v1/rooms").await.expect(200);
    cara.get("/v1/tokens").await.expect_error(403, "forbidden");
    cara.post(
        "/v1/tokens",
        json!({"user": "sip:cara@contoso.com", "role": "admin"}),
    )
    .await
    .expect_error(403, "forbidden");
    admin
        .post(
            "/v1/tokens",
            json!({"user": "sip:x@contoso.com", "role": "user", "expiresIn": "10y"}),
        )
        .await
        .expect_error(400, "invalid_field");
    admin
        .post("/v1/tokens", json!({"user": "group:team", "role": "user"}))
        .await
        .expect_error(400, "invalid_principal");
    let id = created["id"].as_str().unwrap();
    let revoked = admin
        .delete(&format!("/v1/tokens/{id}"))
        .await
        .expect(200)
        .body;
    assert_eq!(revoked["user"], "sip:cara@contoso.com");
    cara.get("/v1/rooms")
        .await
        .expect_error(401, "unauthorized");
    admin
        .delete(&format!("/v1/tokens/{id}"))
        .await
        .expect_error(404, "not_found");
    // Creating and revoking are on the record, with the id, never the token.
    let trail = admin.get("/v1/audit?kind=Token").await.expect(200).body;
    let text = trail.to_string();
    assert!(text.contains("revoke-token") && text.contains(id), "{text}");
    assert!(!text.contains(&token[6..]), "{text}");
}

/// A node gathers token uses for a second and writes them together, off the requests that
/// made them; one that stops writes what it gathered, so a use just before a shutdown is
/// kept (fails without the write at shutdown: the server stops within the second).
#[tokio::test]
async fn a_stopping_node_writes_the_token_uses_it_gathered() {
    let mut fixture = Fixture::new();
    let token = common::create_token(&fixture.db.url, "sip:cy@contoso.com", "user");
    fixture
        .server
        .client(&token)
        .get("/v1/rooms")
        .await
        .expect(200);
    fixture.server.stop();
    let tokens = list(&fixture, false);
    let cy = tokens
        .iter()
        .find(|token| token["user"] == "sip:cy@contoso.com")
        .unwrap_or_else(|| panic!("{tokens:#?}"));
    assert!(cy["lastUsedAt"].is_string(), "used once: {cy}");
}

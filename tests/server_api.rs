//! The HTTP API of `perch serve`, through the real binary over a temp SQLite file.

mod common;

use common::{Fixture, TestServer};
use reqwest::Method;
use serde_json::{Value, json};

async fn seed_category(fixture: &Fixture) {
    let eng = json!({
        "name": "Eng",
        "description": "Engineering",
        "allowedMembers": ["domain:contoso.com", "group:Partners"],
        "deniedMembers": ["sip:temp7@contoso.com"],
        "creators": ["sip:lead@contoso.com"],
        "invitations": true
    });
    // Refused while the group it names does not exist; accepted once it does.
    fixture
        .admin
        .post("/v1/categories", eng.clone())
        .await
        .expect_error(422, "unknown_group");
    fixture
        .admin
        .post(
            "/v1/groups",
            json!({"name": "Partners", "members": ["sip:pat@fabrikam.com"]}),
        )
        .await
        .expect(201);
    fixture.admin.post("/v1/categories", eng).await.expect(201);
}

#[tokio::test]
async fn health_and_authentication() {
    let fixture = Fixture::new();
    let anonymous = fixture.server.anonymous();
    assert_eq!(
        anonymous.get("/healthz").await.expect(200).body["status"],
        "ok"
    );
    anonymous
        .get("/v1/categories")
        .await
        .expect_error(401, "unauthorized");
    fixture
        .server
        .client("perch_not_a_token")
        .get("/v1/categories")
        .await
        .expect_error(401, "unauthorized");
    fixture
        .admin
        .get("/v1/nothing")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn category_lifecycle_with_versions() {
    let fixture = Fixture::new();
    seed_category(&fixture).await;
    let admin = &fixture.admin;

    let read = admin.get("/v1/categories/Eng").await.expect(200);
    assert_eq!(read.etag.as_deref(), Some("\"1\""));
    assert_eq!(read.body["version"], 1);
    assert_eq!(read.body["updatedBy"], "sip:admin@contoso.com");
    assert_eq!(read.body["chatHistory"], true);
    assert!(read.body["updatedAt"].as_str().unwrap().ends_with('Z'));

    admin
        .post("/v1/categories", json!({"name": "Eng"}))
        .await
        .expect_error(409, "already_exists");
    let list = admin.get("/v1/categories").await.expect(200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    // PATCH with the cmdlets' Add/Remove on a list, guarded by If-Match.
    let patched = admin
        .send(
            Method::PATCH,
            "/v1/categories/Eng",
            Some(&json!({"creators": {"add": ["SIP:Lead2@Contoso.com"], "remove": ["sip:lead@contoso.com"]}})),
            &[("If-Match", "\"1\"")],
        )
        .await
        .expect(200);
    assert_eq!(patched.body["creators"], json!(["sip:lead2@contoso.com"]));
    assert_eq!(patched.etag.as_deref(), Some("\"2\""));

    let stale = admin
        .send(
            Method::PATCH,
            "/v1/categories/Eng",
            Some(&json!({"description": "x"})),
            &[("If-Match", "\"1\"")],
        )
        .await
        .expect_error(412, "version_mismatch");
    assert_eq!(stale.body["field"], "If-Match");
    admin
        .send(
            Method::DELETE,
            "/v1/categories/Eng",
            None,
            &[("If-Match", "\"1\"")],
        )
        .await
        .expect_error(412, "version_mismatch");
    admin
        .send(
            Method::PUT,
            "/v1/categories/Eng",
            Some(&json!({"name": "Eng"})),
            &[("If-Match", "nonsense")],
        )
        .await
        .expect_error(412, "version_mismatch");

    // PUT replaces the whole object; fields left out take their defaults.
    let replaced = admin
        .send(
            Method::PUT,
            "/v1/categories/Eng",
            Some(&json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"], "fileUpload": true})),
            &[("If-Match", "\"2\"")],
        )
        .await
        .expect(200);
    assert_eq!(replaced.body["creators"], json!([]));
    assert_eq!(replaced.body["fileUpload"], true);
    assert_eq!(replaced.body["version"], 3);

    // Writing what is already there changes nothing, not even the version.
    let same = admin
        .put(
            "/v1/categories/Eng",
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"], "fileUpload": true}),
        )
        .await
        .expect(200);
    assert_eq!(same.body["version"], 3);

    admin.delete("/v1/categories/Eng").await.expect(204);
    admin
        .get("/v1/categories/Eng")
        .await
        .expect_error(404, "not_found");
    admin
        .delete("/v1/categories/Eng")
        .await
        .expect_error(404, "not_found");
}

#[tokio::test]
async fn bad_bodies_are_rejected_with_the_field() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    let reply = admin.raw(Method::POST, "/v1/categories", "{not json").await;
    assert_eq!((reply.status.as_u16(), reply.code()), (400, "invalid_json"));
    let reply = admin.raw(Method::POST, "/v1/categories", "[1]").await;
    assert_eq!((reply.status.as_u16(), reply.code()), (400, "invalid_json"));

    let reply = admin
        .post("/v1/categories", json!({"name": "A", "colour": "red"}))
        .await
        .expect_error(400, "unknown_field");
    assert_eq!(reply.body["field"], "colour");

    let reply = admin
        .post(
            "/v1/categories",
            json!({"name": "A", "allowedMembers": ["sip:ok@x.com", "OU=Eng,DC=corp"]}),
        )
        .await
        .expect_error(400, "invalid_principal");
    assert_eq!(reply.body["field"], "allowedMembers[1]");

    let reply = admin
        .post("/v1/categories", json!({"name": "n".repeat(257)}))
        .await
        .expect_error(400, "name_too_long");
    assert_eq!(reply.body["field"], "name");
    admin
        .post("/v1/categories", json!({"name": "n".repeat(256)}))
        .await
        .expect(201);

    let reply = admin
        .post("/v1/categories", json!({"description": "no name"}))
        .await
        .expect_error(400, "missing_field");
    assert_eq!(reply.body["field"], "name");
    admin
        .post("/v1/categories", json!({"name": " padded"}))
        .await
        .expect_error(400, "invalid_name");
    admin
        .post("/v1/categories", json!({"name": "a/b"}))
        .await
        .expect_error(400, "invalid_name");
    admin
        .post("/v1/categories", json!({"name": "A", "invitations": "yes"}))
        .await
        .expect_error(400, "invalid_field");

    admin
        .post(
            "/v1/categories",
            json!({"name": "C", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    let reply = admin
        .post(
            "/v1/rooms",
            json!({"name": "r", "category": "C", "privacy": "hidden"}),
        )
        .await
        .expect_error(400, "invalid_field");
    assert_eq!(reply.body["field"], "privacy");
    admin
        .post(
            "/v1/rooms",
            json!({"name": "r", "category": "C", "invitations": true}),
        )
        .await
        .expect_error(400, "invalid_field");

    // Nothing of the rejected requests was written.
    let names: Vec<Value> = admin.get("/v1/categories").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].clone())
        .collect();
    assert_eq!(names.len(), 2);
    assert_eq!(admin.get("/v1/rooms").await.body["items"], json!([]));
}

#[tokio::test]
async fn room_rules_scope_denied_addins_and_categories() {
    let fixture = Fixture::new();
    seed_category(&fixture).await;
    let admin = &fixture.admin;

    admin
        .post("/v1/rooms", json!({"name": "r1", "category": "Nope"}))
        .await
        .expect_error(422, "unknown_category");
    let reply = admin
        .post(
            "/v1/rooms",
            json!({"name": "r1", "category": "Eng", "members": ["sip:x@fabrikam.com"]}),
        )
        .await
        .expect_error(422, "outside_scope");
    assert_eq!(reply.body["field"], "members");
    // Denied wins over the domain that allows it.
    admin
        .post(
            "/v1/rooms",
            json!({"name": "r1", "category": "Eng", "managers": ["sip:temp7@contoso.com"]}),
        )
        .await
        .expect_error(422, "outside_scope");
    // A group member is in scope through the allowed group.
    admin
        .post("/v1/rooms", json!({"name": "r1", "category": "Eng", "addin": "Board", "members": ["sip:pat@fabrikam.com"]}))
        .await
        .expect_error(422, "unknown_addin");
    admin
        .post(
            "/v1/addins",
            json!({"name": "Board", "url": "ftp://board.corp.test"}),
        )
        .await
        .expect_error(400, "invalid_url");
    admin
        .post(
            "/v1/addins",
            json!({"name": "Board", "url": "https://board.corp.test"}),
        )
        .await
        .expect(201);
    let room = admin
        .post(
            "/v1/rooms",
            json!({"name": "r1", "category": "Eng", "addin": "Board", "privacy": "open", "type": "auditorium",
                   "members": ["sip:pat@fabrikam.com", "sip:a@contoso.com"], "presenters": ["sip:a@contoso.com"]}),
        )
        .await
        .expect(201);
    assert_eq!(room.body["type"], "auditorium");
    assert_eq!(room.body["invitations"], "inherit");
    let defaults = admin
        .post("/v1/rooms", json!({"name": "r2", "category": "Eng"}))
        .await
        .expect(201);
    assert_eq!(
        (
            defaults.body["privacy"].as_str(),
            defaults.body["type"].as_str()
        ),
        (Some("closed"), Some("normal"))
    );
    admin
        .post("/v1/rooms", json!({"name": "r1", "category": "Eng"}))
        .await
        .expect_error(409, "already_exists");

    // An add-in in use cannot go without force; the error names the rooms.
    let reply = admin
        .delete("/v1/addins/Board")
        .await
        .expect_error(409, "addin_in_use");
    assert!(reply.body["message"].as_str().unwrap().contains("`r1`"));
    admin
        .delete("/v1/addins/Board?force=true")
        .await
        .expect(204);
    let room = admin.get("/v1/rooms/r1").await.expect(200);
    assert!(room.body.get("addin").is_none(), "{:#}", room.body);

    // A category holding rooms cannot go; the error names them.
    let reply = admin
        .delete("/v1/categories/Eng")
        .await
        .expect_error(409, "category_not_empty");
    assert!(reply.body["message"].as_str().unwrap().contains("`r1`"));

    // A group still named by a list cannot go.
    admin
        .delete("/v1/groups/Partners")
        .await
        .expect_error(409, "group_in_use");

    // Moving a room purges the entries its new category does not allow.
    admin
        .post(
            "/v1/categories",
            json!({"name": "Contoso only", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    let moved = admin
        .patch("/v1/rooms/r1", json!({"category": "Contoso only"}))
        .await
        .expect(200);
    assert_eq!(moved.body["members"], json!(["sip:a@contoso.com"]));

    // Renaming a category carries its rooms along.
    let renamed = admin
        .patch("/v1/categories/Contoso%20only", json!({"name": "Contoso"}))
        .await
        .expect(200);
    assert_eq!(renamed.body["name"], "Contoso");
    assert_eq!(admin.get("/v1/rooms/r1").await.body["category"], "Contoso");

    admin.delete("/v1/rooms/r1").await.expect(204);
    admin.delete("/v1/rooms/r2").await.expect(204);
    admin.delete("/v1/categories/Eng").await.expect(204);
    admin.delete("/v1/categories/Contoso").await.expect(204);
    admin.delete("/v1/groups/Partners").await.expect(204);
}

#[tokio::test]
async fn creators_managers_and_users() {
    let fixture = Fixture::new();
    seed_category(&fixture).await;
    let admin = &fixture.admin;
    let lead = fixture.user("sip:lead@contoso.com");
    let alice = fixture.user("sip:alice@contoso.com");
    let outsider = fixture.user("sip:eve@fabrikam.com");

    // Users change no configuration.
    alice
        .post("/v1/categories", json!({"name": "Mine"}))
        .await
        .expect_error(403, "forbidden");
    alice
        .post("/v1/addins", json!({"name": "A", "url": "https://a"}))
        .await
        .expect_error(403, "forbidden");
    alice
        .get("/v1/compliance")
        .await
        .expect_error(403, "forbidden");
    alice
        .put("/v1/compliance", json!({"enabled": false}))
        .await
        .expect_error(403, "forbidden");
    alice.get("/v1/state").await.expect_error(403, "forbidden");

    // Only creators create rooms, and become their managers.
    alice
        .post("/v1/rooms", json!({"name": "a-room", "category": "Eng"}))
        .await
        .expect_error(403, "forbidden");
    let room = lead
        .post("/v1/rooms", json!({"name": "lead-room", "category": "Eng", "privacy": "secret", "members": ["sip:bob@contoso.com"]}))
        .await
        .expect(201);
    assert_eq!(room.body["managers"], json!(["sip:lead@contoso.com"]));
    assert_eq!(room.body["updatedBy"], "sip:lead@contoso.com");

    // The manager changes the room, but not its category, and never removes it.
    lead.patch(
        "/v1/rooms/lead-room",
        json!({"description": "ours", "members": {"add": ["sip:alice@contoso.com"]}}),
    )
    .await
    .expect(200);
    lead.patch(
        "/v1/rooms/lead-room",
        json!({"members": {"add": ["sip:temp7@contoso.com"]}}),
    )
    .await
    .expect_error(422, "outside_scope");
    admin
        .post(
            "/v1/categories",
            json!({"name": "Other", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    lead.patch("/v1/rooms/lead-room", json!({"category": "Other"}))
        .await
        .expect_error(403, "forbidden");
    lead.delete("/v1/rooms/lead-room")
        .await
        .expect_error(403, "forbidden");

    // A member who is not a manager sees the secret room but cannot change it.
    assert_eq!(
        alice.get("/v1/rooms/lead-room").await.expect(200).body["description"],
        "ours"
    );
    alice
        .patch("/v1/rooms/lead-room", json!({"description": "mine"}))
        .await
        .expect_error(403, "forbidden");

    // Secret rooms are invisible to non-members: not listed, not found.
    let carol = fixture.user("sip:carol@contoso.com");
    carol
        .get("/v1/rooms/lead-room")
        .await
        .expect_error(404, "not_found");
    carol
        .patch("/v1/rooms/lead-room", json!({"description": "x"}))
        .await
        .expect_error(404, "not_found");
    carol
        .delete("/v1/rooms/lead-room")
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        carol.get("/v1/rooms").await.expect(200).body["items"],
        json!([])
    );

    // Closed rooms are visible in scope, invisible out of scope; disabled ones are hidden.
    admin
        .post("/v1/rooms", json!({"name": "closed", "category": "Eng"}))
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "off", "category": "Eng", "privacy": "open", "disabled": true}),
        )
        .await
        .expect(201);
    let seen: Vec<String> = carol.get("/v1/rooms").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["closed"]);
    outsider
        .get("/v1/rooms/closed")
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        outsider.get("/v1/categories").await.body["items"],
        json!([])
    );
    assert_eq!(
        carol.get("/v1/categories").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The denied user sees nothing of the category.
    let temp7 = fixture.user("sip:temp7@contoso.com");
    temp7
        .get("/v1/rooms/closed")
        .await
        .expect_error(404, "not_found");

    // Admins remove rooms.
    admin.delete("/v1/rooms/lead-room").await.expect(204);
}

#[tokio::test]
async fn compliance_configuration() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    let read = admin.get("/v1/compliance").await.expect(200);
    assert_eq!(read.body["runInterval"], "00:15:00");
    assert_eq!(read.body["enabled"], false);
    assert_eq!(read.body["adapterType"], "xml");
    assert_eq!(read.body["version"], 0);

    admin
        .put(
            "/v1/compliance",
            json!({"enabled": true, "runInterval": "00:00:30", "adapterOutputDirectory": "/tmp/x"}),
        )
        .await
        .expect_error(400, "invalid_field");
    admin
        .put("/v1/compliance", json!({"enabled": true, "runInterval": "30.00:00:01", "adapterOutputDirectory": "/tmp/x"}))
        .await
        .expect_error(400, "invalid_field");
    admin
        .put("/v1/compliance", json!({"enabled": true}))
        .await
        .expect_error(400, "missing_field");
    admin
        .put("/v1/compliance", json!({"adapterType": "csv"}))
        .await
        .expect_error(400, "invalid_field");
    let set = admin
        .put(
            "/v1/compliance",
            json!({"enabled": true, "adapterName": "Archive", "adapterType": "json", "adapterOutputDirectory": "/var/lib/perch/archive",
                   "runInterval": "1.00:00:00", "oneChatRoomPerOutputFile": true, "addUserDetails": true}),
        )
        .await
        .expect(200);
    assert_eq!(set.etag.as_deref(), Some("\"1\""));
    assert_eq!(set.body["runInterval"], "1.00:00:00");
    admin
        .send(
            Method::PUT,
            "/v1/compliance",
            Some(&json!({"enabled": false})),
            &[("If-Match", "\"0\"")],
        )
        .await
        .expect_error(412, "version_mismatch");
}

#[tokio::test]
async fn a_restart_keeps_all_data() {
    let mut fixture = Fixture::new();
    seed_category(&fixture).await;
    fixture
        .admin
        .post(
            "/v1/rooms",
            json!({"name": "kept", "category": "Eng", "members": ["sip:a@contoso.com"]}),
        )
        .await
        .expect(201);
    fixture
        .admin
        .put(
            "/v1/compliance",
            json!({"enabled": true, "adapterOutputDirectory": "/tmp/archive"}),
        )
        .await
        .expect(200);
    let before = fixture.admin.get("/v1/state").await.expect(200).body;

    let status = fixture.server.stop();
    assert!(
        status.success(),
        "SIGTERM should end perch serve cleanly, got {status}"
    );
    let server = TestServer::start(&fixture.db.url);
    let admin = server.client(&fixture.admin_token);
    let after = admin.get("/v1/state").await.expect(200).body;
    assert_eq!(before, after);
    let room = after["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|object| object["kind"] == "Room")
        .unwrap();
    assert_eq!(room["members"], json!(["sip:a@contoso.com"]));
    assert_eq!(after["formatVersion"], 1);
}

/// A caller over its rate is answered 429 with Retry-After and the documented body; others are
/// not slowed by it.
#[tokio::test]
async fn a_caller_over_its_rate_waits_and_others_do_not() {
    let db = common::TestDb::new();
    let hasty = common::create_token(&db.url, "sip:hasty@contoso.com", "user");
    let calm = common::create_token(&db.url, "sip:calm@contoso.com", "user");
    let server = common::TestServer::start_with_env(&db.url, &[("PERCH_RATE_LIMIT", "5")]);
    let http = reqwest::Client::new();
    let mut refused = None;
    // The burst is 10; 30 requests at once must meet the limit.
    for _ in 0..30 {
        let response = http
            .get(format!("{}/v1/rooms", server.base))
            .bearer_auth(&hasty)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("30 requests at once were never refused at 5 per second");
    let after = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        after.parse::<u64>().is_ok_and(|seconds| seconds >= 1),
        "{after}"
    );
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "too_many_requests", "{body:#}");
    server.client(&calm).get("/v1/rooms").await.expect(200);
}

/// A client that never finishes its headers is cut off (10 s), rather than holding a
/// connection for ever.
#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = common::TestDb::new();
    let server = common::TestServer::start(&db.url);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), stream.read(&mut buffer))
        .await
        .expect("the connection was still open after 30 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

//! Chat on the real server: posting and reading, the rules, search, idempotent retries, live
//! events with resume, clearing and removing messages.

mod common;

use std::time::Duration;

use common::{Client, Fixture};
use reqwest::Method;
use serde_json::{Value, json};

/// Runs `perch` with `args` against the fixture's server, as its administrator.
fn perch_on_server(fixture: &Fixture, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend([
        "--server",
        fixture.server.base.as_str(),
        "--token",
        fixture.admin_token.as_str(),
    ]);
    common::perch(&all)
}

async fn setup(fixture: &Fixture) {
    let admin = &fixture.admin;
    admin
        .post(
            "/v1/categories",
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"], "deniedMembers": ["sip:temp7@contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post("/v1/categories", json!({"name": "Quiet", "allowedMembers": ["domain:contoso.com"], "chatHistory": false}))
        .await
        .expect(201);
    for room in [
        json!({"name": "open-room", "category": "Eng", "privacy": "open"}),
        json!({"name": "closed-room", "category": "Eng", "members": ["sip:ana@contoso.com"], "managers": ["sip:max@contoso.com"]}),
        json!({"name": "secret-room", "category": "Eng", "privacy": "secret", "members": ["sip:ana@contoso.com"]}),
        json!({"name": "stage", "category": "Eng", "type": "auditorium", "members": ["sip:ana@contoso.com", "sip:bob@contoso.com"], "presenters": ["sip:ana@contoso.com"]}),
        json!({"name": "off", "category": "Eng", "privacy": "open", "disabled": true}),
        json!({"name": "quiet-room", "category": "Quiet", "privacy": "open"}),
    ] {
        admin.post("/v1/rooms", room).await.expect(201);
    }
}

async fn post(client: &Client, room: &str, text: &str) -> Value {
    client
        .post(&format!("/v1/rooms/{room}/messages"), json!({"body": text}))
        .await
        .expect(201)
        .body
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn posting_and_reading_follow_the_rules() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let bob = fixture.user("sip:bob@contoso.com");
    let max = fixture.user("sip:max@contoso.com");
    let temp7 = fixture.user("sip:temp7@contoso.com");

    let message = post(&ana, "closed-room", "hello closed").await;
    assert_eq!(message["author"], "sip:ana@contoso.com");
    assert_eq!(message["room"], "closed-room");
    // Open rooms: anyone in scope posts; the denied never.
    post(&bob, "open-room", "anyone in scope").await;
    temp7
        .post("/v1/rooms/open-room/messages", json!({"body": "x"}))
        .await
        .expect_error(404, "not_found");
    // Closed rooms: visible in scope, members only.
    bob.post("/v1/rooms/closed-room/messages", json!({"body": "x"}))
        .await
        .expect_error(403, "forbidden");
    bob.get("/v1/rooms/closed-room/messages")
        .await
        .expect_error(403, "forbidden");
    // The manager role alone grants no membership.
    max.post("/v1/rooms/closed-room/messages", json!({"body": "x"}))
        .await
        .expect_error(403, "forbidden");
    // Secret rooms do not exist for non-members.
    bob.post("/v1/rooms/secret-room/messages", json!({"body": "x"}))
        .await
        .expect_error(404, "not_found");
    bob.get("/v1/rooms/secret-room/messages?q=hello")
        .await
        .expect_error(404, "not_found");
    // Auditorium: presenters post, members read.
    post(&ana, "stage", "from the stage").await;
    bob.post("/v1/rooms/stage/messages", json!({"body": "heckle"}))
        .await
        .expect_error(403, "forbidden");
    assert_eq!(
        bob.get("/v1/rooms/stage/messages").await.expect(200).body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Disabled rooms take no posts.
    fixture
        .admin
        .post("/v1/rooms/off/messages", json!({"body": "x"}))
        .await
        .expect_error(403, "forbidden");
    ana.post("/v1/rooms/off/messages", json!({"body": "x"}))
        .await
        .expect_error(404, "not_found");
    // Bad bodies.
    ana.post("/v1/rooms/closed-room/messages", json!({"body": "  "}))
        .await
        .expect_error(400, "invalid_field");
    ana.post("/v1/rooms/closed-room/messages", json!({"text": "x"}))
        .await
        .expect_error(400, "unknown_field");
    ana.post(
        "/v1/rooms/closed-room/messages",
        json!({"body": "x".repeat(16_385)}),
    )
    .await
    .expect_error(400, "message_too_long");
    // A category without chat history delivers but keeps nothing for users.
    post(&ana, "quiet-room", "gone with the wind").await;
    assert_eq!(
        ana.get("/v1/rooms/quiet-room/messages")
            .await
            .expect(200)
            .body["items"],
        json!([])
    );
}

#[tokio::test]
async fn history_pages_both_ways_and_searches() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let mut posted = Vec::new();
    for index in 0..7 {
        let text = if index == 3 {
            "The Q3 plan is ready".to_owned()
        } else {
            format!("message {index}")
        };
        posted.push(post(&ana, "open-room", &text).await["id"].as_i64().unwrap());
    }
    let latest = ana
        .get("/v1/rooms/open-room/messages?limit=3")
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&latest), posted[4..7]);
    assert!(latest["after"].is_null());
    let older = ana
        .get(&format!(
            "/v1/rooms/open-room/messages?limit=3&before={}",
            latest["before"]
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&older), posted[1..4]);
    let oldest = ana
        .get(&format!(
            "/v1/rooms/open-room/messages?limit=3&before={}",
            older["before"]
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&oldest), posted[0..1]);
    assert!(oldest["before"].is_null());
    let newer = ana
        .get(&format!(
            "/v1/rooms/open-room/messages?limit=3&after={}",
            oldest["after"]
        ))
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&newer), posted[1..4]);
    let found = ana
        .get("/v1/rooms/open-room/messages?q=q3%20PLAN")
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&found), [posted[3]]);
    let none = ana
        .get("/v1/rooms/open-room/messages?q=100%25")
        .await
        .expect(200)
        .body;
    assert_eq!(ids(&none), Vec::<i64>::new());
    ana.get("/v1/rooms/open-room/messages?limit=0")
        .await
        .expect_error(400, "invalid_field");
    ana.get("/v1/rooms/open-room/messages?limit=abc")
        .await
        .expect_error(400, "invalid_query");
}

#[tokio::test]
async fn a_retried_post_is_stored_once() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let send = |body: &'static str| {
        let ana = ana.clone();
        async move {
            ana.send(
                Method::POST,
                "/v1/rooms/open-room/messages",
                Some(&json!({"body": body})),
                &[("Idempotency-Key", "k-1")],
            )
            .await
        }
    };
    let first = send("once").await.expect(201);
    let retry = send("once").await.expect(200);
    assert_eq!(first.body["id"], retry.body["id"]);
    send("another text")
        .await
        .expect_error(409, "idempotency_key_reused");
    let page = ana.get("/v1/rooms/open-room/messages").await.body;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

/// Posts of one moment are stored together (one group, one multi-row insert): a key retried
/// at the same moment as other posts, and as itself, still stores its message once, and an
/// earlier post in the same group is what the retries find.
#[tokio::test]
async fn retries_at_the_same_moment_as_other_posts_store_the_message_once() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let mut sends = Vec::new();
    for attempt in 0..40 {
        let ana = ana.clone();
        sends.push(tokio::spawn(async move {
            if attempt % 2 == 0 {
                let reply = ana
                    .send(
                        Method::POST,
                        "/v1/rooms/open-room/messages",
                        Some(&json!({"body": "sent once, retried"})),
                        &[("Idempotency-Key", "retried")],
                    )
                    .await;
                (
                    true,
                    reply.status.as_u16(),
                    reply.body["id"].as_i64().unwrap(),
                )
            } else {
                let reply = ana
                    .post(
                        "/v1/rooms/open-room/messages",
                        json!({"body": format!("plain post {attempt}")}),
                    )
                    .await
                    .expect(201);
                (
                    false,
                    reply.status.as_u16(),
                    reply.body["id"].as_i64().unwrap(),
                )
            }
        }));
    }
    let mut keyed = Vec::new();
    let mut plain = Vec::new();
    for send in sends {
        let (with_key, status, id) = send.await.unwrap();
        if with_key {
            keyed.push((status, id));
        } else {
            plain.push(id);
        }
    }
    let created: Vec<_> = keyed.iter().filter(|(status, _)| *status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "one retry stores it, the others find it: {keyed:?}"
    );
    let id = created[0].1;
    assert!(
        keyed
            .iter()
            .all(|(status, found)| *found == id && matches!(status, 200 | 201))
    );
    let page = ana
        .get("/v1/rooms/open-room/messages?limit=100")
        .await
        .expect(200)
        .body;
    let mut stored: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect();
    plain.push(id);
    plain.sort_unstable();
    stored.sort_unstable();
    assert_eq!(
        stored, plain,
        "every plain post and the keyed one, each once"
    );
}

/// Reads server-sent message events until `count` arrived or 10 s passed; each with its
/// message id (the first part of the event id).
async fn read_events(
    base: &str,
    token: &str,
    last_event_id: Option<i64>,
    count: usize,
) -> Vec<(i64, Value)> {
    read_events_from(
        base,
        token,
        last_event_id.map(|id| id.to_string()),
        count,
        "message",
    )
    .await
    .into_iter()
    .map(|(id, data)| (id.split(':').next().unwrap().parse().unwrap(), data))
    .collect()
}

/// Reads server-sent events of one type until `count` arrived; each with its full event id.
async fn read_events_from(
    base: &str,
    token: &str,
    last_event_id: Option<String>,
    count: usize,
    wanted: &str,
) -> Vec<(String, Value)> {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{base}/v1/events")).bearer_auth(token);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.expect("events stream");
    assert_eq!(response.status(), 200);
    // What EventSource and proxies go by: the type, and that nothing caches the stream.
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < count {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {} of {count} events arrived in 10 s: {events:?}",
                    events.len()
                )
            })
            .expect("stream")
            .expect("stream ended early");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut id = None;
            let mut data = None;
            let mut kind = String::new();
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("event:") {
                    value.trim().clone_into(&mut kind);
                } else if let Some(value) = line.strip_prefix("data:") {
                    data = serde_json::from_str(value.trim()).ok();
                }
            }
            if let (Some(id), Some(data), true) = (id, data, kind == wanted) {
                events.push((id, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn live_events_resume_without_gap_or_duplicate_and_hide_secret_rooms() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let bob_token = common::create_token(&fixture.db.url, "sip:bob@contoso.com", "user");
    let base = fixture.server.base.clone();

    // A stream resumes strictly after the event id it is given, so starting from a marker
    // makes the test independent of when the stream connects.
    let marker = post(&ana, "open-room", "marker").await["id"]
        .as_i64()
        .unwrap();
    let listener = {
        let base = base.clone();
        let token = bob_token.clone();
        tokio::spawn(async move { read_events(&base, &token, Some(marker), 2).await })
    };
    post(&ana, "secret-room", "bob must not see this").await;
    let first = post(&ana, "open-room", "one").await;
    let second = post(&ana, "open-room", "two").await;
    let events = listener.await.unwrap();
    assert_eq!(
        events.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [
            first["id"].as_i64().unwrap(),
            second["id"].as_i64().unwrap()
        ]
    );
    assert_eq!(events[0].1["body"], "one");

    // Dropped after the first event: resuming from it yields exactly the rest.
    let third = post(&ana, "open-room", "three").await;
    let resumed = read_events(&base, &bob_token, Some(first["id"].as_i64().unwrap()), 2).await;
    assert_eq!(
        resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [
            second["id"].as_i64().unwrap(),
            third["id"].as_i64().unwrap()
        ]
    );
}

#[tokio::test]
async fn clearing_and_removing_messages_through_the_cli() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    for text in [
        "The Q3 plan is ready",
        "q3 numbers",
        "plan for Q3",
        "lunch?",
    ] {
        post(&ana, "open-room", text).await;
    }
    // Only administrators remove; authors cannot remove their own posts.
    ana.post(
        "/v1/rooms/open-room/clear",
        json!({"endDate": "2999-01-01"}),
    )
    .await
    .expect_error(403, "forbidden");
    ana.post("/v1/rooms/open-room/messages/remove", json!({}))
        .await
        .expect_error(403, "forbidden");

    let run = |args: &[&str]| perch_on_server(&fixture, args);
    let (code, stdout, stderr) = run(&[
        "messages",
        "remove",
        "--room",
        "open-room",
        "--filter",
        "q3 plan",
        "--match",
        "exact",
        "--replace",
        "[removed]",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "room open-room: 1 message(s) replaced");
    let page = ana.get("/v1/rooms/open-room/messages").await.body;
    assert_eq!(page["items"][0]["body"], "[removed]");
    assert_eq!(page["items"][0]["replaced"], true);

    let (code, stdout, _) = run(&[
        "messages",
        "remove",
        "--room",
        "open-room",
        "--user",
        "sip:ana@contoso.com",
        "--filter",
        "Q3",
        "--case-sensitive",
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), "room open-room: 1 message(s) removed");
    let (code, _, stderr) = run(&["messages", "remove", "--room", "nowhere", "--all"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("does not exist"), "{stderr}");
    let (code, _, stderr) = run(&[
        "room",
        "clear",
        "--room",
        "open-room",
        "--end-date",
        "yesterday",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a date"), "{stderr}");

    // The embedded store does the same on the same database.
    let (code, stdout, stderr) = common::perch(&[
        "room",
        "clear",
        "--room",
        "open-room",
        "--end-date",
        "2999-12-31",
        "--db",
        &fixture.db.url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "cleared room open-room: 3 message(s) removed"
    );
    assert_eq!(
        ana.get("/v1/rooms/open-room/messages").await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn live_events_carry_room_changes_the_caller_may_see() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let ana_token = common::create_token(&fixture.db.url, "sip:ana@contoso.com", "user");
    let bob_token = common::create_token(&fixture.db.url, "sip:bob@contoso.com", "user");
    let base = fixture.server.base.clone();
    // Both streams start after the marker message and from the first room change.
    let marker = post(&ana, "open-room", "marker").await["id"]
        .as_i64()
        .unwrap();
    let start = format!("{marker}:0");
    let admin = &fixture.admin;
    admin
        .patch(
            "/v1/rooms/secret-room",
            json!({"description": "members only"}),
        )
        .await
        .expect(200);
    admin
        .patch(
            "/v1/rooms/open-room",
            json!({"description": "for everyone"}),
        )
        .await
        .expect(200);
    // Bob sees the changes of rooms he may see; the secret room's change never reaches him.
    // Created: open, closed, stage, quiet (not secret, not the disabled one); then one change.
    let for_bob = read_events_from(&base, &bob_token, Some(start.clone()), 5, "room").await;
    assert!(
        for_bob
            .iter()
            .all(|(_, change)| change["room"] != "secret-room"),
        "{for_bob:?}"
    );
    assert!(
        for_bob
            .iter()
            .any(|(_, change)| change["room"] == "open-room" && change["change"] == "changed")
    );
    // Ana, a member, sees it; resuming after it yields only what follows.
    let for_ana = read_events_from(&base, &ana_token, Some(start), 7, "room").await;
    let secret = for_ana
        .iter()
        .position(|(_, change)| change["room"] == "secret-room" && change["change"] == "changed")
        .unwrap();
    let resumed = read_events_from(
        &base,
        &ana_token,
        Some(for_ana[secret].0.clone()),
        1,
        "room",
    )
    .await;
    assert_eq!(resumed[0].1["room"], "open-room");
    assert_eq!(resumed[0].1["change"], "changed");
}

/// SIGTERM with a live stream open: the stream ends (the client resumes elsewhere by
/// Last-Event-ID) and the server exits, rather than refusing new work while the stream keeps
/// it alive. `TestServer::stop` fails the test if the server is not gone within 5 s.
#[tokio::test]
async fn sigterm_ends_live_streams_and_the_server_exits() {
    let mut fixture = Fixture::new();
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/events", fixture.server.base))
        .bearer_auth(&fixture.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reading = tokio::spawn(stream.bytes());
    let status = tokio::task::spawn_blocking(move || {
        let status = fixture.server.stop();
        (status, fixture)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status:?}");
    let ended = tokio::time::timeout(Duration::from_secs(5), reading).await;
    assert!(ended.is_ok(), "the stream outlived the server");
}

/// The finite mode tools test live streams with: `maxEvents` ends after that many events,
/// `until` once the stream passes that message id; both end the response by themselves.
#[tokio::test]
async fn live_streams_have_a_finite_mode() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        ids.push(post(&ana, "open-room", text).await["id"].as_i64().unwrap());
    }
    let read_all = |query: String| {
        let base = fixture.server.base.clone();
        let token = fixture.admin_token.clone();
        async move {
            let response = reqwest::Client::new()
                .get(format!("{base}/v1/events?{query}"))
                .bearer_auth(token)
                .header("Last-Event-ID", "0:0")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = tokio::time::timeout(Duration::from_secs(20), response.text())
                .await
                .expect("the finite stream did not end")
                .unwrap();
            let bodies: Vec<String> = body
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
                .filter_map(|event| event["body"].as_str().map(str::to_owned))
                .collect();
            (status, bodies)
        }
    };
    assert_eq!(
        read_all("maxEvents=2".to_owned()).await,
        (200, vec!["one".to_owned(), "two".to_owned()])
    );
    assert_eq!(
        read_all(format!("until={}", ids[1])).await,
        (200, vec!["one".to_owned(), "two".to_owned()])
    );
    assert_eq!(read_all("maxEvents=0".to_owned()).await, (200, vec![]));
    let (status, _) = read_all("maxEvents=99999".to_owned()).await;
    assert_eq!(status, 400);
    let (status, _) = read_all("forever=yes".to_owned()).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn dry_runs_change_nothing_and_keywords_match_whole_words() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let ana = fixture.user("sip:ana@contoso.com");
    for text in ["Q3 plan", "Q30 results", "q3-plan notes", "lunch"] {
        post(&ana, "open-room", text).await;
    }
    let bodies = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["body"].as_str().unwrap().to_owned())
            .collect()
    };
    // Search matches words, not substrings: q3 is not Q30.
    let found = ana
        .get("/v1/rooms/open-room/messages?q=q3")
        .await
        .expect(200)
        .body;
    assert_eq!(bodies(&found), ["Q3 plan", "q3-plan notes"]);

    let run = |args: &[&str]| perch_on_server(&fixture, args);
    let (code, stdout, stderr) = run(&[
        "messages",
        "remove",
        "--room",
        "open-room",
        "--filter",
        "q3",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "dry run: room open-room: 2 message(s) would be removed; nothing changed"
    );
    let (code, stdout, _) = run(&[
        "room",
        "clear",
        "--room",
        "open-room",
        "--end-date",
        "2999-12-31",
        "--dry-run",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        stdout.trim(),
        "dry run: clearing room open-room would remove 4 message(s); nothing changed"
    );
    // No filter: every message, which needs --all without a terminal.
    let (code, _, stderr) = run(&["messages", "remove", "--room", "open-room"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("pass --all"), "{stderr}");
    let (code, stdout, _) = run(&["messages", "remove", "--room", "open-room", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("4 message(s) would be removed"), "{stdout}");
    let all = ana
        .get("/v1/rooms/open-room/messages")
        .await
        .expect(200)
        .body;
    assert_eq!(bodies(&all).len(), 4, "dry runs changed nothing");
    let audited = fixture
        .admin
        .get("/v1/audit?action=remove-messages")
        .await
        .expect(200)
        .body;
    assert_eq!(audited["items"], json!([]), "a dry run is not an act");

    // The exact phrase, on word boundaries.
    let (code, stdout, stderr) = run(&[
        "messages",
        "remove",
        "--room",
        "open-room",
        "--filter",
        "q3 plan",
        "--match",
        "exact",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "room open-room: 2 message(s) removed");
    let left = ana
        .get("/v1/rooms/open-room/messages")
        .await
        .expect(200)
        .body;
    assert_eq!(bodies(&left), ["Q30 results", "lunch"]);
}

#[tokio::test]
async fn rooms_list_filtered_and_paged_through_the_api_and_the_cli() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let admin = &fixture.admin;
    let names = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|room| room["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let open = admin
        .get("/v1/rooms?privacy=Open&category=eng")
        .await
        .expect(200)
        .body;
    assert_eq!(
        names(&open),
        ["off", "open-room"],
        "any case, as the cmdlets took them"
    );
    let ana_rooms = admin
        .get("/v1/rooms?member=sip:ana@contoso.com&type=auditorium")
        .await
        .expect(200)
        .body;
    assert_eq!(names(&ana_rooms), ["stage"]);
    // Pages of one, by the cursor, add up to every room.
    let everything = names(&admin.get("/v1/rooms").await.expect(200).body);
    let mut paged = Vec::new();
    let mut path = "/v1/rooms?limit=1".to_owned();
    loop {
        let page = admin.get(&path).await.expect(200).body;
        paged.extend(names(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/rooms?limit=1&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged, everything);
    admin
        .get("/v1/rooms?privacy=hidden")
        .await
        .expect_error(400, "invalid_query");
    // A user sees what the access rules let it see, filters or not.
    let ana = fixture.user("sip:ana@contoso.com");
    let secret = ana.get("/v1/rooms?privacy=secret").await.expect(200).body;
    assert_eq!(names(&secret), ["secret-room"]);
    let bob = fixture.user("sip:bob@contoso.com");
    let none = bob.get("/v1/rooms?privacy=secret").await.expect(200).body;
    assert_eq!(names(&none), Vec::<String>::new());

    // The CLI, against the server and against the embedded store alike.
    for target in [
        vec![
            "--server",
            fixture.server.base.as_str(),
            "--token",
            fixture.admin_token.as_str(),
        ],
        vec!["--db", fixture.db.url.as_str()],
    ] {
        let mut args = vec!["room", "list", "--privacy", "open", "--disabled", "false"];
        args.extend(&target);
        let (code, stdout, stderr) = common::perch(&args);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.starts_with("open-room  category Eng  open normal"),
            "{stdout}"
        );
        assert!(stdout.contains("quiet-room"), "{stdout}");
        assert!(stdout.trim_end().ends_with("2 room(s)"), "{stdout}");
        let mut json_args = vec!["room", "list", "--filter", "STAGE", "--json"];
        json_args.extend(&target);
        let (code, stdout, stderr) = common::perch(&json_args);
        assert_eq!(code, 0, "{stderr}");
        let rooms: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(rooms[0]["name"], "stage");
        assert_eq!(rooms.as_array().unwrap().len(), 1);
    }
}

/// Posts arriving together are stored together (one commit for a group, a savepoint each):
/// a refused post among them changes nothing for the others, and a live stream reading
/// "after id N" receives every stored post once, in id order, with none skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_reach_a_live_stream_in_id_order_with_none_skipped() {
    let fixture = Fixture::new();
    setup(&fixture).await;
    let reader = common::create_token(&fixture.db.url, "sip:reader@contoso.com", "user");
    let mut stream = reqwest::Client::new()
        .get(format!("{}/v1/events", fixture.server.base))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut posters = Vec::new();
    for index in 0..20 {
        let client = fixture.user(&format!("sip:poster{index}@contoso.com"));
        posters.push(tokio::spawn(async move {
            let mut stored = Vec::new();
            for number in 0..25 {
                let reply = client
                    .post(
                        "/v1/rooms/open-room/messages",
                        json!({"body": format!("poster {index} message {number}")}),
                    )
                    .await
                    .expect(201);
                stored.push(reply.body["id"].as_i64().unwrap());
                // A post the rules refuse, in the same moment as the others.
                if number % 5 == 0 {
                    client
                        .post(
                            "/v1/rooms/closed-room/messages",
                            json!({"body": "not a member"}),
                        )
                        .await
                        .expect_error(403, "forbidden");
                }
            }
            stored
        }));
    }
    let mut stored = Vec::new();
    for poster in posters {
        stored.extend(poster.await.unwrap());
    }
    stored.sort_unstable();

    let mut received: Vec<i64> = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while received.len() < stored.len() {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} posts reached the stream; missing {:?}",
                    received.len(),
                    stored.len(),
                    stored
                        .iter()
                        .filter(|id| !received.contains(id))
                        .collect::<Vec<_>>()
                )
            })
            .unwrap()
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|line| line.strip_prefix("data: ")) {
                let message: Value = serde_json::from_str(data).unwrap();
                if frame.contains("event: message") {
                    received.push(message["id"].as_i64().unwrap());
                }
            }
        }
    }
    assert_eq!(received, stored, "every stored post once, in id order");
    // Nothing the refused posts did remains: the closed room holds no message.
    let closed = fixture
        .admin
        .get("/v1/rooms/closed-room/messages")
        .await
        .expect(200);
    assert_eq!(closed.body["items"].as_array().unwrap().len(), 0);
}

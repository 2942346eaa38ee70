//! The access rules as a matrix: every read and write path × every kind of caller × every kind
//! of room, through the real binary, on SQLite or (with `PERCH_TEST_BACKEND=postgres`)
//! PostgreSQL. One snapshot holds the whole table, so a path that forgets a rule shows as one
//! changed cell. Also: no lost update between concurrent patches, and `If-Match` per RFC 9110.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Client, Fixture, TestServer, create_token, perch};
use expect_test::expect;
use serde_json::{Value, json};

/// The rooms of the matrix: (name, category, settings).
fn rooms() -> Vec<(&'static str, Value)> {
    let listed = json!([
        "sip:member@contoso.com",
        "sip:presenter@contoso.com",
        "sip:removed@contoso.com",
        "sip:revoked@contoso.com"
    ]);
    vec![
        (
            "open",
            json!({"privacy": "open", "managers": ["sip:manager@contoso.com"]}),
        ),
        (
            "closed",
            json!({"privacy": "closed", "members": listed, "presenters": ["sip:presenter@contoso.com"], "managers": ["sip:manager@contoso.com"]}),
        ),
        (
            "secret",
            json!({"privacy": "secret", "members": listed, "managers": ["sip:manager@contoso.com"]}),
        ),
        (
            "auditorium",
            json!({"privacy": "closed", "type": "auditorium", "members": listed, "presenters": ["sip:presenter@contoso.com"]}),
        ),
        (
            "disabled",
            json!({"privacy": "closed", "disabled": true, "members": listed, "managers": ["sip:manager@contoso.com"]}),
        ),
        (
            "quiet",
            json!({"category": "Quiet", "privacy": "closed", "members": listed}),
        ),
    ]
}

const CALLERS: [&str; 11] = [
    "anonymous",
    "outsider",
    "in-scope",
    "member",
    "manager",
    "presenter",
    "creator",
    "removed",
    "added",
    "revoked",
    "admin",
];

fn principal(caller: &str) -> String {
    match caller {
        "outsider" => "sip:olga@fabrikam.com".to_owned(),
        "in-scope" => "sip:ivan@contoso.com".to_owned(),
        other => format!("sip:{other}@contoso.com"),
    }
}

/// Opens a live stream and collects its messages until `sentinel` arrives or the stream ends.
/// Returns the rooms of the messages (in order) and whether the stream ended by itself.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(base: &str, token: &str, last_event_id: Option<&str>) -> Option<Stream> {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/v1/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("events request");
        (response.status() == 200).then(|| Stream {
            response,
            buffer: String::new(),
        })
    }

    async fn messages_until(mut self, sentinel: &str) -> (Vec<String>, bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut rooms = Vec::new();
        loop {
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| {
                    panic!("no sentinel and no end of stream within 20 s; got {rooms:?}")
                })
                .expect("stream");
            let Some(chunk) = chunk else {
                return (rooms, true);
            };
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                if !frame.lines().any(|line| line == "event: message") {
                    continue;
                }
                let data = frame
                    .lines()
                    .find_map(|line| line.strip_prefix("data:"))
                    .and_then(|data| serde_json::from_str::<Value>(data.trim()).ok())
                    .expect("message data");
                if data["body"] == sentinel {
                    return (rooms, false);
                }
                rooms.push(data["room"].as_str().unwrap_or_default().to_owned());
            }
        }
    }
}

/// The names of the rooms a list answer holds (none for an error).
fn room_names(body: &Value) -> Vec<String> {
    body.get("items")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|room| room["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Signs in to the web interface with a token; the session cookie (`name=value`).
async fn web_session(base: &str, token: &str) -> String {
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .post(format!("{base}/signin"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 303, "sign-in answers with a redirect");
    response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// A page of the web interface as `cookie` sees it: (status, body).
async fn web_get(base: &str, cookie: Option<&str>, path: &str) -> (u16, String) {
    let mut request = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    let response = request.send().await.expect("page");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The panel's cell of the matrix: listed in the chat client's rooms (`P`), the room page's
/// status, how many messages its history shows, and whether it offers posting (`C`) or says
/// why not (`x`); then the room's live stream opened by the session cookie.
async fn panel_cell(base: &str, cookie: Option<&str>, room: &str, list: &str) -> String {
    let listed = if list.contains(&format!("href=\"/chat/rooms/{room}\"")) {
        "P"
    } else {
        "-"
    };
    let (status, page) = web_get(base, cookie, &format!("/chat/rooms/{room}")).await;
    let shown = page.matches("<li data-id=").count();
    let posting = if page.contains("id=\"composer\"") {
        "C"
    } else if page.contains("id=\"cannot-post\"") {
        "x"
    } else {
        "-"
    };
    let mut stream =
        reqwest::Client::new().get(format!("{base}/v1/rooms/{room}/events?maxEvents=0"));
    if let Some(cookie) = cookie {
        stream = stream.header("cookie", cookie);
    }
    let stream = stream.send().await.expect("room stream").status().as_u16();
    format!("{listed} {status}:{shown} {posting} {stream}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_applies_the_same_access_rules() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    let scope = json!(["domain:contoso.com"]);
    for (name, history) in [("Eng", true), ("Quiet", false)] {
        admin
            .post(
                "/v1/categories",
                json!({"name": name, "allowedMembers": scope, "deniedMembers": ["sip:denied@contoso.com"],
                       "creators": ["sip:creator@contoso.com"], "chatHistory": history}),
            )
            .await
            .expect(201);
    }
    // A lobby every caller with a token may read carries the streams' sentinel.
    admin
        .post(
            "/v1/categories",
            json!({"name": "All", "allowedMembers": ["domain:contoso.com", "domain:fabrikam.com"]}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "lobby", "category": "All", "privacy": "open"}),
        )
        .await
        .expect(201);
    for (name, settings) in rooms() {
        let mut body = json!({"name": name, "category": "Eng"});
        for (key, value) in settings.as_object().unwrap() {
            body[key] = value.clone();
        }
        admin.post("/v1/rooms", body).await.expect(201);
    }
    let mut tokens = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for caller in CALLERS {
        let token = match caller {
            "anonymous" => String::new(),
            "admin" => fixture.admin_token.clone(),
            other => create_token(&fixture.db.url, &principal(other), "user"),
        };
        let client = if caller == "anonymous" {
            fixture.server.anonymous()
        } else {
            fixture.server.client(&token)
        };
        tokens.insert(caller, token);
        clients.insert(caller, client);
    }
    // Every caller with a token also signs in to the web interface, before any token is
    // revoked: the panel's pages are paths like any other.
    let mut sessions = BTreeMap::new();
    for caller in CALLERS {
        let cookie = if caller == "anonymous" {
            None
        } else {
            Some(web_session(&fixture.server.base, &tokens[caller]).await)
        };
        sessions.insert(caller, cookie);
    }
    // The creator makes a room of its own (and so manages it).
    clients["creator"]
        .post(
            "/v1/rooms",
            json!({"name": "created", "category": "Eng", "privacy": "closed"}),
        )
        .await
        .expect(201);
    let presenter = &clients["presenter"];
    for (name, _) in rooms() {
        if name != "disabled" {
            presenter
                .post(
                    &format!("/v1/rooms/{name}/messages"),
                    json!({"body": "before"}),
                )
                .await
                .expect(201);
        }
    }

    // Streams open now; then access changes under them.
    let base = &fixture.server.base;
    let mut live = BTreeMap::new();
    for caller in CALLERS {
        live.insert(caller, Stream::open(base, &tokens[caller], None).await);
    }
    for (name, _) in rooms() {
        admin
            .patch(
                &format!("/v1/rooms/{name}"),
                json!({"members": {"remove": ["sip:removed@contoso.com"], "add": ["sip:added@contoso.com"]}}),
            )
            .await
            .expect(200);
    }
    let (code, _, stderr) = perch(&[
        "token",
        "revoke",
        "--db",
        &fixture.db.url,
        &tokens["revoked"],
    ]);
    assert_eq!(code, 0, "{stderr}");
    for (name, _) in rooms() {
        if name != "disabled" {
            presenter
                .post(
                    &format!("/v1/rooms/{name}/messages"),
                    json!({"body": "live"}),
                )
                .await
                .expect(201);
        }
    }
    admin
        .post("/v1/rooms/lobby/messages", json!({"body": "sentinel"}))
        .await
        .expect(201);

    // One line per caller and room:
    // listed, get, history (status:count), search (count), live (count), replay (count),
    // the room's own stream (status), post, create with the room's name.
    let mut reads = Vec::new();
    for caller in CALLERS {
        let client = &clients[caller];
        let listed = room_names(&client.get("/v1/rooms").await.body);
        let live_rooms = match live.remove(caller).flatten() {
            Some(stream) => {
                let (rooms, ended) = stream.messages_until("sentinel").await;
                Some((rooms, ended))
            }
            None => None,
        };
        let replayed = match Stream::open(base, &tokens[caller], Some("0:0")).await {
            Some(stream) => Some(stream.messages_until("sentinel").await.0),
            None => None,
        };
        let panel_list = web_get(base, sessions[caller].as_deref(), "/chat").await.1;
        // The filtered, paged list (`GET /v1/rooms?limit=`) under the same rules.
        let paged = room_names(&client.get("/v1/rooms?limit=500").await.body);
        for (name, _) in rooms().into_iter().chain([("created", Value::Null)]) {
            let panel = panel_cell(base, sessions[caller].as_deref(), name, &panel_list).await;
            let get = client
                .get(&format!("/v1/rooms/{name}"))
                .await
                .status
                .as_u16();
            let history = client.get(&format!("/v1/rooms/{name}/messages")).await;
            let history = match history.body["items"].as_array() {
                Some(items) => format!("{}:{}", history.status.as_u16(), items.len()),
                None => history.status.as_u16().to_string(),
            };
            let search = client
                .get(&format!("/v1/rooms/{name}/messages?q=LIVE"))
                .await;
            let search = search.body["items"]
                .as_array()
                .map_or("-".to_owned(), |items| items.len().to_string());
            let live_count = match &live_rooms {
                None => "-".to_owned(),
                Some((rooms, ended)) => {
                    let count = rooms.iter().filter(|room| *room == name).count();
                    format!("{count}{}", if *ended { "!" } else { "" })
                }
            };
            let replay_count = replayed.as_ref().map_or("-".to_owned(), |rooms| {
                rooms
                    .iter()
                    .filter(|room| *room == name)
                    .count()
                    .to_string()
            });
            // A room's own stream: opened (and closed at once) under the same rules.
            let mut room_stream =
                reqwest::Client::new().get(format!("{base}/v1/rooms/{name}/events"));
            if let Some(token) = tokens.get(caller) {
                room_stream = room_stream.bearer_auth(token);
            }
            let room_stream = room_stream
                .send()
                .await
                .expect("room stream")
                .status()
                .as_u16();
            let in_list = match (
                listed.iter().any(|listed| listed == name),
                paged.iter().any(|paged| paged == name),
            ) {
                (true, true) => "L",
                (false, false) => "-",
                // The two lists disagree: a path forgot a rule.
                (true, false) => "L!",
                (false, true) => "P!",
            };
            reads.push(format!(
                "{caller:9} {name:10} {in_list} {get} {history:6} {search} {live_count:2} {replay_count} {room_stream} | {panel}"
            ));
        }
    }
    // Writes come after every read, so that no probe shows in another caller's counts.
    let mut table = String::new();
    let mut reads = reads.into_iter();
    for caller in CALLERS {
        let client = &clients[caller];
        for (name, _) in rooms().into_iter().chain([("created", Value::Null)]) {
            let post = client
                .post(
                    &format!("/v1/rooms/{name}/messages"),
                    json!({"body": "probe"}),
                )
                .await
                .status
                .as_u16();
            let collision = client
                .post("/v1/rooms", json!({"name": name, "category": "Eng"}))
                .await
                .status
                .as_u16();
            let read = reads.next().unwrap_or_default();
            let (read, panel) = read.split_once(" | ").unwrap_or((&read, ""));
            table.push_str(&format!("{read} {post} {collision} | {panel}\n"));
        }
    }
    // Reading the table: `!` after the live count means the stream ended (a revoked token).
    // Replay counts the `before` and `live` messages (chat history off: none). After `|`, the
    // web interface signed in with the same token (see `panel_cell`); 303 is "sign in first".
    expect![[r"
        anonymous open       - 401 401    - -  - 401 401 401 | - 303:0 - 401
        anonymous closed     - 401 401    - -  - 401 401 401 | - 303:0 - 401
        anonymous secret     - 401 401    - -  - 401 401 401 | - 303:0 - 401
        anonymous auditorium - 401 401    - -  - 401 401 401 | - 303:0 - 401
        anonymous disabled   - 401 401    - -  - 401 401 401 | - 303:0 - 401
        anonymous quiet      - 401 401    - -  - 401 401 401 | - 303:0 - 401
        anonymous created    - 401 401    - -  - 401 401 401 | - 303:0 - 401
        outsider  open       - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        outsider  closed     - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        outsider  secret     - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        outsider  auditorium - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        outsider  disabled   - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        outsider  quiet      - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        outsider  created    - 404 404    - 0  0 404 404 422 | - 404:0 - 404
        in-scope  open       L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        in-scope  closed     L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        in-scope  secret     - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        in-scope  auditorium L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        in-scope  disabled   - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        in-scope  quiet      L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        in-scope  created    L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        member    open       L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        member    closed     L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        member    secret     L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        member    auditorium L 200 200:2  1 1  2 200 403 403 | P 200:2 x 200
        member    disabled   - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        member    quiet      L 200 200:0  0 1  0 200 201 403 | P 200:0 C 200
        member    created    L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        manager   open       L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        manager   closed     L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        manager   secret     L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        manager   auditorium L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        manager   disabled   L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        manager   quiet      L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        manager   created    L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        presenter open       L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        presenter closed     L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        presenter secret     L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        presenter auditorium L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        presenter disabled   - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        presenter quiet      L 200 200:0  0 1  0 200 201 403 | P 200:0 C 200
        presenter created    L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        creator   open       L 200 200:2  1 1  2 200 201 409 | P 200:2 C 200
        creator   closed     L 200 403    - 0  0 403 403 409 | P 200:0 x 403
        creator   secret     - 404 404    - 0  0 404 404 404 | - 404:0 - 404
        creator   auditorium L 200 403    - 0  0 403 403 409 | P 200:0 x 403
        creator   disabled   - 404 404    - 0  0 404 404 404 | - 404:0 - 404
        creator   quiet      L 200 403    - 0  0 403 403 409 | P 200:0 x 403
        creator   created    L 200 403    - 0  0 403 403 409 | P 200:0 x 403
        removed   open       L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        removed   closed     L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        removed   secret     - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        removed   auditorium L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        removed   disabled   - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        removed   quiet      L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        removed   created    L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        added     open       L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        added     closed     L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        added     secret     L 200 200:2  1 1  2 200 201 403 | P 200:2 C 200
        added     auditorium L 200 200:2  1 1  2 200 403 403 | P 200:2 x 200
        added     disabled   - 404 404    - 0  0 404 404 403 | - 404:0 - 404
        added     quiet      L 200 200:0  0 1  0 200 201 403 | P 200:0 C 200
        added     created    L 200 403    - 0  0 403 403 403 | P 200:0 x 403
        revoked   open       - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        revoked   closed     - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        revoked   secret     - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        revoked   auditorium - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        revoked   disabled   - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        revoked   quiet      - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        revoked   created    - 401 401    - 0! - 401 401 401 | - 303:0 - 401
        admin     open       L 200 200:2  1 1  2 200 201 409 | P 200:2 C 200
        admin     closed     L 200 200:2  1 1  2 200 403 409 | P 200:2 x 200
        admin     secret     L 200 200:2  1 1  2 200 403 409 | P 200:2 x 200
        admin     auditorium L 200 200:2  1 1  2 200 403 409 | P 200:2 x 200
        admin     disabled   L 200 200:0  0 0  0 200 403 409 | P 200:0 x 200
        admin     quiet      L 200 200:0  0 1  0 200 403 409 | P 200:0 x 200
        admin     created    L 200 200:0  0 0  0 200 403 409 | P 200:0 x 200
    "]]
    .assert_eq(&table);

    // Exports and the state, in either layout, are administrators' alone.
    for caller in CALLERS {
        let client = &clients[caller];
        let export = client.get("/v1/data/export").await.status.as_u16();
        let state = client.get("/v1/state").await.status.as_u16();
        let rows = client.get("/v1/state?layout=rows").await.status.as_u16();
        let expected = match caller {
            "admin" => (200, 200, 200),
            "anonymous" | "revoked" => (401, 401, 401),
            _ => (403, 403, 403),
        };
        assert_eq!((export, state, rows), expected, "{caller}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_onto_a_hidden_room_is_not_found() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    admin
        .post(
            "/v1/categories",
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"], "creators": ["sip:cara@contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "hidden-x", "category": "Eng", "privacy": "secret"}),
        )
        .await
        .expect(201);
    let cara = fixture.user("sip:cara@contoso.com");
    cara.post(
        "/v1/rooms",
        json!({"name": "mine", "category": "Eng", "privacy": "closed"}),
    )
    .await
    .expect(201);
    cara.put(
        "/v1/rooms/mine",
        json!({"name": "hidden-x", "category": "Eng"}),
    )
    .await
    .expect_error(404, "not_found");
    cara.patch("/v1/rooms/mine", json!({"name": "hidden-x"}))
        .await
        .expect_error(404, "not_found");
    // A visible name in use is a plain conflict.
    cara.put("/v1/rooms/mine", json!({"name": "mine", "category": "Eng"}))
        .await
        .expect(200);
    // Ownership marks are the administrators'.
    cara.post(
        "/v1/rooms?managed=true&protect=true",
        json!({"name": "sneaky", "category": "Eng"}),
    )
    .await
    .expect_error(403, "forbidden");
    cara.put(
        "/v1/rooms/mine?managed=true",
        json!({"name": "mine", "category": "Eng"}),
    )
    .await
    .expect_error(403, "forbidden");
    assert_eq!(admin.get("/v1/rooms/sneaky").await.status, 404);
    // A category the caller may not see is reported as one that does not exist.
    admin
        .post(
            "/v1/categories",
            json!({"name": "Board", "allowedMembers": ["sip:ceo@contoso.com"]}),
        )
        .await
        .expect(201);
    let absent = cara
        .post("/v1/rooms", json!({"name": "x", "category": "Nowhere"}))
        .await
        .expect_error(422, "unknown_category");
    let hidden = cara
        .post("/v1/rooms", json!({"name": "x", "category": "Board"}))
        .await
        .expect_error(422, "unknown_category");
    assert_eq!(
        absent.body["message"]
            .as_str()
            .map(|m| m.replace("Nowhere", "?")),
        hidden.body["message"]
            .as_str()
            .map(|m| m.replace("Board", "?"))
    );
}

/// Two writers add different members to one group at once, without `If-Match`, 50 times:
/// both additions must land every time (the read, merge and write share one transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_lose_no_update() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    admin
        .post("/v1/groups", json!({"name": "g", "members": []}))
        .await
        .expect(201);
    let other = fixture.server.client(&fixture.admin_token);
    for round in 0..50 {
        let first = format!("sip:a{round}@contoso.com");
        let second = format!("sip:b{round}@contoso.com");
        let (one, two) = tokio::join!(
            admin.patch("/v1/groups/g", json!({"members": {"add": [first]}})),
            other.patch("/v1/groups/g", json!({"members": {"add": [second]}})),
        );
        one.expect(200);
        two.expect(200);
        let members = admin.get("/v1/groups/g").await.body["members"].clone();
        let members: Vec<&str> = members
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            members.contains(&first.as_str()) && members.contains(&second.as_str()),
            "round {round}: an addition was lost: {members:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_follows_rfc_9110() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    let created = admin
        .post("/v1/groups", json!({"name": "g", "members": []}))
        .await
        .expect(201);
    assert_eq!(created.etag.as_deref(), Some("\"1\""));
    let patch = |tag: &'static str| async move {
        admin
            .send(
                reqwest::Method::PATCH,
                "/v1/groups/g",
                Some(&json!({"description": tag})),
                &[("If-Match", tag)],
            )
            .await
    };
    for tag in ["\"abc\"", "W/\"1\"", "\"7\"", "\"1\", \"2\"", "abc"] {
        patch(tag).await.expect_error(412, "version_mismatch");
    }
    patch("\"1\"").await.expect(200);
    patch("*").await.expect(200);
    // `*` matches any existing object, and nothing that is not there.
    admin
        .send(
            reqwest::Method::PATCH,
            "/v1/groups/absent",
            Some(&json!({"description": "x"})),
            &[("If-Match", "*")],
        )
        .await
        .expect_error(404, "not_found");
}

#[allow(dead_code)] // Keeps the helpers of `common` in one place for every test crate.
fn unused(_: &TestServer, _: &Client) {}

//! Several server nodes on one database behave as one server; `perch migrate` moves a server.
//! With `PERCH_TEST_BACKEND=postgres` the nodes share a PostgreSQL database, otherwise a
//! SQLite file.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Client, TestDb, TestServer};
use serde_json::{Value, json};

struct Cluster {
    db: TestDb,
    token: String,
    a: TestServer,
    b: TestServer,
}

/// Category `Eng` (all of contoso.com) and its open room `general`.
async fn seed_general_room(admin: &Client) {
    admin
        .post(
            "/v1/categories",
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "general", "category": "Eng", "privacy": "open"}),
        )
        .await
        .expect(201);
}

impl Cluster {
    async fn new() -> Cluster {
        let db = TestDb::new();
        let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
        // Both nodes start at once: migrations must not trip over each other.
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| TestServer::start(&db.url));
            let b = scope.spawn(|| TestServer::start(&db.url));
            (a.join().unwrap(), b.join().unwrap())
        });
        let cluster = Cluster { db, token, a, b };
        seed_general_room(&cluster.a.client(&cluster.token)).await;
        cluster
    }

    fn user(&self, server: &TestServer, user: &str) -> Client {
        server.client(&common::create_token(&self.db.url, user, "user"))
    }
}

#[tokio::test]
async fn writes_on_one_node_are_seen_on_the_other_with_versions_and_locks() {
    let cluster = Cluster::new().await;
    let on_a = cluster.a.client(&cluster.token);
    let on_b = cluster.b.client(&cluster.token);
    assert_eq!(
        on_b.get("/v1/rooms/general").await.expect(200).body["category"],
        "Eng"
    );
    on_b.patch("/v1/rooms/general", json!({"description": "from b"}))
        .await
        .expect(200);
    let read = on_a.get("/v1/rooms/general").await.expect(200);
    assert_eq!(read.body["description"], "from b");
    // If-Match holds across nodes.
    on_a.send(
        reqwest::Method::PATCH,
        "/v1/rooms/general",
        Some(&json!({"description": "x"})),
        &[("If-Match", "\"1\"")],
    )
    .await
    .expect_error(412, "version_mismatch");
    // The apply lock holds across nodes.
    on_a.post("/v1/locks/apply", json!({"holder": "node-a-client"}))
        .await
        .expect(200);
    on_b.post("/v1/locks/apply", json!({"holder": "node-b-client"}))
        .await
        .expect_error(409, "lock_held");
    assert_eq!(
        on_b.get("/v1/locks/apply").await.expect(200).body["holder"],
        "node-a-client"
    );
}

#[tokio::test]
async fn live_events_reach_subscribers_on_every_node() {
    let cluster = Cluster::new().await;
    let ana_on_a = cluster.user(&cluster.a, "sip:ana@contoso.com");
    let bob_token = common::create_token(&cluster.db.url, "sip:bob@contoso.com", "user");
    let marker = ana_on_a
        .post("/v1/rooms/general/messages", json!({"body": "marker"}))
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .unwrap();
    let client = reqwest::Client::new();
    let mut stream = client
        .get(format!("{}/v1/events", cluster.b.base))
        .bearer_auth(&bob_token)
        .header("Last-Event-ID", marker.to_string())
        .send()
        .await
        .unwrap();
    let posted = ana_on_a
        .post(
            "/v1/rooms/general/messages",
            json!({"body": "across nodes"}),
        )
        .await
        .expect(201)
        .body;
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.contains("across nodes") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .expect("the event posted on node A did not reach node B's stream within 10 s")
            .unwrap()
            .unwrap();
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        received.contains(&format!("id: {}", posted["id"])),
        "{received}"
    );
}

fn archived_ids(directory: &std::path::Path) -> Vec<i64> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(directory).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for part in text.split("<Message type=\"CHAT\" ").skip(1) {
            let id = part.split(" id=\"").nth(1).unwrap();
            ids.push(id.split('"').next().unwrap().parse::<i64>().unwrap());
        }
    }
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn the_archiver_fails_over_when_its_node_is_killed() {
    let mut cluster = Cluster::new().await;
    let archive = cluster.db.path().join("archive");
    let admin = cluster.a.client(&cluster.token);
    admin
        .put(
            "/v1/compliance",
            json!({"enabled": true, "adapterOutputDirectory": archive.display().to_string(), "runInterval": "00:01:00"}),
        )
        .await
        .expect(200);
    let ana = cluster.user(&cluster.a, "sip:ana@contoso.com");
    let mut ids = Vec::new();
    for index in 0..5 {
        ids.push(
            ana.post(
                "/v1/rooms/general/messages",
                json!({"body": format!("m{index}")}),
            )
            .await
            .expect(201)
            .body["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Wait for one node to claim the archiver, then kill that node.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let holder = loop {
        let reply = admin.get("/v1/locks/archiver").await;
        if reply.status == 200 {
            break reply.body["holder"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no node claimed the archiver"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid_of = |server: &TestServer| server.pid();
    let (killed, survivor) = if holder.contains(&format!(":{}:", pid_of(&cluster.a))) {
        cluster.a.kill();
        (&cluster.a, &cluster.b)
    } else {
        cluster.b.kill();
        (&cluster.b, &cluster.a)
    };
    let _ = killed;
    let survivor_admin = survivor.client(&cluster.token);
    let survivor_ana = survivor.client(&common::create_token(
        &cluster.db.url,
        "sip:ana@contoso.com",
        "user",
    ));
    for index in 5..8 {
        ids.push(
            survivor_ana
                .post(
                    "/v1/rooms/general/messages",
                    json!({"body": format!("m{index}")}),
                )
                .await
                .expect(201)
                .body["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // The survivor takes the lease over once it lapses, then archives what is left.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let reply = survivor_admin.post("/v1/compliance/run", json!({})).await;
        if reply.status == 200 && archived_ids(&archive).len() >= ids.len() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the survivor never archived: {:#}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        archived_ids(&archive),
        ids,
        "every message archived exactly once"
    );
}

#[tokio::test]
async fn killing_a_node_under_load_loses_no_acknowledged_post() {
    let mut cluster = Cluster::new().await;
    let tokens: Vec<String> = (0..8)
        .map(|index| {
            common::create_token(
                &cluster.db.url,
                &format!("sip:poster{index}@contoso.com"),
                "user",
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        let base = if index % 2 == 0 {
            cluster.a.base.clone()
        } else {
            cluster.b.base.clone()
        };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut acknowledged = Vec::new();
            for number in 0..60 {
                let body = format!("poster {index} message {number}");
                let reply = client
                    .post(format!("{base}/v1/rooms/general/messages"))
                    .bearer_auth(&token)
                    .header("Idempotency-Key", body.clone())
                    .json(&json!({"body": body}))
                    .send()
                    .await;
                if let Ok(reply) = reply
                    && reply.status().is_success()
                {
                    let message: Value = reply.json().await.unwrap();
                    acknowledged.push((message["id"].as_i64().unwrap(), body));
                }
            }
            acknowledged
        }));
    }
    // Kill node A once posting is under way.
    let watcher = cluster.b.client(&cluster.token);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let page = watcher
            .get("/v1/rooms/general/messages?limit=100")
            .await
            .expect(200)
            .body;
        if page["items"].as_array().unwrap().len() >= 40 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "posting never got under way"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.a.kill();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    // Node B keeps serving.
    let survivor = cluster.user(&cluster.b, "sip:late@contoso.com");
    survivor
        .post(
            "/v1/rooms/general/messages",
            json!({"body": "after the kill"}),
        )
        .await
        .expect(201);
    // Every acknowledged post is stored, once.
    let mut stored = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(id) => format!("/v1/rooms/general/messages?limit=500&before={id}"),
            None => "/v1/rooms/general/messages?limit=500".to_owned(),
        };
        let page = watcher.get(&path).await.expect(200).body;
        for message in page["items"].as_array().unwrap() {
            stored.push((
                message["id"].as_i64().unwrap(),
                message["body"].as_str().unwrap().to_owned(),
            ));
        }
        match page["before"].as_i64() {
            Some(id) => before = Some(id),
            None => break,
        }
    }
    let bodies: Vec<&String> = stored.iter().map(|(_, body)| body).collect();
    let unique: BTreeSet<&String> = bodies.iter().copied().collect();
    assert_eq!(bodies.len(), unique.len(), "a post was stored twice");
    let stored_set: BTreeSet<(i64, String)> = stored.into_iter().collect();
    for message in &acknowledged {
        assert!(
            stored_set.contains(message),
            "acknowledged post {message:?} is missing"
        );
    }
    assert!(
        acknowledged.len() > 40,
        "too few posts were acknowledged: {}",
        acknowledged.len()
    );
}

#[tokio::test]
async fn migrate_moves_a_whole_server_and_verifies_counts() {
    let source = TestDb::sqlite();
    let token = common::create_token(&source.url, "sip:admin@contoso.com", "admin");
    let server = TestServer::start(&source.url);
    seed_general_room(&server.client(&token)).await;
    let ana = server.client(&common::create_token(
        &source.url,
        "sip:ana@contoso.com",
        "user",
    ));
    for index in 0..10 {
        ana.post(
            "/v1/rooms/general/messages",
            json!({"body": format!("m{index}")}),
        )
        .await
        .expect(201);
    }
    server
        .client(&token)
        .put(
            "/v1/applied",
            json!({"revision": "r1", "files": [{"path": "a.yaml", "text": "# nothing\n"}]}),
        )
        .await
        .expect(204);
    drop(server);
    let target = TestDb::new();
    let (code, stdout, stderr) =
        common::perch(&["migrate", "--from", &source.url, "--to", &target.url]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("migrated 2 object(s), 10 message(s) and 2 token(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("counts verified"));
    // The tokens came along: the same admin token works on the new database.
    let moved = TestServer::start(&target.url);
    let page = moved
        .client(&token)
        .get("/v1/rooms/general/messages")
        .await
        .expect(200)
        .body;
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    // So did the Git view's record of the last apply.
    let applied = moved
        .client(&token)
        .get("/v1/applied")
        .await
        .expect(200)
        .body;
    assert_eq!(applied["revision"], json!("r1"));
    // A second migration into the now full database is refused.
    let (code, _, stderr) = common::perch(&["migrate", "--from", &source.url, "--to", &target.url]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("migrate into an empty database"),
        "{stderr}"
    );
}

/// A node's `/metrics` page, at `metrics`.
async fn metrics_text(http: &reqwest::Client, metrics: &str) -> String {
    http.get(metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// How many notifications of commits the node whose `/metrics` is at `metrics` heard (0 where
/// it hears none: SQLite).
async fn notifications_heard(http: &reqwest::Client, metrics: &str) -> u64 {
    metrics_text(http, metrics)
        .await
        .lines()
        .find_map(|line| line.strip_prefix("perch_change_notifications_heard_total "))
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or(0)
}

/// Reads `count` message events from an open stream: each event's id, in order.
async fn message_ids(
    stream: &mut reqwest::Response,
    buffer: &mut String,
    count: usize,
) -> Vec<i64> {
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ids.len() < count {
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            if frame.contains("event: message") {
                let id = frame
                    .lines()
                    .find_map(|line| line.strip_prefix("id: "))
                    .expect("an event id");
                let message = id.split(['-', ':', '.']).next().unwrap_or(id);
                ids.push(message.parse::<i64>().expect("a message id"));
            }
        }
        if ids.len() >= count {
            break;
        }
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events arrived: {ids:?}", ids.len()))
            .expect("stream")
            .expect("stream ended early");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
    ids
}

/// On PostgreSQL each node hears the others' commits over `LISTEN`; when that connection is
/// cut, the node listens again and its streams read what they missed: nothing lost, nothing
/// twice. (On SQLite the streams poll; the same events arrive.)
#[tokio::test]
async fn a_cut_notification_connection_loses_and_repeats_no_event() {
    let cluster = Cluster::new().await;
    let ana_on_a = cluster.user(&cluster.a, "sip:ana@contoso.com");
    let bob_token = common::create_token(&cluster.db.url, "sip:bob@contoso.com", "user");
    let post = |body: String| {
        let ana = &ana_on_a;
        async move {
            ana.post("/v1/rooms/general/messages", json!({"body": body}))
                .await
                .expect(201)
                .body["id"]
                .as_i64()
                .unwrap()
        }
    };
    let marker = post("marker".into()).await;
    let http = reqwest::Client::new();
    let mut stream = http
        .get(format!("{}/v1/events", cluster.b.base))
        .bearer_auth(&bob_token)
        .header("Last-Event-ID", marker.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut buffer = String::new();
    let metrics_of_b = format!("{}/metrics", cluster.b.base);
    let heard_before = notifications_heard(&http, &metrics_of_b).await;
    let mut posted = Vec::new();
    for index in 0..10 {
        posted.push(post(format!("before {index}")).await);
    }
    let mut received = message_ids(&mut stream, &mut buffer, 10).await;

    let hears = |text: &str| text.contains("perch_hears_other_nodes 1");
    if common::postgres_wanted() {
        let text = metrics_text(&http, &metrics_of_b).await;
        assert!(hears(&text), "node B listens on PostgreSQL: {text}");
        // Pushed, not polled: node B heard each of node A's ten commits (each post was
        // answered before the next was sent, so each is a transaction of its own).
        let heard_of_posts = notifications_heard(&http, &metrics_of_b).await - heard_before;
        assert!(
            heard_of_posts >= 10,
            "node B heard {heard_of_posts} of the 10 posts on node A"
        );
        // A change of access alone (a token, made by another process) is announced too.
        let heard_before = notifications_heard(&http, &metrics_of_b).await;
        common::create_token(&cluster.db.url, "sip:zed@contoso.com", "user");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while notifications_heard(&http, &metrics_of_b).await == heard_before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node B never heard of the new token"
            );
            tokio::task::yield_now().await;
        }
        // Cut every node's notification connection, and post while they are down.
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.db.url)
            .await
            .unwrap();
        let cut: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'perch-listener' AND datname = current_database()) AS cut",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(cut, 2, "one notification connection per node");
    }
    for index in 0..10 {
        posted.push(post(format!("while cut {index}")).await);
    }
    received.extend(message_ids(&mut stream, &mut buffer, 10).await);
    if common::postgres_wanted() {
        // Node B listens again.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = metrics_text(&http, &metrics_of_b).await;
            if hears(&text) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node B never listened again: {text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for index in 0..10 {
        posted.push(post(format!("after {index}")).await);
    }
    received.extend(message_ids(&mut stream, &mut buffer, 10).await);
    // A last one: had anything come twice, it would arrive before this.
    let last = post("last".into()).await;
    posted.push(last);
    received.extend(message_ids(&mut stream, &mut buffer, 1).await);
    assert_eq!(received, posted, "every event once, in order");
}

/// Posts through two nodes at once, each client going round eight rooms from a different
/// room: the nodes' posters judge overlapping rooms in opposite orders, which exclusive row
/// locks turned into deadlocks (and a group failed on one became a string of 500s). Every
/// post must go in.
#[tokio::test]
async fn posters_of_two_nodes_in_the_same_rooms_never_wait_on_each_other() {
    let cluster = Cluster::new().await;
    let admin = cluster.a.client(&cluster.token);
    for room in 0..8 {
        admin
            .post(
                "/v1/rooms",
                json!({"name": format!("round-{room}"), "category": "Eng", "privacy": "open"}),
            )
            .await
            .expect(201);
    }
    let mut posters = Vec::new();
    for index in 0..16 {
        let server = if index % 2 == 0 {
            &cluster.a
        } else {
            &cluster.b
        };
        let client = cluster.user(server, &format!("sip:poster{index}@contoso.com"));
        posters.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for number in 0..40 {
                // Clients on one node go up the rooms, on the other down.
                let room = if index % 2 == 0 {
                    (index + number) % 8
                } else {
                    (8 * 40 + index - number) % 8
                };
                let reply = client
                    .post(
                        &format!("/v1/rooms/round-{room}/messages"),
                        json!({"body": format!("poster {index} message {number}")}),
                    )
                    .await;
                statuses.push(reply.status.as_u16());
            }
            statuses
        }));
    }
    let mut refused = Vec::new();
    for poster in posters {
        refused.extend(
            poster
                .await
                .unwrap()
                .into_iter()
                .filter(|status| *status != 201),
        );
    }
    assert!(refused.is_empty(), "posts not stored: {refused:?}");
}

/// Renames a category, its add-in and a group that the category and its rooms name, over and
/// over while clients of both nodes post in the category's rooms. A rename rewrites every
/// room that names what it renames: it used to lock the category and then the rooms, while a
/// post locks its room and then the category, so each waited for the other until PostgreSQL
/// aborted one (a 503). Now every transaction takes rooms before categories, in the order of
/// their names; nothing may be refused.
#[tokio::test]
async fn renaming_a_category_while_its_rooms_are_posted_to_never_deadlocks() {
    let cluster = Cluster::new().await;
    let admin = cluster.a.client(&cluster.token);
    admin
        .post(
            "/v1/addins",
            json!({"name": "board", "url": "https://board.contoso.com/"}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/groups",
            json!({"name": "crew", "members": ["sip:lead@contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .patch("/v1/categories/Eng", json!({"creators": ["group:crew"]}))
        .await
        .expect(200);
    for room in 0..8 {
        admin
            .post(
                "/v1/rooms",
                json!({"name": format!("renamed-{room}"), "category": "Eng",
                       "privacy": "open", "addin": "board", "managers": ["group:crew"]}),
            )
            .await
            .expect(201);
    }
    let posting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut posters = Vec::new();
    for index in 0..8 {
        let server = if index % 2 == 0 {
            &cluster.a
        } else {
            &cluster.b
        };
        let client = cluster.user(server, &format!("sip:poster{index}@contoso.com"));
        let posting = posting.clone();
        posters.push(tokio::spawn(async move {
            let mut refused = Vec::new();
            let mut number = 0;
            while posting.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = client
                    .post(
                        &format!("/v1/rooms/renamed-{}/messages", (index + number) % 8),
                        json!({"body": format!("poster {index} message {number}")}),
                    )
                    .await;
                if reply.status != 201 {
                    refused.push((reply.status.as_u16(), reply.body));
                }
                number += 1;
            }
            (number, refused)
        }));
    }
    let mut renames = Vec::new();
    let on_b = cluster.b.client(&cluster.token);
    for round in 0..12 {
        let (category_from, category_to) = if round % 2 == 0 {
            ("Eng", "Eng2")
        } else {
            ("Eng2", "Eng")
        };
        let (addin_from, addin_to) = if round % 2 == 0 {
            ("board", "board2")
        } else {
            ("board2", "board")
        };
        let node = if round % 2 == 0 { &admin } else { &on_b };
        let category_renamed = node
            .patch(
                &format!("/v1/categories/{category_from}"),
                json!({"name": category_to}),
            )
            .await;
        let addin_renamed = node
            .patch(
                &format!("/v1/addins/{addin_from}"),
                json!({"name": addin_to}),
            )
            .await;
        let (group_from, group_to) = if round % 2 == 0 {
            ("crew", "crew2")
        } else {
            ("crew2", "crew")
        };
        let group_renamed = node
            .patch(
                &format!("/v1/groups/{group_from}"),
                json!({"name": group_to}),
            )
            .await;
        renames.push((
            category_renamed.status.as_u16(),
            addin_renamed.status.as_u16(),
            group_renamed.status.as_u16(),
        ));
    }
    posting.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut posted = 0;
    let mut refused = Vec::new();
    for poster in posters {
        let (count, mut failures) = poster.await.unwrap();
        posted += count;
        refused.append(&mut failures);
    }
    assert!(posted > 0, "no post was made while the renames ran");
    assert!(refused.is_empty(), "posts refused: {refused:?}");
    assert!(
        renames.iter().all(|statuses| *statuses == (200, 200, 200)),
        "renames answered {renames:?}"
    );
    // Every room followed every rename.
    let room = admin.get("/v1/rooms/renamed-3").await.expect(200);
    assert_eq!(
        (
            room.body["category"].as_str(),
            room.body["addin"].as_str(),
            room.body["managers"][0].as_str()
        ),
        (Some("Eng"), Some("board"), Some("group:crew"))
    );
}

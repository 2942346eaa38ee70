//! The compliance archive: every message exactly once, across crashes and restarts.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Client, Fixture, TestServer};
use serde_json::json;

async fn setup(
    admin: &Client,
    user_token_client: &Client,
    directory: &Path,
    adapter: &str,
    per_room: bool,
) {
    admin
        .post(
            "/v1/categories",
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post("/v1/categories", json!({"name": "NoHistory", "allowedMembers": ["domain:contoso.com"], "chatHistory": false}))
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "a", "category": "Eng", "privacy": "open"}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "b", "category": "NoHistory", "privacy": "open"}),
        )
        .await
        .expect(201);
    admin
        .put(
            "/v1/compliance",
            json!({"enabled": true, "adapterName": "Archive", "adapterType": adapter,
                   "adapterOutputDirectory": directory.display().to_string(),
                   "oneChatRoomPerOutputFile": per_room, "addChatRoomDetails": true, "addUserDetails": true}),
        )
        .await
        .expect(200);
    let _ = user_token_client;
}

async fn post_some(client: &Client, prefix: &str, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for index in 0..count {
        let room = if index % 2 == 0 { "a" } else { "b" };
        let reply = client
            .post(
                &format!("/v1/rooms/{room}/messages"),
                json!({"body": format!("{prefix} <{index}> & more")}),
            )
            .await
            .expect(201);
        ids.push(reply.body["id"].as_i64().unwrap());
    }
    ids
}

/// How many times each message id appears across the archive files.
fn archived_ids(directory: &Path) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(directory).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            // A write interrupted by a kill leaves its temporary file; it is never renamed.
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        if name.ends_with(".details.json") {
            // The XML adapter's side file of room and user details.
            continue;
        }
        if name.to_ascii_lowercase().ends_with(".xml") {
            for part in text.split("<Message type=\"CHAT\" ").skip(1) {
                let id = part.split(" id=\"").nth(1).unwrap();
                let id: i64 = id.split('"').next().unwrap().parse().unwrap();
                *counts.entry(id).or_default() += 1;
            }
        } else if name.to_ascii_lowercase().ends_with(".json") {
            let document: serde_json::Value = serde_json::from_str(&text).unwrap();
            for conversation in document["conversations"].as_array().unwrap() {
                for message in conversation["messages"].as_array().unwrap() {
                    if message["type"] == "CHAT" {
                        *counts.entry(message["id"].as_i64().unwrap()).or_default() += 1;
                    }
                }
            }
        } else {
            panic!("unexpected file in the archive: {name}");
        }
    }
    counts
}

fn assert_exactly_once(directory: &Path, expected: &[i64]) {
    let counts = archived_ids(directory);
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "archived more than once: {twice:?}");
    let ids: Vec<i64> = counts.keys().copied().collect();
    let mut expected = expected.to_vec();
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

/// Runs the archiver, waiting (up to 30 s) for the lease of a node that died to lapse.
async fn run_when_free(admin: &Client) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let reply = admin.post("/v1/compliance/run", json!({})).await;
        if reply.status.is_success() {
            return;
        }
        assert_eq!(reply.code(), "lock_held", "{:#}", reply.body);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node's archiver lease never lapsed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn every_message_is_archived_once_in_xml_and_json() {
    for (adapter, per_room) in [("xml", false), ("json", true)] {
        let fixture = Fixture::new();
        let archive = fixture.db.path().join("archive");
        let ana = fixture.user("sip:ana@contoso.com");
        setup(&fixture.admin, &ana, &archive, adapter, per_room).await;
        let mut ids = post_some(&ana, "first", 6).await;
        let run = fixture
            .admin
            .post("/v1/compliance/run", json!({}))
            .await
            .expect(200);
        // Messages of a category without chat history are archived too.
        assert_eq!(run.body["archived"], 6, "{:#}", run.body);
        ids.extend(post_some(&ana, "second", 3).await);
        fixture
            .admin
            .post("/v1/compliance/run", json!({}))
            .await
            .expect(200);
        assert_exactly_once(&archive, &ids);
        let files = run.body["files"].as_array().unwrap();
        if per_room {
            assert_eq!(files.len(), 2, "{files:?}");
        }
        if adapter == "xml" {
            // The details side file comes first, then the batch itself.
            assert_eq!(files.len(), 2, "{files:?}");
            let details =
                std::fs::read_to_string(archive.join(files[0].as_str().unwrap())).unwrap();
            let details: serde_json::Value = serde_json::from_str(&details).unwrap();
            assert_eq!(
                details["rooms"][0]["category"]["name"], "Eng",
                "{details:#}"
            );
            assert_eq!(
                details["users"][0]["uri"], "sip:ana@contoso.com",
                "{details:#}"
            );
            let text = std::fs::read_to_string(archive.join(files[1].as_str().unwrap())).unwrap();
            assert!(
                text.contains("content=\"first &lt;0&gt; &amp; more\""),
                "{text}"
            );
            assert!(
                text.contains("<Sender UserName=\"ana@contoso.com\" id=\"1\" email=\"ana@contoso.com\" uri=\"sip:ana@contoso.com\" />"),
                "{text}"
            );
        }
        // Users do not run the archiver.
        ana.post("/v1/compliance/run", json!({}))
            .await
            .expect_error(403, "forbidden");
    }
}

#[tokio::test]
async fn a_crash_between_writing_and_marking_done_archives_nothing_twice() {
    let mut fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    let ana = fixture.user("sip:ana@contoso.com");
    let ana_token = common::create_token(&fixture.db.url, "sip:ana@contoso.com", "user");
    setup(&fixture.admin, &ana, &archive, "xml", false).await;
    let mut ids = post_some(&ana, "before", 5).await;
    fixture.server.stop();

    // This server dies (SIGABRT) right after writing a batch, before marking it done.
    let mut crashing = TestServer::start_with_env(
        &fixture.db.url,
        &[("PERCH_FAILPOINT", "archive-after-write")],
    );
    let status = crashing.wait_for_exit(30);
    assert!(
        !status.success(),
        "the failpoint should have crashed the server"
    );
    assert_eq!(
        archived_ids(&archive).len(),
        5,
        "the batch was written before the crash"
    );

    // A healthy restart finishes the batch, and archives what comes after, once.
    let mut server = TestServer::start(&fixture.db.url);
    let admin = server.client(&fixture.admin_token);
    let ana = server.client(&ana_token);
    run_when_free(&admin).await;
    ids.extend(post_some(&ana, "after", 4).await);
    admin
        .post("/v1/compliance/run", json!({}))
        .await
        .expect(200);
    assert_exactly_once(&archive, &ids);

    // SIGKILL at an arbitrary moment, then a restart: still exactly once.
    ids.extend(post_some(&ana, "killed", 4).await);
    server.kill();
    let server = TestServer::start(&fixture.db.url);
    let admin = server.client(&fixture.admin_token);
    run_when_free(&admin).await;
    assert_exactly_once(&archive, &ids);
}

//! Compliance an auditor can rely on: capture at write time, the original's documented XML
//! (validated against its XSD, read by its sample transform), the audit trail, legal holds and
//! retention. Through the real binary, on SQLite or PostgreSQL (`PERCH_TEST_BACKEND`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Client, Fixture, TestServer};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compliance")
}

/// Two categories (one keeping no history), rooms `a`, `b` and `doomed`, compliance on.
async fn setup(admin: &Client, archive: &Path, adapter: &str) {
    for category in [
        json!({"name": "Eng", "allowedMembers": ["domain:contoso.com"]}),
        json!({"name": "NoHistory", "allowedMembers": ["domain:contoso.com"], "chatHistory": false}),
    ] {
        admin.post("/v1/categories", category).await.expect(201);
    }
    for (room, category) in [("a", "Eng"), ("b", "NoHistory"), ("doomed", "Eng")] {
        admin
            .post(
                "/v1/rooms",
                json!({"name": room, "category": category, "privacy": "open"}),
            )
            .await
            .expect(201);
    }
    admin
        .put(
            "/v1/compliance",
            json!({"enabled": true, "adapterName": "Archive", "adapterType": adapter,
                   "adapterOutputDirectory": archive.display().to_string(),
                   "addChatRoomDetails": true, "addUserDetails": true}),
        )
        .await
        .expect(200);
}

async fn post(client: &Client, room: &str, body: &str) -> i64 {
    client
        .post(&format!("/v1/rooms/{room}/messages"), json!({"body": body}))
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .unwrap()
}

/// Every XML file of the archive, by name.
fn xml_files(archive: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(archive) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "xml"))
        .collect();
    files.sort();
    files
}

/// The `content` of every archived event of `event_type`, across all files, as the sample
/// transform would not mangle it: read with xmllint's XPath, so entities are decoded.
fn archived(archive: &Path, event_type: &str) -> Vec<String> {
    let mut contents = Vec::new();
    for file in xml_files(archive) {
        let output = Command::new("xmllint")
            .arg("--xpath")
            .arg(format!("//Messages/Message[@type='{event_type}']/@content"))
            .arg(&file)
            .output()
            .expect("xmllint runs (apt package libxml2-utils)");
        let text = String::from_utf8(output.stdout).unwrap();
        for part in text.split(" content=\"").skip(1) {
            let value = part.rsplit_once('"').map_or(part, |(value, _)| value);
            contents.push(decode_entities(value));
        }
    }
    contents
}

fn decode_entities(text: &str) -> String {
    text.replace("&#10;", "\n")
        .replace("&#xA;", "\n")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn run_archiver(admin: &Client) -> Value {
    admin
        .post("/v1/compliance/run", json!({}))
        .await
        .expect(200)
        .body
}

async fn audit(admin: &Client, query: &str) -> Vec<Value> {
    admin
        .get(&format!("/v1/audit?{query}"))
        .await
        .expect(200)
        .body["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn what_history_loses_compliance_archives_once_with_its_original_text() {
    let fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    setup(&fixture.admin, &archive, "xml").await;
    let ana = fixture.user("sip:ana@contoso.com");
    post(&ana, "a", "kept as it is").await;
    post(&ana, "a", "q3 numbers are secret").await;
    post(&ana, "a", "to be replaced: salaries").await;
    post(&ana, "b", "no history, still archived").await;
    post(&ana, "doomed", "in a room that will be removed").await;
    let admin = &fixture.admin;

    // Before the archiver runs: remove, replace, clear, remove the room.
    admin
        .post("/v1/rooms/a/messages/remove", json!({"filter": "q3"}))
        .await
        .expect(200);
    admin
        .post(
            "/v1/rooms/a/messages/remove",
            json!({"filter": "salaries", "replace": "[redacted]"}),
        )
        .await
        .expect(200);
    admin
        .post("/v1/rooms/b/clear", json!({"endDate": "2999-12-31"}))
        .await
        .expect(200);
    admin.delete("/v1/rooms/doomed").await.expect(204);

    // Users see what history holds now, nothing compliance kept.
    let history = ana.get("/v1/rooms/a/messages").await.expect(200).body;
    let bodies: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["kept as it is", "[redacted]"]);
    let search = ana.get("/v1/rooms/a/messages?q=salaries").await.expect(200);
    assert_eq!(search.body["items"], json!([]), "{:#}", search.body);

    run_archiver(admin).await;
    run_archiver(admin).await;
    let mut chats = archived(&archive, "CHAT");
    chats.sort();
    assert_eq!(
        chats,
        [
            "in a room that will be removed",
            "kept as it is",
            "no history, still archived",
            "q3 numbers are secret",
            "to be replaced: salaries",
        ],
        "every message exactly once, as it was posted"
    );

    // And each act is on the record, with who did it.
    for (action, name) in [
        ("remove-messages", "a"),
        ("replace-messages", "a"),
        ("clear", "b"),
        ("remove", "doomed"),
    ] {
        let entries = audit(admin, &format!("kind=Room&name={name}&action={action}")).await;
        assert_eq!(entries.len(), 1, "{action} {name}: {entries:#?}");
        assert_eq!(entries[0]["actor"], "sip:admin@contoso.com");
    }
    let removal = audit(admin, "kind=Room&name=a&action=remove-messages").await;
    assert_eq!(removal[0]["detail"]["filter"], "q3");
    assert_eq!(removal[0]["detail"]["count"], 1);
}

#[tokio::test]
async fn the_xml_archive_validates_against_the_documented_xsd_and_its_sample_transform_reads_it() {
    let fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    setup(&fixture.admin, &archive, "xml").await;
    let ana_token = common::create_token(&fixture.db.url, "sip:ana@contoso.com", "user");
    let ana = fixture.server.client(&ana_token);
    // A room's live stream: opening it joins (JOIN), closing it leaves (PART).
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/rooms/a/events", ana.base))
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let texts = [
        "plain",
        "markup <b>bold</b> & \"quotes\" 'apostrophes'",
        "control \u{1} bell \u{7} escape \u{1b}[2J",
        "two\nlines\tand a tab",
        "unicode é 😀 \u{202E}gnp.exe",
    ];
    for text in texts {
        post(&ana, "a", text).await;
    }
    // Reading history is recorded too (BACKCHAT).
    ana.get("/v1/rooms/a/messages?limit=10").await.expect(200);
    drop(stream);

    // PART is recorded once the server sees the stream closed: archive until it shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while archived(&archive, "PART").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no PART archived");
        run_archiver(&fixture.admin).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(archived(&archive, "JOIN").len(), 1);
    assert_eq!(archived(&archive, "BACKCHAT").len(), 1);

    let xsd = fixtures().join("persistent-chat-compliance.xsd");
    let xsl = fixtures().join("sample-transform.xsl");
    let mut transformed = String::new();
    for file in xml_files(&archive) {
        let validation = Command::new("xmllint")
            .args(["--noout", "--schema"])
            .arg(&xsd)
            .arg(&file)
            .output()
            .expect("xmllint runs (apt package libxml2-utils)");
        assert!(
            validation.status.success(),
            "{} does not validate: {}",
            file.display(),
            String::from_utf8_lossy(&validation.stderr)
        );
        let output = Command::new("xsltproc")
            .arg(&xsl)
            .arg(&file)
            .output()
            .expect("xsltproc runs (apt package xsltproc)");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        transformed.push_str(&String::from_utf8(output.stdout).unwrap());
    }
    // Every posted message is in the transform's output, control characters replaced by
    // U+FFFD as documented.
    let contents: BTreeSet<String> = transformed
        .split("<Content>")
        .skip(1)
        .map(|part| decode_entities(part.split("</Content>").next().unwrap()))
        .collect();
    for text in texts {
        let expected: String = text
            .chars()
            .map(|c| {
                if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect();
        assert!(
            contents.contains(&expected),
            "{expected:?} is not in the transform's output: {contents:#?}"
        );
    }
    assert!(
        transformed.contains("<ParticipantEntered>"),
        "{transformed}"
    );
    assert!(transformed.contains("<ParticipantLeft>"), "{transformed}");
    assert!(
        transformed.contains("<RoomID>a</RoomID>"),
        "the channel's name is the room's: {transformed}"
    );
}

#[tokio::test]
async fn the_json_archive_matches_its_schema() {
    let fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    setup(&fixture.admin, &archive, "json").await;
    let ana = fixture.user("sip:ana@contoso.com");
    post(&ana, "a", "control \u{1} kept exactly in JSON").await;
    let run = run_archiver(&fixture.admin).await;
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/compliance.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for file in run["files"].as_array().unwrap() {
        let path = archive.join(file.as_str().unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "archive files are their owner's alone");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let document: Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|error| error.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{document:#}");
        assert_eq!(
            document["conversations"][0]["messages"][0]["content"],
            "control \u{1} kept exactly in JSON"
        );
    }
}

#[tokio::test]
async fn the_audit_trail_records_every_kind_of_act_and_pages() {
    let fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    let admin = &fixture.admin;
    setup(admin, &archive, "xml").await;
    let ana = fixture.user("sip:ana@contoso.com");
    admin
        .patch("/v1/rooms/a", json!({"description": "the new one"}))
        .await
        .expect(200);
    admin
        .post(
            "/v1/locks/apply",
            json!({"holder": "ci-42", "ttlSeconds": 60}),
        )
        .await
        .expect(200);
    admin
        .delete("/v1/locks/apply?holder=ci-42")
        .await
        .expect(204);
    post(&ana, "a", "hello").await;
    admin
        .put("/v1/holds/rooms/a", json!({"reason": "case 7"}))
        .await
        .expect(200);
    admin.delete("/v1/holds/rooms/a").await.expect(200);
    let export = admin
        .raw(reqwest::Method::GET, "/v1/data/export?level=all", "")
        .await;
    assert_eq!(export.status, 200);
    run_archiver(admin).await;
    let spare = common::create_token(&fixture.db.url, "sip:spare@contoso.com", "user");
    let (code, _, stderr) = common::perch(&["token", "revoke", "--db", &fixture.db.url, &spare]);
    assert_eq!(code, 0, "{stderr}");
    admin
        .raw(
            reqwest::Method::POST,
            "/v1/data/import",
            &common::data_file(&[]),
        )
        .await
        .expect(200);

    let actions: BTreeSet<String> = audit(admin, "limit=1000")
        .await
        .iter()
        .map(|entry| entry["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "create",
        "change",
        "create-token",
        "lock",
        "unlock",
        "place-hold",
        "release-hold",
        "export",
        "import",
        "archive",
        "revoke-token",
    ] {
        assert!(actions.contains(action), "no `{action}` in {actions:?}");
    }
    // A change records the fields' before and after.
    let change = audit(admin, "kind=Room&name=a&action=change").await;
    assert_eq!(
        change[0]["detail"]["changes"]["description"],
        json!({"before": "", "after": "the new one"})
    );
    // Filters by actor and time; cursor pages, newest first, without overlap.
    let by_admin = audit(
        admin,
        "actor=sip:admin@contoso.com&since=2000-01-01&limit=1000",
    )
    .await;
    assert!(by_admin.len() >= 8, "{by_admin:#?}");
    assert!(audit(admin, "until=2000-01-01").await.is_empty());
    let first = admin.get("/v1/audit?limit=2").await.expect(200).body;
    let next = first["next"].as_i64().expect("a next cursor");
    let second = admin
        .get(&format!("/v1/audit?limit=2&before={next}"))
        .await
        .expect(200)
        .body;
    let ids: Vec<i64> = [&first, &second]
        .iter()
        .flat_map(|page| page["items"].as_array().unwrap().clone())
        .map(|entry| entry["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");
    // `perch audit` reads the same trail, and prints what requests wrote inert.
    admin
        .post("/v1/locks/evil%1B%5B2J", json!({"holder": "x\u{7}"}))
        .await
        .expect(200);
    let (code, stdout, stderr) = common::perch(&[
        "audit",
        "--server",
        &admin.base,
        "--token",
        &fixture.admin_token,
        "--kind",
        "Lock",
        "--limit",
        "1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Lock evil\\u{1b}[2J"), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    let (code, stdout, _) = common::perch(&[
        "audit",
        "--server",
        &admin.base,
        "--token",
        &fixture.admin_token,
        "--json",
        "--action",
        "change",
        "--name",
        "a",
    ]);
    assert_eq!(code, 0);
    let page: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        page["items"][0]["detail"]["changes"]["description"]["after"],
        "the new one"
    );
    // Administrators only; bad filters name their field.
    ana.get("/v1/audit").await.expect_error(403, "forbidden");
    admin
        .get("/v1/audit?limit=0")
        .await
        .expect_error(400, "invalid_field");
    admin
        .get("/v1/audit?action=explode")
        .await
        .expect_error(400, "invalid_query");
}

#[tokio::test]
async fn a_legal_hold_refuses_clearing_removal_and_room_removal_naming_itself() {
    let fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    let admin = &fixture.admin;
    setup(admin, &archive, "xml").await;
    admin
        .put(
            "/v1/holds/categories/Eng",
            json!({"reason": "matter 2026-17"}),
        )
        .await
        .expect(200);
    let refused = admin
        .post("/v1/rooms/a/clear", json!({"endDate": "2999-12-31"}))
        .await
        .expect_error(409, "held");
    let message = refused.body["message"].as_str().unwrap();
    assert!(
        message.contains("category `Eng`") && message.contains("matter 2026-17"),
        "{message}"
    );
    admin
        .post("/v1/rooms/a/messages/remove", json!({}))
        .await
        .expect_error(409, "held");
    admin
        .delete("/v1/rooms/doomed")
        .await
        .expect_error(409, "held");
    // Nor can a held room be renamed or moved out from under the hold.
    admin
        .patch("/v1/rooms/a", json!({"name": "a2"}))
        .await
        .expect_error(409, "held");
    admin
        .patch("/v1/rooms/a", json!({"category": "NoHistory"}))
        .await
        .expect_error(409, "held");
    admin
        .patch("/v1/categories/Eng", json!({"name": "Eng2"}))
        .await
        .expect_error(409, "held");
    // Another category's rooms are not held.
    admin
        .post("/v1/rooms/b/clear", json!({"endDate": "2999-12-31"}))
        .await
        .expect(200);
    let holds = admin.get("/v1/holds").await.expect(200).body;
    assert_eq!(holds["items"][0]["name"], "Eng");
    assert_eq!(holds["items"][0]["placedBy"], "sip:admin@contoso.com");
    // Holds stand on rooms and categories that exist, placed and released by administrators.
    admin
        .put("/v1/holds/rooms/ghost", json!({"reason": "x"}))
        .await
        .expect_error(404, "not_found");
    admin
        .put("/v1/holds/addins/x", json!({"reason": "x"}))
        .await
        .expect_error(404, "not_found");
    admin
        .put("/v1/holds/rooms/a", json!({"reason": "clear\u{1b}[2J"}))
        .await
        .expect_error(400, "invalid_field");
    fixture
        .user("sip:ana@contoso.com")
        .delete("/v1/holds/categories/Eng")
        .await
        .expect_error(403, "forbidden");
    admin.delete("/v1/holds/categories/Eng").await.expect(200);
    admin
        .post("/v1/rooms/a/clear", json!({"endDate": "2999-12-31"}))
        .await
        .expect(200);
    // A hold placed through another Unicode form of the name stands on the room itself.
    admin
        .post(
            "/v1/rooms",
            json!({"name": "caf\u{e9}", "category": "Eng", "privacy": "open"}),
        )
        .await
        .expect(201);
    admin
        .put("/v1/holds/rooms/cafe%CC%81", json!({"reason": "case 11"}))
        .await
        .expect(200);
    admin
        .post(
            "/v1/rooms/caf%C3%A9/clear",
            json!({"endDate": "2999-12-31"}),
        )
        .await
        .expect_error(409, "held");
    admin.delete("/v1/holds/rooms/cafe%CC%81").await.expect(200);
}

#[tokio::test]
async fn retention_expires_old_messages_except_under_a_hold() {
    let fixture = Fixture::new();
    let admin = &fixture.admin;
    admin
        .post(
            "/v1/categories",
            json!({"name": "Short", "allowedMembers": ["domain:contoso.com"], "retention": "P30D"}),
        )
        .await
        .expect(201);
    for room in ["old", "held"] {
        admin
            .post(
                "/v1/rooms",
                json!({"name": room, "category": "Short", "privacy": "open"}),
            )
            .await
            .expect(201);
    }
    // Messages from 2020, brought in by an import of this server's own export.
    let export = admin
        .raw(
            reqwest::Method::GET,
            "/v1/data/export?level=room-directory",
            "",
        )
        .await;
    assert_eq!(export.status, 200, "{:#}", export.body);
    let rooms = admin.get("/v1/rooms").await.expect(200).body;
    let mut lines = Vec::new();
    let mut id = 1000;
    for room in rooms["items"].as_array().unwrap() {
        for day in 1..=3 {
            id += 1;
            lines.push(json!({"message": {"id": id, "roomId": room["id"], "author": "sip:ana@contoso.com",
                "body": format!("from 2020, day {day}"), "postedAt": format!("2020-01-0{day}T00:00:00.000000Z"),
                "inHistory": true, "replaced": false}}).to_string());
        }
    }
    let body = common::data_file(&lines);
    admin
        .raw(reqwest::Method::POST, "/v1/data/import", &body)
        .await
        .expect(200);
    let ana = fixture.user("sip:ana@contoso.com");
    post(&ana, "old", "fresh").await;
    admin
        .put("/v1/holds/rooms/held", json!({"reason": "case 9"}))
        .await
        .expect(200);

    let run = admin
        .post("/v1/retention/run", json!({}))
        .await
        .expect(200)
        .body;
    assert_eq!(run["held"], json!(["held"]));
    let old = ana.get("/v1/rooms/old/messages").await.expect(200).body;
    assert_eq!(old["items"].as_array().unwrap().len(), 1, "{old:#}");
    let held = ana.get("/v1/rooms/held/messages").await.expect(200).body;
    assert_eq!(held["items"].as_array().unwrap().len(), 3, "{held:#}");
    // The server's own run at start may come after the import on a loaded machine and expire
    // them first: together the runs expired the three, each recorded.
    let expired = audit(admin, "action=expire").await;
    assert!(
        expired.iter().all(|entry| entry["name"] == "old"),
        "{expired:#?}"
    );
    let total: i64 = expired
        .iter()
        .map(|entry| entry["detail"]["count"].as_i64().unwrap_or_default())
        .sum();
    assert_eq!(total, 3, "{run:#} {expired:#?}");
    // A retention that is not days or weeks names the field.
    admin
        .post("/v1/categories", json!({"name": "Bad", "retention": "P1Y"}))
        .await
        .expect_error(400, "invalid_field");
}

/// A room's live stream still open when the server drains (SIGTERM) records its PART before
/// the server closes its database: compliance never keeps a JOIN without its PART.
#[tokio::test]
async fn a_room_stream_open_at_shutdown_records_its_part() {
    let mut fixture = Fixture::new();
    let archive = fixture.db.path().join("archive");
    setup(&fixture.admin, &archive, "xml").await;
    let ana_token = common::create_token(&fixture.db.url, "sip:ana@contoso.com", "user");
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/rooms/a/events", fixture.server.base))
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let reading = tokio::spawn(stream.bytes());
    let (status, mut fixture) = tokio::task::spawn_blocking(move || {
        let status = fixture.server.stop();
        (status, fixture)
    })
    .await
    .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = tokio::time::timeout(Duration::from_secs(5), reading).await;
    // What the stopped server wrote, archived by the next one.
    fixture.server = TestServer::start(&fixture.db.url);
    let admin = fixture.server.client(&fixture.admin_token);
    run_archiver(&admin).await;
    assert_eq!(archived(&archive, "JOIN").len(), 1);
    assert_eq!(archived(&archive, "PART").len(), 1, "no PART archived");
}

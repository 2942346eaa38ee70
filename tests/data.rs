//! Export and import of chat data: the round trip reproduces configuration and messages
//! exactly; conflicting, truncated or corrupted imports change nothing.

mod common;

use common::{Fixture, TestDb, TestServer};
use serde_json::{Value, json};

async fn populate(fixture: &Fixture) {
    let admin = &fixture.admin;
    admin
        .post(
            "/v1/groups",
            json!({"name": "Team", "members": ["sip:ana@contoso.com"]}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/addins",
            json!({"name": "Board", "url": "https://board"}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/categories",
            json!({"name": "Eng", "allowedMembers": ["domain:contoso.com", "group:Team"]}),
        )
        .await
        .expect(201);
    admin
        .post("/v1/categories", json!({"name": "Quiet", "allowedMembers": ["domain:contoso.com"], "chatHistory": false}))
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "general", "category": "Eng", "privacy": "open", "addin": "Board"}),
        )
        .await
        .expect(201);
    admin
        .post(
            "/v1/rooms",
            json!({"name": "hush", "category": "Quiet", "privacy": "open"}),
        )
        .await
        .expect(201);
    admin
        .put(
            "/v1/compliance",
            json!({"enabled": false, "adapterName": "A"}),
        )
        .await
        .expect(200);
    let ana = fixture.user("sip:ana@contoso.com");
    for index in 0..5 {
        ana.post(
            "/v1/rooms/general/messages",
            json!({"body": format!("hello {index} ✓")}),
        )
        .await
        .expect(201);
    }
    ana.post(
        "/v1/rooms/hush/messages",
        json!({"body": "kept for compliance"}),
    )
    .await
    .expect(201);
    admin
        .post(
            "/v1/rooms/general/messages/remove",
            json!({"filter": "hello 3", "match": "exact", "replace": "[gone]"}),
        )
        .await
        .expect(200);
    // A text replaced with nothing is exported so, and imported again.
    admin
        .post(
            "/v1/rooms/general/messages/remove",
            json!({"filter": "hello 4", "match": "exact", "replace": ""}),
        )
        .await
        .expect(200);
}

fn objects(state: &Value) -> Vec<Value> {
    let mut objects = state["objects"].as_array().unwrap().clone();
    objects.sort_by_key(|object| object["id"].as_i64());
    objects
}

fn messages(db_url: &str) -> Vec<Value> {
    // Read what the store holds, hidden history included, through an export of it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.jsonl");
    let (code, _, stderr) = common::perch(&[
        "data",
        "export",
        "--out",
        file.to_str().unwrap(),
        "--db",
        db_url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|line| line.get("message").cloned())
        .collect()
}

#[tokio::test]
async fn export_then_import_into_an_empty_server_reproduces_everything() {
    let fixture = Fixture::new();
    populate(&fixture).await;
    let file = fixture.db.path().join("export.jsonl");
    let (code, stdout, stderr) = common::perch(&[
        "data",
        "export",
        "--out",
        file.to_str().unwrap(),
        "--server",
        &fixture.server.base,
        "--token",
        &fixture.admin_token,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        format!(
            "exported 7 object(s) and 6 message(s) to {}",
            file.display()
        )
    );

    // Import over HTTP into a new, empty server: first a dry run, which writes nothing.
    let target = TestDb::new();
    let token = common::create_token(&target.url, "sip:admin@contoso.com", "admin");
    let server = TestServer::start(&target.url);
    let (code, stdout, stderr) = common::perch(&[
        "data",
        "import",
        file.to_str().unwrap(),
        "--dry-run",
        "--server",
        &server.base,
        "--token",
        &token,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("dry run: would import 7 object(s) and 6 message(s)")
            && stdout.trim_end().ends_with("; nothing changed"),
        "{stdout}"
    );
    let state = server
        .client(&token)
        .get("/v1/state")
        .await
        .expect(200)
        .body;
    assert_eq!(
        state["objects"],
        serde_json::json!([]),
        "a dry run imports nothing"
    );
    let (code, stdout, stderr) = common::perch(&[
        "data",
        "import",
        file.to_str().unwrap(),
        "--server",
        &server.base,
        "--token",
        &token,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("imported 7 object(s) and 6 message(s)"),
        "{stdout}"
    );

    let before = fixture.admin.get("/v1/state").await.expect(200).body;
    let after = server
        .client(&token)
        .get("/v1/state")
        .await
        .expect(200)
        .body;
    assert_eq!(objects(&before), objects(&after));
    let original = messages(&fixture.db.url);
    let copied = messages(&target.url);
    assert_eq!(original.len(), 6);
    assert_eq!(original, copied);
    assert!(
        copied
            .iter()
            .any(|m| m["body"] == "[gone]" && m["replaced"] == true)
    );
    assert!(copied.iter().any(|m| m["inHistory"] == false));

    // New objects and messages after an import get fresh ids.
    let ana = server.client(&common::create_token(
        &target.url,
        "sip:ana@contoso.com",
        "user",
    ));
    let posted = ana
        .post("/v1/rooms/general/messages", json!({"body": "new"}))
        .await
        .expect(201)
        .body;
    assert!(
        posted["id"].as_i64().unwrap()
            > original
                .iter()
                .map(|m| m["id"].as_i64().unwrap())
                .max()
                .unwrap()
    );
    server
        .client(&token)
        .post("/v1/groups", json!({"name": "Another"}))
        .await
        .expect(201);

    // Importing again meets what is there: refused, listing it, nothing changed.
    let (code, _, stderr) = common::perch(&[
        "data",
        "import",
        file.to_str().unwrap(),
        "--db",
        &target.url,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Category `Eng`") && stderr.contains("nothing was imported"),
        "{stderr}"
    );
    let (code, _, stderr) = common::perch(&[
        "data",
        "import",
        file.to_str().unwrap(),
        "--db",
        &target.url,
        "--replace-existing",
    ]);
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn truncated_or_corrupted_imports_change_nothing() {
    let fixture = Fixture::new();
    populate(&fixture).await;
    let file = fixture.db.path().join("export.jsonl");
    let (code, ..) = common::perch(&[
        "data",
        "export",
        "--out",
        file.to_str().unwrap(),
        "--db",
        &fixture.db.url,
    ]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    let truncated = fixture.db.path().join("truncated.jsonl");
    std::fs::write(&truncated, &text[..text.len() * 2 / 3]).unwrap();
    let corrupted = fixture.db.path().join("corrupted.jsonl");
    std::fs::write(&corrupted, text.replacen("hello 1", "hellO 1", 1)).unwrap();
    let garbage = fixture.db.path().join("garbage.jsonl");
    std::fs::write(&garbage, "not an export\n").unwrap();

    let target = TestDb::new();
    for (file, expected) in [
        (&truncated, "truncated"),
        (&corrupted, "checksum does not match"),
        (&garbage, "truncated"),
    ] {
        let (code, _, stderr) = common::perch(&[
            "data",
            "import",
            file.to_str().unwrap(),
            "--db",
            &target.url,
        ]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains(expected), "{}: {stderr}", file.display());
    }
    // On SQLite the refused imports did not even create the file; either way the target
    // holds nothing but what a new database holds.
    let file = target.path().join("perch.db");
    if !common::postgres_wanted() && !file.exists() {
        return;
    }
    let (code, stdout, stderr) = common::perch(&[
        "export",
        "--out",
        target.path().join("state").to_str().unwrap(),
        "--db",
        &target.url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with("exported 1 object(s)"),
        "only the default compliance configuration: {stdout}"
    );
}

#[tokio::test]
async fn levels_scope_and_disabling() {
    let fixture = Fixture::new();
    populate(&fixture).await;
    let file = fixture.db.path().join("directory.jsonl");
    let (code, stdout, stderr) = common::perch(&[
        "data",
        "export",
        "--level",
        "room-directory",
        "--scope",
        "Eng",
        "--disable-exported",
        "--out",
        file.to_str().unwrap(),
        "--db",
        &fixture.db.url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Group, add-in, category Eng and its room; no messages.
    assert!(
        stdout.starts_with("exported 4 object(s) and 0 message(s)"),
        "{stdout}"
    );
    assert_eq!(
        fixture.admin.get("/v1/rooms/general").await.body["disabled"],
        true
    );
    assert_eq!(
        fixture.admin.get("/v1/rooms/hush").await.body["disabled"],
        false
    );
    let (code, _, stderr) = common::perch(&[
        "data",
        "export",
        "--scope",
        "Nope",
        "--out",
        file.to_str().unwrap(),
        "--db",
        &fixture.db.url,
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("category `Nope` does not exist"),
        "{stderr}"
    );
}

/// What Perch writes holds the organisation's data: the database (SQLite, with its log) and
/// exports are readable by their owner only.
#[cfg(unix)]
#[tokio::test]
async fn files_perch_creates_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::sqlite();
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    // The token command creates the database.
    common::create_token(&db.url, "sip:admin@contoso.com", "admin");
    let database = db.path().join("perch.db");
    assert_eq!(mode(&database), 0o600, "the database");
    let export = db.path().join("export.jsonl");
    let (code, _, stderr) = common::perch(&[
        "data",
        "export",
        "--out",
        export.to_str().unwrap(),
        "--db",
        &db.url,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(mode(&export), 0o600, "the export");
    // A server writes its log beside the database with the database's mode.
    let server = TestServer::start(&db.url);
    let wal = db.path().join("perch.db-wal");
    assert_eq!(mode(&wal), 0o600, "the write-ahead log");
    drop(server);
}

/// A valid checksum says a file is whole, not that what it holds is sound: an import checks
/// every name, text and time as the API would, and a failed import into a new database file
/// leaves no file behind.
#[test]
fn imports_are_checked_as_the_api_checks() {
    let dir = tempfile::tempdir().unwrap();
    let room = |name: &str| {
        json!({"object": {"kind": "Room", "id": 7, "version": 1, "managed": false, "protect": false,
            "createdAt": "2026-01-01T00:00:00.000000Z", "updatedBy": "x", "updatedAt": "2026-01-01T00:00:00.000000Z",
            "name": name, "category": "Eng"}})
        .to_string()
    };
    let category = json!({"object": {"kind": "Category", "id": 6, "version": 1, "managed": false, "protect": false,
        "createdAt": "2026-01-01T00:00:00.000000Z", "updatedBy": "x", "updatedAt": "2026-01-01T00:00:00.000000Z",
        "name": "Eng"}})
    .to_string();
    let message = |body: &str, author: &str, at: &str| {
        json!({"message": {"id": 1, "roomId": 7, "author": author, "body": body, "postedAt": at,
            "inHistory": true, "replaced": false}})
        .to_string()
    };
    let at = "2026-01-01T00:00:00.000000Z";
    let look_alike = category
        .replace("\"id\":6", "\"id\":9")
        .replace("\"Eng\"", "\"ENG\"");
    let cases = [
        (
            "two categories whose names differ only in case",
            vec![category.clone(), look_alike],
            "already exists",
        ),
        (
            "a room named like a path",
            vec![category.clone(), room("../../etc/evil")],
            "may not",
        ),
        ("a dot room", vec![category.clone(), room("..")], "may not"),
        (
            "a 100,000-character message",
            vec![
                category.clone(),
                room("ok"),
                message(&"x".repeat(100_000), "sip:ana@contoso.com", at),
            ],
            "100000 characters",
        ),
        (
            "an author that is no principal",
            vec![category.clone(), room("ok"), message("hi", "\u{1b}[2J", at)],
            "not a normalised user principal",
        ),
        (
            "a time in another form",
            vec![
                category.clone(),
                room("ok"),
                message("hi", "sip:ana@contoso.com", "2026-01-01"),
            ],
            "not a time in the stored form",
        ),
    ];
    for (what, lines, expected) in cases {
        let file = dir.path().join("import.jsonl");
        std::fs::write(&file, common::data_file(&lines)).unwrap();
        let database = dir.path().join("new.db");
        let url = format!("sqlite://{}", database.display());
        let (code, stdout, stderr) =
            common::perch(&["data", "import", file.to_str().unwrap(), "--db", &url]);
        assert_eq!(code, 1, "{what}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(!stderr.contains('\u{1b}'), "{what}: {stderr:?}");
        assert!(
            !database.exists(),
            "{what}: the failed import left {}",
            database.display()
        );
    }
    // The same file without the fault imports.
    let file = dir.path().join("import.jsonl");
    std::fs::write(
        &file,
        common::data_file(&[
            category,
            room("ok"),
            message("hi", "sip:ana@contoso.com", at),
        ]),
    )
    .unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let (code, stdout, stderr) =
        common::perch(&["data", "import", file.to_str().unwrap(), "--db", &url]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

//! `perch backup` and `perch restore` through the real binary, against a server that goes on
//! writing: on SQLite by default, on PostgreSQL with `PERCH_TEST_BACKEND=postgres`.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

async fn a_room_to_post_in(admin: &common::Client) {
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

/// Every message id the room's history holds, read page by page.
async fn history_ids(client: &common::Client) -> BTreeSet<i64> {
    let mut ids = BTreeSet::new();
    let mut after = 0;
    loop {
        let page = client
            .get(&format!(
                "/v1/rooms/general/messages?after={after}&limit=100"
            ))
            .await
            .expect(200)
            .body;
        let items = page["items"].as_array().expect("items").clone();
        if items.is_empty() {
            return ids;
        }
        for item in items {
            let id = item["id"].as_i64().expect("id");
            ids.insert(id);
            after = after.max(id);
        }
    }
}

async fn perch(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::perch(&args)
    })
    .await
    .expect("perch ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_twenty_clients_post_restores_every_acknowledged_message() {
    let fixture = common::Fixture::new();
    a_room_to_post_in(&fixture.admin).await;
    let acknowledged: Arc<Mutex<Vec<i64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..20 {
        let poster = fixture.server.client(&common::create_token(
            &fixture.db.url,
            &format!("sip:poster{client}@contoso.com"),
            "user",
        ));
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut sequence = 0;
            while !stop.load(Ordering::Relaxed) {
                sequence += 1;
                let reply = poster
                    .post(
                        "/v1/rooms/general/messages",
                        json!({"body": format!("poster {client}, message {sequence}")}),
                    )
                    .await
                    .expect(201);
                let id = reply.body["id"].as_i64().expect("the new message's id");
                acknowledged.lock().expect("not poisoned").push(id);
            }
        }));
    }
    // Let the posting get going, then take the backup in the middle of it.
    while acknowledged.lock().expect("not poisoned").len() < 200 {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before_backup: Vec<i64> = acknowledged.lock().expect("not poisoned").clone();
    let file = fixture.db.path().join("perch.backup");
    let (code, stdout, stderr) = perch(vec![
        "backup".into(),
        "--db".into(),
        fixture.db.url.clone(),
        "--out".into(),
        file.display().to_string(),
    ])
    .await;
    let after_backup = acknowledged.lock().expect("not poisoned").len();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a posting client failed");
    }
    assert_eq!(code, 0, "backup failed: {stderr}");
    assert!(stdout.starts_with("backed up "), "{stdout}");
    assert!(
        after_backup > before_backup.len(),
        "the server went on acknowledging posts while the backup ran"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("backup written")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "a backup holds token hashes: owner only"
        );
    }

    let restored = common::TestDb::new();
    let (code, stdout, stderr) = perch(vec![
        "restore".into(),
        file.display().to_string(),
        "--db".into(),
        restored.url.clone(),
    ])
    .await;
    assert_eq!(code, 0, "restore failed: {stderr}");
    assert!(stdout.contains("counts and checksums verified"), "{stdout}");

    // The restored server answers the same token, and holds every acknowledged message.
    let server = common::TestServer::start(&restored.url);
    let admin = server.client(&fixture.admin_token);
    let held = history_ids(&admin).await;
    let missing: Vec<&i64> = before_backup
        .iter()
        .filter(|id| !held.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} message(s) acknowledged before the backup are missing: {missing:?}",
        missing.len()
    );
    let all_acknowledged: BTreeSet<i64> = acknowledged
        .lock()
        .expect("not poisoned")
        .iter()
        .copied()
        .collect();
    assert!(
        held.is_subset(&all_acknowledged),
        "the restore holds only messages that were posted"
    );
    let count = format!("{} message(s)", held.len());
    assert!(
        stdout.contains(&count),
        "the restore reports the messages it holds: {stdout}"
    );

    // Ids are never handed out twice: the next post comes after every id the backup saw.
    let newest = held.iter().max().copied().unwrap_or(0);
    let next = admin
        .post(
            "/v1/rooms/general/messages",
            json!({"body": "after the restore"}),
        )
        .await
        .expect(201);
    assert!(next.body["id"].as_i64().expect("id") > newest);
}

#[test]
fn a_restore_refuses_an_altered_or_cut_file_and_a_database_in_use_and_keeps_nothing() {
    let source = common::TestDb::sqlite();
    common::create_token(&source.url, "sip:admin@contoso.com", "admin");
    let (code, _, stderr) = common::perch(&[
        "token",
        "create",
        "--db",
        &source.url,
        "--user",
        "sip:ana@contoso.com",
        "--role",
        "user",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let file = source.path().join("perch.backup");
    let file_text = file.display().to_string();
    let (code, _, stderr) = common::perch(&["backup", "--db", &source.url, "--out", &file_text]);
    assert_eq!(code, 0, "{stderr}");
    let whole = std::fs::read_to_string(&file).expect("backup");

    let promoted: String = whole
        .lines()
        .map(|line| {
            if line.starts_with('[') && line.contains("sip:ana@contoso.com") {
                format!("{}\n", line.replacen("\"user\"", "\"admin\"", 1))
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_ne!(promoted, whole);
    let variants = [
        (
            "a changed role",
            promoted,
            "table tokens holds 2 row(s) whose digest".to_owned(),
        ),
        (
            "a cut-off file",
            whole[..whole.rfind("{\"sequences\"").expect("sequences")].to_owned(),
            "the file ends before its end record".to_owned(),
        ),
        (
            "a changed sequence",
            whole.replacen("\"audit\":", "\"audit\":1", 1),
            "the file's checksum or totals do not match its content".to_owned(),
        ),
        (
            "a table of another schema",
            whole.replacen("[\"role\",\"text\"]", "[\"rank\",\"text\"]", 1),
            "table tokens has the columns".to_owned(),
        ),
        (
            "a table of no schema",
            whole.replacen(
                "\"name\":\"tokens\"",
                "\"name\":\"tokens; DROP TABLE objects\"",
                1,
            ),
            "no table `tokens; DROP TABLE objects` in this schema".to_owned(),
        ),
        (
            "not a backup",
            "kind: Room\n".to_owned(),
            "line 1".to_owned(),
        ),
    ];
    for (what, text, expected) in variants {
        let altered = source.path().join("altered.backup");
        std::fs::write(&altered, &text).expect("write");
        let target = common::TestDb::sqlite();
        let (code, _, stderr) = common::perch(&[
            "restore",
            &altered.display().to_string(),
            "--db",
            &target.url,
        ]);
        assert_eq!(code, 1, "{what}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{what}: expected {expected:?} in {stderr}"
        );
        assert!(stderr.contains("nothing was restored"), "{what}: {stderr}");
        assert!(
            !target.path().join("perch.db").exists(),
            "{what}: the database file the failed restore created is removed"
        );
    }

    // A database that holds something already is left as it is.
    let (code, _, stderr) = common::perch(&["restore", &file_text, "--db", &source.url]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("already holds rows in audit (2), tokens (2)"),
        "{stderr}"
    );
    let (code, stdout, _) = common::perch(&["token", "list", "--db", &source.url]);
    assert_eq!(code, 0);
    assert_eq!(stdout.matches("contoso.com").count(), 2, "{stdout}");

    // A SQLite backup restores into the other backend's schema too, when it runs here.
    if common::postgres_wanted() {
        let target = common::TestDb::new();
        let (code, stdout, stderr) = common::perch(&["restore", &file_text, "--db", &target.url]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("2 token(s)"), "{stdout}");
    }
}

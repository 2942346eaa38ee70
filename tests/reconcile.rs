//! The reconciler through the real binary, against both targets: the embedded store and a
//! `perch serve` over HTTP. A server always runs over the same database, so that "someone
//! changed it by hand" is a real API call in both cases.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, TestDb, TestServer};
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Via {
    Embedded,
    Http,
}

struct Harness {
    via: Via,
    db: TestDb,
    server: TestServer,
    admin: Client,
    token: String,
}

impl Harness {
    fn new(via: Via) -> Harness {
        let db = TestDb::new();
        let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
        let server = TestServer::start(&db.url);
        let admin = server.client(&token);
        Harness {
            via,
            db,
            server,
            admin,
            token,
        }
    }

    fn target_args(&self) -> Vec<String> {
        match self.via {
            Via::Embedded => vec!["--db".into(), self.db.url.clone()],
            Via::Http => vec![
                "--server".into(),
                self.server.base.clone(),
                "--token".into(),
                self.token.clone(),
            ],
        }
    }

    /// Runs `perch COMMAND ARGS... TARGET-ARGS` in the harness's directory.
    fn run(&self, command: &str, args: &[&str]) -> (i32, String, String) {
        let target = self.target_args();
        let mut all: Vec<&str> = vec![command];
        all.extend_from_slice(args);
        all.extend(target.iter().map(String::as_str));
        common::perch_in(Some(self.db.dir.path()), &all)
    }

    fn write(&self, relative: &str, text: &str) -> PathBuf {
        let path = self.db.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn examples() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .display()
        .to_string()
}

fn both(test: impl Fn(Harness)) {
    for via in [Via::Embedded, Via::Http] {
        test(Harness::new(via));
    }
}

#[test]
fn apply_then_plan_is_empty_and_export_round_trips() {
    both(|h| {
        let (code, stdout, stderr) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 0, "{:?}: {stdout}{stderr}", h.via);
        assert!(
            stdout.contains("Apply complete: 55 created, 1 changed, 0 removed"),
            "{stdout}"
        );

        let (code, stdout, _) = h.run("plan", &[&examples(), "--detailed-exitcode"]);
        assert_eq!(code, 0, "{:?}: {stdout}", h.via);
        assert!(
            stdout.ends_with("Plan: 0 to create, 0 to change, 0 to remove.\n"),
            "{stdout}"
        );

        let out = h.db.path().join("export");
        let (code, stdout, stderr) = h.run("export", &["--out", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let (code, stdout, stderr) = h.run("plan", &[out.to_str().unwrap(), "--detailed-exitcode"]);
        assert_eq!(code, 0, "{:?}: {stdout}{stderr}", h.via);
        let (code, stdout, stderr) = common::perch(&["validate", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        // Adoption of objects Perch never made: `export_of_hand_made_objects_adopts_them`.
    });
}

#[tokio::test]
async fn export_of_hand_made_objects_adopts_them() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        h.admin
            .post(
                "/v1/addins",
                json!({"name": "Board", "url": "https://board"}),
            )
            .await
            .expect(201);
        let out = h.db.path().join("export");
        let (code, ..) = h.run("export", &["--out", out.to_str().unwrap()]);
        assert_eq!(code, 0);
        let (code, stdout, _) = h.run("plan", &[out.to_str().unwrap(), "--detailed-exitcode"]);
        assert_eq!(code, 0, "{stdout}");
        // The add-in and the compliance configuration, neither made by perch.
        assert!(
            stdout
                .contains("2 unmanaged object(s) named by the manifests will be marked as managed"),
            "{stdout}"
        );
        let (code, ..) = h.run("apply", &[out.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0);
        assert_eq!(h.admin.get("/v1/addins/Board").await.body["managed"], true);
        // Now managed, it goes when the manifests drop it.
        std::fs::remove_file(out.join("addins.yaml")).unwrap();
        let (code, stdout, _) = h.run("plan", &[out.to_str().unwrap(), "--detailed-exitcode"]);
        assert_eq!(code, 2, "{stdout}");
        assert!(stdout.contains("- remove Addin \"Board\""), "{stdout}");
    }
}

#[tokio::test]
async fn drift_after_an_api_change_exits_2_naming_who() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let (code, ..) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 0);
        let (code, stdout, _) = h.run("drift", &[&examples()]);
        assert_eq!(code, 0, "{stdout}");

        let editor = h.server.client(&common::create_token(
            &h.db.url,
            "sip:editor@contoso.com",
            "admin",
        ));
        editor
            .patch("/v1/rooms/watercooler", json!({"description": "changed by hand", "members": {"add": ["sip:zed@contoso.com"]}}))
            .await
            .expect(200);
        editor.delete("/v1/rooms/social-events").await.expect(204);
        let (code, stdout, stderr) = h.run("drift", &[&examples()]);
        assert_eq!(code, 2, "{via:?}: {stdout}{stderr}");
        assert!(stdout.contains("Room \"watercooler\": description, members differ; last changed by sip:editor@contoso.com at 20"), "{stdout}");
        assert!(
            stdout.contains("Room \"social-events\": absent on the server; removed by sip:editor@contoso.com at 20"),
            "the audit trail names who removed it: {stdout}"
        );

        let (code, stdout, _) = h.run("drift", &[&examples(), "--json"]);
        assert_eq!(code, 2);
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["drifted"], true);
        assert_eq!(report["objects"].as_array().unwrap().len(), 2);
        let removed = report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|object| object["name"] == "social-events")
            .unwrap();
        assert_eq!(removed["removedBy"], "sip:editor@contoso.com");

        // An unreadable target is an error, never drift.
        let (code, _, stderr) = common::perch(&[
            "drift",
            &examples(),
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ]);
        assert_eq!(code, 1, "{stderr}");
    }
}

#[tokio::test]
async fn stale_saved_plans_are_refused() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let plan_file = h.db.path().join("plan.json");
        let (code, ..) = h.run("plan", &[&examples(), "--out", plan_file.to_str().unwrap()]);
        assert_eq!(code, 0);
        // Someone creates a category the plan meant to create.
        h.admin
            .post("/v1/categories", json!({"name": "Legal"}))
            .await
            .expect(201);
        let (code, stdout, stderr) =
            h.run("apply", &["--plan", plan_file.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stderr.contains("the saved plan is stale"), "{stderr}");
        assert!(
            stderr.contains("Category `Legal`: absent when planned, version 1 now"),
            "{stderr}"
        );
        assert_eq!(
            h.admin.get("/v1/rooms").await.body["items"],
            json!([]),
            "nothing was applied"
        );

        // A fresh saved plan applies.
        let (code, ..) = h.run("plan", &[&examples(), "--out", plan_file.to_str().unwrap()]);
        assert_eq!(code, 0);
        let (code, stdout, stderr) =
            h.run("apply", &["--plan", plan_file.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let (code, ..) = h.run("plan", &[&examples(), "--detailed-exitcode"]);
        assert_eq!(code, 0);
    }
}

#[tokio::test]
async fn concurrent_applies_are_refused_naming_the_holder() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        h.admin
            .post(
                "/v1/locks/apply",
                json!({"holder": "ci@build-7 (pid 42)", "ttlSeconds": 600}),
            )
            .await
            .expect(200);
        let (code, stdout, stderr) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stderr.contains("another apply is running"), "{stderr}");
        assert!(stderr.contains("ci@build-7 (pid 42)"), "{stderr}");
        assert_eq!(h.admin.get("/v1/categories").await.body["items"], json!([]));
        h.admin
            .delete("/v1/locks/apply?holder=ci%40build-7%20(pid%2042)")
            .await
            .expect(204);

        // Two applies at once: exactly one runs; the other fails at once.
        let first = std::thread::scope(|scope| {
            let a = scope.spawn(|| h.run("apply", &[&examples(), "--yes"]));
            let b = scope.spawn(|| h.run("apply", &[&examples(), "--yes"]));
            [a.join().unwrap(), b.join().unwrap()]
        });
        // Either the second found the lock taken and said by whom, or it ran after the first
        // had finished and found nothing left to do: never do both carry out the plan.
        let mut created = 0;
        for (code, stdout, stderr) in &first {
            match code {
                0 => {
                    let count = stdout
                        .split("Apply complete: ")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|count| count.parse::<u32>().ok());
                    created += count.unwrap_or(0);
                }
                1 => assert!(stderr.contains("another apply is running"), "{stderr}"),
                other => panic!("apply exited {other}: {stdout}{stderr}"),
            }
        }
        assert_eq!(created, 55, "{first:?}");
        let (code, ..) = h.run("plan", &[&examples(), "--detailed-exitcode"]);
        assert_eq!(code, 0);
    }
}

#[test]
fn apply_without_a_terminal_or_yes_refuses() {
    both(|h| {
        let (code, _, stderr) = h.run("apply", &[&examples()]);
        assert_eq!(code, 1);
        assert!(
            stderr.contains("refusing to apply without --yes"),
            "{stderr}"
        );
        let (code, ..) = h.run("plan", &[&examples(), "--detailed-exitcode"]);
        assert_eq!(code, 2, "nothing was applied");
    });
}

const BASE: &str = "apiVersion: perch/v1\nkind: Category\nname: C\nallowedMembers: [domain:contoso.com]\n---\napiVersion: perch/v1\nkind: Room\nname: r1\ncategory: C\n";

#[tokio::test]
async fn a_failed_action_stops_the_apply_and_plan_shows_the_rest() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let manifests = h.write("m/all.yaml", BASE);
        let (code, ..) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0);
        // A room made by hand keeps the category from being removed.
        h.admin
            .post("/v1/rooms", json!({"name": "by-hand", "category": "C"}))
            .await
            .expect(201);
        h.write(
            "m/all.yaml",
            "apiVersion: perch/v1\nkind: Addin\nname: Board\nurl: https://board\n",
        );
        let (code, stdout, stderr) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(
            stderr.contains("apply stopped at `remove Category \"C\"`"),
            "{stderr}"
        );
        assert!(stderr.contains("category_not_empty"), "{stderr}");
        assert!(
            stderr.contains("done (2):\n  create Addin \"Board\"\n  remove Room \"r1\""),
            "{stderr}"
        );
        let (code, stdout, _) = h.run(
            "plan",
            &[manifests.to_str().unwrap(), "--detailed-exitcode"],
        );
        assert_eq!(code, 2);
        assert!(stdout.contains("- remove Category \"C\""), "{stdout}");
        assert!(
            stdout.contains("Plan: 0 to create, 0 to change, 1 to remove."),
            "{stdout}"
        );
    }
}

/// A saved plan's creations meet a name taken since (by another spelling, so the plan is not
/// stale): the apply stops at that room, keeps the ones before it and names the rest. On the
/// embedded store the rooms are written together, which must not blur where it stopped.
#[tokio::test]
async fn a_name_taken_since_the_plan_stops_the_apply_at_that_room() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let category =
            "apiVersion: perch/v1\nkind: Category\nname: C\nallowedMembers: [domain:contoso.com]\n";
        let mut rooms = String::new();
        for name in ["r1", "r2", "r3", "r4"] {
            rooms.push_str(&format!(
                "---\napiVersion: perch/v1\nkind: Room\nname: {name}\ncategory: C\n"
            ));
        }
        let manifests = h.write("m/all.yaml", category);
        let (code, ..) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0);
        h.write("m/all.yaml", &format!("{category}{rooms}"));
        let saved = h.db.path().join("plan.json");
        let (code, stdout, stderr) = h.run(
            "plan",
            &[
                manifests.to_str().unwrap(),
                "--out",
                saved.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stdout}{stderr}");
        h.admin
            .post("/v1/rooms", json!({"name": "R2", "category": "C"}))
            .await
            .expect(201);
        let (code, stdout, stderr) = h.run("apply", &["--plan", saved.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 1, "{via:?}: {stdout}{stderr}");
        assert!(
            stderr.contains("apply stopped at `create Room \"r2\"`")
                && stderr.contains("already_exists"),
            "{via:?}: {stderr}"
        );
        assert!(
            stderr.contains("done (1):\n  create Room \"r1\"\n"),
            "{via:?}: {stderr}"
        );
        assert!(
            stderr.contains("not done (3)")
                && stderr.contains("create Room \"r3\"")
                && stderr.contains("create Room \"r4\""),
            "{via:?}: {stderr}"
        );
        let listed = h.admin.get("/v1/rooms").await.expect(200).body;
        let names: Vec<&str> = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|room| room["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["R2", "r1"], "{via:?}");
    }
}

#[test]
fn removing_a_protected_object_fails_the_plan() {
    both(|h| {
        let manifests = h.write("m/all.yaml", &format!("{BASE}protect: true\n"));
        let (code, ..) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0);
        h.write(
            "m/all.yaml",
            "apiVersion: perch/v1\nkind: Category\nname: C\n",
        );
        let (code, _, stderr) = h.run("plan", &[manifests.to_str().unwrap()]);
        assert_eq!(code, 1);
        assert!(
            stderr.contains("the plan would remove protected objects: Room `r1`"),
            "{stderr}"
        );
        // Forgetting it on purpose lets go of it, protection and all, and keeps it.
        h.write(
            "m/all.yaml",
            "apiVersion: perch/v1\nkind: Category\nname: C\n---\napiVersion: perch/v1\nkind: Forget\nobject: Room/r1\n",
        );
        let (code, stdout, stderr) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(stdout.contains("1 forgotten"), "{stdout}");
        h.write(
            "m/all.yaml",
            "apiVersion: perch/v1\nkind: Category\nname: C\n",
        );
        let (code, stdout, stderr) = h.run(
            "plan",
            &[manifests.to_str().unwrap(), "--detailed-exitcode"],
        );
        assert_eq!(
            code, 0,
            "the forgotten room is left alone: {stdout}{stderr}"
        );
    });
}

#[test]
fn plan_json_and_markdown() {
    both(|h| {
        let (code, stdout, _) = h.run("plan", &[&examples(), "--json", "--detailed-exitcode"]);
        assert_eq!(code, 2);
        let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(plan["formatVersion"], 1);
        assert_eq!(plan["summary"]["create"], 55);
        assert_eq!(plan["actions"][0]["action"], "create");
        assert_eq!(plan["actions"][0]["kind"], "Group");

        let (code, stdout, _) = h.run("plan", &[&examples(), "--markdown"]);
        assert_eq!(code, 0);
        assert!(stdout.starts_with("### Perch plan for "), "{stdout}");
        assert!(stdout.contains("**Plan: 55 to create, 1 to change, 0 to remove.**"));
        assert!(
            stdout.contains("<details><summary><code>+ create Room \"eng-news\"</code>"),
            "{stdout}"
        );
        assert!(stdout.len() < 65_000);
    });
}

#[tokio::test]
async fn plan_and_drift_print_stored_text_inert() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let (code, ..) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 0);
        // What a room manager could store: a screen clear, a carriage return forging a line, a
        // bell and a bidi override.
        h.admin
            .patch(
                "/v1/rooms/watercooler",
                json!({"description": "\u{1b}[2J\rPlan: 0 to create, 0 to change, 0 to remove.\u{7}\u{202e}"}),
            )
            .await
            .expect(200);
        for command in ["plan", "drift"] {
            let (code, stdout, stderr) = h.run(command, &[&examples()]);
            assert!(code == 0 || code == 2, "{command}: {stdout}{stderr}");
            for raw in ['\u{1b}', '\r', '\u{7}', '\u{202e}'] {
                assert!(
                    !stdout.contains(raw),
                    "{command} printed {raw:?}: {stdout:?}"
                );
            }
            if command == "plan" {
                // JSON quoting escapes the controls; the bidi override is escaped after it.
                assert!(
                    stdout.contains(r#""\u001b[2J\rPlan: 0 to create"#),
                    "{stdout}"
                );
                assert!(stdout.contains("\\u{202e}"), "{stdout}");
            }
        }
        let (_, markdown, _) = h.run("plan", &[&examples(), "--markdown"]);
        assert!(
            !markdown.contains('\u{1b}') && !markdown.contains('\u{202e}'),
            "{markdown:?}"
        );
    }
}

#[tokio::test]
async fn a_dead_appliers_lock_heals_and_perch_unlock_breaks_any() {
    let host = std::fs::read_to_string("/etc/hostname")
        .map_or_else(|_| "localhost".to_owned(), |h| h.trim().to_owned());
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        // An apply on this host, in this PID namespace, that was killed: its pid is gone.
        let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
        let dead = format!("ana@{host} (pid 999999999 in {})", namespace.display());
        h.admin
            .post(
                "/v1/locks/apply",
                json!({"holder": dead, "ttlSeconds": 600}),
            )
            .await
            .expect(200);
        let (code, stdout, stderr) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!(
                "took over the apply lock from {dead}, whose process is gone"
            )),
            "{stderr}"
        );

        // One elsewhere cannot be proved dead: refused, pointing at `perch unlock`.
        h.admin
            .post(
                "/v1/locks/apply",
                json!({"holder": "ci@another-host (pid 7)", "ttlSeconds": 600}),
            )
            .await
            .expect(200);
        let (code, _, stderr) = h.run("plan", &[&examples()]);
        assert_eq!(code, 0, "plan takes no lock: {stderr}");
        let (code, _, stderr) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 1);
        assert!(
            stderr.contains("`perch unlock` breaks the lock"),
            "{stderr}"
        );
        let (code, stdout, stderr) = h.run("unlock", &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("broke the apply lock")
                && stdout.contains("held by ci@another-host (pid 7)"),
            "{stdout}"
        );
        let (code, stdout, _) = h.run("unlock", &[]);
        assert_eq!(code, 0);
        assert!(stdout.contains("nobody holds the apply lock"), "{stdout}");
        let (code, stdout, stderr) = h.run("apply", &[&examples(), "--yes"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        // Breaking is on the record.
        let trail = h
            .admin
            .get("/v1/audit?kind=Lock&action=unlock")
            .await
            .expect(200)
            .body;
        assert!(trail.to_string().contains("\"broken\":true"), "{trail:#}");
    }
}

/// A deleted directory in a pull request must not empty the server: `--max-remove`, or
/// `maxRemove` in the manifests' perch.yaml, refuses plans that remove more.
#[test]
fn max_remove_refuses_plans_that_remove_too_much() {
    let db = common::TestDb::sqlite();
    let dir = db.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let mut all = String::from(
        "apiVersion: perch/v1\nkind: Category\nname: Eng\nallowedMembers: [domain:contoso.com]\n",
    );
    for room in ["a", "b", "c"] {
        all.push_str(&format!(
            "---\napiVersion: perch/v1\nkind: Room\nname: {room}\ncategory: Eng\n"
        ));
    }
    std::fs::write(dir.join("all.yaml"), &all).unwrap();
    let manifests = dir.display().to_string();
    let (code, _, stderr) = common::perch(&["apply", "--db", &db.url, "--yes", &manifests]);
    assert_eq!(code, 0, "{stderr}");
    // Two rooms leave the manifests.
    std::fs::write(
        dir.join("all.yaml"),
        all.split("---\n").take(2).collect::<Vec<_>>().join("---\n"),
    )
    .unwrap();
    let (code, _, stderr) =
        common::perch(&["plan", "--db", &db.url, "--max-remove", "1", &manifests]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("the plan removes 2 object(s), more than 1 (--max-remove)"),
        "{stderr}"
    );
    std::fs::write(dir.join("perch.yaml"), "maxRemove: 1\n").unwrap();
    let (code, _, stderr) = common::perch(&["apply", "--db", &db.url, "--yes", &manifests]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("more than 1 (maxRemove in"), "{stderr}");
    let (code, stdout, _) = common::perch(&[
        "plan",
        "--db",
        &db.url,
        "--detailed-exitcode",
        "--max-remove",
        "5",
        &manifests,
    ]);
    assert_eq!(
        code, 2,
        "the flag overrides perch.yaml; perch.yaml is not read as a manifest:\n{stdout}"
    );
    assert!(
        stdout.contains("Plan: 0 to create, 0 to change, 2 to remove."),
        "{stdout}"
    );
}

/// The manifests of the lifecycle tests: a group, an add-in, a category and two rooms, the
/// first with additive members.
const LIFECYCLE: &str = "apiVersion: perch/v1
kind: Group
name: eng
members: [sip:ana@contoso.com]
---
apiVersion: perch/v1
kind: Addin
name: Board
url: https://board.contoso.com
---
apiVersion: perch/v1
kind: Category
name: Eng
description: engineering
allowedMembers: [domain:contoso.com, group:eng]
---
apiVersion: perch/v1
kind: Room
name: r1
category: Eng
addin: Board
members: [group:eng, sip:bob@contoso.com]
managers: [sip:ana@contoso.com]
membership:
  members: additive
---
apiVersion: perch/v1
kind: Room
name: r2
category: Eng
description: second
ignoreFields: [description]
members: [sip:bob@contoso.com]
";

/// The same, every object renamed with `previousNames`.
fn renamed(manifests: &str) -> String {
    manifests
        .replace("name: eng\n", "name: engineers\npreviousNames: [eng]\n")
        .replace("group:eng", "group:engineers")
        .replace("name: Board\n", "name: Dash\npreviousNames: [Board]\n")
        .replace("addin: Board", "addin: Dash")
        .replace("name: Eng\n", "name: Engineering\npreviousNames: [Eng]\n")
        .replace("category: Eng\n", "category: Engineering\n")
        .replace("name: r1\n", "name: r1-new\npreviousNames: [r1]\n")
}

async fn message_ids(client: &Client, room: &str) -> Vec<i64> {
    let page = client
        .get(&format!("/v1/rooms/{room}/messages"))
        .await
        .expect(200)
        .body;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|message| message["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn renames_keep_history_and_ids_and_forgotten_objects_stay() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let manifests = h.write("m/all.yaml", LIFECYCLE);
        let m = manifests.to_str().unwrap();
        let (code, stdout, stderr) = h.run("apply", &[m, "--yes"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");
        let bob = h.server.client(&common::create_token(
            &h.db.url,
            "sip:bob@contoso.com",
            "user",
        ));
        for text in ["one", "two"] {
            bob.post("/v1/rooms/r1/messages", json!({"body": text}))
                .await
                .expect(201);
        }
        let before = message_ids(&h.admin, "r1").await;
        let id = h.admin.get("/v1/rooms/r1").await.expect(200).body["id"].clone();

        h.write("m/all.yaml", &renamed(LIFECYCLE));
        let (code, stdout, stderr) = h.run("plan", &[m, "--detailed-exitcode"]);
        assert_eq!(code, 2, "{via:?}: {stdout}{stderr}");
        for line in [
            "~ rename Group \"engineers\"  (from \"eng\"; name differs)",
            "~ rename Addin \"Dash\"  (from \"Board\"; name differs)",
            "~ rename Category \"Engineering\"  (from \"Eng\"; name differs)",
            "~ rename Room \"r1-new\"  (from \"r1\"; name differs)",
            "Plan: 0 to create, 4 to change, 0 to remove.",
        ] {
            assert!(stdout.contains(line), "{via:?}: {line}\n{stdout}");
        }
        assert!(
            !stdout.contains("- remove"),
            "a rename removes nothing: {stdout}"
        );
        // Carried out from a saved plan, in format 2 (which an older perch refuses rather
        // than misreads).
        let saved = h.db.path().join("renames.json");
        let saved = saved.to_str().unwrap();
        let (code, ..) = h.run("plan", &[m, "--out", saved]);
        assert_eq!(code, 0);
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
        assert_eq!(plan["formatVersion"], 2);
        assert_eq!(plan["actions"][3]["renamedFrom"], "r1");
        let (code, stdout, stderr) = h.run("apply", &["--plan", saved, "--yes"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");
        let room = h.admin.get("/v1/rooms/r1-new").await.expect(200).body;
        assert_eq!(room["id"], id, "the same room");
        assert_eq!(room["category"], "Engineering");
        assert_eq!(room["addin"], "Dash");
        assert!(
            room["members"]
                .as_array()
                .unwrap()
                .contains(&json!("group:engineers")),
            "{room}"
        );
        assert_eq!(
            message_ids(&h.admin, "r1-new").await,
            before,
            "history kept"
        );
        h.admin.get("/v1/rooms/r1").await.expect(404);
        let (code, stdout, _) = h.run("plan", &[m, "--detailed-exitcode"]);
        assert_eq!(code, 0, "{via:?}: renamed, the plan is empty:\n{stdout}");

        // Forgetting lets go of r2 and keeps it, through the next applies.
        let without_r2 = renamed(LIFECYCLE)
            .split("---\n")
            .take(4)
            .collect::<Vec<_>>()
            .join("---\n");
        h.write(
            "m/all.yaml",
            &format!("{without_r2}---\napiVersion: perch/v1\nkind: Forget\nobject: Room/r2\n"),
        );
        let (code, stdout, _) = h.run("plan", &[m, "--detailed-exitcode"]);
        assert_eq!(code, 2, "{stdout}");
        assert!(
            stdout.contains(". forget Room \"r2\"  (a Forget document lets go of it"),
            "{stdout}"
        );
        assert!(stdout.contains("0 to remove. 1 to forget"), "{stdout}");
        let (code, stdout, _) = h.run("apply", &[m, "--yes"]);
        assert_eq!(code, 0, "{stdout}");
        assert!(stdout.contains("1 forgotten"), "{stdout}");
        let r2 = h.admin.get("/v1/rooms/r2").await.expect(200).body;
        assert_eq!(r2["managed"], false, "{r2}");
        h.write("m/all.yaml", &without_r2);
        let (code, stdout, _) = h.run("apply", &[m, "--yes"]);
        assert_eq!(code, 0, "{stdout}");
        h.admin.get("/v1/rooms/r2").await.expect(200);

        // `perch forget` does the same at once.
        let (code, stdout, stderr) = h.run("forget", &["Room/r1-new"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");
        assert_eq!(
            h.admin.get("/v1/rooms/r1-new").await.expect(200).body["managed"],
            false
        );
        let (code, stdout, _) = h.run("forget", &["Room/r1-new"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("nothing to forget"), "{stdout}");
        let (code, _, stderr) = h.run("forget", &["Rooms/x"]);
        assert_eq!(code, 1, "{stderr}");
    }
}

#[tokio::test]
async fn additive_lists_ignored_fields_message_counts_policies_and_targets() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let manifests = h.write("m/all.yaml", LIFECYCLE);
        let file = manifests.to_str().unwrap();
        // The directory, whose perch.yaml is the repository's settings.
        let dir = manifests.parent().unwrap().to_str().unwrap().to_owned();
        let m = dir.as_str();
        let (code, stdout, stderr) = h.run("apply", &[m, "--yes"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");

        // Someone adds a member by hand and edits fields the repository leaves alone.
        h.admin
            .patch(
                "/v1/rooms/r1",
                json!({"members": {"add": ["sip:hand@contoso.com"]}}),
            )
            .await
            .expect(200);
        h.admin
            .patch("/v1/rooms/r2", json!({"description": "by hand"}))
            .await
            .expect(200);
        h.admin
            .patch("/v1/categories/Eng", json!({"description": "by hand"}))
            .await
            .expect(200);
        let (code, stdout, _) = h.run("drift", &[m]);
        assert_eq!(code, 2, "the category's description is managed: {stdout}");
        assert!(
            stdout.contains("Category \"Eng\": description differs"),
            "{stdout}"
        );
        assert!(!stdout.contains("Room"), "{stdout}");
        h.write("m/perch.yaml", "ignoreFields:\n  Category: [description]\n");
        let (code, stdout, _) = h.run("drift", &[m]);
        assert_eq!(code, 0, "{via:?}: {stdout}");
        let (code, ..) = h.run("apply", &[m, "--yes"]);
        assert_eq!(code, 0);
        let r1 = h.admin.get("/v1/rooms/r1").await.expect(200).body;
        assert!(
            r1["members"]
                .as_array()
                .unwrap()
                .contains(&json!("sip:hand@contoso.com")),
            "an additive list keeps who was added by hand: {r1}"
        );
        assert_eq!(
            h.admin.get("/v1/rooms/r2").await.expect(200).body["description"],
            "by hand"
        );

        // A removed room says what it takes with it.
        let bob = h.server.client(&common::create_token(
            &h.db.url,
            "sip:bob@contoso.com",
            "user",
        ));
        for text in ["one", "two", "three"] {
            bob.post("/v1/rooms/r2/messages", json!({"body": text}))
                .await
                .expect(201);
        }
        let without_r2 = LIFECYCLE
            .split("---\n")
            .take(4)
            .collect::<Vec<_>>()
            .join("---\n");
        h.write("m/all.yaml", &without_r2);
        let (code, stdout, stderr) = h.run("plan", &[m]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("- remove Room \"r2\"  (managed by perch and no longer in the manifests; deletes 3 message(s) of its history)"),
            "{via:?}: {stdout}"
        );
        assert!(
            stdout.contains("0 to remove.".replace('0', "1").as_str())
                && stdout.contains("The removals delete 3 message(s)."),
            "{stdout}"
        );
        let (_, json_plan, _) = h.run("plan", &[m, "--json"]);
        let json_plan: serde_json::Value = serde_json::from_str(&json_plan).unwrap();
        assert_eq!(json_plan["summary"]["removedMessages"], 3);

        // Policies: deny fails the plan, placed at file:line:column; warn only prints.
        let policy = h.write(
            "policy.yaml",
            "rules:\n  - rule: maxMessagesRemoved\n    max: 2\n    level: deny\n  - rule: roomsHaveAManager\n    level: warn\n",
        );
        let policy = policy.to_str().unwrap();
        let (code, _, stderr) = h.run("plan", &[m, "--policy", policy]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("{policy}:2:5: deny (maxMessagesRemoved): the plan removes Room \"r2\", which holds 3 message(s), more than 2")),
            "{stderr}"
        );
        assert!(
            stderr.contains("the plan breaks 1 deny rule(s)"),
            "{stderr}"
        );
        h.write("m/all.yaml", LIFECYCLE);
        let (code, _, stderr) = h.run("plan", &[m, "--policy", policy]);
        assert_eq!(code, 0, "a warning only: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{file}:27:1: warn (roomsHaveAManager): Room \"r2\" names no manager"
            )),
            "{stderr}"
        );

        // Targeting: one room, and the category it needs, said.
        h.write(
            "m/all.yaml",
            &LIFECYCLE
                .replace("name: Eng\n", "name: Eng2\n")
                .replace("category: Eng\n", "category: Eng2\n"),
        );
        let (code, stdout, stderr) = h.run("plan", &[m, "--target", "Room/r2"]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("+ create Category \"Eng2\""), "{stdout}");
        assert!(stdout.contains("~ set Room \"r2\""), "{stdout}");
        assert!(!stdout.contains("Room \"r1\""), "{stdout}");
        assert!(
            stderr.contains("note: also planned, as it is needed: create Category \"Eng2\", it is used (set Room \"r2\")"),
            "{stderr}"
        );
        // --quiet: the same plan on stdout, and no notes.
        let (code, quiet_stdout, stderr) = h.run("plan", &[m, "--target", "Room/r2", "--quiet"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(quiet_stdout, stdout);
        assert!(stderr.is_empty(), "{stderr}");
        let (code, _, stderr) = h.run(
            "plan",
            &[m, "--target", "Room/r*", "--exclude", "Category/*"],
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("which --exclude Category/* leaves out"),
            "{stderr}"
        );
        let (code, stdout, _) = h.run("plan", &[m, "--summary"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("  Room: 2 set"), "{stdout}");
        assert!(!stdout.contains("~ set Room"), "{stdout}");
    }
}

#[tokio::test]
async fn daily_commands_list_show_and_change_lists() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let manifests = h.write("m/all.yaml", LIFECYCLE);
        let (code, ..) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0);
        let (code, stdout, _) = h.run("category", &["list"]);
        assert_eq!(code, 0);
        assert!(
            stdout.contains("Eng  2 allowed, 0 denied, 0 creator(s)"),
            "{stdout}"
        );
        let (code, stdout, _) = h.run("addin", &["show", "Board", "--json"]);
        assert_eq!(code, 0);
        let addin: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(addin["url"], "https://board.contoso.com");
        let (code, stdout, _) = h.run("group", &["list", "--json"]);
        assert_eq!(code, 0);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stdout).unwrap()[0]["name"],
            "eng"
        );
        let (code, stdout, stderr) = h.run(
            "room",
            &["members", "add", "r2", "sip:cy@contoso.com", "group:eng"],
        );
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");
        assert!(stdout.contains("it lists 3 now"), "{stdout}");
        let (code, stdout, _) = h.run("room", &["managers", "remove", "r1", "sip:ana@contoso.com"]);
        assert_eq!(code, 0, "{stdout}");
        let (code, stdout, _) = h.run("room", &["show", "r2"]);
        assert_eq!(code, 0);
        assert!(stdout.contains("members: (3)\n  - group:eng\n"), "{stdout}");
        let (code, _, stderr) = h.run("room", &["show", "nowhere"]);
        assert_eq!(code, 1);
        assert!(stderr.contains("there is no Room \"nowhere\""), "{stderr}");
        let (code, _, stderr) = h.run("room", &["members", "add", "r2", "not a principal"]);
        assert_eq!(code, 1, "{stderr}");
        let r1 = h.admin.get("/v1/rooms/r1").await.expect(200).body;
        assert_eq!(r1["managers"], json!([]), "{r1}");
    }
}

#[tokio::test]
async fn export_into_a_used_directory_replaces_its_own_files_only() {
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let manifests = h.write("m/all.yaml", LIFECYCLE);
        let (code, ..) = h.run("apply", &[manifests.to_str().unwrap(), "--yes"]);
        assert_eq!(code, 0);
        h.admin
            .post(
                "/v1/categories",
                json!({"name": "Old", "allowedMembers": ["domain:contoso.com"]}),
            )
            .await
            .expect(201);
        h.admin
            .post("/v1/rooms", json!({"name": "old-room", "category": "Old"}))
            .await
            .expect(201);
        let out = h.db.path().join("export");
        let out_text = out.to_str().unwrap();
        let (code, stdout, stderr) = h.run("export", &["--out", out_text]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(out.join("rooms-old.yaml").is_file());
        std::fs::write(out.join("README.md"), "ours\n").unwrap();
        std::fs::write(out.join("perch.yaml"), "maxRemove: 10\n").unwrap();

        h.admin.delete("/v1/rooms/old-room").await.expect(204);
        let (code, stdout, stderr) = h.run("export", &["--out", out_text]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        assert!(
            stdout.contains("removed 1 file(s) of an earlier export"),
            "{via:?}: {stdout}"
        );
        assert!(!out.join("rooms-old.yaml").exists(), "the stale file goes");
        assert_eq!(
            std::fs::read_to_string(out.join("README.md")).unwrap(),
            "ours\n"
        );
        assert!(out.join("perch.yaml").is_file());
        let (code, stdout, stderr) = h.run("plan", &[out_text, "--detailed-exitcode"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");

        // An export made before there was an index is recognised by its first line.
        std::fs::remove_file(out.join(".perch-export")).unwrap();
        h.admin.delete("/v1/rooms/r2").await.expect(204);
        h.admin.delete("/v1/rooms/r1").await.expect(204);
        let (code, stdout, _) = h.run("export", &["--out", out_text]);
        assert_eq!(code, 0);
        assert!(stdout.contains("removed 1 file(s)"), "{stdout}");
        assert!(!out.join("rooms-eng.yaml").exists());
        assert_eq!(
            std::fs::read_to_string(out.join("README.md")).unwrap(),
            "ours\n"
        );
    }
}

/// `perch plan`'s cache answers only for the same files and the same server: one byte of one
/// file, or one field changed on the server, and the plan is made afresh and shows it.
#[tokio::test]
async fn the_plan_cache_sees_one_changed_byte_and_one_changed_field() {
    const ROOMS: &str = "apiVersion: perch/v1\nkind: Category\nname: C\nallowedMembers: [domain:contoso.com]\n---\napiVersion: perch/v1\nkind: Room\nname: r1\ncategory: C\ndescription: first\n";
    for via in [Via::Embedded, Via::Http] {
        let h = Harness::new(via);
        let manifests = h.write("m/rooms.yaml", ROOMS);
        h.write(
            "m/more.yaml",
            "apiVersion: perch/v1\nkind: Room\nname: r2\ncategory: C\n",
        );
        let dir = manifests.parent().unwrap().to_str().unwrap().to_owned();
        let cache = h.db.path().join("cache").display().to_string();
        let (code, stdout, stderr) = h.run("apply", &[&dir, "--yes"]);
        assert_eq!(code, 0, "{via:?}: {stdout}{stderr}");
        let plan = || {
            h.run(
                "plan",
                &[&dir, "--detailed-exitcode", "--plan-cache", &cache],
            )
        };
        let from_cache = "note: the plan made before for these files";

        let (code, made, stderr) = plan();
        assert_eq!(code, 0, "{via:?}: {made}{stderr}");
        assert!(
            !stderr.contains(from_cache),
            "{via:?}: the first plan is made: {stderr}"
        );
        let (code, again, stderr) = plan();
        assert_eq!(code, 0);
        assert!(
            stderr.contains(from_cache),
            "{via:?}: the second comes from the cache: {stderr}"
        );
        assert_eq!(again, made, "{via:?}: and reads the same");

        // One byte of one file.
        std::fs::write(&manifests, ROOMS.replace("first", "firsT")).unwrap();
        let (code, stdout, stderr) = plan();
        assert_eq!(code, 2, "{via:?}: {stdout}{stderr}");
        assert!(!stderr.contains(from_cache), "{via:?}: {stderr}");
        assert!(
            stdout.contains("\"first\"") && stdout.contains("\"firsT\""),
            "{via:?}: {stdout}"
        );
        std::fs::write(&manifests, ROOMS).unwrap();
        let (code, _, stderr) = plan();
        assert_eq!(code, 0, "{via:?}: the files as they were: {stderr}");

        // One field on the server, changed through the API.
        h.admin
            .patch("/v1/rooms/r1", json!({"description": "by hand"}))
            .await
            .expect(200);
        let (code, stdout, stderr) = plan();
        assert_eq!(code, 2, "{via:?}: {stdout}{stderr}");
        assert!(!stderr.contains(from_cache), "{via:?}: {stderr}");
        assert!(stdout.contains("\"by hand\""), "{via:?}: {stdout}");

        // A plan that removes a room counts its messages, which change on their own: never cached.
        std::fs::remove_file(h.db.path().join("m/more.yaml")).unwrap();
        for _ in 0..2 {
            let (code, stdout, stderr) = plan();
            assert_eq!(code, 2, "{via:?}: {stdout}{stderr}");
            assert!(stdout.contains("remove Room \"r2\""), "{via:?}: {stdout}");
            assert!(!stderr.contains(from_cache), "{via:?}: {stderr}");
        }
        // The files back as they were after the change on the server: that plan, cached.
        h.write(
            "m/more.yaml",
            "apiVersion: perch/v1\nkind: Room\nname: r2\ncategory: C\n",
        );
        let (code, _, stderr) = plan();
        assert_eq!(code, 2);
        assert!(stderr.contains(from_cache), "{via:?}: {stderr}");
        // And --no-cache makes the plan afresh.
        let (_, _, stderr) = h.run("plan", &[&dir, "--no-cache"]);
        assert!(!stderr.contains(from_cache), "{via:?}: {stderr}");
    }
}

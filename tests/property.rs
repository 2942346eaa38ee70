//! Property: after `apply`, `plan` is empty, for generated organisations applied one after
//! another on the same server (so creates, changes and removes all occur), on both targets.

mod common;

use std::fmt::Write;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const USERS: [&str; 6] = ["ana", "ben", "cy", "dee", "eli", "fay"];
const PRIVACY: [&str; 3] = ["open", "closed", "secret"];
const TYPES: [&str; 2] = ["normal", "auditorium"];

#[derive(Clone, Debug)]
struct RoomSpec {
    category: usize,
    privacy: usize,
    room_type: usize,
    addin: Option<usize>,
    members: Vec<usize>,
    groups: Vec<usize>,
    description: Option<String>,
}

#[derive(Clone, Debug)]
struct Organisation {
    categories: Vec<bool>,
    groups: Vec<Vec<usize>>,
    addins: Vec<bool>,
    rooms: Vec<Option<RoomSpec>>,
}

fn organisation() -> impl Strategy<Value = Organisation> {
    let room = (
        0..3usize,
        0..3usize,
        0..2usize,
        proptest::option::of(0..2usize),
        proptest::collection::vec(0..USERS.len(), 0..5),
        proptest::collection::vec(0..2usize, 0..2),
        proptest::option::of("[a-z ]{0,12}"),
    )
        .prop_map(
            |(category, privacy, room_type, addin, members, groups, description)| RoomSpec {
                category,
                privacy,
                room_type,
                addin,
                members,
                groups,
                description,
            },
        );
    (
        proptest::collection::vec(any::<bool>(), 3),
        proptest::collection::vec(proptest::collection::vec(0..USERS.len(), 0..4), 2),
        proptest::collection::vec(any::<bool>(), 2),
        proptest::collection::vec(proptest::option::of(room), 6),
    )
        .prop_map(|(categories, groups, addins, rooms)| Organisation {
            categories,
            groups,
            addins,
            rooms,
        })
}

/// Writes the organisation as manifests, keeping only what its references allow.
fn manifests(org: &Organisation) -> String {
    let mut out = String::new();
    let doc = |out: &mut String, kind: &str| {
        let _ = write!(out, "---\napiVersion: perch/v1\nkind: {kind}\n");
    };
    for (index, members) in org.groups.iter().enumerate() {
        doc(&mut out, "Group");
        let list: Vec<String> = members
            .iter()
            .map(|m| format!("sip:{}@contoso.com", USERS[*m]))
            .collect();
        let _ = writeln!(out, "name: team-{index}\nmembers: [{}]", list.join(", "));
    }
    for (index, present) in org.addins.iter().enumerate() {
        if *present {
            doc(&mut out, "Addin");
            let _ = writeln!(
                out,
                "name: addin-{index}\nurl: https://addin-{index}.contoso.com"
            );
        }
    }
    for (index, present) in org.categories.iter().enumerate() {
        if *present {
            doc(&mut out, "Category");
            let _ = writeln!(
                out,
                "name: cat-{index}\nallowedMembers: [domain:contoso.com]\ndeniedMembers: [sip:mallory@contoso.com]\ninvitations: {}",
                index % 2 == 0
            );
        }
    }
    for (index, room) in org.rooms.iter().enumerate() {
        let Some(room) = room else { continue };
        if !org.categories[room.category] {
            continue;
        }
        doc(&mut out, "Room");
        let _ = writeln!(
            out,
            "name: room-{index}\ncategory: cat-{}\nprivacy: {}\ntype: {}",
            room.category, PRIVACY[room.privacy], TYPES[room.room_type]
        );
        match room.addin {
            Some(addin) if org.addins[addin] => {
                let _ = writeln!(out, "addin: addin-{addin}");
            }
            _ => {
                let _ = writeln!(out, "addin: null");
            }
        }
        if let Some(description) = &room.description {
            let _ = writeln!(out, "description: \"{description}\"");
        }
        let mut members: Vec<String> = room
            .members
            .iter()
            .map(|m| format!("SIP:{}@Contoso.com", USERS[*m]))
            .collect();
        members.extend(room.groups.iter().map(|g| format!("group:team-{g}")));
        let _ = writeln!(out, "members: [{}]", members.join(", "));
        if let Some(first) = room.members.first() {
            let _ = writeln!(out, "presenters: [sip:{}@contoso.com]", USERS[*first]);
        }
    }
    out
}

fn check_target(via_http: bool) {
    let db = common::TestDb::new();
    let token = common::create_token(&db.url, "sip:admin@contoso.com", "admin");
    let server = common::TestServer::start(&db.url);
    let target: Vec<String> = if via_http {
        vec![
            "--server".into(),
            server.base.clone(),
            "--token".into(),
            token,
        ]
    } else {
        vec!["--db".into(), db.url.clone()]
    };
    let file = db.path().join("org.yaml");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(target.iter().map(String::as_str));
        common::perch(&all)
    };
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&organisation(), |org| {
            let text = manifests(&org);
            std::fs::write(&file, &text).unwrap();
            let path = file.to_str().unwrap();
            let (code, stdout, stderr) = run(&["apply", path, "--yes"]);
            prop_assert_eq!(code, 0, "apply failed:\n{}\n{}{}", text, stdout, stderr);
            let (code, stdout, stderr) = run(&["plan", path, "--detailed-exitcode"]);
            prop_assert_eq!(
                code,
                0,
                "plan after apply is not empty:\n{}\n{}{}",
                text,
                stdout,
                stderr
            );
            let (code, stdout, _) = run(&["drift", path]);
            prop_assert_eq!(code, 0, "drift after apply:\n{}", stdout);
            Ok::<(), TestCaseError>(())
        })
        .unwrap();
}

#[test]
fn after_apply_plan_is_empty_embedded() {
    check_target(false);
}

#[test]
fn after_apply_plan_is_empty_over_http() {
    check_target(true);
}

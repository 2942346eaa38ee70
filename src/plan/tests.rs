//! The plan engine, data-driven: manifests (through the real loader, the only way to build a
//! desired state) and a live state (as `/v1/state` shows it) in, the plan as text out.

use std::fmt::Write;

use expect_test::{Expect, expect};
use serde_json::{Value, json};

use super::*;

/// Plans `manifests` (YAML, `apiVersion` and `---` added per document) against `live` (a JSON
/// array of objects as shown), and compares the plan's text with `expected`.
#[allow(
    clippy::needless_pass_by_value,
    reason = "the table reads as values: json!(...) and expect![...]"
)]
fn check(manifests: &str, live: Value, expected: Expect) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("m.yaml");
    let mut text = String::new();
    for document in manifests.split("\n\n").filter(|d| !d.trim().is_empty()) {
        let _ = write!(text, "---\napiVersion: perch/v1\n{}\n", document.trim());
    }
    std::fs::write(&file, text).expect("manifest written");
    let desired = match crate::manifest::load(&[file]) {
        Ok(desired) => desired,
        Err(problems) => panic!("manifests invalid: {problems:#?}"),
    };
    let Value::Array(objects) = live else {
        panic!("live is an array of objects")
    };
    let objects = objects
        .into_iter()
        .map(|object| match object {
            Value::Object(fields) => fields,
            _ => panic!("live objects are objects"),
        })
        .collect();
    let live = Live::from_shown(objects).expect("live state readable");
    let shown = match plan(&desired, &live) {
        Ok(plan) => render(&plan),
        Err(error) => format!("error: {error}\n"),
    };
    expected.assert_eq(&shown);
}

fn render(plan: &Plan) -> String {
    let mut out = String::new();
    for action in &plan.actions {
        let version = action
            .expected_version
            .map_or(String::new(), |version| format!(" @{version}"));
        let _ = writeln!(out, "{action}{version}: {}", action.reason);
        for change in &action.changes {
            let _ = write!(out, "    {}", change.field);
            if !change.added.is_empty() || !change.removed.is_empty() {
                let _ = write!(out, " +{:?} -{:?}", change.added, change.removed);
            }
            if let Some(to) = &change.to {
                let from = change
                    .from
                    .as_ref()
                    .map_or("-".to_owned(), Value::to_string);
                let _ = write!(out, " {from} -> {to}");
            }
            out.push('\n');
        }
    }
    let summary = plan.summary;
    let _ = writeln!(
        out,
        "create {} change {} remove {} adopt {} unmanaged {}",
        summary.create, summary.change, summary.remove, summary.adopt, summary.unmanaged
    );
    out
}

/// A live object as shown, managed, at version 3.
fn shown(kind: &str, fields: Value) -> Value {
    shown_with(kind, fields, true, false)
}

fn shown_with(kind: &str, fields: Value, managed: bool, protect: bool) -> Value {
    let mut object = fields;
    object["kind"] = json!(kind);
    object["id"] = json!(7);
    object["version"] = json!(3);
    object["managed"] = json!(managed);
    object["protect"] = json!(protect);
    object["updatedBy"] = json!("sip:hand@contoso.com");
    object["updatedAt"] = json!("2026-01-01T00:00:00Z");
    object
}

#[test]
fn creates_in_dependency_order() {
    check(
        "
kind: Room
name: r
category: c
addin: a

kind: Category
name: c
allowedMembers: [group:outer]

kind: Addin
name: a
url: https://a.example

kind: Group
name: outer
members: [group:inner]

kind: Group
name: inner
members: [sip:x@y.com]
",
        json!([]),
        expect![[r#"
            create Group "inner": absent on the server
                members +["sip:x@y.com"] -[]
            create Group "outer": absent on the server
                members +["group:inner"] -[]
            create Addin "a": absent on the server
                url - -> "https://a.example"
            create Category "c": absent on the server
                allowedMembers +["group:outer"] -[]
            create Room "r": absent on the server
                addin - -> "a"
                category - -> "c"
            create 5 change 0 remove 0 adopt 0 unmanaged 0
        "#]],
    );
}

#[test]
fn removes_what_it_manages_in_reverse_order_and_leaves_the_rest() {
    check(
        "",
        json!([
            shown("Room", json!({"name": "r", "category": "c"})),
            shown("Category", json!({"name": "c"})),
            shown("Addin", json!({"name": "a", "url": "https://a.example"})),
            shown(
                "Group",
                json!({"name": "outer", "members": ["group:inner"]})
            ),
            shown("Group", json!({"name": "inner"})),
            shown_with("Group", json!({"name": "by-hand"}), false, false),
        ]),
        expect![[r#"
            remove Room "r" @3: managed by perch and no longer in the manifests
            remove Category "c" @3: managed by perch and no longer in the manifests
            remove Addin "a" @3: managed by perch and no longer in the manifests
            remove Group "outer" @3: managed by perch and no longer in the manifests
            remove Group "inner" @3: managed by perch and no longer in the manifests
            create 0 change 0 remove 5 adopt 0 unmanaged 1
        "#]],
    );
}

#[test]
fn lists_compare_as_sets_and_unnamed_fields_are_left_alone() {
    check(
        "
kind: Category
name: c

kind: Room
name: r
category: c
members: [sip:a@x.com, sip:b@x.com]
",
        json!([
            shown("Category", json!({"name": "c"})),
            shown(
                "Room",
                json!({"name": "r", "category": "c", "description": "by hand",
                       "members": ["SIP:B@x.com", "sip:a@x.com", "sip:a@x.com"]})
            ),
        ]),
        expect![[r"
            create 0 change 0 remove 0 adopt 0 unmanaged 0
        "]],
    );
}

#[test]
fn changes_list_each_field_and_keep_the_ones_not_named() {
    check(
        "
kind: Category
name: c

kind: Room
name: r
category: c
members: [sip:a@x.com]
privacy: secret
",
        json!([
            shown("Category", json!({"name": "c"})),
            shown(
                "Room",
                json!({"name": "r", "category": "c", "description": "kept",
                       "privacy": "closed", "members": ["sip:b@x.com"]})
            ),
        ]),
        expect![[r#"
            set Room "r" @3: members, privacy differ
                members +["sip:a@x.com"] -["sip:b@x.com"]
                privacy "closed" -> "secret"
            create 0 change 1 remove 0 adopt 0 unmanaged 0
        "#]],
    );
}

#[test]
fn named_unmanaged_objects_are_adopted_and_others_counted() {
    check(
        "
kind: Addin
name: named
url: https://a.example
",
        json!([
            shown_with(
                "Addin",
                json!({"name": "named", "url": "https://a.example"}),
                false,
                false
            ),
            shown_with(
                "Addin",
                json!({"name": "other", "url": "https://b.example"}),
                false,
                false
            ),
        ]),
        expect![[r#"
            adopt Addin "named" @3: not yet managed by perch: adopt it
            create 0 change 0 remove 0 adopt 1 unmanaged 1
        "#]],
    );
}

#[test]
fn protection_is_a_change_of_its_own() {
    check(
        "
kind: Group
name: g
protect: true
",
        json!([shown("Group", json!({"name": "g"}))]),
        expect![[r#"
            adopt Group "g" @3: protection differs
            create 0 change 0 remove 0 adopt 1 unmanaged 0
        "#]],
    );
}

#[test]
fn removing_a_protected_object_fails_naming_it() {
    check(
        "",
        json!([shown_with(
            "Room",
            json!({"name": "keep-me", "category": "c"}),
            true,
            true
        )]),
        expect![[r"
            error: the plan would remove protected objects: Room `keep-me`
        "]],
    );
}

#[test]
fn compliance_never_set_is_planned_against_its_defaults() {
    check(
        "
kind: ComplianceConfiguration
enabled: true
adapterOutputDirectory: /archive
",
        json!([]),
        expect![[r#"
            set ComplianceConfiguration @0: adapterOutputDirectory, enabled differ
                adapterOutputDirectory "" -> "/archive"
                enabled false -> true
            create 0 change 1 remove 0 adopt 0 unmanaged 0
        "#]],
    );
}

#[test]
fn reasons_read_back_from_their_text() {
    for reason in [
        Reason::Absent,
        Reason::NoLongerInManifests,
        Reason::NotYetManaged,
        Reason::ProtectionDiffers,
        Reason::FieldsDiffer(vec!["members".into()]),
        Reason::FieldsDiffer(vec!["members".into(), "privacy".into()]),
        Reason::Other("a newer perch's reason".into()),
    ] {
        assert_eq!(Reason::from(reason.to_string()), reason);
    }
}

#[test]
fn renames_expect_the_versions_the_renames_before_them_leave() {
    // The group's rename repoints the category's list and the room's, the category's rename
    // the room again: each later action expects the version those writes leave.
    check(
        "
kind: Group
name: engineers
previousNames: [eng]

kind: Category
name: Engineering
previousNames: [Eng]
allowedMembers: [group:engineers]

kind: Room
name: kept
category: Engineering
members: [group:engineers]
description: changed
",
        json!([
            shown("Group", json!({"name": "eng", "members": []})),
            shown(
                "Category",
                json!({"name": "Eng", "allowedMembers": ["group:eng"]})
            ),
            shown(
                "Room",
                json!({"name": "kept", "category": "Eng", "members": ["group:eng"]})
            ),
            shown(
                "Room",
                json!({"name": "gone", "category": "Eng", "managers": ["group:eng"]})
            ),
        ]),
        expect![[r#"
            rename Group "engineers" @3: name differs
                name "eng" -> "engineers"
            rename Category "Engineering" @4: name differs
                name "Eng" -> "Engineering"
            set Room "kept" @5: description differs
                description null -> "changed"
            remove Room "gone" @5: managed by perch and no longer in the manifests
            create 0 change 3 remove 1 adopt 0 unmanaged 0
        "#]],
    );
}

#[test]
fn a_removal_that_something_kept_still_names_is_refused() {
    // The additive list keeps the live `group:old` that the plan would remove.
    check(
        "
kind: Category
name: c
allowedMembers: [domain:contoso.com]
membership:
  allowedMembers: additive
",
        json!([
            shown("Group", json!({"name": "old", "members": []})),
            shown(
                "Category",
                json!({"name": "c", "allowedMembers": ["group:old"]})
            ),
        ]),
        expect![[r"
            error: the plan removes objects that objects it keeps still name, through an additive list, an ignored field or a Forget document: Group `old` (named by Category `c`); drop the reference there too, or keep the object
        "]],
    );
}

#[test]
fn previous_names_are_found_whatever_their_case() {
    check(
        "
kind: Addin
name: Dash
previousNames: [board]
url: https://board
",
        json!([shown(
            "Addin",
            json!({"name": "Board", "url": "https://board"})
        )]),
        expect![[r#"
            rename Addin "Dash" @3: name differs
                name "Board" -> "Dash"
            create 0 change 1 remove 0 adopt 0 unmanaged 0
        "#]],
    );
}

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::*;
use crate::manifest::{Desired, DesiredObject, Origin};

fn desired(objects: &[(Kind, &str, Value)]) -> Desired {
    let mut desired = Desired::default();
    for (kind, name, fields) in objects {
        let Value::Object(fields) = fields.clone() else {
            panic!()
        };
        desired.objects.insert(
            (*kind, (*name).to_owned()),
            DesiredObject {
                kind: *kind,
                name: (*name).to_owned(),
                fields,
                protect: false,
                origin: Origin {
                    file: Arc::new(PathBuf::from("m.yaml")),
                    document: 0,
                },
            },
        );
    }
    desired
}

fn live(objects: &[(Kind, &str, Value, bool)]) -> Live {
    let mut live = Live::default();
    for (kind, name, fields, managed) in objects {
        let Value::Object(fields) = fields.clone() else {
            panic!()
        };
        live.objects.insert(
            (*kind, (*name).to_owned()),
            LiveObject {
                kind: *kind,
                name: (*name).to_owned(),
                fields,
                meta: crate::api::Envelope {
                    version: 3,
                    managed: *managed,
                    updated_by: "sip:hand@contoso.com".to_owned(),
                    ..crate::api::Envelope::default()
                },
            },
        );
    }
    live
}

fn steps(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|action| format!("{:?} {} {}", action.action, action.kind, action.name))
        .collect()
}

#[test]
fn creates_in_dependency_order_and_removes_in_reverse() {
    let wanted = desired(&[
        (
            Kind::Room,
            "r",
            json!({"name": "r", "category": "c", "addin": "a"}),
        ),
        (
            Kind::Category,
            "c",
            json!({"name": "c", "allowedMembers": ["group:outer"]}),
        ),
        (Kind::Addin, "a", json!({"name": "a", "url": "https://a"})),
        (
            Kind::Group,
            "outer",
            json!({"name": "outer", "members": ["group:inner"]}),
        ),
        (
            Kind::Group,
            "inner",
            json!({"name": "inner", "members": ["sip:x@y.com"]}),
        ),
    ]);
    let plan = plan(&wanted, &Live::default()).unwrap();
    assert_eq!(
        steps(&plan),
        [
            "Create Group inner",
            "Create Group outer",
            "Create Addin a",
            "Create Category c",
            "Create Room r"
        ]
    );
    assert_eq!(plan.summary.create, 5);

    let gone = live(&[
        (Kind::Room, "r", json!({"name": "r"}), true),
        (Kind::Category, "c", json!({"name": "c"}), true),
        (Kind::Addin, "a", json!({"name": "a"}), true),
        (
            Kind::Group,
            "outer",
            json!({"name": "outer", "members": ["group:inner"]}),
            true,
        ),
        (Kind::Group, "inner", json!({"name": "inner"}), true),
    ]);
    let plan = super::plan(&Desired::default(), &gone).unwrap();
    assert_eq!(
        steps(&plan),
        [
            "Remove Room r",
            "Remove Category c",
            "Remove Addin a",
            "Remove Group outer",
            "Remove Group inner"
        ]
    );
}

#[test]
fn lists_are_sets_and_unmanaged_fields_are_ignored() {
    let wanted = desired(&[(
        Kind::Room,
        "r",
        json!({"name": "r", "category": "c", "members": ["sip:a@x.com", "sip:b@x.com"]}),
    )]);
    let current = live(&[(
        Kind::Room,
        "r",
        json!({"name": "r", "category": "c", "description": "by hand", "members": ["SIP:B@x.com", "sip:a@x.com", "sip:a@x.com"]}),
        true,
    )]);
    let plan = plan(&wanted, &current).unwrap();
    assert!(plan.actions.is_empty(), "{:#?}", plan.actions);
}

#[test]
fn changes_name_fields_and_keep_unmanaged_ones() {
    let wanted = desired(&[(
        Kind::Room,
        "r",
        json!({"name": "r", "category": "c", "members": ["sip:a@x.com"], "privacy": "secret"}),
    )]);
    let current = live(&[(
        Kind::Room,
        "r",
        json!({"name": "r", "category": "c", "description": "kept", "privacy": "closed", "members": ["sip:b@x.com"]}),
        true,
    )]);
    let plan = plan(&wanted, &current).unwrap();
    let action = &plan.actions[0];
    assert_eq!(action.action, Verb::Set);
    assert_eq!(action.expected_version, Some(3));
    assert_eq!(action.changes.len(), 2);
    assert_eq!(action.changes[0].added, ["sip:a@x.com"]);
    assert_eq!(action.changes[0].removed, ["sip:b@x.com"]);
    assert_eq!(action.changes[1].to, Some(json!("secret")));
    let object: &Map<String, Value> = action.object.as_ref().unwrap();
    assert_eq!(object["description"], "kept");
    assert_eq!(plan.summary.change, 1);
}

#[test]
fn unmanaged_objects_are_counted_adopted_or_left_alone() {
    let wanted = desired(&[(
        Kind::Addin,
        "named",
        json!({"name": "named", "url": "https://a"}),
    )]);
    let current = live(&[
        (
            Kind::Addin,
            "named",
            json!({"name": "named", "url": "https://a"}),
            false,
        ),
        (
            Kind::Addin,
            "other",
            json!({"name": "other", "url": "https://b"}),
            false,
        ),
    ]);
    let plan = plan(&wanted, &current).unwrap();
    assert_eq!(
        plan.summary,
        Summary {
            adopt: 1,
            unmanaged: 1,
            ..Summary::default()
        }
    );
    assert!(!plan.has_changes());
    assert!(plan.actions[0].adopt_only);
}

#[test]
fn removing_a_protected_object_fails_naming_it() {
    let mut current = live(&[(Kind::Room, "keep-me", json!({"name": "keep-me"}), true)]);
    current
        .objects
        .values_mut()
        .for_each(|object| object.meta.protect = true);
    let error = plan(&Desired::default(), &current).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the plan would remove protected objects: Room `keep-me`"
    );
}

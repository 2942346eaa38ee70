//! The manifest documents, one type per kind. They are the source of `schema/perch.schema.json`.
//!
//! Every field but `apiVersion`, `kind` and the name is optional: a field a manifest leaves
//! out is not managed, and never shows as a change.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{AdapterType, Principal, Privacy, RoomInvitations, RoomType, RunInterval};

/// The only manifest API version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[default]
    #[serde(rename = "perch/v1")]
    V1,
}

macro_rules! kind_tag {
    ($name:ident, $text:literal) => {
        #[doc = concat!("Always `", $text, "`.")]
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
        )]
        pub enum $name {
            #[default]
            #[serde(rename = $text)]
            Tag,
        }
    };
}

kind_tag!(CategoryKind, "Category");
kind_tag!(RoomKind, "Room");
kind_tag!(AddinKind, "Addin");
kind_tag!(GroupKind, "Group");
kind_tag!(ComplianceKind, "ComplianceConfiguration");
kind_tag!(ForgetKind, "Forget");

/// How a principal list is managed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListMode {
    /// The list is exactly what the manifest says (the default): entries added elsewhere are removed.
    #[default]
    Authoritative,
    /// The manifest's entries are ensured present; entries added elsewhere (by a manager in the client) are kept.
    Additive,
}

/// How each of a category's lists is managed: authoritative (the default) or additive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryMembership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_members: Option<ListMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_members: Option<ListMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creators: Option<ListMode>,
}

/// How each of a room's lists is managed: authoritative (the default) or additive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomMembership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<ListMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers: Option<ListMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presenters: Option<ListMode>,
}

/// How a group's member list is managed: authoritative (the default) or additive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupMembership {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<ListMode>,
}

/// Ends Perch's management of one object without removing it: the next apply marks it
/// unmanaged (and unprotected), and from then on plans leave it alone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForgetDoc {
    pub api_version: ApiVersion,
    pub kind: ForgetKind,
    /// The object, as KIND/NAME: `Room/war-room`, `Category/Legacy`, `Addin/Board`, `Group/Temps`.
    #[schemars(regex(pattern = r"^(Category|Room|Addin|Group)/[^/]+$"))]
    pub object: String,
}

/// A category: who may be in its rooms, and who may create them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryDoc {
    pub api_version: ApiVersion,
    pub kind: CategoryKind,
    /// Unique among categories; 1 to 256 characters.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Who may be members, managers, presenters and creators in its rooms, and find them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_members: Option<Vec<Principal>>,
    /// Excluded even when allowed: denied wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_members: Option<Vec<Principal>>,
    /// Who may create rooms in it (and manage the rooms they create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creators: Option<Vec<Principal>>,
    /// Whether its rooms may send invitations.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub invitations: Option<bool>,
    /// Whether its rooms allow file uploads.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub file_upload: Option<bool>,
    /// Whether messages are kept for users (compliance keeps them regardless). Default true.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub chat_history: Option<bool>,
    /// How long its rooms keep messages in user-facing history (P365D, P52W); forever when
    /// absent. Messages expire only once compliance has archived them, and never under a
    /// legal hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<crate::domain::Retention>,
    /// Names it had before, newest last: a plan renames the live object in place (one action;
    /// its id, members and history kept) rather than removing it and creating another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_names: Option<Vec<String>>,
    /// Fields whose live value is left alone: never compared, never changed (a new object
    /// still gets them). For fields someone else owns, such as a description kept by a room's
    /// managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_fields: Option<Vec<String>>,
    /// How each principal list is managed: authoritative (the default: exactly these) or
    /// additive (these are ensured; others added on the server stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<CategoryMembership>,
    /// A plan that would remove it fails.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub protect: Option<bool>,
}

/// A chat room.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoomDoc {
    pub api_version: ApiVersion,
    pub kind: RoomKind,
    /// Unique among rooms; 1 to 256 characters.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// The category it belongs to; it must exist.
    #[schemars(length(min = 1, max = 256))]
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// open: anyone in scope finds and joins; closed (default): anyone in scope finds it, members
    /// join; secret: only members find or join it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Privacy>,
    /// normal (default): members post; auditorium: only presenters post.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub room_type: Option<RoomType>,
    /// The add-in shown beside the room, or null for none.
    #[serde(
        default,
        deserialize_with = "present_or_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub addin: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitations: Option<RoomInvitations>,
    /// A disabled room keeps its history and members but is hidden and unjoinable.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Principal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managers: Option<Vec<Principal>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presenters: Option<Vec<Principal>>,
    /// Names it had before, newest last: a plan renames the live object in place (one action;
    /// its id, members and history kept) rather than removing it and creating another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_names: Option<Vec<String>>,
    /// Fields whose live value is left alone: never compared, never changed (a new object
    /// still gets them). For fields someone else owns, such as a description kept by a room's
    /// managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_fields: Option<Vec<String>>,
    /// How each principal list is managed: authoritative (the default: exactly these) or
    /// additive (these are ensured; others added on the server stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<RoomMembership>,
    /// A plan that would remove it fails.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub protect: Option<bool>,
}

/// An add-in: a web page shown beside rooms that name it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddinDoc {
    pub api_version: ApiVersion,
    pub kind: AddinKind,
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// An http:// or https:// address.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// Names it had before, newest last: a plan renames the live object in place (one action;
    /// its id, members and history kept) rather than removing it and creating another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_names: Option<Vec<String>>,
    /// Fields whose live value is left alone: never compared, never changed (a new object
    /// still gets them). For fields someone else owns, such as a description kept by a room's
    /// managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_fields: Option<Vec<String>>,
    /// A plan that would remove it fails.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub protect: Option<bool>,
}

/// A directory group, named in principal lists as `group:NAME`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupDoc {
    pub api_version: ApiVersion,
    pub kind: GroupKind,
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Principal>>,
    /// Names it had before, newest last: a plan renames the live object in place (one action;
    /// its id, members and history kept) rather than removing it and creating another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_names: Option<Vec<String>>,
    /// Fields whose live value is left alone: never compared, never changed (a new object
    /// still gets them). For fields someone else owns, such as a description kept by a room's
    /// managers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_fields: Option<Vec<String>>,
    /// How each principal list is managed: authoritative (the default: exactly these) or
    /// additive (these are ensured; others added on the server stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<GroupMembership>,
    /// A plan that would remove it fails.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub protect: Option<bool>,
}

/// The compliance configuration: a singleton, so it has no name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComplianceDoc {
    pub api_version: ApiVersion,
    pub kind: ComplianceKind,
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_name: Option<String>,
    /// xml (like the original's XmlAdapter) or json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_type: Option<AdapterType>,
    /// Where the archive files go; one directory per adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_output_directory: Option<String>,
    /// How often the archiver runs: [d.]hh:mm:ss, 00:01:00 to 30.00:00:00 (default 00:15:00).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_interval: Option<RunInterval>,
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub one_chat_room_per_output_file: Option<bool>,
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub add_chat_room_details: Option<bool>,
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub add_user_details: Option<bool>,
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub create_file_attachments_manifest: Option<bool>,
    /// Accepted for symmetry with the other kinds; the singleton is never removed.
    #[serde(
        default,
        deserialize_with = "crate::domain::spelling::deserialize_optional_bool",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "crate::domain::spelling::bool_schema")]
    pub protect: Option<bool>,
}

/// Any manifest document; the root of the JSON Schema.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(
    title = "Perch manifest",
    description = "One document of a Perch manifest file (apiVersion: perch/v1)."
)]
pub enum Document {
    Category(CategoryDoc),
    Room(RoomDoc),
    Addin(AddinDoc),
    Group(GroupDoc),
    ComplianceConfiguration(ComplianceDoc),
    Forget(ForgetDoc),
}

/// Tells a field given as `null` (Some(None)) from a field left out (None).
#[allow(
    clippy::option_option,
    reason = "absent (keep) and null (clear) differ"
)]
fn present_or_null<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// The JSON Schema of manifest documents, as committed in `schema/perch.schema.json`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Document>();
    let mut value = schema.to_value();
    forbid_null_except_addin(&mut value);
    flatten_described_enums(&mut value);
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "$id".to_owned(),
            serde_json::Value::String("https://perch.dev/schema/perch.schema.json".to_owned()),
        );
    }
    value
}

/// schemars lets every `Option` field be `null`; in a manifest a field is given or left out,
/// and only `addin: null` (no add-in) means something.
fn forbid_null_except_addin(schema: &mut serde_json::Value) {
    let Some(definitions) = schema
        .get_mut("$defs")
        .and_then(|defs| defs.as_object_mut())
    else {
        return;
    };
    for definition in definitions.values_mut() {
        let Some(properties) = definition
            .get_mut("properties")
            .and_then(|p| p.as_object_mut())
        else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if name == "addin" {
                continue;
            }
            if let Some(types) = property.get_mut("type").and_then(|t| t.as_array_mut()) {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    property["type"] = only;
                }
            }
            if let Some(any_of) = property.get("anyOf").and_then(|a| a.as_array()).cloned() {
                let kept: Vec<_> = any_of
                    .into_iter()
                    .filter(|s| s.get("type") != Some(&serde_json::json!("null")))
                    .collect();
                if kept.len() == 1 {
                    let description = property.get("description").cloned();
                    *property = kept[0].clone();
                    if let (Some(description), Some(object)) =
                        (description, property.as_object_mut())
                    {
                        object.insert("description".to_owned(), description);
                    }
                }
            }
        }
    }
}

/// schemars writes an enum whose variants carry doc comments as `oneOf` of `const`s, which
/// makes validators say "not valid under any of the schemas". An `enum` says which values are
/// allowed; the variants' descriptions join the enum's.
fn flatten_described_enums(schema: &mut serde_json::Value) {
    let Some(definitions) = schema
        .get_mut("$defs")
        .and_then(|defs| defs.as_object_mut())
    else {
        return;
    };
    for definition in definitions.values_mut() {
        let Some(variants) = definition.get("oneOf").and_then(|v| v.as_array()) else {
            continue;
        };
        let values: Option<Vec<serde_json::Value>> =
            variants.iter().map(|v| v.get("const").cloned()).collect();
        let Some(values) = values else { continue };
        let notes: Vec<String> = variants
            .iter()
            .filter_map(|v| {
                Some(format!(
                    "{}: {}",
                    v.get("const")?.as_str()?,
                    v.get("description")?.as_str()?.trim_end_matches('.')
                ))
            })
            .collect();
        if let Some(object) = definition.as_object_mut() {
            object.remove("oneOf");
            object.insert("enum".to_owned(), serde_json::Value::Array(values));
            let mut description = object
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_owned();
            if !notes.is_empty() {
                if !description.is_empty() {
                    description.push(' ');
                }
                description.push_str(&notes.join("; "));
            }
            object.insert(
                "description".to_owned(),
                serde_json::Value::String(description),
            );
        }
    }
}

//! The cmdlets' spellings. Administrators who knew `New-CsPersistentChatRoom -Privacy Open`
//! write `privacy: Open`, `type: Auditorium`, `invitations: "False"`, `disabled: "True"`:
//! enum values are read in any case and booleans also as `True`/`False` text, in manifests and
//! in API bodies alike. Perch writes only the canonical forms (`open`, `true`), so an export,
//! a plan and the stored state never show a spelling.

use schemars::{Schema, json_schema};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::Kind;

/// A regular expression (ECMA 262, as JSON Schema reads it) that matches each of `values` in
/// any ASCII case: `open` becomes `[Oo][Pp][Ee][Nn]`.
pub fn any_case_pattern(values: &[&str]) -> String {
    let alternatives: Vec<String> = values
        .iter()
        .map(|value| {
            value
                .chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

/// The schema of an enum: its canonical values (what editors offer), or any of them in
/// another case (what the cmdlets took).
pub fn enum_schema(description: &str, values: &[&str]) -> Schema {
    json_schema!({
        "description": description,
        "anyOf": [
            {"enum": values},
            {"type": "string", "pattern": any_case_pattern(values)},
        ]
    })
}

/// The schema of a boolean: `true`/`false`, or `True`/`False` as text.
pub fn bool_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "boolean"},
            {"type": "string", "pattern": any_case_pattern(&["true", "false"])},
        ]
    })
}

/// `true`/`false` in any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BoolOrText {
    Flag(bool),
    Text(String),
}

/// A boolean, also as `True`/`False` text (for `#[serde(deserialize_with)]`).
pub fn deserialize_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    match BoolOrText::deserialize(deserializer)? {
        BoolOrText::Flag(flag) => Ok(flag),
        BoolOrText::Text(text) => parse_bool(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("expected true or false, not `{text}`"))
        }),
    }
}

/// [`deserialize_bool`] for an optional field.
pub fn deserialize_optional_bool<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<bool>, D::Error> {
    deserialize_bool(deserializer).map(Some)
}

/// Defines how an enum reads (any case), writes (canonical) and shows in the schema.
macro_rules! cmdlet_enum {
    ($name:ident, $description:literal, [$(($variant:ident, $text:literal)),+ $(,)?]) => {
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical spelling, as Perch writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Reads a value in any case (`Open`, `OPEN`, `open`).
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().eq_ignore_ascii_case(text))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "expected one of {}, not `{text}`",
                        [$($text),+].join(", ")
                    ))
                })
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                $crate::domain::spelling::enum_schema($description, &[$($text),+])
            }
        }
    };
}

pub(crate) use cmdlet_enum;

/// The fields of each kind that are booleans.
fn is_bool_field(kind: Kind, field: &str) -> bool {
    field == "protect"
        || match kind {
            Kind::Category => matches!(field, "invitations" | "fileUpload" | "chatHistory"),
            Kind::Room => field == "disabled",
            Kind::ComplianceConfiguration => matches!(
                field,
                "enabled"
                    | "oneChatRoomPerOutputFile"
                    | "addChatRoomDetails"
                    | "addUserDetails"
                    | "createFileAttachmentsManifest"
            ),
            Kind::Addin | Kind::Group => false,
        }
}

/// Why a field refused a value, in words, for the fields whose schema accepts the cmdlets'
/// spellings (a schema's own message for them would say only "not valid under any of the
/// schemas listed in the 'anyOf' keyword").
pub fn refusal(kind: Kind, field: &str, value: &Value) -> Option<String> {
    if is_bool_field(kind, field) {
        return Some(format!(
            "{value} is not of type \"boolean\": true or false (True and False as text too)"
        ));
    }
    let values: Vec<&str> = match (kind, field) {
        (Kind::Room, "privacy") => super::Privacy::ALL.iter().map(|v| v.as_str()).collect(),
        (Kind::Room, "type") => super::RoomType::ALL.iter().map(|v| v.as_str()).collect(),
        (Kind::Room, "invitations") => vec!["inherit", "false"],
        (Kind::ComplianceConfiguration, "adapterType") => {
            super::AdapterType::ALL.iter().map(|v| v.as_str()).collect()
        }
        _ => return None,
    };
    Some(format!(
        "{value} is not one of {} (in any case)",
        values.join(", ")
    ))
}

/// The canonical value of a field a manifest spelled as the cmdlets do (`Open` -> `open`,
/// `"False"` -> `false`); `None` when the value is canonical already or is no such spelling.
pub fn canonical(kind: Kind, field: &str, value: &Value) -> Option<Value> {
    let Value::String(text) = value else {
        return None;
    };
    if is_bool_field(kind, field) {
        return parse_bool(text).map(Value::Bool);
    }
    // Told on the text, so that a value already canonical (as exports write every one) costs
    // no allocation.
    let canonical = match (kind, field) {
        (Kind::Room, "privacy") => super::Privacy::parse(text)?.as_str(),
        (Kind::Room, "type") => super::RoomType::parse(text)?.as_str(),
        (Kind::Room, "invitations") => {
            // Written as its serialisation writes it (`inherit`, or the boolean `false`).
            let canonical = serde_json::to_value(super::RoomInvitations::parse(text)?).ok()?;
            return (canonical != *value).then_some(canonical);
        }
        (Kind::ComplianceConfiguration, "adapterType") => super::AdapterType::parse(text)?.as_str(),
        _ => return None,
    };
    (canonical != text).then(|| Value::String(canonical.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdlet_spellings_become_the_canonical_values() {
        let cases = [
            (
                Kind::Room,
                "privacy",
                "Open",
                Some(serde_json::json!("open")),
            ),
            (
                Kind::Room,
                "privacy",
                "SECRET",
                Some(serde_json::json!("secret")),
            ),
            (Kind::Room, "privacy", "open", None),
            (Kind::Room, "privacy", "Opened", None),
            (
                Kind::Room,
                "type",
                "Auditorium",
                Some(serde_json::json!("auditorium")),
            ),
            (
                Kind::Room,
                "invitations",
                "False",
                Some(serde_json::json!(false)),
            ),
            (
                Kind::Room,
                "invitations",
                "Inherit",
                Some(serde_json::json!("inherit")),
            ),
            (
                Kind::Room,
                "disabled",
                "True",
                Some(serde_json::json!(true)),
            ),
            (
                Kind::Category,
                "invitations",
                "false",
                Some(serde_json::json!(false)),
            ),
            (Kind::Category, "chatHistory", "yes", None),
            (
                Kind::ComplianceConfiguration,
                "adapterType",
                "XML",
                Some(serde_json::json!("xml")),
            ),
            (
                Kind::ComplianceConfiguration,
                "enabled",
                "TRUE",
                Some(serde_json::json!(true)),
            ),
            (Kind::Group, "description", "True", None),
        ];
        for (kind, field, text, expected) in cases {
            assert_eq!(
                canonical(kind, field, &Value::String(text.to_owned())),
                expected,
                "{kind} {field} {text}"
            );
        }
    }

    #[test]
    fn the_pattern_matches_any_case_and_nothing_else() {
        expect_test::expect![[r"^(?:[Oo][Pp][Ee][Nn]|[Cc][Ll][Oo][Ss][Ee][Dd])$"]]
            .assert_eq(&any_case_pattern(&["open", "closed"]));
    }
}

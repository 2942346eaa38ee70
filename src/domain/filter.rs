//! Which rooms a search asks for: the filters of `Get-CsPersistentChatRoom`, as one pure test
//! that every listing (the panel, the chat client) applies after the access rules.

use super::{Principal, Privacy, Room, RoomType};

/// Every condition is optional; a room matches when it meets all that are given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomFilter {
    pub category: Option<String>,
    pub addin: Option<String>,
    /// Listed among the room's members.
    pub member: Option<Principal>,
    /// Listed among the room's managers.
    pub manager: Option<Principal>,
    pub privacy: Option<Privacy>,
    pub room_type: Option<RoomType>,
    pub disabled: Option<bool>,
    /// Found in the name or the description, ignoring case.
    pub text: Option<String>,
}

/// Whether `haystack` contains `needle`, ignoring case: ASCII case for an ASCII needle (so
/// that `k` does not find the Kelvin sign, as SQL's `lower()` would not), Unicode lower case
/// otherwise.
pub fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        haystack
            .to_ascii_lowercase()
            .contains(&needle.to_ascii_lowercase())
    } else {
        haystack.to_lowercase().contains(&needle.to_lowercase())
    }
}

impl RoomFilter {
    pub fn matches(&self, room: &Room) -> bool {
        let same_name = |wanted: &Option<String>, actual: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| {
                actual.is_some_and(|actual| super::name_key(actual) == super::name_key(wanted))
            })
        };
        same_name(&self.category, Some(&room.category))
            && same_name(&self.addin, room.addin.as_deref())
            && self
                .member
                .as_ref()
                .is_none_or(|member| room.members.contains(member))
            && self
                .manager
                .as_ref()
                .is_none_or(|manager| room.managers.contains(manager))
            && self.privacy.is_none_or(|privacy| room.privacy == privacy)
            && self
                .room_type
                .is_none_or(|room_type| room.room_type == room_type)
            && self
                .disabled
                .is_none_or(|disabled| room.disabled == disabled)
            && self.text.as_deref().is_none_or(|text| {
                contains_ignoring_case(&room.name, text)
                    || contains_ignoring_case(&room.description, text)
            })
    }

    /// Whether no condition is given.
    pub fn is_empty(&self) -> bool {
        *self == RoomFilter::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(json: serde_json::Value) -> Room {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_condition_must_hold() {
        let sales = room(serde_json::json!({
            "name": "Sales-Q3", "category": "Sales", "description": "Quarter Three numbers at 300 \u{212A}",
            "privacy": "secret", "type": "auditorium", "addin": "Dash",
            "members": ["sip:ann@contoso.com"], "managers": ["sip:bob@contoso.com"],
        }));
        let member = |uri: &str| Some(Principal::parse(uri).unwrap());
        let cases: Vec<(&str, RoomFilter, bool)> = vec![
            ("nothing asked", RoomFilter::default(), true),
            (
                "category, any case",
                RoomFilter {
                    category: Some("sales".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                "other category",
                RoomFilter {
                    category: Some("Eng".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                "add-in",
                RoomFilter {
                    addin: Some("dash".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                "member",
                RoomFilter {
                    member: member("sip:ann@contoso.com"),
                    ..Default::default()
                },
                true,
            ),
            (
                "manager is not a member",
                RoomFilter {
                    member: member("sip:bob@contoso.com"),
                    ..Default::default()
                },
                false,
            ),
            (
                "manager",
                RoomFilter {
                    manager: member("SIP:Bob@Contoso.com"),
                    ..Default::default()
                },
                true,
            ),
            (
                "privacy",
                RoomFilter {
                    privacy: Some(Privacy::Open),
                    ..Default::default()
                },
                false,
            ),
            (
                "type",
                RoomFilter {
                    room_type: Some(RoomType::Auditorium),
                    ..Default::default()
                },
                true,
            ),
            (
                "disabled",
                RoomFilter {
                    disabled: Some(true),
                    ..Default::default()
                },
                false,
            ),
            (
                "text in the name",
                RoomFilter {
                    text: Some("q3".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                "text in the description",
                RoomFilter {
                    text: Some("THREE".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                "text nowhere",
                RoomFilter {
                    text: Some("four".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                "ASCII text finds no Kelvin sign",
                RoomFilter {
                    text: Some("300 k".into()),
                    ..Default::default()
                },
                false,
            ),
            (
                "other text ignores Unicode case",
                RoomFilter {
                    text: Some("\u{212A}".into()),
                    ..Default::default()
                },
                true,
            ),
            (
                "all at once",
                RoomFilter {
                    category: Some("Sales".into()),
                    privacy: Some(Privacy::Secret),
                    disabled: Some(false),
                    text: Some("sales".into()),
                    ..Default::default()
                },
                true,
            ),
        ];
        let failures: Vec<&str> = cases
            .iter()
            .filter(|(_, filter, expected)| filter.matches(&sales) != *expected)
            .map(|(name, _, _)| *name)
            .collect();
        assert!(failures.is_empty(), "wrong answers: {failures:?}");
    }
}

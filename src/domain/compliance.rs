//! Compliance rules: what the log records, which text the archive format can carry, how long
//! history is kept, and what a legal hold stops. Pure; the service applies them.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Kind;

/// The event types of the original's compliance format (its XSD's `ComplianceMessageType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ComplianceEventType {
    /// A user opened a room's live stream.
    Join,
    /// A user closed it.
    Part,
    /// A user posted a message.
    Chat,
    /// A user read the room's history.
    Backchat,
    FileUpload,
    FileDownload,
}

impl ComplianceEventType {
    pub const ALL: [ComplianceEventType; 6] = [
        ComplianceEventType::Join,
        ComplianceEventType::Part,
        ComplianceEventType::Chat,
        ComplianceEventType::Backchat,
        ComplianceEventType::FileUpload,
        ComplianceEventType::FileDownload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComplianceEventType::Join => "JOIN",
            ComplianceEventType::Part => "PART",
            ComplianceEventType::Chat => "CHAT",
            ComplianceEventType::Backchat => "BACKCHAT",
            ComplianceEventType::FileUpload => "FILEUPLOAD",
            ComplianceEventType::FileDownload => "FILEDOWNLOAD",
        }
    }

    pub fn parse(text: &str) -> Option<ComplianceEventType> {
        ComplianceEventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for ComplianceEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The character that stands in the XML archive for one XML 1.0 cannot carry.
pub const XML_REPLACEMENT: char = '\u{FFFD}';

/// Whether XML 1.0 can carry `c` at all (its `Char` production), escaped or not.
pub fn xml_can_carry(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Text as the XML archive writes it: every character XML 1.0 cannot carry (the C0 controls
/// other than tab, line feed and carriage return; U+FFFE; U+FFFF) replaced by U+FFFD. The
/// JSON archive keeps the exact text.
pub fn xml_text(text: &str) -> Cow<'_, str> {
    if text.chars().all(xml_can_carry) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(
            text.chars()
                .map(|c| if xml_can_carry(c) { c } else { XML_REPLACEMENT })
                .collect(),
        )
    }
}

/// How long a category's rooms keep messages in user-facing history: `PnD` or `PnW` (ISO 8601
/// durations in days or weeks), at least one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Retention {
    days: u32,
}

/// The longest retention: 100 years.
pub const MAX_RETENTION_DAYS: u32 = 36_525;

impl Retention {
    /// # Errors
    /// Text that is not `PnD` or `PnW` with 1 ≤ days ≤ 36,525.
    pub fn parse(text: &str) -> Result<Retention, String> {
        let invalid = || {
            format!("retention `{text}` is not a duration in days or weeks, such as P365D or P52W")
        };
        let rest = text.strip_prefix('P').ok_or_else(invalid)?;
        let unit = rest.chars().last().ok_or_else(invalid)?;
        let number = &rest[..rest.len() - unit.len_utf8()];
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let count: u32 = number.parse().map_err(|_| invalid())?;
        let days = match unit {
            'D' => Some(count),
            'W' => count.checked_mul(7),
            _ => None,
        }
        .ok_or_else(invalid)?;
        if days == 0 || days > MAX_RETENTION_DAYS {
            return Err(format!(
                "retention `{text}` must be between one day and {MAX_RETENTION_DAYS} days"
            ));
        }
        Ok(Retention { days })
    }

    pub fn days(self) -> u32 {
        self.days
    }

    /// The instant before which messages expire, `now` in Unix seconds.
    pub fn cutoff(self, now: i64) -> i64 {
        now - i64::from(self.days) * 86_400
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "P{}D", self.days)
    }
}

impl Serialize for Retention {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Retention {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Retention::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Retention {
    fn schema_name() -> Cow<'static, str> {
        "Retention".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^P[0-9]+[DW]$",
            "description": "How long messages stay in user-facing history, in days or weeks (P365D, P52W). Compliance archives them first.",
        })
    }
}

/// A legal hold: while it stands, retention and clearing leave the room (or every room of the
/// category) alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    /// `Room` or `Category`.
    pub kind: Kind,
    pub name: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: String,
}

/// What a hold stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldAct {
    /// `Clear-CsPersistentChatRoom`.
    Clear,
    /// `Remove-CsPersistentChatMessage` (removing or replacing).
    RemoveMessages,
    /// Removing the room, which would delete its history.
    RemoveRoom,
    /// Renaming the room or moving it to another category, which would take it out from
    /// under the hold.
    Move,
    /// Deleting expired messages.
    Retention,
}

/// The hold, among `holds`, that stops every [`HeldAct`] in room `room` of category
/// `category`: one on the room itself first, then one on its category.
pub fn blocking_hold<'a>(room: &str, category: &str, holds: &'a [Hold]) -> Option<&'a Hold> {
    holds
        .iter()
        .find(|hold| hold.kind == Kind::Room && hold.name == room)
        .or_else(|| {
            holds
                .iter()
                .find(|hold| hold.kind == Kind::Category && hold.name == category)
        })
}

/// Whether a hold may be placed on this kind of object.
pub fn may_hold(kind: Kind) -> bool {
    matches!(kind, Kind::Room | Kind::Category)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_replaces_what_xml_cannot_carry_and_nothing_else() {
        let cases = [
            ("plain", "plain"),
            ("tab\tline\ncr\r", "tab\tline\ncr\r"),
            (
                "bell\u{7}esc\u{1b}nul\u{0}",
                "bell\u{FFFD}esc\u{FFFD}nul\u{FFFD}",
            ),
            ("\u{FFFE}\u{FFFF}", "\u{FFFD}\u{FFFD}"),
            (
                "del\u{7f} c1\u{85} emoji😀 é",
                "del\u{7f} c1\u{85} emoji😀 é",
            ),
            ("<&>\"'", "<&>\"'"),
        ];
        for (input, expected) in cases {
            assert_eq!(xml_text(input), expected, "{input:?}");
        }
        assert!(matches!(xml_text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn retention_reads_days_and_weeks_only() {
        let cases = [
            ("P365D", Ok(365)),
            ("P52W", Ok(364)),
            ("P1D", Ok(1)),
            ("P0D", Err(())),
            ("P36526D", Err(())),
            ("P1Y", Err(())),
            ("365", Err(())),
            ("PD", Err(())),
            ("P-1D", Err(())),
            ("P99999999999D", Err(())),
            ("p365d", Err(())),
            ("Pé", Err(())),
            ("P", Err(())),
            ("P3é", Err(())),
        ];
        for (text, expected) in cases {
            assert_eq!(
                Retention::parse(text).map(Retention::days).map_err(|_| ()),
                expected,
                "{text}"
            );
        }
        assert_eq!(Retention::parse("P2W").unwrap().to_string(), "P14D");
        assert_eq!(Retention::parse("P1D").unwrap().cutoff(100_000), 13_600);
    }

    #[test]
    fn a_room_hold_comes_before_its_category_hold() {
        let hold = |kind, name: &str| Hold {
            kind,
            name: name.to_owned(),
            reason: format!("{name} case"),
            placed_by: "sip:legal@contoso.com".to_owned(),
            placed_at: "2026-01-01T00:00:00Z".to_owned(),
        };
        let holds = [hold(Kind::Category, "Eng"), hold(Kind::Room, "q3")];
        let found =
            |room, category| blocking_hold(room, category, &holds).map(|hold| hold.name.as_str());
        assert_eq!(found("q3", "Eng"), Some("q3"));
        assert_eq!(found("other", "Eng"), Some("Eng"));
        assert_eq!(found("q3", "Sales"), Some("q3"));
        assert_eq!(found("other", "Sales"), None);
        // A category hold does not reach a room merely named like it.
        assert_eq!(found("Eng", "Sales"), None);
    }
}

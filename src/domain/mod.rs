//! The configuration objects of Persistent Chat and the rules that need no storage to check.
//!
//! Invariants: no I/O, no clock. Field names serialise exactly as the API and the manifests
//! name them (the cmdlets' parameter names in camelCase), so one definition serves the wire,
//! the store and the plan engine.

pub mod access;
pub mod audit;
pub mod compliance;
mod filter;
mod principal;
pub mod spelling;
pub mod tokens;
pub mod words;

use crate::api::ErrorCode;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use compliance::{ComplianceEventType, Hold, Retention};
pub use filter::RoomFilter;
pub(crate) use principal::is_plain_stored_sip_address;
pub use principal::{Directory, MAX_PRINCIPAL_LEN, Principal, PrincipalError, normalise_list};

/// Longest message text, in characters.
pub const MAX_MESSAGE_LEN: usize = 16_384;

/// Why a text cannot be a message's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageTextRefusal {
    /// Empty, or only white space.
    Blank,
    /// It holds U+0000, which PostgreSQL's text cannot store: refused on SQLite as well, so
    /// that both backends keep the same texts (and so that a post never reaches the group of
    /// posts it would fail, everyone's with it).
    Nul,
    /// Longer than [`MAX_MESSAGE_LEN`]: it holds this many characters.
    TooLong(usize),
}

/// Whether `text` can be a message's text, posted, imported, or replacing one (a replacement
/// may be blank: the caller leaves that refusal aside).
///
/// # Errors
/// The first rule it breaks.
pub fn check_message_text(text: &str) -> Result<(), MessageTextRefusal> {
    if text.contains('\0') {
        return Err(MessageTextRefusal::Nul);
    }
    let characters = text.chars().count();
    if characters > MAX_MESSAGE_LEN {
        return Err(MessageTextRefusal::TooLong(characters));
    }
    if text.trim().is_empty() {
        return Err(MessageTextRefusal::Blank);
    }
    Ok(())
}

/// Longest category, room, add-in or group name, in characters.
pub const MAX_NAME_LEN: usize = 256;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Longest add-in URL, in characters.
pub const MAX_URL_LEN: usize = 2048;
/// Most entries in one principal list.
pub const MAX_LIST_LEN: usize = 10_000;

/// The reconciler's two marks on an object: administrators' alone to set
/// ([`access::may_set_marks`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// Perch created or adopted it; `apply` may change or remove it.
    pub managed: bool,
    /// A plan that would remove it fails.
    pub protect: bool,
}

/// What happened to a room, as the `room` events of a live stream say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomChangeKind {
    Created,
    Changed,
    Removed,
}

impl RoomChangeKind {
    pub const ALL: [RoomChangeKind; 3] = [
        RoomChangeKind::Created,
        RoomChangeKind::Changed,
        RoomChangeKind::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RoomChangeKind::Created => "created",
            RoomChangeKind::Changed => "changed",
            RoomChangeKind::Removed => "removed",
        }
    }

    pub fn parse(text: &str) -> Option<RoomChangeKind> {
        RoomChangeKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// The kinds of configuration object, in the order a plan creates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Group,
    Addin,
    Category,
    Room,
    ComplianceConfiguration,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Group,
        Kind::Addin,
        Kind::Category,
        Kind::Room,
        Kind::ComplianceConfiguration,
    ];

    /// The name used in the store and in URLs' collection segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "Group",
            Kind::Addin => "Addin",
            Kind::Category => "Category",
            Kind::Room => "Room",
            Kind::ComplianceConfiguration => "ComplianceConfiguration",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A category: a set of rooms sharing who may be in them and who may create them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Category {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub allowed_members: Vec<Principal>,
    #[serde(default)]
    pub denied_members: Vec<Principal>,
    #[serde(default)]
    pub creators: Vec<Principal>,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub invitations: bool,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub file_upload: bool,
    #[serde(
        default = "default_true",
        deserialize_with = "spelling::deserialize_bool"
    )]
    pub chat_history: bool,
    /// How long its rooms keep messages in user-facing history; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// Who can find and join a room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Privacy {
    /// Anyone in the category's scope finds and joins it.
    Open,
    /// Anyone in scope finds it; only members join.
    #[default]
    Closed,
    /// Only members find or join it.
    Secret,
}

spelling::cmdlet_enum!(
    Privacy,
    "open: anyone in the category's scope finds and joins it; closed: anyone in scope finds it, only members join; secret: only members find or join it. Any case (Open, as the cmdlets took it).",
    [(Open, "open"), (Closed, "closed"), (Secret, "secret")]
);

/// Who posts in a room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoomType {
    /// Every member posts.
    #[default]
    Normal,
    /// Only presenters post; the others read.
    Auditorium,
}

spelling::cmdlet_enum!(
    RoomType,
    "normal: every member posts; auditorium: only presenters post. Any case (Auditorium, as the cmdlets took it).",
    [(Normal, "normal"), (Auditorium, "auditorium")]
);

/// Whether a room sends invitations: as its category allows, or never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoomInvitations {
    #[default]
    Inherit,
    Disabled,
}

impl JsonSchema for RoomInvitations {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoomInvitations".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`inherit` follows the category; `false` never sends invitations. Also as the cmdlets wrote them: Inherit, \"False\".",
            "anyOf": [
                {"enum": ["inherit", false]},
                {"type": "string", "pattern": spelling::any_case_pattern(&["inherit", "false"])},
            ]
        })
    }
}

impl Serialize for RoomInvitations {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RoomInvitations::Inherit => serializer.serialize_str("inherit"),
            RoomInvitations::Disabled => serializer.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for RoomInvitations {
    /// Accepts `inherit` and `false` (the boolean or the string), as the cmdlet did.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Flag(false) => Some(RoomInvitations::Disabled),
            Raw::Text(text) => RoomInvitations::parse(&text),
            Raw::Flag(true) => None,
        }
        .ok_or_else(|| serde::de::Error::custom("invitations takes `inherit` or `false`"))
    }
}

impl RoomInvitations {
    /// `inherit` or `false` written as text, in any case.
    pub fn parse(text: &str) -> Option<RoomInvitations> {
        if text.eq_ignore_ascii_case("false") {
            Some(RoomInvitations::Disabled)
        } else if text.eq_ignore_ascii_case("inherit") {
            Some(RoomInvitations::Inherit)
        } else {
            None
        }
    }
}

/// A chat room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Room {
    pub name: String,
    pub category: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub privacy: Privacy,
    #[serde(default, rename = "type")]
    pub room_type: RoomType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addin: Option<String>,
    #[serde(default)]
    pub invitations: RoomInvitations,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub disabled: bool,
    #[serde(default)]
    pub members: Vec<Principal>,
    #[serde(default)]
    pub managers: Vec<Principal>,
    #[serde(default)]
    pub presenters: Vec<Principal>,
}

/// An add-in: a web page shown beside a room in the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Addin {
    pub name: String,
    pub url: String,
}

/// A directory group: stands in for the AD groups and OUs the cmdlets accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub members: Vec<Principal>,
}

/// The format a compliance adapter writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AdapterType {
    #[default]
    Xml,
    Json,
}

spelling::cmdlet_enum!(
    AdapterType,
    "xml (the original's documented format) or json. Any case.",
    [(Xml, "xml"), (Json, "json")]
);

/// The singleton of `Set-CsPersistentChatComplianceConfiguration`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComplianceConfiguration {
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub enabled: bool,
    #[serde(default)]
    pub adapter_name: String,
    #[serde(default)]
    pub adapter_type: AdapterType,
    #[serde(default)]
    pub adapter_output_directory: String,
    #[serde(default)]
    pub run_interval: RunInterval,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub one_chat_room_per_output_file: bool,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub add_chat_room_details: bool,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub add_user_details: bool,
    #[serde(default, deserialize_with = "spelling::deserialize_bool")]
    pub create_file_attachments_manifest: bool,
}

impl Default for ComplianceConfiguration {
    fn default() -> Self {
        ComplianceConfiguration {
            enabled: false,
            adapter_name: String::new(),
            adapter_type: AdapterType::Xml,
            adapter_output_directory: String::new(),
            run_interval: RunInterval::default(),
            one_chat_room_per_output_file: false,
            add_chat_room_details: false,
            add_user_details: false,
            create_file_attachments_manifest: false,
        }
    }
}

fn default_true() -> bool {
    true
}

/// The compliance run interval, written as the cmdlet's `[d.]hh:mm:ss` TimeSpan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunInterval {
    seconds: u32,
}

impl RunInterval {
    pub const MIN_SECONDS: u32 = 60;
    pub const MAX_SECONDS: u32 = 30 * 24 * 3600;

    pub fn seconds(self) -> u32 {
        self.seconds
    }

    /// Parses `[d.]hh:mm:ss` within 00:01:00 and 30.00:00:00.
    ///
    /// # Errors
    /// A message naming the expected form or the allowed range.
    pub fn parse(text: &str) -> Result<RunInterval, String> {
        let form =
            || format!("`{text}` is not a run interval; expected [d.]hh:mm:ss, e.g. 00:15:00");
        let (days, clock) = match text.split_once('.') {
            Some((days, clock)) => (days.parse::<u32>().map_err(|_| form())?, clock),
            None => (0, text),
        };
        let parts: Vec<&str> = clock.split(':').collect();
        let [hours, minutes, seconds] = parts.as_slice() else {
            return Err(form());
        };
        let field = |part: &str, max: u32| -> Result<u32, String> {
            match part.parse::<u32>() {
                Ok(value) if part.len() == 2 && value <= max => Ok(value),
                _ => Err(form()),
            }
        };
        let total = u64::from(days) * 86_400
            + u64::from(field(hours, 23)?) * 3600
            + u64::from(field(minutes, 59)?) * 60
            + u64::from(field(seconds, 59)?);
        if total < u64::from(Self::MIN_SECONDS) || total > u64::from(Self::MAX_SECONDS) {
            return Err(format!(
                "run interval `{text}` is outside 00:01:00 to 30.00:00:00"
            ));
        }
        // Within MAX_SECONDS, which is a u32.
        let seconds = u32::try_from(total).map_err(|_| form())?;
        Ok(RunInterval { seconds })
    }
}

impl Default for RunInterval {
    fn default() -> Self {
        RunInterval { seconds: 15 * 60 }
    }
}

impl fmt::Display for RunInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.seconds / 86_400;
        let rest = self.seconds % 86_400;
        let clock = format!(
            "{:02}:{:02}:{:02}",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        );
        if days > 0 {
            write!(f, "{days}.{clock}")
        } else {
            f.write_str(&clock)
        }
    }
}

impl JsonSchema for RunInterval {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RunInterval".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A TimeSpan [d.]hh:mm:ss from 00:01:00 to 30.00:00:00.",
            "type": "string",
            "pattern": "^([0-9]+\\.)?[0-9]{2}:[0-9]{2}:[0-9]{2}$",
            "examples": ["00:15:00"]
        })
    }
}

impl Serialize for RunInterval {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RunInterval {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RunInterval::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One field that breaks a rule that needs nothing but the object to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub code: ErrorCode,
    pub message: String,
}

impl FieldProblem {
    fn new(field: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        FieldProblem {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// A name as it is stored and compared: in Unicode normalisation form C, so that `é` typed as
/// one character and as `e` plus an accent are one name.
pub fn normalise_name(name: &mut String) {
    use unicode_normalization::{UnicodeNormalization, is_nfc_quick};
    if is_nfc_quick(name.chars()) != unicode_normalization::IsNormalized::Yes {
        *name = name.nfc().collect();
    }
}

/// What makes two names of one kind the same name: NFC, then lower case. Names are unique by
/// this key, as the original's were case-insensitive, and keep the case they were given.
pub fn name_key(name: &str) -> String {
    folded_name(name).into_owned()
}

/// [`name_key`], borrowed from `name` when the name is its own key (ASCII without capitals,
/// as most names are): joining a hundred thousand objects then folds none of them.
pub fn folded_name(name: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::UnicodeNormalization;
    // ASCII is its own NFC.
    if name.is_ascii() {
        if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return std::borrow::Cow::Owned(name.to_ascii_lowercase());
        }
        return std::borrow::Cow::Borrowed(name);
    }
    std::borrow::Cow::Owned(name.nfc().collect::<String>().to_lowercase())
}

/// Characters a name may not hold: they are invisible or reorder what is shown, so two names
/// that look alike would differ (`\u{200B}`, `\u{202E}gnp.exe`).
fn invisible_or_reordering(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Checks a name: 1 to 256 characters; no control, zero-width or bidirectional-control
/// characters; no `/`; no surrounding spaces; not `.` or `..` (which no URL path can name).
pub fn check_name(field: &str, name: &str, problems: &mut Vec<FieldProblem>) {
    if name.trim().is_empty() {
        problems.push(FieldProblem::new(
            field,
            ErrorCode::InvalidName,
            format!("{field} cannot be empty"),
        ));
    } else if name.chars().count() > MAX_NAME_LEN {
        problems.push(FieldProblem::new(
            field,
            ErrorCode::NameTooLong,
            format!("{field} is longer than {MAX_NAME_LEN} characters"),
        ));
    } else if name.trim() != name || name.contains('/') || name == "." || name == ".." {
        problems.push(FieldProblem::new(
            field,
            ErrorCode::InvalidName,
            format!(
                "{field} `{}` may not start or end with spaces, contain `/`, or be `.` or `..`",
                crate::text::excerpt(name, 80)
            ),
        ));
    } else if name.contains(invisible_or_reordering) {
        problems.push(FieldProblem::new(
            field,
            ErrorCode::InvalidName,
            format!(
                "{field} `{}` holds control, zero-width or bidirectional-control characters, which make names that look alike differ",
                crate::text::excerpt(name, 80)
            ),
        ));
    }
}

fn check_description(description: &str, problems: &mut Vec<FieldProblem>) {
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        problems.push(FieldProblem::new(
            "description",
            ErrorCode::DescriptionTooLong,
            format!("description is longer than {MAX_DESCRIPTION_LEN} characters"),
        ));
    } else if description.contains('\0') {
        // PostgreSQL cannot store it; refused on both backends, so that they keep the same
        // texts and a SQLite database moves to PostgreSQL whole.
        problems.push(FieldProblem::new(
            "description",
            ErrorCode::InvalidField,
            "a description cannot hold the character U+0000 (NUL)",
        ));
    }
}

fn check_list(field: &str, list: &[Principal], problems: &mut Vec<FieldProblem>) {
    if list.len() > MAX_LIST_LEN {
        problems.push(FieldProblem::new(
            field,
            ErrorCode::ListTooLong,
            format!("{field} has more than {MAX_LIST_LEN} entries"),
        ));
    }
}

/// Checks an add-in URL: absolute http or https with a host.
pub fn check_url(url: &str, problems: &mut Vec<FieldProblem>) {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    if url.chars().count() > MAX_URL_LEN {
        problems.push(FieldProblem::new(
            "url",
            ErrorCode::UrlTooLong,
            format!("url is longer than {MAX_URL_LEN} characters"),
        ));
    } else if rest.is_none_or(|rest| {
        rest.is_empty()
            || rest.starts_with('/')
            || url.contains(|c: char| c.is_whitespace() || c.is_control())
    }) {
        problems.push(FieldProblem::new(
            "url",
            ErrorCode::InvalidUrl,
            format!("url `{url}` must be an absolute http:// or https:// address"),
        ));
    }
}

impl Category {
    /// Sorts and deduplicates every list, so that stored and compared forms agree.
    pub fn normalise(&mut self) {
        normalise_name(&mut self.name);
        normalise_list(&mut self.allowed_members);
        normalise_list(&mut self.denied_members);
        normalise_list(&mut self.creators);
    }

    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_name("name", &self.name, &mut problems);
        check_description(&self.description, &mut problems);
        check_list("allowedMembers", &self.allowed_members, &mut problems);
        check_list("deniedMembers", &self.denied_members, &mut problems);
        check_list("creators", &self.creators, &mut problems);
        problems
    }

    /// Whether `principal` may hold a role in this category's rooms.
    pub fn admits(&self, directory: &Directory, principal: &Principal) -> bool {
        directory.within_scope(&self.allowed_members, &self.denied_members, principal)
    }
}

impl Room {
    pub fn normalise(&mut self) {
        normalise_name(&mut self.name);
        normalise_name(&mut self.category);
        if let Some(addin) = &mut self.addin {
            normalise_name(addin);
        }
        normalise_list(&mut self.members);
        normalise_list(&mut self.managers);
        normalise_list(&mut self.presenters);
    }

    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_name("name", &self.name, &mut problems);
        check_name("category", &self.category, &mut problems);
        if let Some(addin) = &self.addin {
            check_name("addin", addin, &mut problems);
        }
        check_description(&self.description, &mut problems);
        check_list("members", &self.members, &mut problems);
        check_list("managers", &self.managers, &mut problems);
        check_list("presenters", &self.presenters, &mut problems);
        problems
    }

    /// The three role lists with their field names.
    pub fn role_lists(&self) -> [(&'static str, &Vec<Principal>); 3] {
        [
            ("members", &self.members),
            ("managers", &self.managers),
            ("presenters", &self.presenters),
        ]
    }
}

impl Addin {
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_name("name", &self.name, &mut problems);
        check_url(&self.url, &mut problems);
        problems
    }
}

impl Group {
    pub fn normalise(&mut self) {
        normalise_name(&mut self.name);
        normalise_list(&mut self.members);
    }

    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        check_name("name", &self.name, &mut problems);
        check_description(&self.description, &mut problems);
        check_list("members", &self.members, &mut problems);
        problems
    }
}

impl ComplianceConfiguration {
    pub fn problems(&self) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        if self.adapter_name.chars().count() > MAX_NAME_LEN {
            problems.push(FieldProblem::new(
                "adapterName",
                ErrorCode::NameTooLong,
                format!("adapterName is longer than {MAX_NAME_LEN} characters"),
            ));
        }
        if self.enabled && self.adapter_output_directory.trim().is_empty() {
            problems.push(FieldProblem::new(
                "adapterOutputDirectory",
                ErrorCode::MissingField,
                "adapterOutputDirectory is required when compliance is enabled",
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_text_is_not_blank_holds_no_nul_and_is_not_too_long() {
        let longest = "x".repeat(MAX_MESSAGE_LEN);
        let too_long = "é".repeat(MAX_MESSAGE_LEN + 1);
        let cases: [(&str, Result<(), MessageTextRefusal>); 7] = [
            ("hello", Ok(())),
            (&longest, Ok(())),
            ("", Err(MessageTextRefusal::Blank)),
            (" \t\n", Err(MessageTextRefusal::Blank)),
            ("a\0b", Err(MessageTextRefusal::Nul)),
            ("\0", Err(MessageTextRefusal::Nul)),
            (
                &too_long,
                Err(MessageTextRefusal::TooLong(MAX_MESSAGE_LEN + 1)),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(check_message_text(text), expected, "{:?}", text.get(..20));
        }
    }

    #[test]
    fn run_interval_round_trips_and_checks_range() {
        for text in ["00:01:00", "00:15:00", "1.02:03:04", "30.00:00:00"] {
            assert_eq!(RunInterval::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "00:00:59",
            "30.00:00:01",
            "15",
            "0:15:00",
            "00:60:00",
            "x.00:10:00",
        ] {
            assert!(RunInterval::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(RunInterval::default().to_string(), "00:15:00");
    }

    #[test]
    fn urls_must_be_http() {
        let check = |url: &str| {
            let mut problems = Vec::new();
            check_url(url, &mut problems);
            problems.is_empty()
        };
        assert!(check("https://board.corp.test/v2"));
        assert!(check("HTTP://x"));
        assert!(!check("ftp://x"));
        assert!(!check("https://"));
        assert!(!check("javascript:alert(1)"));
    }

    #[test]
    fn room_invitations_accept_cmdlet_forms() {
        let parse = |json: &str| serde_json::from_str::<RoomInvitations>(json);
        assert_eq!(parse("\"inherit\"").unwrap(), RoomInvitations::Inherit);
        assert_eq!(parse("false").unwrap(), RoomInvitations::Disabled);
        assert_eq!(parse("\"False\"").unwrap(), RoomInvitations::Disabled);
        assert!(parse("true").is_err());
    }
}

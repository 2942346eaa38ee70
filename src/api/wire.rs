//! The shapes that cross HTTP and the `perch-data` file, each defined once and used by both
//! ends: the server's routes, the [`Client`](super::Client) and the embedded target.

use std::collections::BTreeMap;

use crate::domain::audit::AuditAction;
use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub use super::live_fields::LiveFields;
use super::live_fields::{self, FieldsText};

pub use crate::domain::Marks;
use crate::domain::{ComplianceConfiguration, Kind};

/// Display name and key of the compliance singleton, the one object without a name of its own.
pub const COMPLIANCE_NAME: &str = "global";

/// The bookkeeping the store keeps beside every object's fields. Every path that shows an
/// object (`GET`, `/v1/state`, the embedded read, `perch-data` files) sends these fields beside
/// the object's own, under these names: this struct is their one definition, and
/// `envelope_fields_are_the_ones_every_path_sends` (in `tests/rules.rs`) holds the SQL-built
/// state to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    #[serde(default)]
    pub id: i64,
    /// Starts at 1 and grows with every change; sent as the `ETag`.
    pub version: i64,
    /// Whether the reconciler created or adopted it.
    #[serde(default)]
    pub managed: bool,
    /// Whether its manifest protects it: a plan that would remove it fails.
    #[serde(default)]
    pub protect: bool,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub updated_by: String,
    #[serde(default)]
    pub updated_at: String,
}

impl Envelope {
    /// The wire names of the envelope's fields, plus `kind`, which every shown object also
    /// carries: what is left of an object without them is its own fields.
    pub const FIELDS: [&'static str; 8] = [
        "kind",
        "id",
        "version",
        "managed",
        "protect",
        "createdAt",
        "updatedBy",
        "updatedAt",
    ];

    /// Whether the reconciler owns this object, and whether its manifest protects it.
    pub fn marks(&self) -> Marks {
        Marks {
            managed: self.managed,
            protect: self.protect,
        }
    }
}

/// One object as the server holds it, split into what identifies it, its envelope and its own
/// fields.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveObject {
    pub kind: Kind,
    pub name: String,
    /// Its own fields; read from the state, they stay JSON text until a path reads them.
    pub fields: LiveFields,
    pub meta: Envelope,
}

impl LiveObject {
    /// Splits an object as every path shows it (fields, `kind` and the envelope side by side).
    ///
    /// # Errors
    /// A missing or unknown kind, a missing name or version, an envelope field of the wrong
    /// type: said in words, for the caller to wrap.
    pub fn from_shown(mut fields: Map<String, Value>) -> Result<LiveObject, String> {
        let kind = fields
            .remove("kind")
            .and_then(|kind| kind.as_str().and_then(Kind::parse))
            .ok_or("an object without a known kind")?;
        let mut envelope = Map::new();
        for field in &Envelope::FIELDS[1..] {
            if let Some(value) = fields.remove(*field) {
                envelope.insert((*field).to_owned(), value);
            }
        }
        let meta: Envelope = serde_json::from_value(Value::Object(envelope))
            .map_err(|error| format!("a {kind}'s bookkeeping: {error}"))?;
        let name = object_name(
            kind,
            fields
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned),
        )?;
        Ok(LiveObject {
            kind,
            name,
            fields: fields.into(),
            meta,
        })
    }
}

/// An object's name: the compliance configuration's own, or the `name` its fields give.
pub(crate) fn object_name(kind: Kind, name: Option<String>) -> Result<String, String> {
    match kind {
        Kind::ComplianceConfiguration => Ok(COMPLIANCE_NAME.to_owned()),
        _ => name.ok_or_else(|| format!("a {kind} has no name")),
    }
}

/// An object as every path shows it, read straight into a [`LiveObject`]: `kind` and the
/// envelope's fields go to their places as the parser meets them, and the object's own fields
/// are kept as the text they were sent as ([`LiveFields`]), so that no map is built for
/// them until a path reads them (reading a hundred thousand objects into maps of owned keys
/// was a third of a no-op plan's memory). Reads what [`LiveObject::from_shown`] reads, with
/// the same refusals.
#[derive(Debug)]
pub struct ShownObject(pub LiveObject);

impl<'de> Deserialize<'de> for ShownObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = ShownObject;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an object with its kind and bookkeeping fields")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ShownObject, A::Error> {
                use serde::de::Error as _;
                let mut kind = None;
                let mut name = None;
                let mut envelope: Vec<(&'static str, &'de RawValue)> = Vec::with_capacity(7);
                let mut fields = FieldsText::default();
                while let Some(key) = map.next_key_seed(live_fields::Key)? {
                    let value: &'de RawValue = map.next_value()?;
                    if key == "kind" {
                        kind = serde_json::from_str::<String>(value.get()).ok();
                    } else if let Some(field) = Envelope::FIELDS[1..].iter().find(|f| **f == key) {
                        // Given twice, the last counts, as in a map.
                        envelope.retain(|(given, _)| given != field);
                        envelope.push((field, value));
                    } else {
                        if key == "name" {
                            name = serde_json::from_str::<String>(value.get()).ok();
                        }
                        fields.push(&key, matches!(key, Cow::Owned(_)), value);
                    }
                }
                let kind = kind
                    .as_deref()
                    .and_then(Kind::parse)
                    .ok_or_else(|| A::Error::custom("an object without a known kind"))?;
                let meta = Envelope::deserialize(serde::de::value::MapDeserializer::<
                    _,
                    serde_json::Error,
                >::new(envelope.into_iter()))
                .map_err(|error| A::Error::custom(format!("a {kind}'s bookkeeping: {error}")))?;
                let name = object_name(kind, name).map_err(A::Error::custom)?;
                let fields = fields
                    .finish()
                    .map_err(|error| A::Error::custom(format!("a {kind}'s fields: {error}")))?;
                Ok(ShownObject(LiveObject {
                    kind,
                    name,
                    fields,
                    meta,
                }))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl From<ShownObject> for LiveObject {
    fn from(ShownObject(object): ShownObject) -> LiveObject {
        object
    }
}

/// An object as a row (`GET /v1/state?layout=rows`, and the store's rows the embedded target
/// reads, [`crate::store::Store::state_row_pages_to`]):
/// `[kind, id, version, managed, protect, createdAt, updatedBy, updatedAt, body]`, read by
/// position, the body checked whole and kept as its text. Reads what [`ShownObject`] reads of
/// the same object shown, with no key of the envelope to parse and the body taken as one
/// value (`stored_rows_read_as_the_objects_shown`; `tests/router.rs`
/// `the_state_sent_in_parts_is_the_state_written_whole` compares the targets).
#[derive(Debug)]
pub struct StoredRow(pub LiveObject);

impl From<StoredRow> for LiveObject {
    fn from(StoredRow(object): StoredRow) -> LiveObject {
        object
    }
}

impl<'de> serde::Deserialize<'de> for StoredRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> serde::de::Visitor<'de> for Row {
            type Value = StoredRow;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a stored object's row")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut row: A,
            ) -> Result<StoredRow, A::Error> {
                use serde::de::Error as _;
                fn next<'de, T: serde::Deserialize<'de>, A: serde::de::SeqAccess<'de>>(
                    row: &mut A,
                    column: &str,
                ) -> Result<T, A::Error> {
                    row.next_element()?
                        .ok_or_else(|| A::Error::custom(format!("a row without its {column}")))
                }
                let kind: std::borrow::Cow<'de, str> = next(&mut row, "kind")?;
                let kind = Kind::parse(&kind)
                    .ok_or_else(|| A::Error::custom("an object without a known kind"))?;
                let meta = Envelope {
                    id: next(&mut row, "id")?,
                    version: next(&mut row, "version")?,
                    managed: next(&mut row, "managed")?,
                    protect: next(&mut row, "protect")?,
                    created_at: next(&mut row, "createdAt")?,
                    updated_by: next(&mut row, "updatedBy")?,
                    updated_at: next(&mut row, "updatedAt")?,
                };
                let body: &'de RawValue = next(&mut row, "fields")?;
                if row.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::custom(
                        "a row of more columns than a stored object's",
                    ));
                }
                let (fields, name) = LiveFields::from_object_text(body.get())
                    .map_err(|error| A::Error::custom(format!("a {kind}'s fields: {error}")))?;
                let name = object_name(kind, name).map_err(A::Error::custom)?;
                Ok(StoredRow(LiveObject {
                    kind,
                    name,
                    fields,
                    meta,
                }))
            }
        }
        deserializer.deserialize_seq(Row)
    }
}

/// Everything the server holds, as the plan engine compares it.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub objects: BTreeMap<(Kind, String), LiveObject>,
    pub compliance: Option<LiveObject>,
}

impl Live {
    /// Builds the live state from objects as shown; the compliance configuration, when never
    /// set, is its defaults at version 0.
    ///
    /// # Errors
    /// The first object that cannot be read, in words.
    pub fn from_shown(objects: Vec<Map<String, Value>>) -> Result<Live, String> {
        let objects = objects
            .into_iter()
            .map(LiveObject::from_shown)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Live::from_objects(objects))
    }

    /// Builds the live state from objects read with [`ShownObject`].
    pub fn from_objects(objects: impl IntoIterator<Item = LiveObject>) -> Live {
        let mut live = Live::default();
        let mut named = Vec::new();
        for object in objects {
            if object.kind == Kind::ComplianceConfiguration {
                live.compliance = Some(object);
            } else {
                named.push(((object.kind, object.name.clone()), object));
            }
        }
        // Sorted once and built in bulk rather than inserted one by one; of two objects of
        // one key the later wins, as inserting them in turn would have it.
        live.objects = named.into_iter().collect();
        if live.compliance.is_none() {
            let defaults = match serde_json::to_value(ComplianceConfiguration::default()) {
                Ok(Value::Object(fields)) => fields,
                _ => Map::new(),
            };
            live.compliance = Some(LiveObject {
                kind: Kind::ComplianceConfiguration,
                name: COMPLIANCE_NAME.to_owned(),
                fields: defaults.into(),
                meta: Envelope::default(),
            });
        }
        live
    }
}

/// The document of `GET /v1/state` as a client reads it: its objects read in its layout
/// ([`StateDocumentRead::objects`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocumentRead<'a> {
    pub format_version: u32,
    #[serde(default)]
    pub layout: StateLayout,
    #[serde(borrow)]
    objects: &'a RawValue,
}

impl StateDocumentRead<'_> {
    /// The objects, each straight into its parts.
    ///
    /// # Errors
    /// Objects that are not the JSON of the document's layout.
    pub fn objects(&self) -> Result<Vec<LiveObject>, serde_json::Error> {
        let objects = self.objects.get();
        Ok(match self.layout {
            StateLayout::Objects => serde_json::from_str::<Vec<ShownObject>>(objects)?
                .into_iter()
                .map(LiveObject::from)
                .collect(),
            StateLayout::Rows => serde_json::from_str::<Vec<StoredRow>>(objects)?
                .into_iter()
                .map(LiveObject::from)
                .collect(),
        })
    }
}

/// How `GET /v1/state` writes each object (`?layout=`): as every path shows it
/// ([`ShownObject`], the default), or as a row ([`StoredRow`]), which a reader in this
/// program parses in about half the work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateLayout {
    #[default]
    Objects,
    Rows,
}

impl StateLayout {
    pub const ALL: [StateLayout; 2] = [StateLayout::Objects, StateLayout::Rows];

    /// The `layout` query value that names this layout.
    pub fn name(self) -> &'static str {
        match self {
            StateLayout::Objects => "objects",
            StateLayout::Rows => "rows",
        }
    }

    /// The layout a `layout` query value names.
    pub fn parse(text: &str) -> Option<StateLayout> {
        StateLayout::ALL
            .into_iter()
            .find(|layout| layout.name() == text)
    }

    /// How a Perch server begins a document of this layout, before its objects.
    pub fn opening(self) -> &'static str {
        match self {
            StateLayout::Objects => STATE_OPENING,
            StateLayout::Rows => STATE_ROWS_OPENING,
        }
    }
}

/// The document of `GET /v1/state`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateDocument {
    pub format_version: u32,
    pub objects: Vec<Map<String, Value>>,
}

/// `GET /v1/state/changes`: where the configuration stands, cheaply. Every committed change
/// of an object (or a token) grows `generation`; `objects` and `lastId` tell one database
/// from another that happens to stand at the same generation. Equal counters mean an equal
/// `GET /v1/state`: `perch plan`'s cache is keyed by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeCounter {
    pub generation: i64,
    pub objects: i64,
    pub last_id: i64,
}

/// The state format this build reads and writes.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// How a Perch server begins the document of `GET /v1/state`, before its objects: what a
/// reader may take its objects as they arrive after (`live::state_pages`). A test checks it
/// names [`STATE_FORMAT_VERSION`].
pub const STATE_OPENING: &str = "{\"formatVersion\":1,\"objects\":[";
/// How it begins with `?layout=rows` ([`StateLayout::Rows`]).
pub const STATE_ROWS_OPENING: &str = "{\"formatVersion\":1,\"layout\":\"rows\",\"objects\":[";
/// How it ends, after them, in either layout.
pub const STATE_CLOSING: &str = "]}";

/// `POST /v1/rooms/{name}/clear` (`Clear-CsPersistentChatRoom`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClearRequest {
    /// Delete messages posted on or before this date (the whole day) or time.
    pub end_date: String,
    /// Count what would go, change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The answer to a clear.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClearReply {
    pub room: String,
    /// How many messages went (or, in a dry run, would go).
    pub removed: u64,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/rooms/{name}/messages/remove` (`Remove-CsPersistentChatMessage`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveRequest {
    /// Only messages by this author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// Space-separated keywords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// `all`, `or` (also `any`) or `exact`.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matching: Option<String>,
    #[serde(default)]
    pub case_sensitive: bool,
    /// Leave this text in place of each match; absent deletes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<String>,
    /// Count what would be touched, change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// The answer to a removal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveReply {
    pub room: String,
    /// How many messages were (or, in a dry run, would be) removed or replaced.
    pub touched: u64,
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /v1/locks/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockRequest {
    pub holder: String,
    #[serde(default = "LockRequest::default_ttl")]
    pub ttl_seconds: i64,
}

impl LockRequest {
    fn default_ttl() -> i64 {
        120
    }
}

/// What an export holds (the original's `-Level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Configuration and messages.
    #[default]
    All,
    /// The directory: groups.
    User,
    /// Categories, with the groups and add-ins they and their rooms name.
    Category,
    /// Categories and rooms, with the groups and add-ins they name; no messages.
    RoomDirectory,
    /// Messages only, of rooms that exist where they are imported.
    Content,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::All,
        Level::User,
        Level::Category,
        Level::RoomDirectory,
        Level::Content,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::All => "all",
            Level::User => "user",
            Level::Category => "category",
            Level::RoomDirectory => "room-directory",
            Level::Content => "content",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|level| level.as_str() == text)
    }
}

/// What to export: `GET /v1/data/export?level=&scope=&since=&disableExported=`.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    pub level: Level,
    /// Only these categories and their rooms; all when empty.
    pub scope: Vec<String>,
    /// Only messages posted on or after this date or time.
    pub since: Option<String>,
    /// Disable the exported rooms afterwards.
    pub disable_exported: bool,
}

impl ExportOptions {
    /// The query string that carries these options (`scope` repeats).
    pub fn to_query(&self) -> String {
        let mut pairs = vec![
            format!("level={}", self.level.as_str()),
            format!("disableExported={}", self.disable_exported),
        ];
        pairs.extend(
            self.scope
                .iter()
                .map(|scope| format!("scope={}", percent_encode(scope))),
        );
        if let Some(since) = &self.since {
            pairs.push(format!("since={}", percent_encode(since)));
        }
        pairs.join("&")
    }
}

/// `GET /v1/audit`: which entries, newest first. Every field is optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditFilter {
    /// An object kind (`Room`, `Category`, ...) or `Token`, `Lock`, `Data`, `Archive`.
    pub kind: Option<String>,
    pub name: Option<String>,
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    /// At or after this date or time.
    pub since: Option<String>,
    /// At or before this date (the whole day) or time.
    pub until: Option<String>,
    /// The cursor: entries older than this id (the previous page's `next`).
    pub before: Option<i64>,
    /// 1 to 1000; 100 by default.
    pub limit: Option<i64>,
}

impl AuditFilter {
    /// The query string of `GET /v1/audit`.
    pub fn to_query(&self) -> String {
        let mut pairs = Vec::new();
        let mut push = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                pairs.push(format!("{name}={}", percent_encode(&value)));
            }
        };
        push("kind", self.kind.clone());
        push("name", self.name.clone());
        push("actor", self.actor.clone());
        push(
            "action",
            self.action.map(|action| action.as_str().to_owned()),
        );
        push("since", self.since.clone());
        push("until", self.until.clone());
        push("before", self.before.map(|id| id.to_string()));
        push("limit", self.limit.map(|limit| limit.to_string()));
        pairs.join("&")
    }
}

/// One recorded act.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: AuditAction,
    pub kind: String,
    pub name: String,
    /// Changed fields (`{"changes": {field: {before, after}}}`), a created object
    /// (`{"after": ..}`), a removed one (`{"before": ..}`), a filter and a count.
    pub detail: Value,
}

/// A page of the audit trail, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// `PUT /v1/holds/{rooms|categories}/{name}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HoldRequest {
    /// Why: a case, a matter, a request (1 to 1024 characters).
    pub reason: String,
}

/// A bearer token as lists show it: never the token, nor its whole hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// The first 16 hex characters of its SHA-256: what `revoke` takes.
    pub id: String,
    pub user: String,
    /// `admin` or `user`.
    pub role: String,
    pub created_at: String,
    /// Absent: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// To the minute; absent: never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// The filters of `GET /v1/rooms` (and of the panel's rooms page), as `Get-CsPersistentChatRoom`
/// filtered, with the cursor of the next page. Every field is text as a query string carries
/// it; [`RoomQuery::filter`] reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// Text in the name or the description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// The last name of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl RoomQuery {
    fn given(value: Option<&String>) -> Option<String> {
        value
            .map(|text| text.trim())
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    }

    /// The filter the query asks for, or the field that does not read and why.
    ///
    /// # Errors
    /// A principal, privacy, type or disabled value that does not read.
    pub fn filter(&self) -> Result<crate::domain::RoomFilter, (&'static str, String)> {
        use crate::domain::{Principal, Privacy, RoomType};
        let principal = |field: &'static str, value: Option<&String>| {
            Self::given(value)
                .map(|text| Principal::parse(&text).map_err(|error| (field, error.to_string())))
                .transpose()
        };
        let privacy = Self::given(self.privacy.as_ref())
            .map(|text| {
                Privacy::parse(&text).ok_or((
                    "privacy",
                    format!("privacy is open, closed or secret, not `{text}`"),
                ))
            })
            .transpose()?;
        let room_type = Self::given(self.room_type.as_ref())
            .map(|text| {
                RoomType::parse(&text).ok_or((
                    "type",
                    format!("type is normal or auditorium, not `{text}`"),
                ))
            })
            .transpose()?;
        let disabled = Self::given(self.disabled.as_ref())
            .map(|text| {
                crate::domain::spelling::parse_bool(&text).ok_or((
                    "disabled",
                    format!("disabled is true or false, not `{text}`"),
                ))
            })
            .transpose()?;
        Ok(crate::domain::RoomFilter {
            category: Self::given(self.category.as_ref()),
            addin: Self::given(self.addin.as_ref()),
            member: principal("member", self.member.as_ref())?,
            manager: principal("manager", self.manager.as_ref())?,
            privacy,
            room_type,
            disabled,
            text: Self::given(self.q.as_ref()),
        })
    }

    /// The query string of the filters (not the cursor), percent-encoded.
    pub fn filter_query(&self) -> String {
        [
            ("category", &self.category),
            ("addin", &self.addin),
            ("member", &self.member),
            ("manager", &self.manager),
            ("privacy", &self.privacy),
            ("type", &self.room_type),
            ("disabled", &self.disabled),
            ("q", &self.q),
        ]
        .iter()
        .filter_map(|(name, value)| {
            Self::given(value.as_ref()).map(|value| format!("{name}={}", percent_encode(&value)))
        })
        .collect::<Vec<_>>()
        .join("&")
    }

    /// Whether it asks for anything beyond every room at once.
    pub fn is_paged(&self) -> bool {
        *self != RoomQuery::default()
    }
}

/// A page of `GET /v1/rooms` with filters or a cursor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoomListPage {
    pub items: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `PUT /v1/applied`: the manifests an apply carried out, for the Git view.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppliedRequest {
    /// The revision the manifests came from (`perch apply --revision`), if given.
    #[serde(default)]
    pub revision: Option<String>,
    /// Where the apply stopped and why, when it failed part way: the actions before it are
    /// done, the rest are not.
    #[serde(default)]
    pub stopped: Option<String>,
    pub files: Vec<crate::manifest::SourceFile>,
}

/// `GET /v1/applied`: the last apply's manifests, who applied them and when.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub applied_by: String,
    pub applied_at: String,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub stopped: Option<String>,
    pub files: Vec<crate::manifest::SourceFile>,
}

/// `POST /v1/tokens`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    /// The user it acts as: `sip:user@domain`.
    pub user: String,
    /// `admin` or `user`.
    pub role: String,
    /// How long it works: `90m`, `12h`, `30d`, `52w`; for ever when absent.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// The answer to `POST /v1/tokens`: the token, shown this once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenCreated {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `POST /v1/messages/counts`: the rooms, by id, whose messages to count.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageCountsRequest {
    pub room_ids: Vec<i64>,
}

/// The answer: messages per room id (rooms without any left out).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MessageCounts {
    pub counts: BTreeMap<i64, u64>,
}

/// What an import did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportReport {
    pub objects: usize,
    pub messages: usize,
    /// The file was checked and counted, and nothing was written.
    #[serde(default)]
    pub dry_run: bool,
}

/// The first line of a `perch-data` file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataHeader {
    pub format: String,
    pub version: u32,
    pub level: Level,
    #[serde(default)]
    pub scope: Vec<String>,
    #[serde(default)]
    pub since: Option<String>,
    pub exported_at: String,
}

/// A message line of a `perch-data` file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataMessage {
    pub id: i64,
    pub room_id: i64,
    pub author: String,
    pub body: String,
    pub posted_at: String,
    pub in_history: bool,
    pub replaced: bool,
}

/// The last line of a `perch-data` file.
#[derive(Serialize, Deserialize)]
pub struct DataEnd {
    pub objects: usize,
    pub messages: usize,
    pub sha256: String,
}

/// A whole `perch-data` file: the header, the object and message lines as given, then the end
/// line with their counts and the SHA-256 of every byte before it. The one writer of the format,
/// for `perch data export` and for what `perch data import --sfb` brings from elsewhere.
///
/// # Errors
/// Only if the header cannot be written as JSON.
pub fn perch_data_file(
    header: &DataHeader,
    lines: &[String],
    objects: usize,
    messages: usize,
) -> Result<(Vec<u8>, DataEnd), serde_json::Error> {
    use sha2::Digest;
    let mut bytes = serde_json::to_vec(header)?;
    bytes.push(b'\n');
    for line in lines {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    let digest = sha2::Sha256::digest(&bytes);
    let end = DataEnd {
        objects,
        messages,
        sha256: crate::text::hex(&digest),
    };
    bytes.extend_from_slice(serde_json::json!({ "end": &end }).to_string().as_bytes());
    bytes.push(b'\n');
    Ok((bytes, end))
}

/// The collection segment of a URL for each kind.
pub fn collection_of(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "groups",
        Kind::Addin => "addins",
        Kind::Category => "categories",
        Kind::Room => "rooms",
        Kind::ComplianceConfiguration => "compliance",
    }
}

/// Percent-encodes everything but unreserved characters, for one path segment or query value.
pub fn percent_encode(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes and `+`; malformed escapes stay as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |byte: u8| char::from(byte).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| Some((hex(*bytes.get(index + 1)?)?, hex(*bytes.get(index + 2)?)?)))
            .flatten();
        match (bytes[index], escaped) {
            (b'%', Some((high, low))) => {
                // Two hex digits make at most 255.
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                index += 1;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading an object straight into its parts gives what splitting the whole map gives,
    /// and refuses what it refuses.
    #[test]
    fn shown_objects_read_straight_into_parts_as_split_maps_do() {
        let cases = [
            r#"{"name":"room-1","category":"Eng","members":["sip:a@contoso.com"],"kind":"Room","id":7,"version":3,"managed":true,"protect":false,"createdAt":"2026-01-01T00:00:00Z","updatedBy":"sip:\"odd\"\\admin@contoso.com","updatedAt":"2026-01-02T00:00:00Z"}"#,
            r#"{"kind":"ComplianceConfiguration","enabled":true,"version":2}"#,
            r#"{"kind":"Category","name":"Eng","version":1,"description":{"nested":["kept", 1, null]}}"#,
            r#"{"name":"x","version":1}"#,
            r#"{"kind":"Planet","name":"x","version":1}"#,
            r#"{"kind":"Room","name":"x"}"#,
            r#"{"kind":"Room","version":1}"#,
            r#"{"kind":"Room","name":"x","version":"one"}"#,
        ];
        for case in cases {
            let map: Map<String, Value> = serde_json::from_str(case).expect("a JSON object");
            let split = LiveObject::from_shown(map);
            let straight =
                serde_json::from_str::<ShownObject>(case).map(|ShownObject(object)| object);
            match (split, straight) {
                (Ok(split), Ok(straight)) => assert_eq!(split, straight, "{case}"),
                (Err(split), Err(straight)) => assert!(
                    straight.to_string().starts_with(&split),
                    "{case}: `{straight}` does not say `{split}`"
                ),
                (split, straight) => panic!("{case}: split {split:?}, straight {straight:?}"),
            }
        }
    }

    /// A row reads as the same object shown reads; a row that cannot be read is an error
    /// naming why, never a panic, and never a text kept that a later read could not parse.
    #[test]
    fn stored_rows_read_as_the_objects_shown() {
        let row = |kind: &str, body: &str| {
            format!(
                r#"["{kind}",7,3,true,false,"2026-01-01T00:00:00Z","sip:\"odd\"\\admin@contoso.com","2026-01-02T00:00:00Z",{body}]"#
            )
        };
        let shown = |kind: &str, body: &str| {
            let envelope = r#""id":7,"version":3,"managed":true,"protect":false,"createdAt":"2026-01-01T00:00:00Z","updatedBy":"sip:\"odd\"\\admin@contoso.com","updatedAt":"2026-01-02T00:00:00Z""#;
            let fields = &body[1..body.len() - 1];
            let comma = if fields.is_empty() { "" } else { "," };
            format!(r#"{{"kind":"{kind}",{envelope}{comma}{fields}}}"#)
        };
        for (kind, body) in [
            (
                "Room",
                r#"{"name":"room-1","category":"Eng","members":["sip:a@contoso.com"]}"#,
            ),
            (
                "Room",
                r#"{"name":"r\u00e9\"1\"","description":"a\nb \ud83d\ude00"}"#,
            ),
            (
                "Category",
                r#"{"name":"Eng","description":{"nested":["kept",1,null,1.5]}}"#,
            ),
            ("ComplianceConfiguration", r#"{"enabled":true}"#),
            ("ComplianceConfiguration", "{}"),
            ("Group", r#"{"name":"first","name":"last"}"#),
        ] {
            let read = serde_json::from_str::<StoredRow>(&row(kind, body))
                .map(|StoredRow(object)| object)
                .expect(body);
            let as_shown = serde_json::from_str::<ShownObject>(&shown(kind, body))
                .map(|ShownObject(object)| object)
                .expect(body);
            assert_eq!(read, as_shown, "{body}");
            assert_eq!(read.name, as_shown.name, "{body}");
        }
        let refused: Vec<String> = [
            row("Planet", r#"{"name":"x"}"#),
            row("Room", r#"{"category":"Eng"}"#),
            row("Room", r#"{"name":7}"#),
            row("Room", r#"["name","x"]"#),
            row("Room", r#"{"name":"x","size":1e400}"#),
            row("Room", r#"{"name":"x","note":"\ud800"}"#),
            row(
                "Room",
                &format!(
                    r#"{{"name":"x","deep":{}{}}}"#,
                    "[".repeat(200),
                    "]".repeat(200)
                ),
            ),
            r#"["Room",7,3,true,false,"a","b","c"]"#.to_owned(),
            r#"["Room",7,3,true,false,"a","b","c",{"name":"x"},1]"#.to_owned(),
            r#"["Room","7",3,true,false,"a","b","c",{"name":"x"}]"#.to_owned(),
        ]
        .iter()
        .map(|text| match serde_json::from_str::<StoredRow>(text) {
            Ok(StoredRow(object)) => panic!("{text} read as {object:?}"),
            Err(error) => error.to_string(),
        })
        .collect();
        expect_test::expect![[r#"
            [
                "an object without a known kind at line 1 column 10",
                "a Room has no name at line 1 column 121",
                "a Room has no name at line 1 column 113",
                "a Room's fields: invalid type: sequence, expected an object's fields at line 1 column 0",
                "a Room's fields: number out of range at line 1 column 24",
                "a Room's fields: unexpected end of hex escape at line 1 column 27",
                "a Room's fields: recursion limit exceeded at line 1 column 146",
                "a row without its fields at line 1 column 35",
                "a row of more columns than a stored object's at line 1 column 50",
                "invalid type: string \"7\", expected i64 at line 1 column 11",
            ]
        "#]].assert_debug_eq(&refused);
    }

    /// A document read whole (one not begun exactly as Perch writes it) is read in the layout
    /// it names: rows and objects give the same objects, and an unknown layout is refused.
    #[test]
    fn whole_documents_are_read_in_their_layout() {
        let rows = r#"{ "formatVersion": 1, "layout": "rows", "objects": [
            ["Group", 7, 3, true, false, "2026-01-01T00:00:00Z", "sip:a@x.com", "2026-01-02T00:00:00Z", {"name": "g", "members": []}]
        ] }"#;
        let objects = r#"{ "objects": [
            {"kind": "Group", "name": "g", "members": [], "id": 7, "version": 3, "managed": true, "protect": false, "createdAt": "2026-01-01T00:00:00Z", "updatedBy": "sip:a@x.com", "updatedAt": "2026-01-02T00:00:00Z"}
        ], "formatVersion": 1 }"#;
        let read = |text: &str| {
            serde_json::from_str::<StateDocumentRead>(text)
                .and_then(|document| document.objects())
                .map_err(|error| error.to_string())
        };
        let in_rows = read(rows).expect("rows");
        assert_eq!(in_rows.len(), 1);
        assert_eq!(in_rows, read(objects).expect("objects"));
        assert!(read(&rows.replace("\"rows\"", "\"columns\"")).is_err());
        assert!(
            read(&objects.replace("\"objects\": [", "\"layout\": \"rows\", \"objects\": ["))
                .is_err()
        );
    }

    /// `FIELDS` names exactly what the envelope serialises, plus `kind`.
    #[test]
    fn envelope_fields_match_its_serialisation() {
        let Ok(Value::Object(shown)) = serde_json::to_value(Envelope::default()) else {
            panic!("an envelope serialises to an object");
        };
        let mut names: Vec<&str> = shown.keys().map(String::as_str).collect();
        names.push("kind");
        names.sort_unstable();
        let mut fields = Envelope::FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(names, fields);
    }

    #[test]
    fn percent_encoding_round_trips() {
        for text in ["plain", "a b/c?d&e=f", "é%+", "../x"] {
            assert_eq!(percent_decode(&percent_encode(text)), text);
        }
    }

    #[test]
    fn export_options_round_trip_through_the_query() {
        let options = ExportOptions {
            level: Level::RoomDirectory,
            scope: vec!["a b".into(), "c&d".into()],
            since: Some("2026-01-01".into()),
            disable_exported: true,
        };
        expect_test::expect![
            "level=room-directory&disableExported=true&scope=a%20b&scope=c%26d&since=2026-01-01"
        ]
        .assert_eq(&options.to_query());
    }
}

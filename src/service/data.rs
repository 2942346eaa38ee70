//! Moving chat data between servers: `Export-CsPersistentChatData` and
//! `Import-CsPersistentChatData`, in a documented, checked format.
//!
//! # Format (perch-data, version 1)
//! JSON Lines, UTF-8. The first line is the header `{"format": "perch-data", "version": 1,
//! "level", "scope", "since", "exportedAt"}`; then one line per object `{"object": {...}}` (the
//! object as `GET /v1/state` shows it: fields, `kind`, `id`, `version`, `managed`, `protect`,
//! `createdAt`, `updatedBy`, `updatedAt`; an object without `id` is new to Perch, as what
//! `perch data import --sfb` brings, and is created with a new id by the importer) and one per
//! message `{"message": {"id", "roomId",
//! "author", "body", "postedAt", "inHistory", "replaced"}}`; the last line is `{"end":
//! {"objects": N, "messages": N, "sha256": HEX}}`, the SHA-256 of every byte before it.
//!
//! # Guarantees
//! An import checks the whole file (its end line, counts and checksum) before it changes
//! anything, and then changes everything in one transaction: a truncated or corrupted file, or
//! one that meets objects already present (without `replace_existing`), changes nothing.

use crate::api::ErrorCode;
use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use sha2::Digest;

use super::WriteAccess;
use super::compliance::{record, refuse_if_held};
use super::{Caller, Result, Service, ServiceError, hex, require_admin};
use crate::api::LiveObject;
use crate::api::wire::{
    DataEnd, DataHeader, DataMessage, ExportOptions, ImportReport, Level, perch_data_file,
};
use crate::clock;
use crate::domain::Kind;
use crate::domain::audit::AuditAction;
use crate::domain::compliance::HeldAct;
use crate::store::{MessageRow, ObjectWrite};

impl Service {
    /// Writes an export; administrators only. `progress` hears the lines written so far.
    pub async fn export_data(
        &self,
        caller: &Caller,
        options: &ExportOptions,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<Vec<u8>> {
        require_admin(caller, "export chat data")?;
        let since = options
            .since
            .as_deref()
            .map(|text| {
                clock::parse(text, false).map(clock::format).ok_or_else(|| {
                    ServiceError::invalid(
                        "since",
                        ErrorCode::InvalidField,
                        format!("`{text}` is not a date or time"),
                    )
                })
            })
            .transpose()?;
        let state = self.state_json(caller).await?;
        let state: Value = serde_json::from_str(&state).map_err(ServiceError::internal)?;
        let objects: Vec<(LiveObject, Map<String, Value>)> = state["objects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|object| object.as_object().cloned())
            .map(|shown| {
                LiveObject::from_shown(shown.clone())
                    .map(|object| (object, shown))
                    .map_err(ServiceError::internal)
            })
            .collect::<Result<_>>()?;
        let category_of = |object: &LiveObject| {
            object
                .fields
                .get("category")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        for category in &options.scope {
            if !objects
                .iter()
                .any(|(o, _)| o.kind == Kind::Category && &o.name == category)
            {
                return Err(ServiceError::invalid(
                    "scope",
                    ErrorCode::UnknownCategory,
                    format!("category `{category}` does not exist"),
                ));
            }
        }
        let in_scope_category =
            |name: &str| options.scope.is_empty() || options.scope.iter().any(|s| s == name);
        let rooms: Vec<&LiveObject> = objects
            .iter()
            .map(|(o, _)| o)
            .filter(|o| o.kind == Kind::Room && in_scope_category(&category_of(o)))
            .collect();
        let wanted_kinds: &[Kind] = match options.level {
            Level::All => &[
                Kind::Group,
                Kind::Addin,
                Kind::Category,
                Kind::Room,
                Kind::ComplianceConfiguration,
            ],
            Level::User => &[Kind::Group],
            Level::Category => &[Kind::Group, Kind::Addin, Kind::Category],
            Level::RoomDirectory => &[Kind::Group, Kind::Addin, Kind::Category, Kind::Room],
            Level::Content => &[],
        };
        let mut lines = Vec::new();
        let header = DataHeader {
            format: "perch-data".to_owned(),
            version: 1,
            level: options.level,
            scope: options.scope.clone(),
            since: since.clone(),
            exported_at: clock::now(),
        };
        let mut object_count = 0;
        for (object, shown) in &objects {
            if !wanted_kinds.contains(&object.kind) {
                continue;
            }
            let keep = match object.kind {
                Kind::Category => in_scope_category(&object.name),
                Kind::Room => in_scope_category(&category_of(object)),
                _ => true,
            };
            if keep {
                lines.push(json!({"object": shown}).to_string());
                object_count += 1;
            }
        }
        let mut message_count = 0;
        if matches!(options.level, Level::All | Level::Content) {
            for room in &rooms {
                for message in self
                    .store()
                    .room_history(room.meta.id, since.as_deref())
                    .await?
                {
                    let wire = DataMessage {
                        id: message.id,
                        room_id: message.room_id,
                        author: message.author,
                        body: message.body,
                        posted_at: message.posted_at,
                        in_history: message.in_history,
                        replaced: message.replaced,
                    };
                    lines.push(json!({"message": wire}).to_string());
                    message_count += 1;
                    if message_count % 10_000 == 0 {
                        progress(lines.len() + 1);
                    }
                }
            }
        }
        let (bytes, end) = perch_data_file(&header, &lines, object_count, message_count)
            .map_err(ServiceError::internal)?;
        progress(lines.len() + 2);
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        record(
            &mut tx,
            caller,
            AuditAction::Export,
            "Data",
            options.level.as_str(),
            json!({
                "scope": options.scope, "since": options.since,
                "disableExported": options.disable_exported,
                "objects": end.objects, "messages": end.messages, "sha256": end.sha256,
            }),
        )
        .await?;
        tx.commit().await?;
        if options.disable_exported && !matches!(options.level, Level::User | Level::Category) {
            // Through `patch`, so that the change is versioned and announced like any other.
            for room in rooms {
                let mut disable = Map::new();
                disable.insert("disabled".to_owned(), Value::Bool(true));
                self.patch(
                    caller,
                    Kind::Room,
                    &room.name,
                    disable,
                    super::Precondition::None,
                )
                .await?;
            }
        }
        Ok(bytes)
    }

    /// Whether the caller may import at all, asked before a request's body is read.
    ///
    /// # Errors
    /// Forbidden for anyone but administrators.
    pub fn may_import(&self, caller: &Caller) -> Result<()> {
        require_admin(caller, "import chat data")
    }

    /// Imports an export; administrators only.
    ///
    /// # Errors
    /// A truncated or corrupted file (nothing changes), objects or messages already present
    /// without `replace_existing` (listed; nothing changes), a content import whose rooms are
    /// missing.
    pub async fn import_data(
        &self,
        caller: &Caller,
        bytes: &[u8],
        replace_existing: bool,
    ) -> Result<ImportReport> {
        self.import_or_check(caller, bytes, replace_existing, false)
            .await
    }

    /// [`Service::import_data`] run to its end in a transaction that is rolled back: every check,
    /// the counts, nothing written and nothing audited.
    pub async fn check_import(
        &self,
        caller: &Caller,
        bytes: &[u8],
        replace_existing: bool,
    ) -> Result<ImportReport> {
        self.import_or_check(caller, bytes, replace_existing, true)
            .await
    }

    async fn import_or_check(
        &self,
        caller: &Caller,
        bytes: &[u8],
        replace_existing: bool,
        dry_run: bool,
    ) -> Result<ImportReport> {
        require_admin(caller, "import chat data")?;
        let corrupt =
            |message: String| ServiceError::invalid("file", ErrorCode::CorruptImport, message);
        let text = std::str::from_utf8(bytes)
            .map_err(|_| corrupt("the file is not UTF-8 text".to_owned()))?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|index| index + 1)
            .ok_or_else(|| corrupt("the file is truncated: it has no end line".to_owned()))?;
        let end_line: Value = serde_json::from_str(text[body_end..].trim()).map_err(|_| {
            corrupt(
                "the file is truncated or corrupted: its last line is not the end line".to_owned(),
            )
        })?;
        let end: DataEnd = serde_json::from_value(end_line["end"].clone())
            .map_err(|_| corrupt("the file is truncated: it has no end line".to_owned()))?;
        let digest = hex(&sha2::Sha256::digest(&bytes[..body_end]));
        if digest != end.sha256 {
            return Err(corrupt(
                "the file is corrupted: its checksum does not match".to_owned(),
            ));
        }
        let mut lines = text[..body_end].lines();
        let header: DataHeader = lines
            .next()
            .and_then(|line| serde_json::from_str(line).ok())
            .ok_or_else(|| corrupt("the file has no perch-data header".to_owned()))?;
        if header.format != "perch-data" || header.version != 1 {
            return Err(corrupt(format!(
                "unsupported export format {} version {}",
                header.format, header.version
            )));
        }
        let mut objects: Vec<Map<String, Value>> = Vec::new();
        let mut messages: Vec<MessageRow> = Vec::new();
        for (number, line) in lines.enumerate() {
            let mut value: Map<String, Value> = serde_json::from_str(line)
                .map_err(|error| corrupt(format!("line {} is not JSON: {error}", number + 2)))?;
            if let Some(Value::Object(object)) = value.remove("object") {
                objects.push(object);
            } else if let Some(message) = value.remove("message") {
                let wire: DataMessage = serde_json::from_value(message)
                    .map_err(|error| corrupt(format!("line {}: {error}", number + 2)))?;
                messages.push(MessageRow {
                    id: wire.id,
                    room_id: wire.room_id,
                    author: wire.author,
                    body: wire.body,
                    posted_at: wire.posted_at,
                    in_history: wire.in_history,
                    replaced: wire.replaced,
                    idempotency_key: None,
                });
            } else {
                return Err(corrupt(format!(
                    "line {} is neither an object nor a message",
                    number + 2
                )));
            }
        }
        for message in &messages {
            let checked = crate::domain::check_message_text(&message.body);
            // An administrator may replace a text with nothing (and export keeps it so).
            let blank_replacement =
                message.replaced && checked == Err(crate::domain::MessageTextRefusal::Blank);
            if let (Err(refusal), false) = (checked, blank_replacement) {
                let why = match refusal {
                    crate::domain::MessageTextRefusal::Nul => {
                        "holds the character U+0000 (NUL), which no message holds".to_owned()
                    }
                    crate::domain::MessageTextRefusal::Blank
                    | crate::domain::MessageTextRefusal::TooLong(_) => format!(
                        "holds {} characters; a message holds 1 to {}",
                        message.body.chars().count(),
                        crate::domain::MAX_MESSAGE_LEN
                    ),
                };
                return Err(corrupt(format!("message {} {why}", message.id)));
            }
            if crate::domain::Principal::parse(&message.author)
                .map(|principal| principal.to_string())
                .ok()
                .as_deref()
                != Some(message.author.as_str())
            {
                return Err(corrupt(format!(
                    "message {} has the author `{}`, not a normalised user principal",
                    message.id,
                    crate::text::excerpt(&message.author, 80)
                )));
            }
            if crate::clock::parse(&message.posted_at, false)
                .map(crate::clock::format)
                .as_deref()
                != Some(message.posted_at.as_str())
            {
                return Err(corrupt(format!(
                    "message {} was posted at `{}`, not a time in the stored form (2026-01-31T17:00:00.000000Z)",
                    message.id,
                    crate::text::excerpt(&message.posted_at, 40)
                )));
            }
        }
        if objects.len() != end.objects || messages.len() != end.messages {
            return Err(corrupt(
                "the file's counts do not match its end line".to_owned(),
            ));
        }

        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let mut conflicts = Vec::new();
        let mut writes = Vec::new();
        for shown in &objects {
            let object =
                LiveObject::from_shown(shown.clone()).map_err(|error| corrupt(error.clone()))?;
            let (kind, name) = (object.kind, &object.name);
            // No id (0) is an object that never had one here: what `perch data import --sfb`
            // brings from Skype for Business. It gets a new id, like any object created now.
            if object.meta.id < 0 {
                return Err(corrupt(format!("{kind} `{name}` has a negative id")));
            }
            // Check the object is one this server accepts.
            let fields = Value::Object(object.fields.to_map());
            // Every rule the API applies to a value on its own applies to an imported one:
            // a valid checksum says the file is whole, not that what it holds is sound.
            let shown_name = crate::text::excerpt(name, 80);
            let problems = if kind == Kind::ComplianceConfiguration {
                serde_json::from_value::<crate::domain::ComplianceConfiguration>(fields)
                    .map_err(|error| corrupt(format!("the compliance configuration: {error}")))?
                    .problems()
            } else {
                let parsed = super::Object::from_json(kind, fields)
                    .map_err(|error| corrupt(format!("{kind} `{shown_name}`: {error}")))?;
                let mut normalised = parsed.clone();
                normalised.normalise();
                if normalised != parsed {
                    return Err(corrupt(format!(
                        "{kind} `{shown_name}` is not in the form this server stores (names in NFC, lists sorted): not a Perch export"
                    )));
                }
                parsed.problems()
            };
            if let Some(problem) = problems.first() {
                return Err(corrupt(format!(
                    "{kind} `{shown_name}`: {}: {}",
                    problem.field, problem.message
                )));
            }
            let by_name = tx.get(kind, name).await?;
            let by_id = if object.meta.id == 0 {
                None
            } else {
                tx.object_by_id(object.meta.id).await?
            };
            if by_name.is_some() || by_id.is_some() {
                if !replace_existing {
                    conflicts.push(format!("{kind} `{name}`"));
                    continue;
                }
                for existing in [by_name, by_id].into_iter().flatten() {
                    if existing.kind == Kind::Room {
                        let room: crate::domain::Room = super::decode(&existing)?;
                        refuse_if_held(&mut tx, HeldAct::RemoveRoom, &room.name, &room.category)
                            .await?;
                    }
                    tx.delete(existing.id, &caller.name, &clock::now()).await?;
                }
            }
            writes.push(object);
        }
        let message_ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        let taken = tx.existing_message_ids(&message_ids).await?;
        if !taken.is_empty() {
            if replace_existing {
                // Replacing messages deletes what users read: not in a held room.
                for room_id in tx.rooms_of_messages(&taken).await? {
                    if let Some(row) = tx.object_by_id(room_id).await?
                        && row.kind == Kind::Room
                    {
                        let room: crate::domain::Room = super::decode(&row)?;
                        refuse_if_held(
                            &mut tx,
                            HeldAct::RemoveMessages,
                            &room.name,
                            &room.category,
                        )
                        .await?;
                    }
                }
                tx.delete_messages(&taken).await?;
            } else {
                conflicts.push(format!(
                    "{} message(s) (ids {})",
                    taken.len(),
                    summarize_ids(&taken)
                ));
            }
        }
        if !conflicts.is_empty() {
            return Err(ServiceError::Conflict {
                code: ErrorCode::AlreadyExists,
                message: format!(
                    "the import meets what this server already holds: {}; nothing was imported (pass --replace-existing to replace them)",
                    conflicts.join(", ")
                ),
            });
        }
        let now = clock::now();
        for object in &writes {
            let text_field = |field: &str| object.fields.get(field).and_then(Value::as_str);
            let (category, addin) = if object.kind == Kind::Room {
                (text_field("category"), text_field("addin"))
            } else {
                (None, None)
            };
            let meta = &object.meta;
            let body = Value::Object(object.fields.to_map()).to_string();
            if meta.id == 0 {
                // Created now, by the importer, and on the record as every creation is.
                let write = ObjectWrite {
                    kind: object.kind,
                    name: &object.name,
                    category,
                    addin,
                    body,
                    marks: meta.marks(),
                    updated_by: &caller.name,
                    updated_at: &now,
                };
                tx.insert(write).await?;
                continue;
            }
            let write = ObjectWrite {
                kind: object.kind,
                name: &object.name,
                category,
                addin,
                body,
                marks: meta.marks(),
                updated_by: &meta.updated_by,
                updated_at: &meta.updated_at,
            };
            tx.insert_exact(meta.id, write, meta.version.max(1), &meta.created_at)
                .await?;
        }
        // Messages need their rooms, imported or already here.
        let room_ids: BTreeSet<i64> = messages.iter().map(|m| m.room_id).collect();
        for room_id in room_ids {
            let room = tx.object_by_id(room_id).await?;
            if room.is_none_or(|row| row.kind != Kind::Room) {
                return Err(ServiceError::Rule {
                    code: ErrorCode::UnknownRoom,
                    field: "roomId".to_owned(),
                    message: format!(
                        "messages of room id {room_id}, which this server does not hold; import its room directory first"
                    ),
                });
            }
        }
        tx.insert_messages_exact(&messages).await?;
        tx.sync_id_sequences().await?;
        record(
            &mut tx,
            caller,
            AuditAction::Import,
            "Data",
            "",
            json!({
                "objects": writes.len(), "messages": messages.len(),
                "replaceExisting": replace_existing, "sha256": end.sha256,
            }),
        )
        .await?;
        if dry_run {
            tx.rollback().await?;
            return Ok(ImportReport {
                objects: writes.len(),
                messages: messages.len(),
                dry_run: true,
            });
        }
        tx.commit().await?;
        if messages.len() + writes.len() > 10_000 {
            self.store().analyze().await?;
        }
        tracing::info!(objects = writes.len(), messages = messages.len(), by = %caller.name, "imported chat data");
        Ok(ImportReport {
            objects: writes.len(),
            messages: messages.len(),
            dry_run: false,
        })
    }
}

fn summarize_ids(ids: &[i64]) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(i64::to_string).collect();
    if ids.len() > 10 {
        format!("{} and {} more", shown.join(", "), ids.len() - 10)
    } else {
        shown.join(", ")
    }
}

/// What [`Service::migrate_into`] moved.
#[derive(Clone, Debug, Default)]
pub struct MigrateReport {
    pub objects: usize,
    pub messages: usize,
    pub tokens: usize,
}

impl Service {
    /// Copies this whole server (configuration, messages, tokens, the archiver's progress) into
    /// `target`, which must be empty, and verifies the counts; administrators only.
    ///
    /// # Errors
    /// A target that already holds objects or messages, or counts that differ afterwards.
    pub async fn migrate_into(&self, caller: &Caller, target: &Service) -> Result<MigrateReport> {
        require_admin(caller, "migrate a server")?;
        let (target_objects, target_messages) = target.store().counts().await?;
        if target_objects > 0 || target_messages > 0 {
            return Err(ServiceError::Conflict {
                code: ErrorCode::AlreadyExists,
                message: format!(
                    "the target already holds {target_objects} object(s) and {target_messages} message(s); migrate into an empty database"
                ),
            });
        }
        let export = self
            .export_data(caller, &ExportOptions::default(), &mut |_| {})
            .await?;
        let report = target.import_data(caller, &export, false).await?;

        // Tokens, the archiver's progress, what compliance has not archived yet, legal holds,
        // the audit trail and the record of the last apply are server data too.
        let mut reading = self.store().begin(WriteAccess::new()).await?;
        let tokens = reading.tokens().await?;
        let checkpoint = reading.checkpoint(super::ARCHIVER).await?;
        let senders = reading.compliance_users().await?;
        reading.commit().await?;
        let unarchived_after = checkpoint.archived_through();
        let events = self
            .store()
            .compliance_events_between(unarchived_after + 1, i64::MAX)
            .await?;
        let holds = self.store().holds().await?;
        let audit = self.store().audit_all().await?;
        // The Git view's record of the last apply; browser sessions stay behind (their
        // people sign in again).
        let applied = self.store().applied().await?;
        let mut writing = target.store().begin(WriteAccess::new()).await?;
        for token in &tokens {
            writing.insert_token(token).await?;
        }
        writing
            .save_checkpoint(super::ARCHIVER, &checkpoint)
            .await?;
        let archived_through = checkpoint
            .pending
            .map_or(checkpoint.last_message_id, |(_, last)| last)
            .max(checkpoint.last_message_id);
        writing
            .insert_compliance_events_exact(&events, archived_through)
            .await?;
        writing.insert_compliance_users_exact(&senders).await?;
        for hold in &holds {
            writing.place_hold(hold).await?;
        }
        writing.append_audit(&audit).await?;
        if let Some(applied) = &applied {
            writing.put_applied(applied).await?;
        }
        writing.commit().await?;

        let source_counts = self.store().counts().await?;
        let target_counts = target.store().counts().await?;
        if source_counts != target_counts {
            return Err(ServiceError::internal(format!(
                "counts differ after the migration: the source holds {} object(s) and {} message(s), the target {} and {}",
                source_counts.0, source_counts.1, target_counts.0, target_counts.1
            )));
        }
        Ok(MigrateReport {
            objects: report.objects,
            messages: report.messages,
            tokens: tokens.len(),
        })
    }
}

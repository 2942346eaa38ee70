//! The compliance archiver: every message, whatever its category's history setting, written
//! into the adapter's output directory each run interval, exactly once.
//!
//! # Guarantees
//! A batch is recorded in the checkpoint before its files are written and marked done after,
//! so a crash between the two rewrites exactly the same batch (same files, same names) on the
//! next run, and never a message twice or not at all. One node at a time archives: it holds
//! the `archiver` lock, renewed while it lives and free for another node when it dies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::WriteAccess;
use super::{Caller, Result, Service, ServiceError, decode};
use crate::clock;
use crate::domain::{AdapterType, Category, ComplianceConfiguration, Kind, Room};
use crate::store::{Checkpoint, MessageRow};

/// The lock and checkpoint name of the archiver.
pub const ARCHIVER: &str = "archiver";
/// How long a node's claim to archive lasts without renewal.
pub const LEASE_SECONDS: i64 = 10;
/// Most messages in one batch (one set of files).
const BATCH: i64 = 10_000;

/// What one run wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveRun {
    pub archived: usize,
    pub files: Vec<String>,
}

fn archiver_caller() -> Caller {
    Caller::system("perch:archiver".to_owned())
}

impl Service {
    /// Archives now, on this node; administrators only. Fails with `lock_held` while another
    /// node is the archiver.
    pub async fn archive_now(&self, caller: &Caller) -> Result<ArchiveRun> {
        super::require_admin(caller, "run the compliance archiver")?;
        self.acquire_lock(&archiver_caller(), ARCHIVER, self.node(), LEASE_SECONDS)
            .await?;
        self.archive_until_done().await
    }

    /// Runs batches until no message is left to archive.
    async fn archive_until_done(&self) -> Result<ArchiveRun> {
        // One run at a time on this node: the timer and `archive_now` may meet.
        let _running = self.archiving.lock().await;
        let configuration = self.compliance(&archiver_caller()).await?.spec;
        let mut total = ArchiveRun::default();
        if !configuration.enabled {
            return Ok(total);
        }
        loop {
            let run = self.archive_batch(&configuration).await?;
            if run.archived == 0 {
                return Ok(total);
            }
            total.archived += run.archived;
            total.files.extend(run.files);
        }
    }

    async fn archive_batch(&self, configuration: &ComplianceConfiguration) -> Result<ArchiveRun> {
        // 1. Record the batch before writing it.
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let mut checkpoint = tx.checkpoint(ARCHIVER).await?;
        let (first, last) = match checkpoint.pending {
            Some(range) => range,
            None => {
                if let Some(end) = tx.batch_end(checkpoint.last_message_id, BATCH).await? {
                    (checkpoint.last_message_id + 1, end)
                } else {
                    checkpoint.last_run_at = Some(clock::now());
                    tx.save_checkpoint(ARCHIVER, &checkpoint).await?;
                    tx.commit().await?;
                    return Ok(ArchiveRun::default());
                }
            }
        };
        checkpoint.pending = Some((first, last));
        tx.save_checkpoint(ARCHIVER, &checkpoint).await?;
        tx.commit().await?;

        // 2. Write its files; the same batch always gives the same names.
        let messages = self.store().messages_between(first, last).await?;
        let files = self
            .write_batch(configuration, first, last, &messages)
            .await?;
        if std::env::var("PERCH_FAILPOINT").is_ok_and(|point| point == "archive-after-write") {
            // Tests crash here to prove a batch written but not marked done is not duplicated.
            std::process::abort();
        }

        // 3. Mark it done.
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let checkpoint = Checkpoint {
            last_message_id: last,
            pending: None,
            last_run_at: Some(clock::now()),
        };
        tx.save_checkpoint(ARCHIVER, &checkpoint).await?;
        tx.commit().await?;
        tracing::info!(
            first,
            last,
            files = files.len(),
            "archived messages for compliance"
        );
        Ok(ArchiveRun {
            archived: messages.len(),
            files,
        })
    }

    async fn write_batch(
        &self,
        configuration: &ComplianceConfiguration,
        first: i64,
        last: i64,
        messages: &[MessageRow],
    ) -> Result<Vec<String>> {
        let directory = PathBuf::from(&configuration.adapter_output_directory);
        std::fs::create_dir_all(&directory).map_err(|error| {
            ServiceError::internal(format!(
                "cannot create the archive directory {}: {error}",
                directory.display()
            ))
        })?;
        let mut rooms: BTreeMap<i64, Vec<&MessageRow>> = BTreeMap::new();
        for message in messages {
            rooms.entry(message.room_id).or_default().push(message);
        }
        let mut details = BTreeMap::new();
        for room_id in rooms.keys() {
            details.insert(*room_id, self.room_details(*room_id).await?);
        }
        let prefix = if configuration.adapter_name.trim().is_empty() {
            "perch".to_owned()
        } else {
            sanitize(&configuration.adapter_name)
        };
        let extension = match configuration.adapter_type {
            AdapterType::Xml => "xml",
            AdapterType::Json => "json",
        };
        let groups: Vec<(String, Vec<Conversation<'_>>)> =
            if configuration.one_chat_room_per_output_file {
                rooms
                    .iter()
                    .map(|(room_id, list)| {
                        (
                            format!("{prefix}-{first:012}-{last:012}-room-{room_id}.{extension}"),
                            vec![(*room_id, list)],
                        )
                    })
                    .collect()
            } else {
                vec![(
                    format!("{prefix}-{first:012}-{last:012}.{extension}"),
                    rooms
                        .iter()
                        .map(|(room_id, list)| (*room_id, list))
                        .collect(),
                )]
            };
        let mut written = Vec::new();
        for (file, conversations) in groups {
            let text = match configuration.adapter_type {
                AdapterType::Xml => render_xml(configuration, &conversations, &details),
                AdapterType::Json => render_json(configuration, &conversations, &details),
            };
            crate::atomic_file::write(&directory.join(&file), text.as_bytes()).map_err(
                |error| {
                    ServiceError::internal(format!("cannot write the archive file {file}: {error}"))
                },
            )?;
            written.push(file);
        }
        Ok(written)
    }

    async fn room_details(&self, room_id: i64) -> Result<Option<(Room, Option<Category>)>> {
        let Some(row) = self.store().get_by_id(room_id).await? else {
            return Ok(None);
        };
        if row.kind != Kind::Room {
            return Ok(None);
        }
        let room: Room = decode(&row)?;
        let category = match self.store().get(Kind::Category, &room.category).await? {
            Some(row) => Some(decode::<Category>(&row)?),
            None => None,
        };
        Ok(Some((room, category)))
    }

    /// Runs the archiver on this node until `stopped` completes: claims the archiver lease
    /// when free, renews it, and archives every run interval.
    pub async fn run_archiver(&self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let caller = archiver_caller();
        let mut last_run: Option<tokio::time::Instant> = None;
        loop {
            let configuration = self.compliance(&caller).await.map(|stored| stored.spec);
            match configuration {
                Ok(configuration) if configuration.enabled => {
                    match self
                        .acquire_lock(&caller, ARCHIVER, self.node(), LEASE_SECONDS)
                        .await
                    {
                        Ok(()) => {
                            let interval = Duration::from_secs(u64::from(
                                configuration.run_interval.seconds(),
                            ));
                            let due = last_run.is_none_or(|at| at.elapsed() >= interval);
                            if due {
                                if let Err(error) = self.archive_until_done().await {
                                    tracing::error!(%error, "compliance archiving failed; retrying");
                                } else {
                                    last_run = Some(tokio::time::Instant::now());
                                }
                            }
                        }
                        Err(ServiceError::LockHeld { .. }) => last_run = None,
                        Err(error) => tracing::warn!(%error, "cannot claim the archiver lease"),
                    }
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot read the compliance configuration"),
            }
            // Renew well within the lease, so that a live archiver never loses it.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(LEASE_SECONDS as u64 / 3)) => {}
                _ = stopped.changed() => {
                    let _ = self.release_lock(&caller, ARCHIVER, self.node()).await;
                    return;
                }
            }
        }
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

type Details = BTreeMap<i64, Option<(Room, Option<Category>)>>;

/// The messages of one room in a batch.
type Conversation<'a> = (i64, &'a Vec<&'a MessageRow>);

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {
                let _ = write!(out, "&#x{:x};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The channel URI a room has in the compliance output, as the original's `ma-chan://`.
fn channel_uri(room_id: i64) -> String {
    format!("ma-chan://perch/{room_id}")
}

fn render_xml(
    configuration: &ComplianceConfiguration,
    conversations: &[Conversation<'_>],
    details: &Details,
) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Conversations xmlns=\"urn:perch:compliance:1\">\n",
    );
    for (room_id, messages) in conversations {
        let room = details.get(room_id).and_then(Option::as_ref);
        let _ = writeln!(out, "  <Conversation>");
        let name = room.map_or(String::new(), |(room, _)| room.name.clone());
        let _ = write!(
            out,
            "    <Channel Uri=\"{}\" Name=\"{}\"",
            channel_uri(*room_id),
            escape(&name)
        );
        if configuration.add_chat_room_details {
            if let Some((room, category)) = room {
                let _ = write!(
                    out,
                    " Category=\"{}\" Description=\"{}\" Privacy=\"{:?}\" Type=\"{:?}\" Disabled=\"{}\" ChatHistory=\"{}\"",
                    escape(&room.category),
                    escape(&room.description),
                    room.privacy,
                    room.room_type,
                    room.disabled,
                    category.as_ref().is_none_or(|c| c.chat_history)
                );
            }
        }
        let _ = writeln!(out, "/>");
        if configuration.add_user_details {
            let mut authors: Vec<&str> = messages.iter().map(|m| m.author.as_str()).collect();
            authors.sort_unstable();
            authors.dedup();
            let _ = writeln!(out, "    <Participants>");
            for author in authors {
                let _ = writeln!(out, "      <Participant Uri=\"{}\"/>", escape(author));
            }
            let _ = writeln!(out, "    </Participants>");
        }
        for message in *messages {
            let _ = writeln!(
                out,
                "    <Message Type=\"CHAT\" Id=\"{}\" Time=\"{}\" Author=\"{}\"><Content>{}</Content></Message>",
                message.id,
                escape(&message.posted_at),
                escape(&message.author),
                escape(&message.body)
            );
        }
        let _ = writeln!(out, "  </Conversation>");
    }
    out.push_str("</Conversations>\n");
    out
}

fn render_json(
    configuration: &ComplianceConfiguration,
    conversations: &[Conversation<'_>],
    details: &Details,
) -> String {
    let conversations: Vec<serde_json::Value> = conversations
        .iter()
        .map(|(room_id, messages)| {
            let room = details.get(room_id).and_then(Option::as_ref);
            let mut channel = json!({"uri": channel_uri(*room_id), "name": room.map(|(room, _)| room.name.clone())});
            if configuration.add_chat_room_details {
                if let Some((room, _)) = room {
                    channel["room"] = serde_json::to_value(room).unwrap_or_default();
                }
            }
            let mut conversation = json!({
                "channel": channel,
                "messages": messages.iter().map(|m| json!({
                    "type": "CHAT", "id": m.id, "time": m.posted_at, "author": m.author, "content": m.body,
                })).collect::<Vec<_>>(),
            });
            if configuration.add_user_details {
                let mut authors: Vec<&str> = messages.iter().map(|m| m.author.as_str()).collect();
                authors.sort_unstable();
                authors.dedup();
                conversation["participants"] = json!(authors);
            }
            conversation
        })
        .collect();
    let mut text =
        serde_json::to_string_pretty(&json!({"conversations": conversations})).unwrap_or_default();
    text.push('\n');
    text
}

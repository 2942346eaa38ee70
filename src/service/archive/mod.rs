//! The compliance archiver: every event of the compliance log (messages posted, rooms joined
//! and left, history read), written into the adapter's output directory each run interval,
//! exactly once, in the original's documented XML or in Perch's JSON ([`format`]).
//!
//! # Guarantees
//! Events reach the log in the transaction that caused them ([`super::compliance`]), so what
//! is archived does not depend on what happened to history since. A batch is recorded in the
//! checkpoint before its files are written and marked done after, so a crash between the two
//! rewrites exactly the same batch (same files, same names) on the next run, and never an
//! event twice or not at all. One node at a time archives: it holds the `archiver` lock,
//! renewed while it lives and free for another node when it dies.

pub mod format;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::WriteAccess;
use super::compliance::record;
use super::{Caller, Result, Service, ServiceError, decode};
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::domain::{AdapterType, Category, ComplianceConfiguration, Kind, Room};
use crate::store::{Checkpoint, ComplianceEventRow};
use format::{BatchContext, conversations, render_details, render_json, render_xml};

/// The lock and checkpoint name of the archiver.
pub const ARCHIVER: &str = "archiver";
/// How long a node's claim to archive lasts without renewal.
pub const LEASE_SECONDS: i64 = 10;
/// Most events in one batch (one set of files).
const BATCH: i64 = 10_000;

/// What one run wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveRun {
    /// Events archived (messages and the rest).
    pub archived: usize,
    pub files: Vec<String>,
}

fn archiver_caller() -> Caller {
    Caller::system("perch:archiver".to_owned())
}

/// Where the archive stands, for the panel.
#[derive(Clone, Debug)]
pub struct ArchiveState {
    pub enabled: bool,
    /// Every compliance event up to this id is in a file.
    pub archived_through: i64,
    pub newest_event: i64,
    pub last_run_at: Option<String>,
    /// The node holding the archiver's lease and since when, if one does.
    pub holder: Option<(String, String)>,
}

/// See [`Service::operational_state`].
#[derive(Clone, Debug)]
pub struct OperationalState {
    pub archive: ArchiveState,
    pub apply_lock_holder: Option<String>,
}

impl ArchiveState {
    /// Events captured and not yet archived.
    pub fn lag(&self) -> i64 {
        (self.newest_event - self.archived_through).max(0)
    }
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

    /// Where the archive stands: what is archived, what waits, who archives; administrators
    /// only.
    pub async fn archive_state(&self, caller: &Caller) -> Result<ArchiveState> {
        super::require_admin(caller, "read the archive's state")?;
        let enabled = self.compliance(caller).await?.spec.enabled;
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let checkpoint = tx.checkpoint(ARCHIVER).await?;
        let newest_event = tx.newest_compliance_event().await?;
        let holder = tx
            .lock_holder(ARCHIVER, crate::clock::unix_seconds())
            .await?
            .map(|lock| (lock.holder, lock.acquired_at));
        tx.commit().await?;
        Ok(ArchiveState {
            enabled,
            archived_through: checkpoint.archived_through(),
            newest_event,
            last_run_at: checkpoint.last_run_at,
            holder,
        })
    }

    /// What `/metrics` reports of the state the nodes share: the archive, and who holds the
    /// apply lock. Read as the system; the figures name no content.
    pub async fn operational_state(&self) -> Result<OperationalState> {
        let caller = Caller::system("perch:metrics".to_owned());
        let archive = self.archive_state(&caller).await?;
        let apply_lock_holder = self
            .lock_holder(&caller, super::APPLY_LOCK)
            .await?
            .map(|(holder, _since)| holder);
        Ok(OperationalState {
            archive,
            apply_lock_holder,
        })
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
                if let Some(end) = tx
                    .compliance_batch_end(checkpoint.last_message_id, BATCH)
                    .await?
                {
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
        let events = self.store().compliance_events_between(first, last).await?;
        let mut senders: Vec<&str> = events.iter().map(|event| event.sender.as_str()).collect();
        senders.sort_unstable();
        senders.dedup();
        let user_ids = tx.compliance_user_ids(&senders).await?;
        tx.commit().await?;

        // 2. Write its files; the same batch always gives the same names.
        let mut details = BatchContext {
            user_ids: user_ids.into_iter().collect(),
            add_chat_room_details: configuration.add_chat_room_details,
            add_user_details: configuration.add_user_details,
            ..BatchContext::default()
        };
        if configuration.add_chat_room_details {
            for conversation in conversations(&events) {
                details.rooms.insert(
                    conversation.room_id,
                    self.room_details(conversation.room_id).await?,
                );
            }
        }
        let files = write_batch(configuration, first, last, &events, &details)?;
        if std::env::var("PERCH_FAILPOINT").is_ok_and(|point| point == "archive-after-write") {
            // Tests crash here to prove a batch written but not marked done is not duplicated.
            std::process::abort();
        }

        // 3. Mark it done, and say so in the audit trail.
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let checkpoint = Checkpoint {
            last_message_id: last,
            pending: None,
            last_run_at: Some(clock::now()),
        };
        tx.save_checkpoint(ARCHIVER, &checkpoint).await?;
        record(
            &mut tx,
            &archiver_caller(),
            AuditAction::Archive,
            "Archive",
            &configuration.adapter_output_directory,
            json!({"first": first, "last": last, "events": events.len(), "files": files}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            first,
            last,
            files = files.len(),
            "archived events for compliance"
        );
        Ok(ArchiveRun {
            archived: events.len(),
            files,
        })
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

/// Writes a batch's files: one per batch or one per room, each atomically, plus the details
/// side file of the XML adapter.
fn write_batch(
    configuration: &ComplianceConfiguration,
    first: i64,
    last: i64,
    events: &[ComplianceEventRow],
    details: &BatchContext,
) -> Result<Vec<String>> {
    let directory = PathBuf::from(&configuration.adapter_output_directory);
    std::fs::create_dir_all(&directory).map_err(|error| {
        ServiceError::internal(format!(
            "cannot create the archive directory {}: {error}",
            directory.display()
        ))
    })?;
    let prefix = if configuration.adapter_name.trim().is_empty() {
        "perch".to_owned()
    } else {
        sanitize(&configuration.adapter_name)
    };
    let all = conversations(events);
    let groups: Vec<(String, &[format::Conversation<'_>])> =
        if configuration.one_chat_room_per_output_file {
            all.iter()
                .map(|conversation| {
                    (
                        format!(
                            "{prefix}-{first:012}-{last:012}-room-{}",
                            conversation.room_id
                        ),
                        std::slice::from_ref(conversation),
                    )
                })
                .collect()
        } else {
            vec![(format!("{prefix}-{first:012}-{last:012}"), &all[..])]
        };
    let with_details = details.add_chat_room_details || details.add_user_details;
    let mut written = Vec::new();
    for (base, group) in groups {
        let mut outputs = Vec::new();
        match configuration.adapter_type {
            AdapterType::Xml => {
                if with_details {
                    outputs.push((
                        format!("{base}.details.json"),
                        render_details(group, details),
                    ));
                }
                outputs.push((format!("{base}.xml"), render_xml(group, details)));
            }
            AdapterType::Json => {
                outputs.push((format!("{base}.json"), render_json(group, details)));
            }
        }
        for (file, text) in outputs {
            crate::atomic_file::write(&directory.join(&file), text.as_bytes()).map_err(
                |error| {
                    ServiceError::internal(format!("cannot write the archive file {file}: {error}"))
                },
            )?;
            written.push(file);
        }
    }
    Ok(written)
}

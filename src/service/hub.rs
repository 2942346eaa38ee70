//! One reader of the log per node: the messages and room changes committed after its cursors,
//! read once however many live streams are open, each message serialised once, and handed to
//! every stream on the node.
//!
//! # Guarantees
//! - **Contiguous**: a [`LogBatch`] holds everything committed after `messages_after` through
//!   `messages_through` (and the same for room changes), in id order, which is commit order
//!   (see `store::messages`). A stream whose cursor is behind a batch's start reads the gap
//!   from the database itself, so no stream depends on having heard every batch.
//! - **Judged per stream, after the read**: a batch carries the configuration generation read
//!   after its rows; each stream refreshes its access decisions when it moved
//!   ([`Service::events_in_batch`]), as it does after a read of its own.
//! - **Bounded**: a batch is at most [`BATCH`] rows of each; the channel holds
//!   [`CHANNEL_CAPACITY`] batches, and a stream that falls behind it is told so (`Lagged`) and
//!   reads from the database.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::broadcast;

use super::Service;
use super::messages::Message;
use crate::store::{MessageRow, RoomChangeRow};

/// Rows of each kind read at once.
const BATCH: i64 = 1_000;
/// Batches a stream may fall behind before it reads from the database instead.
const CHANNEL_CAPACITY: usize = 256;

/// A message as the hub read it, with its JSON for every stream that delivers it.
#[derive(Debug)]
pub struct LoggedMessage {
    pub(crate) row: MessageRow,
    /// `None` when its room no longer exists: no stream delivers it.
    pub(crate) json: Option<Arc<str>>,
}

/// What the hub read in one go.
#[derive(Debug)]
pub struct LogBatch {
    pub(crate) messages_after: i64,
    pub(crate) messages: Vec<LoggedMessage>,
    pub(crate) messages_through: i64,
    pub(crate) changes_after: i64,
    pub(crate) changes: Vec<RoomChangeRow>,
    pub(crate) changes_through: i64,
    /// The configuration generation, read after the rows.
    pub(crate) generation: i64,
}

impl LogBatch {
    /// Where the batch starts: a stream behind this has a gap to read from the database.
    pub fn starts_after(&self) -> (i64, i64) {
        (self.messages_after, self.changes_after)
    }

    /// Where the batch ends.
    pub fn ends_at(&self) -> (i64, i64) {
        (self.messages_through, self.changes_through)
    }
}

/// The node's hub: started by the first stream that listens.
#[derive(Debug)]
pub(crate) struct Hub {
    sender: broadcast::Sender<Arc<LogBatch>>,
    started: std::sync::Once,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            started: std::sync::Once::new(),
        }
    }
}

impl Service {
    /// Hears every batch the node's hub reads from now on (starting the hub if it is not).
    pub fn subscribe_log(&self) -> broadcast::Receiver<Arc<LogBatch>> {
        let receiver = self.hub.sender.subscribe();
        self.hub.started.call_once(|| {
            let service = self.clone();
            tokio::spawn(async move { service.run_hub().await });
        });
        receiver
    }

    async fn run_hub(&self) {
        let mut woken = self.watch_messages();
        let mut cursors: Option<(i64, i64)> = None;
        let mut names = RoomNames::default();
        let mut ticked = false;
        loop {
            if self.hub.sender.receiver_count() == 0 {
                // Nobody listens: start again from the end of the log once someone does
                // (streams behind it read the gap themselves).
                cursors = None;
            } else {
                // A batch goes out even with nothing new when the hub (re)starts, so that a
                // stream behind its start reads the gap, and on every tick, so that streams
                // judge their tokens' expiry and any change of access without a post.
                let announce = ticked || cursors.is_none();
                match self.read_log(&mut cursors, &mut names, announce).await {
                    Ok(Some(batch)) => {
                        let full = i64::try_from(batch.messages.len()).unwrap_or(i64::MAX) >= BATCH
                            || i64::try_from(batch.changes.len()).unwrap_or(i64::MAX) >= BATCH;
                        let _ = self.hub.sender.send(Arc::new(batch));
                        if full {
                            continue;
                        }
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "live events: the hub cannot read the log");
                    }
                }
            }
            ticked = tokio::select! {
                _ = woken.changed() => false,
                () = tokio::time::sleep(self.events_poll_interval()) => true,
            };
        }
    }

    /// Reads what was committed after `cursors` (from the end of the log if unset), as a batch
    /// if there was anything or `announce` asks for one anyway.
    async fn read_log(
        &self,
        cursors: &mut Option<(i64, i64)>,
        names: &mut RoomNames,
        announce: bool,
    ) -> Result<Option<LogBatch>, super::ServiceError> {
        let (messages_after, changes_after) = if let Some(cursors) = *cursors {
            cursors
        } else {
            let start = (
                self.store().last_message_id().await?,
                self.store().last_room_change_id().await?,
            );
            *cursors = Some(start);
            start
        };
        let rows = self.store().messages_after(messages_after, BATCH).await?;
        let changes = self
            .store()
            .room_changes_after(changes_after, BATCH)
            .await?;
        if rows.is_empty() && changes.is_empty() && !announce {
            return Ok(None);
        }
        let generation = self.store().generation().await?;
        if names.generation != Some(generation) {
            names.by_id.clear();
            names.generation = Some(generation);
        }
        let messages_through = rows.last().map_or(messages_after, |row| row.id);
        let changes_through = changes.last().map_or(changes_after, |row| row.id);
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let name = if let Some(name) = names.by_id.get(&row.room_id) {
                name.clone()
            } else {
                let name = self
                    .store()
                    .get_by_id(row.room_id)
                    .await?
                    .filter(|object| object.kind == crate::domain::Kind::Room)
                    .map(|object| object.name);
                names.by_id.insert(row.room_id, name.clone());
                name
            };
            let json = name.map(|name| {
                let message = Message::from_row(row.clone(), &name);
                Arc::from(serde_json::to_string(&message).unwrap_or_default())
            });
            messages.push(LoggedMessage { row, json });
        }
        *cursors = Some((messages_through, changes_through));
        Ok(Some(LogBatch {
            messages_after,
            messages,
            messages_through,
            changes_after,
            changes,
            changes_through,
            generation,
        }))
    }
}

/// Room names by id, while the generation they were read at stands (a rename bumps it).
#[derive(Default)]
struct RoomNames {
    generation: Option<i64>,
    by_id: HashMap<i64, Option<String>>,
}

//! The compliance log (`compliance_events`, `compliance_users`) and legal holds (`holds`).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::messages::MESSAGES_PER_INSERT;
use super::{Backend, Store, StoreError, Tx};
use crate::domain::{ComplianceEventType, Hold, Kind};

/// One event compliance keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComplianceEventRow {
    pub id: i64,
    pub event_type: ComplianceEventType,
    pub room_id: i64,
    pub room_name: String,
    pub sender: String,
    pub content: String,
    pub message_id: Option<i64>,
    pub at: String,
}

/// An event to record for compliance (its id and time are the store's).
#[derive(Clone, Copy, Debug)]
pub struct NewComplianceEvent<'a> {
    pub event_type: ComplianceEventType,
    pub room_id: i64,
    /// The room's name when the event happened.
    pub room_name: &'a str,
    pub sender: &'a str,
    pub content: &'a str,
    /// The chat message this event posted, if any.
    pub message_id: Option<i64>,
}

const EVENT_COLUMNS: &str = "id, event_type, room_id, room_name, sender, content, message_id, at";

fn event_from_row(row: &AnyRow) -> Result<ComplianceEventRow, StoreError> {
    let text: String = row.try_get("event_type")?;
    let event_type = ComplianceEventType::parse(&text).ok_or_else(|| StoreError::Corrupt {
        kind: Kind::Room,
        name: row.try_get("room_name").unwrap_or_default(),
        message: format!("unknown compliance event type `{text}`"),
    })?;
    Ok(ComplianceEventRow {
        id: row.try_get("id")?,
        event_type,
        room_id: row.try_get("room_id")?,
        room_name: row.try_get("room_name")?,
        sender: row.try_get("sender")?,
        content: row.try_get("content")?,
        message_id: row.try_get("message_id")?,
        at: row.try_get("at")?,
    })
}

fn hold_from_row(row: &AnyRow) -> Result<Hold, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Hold {
        kind: Kind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
            kind: Kind::Room,
            name: row.try_get("name").unwrap_or_default(),
            message: format!("a hold on unknown kind `{kind}`"),
        })?,
        name: row.try_get("name")?,
        reason: row.try_get("reason")?,
        placed_by: row.try_get("placed_by")?,
        placed_at: row.try_get("placed_at")?,
    })
}

impl Store {
    /// Every compliance event with an id in `first..=last`, in order.
    pub async fn compliance_events_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<Vec<ComplianceEventRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM compliance_events WHERE id >= $1 AND id <= $2 ORDER BY id"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Every legal hold, by kind and name.
    pub async fn holds(&self) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, name, reason, placed_by, placed_at FROM holds ORDER BY kind, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(hold_from_row).collect()
    }
}

impl Tx {
    /// Records an event for compliance, in commit order (as messages are, and under the same
    /// turn on PostgreSQL), so that the archiver reading "after id N" never skips one.
    pub async fn insert_compliance_event(
        &mut self,
        event: &NewComplianceEvent<'_>,
        at: &str,
    ) -> Result<(), StoreError> {
        self.take_message_id_turn().await?;
        sqlx::query(
            "INSERT INTO compliance_events (event_type, room_id, room_name, sender, content, message_id, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(event.event_type.as_str())
        .bind(event.room_id)
        .bind(event.room_name)
        .bind(event.sender)
        .bind(event.content)
        .bind(event.message_id)
        .bind(at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Stores several compliance events happening `at`, in one statement per
    /// [`MESSAGES_PER_INSERT`], with ids in the order given.
    pub async fn insert_compliance_events(
        &mut self,
        events: &[NewComplianceEvent<'_>],
        at: &str,
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.take_message_id_turn().await?;
        for chunk in events.chunks(MESSAGES_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO compliance_events (event_type, room_id, room_name, sender, content, message_id, at) VALUES ",
            );
            self.backend.push_placeholders(&mut sql, chunk.len(), 7);
            let mut statement = sqlx::query(&sql);
            for event in chunk {
                statement = statement
                    .bind(event.event_type.as_str())
                    .bind(event.room_id)
                    .bind(event.room_name)
                    .bind(event.sender)
                    .bind(event.content)
                    .bind(event.message_id)
                    .bind(at);
            }
            statement.execute(&mut *self.inner).await?;
        }
        Ok(())
    }

    /// Stores compliance events as they were elsewhere, ids included, and moves the id
    /// sequence past them and past `archived_through` (a migration: the checkpoint comes
    /// along, and new events must come after everything it counts as archived).
    pub async fn insert_compliance_events_exact(
        &mut self,
        events: &[ComplianceEventRow],
        archived_through: i64,
    ) -> Result<(), StoreError> {
        for event in events {
            sqlx::query(
                "INSERT INTO compliance_events (id, event_type, room_id, room_name, sender, content, message_id, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(event.id)
            .bind(event.event_type.as_str())
            .bind(event.room_id)
            .bind(&event.room_name)
            .bind(&event.sender)
            .bind(&event.content)
            .bind(event.message_id)
            .bind(&event.at)
            .execute(&mut *self.inner)
            .await?;
        }
        let floor = events
            .iter()
            .map(|event| event.id)
            .max()
            .unwrap_or(0)
            .max(archived_through);
        if floor > 0 {
            match self.backend {
                Backend::Postgres => {
                    sqlx::query(
                        "SELECT setval(pg_get_serial_sequence('compliance_events', 'id'), $1)",
                    )
                    .bind(floor)
                    .fetch_one(&mut *self.inner)
                    .await?;
                }
                Backend::Sqlite => {
                    sqlx::query("DELETE FROM sqlite_sequence WHERE name = 'compliance_events'")
                        .execute(&mut *self.inner)
                        .await?;
                    sqlx::query(
                        "INSERT INTO sqlite_sequence (name, seq) VALUES ('compliance_events', $1)",
                    )
                    .bind(floor)
                    .execute(&mut *self.inner)
                    .await?;
                }
            }
        }
        Ok(())
    }

    /// Every sender's archive id (to copy a server).
    pub async fn compliance_users(&mut self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT uri, id FROM compliance_users ORDER BY id")
            .fetch_all(&mut *self.inner)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("uri")?, row.try_get("id")?)))
            .collect()
    }

    /// Stores senders' archive ids as they were elsewhere.
    pub async fn insert_compliance_users_exact(
        &mut self,
        users: &[(String, i64)],
    ) -> Result<(), StoreError> {
        for (uri, id) in users {
            sqlx::query("INSERT INTO compliance_users (id, uri) VALUES ($1, $2)")
                .bind(*id)
                .bind(uri)
                .execute(&mut *self.inner)
                .await?;
        }
        if self.backend == Backend::Postgres && !users.is_empty() {
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('compliance_users', 'id'), GREATEST((SELECT MAX(id) FROM compliance_users), 1))",
            )
            .execute(&mut *self.inner)
            .await?;
        }
        Ok(())
    }

    /// The id of the `limit`-th compliance event after `after` (or the last one), for sizing
    /// a batch.
    pub async fn compliance_batch_end(
        &mut self,
        after: i64,
        limit: i64,
    ) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(id) FROM (SELECT id FROM compliance_events WHERE id > $1 ORDER BY id LIMIT $2) AS batch")
            .bind(after)
            .bind(limit)
            .fetch_one(&mut *self.inner)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The id of the newest compliance event (0 for none).
    pub async fn newest_compliance_event(&mut self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS newest FROM compliance_events")
            .fetch_one(&mut *self.inner)
            .await?;
        Ok(row.try_get("newest")?)
    }

    /// The archive's numeric id of each sender, given on first sight and kept.
    pub async fn compliance_user_ids(
        &mut self,
        uris: &[&str],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut ids = Vec::with_capacity(uris.len());
        for uri in uris {
            sqlx::query(
                "INSERT INTO compliance_users (uri) VALUES ($1) ON CONFLICT (uri) DO NOTHING",
            )
            .bind(*uri)
            .execute(&mut *self.inner)
            .await?;
            let row = sqlx::query("SELECT id FROM compliance_users WHERE uri = $1")
                .bind(*uri)
                .fetch_one(&mut *self.inner)
                .await?;
            ids.push(((*uri).to_owned(), row.try_get(0)?));
        }
        Ok(ids)
    }

    /// The holds on any of these (kind, name) pairs.
    pub async fn holds_on(&mut self, targets: &[(Kind, &str)]) -> Result<Vec<Hold>, StoreError> {
        let mut holds = Vec::new();
        for (kind, name) in targets {
            let row = sqlx::query(
                "SELECT kind, name, reason, placed_by, placed_at FROM holds WHERE kind = $1 AND name = $2",
            )
            .bind(kind.as_str())
            .bind(*name)
            .fetch_optional(&mut *self.inner)
            .await?;
            if let Some(row) = row {
                holds.push(hold_from_row(&row)?);
            }
        }
        Ok(holds)
    }

    /// Places (or restates) a hold; returns the one it replaced.
    pub async fn place_hold(&mut self, hold: &Hold) -> Result<Option<Hold>, StoreError> {
        let before = self
            .holds_on(&[(hold.kind, hold.name.as_str())])
            .await?
            .pop();
        sqlx::query(
            "INSERT INTO holds (kind, name, reason, placed_by, placed_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, name) DO UPDATE SET reason = $3, placed_by = $4, placed_at = $5",
        )
        .bind(hold.kind.as_str())
        .bind(&hold.name)
        .bind(&hold.reason)
        .bind(&hold.placed_by)
        .bind(&hold.placed_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(before)
    }

    /// Releases a hold; returns it, if there was one.
    pub async fn release_hold(
        &mut self,
        kind: Kind,
        name: &str,
    ) -> Result<Option<Hold>, StoreError> {
        let before = self.holds_on(&[(kind, name)]).await?.pop();
        sqlx::query("DELETE FROM holds WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *self.inner)
            .await?;
        Ok(before)
    }

    /// Deletes a room's messages posted before `cutoff` that compliance no longer needs:
    /// every one when compliance keeps nothing unarchived of it (`archived_through` is the
    /// archiver's checkpoint). Returns how many.
    pub async fn expire_messages(
        &mut self,
        room_id: i64,
        cutoff: &str,
        archived_through: i64,
    ) -> Result<u64, StoreError> {
        let result = sqlx::query(
            "DELETE FROM messages WHERE room_id = $1 AND posted_at < $2 AND NOT EXISTS \
             (SELECT 1 FROM compliance_events c WHERE c.message_id = messages.id AND c.id > $3)",
        )
        .bind(room_id)
        .bind(cutoff)
        .bind(archived_through)
        .execute(&mut *self.inner)
        .await?;
        Ok(result.rows_affected())
    }
}

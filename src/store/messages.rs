//! The `messages` and `room_changes` tables: chat history and the feed of room changes that
//! live streams read.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{AdvisoryLock, Backend, Store, StoreError, Tx};
use crate::domain::{Kind, RoomChangeKind};

/// One stored chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    pub id: i64,
    pub room_id: i64,
    pub author: String,
    pub body: String,
    pub posted_at: String,
    pub in_history: bool,
    pub replaced: bool,
    pub idempotency_key: Option<String>,
}

/// Which page of a room's history to read.
#[derive(Clone, Debug, Default)]
pub struct MessageQuery<'a> {
    /// Only messages with an id below this (older), newest first.
    pub before: Option<i64>,
    /// Only messages with an id above this (newer), oldest first.
    pub after: Option<i64>,
    pub limit: i64,
    /// Lower-cased words that must all appear in the text.
    pub words: &'a [String],
    /// Include messages kept for compliance only.
    pub include_hidden: bool,
}

/// One recorded change of a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomChangeRow {
    pub id: i64,
    pub room_id: i64,
    pub room_name: String,
    pub change: RoomChangeKind,
    pub version: i64,
    pub changed_at: String,
}

/// A message to store with [`Tx::insert_messages`]: its id and time come from the store.
#[derive(Clone, Copy, Debug)]
pub struct NewMessage<'a> {
    pub room_id: i64,
    pub author: &'a str,
    pub body: &'a str,
    pub posted_at: &'a str,
    pub in_history: bool,
}

/// Rows per statement of a multi-row insert: far below both backends' limit on bound values
/// (SQLite 32,766, PostgreSQL 65,535), and a group of posts in one or two statements.
pub(crate) const MESSAGES_PER_INSERT: usize = 256;

/// Rows per statement of a multi-row room change insert (5 values each).
const ROOM_CHANGES_PER_INSERT: usize = 250;

const MESSAGE_COLUMNS: &str =
    "id, room_id, author, body, posted_at, in_history, replaced, idempotency_key";

const ROOM_CHANGE_COLUMNS: &str = "id, room_id, room_name, change, version, changed_at";

fn room_change_from_row(row: &AnyRow) -> Result<RoomChangeRow, StoreError> {
    Ok(RoomChangeRow {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        room_name: row.try_get("room_name")?,
        change: {
            let text: String = row.try_get("change")?;
            RoomChangeKind::parse(&text).ok_or_else(|| StoreError::Corrupt {
                kind: Kind::Room,
                name: row.try_get("room_name").unwrap_or_default(),
                message: format!("unknown room change `{text}`"),
            })?
        },
        version: row.try_get("version")?,
        changed_at: row.try_get("changed_at")?,
    })
}

/// What [`Store::log_after`] read.
#[derive(Debug)]
pub struct LogRead {
    /// Each message with its room's name (`None`: the room is gone).
    pub messages: Vec<(MessageRow, Option<String>)>,
    pub changes: Vec<RoomChangeRow>,
    pub generation: i64,
}

fn message_from_row(row: &AnyRow) -> Result<MessageRow, StoreError> {
    Ok(MessageRow {
        id: row.try_get("id")?,
        room_id: row.try_get("room_id")?,
        author: row.try_get("author")?,
        body: row.try_get("body")?,
        posted_at: row.try_get("posted_at")?,
        in_history: row.try_get::<i64, _>("in_history")? != 0,
        replaced: row.try_get::<i64, _>("replaced")? != 0,
        idempotency_key: row.try_get("idempotency_key")?,
    })
}

/// `%word%` for `LIKE ... ESCAPE '\'`, with the pattern characters in `word` escaped.
fn like_pattern(word: &str) -> String {
    let mut pattern = String::with_capacity(word.len() + 2);
    pattern.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// Reads a page of a room's messages, returned oldest first.
    pub async fn messages(
        &self,
        room_id: i64,
        query: &MessageQuery<'_>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let mut sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1");
        let mut next = 2;
        if !query.include_hidden {
            sql.push_str(" AND in_history = 1");
        }
        if query.before.is_some() {
            sql.push_str(&format!(" AND id < ${next}"));
            next += 1;
        }
        if query.after.is_some() {
            sql.push_str(&format!(" AND id > ${next}"));
            next += 1;
        }
        for _ in query.words {
            sql.push_str(&format!(" AND lower(body) LIKE ${next} ESCAPE '\\'"));
            next += 1;
        }
        let ascending = query.after.is_some() && query.before.is_none();
        sql.push_str(if ascending {
            " ORDER BY id ASC"
        } else {
            " ORDER BY id DESC"
        });
        sql.push_str(&format!(" LIMIT ${next}"));
        let mut statement = sqlx::query(&sql).bind(room_id);
        if let Some(before) = query.before {
            statement = statement.bind(before);
        }
        if let Some(after) = query.after {
            statement = statement.bind(after);
        }
        for word in query.words {
            statement = statement.bind(like_pattern(word));
        }
        let rows = statement.bind(query.limit).fetch_all(&self.pool).await?;
        let mut messages = rows
            .iter()
            .map(message_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if !ascending {
            messages.reverse();
        }
        Ok(messages)
    }

    /// Every message with an id above `after`, oldest first, at most `limit` (for live events).
    pub async fn messages_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Every message with an id in `first..=last`, in order, history or not (for compliance).
    pub async fn messages_between(
        &self,
        first: i64,
        last: i64,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id >= $1 AND id <= $2 ORDER BY id"
        ))
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// How many messages each of these rooms holds (rooms without any are left out).
    pub async fn message_counts(
        &self,
        room_ids: &[i64],
    ) -> Result<std::collections::BTreeMap<i64, u64>, StoreError> {
        let mut counts = std::collections::BTreeMap::new();
        for chunk in room_ids.chunks(500) {
            let mut sql =
                String::from("SELECT room_id, COUNT(*) AS n FROM messages WHERE room_id IN ");
            self.backend.push_placeholders(&mut sql, 1, chunk.len());
            sql.push_str(" GROUP BY room_id");
            let mut statement = sqlx::query(&sql);
            for id in chunk {
                statement = statement.bind(*id);
            }
            for row in statement.fetch_all(&self.pool).await? {
                let count: i64 = row.try_get("n")?;
                counts.insert(row.try_get("room_id")?, u64::try_from(count).unwrap_or(0));
            }
        }
        Ok(counts)
    }

    /// A room's messages posted at or after `since` (all when `None`), oldest first.
    pub async fn room_history(
        &self,
        room_id: i64,
        since: Option<&str>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 AND ($2 IS NULL OR posted_at >= $2) ORDER BY id"
        ))
        .bind(room_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// Room changes with an id above `after`, oldest first.
    pub async fn room_changes_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<RoomChangeRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ROOM_CHANGE_COLUMNS} FROM room_changes WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(room_change_from_row).collect()
    }

    /// What a node's hub reads when it hears a commit: the messages after `messages_after`
    /// and the room changes after `changes_after`, at most `limit` of each, oldest first;
    /// each message with its room's name; and the generation, read after both (in the same
    /// statement, or the later one), so that a batch is never judged at a generation older
    /// than what it holds.
    ///
    /// One statement when no room changed, as most commits (posts) change none; two
    /// otherwise. It was three statements, and a fourth for each room whose name the hub had
    /// not yet read, at every commit on any node, on every node: the most of PostgreSQL's
    /// round trips under the pool's load (`benches/pool.rs`).
    pub async fn log_after(
        &self,
        messages_after: i64,
        changes_after: i64,
        limit: i64,
    ) -> Result<LogRead, StoreError> {
        // A one-row table joined to at most `limit` messages: the row is there, with NULL
        // message columns, when there are none. `changes_last` says whether to read changes.
        let rows = sqlx::query(&format!(
            "SELECT g.value AS generation, \
             (SELECT COALESCE(MAX(id), 0) FROM room_changes) AS changes_last, \
             m.*, o.name AS room_name \
             FROM generation g \
             LEFT JOIN (SELECT {MESSAGE_COLUMNS} FROM messages WHERE id > $1 ORDER BY id LIMIT $2) m \
             ON 1 = 1 \
             LEFT JOIN objects o ON o.id = m.room_id AND o.kind = $3 \
             WHERE g.id = 1 ORDER BY m.id"
        ))
        .bind(messages_after)
        .bind(limit)
        .bind(Kind::Room.as_str())
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Err(StoreError::Inconsistent(
                "the generation row is missing".to_owned(),
            ));
        };
        let mut generation: i64 = first.try_get("generation")?;
        let changes_last: i64 = first.try_get("changes_last")?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("id")?.is_none() {
                continue;
            }
            messages.push((message_from_row(row)?, row.try_get("room_name")?));
        }
        let mut changes = Vec::new();
        if changes_last > changes_after {
            let rows = sqlx::query(&format!(
                "SELECT {ROOM_CHANGE_COLUMNS}, \
                 (SELECT value FROM generation WHERE id = 1) AS generation \
                 FROM room_changes WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(changes_after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                generation = generation.max(row.try_get("generation")?);
                changes.push(room_change_from_row(row)?);
            }
        }
        Ok(LogRead {
            messages,
            changes,
            generation,
        })
    }

    /// The highest room change id, 0 when there are none.
    pub async fn last_room_change_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM room_changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// The highest message id, 0 when there are none.
    pub async fn last_message_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM messages")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }
}

/// Where the logs stood when a transaction began to write: see [`Tx::log_position`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPosition {
    /// The highest id of the messages that exist before the transaction's own (deleted ones
    /// aside: AUTOINCREMENT may have handed out higher ones).
    pub messages_through: i64,
    /// The same of room changes.
    pub changes_through: i64,
    /// The configuration generation its writes commit at, unless it changes access itself.
    pub generation: i64,
}

impl Tx {
    /// Where the logs stand for this transaction's writes: the highest message and room
    /// change ids and the generation, read in one statement, before the transaction's first
    /// insert. `Some` only on SQLite: a transaction there holds the database's write lock from
    /// `BEGIN IMMEDIATE` to its end, against every connection of every process, so nothing
    /// else commits between this read and the commit. The messages it then inserts are
    /// exactly those after `messages_through`, and (unless it changes access itself, see
    /// [`Tx::changes_access`]) they commit at `generation`. On PostgreSQL other transactions
    /// commit meanwhile and the read could not say so: `None`, with no statement sent.
    pub async fn log_position(&mut self) -> Result<Option<LogPosition>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM messages), \
             (SELECT COALESCE(MAX(id), 0) FROM room_changes), \
             (SELECT value FROM generation WHERE id = 1)",
        )
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(Some(LogPosition {
            messages_through: row.try_get(0)?,
            changes_through: row.try_get(1)?,
            generation: row.try_get(2)?,
        }))
    }

    /// Stores a message. With an idempotency key already used by the same author, stores
    /// nothing and returns the message stored the first time.
    pub async fn insert_message(
        &mut self,
        room_id: i64,
        author: &str,
        body: &str,
        posted_at: &str,
        in_history: bool,
        idempotency_key: Option<&str>,
    ) -> Result<(MessageRow, bool), StoreError> {
        self.take_message_id_turn().await?;
        if let Some(key) = idempotency_key {
            let existing = sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE author = $1 AND idempotency_key = $2"
            ))
            .bind(author)
            .bind(key)
            .fetch_optional(&mut *self.inner)
            .await?;
            if let Some(row) = existing {
                return Ok((message_from_row(&row)?, false));
            }
        }
        // Only a message stored wakes streams: a key that found the first one stores nothing.
        self.wakes_streams = true;
        let row = sqlx::query(&format!(
            "INSERT INTO messages (room_id, author, body, posted_at, in_history, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {MESSAGE_COLUMNS}"
        ))
        .bind(room_id)
        .bind(author)
        .bind(body)
        .bind(posted_at)
        .bind(i64::from(in_history))
        .bind(idempotency_key)
        .fetch_one(&mut *self.inner)
        .await?;
        Ok((message_from_row(&row)?, true))
    }

    /// Stores new messages in one statement per [`MESSAGES_PER_INSERT`], with ids in the order
    /// given (the transaction holds the turn for ids), and returns their rows in that order.
    pub async fn insert_messages(
        &mut self,
        messages: &[NewMessage<'_>],
    ) -> Result<Vec<MessageRow>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        self.take_message_id_turn().await?;
        self.wakes_streams = true;
        let mut stored = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(MESSAGES_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO messages (room_id, author, body, posted_at, in_history) VALUES ",
            );
            self.backend.push_placeholders(&mut sql, chunk.len(), 5);
            sql.push_str(" RETURNING ");
            sql.push_str(MESSAGE_COLUMNS);
            if self.backend == Backend::Postgres {
                // Announced with the rows rather than by a statement of its own at commit.
                sql.push_str(", ");
                sql.push_str(super::ANNOUNCE);
                sql.push_str(" AS announced");
            }
            let mut statement = sqlx::query(&sql);
            for message in chunk {
                statement = statement
                    .bind(message.room_id)
                    .bind(message.author)
                    .bind(message.body)
                    .bind(message.posted_at)
                    .bind(i64::from(message.in_history));
            }
            let rows = statement.fetch_all(&mut *self.inner).await?;
            // RETURNING promises no order; the ids were handed out in the order of the rows.
            let mut rows = rows
                .iter()
                .map(message_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|row| row.id);
            let matches = rows.len() == chunk.len()
                && rows.iter().zip(chunk).all(|(row, message)| {
                    row.room_id == message.room_id
                        && row.author == message.author
                        && row.body == message.body
                });
            if !matches {
                return Err(StoreError::Inconsistent(
                    "the ids of a multi-row message insert are not in the order of its rows"
                        .to_owned(),
                ));
            }
            stored.extend(rows);
        }
        self.announced |= self.backend == Backend::Postgres;
        Ok(stored)
    }

    /// Stores messages as they were elsewhere, ids and times included (import, seeding).
    pub async fn insert_messages_exact(
        &mut self,
        messages: &[MessageRow],
    ) -> Result<(), StoreError> {
        // Several rows per statement: an import of millions of messages is bound by round trips.
        for chunk in messages.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO messages (id, room_id, author, body, posted_at, in_history, replaced, idempotency_key) VALUES ",
            );
            self.backend.push_placeholders(&mut sql, chunk.len(), 8);
            let mut statement = sqlx::query(&sql);
            for message in chunk {
                statement = statement
                    .bind(message.id)
                    .bind(message.room_id)
                    .bind(&message.author)
                    .bind(&message.body)
                    .bind(&message.posted_at)
                    .bind(i64::from(message.in_history))
                    .bind(i64::from(message.replaced))
                    .bind(&message.idempotency_key);
            }
            statement.execute(&mut *self.inner).await?;
        }
        Ok(())
    }

    /// The rooms these messages are in, each once.
    pub async fn rooms_of_messages(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut rooms = std::collections::BTreeSet::new();
        for chunk in ids.chunks(500) {
            let mut sql = String::from("SELECT DISTINCT room_id FROM messages WHERE id IN ");
            self.backend.push_placeholders(&mut sql, 1, chunk.len());
            let mut statement = sqlx::query(&sql);
            for id in chunk {
                statement = statement.bind(*id);
            }
            for row in statement.fetch_all(&mut *self.inner).await? {
                rooms.insert(row.try_get::<i64, _>(0)?);
            }
        }
        Ok(rooms.into_iter().collect())
    }

    /// Which of these message ids are taken.
    pub async fn existing_message_ids(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError> {
        let mut taken = Vec::new();
        for chunk in ids.chunks(500) {
            let mut sql = String::from("SELECT id FROM messages WHERE id IN ");
            self.backend.push_placeholders(&mut sql, 1, chunk.len());
            let mut statement = sqlx::query(&sql);
            for id in chunk {
                statement = statement.bind(*id);
            }
            for row in statement.fetch_all(&mut *self.inner).await? {
                taken.push(row.try_get(0)?);
            }
        }
        Ok(taken)
    }

    pub async fn delete_messages(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            let mut sql = String::from("DELETE FROM messages WHERE id IN ");
            self.backend.push_placeholders(&mut sql, 1, chunk.len());
            let mut statement = sqlx::query(&sql);
            for id in chunk {
                statement = statement.bind(*id);
            }
            statement.execute(&mut *self.inner).await?;
        }
        Ok(())
    }

    /// Deletes a room's messages posted at or before `end` (inclusive); returns how many.
    pub async fn clear_messages(&mut self, room_id: i64, end: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM messages WHERE room_id = $1 AND posted_at <= $2")
            .bind(room_id)
            .bind(end)
            .execute(&mut *self.inner)
            .await?;
        Ok(result.rows_affected())
    }

    /// How many of a room's messages were posted on or before `end` (what clearing removes).
    pub async fn count_messages_through(
        &mut self,
        room_id: i64,
        end: &str,
    ) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM messages WHERE room_id = $1 AND posted_at <= $2",
        )
        .bind(room_id)
        .bind(end)
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or_default())
    }

    /// A room's messages, optionally by one author and within a window, oldest first.
    pub async fn room_messages(
        &mut self,
        room_id: i64,
        author: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Result<Vec<MessageRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = $1 \
             AND ($2 IS NULL OR author = $2) AND ($3 IS NULL OR posted_at >= $3) \
             AND ($4 IS NULL OR posted_at <= $4) ORDER BY id"
        ))
        .bind(room_id)
        .bind(author)
        .bind(start)
        .bind(end)
        .fetch_all(&mut *self.inner)
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    pub async fn delete_message(&mut self, id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn replace_message(&mut self, id: i64, body: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET body = $2, replaced = 1 WHERE id = $1")
            .bind(id)
            .bind(body)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    pub async fn delete_room_messages(&mut self, room_id: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM messages WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// The id of the `limit`-th message after `after` (or the last one), for sizing a batch.
    pub async fn batch_end(&mut self, after: i64, limit: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(id) FROM (SELECT id FROM messages WHERE id > $1 ORDER BY id LIMIT $2) AS batch")
            .bind(after)
            .bind(limit)
            .fetch_one(&mut *self.inner)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Records a change of a room for live streams, in commit order.
    pub async fn insert_room_change(
        &mut self,
        room_id: i64,
        room_name: &str,
        change: RoomChangeKind,
        version: i64,
        at: &str,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            // As for messages: ids must commit in order for "after id N" to miss nothing.
            sqlx::query(&AdvisoryLock::RoomChangeIds.transaction_lock_sql())
                .fetch_one(&mut *self.inner)
                .await?;
        }
        self.wakes_streams = true;
        sqlx::query("INSERT INTO room_changes (room_id, room_name, change, version, changed_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(room_id)
            .bind(room_name)
            .bind(change.as_str())
            .bind(version)
            .bind(at)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Records the creation of each of `rooms` (id, name; at version 1), in a few multi-row
    /// statements, as [`Tx::insert_room_change`] would one by one.
    pub async fn insert_room_creations(
        &mut self,
        rooms: &[(i64, &str)],
        at: &str,
    ) -> Result<(), StoreError> {
        if rooms.is_empty() {
            return Ok(());
        }
        if self.backend == Backend::Postgres {
            sqlx::query(&AdvisoryLock::RoomChangeIds.transaction_lock_sql())
                .fetch_one(&mut *self.inner)
                .await?;
        }
        self.wakes_streams = true;
        for chunk in rooms.chunks(ROOM_CHANGES_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO room_changes (room_id, room_name, change, version, changed_at) VALUES ",
            );
            self.backend.push_placeholders(&mut sql, chunk.len(), 5);
            let mut statement = sqlx::query(&sql);
            for (room_id, room_name) in chunk {
                statement = statement
                    .bind(*room_id)
                    .bind(*room_name)
                    .bind(RoomChangeKind::Created.as_str())
                    .bind(1_i64)
                    .bind(at);
            }
            statement.execute(&mut *self.inner).await?;
        }
        Ok(())
    }
}

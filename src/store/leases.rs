//! The `locks` and `checkpoints` tables: named leases (the apply lock, the archiver) and the
//! archiver's progress.

use sqlx::Row;

use super::{StoreError, Tx};

/// How far the compliance archiver got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoint {
    pub last_message_id: i64,
    /// A batch recorded before its files were written: (first id, last id).
    pub pending: Option<(i64, i64)>,
    pub last_run_at: Option<String>,
}

impl Checkpoint {
    /// The last event id surely archived: a batch still pending may not be on disk yet.
    pub fn archived_through(&self) -> i64 {
        self.pending
            .map_or(self.last_message_id, |(first, _)| first - 1)
    }
}

/// A holder of a named lock.
#[derive(Clone, Debug)]
pub struct LockRow {
    pub holder: String,
    pub acquired_at: String,
    pub expires_at: i64,
}

impl Tx {
    /// Reads the archiver's checkpoint (locked on PostgreSQL).
    pub async fn checkpoint(&mut self, name: &str) -> Result<Checkpoint, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT last_message_id, pending_first, pending_last, last_run_at FROM archive_checkpoint WHERE name = $1{}",
            self.backend.lock_clause()
        ))
        .bind(name)
        .fetch_optional(&mut *self.inner)
        .await?;
        let Some(row) = row else {
            return Ok(Checkpoint::default());
        };
        let first: Option<i64> = row.try_get("pending_first")?;
        let last: Option<i64> = row.try_get("pending_last")?;
        Ok(Checkpoint {
            last_message_id: row.try_get("last_message_id")?,
            pending: first.zip(last),
            last_run_at: row.try_get("last_run_at")?,
        })
    }

    pub async fn save_checkpoint(
        &mut self,
        name: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO archive_checkpoint (name, last_message_id, pending_first, pending_last, last_run_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET last_message_id = $2, \
             pending_first = $3, pending_last = $4, last_run_at = $5",
        )
        .bind(name)
        .bind(checkpoint.last_message_id)
        .bind(checkpoint.pending.map(|(first, _)| first))
        .bind(checkpoint.pending.map(|(_, last)| last))
        .bind(&checkpoint.last_run_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Takes the named lock for `holder` unless someone else holds an unexpired one.
    ///
    /// Returns the current holder when the lock is taken by another, and otherwise whether
    /// `holder` already held it (a renewal).
    pub async fn acquire_lock(
        &mut self,
        name: &str,
        holder: &str,
        now: &str,
        now_seconds: i64,
        expires_at: i64,
    ) -> Result<Result<bool, LockRow>, StoreError> {
        let existing = sqlx::query(&format!(
            "SELECT holder, acquired_at, expires_at FROM locks WHERE name = $1{}",
            self.backend.lock_clause()
        ))
        .bind(name)
        .fetch_optional(&mut *self.inner)
        .await?;
        let mut renewal = false;
        if let Some(row) = existing {
            let current = LockRow {
                holder: row.try_get("holder")?,
                acquired_at: row.try_get("acquired_at")?,
                expires_at: row.try_get("expires_at")?,
            };
            if current.holder != holder && current.expires_at > now_seconds {
                return Ok(Err(current));
            }
            renewal = current.holder == holder && current.expires_at > now_seconds;
        }
        // The upsert itself re-checks the holder: two first acquisitions that both found no row
        // (PostgreSQL's FOR UPDATE locks nothing then) meet here, and the later one, seeing
        // the earlier one's row, updates nothing.
        let taken = sqlx::query(
            "INSERT INTO locks (name, holder, acquired_at, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, acquired_at = $3, expires_at = $4 \
             WHERE locks.holder = $2 OR locks.expires_at <= $5 RETURNING holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(expires_at)
        .bind(now_seconds)
        .fetch_optional(&mut *self.inner)
        .await?;
        if taken.is_none() {
            let row =
                sqlx::query("SELECT holder, acquired_at, expires_at FROM locks WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *self.inner)
                    .await?;
            return Ok(Err(LockRow {
                holder: row.try_get("holder")?,
                acquired_at: row.try_get("acquired_at")?,
                expires_at: row.try_get("expires_at")?,
            }));
        }
        Ok(Ok(renewal))
    }

    /// Who holds the named lock, if anyone holds it unexpired.
    pub async fn lock_holder(
        &mut self,
        name: &str,
        now_seconds: i64,
    ) -> Result<Option<LockRow>, StoreError> {
        let row = sqlx::query(
            "SELECT holder, acquired_at, expires_at FROM locks WHERE name = $1 AND expires_at > $2",
        )
        .bind(name)
        .bind(now_seconds)
        .fetch_optional(&mut *self.inner)
        .await?;
        row.map(|row| {
            Ok(LockRow {
                holder: row.try_get("holder")?,
                acquired_at: row.try_get("acquired_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    /// Removes the named lock whoever holds it; returns the holder it had, expired or not.
    pub async fn break_lock(&mut self, name: &str) -> Result<Option<LockRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT holder, acquired_at, expires_at FROM locks WHERE name = $1{}",
            self.backend.lock_clause()
        ))
        .bind(name)
        .fetch_optional(&mut *self.inner)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM locks WHERE name = $1")
            .bind(name)
            .execute(&mut *self.inner)
            .await?;
        Ok(Some(LockRow {
            holder: row.try_get("holder")?,
            acquired_at: row.try_get("acquired_at")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Releases the named lock if `holder` holds it; returns whether it did.
    pub async fn release_lock(&mut self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&mut *self.inner)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}

//! The `web_sessions` table (browser sessions by the SHA-256 of their cookie) and the
//! `applied_manifests` row (what the last `perch apply` applied).

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, Tx};

/// A browser session: never the cookie itself, only its hash.
#[derive(Clone, Debug)]
pub struct SessionRow {
    pub hash: String,
    /// The token the person signed in with: the session stands only while it does.
    pub token_hash: String,
    /// The token every state-changing form and request of the session must carry.
    pub csrf: String,
    pub created_at: String,
    pub expires_at: String,
}

/// The manifests of the last apply and who applied them.
#[derive(Clone, Debug)]
pub struct AppliedRow {
    pub applied_by: String,
    pub applied_at: String,
    pub revision: Option<String>,
    /// Where the apply stopped, when it failed part way.
    pub stopped: Option<String>,
    /// `[{"path": ..., "text": ...}]`, as the apply read them.
    pub files: String,
}

fn session_from_row(row: &AnyRow) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        hash: row.try_get("hash")?,
        token_hash: row.try_get("token_hash")?,
        csrf: row.try_get("csrf")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

impl Store {
    pub async fn session(&self, hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT hash, token_hash, csrf, created_at, expires_at FROM web_sessions \
             WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    pub async fn applied(&self) -> Result<Option<AppliedRow>, StoreError> {
        let row = sqlx::query(
            "SELECT applied_by, applied_at, revision, stopped, files FROM applied_manifests \
             WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(AppliedRow {
                applied_by: row.try_get("applied_by")?,
                applied_at: row.try_get("applied_at")?,
                revision: row.try_get("revision")?,
                stopped: row.try_get("stopped")?,
                files: row.try_get("files")?,
            })
        })
        .transpose()
    }
}

impl Tx {
    /// Opens a session; expired sessions go at the same time, so the table never grows past
    /// the sessions that still stand.
    pub async fn insert_session(&mut self, session: &SessionRow) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1")
            .bind(&session.created_at)
            .execute(&mut *self.inner)
            .await?;
        sqlx::query(
            "INSERT INTO web_sessions (hash, token_hash, csrf, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.hash)
        .bind(&session.token_hash)
        .bind(&session.csrf)
        .bind(&session.created_at)
        .bind(&session.expires_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Ends a session. A change of access: live streams opened by it end.
    pub async fn delete_session(&mut self, hash: &str) -> Result<bool, StoreError> {
        self.changes_access = true;
        let result = sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
            .bind(hash)
            .execute(&mut *self.inner)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Replaces the record of the last apply.
    pub async fn put_applied(&mut self, applied: &AppliedRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO applied_manifests (id, applied_by, applied_at, revision, stopped, files) \
             VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             applied_by = excluded.applied_by, applied_at = excluded.applied_at, \
             revision = excluded.revision, stopped = excluded.stopped, files = excluded.files",
        )
        .bind(&applied.applied_by)
        .bind(&applied.applied_at)
        .bind(&applied.revision)
        .bind(&applied.stopped)
        .bind(&applied.files)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }
}

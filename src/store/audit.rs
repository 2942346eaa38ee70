//! The `audit` table: who did what to which object, when, recorded with the act.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, Tx};
use crate::domain::audit::AuditAction;

/// One recorded act.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: AuditAction,
    /// What the act was on: an object kind (`Room`, ...), or `Token`, `Lock`, `Data`,
    /// `Archive`.
    pub kind: String,
    pub name: String,
    /// The act's particulars as JSON: changed fields, a filter, counts.
    pub detail: serde_json::Value,
}

/// Which entries to read, newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    /// Entries at or after this instant (RFC 3339, as stored).
    pub since: Option<String>,
    /// Entries at or before this instant.
    pub until: Option<String>,
    /// Entries with an id below this (the next page's cursor).
    pub before: Option<i64>,
    pub limit: i64,
}

fn audit_from_row(row: &AnyRow) -> Result<AuditRow, StoreError> {
    let action: String = row.try_get("action")?;
    let detail: String = row.try_get("detail")?;
    let corrupt = |message: String| StoreError::Corrupt {
        kind: crate::domain::Kind::Room,
        name: "audit".to_owned(),
        message,
    };
    Ok(AuditRow {
        id: row.try_get("id")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        action: AuditAction::parse(&action)
            .ok_or_else(|| corrupt(format!("unknown audit action `{action}`")))?,
        kind: row.try_get("kind")?,
        name: row.try_get("name")?,
        detail: serde_json::from_str(&detail)
            .map_err(|error| corrupt(format!("an audit entry's detail is not JSON: {error}")))?,
    })
}

impl Store {
    /// A page of the audit trail, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        let sql = "SELECT id, at, actor, action, kind, name, detail FROM audit \
                   WHERE ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR name = $2) \
                   AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR action = $4) \
                   AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at <= $6) \
                   AND ($7 IS NULL OR id < $7) ORDER BY id DESC LIMIT $8";
        let rows = sqlx::query(sql)
            .bind(query.kind.as_deref())
            .bind(query.name.as_deref())
            .bind(query.actor.as_deref())
            .bind(query.action.map(AuditAction::as_str))
            .bind(query.since.as_deref())
            .bind(query.until.as_deref())
            .bind(query.before)
            .bind(query.limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from_row).collect()
    }

    /// Every entry, oldest first (to copy a server).
    pub async fn audit_all(&self) -> Result<Vec<AuditRow>, StoreError> {
        let rows =
            sqlx::query("SELECT id, at, actor, action, kind, name, detail FROM audit ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(audit_from_row).collect()
    }
}

impl Tx {
    /// Appends audit entries recorded elsewhere, in their order, under new ids (a migration,
    /// whose own import is already recorded here).
    pub async fn append_audit(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        for row in rows {
            self.record_audit(
                &row.at,
                &row.actor,
                row.action,
                &row.kind,
                &row.name,
                &row.detail,
            )
            .await?;
        }
        Ok(())
    }

    /// Records an act, in the transaction that does it.
    pub async fn record_audit(
        &mut self,
        at: &str,
        actor: &str,
        action: AuditAction,
        kind: &str,
        name: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, kind, name, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(at)
        .bind(actor)
        .bind(action.as_str())
        .bind(kind)
        .bind(name)
        .bind(detail.to_string())
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Records several acts in a few multi-row statements, in the order given.
    pub async fn record_audits(&mut self, entries: &[NewAuditEntry<'_>]) -> Result<(), StoreError> {
        for chunk in entries.chunks(AUDITS_PER_INSERT) {
            let mut sql =
                String::from("INSERT INTO audit (at, actor, action, kind, name, detail) VALUES ");
            self.backend.push_placeholders(&mut sql, chunk.len(), 6);
            let mut statement = sqlx::query(&sql);
            for entry in chunk {
                statement = statement
                    .bind(entry.at)
                    .bind(entry.actor)
                    .bind(entry.action.as_str())
                    .bind(entry.kind)
                    .bind(entry.name)
                    .bind(entry.detail.as_str());
            }
            statement.execute(&mut *self.inner).await?;
        }
        Ok(())
    }
}

/// An act to record with [`Tx::record_audits`].
pub struct NewAuditEntry<'a> {
    pub at: &'a str,
    pub actor: &'a str,
    pub action: AuditAction,
    pub kind: &'a str,
    pub name: &'a str,
    /// The detail as JSON text.
    pub detail: String,
}

/// Rows per statement of a multi-row audit insert (6 values each).
const AUDITS_PER_INSERT: usize = 250;

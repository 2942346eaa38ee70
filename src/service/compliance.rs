//! What compliance keeps and who did what: capture at write time, legal holds, retention and
//! the audit trail.
//!
//! # Guarantees
//! - Every event compliance keeps (a message posted, a room's live stream opened or closed,
//!   history read) is written to the compliance log in the transaction that does it, while the
//!   compliance configuration is enabled. Nothing users or administrators do to history
//!   (removing, replacing, clearing, removing the room, retention) touches the log; the
//!   archiver writes it once.
//! - Every act on configuration, tokens, locks and content is recorded in the audit trail in
//!   the transaction that does it: object writes by the store itself ([`Tx::insert`],
//!   [`Tx::update`], [`Tx::delete`]), the other acts here.
//! - Retention deletes a message only once compliance holds nothing unarchived of it, and
//!   never in a room under a legal hold, nor in a category under one.

use serde_json::json;

use super::{Caller, Result, Service, ServiceError, WriteAccess, require_admin};
use crate::api::ErrorCode;
use crate::api::wire::COMPLIANCE_NAME;
use crate::api::wire::{AuditEntry, AuditFilter, AuditPage};
use crate::clock;
use crate::domain::audit::AuditAction;
use crate::domain::compliance::{HeldAct, blocking_hold, may_hold};
use crate::domain::{Category, ComplianceConfiguration, Hold, Kind, Room};
use crate::store::{AuditQuery, NewComplianceEvent, Tx};

/// Largest page of the audit trail.
pub const MAX_AUDIT_PAGE: i64 = 1000;
/// Longest hold reason, in characters.
pub const MAX_REASON_LEN: usize = 1024;

/// Records an act that is not an object write (those the store records itself).
pub(super) async fn record(
    tx: &mut Tx,
    caller: &Caller,
    action: AuditAction,
    kind: &str,
    name: &str,
    detail: serde_json::Value,
) -> Result<()> {
    tx.record_audit(&clock::now(), &caller.name, action, kind, name, &detail)
        .await?;
    Ok(())
}

/// Whether compliance captures events now, read in the transaction that would capture.
pub(super) async fn capturing(tx: &mut Tx) -> Result<bool> {
    // Read without a row lock: posts hold the message-id turn before they get here, history
    // reads and streams take that turn after, and a lock here would order the two ways.
    let Some(row) = tx
        .read(Kind::ComplianceConfiguration, COMPLIANCE_NAME)
        .await?
    else {
        return Ok(false);
    };
    let configuration: ComplianceConfiguration = super::decode(&row)?;
    Ok(configuration.enabled)
}

/// Writes `event` to the compliance log if compliance is on.
pub(super) async fn capture(tx: &mut Tx, event: NewComplianceEvent<'_>) -> Result<()> {
    if capturing(tx).await? {
        tx.insert_compliance_event(&event, &clock::now()).await?;
    }
    Ok(())
}

/// Refuses `act` in room `room` of category `category` while a hold stands on either.
pub(super) async fn refuse_if_held(
    tx: &mut Tx,
    act: HeldAct,
    room: &str,
    category: &str,
) -> Result<()> {
    let holds = tx
        .holds_on(&[(Kind::Room, room), (Kind::Category, category)])
        .await?;
    if let Some(hold) = blocking_hold(room, category, &holds) {
        let what = match act {
            HeldAct::Clear => "cleared",
            HeldAct::RemoveMessages => "have messages removed",
            HeldAct::RemoveRoom => "removed",
            HeldAct::Move => "renamed or moved to another category",
            HeldAct::Retention => "expire messages",
        };
        return Err(ServiceError::Conflict {
            code: ErrorCode::Held,
            message: format!(
                "room `{room}` cannot be {what}: a legal hold stands on {} `{}` (placed by {} at {}: {})",
                hold.kind.as_str().to_lowercase(),
                hold.name,
                hold.placed_by,
                hold.placed_at,
                hold.reason
            ),
        });
    }
    Ok(())
}

/// What one retention run deleted.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRun {
    /// Messages deleted from user-facing history.
    pub expired: u64,
    /// Rooms left alone because a hold stands.
    pub held: Vec<String>,
}

impl Service {
    /// A page of the audit trail, newest first; administrators only.
    pub async fn audit(&self, caller: &Caller, filter: AuditFilter) -> Result<AuditPage> {
        require_admin(caller, "read the audit trail")?;
        let limit = filter.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                ErrorCode::InvalidField,
                format!("limit is 1 to {MAX_AUDIT_PAGE}"),
            ));
        }
        let instant = |field: &str, value: Option<&str>| {
            value
                .map(|text| {
                    clock::parse(text, field == "until")
                        .map(clock::format)
                        .ok_or_else(|| {
                            ServiceError::invalid(
                                field,
                                ErrorCode::InvalidField,
                                format!("{field} `{text}` is not a date (2016-01-31) or a time (2016-01-31T17:00:00Z)"),
                            )
                        })
                })
                .transpose()
        };
        let query = AuditQuery {
            since: instant("since", filter.since.as_deref())?,
            until: instant("until", filter.until.as_deref())?,
            kind: filter.kind,
            name: filter.name,
            actor: filter.actor,
            action: filter.action,
            before: filter.before,
            limit,
        };
        let rows = self.store.audit(&query).await?;
        let full = i64::try_from(rows.len()).unwrap_or(i64::MAX) == limit;
        let next = if full {
            rows.last().map(|row| row.id)
        } else {
            None
        };
        let items = rows
            .into_iter()
            .map(|row| AuditEntry {
                id: row.id,
                at: row.at,
                actor: row.actor,
                action: row.action,
                kind: row.kind,
                name: row.name,
                detail: row.detail,
            })
            .collect();
        Ok(AuditPage { items, next })
    }

    /// Every legal hold; administrators only.
    pub async fn holds(&self, caller: &Caller) -> Result<Vec<Hold>> {
        require_admin(caller, "read legal holds")?;
        Ok(self.store.holds().await?)
    }

    /// Places (or restates) a legal hold on a room or a category; administrators only.
    pub async fn place_hold(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        reason: &str,
    ) -> Result<Hold> {
        require_admin(caller, "place legal holds")?;
        if !may_hold(kind) {
            return Err(ServiceError::invalid(
                "kind",
                ErrorCode::InvalidField,
                format!("holds are placed on rooms and categories, not on {kind}"),
            ));
        }
        // Reasons are printed by `perch hold list` and in refusals: no control characters,
        // which a terminal would obey, and no invisible ones.
        if reason.trim().is_empty()
            || reason.chars().count() > MAX_REASON_LEN
            || reason.chars().any(crate::text::is_unsafe_for_terminal)
        {
            return Err(ServiceError::invalid(
                "reason",
                ErrorCode::InvalidField,
                format!(
                    "a hold needs a reason of 1 to {MAX_REASON_LEN} characters, without control, bidirectional-control or invisible characters"
                ),
            ));
        }
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let Some(target) = tx.get(kind, name).await? else {
            return Err(ServiceError::not_found(kind, name));
        };
        // Under the name as stored, which the rules that consult holds compare with.
        let name = target.name.as_str();
        let hold = Hold {
            kind,
            name: name.to_owned(),
            reason: reason.to_owned(),
            placed_by: caller.name.clone(),
            placed_at: clock::now(),
        };
        let before = tx.place_hold(&hold).await?;
        record(
            &mut tx,
            caller,
            AuditAction::PlaceHold,
            kind.as_str(),
            name,
            json!({"reason": reason, "replaced": before.map(|hold| hold.reason)}),
        )
        .await?;
        tx.commit().await?;
        Ok(hold)
    }

    /// Releases a legal hold; administrators only. Returns the hold released.
    pub async fn release_hold(&self, caller: &Caller, kind: Kind, name: &str) -> Result<Hold> {
        require_admin(caller, "release legal holds")?;
        let mut name = name.to_owned();
        crate::domain::normalise_name(&mut name);
        let name = name.as_str();
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let Some(hold) = tx.release_hold(kind, name).await? else {
            // "Not found" names the object the hold would be on: there is none on it.
            return Err(ServiceError::not_found(kind, name));
        };
        record(
            &mut tx,
            caller,
            AuditAction::ReleaseHold,
            kind.as_str(),
            name,
            json!({"reason": hold.reason, "placedBy": hold.placed_by, "placedAt": hold.placed_at}),
        )
        .await?;
        tx.commit().await?;
        Ok(hold)
    }

    /// Deletes messages older than their category's `retention` from user-facing history,
    /// once compliance has archived them, outside held rooms and categories; administrators
    /// only (the server runs it on a schedule).
    pub async fn expire_messages(&self, caller: &Caller) -> Result<RetentionRun> {
        self.expire_messages_at(caller, clock::unix_seconds()).await
    }

    /// [`Service::expire_messages`] as if it were `now` (Unix seconds).
    pub async fn expire_messages_at(&self, caller: &Caller, now: i64) -> Result<RetentionRun> {
        require_admin(caller, "run retention")?;
        let mut run = RetentionRun::default();
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let checkpoint = tx.checkpoint(super::ARCHIVER).await?;
        let archived_through = checkpoint.archived_through();
        let mut cutoffs = std::collections::HashMap::new();
        for category_row in tx.list(Kind::Category).await? {
            let category: Category = super::decode(&category_row)?;
            if let Some(retention) = category.retention {
                cutoffs.insert(
                    category.name,
                    (retention, clock::format_unix(retention.cutoff(now))),
                );
            }
        }
        let categories: Vec<String> = cutoffs.keys().cloned().collect();
        // Every room at once, in the one order of invariant 2, not category by category.
        for room_row in tx.lock_rooms_in_categories(&categories).await? {
            let room: Room = super::decode(&room_row)?;
            let Some((retention, cutoff)) = cutoffs.get(&room.category) else {
                continue;
            };
            match refuse_if_held(&mut tx, HeldAct::Retention, &room.name, &room.category).await {
                Ok(()) => {}
                Err(ServiceError::Conflict { .. }) => {
                    run.held.push(room.name);
                    continue;
                }
                Err(error) => return Err(error),
            }
            let expired = tx
                .expire_messages(room_row.id, cutoff, archived_through)
                .await?;
            if expired > 0 {
                record(
                    &mut tx,
                    caller,
                    AuditAction::Expire,
                    Kind::Room.as_str(),
                    &room.name,
                    json!({"before": cutoff, "retention": retention.to_string(), "count": expired}),
                )
                .await?;
                run.expired += expired;
            }
        }
        tx.commit().await?;
        if run.expired > 0 {
            tracing::info!(expired = run.expired, "retention expired messages");
        }
        Ok(run)
    }

    /// Runs retention every `interval` until `stopped` completes.
    pub async fn run_retention(
        &self,
        interval: std::time::Duration,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let caller = Caller::system("perch:retention".to_owned());
        loop {
            if let Err(error) = self.expire_messages(&caller).await {
                tracing::warn!(%error, "retention failed; retrying at the next interval");
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                _ = stopped.changed() => return,
            }
        }
    }
}

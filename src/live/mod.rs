//! Where the live state is: the seam between the reconciler and a server, one trait, two
//! implementations. (Named `live`, not `target`, which is Cargo's build folder.)
//!
//! - [`http::HttpTarget`]: a `perch serve` over its HTTP API.
//! - [`embedded::EmbeddedTarget`]: the service layer in process, over the same database file
//!   `perch serve` would open.
//!
//! # Guarantees
//! Executing an action is idempotent where it can be: removing an object already gone counts
//! as done. Every create and set marks the object as managed by Perch.

pub mod embedded;
pub mod http;
pub mod sfb;
mod state_pages;

use std::future::Future;
use std::pin::Pin;

use crate::api::wire::{
    AppliedRequest, AuditEntry, AuditFilter, AuditPage, ChangeCounter, ClearRequest, ExportOptions,
    ImportReport, LiveObject, RemoveRequest, RoomListPage, RoomQuery, STATE_FORMAT_VERSION,
    StateDocumentRead, TokenCreated, TokenInfo, TokenRequest,
};
#[cfg(doc)]
use crate::api::wire::{ShownObject, StoredRow};
use crate::api::{ClientError, ErrorCode, Live};
use crate::domain::audit::AuditAction;
use crate::domain::{Hold, Kind};
use crate::plan::{Action, PLAN_FORMAT_VERSION, Plan};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a target call failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("another apply holds the lock: {holder} since {since}")]
    LockHeld { holder: String, since: String },
    /// The server refused: a rule, a stale version, a missing right.
    #[error("{message} ({code})")]
    Rejected { code: ErrorCode, message: String },
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the server's live state cannot be read: {0}")]
    Unreadable(String),
    /// What this kind of target cannot do (a snapshot holds no chat data).
    #[error("{0}")]
    Unsupported(String),
}

impl TargetError {
    /// The error code the server (or the service in process) refused with, if it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TargetError::Rejected { code, .. } => Some(*code),
            TargetError::LockHeld { .. } => Some(ErrorCode::LockHeld),
            TargetError::Unreachable(_)
            | TargetError::Unreadable(_)
            | TargetError::Unsupported(_) => None,
        }
    }
}

impl From<ClientError> for TargetError {
    fn from(error: ClientError) -> TargetError {
        match error {
            ClientError::Rejected {
                code: ErrorCode::LockHeld,
                holder,
                ..
            } => TargetError::LockHeld {
                holder: holder.unwrap_or_default(),
                since: String::new(),
            },
            ClientError::Rejected { code, message, .. } => TargetError::Rejected { code, message },
            ClientError::InvalidUrl(_) | ClientError::Unreachable { .. } => {
                TargetError::Unreachable(error.to_string())
            }
            ClientError::Malformed(message) => TargetError::Unreadable(message),
        }
    }
}

/// A server the CLI can read and change: the reconciler's reads and actions, and every
/// administrator's operation on chat data. `cli/` reaches a server only through this.
pub trait Target: Send + Sync {
    /// Where this target is, for messages.
    fn describe(&self) -> String;

    /// Reads every configuration object.
    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>>;

    /// Where the configuration stands, if this target can say cheaply: equal counters mean
    /// an equal [`Target::live`]. `None` where it cannot (then nothing is cached).
    fn change_counter(&self) -> BoxFuture<'_, Result<Option<ChangeCounter>, TargetError>> {
        Box::pin(async { Ok(None) })
    }

    /// Carries out one action, atomically, checking the version it was planned against.
    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Carries out actions in order, stopping at the first failure; `progress` hears how many
    /// are done. Implementations may group actions into transactions, each action still atomic.
    fn execute_all<'a>(
        &'a self,
        actions: &'a [Action],
        progress: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, ApplyReport> {
        Box::pin(async move {
            let mut report = ApplyReport::default();
            let mut remaining = actions.iter();
            for action in remaining.by_ref() {
                match self.execute(action).await {
                    Ok(()) => {
                        report.done.push(action.to_string());
                        progress(report.done.len());
                    }
                    Err(error) => {
                        report.failed = Some((action.to_string(), error));
                        break;
                    }
                }
            }
            report.not_done = remaining.map(ToString::to_string).collect();
            report
        })
    }

    /// Takes (or renews) the apply lock for `holder` for `ttl_seconds`.
    fn lock<'a>(
        &'a self,
        holder: &'a str,
        ttl_seconds: i64,
    ) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Breaks a named lock whoever holds it; the holder it had, `None` when it was free.
    fn break_lock<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TargetError>>;

    /// Releases the apply lock if `holder` has it.
    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), TargetError>>;

    /// Deletes a room's messages up to a date (`Clear-CsPersistentChatRoom`); how many.
    fn clear_room<'a>(
        &'a self,
        room: &'a str,
        request: &'a ClearRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>>;

    /// Removes or replaces matching messages (`Remove-CsPersistentChatMessage`); how many.
    fn remove_messages<'a>(
        &'a self,
        room: &'a str,
        request: &'a RemoveRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>>;

    /// Writes a `perch-data` export; `progress` hears the lines written so far (where the
    /// target can tell).
    fn export_data<'a>(
        &'a self,
        options: &'a ExportOptions,
        progress: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, Result<Vec<u8>, TargetError>>;

    /// Imports a `perch-data` file, all or nothing.
    /// With `dry_run`, checks and counts everything and writes nothing.
    fn import_data(
        &self,
        file: Vec<u8>,
        replace_existing: bool,
        dry_run: bool,
    ) -> BoxFuture<'_, Result<ImportReport, TargetError>>;

    /// A page of the audit trail, newest first.
    fn audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, Result<AuditPage, TargetError>>;

    /// Every legal hold.
    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, TargetError>>;

    /// Places (or restates) a legal hold on a room or a category.
    fn place_hold<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>>;

    /// Releases a legal hold; returns it.
    fn release_hold<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>>;

    /// Every token (ids, never the tokens).
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TargetError>>;

    /// Creates a token; the answer holds it, this once.
    fn create_token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<TokenCreated, TargetError>>;

    /// Revokes a token, given itself or its id; what was revoked, `None` when nothing matched.
    fn revoke_token<'a>(
        &'a self,
        token_or_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenInfo>, TargetError>>;

    /// A page of the rooms that match (`GET /v1/rooms` with filters).
    fn rooms<'a>(
        &'a self,
        query: &'a RoomQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<RoomListPage, TargetError>>;

    /// How many messages each room (by id) holds: what removing it would delete. A target
    /// that cannot tell answers nothing.
    fn message_counts<'a>(
        &'a self,
        _room_ids: &'a [i64],
    ) -> BoxFuture<'a, Result<std::collections::BTreeMap<i64, u64>, TargetError>> {
        Box::pin(async {
            Err(TargetError::Unsupported(
                "this target cannot count the messages of rooms".to_owned(),
            ))
        })
    }

    /// Every object of a kind the caller may see, as shown (`GET /v1/{collection}`).
    fn list(
        &self,
        kind: Kind,
    ) -> BoxFuture<'_, Result<Vec<serde_json::Map<String, serde_json::Value>>, TargetError>>;

    /// One object as shown (`GET /v1/{collection}/{name}`); `None` when there is none.
    fn object<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<serde_json::Map<String, serde_json::Value>>, TargetError>>;

    /// Changes the fields given (`PATCH`: a list as `{"add": [...], "remove": [...]}`), in one
    /// transaction on the server; the object as it is now.
    fn patch<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, TargetError>>;

    /// Records the manifests an apply carried out, for the server's Git view.
    fn record_applied<'a>(
        &'a self,
        request: &'a AppliedRequest,
    ) -> BoxFuture<'a, Result<(), TargetError>>;

    /// What an offline target built instead of changing anything (a Skype for Business
    /// snapshot's PowerShell script), headed with `summary`; `None` for a live target.
    fn offline_script(&self, _summary: &str) -> Option<String> {
        None
    }

    /// Lets go of what the target holds open and removes what opening it created (a new
    /// database file), for a command that failed. A server needs nothing.
    fn close_and_discard(&self) -> BoxFuture<'_, ()> {
        self.close()
    }

    /// Lets go of what the target holds open (a database pool); a server needs nothing.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Builds the live state from `GET /v1/state` (both targets read this document).
pub(crate) fn live_from_state(json: &[u8]) -> Result<Live, TargetError> {
    let wrong_format = |format_version: u32| {
        TargetError::Unreadable(format!(
            "the server sends state format {format_version}; this perch reads format {STATE_FORMAT_VERSION}"
        ))
    };
    let document: StateDocumentRead = match serde_json::from_slice(json) {
        Ok(document) => document,
        Err(error) => {
            // Objects of another format may not read as ours: say which format it is.
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct FormatOnly {
                format_version: u32,
            }
            if let Ok(FormatOnly { format_version }) = serde_json::from_slice(json)
                && format_version != STATE_FORMAT_VERSION
            {
                return Err(wrong_format(format_version));
            }
            return Err(TargetError::Unreadable(format!(
                "the state is not the JSON expected: {error}"
            )));
        }
    };
    if document.format_version != STATE_FORMAT_VERSION {
        return Err(wrong_format(document.format_version));
    }
    let objects = document.objects().map_err(|error| {
        TargetError::Unreadable(format!("the state is not the JSON expected: {error}"))
    })?;
    Ok(Live::from_objects(objects))
}

/// Builds the live state from pages of comma-separated JSON values, each read as an
/// `Element`: objects as shown ([`ShownObject`]) or rows ([`StoredRow`]); the embedded
/// target's read of the store's rows, and the HTTP target's, which splits the document it
/// downloads. Takes each page as
/// `next_page` gives it and lets it go once read. Blocks: run it where blocking is allowed.
/// A page that is not the JSON expected ends the read (the sender then sees the receiver
/// gone).
pub(crate) fn live_from_pages<Element>(
    mut next_page: impl FnMut() -> Option<String>,
) -> Result<Live, TargetError>
where
    Element: for<'de> serde::Deserialize<'de> + Into<LiveObject>,
{
    let mut objects = Vec::new();
    let mut array = String::new();
    while let Some(page) = next_page() {
        array.clear();
        array.push('[');
        array.push_str(&page);
        array.push(']');
        drop(page);
        let page_objects: Vec<Element> = serde_json::from_str(&array).map_err(|error| {
            TargetError::Unreadable(format!("the state is not the JSON expected: {error}"))
        })?;
        objects.extend(page_objects.into_iter().map(Into::into));
    }
    Ok(Live::from_objects(objects))
}

/// What an apply did before it stopped.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub done: Vec<String>,
    /// The action that failed, and why.
    pub failed: Option<(String, TargetError)>,
    pub not_done: Vec<String>,
}

/// Carries out a plan's actions in order, stopping at the first failure.
///
/// `progress` is called with the number of actions done so far.
pub async fn apply_plan(
    target: &dyn Target,
    plan: &Plan,
    mut progress: impl FnMut(usize) + Send,
) -> ApplyReport {
    debug_assert!(plan.format_version <= PLAN_FORMAT_VERSION);
    target.execute_all(&plan.actions, &mut progress).await
}

/// Most missing objects whose removal drift and the Git view look up in the audit trail, one request each.
const MAX_REMOVALS_LOOKED_UP: usize = 100;

/// Who removed each object the manifests want but the server lacks, as the audit trail says.
/// A target that cannot say (an older server) leaves the answer out rather than fail drift.
pub async fn who_removed(
    target: &dyn Target,
    drifted: &[&crate::plan::Action],
) -> std::collections::HashMap<(Kind, String), AuditEntry> {
    let mut found = std::collections::HashMap::new();
    let missing = drifted
        .iter()
        .filter(|action| action.action == crate::plan::Verb::Create)
        .take(MAX_REMOVALS_LOOKED_UP);
    for action in missing {
        let filter = AuditFilter {
            kind: Some(action.kind.as_str().to_owned()),
            name: Some(action.name.clone()),
            action: Some(AuditAction::Remove),
            limit: Some(1),
            ..AuditFilter::default()
        };
        match target.audit(&filter).await {
            Ok(page) => {
                if let Some(entry) = page.items.into_iter().next() {
                    found.insert((action.kind, action.name.clone()), entry);
                }
            }
            Err(error) => {
                tracing::debug!(%error, "drift: cannot read the audit trail");
                break;
            }
        }
    }
    found
}

//! The embedded target: the service layer in process, over `--db`.

use serde_json::{Map, Value};

use super::{ApplyReport, BoxFuture, Target, TargetError, live_from_pages};
use crate::api::wire::StoredRow;
use crate::api::wire::{
    AppliedRequest, AuditFilter, AuditPage, ChangeCounter, ClearRequest, ExportOptions,
    ImportReport, RemoveRequest, RoomListPage, RoomQuery, TokenCreated, TokenInfo, TokenRequest,
};
use crate::api::{ErrorCode, Live};
use crate::domain::{ComplianceConfiguration, Hold, Kind};
use crate::plan::{Action, Verb};
use crate::service::{
    APPLY_LOCK, BackupProgress, BackupReport, Batch, Caller, MigrateReport, Object, Operation,
    Ownership, Precondition, RemoveFilter, Role, Service, ServiceError,
};
use crate::store::{Store, StoreError};

pub struct EmbeddedTarget {
    service: Service,
    caller: Caller,
    url: String,
}

impl EmbeddedTarget {
    /// The file a SQLite URL names; none for PostgreSQL or an in-memory database.
    pub fn database_file(url: &str) -> Option<&std::path::Path> {
        crate::store::sqlite_file(url)
    }

    /// Opens (and migrates) the database at `url`, acting as the local operator.
    pub async fn open(url: &str) -> Result<EmbeddedTarget, TargetError> {
        let store = Store::open(url).await.map_err(|error| {
            TargetError::Unreachable(format!("{error}: {}", source_chain(&error)))
        })?;
        Ok(EmbeddedTarget {
            service: Service::new(store),
            caller: Caller::local_operator(),
            url: url.to_owned(),
        })
    }

    /// The service of a running server, acting as `caller`: the panel's Git view and plan
    /// preview read the live state as `perch plan --db` reads it.
    pub fn serving(service: Service, caller: Caller) -> EmbeddedTarget {
        EmbeddedTarget {
            service,
            caller,
            url: "this server".to_owned(),
        }
    }

    /// Copies this whole store into `into`, which must be empty, verifying the counts.
    ///
    /// # Errors
    /// A target that holds data already, counts that differ, a store failure.
    pub async fn migrate_into(&self, into: &EmbeddedTarget) -> Result<MigrateReport, TargetError> {
        self.service
            .migrate_into(&self.caller, &into.service)
            .await
            .map_err(rejected)
    }
}

impl EmbeddedTarget {
    /// Writes a consistent copy of the whole database to `out` (see `service::backup`).
    ///
    /// # Errors
    /// The store failing, or `out` refusing a write.
    pub async fn backup(
        &self,
        out: &mut (dyn std::io::Write + Send),
        progress: &mut (dyn FnMut(BackupProgress<'_>) + Send),
    ) -> Result<BackupReport, TargetError> {
        self.service
            .backup(&self.caller, out, progress)
            .await
            .map_err(rejected)
    }

    /// Restores a backup into this database, which must be empty, verifying it whole first.
    ///
    /// # Errors
    /// A database that is not empty, a file that is not a whole, unaltered backup.
    pub async fn restore(
        &self,
        input: &mut (dyn std::io::BufRead + Send),
        progress: &mut (dyn FnMut(BackupProgress<'_>) + Send),
    ) -> Result<BackupReport, TargetError> {
        self.service
            .restore(&self.caller, input, progress)
            .await
            .map_err(rejected)
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        parts.push(cause.to_string());
        source = cause.source();
    }
    parts.join(": ")
}

pub(crate) fn rejected(error: ServiceError) -> TargetError {
    match error {
        ServiceError::LockHeld { holder, since } => TargetError::LockHeld { holder, since },
        // A name in use is the target refusing, not failing to answer.
        ServiceError::Store(store)
            if !matches!(
                store,
                StoreError::Duplicate { .. } | StoreError::UnstorableText(_)
            ) =>
        {
            TargetError::Unreachable(format!("{store}: {}", source_chain(&store)))
        }
        other => TargetError::Rejected {
            code: other.code(),
            message: other.to_string(),
        },
    }
}

/// Actions per transaction in a large apply: enough to make commits rare, few enough that a
/// progress bar moves and a lock renewal is never starved.
const BATCH_SIZE: usize = 500;

/// The most creations written together in one step of a batch.
const CREATIONS_TOGETHER: usize = 250;

/// How long one transaction of a large apply stays open at most: on SQLite it holds the only
/// write lock, so a `perch serve` on the same file waits this long at worst to store a chat
/// message (plus the action under way when the time ran out).
pub const MAX_TRANSACTION_TIME: std::time::Duration = std::time::Duration::from_millis(100);

/// The pause after a transaction that ran its full time, for others to write.
const PAUSE_BETWEEN_TRANSACTIONS: std::time::Duration = std::time::Duration::from_millis(10);

/// The service operation that carries out an action.
fn operation_of(action: &Action) -> Result<Operation, TargetError> {
    let ownership = if action.forget {
        Ownership::Unmanaged
    } else {
        Ownership::Managed {
            protect: action.protect,
        }
    };
    let precondition = action
        .expected_version
        .map_or(Precondition::None, Precondition::Version);
    if action.kind == Kind::ComplianceConfiguration {
        let fields = object_of(action)?;
        let configuration: ComplianceConfiguration =
            serde_json::from_value(Value::Object(fields.clone())).map_err(|error| {
                TargetError::Rejected {
                    code: ErrorCode::InvalidField,
                    message: error.to_string(),
                }
            })?;
        return Ok(Operation::SetCompliance {
            configuration,
            precondition,
            ownership,
        });
    }
    Ok(match action.action {
        Verb::Create | Verb::Set => {
            let fields = object_of(action)?;
            let object = Object::from_json(action.kind, Value::Object(fields.clone()))
                .map_err(|error| rejected(ServiceError::from_json_path(error)))?;
            if action.action == Verb::Create {
                Operation::Create { object, ownership }
            } else {
                // A rename writes the object, new name and all, under the name it has now.
                Operation::Replace {
                    name: action.live_name().to_owned(),
                    object,
                    precondition,
                    ownership,
                }
            }
        }
        Verb::Remove => Operation::Remove {
            kind: action.kind,
            name: action.name.clone(),
            precondition,
            force: false,
        },
    })
}

/// The creations of one kind that open `actions`, at most `limit` of them, as [`Batch::create_all`]
/// takes them; an action whose operation cannot be made ends the run (it fails on its own).
fn creations_at(actions: &[Action], limit: usize) -> Vec<(Object, Ownership)> {
    let mut creations = Vec::new();
    for action in actions.iter().take(limit.min(CREATIONS_TOGETHER)) {
        if action.action != Verb::Create || action.kind != actions[0].kind {
            break;
        }
        match operation_of(action) {
            Ok(Operation::Create { object, ownership }) => creations.push((object, ownership)),
            _ => break,
        }
    }
    creations
}

/// Runs one action in a batch; removing what is already gone counts as done.
async fn run_one(
    batch: &mut Batch<'_>,
    caller: &Caller,
    action: &Action,
    operation: Operation,
) -> Result<(), TargetError> {
    match batch.run(caller, operation).await {
        Ok(()) => Ok(()),
        Err(ServiceError::NotFound { .. }) if action.action == Verb::Remove => Ok(()),
        Err(error) => Err(rejected(error)),
    }
}

fn object_of(action: &Action) -> Result<&Map<String, Value>, TargetError> {
    action.object.as_ref().ok_or_else(|| TargetError::Rejected {
        code: ErrorCode::InvalidField,
        message: format!(
            "the plan's {} of {} `{}` carries no object",
            action.action, action.kind, action.name
        ),
    })
}

impl Target for EmbeddedTarget {
    fn describe(&self) -> String {
        format!("embedded store {}", self.url)
    }

    fn live(&self) -> BoxFuture<'_, Result<Live, TargetError>> {
        Box::pin(async move {
            // The database writes the next page while another thread parses this one.
            let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
            let parsing = tokio::task::spawn_blocking(move || {
                live_from_pages::<StoredRow>(|| receiver.blocking_recv())
            });
            let read = self.service.state_row_pages_to(&self.caller, &sender).await;
            drop(sender);
            let parsed = parsing.await.map_err(|error| {
                TargetError::Unreadable(format!("reading the stored state stopped: {error}"))
            });
            read.map_err(|error| match error {
                ServiceError::Store(store) => {
                    TargetError::Unreadable(format!("{store}: {}", source_chain(&store)))
                }
                other => rejected(other),
            })?;
            parsed?
        })
    }

    fn change_counter(&self) -> BoxFuture<'_, Result<Option<ChangeCounter>, TargetError>> {
        Box::pin(async move {
            self.service
                .change_counter(&self.caller)
                .await
                .map(Some)
                .map_err(rejected)
        })
    }

    fn execute<'a>(&'a self, action: &'a Action) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            let operation = operation_of(action)?;
            let mut batch = self.service.batch().await.map_err(rejected)?;
            run_one(&mut batch, &self.caller, action, operation).await?;
            batch.commit().await.map_err(rejected)
        })
    }

    fn execute_all<'a>(
        &'a self,
        actions: &'a [Action],
        progress: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, ApplyReport> {
        Box::pin(async move {
            let mut report = ApplyReport::default();
            let mut index = 0;
            'batches: while index < actions.len() {
                let mut batch = match self.service.batch().await {
                    Ok(batch) => batch,
                    Err(error) => {
                        report.failed = Some((actions[index].to_string(), rejected(error)));
                        index += 1;
                        break;
                    }
                };
                let mut in_batch = Vec::new();
                let mut failure = None;
                let opened = std::time::Instant::now();
                while index < actions.len()
                    && in_batch.len() < BATCH_SIZE
                    && opened.elapsed() < MAX_TRANSACTION_TIME
                {
                    let creations = creations_at(&actions[index..], BATCH_SIZE - in_batch.len());
                    if creations.len() > 1 {
                        // A run of creations is written together (see `Batch::create_all`).
                        let run = &actions[index..index + creations.len()];
                        index += creations.len();
                        let outcome = batch.create_all(&self.caller, creations).await;
                        let done = outcome.as_ref().err().map_or(run.len(), |(done, _)| *done);
                        in_batch.extend(run[..done].iter().map(ToString::to_string));
                        if let Err((done, error)) = outcome {
                            failure = Some((run[done].to_string(), rejected(error)));
                            // What follows the failed action was not tried.
                            index -= run.len() - done - 1;
                            break;
                        }
                        continue;
                    }
                    let action = &actions[index];
                    index += 1;
                    let outcome = match operation_of(action) {
                        Ok(operation) => run_one(&mut batch, &self.caller, action, operation).await,
                        Err(error) => Err(error),
                    };
                    match outcome {
                        Ok(()) => in_batch.push(action.to_string()),
                        Err(error) => {
                            failure = Some((action.to_string(), error));
                            break;
                        }
                    }
                }
                let ran_out_of_time = opened.elapsed() >= MAX_TRANSACTION_TIME;
                match batch.commit().await {
                    Ok(()) => {
                        report.done.append(&mut in_batch);
                        progress(report.done.len());
                        if ran_out_of_time && index < actions.len() {
                            // SQLite hands its write lock to no one in particular: a server
                            // waiting on it polls, and would keep missing the instant between
                            // two transactions. Leave it room.
                            tokio::time::sleep(PAUSE_BETWEEN_TRANSACTIONS).await;
                        }
                    }
                    Err(error) => {
                        // Nothing of this batch is durable: report it as not done.
                        let first = in_batch.first().cloned().unwrap_or_default();
                        report.failed = Some((first, rejected(error)));
                        report.not_done.extend(in_batch.into_iter().skip(1));
                        report
                            .not_done
                            .extend(actions[index..].iter().map(ToString::to_string));
                        break 'batches;
                    }
                }
                if let Some(failed) = failure {
                    report.failed = Some(failed);
                    break;
                }
            }
            if report.not_done.is_empty() {
                report.not_done = actions[index..].iter().map(ToString::to_string).collect();
            }
            report
        })
    }

    fn lock<'a>(
        &'a self,
        holder: &'a str,
        ttl_seconds: i64,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.service
                .acquire_lock(&self.caller, APPLY_LOCK, holder, ttl_seconds)
                .await
                .map_err(rejected)
        })
    }

    fn unlock<'a>(&'a self, holder: &'a str) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.service
                .release_lock(&self.caller, APPLY_LOCK, holder)
                .await
                .map(|_| ())
                .map_err(rejected)
        })
    }

    fn clear_room<'a>(
        &'a self,
        room: &'a str,
        request: &'a ClearRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>> {
        Box::pin(async move {
            if request.dry_run {
                self.service
                    .preview_clear_room(&self.caller, room, &request.end_date)
                    .await
            } else {
                self.service
                    .clear_room(&self.caller, room, &request.end_date)
                    .await
            }
            .map_err(rejected)
        })
    }

    fn remove_messages<'a>(
        &'a self,
        room: &'a str,
        request: &'a RemoveRequest,
    ) -> BoxFuture<'a, Result<u64, TargetError>> {
        Box::pin(async move {
            let filter = RemoveFilter::try_from(request.clone()).map_err(rejected)?;
            if request.dry_run {
                self.service
                    .preview_remove_messages(&self.caller, room, filter)
                    .await
            } else {
                self.service
                    .remove_messages(&self.caller, room, filter)
                    .await
            }
            .map_err(rejected)
        })
    }

    fn export_data<'a>(
        &'a self,
        options: &'a ExportOptions,
        progress: &'a mut (dyn FnMut(usize) + Send),
    ) -> BoxFuture<'a, Result<Vec<u8>, TargetError>> {
        Box::pin(async move {
            self.service
                .export_data(&self.caller, options, progress)
                .await
                .map_err(rejected)
        })
    }

    fn import_data(
        &self,
        file: Vec<u8>,
        replace_existing: bool,
        dry_run: bool,
    ) -> BoxFuture<'_, Result<ImportReport, TargetError>> {
        Box::pin(async move {
            if dry_run {
                self.service
                    .check_import(&self.caller, &file, replace_existing)
                    .await
            } else {
                self.service
                    .import_data(&self.caller, &file, replace_existing)
                    .await
            }
            .map_err(rejected)
        })
    }

    fn audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
    ) -> BoxFuture<'a, Result<AuditPage, TargetError>> {
        Box::pin(async move {
            self.service
                .audit(&self.caller, filter.clone())
                .await
                .map_err(rejected)
        })
    }

    fn holds(&self) -> BoxFuture<'_, Result<Vec<Hold>, TargetError>> {
        Box::pin(async move { self.service.holds(&self.caller).await.map_err(rejected) })
    }

    fn place_hold<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>> {
        Box::pin(async move {
            self.service
                .place_hold(&self.caller, kind, name, reason)
                .await
                .map_err(rejected)
        })
    }

    fn release_hold<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Hold, TargetError>> {
        Box::pin(async move {
            self.service
                .release_hold(&self.caller, kind, name)
                .await
                .map_err(rejected)
        })
    }

    fn break_lock<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, TargetError>> {
        Box::pin(async move {
            self.service
                .break_lock(&self.caller, name)
                .await
                .map_err(rejected)
        })
    }

    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenInfo>, TargetError>> {
        Box::pin(async move { self.service.tokens(&self.caller).await.map_err(rejected) })
    }

    fn message_counts<'a>(
        &'a self,
        room_ids: &'a [i64],
    ) -> BoxFuture<'a, Result<std::collections::BTreeMap<i64, u64>, TargetError>> {
        Box::pin(async move {
            self.service
                .message_counts(&self.caller, room_ids)
                .await
                .map_err(rejected)
        })
    }

    fn list(&self, kind: Kind) -> BoxFuture<'_, Result<Vec<Map<String, Value>>, TargetError>> {
        Box::pin(async move {
            let objects = self
                .service
                .list(&self.caller, kind)
                .await
                .map_err(rejected)?;
            objects.iter().map(shown).collect()
        })
    }

    fn object<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Map<String, Value>>, TargetError>> {
        Box::pin(async move {
            match self.service.get(&self.caller, kind, name).await {
                Ok(object) => shown(&object).map(Some),
                Err(ServiceError::NotFound { .. }) => Ok(None),
                Err(error) => Err(rejected(error)),
            }
        })
    }

    fn patch<'a>(
        &'a self,
        kind: Kind,
        name: &'a str,
        body: Map<String, Value>,
    ) -> BoxFuture<'a, Result<Map<String, Value>, TargetError>> {
        Box::pin(async move {
            let object = self
                .service
                .patch(&self.caller, kind, name, body, Precondition::None)
                .await
                .map_err(rejected)?;
            shown(&object)
        })
    }

    fn rooms<'a>(
        &'a self,
        query: &'a RoomQuery,
        limit: usize,
    ) -> BoxFuture<'a, Result<RoomListPage, TargetError>> {
        Box::pin(async move {
            let filter = query
                .filter()
                .map_err(|(field, message)| TargetError::Rejected {
                    code: ErrorCode::InvalidQuery,
                    message: format!("{field}: {message}"),
                })?;
            let page = self
                .service
                .rooms_page(&self.caller, &filter, query.after.as_deref(), limit)
                .await
                .map_err(rejected)?;
            let items = page
                .rooms
                .iter()
                .map(serde_json::to_value)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| TargetError::Unreadable(error.to_string()))?;
            Ok(RoomListPage {
                items,
                next: page.next,
            })
        })
    }

    fn record_applied<'a>(
        &'a self,
        request: &'a AppliedRequest,
    ) -> BoxFuture<'a, Result<(), TargetError>> {
        Box::pin(async move {
            self.service
                .record_applied(&self.caller, request.clone())
                .await
                .map_err(rejected)
        })
    }

    fn create_token<'a>(
        &'a self,
        request: &'a TokenRequest,
    ) -> BoxFuture<'a, Result<TokenCreated, TargetError>> {
        Box::pin(async move {
            let role = Role::parse(&request.role).ok_or_else(|| TargetError::Rejected {
                code: ErrorCode::InvalidField,
                message: format!("role is admin or user, not `{}`", request.role),
            })?;
            self.service
                .issue_token(
                    &self.caller,
                    &request.user,
                    role,
                    request.expires_in.as_deref(),
                )
                .await
                .map_err(rejected)
        })
    }

    fn revoke_token<'a>(
        &'a self,
        token_or_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<TokenInfo>, TargetError>> {
        Box::pin(async move {
            self.service
                .revoke_token(&self.caller, token_or_id)
                .await
                .map_err(rejected)
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.service.store().close().await })
    }

    fn close_and_discard(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.service.store().close_and_discard_if_new().await })
    }
}

/// An object as every path shows it: its fields, `kind` and the envelope.
fn shown(
    object: &crate::service::Stored<crate::service::Object>,
) -> Result<Map<String, Value>, TargetError> {
    match serde_json::to_value(object) {
        Ok(Value::Object(fields)) => Ok(fields),
        _ => Err(TargetError::Unreadable(
            "an object that cannot be shown as JSON".to_owned(),
        )),
    }
}

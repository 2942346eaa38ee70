//! Chat: posting and reading messages, clearing rooms and removing messages.
//!
//! The rules: reading and posting need the Member role (an open room's members are everyone in
//! its category's scope); only presenters post in an auditorium; nobody posts in a disabled
//! room; a category without chat history keeps messages for compliance only; only
//! administrators clear rooms or remove messages, and authors cannot remove their own.

use crate::api::ErrorCode;
use serde::Serialize;

use serde_json::json;

use super::WriteAccess;
use super::access::{Remembered, RoomAccess, Source, rights_in_room, room_access};
use super::compliance::{capture, capturing as compliance_capturing, record, refuse_if_held};
use super::hub::{self, LogBatch};
use super::{
    Caller, PostingCaller, Result, Service, ServiceError, caller_principal, require_admin,
};
use crate::clock;
use crate::domain::access::{self, PostRefusal};
use crate::domain::audit::AuditAction;
use crate::domain::compliance::HeldAct;
use crate::domain::{ComplianceEventType, Kind, MessageTextRefusal, Room};
use crate::store::{
    MessageQuery, MessageRow, NewComplianceEvent, NewMessage, RoomChangeRow, RowLock,
};

use crate::domain::MAX_MESSAGE_LEN;
/// Largest page of history.
pub const MAX_PAGE: i64 = 500;
/// The replacement text of `Remove-CsPersistentChatMessage` when none is given.
pub const DEFAULT_REPLACEMENT: &str =
    "This message was replaced by the Persistent Chat administrator.";

/// A message as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i64,
    pub room: String,
    pub author: String,
    pub body: String,
    pub posted_at: String,
    /// The text was replaced by an administrator.
    pub replaced: bool,
}

impl Message {
    pub(crate) fn from_row(row: MessageRow, room: &str) -> Message {
        Message {
            id: row.id,
            room: room.to_owned(),
            author: row.author,
            body: row.body,
            posted_at: row.posted_at,
            replaced: row.replaced,
        }
    }
}

/// A change of a room, as live events show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomChange {
    pub room: String,
    pub change: crate::domain::RoomChangeKind,
    pub version: i64,
    pub at: String,
}

impl RoomChange {
    fn from_row(row: RoomChangeRow) -> RoomChange {
        RoomChange {
            room: row.room_name,
            change: row.change,
            version: row.version,
            at: row.changed_at,
        }
    }
}

/// Posts stored in one transaction at most: enough that 50 clients posting at once commit
/// together, few enough that one group's commit stays short.
const POST_GROUP: usize = 256;

/// A post waiting for the node's poster, with where its answer goes.
pub(crate) struct PendingPost {
    caller: Caller,
    /// The generation the caller's token was read at, when it was not read for this post:
    /// the poster confirms it (see [`PostingCaller`]).
    remembered_at: Option<i64>,
    room: String,
    body: String,
    idempotency_key: Option<String>,
    reply: tokio::sync::oneshot::Sender<Result<(Message, bool)>>,
}

impl PendingPost {
    /// The hash of the caller's token if the poster must read it again: remembered at
    /// another generation than `generation`, the one the group's transaction sees (`None`
    /// when it did not read it).
    fn token_to_confirm(&self, generation: Option<i64>) -> Option<&str> {
        self.remembered_at
            .filter(|read_at| Some(*read_at) != generation)
            // A remembered caller always has its token's hash; without one, an empty hash
            // reads no token and the post is refused.
            .map(|_| self.caller.token_hash.as_deref().unwrap_or_default())
    }
}

/// The node's posts, queued for its one poster (see [`Service::post_message`]).
pub(crate) struct PostQueue {
    sender: tokio::sync::mpsc::Sender<PendingPost>,
    receiver: tokio::sync::Mutex<Option<tokio::sync::mpsc::Receiver<PendingPost>>>,
    started: std::sync::Once,
}

impl Default for PostQueue {
    fn default() -> PostQueue {
        let (sender, receiver) = tokio::sync::mpsc::channel(4 * POST_GROUP);
        PostQueue {
            sender,
            receiver: tokio::sync::Mutex::new(Some(receiver)),
            started: std::sync::Once::new(),
        }
    }
}

impl std::fmt::Debug for PostQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostQueue")
    }
}

/// The rooms live streams judge, shared by the node's streams per configuration generation;
/// each room is loaded once however many streams ask at the same moment. It only moves
/// forward: a stream still judging at an older generation uses what was loaded since (as a
/// stream's own read would have read the current state).
#[derive(Default)]
pub(crate) struct StreamRooms {
    inner: std::sync::Mutex<StreamRoomsInner>,
    /// Posts judged on inputs shared here rather than on groups read again
    /// ([`StreamRooms::loaded`]).
    posts_judged: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct StreamRoomsInner {
    generation: i64,
    by_id: std::collections::HashMap<i64, std::sync::Arc<tokio::sync::OnceCell<SharedInputs>>>,
}

impl std::fmt::Debug for StreamRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamRooms")
    }
}

/// A room's inputs as the node's streams share them; `None` when it is no room.
pub(super) type SharedInputs = Option<std::sync::Arc<super::access::RoomInputs>>;

impl StreamRooms {
    /// The cell that holds (or will hold) the room's inputs at `generation` or later, and the
    /// generation it was made for.
    fn cell(
        &self,
        room_id: i64,
        generation: i64,
    ) -> (std::sync::Arc<tokio::sync::OnceCell<SharedInputs>>, i64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if generation > inner.generation {
            inner.by_id.clear();
            inner.generation = generation;
        }
        (
            inner.by_id.entry(room_id).or_default().clone(),
            inner.generation,
        )
    }

    /// The room's inputs, if the node's streams (or its hub) already loaded them at
    /// `generation` or later; never loads, and never moves the node's generation.
    pub(super) fn loaded(
        &self,
        room_id: i64,
        generation: i64,
    ) -> Option<std::sync::Arc<super::access::RoomInputs>> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if generation > inner.generation {
            return None;
        }
        inner.by_id.get(&room_id)?.get()?.clone()
    }
}

/// Why one post of a group did not go in.
enum PostFailure {
    /// A rule refused it before it wrote anything: the others go on.
    Refused(ServiceError),
    /// A write failed: the transaction may hold part of it, so the whole group fails.
    WriteFailed(ServiceError),
}
use PostFailure::{Refused, WriteFailed};

/// The error of one store call made for several requests, for each of them (`what` says what
/// failed): busy stays busy (the client may retry), anything else is internal.
pub(super) fn shared_failure(error: &ServiceError, what: &str) -> ServiceError {
    match error {
        ServiceError::Store(crate::store::StoreError::Busy(_)) => ServiceError::Conflict {
            code: ErrorCode::Busy,
            message: "the database is busy; try again".to_owned(),
        },
        other => ServiceError::internal(format!("{what}: {other}")),
    }
}

/// A page of history, oldest first, with the cursors of the pages around it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub items: Vec<Message>,
    /// Pass as `before` for the older page; absent when this page starts the history.
    pub before: Option<i64>,
    /// Pass as `after` for the newer page; absent when this page ends it.
    pub after: Option<i64>,
}

/// Which page to read.
#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
    /// Words that must all appear in a message (case-insensitive).
    pub query: Option<String>,
}

/// How `Remove-CsPersistentChatMessage` matched keywords.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Match {
    /// Every word appears.
    #[default]
    All,
    /// Any word appears.
    Any,
    /// The words appear together, in order.
    Exact,
}

/// See [`Service::room_view`].
#[derive(Clone, Debug)]
pub struct RoomView {
    pub room: crate::domain::Room,
    pub chat_history: bool,
    pub rights: access::RoomRights,
    pub posting: Result<(), PostRefusal>,
}

/// Whether a history change is made or only counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Apply,
    /// The same checks and the same selection, counted without writing: the count a preview
    /// shows is the one the change makes.
    Preview,
}

/// What `remove_messages` removes, and how.
#[derive(Clone, Debug, Default)]
pub struct RemoveFilter {
    pub author: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub words: Option<String>,
    pub matching: Match,
    pub case_sensitive: bool,
    /// Leave this text in place of each match; `None` deletes them.
    pub replacement: Option<String>,
}

impl Match {
    /// `all`, `or` (also `any`) or `exact`, in any case, as the cmdlet's `-MatchClause`.
    pub fn parse(text: &str) -> Option<Match> {
        match text.to_ascii_lowercase().as_str() {
            "all" => Some(Match::All),
            "or" | "any" => Some(Match::Any),
            "exact" => Some(Match::Exact),
            _ => None,
        }
    }
}

impl TryFrom<crate::api::wire::RemoveRequest> for RemoveFilter {
    type Error = ServiceError;

    /// The request as it crosses HTTP (and as the CLI builds it) to the service's filter.
    fn try_from(request: crate::api::wire::RemoveRequest) -> Result<RemoveFilter, ServiceError> {
        let matching = match request.matching.as_deref() {
            None => Match::All,
            Some(text) => Match::parse(text).ok_or_else(|| {
                ServiceError::invalid(
                    "match",
                    crate::api::ErrorCode::InvalidField,
                    format!("match takes all, or or exact, not `{text}`"),
                )
            })?,
        };
        Ok(RemoveFilter {
            author: request.user,
            start: request.start_date,
            end: request.end_date,
            words: request.filter,
            matching,
            case_sensitive: request.case_sensitive,
            replacement: request.replace,
        })
    }
}

/// The write transaction of a group of posts, with what its posts read so far.
struct GroupTx<'t> {
    tx: &'t mut crate::store::Tx,
    remembered: Remembered,
    /// Whether compliance captures posts, read once per group.
    capturing: Option<bool>,
    /// The rows stored, each with its room's name, when the hub is to be handed them.
    stored: Option<Vec<(MessageRow, String)>>,
}

impl GroupTx<'_> {
    /// Locks what the group's posts are judged on, in the one order of invariant 2 (their
    /// rooms by name, then those rooms' categories by name), and remembers it, so that
    /// judging takes no lock of its own: a poster never holds a room while it waits for a
    /// category that a writer holds while it waits for that room.
    ///
    /// Where the node's streams already share a room's inputs at the generation read with
    /// the rooms or later (`shared`), judging takes their directory rather than reading and
    /// decoding the room's groups again: a room of two 8,000-member groups cost each of its
    /// posts about 10 ms.
    async fn lock_rooms_and_categories(
        &mut self,
        group: &[PendingPost],
        shared: &StreamRooms,
    ) -> Result<()> {
        let mut rooms: Vec<String> = group.iter().map(|post| post.room.clone()).collect();
        rooms.sort_unstable();
        rooms.dedup();
        let (rows, generation) = self
            .tx
            .lock_in_order_with_generation(Kind::Room, &rooms, RowLock::Shared)
            .await?;
        if let Some(generation) = generation {
            for row in &rows {
                if let Some(inputs) = shared.loaded(row.id, generation) {
                    self.remembered.share(row.id, inputs);
                }
            }
        }
        // A room that does not decode is refused when its posts are judged, and only them.
        let mut categories: Vec<String> = rows
            .iter()
            .filter_map(|row| super::decode::<Room>(row).ok())
            .map(|room| room.category)
            .collect();
        categories.sort_unstable();
        categories.dedup();
        self.remembered.remember(Kind::Room, &rooms, rows);
        let rows = self
            .tx
            .lock_in_order(Kind::Category, &categories, RowLock::Shared)
            .await?;
        self.remembered.remember(Kind::Category, &categories, rows);
        Ok(())
    }

    /// The room the post goes to, if the rules let the caller post in it; nothing written.
    async fn judge(&mut self, post: &PendingPost) -> Result<RoomAccess> {
        let (caller, room_name) = (&post.caller, post.room.as_str());
        caller_principal(caller)?;
        let access = room_access(
            &mut Source::Remembering(self.tx, &mut self.remembered),
            caller,
            room_name,
        )
        .await?;
        if let Err(refusal) = access::may_post(access.rights, &access.room) {
            let message = match refusal {
                PostRefusal::Disabled => {
                    format!("room `{room_name}` is disabled: nobody posts in it")
                }
                PostRefusal::NotMember => format!("only members post in room `{room_name}`"),
                PostRefusal::NotPresenter => {
                    format!("room `{room_name}` is an auditorium: only its presenters post")
                }
            };
            return Err(ServiceError::Forbidden { message });
        }
        Ok(access)
    }

    async fn capturing(&mut self) -> Result<bool> {
        if let Some(on) = self.capturing {
            return Ok(on);
        }
        let on = compliance_capturing(self.tx).await?;
        self.capturing = Some(on);
        Ok(on)
    }

    /// Stores the accepted posts waiting (one multi-row insert, and one for their compliance
    /// capture) and fills in their outcomes; none wait afterwards.
    async fn store(
        &mut self,
        group: &[PendingPost],
        accepted: &mut Vec<(usize, RoomAccess)>,
        outcomes: &mut [Option<Result<(Message, bool)>>],
    ) -> Result<()> {
        if accepted.is_empty() {
            return Ok(());
        }
        let posted_at = clock::now();
        let authors: Vec<String> = accepted
            .iter()
            .map(|(index, _)| author_of(&group[*index].caller))
            .collect::<Result<_>>()?;
        let new: Vec<NewMessage<'_>> = accepted
            .iter()
            .zip(&authors)
            .map(|((index, access), author)| NewMessage {
                room_id: access.id,
                author,
                body: &group[*index].body,
                posted_at: &posted_at,
                in_history: access.category.chat_history,
            })
            .collect();
        let rows = self.tx.insert_messages(&new).await?;
        if self.capturing().await? {
            let events: Vec<NewComplianceEvent<'_>> = rows
                .iter()
                .zip(accepted.iter())
                .map(|(row, (_, access))| chat_event(access, row))
                .collect();
            self.tx
                .insert_compliance_events(&events, &clock::now())
                .await?;
        }
        for (row, (index, access)) in rows.into_iter().zip(accepted.drain(..)) {
            if let Some(stored) = &mut self.stored {
                stored.push((row.clone(), access.room.name.clone()));
            }
            outcomes[index] = Some(Ok((Message::from_row(row, &access.room.name), true)));
        }
        Ok(())
    }

    /// Stores a post with an idempotency key, unless the key finds the message it stored
    /// before.
    async fn store_keyed(
        &mut self,
        post: &PendingPost,
        access: RoomAccess,
    ) -> std::result::Result<(Message, bool), PostFailure> {
        let written = |error: crate::store::StoreError| WriteFailed(ServiceError::from(error));
        let author = author_of(&post.caller).map_err(Refused)?;
        let (row, fresh) = self
            .tx
            .insert_message(
                access.id,
                &author,
                &post.body,
                &clock::now(),
                access.category.chat_history,
                post.idempotency_key.as_deref(),
            )
            .await
            .map_err(written)?;
        if !fresh && (row.room_id != access.id || row.body != post.body) {
            // Nothing was written: the key found the message stored the first time.
            return Err(Refused(ServiceError::Conflict {
                code: ErrorCode::IdempotencyKeyReused,
                message: "this Idempotency-Key was used for another message".to_owned(),
            }));
        }
        if fresh && self.capturing().await.map_err(WriteFailed)? {
            self.tx
                .insert_compliance_event(&chat_event(&access, &row), &clock::now())
                .await
                .map_err(written)?;
        }
        if let (true, Some(stored)) = (fresh, &mut self.stored) {
            stored.push((row.clone(), access.room.name.clone()));
        }
        Ok((Message::from_row(row, &access.room.name), fresh))
    }
}

/// The error of a message text (in `field`) that `refusal` refuses.
fn text_refused(field: &str, refusal: MessageTextRefusal) -> ServiceError {
    match refusal {
        MessageTextRefusal::Blank => {
            ServiceError::invalid(field, ErrorCode::InvalidField, "a message cannot be empty")
        }
        MessageTextRefusal::Nul => ServiceError::invalid(
            field,
            ErrorCode::InvalidField,
            "a message cannot hold the character U+0000 (NUL)",
        ),
        MessageTextRefusal::TooLong(_) => ServiceError::invalid(
            field,
            ErrorCode::MessageTooLong,
            format!("a message holds at most {MAX_MESSAGE_LEN} characters"),
        ),
    }
}

/// Whether the database failed (the transaction may be aborted), rather than a rule refusing
/// or a stored object being unreadable (which concerns only the posts to it).
fn is_database_failure(error: &ServiceError) -> bool {
    matches!(error, ServiceError::Store(store) if !matches!(store, crate::store::StoreError::Corrupt { .. }))
}

/// The principal a caller posts as.
fn author_of(caller: &Caller) -> Result<String> {
    Ok(caller_principal(caller)?.to_string())
}

/// The compliance event of a stored chat message.
fn chat_event<'r>(access: &'r RoomAccess, row: &'r MessageRow) -> NewComplianceEvent<'r> {
    NewComplianceEvent {
        event_type: ComplianceEventType::Chat,
        room_id: access.id,
        room_name: &access.room.name,
        sender: &row.author,
        content: &row.body,
        message_id: Some(row.id),
    }
}

impl Service {
    /// Posts a message as the caller.
    ///
    /// # Errors
    /// A room the caller may not see (not found), not a member, not a presenter in an
    /// auditorium, a disabled room, an empty or over-long text.
    pub async fn post_message(
        &self,
        caller: &Caller,
        room_name: &str,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> Result<(Message, bool)> {
        let caller = PostingCaller::from(caller.clone());
        self.post_message_as(&caller, room_name, body, idempotency_key)
            .await
    }

    /// [`Service::post_message`] by a caller whose token may be remembered rather than read
    /// for this request: the poster confirms it in the transaction that stores the post.
    ///
    /// # Errors
    /// Those of [`Service::post_message`], and a remembered token since revoked or expired
    /// (unauthenticated).
    pub async fn post_message_as(
        &self,
        posting: &PostingCaller,
        room_name: &str,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> Result<(Message, bool)> {
        let caller = &posting.caller;
        if let Err(refusal) = crate::domain::check_message_text(body) {
            return Err(text_refused("body", refusal));
        }
        // No room is named with a NUL, and PostgreSQL refuses one in the group's lock of its
        // rooms, which would fail every post of the group: not found here, alone.
        if room_name.contains('\0') {
            return Err(ServiceError::not_found(Kind::Room, room_name));
        }
        if idempotency_key.is_some_and(|key| key.is_empty() || key.len() > 256) {
            return Err(ServiceError::invalid(
                "Idempotency-Key",
                ErrorCode::InvalidHeader,
                "an Idempotency-Key has 1 to 256 characters",
            ));
        }
        caller_principal(caller)?;
        // The node's poster stores it with the posts that arrived with it, in one commit.
        let (reply, answer) = tokio::sync::oneshot::channel();
        let post = PendingPost {
            caller: caller.clone(),
            remembered_at: posting.remembered_at,
            room: room_name.to_owned(),
            body: body.to_owned(),
            idempotency_key: idempotency_key.map(str::to_owned),
            reply,
        };
        if self.posts.sender.send(post).await.is_err() {
            return Err(ServiceError::internal("the node's poster stopped"));
        }
        self.posts.started.call_once(|| {
            let service = self.clone();
            let queue = self.posts.clone();
            tokio::spawn(async move { service.run_poster(&queue).await });
        });
        answer
            .await
            .unwrap_or_else(|_| Err(ServiceError::internal("the node's poster stopped")))
    }

    /// Stores the posts that wait, as many as [`POST_GROUP`] at once, in one transaction: a post
    /// that breaks a rule is refused before it writes anything, a failed write fails the
    /// whole group (nothing of it is stored), and none is answered before the commit that
    /// stores them all (a failed commit fails every one of them).
    async fn run_poster(&self, queue: &PostQueue) {
        let Some(mut waiting) = queue.receiver.lock().await.take() else {
            return;
        };
        let mut group: Vec<PendingPost> = Vec::with_capacity(POST_GROUP);
        while waiting.recv_many(&mut group, POST_GROUP).await > 0 {
            let (outcomes, handed) = self.post_group(&group).await;
            let mut newest = None;
            for (post, outcome) in group.drain(..).zip(outcomes) {
                if let Ok((message, true)) = &outcome {
                    self.posted_total
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    newest = newest.max(Some(message.id));
                }
                let _ = post.reply.send(outcome);
            }
            match newest {
                Some(id) if handed => self.notify_handed(id),
                Some(id) => self.notify_message(id),
                None => {}
            }
        }
    }

    /// Stores a group of posts (see [`Service::run_poster`]) and returns their outcomes, and
    /// whether everything it stored was handed to the node's hub (which then need not read
    /// it back from the database).
    async fn post_group(&self, group: &[PendingPost]) -> (Vec<Result<(Message, bool)>>, bool) {
        let failed_all = |error: &ServiceError| -> (Vec<Result<(Message, bool)>>, bool) {
            let outcomes = group
                .iter()
                .map(|_| Err(shared_failure(error, "the post was not stored")))
                .collect();
            (outcomes, false)
        };
        let mut tx = match self.store().begin(WriteAccess::new()).await {
            Ok(tx) => tx,
            Err(error) => return failed_all(&ServiceError::from(error)),
        };
        // Where the logs stand, for the hub (SQLite only: see `Tx::log_position`). Without it
        // the hub reads the group back from the database, as it always may.
        let position = if self.hub.has_started() {
            tx.log_position().await.unwrap_or_else(|error| {
                tracing::debug!(%error, "the hub reads this group back");
                None
            })
        } else {
            None
        };
        // Tokens remembered rather than read for their posts are confirmed before anything
        // of the group is judged: a post by one revoked since learns nothing of its room.
        let mut unconfirmed = match self
            .confirm_remembered_tokens(&mut tx, group, position.map(|at| at.generation))
            .await
        {
            Ok(unconfirmed) => unconfirmed,
            Err(error) => return failed_all(&ServiceError::from(error)),
        };
        let mut group_tx = GroupTx {
            tx: &mut tx,
            remembered: Remembered::default(),
            capturing: None,
            stored: position.map(|_| Vec::with_capacity(group.len())),
        };
        // Every post is judged before anything is written, on rows locked before any of them
        // is judged: the row locks are all held before the first insert takes the turn for ids
        // (PostgreSQL), so a group never waits for a row while it holds the turn that other
        // writers wait for.
        if let Err(error) = group_tx
            .lock_rooms_and_categories(group, &self.stream_rooms)
            .await
        {
            return failed_all(&error);
        }
        let mut outcomes: Vec<Option<Result<(Message, bool)>>> = Vec::with_capacity(group.len());
        let mut judged: Vec<Option<RoomAccess>> = Vec::with_capacity(group.len());
        for (post, unconfirmed) in group.iter().zip(&mut unconfirmed) {
            if let Some(refusal) = unconfirmed.take() {
                judged.push(None);
                outcomes.push(Some(Err(refusal)));
                continue;
            }
            match group_tx.judge(post).await {
                Ok(access) => {
                    judged.push(Some(access));
                    outcomes.push(None);
                }
                // The database failed, not a rule: on PostgreSQL the transaction is aborted
                // and nothing more of it would go in.
                Err(error) if is_database_failure(&error) => return failed_all(&error),
                Err(refusal) => {
                    judged.push(None);
                    outcomes.push(Some(Err(refusal)));
                }
            }
        }
        self.stream_rooms.posts_judged.fetch_add(
            group_tx.remembered.judged_on_shared,
            std::sync::atomic::Ordering::Relaxed,
        );
        // The accepted posts waiting for one multi-row insert, by their place in the group.
        let mut accepted: Vec<(usize, RoomAccess)> = Vec::with_capacity(group.len());
        for (index, (post, access)) in group.iter().zip(judged).enumerate() {
            let Some(access) = access else {
                continue;
            };
            if post.idempotency_key.is_none() {
                accepted.push((index, access));
                continue;
            }
            // A key looks for an earlier post with it, this group's included: those waiting
            // go in first.
            let written = match group_tx.store(group, &mut accepted, &mut outcomes).await {
                Ok(()) => group_tx.store_keyed(post, access).await,
                Err(error) => Err(WriteFailed(error)),
            };
            match written {
                Ok(outcome) => outcomes[index] = Some(Ok(outcome)),
                Err(Refused(refusal)) => outcomes[index] = Some(Err(refusal)),
                // The transaction may hold part of this post: none of the group is kept.
                Err(WriteFailed(error)) => return failed_all(&error),
            }
        }
        if let Err(error) = group_tx.store(group, &mut accepted, &mut outcomes).await {
            return failed_all(&error);
        }
        let stored = group_tx.stored.take();
        // A group that moved the generation itself would commit at another than the one read.
        let committed = position.zip(stored).filter(|_| !tx.changes_access()).map(
            |(position, mut messages)| {
                messages.sort_by_key(|(row, _)| row.id);
                hub::Committed { position, messages }
            },
        );
        if let Err(error) = tx.commit().await {
            return failed_all(&ServiceError::from(error));
        }
        let handed = committed.is_some_and(|committed| self.hand_to_hub(committed));
        let outcomes = outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| Err(ServiceError::internal("a post was not stored")))
            })
            .collect();
        (outcomes, handed)
    }

    /// Confirms, in the group's transaction, the tokens of its posts whose callers were
    /// remembered rather than read ([`PostingCaller`]). One read at the generation this
    /// transaction sees (`generation`, when it read it) is as it was, since every write of a
    /// token moves the generation; the others are read again, in one statement. Returns, by
    /// post, the refusal of each whose token no longer works.
    async fn confirm_remembered_tokens(
        &self,
        tx: &mut crate::store::Tx,
        group: &[PendingPost],
        generation: Option<i64>,
    ) -> std::result::Result<Vec<Option<ServiceError>>, crate::store::StoreError> {
        let mut refusals: Vec<Option<ServiceError>> = group.iter().map(|_| None).collect();
        let mut hashes: Vec<&str> = group
            .iter()
            .filter_map(|post| post.token_to_confirm(generation))
            .collect();
        if hashes.is_empty() {
            return Ok(refusals);
        }
        hashes.sort_unstable();
        hashes.dedup();
        let found = tx.tokens_by_hash(&hashes).await?;
        let now = crate::clock::now();
        for (post, refusal) in group.iter().zip(&mut refusals) {
            let Some(hash) = post.token_to_confirm(generation) else {
                continue;
            };
            // A token's user and role are never rewritten: one that is still there, and
            // current, is the one the caller was made from.
            let current = found
                .iter()
                .find(|(row, _)| row.hash == hash)
                .filter(|(row, _)| {
                    crate::domain::tokens::is_current(row.expires_at.as_deref(), &now)
                });
            if let Some((_, read_at)) = current {
                self.remembered_tokens.confirmed(hash, *read_at);
            } else {
                self.remembered_tokens.forget(hash);
                *refusal = Some(ServiceError::Unauthenticated {
                    message: super::tokens::TOKEN_NOT_VALID.to_owned(),
                });
            }
        }
        Ok(refusals)
    }

    /// Reads a page of a room's history; members (and administrators) only.
    pub async fn messages(
        &self,
        caller: &Caller,
        room_name: &str,
        request: PageRequest,
    ) -> Result<Page> {
        let access = room_access(&mut Source::Pool(self.store()), caller, room_name).await?;
        if !access.rights.reads {
            return Err(ServiceError::Forbidden {
                message: format!("only members read room `{room_name}`"),
            });
        }
        let limit = request.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                ErrorCode::InvalidField,
                format!("limit is 1 to {MAX_PAGE}"),
            ));
        }
        // SQL narrows by each word as a substring (a necessary condition), ASCII words only:
        // SQLite's lower() folds nothing else. The words are then matched whole below.
        let words: Vec<String> =
            crate::domain::words::words(request.query.as_deref().unwrap_or_default(), false)
                .into_iter()
                .filter(|word| word.is_ascii())
                .take(16)
                .collect();
        // One more than asked tells whether the history goes on past this page.
        let query = MessageQuery {
            before: request.before,
            after: request.after,
            limit: limit + 1,
            words: &words,
            include_hidden: false,
        };
        let mut rows = self.store().messages(access.id, &query).await?;
        self.record_backchat(caller, &access, &request, rows.len())
            .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        if more {
            if request.after.is_some() && request.before.is_none() {
                rows.pop();
            } else {
                rows.remove(0);
            }
        }
        let ascending = request.after.is_some() && request.before.is_none();
        let first = rows.first().map(|row| row.id);
        let last = rows.last().map(|row| row.id);
        let before = if ascending || more { first } else { None };
        // The newest page has nothing after it, nor has a forward page that reached the end.
        let at_newest = (!ascending && request.before.is_none()) || (ascending && !more);
        let after = if at_newest { None } else { last };
        // SQL narrowed the page by substrings; the words must match whole (`q3` is not "Q30").
        // The cursors above come from every row read, so the next page skips nothing.
        let query_text = request.query.as_deref().unwrap_or_default();
        let items = rows
            .into_iter()
            .filter(|row| {
                crate::domain::words::matches(
                    &row.body,
                    query_text,
                    crate::domain::words::Combine::All,
                    false,
                )
            })
            .map(|row| Message::from_row(row, &access.room.name))
            .collect();
        Ok(Page {
            items,
            before,
            after,
        })
    }

    /// Records that `caller` read a page of history (BACKCHAT), when compliance is on. The
    /// content says which page: the cursor, the limit and the search words.
    async fn record_backchat(
        &self,
        caller: &Caller,
        access: &super::access::RoomAccess,
        request: &PageRequest,
        returned: usize,
    ) -> Result<()> {
        // Most servers read far more than they write: look before opening a write transaction.
        let enabled = self
            .compliance(&Caller::system("perch:compliance".to_owned()))
            .await?
            .spec
            .enabled;
        if !enabled {
            return Ok(());
        }
        let mut content = vec![format!("limit={}", request.limit.unwrap_or(50))];
        if let Some(before) = request.before {
            content.push(format!("before={before}"));
        }
        if let Some(after) = request.after {
            content.push(format!("after={after}"));
        }
        if let Some(query) = request.query.as_deref().filter(|q| !q.trim().is_empty()) {
            content.push(format!("q={query}"));
        }
        content.push(format!("returned={returned}"));
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        capture(
            &mut tx,
            NewComplianceEvent {
                event_type: ComplianceEventType::Backchat,
                room_id: access.id,
                room_name: &access.room.name,
                sender: &caller.name,
                content: &content.join(" "),
                message_id: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that `caller` opened (JOIN) or closed (PART) a room's live stream, when
    /// compliance is on.
    pub async fn record_presence(
        &self,
        caller: &Caller,
        room_id: i64,
        room_name: &str,
        event_type: ComplianceEventType,
    ) -> Result<()> {
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        capture(
            &mut tx,
            NewComplianceEvent {
                event_type,
                room_id,
                room_name,
                sender: &caller.name,
                content: "",
                message_id: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The id and name of a room the caller may read, for a room's live stream.
    ///
    /// # Errors
    /// Not found for a room the caller may not see; forbidden for one it may not read.
    pub async fn readable_room_id(
        &self,
        caller: &Caller,
        room_name: &str,
    ) -> Result<(i64, String)> {
        let access = room_access(&mut Source::Pool(self.store()), caller, room_name).await?;
        if !access.rights.reads {
            return Err(ServiceError::Forbidden {
                message: format!("only members read room `{room_name}`"),
            });
        }
        Ok((access.id, access.room.name))
    }

    /// A room as the caller finds it: the room, its category's chat history switch, the
    /// caller's rights and whether (or why not) the caller may post. The chat client shows
    /// the composer, or the reason, from this.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when the room does not exist or the caller may not see it.
    pub async fn room_view(&self, caller: &Caller, room_name: &str) -> Result<RoomView> {
        let access = room_access(&mut Source::Pool(self.store()), caller, room_name).await?;
        let posting = access::may_post(access.rights, &access.room);
        Ok(RoomView {
            chat_history: access.category.chat_history,
            rights: access.rights,
            posting,
            room: access.room,
        })
    }

    /// Deletes everything in a room posted on or before `end` (`Clear-CsPersistentChatRoom`);
    /// administrators only. Returns how many messages went. Compliance keeps what it captured;
    /// a legal hold on the room or its category refuses the clearing.
    pub async fn clear_room(&self, caller: &Caller, room_name: &str, end: &str) -> Result<u64> {
        self.clear_room_or_preview(caller, room_name, end, Effect::Apply)
            .await
    }

    /// How many messages [`Service::clear_room`] would remove now, changing nothing: the same
    /// checks (rights, holds) and the same condition, counted.
    pub async fn preview_clear_room(
        &self,
        caller: &Caller,
        room_name: &str,
        end: &str,
    ) -> Result<u64> {
        self.clear_room_or_preview(caller, room_name, end, Effect::Preview)
            .await
    }

    async fn clear_room_or_preview(
        &self,
        caller: &Caller,
        room_name: &str,
        end: &str,
        effect: Effect,
    ) -> Result<u64> {
        require_admin(caller, "clear rooms")?;
        let end = parse_instant("endDate", end, true)?;
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let access = room_access(&mut Source::Tx(&mut tx), caller, room_name).await?;
        refuse_if_held(
            &mut tx,
            HeldAct::Clear,
            &access.room.name,
            &access.room.category,
        )
        .await?;
        if effect == Effect::Preview {
            // The same checks and the same condition as the clearing, without its writes.
            let count = tx.count_messages_through(access.id, &end).await?;
            tx.rollback().await?;
            return Ok(count);
        }
        let count = tx.clear_messages(access.id, &end).await?;
        record(
            &mut tx,
            caller,
            AuditAction::Clear,
            Kind::Room.as_str(),
            &access.room.name,
            json!({"endDate": end, "count": count}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(room = room_name, count, by = %caller.name, "cleared");
        Ok(count)
    }

    /// Removes or replaces the messages that match (`Remove-CsPersistentChatMessage`);
    /// administrators only. Returns how many messages it touched.
    pub async fn remove_messages(
        &self,
        caller: &Caller,
        room_name: &str,
        filter: RemoveFilter,
    ) -> Result<u64> {
        self.remove_messages_or_preview(caller, room_name, filter, Effect::Apply)
            .await
    }

    /// How many messages [`Service::remove_messages`] would touch now, changing nothing: the
    /// same checks and the same selection, counted.
    pub async fn preview_remove_messages(
        &self,
        caller: &Caller,
        room_name: &str,
        filter: RemoveFilter,
    ) -> Result<u64> {
        self.remove_messages_or_preview(caller, room_name, filter, Effect::Preview)
            .await
    }

    async fn remove_messages_or_preview(
        &self,
        caller: &Caller,
        room_name: &str,
        filter: RemoveFilter,
        effect: Effect,
    ) -> Result<u64> {
        require_admin(caller, "remove messages")?;
        let start = filter
            .start
            .as_deref()
            .map(|text| parse_instant("startDate", text, false))
            .transpose()?;
        let end = filter
            .end
            .as_deref()
            .map(|text| parse_instant("endDate", text, true))
            .transpose()?;
        let author = filter
            .author
            .as_deref()
            .map(|text| {
                crate::domain::Principal::parse(text)
                    .map(|principal| principal.to_string())
                    .map_err(|error| {
                        ServiceError::invalid(
                            "user",
                            ErrorCode::InvalidPrincipal,
                            error.to_string(),
                        )
                    })
            })
            .transpose()?;
        if let Some(text) = &filter.replacement {
            match crate::domain::check_message_text(text) {
                Ok(()) | Err(MessageTextRefusal::Blank) => {}
                Err(refusal) => return Err(text_refused("replace", refusal)),
            }
        }
        let mut tx = self.store().begin(WriteAccess::new()).await?;
        let access = room_access(&mut Source::Tx(&mut tx), caller, room_name).await?;
        refuse_if_held(
            &mut tx,
            HeldAct::RemoveMessages,
            &access.room.name,
            &access.room.category,
        )
        .await?;
        let candidates = tx
            .room_messages(
                access.id,
                author.as_deref(),
                start.as_deref(),
                end.as_deref(),
            )
            .await?;
        let mut count = 0;
        for message in candidates {
            if !matches(&message.body, &filter) {
                continue;
            }
            count += 1;
            if effect == Effect::Preview {
                continue;
            }
            match &filter.replacement {
                Some(text) => tx.replace_message(message.id, text).await?,
                None => tx.delete_message(message.id).await?,
            }
        }
        if effect == Effect::Preview {
            tx.rollback().await?;
            return Ok(count);
        }
        let action = if filter.replacement.is_some() {
            AuditAction::ReplaceMessages
        } else {
            AuditAction::RemoveMessages
        };
        record(
            &mut tx,
            caller,
            action,
            Kind::Room.as_str(),
            &access.room.name,
            json!({
                "user": author, "startDate": start, "endDate": end, "filter": filter.words,
                "match": format!("{:?}", filter.matching).to_lowercase(),
                "caseSensitive": filter.case_sensitive, "replace": filter.replacement,
                "count": count,
            }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(room = room_name, count, by = %caller.name, "removed messages");
        Ok(count)
    }
}

/// What a live stream may deliver: room access judged against the current state.
///
/// Access is cached per room only while the configuration generation (a counter every
/// configuration or token change bumps, on every node) stays the same, so a member removed
/// from a room stops receiving its messages at once and a member added starts at once.
pub struct EventFilter {
    caller: Caller,
    scope: StreamScope,
    generation: Option<i64>,
    readable: std::collections::HashMap<i64, Option<String>>,
    /// When the caller's token expires, as last read: a stream ends then without waiting for
    /// any change.
    token_expires_at: Option<String>,
    /// The stream's place at the node's hub, told what the filter judged at (weak: the hub
    /// forgets a stream once its [`super::LogListener`] is dropped).
    published: Option<std::sync::Weak<super::hub::Listening>>,
}

/// Which messages a live stream may deliver at all, before access: the part of its judgment
/// that depends on the stream alone, which the node's hub applies too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamScope {
    /// Messages with ids up to this one were stored before the stream opened: replaying them
    /// is reading history, which a category without chat history does not offer.
    live_after: i64,
    /// Deliver this room's messages only (a room's live stream).
    only_room: Option<i64>,
    /// The stream ends once it has passed this message id.
    until: Option<i64>,
}

impl StreamScope {
    /// Whether the stream may deliver message `id` of room `room_id` to a caller who reads
    /// that room.
    pub(crate) fn may_deliver(self, room_id: i64, in_history: bool, id: i64) -> bool {
        self.only_room.is_none_or(|only| only == room_id)
            && access::stream_delivers(in_history, id > self.live_after)
    }

    /// Whether the stream ends at a message id (its finite mode).
    pub(crate) fn is_finite(self) -> bool {
        self.until.is_some()
    }

    /// Whether a stream that has read the log through message `through` has reached its end.
    pub(crate) fn ends_by(self, through: i64) -> bool {
        self.until.is_some_and(|until| through >= until)
    }
}

impl EventFilter {
    pub(super) fn caller(&self) -> &Caller {
        &self.caller
    }

    pub(super) fn scope(&self) -> StreamScope {
        self.scope
    }

    /// What the filter judged at, as the hub is told it.
    pub(super) fn judged(&self) -> super::hub::Judged {
        super::hub::Judged {
            generation: self.generation,
            token_expires_at: self.token_expires_at.clone(),
        }
    }

    /// Tells `listening` what the filter judges at, now and after every change.
    pub(super) fn publish_to(&mut self, listening: &std::sync::Arc<super::hub::Listening>) {
        listening.publish(self.judged());
        self.published = Some(std::sync::Arc::downgrade(listening));
    }

    /// Ends the stream's delivery once it has passed message `until` (the finite mode): the
    /// hub then hands it the batch that passes it, whatever it holds.
    pub fn ends_after(&mut self, until: Option<i64>) {
        self.scope.until = until;
    }
}

/// Why a live stream must end.
#[derive(Debug, thiserror::Error)]
pub enum StreamEnd {
    #[error("the stream's token was revoked or expired")]
    Revoked,
    #[error(transparent)]
    Failed(#[from] ServiceError),
}

impl Service {
    /// Starts filtering live events for a caller; messages after `live_after` count as live.
    pub fn event_filter(&self, caller: &Caller, live_after: i64) -> EventFilter {
        EventFilter {
            caller: caller.clone(),
            scope: StreamScope {
                live_after,
                only_room: None,
                until: None,
            },
            generation: None,
            readable: std::collections::HashMap::new(),
            token_expires_at: None,
            published: None,
        }
    }

    /// [`Service::event_filter`] for one room's live stream.
    pub fn room_event_filter(&self, caller: &Caller, live_after: i64, room_id: i64) -> EventFilter {
        let mut filter = self.event_filter(caller, live_after);
        filter.scope.only_room = Some(room_id);
        filter
    }

    /// Brings the filter up to the current configuration: when anything changed since it last
    /// looked, forgets every cached decision and checks that the caller's token still stands.
    ///
    /// # Errors
    /// [`StreamEnd::Revoked`] once the caller's token is gone.
    async fn refresh(&self, filter: &mut EventFilter) -> Result<(), StreamEnd> {
        let generation = self
            .store()
            .generation()
            .await
            .map_err(ServiceError::from)?;
        self.refresh_at(filter, generation).await
    }

    /// [`Service::refresh`] to a generation already read.
    ///
    /// Every live delivery calls it: when the generation did not move it reads nothing, and
    /// the reads it makes otherwise are boxed, so that a delivery's future stays small enough
    /// to hold inline (see [`Service::events_in_batch`]).
    async fn refresh_at(&self, filter: &mut EventFilter, generation: i64) -> Result<(), StreamEnd> {
        if filter.generation != Some(generation) {
            Box::pin(self.rejudge_at(filter, generation)).await?;
        }
        // The clock is read only for a token that expires.
        if let Some(expires_at) = filter.token_expires_at.as_deref()
            && !crate::domain::tokens::is_current(Some(expires_at), &clock::now())
        {
            return Err(StreamEnd::Revoked);
        }
        Ok(())
    }

    /// Forgets the filter's decisions and checks that the caller's token stands at
    /// `generation`.
    async fn rejudge_at(&self, filter: &mut EventFilter, generation: i64) -> Result<(), StreamEnd> {
        filter.readable.clear();
        // Set only once the token is known to stand at `generation`: a failed look-up
        // leaves the check to be made again, never skipped.
        filter.generation = None;
        if let Some(hash) = &filter.caller.token_hash {
            match self.token_expiry(hash).await? {
                Some(expires_at) => filter.token_expires_at = expires_at,
                None => return Err(StreamEnd::Revoked),
            }
        }
        if let Some(hash) = &filter.caller.session_hash {
            // A session never outlives its token (see `open_session`), so its expiry is
            // the stream's.
            match self.session_expiry(hash).await? {
                Some(expires_at) => filter.token_expires_at = Some(expires_at),
                None => return Err(StreamEnd::Revoked),
            }
        }
        filter.generation = Some(generation);
        // Until then the hub hands the stream every batch, which it judges itself.
        if let Some(listening) = filter.published.as_ref().and_then(std::sync::Weak::upgrade) {
            listening.publish(filter.judged());
        }
        Ok(())
    }

    /// The messages after `after` that the caller may read, and the id to continue after.
    ///
    /// # Errors
    /// [`StreamEnd::Revoked`] once the caller's token is gone; a store failure.
    pub async fn events_after(
        &self,
        filter: &mut EventFilter,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<Message>, i64), StreamEnd> {
        let rows = self
            .store()
            .messages_after(after, limit)
            .await
            .map_err(ServiceError::from)?;
        // Judged after the read, so that no message posted after a change of access is
        // delivered under the access from before it.
        self.refresh(filter).await?;
        let mut last = after;
        let mut visible = Vec::new();
        for row in rows {
            last = row.id;
            if self
                .stream_delivers(filter, row.room_id, row.in_history, row.id)
                .await?
                && let Some(Some(room)) = filter.readable.get(&row.room_id)
            {
                let room = room.clone();
                visible.push(Message::from_row(row, &room));
            }
        }
        Ok((visible, last))
    }

    /// The messages of a batch the node's hub read that the caller may read and that come
    /// after `after`: their ids and their JSON, serialised once by the hub for every stream.
    ///
    /// # Errors
    /// [`StreamEnd::Revoked`] once the caller's token is gone; a store failure.
    pub async fn events_in_batch<'b>(
        &self,
        filter: &mut EventFilter,
        batch: &'b LogBatch,
        after: i64,
    ) -> Result<Vec<super::BatchMessage<'b>>, StreamEnd> {
        // A generation at or after these rows' commits: judged as a stream's own read is.
        self.refresh_at(filter, batch.generation).await?;
        let mut visible = Vec::new();
        for message in &batch.messages {
            let row = &message.row;
            if row.id <= after {
                continue;
            }
            let Some(deliverable) = message.deliverable() else {
                continue;
            };
            if self
                .stream_delivers(filter, row.room_id, row.in_history, row.id)
                .await?
            {
                visible.push(deliverable);
            }
        }
        Ok(visible)
    }

    /// Whether a live stream delivers message `id` of room `room_id` to its caller: the one
    /// judgment both the database path and the hub path make (the room's name is then in
    /// `filter.readable`).
    async fn stream_delivers(
        &self,
        filter: &mut EventFilter,
        room_id: i64,
        in_history: bool,
        id: i64,
    ) -> Result<bool, StreamEnd> {
        if !filter.scope.may_deliver(room_id, in_history, id) {
            return Ok(false);
        }
        if let Some(room) = filter.readable.get(&room_id) {
            return Ok(room.is_some());
        }
        // Boxed as `refresh_at`'s reads are: rare, and large.
        let room =
            Box::pin(self.stream_readable_room(&filter.caller, room_id, filter.generation)).await?;
        let delivers = room.is_some();
        filter.readable.insert(room_id, room);
        Ok(delivers)
    }

    /// The changes of rooms after `after` that the caller may see, with their ids, and the id
    /// to continue after. Removals reach administrators only, since nobody else can be told
    /// apart from those who never saw the room.
    pub async fn room_changes_after(
        &self,
        caller: &Caller,
        after: i64,
        limit: i64,
    ) -> Result<(Vec<(i64, RoomChange)>, i64)> {
        let rows = self.store().room_changes_after(after, limit).await?;
        let mut last = after;
        let mut visible = Vec::new();
        for row in rows {
            last = row.id;
            if self.room_change_shown(caller, &row).await? {
                visible.push((row.id, RoomChange::from_row(row)));
            }
        }
        Ok((visible, last))
    }

    /// The room changes of a batch the node's hub read that the caller may see and that come
    /// after `after`, with their ids.
    ///
    /// # Errors
    /// A store failure.
    pub async fn room_changes_in_batch(
        &self,
        caller: &Caller,
        batch: &LogBatch,
        after: i64,
    ) -> Result<Vec<(i64, RoomChange)>> {
        let mut visible = Vec::new();
        for row in batch.changes.iter().filter(|row| row.id > after) {
            if self.room_change_shown(caller, row).await? {
                visible.push((row.id, RoomChange::from_row(row.clone())));
            }
        }
        Ok(visible)
    }

    /// Whether a live stream shows a room change to its caller.
    async fn room_change_shown(&self, caller: &Caller, row: &RoomChangeRow) -> Result<bool> {
        if row.change == crate::domain::RoomChangeKind::Removed {
            return Ok(caller.is_admin());
        }
        match room_access(&mut Source::Pool(self.store()), caller, &row.room_name).await {
            Ok(_) => Ok(true),
            Err(ServiceError::NotFound { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Posts this node judged on the room inputs its live streams share, without reading
    /// their rooms' groups again, since it started.
    pub fn posts_judged_on_shared_inputs(&self) -> u64 {
        self.stream_rooms
            .posts_judged
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The id of the newest room change, to start a live stream from now.
    pub async fn last_room_change_id(&self) -> Result<i64> {
        Ok(self.store().last_room_change_id().await?)
    }

    /// The id of the newest message, to start a live stream from now.
    pub async fn last_message_id(&self) -> Result<i64> {
        Ok(self.store().last_message_id().await?)
    }

    /// The name of the room with this id if the caller may read it.
    /// [`Service::readable_room`] for a live stream, judged on the room's inputs as the node's
    /// streams share them for `generation` (the generation the stream judged at).
    async fn stream_readable_room(
        &self,
        caller: &Caller,
        room_id: i64,
        generation: Option<i64>,
    ) -> Result<Option<String>> {
        let Some(generation) = generation else {
            return self.readable_room(caller, room_id).await;
        };
        let (inputs, _) = self.stream_room_inputs(room_id, generation).await?;
        Ok(inputs.and_then(|inputs| {
            inputs
                .rights(caller)
                .reads
                .then(|| inputs.room.name.clone())
        }))
    }

    /// The inputs of room `room_id` at `generation` or later, as the node's streams (and its
    /// hub) share them, and the generation they were loaded for (later than `generation` once
    /// the node's streams moved on).
    pub(super) async fn stream_room_inputs(
        &self,
        room_id: i64,
        generation: i64,
    ) -> Result<(SharedInputs, i64)> {
        let (cell, loaded_for) = self.stream_rooms.cell(room_id, generation);
        let inputs = cell
            .get_or_try_init(|| async {
                Ok::<_, ServiceError>(
                    super::access::RoomInputs::load(self.store(), room_id)
                        .await?
                        .map(std::sync::Arc::new),
                )
            })
            .await?
            .clone();
        Ok((inputs, loaded_for))
    }

    async fn readable_room(&self, caller: &Caller, room_id: i64) -> Result<Option<String>> {
        // An id that no longer names a room (removed, or reused by an import) reads nothing.
        let Some(row) = self
            .store()
            .get_by_id(room_id)
            .await?
            .filter(|row| row.kind == crate::domain::Kind::Room)
        else {
            return Ok(None);
        };
        let access = rights_in_room(&mut Source::Pool(self.store()), caller, &row).await?;
        Ok(access
            .filter(|access| access.rights.reads)
            .map(|access| access.room.name))
    }
}

/// Whether a message matches the keyword filter.
fn matches(body: &str, filter: &RemoveFilter) -> bool {
    let Some(words) = filter.words.as_deref() else {
        return true;
    };
    let combine = match filter.matching {
        Match::All => crate::domain::words::Combine::All,
        Match::Any => crate::domain::words::Combine::Any,
        Match::Exact => crate::domain::words::Combine::Exact,
    };
    crate::domain::words::matches(body, words, combine, filter.case_sensitive)
}

/// Parses a date filter: RFC 3339, or a bare date taken as the start or end of that day (UTC).
fn parse_instant(field: &str, text: &str, end_of_day: bool) -> Result<String> {
    clock::parse(text, end_of_day)
        .map(clock::format)
        .ok_or_else(|| {
            ServiceError::invalid(
                field,
                ErrorCode::InvalidField,
                format!(
                    "{field} `{text}` is not a date (2016-01-31) or a time (2016-01-31T17:00:00Z)"
                ),
            )
        })
}

/// Rooms one count of messages may ask about.
pub const MAX_COUNTED_ROOMS: usize = 10_000;

impl Service {
    /// How many messages each room (by id) holds, for a plan that would remove them;
    /// administrators only.
    pub async fn message_counts(
        &self,
        caller: &Caller,
        room_ids: &[i64],
    ) -> Result<std::collections::BTreeMap<i64, u64>> {
        require_admin(caller, "count the messages of rooms")?;
        if room_ids.len() > MAX_COUNTED_ROOMS {
            return Err(ServiceError::invalid(
                "roomIds",
                ErrorCode::ListTooLong,
                format!("at most {MAX_COUNTED_ROOMS} rooms per request"),
            ));
        }
        Ok(self.store().message_counts(room_ids).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(words: &str, matching: Match, case_sensitive: bool) -> RemoveFilter {
        RemoveFilter {
            words: Some(words.to_owned()),
            matching,
            case_sensitive,
            ..RemoveFilter::default()
        }
    }

    #[test]
    fn keyword_matching_follows_the_cmdlet() {
        let text = "The Q3 plan is ready for review";
        assert!(matches(text, &filter("q3 plan", Match::All, false)));
        assert!(!matches(text, &filter("q3 plan", Match::All, true)));
        assert!(matches(text, &filter("budget review", Match::Any, false)));
        assert!(!matches(
            text,
            &filter("budget forecast", Match::Any, false)
        ));
        assert!(matches(text, &filter("q3 plan", Match::Exact, false)));
        assert!(!matches(text, &filter("plan q3", Match::Exact, false)));
        assert!(matches(text, &RemoveFilter::default()));
    }
}

//! One reader of the log per node: the messages and room changes committed after its cursors,
//! read once however many live streams are open, each message serialised once, and handed to
//! the streams on the node it concerns. On SQLite the node's poster hands the hub what it
//! commits ([`Committed`]), so that posts reach streams without a read of the database.
//!
//! # Guarantees
//! - **Contiguous**: a [`LogBatch`] holds everything committed after `messages_after` through
//!   `messages_through` (and the same for room changes), in id order, which is commit order
//!   (see `store::messages`). A group the poster handed over goes out as a batch only when
//!   nothing was committed between the hub's cursors and it (its [`LogPosition`], read in the
//!   group's transaction, is where the cursors stand); on any gap the hub reads the database,
//!   and so does it on every commit of anything else it is told of (a room change, a change of
//!   access, another node's commit). A stream hears, in order, every batch read after it subscribed:
//!   each either handed over ([`Heard::Batch`]) or, when it holds nothing for the stream, as
//!   the stretch of the log it covers ([`Heard::Nothing`], one for a run of such batches). The
//!   first batch a stream hears, and any that does not start where the last one it heard
//!   ended, is always handed over, so that a stream whose cursor is behind it is woken and
//!   reads the gap from the database itself: no stream depends on having heard every batch.
//! - **Woken only when concerned, never stricter than the stream**: the hub judges each batch
//!   for every stream with the rule the stream applies ([`StreamScope::may_deliver`], then the
//!   room's rights on the inputs the node's streams share, loaded for exactly the batch's
//!   generation, which is the generation the stream judges the batch at), and wakes only the
//!   streams it may deliver something to, or that must look again themselves: their judged
//!   generation is not the batch's (access may have changed, the token must be checked), their
//!   token expired, the batch has room changes, or it passes the end of a finite stream. A
//!   batch of a room of two wakes two streams, not the node's fifteen thousand. A stream that
//!   is woken judges the batch itself ([`Service::events_in_batch`]); one that is not moves
//!   its cursor past it unjudged, so the hub's "not concerned" is final for that stretch: it
//!   must hold wherever the stream's own judgment would deliver nothing, and it does because
//!   both read the same inputs at the same generation, and any room the hub cannot judge so
//!   (unreadable, or loaded for a later generation) concerns every stream.
//! - **Looked at only when it may be concerned**: a batch whose rooms' lists alone name their
//!   readers, at the generation of the batch before it and continuing it, is judged only for
//!   the streams of the users named there and the streams the hub must always look at
//!   (administrators', finite ones, those whose judgment does not stand at the batch's
//!   generation or changed since the hub last looked, and all of them once a token may have
//!   expired); the others are passed over without a look, which they hear when they next look
//!   at the hub or are handed a batch (see [`Listeners`]). Every other batch is looked at for
//!   every stream.
//! - **Judged per stream, at or after the commit**: a batch carries a configuration generation
//!   at or after the one each of its rows committed at (read after the rows, or in a handed
//!   group's transaction, and never before one the hub handed out already); each stream
//!   refreshes its access decisions when it moved, as it does after a read of its own. So no
//!   message is judged under access from before a change committed ahead of it.
//! - **Bounded**: a batch is at most [`BATCH`] rows of each; a stream holds at most
//!   [`INBOX_CAPACITY`] entries not yet taken, and one that falls behind that is told so
//!   ([`Heard::Lagged`]) and reads from the database.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use super::messages::{Message, SharedInputs, StreamScope};
use super::{Caller, Service};
use crate::clock;
use crate::domain::Principal;
use crate::domain::access::Viewer;
use crate::store::{LogPosition, MessageRow, RoomChangeRow};

/// Rows of each kind read at once.
const BATCH: i64 = 1_000;
/// Entries a stream may leave untaken before it reads from the database instead.
const INBOX_CAPACITY: usize = 256;

/// A message as the hub read it, with its JSON for every stream that delivers it.
#[derive(Debug)]
pub struct LoggedMessage {
    pub(crate) row: MessageRow,
    /// `None` when its room no longer exists: no stream delivers it.
    pub(crate) json: Option<Arc<str>>,
    /// The message as the server first framed it for a stream, and the room-change id the
    /// stream's cursor stood at (see [`BatchMessage::framed`]).
    framed: std::sync::OnceLock<(i64, bytes::Bytes)>,
}

/// A message of a hub's batch that a stream delivers ([`Service::events_in_batch`]).
#[derive(Clone, Copy, Debug)]
pub struct BatchMessage<'b> {
    pub id: i64,
    json: &'b str,
    framed: &'b std::sync::OnceLock<(i64, bytes::Bytes)>,
}

impl<'b> BatchMessage<'b> {
    /// Its JSON as the hub serialised it.
    pub fn json(self) -> &'b str {
        self.json
    }

    /// The bytes `frame` makes of the message for a stream whose room-change cursor stands at
    /// `change`, made once for every stream at the first such cursor: in a batch that is every
    /// stream caught up with the log, so a message the hub hands to thousands of streams is
    /// framed once. `frame` must depend on nothing but the message and `change`.
    pub fn framed(self, change: i64, frame: impl FnOnce(&str) -> bytes::Bytes) -> bytes::Bytes {
        if let Some((framed_at, framed)) = self.framed.get() {
            return if *framed_at == change {
                framed.clone()
            } else {
                frame(self.json)
            };
        }
        let framed = frame(self.json);
        // Another stream may have framed it meanwhile, for its own cursor: either is kept.
        let _ = self.framed.set((change, framed.clone()));
        framed
    }
}

impl LoggedMessage {
    /// The message as a stream delivers it; `None` when its room is gone.
    pub(crate) fn deliverable(&self) -> Option<BatchMessage<'_>> {
        Some(BatchMessage {
            id: self.row.id,
            json: self.json.as_deref()?,
            framed: &self.framed,
        })
    }

    /// `row` of room `room` (`None`: the room is gone), serialised once.
    fn new(row: MessageRow, room: Option<&str>) -> LoggedMessage {
        let json = room.map(|room| {
            let message = Message::from_row(row.clone(), room);
            Arc::from(serde_json::to_string(&message).unwrap_or_default())
        });
        LoggedMessage {
            row,
            json,
            framed: std::sync::OnceLock::new(),
        }
    }
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
    /// The configuration generation the batch is judged at: at or after its rows' commits.
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

    /// Whether the batch holds room changes after `change`.
    pub fn has_changes_after(&self, change: i64) -> bool {
        self.changes.last().is_some_and(|row| row.id > change)
    }
}

/// What a stream hears from the hub, in the order the hub read it.
#[derive(Debug)]
pub enum Heard {
    /// A batch that may concern the stream: it judges it.
    Batch(Arc<LogBatch>),
    /// Batches from after `after` through `through` (message and room-change ids) that hold
    /// nothing for the stream: its cursor moves past them.
    Nothing {
        after: (i64, i64),
        through: (i64, i64),
    },
    /// The stream left more than [`INBOX_CAPACITY`] entries untaken; those were dropped and it
    /// reads the database after its cursor.
    Lagged,
    /// The node began draining: the stream ends (its client resumes elsewhere by its cursor).
    Draining,
}

/// What a stream's filter last judged at, published for the hub: the generation and, at it,
/// when the caller's token expires.
#[derive(Clone, Debug, Default)]
pub(crate) struct Judged {
    pub(crate) generation: Option<i64>,
    pub(crate) token_expires_at: Option<String>,
}

/// A stream's place at the hub: who it is for and what it was handed.
pub(crate) struct Listening {
    caller: Caller,
    /// [`named_as`] of the caller, kept beside the inbox: a node's fifteen thousand callers'
    /// texts are as many places in memory, and touching each of them for every batch was
    /// most of a pool node's CPU (see [`super::access::RoomInputs::named_reader_hashes`]).
    named_as: Option<u64>,
    scope: StreamScope,
    inbox: Mutex<Inbox>,
    /// The stream dropped its [`LogListener`]: the hub forgets it at its next clean-up.
    ended: std::sync::atomic::AtomicBool,
    /// What the stream shares with its hub: where the hand-outs stand, and the streams that
    /// published a judgment since the hub last looked at them.
    shared: Arc<Shared>,
}

/// The caller's [`super::access::principal_hash`], when
/// [`crate::domain::access::readers_if_named_only`] speaks of it: a user who is not an
/// administrator.
fn named_as(caller: &Caller) -> Option<u64> {
    match caller.viewer() {
        Viewer::User(principal @ Principal::User(_)) => {
            Some(super::access::principal_hash(principal))
        }
        _ => None,
    }
}

#[derive(Default)]
struct Inbox {
    heard: VecDeque<Heard>,
    /// The stretch passed over since the last entry of `heard` (not yet an entry: an idle
    /// stream holds no queue).
    passed: Option<((i64, i64), (i64, i64))>,
    lagged: bool,
    /// The node began draining (see [`Service::begin_drain`]).
    draining: bool,
    waker: Option<Waker>,
    judged: Judged,
    /// Whether the caller reads the room the hub last judged for the stream, at a generation:
    /// consulted only for a room whose inputs the hub holds for exactly the batch's generation
    /// (as they were when it was remembered), so the answer is the same, and a room posted in
    /// again and again (a big room's fan-out) is judged once per stream.
    last_read: Option<LastRead>,
    /// Where the last batch handed or passed over ended, as the hub last looked at the
    /// stream (the batches since, up to [`Shared::position`], were passed over without a
    /// look: see [`Listeners`]); with the era it belongs to. A batch of another era (the first
    /// one the stream hears, the first after the hub started again) is handed over, so that
    /// a stream behind its start reads the gap.
    heard_through: Option<(i64, i64)>,
    era: u64,
    /// The hand-out ([`Position::hand_out`]) the stream's inbox accounts for: when it is the
    /// hub's, there is nothing passed over that the stream has not heard.
    seen: u64,
}

/// See [`Inbox::last_read`].
#[derive(Clone, Copy)]
struct LastRead {
    room_id: i64,
    generation: i64,
    reads: bool,
}

impl Listening {
    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        lock(&self.inbox)
    }

    /// Records what the stream's filter judged at (see [`Judged`]), for the hub to look at
    /// with the next batch.
    pub(crate) fn publish(self: &Arc<Self>, judged: Judged) {
        self.inbox().judged = judged;
        lock(&self.shared.published).push(Arc::downgrade(self));
    }

    /// Whether the stream dropped its [`LogListener`].
    fn has_ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether a batch of a room whose lists alone name its readers may pass over the stream
    /// without a look when it is not named there (see [`Listeners`]).
    fn is_named_only(&self) -> bool {
        self.named_as.is_some() && !self.scope.is_finite()
    }
}

/// Locks `mutex`, going on past a holder's panic, as every lock of the hub does.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A live stream's subscription to the node's hub.
pub struct LogListener {
    listening: Arc<Listening>,
}

impl std::fmt::Debug for LogListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogListener")
    }
}

impl Drop for LogListener {
    fn drop(&mut self) {
        // Counted before it is marked, so that the hub never forgets more streams than it
        // counted (see `Hub::has_listeners`).
        self.listening
            .shared
            .ended
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.listening
            .ended
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl LogListener {
    /// Whether the node began draining.
    pub fn is_draining(&self) -> bool {
        self.listening.inbox().draining
    }

    /// Completes once the node began draining. It shares the stream's one waker with
    /// [`LogListener::recv`]: a listener is polled by one task, one of the two at a time.
    pub async fn drained(&self) {
        std::future::poll_fn(|context| {
            let mut inbox = self.listening.inbox();
            if inbox.draining {
                return Poll::Ready(());
            }
            inbox.wait_with(context.waker());
            Poll::Pending
        })
        .await;
    }

    /// The next thing heard from the hub, waiting for it.
    ///
    /// Draining is heard here rather than through a watch of the node's state beside it: a
    /// watch's `changed()` registers with the one notifier every stream of the node shares,
    /// and unregisters, at every event, which was two locks of it per delivery in the fan-out
    /// bench's profile.
    pub async fn recv(&self) -> Heard {
        std::future::poll_fn(|context| {
            let mut inbox = self.listening.inbox();
            if inbox.draining {
                return Poll::Ready(Heard::Draining);
            }
            if inbox.lagged {
                inbox.lagged = false;
                return Poll::Ready(Heard::Lagged);
            }
            if let Some(heard) = inbox.heard.pop_front() {
                return Poll::Ready(heard);
            }
            if let Some((after, through)) = inbox.passed.take() {
                return Poll::Ready(Heard::Nothing { after, through });
            }
            if let Some(passed) = inbox.passed_unlooked(&self.listening.shared) {
                return Poll::Ready(passed);
            }
            inbox.wait_with(context.waker());
            Poll::Pending
        })
        .await
    }
}

impl Inbox {
    /// The stretch of the log the hub passed over without looking at the stream since it
    /// last did, once the hub's hand-outs moved past what the inbox accounts for: read only
    /// then, so that a stream's wait costs no lock that every stream shares.
    fn passed_unlooked(&mut self, shared: &Shared) -> Option<Heard> {
        if shared.hand_out.load(std::sync::atomic::Ordering::Acquire) <= self.seen {
            return None;
        }
        let position = (*lock(&shared.position))?;
        self.seen = self.seen.max(position.hand_out);
        let after = self.heard_through?;
        // Another era's stretch is not this stream's: the era's first batch is handed to it.
        // The hub may have looked at the stream for a hand-out it has not finished (its
        // position still short of where the stream stands): nothing is passed then.
        let through = position.through;
        if position.era != self.era
            || through.0 < after.0
            || through.1 < after.1
            || through == after
        {
            return None;
        }
        self.heard_through = Some(through);
        Some(Heard::Nothing { after, through })
    }

    /// Wakes `waker` at the next entry, or when the node drains.
    fn wait_with(&mut self, waker: &Waker) {
        if !self
            .waker
            .as_ref()
            .is_some_and(|current| current.will_wake(waker))
        {
            self.waker = Some(waker.clone());
        }
    }
}

/// Messages the node's poster committed, handed to the hub so that it need not read them
/// back (see [`Service::hand_to_hub`]).
#[derive(Debug)]
pub(crate) struct Committed {
    /// Where the log stood when the poster's transaction began to write.
    pub(crate) position: LogPosition,
    /// The rows it inserted, in id order, each with its room's name at the commit.
    pub(crate) messages: Vec<(MessageRow, String)>,
}

impl Committed {
    fn through(&self) -> i64 {
        self.messages
            .last()
            .map_or(self.position.messages_through, |(row, _)| row.id)
    }
}

/// Committed groups the hub has not taken yet; past this it reads them from the database.
const FED_CAPACITY: usize = 64;

/// The streams listening to a hub, and what lets a batch pass over most of them without a
/// look.
///
/// A batch whose messages are all in rooms whose lists alone name their readers concerns, of
/// the users' unbounded streams, only those of the users named there
/// ([`crate::domain::access::readers_if_named_only`]): the hub looks at those (`by_name`), at
/// every other stream (`always`), at those whose judgment does not stand at the batch's
/// generation (`unsettled`) or was published since it last looked (`Shared::published`), and
/// passes over the rest without touching them, each stream learning of the stretch when it
/// next hears the hub ([`Inbox::passed_unlooked`]) or is handed a batch. Any other batch (room
/// changes, a new generation or era, a token that may have expired, a room the lists do not
/// close) is looked at for every stream, as before: a post in a room of two on a node of
/// fifteen thousand streams touches two of them, not fifteen thousand.
#[derive(Default)]
struct Listeners {
    /// Every stream listening, ended ones among them until [`Listeners::forget_ended`].
    all: Vec<Arc<Listening>>,
    /// Streams of a user with no end ([`Listening::is_named_only`]), by [`named_as`].
    by_name: HashMap<u64, Vec<Arc<Listening>>>,
    /// The other streams: looked at for every batch.
    always: Vec<Arc<Listening>>,
    /// Streams whose judgment, when the hub last looked, did not stand at that batch's
    /// generation: looked at for every batch until it does.
    unsettled: Vec<Arc<Listening>>,
    /// The earliest expiry of a token among the streams as the hub last looked at them: past
    /// it, every stream is looked at, so that one whose token expired is woken.
    earliest_expiry: Option<String>,
}

impl Listeners {
    fn add(&mut self, listening: Arc<Listening>) {
        if listening.is_named_only()
            && let Some(name) = listening.named_as
        {
            self.by_name
                .entry(name)
                .or_default()
                .push(listening.clone());
        } else {
            self.always.push(listening.clone());
        }
        self.all.push(listening);
    }

    /// Drops the streams that ended from every list; returns how many.
    fn forget_ended(&mut self) -> usize {
        let before = self.all.len();
        self.all.retain(|listening| !listening.has_ended());
        self.always.retain(|listening| !listening.has_ended());
        self.unsettled.retain(|listening| !listening.has_ended());
        self.by_name.retain(|_, streams| {
            streams.retain(|listening| !listening.has_ended());
            !streams.is_empty()
        });
        before - self.all.len()
    }
}

/// What a hub shares with its streams.
#[derive(Default)]
struct Shared {
    /// Where the hand-outs stand; `None` before the first.
    position: Mutex<Option<Position>>,
    /// [`Position::hand_out`] of `position`, read without its lock.
    hand_out: std::sync::atomic::AtomicU64,
    /// Streams that published a judgment since the hub last looked at them.
    published: Mutex<Vec<std::sync::Weak<Listening>>>,
    /// Streams that ended and are not yet forgotten.
    ended: std::sync::atomic::AtomicUsize,
    /// Streams looked at over every hand-out (written by the hub alone).
    looked_at: std::sync::atomic::AtomicU64,
}

/// Where a hub's hand-outs stand.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Position {
    /// A run of batches each starting where the last ended: a batch that does not (the
    /// hub started again from the end of the log, past what it had read) begins a new one.
    era: u64,
    /// The hand-outs so far.
    hand_out: u64,
    /// Where the last batch ended.
    through: (i64, i64),
    /// The last batch's generation.
    generation: i64,
}

/// The node's hub: started by the first stream that listens.
pub(crate) struct Hub {
    listeners: Mutex<Listeners>,
    shared: Arc<Shared>,
    started: std::sync::Once,
    /// What the poster committed since the hub last looked, oldest first.
    fed: Mutex<VecDeque<Committed>>,
    /// Something was committed that only a read of the database shows: a message not handed
    /// over, a room change, a change of access, another node's commit.
    must_read: std::sync::atomic::AtomicBool,
    /// The node began draining: set before the listeners are told, and read by a stream that
    /// subscribes under the lock of `listeners`, so that none misses it.
    draining: std::sync::atomic::AtomicBool,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            listeners: Mutex::default(),
            shared: Arc::default(),
            started: std::sync::Once::new(),
            fed: Mutex::default(),
            must_read: std::sync::atomic::AtomicBool::new(true),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hub")
    }
}

impl Hub {
    /// The streams listening, ended ones among them until they are forgotten.
    fn listeners(&self) -> std::sync::MutexGuard<'_, Listeners> {
        lock(&self.listeners)
    }

    /// Whether any stream listens. Those that ended are forgotten once they are an eighth
    /// of the streams (or all of them): a pass over every stream at each turn of the hub was
    /// a third of a pool node's CPU.
    fn has_listeners(&self) -> bool {
        let mut listeners = self.listeners();
        let ended = self.shared.ended.load(std::sync::atomic::Ordering::Acquire);
        if ended > 0 && ended * 8 >= listeners.all.len() {
            let forgotten = listeners.forget_ended();
            self.shared
                .ended
                .fetch_sub(forgotten, std::sync::atomic::Ordering::AcqRel);
        }
        listeners.all.len() > self.shared.ended.load(std::sync::atomic::Ordering::Acquire)
    }

    fn fed(&self) -> std::sync::MutexGuard<'_, VecDeque<Committed>> {
        lock(&self.fed)
    }

    /// Asks the hub to read the database at its next turn.
    pub(crate) fn read_at_next_turn(&self) {
        self.must_read
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Tells every stream, and every stream that subscribes from now on, that the node began
    /// draining.
    pub(crate) fn drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut woken = Vec::new();
        for listening in &self.listeners().all {
            let mut inbox = listening.inbox();
            inbox.draining = true;
            woken.extend(inbox.waker.take());
        }
        for waker in woken {
            waker.wake();
        }
    }

    /// Whether the hub started (it runs from then on, listened to or not), and so whether
    /// the poster hands it what it commits.
    pub(crate) fn has_started(&self) -> bool {
        self.started.is_completed()
    }
}

/// Whether `batch` may concern the stream that `listening` is, judged as the stream would
/// (see the module's guarantees); `rooms` holds the inputs of the batch's rooms at its
/// generation, and a room missing from it (it could not be read) concerns everyone.
fn concerns(
    listening: &Listening,
    judged: &Judged,
    last_read: &mut Option<LastRead>,
    batch: &LogBatch,
    rooms: &HashMap<i64, SharedInputs>,
    now: &str,
) -> bool {
    if judged.generation != Some(batch.generation)
        || !crate::domain::tokens::is_current(judged.token_expires_at.as_deref(), now)
        || !batch.changes.is_empty()
        || listening.scope.ends_by(batch.messages_through)
    {
        return true;
    }
    batch.messages.iter().any(|message| {
        let row = &message.row;
        if message.json.is_none()
            || !listening
                .scope
                .may_deliver(row.room_id, row.in_history, row.id)
        {
            return false;
        }
        // A room the hub has no inputs for at exactly the batch's generation concerns every
        // stream, whatever was remembered: a stream still at that generation may judge it on
        // inputs loaded since.
        let Some(inputs) = rooms.get(&row.room_id) else {
            return true;
        };
        // A room whose lists alone name its readers passes over everyone else unjudged
        // (administrators have no `named_as`).
        let named = inputs
            .as_ref()
            .and_then(|inputs| inputs.named_reader_hashes());
        if let (Some(named), Some(caller)) = (named, listening.named_as)
            && named.binary_search(&caller).is_err()
        {
            return false;
        }
        if let Some(judged) = *last_read
            && judged.room_id == row.room_id
            && judged.generation == batch.generation
        {
            return judged.reads;
        }
        let reads = inputs
            .as_ref()
            .is_some_and(|inputs| inputs.rights(&listening.caller).reads);
        *last_read = Some(LastRead {
            room_id: row.room_id,
            generation: batch.generation,
            reads,
        });
        reads
    })
}

/// Streams woken together while the hub looks at the others.
const WAKE_TOGETHER: usize = 256;

/// The wakers of the streams a hand-out handed its batch to, woken [`WAKE_TOGETHER`] at a
/// time while the hub goes on looking: those streams deliver meanwhile on another thread,
/// where waking them all after the look made the first wait for the last (15,000 streams
/// judged for the first time in a room took 80 ms), and waking each at once cost the fan-out
/// bench a microsecond a delivery (a worker parked and unparked again and again).
#[derive(Default)]
struct Wakes(Vec<Waker>);

impl Wakes {
    fn add(&mut self, waker: Option<Waker>) {
        self.0.extend(waker);
        if self.0.len() >= WAKE_TOGETHER {
            self.wake();
        }
    }

    fn wake(&mut self) {
        for waker in self.0.drain(..) {
            waker.wake();
        }
    }
}

/// One hand-out's look at the streams: a batch, the inputs of its rooms at its generation
/// (see [`concerns`]), and where the hand-outs will stand after it.
struct Look<'a> {
    batch: &'a Arc<LogBatch>,
    rooms: &'a HashMap<i64, SharedInputs>,
    now: &'a str,
    position: Position,
}

/// What a hand-out learnt of the streams it looked at.
#[derive(Default)]
struct Seen {
    /// The users' streams whose judgment does not stand at the batch's generation.
    unsettled: Vec<Arc<Listening>>,
    earliest_expiry: Option<String>,
    looked_at: u64,
}

/// The earlier of two expiries (`None`: none).
fn earlier(one: Option<String>, other: Option<String>) -> Option<String> {
    match (one, other) {
        (Some(one), Some(other)) => Some(one.min(other)),
        (one, other) => one.or(other),
    }
}

impl Look<'_> {
    /// Hands the batch to `listening` if it may concern it (or it does not continue the
    /// stream's era), or passes it over, with the stretch passed over without a look since
    /// the hub last looked at it. A stream already looked at for this hand-out is left alone.
    /// Returns the stream's waker when it was handed the batch, to be woken with the next
    /// [`WAKE_TOGETHER`] (its inbox unlocked; see [`Wakes`]).
    fn at(&self, listening: &Arc<Listening>, seen: &mut Seen) -> Option<Waker> {
        if listening.has_ended() {
            return None;
        }
        let batch = self.batch;
        let mut inbox = listening.inbox();
        if inbox.seen == self.position.hand_out && inbox.era == self.position.era {
            return None;
        }
        let inbox = &mut *inbox;
        seen.looked_at += 1;
        let mut woken = None;
        let continues = inbox.era == self.position.era && inbox.heard_through.is_some();
        if continues
            && let Some(heard_through) = inbox.heard_through
            && heard_through != batch.starts_after()
        {
            // Passed over without a look: the stretch joins what the stream was passed.
            let after = inbox.passed.map_or(heard_through, |(after, _)| after);
            inbox.passed = Some((after, batch.starts_after()));
        }
        inbox.heard_through = Some(batch.ends_at());
        inbox.era = self.position.era;
        inbox.seen = self.position.hand_out;
        if !continues
            || concerns(
                listening,
                &inbox.judged,
                &mut inbox.last_read,
                batch,
                self.rooms,
                self.now,
            )
        {
            if let Some((after, through)) = inbox.passed.take() {
                inbox.heard.push_back(Heard::Nothing { after, through });
            }
            if inbox.heard.len() >= INBOX_CAPACITY {
                inbox.heard.clear();
                inbox.lagged = true;
            }
            inbox.heard.push_back(Heard::Batch(batch.clone()));
            woken = inbox.waker.take();
        } else {
            let after = inbox
                .passed
                .map_or(batch.starts_after(), |(after, _)| after);
            inbox.passed = Some((after, batch.ends_at()));
        }
        if listening.is_named_only() && inbox.judged.generation != Some(batch.generation) {
            seen.unsettled.push(listening.clone());
        }
        seen.earliest_expiry = earlier(
            seen.earliest_expiry.take(),
            inbox.judged.token_expires_at.clone(),
        );
        woken
    }
}

/// The users named in the lists of every room of `batch` with a message, when those lists
/// alone name the rooms' readers (a room gone, or not readable, names nobody); `None` when
/// a room's are not so, or its inputs are not held for exactly the batch's generation: the
/// batch must then be looked at for every stream (see [`concerns`], whose judgment this
/// follows).
fn named_readers(batch: &LogBatch, rooms: &HashMap<i64, SharedInputs>) -> Option<Vec<u64>> {
    let mut named = Vec::new();
    for message in &batch.messages {
        if message.json.is_none() {
            continue;
        }
        // A room gone, or one the caller may not read, names nobody.
        if let Some(inputs) = rooms.get(&message.row.room_id)? {
            named.extend_from_slice(inputs.named_reader_hashes()?);
        }
    }
    named.sort_unstable();
    named.dedup();
    Some(named)
}

impl Service {
    /// Batches the node's hub handed out since the node started.
    pub fn hub_hand_outs(&self) -> u64 {
        self.hub
            .shared
            .hand_out
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Live streams the node's hub looked at, over all its hand-outs: a batch of a room whose
    /// lists name its readers looks at their streams, not at every stream of the node.
    pub fn hub_streams_looked_at(&self) -> u64 {
        self.hub
            .shared
            .looked_at
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Hears every batch the node's hub reads from now on that concerns the stream `filter`
    /// judges for (starting the hub if it is not); the filter publishes what it judged at to
    /// the hub from now on.
    pub fn subscribe_log(&self, filter: &mut super::EventFilter) -> LogListener {
        let listening = Arc::new(Listening {
            caller: filter.caller().clone(),
            named_as: named_as(filter.caller()),
            scope: filter.scope(),
            inbox: Mutex::default(),
            ended: std::sync::atomic::AtomicBool::new(false),
            shared: self.hub.shared.clone(),
        });
        filter.publish_to(&listening);
        {
            let mut listeners = self.hub.listeners();
            listening.inbox().draining =
                self.hub.draining.load(std::sync::atomic::Ordering::SeqCst);
            // Its first batch is handed to it: the hub looks at it then, as at any stream
            // that published a judgment (`publish_to` above).
            listeners.add(listening.clone());
        }
        self.hub.started.call_once(|| {
            let service = self.clone();
            tokio::spawn(async move { service.run_hub().await });
        });
        LogListener { listening }
    }

    /// Hands `batch` to every stream it concerns and passes it over for the others, waking
    /// only the former.
    async fn hand_out(&self, batch: LogBatch) {
        // The inputs of each room with a message, as the streams judge them: loaded once
        // per room and generation for the node.
        let mut rooms = HashMap::new();
        for message in &batch.messages {
            let room_id = message.row.room_id;
            if message.json.is_none() || rooms.contains_key(&room_id) {
                continue;
            }
            match self.stream_room_inputs(room_id, batch.generation).await {
                Ok((inputs, loaded_for)) if loaded_for == batch.generation => {
                    rooms.insert(room_id, inputs);
                }
                // Loaded for a later generation (the node's streams moved on): a stream
                // judging this batch may hold a decision made at the batch's, so the room is
                // left out and every stream judges it itself.
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "live events: the hub cannot read a room"),
            }
        }
        let now = clock::now();
        let batch = Arc::new(batch);
        {
            let mut listeners = self.hub.listeners();
            let listeners = &mut *listeners;
            let last = *lock(&self.hub.shared.position);
            let continues = last.is_some_and(|last| last.through == batch.starts_after());
            let position = Position {
                era: match last {
                    Some(last) if continues => last.era,
                    Some(last) => last.era + 1,
                    None => 1,
                },
                hand_out: last.map_or(1, |last| last.hand_out + 1),
                through: batch.ends_at(),
                generation: batch.generation,
            };
            let published: Vec<Arc<Listening>> =
                std::mem::take(&mut *lock(&self.hub.shared.published))
                    .iter()
                    .filter_map(std::sync::Weak::upgrade)
                    .collect();
            let look = Look {
                batch: &batch,
                rooms: &rooms,
                now: &now,
                position,
            };
            let named = (continues
                && last.is_some_and(|last| last.generation == batch.generation)
                && batch.changes.is_empty()
                && crate::domain::tokens::is_current(listeners.earliest_expiry.as_deref(), &now))
            .then(|| named_readers(&batch, &rooms))
            .flatten()
            // A batch whose readers hold a good part of the node's streams is looked at
            // whole, in the order the streams came (and were allocated): taken in the order
            // of their names' hashes they are scattered over memory, and node 0 of the pool
            // bench, 15,000 of whose 15,000 streams read the big room, spent a fifth more
            // CPU so (12.6 against 10.7 s over the load).
            .filter(|named| {
                let quarter = listeners.all.len() / 4;
                let mut streams = 0;
                named
                    .iter()
                    .filter_map(|name| listeners.by_name.get(name))
                    .all(|listening| {
                        streams += listening.len();
                        streams <= quarter
                    })
            });
            let mut seen = Seen::default();
            let mut wakes = Wakes::default();
            if let Some(named) = named {
                // Only the streams the batch may concern are looked at (see `Listeners`).
                let unsettled = std::mem::take(&mut listeners.unsettled);
                let named_streams = named
                    .iter()
                    .filter_map(|name| listeners.by_name.get(name))
                    .flatten();
                for listening in listeners
                    .always
                    .iter()
                    .chain(&unsettled)
                    .chain(&published)
                    .chain(named_streams)
                {
                    wakes.add(look.at(listening, &mut seen));
                }
                listeners.unsettled = seen.unsettled;
                listeners.earliest_expiry =
                    earlier(listeners.earliest_expiry.take(), seen.earliest_expiry);
            } else {
                // The streams that published are looked at too: one that subscribes
                // publishes before it joins the lists.
                for listening in listeners.all.iter().chain(&published) {
                    wakes.add(look.at(listening, &mut seen));
                }
                listeners.unsettled = seen.unsettled;
                listeners.earliest_expiry = seen.earliest_expiry;
            }
            self.hub
                .shared
                .looked_at
                .fetch_add(seen.looked_at, std::sync::atomic::Ordering::Relaxed);
            *lock(&self.hub.shared.position) = Some(position);
            self.hub
                .shared
                .hand_out
                .store(position.hand_out, std::sync::atomic::Ordering::Release);
            wakes.wake();
        }
    }

    /// Hands what the poster just committed to the hub, once it has started: returns whether
    /// it took it (the poster then wakes it without asking for a read). Past [`FED_CAPACITY`]
    /// groups not taken, the hub is behind: they are dropped and it is asked to read the
    /// database, which holds them.
    pub(super) fn hand_to_hub(&self, committed: Committed) -> bool {
        if !self.hub.has_started() || committed.messages.is_empty() {
            return false;
        }
        let mut fed = self.hub.fed();
        if fed.len() >= FED_CAPACITY {
            fed.clear();
            return false;
        }
        fed.push_back(committed);
        true
    }

    async fn run_hub(&self) {
        let mut woken = self.watch_messages();
        let mut at = HubPlace::default();
        let mut ticked = false;
        let mut next_tick = tokio::time::Instant::now() + self.events_poll_interval();
        loop {
            if self.hub.has_listeners() {
                // The database first, when something only it shows was committed: groups
                // handed meanwhile that it covers are then passed over.
                let must_read = self
                    .hub
                    .must_read
                    .swap(false, std::sync::atomic::Ordering::SeqCst);
                if must_read || ticked || at.cursors.is_none() {
                    // A batch goes out even with nothing new when the hub (re)starts, so that
                    // a stream behind its start reads the gap, and on every tick, so that
                    // streams judge their tokens' expiry and any change of access without a
                    // post (the hand-out wakes only those for whom either is due).
                    let announce = ticked || at.cursors.is_none();
                    ticked = false;
                    match self.read_log(&mut at, announce).await {
                        Ok(Some(batch)) => {
                            let full = i64::try_from(batch.messages.len()).unwrap_or(i64::MAX)
                                >= BATCH
                                || i64::try_from(batch.changes.len()).unwrap_or(i64::MAX) >= BATCH;
                            self.hand_out(batch).await;
                            if full {
                                self.hub.read_at_next_turn();
                                continue;
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            // Read again at the next turn: handed groups alone would go on
                            // past what the read was for.
                            self.hub.read_at_next_turn();
                            tracing::warn!(%error, "live events: the hub cannot read the log");
                        }
                    }
                }
                if self.hand_out_fed(&mut at).await {
                    // A handed group does not continue what the hub read: the database has
                    // what lies between.
                    self.hub.read_at_next_turn();
                    continue;
                }
            } else {
                // Nobody listens: start again from the end of the log once someone does
                // (streams behind it read the gap themselves).
                at.cursors = None;
                self.hub.fed().clear();
            }
            // Ticks keep their pace however often posts wake the hub: handed groups need no
            // read, and a token's expiry or another process's change of access shows only in
            // one.
            tokio::select! {
                _ = woken.changed() => {}
                () = tokio::time::sleep_until(next_tick) => {
                    ticked = true;
                    next_tick = tokio::time::Instant::now() + self.events_poll_interval();
                }
            }
        }
    }

    /// Hands out, as batches, the groups the poster committed that continue the hub's
    /// cursors, and passes over those the database read held; returns whether one left a gap
    /// (a message or a room change committed between the cursors and the group, which only
    /// the database holds), dropping it and those after it, which that read will cover.
    async fn hand_out_fed(&self, at: &mut HubPlace) -> bool {
        let fed = std::mem::take(&mut *self.hub.fed());
        for committed in fed {
            let Some((messages_after, changes_after)) = at.cursors else {
                return false;
            };
            let through = committed.through();
            if through <= messages_after {
                // Read from the database already.
                continue;
            }
            if committed.position.messages_through > messages_after
                || committed.position.changes_through > changes_after
            {
                return true;
            }
            // Nothing was committed after the cursors and before the group: it continues the
            // logs as the hub holds them. (A read that stopped at `BATCH` may have ended
            // inside it: what it delivered is left out.)
            let messages: Vec<LoggedMessage> = committed
                .messages
                .into_iter()
                .filter(|(row, _)| row.id > messages_after)
                .map(|(row, room)| LoggedMessage::new(row, Some(&room)))
                .collect();
            at.cursors = Some((through, changes_after));
            let generation = at.generation_for(committed.position.generation);
            self.hand_out(LogBatch {
                messages_after,
                messages,
                messages_through: through,
                changes_after,
                changes: Vec::new(),
                changes_through: changes_after,
                generation,
            })
            .await;
        }
        false
    }

    /// Reads what was committed after `cursors` (from the end of the log if unset), as a batch
    /// if there was anything or `announce` asks for one anyway.
    async fn read_log(
        &self,
        at: &mut HubPlace,
        announce: bool,
    ) -> Result<Option<LogBatch>, super::ServiceError> {
        let HubPlace {
            cursors,
            generation: handed_generation,
        } = at;
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
        let read = self
            .store()
            .log_after(messages_after, changes_after, BATCH)
            .await?;
        if read.messages.is_empty() && read.changes.is_empty() && !announce {
            return Ok(None);
        }
        let generation = read.generation;
        *handed_generation = (*handed_generation).max(Some(generation));
        let messages_through = read
            .messages
            .last()
            .map_or(messages_after, |(row, _)| row.id);
        let changes_through = read.changes.last().map_or(changes_after, |row| row.id);
        let messages = read
            .messages
            .into_iter()
            .map(|(row, room)| LoggedMessage::new(row, room.as_deref()))
            .collect();
        *cursors = Some((messages_through, changes_through));
        Ok(Some(LogBatch {
            messages_after,
            messages,
            messages_through,
            changes_after,
            changes: read.changes,
            changes_through,
            generation,
        }))
    }
}

/// Where the hub is: its cursors in the two logs (unset until it first reads) and the latest
/// generation it handed out.
#[derive(Default)]
struct HubPlace {
    cursors: Option<(i64, i64)>,
    generation: Option<i64>,
}

impl HubPlace {
    /// The generation to hand a group out at that committed at `committed_at`: never before
    /// one the hub handed out already (a read may have seen a later one), as judging later is
    /// what a read of the database does, and streams would otherwise look again for nothing.
    fn generation_for(&mut self, committed_at: i64) -> i64 {
        let generation = self
            .generation
            .map_or(committed_at, |handed| handed.max(committed_at));
        self.generation = Some(generation);
        generation
    }
}

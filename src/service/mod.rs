//! The one path to the store: who may do what, every rule of Persistent Chat, one transaction
//! per call.
//!
//! Invariants: the HTTP API and the embedded target both call this module; nothing else writes
//! the store. Every public method runs in at most one write transaction, so a rejected call
//! changes nothing. Objects invisible to the caller are reported as not found, never as
//! forbidden, so that secret rooms do not leak their existence.

mod access;
mod applied;
mod archive;
mod backup;
mod compliance;
mod configuration;
mod data;
mod error;
mod hub;
mod locks;
mod messages;
mod object;
mod sessions;
mod tokens;

use crate::domain::Principal;
use crate::domain::access::Viewer;
use crate::store::{ObjectRow, Store, StoreError};
pub(crate) use crate::text::hex;

pub use archive::format::json_schema as compliance_archive_schema;
pub use archive::{ARCHIVER, ArchiveRun, ArchiveState, OperationalState};
pub use backup::{BackupProgress, BackupReport};
pub use compliance::{MAX_AUDIT_PAGE, RetentionRun};
pub use configuration::{
    Batch, Operation, Ownership, Precondition, ROOM_SCAN_BUDGET, RoomPage, StateJsonStream,
};
pub use data::MigrateReport;
pub use error::ServiceError;
pub use hub::{BatchMessage, Heard, LogBatch, LogListener};
pub use messages::{
    DEFAULT_REPLACEMENT, EventFilter, MAX_COUNTED_ROOMS, Match, Message, Page, PageRequest,
    RemoveFilter, RoomChange, RoomView, StreamEnd,
};
pub use object::{Object, Stored};
pub use sessions::{OpenedSession, SESSION_LIFETIME_SECONDS, SessionCaller};
pub use tokens::{PostingCaller, TOKEN_NOT_VALID};

/// The right to open a write transaction on the store.
///
/// Its constructor is private to this module and its children, so only `service/` can open a
/// [`Tx`]: the compiler keeps every store write behind the service's rules.
#[derive(Debug)]
pub struct WriteAccess(());

impl WriteAccess {
    fn new() -> WriteAccess {
        WriteAccess(())
    }
}

/// The name of the lock that serialises `perch apply` runs against one server.
pub const APPLY_LOCK: &str = "apply";

/// What a caller may do beyond its room and category roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `CsPersistentChatAdministrator`: changes all configuration, exempt from scope limits.
    Admin,
    /// Reads what it may see; acts through its creator and manager roles.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// Who is asking. Every service call takes one.
///
/// Built only by [`Service::authenticate`] and the named constructors, so a user always has a
/// principal and the rules in [`crate::domain::access`] always know whom they judge.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Recorded as `updatedBy`.
    name: String,
    identity: Identity,
    /// The hash of the bearer token the caller came with, so that long-lived requests (live
    /// streams) can tell when it is revoked.
    token_hash: Option<String>,
    /// The hash of the browser session the caller came with, if it came with one: signing
    /// out ends the session's live streams as revoking its token does.
    session_hash: Option<String>,
}

#[derive(Clone, Debug)]
enum Identity {
    /// An administrator, with a principal unless it is the embedded operator or the archiver.
    Admin(Option<Principal>),
    User(Principal),
}

impl Caller {
    /// The operator of the embedded store: an administrator named after the local account.
    pub fn local_operator() -> Caller {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".to_owned());
        Caller::system(format!("local:{user}"))
    }

    /// An administrator that is a part of Perch itself (the archiver, a migration).
    pub(crate) fn system(name: String) -> Caller {
        Caller {
            name,
            identity: Identity::Admin(None),
            token_hash: None,
            session_hash: None,
        }
    }

    /// The name recorded as `updatedBy`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        match self.identity {
            Identity::Admin(_) => Role::Admin,
            Identity::User(_) => Role::User,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }

    /// The caller as the access rules see it.
    pub fn viewer(&self) -> Viewer<'_> {
        match &self.identity {
            Identity::Admin(principal) => Viewer::Admin(principal.as_ref()),
            Identity::User(principal) => Viewer::User(principal),
        }
    }

    /// The caller as a principal; administrators inside Perch have none.
    pub fn principal(&self) -> Option<&Principal> {
        self.viewer().principal()
    }
}

/// The service: shared by every request, and cloned by each (one reference count).
#[derive(Clone, Debug)]
pub struct Service(std::sync::Arc<ServiceState>);

impl std::ops::Deref for Service {
    type Target = ServiceState;

    fn deref(&self) -> &ServiceState {
        &self.0
    }
}

/// What every clone of a [`Service`] shares.
#[derive(Debug)]
pub struct ServiceState {
    store: Store,
    /// Tells live-event streams that a message with this id was committed.
    messages_posted: tokio::sync::watch::Sender<i64>,
    /// This node's name, as it holds leases (the archiver's).
    node: std::sync::Arc<str>,
    archiving: std::sync::Arc<tokio::sync::Mutex<()>>,
    last_use: std::sync::Arc<tokens::LastUse>,
    /// Set when the server begins to drain: live streams end so that clients resume
    /// elsewhere (by `Last-Event-ID`).
    draining: tokio::sync::watch::Sender<bool>,
    /// Messages this node stored since it started (idempotent retries not counted).
    posted_total: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Whether this node hears the other nodes' commits (PostgreSQL's `LISTEN`): live
    /// streams then poll only as a backstop.
    hears_other_nodes: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Notifications of other nodes' commits heard since this node started.
    notifications_heard: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The node's one reader of the log for every live stream.
    hub: std::sync::Arc<hub::Hub>,
    /// The node's posts, stored in groups by one poster.
    posts: std::sync::Arc<messages::PostQueue>,
    /// The rooms the node's live streams judge, loaded once per generation for all of them.
    stream_rooms: std::sync::Arc<messages::StreamRooms>,
    /// The node's token lookups, read together.
    token_lookups: std::sync::Arc<tokens::TokenLookups>,
    remembered_tokens: std::sync::Arc<tokens::RememberedTokens>,
}

/// How often a live stream reads the database unasked, when this node hears the other nodes'
/// commits: only a notification connection that died without saying so (a half-open TCP
/// connection) goes unnoticed until then.
const BACKSTOP_POLL: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a live stream reads the database unasked otherwise: another node (or, on
/// SQLite, another process such as `perch apply --db`) may have written.
const UNHEARD_POLL: std::time::Duration = std::time::Duration::from_millis(500);

type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl Service {
    pub fn new(store: Store) -> Service {
        let mut nonce = [0u8; 4];
        let _ = getrandom::fill(&mut nonce);
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let node = format!("{}:{}:{}", host.trim(), std::process::id(), hex(&nonce));
        Service(std::sync::Arc::new(ServiceState {
            store,
            messages_posted: tokio::sync::watch::channel(0).0,
            node: node.into(),
            archiving: std::sync::Arc::default(),
            last_use: std::sync::Arc::default(),
            draining: tokio::sync::watch::channel(false).0,
            posted_total: std::sync::Arc::default(),
            hears_other_nodes: std::sync::Arc::default(),
            notifications_heard: std::sync::Arc::default(),
            hub: std::sync::Arc::default(),
            posts: std::sync::Arc::default(),
            stream_rooms: std::sync::Arc::default(),
            token_lookups: std::sync::Arc::default(),
            remembered_tokens: std::sync::Arc::default(),
        }))
    }

    /// On PostgreSQL, starts hearing every commit the other nodes make that live streams care
    /// about, and wakes this node's streams on each; returns whether it listens. A lost
    /// notification connection is opened again and listened on, and only then are the
    /// streams woken: each reads the database after its cursor, so whatever was announced
    /// while no one listened is read, once.
    ///
    /// # Errors
    /// The database refusing the notification connection (the streams then poll).
    pub async fn listen_to_other_nodes(&self) -> Result<bool> {
        use std::sync::atomic::Ordering;
        let Some(mut listener) = self.store.listen_for_changes().await? else {
            return Ok(false);
        };
        self.hears_other_nodes.store(true, Ordering::Relaxed);
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(Some(_)) = listener.try_recv().await {
                    service.notifications_heard.fetch_add(1, Ordering::Relaxed);
                    service.notify_change();
                    continue;
                }
                // The connection is lost (PgListener says so by `None`) or failed.
                service.hears_other_nodes.store(false, Ordering::Relaxed);
                tracing::warn!("lost the connection that hears the other nodes; opening it again");
                service.notify_change();
                loop {
                    // UNLISTEN reconnects (and listens again) first; LISTEN keeps it
                    // listening after.
                    let relisten = async {
                        listener.unlisten(crate::store::CHANGES_CHANNEL).await?;
                        listener.listen(crate::store::CHANGES_CHANNEL).await
                    };
                    match relisten.await {
                        Ok(()) => break,
                        Err(error) => {
                            tracing::warn!(%error, "cannot hear the other nodes yet; trying again in 1 s");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
                service.hears_other_nodes.store(true, Ordering::Relaxed);
                tracing::info!("hearing the other nodes again");
                // What was announced while no one listened: every stream reads again.
                service.notify_change();
            }
        });
        Ok(true)
    }

    /// Whether this node hears the other nodes' commits now.
    pub fn hears_other_nodes(&self) -> bool {
        self.hears_other_nodes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Notifications of commits (this node's own among them) heard since it started.
    pub fn notifications_heard(&self) -> u64 {
        self.notifications_heard
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How long a live stream waits, unwoken, before it reads the database anyway.
    pub fn events_poll_interval(&self) -> std::time::Duration {
        if self.hears_other_nodes() {
            BACKSTOP_POLL
        } else {
            UNHEARD_POLL
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Tells live streams that messages up to `id` are committed, and the hub that it reads
    /// them from the database.
    fn notify_message(&self, id: i64) {
        self.hub.read_at_next_turn();
        self.notify_handed(id);
    }

    /// Tells live streams that messages up to `id` are committed, all of them handed to the
    /// hub ([`Service::hand_to_hub`]).
    fn notify_handed(&self, id: i64) {
        self.messages_posted.send_if_modified(|latest| {
            let newer = id > *latest;
            if newer {
                *latest = id;
            }
            newer
        });
    }

    /// Tells live streams that a room changed through this node.
    fn notify_change(&self) {
        self.hub.read_at_next_turn();
        self.messages_posted.send_modify(|_| {});
    }

    /// Wakes when a message is posted through this service.
    pub fn watch_messages(&self) -> tokio::sync::watch::Receiver<i64> {
        self.messages_posted.subscribe()
    }

    /// Begins draining: every live stream ends at its next turn.
    pub fn begin_drain(&self) {
        self.draining.send_replace(true);
        self.hub.drain();
    }

    /// Whether the server began draining.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Messages this node stored since it started.
    pub fn messages_posted_total(&self) -> u64 {
        self.posted_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Completes once draining began.
    pub fn watch_drain(&self) -> tokio::sync::watch::Receiver<bool> {
        self.draining.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub async fn health(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }
}

fn require_admin(caller: &Caller, action: &str) -> Result<()> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden {
            message: format!("only administrators may {action}"),
        })
    }
}

fn caller_principal(caller: &Caller) -> Result<&Principal> {
    caller.principal().ok_or_else(|| ServiceError::Forbidden {
        message: "this caller has no user identity".to_owned(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(row: &ObjectRow) -> Result<T> {
    serde_json::from_str(&row.body).map_err(|error| {
        ServiceError::Store(StoreError::Corrupt {
            kind: row.kind,
            name: row.name.clone(),
            message: error.to_string(),
        })
    })
}
